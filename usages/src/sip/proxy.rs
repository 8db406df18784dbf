//! The SIP front end: each peer is the registrar and outbound proxy of the unmodified SIP
//! user agents that use it, and the overlay is the location service (RFC 7904).
//!
//! - **Local side**: SIP over UDP and TCP on one port (RFC 3261 §18). A REGISTER for the
//!   peer's own AOR — its certificate's user name, the only AOR USER-NODE-MATCH lets it
//!   store (RFC 7904 §3.3) — records the UA's contact and stores, refreshes or removes the
//!   peer's SIP-REGISTRATION entry; a REGISTER for any other AOR gets 403.
//! - **Overlay side**: a request for an AOR is resolved in the overlay (§4.2), the peer
//!   AppAttaches (application 5060, §5.1) to the target peer and sends the request over
//!   that flow; the target peer hands it to its registered UA. A flow to a peer is reused
//!   for later requests (§5.1 MAY) and serves both directions.
//! - **Forwarding** is stateless (RFC 3261 §16.11) apart from the registrations and the
//!   flows: each forwarded request gets a Via whose `rl` parameter says where it came from
//!   (a UDP address, a TCP connection, or a peer) so that responses retrace it, and a
//!   dialog-creating request gets a Record-Route naming this peer (`nid`, its Node-ID) and
//!   its local UA's flow (`ua`), so that in-dialog requests (ACK, BYE, re-INVITE) follow
//!   the dialog through the same two peers. Both tokens are authenticated with a per-run
//!   HMAC key: a peer cannot make another send SIP to an address of its choosing.
//! - **Errors**: an unknown AOR gets 404, an overlay that does not answer or a peer that
//!   cannot be reached gets 503 with a Warning saying why, a registered AOR whose UA is
//!   gone gets 480; a message that is not SIP is dropped (UDP) or closes the connection
//!   (TCP); a request missing a mandatory header gets 400. The peer keeps running.
//!
//! - **Flows**: TLS over TCP in a No-ICE overlay; in an ICE overlay DTLS over the ICE
//!   pair the AppAttach selected (RFC 6940 §6.5.2), one SIP message per record as over
//!   UDP (RFC 3261 §18.1) — forwarding is stateless, so the user agents' own
//!   retransmissions cover a lost datagram.
//!
//! - **SIPS**: a callee whose user agents all registered `sips:` contacts is published
//!   with `(sip.schemes=SIPS)` and reached over application 5061 (RFC 7904 §5.1).
//!
//! What this front end does not do (yet): forking to several registrations (the newest
//! binding, and the first reachable peer, are used), TLS towards local user agents,
//! authentication of local UAs (they are trusted as on a host or LAN the operator
//! controls).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use futures_util::{FutureExt, StreamExt};
use reload_node::app::{AppAttachListener, AppFlow, FlowSender, FlowTransport, app_attach};
use reload_node::client::NodeHandle;
use reload_proto::storage::policy::AorDomains;
use reload_wire::{DecodeOptions, Destination, NodeId};
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{
    self, Header, Method, Param, Request, Response, SipMessage, StatusCode, Uri, Version,
};
use rsipstack::transport::stream::{SipCodec, SipCodecType};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc};
use tokio_util::codec::FramedRead;

use super::aor;
use super::registry::{self, LookupError};

/// The Application-ID of SIP (RFC 6940 §14.5, RFC 7904 §5.1).
pub const SIP_APPLICATION: u16 = 5060;
/// The Application-ID of SIPS: asked for when the callee's contact preferences say SIPS
/// (RFC 7904 §5.1). The flow is TLS either way; 5061 carries SIPS semantics.
pub const SIPS_APPLICATION: u16 = 5061;
/// The registration lifetime when a REGISTER names none (RFC 3261 §10.2.1.1 suggests an
/// hour).
pub const DEFAULT_EXPIRES: u32 = 3600;
/// The longest registration granted.
pub const MAX_EXPIRES: u32 = 86_400;
/// Contacts one AOR may have on this peer.
pub const MAX_BINDINGS: usize = 32;
/// The most an overlay entry is stored beyond its longest binding (seconds): refreshes
/// within it store nothing.
const MAX_SLACK: u32 = 600;
/// The largest SIP message over UDP we read.
const MAX_DATAGRAM: usize = 65_535;
/// Local TCP connections at once.
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// Messages queued to one connection or flow before it is considered stuck.
const QUEUE: usize = 64;
/// Calls (Call-IDs) with a worker at once; beyond, new calls' messages are dropped.
pub const MAX_CALLS: usize = 4096;
/// Messages of one call waiting for its worker.
const CALL_QUEUE: usize = 32;
/// Messages waiting in all, at most (each at most 64 KiB: 64 MiB in the worst case).
pub const MAX_QUEUED: usize = 1024;

/// What a connection's or flow's writer task takes: whole messages.
type Writer = mpsc::Sender<Vec<u8>>;

/// Where a SIP message came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flow {
    /// A local UA over UDP.
    Udp(SocketAddr),
    /// A local UA over one TCP connection.
    Tcp(u64),
    /// Another peer, over an AppAttach flow.
    Peer(NodeId),
}

impl Flow {
    fn is_local(&self) -> bool {
        !matches!(self, Flow::Peer(_))
    }

    /// Hex digits only: a token in a Via parameter and in a URI parameter alike.
    fn encode(&self) -> String {
        let text = match self {
            Flow::Udp(a) => format!("u{a}"),
            Flow::Tcp(id) => format!("t{id}"),
            Flow::Peer(n) => format!("p{}", hex::encode(n.as_bytes())),
        };
        hex::encode(text)
    }

    fn decode(s: &str) -> Option<Flow> {
        let text = String::from_utf8(hex::decode(s).ok()?).ok()?;
        let (kind, rest) = text.split_at_checked(1)?;
        match kind {
            "u" => rest.parse().ok().map(Flow::Udp),
            "t" => rest.parse().ok().map(Flow::Tcp),
            "p" => NodeId::from_slice(&hex::decode(rest).ok()?).map(Flow::Peer),
            _ => None,
        }
    }
}

/// What the front end saw and did, for a ladder diagram (the sandbox prints it) and for
/// tests.
#[derive(Clone, Debug)]
pub struct SipEvent {
    /// `true`: received by this peer; `false`: sent.
    pub incoming: bool,
    pub flow: Flow,
    /// The request method, or the status code and reason.
    pub what: String,
    pub call_id: String,
    /// When the front end saw it (events of several peers merge into one ladder by it).
    pub at: Instant,
}

/// Settings of a front end.
#[derive(Clone, Debug)]
pub struct SipOptions {
    /// UDP and TCP address for local user agents (the same port for both).
    pub bind: SocketAddr,
    /// TCP address AppAttach flows from other peers arrive on.
    pub flows: SocketAddr,
    /// The address put in this peer's Via and Record-Route headers: where local UAs reach
    /// it (`bind` unless it is a wildcard).
    pub advertise: Option<SocketAddr>,
}

impl Default for SipOptions {
    fn default() -> Self {
        SipOptions {
            bind: "127.0.0.1:0".parse().expect("address"),
            flows: "127.0.0.1:0".parse().expect("address"),
            advertise: None,
        }
    }
}

/// A running front end.
pub struct SipFrontEnd {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SipFrontEnd {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for SipFrontEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipFrontEnd")
            .field("sip", &self.inner.addr)
            .field("aor", &self.inner.aor)
            .finish()
    }
}

/// One contact of the local user.
#[derive(Clone, Debug)]
struct Binding {
    contact: Uri,
    flow: Flow,
    until: Instant,
    /// The UA's `+sip.instance` Contact parameter, when it sent one (RFC 5627 §4.1).
    instance: Option<String>,
    /// The IP address the REGISTER came from.
    source: Option<std::net::IpAddr>,
}

