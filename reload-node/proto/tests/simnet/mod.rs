//! Full node cores ([`reload_proto::node::Node`], Chord) in the core's deterministic
//! simulator ([`reload_proto::sim`]), shared by `sim_500.rs`, `chord_sim_core.rs` and
//! `benches/sim.rs`: building them (certificates from the test CA of `pki`, which the
//! including crate declares as `mod pki;` at its root), joining them, checking their
//! ring, and RouteQuery lookups checked against the responsible peer.

// Each crate uses part of this.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reload_proto::link::WallAnchor;
use reload_proto::link::plain::PlainLinks;
use reload_proto::node::{Event, Node, NodeSettings, RequestError};
use reload_proto::node::{NodeParts, Start};
use reload_proto::rand::{Prng, Seed};
use reload_proto::sim::{Sim, SimNetwork};
use reload_proto::topology::chord::Chord;
use reload_proto::topology::chord::ChordSettings;
use reload_wire::body::MessageBody;
use reload_wire::link::OverlayLinkType;
use reload_wire::topology::RouteQueryReq;
use reload_wire::{DecodeOptions, Destination, NodeId, ResourceId};

use crate::pki::TestCa;

pub const PROTOCOL: OverlayLinkType = OverlayLinkType::TLS_TCP_FH_NO_ICE;
pub const SEC: Duration = Duration::from_secs(1);

pub struct Net {
    pub sim: Sim,
    pub ids: Vec<u128>,
    pub addrs: Vec<SocketAddr>,
    /// The overlay's root CA (to issue more certificates in a test).
    pub ca: TestCa,
    pub overlay: std::sync::Arc<reload_proto::overlay::Overlay>,
    pub topology: ChordSettings,
    pub anchor: WallAnchor,
    pub seed: u64,
}

/// `n` distinct Node-IDs (never 0 or all ones) drawn from the seed.
pub fn random_ids(n: usize, seed: u64) -> Vec<u128> {
    let mut rng = Prng::new(seed ^ 0x1d5);
    let mut ids: Vec<u128> = Vec::with_capacity(n);
    let mut seen = std::collections::BTreeSet::new();
    while ids.len() < n {
        let id = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
        if id == 0 || id == u128::MAX || !seen.insert(id) {
            continue;
        }
        ids.push(id);
    }
    ids
}

/// `n` full cores (P-256 certificates from one test CA), none started, with exactly the
/// settings `peer::build` gives a real peer (RFC defaults: 5 neighbours, 32 fingers,
/// Update every 600 s, finger Ping every 3600 s, request timeout 15 s, reactive).
/// Node-IDs come from the seed ([`random_ids`]), node `i` listens on 10.x.y.z:6084.
pub fn cores(n: usize, seed: u64) -> Net {
    let addr = |i: usize| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6084));
    build(seed, random_ids(n, seed), addr, None, None)
}

/// A full core (P-256 certificate from one test CA) for each of `ids`, none started;
/// node `i` listens on `addr(i)`. Its Chord runs `topology` (`None`: what
/// `ChordSettings::from_overlay` gives a real peer), its verifier caches `cert_cache`
/// certificates (`None`: the node settings' `cert_cache_size`).
pub fn build(
    seed: u64,
    ids: Vec<u128>,
    addr: impl Fn(usize) -> SocketAddr,
    topology: Option<ChordSettings>,
    cert_cache: Option<usize>,
) -> Net {
    let ca = TestCa::new(false);
    let overlay = ca.overlay();
    build_in(ca, overlay, seed, ids, addr, topology, cert_cache)
}

/// [`build`] in the overlay `overlay` of the CA `ca`.
pub fn build_in(
    ca: TestCa,
    overlay: std::sync::Arc<reload_proto::overlay::Overlay>,
    seed: u64,
    ids: Vec<u128>,
    addr: impl Fn(usize) -> SocketAddr,
    topology: Option<ChordSettings>,
    cert_cache: Option<usize>,
) -> Net {
    build_with_links(ca, overlay, seed, ids, addr, topology, cert_cache, false)
}

