//! Entry points of the fuzz targets (`fuzz/fuzz_targets/*.rs`, issue 10), one function per
//! target: every parser a hostile peer can reach, fed arbitrary bytes. Each function must
//! return, without panicking, in bounded time and memory, whatever `data` is; the
//! assertions in them are invariants whose failure is a finding. The seed corpora under
//! `fuzz/corpus/NAME/` are replayed by `tests/fuzz_corpora.rs` as ordinary tests.
//!
//! Targets that need credentials (signatures, (D)TLS servers, full nodes) use a fixture PKI
//! made once with openssl (`tests/fixtures/fuzz-pki/make.sh`: a root CA and three P-256
//! node certificates for the overlay `fuzz.test`, valid for 100 years) and judge it at the
//! fixed wall time [`wall`], so that a target behaves the same on every run.
//!
//! Not a stable API: hidden from the documentation, used by the fuzz crate and tests only.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use reload_wire::body::MessageBody;
use reload_wire::chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate};
use reload_wire::header::Fragment;
use reload_wire::link::{OverlayLinkType, PingReq};
use reload_wire::security::SignerIdentity;
use reload_wire::{
    DecodeOptions, Destination, ForwardingHeader, FramedMessage, Message, NodeId, Wire,
};

use crate::check::{CheckOptions, check_document};
use crate::config::{ConfigDocument, OverlayConfig};
use crate::identity::{CertRequest, ReloadCertificate, TrustPolicy, from_pem, parse_reload_uri};
use crate::link::cookie::{COOKIE_LEN, ClientHello, CookieJar};
use crate::link::framing::{Framer, FramingConfig, Reliability};
use crate::link::plain::PlainLinks;
use crate::link::{
    Link, LinkConfig, LinkContext, LinkEvent, WallAnchor, first_record_epoch_zero, is_client_hello,
};
use crate::node::fragment::Reassembly;
use crate::node::{Event, Node, NodeParts, NodeSettings, Start};
use crate::overlay::Overlay;
use crate::rand::Seed;
use crate::sign::{CertCache, Credentials, Verifier};
use crate::sim::{Sim, SimNetwork};
use crate::topology::chord::{Chord, ChordSettings};
use crate::topology::{StartMode, Topology, TopologyInput};

// ---- the fixture PKI ----------------------------------------------------------------

/// The overlay the fixture certificates are for.
pub const OVERLAY: &str = "fuzz.test";

/// The wall-clock time every target judges certificates at: 2027-01-01T00:00:00Z, inside
/// the fixture certificates' validity (2026-12-06 to 2126).
pub fn wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600)
}

const CA_PEM: &str = include_str!("../tests/fixtures/fuzz-pki/ca.pem");
const NODE_KEYS: [&str; 3] = [
    include_str!("../tests/fixtures/fuzz-pki/node0.key"),
    include_str!("../tests/fixtures/fuzz-pki/node1.key"),
    include_str!("../tests/fixtures/fuzz-pki/node2.key"),
];
const NODE_CERTS: [&str; 3] = [
    include_str!("../tests/fixtures/fuzz-pki/node0.pem"),
    include_str!("../tests/fixtures/fuzz-pki/node1.pem"),
    include_str!("../tests/fixtures/fuzz-pki/node2.pem"),
];

/// The fixture root CA (DER).
pub fn fixture_root() -> Bytes {
    static ROOT: OnceLock<Bytes> = OnceLock::new();
    ROOT.get_or_init(|| {
        Bytes::from(from_pem("CERTIFICATE", CA_PEM).expect("the fixture CA is a PEM certificate"))
    })
    .clone()
}

/// The credentials of fixture node `i` (0, 1 or 2).
pub fn fixture_credentials(i: usize) -> Credentials {
    Credentials::from_pem(NODE_KEYS[i], NODE_CERTS[i], 16, None)
        .expect("the fixture credentials load")
}

/// The fixture overlay's configuration: its CA as the only root, fixture node 2 as its
/// configuration-signer (a signed ConfigUpdate can reach a node), RFC defaults otherwise.
pub fn fixture_config() -> OverlayConfig {
    let mut c = OverlayConfig::new(OVERLAY);
    c.root_certs = vec![fixture_root()];
    c.configuration_signers = vec![fixture_node_id(2).as_bytes().to_vec()];
    // Periodic Updates every 20 s, so that the ring repairs within the fuzz targets' runs.
    c.chord_update_interval = Duration::from_secs(20);
    c
}

