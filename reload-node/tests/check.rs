//! The full configuration check (RFC 6940 §11.1) with real signatures, and the
//! `reload-node config check` / `cert show` commands.

mod pki;

use std::process::Command;
use std::time::SystemTime;

use pki::*;
use reload_node::check::{CheckOptions, check_document, signed_document};
use reload_node::config::{
    AccessPolicy, ConfigDocument, KindDataModel, KindDefinition, KindRef, OverlayConfig,
};
use reload_node::sign::Credentials;
use reload_wire::storage::KindId;
use time::{Duration, OffsetDateTime};

struct Fixture {
    ca: TestCa,
    config_signer: Credentials,
    kind_signer: Credentials,
}

fn fixture() -> Fixture {
    let ca = TestCa::new(true);
    let config_signer = ca.node(true, 0xc0f1_6000, "config-signer");
    let kind_signer = ca.node(false, 0x0c1d_5000, "kind-signer");
    Fixture {
        ca,
        config_signer,
        kind_signer,
    }
}

fn config(f: &Fixture, sequence: u16) -> OverlayConfig {
    let mut c = OverlayConfig::new(OVERLAY);
    c.sequence = sequence;
    c.expiration =
        Some(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + Duration::days(30));
    c.root_certs = vec![f.ca.der.clone()];
    c.configuration_signers = vec![f.config_signer.node_id.as_bytes().to_vec()];
    c.kind_signers = vec![f.kind_signer.node_id.as_bytes().to_vec()];
    c.enrollment_servers = vec![format!("https://{OVERLAY}/enroll")];
    c.kinds = vec![
        KindDefinition::new(
            KindRef::Name("SIP-REGISTRATION".into()),
            KindDataModel::Dictionary,
            AccessPolicy::UserNodeMatch,
            10,
            1000,
        ),
        KindDefinition::new(
            KindRef::Id(KindId(0xf000_0001)),
            KindDataModel::Array,
            AccessPolicy::UserMatch,
            4,
            200,
        ),
    ];
    c
}

fn check(doc: &str, previous: Option<OverlayConfig>) -> Vec<String> {
    let r = check_document(
        doc.as_bytes(),
        &CheckOptions {
            verify: true,
            previous,
            now: SystemTime::now(),
        },
    );
    r.problems.iter().map(|p| p.to_string()).collect()
}

#[test]
fn a_properly_signed_document_is_clean() {
    let f = fixture();
    let mut c = config(&f, 1);
    let doc = signed_document(&mut c, &f.config_signer, &f.kind_signer).unwrap();
    assert_eq!(check(&doc, None), Vec::<String>::new(), "{doc}");
    // It parses back to the same configuration.
    let parsed = ConfigDocument::parse(&doc).unwrap();
    assert_eq!(parsed.configurations[0].config, c);
}

#[test]
fn tampering_breaks_the_configuration_signature() {
    let f = fixture();
    let mut c = config(&f, 1);
    let doc = signed_document(&mut c, &f.config_signer, &f.kind_signer).unwrap();
    let tampered = doc.replacen("<max-message-size>", "<max-message-size>1", 1);
    let tampered = if tampered == doc {
        doc.replacen("https://", "https://evil.", 1)
    } else {
        tampered
    };
    assert_ne!(tampered, doc);
    let problems = check(&tampered, None);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("configuration signature rejected: signature does not verify")),
        "{problems:?}"
    );
}

#[test]
fn only_configuration_signers_may_sign() {
    let f = fixture();
    let mut c = config(&f, 1);
    let outsider = f.ca.node(true, 0xbad, "outsider");
    let doc = signed_document(&mut c, &outsider, &f.kind_signer).unwrap();
    let problems = check(&doc, None);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("is not allowed to sign")),
        "{problems:?}"
    );
    // A signer from an unknown CA.
    let other_ca = TestCa::named(true, "other root");
    let foreign = other_ca.node(true, 0xc0f1_6000, "config-signer");
    let mut c = config(&f, 1);
    let doc = signed_document(&mut c, &foreign, &f.kind_signer).unwrap();
    let problems = check(&doc, None);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("does not chain to a root-cert")),
        "{problems:?}"
    );
}

