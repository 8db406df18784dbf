//! Real processes (issue #5): `reload-enroll` serves an overlay; peers enroll with
//! `reload-node enroll` and run as separate `reload-node run` processes on 127.0.0.x; the
//! ring forms; after `kill -9` of two non-adjacent peers the survivors' ring heals. Over
//! TLS-TCP-FH-NO-ICE (10 peers) and DTLS-UDP-SR-NO-ICE (5 peers). Ring state is read from
//! each process's `--status-file`; every wait is bounded.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = env!("CARGO_BIN_EXE_reload-node");

fn enroll_bin() -> PathBuf {
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

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(bin: &Path, args: &[&str], stdin: Option<&str>) {
    let mut c = Command::new(bin);
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
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

fn wait_for_port(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone)]
struct Status {
    id: String,
    joined: bool,
    successors: Vec<String>,
    predecessors: Vec<String>,
}

/// Reads the small JSON a status file holds (flat, strings and arrays of strings).
fn read_status(path: &Path) -> Option<Status> {
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
    })
}

fn ring_ok(statuses: &[Status]) -> bool {
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

fn wait_ring(files: &[PathBuf], limit: Duration) -> Vec<Status> {
    let start = Instant::now();
    loop {
        let st: Vec<Status> = files.iter().filter_map(|f| read_status(f)).collect();
        if st.len() == files.len() && ring_ok(&st) {
            return st;
        }
        assert!(
            start.elapsed() < limit,
            "ring not correct after {limit:?}: {st:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The process tests run one at a time: each starts up to ten peers, and the machine has
/// two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn overlay(name: &str, peers: usize, protocol: &str, base_port: u16) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("reload-procs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let eb = enroll_bin();
    let edir = dir.join("enroll");
    let overlay = format!("{name}.procs.test");
    let eaddr: SocketAddr = format!("127.0.0.1:{base_port}").parse().unwrap();
    // Peer i listens on 127.0.0.(10+i).
    let addr = |i: usize| -> SocketAddr {
        format!("127.0.0.{}:{}", 10 + i, base_port + 1)
            .parse()
            .unwrap()
    };
    run(
        &eb,
        &[
            "init",
            "--overlay",
            &overlay,
            "--data-dir",
            edir.to_str().unwrap(),
            "--port",
            &base_port.to_string(),
            "--bootstrap",
            &addr(0).to_string(),
            "--key-type",
            "p256",
        ],
        None,
    );
    for i in 0..peers {
        run(
            &eb,
            &[
                "user",
                "add",
                &format!("p{i}"),
                "--data-dir",
                edir.to_str().unwrap(),
                "--password-stdin",
            ],
            Some(&format!("password-of-p{i}\n")),
        );
    }
    let server = Proc(
        Command::new(&eb)
            .args([
                "serve",
                "--data-dir",
                edir.to_str().unwrap(),
                "--listen",
                &eaddr.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(eaddr);
    let url = format!("https://{overlay}:{base_port}/.well-known/reload-config");
    let resolve = format!("{overlay}=127.0.0.1");
    for i in 0..peers {
        let pdir = dir.join(format!("p{i}"));
        run(
            Path::new(NODE),
            &[
                "enroll",
                "--overlay",
                &overlay,
                "--user",
                &format!("p{i}"),
                "--password-stdin",
                "--config-url",
                &url,
                "--resolve",
                &resolve,
                "--ca-cert",
                edir.join("ca.crt").to_str().unwrap(),
                "--data-dir",
                pdir.to_str().unwrap(),
                "--key-type",
                "p256",
            ],
            Some(&format!("password-of-p{i}\n")),
        );
    }
    drop(server);

    let status = |i: usize| dir.join(format!("p{i}.status"));
    let mut procs: Vec<Option<Proc>> = Vec::new();
    for i in 0..peers {
        let pdir = dir.join(format!("p{i}"));
        let a = addr(i).to_string();
        let s = status(i);
        let mut args = vec![
            "run",
            "--data-dir",
            pdir.to_str().unwrap(),
            "--listen",
            &a,
            "--protocol",
            protocol,
            "--status-file",
            s.to_str().unwrap(),
            "--log",
            "warn",
        ];
        let boot = addr(0).to_string();
        if i == 0 {
            args.push("--first");
        } else {
            args.extend(["--bootstrap", &boot]);
        }
        let log = std::fs::File::create(dir.join(format!("p{i}.log"))).unwrap();
        procs.push(Some(Proc(
            Command::new(NODE)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )));
        if i == 0 {
            // The first node must be listening before anyone bootstraps through it.
            let st = Instant::now();
            while read_status(&status(0)).is_none_or(|s| !s.joined) {
                assert!(
                    st.elapsed() < Duration::from_secs(20),
                    "first peer did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let files: Vec<PathBuf> = (0..peers).map(status).collect();
    let ring = wait_ring(&files, Duration::from_secs(150));

    // kill -9 two non-adjacent peers (by ring position), never the bootstrap peer.
    let mut order: Vec<usize> = (0..peers).collect();
    order.sort_by_key(|&i| ring[i].id.clone());
    let pos0 = order.iter().position(|&i| i == 0).unwrap();
    let victims = [order[(pos0 + 1) % peers], order[(pos0 + 3) % peers]];
    for &v in &victims {
        let mut p = procs[v].take().expect("alive");
        Command::new("kill")
            .args(["-9", &p.0.id().to_string()])
            .status()
            .unwrap();
        let _ = p.0.wait();
    }
    let survivors: Vec<PathBuf> = (0..peers)
        .filter(|i| !victims.contains(i))
        .map(status)
        .collect();
    let healed = wait_ring(&survivors, Duration::from_secs(150));
    assert_eq!(healed.len(), peers - 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ten_tls_processes_join_and_heal_after_kill_9() {
    overlay("tls", 10, "tls", 41084);
}

/// Over DTLS a dead peer is noticed by the keepalive Ping's retransmission timeout; two
/// peers attaching each other at once keep to one association (§6.5.1.2 tie-break).
#[test]
fn five_dtls_processes_join_and_heal_after_kill_9() {
    overlay("dtls", 5, "dtls", 42084);
}
