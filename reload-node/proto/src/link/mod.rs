//! The overlay link layer (RFC 6940 §6.6) as sans-IO state machines.
//!
//! A [`Link`] is one authenticated (D)TLS connection to a neighbour carrying RELOAD messages
//! in `FramedMessage`s (§6.6.2):
//!
//! - [`LinkProtocol::TlsTcpFhNoIce`] — TLS over TCP with the framing header (§6.6.5);
//! - [`LinkProtocol::DtlsUdpSrNoIce`] — DTLS over UDP with Simple Reliability (§6.6.6).
//!
//! No sockets, no clocks, no threads: the shell feeds socket bytes to
//! [`Link::handle_input`], writes whatever [`Link::poll_transmit`] returns (TLS: one chunk per
//! `write`, ideally with `TCP_NODELAY`; DTLS: one datagram each), calls
//! [`Link::handle_timeout`] at [`Link::poll_timeout`], and reads [`Link::poll_event`]. Time
//! is the `now: Instant` passed in; certificate validity is judged at the wall-clock time
//! [`LinkConfig::anchor`] gives for that instant.
//!
//! Roles (§6.5.1.13 L4167–L4171): the node that sent the Attach request is the (D)TLS
//! **server** ([`Link::accept_tls`], [`Link::accept_dtls`]) and requires a client certificate;
//! the other is the client ([`Link::connect_tls`], [`Link::connect_dtls`]). Both check the
//! peer's certificate against the overlay's [`TrustPolicy`] and, when given, the Node-ID the
//! Attach named (a bootstrap connection, §11.4, may not know it yet: pass `None`).
//!
//! Failure signalling (§6.6 L4486–L4490): [`LinkEvent::Stalled`] is the "likely failure"
//! signal (remove from the routing table), [`LinkEvent::Resumed`] its end, and
//! [`LinkEvent::Failed`] the end of the link.

pub mod cookie;
pub mod framing;
pub mod keylog;
pub mod plain;

mod auth;
mod dtls;
mod tls;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reload_wire::NodeId;
use reload_wire::link::OverlayLinkType;

pub use auth::AuthError;
pub use dtls::{MAX_DTLS_MESSAGE, MAX_RECORD_PLAINTEXT, first_record_epoch_zero, is_client_hello};
pub use framing::{Framer, FramingConfig, FramingEvent, FramingStats, Reliability, RtoEstimator};
pub use keylog::{KeyLogSink, NssKeyLog};
pub use tls::AppFlowTls;

use crate::identity::{ReloadCertificate, TrustPolicy};
use crate::overlay::Overlay;
use crate::sign::Credentials;

/// The overlay link protocols this module implements (§6.6, names of §14.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkProtocol {
    /// TLS over TCP with the framing header, no ICE (§6.6.5).
    TlsTcpFhNoIce,
    /// DTLS over UDP with Simple Reliability, no ICE (§6.6.6).
    DtlsUdpSrNoIce,
}

impl LinkProtocol {
    /// The OverlayLinkType code point (§14.11).
    pub fn link_type(self) -> OverlayLinkType {
        match self {
            LinkProtocol::TlsTcpFhNoIce => OverlayLinkType::TLS_TCP_FH_NO_ICE,
            LinkProtocol::DtlsUdpSrNoIce => OverlayLinkType::DTLS_UDP_SR_NO_ICE,
        }
    }

    /// The protocol of an OverlayLinkType code point, if this module implements it.
    pub fn of(t: OverlayLinkType) -> Option<Self> {
        match t {
            OverlayLinkType::TLS_TCP_FH_NO_ICE => Some(LinkProtocol::TlsTcpFhNoIce),
            OverlayLinkType::DTLS_UDP_SR_NO_ICE => Some(LinkProtocol::DtlsUdpSrNoIce),
            _ => None,
        }
    }

    /// The OverlayLinkType name (§14.11).
    pub fn name(self) -> &'static str {
        match self {
            LinkProtocol::TlsTcpFhNoIce => "TLS-TCP-FH-NO-ICE",
            LinkProtocol::DtlsUdpSrNoIce => "DTLS-UDP-SR-NO-ICE",
        }
    }

    /// The sender algorithm on top of the frames.
    pub fn reliability(self) -> Reliability {
        match self {
            LinkProtocol::TlsTcpFhNoIce => Reliability::FramingHeader,
            LinkProtocol::DtlsUdpSrNoIce => Reliability::SimpleReliability,
        }
    }
}

/// Which side of the (D)TLS handshake this link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The Attach sender (§6.5.1.13): accepts, requires the client's certificate.
    Server,
    /// The Attach receiver.
    Client,
}

