//! `reload`: store, fetch, stat and find data in a running RELOAD overlay, ping a node and
//! show the route to it — as a client node (RFC 6940 §4.2) with its own credentials.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use reload_node::client::{NodeHandle, OpError};
use reload_node::control::{PeerInfo, parse_destination};
use reload_node::peer::{PeerOptions, StorageMode, from_data_dir};
use reload_node::shell::Listeners;
use reload_proto::config::AccessPolicy;
use reload_proto::node::{Event, Start};
use reload_proto::overlay::Overlay;
use reload_proto::storage::policy::node_multiple_name;
use reload_wire::ResourceId;
use reload_wire::link::OverlayLinkType;
use reload_wire::storage::{DataModel, KindId};

mod show;
mod spec;

use spec::{Kind, Selection};

/// Failed connections to every bootstrap peer after which a client command gives up.
const BOOTSTRAP_ATTEMPTS: usize = 3;

const LONG_ABOUT: &str = "\
Store, fetch, stat and find data in a running RELOAD overlay (RFC 6940 §7), ping a node and \
show the route to it.

`reload` joins the overlay as a client (§4.2) — it routes for nobody and stores nothing for \
others — with the credentials of its own data directory, made by `reload-node enroll` (give \
it one of its own: a data directory whose peer is running has that peer's Node-ID). It \
connects to --bootstrap (or the configuration's bootstrap peers), attaches to the peer \
responsible for its Node-ID, sends one request through it, prints the answer and leaves.

Values are signed with this node's key (§7.1); the peer responsible checks them against \
the Kind's access policy (§7.3) and answers with the RFC's error when it refuses, e.g. \
Error_Forbidden. Fetched values are verified here too: signature, certificate, access \
policy (§7.4.2.2); a value that fails is shown as REJECTED, never as data.

RESOURCES. A Kind's access policy decides which Resource-ID a node may write: under \
USER-MATCH and USER-NODE-MATCH the hash of its user name, under NODE-MATCH the hash of its \
Node-ID, under NODE-MULTIPLE the hash of Node-ID ‖ i. Without --resource or --resource-id, \
`reload` uses that resource of this node. --resource NAME hashes NAME (e.g. another user's \
name, to fetch what they stored); --resource-id HEX names a Resource-ID directly.

OUTPUT. Lines for people; --json prints one JSON object for scripts (errors too). Exit \
status: 0 done, 1 the overlay refused or did not answer (the RFC error name is printed), \
2 a usage error.

EXAMPLES
  reload -d client kinds
  reload -d client store --kind 0xf0000001 'hello'
  reload -d client store --kind 0xf0000002 --file photo.jpg        (array: appended)
  reload -d client store --kind 0xf0000003 --key colour blue       (dictionary)
  echo hi | reload -d client store --kind 0xf0000001 --stdin
  reload -d client fetch --kind 0xf0000001 --resource alice@example.org
  reload -d client fetch --kind 0xf0000002 --index 0-4 --json
  reload -d client stat  --kind 0xf0000003
  reload -d client find  --kind TURN-SERVICE --resource-id 00000000000000000000000000000000
  reload -d client ping  resource:alice@example.org
  reload -d client route 0123456789abcdef0123456789abcdef";

