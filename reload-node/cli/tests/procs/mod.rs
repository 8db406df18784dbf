//! Real `reload-node` processes for the integration tests: the `reload-enroll` binary
//! next to `reload-node`, children killed on drop, an overlay's peers enrolled through
//! `reload-enroll serve` and started as `reload-node run`, their `--status-file` read
//! back, and the ring checked. Every wait is bounded.

// Each test crate uses part of this.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const NODE: &str = env!("CARGO_BIN_EXE_reload-node");

/// The `reload-enroll` binary, next to `reload-node` (built if it is not there yet).
pub fn enroll_bin() -> PathBuf {
    let dir = PathBuf::from(NODE).parent().unwrap().to_path_buf();
    let bin = dir.join("reload-enroll");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "reload-enroll",
                "--bin",
                "reload-enroll",
            ])
            .status()
            .unwrap();
        assert!(st.success(), "building reload-enroll failed");
    }
    bin
}

/// An empty directory `NAME-PID` in the temporary directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child that is killed (SIGKILL) and reaped when dropped, unless it has exited.
pub struct Proc {
    pub child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn spawn(cmd: &mut Command, name: impl Into<String>) -> Proc {
        let name = name.into();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { child, name }
    }

    /// `kill -s SIG`.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -s {sig} {}", self.name);
    }

    /// `kill -9`, and reaps it.
    pub fn kill_9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Waits for the child to exit, at most `limit`: `None` if it still runs.
    pub fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the child to exit; fails if it has not within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        self.exit_within(limit)
            .unwrap_or_else(|| panic!("{} did not exit within {limit:?}", self.name))
    }
}

/// Runs `bin ARGS` with `stdin` written to it; fails unless it succeeds.
pub fn run_ok(bin: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn wait_for_port(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The enrollment user of peer `i`.
pub fn user(i: usize) -> String {
    format!("p{i}")
}

/// The data directory of peer `i` of the overlay in `dir`.
pub fn peer_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(user(i))
}

/// The `--status-file` of peer `i` of the overlay in `dir`.
pub fn status_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("p{i}.status"))
}

/// Enrolls `peers` peers: `reload-enroll init` of `overlay` in `dir/enroll` (its
/// configuration names `bootstrap`), a user `p{i}` for each peer, and while
/// `reload-enroll serve` listens on [`ENROLL_IP`]:`port`, `reload-node enroll` of each user
/// into its data directory (`peer_dir`).
pub fn enroll_peers(dir: &Path, overlay: &str, port: u16, bootstrap: SocketAddr, peers: usize) {
    enroll_peers_with(dir, overlay, port, bootstrap, peers, &[]);
}

/// [`enroll_peers`] with more `reload-enroll init` options (e.g. `--kind`).
pub fn enroll_peers_with(
    dir: &Path,
    overlay: &str,
    port: u16,
    bootstrap: SocketAddr,
    peers: usize,
    init_options: &[&str],
) {
    let at = EnrollAt {
        server: SocketAddr::from((ENROLL_IP, port)),
        prefix: &|_| Vec::new(),
    };
    enroll_peers_at(dir, overlay, bootstrap, peers, init_options, &at);
}

/// Where enrollment runs: the server's address, and the command prefix (e.g. `ip netns
/// exec NS`) of the server (`None`) and of each peer's `reload-node enroll` (`Some(i)`).
pub struct EnrollAt<'a> {
    pub server: SocketAddr,
    pub prefix: &'a dyn Fn(Option<usize>) -> Vec<String>,
}

