//! `reload-node run`: one peer on real sockets, until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use reload_wire::link::OverlayLinkType;

use reload_node::peer::{PeerOptions, StorageMode, from_data_dir};
use reload_node::shell::Listeners;
use reload_proto::node::{Event, Start};
use reload_proto::storage::StorageLimits;

/// Link protocols `run` can listen with (RFC 6940 §6.6: No-ICE overlays).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// TLS-TCP-FH-NO-ICE.
    Tls,
    /// DTLS-UDP-SR-NO-ICE.
    Dtls,
    /// DTLS-UDP-SR with full ICE (RFC 6940 §6.5.1.3): for peers behind NATs. Every
    /// Attach runs ICE checks over the --listen UDP socket (which also answers STUN,
    /// §6.5.1.4); the overlay's configuration must not say no-ice.
    Ice,
}

impl Protocol {
    pub fn link_type(self) -> OverlayLinkType {
        match self {
            Protocol::Tls => OverlayLinkType::TLS_TCP_FH_NO_ICE,
            Protocol::Dtls => OverlayLinkType::DTLS_UDP_SR_NO_ICE,
            Protocol::Ice => OverlayLinkType::DTLS_UDP_SR,
        }
    }
}

/// Arguments of `reload-node run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Data directory written by `reload-node enroll` (node.key, node.crt, overlay.relo).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on (also our host candidate in Attach, RFC 6940 §6.5.1.5).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6084")]
    pub listen: SocketAddr,
    /// Link protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Tls)]
    pub protocol: Protocol,
    /// Bootstrap peer to join through (repeatable); default: the configuration's
    /// bootstrap-node entries (§11.4).
    #[arg(long, value_name = "ADDR")]
    pub bootstrap: Vec<SocketAddr>,
    /// Start a new overlay as its first node instead of joining (§6.4.2.1).
    #[arg(long, conflicts_with = "client")]
    pub first: bool,
    /// Join as a client (§4.2): attach to the peer responsible for our Node-ID and send
    /// and receive through it, without routing for others or storing their data.
    #[arg(long)]
    pub client: bool,
    /// Log filter (tracing EnvFilter syntax), e.g. info, debug, reload_node=trace.
    #[arg(long, default_value = "info")]
    pub log: String,
    /// Write an NSS key log of the TLS and DTLS links to FILE (to decrypt captures: whoever
    /// reads FILE reads the links; a debugging aid, never for production). Only this flag
    /// turns it on: the SSLKEYLOGFILE environment variable is ignored (with a warning).
    #[arg(long, value_name = "FILE")]
    pub key_log: Option<PathBuf>,
    /// Keep FILE up to date with this peer's state as JSON (node_id, joined, successors,
    /// predecessors, connected peers), rewritten atomically on every change — for
    /// monitoring and tests.
    #[arg(long, value_name = "FILE")]
    pub status_file: Option<PathBuf>,
    /// Operator control socket (Unix domain, mode 0600, removed on exit) for
    /// `reload-node status / ping / trace`; default DIR/control.sock. The peer refuses to
    /// start when another live peer holds it, and replaces a stale one.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Links this peer holds at most (ours and accepted ones); new incoming connections
    /// and DTLS associations beyond are refused.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_links: usize,
    /// Incoming links still in their (D)TLS handshake at most; beyond, new ones are
    /// refused until some finish or time out.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_handshakes: usize,
    /// Incoming links from one IP address at most.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_links_per_address: usize,
    /// Seconds a (D)TLS handshake (TCP connect included) may take.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub handshake_timeout: u64,
    /// Run the usage NAME on this peer (repeatable): it serves the methods it defines.
    /// Usages: echo (answers exp_a_req, RFC 6940 §14.8 experimental code, with the
    /// signer's user name and the request body — for tests).
    #[arg(long = "usage", value_name = "NAME", value_parser = usage_name)]
    pub usages: Vec<String>,
    /// Act as SIP registrar and outbound proxy (RFC 7904) for local SIP user agents on
    /// ADDR, UDP and TCP (e.g. 127.0.0.1:5060; port 0 picks one, logged). A UA REGISTERs
    /// the peer's own AOR — its certificate's user name, e.g. alice@overlay — and calls
    /// any AOR registered in the overlay; calls reach the callee's peer over AppAttach.
    #[arg(long, value_name = "ADDR")]
    pub sip: Option<SocketAddr>,
    /// TCP address other peers' SIP flows (AppAttach, RFC 6940 §6.5.2) arrive on; by
    /// default the --listen address's IP with a port the system picks.
    #[arg(long, value_name = "ADDR", requires = "sip")]
    pub sip_flows: Option<SocketAddr>,
    /// The address local user agents reach the SIP front end at, put in its Via and
    /// Record-Route headers: needed when --sip binds every interface (0.0.0.0 or ::);
    /// by default the --sip address, or with a wildcard --sip the --listen IP (when it is
    /// neither a wildcard nor loopback) and the --sip port (not 0).
    #[arg(long, value_name = "ADDR", requires = "sip")]
    pub sip_advertise: Option<SocketAddr>,
    /// Values this peer stores for the overlay at most, in all (RFC 6940 §7; kept in
    /// DIR/storage.sqlite3 across restarts). A Store that would go beyond is refused with
    /// Error_Data_Too_Large; replacing or deleting values always works.
    #[arg(long, value_name = "N", default_value_t = StorageLimits::default().max_values)]
    pub max_stored_values: usize,
    /// Bytes of stored values (encoded StoredData) this peer holds at most, in all.
    #[arg(long, value_name = "BYTES", default_value_t = StorageLimits::default().max_bytes)]
    pub max_stored_bytes: u64,
    /// Bytes of stored values this peer holds at most for one user (the user name of the
    /// signer's certificate, else its Node-ID), so that one user cannot fill it.
    #[arg(long, value_name = "BYTES", default_value_t = StorageLimits::default().max_bytes_per_owner)]
    pub max_stored_bytes_per_user: u64,
    /// A TURN server (IP:PORT, e.g. coturn beside a public peer) on which this peer
    /// allocates a relayed address, offered as a relay candidate in every Attach (RFC 6940
    /// §9): for peers behind NATs no direct or reflexive path crosses (a symmetric NAT
    /// facing a restricted one). With --protocol ice; needs --turn-user and
    /// --turn-password-file (long-term credentials). Without --turn, a peer given
    /// --turn-user finds a TURN server in the overlay (TURN-SERVICE, §9).
    #[arg(long, value_name = "ADDR", requires_all = ["turn_user", "turn_password_file"])]
    pub turn: Option<SocketAddr>,
    /// The TURN user name for this peer (the deployment's TURN credentials: RFC 6940
    /// does not say how peers authenticate to TURN servers).
    #[arg(long, value_name = "NAME", requires = "turn_password_file")]
    pub turn_user: Option<String>,
    /// File whose first line is the TURN password (kept out of the command line).
    #[arg(long, value_name = "FILE", requires = "turn_user")]
    pub turn_password_file: Option<PathBuf>,
    /// Advertise the TURN server at ADDR (beside this peer, e.g. coturn on this host)
    /// in the overlay's TURN-SERVICE Kind (RFC 6940 §9), so that peers behind NATs find
    /// it. Done only while this peer is a candidate: a public address (not RFC 1918) at
    /// which its peers see it (not behind a NAT). With --protocol ice.
    #[arg(long, value_name = "ADDR")]
    pub turn_service: Option<SocketAddr>,
    /// With --protocol ice: UDP sockets for application flows (AppAttach, RFC 6940
    /// §6.5.2 — SIP calls, `reload-node appattach`) beside the --listen one, on its IP.
    /// A flow takes one; a socket carries at most one flow to each peer.
    #[arg(long, value_name = "N", default_value_t = reload_node::shell::DEFAULT_APP_SOCKETS)]
    pub app_sockets: usize,
    /// With --protocol ice: the first port of the application sockets (N consecutive
    /// ports from it, to open in a firewall); by default the system picks them.
    #[arg(long, value_name = "PORT")]
    pub app_port: Option<u16>,
}

