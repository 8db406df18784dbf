//! Property tests for the extension RFC structures (`reload_wire::ext`): for every type,
//! `decode(encode(x)) == x` for generated values, and for byte strings — random ones and
//! mutated encodings — whatever decodes re-encodes to exactly the same bytes, and nothing
//! panics. 16-byte Node-IDs (`DecodeOptions::default()`).

use std::fmt::Debug;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use reload_wire::common::{Destination, IpAddressPort, NodeId, ResourceId};
use reload_wire::ext::coap::{
    CoAPCaching, CoAPCachingType, CoAPRegistration, ProxyCache, SensorCache, SensorEntry,
    SensorInfo, SensorValue,
};
use reload_wire::ext::diagnostics::{
    DiagnosticExtension, DiagnosticInfo, DiagnosticKindId, DiagnosticsRequest, DiagnosticsResponse,
    PathTrackAns, PathTrackReq,
};
use reload_wire::ext::redir::{RedirServiceProvider, RedirServiceProviderExtType};
use reload_wire::ext::routing::{ExtensiveRoutingModeOption, RouteMode};
use reload_wire::ext::self_tuning::SelfTuningData;
use reload_wire::ext::share::{AccessControlListItem, ResourceNameExtension, ResourceNameType};
use reload_wire::ext::sip::{SipRegistration, SipRegistrationType};
use reload_wire::link::OverlayLinkType;
use reload_wire::storage::KindId;
use reload_wire::{DecodeOptions, Wire};

// ------------------------------------------------------------------ checks

fn opts() -> DecodeOptions {
    DecodeOptions::default()
}

/// `decode(encode(v)) == v`, with `encoded_len` matching the bytes written.
fn value_roundtrip<T: Wire + PartialEq + Debug>(
    v: &T,
    decode: impl Fn(&Bytes) -> Result<T, reload_wire::DecodeError>,
) -> Result<(), TestCaseError> {
    let b = v
        .to_bytes()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(b.len(), v.encoded_len());
    let back = decode(&b).map_err(|e| TestCaseError::fail(format!("{e} in {b:02x?}")))?;
    prop_assert_eq!(&back, v);
    Ok(())
}

/// If `b` decodes, it re-encodes to exactly `b` (and decodes to the same value again).
fn bytes_roundtrip<T: Wire + PartialEq + Debug>(
    b: &[u8],
    decode: impl Fn(&Bytes) -> Result<T, reload_wire::DecodeError>,
) -> Result<(), TestCaseError> {
    let buf = Bytes::copy_from_slice(b);
    if let Ok(v) = decode(&buf) {
        prop_assert_eq!(v.encoded_len(), b.len());
        let re = v
            .to_bytes()
            .map_err(|e| TestCaseError::fail(format!("decoded {v:?} does not encode: {e}")))?;
        prop_assert_eq!(&re[..], b, "value {:?}", v);
        prop_assert_eq!(&decode(&re).expect("decodes again"), &v);
    }
    Ok(())
}

/// One edit of an encoding.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Set { at: usize, byte: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(1), Just(2), Just(0xff), any::<u8>()]
        )
            .prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    vec(mutation(), 1..4)
}

fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let n = b.len();
        match *m {
            Mutation::Flip { at, bits } if n > 0 => b[at % n] ^= bits,
            Mutation::Set { at, byte } if n > 0 => b[at % n] = byte,
            Mutation::Insert { at, byte } => b.insert(at % (n + 1), byte),
            Mutation::Remove { at } if n > 0 => {
                b.remove(at % n);
            }
            Mutation::Truncate { at } => b.truncate(at % (n + 1)),
            _ => {}
        }
    }
    b
}

// ------------------------------------------------------------------ strategies

fn bytes_s(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 16]>().prop_map(|b| NodeId::from_slice(&b).expect("16 bytes"))
}

fn destination() -> impl Strategy<Value = Destination> {
    prop_oneof![
        3 => node_id().prop_map(Destination::Node),
        1 => bytes_s(20).prop_map(|b| Destination::Resource(ResourceId(b))),
        1 => bytes_s(20).prop_map(Destination::OpaqueId),
        1 => any::<u16>().prop_map(|v| Destination::Compressed(v | 0x8000)),
        1 => (4u8..=127, bytes_s(20)).prop_map(|(destination_type, data)| {
            Destination::Unknown { destination_type, data }
        }),
    ]
}

fn destinations(max: usize) -> impl Strategy<Value = Vec<Destination>> {
    vec(destination(), 0..=max)
}

