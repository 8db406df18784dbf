//! Hand-built wire vectors for the extension RFC structures. Every byte below is typed
//! from the RFC's structure definition (field by field, commented), not produced by our
//! encoder; each test decodes the vector, checks the fields, and re-encodes to the same
//! bytes. The `malformed_*` tests check that broken vectors fail with the right kind of
//! error. 16-byte Node-IDs (`DecodeOptions::default()`).

use bytes::Bytes;
use reload_wire::common::{Destination, IpAddressPort, NodeId};
use reload_wire::ext::coap::{CoAPCaching, CoAPRegistration};
use reload_wire::ext::diagnostics::{
    DiagnosticKindId, DiagnosticsRequest, PathTrackAns, dm_flag, dm_flags,
};
use reload_wire::ext::redir::{RedirServiceProvider, RedirServiceProviderExtType};
use reload_wire::ext::routing::{ExtensiveRoutingModeOption, RouteMode};
use reload_wire::ext::self_tuning::SelfTuningData;
use reload_wire::ext::share::{AccessControlListItem, ResourceNameExtension, ResourceNameType};
use reload_wire::ext::sip::{SipRegistration, SipRegistrationType};
use reload_wire::header::{ForwardingOption, ForwardingOptionType, option_flags};
use reload_wire::link::OverlayLinkType;
use reload_wire::message::{MessageExtension, MessageExtensionType};
use reload_wire::storage::KindId;
use reload_wire::{DecodeOptions, ErrorKind, Wire};

/// Node-ID 0x11 × 16.
const NODE_A: [u8; 16] = [0x11; 16];
/// Node-ID 0x22 × 16.
const NODE_B: [u8; 16] = [0x22; 16];

fn cat(parts: &[&[u8]]) -> Bytes {
    Bytes::from(parts.concat())
}

fn opts() -> DecodeOptions {
    DecodeOptions::default()
}

fn node(b: [u8; 16]) -> NodeId {
    NodeId::from_slice(&b).unwrap()
}

/// Decodes `v`, re-encodes it, and checks the bytes are identical.
fn roundtrip<T: Wire + std::fmt::Debug>(v: &Bytes) -> T {
    let x = T::decode(v, &opts()).unwrap_or_else(|e| panic!("decode failed: {e}"));
    assert_eq!(x.encoded_len(), v.len(), "encoded_len of {x:?}");
    assert_eq!(&x.to_bytes().unwrap()[..], &v[..], "re-encoding of {x:?}");
    x
}

