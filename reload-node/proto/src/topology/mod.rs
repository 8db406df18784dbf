//! The topology plug-in interface (RFC 6940 §5.3, §6.4) and CHORD-RELOAD (§10), its
//! first implementation.
//!
//! A plug-in is a **sans-IO state machine** like the node core that drives it: it never
//! sends a message, opens a link or reads a clock. The core feeds it [`TopologyInput`]s
//! (links that came up or went down, topology messages that arrived, answers to what it
//! asked for) with the current time, and drains [`TopologyAction`]s (messages to send,
//! links to set up or drop, events for the application). Routing and storage code only use
//! this trait, never Chord internals.
//!
//! Vocabulary:
//! - a *link* is an authenticated (D)TLS connection to a peer whose Node-ID the core has
//!   checked against its certificate; the plug-in only ever sees Node-IDs;
//! - *connected* peers are those with a link; the plug-in's routing table (neighbours
//!   and fingers) is a subset of them, and the core may hold links the plug-in has not
//!   adopted (an Attach alone does not put a node in the routing table, §6.5.1.2);
//! - the plug-in decides, the core executes and reports back.

pub mod chord;
pub mod xor;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use bytes::Bytes;
use reload_wire::{Destination, ErrorCode, NodeId, ResourceId};

use crate::overlay::Overlay;

/// How a node enters the overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Start a new overlay alone: this node is the whole ring (RFC 6940 §6.4.2.1: a way
    /// for a node to know it may start a new overlay). Only with an explicit flag.
    FirstNode,
    /// Join through the bootstrap peers to which the core already holds links
    /// (§10.5, §11.4).
    Join { bootstrap: Vec<NodeId> },
    /// Join as a client (§4.2): no routing, no storage; attach to the responsible peer.
    Client { bootstrap: Vec<NodeId> },
}

/// What the core tells the plug-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyInput {
    /// A link to `peer` is up (after the (D)TLS handshake bound it to that Node-ID).
    LinkUp { peer: NodeId },
    /// The link to `peer` failed or was closed (§10.7.1, §10.7.2).
    LinkDown { peer: NodeId },
    /// An Attach the plug-in asked for ([`TopologyAction::Attach`] with this `target`)
    /// was answered by `peer`, who is (or routes for) the target; a `LinkUp` follows.
    AttachAnswered { target: Destination, peer: NodeId },
    /// An Attach the plug-in asked for failed (timeout or error answer).
    AttachFailed {
        target: Destination,
        error: Option<ErrorCode>,
    },
    /// An UpdateReq body (§6.4.2.3) arrived from a directly connected `from`.
    Update { from: NodeId, body: Bytes },
    /// A JoinReq from `from` arrived on a link bound to it (§6.4.2.1); the plug-in answers
    /// with [`Topology::answer_join`].
    JoinRequest {
        from: NodeId,
        overlay_specific_data: Bytes,
    },
    /// The JoinAns for our Join arrived from `from`, or it failed.
    JoinAnswered {
        from: NodeId,
        result: Result<Bytes, ErrorCode>,
    },
    /// A LeaveReq from `from` arrived on a link bound to it (§6.4.2.2).
    Leave {
        from: NodeId,
        overlay_specific_data: Bytes,
    },
    /// The answer to a [`TopologyAction::RouteQuery`].
    RouteQueryAnswered {
        asked: NodeId,
        body: Result<Bytes, ErrorCode>,
    },
    /// The answer to a [`TopologyAction::Ping`] (used for partition detection, §10.7.4.4):
    /// who answered, or that nobody did.
    PingAnswered {
        target: Destination,
        responder: Option<NodeId>,
    },
    /// A RouteQuery with send_update from `from` (§6.4.2.4): send it a full Update.
    UpdateRequested { from: NodeId },
}

