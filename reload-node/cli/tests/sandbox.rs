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
    let port = procs::free_port().to_string();
    let (ok, out) = sandbox(&["--peers", "6", "--check", "--port", &port]);
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
        &procs::free_port().to_string(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("answered by"), "{out}");
}
