//! Fixed, conformant, varying and conformant-varying arrays and `[string]`s (C706 14.3.3-14.3.5).

use crate::decoder::NdrDecoder;
use crate::encoder::NdrEncoder;
use crate::error::{NdrError, Result};
use crate::traits::{max_align, NdrConformant, NdrDecode, NdrEncode, NdrType};

fn encode_elements_primary<T: NdrEncode>(items: &[T], enc: &mut NdrEncoder) -> Result<()> {
    items.iter().try_for_each(|item| item.encode_primary(enc))
}

fn encode_elements_deferred<T: NdrEncode>(items: &[T], enc: &mut NdrEncoder) -> Result<()> {
    items.iter().try_for_each(|item| item.encode_deferred(enc))
}

/// Decodes the primary parts of `count` elements; `count` must already be bounded.
fn decode_elements_primary<T: NdrDecode>(
    dec: &mut NdrDecoder<'_>,
    count: usize,
) -> Result<Vec<T::Primary>> {
    (0..count).map(|_| T::decode_primary(dec)).collect()
}

fn decode_elements_deferred<T: NdrDecode>(
    primaries: Vec<T::Primary>,
    dec: &mut NdrDecoder<'_>,
) -> Result<Vec<T>> {
    primaries
        .into_iter()
        .map(|p| T::decode_deferred(p, dec))
        .collect()
}

/// Reads the variance (offset, actual count) and checks it against the array's bound.
fn decode_variance(
    dec: &mut NdrDecoder<'_>,
    what: &'static str,
    bound: u64,
    min_elem_size: usize,
) -> Result<(u32, usize)> {
    let at = dec.position();
    let offset = dec.read_u32()?;
    let actual_at = dec.position();
    let actual = dec.read_u32()?;
    if u64::from(offset) + u64::from(actual) > bound {
        return Err(NdrError::Invalid {
            what,
            offset: at,
            detail: format!("offset {offset} + actual count {actual} exceeds bound {bound}"),
        });
    }
    let count = dec.check_count(what, actual_at, actual, min_elem_size)?;
    Ok((offset, count))
}

/// Checks an in-memory varying array before writing it.
fn encode_variance(
    enc: &mut NdrEncoder,
    what: &'static str,
    offset: u32,
    len: usize,
    bound: u64,
) -> Result<()> {
    let actual = u32::try_from(len).map_err(|_| NdrError::TooLong { what, len })?;
    if u64::from(offset) + u64::from(actual) > bound {
        return Err(NdrError::TooLong { what, len });
    }
    enc.write_u32(offset);
    enc.write_u32(actual);
    Ok(())
}

/// Fixed-size array `T[N]`: elements only.
impl<T: NdrType, const N: usize> NdrType for [T; N] {
    const ALIGN: usize = T::ALIGN;
    const MIN_WIRE_SIZE: usize = T::MIN_WIRE_SIZE * N;
}

impl<T: NdrEncode, const N: usize> NdrEncode for [T; N] {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_elements_primary(self, enc)
    }

    fn encode_deferred(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_elements_deferred(self, enc)
    }
}

impl<T: NdrDecode, const N: usize> NdrDecode for [T; N] {
    type Primary = Vec<T::Primary>;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self::Primary> {
        dec.check_len("fixed array", dec.position(), N, T::MIN_WIRE_SIZE)?;
        decode_elements_primary::<T>(dec, N)
    }

    fn decode_deferred(primary: Self::Primary, dec: &mut NdrDecoder<'_>) -> Result<Self> {
        let items = decode_elements_deferred::<T>(primary, dec)?;
        <[T; N]>::try_from(items).map_err(|_| dec.invalid("fixed array", "length mismatch"))
    }
}

/// Conformant array `[size_is(n)] T a[]`: maximum count, then elements.
impl<T: NdrType> NdrType for Vec<T> {
    const ALIGN: usize = max_align(&[4, T::ALIGN]);
    const MIN_WIRE_SIZE: usize = 4;
}

impl<T: NdrEncode + NdrDecode> NdrConformant for Vec<T> {
    fn max_count(&self) -> Result<u32> {
        u32::try_from(self.len()).map_err(|_| NdrError::TooLong {
            what: "conformant array",
            len: self.len(),
        })
    }

    fn encode_body(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_elements_primary(self, enc)
    }

    fn decode_body(
        dec: &mut NdrDecoder<'_>,
        max_count: u32,
        offset: usize,
    ) -> Result<Vec<T::Primary>> {
        let count = dec.check_count("conformant array", offset, max_count, T::MIN_WIRE_SIZE)?;
        decode_elements_primary::<T>(dec, count)
    }
}

impl<T: NdrEncode + NdrDecode> NdrEncode for Vec<T> {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_conformant(self, enc)
    }

    fn encode_deferred(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_elements_deferred(self, enc)
    }
}

impl<T: NdrEncode + NdrDecode> NdrDecode for Vec<T> {
    type Primary = Vec<T::Primary>;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self::Primary> {
        decode_conformant::<Self>(dec)
    }

    fn decode_deferred(primary: Self::Primary, dec: &mut NdrDecoder<'_>) -> Result<Self> {
        decode_elements_deferred::<T>(primary, dec)
    }
}

/// Primary part of a conformant type that is not embedded last in a structure.
pub(crate) fn encode_conformant<T: NdrConformant>(value: &T, enc: &mut NdrEncoder) -> Result<()> {
    enc.write_u32(value.max_count()?);
    value.encode_body(enc)
}