#[test]
fn a_new_configuration_needs_the_old_signers_and_a_newer_sequence() {
    let f = fixture();
    let previous = config(&f, 7);
    // Same sequence: refused.
    let mut same = config(&f, 7);
    let doc = signed_document(&mut same, &f.config_signer, &f.kind_signer).unwrap();
    assert!(
        check(&doc, Some(previous.clone()))
            .iter()
            .any(|p| p.contains("is not newer"))
    );
    // Newer, signed by the old signer: accepted.
    let mut newer = config(&f, 8);
    let doc = signed_document(&mut newer, &f.config_signer, &f.kind_signer).unwrap();
    assert_eq!(check(&doc, Some(previous.clone())), Vec::<String>::new());
    // Newer, but signed by a signer that only the new document lists (§11.1: the signer
    // must come from the configuration in use).
    let usurper = f.ca.node(true, 0x0005_5e15, "usurper");
    let mut hijack = config(&f, 9);
    hijack.configuration_signers = vec![usurper.node_id.as_bytes().to_vec()];
    let doc = signed_document(&mut hijack, &usurper, &f.kind_signer).unwrap();
    assert_eq!(check(&doc, None), Vec::<String>::new(), "fine on its own");
    assert!(
        check(&doc, Some(previous))
            .iter()
            .any(|p| p.contains("is not allowed to sign"))
    );
    // Wrap-around: 65534 → 0 is newer.
    let old = config(&f, 65534);
    let mut wrapped = config(&f, 0);
    let doc = signed_document(&mut wrapped, &f.config_signer, &f.kind_signer).unwrap();
    assert_eq!(check(&doc, Some(old)), Vec::<String>::new());
}

#[test]
fn kind_signatures_are_checked() {
    let f = fixture();
    let mut c = config(&f, 1);
    // Kinds signed by someone who is not a kind-signer.
    let doc = signed_document(&mut c, &f.config_signer, &f.config_signer).unwrap();
    let problems = check(&doc, None);
    assert_eq!(
        problems
            .iter()
            .filter(|p| p.contains("kind-signature rejected"))
            .count(),
        2,
        "{problems:?}"
    );
}

#[test]
fn expired_configuration_is_reported() {
    let f = fixture();
    let mut c = config(&f, 1);
    c.expiration =
        Some(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::days(1));
    let doc = signed_document(&mut c, &f.config_signer, &f.kind_signer).unwrap();
    assert!(check(&doc, None).iter().any(|p| p.contains("expired")));
}

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
        "/tests/fixtures/rfc6940-example.relo"
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
        reload_node::identity::to_pem("CERTIFICATE", f.kind_signer.cert.der()),
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

#[test]
fn a_new_configuration_tells_what_to_reconfigure_and_drop() {
    use reload_node::check::config_change;
    let f = fixture();
    let mut old = config(&f, 1);
    let old_doc = signed_document(&mut old, &f.config_signer, &f.kind_signer).unwrap();
    let old = ConfigDocument::parse(&old_doc)
        .unwrap()
        .configurations
        .remove(0)
        .config;

    // Same settings, one Kind's limit raised: nothing to drop, one changed Kind.
    let mut same = config(&f, 2);
    same.kinds[1].max_size = 400;
    let doc = ConfigDocument::parse(
        &signed_document(&mut same, &f.config_signer, &f.kind_signer).unwrap(),
    )
    .unwrap();
    let ch = config_change(&old, &doc, 0, SystemTime::now());
    assert!(
        ch.rejoin_because.is_empty() && ch.dropped_kinds.is_empty(),
        "{ch:?}"
    );
    assert_eq!(ch.changed_kinds, vec![KindId(0xf000_0001)]);

    // The kind signer is removed: every Kind it signed is discarded; and a link-protocol
    // change means leaving and rejoining.
    let new_signer = f.ca.node(true, 0x0c1d_6000, "new-kind-signer");
    let mut revoked = config(&f, 3);
    revoked.kind_signers = vec![new_signer.node_id.as_bytes().to_vec()];
    revoked.no_ice = !revoked.no_ice;
    let doc = ConfigDocument::parse(
        &signed_document(&mut revoked, &f.config_signer, &f.kind_signer).unwrap(),
    )
    .unwrap();
    let ch = config_change(&old, &doc, 0, SystemTime::now());
    assert_eq!(ch.rejoin_because, vec!["no-ice"]);
    assert_eq!(
        ch.dropped_kinds,
        vec![KindId::SIP_REGISTRATION, KindId(0xf000_0001)]
    );

    // A Kind that disappears from the configuration is discarded too.
    let mut fewer = config(&f, 4);
    fewer.kinds.truncate(1);
    let doc = ConfigDocument::parse(
        &signed_document(&mut fewer, &f.config_signer, &f.kind_signer).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config_change(&old, &doc, 0, SystemTime::now()).dropped_kinds,
        vec![KindId(0xf000_0001)]
    );
}

#[test]
fn credentials_are_stored_owner_only_and_load_back() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("reload-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = fixture();
    f.kind_signer.save(&dir).unwrap();
    for file in [reload_node::sign::KEY_FILE, reload_node::sign::CERT_FILE] {
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let back = Credentials::load(&dir, 16, None).unwrap();
    assert_eq!(back.node_id, f.kind_signer.node_id);
    assert_eq!(back.cert.der(), f.kind_signer.cert.der());
    // The key really is the same: what it signs verifies with the old certificate.
    let sig = back.sign_with_identity(b"x").unwrap();
    let input = [
        &b"x"[..],
        &reload_wire::Wire::to_bytes(&sig.identity).unwrap(),
    ]
    .concat();
    reload_node::sign::verify_with_certificate(
        sig.algorithm,
        &f.kind_signer.cert,
        &input,
        &sig.signature_value,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
