//! DCE/RPC PDUs as a server sends them: the header and body decoder, then fragment reassembly
//! of whatever decodes. Errors are fine; a panic, a hang or an unbounded allocation is a bug.
#![no_main]

use idbridge_rpc::{decode_pdu, Reassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut reassembler = Reassembler::new(1 << 20);
    let mut rest = bytes;
    while let Ok((pdu, used)) = decode_pdu(rest) {
        let _ = reassembler.push(pdu);
        match rest.get(used.max(1)..) {
            Some(next) if !next.is_empty() => rest = next,
            _ => break,
        }
    }
});