/// [`build_in`] with plain links (`ice` false) or real DTLS links in an ICE overlay.
#[allow(clippy::too_many_arguments)]
fn build_with_links(
    ca: TestCa,
    overlay: std::sync::Arc<reload_proto::overlay::Overlay>,
    seed: u64,
    ids: Vec<u128>,
    addr: impl Fn(usize) -> SocketAddr,
    topology: Option<ChordSettings>,
    cert_cache: Option<usize>,
    ice: bool,
) -> Net {
    let mut sim = Sim::new(seed, SimNetwork::default());
    let topology = topology.unwrap_or_else(|| ChordSettings::from_overlay(&overlay));
    let mut addrs = Vec::with_capacity(ids.len());
    let anchor = WallAnchor::new(sim.now, SystemTime::now());
    for (i, &id) in ids.iter().enumerate() {
        let addr = addr(i);
        let node = make_node(
            &ca, &overlay, &topology, anchor, &sim, seed, id, i, addr, cert_cache, ice,
        );
        sim.add(node, addr);
        addrs.push(addr);
    }
    Net {
        sim,
        ids,
        addrs,
        ca,
        overlay,
        topology,
        anchor,
        seed,
    }
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    ca: &TestCa,
    overlay: &std::sync::Arc<reload_proto::overlay::Overlay>,
    topology: &ChordSettings,
    anchor: WallAnchor,
    sim: &Sim,
    seed: u64,
    id: u128,
    i: usize,
    addr: SocketAddr,
    cert_cache: Option<usize>,
    ice: bool,
) -> Node {
    let mut settings = NodeSettings::new(vec![(if ice { ICE } else { PROTOCOL }, addr)]);
    if let Some(c) = cert_cache {
        settings.cert_cache_size = c;
    }
    let creds = ca.node(false, id, &format!("user{i}"));
    let links: Box<dyn reload_proto::link::LinkFactory> = if ice {
        let lc = reload_proto::link::LinkConfig::new(
            overlay.trust().as_ref().clone(),
            overlay.max_message_size(),
            anchor,
        );
        let ctx = reload_proto::link::LinkContext::new(lc, &creds).expect("link context");
        Box::new(reload_proto::link::SecureLinks::new(ctx))
    } else {
        Box::new(PlainLinks::new(&creds.cert, overlay, anchor))
    };
    let parts = NodeParts {
        settings,
        overlay: overlay.clone(),
        credentials: creds,
        topology: Box::new(Chord::new(NodeId::from_u128(id), topology.clone())),
        links,
    };
    Node::new(
        parts,
        sim.now,
        anchor.wall,
        Seed::from_u64(seed ^ id as u64),
    )
}

/// The link protocol of an ICE overlay (RFC 6940 §6.5.1.5): DTLS-UDP-SR.
pub const ICE: OverlayLinkType = OverlayLinkType::DTLS_UDP_SR;

/// [`build`] for an ICE overlay: every node listens with DTLS-UDP-SR at `addr(i)` over
/// real DTLS links (its own P-256 key), so every Attach runs ICE (§6.5.1.3–§6.5.1.10) —
/// through whatever NATs the test puts in the simulator. DTLS draws its own randomness:
/// such a run is not reproducible byte for byte.
pub fn build_ice(seed: u64, ids: Vec<u128>, addr: impl Fn(usize) -> SocketAddr) -> Net {
    let ca = TestCa::new(false);
    let overlay = ca.overlay();
    build_with_links(ca, overlay, seed, ids, addr, None, None, true)
}

/// Adds one more core (not started) with Node-ID `id` listening at `addr`, user
/// `user{index}`; returns its index.
pub fn add_node(net: &mut Net, id: u128, addr: SocketAddr) -> usize {
    let i = net.ids.len();
    let node = make_node(
        &net.ca,
        &net.overlay,
        &net.topology,
        net.anchor,
        &net.sim,
        net.seed,
        id,
        i,
        addr,
        None,
        false,
    );
    net.sim.add(node, addr);
    net.ids.push(id);
    net.addrs.push(addr);
    i
}

