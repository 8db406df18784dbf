//! The node core's message layer in the simulator (RFC 6940 §6.1–§6.3), with a test
//! topology that knows the whole ring (so that these tests exercise forwarding,
//! transactions and signatures, not Chord): symmetric recursive routing over several hops,
//! answers along the reversed via list, end-to-end retransmission, refusals with the RFC's
//! errors, and hostile input that leaves the node working.

mod pki;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use pki::*;
use reload_proto::config::OverlayConfig;
use reload_proto::link::plain::PlainLinks;
use reload_proto::link::{LinkConfig, LinkContext, LinkFactory, SecureLinks, WallAnchor};
use reload_proto::node::{Event, InboundRequest, Node, NodeParts, NodeSettings, RequestError};
use reload_proto::overlay::Overlay;
use reload_proto::rand::Seed;
use reload_proto::sim::{Sim, SimNetwork};
use reload_proto::topology::*;
use reload_wire::body::MessageBody;
use reload_wire::link::{OverlayLinkType, PingReq};
use reload_wire::message::ErrorCode;
use reload_wire::topology::JoinReq;
use reload_wire::{Destination, ErrorResponse, NodeId, ResourceId, Wire};

/// Knows every Node-ID of the ring; routes greedily (clockwise progress) over links.
struct Oracle {
    me: u128,
    ring: Arc<Vec<u128>>,
    /// Actions the test makes the plug-in ask for, and the inputs the core gave it.
    actions: Arc<Mutex<VecDeque<TopologyAction>>>,
    inputs: Arc<Mutex<Vec<TopologyInput>>>,
}

impl Oracle {
    fn responsible(&self, k: u128) -> u128 {
        *self.ring.iter().find(|&&n| n >= k).unwrap_or(&self.ring[0])
    }
    fn pred(&self) -> u128 {
        let i = self.ring.iter().position(|&n| n == self.me).unwrap();
        self.ring[(i + self.ring.len() - 1) % self.ring.len()]
    }
}

fn cw(a: u128, b: u128) -> u128 {
    b.wrapping_sub(a)
}

impl Topology for Oracle {
    fn node_id(&self) -> NodeId {
        NodeId::from_u128(self.me)
    }
    fn start(&mut self, _: Instant, _: StartMode) {}
    fn leave(&mut self, _: Instant) {}
    fn is_joined(&self) -> bool {
        true
    }
    fn is_responsible(&self, id: &ResourceId) -> bool {
        id.as_u128().is_some_and(|k| self.responsible(k) == self.me)
    }
    fn next_hop(&self, id: &[u8], connected: &dyn Fn(&NodeId) -> bool) -> NextHop {
        let Ok(k) = <[u8; 16]>::try_from(id).map(u128::from_be_bytes) else {
            return NextHop::None;
        };
        let target = self.responsible(k);
        if target == self.me {
            return NextHop::Local;
        }
        if connected(&NodeId::from_u128(target)) {
            return NextHop::Peer(NodeId::from_u128(target));
        }
        // The connected peer that gets closest to the target without passing it.
        self.ring
            .iter()
            .filter(|&&n| {
                n != self.me
                    && connected(&NodeId::from_u128(n))
                    && cw(self.me, n) < cw(self.me, target)
            })
            .max_by_key(|&&n| cw(self.me, n))
            .map_or(NextHop::None, |&n| NextHop::Peer(NodeId::from_u128(n)))
    }
    fn route_query_answer(
        &self,
        _: &Destination,
        _: &dyn Fn(&NodeId) -> bool,
    ) -> Result<Bytes, ErrorCode> {
        Err(ErrorCode::NOT_FOUND)
    }
    fn answer_join(&mut self, _: Instant, _: NodeId) -> Result<Bytes, ErrorCode> {
        Ok(Bytes::new())
    }
    fn handle(&mut self, _: Instant, input: TopologyInput) -> Result<(), ErrorCode> {
        self.inputs.lock().unwrap().push(input);
        Ok(())
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_action(&mut self) -> Option<TopologyAction> {
        self.actions.lock().unwrap().pop_front()
    }
    fn routing_table(&self) -> Vec<NodeId> {
        vec![]
    }
    fn may_answer(&self, signer: &NodeId, id: &ResourceId) -> bool {
        id.as_u128()
            .is_some_and(|k| NodeId::from_u128(self.responsible(k)) == *signer)
    }
    fn resource_id(&self, name: &[u8]) -> ResourceId {
        reload_proto::identity::chord_resource_id(name)
    }
    fn neighbors(&self) -> Vec<(&'static str, Vec<NodeId>)> {
        vec![("predecessors", vec![NodeId::from_u128(self.pred())])]
    }
    fn replica_set(&self, _: &ResourceId) -> Vec<NodeId> {
        vec![]
    }
    fn storage_role(&self, id: &ResourceId) -> StorageRole {
        if self.is_responsible(id) {
            StorageRole::Responsible
        } else {
            StorageRole::Outside
        }
    }
    fn accepts_replica_from(&self, _: &NodeId, _: &ResourceId) -> bool {
        false
    }
    fn responsible_ppb(&self) -> u32 {
        0
    }
}

struct Ring {
    sim: Sim,
    ids: Vec<u128>,
    ca: TestCa,
    actions: Vec<Arc<Mutex<VecDeque<TopologyAction>>>>,
    inputs: Vec<Arc<Mutex<Vec<TopologyInput>>>>,
}

/// `n` nodes evenly spaced on the ring, each linked to its successor and to the node
/// `n/4` ahead (so paths take several hops).
/// What a test may change about node `i` before it is built: its local settings, the
/// overlay configuration it has, and the MTU of its plain links.
struct Build {
    settings: NodeSettings,
    config: OverlayConfig,
    mtu: Option<usize>,
}

fn ring(n: usize, seed: u64, net: SimNetwork, tweak: impl Fn(usize, &mut Build)) -> Ring {
    ring_over(n, seed, net, tweak, None)
}

fn ring_over(
    n: usize,
    seed: u64,
    net: SimNetwork,
    tweak: impl Fn(usize, &mut Build),
    links: Option<OverlayLinkType>,
) -> Ring {
    let ca = TestCa::new(false);
    let step = u128::MAX / n as u128;
    let ids: Vec<u128> = (0..n as u128).map(|i| (i + 1) * step - 7).collect();
    let shared = Arc::new(ids.clone());
    let mut sim = Sim::new(seed, net);
    let (mut actions, mut inputs) = (vec![], vec![]);
    let anchor = WallAnchor::new(sim.now, SystemTime::now());
    for (i, &id) in ids.iter().enumerate() {
        let addr: SocketAddr = format!("127.0.0.1:{}", 10000 + i).parse().unwrap();
        let protocol = links.unwrap_or(OverlayLinkType::TLS_TCP_FH_NO_ICE);
        let mut b = Build {
            settings: NodeSettings::new(vec![(protocol, addr)]),
            config: ca.config(),
            mtu: None,
        };
        b.settings.cert_cache_size = 256;
        tweak(i, &mut b);
        let overlay = Overlay::new(b.config, None);
        let creds = ca.node(false, id, &format!("user{i}"));
        let topo = Box::new(Oracle {
            me: id,
            ring: shared.clone(),
            actions: Arc::default(),
            inputs: Arc::default(),
        });
        actions.push(topo.actions.clone());
        inputs.push(topo.inputs.clone());
        let links: Box<dyn LinkFactory> = match links {
            Some(_) => {
                let lc = LinkConfig::new(
                    overlay.trust().as_ref().clone(),
                    overlay.max_message_size(),
                    anchor,
                );
                Box::new(SecureLinks::new(LinkContext::new(lc, &creds).unwrap()))
            }
            None => {
                let mut plain = PlainLinks::new(&creds.cert, &overlay, anchor);
                plain.mtu = b.mtu;
                Box::new(plain)
            }
        };
        let parts = NodeParts {
            settings: b.settings,
            overlay,
            credentials: creds,
            topology: topo,
            links,
        };
        let node = Node::new(
            parts,
            sim.now,
            anchor.wall,
            Seed::from_u64(seed ^ id as u64),
        );
        sim.add(node, addr);
    }
    for i in 0..n {
        sim.connect(i, (i + 1) % n);
        if n >= 8 {
            sim.connect(i, (i + n / 4) % n);
        }
    }
    sim.run_for(Duration::from_secs(1));
    Ring {
        sim,
        ids,
        ca,
        actions,
        inputs,
    }
}

fn ping(r: &mut Ring, from: usize, to: Destination) -> u64 {
    let now = r.sim.now;
    let tx = r.sim.nodes[from]
        .node
        .send_request(now, vec![to], MessageBody::PingReq(PingReq::default()))
        .unwrap();
    r.sim.after_input(from);
    tx
}

fn ping_node(r: &mut Ring, from: usize, to: usize) -> u64 {
    let d = Destination::Node(NodeId::from_u128(r.ids[to]));
    ping(r, from, d)
}

/// Sends `body` from node `from` to node `to` (by Node-ID); the transaction ID.
fn request(r: &mut Ring, from: usize, to: usize, body: MessageBody) -> u64 {
    let now = r.sim.now;
    let dest = vec![Destination::Node(NodeId::from_u128(r.ids[to]))];
    let tx = r.sim.nodes[from]
        .node
        .send_request(now, dest, body)
        .unwrap();
    r.sim.after_input(from);
    tx
}

fn response(r: &Ring, node: usize, tx: u64) -> Option<Result<(NodeId, MessageBody), RequestError>> {
    r.sim.nodes[node].events.iter().find_map(|e| match e {
        Event::Response {
            transaction_id,
            result,
        } if *transaction_id == tx => Some(result.clone()),
        _ => None,
    })
}

fn wait(
    r: &mut Ring,
    node: usize,
    tx: u64,
    limit: Duration,
) -> Result<(NodeId, MessageBody), RequestError> {
    assert!(r.sim.run_until(limit, |s| s.nodes[node].events.iter().any(
        |e| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx)
    )));
    response(r, node, tx).unwrap()
}

