//! The endpoint: which bytes belong to which link, and which new links are admitted.
//!
//! Like quinn-proto's `Endpoint`, this is protocol, so it lives in the core and runs in the
//! simulator as it runs on real sockets. The shell reports what happened on its sockets;
//! the core decides:
//! - **streams** (TCP, for TLS-TCP-FH-NO-ICE): an accepted connection becomes a link (we
//!   are its TLS server, RFC 6940 §6.5.1.13) or is refused; the core asks for outgoing
//!   connections ([`Event::OpenStream`]) and for closes ([`Event::CloseStream`]), and
//!   times out connections that never complete (the link's handshake timeout);
//! - **datagrams** (UDP, for DTLS-UDP-SR-NO-ICE): one socket carries STUN, DTLS and TURN
//!   channel data, told apart by their first byte (RFC 7983 §7); DTLS records go to the
//!   association of their (local, remote) address pair. A ClientHello from an unknown pair
//!   opens a new association if admitted; one from the pair of an established association
//!   (a peer that restarted on the same address, RFC 6347 §4.2.8) runs as its successor and
//!   replaces it once its handshake completes; anything else from an unknown pair is
//!   dropped. Plain STUN Binding requests are answered (peers are STUN servers for each
//!   other, RFC 6940 §6.5.1.4); ICE checks and TURN have no consumer until ICE is in.
//!
//! Admission ([`Admission`]) caps the links in all, the handshakes in progress and the
//! links from one IP address: a flood of connections or ClientHellos cannot make the core
//! hold unbounded half-open links, and the node keeps working.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use reload_wire::NodeId;
use reload_wire::link::OverlayLinkType;

use super::Transmit;
use super::links::LinkSlot;
use super::{Event, LinkId, Node};
use crate::link::cookie::{ClientHello, CookieJar};
use crate::link::{LinkSession, Role, TransportKind, first_record_epoch_zero, is_client_hello};

/// A stream (TCP connection) as the core names it; the shell maps it to its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// What carries a link's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A TCP connection.
    Stream(StreamId),
    /// Datagrams between our UDP socket at `local` and `remote`.
    Datagram {
        local: SocketAddr,
        remote: SocketAddr,
    },
}

/// What happened on a stream (reported with [`Node::handle_stream`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The connection asked for by [`Event::OpenStream`] is established.
    Connected,
    /// Bytes arrived.
    Data(Bytes),
    /// The connection ended: end of stream, a read or write error, or a failed connect.
    Closed { error: Option<String> },
    /// The shell cannot queue more bytes for writing: the peer does not read.
    WriteBlocked,
}

/// Which new links the endpoint admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Links in all (ours and accepted ones); incoming ones beyond are refused.
    pub max_links: usize,
    /// Incoming links whose handshake has not completed yet.
    pub max_handshakes: usize,
    /// Incoming links from one IP address.
    pub max_links_per_address: usize,
}

impl Default for Admission {
    /// 1024 links, 64 handshakes in progress, 32 links per address.
    fn default() -> Self {
        Admission {
            max_links: 1024,
            max_handshakes: 64,
            max_links_per_address: 32,
        }
    }
}

/// Why a new incoming link was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyLinks(usize),
    TooManyHandshakes(usize),
    TooManyFromAddress(IpAddr, usize),
    /// The link layer could not make a link (our own credentials or settings).
    Link(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooManyLinks(n) => write!(f, "{n} links already (admission.max_links)"),
            Refusal::TooManyHandshakes(n) => {
                write!(
                    f,
                    "{n} handshakes in progress already (admission.max_handshakes)"
                )
            }
            Refusal::TooManyFromAddress(ip, n) => write!(
                f,
                "{n} links from {ip} already (admission.max_links_per_address)"
            ),
            Refusal::Link(e) => write!(f, "{e}"),
        }
    }
}

/// The DTLS associations of one (local, remote) address pair.
#[derive(Clone, Copy, Debug)]
struct Flow {
    link: LinkId,
    /// A new handshake from the pair of an established association (a restarted peer).
    successor: Option<LinkId>,
}

/// Where bytes go (see the module documentation).
#[derive(Debug)]
pub(super) struct Endpoint {
    streams: HashMap<StreamId, LinkId>,
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    /// Stateless DTLS cookies (RFC 6347 §4.2.1).
    pub(super) cookies: CookieJar,
}

impl Endpoint {
    /// An endpoint whose DTLS cookies are keyed by `secret`.
    pub(super) fn new(secret: &[u8; 32]) -> Self {
        Endpoint {
            streams: HashMap::new(),
            flows: HashMap::new(),
            cookies: CookieJar::new(secret),
        }
    }