/// A local UA's TCP connection: what writes to it, and the UA's address.
type TcpConnection = (mpsc::Sender<Vec<u8>>, SocketAddr);

struct Inner {
    node: NodeHandle,
    node_id: NodeId,
    /// The peer's AOR: its certificate's user name.
    aor: String,
    /// The SIP address advertised to UAs (`SipOptions::advertise`, else `listen`).
    addr: SocketAddr,
    /// The address the SIP sockets are bound to.
    listen: SocketAddr,
    opts: DecodeOptions,
    /// The AOR domains the overlay hosts (RFC 7904 §3.4), from the configuration in force
    /// when the front end started.
    domains: AorDomains,
    key: hmac::Key,
    udp: Arc<UdpSocket>,
    /// Local UAs' TCP connections: writer and the UA's address.
    tcp: Mutex<HashMap<u64, TcpConnection>>,
    /// One reconnection to a UA's TCP contact at a time (`binding_flow`).
    reconnecting: tokio::sync::Mutex<()>,
    next_tcp: AtomicU64,
    /// The open flow to each peer: (flow number, its writer).
    peers: Mutex<HashMap<NodeId, (u64, Writer)>>,
    next_flow: AtomicU64,
    /// One AppAttach at a time per peer.
    attaching: tokio::sync::Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<()>>>>,
    bindings: Mutex<Vec<Binding>>,
    events: broadcast::Sender<SipEvent>,
    /// Held while the bindings and the overlay entry change together (a REGISTER, an
    /// expiry), so that a removal never lands after a newer registration.
    reg_lock: tokio::sync::Mutex<()>,
    /// Until when the overlay holds this peer's registration (as last stored).
    stored_until: Mutex<Option<Instant>>,
    /// Messages waiting for their call's worker, and messages dropped for overload.
    queued: AtomicUsize,
    dropped: AtomicU64,
    /// The worker of each call in progress, by Call-ID ([`Inner::dispatch`]).
    calls: Mutex<HashMap<String, mpsc::Sender<(SipMessage, Flow)>>>,
}

impl SipFrontEnd {
    /// Starts the front end of the node behind `node`, whose Node-ID is `node_id` and
    /// whose user name (its AOR) is `aor`.
    pub async fn start(
        node: &NodeHandle,
        node_id: NodeId,
        aor: &str,
        options: SipOptions,
    ) -> Result<SipFrontEnd, String> {
        let aor = aor::aor_of(aor).map_err(|e| format!("the node's user name: {e}"))?;
        let snapshot = node.snapshot().await.map_err(|e| e.to_string())?;
        let opts = snapshot.decode;
        let domains = snapshot.sip_domains;
        if let Err(why) = domains.admits(&aor) {
            // §3.3 SHOULD: the registrant checks before storing; the storing peer would
            // refuse (Error_Forbidden). Calls still work; REGISTERs get 403 with this.
            tracing::warn!(aor = %aor, "this peer's AOR cannot be registered in the overlay: {}", why.0);
        }
        // UDP first (an ephemeral port when asked), then TCP on the same port.
        let udp = UdpSocket::bind(options.bind)
            .await
            .map_err(|e| format!("cannot listen for SIP on udp {}: {e}", options.bind))?;
        let addr = udp.local_addr().map_err(|e| e.to_string())?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for SIP on tcp {addr}: {e}"))?;
        let advertised = options.advertise.unwrap_or(addr);
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| "no random source".to_string())?;
        let mut listener = AppAttachListener::start(
            node,
            options.flows,
            None,
            &[SIP_APPLICATION, SIPS_APPLICATION],
        )
        .await?;
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            node: node.clone(),
            node_id,
            aor,
            addr: advertised,
            listen: addr,
            opts,
            domains,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            udp: Arc::new(udp),
            tcp: Mutex::new(HashMap::new()),
            reconnecting: tokio::sync::Mutex::new(()),
            next_tcp: AtomicU64::new(1),
            peers: Mutex::new(HashMap::new()),
            next_flow: AtomicU64::new(1),
            attaching: tokio::sync::Mutex::new(HashMap::new()),
            bindings: Mutex::new(Vec::new()),
            events,
            calls: Mutex::new(HashMap::new()),
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            stored_until: Mutex::new(None),
            reg_lock: tokio::sync::Mutex::new(()),
        });
        let mut tasks = Vec::new();
        let i = inner.clone();
        tasks.push(tokio::spawn(async move { i.udp_loop().await }));
        let i = inner.clone();
        tasks.push(tokio::spawn(async move { i.tcp_loop(tcp).await }));
        let i = inner.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(flow) = listener.next().await {
                i.clone().add_peer_flow(flow);
            }
        }));
        let i = inner.clone();
        tasks.push(tokio::spawn(async move { i.expiry_loop().await }));
        tracing::info!(sip = %advertised, aor = %inner.aor, "SIP front end listening (udp and tcp)");
        Ok(SipFrontEnd { inner, tasks })
    }

    /// Where local UAs send SIP (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The AOR this peer registers.
    pub fn aor(&self) -> &str {
        &self.inner.aor
    }

    /// What the front end receives and sends from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SipEvent> {
        self.inner.events.subscribe()
    }

    /// The local user's registered contacts, with their remaining lifetimes.
    pub fn contacts(&self) -> Vec<(String, Duration)> {
        let now = Instant::now();
        self.inner
            .bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|b| {
                (
                    b.contact.to_string(),
                    b.until.saturating_duration_since(now),
                )
            })
            .collect()
    }
}

// ------------------------------------------------------------------ transports

