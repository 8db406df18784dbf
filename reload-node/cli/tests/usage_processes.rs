//! The usage seam on real processes. Four `reload-node run` peers over TLS on 127.0.0.x —
//! three run the echo usage (`--usage echo`), one runs none — and a fifth peer built in
//! this test process from the library (`reload_node::peer`, `shell`) joins as a client
//! (RFC 6940 §4.2) and sends `exp_a_req` to each through the overlay with the async client
//! API ([`reload_node::client::NodeHandle`]):
//! - each echo peer answers through its usage, and the answer carries the requester's user
//!   name: the usage got the signer's verified certificate with the request;
//! - the peer without the usage answers Error_Forbidden at once (nobody serves the method);
//! - `--usage` with an unknown name is refused with the list of usages.
//!
//! Every wait is bounded; child processes are killed on drop.

mod procs;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use procs::{
    NODE, enroll_peers, free_port, peer_dir, scratch_dir, start_peers, status_file, wait_ring,
};
use reload_node::client::ClientError;
use reload_node::peer::{PeerOptions, from_data_dir};
use reload_node::shell::Listeners;
use reload_proto::node::{RequestError, Start};
use reload_wire::body::MessageBody;
use reload_wire::link::OverlayLinkType;
use reload_wire::message::{ErrorCode, MessageCode};
use reload_wire::{Destination, NodeId};

fn node_id(hex: &str) -> NodeId {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    NodeId::from_slice(&bytes).unwrap()
}

#[test]
fn peers_answer_through_their_usage_with_the_signers_identity() {
    let dir = scratch_dir("reload-usage-procs");
    let overlay = "usage.procs.test";
    let port = free_port();
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 50 + i as u8], port + 1));
    enroll_peers(&dir, overlay, port, addr(0), 5);
    let peers = start_peers(&dir, 4, addr, Duration::from_secs(20), |i, cmd| {
        cmd.args(["--log", "info,reload_usages=debug"]);
        if i < 3 {
            cmd.args(["--usage", "echo"]);
        }
    });
    let files: Vec<_> = (0..4).map(|i| status_file(&dir, i)).collect();
    let ring = wait_ring(&files, Duration::from_secs(60));
    let ids: Vec<NodeId> = ring.iter().map(|s| node_id(&s.id)).collect();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = PeerOptions {
            listen: vec![(OverlayLinkType::TLS_TCP_FH_NO_ICE, addr(4))],
            ..PeerOptions::default()
        };
        let mut node = from_data_dir(&peer_dir(&dir, 4), &opts).unwrap();
        let listeners = Listeners::bind(&opts.listen).await.unwrap();
        node.start(
            Instant::now(),
            Start::Client(vec![(OverlayLinkType::TLS_TCP_FH_NO_ICE, addr(0))]),
        );
        let running = reload_node::shell::spawn(
            node,
            listeners,
            Box::new(|_, _| {}),
            std::future::pending(),
            Duration::from_secs(1),
        );
        let client = running.handle.clone();
        // Connected once a Ping to the first peer goes through.
        let t0 = Instant::now();
        while client.ping(vec![Destination::Node(ids[0])]).await.is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the client did not connect"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (i, id) in ids.iter().enumerate() {
            let body = MessageBody::Unknown {
                code: MessageCode::EXP_A_REQ,
                body: format!("hello {i}").into_bytes().into(),
            };
            let answer = tokio::time::timeout(
                Duration::from_secs(30),
                client.request(vec![Destination::Node(*id)], body),
            )
            .await
            .expect("no answer within 30 s");
            if i < 3 {
                let want = format!("p4@{overlay}\nhello {i}");
                assert_eq!(
                    answer,
                    Ok((
                        *id,
                        MessageBody::Unknown {
                            code: MessageCode::EXP_A_ANS,
                            body: want.into_bytes().into(),
                        }
                    )),
                    "peer {i}"
                );
            } else {
                match answer {
                    Err(ClientError::Request(RequestError::Error(who, e))) => {
                        assert_eq!(who, *id);
                        assert_eq!(e.error_code, ErrorCode::FORBIDDEN);
                    }
                    other => panic!("peer without the usage: {other:?}"),
                }
            }
        }
        running.handle.shutdown().await;
        let _ = running.task.await;
    });
    drop(peers);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_usage_is_refused_with_the_list() {
    let out = std::process::Command::new(NODE)
        .args(["run", "--data-dir", "/nonexistent", "--usage", "nope"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("no usage \"nope\"") && text.contains("echo"),
        "{text}"
    );
}
