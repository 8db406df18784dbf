//! Application flows set up with AppAttach (RFC 6940 §6.5.2): a usage asks the peer that
//! a destination list names for a connection carrying its application (5060 SIP, 5061
//! SIPS, …) and gets a mutually authenticated TLS stream whose peer proved the Node-ID it
//! expected.
//!
//! **ICE overlay** (§6.5.1.3–§6.5.1.10): the core runs the flow — ICE between the two
//! nodes' application sockets, then DTLS over the selected pair, one record per
//! application message ([`DatagramFlow`]; `reload_proto::node` has the details). The
//! flow is as reliable as UDP: SIP retransmits over it as over UDP (RFC 3261 §17).
//!
//! **No-ICE overlay** (§6.5.1.5): the answerer ([`AppAttachListener`]) listens on a TCP
//! port and answers with one host candidate for it; the requester ([`app_attach`])
//! connects to that candidate ([`FlowTransport::Tls`]). TLS roles follow Attach
//! (§6.5.1.13, which §6.5.2 says AppAttach is "nearly identical" to): the node that sent
//! the AppAttach is the TLS server and requires the answerer's client certificate. The
//! requester checks that certificate against the Node-ID it expected — the terminal entry
//! of the destination list, or the node that answered a Resource-ID — and the answerer
//! accepts a connection only from a node it answered an AppAttach of within the last
//! [`PENDING_FOR`] (its certificate says which). Nothing but the application runs on the
//! stream: no RELOAD framing (RFC 7904 §5.1 "SIP as in normal SIP"; see
//! spec-notes/decisions.md).
//!
//! Every listener also answers the **echo** application ([`ECHO_APPLICATION`]): what
//! arrives on an echo flow goes back. `reload-node appattach` uses it to show an operator
//! whether, and over which ICE pair, applications reach a node.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reload_proto::link::AppFlowTls;
use reload_proto::node::{AppFlowError, AppFlowEvent, AppFlowId, IceInfo};
use reload_wire::body::MessageBody;
use reload_wire::common::IpAddressPort;
use reload_wire::link::{AppAttach, IceCandidate, OverlayLinkType, ROLE_ACTIVE, ROLE_PASSIVE};
use reload_wire::message::{ErrorCode, ErrorResponse, MessageCode};
use reload_wire::{Destination, NodeId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::client::{ClientError, NodeHandle, error_info};
use reload_proto::node::RequestError;

/// How long an answered AppAttach waits for its connection.
pub const PENDING_FOR: Duration = Duration::from_secs(30);
/// At most this many answered AppAttaches wait for their connection (the oldest go first).
pub const MAX_PENDING: usize = 1024;
/// TCP connect plus TLS handshake of one flow.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes an answerer runs at once; more connections wait for a slot.
pub const MAX_HANDSHAKES: usize = 64;

/// The link type of the host candidate: TLS over TCP (no RELOAD framing is used on it).
const FLOW_LINK: OverlayLinkType = OverlayLinkType::TLS_TCP_FH_NO_ICE;

/// The diagnostic echo application: every [`AppAttachListener`] answers it and sends
/// back what arrives (as RFC 862 does on port 7; Application-IDs follow port numbers,
/// RFC 6940 §14.5). Used by `reload-node appattach`.
pub const ECHO_APPLICATION: u16 = 7;

/// An echo flow ends after this long without data.
const ECHO_IDLE: Duration = Duration::from_secs(30);

/// Messages of one datagram flow waiting to be read; beyond, new ones are dropped (as
/// UDP would).
const FLOW_QUEUE: usize = 256;

/// One application flow to `peer` for `application`.
#[derive(Debug)]
pub struct AppFlow {
    pub peer: NodeId,
    pub application: u16,
    pub transport: FlowTransport,
}

/// What carries an application flow (a few per node, long-lived: their size does not
/// matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum FlowTransport {
    /// No-ICE overlays: a TLS stream over TCP.
    Tls(TlsStream<TcpStream>),
    /// ICE overlays: DTLS over the selected ICE pair, one record per message.
    Dtls(DatagramFlow),
}