fn ip_address_port() -> impl Strategy<Value = IpAddressPort> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(a, port)| IpAddressPort::V4 {
            addr: a.into(),
            port
        }),
        (any::<u128>(), any::<u16>()).prop_map(|(a, port)| IpAddressPort::V6 {
            addr: a.into(),
            port
        }),
        (3u8..=255, bytes_s(24))
            .prop_map(|(address_type, data)| IpAddressPort::Unknown { address_type, data }),
    ]
}

fn route_mode() -> impl Strategy<Value = RouteMode> {
    prop_oneof![
        Just(RouteMode::DRR),
        Just(RouteMode::RPR),
        any::<u8>().prop_map(RouteMode)
    ]
}

fn extensive_routing_mode_option() -> impl Strategy<Value = ExtensiveRoutingModeOption> {
    (
        route_mode(),
        any::<u8>().prop_map(OverlayLinkType),
        ip_address_port(),
        vec(destination(), 1..=4),
    )
        .prop_map(|(routemode, transport, ipaddressport, destinations)| {
            ExtensiveRoutingModeOption {
                routemode,
                transport,
                ipaddressport,
                destinations,
            }
        })
}

fn self_tuning_data() -> impl Strategy<Value = SelfTuningData> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(network_size, join_rate, leave_rate)| {
        SelfTuningData {
            network_size,
            join_rate,
            leave_rate,
        }
    })
}

fn redir_service_provider() -> impl Strategy<Value = RedirServiceProvider> {
    let ext = prop_oneof![
        Just((RedirServiceProviderExtType::NONE, Bytes::new())),
        (1u8..=255, bytes_s(16)).prop_map(|(t, b)| (RedirServiceProviderExtType(t), b)),
    ];
    (
        ext,
        destinations(3),
        bytes_s(16),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(
            |((ext_type, extension), destination_list, namespace, level, node)| {
                RedirServiceProvider {
                    ext_type,
                    destination_list,
                    namespace,
                    level,
                    node,
                    extension,
                }
            },
        )
}

fn sip_registration() -> impl Strategy<Value = SipRegistration> {
    prop_oneof![
        bytes_s(40).prop_map(SipRegistration::Uri),
        (
            bytes_s(24),
            vec(destination(), 1..=3).prop_filter("list of at least 3 bytes", |l| {
                l.iter().map(Wire::encoded_len).sum::<usize>() >= 3
            })
        )
            .prop_map(|(contact_prefs, destination_list)| SipRegistration::Route {
                contact_prefs,
                destination_list
            }),
        (
            any::<u8>().prop_filter("unknown type", |t| *t != 1 && *t != 2),
            bytes_s(24)
        )
            .prop_map(|(t, data)| SipRegistration::Unknown {
                registration_type: SipRegistrationType(t),
                data
            }),
    ]
}

fn resource_name_extension() -> impl Strategy<Value = ResourceNameExtension> {
    prop_oneof![
        bytes_s(32).prop_map(|resource_name| ResourceNameExtension::Pattern { resource_name }),
        (
            any::<u8>().prop_filter("unknown type", |t| *t != 1),
            bytes_s(16)
        )
            .prop_map(|(t, data)| ResourceNameExtension::Unknown {
                name_type: ResourceNameType(t),
                data
            }),
    ]
}

fn access_control_list_item(with_ext: bool) -> impl Strategy<Value = AccessControlListItem> {
    let ext = if with_ext {
        resource_name_extension().prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    };
    (ext, bytes_s(24), any::<u32>(), any::<bool>()).prop_map(
        |(res_name_ext, to_user, kind, allow_delegation)| AccessControlListItem {
            res_name_ext,
            to_user,
            kind: KindId(kind),
            allow_delegation,
        },
    )
}

fn sensor_info() -> impl Strategy<Value = SensorInfo> {
    bytes_s(12).prop_map(|dev_info| SensorInfo { dev_info })
}

fn sensor_value() -> impl Strategy<Value = SensorValue> {
    (any::<u32>(), any::<u32>(), bytes_s(8)).prop_map(|(measurement_time, lifetime, value)| {
        SensorValue {
            measurement_time,
            lifetime,
            value,
        }
    })
}

fn sensor_entry() -> impl Strategy<Value = SensorEntry> {
    (bytes_s(16), sensor_info(), vec(sensor_value(), 0..3)).prop_map(
        |(coap_uri, sensor_info, sensor_value)| SensorEntry {
            coap_uri,
            sensor_info,
            sensor_value,
        },
    )
}

fn proxy_cache() -> impl Strategy<Value = ProxyCache> {
    (node_id(), vec(sensor_entry(), 0..3))
        .prop_map(|(node_id, sensors)| ProxyCache { node_id, sensors })
}

fn sensor_cache() -> impl Strategy<Value = SensorCache> {
    (node_id(), sensor_info(), vec(sensor_value(), 0..3)).prop_map(
        |(node_id, sensor_info, sensor_value)| SensorCache {
            node_id,
            sensor_info,
            sensor_value,
        },
    )
}

fn coap_caching() -> impl Strategy<Value = CoAPCaching> {
    prop_oneof![
        proxy_cache().prop_map(CoAPCaching::ProxyCache),
        sensor_cache().prop_map(CoAPCaching::SensorCache),
        (
            any::<u8>().prop_filter("unknown type", |t| *t != 1 && *t != 2),
            bytes_s(24)
        )
            .prop_map(|(t, data)| CoAPCaching::Unknown {
                coap_caching_type: CoAPCachingType(t),
                data
            }),
    ]
}

fn coap_registration() -> impl Strategy<Value = CoAPRegistration> {
    (node_id(), bytes_s(48))
        .prop_map(|(node_id, coap_uris)| CoAPRegistration { node_id, coap_uris })
}

fn diagnostic_kind_id() -> impl Strategy<Value = DiagnosticKindId> {
    prop_oneof![0u16..=0x40, any::<u16>()].prop_map(DiagnosticKindId)
}

fn diagnostic_extension() -> impl Strategy<Value = DiagnosticExtension> {
    (any::<u16>(), bytes_s(12)).prop_map(|(kind, diagnostic_extension_contents)| {
        DiagnosticExtension {
            kind,
            diagnostic_extension_contents,
        }
    })
}

fn diagnostic_info() -> impl Strategy<Value = DiagnosticInfo> {
    (any::<u16>(), bytes_s(12)).prop_map(|(kind, diagnostic_info_contents)| DiagnosticInfo {
        kind,
        diagnostic_info_contents,
    })
}

fn diagnostics_request() -> impl Strategy<Value = DiagnosticsRequest> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        vec(diagnostic_extension(), 0..3),
        any::<Option<u32>>(),
    )
        .prop_map(|(e, t, f, list, ext_length)| {
            let mut r = DiagnosticsRequest::new(e, t, f, list);
            // A peer's ext_length is kept as sent, whatever it says.
            if let Some(l) = ext_length {
                r.ext_length = l;
            }
            r
        })
}