impl Inner {
    async fn udp_loop(self: Arc<Self>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, from) = match self.udp.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors surface here on some systems: keep serving.
                    tracing::debug!("SIP udp: {e}");
                    continue;
                }
            };
            let data = &buf[..n];
            if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                continue; // keepalive (RFC 5626 §3.5.1)
            }
            match read_datagram(data) {
                Datagram::Message(msg) => self.dispatch(msg, Flow::Udp(from)),
                Datagram::Refuse(req, code, why, extra) => {
                    self.reply(&req, Flow::Udp(from), code, Some(&why), extra)
                        .await
                }
                Datagram::Garbage(e) => {
                    tracing::info!(%from, "not SIP, dropped ({n} bytes): {e}")
                }
            }
        }
    }

    async fn tcp_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("SIP tcp accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.tcp.lock().unwrap_or_else(|e| e.into_inner()).len() >= MAX_TCP_CONNECTIONS {
                tracing::warn!(%from, "SIP tcp: too many connections, refused");
                continue;
            }
            self.clone().adopt_tcp(stream);
        }
    }

    /// Takes a TCP connection with a local UA into use (accepted, or opened to its
    /// contact): its messages are read, and it carries what is sent to `Flow::Tcp(id)`.
    fn adopt_tcp(self: Arc<Self>, stream: tokio::net::TcpStream) -> Flow {
        let _ = stream.set_nodelay(true);
        let id = self.next_tcp.fetch_add(1, Ordering::Relaxed);
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel(QUEUE);
        self.tcp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (tx, peer));
        tokio::spawn(write_loop(wr, rx));
        let me = self.clone();
        tokio::spawn(async move {
            me.clone().read_stream(rd, Flow::Tcp(id)).await;
            me.tcp.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
        Flow::Tcp(id)
    }

    /// The AOR a URI names, as this front end reads it: a URI whose host is this front
    /// end's own address (`sip:bob@127.0.0.1:5060`, what user agents configured with the
    /// proxy's address as their domain send, SIPp's built-in scenarios among them) names
    /// that user in the overlay's domain — the domain of this peer's own AOR (RFC 3261
    /// §16.4: the proxy is responsible for the domain it is addressed by).
    fn aor_of_uri(&self, uri: &Uri) -> Result<String, aor::AorError> {
        let found = aor::aor_of_uri(uri)?;
        let ip = match &uri.host_with_port.host {
            sip::Host::IpAddr(ip) => Some(*ip),
            sip::Host::Domain(d) => d
                .to_string()
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .ok(),
        };
        let port = uri.host_with_port.port.as_ref().map_or(5060, |p| p.value());
        let own = ip.is_some_and(|ip| {
            let at = SocketAddr::new(ip, port);
            at == self.addr
                || at == self.listen
                // Bound to every interface: this host's loopback address names it too.
                || (self.listen.ip().is_unspecified()
                    && port == self.listen.port()
                    && ip.is_loopback())
        });
        match (own, found.split_once('@'), self.aor.split_once('@')) {
            (true, Some((user, _)), Some((_, domain))) => Ok(format!("{user}@{domain}")),
            _ => Ok(found),
        }
    }

    /// The flow to a local UA's binding: the connection its REGISTER came on while that
    /// is open. Once a TCP connection has closed, and the contact asks for TCP
    /// (`transport=tcp`, RFC 3263 §4.1) at the address that connection came from, a new
    /// connection to the contact (RFC 3261 §18.1.1: the UA listens where its Contact
    /// says), which the binding then uses. One reconnection at a time, bounded by the
    /// connection limit; a contact elsewhere (another host, UDP, TLS, `sips:`) is not
    /// connected to.
    async fn binding_flow(self: &Arc<Self>, b: &Binding) -> Flow {
        let Flow::Tcp(id) = b.flow else {
            return b.flow;
        };
        let open = |me: &Self, id: u64| {
            me.tcp
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&id)
        };
        if open(self, id) {
            return b.flow;
        }
        let tcp_contact = matches!(b.contact.scheme, None | Some(sip::Scheme::Sip))
            && b.contact.params.iter().any(
                |p| matches!(p, Param::Transport(t) if t.to_string().eq_ignore_ascii_case("tcp")),
            );
        let Some(addr) = contact_addr(&b.contact)
            .filter(|a| tcp_contact && b.source.is_some_and(|ip| ip == a.ip()))
        else {
            return b.flow;
        };
        let _one = self.reconnecting.lock().await;
        // Another request may have reconnected this binding meanwhile.
        let current = self
            .bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|x| x.contact == b.contact)
            .map(|x| x.flow);
        if let Some(Flow::Tcp(now_id)) = current
            && now_id != id
            && open(self, now_id)
        {
            return Flow::Tcp(now_id);
        }
        if self.tcp.lock().unwrap_or_else(|e| e.into_inner()).len() >= MAX_TCP_CONNECTIONS {
            return b.flow;
        }
        let stream = match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            _ => return b.flow,
        };
        let flow = self.clone().adopt_tcp(stream);
        let mut bindings = self.bindings.lock().unwrap_or_else(|e| e.into_inner());
        for x in bindings
            .iter_mut()
            .filter(|x| x.contact == b.contact && x.flow == b.flow)
        {
            x.flow = flow;
        }
        flow
    }

    /// A local UA's flow named by a dialog's Route token: when it is a TCP connection
    /// that has closed, the flow of the binding that used it ([`Inner::binding_flow`]).
    async fn dialog_flow(self: &Arc<Self>, f: Flow) -> Flow {
        let binding = match f {
            Flow::Tcp(_) => self
                .bindings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|b| b.flow == f)
                .cloned(),
            _ => None,
        };
        match binding {
            Some(b) => self.binding_flow(&b).await,
            None => f,
        }
    }

    /// Reads SIP messages off a stream (Content-Length framing, RFC 3261 §18.3) until it
    /// ends or carries something that is not SIP.
    async fn read_stream<R: tokio::io::AsyncRead + Unpin>(self: Arc<Self>, rd: R, flow: Flow) {
        let mut frames = FramedRead::new(rd, SipCodec::new());
        while let Some(item) = frames.next().await {
            match item {
                Ok(SipCodecType::Message(msg)) => self.clone().dispatch(msg, flow),
                Ok(_) => {} // keepalives
                Err(e) => {
                    tracing::info!(?flow, "not SIP, connection closed: {e}");
                    return;
                }
            }
        }
    }

    /// Takes a flow to another peer into use: its messages are read, and it carries what
    /// this peer sends to that peer from now on.
    fn add_peer_flow(self: Arc<Self>, flow: AppFlow) {
        let peer = flow.peer;
        let id = self.next_flow.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, (id, tx));
        tracing::debug!(%peer, "SIP flow to peer open");
        match flow.transport {
            FlowTransport::Tls(stream) => {
                let (rd, wr) = tokio::io::split(stream);
                tokio::spawn(write_loop(wr, rx));
                tokio::spawn(async move {
                    self.clone().read_stream(rd, Flow::Peer(peer)).await;
                    self.peer_flow_ended(peer, id);
                });
            }
            FlowTransport::Dtls(mut d) => {
                // One SIP message per DTLS record, as over UDP (RFC 3261 §18.1): the
                // user agents' retransmissions cover a lost one.
                tokio::spawn(datagram_write_loop(d.sender(), rx));
                tokio::spawn(async move {
                    while let Some(data) = d.recv().await {
                        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                            continue; // keepalive (RFC 5626 §3.5.1)
                        }
                        match read_datagram(&data) {
                            Datagram::Message(msg) => self.clone().dispatch(msg, Flow::Peer(peer)),
                            Datagram::Refuse(req, code, why, extra) => {
                                self.reply(&req, Flow::Peer(peer), code, Some(&why), extra)
                                    .await
                            }
                            Datagram::Garbage(e) => {
                                tracing::info!(%peer, "not SIP on the flow, dropped ({} bytes): {e}", data.len())
                            }
                        }
                    }
                    tracing::debug!(%peer, "SIP flow over ICE ended: {}", d.ended().unwrap_or("?"));
                    self.peer_flow_ended(peer, id);
                });
            }
        }
    }

    fn peer_flow_ended(&self, peer: NodeId, id: u64) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.get(&peer).is_some_and(|(i, _)| *i == id) {
            peers.remove(&peer);
        }
        tracing::debug!(%peer, "SIP flow to peer closed");
    }

    /// A flow to `peer` along `destinations` (AppAttach for `application`, §5.1),
    /// reusing one that is open (§5.1 MAY).
    async fn peer_sender(
        self: &Arc<Self>,
        peer: NodeId,
        destinations: Vec<Destination>,
        application: u16,
    ) -> Result<mpsc::Sender<Vec<u8>>, String> {
        if let Some(tx) = self.open_flow(&peer) {
            return Ok(tx);
        }
        let lock = {
            let mut map = self.attaching.lock().await;
            map.entry(peer).or_default().clone()
        };
        let _guard = lock.lock().await;
        if let Some(tx) = self.open_flow(&peer) {
            return Ok(tx);
        }
        let flow = app_attach(&self.node, destinations, application)
            .await
            .map_err(|e| e.to_string())?;
        if flow.peer != peer {
            return Err(format!("the flow is to {}, not to {peer}", flow.peer));
        }
        self.clone().add_peer_flow(flow);
        self.open_flow(&peer)
            .ok_or_else(|| format!("the flow to {peer} closed at once"))
    }

    fn open_flow(&self, peer: &NodeId) -> Option<mpsc::Sender<Vec<u8>>> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .get(peer)
            .filter(|(_, tx)| !tx.is_closed())
            .map(|(_, tx)| tx.clone())
    }

    /// Sends `msg` on `flow`; for a peer without an open flow, AppAttaches to it first.
    async fn send(self: &Arc<Self>, flow: Flow, msg: SipMessage) -> Result<(), String> {
        // Described only when someone listens (the sandbox's ladder, tests).
        let event = (self.events.receiver_count() > 0).then(|| (call_id(&msg), describe(&msg)));
        let bytes = msg.to_bytes();
        match flow {
            Flow::Udp(addr) => {
                self.udp
                    .send_to(&bytes, addr)
                    .await
                    .map_err(|e| format!("udp to {addr}: {e}"))?;
            }
            Flow::Tcp(id) => {
                let tx = self
                    .tcp
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&id)
                    .map(|(tx, _)| tx.clone())
                    .ok_or_else(|| "the TCP connection closed".to_string())?;
                tx.try_send(bytes)
                    .map_err(|_| "the TCP connection is closed or does not read".to_string())?;
            }
            Flow::Peer(peer) => {
                let tx = self
                    .peer_sender(peer, vec![Destination::Node(peer)], SIP_APPLICATION)
                    .await?;
                tx.try_send(bytes)
                    .map_err(|_| format!("the flow to {peer} is closed or does not read"))?;
            }
        }
        if let Some((call_id, what)) = event {
            let _ = self.events.send(SipEvent {
                incoming: false,
                flow,
                what,
                call_id,
                at: Instant::now(),
            });
        }
        Ok(())
    }

    /// The lifetime of the deletion that replaces the stored entry (`exists = false`): at
    /// least what the entry has left (RFC 6940 §7.4.1.3 SHOULD), so that no copy of the
    /// live entry outlives it — rounded up, with a margin for the time the Store took;
    /// the longest an entry can have when that is not known (after a restart, or a
    /// deletion that failed and is asked again).
    fn tombstone_lifetime(&self, now: Instant) -> u32 {
        let until = *self.stored_until.lock().unwrap_or_else(|e| e.into_inner());
        let left = match until {
            Some(u) => u.saturating_duration_since(now).as_secs() + 2,
            None => u64::from(MAX_EXPIRES + MAX_SLACK),
        };
        u32::try_from(left).unwrap_or(u32::MAX).max(60)
    }

    /// Stores the deletion of this peer's entry; forgets the stored entry once it is
    /// deleted.
    async fn deregister(&self, now: Instant) -> Result<(), reload_node::client::OpError> {
        let lifetime = self.tombstone_lifetime(now);
        registry::deregister(&self.node, &self.aor, self.node_id, lifetime).await?;
        *self.stored_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    async fn expiry_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _reg = self.reg_lock.lock().await;
            let now = Instant::now();
            let emptied = {
                let mut b = self.bindings.lock().unwrap_or_else(|e| e.into_inner());
                let before = b.len();
                b.retain(|x| x.until > now);
                before > 0 && b.is_empty()
            };
            if emptied {
                // The overlay entry expires on its own lifetime too; removing it says so
                // at once (RFC 6940 §7.4.1.3).
                tracing::info!(aor = %self.aor, "last registration expired");
                if let Err(e) = self.deregister(now).await {
                    tracing::info!(aor = %self.aor, "removing the expired registration: {e}");
                }
            }
        }
    }
}