    /// Forgets a link's transport; a successor association becomes its pair's only one.
    pub(super) fn remove(&mut self, link: LinkId, transport: Transport) {
        match transport {
            Transport::Stream(s) => {
                self.streams.remove(&s);
            }
            Transport::Datagram { local, remote } => {
                let key = (local, remote);
                if let Some(f) = self.flows.get_mut(&key) {
                    if f.link == link {
                        match f.successor.take() {
                            Some(n) => f.link = n,
                            None => {
                                self.flows.remove(&key);
                            }
                        }
                    } else if f.successor == Some(link) {
                        f.successor = None;
                    }
                }
            }
        }
    }

    /// `link`'s handshake completed: if it is the successor of its pair's association, it
    /// replaces it. Returns the link it replaces.
    pub(super) fn established(&mut self, link: LinkId, transport: Transport) -> Option<LinkId> {
        let Transport::Datagram { local, remote } = transport else {
            return None;
        };
        let f = self.flows.get_mut(&(local, remote))?;
        if f.successor != Some(link) {
            return None;
        }
        f.successor = None;
        Some(std::mem::replace(&mut f.link, link))
    }
}

/// RFC 7983 §7: what the first byte of a datagram says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DatagramKind {
    Stun,
    Dtls,
    TurnChannel,
    Other,
}

fn classify(d: &[u8]) -> DatagramKind {
    match d.first() {
        Some(0..=3) => DatagramKind::Stun,
        Some(20..=63) => DatagramKind::Dtls,
        Some(64..=79) => DatagramKind::TurnChannel,
        _ => DatagramKind::Other,
    }
}

