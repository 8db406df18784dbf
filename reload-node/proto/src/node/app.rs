//! Application flows over ICE: AppAttach in an ICE overlay (RFC 6940 §6.5.2).
//!
//! §6.5.2 makes AppAttach "nearly identical" to Attach: ufrag, password and candidates
//! in the request and the answer, ICE between the two nodes, then (D)TLS over the selected
//! pair with the AppAttach sender as the server (§6.5.1.13) — but the flow carries the
//! application the Application-ID names (RFC 7904 §5.1: "SIP as in normal SIP"), not
//! RELOAD. Here:
//!
//! - **Sockets**: flows use the node's *application sockets* (`NodeSettings::app_sockets`),
//!   never the overlay's: an overlay link between the same two nodes may take the
//!   overlay sockets' address pair at any time, and datagrams are told apart by address
//!   pair only. Each flow takes one application socket (its host candidate, the
//!   server-reflexive address peers report for it, §6.5.1.4, and its TURN relay, §9); a
//!   socket carries flows to many nodes but at most one to each, so two flows between the
//!   same nodes (both directions at once, or two applications) never share a pair.
//! - **Requester** ([`Node::app_offer`], then [`Node::app_answered`]): a controlling ICE
//!   session; once a pair is selected, the answerer's DTLS ClientHello arrives on it
//!   (through the stateless cookie exchange) and the flow's DTLS server takes it; the
//!   peer must prove the Node-ID that answered.
//! - **Answerer** ([`Node::app_answer`]): a controlled session; once a pair is selected,
//!   a DTLS client from the pair's base to its remote address; the peer must prove the
//!   requester's Node-ID.
//! - **Data**: one DTLS record per application message ([`AppFlowEvent::Data`],
//!   [`Node::app_send`]); the flow is as reliable as UDP (SIP's own transactions
//!   retransmit over unreliable transports, RFC 3261 §17).
//! - **Keepalive and failure**: the ICE session keeps the pair alive (§6.5.1.10.3;
//!   RFC 7904 §5.2 deems this enough for SIP) and notices when it is lost; the flow then
//!   ends with [`AppFlowEvent::Closed`] saying why, as does a failed handshake, a flow not
//!   set up within [`SETUP_DEADLINE`], or a close by the peer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_nat::ice::SelectedPair;
use reload_wire::NodeId;
use reload_wire::link::{AppAttach, AttachReqAns, ROLE_ACTIVE, ROLE_PASSIVE};
use reload_wire::message::{ErrorCode, ErrorResponse};

use super::endpoint::Transport;
use super::ice::{IceInfo, ice_candidates, text};
use super::{Event, Node, Transmit};
use crate::link::cookie::ClientHello;
use crate::link::{LinkEvent, LinkSession, Role, is_client_hello};

/// A flow not open this long after it was offered or answered is given up (ICE gives up
/// after 30 s of checks, the DTLS handshake after 10 s; an unanswered AppAttach after
/// the request lifetime).
pub const SETUP_DEADLINE: Duration = Duration::from_secs(90);

/// An application flow, as the core names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppFlowId(pub u64);

impl fmt::Display for AppFlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "application flow {}", self.0)
    }
}

/// What happens to an application flow.
#[derive(Clone, Debug)]
pub enum AppFlowEvent {
    /// The DTLS handshake finished: `peer` proved its Node-ID; `pair` is the ICE pair
    /// the flow runs over.
    Open {
        flow: AppFlowId,
        peer: NodeId,
        application: u16,
        pair: Option<IceInfo>,
    },
    /// One message of the application.
    Data { flow: AppFlowId, data: Bytes },
    /// The flow ended (or never opened): why.
    Closed { flow: AppFlowId, reason: String },
}

/// Why an application flow cannot be made or used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppFlowError {
    /// The overlay does not use ICE: AppAttach flows are TLS over TCP there (§6.5.1.5).
    NotIce,
    /// No application socket is free for that peer.
    NoSocket(String),
    /// [`super::NodeSettings::max_app_flows`] flows exist already.
    TooMany(usize),
    /// No ICE candidate could be gathered.
    NoCandidates,
    /// No such flow (it ended).
    Unknown(AppFlowId),
    /// The flow is not open (yet), or the message was refused.
    Send(String),
}

