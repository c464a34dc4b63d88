use std::any::Any;
use std::collections::HashMap;
use std::rc::Rc;

use crate::error::{NdrError, Result};
use crate::traits::NdrEncode;
use crate::DEFAULT_MAX_DEPTH;

/// First referent id handed out, as Windows does; ids then step by 4.
const FIRST_REFERENT_ID: u32 = 0x0002_0000;

/// Writes an NDR20 little-endian stream. Alignment is relative to the start of the stub.
#[derive(Debug)]
pub struct NdrEncoder {
    buf: Vec<u8>,
    next_referent_id: u32,
    depth: usize,
    max_depth: usize,
    /// Full pointers by referent address.
    full_pointers: HashMap<usize, FullPointer>,
}

/// A full pointer's referent as the encoder knows it. The encoder holds a reference to it so
/// that its address stays taken: a referent dropped while the stub is still being written
/// (a temporary) must not lend its address to another one, which would alias the two.
#[derive(Debug)]
struct FullPointer {
    id: u32,
    /// Its referent is still to be written.
    pending: bool,
    _held: Rc<dyn Any>,
}

impl Default for NdrEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NdrEncoder {
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            next_referent_id: FIRST_REFERENT_ID,
            depth: 0,
            max_depth: DEFAULT_MAX_DEPTH,
            full_pointers: HashMap::new(),
        }
    }

    /// Encodes `value` as a top-level parameter: its primary part followed by its deferred part.
    ///
    /// Calling this once per `[in]` parameter, in order, yields the request stub. A top-level
    /// `[ref]` pointer has no wire representation: pass its referent.
    pub fn encode<T: NdrEncode + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.encode_primary(self)?;
        value.encode_deferred(self)
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub fn position(&self) -> usize {
        self.buf.len()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Pads with zero bytes up to a multiple of `align` (1, 2, 4 or 8).
    pub fn align(&mut self, align: usize) {
        let pad = padding(self.buf.len(), align);
        self.buf.resize(self.buf.len() + pad, 0);
    }

    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn write_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn write_u16(&mut self, v: u16) {
        self.align(2);
        self.write_bytes(&v.to_le_bytes());
    }

    pub fn write_u32(&mut self, v: u32) {
        self.align(4);
        self.write_bytes(&v.to_le_bytes());
    }

    pub fn write_u64(&mut self, v: u64) {
        self.align(8);
        self.write_bytes(&v.to_le_bytes());
    }

    /// Writes a 32-bit count (conformance, variance, offset), rejecting lengths that overflow it.
    pub fn write_count(&mut self, what: &'static str, len: usize) -> Result<()> {
        let count = u32::try_from(len).map_err(|_| NdrError::TooLong { what, len })?;
        self.write_u32(count);
        Ok(())
    }

    /// Writes a fresh non-null referent id for a unique or ref pointer.
    pub fn write_referent_id(&mut self) {
        let id = self.next_referent_id;
        self.next_referent_id = self.next_referent_id.wrapping_add(4);
        self.write_u32(id);
    }

    /// Writes the referent id of a full pointer to `referent`; the same referent always gets
    /// the same id.
    pub(crate) fn write_full_pointer<T: 'static>(&mut self, referent: &Rc<T>) {
        let address = full_pointer_address(referent);
        let id = match self.full_pointers.get(&address) {
            Some(known) => known.id,
            None => {
                let id = self.next_referent_id;
                self.next_referent_id = self.next_referent_id.wrapping_add(4);
                let held: Rc<dyn Any> = Rc::clone(referent) as Rc<dyn Any>;
                self.full_pointers.insert(
                    address,
                    FullPointer {
                        id,
                        pending: true,
                        _held: held,
                    },
                );
                id
            }
        };
        self.write_u32(id);
    }

    /// True exactly once per full-pointer referent: the first deferred visit writes it.
    pub(crate) fn take_full_pointer_referent<T>(&mut self, referent: &Rc<T>) -> bool {
        match self.full_pointers.get_mut(&full_pointer_address(referent)) {
            Some(known) => core::mem::replace(&mut known.pending, false),
            None => false,
        }
    }

    /// Runs `f` one pointer level deeper, so that pathological nesting errors out instead of
    /// overflowing the stack.
    pub(crate) fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if self.depth >= self.max_depth {
            return Err(NdrError::DepthExceeded {
                max: self.max_depth,
                offset: self.buf.len(),
            });
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }
}

/// Bytes needed after `pos` to reach a multiple of `align`.
pub(crate) fn padding(pos: usize, align: usize) -> usize {
    match align {
        0 | 1 => 0,
        a => (a - pos % a) % a,
    }
}

fn full_pointer_address<T>(referent: &Rc<T>) -> usize {
    Rc::as_ptr(referent).cast::<()>() as usize
}
