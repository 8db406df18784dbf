//! One ICE session (RFC 6940 §6.5.1.3–§6.5.1.10, RFC 5245): the agent of one Attach or
//! AppAttach, around `rtc-ice`'s sans-IO [`Agent`].
//!
//! The RELOAD profile: one stream, one component (component ID 1), a single offer/answer,
//! no default candidates; the Attach sender is controlling and the answerer controlled
//! (§6.5.1.9); STUN keepalives on the selected pair (§6.5.1.10.3). The session gathers
//! nothing itself — the node hands it its candidates (host addresses of its UDP sockets,
//! server-reflexive addresses learnt from its peers, §6.5.1.4) — and opens no socket: STUN
//! datagrams go in with [`IceSession::handle_stun`] and out with
//! [`IceSession::poll_transmit`], each tagged with the (local, remote) address pair.
//!
//! Candidates travel in the Attach body as [`IceCandidate`]s; [`Candidate`] is the same
//! information with an address we can use, and converts both ways.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reload_wire::common::IpAddressPort;
use reload_wire::link::{CandType, IceCandidate, OverlayLinkType};
use rtc_ice::candidate::candidate_host::CandidateHostConfig;
use rtc_ice::candidate::candidate_pair::CandidatePairState;
use rtc_ice::candidate::candidate_peer_reflexive::CandidatePeerReflexiveConfig;
use rtc_ice::candidate::candidate_relay::CandidateRelayConfig;
use rtc_ice::candidate::candidate_server_reflexive::CandidateServerReflexiveConfig;
use rtc_ice::candidate::{CandidateConfig, CandidateType};
use rtc_ice::mdns::MulticastDnsMode;
use rtc_ice::network_type::NetworkType;
use rtc_ice::state::ConnectionState;
use rtc_ice::{Agent, AgentConfig, Event};
use rtc_shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use sansio::Protocol as _;

/// The one component of a RELOAD ICE stream (§6.5.1.5).
const COMPONENT: u16 = 1;

/// Connectivity checks sent on one pair before it counts as failed: at one check every
/// 200 ms, a pair is tried for about 8 s (rtc-ice's default of 7 gives up after 1.6 s,
/// before a slow or lossy path has answered).
const MAX_CHECKS_PER_PAIR: u16 = 40;

/// Keepalives on the selected pair (RFC 5245 §10: at least every 15 s; NAT bindings
/// commonly last 30 s or more).
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Silence on the selected pair (no keepalive answered, no DTLS) after which it counts
/// as lost: three keepalives in a row unanswered; then as long again before Failed.
const SILENCE: Duration = Duration::from_secs(30);

/// Checks end with failure after this long without a selected pair, or earlier when
/// every pair has failed (RFC 5245 §7.1.3.3: no pair left to try).
pub const CHECK_DEADLINE: Duration = Duration::from_secs(30);

/// How often a connected session's agent runs (keepalives, consent). rtc-ice asks for
/// its 200 ms checking tick even when connected; a node with many links would wake
/// hundreds of times a second for nothing. Keepalives go out within this of their
/// [`KEEPALIVE`] interval, silence is noticed within this of [`SILENCE`].
const CONNECTED_TICK: Duration = Duration::from_secs(1);

/// The kind of a candidate (RFC 5245 §4.1.1, RFC 6940 §6.5.1.1 `CandType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CandidateKind {
    /// An address of one of our own sockets.
    Host,
    /// Our address as a STUN server (another peer) saw it: a NAT's mapping.
    ServerReflexive,
    /// Our address as the other agent saw it in a check (learnt during checks).
    PeerReflexive,
    /// An address on a TURN relay.
    Relayed,
}

impl CandidateKind {
    /// The type preference of RFC 5245 §4.1.2.2 (the recommended values).
    pub fn type_preference(self) -> u32 {
        match self {
            CandidateKind::Host => 126,
            CandidateKind::PeerReflexive => 110,
            CandidateKind::ServerReflexive => 100,
            CandidateKind::Relayed => 0,
        }
    }

