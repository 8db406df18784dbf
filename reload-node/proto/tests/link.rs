//! Overlay link layer (RFC 6940 §6.6): TLS-TCP-FH-NO-ICE and DTLS-UDP-SR-NO-ICE links wired
//! back to back in memory on a virtual clock (`base + offset`, no sleeping, no sockets), plus
//! the framing layer alone, plus one TLS link over real loopback TCP.

mod pki;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use pki::*;
use reload_proto::identity::{IdentityError, SelfSignedDigest, TrustPolicy, self_signed_node_id};
use reload_proto::link::framing::{ack_covers, received_mask};
use reload_proto::link::*;
use reload_proto::sign::Credentials;
use reload_wire::{FramedMessage, NodeId, Wire};
use time::{Duration as TDuration, OffsetDateTime};

const MAX: usize = 60_000;

fn trust(ca: &TestCa) -> TrustPolicy {
    ca.trust()
}

fn config(ca: &TestCa) -> LinkConfig {
    LinkConfig::new(
        trust(ca),
        MAX,
        WallAnchor::new(Instant::now(), SystemTime::now()),
    )
}

fn ctx(cfg: LinkConfig, creds: &Credentials) -> Arc<LinkContext> {
    LinkContext::new(cfg, creds).unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A CA, the Attach sender (server, index 0) and the Attach receiver (client, index 1).
struct Fixture {
    ca: TestCa,
    server: Credentials,
    client: Credentials,
}

const SERVER_ID: u128 = 0x1111;
const CLIENT_ID: u128 = 0x2222;

fn fixture(rsa: bool) -> Fixture {
    let ca = TestCa::new(rsa);
    let server = ca.node(rsa, SERVER_ID, "server");
    let client = ca.node(rsa, CLIENT_ID, "client");
    Fixture { ca, server, client }
}

fn sid() -> NodeId {
    NodeId::from_u128(SERVER_ID)
}
fn cid() -> NodeId {
    NodeId::from_u128(CLIENT_ID)
}

type DropFn = Box<dyn FnMut(usize, &[u8]) -> bool>;

/// Two links back to back: index 0 the server, 1 the client; each transmit is delivered to
/// the other after `latency`, unless `drop` says otherwise.
struct Net {
    base: Instant,
    now: Instant,
    latency: Duration,
    links: [Link; 2],
    transit: VecDeque<(Instant, usize, Bytes)>,
    events: [Vec<(Duration, LinkEvent)>; 2],
    /// Every transmit, with its time offset.
    sent: [Vec<(Duration, Bytes)>; 2],
    /// Every transmit in the order it was sent: (sender, bytes).
    wire: Vec<(usize, Bytes)>,
    drop: DropFn,
    dropped: [usize; 2],
}

impl Net {
    fn new(a: Link, b: Link, base: Instant) -> Self {
        Net {
            base,
            now: base,
            latency: Duration::ZERO,
            links: [a, b],
            transit: VecDeque::new(),
            events: [Vec::new(), Vec::new()],
            sent: [Vec::new(), Vec::new()],
            wire: Vec::new(),
            drop: Box::new(|_, _| false),
            dropped: [0, 0],
        }
    }

    fn t(&self) -> Duration {
        self.now - self.base
    }

    fn collect(&mut self) -> bool {
        let mut any = false;
        for i in 0..2 {
            while let Some(b) = self.links[i].poll_transmit() {
                any = true;
                self.sent[i].push((self.t(), b.clone()));
                self.wire.push((i, b.clone()));
                if (self.drop)(i, &b) {
                    self.dropped[i] += 1;
                    continue;
                }
                self.transit.push_back((self.now + self.latency, 1 - i, b));
            }
            while let Some(e) = self.links[i].poll_event() {
                any = true;
                self.events[i].push((self.t(), e));
            }
        }
        any
    }

    fn deliver_due(&mut self) -> bool {
        let mut any = false;
        while self
            .transit
            .front()
            .is_some_and(|(at, _, _)| *at <= self.now)
        {
            let (_, to, b) = self.transit.pop_front().unwrap();
            self.links[to].handle_input(self.now, &b);
            any = true;
        }
        any
    }

    /// Delivers everything due now until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let a = self.collect();
            let b = self.deliver_due();
            if !a && !b {
                return;
            }
        }
        panic!("links do not settle");
    }

    fn next_time(&self) -> Option<Instant> {
        let t = self.transit.front().map(|(at, _, _)| *at);
        [
            t,
            self.links[0].poll_timeout(),
            self.links[1].poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs deliveries and timers up to `until`.
    fn run_until(&mut self, until: Instant) {
        self.settle();
        for _ in 0..100_000 {
            match self.next_time() {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for i in 0..2 {
                        if self.links[i].poll_timeout().is_some_and(|x| x <= self.now) {
                            self.links[i].handle_timeout(self.now);
                        }
                    }
                    self.settle();
                }
                _ => {
                    self.now = until;
                    self.settle();
                    return;
                }
            }
        }
        panic!("too many steps");
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn send(&mut self, i: usize, m: Bytes) {
        self.links[i].send(self.now, m).unwrap();
        self.settle();
    }

    fn messages(&self, i: usize) -> Vec<Bytes> {
        self.events[i]
            .iter()
            .filter_map(|(_, e)| match e {
                LinkEvent::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn established(&self, i: usize) -> Option<Vec<NodeId>> {
        self.events[i].iter().find_map(|(_, e)| match e {
            LinkEvent::Established { peer_node_ids, .. } => Some(peer_node_ids.clone()),
            _ => None,
        })
    }

    fn failure(&self, i: usize) -> Option<LinkError> {
        self.events[i].iter().find_map(|(_, e)| match e {
            LinkEvent::Failed(e) => Some(e.clone()),
            _ => None,
        })
    }

    fn event_time(&self, i: usize, f: impl Fn(&LinkEvent) -> bool) -> Option<Duration> {
        self.events[i].iter().find(|(_, e)| f(e)).map(|(t, _)| *t)
    }
}

fn tls_net(
    server: &Arc<LinkContext>,
    client: &Arc<LinkContext>,
    server_expects: Option<NodeId>,
    client_expects: Option<NodeId>,
) -> Net {
    let base = Instant::now();
    let a = Link::accept_tls(server, server_expects, base).unwrap();
    let b = Link::connect_tls(client, client_expects, base).unwrap();
    Net::new(a, b, base)
}

fn dtls_net(
    server: &Arc<LinkContext>,
    client: &Arc<LinkContext>,
    server_expects: Option<NodeId>,
    client_expects: Option<NodeId>,
) -> Net {
    let base = Instant::now();
    let a = Link::accept_dtls(server, server_expects, base).unwrap();
    let b = Link::connect_dtls(client, client_expects, base).unwrap();
    Net::new(a, b, base)
}

fn make_net(dtls: bool, f: &Fixture, sc: LinkConfig, cc: LinkConfig) -> Net {
    let s = ctx(sc, &f.server);
    let c = ctx(cc, &f.client);
    if dtls {
        dtls_net(&s, &c, Some(cid()), Some(sid()))
    } else {
        tls_net(&s, &c, Some(cid()), Some(sid()))
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// Handshake, peer identities, messages both ways incl. one of the maximum size.
fn exchange(dtls: bool, rsa: bool) {
    let f = fixture(rsa);
    let mut net = make_net(dtls, &f, config(&f.ca), config(&f.ca));
    net.settle();
    assert_eq!(net.established(0), Some(vec![cid()]), "{:?}", net.events[0]);
    assert_eq!(net.established(1), Some(vec![sid()]), "{:?}", net.events[1]);
    for l in &net.links {
        assert!(l.is_established());
        assert!(l.describe().is_some());
    }
    assert_eq!(
        net.links[0].peer().unwrap().cert.user_name.as_deref(),
        Some("client@test.example.org")
    );

    let max = net.links[0].max_message_size();
    assert_eq!(max, if dtls { MAX_DTLS_MESSAGE } else { MAX });
    let msgs = [
        pattern(100, 1),
        pattern(max, 2),
        Bytes::new(),
        pattern(3000, 3),
    ];
    for m in &msgs {
        net.send(0, m.clone());
        net.send(1, m.clone());
    }
    net.run_for(ms(100));
    assert_eq!(net.messages(1), msgs.to_vec());
    assert_eq!(net.messages(0), msgs.to_vec());
    // One over the maximum is refused and the link stays up.
    assert_eq!(
        net.links[0].send(net.now, pattern(max + 1, 0)),
        Err(LinkError::MessageTooLarge { size: max + 1, max })
    );
    assert!(net.links[0].is_established());
    // Every data frame was ACKed.
    for i in 0..2 {
        let s = net.links[i].framing_stats();
        assert_eq!(s.data_sent, 4);
        assert_eq!(s.data_received, 4);
        assert_eq!(s.acks_sent, 4);
        assert_eq!(s.acks_received, 4);
        assert_eq!(s.retransmissions, 0);
        assert_eq!(net.links[i].framer().next_sequence(), 4);
        assert!(!net.links[i].framer().awaiting_ack());
    }
    assert!(net.failure(0).is_none() && net.failure(1).is_none());

    // Orderly close.
    net.links[1].close(net.now);
    net.settle();
    assert!(matches!(net.events[1].last(), Some((_, LinkEvent::Closed))));
    assert!(matches!(net.events[0].last(), Some((_, LinkEvent::Closed))));
    assert_eq!(net.links[0].state(), LinkState::Closed);
    assert_eq!(
        net.links[0].send(net.now, pattern(1, 0)),
        Err(LinkError::Closed)
    );
}

#[test]
fn tls_handshake_and_messages_both_ways() {
    exchange(false, false);
}

#[test]
fn tls_rsa_handshake_and_messages() {
    exchange(false, true);
}

#[test]
fn dtls_handshake_and_messages_both_ways() {
    exchange(true, false);
}

#[test]
fn dtls_rsa_handshake_and_messages() {
    exchange(true, true);
}

#[test]
fn tls12_only_link_and_key_log() {
    let f = fixture(false);
    let (sink, lines) = KeyLogSink::collect();
    let mut sc = config(&f.ca);
    sc.tls13 = false;
    sc.key_log = Some(sink);
    let mut net = make_net(false, &f, sc, config(&f.ca));
    net.settle();
    assert!(
        net.links[0].describe().unwrap().contains("TLSv1_2"),
        "{:?}",
        net.links[0].describe()
    );
    net.send(1, pattern(10, 0));
    assert_eq!(net.messages(0), vec![pattern(10, 0)]);
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let parts: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(parts[0], "CLIENT_RANDOM");
    assert_eq!(parts[1].len(), 64);
    assert_eq!(parts[2].len(), 96, "48-byte master secret");
}

#[test]
fn tls13_key_log_lines() {
    let f = fixture(false);
    let (sink, lines) = KeyLogSink::collect();
    let mut cc = config(&f.ca);
    cc.key_log = Some(sink);
    let mut net = make_net(false, &f, config(&f.ca), cc);
    net.settle();
    assert!(net.links[1].describe().unwrap().contains("TLSv1_3"));
    let lines = lines.lock().unwrap();
    let labels: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    for want in [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    ] {
        assert!(labels.contains(&want), "{labels:?}");
    }
    // All lines name the same ClientHello.random.
    let randoms: std::collections::HashSet<&str> =
        lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(randoms.len(), 1);
}

/// A pcap of UDP datagrams (LINKTYPE_RAW IPv4): sender 0 is 127.0.0.1:6084, sender 1 is
/// 127.0.0.2:40000.
fn udp_pcap(wire: &[(usize, Bytes)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    for (k, (from, data)) in wire.iter().enumerate() {
        let (src, dst, sport, dport) = if *from == 0 {
            ([127, 0, 0, 1], [127, 0, 0, 2], 6084u16, 40000u16)
        } else {
            ([127, 0, 0, 2], [127, 0, 0, 1], 40000, 6084)
        };
        let total = 20 + 8 + data.len();
        let mut p = Vec::with_capacity(total);
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let mut sum: u32 = p
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(data);
        out.extend_from_slice(&(k as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&p);
    }
    out
}

#[test]
fn dtls_key_log_decrypts_in_tshark() {
    // rtc-dtls has no key log hook; the link writes CLIENT_RANDOM from its state export.
    // tshark, given that line, decrypts the DTLS records into RELOAD frames.
    let f = fixture(false);
    let (sink, lines) = KeyLogSink::collect();
    let mut sc = config(&f.ca);
    sc.key_log = Some(sink);
    let mut net = make_net(true, &f, sc, config(&f.ca));
    net.settle();
    net.send(1, pattern(100, 0));
    net.send(0, pattern(50, 1));
    net.run_for(ms(1000));
    assert_eq!(net.messages(0), vec![pattern(100, 0)]);
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let parts: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(parts[0], "CLIENT_RANDOM");
    assert_eq!((parts[1].len(), parts[2].len()), (64, 96));
    let dir = std::env::temp_dir().join(format!("reload-dtls-keylog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cap = dir.join("dtls.pcap");
    let keys = dir.join("keys.log");
    std::fs::write(&cap, udp_pcap(&net.wire)).unwrap();
    std::fs::write(&keys, format!("{}\n", lines[0])).unwrap();
    let fields = |keylog: &std::path::Path| -> String {
        let out = std::process::Command::new("tshark")
            .arg("-n")
            .arg("-r")
            .arg(&cap)
            .arg("-o")
            .arg(format!("tls.keylog_file:{}", keylog.display()))
            .args(["-d", "udp.port==6084,dtls", "-T", "fields"])
            .args(["-e", "data.data"])
            .output()
            .expect("tshark runs (CI installs it; apt-get install tshark)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The decrypted application data is the framing (§6.6.2): a data frame is type 128,
    // then its sequence number and 24-bit length (100 and 50 bytes here).
    let decrypted = fields(&keys);
    let data_frames = decrypted
        .lines()
        .filter(|l| l.starts_with("8000000000000064") || l.starts_with("8000000000000032"))
        .count();
    assert!(data_frames >= 2, "decrypted frames:\n{decrypted}");
    // Without the key log nothing of the framing is visible.
    let none = dir.join("none.log");
    std::fs::write(&none, "").unwrap();
    let opaque = fields(&none);
    assert!(
        !opaque.lines().any(|l| l.starts_with("80000000")),
        "{opaque}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One chunk per framed message, and each chunk exactly the TLS records of that frame.
#[test]
fn tls_one_frame_per_record_and_chunk() {
    let f = fixture(false);
    let mut net = make_net(false, &f, config(&f.ca), config(&f.ca));
    net.settle();
    let before = net.sent[0].len();
    let sizes = [10usize, 5000, 40_000];
    for &n in &sizes {
        net.send(0, pattern(n, 9));
    }
    let chunks: Vec<Bytes> = net.sent[0][before..]
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(chunks.len(), sizes.len());
    for (c, &n) in chunks.iter().zip(&sizes) {
        // Walk the TLS records of the chunk.
        let (mut off, mut records, mut payload) = (0, 0, 0);
        while off < c.len() {
            assert_eq!(c[off], 23, "application_data record");
            let len = u16::from_be_bytes([c[off + 3], c[off + 4]]) as usize;
            records += 1;
            // TLS 1.3 record: inner content type byte and 16-byte tag.
            payload += len - 17;
            off += 5 + len;
        }
        assert_eq!(off, c.len());
        assert_eq!(payload, n + 8, "one data frame");
        assert_eq!(records, (n + 8).div_ceil(16384));
    }
    // Each data frame was answered by one ACK chunk of one record.
    let acks = &net.sent[1][net.sent[1].len() - sizes.len()..];
    for (_, c) in acks {
        assert_eq!(c.len(), 5 + 9 + 17);
    }
}

// ---- Authentication refusals ----

fn refused(
    dtls: bool,
    f: &Fixture,
    sc: LinkConfig,
    cc: LinkConfig,
    server_expects: Option<NodeId>,
    client_expects: Option<NodeId>,
) -> Net {
    let s = ctx(sc, &f.server);
    let c = ctx(cc, &f.client);
    let mut net = if dtls {
        dtls_net(&s, &c, server_expects, client_expects)
    } else {
        tls_net(&s, &c, server_expects, client_expects)
    };
    net.run_for(ms(100));
    net
}

fn other_ca_client(f: &mut Fixture) {
    let other = TestCa::named(false, "another root");
    f.client = other.node(false, CLIENT_ID, "client");
}

fn check_refusal(dtls: bool) {
    // Client certificate from another CA: the server refuses it.
    let mut f = fixture(false);
    other_ca_client(&mut f);
    let net = refused(
        dtls,
        &f,
        config(&f.ca),
        config(&f.ca),
        Some(cid()),
        Some(sid()),
    );
    assert_eq!(
        net.failure(0),
        Some(LinkError::PeerAuth(AuthError::Certificate(
            IdentityError::UnknownCa
        ))),
        "{:?}",
        net.events[0]
    );
    assert!(net.established(0).is_none());
    match net.failure(1) {
        Some(LinkError::PeerAlert(a)) => {
            if !dtls {
                assert_eq!(a, "UnknownCA")
            }
        }
        other => panic!("client: {other:?} {:?}", net.events[1]),
    }

    // Server certificate from another CA: the client refuses it.
    let mut f = fixture(false);
    let other = TestCa::named(false, "another root");
    f.server = other.node(false, SERVER_ID, "server");
    let net = refused(
        dtls,
        &f,
        config(&f.ca),
        config(&f.ca),
        Some(cid()),
        Some(sid()),
    );
    assert_eq!(
        net.failure(1),
        Some(LinkError::PeerAuth(AuthError::Certificate(
            IdentityError::UnknownCa
        )))
    );
    assert!(net.established(1).is_none());
    assert!(
        matches!(net.failure(0), Some(LinkError::PeerAlert(_))),
        "{:?}",
        net.events[0]
    );
    assert!(net.established(0).is_none());

    // The server's certificate is valid but not for the Node-ID the Attach named.
    let f = fixture(false);
    let wrong = NodeId::from_u128(0x9999);
    let net = refused(
        dtls,
        &f,
        config(&f.ca),
        config(&f.ca),
        Some(cid()),
        Some(wrong),
    );
    assert_eq!(
        net.failure(1),
        Some(LinkError::PeerAuth(AuthError::WrongNodeId {
            expected: wrong,
            found: vec![sid()]
        }))
    );
    assert!(net.established(1).is_none());
    assert!(matches!(net.failure(0), Some(LinkError::PeerAlert(_))));
    // And the server side checks the client's Node-ID the same way.
    let net = refused(
        dtls,
        &f,
        config(&f.ca),
        config(&f.ca),
        Some(wrong),
        Some(sid()),
    );
    assert_eq!(
        net.failure(0),
        Some(LinkError::PeerAuth(AuthError::WrongNodeId {
            expected: wrong,
            found: vec![cid()]
        }))
    );
    // A bootstrap connection that does not know the Node-ID yet accepts any valid one.
    let net = refused(dtls, &f, config(&f.ca), config(&f.ca), None, None);
    assert_eq!(net.established(0), Some(vec![cid()]));
    assert_eq!(net.established(1), Some(vec![sid()]));

    // Expired client certificate.
    let mut f = fixture(false);
    let now = OffsetDateTime::now_utc();
    let (key, der) = f.ca.issue(
        false,
        &[cid()],
        "client",
        OVERLAY,
        (now - TDuration::days(10), now - TDuration::days(1)),
    );
    f.client = creds(&key, der, cid());
    let net = refused(
        dtls,
        &f,
        config(&f.ca),
        config(&f.ca),
        Some(cid()),
        Some(sid()),
    );
    assert_eq!(
        net.failure(0),
        Some(LinkError::PeerAuth(AuthError::Certificate(
            IdentityError::Expired
        )))
    );
    if !dtls {
        assert_eq!(
            net.failure(1),
            Some(LinkError::PeerAlert("CertificateExpired".into()))
        );
    }

    // The same certificate is fine for a server whose wall clock says it is still valid.
    let mut sc = config(&f.ca);
    sc.anchor = WallAnchor::new(
        Instant::now(),
        SystemTime::now() - Duration::from_secs(5 * 86400),
    );
    let net = refused(dtls, &f, sc, config(&f.ca), Some(cid()), Some(sid()));
    assert_eq!(net.established(0), Some(vec![cid()]), "{:?}", net.events[0]);

    // bad-node: the client's Node-ID is revoked by the configuration.
    let f = fixture(false);
    let mut sc = config(&f.ca);
    sc.trust.bad_nodes = vec![cid()];
    let net = refused(dtls, &f, sc, config(&f.ca), Some(cid()), Some(sid()));
    assert_eq!(
        net.failure(0),
        Some(LinkError::PeerAuth(AuthError::Certificate(
            IdentityError::BadNode(cid())
        )))
    );
    if !dtls {
        assert_eq!(
            net.failure(1),
            Some(LinkError::PeerAlert("CertificateRevoked".into()))
        );
    }
}

#[test]
fn tls_refuses_bad_certificates() {
    check_refusal(false);
}

#[test]
fn dtls_refuses_bad_certificates() {
    check_refusal(true);
}

/// Self-signed identities (§11.3.1) are accepted where the policy permits them.
#[test]
fn self_signed_peer_where_permitted() {
    for dtls in [false, true] {
        let f = fixture(false);
        let (key, der, ids) = self_signed(false, |spki| {
            vec![self_signed_node_id(SelfSignedDigest::Sha256, spki, 1, 1, 16).unwrap()]
        });
        let client = creds(&key, der, ids[0]);
        let mut sc = config(&f.ca);
        let s1 = ctx(sc.clone(), &f.server);
        let c = ctx(config(&f.ca), &client);
        let mut net = if dtls {
            dtls_net(&s1, &c, None, Some(sid()))
        } else {
            tls_net(&s1, &c, None, Some(sid()))
        };
        net.settle();
        assert_eq!(
            net.failure(0),
            Some(LinkError::PeerAuth(AuthError::Certificate(
                IdentityError::SelfSignedNotPermitted
            )))
        );
        sc.trust.self_signed = Some(SelfSignedDigest::Sha256);
        let s2 = ctx(sc, &f.server);
        let mut net = if dtls {
            dtls_net(&s2, &c, Some(ids[0]), Some(sid()))
        } else {
            tls_net(&s2, &c, Some(ids[0]), Some(sid()))
        };
        net.settle();
        assert_eq!(net.established(0), Some(ids.clone()), "{:?}", net.events[0]);
    }
}

// ---- Raw peers: a TLS client without a certificate, a TLS peer writing garbage ----

mod raw {
    use std::sync::Arc;

    use pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// A rustls client that accepts any server and presents `cert` (or none).
    pub fn client(cert: Option<(Vec<u8>, bytes::Bytes)>) -> ClientConnection {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let b = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)));
        let cfg = match cert {
            Some((key, der)) => b
                .with_client_auth_cert(
                    vec![CertificateDer::from(der.to_vec())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        ClientConnection::new(
            Arc::new(cfg),
            ServerName::try_from("reload.invalid").unwrap(),
        )
        .unwrap()
    }
}

/// Pumps a raw rustls client against a link; returns the client's error, if any.
fn pump_raw(
    link: &mut Link,
    c: &mut rustls::ClientConnection,
    now: Instant,
    events: &mut Vec<LinkEvent>,
) -> Option<rustls::Error> {
    let mut err = None;
    for _ in 0..100 {
        let mut moved = false;
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            link.handle_input(now, &buf);
        }
        while let Some(b) = link.poll_transmit() {
            moved = true;
            if err.is_none() {
                let mut s = &b[..];
                while !s.is_empty() {
                    if c.read_tls(&mut s).unwrap() == 0 {
                        break;
                    }
                    if let Err(e) = c.process_new_packets() {
                        err = Some(e);
                        break;
                    }
                }
            }
        }
        while let Some(e) = link.poll_event() {
            moved = true;
            events.push(e);
        }
        if !moved {
            break;
        }
    }
    err
}

#[test]
fn tls_server_requires_client_certificate() {
    let f = fixture(false);
    let s = ctx(config(&f.ca), &f.server);
    let now = Instant::now();
    let mut link = Link::accept_tls(&s, None, now).unwrap();
    let mut c = raw::client(None);
    let mut events = Vec::new();
    let err = pump_raw(&mut link, &mut c, now, &mut events);
    assert!(
        matches!(
            events.last(),
            Some(LinkEvent::Failed(LinkError::PeerAuth(
                AuthError::NoCertificate
            )))
        ),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, LinkEvent::Established { .. }))
    );
    assert_eq!(
        err,
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
        ))
    );
}

/// Garbage from the network never panics: raw bytes before the handshake, garbage frames
/// inside an authenticated TLS stream, a frame announcing more than the max-message-size.
#[test]
fn tls_garbage_fails_the_link() {
    let f = fixture(false);
    let s = ctx(config(&f.ca), &f.server);
    let now = Instant::now();

    // Not TLS at all.
    let mut link = Link::accept_tls(&s, None, now).unwrap();
    link.handle_input(now, b"GET / HTTP/1.1\r\n\r\n");
    assert!(matches!(
        link.poll_event(),
        Some(LinkEvent::Failed(LinkError::Protocol(_)))
    ));
    assert_eq!(link.state(), LinkState::Failed);
    link.handle_input(now, b"more");
    assert!(link.poll_event().is_none());

    // Authenticated TLS carrying no frames.
    let key = f.client.key.to_pkcs8().unwrap();
    for (bytes, want) in [
        (&b"\x07garbage"[..], "framing"),
        // Not followed by a RELOAD forwarding header: no answer possible, the link fails.
        (
            &[128, 0, 0, 0, 0, 0xff, 0xff, 0xff, 1, 2, 3, 4][..],
            "too large",
        ),
    ] {
        let mut link = Link::accept_tls(&s, Some(cid()), now).unwrap();
        let mut c = raw::client(Some((key.clone(), f.client.cert.der().clone())));
        let mut events = Vec::new();
        assert!(pump_raw(&mut link, &mut c, now, &mut events).is_none());
        assert!(
            matches!(events[0], LinkEvent::Established { .. }),
            "{events:?}"
        );
        use std::io::Write;
        c.writer().write_all(bytes).unwrap();
        pump_raw(&mut link, &mut c, now, &mut events);
        match (events.last(), want) {
            (Some(LinkEvent::Failed(LinkError::Framing(_))), "framing") => {}
            (
                Some(LinkEvent::Failed(LinkError::MessageTooLarge {
                    size: 0xff_ffff,
                    max: MAX,
                })),
                "too large",
            ) => {}
            other => panic!("{other:?}"),
        }
    }

    // Established link, then the peer's bytes are corrupted in transit.
    let mut net = make_net(false, &f, config(&f.ca), config(&f.ca));
    net.settle();
    let now = net.now;
    net.links[0].handle_input(
        now,
        &[
            23, 3, 3, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
        ],
    );
    net.settle();
    assert!(
        matches!(net.failure(0), Some(LinkError::Protocol(_))),
        "{:?}",
        net.events[0]
    );
}

// ---- DTLS specifics ----

#[test]
fn dtls_server_requires_client_certificate() {
    use rtc_dtls::config::ConfigBuilder;
    use rtc_dtls::crypto_provider::providers::AwsLcRsProvider;
    use rtc_dtls::endpoint::Endpoint;

    let f = fixture(false);
    let s = ctx(config(&f.ca), &f.server);
    let now = Instant::now();
    let mut link = Link::accept_dtls(&s, None, now).unwrap();
    let cfg = ConfigBuilder::default()
        .with_crypto_provider(Arc::new(AwsLcRsProvider::new()))
        .with_insecure_skip_verify(true)
        .with_server_name("x".into())
        .build(true, None)
        .unwrap();
    let peer: std::net::SocketAddr = "192.0.2.9:9".parse().unwrap();
    let mut ep = Endpoint::new(peer, rtc_shared::TransportProtocol::UDP, None);
    ep.connect(now, peer, Arc::new(cfg), None).unwrap();
    let mut events = Vec::new();
    for _ in 0..50 {
        let mut moved = false;
        while let Some(t) = ep.poll_transmit() {
            moved = true;
            link.handle_input(now, &t.message);
        }
        while let Some(d) = link.poll_transmit() {
            moved = true;
            let _ = ep.read(now, peer, None, bytes::BytesMut::from(&d[..]));
        }
        while let Some(e) = link.poll_event() {
            events.push(e);
        }
        if !moved {
            break;
        }
    }
    assert!(
        matches!(
            events.last(),
            Some(LinkEvent::Failed(LinkError::PeerAuth(
                AuthError::NoCertificate
            )))
        ),
        "{events:?}"
    );
}

/// Stop-and-wait (§6.6.3.1): one message in flight, the rest queued, 10 ms after an ACK.
#[test]
fn dtls_stop_and_wait_one_in_flight() {
    let f = fixture(false);
    let mut net = make_net(true, &f, config(&f.ca), config(&f.ca));
    net.settle();
    net.latency = ms(20);
    let before = net.sent[0].len();
    let t0 = net.t();
    for i in 0..3u8 {
        net.links[0].send(net.now, pattern(50, i)).unwrap();
    }
    net.settle();
    assert_eq!(net.sent[0].len() - before, 1, "only one message in flight");
    assert_eq!(net.links[0].framer().queued(), 2);
    net.run_for(ms(500));
    assert_eq!(
        net.messages(1),
        vec![pattern(50, 0), pattern(50, 1), pattern(50, 2)]
    );
    // Data at 0, then each 40 ms RTT + 10 ms pacing later.
    let times: Vec<Duration> = net.sent[0][before..].iter().map(|(t, _)| *t - t0).collect();
    assert_eq!(times, vec![ms(0), ms(50), ms(100)]);
    assert_eq!(net.links[0].framing_stats().retransmissions, 0);
    assert_eq!(net.links[0].framing_stats().rtt_samples, 3);
    assert_eq!(net.links[0].srtt(), Some(ms(40)));
}

/// Retransmission with injected loss: new sequence numbers, doubled timeout.
#[test]
fn dtls_retransmits_lost_datagrams() {
    let f = fixture(false);
    let mut net = make_net(true, &f, config(&f.ca), config(&f.ca));
    net.settle();
    let lost = Arc::new(Mutex::new(2usize));
    let l = lost.clone();
    net.drop = Box::new(move |from, _| {
        let mut n = l.lock().unwrap();
        if from == 0 && *n > 0 {
            *n -= 1;
            return true;
        }
        false
    });
    let t0 = net.t();
    let before = net.sent[0].len();
    net.send(0, pattern(200, 7));
    net.run_for(ms(3000));
    assert_eq!(net.messages(1), vec![pattern(200, 7)]);
    let times: Vec<Duration> = net.sent[0][before..].iter().map(|(t, _)| *t - t0).collect();
    assert_eq!(times, vec![ms(0), ms(500), ms(1500)], "RTO 500 ms, doubled");
    let s = net.links[0].framing_stats();
    assert_eq!((s.data_sent, s.retransmissions, s.acks_received), (3, 2, 1));
    // Retransmissions got new sequence numbers; the receiver saw only the third.
    assert_eq!(net.links[0].framer().next_sequence(), 3);
    assert!(net.failure(0).is_none());
    assert!(!net.links[0].framer().awaiting_ack());
}

/// No ACK at all: transmissions at 0, 500, 1500, 3500, 7500 ms (§6.6.3.1 L4753), stalled at
/// the third retransmission, failed when the fifth times out.
#[test]
fn dtls_link_fails_after_five_transmissions() {
    let f = fixture(false);
    let mut net = make_net(true, &f, config(&f.ca), config(&f.ca));
    net.settle();
    net.drop = Box::new(|from, _| from == 0);
    let t0 = net.t();
    let before = net.sent[0].len();
    net.send(0, pattern(200, 7));
    net.run_for(ms(20_000));
    let times: Vec<Duration> = net.sent[0][before..]
        .iter()
        .map(|(t, _)| *t - t0)
        .take(5)
        .collect();
    assert_eq!(times, vec![ms(0), ms(500), ms(1500), ms(3500), ms(7500)]);
    assert_eq!(
        net.failure(0),
        Some(LinkError::RetransmissionsExhausted { transmissions: 5 })
    );
    assert_eq!(
        net.event_time(0, |e| matches!(e, LinkEvent::Failed(_))),
        Some(t0 + ms(15_500))
    );
    assert_eq!(
        net.event_time(0, |e| matches!(e, LinkEvent::Stalled)),
        Some(t0 + ms(3500))
    );
    assert_eq!(net.links[0].state(), LinkState::Failed);
    assert!(net.messages(1).is_empty());
}

/// ACKs resume after a stall: the link recovers.
#[test]
fn dtls_stall_then_resume() {
    let f = fixture(false);
    let mut net = make_net(true, &f, config(&f.ca), config(&f.ca));
    net.settle();
    let lost = Arc::new(Mutex::new(3usize));
    let l = lost.clone();
    net.drop = Box::new(move |from, _| {
        let mut n = l.lock().unwrap();
        if from == 0 && *n > 0 {
            *n -= 1;
            return true;
        }
        false
    });
    net.send(0, pattern(10, 1));
    net.run_for(ms(10_000));
    assert_eq!(net.messages(1), vec![pattern(10, 1)]);
    let kinds: Vec<&str> = net.events[0]
        .iter()
        .filter_map(|(_, e)| match e {
            LinkEvent::Stalled => Some("stalled"),
            LinkEvent::Resumed => Some("resumed"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, vec!["stalled", "resumed"]);
    assert!(net.links[0].is_established());
}

#[test]
fn dtls_garbage_datagrams_are_discarded() {
    let f = fixture(false);
    let mut net = make_net(true, &f, config(&f.ca), config(&f.ca));
    // During the handshake and after it, random datagrams neither panic nor kill the link.
    let mut rng = 0x1234_5678_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..2 {
        for _ in 0..300 {
            let len = (next() % 200) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 0 && next() % 2 == 0 {
                d[0] = 20 + (next() % 4) as u8; // a plausible content type
            }
            let now = net.now;
            net.links[(next() % 2) as usize].handle_input(now, &d);
        }
        net.settle();
        if round == 0 {
            assert!(net.links[0].discarded_datagrams() > 0);
        }
    }
    // Garbage does not keep the handshake from completing, nor the messages from flowing.
    net.settle();
    assert_eq!(net.established(0), Some(vec![cid()]), "{:?}", net.events[0]);
    net.send(1, pattern(10, 3));
    net.run_for(ms(100));
    assert_eq!(net.messages(0), vec![pattern(10, 3)]);
}

#[test]
fn handshake_times_out_without_a_peer() {
    let f = fixture(false);
    let s = ctx(config(&f.ca), &f.server);
    let c = ctx(config(&f.ca), &f.client);
    for mut net in [tls_net(&s, &c, None, None), dtls_net(&s, &c, None, None)] {
        net.drop = Box::new(|_, _| true);
        net.run_for(Duration::from_secs(20));
        assert_eq!(net.failure(1), Some(LinkError::HandshakeTimeout));
        assert_eq!(net.failure(0), Some(LinkError::HandshakeTimeout));
    }
}

#[test]
fn messages_sent_before_the_handshake_wait() {
    for dtls in [false, true] {
        let f = fixture(false);
        let s = ctx(config(&f.ca), &f.server);
        let c = ctx(config(&f.ca), &f.client);
        let mut net = if dtls {
            dtls_net(&s, &c, None, None)
        } else {
            tls_net(&s, &c, None, None)
        };
        net.links[1].send(net.now, pattern(10, 1)).unwrap();
        net.links[1].send(net.now, pattern(10, 2)).unwrap();
        net.run_for(ms(100));
        assert_eq!(net.messages(0), vec![pattern(10, 1), pattern(10, 2)]);
    }
}

// ---- RTO over a link with a simulated RTT ----

#[test]
fn tls_rto_converges_on_the_rtt() {
    let f = fixture(false);
    let mut sc = config(&f.ca);
    sc.framing.min_rto = ms(1);
    let mut net = make_net(false, &f, sc, config(&f.ca));
    net.latency = ms(40);
    net.run_for(ms(500));
    assert!(net.links[0].is_established());
    // Before any sample: RFC 6298 (2.1) 1 s.
    assert_eq!(net.links[0].rto(), Duration::from_secs(1));
    net.send(0, pattern(10, 0));
    net.run_for(ms(100));
    // First sample R = 80 ms: SRTT = 80, RTTVAR = 40, RTO = 80 + 4·40 = 240 ms.
    assert_eq!(net.links[0].srtt(), Some(ms(80)));
    assert_eq!(net.links[0].rto(), ms(240));
    for i in 0..40 {
        net.send(0, pattern(10, i));
        net.run_for(ms(100));
    }
    let rto = net.links[0].rto();
    assert_eq!(net.links[0].srtt(), Some(ms(80)));
    assert!(rto >= ms(81) && rto <= ms(83), "{rto:?}");
    assert_eq!(net.links[0].framing_stats().rtt_samples, 41);
    assert!(
        net.events[0]
            .iter()
            .all(|(_, e)| !matches!(e, LinkEvent::Stalled))
    );
}

/// FH: no ACK within one RTO → Stalled; ACKs return → Resumed; none for 30 s more → failed.
#[test]
fn tls_ack_timeout_stall_and_failure() {
    let f = fixture(false);
    let mut net = make_net(false, &f, config(&f.ca), config(&f.ca));
    net.settle();
    // The peer's ACKs are held back (here: dropped).
    net.drop = Box::new(|from, _| from == 1);
    let t0 = net.t();
    net.send(0, pattern(10, 0));
    net.run_for(ms(1500));
    assert_eq!(
        net.event_time(0, |e| matches!(e, LinkEvent::Stalled)),
        Some(t0 + Duration::from_secs(1))
    );
    assert!(net.failure(0).is_none());
    net.run_for(Duration::from_secs(31));
    assert_eq!(
        net.failure(0),
        Some(LinkError::AckTimeout {
            waited: Duration::from_secs(31)
        })
    );
    assert_eq!(
        net.event_time(0, |e| matches!(e, LinkEvent::Failed(_))),
        Some(t0 + Duration::from_secs(31))
    );
}

// ---- The framing layer alone ----

fn data(seq: u32, m: &[u8]) -> Bytes {
    FramedMessage::Data {
        sequence: seq,
        message: Bytes::copy_from_slice(m),
    }
    .to_bytes()
    .unwrap()
}

fn ack_of(b: &Bytes) -> (u32, u32) {
    match FramedMessage::decode(b, &reload_wire::DecodeOptions::default()).unwrap() {
        FramedMessage::Ack {
            ack_sequence,
            received,
        } => (ack_sequence, received),
        other => panic!("{other:?}"),
    }
}

fn open_framer(mode: Reliability, cfg: FramingConfig, now: Instant) -> Framer {
    let mut f = Framer::new(mode, cfg);
    f.open(now);
    f
}

#[test]
fn ack_bitmask_names_the_previous_sequences() {
    let now = Instant::now();
    let mut f = open_framer(
        Reliability::SimpleReliability,
        FramingConfig::new(1000),
        now,
    );
    let mut acks = Vec::new();
    for seq in [0u32, 1, 2, 5, 3, 40] {
        f.handle_record(now, data(seq, b"x")).unwrap();
        acks.push(ack_of(&f.poll_frame().unwrap()));
    }
    assert_eq!(
        acks,
        vec![
            (0, 0),
            (1, 0b1),     // 0
            (2, 0b11),    // 1, 0
            (5, 0b11100), // 2, 1, 0 are 3, 4, 5 before 5
            (3, 0b111),   // 2, 1, 0; 5 is after 3
            (40, 0),      // 40 − M ≥ 35 for all: outside the window
        ]
    );
    // N − M = 31 is the last bit the RFC's bound `M > N − 32` allows.
    assert_eq!(received_mask(40, [9, 8]), 1 << 30);
    assert_eq!(f.stats().acks_sent, 6);
    assert_eq!(f.poll_message().unwrap(), Bytes::from_static(b"x"));

    // The window holds only the 32 most recent: receive 100..=140.
    let mut f = open_framer(
        Reliability::SimpleReliability,
        FramingConfig::new(1000),
        now,
    );
    for seq in 100..=140u32 {
        f.handle_record(now, data(seq, b"")).unwrap();
        let (a, m) = ack_of(&f.poll_frame().unwrap());
        assert_eq!(a, seq);
        let expect = if seq == 100 {
            0
        } else {
            (1u32 << (seq - 100).min(31)) - 1
        };
        assert_eq!(m, expect, "seq {seq}");
    }
    // Wrap-around of the 32-bit space.
    assert_eq!(received_mask(1, [u32::MAX, 0]), 0b11);
    assert!(ack_covers(1, 0b10, u32::MAX));
    assert!(ack_covers(7, 0, 7));
    assert!(!ack_covers(7, u32::MAX, 8));
    assert!(ack_covers(40, 1 << 31, 8), "bit 31 ⇔ 40 − 32");
}

#[test]
fn sequence_numbers_start_at_zero_and_retransmissions_get_new_ones() {
    let t = Instant::now();
    let mut f = open_framer(Reliability::SimpleReliability, FramingConfig::new(1000), t);
    f.send(t, Bytes::from_static(b"a")).unwrap();
    f.send(t, Bytes::from_static(b"b")).unwrap();
    let seq_of = |b: &Bytes| u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    assert_eq!(seq_of(&f.poll_frame().unwrap()), 0);
    assert!(f.poll_frame().is_none(), "stop-and-wait");
    assert_eq!(f.poll_timeout(), Some(t + ms(500)));
    f.handle_timeout(t + ms(500)).unwrap();
    assert_eq!(
        seq_of(&f.poll_frame().unwrap()),
        1,
        "retransmission, new number"
    );
    assert_eq!(f.poll_timeout(), Some(t + ms(1500)));
    // An ACK for the first transmission still counts (§6.6.3.1 L4754).
    f.handle_frame(
        t + ms(600),
        FramedMessage::Ack {
            ack_sequence: 0,
            received: 0,
        }
        .to_bytes()
        .unwrap(),
    )
    .unwrap();
    assert!(f.poll_frame().is_none(), "10 ms pacing");
    assert_eq!(f.poll_timeout(), Some(t + ms(610)));
    f.handle_timeout(t + ms(610)).unwrap();
    let b = f.poll_frame().unwrap();
    assert_eq!(seq_of(&b), 2);
    assert_eq!(&b[8..], b"b");
    // ACK via the bitmask only.
    f.handle_frame(
        t + ms(700),
        FramedMessage::Ack {
            ack_sequence: 9,
            received: 1 << 6,
        }
        .to_bytes()
        .unwrap(),
    )
    .unwrap();
    assert!(!f.awaiting_ack());
    assert_eq!(f.stats().unmatched_acks, 1);
}

#[test]
fn rto_estimator_follows_rfc6298() {
    let mut e = RtoEstimator::new(ms(500), ms(1), Duration::from_secs(60), true);
    assert_eq!(e.rto(), ms(500));
    e.sample(ms(100));
    assert_eq!(
        (e.srtt(), e.rttvar(), e.rto()),
        (Some(ms(100)), ms(50), ms(300))
    );
    e.sample(ms(200));
    // RTTVAR = 3/4·50 + 1/4·100 = 62.5; SRTT = 7/8·100 + 1/8·200 = 112.5;
    // RTO = 112.5 + 250 = 362.5 → 363 ms (rounded up to the millisecond).
    assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
    assert_eq!(e.rttvar(), Duration::from_micros(62_500));
    assert_eq!(e.rto(), ms(363));
    // Converges: constant 30 ms → RTO → SRTT + G.
    for _ in 0..200 {
        e.sample(ms(30));
    }
    assert!(e.srtt().unwrap().abs_diff(ms(30)) < ms(1));
    assert!(e.rto() <= ms(32), "{:?}", e.rto());
    // The floor and the ceiling.
    let mut e = RtoEstimator::new(ms(500), ms(200), Duration::from_secs(60), true);
    e.sample(ms(1));
    assert_eq!(e.rto(), ms(200));
    e.sample(Duration::from_secs(100));
    assert_eq!(e.rto(), Duration::from_secs(60));
    // Static RTO: samples are counted, the RTO does not move.
    let mut e = RtoEstimator::new(ms(500), ms(1), Duration::from_secs(60), false);
    e.sample(ms(10));
    assert_eq!((e.rto(), e.samples()), (ms(500), 1));
}

#[test]
fn initial_rtt_from_ice_seeds_the_estimate() {
    let mut cfg = FramingConfig::new(1000);
    cfg.initial_rtt = Some(ms(60));
    // Formula (2.2): SRTT = 60, RTTVAR = 30, RTO = 60 + 4·30 = 180 ms — under the default
    // 200 ms floor.
    let f = Framer::new(Reliability::SimpleReliability, cfg.clone());
    assert_eq!(f.rto(), ms(200));
    cfg.min_rto = ms(1);
    let f = Framer::new(Reliability::SimpleReliability, cfg);
    assert_eq!(f.rto(), ms(180));
    assert_eq!(f.estimator().srtt(), Some(ms(60)));
}

#[test]
fn framing_stream_reassembly_and_garbage() {
    let t = Instant::now();
    let mut f = open_framer(Reliability::FramingHeader, FramingConfig::new(1000), t);
    let mut stream = Vec::new();
    for i in 0..5u32 {
        stream.extend_from_slice(&data(i, &vec![i as u8; 100 * i as usize]));
    }
    stream.extend_from_slice(
        &FramedMessage::Ack {
            ack_sequence: 0,
            received: 0,
        }
        .to_bytes()
        .unwrap(),
    );
    // Byte by byte.
    for b in &stream {
        f.handle_stream(t, std::slice::from_ref(b)).unwrap();
    }
    for i in 0..5u32 {
        assert_eq!(f.poll_message().unwrap(), vec![i as u8; 100 * i as usize]);
    }
    assert_eq!(f.stats().acks_received, 1);
    // Unknown type, and a frame over the max-message-size: errors, and the framer is done.
    let mut g = open_framer(Reliability::FramingHeader, FramingConfig::new(1000), t);
    assert!(matches!(
        g.handle_stream(t, &[7, 1, 2]),
        Err(LinkError::Framing(_))
    ));
    assert_eq!(g.handle_stream(t, &data(0, b"x")), Err(LinkError::Closed));
    let mut g = open_framer(Reliability::FramingHeader, FramingConfig::new(1000), t);
    assert_eq!(
        g.handle_stream(t, &[128, 0, 0, 0, 0, 0, 0x03, 0xe9, 1, 2, 3, 4]),
        Err(LinkError::MessageTooLarge {
            size: 1001,
            max: 1000
        })
    );
    // Over the max-message-size but a RELOAD message: once its forwarding header is in,
    // the start is handed up for an Error_Message_Too_Large (§6.6), and nothing more is
    // read.
    let mut h = reload_wire::ForwardingHeader::new(1, 2, 100, 0xabcd);
    h.destination_list = vec![reload_wire::Destination::Node(NodeId::from_u128(5))];
    let mut msg = bytes::BytesMut::new();
    h.encode_with_length(&mut msg, 1001 - 8).unwrap();
    let mut g = open_framer(Reliability::FramingHeader, FramingConfig::new(1000), t);
    let mut frame = vec![128, 0, 0, 0, 0, 0, 0x03, 0xe9];
    frame.extend_from_slice(&msg[..10]);
    assert_eq!(g.handle_stream(t, &frame), Ok(()), "waits for the header");
    assert!(g.poll_event().is_none());
    assert_eq!(g.handle_stream(t, &msg[10..]), Ok(()));
    match g.poll_event() {
        Some(reload_proto::link::FramingEvent::TooLarge { prefix }) => {
            assert_eq!(&prefix[..], &msg[..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        g.handle_stream(t, &[0u8; 500]),
        Ok(()),
        "ignored from now on"
    );
    assert!(g.poll_message().is_none());
    // The same with 20-byte Node-IDs (node-id-length 20, §11.1): the header is read with
    // the overlay's Node-ID length.
    let long_id = NodeId::from_slice(&[0x42; 20]).unwrap();
    let mut h = reload_wire::ForwardingHeader::new(1, 2, 100, 0xabce);
    h.destination_list = vec![reload_wire::Destination::Node(long_id)];
    let mut msg = bytes::BytesMut::new();
    h.encode_with_length(&mut msg, 1001 - 8).unwrap();
    let cfg = FramingConfig {
        node_id_len: 20,
        ..FramingConfig::new(1000)
    };
    let mut g = open_framer(Reliability::FramingHeader, cfg, t);
    let mut frame = vec![128, 0, 0, 0, 0, 0, 0x03, 0xe9];
    frame.extend_from_slice(&msg);
    assert_eq!(g.handle_stream(t, &frame), Ok(()));
    assert!(
        matches!(
            g.poll_event(),
            Some(reload_proto::link::FramingEvent::TooLarge { .. })
        ),
        "20-byte Node-IDs: Error_Message_Too_Large can be answered"
    );
    // Datagram records: whole frames only.
    let mut g = open_framer(Reliability::SimpleReliability, FramingConfig::new(1000), t);
    assert!(matches!(
        g.handle_record(t, data(0, b"abc").slice(..6)),
        Err(LinkError::Framing(_))
    ));
    let mut g = open_framer(Reliability::SimpleReliability, FramingConfig::new(1000), t);
    assert!(matches!(
        g.handle_record(t, Bytes::new()),
        Err(LinkError::Framing(_))
    ));
    // Random input never panics.
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..2000 {
        let mut g = open_framer(Reliability::FramingHeader, FramingConfig::new(1000), t);
        let mut h = open_framer(Reliability::SimpleReliability, FramingConfig::new(1000), t);
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (rng >> 56) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (rng >> (i % 8 * 8)) as u8 ^ i as u8 ^ if i == 0 { 0x80 } else { 0 })
            .collect();
        let _ = g.handle_stream(t, &bytes);
        let _ = h.handle_record(t, Bytes::from(bytes));
    }
}

#[test]
fn queues_are_bounded() {
    let t = Instant::now();
    let mut cfg = FramingConfig::new(1000);
    cfg.max_queued_messages = 3;
    let mut f = Framer::new(Reliability::SimpleReliability, cfg);
    for _ in 0..3 {
        f.send(t, Bytes::from_static(b"x")).unwrap();
    }
    assert_eq!(
        f.send(t, Bytes::from_static(b"x")),
        Err(LinkError::QueueFull)
    );
    f.open(t);
    assert_eq!(f.queued(), 2);
    f.send(t, Bytes::from_static(b"x")).unwrap();
    assert_eq!(
        f.send(t, Bytes::from_static(b"x")),
        Err(LinkError::QueueFull)
    );
}

// ---- Real sockets ----

/// Runs one link over a real TCP stream until `done` says stop or `deadline` passes.
fn drive(
    mut link: Link,
    mut sock: std::net::TcpStream,
    deadline: Instant,
    mut on_event: impl FnMut(&mut Link, &LinkEvent, Instant) -> bool,
) -> Link {
    use std::io::{Read, Write};
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(ms(5))).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        assert!(now < deadline, "loopback test timed out");
        while let Some(chunk) = link.poll_transmit() {
            sock.write_all(&chunk).unwrap();
        }
        let mut stop = false;
        while let Some(e) = link.poll_event() {
            stop |= on_event(&mut link, &e, now);
        }
        while let Some(chunk) = link.poll_transmit() {
            sock.write_all(&chunk).unwrap();
        }
        if stop {
            return link;
        }
        match sock.read(&mut buf) {
            Ok(0) => link.handle_eof(Instant::now()),
            Ok(n) => link.handle_input(Instant::now(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
        if link.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            link.handle_timeout(Instant::now());
        }
    }
}

/// The sans-IO TLS link on a real TCP connection over 127.0.0.1.
pub fn loopback_exchange(key_log: Option<KeyLogSink>) -> u16 {
    let f = fixture(false);
    let mut sc = config(&f.ca);
    sc.key_log = key_log;
    let s = ctx(sc, &f.server);
    let c = ctx(config(&f.ca), &f.client);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let deadline = Instant::now() + Duration::from_secs(10);
    let server = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let link = Link::accept_tls(&s, Some(cid()), Instant::now()).unwrap();
        let mut got = Vec::new();
        let link = drive(link, sock, deadline, |link, e, now| match e {
            LinkEvent::Message(m) => {
                got.push(m.clone());
                // Echo it back.
                link.send(now, m.clone()).unwrap();
                false
            }
            LinkEvent::Closed => true,
            LinkEvent::Failed(e) => panic!("server: {e}"),
            _ => false,
        });
        (got, link.framing_stats().clone())
    });
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let link = Link::connect_tls(&c, Some(sid()), Instant::now()).unwrap();
    let msgs: Vec<Bytes> = (0..5u8)
        .map(|i| pattern(1000 * i as usize + 1, i))
        .collect();
    let mut echoed = Vec::new();
    let to_send = msgs.clone();
    let link = drive(link, sock, deadline, |link, e, now| {
        match e {
            LinkEvent::Established { peer_node_ids, .. } => {
                assert_eq!(peer_node_ids, &vec![sid()]);
                for m in &to_send {
                    link.send(now, m.clone()).unwrap();
                }
            }
            LinkEvent::Message(m) => {
                echoed.push(m.clone());
                if echoed.len() == to_send.len() {
                    link.close(now);
                }
            }
            LinkEvent::Failed(e) => panic!("client: {e}"),
            _ => {}
        }
        // Stop once closed and the close_notify is written (the loop writes it first).
        matches!(e, LinkEvent::Closed)
    });
    assert_eq!(echoed, msgs);
    let (got, server_stats) = server.join().unwrap();
    assert_eq!(got, msgs);
    assert_eq!(server_stats.acks_received, 5);
    assert_eq!(link.framing_stats().acks_received, 5);
    assert!(link.srtt().is_some());
    port
}

#[test]
fn tls_link_over_loopback_tcp() {
    loopback_exchange(None);
}

/// Captures the loopback exchange with dumpcap and checks that tshark dissects it as TLS
/// and, with the key log, decrypts it. The test re-runs itself inside a private network
/// namespace (`unshare`: user, network and PID namespaces), so the capture sees only this
/// exchange and needs no root where user namespaces are allowed. Needs `unshare`, `ip`,
/// `dumpcap` and `tshark`.
#[test]
fn tshark_sees_tls_on_loopback() {
    use std::process::{Command, Stdio};
    const INSIDE: &str = "RELOAD_LINK_PCAP_IN_NETNS";
    if std::env::var_os(INSIDE).is_none() {
        return rerun_in_netns("tshark_sees_tls_on_loopback", INSIDE);
    }
    let st = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip");
    assert!(st.success(), "ip link set lo up");
    let dir = std::env::temp_dir().join(format!("reload-link-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("link.pcapng");
    let keys = dir.join("keys.log");
    // Written to a pipe, dumpcap flushes every packet: a marker datagram seen in the file
    // proves that everything before it was captured.
    let mut cap = Command::new("dumpcap")
        .args(["-q", "-i", "lo", "-f", "tcp or udp port 9", "-w", "-"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&pcap).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("dumpcap");
    let marker = |text: &str, cap: &mut std::process::Child| {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        loop {
            let _ = sock.send_to(text.as_bytes(), "127.0.0.99:9");
            let data = std::fs::read(&pcap).unwrap_or_default();
            if data.windows(text.len()).any(|w| w == text.as_bytes()) {
                return;
            }
            if let Some(st) = cap.try_wait().unwrap() {
                panic!("dumpcap exited: {st}");
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = cap.kill();
                panic!("{text:?} not captured after 10 s");
            }
            std::thread::sleep(ms(50));
        }
    };
    marker("link-pcap: start", &mut cap);
    let file = keys.clone();
    let sink = KeyLogSink::new(move |line: &str| {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    });
    let port = loopback_exchange(Some(sink));
    marker("link-pcap: end", &mut cap);
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(cap.id().to_string())
        .status();
    cap.wait().unwrap();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .arg("-o")
        .arg(format!("tls.keylog_file:{}", keys.display()))
        .args([
            "-d",
            &format!("tcp.port=={port},tls"),
            "-Y",
            "tls",
            "-T",
            "fields",
        ])
        .args([
            "-E",
            "separator=|",
            "-e",
            "tls.record.content_type",
            "-e",
            "tls.handshake.type",
        ])
        .args(["-e", "data.data"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    // The handshake (type 22) decrypts with the key log: TLS 1.3 Certificate (11) and
    // CertificateVerify (15) from both sides, CertificateRequest (13) from the server.
    let hs: Vec<&str> = rows.iter().flat_map(|r| r[1].split(',')).collect();
    for t in ["1", "2", "13", "11", "15", "20"] {
        assert!(hs.contains(&t), "handshake type {t}: {hs:?}");
    }
    // Every TCP segment with application data carries exactly one record, which decrypts
    // to exactly one FramedMessage: data (0x80) or ack (0x81, 9 bytes).
    let app: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == "23").collect();
    assert_eq!(app.len(), 20, "5 messages and 5 echoes, each with its ACK");
    for r in app {
        let d = r[2];
        assert!(!d.contains(','), "one record per segment: {d}");
        assert!(
            d.starts_with("80") || (d.starts_with("81") && d.len() == 18),
            "{d}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `test` of this binary again inside fresh user, network and PID namespaces
/// (`unshare`; without the user namespace as root where those are disabled), with `env`
/// set; fails unless it passes there, within 60 s.
fn rerun_in_netns(test: &str, env: &str) {
    use std::process::{Command, Stdio};
    for tool in ["unshare", "ip", "dumpcap", "tshark"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        assert!(
            found,
            "{test} captures inside a private network namespace: `{tool}` is missing \
             (Debian packages util-linux, iproute2, wireshark-common, tshark)"
        );
    }
    let choices: [&[&str]; 2] = [
        &[
            "--user",
            "--map-root-user",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
        ],
        &["--net", "--pid", "--fork", "--kill-child"],
    ];
    let mut errors = Vec::new();
    let opts = choices
        .into_iter()
        .find(|opts| {
            let out = Command::new("unshare")
                .args(*opts)
                .arg("true")
                .output()
                .expect("unshare");
            errors.push(String::from_utf8_lossy(&out.stderr).trim().to_string());
            out.status.success()
        })
        .unwrap_or_else(|| panic!("cannot create a network namespace to capture in: {errors:?}"));
    let out = std::env::temp_dir().join(format!("reload-netns-{test}-{}.log", std::process::id()));
    let log = std::fs::File::create(&out).unwrap();
    let mut child = Command::new("unshare")
        .args(opts)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("unshare");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if start.elapsed() > Duration::from_secs(60) {
            // Killing unshare kills the namespace's first process, and with it the rest.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(ms(50));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    eprintln!("{text}");
    match status {
        Some(st) if st.success() && text.contains("1 passed") => {}
        other => panic!("{test} inside its network namespace: {other:?}"),
    }
}

/// Well-formed DTLS record headers around random bodies reach rtc-dtls' parsers: the link
/// may fail (a fatal alert, a bad handshake message) but nothing panics.
#[test]
fn dtls_random_records_do_not_panic() {
    let f = fixture(false);
    let s = ctx(config(&f.ca), &f.server);
    let c = ctx(config(&f.ca), &f.client);
    let iterations: usize = std::env::var("LINK_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut rng = 0xdead_beef_cafe_f00d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..iterations {
        let mut net = dtls_net(&s, &c, None, None);
        if i % 2 == 1 {
            net.settle();
        }
        for _ in 0..20 {
            let mut d = Vec::new();
            for _ in 0..1 + next() % 3 {
                let len = (next() % 120) as usize + 1;
                let ct = 20 + (next() % 4) as u8;
                let epoch = (next() % 3) as u16;
                d.push(ct);
                d.extend_from_slice(&[0xfe, 0xfd]);
                d.extend_from_slice(&epoch.to_be_bytes());
                d.extend_from_slice(&(next() % 16).to_be_bytes()[2..]);
                d.extend_from_slice(&(len as u16).to_be_bytes());
                let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                d.extend_from_slice(&body);
                if ct == 22 && len > 12 {
                    // A plausible handshake header: type, length, message_seq, fragment.
                    let at = d.len() - len;
                    d[at] = [1, 2, 3, 11, 12, 13, 14, 15, 16, 20][(next() % 10) as usize];
                }
            }
            let to = (next() % 2) as usize;
            let now = net.now;
            net.links[to].handle_input(now, &d);
            net.settle();
        }
        net.run_for(ms(3000));
    }
}
