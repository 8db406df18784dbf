//! ICE through real NATs (RFC 6940 §6.5.1.3–§6.5.1.10): a lab of Linux network namespaces,
//! veth pairs and nftables, made and removed by this test, with `reload-node run
//! --protocol ice` processes in it. Nothing outside the namespaces is touched.
//!
//! - A public segment, 198.51.100.0/24 (documentation range, RFC 5737), a bridge in the
//!   namespace of the bootstrap peer (198.51.100.2), with the enrollment server beside it
//!   (same address, another port): every node enrolls from behind its NAT (HTTPS through
//!   the NAT).
//! - Routers, each with a public address 198.51.100.1x and a private segment 10.x.0.0/24
//!   with one host, 10.x.0.2, whose peer listens there:
//!   - **EIM** — endpoint-independent mapping and filtering ("full cone"): masquerade
//!     (Linux keeps the source port) plus a DNAT of that port to the host, since Linux's
//!     connection tracking alone filters by remote address and port;
//!   - **PR** — port-restricted: masquerade and a drop of unsolicited inbound packets;
//!   - **SYM** — symmetric: masquerade `fully-random` (a new port per destination) and the
//!     same drop.
//!
//!   Two routers of each kind, so that same-type pairs cross two NATs as in the field.
//! - Phase 1 (asserted): the bootstrap peer and the peers behind the EIM and PR NATs form
//!   a ring; every pair of NAT'd peers is linked over the ICE pair it selected, printed as
//!   a matrix (host / srflx / prflx); a `reload` client behind a PR NAT stores a value
//!   and another, behind an EIM NAT, fetches it.
//! - TURN (§9): coturn listens beside the bootstrap peer, on its address (198.51.100.2,
//!   another port; relaying from 198.51.100.3). The bootstrap peer advertises it in
//!   TURN-SERVICE (`--turn-service`) once its peers confirm it is not behind a NAT; every
//!   NAT'd peer, given the lab's TURN credentials but no server, finds it with Find on
//!   random Resource-IDs and allocates a relayed candidate on it (asserted).
//! - Phase 2 (asserted): the peers behind the symmetric NATs start too. The ring of all
//!   seven forms and all 15 NAT'd pairs connect — port-restricted↔symmetric and
//!   symmetric↔symmetric through the relay. A `reload` client behind a symmetric NAT
//!   (`--turn`) stores, and fetches the PR client's value; the EIM client fetches its.
//!
//! - Phase 3 (asserted): every NAT'd peer AppAttaches (§6.5.2) to every other one at
//!   once (`reload-node appattach`, the echo application): each flow's ICE runs between
//!   the two peers' application sockets and DTLS runs over the selected pair; the matrix
//!   of those pairs is printed, every flow must carry its echo, and those between
//!   port-restricted and symmetric NATs must go through the relay. Before it the lab
//!   idles 35 s, longer than the NATs keep an idle UDP binding (30 s): the peers' TURN
//!   allocations survive only if their keepalives hold the bindings (none may be lost).
//!
//! Needs root, `ip` (iproute2), `nft` (nftables) and coturn's `turnserver`, as the
//! README's test command
//! installs; skipped with a loud message where namespaces cannot be made.

mod procs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procs::{Proc, free_port, peer_dir, read_status, scratch_dir, status_file};

const OVERLAY: &str = "nat.lab.test";
const RELOAD: &str = env!("CARGO_BIN_EXE_reload");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nat {
    Eim,
    PortRestricted,
    Symmetric,
}

impl Nat {
    fn name(self) -> &'static str {
        match self {
            Nat::Eim => "EIM",
            Nat::PortRestricted => "PR",
            Nat::Symmetric => "SYM",
        }
    }
}

/// Peer `i` (1-based; 0 is the public bootstrap peer): its NAT and private segment.
const NATTED: [(Nat, u8); 6] = [
    (Nat::Eim, 1),
    (Nat::Eim, 2),
    (Nat::PortRestricted, 3),
    (Nat::PortRestricted, 4),
    (Nat::Symmetric, 5),
    (Nat::Symmetric, 6),
];

