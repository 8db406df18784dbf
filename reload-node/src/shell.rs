//! The tokio shell: moves bytes between sockets and the sans-IO [`Node`] core, and feeds
//! it time. It makes no protocol decision of its own.
//!
//! - TLS-TCP-FH-NO-ICE: a TCP listener; each connection gets a reader task and a writer
//!   task; every chunk the core transmits is written on its own (with `TCP_NODELAY`), so
//!   one framed message travels per TCP segment.
//! - DTLS-UDP-SR-NO-ICE: one UDP socket; a datagram from an unknown address opens a link.
//!   Datagrams are told apart by remote address only, so there is at most one DTLS
//!   association per remote address: a second one (the core asking to connect to an
//!   address that already has a link, or a new ClientHello from the address of an
//!   established association) is refused and logged, never mixed into the existing one.
//! - Timers: one `sleep_until` on the core's `poll_timeout`.
//! - Shutdown: on the signal the core sends its Leave messages (RFC 6940 §6.4.2.2), the
//!   shell flushes them and stops, bounded in time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reload_wire::link::OverlayLinkType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use reload_proto::node::{Event, LinkId, Node};

/// What the socket tasks tell the core's task.
#[derive(Debug)]
enum Input {
    Accepted {
        stream: TcpStream,
        remote: SocketAddr,
    },
    Connected {
        link: LinkId,
        stream: TcpStream,
    },
    ConnectFailed {
        link: LinkId,
        error: String,
    },
    Data {
        link: LinkId,
        data: Bytes,
    },
    Closed {
        link: LinkId,
    },
    Datagram {
        from: SocketAddr,
        data: Bytes,
    },
}

/// The DTLS associations on the one UDP socket. Datagrams carry no connection identifier,
/// so they are told apart by remote address: one established link per address, plus at
/// most one new handshake from that address (a peer that restarted on the same address,
/// RFC 6347 §4.2.8): its epoch-0 records go to the new link, the rest to the old one,
/// and once the new handshake completes the new link replaces the old.
#[derive(Debug, Default)]
struct UdpLinks {
    by_addr: HashMap<SocketAddr, LinkId>,
    by_link: HashMap<LinkId, SocketAddr>,
    /// A new handshake from an address whose association is established.
    successor: HashMap<SocketAddr, LinkId>,
    /// Links whose handshake completed ([`Event::LinkUp`]).
    up: HashSet<LinkId>,
}

/// Handshakes from new addresses in progress at once, at most (a flood of ClientHellos
/// from spoofed sources cannot make the core hold unbounded half-open links).
const MAX_DTLS_HANDSHAKES: usize = 256;

impl UdpLinks {
    /// Links not up yet.
    fn handshaking(&self) -> usize {
        self.by_link.len() - self.up.len()
    }

    /// Where a datagram from `from` goes: the established link, the successor handshake
    /// (epoch 0), or a new link for a ClientHello (`accept`).
    fn route(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        accept: impl FnOnce() -> Option<LinkId>,
    ) -> Option<LinkId> {
        let hello = reload_proto::link::is_client_hello(data);
        match self.by_addr.get(&from).copied() {
            Some(l)
                if self.up.contains(&l) && reload_proto::link::first_record_epoch_zero(data) =>
            {
                if let Some(n) = self.successor.get(&from) {
                    return Some(*n);
                }
                if !hello || self.handshaking() >= MAX_DTLS_HANDSHAKES {
                    return None;
                }
                tracing::info!(%from, old = ?l, "new DTLS handshake from {from} while an association with it exists (a restarted peer?): the old one stays until the new one completes");
                let n = accept()?;
                self.by_link.insert(n, from);
                self.successor.insert(from, n);
                Some(n)
            }
            Some(l) => Some(l),
            None if hello && self.handshaking() < MAX_DTLS_HANDSHAKES => {
                let n = accept()?;
                self.insert(n, from);
                Some(n)
            }
            // Not a handshake start from an unknown address: stray or spoofed.
            None => None,
        }
    }

    /// `link` completed its handshake. Returns the link it replaces at its address.
    fn set_up_replacing(&mut self, link: LinkId) -> Option<LinkId> {
        let addr = self.by_link.get(&link).copied()?;
        self.up.insert(link);
        if self.successor.get(&addr) == Some(&link) {
            self.successor.remove(&addr);
            return self.by_addr.insert(addr, link).filter(|old| *old != link);
        }
        None
    }