fn diagnostics_response() -> impl Strategy<Value = DiagnosticsResponse> {
    (
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u8>()),
        vec(diagnostic_info(), 0..3),
        any::<Option<u32>>(),
    )
        .prop_map(|((e, ti, tr, hops), list, ext_length)| {
            let mut r = DiagnosticsResponse::new(e, ti, tr, hops, list);
            if let Some(l) = ext_length {
                r.ext_length = l;
            }
            r
        })
}

fn path_track_req() -> impl Strategy<Value = PathTrackReq> {
    (destination(), diagnostics_request()).prop_map(|(destination, request)| PathTrackReq {
        destination,
        request,
    })
}

fn path_track_ans() -> impl Strategy<Value = PathTrackAns> {
    (destination(), diagnostics_response())
        .prop_map(|(next_hop, response)| PathTrackAns { next_hop, response })
}

// ------------------------------------------------------------------ the tests

/// For each `module: Type = strategy, decoder;` three properties: value round trip,
/// random bytes, mutated encodings.
macro_rules! ext_props {
    ($( $name:ident : $ty:ty = $strat:expr, $decode:expr ; )*) => {
        $(
            mod $name {
                use super::*;

                proptest! {
                    #[test]
                    fn value_roundtrips(v in $strat) {
                        value_roundtrip::<$ty>(&v, $decode)?;
                    }

                    #[test]
                    fn random_bytes_reencode_exactly(b in vec(any::<u8>(), 0..96)) {
                        bytes_roundtrip::<$ty>(&b, $decode)?;
                    }

                    #[test]
                    fn mutated_encodings_reencode_exactly(v in $strat, ms in mutations()) {
                        let enc = v.to_bytes().expect("valid value encodes").to_vec();
                        let b = mutate(enc, &ms);
                        bytes_roundtrip::<$ty>(&b, $decode)?;
                    }
                }
            }
        )*
    };
}

fn plain<T: Wire>(b: &Bytes) -> Result<T, reload_wire::DecodeError> {
    T::decode(b, &opts())
}

