//! The sans-IO node core (RFC 6940 §5–§6): message receipt and forwarding (§6.1),
//! symmetric recursive routing (§6.2), end-to-end retransmission (§6.2.1), signatures at
//! the destination (§6.3.4), the forwarding and link management methods (§6.4, §6.5),
//! driven by a [`Topology`] plug-in.
//!
//! The core is a plain struct. The shell (a tokio runtime, or the simulator) feeds it
//! bytes and time and drains what it produces:
//! - [`Node::handle_input`] — bytes that arrived on a link;
//! - [`Node::handle_timeout`] — the time came that [`Node::poll_timeout`] asked for;
//! - [`Node::poll_transmit`] — bytes to send on a link;
//! - [`Node::poll_event`] — links to open or close, and what happened for the application.
//!
//! It never opens a socket, reads a clock, or draws randomness of its own: `now` is passed
//! in, the wall clock is derived from the one given at construction, and randomness comes
//! from a seed (the shell seeds it from the OS; the simulator from its run seed).
//!
//! A link is either a real (D)TLS link (§6.6, [`crate::link`]; the core owns its state
//! machine, the shell only moves its bytes, and its peer is the Node-ID its certificate
//! proves), or a simulator *message link* (each input and transmit one whole RELOAD
//! message, the peer vouched for by the simulator). Messages larger than the next link
//! carries in one piece are fragmented, and messages for us reassembled (§6.7,
//! [`fragment`]).

pub mod fragment;
mod tx;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use reload_wire::body::MessageBody;
use reload_wire::header::{VERSION, option_flags};
use reload_wire::link::{
    AttachReqAns, IceCandidate, OverlayLinkType, PingAns, ROLE_ACTIVE, ROLE_PASSIVE,
};
use reload_wire::message::{
    ErrorCode, ErrorResponse, Message, MessageCode, MessageContents, MessageExtensionType,
};
use reload_wire::topology::{
    JoinAns, JoinReq, LeaveAns, LeaveReq, ProbeAns, ProbeInformation, RouteQueryAns, RouteQueryReq,
    UpdateAns, UpdateReq,
};
use reload_wire::{
    DecodeOptions, Destination, ForwardingHeader, NodeId, ResourceId, SecurityBlock, Signature,
    Wire,
};

use std::sync::Arc;

use crate::config::{OverlayConfig, SequenceCheck, check_sequence};
use crate::identity::overlay_hash;
use crate::link::{Link, LinkContext, LinkEvent, LinkProtocol};
use crate::sign::{Credentials, SignError, Verifier};
use crate::topology::{NextHop, StartMode, Topology, TopologyAction, TopologyInput};

pub use tx::Purpose;
use tx::{AnswerCache, Outstanding, Transactions};

/// Transmissions of a request before it fails (RFC 6940 §6.2.1: "up to 4 times, for a
/// total of 5 messages").
pub const MAX_TRANSMISSIONS: u32 = 5;

/// Everything the core needs to know about the overlay and its own limits. Built from the
/// configuration, the single source of tunables; local limits have documented defaults.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub overlay_name: String,
    /// Forwarding header `overlay` (§6.3.2).
    pub overlay_hash: u32,
    /// Our configuration sequence (§6.3.2.1).
    pub configuration_sequence: u16,
    /// `initial-ttl` (§11.1).
    pub initial_ttl: u8,
    /// `overlay-reliability-timer` (§6.2.1, §11.1).
    pub reliability_timer: Duration,
    /// Codec options: Node-ID length, max-message-size, Kind data models.
    pub decode: DecodeOptions,
    /// Our host candidates for Attach (§6.5.1.5: a No-ICE overlay sends host candidates).
    pub listen: Vec<(OverlayLinkType, SocketAddr)>,
    /// Local limit: answers remembered for retransmitted requests.
    pub answer_cache_size: usize,
    /// Local limit: certificates cached.
    pub cert_cache_size: usize,
    /// Local limit: outstanding inbound requests waiting for the application.
    pub max_app_requests: usize,
    /// A DTLS link with no traffic for this long gets a Ping, so that a dead peer is
    /// noticed by the link's retransmission timeout (UDP has no connection to lose; RFC
    /// 6940 §6.6.3.1). 10 s by default (ICE keepalives are at least 15 s, RFC 5245 §10).
    pub dtls_keepalive: Duration,
    /// The largest RELOAD message sent as one datagram on a DTLS link; larger ones are
    /// fragmented (§6.7). 1180 bytes by default: with the framing header (8), the DTLS
    /// record overhead (≤ 45) and IPv6 + UDP (48) it fits the IPv6 minimum MTU of 1280.
    pub dtls_mtu: usize,
    /// The same for the simulator's message links (`None`: no limit).
    pub message_link_mtu: Option<usize>,
    /// Local limit: bytes held for messages being reassembled (§6.7).
    pub reassembly_buffer: usize,
    /// Local limit: messages being reassembled at once.
    pub reassembly_messages: usize,
}

impl NodeSettings {
    pub fn from_config(config: &OverlayConfig, listen: Vec<(OverlayLinkType, SocketAddr)>) -> Self {
        NodeSettings {
            overlay_name: config.instance_name.clone(),
            overlay_hash: overlay_hash(&config.instance_name),
            configuration_sequence: config.sequence,
            initial_ttl: config.initial_ttl,
            reliability_timer: config.overlay_reliability_timer,
            decode: config.decode_options(),
            listen,
            answer_cache_size: 4096,
            cert_cache_size: 1024,
            max_app_requests: 1024,
            dtls_keepalive: Duration::from_secs(10),
            dtls_mtu: 1180,
            message_link_mtu: None,
            reassembly_buffer: 8 << 20,
            reassembly_messages: 1024,
        }
    }

    /// The maximum request lifetime (§3): reliability timer × transmissions (15 s by
    /// default).
    pub fn max_request_lifetime(&self) -> Duration {
        self.reliability_timer * MAX_TRANSMISSIONS
    }
}

/// A link, as the core names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// The pseudo-link of messages a node sends to itself (never given to the shell).
const LOOPBACK: LinkId = LinkId(0);

/// Bytes to send on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub link: LinkId,
    pub data: Bytes,
}

/// An inbound request handed to the application, to be answered with
/// [`Node::respond`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InboundId(pub u64);

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
}

/// What the core reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Open a transport to `addr` for `link`; we are the (D)TLS client. The shell calls
    /// [`Node::link_up`] when it is established or [`Node::link_down`] when it fails.
    Connect {
        link: LinkId,
        addr: SocketAddr,
        protocol: OverlayLinkType,
        expected_peer: Option<NodeId>,
    },
    /// Close the transport of `link`.
    Close {
        link: LinkId,
    },
    LinkUp {
        link: LinkId,
        peer: NodeId,
    },
    LinkDown {
        link: LinkId,
        peer: Option<NodeId>,
        /// Why, when the link layer said (handshake refusal, timeout, …).
        reason: Option<String>,
    },
    /// We now belong to the ring (§10.5).
    Joined,
    /// Our neighbour set changed.
    NeighborsChanged,
    /// We cannot reach the overlay.
    Isolated {
        reason: String,
    },
    /// A request for the application (storage, usages).
    Request {
        id: InboundId,
        from: NodeId,
        body: MessageBody,
    },
    /// The answer to [`Node::send_request`].
    Response {
        transaction_id: u64,
        result: Result<(NodeId, MessageBody), RequestError>,
    },
    /// A new configuration (by ConfigUpdate, §6.5.4) was verified and is now in use.
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
}

#[derive(Debug)]
struct LinkSlot {
    peer: Option<NodeId>,
    /// For links we opened for an Attach we answered: send an Update once up.
    send_update: bool,
    /// The Node-ID the link must prove (from the Attach), if known.
    expected_peer: Option<NodeId>,
    /// The protocol the transport was opened for.
    protocol: Option<OverlayLinkType>,
    /// The (D)TLS link state machine; `None` on simulator message links.
    link: Option<Box<Link>>,
    /// Last time the link carried a message either way.
    last_activity: Option<Instant>,
}

/// A message that arrived on a link, its forwarding header parsed.
struct Received {
    link: LinkId,
    /// The peer on that link (the previous hop).
    from: NodeId,
    header: ForwardingHeader,
    header_len: usize,
    data: Bytes,
    /// Known only for a whole message or a first fragment (later fragments: false).
    is_response: bool,
}

/// Where the answer to an inbound request goes.
#[derive(Debug, Clone)]
struct ReplyRoute {
    link: LinkId,
    /// Who asked (the signer, or the claimed originator for errors sent before the
    /// signature was checked): half of the answer-cache key.
    requester: NodeId,
    destination: Vec<Destination>,
    transaction_id: u64,
    max_response_length: u32,
}