    fn insert(&mut self, link: LinkId, addr: SocketAddr) {
        self.by_addr.insert(addr, link);
        self.by_link.insert(link, addr);
    }

    fn link_at(&self, addr: &SocketAddr) -> Option<LinkId> {
        self.by_addr.get(addr).copied()
    }

    fn addr_of(&self, link: &LinkId) -> Option<SocketAddr> {
        self.by_link.get(link).copied()
    }

    /// Forgets a link the core closed or lost; its address is free again.
    fn remove(&mut self, link: &LinkId) {
        if let Some(a) = self.by_link.remove(link) {
            if self.by_addr.get(&a) == Some(link) {
                self.by_addr.remove(&a);
                // A successor handshake becomes the address's only link.
                if let Some(n) = self.successor.remove(&a) {
                    self.by_addr.insert(a, n);
                }
            } else if self.successor.get(&a) == Some(link) {
                self.successor.remove(&a);
            }
        }
        self.up.remove(link);
    }
}

/// Sockets the shell serves.
#[derive(Debug, Default)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub udp: Option<UdpSocket>,
}

impl Listeners {
    /// Binds the listen addresses of the node's settings.
    pub async fn bind(listen: &[(OverlayLinkType, SocketAddr)]) -> std::io::Result<Self> {
        let mut l = Listeners::default();
        for (t, addr) in listen {
            match *t {
                OverlayLinkType::TLS_TCP_FH_NO_ICE if l.tcp.is_none() => {
                    l.tcp = Some(TcpListener::bind(addr).await?)
                }
                OverlayLinkType::DTLS_UDP_SR_NO_ICE if l.udp.is_none() => {
                    l.udp = Some(UdpSocket::bind(addr).await?)
                }
                _ => {}
            }
        }
        Ok(l)
    }
}

/// Something the application may observe while the shell runs.
pub type EventSink = Box<dyn FnMut(&Node, &Event) + Send>;

/// What a running peer's neighbourhood looks like.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub node_id: reload_wire::NodeId,
    pub joined: bool,
    pub successors: Vec<reload_wire::NodeId>,
    pub predecessors: Vec<reload_wire::NodeId>,
    pub routing_table: Vec<reload_wire::NodeId>,
    pub connected: Vec<reload_wire::NodeId>,
    /// `initial-ttl` of the configuration in use (the longest path a trace may find).
    pub initial_ttl: u8,
}

/// The answer to a [`Control::Request`].
pub type Answer =
    Result<(reload_wire::NodeId, reload_wire::MessageBody), reload_proto::node::RequestError>;

/// Commands to a running peer.
#[derive(Debug)]
pub enum Control {
    /// Send a request and report its answer.
    Request {
        destination: Vec<reload_wire::Destination>,
        body: reload_wire::MessageBody,
        /// A TTL below `initial-ttl` (for a hop-by-hop trace), or `None`.
        ttl: Option<u8>,
        reply: tokio::sync::oneshot::Sender<Answer>,
    },
    /// Report the neighbourhood.
    Snapshot {
        reply: tokio::sync::oneshot::Sender<Snapshot>,
    },
}

fn snapshot(node: &Node) -> Snapshot {
    let t = node.topology();
    Snapshot {
        node_id: node.node_id(),
        joined: t.is_joined(),
        successors: t.successors(),
        predecessors: t.predecessors(),
        routing_table: t.routing_table(),
        connected: node.connected_peers(),
        initial_ttl: node.settings().initial_ttl,
    }
}

/// Runs `node` on real sockets until `shutdown` resolves; then leaves the overlay and
/// returns after flushing (at most `linger`).
pub async fn run(
    node: Node,
    listeners: Listeners,
    on_event: EventSink,
    shutdown: impl std::future::Future<Output = ()>,
    linger: Duration,
) -> Node {
    let (_keep, control) = mpsc::channel(1);
    run_with_control(node, listeners, on_event, shutdown, linger, control).await
}