/// The TURN server of `run`'s arguments, with its password read from its file.
/// The TURN credentials of `run`'s arguments (user, password read from its file).
fn turn_credentials(args: &RunArgs) -> Result<Option<(String, String)>, String> {
    let (Some(user), Some(file)) = (&args.turn_user, &args.turn_password_file) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("--turn-password-file {}: {e}", file.display()))?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err(format!("--turn-password-file {}: empty", file.display()));
    }
    if args.protocol != Protocol::Ice {
        return Err(
            "--turn-user needs --protocol ice (relayed candidates are ICE candidates)".into(),
        );
    }
    Ok(Some((user.clone(), password)))
}

/// The TURN server of `run`'s arguments, with its password read from its file.
fn turn_servers(args: &RunArgs) -> Result<Vec<reload_proto::node::TurnServer>, String> {
    if args.turn_service.is_some() && args.protocol != Protocol::Ice {
        return Err("--turn-service needs --protocol ice".into());
    }
    match (args.turn, turn_credentials(args)?) {
        (Some(addr), Some((username, password))) => Ok(vec![reload_proto::node::TurnServer {
            addr,
            username,
            password,
        }]),
        _ => Ok(Vec::new()),
    }
}

fn usage_name(name: &str) -> Result<String, String> {
    match reload_usages::USAGES.iter().find(|u| u.name == name) {
        Some(u) => Ok(u.name.to_string()),
        None => Err(format!(
            "no usage {name:?}; usages: {}",
            reload_usages::USAGES
                .iter()
                .map(|u| format!("{} ({})", u.name, u.about))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The JSON written to `--status-file`.
pub fn status_json(node: &reload_proto::node::Node) -> String {
    let t = node.topology();
    let hex = |v: Vec<reload_wire::NodeId>| v.iter().map(|n| n.to_hex()).collect::<Vec<_>>();
    let mut connected = node.connected_peers();
    connected.sort();
    let status = serde_json::json!({
        "node_id": node.node_id().to_hex(),
        "joined": t.is_joined(),
        "successors": hex(t.neighbor_section("successors")),
        "predecessors": hex(t.neighbor_section("predecessors")),
        "connected": hex(connected),
    });
    format!("{status}\n")
}

/// Runs one peer until a signal; then sends Leave and exits.
pub fn main(args: RunArgs) -> Result<bool, String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).map_err(|e| format!("--log: {e}"))?,
        )
        .with_target(false)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async move {
        let opts = PeerOptions {
            listen: vec![(args.protocol.link_type(), args.listen)],
            key_log: args.key_log.clone(),
            admission: reload_proto::node::Admission {
                max_links: args.max_links,
                max_handshakes: args.max_handshakes,
                max_links_per_address: args.max_links_per_address,
            },
            handshake_timeout: Duration::from_secs(args.handshake_timeout.max(1)),
            // A client stores nothing for others (RFC 6940 §4.2).
            storage: if args.client { StorageMode::Memory } else { StorageMode::DataDir },
            storage_limits: StorageLimits {
                max_values: args.max_stored_values,
                max_bytes: args.max_stored_bytes,
                max_bytes_per_owner: args.max_stored_bytes_per_user,
            },
            turn_servers: turn_servers(&args)?,
            // Set once the listeners are bound (below).
            app_sockets: Vec::new(),
        };
        // Before the storage is opened: a second peer on the same data directory stops
        // at the control socket, below, and must not have touched the database.
        let control_path = args
            .control
            .clone()
            .unwrap_or_else(|| reload_node::control::default_path(&args.data_dir));
        if let Ok(meta) = std::fs::symlink_metadata(&control_path) {
            use std::os::unix::fs::FileTypeExt as _;
            if meta.file_type().is_socket()
                && std::os::unix::net::UnixStream::connect(&control_path).is_ok()
            {
                return Err(format!(
                    "another peer is running with control socket {} (stop it first, or give \
                     this one another --data-dir or --control PATH)",
                    control_path.display()
                ));
            }
        }
        if args.protocol == Protocol::Ice && args.listen.ip().is_unspecified() {
            return Err(format!(
                "--protocol ice needs a specific --listen address (not {}): it is this peer's \
                 host candidate in every Attach (RFC 6940 §6.5.1.5)",
                args.listen.ip()
            ));
        }
        let sip_advertise = sip_advertise(&args)?;
        let mut node = from_data_dir(&args.data_dir, &opts)?;
        let no_ice = node.overlay().config().no_ice;
        if args.protocol == Protocol::Ice && no_ice {
            return Err("--protocol ice, but the overlay's configuration says no-ice: its peers \
                        use No-ICE links (an overlay is all ICE or all No-ICE, RFC 6940 \
                        §6.5.1.5); use --protocol tls or dtls"
                .into());
        }
        let span = tracing::info_span!("node", id = %node.node_id());
        let _g = span.enter();
        warn_about_key_log(args.key_log.as_deref(), std::env::var_os("SSLKEYLOGFILE").as_deref());
        // Before the listeners: a second peer on the same data directory stops here.
        let control_socket = reload_node::control::bind(&control_path)?;
        let listeners = Listeners::bind_with(&opts.listen, args.app_sockets, args.app_port)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        node.set_app_sockets(listeners.app_addrs());
        if args.protocol == Protocol::Ice {
            let apps: Vec<String> = listeners.app_addrs().iter().map(|a| a.to_string()).collect();
            tracing::info!("application sockets (AppAttach over ICE, RFC 6940 §6.5.2): {}", apps.join(" "));
        }
        let bootstrap: Vec<(OverlayLinkType, SocketAddr)> = if args.bootstrap.is_empty() {
            reload_node::enroll::load_credentials(&args.data_dir)
                .map(|(c, _)| c.bootstrap_nodes)
                .unwrap_or_default()
                .into_iter()
                .filter(|a| *a != args.listen)
                .map(|a| (args.protocol.link_type(), a))
                .collect()
        } else {
            args.bootstrap.iter().map(|a| (args.protocol.link_type(), *a)).collect()
        };
        if !args.first && bootstrap.is_empty() {
            return Err("no bootstrap peer: give --bootstrap ADDR, or --first to start a new overlay".into());
        }
        tracing::info!(listen = %args.listen, protocol = ?args.protocol, first = args.first, client = args.client, "starting");
        let start = if args.first {
            Start::FirstNode
        } else if args.client {
            Start::Client(bootstrap)
        } else {
            Start::Join(bootstrap)
        };
        node.start(std::time::Instant::now(), start);
        let restart = std::sync::Arc::new(tokio::sync::Notify::new());
        let restart2 = restart.clone();
        let data_dir = args.data_dir.clone();
        let status_file = args.status_file.clone();
        let on_event: reload_node::shell::EventSink = Box::new(move |node, e| {
            if let Some(path) = &status_file
                && matches!(e, Event::Joined | Event::NeighborsChanged | Event::LinkUp { .. } | Event::LinkDown { .. })
            {
                let tmp = path.with_extension("tmp");
                if std::fs::write(&tmp, status_json(node)).and_then(|()| std::fs::rename(&tmp, path)).is_err() {
                    tracing::warn!("cannot write the status file {}", path.display());
                }
            }
            match e {
            Event::ConfigurationChanged { sequence, rejoin_because, dropped_kinds, document } => {
                let path = data_dir.join(reload_node::datadir::CONFIG_FILE);
                if let Err(e) = reload_node::datadir::write_private_file(&path, document) {
                    tracing::error!("new configuration {sequence} in force but not saved: {e}");
                }
                tracing::info!(sequence, ?dropped_kinds, "new configuration in force (ConfigUpdate, RFC 6940 §6.5.4)");
                if !rejoin_because.is_empty() {
                    tracing::warn!(?rejoin_because, "the new configuration changes settings a running peer cannot: leaving; restart to rejoin (RFC 6940 §11.1)");
                    restart2.notify_one();
                }
            }
            Event::Joined => tracing::info!("joined the overlay"),
            Event::NeighborsChanged => tracing::info!(
                neighbors = ?node.topology().neighbors(),
                "neighbours changed"
            ),
            Event::LinkUp { peer, .. } => tracing::debug!(%peer, "link up"),
            Event::LinkDown {
                peer,
                remote,
                reason,
                ..
            } => tracing::info!(
                peer = %peer.map_or("-".to_string(), |p| p.to_string()),
                remote = %remote.map_or("-".to_string(), |a| a.to_string()),
                "link down: {}",
                reason.as_deref().unwrap_or("closed")
            ),
            Event::Isolated { reason } => tracing::warn!("isolated: {reason}"),
            _ => {}
            }
        });
        let stop = async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = restart.notified() => {}
            }
        };
        let sip_user = node.credentials().cert.user_name.clone();
        let node_id = node.node_id();
        let info = reload_node::control::PeerInfo::of(&node);
        let running = reload_node::shell::spawn(node, listeners, on_event, stop, Duration::from_secs(2));
        tracing::info!(control = %control_socket.path().display(), "control socket ready");
        let server = control_socket.serve(info, running.handle.clone())?;
        for name in &args.usages {
            match reload_usages::start(name, &running.handle).await {
                Ok(_) => tracing::info!(usage = %name, "usage started"),
                Err(e) => {
                    running.handle.shutdown().await;
                    let _ = running.task.await;
                    return Err(format!("usage {name}: {e}"));
                }
            }
        }
        let mut _sip = None;
        if let Some(bind) = args.sip {
            let flows = args.sip_flows.unwrap_or_else(|| SocketAddr::new(args.listen.ip(), 0));
            let started = match &sip_user {
                None => Err("this peer's certificate carries no user name, so it has no AOR to register (RFC 7904 §3.3)".to_string()),
                Some(user) => {
                    let opts = reload_usages::sip::SipOptions { bind, flows, advertise: sip_advertise };
                    reload_usages::sip::SipFrontEnd::start(&running.handle, node_id, user, opts).await
                }
            };
            match started {
                Ok(front) => {
                    tracing::info!(sip = %front.local_addr(), aor = %front.aor(), "SIP usage started: point user agents at sip:{}", front.local_addr());
                    _sip = Some(front);
                }
                Err(e) => {
                    running.handle.shutdown().await;
                    let _ = running.task.await;
                    return Err(format!("--sip: {e}"));
                }
            }
        }
        // TURN-SERVICE (§9): advertise a TURN server beside us, or find one.
        let mut turn_tasks = Vec::new();
        if let Some(server) = args.turn_service {
            let (h, ip) = (running.handle.clone(), args.listen.ip());
            turn_tasks.push(tokio::spawn(reload_node::turn_service::advertise(h, ip, server)));
        }
        if args.turn.is_none()
            && let Some((user, password)) = turn_credentials(&args)?
        {
            tracing::info!("no --turn given: looking for a TURN server in TURN-SERVICE (RFC 6940 §9)");
            let h = running.handle.clone();
            turn_tasks.push(tokio::spawn(async move {
                reload_node::turn_service::discover(h, user, password).await;
            }));
        }
        // Without the SIP usage, the peer still answers AppAttach for the echo
        // application (`reload-node appattach`).
        let mut _echo = None;
        if _sip.is_none() {
            let flows = SocketAddr::new(args.listen.ip(), 0);
            match reload_node::app::AppAttachListener::start(&running.handle, flows, None, &[]).await {
                Ok(l) => _echo = Some(l),
                Err(e) => tracing::warn!("AppAttach (echo) not served: {e}"),
            }
        }
        let _ = running.task.await;
        for t in turn_tasks {
            t.abort();
        }
        drop(_echo);
        drop(_sip);
        // Stops the control server and removes its socket.
        drop(server);
        tracing::info!("stopped");
        Ok(true)
    })
}