/// Why a link failed or refused an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// We refused the peer's certificate (unknown CA, expired, wrong Node-ID, bad-node, none).
    PeerAuth(AuthError),
    /// The peer sent a fatal alert, e.g. `UnknownCA`, `BadCertificate`, `CertificateRequired`
    /// (it refused our certificate).
    PeerAlert(String),
    /// Any other (D)TLS failure: decode or decrypt errors, unexpected messages.
    Protocol(String),
    /// The handshake did not finish within [`LinkConfig::handshake_timeout`] (or DTLS ran out
    /// of flight retransmissions).
    HandshakeTimeout,
    /// The decrypted stream or record is no sequence of FramedMessages.
    Framing(String),
    /// A message over the max-message-size: refused by [`Link::send`] (the link stays up), or
    /// announced by the peer's frame (the link fails, §6.6 L4467).
    MessageTooLarge { size: usize, max: usize },
    /// [`Link::send`] refused: the queue is full (the link stays up).
    QueueFull,
    /// SR: a message was sent this many times without an ACK (§6.6.3.1 L4753).
    RetransmissionsExhausted { transmissions: u32 },
    /// FH: no ACK for this long (one RTO plus [`FramingConfig::failure_timeout`], §6.6.5).
    AckTimeout { waited: Duration },
    /// TCP ended without a close_notify.
    ConnectionLost,
    /// The link is closed or failed.
    Closed,
    /// Our own credentials or settings are unusable.
    Config(String),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::PeerAuth(e) => write!(f, "peer authentication failed: {e}"),
            LinkError::PeerAlert(a) => write!(f, "the peer sent a fatal alert: {a}"),
            LinkError::Protocol(e) => write!(f, "(D)TLS failure: {e}"),
            LinkError::HandshakeTimeout => write!(f, "the (D)TLS handshake timed out"),
            LinkError::Framing(e) => write!(f, "framing error (RFC 6940 §6.6.2): {e}"),
            LinkError::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds max-message-size {max}")
            }
            LinkError::QueueFull => write!(f, "link send queue is full"),
            LinkError::RetransmissionsExhausted { transmissions } => write!(
                f,
                "no ACK after {transmissions} transmissions (RFC 6940 §6.6.3.1)"
            ),
            LinkError::AckTimeout { waited } => {
                write!(f, "no ACK for {} ms (RFC 6940 §6.6.5)", waited.as_millis())
            }
            LinkError::ConnectionLost => write!(f, "connection closed without close_notify"),
            LinkError::Closed => write!(f, "the link is closed"),
            LinkError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LinkError {}

/// The wall-clock time at one monotonic instant: the wall time of any later `now` follows
/// from it, so links (like the core) never read the system clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallAnchor {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl WallAnchor {
    pub fn new(instant: Instant, wall: SystemTime) -> Self {
        WallAnchor { instant, wall }
    }

    /// The wall-clock time at `now`.
    pub fn at(&self, now: Instant) -> SystemTime {
        match now.checked_duration_since(self.instant) {
            Some(d) => self.wall + d,
            None => self.wall - self.instant.duration_since(now),
        }
    }
}

/// The largest UDP payload a DTLS link sends by default: the IPv6 minimum MTU (1280, RFC
/// 8200 §5) less the IPv6 (40) and UDP (8) headers.
pub const DEFAULT_DTLS_MTU: usize = 1232;

/// What a DTLS record adds to its plaintext: header (13), explicit nonce (8) and tag (16) of
/// the AEAD suites, with room to spare.
const DTLS_RECORD_OVERHEAD: usize = 45;

/// Settings shared by every link of a node.
#[derive(Clone)]
pub struct LinkConfig {
    /// Root-certs, bad-nodes, self-signed policy of the overlay (§11.1, §11.3).
    pub trust: TrustPolicy,
    /// Framing and reliability; `framing.max_message_size` is the overlay's max-message-size.
    pub framing: FramingConfig,
    /// Handshake must finish within this.
    pub handshake_timeout: Duration,
    /// TLS versions offered and accepted (both by default; RFC 6940 names TLS 1.2, rustls
    /// prefers 1.3 when both ends have it).
    pub tls12: bool,
    pub tls13: bool,
    /// NSS key log for TLS links (debugging only).
    pub key_log: Option<KeyLogSink>,
    /// The wall-clock time at one instant: certificate validity is checked at the wall time
    /// of each call's `now`.
    pub anchor: WallAnchor,
    /// The largest UDP payload a DTLS link sends: handshake messages are fragmented to fit
    /// it, and a RELOAD message that does not fit one record of it is fragmented (§6.7, see
    /// [`LinkSession::mtu`]).
    pub dtls_mtu: usize,
    /// DTLS handshake flight retransmission interval.
    pub dtls_flight_interval: Duration,
    /// TLS: [`Link::send`] answers [`LinkError::QueueFull`] while more bytes than this wait in
    /// [`Link::poll_transmit`].
    pub max_pending_transmit: usize,
    /// Certificates sent after ours to complete the chain.
    pub intermediates: Vec<Bytes>,
}

