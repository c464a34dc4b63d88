use std::any::Any;
use std::collections::HashMap;
use std::rc::Rc;

use crate::encoder::padding;
use crate::error::{NdrError, Result};
use crate::traits::NdrDecode;
use crate::DEFAULT_MAX_DEPTH;

/// Reads an NDR20 stream. Never panics and never allocates more than the input can justify.
#[derive(Debug)]
pub struct NdrDecoder<'a> {
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
    depth: usize,
    max_depth: usize,
    /// Full pointers already decoded: referent id -> referent.
    full_pointers: HashMap<u32, Rc<dyn Any>>,
}

impl<'a> NdrDecoder<'a> {
    /// A decoder for the default data representation (little-endian, ASCII, IEEE).
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            big_endian: false,
            depth: 0,
            max_depth: DEFAULT_MAX_DEPTH,
            full_pointers: HashMap::new(),
        }
    }

    /// A decoder honouring the PDU header's data representation label (C706 14.2).
    ///
    /// Both integer byte orders are supported; EBCDIC characters and non-IEEE floats are rejected.
    pub fn with_drep(buf: &'a [u8], drep: [u8; 4]) -> Result<Self> {
        let [int_char, float, _, _] = drep;
        let big_endian = match int_char >> 4 {
            0 => true,
            1 => false,
            _ => {
                return Err(NdrError::UnsupportedDrep {
                    drep,
                    detail: "unknown integer representation",
                })
            }
        };
        if int_char & 0x0f != 0 {
            return Err(NdrError::UnsupportedDrep {
                drep,
                detail: "only ASCII characters are supported",
            });
        }
        if float != 0 {
            return Err(NdrError::UnsupportedDrep {
                drep,
                detail: "only IEEE floating point is supported",
            });
        }
        Ok(Self {
            big_endian,
            ..Self::new(buf)
        })
    }

    /// Caps pointer nesting (linked lists count one level per node).
    pub fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// Decodes one top-level parameter: its primary part, then its deferred part.
    pub fn decode<T: NdrDecode>(&mut self) -> Result<T> {
        let primary = T::decode_primary(self)?;
        T::decode_deferred(primary, self)
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Skips alignment padding (its content is not checked, as in every mainstream runtime).
    pub fn align(&mut self, align: usize) -> Result<()> {
        let pad = padding(self.pos, align);
        self.take(pad).map(|_| ())
    }

    pub fn read_bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        self.take(n)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let truncated = NdrError::Truncated {
            offset: self.pos,
            needed: n,
            remaining: self.remaining(),
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let bytes = self.buf.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let offset = self.pos;
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| NdrError::Truncated {
            offset,
            needed: N,
            remaining: bytes.len(),
        })
    }

    pub fn read_u8(&mut self) -> Result<u8> {
        let [b] = self.read_array::<1>()?;
        Ok(b)
    }

    pub fn read_u16(&mut self) -> Result<u16> {
        self.align(2)?;
        let b = self.read_array()?;
        Ok(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    pub fn read_u32(&mut self) -> Result<u32> {
        self.align(4)?;
        let b = self.read_array()?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    pub fn read_u64(&mut self) -> Result<u64> {
        self.align(8)?;
        let b = self.read_array()?;
        Ok(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// Reads a 32-bit element count and checks, before anything is allocated, that `count`
    /// elements of at least `min_elem_size` bytes each fit in what is left of the input.
    pub fn read_count(&mut self, what: &'static str, min_elem_size: usize) -> Result<usize> {
        let offset = self.pos;
        let count = self.read_u32()?;
        self.check_count(what, offset, count, min_elem_size)
    }

    /// Bounds a count that was read earlier (e.g. hoisted conformance) against the input left.
    pub fn check_count(
        &self,
        what: &'static str,
        offset: usize,
        count: u32,
        min_elem_size: usize,
    ) -> Result<usize> {
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        self.check_len(what, offset, n, min_elem_size)?;
        Ok(n)
    }

    /// Checks that `n` elements of at least `min_elem_size` bytes fit in the remaining input.
    pub fn check_len(
        &self,
        what: &'static str,
        offset: usize,
        n: usize,
        min_elem_size: usize,
    ) -> Result<()> {
        let remaining = self.remaining();
        match n.checked_mul(min_elem_size.max(1)) {
            Some(bytes) if bytes <= remaining => Ok(()),
            _ => Err(NdrError::CountTooLarge {
                what,
                offset,
                count: u64::try_from(n).unwrap_or(u64::MAX),
                remaining,
            }),
        }
    }

    pub(crate) fn invalid(&self, what: &'static str, detail: impl Into<String>) -> NdrError {
        NdrError::Invalid {
            what,
            offset: self.pos,
            detail: detail.into(),
        }
    }

    pub(crate) fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= self.max_depth {
            return Err(NdrError::DepthExceeded {
                max: self.max_depth,
                offset: self.pos,
            });
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    pub(crate) fn full_pointer<T: 'static>(&self, id: u32) -> Result<Option<Rc<T>>> {
        match self.full_pointers.get(&id) {
            None => Ok(None),
            Some(any) => Rc::clone(any).downcast::<T>().map(Some).map_err(|_| {
                self.invalid(
                    "full pointer",
                    format!("referent id {id:#x} reused for a different type"),
                )
            }),
        }
    }

    pub(crate) fn remember_full_pointer<T: 'static>(&mut self, id: u32, referent: Rc<T>) {
        self.full_pointers.insert(id, referent);
    }
}
