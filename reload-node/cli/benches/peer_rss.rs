//! Idle memory of real peers, reported, never asserted.
//!
//! `cargo bench -p reload-node-cli --bench peer_rss -- [P]`: P (default 5) `reload-node run`
//! processes (enrolled with `reload-enroll` as in `tests/processes.rs`, TLS over
//! 127.0.0.x) form a ring; after 10 s idle, each process's VmRSS, VmHWM and thread count
//! from `/proc/PID/status`.

#[path = "../tests/procs/mod.rs"]
mod procs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// VmRSS (or another `/proc/PID/status` field) in KiB.
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---- real processes --------------------------------------------------------------

/// `procs::enroll_bin` would build a missing `reload-enroll` without `--release`, i.e. not
/// next to the bench's `reload-node`: build it there first.
fn build_release_enroll() {
    let dir = PathBuf::from(procs::NODE).parent().unwrap().to_path_buf();
    if !dir.join("reload-enroll").is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "--release", "-p", "reload-enroll"])
            .args(["--bin", "reload-enroll"])
            .status()
            .unwrap();
        assert!(st.success(), "building reload-enroll failed");
    }
}

fn process(peers: usize) {
    println!("== real processes: {peers} `reload-node run` peers over TLS on 127.0.0.x");
    let base_port: u16 = 46084;
    let dir = procs::scratch_dir("reload-bench-rss");
    build_release_enroll();
    let overlay = "rss.bench.test";
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 10 + i as u8], base_port + 1));
    procs::enroll_peers(&dir, overlay, base_port, addr(0), peers);
    let running = procs::start_peers(&dir, peers, addr, Duration::from_secs(20), |_, cmd| {
        cmd.args(["--protocol", "tls", "--log", "warn"]);
    });
    let files: Vec<PathBuf> = (0..peers).map(|i| procs::status_file(&dir, i)).collect();
    let st = Instant::now();
    procs::wait_ring(&files, Duration::from_secs(150));
    println!("ring formed after {:.1?}; idle 10 s", st.elapsed());
    std::thread::sleep(Duration::from_secs(10));
    let mut rss = Vec::new();
    for (i, p) in running.iter().enumerate() {
        let pid = p.child.id().to_string();
        let (r, h, t) = (
            status_kib(&pid, "VmRSS:").unwrap_or(0),
            status_kib(&pid, "VmHWM:").unwrap_or(0),
            status_kib(&pid, "Threads:").unwrap_or(0),
        );
        println!(
            "peer {i} (pid {pid}): VmRSS {:.1} MiB, VmHWM {:.1} MiB, {t} threads",
            mib(r),
            mib(h)
        );
        rss.push(r);
    }
    rss.sort();
    println!(
        "idle RSS of one peer in a ring of {peers}: median {:.1} MiB (min {:.1}, max {:.1})",
        mib(rss[rss.len() / 2]),
        mib(rss[0]),
        mib(rss[rss.len() - 1])
    );
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes `--bench`; anything else starting with `-` is ignored too.
    let peers = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    process(peers);
}
