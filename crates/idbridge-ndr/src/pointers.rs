//! Pointers (C706 14.3.10-14.3.12).
//!
//! An embedded pointer's primary part is its referent id; its referent is written in the
//! deferred phase. A top-level `[unique]` parameter encodes identically (id, then referent right
//! after it), so the same impls serve both; a top-level `[ref]` parameter is just its referent.

use std::rc::Rc;

use crate::decoder::NdrDecoder;
use crate::encoder::NdrEncoder;
use crate::error::{NdrError, Result};
use crate::traits::{NdrDecode, NdrEncode, NdrType};

/// Encodes a referent, primary then deferred, one nesting level down.
fn encode_referent<T: NdrEncode + ?Sized>(value: &T, enc: &mut NdrEncoder) -> Result<()> {
    enc.nested(|enc| enc.encode(value))
}

fn decode_referent<T: NdrDecode>(dec: &mut NdrDecoder<'_>) -> Result<T> {
    dec.nested(|dec| dec.decode())
}

/// `[unique]` pointer: `None` is the null pointer.
impl<T: NdrType> NdrType for Option<T> {
    const ALIGN: usize = 4;
    const MIN_WIRE_SIZE: usize = 4;
}

impl<T: NdrEncode> NdrEncode for Option<T> {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        match self {
            Some(_) => enc.write_referent_id(),
            None => enc.write_u32(0),
        }
        Ok(())
    }

    fn encode_deferred(&self, enc: &mut NdrEncoder) -> Result<()> {
        match self {
            Some(value) => encode_referent(value, enc),
            None => Ok(()),
        }
    }
}

impl<T: NdrDecode> NdrDecode for Option<T> {
    /// Whether the pointer is non-null.
    type Primary = bool;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<bool> {
        Ok(dec.read_u32()? != 0)
    }

    fn decode_deferred(non_null: bool, dec: &mut NdrDecoder<'_>) -> Result<Self> {
        non_null.then(|| decode_referent(dec)).transpose()
    }
}

/// Embedded `[ref]` pointer: never null on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ref<T>(pub T);

impl<T: NdrType> NdrType for Ref<T> {
    const ALIGN: usize = 4;
    const MIN_WIRE_SIZE: usize = 4;
}

impl<T: NdrEncode> NdrEncode for Ref<T> {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        enc.write_referent_id();
        Ok(())
    }

    fn encode_deferred(&self, enc: &mut NdrEncoder) -> Result<()> {
        encode_referent(&self.0, enc)
    }
}

impl<T: NdrDecode> NdrDecode for Ref<T> {
    type Primary = ();

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<()> {
        let offset = dec.position();
        match dec.read_u32()? {
            0 => Err(NdrError::NullRefPointer { offset }),
            _ => Ok(()),
        }
    }

    fn decode_deferred((): (), dec: &mut NdrDecoder<'_>) -> Result<Self> {
        decode_referent(dec).map(Ref)
    }
}

/// `[ptr]` (full) pointer: pointers to the same `Rc` share one referent id and the referent is
/// written once; decoding restores the sharing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FullPtr<T>(pub Option<Rc<T>>);

impl<T: NdrType> NdrType for FullPtr<T> {
    const ALIGN: usize = 4;
    const MIN_WIRE_SIZE: usize = 4;
}

impl<T: NdrEncode + 'static> NdrEncode for FullPtr<T> {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        match &self.0 {
            Some(rc) => enc.write_full_pointer(rc),
            None => enc.write_u32(0),
        }
        Ok(())
    }

    fn encode_deferred(&self, enc: &mut NdrEncoder) -> Result<()> {
        match &self.0 {
            Some(rc) if enc.take_full_pointer_referent(rc) => encode_referent(rc.as_ref(), enc),
            _ => Ok(()),
        }
    }
}

impl<T: NdrDecode + 'static> NdrDecode for FullPtr<T> {
    /// The referent id (0 for null).
    type Primary = u32;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<u32> {
        dec.read_u32()
    }

    fn decode_deferred(id: u32, dec: &mut NdrDecoder<'_>) -> Result<Self> {
        if id == 0 {
            return Ok(FullPtr(None));
        }
        if let Some(shared) = dec.full_pointer::<T>(id)? {
            return Ok(FullPtr(Some(shared)));
        }
        let referent = Rc::new(decode_referent::<T>(dec)?);
        dec.remember_full_pointer(id, Rc::clone(&referent));
        Ok(FullPtr(Some(referent)))
    }
}

/// `Box` is transparent on the wire; it exists so recursive types (linked lists) can be written.
impl<T: NdrType + ?Sized> NdrType for Box<T> {
    const ALIGN: usize = T::ALIGN;
    const MIN_WIRE_SIZE: usize = T::MIN_WIRE_SIZE;
}

impl<T: NdrEncode + ?Sized> NdrEncode for Box<T> {
    fn encode_primary(&self, enc: &mut NdrEncoder) -> Result<()> {
        self.as_ref().encode_primary(enc)
    }

    fn encode_deferred(&self, enc: &mut NdrEncoder) -> Result<()> {
        self.as_ref().encode_deferred(enc)
    }
}

impl<T: NdrDecode> NdrDecode for Box<T> {
    type Primary = T::Primary;

    fn decode_primary(dec: &mut NdrDecoder<'_>) -> Result<T::Primary> {
        T::decode_primary(dec)
    }

    fn decode_deferred(primary: T::Primary, dec: &mut NdrDecoder<'_>) -> Result<Self> {
        T::decode_deferred(primary, dec).map(Box::new)
    }
}