/// Key logging is on only with `--key-log FILE`, and then says so; an SSLKEYLOGFILE in the
/// environment (set for a browser, say) never turns it on by itself.
fn warn_about_key_log(flag: Option<&std::path::Path>, env: Option<&std::ffi::OsStr>) {
    if let Some(path) = flag {
        tracing::warn!(
            "--key-log: writing the TLS and DTLS link secrets to {}; whoever reads it can decrypt \
             this peer's links (a debugging aid, never for production)",
            path.display()
        );
    } else if let Some(env) = env {
        tracing::warn!(
            "SSLKEYLOGFILE is set ({}) but ignored: no link secrets are written; to write them \
             (for debugging only), give --key-log FILE",
            std::path::Path::new(env).display()
        );
    }
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Where local user agents reach the SIP front end (Via, Record-Route): `--sip-advertise`;
/// for a wildcard `--sip`, the `--listen` IP with the `--sip` port when that is an address
/// other hosts can reach; otherwise the operator must say (checked before the node starts).
fn sip_advertise(args: &RunArgs) -> Result<Option<SocketAddr>, String> {
    let Some(bind) = args.sip else {
        return Ok(None);
    };
    if let Some(a) = args.sip_advertise {
        if a.ip().is_unspecified() || a.port() == 0 {
            return Err(format!(
                "--sip-advertise {a}: give the IP address and port user agents reach (not a wildcard or port 0)"
            ));
        }
        return Ok(Some(a));
    }
    if !bind.ip().is_unspecified() {
        return Ok(None);
    }
    let listen = args.listen.ip();
    if listen.is_unspecified()
        || listen.is_loopback()
        || bind.port() == 0
        || listen.is_ipv4() != bind.is_ipv4()
    {
        return Err(format!(
            "--sip {bind} binds every interface: say where user agents reach it with --sip-advertise IP:PORT \
             (it goes into Via and Record-Route; the --listen address {} cannot stand for it)",
            args.listen
        ));
    }
    Ok(Some(SocketAddr::new(listen, bind.port())))
}