fn decode_err<T: Wire + std::fmt::Debug>(v: &Bytes) -> reload_wire::DecodeError {
    match T::decode(v, &opts()) {
        Ok(x) => panic!("decoded a malformed vector as {x:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------- RFC 7904 §3.2

#[test]
fn sip_registration_uri() {
    let v = cat(&[
        &[0x01],       // type = sip_registration_uri(1)
        &[0x00, 0x1b], // length = 27: the rest of the PDU (2 + 25)
        &[0x00, 0x19], // uri<0..2^16-1> length = 25
        b"sip:alice@dht.example.org",
    ]);
    let r: SipRegistration = roundtrip(&v);
    assert_eq!(
        r.registration_type(),
        SipRegistrationType::SIP_REGISTRATION_URI
    );
    assert_eq!(
        r,
        SipRegistration::Uri(Bytes::from_static(b"sip:alice@dht.example.org"))
    );
}

#[test]
fn sip_registration_route() {
    let v = cat(&[
        &[0x02],       // type = sip_registration_route(2)
        &[0x00, 0x28], // length = 40 = 2 + 18 + 2 + 18
        &[0x00, 0x12], // contact_prefs<0..2^16-1> length = 18
        b"(sip.schemes=SIPS)",
        &[0x00, 0x12], // destination_list<3..2^16-1> length = 18 bytes
        &[0x01, 0x10], //   Destination type node(1), length 16
        &NODE_A,       //   Node-ID
    ]);
    let r: SipRegistration = roundtrip(&v);
    match r {
        SipRegistration::Route {
            contact_prefs,
            destination_list,
        } => {
            assert_eq!(&contact_prefs[..], b"(sip.schemes=SIPS)");
            assert_eq!(destination_list, vec![Destination::Node(node(NODE_A))]);
        }
        other => panic!("not a route: {other:?}"),
    }
}

#[test]
fn sip_registration_unknown_type_kept() {
    let v = cat(&[
        &[0x07],             // type 7: not registered
        &[0x00, 0x03],       // length = 3
        &[0xde, 0xad, 0xbf], // data, kept raw
    ]);
    let r: SipRegistration = roundtrip(&v);
    assert_eq!(r.registration_type(), SipRegistrationType(7));
}

#[test]
fn malformed_sip_registration() {
    // Route whose destination list is empty: below the RFC's minimum of 3 bytes.
    let empty = cat(&[
        &[0x02],       // sip_registration_route
        &[0x00, 0x06], // length = 6
        &[0x00, 0x02], // contact_prefs length 2
        b"()",
        &[0x00, 0x00], // destination_list length 0 (< 3)
    ]);
    let e = decode_err::<SipRegistration>(&empty);
    assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e}");
    assert!(e.field.contains("destination_list"), "{e}");
    assert_eq!(e.offset, 7);

    // A single 2-byte compressed destination: not empty, but still below 3 bytes.
    let short = cat(&[
        &[0x02],       // sip_registration_route
        &[0x00, 0x06], // length = 6
        &[0x00, 0x00], // contact_prefs length 0
        &[0x00, 0x02], // destination_list length 2 (< 3)
        &[0x80, 0x01], //   compressed opaque id
    ]);
    let e = decode_err::<SipRegistration>(&short);
    assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e}");

    // URI registration with a byte left over inside `length`.
    let trailing = cat(&[
        &[0x01],       // sip_registration_uri
        &[0x00, 0x04], // length = 4
        &[0x00, 0x01], // uri length 1
        b"x",
        &[0x00], // stray byte inside length
    ]);
    let e = decode_err::<SipRegistration>(&trailing);
    assert_eq!(e.kind, ErrorKind::TrailingBytes { left: 1 }, "{e}");

    // `length` runs past the end of the input.
    let truncated = cat(&[
        &[0x01],       // sip_registration_uri
        &[0x00, 0x10], // length = 16, but only 3 bytes follow
        &[0x00, 0x01],
        b"x",
    ]);
    let e = decode_err::<SipRegistration>(&truncated);
    assert!(matches!(e.kind, ErrorKind::Truncated { .. }), "{e}");

    // Encoding refuses a route list below 3 bytes too.
    let bad = SipRegistration::Route {
        contact_prefs: Bytes::new(),
        destination_list: vec![Destination::Compressed(0x8001)],
    };
    assert!(bad.to_bytes().is_err());
}

// ---------------------------------------------------- RFC 7263 §5.2.2 / RFC 7264 §5.2.1

/// An IPv4 IpAddressPort: 192.0.2.1 port 6084.
const IPV4_192_0_2_1_6084: [u8; 8] = [
    0x01, // type ipv4_address(1)
    0x06, // length 6
    0xc0, 0x00, 0x02, 0x01, // 192.0.2.1
    0x17, 0xc4, // port 6084
];

#[test]
fn extensive_routing_mode_drr() {
    let v = cat(&[
        &[0x01], // routemode DRR(1)
        &[0x01], // transport DTLS-UDP-SR(1)
        &IPV4_192_0_2_1_6084,
        &[0x12],       // destinations<1..2^8-1> length = 18
        &[0x01, 0x10], //   node(1), length 16
        &NODE_A,       //   the sending peer
    ]);
    let o: ExtensiveRoutingModeOption = roundtrip(&v);
    assert_eq!(o.routemode, RouteMode::DRR);
    assert_eq!(o.transport, OverlayLinkType::DTLS_UDP_SR);
    assert_eq!(
        o.ipaddressport.socket_addr(),
        Some("192.0.2.1:6084".parse().unwrap())
    );
    assert_eq!(o.destinations, vec![Destination::Node(node(NODE_A))]);
    assert!(o.destinations_match_mode());
    let built = ExtensiveRoutingModeOption::drr(
        OverlayLinkType::DTLS_UDP_SR,
        IpAddressPort::from("192.0.2.1:6084".parse::<std::net::SocketAddr>().unwrap()),
        node(NODE_A),
    );
    assert_eq!(built, o);
}

#[test]
fn extensive_routing_mode_rpr() {
    let v = cat(&[
        &[0x02], // routemode RPR(2)
        &[0x04], // transport TLS-TCP-FH-NO-ICE(4)
        &IPV4_192_0_2_1_6084,
        &[0x24],       // destinations length = 36
        &[0x01, 0x10], //   node(1), length 16
        &NODE_B,       //   the relay peer
        &[0x01, 0x10], //   node(1), length 16
        &NODE_A,       //   the sending peer
    ]);
    let o: ExtensiveRoutingModeOption = roundtrip(&v);
    assert_eq!(o.routemode, RouteMode::RPR);
    assert_eq!(
        o.destinations,
        vec![
            Destination::Node(node(NODE_B)),
            Destination::Node(node(NODE_A))
        ]
    );
    assert!(o.destinations_match_mode());
}

#[test]
fn extensive_routing_mode_in_forwarding_option() {
    let v = cat(&[
        &[0x02],       // ForwardingOption type extensive_routing_mode(2)
        &[0x08],       // flags IGNORE-STATE-KEEPING
        &[0x00, 0x1d], // length = 29
        &[0x01],       // routemode DRR
        &[0x01],       // transport DTLS-UDP-SR
        &IPV4_192_0_2_1_6084,
        &[0x12],       // destinations length 18
        &[0x01, 0x10], //   node, 16
        &NODE_A,
    ]);
    let fo: ForwardingOption = roundtrip(&v);
    assert_eq!(fo.option_type, ForwardingOptionType::EXTENSIVE_ROUTING_MODE);
    assert_eq!(fo.flags, option_flags::IGNORE_STATE_KEEPING);
    let o = ExtensiveRoutingModeOption::from_forwarding_option(&fo, &opts())
        .unwrap()
        .expect("an extensive_routing_mode option");
    assert_eq!(o.routemode, RouteMode::DRR);
    assert_eq!(
        o.to_forwarding_option(ExtensiveRoutingModeOption::RECOMMENDED_FLAGS)
            .unwrap(),
        fo
    );
    assert_eq!(
        ExtensiveRoutingModeOption::find_in(std::slice::from_ref(&fo), &opts()).unwrap(),
        Some(o)
    );
    // Another option type is not this structure.
    let other = ForwardingOption {
        option_type: ForwardingOptionType::EXP_FORWARD,
        ..fo
    };
    assert_eq!(
        ExtensiveRoutingModeOption::from_forwarding_option(&other, &opts()).unwrap(),
        None
    );
}

#[test]
fn malformed_extensive_routing_mode() {
    // destinations<1..2^8-1> with length 0.
    let empty = cat(&[
        &[0x01], // DRR
        &[0x01], // DTLS-UDP-SR
        &IPV4_192_0_2_1_6084,
        &[0x00], // destinations length 0: refused
    ]);
    let e = decode_err::<ExtensiveRoutingModeOption>(&empty);
    assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e}");
    assert_eq!(e.offset, 10);
    assert!(e.field.ends_with("destinations"), "{e}");

    // A node destination whose length is not the overlay's Node-ID length.
    let short_node = cat(&[
        &[0x01],
        &[0x01],
        &IPV4_192_0_2_1_6084,
        &[0x06],       // destinations length 6
        &[0x01, 0x04], //   node, length 4 (overlay uses 16)
        &[0xaa, 0xbb, 0xcc, 0xdd],
    ]);
    let e = decode_err::<ExtensiveRoutingModeOption>(&short_node);
    assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e}");

    // Encoding refuses an empty list.
    let mut o = ExtensiveRoutingModeOption::drr(
        OverlayLinkType::DTLS_UDP_SR,
        IpAddressPort::from("192.0.2.1:6084".parse::<std::net::SocketAddr>().unwrap()),
        node(NODE_A),
    );
    o.destinations.clear();
    assert!(o.to_bytes().is_err());
}