/// The socket address of a contact URI whose host is an IP address (port 5060 when
/// absent); `None` for a domain name (this front end does not resolve UAs' names).
fn contact_addr(uri: &Uri) -> Option<SocketAddr> {
    let ip: std::net::IpAddr = uri
        .host_with_port
        .host
        .to_string()
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .ok()?;
    let port = uri.host_with_port.port.as_ref().map_or(5060, |p| p.value());
    Some(SocketAddr::new(ip, port))
}

/// Sends each message as one datagram of an application flow over ICE.
async fn datagram_write_loop(flow: FlowSender, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if flow.send(bytes::Bytes::from(bytes)).await.is_err() {
            break;
        }
    }
}

async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

// ------------------------------------------------------------------ messages

fn call_id(msg: &SipMessage) -> String {
    msg.call_id_header()
        .map(|c| c.value().to_string())
        .unwrap_or_default()
}

fn describe(msg: &SipMessage) -> String {
    match msg {
        SipMessage::Request(r) => r.method.to_string(),
        SipMessage::Response(r) => {
            let cseq = r
                .cseq_header()
                .ok()
                .and_then(|c| c.typed().ok())
                .map(|c| format!(" ({})", c.method))
                .unwrap_or_default();
            format!("{}{cseq}", r.status_code)
        }
    }
}

/// The first Via header value, removed from `headers`.
fn pop_top_via(headers: &mut sip::Headers) -> Option<sip::Via> {
    let i = headers.iter().position(|h| matches!(h, Header::Via(_)))?;
    let Header::Via(via) = &headers.0[i] else {
        return None;
    };
    let first = via.first_value().ok()?;
    let whole = via.value().trim().to_string();
    let rest = whole[first.value().len().min(whole.len())..]
        .trim_start_matches([',', ' ', '\t', '\r', '\n'])
        .to_string();
    if rest.is_empty() {
        headers.0.remove(i);
    } else {
        headers.0[i] = Header::Via(sip::Via::new(rest));
    }
    Some(first)
}

fn other_param(params: &[Param], name: &str) -> Option<String> {
    params.iter().find_map(|p| match p {
        Param::Other(n, v) if n.to_string().eq_ignore_ascii_case(name) => {
            Some(v.as_ref().map(|v| v.to_string()).unwrap_or_default())
        }
        _ => None,
    })
}

impl Inner {
    /// An authenticated flow token (`<flow>.<mac>`), for Via `rl` and Record-Route `ua`.
    fn token(&self, flow: Flow) -> String {
        let f = flow.encode();
        let tag = hmac::sign(&self.key, f.as_bytes());
        format!("{f}.{}", hex::encode(&tag.as_ref()[..8]))
    }

    fn flow_of_token(&self, token: &str) -> Option<Flow> {
        let (f, mac) = token.rsplit_once('.')?;
        let tag = hmac::sign(&self.key, f.as_bytes());
        (hex::encode(&tag.as_ref()[..8]) == mac).then(|| Flow::decode(f))?
    }

    fn node_hex(&self) -> String {
        hex::encode(self.node_id.as_bytes())
    }

