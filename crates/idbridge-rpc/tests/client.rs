//! The I/O edge against an in-process endpoint mapper on loopback, built from the pure codec.
//! The server answers in small fragments so the client's reassembly is exercised.

use std::net::{Ipv4Addr, SocketAddr};

use idbridge_ndr::{ByteArray, ContextHandle};
use idbridge_rpc::client::{ept_map_tcp_port, ClientError, Connection};
use idbridge_rpc::{
    fragment, BindAck, ContextResult, ContextResultCode, EptMapRequest, EptMapResponse, Fault,
    FaultStatus, Pdu, PduBody, Reassembler, Response, RpcError, TcpTower, Twr, DRSUAPI, NDR20,
};
use tokio::net::TcpListener;

fn unexpected(pdu: &Pdu) -> ClientError {
    RpcError::Unexpected(format!("{pdu:?}")).into()
}

/// Serves one connection: accepts the bind, checks the `ept_map` stub, then sends `reply`.
async fn serve_once(listener: TcpListener, reply: PduBody) -> Result<(), ClientError> {
    let (stream, _) = listener.accept().await?;
    let mut conn = Connection::new(stream);
    let bind = conn.recv().await?;
    let PduBody::Bind(bind) = bind.body else {
        return Err(unexpected(&bind));
    };
    let ack = BindAck {
        max_xmit_frag: 4280,
        max_recv_frag: 4280,
        assoc_group_id: 0x5678,
        secondary_address: "135".into(),
        results: vec![ContextResult {
            result: ContextResultCode::ACCEPTANCE,
            reason: 0,
            transfer_syntax: NDR20,
        }],
    };
    assert_eq!(bind.contexts.len(), 1);
    conn.send(&Pdu::new(1, PduBody::BindAck(ack))).await?;

    let mut reassembler = Reassembler::new(1 << 16);
    let request = loop {
        if let Some(pdu) = reassembler.push(conn.recv().await?)? {
            break pdu;
        }
    };
    let PduBody::Request(request) = request.body else {
        return Err(unexpected(&request));
    };
    assert_eq!(request.opnum, 3);
    assert_eq!(request.stub, EptMapRequest::new(DRSUAPI).encode()?);
    for pdu in fragment(2, &reply, 64, 0)? {
        conn.send(&pdu).await?;
    }
    Ok(())
}

async fn ept_map_against(reply: PduBody) -> Result<u16, ClientError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    let server = tokio::spawn(serve_once(listener, reply));
    let result = ept_map_tcp_port(addr, DRSUAPI).await;
    server.await.map_err(std::io::Error::other)??;
    result
}

#[tokio::test]
async fn client_maps_drsuapi_through_a_fragmented_reply() {
    let tower = TcpTower {
        interface: DRSUAPI,
        port: 49667,
        address: Ipv4Addr::LOCALHOST,
    };
    let stub = EptMapResponse {
        entry_handle: ContextHandle::default(),
        towers: vec![Twr {
            tower_length: 75,
            tower_octet_string: ByteArray(tower.to_octets()),
        }],
        status: 0,
    }
    .encode()
    .unwrap();
    let reply = PduBody::Response(Response {
        alloc_hint: 0,
        context_id: 0,
        cancel_count: 0,
        stub,
    });
    assert_eq!(ept_map_against(reply).await.unwrap(), 49667);
}

#[tokio::test]
async fn client_reports_faults() {
    let reply = PduBody::Fault(Fault {
        alloc_hint: 0,
        context_id: 0,
        cancel_count: 0,
        flags: 0,
        status: FaultStatus::OP_RNG_ERROR,
        stub: vec![],
    });
    assert!(matches!(
        ept_map_against(reply).await,
        Err(ClientError::Fault(FaultStatus::OP_RNG_ERROR))
    ));
}
