//! Store and Fetch served by one core, reported next to the crypto bound measured in the
//! same run, never asserted. `cargo bench -p reload-proto --bench storage -- [N] [p256|rsa]`.
//!
//! A peer alone in its overlay (so responsible for every Resource-ID, with no replica to
//! copy to) is fed, over one plain link, N signed StoreReqs — each with a new value,
//! signed by the client for its user name's Resource-ID (USER-MATCH), replacing the last —
//! then N signed FetchReqs for it. Messages are built and signed before the clock starts;
//! what is timed is the serving core alone: framing, decoding, the request's signature
//! check, the value's signature and policy check (Store), the engine, the signed answer,
//! its encoding. The bound is what the signatures alone cost: a Store needs two
//! verifications (request and value) and one signature (the answer), a Fetch one of each;
//! the raw rates are measured on the same keys in the same run.

#[path = "../tests/pki/mod.rs"]
mod pki;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reload_proto::identity::chord_resource_id;
use reload_proto::link::WallAnchor;
use reload_proto::link::plain::{PlainLinks, frame};
use reload_proto::node::{Node, NodeParts, NodeSettings, Start, StreamEvent, everything};
use reload_proto::rand::Seed;
use reload_proto::sign::{Credentials, verify_with_certificate};
use reload_proto::topology::chord::{Chord, ChordSettings};
use reload_wire::body::MessageBody;
use reload_wire::link::OverlayLinkType;
use reload_wire::storage::{
    DataModel, DataValue, FetchReq, KindId, KindValues, StoreKindData, StoreReq, StoredData,
    StoredDataValue,
};
use reload_wire::{
    Destination, ForwardingHeader, Message, MessageContents, NodeId, ResourceId, SecurityBlock,
    Signature, Wire,
};

const KIND: u32 = pki::kinds::SINGLE;

fn request(
    creds: &Credentials,
    overlay: &reload_proto::overlay::Overlay,
    tx: u64,
    r: &ResourceId,
    body: &MessageBody,
) -> Bytes {
    let mut h = ForwardingHeader::new(
        overlay.hash(),
        overlay.sequence(),
        overlay.initial_ttl(),
        tx,
    );
    h.destination_list = vec![Destination::Resource(r.clone())];
    let mut m = Message {
        header: h,
        contents: MessageContents::from_body(body).unwrap(),
        security: SecurityBlock {
            certificates: vec![],
            signature: Signature::none(),
        },
    };
    creds.sign_message(&mut m, vec![]).unwrap();
    m.header.length = m.encoded_len() as u32;
    frame(&m.to_bytes().unwrap())
}

