//! A deterministic, topology-level simulator for [`Chord`]: N plug-ins on a virtual
//! clock, with the harness playing the node core.
//!
//! - Time is `base + offset`; nothing reads the wall clock after `base`.
//! - Every random choice (message delays, loss, failure-detection delays, node choices of
//!   the tests) comes from one seeded xorshift: the same seed gives the same run.
//! - Attach and Ping are routed hop by hop with each node's `next_hop` (starting at
//!   `via` when given) until a node answers `Local`; a Node-ID destination is only
//!   delivered to that node (or forwarded to it by a peer linked to it, §6.1.1). Then, as
//!   in the core, the responder opens the link (both ends get `LinkUp`; with send_update
//!   the responder gets `UpdateRequested`) while its AttachAns travels back along the
//!   request's path: the sender's `AttachAnswered` often comes after the Update.
//! - Update, Join, Leave and RouteQuery travel over existing links after a delay.
//! - A dead node's links turn into `LinkDown` at each peer after a failure-detection
//!   delay; a released or gracefully closed link after a short close delay.
//! - Protocol invariants are counted as violations: an Update sent by a node that has not
//!   joined (§10.5), a `next_hop` that names an unconnected peer, an Update refused.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_proto::rand::Prng;
use reload_proto::topology::chord::Chord;
use reload_proto::topology::chord::ChordSettings;
use reload_proto::topology::{NextHop, StartMode, Topology, TopologyAction, TopologyInput};
use reload_wire::{Destination, ErrorCode, NodeId, ResourceId};

/// The single source of randomness of a simulation: the core's seeded generator, with the
/// draws the harness needs.
#[derive(Clone, Debug)]
pub struct XorShift(Prng);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(Prng::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn next_u128(&mut self) -> u128 {
        self.0.next_u128()
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// True with probability `permille / 1000`.
    pub fn chance(&mut self, permille: u32) -> bool {
        permille > 0 && self.below(1000) < permille as u64
    }

    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo).as_micros() as u64;
        lo + Duration::from_micros(self.below(span + 1))
    }

    /// A random valid 128-bit Node-ID (not zero, not the wildcard).
    pub fn node_id(&mut self) -> u128 {
        loop {
            let v = self.next_u128();
            if v != 0 && v != u128::MAX {
                return v;
            }
        }
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Network and plug-in parameters of a simulation.
#[derive(Clone, Debug)]
pub struct Params {
    pub neighbors: usize,
    pub max_fingers: usize,
    pub update_interval: Duration,
    pub ping_interval: Duration,
    pub reactive: bool,
    pub request_timeout: Duration,
    pub delay: (Duration, Duration),
    pub loss_permille: u32,
    /// Time for a peer to notice a dead link (keepalive / request failures).
    pub detect: (Duration, Duration),
    /// Time for a closed link to be reported at the other end.
    pub close: Duration,
    /// Hard cap on events processed (a run that needs more is a failure).
    pub max_events: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            neighbors: 4,
            max_fingers: 24,
            update_interval: Duration::from_secs(60),
            ping_interval: Duration::from_secs(120),
            reactive: true,
            request_timeout: Duration::from_secs(3),
            delay: (Duration::from_millis(5), Duration::from_millis(40)),
            loss_permille: 0,
            detect: (Duration::from_secs(2), Duration::from_secs(6)),
            close: Duration::from_millis(20),
            max_events: 20_000_000,
        }
    }
}