/// The Node-ID of fixture node `i` (the first of its certificate).
pub fn fixture_node_id(i: usize) -> NodeId {
    const IDS: [u128; 3] = [
        0x4000_0000_0000_0000_0000_0000_0000_0001,
        0x8000_0000_0000_0000_0000_0000_0000_0002,
        0xc000_0000_0000_0000_0000_0000_0000_0003,
    ];
    NodeId::from_u128(IDS[i])
}

/// The fixture overlay's trust policy.
pub fn fixture_trust() -> TrustPolicy {
    TrustPolicy {
        overlay: OVERLAY.into(),
        node_id_len: 16,
        roots: vec![fixture_root()],
        bad_nodes: vec![],
        self_signed: None,
    }
}

// ---- reading the input --------------------------------------------------------------

/// A cursor over the fuzzer's bytes: every read is bounded by what is left.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    /// A 2-byte big-endian length, then that many bytes (or what is left).
    fn record(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }
}

/// Drains a queue-like `poll` (at most `limit` items: a queue that never empties is a
/// finding).
fn drain<T>(limit: usize, mut poll: impl FnMut() -> Option<T>, mut each: impl FnMut(T)) {
    for _ in 0..limit {
        match poll() {
            Some(t) => each(t),
            None => return,
        }
    }
    panic!("a queue did not empty after {limit} items");
}

// ---- framer_stream ------------------------------------------------------------------

/// The framing layer of §6.6.2–§6.6.3 (`link::Framer`) on the decrypted bytes a peer
/// sends: FH (TLS) fed the stream in chunks whose sizes the first byte chooses, SR (DTLS)
/// fed each chunk as one record. Every frame the framer emits decodes; every message it
/// delivers fits the max-message-size; FH delivers the same messages however the stream
/// is cut.
pub fn framer_stream(data: &[u8]) {
    let mut input = Input(data);
    let shape = input.u8();
    let max = [64usize, 300, 5000, 70_000][usize::from(shape & 3)];
    let node_id_len = if shape & 4 == 0 { 16 } else { 20 };
    let chunk = 1 + usize::from(shape >> 3) * 9;
    let stream = input.0;
    let base = Instant::now();
    let config = || FramingConfig {
        node_id_len,
        ..FramingConfig::new(max)
    };

    // FH, receiving only, at one instant: the messages must not depend on how the stream
    // is cut into TLS records.
    let receive = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut f = Framer::new(Reliability::FramingHeader, config());
        f.open(base);
        let mut got = Vec::new();
        for piece in pieces {
            let failed = f.handle_stream(base, piece).is_err();
            drain(1 << 20, || f.poll_message(), |m| got.push(m));
            if failed {
                break;
            }
        }
        got
    };
    let whole = receive(&mut std::iter::once(stream));
    let cut = receive(&mut stream.chunks(chunk));
    assert_eq!(
        whole, cut,
        "FH delivered other messages when the stream was cut"
    );

    // Both sender algorithms with a message of ours in flight and time passing: ACKs,
    // retransmissions, stalls and failures.
    for mode in [Reliability::FramingHeader, Reliability::SimpleReliability] {
        let mut f = Framer::new(mode, config());
        f.open(base);
        let _ = f.send(base, Bytes::from_static(b"our message"));
        let mut now = base;
        for (i, piece) in stream.chunks(chunk).enumerate() {
            let _ = match mode {
                Reliability::FramingHeader => f.handle_stream(now, piece),
                Reliability::SimpleReliability => {
                    f.handle_record(now, Bytes::copy_from_slice(piece))
                }
            };
            drain(
                1 << 20,
                || f.poll_message(),
                |m| {
                    assert!(
                        m.len() <= max,
                        "a delivered message exceeds max-message-size"
                    );
                },
            );
            drain(1 << 20, || f.poll_event(), |_| {});
            drain(
                1 << 20,
                || f.poll_frame(),
                |frame| {
                    let opts = DecodeOptions::default().with_max_message_size(max.max(64));
                    assert!(
                        FramedMessage::decode(&frame, &opts).is_ok(),
                        "the framer emitted a frame that does not decode"
                    );
                },
            );
            now += Duration::from_millis(1 + (i as u64 % 7) * 100);
            if f.poll_timeout().is_some_and(|t| t <= now) {
                let _ = f.handle_timeout(now);
            }
        }
    }
}