/// [`run`], also obeying `control` commands.
pub async fn run_with_control(
    mut node: Node,
    listeners: Listeners,
    on_event: EventSink,
    shutdown: impl std::future::Future<Output = ()>,
    linger: Duration,
    mut control: mpsc::Receiver<Control>,
) -> Node {
    let waiting: HashMap<u64, tokio::sync::oneshot::Sender<Answer>> = HashMap::new();
    let (tx, mut rx) = mpsc::channel::<Input>(1024);
    let mut writers: HashMap<LinkId, mpsc::Sender<Bytes>> = HashMap::new();
    let mut dtls = UdpLinks::default();
    let udp = listeners.udp.map(std::sync::Arc::new);

    if let Some(listener) = listeners.tcp {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, remote)) => {
                        if tx.send(Input::Accepted { stream, remote }).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!("accept failed: {e}"),
                }
            }
        });
    }
    if let Some(sock) = udp.clone() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        let data = Bytes::copy_from_slice(&buf[..n]);
                        if tx.send(Input::Datagram { from, data }).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!("udp receive: {e}"),
                }
            }
        });
    }

    let mut user_sink = on_event;
    let waiting = std::sync::Arc::new(std::sync::Mutex::new(waiting));
    let w2 = waiting.clone();
    let mut on_event: EventSink = Box::new(move |n: &Node, e: &Event| {
        if let Event::Response {
            transaction_id,
            result,
        } = e
            && let Some(reply) = w2.lock().ok().and_then(|mut w| w.remove(transaction_id))
        {
            let _ = reply.send(result.clone());
        }
        user_sink(n, e);
    });
    tokio::pin!(shutdown);
    let mut leaving: Option<tokio::time::Instant> = None;
    let mut writer_tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        // Everything the core produced.
        flush(&mut node, &tx, &mut writers, &udp, &mut dtls, &mut on_event);
        if leaving.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
            break;
        }
        if leaving.is_some() && node.pending_requests() == 0 {
            tracing::info!("every Leave answered");
            break;
        }
        let timeout = node.poll_timeout();
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
        tokio::select! {
            _ = &mut shutdown, if leaving.is_none() => {
                tracing::info!("shutting down: leaving the overlay");
                node.leave(Instant::now());
                leaving = Some(tokio::time::Instant::now() + linger);
            }
            _ = linger_end => break,
            cmd = control.recv() => match cmd {
                Some(Control::Request { destination, body, ttl, reply }) => {
                    let now = Instant::now();
                    let tx = match ttl {
                        Some(ttl) => node.send_request_with_ttl(now, destination, body, ttl),
                        None => node.send_request(now, destination, body),
                    };
                    match tx {
                        Some(tx) => {
                            if let Ok(mut w) = waiting.lock() {
                                w.insert(tx, reply);
                            }
                        }
                        None => {
                            let _ = reply.send(Err(reload_proto::node::RequestError::Timeout));
                        }
                    }
                }
                Some(Control::Snapshot { reply }) => {
                    let _ = reply.send(snapshot(&node));
                }
                None => {}
            },
            _ = sleep => node.handle_timeout(Instant::now()),
            input = rx.recv() => {
                let Some(input) = input else { break };
                let now = Instant::now();
                match input {
                    Input::Accepted { stream, remote } => {
                        let _ = stream.set_nodelay(true);
                        match node.accept_transport(now, OverlayLinkType::TLS_TCP_FH_NO_ICE) {
                            Some(link) => {
                                tracing::debug!(%remote, ?link, "accepted TCP connection");
                                let (w, task) = spawn_stream(link, stream, tx.clone());
                                writers.insert(link, w);
                                writer_tasks.push(task);
                            }
                            None => tracing::warn!(%remote, "refused TCP connection"),
                        }
                    }
                    Input::Connected { link, stream } => {
                        let _ = stream.set_nodelay(true);
                        let (w, task) = spawn_stream(link, stream, tx.clone());
                        writers.insert(link, w);
                        writer_tasks.retain(|t| !t.is_finished());
                        writer_tasks.push(task);
                        node.transport_connected(now, link);
                    }
                    Input::ConnectFailed { link, error } => {
                        tracing::info!(?link, "connection failed: {error}");
                        node.transport_closed(now, link);
                    }
                    Input::Data { link, data } => node.handle_input(now, link, data),
                    Input::Closed { link } => {
                        writers.remove(&link);
                        node.transport_closed(now, link);
                    }
                    Input::Datagram { from, data } => {
                        let link = dtls.route(from, &data, || {
                            node.accept_transport(now, OverlayLinkType::DTLS_UDP_SR_NO_ICE)
                        });
                        if let Some(link) = link {
                            node.handle_input(now, link, data);
                        }
                    }
                }
            }
        }
    }
    // Close every link (close_notify), hand the alerts to the writers, and let them
    // finish writing (bounded).
    node.close_all_links(Instant::now());
    flush(&mut node, &tx, &mut writers, &udp, &mut dtls, &mut on_event);
    writers.clear();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for t in writer_tasks {
            let _ = t.await;
        }
    })
    .await;
    node
}

