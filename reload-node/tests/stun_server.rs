//! Peers are STUN servers for each other (RFC 6940 §6.5.1.4): a plain STUN Binding
//! request to a peer's overlay UDP port (the one DTLS-UDP-SR links use, RFC 7983
//! demultiplexing) is answered with the address it came from — from this project's own
//! client code and, where coturn is installed, from its `turnutils_stunclient`; and peers
//! with DTLS links ask each other, learning the address they are seen at.

#[path = "inproc/mod.rs"]
mod inproc;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reload_proto::node::Start;
use reload_wire::link::OverlayLinkType;

const DTLS: OverlayLinkType = OverlayLinkType::DTLS_UDP_SR_NO_ICE;

/// A one-peer overlay listening for DTLS on UDP; its address.
async fn peer() -> (reload_node::client::NodeHandle, SocketAddr) {
    let ca = inproc::pki::TestCa::new(false);
    inproc::peer(&ca, &ca.storage_config(), 0x1234, "stun", DTLS, None).await
}

#[tokio::test]
async fn a_binding_request_to_the_overlay_port_is_answered_with_the_source_address() {
    let (handle, addr) = peer().await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let id = *b"reload-stun1";
    sock.send_to(&reload_nat::stun::binding_request(id), addr)
        .await
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(from, addr, "answered from the port asked");
    assert_eq!(
        reload_nat::stun::mapped_address(&buf[..n], id),
        Some(sock.local_addr().unwrap()),
        "XOR-MAPPED-ADDRESS is where the request came from"
    );
    assert_eq!(handle.snapshot().await.unwrap().stats.stun_answered, 1);
}

#[tokio::test]
async fn coturn_stun_client_learns_its_address_from_a_peer() {
    let have = std::process::Command::new("sh")
        .args(["-c", "command -v turnutils_stunclient"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        let why = "turnutils_stunclient is not installed (apt-get install coturn)";
        // `.ci/test` installs it: there a missing tool fails the run instead of skipping.
        if std::env::var("RELOAD_TEST_TOOLS").as_deref() == Ok("required") {
            panic!("{why} (RELOAD_TEST_TOOLS=required)");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }
    let (_handle, addr) = peer().await;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["30", "turnutils_stunclient", "-p", &addr.port().to_string()])
            .arg(addr.ip().to_string())
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("UDP reflexive addr: 127.0.0.1:"),
        "no reflexive address learned: {text}"
    );
}

/// §6.5.1.4: a peer asks the peers it has UDP links with; on loopback (no NAT) each sees
/// the other's own socket address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_udp_links_learn_the_address_they_are_seen_at() {
    let ca = inproc::pki::TestCa::new(false);
    let config = ca.storage_config();
    let (h0, a0) = inproc::peer(&ca, &config, 0x1000 << 100, "u0", DTLS, None).await;
    let join = Start::Join(vec![(DTLS, a0)]);
    let (h1, a1) = inproc::peer(&ca, &config, 0x9000 << 100, "u1", DTLS, Some(join)).await;
    let nodes = [(h0, a0), (h1, a1)];
    let deadline = Instant::now() + Duration::from_secs(60);
    for (me, (h, addr)) in nodes.iter().enumerate() {
        let other = nodes[1 - me].0.snapshot().await.unwrap().node_id;
        loop {
            let s = h.snapshot().await.unwrap();
            if let Some(r) = s.reflexive.iter().find(|r| r.seen_by.contains(&other)) {
                assert_eq!(r.local, *addr);
                assert_eq!(
                    r.mapped, *addr,
                    "no NAT on loopback: seen at its own address"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no reflexive address learned: {:?}",
                s.reflexive
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