// ---- reassembly ---------------------------------------------------------------------

/// Fragment reassembly (§6.7, `node::fragment::Reassembly`) with small limits, fed
/// fragments carved from `data`: built from a few bytes each (transaction, offset,
/// last bit, link, chunk), or raw bytes whose forwarding header parses. After every insert
/// the buffer is within its bounds; a message that completes is a well-formed
/// unfragmented message within max-message-size.
pub fn reassembly(data: &[u8]) {
    const MAX_BYTES: usize = 4096;
    const MAX_MESSAGES: usize = 4;
    const MAX_MESSAGE_SIZE: usize = 3000;
    let opts = DecodeOptions::default().with_max_message_size(1 << 16);
    let mut r = Reassembly::new(MAX_BYTES, MAX_MESSAGES, Duration::from_secs(2));
    let mut now = Instant::now();
    let mut input = Input(data);
    for _ in 0..512 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let source = u64::from(op & 3);
        let fragment = if op & 0x80 != 0 {
            // Raw: a message (or anything) whose header the node would peek.
            Bytes::copy_from_slice(input.record())
        } else {
            let tx = u64::from(input.u8() & 7);
            let offset = u32::from(input.u16()) * u32::from(1 + (op >> 4 & 3));
            let chunk = input.take(usize::from(input.0.first().copied().unwrap_or(0)) + 1);
            let mut h = ForwardingHeader::new(0x1234_5678, 1, 100, tx);
            h.destination_list = vec![Destination::Node(NodeId::from_u128(7))];
            h.fragment = Fragment::new(offset, op & 4 != 0);
            let mut b = BytesMut::new();
            let total = h.encoded_len() + chunk.len().saturating_sub(1);
            if h.encode_with_length(&mut b, total as u32).is_err() {
                continue;
            }
            b.put_slice(chunk.get(1..).unwrap_or(&[]));
            b.freeze()
        };
        if op & 0x40 != 0 {
            now += Duration::from_millis(700);
            r.expire(now);
        }
        let Ok((header, header_len)) = ForwardingHeader::peek(&fragment, &opts) else {
            continue;
        };
        let result = r.insert(now, source, header, header_len, fragment, MAX_MESSAGE_SIZE);
        assert!(
            r.buffered() <= MAX_BYTES,
            "reassembly holds {} bytes",
            r.buffered()
        );
        assert!(
            r.len() <= MAX_MESSAGES,
            "reassembly holds {} messages",
            r.len()
        );
        if let Ok(Some(m)) = result {
            let (h, hl) = ForwardingHeader::peek(&m, &opts)
                .expect("a reassembled message has a forwarding header");
            assert_eq!(h.length as usize, m.len(), "reassembled length field");
            assert_eq!(h.fragment, Fragment::UNFRAGMENTED);
            assert!(hl <= m.len());
            assert!(
                m.len() <= MAX_MESSAGE_SIZE,
                "a reassembled message of {} bytes, over max-message-size",
                m.len()
            );
        }
        let _ = r.next_deadline();
    }
}

// ---- chord_bodies -------------------------------------------------------------------

const CHORD_ME: u128 = 0x8000_0000_0000_0000_0000_0000_0000_0000;
const CHORD_PEERS: [u128; 4] = [
    0x1000_0000_0000_0000_0000_0000_0000_0001,
    0x4000_0000_0000_0000_0000_0000_0000_0002,
    0x9000_0000_0000_0000_0000_0000_0000_0003,
    0xe000_0000_0000_0000_0000_0000_0000_0004,
];

