//! Peers are STUN servers for each other (RFC 6940 §6.5.1.4): a plain STUN Binding
//! request to a peer's overlay UDP port (the one DTLS-UDP-SR links use, RFC 7983
//! demultiplexing) is answered with the address it came from — from this project's own
//! client code and, where coturn is installed, from its `turnutils_stunclient`.

#[path = "inproc/mod.rs"]
mod inproc;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reload_node::peer::{PeerOptions, StorageMode, build};
use reload_node::shell::Listeners;
use reload_proto::node::Start;
use reload_wire::link::OverlayLinkType;

const DTLS: OverlayLinkType = OverlayLinkType::DTLS_UDP_SR_NO_ICE;

/// A one-peer overlay listening for DTLS on UDP; its address.
async fn peer() -> (reload_node::client::NodeHandle, SocketAddr) {
    let ca = inproc::pki::TestCa::new(false);
    let creds = ca.node(false, 0x1234, "stun");
    let listeners = Listeners::bind(&[(DTLS, "127.0.0.1:0".parse().unwrap())])
        .await
        .unwrap();
    let addr = listeners.udp[0].local_addr().unwrap();
    let opts = PeerOptions {
        listen: vec![(DTLS, addr)],
        storage: StorageMode::Memory,
        ..PeerOptions::default()
    };
    let mut node = build(ca.storage_config(), creds, &opts).unwrap();
    node.start(Instant::now(), Start::FirstNode);
    let running = reload_node::shell::spawn(
        node,
        listeners,
        Box::new(|_, _| {}),
        std::future::pending(),
        Duration::from_millis(200),
    );
    (running.handle, addr)
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
        eprintln!(
            "SKIPPED: turnutils_stunclient is not installed (apt-get install coturn; the README's test command does)"
        );
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
