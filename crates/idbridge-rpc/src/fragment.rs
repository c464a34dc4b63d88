//! Splitting a call's stub into fragments and putting it back together (C706 12.4, 12.6.3).

use crate::auth::AUTH_PAD_ALIGNMENT;
use crate::error::RpcError;
use crate::pdu::{pfc, stub_offset, Pdu, PduBody};

impl PduBody {
    /// The stub of a request, response or fault.
    pub fn stub(&self) -> Option<&[u8]> {
        match self {
            Self::Request(r) => Some(&r.stub),
            Self::Response(r) => Some(&r.stub),
            Self::Fault(f) => Some(&f.stub),
            _ => None,
        }
    }

    fn stub_mut(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            Self::Request(r) => Some(&mut r.stub),
            Self::Response(r) => Some(&mut r.stub),
            Self::Fault(f) => Some(&mut f.stub),
            _ => None,
        }
    }

    fn set_alloc_hint(&mut self, hint: u32) {
        match self {
            Self::Request(r) => r.alloc_hint = hint,
            Self::Response(r) => r.alloc_hint = hint,
            Self::Fault(f) => f.alloc_hint = hint,
            _ => {}
        }
    }

    /// Bytes between the start of the PDU and the stub.
    fn stub_offset(&self) -> usize {
        let has_object = matches!(self, Self::Request(r) if r.object.is_some());
        stub_offset(self.packet_type(), has_object)
    }
}

/// Splits a request or response whose body carries the call's whole stub into PDUs no longer
/// than `max_xmit_frag`, flagged FIRST/LAST, each with `alloc_hint` = stub bytes still to come.
///
/// `auth_reserve` is the room each fragment must keep for an authentication verifier
/// (8-byte `sec_trailer` plus token, e.g. 8 + 16 for NTLMSSP); when non-zero, fragment stubs are
/// multiples of 16 bytes so only the last one needs auth padding, which then still fits. The
/// verifiers themselves are added by the caller, per fragment.
pub fn fragment(
    call_id: u32,
    body: &PduBody,
    max_xmit_frag: u16,
    auth_reserve: usize,
) -> Result<Vec<Pdu>, RpcError> {
    let stub = body
        .stub()
        .ok_or_else(|| RpcError::Unexpected(format!("{:?} has no stub", body.packet_type())))?;
    let mut room = usize::from(max_xmit_frag)
        .saturating_sub(body.stub_offset())
        .saturating_sub(auth_reserve);
    if auth_reserve > 0 {
        room -= room % AUTH_PAD_ALIGNMENT;
    }
    if room == 0 {
        return Err(RpcError::TooLarge {
            what: "PDU overhead",
            len: body.stub_offset() + auth_reserve,
            max: usize::from(max_xmit_frag),
        });
    }
    let chunk_count = stub.len().div_ceil(room).max(1);
    let mut chunks = stub.chunks(room);
    (0..chunk_count)
        .map(|i| {
            let chunk = chunks.next().unwrap_or_default();
            let mut flags = 0;
            if i == 0 {
                flags |= pfc::FIRST_FRAG;
            }
            if i + 1 == chunk_count {
                flags |= pfc::LAST_FRAG;
            }
            let remaining = stub.len() - i * room;
            let alloc_hint = u32::try_from(remaining).map_err(|_| RpcError::TooLarge {
                what: "stub",
                len: stub.len(),
                max: u32::MAX as usize,
            })?;
            let mut body = body.clone();
            body.set_alloc_hint(alloc_hint);
            if let Some(s) = body.stub_mut() {
                *s = chunk.to_vec();
            }
            Ok(Pdu {
                call_id,
                flags,
                body,
                auth: None,
            })
        })
        .collect()
}

/// Reassembles the fragments of one call at a time (a connection carries calls in sequence).
///
/// Feed it request, response or fault PDUs that have already been verified/unsealed; it
/// returns the whole call, as the first fragment with the complete stub, `LAST_FRAG` set and
/// no verifier. A single-fragment fault for the call in progress replaces it. Any error
/// discards the partial call.
#[derive(Debug)]
pub struct Reassembler {
    max_stub_len: usize,
    pending: Option<Pdu>,
}

impl Reassembler {
    /// `max_stub_len` bounds the reassembled stub, so a peer cannot make us buffer without end.
    pub fn new(max_stub_len: usize) -> Self {
        Self {
            max_stub_len,
            pending: None,
        }
    }

    /// True when no call is partially received.
    pub fn is_idle(&self) -> bool {
        self.pending.is_none()
    }

    pub fn push(&mut self, pdu: Pdu) -> Result<Option<Pdu>, RpcError> {
        let result = self.accept(pdu);
        if result.is_err() {
            self.pending = None;
        }
        result
    }

    fn accept(&mut self, mut pdu: Pdu) -> Result<Option<Pdu>, RpcError> {
        let chunk_len = pdu
            .body
            .stub()
            .ok_or_else(|| {
                RpcError::Unexpected(format!("{:?} cannot be fragmented", pdu.body.packet_type()))
            })?
            .len();
        let first = pdu.flags & pfc::FIRST_FRAG != 0;
        let last = pdu.flags & pfc::LAST_FRAG != 0;
        let Some(mut pending) = self.pending.take() else {
            if !first {
                return Err(RpcError::OutOfOrder(
                    "fragment without FIRST_FRAG starts a call",
                ));
            }
            self.check_len(chunk_len)?;
            pdu.auth = None;
            if last {
                return Ok(Some(pdu));
            }
            self.pending = Some(pdu);
            return Ok(None);
        };
        if pdu.call_id != pending.call_id {
            return Err(RpcError::CallIdMismatch {
                expected: pending.call_id,
                got: pdu.call_id,
            });
        }
        // A server may abandon a fragmented response with a fault: the fault ends the call.
        if matches!(pdu.body, PduBody::Fault(_)) && first && last {
            pdu.auth = None;
            return Ok(Some(pdu));
        }
        if first {
            return Err(RpcError::OutOfOrder(
                "FIRST_FRAG before the previous call's LAST_FRAG",
            ));
        }
        if pdu.body.packet_type() != pending.body.packet_type() {
            return Err(RpcError::Unexpected(format!(
                "{:?} fragment in a {:?} call",
                pdu.body.packet_type(),
                pending.body.packet_type()
            )));
        }
        let (Some(stub), Some(chunk)) = (pending.body.stub_mut(), pdu.body.stub()) else {
            return Err(RpcError::Unexpected("fragment without stub".into()));
        };
        self.check_len(stub.len().saturating_add(chunk.len()))?;
        stub.extend_from_slice(chunk);
        if last {
            pending.flags |= pfc::LAST_FRAG;
            return Ok(Some(pending));
        }
        self.pending = Some(pending);
        Ok(None)
    }

    fn check_len(&self, len: usize) -> Result<(), RpcError> {
        if len > self.max_stub_len {
            return Err(RpcError::TooLarge {
                what: "reassembled stub",
                len,
                max: self.max_stub_len,
            });
        }
        Ok(())
    }
}
