//! Scalars and GUIDs.

use uuid::Uuid;

use crate::decoder::NdrDecoder;
use crate::encoder::NdrEncoder;
use crate::error::Result;
use crate::traits::{NdrDecode, NdrEncode, NdrType};

/// Each scalar is written through the unsigned integer of its size, reinterpreting the bits, so
/// signed and floating-point types share the byte-order handling of the decoder.
macro_rules! impl_scalar {
    ($($t:ty => $via:ty, $write:ident, $read:ident;)*) => {$(
        impl NdrType for $t {
            const ALIGN: usize = core::mem::size_of::<$t>();
            const MIN_WIRE_SIZE: usize = core::mem::size_of::<$t>();
        }

        impl NdrEncode for $t {
            fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
                enc.$write(<$via>::from_ne_bytes(self.to_ne_bytes()));
                Ok(())
            }
        }

        impl NdrDecode for $t {
            type Primary = Self;

            fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self> {
                Ok(<$t>::from_ne_bytes(dec.$read()?.to_ne_bytes()))
            }

            fn decode_deferred(primary: Self, _dec: &mut NdrDecoder<'_>) -> Result<Self> {
                Ok(primary)
            }
        }
    )*};
}

impl_scalar! {
    u8 => u8, write_u8, read_u8;
    i8 => u8, write_u8, read_u8;
    u16 => u16, write_u16, read_u16;
    i16 => u16, write_u16, read_u16;
    u32 => u32, write_u32, read_u32;
    i32 => u32, write_u32, read_u32;
    u64 => u64, write_u64, read_u64;
    i64 => u64, write_u64, read_u64;
    f32 => u32, write_u32, read_u32;
    f64 => u64, write_u64, read_u64;
}

/// NDR `boolean`: one octet, any non-zero value is true.
impl NdrType for bool {
    const ALIGN: usize = 1;
    const MIN_WIRE_SIZE: usize = 1;
}

impl NdrEncode for bool {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        enc.write_u8(u8::from(*self));
        Ok(())
    }
}

impl NdrDecode for bool {
    type Primary = Self;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self> {
        Ok(dec.read_u8()? != 0)
    }

    fn decode_deferred(primary: Self, _dec: &mut NdrDecoder<'_>) -> Result<Self> {
        Ok(primary)
    }
}

/// A GUID is the structure `{ u32 Data1; u16 Data2; u16 Data3; u8 Data4[8]; }`, so its first
/// three fields follow the stream's integer byte order.
impl NdrType for Uuid {
    const ALIGN: usize = 4;
    const MIN_WIRE_SIZE: usize = 16;
}

impl NdrEncode for Uuid {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        let (d1, d2, d3, d4) = self.as_fields();
        enc.write_u32(d1);
        enc.write_u16(d2);
        enc.write_u16(d3);
        enc.write_bytes(d4);
        Ok(())
    }
}

impl NdrDecode for Uuid {
    type Primary = Self;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<Self> {
        let d1 = dec.read_u32()?;
        let d2 = dec.read_u16()?;
        let d3 = dec.read_u16()?;
        let d4: [u8; 8] = dec.read_array()?;
        Ok(Uuid::from_fields(d1, d2, d3, &d4))
    }

    fn decode_deferred(primary: Self, _dec: &mut NdrDecoder<'_>) -> Result<Self> {
        Ok(primary)
    }
}