/// A distinct, non-zero xorshift state for any seed (splitmix64 of the seed): seeds that
/// differ in one bit give unrelated streams.
pub(crate) fn seed_state(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// A tiny deterministic generator (xorshift64*), seeded by the shell.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn seeded(seed: u64) -> Rng {
        Rng(seed_state(seed))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The node core. See the module documentation.
pub struct Node {
    s: NodeSettings,
    /// Real (D)TLS links, or `None` for the simulator's message links.
    link_ctx: Option<Arc<LinkContext>>,
    creds: Credentials,
    verifier: Verifier,
    topo: Box<dyn Topology + Send>,
    rng: Rng,
    clock: (Instant, SystemTime),
    links: HashMap<LinkId, LinkSlot>,
    by_peer: HashMap<NodeId, LinkId>,
    next_link: u64,
    tx: Transactions,
    answers: AnswerCache,
    app_requests: HashMap<InboundId, ReplyRoute>,
    next_inbound: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    start: Option<StartMode>,
    started_at: Instant,
    stats: NodeStats,
    loopback_depth: u32,
    /// Peers whose answer to our Attach came back and who are connecting to us
    /// (§6.5.1.2), since when.
    awaiting_connect: HashMap<NodeId, Instant>,
    /// The configuration in use and its signed document (§11.1), when known.
    config: Option<OverlayConfig>,
    config_doc: Option<Bytes>,
    /// Partial messages addressed to us (§6.7).
    reassembly: fragment::Reassembly,
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

fn wall_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Node {
    /// A node with its settings, credentials, trust policy (via `verifier`), topology
    /// plug-in, the current time as both a monotonic instant and wall-clock time, and a
    /// random seed.
    pub fn new(
        settings: NodeSettings,
        creds: Credentials,
        verifier: Verifier,
        topology: Box<dyn Topology + Send>,
        now: Instant,
        wall: SystemTime,
        seed: u64,
    ) -> Self {
        let answers = AnswerCache::new(settings.max_request_lifetime(), settings.answer_cache_size);
        let reassembly = fragment::Reassembly::new(
            settings.reassembly_buffer,
            settings.reassembly_messages,
            settings.max_request_lifetime(),
        );
        Node {
            link_ctx: None,
            creds,
            verifier,
            topo: topology,
            rng: Rng::seeded(seed),
            clock: (now, wall),
            links: HashMap::new(),
            by_peer: HashMap::new(),
            next_link: 1,
            tx: Transactions::default(),
            answers,
            app_requests: HashMap::new(),
            next_inbound: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            start: None,
            started_at: now,
            stats: NodeStats::default(),
            loopback_depth: 0,
            awaiting_connect: HashMap::new(),
            config: None,
            config_doc: None,
            reassembly,
            kind_blocks: HashMap::new(),
            kinds_offered: HashMap::new(),
            bootstrap: Vec::new(),
            bootstrap_retry: None,
            bootstrap_backoff: BOOTSTRAP_RETRY_MIN,
            s: settings,
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.creds.node_id
    }

    pub fn settings(&self) -> &NodeSettings {
        &self.s
    }

    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Requests of ours still waiting for an answer (e.g. the Leaves at shutdown).
    pub fn pending_requests(&self) -> usize {
        self.tx.len()
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

    fn wall(&self, now: Instant) -> SystemTime {
        self.clock.1 + now.saturating_duration_since(self.clock.0)
    }

    /// Starts the node: alone as the first node of a new overlay, or by connecting to
    /// bootstrap peers at `bootstrap` (§11.4) and joining through them.
    pub fn start(
        &mut self,
        now: Instant,
        first_node: bool,
        bootstrap: &[(OverlayLinkType, SocketAddr)],
        client: bool,
    ) {
        self.started_at = now;
        if first_node {
            self.start = Some(StartMode::FirstNode);
            self.topo.start(now, StartMode::FirstNode);
            self.drain_topology(now);
            return;
        }
        self.start = Some(if client {
            StartMode::Client { bootstrap: vec![] }
        } else {
            StartMode::Join { bootstrap: vec![] }
        });
        self.bootstrap = bootstrap.iter().map(|(t, a)| (*t, *a, None)).collect();
        self.connect_bootstrap();
    }

    /// Opens a link to each bootstrap peer that has none (§11.4).
    fn connect_bootstrap(&mut self) {
        for i in 0..self.bootstrap.len() {
            let (protocol, addr, link) = self.bootstrap[i];
            if link.is_some_and(|l| self.links.contains_key(&l)) {
                continue;
            }
            let link = self.new_link(None, false);
            if let Some(slot) = self.links.get_mut(&link) {
                slot.protocol = Some(protocol);
            }
            self.bootstrap[i].2 = Some(link);
            self.events.push_back(Event::Connect {
                link,
                addr,
                protocol,
                expected_peer: None,
            });
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
        self.topo.leave(now);
        self.drain_topology(now);
    }

    fn new_link(&mut self, peer: Option<NodeId>, send_update: bool) -> LinkId {
        let id = LinkId(self.next_link);
        self.next_link += 1;
        self.links.insert(
            id,
            LinkSlot {
                peer,
                send_update,
                expected_peer: None,
                protocol: None,
                link: None,
                last_activity: None,
            },
        );
        id
    }

    /// Runs this node over real (D)TLS links (RFC 6940 §6.6) instead of the simulator's
    /// message links: transports then carry (D)TLS bytes, and a link's peer is the Node-ID
    /// its certificate proves.
    pub fn with_links(mut self, ctx: Arc<LinkContext>) -> Self {
        self.link_ctx = Some(ctx);
        self
    }

    /// Opens a link to `addr` (emits [`Event::Connect`]): we will be its (D)TLS client, and
    /// the peer must prove `expected_peer` when given.
    pub fn open_link(
        &mut self,
        addr: SocketAddr,
        protocol: OverlayLinkType,
        expected_peer: Option<NodeId>,
    ) -> LinkId {
        let link = self.new_link(None, false);
        if let Some(slot) = self.links.get_mut(&link) {
            slot.protocol = Some(protocol);
            slot.expected_peer = expected_peer;
        }
        self.events.push_back(Event::Connect {
            link,
            addr,
            protocol,
            expected_peer,
        });
        link
    }

    /// DTLS links that are up, with the time their keepalive is due.
    fn keepalives(&self) -> impl Iterator<Item = (NodeId, Instant)> + '_ {
        self.links.values().filter_map(|s| {
            let dtls = s.protocol == Some(OverlayLinkType::DTLS_UDP_SR_NO_ICE);
            let up = s.link.as_ref().is_some_and(|l| l.is_established());
            match (dtls && up, s.peer, s.last_activity) {
                (true, Some(p), Some(t)) => Some((p, t + self.s.dtls_keepalive)),
                _ => None,
            }
        })
    }

    fn next_keepalive(&self) -> Option<Instant> {
        self.keepalives().map(|(_, t)| t).min()
    }

    /// Pings the peers of idle DTLS links (see [`NodeSettings::dtls_keepalive`]).
    fn send_keepalives(&mut self, now: Instant) {
        let due: Vec<NodeId> = self
            .keepalives()
            .filter(|(_, t)| *t <= now)
            .map(|(p, _)| p)
            .collect();
        for peer in due {
            if let Some(slot) = self.by_peer.get(&peer).and_then(|l| self.links.get_mut(l)) {
                slot.last_activity = Some(now);
            }
            let body = MessageBody::PingReq(reload_wire::link::PingReq::default());
            self.request(
                now,
                vec![Destination::Node(peer)],
                body,
                Purpose::Notification,
            );
        }
    }

    /// The configuration in use and its signed document (what `reload-node enroll`
    /// stored): ConfigUpdates are checked against it (§6.5.4.2) and it is sent to peers
    /// whose configuration is older (§6.3.2.1).
    pub fn with_configuration(mut self, config: OverlayConfig, document: Bytes) -> Self {
        self.config = Some(config);
        self.config_doc = Some(document);
        self
    }

    /// The configuration in use, if the node was given one.
    pub fn configuration(&self) -> Option<&OverlayConfig> {
        self.config.as_ref()
    }

    /// ConfigUpdate (§6.5.4.2): a configuration is processed only if its sequence is
    /// newer and it is signed by a configuration-signer of the configuration in use; kind
    /// descriptions only if signed by a kind-signer of it, and not conflicting.
    fn on_config_update(
        &mut self,
        now: Instant,
        from: NodeId,
        body: reload_wire::link::ConfigUpdateReq,
    ) -> Result<(), ErrorResponse> {
        use reload_wire::link::ConfigUpdateReq;
        let forbidden = |why: String| ErrorResponse::new(ErrorCode::FORBIDDEN, why);
        let Some(current) = self.config.clone() else {
            return Err(forbidden(
                "no configuration in use to verify an update against".into(),
            ));
        };
        let wall = self.wall(now);
        let (new_config, document) = match body {
            ConfigUpdateReq::Config(data) => {
                let report = crate::check::check_document(
                    &data,
                    &crate::check::CheckOptions {
                        verify: true,
                        previous: Some(current.clone()),
                        now: wall,
                    },
                );
                if !report.is_clean() {
                    let why: Vec<String> = report
                        .problems
                        .iter()
                        .take(3)
                        .map(|p| p.to_string())
                        .collect();
                    return Err(forbidden(format!(
                        "configuration refused: {}",
                        why.join("; ")
                    )));
                }
                let Some(doc) = report.document else {
                    return Err(forbidden("configuration refused".into()));
                };
                let Some(c) = doc
                    .configuration(&current.instance_name)
                    .map(|c| c.config.clone())
                else {
                    return Err(forbidden(format!(
                        "no configuration for overlay {}",
                        current.instance_name
                    )));
                };
                let index = doc
                    .configurations
                    .iter()
                    .position(|x| x.config.instance_name == current.instance_name)
                    .unwrap_or(0);
                let change = crate::check::config_change(&current, &doc, index, wall);
                (Some((c, change)), data)
            }
            ConfigUpdateReq::Kinds(blocks) => {
                let mut updated = current.clone();
                let trust = crate::check::trust_policy(&current);
                let signers: Vec<NodeId> = current
                    .kind_signers
                    .iter()
                    .filter_map(|b| NodeId::from_slice(b))
                    .collect();
                let mut v = Verifier::new(trust, 16);
                for raw in blocks {
                    let text = std::str::from_utf8(&raw[..])
                        .map_err(|_| forbidden("kind description is not UTF-8".into()))?;
                    let block =
                        crate::config::KindDefinition::parse_kind_block(text).map_err(|p| {
                            forbidden(format!(
                                "kind description refused: {}",
                                p.first().map(|p| p.to_string()).unwrap_or_default()
                            ))
                        })?;
                    let sb = block
                        .kind
                        .signature
                        .as_ref()
                        .and_then(|s| s.security_block.as_ref().ok())
                        .ok_or_else(|| {
                            forbidden("kind description without a kind-signature".into())
                        })?;
                    v.verify_blob(block.signed_bytes(), sb, &signers, wall)
                        .map_err(|e| forbidden(format!("kind-signature refused: {e}")))?;
                    let id = block.kind.kind_id();
                    // §6.5.4.2: a Kind we know, signed by a different signer, conflicts.
                    let known = updated.kinds.iter().find(|k| k.kind_id() == id);
                    let known_signer = known.map(|k| {
                        k.signature
                            .as_ref()
                            .and_then(|s| s.security_block.as_ref().ok())
                            .map(|b| b.signature.identity.clone())
                    });
                    if let Some(old) = known_signer
                        && old.as_ref() != Some(&sb.signature.identity)
                    {
                        return Err(forbidden(format!(
                            "Kind {} is known with another signer",
                            id.map(|k| k.to_string()).unwrap_or_default()
                        )));
                    }
                    updated.kinds.retain(|k| k.kind_id() != id);
                    updated.kinds.push(block.kind);
                    if let Some(id) = id {
                        self.kind_blocks.insert(id, raw.clone());
                    }
                }
                self.apply_configuration(updated, None);
                return Ok(());
            }
            ConfigUpdateReq::Unknown { .. } => {
                return Err(ErrorResponse::new(
                    ErrorCode::INVALID_MESSAGE,
                    "unknown ConfigUpdate type",
                ));
            }
        };
        let _ = from;
        if let Some((c, change)) = new_config {
            let sequence = c.sequence;
            self.apply_configuration(c, Some(document.clone()));
            self.events.push_back(Event::ConfigurationChanged {
                sequence,
                rejoin_because: change.rejoin_because,
                dropped_kinds: change.dropped_kinds,
                document,
            });
        }
        Ok(())
    }

    /// The kind-block of `kind` to send in a ConfigUpdate (§6.5.4.1): as received by
    /// ConfigUpdate, or cut from the configuration document (the kind element exactly as
    /// signed, and its kind-signature).
    fn kind_block(&self, kind: reload_wire::storage::KindId) -> Option<Bytes> {
        if let Some(b) = self.kind_blocks.get(&kind) {
            return Some(b.clone());
        }
        let c = self.config.as_ref()?;
        let doc = std::str::from_utf8(self.config_doc.as_ref()?).ok()?;
        let k = c.kinds.iter().find(|k| k.kind_id() == Some(kind))?;
        let text = std::str::from_utf8(k.signed_bytes_in(doc)).ok()?;
        if text.is_empty() {
            return None;
        }
        k.block_xml_for_update(text).map(Bytes::from)
    }

    /// A peer answered Error_Unknown_Kind (§7.4.1.2): it "MUST" get a ConfigUpdate with
    /// the definitions of the Kinds it lacks that our configuration defines.
    fn offer_kinds(&mut self, now: Instant, peer: NodeId, error_info: &Bytes) {
        let Ok(unknown) = reload_wire::storage::UnknownKinds::decode(error_info, &self.s.decode)
        else {
            return;
        };
        let lifetime = self.s.max_request_lifetime();
        self.kinds_offered
            .retain(|_, t| now.saturating_duration_since(*t) < lifetime);
        let mut blocks = Vec::new();
        for kind in unknown.unknown_kinds {
            if self.kinds_offered.len() >= 4096 || self.kinds_offered.contains_key(&(peer, kind)) {
                continue;
            }
            match self.kind_block(kind) {
                Some(b) => {
                    self.kinds_offered.insert((peer, kind), now);
                    blocks.push(b);
                }
                None => tracing::debug!(%kind, %peer, "peer lacks a Kind we cannot describe"),
            }
        }
        if blocks.is_empty() {
            return;
        }
        tracing::info!(%peer, kinds = blocks.len(), "sending Kind definitions (ConfigUpdate)");
        let body = MessageBody::ConfigUpdateReq(reload_wire::link::ConfigUpdateReq::Kinds(blocks));
        self.request(
            now,
            vec![Destination::Node(peer)],
            body,
            Purpose::Notification,
        );
    }

    /// Puts a configuration (already verified by the caller) and its document in force.
    pub fn set_configuration(&mut self, config: OverlayConfig, document: Bytes) {
        self.apply_configuration(config, Some(document));
    }

    /// Puts a verified configuration in force: sequence, limits, Kinds, trust.
    fn apply_configuration(&mut self, c: OverlayConfig, document: Option<Bytes>) {
        self.s.configuration_sequence = c.sequence;
        self.s.initial_ttl = c.initial_ttl;
        self.s.reliability_timer = c.overlay_reliability_timer;
        self.s.decode = c.decode_options();
        self.verifier.set_trust(crate::check::trust_policy(&c));
        self.config = Some(c);
        if let Some(d) = document {
            self.config_doc = Some(d);
        }
    }

    /// Whether this node runs real (D)TLS links.
    pub fn has_real_links(&self) -> bool {
        self.link_ctx.is_some()
    }

    fn link_protocol(t: OverlayLinkType) -> Option<LinkProtocol> {
        match t {
            OverlayLinkType::TLS_TCP_FH_NO_ICE => Some(LinkProtocol::TlsTcpFhNoIce),
            OverlayLinkType::DTLS_UDP_SR_NO_ICE => Some(LinkProtocol::DtlsUdpSrNoIce),
            _ => None,
        }
    }

    /// An incoming transport of `protocol` was accepted: with real links we are the
    /// (D)TLS server (§6.5.1.11) and learn the peer from its certificate.
    pub fn accept_transport(&mut self, now: Instant, protocol: OverlayLinkType) -> Option<LinkId> {
        let id = self.new_link(None, false);
        if let Some(ctx) = self.link_ctx.clone() {
            let link = match Self::link_protocol(protocol)? {
                LinkProtocol::TlsTcpFhNoIce => Link::accept_tls(&ctx, None, now),
                LinkProtocol::DtlsUdpSrNoIce => Link::accept_dtls(&ctx, None, now),
            };
            match link {
                Ok(l) => {
                    if let Some(slot) = self.links.get_mut(&id) {
                        slot.link = Some(Box::new(l));
                        slot.protocol = Some(protocol);
                    }
                }
                Err(_) => {
                    self.links.remove(&id);
                    return None;
                }
            }
            self.pump_link(now, id);
        }
        Some(id)
    }

    /// The transport we opened for an [`Event::Connect`] is up: with real links we start
    /// the (D)TLS handshake as its client.
    pub fn transport_connected(&mut self, now: Instant, id: LinkId) {
        let Some(ctx) = self.link_ctx.clone() else {
            return;
        };
        let Some(slot) = self.links.get_mut(&id) else {
            return;
        };
        let Some(protocol) = slot.protocol.and_then(Self::link_protocol) else {
            return;
        };
        let link = match protocol {
            LinkProtocol::TlsTcpFhNoIce => Link::connect_tls(&ctx, slot.expected_peer, now),
            LinkProtocol::DtlsUdpSrNoIce => Link::connect_dtls(&ctx, slot.expected_peer, now),
        };
        match link {
            Ok(l) => slot.link = Some(Box::new(l)),
            Err(_) => return self.link_down(now, id),
        }
        self.pump_link(now, id);
    }

    /// The transport ended (TCP end of stream or error).
    pub fn transport_closed(&mut self, now: Instant, id: LinkId) {
        if let Some(l) = self.links.get_mut(&id).and_then(|s| s.link.as_mut()) {
            l.handle_eof(now);
            self.pump_link(now, id);
        }
        self.link_down(now, id);
    }

    /// Moves a real link's output and events into the core.
    fn pump_link(&mut self, now: Instant, id: LinkId) {
        for _ in 0..4096 {
            let Some(slot) = self.links.get_mut(&id) else {
                return;
            };
            let Some(link) = slot.link.as_mut() else {
                return;
            };
            while let Some(data) = link.poll_transmit() {
                self.transmits.push_back(Transmit { link: id, data });
            }
            let Some(ev) = link.poll_event() else { return };
            match ev.clone() {
                LinkEvent::Established { peer_node_ids, .. } => {
                    let expected = slot.expected_peer;
                    let peer = expected
                        .filter(|e| peer_node_ids.contains(e))
                        .or_else(|| peer_node_ids.first().copied());
                    match peer {
                        Some(p) => self.link_up(now, id, p),
                        None => return self.link_down(now, id),
                    }
                }
                LinkEvent::Message(m) => {
                    slot.last_activity = Some(now);
                    self.on_message(now, id, m)
                }
                LinkEvent::Stalled | LinkEvent::Resumed => {}
                LinkEvent::TooLarge { prefix } => return self.refuse_too_large(now, id, prefix),
                LinkEvent::Failed(_) | LinkEvent::Closed => {
                    let reason = match &ev {
                        LinkEvent::Failed(e) => Some(e.to_string()),
                        _ => Some("closed by the peer".to_string()),
                    };
                    while let Some(data) = self
                        .links
                        .get_mut(&id)
                        .and_then(|s| s.link.as_mut())
                        .and_then(|l| l.poll_transmit())
                    {
                        self.transmits.push_back(Transmit { link: id, data });
                    }
                    self.link_down_because(now, id, reason);
                    return;
                }
            }
        }
    }

    /// The peer on `id` sent a message over max-message-size (§6.6): a request gets
    /// Error_Message_Too_Large (from its forwarding header, all we read of it), then the
    /// link is closed.
    fn refuse_too_large(&mut self, now: Instant, id: LinkId, prefix: Bytes) {
        let from = self.links.get(&id).and_then(|s| s.peer);
        if let (Some(from), Ok((header, header_len))) =
            (from, ForwardingHeader::peek_prefix(&prefix, &self.s.decode))
        {
            let is_response = header_code(&prefix, header_len).is_some_and(|c| c.is_response());
            tracing::warn!(peer = %from, size = header.length, "message over max-message-size: closing the link (RFC 6940 §6.6)");
            if !is_response && header.fragment.offset() == 0 {
                self.error_reply(
                    now,
                    id,
                    from,
                    &header,
                    ErrorCode::MESSAGE_TOO_LARGE,
                    "message larger than max-message-size",
                );
            }
        }
        self.stats.dropped_other += 1;
        if let Some(link) = self.links.get_mut(&id).and_then(|s| s.link.as_mut()) {
            link.close(now);
            while let Some(data) = link.poll_transmit() {
                self.transmits.push_back(Transmit { link: id, data });
            }
        }
        self.link_down_because(now, id, Some("message over max-message-size".into()));
    }

    /// Closes a link we no longer need: a (D)TLS link first sends its close_notify alert
    /// (queued before [`Event::Close`], so the shell writes it before it drops the
    /// transport).
    fn close_link(&mut self, now: Instant, id: LinkId) {
        if let Some(mut slot) = self.links.remove(&id)
            && let Some(link) = slot.link.as_mut()
        {
            link.close(now);
            while let Some(data) = link.poll_transmit() {
                self.transmits.push_back(Transmit { link: id, data });
            }
        }
        self.events.push_back(Event::Close { link: id });
    }

    /// Closes every link (the node stops): close_notify on each (D)TLS link.
    pub fn close_all_links(&mut self, now: Instant) {
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in ids {
            self.close_link(now, id);
        }
        self.by_peer.clear();
    }

    /// Sends one message on a link: through its (D)TLS state machine, or as is on a
    /// simulator message link.
    fn send_on(&mut self, now: Instant, id: LinkId, message: Bytes) {
        if id == LOOPBACK {
            return self.loopback(now, message);
        }
        if let Some(slot) = self.links.get_mut(&id) {
            slot.last_activity = Some(now);
        }
        if let Some(mtu) = self.link_mtu(id)
            && message.len() > mtu
        {
            let fragments = fragment::split(message.clone(), mtu, &self.s.decode);
            if fragments.len() > 1 {
                self.stats.fragmented += 1;
                self.stats.fragments_sent += fragments.len() as u64;
                for f in fragments {
                    self.send_whole(now, id, f);
                }
                return;
            }
        }
        self.send_whole(now, id, message);
    }

    /// The largest message that goes over `id` in one piece (§6.7): the DTLS MTU on DTLS
    /// links; TLS links carry any size up to max-message-size.
    fn link_mtu(&self, id: LinkId) -> Option<usize> {
        let slot = self.links.get(&id)?;
        match &slot.link {
            Some(l) if l.protocol() == LinkProtocol::DtlsUdpSrNoIce => Some(self.s.dtls_mtu),
            Some(_) => None,
            None => self.s.message_link_mtu,
        }
    }

    fn send_whole(&mut self, now: Instant, id: LinkId, message: Bytes) {
        match self.links.get_mut(&id).and_then(|s| s.link.as_mut()) {
            Some(link) => {
                if link.send(now, message).is_err() {
                    self.stats.dropped_other += 1;
                }
                self.pump_link(now, id);
            }
            None => self.transmits.push_back(Transmit {
                link: id,
                data: message,
            }),
        }
    }

    /// An incoming transport was accepted (we are the (D)TLS server). Returns its link.
    pub fn accept(&mut self) -> LinkId {
        self.new_link(None, false)
    }

    /// The link's transport and security are up, bound to `peer` (the Node-ID its
    /// certificate proved, or the simulator's word).
    pub fn link_up(&mut self, now: Instant, link: LinkId, peer: NodeId) {
        let Some(slot) = self.links.get_mut(&link) else {
            return;
        };
        slot.peer = Some(peer);
        let send_update = std::mem::take(&mut slot.send_update);
        if let Some(old) = self.by_peer.insert(peer, link)
            && old != link
        {
            // A second link to the same peer: keep the newest, close the old one.
            self.close_link(now, old);
        }
        self.awaiting_connect.remove(&peer);
        self.events.push_back(Event::LinkUp { link, peer });
        let _ = self.topo.handle(now, TopologyInput::LinkUp { peer });
        if send_update {
            let _ = self
                .topo
                .handle(now, TopologyInput::UpdateRequested { from: peer });
        }
        // The first bootstrap link starts the join (§10.5).
        match self.start.clone() {
            Some(StartMode::Join { bootstrap }) if bootstrap.is_empty() => {
                self.start = Some(StartMode::Join {
                    bootstrap: vec![peer],
                });
                self.topo.start(
                    now,
                    StartMode::Join {
                        bootstrap: vec![peer],
                    },
                );
            }
            Some(StartMode::Client { bootstrap }) if bootstrap.is_empty() => {
                self.start = Some(StartMode::Client {
                    bootstrap: vec![peer],
                });
                self.topo.start(
                    now,
                    StartMode::Client {
                        bootstrap: vec![peer],
                    },
                );
            }
            _ => {}
        }
        self.drain_topology(now);
    }

    /// The link failed or closed.
    pub fn link_down(&mut self, now: Instant, link: LinkId) {
        self.link_down_because(now, link, None)
    }

    fn link_down_because(&mut self, now: Instant, link: LinkId, reason: Option<String>) {
        let Some(slot) = self.links.remove(&link) else {
            return;
        };
        if let Some(peer) = slot.peer
            && self.by_peer.get(&peer) == Some(&link)
        {
            self.by_peer.remove(&peer);
            let _ = self.topo.handle(now, TopologyInput::LinkDown { peer });
            for tx in self.tx.routed_through(&peer) {
                if let Some(o) = self.tx.remove(tx) {
                    self.request_failed(now, tx, o.purpose, RequestError::Timeout);
                }
            }
        }
        self.events.push_back(Event::LinkDown {
            link,
            peer: slot.peer,
            reason,
        });
        // The transport goes too (a link refused after its handshake would otherwise
        // keep its connection).
        self.events.push_back(Event::Close { link });
        if self.bootstrap.iter().any(|b| b.2 == Some(link)) {
            self.schedule_bootstrap_retry(now);
        }
        self.drain_topology(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.tx.next_deadline(),
            self.reassembly.next_deadline(),
            self.bootstrap_retry,
            self.topo.poll_timeout(),
            self.next_keepalive(),
        ]
        .into_iter()
        .chain(
            self.links
                .values()
                .map(|s| s.link.as_ref().and_then(|l| l.poll_timeout())),
        )
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.bootstrap_retry.is_some_and(|t| t <= now) {
            self.bootstrap_retry = None;
            if !self.topo.is_joined() || self.by_peer.is_empty() {
                tracing::info!("connecting to the bootstrap peers again");
                self.connect_bootstrap();
            }
        }
        self.send_keepalives(now);
        let lifetime = self.s.max_request_lifetime();
        self.awaiting_connect
            .retain(|_, t| now.saturating_duration_since(*t) < lifetime);
        let due: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, s)| {
                s.link
                    .as_ref()
                    .and_then(|l| l.poll_timeout())
                    .is_some_and(|t| t <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(l) = self.links.get_mut(&id).and_then(|s| s.link.as_mut()) {
                l.handle_timeout(now);
            }
            self.pump_link(now, id);
        }
        for r in self
            .tx
            .expire(now, self.s.reliability_timer, MAX_TRANSMISSIONS)
        {
            match r {
                Ok((_, message)) => {
                    self.stats.retransmissions += 1;
                    self.route_out(now, message);
                }
                Err((tx, o)) => self.request_failed(now, tx, o.purpose, RequestError::Timeout),
            }
        }
        self.answers.expire(now);
        if !self.reassembly.is_empty() {
            self.reassembly.expire(now);
        }
        self.stats.reassembly_dropped = self.reassembly.dropped;
        self.topo.handle_timeout(now);
        self.drain_topology(now);
    }

    // ---- sending ------------------------------------------------------------------

    fn header(
        &mut self,
        destination_list: Vec<Destination>,
        transaction_id: u64,
    ) -> ForwardingHeader {
        let mut h = ForwardingHeader::new(
            self.s.overlay_hash,
            self.s.configuration_sequence,
            self.s.initial_ttl,
            transaction_id,
        );
        h.destination_list = destination_list;
        h
    }

    /// Builds, signs and encodes a message.
    fn build(&mut self, header: ForwardingHeader, body: &MessageBody) -> Result<Bytes, SignError> {
        let contents =
            MessageContents::from_body(body).map_err(|e| SignError::Encode(e.to_string()))?;
        let mut m = Message {
            header,
            contents,
            security: SecurityBlock {
                certificates: vec![],
                signature: Signature::none(),
            },
        };
        self.creds.sign_message(&mut m, vec![])?;
        m.to_bytes().map_err(|e| SignError::Encode(e.to_string()))
    }

    /// Sends a request to `destination` (a destination list, §6.2.1) and returns its
    /// transaction ID; the answer arrives as [`Event::Response`].
    pub fn send_request(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
    ) -> Option<u64> {
        let tx = self.request(now, destination, body, Purpose::Application);
        self.drain_topology(now);
        tx
    }

    /// [`Node::send_request`] with a TTL of our choosing instead of `initial-ttl` (capped
    /// by it): with TTL k the request is answered by the target or, when more than k + 1
    /// hops away, with Error_TTL_Exceeded by the hop where it expired — a traceroute
    /// (§6.3.2).
    pub fn send_request_with_ttl(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
        ttl: u8,
    ) -> Option<u64> {
        let sequence = self.s.configuration_sequence;
        let ttl = ttl.min(self.s.initial_ttl);
        let tx = self.request_with(now, destination, body, Purpose::Application, sequence, ttl);
        self.drain_topology(now);
        tx
    }

    fn request(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
        purpose: Purpose,
    ) -> Option<u64> {
        let sequence = self.s.configuration_sequence;
        self.request_with_sequence(now, destination, body, purpose, sequence)
    }

    fn request_with_sequence(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
        purpose: Purpose,
        configuration_sequence: u16,
    ) -> Option<u64> {
        let ttl = self.s.initial_ttl;
        self.request_with(now, destination, body, purpose, configuration_sequence, ttl)
    }

    fn request_with(
        &mut self,
        now: Instant,
        destination: Vec<Destination>,
        body: MessageBody,
        purpose: Purpose,
        configuration_sequence: u16,
        ttl: u8,
    ) -> Option<u64> {
        let transaction_id = self.rng.next();
        let mut header = self.header(destination.clone(), transaction_id);
        header.configuration_sequence = configuration_sequence;
        header.ttl = ttl;
        let message = match self.build(header, &body) {
            Ok(m) => m,
            Err(_) => return None,
        };
        if message.len() > self.s.decode.max_message_size() {
            return None;
        }
        self.tx.insert(
            transaction_id,
            Outstanding {
                purpose,
                message: message.clone(),
                destination,
                transmissions: 1,
                next_retransmit: now + self.s.reliability_timer,
            },
        );
        self.route_out(now, message);
        Some(transaction_id)
    }

    /// Sends a message we originated (or an answer) towards its first destination: over
    /// the link when directly connected, else as the topology routes it (§6.2.1).
    fn route_out(&mut self, now: Instant, message: Bytes) {
        let Ok((h, _)) = ForwardingHeader::peek(&message, &self.s.decode) else {
            return;
        };
        let mut dest = h.destination_list.clone();
        // Our own Node-ID first (a source route through us): skip it.
        while matches!(dest.first(), Some(Destination::Node(n)) if *n == self.creds.node_id)
            && dest.len() > 1
        {
            dest.remove(0);
        }
        match self.next_link(&dest) {
            Some(link) => self.send_on(now, link, message),
            None if self.is_local(&dest) => self.loopback(now, message),
            None => self.stats.dropped_no_route += 1,
        }
    }

    /// Whether the first destination is this node: our own Node-ID (alone), or a
    /// Resource-ID we are responsible for.
    fn is_local(&self, dest: &[Destination]) -> bool {
        match dest.first() {
            Some(Destination::Node(n)) => *n == self.creds.node_id && dest.len() == 1,
            Some(Destination::Resource(r)) => self.topo.is_joined() && self.topo.is_responsible(r),
            _ => false,
        }
    }

    /// A message we sent to ourselves (a request for a Resource-ID in our own range, and
    /// our answer to it): processed as received from ourselves, bounded in depth.
    fn loopback(&mut self, now: Instant, message: Bytes) {
        if self.loopback_depth >= 4 {
            self.stats.dropped_other += 1;
            return;
        }
        self.loopback_depth += 1;
        let me = self.creds.node_id;
        if let Ok((header, header_len)) = ForwardingHeader::peek(&message, &self.s.decode) {
            let is_response = header_code(&message, header_len).is_some_and(|c| c.is_response());
            self.stats.received += 1;
            self.deliver(now, LOOPBACK, me, header, message, is_response);
        }
        self.loopback_depth -= 1;
    }

    /// The link towards the first destination entry, if any.
    fn next_link(&self, dest: &[Destination]) -> Option<LinkId> {
        let id: Vec<u8> = match dest.first()? {
            Destination::Node(n) => {
                if let Some(l) = self.by_peer.get(n) {
                    return Some(*l);
                }
                n.as_bytes().to_vec()
            }
            Destination::Resource(r) => r.as_bytes().to_vec(),
            _ => return None,
        };
        let connected = |n: &NodeId| self.by_peer.contains_key(n);
        match self.topo.next_hop(&id, &connected) {
            NextHop::Peer(p) => self.by_peer.get(&p).copied(),
            NextHop::Local | NextHop::None => None,
        }
    }

    // ---- receiving ------------------------------------------------------------------

    /// Bytes arrived on `link`: (D)TLS bytes on a real link, one whole RELOAD message on a
    /// simulator message link.
    pub fn handle_input(&mut self, now: Instant, link: LinkId, data: Bytes) {
        if let Some(l) = self.links.get_mut(&link).and_then(|s| s.link.as_mut()) {
            l.handle_input(now, &data);
            self.pump_link(now, link);
            self.drain_topology(now);
            return;
        }
        self.on_message(now, link, data);
        self.drain_topology(now);
    }

    /// One whole RELOAD message from `link`.
    fn on_message(&mut self, now: Instant, link: LinkId, data: Bytes) {
        self.stats.received += 1;
        let Some(from) = self.links.get(&link).and_then(|l| l.peer) else {
            self.stats.dropped_other += 1;
            return;
        };
        let (header, header_len) = match ForwardingHeader::peek(&data, &self.s.decode) {
            Ok(h) => h,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        if header.overlay != self.s.overlay_hash {
            self.stats.dropped_wrong_overlay += 1;
            return;
        }
        if header.version != VERSION || !header.fragment.is_valid() {
            // §6.7: a message with the high fragment bit clear is discarded.
            self.stats.dropped_malformed += 1;
            return;
        }
        // Only a whole message or a first fragment shows its message code; later fragments
        // are routed like requests but never answered with an error (§6.7).
        let tail = header.fragment.offset() != 0;
        let is_response = !tail && header_code(&data, header_len).is_some_and(|c| c.is_response());
        if header.ttl > self.s.initial_ttl {
            // §6.3.2: discard, and answer requests with Error_TTL_Exceeded.
            if !is_response && !tail {
                self.error_reply(
                    now,
                    link,
                    from,
                    &header,
                    ErrorCode::TTL_EXCEEDED,
                    "ttl above initial-ttl",
                );
            }
            self.stats.dropped_other += 1;
            return;
        }
        let m = Received {
            link,
            from,
            header,
            header_len,
            data,
            is_response,
        };
        self.process(now, m);
    }

    /// Destination-list processing (§6.1.1–§6.1.3): deliver, forward or drop.
    fn process(&mut self, now: Instant, m: Received) {
        enum Next {
            Deliver,
            Forward(Vec<Destination>),
            DropNoRoute,
            DropOther,
        }
        let me = self.creds.node_id;
        let mut dest = m.header.destination_list.clone();
        let next = loop {
            match dest.first() {
                None => break Next::DropOther,
                Some(Destination::Node(n)) if *n == me => {
                    dest.remove(0);
                    if dest.is_empty() {
                        break Next::Deliver;
                    }
                }
                Some(Destination::Node(n)) if n.is_wildcard() => break Next::Deliver,
                Some(Destination::Resource(r))
                    if self.topo.is_joined() && self.topo.is_responsible(r) =>
                {
                    // §6.1.1: a Resource-ID must be the only entry; else drop silently.
                    break if dest.len() == 1 {
                        Next::Deliver
                    } else {
                        Next::DropOther
                    };
                }
                Some(Destination::Node(n)) => {
                    let responsible =
                        self.topo.is_joined() && self.topo.is_responsible(&ResourceId::from(*n));
                    // §6.1.1: a Node-ID in our range that is not ours nor a connected
                    // client: drop silently.
                    break if responsible && !self.by_peer.contains_key(n) {
                        Next::DropNoRoute
                    } else {
                        Next::Forward(dest)
                    };
                }
                Some(Destination::Resource(_)) => break Next::Forward(dest),
                // Opaque IDs: we never compress, so none is ours (§6.1.3).
                Some(_) => break Next::DropOther,
            }
        };
        match next {
            Next::Deliver => self.deliver_or_reassemble(now, m),
            Next::Forward(dest) => self.forward(now, m, dest),
            Next::DropNoRoute => self.stats.dropped_no_route += 1,
            Next::DropOther => self.stats.dropped_other += 1,
        }
    }

    /// Forwards towards `dest[0]` (§6.1.2): TTL decremented, the previous hop appended to
    /// the via list of requests, the contents untouched.
    fn forward(&mut self, now: Instant, m: Received, dest: Vec<Destination>) {
        let Received {
            from,
            header,
            header_len,
            data,
            is_response,
            ..
        } = m;
        let tail = header.fragment.offset() != 0;
        if header.ttl == 0 {
            if !is_response && !tail {
                let link = self.by_peer.get(&from).copied();
                if let Some(link) = link {
                    self.error_reply(
                        now,
                        link,
                        from,
                        &header,
                        ErrorCode::TTL_EXCEEDED,
                        "ttl exhausted",
                    );
                }
            }
            self.stats.dropped_other += 1;
            return;
        }
        // Unknown options marked forward-critical cannot be forwarded (§6.3.2.3).
        if header
            .options
            .iter()
            .any(|o| o.flags & option_flags::FORWARD_CRITICAL != 0)
            && !is_response
        {
            if tail {
                return;
            }
            if let Some(link) = self.by_peer.get(&from).copied() {
                self.error_reply(
                    now,
                    link,
                    from,
                    &header,
                    ErrorCode::UNSUPPORTED_FORWARDING_OPTION,
                    "forward-critical option",
                );
            }
            return;
        }
        let Some(link) = self.next_link(&dest) else {
            self.stats.dropped_no_route += 1;
            return;
        };
        let mut h = header;
        h.ttl -= 1;
        if !is_response {
            h.via_list.push(Destination::Node(from));
        }
        h.destination_list = dest;
        let payload = data.slice(header_len..);
        let total = h.encoded_len() + payload.len();
        if total > self.s.decode.max_message_size() {
            self.stats.dropped_other += 1;
            return;
        }
        let mut b = BytesMut::with_capacity(total);
        if h.encode_with_length(&mut b, total as u32).is_err() {
            self.stats.dropped_other += 1;
            return;
        }
        b.extend_from_slice(&payload);
        self.stats.forwarded += 1;
        self.send_on(now, link, b.freeze());
    }

    /// A message for us: delivered whole, or first reassembled from its fragments (§6.7).
    fn deliver_or_reassemble(&mut self, now: Instant, m: Received) {
        let Received {
            link,
            from,
            header,
            header_len,
            data,
            is_response,
        } = m;
        if header.fragment.is_whole() {
            return self.deliver(now, link, from, header, data, is_response);
        }
        let max = self.s.decode.max_message_size();
        match self.reassembly.insert(now, header, header_len, data, max) {
            Ok(None) => {}
            Ok(Some(whole)) => {
                self.stats.reassembled += 1;
                let Ok((header, header_len)) = ForwardingHeader::peek(&whole, &self.s.decode)
                else {
                    self.stats.dropped_malformed += 1;
                    return;
                };
                let is_response = header_code(&whole, header_len).is_some_and(|c| c.is_response());
                self.deliver(now, link, from, header, whole, is_response);
            }
            Err(why) => tracing::debug!(?why, "fragmented message dropped (RFC 6940 §6.7)"),
        }
        self.stats.reassembly_dropped = self.reassembly.dropped;
    }

    fn deliver(
        &mut self,
        now: Instant,
        link: LinkId,
        from: NodeId,
        header: ForwardingHeader,
        data: Bytes,
        is_response: bool,
    ) {
        let msg = match Message::decode(&data, &self.s.decode) {
            Ok(m) => m,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                if !is_response {
                    self.error_reply(
                        now,
                        link,
                        from,
                        &header,
                        ErrorCode::INVALID_MESSAGE,
                        "malformed message",
                    );
                }
                return;
            }
        };
        self.stats.delivered += 1;
        if is_response {
            return self.on_response(now, msg);
        }
        // Signature at the destination (§6.3.4): a bad one is dropped, never processed.
        let signer = match self.verifier.verify_message(&msg, self.wall(now)) {
            Ok(s) => s.node_id,
            Err(_) => {
                self.stats.dropped_bad_signature += 1;
                return;
            }
        };
        // A retransmitted request: the same answer again (§6.2.1).
        if let Some(answer) = self
            .answers
            .get((header.transaction_id, signer), now)
            .cloned()
        {
            self.stats.duplicate_requests += 1;
            self.send_on(now, link, answer);
            return;
        }
        // Configuration sequence (§6.3.2.1).
        let is_config_update = msg.contents.message_code == MessageCode::CONFIG_UPDATE_REQ;
        match check_sequence(
            header.configuration_sequence,
            self.s.configuration_sequence,
            is_config_update,
        ) {
            SequenceCheck::Accept => {}
            SequenceCheck::TooOld => {
                self.error_reply(
                    now,
                    link,
                    from,
                    &header,
                    ErrorCode::CONFIG_TOO_OLD,
                    "configuration sequence too old",
                );
                // §6.3.2.1: the sender is behind: send it our configuration, with the
                // reserved sequence 65535 that every node accepts on a ConfigUpdate.
                if let Some(doc) = self.config_doc.clone() {
                    let originator = match header.via_list.first() {
                        Some(Destination::Node(n)) => *n,
                        _ => signer,
                    };
                    let body = MessageBody::ConfigUpdateReq(
                        reload_wire::link::ConfigUpdateReq::Config(doc),
                    );
                    self.request_with_sequence(
                        now,
                        vec![Destination::Node(originator)],
                        body,
                        Purpose::Notification,
                        u16::MAX,
                    );
                }
                return;
            }
            SequenceCheck::TooNew => {
                return self.error_reply(
                    now,
                    link,
                    from,
                    &header,
                    ErrorCode::CONFIG_TOO_NEW,
                    "configuration sequence too new",
                );
            }
        }
        // Unknown destination-critical options and critical extensions (§6.3.2.3, §6.3.3).
        if header
            .options
            .iter()
            .any(|o| o.flags & option_flags::DESTINATION_CRITICAL != 0)
        {
            return self.error_reply(
                now,
                link,
                from,
                &header,
                ErrorCode::UNSUPPORTED_FORWARDING_OPTION,
                "destination-critical option",
            );
        }
        if msg
            .contents
            .extensions
            .iter()
            .any(|e| e.critical && !known_extension(e.extension_type))
        {
            return self.error_reply(
                now,
                link,
                from,
                &header,
                ErrorCode::UNKNOWN_EXTENSION,
                "critical extension",
            );
        }
        let body = match msg.contents.body(&self.s.decode) {
            Ok(b) => b,
            Err(_) => {
                return self.error_reply(
                    now,
                    link,
                    from,
                    &header,
                    ErrorCode::INVALID_MESSAGE,
                    "malformed body",
                );
            }
        };
        let route = ReplyRoute {
            link,
            requester: signer,
            destination: reply_destination(&header, from),
            transaction_id: header.transaction_id,
            max_response_length: header.max_response_length,
        };
        // Join and Leave: the ID must be the signer's, on a link bound to it (§6.4.2.1-2).
        let direct = header.via_list.is_empty() && from == signer;
        let answer: Result<MessageBody, ErrorResponse> = match body {
            MessageBody::PingReq(_) => Ok(MessageBody::PingAns(PingAns {
                response_id: self.rng.next(),
                time: wall_ms(self.wall(now)),
            })),
            MessageBody::AttachReq(req) => self.on_attach(now, signer, req),
            MessageBody::JoinReq(JoinReq {
                joining_peer_id, ..
            }) => {
                if joining_peer_id != signer || !direct {
                    Err(ErrorResponse::new(
                        ErrorCode::FORBIDDEN,
                        "Join must come from the joining peer over its own link",
                    ))
                } else {
                    self.topo
                        .answer_join(now, joining_peer_id)
                        .map(|d| {
                            MessageBody::JoinAns(JoinAns {
                                overlay_specific_data: d,
                            })
                        })
                        .map_err(|c| ErrorResponse::new(c, "join refused"))
                }
            }
            MessageBody::LeaveReq(LeaveReq {
                leaving_peer_id,
                overlay_specific_data,
            }) => {
                if leaving_peer_id != signer || !direct {
                    Err(ErrorResponse::new(
                        ErrorCode::FORBIDDEN,
                        "Leave must come from the leaving peer over its own link",
                    ))
                } else {
                    self.topo
                        .handle(
                            now,
                            TopologyInput::Leave {
                                from: signer,
                                overlay_specific_data,
                            },
                        )
                        .map(|()| MessageBody::LeaveAns(LeaveAns))
                        .map_err(|c| ErrorResponse::new(c, "leave refused"))
                }
            }
            MessageBody::UpdateReq(UpdateReq(body)) => self
                .topo
                .handle(now, TopologyInput::Update { from: signer, body })
                .map(|()| MessageBody::UpdateAns(UpdateAns::default()))
                .map_err(|c| ErrorResponse::new(c, "update refused")),
            MessageBody::RouteQueryReq(RouteQueryReq {
                send_update,
                destination,
                ..
            }) => {
                let connected: Vec<NodeId> = self.by_peer.keys().copied().collect();
                let is_connected = |n: &NodeId| connected.contains(n);
                let r = self
                    .topo
                    .route_query_answer(&destination, &is_connected)
                    .map(|b| MessageBody::RouteQueryAns(RouteQueryAns(b)))
                    .map_err(|c| ErrorResponse::new(c, "route query refused"));
                if send_update && r.is_ok() {
                    let _ = self
                        .topo
                        .handle(now, TopologyInput::UpdateRequested { from: signer });
                }
                r
            }
            MessageBody::ProbeReq(req) => {
                let uptime = now.saturating_duration_since(self.started_at).as_secs() as u32;
                let probe_info = req
                    .requested_info
                    .iter()
                    .filter_map(|t| match *t {
                        reload_wire::topology::ProbeInformationType::RESPONSIBLE_SET => Some(
                            ProbeInformation::ResponsibleSet(self.topo.responsible_ppb()),
                        ),
                        reload_wire::topology::ProbeInformationType::UPTIME => {
                            Some(ProbeInformation::Uptime(uptime))
                        }
                        reload_wire::topology::ProbeInformationType::NUM_RESOURCES => {
                            Some(ProbeInformation::NumResources(0))
                        }
                        _ => None,
                    })
                    .collect();
                Ok(MessageBody::ProbeAns(ProbeAns { probe_info }))
            }
            MessageBody::ConfigUpdateReq(body) => self
                .on_config_update(now, signer, body)
                .map(|()| MessageBody::ConfigUpdateAns(reload_wire::link::ConfigUpdateAns)),
            other => {
                if self.app_requests.len() >= self.s.max_app_requests {
                    Err(ErrorResponse::new(
                        ErrorCode::IN_PROGRESS,
                        "too many requests pending",
                    ))
                } else {
                    let id = InboundId(self.next_inbound);
                    self.next_inbound += 1;
                    self.app_requests.insert(id, route);
                    self.events.push_back(Event::Request {
                        id,
                        from: signer,
                        body: other,
                    });
                    return;
                }
            }
        };
        self.reply(now, route, answer);
    }

    /// Answers a request handed up as [`Event::Request`].
    pub fn respond(
        &mut self,
        now: Instant,
        id: InboundId,
        answer: Result<MessageBody, ErrorResponse>,
    ) {
        if let Some(route) = self.app_requests.remove(&id) {
            self.reply(now, route, answer);
            self.drain_topology(now);
        }
    }

    fn reply(
        &mut self,
        now: Instant,
        route: ReplyRoute,
        answer: Result<MessageBody, ErrorResponse>,
    ) {
        let mut body = match answer {
            Ok(b) => b,
            Err(e) => MessageBody::Error(e),
        };
        let header = self.header(route.destination.clone(), route.transaction_id);
        let mut bytes = match self.build(header.clone(), &body) {
            Ok(b) => b,
            Err(_) => return,
        };
        // §6.3.2 max_response_length: answer Error_Response_Too_Large instead (we emit
        // Response_Too_Large, §6.3.3.1; both codes are accepted on receipt).
        if route.max_response_length != 0 && bytes.len() > route.max_response_length as usize {
            body = MessageBody::Error(ErrorResponse::new(
                ErrorCode::RESPONSE_TOO_LARGE,
                "response too large",
            ));
            bytes = match self.build(header, &body) {
                Ok(b) => b,
                Err(_) => return,
            };
        }
        self.answers
            .insert((route.transaction_id, route.requester), now, bytes.clone());
        self.stats.answered += 1;
        self.send_on(now, route.link, bytes);
    }

    fn error_reply(
        &mut self,
        now: Instant,
        link: LinkId,
        from: NodeId,
        header: &ForwardingHeader,
        code: ErrorCode,
        why: &str,
    ) {
        let requester = match header.via_list.first() {
            Some(Destination::Node(n)) => *n,
            _ => from,
        };
        let route = ReplyRoute {
            link,
            requester,
            destination: reply_destination(header, from),
            transaction_id: header.transaction_id,
            max_response_length: 0,
        };
        self.reply(now, route, Err(ErrorResponse::new(code, why.to_string())));
    }

    /// Attach (§6.5.1): answer with our host candidates and open the link to the
    /// requester's candidate; the Attach sender is the (D)TLS server (§6.5.1.11).
    fn on_attach(
        &mut self,
        _now: Instant,
        requester: NodeId,
        req: AttachReqAns,
    ) -> Result<MessageBody, ErrorResponse> {
        let ours = self.candidates();
        if req
            .candidates
            .iter()
            .any(|c| c.cand_type != reload_wire::link::CandType::HOST)
        {
            // A No-ICE overlay uses host candidates only (§6.5.1.5).
            return Err(ErrorResponse::new(
                ErrorCode::INCOMPATIBLE_WITH_OVERLAY,
                "ICE candidates in a No-ICE overlay",
            ));
        }
        // Attach collisions (§6.5.1.2): one link per pair of nodes.
        let lifetime = self.s.max_request_lifetime();
        if self
            .awaiting_connect
            .get(&requester)
            .is_some_and(|t| _now.saturating_duration_since(*t) < lifetime)
        {
            // Our Attach to it was answered: it is connecting to us.
            return Err(ErrorResponse::new(
                ErrorCode::IN_PROGRESS,
                "an Attach to you is already answered",
            ));
        }
        if let Some(tx) = self.tx.attach_to(&requester) {
            if self.creds.node_id < requester {
                // The smaller Node-ID cancels its own Attach and answers the other.
                if let Some(Outstanding {
                    purpose: Purpose::TopologyAttach { target, .. },
                    ..
                }) = self.tx.remove(tx)
                {
                    let _ = self.topo.handle(
                        _now,
                        TopologyInput::AttachAnswered {
                            target,
                            peer: requester,
                        },
                    );
                }
            } else {
                return Err(ErrorResponse::new(
                    ErrorCode::IN_PROGRESS,
                    "my Attach to you is outstanding",
                ));
            }
        }
        let connecting = self
            .links
            .values()
            .any(|s| s.peer.is_none() && s.expected_peer == Some(requester));
        if !self.by_peer.contains_key(&requester) && !connecting {
            let target = req
                .candidates
                .iter()
                .find_map(|c| Some((c.overlay_link, c.addr_port.socket_addr()?)));
            let Some((protocol, addr)) = target else {
                return Err(ErrorResponse::new(
                    ErrorCode::INVALID_MESSAGE,
                    "Attach without a usable candidate",
                ));
            };
            let link = self.new_link(None, req.send_update);
            if let Some(slot) = self.links.get_mut(&link) {
                slot.protocol = Some(protocol);
                slot.expected_peer = Some(requester);
            }
            self.events.push_back(Event::Connect {
                link,
                addr,
                protocol,
                expected_peer: Some(requester),
            });
        } else if req.send_update {
            // Already linked: the Update goes out now (§6.4.2.3).
            let _ = self
                .topo
                .handle(_now, TopologyInput::UpdateRequested { from: requester });
        }
        Ok(MessageBody::AttachAns(AttachReqAns {
            ufrag: Bytes::new(),
            password: Bytes::new(),
            role: Bytes::from_static(ROLE_ACTIVE),
            candidates: ours,
            send_update: false,
        }))
    }

    fn candidates(&self) -> Vec<IceCandidate> {
        self.s
            .listen
            .iter()
            .map(|(t, a)| IceCandidate::host((*a).into(), *t))
            .collect()
    }

    fn on_response(&mut self, now: Instant, msg: Message) {
        let txid = msg.header.transaction_id;
        let Some(pending) = self.tx.get(txid) else {
            return; // late or duplicate answer
        };
        let expected = pending.destination.last().cloned();
        let signer = match self.verifier.verify_message(&msg, self.wall(now)) {
            Ok(s) => s.node_id,
            Err(_) => {
                self.stats.dropped_bad_signature += 1;
                return;
            }
        };
        let body = msg.contents.body(&self.s.decode);
        // Who may answer (§6.3.4): the target Node-ID itself, or for a Resource-ID a node
        // at least as close as any of our neighbours. Errors that only arise in transit
        // (TTL, forwarding options, size, RFC 7851 underlay errors) come from the hop that
        // hit them, so they are accepted from any verified signer — else the RFC's own
        // Error_TTL_Exceeded could never reach the requester.
        let in_transit =
            matches!(&body, Ok(MessageBody::Error(e)) if is_transit_error(e.error_code));
        let acceptable = in_transit
            || match &expected {
                Some(Destination::Node(n)) if !n.is_wildcard() => *n == signer,
                Some(Destination::Resource(r)) => self.plausibly_responsible(&signer, r),
                _ => true,
            };
        if !acceptable {
            // Rejected; the request stays outstanding and is retransmitted (§6.3.4).
            self.stats.wrong_responder += 1;
            return;
        }
        let Some(o) = self.tx.remove(txid) else {
            return;
        };
        if let Ok(MessageBody::Error(e)) = &body
            && e.error_code == ErrorCode::UNKNOWN_KIND
        {
            self.offer_kinds(now, signer, &e.error_info);
        }
        let result = match body {
            Ok(MessageBody::Error(e)) => Err(RequestError::Error(signer, e)),
            Ok(b) => Ok((signer, b)),
            Err(_) => Err(RequestError::Error(
                signer,
                ErrorResponse::new(ErrorCode::INVALID_MESSAGE, "malformed answer"),
            )),
        };
        match (o.purpose, result) {
            (Purpose::Application, result) => self.events.push_back(Event::Response {
                transaction_id: txid,
                result,
            }),
            (Purpose::TopologyAttach { target, .. }, Ok((peer, _))) => {
                if !self.by_peer.contains_key(&peer) {
                    self.awaiting_connect.insert(peer, now);
                }
                let _ = self
                    .topo
                    .handle(now, TopologyInput::AttachAnswered { target, peer });
            }
            (purpose, Err(e)) => self.request_failed(now, txid, purpose, e),
            (Purpose::TopologyJoin, Ok((from, MessageBody::JoinAns(a)))) => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::JoinAnswered {
                        from,
                        result: Ok(a.overlay_specific_data),
                    },
                );
            }
            (Purpose::TopologyRouteQuery { asked }, Ok((_, MessageBody::RouteQueryAns(a)))) => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::RouteQueryAnswered {
                        asked,
                        body: Ok(a.0),
                    },
                );
            }
            (Purpose::TopologyPing { target }, Ok((responder, _))) => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::PingAnswered {
                        target,
                        responder: Some(responder),
                    },
                );
            }
            _ => {}
        }
    }

    fn request_failed(&mut self, now: Instant, txid: u64, purpose: Purpose, e: RequestError) {
        let code = match &e {
            RequestError::Error(_, r) => Some(r.error_code),
            _ => None,
        };
        match purpose {
            Purpose::Application => self.events.push_back(Event::Response {
                transaction_id: txid,
                result: Err(e),
            }),
            Purpose::TopologyAttach { target, .. } => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::AttachFailed {
                        target,
                        error: code,
                    },
                );
            }
            Purpose::TopologyJoin => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::JoinAnswered {
                        from: self.creds.node_id,
                        result: Err(code.unwrap_or(ErrorCode::REQUEST_TIMEOUT)),
                    },
                );
            }
            Purpose::TopologyRouteQuery { asked } => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::RouteQueryAnswered {
                        asked,
                        body: Err(code.unwrap_or(ErrorCode::REQUEST_TIMEOUT)),
                    },
                );
            }
            Purpose::TopologyPing { target } => {
                let _ = self.topo.handle(
                    now,
                    TopologyInput::PingAnswered {
                        target,
                        responder: None,
                    },
                );
            }
            Purpose::Notification => {}
        }
    }

    /// §6.3.4: an answer for a Resource-ID must come from a node at least as close to it
    /// as every node of our neighbour table (clockwise distance on the ring).
    fn plausibly_responsible(&self, signer: &NodeId, r: &ResourceId) -> bool {
        let (Some(r), Some(s)) = (r.as_u128(), signer.as_u128()) else {
            return true;
        };
        let d = |n: u128| n.wrapping_sub(r);
        let ds = d(s);
        let mut known = self.topo.predecessors();
        known.extend(self.topo.successors());
        if self.topo.is_joined() {
            known.push(self.creds.node_id);
        }
        known.iter().filter_map(NodeId::as_u128).all(|n| ds <= d(n))
    }

    /// Executes what the topology plug-in asked for.
    fn drain_topology(&mut self, now: Instant) {
        // Bounded: a plug-in cannot make the core loop forever.
        for _ in 0..10_000 {
            let Some(action) = self.topo.poll_action() else {
                return;
            };
            match action {
                TopologyAction::Attach {
                    target,
                    via,
                    send_update,
                } => {
                    let mut dest: Vec<Destination> =
                        via.into_iter().map(Destination::Node).collect();
                    dest.push(target.clone());
                    let body = MessageBody::AttachReq(AttachReqAns {
                        ufrag: Bytes::new(),
                        password: Bytes::new(),
                        role: Bytes::from_static(ROLE_PASSIVE),
                        candidates: self.candidates(),
                        send_update,
                    });
                    if self
                        .request(
                            now,
                            dest,
                            body,
                            Purpose::TopologyAttach {
                                target: target.clone(),
                                send_update,
                            },
                        )
                        .is_none()
                    {
                        let _ = self.topo.handle(
                            now,
                            TopologyInput::AttachFailed {
                                target,
                                error: None,
                            },
                        );
                    }
                }
                TopologyAction::SendUpdate { to, body } => {
                    self.request(
                        now,
                        vec![Destination::Node(to)],
                        MessageBody::UpdateReq(UpdateReq(body)),
                        Purpose::Notification,
                    );
                }
                TopologyAction::SendJoin {
                    to,
                    overlay_specific_data,
                } => {
                    let body = MessageBody::JoinReq(JoinReq {
                        joining_peer_id: self.creds.node_id,
                        overlay_specific_data,
                    });
                    self.request(
                        now,
                        vec![Destination::Node(to)],
                        body,
                        Purpose::TopologyJoin,
                    );
                }
                TopologyAction::SendLeave {
                    to,
                    overlay_specific_data,
                } => {
                    let body = MessageBody::LeaveReq(LeaveReq {
                        leaving_peer_id: self.creds.node_id,
                        overlay_specific_data,
                    });
                    self.request(
                        now,
                        vec![Destination::Node(to)],
                        body,
                        Purpose::Notification,
                    );
                }
                TopologyAction::RouteQuery {
                    to,
                    destination,
                    send_update,
                } => {
                    let body = MessageBody::RouteQueryReq(RouteQueryReq {
                        send_update,
                        destination,
                        overlay_specific_data: Bytes::new(),
                    });
                    self.request(
                        now,
                        vec![Destination::Node(to)],
                        body,
                        Purpose::TopologyRouteQuery { asked: to },
                    );
                }
                TopologyAction::Ping { target, via } => {
                    let mut dest: Vec<Destination> =
                        via.into_iter().map(Destination::Node).collect();
                    dest.push(target.clone());
                    let body = MessageBody::PingReq(reload_wire::link::PingReq::default());
                    self.request(now, dest, body, Purpose::TopologyPing { target });
                }
                TopologyAction::ReleaseLink { peer } => {
                    if let Some(link) = self.by_peer.remove(&peer) {
                        self.close_link(now, link);
                    }
                }
                TopologyAction::Joined => {
                    self.bootstrap_backoff = BOOTSTRAP_RETRY_MIN;
                    self.bootstrap_retry = None;
                    self.events.push_back(Event::Joined)
                }
                TopologyAction::NeighborsChanged => self.events.push_back(Event::NeighborsChanged),
                TopologyAction::Isolated { reason } => {
                    self.schedule_bootstrap_retry(now);
                    self.events.push_back(Event::Isolated { reason })
                }
            }
        }
    }
}

