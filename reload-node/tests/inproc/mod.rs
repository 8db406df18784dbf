//! An overlay of real peers in this process: loopback TLS-TCP-FH-NO-ICE sockets, the
//! tokio shell, P-256 certificates from a test CA (user `user<i>@test.example.org`),
//! in-memory storage. Shared by reload-node's and the usages' tests.

#![allow(dead_code)]

#[path = "../../proto/tests/pki/mod.rs"]
pub mod pki;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reload_node::client::NodeHandle;
use reload_node::peer::{PeerOptions, StorageMode, build};
use reload_node::shell::Listeners;
use reload_proto::config::OverlayConfig;
use reload_proto::node::Start;
use reload_wire::NodeId;
use reload_wire::link::OverlayLinkType;

const TLS: OverlayLinkType = OverlayLinkType::TLS_TCP_FH_NO_ICE;

/// One node of the overlay.
pub struct Member {
    pub handle: NodeHandle,
    pub node_id: NodeId,
    pub user: String,
    pub addr: SocketAddr,
}

/// One node of Node-ID `id` and user `user` on 127.0.0.1 over `link` (TLS or DTLS, an
/// ephemeral port), started as `start` (the first node of an overlay when `None`): its
/// handle and its address.
pub async fn peer(
    ca: &pki::TestCa,
    config: &OverlayConfig,
    id: u128,
    user: &str,
    link: OverlayLinkType,
    start: Option<Start>,
) -> (NodeHandle, SocketAddr) {
    let listeners = Listeners::bind(&[(link, "127.0.0.1:0".parse().unwrap())])
        .await
        .expect("listen");
    let addr = match listeners.tcp.first() {
        Some(t) => t.local_addr().unwrap(),
        None => listeners.udp[0].local_addr().unwrap(),
    };
    let opts = PeerOptions {
        listen: vec![(link, addr)],
        storage: StorageMode::Memory,
        app_sockets: listeners.app_addrs(),
        ..PeerOptions::default()
    };
    let mut node = build(config.clone(), ca.node(false, id, user), &opts).expect("node");
    node.start(Instant::now(), start.unwrap_or(Start::FirstNode));
    let running = reload_node::shell::spawn(
        node,
        listeners,
        Box::new(|_, _| {}),
        std::future::pending(),
        Duration::from_millis(200),
    );
    (running.handle, addr)
}

/// `peers` peers then `clients` client nodes (§4.2), Node-IDs spread over the ring; waits
/// until the ring formed (every peer's first successor is the next Node-ID) and every
/// client is attached. Bounded: panics after 90 s. `setup`: the CA that issues the nodes'
/// certificates with the configuration signed for it (default: a new CA's
/// `storage_config`).
pub async fn overlay(
    peers: usize,
    clients: usize,
    setup: Option<(pki::TestCa, OverlayConfig)>,
) -> Vec<Member> {
    overlay_over(TLS, peers, clients, setup).await
}

/// [`overlay`] with every node listening with `link` (for an ICE overlay:
/// DTLS-UDP-SR, whose Attaches run ICE over loopback host candidates).
pub async fn overlay_over(
    link: OverlayLinkType,
    peers: usize,
    clients: usize,
    setup: Option<(pki::TestCa, OverlayConfig)>,
) -> Vec<Member> {
    let (ca, config) = setup.unwrap_or_else(|| {
        let ca = pki::TestCa::new(false);
        let config = ca.storage_config();
        (ca, config)
    });
    let mut x: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    let mut ids = Vec::new();
    for _ in 0..peers + clients {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ids.push(x);
    }
    let mut out = Vec::new();
    let mut first: Option<SocketAddr> = None;
    for (i, id) in ids.iter().enumerate() {
        let user = format!("user{i}");
        let start = |b: SocketAddr| -> Start {
            if i < peers {
                Start::Join(vec![(link, b)])
            } else {
                Start::Client(vec![(link, b)])
            }
        };
        let (handle, addr) = peer(&ca, &config, *id, &user, link, first.map(start)).await;
        if i == 0 {
            first = Some(addr);
        }
        out.push(Member {
            handle,
            node_id: NodeId::from_u128(*id),
            user: format!("{user}@{}", pki::OVERLAY),
            addr,
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sorted: Vec<u128> = ids[..peers].to_vec();
    sorted.sort();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut ok = true;
        let mut wrong = Vec::new();
        for m in &out[..peers] {
            let s = m.handle.snapshot().await.expect("snapshot");
            let me = sorted
                .iter()
                .position(|v| NodeId::from_u128(*v) == s.node_id)
                .unwrap();
            let want = NodeId::from_u128(sorted[(me + 1) % peers]);
            if !(s.joined && s.successors().first() == Some(&want)) {
                ok = false;
                wrong.push(format!(
                    "peer {}: joined {}, successor {:?}, expected {want}",
                    s.node_id,
                    s.joined,
                    s.successors().first()
                ));
            }
        }
        for m in &out[peers..] {
            let s = m.handle.snapshot().await.expect("client");
            if !s
                .successors()
                .first()
                .is_some_and(|p| s.connected.contains(p))
            {
                ok = false;
                wrong.push(format!(
                    "client {}: successors {:?}, connected {:?}",
                    s.node_id,
                    s.successors(),
                    s.connected
                ));
            }
        }
        if ok {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "the overlay did not form in 90 s:\n{}",
            wrong.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