impl fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkConfig")
            .field("overlay", &self.trust.overlay)
            .field("framing", &self.framing)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("key_log", &self.key_log)
            .field("dtls_mtu", &self.dtls_mtu)
            .finish_non_exhaustive()
    }
}

impl LinkConfig {
    /// RFC defaults for an overlay with this trust policy and max-message-size, checking
    /// certificates at the wall-clock time `anchor` gives.
    pub fn new(trust: TrustPolicy, max_message_size: usize, anchor: WallAnchor) -> Self {
        LinkConfig {
            framing: FramingConfig {
                node_id_len: trust.node_id_len,
                ..FramingConfig::new(max_message_size)
            },
            trust,
            handshake_timeout: Duration::from_secs(10),
            tls12: true,
            tls13: true,
            key_log: None,
            anchor,
            dtls_mtu: DEFAULT_DTLS_MTU,
            dtls_flight_interval: Duration::from_secs(1),
            max_pending_transmit: 8 << 20,
            intermediates: Vec::new(),
        }
    }
}

/// A node's link settings with its credentials loaded for TLS and DTLS; one per node.
#[derive(Debug)]
pub struct LinkContext {
    config: LinkConfig,
    trust: Arc<TrustPolicy>,
    node_id: NodeId,
    tls: tls::TlsCredentials,
    dtls: dtls::DtlsCredentials,
}

impl LinkContext {
    pub fn new(config: LinkConfig, creds: &Credentials) -> Result<Arc<Self>, LinkError> {
        let tls = tls::TlsCredentials::new(creds, &config.intermediates)?;
        let dtls = dtls::DtlsCredentials::new(creds, &config.intermediates)?;
        Ok(Arc::new(LinkContext {
            trust: Arc::new(config.trust.clone()),
            config,
            node_id: creds.node_id,
            tls,
            dtls,
        }))
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// The same credentials under new settings (a new trust policy or limits after a
    /// ConfigUpdate): links made from it check peers against `config`.
    pub fn reconfigured(&self, config: LinkConfig) -> Arc<Self> {
        Arc::new(LinkContext {
            trust: Arc::new(config.trust.clone()),
            config,
            node_id: self.node_id,
            tls: self.tls.clone(),
            dtls: self.dtls.clone(),
        })
    }

    /// Our Node-ID.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }
}

/// The authenticated peer of an established link.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    pub node_ids: Vec<NodeId>,
    pub cert: Arc<ReloadCertificate>,
    /// The intermediates sent with it (to check it again under a new trust policy).
    pub chain: Vec<Bytes>,
}

/// What a link reports.
#[derive(Clone, Debug)]
pub enum LinkEvent {
    /// The handshake finished and the peer is authenticated. On TLS 1.3 the client learns
    /// this before the server has checked the client's certificate (the client's Finished
    /// goes with it): a refusal by the server then arrives as `Failed(PeerAlert(..))`.
    Established {
        peer_node_ids: Vec<NodeId>,
        peer_cert: Arc<ReloadCertificate>,
        /// The intermediates the peer sent (to check the certificate again under a new
        /// trust policy, §6.5.4).
        peer_chain: Vec<Bytes>,
    },
    /// One RELOAD message from the peer.
    Message(Bytes),
    /// Likely failure: remove the link from the routing table (§6.6 L4486, §6.6.3.1 L4758,
    /// §6.6.5 L4786). The link stays open.
    Stalled,
    /// ACKs flow again after [`LinkEvent::Stalled`]; the link may return to the routing table.
    Resumed,
    /// The peer sent a message over max-message-size (§6.6): its start (forwarding header
    /// included). Nothing more is read; answer Error_Message_Too_Large, then close.
    TooLarge { prefix: Bytes },
    /// The link is dead; drain [`Link::poll_transmit`] (alerts) and drop it.
    Failed(LinkError),
    /// Closed by either side with close_notify.
    Closed,
}

/// Where a link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Handshaking,
    Established,
    Closed,
    Failed,
}

pub(crate) enum SessionEvent {
    HandshakeComplete,
    Data(Bytes),
    PeerClosed,
}

#[derive(Debug)]
enum Session {
    Tls(Box<tls::TlsSession>),
    Dtls(Box<dtls::DtlsSession>),
}

