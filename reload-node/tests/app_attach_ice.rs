//! AppAttach in an ICE overlay (RFC 6940 §6.5.2): ufrag, password and candidates in the
//! request and the answer, ICE between the two nodes' application sockets, DTLS over the
//! selected pair with the AppAttach sender as the server (§6.5.1.13), then the
//! application's messages — one per DTLS record — both ways. Real peers in this process,
//! on loopback.

#[path = "inproc/mod.rs"]
mod inproc;

use std::time::Duration;

use bytes::Bytes;
use reload_nat::ice::CandidateKind;
use reload_node::app::{
    AppAttachListener, AppFlow, DatagramFlow, ECHO_APPLICATION, FlowTransport, app_attach,
    echo_probe,
};
use reload_wire::Destination;
use reload_wire::link::OverlayLinkType;
use reload_wire::message::ErrorCode;

const ICE: OverlayLinkType = OverlayLinkType::DTLS_UDP_SR;
const SIP: u16 = 5060;

fn dtls(flow: AppFlow) -> DatagramFlow {
    match flow.transport {
        FlowTransport::Dtls(d) => d,
        FlowTransport::Tls(_) => panic!("a TLS flow in an ICE overlay"),
    }
}

async fn recv(flow: &mut DatagramFlow) -> Bytes {
    tokio::time::timeout(Duration::from_secs(10), flow.recv())
        .await
        .expect("a message within 10 s")
        .unwrap_or_else(|| panic!("flow ended: {:?}", flow.ended()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_over_ice_carries_messages_both_ways_and_ends_on_both_sides() {
    let nodes = inproc::overlay_over(ICE, 5, 0, None).await;
    let (a, b) = (&nodes[1], &nodes[3]);
    let mut listener =
        AppAttachListener::start(&b.handle, "127.0.0.1:0".parse().unwrap(), None, &[SIP])
            .await
            .unwrap();
    let flow = app_attach(&a.handle, vec![Destination::Node(b.node_id)], SIP)
        .await
        .expect("AppAttach over ICE");
    assert_eq!(flow.peer, b.node_id, "the answerer proved its Node-ID");
    assert_eq!(flow.application, SIP);
    let mut ours = dtls(flow);
    let pair = ours.pair.clone().expect("the ICE pair");
    assert!(pair.controlling, "the AppAttach sender controls (§6.5.1.9)");
    assert_eq!(pair.local.kind, CandidateKind::Host, "{pair:?}");
    // Application sockets, not the overlay's (§6.5.2 flows never share a pair with links).
    assert_ne!(pair.local.addr, a.addr);
    assert_ne!(pair.remote.addr, b.addr);
    let theirs = tokio::time::timeout(Duration::from_secs(30), listener.next())
        .await
        .expect("a flow")
        .expect("listener running");
    assert_eq!(theirs.peer, a.node_id, "the requester proved its Node-ID");
    assert_eq!(theirs.application, SIP);
    let mut theirs = dtls(theirs);
    // Messages keep their boundaries, both ways.
    ours.send(Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n"))
        .await
        .unwrap();
    ours.send(Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(
        &recv(&mut theirs).await[..],
        b"OPTIONS sip:x SIP/2.0\r\n\r\n"
    );
    assert_eq!(&recv(&mut theirs).await[..], b"second");
    theirs.send(Bytes::from(vec![7u8; 9000])).await.unwrap();
    assert_eq!(
        recv(&mut ours).await.len(),
        9000,
        "one record, larger than an MTU"
    );
    // Both nodes list the flow.
    for (n, requester) in [(a, true), (b, false)] {
        let s = n.handle.snapshot().await.unwrap();
        assert!(
            s.app_flows
                .iter()
                .any(|f| f.open && f.application == SIP && f.requester == requester),
            "{:?}",
            s.app_flows
        );
    }
    // Closing one end (close_notify) ends the other.
    drop(ours);
    let end = tokio::time::timeout(Duration::from_secs(10), theirs.recv())
        .await
        .expect("the end within 10 s");
    assert!(end.is_none());
    assert!(
        theirs.ended().is_some_and(|w| w.contains("closed")),
        "{:?}",
        theirs.ended()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_both_ways_at_once_and_for_two_applications_use_distinct_pairs() {
    let nodes = inproc::overlay_over(ICE, 4, 0, None).await;
    let (a, b) = (&nodes[0], &nodes[2]);
    let mut la = AppAttachListener::start(
        &a.handle,
        "127.0.0.1:0".parse().unwrap(),
        None,
        &[SIP, 5061],
    )
    .await
    .unwrap();
    let mut lb = AppAttachListener::start(
        &b.handle,
        "127.0.0.1:0".parse().unwrap(),
        None,
        &[SIP, 5061],
    )
    .await
    .unwrap();
    // a → b and b → a at the same time, and a → b for a second application.
    let (ab, ba, ab2) = tokio::join!(
        app_attach(&a.handle, vec![Destination::Node(b.node_id)], SIP),
        app_attach(&b.handle, vec![Destination::Node(a.node_id)], SIP),
        app_attach(&a.handle, vec![Destination::Node(b.node_id)], 5061),
    );
    let flows = [dtls(ab.unwrap()), dtls(ba.unwrap()), dtls(ab2.unwrap())];
    let mut pairs: Vec<_> = flows
        .iter()
        .map(|f| {
            let p = f.pair.clone().unwrap();
            let (x, y) = (p.local.addr, p.remote.addr);
            if x < y { (x, y) } else { (y, x) }
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(
        pairs.len(),
        3,
        "each flow has its own address pair: {pairs:?}"
    );
    // Each answered side got its flow, and each flow works.
    let mut answered = Vec::new();
    for _ in 0..2 {
        answered.push(dtls(lb.next().await.unwrap()));
    }
    answered.push(dtls(la.next().await.unwrap()));
    for (i, f) in flows.iter().enumerate() {
        f.send(Bytes::from(format!("flow {i}"))).await.unwrap();
    }
    let mut got = Vec::new();
    for f in &mut answered {
        got.push(String::from_utf8(recv(f).await.to_vec()).unwrap());
    }
    got.sort();
    assert_eq!(got, ["flow 0", "flow 1", "flow 2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_probe_times_a_round_trip_and_unknown_applications_are_not_found() {
    let nodes = inproc::overlay_over(ICE, 4, 1, None).await;
    let (a, b, c) = (&nodes[4], &nodes[1], &nodes[3]);
    let _listener = AppAttachListener::start(&b.handle, "127.0.0.1:0".parse().unwrap(), None, &[])
        .await
        .unwrap();
    // From a client node (§4.2) to a peer it has no link with.
    let report = echo_probe(&a.handle, vec![Destination::Node(b.node_id)])
        .await
        .expect("echo");
    assert_eq!(report.peer, b.node_id);
    assert_eq!(report.transport, "dtls");
    assert!(report.pair.is_some());
    // §6.5.2.1: an application the node does not run, and a node with no listener.
    let e = app_attach(&a.handle, vec![Destination::Node(b.node_id)], SIP)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NOT_FOUND), "{e}");
    let e = app_attach(
        &a.handle,
        vec![Destination::Node(c.node_id)],
        ECHO_APPLICATION,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NOT_FOUND), "{e}");
    // Nothing is left behind on the requester.
    let left = a.handle.snapshot().await.unwrap().app_flows;
    assert!(left.iter().all(|f| f.open), "{left:?}");
}
