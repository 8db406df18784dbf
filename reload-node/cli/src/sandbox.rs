//! `reload-node sandbox`: a whole overlay on loopback, from nothing — an enrollment server
//! (`reload-enroll`, started as a child process next to this binary), N enrolled peers in
//! this process over real TLS (or DTLS) links, the ring checked, the path between two
//! distant peers traced (TTL-limited Pings) and a Ping timed; a value of each data model
//! stored, fetched back by another peer and shown with the peers holding its replicas;
//! then it keeps running until Ctrl-C (`--check`: exit after the checks).

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use reload_proto::node::{Start, everything};
use reload_wire::body::MessageBody;
use reload_wire::storage::{
    ArrayEntry, DataModel, DataValue, DictionaryEntry, FetchReq, KindId, StoredDataValue,
};
use reload_wire::{Destination, NodeId};

use crate::run::Protocol;
use reload_node::client::{NodeHandle, Snapshot};
use reload_node::peer::{PeerOptions, from_data_dir};
use reload_node::shell::Listeners;

const OVERLAY: &str = "sandbox.reload.test";

/// The sandbox overlay's Kinds for the storage demonstration (private Kind-IDs, §14.6),
/// one per data model, written under USER-MATCH (§7.3.1): `reload-enroll init --kind`.
const DEMO_KINDS: [(u32, &str); 3] = [
    (0xf000_0001, "single,USER-MATCH,1,1024"),
    (0xf000_0002, "array,USER-MATCH,16,1024"),
    (0xf000_0003, "dictionary,USER-MATCH,16,1024"),
];

/// Arguments of `reload-node sandbox`.
#[derive(Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Number of peers.
    #[arg(long, default_value_t = 5)]
    pub peers: usize,
    /// Link protocol of the overlay.
    #[arg(long, value_enum, default_value_t = Protocol::Tls)]
    pub protocol: Protocol,
    /// First port: the enrollment server listens on it, peer i on PORT+1+i (127.0.0.1).
    /// 0: the system picks a free port for each (printed); not with a reused --dir, whose
    /// configuration names its bootstrap peer's port.
    #[arg(long, default_value_t = 26084)]
    pub port: u16,
    /// Working directory (kept); default: a fresh temporary directory, removed at exit.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Exit 0 once the ring is correct, the Ping was answered and each stored value was
    /// fetched back and held by every peer of its replica set (for tests).
    #[arg(long)]
    pub check: bool,
    /// Also run the SIP usage (RFC 7904): two more peers, users alice and bob, run SIP
    /// front ends; a demo user agent registers bob at his peer and one calls him from
    /// alice's; the SIP ladder and the overlay path are printed. With --check, exits 0
    /// only when the call completed (INVITE, 180, 200, ACK, BYE, 200).
    #[arg(long)]
    pub sip: bool,
    /// An ICE overlay (RFC 6940 §6.5.1.3): `reload-enroll init --ice`, peers on
    /// DTLS-UDP-SR; every Attach runs ICE checks and the links run over the selected
    /// pairs, printed once the ring is up (same as --protocol ice).
    #[arg(long)]
    pub ice: bool,
    /// How long to wait for the ring to become correct.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
}

struct Enroller(Child);

