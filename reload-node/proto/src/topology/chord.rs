//! CHORD-RELOAD (RFC 6940 §10) as a sans-IO [`Topology`] plug-in.
//!
//! The ring is 128-bit (module `ring`); a peer is responsible for `(pred, me]` (§10.1), a lone
//! first node for everything. The routing table is the union of the neighbour table (up
//! to `neighbor_list_size` successors and predecessors) and the finger table (§10.3).
//!
//! **Ring maintenance** follows the corrected Chord of P. Zave ("Reasoning about
//! identifier spaces: how to make Chord correct", IEEE TSE 2017) mapped onto RELOAD's
//! messages (see `spec-notes/chord.md` for the full mapping):
//! - the neighbour table is only ever made of **live peers**: nodes with a link up that
//!   have shown they are in the ring (an Update from them, a Join we admitted, or an
//!   answer to an Attach for a Resource-ID they are responsible for). A Node-ID learnt from
//!   someone's Update is only a *candidate*: we Attach to it (source-routed through the
//!   reporter, §10.6) and it enters the table when it is live and a peer (§10.7.3);
//! - successors are the closest live peers clockwise, predecessors the closest
//!   counter-clockwise. So the first successor only moves closer (a live node between us
//!   and it) or, when it is confirmed dead (link down, Leave), to the next live entry; a
//!   predecessor is replaced only by a live node between it and us, or when it is dead —
//!   Zave's `stabilize` / `rectify` rules;
//! - a joining node starts from its successor's lists (the admitting peer's `full`
//!   Update, Zave's join), and is a member only once its successor admitted it (Join).
//!
//! The plug-in never reads a clock and never uses a thread RNG: time comes with every
//! call, randomness (timer jitter, finger probes) from a PRNG seeded from the Node-ID.
//!
//! Conventions the core must know:
//! - `handle(JoinRequest)` only *checks* that the Join would be admitted; the admission
//!   itself (and its Updates) happens in [`Topology::answer_join`], which the core calls
//!   to build the JoinAns.
//! - An Attach for a Node-ID destination must only be answered by that node (§6.1.1); an
//!   [`TopologyInput::AttachAnswered`] whose `peer` differs counts as a failure.
//!   `AttachAnswered`, `LinkUp` and the responder's send_update Update may come in any
//!   order.
//! - Links to the bootstrap peers are never released: partition detection (§10.7.4.4)
//!   and re-joining go through them.

mod ring;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_wire::chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateBody};
use reload_wire::{DecodeOptions, Destination, ErrorCode, NodeId, ResourceId, Wire};

use super::{
    NextHop, StartMode, StorageRole, Topology, TopologyAction, TopologyContext, TopologyInput,
};
use crate::overlay::Overlay;
use crate::rand::Prng;
use ring::{dist, finger_slot, finger_span, finger_start, in_open, in_open_closed, pos};

/// CHORD-RELOAD's settings: from the overlay configuration (RFC 6940 §10.7.4, §11.1) and
/// this implementation's local choices.
#[derive(Clone, Debug)]
pub struct ChordSettings {
    pub node_id_len: usize,
    /// `chord-update-interval` (§10.7.4.1).
    pub update_interval: Duration,
    /// `chord-ping-interval` (§10.7.4.2).
    pub ping_interval: Duration,
    /// `chord-reactive` (§10.7.4.1).
    pub reactive: bool,
    /// Size of the successor and predecessor lists (at least 3, §10.3).
    pub neighbor_list_size: usize,
    /// Largest finger table (§10.3: SHOULD reach at least 16; up to 128).
    pub max_fingers: usize,
    /// How long an unanswered request of the plug-in is waited for (the overlay's
    /// maximum request lifetime, §3, §6.2.1).
    pub request_timeout: Duration,
}

impl ChordSettings {
    /// The settings an overlay configuration gives, with this implementation's local
    /// defaults: neighbour lists of 5 (RFC 6940 §10.3 asks for at least 3), up to 32
    /// fingers (§10.3: SHOULD reach at least 16).
    pub fn from_overlay(overlay: &Overlay) -> Self {
        let config = overlay.config();
        ChordSettings {
            node_id_len: overlay.node_id_len(),
            update_interval: config.chord_update_interval,
            ping_interval: config.chord_ping_interval,
            reactive: config.chord_reactive,
            neighbor_list_size: 5,
            max_fingers: 32,
            request_timeout: overlay.request_lifetime(),
        }
    }
}

/// Largest neighbour list we keep, whatever the settings say (bounded memory).
const MAX_NEIGHBORS: usize = 64;
/// Largest number of Attaches of the plug-in in flight at once.
const PENDING_BASE: usize = 16;
/// Largest number of remembered failed nodes.
const DEAD_BASE: usize = 128;
/// Largest number of Update requests remembered while joining.
const MAX_DEFERRED: usize = 32;
/// Most finger searches in flight at once.
const MAX_FINGER_SEARCHES: usize = 8;

/// What we know of a node we have (or are about to have) a link to.
#[derive(Clone, Debug)]
struct Link {
    /// The core reported the link up (or it was a bootstrap link at start).
    up: bool,
    /// The node has shown it is a peer in the ring (Update, admitted Join, answer to an
    /// Attach for a Resource-ID).
    peer: bool,
    /// It sent us a Leave on this link: never a peer again on it.
    left: bool,
    /// We sent it an Update since the link came up.
    greeted: bool,
    /// We asked it for a full Update (RouteQuery with send_update).
    asked: bool,
    /// We opened it (our Attach was answered by it).
    ours: bool,
    /// Send it an Update as soon as it is up (partition healing, §10.7.4.4).
    update_when_up: bool,
    /// Its last Update listed us as a neighbour: it relies on the link.
    lists_us: bool,
    /// It sent us a `neighbors` or `full` Update on this link (its tables are known).
    reported: bool,
    /// When the entry was made (to purge answers whose link never came up).
    since: Instant,
}

impl Link {
    fn new(now: Instant, up: bool) -> Link {
        Link {
            up,
            peer: false,
            left: false,
            greeted: false,
            asked: false,
            ours: false,
            update_when_up: false,
            lists_us: false,
            reported: false,
            since: now,
        }
    }

    fn live_peer(&self) -> bool {
        self.up && self.peer && !self.left
    }
}

/// Why the plug-in sent an Attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingKind {
    /// Joining: Attach to own-ID+1 to find the admitting peer (§10.5 step 2).
    ApLookup,
    /// A candidate for the neighbour table (§10.5 step 3, §10.7.3).
    Neighbor,
    /// A finger search for this slot (§10.5, §10.7.4.2, §10.7.4.3).
    Finger(usize),
    /// All successors were lost: find the node now responsible for own-ID+1 (§10.7.1).
    Discovery,
    /// Partition healing: Attach to the peer that answered our Ping (§10.7.4.4).
    Partition,
    /// Client: Attach to the peer responsible for our Node-ID (§4.2.1).
    ClientPeer,
}

