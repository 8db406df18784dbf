//! AppAttach application flows (RFC 6940 §6.5.2) between real peers: the answerer's
//! listener, the requester's TLS server side, the Node-ID checks (RFC 7904 §5.1) and the
//! errors.

mod inproc;

use std::time::Duration;

use reload_node::app::{AppAttachListener, AppFlow, FlowTransport, app_attach};
use reload_wire::Destination;
use reload_wire::message::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIP: u16 = 5060;

/// The TLS stream of a flow in a No-ICE overlay.
fn tls(flow: AppFlow) -> tokio_rustls::TlsStream<tokio::net::TcpStream> {
    match flow.transport {
        FlowTransport::Tls(s) => s,
        FlowTransport::Dtls(_) => panic!("a DTLS flow in a No-ICE overlay"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_carries_bytes_both_ways_and_proves_both_node_ids() {
    let nodes = inproc::overlay(5, 0, None).await;
    let (a, b) = (&nodes[1], &nodes[3]);
    let mut listener =
        AppAttachListener::start(&b.handle, "127.0.0.1:0".parse().unwrap(), None, &[SIP])
            .await
            .unwrap();
    let (read_tx, read_rx) = tokio::sync::oneshot::channel::<()>();
    let requester = async {
        let flow = app_attach(&a.handle, vec![Destination::Node(b.node_id)], SIP)
            .await
            .expect("AppAttach");
        assert_eq!(flow.peer, b.node_id);
        assert_eq!(flow.application, SIP);
        let mut stream = tls(flow);
        stream
            .write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
            .await
            .unwrap();
        stream.flush().await.unwrap();
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        let _ = read_tx.send(());
    };
    let answerer = async {
        let flow = tokio::time::timeout(Duration::from_secs(30), listener.next())
            .await
            .expect("a flow")
            .expect("listener running");
        assert_eq!(flow.peer, a.node_id, "the requester proved its Node-ID");
        assert_eq!(flow.application, SIP);
        let mut stream = tls(flow);
        let mut buf = vec![0u8; 25];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"OPTIONS sip:x SIP/2.0\r\n\r\n");
        stream.write_all(b"hello").await.unwrap();
        stream.flush().await.unwrap();
        // Keep the stream open until the requester read.
        let _ = read_rx.await;
    };
    tokio::join!(requester, answerer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_the_peer_does_not_run_is_error_not_found() {
    let nodes = inproc::overlay(5, 0, None).await;
    let (a, b, c) = (&nodes[0], &nodes[2], &nodes[4]);
    let _listener =
        AppAttachListener::start(&b.handle, "127.0.0.1:0".parse().unwrap(), None, &[SIP])
            .await
            .unwrap();
    // §6.5.2.1: the listener runs SIP only.
    let e = app_attach(&a.handle, vec![Destination::Node(b.node_id)], 5061)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NOT_FOUND), "{e}");
    // A node with no listener at all.
    let e = app_attach(&a.handle, vec![Destination::Node(c.node_id)], SIP)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NOT_FOUND), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_an_answered_app_attach_gives_no_flow() {
    let nodes = inproc::overlay(3, 0, None).await;
    let mut listener = AppAttachListener::start(
        &nodes[1].handle,
        "127.0.0.1:0".parse().unwrap(),
        None,
        &[SIP],
    )
    .await
    .unwrap();
    // Garbage, then a clean close: refused, the listener keeps serving.
    let mut s = tokio::net::TcpStream::connect(listener.local_addr())
        .await
        .unwrap();
    let _ = s.write_all(b"INVITE sip:bob@x SIP/2.0\r\n\r\n").await;
    drop(s);
    let flow = app_attach(
        &nodes[0].handle,
        vec![Destination::Node(nodes[1].node_id)],
        SIP,
    )
    .await
    .expect("still serving");
    assert_eq!(flow.peer, nodes[1].node_id);
    let got = tokio::time::timeout(Duration::from_secs(30), listener.next())
        .await
        .unwrap()
        .unwrap();
    // The first (and only) flow is the AppAttach's: the stray connection gave none.
    assert_eq!(got.peer, nodes[0].node_id);
}