    /// Hands a message to the worker of its Call-ID: the messages of one call are
    /// handled one after the other, in the order they arrived (a 180 never overtakes the
    /// 200 behind it, a CANCEL never its INVITE), calls in parallel. A worker ends as
    /// soon as its call has nothing waiting (a worker lingering per Call-ID capped a
    /// registrar's REGISTERs from many Call-IDs at MAX_CALLS per linger time).
    fn dispatch(self: &Arc<Self>, msg: SipMessage, flow: Flow) {
        // Bounded work: at most MAX_QUEUED messages wait, in at most MAX_CALLS workers;
        // beyond, messages are dropped (UDP user agents retransmit) and counted.
        if self.queued.load(Ordering::Relaxed) >= MAX_QUEUED {
            self.overload(flow);
            return;
        }
        let id = call_id(&msg);
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = calls.get(&id) {
            match tx.try_send((msg, flow)) {
                Ok(()) => {
                    self.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    drop(calls);
                    self.overload(flow);
                }
            }
            return;
        }
        if calls.len() >= MAX_CALLS {
            drop(calls);
            self.overload(flow);
            return;
        }
        let (tx, mut rx) = mpsc::channel(CALL_QUEUE);
        let _ = tx.try_send((msg, flow));
        self.queued.fetch_add(1, Ordering::Relaxed);
        calls.insert(id.clone(), tx);
        drop(calls);
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                // The queue is looked at under the table's lock: a message for this call
                // is either queued here before the worker leaves the table, or it starts
                // a new worker after — never two workers of one call at once.
                let next = {
                    let mut calls = me.calls.lock().unwrap_or_else(|e| e.into_inner());
                    let next = rx.try_recv().ok();
                    if next.is_none() {
                        calls.remove(&id);
                    }
                    next
                };
                let Some((msg, flow)) = next else { return };
                me.queued.fetch_sub(1, Ordering::Relaxed);
                // A message that made its handling panic is dropped (and logged); the
                // call's worker and the queue count go on as for any other.
                let handled = std::panic::AssertUnwindSafe(me.clone().on_message(msg, flow))
                    .catch_unwind()
                    .await;
                if handled.is_err() {
                    tracing::error!(call = %id, "SIP message handling panicked; message dropped");
                }
            }
        });
    }

    fn overload(&self, flow: Flow) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                ?flow,
                dropped = n,
                "SIP overload: messages dropped (too many waiting)"
            );
        }
    }

    /// One message in, from `flow`.
    async fn on_message(self: Arc<Self>, msg: SipMessage, flow: Flow) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(SipEvent {
                incoming: true,
                flow,
                what: describe(&msg),
                call_id: call_id(&msg),
                at: Instant::now(),
            });
        }
        match msg {
            SipMessage::Request(req) => self.on_request(req, flow).await,
            SipMessage::Response(resp) => self.on_response(resp, flow).await,
        }
    }

    async fn on_response(self: Arc<Self>, mut resp: Response, from: Flow) {
        let Some(top) = pop_top_via(&mut resp.headers) else {
            return;
        };
        let Ok(via) = top.typed() else {
            return;
        };
        let Some(next) = other_param(&via.params, "rl").and_then(|t| self.flow_of_token(&t)) else {
            tracing::debug!(
                ?from,
                "a response whose top Via is not this peer's: dropped"
            );
            return;
        };
        if let Err(e) = self.send(next, SipMessage::Response(resp)).await {
            tracing::info!(?next, "response not delivered: {e}");
        }
    }

    /// Answers `req` (received on `flow`) with `code`, adding `extra` headers.
    async fn reply(
        self: &Arc<Self>,
        req: &Request,
        flow: Flow,
        code: StatusCode,
        warning: Option<&str>,
        extra: Vec<Header>,
    ) {
        if req.method == Method::Ack {
            return; // never answered (RFC 3261 §17.1.1.3)
        }
        let mut headers = sip::Headers::default();
        for h in req.headers.iter() {
            match h {
                Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                    headers.push(h.clone())
                }
                Header::To(to) => {
                    let mut value = to.value().to_string();
                    let tagged = to.typed().map(|t| t.tag().is_some()).unwrap_or(true);
                    if !tagged && code != StatusCode::Trying {
                        value.push_str(&format!(";tag={}", &self.node_hex()[..8]));
                    }
                    headers.push(Header::To(sip::To::new(value)));
                }
                _ => {}
            }
        }
        headers.extend(extra);
        if let Some(w) = warning {
            let w = w.replace('"', "'");
            headers.push(Header::Warning(sip::Warning::new(format!(
                "399 {} \"{w}\"",
                self.addr.ip()
            ))));
        }
        headers.push(Header::Server(sip::Server::new("reload-rs")));
        headers.push(Header::ContentLength(0u32.into()));
        let resp = Response {
            status_code: code,
            wire_reason: None,
            version: Version::V2,
            headers,
            body: Vec::new(),
        };
        if let Err(e) = self.send(flow, SipMessage::Response(resp)).await {
            tracing::info!(?flow, "reply not delivered: {e}");
        }
    }

    async fn on_request(self: Arc<Self>, mut req: Request, from: Flow) {
        // RFC 3261 §8.1.1 / §16.3: the mandatory headers.
        let ok = req.via_header().is_ok()
            && req.from_header().is_ok()
            && req.to_header().is_ok()
            && req.call_id_header().is_ok()
            && req
                .cseq_header()
                .ok()
                .and_then(|c| c.typed().ok())
                .is_some();
        if !ok {
            if req.via_header().is_ok() {
                self.reply(
                    &req,
                    from,
                    StatusCode::BadRequest,
                    Some("a mandatory header is missing or malformed"),
                    vec![],
                )
                .await;
            }
            return;
        }
        if let Some((code, why, extra)) = invalid(&req) {
            return self.reply(&req, from, code, Some(&why), extra).await;
        }
        // §16.3 step 3: Max-Forwards.
        let mf = req
            .max_forwards_header()
            .ok()
            .and_then(|m| m.value().trim().parse::<u32>().ok());
        match mf {
            Some(0) => {
                if req.method != Method::Register {
                    return self
                        .reply(&req, from, StatusCode::TooManyHops, None, vec![])
                        .await;
                }
            }
            Some(n) => req.headers.unique_push(Header::MaxForwards((n - 1).into())),
            None => req.headers.unique_push(Header::MaxForwards(69u32.into())),
        }
        if req.method == Method::Register {
            if from.is_local() {
                return self.register(req, from).await;
            }
            return self
                .reply(
                    &req,
                    from,
                    StatusCode::Forbidden,
                    Some("REGISTER is taken from local user agents only"),
                    vec![],
                )
                .await;
        }
        // Loose routing (RFC 3261 §16.4): this peer's own Route entry goes.
        let routes = req.typed_route_headers().unwrap_or_default();
        let mut ua_flow = None;
        let mut rest = routes.clone();
        if let Some(first) = routes.first()
            && other_param(&first.uri.params, "nid").as_deref() == Some(self.node_hex().as_str())
        {
            rest.remove(0);
            ua_flow = other_param(&first.uri.params, "ua").and_then(|t| self.flow_of_token(&t));
        }
        if rest.len() != routes.len() {
            req.headers.retain(|h| !matches!(h, Header::Route(_)));
            for r in rest.iter().rev() {
                req.headers.push_front(Header::Route(r.clone().into()));
            }
            // Keep Route after Via: move the Vias back on top.
            let (vias, others): (Vec<Header>, Vec<Header>) = req
                .headers
                .0
                .drain(..)
                .partition(|h| matches!(h, Header::Via(_)));
            req.headers.0 = vias.into_iter().chain(others).collect();
        }
        // Where to.
        if let Some(next) = rest.first() {
            if let Some(nid) = other_param(&next.uri.params, "nid")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| NodeId::from_slice(&b))
            {
                return self.forward(req, from, Flow::Peer(nid)).await;
            }
            if let Some(f) = ua_flow {
                let f = self.dialog_flow(f).await;
                return self.forward(req, from, f).await;
            }
            return self
                .reply(
                    &req,
                    from,
                    StatusCode::NotFound,
                    Some("the next Route is not a peer of this overlay"),
                    vec![],
                )
                .await;
        }
        if let Some(f) = ua_flow {
            // In a dialog, to this peer's local UA.
            let f = self.dialog_flow(f).await;
            return self.forward(req, from, f).await;
        }
        self.route_by_uri(req, from).await;
    }

    /// A request without Route left: by its Request-URI (RFC 7904 §4.1).
    async fn route_by_uri(self: Arc<Self>, mut req: Request, from: Flow) {
        let uri = req.uri.clone();
        // A GRUU: its destination list is the route (§6).
        if let Some(gr) = aor::gr_param(&uri) {
            let Some(dests) = aor::gruu_destinations(&gr, &self.opts) else {
                return self
                    .reply(
                        &req,
                        from,
                        StatusCode::NotFound,
                        Some("a GRUU whose destination list does not decode"),
                        vec![],
                    )
                    .await;
            };
            return match dests.last() {
                Some(Destination::Node(n)) if *n == self.node_id => {
                    self.deliver_local(req, from).await
                }
                Some(Destination::Node(n)) => {
                    let n = *n;
                    self.forward_to_peer(req, from, n, dests).await
                }
                _ => {
                    self.reply(
                        &req,
                        from,
                        StatusCode::NotFound,
                        Some("a GRUU that does not end in a Node-ID"),
                        vec![],
                    )
                    .await
                }
            };
        }
        let target = match self.aor_of_uri(&uri) {
            Ok(a) => a,
            Err(_) => {
                // A contact address (an in-dialog request without Record-Route).
                if let Some(b) = self.binding_at(&uri) {
                    let to = self.binding_flow(&b).await;
                    return self.forward(req, from, to).await;
                }
                return self
                    .reply(
                        &req,
                        from,
                        StatusCode::NotFound,
                        Some("the Request-URI has no AOR"),
                        vec![],
                    )
                    .await;
            }
        };
        let scheme = if matches!(uri.scheme, Some(sip::Scheme::Sips)) {
            "sips"
        } else {
            "sip"
        };
        if aor::aor_of_uri(&uri).ok().as_deref() != Some(target.as_str())
            && let Ok(u) = Uri::try_from(format!("{scheme}:{target}").as_str())
        {
            // Addressed to this front end's own address: from here on, the AOR itself
            // (RFC 3261 §16.5 retargeting), so that the callee's peer knows it as its own.
            req.uri = u;
        }
        if target == self.aor {
            return self.deliver_local(req, from).await;
        }
        if let Some(b) = self.binding_at(&uri) {
            let to = self.binding_flow(&b).await;
            return self.forward(req, from, to).await;
        }
        if !from.is_local() {
            // A peer sent us a request for an AOR that is not ours: not a transit node.
            return self
                .reply(
                    &req,
                    from,
                    StatusCode::NotFound,
                    Some("this peer does not serve that AOR"),
                    vec![],
                )
                .await;
        }
        if self.domains.admits(&target).is_err() {
            // RFC 7904 §4.1: a domain this overlay does not host is not looked up here; this
            // front end has no other way (DNS, RFC 3263) to reach it, so the call fails.
            let domain = target.rsplit_once('@').map_or("", |(_, d)| d);
            return self
                .reply(
                    &req,
                    from,
                    StatusCode::NotFound,
                    Some(&format!(
                        "{domain} is not a domain of this overlay (sip:domain-restriction), and this peer routes SIP only through the overlay"
                    )),
                    vec![],
                )
                .await;
        }
        if req.method == Method::Invite {
            // Stop the UA's retransmissions while the overlay is asked (§16.7 is for
            // stateful proxies; one 100 is harmless from a stateless one).
            self.reply(&req, from, StatusCode::Trying, None, vec![])
                .await;
        }
        match registry::resolve(&self.node, &target, &self.opts).await {
            Ok(targets) => {
                let mut last = String::new();
                for t in targets {
                    let Some(Destination::Node(n)) = t.destinations.last().cloned() else {
                        continue;
                    };
                    if n == self.node_id {
                        return self.deliver_local(req, from).await;
                    }
                    // §5.1: SIPS when the callee's contact preferences ask for it.
                    let app = if t.wants_sips() {
                        SIPS_APPLICATION
                    } else {
                        SIP_APPLICATION
                    };
                    match self.peer_sender(n, t.destinations.clone(), app).await {
                        Ok(_) => return self.forward(req, from, Flow::Peer(n)).await,
                        Err(e) => {
                            tracing::info!(aor = %target, peer = %n, "cannot reach the peer: {e}");
                            last = e;
                        }
                    }
                }
                self.reply(
                    &req,
                    from,
                    StatusCode::ServiceUnavailable,
                    Some(&format!(
                        "{target}: no registered peer could be reached ({last})"
                    )),
                    vec![],
                )
                .await
            }
            Err(LookupError::NotFound(_)) => {
                self.reply(
                    &req,
                    from,
                    StatusCode::NotFound,
                    Some(&format!("{target} is not registered in the overlay")),
                    vec![],
                )
                .await
            }
            Err(e @ LookupError::Overlay { .. }) => {
                self.reply(
                    &req,
                    from,
                    StatusCode::ServiceUnavailable,
                    Some(&e.to_string()),
                    vec![],
                )
                .await
            }
        }
    }

    async fn forward_to_peer(
        self: Arc<Self>,
        req: Request,
        from: Flow,
        peer: NodeId,
        dests: Vec<Destination>,
    ) {
        match self.peer_sender(peer, dests, SIP_APPLICATION).await {
            Ok(_) => self.forward(req, from, Flow::Peer(peer)).await,
            Err(e) => {
                self.reply(
                    &req,
                    from,
                    StatusCode::ServiceUnavailable,
                    Some(&format!("peer {peer} cannot be reached: {e}")),
                    vec![],
                )
                .await
            }
        }
    }

    fn binding_at(&self, uri: &Uri) -> Option<Binding> {
        let now = Instant::now();
        self.bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|b| b.until > now && b.contact.host_with_port == uri.host_with_port)
            .cloned()
    }

    /// To the local user's UA: the most recently registered contact (no forking yet); for
    /// an instance's GRUU, that instance's contact only (RFC 5627 §5.4).
    async fn deliver_local(self: Arc<Self>, req: Request, from: Flow) {
        let now = Instant::now();
        let instance = aor::instance_param(&req.uri);
        let binding = self
            .bindings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .filter(|b| b.until > now)
            .find(|b| match &instance {
                None => true,
                Some(tag) => b
                    .instance
                    .as_deref()
                    .is_some_and(|i| aor::instance_tag(i) == *tag),
            })
            .cloned();
        let Some(b) = binding else {
            return self
                .reply(
                    &req,
                    from,
                    StatusCode::TemporarilyUnavailable,
                    Some(&format!(
                        "{} has no registered user agent on this peer",
                        self.aor
                    )),
                    vec![],
                )
                .await;
        };
        let mut req = req;
        // §16.5: the Request-URI becomes the contact.
        req.uri = b.contact.clone();
        let to = self.binding_flow(&b).await;
        self.forward(req, from, to).await;
    }

    /// Forwards `req` (from `from`) to `to` with this peer's Via and, for a request that
    /// may create a dialog, its Record-Route.
    async fn forward(self: Arc<Self>, mut req: Request, from: Flow, to: Flow) {
        let upstream_branch = req
            .top_via_header()
            .ok()
            .and_then(|v| v.typed().ok())
            .and_then(|v| v.branch().map(|b| b.to_string()))
            .unwrap_or_else(|| {
                format!(
                    "{}{}",
                    call_id(&SipMessage::Request(req.clone())),
                    req.cseq_header()
                        .map(|c| c.value().to_string())
                        .unwrap_or_default()
                )
            });
        // The same upstream branch gives the same branch here (CANCEL and the ACK of a
        // non-2xx share the INVITE's, RFC 3261 §16.11).
        let tag = hmac::sign(&self.key, upstream_branch.as_bytes());
        let branch = format!("z9hG4bK{}", hex::encode(&tag.as_ref()[..10]));
        let transport = match to {
            Flow::Tcp(_) => "TCP",
            Flow::Udp(_) => "UDP",
            Flow::Peer(_) => "TLS",
        };
        let via = format!(
            "SIP/2.0/{transport} {};branch={branch};rl={}",
            self.addr,
            self.token(from)
        );
        let in_dialog = req
            .to_header()
            .ok()
            .and_then(|t| t.typed().ok())
            .is_some_and(|t| t.tag().is_some());
        let creates_dialog = matches!(
            req.method,
            Method::Invite | Method::Subscribe | Method::Refer | Method::Notify
        );
        if creates_dialog && !in_dialog {
            let local = if from.is_local() {
                Some(from)
            } else if to.is_local() {
                Some(to)
            } else {
                None
            };
            let mut rr = format!("<sip:{};lr;nid={}", self.addr, self.node_hex());
            if let Some(l) = local {
                rr.push_str(&format!(";ua={}", self.token(l)));
                if matches!(l, Flow::Tcp(_)) {
                    rr.push_str(";transport=tcp");
                }
            }
            rr.push('>');
            req.headers
                .push_front(Header::RecordRoute(sip::RecordRoute::new(rr)));
        }
        req.headers.push_front(Header::Via(sip::Via::new(via)));
        let len = req.body.len() as u32;
        req.headers.unique_push(Header::ContentLength(len.into()));
        let request = req.clone();
        if let Err(e) = self.send(to, SipMessage::Request(req)).await {
            tracing::info!(?to, "request not delivered: {e}");
            if request.method != Method::Ack {
                let mut original = request;
                // Answer for the hop that failed, as the request came to us.
                let _ = pop_top_via(&mut original.headers);
                original
                    .headers
                    .retain(|h| !matches!(h, Header::RecordRoute(_)));
                self.reply(
                    &original,
                    from,
                    StatusCode::ServiceUnavailable,
                    Some(&format!("the next hop cannot be reached: {e}")),
                    vec![],
                )
                .await;
            }
        }
    }

    // -------------------------------------------------------------- registrar

    /// REGISTER from a local UA (RFC 3261 §10.3) for this peer's AOR.
    async fn register(self: Arc<Self>, req: Request, from: Flow) {
        let to_aor = req
            .to_header()
            .ok()
            .and_then(|t| t.typed().ok())
            .and_then(|t| self.aor_of_uri(&t.uri).ok());
        if to_aor.as_deref() != Some(self.aor.as_str()) {
            let why = format!(
                "this peer registers only {} (its certificate's user name), not {}",
                self.aor,
                to_aor.as_deref().unwrap_or("that AOR")
            );
            return self
                .reply(&req, from, StatusCode::Forbidden, Some(&why), vec![])
                .await;
        }
        if let Err(why) = self.domains.admits(&self.aor) {
            // RFC 7904 §3.3 SHOULD: checked before storing (the storing peer would refuse).
            return self
                .reply(&req, from, StatusCode::Forbidden, Some(&why.0), vec![])
                .await;
        }
        let _reg = self.reg_lock.lock().await;
        let header_expires = req
            .expires_header()
            .and_then(|e| e.value().trim().parse::<u32>().ok());
        let contacts = req.typed_contact_headers().unwrap_or_default();
        let source = match from {
            Flow::Udp(a) => Some(a.ip()),
            Flow::Tcp(id) => self
                .tcp
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .map(|(_, a)| a.ip()),
            Flow::Peer(_) => None,
        };
        let now = Instant::now();
        let mut changed = false;
        {
            let mut bindings = self.bindings.lock().unwrap_or_else(|e| e.into_inner());
            for c in &contacts {
                let star = matches!(&c.uri.scheme, Some(sip::Scheme::Other(s)) if s == "*");
                let expires = c
                    .expires()
                    .or(header_expires)
                    .unwrap_or(DEFAULT_EXPIRES)
                    .min(MAX_EXPIRES);
                if star {
                    if expires == 0 {
                        changed |= !bindings.is_empty();
                        bindings.clear();
                    }
                    continue;
                }
                let mut contact = c.uri.clone();
                contact.params.retain(|p| !matches!(p, Param::Expires(_)));
                bindings.retain(|b| b.contact != contact);
                changed = true;
                if expires > 0 {
                    bindings.push(Binding {
                        contact,
                        flow: from,
                        source,
                        until: now + Duration::from_secs(expires.into()),
                        instance: c.params.iter().find_map(|p| match p {
                            Param::Other(k, v)
                                if k.value().eq_ignore_ascii_case("+sip.instance") =>
                            {
                                // Quoted on the wire (RFC 5627 §4.1), however it was parsed.
                                v.as_ref()
                                    .map(|v| format!("\"{}\"", v.value().trim_matches('"')))
                            }
                            _ => None,
                        }),
                    });
                }
            }
            while bindings.len() > MAX_BINDINGS {
                bindings.remove(0);
            }
        }
        let (current, lifetime) = {
            let b = self.bindings.lock().unwrap_or_else(|e| e.into_inner());
            let lifetime = b
                .iter()
                .map(|x| x.until.saturating_duration_since(now).as_secs() as u32)
                .max()
                .unwrap_or(0);
            (b.clone(), lifetime)
        };
        if changed {
            // The overlay entry is the route to this peer (RFC 7904 §3.2): it changes only
            // in its lifetime. It is stored with some slack beyond the longest binding, so
            // that refreshes store again only once that slack is used up (not once per
            // REGISTER); the last binding's expiry removes it explicitly.
            let stored = if current.is_empty() {
                self.deregister(now).await.map(|()| None)
            } else {
                let desired = now + Duration::from_secs(lifetime.into());
                let covered = self
                    .stored_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some_and(|until| until >= desired);
                if covered {
                    Ok(None)
                } else {
                    let with_slack = lifetime.saturating_add((lifetime / 2).clamp(30, MAX_SLACK));
                    // §5.1 SHOULD: a callee reachable by SIPS only says so.
                    let sips_only = current
                        .iter()
                        .all(|b| matches!(b.contact.scheme, Some(sip::Scheme::Sips)));
                    let prefs = if sips_only { "(sip.schemes=SIPS)" } else { "" };
                    registry::register(&self.node, &self.aor, self.node_id, prefs, with_slack)
                        .await
                        .map(|()| Some(with_slack))
                }
            };
            match stored {
                Err(e) => {
                    tracing::warn!(aor = %self.aor, "the overlay did not take the registration: {e}");
                    return self
                        .reply(
                            &req,
                            from,
                            StatusCode::ServiceUnavailable,
                            Some(&format!("the overlay did not store the registration: {e}")),
                            vec![],
                        )
                        .await;
                }
                Ok(Some(secs)) => {
                    *self.stored_until.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(now + Duration::from_secs(secs.into()));
                    tracing::info!(aor = %self.aor, contacts = current.len(), lifetime = secs, "registration stored in the overlay");
                }
                Ok(None) => {}
            }
        }
        // RFC 5627 §5 with RFC 7904 §6: a UA that supports GRUU and names its instance is
        // given this peer's GRUU (the AOR with `gr` = the destination list to this peer)
        // in its Contact as `pub-gruu`; calls to it reach this peer without a lookup.
        let gruu = req.headers.iter().any(|h| match h {
            Header::Supported(v) => v
                .value()
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("gruu")),
            _ => false,
        });
        let mut extra: Vec<Header> = current
            .iter()
            .map(|b| {
                let secs = b.until.saturating_duration_since(now).as_secs();
                let mut v = format!("<{}>;expires={secs}", b.contact);
                if let Some(instance) = &b.instance {
                    // §5.2: the instance ID stored is returned; with GRUU support, the
                    // instance's own GRUU (§5.4: different instances, different GRUUs).
                    v.push_str(&format!(";+sip.instance={instance}"));
                    if gruu {
                        let pub_gruu = aor::instance_gruu(
                            &self.aor,
                            &[Destination::Node(self.node_id)],
                            instance,
                        );
                        v.push_str(&format!(";pub-gruu=\"{pub_gruu}\""));
                    }
                }
                Header::Contact(sip::Contact::new(v))
            })
            .collect();
        if current.is_empty() {
            extra.push(Header::Expires(0u32.into()));
        }
        drop(_reg);
        self.reply(&req, from, StatusCode::OK, None, extra).await;
    }
}

