//! `[string]` conformant-varying character arrays (C706 14.3.4.2): maximum count, offset (always
//! 0), actual count, then the characters including the terminating NUL.

use crate::decoder::NdrDecoder;
use crate::encoder::NdrEncoder;
use crate::error::{NdrError, Result};
use crate::traits::{NdrConformant, NdrDecode, NdrEncode, NdrType};

/// `[string] wchar_t*` content: UTF-16 on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct WideString(pub String);

/// `[string] char*` content: single octets on the wire; must be valid UTF-8 (in practice ASCII).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct NarrowString(pub String);

impl WideString {
    fn units(&self) -> Vec<u16> {
        self.0.encode_utf16().chain([0]).collect()
    }

    fn from_units(units: &[u16]) -> Option<Self> {
        String::from_utf16(units).ok().map(Self)
    }
}

impl NarrowString {
    fn units(&self) -> Vec<u8> {
        self.0.bytes().chain([0]).collect()
    }

    fn from_units(units: &[u8]) -> Option<Self> {
        String::from_utf8(units.to_vec()).ok().map(Self)
    }
}

impl From<&str> for WideString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<&str> for NarrowString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Reads the variance and the characters of a string body, returning them without the NUL.
fn decode_units<C>(dec: &mut NdrDecoder<'_>, what: &'static str, max_count: u32) -> Result<Vec<C>>
where
    C: NdrDecode<Primary = C> + Default + PartialEq,
{
    let at = dec.position();
    let offset = dec.read_u32()?;
    let actual_at = dec.position();
    let actual = dec.read_u32()?;
    if offset != 0 || actual > max_count {
        return Err(NdrError::Invalid {
            what,
            offset: at,
            detail: format!("offset {offset}, actual count {actual}, maximum count {max_count}"),
        });
    }
    let count = dec.check_count(what, actual_at, actual, C::MIN_WIRE_SIZE)?;
    let mut units = (0..count)
        .map(|_| C::decode_primary(dec))
        .collect::<Result<Vec<C>>>()?;
    match units.pop() {
        Some(last) if last == C::default() => Ok(units),
        _ => Err(dec.invalid(what, "missing NUL terminator")),
    }
}

macro_rules! impl_string {
    ($t:ident, $unit:ty, $what:literal) => {
        impl NdrType for $t {
            const ALIGN: usize = 4;
            const MIN_WIRE_SIZE: usize = 12 + core::mem::size_of::<$unit>();
        }

        impl NdrConformant for $t {
            fn max_count(&self) -> Result<u32> {
                let len = self.units().len();
                u32::try_from(len).map_err(|_| NdrError::TooLong { what: $what, len })
            }

            fn encode_body(&self, enc: &mut NdrEncoder) -> Result<()> {
                let units = self.units();
                enc.write_u32(0);
                enc.write_count($what, units.len())?;
                units.iter().try_for_each(|u| u.encode_primary(enc))
            }

            fn decode_body(
                dec: &mut NdrDecoder<'_>,
                max_count: u32,
                _offset: usize,
            ) -> Result<Self> {
                let units = decode_units::<$unit>(dec, $what, max_count)?;
                Self::from_units(&units).ok_or_else(|| dec.invalid($what, "invalid characters"))
            }
        }

        impl NdrEncode for $t {
            fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
                crate::arrays::encode_conformant(self, enc)
            }
        }

        impl NdrDecode for $t {
            type Primary = Self;

            fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self> {
                crate::arrays::decode_conformant::<Self>(dec)
            }

            fn decode_deferred(primary: Self, _dec: &mut NdrDecoder<'_>) -> Result<Self> {
                Ok(primary)
            }
        }
    };
}

impl_string!(WideString, u16, "wide string");
impl_string!(NarrowString, u8, "narrow string");
