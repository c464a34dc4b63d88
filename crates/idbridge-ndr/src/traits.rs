use crate::decoder::NdrDecoder;
use crate::encoder::NdrEncoder;
use crate::error::Result;

/// Static wire facts shared by the encode and decode sides of a type.
pub trait NdrType {
    /// Alignment of the type's primary part (1, 2, 4 or 8); a structure's is its largest member's.
    const ALIGN: usize;
    /// Smallest number of bytes the primary part can occupy; used to bound counts read from the
    /// wire before allocating.
    const MIN_WIRE_SIZE: usize;
}

/// Encoding in two phases, so that composites can place deferred pointer referents correctly.
///
/// The *primary* part is what appears inline (scalars, referent ids, inline arrays); the
/// *deferred* part holds the referents of embedded pointers, written after the outermost
/// structure that contains them, in member order.
pub trait NdrEncode: NdrType {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()>;

    fn encode_deferred(&self, _enc: &mut NdrEncoder) -> Result<()> {
        Ok(())
    }
}

/// Decoding in the same two phases as [`NdrEncode`].
///
/// [`Self::Primary`] is what the primary phase knows (e.g. "this pointer is non-null") before
/// the deferred referents have been read.
pub trait NdrDecode: NdrType + Sized {
    type Primary;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self::Primary>;

    fn decode_deferred(primary: Self::Primary, dec: &mut NdrDecoder<'_>) -> Result<Self>;
}

/// Conformant types (conformant and conformant-varying arrays, `[string]`s), whose maximum count
/// moves to the start of an enclosing structure when they are its last member.
pub trait NdrConformant: NdrEncode + NdrDecode {
    /// The conformance (maximum count) to write.
    fn max_count(&self) -> Result<u32>;

    /// Everything of the primary part that follows the maximum count.
    fn encode_body(&self, enc: &mut NdrEncoder) -> Result<()>;

    /// Reads what [`Self::encode_body`] wrote, given the conformance read earlier at `offset`.
    fn decode_body(
        dec: &mut NdrDecoder<'_>,
        max_count: u32,
        offset: usize,
    ) -> Result<Self::Primary>;
}

/// Largest of a list of alignments; usable in `const` position by the structure macros.
pub const fn max_align(mut aligns: &[usize]) -> usize {
    let mut max = 1;
    while let [first, rest @ ..] = aligns {
        if *first > max {
            max = *first;
        }
        aligns = rest;
    }
    max
}

/// Sum of minimum wire sizes; usable in `const` position by the structure macros.
pub const fn sum_sizes(mut sizes: &[usize]) -> usize {
    let mut sum = 0;
    while let [first, rest @ ..] = sizes {
        sum += *first;
        sizes = rest;
    }
    sum
}
