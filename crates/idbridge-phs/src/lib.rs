//! Password hash sync primitives shared by the agent (which computes verifiers) and the cloud
//! (which checks sign-in passwords against them).
//!
//! Invariant: pure functions; an NT hash only ever exists in a [`NtHash`], which is zeroized on drop
//! and never formatted.

mod verifier;

pub use verifier::{
    NtHash, PhsVerifier, VerifierError, DEFAULT_ITERATIONS, MAX_ITERATIONS, SALT_LEN,
};