/// CHORD-RELOAD's bodies (§10): `ChordUpdate`, `ChordLeaveData` and `ChordRouteQueryAns`
/// decoded from `data` (what decodes re-encodes to the same bytes), then a joined
/// `topology::chord::Chord` with four linked neighbours fed a sequence of Updates, Leaves,
/// RouteQuery answers, link changes and timeouts carved from `data`. Its tables stay
/// within their bounds and its action queue drains.
pub fn chord_bodies(data: &[u8]) {
    let opts = DecodeOptions::default();
    let whole = Bytes::copy_from_slice(data);
    if let Ok(u) = ChordUpdate::decode(&whole, &opts) {
        assert_eq!(
            u.to_bytes().ok(),
            Some(whole.clone()),
            "ChordUpdate round trip"
        );
    }
    if let Ok(l) = ChordLeaveData::decode(&whole, &opts) {
        assert_eq!(
            l.to_bytes().ok(),
            Some(whole.clone()),
            "ChordLeaveData round trip"
        );
    }
    if let Ok(a) = ChordRouteQueryAns::decode(&whole, &opts) {
        assert_eq!(
            a.to_bytes().ok(),
            Some(whole.clone()),
            "ChordRouteQueryAns round trip"
        );
    }

    let settings = ChordSettings {
        node_id_len: 16,
        update_interval: Duration::from_secs(60),
        ping_interval: Duration::from_secs(300),
        reactive: true,
        neighbor_list_size: 3,
        max_fingers: 16,
        request_timeout: Duration::from_secs(3),
    };
    let mut now = Instant::now();
    let mut c = Chord::new(NodeId::from_u128(CHORD_ME), settings);
    c.start(now, StartMode::FirstNode);
    let ready = chord_peer_ready();
    for &p in &CHORD_PEERS {
        let peer = NodeId::from_u128(p);
        let _ = c.handle(now, TopologyInput::LinkUp { peer });
        let _ = c.handle(
            now,
            TopologyInput::Update {
                from: peer,
                body: ready.clone(),
            },
        );
    }
    drain(100_000, || c.poll_action(), |_| {});

    let mut input = Input(data);
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        // Peers 0–3 are linked neighbours; 4 is a stranger.
        let from = NodeId::from_u128(
            CHORD_PEERS
                .get(usize::from(op >> 5) % 5)
                .copied()
                .unwrap_or(0x6000_0000_0000_0000_0000_0000_0000_0005),
        );
        let mut body = || Bytes::copy_from_slice(input.record());
        let event = match op & 7 {
            0 | 1 => TopologyInput::Update { from, body: body() },
            2 => TopologyInput::Leave {
                from,
                overlay_specific_data: body(),
            },
            3 => TopologyInput::RouteQueryAnswered {
                asked: from,
                body: Ok(body()),
            },
            4 => TopologyInput::LinkDown { peer: from },
            5 => TopologyInput::LinkUp { peer: from },
            6 => TopologyInput::JoinRequest {
                from,
                overlay_specific_data: body(),
            },
            _ => {
                now += Duration::from_secs(u64::from(op >> 3));
                for _ in 0..64 {
                    match c.poll_timeout() {
                        Some(t) if t <= now => c.handle_timeout(now),
                        _ => break,
                    }
                }
                continue;
            }
        };
        let _ = c.handle(now, event);
        drain(100_000, || c.poll_action(), |_| {});
        assert!(c.predecessors().len() <= 64, "predecessor list grew");
        assert!(c.successors().len() <= 64, "successor list grew");
        assert!(c.fingers().len() <= 128, "finger table grew");
        assert!(c.routing_table().len() <= 256, "routing table grew");
        let _ = c.next_hop(NodeId::from_u128(CHORD_ME + 1).as_bytes(), &|_| true);
    }
}

fn chord_peer_ready() -> Bytes {
    ChordUpdate {
        uptime: 0,
        body: reload_wire::chord::ChordUpdateBody::PeerReady,
    }
    .to_bytes()
    .unwrap_or_default()
}

// ---- config_xml ---------------------------------------------------------------------

/// The configuration document (§11.1): `ConfigDocument::parse_bytes` and, when the grammar
/// allows it, the complete check (semantics, signatures, sequence) at a fixed time.
pub fn config_xml(data: &[u8]) {
    if ConfigDocument::parse_bytes(data).is_ok() {
        let report = check_document(
            data,
            &CheckOptions {
                verify: true,
                previous: None,
                now: wall(),
            },
        );
        assert!(report.document.is_some(), "the check refused what parsed");
        let _ = check_document(
            data,
            &CheckOptions {
                verify: true,
                previous: Some(fixture_config()),
                now: wall(),
            },
        );
    }
}

// ---- certificate --------------------------------------------------------------------

