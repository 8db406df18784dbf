//! The async client API of a running node: a [`NodeHandle`] sends requests through the
//! overlay and waits for their answers, reads the node's state, and lets an application (a
//! usage) serve the requests the core does not answer itself.
//!
//! ```no_run
//! # async fn demo(node: reload_node::client::NodeHandle) -> Result<(), Box<dyn std::error::Error>> {
//! use reload_wire::message::{ErrorCode, ErrorResponse, MessageCode};
//! // Ping the peer responsible for a Resource-ID.
//! let id = node.resource_id(b"alice@example.org").await?;
//! let (who, rtt) = node.ping(vec![reload_wire::Destination::Resource(id)]).await?;
//! println!("{who} answered in {rtt:?}");
//! // Serve a method: every request for it arrives here, with its signer's certificate.
//! let mut requests = node.serve(&[MessageCode::APP_ATTACH_REQ]).await?;
//! while let Some(request) = requests.next().await {
//!     let user = request.signer().cert.user_name.clone();
//!     request.answer(Err(ErrorResponse::new(ErrorCode::NOT_FOUND, format!("no app for {user:?}")))).await;
//! }
//! # Ok(()) }
//! ```
//!
//! The handle talks to the shell's task over a channel; it is cheap to clone, and every
//! call fails with [`ClientError::Stopped`] once the node has stopped.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_proto::node::{
    AppFlowError, AppFlowEvent, AppFlowId, AppFlowInfo, Fetched, InboundId, InboundRequest,
    LinkInfo, NodeStats, RequestError,
};
use reload_proto::sign::VerifiedSigner;
use reload_wire::body::MessageBody;
use reload_wire::link::AppAttach;
use reload_wire::link::PingReq;
use reload_wire::message::{ErrorCode, ErrorResponse, MessageCode};
use reload_wire::storage::{
    FindAns, FindReq, KindId, StatAns, StatReq, StoreAns, StoredDataSpecifier, StoredDataValue,
    UnknownKinds,
};
use reload_wire::{DecodeOptions, Destination, NodeId, ResourceId, Wire};
use tokio::sync::{mpsc, oneshot};

/// What a running node looks like.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub node_id: NodeId,
    pub overlay: String,
    pub joined: bool,
    /// The topology plug-in's neighbour table by section (CHORD-RELOAD: `successors`,
    /// `predecessors`, `fingers`), nearest first.
    pub neighbors: Vec<(String, Vec<NodeId>)>,
    pub routing_table: Vec<NodeId>,
    /// Peers with a link up.
    pub connected: Vec<NodeId>,
    pub links: Vec<LinkInfo>,
    /// `initial-ttl` of the configuration in force (the longest path a trace may find).
    pub initial_ttl: u8,
    /// The configuration's sequence number.
    pub sequence: u16,
    pub stats: NodeStats,
    /// Values this node stores for the overlay (RFC 6940 §7), and their encoded size.
    pub stored_values: usize,
    pub stored_bytes: u64,
    /// Where they are kept (`memory`, `sqlite PATH`).
    pub storage: String,
    /// How the overlay's structures decode (Node-ID length, max-message-size): for a
    /// usage that decodes what it stores (e.g. destination lists).
    pub decode: DecodeOptions,
    /// The addresses the peers this node has UDP links with see it at (RFC 6940
    /// §6.5.1.4), grouped by address.
    pub reflexive: Vec<reload_proto::node::ReflexiveAddress>,
    /// The overlay uses ICE (§6.5.1.5): AppAttach flows are DTLS over ICE pairs.
    pub ice: bool,
    /// Application flows over ICE (AppAttach, §6.5.2), open or being set up.
    pub app_flows: Vec<AppFlowInfo>,
    /// The TURN servers relayed candidates are allocated on (§9).
    pub turn_servers: Vec<std::net::SocketAddr>,
    /// The AOR domains the overlay's configuration admits for SIP-REGISTRATION (RFC 7904
    /// §3.4): what a registrant checks before storing (§3.3) and a caller checks before
    /// looking an AOR up here (§4.1).
    pub sip_domains: reload_proto::storage::policy::AorDomains,
}