/// Error codes a node on the path (not the destination) produces (RFC 6940 §6.3.3.1;
/// RFC 7851 §9.4).
fn is_transit_error(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::TTL_EXCEEDED
            | ErrorCode::UNSUPPORTED_FORWARDING_OPTION
            | ErrorCode::MESSAGE_TOO_LARGE
            | ErrorCode::UNDERLAY_DESTINATION_UNREACHABLE
            | ErrorCode::UNDERLAY_TIME_EXCEEDED
            | ErrorCode::MESSAGE_EXPIRED
            | ErrorCode::UPSTREAM_MISROUTING
            | ErrorCode::LOOP_DETECTED
            | ErrorCode::TTL_HOPS_EXCEEDED
    )
}

/// Extensions this node understands.
fn known_extension(_t: MessageExtensionType) -> bool {
    false
}

/// The message code, read without decoding the rest (it follows the header).
fn header_code(data: &Bytes, header_len: usize) -> Option<MessageCode> {
    let b = data.get(header_len..header_len + 2)?;
    Some(MessageCode(u16::from_be_bytes([b[0], b[1]])))
}

/// The destination list of an answer (§6.2.2, §6.1.2): the node we got the request from,
/// then the request's via list reversed.
fn reply_destination(h: &ForwardingHeader, from: NodeId) -> Vec<Destination> {
    let mut d = vec![Destination::Node(from)];
    d.extend(h.via_list.iter().rev().cloned());
    // If the request came straight from its originator the list is just [from].
    d
}