pub(crate) fn decode_conformant<T: NdrConformant>(dec: &mut NdrDecoder<'_>) -> Result<T::Primary> {
    let offset = dec.position();
    let max_count = dec.read_u32()?;
    T::decode_body(dec, max_count, offset)
}

/// Varying array `[length_is(n)] T a[N]`: offset, actual count, then the transmitted elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VaryingArray<T, const N: usize> {
    /// Index of the first transmitted element.
    pub offset: u32,
    pub items: Vec<T>,
}

impl<T: NdrType, const N: usize> NdrType for VaryingArray<T, N> {
    const ALIGN: usize = max_align(&[4, T::ALIGN]);
    const MIN_WIRE_SIZE: usize = 8;
}

impl<T: NdrEncode, const N: usize> NdrEncode for VaryingArray<T, N> {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_variance(
            enc,
            "varying array",
            self.offset,
            self.items.len(),
            N as u64,
        )?;
        encode_elements_primary(&self.items, enc)
    }

    fn encode_deferred(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_elements_deferred(&self.items, enc)
    }
}

impl<T: NdrDecode, const N: usize> NdrDecode for VaryingArray<T, N> {
    type Primary = (u32, Vec<T::Primary>);

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self::Primary> {
        let (offset, count) = decode_variance(dec, "varying array", N as u64, T::MIN_WIRE_SIZE)?;
        Ok((offset, decode_elements_primary::<T>(dec, count)?))
    }

    fn decode_deferred((offset, items): Self::Primary, dec: &mut NdrDecoder<'_>) -> Result<Self> {
        let items = decode_elements_deferred::<T>(items, dec)?;
        Ok(Self { offset, items })
    }
}

/// Conformant-varying array `[size_is(m), length_is(n)] T a[]`: maximum count, offset, actual
/// count, then the transmitted elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConformantVaryingArray<T> {
    pub max_count: u32,
    /// Index of the first transmitted element.
    pub offset: u32,
    pub items: Vec<T>,
}

impl<T> ConformantVaryingArray<T> {
    /// An array that transmits all of its elements.
    pub fn new(items: Vec<T>) -> Result<Self> {
        let max_count = u32::try_from(items.len()).map_err(|_| NdrError::TooLong {
            what: "conformant-varying array",
            len: items.len(),
        })?;
        Ok(Self {
            max_count,
            offset: 0,
            items,
        })
    }
}

impl<T: NdrType> NdrType for ConformantVaryingArray<T> {
    const ALIGN: usize = max_align(&[4, T::ALIGN]);
    const MIN_WIRE_SIZE: usize = 12;
}

impl<T: NdrEncode + NdrDecode> NdrConformant for ConformantVaryingArray<T> {
    fn max_count(&self) -> Result<u32> {
        Ok(self.max_count)
    }

    fn encode_body(&self, enc: &mut NdrEncoder) -> Result<()> {
        let bound = u64::from(self.max_count);
        encode_variance(
            enc,
            "conformant-varying array",
            self.offset,
            self.items.len(),
            bound,
        )?;
        encode_elements_primary(&self.items, enc)
    }

    fn decode_body(
        dec: &mut NdrDecoder<'_>,
        max_count: u32,
        _offset: usize,
    ) -> Result<Self::Primary> {
        let what = "conformant-varying array";
        let (offset, count) = decode_variance(dec, what, max_count.into(), T::MIN_WIRE_SIZE)?;
        Ok((max_count, offset, decode_elements_primary::<T>(dec, count)?))
    }
}

impl<T: NdrEncode + NdrDecode> NdrEncode for ConformantVaryingArray<T> {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_conformant(self, enc)
    }

    fn encode_deferred(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_elements_deferred(&self.items, enc)
    }
}

impl<T: NdrEncode + NdrDecode> NdrDecode for ConformantVaryingArray<T> {
    type Primary = (u32, u32, Vec<T::Primary>);

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self::Primary> {
        decode_conformant::<Self>(dec)
    }

    fn decode_deferred(
        (max_count, offset, items): Self::Primary,
        dec: &mut NdrDecoder<'_>,
    ) -> Result<Self> {
        let items = decode_elements_deferred::<T>(items, dec)?;
        Ok(Self {
            max_count,
            offset,
            items,
        })
    }
}

/// Conformant byte array, copied in bulk: the same wire form as `Vec<u8>`, for large opaque
/// blobs (attribute values, security descriptors) where per-element decoding would be slow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ByteArray(pub Vec<u8>);

impl NdrType for ByteArray {
    const ALIGN: usize = 4;
    const MIN_WIRE_SIZE: usize = 4;
}

impl NdrConformant for ByteArray {
    fn max_count(&self) -> Result<u32> {
        u32::try_from(self.0.len()).map_err(|_| NdrError::TooLong {
            what: "byte array",
            len: self.0.len(),
        })
    }

    fn encode_body(&self, enc: &mut NdrEncoder) -> Result<()> {
        enc.write_bytes(&self.0);
        Ok(())
    }

    fn decode_body(dec: &mut NdrDecoder<'_>, max_count: u32, offset: usize) -> Result<Self> {
        let len = dec.check_count("byte array", offset, max_count, 1)?;
        Ok(Self(dec.read_bytes(len)?.to_vec()))
    }
}

impl NdrEncode for ByteArray {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_conformant(self, enc)
    }
}

impl NdrDecode for ByteArray {
    type Primary = Self;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self> {
        decode_conformant::<Self>(dec)
    }

    fn decode_deferred(primary: Self, _dec: &mut NdrDecoder<'_>) -> Result<Self> {
        Ok(primary)
    }
}
