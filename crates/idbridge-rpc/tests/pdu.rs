//! PDU codec: hand-built captures from the C706/MS-RPCE layouts, round trips and hostile input.

use idbridge_rpc::{
    auth_pad_length, decode_pdu, pfc, AuthLevel, AuthRegions, AuthType, AuthVerifier, Bind,
    BindAck, BindNak, ContextResult, ContextResultCode, Fault, FaultStatus, PacketType, Pdu,
    PduBody, PduHeader, PresentationContext, Request, Response, RpcError, DRSUAPI, EPM, NDR20,
};
use proptest::prelude::*;
use uuid::uuid;

fn epm_bind() -> Pdu {
    Pdu::new(
        1,
        PduBody::Bind(Bind {
            max_xmit_frag: 4280,
            max_recv_frag: 4280,
            assoc_group_id: 0,
            contexts: vec![PresentationContext {
                context_id: 0,
                abstract_syntax: EPM,
                transfer_syntaxes: vec![NDR20],
            }],
        }),
    )
}

#[rustfmt::skip]
const EPM_BIND: [u8; 72] = [
    5, 0, 11, 3, 0x10, 0, 0, 0, 72, 0, 0, 0, 1, 0, 0, 0, // header: bind, FIRST|LAST, LE
    0xb8, 0x10, 0xb8, 0x10, 0, 0, 0, 0,                 // max xmit/recv 4280, assoc group 0
    1, 0, 0, 0,                                         // one context
    0, 0, 1, 0,                                         // context id 0, one transfer syntax
    0x08, 0x83, 0xaf, 0xe1, 0x1f, 0x5d, 0xc9, 0x11,     // e1af8308-5d1f-11c9-
    0x91, 0xa4, 0x08, 0x00, 0x2b, 0x14, 0xa0, 0xfa,     // 91a4-08002b14a0fa
    3, 0, 0, 0,                                         // v3.0
    0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11,     // 8a885d04-1ceb-11c9-
    0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10, 0x48, 0x60,     // 9fe8-08002b104860
    2, 0, 0, 0,                                         // v2.0
];

#[rustfmt::skip]
const EPM_BIND_ACK: [u8; 60] = [
    5, 0, 12, 3, 0x10, 0, 0, 0, 60, 0, 0, 0, 1, 0, 0, 0,
    0xb8, 0x10, 0xb8, 0x10, 0x34, 0x12, 0, 0, // max frags, assoc group 0x1234
    4, 0, b'1', b'3', b'5', 0,                // sec_addr "135"
    0, 0,                                     // pad to 4
    1, 0, 0, 0,                               // one result
    0, 0, 0, 0,                               // acceptance, reason 0
    0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11,
    0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10, 0x48, 0x60,
    2, 0, 0, 0,
];

#[test]
fn bind_matches_the_hand_built_capture() {
    assert_eq!(epm_bind().encode().unwrap(), EPM_BIND);
    assert_eq!(decode_pdu(&EPM_BIND).unwrap(), (epm_bind(), 72));
}

#[test]
fn bind_ack_decodes_from_the_hand_built_capture() {
    let (pdu, used) = decode_pdu(&EPM_BIND_ACK).unwrap();
    assert_eq!(used, 60);
    let PduBody::BindAck(ack) = &pdu.body else {
        panic!("{pdu:?}");
    };
    assert_eq!(ack.secondary_address, "135");
    assert_eq!(ack.assoc_group_id, 0x1234);
    assert_eq!(
        ack.results,
        [ContextResult {
            result: ContextResultCode::ACCEPTANCE,
            reason: 0,
            transfer_syntax: NDR20
        }]
    );
    assert_eq!(pdu.encode().unwrap(), EPM_BIND_ACK);
}

