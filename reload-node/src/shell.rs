//! The tokio shell: moves bytes between sockets and the sans-IO [`Node`] core and feeds
//! it time. It makes no protocol decision: which bytes belong to which link, which new
//! connections and associations are admitted and when a link is closed are the core's
//! (its endpoint, `reload_proto::node`); the shell accepts and closes sockets and reports
//! what happened on them.
//!
//! - TCP (TLS-TCP-FH-NO-ICE): a listener task per TCP address; each connection the core
//!   admits gets a reader task and a writer task; every chunk the core transmits is written
//!   on its own (with `TCP_NODELAY`), so one framed message travels per TCP segment. When
//!   the core closes a stream, its reader stops and its writer finishes writing and shuts
//!   the socket down: nothing of it stays open. A peer that does not read fills the
//!   writer's queue; the core hears it as [`StreamEvent::WriteBlocked`].
//! - UDP (DTLS-UDP-SR-NO-ICE): a receive task per socket; every datagram goes to the core
//!   with its local and remote address.
//! - Timers: one `sleep_until` on the core's `poll_timeout`.
//! - The application: a [`NodeHandle`] (requests, state, serving usages' methods).
//! - Shutdown: on the signal (or [`NodeHandle::shutdown`]) the core sends its Leave
//!   messages (RFC 6940 §6.4.2.2), the shell waits for their answers (at most `linger`),
//!   closes every link with close_notify, lets the writers finish and the readers drain
//!   until each peer has closed too (both bounded), so that no connection ends in a reset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_proto::link::TransportKind;
use reload_proto::node::{
    AppFlowEvent, AppFlowId, Event, Fetched, Node, RequestError, StreamEvent, StreamId, Transport,
};
use reload_wire::link::OverlayLinkType;
use reload_wire::message::{ErrorCode, ErrorResponse, MessageCode};
use reload_wire::storage::{KindValues, StoreKindData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::{Answer, Command, NodeHandle, Snapshot};

/// Chunks queued for one TCP connection's writer before the core hears the peer does not
/// read.
const WRITE_QUEUE: usize = 256;

/// What the socket tasks tell the shell's task.
#[derive(Debug)]
enum Io {
    Accepted {
        stream: TcpStream,
        local: SocketAddr,
        remote: SocketAddr,
    },
    Connected {
        stream: StreamId,
        socket: TcpStream,
    },
    Stream {
        stream: StreamId,
        event: StreamEvent,
    },
    Datagram {
        local: SocketAddr,
        remote: SocketAddr,
        data: Bytes,
    },
}

/// Application sockets bound beside each ICE socket by default (AppAttach over ICE,
/// RFC 6940 §6.5.2): a flow takes one, and a socket carries at most one flow to each
/// node, so this many flows may run between two nodes at once.
pub const DEFAULT_APP_SOCKETS: usize = 4;

/// Sockets the shell serves.
#[derive(Debug, Default)]
pub struct Listeners {
    pub tcp: Vec<TcpListener>,
    pub udp: Vec<UdpSocket>,
    /// UDP sockets for application flows over ICE (`NodeSettings::app_sockets`).
    pub app: Vec<UdpSocket>,
}

impl Listeners {
    /// Binds the listen addresses of the node's settings: TCP for TLS links, UDP for DTLS;
    /// beside an ICE (DTLS-UDP-SR) socket, [`DEFAULT_APP_SOCKETS`] application sockets on
    /// the same IP address, ports chosen by the system.
    pub async fn bind(listen: &[(OverlayLinkType, SocketAddr)]) -> std::io::Result<Self> {
        Self::bind_with(listen, DEFAULT_APP_SOCKETS, None).await
    }

    /// [`Listeners::bind`] with `app_sockets` application sockets beside each ICE socket,
    /// on ports `first_app_port`, `first_app_port + 1`, … when given.
    pub async fn bind_with(
        listen: &[(OverlayLinkType, SocketAddr)],
        app_sockets: usize,
        first_app_port: Option<u16>,
    ) -> std::io::Result<Self> {
        let mut l = Listeners::default();
        let mut next_port = first_app_port;
        for (t, addr) in listen {
            match TransportKind::of(*t) {
                Some(TransportKind::Stream) => l.tcp.push(TcpListener::bind(addr).await?),
                Some(TransportKind::Datagram) => l.udp.push(UdpSocket::bind(addr).await?),
                None => {}
            }
            if *t == OverlayLinkType::DTLS_UDP_SR {
                for _ in 0..app_sockets {
                    let port = next_port.unwrap_or(0);
                    let at = SocketAddr::new(addr.ip(), port);
                    let sock = UdpSocket::bind(at).await.map_err(|e| {
                        std::io::Error::new(e.kind(), format!("application socket {at}: {e}"))
                    })?;
                    l.app.push(sock);
                    next_port = next_port.map(|p| p.wrapping_add(1));
                }
            }
        }
        Ok(l)
    }

    /// The overlay listeners' bound addresses (TCP, then UDP): with port 0 in the listen
    /// addresses, the ports the system chose.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let tcp = self.tcp.iter().filter_map(|l| l.local_addr().ok());
        tcp.chain(self.udp.iter().filter_map(|s| s.local_addr().ok()))
            .collect()
    }

    /// The application sockets' addresses (for `PeerOptions::app_sockets`).
    pub fn app_addrs(&self) -> Vec<SocketAddr> {
        self.app
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

/// Something the operator may want to observe while the shell runs (logs, a status file).
pub type EventSink = Box<dyn FnMut(&Node, &Event) + Send>;

/// How long a closed connection's reader keeps draining (discarding) what the peer still
/// sends — its close_notify and FIN — so that the socket closes without a reset.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// The tasks of one TCP connection: dropping it closes the connection (the writer writes
/// what is queued and shuts its side down; the reader drains for at most
/// [`CLOSE_DRAIN`], then the socket is gone).
#[derive(Debug)]
struct Connection {
    writer: mpsc::Sender<Bytes>,
    _close: oneshot::Sender<()>,
}

/// The state of a running shell.
struct Shell {
    node: Node,
    io: mpsc::Sender<Io>,
    connections: HashMap<StreamId, Connection>,
    connecting: HashMap<StreamId, JoinHandle<()>>,
    writers: Vec<JoinHandle<()>>,
    /// Reader tasks: at shutdown each drains until its peer closes too (bounded), so that
    /// the process does not exit under a connection still receiving (a reset).
    readers: Vec<JoinHandle<()>>,
    udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// Answers awaited by handles, by transaction ID.
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    /// Fetch answers awaited by handles (verified by the core), by transaction ID.
    fetching: HashMap<u64, oneshot::Sender<Result<Fetched, RequestError>>>,
    /// Who serves which method.
    servers: HashMap<MessageCode, mpsc::Sender<reload_proto::node::InboundRequest>>,
    /// Where each application flow's events go.
    app_flows: HashMap<AppFlowId, mpsc::Sender<AppFlowEvent>>,
    sink: EventSink,
}

/// A running node: its handle, and the task that runs it (which returns the core when
/// the node has stopped).
#[derive(Debug)]
pub struct Running {
    pub handle: NodeHandle,
    pub task: JoinHandle<Node>,
}

/// Starts running `node` on `listeners` in the current tokio runtime; it stops when
/// `shutdown` resolves or [`NodeHandle::shutdown`] is called (then it leaves the overlay
/// and flushes, at most `linger`).
pub fn spawn(
    node: Node,
    listeners: Listeners,
    sink: EventSink,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    linger: Duration,
) -> Running {
    let (tx, rx) = mpsc::channel(64);
    let handle = NodeHandle::new(tx);
    let task = tokio::spawn(run(node, listeners, sink, shutdown, linger, rx));
    Running { handle, task }
}

/// Runs `node` until `shutdown` resolves or a [`Command::Shutdown`] arrives; then leaves
/// the overlay and returns after flushing (at most `linger`).
async fn run(
    node: Node,
    listeners: Listeners,
    sink: EventSink,
    shutdown: impl std::future::Future<Output = ()>,
    linger: Duration,
    mut commands: mpsc::Receiver<Command>,
) -> Node {
    let (io, mut inputs) = mpsc::channel::<Io>(1024);
    let mut shell = Shell {
        node,
        io: io.clone(),
        connections: HashMap::new(),
        connecting: HashMap::new(),
        writers: Vec::new(),
        readers: Vec::new(),
        udp: HashMap::new(),
        waiting: HashMap::new(),
        fetching: HashMap::new(),
        servers: HashMap::new(),
        app_flows: HashMap::new(),
        sink,
    };
    let mut background = Vec::new();
    for listener in listeners.tcp {
        background.push(tokio::spawn(accept_loop(listener, io.clone())));
    }
    for sock in listeners.udp.into_iter().chain(listeners.app) {
        let Ok(local) = sock.local_addr() else {
            continue;
        };
        let sock = Arc::new(sock);
        shell.udp.insert(local, sock.clone());
        background.push(tokio::spawn(receive_loop(sock, local, io.clone())));
    }
    drop(io);

    tokio::pin!(shutdown);
    let mut leaving: Option<tokio::time::Instant> = None;
    loop {
        shell.flush();
        if leaving.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
            break;
        }
        if leaving.is_some() && shell.node.pending_requests() == 0 {
            if shell.node.topology().is_joined() {
                tracing::info!("every Leave answered");
            }
            break;
        }
        let timeout = shell.node.poll_timeout();
        let sleep = async {
            match timeout {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending::<()>().await,
            }
        };
        let linger_end = async {
            match leaving {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        let mut stop = false;
        tokio::select! {
            _ = &mut shutdown, if leaving.is_none() => stop = true,
            _ = linger_end => break,
            cmd = commands.recv(), if leaving.is_none() => match cmd {
                Some(Command::Shutdown) => stop = true,
                Some(cmd) => shell.command(cmd),
                None => {}
            },
            _ = sleep => shell.node.handle_timeout(Instant::now()),
            input = inputs.recv() => match input {
                Some(input) => shell.input(input),
                None => break,
            },
        }
        if stop {
            if shell.node.topology().is_joined() {
                tracing::info!("shutting down: leaving the overlay");
            } else {
                tracing::info!("shutting down (not in the overlay: nothing to leave)");
            }
            shell.node.leave(Instant::now());
            leaving = Some(tokio::time::Instant::now() + linger);
        }
    }
    // Close every link (close_notify), hand the alerts to the writers, and let them
    // finish writing (bounded).
    shell.node.close_all_links(Instant::now());
    shell.flush();
    for task in background {
        task.abort();
    }
    for (_, c) in shell.connecting.drain() {
        c.abort();
    }
    shell.connections.clear();
    let writers = std::mem::take(&mut shell.writers);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for t in writers {
            let _ = t.await;
        }
    })
    .await;
    // Each reader reads until its peer has closed too (its close_notify and FIN after
    // ours), at most CLOSE_DRAIN: the sockets then close without a reset.
    let readers = std::mem::take(&mut shell.readers);
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        for t in readers {
            let _ = t.await;
        }
    })
    .await;
    shell.node
}

