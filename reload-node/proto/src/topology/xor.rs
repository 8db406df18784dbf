//! XOR-TEST: a small Kademlia-like topology plug-in, to show that the core's plug-in
//! interface admits topologies other than a ring (RFC 6940 §5.3) — the core's routing and
//! transaction tests run on it as on a ring. It is not an overlay algorithm for
//! production: every node learns every Node-ID by flooding, which only suits small test
//! overlays.
//!
//! - Distance is the XOR of two IDs (their first 16 bytes, as for CHORD-RELOAD);
//! - every node learns every Node-ID: an Update (§6.4.2.3) carries the IDs its sender
//!   knows, and a node that learns new ones tells its linked peers;
//! - a node links to at most [`XorSettings::per_bucket`] peers of each bucket (the peers
//!   whose highest bit differing from ours is the same), attaching through the peer that
//!   reported them (§10.6-style source route);
//! - a node is responsible for an ID when no node it knows is closer to it; a message
//!   goes to the connected peer closest to its destination. With every bucket that can be
//!   filled holding a peer, each hop at least halves the distance's leading bit, and the
//!   message reaches the closest node (the Kademlia argument).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use reload_wire::{Destination, ErrorCode, NodeId, ResourceId};

use super::{
    NextHop, StartMode, StorageRole, Topology, TopologyAction, TopologyContext, TopologyInput,
};

/// The plug-in's name in a configuration's `topology-plugin` (tests register it).
pub const NAME: &str = "XOR-TEST";

/// Most Node-IDs a node remembers.
const MAX_KNOWN: usize = 4096;

/// Settings of [`Xor`].
#[derive(Clone, Copy, Debug)]
pub struct XorSettings {
    /// Peers linked per bucket (1 gives multi-hop routes even in small overlays).
    pub per_bucket: usize,
}

impl Default for XorSettings {
    fn default() -> Self {
        XorSettings { per_bucket: 1 }
    }
}

fn pos(id: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = id.len().min(16);
    b[..n].copy_from_slice(&id[..n]);
    u128::from_be_bytes(b)
}

/// The XOR plug-in (see the module documentation).
#[derive(Debug)]
pub struct Xor {
    me: NodeId,
    at: u128,
    settings: XorSettings,
    joined: bool,
    /// Every Node-ID we know of (but ours).
    known: BTreeSet<NodeId>,
    /// Who told us of a Node-ID (to source-route the Attach through it).
    reporter: BTreeMap<NodeId, NodeId>,
    /// Peers with a link up.
    up: BTreeSet<NodeId>,
    /// Attaches in flight.
    attaching: BTreeSet<NodeId>,
    actions: VecDeque<TopologyAction>,
}

impl Xor {
    pub fn new(me: NodeId, settings: XorSettings) -> Self {
        Xor {
            at: pos(me.as_bytes()),
            me,
            settings,
            joined: false,
            known: BTreeSet::new(),
            reporter: BTreeMap::new(),
            up: BTreeSet::new(),
            attaching: BTreeSet::new(),
            actions: VecDeque::new(),
        }
    }

    /// The plug-in for a node of the overlay, with the default settings.
    pub fn plugin(cx: &TopologyContext<'_>) -> Result<Box<dyn Topology + Send>, String> {
        Ok(Box::new(Xor::new(cx.node_id, XorSettings::default())))
    }

    fn dist(&self, a: &[u8], b: u128) -> u128 {
        pos(a) ^ b
    }

    /// The bucket of a peer: the index of the highest bit where it differs from us.
    fn bucket(&self, n: &NodeId) -> u32 {
        (pos(n.as_bytes()) ^ self.at).leading_zeros()
    }

    fn update_body(&self) -> Bytes {
        let mut b = BytesMut::new();
        for n in std::iter::once(&self.me).chain(self.known.iter()) {
            b.extend_from_slice(n.as_bytes());
        }
        b.freeze()
    }

    fn tell(&mut self, to: NodeId) {
        let body = self.update_body();
        self.actions
            .push_back(TopologyAction::SendUpdate { to, body });
    }

    fn tell_everyone(&mut self) {
        for p in self.up.clone() {
            self.tell(p);
        }
    }

    /// Attaches to learnt nodes whose bucket has room.
    fn fill_buckets(&mut self) {
        let mut per_bucket: BTreeMap<u32, usize> = BTreeMap::new();
        for p in self.up.iter().chain(self.attaching.iter()) {
            *per_bucket.entry(self.bucket(p)).or_default() += 1;
        }
        let candidates: Vec<NodeId> = self
            .known
            .iter()
            .filter(|n| !self.up.contains(n) && !self.attaching.contains(n))
            .copied()
            .collect();
        for n in candidates {
            let b = self.bucket(&n);
            let used = per_bucket.entry(b).or_default();
            if *used >= self.settings.per_bucket {
                continue;
            }
            *used += 1;
            self.attaching.insert(n);
            let via = self
                .reporter
                .get(&n)
                .copied()
                .filter(|r| self.up.contains(r));
            self.actions.push_back(TopologyAction::Attach {
                target: Destination::Node(n),
                via,
                send_update: false,
            });
        }
    }

    fn learn(&mut self, from: NodeId, body: &[u8]) -> bool {
        let len = self.me.len();
        let mut new = false;
        for chunk in body.chunks(len).filter(|c| c.len() == len) {
            let Some(n) = NodeId::from_slice(chunk) else {
                continue;
            };
            if n == self.me || self.known.len() >= MAX_KNOWN {
                continue;
            }
            if self.known.insert(n) {
                self.reporter.insert(n, from);
                new = true;
            }
        }
        new
    }

