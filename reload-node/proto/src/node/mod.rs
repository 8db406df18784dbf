//! The sans-IO node core (RFC 6940 §5–§6): the endpoint that tells which bytes belong to
//! which link and admits new ones, the links, message receipt and forwarding (§6.1),
//! symmetric recursive routing (§6.2), end-to-end retransmission (§6.2.1), signatures at
//! the destination (§6.3.4), fragmentation (§6.7), the forwarding and link management
//! methods (§6.4, §6.5) and the seam where usages answer the other requests — driven by a
//! [`Topology`] plug-in.
//!
//! The core is a plain struct. The shell (a tokio runtime, or the simulator) feeds it what
//! happened on its sockets and the time, and drains what it produces:
//! - [`Node::accept_stream`], [`Node::handle_stream`] — a TCP connection accepted, opened,
//!   carrying bytes, ended;
//! - [`Node::handle_datagram`] — a UDP datagram, with the local and remote address (STUN,
//!   DTLS and TURN share one socket, RFC 7983);
//! - [`Node::handle_timeout`] — the time came that [`Node::poll_timeout`] asked for;
//! - [`Node::poll_transmit`] — bytes to write on a stream or send as a datagram;
//! - [`Node::poll_event`] — streams to open or close, and what happened for the
//!   application (links, ring membership, requests to serve, answers).
//!
//! It never opens a socket, reads a clock, or draws randomness of its own: `now` is passed
//! in, the wall clock is derived from the one given at construction, and randomness comes
//! from a seed (the shell seeds it from the OS; the simulator from its run seed).
//!
//! Layout: `endpoint` (transports and admission), `links` (link table, link events,
//! keepalives, certificate expiry), `routing` (§6.1: deliver, forward, drop), `inbound`
//! (checks at the destination, the core's own methods, the usage seam), `outbound` (our
//! requests and their answers, the topology plug-in's actions), `config_update` (§6.5.4).

mod app;
mod config_update;
mod endpoint;
pub mod fragment;
mod ice;
mod inbound;
mod links;
mod outbound;
mod reflexive;
mod routing;
mod storage;
mod turn;
mod tx;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reload_wire::link::OverlayLinkType;
use reload_wire::message::{ErrorResponse, MessageCode};
use reload_wire::{MessageBody, NodeId};

use crate::link::{LinkFactory, WallAnchor};
use crate::overlay::Overlay;
use crate::rand::{Csprng, Seed};
use crate::sign::{Credentials, Verifier};
use crate::topology::{StartMode, Topology};

pub use crate::overlay::MAX_TRANSMISSIONS;
pub use app::{
    AppFlowError, AppFlowEvent, AppFlowId, AppFlowInfo, SETUP_DEADLINE as APP_SETUP_DEADLINE,
};
pub use endpoint::{Admission, Refusal, StreamEvent, StreamId, Transport};
pub use ice::IceInfo;
pub use inbound::{InboundId, InboundRequest};
pub use links::LinkInfo;
pub use reflexive::{REPROBE, ReflexiveAddress};
pub use storage::{Fetched, MAX_REPLICATION_IN_FLIGHT, SWEEP_INTERVAL, everything};
pub use turn::TurnServer;
pub use tx::Purpose;

