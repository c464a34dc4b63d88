//! Endpoint mapper: towers and the `ept_map` stubs.

use std::net::Ipv4Addr;

use idbridge_ndr::{ByteArray, ContextHandle};
use idbridge_rpc::{EptMapRequest, EptMapResponse, TcpTower, Twr, DRSUAPI, EPM};
use proptest::prelude::*;
use uuid::uuid;

fn drsuapi_tower(port: u16) -> TcpTower {
    TcpTower {
        interface: DRSUAPI,
        port,
        address: Ipv4Addr::new(127, 0, 0, 1),
    }
}

#[test]
fn drsuapi_identity_is_the_one_in_ms_drsr() {
    assert_eq!(DRSUAPI.uuid, uuid!("e3514235-4b06-11d1-ab04-00c04fc2dcd2"));
    assert_eq!((DRSUAPI.major, DRSUAPI.minor), (4, 0));
    assert_eq!((EPM.major, EPM.minor), (3, 0));
}

#[test]
fn tcp_tower_has_five_floors_in_the_documented_layout() {
    let octets = drsuapi_tower(49667).to_octets();
    assert_eq!(octets.len(), 75);
    #[rustfmt::skip]
    let floor1 = [
        5, 0,                                               // five floors
        19, 0, 0x0d,                                        // LHS: 19 bytes, UUID protocol
        0x35, 0x42, 0x51, 0xe3, 0x06, 0x4b, 0xd1, 0x11,     // e3514235-4b06-11d1-
        0xab, 0x04, 0x00, 0xc0, 0x4f, 0xc2, 0xdc, 0xd2,     // ab04-00c04fc2dcd2
        4, 0,                                               // major version
        2, 0, 0, 0,                                         // RHS: minor version
    ];
    assert_eq!(&octets[..27], floor1);
    #[rustfmt::skip]
    let tail = [
        1, 0, 0x0b, 2, 0, 0, 0,             // RPC connection-oriented, minor 0
        1, 0, 0x07, 2, 0, 0xc2, 0x03,       // TCP port 49667, big-endian
        1, 0, 0x09, 4, 0, 127, 0, 0, 1,     // IPv4 address
    ];
    assert_eq!(&octets[52..], tail);
    assert_eq!(
        TcpTower::from_octets(&octets).unwrap(),
        Some(drsuapi_tower(49667))
    );
}

#[test]
fn ept_map_request_stub_layout() {
    let stub = EptMapRequest::new(DRSUAPI).encode().unwrap();
    // object: id + nil GUID; tower: id, max_count, length, 75 octets; pad; handle; max_towers.
    assert_eq!(stub.len(), 4 + 16 + 4 + 4 + 4 + 75 + 1 + 20 + 4);
    assert_eq!(&stub[..4], [0, 0, 2, 0]);
    assert_eq!(&stub[4..20], [0; 16]);
    assert_eq!(&stub[20..32], [4, 0, 2, 0, 75, 0, 0, 0, 75, 0, 0, 0]);
    assert_eq!(&stub[stub.len() - 4..], [4, 0, 0, 0]);
}

#[test]
fn ept_map_response_round_trips_and_yields_ports() {
    let response = EptMapResponse {
        entry_handle: ContextHandle {
            attributes: 0,
            uuid: uuid!("11111111-2222-3333-4444-555555555555"),
        },
        towers: vec![
            Twr {
                tower_length: 3,
                tower_octet_string: ByteArray(vec![1, 0, 0]),
            },
            Twr {
                tower_length: 75,
                tower_octet_string: ByteArray(drsuapi_tower(1025).to_octets()),
            },
        ],
        status: 0,
    };
    let stub = response.encode().unwrap();
    assert_eq!(EptMapResponse::decode(&stub).unwrap(), response);
    // The first tower is a truncated one-floor tower: an error, not a panic.
    assert!(response.tcp_ports().is_err());
    let only_tcp = EptMapResponse {
        towers: response.towers[1..].to_vec(),
        ..response
    };
    assert_eq!(only_tcp.tcp_ports().unwrap(), [1025]);
}

proptest! {
    #[test]
    fn towers_round_trip(port in any::<u16>(), ip in any::<u32>(), uuid in any::<u128>(), major in any::<u16>(), minor in any::<u16>()) {
        let tower = TcpTower {
            interface: idbridge_rpc::SyntaxId::new(uuid::Uuid::from_u128(uuid), major, minor),
            port,
            address: Ipv4Addr::from(ip),
        };
        prop_assert_eq!(TcpTower::from_octets(&tower.to_octets()).unwrap(), Some(tower));
    }

    #[test]
    fn hostile_towers_and_stubs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = TcpTower::from_octets(&bytes);
        let _ = EptMapResponse::decode(&bytes);
    }
}