/// For the fuzz target: a flow token's flow (without its MAC check).
#[doc(hidden)]
pub fn fuzz_flow_token(text: &str) -> Option<Flow> {
    let f = text.rsplit_once('.').map_or(text, |(f, _)| f);
    Flow::decode(f)
}

/// For the fuzz target: what the ladder says of a message.
#[doc(hidden)]
pub fn fuzz_describe(msg: &SipMessage) -> String {
    format!("{} {}", describe(msg), call_id(msg))
}

/// For the fuzz target: the first Via value, removed.
#[doc(hidden)]
pub fn fuzz_pop_top_via(headers: &mut sip::Headers) -> Option<sip::Via> {
    pop_top_via(headers)
}

/// For the fuzz target: a datagram read as the front end reads it, and a request checked.
#[doc(hidden)]
pub fn fuzz_datagram(data: &[u8]) {
    match read_datagram(data) {
        Datagram::Message(SipMessage::Request(r)) | Datagram::Refuse(r, ..) => {
            let _ = invalid(&r);
        }
        Datagram::Message(SipMessage::Response(_)) | Datagram::Garbage(_) => {}
    }
}

/// What one datagram (a UDP packet, or one DTLS record of a flow to a peer) holds.
enum Datagram {
    Message(SipMessage),
    /// A request answered at once with this code, saying why (with these headers).
    Refuse(Request, StatusCode, String, Vec<Header>),
    /// Not SIP: dropped.
    Garbage(String),
}