impl Params {
    pub fn settings(&self) -> ChordSettings {
        ChordSettings {
            node_id_len: 16,
            update_interval: self.update_interval,
            ping_interval: self.ping_interval,
            reactive: self.reactive,
            neighbor_list_size: self.neighbors,
            max_fingers: self.max_fingers,
            request_timeout: self.request_timeout,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    First,
    Peer,
    Client,
}

#[derive(Clone, Debug)]
pub struct SimNode {
    pub id: NodeId,
    pub chord: Chord,
    pub role: Role,
    pub alive: bool,
    pub started: bool,
    /// Left gracefully (no longer expected in the ring).
    pub left: bool,
    pub joined_at: Option<Duration>,
    pub isolated: u32,
    pub bootstrap: Vec<usize>,
    timer: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RouteKind {
    Attach { send_update: bool },
    Ping,
}

#[derive(Clone, Debug)]
struct Routed {
    origin: usize,
    target: Destination,
    kind: RouteKind,
    hops: u32,
    sent: Duration,
}

#[derive(Clone, Debug)]
enum Msg {
    Update(Bytes),
    Join,
    JoinAns(Result<Bytes, ErrorCode>),
    Leave(Bytes),
    RouteQuery {
        destination: Destination,
        send_update: bool,
    },
    RouteQueryAns(Result<Bytes, ErrorCode>),
}

#[derive(Clone, Debug)]
enum Ev {
    Timer(usize),
    Start(usize, StartMode),
    Hop {
        at: usize,
        r: Routed,
    },
    /// The responder of an Attach opens the link to the requester (as the core does).
    Connect {
        origin: usize,
        responder: usize,
        send_update: bool,
    },
    /// The AttachAns reaches the requester, back along the request's path.
    AttachAns {
        origin: usize,
        responder: usize,
        target: Destination,
    },
    AttachFail {
        origin: usize,
        target: Destination,
    },
    PingDone {
        origin: usize,
        target: Destination,
        responder: Option<usize>,
    },
    JoinTimeout {
        origin: usize,
        to: usize,
    },
    Msg {
        from: usize,
        to: usize,
        link_gen: u64,
        msg: Msg,
    },
    LinkDown {
        at: usize,
        peer: usize,
        link_gen: u64,
    },
    Close(usize),
    /// The core connects again to a node's bootstrap peers (it does so while isolated).
    Reconnect(usize),
}

/// Counters of the run; `violations` must stay zero.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    pub attaches: u64,
    pub attach_failures: u64,
    pub updates: u64,
    pub update_errors: u64,
    pub joins: u64,
    pub leaves: u64,
    pub pings: u64,
    pub route_queries: u64,
    pub releases: u64,
    pub lost: u64,
    pub routing_drops: u64,
    /// Why routed requests for live Node-IDs failed (diagnostics).
    pub live_target_failures: BTreeMap<&'static str, u64>,
    pub violations: Vec<String>,
}

const TTL: u32 = 64;

#[derive(Clone, Debug)]
pub struct Sim {
    pub base: Instant,
    pub now: Duration,
    pub rng: XorShift,
    pub p: Params,
    pub nodes: Vec<SimNode>,
    pub index: BTreeMap<NodeId, usize>,
    /// `links[a][b]` = generation of the link a–b, as seen from a.
    links: Vec<BTreeMap<usize, u64>>,
    next_gen: u64,
    queue: BTreeMap<(Duration, u64), Ev>,
    seq: u64,
    /// Network partition: the side of each node; traffic between sides is dropped.
    side: Option<Vec<u8>>,
    /// Diagnostics: print every input to and action of these nodes.
    pub trace: BTreeSet<usize>,
    pub stats: Stats,
}

/// The first 6 hex digits of a Node-ID (traces).
pub fn short(n: &NodeId) -> String {
    n.to_hex()[..6].to_string()
}

fn show_dest(d: &Destination) -> String {
    match d {
        Destination::Node(n) => format!("node {}", short(n)),
        Destination::Resource(r) => {
            format!("res {}", &reload_wire::codec::to_hex(r.as_bytes())[..6])
        }
        d => format!("{d:?}"),
    }
}

fn show_update(body: &Bytes) -> String {
    use reload_wire::Wire;
    use reload_wire::chord::{ChordUpdate, ChordUpdateBody};
    let l = |v: &[NodeId]| v.iter().map(short).collect::<Vec<_>>().join(",");
    match ChordUpdate::decode(body, &reload_wire::DecodeOptions::default()).map(|u| u.body) {
        Ok(ChordUpdateBody::PeerReady) => "peer_ready".into(),
        Ok(ChordUpdateBody::Neighbors {
            predecessors,
            successors,
        }) => format!("neighbors p=[{}] s=[{}]", l(&predecessors), l(&successors)),
        Ok(ChordUpdateBody::Full {
            predecessors,
            successors,
            ..
        }) => format!("full p=[{}] s=[{}]", l(&predecessors), l(&successors)),
        other => format!("{other:?}"),
    }
}

fn show_input(i: &TopologyInput) -> String {
    match i {
        TopologyInput::Update { from, body } => {
            format!("Update from {}: {}", short(from), show_update(body))
        }
        TopologyInput::AttachAnswered { target, peer } => {
            format!("AttachAnswered {} by {}", show_dest(target), short(peer))
        }
        TopologyInput::AttachFailed { target, .. } => format!("AttachFailed {}", show_dest(target)),
        TopologyInput::LinkUp { peer } => format!("LinkUp {}", short(peer)),
        TopologyInput::LinkDown { peer } => format!("LinkDown {}", short(peer)),
        i => format!("{i:?}"),
    }
}

fn show_action(a: &TopologyAction) -> String {
    match a {
        TopologyAction::SendUpdate { to, body } => {
            format!("Update to {}: {}", short(to), show_update(body))
        }
        TopologyAction::Attach {
            target,
            via,
            send_update,
        } => {
            format!(
                "Attach {} via {:?} su={send_update}",
                show_dest(target),
                via.as_ref().map(short)
            )
        }
        TopologyAction::ReleaseLink { peer } => format!("ReleaseLink {}", short(peer)),
        a => format!("{a:?}"),
    }
}

pub fn id(v: u128) -> NodeId {
    NodeId::from_u128(v)
}

pub fn at(n: &NodeId) -> u128 {
    n.as_u128().expect("16-byte Node-ID")
}

pub fn resource(v: u128) -> ResourceId {
    ResourceId::new(Bytes::copy_from_slice(&v.to_be_bytes()))
}

impl Sim {
    pub fn new(seed: u64, p: Params) -> Sim {
        Sim {
            base: Instant::now(),
            now: Duration::ZERO,
            rng: XorShift::new(seed),
            p,
            nodes: Vec::new(),
            index: BTreeMap::new(),
            links: Vec::new(),
            next_gen: 1,
            queue: BTreeMap::new(),
            seq: 0,
            side: None,
            trace: BTreeSet::new(),
            stats: Stats::default(),
        }
    }

    fn t(&self) -> Instant {
        self.base + self.now
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), ev);
    }

    fn delay(&mut self) -> Duration {
        let (lo, hi) = self.p.delay;
        self.rng.between(lo, hi)
    }

    fn lost(&mut self) -> bool {
        let l = self.rng.chance(self.p.loss_permille);
        if l {
            self.stats.lost += 1;
        }
        l
    }