impl fmt::Display for AppFlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppFlowError::NotIce => write!(f, "the overlay does not use ICE"),
            AppFlowError::NoSocket(why) => write!(f, "no application socket: {why}"),
            AppFlowError::TooMany(n) => write!(f, "{n} application flows exist already"),
            AppFlowError::NoCandidates => write!(f, "no ICE candidate for an application flow"),
            AppFlowError::Unknown(flow) => write!(f, "{flow} does not exist (any more)"),
            AppFlowError::Send(why) => write!(f, "not sent: {why}"),
        }
    }
}

impl std::error::Error for AppFlowError {}

/// A flow as status displays show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppFlowInfo {
    pub flow: AppFlowId,
    pub peer: Option<NodeId>,
    pub application: u16,
    pub open: bool,
    /// We sent the AppAttach.
    pub requester: bool,
    pub pair: Option<IceInfo>,
}

#[derive(Debug)]
struct Flow {
    application: u16,
    /// The other node: the requester, or (ours) the node that answered.
    peer: Option<NodeId>,
    /// The application socket the flow's candidates are on.
    socket: SocketAddr,
    controlling: bool,
    ice: u64,
    /// Its DTLS association, and the (local, remote) pair it runs on.
    link: Option<Box<dyn LinkSession>>,
    addr: Option<(SocketAddr, SocketAddr)>,
    open: bool,
    started: Instant,
    pair: Option<IceInfo>,
}

impl Flow {
    /// A flow being set up: its ICE session `ice` runs on `socket`.
    fn new(
        application: u16,
        peer: Option<NodeId>,
        socket: SocketAddr,
        controlling: bool,
        ice: u64,
        now: Instant,
    ) -> Flow {
        Flow {
            application,
            peer,
            socket,
            controlling,
            ice,
            link: None,
            addr: None,
            open: false,
            started: now,
            pair: None,
        }
    }
}

/// The node's application flows.
#[derive(Debug, Default)]
pub(super) struct Apps {
    flows: BTreeMap<u64, Flow>,
    by_addr: HashMap<(SocketAddr, SocketAddr), u64>,
    next: u64,
}

fn app_body(a: AttachReqAns, application: u16) -> AppAttach {
    AppAttach {
        ufrag: a.ufrag,
        password: a.password,
        application,
        role: a.role,
        candidates: a.candidates,
    }
}

impl Node {
    /// Starts an application flow for `application` (§6.5.2.1): the AppAttach body to
    /// send (ufrag, password, our candidates); `peer`, when known, is the node it goes
    /// to (so that the flow takes a socket with no flow to it). Then
    /// [`Node::app_answered`] with the answer, or [`Node::app_close`] if none came.
    pub fn app_offer(
        &mut self,
        now: Instant,
        application: u16,
        peer: Option<NodeId>,
    ) -> Result<(AppFlowId, AppAttach), AppFlowError> {
        if !self.ice_mode() {
            return Err(AppFlowError::NotIce);
        }
        if self.apps.flows.len() >= self.s.max_app_flows {
            return Err(AppFlowError::TooMany(self.apps.flows.len()));
        }
        let socket = self.app_socket(peer)?;
        self.apps.next += 1;
        let id = self.apps.next;
        let ice = self
            .new_attempt(now, true, Some((id, socket)))
            .ok_or(AppFlowError::NoCandidates)?;
        let body = app_body(self.ice_body(ice, ROLE_PASSIVE, false), application);
        let flow = Flow::new(application, peer, socket, true, ice, now);
        self.apps.flows.insert(id, flow);
        tracing::debug!(%socket, application, "AppAttach offered (application flow {id})");
        Ok((AppFlowId(id), body))
    }