    /// The short name ICE uses (`host`, `srflx`, `prflx`, `relay`).
    pub fn name(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "srflx",
            CandidateKind::PeerReflexive => "prflx",
            CandidateKind::Relayed => "relay",
        }
    }

    fn of_wire(t: CandType) -> Option<Self> {
        match t {
            CandType::HOST => Some(CandidateKind::Host),
            CandType::SRFLX => Some(CandidateKind::ServerReflexive),
            CandType::RELAY => Some(CandidateKind::Relayed),
            _ => None,
        }
    }

    fn wire(self) -> CandType {
        match self {
            CandidateKind::Host => CandType::HOST,
            // RFC 6940's CandType has no prflx (such candidates are learnt in checks,
            // never signalled): one we would send is sent as what it is, reflexive.
            CandidateKind::ServerReflexive | CandidateKind::PeerReflexive => CandType::SRFLX,
            CandidateKind::Relayed => CandType::RELAY,
        }
    }

    fn of_rtc(t: CandidateType) -> Self {
        match t {
            CandidateType::ServerReflexive => CandidateKind::ServerReflexive,
            CandidateType::PeerReflexive => CandidateKind::PeerReflexive,
            CandidateType::Relay => CandidateKind::Relayed,
            _ => CandidateKind::Host,
        }
    }
}

impl fmt::Display for CandidateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One candidate (RFC 5245 §4.1): where checks and, once selected, DTLS go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub kind: CandidateKind,
    pub priority: u32,
    pub foundation: String,
    /// The related address (§4.1.1): a reflexive candidate's base, a relayed one's mapped
    /// address.
    pub related: Option<SocketAddr>,
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.addr)
    }
}

/// The priority of a component-1 candidate (RFC 5245 §4.1.2.1):
/// 2^24·type preference + 2^8·local preference + (256 − component ID).
pub fn priority(kind: CandidateKind, local_preference: u16) -> u32 {
    (kind.type_preference() << 24) + ((local_preference as u32) << 8) + (256 - COMPONENT as u32)
}

/// What the node knows of one of its addresses, to make a local candidate from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddress {
    pub addr: SocketAddr,
    pub kind: CandidateKind,
    /// The socket the candidate's datagrams leave from: `addr` itself for a host
    /// candidate; the host address behind a reflexive one; for a relayed one, the relay
    /// address (datagrams go through the TURN client).
    pub base: SocketAddr,
}

/// Our candidates for an Attach (RFC 5245 §4.1.1.3 duplicates removed, §4.1.2 priorities
/// with a distinct local preference per candidate, §4.1.1.3 foundations: same type, same
/// base IP, same server → same foundation).
pub fn local_candidates(addresses: &[LocalAddress]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut foundations: Vec<(CandidateKind, std::net::IpAddr)> = Vec::new();
    for a in addresses {
        if out.iter().any(|c| c.addr == a.addr && c.kind == a.kind) {
            continue;
        }
        // A reflexive address that is also one of our host addresses adds nothing.
        if a.kind != CandidateKind::Host && out.iter().any(|c| c.addr == a.addr) {
            continue;
        }
        let key = (a.kind, a.base.ip());
        let foundation = match foundations.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                foundations.push(key);
                foundations.len() - 1
            }
        };
        // Distinct local preferences, in the order given (the caller lists its preferred
        // addresses first), IPv4 and IPv6 alike.
        let local_pref = 65535u16.saturating_sub(out.len() as u16);
        out.push(Candidate {
            addr: a.addr,
            kind: a.kind,
            priority: priority(a.kind, local_pref),
            foundation: (foundation + 1).to_string(),
            related: (a.kind != CandidateKind::Host).then_some(a.base),
        });
    }
    out
}

impl Candidate {
    /// The Attach encoding (§6.5.1.1) with `link` as the overlay link protocol.
    pub fn to_wire(&self, link: OverlayLinkType) -> IceCandidate {
        IceCandidate {
            addr_port: self.addr.into(),
            overlay_link: link,
            foundation: Bytes::from(self.foundation.clone().into_bytes()),
            priority: self.priority,
            cand_type: self.kind.wire(),
            rel_addr_port: match self.kind {
                CandidateKind::Host => None,
                _ => Some(
                    self.related
                        .map(IpAddressPort::from)
                        .unwrap_or(IpAddressPort::from(SocketAddr::from(([0, 0, 0, 0], 0)))),
                ),
            },
            extensions: Vec::new(),
        }
    }