fn command_at(prefix: &[String], bin: &Path) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// [`enroll_peers_with`] with the server and the peers where `at` says (a NAT lab:
/// the server on the public segment, each peer enrolling from behind its NAT). Each
/// `reload-node enroll` is tried again for up to 10 s while the server starts.
pub fn enroll_peers_at(
    dir: &Path,
    overlay: &str,
    bootstrap: SocketAddr,
    peers: usize,
    init_options: &[&str],
    at: &EnrollAt<'_>,
) {
    let eb = enroll_bin();
    let edir = dir.join("enroll");
    let edir_s = edir.to_str().unwrap();
    let password = |i: usize| format!("password-of-p{i}\n");
    let port_s = at.server.port().to_string();
    let bootstrap_s = bootstrap.to_string();
    let mut init = vec![
        "init",
        "--overlay",
        overlay,
        "--data-dir",
        edir_s,
        "--port",
        &port_s,
        "--bootstrap",
        &bootstrap_s,
        "--key-type",
        "p256",
    ];
    init.extend_from_slice(init_options);
    run_ok(&eb, &init, None);
    for i in 0..peers {
        run_ok(
            &eb,
            &[
                "user",
                "add",
                &user(i),
                "--data-dir",
                edir_s,
                "--password-stdin",
            ],
            Some(&password(i)),
        );
    }
    let server = Proc::spawn(
        command_at(&(at.prefix)(None), &eb)
            .args([
                "serve",
                "--data-dir",
                edir_s,
                "--listen",
                &at.server.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "reload-enroll serve",
    );
    let url = format!(
        "https://{overlay}:{}/.well-known/reload-config",
        at.server.port()
    );
    let resolve = format!("{overlay}={}", at.server.ip());
    let ca_cert = edir.join("ca.crt");
    for i in 0..peers {
        let pdir = peer_dir(dir, i);
        let args = [
            "enroll",
            "--overlay",
            overlay,
            "--user",
            &user(i),
            "--password-stdin",
            "--config-url",
            &url,
            "--resolve",
            &resolve,
            "--ca-cert",
            ca_cert.to_str().unwrap(),
            "--data-dir",
            pdir.to_str().unwrap(),
            "--key-type",
            "p256",
        ];
        let t0 = Instant::now();
        loop {
            let mut child = command_at(&(at.prefix)(Some(i)), Path::new(NODE))
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(password(i).as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "reload-node enroll of p{i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(server);
}

/// Starts `reload-node run` for peer `i` of the overlay in `dir`, listening on `listen`:
/// peer 0 starts the overlay (`--first`), the others bootstrap through `bootstrap`. Its
/// data directory is `peer_dir`, its status file `status_file`, its output is appended to
/// `dir/p{i}.log`; `options` adds more options (`--log`, `--protocol`, …).
pub fn start_peer(
    dir: &Path,
    i: usize,
    listen: SocketAddr,
    bootstrap: SocketAddr,
    options: impl FnOnce(&mut Command),
) -> Proc {
    let mut cmd = Command::new(NODE);
    cmd.arg("run")
        .arg("--data-dir")
        .arg(peer_dir(dir, i))
        .args(["--listen", &listen.to_string()])
        .arg("--status-file")
        .arg(status_file(dir, i));
    if i == 0 {
        cmd.arg("--first");
    } else {
        cmd.args(["--bootstrap", &bootstrap.to_string()]);
    }
    options(&mut cmd);
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join(format!("p{i}.log")))
        .unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Proc::spawn(&mut cmd, format!("peer p{i}"))
}

/// Starts `peers` peers with `start_peer`, peer `i` on `addr(i)`, bootstrapping through
/// peer 0, which must be up (joined, by its status file) within `first_up` before anyone
/// bootstraps through it.
pub fn start_peers(
    dir: &Path,
    peers: usize,
    addr: impl Fn(usize) -> SocketAddr,
    first_up: Duration,
    options: impl Fn(usize, &mut Command),
) -> Vec<Proc> {
    let mut procs = Vec::new();
    for i in 0..peers {
        procs.push(start_peer(dir, i, addr(i), addr(0), |cmd| options(i, cmd)));
        if i == 0 {
            wait_status(&[status_file(dir, 0)], first_up, "first peer up", |s| {
                s[0].joined
            });
        }
    }
    procs
}

/// A peer's state, from its `--status-file` (or from `reload-node status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub id: String,
    pub joined: bool,
    pub successors: Vec<String>,
    pub predecessors: Vec<String>,
    pub connected: Vec<String>,
    /// Not in the status file: only `reload-node status` shows it.
    pub routing_table: Vec<String>,
}

/// Reads the small JSON a status file holds (flat, strings and arrays of strings).
pub fn read_status(path: &Path) -> Option<Status> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| -> Option<&str> {
        let start = text.find(&format!("\"{name}\":"))? + name.len() + 3;
        Some(&text[start..])
    };
    let list = |name: &str| -> Vec<String> {
        field(name)
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.split(']').next())
            .map(|inner| {
                inner
                    .split(',')
                    .map(|s| s.trim_matches('"').to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(Status {
        id: field("node_id")?.split('"').nth(1)?.to_string(),
        joined: field("joined")?.starts_with("true"),
        successors: list("successors"),
        predecessors: list("predecessors"),
        connected: list("connected"),
        routing_table: Vec::new(),
    })
}

/// Every peer joined, its first successor and first predecessor its neighbours in the
/// sorted Node-IDs.
pub fn ring_ok(statuses: &[Status]) -> bool {
    let mut ids: Vec<&String> = statuses.iter().map(|s| &s.id).collect();
    ids.sort();
    let n = ids.len();
    statuses.iter().all(|s| {
        let i = ids.iter().position(|x| **x == s.id).unwrap();
        s.joined
            && s.successors.first() == Some(ids[(i + 1) % n])
            && s.predecessors.first() == Some(ids[(i + n - 1) % n])
    })
}

/// Polls the status files until all are there and `cond` holds; fails after `limit`.
pub fn wait_status(
    files: &[PathBuf],
    limit: Duration,
    what: &str,
    cond: impl Fn(&[Status]) -> bool,
) -> Vec<Status> {
    let start = Instant::now();
    loop {
        let st: Vec<Status> = files.iter().filter_map(|f| read_status(f)).collect();
        if st.len() == files.len() && cond(&st) {
            return st;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not reached after {limit:?}: {st:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the status files show a correct ring (`ring_ok`).
pub fn wait_ring(files: &[PathBuf], limit: Duration) -> Vec<Status> {
    wait_status(files, limit, "ring correct", ring_ok)
}

/// A TCP port the system just handed out (and took back), below 65000 so that the few
/// ports after it exist too: free for a test to listen on, on any 127.0.0.x address, with
/// overwhelming likelihood (no fixed ports in tests).
/// The loopback address of the tests' enrollment servers. Not 127.0.0.1: every connection
/// to a loopback address leaves from 127.0.0.1 with an ephemeral port, and one of them
/// could hold the port a server is about to bind.
pub const ENROLL_IP: [u8; 4] = [127, 0, 0, 4];

/// A TCP port free at [`ENROLL_IP`] (below 65000, so that a few ports after it exist).
pub fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind(SocketAddr::from((ENROLL_IP, 0)))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        if port < 65000 {
            return port;
        }
    }
}

/// A tool a test needs is missing: the test is skipped, loudly — or fails where the test
/// command installed its tools (`.ci/test` sets `RELOAD_TEST_TOOLS=required`), so that a
/// skip never passes for a run.
pub fn skip_without_tool(why: &str) {
    if std::env::var("RELOAD_TEST_TOOLS").as_deref() == Ok("required") {
        panic!("{why} (RELOAD_TEST_TOOLS=required: the README's test command installs it)");
    }
    eprintln!("\n*** SKIPPED: {why} ***\n");
}