/// This node's own choices: where it listens, and the limits that bound its memory and
/// work. What the overlay decides comes from its configuration ([`Overlay`]); the link
/// layer's own settings belong to the [`LinkFactory`].
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Where we listen, with the link protocol of each: our host candidates in Attach
    /// (§6.5.1.5), and the UDP sockets DTLS links use.
    pub listen: Vec<(OverlayLinkType, SocketAddr)>,
    /// Answers remembered for retransmitted requests.
    pub answer_cache_size: usize,
    /// Certificates cached for signature checks.
    pub cert_cache_size: usize,
    /// Requests handed to the application and not answered yet.
    pub max_app_requests: usize,
    /// Requests of ours waiting for an answer, at most (the application's, the topology
    /// plug-in's, Updates, keepalives): beyond, new ones are refused.
    pub max_outstanding: usize,
    /// A DTLS link with no traffic for this long gets a Ping, so that a dead peer is
    /// noticed by the link's retransmission timeout (UDP has no connection to lose; RFC
    /// 6940 §6.6.3.1). 10 s by default (ICE keepalives are at least 15 s, RFC 5245 §10).
    pub dtls_keepalive: Duration,
    /// TURN servers to allocate relayed candidates on (ICE overlays, RFC 6940 §9).
    pub turn_servers: Vec<TurnServer>,
    /// UDP sockets for application flows (AppAttach over ICE, §6.5.2), apart from the
    /// overlay's: two flows between the same two nodes need different address pairs, and
    /// an overlay link may come to use the overlay sockets' pair at any time.
    pub app_sockets: Vec<SocketAddr>,
    /// Application flows (open or being set up) at once.
    pub max_app_flows: usize,
    /// Bytes held for messages being reassembled (§6.7).
    pub reassembly_buffer: usize,
    /// Messages being reassembled at once.
    pub reassembly_messages: usize,
    /// Which new links the endpoint admits.
    pub admission: Admission,
    /// What this node stores at most (values, bytes, bytes per user), RFC 6940 §7.
    pub storage_limits: crate::storage::StorageLimits,
}

impl NodeSettings {
    /// This implementation's defaults, listening on `listen`.
    pub fn new(listen: Vec<(OverlayLinkType, SocketAddr)>) -> Self {
        NodeSettings {
            listen,
            answer_cache_size: 4096,
            cert_cache_size: 1024,
            max_app_requests: 1024,
            max_outstanding: 4096,
            dtls_keepalive: Duration::from_secs(10),
            turn_servers: Vec::new(),
            app_sockets: Vec::new(),
            max_app_flows: 256,
            reassembly_buffer: 8 << 20,
            reassembly_messages: 1024,
            admission: Admission::default(),
            storage_limits: crate::storage::StorageLimits::default(),
        }
    }
}

/// What a node is made of.
pub struct NodeParts {
    pub settings: NodeSettings,
    /// The overlay configuration in force.
    pub overlay: Arc<Overlay>,
    pub credentials: Credentials,
    pub topology: Box<dyn Topology + Send>,
    /// Makes the links: (D)TLS ([`crate::link::SecureLinks`]) on a real peer, plain links
    /// in the simulator.
    pub links: Box<dyn LinkFactory>,
}

impl std::fmt::Debug for NodeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeParts")
            .field("node_id", &self.credentials.node_id)
            .field("overlay", &self.overlay.name())
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

/// How a node enters the overlay ([`Node::start`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Start a new overlay alone (only on the operator's explicit request, §6.4.2.1).
    FirstNode,
    /// Join as a peer through these bootstrap peers (§10.5, §11.4).
    Join(Vec<(OverlayLinkType, SocketAddr)>),
    /// Join as a client (§4.2) through these bootstrap peers.
    Client(Vec<(OverlayLinkType, SocketAddr)>),
}

/// A link, as the core names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// The pseudo-link of messages a node sends to itself (never given to the shell).
const LOOPBACK: LinkId = LinkId(0);

/// Bytes to send: written on a stream, or sent as one datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub transport: Transport,
    pub data: Bytes,
}

/// Why a request of ours failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// No answer after the last transmission (§6.2.1), or none possible: the request was
    /// source-routed through a peer whose link went down (every retransmission would be
    /// dropped by the peer now responsible for that Node-ID, §6.1.1).
    Timeout,
    /// A node answered with an error: the responder, or for errors that arise in
    /// transit (Error_TTL_Exceeded, …) the hop that hit it (§6.3.4).
    Error(NodeId, ErrorResponse),
    /// The request could not be sent at all (too large, not signable).
    Unsendable(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Timeout => write!(f, "no answer (RFC 6940 §6.2.1)"),
            RequestError::Error(from, e) => write!(
                f,
                "{from} answered {}: {}",
                e.error_code,
                String::from_utf8_lossy(&e.error_info)
            ),
            RequestError::Unsendable(why) => write!(f, "not sent: {why}"),
        }
    }
}

