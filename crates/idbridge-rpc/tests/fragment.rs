//! Fragmentation and reassembly.

use idbridge_rpc::{
    auth_pad_length, decode_pdu, fragment, pfc, Fault, FaultStatus, Pdu, PduBody, PduHeader,
    Reassembler, Request, Response, RpcError,
};
use proptest::prelude::*;

fn request(stub: Vec<u8>) -> PduBody {
    PduBody::Request(Request {
        alloc_hint: 0,
        context_id: 1,
        opnum: 3,
        object: None,
        stub,
    })
}

fn response_fragment(call_id: u32, flags: u8, stub: Vec<u8>) -> Pdu {
    Pdu {
        call_id,
        flags,
        body: PduBody::Response(Response {
            alloc_hint: 0,
            context_id: 0,
            cancel_count: 0,
            stub,
        }),
        auth: None,
    }
}

#[test]
fn fragments_carry_first_last_and_alloc_hints() {
    let pdus = fragment(5, &request((0..100).collect()), 24 + 40, 0).unwrap();
    let flags: Vec<u8> = pdus.iter().map(|p| p.flags).collect();
    assert_eq!(flags, [pfc::FIRST_FRAG, 0, pfc::LAST_FRAG]);
    let hints: Vec<u32> = pdus
        .iter()
        .map(|p| match &p.body {
            PduBody::Request(r) => r.alloc_hint,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(hints, [100, 60, 20]);
    let single = fragment(5, &request(vec![]), 4280, 0).unwrap();
    assert_eq!(single.len(), 1);
    assert_eq!(single[0].flags, pfc::SINGLE_FRAG);
}

#[test]
fn authenticated_fragments_leave_room_and_stay_16_aligned() {
    let pdus = fragment(5, &request(vec![0; 1000]), 100, 24).unwrap();
    for pdu in &pdus {
        let len = pdu.body.stub().unwrap().len();
        assert!(24 + len + usize::from(auth_pad_length(len)) + 24 <= 100);
        assert!(len % 16 == 0 || pdu.flags & pfc::LAST_FRAG != 0);
    }
    assert!(matches!(
        fragment(5, &request(vec![1]), 30, 24),
        Err(RpcError::TooLarge { .. })
    ));
    assert!(matches!(
        fragment(5, &PduBody::Shutdown, 4280, 0),
        Err(RpcError::Unexpected(_))
    ));
}

#[test]
fn reassembler_rejects_broken_sequences() {
    let mut r = Reassembler::new(10);
    assert!(matches!(
        r.push(response_fragment(1, 0, vec![1])),
        Err(RpcError::OutOfOrder(_))
    ));
    assert_eq!(
        r.push(response_fragment(1, pfc::FIRST_FRAG, vec![1]))
            .unwrap(),
        None
    );
    assert_eq!(
        r.push(response_fragment(2, 0, vec![2])).unwrap_err(),
        RpcError::CallIdMismatch {
            expected: 1,
            got: 2
        }
    );
    assert!(r.is_idle(), "errors discard the partial call");

    r.push(response_fragment(1, pfc::FIRST_FRAG, vec![1]))
        .unwrap();
    assert!(matches!(
        r.push(response_fragment(1, pfc::FIRST_FRAG, vec![1])),
        Err(RpcError::OutOfOrder(_))
    ));

    r.push(response_fragment(1, pfc::FIRST_FRAG, vec![1]))
        .unwrap();
    let fault = Pdu::new(
        1,
        PduBody::Fault(Fault {
            alloc_hint: 0,
            context_id: 0,
            cancel_count: 0,
            flags: 0,
            status: FaultStatus::REMOTE_NO_MEMORY,
            stub: vec![],
        }),
    );
    assert_eq!(r.push(fault.clone()).unwrap(), Some(fault));
    assert!(r.is_idle());

    r.push(response_fragment(1, pfc::FIRST_FRAG, vec![0; 6]))
        .unwrap();
    assert!(matches!(
        r.push(response_fragment(1, 0, vec![0; 6])),
        Err(RpcError::TooLarge {
            len: 12,
            max: 10,
            ..
        })
    ));
    assert!(matches!(
        r.push(Pdu::new(1, PduBody::Shutdown)),
        Err(RpcError::Unexpected(_))
    ));
}

proptest! {
    #[test]
    fn split_then_reassemble_is_identity(
        stub in proptest::collection::vec(any::<u8>(), 0..3000),
        max_xmit in 25u16..1500,
        call_id in any::<u32>(),
    ) {
        let body = request(stub.clone());
        let pdus = fragment(call_id, &body, max_xmit, 0).unwrap();
        let mut r = Reassembler::new(stub.len());
        let mut whole = None;
        for pdu in pdus {
            prop_assert!(whole.is_none(), "fragments after LAST");
            let bytes = pdu.encode().unwrap();
            prop_assert!(bytes.len() <= usize::from(max_xmit));
            let header = PduHeader::decode(&bytes).unwrap();
            prop_assert_eq!(header.call_id, call_id);
            let (decoded, used) = decode_pdu(&bytes).unwrap();
            prop_assert_eq!(used, bytes.len());
            whole = r.push(decoded).unwrap();
        }
        let whole = whole.unwrap();
        prop_assert_eq!(whole.body.stub().unwrap(), &stub[..]);
        prop_assert_eq!(whole.flags & pfc::SINGLE_FRAG, pfc::SINGLE_FRAG);
        prop_assert!(r.is_idle());
    }
}