/// Parses a datagram (RFC 3261 §18.3): a body shorter than its Content-Length makes a
/// request a 400 and a response nothing; bytes beyond it are discarded. A request whose
/// method the SIP parser does not know (an extension method) is answered 501 with the
/// methods this peer handles: the parser has no type for other methods, so it cannot be
/// proxied (§16.3 step 1 asks proxies to forward them).
fn read_datagram(data: &[u8]) -> Datagram {
    match SipMessage::try_from(data) {
        Ok(SipMessage::Request(mut req)) => match framing(&req.headers, &mut req.body) {
            Ok(()) => Datagram::Message(SipMessage::Request(req)),
            Err(why) => Datagram::Refuse(req, StatusCode::BadRequest, why, vec![]),
        },
        Ok(SipMessage::Response(mut resp)) => match framing(&resp.headers, &mut resp.body) {
            Ok(()) => Datagram::Message(SipMessage::Response(resp)),
            Err(why) => Datagram::Garbage(format!("a response: {why}")),
        },
        Err(e) => match extension_request(data) {
            Some((req, method)) => Datagram::Refuse(
                req,
                StatusCode::NotImplemented,
                format!("the method {method} is not handled by this peer"),
                vec![Header::Allow(sip::Allow::new(ALLOWED))],
            ),
            None => Datagram::Garbage(e.to_string()),
        },
    }
}