/// The lab's namespaces, deleted on drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> Result<String, String> {
        let ns = self.ns(name);
        sh(&["ip", "netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The lab, the EIM routers forwarding the peers' UDP `port` (full cone).
    fn build(port: u16) -> Result<Lab, String> {
        let mut lab = Lab {
            prefix: format!("rl{}-", std::process::id()),
            namespaces: Vec::new(),
        };
        let public = lab.add_ns("pub")?;
        sh(&["ip", "-n", &public, "link", "add", "br0", "type", "bridge"])?;
        sh(&[
            "ip",
            "-n",
            &public,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            "br0",
        ])?;
        sh(&["ip", "-n", &public, "link", "set", "br0", "up"])?;
        // The rest of the Internet, as a public host sees it: a default route where
        // packets vanish. Without one, sending to an address off the segment fails at once
        // (ENETUNREACH), and coturn closes an allocation whose relay socket reports that —
        // the relay is asked to check private host candidates too.
        // (A veth to a namespace that forwards nothing: dummy devices may not exist.)
        let internet = lab.add_ns("internet")?;
        sh(&[
            "ip", "-n", &public, "link", "add", "inet", "type", "veth", "peer", "name", "eth0",
            "netns", &internet,
        ])?;
        sh(&[
            "ip",
            "-n",
            &public,
            "addr",
            "add",
            "198.18.0.1/30",
            "dev",
            "inet",
        ])?;
        sh(&["ip", "-n", &public, "link", "set", "inet", "up"])?;
        sh(&[
            "ip",
            "-n",
            &internet,
            "addr",
            "add",
            "198.18.0.2/30",
            "dev",
            "eth0",
        ])?;
        sh(&["ip", "-n", &internet, "link", "set", "eth0", "up"])?;
        sh(&[
            "ip",
            "-n",
            &public,
            "route",
            "add",
            "default",
            "via",
            "198.18.0.2",
        ])?;
        for (nat, x) in NATTED {
            let router = lab.add_ns(&format!("r{x}"))?;
            let host = lab.add_ns(&format!("h{x}"))?;
            let bport = format!("p{x}");
            // Router's WAN side on the public bridge.
            sh(&[
                "ip", "-n", &router, "link", "add", "wan", "type", "veth", "peer", "name", &bport,
                "netns", &public,
            ])?;
            sh(&[
                "ip", "-n", &public, "link", "set", &bport, "master", "br0", "up",
            ])?;
            let wan = format!("198.51.100.{}/24", 10 + x);
            sh(&["ip", "-n", &router, "addr", "add", &wan, "dev", "wan"])?;
            sh(&["ip", "-n", &router, "link", "set", "wan", "up"])?;
            // Its LAN side and the host behind it.
            sh(&[
                "ip", "-n", &router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0",
                "netns", &host,
            ])?;
            let gw = format!("10.{x}.0.1");
            sh(&[
                "ip",
                "-n",
                &router,
                "addr",
                "add",
                &format!("{gw}/24"),
                "dev",
                "lan",
            ])?;
            sh(&["ip", "-n", &router, "link", "set", "lan", "up"])?;
            sh(&[
                "ip",
                "-n",
                &host,
                "addr",
                "add",
                &format!("10.{x}.0.2/24"),
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", &host, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", &host, "route", "add", "default", "via", &gw])?;
            sh(&[
                "ip",
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])?;
            let rules = nat_rules(nat, x, port);
            let file = std::env::temp_dir().join(format!("{}{x}.nft", lab.prefix));
            std::fs::write(&file, rules).map_err(|e| e.to_string())?;
            sh(&[
                "ip",
                "netns",
                "exec",
                &router,
                "nft",
                "-f",
                file.to_str().unwrap(),
            ])?;
            let _ = std::fs::remove_file(file);
        }
        Ok(lab)
    }
}

/// Application sockets per peer (`--app-sockets`), on the ports after the peer's.
const APP_SOCKETS: u16 = 2;

/// The nftables ruleset of a router of kind `nat` for host 10.`x`.0.2 whose peer listens
/// on UDP `port` and has its application sockets on the next [`APP_SOCKETS`] ports (see
/// the module documentation).
fn nat_rules(nat: Nat, x: u8, port: u16) -> String {
    let masquerade = match nat {
        Nat::Symmetric => "masquerade fully-random",
        _ => "masquerade",
    };
    let inbound = match nat {
        // Full cone: whoever sends to the mapped port reaches the host (Linux keeps the
        // port, so the mapping of 10.x.0.2:P is 198.51.100.1x:P).
        Nat::Eim => format!(
            "chain pre {{ type nat hook prerouting priority dstnat; iifname \"wan\" udp dport {port}-{} dnat to 10.{x}.0.2; }}",
            port + APP_SOCKETS
        ),
        _ => String::new(),
    };
    // Unsolicited packets are dropped, not answered, and before connection tracking
    // confirms an entry for them: an unreplied inbound entry would make the router pick
    // another port for the host's own later packets to that sender (a mapping change no
    // real NAT of these kinds makes). Every router drops those addressed to itself (an
    // EIM router's forwarded port is DNATed first); PR and SYM drop forwarded ones too.
    let to_router = "chain to_router { type filter hook input priority filter; policy accept; iifname \"wan\" ct state new drop; }";
    let filter = match nat {
        Nat::Eim => to_router.to_string(),
        _ => format!(
            "chain from_wan {{ type filter hook forward priority filter; policy accept; iifname \"wan\" ct state new drop; }}\n {to_router}"
        ),
    };
    format!(
        "table ip lab {{\n chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" {masquerade}; }}\n {inbound}\n {filter}\n}}\n"
    )
}