impl Drop for Enroller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no executable directory")?;
    // cargo puts integration-test binaries one level further down (target/debug/deps).
    for d in [dir.to_path_buf(), dir.join(".."), dir.join("../..")] {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    which(name).ok_or_else(|| format!("cannot find the {name} binary next to reload-node or on PATH (build it with `cargo build --workspace`)"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn cmd(bin: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut c = Command::new(bin);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().map_err(|e| format!("{}: {e}", bin.display()))?;
    if let (Some(input), Some(mut si)) = (stdin, child.stdin.take()) {
        let _ = si.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{} {}: {}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits (bounded) until something accepts TCP connections at `addr`.
fn wait_for_port(addr: SocketAddr, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Whether the snapshots show exactly the ring of the sorted Node-IDs.
pub fn ring_is_correct(snaps: &[Snapshot]) -> bool {
    let mut ids: Vec<NodeId> = snaps.iter().map(|s| s.node_id).collect();
    ids.sort();
    let n = ids.len();
    snaps.iter().all(|s| {
        let i = ids.iter().position(|x| *x == s.node_id).unwrap_or(0);
        let (succ, pred) = (ids[(i + 1) % n], ids[(i + n - 1) % n]);
        s.joined
            && (n == 1
                || (s.successors().first() == Some(&succ)
                    && s.predecessors().first() == Some(&pred)))
    })
}

/// Runs the sandbox.
pub fn main(args: SandboxArgs) -> Result<bool, String> {
    if args.peers == 0 || args.peers > 200 {
        return Err("--peers must be between 1 and 200".into());
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new("warn").map_err(|e| e.to_string())?)
        .try_init();
    let (dir, _tmp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("reload-sandbox-{}", std::process::id()));
            (d.clone(), Some(TempDir(d)))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut args = args;
    if args.ice {
        args.protocol = Protocol::Ice;
    }
    let ice = args.protocol == Protocol::Ice;
    let enroll_bin = sibling("reload-enroll")?;
    let node_bin = std::env::current_exe().map_err(|e| e.to_string())?;
    let edir = dir.join("enroll");
    let reused = edir.join("overlay.relo").exists();
    if args.port == 0 && reused {
        return Err(format!(
            "--port 0 cannot reuse {}: its configuration names the ports it was made with \
             (give that --port, or a new --dir)",
            dir.display()
        ));
    }
    let mut users: Vec<String> = (0..args.peers).map(|i| format!("peer{i}")).collect();
    if args.sip {
        users.extend(["alice".to_string(), "bob".to_string()]);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Every peer's sockets are bound before anything starts, so that a port taken by
    // something else stops the sandbox here with its address, and `--port 0` learns the
    // bootstrap peer's address before the configuration names it.
    let protocol = args.protocol.link_type();
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..users.len() {
        let want = if args.port == 0 {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            let port = u16::try_from(usize::from(args.port) + 1 + i)
                .map_err(|_| format!("--port {} leaves no port for peer {i}", args.port))?;
            SocketAddr::from(([127, 0, 0, 1], port))
        };
        let l = rt
            .block_on(Listeners::bind(&[(protocol, want)]))
            .map_err(|e| format!("cannot listen on {want}: {e}"))?;
        let addr = l.local_addrs().first().copied().unwrap_or(want);
        listeners.push(l);
        addrs.push(addr);
    }
    let peer_addr = |i: usize| -> SocketAddr { addrs[i] };
    // The enrollment server is another process: with --port 0 a free port is found here
    // and held until just before the server binds it.
    let (eport, mut hold) = if args.port == 0 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        (l.local_addr().map_err(|e| e.to_string())?.port(), Some(l))
    } else {
        (args.port, None)
    };
    let eaddr = SocketAddr::from(([127, 0, 0, 1], eport));

    println!("== enrollment server for {OVERLAY} on https://{eaddr}");
    if !reused {
        cmd(
            &enroll_bin,
            &[
                "init",
                "--overlay",
                OVERLAY,
                "--data-dir",
                &edir.to_string_lossy(),
                "--port",
                &eport.to_string(),
                "--bootstrap",
                &peer_addr(0).to_string(),
                "--key-type",
                "p256",
                "--kind",
                &format!("{:#x},{}", DEMO_KINDS[0].0, DEMO_KINDS[0].1),
                "--kind",
                &format!("{:#x},{}", DEMO_KINDS[1].0, DEMO_KINDS[1].1),
                "--kind",
                &format!("{:#x},{}", DEMO_KINDS[2].0, DEMO_KINDS[2].1),
            ]
            .into_iter()
            .chain(ice.then_some("--ice"))
            .collect::<Vec<_>>(),
            None,
        )?;
    }
    let existing = cmd(
        &enroll_bin,
        &["user", "list", "--data-dir", &edir.to_string_lossy()],
        None,
    )
    .unwrap_or_default();
    for u in &users {
        if !existing.contains(u.as_str()) {
            cmd(
                &enroll_bin,
                &[
                    "user",
                    "add",
                    u,
                    "--data-dir",
                    &edir.to_string_lossy(),
                    "--password-stdin",
                ],
                Some(&format!("sandbox-password-{u}\n")),
            )?;
        }
    }
    drop(hold.take());
    let server = Command::new(&enroll_bin)
        .args([
            "serve",
            "--data-dir",
            &edir.to_string_lossy(),
            "--listen",
            &eaddr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", enroll_bin.display()))?;
    let _server = Enroller(server);
    if !wait_for_port(eaddr, Duration::from_secs(20)) {
        return Err(format!("the enrollment server did not start on {eaddr}"));
    }

    println!("== enrolling {} peers", args.peers);
    let ca = edir.join("ca.crt");
    let url = format!("https://{OVERLAY}:{eport}/.well-known/reload-config");
    let resolve = format!("{OVERLAY}=127.0.0.1");
    for u in &users {
        let pdir = dir.join(u);
        if pdir.join("node.crt").exists() {
            continue;
        }
        cmd(
            &node_bin,
            &[
                "enroll",
                "--overlay",
                OVERLAY,
                "--user",
                u,
                "--password-stdin",
                "--config-url",
                &url,
                "--resolve",
                &resolve,
                "--ca-cert",
                &ca.to_string_lossy(),
                "--data-dir",
                &pdir.to_string_lossy(),
            ],
            Some(&format!("sandbox-password-{u}\n")),
        )?;
    }

    rt.block_on(async {
        let mut handles: Vec<NodeHandle> = Vec::new();
        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let mut tasks = Vec::new();
        for ((i, u), listeners) in users.iter().enumerate().zip(listeners) {
            let opts = PeerOptions {
                listen: vec![(protocol, peer_addr(i))],
                ..PeerOptions::default()
            };
            let mut node = from_data_dir(&dir.join(u), &opts)?;
            node.set_app_sockets(listeners.app_addrs());
            let start = if i == 0 {
                Start::FirstNode
            } else {
                Start::Join(vec![(protocol, peer_addr(0))])
            };
            node.start(Instant::now(), start);
            let mut stop = stop_tx.subscribe();
            let running = reload_node::shell::spawn(
                node,
                listeners,
                Box::new(|_, _| {}),
                async move {
                    let _ = stop.recv().await;
                },
                Duration::from_millis(500),
            );
            handles.push(running.handle);
            tasks.push(running.task);
            // Joins one after another, as operators start peers.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let snaps = |handles: Vec<NodeHandle>| async move {
            let mut out = Vec::new();
            for h in &handles {
                if let Ok(s) = h.snapshot().await {
                    out.push(s);
                }
            }
            out
        };
        println!("== waiting for the ring");
        let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
        let mut ring = snaps(handles.clone()).await;
        while !ring_is_correct(&ring) {
            if Instant::now() > deadline {
                print_ring(&ring, &peer_addr);
                return Err(format!(
                    "the ring was not correct after {} s",
                    args.timeout_secs
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            ring = snaps(handles.clone()).await;
        }
        print_ring(&ring, &peer_addr);
        if ice {
            print_ice_pairs(&ring);
        }

        // A Ping between two distant peers: from the first to the one half-way round.
        // Among the peers named peer<i> (with --sip, alice and bob come after them).
        let mut order: Vec<usize> = (0..args.peers).collect();
        order.sort_by_key(|&i| ring[i].node_id);
        let (a, b) = (order[0], order[order.len() / 2]);
        let target = ring[b].node_id;
        println!("== ping {} -> {}", ring[a].node_id, target);
        // The path as measured: Pings with TTL 0, 1, … (each hop where the TTL ran out
        // answers Error_TTL_Exceeded, RFC 6940 §6.3.2), then the Ping itself.
        let dest = vec![Destination::Node(target)];
        println!("   trace (TTL-limited Pings):");
        let hops = handles[a]
            .trace(dest.clone(), |h| {
                println!(
                    "   {:>3}  {}  {:>8} ms{}",
                    h.number,
                    h.node,
                    reload_node::control::ms(h.rtt),
                    if h.target { "  (target)" } else { "" }
                )
            })
            .await
            .map_err(|e| format!("the trace to {target} failed: {e}"))?;
        if hops.last().map(|h| h.node) != Some(target) {
            return Err(format!(
                "the trace ended at {:?}, not at {target}",
                hops.last()
            ));
        }
        let path: Vec<String> = std::iter::once(short(&ring[a].node_id))
            .chain(hops.iter().map(|h| short(&h.node)))
            .collect();
        println!("   path: {}", path.join(" -> "));
        match handles[a].ping(dest).await {
            Ok((who, rtt)) if who == target => {
                println!(
                    "   answered by {who} in {} ms",
                    reload_node::control::ms(rtt)
                )
            }
            other => return Err(format!("the Ping failed: {other:?}")),
        }
        storage_demo(&handles, &ring, a, b).await?;
        // The SIP front ends serve on until the sandbox stops: softphones can register
        // as alice or bob (passwords are not asked) and call each other through them.
        let mut _fronts = None;
        if args.sip {
            let n = users.len();
            let (fa, fb) = sip_demo(&handles, &ring, n - 2, n - 1).await?;
            if !args.check {
                println!(
                    "   softphones: register sip:alice@{OVERLAY} at {} or sip:bob@{OVERLAY} at {} (UDP or TCP, as registrar and outbound proxy)",
                    fa.local_addr(),
                    fb.local_addr()
                );
            }
            _fronts = Some((fa, fb));
        }
        if !args.check {
            println!("== running; Ctrl-C to stop");
            crate::run::shutdown_signal().await;
        }
        let _ = stop_tx.send(());
        for t in tasks {
            let _ = t.await;
        }
        Ok(true)
    })
}

/// Peer `a` stores a value of each data model at its user name's Resource-ID (§7.4.1);
/// peer `b` fetches each back, verified (§7.4.2.2); each peer of the replica set (§10.4)
/// is asked directly what it holds.
async fn storage_demo(
    handles: &[NodeHandle],
    ring: &[Snapshot],
    a: usize,
    b: usize,
) -> Result<(), String> {
    let user = format!("peer{a}@{OVERLAY}");
    let resource = handles[a]
        .resource_id(user.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "== storage: {user} stores at Resource-ID {} (the hash of its user name, USER-MATCH); \
         peer{b} fetches",
        hex::encode(resource.as_bytes())
    );
    let text = |s: &str| DataValue {
        exists: true,
        value: Bytes::copy_from_slice(s.as_bytes()),
    };
    let demos: [(&str, DataModel, Vec<StoredDataValue>); 3] = [
        (
            "single",
            DataModel::Single,
            vec![StoredDataValue::Single(text("hello, overlay"))],
        ),
        (
            "array",
            DataModel::Array,
            ["first", "second"]
                .iter()
                .map(|v| {
                    StoredDataValue::Array(ArrayEntry {
                        index: reload_proto::storage::ARRAY_END,
                        value: text(v),
                    })
                })
                .collect(),
        ),
        (
            "dictionary",
            DataModel::Dictionary,
            [("colour", "blue"), ("shape", "round")]
                .iter()
                .map(|(k, v)| {
                    StoredDataValue::Dictionary(DictionaryEntry {
                        key: Bytes::copy_from_slice(k.as_bytes()),
                        value: text(v),
                    })
                })
                .collect(),
        ),
    ];
    let name_of = |n: &NodeId| -> String {
        ring.iter()
            .position(|s| s.node_id == *n)
            .map(|i| format!("{} (peer{i})", short(n)))
            .unwrap_or_else(|| short(n))
    };
    for (i, (label, model, values)) in demos.into_iter().enumerate() {
        let kind = KindId(DEMO_KINDS[i].0);
        let (stored_by, ans) = handles[a]
            .store(kind, resource.clone(), values, 600)
            .await
            .map_err(|e| format!("storing the {label} value: {e}"))?;
        let replicas = ans
            .kind_responses
            .first()
            .map(|k| k.replicas.clone())
            .unwrap_or_default();
        let fetched = handles[b]
            .fetch(resource.clone(), vec![everything(kind, model)])
            .await
            .map_err(|e| format!("fetching the {label} value: {e}"))?;
        if !fetched.rejected.is_empty() {
            return Err(format!(
                "the {label} value failed verification: {:?}",
                fetched.rejected
            ));
        }
        let shown: Vec<String> = fetched
            .kinds
            .iter()
            .flat_map(|k| k.values.as_slice())
            .filter(|d| d.value.data_value().exists)
            .map(|d| {
                let v = String::from_utf8_lossy(&d.value.data_value().value).into_owned();
                match &d.value {
                    StoredDataValue::Single(_) => format!("{v:?}"),
                    StoredDataValue::Array(e) => format!("[{}] {v:?}", e.index),
                    StoredDataValue::Dictionary(e) => {
                        format!("[{:?}] {v:?}", String::from_utf8_lossy(&e.key))
                    }
                }
            })
            .collect();
        println!(
            "   {label:<10} Kind {:#x}: {}",
            kind.0,
            if shown.is_empty() {
                "nothing fetched".to_string()
            } else {
                shown.join(", ")
            }
        );
        if shown.is_empty() {
            return Err(format!("peer{b} fetched no {label} value"));
        }
        println!(
            "              fetched by peer{b} from {}; stored by {}",
            name_of(&fetched.responder),
            name_of(&stored_by)
        );
        // Each holder, asked directly (a peer serves a Fetch addressed to it from a
        // replica it holds, §7.4.1.1); replication is asynchronous: a moment to settle.
        for (role, peer) in std::iter::once(("responsible", stored_by))
            .chain(replicas.iter().map(|r| ("replica", *r)))
        {
            let mut held = 0;
            for _ in 0..20 {
                held = held_by(&handles[b], peer, &resource, kind, model).await;
                if held == shown.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!(
                "              {role:<11} {}: holds {held} value{}",
                name_of(&peer),
                if held == 1 { "" } else { "s" }
            );
            if held != shown.len() {
                return Err(format!(
                    "{role} {} holds {held} {label} values, not {}",
                    name_of(&peer),
                    shown.len()
                ));
            }
        }
    }
    Ok(())
}

/// The SIP usage (RFC 7904): SIP front ends on the peers of alice (`a`) and bob (`b`); a
/// user agent registers bob at his peer, another calls bob's AOR through alice's peer.
/// Prints the overlay path of the AppAttach (a TTL trace to bob's peer) and the ladder of
/// every SIP message the two peers received and sent.
async fn sip_demo(
    handles: &[NodeHandle],
    ring: &[Snapshot],
    a: usize,
    b: usize,
) -> Result<
    (
        reload_usages::sip::SipFrontEnd,
        reload_usages::sip::SipFrontEnd,
    ),
    String,
> {
    use reload_usages::sip::demo_ua::DemoUa;
    use reload_usages::sip::proxy::Flow;
    use reload_usages::sip::{SipFrontEnd, SipOptions};
    let aor = |u: &str| format!("{u}@{OVERLAY}");
    let (alice_aor, bob_aor) = (aor("alice"), aor("bob"));
    let fa = SipFrontEnd::start(
        &handles[a],
        ring[a].node_id,
        &alice_aor,
        SipOptions::default(),
    )
    .await?;
    let fb = SipFrontEnd::start(
        &handles[b],
        ring[b].node_id,
        &bob_aor,
        SipOptions::default(),
    )
    .await?;
    println!(
        "== SIP (RFC 7904): {alice_aor} at peer {} (SIP {}), {bob_aor} at peer {} (SIP {})",
        short(&ring[a].node_id),
        fa.local_addr(),
        short(&ring[b].node_id),
        fb.local_addr()
    );
    let alice = DemoUa::bind(&alice_aor).await?;
    let bob = DemoUa::bind(&bob_aor).await?;
    let code = bob.register(fb.local_addr(), 600).await?;
    if code != reload_usages::sip::rsipstack::sip::StatusCode::OK {
        return Err(format!("REGISTER of {bob_aor} answered {code}"));
    }
    println!(
        "   {bob_aor} registered: its peer stored SIP-REGISTRATION (Kind 1) at H(\"{bob_aor}\")"
    );
    let route = handles[a]
        .trace(vec![Destination::Node(ring[b].node_id)], |_| {})
        .await
        .map_err(|e| format!("the trace to bob's peer failed: {e}"))?;
    let path: Vec<String> = std::iter::once(short(&ring[a].node_id))
        .chain(route.iter().map(|h| short(&h.node)))
        .collect();
    println!(
        "   overlay path of the AppAttach (TTL trace): {}",
        path.join(" -> ")
    );
    let (mut ea, mut eb) = (fa.subscribe(), fb.subscribe());
    let callee =
        tokio::spawn(async move { bob.answer_one(fb.local_addr()).await.map(|m| (m, fb, bob)) });
    let got = alice
        .call(fa.local_addr(), &bob_aor, Duration::from_millis(100))
        .await?;
    let (methods, fb, bob) = callee.await.map_err(|e| e.to_string())??;
    // The ladder: what both peers saw, in time order.
    let mut events = Vec::new();
    for (rx, me) in [(&mut ea, "alice's peer"), (&mut eb, "bob's peer")] {
        while let Ok(e) = rx.try_recv() {
            events.push((e, me));
        }
    }
    events.sort_by_key(|(e, _)| e.at);
    let name = |f: &Flow| -> String {
        match f {
            Flow::Udp(x) if *x == alice.addr() => "alice (UA)".into(),
            Flow::Udp(x) if *x == bob.addr() => "bob (UA)".into(),
            Flow::Udp(x) => format!("udp {x}"),
            Flow::Tcp(i) => format!("tcp #{i}"),
            Flow::Peer(n) if *n == ring[a].node_id => "alice's peer".into(),
            Flow::Peer(n) if *n == ring[b].node_id => "bob's peer".into(),
            Flow::Peer(n) => format!("peer {}", short(n)),
        }
    };
    println!("   SIP ladder (UA to its peer over UDP, peer to peer over the AppAttach TLS flow):");
    for (e, me) in &events {
        match (e.incoming, e.flow) {
            // What a UA sent (seen as its peer received it).
            (true, Flow::Udp(_) | Flow::Tcp(_)) => {
                println!("     {:<14} -> {:<14} {}", name(&e.flow), me, e.what)
            }
            (false, _) => println!("     {:<14} -> {:<14} {}", me, name(&e.flow), e.what),
            _ => {}
        }
    }
    let codes: Vec<String> = got.iter().map(|c| c.code().to_string()).collect();
    println!(
        "   alice's UA got {}; bob's UA got {}",
        codes.join(", "),
        methods
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let complete = codes.iter().any(|c| c == "180")
        && codes.iter().filter(|c| *c == "200").count() == 2
        && methods.len() == 3;
    if !complete {
        return Err(format!(
            "the call did not complete: alice got {codes:?}, bob got {methods:?}"
        ));
    }
    println!("   call completed: INVITE, 180, 200, ACK, BYE, 200");
    // The demo UA goes: its binding too, so that calls to bob from a softphone get 480
    // (or reach a softphone registered as bob), not a dead port.
    let _ = bob.register(fb.local_addr(), 0).await;
    Ok((fa, fb))
}

/// How many values of `kind` at `resource` `peer` holds (a Fetch addressed to it).
async fn held_by(
    via: &NodeHandle,
    peer: NodeId,
    resource: &reload_wire::ResourceId,
    kind: KindId,
    model: DataModel,
) -> usize {
    let body = MessageBody::FetchReq(FetchReq {
        resource: resource.clone(),
        specifiers: vec![everything(kind, model)],
    });
    match via.request(vec![Destination::Node(peer)], body).await {
        Ok((_, MessageBody::FetchAns(a))) => a
            .kind_responses
            .iter()
            .flat_map(|k| k.values.as_slice())
            .filter(|d| d.value.data_value().exists)
            .count(),
        _ => 0,
    }
}

fn short(n: &NodeId) -> String {
    n.to_hex()[..8].to_string()
}

fn print_ring(ring: &[Snapshot], addr: &dyn Fn(usize) -> SocketAddr) {
    let mut order: Vec<usize> = (0..ring.len()).collect();
    order.sort_by_key(|&i| ring[i].node_id);
    println!(
        "   {:<34} {:<17} {:<10} {:<10}",
        "Node-ID", "address", "successor", "predecessor"
    );
    for i in order {
        let s = &ring[i];
        println!(
            "   {:<34} {:<17} {:<10} {:<10}",
            s.node_id.to_hex(),
            addr(i).to_string(),
            s.successors()
                .first()
                .map(short)
                .unwrap_or_else(|| "-".into()),
            s.predecessors()
                .first()
                .map(short)
                .unwrap_or_else(|| "-".into())
        );
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The ICE pair under each link made by an Attach (RFC 6940 §6.5.1.10), once per pair of
/// peers; links to the bootstrap peer, opened to its address directly, have none.
fn print_ice_pairs(ring: &[reload_node::client::Snapshot]) {
    println!("== ICE: selected candidate pairs (local -> remote)");
    let name = |id: &reload_wire::NodeId| {
        ring.iter()
            .position(|s| s.node_id == *id)
            .map_or(id.to_string(), |i| format!("peer{i}"))
    };
    let mut direct = 0;
    for (i, s) in ring.iter().enumerate() {
        for l in s.links.iter().filter(|l| l.established) {
            let Some(peer) = l.peer else { continue };
            match &l.ice {
                Some(ice) if ice.controlling || !ring.iter().any(|r| r.node_id == peer) => {
                    println!(
                        "   peer{i} -> {:<8} {} {} -> {} {}",
                        name(&peer),
                        ice.local.kind,
                        ice.local.addr,
                        ice.remote.kind,
                        ice.remote.addr
                    );
                }
                Some(_) => {}
                None => direct += 1,
            }
        }
    }
    if direct > 0 {
        println!(
            "   ({direct} link ends without ICE: links to the bootstrap peer, opened to its address, RFC 6940 §11.4)"
        );
    }
}