    /// `from` answered the AppAttach of `flow` with `ans`: the checks start. A failure
    /// ends the flow ([`AppFlowEvent::Closed`]).
    pub fn app_answered(&mut self, now: Instant, flow: AppFlowId, from: NodeId, ans: &AppAttach) {
        let id = flow.0;
        let Some(f) = self.apps.flows.get_mut(&id) else {
            return;
        };
        if !f.controlling || f.addr.is_some() {
            return;
        }
        if f.peer.is_some_and(|p| p != from) {
            let why = format!("answered by {from}, not by {}", f.peer.expect("some"));
            return self.app_flow_failed(now, id, why);
        }
        if ans.application != f.application {
            let why = format!(
                "application {} answered for {}",
                ans.application, f.application
            );
            return self.app_flow_failed(now, id, why);
        }
        f.peer = Some(from);
        let ice = f.ice;
        let remote = match ice_candidates(&ans.candidates) {
            Ok(r) => r,
            Err(why) => return self.app_flow_failed(now, id, why),
        };
        let (ufrag, pwd) = (text(&ans.ufrag), text(&ans.password));
        if ufrag.is_empty() || pwd.is_empty() {
            let why = "the answer has no ICE ufrag or password".to_string();
            return self.app_flow_failed(now, id, why);
        }
        if let Err(why) = self.ice_start_checks(now, ice, from, &ufrag, &pwd, &remote) {
            self.app_flow_failed(now, id, why);
        }
    }

    /// An AppAttach from `requester` for an application we run (§6.5.2.2): a new flow
    /// and the answer body, or the error to answer with.
    pub fn app_answer(
        &mut self,
        now: Instant,
        requester: NodeId,
        req: &AppAttach,
    ) -> Result<(AppFlowId, AppAttach), ErrorResponse> {
        let refuse = |code: ErrorCode, why: String| ErrorResponse::new(code, why);
        if !self.ice_mode() {
            return Err(refuse(
                ErrorCode::INCOMPATIBLE_WITH_OVERLAY,
                "this overlay does not use ICE (§6.5.1.5)".into(),
            ));
        }
        let remote =
            ice_candidates(&req.candidates).map_err(|e| refuse(ErrorCode::INVALID_MESSAGE, e))?;
        let (ufrag, pwd) = (text(&req.ufrag), text(&req.password));
        if ufrag.is_empty() || pwd.is_empty() {
            return Err(refuse(
                ErrorCode::INVALID_MESSAGE,
                "an AppAttach in an ICE overlay needs ufrag and password".into(),
            ));
        }
        let setting_up = self.apps.flows.values().filter(|f| !f.open).count();
        if setting_up >= self.s.admission.max_handshakes
            || self.apps.flows.len() >= self.s.max_app_flows
        {
            return Err(refuse(
                ErrorCode::FORBIDDEN,
                "too many application flows: try again later".into(),
            ));
        }
        let socket = self
            .app_socket(Some(requester))
            .map_err(|e| refuse(ErrorCode::FORBIDDEN, e.to_string()))?;
        self.apps.next += 1;
        let id = self.apps.next;
        let ice = self
            .new_attempt(now, false, Some((id, socket)))
            .ok_or_else(|| {
                refuse(
                    ErrorCode::INCOMPATIBLE_WITH_OVERLAY,
                    "no ICE candidates".into(),
                )
            })?;
        let body = app_body(self.ice_body(ice, ROLE_ACTIVE, false), req.application);
        let flow = Flow::new(req.application, Some(requester), socket, false, ice, now);
        self.apps.flows.insert(id, flow);
        if let Err(why) = self.ice_start_checks(now, ice, requester, &ufrag, &pwd, &remote) {
            self.app_flow_failed(now, id, why.clone());
            return Err(refuse(ErrorCode::INVALID_MESSAGE, why));
        }
        tracing::debug!(%socket, %requester, application = req.application, "AppAttach answered (application flow {id})");
        Ok((AppFlowId(id), body))
    }

    /// Sends one message of the application on an open flow (one DTLS record, at most
    /// 2^14 bytes).
    pub fn app_send(
        &mut self,
        now: Instant,
        flow: AppFlowId,
        data: Bytes,
    ) -> Result<(), AppFlowError> {
        let f = self
            .apps
            .flows
            .get_mut(&flow.0)
            .ok_or(AppFlowError::Unknown(flow))?;
        let Some(link) = f.link.as_mut().filter(|_| f.open) else {
            return Err(AppFlowError::Send(format!("{flow} is not open yet")));
        };
        link.send(now, data)
            .map_err(|e| AppFlowError::Send(e.to_string()))?;
        self.app_pump(now, flow.0);
        Ok(())
    }