    /// Whether no node we know is closer to `target` than we are.
    fn closest_known(&self, target: u128) -> bool {
        let mine = self.at ^ target;
        self.known
            .iter()
            .all(|n| self.dist(n.as_bytes(), target) > mine)
    }

    fn become_joined(&mut self) {
        if !self.joined {
            self.joined = true;
            self.actions.push_back(TopologyAction::Joined);
        }
    }
}

impl Topology for Xor {
    fn node_id(&self) -> NodeId {
        self.me
    }

    fn start(&mut self, _now: Instant, mode: StartMode) {
        match mode {
            StartMode::FirstNode => self.become_joined(),
            StartMode::Join { bootstrap } | StartMode::Client { bootstrap } => {
                for b in bootstrap {
                    if b != self.me {
                        self.known.insert(b);
                    }
                }
            }
        }
    }

    fn leave(&mut self, _now: Instant) {
        self.joined = false;
    }

    fn is_joined(&self) -> bool {
        self.joined
    }

    fn is_responsible(&self, id: &ResourceId) -> bool {
        self.closest_known(pos(id.as_bytes()))
    }

    fn next_hop(&self, id: &[u8], connected: &dyn Fn(&NodeId) -> bool) -> NextHop {
        let target = pos(id);
        let mine = self.at ^ target;
        let best = self
            .up
            .iter()
            .filter(|n| connected(n))
            .min_by_key(|n| self.dist(n.as_bytes(), target));
        match best {
            Some(n) if self.dist(n.as_bytes(), target) < mine => NextHop::Peer(*n),
            _ if self.joined && self.closest_known(target) => NextHop::Local,
            _ => NextHop::None,
        }
    }

    fn may_answer(&self, signer: &NodeId, id: &ResourceId) -> bool {
        let target = pos(id.as_bytes());
        let d = self.dist(signer.as_bytes(), target);
        d <= self.at ^ target
            && self
                .known
                .iter()
                .all(|n| d <= self.dist(n.as_bytes(), target))
    }

    fn resource_id(&self, resource_name: &[u8]) -> ResourceId {
        crate::identity::chord_resource_id(resource_name)
    }

    fn route_query_answer(
        &self,
        _destination: &Destination,
        _connected: &dyn Fn(&NodeId) -> bool,
    ) -> Result<Bytes, ErrorCode> {
        Err(ErrorCode::NOT_FOUND)
    }

    fn answer_join(&mut self, _now: Instant, _joining: NodeId) -> Result<Bytes, ErrorCode> {
        Ok(Bytes::new())
    }

    fn handle(&mut self, _now: Instant, input: TopologyInput) -> Result<(), ErrorCode> {
        match input {
            TopologyInput::LinkUp { peer } => {
                self.attaching.remove(&peer);
                self.up.insert(peer);
                let new = self.known.insert(peer);
                self.tell(peer);
                if new {
                    // Others learn of the newcomer.
                    self.tell_everyone();
                }
                self.actions.push_back(TopologyAction::NeighborsChanged);
            }
            TopologyInput::LinkDown { peer } | TopologyInput::Leave { from: peer, .. } => {
                self.up.remove(&peer);
                self.attaching.remove(&peer);
                self.actions.push_back(TopologyAction::NeighborsChanged);
                self.fill_buckets();
            }
            TopologyInput::Update { from, body } => {
                if self.learn(from, &body) {
                    self.tell_everyone();
                }
                self.become_joined();
                self.fill_buckets();
            }
            TopologyInput::AttachFailed { target, .. } => {
                if let Destination::Node(n) = target {
                    self.attaching.remove(&n);
                }
            }
            TopologyInput::UpdateRequested { from } => self.tell(from),
            TopologyInput::AttachAnswered { .. }
            | TopologyInput::JoinRequest { .. }
            | TopologyInput::JoinAnswered { .. }
            | TopologyInput::RouteQueryAnswered { .. }
            | TopologyInput::PingAnswered { .. } => {}
        }
        Ok(())
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn poll_action(&mut self) -> Option<TopologyAction> {
        self.actions.pop_front()
    }

    fn routing_table(&self) -> Vec<NodeId> {
        self.up.iter().copied().collect()
    }

    fn neighbors(&self) -> Vec<(&'static str, Vec<NodeId>)> {
        let mut peers: Vec<NodeId> = self.up.iter().copied().collect();
        peers.sort_by_key(|n| self.dist(n.as_bytes(), self.at));
        vec![("peers", peers)]
    }

    fn replica_set(&self, id: &ResourceId) -> Vec<NodeId> {
        // The next two closest to the ID after us.
        let target = pos(id.as_bytes());
        let mut v: Vec<NodeId> = self.known.iter().copied().collect();
        v.sort_by_key(|n| self.dist(n.as_bytes(), target));
        v.truncate(2);
        v
    }

    fn storage_role(&self, id: &ResourceId) -> StorageRole {
        // The three nodes closest to the ID hold its data: the closest is responsible.
        if !self.joined {
            return StorageRole::Outside;
        }
        let target = pos(id.as_bytes());
        let mine = self.at ^ target;
        let mut closer: Vec<&NodeId> = self
            .known
            .iter()
            .filter(|n| self.dist(n.as_bytes(), target) < mine)
            .collect();
        closer.sort_by_key(|n| self.dist(n.as_bytes(), target));
        match closer.len() {
            0 => StorageRole::Responsible,
            1 | 2 => StorageRole::Replica {
                responsible: *closer[0],
            },
            _ => StorageRole::Outside,
        }
    }

    fn accepts_replica_from(&self, from: &NodeId, id: &ResourceId) -> bool {
        self.known.contains(from) && self.storage_role(id) != StorageRole::Outside
    }

    fn responsible_ppb(&self) -> u32 {
        (1_000_000_000 / (self.known.len() as u64 + 1)) as u32
    }
}