// ---------------------------------------------------------------- RFC 7363 §6.5

#[test]
fn self_tuning_data() {
    let v = cat(&[
        &[0x00, 0x00, 0x03, 0xe8], // network_size = 1000
        &[0x00, 0x00, 0x29, 0x84], // join_rate = 10628 per 24 h (0.123/s, §6.5)
        &[0x00, 0x00, 0x00, 0x05], // leave_rate = 5
    ]);
    let d: SelfTuningData = roundtrip(&v);
    assert_eq!(
        d,
        SelfTuningData {
            network_size: 1000,
            join_rate: 10628,
            leave_rate: 5
        }
    );
    assert_eq!(SelfTuningData::rate_per_day(0.123), 10628);
}

#[test]
fn self_tuning_data_in_message_extension() {
    let v = cat(&[
        &[0x00, 0x03],             // MessageExtensionType self_tuning_data(0x3)
        &[0x00],                   // critical = False (RFC 7363 §6.5)
        &[0x00, 0x00, 0x00, 0x0c], // extension_contents length 12
        &[0x00, 0x00, 0x00, 0x10], // network_size 16
        &[0x00, 0x00, 0x00, 0x02], // join_rate 2
        &[0x00, 0x00, 0x00, 0x03], // leave_rate 3
    ]);
    let ext: MessageExtension = roundtrip(&v);
    assert_eq!(ext.extension_type, MessageExtensionType::SELF_TUNING_DATA);
    let d = SelfTuningData::from_message_extension(&ext, &opts())
        .unwrap()
        .unwrap();
    assert_eq!((d.network_size, d.join_rate, d.leave_rate), (16, 2, 3));
    assert_eq!(d.to_message_extension().unwrap(), ext);
    assert_eq!(SelfTuningData::find_in(&[ext], &opts()).unwrap(), Some(d));
}

