//! The channel between the cloud and its on-premises agents: what travels on it, as pure
//! functions of their input (no sockets, no clock).
//!
//! The agent holds an outbound WebSocket to the cloud; the cloud sends [`CloudFrame`]s
//! (requests: set or change a password, unlock, verify a password for pass-through sign-in) and
//! the agent answers with [`AgentFrame`]s carrying an [`Outcome`].
//!
//! Passwords never travel in clear inside the TLS stream: the cloud seals each one to the
//! agent's X25519 public key ([`seal`]), so only the agent holding the private key can read it,
//! and binds it to one request and field through the AEAD's associated data ([`seal_aad`]), so
//! a sealed password cannot be replayed into another request.

mod ad_bind;
mod message;
mod seal;

pub use ad_bind::outcome_of_bind_failure;
pub use message::{
    decode_agent_frame, decode_cloud_frame, encode, seal_aad, AgentFrame, CloudFrame, FrameError,
    Operation, Outcome, UserRef, MAX_FRAME_BYTES,
};
pub use seal::{
    open, open_secret, seal, seal_secret, AgentKeyPair, AgentPublicKey, SealError, Sealed,
};
