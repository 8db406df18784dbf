//! Hand-built byte vectors, written field by field from the RFC 6940 text (not produced by
//! our encoder). Each one must decode to the expected values and re-encode to exactly the
//! same bytes.

use bytes::Bytes;
use reload_wire::body::MessageBody;
use reload_wire::chord::{ChordUpdate, ChordUpdateBody};
use reload_wire::framing::FramedMessage;
use reload_wire::header::{Fragment, RELO_TOKEN, VERSION};
use reload_wire::link::{AttachReqAns, CandType, OverlayLinkType};
use reload_wire::message::{ErrorCode, ErrorResponse, Message, MessageCode};
use reload_wire::security::{HashAlgorithm, SignatureAndHashAlgorithm, SignerIdentity};
use reload_wire::storage::{FetchAns, KindId, StoreReq, StoredDataValue, TurnServer, UnknownKinds};
use reload_wire::{
    DecodeOptions, Destination, ErrorKind, ForwardingHeader, IpAddressPort, NodeId, ResourceId,
    Wire,
};

/// Hex strings (whitespace ignored) to bytes.
fn hex(parts: &[&str]) -> Bytes {
    let s: String = parts
        .concat()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(s.len().is_multiple_of(2), "odd hex length");
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<_>>(),
    )
}

fn opts() -> DecodeOptions {
    DecodeOptions::default()
}

fn check_round_trip<T: Wire + std::fmt::Debug>(v: &T, wire: &Bytes) {
    assert_eq!(v.encoded_len(), wire.len());
    assert_eq!(&v.to_bytes().unwrap(), wire, "re-encoding differs");
}

const N16: &str = "000102030405060708090a0b0c0d0e0f"; // a 16-byte Node-ID / Resource-ID
const H32: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; // 32-byte hash

/// §6.3.2 / §6.3.2.2: via list with a node entry and a 2-byte compressed id; destination
/// list with a compressed id followed by a resource (resources only come last).
#[test]
fn forwarding_header_with_compressed_ids() {
    let wire = hex(&[
        "d2454c4f",         // relo_token
        "01020304",         // overlay
        "0007",             // configuration_sequence
        "0a",               // version 1.0
        "64",               // ttl 100
        "c0000000",         // fragment: unfragmented
        "0000004f",         // length: 38 + 20 + 21 = 79
        "000000000000002a", // transaction_id 42
        "00000000",         // max_response_length
        "0014",             // via_list_length 20
        "0015",             // destination_list_length 21
        "0000",             // options_length
        "01",
        "10",
        N16,    // via[0]: node(1), length 16, Node-ID
        "8005", // via[1]: compressed opaque id 0x8005
        "8123", // dest[0]: compressed opaque id 0x8123
        "02",
        "11",
        "10",
        N16, // dest[1]: resource(2), length 17 = ResourceId<0..2^8-1>
    ]);
    let (h, len) = ForwardingHeader::peek(&wire, &opts()).unwrap();
    assert_eq!(len, 79);
    assert_eq!(h.overlay, 0x0102_0304);
    assert_eq!(h.configuration_sequence, 7);
    assert_eq!(h.version, VERSION);
    assert_eq!(h.ttl, 100);
    assert_eq!(h.fragment, Fragment::UNFRAGMENTED);
    assert_eq!(h.fragment.0, 0xc000_0000);
    assert!(h.fragment.is_whole());
    assert_eq!(h.transaction_id, 42);
    let id = NodeId::from_slice(&hex(&[N16])).unwrap();
    assert_eq!(
        h.via_list,
        vec![Destination::Node(id), Destination::Compressed(0x8005)]
    );
    assert_eq!(
        h.destination_list,
        vec![
            Destination::Compressed(0x8123),
            Destination::Resource(ResourceId::new(hex(&[N16])))
        ]
    );
    check_round_trip(&h, &wire);
}