fn can_build_labs() -> Result<(), String> {
    for tool in ["ip", "nft", "turnserver"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // A missing tool fails the run under `.ci/test`, which installs them.
            procs::skip_without_tool(&format!(
                "nat_lab: {tool} is not installed (apt-get install iproute2 nftables coturn)"
            ));
            return Err(format!("{tool} is not installed"));
        }
    }
    let probe = format!("rl{}-probe", std::process::id());
    sh(&["ip", "netns", "add", &probe])?;
    let _ = sh(&["ip", "netns", "del", &probe]);
    Ok(())
}

/// One link of a peer, from `reload-node status`: (peer Node-ID, ICE pair text if any).
fn links(dir: &Path, i: usize) -> Vec<(String, Option<String>)> {
    let out = Command::new(procs::NODE)
        .args(["status", "--data-dir"])
        .arg(peer_dir(dir, i))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("link:"))
        .map(|rest| {
            let w: Vec<&str> = rest.split_whitespace().collect();
            let ice =
                (w.get(3) == Some(&"ice") && w.len() >= 9).then(|| format!("{}→{}", w[4], w[7]));
            (w.first().copied().unwrap_or("").to_string(), ice)
        })
        .collect()
}

/// The pair matrix among `peers`: for each pair, the candidate types of the selected
/// ICE pair as seen from the first, or "—" without a link.
fn matrix(dir: &Path, ids: &[String], peers: &[usize]) -> Vec<(usize, usize, Option<String>)> {
    let mut out = Vec::new();
    for (a, &i) in peers.iter().enumerate() {
        let l = links(dir, i);
        for &j in &peers[a + 1..] {
            let pair = l
                .iter()
                .find(|(p, _)| *p == ids[j])
                .map(|(_, ice)| ice.clone().unwrap_or_else(|| "direct (no ICE)".to_string()));
            out.push((i, j, pair));
        }
    }
    out
}

fn label(i: usize) -> String {
    if i == 0 {
        "p0 public".into()
    } else {
        let (nat, _) = NATTED[i - 1];
        format!("p{i} {}", nat.name())
    }
}

fn print_matrix(title: &str, m: &[(usize, usize, Option<String>)]) {
    println!("== {title}");
    for (i, j, pair) in m {
        println!(
            "   {:<12} ↔ {:<12} {}",
            label(*i),
            label(*j),
            pair.as_deref().unwrap_or("— no link")
        );
    }
}

/// The TURN server of the lab (coturn on the public segment), its user and password file.
struct Turn {
    addr: String,
    password_file: PathBuf,
}

