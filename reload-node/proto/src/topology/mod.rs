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

use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_wire::{Destination, ErrorCode, NodeId, ResourceId};

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

/// Local settings of a plug-in, from the overlay configuration (RFC 6940 §11.1) and the
/// node's own tuning.
#[derive(Clone, Debug)]
pub struct TopologySettings {
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
    /// How long an unanswered request of the plug-in is waited for (the core's maximum
    /// request lifetime, from overlay-reliability-timer, §3, §6.2.1).
    pub request_timeout: Duration,
}

impl TopologySettings {
    /// The settings an overlay configuration gives, with this implementation's local
    /// defaults: neighbour lists of 5 (RFC 6940 §10.3 asks for at least 3), up to 32
    /// fingers (§10.3: SHOULD reach at least 16).
    pub fn from_config(config: &crate::config::OverlayConfig) -> Self {
        TopologySettings {
            node_id_len: config.node_id_length,
            update_interval: config.chord_update_interval,
            ping_interval: config.chord_ping_interval,
            reactive: config.chord_reactive,
            neighbor_list_size: 5,
            max_fingers: 32,
            request_timeout: config.overlay_reliability_timer * crate::node::MAX_TRANSMISSIONS,
        }
    }
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

    /// Predecessors, nearest first.
    fn predecessors(&self) -> Vec<NodeId>;

    /// Successors, nearest first.
    fn successors(&self) -> Vec<NodeId>;

    /// The replica set for data this node is responsible for (§10.4): the next peers to
    /// store copies on.
    fn replica_set(&self) -> Vec<NodeId>;

    /// Share of the ID space this node is responsible for, in parts per billion (Probe
    /// responsible_set, §6.4.2.5).
    fn responsible_ppb(&self) -> u32;
}
