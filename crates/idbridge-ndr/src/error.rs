use thiserror::Error;

/// Everything that can go wrong while encoding or decoding an NDR stream.
///
/// Every decode error carries the byte offset (from the start of the stub) at which the problem
/// was detected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NdrError {
    #[error("truncated input at offset {offset}: need {needed} bytes, {remaining} remaining")]
    Truncated {
        offset: usize,
        needed: usize,
        remaining: usize,
    },
    #[error(
        "{what} count {count} at offset {offset} cannot fit in the {remaining} remaining bytes"
    )]
    CountTooLarge {
        what: &'static str,
        offset: usize,
        count: u64,
        remaining: usize,
    },
    #[error("invalid {what} at offset {offset}: {detail}")]
    Invalid {
        what: &'static str,
        offset: usize,
        detail: String,
    },
    #[error("null [ref] pointer at offset {offset}")]
    NullRefPointer { offset: usize },
    #[error("unknown union discriminant {value} for {union} at offset {offset}")]
    UnknownDiscriminant {
        union: &'static str,
        value: u64,
        offset: usize,
    },
    #[error("pointer nesting deeper than {max} at offset {offset}")]
    DepthExceeded { max: usize, offset: usize },
    #[error("unsupported data representation {drep:02x?}: {detail}")]
    UnsupportedDrep { drep: [u8; 4], detail: &'static str },
    #[error("{what} of length {len} does not fit the 32-bit NDR count")]
    TooLong { what: &'static str, len: usize },
}

pub type Result<T> = core::result::Result<T, NdrError>;