impl Snapshot {
    /// One section of the neighbour table (empty when the plug-in has none by that name).
    pub fn section(&self, name: &str) -> &[NodeId] {
        self.neighbors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    pub fn successors(&self) -> &[NodeId] {
        self.section("successors")
    }

    pub fn predecessors(&self) -> &[NodeId] {
        self.section("predecessors")
    }
}

/// The answer to a request: who answered and with what.
pub type Answer = Result<(NodeId, MessageBody), RequestError>;

/// What the handle asks of the shell's task.
#[derive(Debug)]
pub(crate) enum Command {
    Request {
        destination: Vec<Destination>,
        body: MessageBody,
        /// A TTL below `initial-ttl` (for a hop-by-hop trace), or `None`.
        ttl: Option<u8>,
        reply: oneshot::Sender<Answer>,
    },
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    ResourceId {
        name: Vec<u8>,
        reply: oneshot::Sender<ResourceId>,
    },
    AppFlowTls {
        reply: oneshot::Sender<Option<reload_proto::link::AppFlowTls>>,
    },
    Serve {
        codes: Vec<MessageCode>,
        requests: mpsc::Sender<InboundRequest>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Respond {
        id: InboundId,
        answer: Result<MessageBody, ErrorResponse>,
    },
    /// Sign `values` of `kind` for `resource` in the shell's task and Store them (§7.4.1).
    Store {
        resource: ResourceId,
        kind: KindId,
        values: Vec<StoredDataValue>,
        lifetime: u32,
        reply: oneshot::Sender<Answer>,
    },
    /// Fetch (§7.4.2); the answer's values verified by the core.
    Fetch {
        resource: ResourceId,
        specifiers: Vec<StoredDataSpecifier>,
        reply: oneshot::Sender<Result<Fetched, RequestError>>,
    },
    /// Starts an application flow over ICE (§6.5.2): its AppAttach body; its events go
    /// to `events`.
    AppOffer {
        application: u16,
        peer: Option<NodeId>,
        events: mpsc::Sender<AppFlowEvent>,
        reply: oneshot::Sender<Result<(AppFlowId, AppAttach), AppFlowError>>,
    },
    AppAnswered {
        flow: AppFlowId,
        from: NodeId,
        answer: AppAttach,
    },
    /// Answers an AppAttach with a new flow over ICE; its events go to `events`.
    AppAnswer {
        requester: NodeId,
        request: AppAttach,
        events: mpsc::Sender<AppFlowEvent>,
        reply: oneshot::Sender<Result<(AppFlowId, AppAttach), ErrorResponse>>,
    },
    AppSend {
        flow: AppFlowId,
        data: Bytes,
    },
    AppClose {
        flow: AppFlowId,
    },
    /// Stores TURN-SERVICE records for `server` (RFC 6940 §9); the Stores' answers.
    AdvertiseTurn {
        server: std::net::SocketAddr,
        lifetime: u32,
        reply: oneshot::Sender<Result<Vec<oneshot::Receiver<Answer>>, RequestError>>,
    },
    /// A TURN server to allocate relayed candidates on from now on.
    AddTurnServer {
        server: reload_proto::node::TurnServer,
    },
    Shutdown,
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The node stopped (or is shutting down).
    Stopped,
    /// The request got no answer, or an error answer, or could not be sent.
    Request(RequestError),
    /// The answer is not of the kind asked for.
    Unexpected { from: NodeId, what: String },
    /// The node refused the call (e.g. another usage serves that method already).
    Refused(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Stopped => f.write_str("the node is not running"),
            ClientError::Request(e) => write!(f, "{e}"),
            ClientError::Unexpected { from, what } => {
                write!(f, "{from} answered with {what}")
            }
            ClientError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClientError {}

/// Why a ping or trace failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    /// The node stopped.
    Stopped,
    /// No answer (at hop `hop` of a trace, counted from 1).
    Timeout { hop: Option<u8>, after: Duration },
    /// `from` answered with an error.
    Refused {
        from: NodeId,
        code: ErrorCode,
        info: String,
    },
    /// `from` answered with something that is not the answer expected (`expected`: its
    /// name, e.g. PingAns).
    Unexpected {
        from: NodeId,
        what: String,
        expected: &'static str,
    },
    /// The request could not be sent.
    Unsendable(String),
    /// The trace ran out of TTL before the target answered.
    NotReached { initial_ttl: u8 },
}

impl OpError {
    /// A short word for the kind of failure (the control protocol's `error KIND:`).
    pub fn kind(&self) -> &'static str {
        match self {
            OpError::Stopped => "stopped",
            OpError::Timeout { .. } => "timeout",
            OpError::Refused { .. } => "refused",
            OpError::Unexpected { .. } => "unexpected",
            OpError::Unsendable(_) => "unsendable",
            OpError::NotReached { .. } => "ttl",
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Stopped => f.write_str("the peer is shutting down"),
            OpError::Timeout { hop: None, after } => {
                write!(f, "no answer within {:.1} s", after.as_secs_f64())
            }
            OpError::Timeout {
                hop: Some(h),
                after,
            } => write!(
                f,
                "hop {h} did not answer within {:.1} s",
                after.as_secs_f64()
            ),
            OpError::Refused { from, code, info } => {
                write!(f, "{from} answered {code}")?;
                if !info.is_empty() {
                    write!(f, " ({info})")?;
                }
                Ok(())
            }
            OpError::Unexpected {
                from,
                what,
                expected,
            } => {
                write!(f, "{from} answered with {what}, not a {expected}")
            }
            OpError::Unsendable(why) => write!(f, "not sent: {why}"),
            OpError::NotReached { initial_ttl } => write!(
                f,
                "the target did not answer within initial-ttl ({initial_ttl}) hops"
            ),
        }
    }
}

impl std::error::Error for OpError {}

/// One step of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// Position on the path, from 1 (the TTL of its Ping + 1).
    pub number: u8,
    pub node: NodeId,
    pub rtt: Duration,
    /// This is the target's own answer (the last hop).
    pub target: bool,
}

fn refused(from: NodeId, e: &ErrorResponse) -> OpError {
    OpError::Refused {
        from,
        code: e.error_code,
        info: error_info(e),
    }
}

/// An error answer's `error_info`, readable: the structures RFC 6940 puts there decoded
/// (§7.4.1.2: the current generation counters of Error_Generation_Counter_Too_Low, the
/// Kinds of Error_Unknown_Kind), other text with control characters dropped, at most 200
/// characters.
pub fn error_info(e: &ErrorResponse) -> String {
    let opts = DecodeOptions::default();
    let decoded = match e.error_code {
        ErrorCode::GENERATION_COUNTER_TOO_LOW => {
            StoreAns::decode(&e.error_info, &opts).ok().map(|a| {
                let list: Vec<String> = a
                    .kind_responses
                    .iter()
                    .map(|k| format!("Kind {} at {}", k.kind.0, k.generation_counter))
                    .collect();
                format!("current generation counters: {}", list.join(", "))
            })
        }
        ErrorCode::UNKNOWN_KIND => UnknownKinds::decode(&e.error_info, &opts).ok().map(|u| {
            let list: Vec<String> = u.unknown_kinds.iter().map(|k| k.0.to_string()).collect();
            format!("Kinds the peer does not know: {}", list.join(", "))
        }),
        _ => None,
    };
    let text = decoded.unwrap_or_else(|| String::from_utf8_lossy(&e.error_info).into_owned());
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// A failed request as an [`OpError`] (`after`: how long it took).
fn op_error(e: ClientError, after: Duration) -> OpError {
    match e {
        ClientError::Request(RequestError::Error(from, e)) => refused(from, &e),
        ClientError::Request(RequestError::Timeout) => OpError::Timeout { hop: None, after },
        ClientError::Request(RequestError::Unsendable(why)) => OpError::Unsendable(why),
        ClientError::Stopped => OpError::Stopped,
        ClientError::Unexpected { from, what } => OpError::Unexpected {
            from,
            what,
            expected: "answer",
        },
        ClientError::Refused(why) => OpError::Unsendable(why),
    }
}

/// The name of a body's method, for messages.
fn body_name(body: &MessageBody) -> String {
    body.code()
        .name()
        .map(str::to_string)
        .unwrap_or_else(|| format!("message code {}", body.code()))
}

/// A handle to a running node (see the module documentation).
#[derive(Clone, Debug)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
}

impl NodeHandle {
    pub(crate) fn new(tx: mpsc::Sender<Command>) -> Self {
        NodeHandle { tx }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)
    }