impl std::error::Error for RequestError {}

/// What the core reports.
#[derive(Clone, Debug)]
pub enum Event {
    /// Open a TCP connection to `remote` for `stream`, then report
    /// [`StreamEvent::Connected`], or [`StreamEvent::Closed`] if it fails.
    OpenStream {
        stream: StreamId,
        remote: SocketAddr,
    },
    /// Close `stream` entirely, after writing what was transmitted on it before.
    CloseStream {
        stream: StreamId,
    },
    LinkUp {
        link: LinkId,
        peer: NodeId,
    },
    LinkDown {
        link: LinkId,
        peer: Option<NodeId>,
        /// The address of the other end.
        remote: Option<SocketAddr>,
        /// Why, when known (handshake refusal, timeout, …).
        reason: Option<String>,
    },
    /// We now belong to the overlay (§10.5).
    Joined,
    /// Our neighbour set changed.
    NeighborsChanged,
    /// We cannot reach the overlay.
    Isolated {
        reason: String,
    },
    /// A request for the application (a usage): answer it with [`Node::respond`] before
    /// its deadline.
    Request(InboundRequest),
    /// The answer to [`Node::fetch`], its values verified (§7.4.2.2).
    Fetched {
        transaction_id: u64,
        result: Result<Fetched, RequestError>,
    },
    /// The answer to [`Node::send_request`] (and [`Node::store`]).
    Response {
        transaction_id: u64,
        result: Result<(NodeId, MessageBody), RequestError>,
    },
    /// An application flow (AppAttach over ICE, §6.5.2) opened, carried a message, or
    /// ended.
    AppFlow(AppFlowEvent),
    /// A new configuration (by ConfigUpdate, §6.5.4) was verified and is now in force.
    /// Non-empty `rejoin_because`: settings that cannot change under a running peer
    /// changed — the shell must leave and rejoin (or exit) (§11.1).
    ConfigurationChanged {
        sequence: u16,
        rejoin_because: Vec<&'static str>,
        dropped_kinds: Vec<reload_wire::storage::KindId>,
        /// The signed document, to store in place of the old one.
        document: Bytes,
    },
}

/// Counters, for diagnostics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub received: u64,
    pub forwarded: u64,
    pub delivered: u64,
    pub answered: u64,
    pub dropped_malformed: u64,
    pub dropped_wrong_overlay: u64,
    pub dropped_bad_signature: u64,
    pub dropped_no_route: u64,
    pub dropped_other: u64,
    pub retransmissions: u64,
    pub duplicate_requests: u64,
    /// Answers refused because the wrong node sent them (§6.3.4).
    pub wrong_responder: u64,
    /// Messages we split to fit the next link (§6.7), and the fragments sent for them.
    pub fragmented: u64,
    pub fragments_sent: u64,
    /// Messages reassembled from fragments, and fragments dropped (buffer full, expired,
    /// inconsistent).
    pub reassembled: u64,
    pub reassembly_dropped: u64,
    /// New links the endpoint refused (caps), and datagrams it dropped (no link, not
    /// DTLS, or STUN/TURN with no ICE agent).
    pub refused_links: u64,
    pub dropped_datagrams: u64,
    /// STUN Binding requests answered (peers are STUN servers, RFC 6940 §6.5.1.4).
    pub stun_answered: u64,
    /// ICE sessions that ended without a working pair, or lost it (§6.5.1.10).
    pub ice_failed: u64,
    /// Requests for the application answered by the core: nobody serves the method, or
    /// the application did not answer in time.
    pub unserved_requests: u64,
    pub expired_requests: u64,
    /// Error answers not sent: the link's error budget was spent.
    pub errors_suppressed: u64,
    /// HelloVerifyRequests sent for ClientHellos without a valid cookie (RFC 6347 §4.2.1).
    pub dtls_cookies_sent: u64,
}