impl Node {
    /// Whether an incoming link from `ip` may be made now.
    fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        let a = self.s.admission;
        if self.links.len() >= a.max_links {
            return Err(Refusal::TooManyLinks(self.links.len()));
        }
        let inbound = self.links.values().filter(|s| s.inbound);
        let handshaking = inbound
            .clone()
            .filter(|s| !s.session.is_established())
            .count();
        if handshaking >= a.max_handshakes {
            return Err(Refusal::TooManyHandshakes(handshaking));
        }
        let from_ip = inbound.filter(|s| s.remote.ip() == ip).count();
        if from_ip >= a.max_links_per_address {
            return Err(Refusal::TooManyFromAddress(ip, from_ip));
        }
        Ok(())
    }

    fn refused(&mut self, remote: SocketAddr, why: &Refusal) {
        self.stats.refused_links += 1;
        tracing::debug!(%remote, "new link refused: {why}");
    }

    /// Registers a new link over `transport`.
    fn add_link(
        &mut self,
        now: Instant,
        session: Box<dyn LinkSession>,
        transport: Transport,
        remote: SocketAddr,
        inbound: bool,
        expected_peer: Option<NodeId>,
    ) -> LinkId {
        let id = LinkId(self.next_id());
        let connected = !matches!(transport, Transport::Stream(_)) || inbound;
        self.links.insert(
            id,
            LinkSlot::new(
                session,
                transport,
                remote,
                connected,
                inbound,
                expected_peer,
                self.overlay.clone(),
                now,
            ),
        );
        id
    }

    /// A TCP connection from `remote` was accepted on the listener at `local`: a new link
    /// (we are its TLS server, §6.5.1.13), or a refusal — then close the socket.
    pub fn accept_stream(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<StreamId, Refusal> {
        let _ = local;
        if let Err(why) = self.admit(remote.ip()) {
            self.refused(remote, &why);
            return Err(why);
        }
        let session = self
            .factory
            .link(TransportKind::Stream, Role::Server, None, now)
            .map_err(|e| Refusal::Link(e.to_string()))?;
        let stream = StreamId(self.next_id());
        let link = self.add_link(now, session, Transport::Stream(stream), remote, true, None);
        self.endpoint.streams.insert(stream, link);
        self.pump_link(now, link);
        self.drain_topology(now);
        Ok(stream)
    }

    /// Something happened on `stream`.
    pub fn handle_stream(&mut self, now: Instant, stream: StreamId, event: StreamEvent) {
        let Some(&link) = self.endpoint.streams.get(&stream) else {
            return;
        };
        match event {
            StreamEvent::Connected => {
                if let Some(slot) = self.links.get_mut(&link) {
                    slot.connected = true;
                }
                self.pump_link(now, link);
            }
            StreamEvent::Data(data) => {
                if let Some(slot) = self.links.get_mut(&link) {
                    slot.session.handle_input(now, &data);
                }
                self.pump_link(now, link);
            }
            // The connection failed (it could not be made, or a read failed): that is
            // why the link is down, not the missing close_notify.
            StreamEvent::Closed { error: Some(error) } => {
                self.link_down_because(now, link, Some(error));
            }
            StreamEvent::Closed { error: None } => {
                if let Some(slot) = self.links.get_mut(&link) {
                    slot.session.handle_eof(now);
                }
                self.pump_link(now, link);
                self.link_down_because(now, link, Some("the connection closed".into()));
            }
            StreamEvent::WriteBlocked => {
                tracing::warn!(?link, "the peer does not read: closing the link");
                self.link_down_because(now, link, Some("write queue full".into()));
            }
        }
        self.drain_topology(now);
    }

    /// A datagram from `remote` arrived on our UDP socket at `local`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: Bytes,
    ) {
        // From a TURN server we allocated on: its answers, and what it relays (§9).
        if self.turn_datagram(now, local, remote, &data) {
            self.drain_topology(now);
            return;
        }
        match classify(&data) {
            DatagramKind::Dtls => self.dtls_datagram(now, local, remote, data),
            // §6.5.1.4: peers act as STUN servers on their overlay ports — a plain Binding
            // request is answered with the address it came from. ICE checks (with
            // USERNAME) and responses have no consumer until the ICE agent is in.
            DatagramKind::Stun => match reload_nat::stun::classify(&data) {
                Some(reload_nat::stun::Binding::Request) => {
                    if let Some(answer) = reload_nat::stun::answer_binding(&data, remote) {
                        self.stats.stun_answered += 1;
                        self.transmits.push_back(Transmit {
                            transport: Transport::Datagram { local, remote },
                            data: Bytes::from(answer),
                        });
                    }
                }
                // The answer to one of our probes (§6.5.1.4, `reflexive`).
                Some(reload_nat::stun::Binding::Response { transaction_id })
                    if self.reflexive_response(local, remote, &data, transaction_id) =>
                {
                    self.ice_release_deferred(now);
                }
                // An ICE check naming one of our sessions' ufrag, or an answer to one of
                // their checks (`ice`).
                Some(reload_nat::stun::Binding::Check { local_ufrag })
                    if self.ice_stun(now, local, remote, &data, Some(&local_ufrag)) => {}
                Some(
                    reload_nat::stun::Binding::Response { .. } | reload_nat::stun::Binding::Other,
                ) if self.ice_stun(now, local, remote, &data, None) => {}
                _ => self.stats.dropped_datagrams += 1,
            },
            // No TURN client yet: nothing consumes them.
            DatagramKind::TurnChannel | DatagramKind::Other => {
                self.stats.dropped_datagrams += 1;
            }
        }
        self.drain_topology(now);
    }

    fn dtls_datagram(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: Bytes) {
        if self.is_app_local(local) {
            return self.app_dtls_datagram(now, local, remote, data);
        }
        let key = (local, remote);
        let hello = is_client_hello(&data);
        let link = match self.endpoint.flows.get(&key).copied() {
            Some(f)
                if self
                    .links
                    .get(&f.link)
                    .is_some_and(|s| s.session.is_established())
                    && first_record_epoch_zero(&data) =>
            {
                match f.successor {
                    Some(n) => Some(n),
                    None if hello => {
                        let Some(n) = self.new_dtls_association(now, local, remote, &data) else {
                            return;
                        };
                        tracing::info!(%remote, old = ?f.link, "new DTLS handshake from {remote} while an association with it exists (a restarted peer?): the old one stays until the new one completes");
                        if let Some(f) = self.endpoint.flows.get_mut(&key) {
                            f.successor = Some(n);
                        }
                        Some(n)
                    }
                    None => None,
                }
            }
            Some(f) => Some(f.link),
            None if hello => {
                let Some(n) = self.new_dtls_association(now, local, remote, &data) else {
                    return;
                };
                self.endpoint.flows.insert(
                    key,
                    Flow {
                        link: n,
                        successor: None,
                    },
                );
                Some(n)
            }
            // Not a handshake start from an unknown pair: stray or spoofed.
            None => None,
        };
        let Some(link) = link else {
            self.stats.dropped_datagrams += 1;
            return;
        };
        if let Some(slot) = self.links.get_mut(&link) {
            slot.session.handle_input(now, &data);
        }
        self.ice_traffic(now, link);
        self.pump_link(now, link);
    }

    /// A ClientHello for a new association: without a valid cookie it is answered with a
    /// HelloVerifyRequest and forgotten (nothing allocated, RFC 6347 §4.2.1); with one, a
    /// link is made (if admitted) and primed so that the ClientHello, fed to it next,
    /// continues its handshake. `None` when no link is made.
    fn new_dtls_association(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &Bytes,
    ) -> Option<LinkId> {
        let Some(ch) = ClientHello::parse(data) else {
            self.stats.dropped_datagrams += 1;
            return None;
        };
        let random = ch.random(data);
        let cookies = &self.endpoint.cookies;
        if !cookies.verify(local, remote, random, ch.cookie(data)) {
            let cookie = cookies.cookie(local, remote, random);
            self.stats.dtls_cookies_sent += 1;
            self.transmits.push_back(Transmit {
                transport: Transport::Datagram { local, remote },
                data: ch.hello_verify_request(data, &cookie),
            });
            return None;
        }
        if let Err(why) = self.admit(remote.ip()) {
            self.refused(remote, &why);
            return None;
        }
        let cookie = cookies.cookie(local, remote, random);
        let session = match self.factory.verified_datagram_server(cookie, now) {
            Ok(s) => s,
            Err(e) => {
                self.refused(remote, &Refusal::Link(e.to_string()));
                return None;
            }
        };
        let link = self.add_link(
            now,
            session,
            Transport::Datagram { local, remote },
            remote,
            true,
            None,
        );
        // The ClientHello as a first one: the link draws our cookie and asks for it; that
        // HelloVerifyRequest is not sent (the client has ours).
        if let Some(slot) = self.links.get_mut(&link) {
            slot.session.handle_input(now, &ch.as_first(data));
            while slot.session.poll_transmit().is_some() {}
        }
        Some(link)
    }

    /// Opens a link to `addr` with `protocol`: we are its (D)TLS client (we received the
    /// Attach, or join through a bootstrap peer); the peer must prove `expected_peer` when
    /// given. `None` when it cannot even start (the failure is reported as
    /// [`Event::LinkDown`] too).
    pub fn open_link(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        protocol: OverlayLinkType,
        expected_peer: Option<NodeId>,
    ) -> Option<LinkId> {
        let fail = |node: &mut Node, why: String| {
            tracing::info!(%addr, "cannot open a link to {addr}: {why}");
            let link = LinkId(node.next_id());
            node.events.push_back(Event::LinkDown {
                link,
                peer: None,
                remote: Some(addr),
                reason: Some(why),
            });
            None
        };
        let Some(kind) = crate::link::TransportKind::of(protocol) else {
            return fail(self, format!("link protocol {protocol} is not supported"));
        };
        let local = self
            .s
            .listen
            .iter()
            .find(|(t, a)| {
                TransportKind::of(*t) == Some(TransportKind::Datagram)
                    && a.is_ipv4() == addr.is_ipv4()
            })
            .map(|(_, a)| *a);
        self.open_link_inner(now, local, addr, kind, expected_peer, fail)
    }

    /// The link on the datagram address pair (`local`, `remote`), if any.
    pub(super) fn link_on(&self, local: SocketAddr, remote: SocketAddr) -> Option<LinkId> {
        self.endpoint.flows.get(&(local, remote)).map(|f| f.link)
    }

    /// Opens a DTLS client link from our socket at `local` to `addr` (an ICE pair's base
    /// and remote address, `ice`), bound to `expected_peer`.
    pub(super) fn open_link_from(
        &mut self,
        now: Instant,
        local: SocketAddr,
        addr: SocketAddr,
        expected_peer: Option<NodeId>,
    ) -> Option<LinkId> {
        let fail = |_: &mut Node, why: String| {
            tracing::info!(%addr, "cannot open a link to {addr}: {why}");
            None
        };
        self.open_link_inner(
            now,
            Some(local),
            addr,
            TransportKind::Datagram,
            expected_peer,
            fail,
        )
    }

    fn open_link_inner(
        &mut self,
        now: Instant,
        local: Option<SocketAddr>,
        addr: SocketAddr,
        kind: TransportKind,
        expected_peer: Option<NodeId>,
        fail: impl Fn(&mut Node, String) -> Option<LinkId>,
    ) -> Option<LinkId> {
        let transport = match kind {
            TransportKind::Stream => Transport::Stream(StreamId(self.next_id())),
            TransportKind::Datagram => {
                let Some(local) = local else {
                    return fail(self, "no UDP socket of that address family".into());
                };
                if let Some(f) = self.endpoint.flows.get(&(local, addr)) {
                    // One association per address pair: a second would receive the first
                    // one's datagrams.
                    let why = format!(
                        "link {:?} already uses that address (datagrams are told apart by address only)",
                        f.link
                    );
                    return fail(self, why);
                }
                Transport::Datagram {
                    local,
                    remote: addr,
                }
            }
        };
        let session = match self.factory.link(kind, Role::Client, expected_peer, now) {
            Ok(s) => s,
            Err(e) => return fail(self, e.to_string()),
        };
        let link = self.add_link(now, session, transport, addr, false, expected_peer);
        match transport {
            Transport::Stream(stream) => {
                self.endpoint.streams.insert(stream, link);
                self.events.push_back(Event::OpenStream {
                    stream,
                    remote: addr,
                });
            }
            Transport::Datagram { local, remote } => {
                self.endpoint.flows.insert(
                    (local, remote),
                    Flow {
                        link,
                        successor: None,
                    },
                );
            }
        }
        self.pump_link(now, link);
        Some(link)
    }
}