#[test]
fn ping_across_many_hops_is_answered_by_the_target() {
    let mut r = ring(16, 1, SimNetwork::default(), |_, _| {});
    let target = NodeId::from_u128(r.ids[9]);
    let tx = ping(&mut r, 0, Destination::Node(target));
    let (who, body) = wait(&mut r, 0, tx, Duration::from_secs(5)).unwrap();
    assert_eq!(who, target);
    assert!(matches!(body, MessageBody::PingAns(_)));
    let forwarded: u64 = r.sim.nodes.iter().map(|n| n.node.stats().forwarded).sum();
    assert!(
        forwarded >= 4,
        "request and answer took several hops ({forwarded} forwards)"
    );
    assert!(
        r.sim
            .nodes
            .iter()
            .all(|n| n.node.stats().dropped_bad_signature == 0)
    );
}

#[test]
fn ping_to_a_resource_is_answered_by_the_responsible_node() {
    let mut r = ring(16, 2, SimNetwork::default(), |_, _| {});
    let key = r.ids[12] - 1000; // just before node 12: node 12 is responsible
    let tx = ping(
        &mut r,
        3,
        Destination::Resource(ResourceId::new(key.to_be_bytes().to_vec())),
    );
    let (who, _) = wait(&mut r, 3, tx, Duration::from_secs(5)).unwrap();
    assert_eq!(who, NodeId::from_u128(r.ids[12]));
}

#[test]
fn end_to_end_retransmission_survives_loss() {
    // 20 % loss per link crossing; a Ping and its answer cross 4 links (2 hops each way):
    // one transmission gets through 0.8^4 ≈ 41 % of the time, five ≈ 93 %.
    let net = SimNetwork {
        loss: 0.2,
        ..SimNetwork::default()
    };
    let mut r = ring(8, 3, net, |_, _| {});
    let mut ok = 0;
    for k in 0..40 {
        let tx = ping_node(&mut r, k % 8, (k + 4) % 8);
        if wait(&mut r, k % 8, tx, Duration::from_secs(20)).is_ok() {
            ok += 1;
        }
    }
    let retrans: u64 = r
        .sim
        .nodes
        .iter()
        .map(|n| n.node.stats().retransmissions)
        .sum();
    assert!(retrans > 0, "loss forced retransmissions");
    // Far above the 41 % one transmission would give (expected 37 of 40).
    assert!(
        ok >= 32,
        "only {ok}/40 pings got through 20 % loss with 5 transmissions"
    );
}

#[test]
fn an_unanswered_request_times_out_after_five_transmissions() {
    let mut r = ring(8, 4, SimNetwork::default(), |_, _| {});
    r.sim.kill(5);
    r.sim.run_for(Duration::from_secs(1));
    let start = r.sim.now;
    let tx = ping_node(&mut r, 0, 5);
    assert_eq!(
        wait(&mut r, 0, tx, Duration::from_secs(30)),
        Err(RequestError::Timeout)
    );
    // 5 transmissions, 3 s apart, then the last timer: 15 s (§6.2.1, §3).
    let took = r.sim.now - start;
    assert!(
        took >= Duration::from_secs(15) && took < Duration::from_secs(16),
        "{took:?}"
    );
}

#[test]
fn ttl_exhaustion_is_answered_with_error_ttl_exceeded() {
    // All nodes share initial-ttl 3 (as the configuration makes them); node 0 → node 11
    // takes five hops.
    let mut r = ring(16, 5, SimNetwork::default(), |_, b| {
        b.config.initial_ttl = 3
    });
    let tx = ping_node(&mut r, 0, 11);
    match wait(&mut r, 0, tx, Duration::from_secs(20)) {
        Err(RequestError::Error(_, e)) => assert_eq!(e.error_code, ErrorCode::TTL_EXCEEDED),
        other => panic!("expected Error_TTL_Exceeded, got {other:?}"),
    }
}

#[test]
fn configuration_sequence_mismatch_gets_config_errors() {
    let mut r = ring(4, 6, SimNetwork::default(), |i, b| {
        b.config.sequence = if i == 0 {
            3
        } else if i == 1 {
            9
        } else {
            5
        }
    });
    // Node 0 (sequence 3) is older than node 2 (5): Error_Config_Too_Old.
    let tx = ping_node(&mut r, 0, 2);
    match wait(&mut r, 0, tx, Duration::from_secs(5)) {
        Err(RequestError::Error(_, e)) => assert_eq!(e.error_code, ErrorCode::CONFIG_TOO_OLD),
        other => panic!("{other:?}"),
    }
    // Node 1 (9) is newer than node 2: Error_Config_Too_New.
    let tx = ping_node(&mut r, 1, 2);
    match wait(&mut r, 1, tx, Duration::from_secs(5)) {
        Err(RequestError::Error(_, e)) => assert_eq!(e.error_code, ErrorCode::CONFIG_TOO_NEW),
        other => panic!("{other:?}"),
    }
}