/// Accepts TCP connections; on errors (e.g. out of file descriptors) it backs off instead
/// of spinning.
async fn accept_loop(listener: TcpListener, io: mpsc::Sender<Io>) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                backoff = Duration::from_millis(10);
                let input = Io::Accepted {
                    stream,
                    local,
                    remote,
                };
                if io.send(input).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("accept on {local} failed: {e}; pausing {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Receives datagrams on one UDP socket.
async fn receive_loop(sock: Arc<UdpSocket>, local: SocketAddr, io: mpsc::Sender<Io>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, remote)) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                let input = Io::Datagram {
                    local,
                    remote,
                    data,
                };
                if io.send(input).await.is_err() {
                    return;
                }
            }
            // ICMP port unreachable and the like, reported on the next receive.
            Err(e) => tracing::debug!("udp receive on {local}: {e}"),
        }
    }
}

impl Shell {
    /// One thing that happened on a socket.
    fn input(&mut self, input: Io) {
        let now = Instant::now();
        match input {
            Io::Accepted {
                stream,
                local,
                remote,
            } => match self.node.accept_stream(now, local, remote) {
                Ok(id) => {
                    tracing::debug!(%remote, ?id, "accepted a TCP connection");
                    self.attach(id, stream);
                }
                // Dropping the socket closes it.
                Err(why) => tracing::debug!(%remote, "refused a TCP connection: {why}"),
            },
            Io::Connected { stream, socket } => {
                if self.connecting.remove(&stream).is_none() {
                    // The core gave up on it meanwhile: dropping the socket closes it.
                    return;
                }
                self.attach(stream, socket);
                self.node.handle_stream(now, stream, StreamEvent::Connected);
            }
            Io::Stream { stream, event } => {
                if matches!(event, StreamEvent::Closed { .. }) {
                    self.connecting.remove(&stream);
                    self.connections.remove(&stream);
                }
                self.node.handle_stream(now, stream, event);
            }
            Io::Datagram {
                local,
                remote,
                data,
            } => self.node.handle_datagram(now, local, remote, data),
        }
    }