#[derive(Parser, Debug)]
#[command(
    name = "reload",
    version,
    about = "Store, fetch, stat and find data in a RELOAD overlay; ping and route (RFC 6940)",
    long_about = LONG_ABOUT
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Debug)]
struct Global {
    /// This client's data directory, written by `reload-node enroll` (its own credentials,
    /// not those of a running peer).
    #[arg(
        long,
        short = 'd',
        value_name = "DIR",
        env = "RELOAD_DATA_DIR",
        global = true
    )]
    data_dir: Option<PathBuf>,
    /// A peer of the overlay to connect to (repeatable); default: the configuration's
    /// bootstrap-node entries (§11.4).
    #[arg(long, value_name = "ADDR", global = true)]
    bootstrap: Vec<SocketAddr>,
    /// Link protocol of the overlay's peers.
    #[arg(long, value_enum, default_value_t = Protocol::Tls, global = true)]
    protocol: Protocol,
    /// Local address for this client's link (also its host candidate in Attach,
    /// §6.5.1.5); default: the address this machine reaches the bootstrap peer from, with
    /// a port of the system's choosing.
    #[arg(long, value_name = "ADDR", global = true)]
    listen: Option<SocketAddr>,
    /// Print one JSON object (results and errors) instead of lines.
    #[arg(long, global = true)]
    json: bool,
    /// Give up after SECS: reaching the overlay, then the request. A bootstrap peer that
    /// cannot be connected to at all (refused, unreachable, handshake refused) is given up
    /// on sooner, after 3 attempts, with the reason.
    #[arg(long, value_name = "SECS", default_value_t = 30, global = true)]
    timeout: u64,
    /// Write an NSS key log of this client's TLS and DTLS links to FILE (to decrypt
    /// captures: a debugging aid, never for production).
    #[arg(long, value_name = "FILE", global = true)]
    key_log: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax) for the client node's logs on stderr.
    #[arg(long, default_value = "error", global = true)]
    log: String,
    /// With --protocol ice: a TURN server (IP:PORT) to allocate a relayed candidate on
    /// (RFC 6940 §9), for a client behind a NAT no direct or reflexive path crosses (a
    /// symmetric one); needs --turn-user and --turn-password-file.
    #[arg(long, value_name = "ADDR", global = true, requires_all = ["turn_user", "turn_password_file"])]
    turn: Option<SocketAddr>,
    /// The TURN user name (the deployment's TURN credentials).
    #[arg(long, value_name = "NAME", global = true, requires = "turn")]
    turn_user: Option<String>,
    /// File whose first line is the TURN password.
    #[arg(long, value_name = "FILE", global = true, requires = "turn")]
    turn_password_file: Option<PathBuf>,
}

/// Link protocols (RFC 6940 §6.6): those of No-ICE overlays, and ICE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// TLS-TCP-FH-NO-ICE.
    Tls,
    /// DTLS-UDP-SR-NO-ICE.
    Dtls,
    /// DTLS-UDP-SR with full ICE (§6.5.1.3): the overlay's peers run `--protocol ice`.
    Ice,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Store a value (§7.4.1): a single value, an array element (appended unless --index),
    /// or a dictionary entry (--key); --delete stores its deletion (exists = false).
    Store(StoreArgs),
    /// Fetch values (§7.4.2), verified here: the whole array or dictionary unless --index
    /// or --key select.
    Fetch(FetchArgs),
    /// The metadata of values (§7.4.3): lengths, hashes, storage times, lifetimes.
    Stat(SelectArgs),
    /// For each --kind, the Resource-ID nearest at or after the resource that the peer
    /// responsible for it holds values of (§7.4.4).
    Find(FindArgs),
    /// Ping a node (§6.5.3) — DEST: a Node-ID in hex, a reload:// URI, or resource:NAME
    /// for the peer responsible for NAME's Resource-ID.
    Ping(DestArgs),
    /// The overlay path to DEST, hop by hop (TTL-limited Pings, §6.3.2).
    Route(DestArgs),
    /// The overlay's Kinds: ID, data model, access policy, limits (from the configuration;
    /// joins nothing).
    Kinds,
}

/// Which resource.
#[derive(Args, Debug, Clone)]
struct Resource {
    /// The Kind: a Kind-ID (decimal or 0x hex) or a registered name (`reload kinds`).
    #[arg(long, short = 'k', value_name = "KIND")]
    kind: String,
    /// A resource name, hashed to its Resource-ID (§5.2): e.g. a user name.
    #[arg(long, short = 'r', value_name = "NAME", conflicts_with = "resource_id")]
    resource: Option<String>,
    /// A Resource-ID in hex (as many bytes as the overlay's Node-IDs).
    #[arg(long, value_name = "HEX")]
    resource_id: Option<String>,
    /// NODE-MULTIPLE: which of this node's Resource-IDs, H(Node-ID ‖ i) (§7.3.4), when
    /// neither --resource nor --resource-id is given.
    #[arg(long, value_name = "I", default_value_t = 1)]
    instance: u32,
}