    /// Sends a request to `destination` (a destination list, RFC 6940 §6.2.1) and waits
    /// for its answer; the core retransmits it and gives up after the request lifetime.
    pub async fn request(
        &self,
        destination: Vec<Destination>,
        body: MessageBody,
    ) -> Result<(NodeId, MessageBody), ClientError> {
        self.request_with_ttl(destination, body, None).await
    }

    /// [`NodeHandle::request`] with a TTL below `initial-ttl` (§6.3.2).
    pub async fn request_with_ttl(
        &self,
        destination: Vec<Destination>,
        body: MessageBody,
        ttl: Option<u8>,
    ) -> Result<(NodeId, MessageBody), ClientError> {
        self.call(|reply| Command::Request {
            destination,
            body,
            ttl,
            reply,
        })
        .await?
        .map_err(ClientError::Request)
    }

    /// The node's state.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        self.call(|reply| Command::Snapshot { reply }).await
    }

    /// The Resource-ID of a resource name under the overlay's hash (§5.2, §10.2).
    pub async fn resource_id(&self, name: &[u8]) -> Result<ResourceId, ClientError> {
        let name = name.to_vec();
        self.call(|reply| Command::ResourceId { name, reply }).await
    }

    /// TLS configurations for AppAttach application flows (RFC 6940 §6.5.2) under the
    /// configuration in force; `None` when the node's links have no certificates.
    pub async fn app_flow_tls(
        &self,
    ) -> Result<Option<reload_proto::link::AppFlowTls>, ClientError> {
        self.call(|reply| Command::AppFlowTls { reply }).await
    }

    /// Starts an application flow over ICE for `application` (RFC 6940 §6.5.2): the
    /// AppAttach body to send, carrying our ICE credentials and candidates; the flow's
    /// events arrive on `events`. [`AppFlowError::NotIce`] in a No-ICE overlay.
    pub async fn app_offer(
        &self,
        application: u16,
        peer: Option<NodeId>,
        events: mpsc::Sender<AppFlowEvent>,
    ) -> Result<Result<(AppFlowId, AppAttach), AppFlowError>, ClientError> {
        self.call(|reply| Command::AppOffer {
            application,
            peer,
            events,
            reply,
        })
        .await
    }

    /// `from` answered the AppAttach of `flow`: ICE checks start.
    pub async fn app_answered(
        &self,
        flow: AppFlowId,
        from: NodeId,
        answer: AppAttach,
    ) -> Result<(), ClientError> {
        self.tx
            .send(Command::AppAnswered { flow, from, answer })
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Answers an AppAttach from `requester` with a new flow over ICE: the answer body
    /// (or the error to answer with); the flow's events arrive on `events`.
    pub async fn app_answer(
        &self,
        requester: NodeId,
        request: AppAttach,
        events: mpsc::Sender<AppFlowEvent>,
    ) -> Result<Result<(AppFlowId, AppAttach), ErrorResponse>, ClientError> {
        self.call(|reply| Command::AppAnswer {
            requester,
            request,
            events,
            reply,
        })
        .await
    }

    /// Sends one message on an open application flow (one DTLS record).
    pub async fn app_send(&self, flow: AppFlowId, data: Bytes) -> Result<(), ClientError> {
        self.tx
            .send(Command::AppSend { flow, data })
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Closes an application flow, without waiting (usable from `Drop`).
    pub fn app_close(&self, flow: AppFlowId) {
        let tx = self.tx.clone();
        if let Err(mpsc::error::TrySendError::Full(cmd)) = tx.try_send(Command::AppClose { flow })
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = tx.send(cmd).await;
            });
        }
    }

    /// Advertises this peer as a TURN server reachable at `server` (RFC 6940 §9): a
    /// TURN-SERVICE record per turn-density iteration, each for `lifetime` seconds. The
    /// Stores' answers, in order (none when the overlay has no TURN-SERVICE or its
    /// turn-density is 0).
    pub async fn advertise_turn(
        &self,
        server: std::net::SocketAddr,
        lifetime: u32,
    ) -> Result<Vec<Answer>, ClientError> {
        let pending = self
            .call(|reply| Command::AdvertiseTurn {
                server,
                lifetime,
                reply,
            })
            .await?
            .map_err(ClientError::Request)?;
        let mut out = Vec::with_capacity(pending.len());
        for rx in pending {
            out.push(rx.await.map_err(|_| ClientError::Stopped)?);
        }
        Ok(out)
    }

    /// Allocates relayed candidates on `server` from now on (RFC 6940 §9).
    pub async fn add_turn_server(
        &self,
        server: reload_proto::node::TurnServer,
    ) -> Result<(), ClientError> {
        self.tx
            .send(Command::AddTurnServer { server })
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Serves requests with these message codes: each arrives on the returned
    /// [`Requests`] and must be answered (the core answers Error_Request_Timeout for those
    /// not answered by their deadline). Refused if another caller serves one of them.
    /// Dropping the [`Requests`] stops serving.
    pub async fn serve(&self, codes: &[MessageCode]) -> Result<Requests, ClientError> {
        let (tx, rx) = mpsc::channel(256);
        let codes = codes.to_vec();
        self.call(|reply| Command::Serve {
            codes,
            requests: tx,
            reply,
        })
        .await?
        .map_err(ClientError::Refused)?;
        Ok(Requests {
            rx,
            handle: self.clone(),
        })
    }

    /// Asks the node to leave the overlay and stop.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }

    /// Sends one Ping (TTL `ttl`, or `initial-ttl`); the answer and the round-trip time.
    async fn ping_raw(
        &self,
        destination: Vec<Destination>,
        ttl: Option<u8>,
    ) -> Result<(Answer, Duration), OpError> {
        let t0 = Instant::now();
        let body = MessageBody::PingReq(PingReq::default());
        match self.request_with_ttl(destination, body, ttl).await {
            Ok(a) => Ok((Ok(a), t0.elapsed())),
            Err(ClientError::Request(RequestError::Unsendable(why))) => {
                Err(OpError::Unsendable(why))
            }
            Err(ClientError::Request(e)) => Ok((Err(e), t0.elapsed())),
            Err(_) => Err(OpError::Stopped),
        }
    }

    /// Pings `destination` (§6.5.3): who answered, and the round-trip time.
    pub async fn ping(&self, destination: Vec<Destination>) -> Result<(NodeId, Duration), OpError> {
        match self.ping_raw(destination, None).await? {
            (Ok((from, MessageBody::PingAns(_))), rtt) => Ok((from, rtt)),
            (Ok((from, body)), _) => Err(OpError::Unexpected {
                from,
                what: body_name(&body),
                expected: "PingAns",
            }),
            (Err(RequestError::Error(from, e)), _) => Err(refused(from, &e)),
            (Err(_), rtt) => Err(OpError::Timeout {
                hop: None,
                after: rtt,
            }),
        }
    }

    /// Traces the path to `destination` with Pings of TTL 0, 1, … `initial-ttl`: every hop
    /// where the TTL runs out answers Error_TTL_Exceeded (RFC 6940 §6.3.2), the target
    /// answers the Ping. `on_hop` sees each hop as it is found.
    pub async fn trace(
        &self,
        destination: Vec<Destination>,
        mut on_hop: impl FnMut(&Hop),
    ) -> Result<Vec<Hop>, OpError> {
        let initial_ttl = self
            .snapshot()
            .await
            .map_err(|_| OpError::Stopped)?
            .initial_ttl;
        let mut hops = Vec::new();
        for ttl in 0..=initial_ttl {
            let number = ttl.saturating_add(1);
            let (answer, rtt) = self.ping_raw(destination.clone(), Some(ttl)).await?;
            let hop = match answer {
                Ok((node, MessageBody::PingAns(_))) => Hop {
                    number,
                    node,
                    rtt,
                    target: true,
                },
                Ok((from, body)) => {
                    return Err(OpError::Unexpected {
                        from,
                        what: body_name(&body),
                        expected: "PingAns",
                    });
                }
                Err(RequestError::Error(node, e)) if e.error_code == ErrorCode::TTL_EXCEEDED => {
                    Hop {
                        number,
                        node,
                        rtt,
                        target: false,
                    }
                }
                Err(RequestError::Error(from, e)) => return Err(refused(from, &e)),
                Err(_) => {
                    return Err(OpError::Timeout {
                        hop: Some(number),
                        after: rtt,
                    });
                }
            };
            on_hop(&hop);
            let done = hop.target;
            hops.push(hop);
            if done {
                return Ok(hops);
            }
        }
        Err(OpError::NotReached { initial_ttl })
    }

    // ---- storage (RFC 6940 §7.4) ----------------------------------------------------

    /// Stores `values` of `kind` at `resource` (§7.4.1): the node signs each (§7.1; its
    /// storage_time later than any it signed before) with `lifetime` seconds, and sends one
    /// Store (replica number 0, generation counter 0: no check) to the peer responsible.
    /// An array value with index 0xffffffff is appended (§7.4.1.1). The answer: who
    /// stored it, and the StoreAns (generation counter and replica set, §7.4.1.2).
    pub async fn store(
        &self,
        kind: KindId,
        resource: ResourceId,
        values: Vec<StoredDataValue>,
        lifetime: u32,
    ) -> Result<(NodeId, StoreAns), OpError> {
        let t0 = Instant::now();
        let answer = self
            .call(|reply| Command::Store {
                resource,
                kind,
                values,
                lifetime,
                reply,
            })
            .await
            .map_err(|e| op_error(e, t0.elapsed()))?
            .map_err(|e| op_error(ClientError::Request(e), t0.elapsed()))?;
        match answer {
            (from, MessageBody::StoreAns(a)) => Ok((from, a)),
            (from, body) => Err(OpError::Unexpected {
                from,
                what: body_name(&body),
                expected: "StoreAns",
            }),
        }
    }

    /// Fetches (§7.4.2) what `specifiers` select at `resource` from the peer responsible;
    /// every value returned was verified by the core (signature, certificate, the Kind's
    /// access policy, §7.4.2.2) — those that were not are in [`Fetched::rejected`].
    pub async fn fetch(
        &self,
        resource: ResourceId,
        specifiers: Vec<StoredDataSpecifier>,
    ) -> Result<Fetched, OpError> {
        let t0 = Instant::now();
        self.call(|reply| Command::Fetch {
            resource,
            specifiers,
            reply,
        })
        .await
        .map_err(|e| op_error(e, t0.elapsed()))?
        .map_err(|e| op_error(ClientError::Request(e), t0.elapsed()))
    }

    /// Stat (§7.4.3): the metadata of what `specifiers` select at `resource`.
    pub async fn stat(
        &self,
        resource: ResourceId,
        specifiers: Vec<StoredDataSpecifier>,
    ) -> Result<(NodeId, StatAns), OpError> {
        let body = MessageBody::StatReq(StatReq {
            resource: resource.clone(),
            specifiers,
        });
        match self.storage_request(resource, body).await? {
            (from, MessageBody::StatAns(a)) => Ok((from, a)),
            (from, body) => Err(OpError::Unexpected {
                from,
                what: body_name(&body),
                expected: "StatAns",
            }),
        }
    }

    /// Find (§7.4.4): for each Kind, the Resource-ID at or after `resource` (clockwise,
    /// among those its responsible peer holds) with values of that Kind.
    pub async fn find(
        &self,
        resource: ResourceId,
        kinds: Vec<KindId>,
    ) -> Result<(NodeId, FindAns), OpError> {
        let body = MessageBody::FindReq(FindReq {
            resource: resource.clone(),
            kinds,
        });
        match self.storage_request(resource, body).await? {
            (from, MessageBody::FindAns(a)) => Ok((from, a)),
            (from, body) => Err(OpError::Unexpected {
                from,
                what: body_name(&body),
                expected: "FindAns",
            }),
        }
    }

    async fn storage_request(
        &self,
        resource: ResourceId,
        body: MessageBody,
    ) -> Result<(NodeId, MessageBody), OpError> {
        let t0 = Instant::now();
        self.request(vec![Destination::Resource(resource)], body)
            .await
            .map_err(|e| op_error(e, t0.elapsed()))
    }
}

