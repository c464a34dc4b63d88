use idbridge_ndr::NdrError;
use thiserror::Error;

/// Errors of the PDU codec, fragmentation and the endpoint mapper.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RpcError {
    /// The buffer holds a PDU prefix: read at least `needed` bytes in total and retry.
    #[error("incomplete PDU: {needed} bytes needed, {available} available")]
    Incomplete { needed: usize, available: usize },
    #[error("malformed PDU: {0}")]
    Malformed(String),
    #[error("unsupported RPC version {major}.{minor}")]
    Version { major: u8, minor: u8 },
    #[error("unknown packet type {0}")]
    UnknownPacketType(u8),
    #[error("{what} is {len} bytes, more than the {max} allowed")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("fragment for call {got} while reassembling call {expected}")]
    CallIdMismatch { expected: u32, got: u32 },
    #[error("fragment out of order: {0}")]
    OutOfOrder(&'static str),
    #[error("unexpected PDU: {0}")]
    Unexpected(String),
    /// The security provider refused a PDU (bad signature, wrong sequence, failed decryption).
    #[error("security provider: {0}")]
    Security(String),
    #[error("NDR: {0}")]
    Ndr(#[from] NdrError),
}

impl RpcError {
    /// True when more bytes may turn this into a successful decode.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Self::Incomplete { .. })
    }
}