#[test]
fn malformed_self_tuning_data() {
    let short = cat(&[
        &[0x00, 0x00, 0x03, 0xe8], // network_size
        &[0x00, 0x00, 0x29, 0x84], // join_rate
        &[0x00, 0x00, 0x00],       // leave_rate: one byte missing
    ]);
    let e = decode_err::<SelfTuningData>(&short);
    assert!(matches!(e.kind, ErrorKind::Truncated { .. }), "{e}");
    assert!(e.field.ends_with("leave_rate"), "{e}");
    assert_eq!(e.offset, 8);

    let long = cat(&[&[0u8; 12], &[0xff]]); // 12 bytes + 1 trailing
    let e = decode_err::<SelfTuningData>(&long);
    assert_eq!(e.kind, ErrorKind::TrailingBytes { left: 1 });
}

// ---------------------------------------------------------------- RFC 7374 §4.1

#[test]
fn redir_service_provider() {
    let v = cat(&[
        &[0x00],       // type none(0)
        &[0x00, 0x12], // destination_list<0..2^16-1> length 18
        &[0x01, 0x10], //   node(1), length 16
        &NODE_A,       //   the service provider
        &[0x00, 0x0b], // namespace length 11
        b"turn-server",
        &[0x00, 0x02], // level 2
        &[0x00, 0x01], // node 1
        &[0x00, 0x00], // length 0: the rest (the extension) is empty
    ]);
    let r: RedirServiceProvider = roundtrip(&v);
    assert_eq!(r.ext_type, RedirServiceProviderExtType::NONE);
    assert_eq!(r.destination_list, vec![Destination::Node(node(NODE_A))]);
    assert_eq!(&r.namespace[..], b"turn-server");
    assert_eq!((r.level, r.node), (2, 1));
    assert!(r.extension.is_empty());
    assert_eq!(
        RedirServiceProvider::new(
            vec![Destination::Node(node(NODE_A))],
            Bytes::from_static(b"turn-server"),
            2,
            1
        ),
        r
    );
}

#[test]
fn redir_service_provider_unknown_extension_kept() {
    let v = cat(&[
        &[0x09],       // type 9: unknown extension
        &[0x00, 0x00], // destination_list empty
        &[0x00, 0x0a], // namespace length 10
        b"voice-mail",
        &[0x00, 0x03],       // level 3
        &[0x00, 0x05],       // node 5
        &[0x00, 0x03],       // length 3
        &[0xaa, 0xbb, 0xcc], // extension, kept raw
    ]);
    let r: RedirServiceProvider = roundtrip(&v);
    assert_eq!(r.ext_type, RedirServiceProviderExtType(9));
    assert_eq!(&r.extension[..], &[0xaa, 0xbb, 0xcc]);
}