/// Starts node 0 alone, then every other one `gap` after the previous, each through a
/// random earlier node; `each(i, net)` after node `i` (≥ 1) has had its `gap`.
pub fn join_sequentially(net: &mut Net, gap: Duration, mut each: impl FnMut(usize, &Net)) {
    let now = net.sim.now;
    net.sim.nodes[0].node.start(now, Start::FirstNode);
    net.sim.after_input(0);
    net.sim.run_for(gap);
    for i in 1..net.ids.len() {
        let b = net.sim.rng.below(i as u64) as usize;
        let now = net.sim.now;
        let boot = vec![(PROTOCOL, net.addrs[b])];
        net.sim.nodes[i].node.start(now, Start::Join(boot));
        net.sim.after_input(i);
        net.sim.run_for(gap);
        if i % 64 == 0 {
            clear_events(&mut net.sim);
        }
        each(i, net);
    }
}

/// Events nobody reads (LinkUp, NeighborsChanged, …) would pile up.
pub fn clear_events(sim: &mut Sim) {
    for n in &mut sim.nodes {
        n.events.clear();
    }
}

/// The live nodes, sorted by Node-ID.
pub fn live(net: &Net) -> Vec<usize> {
    let mut v: Vec<usize> = (0..net.ids.len())
        .filter(|&i| net.sim.nodes[i].alive)
        .collect();
    v.sort_by_key(|&i| net.ids[i]);
    v
}

/// Why the live nodes do not form exactly their sorted ring (successor and predecessor
/// lists of `neighbors`).
pub fn ring_error(net: &Net, neighbors: usize) -> Option<String> {
    ring_error_of(net, &live(net), neighbors)
}

/// Why the nodes `m` (sorted by ID) do not form exactly their ring (successor and
/// predecessor lists of `neighbors`).
pub fn ring_error_of(net: &Net, m: &[usize], neighbors: usize) -> Option<String> {
    let n = m.len();
    let len = neighbors.min(n - 1);
    for (k, &i) in m.iter().enumerate() {
        let t = net.sim.nodes[i].node.topology();
        if !t.is_joined() {
            return Some(format!("node {i} not joined"));
        }
        let want_s: Vec<NodeId> = (1..=len)
            .map(|d| NodeId::from_u128(net.ids[m[(k + d) % n]]))
            .collect();
        let want_p: Vec<NodeId> = (1..=len)
            .map(|d| NodeId::from_u128(net.ids[m[(k + n - d) % n]]))
            .collect();
        let (succ, pred) = (
            t.neighbor_section("successors"),
            t.neighbor_section("predecessors"),
        );
        if succ != want_s || pred != want_p {
            return Some(format!(
                "node {i}: succ {succ:?} want {want_s:?}; pred {pred:?} want {want_p:?}"
            ));
        }
    }
    None
}

/// Why the first `k` successors and predecessors of some live node are not the next and
/// previous `k` live Node-IDs (what storage needs: the replica set, §10.4).
pub fn ring_prefix_error(net: &Net, k: usize) -> Option<String> {
    let m = live(net);
    let n = m.len();
    let len = k.min(n - 1);
    for (p, &i) in m.iter().enumerate() {
        let t = net.sim.nodes[i].node.topology();
        if !t.is_joined() {
            return Some(format!("node {i} not joined"));
        }
        let want_s: Vec<NodeId> = (1..=len)
            .map(|d| NodeId::from_u128(net.ids[m[(p + d) % n]]))
            .collect();
        let want_p: Vec<NodeId> = (1..=len)
            .map(|d| NodeId::from_u128(net.ids[m[(p + n - d) % n]]))
            .collect();
        let succ = t.neighbor_section("successors");
        let pred = t.neighbor_section("predecessors");
        if succ.get(..len) != Some(&want_s[..]) || pred.get(..len) != Some(&want_p[..]) {
            return Some(format!(
                "node {i}: succ {succ:?} want {want_s:?}…; pred {pred:?} want {want_p:?}…"
            ));
        }
    }
    None
}

/// Runs in steps of `step` until the ring is exact ([`ring_error`]); the simulated time
/// it took, or `None` after `limit`.
pub fn converge(
    net: &mut Net,
    neighbors: usize,
    step: Duration,
    limit: Duration,
) -> Option<Duration> {
    let t0 = net.sim.now;
    loop {
        if ring_error(net, neighbors).is_none() {
            return Some(net.sim.now - t0);
        }
        if net.sim.now - t0 >= limit {
            return None;
        }
        net.sim.run_for(step);
    }
}

