//! Real processes (issue #5): `reload-enroll` serves an overlay; peers enroll with
//! `reload-node enroll` and run as separate `reload-node run` processes on 127.0.0.x; the
//! ring forms; a client (§4.2) attaches to the peer responsible for its Node-ID and
//! reaches the ring (and is reached) through it; after `kill -9` of two non-adjacent
//! peers the survivors' ring heals; one of the killed peers restarts on its old address
//! and joins again. Over TLS-TCP-FH-NO-ICE (10 peers) and DTLS-UDP-SR-NO-ICE (5 peers).
//! Ring state is read from each process's `--status-file`; every wait is bounded.

mod procs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use procs::{
    NODE, Proc, enroll_peers, peer_dir, scratch_dir, start_peer, start_peers, status_file,
    wait_ring, wait_status,
};

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
    // One more than the ring: the last one runs as a client.
    enroll_peers(&dir, &overlay, base_port, addr(0), peers + 1);

    let mut running: Vec<Option<Proc>> =
        start_peers(&dir, peers, addr, Duration::from_secs(20), |_, cmd| {
            cmd.args(["--protocol", protocol, "--log", "warn"]);
        })
        .into_iter()
        .map(Some)
        .collect();
    let files: Vec<PathBuf> = (0..peers).map(|i| status_file(&dir, i)).collect();
    let ring = wait_ring(&files, Duration::from_secs(150));

    // A client (§4.2): attached to exactly the peer responsible for its Node-ID, in no
    // peer's neighbour lists; it pings a peer through it, and a peer pings it.
    let c = peers;
    let client = start_peer(&dir, c, addr(c), addr(1), |cmd| {
        cmd.args(["--protocol", protocol, "--log", "warn", "--client"]);
    });
    let mut ids: Vec<String> = ring.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    let responsible_for = |id: &str| -> String {
        ids.iter()
            .find(|p| p.as_str() >= id)
            .unwrap_or(&ids[0])
            .clone()
    };
    // Its one link ends up being to its responsible peer (first the bootstrap link, then
    // both, then that one only).
    let client_status = wait_status(
        &[status_file(&dir, c)],
        Duration::from_secs(60),
        "client attached to its responsible peer only",
        |s| s[0].connected == vec![responsible_for(&s[0].id)],
    );
    let client_id = client_status[0].id.clone();
    let responsible = responsible_for(&client_id);
    assert!(!client_status[0].joined, "a client is not part of the ring");
    // Pings across the ring between peers half a ring apart, both ways.
    let half = |i: usize| {
        let k = ids.iter().position(|id| *id == ring[i].id).unwrap();
        ids[(k + peers / 2) % peers].clone()
    };
    for i in [0, peers - 1] {
        ping_ok(&peer_dir(&dir, i), &half(i));
    }
    let far = ids.iter().find(|id| **id != responsible).unwrap().clone();
    ping_ok(&peer_dir(&dir, c), &far);
    let from_ring = (0..peers).find(|&i| ring[i].id == far).unwrap();
    ping_ok(&peer_dir(&dir, from_ring), &client_id);
    let statuses = wait_ring(&files, Duration::from_secs(10));
    assert!(
        statuses
            .iter()
            .all(|s| !s.successors.contains(&client_id) && !s.predecessors.contains(&client_id)),
        "no peer counts the client as a neighbour"
    );
    drop(client);

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

    // The first victim comes back on its old address with its old credentials (over
    // DTLS its old association still exists at the others until they notice).
    let back = victims[0];
    running[back] = Some(start_peer(&dir, back, addr(back), addr(0), |cmd| {
        cmd.args(["--protocol", protocol, "--log", "warn"]);
    }));
    let with_back: Vec<PathBuf> = (0..peers)
        .filter(|i| *i != victims[1])
        .map(|i| status_file(&dir, i))
        .collect();
    let rejoined = wait_ring(&with_back, Duration::from_secs(150));
    assert_eq!(rejoined.len(), peers - 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ten_tls_processes_join_and_heal_after_kill_9() {
    overlay("tls", 10, "tls", procs::free_port());
}

/// Over DTLS a dead peer is noticed by the keepalive Ping's retransmission timeout; two
/// peers attaching each other at once keep to one association (§6.5.1.2 tie-break).
#[test]
fn five_dtls_processes_join_and_heal_after_kill_9() {
    overlay("dtls", 5, "dtls", procs::free_port());
}

/// `reload-node ping` from the peer in `data_dir` to Node-ID `to` is answered by `to`.
fn ping_ok(data_dir: &std::path::Path, to: &str) {
    let out = std::process::Command::new(NODE)
        .arg("ping")
        .arg("--data-dir")
        .arg(data_dir)
        .arg(to)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(to),
        "ping {to} from {}: {text} {}",
        data_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