#[test]
fn malformed_redir_service_provider() {
    // Type none with a non-empty extension.
    let v = cat(&[
        &[0x00],       // none
        &[0x00, 0x00], // destination_list empty
        &[0x00, 0x00], // namespace empty
        &[0x00, 0x00], // level
        &[0x00, 0x00], // node
        &[0x00, 0x01], // length 1: not allowed for none
        &[0x00],
    ]);
    let e = decode_err::<RedirServiceProvider>(&v);
    assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e}");
    assert_eq!(e.offset, 9);

    // Extension shorter than `length`.
    let v = cat(&[
        &[0x05],
        &[0x00, 0x00],
        &[0x00, 0x00],
        &[0x00, 0x00],
        &[0x00, 0x00],
        &[0x00, 0x04], // length 4, only 1 byte follows
        &[0x00],
    ]);
    let e = decode_err::<RedirServiceProvider>(&v);
    assert!(matches!(e.kind, ErrorKind::Truncated { .. }), "{e}");
}

// ---------------------------------------------------------------- RFC 8076 §4.2 / §5.2

#[test]
fn access_control_list_item() {
    let v = cat(&[
        &[0x00, 0x0f], // to_user<0..2^16-1> length 15
        b"bob@example.com",
        &[0x00, 0x00, 0x00, 0x01], // kind = SIP-REGISTRATION (0x1)
        &[0x01],                   // allow_delegation = True
    ]);
    let a: AccessControlListItem = roundtrip(&v);
    assert_eq!(a.res_name_ext, None);
    assert_eq!(&a.to_user[..], b"bob@example.com");
    assert_eq!(a.kind, KindId::SIP_REGISTRATION);
    assert!(a.allow_delegation);
}

#[test]
fn access_control_list_item_with_resource_name_extension() {
    let v = cat(&[
        &[0x01],       // ResourceNameExtension type pattern(1)
        &[0x00, 0x20], // length 32: the rest of the extension
        &[0x00, 0x1e], // resource_name<0..2^16-1> length 30
        b"meeting-conf-alice@example.com",
        &[0x00, 0x0f], // to_user length 15
        b"bob@example.com",
        &[0x00, 0x00, 0x00, 0x01], // kind SIP-REGISTRATION
        &[0x00],                   // allow_delegation False
    ]);
    let a = AccessControlListItem::decode_with(&v, &opts(), true).unwrap();
    assert_eq!(
        a.res_name_ext,
        Some(ResourceNameExtension::Pattern {
            resource_name: Bytes::from_static(b"meeting-conf-alice@example.com")
        })
    );
    assert_eq!(
        a.res_name_ext.as_ref().map(|e| e.name_type()),
        Some(ResourceNameType::PATTERN)
    );
    assert!(!a.allow_delegation);
    assert_eq!(&a.to_bytes().unwrap()[..], &v[..]);
    // Without variable resource names configured, the same bytes do not parse as an item.
    assert!(AccessControlListItem::decode(&v, &opts()).is_err());
}

#[test]
fn malformed_access_control_list_item() {
    let v = cat(&[
        &[0x00, 0x03], // to_user length 3
        b"bob",
        &[0x00, 0x00, 0x00, 0x01], // kind
        &[0x02],                   // allow_delegation = 2: not a Boolean
    ]);
    let e = decode_err::<AccessControlListItem>(&v);
    assert!(matches!(e.kind, ErrorKind::Invalid(_)), "{e}");
    assert!(e.field.ends_with("allow_delegation"), "{e}");
    assert_eq!(e.offset, 9);

    let v = cat(&[
        &[0x01],       // pattern
        &[0x00, 0x03], // length 3
        &[0x00, 0x00], // resource_name empty
        &[0x00],       // one byte too many inside length
        &[0x00, 0x00], // to_user empty
        &[0x00, 0x00, 0x00, 0x01],
        &[0x00],
    ]);
    let e = AccessControlListItem::decode_with(&v, &opts(), true).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TrailingBytes { left: 1 }, "{e}");
}

// ---------------------------------------------------------------- RFC 7851 §5, §9