/// A Ping request (§6.5.3) with a full security block (§6.3.4): one X.509 certificate, an
/// RSA/SHA-256 signature and a cert_hash signer identity.
#[test]
fn signed_ping_request() {
    let wire = hex(&[
        // ForwardingHeader
        "d2454c4f",
        "8b1a7f3c",
        "0001",
        "0a",
        "64",
        "c0000000",
        "00000080",         // length 128 = 56 + 14 + 58
        "0123456789abcdef", // transaction_id
        "00000000",
        "0000",
        "0012",
        "0000",
        "01",
        "10",
        N16, // destination: node
        // MessageContents
        "0017",     // message_code ping_req
        "00000004", // message_body length
        "0002abcd", //   PingReq.padding<0..2^16-1> = ab cd
        "00000000", // extensions: none
        // SecurityBlock
        "0007", // certificates<0..2^16-1>: 7 bytes
        "00",
        "0004",
        "30020500", //   X.509(0), certificate<0..2^16-1>
        "0401",     // SignatureAndHashAlgorithm: sha256(4), rsa(1)
        "01",
        "0022", // SignerIdentity: cert_hash(1), length 34
        "04",
        "20",
        H32, //   hash_alg sha256, certificate_hash<0..2^8-1>
        "0008",
        "0102030405060708", // signature_value<0..2^16-1>
    ]);
    let m = Message::decode(&wire, &opts()).unwrap();
    assert_eq!(m.header.length, 128);
    assert_eq!(m.contents.message_code, MessageCode::PING_REQ);
    let MessageBody::PingReq(p) = m.contents.body(&opts()).unwrap() else {
        panic!("not a PingReq")
    };
    assert_eq!(&p.padding[..], &[0xab, 0xcd]);
    assert_eq!(m.security.certificates.len(), 1);
    assert_eq!(
        &m.security.certificates[0].certificate[..],
        &[0x30, 0x02, 0x05, 0x00]
    );
    assert_eq!(
        m.security.signature.algorithm,
        SignatureAndHashAlgorithm::RSA_SHA256
    );
    assert_eq!(
        m.security.signature.identity,
        SignerIdentity::CertHash {
            hash_alg: HashAlgorithm::SHA256,
            certificate_hash: hex(&[H32])
        }
    );
    check_round_trip(&m, &wire);

    // §6.3.4: the signature covers overlay ‖ transaction_id ‖ MessageContents ‖ SignerIdentity.
    let expected_input = hex(&[
        "8b1a7f3c",
        "0123456789abcdef",
        "0017",
        "00000004",
        "0002abcd",
        "00000000",
        "01",
        "0022",
        "04",
        "20",
        H32,
    ]);
    assert_eq!(m.signature_input().unwrap(), expected_input);
}

/// A Store (§7.4.1.1) of one dictionary value (SIP-REGISTRATION, Kind 1, is a dictionary
/// keyed by the storer's Node-ID; RFC 7904 §3.2).
#[test]
fn store_request_of_a_dictionary_value() {
    let value = "0100130011616c696365406578616d706c652e6f7267"; // SipRegistration uri "alice@example.org"
    let wire = hex(&[
        "10",
        N16,                // resource: ResourceId<0..2^8-1>
        "00",               // replica_number 0
        "0000007a",         // kind_data<0..2^32-1>: 122 bytes
        "00000001",         //   kind SIP-REGISTRATION
        "0000000000000005", //   generation_counter
        "0000006a",         //   values<0..2^32-1>: 106 bytes
        "00000066",         //     StoredData.length 102
        "0000018bcfe56800", //     storage_time (ms)
        "00000e10",         //     lifetime 3600 s
        "0010",
        N16,  //     DictionaryEntry.key<0..2^16-1>
        "01", //     DataValue.exists
        "00000016",
        value, //     DataValue.value<0..2^32-1>: 22 bytes
        "0401",
        "01",
        "0022",
        "04",
        "20",
        H32, // signature: algorithm, cert_hash identity
        "0004",
        "deadbeef", //     signature_value
    ]);
    assert_eq!(wire.len(), 17 + 1 + 4 + 122);
    let req = StoreReq::decode(&wire, &opts()).unwrap();
    assert_eq!(req.resource, ResourceId::new(hex(&[N16])));
    assert_eq!(req.kind_data.len(), 1);
    let kd = &req.kind_data[0];
    assert_eq!(kd.kind, KindId::SIP_REGISTRATION);
    assert_eq!(kd.generation_counter, 5);
    let sd = &kd.values.as_slice()[0];
    assert_eq!(sd.storage_time, 0x18b_cfe5_6800);
    assert_eq!(sd.lifetime, 3600);
    let StoredDataValue::Dictionary(e) = &sd.value else {
        panic!("dictionary expected")
    };
    assert_eq!(e.key, hex(&[N16]));
    assert!(e.value.exists);
    assert_eq!(e.value.value, hex(&[value]));
    assert_eq!(&sd.signature.signature_value[..], &[0xde, 0xad, 0xbe, 0xef]);
    check_round_trip(&req, &wire);
}

