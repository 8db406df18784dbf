//! Application flows set up with AppAttach (RFC 6940 §6.5.2): a usage asks the peer that
//! a destination list names for a connection carrying its application (5060 SIP, 5061
//! SIPS, …) and gets a mutually authenticated TLS stream whose peer proved the Node-ID it
//! expected.
//!
//! No-ICE overlay (§6.5.1.5, the only kind this node runs until ICE lands): the answerer
//! ([`AppAttachListener`]) listens on a TCP port and answers with one host candidate for
//! it; the requester ([`app_attach`]) connects to that candidate. TLS roles follow Attach
//! (§6.5.1.13, which §6.5.2 says AppAttach is "nearly identical" to): the node that sent
//! the AppAttach is the TLS server and requires the answerer's client certificate. The
//! requester checks that certificate against the Node-ID it expected — the terminal entry
//! of the destination list, or the node that answered a Resource-ID — and the answerer
//! accepts a connection only from a node it answered an AppAttach of within the last
//! [`PENDING_FOR`] (its certificate says which). Nothing but the application runs on the
//! stream: no RELOAD framing (RFC 7904 §5.1 "SIP as in normal SIP"; see
//! spec-notes/decisions.md).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reload_proto::link::AppFlowTls;
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

/// One application flow: a TLS stream to `peer` for `application`.
#[derive(Debug)]
pub struct AppFlow {
    pub peer: NodeId,
    pub application: u16,
    pub stream: TlsStream<TcpStream>,
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
/// (RFC 7904 §5.1), or, when it ends in a Resource-ID, the Node-ID that answered.
pub async fn app_attach(
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
    let expected = terminal.unwrap_or(from);
    if terminal.is_some_and(|t| t != from) {
        return Err(AppAttachError::BadAnswer {
            from,
            why: format!("the answer came from {from}, not from the destination {expected}"),
        });
    }
    if ans.application != application {
        return Err(AppAttachError::BadAnswer {
            from,
            why: format!("application {} answered for {application}", ans.application),
        });
    }
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
                    stream,
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
        let pending = Arc::new(Mutex::new(Pending::default()));
        let apps = applications.to_vec();
        let p = pending.clone();
        let answering = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let peer = request.signer().node_id;
                let reply = match request.body() {
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
        let (tx, flows) = mpsc::channel(64);
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
        stream: TlsStream::Client(stream),
    })
}