#[derive(Args, Debug)]
struct StoreArgs {
    #[command(flatten)]
    resource: Resource,
    /// The value, as text (or give --file or --stdin).
    #[arg(value_name = "VALUE", conflicts_with_all = ["file", "stdin", "delete"])]
    value: Option<String>,
    /// Read the value from FILE (`-`: standard input).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["stdin", "delete"])]
    file: Option<PathBuf>,
    /// Read the value from standard input.
    #[arg(long, conflicts_with = "delete")]
    stdin: bool,
    /// Store a deletion (exists = false, §7.2.1) instead of a value.
    #[arg(long)]
    delete: bool,
    /// Array: the index to write (0-based), or `append` (the default).
    #[arg(long, value_name = "N")]
    index: Option<String>,
    /// Dictionary: the entry's key, as text (USER-NODE-MATCH: default this node's Node-ID).
    #[arg(long, value_name = "KEY", conflicts_with = "key_hex")]
    key: Option<String>,
    /// Dictionary: the entry's key in hex.
    #[arg(long, value_name = "HEX")]
    key_hex: Option<String>,
    /// How long the value lives, in seconds (§7.1).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    lifetime: u32,
}

#[derive(Args, Debug)]
struct SelectArgs {
    #[command(flatten)]
    resource: Resource,
    /// Array: elements N, FIRST-LAST, FIRST- (to the end) or `last` (repeatable).
    #[arg(long, value_name = "RANGE")]
    index: Vec<String>,
    /// Dictionary: an entry's key as text (repeatable).
    #[arg(long, value_name = "KEY")]
    key: Vec<String>,
    /// Dictionary: an entry's key in hex (repeatable).
    #[arg(long, value_name = "HEX")]
    key_hex: Vec<String>,
}

#[derive(Args, Debug)]
struct FetchArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// Write the one value fetched, byte for byte, to standard output.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
}

#[derive(Args, Debug)]
struct FindArgs {
    /// Kinds to find (repeatable).
    #[arg(long, short = 'k', value_name = "KIND", required = true)]
    kind: Vec<String>,
    /// A resource name, hashed to the Resource-ID to start from.
    #[arg(long, short = 'r', value_name = "NAME", conflicts_with = "resource_id")]
    resource: Option<String>,
    /// The Resource-ID to start from, in hex.
    #[arg(long, value_name = "HEX", required_unless_present = "resource")]
    resource_id: Option<String>,
}

#[derive(Args, Debug)]
struct DestArgs {
    /// Node-ID (hex), reload:// URI, or resource:NAME.
    #[arg(value_name = "DEST")]
    dest: String,
}

/// How a command failed.
enum Failure {
    /// The operator's input: exit 2.
    Usage(String),
    /// Reaching the overlay, or local trouble: exit 1.
    Local(String),
    /// The overlay refused or did not answer: exit 1.
    Op(OpError),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Usage(s)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_out = cli.global.json;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.global.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_target(false)
        .try_init();
    let what = command_name(&cli.command);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            let (code, message, detail) = match &f {
                Failure::Usage(m) => (2, m.clone(), json!({"kind": "usage"})),
                Failure::Local(m) => (1, m.clone(), json!({"kind": "local"})),
                Failure::Op(e) => (1, e.to_string(), op_error_json(e)),
            };
            if json_out {
                let mut o = json!({"error": detail});
                o["error"]["message"] = json!(message);
                println!("{o}");
            }
            eprintln!("reload {what}: {message}");
            ExitCode::from(code)
        }
    }
}

fn command_name(c: &Cmd) -> &'static str {
    match c {
        Cmd::Store(_) => "store",
        Cmd::Fetch(_) => "fetch",
        Cmd::Stat(_) => "stat",
        Cmd::Find(_) => "find",
        Cmd::Ping(_) => "ping",
        Cmd::Route(_) => "route",
        Cmd::Kinds => "kinds",
    }
}

fn op_error_json(e: &OpError) -> serde_json::Value {
    match e {
        OpError::Refused { from, code, info } => json!({
            "kind": "refused",
            "from": from.to_hex(),
            "code": code.0,
            "name": code.name(),
            "info": info,
        }),
        other => json!({"kind": other.kind()}),
    }
}

/// What the client needs once it is in the overlay.
struct Client {
    handle: NodeHandle,
    /// The node's task: awaited after shutdown, so that its links close with
    /// close_notify before the process exits.
    task: tokio::task::JoinHandle<reload_proto::node::Node>,
    overlay: std::sync::Arc<Overlay>,
    own: show::Own,
    info: PeerInfo,
    json: bool,
}