/// Hands the core's transmits to the sockets and acts on its events.
fn flush(
    node: &mut Node,
    tx: &mpsc::Sender<Input>,
    writers: &mut HashMap<LinkId, mpsc::Sender<Bytes>>,
    udp: &Option<std::sync::Arc<UdpSocket>>,
    dtls: &mut UdpLinks,
    on_event: &mut EventSink,
) {
    loop {
        let mut progress = false;
        while let Some(t) = node.poll_transmit() {
            progress = true;
            if let Some(w) = writers.get(&t.link) {
                if w.try_send(t.data).is_err() {
                    tracing::warn!(link = ?t.link, "write queue full: closing the link");
                    writers.remove(&t.link);
                }
            } else if let (Some(sock), Some(addr)) = (udp, dtls.addr_of(&t.link)) {
                let _ = sock.try_send_to(&t.data, addr);
            }
        }
        while let Some(e) = node.poll_event() {
            progress = true;
            match &e {
                Event::Connect {
                    link,
                    addr,
                    protocol,
                    ..
                } => match *protocol {
                    OverlayLinkType::TLS_TCP_FH_NO_ICE => {
                        let (link, addr, tx) = (*link, *addr, tx.clone());
                        tokio::spawn(async move {
                            let r = tokio::time::timeout(
                                Duration::from_secs(10),
                                TcpStream::connect(addr),
                            )
                            .await;
                            let msg = match r {
                                Ok(Ok(stream)) => Input::Connected { link, stream },
                                Ok(Err(e)) => Input::ConnectFailed {
                                    link,
                                    error: e.to_string(),
                                },
                                Err(_) => Input::ConnectFailed {
                                    link,
                                    error: "timed out".into(),
                                },
                            };
                            let _ = tx.send(msg).await;
                        });
                    }
                    _ if udp.is_some() => match dtls.link_at(addr) {
                        // One association per address: a second one would receive the
                        // first one's datagrams. The new link fails; the old one stays.
                        Some(existing) => {
                            tracing::warn!(new = ?link, ?existing, "refused a second DTLS association to {addr}: link {existing:?} already uses that address (UDP datagrams are told apart by address only)");
                            node.link_down(Instant::now(), *link);
                        }
                        None => {
                            // DTLS over our one UDP socket: the transport exists at once.
                            dtls.insert(*link, *addr);
                            node.transport_connected(Instant::now(), *link);
                        }
                    },
                    _ => {
                        tracing::warn!("no UDP socket for a DTLS link to {addr}");
                        node.transport_closed(Instant::now(), *link);
                    }
                },
                Event::Close { link } => {
                    writers.remove(link);
                    dtls.remove(link);
                }
                Event::LinkUp { link, .. } => {
                    if let Some(old) = dtls.set_up_replacing(*link) {
                        // The new association from that address replaces the old one
                        // (the core already closed it if it was the same peer).
                        tracing::info!(new = ?link, ?old, "DTLS association replaced");
                        dtls.remove(&old);
                        node.link_down(Instant::now(), old);
                    }
                }
                // The core forgot the link (also when it failed without a Close): its
                // address may carry a new association.
                Event::LinkDown { link, .. } => dtls.remove(link),
                _ => {}
            }
            on_event(node, &e);
        }
        if !progress {
            return;
        }
    }
}

/// Reader and writer tasks of one TCP connection.
fn spawn_stream(
    link: LinkId,
    stream: TcpStream,
    tx: mpsc::Sender<Input>,
) -> (mpsc::Sender<Bytes>, tokio::task::JoinHandle<()>) {
    let (mut r, mut w) = stream.into_split();
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(256);
    let rtx = tx.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16384];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = rtx.send(Input::Closed { link }).await;
                    return;
                }
                Ok(n) => {
                    if rtx
                        .send(Input::Data {
                            link,
                            data: Bytes::copy_from_slice(&buf[..n]),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
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
    (wtx, writer)
}