/// One overlay link (see the module documentation).
#[derive(Debug)]
pub struct Link {
    protocol: LinkProtocol,
    role: Role,
    session: Session,
    check: auth::PeerCheck,
    framer: Framer,
    state: LinkState,
    peer: Option<PeerIdentity>,
    events: VecDeque<LinkEvent>,
    handshake_deadline: Instant,
    max_pending_transmit: usize,
    anchor: WallAnchor,
    /// The largest message sent in one piece (DTLS: what one record of the MTU carries).
    mtu: Option<usize>,
    /// An application flow (AppAttach, §6.5.2): each record's plaintext is one message of
    /// the application, no RELOAD framing (RFC 7904 §5.1 "SIP as in normal SIP").
    raw: bool,
}

impl Link {
    /// TLS server side (we sent the Attach). `expected_peer`: the Node-ID from the Attach.
    pub fn accept_tls(
        ctx: &LinkContext,
        expected_peer: Option<NodeId>,
        now: Instant,
    ) -> Result<Link, LinkError> {
        let check =
            auth::PeerCheck::new(ctx.trust.clone(), expected_peer, ctx.config.anchor.at(now));
        let s = Box::new(tls::TlsSession::server(ctx, check.clone())?);
        Ok(Link::new(
            ctx,
            LinkProtocol::TlsTcpFhNoIce,
            Role::Server,
            Session::Tls(s),
            check,
            now,
        ))
    }

    /// TLS client side (we received the Attach, or bootstrap with `expected_peer = None`).
    pub fn connect_tls(
        ctx: &LinkContext,
        expected_peer: Option<NodeId>,
        now: Instant,
    ) -> Result<Link, LinkError> {
        let check =
            auth::PeerCheck::new(ctx.trust.clone(), expected_peer, ctx.config.anchor.at(now));
        let s = Box::new(tls::TlsSession::client(ctx, check.clone())?);
        Ok(Link::new(
            ctx,
            LinkProtocol::TlsTcpFhNoIce,
            Role::Client,
            Session::Tls(s),
            check,
            now,
        ))
    }

    /// DTLS server side (we sent the Attach).
    pub fn accept_dtls(
        ctx: &LinkContext,
        expected_peer: Option<NodeId>,
        now: Instant,
    ) -> Result<Link, LinkError> {
        Self::accept_dtls_with_cookie(ctx, expected_peer, None, now)
    }

    /// DTLS server side for a ClientHello whose cookie the endpoint verified statelessly
    /// (`link::cookie`): the handshake expects that cookie.
    pub fn accept_dtls_with_cookie(
        ctx: &LinkContext,
        expected_peer: Option<NodeId>,
        cookie: Option<[u8; cookie::COOKIE_LEN]>,
        now: Instant,
    ) -> Result<Link, LinkError> {
        let check =
            auth::PeerCheck::new(ctx.trust.clone(), expected_peer, ctx.config.anchor.at(now));
        let s = dtls::DtlsSession::server(ctx, check.clone(), cookie)?;
        Ok(Link::new(
            ctx,
            LinkProtocol::DtlsUdpSrNoIce,
            Role::Server,
            Session::Dtls(Box::new(s)),
            check,
            now,
        ))
    }

    /// A DTLS application flow (AppAttach over ICE, RFC 6940 §6.5.2): the same handshake
    /// and peer check as a DTLS link — the AppAttach sender is the server (§6.5.1.13) and,
    /// with `cookie`, expects the one the endpoint verified — but every record's plaintext
    /// is one application message ([`LinkEvent::Message`], [`Link::send`]), unframed.
    pub fn dtls_application(
        ctx: &LinkContext,
        role: Role,
        expected_peer: Option<NodeId>,
        cookie: Option<[u8; cookie::COOKIE_LEN]>,
        now: Instant,
    ) -> Result<Link, LinkError> {
        let check =
            auth::PeerCheck::new(ctx.trust.clone(), expected_peer, ctx.config.anchor.at(now));
        let s = match role {
            Role::Server => dtls::DtlsSession::server(ctx, check.clone(), cookie)?,
            Role::Client => dtls::DtlsSession::client(ctx, check.clone(), now)?,
        };
        let mut link = Link::new(
            ctx,
            LinkProtocol::DtlsUdpSrNoIce,
            role,
            Session::Dtls(Box::new(s)),
            check,
            now,
        );
        link.raw = true;
        link.mtu = None;
        Ok(link)
    }

    /// Whether this is an application flow (see [`Link::dtls_application`]).
    pub fn is_application(&self) -> bool {
        self.raw
    }