#[test]
fn request_with_object_sets_the_flag_and_round_trips() {
    let pdu = Pdu {
        call_id: 9,
        flags: pfc::SINGLE_FRAG | pfc::OBJECT_UUID,
        body: PduBody::Request(Request {
            alloc_hint: 3,
            context_id: 1,
            opnum: 3,
            object: Some(uuid!("00112233-4455-6677-8899-aabbccddeeff")),
            stub: vec![1, 2, 3],
        }),
        auth: None,
    };
    let bytes = pdu.encode().unwrap();
    assert_eq!(bytes.len(), 16 + 8 + 16 + 3);
    assert_eq!(&bytes[..4], [5, 0, 0, 0x83]);
    assert_eq!(&bytes[20..24], [1, 0, 3, 0]);
    assert_eq!(decode_pdu(&bytes).unwrap().0, pdu);
}

fn all_bodies() -> Vec<PduBody> {
    let PduBody::Bind(bind) = epm_bind().body else {
        unreachable!()
    };
    let ack = BindAck {
        max_xmit_frag: 5840,
        max_recv_frag: 5840,
        assoc_group_id: 7,
        secondary_address: String::new(),
        results: vec![ContextResult {
            result: ContextResultCode::PROVIDER_REJECTION,
            reason: 2,
            transfer_syntax: DRSUAPI,
        }],
    };
    vec![
        PduBody::Request(Request {
            alloc_hint: 0,
            context_id: 0,
            opnum: 0,
            object: None,
            stub: vec![],
        }),
        PduBody::Response(Response {
            alloc_hint: 5,
            context_id: 2,
            cancel_count: 0,
            stub: vec![5; 5],
        }),
        PduBody::Fault(Fault {
            alloc_hint: 0,
            context_id: 0,
            cancel_count: 0,
            flags: 0,
            status: FaultStatus::OP_RNG_ERROR,
            stub: vec![],
        }),
        PduBody::Bind(bind.clone()),
        PduBody::AlterContext(bind),
        PduBody::BindAck(ack.clone()),
        PduBody::AlterContextResp(ack),
        PduBody::BindNak(BindNak {
            reject_reason: 4,
            versions: vec![(5, 0)],
        }),
        PduBody::Auth3,
        PduBody::Shutdown,
        PduBody::CoCancel,
        PduBody::Orphaned,
    ]
}

#[test]
fn every_body_round_trips_with_and_without_a_verifier() {
    for body in all_bodies() {
        let stub_len = body.stub().map_or(0, <[u8]>::len);
        let mut pdu = Pdu::new(77, body);
        let bytes = pdu.encode().unwrap();
        assert_eq!(decode_pdu(&bytes).unwrap(), (pdu.clone(), bytes.len()));

        pdu.auth = Some(AuthVerifier {
            auth_type: AuthType::NTLMSSP,
            auth_level: AuthLevel::PKT_PRIVACY,
            pad_length: auth_pad_length(stub_len),
            context_id: 0,
            token: vec![0xaa; 16],
        });
        let bytes = pdu.encode().unwrap();
        let header = PduHeader::decode(&bytes).unwrap();
        assert_eq!(usize::from(header.frag_length), bytes.len());
        assert_eq!(header.auth_length, 16);
        assert_eq!(header.ptype, pdu.body.packet_type());
        assert_eq!(decode_pdu(&bytes).unwrap().0, pdu);
    }
}