fn acl_with_ext(b: &Bytes) -> Result<AccessControlListItem, reload_wire::DecodeError> {
    AccessControlListItem::decode_with(b, &opts(), true)
}

ext_props! {
    route_mode_p: RouteMode = route_mode(), plain::<RouteMode>;
    extensive_routing_mode_option_p: ExtensiveRoutingModeOption =
        extensive_routing_mode_option(), plain::<ExtensiveRoutingModeOption>;
    self_tuning_data_p: SelfTuningData = self_tuning_data(), plain::<SelfTuningData>;
    redir_service_provider_p: RedirServiceProvider =
        redir_service_provider(), plain::<RedirServiceProvider>;
    sip_registration_p: SipRegistration = sip_registration(), plain::<SipRegistration>;
    resource_name_extension_p: ResourceNameExtension =
        resource_name_extension(), plain::<ResourceNameExtension>;
    access_control_list_item_p: AccessControlListItem =
        access_control_list_item(false), plain::<AccessControlListItem>;
    access_control_list_item_with_ext_p: AccessControlListItem =
        access_control_list_item(true), acl_with_ext;
    coap_registration_p: CoAPRegistration = coap_registration(), plain::<CoAPRegistration>;
    coap_caching_p: CoAPCaching = coap_caching(), plain::<CoAPCaching>;
    proxy_cache_p: ProxyCache = proxy_cache(), plain::<ProxyCache>;
    sensor_cache_p: SensorCache = sensor_cache(), plain::<SensorCache>;
    sensor_entry_p: SensorEntry = sensor_entry(), plain::<SensorEntry>;
    sensor_info_p: SensorInfo = sensor_info(), plain::<SensorInfo>;
    sensor_value_p: SensorValue = sensor_value(), plain::<SensorValue>;
    diagnostic_kind_id_p: DiagnosticKindId = diagnostic_kind_id(), plain::<DiagnosticKindId>;
    diagnostic_extension_p: DiagnosticExtension =
        diagnostic_extension(), plain::<DiagnosticExtension>;
    diagnostic_info_p: DiagnosticInfo = diagnostic_info(), plain::<DiagnosticInfo>;
    diagnostics_request_p: DiagnosticsRequest = diagnostics_request(), plain::<DiagnosticsRequest>;
    diagnostics_response_p: DiagnosticsResponse =
        diagnostics_response(), plain::<DiagnosticsResponse>;
    path_track_req_p: PathTrackReq = path_track_req(), plain::<PathTrackReq>;
    path_track_ans_p: PathTrackAns = path_track_ans(), plain::<PathTrackAns>;
}

// ------------------------------------------------------------------ helper round trips

proptest! {
    /// The forwarding-option wrapper gives back the value it was built from.
    #[test]
    fn routing_option_through_forwarding_option(v in extensive_routing_mode_option(), flags in any::<u8>()) {
        let fo = v.to_forwarding_option(flags).expect("fits");
        prop_assert_eq!(fo.flags, flags);
        let back = ExtensiveRoutingModeOption::from_forwarding_option(&fo, &opts()).expect("decodes");
        prop_assert_eq!(back, Some(v));
    }

    /// The message-extension wrapper gives back the estimates, with critical False.
    #[test]
    fn self_tuning_through_message_extension(v in self_tuning_data()) {
        let ext = v.to_message_extension().expect("fits");
        prop_assert!(!ext.critical);
        let back = SelfTuningData::from_message_extension(&ext, &opts()).expect("decodes");
        prop_assert_eq!(back, Some(v));
    }

    /// An ACL item decoded without the extension never panics on bytes meant for the
    /// other form (and vice versa), and what decodes re-encodes exactly.
    #[test]
    fn acl_forms_cross_decode(v in access_control_list_item(true), w in access_control_list_item(false)) {
        let a = v.to_bytes().expect("encodes");
        bytes_roundtrip::<AccessControlListItem>(&a, plain::<AccessControlListItem>)?;
        let b = w.to_bytes().expect("encodes");
        bytes_roundtrip::<AccessControlListItem>(&b, acl_with_ext)?;
    }

    /// Encoders refuse the lists the RFCs' lower bounds exclude.
    #[test]
    fn lower_bounds_refused_on_encode(v in extensive_routing_mode_option(), c in any::<u16>()) {
        let mut empty = v;
        empty.destinations.clear();
        prop_assert!(empty.to_bytes().is_err());
        let short = SipRegistration::Route {
            contact_prefs: Bytes::new(),
            destination_list: vec![Destination::Compressed(c | 0x8000)],
        };
        prop_assert!(short.to_bytes().is_err());
    }
}