/// The node core. See the module documentation.
pub struct Node {
    s: NodeSettings,
    overlay: Arc<Overlay>,
    creds: Credentials,
    verifier: Verifier,
    topo: Box<dyn Topology + Send>,
    factory: Box<dyn LinkFactory>,
    /// Transaction IDs and other values the RFC wants unpredictable (§6.3.2).
    rng: Csprng,
    anchor: WallAnchor,
    links: HashMap<LinkId, links::LinkSlot>,
    by_peer: HashMap<NodeId, LinkId>,
    endpoint: endpoint::Endpoint,
    next_id: u64,
    tx: tx::Transactions,
    answers: tx::AnswerCache,
    inbound: inbound::Inbound,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    start: Option<StartMode>,
    started_at: Instant,
    stats: NodeStats,
    loopback_depth: u32,
    /// Peers whose answer to our Attach came back and who are connecting to us
    /// (§6.5.1.2), since when.
    awaiting_connect: HashMap<NodeId, Instant>,
    /// Partial messages addressed to us (§6.7).
    reassembly: fragment::Reassembly,
    /// Requests we forwarded lately, to recognise one coming back unchanged (a loop).
    forwarded: routing::RecentForwards,
    /// Kind blocks accepted by ConfigUpdate (§6.5.4.2), as received: passed on to peers
    /// that do not know the Kind (§7.4.1.2).
    kind_blocks: HashMap<reload_wire::storage::KindId, Bytes>,
    /// Kind definitions we sent to a peer after its Error_Unknown_Kind, and when: one
    /// ConfigUpdate per peer and Kind per request lifetime.
    kinds_offered: HashMap<(NodeId, reload_wire::storage::KindId), Instant>,
    /// The bootstrap peers given to [`Node::start`] (§11.4), the link opened to each, and
    /// when to try again those whose link failed while we are not in the overlay.
    bootstrap: Vec<(OverlayLinkType, SocketAddr, Option<LinkId>)>,
    bootstrap_retry: Option<Instant>,
    bootstrap_backoff: Duration,
    /// The values we hold (§7), and where copies of them are (§10.4).
    storage: crate::storage::Storage,
    replication: storage::Replication,
    /// Server-reflexive addresses learned from peers (§6.5.1.4).
    reflexive: reflexive::Reflexive,
    /// The ICE sessions of our Attaches (ICE overlays, §6.5.1.3).
    ice: ice::Ice,
    /// TURN allocations (relayed candidates, §9).
    turn: turn::Turn,
    apps: app::Apps,
    /// The storage_time of the last value we signed (§7: each later than the last).
    last_storage_time: u64,
}

/// The first and the largest pause before connecting again to bootstrap peers.
const BOOTSTRAP_RETRY_MIN: Duration = Duration::from_secs(1);
const BOOTSTRAP_RETRY_MAX: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.creds.node_id)
            .field("links", &self.links.len())
            .field("outstanding", &self.tx.len())
            .finish()
    }
}