/// Requests for a served method ([`NodeHandle::serve`]).
#[derive(Debug)]
pub struct Requests {
    rx: mpsc::Receiver<InboundRequest>,
    handle: NodeHandle,
}

impl Requests {
    /// The next request; `None` once the node stopped.
    pub async fn next(&mut self) -> Option<IncomingRequest> {
        let request = self.rx.recv().await?;
        Some(IncomingRequest {
            request,
            tx: self.handle.tx.clone(),
        })
    }
}

/// One request to answer.
#[derive(Debug)]
pub struct IncomingRequest {
    request: InboundRequest,
    tx: mpsc::Sender<Command>,
}

impl IncomingRequest {
    /// Everything known about the request.
    pub fn request(&self) -> &InboundRequest {
        &self.request
    }

    pub fn body(&self) -> &MessageBody {
        &self.request.body
    }

    /// The verified signer, with its certificate (user name, Node-IDs).
    pub fn signer(&self) -> &VerifiedSigner {
        &self.request.signer
    }

    /// Answers with a body or any RELOAD error. Answers after the deadline are dropped
    /// (the core has answered Error_Request_Timeout).
    pub async fn answer(self, answer: Result<MessageBody, ErrorResponse>) {
        let cmd = Command::Respond {
            id: self.request.id,
            answer,
        };
        let _ = self.tx.send(cmd).await;
    }
}