#[derive(Clone, Debug)]
struct Pending {
    target: Destination,
    kind: PendingKind,
    deadline: Instant,
    /// The peer the Attach was source-routed through (§10.6: the neighbour's reporter).
    via: Option<NodeId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JoinStep {
    /// Waiting until `deadline` before trying again.
    Wait,
    /// Attach to own-ID+1 sent through a bootstrap peer.
    AttachAp,
    /// Admitting peer found: attaching to the neighbours it reported.
    Building,
    /// Join sent to this peer.
    JoinSent(NodeId),
}

#[derive(Clone, Debug)]
struct JoinState {
    step: JoinStep,
    deadline: Instant,
    /// Index of the next bootstrap peer to try.
    boot_idx: usize,
    /// Rounds through the bootstrap list that failed (for the back-off).
    rounds: u32,
    ap: Option<NodeId>,
    ap_update_seen: bool,
}

#[derive(Clone, Debug)]
struct ClientState {
    /// The peer responsible for our Node-ID that we are attached to.
    peer: Option<NodeId>,
    boot_idx: usize,
    rounds: u32,
    retry_at: Option<Instant>,
    next_check: Instant,
}

#[derive(Clone, Debug)]
enum Phase {
    Idle,
    Joining(JoinState),
    Joined,
    Client(ClientState),
    Left,
}

/// CHORD-RELOAD (RFC 6940 §10): the topology plug-in of a peer or client.
#[derive(Clone, Debug)]
pub struct Chord {
    me: NodeId,
    at: u128,
    settings: ChordSettings,
    opts: DecodeOptions,
    /// Started with [`StartMode::FirstNode`]: may be alone in the overlay.
    first_node: bool,
    bootstrap: Vec<NodeId>,
    phase: Phase,
    started: Option<Instant>,
    now: Option<Instant>,
    links: BTreeMap<NodeId, Link>,
    succs: Vec<NodeId>,
    preds: Vec<NodeId>,
    /// `fingers[i - 1]` is finger `i` (§10.3): the closest live peer in its interval.
    fingers: Vec<Option<NodeId>>,
    /// Finger slots searched since they entered the useful range (§10.7.4.3).
    finger_searched: Vec<bool>,
    pending: Vec<Pending>,
    /// Nodes found dead, until when we do not Attach to them on someone's word.
    dead: BTreeMap<NodeId, Instant>,
    /// Neighbour candidates whose Attach failed, not tried again before then.
    retry: BTreeMap<NodeId, Instant>,
    /// Update requests that arrived before we joined (answered once joined).
    deferred_full: BTreeSet<NodeId>,
    /// The neighbour lists each current neighbour last reported, and when (bounded:
    /// neighbours only, lists cut). When a neighbour dies we re-adopt from the live ones
    /// (Zave: the successor list is taken from a live successor).
    reports: BTreeMap<NodeId, (Instant, Vec<NodeId>)>,
    /// A failure (link down, Leave) happened during the current input.
    failure: bool,
    actions: VecDeque<TopologyAction>,
    rng: Prng,
    next_update: Option<Instant>,
    /// Re-examine the neighbours' reports then (after a failed neighbour Attach).
    repair_at: Option<Instant>,
    next_finger: Option<Instant>,
    next_partition: Option<Instant>,
    partition_idx: usize,
    partition_via: Option<NodeId>,
}

/// Copies besides the responsible peer's (§10.4: "its successor … and that peer's
/// successor").
const REPLICAS: usize = 2;

impl Chord {
    /// A plug-in for the node `node_id`. The neighbour list size is clamped to 3..=64
    /// (§10.7: at least three), the finger table to 1..=128 entries, the intervals and
    /// the request timeout to 1 ms..=30 days (so timer arithmetic cannot overflow).
    /// Node-IDs are decoded with the length of `node_id`.
    pub fn new(node_id: NodeId, settings: ChordSettings) -> Chord {
        let mut settings = settings;
        settings.neighbor_list_size = settings.neighbor_list_size.clamp(3, MAX_NEIGHBORS);
        settings.max_fingers = settings.max_fingers.clamp(1, 128);
        let (lo, hi) = (
            Duration::from_millis(1),
            Duration::from_secs(30 * 24 * 3600),
        );
        settings.update_interval = settings.update_interval.clamp(lo, hi);
        settings.ping_interval = settings.ping_interval.clamp(lo, hi);
        settings.request_timeout = settings.request_timeout.clamp(lo, hi);
        let opts = DecodeOptions::new(node_id.len(), usize::MAX).unwrap_or_default();
        let at = pos(node_id.as_bytes());
        let nf = settings.max_fingers;
        Chord {
            me: node_id,
            at,
            settings,
            opts,
            first_node: false,
            bootstrap: Vec::new(),
            phase: Phase::Idle,
            started: None,
            now: None,
            links: BTreeMap::new(),
            succs: Vec::new(),
            preds: Vec::new(),
            fingers: vec![None; nf],
            finger_searched: vec![false; nf],
            pending: Vec::new(),
            dead: BTreeMap::new(),
            retry: BTreeMap::new(),
            deferred_full: BTreeSet::new(),
            reports: BTreeMap::new(),
            failure: false,
            actions: VecDeque::new(),
            rng: Prng::from_bytes(&at.to_be_bytes()),
            next_update: None,
            repair_at: None,
            next_finger: None,
            next_partition: None,
            partition_idx: 0,
            partition_via: None,
        }
    }

    /// The fingers, `(i, peer)` for each filled entry `i` (1-based), for diagnostics.
    pub fn fingers(&self) -> Vec<(usize, NodeId)> {
        self.fingers
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.map(|f| (i + 1, f)))
            .collect()
    }

    /// Whether this node runs as a client (§4.2).
    pub fn is_client(&self) -> bool {
        matches!(self.phase, Phase::Client(_))
    }

    /// The peer a client is attached to (the one responsible for its Node-ID, §4.2.1).
    pub fn client_peer(&self) -> Option<NodeId> {
        match &self.phase {
            Phase::Client(c) => c.peer,
            _ => None,
        }
    }

    // ----- small helpers -----

    fn r(&self) -> usize {
        self.settings.neighbor_list_size
    }

    fn rt(&self) -> Duration {
        self.settings.request_timeout
    }

    fn joined(&self) -> bool {
        matches!(self.phase, Phase::Joined)
    }

    fn pending_cap(&self) -> usize {
        PENDING_BASE + 4 * self.r() + self.settings.max_fingers.min(32)
    }

    fn list_cap(&self) -> usize {
        (4 * self.r()).max(16)
    }

    /// How long a confirmed dead node (link lost, Leave) is not attached to again on
    /// someone else's word: long enough for every neighbour to notice too.
    fn dead_ttl(&self) -> Duration {
        (self.rt() * 10).max(Duration::from_secs(1))
    }

    /// How long after a failed Attach the node is not tried again: the Attach may have
    /// been lost on the way (e.g. through a reporter that has just died), so only a
    /// short back-off.
    fn retry_ttl(&self) -> Duration {
        (self.rt() * 2).max(Duration::from_millis(100))
    }

    /// A Node-ID a peer may list: our length, not all-zero, not the wildcard, not us.
    fn valid_other(&self, n: &NodeId) -> bool {
        n.len() == self.me.len() && !n.is_zero() && !n.is_wildcard() && *n != self.me
    }

    fn is_up(&self, n: &NodeId) -> bool {
        self.links.get(n).is_some_and(|l| l.up)
    }

    fn is_dead(&self, n: &NodeId, now: Instant) -> bool {
        self.dead.get(n).is_some_and(|&until| until > now)
            || self.retry.get(n).is_some_and(|&until| until > now)
    }

    /// Backs off from a candidate whose Attach failed, and plans to look at the
    /// neighbours' reports again when the back-off ends.
    fn back_off(&mut self, n: NodeId, now: Instant) {
        self.back_off_for(n, now, self.retry_ttl());
    }

    /// The pause after Error_In_Progress: one reliability-timer step of the request
    /// timeout (3 s by default).
    fn in_progress_retry(&self) -> Duration {
        (self.rt() / 5).max(Duration::from_millis(100))
    }

    fn back_off_for(&mut self, n: NodeId, now: Instant, pause: Duration) {
        let until = now + pause;
        if self.retry.len() >= DEAD_BASE + 8 * self.r()
            && !self.retry.contains_key(&n)
            && let Some(k) = self.retry.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
        {
            self.retry.remove(&k);
        }
        self.retry.insert(n, until);
        self.schedule_repair();
    }

    /// `n` showed it is alive: forget that it failed.
    fn seen_alive(&mut self, n: &NodeId) {
        self.dead.remove(n);
        self.retry.remove(n);
    }

    /// The next repair: just after the earliest back-off ends.
    fn schedule_repair(&mut self) {
        self.repair_at = self
            .retry
            .values()
            .min()
            .map(|t| *t + Duration::from_millis(1));
    }

