//! The full configuration check (RFC 6940 §11.1) with real signatures, and the
//! `reload-node config check` / `cert show` commands.

mod pki;

use std::time::SystemTime;

use pki::*;
use reload_proto::check::{CheckOptions, check_document, signed_document};
use reload_proto::config::{ConfigDocument, OverlayConfig};
use reload_wire::storage::KindId;
use time::{Duration, OffsetDateTime};

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

#[test]
fn a_new_configuration_tells_what_to_reconfigure_and_drop() {
    use reload_proto::check::config_change;
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