    /// DTLS client side; the ClientHello is ready in [`Link::poll_transmit`].
    pub fn connect_dtls(
        ctx: &LinkContext,
        expected_peer: Option<NodeId>,
        now: Instant,
    ) -> Result<Link, LinkError> {
        let check =
            auth::PeerCheck::new(ctx.trust.clone(), expected_peer, ctx.config.anchor.at(now));
        let s = dtls::DtlsSession::client(ctx, check.clone(), now)?;
        Ok(Link::new(
            ctx,
            LinkProtocol::DtlsUdpSrNoIce,
            Role::Client,
            Session::Dtls(Box::new(s)),
            check,
            now,
        ))
    }

    fn new(
        ctx: &LinkContext,
        protocol: LinkProtocol,
        role: Role,
        session: Session,
        check: auth::PeerCheck,
        now: Instant,
    ) -> Link {
        let mut fc = ctx.config.framing.clone();
        if protocol == LinkProtocol::DtlsUdpSrNoIce {
            fc.max_message_size = fc.max_message_size.min(MAX_DTLS_MESSAGE);
        }
        Link {
            protocol,
            role,
            session,
            check,
            framer: Framer::new(protocol.reliability(), fc),
            state: LinkState::Handshaking,
            peer: None,
            events: VecDeque::new(),
            handshake_deadline: framing::later(now, ctx.config.handshake_timeout),
            max_pending_transmit: ctx.config.max_pending_transmit,
            anchor: ctx.config.anchor,
            mtu: (protocol == LinkProtocol::DtlsUdpSrNoIce).then(|| {
                ctx.config.dtls_mtu.saturating_sub(
                    DTLS_RECORD_OVERHEAD + reload_wire::framing::DATA_FRAME_OVERHEAD,
                )
            }),
            raw: false,
        }
    }

    pub fn protocol(&self) -> LinkProtocol {
        self.protocol
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn is_established(&self) -> bool {
        self.state == LinkState::Established
    }

    /// The authenticated peer, once established.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// The largest message [`Link::send`] takes: the overlay's max-message-size, and on DTLS
    /// at most [`MAX_DTLS_MESSAGE`] (larger messages need §6.7 fragmentation).
    pub fn max_message_size(&self) -> usize {
        self.framer.max_message_size()
    }

    /// The largest message sent in one piece: on DTLS what one record of the configured
    /// MTU carries; `None` on TLS (a stream carries any size).
    pub fn mtu(&self) -> Option<usize> {
        self.mtu
    }

    /// The peer's certificate as checked at the handshake, once established.
    pub fn peer_certificate(&self) -> Option<&Arc<ReloadCertificate>> {
        self.peer.as_ref().map(|p| &p.cert)
    }

    /// The current RTO of the framing layer.
    pub fn rto(&self) -> Duration {
        self.framer.rto()
    }

    /// The smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.framer.estimator().srtt()
    }

    pub fn framing_stats(&self) -> &FramingStats {
        self.framer.stats()
    }

    /// The framing layer, read-only (sequence numbers, estimator, queue).
    pub fn framer(&self) -> &Framer {
        &self.framer
    }

    /// DTLS: datagrams discarded because they were no DTLS records.
    pub fn discarded_datagrams(&self) -> u64 {
        match &self.session {
            Session::Dtls(s) => s.discarded,
            Session::Tls(_) => 0,
        }
    }

    /// Negotiated protocol version and cipher suite, once known.
    pub fn describe(&self) -> Option<String> {
        match &self.session {
            Session::Tls(s) => s.describe(),
            Session::Dtls(s) => s.describe(),
        }
    }

    fn done(&self) -> bool {
        matches!(self.state, LinkState::Closed | LinkState::Failed)
    }

