//! The seed corpora of the fuzz targets (`fuzz/corpus/NAME/`, issue 10) replayed as
//! ordinary tests: every file goes through the target's function of
//! `reload_proto::fuzzing`, which must return without panicking. So `cargo test` (and
//! `.ci/run`) keeps every seed and every input that once found a bug passing.
//!
//! `write_seed_corpora` (ignored) wrote the seeds once:
//! `cargo test -p reload-proto --test fuzz_corpora -- --ignored write_seed_corpora`.

mod pki;
#[path = "../../../fuzz/replay.rs"]
mod replay;

use std::path::PathBuf;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use reload_proto::fuzzing;

fn corpus_dir(name: &str) -> PathBuf {
    replay::corpus_dir(env!("CARGO_MANIFEST_DIR"), name)
}

/// Runs `target` on every file of corpus `name`; a panic names the file.
fn replay(name: &str, target: fn(&[u8])) {
    replay::replay(env!("CARGO_MANIFEST_DIR"), name, target);
}

#[test]
fn framer_stream() {
    replay("framer_stream", fuzzing::framer_stream);
}

#[test]
fn reassembly() {
    replay("reassembly", fuzzing::reassembly);
}

#[test]
fn chord_bodies() {
    replay("chord_bodies", fuzzing::chord_bodies);
}

#[test]
fn config_xml() {
    replay("config_xml", fuzzing::config_xml);
}

#[test]
fn certificate() {
    replay("certificate", fuzzing::certificate);
}

#[test]
fn signer_cache() {
    replay("signer_cache", fuzzing::signer_cache);
}

#[test]
fn dtls_demux() {
    replay("dtls_demux", fuzzing::dtls_demux);
}

#[test]
fn node_messages() {
    replay("node_messages", fuzzing::node_messages);
}