fn run(cli: Cli) -> Result<(), Failure> {
    let g = cli.global;
    let Some(dir) = g.data_dir.clone() else {
        return Err(Failure::Usage(
            "no data directory: give --data-dir DIR (or RELOAD_DATA_DIR), made for this client \
             by `reload-node enroll`"
                .into(),
        ));
    };
    if let Cmd::Kinds = cli.command {
        let (_, config) = reload_node::datadir::load_config(&dir).map_err(Failure::Local)?;
        print!("{}", show::kinds(g.json, &Overlay::new(config, None)));
        return Ok(());
    }
    // Read everything the operator gave before joining: a mistake costs no network.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Local(format!("tokio: {e}")))?;
    let timeout = Duration::from_secs(g.timeout.max(1));
    rt.block_on(async move {
        let client = join(&dir, &g, timeout).await?;
        let result = tokio::time::timeout(timeout, command(&client, cli.command)).await;
        client.handle.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), client.task).await;
        match result {
            Ok(r) => r,
            Err(_) => Err(Failure::Local(format!(
                "no answer within {} s (--timeout)",
                timeout.as_secs()
            ))),
        }
    })
}

/// The address this machine reaches `to` from (a connected UDP socket sends nothing).
fn local_address_towards(to: SocketAddr) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(to).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// Joins as a client and waits until it is attached to its responsible peer.
async fn join(dir: &Path, g: &Global, timeout: Duration) -> Result<Client, Failure> {
    let link_type = match g.protocol {
        Protocol::Tls => OverlayLinkType::TLS_TCP_FH_NO_ICE,
        Protocol::Dtls => OverlayLinkType::DTLS_UDP_SR_NO_ICE,
        Protocol::Ice => OverlayLinkType::DTLS_UDP_SR,
    };
    let bootstrap: Vec<SocketAddr> = if g.bootstrap.is_empty() {
        reload_node::enroll::load_credentials(dir)
            .map_err(|e| Failure::Local(e.to_string()))?
            .0
            .bootstrap_nodes
    } else {
        g.bootstrap.clone()
    };
    let Some(first) = bootstrap.first().copied() else {
        return Err(Failure::Usage(
            "no bootstrap peer: give --bootstrap ADDR (the configuration lists none)".into(),
        ));
    };
    let listen = match g.listen {
        Some(a) => a,
        None => SocketAddr::new(
            local_address_towards(first).ok_or_else(|| {
                Failure::Local(format!(
                    "no local address reaches the bootstrap peer {first}"
                ))
            })?,
            0,
        ),
    };
    let listeners = Listeners::bind(&[(link_type, listen)])
        .await
        .map_err(|e| Failure::Local(format!("cannot listen on {listen}: {e}")))?;
    let bound = listeners
        .tcp
        .first()
        .and_then(|l| l.local_addr().ok())
        .or_else(|| listeners.udp.first().and_then(|u| u.local_addr().ok()))
        .unwrap_or(listen);
    if let Some(path) = &g.key_log {
        eprintln!(
            "--key-log: writing this client's link secrets to {} (whoever reads it can \
             decrypt its links)",
            path.display()
        );
    }
    let turn_servers = match (g.turn, &g.turn_user, &g.turn_password_file) {
        (Some(addr), Some(username), Some(file)) => {
            if g.protocol != Protocol::Ice {
                return Err(Failure::Usage(
                    "--turn needs --protocol ice (relayed candidates are ICE candidates)".into(),
                ));
            }
            let text = std::fs::read_to_string(file).map_err(|e| {
                Failure::Local(format!("--turn-password-file {}: {e}", file.display()))
            })?;
            let password = text.lines().next().unwrap_or("").to_string();
            if password.is_empty() {
                return Err(Failure::Local(format!(
                    "--turn-password-file {}: empty",
                    file.display()
                )));
            }
            vec![reload_proto::node::TurnServer {
                addr,
                username: username.clone(),
                password,
            }]
        }
        _ => Vec::new(),
    };
    let opts = PeerOptions {
        listen: vec![(link_type, bound)],
        key_log: g.key_log.clone(),
        // A client stores nothing for others (§4.2).
        storage: StorageMode::Memory,
        app_sockets: listeners.app_addrs(),
        turn_servers,
        ..PeerOptions::default()
    };
    let mut node = from_data_dir(dir, &opts).map_err(Failure::Local)?;
    let overlay = node.overlay().clone();
    let creds = node.credentials();
    let own = show::Own::new(
        creds.cert.user_name.clone(),
        creds.node_id,
        creds.cert.der(),
    );
    let info = PeerInfo::of(&node);
    node.start(
        std::time::Instant::now(),
        Start::Client(bootstrap.iter().map(|a| (link_type, *a)).collect()),
    );
    /// What the wait for the overlay hears from the node.
    enum Heard {
        /// Maybe attached: look.
        Progress,
        /// The node says it is cut off.
        Isolated(String),
        /// A link to this address failed before it was up, for this reason.
        LinkFailed(SocketAddr, String),
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Heard>();
    // Ready once the client's peer (§4.2.1) is known and linked: the topology names it
    // before the link to it is up.
    let sink: reload_node::shell::EventSink = Box::new(move |_, e| match e {
        Event::Joined | Event::NeighborsChanged | Event::LinkUp { .. } => {
            let _ = tx.send(Heard::Progress);
        }
        Event::Isolated { reason } => {
            let _ = tx.send(Heard::Isolated(reason.clone()));
        }
        Event::LinkDown {
            peer: None,
            remote: Some(remote),
            reason,
            ..
        } => {
            let why = reason.clone().unwrap_or_else(|| "the link closed".into());
            let _ = tx.send(Heard::LinkFailed(*remote, why));
        }
        _ => {}
    });
    let running = reload_node::shell::spawn(
        node,
        listeners,
        sink,
        std::future::pending(),
        Duration::from_millis(500),
    );
    let handle = running.handle.clone();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_problem = None;
    // Links to each bootstrap peer that failed before they were up: a client gives up
    // once every one failed [`BOOTSTRAP_ATTEMPTS`] times (a few seconds: the node tries
    // again after 1 s, then 2 s), naming why, rather than waiting out the timeout.
    let mut failures: HashMap<SocketAddr, (usize, String)> = HashMap::new();
    let give_up = |handle: NodeHandle, task, why: String| async move {
        handle.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        Err(Failure::Local(why))
    };
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Heard::LinkFailed(remote, why))) => {
                if !bootstrap.contains(&remote) {
                    continue;
                }
                let f = failures.entry(remote).or_insert((0, String::new()));
                *f = (f.0 + 1, why);
                if bootstrap
                    .iter()
                    .all(|b| failures.get(b).is_some_and(|f| f.0 >= BOOTSTRAP_ATTEMPTS))
                {
                    let why: Vec<String> = bootstrap
                        .iter()
                        .map(|b| format!("{b}: {}", failures[b].1))
                        .collect();
                    return give_up(
                        handle,
                        running.task,
                        format!(
                            "could not reach the overlay ({BOOTSTRAP_ATTEMPTS} attempts each): {}",
                            why.join("; ")
                        ),
                    )
                    .await;
                }
            }
            Ok(Some(Heard::Progress)) => {
                let attached = handle.snapshot().await.is_ok_and(|s| {
                    s.successors()
                        .first()
                        .is_some_and(|p| s.connected.contains(p))
                });
                if attached {
                    break;
                }
            }
            Ok(Some(Heard::Isolated(reason))) => last_problem = Some(reason),
            Ok(None) => return Err(Failure::Local("the client node stopped".into())),
            Err(_) => {
                let list: Vec<String> = bootstrap.iter().map(ToString::to_string).collect();
                let last = last_problem.or_else(|| {
                    let f: Vec<String> = failures
                        .iter()
                        .map(|(b, (_, why))| format!("{b}: {why}"))
                        .collect();
                    (!f.is_empty()).then(|| f.join("; "))
                });
                let why = format!(
                    "could not reach the overlay through {} within {} s{}",
                    list.join(", "),
                    timeout.as_secs(),
                    last.map(|r| format!(" (last problem: {r})"))
                        .unwrap_or_default()
                );
                return give_up(handle, running.task, why).await;
            }
        }
    }
    Ok(Client {
        handle,
        task: running.task,
        overlay,
        own,
        info,
        json: g.json,
    })
}

