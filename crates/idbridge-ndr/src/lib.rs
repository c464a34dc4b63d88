//! NDR20 codec (transfer syntax `8a885d04-1ceb-11c9-9fe8-08002b104860` v2; C706 chapter 14,
//! MS-RPCE 2.2.5) for DCE/RPC request and response stubs.
//!
//! Types implement [`NdrEncode`] / [`NdrDecode`] in two phases, *primary* (inline data) and
//! *deferred* (referents of embedded pointers), so composites lay pointer referents out after
//! the structure that holds them, in member order, as Windows and Samba do. Structures and
//! non-encapsulated unions are defined with [`ndr_struct!`] and [`ndr_union!`].
//!
//! Mapping: `Option<T>` is a `[unique]` pointer, [`Ref`] an embedded `[ref]` pointer,
//! [`FullPtr`] a `[ptr]`; `Vec<T>` a conformant array ([`ByteArray`] for bytes copied in bulk);
//! [`VaryingArray`], [`ConformantVaryingArray`] and `[T; N]` the other arrays; [`WideString`] /
//! [`NarrowString`] `[string]`s; `uuid::Uuid` a GUID; [`ContextHandle`] a context handle.
//!
//! Invariant: pure and panic-free. Decoding never reads out of bounds, never allocates for a
//! count before checking that the remaining input could hold that many elements, and caps
//! pointer nesting; every failure is an [`NdrError`] carrying the offending stub offset.

mod arrays;
mod decoder;
mod encoder;
mod error;
mod macros;
mod pointers;
mod primitives;
mod strings;
mod traits;

pub use arrays::{ByteArray, ConformantVaryingArray, VaryingArray};
pub use decoder::NdrDecoder;
pub use encoder::NdrEncoder;
pub use error::{NdrError, Result};
pub use pointers::{FullPtr, Ref};
pub use strings::{NarrowString, WideString};
pub use traits::{max_align, sum_sizes, NdrConformant, NdrDecode, NdrEncode, NdrType};

use uuid::Uuid;

/// The NDR20 transfer syntax identifier.
pub const NDR20_SYNTAX: Uuid = uuid::uuid!("8a885d04-1ceb-11c9-9fe8-08002b104860");
/// Version of [`NDR20_SYNTAX`] (major 2, minor 0).
pub const NDR20_VERSION: u32 = 2;

/// Default cap on pointer nesting. A linked list (such as the object list of a
/// `DRSGetNCChanges` reply) nests one level per node, so raise it with
/// [`NdrDecoder::with_max_depth`] when larger lists are expected.
pub const DEFAULT_MAX_DEPTH: usize = 1024;

ndr_struct! {
    /// A context handle (`ndr_context_handle`): 20 opaque bytes minted by the server.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct ContextHandle {
        attributes: u32,
        uuid: Uuid,
    }
}

impl ContextHandle {
    /// The all-zero handle, which servers hand back once a handle is closed.
    pub fn is_null(&self) -> bool {
        self.attributes == 0 && self.uuid.is_nil()
    }
}

/// Encodes one value as a complete stub (primary then deferred part).
pub fn to_bytes<T: NdrEncode + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut enc = NdrEncoder::new();
    enc.encode(value)?;
    Ok(enc.finish())
}

/// Decodes a stub holding exactly one value; trailing bytes are an error.
pub fn from_bytes<T: NdrDecode>(bytes: &[u8]) -> Result<T> {
    let mut dec = NdrDecoder::new(bytes);
    let value = dec.decode()?;
    match dec.remaining() {
        0 => Ok(value),
        n => Err(NdrError::Invalid {
            what: "stub",
            offset: dec.position(),
            detail: format!("{n} trailing bytes"),
        }),
    }
}