    /// Reader and writer tasks for a TCP connection of `stream`.
    fn attach(&mut self, stream: StreamId, socket: TcpStream) {
        let _ = socket.set_nodelay(true);
        let (mut r, mut w) = socket.into_split();
        let (wtx, mut wrx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let (close_tx, mut close_rx) = oneshot::channel::<()>();
        let io = self.io.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16384];
            loop {
                let read = tokio::select! {
                    r = r.read(&mut buf) => r,
                    _ = &mut close_rx => break,
                };
                let event = match read {
                    Ok(0) => StreamEvent::Closed { error: None },
                    Err(e) => StreamEvent::Closed {
                        error: Some(e.to_string()),
                    },
                    Ok(n) => StreamEvent::Data(Bytes::copy_from_slice(&buf[..n])),
                };
                let last = matches!(event, StreamEvent::Closed { .. });
                if io.send(Io::Stream { stream, event }).await.is_err() || last {
                    return;
                }
            }
            // Closed by the core: read what the peer still sends until it closes too.
            let _ = tokio::time::timeout(CLOSE_DRAIN, async {
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
        let writer = tokio::spawn(async move {
            while let Some(chunk) = wrx.recv().await {
                // One chunk = one framed message in its own TLS record(s): written alone.
                if w.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = w.shutdown().await;
        });
        self.writers.retain(|t| !t.is_finished());
        self.writers.push(writer);
        self.readers.retain(|t| !t.is_finished());
        self.readers.push(reader);
        self.connections.insert(
            stream,
            Connection {
                writer: wtx,
                _close: close_tx,
            },
        );
    }

    /// Hands the core's transmits to the sockets and acts on its events, until it has
    /// nothing more.
    fn flush(&mut self) {
        loop {
            let mut progress = false;
            while let Some(t) = self.node.poll_transmit() {
                progress = true;
                self.transmit(t.transport, t.data);
            }
            while let Some(e) = self.node.poll_event() {
                progress = true;
                self.event(e);
            }
            if !progress {
                return;
            }
        }
    }

    fn transmit(&mut self, transport: Transport, data: Bytes) {
        match transport {
            Transport::Stream(stream) => {
                let Some(c) = self.connections.get(&stream) else {
                    return;
                };
                if c.writer.try_send(data).is_err() {
                    let now = Instant::now();
                    self.node
                        .handle_stream(now, stream, StreamEvent::WriteBlocked);
                }
            }
            Transport::Datagram { local, remote } => {
                if let Some(sock) = self.udp.get(&local) {
                    // UDP may drop; the link's own reliability covers it.
                    let _ = sock.try_send_to(&data, remote);
                }
            }
        }
    }

    fn event(&mut self, e: Event) {
        match &e {
            Event::OpenStream { stream, remote } => {
                let (stream, remote, io) = (*stream, *remote, self.io.clone());
                // No timeout here: the core closes the stream when the link's handshake
                // deadline passes.
                let task = tokio::spawn(async move {
                    let input = match TcpStream::connect(remote).await {
                        Ok(socket) => Io::Connected { stream, socket },
                        Err(e) => Io::Stream {
                            stream,
                            event: StreamEvent::Closed {
                                error: Some(format!("cannot connect to {remote}: {e}")),
                            },
                        },
                    };
                    let _ = io.send(input).await;
                });
                self.connecting.insert(stream, task);
            }
            Event::CloseStream { stream } => {
                if let Some(task) = self.connecting.remove(stream) {
                    task.abort();
                }
                // The writer writes what is queued, then shuts its side down; the reader
                // stops passing data on and drains until the peer closes (bounded).
                self.connections.remove(stream);
            }
            Event::Response {
                transaction_id,
                result,
            } => {
                if let Some(reply) = self.waiting.remove(transaction_id) {
                    let _ = reply.send(result.clone());
                }
            }
            Event::Fetched {
                transaction_id,
                result,
            } => {
                if let Some(reply) = self.fetching.remove(transaction_id) {
                    let _ = reply.send(result.clone());
                }
            }
            Event::Request(req) => self.hand_to_server(req.clone()),
            Event::AppFlow(ev) => self.app_flow_event(ev.clone()),
            _ => {}
        }
        (self.sink)(&self.node, &e);
    }

    /// An application flow's event goes to its owner; a flow nobody listens to closes.
    fn app_flow_event(&mut self, ev: AppFlowEvent) {
        let flow = match &ev {
            AppFlowEvent::Open { flow, .. }
            | AppFlowEvent::Data { flow, .. }
            | AppFlowEvent::Closed { flow, .. } => *flow,
        };
        let closed = matches!(ev, AppFlowEvent::Closed { .. });
        let Some(tx) = self.app_flows.get(&flow) else {
            if !closed {
                self.node.app_close(Instant::now(), flow);
            }
            return;
        };
        match tx.try_send(ev) {
            Ok(()) => {}
            // A full queue drops data (a datagram flow may); opening and closing arrive.
            Err(mpsc::error::TrySendError::Full(ev)) => {
                if !matches!(ev, AppFlowEvent::Data { .. }) {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(ev).await;
                    });
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.app_flows.remove(&flow);
                self.node.app_close(Instant::now(), flow);
                return;
            }
        }
        if closed {
            self.app_flows.remove(&flow);
        }
    }

    /// A request for a usage goes to whoever serves its method.
    fn hand_to_server(&mut self, req: reload_proto::node::InboundRequest) {
        let code = req.body.code();
        let (id, now) = (req.id, Instant::now());
        let Some(server) = self.servers.get(&code) else {
            // Nobody serves it any more (the core still thought so).
            self.node.stop_serving(code);
            let e = ErrorResponse::new(ErrorCode::FORBIDDEN, "no usage serves this method");
            return self.node.respond(now, id, Err(e));
        };
        match server.try_send(req) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let e = ErrorResponse::new(ErrorCode::IN_PROGRESS, "the usage is busy");
                self.node.respond(now, id, Err(e));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.servers.remove(&code);
                self.node.stop_serving(code);
                let e = ErrorResponse::new(ErrorCode::FORBIDDEN, "no usage serves this method");
                self.node.respond(now, id, Err(e));
            }
        }
    }

