//! The overlay configuration document (RFC 6940 §11.1): the RFC's own example, grammar
//! errors, defaults, the Kind registry, round trips and hostile input.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use proptest::prelude::*;
use reload_proto::config::*;
use reload_wire::security::{HashAlgorithm, SignatureAndHashAlgorithm};
use reload_wire::storage::{DataModel, KindId};
use reload_wire::{SecurityBlock, Signature, SignerIdentity};
use time::OffsetDateTime;

const EXAMPLE: &str = include_str!("fixtures/rfc6940-example.relo");

fn now() -> OffsetDateTime {
    // 2024-01-01T00:00:00Z: a fixed "now" so the tests do not age.
    OffsetDateTime::from_unix_timestamp(1_704_067_200).unwrap()
}

fn parse(xml: &str) -> ConfigDocument {
    match ConfigDocument::parse(xml) {
        Ok(d) => d,
        Err(e) => panic!(
            "parse failed:\n{}",
            e.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn parse_err(xml: &str) -> Vec<ConfigProblem> {
    match ConfigDocument::parse(xml) {
        Ok(_) => panic!("parse unexpectedly succeeded:\n{xml}"),
        Err(e) => e,
    }
}

/// 1-based line of the `nth` occurrence of `needle` in `src`.
fn line_of(src: &str, needle: &str, nth: usize) -> u32 {
    let (pos, _) = src
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in the text"));
    1 + src[..pos].matches('\n').count() as u32
}

fn has(problems: &[ConfigProblem], element: &str, line: u32, text: &str) -> bool {
    problems
        .iter()
        .any(|p| p.element == element && p.line == line && p.message.contains(text))
}

fn assert_has(problems: &[ConfigProblem], element: &str, line: u32, text: &str) {
    assert!(
        has(problems, element, line, text),
        "no problem <{element}> at line {line} containing {text:?}; got:\n{}",
        problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Wraps configuration content into a one-configuration document.
fn doc_with(attrs: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<overlay xmlns=\"urn:ietf:params:xml:ns:p2p:config-base\"\n xmlns:chord=\"urn:ietf:params:xml:ns:p2p:config-chord\">\n<configuration instance-name=\"o.example\" sequence=\"1\" {attrs}>\n{body}\n</configuration>\n</overlay>\n"
    )
}

fn fake_security_block() -> SecurityBlock {
    SecurityBlock {
        certificates: vec![reload_wire::GenericCertificate::x509(Bytes::from_static(
            b"not really DER",
        ))],
        signature: Signature {
            algorithm: SignatureAndHashAlgorithm::RSA_SHA256,
            identity: SignerIdentity::CertHash {
                hash_alg: HashAlgorithm::SHA256,
                certificate_hash: Bytes::from(vec![7u8; 32]),
            },
            signature_value: Bytes::from(vec![1u8; 256]),
        },
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn ca_der() -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

// ---------------------------------------------------------------------------------
// The RFC's example (§11.1)

#[test]
fn fixture_is_the_rfc_text_without_page_breaks() {
    assert!(EXAMPLE.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<overlay"));
    assert!(EXAMPLE.trim_end().ends_with("</overlay>"));
    for bad in ["Jennings", "[Page", "RFC 6940", "\u{c}"] {
        assert!(!EXAMPLE.contains(bad), "fixture still contains {bad:?}");
    }
}

#[test]
fn rfc_example_parses_with_every_value() {
    let doc = parse(EXAMPLE);
    assert_eq!(doc.configurations.len(), 2);
    let c = &doc.configurations[0].config;
    assert_eq!(c.instance_name, "overlay.example.org");
    assert_eq!(c.sequence, 22);
    assert_eq!(
        c.expiration.map(format_datetime).as_deref(),
        Some("2002-10-10T07:00:00Z")
    );
    assert_eq!(c.topology_plugin, "CHORD-RELOAD");
    assert_eq!(c.node_id_length, 16);
    assert_eq!(c.root_certs.len(), 2);
    assert_eq!(&c.root_certs[1][..], b"bad cert\n");
    assert_eq!(c.root_certs[0][..2], [0x30, 0x82]);
    assert_eq!(
        c.enrollment_servers,
        ["https://example.org", "https://example.net"]
    );
    assert_eq!(c.self_signed_permitted, None, "digest=sha1 but false");
    let bootstrap: Vec<SocketAddr> = ["192.0.0.1:6084", "192.0.2.2:6084", "[2001:db8::1]:6084"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(c.bootstrap_nodes, bootstrap);
    assert_eq!(c.turn_density, 20);
    assert!(!c.clients_permitted);
    assert!(!c.no_ice);
    assert_eq!(c.chord_update_interval, Duration::from_secs(400));
    assert_eq!(c.chord_ping_interval, Duration::from_secs(30));
    assert!(c.chord_reactive);
    assert_eq!(c.shared_secret.as_deref(), Some("password"));
    assert_eq!(c.max_message_size, 4000);
    assert_eq!(c.initial_ttl, 30);
    assert_eq!(c.overlay_reliability_timer, Duration::from_millis(3000));
    assert_eq!(c.overlay_link_protocols, ["TLS"]);
    assert_eq!(
        c.configuration_signers,
        [vec![0x47, 0x11, 0x21, 0x62, 0xe8, 0x4c, 0x69, 0xba]]
    );
    assert_eq!(c.kind_signers.len(), 2);
    assert_eq!(
        c.bad_nodes[1],
        [0x6e, 0xbc, 0x45, 0xd3, 0x1a, 0x90, 0x0c, 0xa6]
    );
    assert_eq!(
        c.mandatory_extensions,
        ["urn:ietf:params:xml:ns:p2p:config-ext1"]
    );
    assert_eq!(
        c.extension_attributes,
        [ExtensionAttribute {
            namespace: "urn:ietf:params:xml:ns:p2p:config-ext1".into(),
            name: "ext-example".into(),
            value: "stuff".into(),
        }]
    );
    assert_eq!(c.extensions.len(), 1);
    assert_eq!(c.extensions[0].name, "example-extension");
    assert_eq!(
        c.extensions[0].xml,
        "<ext:example-extension xmlns:ext=\"urn:ietf:params:xml:ns:p2p:config-ext1\"> foo </ext:example-extension>"
    );

    // Kinds: SIP-REGISTRATION takes the registry's model and policy, not the document's.
    assert_eq!(c.kinds.len(), 2);
    let sip = &c.kinds[0];
    assert_eq!(sip.id, KindRef::Name("SIP-REGISTRATION".into()));
    assert_eq!(sip.kind_id(), Some(KindId::SIP_REGISTRATION));
    assert_eq!(sip.data_model, KindDataModel::Dictionary);
    assert_eq!(sip.access_control, AccessPolicy::UserNodeMatch);
    assert_eq!((sip.max_count, sip.max_size), (1, 100));
    assert!(sip.signature.as_ref().unwrap().security_block.is_err());
    let k = &c.kinds[1];
    assert_eq!(k.id, KindRef::Id(KindId(2000)));
    assert_eq!(k.data_model, KindDataModel::Array);
    assert_eq!(k.access_control, AccessPolicy::NodeMultiple);
    assert_eq!(k.max_node_multiple, Some(3));
    assert_eq!((k.max_count, k.max_size), (22, 4));
    assert_eq!(k.extensions.len(), 1);
    assert_eq!(k.extensions[0].name, "example-kind-extension");

    // Signatures are kept, with the decode error of the placeholders.
    let sigs = &doc.configurations[0].signatures;
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].value, "VGhpcyBpcyBub3QgcmlnaHQhCg==");
    assert!(
        sigs[0]
            .security_block
            .as_ref()
            .unwrap_err()
            .contains("SecurityBlock")
    );

    // The second configuration is all defaults.
    let other = &doc.configurations[1];
    assert_eq!(other.config, OverlayConfig::new("other.example.net"));
    assert!(!other.sequence_given);
    assert_eq!(other.signatures.len(), 1);
}

#[test]
fn rfc_example_signed_regions_are_exact() {
    let doc = parse(EXAMPLE);
    for c in &doc.configurations {
        let s = std::str::from_utf8(c.signed_bytes(&doc)).unwrap();
        assert!(s.starts_with("<configuration instance-name="));
        assert!(s.ends_with("</configuration>"));
        assert_eq!(&doc.source[c.signed_region.clone()], s);
    }
    let first = std::str::from_utf8(doc.configurations[0].signed_bytes(&doc)).unwrap();
    assert_eq!(first.matches("<configuration ").count(), 1);
    assert!(first.contains("</required-kinds>"));
    let k = &doc.configurations[0].config.kinds[1];
    let ks = std::str::from_utf8(k.signed_bytes(&doc)).unwrap();
    assert!(ks.starts_with("<kind id=\"2000\">"));
    assert!(ks.ends_with("</kind>"));
    assert!(!ks.contains("kind-signature"));
    assert_eq!(k.line, line_of(EXAMPLE, "<kind id=", 0));
}

#[test]
fn rfc_example_known_defects_are_reported() {
    let doc = parse(EXAMPLE);
    let p = doc.semantic_problems(now());
    let l = |needle: &str, nth: usize| line_of(EXAMPLE, needle, nth);

    // Expired in 2002.
    assert_has(
        &p,
        "configuration",
        l("<configuration ", 0),
        "expired at 2002-10-10T07:00:00Z",
    );
    // "YmFkIGNlcnQK" = "bad cert" is no certificate.
    assert_has(
        &p,
        "root-cert",
        l("<root-cert> YmFkIGNlcnQK", 0),
        "not an X.509 certificate",
    );
    // The real root-cert (a 2003 test CA) parses, but expired in 2013.
    assert_has(
        &p,
        "root-cert",
        l("<root-cert>", 0),
        "expired at 2013-07-15",
    );
    assert!(!has(&p, "root-cert", l("<root-cert>", 0), "not an X.509"));
    // An unknown mandatory extension.
    assert_has(
        &p,
        "mandatory-extension",
        l("<mandatory-extension>", 0),
        "'urn:ietf:params:xml:ns:p2p:config-ext1' is not supported",
    );
    // 8-byte signer and bad-node IDs where node-id-length is 16.
    assert_has(
        &p,
        "configuration-signer",
        l("<configuration-signer>", 0),
        "is 8 bytes",
    );
    assert_has(
        &p,
        "kind-signer",
        l("<kind-signer>", 0),
        "47112162e84c69ba is 8 bytes",
    );
    assert_has(
        &p,
        "kind-signer",
        l("<kind-signer>", 1),
        "6eba45d31a900c06 is 8 bytes",
    );
    assert_has(&p, "bad-node", l("<bad-node>", 0), "is 8 bytes");
    assert_has(
        &p,
        "bad-node",
        l("<bad-node>", 1),
        "6ebc45d31a900ca6 is 8 bytes",
    );
    // Placeholder signatures ("This is not right!") are not SecurityBlocks.
    assert_has(&p, "signature", l("<signature>", 0), "not a SecurityBlock");
    assert_has(&p, "signature", l("<signature>", 1), "not a SecurityBlock");
    assert_has(
        &p,
        "kind-signature",
        l("<kind-signature>", 0),
        "not a SecurityBlock",
    );
    assert_has(
        &p,
        "kind-signature",
        l("<kind-signature>", 1),
        "not a SecurityBlock",
    );
    // Defects the brief did not list, but the text makes them so:
    // SIP-REGISTRATION is registered as DICTIONARY / USER-NODE-MATCH (RFC 7904 §7).
    assert_has(
        &p,
        "data-model",
        l("<data-model>SINGLE", 0),
        "registered with data model DICTIONARY",
    );
    assert_has(
        &p,
        "access-control",
        l("<access-control>USER-MATCH", 0),
        "registered with access control USER-NODE-MATCH",
    );
    // Kind-ID 2000 is not from the private range.
    assert_has(&p, "kind", l("<kind id=", 0), "private range");
    // The second configuration has no sequence (§6.3.2.1) and no trust anchor.
    let second = l("<configuration ", 1);
    assert_has(&p, "configuration", second, "no sequence attribute");
    assert_has(&p, "configuration", second, "no root-cert");

    // Nothing else: every problem is one of the above.
    assert_eq!(p.len(), 18, "{p:#?}");
    // Sorted by line, and each displays as "line N: <element>: message".
    assert!(p.windows(2).all(|w| w[0].line <= w[1].line));
    assert!(
        p[0].to_string()
            .starts_with(&format!("line {}: <configuration>: ", p[0].line))
    );
}

#[test]
fn rfc_example_round_trips_through_to_xml() {
    let doc = parse(EXAMPLE);
    for c in &doc.configurations {
        let xml = ConfigDocument::assemble(&[(c.config.to_xml(), vec![])]);
        let again = parse(&xml);
        assert_eq!(again.configurations.len(), 1);
        assert_eq!(again.configurations[0].config, c.config, "{xml}");
    }
}

// ---------------------------------------------------------------------------------
// Grammar errors

#[test]
fn every_grammar_error_is_reported_with_its_line() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<overlay xmlns="urn:ietf:params:xml:ns:p2p:config-base"
   xmlns:chord="urn:ietf:params:xml:ns:p2p:config-chord">
  <configuration instance-name="a.example" sequence="x1" expiration="tomorrow" bogus="1">
    <node-id-length>sixteen</node-id-length>
    <node-id-length>16</node-id-length>
    <initial-ttl>300</initial-ttl>
    <turn-density>256</turn-density>
    <max-message-size>-1</max-message-size>
    <no-ice>TRUE</no-ice>
    <root-cert>!!!not base64!!!</root-cert>
    <frobnicate/>
    <chord:chord-bogus>1</chord:chord-bogus>
    <unqualified xmlns="">x</unqualified>
    stray text
    <self-signed-permitted>true</self-signed-permitted>
    <bootstrap-node port="6084"/>
    <required-kinds>
      <kind-block>
        <kind name="TURN-SERVICE" id="2">
          <max-count>-3</max-count>
        </kind>
      </kind-block>
      <kind-block>
        <kind-signature>AAAA</kind-signature>
      </kind-block>
    </required-kinds>
  </configuration>
  <configuration sequence="70000"/>
  <frob/>
</overlay>
"#;
    let e = parse_err(xml);
    let l = |needle: &str| line_of(xml, needle, 0);
    let cfg = l("<configuration instance-name");
    assert_has(&e, "configuration", cfg, "'x1' is not an xsd:long");
    assert_has(
        &e,
        "configuration",
        cfg,
        "expiration: 'tomorrow' is not an RFC 3339 date-time",
    );
    assert_has(&e, "configuration", cfg, "unexpected attribute 'bogus'");
    assert_has(
        &e,
        "node-id-length",
        l("<node-id-length>sixteen"),
        "'sixteen' is not an xsd:int",
    );
    assert_has(
        &e,
        "node-id-length",
        l("<node-id-length>16"),
        "at most once",
    );
    assert_has(
        &e,
        "initial-ttl",
        l("<initial-ttl>"),
        "300 does not fit: initial-ttl must be 0 to 255",
    );
    assert_has(
        &e,
        "turn-density",
        l("<turn-density>"),
        "out of range of xsd:unsignedByte",
    );
    assert_has(
        &e,
        "max-message-size",
        l("<max-message-size>"),
        "not an xsd:unsignedInt",
    );
    assert_has(&e, "no-ice", l("<no-ice>"), "'TRUE' is not an xsd:boolean");
    assert_has(&e, "root-cert", l("<root-cert>"), "not xsd:base64Binary");
    assert_has(
        &e,
        "frobnicate",
        l("<frobnicate/>"),
        "not an element of the configuration grammar",
    );
    assert_has(
        &e,
        "chord:chord-bogus",
        l("<chord:chord-bogus>"),
        "not a CHORD-RELOAD element",
    );
    assert_has(&e, "unqualified", l("<unqualified"), "without a namespace");
    assert_has(
        &e,
        "configuration",
        l("stray text"),
        "text is not allowed here",
    );
    assert_has(
        &e,
        "self-signed-permitted",
        l("<self-signed-permitted>"),
        "digest attribute is required",
    );
    assert_has(
        &e,
        "bootstrap-node",
        l("<bootstrap-node"),
        "address attribute is required",
    );
    assert_has(&e, "kind", l("<kind name="), "both a name and an id");
    assert_has(&e, "max-count", l("<max-count>"), "-3 does not fit");
    for what in ["data-model", "access-control", "max-size"] {
        assert_has(
            &e,
            "kind",
            l("<kind name="),
            &format!("<{what}> element is required"),
        );
    }
    assert_has(
        &e,
        "kind-block",
        line_of(xml, "<kind-block>", 1),
        "must contain a <kind>",
    );
    let second = l("<configuration sequence=");
    assert_has(
        &e,
        "configuration",
        second,
        "instance-name attribute is required",
    );
    assert_has(&e, "configuration", second, "70000 does not fit: sequence");
    assert_has(
        &e,
        "frob",
        l("<frob/>"),
        "holds only <configuration> and <signature>",
    );
    assert_eq!(e.len(), 25, "{e:#?}");
    assert!(e.windows(2).all(|w| w[0].line <= w[1].line));
}

#[test]
fn malformed_xml_and_wrong_roots_are_errors() {
    let e = parse_err(
        "<overlay xmlns=\"urn:ietf:params:xml:ns:p2p:config-base\">\n<configuration>\n</overlay>",
    );
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].element, "document");
    assert_eq!(e[0].line, 3);
    assert!(e[0].message.contains("not well-formed"));

    let e = parse_err("<overlay><configuration instance-name=\"x\"/></overlay>");
    assert!(e[0].message.contains("must be <overlay> in namespace"));

    let e = parse_err("<overlay xmlns=\"urn:ietf:params:xml:ns:p2p:config-base\"/>");
    assert!(e[0].message.contains("contains no <configuration>"));

    // DTDs (and so entity expansion) are refused.
    let e = parse_err(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE overlay [<!ENTITY a \"aaaa\">]>\n<overlay xmlns=\"urn:ietf:params:xml:ns:p2p:config-base\"/>",
    );
    assert_eq!(e[0].element, "document");
}

// ---------------------------------------------------------------------------------
// Defaults

#[test]
fn absent_elements_take_the_rfc_defaults() {
    let doc = parse(&doc_with("", ""));
    let c = &doc.configurations[0].config;
    assert_eq!(c.topology_plugin, "CHORD-RELOAD");
    assert_eq!(c.node_id_length, 16);
    assert_eq!(c.max_message_size, 5000);
    assert_eq!(c.initial_ttl, 100);
    assert_eq!(c.overlay_reliability_timer, Duration::from_millis(3000));
    assert_eq!(c.chord_update_interval, Duration::from_secs(600));
    assert_eq!(c.chord_ping_interval, Duration::from_secs(3600));
    assert!(c.chord_reactive);
    assert!(c.clients_permitted);
    assert!(!c.no_ice);
    assert_eq!(c.turn_density, 1);
    assert_eq!(c.overlay_link_protocols, ["TLS"]);
    assert_eq!(c.expiration, None);
    assert_eq!(c.self_signed_permitted, None);
    assert_eq!(c.shared_secret, None);
    assert_eq!(c.peers_to_probe(), 4);
    assert_eq!(c.branching_factor(), 10);
    assert_eq!(c.domain_restriction(), None);
    assert_eq!(*c, OverlayConfig::new("o.example").with_sequence(1));

    let o = c.decode_options();
    assert_eq!(o.node_id_len(), 16);
    assert_eq!(o.max_message_size(), 5000);
    assert_eq!(
        o.data_model(KindId::SIP_REGISTRATION.0),
        Some(DataModel::Dictionary)
    );

    // A bootstrap node without port gets 6084; explicit link protocols replace "TLS".
    let doc = parse(&doc_with(
        "",
        "<bootstrap-node address=\"10.0.0.1\"/><overlay-link-protocol>EXP-PROTOCOL</overlay-link-protocol>",
    ));
    let c = &doc.configurations[0].config;
    assert_eq!(
        c.bootstrap_nodes,
        ["10.0.0.1:6084".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.overlay_link_protocols, ["EXP-PROTOCOL"]);
}

trait WithSequence {
    fn with_sequence(self, s: u16) -> Self;
}

impl WithSequence for OverlayConfig {
    fn with_sequence(mut self, s: u16) -> Self {
        self.sequence = s;
        self
    }
}

#[test]
fn booleans_take_both_lexical_forms_and_values_are_trimmed() {
    let doc = parse(&doc_with(
        "",
        "<no-ice> 1 </no-ice><clients-permitted>\n0\n</clients-permitted><chord:chord-reactive>false</chord:chord-reactive>\
         <self-signed-permitted digest=\"sha256\"> true </self-signed-permitted><topology-plugin>\n CHORD-SELF-TUNING \n</topology-plugin>",
    ));
    let c = &doc.configurations[0].config;
    assert!(c.no_ice);
    assert!(!c.clients_permitted);
    assert!(!c.chord_reactive);
    assert_eq!(c.self_signed_permitted, Some(SelfSignedDigest::Sha256));
    assert_eq!(c.topology_plugin, "CHORD-SELF-TUNING");
}

// ---------------------------------------------------------------------------------
// Semantic checks beyond the example

#[test]
fn semantic_checks_of_values() {
    let der = ca_der();
    let body = format!(
        "<node-id-length>20</node-id-length>\n\
         <root-cert>{}</root-cert>\n\
         <enrollment-server>http://insecure.example</enrollment-server>\n\
         <bootstrap-node address=\"not-an-ip\"/>\n\
         <bootstrap-node address=\"10.0.0.1\" port=\"70000\"/>\n\
         <bootstrap-node address=\"0.0.0.0\" port=\"0\"/>\n\
         <overlay-reliability-timer>199</overlay-reliability-timer>\n\
         <kind-signer>zz</kind-signer>\n\
         <kind-signer>0000000000000000000000000000000000000000</kind-signer>\n\
         <mandatory-extension>urn:ietf:params:xml:ns:p2p:config-chord</mandatory-extension>\n\
         <turn-density>25</turn-density>\n\
         <required-kinds>\n\
           <kind-block><kind id=\"4026531841\"><data-model>ARRAY</data-model><access-control>NODE-MULTIPLE</access-control>\n\
             <max-count>1</max-count><max-size>1</max-size></kind></kind-block>\n\
           <kind-block><kind id=\"4026531841\"><data-model>EXP-DATA</data-model><access-control>EXP-MATCH</access-control>\n\
             <max-count>1</max-count><max-size>1</max-size><max-node-multiple>0</max-node-multiple></kind></kind-block>\n\
           <kind-block><kind name=\"NO-SUCH-KIND\"><data-model>SINGLE</data-model><access-control>USER-MATCH</access-control>\n\
             <max-count>1</max-count><max-size>1</max-size></kind></kind-block>\n\
         </required-kinds>",
        b64(&der)
    );
    let xml = doc_with("expiration=\"2030-01-01T00:00:00+01:00\"", &body);
    let doc = parse(&xml);
    let p = doc.semantic_problems(now());
    let l = |needle: &str, nth: usize| line_of(&xml, needle, nth);
    assert_has(
        &p,
        "node-id-length",
        l("<node-id-length>", 0),
        "is refused: CHORD-RELOAD uses 128-bit",
    );
    assert!(!p.iter().any(|x| x.element == "root-cert"), "{p:#?}");
    assert_has(
        &p,
        "enrollment-server",
        l("<enrollment-server>", 0),
        "not an https: URL",
    );
    assert_has(
        &p,
        "bootstrap-node",
        l("not-an-ip", 0),
        "not an IPv4 or IPv6 address",
    );
    assert_has(
        &p,
        "bootstrap-node",
        l("port=\"70000\"", 0),
        "port 70000 is not a port number",
    );
    assert_has(&p, "bootstrap-node", l("0.0.0.0", 0), "port 0");
    assert_has(
        &p,
        "bootstrap-node",
        l("0.0.0.0", 0),
        "not a unicast address",
    );
    assert_has(
        &p,
        "overlay-reliability-timer",
        l("<overlay-reliability-timer>", 0),
        "below the minimum of 200 ms",
    );
    assert_has(
        &p,
        "kind-signer",
        l("<kind-signer>zz", 0),
        "not hexadecimal",
    );
    assert_has(
        &p,
        "kind-signer",
        l("<kind-signer>0000", 0),
        "all-zero Node-ID",
    );
    assert_has(&p, "configuration", l("<configuration ", 0), "not in UTC");
    assert_has(
        &p,
        "turn-density",
        l("<turn-density>", 0),
        "exceeds the TURN-SERVICE NODE-MULTIPLE maximum 20",
    );
    assert!(!p.iter().any(|x| x.element == "mandatory-extension"));
    let k0 = l("<kind id=", 0);
    assert_has(&p, "kind", k0, "<max-node-multiple> MUST be included");
    assert_has(&p, "kind", k0, "no <kind-signature>");
    let k1 = l("<kind id=", 1);
    assert_has(&p, "kind", k1, "defined twice");
    assert_has(&p, "kind", k1, "data model 'EXP-DATA' is not supported");
    assert_has(
        &p,
        "kind",
        k1,
        "access control 'EXP-MATCH' is not supported",
    );
    assert_has(&p, "kind", k1, "greater than 0");
    assert_has(
        &p,
        "kind",
        l("<kind name=", 0),
        "not an IANA-registered Kind name",
    );
    assert_has(
        &p,
        "configuration",
        l("<configuration ", 0),
        "not followed by a <signature>",
    );

    // node-id-length outside 16..=20 and an unsupported plug-in.
    let xml = doc_with(
        "",
        "<topology-plugin>PASTRY</topology-plugin><node-id-length>32</node-id-length>",
    );
    let p = parse(&xml).semantic_problems(now());
    assert_has(&p, "topology-plugin", 5, "'PASTRY' is not supported");
    assert_has(&p, "node-id-length", 5, "outside 16 to 20 bytes");
    let c = &parse(&xml).configurations[0].config;
    assert_eq!(c.decode_options().node_id_len(), 16, "falls back to 16");
}

#[test]
fn signatures_that_are_security_blocks_are_accepted() {
    let block = fake_security_block();
    let sig = SignatureElement::from_security_block(&block).unwrap();
    let mut cfg = OverlayConfig::new("signed.example");
    cfg.sequence = 7;
    cfg.self_signed_permitted = Some(SelfSignedDigest::Sha1);
    cfg.kind_signers = vec![vec![0x11; 16]];
    let mut k = KindDefinition::new(
        0xf000_0001u32,
        KindDataModel::Dictionary,
        AccessPolicy::UserMatch,
        10,
        1000,
    );
    k.signature = Some(sig.clone());
    cfg.kinds.push(k);
    let xml = cfg.to_xml();
    let doc_text = ConfigDocument::assemble(&[(xml.clone(), vec![sig.value.clone()])]);
    let doc = parse(&doc_text);
    let c = &doc.configurations[0];
    // The signed region is exactly the text to_xml produced (what the signer signed).
    assert_eq!(c.signed_bytes(&doc), xml.as_bytes());
    assert_eq!(c.signatures[0].security_block, Ok(block.clone()));
    assert_eq!(
        c.config.kinds[0].signature.as_ref().unwrap().security_block,
        Ok(block)
    );
    // The kind signature covers exactly KindDefinition::to_xml.
    assert_eq!(
        c.config.kinds[0].signed_bytes(&doc),
        cfg.kinds[0].to_xml().as_bytes()
    );
    assert_eq!(c.config, cfg);
    assert_eq!(doc.semantic_problems(now()), vec![], "{doc_text}");
    assert_eq!(cfg.problems(now()), vec![]);
}

#[test]
fn stray_and_duplicate_configurations() {
    let xml = "<overlay xmlns=\"urn:ietf:params:xml:ns:p2p:config-base\">\n<signature>AAAA</signature>\n\
               <configuration instance-name=\"a\" sequence=\"1\"/>\n<configuration instance-name=\"a\" sequence=\"2\"/>\n</overlay>";
    let doc = parse(xml);
    assert_eq!(doc.stray_signatures.len(), 1);
    let p = doc.semantic_problems(now());
    assert_has(&p, "signature", 2, "signs nothing");
    assert_has(&p, "configuration", 4, "a second configuration for 'a'");
}

#[test]
fn encoding_other_than_utf8_and_non_utf8_bytes() {
    let xml = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<overlay xmlns=\"urn:ietf:params:xml:ns:p2p:config-base\"><configuration instance-name=\"a\" sequence=\"1\"/></overlay>";
    let p = parse(xml).semantic_problems(now());
    assert_has(&p, "document", 1, "MUST use UTF-8");
    let mut bytes = xml.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n\xff");
    let e = ConfigDocument::parse_bytes(&bytes).unwrap_err();
    assert_eq!(e[0].line, 3);
    assert!(e[0].message.contains("not UTF-8"));
    assert!(ConfigDocument::parse_bytes(EXAMPLE.as_bytes()).is_ok());
}

// ---------------------------------------------------------------------------------
// The Kind registry

#[test]
fn registered_kinds_match_their_rfcs() {
    use AccessPolicy::*;
    use DataModel::*;
    let table = [
        ("SIP-REGISTRATION", 0x1, Dictionary, UserNodeMatch),
        ("TURN-SERVICE", 0x2, Single, NodeMultiple),
        ("CERTIFICATE_BY_NODE", 0x3, Array, NodeMatch),
        ("ACCESS-CONTROL-LIST", 0x4, Array, UserChainAcl),
        ("CERTIFICATE_BY_USER", 0x10, Array, UserMatch),
        ("REDIR", 0x104, Dictionary, NodeIdMatch),
        ("CoAP-REGISTRATION", 0x105, Dictionary, UriNodeMatch),
        ("CoAP-CACHING", 0x106, Single, UriMatch),
    ];
    for (name, id, model, policy) in table {
        let want = Some((KindId(id), model, policy.clone()));
        assert_eq!(registered_kind(name), want, "{name}");
        assert_eq!(registered_kind(id), want, "{id:#x}");
        assert_eq!(registered_kind(KindId(id)), want);
        // Agrees with the wire codec's table.
        assert_eq!(
            reload_wire::storage::registered_kind_models().get(&id),
            Some(&model)
        );
        assert_eq!(AccessPolicy::from_config_name(policy.config_name()), policy);
    }
    assert_eq!(
        registered_kind("sip-registration"),
        None,
        "names are case-sensitive"
    );
    assert_eq!(registered_kind(0xf000_0001u32), None);
    assert_eq!(registered_max_node_multiple(KindId::TURN_SERVICE), Some(20));
}

#[test]
fn registry_overrides_the_document() {
    let xml = doc_with(
        "",
        "<kind-signer>11111111111111111111111111111111</kind-signer>\n<required-kinds>\n\
         <kind-block><kind id=\"4\">\n<data-model>DICTIONARY</data-model>\n<access-control>USER-MATCH</access-control>\n\
         <max-count>5</max-count><max-size>50</max-size></kind><kind-signature>AAAA</kind-signature></kind-block>\n\
         <kind-block><kind name=\"CoAP-CACHING\"><data-model>SINGLE</data-model><access-control>URI-MATCH</access-control>\n\
         <max-count>5</max-count><max-size>50</max-size></kind><kind-signature>AAAA</kind-signature></kind-block>\n\
         <kind-block><kind id=\"4026531842\"><data-model>DICTIONARY</data-model><access-control>USER-NODE-MATCH</access-control>\n\
         <max-count>5</max-count><max-size>50</max-size></kind><kind-signature>AAAA</kind-signature></kind-block>\n\
         </required-kinds>",
    );
    let doc = parse(&xml);
    let c = &doc.configurations[0].config;
    let acl = &c.kinds[0];
    assert_eq!(
        acl.data_model,
        KindDataModel::Array,
        "ACCESS-CONTROL-LIST is an array (RFC 8076 §7)"
    );
    assert_eq!(acl.access_control, AccessPolicy::UserChainAcl);
    let p = doc.semantic_problems(now());
    assert_has(
        &p,
        "data-model",
        line_of(&xml, "<data-model>DICTIONARY", 0),
        "registered with data model ARRAY (RFC 8076 §7)",
    );
    assert_has(
        &p,
        "access-control",
        line_of(&xml, "<access-control>USER-MATCH", 0),
        "USER-CHAIN-ACL",
    );
    // An agreeing registered Kind and a private Kind raise nothing.
    assert!(
        !p.iter()
            .any(|x| x.line == line_of(&xml, "CoAP-CACHING", 0) && x.element != "kind-signature")
    );
    assert!(
        !p.iter()
            .any(|x| x.element == "kind" && x.line == line_of(&xml, "4026531842", 0))
    );

    // The wire options carry every Kind's (effective) data model.
    let o = c.decode_options();
    assert_eq!(o.data_model(4), Some(DataModel::Array));
    assert_eq!(o.data_model(0x106), Some(DataModel::Single));
    assert_eq!(o.data_model(0xf000_0002), Some(DataModel::Dictionary));
    assert_eq!(o.data_model(0xf000_0003), None);

    // KindDefinition::new applies the registry too; a hand-made disagreement is reported.
    let k = KindDefinition::new(
        "TURN-SERVICE",
        KindDataModel::Array,
        AccessPolicy::UserMatch,
        1,
        1,
    );
    assert_eq!(k.data_model, KindDataModel::Single);
    assert_eq!(k.access_control, AccessPolicy::NodeMultiple);
    let mut cfg = OverlayConfig::new("x");
    let mut bad = k.clone();
    bad.data_model = KindDataModel::Array;
    cfg.kinds.push(bad);
    assert!(
        cfg.problems(now())
            .iter()
            .any(|p| p.message.contains("registered as SINGLE / NODE-MULTIPLE"))
    );
}

#[test]
fn kind_block_of_a_config_update_parses_without_namespace() {
    let block = "<kind-block>\n  <kind id=\"4026531845\">\n    <data-model>ARRAY</data-model>\n    <access-control>NODE-MULTIPLE</access-control>\n    <max-count>2</max-count>\n    <max-size>9</max-size>\n    <max-node-multiple>4</max-node-multiple>\n  </kind>\n  <kind-signature>AAAA</kind-signature>\n</kind-block>";
    let parsed = KindDefinition::parse_kind_block(block).unwrap();
    assert_eq!(parsed.kind.kind_id(), Some(KindId(0xf000_0005)));
    assert_eq!(parsed.kind.max_node_multiple, Some(4));
    let signed = std::str::from_utf8(parsed.signed_bytes()).unwrap();
    assert!(signed.starts_with("<kind id=") && signed.ends_with("</kind>"));
    assert_has(&parsed.problems, "kind-signature", 9, "not a SecurityBlock");

    // KindDefinition::to_xml output works as a ConfigUpdate block, also without signature.
    let mut k = parsed.kind.clone();
    k.signature = None;
    let again =
        KindDefinition::parse_kind_block(&format!("<kind-block>{}</kind-block>", k.to_xml()))
            .unwrap();
    assert_eq!(again.kind, k);
    assert!(
        again
            .problems
            .iter()
            .any(|p| p.message.contains("no <kind-signature>"))
    );
    let blk = KindDefinition::block_xml(&k.to_xml(), "AAAA");
    assert!(KindDefinition::parse_kind_block(&blk).is_ok());

    assert!(KindDefinition::parse_kind_block("<kind/>").is_err());
}

// ---------------------------------------------------------------------------------
// Companion-RFC extensions

#[test]
fn companion_rfc_extensions_are_typed() {
    let xml = r#"<overlay xmlns="urn:ietf:params:xml:ns:p2p:config-base"
  xmlns:sip="urn:ietf:params:xml:ns:p2p:config-base:sip"
  xmlns:share="urn:ietf:params:xml:ns:p2p:config-base:share"
  xmlns:rm="urn:ietf:params:xml:ns:p2p:route-mode"
  xmlns:st="urn:ietf:params:xml:ns:p2p:self-tuning"
  xmlns:redir="urn:ietf:params:xml:ns:p2p:redir"
  xmlns:diag="urn:ietf:params:xml:ns:p2p:config-diagnostics">
<configuration instance-name="ext.example" sequence="3">
  <rm:mode>DRR</rm:mode>
  <st:number-of-peers-to-probe>6</st:number-of-peers-to-probe>
  <diag:diagnostic-kind kind="0x0002">
    <diag:access-node>000102030405060708090a0b0c0d0e0f</diag:access-node>
  </diag:diagnostic-kind>
  <diag:diagnostic-kind kind="0011"/>
  <mandatory-extension>urn:ietf:params:xml:ns:p2p:route-mode</mandatory-extension>
  <required-kinds>
    <kind-block>
      <kind name="SIP-REGISTRATION">
        <data-model>DICTIONARY</data-model><access-control>USER-NODE-MATCH</access-control>
        <max-count>1</max-count><max-size>100</max-size>
        <sip:domain-restriction enable="true">
          <sip:pattern>dht\.example\.com</sip:pattern>
          <sip:pattern>.*\.my\.example</sip:pattern>
        </sip:domain-restriction>
      </kind>
    </kind-block>
    <kind-block>
      <kind name="ACCESS-CONTROL-LIST">
        <data-model>ARRAY</data-model><access-control>USER-CHAIN-ACL</access-control>
        <max-count>1</max-count><max-size>100</max-size>
        <share:variable-resource-names enable="true">
          <share:pattern>$USER-.*@$DOMAIN</share:pattern>
          <share:pattern>nouser</share:pattern>
        </share:variable-resource-names>
      </kind>
    </kind-block>
    <kind-block>
      <kind name="REDIR">
        <data-model>DICTIONARY</data-model><access-control>NODE-ID-MATCH</access-control>
        <max-count>1</max-count><max-size>100</max-size>
        <redir:branching-factor>1</redir:branching-factor>
      </kind>
    </kind-block>
  </required-kinds>
</configuration>
</overlay>"#;
    let doc = parse(xml);
    let c = &doc.configurations[0].config;
    assert_eq!(c.route_mode, Some(RouteMode::Drr));
    assert_eq!(c.self_tuning_peers_to_probe, Some(6));
    assert_eq!(c.peers_to_probe(), 6);
    assert_eq!(c.diagnostic_kinds.len(), 2);
    assert_eq!(c.diagnostic_kinds[0].kind, 2);
    assert_eq!(
        c.diagnostic_kinds[0].access_nodes,
        [(0u8..16).collect::<Vec<_>>()]
    );
    assert_eq!(c.diagnostic_kinds[1].kind, 0x11);
    let dr = c.domain_restriction().unwrap();
    assert!(dr.enable);
    assert_eq!(dr.patterns, [r"dht\.example\.com", r".*\.my\.example"]);
    let vrn = c.kinds[1].variable_resource_names.as_ref().unwrap();
    assert!(vrn.enable);
    assert_eq!(c.branching_factor(), 1);
    assert!(c.extensions.is_empty());

    let p = doc.semantic_problems(now());
    let l = |needle: &str| line_of(xml, needle, 0);
    assert_has(
        &p,
        "self-tuning:number-of-peers-to-probe",
        l("<st:number"),
        "without listing it in a <mandatory-extension>",
    );
    assert_has(
        &p,
        "diagnostic-kind",
        l("<diag:diagnostic-kind kind=\"0x0002\""),
        "without listing it",
    );
    assert_has(
        &p,
        "diagnostic-kind",
        l("kind=\"0011\""),
        "no <access-node>",
    );
    assert_has(
        &p,
        "share:variable-resource-names",
        l("<kind name=\"ACCESS"),
        "'nouser' lacks $USER or $DOMAIN",
    );
    assert!(!has(
        &p,
        "share:variable-resource-names",
        l("<kind name=\"ACCESS"),
        "$USER-.*@$DOMAIN"
    ));
    assert_has(&p, "kind", l("<kind name=\"REDIR"), "branching factor 1");
    assert_has(
        &p,
        "redir:branching-factor",
        l("<kind name=\"REDIR"),
        "without listing it",
    );
    assert!(!has(
        &p,
        "route-mode:mode",
        l("<rm:mode"),
        "without listing"
    ));

    // Round trip of all of it.
    let again = parse(&ConfigDocument::assemble(&[(c.to_xml(), vec![])]));
    assert_eq!(&again.configurations[0].config, c);
}

#[test]
fn foreign_elements_are_kept_self_contained() {
    let xml = r#"<p:overlay xmlns:p="urn:ietf:params:xml:ns:p2p:config-base" xmlns="urn:other:default" xmlns:a="urn:a" xmlns:b="urn:b">
<p:configuration instance-name="f.example" sequence="1" a:flag="yes" xml:lang="en">
  <thing b:attr="1"><a:inner>text &amp; more</a:inner><plain/></thing>
  <b:own xmlns:b="urn:b2"><b:x/></b:own>
  <a:e xmlns="urn:ietf:params:xml:ns:p2p:config-base"><kid/></a:e>
</p:configuration>
</p:overlay>"#;
    let doc = parse(xml);
    let c = &doc.configurations[0].config;
    assert_eq!(c.extensions.len(), 3);
    let e0 = &c.extensions[0];
    assert_eq!(
        (e0.namespace.as_str(), e0.name.as_str()),
        ("urn:other:default", "thing")
    );
    assert_eq!(
        e0.xml,
        r#"<thing xmlns="urn:other:default" xmlns:b="urn:b" xmlns:a="urn:a" b:attr="1"><a:inner>text &amp; more</a:inner><plain/></thing>"#
    );
    assert_eq!(
        c.extensions[1].xml,
        r#"<b:own xmlns:b="urn:b2"><b:x/></b:own>"#
    );
    assert_eq!(c.extensions[1].namespace, "urn:b2");
    assert_eq!(
        c.extensions[2].xml,
        r#"<a:e xmlns:a="urn:a" xmlns="urn:ietf:params:xml:ns:p2p:config-base"><kid/></a:e>"#
    );
    assert_eq!(c.extension_attributes[0].namespace, "urn:a");
    assert_eq!(c.extension_attributes[1].name, "lang");
    assert!(c.to_xml().contains(" xml:lang=\"en\""));
    // Written into a document with other declarations, they mean the same.
    let again = parse(&ConfigDocument::assemble(&[(c.to_xml(), vec![])]));
    assert_eq!(&again.configurations[0].config, c);
}

// ---------------------------------------------------------------------------------
// Sequence numbers (§6.3.2.1, §6.5.4.2)

#[test]
fn sequence_wraps_around_modulo_65535() {
    assert!(sequence_is_newer(23, 22));
    assert!(!sequence_is_newer(22, 23));
    assert!(!sequence_is_newer(22, 22));
    // After 65534 comes 0.
    assert_eq!(next_sequence(65534), 0);
    assert!(sequence_is_newer(0, 65534));
    assert!(!sequence_is_newer(65534, 0));
    assert!(sequence_is_newer(5, 65530));
    // 65535 is reserved: a ConfigUpdate carrying it is always accepted.
    assert!(sequence_is_newer(65535, 0));
    assert!(sequence_is_newer(65535, 65534));
    assert!(sequence_is_newer(65535, 65535));
    assert_eq!(check_sequence(65535, 10, true), SequenceCheck::Accept);
    assert_eq!(check_sequence(10, 10, false), SequenceCheck::Accept);
    assert_eq!(check_sequence(9, 10, false), SequenceCheck::TooOld);
    assert_eq!(check_sequence(11, 10, false), SequenceCheck::TooNew);
    assert_eq!(check_sequence(0, 65534, false), SequenceCheck::TooNew);
    assert_eq!(check_sequence(65534, 0, false), SequenceCheck::TooOld);
}

// ---------------------------------------------------------------------------------
// Round trips

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 .:/&<>\"'_-]{0,20}[A-Za-z0-9]"
}

fn node_ids() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..21), 0..3)
}

fn pattern_set() -> impl Strategy<Value = NamePatterns> {
    (any::<bool>(), prop::collection::vec(token(), 0..3))
        .prop_map(|(enable, patterns)| NamePatterns { enable, patterns })
}

fn kind() -> impl Strategy<Value = KindDefinition> {
    let id = prop_oneof![
        (0xf000_0001u32..=0xffff_fffe).prop_map(|i| KindRef::Id(KindId(i))),
        any::<u32>().prop_map(|i| KindRef::Id(KindId(i))),
        prop::sample::select(vec!["SIP-REGISTRATION", "TURN-SERVICE", "REDIR", "BOGUS"])
            .prop_map(|n| KindRef::Name(n.to_string())),
    ];
    let model = prop_oneof![
        Just(KindDataModel::Single),
        Just(KindDataModel::Array),
        Just(KindDataModel::Dictionary),
        Just(KindDataModel::Other("EXP-DATA".into())),
    ];
    let policy = prop::sample::select(vec![
        "USER-MATCH",
        "NODE-MATCH",
        "USER-NODE-MATCH",
        "NODE-MULTIPLE",
        "USER-CHAIN-ACL",
        "NODE-ID-MATCH",
        "URI-MATCH",
        "URI-NODE-MATCH",
        "EXP-MATCH",
    ])
    .prop_map(AccessPolicy::from_config_name);
    (
        id,
        model,
        policy,
        0u32..=i32::MAX as u32,
        0u32..=i32::MAX as u32,
        prop::option::of(0u32..=i32::MAX as u32),
        prop::option::of(pattern_set()),
        prop::option::of(pattern_set()),
        prop::option::of(any::<u32>()),
        prop::option::of(
            "[A-Za-z0-9+/]{4,40}".prop_map(|v| SignatureElement::from_base64(&v, None)),
        ),
    )
        .prop_map(|(id, model, policy, count, size, mnm, dr, vrn, bf, sig)| {
            let mut k = KindDefinition::new(id, model, policy, count, size);
            k.max_node_multiple = mnm;
            k.domain_restriction = dr;
            k.variable_resource_names = vrn;
            k.redir_branching_factor = bf;
            k.signature = sig;
            k
        })
}

fn config() -> impl Strategy<Value = OverlayConfig> {
    let head = (
        token(),
        prop::option::of((0i64..253_402_000_000, 0u32..1_000_000_000, -1439i32..1440)),
        0u16..=65535,
        prop::sample::select(vec!["CHORD-RELOAD", "CHORD-SELF-TUNING", "OTHER"]),
        0usize..40,
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..3),
        prop::collection::vec(token(), 0..3),
        prop::option::of(prop_oneof![
            Just(SelfSignedDigest::Sha1),
            Just(SelfSignedDigest::Sha256),
            Just(SelfSignedDigest::Other("md5".into())),
        ]),
        prop::collection::vec(
            (any::<std::net::IpAddr>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(ip, p)),
            0..4,
        ),
    );
    let middle = (
        0u32..256,
        any::<bool>(),
        any::<bool>(),
        0u64..100_000,
        0u64..100_000,
        any::<bool>(),
        prop::option::of(token()),
        any::<u32>(),
        any::<u8>(),
        0u64..4_294_967_295,
        prop::collection::vec(token(), 1..3),
    );
    let tail = (
        node_ids(),
        node_ids(),
        node_ids(),
        prop::collection::vec(token(), 0..3),
        prop::collection::vec(kind(), 0..3),
        prop::option::of(pattern_set()),
        prop::option::of(prop_oneof![
            Just(RouteMode::Drr),
            Just(RouteMode::Rpr),
            Just(RouteMode::Other("XYZ".into()))
        ]),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::collection::vec(
            (any::<u16>(), node_ids())
                .prop_map(|(kind, access_nodes)| DiagnosticKindAccess { kind, access_nodes }),
            0..3,
        ),
        prop::collection::vec(("[a-z][a-z0-9]{0,7}", token()), 0..3),
    );
    (head, middle, tail).prop_map(|(h, m, t)| {
        let mut c = OverlayConfig::new(h.0);
        c.expiration = h.1.map(|(secs, nanos, off_min)| {
            let off = time::UtcOffset::from_whole_seconds(off_min * 60).unwrap();
            OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap()
                .to_offset(off)
        });
        c.sequence = h.2;
        c.topology_plugin = h.3.to_string();
        c.node_id_length = h.4;
        c.root_certs = h.5.into_iter().map(Bytes::from).collect();
        c.enrollment_servers = h.6;
        c.self_signed_permitted = h.7;
        c.bootstrap_nodes = h.8;
        c.turn_density = m.0;
        c.clients_permitted = m.1;
        c.no_ice = m.2;
        c.chord_update_interval = Duration::from_secs(m.3);
        c.chord_ping_interval = Duration::from_secs(m.4);
        c.chord_reactive = m.5;
        c.shared_secret = m.6;
        c.max_message_size = m.7;
        c.initial_ttl = m.8;
        c.overlay_reliability_timer = Duration::from_millis(m.9);
        c.overlay_link_protocols = m.10;
        c.kind_signers = t.0;
        c.configuration_signers = t.1;
        c.bad_nodes = t.2;
        c.mandatory_extensions = t.3;
        c.kinds = t.4;
        c.sip_domain_restriction = t.5;
        c.route_mode = t.6;
        c.self_tuning_peers_to_probe = t.7;
        c.redir_branching_factor = t.8;
        c.diagnostic_kinds = t.9;
        c.extension_attributes =
            t.10.into_iter()
                .enumerate()
                .map(|(i, (name, value))| ExtensionAttribute {
                    namespace: format!("urn:test:{i}"),
                    name,
                    value,
                })
                .collect();
        c.extensions = vec![ExtensionElement {
            namespace: "urn:test:x".into(),
            name: "thing".into(),
            xml: "<x:thing xmlns:x=\"urn:test:x\" a=\"1\">  some <x:b/> text </x:thing>".into(),
        }];
        c
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn to_xml_parses_back_to_the_same_config(c in config()) {
        let xml = c.to_xml();
        let doc_text = ConfigDocument::assemble(&[(xml.clone(), vec!["AAAA".into()])]);
        let doc = ConfigDocument::parse(&doc_text).map_err(|e| {
            TestCaseError::fail(format!("{e:?}\n{doc_text}"))
        })?;
        prop_assert_eq!(doc.configurations.len(), 1);
        prop_assert_eq!(&doc.configurations[0].config, &c);
        prop_assert_eq!(doc.configurations[0].signed_bytes(&doc), xml.as_bytes());
        // Writing again gives the same text: to_xml is deterministic.
        prop_assert_eq!(doc.configurations[0].config.to_xml(), xml);
        // Checking never panics.
        let _ = doc.semantic_problems(OffsetDateTime::UNIX_EPOCH);
        let _ = c.decode_options();
    }

    #[test]
    fn sequence_comparison_is_antisymmetric(a in 0u16..65535, b in 0u16..65535) {
        if a == b {
            prop_assert!(!sequence_is_newer(a, b));
        } else {
            prop_assert!(sequence_is_newer(a, b) != sequence_is_newer(b, a));
        }
        prop_assert!(sequence_is_newer(next_sequence(a), a));
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,400}") {
        let _ = ConfigDocument::parse(&s);
        let _ = KindDefinition::parse_kind_block(&s);
    }

    #[test]
    fn mutated_example_never_panics(cut in 0usize..EXAMPLE.len(), len in 0usize..40, insert in "[<>/\"=a-z:& \n]{0,6}") {
        let mut s = EXAMPLE.to_string();
        let mut start = cut;
        while !s.is_char_boundary(start) { start -= 1; }
        let mut end = (start + len).min(s.len());
        while !s.is_char_boundary(end) { end -= 1; }
        s.replace_range(start..end, &insert);
        if let Ok(doc) = ConfigDocument::parse(&s) {
            let _ = doc.semantic_problems(OffsetDateTime::now_utc());
            for c in &doc.configurations {
                let _ = c.signed_bytes(&doc);
                let _ = ConfigDocument::parse(&ConfigDocument::assemble(&[(c.config.to_xml(), vec![])]));
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Hostile input

#[test]
fn oversized_documents_are_refused_unread() {
    let big = format!(
        "<overlay xmlns=\"urn:ietf:params:xml:ns:p2p:config-base\">{}</overlay>",
        " ".repeat(MAX_DOCUMENT_BYTES)
    );
    let e = parse_err(&big);
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("refused before parsing"), "{}", e[0]);
    assert!(ConfigDocument::parse_bytes(big.as_bytes()).is_err());
}

#[test]
fn deep_nesting_and_many_errors_are_bounded() {
    let depth = 500_000;
    let deep = format!(
        "<overlay xmlns=\"urn:ietf:params:xml:ns:p2p:config-base\">{}{}</overlay>",
        "<a>".repeat(depth),
        "</a>".repeat(depth)
    );
    let e = parse_err(&deep);
    assert_eq!(e[0].element, "document");

    let nested = format!(
        "<overlay xmlns=\"urn:ietf:params:xml:ns:p2p:config-base\"><configuration instance-name=\"x\">{}{}</configuration></overlay>",
        "<e xmlns=\"urn:x\">".repeat(100),
        "</e>".repeat(100)
    );
    let e = parse_err(&nested);
    assert!(e[0].message.contains("nest deeper"));

    let many = doc_with("", &"<frob/>\n".repeat(50_000));
    let started = std::time::Instant::now();
    let e = parse_err(&many);
    assert_eq!(e.len(), 1001);
    assert!(e[1000].message.contains("49000 more errors"));
    assert!(started.elapsed() < Duration::from_secs(20));

    // A foreign element with a huge start tag and many children: linear work.
    let attrs: String = (0..20_000).map(|i| format!(" a{i}=\"{i}\"")).collect();
    let wide = doc_with(
        "",
        &format!(
            "<x:e xmlns:x=\"urn:x\"{attrs}>{}</x:e>",
            "<x:c/>".repeat(50_000)
        ),
    );
    let started = std::time::Instant::now();
    let doc = parse(&wide);
    assert_eq!(doc.configurations[0].config.extensions.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(20));

    let many_values = doc_with("", &"<kind-signer>00</kind-signer>\n".repeat(50_000));
    let doc = parse(&many_values);
    assert_eq!(doc.semantic_problems(now()).len(), 50_000 + 2);
}