/// A FetchAns (§7.4.2.2) with one TURN-SERVICE value (single value model, §9).
#[test]
fn fetch_answer() {
    let wire = hex(&[
        "00000059",         // kind_responses<0..2^32-1>: 89 bytes
        "00000002",         //   kind TURN-SERVICE
        "0000000000000009", //   generation
        "00000049",         //   values<0..2^32-1>: 73 bytes
        "00000045",         //     StoredData.length 69
        "0000018bcfe56800",
        "00000e10",
        "01",
        "00000009", //     DataValue: exists, value<0..2^32-1> 9 bytes
        "01",
        "01",
        "06",
        "c0000201",
        "0d96", // TurnServer: iteration 1, 192.0.2.1:3478
        "0401",
        "01",
        "0022",
        "04",
        "20",
        H32,
        "0002",
        "cafe",
    ]);
    let ans = FetchAns::decode(&wire, &opts()).unwrap();
    let r = &ans.kind_responses[0];
    assert_eq!(r.kind, KindId::TURN_SERVICE);
    assert_eq!(r.generation, 9);
    let StoredDataValue::Single(v) = &r.values.as_slice()[0].value else {
        panic!("single value expected")
    };
    let ts = TurnServer::decode(&v.value, &opts()).unwrap();
    assert_eq!(ts.iteration, 1);
    assert_eq!(
        ts.server_address.socket_addr().unwrap(),
        "192.0.2.1:3478".parse().unwrap()
    );
    check_round_trip(&ans, &wire);
}

/// An Attach (§6.5.1.1) with a host, a server-reflexive and a relayed (IPv6) candidate.
#[test]
fn attach_with_host_srflx_relay_candidates() {
    let wire = hex(&[
        "04",
        "75667267", // ufrag "ufrg"
        "06",
        "706173737764", // password "passwd"
        "07",
        "70617373697665", // role "passive"
        "0059",           // candidates<0..2^16-1>: 89 bytes
        // host: 192.0.2.10:6084, DTLS-UDP-SR, foundation "1"
        "01",
        "06",
        "c000020a",
        "17c4",
        "01",
        "01",
        "31",
        "7e0000ff",
        "01",
        "0000",
        // srflx: 203.0.113.5:50000, related 192.0.2.10:6084
        "01",
        "06",
        "cb007105",
        "c350",
        "01",
        "01",
        "32",
        "640000ff",
        "02",
        "01",
        "06",
        "c000020a",
        "17c4",
        "0000",
        // relay: [2001:db8::1]:3478, related 203.0.113.5:50000, one IceExtension "nm"="v"
        "02",
        "12",
        "20010db8000000000000000000000001",
        "0d96",
        "01",
        "01",
        "33",
        "000000ff",
        "04",
        "01",
        "06",
        "cb007105",
        "c350",
        "0007",
        "0002",
        "6e6d",
        "0001",
        "76",
        "01", // send_update
    ]);
    let a = AttachReqAns::decode(&wire, &opts()).unwrap();
    assert_eq!(&a.role[..], b"passive");
    assert!(a.send_update);
    let types: Vec<_> = a.candidates.iter().map(|c| c.cand_type).collect();
    assert_eq!(
        types,
        vec![CandType::HOST, CandType::SRFLX, CandType::RELAY]
    );
    assert!(
        a.candidates
            .iter()
            .all(|c| c.overlay_link == OverlayLinkType::DTLS_UDP_SR)
    );
    assert_eq!(a.candidates[0].priority, 0x7e00_00ff);
    assert_eq!(a.candidates[0].rel_addr_port, None);
    assert_eq!(
        a.candidates[1]
            .rel_addr_port
            .as_ref()
            .and_then(IpAddressPort::socket_addr),
        Some("192.0.2.10:6084".parse().unwrap())
    );
    assert_eq!(
        a.candidates[2].addr_port.socket_addr(),
        Some("[2001:db8::1]:3478".parse().unwrap())
    );
    assert_eq!(&a.candidates[2].extensions[0].name[..], b"nm");
    check_round_trip(&a, &wire);
}