/// An application flow over ICE: DTLS datagrams, each one message of the application.
/// Dropping it closes the flow.
#[derive(Debug)]
pub struct DatagramFlow {
    flow: AppFlowId,
    node: NodeHandle,
    events: mpsc::Receiver<AppFlowEvent>,
    /// The ICE pair it runs over.
    pub pair: Option<IceInfo>,
    ended: Option<String>,
}

impl DatagramFlow {
    /// The next message; `None` once the flow ended ([`DatagramFlow::ended`] says why).
    pub async fn recv(&mut self) -> Option<Bytes> {
        if self.ended.is_some() {
            return None;
        }
        loop {
            match self.events.recv().await {
                Some(AppFlowEvent::Data { data, .. }) => return Some(data),
                Some(AppFlowEvent::Open { .. }) => {}
                Some(AppFlowEvent::Closed { reason, .. }) => {
                    self.ended = Some(reason);
                    return None;
                }
                None => {
                    self.ended = Some("the node stopped".into());
                    return None;
                }
            }
        }
    }

    /// Waits until the flow being set up opens: the peer and the ICE pair, or why not.
    async fn opened(&mut self) -> Result<(NodeId, Option<IceInfo>), String> {
        let deadline = reload_proto::node::APP_SETUP_DEADLINE + Duration::from_secs(5);
        tokio::time::timeout(deadline, async {
            loop {
                match self.events.recv().await {
                    Some(AppFlowEvent::Open { peer, pair, .. }) => return Ok((peer, pair)),
                    Some(AppFlowEvent::Closed { reason, .. }) => return Err(reason),
                    Some(AppFlowEvent::Data { .. }) => {}
                    None => return Err("the node stopped".to_string()),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("not open within {deadline:?}")))
    }

    /// Why the flow ended, once [`DatagramFlow::recv`] returned `None`.
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// A handle that sends on this flow (cheap to clone; sends fail silently once the
    /// flow is gone, as a datagram would be lost).
    pub fn sender(&self) -> FlowSender {
        FlowSender {
            flow: self.flow,
            node: self.node.clone(),
        }
    }

    /// Sends one message (one DTLS record, at most 16 KiB).
    pub async fn send(&self, data: Bytes) -> Result<(), ClientError> {
        self.node.app_send(self.flow, data).await
    }
}

impl Drop for DatagramFlow {
    fn drop(&mut self) {
        self.node.app_close(self.flow);
    }
}

/// Sends on a [`DatagramFlow`].
#[derive(Clone, Debug)]
pub struct FlowSender {
    flow: AppFlowId,
    node: NodeHandle,
}

impl FlowSender {
    /// Sends one message (one DTLS record, at most 16 KiB).
    pub async fn send(&self, data: Bytes) -> Result<(), ClientError> {
        self.node.app_send(self.flow, data).await
    }
}

/// Why an AppAttach did not give a flow.
#[derive(Debug, thiserror::Error)]
pub enum AppAttachError {
    #[error("the node is not running")]
    Stopped,
    #[error("the node has no certificate-based links (no TLS for application flows)")]
    NoTls,
    #[error("AppAttach refused by {from}: {info}")]
    Refused {
        from: NodeId,
        info: String,
        code: ErrorCode,
    },
    #[error("AppAttach got no answer: {0}")]
    NoAnswer(String),
    #[error("AppAttach answer from {from} is not usable: {why}")]
    BadAnswer { from: NodeId, why: String },
    #[error("connection to {peer} at {addr} failed: {why}")]
    Connect {
        peer: NodeId,
        addr: SocketAddr,
        why: String,
    },
    #[error("flow to {peer} over ICE failed: {why}")]
    Ice { peer: NodeId, why: String },
    #[error("no application flow: {0}")]
    Local(String),
}

impl AppAttachError {
    /// The RFC error code a refusal carried.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            AppAttachError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn random_token() -> Bytes {
    let mut b = [0u8; 16];
    // A failing OS random source leaves zeros: the tokens are not secrets in a No-ICE
    // overlay (no connectivity checks use them).
    let _ = aws_lc_rs::rand::fill(&mut b);
    Bytes::from(hex::encode(b).into_bytes())
}

async fn flow_tls(node: &NodeHandle) -> Result<AppFlowTls, AppAttachError> {
    node.app_flow_tls()
        .await
        .map_err(|_| AppAttachError::Stopped)?
        .ok_or(AppAttachError::NoTls)
}

/// Sends an AppAttach for `application` along `destination` (§6.5.2.1) and opens the
/// flow to the answering peer. The peer must prove the terminal Node-ID of `destination`
/// (RFC 7904 §5.1), or, when it ends in a Resource-ID, the Node-ID that answered. In an
/// ICE overlay the flow is DTLS over an ICE pair ([`FlowTransport::Dtls`]), else TLS over
/// TCP ([`FlowTransport::Tls`]).
pub async fn app_attach(
    node: &NodeHandle,
    destination: Vec<Destination>,
    application: u16,
) -> Result<AppFlow, AppAttachError> {
    let terminal = match destination.last() {
        Some(Destination::Node(n)) => Some(*n),
        _ => None,
    };
    let (tx, rx) = mpsc::channel(FLOW_QUEUE);
    let offer = node
        .app_offer(application, terminal, tx)
        .await
        .map_err(|_| AppAttachError::Stopped)?;
    match offer {
        Err(AppFlowError::NotIce) => app_attach_tls(node, destination, application).await,
        Err(e) => Err(AppAttachError::Local(e.to_string())),
        Ok((flow, req)) => {
            // Closes the flow on every early return.
            let mut guard = DatagramFlow {
                flow,
                node: node.clone(),
                events: rx,
                pair: None,
                ended: None,
            };
            let (from, ans) = send_app_attach(node, destination, req, application).await?;
            node.app_answered(flow, from, ans)
                .await
                .map_err(|_| AppAttachError::Stopped)?;
            match guard.opened().await {
                Ok((peer, pair)) => {
                    tracing::debug!(%peer, application, ?pair, "AppAttach flow open over ICE");
                    guard.pair = pair;
                    Ok(AppFlow {
                        peer,
                        application,
                        transport: FlowTransport::Dtls(guard),
                    })
                }
                Err(why) => Err(AppAttachError::Ice { peer: from, why }),
            }
        }
    }
}

/// Sends `req` along `destination` and checks the answer: from the terminal Node-ID,
/// for the application asked.
async fn send_app_attach(
    node: &NodeHandle,
    destination: Vec<Destination>,
    req: AppAttach,
    application: u16,
) -> Result<(NodeId, AppAttach), AppAttachError> {
    let terminal = match destination.last() {
        Some(Destination::Node(n)) => Some(*n),
        _ => None,
    };
    let (from, ans) = match node
        .request(destination, MessageBody::AppAttachReq(req))
        .await
    {
        Ok((from, MessageBody::AppAttachAns(a))) => (from, a),
        Ok((from, other)) => {
            return Err(AppAttachError::BadAnswer {
                from,
                why: format!("{:?} instead of AppAttachAns", other.code()),
            });
        }
        Err(ClientError::Request(RequestError::Error(from, e))) => {
            return Err(AppAttachError::Refused {
                from,
                info: error_info(&e),
                code: e.error_code,
            });
        }
        Err(ClientError::Request(e)) => return Err(AppAttachError::NoAnswer(format!("{e:?}"))),
        Err(_) => return Err(AppAttachError::Stopped),
    };
    if let Some(t) = terminal.filter(|t| *t != from) {
        return Err(AppAttachError::BadAnswer {
            from,
            why: format!("the answer came from {from}, not from the destination {t}"),
        });
    }
    if ans.application != application {
        return Err(AppAttachError::BadAnswer {
            from,
            why: format!("application {} answered for {application}", ans.application),
        });
    }
    Ok((from, ans))
}

/// AppAttach in a No-ICE overlay: TLS over TCP to the answer's host candidate.
async fn app_attach_tls(
    node: &NodeHandle,
    destination: Vec<Destination>,
    application: u16,
) -> Result<AppFlow, AppAttachError> {
    let tls = flow_tls(node).await?;
    let req = AppAttach {
        ufrag: random_token(),
        password: random_token(),
        application,
        role: Bytes::from_static(ROLE_PASSIVE),
        candidates: Vec::new(),
    };
    let (from, ans) = send_app_attach(node, destination, req, application).await?;
    let expected = from;
    let addrs: Vec<SocketAddr> = ans
        .candidates
        .iter()
        .filter(|c| c.overlay_link == FLOW_LINK)
        .filter_map(|c| c.addr_port.socket_addr())
        .collect();
    if addrs.is_empty() {
        return Err(AppAttachError::BadAnswer {
            from,
            why: "no TLS-over-TCP host candidate".into(),
        });
    }
    let mut last = None;
    for addr in addrs {
        match connect(&tls, expected, addr).await {
            Ok(stream) => {
                tracing::debug!(peer = %expected, %addr, application, "AppAttach flow open");
                return Ok(AppFlow {
                    peer: expected,
                    application,
                    transport: FlowTransport::Tls(stream),
                });
            }
            Err(why) => {
                last = Some(AppAttachError::Connect {
                    peer: expected,
                    addr,
                    why,
                })
            }
        }
    }
    Err(last.expect("one candidate at least"))
}

/// What `reload-node appattach` reports: the flow to an echo application and one
/// message's round trip.
#[derive(Clone, Debug)]
pub struct EchoReport {
    pub peer: NodeId,
    /// `dtls` (ICE overlays) or `tls`.
    pub transport: &'static str,
    pub pair: Option<IceInfo>,
    /// AppAttach sent → flow open.
    pub setup: Duration,
    /// One message there and back over the flow.
    pub rtt: Duration,
}

/// AppAttaches to `destination` for the echo application ([`ECHO_APPLICATION`]) and
/// times one message there and back (resent every second over a datagram flow, at most
/// five times).
pub async fn echo_probe(
    node: &NodeHandle,
    destination: Vec<Destination>,
) -> Result<EchoReport, AppAttachError> {
    let started = Instant::now();
    let flow = app_attach(node, destination, ECHO_APPLICATION).await?;
    let setup = started.elapsed();
    let nonce = random_token();
    let peer = flow.peer;
    let fail = |why: String| AppAttachError::Ice { peer, why };
    match flow.transport {
        FlowTransport::Dtls(mut d) => {
            let pair = d.pair.clone();
            for _ in 0..5 {
                let sent = Instant::now();
                d.send(nonce.clone())
                    .await
                    .map_err(|_| AppAttachError::Stopped)?;
                let wait = tokio::time::timeout(Duration::from_secs(1), async {
                    loop {
                        match d.recv().await {
                            Some(m) if m == nonce => return true,
                            Some(_) => {}
                            None => return false,
                        }
                    }
                })
                .await;
                match wait {
                    Ok(true) => {
                        return Ok(EchoReport {
                            peer,
                            transport: "dtls",
                            pair,
                            setup,
                            rtt: sent.elapsed(),
                        });
                    }
                    Ok(false) => {
                        let why = d.ended().unwrap_or("the flow ended").to_string();
                        return Err(fail(why));
                    }
                    Err(_) => {}
                }
            }
            Err(fail("the echo did not come back (5 tries)".into()))
        }
        FlowTransport::Tls(mut stream) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let sent = Instant::now();
            let io = async {
                stream.write_all(&nonce).await?;
                stream.flush().await?;
                let mut buf = vec![0u8; nonce.len()];
                stream.read_exact(&mut buf).await?;
                Ok::<_, std::io::Error>(buf)
            };
            match tokio::time::timeout(Duration::from_secs(5), io).await {
                Ok(Ok(buf)) if buf == nonce => Ok(EchoReport {
                    peer,
                    transport: "tls",
                    pair: None,
                    setup,
                    rtt: sent.elapsed(),
                }),
                Ok(Ok(_)) => Err(fail("the echo came back altered".into())),
                Ok(Err(e)) => Err(fail(e.to_string())),
                Err(_) => Err(fail("the echo did not come back within 5 s".into())),
            }
        }
    }
}

/// Serves one echo flow until it ends or idles for [`ECHO_IDLE`].
async fn echo(flow: AppFlow) {
    let peer = flow.peer;
    match flow.transport {
        FlowTransport::Dtls(mut d) => {
            while let Ok(Some(m)) = tokio::time::timeout(ECHO_IDLE, d.recv()).await {
                if d.send(m).await.is_err() {
                    break;
                }
            }
        }
        FlowTransport::Tls(stream) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut rd, mut wr) = tokio::io::split(stream);
            let mut buf = vec![0u8; 4096];
            while let Ok(Ok(n)) = tokio::time::timeout(ECHO_IDLE, rd.read(&mut buf)).await {
                if n == 0 || wr.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        }
    }
    tracing::debug!(%peer, "echo flow ended");
}

