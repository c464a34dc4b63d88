//! DCE/RPC connection-oriented protocol core (C706 chapter 12, MS-RPCE 2.2.2): PDU
//! encoding and decoding, the `sec_trailer`, fragmentation and reassembly, and the endpoint
//! mapper's `ept_map` for `ncacn_ip_tcp`.
//!
//! Invariant: everything outside the `client` module (the tokio I/O edge, feature `client`) is
//! pure (bytes in, messages out) and never panics on hostile input: [`decode_pdu`] tells "need
//! more bytes" ([`RpcError::Incomplete`]) from a corrupt stream, and every length it reads is
//! checked against the fragment before use. Stubs are NDR20 ([`idbridge_ndr`]).

mod auth;
#[cfg(feature = "client")]
pub mod client;
mod epm;
mod error;
mod fragment;
mod pdu;

pub use auth::{
    auth_pad_length, decode_sealed, encode_sealed, AuthLevel, AuthType, AuthVerifier,
    PduProtection, AUTH_PAD_ALIGNMENT, SEC_TRAILER_LEN,
};
pub use epm::{
    EptMapRequest, EptMapResponse, TcpTower, Twr, DRSUAPI, EPM, EPM_PORT, EPT_MAP_OPNUM,
    EPT_S_NOT_REGISTERED,
};
pub use error::RpcError;
pub use fragment::{fragment, Reassembler};
pub use pdu::{
    decode_pdu, pfc, AuthRegions, Bind, BindAck, BindNak, ContextResult, ContextResultCode, Fault,
    FaultStatus, PacketType, Pdu, PduBody, PduHeader, PresentationContext, Request, Response,
    SyntaxId, DREP_LE, HEADER_LEN, NDR20, RPC_VERSION_MAJOR, RPC_VERSION_MINOR,
};
