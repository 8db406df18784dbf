//! The command line's configuration and certificate commands (`reload-node config check`,
//! `reload-node cert show`) as a user runs them.

#[path = "../../proto/tests/pki/mod.rs"]
mod pki;

use std::process::Command;

use pki::*;
use reload_proto::check::signed_document;

fn reload_node(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reload-node"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn config_check_command() {
    let dir = std::env::temp_dir().join(format!("reload-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = fixture();
    let mut c = config(&f, 3);
    let good = dir.join("good.relo");
    std::fs::write(
        &good,
        signed_document(&mut c, &f.config_signer, &f.kind_signer).unwrap(),
    )
    .unwrap();
    let (code, out) = reload_node(&["config", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK (1 configuration)"), "{out}");

    // The RFC's own example: grammatically valid, unusable. Each known defect is reported.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../proto/tests/fixtures/rfc6940-example.relo"
    );
    let (code, out) = reload_node(&["config", "check", "--no-verify", example]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = reload_node(&["config", "check", example]);
    assert_eq!(code, 1, "{out}");
    for defect in [
        "expired at 2002",
        "not an X.509 certificate",
        "is 8 bytes; node-id-length is 16",
        "config-ext1' is not supported",
        "not a SecurityBlock",
    ] {
        assert!(out.contains(defect), "missing {defect:?} in:\n{out}");
    }
    // --previous: an older sequence is refused.
    let mut older = config(&f, 2);
    let old = dir.join("old.relo");
    std::fs::write(
        &old,
        signed_document(&mut older, &f.config_signer, &f.kind_signer).unwrap(),
    )
    .unwrap();
    let (code, out) = reload_node(&[
        "config",
        "check",
        old.to_str().unwrap(),
        "--previous",
        good.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is not newer"), "{out}");
    // A file that is not there: a readable error, exit 2.
    let (code, out) = reload_node(&["config", "check", "/nonexistent.relo"]);
    assert_eq!(code, 2);
    assert!(out.contains("cannot read /nonexistent.relo"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cert_show_command() {
    let dir = std::env::temp_dir().join(format!("reload-certshow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = fixture();
    let mut c = config(&f, 3);
    let conf = dir.join("overlay.relo");
    std::fs::write(
        &conf,
        signed_document(&mut c, &f.config_signer, &f.kind_signer).unwrap(),
    )
    .unwrap();
    let pem = dir.join("node.pem");
    std::fs::write(
        &pem,
        reload_proto::identity::to_pem("CERTIFICATE", f.kind_signer.cert.der()),
    )
    .unwrap();
    let (code, out) = reload_node(&[
        "cert",
        "show",
        pem.to_str().unwrap(),
        "--config",
        conf.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("node-id:    {}", f.kind_signer.node_id)),
        "{out}"
    );
    assert!(
        out.contains("user name:  kind-signer@test.example.org"),
        "{out}"
    );
    assert!(
        out.contains("acceptable in overlay test.example.org"),
        "{out}"
    );
    // A certificate from another CA, as DER.
    let other = TestCa::named(false, "elsewhere").node(false, 1, "x");
    let der = dir.join("other.der");
    std::fs::write(&der, other.cert.der()).unwrap();
    let (code, out) = reload_node(&[
        "cert",
        "show",
        der.to_str().unwrap(),
        "--config",
        conf.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REFUSED") && out.contains("does not chain"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