/// The requester's side of one flow: TCP connect, then TLS server (§6.5.1.13).
async fn connect(
    tls: &AppFlowTls,
    expected: NodeId,
    addr: SocketAddr,
) -> Result<TlsStream<TcpStream>, String> {
    let cfg = tls
        .server_config(Some(expected), SystemTime::now())
        .map_err(|e| e.to_string())?;
    let run = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        TlsAcceptor::from(cfg)
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, run).await {
        Ok(r) => r.map(TlsStream::Server),
        Err(_) => Err(format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}")),
    }
}

/// Answered AppAttaches waiting for their connection: (peer, application, until).
#[derive(Default)]
struct Pending(VecDeque<(NodeId, u16, Instant)>);

impl Pending {
    fn add(&mut self, peer: NodeId, application: u16, now: Instant) {
        self.0.retain(|(_, _, until)| *until > now);
        if self.0.len() >= MAX_PENDING {
            self.0.pop_front();
        }
        self.0.push_back((peer, application, now + PENDING_FOR));
    }

    /// The application of the first waiting AppAttach from one of `peers`, taken.
    fn take(&mut self, peers: &[NodeId], now: Instant) -> Option<(NodeId, u16)> {
        self.0.retain(|(_, _, until)| *until > now);
        let i = self.0.iter().position(|(p, _, _)| peers.contains(p))?;
        self.0.remove(i).map(|(p, a, _)| (p, a))
    }
}