    /// Closes a flow (close_notify on an open one); no event follows.
    pub fn app_close(&mut self, now: Instant, flow: AppFlowId) {
        if let Some(mut f) = self.app_remove(flow.0) {
            self.app_shut(now, &mut f);
            tracing::debug!("{flow} closed");
        }
    }

    pub(super) fn app_close_all(&mut self, now: Instant) {
        let ids: Vec<u64> = self.apps.flows.keys().copied().collect();
        for id in ids {
            self.app_close(now, AppFlowId(id));
        }
    }

    /// The UDP sockets the shell bound for application flows (before [`Node::start`]).
    pub fn set_app_sockets(&mut self, sockets: Vec<SocketAddr>) {
        self.s.app_sockets = sockets;
    }

    /// The application flows, for status displays.
    pub fn app_flows(&self) -> Vec<AppFlowInfo> {
        self.apps
            .flows
            .iter()
            .map(|(id, f)| AppFlowInfo {
                flow: AppFlowId(*id),
                peer: f.peer,
                application: f.application,
                open: f.open,
                requester: f.controlling,
                pair: f.pair.clone(),
            })
            .collect()
    }

    /// The application socket for a new flow to `peer`: one with no flow to that peer,
    /// the least used first.
    fn app_socket(&self, peer: Option<NodeId>) -> Result<SocketAddr, AppFlowError> {
        let sockets: Vec<SocketAddr> = self
            .s
            .app_sockets
            .iter()
            .filter(|a| !a.ip().is_unspecified())
            .copied()
            .collect();
        if sockets.is_empty() {
            return Err(AppFlowError::NoSocket(
                "this node has no application sockets".into(),
            ));
        }
        let flows = &self.apps.flows;
        sockets
            .iter()
            .filter(|s| {
                peer.is_none() || !flows.values().any(|f| f.socket == **s && f.peer == peer)
            })
            .min_by_key(|s| flows.values().filter(|f| f.socket == **s).count())
            .copied()
            .ok_or_else(|| {
                AppFlowError::NoSocket(format!(
                    "each of the {} application sockets has a flow with that node already",
                    sockets.len()
                ))
            })
    }

    /// The application socket flow `id` runs on.
    pub(super) fn app_socket_of(&self, id: u64) -> Option<SocketAddr> {
        self.apps.flows.get(&id).map(|f| f.socket)
    }

    /// Whether datagrams to `local` belong to application flows: an application socket,
    /// or a relayed address allocated for one.
    pub(super) fn is_app_local(&self, local: SocketAddr) -> bool {
        if self.s.app_sockets.is_empty() {
            return false;
        }
        let base = self.turn.base_of(local).unwrap_or(local);
        self.s.app_sockets.contains(&base)
    }

    fn app_remove(&mut self, id: u64) -> Option<Flow> {
        let f = self.apps.flows.remove(&id)?;
        if let Some(key) = f.addr {
            self.apps.by_addr.remove(&key);
        }
        self.ice_drop(f.ice);
        Some(f)
    }

    /// Closes a removed flow's DTLS (close_notify) and sends what that produced.
    fn app_shut(&mut self, now: Instant, f: &mut Flow) {
        if let (Some(link), Some((local, remote))) = (f.link.as_mut(), f.addr) {
            link.close(now);
            while let Some(data) = link.poll_transmit() {
                self.transmits.push_back(Transmit {
                    transport: Transport::Datagram { local, remote },
                    data,
                });
            }
        }
    }

    /// The flow failed or ended: gone, and the application hears why.
    pub(super) fn app_flow_failed(&mut self, now: Instant, id: u64, reason: String) {
        let Some(mut f) = self.app_remove(id) else {
            return;
        };
        self.app_shut(now, &mut f);
        let who = f.peer.map_or("?".to_string(), |p| p.to_string());
        tracing::info!(
            "application flow {id} (application {}) with {who} ended: {reason}",
            f.application
        );
        self.events.push_back(Event::AppFlow(AppFlowEvent::Closed {
            flow: AppFlowId(id),
            reason,
        }));
    }