    /// A command from a [`NodeHandle`].
    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Request {
                destination,
                body,
                ttl,
                reply,
            } => {
                let sent = match ttl {
                    Some(ttl) => self.node.send_request_with_ttl(now, destination, body, ttl),
                    None => self.node.send_request(now, destination, body),
                };
                match sent {
                    Ok(tx) => {
                        self.waiting.retain(|_, r| !r.is_closed());
                        self.waiting.insert(tx, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(snapshot(&self.node));
            }
            Command::ResourceId { name, reply } => {
                let _ = reply.send(self.node.topology().resource_id(&name));
            }
            Command::AppFlowTls { reply } => {
                let _ = reply.send(self.node.app_flow_tls());
            }
            Command::Serve {
                codes,
                requests,
                reply,
            } => {
                self.servers.retain(|_, s| !s.is_closed());
                if let Some(c) = codes.iter().find(|c| self.servers.contains_key(c)) {
                    let name = c.name().unwrap_or("that method");
                    let _ = reply.send(Err(format!("{name} is served already")));
                    return;
                }
                for c in codes {
                    self.node.serve(c);
                    self.servers.insert(c, requests.clone());
                }
                let _ = reply.send(Ok(()));
            }
            Command::Respond { id, answer } => self.node.respond(now, id, answer),
            Command::Store {
                resource,
                kind,
                values,
                lifetime,
                reply,
            } => {
                let signed: Result<Vec<_>, RequestError> = values
                    .into_iter()
                    .map(|v| self.node.sign_value(now, &resource, kind, v, lifetime))
                    .collect();
                let sent = signed.and_then(|values| {
                    let kind_data = vec![StoreKindData {
                        kind,
                        generation_counter: 0,
                        values: KindValues::Decoded(values),
                    }];
                    self.node.store(now, resource, kind_data)
                });
                match sent {
                    Ok(tx) => {
                        self.waiting.retain(|_, r| !r.is_closed());
                        self.waiting.insert(tx, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Fetch {
                resource,
                specifiers,
                reply,
            } => match self.node.fetch(now, resource, specifiers) {
                Ok(tx) => {
                    self.fetching.retain(|_, r| !r.is_closed());
                    self.fetching.insert(tx, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::AppOffer {
                application,
                peer,
                events,
                reply,
            } => {
                let r = self.node.app_offer(now, application, peer);
                if let Ok((flow, _)) = &r {
                    self.app_flows.insert(*flow, events);
                }
                let _ = reply.send(r);
            }
            Command::AppAnswered { flow, from, answer } => {
                self.node.app_answered(now, flow, from, &answer)
            }
            Command::AppAnswer {
                requester,
                request,
                events,
                reply,
            } => {
                let r = self.node.app_answer(now, requester, &request);
                if let Ok((flow, _)) = &r {
                    self.app_flows.insert(*flow, events);
                }
                let _ = reply.send(r);
            }
            Command::AppSend { flow, data } => {
                if let Err(e) = self.node.app_send(now, flow, data) {
                    tracing::debug!("{flow}: {e}");
                }
            }
            Command::AppClose { flow } => {
                self.app_flows.remove(&flow);
                self.node.app_close(now, flow);
            }
            Command::AdvertiseTurn {
                server,
                lifetime,
                reply,
            } => {
                let r = self.node.advertise_turn(now, server, lifetime).map(|txs| {
                    self.waiting.retain(|_, r| !r.is_closed());
                    txs.into_iter()
                        .map(|tx| {
                            let (answer, rx) = oneshot::channel();
                            self.waiting.insert(tx, answer);
                            rx
                        })
                        .collect()
                });
                let _ = reply.send(r);
            }
            Command::AddTurnServer { server } => self.node.add_turn_server(now, server),
            Command::Shutdown => {}
        }
    }
}

/// The node's state, for handles.
pub fn snapshot(node: &Node) -> Snapshot {
    let t = node.topology();
    let mut connected = node.connected_peers();
    connected.sort();
    Snapshot {
        node_id: node.node_id(),
        overlay: node.overlay().name().to_string(),
        joined: t.is_joined(),
        neighbors: t
            .neighbors()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        routing_table: t.routing_table(),
        connected,
        links: node.links(),
        initial_ttl: node.overlay().initial_ttl(),
        sequence: node.overlay().sequence(),
        stats: node.stats().clone(),
        stored_values: node.storage().len(),
        stored_bytes: node.storage().bytes(),
        decode: node.overlay().decode().clone(),
        reflexive: node.reflexive_addresses(),
        storage: node.storage().describe(),
        ice: node.uses_ice(),
        app_flows: node.app_flows(),
        turn_servers: node.turn_servers().iter().map(|t| t.addr).collect(),
        sip_domains: node.overlay().sip_domains().clone(),
    }
}