/// Certificates and names a peer presents (§11.3, §14.15): `ReloadCertificate::parse`
/// (16- and 20-byte Node-IDs) and, when it parses, the trust policy's verdict against the
/// fixture root; the same bytes as a PKCS#10 request (what a client sends the enrollment
/// server); and as text, `parse_reload_uri` and the PEM reader.
pub fn certificate(data: &[u8]) {
    let der = Bytes::copy_from_slice(data);
    for len in [16, 20] {
        if let Ok(cert) = ReloadCertificate::parse(der.clone(), len) {
            assert!(
                cert.node_ids.iter().all(|n| n.len() == len),
                "a Node-ID of the wrong length"
            );
            if len == 16 {
                let _ = fixture_trust().verify(&cert, &[fixture_root()], wall());
            }
        }
    }
    let _ = CertRequest::parse(data);
    let text = String::from_utf8_lossy(data);
    for len in [16, 20] {
        if let Ok(uri) = parse_reload_uri(&text, len) {
            assert!(!uri.destinations.is_empty());
        }
    }
    let _ = from_pem("CERTIFICATE", &text);
}

// ---- signer_cache -------------------------------------------------------------------

/// Message signatures and the certificate cache (§6.3.4): `data` is a sequence of
/// length-prefixed records; each that decodes as a message goes to a `sign::Verifier`
/// trusting the fixture root (so that seeds signed by fixture nodes verify and fill its
/// cache), each other one is a certificate for a small `CertCache` (insert) and a
/// `SignerIdentity` to resolve. Neither cache grows beyond its capacity.
pub fn signer_cache(data: &[u8]) {
    const CAPACITY: usize = 2;
    let opts = DecodeOptions::default();
    let mut verifier = Verifier::new(fixture_trust(), CAPACITY);
    let mut cache = CertCache::new(16, CAPACITY);
    let mut input = Input(data);
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let record = Bytes::copy_from_slice(input.record());
        if let Ok(m) = Message::decode(&record, &opts) {
            if let Ok(v) = verifier.verify_message(&m, wall()) {
                assert!(
                    v.cert.has_node_id(&v.node_id),
                    "a signer outside its certificate"
                );
            }
        } else {
            let _ = cache.insert(&record);
            if let Ok(identity) = SignerIdentity::decode(&record, &opts) {
                let _ = cache.resolve(&identity, &[]);
                let _ = verifier.cache.resolve(&identity, &[]);
            }
        }
        assert!(
            verifier.cache.len() <= CAPACITY,
            "the verifier's cache grew"
        );
        assert!(cache.len() <= CAPACITY, "the certificate cache grew");
    }
}

// ---- dtls_demux ---------------------------------------------------------------------

/// The addresses the DTLS target pretends the datagrams come from and go to.
pub const DTLS_LOCAL: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    6084,
);
pub const DTLS_REMOTE: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7)),
    40000,
);
/// The cookie secret of the DTLS target.
pub const COOKIE_SECRET: [u8; 32] = [0x5a; 32];

/// The (D)TLS server context of fixture node 0 (what a peer that sent an Attach uses).
pub fn fixture_link_context() -> Arc<LinkContext> {
    static CTX: OnceLock<Arc<LinkContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        let anchor = WallAnchor::new(Instant::now(), wall());
        let config = LinkConfig::new(fixture_trust(), 5000, anchor);
        LinkContext::new(config, &fixture_credentials(0)).expect("the fixture link context")
    })
    .clone()
}

