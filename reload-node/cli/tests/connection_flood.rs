//! A connection flood against a real `reload-node run` peer (issue 10): hundreds of TCP
//! connections that never start TLS. The peer admits at most `--max-handshakes` of them at
//! a time (the rest are closed at once), closes the admitted ones when their handshake
//! times out — socket and all, so its descriptors return to where they were — and keeps
//! answering on its control socket throughout. Every wait is bounded.

mod procs;

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use procs::{NODE, enroll_peers, free_port, peer_dir, scratch_dir, start_peer, status_file};

/// Open descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Whether the peer has closed `s` (EOF or reset; an alert before it is read and
/// ignored), waiting at most `limit`.
fn closed_by_peer(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut b = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

#[test]
fn a_flood_of_idle_connections_is_capped_and_leaves_no_descriptor_behind() {
    let dir = scratch_dir("reload-conn-flood");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 91], port + 1));
    enroll_peers(&dir, "flood.procs.test", port, addr, 1);
    let mut peer = start_peer(&dir, 0, addr, addr, |cmd| {
        cmd.args(["--max-handshakes", "16", "--handshake-timeout", "3"]);
    });
    procs::wait_status(
        &[status_file(&dir, 0)],
        Duration::from_secs(20),
        "peer up",
        |s| s[0].joined,
    );
    let pid = peer.child.id();
    let baseline = fds(pid);

    // 200 connections that never send a byte.
    let mut conns: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .collect();
    assert!(conns.len() >= 150, "{} connections made", conns.len());
    // Those beyond the cap are closed at once; the admitted ones wait for their handshake.
    let mut refused = 0;
    for c in conns.iter_mut() {
        if closed_by_peer(c, Duration::from_millis(50)) {
            refused += 1;
        }
    }
    assert!(
        refused >= conns.len() - 16,
        "{refused} of {} refused with --max-handshakes 16",
        conns.len()
    );
    // The peer keeps answering meanwhile.
    let out = std::process::Command::new(NODE)
        .args(["status", "--data-dir", peer_dir(&dir, 0).to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After the handshake timeout every admitted connection is closed by the peer …
    let start = Instant::now();
    for c in conns.iter_mut() {
        assert!(
            closed_by_peer(c, Duration::from_secs(10)),
            "an idle connection outlived the handshake timeout"
        );
    }
    // … and its descriptors come back (we still hold our ends open: the peer must close
    // its own, reader included, whatever the remote does).
    loop {
        let now = fds(pid);
        if now <= baseline + 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the peer holds {now} descriptors, {baseline} before the flood"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(conns);
    peer.signal("TERM");
    assert!(peer.wait_exit(Duration::from_secs(10)).success());
    let _ = std::fs::remove_dir_all(&dir);
}