fn start(lab: &Lab, dir: &Path, i: usize, port: u16, turn: &Turn) -> Proc {
    let (ns, listen) = if i == 0 {
        (lab.ns("pub"), format!("198.51.100.2:{port}"))
    } else {
        let x = NATTED[i - 1].1;
        (lab.ns(&format!("h{x}")), format!("10.{x}.0.2:{port}"))
    };
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &ns,
        procs::NODE,
        "run",
        "--protocol",
        "ice",
    ])
    .arg("--data-dir")
    .arg(peer_dir(dir, i))
    .args(["--listen", &listen, "--log", "info"])
    .args(["--app-sockets", &APP_SOCKETS.to_string()])
    .args(["--app-port", &(port + 1).to_string()])
    .arg("--status-file")
    .arg(status_file(dir, i));
    if i == 0 {
        // The public peer advertises the TURN server beside it (RFC 6940 §9).
        cmd.arg("--first").args(["--turn-service", &turn.addr]);
    } else {
        // Every NAT'd peer has the lab's TURN credentials and finds the server in
        // TURN-SERVICE.
        cmd.args(["--bootstrap", &format!("198.51.100.2:{port}")])
            .args(["--turn-user", "lab"])
            .arg("--turn-password-file")
            .arg(&turn.password_file);
    }
    let log = std::fs::File::create(dir.join(format!("p{i}.log"))).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Proc::spawn(&mut cmd, format!("peer p{i}"))
}

/// Waits (bounded) until `cond` holds, polling.
fn wait(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("{what}: not reached after {limit:?}");
    false
}

/// `reload ARGS` from inside namespace `ns` with client data directory `data`.
fn reload_in(ns: &str, data: &Path, port: u16, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args(["60", "ip", "netns", "exec", ns, RELOAD, "--protocol", "ice"])
        .arg("--data-dir")
        .arg(data)
        .args([
            "--bootstrap",
            &format!("198.51.100.2:{port}"),
            "--log",
            "info",
        ])
        .args(args)
        .output()
        .unwrap()
}

fn tail(dir: &Path, i: usize) -> String {
    let t = std::fs::read_to_string(dir.join(format!("p{i}.log"))).unwrap_or_default();
    let chars: Vec<char> = t.chars().collect();
    chars[chars.len().saturating_sub(3000)..].iter().collect()
}