#[derive(Debug, Default)]
pub struct Lookups {
    pub count: u64,
    pub hops: u64,
    pub max_hops: u32,
    /// Answers that did not come back along the request's path (§6.2.2): a link on it
    /// went away in between and the answer was routed to the next via entry instead.
    pub asymmetric: u64,
    /// Every lookup's hop count, in order (for a digest).
    pub trace: Vec<u8>,
}

impl Lookups {
    pub fn mean(&self) -> f64 {
        self.hops as f64 / self.count as f64
    }
}

/// Removes and returns the answer to `tx` from `from`'s events.
pub fn take_response(
    sim: &mut Sim,
    from: usize,
    tx: u64,
) -> Option<Result<(NodeId, MessageBody), RequestError>> {
    let ev = &mut sim.nodes[from].events;
    let k = ev.iter().position(
        |e| matches!(e, Event::Response { transaction_id, .. } if *transaction_id == tx),
    )?;
    match ev.remove(k) {
        Event::Response { result, .. } => Some(result),
        _ => unreachable!(),
    }
}

/// `count` RouteQueries (application requests) for random Resource-IDs from random live
/// peers, `batch` of them sent at the same instant: each must be answered by the
/// responsible peer, naming itself as the next peer. A hop is one overlay link crossed by
/// the request, counted by the simulator at delivery ([`Sim::watch`]).
pub fn lookups(net: &mut Net, count: usize, batch: usize, seed: u64) -> Lookups {
    let m = live(net);
    let sorted: Vec<u128> = m.iter().map(|&i| net.ids[i]).collect();
    let mut rng = Prng::new(seed);
    let mut out = Lookups::default();
    let opts = DecodeOptions::default();
    let mut sent = 0;
    while sent < count {
        clear_events(&mut net.sim);
        let mut pending = Vec::new();
        for _ in 0..batch.min(count - sent) {
            let key = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
            let from = m[rng.below(m.len() as u64) as usize];
            let want = m[sorted.partition_point(|&v| v < key) % m.len()];
            let dest = Destination::Resource(ResourceId::new(key.to_be_bytes().to_vec()));
            let body = MessageBody::RouteQueryReq(RouteQueryReq {
                send_update: false,
                destination: dest.clone(),
                overlay_specific_data: Bytes::new(),
            });
            let now = net.sim.now;
            let tx = net.sim.nodes[from]
                .node
                .send_request(now, vec![dest], body)
                .expect("RouteQuery not sent");
            net.sim.watch(tx);
            net.sim.after_input(from);
            pending.push((from, tx, key, want));
            sent += 1;
        }
        let t0 = net.sim.now;
        while !pending.is_empty() {
            assert!(
                net.sim.now - t0 < 30 * SEC,
                "{} RouteQueries unanswered after 30 s, e.g. key {:032x}",
                pending.len(),
                pending[0].2
            );
            net.sim.run_for(Duration::from_millis(50));
            let mut k = 0;
            while k < pending.len() {
                let (from, tx, key, want) = pending[k];
                let Some(result) = take_response(&mut net.sim, from, tx) else {
                    k += 1;
                    continue;
                };
                pending.swap_remove(k);
                let (signer, body) = result
                    .unwrap_or_else(|e| panic!("RouteQuery {key:032x} from node {from}: {e:?}"));
                let want_id = NodeId::from_u128(net.ids[want]);
                assert_eq!(
                    signer, want_id,
                    "RouteQuery {key:032x} from node {from} answered by {signer:?}, \
                     responsible is node {want}"
                );
                let ans = body
                    .chord_route_query_ans(&opts)
                    .expect("not a RouteQueryAns")
                    .expect("malformed ChordRouteQueryAns");
                assert_eq!(ans.next_peer, want_id, "responsible peer's next_peer");
                let (req_hops, ans_hops) = net.sim.unwatch(tx).unwrap();
                if req_hops != ans_hops {
                    out.asymmetric += 1;
                }
                out.count += 1;
                out.hops += req_hops as u64;
                out.max_hops = out.max_hops.max(req_hops);
                out.trace.push(req_hops as u8);
            }
        }
    }
    out
}