    /// Bytes from the socket: a chunk of the TCP stream, or one UDP datagram.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.done() {
            return;
        }
        self.check.set_wall(self.anchor.at(now));
        let mut evs = Vec::new();
        let r = match &mut self.session {
            Session::Tls(s) => s.handle_input(data, &mut evs),
            Session::Dtls(s) => s.handle_input(now, data, &mut evs),
        };
        for ev in evs {
            if self.done() {
                break;
            }
            match ev {
                SessionEvent::HandshakeComplete => self.on_established(now),
                SessionEvent::Data(d) if self.raw => self.events.push_back(LinkEvent::Message(d)),
                SessionEvent::Data(d) => {
                    let r = match self.protocol.reliability() {
                        Reliability::FramingHeader => self.framer.handle_stream(now, &d),
                        Reliability::SimpleReliability => self.framer.handle_record(now, d),
                    };
                    if let Err(e) = r {
                        self.fail(now, e);
                    }
                }
                SessionEvent::PeerClosed => {
                    self.drain_framer();
                    self.state = LinkState::Closed;
                    self.events.push_back(LinkEvent::Closed);
                }
            }
        }
        if let Err(e) = r {
            self.fail(now, e);
        }
        self.pump(now);
    }

    /// The TCP peer closed its side (read returned 0). Clean after a close_notify, else the
    /// link fails with [`LinkError::ConnectionLost`]. No-op for DTLS.
    pub fn handle_eof(&mut self, now: Instant) {
        if self.done() {
            return;
        }
        if let Session::Tls(s) = &mut self.session {
            if s.handle_eof() {
                self.state = LinkState::Closed;
                self.events.push_back(LinkEvent::Closed);
            } else {
                self.fail(now, LinkError::ConnectionLost);
            }
        }
    }

    /// Queues one RELOAD message. Before the handshake completes it waits in the queue.
    /// `MessageTooLarge` and `QueueFull` leave the link up.
    pub fn send(&mut self, now: Instant, message: Bytes) -> Result<(), LinkError> {
        if self.done() {
            return Err(LinkError::Closed);
        }
        if let Session::Tls(s) = &self.session
            && s.pending_bytes() > self.max_pending_transmit
        {
            return Err(LinkError::QueueFull);
        }
        if self.raw {
            if self.state != LinkState::Established {
                return Err(LinkError::Closed);
            }
            if message.len() > dtls::MAX_RECORD_PLAINTEXT {
                return Err(LinkError::MessageTooLarge {
                    size: message.len(),
                    max: dtls::MAX_RECORD_PLAINTEXT,
                });
            }
            return match &mut self.session {
                Session::Dtls(s) => s.write_frame(now, &message),
                Session::Tls(_) => Err(LinkError::Closed),
            };
        }
        self.framer.send(now, message)?;
        self.pump(now);
        Ok(())
    }

    /// Bytes for the socket: TLS — one chunk per framed message (one `write` each); DTLS — one
    /// datagram.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        match &mut self.session {
            Session::Tls(s) => s.poll_transmit(),
            Session::Dtls(s) => s.poll_transmit(),
        }
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`Link::handle_timeout`] is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done() {
            return None;
        }
        let session = match &self.session {
            Session::Tls(_) => None,
            Session::Dtls(s) => s.poll_timeout(),
        };
        let own = match self.state {
            LinkState::Handshaking => Some(self.handshake_deadline),
            _ if self.raw => None,
            _ => self.framer.poll_timeout(),
        };
        [session, own].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done() {
            return;
        }
        self.check.set_wall(self.anchor.at(now));
        if self.state == LinkState::Handshaking && now >= self.handshake_deadline {
            self.fail(now, LinkError::HandshakeTimeout);
            return;
        }
        if let Session::Dtls(s) = &mut self.session
            && let Err(e) = s.handle_timeout(now)
        {
            self.fail(now, e);
            return;
        }
        if let Err(e) = self.framer.handle_timeout(now) {
            self.fail(now, e);
            return;
        }
        self.pump(now);
    }

    /// Closes with close_notify; queued messages are dropped. [`LinkEvent::Closed`] follows.
    pub fn close(&mut self, now: Instant) {
        if self.done() {
            return;
        }
        self.drain_framer();
        self.close_session(now);
        self.state = LinkState::Closed;
        self.events.push_back(LinkEvent::Closed);
    }

    fn close_session(&mut self, now: Instant) {
        match &mut self.session {
            Session::Tls(s) => s.close(),
            Session::Dtls(s) => s.close(now),
        }
    }

    fn on_established(&mut self, now: Instant) {
        let cert = match self.check.verdict() {
            Some(Ok(cert)) => cert,
            Some(Err(e)) => return self.fail(now, LinkError::PeerAuth(e)),
            None => return self.fail(now, LinkError::PeerAuth(AuthError::NoCertificate)),
        };
        // The certificate we checked is the one the (D)TLS layer authenticated.
        let seen = match &self.session {
            Session::Tls(s) => s.peer_end_entity(),
            Session::Dtls(s) => s.peer_end_entity(),
        };
        if seen.as_ref() != Some(cert.der()) {
            return self.fail(
                now,
                LinkError::Protocol("peer certificate changed during the handshake".into()),
            );
        }
        self.state = LinkState::Established;
        let chain = self.check.chain();
        self.peer = Some(PeerIdentity {
            node_ids: cert.node_ids.clone(),
            cert: cert.clone(),
            chain: chain.clone(),
        });
        self.events.push_back(LinkEvent::Established {
            peer_node_ids: cert.node_ids.clone(),
            peer_cert: cert,
            peer_chain: chain,
        });
        if !self.raw {
            self.framer.open(now);
        }
    }

    /// Frames to the secure channel, framing events and messages to link events.
    fn pump(&mut self, now: Instant) {
        if self.state == LinkState::Established {
            while let Some(frame) = self.framer.poll_frame() {
                let r = match &mut self.session {
                    Session::Tls(s) => s.write_frame(&frame),
                    Session::Dtls(s) => s.write_frame(now, &frame),
                };
                if let Err(e) = r {
                    self.fail(now, e);
                    break;
                }
            }
        }
        self.drain_framer();
    }

    fn drain_framer(&mut self) {
        while let Some(m) = self.framer.poll_message() {
            self.events.push_back(LinkEvent::Message(m));
        }
        while let Some(e) = self.framer.poll_event() {
            self.events.push_back(match e {
                FramingEvent::Stalled => LinkEvent::Stalled,
                FramingEvent::Resumed => LinkEvent::Resumed,
                FramingEvent::TooLarge { prefix } => LinkEvent::TooLarge { prefix },
            });
        }
    }

    fn fail(&mut self, now: Instant, e: LinkError) {
        if self.done() {
            return;
        }
        self.drain_framer();
        // Tell the peer (close_notify) unless the (D)TLS layer itself failed and sent its alert.
        if !matches!(
            e,
            LinkError::PeerAuth(_) | LinkError::PeerAlert(_) | LinkError::Protocol(_)
        ) {
            self.close_session(now);
        }
        self.state = LinkState::Failed;
        self.events.push_back(LinkEvent::Failed(e));
    }
}