/// Peer `i`'s warnings (the last 40): what a failed ICE session or relay reported.
fn warnings(dir: &Path, i: usize) -> String {
    let t = std::fs::read_to_string(dir.join(format!("p{i}.log"))).unwrap_or_default();
    let lines: Vec<&str> = t.lines().filter(|l| l.contains("WARN")).collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn peers_behind_nats_connect_over_ice() {
    if let Err(why) = can_build_labs() {
        eprintln!("\n*** SKIPPED nat_lab: cannot build network namespaces here: {why} ***\n");
        return;
    }
    let port = free_port();
    let lab = Lab::build(port).expect("the NAT lab");
    let dir: PathBuf = scratch_dir("reload-nat-lab");
    // 7 peers (p0 public, p1..p6 behind NATs) and 3 clients (p7 behind a PR NAT, p8
    // behind an EIM NAT, p9 behind a symmetric NAT). The enrollment server runs on the public segment, beside the
    // bootstrap peer (198.51.100.2, another port); each node enrolls from where it runs,
    // over HTTPS through its NAT. The configuration names the public bootstrap peer.
    let eport = free_port();
    let bootstrap: SocketAddr = format!("198.51.100.2:{port}").parse().unwrap();
    let kind = "0xf0000001,single,USER-MATCH,1,1024";
    let ns_of = |i: usize| match i {
        0 => lab.ns("pub"),
        7 => lab.ns("h3"),
        8 => lab.ns("h1"),
        9 => lab.ns("h5"),
        i => lab.ns(&format!("h{}", NATTED[i - 1].1)),
    };
    let prefix = |i: Option<usize>| -> Vec<String> {
        let ns = i.map_or_else(|| lab.ns("pub"), ns_of);
        ["ip", "netns", "exec", &ns].map(String::from).to_vec()
    };
    procs::enroll_peers_at(
        &dir,
        OVERLAY,
        bootstrap,
        10,
        &["--ice", "--kind", kind],
        &procs::EnrollAt {
            server: format!("198.51.100.2:{eport}").parse().unwrap(),
            prefix: &prefix,
        },
    );

    // coturn beside the bootstrap peer: listening on its address, another port; relayed
    // addresses on 198.51.100.3; long-term credentials (RFC 5389 §10.2).
    let tport = free_port();
    sh(&[
        "ip",
        "-n",
        &lab.ns("pub"),
        "addr",
        "add",
        "198.51.100.3/24",
        "dev",
        "br0",
    ])
    .unwrap();
    let turn = Turn {
        addr: format!("198.51.100.2:{tport}"),
        password_file: dir.join("turn-password"),
    };
    std::fs::write(&turn.password_file, "lab-turn-password\n").unwrap();
    let turn_log = std::fs::File::create(dir.join("coturn.log")).unwrap();
    let _coturn = Proc::spawn(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns("pub"), "turnserver", "-n"])
            .args([
                "--listening-ip",
                "198.51.100.2",
                "--relay-ip",
                "198.51.100.3",
            ])
            .args(["--listening-port", &tport.to_string()])
            .args(["--min-port", "49152", "--max-port", "65000"])
            .args(["--lt-cred-mech", "--user", "lab:lab-turn-password"])
            .args(["--realm", OVERLAY, "--fingerprint"])
            .args([
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--log-file",
                "stdout",
                "-v",
            ])
            .stdin(Stdio::null())
            .stdout(turn_log.try_clone().unwrap())
            .stderr(turn_log),
        "coturn",
    );

    // ---- phase 1: public + EIM + PR -------------------------------------------------
    let phase1 = [0usize, 1, 2, 3, 4];
    let mut procs: Vec<Proc> = Vec::new();
    procs.push(start(&lab, &dir, 0, port, &turn));
    assert!(
        wait(Duration::from_secs(20), "bootstrap up", || read_status(
            &status_file(&dir, 0)
        )
        .is_some_and(|s| s.joined)),
        "{}",
        tail(&dir, 0)
    );
    for &i in &phase1[1..] {
        procs.push(start(&lab, &dir, i, port, &turn));
    }
    let ids = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                read_status(&status_file(&dir, i))
                    .map(|s| s.id)
                    .unwrap_or_default()
            })
            .collect()
    };
    let formed = wait(Duration::from_secs(90), "phase 1 ring", || {
        let st: Vec<_> = phase1
            .iter()
            .filter_map(|&i| read_status(&status_file(&dir, i)))
            .collect();
        st.len() == phase1.len() && procs::ring_ok(&st)
    });
    let logs = || {
        phase1
            .iter()
            .map(|&i| format!("--- p{i}\n{}", tail(&dir, i)))
            .collect::<String>()
    };
    assert!(
        formed,
        "the ring of the public and EIM/PR peers did not form:\n{}",
        logs()
    );
    let id = ids(7);
    // Every NAT'd pair linked over ICE (Chord links all of 5 peers to each other).
    let mut m = Vec::new();
    let all = wait(Duration::from_secs(60), "phase 1 matrix", || {
        m = matrix(&dir, &id, &phase1[1..]);
        m.iter()
            .all(|(_, _, p)| p.as_deref().is_some_and(|p| p.contains('→')))
    });
    print_matrix(
        "NAT matrix, phase 1 (selected ICE pair, local→remote types)",
        &m,
    );
    assert!(
        all,
        "a pair behind EIM/PR NATs did not connect:\n{}",
        logs()
    );

    // A client behind a PR NAT (p3's host) stores; one behind an EIM NAT (p1's host, on
    // a port the router does not forward: port-restricted for it) fetches. Each attaches
    // to its responsible peer over ICE, wherever that one is.
    let h3 = lab.ns("h3");
    let h1 = lab.ns("h1");
    let store = reload_in(
        &h3,
        &peer_dir(&dir, 7),
        port,
        &["store", "--kind", "0xf0000001", "through two NATs"],
    );
    assert!(
        store.status.success(),
        "reload store from behind a NAT failed: {}\n{}",
        String::from_utf8_lossy(&store.stderr),
        logs()
    );
    let user7 = format!("p7@{OVERLAY}");
    let fetch = reload_in(
        &h1,
        &peer_dir(&dir, 8),
        port,
        &["fetch", "--kind", "0xf0000001", "--resource", &user7],
    );
    let out = String::from_utf8_lossy(&fetch.stdout);
    assert!(
        fetch.status.success() && out.contains("through two NATs"),
        "fetch from behind a NAT: {out}\n{}\n{}",
        String::from_utf8_lossy(&fetch.stderr),
        logs()
    );

    // ---- phase 2: the symmetric NATs -----------------------------------------------
    // PR↔SYM and SYM↔SYM have no direct or reflexive path: they meet on the relay.
    for i in [5usize, 6] {
        procs.push(start(&lab, &dir, i, port, &turn));
    }
    let all7 = [0usize, 1, 2, 3, 4, 5, 6];
    let logs = || {
        all7.iter()
            .map(|&i| format!("--- p{i}\n{}", tail(&dir, i)))
            .collect::<String>()
    };
    let formed = wait(Duration::from_secs(120), "full ring", || {
        let st: Vec<_> = all7
            .iter()
            .filter_map(|&i| read_status(&status_file(&dir, i)))
            .collect();
        st.len() == all7.len() && procs::ring_ok(&st)
    });
    assert!(
        formed,
        "the ring with the symmetric NATs did not form:\n{}",
        logs()
    );
    // The bootstrap peer advertised coturn in TURN-SERVICE; every NAT'd peer found it
    // there and got a relayed address from it (Allocate with long-term credentials, RFC
    // 5766 §6).
    let log_of =
        |i: usize| std::fs::read_to_string(dir.join(format!("p{i}.log"))).unwrap_or_default();
    assert!(
        log_of(0).contains("TURN server advertised in TURN-SERVICE"),
        "p0 did not advertise the TURN server:\n{}",
        tail(&dir, 0)
    );
    for i in 1..=6 {
        let relayed = wait(Duration::from_secs(60), "relayed address", || {
            let log = log_of(i);
            log.contains("TURN server found in TURN-SERVICE")
                && log.contains("TURN relayed address allocated")
        });
        assert!(
            relayed,
            "p{i} found no TURN server or got no relayed address:\n{}",
            tail(&dir, i)
        );
    }
    let mut m = Vec::new();
    let all = wait(Duration::from_secs(90), "full matrix", || {
        // Read the Node-IDs again each time: the last peers' status files are new.
        m = matrix(&dir, &ids(7), &[1, 2, 3, 4, 5, 6]);
        m.iter()
            .all(|(_, _, p)| p.as_deref().is_some_and(|p| p.contains('→')))
    });
    print_matrix(
        "NAT matrix, all NAT types (selected ICE pair, local→remote types)",
        &m,
    );
    assert!(all, "a pair did not connect:\n{}", logs());
    let relayed = |a: usize, b: usize| {
        m.iter()
            .find(|(i, j, _)| (*i, *j) == (a, b))
            .and_then(|(_, _, p)| p.clone())
            .is_some_and(|p| p.contains("relay"))
    };
    for (a, b) in [(3, 5), (3, 6), (4, 5), (4, 6), (5, 6)] {
        assert!(
            relayed(a, b),
            "{} ↔ {} must go through the relay: {m:?}",
            label(a),
            label(b)
        );
    }

    // A client behind a symmetric NAT (p5's host), with the lab's TURN server (its
    // responsible peer may be behind a restricted NAT), stores and fetches what the
    // client behind the PR NAT stored; the client behind the EIM NAT fetches its value.
    let h5 = lab.ns("h5");
    let pw = turn.password_file.to_str().unwrap();
    let with_turn = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--turn",
            &turn.addr,
            "--turn-user",
            "lab",
            "--turn-password-file",
            pw,
        ]
        .map(String::from)
        .to_vec();
        v.extend(args.iter().map(|a| a.to_string()));
        v
    };
    let run9 = |args: &[&str]| {
        let v = with_turn(args);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        reload_in(&h5, &peer_dir(&dir, 9), port, &v)
    };
    let store9 = run9(&[
        "store",
        "--kind",
        "0xf0000001",
        "from behind a symmetric NAT",
    ]);
    assert!(
        store9.status.success(),
        "reload store from behind a symmetric NAT failed: {}\n{}",
        String::from_utf8_lossy(&store9.stderr),
        logs()
    );
    let fetch9 = run9(&["fetch", "--kind", "0xf0000001", "--resource", &user7]);
    let out = String::from_utf8_lossy(&fetch9.stdout);
    assert!(
        fetch9.status.success() && out.contains("through two NATs"),
        "fetch from behind a symmetric NAT: {out}\n{}",
        String::from_utf8_lossy(&fetch9.stderr)
    );
    let user9 = format!("p9@{OVERLAY}");
    let fetch8 = reload_in(
        &lab.ns("h1"),
        &peer_dir(&dir, 8),
        port,
        &["fetch", "--kind", "0xf0000001", "--resource", &user9],
    );
    let out = String::from_utf8_lossy(&fetch8.stdout);
    assert!(
        fetch8.status.success() && out.contains("from behind a symmetric NAT"),
        "fetch of the symmetric client's value: {out}\n{}",
        String::from_utf8_lossy(&fetch8.stderr)
    );

    // The NATs forget idle UDP bindings after 30 s (Linux connection tracking's
    // `nf_conntrack_udp_timeout`): a TURN allocation lives only as long as the binding of
    // its 5-tuple (RFC 8656 §22.2), so the peers must keep the bindings towards the TURN
    // server alive (Binding indications, `turn::KEEPALIVE`). Nothing uses the
    // application sockets' allocations until phase 3: after this pause, longer than the
    // NATs' timeout, their flows through the relay work only if the bindings were kept.
    std::thread::sleep(Duration::from_secs(35));

    // Phase 3: AppAttach (§6.5.2) from every NAT'd peer to every other one, all at once:
    // `reload-node appattach` sets up an echo flow — ICE between the two peers'
    // application sockets, DTLS over the selected pair — and times a message over it.
    let ids7 = ids(7);
    let runs: Vec<_> = (1..=6usize)
        .flat_map(|i| (i + 1..=6).map(move |j| (i, j)))
        .map(|(i, j)| {
            let (dir, target) = (dir.clone(), ids7[j].clone());
            std::thread::spawn(move || {
                let out = Command::new("timeout")
                    .args(["100", procs::NODE, "appattach", "--data-dir"])
                    .arg(peer_dir(&dir, i))
                    .arg(&target)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                (i, j, out.status.success(), text)
            })
        })
        .collect();
    let mut apps = Vec::new();
    let mut failures = String::new();
    for r in runs {
        let (i, j, ok, text) = r.join().unwrap();
        // "appattach HEX: dtls over relay A -> prflx B; set up in …"
        let w: Vec<&str> = text.split_whitespace().collect();
        let pair = w
            .iter()
            .position(|x| *x == "over")
            .filter(|_| ok)
            .and_then(|k| Some(format!("{}→{}", w.get(k + 1)?, w.get(k + 4)?)));
        if pair.is_none() {
            failures.push_str(&format!("{} → {}: {text}\n", label(i), label(j)));
        }
        apps.push((i, j, pair));
    }
    print_matrix(
        "AppAttach matrix, echo flows (selected ICE pair, requester→answerer types)",
        &apps,
    );
    assert!(
        failures.is_empty(),
        "AppAttach failed:\n{failures}\n{}",
        all7.iter()
            .map(|&i| format!("--- p{i} warnings\n{}\n", warnings(&dir, i)))
            .collect::<String>()
    );
    let app_relayed = |a: usize, b: usize| {
        apps.iter()
            .find(|(i, j, _)| (*i, *j) == (a, b))
            .and_then(|(_, _, p)| p.clone())
            .is_some_and(|p| p.contains("relay"))
    };
    // The bindings towards the TURN server were kept alive through the pause: no
    // allocation was lost and made again (which would hide a missing keepalive).
    for i in all7 {
        let log = std::fs::read_to_string(dir.join(format!("p{i}.log"))).unwrap_or_default();
        assert!(
            !log.contains("no longer knows our allocation"),
            "p{i} lost a TURN allocation: {}",
            warnings(&dir, i)
        );
    }
    for (a, b) in [(3, 5), (3, 6), (4, 5), (4, 6), (5, 6)] {
        assert!(
            app_relayed(a, b),
            "the flow {} → {} must go through the relay: {apps:?}",
            label(a),
            label(b)
        );
    }
    drop(procs);
    drop(lab);
}