    /// A candidate from an Attach body; `None` for one we cannot use (an unknown type, an
    /// address that is not IP, a zero port or priority, a foundation that is not text).
    pub fn from_wire(c: &IceCandidate) -> Option<Candidate> {
        let addr = c.addr_port.socket_addr()?;
        if addr.port() == 0 || addr.ip().is_unspecified() || c.priority == 0 {
            return None;
        }
        let foundation = std::str::from_utf8(&c.foundation).ok()?;
        // ICE foundations are 1–32 ice-chars (RFC 5245 §15.1).
        if foundation.is_empty()
            || foundation.len() > 32
            || !foundation
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            return None;
        }
        let kind = CandidateKind::of_wire(c.cand_type)?;
        // A host candidate has no related address; "none" is sent as 0.0.0.0:0.
        let related = match kind {
            CandidateKind::Host => None,
            _ => c
                .rel_addr_port
                .as_ref()
                .and_then(|a| a.socket_addr())
                .filter(|a| !a.ip().is_unspecified()),
        };
        Some(Candidate {
            addr,
            kind,
            priority: c.priority,
            foundation: foundation.to_string(),
            related,
        })
    }

    fn to_rtc(&self) -> Result<rtc_ice::candidate::Candidate, IceError> {
        let base_config = CandidateConfig {
            network: "udp".into(),
            address: self.addr.ip().to_string(),
            port: self.addr.port(),
            component: COMPONENT,
            priority: self.priority,
            foundation: self.foundation.clone(),
            ..Default::default()
        };
        let rel = self
            .related
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (rel_addr, rel_port) = (rel.ip().to_string(), rel.port());
        let c = match self.kind {
            CandidateKind::Host => CandidateHostConfig {
                base_config,
                ..Default::default()
            }
            .new_candidate_host(),
            CandidateKind::ServerReflexive => CandidateServerReflexiveConfig {
                base_config,
                rel_addr,
                rel_port,
                url: None,
            }
            .new_candidate_server_reflexive(),
            CandidateKind::PeerReflexive => CandidatePeerReflexiveConfig {
                base_config,
                rel_addr,
                rel_port,
            }
            .new_candidate_peer_reflexive(),
            CandidateKind::Relayed => CandidateRelayConfig {
                base_config,
                rel_addr,
                rel_port,
                url: None,
            }
            .new_candidate_relay(),
        };
        c.map_err(|e| IceError(format!("candidate {self}: {e}")))
    }

    fn of_rtc(c: &rtc_ice::candidate::Candidate) -> Candidate {
        Candidate {
            addr: c.addr(),
            kind: CandidateKind::of_rtc(c.candidate_type()),
            priority: c.priority(),
            foundation: c.foundation(),
            related: c
                .related_address()
                .and_then(|r| Some(SocketAddr::new(r.address.parse().ok()?, r.port))),
        }
    }
}

/// ICE failed to start (bad credentials or candidates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceError(pub String);

impl fmt::Display for IceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IceError {}

/// The pair ICE selected: DTLS runs from `base` (our socket) to `remote.addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectedPair {
    pub local: Candidate,
    pub remote: Candidate,
    /// The local address datagrams leave from (the local candidate's base).
    pub base: SocketAddr,
}

impl fmt::Display for SelectedPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {}", self.local, self.remote)
    }
}

/// One candidate pair and how its checks went (for logs and the failure report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairReport {
    pub local: Option<Candidate>,
    pub remote: Option<Candidate>,
    /// `waiting`, `in-progress`, `succeeded` or `failed`.
    pub state: &'static str,
    pub checks_sent: u64,
    pub answers_received: u64,
    /// The peer's checks that arrived on this pair (and were authenticated).
    pub checks_received: u64,
}

impl fmt::Display for PairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |c: &Option<Candidate>| c.as_ref().map_or("?".to_string(), |c| c.to_string());
        write!(
            f,
            "{} → {}: {} ({} checks, {} answers; {} checks received)",
            show(&self.local),
            show(&self.remote),
            self.state,
            self.checks_sent,
            self.answers_received,
            self.checks_received
        )
    }
}

/// What a session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IceEvent {
    /// A pair was selected (nominated): the link can run over it.
    Connected(Box<SelectedPair>),
    /// No pair works (checks exhausted or timed out), or consent was lost on the selected
    /// pair: the session is over.
    Failed,
}

/// Our state of one ICE session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IceState {
    /// Waiting for the other side's credentials and candidates.
    New,
    Checking,
    Connected,
    Failed,
}

