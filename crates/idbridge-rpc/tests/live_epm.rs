//! The I/O edge against the lab's Samba AD DC on 127.0.0.1:135 (start it with `./lab dc`).

use std::net::{Ipv4Addr, SocketAddr};

use idbridge_rpc::client::ept_map_tcp_port;
use idbridge_rpc::{DRSUAPI, EPM_PORT};

#[tokio::test]
async fn epm_maps_drsuapi_to_a_tcp_port() {
    let epm = SocketAddr::from((Ipv4Addr::LOCALHOST, EPM_PORT));
    let port = ept_map_tcp_port(epm, DRSUAPI).await.unwrap_or_else(|e| {
        panic!("ept_map for DRSUAPI on the lab DC failed (is it up? ./lab dc): {e}")
    });
    assert_ne!(port, 0);
    assert_ne!(port, EPM_PORT, "DRSUAPI is served on its own dynamic port");
}