impl Node {
    /// A node made of `parts`, at `now` (monotonic) which is `wall` on the wall clock,
    /// with a random `seed` (from the operating system on a real peer).
    pub fn new(parts: NodeParts, now: Instant, wall: SystemTime, seed: Seed) -> Self {
        let NodeParts {
            settings,
            overlay,
            credentials,
            topology,
            links,
        } = parts;
        let lifetime = overlay.request_lifetime();
        let mut rng = Csprng::new(&seed);
        let mut cookie_secret = [0u8; 32];
        for chunk in cookie_secret.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_be_bytes());
        }
        let storage = crate::storage::Storage::in_memory(
            settings.storage_limits.clone(),
            overlay.node_id_len(),
        );
        Node {
            storage,
            replication: storage::Replication::default(),
            reflexive: reflexive::Reflexive::default(),
            ice: ice::Ice::default(),
            turn: turn::Turn::default(),
            apps: app::Apps::default(),
            last_storage_time: 0,
            verifier: Verifier::new(overlay.trust().clone(), settings.cert_cache_size),
            answers: tx::AnswerCache::new(lifetime, settings.answer_cache_size),
            forwarded: routing::RecentForwards::default(),
            reassembly: fragment::Reassembly::new(
                settings.reassembly_buffer,
                settings.reassembly_messages,
                lifetime,
            ),
            inbound: inbound::Inbound::default(),
            creds: credentials,
            topo: topology,
            factory: links,
            rng,
            anchor: WallAnchor::new(now, wall),
            links: HashMap::new(),
            by_peer: HashMap::new(),
            endpoint: endpoint::Endpoint::new(&cookie_secret),
            next_id: 1,
            tx: tx::Transactions::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            start: None,
            started_at: now,
            stats: NodeStats::default(),
            loopback_depth: 0,
            awaiting_connect: HashMap::new(),
            kind_blocks: HashMap::new(),
            kinds_offered: HashMap::new(),
            bootstrap: Vec::new(),
            bootstrap_retry: None,
            bootstrap_backoff: BOOTSTRAP_RETRY_MIN,
            overlay,
            s: settings,
        }
    }

    /// The node with `storage` (opened on a durable backend) instead of the in-memory one
    /// it starts with. Before [`Node::start`].
    pub fn with_storage(mut self, storage: crate::storage::Storage) -> Self {
        self.storage = storage;
        self
    }

    pub fn node_id(&self) -> NodeId {
        self.creds.node_id
    }

    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// TLS for AppAttach application flows (§6.5.2) under the configuration in force;
    /// `None` with links that have no certificates (the simulator's).
    pub fn app_flow_tls(&self) -> Option<crate::link::AppFlowTls> {
        self.factory.app_flow_tls()
    }

    pub fn settings(&self) -> &NodeSettings {
        &self.s
    }

    /// The overlay configuration in force.
    pub fn overlay(&self) -> &Arc<Overlay> {
        &self.overlay
    }

    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Requests of ours still waiting for an answer (e.g. the Leaves at shutdown).
    pub fn pending_requests(&self) -> usize {
        self.tx.len()
    }

    /// Certificates of verified signers held in the signature cache.
    pub fn cached_certificates(&self) -> usize {
        self.verifier.cache.len()
    }

    /// Requests handed to the application and not answered yet.
    pub fn pending_app_requests(&self) -> usize {
        self.inbound.pending_len()
    }

    /// Messages being reassembled (§6.7) and the bytes held for them.
    pub fn reassembly_backlog(&self) -> (usize, usize) {
        (self.reassembly.len(), self.reassembly.buffered())
    }

    pub fn topology(&self) -> &dyn Topology {
        self.topo.as_ref()
    }

    /// Peers with a link up.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.by_peer.keys().copied().collect()
    }

    /// The wall-clock time at `now`.
    fn wall(&self, now: Instant) -> SystemTime {
        self.anchor.at(now)
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Starts the node: alone as the first node of a new overlay, or by connecting to
    /// bootstrap peers (§11.4) and joining through them.
    pub fn start(&mut self, now: Instant, how: Start) {
        self.started_at = now;
        self.turn_start(now);
        self.schedule_expiry(now);
        let (mode, bootstrap) = match how {
            Start::FirstNode => {
                self.start = Some(StartMode::FirstNode);
                self.topo.start(now, StartMode::FirstNode);
                self.drain_topology(now);
                return;
            }
            Start::Join(b) => (StartMode::Join { bootstrap: vec![] }, b),
            Start::Client(b) => (StartMode::Client { bootstrap: vec![] }, b),
        };
        self.start = Some(mode);
        self.bootstrap = bootstrap.into_iter().map(|(t, a)| (t, a, None)).collect();
        self.connect_bootstrap(now);
        self.drain_topology(now);
    }

    /// Opens a link to each bootstrap peer that has none (§11.4).
    fn connect_bootstrap(&mut self, now: Instant) {
        for i in 0..self.bootstrap.len() {
            let (protocol, addr, link) = self.bootstrap[i];
            if link.is_some_and(|l| self.links.contains_key(&l)) {
                continue;
            }
            self.bootstrap[i].2 = self.open_link(now, addr, protocol, None);
        }
    }

    /// Not in the overlay and a bootstrap link is gone: connect again later, backing off
    /// from 1 s to 60 s (a restarted bootstrap peer, or one not up yet, is found again).
    fn schedule_bootstrap_retry(&mut self, now: Instant) {
        if self.bootstrap.is_empty() || self.bootstrap_retry.is_some() {
            return;
        }
        if self.topo.is_joined() && !self.by_peer.is_empty() {
            return;
        }
        self.bootstrap_retry = Some(now + self.bootstrap_backoff);
        self.bootstrap_backoff = (self.bootstrap_backoff * 2).min(BOOTSTRAP_RETRY_MAX);
    }

    /// Leaves gracefully (§6.4.2.2, §10.9).
    pub fn leave(&mut self, now: Instant) {
        // Leaving for good: the bootstrap peers are not connected again when their links
        // close (they may stop before we do).
        self.bootstrap.clear();
        self.bootstrap_retry = None;
        self.topo.leave(now);
        self.drain_topology(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.next_transmit()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.tx.next_deadline(),
            self.reassembly.next_deadline(),
            self.bootstrap_retry,
            self.topo.poll_timeout(),
            self.next_keepalive(),
            self.inbound.next_deadline(),
            self.next_link_timeout(),
            self.replication.next_expiry,
            self.replication.next_sweep,
            self.replication.cert_retry,
            self.reflexive.next_deadline(),
            self.ice.next_deadline(),
            self.turn.next_deadline(),
            self.app_next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.bootstrap_retry.is_some_and(|t| t <= now) {
            self.bootstrap_retry = None;
            if !self.topo.is_joined() || self.by_peer.is_empty() {
                tracing::info!("connecting to the bootstrap peers again");
                self.connect_bootstrap(now);
            }
        }
        self.send_keepalives(now);
        let lifetime = self.overlay.request_lifetime();
        self.awaiting_connect
            .retain(|_, t| now.saturating_duration_since(*t) < lifetime);
        self.link_timeouts(now);
        self.retransmit(now);
        self.answers.expire(now);
        self.expire_app_requests(now);
        if !self.reassembly.is_empty() {
            self.reassembly.expire(now);
        }
        self.stats.reassembly_dropped = self.reassembly.dropped;
        self.topo.handle_timeout(now);
        self.drain_topology(now);
        self.storage_timers(now);
        self.reflexive_timers(now);
        self.turn_timers(now);
        self.ice_timers(now);
        self.app_timers(now);
        self.stats.ice_failed = self.ice.failed;
        self.drain_topology(now);
    }

    /// Methods the application serves: requests with these codes reach it as
    /// [`Event::Request`]; requests the core does not handle and nobody serves are answered
    /// with an error at once.
    pub fn serve(&mut self, code: MessageCode) {
        self.inbound.served.insert(code);
    }

    /// Stops serving `code` (a usage went away).
    pub fn stop_serving(&mut self, code: MessageCode) {
        self.inbound.served.remove(&code);
    }

    /// Whether requests with `code` reach the application.
    pub fn serves(&self, code: MessageCode) -> bool {
        self.inbound.served.contains(&code)
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