    fn mark_dead(&mut self, n: NodeId, now: Instant, ttl: Duration) {
        let cap = DEAD_BASE + 8 * self.r();
        if self.dead.len() >= cap && !self.dead.contains_key(&n) {
            // Forget the entry that expires first.
            if let Some(k) = self.dead.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) {
                self.dead.remove(&k);
            }
        }
        let until = now + ttl;
        let e = self.dead.entry(n).or_insert(until);
        *e = (*e).max(until);
    }

    /// Interval `interval` scaled by a factor drawn from [0.8, 1.2) (§10.7.4.1: "randomly
    /// offset these Update requests").
    fn jitter(&mut self, interval: Duration) -> Duration {
        let permille = 800 + self.rng.below(400) as u32;
        interval * permille / 1000
    }

    fn uptime(&self) -> u32 {
        match (self.started, self.now) {
            (Some(s), Some(n)) => n
                .saturating_duration_since(s)
                .as_secs()
                .min(u32::MAX as u64) as u32,
            _ => 0,
        }
    }

    fn neighbors_set(&self) -> BTreeSet<NodeId> {
        self.succs
            .iter()
            .chain(self.preds.iter())
            .copied()
            .collect()
    }

    fn routing_set(&self) -> BTreeSet<NodeId> {
        let mut s = self.neighbors_set();
        s.extend(self.fingers.iter().flatten().copied());
        s
    }

    fn live_peers(&self) -> Vec<NodeId> {
        self.links
            .iter()
            .filter(|(n, l)| l.live_peer() && **n != self.me)
            .map(|(n, _)| *n)
            .collect()
    }

    /// The `k` nodes of `nodes` closest to us clockwise (nearest first).
    fn closest_cw(&self, nodes: &[NodeId], k: usize) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = nodes.to_vec();
        v.sort_by_key(|n| dist(self.at, pos(n.as_bytes())));
        v.dedup();
        v.truncate(k);
        v
    }

    /// The `k` nodes of `nodes` closest to us counter-clockwise (nearest first).
    fn closest_ccw(&self, nodes: &[NodeId], k: usize) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = nodes.to_vec();
        v.sort_by_key(|n| dist(pos(n.as_bytes()), self.at));
        v.dedup();
        v.truncate(k);
        v
    }

    /// `pred < k ≤ me` (§10.1); with no predecessor we are alone and responsible for all.
    fn responsible_at(&self, k: u128) -> bool {
        match self.preds.first() {
            Some(p) => in_open_closed(k, pos(p.as_bytes()), self.at),
            None => true,
        }
    }

    /// The Resource-ID just after our own: the peer responsible for it is our successor
    /// and is responsible for our own ID too (no peer can hold our ID). Used instead of
    /// our own ID because §10.3 makes any peer directly connected to us (a bootstrap peer
    /// always is) route a message for Resource-ID = our ID straight back to us.
    fn after_me(&self) -> Destination {
        let t = self.at.wrapping_add(1);
        Destination::Resource(ResourceId::new(Bytes::copy_from_slice(&t.to_be_bytes())))
    }

    // ----- bodies -----

    fn encode_update(&self, body: ChordUpdateBody) -> Option<Bytes> {
        ChordUpdate {
            uptime: self.uptime(),
            body,
        }
        .to_bytes()
        .ok()
    }

    fn neighbors_body(&self) -> Option<Bytes> {
        self.encode_update(ChordUpdateBody::Neighbors {
            predecessors: self.preds.clone(),
            successors: self.succs.clone(),
        })
    }

    fn full_body(&self) -> Option<Bytes> {
        let mut fingers: Vec<NodeId> = self.fingers.iter().flatten().copied().collect();
        // §10.7: "The Finger Table of the Updating peer, in numerically ascending order".
        fingers.sort();
        fingers.dedup();
        self.encode_update(ChordUpdateBody::Full {
            predecessors: self.preds.clone(),
            successors: self.succs.clone(),
            fingers,
        })
    }

    fn peer_ready_body(&self) -> Option<Bytes> {
        self.encode_update(ChordUpdateBody::PeerReady)
    }

    /// Queues an Update to a node with a live link.
    fn send_update(&mut self, to: NodeId, body: Option<Bytes>) {
        let Some(body) = body else { return };
        match self.links.get_mut(&to) {
            Some(l) if l.up && !l.left => {
                l.greeted = true;
                self.actions
                    .push_back(TopologyAction::SendUpdate { to, body });
            }
            _ => {}
        }
    }

    // ----- attaches -----

    fn pending_for(&self, target: &Destination) -> Option<usize> {
        self.pending.iter().position(|p| p.target == *target)
    }

    fn attach(
        &mut self,
        now: Instant,
        target: Destination,
        via: Option<NodeId>,
        send_update: bool,
        kind: PendingKind,
    ) -> bool {
        if self.pending_for(&target).is_some() || self.pending.len() >= self.pending_cap() {
            return false;
        }
        let via = via.filter(|v| self.is_up(v) && *v != self.me);
        self.pending.push(Pending {
            target: target.clone(),
            kind,
            deadline: now + self.rt() * 2,
            via,
        });
        self.actions.push_back(TopologyAction::Attach {
            target,
            via,
            send_update,
        });
        true
    }

    fn finger_searches(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| matches!(p.kind, PendingKind::Finger(_)))
            .count()
    }

    /// Searches finger `i`: an Attach to its first ID (`exact`, initial selection, §10.5)
    /// or to a random ID of its interval (stabilization, §10.7.4.2), routed conventionally.
    /// Initial searches are limited to a few at a time; a replacement (random) search is
    /// not held up by them.
    fn search_finger(&mut self, now: Instant, i: usize, exact: bool) {
        if i == 0
            || i > self.settings.max_fingers
            || (exact && self.finger_searches() >= MAX_FINGER_SEARCHES)
        {
            return;
        }
        let t = if exact {
            finger_start(self.at, i)
        } else {
            let r = self.rng.next_u128();
            ring::random_in_finger(self.at, i, r)
        };
        let target =
            Destination::Resource(ResourceId::new(Bytes::copy_from_slice(&t.to_be_bytes())));
        if self.attach(now, target, None, false, PendingKind::Finger(i)) {
            self.finger_searched[i - 1] = true;
        }
    }

    /// Number of finger slots worth having: those whose interval starts beyond our last
    /// successor (§10.7.4.3: "large enough to contain at least the final successor").
    /// Zero while the successor list is not full (the ring is small: all of it is known).
    fn finger_range(&self, succs: &[NodeId]) -> usize {
        if succs.len() < self.r() {
            return 0;
        }
        let Some(last) = succs.last() else { return 0 };
        let span = dist(self.at, pos(last.as_bytes()));
        (1..=self.settings.max_fingers)
            .take_while(|&i| finger_span(i) > span)
            .count()
    }

    /// Considers the Node-IDs someone reported (§10.7.3): Attaches to those that would be
    /// in our neighbour table, source-routed through the reporter (§10.6).
    fn consider(&mut self, now: Instant, reported: &[NodeId], reporter: Option<NodeId>) {
        let mut fresh: BTreeSet<NodeId> = BTreeSet::new();
        for c in reported {
            if !self.valid_other(c) || self.is_dead(c, now) {
                continue;
            }
            match self.links.get(c) {
                Some(l) if l.left => continue,
                Some(l) if l.live_peer() => continue,
                _ => {}
            }
            fresh.insert(*c);
        }
        if fresh.is_empty() {
            return;
        }
        let mut known = self.live_peers();
        for p in &self.pending {
            if let (PendingKind::Neighbor, Destination::Node(n)) = (p.kind, &p.target) {
                known.push(*n);
            }
        }
        known.extend(fresh.iter().copied());
        let r = self.r();
        let mut wanted: BTreeSet<NodeId> = self.closest_cw(&known, r).into_iter().collect();
        wanted.extend(self.closest_ccw(&known, r));
        for c in fresh {
            if !wanted.contains(&c) {
                continue;
            }
            let target = Destination::Node(c);
            if self.pending_for(&target).is_some() {
                continue;
            }
            if let Some(l) = self.links.get_mut(&c)
                && l.up
            {
                // Linked but not known as a peer yet: ask it for its tables instead.
                if !l.asked {
                    l.asked = true;
                    self.actions.push_back(TopologyAction::RouteQuery {
                        to: c,
                        destination: Destination::Node(self.me),
                        send_update: true,
                    });
                }
                continue;
            }
            let via = reporter.filter(|v| *v != c);
            self.attach(now, target, via, true, PendingKind::Neighbor);
        }
    }

    // ----- table maintenance -----

    /// Rebuilds the neighbour and finger tables from the live peers.
    fn recompute(&mut self) {
        let peers = self.live_peers();
        let r = self.r();
        self.succs = self.closest_cw(&peers, r);
        self.preds = self.closest_ccw(&peers, r);
        let mut best: Vec<Option<(u128, NodeId)>> = vec![None; self.settings.max_fingers];
        for p in peers {
            let d = dist(self.at, pos(p.as_bytes()));
            if let Some(i) = finger_slot(d)
                && i <= best.len()
            {
                let b = &mut best[i - 1];
                if b.is_none_or(|(bd, _)| d < bd) {
                    *b = Some((d, p));
                }
            }
        }
        self.fingers = best.into_iter().map(|b| b.map(|(_, n)| n)).collect();
    }

    /// After every input: rebuilds the tables and sends what the change calls for.
    fn after_change(&mut self, now: Instant) {
        let failure = std::mem::take(&mut self.failure);
        if matches!(self.phase, Phase::Idle | Phase::Left | Phase::Client(_)) {
            return;
        }
        let old_succs = self.succs.clone();
        let old_preds = self.preds.clone();
        let old_fingers = self.fingers.clone();
        self.recompute();
        let neighbors = self.neighbors_set();
        self.reports.retain(|n, _| neighbors.contains(n));
        if !self.joined() {
            return;
        }
        let nb_changed = old_succs != self.succs || old_preds != self.preds;
        if nb_changed {
            self.actions.push_back(TopologyAction::NeighborsChanged);
            if failure {
                // §10.7.1 "replace it with the best match": the candidates the live
                // neighbours last reported, checked by Attach as always.
                self.reconsider(now);
            }
        }
        // Our first successor failed. With no peer left: alone or join again (§10.7.1).
        // Otherwise the next live entry stands in, and — Zave's stabilize, and "behave as
        // if joining" of §10.7.1 — we look up own-ID+1 again to learn the true successor
        // and its lists (one routed Attach, answered with a full Update).
        let succ0_lost = old_succs
            .first()
            .is_some_and(|s| !self.links.get(s).is_some_and(|l| l.live_peer()));
        if failure && succ0_lost {
            if self.succs.is_empty() {
                self.alone_or_rejoin(now);
                return;
            }
            let target = self.after_me();
            self.attach(now, target, None, true, PendingKind::Discovery);
        }
        let range_changed = old_preds.first() != self.preds.first();
        let mut to_neighbors: BTreeSet<NodeId> = BTreeSet::new();
        // §10.7.3: with reactive recovery, a changed neighbour table means an Update "to
        // each member of its Connection Table"; a changed range of responsibility means the
        // same in any case ("it MUST send an Update to all entries in its Connection
        // Table", §10.7.1, §10.7.3).
        if (nb_changed && self.settings.reactive) || range_changed {
            to_neighbors.extend(
                self.links
                    .iter()
                    .filter(|(_, l)| l.up && !l.left)
                    .map(|(n, _)| *n),
            );
        }
        // Every routing-table member learns once that we are a peer.
        let mut ready: BTreeSet<NodeId> = BTreeSet::new();
        for n in self.routing_set() {
            if self.links.get(&n).is_some_and(|l| l.up && !l.greeted) {
                if neighbors.contains(&n) {
                    to_neighbors.insert(n);
                } else {
                    ready.insert(n);
                }
            }
        }
        if !to_neighbors.is_empty() {
            let body = self.neighbors_body();
            for n in to_neighbors {
                self.send_update(n, body.clone());
            }
        }
        if !ready.is_empty() {
            let body = self.peer_ready_body();
            for n in ready {
                self.send_update(n, body.clone());
            }
        }
        // Fingers: re-search a slot whose finger failed (reactive, §10.7.2); first search
        // of slots that entered the useful range (§10.7.4.3).
        let range = self.finger_range(&self.succs.clone());
        for i in 1..=self.settings.max_fingers {
            let idx = i - 1;
            if i > range {
                self.finger_searched[idx] = false;
                continue;
            }
            let failed = failure && old_fingers[idx].is_some() && self.fingers[idx].is_none();
            if failed && self.settings.reactive {
                self.search_finger(now, i, false);
            } else if self.fingers[idx].is_none() && !self.finger_searched[idx] {
                self.search_finger(now, i, true);
            }
        }
    }

    /// Considers again what the live neighbours last reported, the most recently heard
    /// first (an Attach goes through the first reporter of a candidate, and the one we
    /// heard from last is the least likely to have died since).
    fn reconsider(&mut self, now: Instant) {
        let mut reports: Vec<(Instant, NodeId, Vec<NodeId>)> = self
            .reports
            .iter()
            .map(|(n, (at, l))| (*at, *n, l.clone()))
            .collect();
        reports.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, from, list) in reports {
            self.consider(now, &list, Some(from));
        }
    }

    /// Releases links we opened that are no longer in the routing table and that the
    /// other end does not list as a neighbour. The core closes a released link at once
    /// and reports no `LinkDown` for it, so we forget it here. Links other nodes opened
    /// to us are theirs to release (they may be using us as a finger).
    fn release_unused(&mut self) {
        let keep = self.routing_set();
        let pending: BTreeSet<NodeId> = self
            .pending
            .iter()
            .filter_map(|p| p.target.node_id().copied())
            .collect();
        let out: Vec<NodeId> = self
            .links
            .iter()
            .filter(|(n, l)| {
                l.up && l.ours
                    && !l.lists_us
                    && !keep.contains(n)
                    && !self.bootstrap.contains(n)
                    && !pending.contains(n)
            })
            .map(|(n, _)| *n)
            .collect();
        for peer in out {
            self.links.remove(&peer);
            self.actions.push_back(TopologyAction::ReleaseLink { peer });
        }
    }

    /// No live peer is left.
    fn alone_or_rejoin(&mut self, now: Instant) {
        if self.first_node {
            // The first node may hold the whole overlay (§6.4.2.1).
            self.actions.push_back(TopologyAction::NeighborsChanged);
        } else {
            // An ordinary node must not take the whole overlay (§6.4.2.1): join again.
            self.restart_join(now, Duration::ZERO);
        }
    }

    // ----- joining -----

    fn restart_join(&mut self, now: Instant, delay: Duration) {
        self.pending
            .retain(|p| !matches!(p.kind, PendingKind::ApLookup | PendingKind::Neighbor));
        let rounds = match &self.phase {
            Phase::Joining(j) => j.rounds,
            _ => 0,
        };
        // A new round starts again at the first bootstrap peer.
        self.phase = Phase::Joining(JoinState {
            step: JoinStep::Wait,
            deadline: now + delay,
            boot_idx: 0,
            rounds,
            ap: None,
            ap_update_seen: false,
        });
        if delay.is_zero() {
            self.start_ap_lookup(now);
        }
    }

    fn backoff(&self, rounds: u32) -> Duration {
        let cap = self.settings.update_interval.max(self.rt());
        (self.rt() * (1u32 << rounds.min(6))).min(cap)
    }

    /// Sends the Attach to own-ID+1 through the next bootstrap peer (§10.5 step 2).
    fn start_ap_lookup(&mut self, now: Instant) {
        let Phase::Joining(js) = &self.phase else {
            return;
        };
        let mut idx = js.boot_idx;
        let mut rounds = js.rounds;
        let via = loop {
            if idx >= self.bootstrap.len() {
                break None;
            }
            let b = self.bootstrap[idx];
            idx += 1;
            if self.is_up(&b) && b != self.me {
                break Some(b);
            }
        };
        // Without a bootstrap link, any live link will do (§10.7.1 re-join).
        let via = via.or_else(|| {
            self.links
                .iter()
                .find(|(n, l)| l.up && !l.left && **n != self.me)
                .map(|(n, _)| *n)
        });
        let Some(via) = via else {
            rounds += 1;
            let wait = self.backoff(rounds);
            if let Phase::Joining(js) = &mut self.phase {
                js.step = JoinStep::Wait;
                js.deadline = now + wait;
                js.boot_idx = 0;
                js.rounds = rounds;
            }
            self.actions.push_back(TopologyAction::Isolated {
                reason: "no bootstrap peer answered (RFC 6940 §10.5)".into(),
            });
            return;
        };
        let target = self.after_me();
        self.pending.retain(|p| p.kind != PendingKind::ApLookup);
        self.attach(now, target, Some(via), true, PendingKind::ApLookup);
        let deadline = now + self.rt() * 3;
        if let Phase::Joining(js) = &mut self.phase {
            js.step = JoinStep::AttachAp;
            js.deadline = deadline;
            js.boot_idx = idx;
            js.ap = None;
            js.ap_update_seen = false;
        }
    }

    /// Sends the Join once every neighbour Attach is done (§10.5 steps 3–5: no Update
    /// placing us in the ring before that — we send none at all before the JoinAns).
    fn advance_join(&mut self, now: Instant) {
        let Phase::Joining(js) = &self.phase else {
            return;
        };
        if js.step != JoinStep::Building || !js.ap_update_seen {
            return;
        }
        if self.pending.iter().any(|p| p.kind == PendingKind::Neighbor) {
            return;
        }
        let Some(&to) = self.succs.first() else {
            return;
        };
        let deadline = now + self.rt() * 3;
        if let Phase::Joining(js) = &mut self.phase {
            js.step = JoinStep::JoinSent(to);
            js.deadline = deadline;
        }
        self.actions.push_back(TopologyAction::SendJoin {
            to,
            overlay_specific_data: Bytes::new(),
        });
    }

    fn become_joined(&mut self, now: Instant) {
        self.phase = Phase::Joined;
        self.pending.retain(|p| p.kind != PendingKind::ApLookup);
        // Join Updates (§10.5 step 9) go out in `after_change`: every routing-table member
        // is still ungreeted.
        for l in self.links.values_mut() {
            l.greeted = false;
        }
        self.actions.push_back(TopologyAction::Joined);
        self.actions.push_back(TopologyAction::NeighborsChanged);
        let u = self.settings.update_interval;
        let p = self.settings.ping_interval;
        let d = self.jitter(u);
        self.next_update = Some(now + d);
        let d = self.jitter(p);
        self.next_finger = Some(now + d);
        let d = self.jitter(p);
        self.next_partition = Some(now + d);
        self.recompute();
        let deferred = std::mem::take(&mut self.deferred_full);
        let body = self.full_body();
        for n in deferred {
            self.send_update(n, body.clone());
        }
    }

    fn join_acceptable(&self, joining: &NodeId) -> Result<(), ErrorCode> {
        if !self.joined() {
            return Err(ErrorCode::NOT_FOUND);
        }
        if !self.valid_other(joining) {
            return Err(ErrorCode::INVALID_MESSAGE);
        }
        if !self.is_up(joining) {
            // §6.4.2.1: a JoinReq must arrive on a link bound to the joining node.
            return Err(ErrorCode::FORBIDDEN);
        }
        // Admit it if it would be one of our predecessors: joins happen between
        // neighbours (§6.4.2.1), and concurrent joins sort themselves out by Updates.
        let mut peers = self.live_peers();
        peers.push(*joining);
        if self.closest_ccw(&peers, self.r()).contains(joining) {
            Ok(())
        } else {
            Err(ErrorCode::NOT_FOUND)
        }
    }

    // ----- inputs -----

    fn on_link_up(&mut self, now: Instant, peer: NodeId) {
        if peer == self.me {
            return;
        }
        self.seen_alive(&peer);
        let l = self
            .links
            .entry(peer)
            .or_insert_with(|| Link::new(now, true));
        let was_up = l.up;
        l.up = true;
        if !was_up {
            l.since = now;
        }
        if l.update_when_up && self.joined() {
            if let Some(l) = self.links.get_mut(&peer) {
                l.update_when_up = false;
            }
            let body = self.neighbors_body();
            self.send_update(peer, body);
        }
    }

    fn on_link_down(&mut self, now: Instant, peer: NodeId) {
        let relied = self.routing_set().contains(&peer);
        if self.links.remove(&peer).is_none() {
            return;
        }
        if relied {
            // §10.7.1, §10.7.2: a lost routing-table member is a failure.
            self.mark_dead(peer, now, self.dead_ttl());
            self.failure = true;
        }
        let no_peer = self.live_peers().is_empty();
        match &mut self.phase {
            // The peer we sent our Join to, or the admitting peer while nothing else is
            // known: start the join again.
            Phase::Joining(js)
                if js.step == JoinStep::JoinSent(peer)
                    || (js.ap == Some(peer) && js.step == JoinStep::Building && no_peer) =>
            {
                self.restart_join(now, Duration::ZERO);
            }
            Phase::Client(c) if c.peer == Some(peer) => {
                c.peer = None;
                self.actions.push_back(TopologyAction::NeighborsChanged);
                self.client_attach(now, None);
            }
            _ => {}
        }
    }

    fn on_attach_answered(&mut self, now: Instant, target: Destination, peer: NodeId) {
        let Some(i) = self.pending_for(&target) else {
            return;
        };
        let p = self.pending.remove(i);
        if !self.valid_other(&peer) {
            self.on_attach_failed(now, p);
            return;
        }
        if let Destination::Node(n) = &p.target
            && *n != peer
        {
            // Only the node itself may answer an Attach to its Node-ID (§6.1.1).
            self.on_attach_failed(now, p);
            return;
        }
        self.seen_alive(&peer);
        let l = self
            .links
            .entry(peer)
            .or_insert_with(|| Link::new(now, false));
        l.ours = true;
        if matches!(p.target, Destination::Resource(_)) && !l.left {
            // It answered for a Resource-ID it is responsible for: it is a peer.
            l.peer = true;
        }
        match p.kind {
            PendingKind::ApLookup => {
                if let Phase::Joining(js) = &mut self.phase
                    && js.step == JoinStep::AttachAp
                {
                    js.step = JoinStep::Building;
                    js.ap = Some(peer);
                    js.ap_update_seen = false;
                    js.deadline = now + self.settings.request_timeout * 6;
                    if self.links.get(&peer).is_some_and(|l| l.reported) {
                        self.ap_reported(now);
                    }
                }
            }
            PendingKind::Partition => {
                if self.is_up(&peer) && self.joined() {
                    let body = self.neighbors_body();
                    self.send_update(peer, body);
                } else if let Some(l) = self.links.get_mut(&peer) {
                    l.update_when_up = true;
                }
            }
            PendingKind::ClientPeer => {
                if let Phase::Client(c) = &mut self.phase {
                    let old = c.peer.replace(peer);
                    c.rounds = 0;
                    c.retry_at = None;
                    if old != Some(peer) {
                        self.actions.push_back(TopologyAction::NeighborsChanged);
                    }
                    // §4.2.1: a client keeps one link, to its responsible peer; the
                    // bootstrap link is released (a bootstrap peer would otherwise hold
                    // a link per client). Should that peer fail, the client reconnects
                    // to its bootstrap peers (the core retries them while isolated).
                    let others: Vec<NodeId> = self
                        .links
                        .iter()
                        .filter(|(n, l)| **n != peer && l.up)
                        .map(|(n, _)| *n)
                        .collect();
                    for o in others {
                        self.links.remove(&o);
                        self.actions
                            .push_back(TopologyAction::ReleaseLink { peer: o });
                    }
                }
            }
            PendingKind::Neighbor | PendingKind::Finger(_) | PendingKind::Discovery => {}
        }
    }

    fn on_attach_failed(&mut self, now: Instant, p: Pending) {
        match p.kind {
            PendingKind::Neighbor => {
                // Sent through a reporter that has gone since: the Attach was lost with
                // it, which says nothing of the neighbour. Try again now, routed without
                // it (or through another reporter), instead of backing off.
                if p.via.is_some_and(|v| !self.is_up(&v)) {
                    self.reconsider(now);
                } else if let Destination::Node(n) = p.target {
                    self.back_off(n, now);
                    // While pending it counted as a would-be neighbour, so the next live
                    // node behind it was not attached to: give that one its place now
                    // (Z3), not when the back-off ends. A joining node does not: its Join
                    // waits for its neighbour Attaches (Z5), and it re-examines once joined.
                    if self.joined() {
                        self.reconsider(now);
                    }
                }
            }
            PendingKind::ApLookup => {
                if let Phase::Joining(js) = &self.phase
                    && js.step == JoinStep::AttachAp
                {
                    self.start_ap_lookup(now);
                }
            }
            PendingKind::ClientPeer => {
                if let Phase::Client(c) = &mut self.phase {
                    c.rounds += 1;
                    let wait = (self.settings.request_timeout * (1u32 << c.rounds.min(6))).min(
                        self.settings
                            .update_interval
                            .max(self.settings.request_timeout),
                    );
                    c.retry_at = Some(now + wait);
                    if c.peer
                        .is_some_and(|p| !self.links.get(&p).is_some_and(|l| l.up))
                    {
                        c.peer = None;
                    }
                }
            }
            PendingKind::Finger(_) | PendingKind::Discovery | PendingKind::Partition => {}
        }
    }

    fn decode_update(&self, body: &Bytes) -> Result<ChordUpdate, ErrorCode> {
        ChordUpdate::decode(body, &self.opts).map_err(|_| ErrorCode::INVALID_MESSAGE)
    }

    fn on_update(&mut self, now: Instant, from: NodeId, body: Bytes) -> Result<(), ErrorCode> {
        if !self.valid_other(&from) {
            return Err(ErrorCode::INVALID_MESSAGE);
        }
        let u = self.decode_update(&body)?;
        let cap = self.list_cap();
        // peer_ready carries no tables; neighbors and full do, even empty ones (a lone
        // peer's).
        let is_ready = matches!(u.body, ChordUpdateBody::PeerReady);
        let (preds, succs, fingers) = match u.body {
            ChordUpdateBody::PeerReady => (Vec::new(), Vec::new(), Vec::new()),
            ChordUpdateBody::Neighbors {
                predecessors,
                successors,
            } => (predecessors, successors, Vec::new()),
            ChordUpdateBody::Full {
                predecessors,
                successors,
                fingers,
            } => (predecessors, successors, fingers),
            ChordUpdateBody::Unknown { .. } => return Err(ErrorCode::INVALID_MESSAGE),
        };
        match &self.phase {
            Phase::Idle | Phase::Left => return Ok(()),
            Phase::Client(_) => {
                self.client_on_update(now, from, &preds);
                return Ok(());
            }
            _ => {}
        }
        // The sender is directly connected and says it is a peer.
        self.seen_alive(&from);
        let me = self.me;
        let l = self
            .links
            .entry(from)
            .or_insert_with(|| Link::new(now, true));
        l.up = true;
        if !l.left {
            l.peer = true;
        }
        if !is_ready {
            l.lists_us = preds.iter().chain(succs.iter()).any(|n| *n == me);
            l.reported = true;
        }
        // Bounded: absurdly long lists are cut (only the nearest entries can matter).
        let mut reported: Vec<NodeId> = Vec::new();
        reported.extend(preds.iter().take(cap));
        reported.extend(succs.iter().take(cap));
        reported.extend(fingers.iter().take(128));
        self.consider(now, &reported, Some(from));
        if !is_ready {
            let mut lists: Vec<NodeId> = preds.iter().take(cap).copied().collect();
            lists.extend(succs.iter().take(cap));
            self.reports.insert(from, (now, lists));
        }
        if let Phase::Joining(js) = &self.phase
            && js.ap == Some(from)
        {
            self.ap_reported(now);
        }
        Ok(())
    }

    /// The admitting peer's tables arrived (its Update may come before the answer to our
    /// Attach, which travels back along the request's path): the neighbour Attaches are
    /// out, now the fingers (§10.5 step 3), from the prospective successor list.
    fn ap_reported(&mut self, now: Instant) {
        let Phase::Joining(js) = &mut self.phase else {
            return;
        };
        if js.ap_update_seen {
            return;
        }
        js.ap_update_seen = true;
        let mut known = self.live_peers();
        for p in &self.pending {
            if let (PendingKind::Neighbor, Destination::Node(n)) = (p.kind, &p.target) {
                known.push(*n);
            }
        }
        let succs = self.closest_cw(&known, self.r());
        let range = self.finger_range(&succs);
        for i in 1..=range {
            self.search_finger(now, i, true);
        }
    }

    fn on_leave(&mut self, now: Instant, from: NodeId, data: Bytes) -> Result<(), ErrorCode> {
        if !self.valid_other(&from) {
            return Err(ErrorCode::INVALID_MESSAGE);
        }
        let d =
            ChordLeaveData::decode(&data, &self.opts).map_err(|_| ErrorCode::INVALID_MESSAGE)?;
        let list = match d {
            ChordLeaveData::FromSucc { successors } => successors,
            ChordLeaveData::FromPred { predecessors } => predecessors,
            ChordLeaveData::Unknown { .. } => return Err(ErrorCode::INVALID_MESSAGE),
        };
        if matches!(self.phase, Phase::Idle | Phase::Left) {
            return Ok(());
        }
        // §10.9: as if it had failed (§10.7.1).
        let relied = self.routing_set().contains(&from);
        if let Some(l) = self.links.get_mut(&from) {
            l.left = true;
            l.peer = false;
        }
        self.mark_dead(from, now, self.dead_ttl());
        if relied {
            self.failure = true;
        }
        if let Phase::Client(c) = &mut self.phase {
            if c.peer == Some(from) {
                c.peer = None;
                self.client_attach(now, None);
            }
            return Ok(());
        }
        let cap = self.list_cap();
        let list: Vec<NodeId> = list.into_iter().take(cap).collect();
        // Its neighbours are candidates; the leaving peer is no route to them any more.
        self.consider(now, &list, None);
        if self.is_up(&from) && !self.bootstrap.contains(&from) {
            self.links.remove(&from);
            self.actions
                .push_back(TopologyAction::ReleaseLink { peer: from });
        }
        Ok(())
    }

    fn on_update_requested(&mut self, from: NodeId) {
        match &self.phase {
            Phase::Joined => {
                let body = self.full_body();
                self.send_update(from, body);
            }
            Phase::Joining(_) if self.deferred_full.len() < MAX_DEFERRED => {
                self.deferred_full.insert(from);
            }
            _ => {}
        }
    }

    fn on_ping_answered(&mut self, now: Instant, target: Destination, responder: Option<NodeId>) {
        if target != self.after_me() || !self.joined() {
            return;
        }
        let Some(s) = responder else { return };
        if s == self.me || self.succs.first() == Some(&s) || !self.valid_other(&s) {
            return;
        }
        // §10.7.4.4: answered by S', not our successor: partitioned. Attach to S' through
        // the bootstrap peer, then Update it.
        if self.is_up(&s) {
            let body = self.neighbors_body();
            self.send_update(s, body);
            if !self.links.get(&s).is_some_and(|l| l.peer) {
                self.actions.push_back(TopologyAction::RouteQuery {
                    to: s,
                    destination: Destination::Node(self.me),
                    send_update: true,
                });
            }
            return;
        }
        let via = self.partition_via;
        self.attach(now, Destination::Node(s), via, true, PendingKind::Partition);
    }

    // ----- client (§4.2.1) -----

    fn client_attach(&mut self, now: Instant, via: Option<NodeId>) {
        if self
            .pending
            .iter()
            .any(|p| p.kind == PendingKind::ClientPeer)
        {
            return;
        }
        let Phase::Client(c) = &self.phase else {
            return;
        };
        let mut boot_idx = c.boot_idx;
        let current = c.peer.filter(|p| self.is_up(p));
        let via = via.filter(|v| self.is_up(v)).or(current).or_else(|| {
            let n = self.bootstrap.len();
            (0..n).find_map(|k| {
                let b = self.bootstrap[(boot_idx + k) % n];
                if self.is_up(&b) {
                    boot_idx = (boot_idx + k + 1) % n;
                    Some(b)
                } else {
                    None
                }
            })
        });
        let via = via.or_else(|| {
            self.links
                .iter()
                .find(|(_, l)| l.up && !l.left)
                .map(|(n, _)| *n)
        });
        let Some(via) = via else {
            if let Phase::Client(c) = &mut self.phase {
                c.rounds += 1;
                let wait = (self.settings.request_timeout * (1u32 << c.rounds.min(6))).min(
                    self.settings
                        .update_interval
                        .max(self.settings.request_timeout),
                );
                c.retry_at = Some(now + wait);
            }
            self.actions.push_back(TopologyAction::Isolated {
                reason: "client has no link to reach its responsible peer (RFC 6940 §4.2.1)".into(),
            });
            return;
        };
        if let Phase::Client(c) = &mut self.phase {
            c.boot_idx = boot_idx;
            c.retry_at = None;
        }
        // §4.2.1: the peer responsible for our Node-ID (see `after_me`).
        let target = self.after_me();
        self.attach(now, target, Some(via), true, PendingKind::ClientPeer);
    }

    fn client_on_update(&mut self, now: Instant, from: NodeId, preds: &[NodeId]) {
        let Phase::Client(c) = &self.phase else {
            return;
        };
        if c.peer != Some(from) {
            return;
        }
        // §4.2.1: the Update may say the peer is no longer responsible for us.
        if let Some(p) = preds.iter().find(|p| self.valid_other(p))
            && !in_open_closed(self.at, pos(p.as_bytes()), pos(from.as_bytes()))
        {
            self.client_attach(now, Some(from));
        }
    }

    // ----- timers -----

    fn expire(&mut self, now: Instant) {
        let (due, keep): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.pending = keep;
        for p in due {
            self.on_attach_failed(now, p);
        }
        self.dead.retain(|_, until| *until > now);
        if self.retry.values().any(|until| *until <= now) && !self.joined() {
            self.retry.retain(|_, until| *until > now);
            self.schedule_repair();
        }
        let stale = self.rt() * 2;
        self.links
            .retain(|_, l| l.up || now.saturating_duration_since(l.since) < stale);
    }

    fn joined_timers(&mut self, now: Instant) {
        if self.repair_at.is_some_and(|t| t <= now) {
            self.retry.retain(|_, until| *until > now);
            self.schedule_repair();
            self.reconsider(now);
        }
        if self.next_update.is_some_and(|t| t <= now) {
            // §10.7.4.1: periodic Update to every neighbour.
            let body = self.neighbors_body();
            for n in self.neighbors_set() {
                self.send_update(n, body.clone());
            }
            self.release_unused();
            let d = self.jitter(self.settings.update_interval);
            self.next_update = Some(now + d);
        }
        if self.next_finger.is_some_and(|t| t <= now) {
            // §10.7.4.2 alternative 1: pick one invalid entry, exponentially weighted
            // towards low i.
            let range = self.finger_range(&self.succs.clone());
            for i in 1..=range {
                if self.fingers[i - 1].is_none() && self.rng.coin() {
                    self.search_finger(now, i, false);
                    break;
                }
            }
            let d = self.jitter(self.settings.ping_interval);
            self.next_finger = Some(now + d);
        }
        if self.next_partition.is_some_and(|t| t <= now) {
            // §10.7.4.4: Ping our own ID through a bootstrap peer — own ID + 1 (see
            // `after_me`), which our successor answers when the overlay is whole.
            let n = self.bootstrap.len();
            let via = (0..n).find_map(|k| {
                let b = self.bootstrap[(self.partition_idx + k) % n];
                (self.is_up(&b) && b != self.me).then_some((b, (self.partition_idx + k + 1) % n))
            });
            if let Some((b, next)) = via {
                self.partition_idx = next;
                self.partition_via = Some(b);
                let target = self.after_me();
                self.actions.push_back(TopologyAction::Ping {
                    target,
                    via: Some(b),
                });
            }
            let d = self.jitter(self.settings.ping_interval);
            self.next_partition = Some(now + d);
        }
    }

    fn joining_timers(&mut self, now: Instant) {
        let Phase::Joining(js) = &self.phase else {
            return;
        };
        if js.deadline > now {
            return;
        }
        match js.step {
            JoinStep::Wait | JoinStep::AttachAp => self.start_ap_lookup(now),
            JoinStep::Building => {
                if js.ap_update_seen && !self.succs.is_empty() {
                    // Attaches that never completed belong to nodes that are gone.
                    self.pending.retain(|p| p.kind != PendingKind::Neighbor);
                    self.advance_join(now);
                } else {
                    self.restart_join(now, Duration::ZERO);
                }
            }
            JoinStep::JoinSent(_) => {
                let rounds = js.rounds + 1;
                let wait = self.backoff(rounds);
                self.restart_join(now, wait);
                if let Phase::Joining(js) = &mut self.phase {
                    js.rounds = rounds;
                }
            }
        }
    }

    fn client_timers(&mut self, now: Instant) {
        let Phase::Client(c) = &self.phase else {
            return;
        };
        let retry = c.retry_at.is_some_and(|t| t <= now);
        let check = c.next_check <= now;
        let peer = c.peer;
        let idle = c.peer.is_none() && c.retry_at.is_none();
        if retry && let Phase::Client(c) = &mut self.phase {
            c.retry_at = None;
        }
        if retry || idle {
            self.client_attach(now, None);
        }
        if check {
            let d = self.jitter(self.settings.update_interval);
            if let Phase::Client(c) = &mut self.phase {
                c.next_check = now + d;
            }
            // §4.2.1: check that our peer is still the responsible one.
            self.client_attach(now, peer);
        }
    }
}