/// The answerer's side: answers AppAttach for its applications and yields the flows.
#[derive(Debug)]
pub struct AppAttachListener {
    local: SocketAddr,
    flows: mpsc::Receiver<AppFlow>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for AppAttachListener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl AppAttachListener {
    /// Listens for flows on `bind` (TCP) and serves AppAttach for `applications`
    /// (others are answered Error_Not_Found, §6.5.2.1). `advertise`: the address put in
    /// the host candidate, when it differs from the bound one (e.g. bound to 0.0.0.0).
    pub async fn start(
        node: &NodeHandle,
        bind: SocketAddr,
        advertise: Option<SocketAddr>,
        applications: &[u16],
    ) -> Result<AppAttachListener, String> {
        let tls = flow_tls(node).await.map_err(|e| e.to_string())?;
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| format!("cannot listen for application flows on {bind}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let advertised = advertise.unwrap_or(local);
        let mut requests = node
            .serve(&[MessageCode::APP_ATTACH_REQ])
            .await
            .map_err(|e| format!("cannot serve AppAttach: {e}"))?;
        let ice = node
            .snapshot()
            .await
            .map_err(|e| format!("cannot serve AppAttach: {e}"))?
            .ice;
        let pending = Arc::new(Mutex::new(Pending::default()));
        let mut apps = applications.to_vec();
        apps.push(ECHO_APPLICATION);
        let p = pending.clone();
        let (tx, flows) = mpsc::channel(64);
        let (node2, tx2) = (node.clone(), tx.clone());
        let answering = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let peer = request.signer().node_id;
                let reply = match request.body() {
                    MessageBody::AppAttachReq(a) if apps.contains(&a.application) && ice => {
                        let (events, rx) = mpsc::channel(FLOW_QUEUE);
                        match node2.app_answer(peer, a.clone(), events).await {
                            Ok(Ok((flow, body))) => {
                                tracing::debug!(%peer, application = a.application, "AppAttach answered ({flow})");
                                let guard = DatagramFlow {
                                    flow,
                                    node: node2.clone(),
                                    events: rx,
                                    pair: None,
                                    ended: None,
                                };
                                tokio::spawn(await_open(guard, peer, a.application, tx2.clone()));
                                Ok(MessageBody::AppAttachAns(body))
                            }
                            Ok(Err(e)) => Err(e),
                            Err(_) => return,
                        }
                    }
                    MessageBody::AppAttachReq(a) if apps.contains(&a.application) => {
                        p.lock().unwrap_or_else(|e| e.into_inner()).add(
                            peer,
                            a.application,
                            Instant::now(),
                        );
                        tracing::debug!(%peer, application = a.application, "AppAttach answered");
                        Ok(MessageBody::AppAttachAns(AppAttach {
                            ufrag: random_token(),
                            password: random_token(),
                            application: a.application,
                            role: Bytes::from_static(ROLE_ACTIVE),
                            candidates: vec![IceCandidate::host(
                                IpAddressPort::from(advertised),
                                FLOW_LINK,
                            )],
                        }))
                    }
                    MessageBody::AppAttachReq(a) => Err(ErrorResponse::new(
                        ErrorCode::NOT_FOUND,
                        format!("no application {} runs on this node", a.application),
                    )),
                    _ => Err(ErrorResponse::new(
                        ErrorCode::INVALID_MESSAGE,
                        "not an AppAttachReq",
                    )),
                };
                request.answer(reply).await;
            }
        });
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok((tcp, from)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (tls, pending, tx) = (tls.clone(), pending.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match answer_flow(&tls, &pending, tcp).await {
                        Ok(flow) if flow.application == ECHO_APPLICATION => echo(flow).await,
                        Ok(flow) => {
                            let _ = tx.send(flow).await;
                        }
                        Err(why) => tracing::info!(%from, "application flow refused: {why}"),
                    }
                });
            }
        });
        Ok(AppAttachListener {
            local,
            flows,
            tasks: vec![answering, accepting],
        })
    }

    /// The address flows arrive on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next flow; `None` once the listener stopped.
    pub async fn next(&mut self) -> Option<AppFlow> {
        self.flows.recv().await
    }
}