/// What reaches a node's UDP socket and its (D)TLS servers: `data` is a sequence of
/// length-prefixed datagrams. The first goes through the stateless cookie exchange as the
/// endpoint does it (`ClientHello::parse`, `CookieJar::verify`, `hello_verify_request`,
/// and with a valid cookie `as_first` into a primed DTLS server link,
/// `Link::accept_dtls_with_cookie`); all of them also go to a plain DTLS server link
/// (`Link::accept_dtls`), and the whole input as a byte stream to a TLS server link
/// (`Link::accept_tls`). Links are drained and their timers run.
pub fn dtls_demux(data: &[u8]) {
    let jar = CookieJar::new(&COOKIE_SECRET);
    let mut datagrams = Vec::new();
    let mut input = Input(data);
    while !input.is_empty() && datagrams.len() < 32 {
        datagrams.push(input.record());
    }
    for d in &datagrams {
        let _ = is_client_hello(d);
        let _ = first_record_epoch_zero(d);
        if let Some(ch) = ClientHello::parse(d) {
            let random = ch.random(d);
            assert_eq!(random.len(), 32);
            let cookie = jar.cookie(DTLS_LOCAL, DTLS_REMOTE, random);
            let hvr = ch.hello_verify_request(d, &cookie);
            assert!(hvr.len() > 13 && first_record_epoch_zero(&hvr));
            let first = ch.as_first(d);
            let again = ClientHello::parse(&first).expect("as_first is a ClientHello");
            assert!(again.cookie(&first).is_empty(), "as_first keeps no cookie");
            assert_eq!(again.random(&first), random, "as_first keeps the random");
            let _ = jar.verify(DTLS_LOCAL, DTLS_REMOTE, random, ch.cookie(d));
        }
    }
    let ctx = fixture_link_context();
    let base = Instant::now();

    // The endpoint's path: a ClientHello with a valid cookie makes a primed link.
    if let Some(first) = datagrams.first()
        && let Some(ch) = ClientHello::parse(first)
        && jar.verify(DTLS_LOCAL, DTLS_REMOTE, ch.random(first), ch.cookie(first))
    {
        let cookie: [u8; COOKIE_LEN] = jar.cookie(DTLS_LOCAL, DTLS_REMOTE, ch.random(first));
        if let Ok(mut link) = Link::accept_dtls_with_cookie(&ctx, None, Some(cookie), base) {
            link.handle_input(base, &ch.as_first(first));
            drain(10_000, || link.poll_transmit(), |_| {});
            run_link(&mut link, base, &datagrams);
        }
        // An application flow's DTLS server (AppAttach over ICE, §6.5.2) takes the
        // same path.
        if let Ok(mut link) =
            Link::dtls_application(&ctx, crate::link::Role::Server, None, Some(cookie), base)
        {
            link.handle_input(base, &ch.as_first(first));
            drain(10_000, || link.poll_transmit(), |_| {});
            run_link(&mut link, base, &datagrams);
        }
    }
    if let Ok(mut link) = Link::dtls_application(&ctx, crate::link::Role::Client, None, None, base)
    {
        run_link(&mut link, base, &datagrams);
    }
    if let Ok(mut link) = Link::accept_dtls(&ctx, None, base) {
        run_link(&mut link, base, &datagrams);
    }
    if let Ok(mut link) = Link::accept_tls(&ctx, None, base) {
        run_link(&mut link, base, &[data]);
    }
}

fn run_link(link: &mut Link, base: Instant, inputs: &[&[u8]]) {
    let mut now = base;
    for d in inputs {
        link.handle_input(now, d);
        drain(10_000, || link.poll_transmit(), |_| {});
        // An application flow's messages are records (at most 2^14 bytes), unframed.
        let max = if link.is_application() {
            crate::link::MAX_RECORD_PLAINTEXT
        } else {
            link.max_message_size()
        };
        drain(
            10_000,
            || link.poll_event(),
            |e| {
                if let LinkEvent::Message(m) = e {
                    assert!(m.len() <= max, "a message over the link's max-message-size");
                }
            },
        );
        now += Duration::from_millis(300);
        if link.poll_timeout().is_some_and(|t| t <= now) {
            link.handle_timeout(now);
        }
    }
    now += Duration::from_secs(20);
    link.handle_timeout(now);
    drain(10_000, || link.poll_transmit(), |_| {});
    drain(10_000, || link.poll_event(), |_| {});
}

// ---- node_messages ------------------------------------------------------------------

const NODE_PROTOCOL: OverlayLinkType = OverlayLinkType::TLS_TCP_FH_NO_ICE;

fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 6084))
}

