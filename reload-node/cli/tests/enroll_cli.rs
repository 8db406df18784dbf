//! `reload-node enroll` on the command line: its help explains where the configuration
//! comes from and why it is trusted; bad invocations fail clearly. (The enrollment itself
//! is tested end to end against a real server in `enrollment/tests/`.)

use std::process::Command;

fn node(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reload-node"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_explains_discovery_and_trust() {
    let (code, help, _) = node(&["enroll", "--help"]);
    assert_eq!(code, 0);
    for w in [
        "_reload-config._tcp",
        "--config-url",
        "--config-file",
        "--ca-cert",
        "--config-signer-sha256",
        "trust on first use",
        "--resolve",
        "--dns-server",
        "--password-stdin",
        "--self-signed",
    ] {
        assert!(help.contains(w), "enroll --help lacks {w}:\n{help}");
    }
}

#[test]
fn bad_invocations_fail_clearly() {
    let (code, _, err) = node(&["enroll"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--overlay NAME, --config-url URL or --config-file FILE"),
        "{err}"
    );
    let (code, _, err) = node(&[
        "enroll",
        "--overlay",
        "x.test",
        "--config-signer-sha256",
        "abc",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("64 hex digits"), "{err}");
    let (code, _, err) = node(&[
        "enroll",
        "--config-url",
        "http://x.test/",
        "--overlay",
        "x.test",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not an https: URL"), "{err}");
    let (code, _, err) = node(&["enroll", "--overlay", "x.test", "--resolve", "x.test"]);
    assert_eq!(code, 2);
    assert!(err.contains("HOST=IP"), "{err}");
}