/// A CHORD-RELOAD Update of type full (§10.7).
#[test]
fn chord_update_full() {
    let (p1, p2, s1) = ("11".repeat(16), "22".repeat(16), "33".repeat(16));
    let (f1, f2, f3) = ("44".repeat(16), "55".repeat(16), "66".repeat(16));
    let wire = hex(&[
        "00000e10", // uptime 3600
        "03",       // type full
        "0020", &p1, &p2, // predecessors<0..2^16-1>
        "0010", &s1, // successors
        "0030", &f1, &f2, &f3, // fingers
    ]);
    let u = ChordUpdate::decode(&wire, &opts()).unwrap();
    assert_eq!(u.uptime, 3600);
    let ChordUpdateBody::Full {
        predecessors,
        successors,
        fingers,
    } = &u.body
    else {
        panic!("full expected")
    };
    assert_eq!(predecessors.len(), 2);
    assert_eq!(
        successors[0],
        NodeId::from_u128(0x3333_3333_3333_3333_3333_3333_3333_3333)
    );
    assert_eq!(fingers.len(), 3);
    check_round_trip(&u, &wire);
    // The same bytes as the body of an UpdateReq.
    let body = MessageBody::decode(MessageCode::UPDATE_REQ, &wire, &opts()).unwrap();
    assert_eq!(body.chord_update(&opts()).unwrap().unwrap(), u);
}

/// ErrorResponse (§6.3.3.1): Error_Unknown_Kind carries the unknown Kind-IDs; other errors
/// may carry text.
#[test]
fn error_responses() {
    let wire = hex(&["000c", "0009", "08", "00000004", "f0000001"]);
    let e = ErrorResponse::decode(&wire, &opts()).unwrap();
    assert_eq!(e.error_code, ErrorCode::UNKNOWN_KIND);
    let kinds = UnknownKinds::decode(&e.error_info, &opts()).unwrap();
    assert_eq!(kinds.unknown_kinds, vec![KindId(4), KindId(0xf000_0001)]);
    check_round_trip(&e, &wire);

    let wire = hex(&["0003", "0009", "6e6f2073756368", "0a0a"]);
    let e = ErrorResponse::decode(&wire, &opts()).unwrap();
    assert_eq!(e.error_code, ErrorCode::NOT_FOUND);
    assert_eq!(e.error_code.name(), Some("Error_Not_Found"));
    check_round_trip(&e, &wire);
}

/// FramedMessage (§6.6.2): a data frame and an ack frame.
#[test]
fn data_and_ack_frames() {
    let data = hex(&["80", "00000005", "000004", "deadbeef"]);
    let f = FramedMessage::decode(&data, &opts()).unwrap();
    assert_eq!(
        f,
        FramedMessage::Data {
            sequence: 5,
            message: hex(&["deadbeef"])
        }
    );
    check_round_trip(&f, &data);
    assert_eq!(FramedMessage::frame_len(&data, 5000), Ok(Some(12)));
    assert_eq!(FramedMessage::frame_len(&data[..11], 5000), Ok(None));

    let ack = hex(&["81", "00000005", "80000001"]);
    let f = FramedMessage::decode(&ack, &opts()).unwrap();
    assert_eq!(
        f,
        FramedMessage::Ack {
            ack_sequence: 5,
            received: 0x8000_0001
        }
    );
    check_round_trip(&f, &ack);
    assert_eq!(FramedMessage::frame_len(&ack, 5000), Ok(Some(9)));
}