impl Topology for Chord {
    fn node_id(&self) -> NodeId {
        self.me
    }

    fn start(&mut self, now: Instant, mode: StartMode) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        self.now = Some(now);
        self.started = Some(now);
        match mode {
            StartMode::FirstNode => {
                self.first_node = true;
                self.become_joined(now);
            }
            StartMode::Join { bootstrap } => {
                self.set_bootstrap(now, bootstrap);
                self.phase = Phase::Joining(JoinState {
                    step: JoinStep::Wait,
                    deadline: now,
                    boot_idx: 0,
                    rounds: 0,
                    ap: None,
                    ap_update_seen: false,
                });
                self.start_ap_lookup(now);
            }
            StartMode::Client { bootstrap } => {
                self.set_bootstrap(now, bootstrap);
                let d = self.jitter(self.settings.update_interval);
                self.phase = Phase::Client(ClientState {
                    peer: None,
                    boot_idx: 0,
                    rounds: 0,
                    retry_at: None,
                    next_check: now + d,
                });
                self.client_attach(now, None);
            }
        }
        self.after_change(now);
    }

    fn leave(&mut self, now: Instant) {
        self.now = Some(now);
        if self.joined() {
            // §10.9: Leave to every neighbour; from_succ (our successors) to those we
            // are a successor of, from_pred (our predecessors) to the others.
            let succ_data = ChordLeaveData::FromSucc {
                successors: self.succs.clone(),
            }
            .to_bytes()
            .ok();
            let pred_data = ChordLeaveData::FromPred {
                predecessors: self.preds.clone(),
            }
            .to_bytes()
            .ok();
            for n in self.neighbors_set() {
                let data = if self.preds.contains(&n) {
                    &succ_data
                } else {
                    &pred_data
                };
                if let Some(d) = data
                    && self.is_up(&n)
                {
                    self.actions.push_back(TopologyAction::SendLeave {
                        to: n,
                        overlay_specific_data: d.clone(),
                    });
                }
            }
        }
        self.phase = Phase::Left;
        self.pending.clear();
        self.succs.clear();
        self.preds.clear();
        self.fingers.iter_mut().for_each(|f| *f = None);
        self.next_update = None;
        self.next_finger = None;
        self.next_partition = None;
    }

    fn is_joined(&self) -> bool {
        self.joined()
    }

    fn is_responsible(&self, id: &ResourceId) -> bool {
        self.joined() && self.responsible_at(pos(id.as_bytes()))
    }

    fn next_hop(&self, id: &[u8], connected: &dyn Fn(&NodeId) -> bool) -> NextHop {
        if id == self.me.as_bytes() {
            return NextHop::Local;
        }
        let exact = NodeId::from_slice(id).filter(|n| n.len() == self.me.len() && *n != self.me);
        match &self.phase {
            Phase::Idle | Phase::Left => return NextHop::None,
            Phase::Client(c) => {
                // A client never routes: it sends everything to its peer.
                if let Some(n) = exact
                    && connected(&n)
                {
                    return NextHop::Peer(n);
                }
                return match c.peer {
                    Some(p) if connected(&p) => NextHop::Peer(p),
                    _ => NextHop::None,
                };
            }
            Phase::Joining(_) | Phase::Joined => {}
        }
        let k = pos(id);
        let responsible = self.joined() && self.responsible_at(k);
        if responsible {
            // §6.1.1: the core delivers to a directly connected client itself.
            return NextHop::Local;
        }
        // §10.3: "not responsible … but directly connected to a node with Node-ID k".
        if let Some(n) = exact
            && connected(&n)
        {
            return NextHop::Peer(n);
        }
        // §10.3: the routing-table peer with the largest ID in (me, k); else the smallest
        // ID greater than k.
        let dk = dist(self.at, k);
        let mut before: Option<(u128, NodeId)> = None;
        let mut after: Option<(u128, NodeId)> = None;
        let table = self
            .succs
            .iter()
            .chain(self.preds.iter())
            .chain(self.fingers.iter().flatten());
        for n in table {
            if !connected(n) {
                continue;
            }
            let at = pos(n.as_bytes());
            let dn = dist(self.at, at);
            if dn != 0 && dn < dk {
                if before.is_none_or(|(b, _)| dn > b) {
                    before = Some((dn, *n));
                }
            } else {
                let da = dist(k, at);
                if after.is_none_or(|(a, _)| da < a) {
                    after = Some((da, *n));
                }
            }
        }
        if let Some((_, n)) = before.or(after) {
            return NextHop::Peer(n);
        }
        // Not joined and no table yet: through the admitting or a bootstrap peer.
        if let Phase::Joining(js) = &self.phase {
            let fallback = js
                .ap
                .into_iter()
                .chain(self.bootstrap.iter().copied())
                .find(|n| connected(n));
            if let Some(n) = fallback {
                return NextHop::Peer(n);
            }
        }
        NextHop::None
    }

    fn route_query_answer(
        &self,
        destination: &Destination,
        connected: &dyn Fn(&NodeId) -> bool,
    ) -> Result<Bytes, ErrorCode> {
        if !self.joined() {
            return Err(ErrorCode::NOT_FOUND);
        }
        let id: &[u8] = match destination {
            Destination::Node(n) => n.as_bytes(),
            Destination::Resource(r) => r.as_bytes(),
            // Opaque ids are the core's to resolve (§6.4.2.4 lets us refuse them).
            _ => return Err(ErrorCode::INVALID_MESSAGE),
        };
        let next_peer = match self.next_hop(id, connected) {
            NextHop::Peer(n) => n,
            NextHop::Local => match destination {
                Destination::Node(n) if *n != self.me && connected(n) => *n,
                _ => self.me,
            },
            NextHop::None => return Err(ErrorCode::NOT_FOUND),
        };
        ChordRouteQueryAns { next_peer }
            .to_bytes()
            .map_err(|_| ErrorCode::INVALID_MESSAGE)
    }

    fn answer_join(&mut self, now: Instant, joining: NodeId) -> Result<Bytes, ErrorCode> {
        self.now = Some(now);
        self.join_acceptable(&joining)?;
        self.seen_alive(&joining);
        if let Some(l) = self.links.get_mut(&joining) {
            l.peer = true;
            l.left = false;
            // §10.5 step 7: an Update labelling it as our predecessor, even if nothing
            // else changes.
            l.greeted = false;
        }
        self.after_change(now);
        if self.links.get(&joining).is_some_and(|l| !l.greeted) {
            let body = self.neighbors_body();
            self.send_update(joining, body);
        }
        Ok(Bytes::new())
    }

    fn handle(&mut self, now: Instant, input: TopologyInput) -> Result<(), ErrorCode> {
        self.now = Some(now);
        let res = match input {
            TopologyInput::LinkUp { peer } => {
                self.on_link_up(now, peer);
                Ok(())
            }
            TopologyInput::LinkDown { peer } => {
                self.on_link_down(now, peer);
                Ok(())
            }
            TopologyInput::AttachAnswered { target, peer } => {
                self.on_attach_answered(now, target, peer);
                Ok(())
            }
            TopologyInput::AttachFailed { target, error } => {
                if let Some(i) = self.pending_for(&target) {
                    let p = self.pending.remove(i);
                    if error == Some(ErrorCode::IN_PROGRESS)
                        && p.kind == PendingKind::Neighbor
                        && let Destination::Node(n) = p.target
                    {
                        // §6.5.1.2: its own Attach to us is outstanding (it has the
                        // larger Node-ID) or answered: a link is coming, or its Attach
                        // is lost and it gives up within a request lifetime. Look again
                        // soon rather than after the full back-off.
                        self.back_off_for(n, now, self.in_progress_retry());
                        return Ok(());
                    }
                    self.on_attach_failed(now, p);
                }
                Ok(())
            }
            TopologyInput::Update { from, body } => self.on_update(now, from, body),
            TopologyInput::JoinRequest { from, .. } => self.join_acceptable(&from),
            TopologyInput::JoinAnswered { from, result } => {
                if let Phase::Joining(js) = &self.phase
                    && js.step == JoinStep::JoinSent(from)
                {
                    match result {
                        Ok(_) => self.become_joined(now),
                        Err(_) => {
                            let rounds = js.rounds + 1;
                            let wait = self.backoff(rounds);
                            self.restart_join(now, wait);
                        }
                    }
                }
                Ok(())
            }
            TopologyInput::Leave {
                from,
                overlay_specific_data,
            } => self.on_leave(now, from, overlay_specific_data),
            TopologyInput::RouteQueryAnswered { .. } => Ok(()),
            TopologyInput::PingAnswered { target, responder } => {
                self.on_ping_answered(now, target, responder);
                Ok(())
            }
            TopologyInput::UpdateRequested { from } => {
                self.on_update_requested(from);
                Ok(())
            }
        };
        self.after_change(now);
        self.advance_join(now);
        res
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        self.expire(now);
        match &self.phase {
            Phase::Joined => self.joined_timers(now),
            Phase::Joining(_) => self.joining_timers(now),
            Phase::Client(_) => self.client_timers(now),
            Phase::Idle | Phase::Left => {}
        }
        self.after_change(now);
        self.advance_join(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        };
        match &self.phase {
            Phase::Idle | Phase::Left => return None,
            Phase::Joined => {
                at(self.repair_at);
                at(self.next_update);
                at(self.next_finger);
                at(self.next_partition);
            }
            Phase::Joining(js) => at(Some(js.deadline)),
            Phase::Client(c) => {
                at(c.retry_at);
                at(Some(c.next_check));
            }
        }
        for p in &self.pending {
            at(Some(p.deadline));
        }
        t
    }

    fn poll_action(&mut self) -> Option<TopologyAction> {
        self.actions.pop_front()
    }

    fn routing_table(&self) -> Vec<NodeId> {
        if let Phase::Client(c) = &self.phase {
            return c.peer.into_iter().collect();
        }
        let mut out: Vec<NodeId> = Vec::new();
        for n in self
            .succs
            .iter()
            .chain(self.preds.iter())
            .chain(self.fingers.iter().flatten())
        {
            if !out.contains(n) {
                out.push(*n);
            }
        }
        out
    }

    fn neighbors(&self) -> Vec<(&'static str, Vec<NodeId>)> {
        let mut fingers: Vec<NodeId> = Vec::new();
        for f in self.fingers.iter().flatten() {
            if !fingers.contains(f) {
                fingers.push(*f);
            }
        }
        vec![
            ("successors", self.successors()),
            ("predecessors", self.predecessors()),
            ("fingers", fingers),
        ]
    }

    /// §6.3.4: an answer for a Resource-ID must come from a node at least as close to it
    /// as every node of our neighbour table (clockwise distance on the ring).
    fn may_answer(&self, signer: &NodeId, id: &ResourceId) -> bool {
        if signer.len() != self.me.len() || id.as_bytes().len() != self.me.len() {
            return true;
        }
        let r = pos(id.as_bytes());
        let d = |n: &NodeId| pos(n.as_bytes()).wrapping_sub(r);
        let ds = d(signer);
        let mut known = self.predecessors();
        known.extend(self.successors());
        if self.is_joined() {
            known.push(self.me);
        }
        known.iter().all(|n| ds <= d(n))
    }

    fn resource_id(&self, resource_name: &[u8]) -> ResourceId {
        crate::identity::chord_resource_id(resource_name)
    }

    fn replica_set(&self, _id: &ResourceId) -> Vec<NodeId> {
        // §10.4: the successor and that peer's successor.
        if !self.joined() {
            return Vec::new();
        }
        self.succs.iter().take(REPLICAS).copied().collect()
    }

    fn storage_role(&self, id: &ResourceId) -> StorageRole {
        if !self.joined() || id.as_bytes().len() != self.me.len() {
            return StorageRole::Outside;
        }
        let k = pos(id.as_bytes());
        if self.responsible_at(k) {
            return StorageRole::Responsible;
        }
        // §10.4, §10.7.3: we are a replica while fewer than three predecessors lie between
        // R and us — R is in the range of our first or second predecessor.
        let preds = &self.preds;
        for (i, p) in preds.iter().enumerate().take(REPLICAS) {
            let inside = match preds.get(i + 1) {
                Some(lower) => in_open_closed(k, pos(lower.as_bytes()), pos(p.as_bytes())),
                // A short list is the whole ring: the last predecessor's range reaches
                // back to us.
                None => preds.len() < self.r() && in_open_closed(k, self.at, pos(p.as_bytes())),
            };
            if inside {
                return StorageRole::Replica { responsible: *p };
            }
        }
        StorageRole::Outside
    }

    fn accepts_replica_from(&self, from: &NodeId, id: &ResourceId) -> bool {
        // §7.4.1.1 for CHORD-RELOAD: a replica Store comes from a node in the replica set
        // or closer to R — our predecessors (the responsible peer and the replica before
        // us) or our successors (the previous responsible peer handing data over when we
        // joined, §10.5 step 6, or a replica giving back what the dead responsible peer
        // held).
        // A node we have not heard of yet whose Node-ID lies between our second
        // predecessor and us has just joined next to us: it is one of our first two
        // predecessors, and its Update is on the way (§10.5: the new peer's neighbours
        // learn of it by Updates; its first replica Stores can arrive before them).
        let unheard_neighbour = || match self.preds.get(REPLICAS - 1) {
            Some(far) => in_open(pos(from.as_bytes()), pos(far.as_bytes()), self.at),
            None => true, // fewer predecessors than replicas: the whole ring is near
        };
        self.joined()
            && (self.preds.contains(from) || self.succs.contains(from) || unheard_neighbour())
            && self.storage_role(id) != StorageRole::Outside
    }

    fn responsible_ppb(&self) -> u32 {
        if !self.joined() {
            return 0;
        }
        match self.preds.first() {
            None => 1_000_000_000,
            Some(p) => {
                let d = dist(pos(p.as_bytes()), self.at);
                (((d >> 32) * 1_000_000_000) >> 96) as u32
            }
        }
    }
}