/// The Resource-ID a command names, and the name when there is one: --resource-id, or
/// --resource NAME hashed, or this node's resource under the Kind's access policy.
async fn resource(
    c: &Client,
    r: &Resource,
    kind: &Kind,
) -> Result<(ResourceId, Option<String>), Failure> {
    if let Some(hex) = &r.resource_id {
        return Ok((spec::resource_id(hex, c.info.node_id_length)?, None));
    }
    let (name, shown): (Vec<u8>, Option<String>) = match (&r.resource, &kind.policy) {
        (Some(n), _) => (n.clone().into_bytes(), Some(n.clone())),
        (None, AccessPolicy::UserMatch | AccessPolicy::UserNodeMatch) => {
            let Some(u) = c.own.user.clone() else {
                return Err(Failure::Usage(
                    "this node's certificate has no user name: give --resource or \
                     --resource-id"
                        .into(),
                ));
            };
            (u.clone().into_bytes(), Some(u))
        }
        (None, AccessPolicy::NodeMatch) => (c.own.node_id.as_bytes().to_vec(), None),
        (None, AccessPolicy::NodeMultiple) => {
            (node_multiple_name(&c.own.node_id, r.instance), None)
        }
        (None, _) => {
            return Err(Failure::Usage(format!(
                "Kind {}: give --resource NAME or --resource-id HEX",
                spec::kind_name(kind.id)
            )));
        }
    };
    let id = c
        .handle
        .resource_id(&name)
        .await
        .map_err(|e| Failure::Local(e.to_string()))?;
    Ok((id, shown))
}

