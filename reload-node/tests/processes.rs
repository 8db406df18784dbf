//! Real processes (issue #5): `reload-enroll` serves an overlay; peers enroll with
//! `reload-node enroll` and run as separate `reload-node run` processes on 127.0.0.x; the
//! ring forms; after `kill -9` of two non-adjacent peers the survivors' ring heals. Over
//! TLS-TCP-FH-NO-ICE (10 peers) and DTLS-UDP-SR-NO-ICE (5 peers). Ring state is read from
//! each process's `--status-file`; every wait is bounded.

mod procs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use procs::{Proc, enroll_peers, scratch_dir, start_peers, status_file, wait_ring};

/// The process tests run one at a time: each starts up to ten peers, and the machine has
/// two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn overlay(name: &str, peers: usize, protocol: &str, base_port: u16) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir(&format!("reload-procs-{name}"));
    let overlay = format!("{name}.procs.test");
    // Peer i listens on 127.0.0.(10+i).
    let addr = |i: usize| -> SocketAddr {
        format!("127.0.0.{}:{}", 10 + i, base_port + 1)
            .parse()
            .unwrap()
    };
    enroll_peers(&dir, &overlay, base_port, addr(0), peers);

    let mut running: Vec<Option<Proc>> =
        start_peers(&dir, peers, addr, Duration::from_secs(20), |_, cmd| {
            cmd.args(["--protocol", protocol, "--log", "warn"]);
        })
        .into_iter()
        .map(Some)
        .collect();
    let files: Vec<PathBuf> = (0..peers).map(|i| status_file(&dir, i)).collect();
    let ring = wait_ring(&files, Duration::from_secs(150));

    // kill -9 two non-adjacent peers (by ring position), never the bootstrap peer.
    let mut order: Vec<usize> = (0..peers).collect();
    order.sort_by_key(|&i| ring[i].id.clone());
    let pos0 = order.iter().position(|&i| i == 0).unwrap();
    let victims = [order[(pos0 + 1) % peers], order[(pos0 + 3) % peers]];
    for &v in &victims {
        running[v].take().expect("alive").kill_9();
    }
    let survivors: Vec<PathBuf> = (0..peers)
        .filter(|i| !victims.contains(i))
        .map(|i| status_file(&dir, i))
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