/// Malformed inputs are refused with the failing field and its byte offset.
#[test]
fn malformed_inputs_name_field_and_offset() {
    // Wrong token.
    let mut bad = hex(&[
        "d2454c4e",
        "01020304",
        "0007",
        "0a",
        "64",
        "c0000000",
        "00000026",
        "000000000000002a",
        "00000000",
        "0000",
        "0000",
        "0000",
    ])
    .to_vec();
    let e = ForwardingHeader::decode(&Bytes::from(bad.clone()), &opts()).unwrap_err();
    assert!(e.field.contains("ForwardingHeader"), "{e}");
    assert_eq!(e.offset, 0);
    // Right token, destination list claims more bytes than there are.
    bad[0..4].copy_from_slice(&RELO_TOKEN.to_be_bytes());
    bad[34..36].copy_from_slice(&[0x00, 0x12]);
    let e = ForwardingHeader::decode(&Bytes::from(bad), &opts()).unwrap_err();
    assert_eq!(e.field, "ForwardingHeader.destination_list");
    assert_eq!(e.offset, 38);
    assert!(
        matches!(
            e.kind,
            ErrorKind::Truncated {
                needed: 18,
                available: 0
            }
        ),
        "{e}"
    );

    // A node destination whose length is not the overlay's Node-ID length.
    let e = Destination::decode(&hex(&["01", "04", "01020304"]), &opts()).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e}");
    // A resource destination whose length disagrees with the ResourceId inside it.
    let e = Destination::decode(&hex(&["02", "03", "01", "aa", "bb"]), &opts()).unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::TrailingBytes { left: 1 }),
        "{e}"
    );
    // A Boolean that is neither 0 nor 1.
    let e =
        reload_wire::storage::DataValue::decode(&hex(&["02", "00000000"]), &opts()).unwrap_err();
    assert_eq!(e.field, "DataValue.exists");
    // Trailing bytes after a complete structure.
    let e = reload_wire::link::PingAns::decode(
        &hex(&["00000000000000010000000000000002", "ff"]),
        &opts(),
    )
    .unwrap_err();
    assert_eq!(e.offset, 16);
    assert!(matches!(e.kind, ErrorKind::TrailingBytes { left: 1 }));
    // A message whose length field disagrees with the bytes framing delivered.
    let m = hex(&[
        "d2454c4f",
        "01020304",
        "0007",
        "0a",
        "64",
        "c0000000",
        "00000030",
        "000000000000002a",
        "00000000",
        "0000",
        "0000",
        "0000",
    ]);
    let e = Message::decode(&m, &opts()).unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Truncated {
                needed: 48,
                available: 38
            }
        ),
        "{e}"
    );
}

/// Node-ID length is an overlay parameter (§6.3.1.1): 20-byte Node-IDs decode with a
/// 20-byte context and are refused by a 16-byte one.
#[test]
fn node_id_length_comes_from_the_context() {
    let wire = hex(&["01", "14", &"ab".repeat(20)]);
    let o20 = DecodeOptions::new(20, 5000).unwrap();
    let d = Destination::decode(&wire, &o20).unwrap();
    assert_eq!(d.node_id().unwrap().len(), 20);
    check_round_trip(&d, &wire);
    assert!(Destination::decode(&wire, &opts()).is_err());
    assert!(DecodeOptions::new(15, 5000).is_err());
    assert!(DecodeOptions::new(21, 5000).is_err());
}

/// An unknown message code, unknown extension, unknown Kind and unknown option survive a
/// decode/encode cycle unchanged (the codec keeps what it does not understand).
#[test]
fn unknown_code_points_round_trip() {
    let wire = hex(&[
        "d2454c4f",
        "01020304",
        "0007",
        "0a",
        "64",
        "c0000000",
        "0000004d",
        "000000000000002a",
        "00000000",
        "0000",
        "0000",
        "0008",
        "7f",
        "03",
        "0004",
        "01020304", // option type 127 (unknown), flags FORWARD|DEST critical
        "0123",     // message_code 0x123 (unassigned)
        "00000002",
        "beef",
        "0000000a",
        "7777",
        "01",
        "00000003",
        "abcdef", // extension 0x7777, critical
        "0000",
        "0000",
        "03",
        "0000",
        "0000", // no certs, {0,0}, identity none, empty sig
    ]);
    let m = Message::decode(&wire, &opts()).unwrap();
    assert!(
        m.header.options[0].is_forward_critical() && m.header.options[0].is_destination_critical()
    );
    assert!(matches!(
        m.contents.body(&opts()).unwrap(),
        MessageBody::Unknown { .. }
    ));
    assert!(m.contents.extensions[0].critical);
    check_round_trip(&m, &wire);

    // A store of a private Kind with no data model known to the decoder.
    let wire = hex(&[
        "01",
        "aa",
        "00",
        "00000013",
        "f0000099",
        "0000000000000001",
        "00000003",
        "010203",
    ]);
    let req = StoreReq::decode(&wire, &opts()).unwrap();
    assert!(req.kind_data[0].values.as_slice().is_empty());
    check_round_trip(&req, &wire);
}