    /// Adds a node (not started).
    pub fn add(&mut self, v: u128, role: Role) -> usize {
        let nid = id(v);
        assert!(!self.index.contains_key(&nid), "duplicate Node-ID");
        let i = self.nodes.len();
        self.nodes.push(SimNode {
            id: nid,
            chord: Chord::new(nid, self.p.settings()),
            role,
            alive: true,
            started: false,
            left: false,
            joined_at: None,
            isolated: 0,
            bootstrap: Vec::new(),
            timer: None,
        });
        self.links.push(BTreeMap::new());
        self.index.insert(nid, i);
        i
    }

    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.links[a].contains_key(&b)
    }

    fn make_link(&mut self, a: usize, b: usize) -> u64 {
        let g = self.next_gen;
        self.next_gen += 1;
        self.links[a].insert(b, g);
        self.links[b].insert(a, g);
        g
    }

    /// Starts the first node of a ring at `delay` from now.
    pub fn start_first(&mut self, i: usize, after: Duration) {
        self.push(self.now + after, Ev::Start(i, StartMode::FirstNode));
    }

    /// Starts a peer joining through `bootstrap` (the core holds links to them first).
    pub fn start_join(&mut self, i: usize, bootstrap: &[usize], after: Duration) {
        self.nodes[i].bootstrap = bootstrap.to_vec();
        let b = bootstrap.iter().map(|&k| self.nodes[k].id).collect();
        self.push(
            self.now + after,
            Ev::Start(i, StartMode::Join { bootstrap: b }),
        );
    }

    pub fn start_client(&mut self, i: usize, bootstrap: &[usize], after: Duration) {
        self.nodes[i].bootstrap = bootstrap.to_vec();
        let b = bootstrap.iter().map(|&k| self.nodes[k].id).collect();
        self.push(
            self.now + after,
            Ev::Start(i, StartMode::Client { bootstrap: b }),
        );
    }

    /// Kills node `i` now: its peers see `LinkDown` after a detection delay.
    pub fn kill(&mut self, i: usize) {
        if !self.nodes[i].alive {
            return;
        }
        self.nodes[i].alive = false;
        let peers: Vec<(usize, u64)> = self.links[i].iter().map(|(b, g)| (*b, *g)).collect();
        self.links[i].clear();
        for (b, g) in peers {
            let (lo, hi) = self.p.detect;
            let d = self.rng.between(lo, hi);
            self.push(
                self.now + d,
                Ev::LinkDown {
                    at: b,
                    peer: i,
                    link_gen: g,
                },
            );
        }
    }

    /// Node `i` leaves gracefully (§10.9): its Leaves go out, then it closes its links.
    pub fn leave(&mut self, i: usize) {
        let t = self.t();
        self.nodes[i].chord.leave(t);
        self.nodes[i].left = true;
        self.drain(i);
        let close = self.now + self.p.delay.1 * 2;
        self.push(close, Ev::Close(i));
    }

    /// Cuts the network in two: `b_side` on one side, everyone else on the other.
    /// Traffic across is dropped at once; links across go down after a detection delay.
    pub fn partition(&mut self, b_side: &[usize]) {
        let mut side = vec![0u8; self.nodes.len()];
        for &i in b_side {
            side[i] = 1;
        }
        for a in 0..self.nodes.len() {
            let across: Vec<(usize, u64)> = self.links[a]
                .iter()
                .filter(|(b, _)| side[**b] != side[a])
                .map(|(b, g)| (*b, *g))
                .collect();
            for (b, g) in across {
                let (lo, hi) = self.p.detect;
                let d = self.rng.between(lo, hi);
                self.push(
                    self.now + d,
                    Ev::LinkDown {
                        at: a,
                        peer: b,
                        link_gen: g,
                    },
                );
            }
        }
        self.side = Some(side);
    }

    /// Heals the partition; the cores reconnect to their bootstrap peers (the discovery
    /// process of §10.7.4.4).
    pub fn heal(&mut self) {
        self.side = None;
        for i in 0..self.nodes.len() {
            for b in self.nodes[i].bootstrap.clone() {
                if self.nodes[i].alive
                    && self.nodes[b].alive
                    && self.nodes[i].started
                    && !self.linked(i, b)
                {
                    self.link_up_both(i, b);
                }
            }
        }
    }

    /// A new link between `i` and `b`, reported up to both plug-ins.
    fn link_up_both(&mut self, i: usize, b: usize) {
        self.make_link(i, b);
        let _ = self.input(
            b,
            TopologyInput::LinkUp {
                peer: self.nodes[i].id,
            },
        );
        let _ = self.input(
            i,
            TopologyInput::LinkUp {
                peer: self.nodes[b].id,
            },
        );
    }

    fn blocked(&self, a: usize, b: usize) -> bool {
        self.side.as_ref().is_some_and(|s| s[a] != s[b])
    }

    fn connected_fn(&self, a: usize) -> impl Fn(&NodeId) -> bool + '_ {
        move |n: &NodeId| {
            self.index
                .get(n)
                .is_some_and(|b| self.links[a].contains_key(b))
        }
    }

    fn input(&mut self, i: usize, inp: TopologyInput) -> Result<(), ErrorCode> {
        if !self.nodes[i].alive || !self.nodes[i].started {
            return Ok(());
        }
        let t = self.t();
        if self.trace.contains(&i) {
            println!(
                "{:?} {} <- {}",
                self.now,
                short(&self.nodes[i].id),
                show_input(&inp)
            );
        }
        let r = self.nodes[i].chord.handle(t, inp);
        self.drain(i);
        r
    }

    fn reschedule(&mut self, i: usize) {
        if !self.nodes[i].alive {
            return;
        }
        let Some(t) = self.nodes[i].chord.poll_timeout() else {
            self.nodes[i].timer = None;
            return;
        };
        let off = t.saturating_duration_since(self.base).max(self.now);
        if self.nodes[i]
            .timer
            .is_none_or(|cur| off < cur || cur < self.now)
        {
            self.nodes[i].timer = Some(off);
            self.push(off, Ev::Timer(i));
        }
    }

    /// Executes the actions of node `a`, as the core would.
    fn drain(&mut self, a: usize) {
        for _ in 0..100_000 {
            let Some(act) = self.nodes[a].chord.poll_action() else {
                break;
            };
            if !self.nodes[a].alive {
                continue;
            }
            self.execute(a, act);
        }
        self.reschedule(a);
    }

    fn execute(&mut self, a: usize, act: TopologyAction) {
        if self.trace.contains(&a) {
            println!(
                "{:?} {} -> {}",
                self.now,
                short(&self.nodes[a].id),
                show_action(&act)
            );
        }
        match act {
            TopologyAction::Attach {
                target,
                via,
                send_update,
            } => {
                self.stats.attaches += 1;
                self.route_start(a, target, via, RouteKind::Attach { send_update });
            }
            TopologyAction::Ping { target, via } => {
                self.stats.pings += 1;
                self.route_start(a, target, via, RouteKind::Ping);
            }
            TopologyAction::SendUpdate { to, body } => {
                self.stats.updates += 1;
                if !self.nodes[a].chord.is_joined() {
                    let v = format!(
                        "{:?} sent an Update before it joined (§10.5)",
                        self.nodes[a].id
                    );
                    self.stats.violations.push(v);
                }
                self.send_msg(a, to, Msg::Update(body));
            }
            TopologyAction::SendJoin { to, .. } => {
                self.stats.joins += 1;
                let toi = self.index.get(&to).copied();
                if !self.send_msg(a, to, Msg::Join)
                    && let Some(toi) = toi
                {
                    let at = self.now + self.p.request_timeout;
                    self.push(at, Ev::JoinTimeout { origin: a, to: toi });
                }
            }
            TopologyAction::SendLeave {
                to,
                overlay_specific_data,
            } => {
                self.stats.leaves += 1;
                self.send_msg(a, to, Msg::Leave(overlay_specific_data));
            }
            TopologyAction::RouteQuery {
                to,
                destination,
                send_update,
            } => {
                self.stats.route_queries += 1;
                self.send_msg(
                    a,
                    to,
                    Msg::RouteQuery {
                        destination,
                        send_update,
                    },
                );
            }
            TopologyAction::ReleaseLink { peer } => {
                self.stats.releases += 1;
                if let Some(&b) = self.index.get(&peer)
                    && let Some(g) = self.links[a].remove(&b)
                {
                    // The core closes the link at once and tells its own plug-in nothing.
                    self.links[b].remove(&a);
                    let at = self.now + self.p.close;
                    self.push(
                        at,
                        Ev::LinkDown {
                            at: b,
                            peer: a,
                            link_gen: g,
                        },
                    );
                }
            }
            TopologyAction::Joined => {
                if self.nodes[a].joined_at.is_none() {
                    self.nodes[a].joined_at = Some(self.now);
                }
            }
            TopologyAction::NeighborsChanged => {}
            TopologyAction::Isolated { .. } => {
                self.nodes[a].isolated += 1;
                // As the core does: connect to the bootstrap peers again, a moment later.
                let at = self.now + Duration::from_secs(1);
                self.push(at, Ev::Reconnect(a));
            }
        }
    }

    /// Sends `msg` over the link a→to; false if there is no link.
    fn send_msg(&mut self, a: usize, to: NodeId, msg: Msg) -> bool {
        let Some(&b) = self.index.get(&to) else {
            return false;
        };
        let Some(&g) = self.links[a].get(&b) else {
            return false;
        };
        if self.lost() || self.blocked(a, b) {
            if let Msg::Join = msg {
                let at = self.now + self.p.request_timeout;
                self.push(at, Ev::JoinTimeout { origin: a, to: b });
            }
            return true;
        }
        let d = self.delay();
        self.push(
            self.now + d,
            Ev::Msg {
                from: a,
                to: b,
                link_gen: g,
                msg,
            },
        );
        true
    }

    fn fail_live(&mut self, r: &Routed, why: &'static str) {
        if let Destination::Node(n) = &r.target
            && self.index.get(n).is_some_and(|&t| self.nodes[t].alive)
        {
            *self.stats.live_target_failures.entry(why).or_default() += 1;
        }
        self.fail_routed(r);
    }

    fn fail_routed(&mut self, r: &Routed) {
        let at = (r.sent + self.p.request_timeout).max(self.now);
        match r.kind {
            RouteKind::Attach { .. } => self.push(
                at,
                Ev::AttachFail {
                    origin: r.origin,
                    target: r.target.clone(),
                },
            ),
            RouteKind::Ping => self.push(
                at,
                Ev::PingDone {
                    origin: r.origin,
                    target: r.target.clone(),
                    responder: None,
                },
            ),
        }
    }

    fn dest_bytes(d: &Destination) -> Vec<u8> {
        match d {
            Destination::Node(n) => n.as_bytes().to_vec(),
            Destination::Resource(r) => r.as_bytes().to_vec(),
            _ => Vec::new(),
        }
    }

    fn route_start(&mut self, a: usize, target: Destination, via: Option<NodeId>, kind: RouteKind) {
        let r = Routed {
            origin: a,
            target,
            kind,
            hops: 0,
            sent: self.now,
        };
        let first = match via {
            Some(v) => match self.index.get(&v) {
                Some(&vi) if self.linked(a, vi) => Some(vi),
                _ => None,
            },
            None => {
                if let Destination::Node(n) = &r.target
                    && let Some(&ti) = self.index.get(n)
                    && self.linked(a, ti)
                {
                    Some(ti)
                } else {
                    let bytes = Self::dest_bytes(&r.target);
                    let nh = self.nodes[a].chord.next_hop(&bytes, &self.connected_fn(a));
                    match nh {
                        NextHop::Peer(p) => {
                            let pi = self.index.get(&p).copied();
                            match pi {
                                Some(pi) if self.linked(a, pi) => Some(pi),
                                _ => {
                                    let v = format!(
                                        "{:?}: next_hop names unconnected {:?}",
                                        self.nodes[a].id, p
                                    );
                                    self.stats.violations.push(v);
                                    None
                                }
                            }
                        }
                        NextHop::Local | NextHop::None => None,
                    }
                }
            }
        };
        match first {
            Some(f) => {
                if self.lost() || self.blocked(a, f) {
                    self.fail_live(&r, "lost on the first hop");
                } else {
                    let d = self.delay();
                    self.push(self.now + d, Ev::Hop { at: f, r });
                }
            }
            None => {
                self.stats.routing_drops += 1;
                if let Destination::Node(n) = &r.target
                    && self.index.get(n).is_some_and(|&t| self.nodes[t].alive)
                {
                    *self
                        .stats
                        .live_target_failures
                        .entry("no first hop")
                        .or_default() += 1;
                }
                let at = self.now + Duration::from_millis(1);
                match r.kind {
                    RouteKind::Attach { .. } => self.push(
                        at,
                        Ev::AttachFail {
                            origin: a,
                            target: r.target,
                        },
                    ),
                    RouteKind::Ping => self.push(
                        at,
                        Ev::PingDone {
                            origin: a,
                            target: r.target,
                            responder: None,
                        },
                    ),
                }
            }
        }
    }

    fn on_hop(&mut self, cur: usize, mut r: Routed) {
        if !self.nodes[cur].alive || !self.nodes[cur].started {
            self.fail_live(&r, "hop to a dead node");
            return;
        }
        let node_target = match &r.target {
            Destination::Node(n) => self.index.get(n).copied(),
            _ => None,
        };
        let deliver = match &r.target {
            Destination::Node(n) if *n == self.nodes[cur].id => true,
            Destination::Node(_) => false,
            _ => {
                // A Resource-ID: delivered where next_hop says Local.
                let bytes = Self::dest_bytes(&r.target);
                matches!(
                    self.nodes[cur]
                        .chord
                        .next_hop(&bytes, &self.connected_fn(cur)),
                    NextHop::Local
                )
            }
        };
        if deliver {
            self.answer_routed(cur, r);
            return;
        }
        if r.hops >= TTL {
            self.stats.routing_drops += 1;
            self.fail_live(&r, "TTL");
            return;
        }
        let next = if let Some(t) = node_target.filter(|&t| self.linked(cur, t)) {
            // §6.1.2: in the connection table — forward directly.
            Some(t)
        } else {
            let bytes = Self::dest_bytes(&r.target);
            let nh = self.nodes[cur]
                .chord
                .next_hop(&bytes, &self.connected_fn(cur));
            match nh {
                NextHop::Peer(p) => match self.index.get(&p).copied() {
                    Some(pi) if self.linked(cur, pi) => Some(pi),
                    _ => {
                        let v = format!(
                            "{:?}: next_hop names unconnected {:?}",
                            self.nodes[cur].id, p
                        );
                        self.stats.violations.push(v);
                        None
                    }
                },
                // Local for a Node-ID that is not ours and not linked: dropped (§6.1.1).
                NextHop::Local | NextHop::None => None,
            }
        };
        match next {
            Some(n) => {
                r.hops += 1;
                if self.lost() || self.blocked(cur, n) {
                    self.fail_live(&r, "lost");
                } else {
                    let d = self.delay();
                    self.push(self.now + d, Ev::Hop { at: n, r });
                }
            }
            None => {
                self.stats.routing_drops += 1;
                self.fail_live(&r, "dropped (Local for another Node-ID, or no route)");
            }
        }
    }

    /// The request reached its responder. As in the core: the responder of an Attach
    /// answers along the reversed path (one delay per hop) and, in parallel, opens the
    /// link to the requester (one delay), then sends the requested Update over it — so
    /// the Update often arrives before the AttachAns. Already linked: the Update goes
    /// out at once.
    fn answer_routed(&mut self, responder: usize, r: Routed) {
        if responder == r.origin || self.blocked(responder, r.origin) {
            self.fail_routed(&r);
            return;
        }
        let mut back = Duration::ZERO;
        for _ in 0..=r.hops {
            back += self.delay();
        }
        if self.lost() {
            self.fail_routed(&r);
            return;
        }
        match r.kind {
            RouteKind::Attach { send_update } => {
                if self.linked(responder, r.origin) {
                    if send_update {
                        let from = self.nodes[r.origin].id;
                        let _ = self.input(responder, TopologyInput::UpdateRequested { from });
                    }
                } else {
                    let d = self.delay();
                    self.push(
                        self.now + d,
                        Ev::Connect {
                            origin: r.origin,
                            responder,
                            send_update,
                        },
                    );
                }
                self.push(
                    self.now + back,
                    Ev::AttachAns {
                        origin: r.origin,
                        responder,
                        target: r.target,
                    },
                );
            }
            RouteKind::Ping => self.push(
                self.now + back,
                Ev::PingDone {
                    origin: r.origin,
                    target: r.target,
                    responder: Some(responder),
                },
            ),
        }
    }

    fn step(&mut self, ev: Ev) {
        self.stats.events += 1;
        match ev {
            Ev::Timer(i) => {
                if self.nodes[i].timer == Some(self.now) {
                    self.nodes[i].timer = None;
                }
                if self.nodes[i].alive && self.nodes[i].started {
                    let t = self.t();
                    let due = self.nodes[i].chord.poll_timeout().is_some_and(|d| d <= t);
                    self.nodes[i].chord.handle_timeout(t);
                    if due && self.nodes[i].chord.poll_timeout().is_some_and(|d| d <= t) {
                        let v = format!("{:?}: handle_timeout left a timer due", self.nodes[i].id);
                        self.stats.violations.push(v);
                        self.nodes[i].timer = Some(self.now + Duration::from_millis(1));
                        self.push(self.now + Duration::from_millis(1), Ev::Timer(i));
                    }
                    self.drain(i);
                }
            }
            Ev::Start(i, mode) => {
                if !self.nodes[i].alive {
                    return;
                }
                // The core holds links to the bootstrap peers before the plug-in starts.
                if let StartMode::Join { bootstrap } | StartMode::Client { bootstrap } = &mode {
                    for b in bootstrap.clone() {
                        let bi = self.index[&b];
                        if self.nodes[bi].alive && !self.linked(i, bi) {
                            self.make_link(i, bi);
                            let _ = self.input(
                                bi,
                                TopologyInput::LinkUp {
                                    peer: self.nodes[i].id,
                                },
                            );
                        }
                    }
                }
                self.nodes[i].started = true;
                let t = self.t();
                self.nodes[i].chord.start(t, mode);
                self.drain(i);
            }
            Ev::Hop { at, r } => self.on_hop(at, r),
            Ev::Connect {
                origin,
                responder,
                send_update,
            } => {
                let up = self.nodes[origin].alive
                    && self.nodes[responder].alive
                    && !self.blocked(origin, responder);
                if !up || self.linked(origin, responder) {
                    return;
                }
                self.make_link(origin, responder);
                let (oid, rid) = (self.nodes[origin].id, self.nodes[responder].id);
                let _ = self.input(responder, TopologyInput::LinkUp { peer: oid });
                let _ = self.input(origin, TopologyInput::LinkUp { peer: rid });
                if send_update {
                    let _ = self.input(responder, TopologyInput::UpdateRequested { from: oid });
                }
            }
            Ev::AttachAns {
                origin,
                responder,
                target,
            } => {
                if !self.nodes[responder].alive && !self.linked(origin, responder) {
                    // Gone before the link came up: the core would report a failure.
                    self.stats.attach_failures += 1;
                    let _ = self.input(
                        origin,
                        TopologyInput::AttachFailed {
                            target,
                            error: None,
                        },
                    );
                    return;
                }
                let peer = self.nodes[responder].id;
                let _ = self.input(origin, TopologyInput::AttachAnswered { target, peer });
            }
            Ev::AttachFail { origin, target } => {
                self.stats.attach_failures += 1;
                let _ = self.input(
                    origin,
                    TopologyInput::AttachFailed {
                        target,
                        error: Some(ErrorCode::REQUEST_TIMEOUT),
                    },
                );
            }
            Ev::PingDone {
                origin,
                target,
                responder,
            } => {
                let responder = responder
                    .filter(|&r| self.nodes[r].alive)
                    .map(|r| self.nodes[r].id);
                let _ = self.input(origin, TopologyInput::PingAnswered { target, responder });
            }
            Ev::JoinTimeout { origin, to } => {
                let from = self.nodes[to].id;
                let _ = self.input(
                    origin,
                    TopologyInput::JoinAnswered {
                        from,
                        result: Err(ErrorCode::REQUEST_TIMEOUT),
                    },
                );
            }
            Ev::Msg {
                from,
                to,
                link_gen,
                msg,
            } => self.deliver(from, to, link_gen, msg),
            Ev::LinkDown { at, peer, link_gen } => {
                if self.links[at].get(&peer) == Some(&link_gen) {
                    self.links[at].remove(&peer);
                }
                if self.links[at].contains_key(&peer) {
                    return; // a newer link replaced it
                }
                let pid = self.nodes[peer].id;
                let _ = self.input(at, TopologyInput::LinkDown { peer: pid });
            }
            Ev::Reconnect(i) => {
                if !self.nodes[i].alive {
                    return;
                }
                for b in self.nodes[i].bootstrap.clone() {
                    if self.nodes[b].alive && !self.linked(i, b) && !self.blocked(i, b) {
                        self.link_up_both(i, b);
                        self.drain(b);
                    }
                }
                self.drain(i);
            }
            Ev::Close(i) => {
                self.nodes[i].alive = false;
                let peers: Vec<(usize, u64)> =
                    self.links[i].iter().map(|(b, g)| (*b, *g)).collect();
                self.links[i].clear();
                for (b, g) in peers {
                    let at = self.now + self.p.close;
                    self.push(
                        at,
                        Ev::LinkDown {
                            at: b,
                            peer: i,
                            link_gen: g,
                        },
                    );
                }
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, link_gen: u64, msg: Msg) {
        let link_ok = self.links[to].get(&from) == Some(&link_gen) && self.nodes[to].alive;
        if !link_ok {
            if let Msg::Join = msg {
                let at = self.now + self.p.request_timeout;
                self.push(at, Ev::JoinTimeout { origin: from, to });
            }
            return;
        }
        let from_id = self.nodes[from].id;
        match msg {
            Msg::Update(body) => {
                if let Err(e) = self.input(
                    to,
                    TopologyInput::Update {
                        from: from_id,
                        body,
                    },
                ) {
                    self.stats.update_errors += 1;
                    let v = format!(
                        "{:?} refused an Update from {:?}: {:?}",
                        self.nodes[to].id, from_id, e
                    );
                    self.stats.violations.push(v);
                }
            }
            Msg::Join => {
                let t = self.t();
                let res = self.nodes[to].chord.answer_join(t, from_id);
                self.drain(to);
                self.send_back(to, from, Msg::JoinAns(res));
            }
            Msg::JoinAns(result) => {
                let _ = self.input(
                    to,
                    TopologyInput::JoinAnswered {
                        from: from_id,
                        result,
                    },
                );
            }
            Msg::Leave(data) => {
                let _ = self.input(
                    to,
                    TopologyInput::Leave {
                        from: from_id,
                        overlay_specific_data: data,
                    },
                );
            }
            Msg::RouteQuery {
                destination,
                send_update,
            } => {
                let body = {
                    let c = self.connected_fn(to);
                    self.nodes[to].chord.route_query_answer(&destination, &c)
                };
                if send_update && body.is_ok() {
                    let _ = self.input(to, TopologyInput::UpdateRequested { from: from_id });
                }
                self.send_back(to, from, Msg::RouteQueryAns(body));
            }
            Msg::RouteQueryAns(body) => {
                let _ = self.input(
                    to,
                    TopologyInput::RouteQueryAnswered {
                        asked: from_id,
                        body,
                    },
                );
            }
        }
    }

    fn send_back(&mut self, a: usize, b: usize, msg: Msg) {
        let Some(&g) = self.links[a].get(&b) else {
            return;
        };
        if self.lost() || self.blocked(a, b) {
            if let Msg::JoinAns(_) = msg {
                let at = self.now + self.p.request_timeout;
                self.push(at, Ev::JoinTimeout { origin: b, to: a });
            }
            return;
        }
        let d = self.delay();
        self.push(
            self.now + d,
            Ev::Msg {
                from: a,
                to: b,
                link_gen: g,
                msg,
            },
        );
    }

    /// Runs events until `until` (absolute offset).
    pub fn run_until(&mut self, until: Duration) {
        while let Some(entry) = self.queue.first_entry() {
            let (t, _) = *entry.key();
            if t > until {
                break;
            }
            let ev = entry.remove();
            self.now = t;
            self.step(ev);
            assert!(
                self.stats.events < self.p.max_events,
                "event budget exhausted at {:?}",
                self.now
            );
        }
        self.now = until.max(self.now);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until `ok` holds, checking every `step`, at most `limit`; the time it took.
    pub fn run_until_ok(
        &mut self,
        step: Duration,
        limit: Duration,
        ok: impl Fn(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if ok(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(step);
        }
    }

    // ----- the truth and the checks -----

    /// Alive peers that should be in the ring, sorted by ID.
    pub fn members(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.alive && n.started && !n.left && n.role != Role::Client
            })
            .collect();
        v.sort_by_key(|&i| at(&self.nodes[i].id));
        v
    }

    /// The member responsible for `k` (the first member at or after k).
    pub fn responsible(&self, members: &[usize], k: u128) -> usize {
        let pos = members.partition_point(|&i| at(&self.nodes[i].id) < k);
        members[pos % members.len()]
    }

    /// Why the ring is not exactly the sorted members (None when it is).
    pub fn ring_error(&self) -> Option<String> {
        self.ring_error_of(&self.members())
    }

    /// Why the nodes `m` (sorted by ID) do not form exactly their own ring.
    pub fn ring_error_of(&self, m: &[usize]) -> Option<String> {
        let n = m.len();
        if n == 0 {
            return Some("no members".into());
        }
        let r = self.p.neighbors.max(3);
        let len = r.min(n - 1);
        for (k, &i) in m.iter().enumerate() {
            let node = &self.nodes[i];
            if !node.chord.is_joined() {
                return Some(format!("{:?} not joined", node.id));
            }
            let want_s: Vec<NodeId> = (1..=len).map(|d| self.nodes[m[(k + d) % n]].id).collect();
            let want_p: Vec<NodeId> = (1..=len)
                .map(|d| self.nodes[m[(k + n - d) % n]].id)
                .collect();
            let s = node.chord.successors();
            let p = node.chord.predecessors();
            if s != want_s {
                return Some(format!(
                    "{:?}: successors {:?}, want {:?}",
                    node.id, s, want_s
                ));
            }
            if p != want_p {
                return Some(format!(
                    "{:?}: predecessors {:?}, want {:?}",
                    node.id, p, want_p
                ));
            }
        }
        None
    }

    pub fn ring_ok(&self) -> bool {
        self.ring_error().is_none()
    }

    /// Routes `key` from `src` as the cores would; the node that takes it locally and
    /// the hop count, or why it failed.
    pub fn route(&self, src: usize, key: &[u8]) -> Result<(usize, u32), String> {
        let mut cur = src;
        for hops in 0..=TTL {
            let nh = self.nodes[cur].chord.next_hop(key, &self.connected_fn(cur));
            match nh {
                NextHop::Local => return Ok((cur, hops)),
                NextHop::Peer(p) => {
                    let Some(&pi) = self.index.get(&p) else {
                        return Err(format!("unknown next hop {p:?}"));
                    };
                    if !self.linked(cur, pi) {
                        return Err(format!(
                            "{:?} routes to unconnected {:?}",
                            self.nodes[cur].id, p
                        ));
                    }
                    if !self.nodes[pi].alive {
                        return Err(format!("{:?} routes to dead {:?}", self.nodes[cur].id, p));
                    }
                    cur = pi;
                }
                NextHop::None => return Err(format!("{:?} has no route", self.nodes[cur].id)),
            }
        }
        Err("TTL exceeded (loop)".into())
    }

    /// Routes a message for the Node-ID of `target` from `src` as the cores would
    /// (§6.1): straight to it from any node linked to it, else by `next_hop`; a node
    /// that takes it locally without being the target drops it. The hop count.
    pub fn route_node(&self, src: usize, target: usize) -> Result<u32, String> {
        let tid = self.nodes[target].id;
        let mut cur = src;
        for hops in 0..=TTL {
            if cur == target {
                return Ok(hops);
            }
            if self.linked(cur, target) {
                cur = target;
                continue;
            }
            match self.nodes[cur]
                .chord
                .next_hop(tid.as_bytes(), &self.connected_fn(cur))
            {
                NextHop::Peer(p) => {
                    let Some(&pi) = self.index.get(&p).filter(|&&pi| self.linked(cur, pi)) else {
                        return Err(format!(
                            "{:?} routes to unconnected {p:?}",
                            self.nodes[cur].id
                        ));
                    };
                    cur = pi;
                }
                NextHop::Local => {
                    return Err(format!(
                        "{:?} took {tid:?} locally and dropped it",
                        self.nodes[cur].id
                    ));
                }
                NextHop::None => return Err(format!("{:?} has no route", self.nodes[cur].id)),
            }
        }
        Err("TTL exceeded (loop)".into())
    }

    /// Routes `count` random keys from random members: every one must reach the
    /// responsible node. Returns the mean hop count.
    pub fn check_routing(&mut self, count: usize) -> f64 {
        let m = self.members();
        let mut total = 0u64;
        for _ in 0..count {
            let k = self.rng.next_u128();
            let src = m[self.rng.below(m.len() as u64) as usize];
            let want = self.responsible(&m, k);
            match self.route(src, &k.to_be_bytes()) {
                Ok((got, hops)) => {
                    assert_eq!(
                        got, want,
                        "key {k:032x} from {:?} reached {:?}, responsible is {:?}",
                        self.nodes[src].id, self.nodes[got].id, self.nodes[want].id
                    );
                    total += hops as u64;
                }
                Err(e) => panic!("key {k:032x} from {:?}: {e}", self.nodes[src].id),
            }
        }
        total as f64 / count as f64
    }

    /// Routes the keys that sit on the ring's edges: every member ID, ID ± 1.
    pub fn check_edge_keys(&self) {
        self.check_edge_keys_of(&self.members());
    }

    /// The same within the ring of the members `m` (sorted by ID). Keys equal to a
    /// client's Node-ID are skipped: §10.3 sends them to the client from any peer linked
    /// to it.
    pub fn check_edge_keys_of(&self, m: &[usize]) {
        let clients: BTreeSet<u128> = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Client && n.alive)
            .map(|n| at(&n.id))
            .collect();
        for &src in m {
            for &t in m {
                let v = at(&self.nodes[t].id);
                for k in [v.wrapping_sub(1), v, v.wrapping_add(1)] {
                    if clients.contains(&k) {
                        continue;
                    }
                    let want = self.responsible(m, k);
                    let got = self.route(src, &k.to_be_bytes());
                    assert_eq!(
                        got.as_ref().map(|g| g.0),
                        Ok(want),
                        "key {k:032x} from {:?}: {got:?}",
                        self.nodes[src].id
                    );
                }
            }
        }
    }

    pub fn assert_no_violations(&self) {
        assert!(
            self.stats.violations.is_empty(),
            "{} violations, first: {:?}",
            self.stats.violations.len(),
            self.stats.violations.first()
        );
    }

    /// FNV-1a digest of every routing table and of the run's counters.
    pub fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for x in b {
                h ^= *x as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for n in &self.nodes {
            eat(n.id.as_bytes());
            eat(&[n.alive as u8, n.chord.is_joined() as u8]);
            for list in [
                n.chord.successors(),
                n.chord.predecessors(),
                n.chord.routing_table(),
            ] {
                eat(&(list.len() as u32).to_be_bytes());
                for x in list {
                    eat(x.as_bytes());
                }
            }
            for (i, f) in n.chord.fingers() {
                eat(&(i as u32).to_be_bytes());
                eat(f.as_bytes());
            }
            eat(&n
                .joined_at
                .map_or(u128::MAX, |d| d.as_nanos())
                .to_be_bytes());
        }
        let s = &self.stats;
        for v in [s.events, s.attaches, s.updates, s.joins, s.releases, s.lost] {
            eat(&v.to_be_bytes());
        }
        h
    }

    /// Links currently up, counted once per pair.
    pub fn link_count(&self) -> usize {
        self.links.iter().map(|l| l.len()).sum::<usize>() / 2
    }

    pub fn links_of(&self, i: usize) -> BTreeSet<usize> {
        self.links[i].keys().copied().collect()
    }
}

/// Builds a ring: `ids[0]` starts it, each next one joins through a random earlier
/// member, `gap` apart; then runs `settle`.
pub fn build_ring(sim: &mut Sim, ids: &[u128], gap: Duration, settle: Duration) -> Vec<usize> {
    let mut idx = Vec::with_capacity(ids.len());
    for (k, &v) in ids.iter().enumerate() {
        let role = if k == 0 { Role::First } else { Role::Peer };
        let i = sim.add(v, role);
        if k == 0 {
            sim.start_first(i, Duration::ZERO);
        } else {
            let b = idx[sim.rng.below(idx.len() as u64) as usize];
            sim.start_join(i, &[b], Duration::ZERO);
        }
        idx.push(i);
        sim.run_for(gap);
    }
    sim.run_for(settle);
    idx
}
