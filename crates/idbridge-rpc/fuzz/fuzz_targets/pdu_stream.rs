//! Feeds arbitrary bytes through the receive path: PDUs decoded back to back from a stream,
//! their auth regions located, stub-bearing ones reassembled and `ept_map` replies parsed.
//! Any panic is a bug; whatever decodes must re-encode and decode to the same PDU.
#![no_main]

use idbridge_rpc::{decode_pdu, AuthRegions, EptMapResponse, Reassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut reassembler = Reassembler::new(1 << 16);
    while let Ok((pdu, used)) = decode_pdu(rest) {
        let _ = AuthRegions::of(rest);
        rest = rest.get(used..).unwrap_or_default();
        if let Ok(bytes) = pdu.encode() {
            assert_eq!(decode_pdu(&bytes).map(|(p, _)| p).as_ref(), Ok(&pdu));
        }
        if let Ok(Some(call)) = reassembler.push(pdu) {
            if let Some(stub) = call.body.stub() {
                let _ = EptMapResponse::decode(stub).map(|r| r.tcp_ports());
            }
        }
    }
});