/// The methods the front end handles (proxies, or answers as registrar).
const ALLOWED: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, PRACK, INFO, UPDATE, MESSAGE, SUBSCRIBE, NOTIFY, REFER, PUBLISH";

/// RFC 3261 §18.3 for message-oriented transports: the body is Content-Length bytes.
fn framing(headers: &sip::Headers, body: &mut Vec<u8>) -> Result<(), String> {
    let mut want: Option<usize> = None;
    for h in headers.iter() {
        let Header::ContentLength(l) = h else {
            continue;
        };
        let text = l.value().trim();
        let n: usize = text
            .parse()
            .map_err(|_| format!("Content-Length {text:?} is not a length"))?;
        if want.is_some_and(|w| w != n) {
            return Err("two different Content-Length values".into());
        }
        want = Some(n);
    }
    if let Some(n) = want {
        if n > body.len() {
            return Err(format!(
                "Content-Length is {n} but the datagram carries {} bytes of body",
                body.len()
            ));
        }
        body.truncate(n);
    }
    Ok(())
}

/// A request whose method token (RFC 3261 §25.1) the parser does not know: the request
/// parsed with OPTIONS in its place (its headers, CSeq included, are as received), and
/// the method.
fn extension_request(data: &[u8]) -> Option<(Request, String)> {
    let end = data.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&data[..end])
        .ok()?
        .trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let (method, uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    let token = |b: u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
    if method.is_empty()
        || !method.bytes().all(token)
        || !version.starts_with("SIP/")
        || method.parse::<Method>().is_ok()
    {
        return None;
    }
    let mut patched = format!("OPTIONS {uri} {version}").into_bytes();
    patched.extend_from_slice(&data[end..]);
    match SipMessage::try_from(&patched[..]).ok()? {
        SipMessage::Request(r) => Some((r, method.to_string())),
        SipMessage::Response(_) => None,
    }
}

/// Whether every quoted string (RFC 3261 §25.1: `"` … `"`, with `\\` escapes) is closed.
fn quotes_balanced(value: &str) -> bool {
    let mut quoted = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                chars.next();
            }
            '"' => quoted = !quoted,
            _ => {}
        }
    }
    !quoted
}

/// RFC 3261 §16.3 request validation beyond the mandatory headers, and §8.2.2 checks a
/// UAS makes that apply before anything is forwarded: the answer to give, if any.
fn invalid(req: &Request) -> Option<(StatusCode, String, Vec<Header>)> {
    let bad = |why: String| Some((StatusCode::BadRequest, why, vec![]));
    if req.version != Version::V2 {
        return Some((
            StatusCode::VersionNotSupported,
            format!("{} is not supported: SIP/2.0 only", req.version),
            vec![],
        ));
    }
    // §8.1.1.5: the CSeq method matches the request's.
    if let Some(cseq) = req.cseq_header().ok().and_then(|c| c.typed().ok())
        && cseq.method != req.method
    {
        return bad(format!(
            "the CSeq method ({}) is not the request's ({})",
            cseq.method, req.method
        ));
    }
    // §16.3 step 1: what forwarding uses must be well-formed.
    if req.via_header().ok().and_then(|v| v.typed().ok()).is_none() {
        return bad("the top Via is malformed".into());
    }
    if req
        .from_header()
        .ok()
        .and_then(|f| f.typed().ok())
        .is_none()
    {
        return bad("the From header is malformed".into());
    }
    if req.to_header().ok().and_then(|t| t.typed().ok()).is_none() {
        return bad("the To header is malformed".into());
    }
    // A quoted string left open (a display name, say) swallows what follows it.
    for (name, value) in [
        ("From", req.from_header().map(|h| h.value().to_string())),
        ("To", req.to_header().map(|h| h.value().to_string())),
    ] {
        if value.is_ok_and(|v| !quotes_balanced(&v)) {
            return bad(format!(
                "the {name} header has an unterminated quoted string"
            ));
        }
    }
    // Step 2: the Request-URI's scheme.
    if let Some(sip::uri::Scheme::Other(scheme)) = &req.uri.scheme {
        return Some((
            StatusCode::UnsupportedUriScheme,
            format!("{scheme}: URIs are not routed here (sip: and sips: only)"),
            vec![],
        ));
    }
    // Step 5: this peer understands no option-tag a proxy could be required to.
    let required: Vec<String> = req
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::ProxyRequire(p) => Some(p.value().to_string()),
            _ => None,
        })
        .flat_map(|v| {
            v.split(',')
                .map(|t| t.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect();
    if !required.is_empty() && req.method != Method::Cancel && req.method != Method::Ack {
        let tags = required.join(", ");
        return Some((
            StatusCode::BadExtension,
            format!("the extensions {tags} are not supported"),
            vec![Header::Unsupported(sip::Unsupported::new(tags))],
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_round_trip_through_their_text() {
        for f in [
            Flow::Udp("127.0.0.1:5062".parse().unwrap()),
            Flow::Udp("[::1]:5062".parse().unwrap()),
            Flow::Tcp(42),
            Flow::Peer(NodeId::from_u128(0x1234)),
        ] {
            assert_eq!(Flow::decode(&f.encode()), Some(f));
        }
        assert_eq!(Flow::decode("x1"), None);
        assert_eq!(Flow::decode(""), None);
    }

    #[test]
    fn the_top_via_value_is_popped_from_a_list() {
        let mut h = sip::Headers::default();
        h.push(Header::Via(sip::Via::new(
            "SIP/2.0/UDP a:1;branch=z9hG4bK1, SIP/2.0/UDP b:2;branch=z9hG4bK2",
        )));
        h.push(Header::Via(sip::Via::new(
            "SIP/2.0/UDP c:3;branch=z9hG4bK3",
        )));
        let top = pop_top_via(&mut h).unwrap();
        assert!(top.value().contains("a:1"));
        let next = pop_top_via(&mut h).unwrap();
        assert!(next.value().contains("b:2"), "{}", next.value());
        let last = pop_top_via(&mut h).unwrap();
        assert!(last.value().contains("c:3"));
        assert!(pop_top_via(&mut h).is_none());
    }
}
