//! Link secrets are written only when asked for with `--key-log FILE` (issue #10): an
//! `SSLKEYLOGFILE` in the environment is ignored, with a warning; `--key-log` writes the
//! secrets and warns that it does. Two real `reload-node run` processes on loopback, their
//! data directories made from the test PKI (no enrollment server).

#[path = "../../proto/tests/pki/mod.rs"]
mod pki;
mod procs;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use pki::*;
use procs::*;
use reload_proto::check::signed_document;

#[test]
fn run_help_documents_the_flag_and_ignores_sslkeylogfile() {
    let out = Command::new(NODE).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(help.contains("--key-log <FILE>"), "{help}");
    assert!(
        help.contains("SSLKEYLOGFILE environment variable is ignored"),
        "{help}"
    );
    assert!(
        !help.contains("[env: SSLKEYLOGFILE"),
        "not read from the environment: {help}"
    );
}

#[test]
fn sslkeylogfile_alone_writes_nothing_and_key_log_writes_the_secrets() {
    let dir = scratch_dir("reload-keylog");
    let f = fixture();
    let doc = signed_document(&mut config(&f, 1), &f.config_signer, &f.kind_signer).unwrap();
    for i in 0..2 {
        let d = peer_dir(&dir, i);
        std::fs::create_dir_all(&d).unwrap();
        reload_node::datadir::write_private_file(
            &d.join(reload_node::datadir::CONFIG_FILE),
            doc.as_bytes(),
        )
        .unwrap();
        let creds = f.ca.node(false, 0x4b00_0000 + i as u128, &user(i));
        reload_node::datadir::save_credentials(&d, &creds).unwrap();
    }
    let env_log = dir.join("env.keys");
    let flag_log = dir.join("flag.keys");
    let port = free_port();
    // Distinct loopback addresses: no port after `port` is assumed free.
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 95 + i as u8], port));
    // p0 with SSLKEYLOGFILE only; p1 with SSLKEYLOGFILE and --key-log.
    let peers = start_peers(&dir, 2, addr, Duration::from_secs(20), |i, cmd| {
        cmd.env("SSLKEYLOGFILE", &env_log).args(["--log", "info"]);
        if i == 1 {
            cmd.arg("--key-log").arg(&flag_log);
        }
    });
    // Linked to each other: both sides went through a TLS handshake.
    wait_status(
        &[status_file(&dir, 0), status_file(&dir, 1)],
        Duration::from_secs(30),
        "p0 and p1 linked",
        |s| s.iter().all(|s| !s.connected.is_empty()),
    );
    drop(peers);

    assert!(
        !env_log.exists(),
        "SSLKEYLOGFILE alone turned key logging on"
    );
    let keys = std::fs::read_to_string(&flag_log).expect("--key-log writes the file");
    assert!(
        keys.lines().any(|l| l.starts_with("CLIENT_")),
        "NSS key log lines expected: {keys}"
    );
    let mode = std::fs::metadata(&flag_log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let log0 = std::fs::read_to_string(dir.join("p0.log")).unwrap();
    let log1 = std::fs::read_to_string(dir.join("p1.log")).unwrap();
    assert!(
        log0.contains("SSLKEYLOGFILE is set")
            && log0.contains("but ignored")
            && log0.contains("give --key-log FILE"),
        "{log0}"
    );
    assert!(!log0.contains("--key-log: writing"), "{log0}");
    assert!(
        log1.contains(&format!(
            "--key-log: writing the TLS and DTLS link secrets to {}",
            flag_log.display()
        )) && log1.contains("never for production"),
        "{log1}"
    );
    assert!(!log1.contains("SSLKEYLOGFILE is set"), "{log1}");
    let _ = std::fs::remove_dir_all(&dir);
}
