//! `reload-node sandbox --check` (the README's first command) builds a whole overlay on
//! loopback — enrollment server, enrolled peers over TLS and over DTLS — and exits 0 only
//! when the ring is exactly the sorted Node-IDs and a Ping between distant peers was
//! answered by its target, and a value of each data model was stored, fetched back and
//! held by its replicas.

mod procs;

use std::process::Command;

fn sandbox(args: &[&str]) -> (bool, String) {
    // The sandbox starts the enrollment server binary that sits next to reload-node.
    procs::enroll_bin();
    let out = Command::new(procs::NODE)
        .arg("sandbox")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn sandbox_over_tls() {
    // Port 0: the system picks every port (fixed consecutive ports collide with the
    // sockets of tests running beside this one).
    let (ok, out) = sandbox(&["--peers", "6", "--check", "--port", "0"]);
    assert!(ok, "{out}");
    assert!(out.contains("== waiting for the ring"), "{out}");
    assert!(out.contains("answered by"), "{out}");
    // A value of each data model, fetched back, with its holders (RFC 6940 §7, §10.4).
    assert!(
        out.contains("single     Kind 0xf0000001: \"hello, overlay\""),
        "{out}"
    );
    assert!(out.contains("[0] \"first\", [1] \"second\""), "{out}");
    assert!(
        out.contains("[\"colour\"] \"blue\", [\"shape\"] \"round\""),
        "{out}"
    );
    assert_eq!(out.matches("replica     ").count(), 6, "{out}");
    // Six ring lines: Node-ID, address, successor, predecessor.
    assert_eq!(
        out.lines()
            .filter(
                |l| l.trim_start().starts_with(|c: char| c.is_ascii_hexdigit())
                    && l.contains("127.0.0.1:")
            )
            .count(),
        6,
        "{out}"
    );
}

#[test]
fn sandbox_over_dtls() {
    let (ok, out) = sandbox(&[
        "--peers",
        "4",
        "--check",
        "--protocol",
        "dtls",
        "--port",
        "0",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("answered by"), "{out}");
}

/// `sandbox --ice --check` (RFC 6940 §6.5.1.3): an ICE overlay; the links made by
/// Attaches run over the candidate pairs ICE selected, which are printed.
#[test]
fn sandbox_over_ice() {
    let (ok, out) = sandbox(&["--peers", "4", "--check", "--ice", "--port", "0"]);
    assert!(ok, "{out}");
    assert!(out.contains("== ICE: selected candidate pairs"), "{out}");
    assert!(out.contains(" host 127.0.0.1:"), "{out}");
    assert!(out.contains("answered by"), "{out}");
}

/// `sandbox --sip --check` (RFC 7904): alice calls bob through their two peers; the ladder
/// shows every message at every hop, and the exit status says the call completed.
#[test]
fn sandbox_places_a_sip_call() {
    let (ok, out) = sandbox(&["--sip", "--check", "--port", "0"]);
    assert!(ok, "{out}");
    assert!(out.contains("bob@sandbox.reload.test registered"), "{out}");
    assert!(out.contains("overlay path of the AppAttach"), "{out}");
    for hop in [
        "alice (UA)     -> alice's peer   INVITE",
        "alice's peer   -> bob's peer     INVITE",
        "bob's peer     -> bob (UA)       INVITE",
        "bob's peer     -> alice's peer   180 Ringing (INVITE)",
        "alice's peer   -> alice (UA)     200 OK (INVITE)",
        "alice's peer   -> bob's peer     ACK",
        "bob's peer     -> bob (UA)       BYE",
        "alice's peer   -> alice (UA)     200 OK (BYE)",
    ] {
        assert!(out.contains(hop), "missing {hop:?}: {out}");
    }
    assert!(
        out.contains("call completed: INVITE, 180, 200, ACK, BYE, 200"),
        "{out}"
    );
}