/// The ICE agent of one Attach or AppAttach (see the module documentation).
pub struct IceSession {
    agent: Agent,
    controlling: bool,
    state: IceState,
    /// When checks started, and when they give up.
    checks_since: Option<Instant>,
    /// The agent's next timer, as of the last call (it is read through `&mut`).
    agent_timer: Option<Instant>,
    /// When the agent last ran on a timer.
    last_tick: Option<Instant>,
    selected: Option<SelectedPair>,
    events: std::collections::VecDeque<IceEvent>,
    transmits: std::collections::VecDeque<(SocketAddr, SocketAddr, Bytes)>,
}

impl fmt::Debug for IceSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceSession")
            .field("controlling", &self.controlling)
            .field("state", &self.state)
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

/// The crypto (HMAC, CRC, randomness for tie-breakers and transaction IDs) of the agent:
/// aws-lc, as the DTLS links.
fn provider() -> Arc<dyn rtc_ice::crypto::RTCCryptoProvider> {
    Arc::new(rtc_ice::crypto::providers::AwsLcRsProvider::new())
}

impl IceSession {
    /// A session with our credentials (`ufrag` ≥ 4 and `pwd` ≥ 22 ice-chars, RFC 5245
    /// §15.4) and candidates, `controlling` when we send the Attach (§6.5.1.9).
    pub fn new(
        now: Instant,
        controlling: bool,
        ufrag: &str,
        pwd: &str,
        local: &[Candidate],
    ) -> Result<Self, IceError> {
        let ice_chars = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        };
        if ufrag.len() < 4 || pwd.len() < 22 || !ice_chars(ufrag) || !ice_chars(pwd) {
            return Err(IceError(
                "ICE credentials too short or not ice-chars".into(),
            ));
        }
        let config = AgentConfig {
            local_ufrag: ufrag.to_string(),
            local_pwd: pwd.to_string(),
            multicast_dns_mode: MulticastDnsMode::Disabled,
            network_types: vec![NetworkType::Udp4, NetworkType::Udp6],
            is_controlling: controlling,
            max_binding_requests: Some(MAX_CHECKS_PER_PAIR),
            keepalive_interval: Some(KEEPALIVE),
            disconnected_timeout: Some(SILENCE),
            failed_timeout: Some(SILENCE),
            ..Default::default()
        };
        let mut agent = Agent::new(now, Arc::new(config), provider())
            .map_err(|e| IceError(format!("ICE agent: {e}")))?;
        for c in local {
            agent
                .add_local_candidate(c.to_rtc()?)
                .map_err(|e| IceError(format!("local candidate {c}: {e}")))?;
        }
        Ok(IceSession {
            agent,
            controlling,
            state: IceState::New,
            checks_since: None,
            agent_timer: None,
            last_tick: None,
            selected: None,
            events: Default::default(),
            transmits: Default::default(),
        })
    }

    pub fn ufrag(&self) -> &str {
        &self.agent.get_local_credentials().ufrag
    }

    pub fn pwd(&self) -> &str {
        &self.agent.get_local_credentials().pwd
    }

    pub fn is_controlling(&self) -> bool {
        self.controlling
    }

    pub fn state(&self) -> IceState {
        self.state
    }

    /// Our candidates as the agent holds them.
    pub fn local_candidates(&self) -> Vec<Candidate> {
        self.agent
            .get_local_candidates()
            .iter()
            .map(Candidate::of_rtc)
            .collect()
    }

    /// The other side's credentials and candidates arrived (in the Attach or its answer):
    /// checks start. Candidates of another address family than ours simply never pair.
    pub fn start(
        &mut self,
        now: Instant,
        remote_ufrag: &str,
        remote_pwd: &str,
        remote: &[Candidate],
    ) -> Result<(), IceError> {
        if remote_ufrag.is_empty() || remote_pwd.is_empty() {
            return Err(IceError("no ICE credentials in the Attach".into()));
        }
        for c in remote {
            // A candidate rtc-ice refuses (say, a network type we do not pair) is skipped.
            let _ = self.agent.add_remote_candidate(c.to_rtc()?);
        }
        self.agent
            .start_connectivity_checks(
                now,
                self.controlling,
                remote_ufrag.to_string(),
                remote_pwd.to_string(),
            )
            .map_err(|e| IceError(format!("ICE checks: {e}")))?;
        self.state = IceState::Checking;
        self.checks_since = Some(now);
        self.pump();
        Ok(())
    }

    /// A STUN datagram from `remote` to our `local` address that belongs to this session
    /// (a check naming our ufrag, or the answer to one of our checks).
    pub fn handle_stun(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        let _ = self.agent.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: remote,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
        self.pump();
    }

    /// Traffic other than STUN (DTLS) arrived on the selected pair: it proves the path is
    /// alive as a keepalive answer would.
    pub fn saw_traffic(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr) {
        let _ = self.agent.is_valid_non_stun_traffic(
            now,
            TransportContext {
                local_addr: local,
                peer_addr: remote,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
        );
    }

    /// The next datagram to send: (from our local address, to the remote address, bytes).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, SocketAddr, Bytes)> {
        self.pump();
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.pump();
        self.events.pop_front()
    }

    /// When [`IceSession::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            IceState::Checking => {
                let deadline = self.checks_since.map(|t| t + CHECK_DEADLINE);
                [self.agent_timer, deadline].into_iter().flatten().min()
            }
            IceState::Connected => {
                let paced = self.last_tick.map(|t| t + CONNECTED_TICK);
                [self.agent_timer, paced].into_iter().flatten().max()
            }
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !matches!(self.state, IceState::Checking | IceState::Connected) {
            return;
        }
        self.last_tick = Some(now);
        let _ = self.agent.handle_timeout(now);
        self.pump();
        if self.state == IceState::Checking {
            let late = self
                .checks_since
                .is_some_and(|t| now.saturating_duration_since(t) >= CHECK_DEADLINE);
            let pairs = self.agent.get_candidate_pairs_stats(now);
            let all_failed = pairs.iter().all(|p| p.state == CandidatePairState::Failed);
            if late || all_failed {
                // `pairs` stays readable for the failure report: the agent is not closed.
                self.state = IceState::Failed;
                self.events.push_back(IceEvent::Failed);
            }
        }
    }

    /// The selected pair, once connected.
    pub fn selected(&self) -> Option<&SelectedPair> {
        self.selected.as_ref()
    }

    /// Every pair and how its checks went.
    pub fn pairs(&self, now: Instant) -> Vec<PairReport> {
        let find = |list: &[rtc_ice::candidate::Candidate], id: &str| {
            list.iter().find(|c| c.id() == id).map(Candidate::of_rtc)
        };
        self.agent
            .get_candidate_pairs_stats(now)
            .into_iter()
            .map(|p| PairReport {
                local: find(self.agent.get_local_candidates(), &p.local_candidate_id),
                remote: find(self.agent.get_remote_candidates(), &p.remote_candidate_id),
                state: match p.state {
                    CandidatePairState::Waiting => "waiting",
                    CandidatePairState::InProgress => "in progress",
                    CandidatePairState::Succeeded => "succeeded",
                    CandidatePairState::Failed => "failed",
                    _ => "not checked",
                },
                checks_sent: p.requests_sent,
                answers_received: p.responses_received,
                checks_received: p.requests_received,
            })
            .collect()
    }

    /// Ends the session (its candidates are freed, §6.5.1.10.2).
    pub fn close(&mut self) {
        let _ = self.agent.close();
        self.state = IceState::Failed;
    }

    /// Moves the agent's output into ours and follows its state.
    fn pump(&mut self) {
        self.agent_timer = self.agent.poll_timeout();
        while let Some(t) = self.agent.poll_write() {
            self.transmits.push_back((
                t.transport.local_addr,
                t.transport.peer_addr,
                t.message.freeze(),
            ));
        }
        while let Some(e) = self.agent.poll_event() {
            match e.event {
                Event::ConnectionStateChange(ConnectionState::Failed)
                    if self.state != IceState::Failed =>
                {
                    self.state = IceState::Failed;
                    self.events.push_back(IceEvent::Failed);
                }
                Event::SelectedCandidatePairChange(local, remote)
                    if self.selected.is_none() && self.state == IceState::Checking =>
                {
                    let pair = SelectedPair {
                        base: local.base_addr(),
                        local: Candidate::of_rtc(&local),
                        remote: Candidate::of_rtc(&remote),
                    };
                    self.selected = Some(pair.clone());
                    self.state = IceState::Connected;
                    self.events.push_back(IceEvent::Connected(Box::new(pair)));
                }
                _ => {}
            }
        }
    }
}