/// An answered AppAttach over ICE: waits for its flow to open, then hands it on (or
/// serves it, for the echo application).
async fn await_open(
    mut guard: DatagramFlow,
    requester: NodeId,
    application: u16,
    flows: mpsc::Sender<AppFlow>,
) {
    match guard.opened().await {
        Ok((peer, pair)) => {
            guard.pair = pair;
            let flow = AppFlow {
                peer,
                application,
                transport: FlowTransport::Dtls(guard),
            };
            if application == ECHO_APPLICATION {
                echo(flow).await;
            } else {
                let _ = flows.send(flow).await;
            }
        }
        Err(why) => {
            tracing::info!(peer = %requester, application, "application flow not set up: {why}")
        }
    }
}

/// The answerer's side of one flow: TLS client; the server must be a node whose AppAttach
/// was answered.
async fn answer_flow(
    tls: &AppFlowTls,
    pending: &Mutex<Pending>,
    tcp: TcpStream,
) -> Result<AppFlow, String> {
    let _ = tcp.set_nodelay(true);
    let cfg = tls
        .client_config(None, SystemTime::now())
        .map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        TlsConnector::from(cfg).connect(AppFlowTls::server_name(), tcp),
    )
    .await
    .map_err(|_| format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}"))?
    .map_err(|e| format!("TLS: {e}"))?;
    let peers = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| tls.peer_node_ids(c.as_ref()))
        .unwrap_or_default();
    let (peer, application) = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(&peers, Instant::now())
        .ok_or_else(|| format!("no AppAttach answered for {peers:?}"))?;
    Ok(AppFlow {
        peer,
        application,
        transport: FlowTransport::Tls(TlsStream::Client(stream)),
    })
}