#[test]
fn sealed_stubs_are_padded_to_16_bytes() {
    assert_eq!(auth_pad_length(0), 0);
    assert_eq!(auth_pad_length(1), 15);
    assert_eq!(auth_pad_length(16), 0);
    assert_eq!(auth_pad_length(33), 15);
    let mut pdu = Pdu::new(
        1,
        PduBody::Request(Request {
            alloc_hint: 5,
            context_id: 0,
            opnum: 1,
            object: None,
            stub: vec![1; 5],
        }),
    );
    pdu.auth = Some(AuthVerifier {
        auth_type: AuthType::NTLMSSP,
        auth_level: AuthLevel::PKT_PRIVACY,
        pad_length: auth_pad_length(5),
        context_id: 0,
        token: vec![0; 16],
    });
    let bytes = pdu.encode().unwrap();
    // 24-byte request header, 16 bytes of stub+pad, 8-byte sec_trailer, 16-byte token.
    assert_eq!(bytes.len(), 24 + 16 + 8 + 16);
    assert_eq!(&bytes[40..44], [10, 6, 11, 0]);
    let regions = AuthRegions::of(&bytes).unwrap();
    assert_eq!(regions.sealed, 24..40);
    assert_eq!(regions.signed, 0..48);
    assert_eq!(regions.token, 48..64);
    assert!(AuthRegions::of(&EPM_BIND).is_err());
}

#[test]
fn fault_status_is_named() {
    assert_eq!(
        FaultStatus::NDR.to_string(),
        "0x000006f7 (nca_s_fault_ndr (bad stub data))"
    );
    assert_eq!(FaultStatus(0xdead).to_string(), "0x0000dead");
}

#[test]
fn incomplete_and_malformed_are_distinct() {
    for n in 0..EPM_BIND.len() {
        let err = decode_pdu(&EPM_BIND[..n]).unwrap_err();
        assert!(err.is_incomplete(), "{n}: {err}");
    }
    let mut two = EPM_BIND.to_vec();
    two.extend_from_slice(&EPM_BIND);
    assert_eq!(decode_pdu(&two).unwrap().1, 72);

    let mut short = EPM_BIND;
    short[8] = 15;
    assert!(matches!(decode_pdu(&short), Err(RpcError::Malformed(_))));

    let mut auth_too_long = EPM_BIND;
    auth_too_long[10] = 100;
    assert!(matches!(
        decode_pdu(&auth_too_long),
        Err(RpcError::Malformed(_))
    ));

    let mut version = EPM_BIND;
    version[0] = 4;
    assert!(matches!(
        decode_pdu(&version),
        Err(RpcError::Version { major: 4, .. })
    ));

    let mut ptype = EPM_BIND;
    ptype[2] = 99;
    assert_eq!(
        decode_pdu(&ptype).unwrap_err(),
        RpcError::UnknownPacketType(99)
    );

    // Verifier of 8 bytes whose trailer claims 200 bytes of padding.
    let mut bad_pad = Pdu::new(1, all_bodies().remove(1));
    bad_pad.auth = Some(AuthVerifier {
        token: vec![0; 8],
        ..AuthVerifier::default()
    });
    let mut bytes = bad_pad.encode().unwrap();
    let pad_at = bytes.len() - 8 - 6;
    bytes[pad_at] = 200;
    assert!(matches!(decode_pdu(&bytes), Err(RpcError::Malformed(_))));
}

#[test]
fn big_endian_headers_are_understood() {
    let mut be = EPM_BIND;
    be[4] = 0x00;
    be[8..10].copy_from_slice(&72u16.to_be_bytes());
    be[12..16].copy_from_slice(&1u32.to_be_bytes());
    let header = PduHeader::decode(&be).unwrap();
    assert_eq!((header.frag_length, header.call_id), (72, 1));
    assert_eq!(header.ptype, PacketType::Bind);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_pdu(&bytes);
    }

    #[test]
    fn corrupted_pdus_never_panic(
        which in 0usize..12,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut pdu = Pdu::new(1, all_bodies().remove(which));
        pdu.auth = Some(AuthVerifier { token: vec![1; 16], ..AuthVerifier::default() });
        let mut bytes = pdu.encode().unwrap();
        for (index, byte) in flips {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok((_, used)) = decode_pdu(&bytes) {
            prop_assert!(used <= bytes.len());
        }
        if let Ok(regions) = AuthRegions::of(&bytes) {
            prop_assert!(regions.sealed.end <= regions.signed.end);
            prop_assert!(regions.token.end <= bytes.len());
        }
    }
}