/// Feeds `frames` to the server's stream; the time it took and the answers it sent.
fn serve(
    server: &mut Node,
    stream: reload_proto::node::StreamId,
    frames: &[Bytes],
) -> (Duration, usize) {
    let t0 = Instant::now();
    let mut answers = 0;
    for f in frames {
        server.handle_stream(Instant::now(), stream, StreamEvent::Data(f.clone()));
        while server.poll_transmit().is_some() {
            answers += 1;
        }
        while server.poll_event().is_some() {}
    }
    (t0.elapsed(), answers)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn run(rsa: bool, n: usize) {
    let name = if rsa { "RSA-2048" } else { "P-256" };
    let ca = pki::TestCa::new(rsa);
    let overlay = ca.storage_overlay();
    let server_creds = ca.node(rsa, 0x5e_0000_0001, "server");
    let client = ca.node(rsa, 0xc1_0000_0001, "bench");
    let anchor = WallAnchor::new(Instant::now(), SystemTime::now());
    let addr: SocketAddr = "10.9.0.1:6084".parse().unwrap();
    let mut settings = NodeSettings::new(vec![(OverlayLinkType::TLS_TCP_FH_NO_ICE, addr)]);
    settings.storage_limits.max_values = 10 * n;
    let links = PlainLinks::new(&server_creds.cert, &overlay, anchor);
    let parts = NodeParts {
        settings,
        overlay: overlay.clone(),
        credentials: server_creds,
        topology: Box::new(Chord::new(
            NodeId::from_u128(0x5e_0000_0001),
            ChordSettings::from_overlay(&overlay),
        )),
        links: Box::new(links),
    };
    let mut server = Node::new(parts, anchor.instant, anchor.wall, Seed::from_u64(7));
    server.start(Instant::now(), Start::FirstNode);
    let stream = server
        .accept_stream(Instant::now(), addr, "10.9.0.2:40000".parse().unwrap())
        .unwrap();
    let mut hello = b"RELOAD-PLAIN".to_vec();
    hello.extend_from_slice(client.cert.der());
    server.handle_stream(Instant::now(), stream, StreamEvent::Data(frame(&hello)));
    while server.poll_transmit().is_some() {}
    while server.poll_event().is_some() {}

    let r = chord_resource_id(format!("bench@{}", pki::OVERLAY).as_bytes());
    let wall_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let stores: Vec<Bytes> = (0..n)
        .map(|i| {
            let mut d = StoredData {
                storage_time: wall_ms + i as u64,
                lifetime: 3600,
                value: StoredDataValue::Single(DataValue {
                    exists: true,
                    value: Bytes::from(format!("sip:bench@192.0.2.1:{}", 5060 + i % 1000)),
                }),
                signature: Signature::none(),
            };
            client.sign_stored_data(&r, KindId(KIND), &mut d).unwrap();
            let body = MessageBody::StoreReq(StoreReq {
                resource: r.clone(),
                replica_number: 0,
                kind_data: vec![StoreKindData {
                    kind: KindId(KIND),
                    generation_counter: 0,
                    values: KindValues::Decoded(vec![d]),
                }],
            });
            request(&client, &overlay, 0x1000_0000 + i as u64, &r, &body)
        })
        .collect();
    let fetches: Vec<Bytes> = (0..n)
        .map(|i| {
            let body = MessageBody::FetchReq(FetchReq {
                resource: r.clone(),
                specifiers: vec![everything(KindId(KIND), DataModel::Single)],
            });
            request(&client, &overlay, 0x2000_0000 + i as u64, &r, &body)
        })
        .collect();

    let (store_t, store_answers) = serve(&mut server, stream, &stores);
    let (fetch_t, fetch_answers) = serve(&mut server, stream, &fetches);
    assert_eq!(store_answers, n, "every Store answered");
    assert_eq!(fetch_answers, n, "every Fetch answered");
    assert_eq!(
        server
            .storage()
            .record(&r, KindId(KIND))
            .unwrap()
            .generation,
        n as u64
    );

    // The crypto bound, on the same keys, in the same run.
    let input = vec![0x5a_u8; 300];
    let k = n.max(200);
    let t0 = Instant::now();
    let mut last = Vec::new();
    for _ in 0..k {
        last = client.key.sign(&input).unwrap();
    }
    let sign_t = t0.elapsed() / k as u32;
    let alg = client.key.algorithm();
    let t0 = Instant::now();
    for _ in 0..k {
        verify_with_certificate(alg, &client.cert, &input, &last).unwrap();
    }
    let verify_t = t0.elapsed() / k as u32;
    let store_bound = 1.0 / (2.0 * verify_t.as_secs_f64() + sign_t.as_secs_f64());
    let fetch_bound = 1.0 / (verify_t.as_secs_f64() + sign_t.as_secs_f64());
    let (sr, fr) = (rate(n, store_t), rate(n, fetch_t));
    println!(
        "{name}: sign {:.1} µs, verify {:.1} µs | Store served {sr:.0}/s, bound {store_bound:.0}/s ({:.0} %) | Fetch served {fr:.0}/s, bound {fetch_bound:.0}/s ({:.0} %)",
        sign_t.as_secs_f64() * 1e6,
        verify_t.as_secs_f64() * 1e6,
        100.0 * sr / store_bound,
        100.0 * fr / fetch_bound,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(5000);
    // `p256` or `rsa` alone runs only that key type.
    let only = |k: &str| args.iter().any(|a| a == k);
    for rsa in [false, true] {
        if (only("p256") && rsa) || (only("rsa") && !rsa) {
            continue;
        }
        run(rsa, n);
    }
}