#[test]
fn diagnostics_request() {
    let v = cat(&[
        &[0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00], // expiration (ms since epoch)
        &[0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x60, 0x00], // timestamp_initiated
        &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06], // dMFlags: STATUS_INFO | ROUTING_TABLE_SIZE
        &[0x00, 0x00, 0x00, 0x0a], // ext_length = 10 (bytes of the list's elements)
        &[0x00, 0x00, 0x00, 0x0a], // diagnostic_extensions_list<0..2^32-1> length 10
        &[0xf0, 0x01],             //   kind 0xf001 (local use)
        &[0x00, 0x00, 0x00, 0x04], //   diagnostic_extension_contents length 4
        &[0xca, 0xfe, 0xba, 0xbe],
    ]);
    let r: DiagnosticsRequest = roundtrip(&v);
    assert_eq!(r.expiration, 0x0000_018b_cfe5_6800);
    assert_eq!(
        r.dm_flags,
        dm_flags::STATUS_INFO | dm_flags::ROUTING_TABLE_SIZE
    );
    assert_eq!(
        DiagnosticKindId::requested_by(r.dm_flags).collect::<Vec<_>>(),
        vec![
            DiagnosticKindId::STATUS_INFO,
            DiagnosticKindId::ROUTING_TABLE_SIZE
        ]
    );
    assert_eq!(r.ext_length, 10);
    assert_eq!(r.diagnostic_extensions_list.len(), 1);
    assert_eq!(r.diagnostic_extensions_list[0].kind, 0xf001);
}

#[test]
fn path_track_ans() {
    let v = cat(&[
        &[0x01, 0x10], // next_hop: Destination node(1), length 16
        &NODE_B,
        &[0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00], // expiration
        &[0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x60, 0x00], // timestamp_initiated
        &[0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x60, 0x10], // timestamp_received
        &[0x5f],                                           // hop_counter = 95 (TTL as received)
        &[0x00, 0x00, 0x00, 0x0d],                         // ext_length = 13
        &[0x00, 0x00, 0x00, 0x0d],                         // diagnostic_info_list length 13
        &[0x00, 0x01],                                     //   kind STATUS_INFO
        &[0x00, 0x01],                                     //   diagnostic_info_contents length 1
        &[0x03],                                           //   congestion level 3
        &[0x00, 0x02],                                     //   kind ROUTING_TABLE_SIZE
        &[0x00, 0x04],                                     //   length 4
        &[0x00, 0x00, 0x00, 0x2a],                         //   42 peers
    ]);
    let a: PathTrackAns = roundtrip(&v);
    assert_eq!(a.next_hop, Destination::Node(node(NODE_B)));
    assert_eq!(a.response.hop_counter, 95);
    assert_eq!(a.response.timestamp_received, 0x0000_018b_cfe5_6010);
    let kinds: Vec<_> = a
        .response
        .diagnostic_info_list
        .iter()
        .map(|i| DiagnosticKindId::from(i.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            DiagnosticKindId::STATUS_INFO,
            DiagnosticKindId::ROUTING_TABLE_SIZE
        ]
    );
    assert_eq!(
        &a.response.diagnostic_info_list[1].diagnostic_info_contents[..],
        &[0, 0, 0, 42]
    );
}

#[test]
fn malformed_diagnostics() {
    // The extension list claims 10 bytes but its only element needs 11.
    let v = cat(&[
        &[0u8; 24],                // expiration, timestamp_initiated, dMFlags
        &[0x00, 0x00, 0x00, 0x0a], // ext_length
        &[0x00, 0x00, 0x00, 0x0a], // list length 10
        &[0xf0, 0x01],             //   kind
        &[0x00, 0x00, 0x00, 0x05], //   contents length 5, only 4 bytes in the list
        &[0xca, 0xfe, 0xba, 0xbe],
        &[0x00], // the fifth byte, outside the list
    ]);
    let e = decode_err::<DiagnosticsRequest>(&v);
    assert!(matches!(e.kind, ErrorKind::Truncated { .. }), "{e}");
    assert!(e.field.contains("diagnostic_extension_contents"), "{e}");
}