/// Three full cores (fixture nodes 0, 1, 2: CHORD-RELOAD, signatures, plain links bound
/// to their certificates) in the simulator, joined through node 0, the simulation
/// settled.
pub fn fixture_sim() -> Sim {
    let overlay = Overlay::new(fixture_config(), None);
    let mut sim = Sim::new(0xf022, SimNetwork::default());
    let anchor = WallAnchor::new(sim.now, wall());
    for i in 0..3 {
        let creds = fixture_credentials(i);
        let node_id = creds.node_id;
        let settings = NodeSettings::new(vec![(NODE_PROTOCOL, node_addr(i))]);
        let parts = NodeParts {
            settings,
            overlay: overlay.clone(),
            links: Box::new(PlainLinks::new(&creds.cert, &overlay, anchor)),
            credentials: creds,
            topology: Box::new(Chord::new(node_id, ChordSettings::from_overlay(&overlay))),
        };
        let node = Node::new(parts, sim.now, wall(), Seed::from_u64(0xf022 + i as u64));
        sim.add(node, node_addr(i));
    }
    for i in 0..3 {
        let now = sim.now;
        let how = if i == 0 {
            Start::FirstNode
        } else {
            Start::Join(vec![(NODE_PROTOCOL, node_addr(0))])
        };
        sim.nodes[i].node.start(now, how);
        sim.after_input(i);
        sim.run_for(Duration::from_secs(2));
    }
    sim.run_for(Duration::from_secs(5));
    sim
}

/// Sends a Ping from node `from` to node `to` and runs the simulation until it is
/// answered (or `limit` of simulated time passes): who answered.
pub fn sim_ping(sim: &mut Sim, from: usize, to: usize, limit: Duration) -> Option<NodeId> {
    let now = sim.now;
    let dest = vec![Destination::Node(sim.nodes[to].node.node_id())];
    let body = MessageBody::PingReq(PingReq::default());
    let tx = sim.nodes[from].node.send_request(now, dest, body).ok()?;
    sim.after_input(from);
    let is_answer =
        |e: &Event| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx);
    sim.run_until(limit, |s| s.nodes[from].events.iter().any(is_answer));
    let k = sim.nodes[from].events.iter().position(is_answer)?;
    match sim.nodes[from].events.remove(k) {
        Event::Response { result, .. } => result.ok().map(|(who, _)| who),
        _ => None,
    }
}

/// A full node receiving messages from a hostile neighbour: three joined cores
/// ([`fixture_sim`]); `data` is a sequence of records `[flags][len: u16][bytes]`, each
/// injected as one message into node 0 over its link from node 1, the adversary (a member
/// with a valid certificate), with a little simulated time after each (flags bits 5–7).
/// With flag bit 1, bytes that decode as a message are first signed by node 1 (a member
/// signs what it sends, so the fuzzer reaches past the signature check into the methods).
/// Afterwards node 0 is within its stated bounds and, once the overlay had 30 s to
/// recover, answers a Ping from node 2, the honest witness. (Not from node 1: what the
/// adversary says in its own name — a Leave, say — may rightly cost it its place.)
pub fn node_messages(data: &[u8]) {
    let mut sim = fixture_sim();
    let decode = sim.nodes[0].node.overlay().decode().clone();
    let adversary = fixture_credentials(1);
    let mut input = Input(data);
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let flags = input.u8();
        let mut bytes = Bytes::copy_from_slice(input.record());
        if flags & 2 != 0
            && let Ok(mut m) = Message::decode(&bytes, &decode)
            && adversary.sign_message(&mut m, vec![]).is_ok()
        {
            m.header.length = m.encoded_len() as u32;
            if let Ok(b) = m.to_bytes() {
                bytes = b;
            }
        }
        let _ = sim.inject(1, 0, bytes);
        sim.run_for(Duration::from_millis(50 + 50 * u64::from(flags >> 5)));
        node_within_bounds(&sim.nodes[0].node);
    }
    sim.run_for(Duration::from_secs(30));
    node_within_bounds(&sim.nodes[0].node);
    let answered = (0..3).any(|_| sim_ping(&mut sim, 2, 0, Duration::from_secs(20)).is_some());
    assert!(answered, "node 0 no longer answers a Ping from node 2");
}

fn node_within_bounds(node: &Node) {
    let s = node.settings();
    let (partials, bytes) = node.reassembly_backlog();
    assert!(
        partials <= s.reassembly_messages,
        "{partials} partial messages"
    );
    assert!(
        bytes <= s.reassembly_buffer,
        "{bytes} bytes being reassembled"
    );
    assert!(
        node.links().len() <= s.admission.max_links,
        "too many links"
    );
    assert!(
        node.cached_certificates() <= s.cert_cache_size,
        "certificate cache"
    );
    assert!(
        node.pending_app_requests() <= s.max_app_requests,
        "application requests"
    );
    assert!(
        node.pending_requests() <= s.max_outstanding,
        "outstanding requests"
    );
}