/// The seeds still reach what they were made for (the fixture PKI judged at the targets'
/// fixed time): a fixture certificate passes the trust policy, a signed message verifies, the
/// signed configuration checks clean, a ClientHello's cookie is valid, a Ping through a
/// fixture overlay is answered.
#[test]
fn seeds_reach_what_they_are_for() {
    use reload_proto::check::{CheckOptions, check_document};
    use reload_proto::link::cookie::{ClientHello, CookieJar};
    use reload_proto::sign::Verifier;
    use reload_wire::{DecodeOptions, Message, Wire};
    let seed = |name: &str, file: &str| std::fs::read(corpus_dir(name).join(file)).unwrap();
    let trust = fuzzing::fixture_trust();
    let node0 = fuzzing::fixture_credentials(0);
    trust
        .verify(&node0.cert, &[], fuzzing::wall())
        .expect("the fixture certificates are valid at the fixed time");
    let record = seed("signer_cache", "seed-00-one-signed-ping");
    let m = Message::decode(
        &Bytes::copy_from_slice(&record[2..]),
        &DecodeOptions::default(),
    )
    .unwrap();
    Verifier::new(trust, 4)
        .verify_message(&m, fuzzing::wall())
        .expect("the signed seed verifies");
    let doc = seed("config_xml", "seed-01-signed-fixture-seq1");
    let report = check_document(
        &doc,
        &CheckOptions {
            verify: true,
            previous: Some(fuzzing::fixture_config()),
            now: fuzzing::wall(),
        },
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let d = seed("dtls_demux", "seed-01-client-hello-valid-cookie");
    let hello = ClientHello::parse(&d[2..]).unwrap();
    assert!(CookieJar::new(&fuzzing::COOKIE_SECRET).verify(
        fuzzing::DTLS_LOCAL,
        fuzzing::DTLS_REMOTE,
        hello.random(&d[2..]),
        hello.cookie(&d[2..])
    ));
    let mut sim = fuzzing::fixture_sim();
    let ping = |sim: &mut reload_proto::sim::Sim, a, b| {
        fuzzing::sim_ping(sim, a, b, std::time::Duration::from_secs(20))
    };
    assert_eq!(ping(&mut sim, 1, 0), Some(fuzzing::fixture_node_id(0)));
    assert_eq!(ping(&mut sim, 2, 0), Some(fuzzing::fixture_node_id(0)));
    assert_eq!(ping(&mut sim, 0, 2), Some(fuzzing::fixture_node_id(2)));
}

// ---- writing the seeds ----------------------------------------------------------------

mod seeds {
    use super::*;
    use reload_proto::check::signed_document;
    use reload_proto::config::{AccessPolicy, KindDataModel, KindDefinition, KindRef};
    use reload_proto::identity::{node_id_uri, overlay_hash, to_pem};
    use reload_proto::link::cookie::{ClientHello, CookieJar};
    use reload_proto::link::{Link, LinkConfig, LinkContext, WallAnchor};
    use reload_proto::node::fragment;
    use reload_proto::sign::Credentials;
    use reload_wire::body::MessageBody;
    use reload_wire::chord::{ChordLeaveData, ChordRouteQueryAns, ChordUpdate, ChordUpdateBody};
    use reload_wire::link::{
        AppAttach, AttachReqAns, ConfigUpdateReq, IceCandidate, OverlayLinkType, PingReq,
        ROLE_PASSIVE,
    };
    use reload_wire::message::{ErrorCode, ErrorResponse, MessageCode};
    use reload_wire::storage::{FindReq, KindId};
    use reload_wire::topology::{
        JoinReq, LeaveReq, ProbeInformationType, ProbeReq, RouteQueryReq, UpdateReq,
    };
    use reload_wire::{
        DecodeOptions, Destination, ForwardingHeader, FramedMessage, Message, MessageContents,
        NodeId, ResourceId, SecurityBlock, Signature, Wire,
    };

    pub fn write(name: &str, seeds: &[(&str, Vec<u8>)]) {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, (label, data)) in seeds.iter().enumerate() {
            // Existing seeds stay as they are (signatures and randoms differ each time):
            // only seeds added to the end of a list are written.
            let path = dir.join(format!("seed-{i:02}-{label}"));
            if !path.exists() {
                std::fs::write(path, data).unwrap();
            }
        }
    }

    /// `[len: u16][bytes]` records.
    pub fn records<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut v = Vec::new();
        for i in items {
            v.put_u16(i.len() as u16);
            v.put_slice(i);
        }
        v
    }

    fn nid(i: usize) -> NodeId {
        fuzzing::fixture_node_id(i)
    }

    /// A request from `signer` to `dest`, signed.
    pub fn request(
        signer: &Credentials,
        tx: u64,
        dest: Vec<Destination>,
        body: &MessageBody,
    ) -> Bytes {
        let mut h = ForwardingHeader::new(overlay_hash(fuzzing::OVERLAY), 0, 100, tx);
        h.destination_list = dest;
        let mut m = Message {
            header: h,
            contents: MessageContents::from_body(body).unwrap(),
            security: SecurityBlock {
                certificates: vec![],
                signature: Signature::none(),
            },
        };
        signer.sign_message(&mut m, vec![]).unwrap();
        m.header.length = m.encoded_len() as u32;
        m.to_bytes().unwrap()
    }

    fn ping(signer: &Credentials, tx: u64, to: NodeId) -> Bytes {
        request(
            signer,
            tx,
            vec![Destination::Node(to)],
            &MessageBody::PingReq(PingReq::default()),
        )
    }

    fn data_frame(seq: u32, m: &[u8]) -> Bytes {
        FramedMessage::Data {
            sequence: seq,
            message: Bytes::copy_from_slice(m),
        }
        .to_bytes()
        .unwrap()
    }

    fn ack(seq: u32, mask: u32) -> Bytes {
        FramedMessage::Ack {
            ack_sequence: seq,
            received: mask,
        }
        .to_bytes()
        .unwrap()
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    pub fn framer_stream() {
        let n1 = fuzzing::fixture_credentials(1);
        let msg = ping(&n1, 1, nid(0));
        let big = request(
            &n1,
            2,
            vec![Destination::Node(nid(0))],
            &MessageBody::PingReq(PingReq {
                padding: Bytes::from(vec![0u8; 400]),
            }),
        );
        let two = cat(&[&data_frame(0, &msg), &ack(0, 0), &data_frame(1, b"x")]);
        write(
            "framer_stream",
            &[
                // max 5000, 16-byte IDs, 1-byte chunks.
                ("fh-data-ack-data-1byte", cat(&[&[0x02], &two])),
                // 91-byte chunks.
                ("fh-data-ack-data-chunks", cat(&[&[0x52], &two])),
                // A whole stream in one chunk (SR: one record).
                ("sr-one-record", cat(&[&[0xfa], &two])),
                // max 300: the 400-byte Ping is over it, its header is RELOAD (TooLarge).
                ("too-large-reload", cat(&[&[0xf9], &data_frame(0, &big)])),
                // max 64, 20-byte IDs: too large and not RELOAD.
                (
                    "too-large-not-reload",
                    cat(&[&[0xfc], &data_frame(0, &[7u8; 100])]),
                ),
                (
                    "acks-and-window",
                    cat(&[
                        &[0x1a],
                        &ack(0, 0),
                        &ack(0, u32::MAX),
                        &ack(7, 0b1011),
                        &data_frame(5, b"a"),
                        &data_frame(3, b"b"),
                        &data_frame(40, b"c"),
                    ]),
                ),
                (
                    "unknown-frame-type",
                    cat(&[&[0x02], &[0x7f, 0, 0, 0, 1, 0, 0, 0, 0]]),
                ),
                ("truncated", cat(&[&[0x0a], &data_frame(9, &msg)[..20]])),
            ],
        );
    }

    /// A built fragment op of the reassembly target.
    fn frag(op: u8, tx: u8, offset: u16, chunk: &[u8]) -> Vec<u8> {
        let mut v = vec![op & 0x7f, tx];
        v.put_u16(offset);
        v.push(chunk.len() as u8);
        v.extend_from_slice(chunk);
        v
    }

    fn raw(op: u8, b: &[u8]) -> Vec<u8> {
        let mut v = vec![op | 0x80];
        v.put_u16(b.len() as u16);
        v.extend_from_slice(b);
        v
    }

    /// A first fragment with a long via list, then a last one with a short header, each
    /// within the target's max-message-size of 3000 but not together (the fix of
    /// `Reassembly::insert`, issue 10).
    fn long_first_header() -> Vec<u8> {
        let fragment = |via: u128, offset: u32, last: bool, len: usize| {
            let mut h = ForwardingHeader::new(0x1234_5678, 1, 100, 5);
            h.via_list = (0..via)
                .map(|i| Destination::Node(NodeId::from_u128(i + 1)))
                .collect();
            h.fragment = reload_wire::Fragment::new(offset, last);
            let mut b = BytesMut::new();
            h.encode_with_length(&mut b, (h.encoded_len() + len) as u32)
                .unwrap();
            b.put_slice(&vec![3u8; len]);
            b.to_vec()
        };
        let short = fragment(0, 10, true, 0).len();
        cat(&[
            &raw(0, &fragment(30, 0, false, 10)),
            &raw(0, &fragment(0, 10, true, 3000 - short - 10)),
        ])
    }

    pub fn reassembly() {
        let body: Vec<u8> = (0..=255u8).collect();
        let n1 = fuzzing::fixture_credentials(1);
        let big = request(
            &n1,
            9,
            vec![Destination::Node(nid(0))],
            &MessageBody::PingReq(PingReq {
                padding: Bytes::from(vec![0x55u8; 1500]),
            }),
        );
        let opts = DecodeOptions::default().with_max_message_size(1 << 16);
        let pieces = fragment::split(big, 600, &opts);
        assert!(pieces.len() > 1);
        let raw_in_order: Vec<u8> = pieces.iter().flat_map(|p| raw(0, p)).collect();
        let raw_reversed: Vec<u8> = pieces.iter().rev().flat_map(|p| raw(1, p)).collect();
        let again: Vec<Bytes> = pieces
            .iter()
            .flat_map(|p| fragment::split(p.clone(), 400, &opts))
            .collect();
        let refragmented: Vec<u8> = again.iter().flat_map(|p| raw(2, p)).collect();
        write(
            "reassembly",
            &[
                (
                    "three-in-order",
                    cat(&[
                        &frag(0x00, 1, 0, &body[..100]),
                        &frag(0x00, 1, 100, &body[100..200]),
                        &frag(0x04, 1, 200, &body[200..]),
                    ]),
                ),
                (
                    "three-reversed-two-links",
                    cat(&[
                        &frag(0x04, 2, 200, &body[200..]),
                        &frag(0x01, 2, 100, &body[100..200]),
                        &frag(0x02, 2, 0, &body[..100]),
                    ]),
                ),
                (
                    "overlapping-and-repeated",
                    cat(&[
                        &frag(0x00, 3, 0, &body[..150]),
                        &frag(0x00, 3, 100, &body[100..220]),
                        &frag(0x00, 3, 100, &body[100..220]),
                        &frag(0x04, 3, 220, &body[220..]),
                    ]),
                ),
                (
                    "beyond-the-end",
                    cat(&[
                        &frag(0x04, 4, 0, &body[..50]),
                        &frag(0x00, 4, 60, &body[..10]),
                    ]),
                ),
                (
                    "expiry",
                    cat(&[
                        &frag(0x00, 5, 0, &body[..100]),
                        &frag(0x40, 5, 0, &[]),
                        &frag(0x44, 5, 100, &body[..100]),
                    ]),
                ),
                (
                    "eviction-many-messages",
                    (0..8u8)
                        .flat_map(|t| frag(t & 3, t, 0, &body[..200]))
                        .collect(),
                ),
                ("empty-not-last", frag(0x00, 6, 0, &[])),
                (
                    "scaled-offsets",
                    cat(&[
                        &frag(0x30, 7, 1000, &body[..10]),
                        &frag(0x34, 7, 2000, &body[..10]),
                    ]),
                ),
                ("raw-split-in-order", raw_in_order),
                ("raw-split-reversed", raw_reversed),
                ("raw-refragmented", refragmented),
                ("finding-long-first-header", long_first_header()),
            ],
        );
    }

    fn ids(v: &[u128]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId::from_u128(i)).collect()
    }

    fn chord_op(op: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![op];
        v.put_u16(body.len() as u16);
        v.extend_from_slice(body);
        v
    }

    pub fn chord_bodies() {
        let neighbors = ChordUpdate {
            uptime: 10,
            body: ChordUpdateBody::Neighbors {
                predecessors: ids(&[
                    0x4000_0000_0000_0000_0000_0000_0000_0002,
                    0x1000_0000_0000_0000_0000_0000_0000_0001,
                ]),
                successors: ids(&[
                    0x9000_0000_0000_0000_0000_0000_0000_0003,
                    0xe000_0000_0000_0000_0000_0000_0000_0004,
                ]),
            },
        }
        .to_bytes()
        .unwrap();
        let full = ChordUpdate {
            uptime: 99,
            body: ChordUpdateBody::Full {
                predecessors: ids(&[0x7000_0000_0000_0000_0000_0000_0000_0000]),
                successors: ids(&[
                    0x8800_0000_0000_0000_0000_0000_0000_0000,
                    0xa000_0000_0000_0000_0000_0000_0000_0000,
                ]),
                fingers: ids(&[
                    0x8000_0000_0000_0000_0000_0000_0000_0001,
                    0xc000_0000_0000_0000_0000_0000_0000_0000,
                    0x0000_0000_0000_0000_0000_0000_0000_0009,
                ]),
            },
        }
        .to_bytes()
        .unwrap();
        let ready = ChordUpdate {
            uptime: 0,
            body: ChordUpdateBody::PeerReady,
        }
        .to_bytes()
        .unwrap();
        let leave_succ = ChordLeaveData::FromSucc {
            successors: ids(&[
                0x9000_0000_0000_0000_0000_0000_0000_0003,
                0xe000_0000_0000_0000_0000_0000_0000_0004,
            ]),
        }
        .to_bytes()
        .unwrap();
        let leave_pred = ChordLeaveData::FromPred {
            predecessors: ids(&[0x4000_0000_0000_0000_0000_0000_0000_0002]),
        }
        .to_bytes()
        .unwrap();
        let rq = ChordRouteQueryAns {
            next_peer: NodeId::from_u128(0x9000_0000_0000_0000_0000_0000_0000_0003),
        }
        .to_bytes()
        .unwrap();
        write(
            "chord_bodies",
            &[
                ("update-neighbors", neighbors.to_vec()),
                ("update-full", full.to_vec()),
                ("update-peer-ready", ready.to_vec()),
                ("leave-from-succ", leave_succ.to_vec()),
                ("leave-from-pred", leave_pred.to_vec()),
                ("route-query-ans", rq.to_vec()),
                (
                    // Update from peer 0 and 2, a Leave from peer 1, a timeout.
                    "ops-update-leave-timeout",
                    cat(&[
                        &chord_op(0x00, &neighbors),
                        &chord_op(0x40, &full),
                        &chord_op(0x22, &leave_succ),
                        &[0xff],
                    ]),
                ),
                (
                    // The stranger (4) sends an Update; peer 3 goes down and comes back.
                    "ops-stranger-linkdown",
                    cat(&[
                        &chord_op(0x80, &full),
                        &[0x64, 0x65],
                        &chord_op(0x61, &ready),
                        &chord_op(0x63, &rq),
                        &chord_op(0x06, &[]),
                        &[0x57],
                    ]),
                ),
                (
                    "ops-leave-from-pred-then-timeouts",
                    cat(&[&chord_op(0x42, &leave_pred), &[0xf7, 0xf7, 0xf7]]),
                ),
            ],
        );
    }

    /// A configuration of the fuzz overlay signed by fixture node 2 (its
    /// configuration-signer), with a Kind signed by fixture node 1.
    pub fn signed_config(sequence: u16) -> String {
        let mut c = fuzzing::fixture_config();
        c.sequence = sequence;
        c.expiration = Some(time::OffsetDateTime::from_unix_timestamp(1_893_456_000).unwrap());
        c.kind_signers = vec![nid(1).as_bytes().to_vec()];
        c.enrollment_servers = vec!["https://fuzz.test/enroll".into()];
        c.bootstrap_nodes = vec!["10.0.0.1:6084".parse().unwrap()];
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
        signed_document(
            &mut c,
            &fuzzing::fixture_credentials(2),
            &fuzzing::fixture_credentials(1),
        )
        .unwrap()
    }

    pub fn config_xml() {
        let example = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc6940-example.relo"),
        )
        .unwrap();
        let unsigned = fuzzing::fixture_config().to_xml();
        let doc = reload_proto::config::ConfigDocument::assemble(&[(unsigned.clone(), vec![])]);
        write(
            "config_xml",
            &[
                ("rfc6940-example", example),
                ("signed-fixture-seq1", signed_config(1).into_bytes()),
                ("unsigned-fixture", doc.into_bytes()),
                (
                    "minimal",
                    br#"<?xml version="1.0" encoding="UTF-8"?>
<overlay xmlns="urn:ietf:params:xml:ns:p2p:config-base" xmlns:chord="urn:ietf:params:xml:ns:p2p:config-chord">
<configuration instance-name="fuzz.test" sequence="3" expiration="2030-01-01T00:00:00Z">
<topology-plugin>CHORD-RELOAD</topology-plugin>
<node-id-length>16</node-id-length>
<max-message-size>5000</max-message-size>
<chord:chord-update-interval>400</chord:chord-update-interval>
<bootstrap-node address="192.0.2.1" port="6084"/>
</configuration>
</overlay>
"#
                    .to_vec(),
                ),
                (
                    "two-configurations-entities",
                    br#"<?xml version="1.0"?>
<!DOCTYPE overlay [<!ENTITY a "aaaa">]>
<overlay xmlns="urn:ietf:params:xml:ns:p2p:config-base">
<configuration instance-name="a.test" sequence="1"><initial-ttl>50</initial-ttl></configuration>
<signature>AAEC</signature>
<configuration instance-name="b.test" sequence="65534"><node-id-length>20</node-id-length><bad-node>00112233445566778899aabbccddeeff</bad-node></configuration>
</overlay>
"#
                    .to_vec(),
                ),
            ],
        );
    }

    pub fn certificate() {
        let root = fuzzing::fixture_root();
        let n0 = fuzzing::fixture_credentials(0);
        let n2 = fuzzing::fixture_credentials(2);
        let ca = pki::TestCa::new(false);
        let (_, rsa) = ca.issue(
            true,
            &[NodeId::from_u128(5), NodeId::from_u128(6)],
            "multi",
            "fuzz.test",
            pki::now_window(),
        );
        let (_, self_signed, _) = pki::self_signed(false, |_| vec![NodeId::from_u128(9)]);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
            "alice@fuzz.test".to_string().try_into().unwrap(),
        )];
        let csr = p.serialize_request(&key).unwrap().der().to_vec();
        let resource_uri = {
            let d = Destination::Resource(ResourceId::new(Bytes::from_static(b"alice")));
            format!(
                "reload://{}@fuzz.test/00ff",
                hex::encode(d.to_bytes().unwrap())
            )
        };
        write(
            "certificate",
            &[
                ("root-ca", root.to_vec()),
                ("node0", n0.cert.der().to_vec()),
                ("node2", n2.cert.der().to_vec()),
                ("rsa-two-node-ids-other-ca", rsa.to_vec()),
                ("self-signed", self_signed.to_vec()),
                ("csr-p256", csr),
                ("uri-node", node_id_uri(&nid(1), "fuzz.test").into_bytes()),
                (
                    "uri-bare-20",
                    format!("reload://{}@fuzz.test/", "ab".repeat(20)).into_bytes(),
                ),
                ("uri-resource-specifier", resource_uri.into_bytes()),
                ("pem", to_pem("CERTIFICATE", n0.cert.der()).into_bytes()),
            ],
        );
    }

    pub fn signer_cache() {
        let creds: Vec<Credentials> = (0..3).map(fuzzing::fixture_credentials).collect();
        let p: Vec<Bytes> = creds
            .iter()
            .enumerate()
            .map(|(i, c)| ping(c, 100 + i as u64, nid((i + 1) % 3)))
            .collect();
        let identity = creds[1].identity().to_bytes().unwrap();
        let mut tampered = BytesMut::from(&p[1][..]);
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        // A message whose security block carries the root and a foreign certificate too.
        let mut extra = Message::decode(&p[0], &DecodeOptions::default()).unwrap();
        creds[0]
            .sign_message(
                &mut extra,
                vec![reload_wire::GenericCertificate::x509(
                    fuzzing::fixture_root(),
                )],
            )
            .unwrap();
        extra.header.length = extra.encoded_len() as u32;
        let extra = extra.to_bytes().unwrap();
        write(
            "signer_cache",
            &[
                ("one-signed-ping", records([&p[1][..]])),
                ("three-signers-evict", records(p.iter().map(|b| &b[..]))),
                (
                    "repeat-cached",
                    records([&p[0][..], &p[0][..], &p[1][..], &p[0][..]]),
                ),
                ("tampered", records([&tampered[..], &p[1][..]])),
                ("extra-certificates", records([&extra[..]])),
                (
                    "certs-and-identity",
                    records([
                        creds[0].cert.der().as_ref(),
                        creds[1].cert.der().as_ref(),
                        creds[2].cert.der().as_ref(),
                        &identity[..],
                        &p[1][..],
                    ]),
                ),
            ],
        );
    }

    fn client_context(i: usize) -> std::sync::Arc<LinkContext> {
        let anchor = WallAnchor::new(Instant::now(), fuzzing::wall());
        LinkContext::new(
            LinkConfig::new(fuzzing::fixture_trust(), 5000, anchor),
            &fuzzing::fixture_credentials(i),
        )
        .unwrap()
    }

    fn drain_transmits(l: &mut Link) -> Vec<Bytes> {
        let mut v = Vec::new();
        while let Some(b) = l.poll_transmit() {
            v.push(b);
        }
        v
    }

    pub fn dtls_demux() {
        let now = Instant::now();
        let cctx = client_context(1);
        let mut client = Link::connect_dtls(&cctx, None, now).unwrap();
        let ch1 = drain_transmits(&mut client).remove(0);
        let hello = ClientHello::parse(&ch1).expect("rtc-dtls sends one unfragmented ClientHello");
        let jar = CookieJar::new(&fuzzing::COOKIE_SECRET);
        let cookie = jar.cookie(
            fuzzing::DTLS_LOCAL,
            fuzzing::DTLS_REMOTE,
            hello.random(&ch1),
        );
        client.handle_input(now, &hello.hello_verify_request(&ch1, &cookie));
        let ch2 = drain_transmits(&mut client).remove(0);
        let with_cookie = ClientHello::parse(&ch2).unwrap();
        assert_eq!(with_cookie.cookie(&ch2), cookie);
        // The server's flight, then the client's: certificate, key exchange, Finished.
        let sctx = fuzzing::fixture_link_context();
        let mut server = Link::accept_dtls_with_cookie(&sctx, None, Some(cookie), now).unwrap();
        server.handle_input(now, &with_cookie.as_first(&ch2));
        drain_transmits(&mut server);
        server.handle_input(now, &ch2);
        for d in drain_transmits(&mut server) {
            client.handle_input(now, &d);
        }
        let flight3 = drain_transmits(&mut client);
        let mut handshake = vec![&ch2[..]];
        handshake.extend(flight3.iter().map(|b| &b[..]));

        let mut tls = Link::connect_tls(&cctx, None, now).unwrap();
        let tls_hello: Vec<u8> = drain_transmits(&mut tls).concat();

        let mut hvr = hello.hello_verify_request(&ch1, &cookie).to_vec();
        hvr[0] = 22;
        write(
            "dtls_demux",
            &[
                ("client-hello-no-cookie", records([&ch1[..]])),
                ("client-hello-valid-cookie", records([&ch2[..]])),
                ("handshake-flights", records(handshake)),
                ("client-hello-twice", records([&ch1[..], &ch2[..]])),
                ("tls-client-hello-stream", tls_hello),
                ("hello-verify-request", records([&hvr[..]])),
                (
                    "alert-and-appdata",
                    records([
                        &[21u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 40][..],
                        &[23u8, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 3, 1, 2, 3][..],
                    ]),
                ),
            ],
        );
    }

    /// A node_messages record: flags, then the message.
    fn nm(flags: u8, m: &[u8]) -> Vec<u8> {
        let mut v = vec![flags];
        v.put_u16(m.len() as u16);
        v.extend_from_slice(m);
        v
    }

    pub fn node_messages() {
        let n1 = fuzzing::fixture_credentials(1);
        let n2 = fuzzing::fixture_credentials(2);
        let to0 = vec![Destination::Node(nid(0))];
        let res = Destination::Resource(reload_proto::identity::chord_resource_id(b"alice"));
        let req =
            |tx: u64, dest: Vec<Destination>, body: MessageBody| request(&n1, tx, dest, &body);
        let update = ChordUpdate {
            uptime: 5,
            body: ChordUpdateBody::Neighbors {
                predecessors: vec![nid(0)],
                successors: vec![nid(2), nid(0)],
            },
        }
        .to_bytes()
        .unwrap();
        let attach = AttachReqAns {
            ufrag: Bytes::from_static(b"uf"),
            password: Bytes::from_static(b"pw"),
            role: Bytes::from_static(ROLE_PASSIVE),
            candidates: vec![IceCandidate::host(
                "10.0.0.2:7000"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
                OverlayLinkType::TLS_TCP_FH_NO_ICE,
            )],
            send_update: true,
        };
        let config = signed_config(1);
        let big = req(
            20,
            to0.clone(),
            MessageBody::PingReq(PingReq {
                padding: Bytes::from(vec![1u8; 3000]),
            }),
        );
        let opts = DecodeOptions::default().with_max_message_size(1 << 16);
        let frags: Vec<u8> = fragment::split(big, 1200, &opts)
            .iter()
            .flat_map(|f| nm(0, f))
            .collect();
        let mut answer = Message::decode(&ping(&n1, 30, nid(0)), &opts).unwrap();
        answer.contents = MessageContents::from_body(&MessageBody::Error(ErrorResponse {
            error_code: ErrorCode::NOT_FOUND,
            error_info: Bytes::from_static(b"nope"),
        }))
        .unwrap();
        n1.sign_message(&mut answer, vec![]).unwrap();
        answer.header.length = answer.encoded_len() as u32;
        let answer = answer.to_bytes().unwrap();
        let mut ttl0 = Message::decode(&ping(&n1, 31, nid(2)), &opts).unwrap();
        ttl0.header.ttl = 0;
        ttl0.header.via_list = vec![Destination::Node(NodeId::from_u128(77))];
        ttl0.header.length = ttl0.encoded_len() as u32;
        let ttl0 = ttl0.to_bytes().unwrap();
        write(
            "node_messages",
            &[
                ("ping-node0", nm(0, &ping(&n1, 1, nid(0)))),
                ("ping-node2-forwarded", nm(0, &ping(&n1, 2, nid(2)))),
                ("ping-by-node2-relayed", nm(0, &ping(&n2, 3, nid(0)))),
                (
                    "route-query",
                    nm(
                        2,
                        &req(
                            4,
                            vec![res.clone()],
                            MessageBody::RouteQueryReq(RouteQueryReq {
                                send_update: true,
                                destination: Destination::Node(nid(2)),
                                overlay_specific_data: Bytes::new(),
                            }),
                        ),
                    ),
                ),
                (
                    "probe",
                    nm(
                        2,
                        &req(
                            5,
                            to0.clone(),
                            MessageBody::ProbeReq(ProbeReq {
                                requested_info: vec![
                                    ProbeInformationType::RESPONSIBLE_SET,
                                    ProbeInformationType::NUM_RESOURCES,
                                    ProbeInformationType::UPTIME,
                                ],
                            }),
                        ),
                    ),
                ),
                (
                    "update",
                    nm(
                        2,
                        &req(6, to0.clone(), MessageBody::UpdateReq(UpdateReq(update))),
                    ),
                ),
                (
                    "attach",
                    nm(2, &req(7, to0.clone(), MessageBody::AttachReq(attach))),
                ),
                (
                    "join",
                    nm(
                        2,
                        &req(
                            8,
                            to0.clone(),
                            MessageBody::JoinReq(JoinReq {
                                joining_peer_id: nid(1),
                                overlay_specific_data: Bytes::new(),
                            }),
                        ),
                    ),
                ),
                (
                    "leave",
                    nm(
                        2,
                        &req(
                            9,
                            to0.clone(),
                            MessageBody::LeaveReq(LeaveReq {
                                leaving_peer_id: nid(1),
                                overlay_specific_data: ChordLeaveData::FromPred {
                                    predecessors: vec![nid(0)],
                                }
                                .to_bytes()
                                .unwrap(),
                            }),
                        ),
                    ),
                ),
                (
                    "app-attach",
                    nm(
                        2,
                        &req(
                            10,
                            to0.clone(),
                            MessageBody::AppAttachReq(AppAttach {
                                ufrag: Bytes::from_static(b"u"),
                                password: Bytes::from_static(b"p"),
                                application: 5060,
                                role: Bytes::from_static(ROLE_PASSIVE),
                                candidates: vec![],
                            }),
                        ),
                    ),
                ),
                (
                    "find",
                    nm(
                        2,
                        &req(
                            11,
                            vec![res.clone()],
                            MessageBody::FindReq(FindReq {
                                resource: ResourceId::new(Bytes::from_static(b"alice")),
                                kinds: vec![KindId(1)],
                            }),
                        ),
                    ),
                ),
                (
                    "config-update-signed",
                    nm(
                        2,
                        &req(
                            12,
                            to0.clone(),
                            MessageBody::ConfigUpdateReq(ConfigUpdateReq::Config(Bytes::from(
                                config,
                            ))),
                        ),
                    ),
                ),
                ("error-answer-unknown-tx", nm(0, &answer)),
                ("ttl0-via-list", nm(2, &ttl0)),
                ("fragments", frags),
                (
                    "unknown-method-and-garbage",
                    cat(&[
                        &nm(2, &{
                            let mut m = Message::decode(&ping(&n1, 40, nid(0)), &opts).unwrap();
                            m.contents.message_code = MessageCode(0x7ffe);
                            m.to_bytes().unwrap()
                        }),
                        &nm(1, b"RELO garbage"),
                    ]),
                ),
            ],
        );
    }
}

#[test]
#[ignore = "writes the seed corpora under fuzz/corpus (run once, by hand)"]
fn write_seed_corpora() {
    seeds::framer_stream();
    seeds::reassembly();
    seeds::chord_bodies();
    seeds::config_xml();
    seeds::certificate();
    seeds::signer_cache();
    seeds::dtls_demux();
    seeds::node_messages();
}