impl Chord {
    /// The plug-in for a node of the overlay (CHORD-RELOAD needs 128-bit Node-IDs, §10).
    pub fn plugin(cx: &TopologyContext<'_>) -> Result<Box<dyn Topology + Send>, String> {
        if cx.overlay.node_id_len() != 16 {
            return Err(format!(
                "CHORD-RELOAD needs 16-byte Node-IDs (RFC 6940 §10), the configuration has node-id-length {}",
                cx.overlay.node_id_len()
            ));
        }
        Ok(Box::new(Chord::new(
            cx.node_id,
            ChordSettings::from_overlay(cx.overlay),
        )))
    }

    /// Predecessors, nearest first.
    pub fn predecessors(&self) -> Vec<NodeId> {
        if self.is_client() {
            Vec::new()
        } else {
            self.preds.clone()
        }
    }

    /// Successors, nearest first (a client: the peer it is attached to).
    pub fn successors(&self) -> Vec<NodeId> {
        match &self.phase {
            Phase::Client(c) => c.peer.into_iter().collect(),
            _ => self.succs.clone(),
        }
    }

    fn set_bootstrap(&mut self, now: Instant, bootstrap: Vec<NodeId>) {
        let mut seen = BTreeSet::new();
        self.bootstrap = bootstrap
            .into_iter()
            .filter(|b| *b != self.me && b.len() == self.me.len() && seen.insert(*b))
            .take(64)
            .collect();
        for b in self.bootstrap.clone() {
            // "bootstrap peers to which the core already holds links"
            self.links.entry(b).or_insert_with(|| Link::new(now, true));
        }
    }
}
