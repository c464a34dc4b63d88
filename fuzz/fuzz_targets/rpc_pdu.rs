//! DCE/RPC PDUs as a server sends them: the header and body decoder, the sealed-PDU path
//! (`sec_trailer`, auth padding, `AuthRegions`), fragment reassembly of whatever decodes, and
//! the endpoint mapper's `ept_map` response in a reassembled stub.
//! Errors are fine; a panic, a hang or an unbounded allocation is a bug.
#![no_main]

use idbridge_rpc::{
    decode_pdu, decode_sealed, AuthRegions, AuthType, EptMapResponse, Pdu, PduBody, PduProtection,
    Reassembler, RpcError,
};
use libfuzzer_sys::fuzz_target;

/// Accepts every verifier as is, so the fuzzer gets past unsealing (a real provider would
/// reject a forged signature first). It checks the one promise `AuthRegions` makes to every
/// provider: the regions are ordered and inside the PDU.
struct Transparent;

impl PduProtection for Transparent {
    fn token_len(&self) -> usize {
        16
    }

    fn seal(&mut self, _pdu: &mut [u8], _regions: &AuthRegions) -> Result<(), RpcError> {
        Ok(())
    }

    fn unseal(&mut self, pdu: &mut [u8], r: &AuthRegions) -> Result<(), RpcError> {
        assert!(
            r.sealed.start <= r.sealed.end
                && r.sealed.end <= r.signed.end
                && r.signed.end == r.token.start
                && r.token.start <= r.token.end
                && r.token.end <= pdu.len(),
            "auth regions {r:?} outside a {}-byte PDU",
            pdu.len()
        );
        Ok(())
    }
}

fuzz_target!(|bytes: &[u8]| {
    let mut plain = Reassembler::new(1 << 20);
    let mut sealed = Reassembler::new(1 << 20);
    let mut rest = bytes;
    while let Ok((pdu, used)) = decode_pdu(rest) {
        // As the endpoint mapper client reads: plain fragments, reassembled.
        if let Ok(Some(call)) = plain.push(pdu) {
            ept_map(call);
        }
        // As the DRSUAPI client reads: one whole fragment at a time, unsealed, reassembled.
        let frame = rest.get(..used).unwrap_or(rest).to_vec();
        if let Ok(pdu) = decode_sealed(frame, AuthType::NTLMSSP, &mut Transparent) {
            if let Ok(Some(call)) = sealed.push(pdu) {
                ept_map(call);
            }
        }
        match rest.get(used.max(1)..) {
            Some(next) if !next.is_empty() => rest = next,
            _ => break,
        }
    }
});

fn ept_map(call: Pdu) {
    if let PduBody::Response(response) = call.body {
        if let Ok(epm) = EptMapResponse::decode(&response.stub) {
            let _ = epm.tcp_ports();
        }
    }
}
