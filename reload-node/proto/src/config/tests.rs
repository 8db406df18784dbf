//! Unit tests of the configuration module's pieces (the document-level tests are in
//! `reload-node/tests/config.rs`).

use time::OffsetDateTime;

use super::*;

#[test]
fn datetime_parses_rfc3339() {
    let (t, zoned) = parse_datetime("2002-10-10T07:00:00Z").unwrap();
    assert!(zoned);
    assert_eq!(t.unix_timestamp(), 1_034_233_200);
    assert_eq!(format_datetime(t), "2002-10-10T07:00:00Z");

    let (t, _) = parse_datetime("2002-10-10t09:00:00.5+02:00").unwrap();
    assert_eq!(t.unix_timestamp(), 1_034_233_200);
    assert_eq!(t.nanosecond(), 500_000_000);
    assert_eq!(format_datetime(t), "2002-10-10T09:00:00.5+02:00");

    let (t, _) = parse_datetime("1999-12-31T23:59:59.123456789-08:30").unwrap();
    assert_eq!(format_datetime(t), "1999-12-31T23:59:59.123456789-08:30");

    // xsd:dateTime without a zone: read as UTC, flagged.
    let (t, zoned) = parse_datetime("2002-10-10T07:00:00").unwrap();
    assert!(!zoned);
    assert_eq!(t.unix_timestamp(), 1_034_233_200);
}

#[test]
fn datetime_refuses_what_is_not_rfc3339() {
    for bad in [
        "",
        "2002-10-10",
        "2002-10-10 07:00:00Z",
        "2002-13-10T07:00:00Z",
        "2002-02-30T07:00:00Z",
        "2002-10-10T24:00:00Z",
        "2002-10-10T07:60:00Z",
        "2002-10-10T07:00:60Z",
        "2002-10-10T07:00:00+24:00",
        "2002-10-10T07:00:00+0200",
        "2002-10-10T07:00:00.Z",
        "2002-10-10T07:00:00ZZ",
        "+002-10-10T07:00:00Z",
        "２００２-10-10T07:00:00Z",
        "2002-10-10T07:00:0é",
    ] {
        assert!(parse_datetime(bad).is_err(), "{bad:?} accepted");
    }
    // RFC 3339 §5.6 allows any number of fraction digits (`1*DIGIT`); beyond nanoseconds
    // they are dropped.
    let (t, _) = parse_datetime("2002-10-10T07:00:00.1234567890Z").unwrap();
    assert_eq!(t.nanosecond(), 123_456_789);
}

#[test]
fn hex_round_trips_and_refuses_junk() {
    assert_eq!(
        from_hex("47112162E84c69ba").unwrap(),
        [0x47, 0x11, 0x21, 0x62, 0xe8, 0x4c, 0x69, 0xba]
    );
    assert_eq!(to_hex(&[0, 0xab, 0xff]), "00abff");
    assert_eq!(from_hex("").unwrap(), Vec::<u8>::new());
    assert!(from_hex("abc").is_err());
    assert!(from_hex("zz").is_err());
    assert!(from_hex("é1").is_err());
}

#[test]
fn sequence_comparison_at_the_wrap() {
    // Serial-number arithmetic modulo 65535.
    assert!(sequence_is_newer(1, 0));
    assert!(sequence_is_newer(0, 65534));
    assert!(sequence_is_newer(32766, 65534));
    assert!(!sequence_is_newer(32767, 65534), "32768 ahead is behind");
    assert!(sequence_is_newer(32767, 0), "32767 ahead is ahead");
    assert!(!sequence_is_newer(32768, 0), "32768 ahead is 32767 behind");
    assert!(sequence_is_newer(0, 32768));
    // 65535 is reserved and always accepted; a current 65535 is older than anything.
    assert!(sequence_is_newer(65535, 12345));
    assert!(sequence_is_newer(0, 65535));
    assert_eq!(next_sequence(0), 1);
    assert_eq!(next_sequence(65533), 65534);
    assert_eq!(next_sequence(65534), 0);
    assert_eq!(next_sequence(65535), 0);
    // Exactly one of a, b is newer for every distinct pair (sampled).
    for a in (0u16..65535).step_by(331) {
        for b in 0u16..65535 {
            if a != b {
                assert_ne!(sequence_is_newer(a, b), sequence_is_newer(b, a), "{a} {b}");
            }
        }
    }
}

#[test]
fn problems_display_line_element_message() {
    let p = ConfigProblem::new("kind-signer", 49, "Node-ID 00 is 1 bytes");
    assert_eq!(
        p.to_string(),
        "line 49: <kind-signer>: Node-ID 00 is 1 bytes"
    );
}

#[test]
fn escaping_survives_parsing() {
    let mut c = OverlayConfig::new("a&b<c>\"d\"\te\nf\rg");
    c.shared_secret = Some("x & y < z > w \"q\" \r\n end".to_string());
    let xml = ConfigDocument::assemble(&[(c.to_xml(), vec![])]);
    let doc = ConfigDocument::parse(&xml).unwrap();
    // The attribute keeps its characters (escaped as character references); the text
    // value keeps its inner characters.
    assert_eq!(doc.configurations[0].config.instance_name, c.instance_name);
    assert_eq!(doc.configurations[0].config.shared_secret, c.shared_secret);
}

#[test]
fn a_configuration_built_in_code_checks_clean() {
    let mut c = OverlayConfig::new("overlay.example");
    c.self_signed_permitted = Some(SelfSignedDigest::Sha256);
    c.expiration = Some(OffsetDateTime::from_unix_timestamp(4_000_000_000).unwrap());
    assert_eq!(c.problems(OffsetDateTime::UNIX_EPOCH), vec![]);
    assert!(!c.is_expired(OffsetDateTime::UNIX_EPOCH));
    assert!(c.is_expired(OffsetDateTime::from_unix_timestamp(4_000_000_000).unwrap()));
    c.bad_nodes.push(vec![1; 16]);
    assert!(c.is_bad_node(&[1; 16]));
    assert_eq!(
        SelfSignedDigest::Sha256.identity_digest(),
        Some(crate::identity::SelfSignedDigest::Sha256)
    );
    assert_eq!(
        SelfSignedDigest::Other("md5".into()).identity_digest(),
        None
    );
}

#[test]
fn security_block_decoding_reports_both_failures() {
    let s = SignatureElement::from_base64("%%%", None);
    assert!(s.security_block.unwrap_err().starts_with("not base64"));
    let s =
        SignatureElement::from_base64(" VGhpcyBpcyBub3QgcmlnaHQhCg==\n", Some("rsa-sha1".into()));
    assert_eq!(s.value, "VGhpcyBpcyBub3QgcmlnaHQhCg==");
    assert!(
        s.security_block
            .unwrap_err()
            .starts_with("not a SecurityBlock")
    );
}