#[test]
fn dm_flag_mapping() {
    // RFC 7851 §9.1: bit 0 is the reserved first bit, STATUS_INFO is 0x2.
    assert_eq!(dm_flag(DiagnosticKindId::STATUS_INFO), Some(0x2));
    assert_eq!(dm_flag(DiagnosticKindId::ROUTING_TABLE_SIZE), Some(0x4));
    assert_eq!(dm_flag(DiagnosticKindId::SOFTWARE_VERSION), Some(0x40));
    assert_eq!(dm_flag(DiagnosticKindId::UNDERLAY_HOP), Some(0x8000));
    assert_eq!(dm_flag(DiagnosticKindId::BATTERY_STATUS), Some(0x1_0000));
    assert_eq!(dm_flag(DiagnosticKindId(0x003e)), Some(1 << 62));
    assert_eq!(dm_flag(DiagnosticKindId::RESERVED), None);
    assert_eq!(dm_flag(DiagnosticKindId(0x003f)), None);
    assert_eq!(dm_flag(DiagnosticKindId(0xf001)), None);
    assert_eq!(dm_flag(DiagnosticKindId::RESERVED_ALL_ONES), None);
    assert_eq!(
        DiagnosticKindId::BATTERY_STATUS.dm_flag(),
        Some(dm_flags::BATTERY_STATUS)
    );
    assert_eq!(DiagnosticKindId::requested_by(dm_flags::ALL).count(), 62);
    assert_eq!(DiagnosticKindId::requested_by(dm_flags::NONE).count(), 0);
    assert_eq!(
        DiagnosticKindId::requested_by(dm_flags::RESERVED_FIRST_BIT | dm_flags::RESERVED_LAST_BIT)
            .count(),
        0
    );
}

// ---------------------------------------------------------------- RFC 7650 §7, §8.1

#[test]
fn coap_registration() {
    let v = cat(&[
        &NODE_A,       // Node_ID (overlay length, no prefix)
        &[0x00, 0x30], // coap_uris_length = 48
        b"</sensors/temp-1>;rt=\"temperature-c\";if=\"sensor\"",
    ]);
    let r: CoAPRegistration = roundtrip(&v);
    assert_eq!(r.node_id, node(NODE_A));
    assert_eq!(r.coap_uris.len(), 48);
}

#[test]
fn coap_caching_sensor_cache() {
    let v = cat(&[
        &[0x02],                   // coap_caching_type sensor_cache(2)
        &NODE_A,                   // Node_ID of the proxy
        &[0x00, 0x04],             // sensor_info.dev_info length 4
        b"acme",                   //
        &[0x00, 0x00, 0x00, 0x0c], // length 12: the sensor_value array
        &[0x00, 0x00, 0x10, 0x00], //   measurement_time
        &[0x00, 0x00, 0xea, 0x60], //   lifetime 60000 ms
        &[0x00, 0x02],             //   value length 2
        b"21",
    ]);
    let c: CoAPCaching = roundtrip(&v);
    match c {
        CoAPCaching::SensorCache(s) => {
            assert_eq!(&s.sensor_info.dev_info[..], b"acme");
            assert_eq!(s.sensor_value.len(), 1);
            assert_eq!(s.sensor_value[0].lifetime, 60_000);
            assert_eq!(&s.sensor_value[0].value[..], b"21");
        }
        other => panic!("not a sensor cache: {other:?}"),
    }
}

#[test]
fn coap_caching_proxy_cache() {
    let v = cat(&[
        &[0x01],                   // coap_caching_type proxy_cache(1)
        &NODE_B,                   // Node_ID of the proxy
        &[0x00, 0x00, 0x00, 0x1c], // length 28: the sensors array
        &[0x00, 0x06],             //   SensorEntry.coap_uri length 6
        b"/light",                 //
        &[0x00, 0x00],             //   sensor_info.dev_info empty
        &[0x00, 0x00, 0x00, 0x0e], //   length 14: sensor_value array
        &[0x00, 0x00, 0x00, 0x01], //     measurement_time
        &[0x00, 0x00, 0x00, 0x02], //     lifetime
        &[0x00, 0x04],             //     value length 4
        &[0x00, 0x00, 0x01, 0xf4], //     500 lux
    ]);
    let c: CoAPCaching = roundtrip(&v);
    match c {
        CoAPCaching::ProxyCache(p) => {
            assert_eq!(p.node_id, node(NODE_B));
            assert_eq!(p.sensors.len(), 1);
            assert_eq!(&p.sensors[0].coap_uri[..], b"/light");
        }
        other => panic!("not a proxy cache: {other:?}"),
    }
}