// ---- the interface the node core drives ------------------------------------------------

/// How a link's bytes travel: the transport the shell provides under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// A byte stream (TCP): chunks in order, no boundaries kept.
    Stream,
    /// Datagrams on a UDP socket, told apart by their addresses (RFC 7983).
    Datagram,
}

impl TransportKind {
    /// The transport an overlay link type runs on (§6.6, §14.11).
    pub fn of(t: OverlayLinkType) -> Option<Self> {
        match t {
            OverlayLinkType::TLS_TCP_FH_NO_ICE => Some(TransportKind::Stream),
            OverlayLinkType::DTLS_UDP_SR_NO_ICE | OverlayLinkType::DTLS_UDP_SR => {
                Some(TransportKind::Datagram)
            }
            _ => None,
        }
    }
}

/// One overlay link as the node core drives it, whatever it is made of: (D)TLS
/// ([`Link`]), the simulator's [`plain::PlainLink`], and later ICE + DTLS. A sans-IO state
/// machine: transport bytes in, transport bytes and [`LinkEvent`]s out, time passed in.
pub trait LinkSession: fmt::Debug + Send {
    /// The overlay link type it speaks (§14.11).
    fn link_type(&self) -> OverlayLinkType;
    /// Bytes from the transport: a chunk of the stream, or one datagram.
    fn handle_input(&mut self, now: Instant, data: &[u8]);
    /// The stream ended (the peer closed its side).
    fn handle_eof(&mut self, now: Instant);
    /// Queues one RELOAD message (held until the link is established).
    fn send(&mut self, now: Instant, message: Bytes) -> Result<(), LinkError>;
    /// Bytes for the transport: one write, or one datagram.
    fn poll_transmit(&mut self) -> Option<Bytes>;
    fn poll_event(&mut self) -> Option<LinkEvent>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    /// Closes (a close_notify where the protocol has one); [`LinkEvent::Closed`] follows.
    fn close(&mut self, now: Instant);
    fn is_established(&self) -> bool;
    /// The largest message sent in one piece; larger ones are fragmented (§6.7). `None`:
    /// any size up to max-message-size.
    fn mtu(&self) -> Option<usize>;
    /// A new max-message-size is in force (ConfigUpdate).
    fn set_max_message_size(&mut self, max: usize);
    /// Protocol version and cipher suite, once known, for status displays.
    fn describe(&self) -> Option<String>;
}

impl LinkSession for Link {
    fn link_type(&self) -> OverlayLinkType {
        self.protocol.link_type()
    }
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        Link::handle_input(self, now, data)
    }
    fn handle_eof(&mut self, now: Instant) {
        Link::handle_eof(self, now)
    }
    fn send(&mut self, now: Instant, message: Bytes) -> Result<(), LinkError> {
        Link::send(self, now, message)
    }
    fn poll_transmit(&mut self) -> Option<Bytes> {
        Link::poll_transmit(self)
    }
    fn poll_event(&mut self) -> Option<LinkEvent> {
        Link::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Link::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Link::handle_timeout(self, now)
    }
    fn close(&mut self, now: Instant) {
        Link::close(self, now)
    }
    fn is_established(&self) -> bool {
        Link::is_established(self)
    }
    fn mtu(&self) -> Option<usize> {
        self.mtu
    }
    fn set_max_message_size(&mut self, max: usize) {
        let max = match self.protocol {
            LinkProtocol::DtlsUdpSrNoIce => max.min(MAX_DTLS_MESSAGE),
            LinkProtocol::TlsTcpFhNoIce => max,
        };
        self.framer.set_max_message_size(max);
    }
    fn describe(&self) -> Option<String> {
        Link::describe(self)
    }
}