/// What the plug-in asks the core to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyAction {
    /// Send an Attach (§6.5.1) towards `target`, optionally source-routed through
    /// `via` (§10.6: neighbour Attaches go through the peer that reported the
    /// neighbour), with `send_update` set as given.
    Attach {
        target: Destination,
        via: Option<NodeId>,
        send_update: bool,
    },
    /// Send an UpdateReq with this topology-specific body to a connected peer.
    SendUpdate { to: NodeId, body: Bytes },
    /// Send a JoinReq to the admitting peer (§10.5).
    SendJoin {
        to: NodeId,
        overlay_specific_data: Bytes,
    },
    /// Send a LeaveReq (§10.9) to a connected peer.
    SendLeave {
        to: NodeId,
        overlay_specific_data: Bytes,
    },
    /// Ask `to` where it would route `destination` (§6.4.2.4).
    RouteQuery {
        to: NodeId,
        destination: Destination,
        send_update: bool,
    },
    /// Ping `target` (routed through the overlay, or via a bootstrap peer).
    Ping {
        target: Destination,
        via: Option<NodeId>,
    },
    /// The plug-in no longer needs the link to `peer` (the core may close it when nothing
    /// else uses it).
    ReleaseLink { peer: NodeId },
    /// This node now belongs to the ring: it may route and store (§10.5 done).
    Joined,
    /// The neighbour set changed (predecessors or successors), for the core's storage
    /// replication (§10.7.3) and the application.
    NeighborsChanged,
    /// The node cannot reach the overlay through any bootstrap peer (§10.7.4.4) or gave
    /// up joining.
    Isolated { reason: String },
}

/// Where a message for an ID goes next (RFC 6940 §6.1, §10.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// This node is responsible for the ID.
    Local,
    /// Forward to this connected peer.
    Peer(NodeId),
    /// No route (not joined yet, or the routing table is empty).
    None,
}

/// This node's part in storing the data of a Resource-ID (RFC 6940 §10.4, §10.7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageRole {
    /// We are responsible: we answer Store, Fetch, Stat and Find for it, and copy what we
    /// store to the replica set.
    Responsible,
    /// We hold a replica for the peer we believe responsible.
    Replica { responsible: NodeId },
    /// Neither: what we hold for it belongs to whoever is responsible now.
    Outside,
}

/// A topology plug-in (RFC 6940 §5.3).
pub trait Topology {
    /// Our Node-ID.
    fn node_id(&self) -> NodeId;

    /// Begins the life of the node in the overlay.
    fn start(&mut self, now: Instant, mode: StartMode);

    /// Leaves the overlay gracefully (§10.9): emits the Leave messages.
    fn leave(&mut self, now: Instant);

    /// Whether this node has joined (may route and store).
    fn is_joined(&self) -> bool;

    /// Whether this node is responsible for `id` (§10.3: pred < id ≤ me).
    fn is_responsible(&self, id: &ResourceId) -> bool;

    /// Where a message for `id` goes next; `connected` says which peers have a link.
    fn next_hop(&self, id: &[u8], connected: &dyn Fn(&NodeId) -> bool) -> NextHop;

    /// Whether `signer` may answer a request we sent to the Resource-ID `id` (§6.3.4): it
    /// must be at least as close to `id` as every node we know of.
    fn may_answer(&self, signer: &NodeId, id: &ResourceId) -> bool;

    /// The Resource-ID of a resource name under the overlay's hash function (§5.2, §10.2).
    fn resource_id(&self, resource_name: &[u8]) -> ResourceId;

    /// The body of our RouteQueryAns for `destination` (§6.4.2.4, §10.8).
    fn route_query_answer(
        &self,
        destination: &Destination,
        connected: &dyn Fn(&NodeId) -> bool,
    ) -> Result<Bytes, ErrorCode>;

    /// The body of our JoinAns to `joining` (§6.4.2.1), or an error.
    fn answer_join(&mut self, now: Instant, joining: NodeId) -> Result<Bytes, ErrorCode>;

    /// Processes one input. An `Err` is the error the core answers the message with.
    fn handle(&mut self, now: Instant, input: TopologyInput) -> Result<(), ErrorCode>;

    /// Runs timers that are due.
    fn handle_timeout(&mut self, now: Instant);

    /// When [`Topology::handle_timeout`] next needs to run.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next action, if any.
    fn poll_action(&mut self) -> Option<TopologyAction>;