fn selection(a: &SelectArgs) -> Result<Selection, Failure> {
    let mut sel = Selection::default();
    for i in &a.index {
        sel.ranges.push(spec::index_range(i)?);
    }
    for k in &a.key {
        sel.keys.extend(spec::dict_key(Some(k), None)?);
    }
    for k in &a.key_hex {
        sel.keys.extend(spec::dict_key(None, Some(k))?);
    }
    Ok(sel)
}

fn read_value(a: &StoreArgs) -> Result<Option<Bytes>, Failure> {
    if a.delete {
        return Ok(None);
    }
    let stdin = || {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| Failure::Local(format!("cannot read standard input: {e}")))?;
        Ok::<_, Failure>(b)
    };
    let b = match (&a.value, &a.file, a.stdin) {
        (Some(v), None, false) => v.clone().into_bytes(),
        (None, Some(p), false) if p.as_os_str() == "-" => stdin()?,
        (None, Some(p), false) => std::fs::read(p)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", p.display())))?,
        (None, None, true) => {
            if std::io::stdin().is_terminal() {
                eprintln!("reading the value from standard input (end with Ctrl-D)");
            }
            stdin()?
        }
        _ => {
            return Err(Failure::Usage(
                "give the value: VALUE, --file FILE, --stdin, or --delete".into(),
            ));
        }
    };
    Ok(Some(Bytes::from(b)))
}

async fn command(c: &Client, cmd: Cmd) -> Result<(), Failure> {
    let out = match cmd {
        Cmd::Store(a) => store(c, a).await?,
        Cmd::Fetch(a) => fetch(c, a).await?,
        Cmd::Stat(a) => stat(c, a).await?,
        Cmd::Find(a) => find(c, a).await?,
        Cmd::Ping(a) => ping(c, a).await?,
        Cmd::Route(a) => route(c, a).await?,
        Cmd::Kinds => show::kinds(c.json, &c.overlay),
    };
    if !out.is_empty() {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(out.as_bytes());
        if !out.ends_with('\n') {
            let _ = o.write_all(b"\n");
        }
    }
    Ok(())
}

async fn store(c: &Client, a: StoreArgs) -> Result<String, Failure> {
    let kind = spec::kind(&a.resource.kind, &c.overlay)?;
    let value = read_value(&a)?;
    let index =
        match a.index.as_deref() {
            None => None,
            Some(t) if t.eq_ignore_ascii_case("append") => Some(spec::ARRAY_END),
            Some(t) => Some(spec::number(t).ok_or_else(|| {
                Failure::Usage(format!("--index {t:?}: give a number or `append`"))
            })?),
        };
    let mut key = spec::dict_key(a.key.as_deref(), a.key_hex.as_deref())?;
    if key.is_none()
        && kind.model == DataModel::Dictionary
        && kind.policy == AccessPolicy::UserNodeMatch
    {
        // §7.3.3: the dictionary key is the storing node's Node-ID.
        key = Some(Bytes::copy_from_slice(c.own.node_id.as_bytes()));
    }
    let slot = spec::slot(&kind, index, key)?;
    if let Some(v) = &value
        && v.len() as u64 > kind.max_size as u64
    {
        eprintln!(
            "note: {} bytes is above the Kind's max-size ({}); the peer will refuse it",
            v.len(),
            kind.max_size
        );
    }
    let (res, _) = resource(c, &a.resource, &kind).await?;
    let (from, ans) = c
        .handle
        .store(
            kind.id,
            res.clone(),
            vec![spec::stored_value(&slot, value)],
            a.lifetime,
        )
        .await
        .map_err(Failure::Op)?;
    Ok(show::stored(c.json, &res, &kind, &from, &ans))
}