    /// ICE selected a pair for flow `id`: the answerer opens its DTLS client over it;
    /// the requester waits for that ClientHello.
    pub(super) fn app_ice_connected(
        &mut self,
        now: Instant,
        id: u64,
        ice: u64,
        pair: SelectedPair,
    ) {
        let Some(f) = self.apps.flows.get_mut(&id) else {
            return;
        };
        f.pair = Some(IceInfo::of(&pair, f.controlling));
        tracing::info!(peer = ?f.peer, application = f.application, "application flow {id}: ICE selected {pair}");
        if f.controlling || f.link.is_some() {
            return;
        }
        let key = (pair.base, pair.remote.addr);
        if self.apps.by_addr.contains_key(&key) {
            let why = format!("another application flow runs on {} → {}", key.0, key.1);
            return self.app_flow_failed(now, id, why);
        }
        let session = match self
            .factory
            .application_flow(Role::Client, f.peer, None, now)
        {
            Some(Ok(s)) => s,
            Some(Err(e)) => return self.app_flow_failed(now, id, e.to_string()),
            None => {
                let why = "these links have no DTLS for application flows".to_string();
                return self.app_flow_failed(now, id, why);
            }
        };
        f.link = Some(session);
        f.addr = Some(key);
        self.apps.by_addr.insert(key, id);
        if let Some(a) = self.ice_attempt(ice) {
            a.app_linked = true;
        }
        self.app_pump(now, id);
    }

