//! §11.2 discovery: `reload-node enroll --overlay NAME` finds the configuration server by
//! DNS SRV `_reload-config._tcp.NAME`, asking a DNS server this test runs on loopback
//! (a small UDP responder over hickory-proto), and fetches
//! `https://NAME/.well-known/reload-config` from the SRV target and port, with the
//! certificate checked against the overlay name.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The zone: SRV records for the overlay (the preferred one first by priority), and
/// addresses; every other name is NXDOMAIN.
struct Zone {
    port: u16,
    srv_queries: AtomicUsize,
    queries: AtomicUsize,
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn answer(zone: &Zone, query: &Message) -> Message {
    let mut resp = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = query.metadata.recursion_desired;
    let Some(q) = query.queries.first().cloned() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    };
    resp.add_query(q.clone());
    let qname = q.name().to_ascii().to_ascii_lowercase();
    let loopback = RData::A(A(Ipv4Addr::LOCALHOST));
    match (qname.as_str(), q.query_type()) {
        ("_reload-config._tcp.overlay.test.", RecordType::SRV) => {
            zone.srv_queries.fetch_add(1, Ordering::Relaxed);
            // A worse (higher priority number) target listed first: the client must sort.
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::SRV(SRV::new(20, 100, 1, name("backup.overlay.test."))),
            ));
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::SRV(SRV::new(10, 5, zone.port, name("config.overlay.test."))),
            ));
            resp.add_additional(Record::from_rdata(
                name("config.overlay.test."),
                60,
                loopback,
            ));
        }
        ("overlay.test." | "config.overlay.test." | "nosrv.test.", RecordType::A) => {
            resp.add_answer(Record::from_rdata(q.name().clone(), 60, loopback));
        }
        ("overlay.test." | "config.overlay.test." | "nosrv.test.", _) => {}
        _ => resp.metadata.response_code = ResponseCode::NXDomain,
    }
    resp
}

/// Serves the zone on a loopback UDP port until the returned task is aborted; at most
/// 10 000 queries.
async fn dns_server(zone: Arc<Zone>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        for _ in 0..10_000 {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            zone.queries.fetch_add(1, Ordering::Relaxed);
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if let Ok(bytes) = answer(&zone, &q).to_vec() {
                let _ = sock.send_to(&bytes, from).await;
            }
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_discovery_against_a_loopback_dns_server() {
    let o = Overlay::init("dns", &[]);
    o.add_user("erin", PASSWORD);
    let server = o.start(&[]);
    let zone = Arc::new(Zone {
        port: o.port,
        srv_queries: AtomicUsize::new(0),
        queries: AtomicUsize::new(0),
    });
    let (dns, task) = dns_server(zone.clone()).await;

    // Only the overlay name, the DNS server and the overlay root: no URL, no --resolve.
    let node = temp_dir("dns").join("erin");
    let mut args = reload_node::enroll::EnrollOptions::for_overlay(OVERLAY);
    args.dns_server = Some(dns);
    args.ca_cert = vec![o.ca_pem()];
    args.user = Some("erin".into());
    args.data_dir = Some(node.clone());
    args.timeout = 30;
    let out = enroll(&args, PASSWORD).await.unwrap();
    assert_eq!(out.overlay, OVERLAY);
    assert_eq!(out.node_ids.len(), 1);
    assert!(
        zone.srv_queries.load(Ordering::Relaxed) >= 1,
        "the SRV record was asked for"
    );
    assert_eq!(o.counts().2, 5, "one enrollment recorded");

    // No SRV record: the overlay name itself on port 443 (nothing listens there): the
    // error names the fallback it took.
    let mut nosrv = reload_node::enroll::EnrollOptions::for_overlay("nosrv.test");
    nosrv.dns_server = Some(dns);
    nosrv.ca_cert = vec![o.ca_pem()];
    nosrv.data_dir = Some(temp_dir("dns").join("nosrv"));
    nosrv.timeout = 10;
    let e = enroll(&nosrv, PASSWORD).await.unwrap_err();
    assert!(
        e.contains("no SRV record for _reload-config._tcp.nosrv.test."),
        "{e}"
    );
    assert!(
        e.contains("https://nosrv.test/.well-known/reload-config"),
        "{e}"
    );

    task.abort();
    drop(server);
}