#[test]
fn join_for_someone_else_is_forbidden() {
    let mut r = ring(4, 7, SimNetwork::default(), |_, _| {});
    let body = MessageBody::JoinReq(JoinReq {
        joining_peer_id: NodeId::from_u128(42),
        overlay_specific_data: Bytes::new(),
    });
    let tx = request(&mut r, 0, 1, body);
    match wait(&mut r, 0, tx, Duration::from_secs(5)) {
        Err(RequestError::Error(_, ErrorResponse { error_code, .. })) => {
            assert_eq!(error_code, ErrorCode::FORBIDDEN)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_input_is_dropped_and_the_node_keeps_working() {
    let mut r = ring(4, 8, SimNetwork::default(), |_, _| {});
    // Garbage, a truncated header, a message for another overlay, an unsigned message.
    let tx = ping_node(&mut r, 0, 1);
    assert!(r.sim.inject(0, 1, Bytes::from_static(b"\x00\x01garbage")));
    let mut other_overlay = reload_wire::ForwardingHeader::new(0xdead_beef, 0, 100, 1);
    other_overlay.destination_list = vec![Destination::Node(NodeId::from_u128(r.ids[1]))];
    let mut m = reload_wire::Message {
        header: other_overlay,
        contents: reload_wire::MessageContents::from_body(
            &MessageBody::PingReq(PingReq::default()),
        )
        .unwrap(),
        security: reload_wire::SecurityBlock {
            certificates: vec![],
            signature: reload_wire::Signature::none(),
        },
    };
    m.header.length = m.encoded_len() as u32;
    r.sim.inject(0, 1, m.to_bytes().unwrap());
    let mut unsigned = m.clone();
    unsigned.header.overlay = reload_proto::identity::overlay_hash(OVERLAY);
    unsigned.header.length = unsigned.encoded_len() as u32;
    r.sim.inject(0, 1, unsigned.to_bytes().unwrap());
    let bytes = unsigned.to_bytes().unwrap();
    r.sim.inject(0, 1, bytes.slice(..20));
    // §6.7: the high fragment bit clear: discarded, never read as a fragment.
    let mut high_bit_clear = unsigned.clone();
    high_bit_clear.header.fragment = reload_wire::header::Fragment(0x4000_0000);
    r.sim.inject(0, 1, high_bit_clear.to_bytes().unwrap());
    let (who, _) = wait(&mut r, 0, tx, Duration::from_secs(5)).unwrap();
    assert_eq!(who, NodeId::from_u128(r.ids[1]));
    r.sim.run_for(Duration::from_secs(1));
    let s = r.sim.nodes[1].node.stats().clone();
    assert_eq!(s.dropped_wrong_overlay, 1, "{s:?}");
    assert_eq!(s.dropped_bad_signature, 1, "{s:?}");
    assert!(s.dropped_malformed >= 3, "{s:?}");
    assert_eq!(s.reassembled + s.reassembly_dropped, 0, "{s:?}");
    // Still answers afterwards.
    let tx = ping_node(&mut r, 0, 1);
    assert!(wait(&mut r, 0, tx, Duration::from_secs(5)).is_ok());
}

#[test]
fn a_retransmitted_request_gets_the_same_answer() {
    // Loss on every answer from node 1 forces retransmissions; node 1 answers duplicates
    // from its cache rather than processing them again (§6.2.1).
    let net = SimNetwork {
        loss: 0.5,
        ..SimNetwork::default()
    };
    let mut r = ring(4, 9, net, |_, _| {});
    for _ in 0..6 {
        let tx = ping_node(&mut r, 0, 1);
        let _ = wait(&mut r, 0, tx, Duration::from_secs(20));
    }
    assert!(r.sim.nodes[1].node.stats().duplicate_requests > 0);
}

#[test]
fn a_seed_reproduces_a_run() {
    let run = |seed| {
        let net = SimNetwork {
            loss: 0.2,
            ..SimNetwork::default()
        };
        let mut r = ring(8, seed, net, |_, _| {});
        let mut trace = Vec::new();
        for k in 0..5 {
            let tx = ping_node(&mut r, k, (k + 3) % 8);
            let res = wait(&mut r, k, tx, Duration::from_secs(20)).map(|(w, _)| w);
            trace.push((r.sim.elapsed(), res.is_ok(), r.sim.delivered, r.sim.lost));
        }
        trace
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn the_core_runs_over_real_tls_and_dtls_links() {
    for protocol in [
        OverlayLinkType::TLS_TCP_FH_NO_ICE,
        OverlayLinkType::DTLS_UDP_SR_NO_ICE,
    ] {
        let mut r = ring_over(8, 21, SimNetwork::default(), |_, _| {}, Some(protocol));
        r.sim.run_for(Duration::from_secs(3));
        let target = NodeId::from_u128(r.ids[5]);
        let tx = ping(&mut r, 0, Destination::Node(target));
        let (who, _) = wait(&mut r, 0, tx, Duration::from_secs(10)).unwrap();
        assert_eq!(who, target, "{protocol:?}");
        // A 4 kB message: one record on TLS, fragments of ≤ 1148 bytes on DTLS (§6.7).
        let tx = big_ping(&mut r, 0, 5, 4000);
        let (who, _) = wait(&mut r, 0, tx, Duration::from_secs(10)).unwrap();
        assert_eq!(who, target, "{protocol:?}");
        let fragmented = r.sim.nodes[0].node.stats().fragmented;
        let reassembled = r.sim.nodes[5].node.stats().reassembled;
        if protocol == OverlayLinkType::DTLS_UDP_SR_NO_ICE {
            assert!(
                fragmented >= 1 && reassembled >= 1,
                "{fragmented} {reassembled}"
            );
        } else {
            assert_eq!((fragmented, reassembled), (0, 0));
        }
        // Every node learned its neighbours' Node-IDs from their certificates.
        let up: usize = r
            .sim
            .nodes
            .iter()
            .map(|n| n.node.connected_peers().len())
            .sum();
        assert_eq!(
            up,
            8 * 4,
            "{protocol:?}: each of 8 nodes has 4 authenticated links"
        );
        assert!(
            r.sim
                .nodes
                .iter()
                .all(|n| !n.events.iter().any(|e| matches!(e, Event::LinkDown { .. }))),
            "{protocol:?}: no link failed"
        );
    }
}

#[test]
fn a_request_for_our_own_range_is_answered_locally() {
    let mut r = ring(8, 31, SimNetwork::default(), |_, _| {});
    // A key just below node 3's ID: node 3 is responsible, and asks itself.
    let key = r.ids[3] - 5;
    let tx = ping(
        &mut r,
        3,
        Destination::Resource(ResourceId::new(key.to_be_bytes().to_vec())),
    );
    let (who, body) = wait(&mut r, 3, tx, Duration::from_secs(5)).unwrap();
    assert_eq!(who, NodeId::from_u128(r.ids[3]));
    assert!(matches!(body, MessageBody::PingAns(_)));
    assert_eq!(r.sim.nodes[3].node.stats().dropped_no_route, 0);
}

/// A configuration of the test overlay signed by `signer` (listed as configuration- and
/// kind-signer), with `sequence`.
fn signed_config(
    r: &Ring,
    signer: &reload_proto::sign::Credentials,
    listed: &reload_proto::sign::Credentials,
    sequence: u16,
) -> (OverlayConfig, Bytes) {
    let mut c = OverlayConfig::new(OVERLAY);
    c.sequence = sequence;
    c.root_certs = vec![r.ca.der.clone()];
    c.configuration_signers = vec![listed.node_id.as_bytes().to_vec()];
    c.kind_signers = vec![listed.node_id.as_bytes().to_vec()];
    let doc = reload_proto::check::signed_document(&mut c, signer, signer).unwrap();
    let parsed = reload_proto::config::ConfigDocument::parse(&doc).unwrap();
    (parsed.configurations[0].config.clone(), Bytes::from(doc))
}

#[test]
fn a_stale_peer_gets_the_configuration_by_config_update() {
    let mut r = ring(4, 41, SimNetwork::default(), |_, _| {});
    let signer = r.ca.node(false, 0x5160_5160, "config-signer");
    let (c3, d3) = signed_config(&r, &signer, &signer, 3);
    let (c5, d5) = signed_config(&r, &signer, &signer, 5);
    let now = r.sim.now;
    r.sim.nodes[0].node.set_configuration(now, c3, d3);
    for i in 1..4 {
        r.sim.nodes[i]
            .node
            .set_configuration(now, c5.clone(), d5.clone());
    }
    // Node 0 is behind: Error_Config_Too_Old, and node 1 sends it the configuration
    // (§6.3.2.1), which it checks and puts in force (§6.5.4.2).
    let tx = ping_node(&mut r, 0, 1);

    match wait(&mut r, 0, tx, Duration::from_secs(5)) {
        Err(RequestError::Error(_, e)) => assert_eq!(e.error_code, ErrorCode::CONFIG_TOO_OLD),
        other => panic!("{other:?}"),
    }
    assert!(r.sim.run_until(Duration::from_secs(5), |s| {
        s.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::ConfigurationChanged { sequence: 5, .. }))
    }));
    assert_eq!(r.sim.nodes[0].node.overlay().sequence(), 5);
    let tx = ping_node(&mut r, 0, 1);
    assert!(
        wait(&mut r, 0, tx, Duration::from_secs(5)).is_ok(),
        "in step again"
    );

    // A newer configuration signed by someone who is not a configuration-signer of the
    // one in use: Error_Forbidden, nothing changes.
    let outsider = r.ca.node(false, 0x0bad_0bad, "outsider");
    let (_, forged) = signed_config(&r, &outsider, &outsider, 9);
    let body = MessageBody::ConfigUpdateReq(reload_wire::link::ConfigUpdateReq::Config(forged));
    let tx = request(&mut r, 2, 0, body);
    match wait(&mut r, 2, tx, Duration::from_secs(5)) {
        Err(RequestError::Error(_, e)) => {
            assert_eq!(e.error_code, ErrorCode::FORBIDDEN);
            assert!(
                String::from_utf8_lossy(&e.error_info).contains("not allowed to sign"),
                "{e:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.sim.nodes[0].node.overlay().sequence(), 5);

    // An older one, properly signed: refused as well (the sequence must be newer).
    let (_, older) = signed_config(&r, &signer, &signer, 4);
    let body = MessageBody::ConfigUpdateReq(reload_wire::link::ConfigUpdateReq::Config(older));
    let tx = request(&mut r, 2, 0, body);
    assert!(
        matches!(wait(&mut r, 2, tx, Duration::from_secs(5)), Err(RequestError::Error(_, e)) if e.error_code == ErrorCode::FORBIDDEN)
    );
    assert_eq!(r.sim.nodes[0].node.overlay().sequence(), 5);
}

fn big_ping(r: &mut Ring, from: usize, to: usize, padding: usize) -> u64 {
    let body = MessageBody::PingReq(PingReq {
        padding: Bytes::from(vec![0x5a; padding]),
    });
    request(r, from, to, body)
}

/// Message links whose MTU differs per node (1200, 2000, 800 bytes), a max-message-size
/// of 40,000 bytes.
fn small_links(i: usize, b: &mut Build) {
    b.mtu = Some([1200, 2000, 800][i % 3]);
    b.config.max_message_size = 40_000;
}

#[test]
fn large_messages_are_fragmented_per_link_and_reassembled_only_at_the_destination() {
    // §6.7: any hop may (re)fragment to fit its next link; only the destination
    // reassembles; fragments are ≤ MTU − 32 and carry ≥ 256 body bytes.
    let mut r = ring(16, 41, SimNetwork::default(), small_links);
    let target = NodeId::from_u128(r.ids[9]);
    let tx = big_ping(&mut r, 0, 9, 20_000);
    let (who, body) = wait(&mut r, 0, tx, Duration::from_secs(10)).unwrap();
    assert_eq!(who, target);
    assert!(matches!(body, MessageBody::PingAns(_)));
    let stats: Vec<_> = r.sim.nodes.iter().map(|n| n.node.stats().clone()).collect();
    assert!(
        stats[0].fragmented >= 1,
        "the sender split it: {:?}",
        stats[0]
    );
    assert!(
        stats[0].fragments_sent >= 17,
        "20 kB into < 1200-byte fragments: {:?}",
        stats[0]
    );
    assert_eq!(stats[9].reassembled, 1, "{:?}", stats[9]);
    for (i, s) in stats.iter().enumerate() {
        if i != 9 {
            assert_eq!(s.reassembled, 0, "node {i} is not the destination: {s:?}");
        }
        assert_eq!(s.reassembly_dropped, 0, "node {i}: {s:?}");
        assert_eq!(s.dropped_malformed, 0, "node {i}: {s:?}");
    }
    let refragmented = stats
        .iter()
        .enumerate()
        .filter(|(i, s)| *i != 0 && s.fragmented > 0)
        .count();
    assert!(
        refragmented > 0,
        "an 800-byte hop split 1200-byte fragments again"
    );
    assert!(
        r.sim
            .nodes
            .iter()
            .all(|n| n.node.reassembly_backlog() == (0, 0)),
        "nothing left in reassembly buffers"
    );
}

#[test]
fn fragments_lost_in_transit_are_recovered_by_end_to_end_retransmission() {
    let net = SimNetwork {
        loss: 0.02,
        ..SimNetwork::default()
    };
    let mut r = ring(8, 42, net, small_links);
    for round in 0..3 {
        let tx = big_ping(&mut r, 1, 6, 12_000);
        let (who, _) = wait(&mut r, 1, tx, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(who, NodeId::from_u128(r.ids[6]));
    }
    // Partial copies of retransmitted messages are dropped within the request lifetime.
    r.sim.run_for(Duration::from_secs(16));
    for n in &r.sim.nodes {
        assert_eq!(n.node.reassembly_backlog(), (0, 0));
    }
}

#[test]
fn a_flood_of_incomplete_fragments_is_bounded_and_the_node_keeps_working() {
    let mut r = ring(4, 43, SimNetwork::default(), |i, b| {
        small_links(i, b);
        b.settings.reassembly_messages = 64;
        b.settings.reassembly_buffer = 100_000;
    });
    let now = r.sim.now;
    // First fragments of 500 different messages for node 1, never completed.
    for txid in 0..500u64 {
        let mut h = reload_wire::ForwardingHeader::new(
            reload_proto::identity::overlay_hash(OVERLAY),
            0,
            100,
            txid,
        );
        h.destination_list = vec![Destination::Node(NodeId::from_u128(r.ids[1]))];
        h.fragment = reload_wire::header::Fragment::new(0, false);
        let mut b = bytes::BytesMut::new();
        let len = h.encoded_len() + 1000;
        h.encode_with_length(&mut b, len as u32).unwrap();
        b.extend_from_slice(&[0u8; 1000]);
        assert!(r.sim.inject(0, 1, b.freeze()));
    }
    r.sim.run_for(Duration::from_millis(100));
    let (messages, bytes) = r.sim.nodes[1].node.reassembly_backlog();
    assert!(messages <= 64 && bytes <= 100_000, "{messages} {bytes}");
    assert!(r.sim.nodes[1].node.stats().reassembly_dropped > 0);
    // A real fragmented request still gets through.
    let tx = big_ping(&mut r, 0, 1, 3000);
    assert!(wait(&mut r, 0, tx, Duration::from_secs(10)).is_ok());
    // And the partial ones expire after the maximum request lifetime (§6.7: 15 s).
    r.sim.run_for(Duration::from_secs(16));
    assert_eq!(r.sim.nodes[1].node.reassembly_backlog(), (0, 0));
    let _ = now;
}

/// `signed_config` with Kinds (each signed by `signer`, the kind-signer).
fn signed_config_with_kinds(
    r: &Ring,
    signer: &reload_proto::sign::Credentials,
    sequence: u16,
    kinds: Vec<reload_proto::config::KindDefinition>,
) -> (OverlayConfig, Bytes) {
    let mut c = OverlayConfig::new(OVERLAY);
    c.sequence = sequence;
    c.root_certs = vec![r.ca.der.clone()];
    c.configuration_signers = vec![signer.node_id.as_bytes().to_vec()];
    c.kind_signers = vec![signer.node_id.as_bytes().to_vec()];
    c.kinds = kinds;
    let doc = reload_proto::check::signed_document(&mut c, signer, signer).unwrap();
    let parsed = reload_proto::config::ConfigDocument::parse(&doc).unwrap();
    (parsed.configurations[0].config.clone(), Bytes::from(doc))
}

#[test]
fn a_peer_answering_unknown_kind_gets_the_kind_definition_by_config_update() {
    use reload_proto::config::{AccessPolicy, KindDataModel, KindDefinition, KindRef};
    use reload_wire::storage::{FetchReq, KindId, ModelSpecifier, StoredDataSpecifier};
    let mut r = ring(4, 44, SimNetwork::default(), |_, _| {});
    let signer = r.ca.node(false, 0x5160_5161, "signer");
    let kind = KindId(0xf000_0042);
    let def = KindDefinition::new(
        KindRef::Id(kind),
        KindDataModel::Array,
        AccessPolicy::UserMatch,
        4,
        200,
    );
    let (with, with_doc) = signed_config_with_kinds(&r, &signer, 5, vec![def]);
    let (without, without_doc) = signed_config_with_kinds(&r, &signer, 5, vec![]);
    let now = r.sim.now;
    r.sim.nodes[0].node.set_configuration(now, with, with_doc);
    for i in 1..4 {
        r.sim.nodes[i]
            .node
            .set_configuration(now, without.clone(), without_doc.clone());
    }
    // Node 0 fetches data of the Kind from node 1's range; node 1 does not know the Kind
    // and answers Error_Unknown_Kind listing it (§7.4.1.2, §7.4.2.1).
    let key = r.ids[1] - 9;
    let fetch = MessageBody::FetchReq(FetchReq {
        resource: ResourceId::new(key.to_be_bytes().to_vec()),
        specifiers: vec![StoredDataSpecifier {
            kind,
            generation: 0,
            model_specifier: ModelSpecifier::Array(vec![]),
        }],
    });
    let now = r.sim.now;
    let key_dest = Destination::Resource(ResourceId::new(key.to_be_bytes().to_vec()));
    let tx = r.sim.nodes[0]
        .node
        .send_request(now, vec![key_dest], fetch)
        .unwrap();
    r.sim.after_input(0);
    match wait(&mut r, 0, tx, Duration::from_secs(5)) {
        Err(RequestError::Error(who, e)) => {
            assert_eq!(who, NodeId::from_u128(r.ids[1]));
            assert_eq!(e.error_code, ErrorCode::UNKNOWN_KIND);
        }
        other => panic!("{other:?}"),
    }
    // Node 0 sends the signed kind-block; node 1 verifies it against its kind-signers
    // and now knows the Kind (§6.5.4.2).
    assert!(r.sim.run_until(Duration::from_secs(5), |s| {
        s.nodes[1]
            .node
            .overlay()
            .config()
            .kinds
            .iter()
            .any(|k| k.kind_id() == Some(kind))
    }));
    let learned = r.sim.nodes[1].node.overlay().config().clone();
    let k = learned
        .kinds
        .iter()
        .find(|k| k.kind_id() == Some(kind))
        .unwrap();
    assert_eq!((k.max_count, k.max_size), (4, 200));
    assert_eq!(
        learned.sequence, 5,
        "a Kind update leaves the sequence alone"
    );

    // A kind-block signed by someone who is not a kind-signer: Error_Forbidden.
    let outsider = r.ca.node(false, 0x0bad_0bad, "outsider");
    let other = KindDefinition::new(
        KindRef::Id(KindId(0xf000_0043)),
        KindDataModel::Single,
        AccessPolicy::UserMatch,
        1,
        100,
    );
    let (_, forged_doc) = signed_config_with_kinds(&r, &outsider, 5, vec![other]);
    let parsed =
        reload_proto::config::ConfigDocument::parse(std::str::from_utf8(&forged_doc).unwrap())
            .unwrap();
    let forged_kind = &parsed.configurations[0].config.kinds[0];
    let text = std::str::from_utf8(forged_kind.signed_bytes(&parsed)).unwrap();
    let block = forged_kind.block_xml_for_update(text).unwrap();
    let body = MessageBody::ConfigUpdateReq(reload_wire::link::ConfigUpdateReq::Kinds(vec![
        Bytes::from(block),
    ]));
    let tx = request(&mut r, 2, 1, body);
    assert!(
        matches!(wait(&mut r, 2, tx, Duration::from_secs(5)), Err(RequestError::Error(_, e)) if e.error_code == ErrorCode::FORBIDDEN)
    );
    assert!(
        !r.sim.nodes[1]
            .node
            .overlay()
            .config()
            .kinds
            .iter()
            .any(|k| k.kind_id() == Some(KindId(0xf000_0043)))
    );
}

/// Makes node `i`'s plug-in ask for an Attach to node `j` now.
fn attach(r: &mut Ring, i: usize, j: usize) {
    r.actions[i]
        .lock()
        .unwrap()
        .push_back(TopologyAction::Attach {
            target: Destination::Node(NodeId::from_u128(r.ids[j])),
            via: None,
            send_update: false,
        });
    let now = r.sim.now;
    r.sim.nodes[i].node.handle_timeout(now);
    r.sim.after_input(i);
}

fn attach_outcomes(r: &Ring, i: usize) -> (Vec<NodeId>, usize) {
    let log = r.inputs[i].lock().unwrap();
    let answered = log
        .iter()
        .filter_map(|x| match x {
            TopologyInput::AttachAnswered { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    let failed = log
        .iter()
        .filter(|x| matches!(x, TopologyInput::AttachFailed { .. }))
        .count();
    (answered, failed)
}

#[test]
fn simultaneous_attaches_make_one_link_and_the_smaller_node_id_yields() {
    // §6.5.1.2: nodes 0 and 2 (not linked; paths through 1 and 3) Attach to each other
    // at the same moment. Node 0, the smaller Node-ID, cancels its own Attach and answers
    // node 2's; node 2 answers node 0's with Error_In_Progress. One link results, and
    // both plug-ins learn of the peer; neither sees a failed Attach.
    let mut r = ring(4, 45, SimNetwork::default(), |_, _| {});
    assert!(r.ids[0] < r.ids[2]);
    let (a, b) = (NodeId::from_u128(r.ids[0]), NodeId::from_u128(r.ids[2]));
    assert!(!r.sim.nodes[0].node.connected_peers().contains(&b));
    attach(&mut r, 0, 2);
    attach(&mut r, 2, 0);
    assert!(r.sim.run_until(Duration::from_secs(10), |s| {
        s.nodes[0].node.connected_peers().contains(&b)
            && s.nodes[2].node.connected_peers().contains(&a)
    }));
    r.sim.run_for(Duration::from_secs(3));
    assert_eq!(attach_outcomes(&r, 0), (vec![b], 0), "node 0 yielded");
    assert_eq!(attach_outcomes(&r, 2), (vec![a], 0), "node 2's Attach won");
    let links_0_to_2 = r.sim.nodes[0]
        .events
        .iter()
        .filter(|e| matches!(e, Event::LinkUp { peer, .. } if *peer == b))
        .count();
    let links_2_to_0 = r.sim.nodes[2]
        .events
        .iter()
        .filter(|e| matches!(e, Event::LinkUp { peer, .. } if *peer == a))
        .count();
    assert_eq!((links_0_to_2, links_2_to_0), (1, 1), "exactly one link");
    assert!(
        !r.sim.nodes[2]
            .events
            .iter()
            .any(|e| matches!(e, Event::CloseStream { .. })),
        "no second link to close"
    );

    // Only the side that answered opened a transport: node 0 (yielding) answered
    // node 2's Attach and connected; node 2 refused node 0's with Error_In_Progress and
    // did not (without the rule both would have connected).
    let connects = |i: usize, to: usize| {
        let addr = r.sim.nodes[to].addr;
        r.sim.nodes[i]
            .events
            .iter()
            .filter(|e| matches!(e, Event::OpenStream { remote, .. } if *remote == addr))
            .count()
    };
    assert_eq!((connects(0, 2), connects(2, 0)), (1, 0));
}

#[test]
fn a_message_over_max_message_size_is_answered_with_error_message_too_large_and_the_link_closed() {
    // §6.6: node 0 (misconfigured: max-message-size 40,000) sends node 1 (5,000) a 12 kB
    // Ping over TLS. Node 1 reads its forwarding header, answers Error_Message_Too_Large
    // and closes the link.
    let mut r = ring_over(
        4,
        46,
        SimNetwork::default(),
        |i, b| {
            if i == 0 {
                b.config.max_message_size = 40_000;
            }
        },
        Some(OverlayLinkType::TLS_TCP_FH_NO_ICE),
    );
    r.sim.run_for(Duration::from_secs(3));
    let one = NodeId::from_u128(r.ids[1]);
    assert!(r.sim.nodes[0].node.connected_peers().contains(&one));
    let tx = big_ping(&mut r, 0, 1, 12_000);
    match wait(&mut r, 0, tx, Duration::from_secs(20)) {
        Err(RequestError::Error(who, e)) => {
            assert_eq!(who, one);
            assert_eq!(e.error_code, ErrorCode::MESSAGE_TOO_LARGE);
        }
        other => panic!("{other:?}"),
    }
    assert!(r.sim.run_until(Duration::from_secs(5), |s| {
        s.nodes[1].events.iter().any(|e| {
            matches!(e, Event::LinkDown { peer: Some(p), reason: Some(why), .. }
                if *p == NodeId::from_u128(r.ids[0]) && why.contains("max-message-size"))
        })
    }));
    // Messages within the limit still go through, on a new link.
    r.sim.connect(0, 1);
    r.sim.run_for(Duration::from_secs(3));
    let tx = big_ping(&mut r, 0, 1, 1000);
    assert!(wait(&mut r, 0, tx, Duration::from_secs(20)).is_ok());
}

#[test]
fn a_request_source_routed_through_a_peer_whose_link_fails_fails_at_once() {
    // Node 0 pings node 2 through node 1 ([1, 2]); node 1 dies before forwarding it.
    // Every retransmission would go to the peer now responsible for node 1's Node-ID,
    // which drops it (§6.1.1): the request fails when the link to node 1 goes down, not
    // after 15 s.
    let mut r = ring(4, 47, SimNetwork::default(), |_, _| {});
    let now = r.sim.now;
    let route = vec![
        Destination::Node(NodeId::from_u128(r.ids[1])),
        Destination::Node(NodeId::from_u128(r.ids[2])),
    ];
    let tx = r.sim.nodes[0]
        .node
        .send_request(now, route, MessageBody::PingReq(PingReq::default()))
        .unwrap();
    r.sim.kill(1);
    r.sim.after_input(0);
    let start = r.sim.now;
    assert_eq!(
        wait(&mut r, 0, tx, Duration::from_secs(20)),
        Err(RequestError::Timeout)
    );
    assert!(
        r.sim.now - start < Duration::from_secs(1),
        "failed when the link went down: {:?}",
        r.sim.now - start
    );
}

// ---- the usage seam ----------------------------------------------------------------

const EXP_A_REQ: reload_wire::message::MessageCode = reload_wire::message::MessageCode::EXP_A_REQ;
const EXP_A_ANS: reload_wire::message::MessageCode = reload_wire::message::MessageCode::EXP_A_ANS;

fn exp_a(code: reload_wire::message::MessageCode, payload: &'static [u8]) -> MessageBody {
    MessageBody::Unknown {
        code,
        body: Bytes::from_static(payload),
    }
}

/// Takes the requests node `i` handed to its application.
fn take_requests(r: &mut Ring, i: usize) -> Vec<InboundRequest> {
    let mut out = Vec::new();
    r.sim.nodes[i].events.retain(|e| match e {
        Event::Request(req) => {
            out.push(req.clone());
            false
        }
        _ => true,
    });
    out
}

#[test]
fn an_application_request_reaches_the_usage_with_its_signer_and_is_answered_through_the_core() {
    let mut r = ring(8, 51, SimNetwork::default(), |_, _| {});
    r.sim.nodes[5].node.serve(EXP_A_REQ);
    let tx = request(&mut r, 0, 5, exp_a(EXP_A_REQ, b"hello"));
    assert!(r.sim.run_until(Duration::from_secs(5), |s| {
        s.nodes[5]
            .events
            .iter()
            .any(|e| matches!(e, Event::Request(_)))
    }));
    let reqs = take_requests(&mut r, 5);
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    let me = NodeId::from_u128(r.ids[5]);
    assert_eq!(req.body, exp_a(EXP_A_REQ, b"hello"));
    assert_eq!(req.signer.node_id, NodeId::from_u128(r.ids[0]));
    assert_eq!(
        req.signer.cert.user_name.as_deref(),
        Some("user0@test.example.org"),
        "the signer's certificate comes with the request (access control, §7.3)"
    );
    assert_eq!(req.destination, Destination::Node(me));
    assert_eq!(
        req.via.first(),
        Some(&Destination::Node(NodeId::from_u128(r.ids[0]))),
        "several hops: the via list starts with the originator"
    );
    assert_eq!(req.transaction_id, tx);
    let now = r.sim.now;
    r.sim.nodes[5]
        .node
        .respond(now, req.id, Ok(exp_a(EXP_A_ANS, b"olleh")));
    r.sim.after_input(5);
    let (who, body) = wait(&mut r, 0, tx, Duration::from_secs(5)).unwrap();
    assert_eq!((who, body), (me, exp_a(EXP_A_ANS, b"olleh")));
}

#[test]
fn a_method_nobody_serves_is_refused_at_once() {
    let mut r = ring(8, 52, SimNetwork::default(), |_, _| {});
    let tx = request(&mut r, 0, 5, exp_a(EXP_A_REQ, b"anyone?"));
    match wait(&mut r, 0, tx, Duration::from_secs(20)) {
        Err(RequestError::Error(who, e)) => {
            assert_eq!(who, NodeId::from_u128(r.ids[5]));
            assert_eq!(e.error_code, ErrorCode::FORBIDDEN);
            assert!(
                String::from_utf8_lossy(&e.error_info).contains("exp_a_req"),
                "{e:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(take_requests(&mut r, 5).is_empty());
    assert_eq!(r.sim.nodes[5].node.stats().unserved_requests, 1);
    assert_eq!(r.sim.nodes[0].node.stats().retransmissions, 0);
}

#[test]
fn an_unanswered_request_expires_with_an_error_at_the_requester_and_is_delivered_once() {
    let mut r = ring(8, 53, SimNetwork::default(), |_, _| {});
    r.sim.nodes[5].node.serve(EXP_A_REQ);
    let tx = request(&mut r, 0, 5, exp_a(EXP_A_REQ, b"slow"));
    // The usage never answers: the core answers Error_Request_Timeout before the
    // requester gives up (§6.2.1), and the requester's retransmissions meanwhile are
    // never handed up again.
    match wait(&mut r, 0, tx, Duration::from_secs(20)) {
        Err(RequestError::Error(who, e)) => {
            assert_eq!(who, NodeId::from_u128(r.ids[5]));
            assert_eq!(e.error_code, ErrorCode::REQUEST_TIMEOUT);
        }
        other => panic!("expected Error_Request_Timeout, got {other:?}"),
    }
    let reqs = take_requests(&mut r, 5);
    assert_eq!(reqs.len(), 1, "handed to the application exactly once");
    let stats = r.sim.nodes[5].node.stats().clone();
    assert_eq!(stats.expired_requests, 1);
    assert!(stats.duplicate_requests >= 3, "{stats:?}");
    assert!(r.sim.nodes[0].node.stats().retransmissions >= 3);
    // A late answer is dropped: nothing more reaches the requester.
    let answered = stats.answered;
    let now = r.sim.now;
    r.sim.nodes[5]
        .node
        .respond(now, reqs[0].id, Ok(exp_a(EXP_A_ANS, b"late")));
    r.sim.after_input(5);
    r.sim.run_for(Duration::from_secs(2));
    assert_eq!(r.sim.nodes[5].node.stats().answered, answered);
}

#[test]
fn retransmissions_of_a_served_request_are_answered_from_the_cache() {
    // Half the messages are lost: requests are retransmitted, some after their answer
    // was sent (and lost). The usage sees each request once; the core answers the
    // retransmissions from its cache (§6.2.1).
    let net = SimNetwork {
        loss: 0.5,
        ..SimNetwork::default()
    };
    let mut r = ring(4, 54, net, |_, _| {});
    r.sim.nodes[1].node.serve(EXP_A_REQ);
    let mut served = Vec::new();
    for _ in 0..6 {
        let tx = request(&mut r, 0, 1, exp_a(EXP_A_REQ, b"once"));
        let deadline = r.sim.now + Duration::from_secs(20);
        while r.sim.now < deadline && response(&r, 0, tx).is_none() {
            r.sim.run_for(Duration::from_millis(100));
            for req in take_requests(&mut r, 1) {
                served.push(req.transaction_id);
                let now = r.sim.now;
                r.sim.nodes[1]
                    .node
                    .respond(now, req.id, Ok(exp_a(EXP_A_ANS, b"done")));
                r.sim.after_input(1);
            }
        }
    }
    let mut unique = served.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), served.len(), "no request served twice");
    assert!(r.sim.nodes[1].node.stats().duplicate_requests > 0);
}

// ---- one trust policy ---------------------------------------------------------------

#[test]
fn a_configuration_update_naming_a_bad_node_drops_its_links_on_every_peer() {
    let mut r = ring(8, 55, SimNetwork::default(), |_, _| {});
    let signer = r.ca.node(false, 0x5160_5162, "config-signer");
    let (c1, d1) = signed_config(&r, &signer, &signer, 1);
    let now = r.sim.now;
    for i in 0..8 {
        r.sim.nodes[i]
            .node
            .set_configuration(now, c1.clone(), d1.clone());
    }
    let bad = NodeId::from_u128(r.ids[3]);
    let linked_to_bad: Vec<usize> = (0..8)
        .filter(|&i| r.sim.nodes[i].node.connected_peers().contains(&bad))
        .collect();
    assert!(linked_to_bad.len() >= 2, "{linked_to_bad:?}");
    // Sequence 2 lists node 3 in bad-nodes (§11.1); node 0 pushes it to every peer.
    let mut c2 = r.sim.nodes[0].node.overlay().config().clone();
    c2.sequence = 2;
    c2.bad_nodes = vec![bad.as_bytes().to_vec()];
    let d2 = Bytes::from(reload_proto::check::signed_document(&mut c2, &signer, &signer).unwrap());
    for i in [1, 2, 4, 5, 6, 7] {
        let body =
            MessageBody::ConfigUpdateReq(reload_wire::link::ConfigUpdateReq::Config(d2.clone()));
        let tx = request(&mut r, 0, i, body);
        assert!(
            wait(&mut r, 0, tx, Duration::from_secs(10)).is_ok(),
            "node {i}"
        );
    }
    let now = r.sim.now;
    let parsed =
        reload_proto::config::ConfigDocument::parse(std::str::from_utf8(&d2).unwrap()).unwrap();
    r.sim.nodes[0]
        .node
        .set_configuration(now, parsed.configurations[0].config.clone(), d2.clone());
    r.sim.after_input(0);
    r.sim.run_for(Duration::from_secs(2));
    for i in (0..8).filter(|&i| i != 3) {
        let node = &r.sim.nodes[i].node;
        assert_eq!(node.overlay().sequence(), 2, "node {i}");
        assert!(
            !node.connected_peers().contains(&bad),
            "node {i} still has a link to the bad node"
        );
        assert!(node.links().iter().all(|l| l.peer != Some(bad)));
    }
    for &i in &linked_to_bad {
        if i == 3 {
            continue;
        }
        assert!(
            r.sim.nodes[i].events.iter().any(|e| matches!(
                e,
                Event::LinkDown { peer: Some(p), reason: Some(why), .. }
                    if *p == bad && why.contains("new configuration")
            )),
            "node {i} closed its link to the bad node because of the configuration"
        );
    }
    // It cannot reach anyone, and cannot link again.
    let now = r.sim.now;
    let body = MessageBody::PingReq(PingReq::default());
    let tx = r.sim.nodes[3]
        .node
        .send_request(
            now,
            vec![Destination::Node(NodeId::from_u128(r.ids[5]))],
            body,
        )
        .unwrap();
    r.sim.after_input(3);
    r.sim.connect(3, 5);
    r.sim.connect(5, 3);
    r.sim.run_for(Duration::from_secs(20));
    assert_eq!(response(&r, 3, tx), Some(Err(RequestError::Timeout)));
    assert!(!r.sim.nodes[5].node.connected_peers().contains(&bad));
    let refused = r.sim.nodes[5].events.iter().any(|e| {
        matches!(e, Event::LinkDown { reason: Some(why), .. } if why.contains("bad-node") || why.contains("revoked") || why.contains("bad node"))
    });
    assert!(refused, "{:?}", r.sim.nodes[5].events);
}

// ---- the endpoint's admission ------------------------------------------------------------

/// A DTLS client of a would-be peer (it sends its ClientHello first).
fn dtls_client(r: &Ring) -> reload_proto::link::Link {
    let creds = r.ca.node(false, 0x0999, "stranger");
    let anchor = WallAnchor::new(r.sim.now, SystemTime::now());
    let lc = LinkConfig::new(r.ca.trust(), 5000, anchor);
    let ctx = LinkContext::new(lc, &creds).unwrap();
    reload_proto::link::Link::connect_dtls(&ctx, None, r.sim.now).unwrap()
}

/// What node `i` transmitted to `remote` just now (taken out of its queue).
fn datagrams_to(r: &mut Ring, i: usize, remote: SocketAddr) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut keep = Vec::new();
    while let Some(t) = r.sim.nodes[i].node.poll_transmit() {
        match t.transport {
            reload_proto::node::Transport::Datagram { remote: to, .. } if to == remote => {
                out.push(t.data)
            }
            _ => keep.push(t),
        }
    }
    assert!(keep.is_empty() || keep.iter().all(|t| !t.data.is_empty()));
    out
}

#[test]
fn spoofed_client_hellos_allocate_nothing_and_only_a_returned_cookie_makes_a_link() {
    // RFC 6347 §4.2.1: the cookie exchange is stateless; a ClientHello from an address
    // that never receives our HelloVerifyRequest costs no link.
    let mut r = ring_over(
        4,
        57,
        SimNetwork::default(),
        |_, _| {},
        Some(OverlayLinkType::DTLS_UDP_SR_NO_ICE),
    );
    r.sim.run_for(Duration::from_secs(3));
    let local = r.sim.nodes[1].addr;
    let links_before = r.sim.nodes[1].node.links().len();
    let cookies_before = r.sim.nodes[1].node.stats().dtls_cookies_sent;
    let mut client = dtls_client(&r);
    let hello = client.poll_transmit().unwrap();
    for k in 1..=200u16 {
        let spoofed = SocketAddr::from(([10, 8, (k >> 8) as u8, k as u8], 4000 + k));
        let now = r.sim.now;
        r.sim.nodes[1]
            .node
            .handle_datagram(now, local, spoofed, hello.clone());
        // A HelloVerifyRequest goes back to the (spoofed) address; nothing else.
        let out = datagrams_to(&mut r, 1, spoofed);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][0], 22, "a handshake record");
        assert_eq!(out[0][13], 3, "hello_verify_request");
    }
    assert_eq!(r.sim.nodes[1].node.links().len(), links_before);
    assert_eq!(
        r.sim.nodes[1].node.stats().dtls_cookies_sent - cookies_before,
        200
    );
    // A client that does receive at its address returns the cookie and gets a link, and
    // its handshake proceeds (the server's flight comes back).
    let real = SocketAddr::from(([10, 8, 9, 9], 4999));
    let now = r.sim.now;
    r.sim.nodes[1]
        .node
        .handle_datagram(now, local, real, hello.clone());
    let hvr = datagrams_to(&mut r, 1, real);
    assert_eq!(hvr.len(), 1);
    client.handle_input(now, &hvr[0]);
    let with_cookie = client.poll_transmit().unwrap();
    r.sim.nodes[1]
        .node
        .handle_datagram(now, local, real, with_cookie);
    assert_eq!(r.sim.nodes[1].node.links().len(), links_before + 1);
    let flight = datagrams_to(&mut r, 1, real);
    assert!(
        !flight.is_empty(),
        "the server answered the cookie with its flight"
    );
    for d in &flight {
        client.handle_input(now, d);
    }
    assert!(
        client.poll_transmit().is_some(),
        "the client continues the handshake (its certificate flight)"
    );
    r.sim.after_input(1);
    let tx = ping_node(&mut r, 0, 2);
    assert!(wait(&mut r, 0, tx, Duration::from_secs(10)).is_ok());
}

#[test]
fn the_endpoint_refuses_links_beyond_its_caps_and_the_node_keeps_working() {
    use reload_proto::node::{Admission, Refusal};
    for protocol in [
        OverlayLinkType::TLS_TCP_FH_NO_ICE,
        OverlayLinkType::DTLS_UDP_SR_NO_ICE,
    ] {
        let mut r = ring_over(
            4,
            56,
            SimNetwork::default(),
            |_, b| {
                b.settings.admission = Admission {
                    max_links: 8,
                    max_handshakes: 3,
                    max_links_per_address: 2,
                }
            },
            Some(protocol),
        );
        r.sim.run_for(Duration::from_secs(3));
        let local = r.sim.nodes[1].addr;
        // Would-be peers that start a handshake and never finish it: from 20 addresses,
        // then 5 more from one address. Over DTLS they receive at their addresses (they
        // return the cookie, RFC 6347 §4.2.1), so each gets as far as a link would.
        let remote = |ip: u8, port: u16| SocketAddr::from(([10, 9, 0, ip], port));
        let admit = |r: &mut Ring, from: SocketAddr| -> bool {
            let now = r.sim.now;
            if protocol == OverlayLinkType::TLS_TCP_FH_NO_ICE {
                return r.sim.nodes[1].node.accept_stream(now, local, from).is_ok();
            }
            let mut client = dtls_client(r);
            let hello = client.poll_transmit().unwrap();
            r.sim.nodes[1].node.handle_datagram(now, local, from, hello);
            let hvr = datagrams_to(r, 1, from);
            client.handle_input(now, &hvr[0]);
            let with_cookie = client.poll_transmit().unwrap();
            let node = &mut r.sim.nodes[1].node;
            let before = node.stats().refused_links;
            node.handle_datagram(now, local, from, with_cookie);
            node.stats().refused_links == before
        };
        let accepted = (1..=20).filter(|&k| admit(&mut r, remote(k, 5000))).count();
        assert_eq!(
            accepted, 3,
            "{protocol:?}: handshakes in progress are capped"
        );
        assert_eq!(r.sim.nodes[1].node.stats().refused_links, 17);
        if protocol == OverlayLinkType::TLS_TCP_FH_NO_ICE {
            let now = r.sim.now;
            match r.sim.nodes[1].node.accept_stream(now, local, remote(99, 1)) {
                Err(Refusal::TooManyHandshakes(3)) => {}
                other => panic!("{other:?}"),
            }
        }
        r.sim.after_input(1);
        // The node keeps working meanwhile: a Ping through it is answered.
        let tx = ping_node(&mut r, 0, 2);
        assert!(
            wait(&mut r, 0, tx, Duration::from_secs(10)).is_ok(),
            "{protocol:?}"
        );
        // The half-open links time out (the handshake timeout) and free their places…
        r.sim.run_for(Duration::from_secs(12));
        let half_open = r.sim.nodes[1]
            .node
            .links()
            .iter()
            .filter(|l| l.inbound && !l.established)
            .count();
        assert_eq!(half_open, 0, "{protocol:?}");
        // …and one address gets at most its share.
        let same = (0..5)
            .filter(|&p| admit(&mut r, remote(200, 7000 + p)))
            .count();
        assert_eq!(same, 2, "{protocol:?}: links per address are capped");
        let tx = ping_node(&mut r, 2, 0);
        assert!(
            wait(&mut r, 2, tx, Duration::from_secs(10)).is_ok(),
            "{protocol:?}"
        );
    }
}

/// The kind block of `kind` in a signed configuration document, as a ConfigUpdate carries
/// it (§6.5.4.1).
fn kind_block(doc: &Bytes, kind: reload_wire::storage::KindId) -> Bytes {
    let parsed =
        reload_proto::config::ConfigDocument::parse(std::str::from_utf8(doc).unwrap()).unwrap();
    let k = parsed.configurations[0]
        .config
        .kinds
        .iter()
        .find(|k| k.kind_id() == Some(kind))
        .unwrap();
    let text = std::str::from_utf8(k.signed_bytes(&parsed)).unwrap();
    Bytes::from(k.block_xml_for_update(text).unwrap())
}

#[test]
fn a_known_kind_is_not_changed_by_a_kind_block_only_by_a_new_configuration() {
    // §6.5.4.2: a Kind update conflicting with a known Kind is refused. Even validly signed
    // by a kind-signer, a different (e.g. older) definition cannot replace the one in force;
    // the same definition is accepted and changes nothing.
    use reload_proto::config::{AccessPolicy, KindDataModel, KindDefinition, KindRef};
    use reload_wire::storage::KindId;
    let mut r = ring(4, 58, SimNetwork::default(), |_, _| {});
    let signer = r.ca.node(false, 0x5160_5163, "kind-signer");
    let kind = KindId(0xf000_0044);
    let def = |max_count| {
        KindDefinition::new(
            KindRef::Id(kind),
            KindDataModel::Array,
            AccessPolicy::UserMatch,
            max_count,
            200,
        )
    };
    let (current, current_doc) = signed_config_with_kinds(&r, &signer, 5, vec![def(4)]);
    let (_, older_doc) = signed_config_with_kinds(&r, &signer, 4, vec![def(1000)]);
    let now = r.sim.now;
    for i in 0..4 {
        r.sim.nodes[i]
            .node
            .set_configuration(now, current.clone(), current_doc.clone());
    }
    let update = |block: Bytes| {
        MessageBody::ConfigUpdateReq(reload_wire::link::ConfigUpdateReq::Kinds(vec![block]))
    };
    let tx = request(&mut r, 0, 1, update(kind_block(&older_doc, kind)));
    match wait(&mut r, 0, tx, Duration::from_secs(5)) {
        Err(RequestError::Error(_, e)) => assert_eq!(e.error_code, ErrorCode::FORBIDDEN),
        other => panic!("a different definition was taken: {other:?}"),
    }
    let max_count = |r: &Ring| {
        r.sim.nodes[1]
            .node
            .overlay()
            .config()
            .kinds
            .iter()
            .find(|k| k.kind_id() == Some(kind))
            .map(|k| k.max_count)
    };
    assert_eq!(max_count(&r), Some(4));
    let tx = request(&mut r, 0, 1, update(kind_block(&current_doc, kind)));
    assert!(wait(&mut r, 0, tx, Duration::from_secs(5)).is_ok());
    assert_eq!(max_count(&r), Some(4));
}

#[test]
fn a_bootstrap_peer_that_cannot_be_reached_is_named_with_the_reason_and_tried_again() {
    // §11.4 / §10.5: a joining peer whose bootstrap connection fails reports the shell's
    // error (not a missing close_notify) with the bootstrap's address, and connects
    // again after a back-off.
    use reload_proto::node::{Start, StreamEvent};
    use reload_proto::topology::chord::{Chord, ChordSettings};
    let ca = TestCa::new(false);
    let overlay = ca.storage_overlay();
    let creds = ca.node(false, 0x1234, "joiner");
    let anchor = WallAnchor::new(Instant::now(), SystemTime::now());
    let me: SocketAddr = "10.9.0.1:6084".parse().unwrap();
    let boot: SocketAddr = "10.9.0.2:6084".parse().unwrap();
    let parts = NodeParts {
        settings: NodeSettings::new(vec![(OverlayLinkType::TLS_TCP_FH_NO_ICE, me)]),
        links: Box::new(PlainLinks::new(&creds.cert, &overlay, anchor)),
        topology: Box::new(Chord::new(
            NodeId::from_u128(0x1234),
            ChordSettings::from_overlay(&overlay),
        )),
        overlay,
        credentials: creds,
    };
    let mut node = Node::new(parts, anchor.instant, anchor.wall, Seed::from_u64(3));
    let mut now = anchor.instant;
    node.start(
        now,
        Start::Join(vec![(OverlayLinkType::TLS_TCP_FH_NO_ICE, boot)]),
    );
    let opened = |node: &mut Node| {
        let mut streams = Vec::new();
        while let Some(e) = node.poll_event() {
            if let Event::OpenStream { stream, remote } = e {
                assert_eq!(remote, boot);
                streams.push(stream);
            }
        }
        streams
    };
    let first = opened(&mut node);
    assert_eq!(first.len(), 1, "one connection to the bootstrap peer");
    let why = format!("cannot connect to {boot}: Connection refused (os error 111)");
    node.handle_stream(
        now,
        first[0],
        StreamEvent::Closed {
            error: Some(why.clone()),
        },
    );
    let mut down = Vec::new();
    while let Some(e) = node.poll_event() {
        if let Event::LinkDown { remote, reason, .. } = e {
            down.push((remote, reason));
        }
    }
    assert_eq!(down, vec![(Some(boot), Some(why))]);
    // Tried again after the back-off.
    let mut again = Vec::new();
    for _ in 0..10 {
        now = node.poll_timeout().expect("a retry is scheduled");
        node.handle_timeout(now);
        again = opened(&mut node);
        if !again.is_empty() {
            break;
        }
    }
    assert_eq!(again.len(), 1, "connected to the bootstrap peer again");
    assert!(now - anchor.instant >= Duration::from_secs(1));
}
