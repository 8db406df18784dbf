//! The TURN server usage (RFC 6940 §9) between real peers in this process, in an ICE
//! overlay on loopback: one peer advertises a TURN server in TURN-SERVICE once its peers
//! confirm where they see it (not behind a NAT), and every other peer finds it with Find
//! on random Resource-IDs and takes it into use.

#[path = "inproc/mod.rs"]
mod inproc;

use std::net::SocketAddr;
use std::time::Duration;

use reload_node::turn_service::{advertise, discover};
use reload_wire::link::OverlayLinkType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_find_an_advertised_turn_server() {
    let nodes = inproc::overlay_over(OverlayLinkType::DTLS_UDP_SR, 6, 0, None).await;
    // Nothing listens there: the allocations fail and are retried, which is not what
    // this test looks at.
    let server: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ip = nodes[2].addr.ip();
    let _advertising = tokio::spawn(advertise(nodes[2].handle.clone(), ip, server));
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != 2) {
        let found = tokio::time::timeout(
            Duration::from_secs(90),
            discover(n.handle.clone(), "user".into(), "password".into()),
        )
        .await
        .unwrap_or_else(|_| panic!("peer {i} found no TURN server within 90 s"));
        assert_eq!(found, Some(server), "peer {i}");
        let s = n.handle.snapshot().await.unwrap();
        assert_eq!(s.turn_servers, vec![server], "peer {i} uses it");
    }
}