    /// DTLS on an application socket (or its relayed address).
    pub(super) fn app_dtls_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: Bytes,
    ) {
        let key = (local, remote);
        if let Some(&id) = self.apps.by_addr.get(&key) {
            let Some(f) = self.apps.flows.get_mut(&id) else {
                return;
            };
            if let Some(link) = f.link.as_mut() {
                link.handle_input(now, &data);
            }
            let ice = f.ice;
            if let Some(a) = self.ice_attempt(ice) {
                a.session_mut().saw_traffic(now, local, remote);
            }
            return self.app_pump(now, id);
        }
        // A new association: only the ClientHello of a flow we requested, whose ICE
        // reached the pair (the cookie exchange first: nothing is kept for a hello
        // without a valid cookie, RFC 6347 §4.2.1).
        let hello = is_client_hello(&data)
            .then(|| ClientHello::parse(&data))
            .flatten();
        let Some(ch) = hello else {
            self.stats.dropped_datagrams += 1;
            return;
        };
        let random = ch.random(&data);
        let cookies = &self.endpoint.cookies;
        if !cookies.verify(local, remote, random, ch.cookie(&data)) {
            let cookie = cookies.cookie(local, remote, random);
            self.stats.dtls_cookies_sent += 1;
            self.transmits.push_back(Transmit {
                transport: Transport::Datagram { local, remote },
                data: ch.hello_verify_request(&data, &cookie),
            });
            return;
        }
        let cookie = cookies.cookie(local, remote, random);
        let base = self.turn.base_of(local).unwrap_or(local);
        let waiting = |f: &Flow| f.controlling && f.link.is_none() && f.socket == base;
        let selected = |node: &Node, f: &Flow| {
            node.ice
                .attempt(f.ice)
                .and_then(|a| a.session().selected())
                .is_some_and(|p| p.base == local && p.remote.addr == remote)
        };
        // Without a selected pair yet (the ClientHello overtook the check's answer), a
        // hello is taken only from an address the session pairs with: a candidate the
        // answer signalled, or a peer-reflexive one an authenticated check revealed — not
        // from whoever races the peer to our socket.
        let paired = |node: &Node, f: &Flow| {
            node.ice.attempt(f.ice).is_some_and(|a| {
                a.session()
                    .pairs(now)
                    .iter()
                    .any(|p| p.remote.as_ref().is_some_and(|c| c.addr == remote))
            })
        };
        let found = self
            .apps
            .flows
            .iter()
            .filter(|(_, f)| waiting(f) && selected(self, f))
            .chain(
                self.apps
                    .flows
                    .iter()
                    .filter(|(_, f)| waiting(f) && paired(self, f)),
            )
            .map(|(id, _)| *id)
            .next();
        let Some(id) = found else {
            self.stats.dropped_datagrams += 1;
            return;
        };
        let peer = self.apps.flows[&id].peer;
        let mut session = match self
            .factory
            .application_flow(Role::Server, peer, Some(cookie), now)
        {
            Some(Ok(s)) => s,
            _ => {
                self.stats.dropped_datagrams += 1;
                return;
            }
        };
        // The ClientHello as a first one: the session draws our cookie and asks for it;
        // that HelloVerifyRequest is not sent (the client has it), then the real one.
        session.handle_input(now, &ch.as_first(&data));
        while session.poll_transmit().is_some() {}
        session.handle_input(now, &data);
        let f = self.apps.flows.get_mut(&id).expect("found");
        f.link = Some(session);
        f.addr = Some(key);
        let ice = f.ice;
        self.apps.by_addr.insert(key, id);
        if let Some(a) = self.ice_attempt(ice) {
            a.app_linked = true;
            a.session_mut().saw_traffic(now, local, remote);
        }
        self.app_pump(now, id);
    }

    /// Hands what flow `id`'s DTLS wants to send to the shell and acts on its events.
    fn app_pump(&mut self, now: Instant, id: u64) {
        for _ in 0..4096 {
            let Some(f) = self.apps.flows.get_mut(&id) else {
                return;
            };
            let (Some(link), Some((local, remote))) = (f.link.as_mut(), f.addr) else {
                return;
            };
            while let Some(data) = link.poll_transmit() {
                self.transmits.push_back(Transmit {
                    transport: Transport::Datagram { local, remote },
                    data,
                });
            }
            let Some(ev) = link.poll_event() else {
                return;
            };
            match ev {
                LinkEvent::Established { peer_node_ids, .. } => {
                    let Some(peer) = f.peer.filter(|p| peer_node_ids.contains(p)) else {
                        let why = format!(
                            "the peer's certificate names {peer_node_ids:?}, not {:?}",
                            f.peer
                        );
                        return self.app_flow_failed(now, id, why);
                    };
                    f.open = true;
                    if f.pair.is_none() {
                        f.pair = self
                            .ice
                            .attempt(f.ice)
                            .and_then(|a| a.session().selected())
                            .map(|p| IceInfo::of(p, f.controlling));
                    }
                    tracing::info!(%peer, application = f.application, "application flow {id} open (RFC 6940 §6.5.2)");
                    self.events.push_back(Event::AppFlow(AppFlowEvent::Open {
                        flow: AppFlowId(id),
                        peer,
                        application: f.application,
                        pair: f.pair.clone(),
                    }));
                }
                LinkEvent::Message(data) => {
                    self.events.push_back(Event::AppFlow(AppFlowEvent::Data {
                        flow: AppFlowId(id),
                        data,
                    }));
                }
                LinkEvent::Failed(e) => return self.app_flow_failed(now, id, e.to_string()),
                LinkEvent::Closed => {
                    return self.app_flow_failed(now, id, "closed by the peer".into());
                }
                LinkEvent::Stalled | LinkEvent::Resumed | LinkEvent::TooLarge { .. } => {}
            }
        }
    }

    pub(super) fn app_next_deadline(&self) -> Option<Instant> {
        self.apps
            .flows
            .values()
            .filter_map(|f| {
                let link = f.link.as_ref().and_then(|l| l.poll_timeout());
                let setup = (!f.open).then_some(f.started + SETUP_DEADLINE);
                [link, setup].into_iter().flatten().min()
            })
            .min()
    }

    pub(super) fn app_timers(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .apps
            .flows
            .iter()
            .filter(|(_, f)| {
                f.link
                    .as_ref()
                    .and_then(|l| l.poll_timeout())
                    .is_some_and(|t| t <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(link) = self.apps.flows.get_mut(&id).and_then(|f| f.link.as_mut()) {
                link.handle_timeout(now);
            }
            self.app_pump(now, id);
        }
        let stale: Vec<u64> = self
            .apps
            .flows
            .iter()
            .filter(|(_, f)| !f.open && now >= f.started + SETUP_DEADLINE)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            let why = format!("not set up within {SETUP_DEADLINE:?}");
            self.app_flow_failed(now, id, why);
        }
    }
}