/// Makes the links of a node: the core asks for one when a transport is accepted or when
/// it opens one. Role (§6.5.1.13): the node that sent the Attach is the (D)TLS server.
pub trait LinkFactory: fmt::Debug + Send {
    /// A link over a transport of `kind`; the peer must prove `expected_peer` when given.
    fn link(
        &self,
        kind: TransportKind,
        role: Role,
        expected_peer: Option<NodeId>,
        now: Instant,
    ) -> Result<Box<dyn LinkSession>, LinkError>;

    /// A new overlay configuration is in force: links made from now on check their peers
    /// against its trust policy and apply its limits.
    fn reconfigure(&mut self, overlay: &Overlay);

    /// TLS for AppAttach application flows (§6.5.2), when these links have certificates
    /// (not the simulator's plain links).
    fn app_flow_tls(&self) -> Option<AppFlowTls> {
        None
    }

    /// A DTLS application flow (AppAttach over ICE, §6.5.2; [`Link::dtls_application`]);
    /// `None` where links have no certificates (the simulator's plain links).
    fn application_flow(
        &self,
        role: Role,
        expected_peer: Option<NodeId>,
        cookie: Option<[u8; cookie::COOKIE_LEN]>,
        now: Instant,
    ) -> Option<Result<Box<dyn LinkSession>, LinkError>> {
        let _ = (role, expected_peer, cookie, now);
        None
    }

    /// A datagram server link for a ClientHello whose stateless cookie the endpoint
    /// verified (`link::cookie`): its handshake expects that cookie.
    fn verified_datagram_server(
        &self,
        cookie: [u8; cookie::COOKIE_LEN],
        now: Instant,
    ) -> Result<Box<dyn LinkSession>, LinkError> {
        let _ = cookie;
        self.link(TransportKind::Datagram, Role::Server, None, now)
    }
}

/// The real links: TLS-TCP-FH-NO-ICE on streams, DTLS-UDP-SR-NO-ICE on datagrams.
#[derive(Debug)]
pub struct SecureLinks {
    ctx: Arc<LinkContext>,
}

impl SecureLinks {
    pub fn new(ctx: Arc<LinkContext>) -> Self {
        SecureLinks { ctx }
    }

    pub fn context(&self) -> &Arc<LinkContext> {
        &self.ctx
    }
}

impl LinkFactory for SecureLinks {
    fn link(
        &self,
        kind: TransportKind,
        role: Role,
        expected_peer: Option<NodeId>,
        now: Instant,
    ) -> Result<Box<dyn LinkSession>, LinkError> {
        let ctx = &self.ctx;
        let link = match (kind, role) {
            (TransportKind::Stream, Role::Server) => Link::accept_tls(ctx, expected_peer, now),
            (TransportKind::Stream, Role::Client) => Link::connect_tls(ctx, expected_peer, now),
            (TransportKind::Datagram, Role::Server) => Link::accept_dtls(ctx, expected_peer, now),
            (TransportKind::Datagram, Role::Client) => Link::connect_dtls(ctx, expected_peer, now),
        }?;
        Ok(Box::new(link))
    }

    fn verified_datagram_server(
        &self,
        cookie: [u8; cookie::COOKIE_LEN],
        now: Instant,
    ) -> Result<Box<dyn LinkSession>, LinkError> {
        Ok(Box::new(Link::accept_dtls_with_cookie(
            &self.ctx,
            None,
            Some(cookie),
            now,
        )?))
    }

    fn app_flow_tls(&self) -> Option<AppFlowTls> {
        Some(AppFlowTls::new(self.ctx.clone()))
    }

    fn application_flow(
        &self,
        role: Role,
        expected_peer: Option<NodeId>,
        cookie: Option<[u8; cookie::COOKIE_LEN]>,
        now: Instant,
    ) -> Option<Result<Box<dyn LinkSession>, LinkError>> {
        Some(
            Link::dtls_application(&self.ctx, role, expected_peer, cookie, now)
                .map(|l| Box::new(l) as Box<dyn LinkSession>),
        )
    }

    fn reconfigure(&mut self, overlay: &Overlay) {
        let mut config = self.ctx.config().clone();
        config.trust = overlay.trust().as_ref().clone();
        config.framing.max_message_size = overlay.max_message_size();
        self.ctx = self.ctx.reconfigured(config);
    }
}