async fn fetch(c: &Client, a: FetchArgs) -> Result<String, Failure> {
    let kind = spec::kind(&a.select.resource.kind, &c.overlay)?;
    let sel = selection(&a.select)?;
    let specifier = spec::specifier(&kind, &sel)?;
    let (res, name) = resource(c, &a.select.resource, &kind).await?;
    let f = c
        .handle
        .fetch(res.clone(), vec![specifier])
        .await
        .map_err(Failure::Op)?;
    if a.raw {
        let b = show::raw_value(&kind, &f).map_err(Failure::Local)?;
        let mut o = std::io::stdout().lock();
        o.write_all(&b)
            .and_then(|()| o.flush())
            .map_err(|e| Failure::Local(format!("cannot write the value: {e}")))?;
        return Ok(String::new());
    }
    Ok(show::fetched(
        c.json,
        &res,
        name.as_deref(),
        &kind,
        &f,
        &c.own,
    ))
}

async fn stat(c: &Client, a: SelectArgs) -> Result<String, Failure> {
    let kind = spec::kind(&a.resource.kind, &c.overlay)?;
    let sel = selection(&a)?;
    let specifier = spec::specifier(&kind, &sel)?;
    let (res, _) = resource(c, &a.resource, &kind).await?;
    let (from, ans) = c
        .handle
        .stat(res.clone(), vec![specifier])
        .await
        .map_err(Failure::Op)?;
    Ok(show::stat(c.json, &res, &kind, &from, &ans))
}

async fn find(c: &Client, a: FindArgs) -> Result<String, Failure> {
    let kinds = a
        .kind
        .iter()
        .map(|k| spec::kind(k, &c.overlay))
        .collect::<Result<Vec<_>, _>>()?;
    let res = match (&a.resource_id, &a.resource) {
        (Some(hex), _) => spec::resource_id(hex, c.info.node_id_length)?,
        (None, Some(name)) => c
            .handle
            .resource_id(name.as_bytes())
            .await
            .map_err(|e| Failure::Local(e.to_string()))?,
        (None, None) => return Err(Failure::Usage("give --resource or --resource-id".into())),
    };
    let ids: Vec<KindId> = kinds.iter().map(|k| k.id).collect();
    let (from, ans) = c.handle.find(res, ids).await.map_err(Failure::Op)?;
    Ok(show::found(c.json, &from, &kinds, &ans))
}

async fn ping(c: &Client, a: DestArgs) -> Result<String, Failure> {
    let dest = parse_destination(&a.dest, &c.info)?;
    let (from, rtt) = c.handle.ping(dest).await.map_err(Failure::Op)?;
    let ms = rtt.as_secs_f64() * 1000.0;
    Ok(if c.json {
        json!({"responder": from.to_hex(), "rtt_ms": ms}).to_string()
    } else {
        format!("reply from {from}: time={ms:.3} ms")
    })
}

async fn route(c: &Client, a: DestArgs) -> Result<String, Failure> {
    let dest = parse_destination(&a.dest, &c.info)?;
    let json_out = c.json;
    if !json_out {
        println!("route to {}:", a.dest);
    }
    let hops = c
        .handle
        .trace(dest, |h| {
            if !json_out {
                println!(
                    "{:>3}  {}  {:.3} ms{}",
                    h.number,
                    h.node,
                    h.rtt.as_secs_f64() * 1000.0,
                    if h.target { "  (target)" } else { "" }
                );
            }
        })
        .await
        .map_err(Failure::Op)?;
    Ok(if json_out {
        let v: Vec<serde_json::Value> = hops
            .iter()
            .map(|h| {
                json!({
                    "hop": h.number,
                    "node_id": h.node.to_hex(),
                    "rtt_ms": h.rtt.as_secs_f64() * 1000.0,
                    "target": h.target,
                })
            })
            .collect();
        json!({"hops": v}).to_string()
    } else {
        String::new()
    })
}