    /// Peers whose links the plug-in relies on (routing table), for the core's link
    /// management and for diagnostics.
    fn routing_table(&self) -> Vec<NodeId>;

    /// The neighbour table by section, each nearest first, for status displays and tests
    /// (CHORD-RELOAD: `successors`, `predecessors`, `fingers`).
    fn neighbors(&self) -> Vec<(&'static str, Vec<NodeId>)>;

    /// One section of [`Topology::neighbors`] (empty when the plug-in has none by that
    /// name).
    fn neighbor_section(&self, name: &str) -> Vec<NodeId> {
        self.neighbors()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    /// The replica set of `id` when this node is responsible for it (§10.4): the peers to
    /// store copies on.
    fn replica_set(&self, id: &ResourceId) -> Vec<NodeId>;

    /// Our part in storing the data of `id` (§10.4, §10.7.3).
    fn storage_role(&self, id: &ResourceId) -> StorageRole;

    /// Whether a replica Store (replica_number > 0) for `id` signed by `from` is plausible
    /// (§7.4.1.1): it comes from a node that is, or was lately, in the replica set of
    /// `id`, and we hold data for `id` ourselves.
    fn accepts_replica_from(&self, from: &NodeId, id: &ResourceId) -> bool;

    /// Share of the ID space this node is responsible for, in parts per billion (Probe
    /// responsible_set, §6.4.2.5).
    fn responsible_ppb(&self) -> u32;
}

/// What a plug-in is built from: our Node-ID and the overlay (its configuration carries
/// the plug-in's parameters, e.g. `chord-update-interval`).
#[derive(Clone, Copy, Debug)]
pub struct TopologyContext<'a> {
    pub node_id: NodeId,
    pub overlay: &'a Overlay,
}

/// Builds a plug-in, or says why it cannot run with this configuration.
pub type TopologyConstructor = fn(&TopologyContext<'_>) -> Result<Box<dyn Topology + Send>, String>;

/// Why no plug-in could be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyError {
    /// The configuration names a plug-in this node does not have.
    Unknown { name: String, known: Vec<String> },
    /// The plug-in refused the configuration (e.g. its Node-ID length).
    Refused { name: String, why: String },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::Unknown { name, known } => write!(
                f,
                "the configuration's topology-plugin {name:?} is not supported by this node (it has: {})",
                known.join(", ")
            ),
            TopologyError::Refused { name, why } => write!(f, "topology plug-in {name}: {why}"),
        }
    }
}

impl std::error::Error for TopologyError {}

/// The plug-ins a node can run, by the name the configuration's `topology-plugin` gives
/// (§11.1). The default set holds CHORD-RELOAD; an application may register others.
#[derive(Clone)]
pub struct Topologies {
    plugins: BTreeMap<String, TopologyConstructor>,
}

impl fmt::Debug for Topologies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.plugins.keys()).finish()
    }
}

impl Default for Topologies {
    fn default() -> Self {
        let mut t = Topologies::empty();
        t.register(crate::config::DEFAULT_TOPOLOGY_PLUGIN, chord::Chord::plugin);
        t
    }
}

impl Topologies {
    /// No plug-in at all.
    pub fn empty() -> Self {
        Topologies {
            plugins: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the plug-in called `name`.
    pub fn register(&mut self, name: &str, constructor: TopologyConstructor) -> &mut Self {
        self.plugins.insert(name.to_string(), constructor);
        self
    }

    /// The names of the plug-ins.
    pub fn names(&self) -> Vec<String> {
        self.plugins.keys().cloned().collect()
    }

    /// The plug-in the overlay's configuration names, for this node.
    pub fn build(
        &self,
        cx: &TopologyContext<'_>,
    ) -> Result<Box<dyn Topology + Send>, TopologyError> {
        let name = &cx.overlay.config().topology_plugin;
        let constructor = self
            .plugins
            .get(name)
            .ok_or_else(|| TopologyError::Unknown {
                name: name.clone(),
                known: self.names(),
            })?;
        constructor(cx).map_err(|why| TopologyError::Refused {
            name: name.clone(),
            why,
        })
    }
}
