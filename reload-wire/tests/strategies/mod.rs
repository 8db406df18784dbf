//! proptest strategies for every RFC 6940 structure of reload-wire, generating only
//! values inside the RFC's limits (so that they encode) and in canonical form (so that
//! decoding gives back the same value).

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use reload_wire::body::MessageBody;
use reload_wire::chord::{
    ChordLeaveData, ChordLeaveType, ChordRouteQueryAns, ChordUpdate, ChordUpdateBody,
    ChordUpdateType,
};
use reload_wire::ext::diagnostics::{
    DiagnosticExtension, DiagnosticInfo, DiagnosticsRequest, DiagnosticsResponse, PathTrackAns,
    PathTrackReq,
};
use reload_wire::framing::FramedMessage;
use reload_wire::header::{ForwardingHeader, ForwardingOption, ForwardingOptionType, Fragment};
use reload_wire::link::{
    AppAttach, AttachReqAns, CandType, ConfigUpdateAns, ConfigUpdateReq, ConfigUpdateType,
    IceCandidate, IceExtension, OverlayLinkType, PingAns, PingReq,
};
use reload_wire::message::{
    ErrorCode, ErrorResponse, Message, MessageCode, MessageContents, MessageExtension,
    MessageExtensionType,
};
use reload_wire::security::{
    CertificateType, GenericCertificate, HashAlgorithm, SecurityBlock, Signature,
    SignatureAlgorithm, SignatureAndHashAlgorithm, SignerIdentity, SignerIdentityType,
};
use reload_wire::storage::{
    ArrayEntry, ArrayRange, DataModel, DataValue, DictionaryEntry, FetchAns, FetchKindResponse,
    FetchReq, FindAns, FindKindData, FindReq, KindId, KindValues, MetaData, MetaDataValue,
    ModelSpecifier, StatAns, StatKindResponse, StatReq, StoreAns, StoreKindData, StoreKindResponse,
    StoreReq, StoredData, StoredDataSpecifier, StoredDataValue, StoredMetaData, TurnServer,
    UnknownKinds,
};
use reload_wire::topology::{
    JoinAns, JoinReq, LeaveAns, LeaveReq, ProbeAns, ProbeInformation, ProbeInformationType,
    ProbeReq, RouteQueryAns, RouteQueryReq, UpdateAns, UpdateReq,
};
use reload_wire::{DecodeOptions, Destination, IpAddressPort, NodeId, ResourceId, Wire};

/// Kind-IDs with a known data model (IANA-registered) and one that is not known to
/// `DecodeOptions::default()`.
pub const SINGLE_KIND: u32 = 0x2;
pub const ARRAY_KIND: u32 = 0x3;
pub const DICT_KIND: u32 = 0x1;
pub const UNKNOWN_KIND: u32 = 0xf000_0042;

pub fn opts() -> DecodeOptions {
    DecodeOptions::default().with_max_message_size(1 << 20)
}

pub fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

pub fn node_id() -> impl Strategy<Value = NodeId> {
    any::<u128>().prop_map(NodeId::from_u128)
}

pub fn resource_id() -> impl Strategy<Value = ResourceId> {
    bytes(32).prop_map(ResourceId)
}

pub fn ip_address_port() -> impl Strategy<Value = IpAddressPort> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(a, port)| IpAddressPort::V4 {
            addr: Ipv4Addr::from(a),
            port
        }),
        (any::<u128>(), any::<u16>()).prop_map(|(a, port)| IpAddressPort::V6 {
            addr: Ipv6Addr::from(a),
            port
        }),
        (3u8..=255, bytes(20))
            .prop_map(|(address_type, data)| IpAddressPort::Unknown { address_type, data }),
    ]
}

pub fn destination() -> impl Strategy<Value = Destination> {
    prop_oneof![
        node_id().prop_map(Destination::Node),
        resource_id().prop_map(Destination::Resource),
        bytes(20).prop_map(Destination::OpaqueId),
        (0x8000u16..=0xffff).prop_map(Destination::Compressed),
        (4u8..=127, bytes(20)).prop_map(|(destination_type, data)| Destination::Unknown {
            destination_type,
            data
        }),
    ]
}

pub fn forwarding_option() -> impl Strategy<Value = ForwardingOption> {
    (any::<u8>(), any::<u8>(), bytes(24)).prop_map(|(t, flags, value)| ForwardingOption {
        option_type: ForwardingOptionType(t),
        flags,
        value,
    })
}

pub fn forwarding_header() -> impl Strategy<Value = ForwardingHeader> {
    (
        (
            any::<u32>(),
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (any::<u64>(), any::<u32>()),
        (
            vec(destination(), 0..4),
            vec(destination(), 0..4),
            vec(forwarding_option(), 0..3),
        ),
    )
        .prop_map(
            |(
                (overlay, configuration_sequence, version, ttl, fragment, length),
                (transaction_id, max_response_length),
                (via_list, destination_list, options),
            )| ForwardingHeader {
                overlay,
                configuration_sequence,
                version,
                ttl,
                fragment: Fragment(fragment),
                length,
                transaction_id,
                max_response_length,
                via_list,
                destination_list,
                options,
            },
        )
}

pub fn message_extension() -> impl Strategy<Value = MessageExtension> {
    (any::<u16>(), any::<bool>(), bytes(24)).prop_map(|(t, critical, extension_contents)| {
        MessageExtension {
            extension_type: MessageExtensionType(t),
            critical,
            extension_contents,
        }
    })
}

pub fn message_contents() -> impl Strategy<Value = MessageContents> {
    (any::<u16>(), bytes(64), vec(message_extension(), 0..3)).prop_map(
        |(code, message_body, extensions)| MessageContents {
            message_code: MessageCode(code),
            message_body,
            extensions,
        },
    )
}

pub fn error_response() -> impl Strategy<Value = ErrorResponse> {
    (any::<u16>(), bytes(32)).prop_map(|(c, error_info)| ErrorResponse {
        error_code: ErrorCode(c),
        error_info,
    })
}

pub fn signer_identity() -> impl Strategy<Value = SignerIdentity> {
    prop_oneof![
        (any::<u8>(), bytes(48)).prop_map(|(h, certificate_hash)| SignerIdentity::CertHash {
            hash_alg: HashAlgorithm(h),
            certificate_hash
        }),
        (any::<u8>(), bytes(48)).prop_map(|(h, certificate_node_id_hash)| {
            SignerIdentity::CertHashNodeId {
                hash_alg: HashAlgorithm(h),
                certificate_node_id_hash,
            }
        }),
        Just(SignerIdentity::None),
        (4u8..=255, bytes(24)).prop_map(|(t, identity)| SignerIdentity::Unknown {
            identity_type: SignerIdentityType(t),
            identity
        }),
    ]
}

pub fn signature() -> impl Strategy<Value = Signature> {
    (any::<u8>(), any::<u8>(), signer_identity(), bytes(64)).prop_map(
        |(h, s, identity, signature_value)| Signature {
            algorithm: SignatureAndHashAlgorithm {
                hash: HashAlgorithm(h),
                signature: SignatureAlgorithm(s),
            },
            identity,
            signature_value,
        },
    )
}

pub fn generic_certificate() -> impl Strategy<Value = GenericCertificate> {
    (any::<u8>(), bytes(64)).prop_map(|(t, certificate)| GenericCertificate {
        certificate_type: CertificateType(t),
        certificate,
    })
}

pub fn security_block() -> impl Strategy<Value = SecurityBlock> {
    (vec(generic_certificate(), 0..3), signature()).prop_map(|(certificates, signature)| {
        SecurityBlock {
            certificates,
            signature,
        }
    })
}

/// A whole message whose header `length` is its real size (as decoding requires).
pub fn message() -> impl Strategy<Value = Message> {
    (forwarding_header(), message_contents(), security_block()).prop_map(
        |(header, contents, security)| {
            let mut m = Message {
                header,
                contents,
                security,
            };
            m.header.length = m.encoded_len() as u32;
            m
        },
    )
}

pub fn join_req() -> impl Strategy<Value = JoinReq> {
    (node_id(), bytes(32)).prop_map(|(joining_peer_id, overlay_specific_data)| JoinReq {
        joining_peer_id,
        overlay_specific_data,
    })
}

pub fn leave_req() -> impl Strategy<Value = LeaveReq> {
    (node_id(), bytes(32)).prop_map(|(leaving_peer_id, overlay_specific_data)| LeaveReq {
        leaving_peer_id,
        overlay_specific_data,
    })
}

pub fn route_query_req() -> impl Strategy<Value = RouteQueryReq> {
    (any::<bool>(), destination(), bytes(16)).prop_map(
        |(send_update, destination, overlay_specific_data)| RouteQueryReq {
            send_update,
            destination,
            overlay_specific_data,
        },
    )
}

pub fn probe_information() -> impl Strategy<Value = ProbeInformation> {
    prop_oneof![
        any::<u32>().prop_map(ProbeInformation::ResponsibleSet),
        any::<u32>().prop_map(ProbeInformation::NumResources),
        any::<u32>().prop_map(ProbeInformation::Uptime),
        (4u8..=255, bytes(8)).prop_map(|(t, value)| ProbeInformation::Unknown {
            info_type: ProbeInformationType(t),
            value
        }),
    ]
}

pub fn probe_req() -> impl Strategy<Value = ProbeReq> {
    vec(any::<u8>().prop_map(ProbeInformationType), 0..5)
        .prop_map(|requested_info| ProbeReq { requested_info })
}

pub fn probe_ans() -> impl Strategy<Value = ProbeAns> {
    vec(probe_information(), 0..5).prop_map(|probe_info| ProbeAns { probe_info })
}

pub fn ice_extension() -> impl Strategy<Value = IceExtension> {
    (bytes(12), bytes(12)).prop_map(|(name, value)| IceExtension { name, value })
}

pub fn ice_candidate() -> impl Strategy<Value = IceCandidate> {
    (
        ip_address_port(),
        any::<u8>(),
        bytes(32),
        any::<u32>(),
        prop_oneof![
            Just(CandType::HOST),
            Just(CandType::SRFLX),
            Just(CandType::RELAY)
        ],
        ip_address_port(),
        vec(ice_extension(), 0..3),
    )
        .prop_map(
            |(addr_port, link, foundation, priority, cand_type, rel, extensions)| IceCandidate {
                addr_port,
                overlay_link: OverlayLinkType(link),
                foundation,
                priority,
                cand_type,
                rel_addr_port: (cand_type != CandType::HOST).then_some(rel),
                extensions,
            },
        )
}

pub fn attach_req_ans() -> impl Strategy<Value = AttachReqAns> {
    (
        bytes(16),
        bytes(24),
        bytes(8),
        vec(ice_candidate(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(ufrag, password, role, candidates, send_update)| AttachReqAns {
                ufrag,
                password,
                role,
                candidates,
                send_update,
            },
        )
}

pub fn app_attach() -> impl Strategy<Value = AppAttach> {
    (
        bytes(16),
        bytes(24),
        any::<u16>(),
        bytes(8),
        vec(ice_candidate(), 0..4),
    )
        .prop_map(
            |(ufrag, password, application, role, candidates)| AppAttach {
                ufrag,
                password,
                application,
                role,
                candidates,
            },
        )
}

pub fn config_update_req() -> impl Strategy<Value = ConfigUpdateReq> {
    prop_oneof![
        bytes(128).prop_map(ConfigUpdateReq::Config),
        vec(bytes(48), 0..4).prop_map(ConfigUpdateReq::Kinds),
        (3u8..=255, bytes(32)).prop_map(|(t, data)| ConfigUpdateReq::Unknown {
            update_type: ConfigUpdateType(t),
            data
        }),
    ]
}

pub fn framed_message() -> impl Strategy<Value = FramedMessage> {
    prop_oneof![
        (any::<u32>(), bytes(128))
            .prop_map(|(sequence, message)| FramedMessage::Data { sequence, message }),
        (any::<u32>(), any::<u32>()).prop_map(|(ack_sequence, received)| FramedMessage::Ack {
            ack_sequence,
            received
        }),
    ]
}

pub fn data_value() -> impl Strategy<Value = DataValue> {
    (any::<bool>(), bytes(48)).prop_map(|(exists, value)| DataValue { exists, value })
}

pub fn stored_data_value(model: DataModel) -> BoxedStrategy<StoredDataValue> {
    match model {
        DataModel::Single => data_value().prop_map(StoredDataValue::Single).boxed(),
        DataModel::Array => (any::<u32>(), data_value())
            .prop_map(|(index, value)| StoredDataValue::Array(ArrayEntry { index, value }))
            .boxed(),
        DataModel::Dictionary => (bytes(20), data_value())
            .prop_map(|(key, value)| StoredDataValue::Dictionary(DictionaryEntry { key, value }))
            .boxed(),
    }
}

pub fn stored_data(model: DataModel) -> impl Strategy<Value = StoredData> {
    (
        any::<u64>(),
        any::<u32>(),
        stored_data_value(model),
        signature(),
    )
        .prop_map(|(storage_time, lifetime, value, signature)| StoredData {
            storage_time,
            lifetime,
            value,
            signature,
        })
}

fn model_of(kind: u32) -> Option<DataModel> {
    opts().data_model(kind)
}

/// A Kind (known with each model, or unknown) and values in its layout.
pub fn kind_and_values() -> impl Strategy<Value = (KindId, KindValues<StoredData>)> {
    prop_oneof![
        Just(SINGLE_KIND),
        Just(ARRAY_KIND),
        Just(DICT_KIND),
        Just(UNKNOWN_KIND)
    ]
    .prop_flat_map(|k| match model_of(k) {
        Some(m) => vec(stored_data(m), 0..3)
            .prop_map(move |v| (KindId(k), KindValues::Decoded(v)))
            .boxed(),
        None => bytes(40)
            .prop_map(move |b| (KindId(k), KindValues::UnknownModel(b)))
            .boxed(),
    })
}

pub fn store_kind_data() -> impl Strategy<Value = StoreKindData> {
    (kind_and_values(), any::<u64>()).prop_map(|((kind, values), generation_counter)| {
        StoreKindData {
            kind,
            generation_counter,
            values,
        }
    })
}

pub fn store_req() -> impl Strategy<Value = StoreReq> {
    (resource_id(), any::<u8>(), vec(store_kind_data(), 0..3)).prop_map(
        |(resource, replica_number, kind_data)| StoreReq {
            resource,
            replica_number,
            kind_data,
        },
    )
}

pub fn store_kind_response() -> impl Strategy<Value = StoreKindResponse> {
    (any::<u32>(), any::<u64>(), vec(node_id(), 0..4)).prop_map(
        |(k, generation_counter, replicas)| StoreKindResponse {
            kind: KindId(k),
            generation_counter,
            replicas,
        },
    )
}

pub fn store_ans() -> impl Strategy<Value = StoreAns> {
    vec(store_kind_response(), 0..4).prop_map(|kind_responses| StoreAns { kind_responses })
}

pub fn stored_data_specifier() -> impl Strategy<Value = StoredDataSpecifier> {
    let spec = prop_oneof![
        Just(SINGLE_KIND),
        Just(ARRAY_KIND),
        Just(DICT_KIND),
        Just(UNKNOWN_KIND)
    ]
    .prop_flat_map(|k| -> BoxedStrategy<(u32, ModelSpecifier)> {
        match model_of(k) {
            Some(DataModel::Single) => Just((k, ModelSpecifier::Single)).boxed(),
            Some(DataModel::Array) => vec(
                (any::<u32>(), any::<u32>()).prop_map(|(first, last)| ArrayRange { first, last }),
                0..4,
            )
            .prop_map(move |r| (k, ModelSpecifier::Array(r)))
            .boxed(),
            Some(DataModel::Dictionary) => vec(bytes(16), 0..4)
                .prop_map(move |keys| (k, ModelSpecifier::Dictionary(keys)))
                .boxed(),
            None => bytes(24)
                .prop_map(move |b| (k, ModelSpecifier::UnknownModel(b)))
                .boxed(),
        }
    });
    (spec, any::<u64>()).prop_map(|((k, model_specifier), generation)| StoredDataSpecifier {
        kind: KindId(k),
        generation,
        model_specifier,
    })
}

pub fn fetch_req() -> impl Strategy<Value = FetchReq> {
    (resource_id(), vec(stored_data_specifier(), 0..4)).prop_map(|(resource, specifiers)| {
        FetchReq {
            resource,
            specifiers,
        }
    })
}

pub fn stat_req() -> impl Strategy<Value = StatReq> {
    (resource_id(), vec(stored_data_specifier(), 0..4)).prop_map(|(resource, specifiers)| StatReq {
        resource,
        specifiers,
    })
}

pub fn fetch_kind_response() -> impl Strategy<Value = FetchKindResponse> {
    (kind_and_values(), any::<u64>()).prop_map(|((kind, values), generation)| FetchKindResponse {
        kind,
        generation,
        values,
    })
}

pub fn fetch_ans() -> impl Strategy<Value = FetchAns> {
    vec(fetch_kind_response(), 0..3).prop_map(|kind_responses| FetchAns { kind_responses })
}

pub fn meta_data() -> impl Strategy<Value = MetaData> {
    (any::<bool>(), any::<u32>(), any::<u8>(), bytes(32)).prop_map(
        |(exists, value_length, h, hash_value)| MetaData {
            exists,
            value_length,
            hash_algorithm: HashAlgorithm(h),
            hash_value,
        },
    )
}

pub fn stored_meta_data(model: DataModel) -> impl Strategy<Value = StoredMetaData> {
    let md = match model {
        DataModel::Single => meta_data().prop_map(MetaDataValue::Single).boxed(),
        DataModel::Array => (any::<u32>(), meta_data())
            .prop_map(|(index, value)| MetaDataValue::Array { index, value })
            .boxed(),
        DataModel::Dictionary => (bytes(16), meta_data())
            .prop_map(|(key, value)| MetaDataValue::Dictionary { key, value })
            .boxed(),
    };
    (any::<u32>(), any::<u64>(), any::<u32>(), md).prop_map(
        |(value_length, storage_time, lifetime, metadata)| StoredMetaData {
            value_length,
            storage_time,
            lifetime,
            metadata,
        },
    )
}

pub fn stat_kind_response() -> impl Strategy<Value = StatKindResponse> {
    let kv = prop_oneof![
        Just(SINGLE_KIND),
        Just(ARRAY_KIND),
        Just(DICT_KIND),
        Just(UNKNOWN_KIND)
    ]
    .prop_flat_map(|k| match model_of(k) {
        Some(m) => vec(stored_meta_data(m), 0..3)
            .prop_map(move |v| (KindId(k), KindValues::Decoded(v)))
            .boxed(),
        None => bytes(40)
            .prop_map(move |b| (KindId(k), KindValues::UnknownModel(b)))
            .boxed(),
    });
    (kv, any::<u64>()).prop_map(|((kind, values), generation)| StatKindResponse {
        kind,
        generation,
        values,
    })
}

pub fn stat_ans() -> impl Strategy<Value = StatAns> {
    vec(stat_kind_response(), 0..3).prop_map(|kind_responses| StatAns { kind_responses })
}

pub fn find_req() -> impl Strategy<Value = FindReq> {
    (resource_id(), vec(any::<u32>().prop_map(KindId), 0..5))
        .prop_map(|(resource, kinds)| FindReq { resource, kinds })
}

pub fn find_ans() -> impl Strategy<Value = FindAns> {
    vec(
        (any::<u32>(), resource_id()).prop_map(|(k, closest)| FindKindData {
            kind: KindId(k),
            closest,
        }),
        0..4,
    )
    .prop_map(|results| FindAns { results })
}

pub fn turn_server() -> impl Strategy<Value = TurnServer> {
    (any::<u8>(), ip_address_port()).prop_map(|(iteration, server_address)| TurnServer {
        iteration,
        server_address,
    })
}

pub fn unknown_kinds() -> impl Strategy<Value = UnknownKinds> {
    vec(any::<u32>().prop_map(KindId), 0..8)
        .prop_map(|unknown_kinds| UnknownKinds { unknown_kinds })
}

pub fn chord_update() -> impl Strategy<Value = ChordUpdate> {
    let body = prop_oneof![
        Just(ChordUpdateBody::PeerReady),
        (vec(node_id(), 0..4), vec(node_id(), 0..4)).prop_map(|(predecessors, successors)| {
            ChordUpdateBody::Neighbors {
                predecessors,
                successors,
            }
        }),
        (
            vec(node_id(), 0..4),
            vec(node_id(), 0..4),
            vec(node_id(), 0..8)
        )
            .prop_map(
                |(predecessors, successors, fingers)| ChordUpdateBody::Full {
                    predecessors,
                    successors,
                    fingers
                }
            ),
        (4u8..=255, bytes(20)).prop_map(|(t, data)| ChordUpdateBody::Unknown {
            update_type: ChordUpdateType(t),
            data
        }),
    ];
    (any::<u32>(), body).prop_map(|(uptime, body)| ChordUpdate { uptime, body })
}

pub fn chord_leave_data() -> impl Strategy<Value = ChordLeaveData> {
    prop_oneof![
        vec(node_id(), 0..4).prop_map(|successors| ChordLeaveData::FromSucc { successors }),
        vec(node_id(), 0..4).prop_map(|predecessors| ChordLeaveData::FromPred { predecessors }),
        (3u8..=255, bytes(20)).prop_map(|(t, data)| ChordLeaveData::Unknown {
            leave_type: ChordLeaveType(t),
            data
        }),
    ]
}

pub fn chord_route_query_ans() -> impl Strategy<Value = ChordRouteQueryAns> {
    node_id().prop_map(|next_peer| ChordRouteQueryAns { next_peer })
}

pub fn diagnostics_request() -> impl Strategy<Value = DiagnosticsRequest> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        vec(
            (any::<u16>(), bytes(16)).prop_map(|(kind, c)| DiagnosticExtension {
                kind,
                diagnostic_extension_contents: c,
            }),
            0..3,
        ),
    )
        .prop_map(
            |(
                expiration,
                timestamp_initiated,
                dm_flags,
                ext_length,
                diagnostic_extensions_list,
            )| {
                DiagnosticsRequest {
                    expiration,
                    timestamp_initiated,
                    dm_flags,
                    ext_length,
                    diagnostic_extensions_list,
                }
            },
        )
}

pub fn diagnostics_response() -> impl Strategy<Value = DiagnosticsResponse> {
    (
        (any::<u64>(), any::<u64>(), any::<u64>()),
        any::<u8>(),
        any::<u32>(),
        vec(
            (any::<u16>(), bytes(16)).prop_map(|(kind, c)| DiagnosticInfo {
                kind,
                diagnostic_info_contents: c,
            }),
            0..3,
        ),
    )
        .prop_map(
            |(
                (expiration, timestamp_initiated, timestamp_received),
                hop_counter,
                ext_length,
                diagnostic_info_list,
            )| {
                DiagnosticsResponse {
                    expiration,
                    timestamp_initiated,
                    timestamp_received,
                    hop_counter,
                    ext_length,
                    diagnostic_info_list,
                }
            },
        )
}

/// Every typed message body.
pub fn message_body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        probe_req().prop_map(MessageBody::ProbeReq),
        probe_ans().prop_map(MessageBody::ProbeAns),
        attach_req_ans().prop_map(MessageBody::AttachReq),
        attach_req_ans().prop_map(MessageBody::AttachAns),
        store_req().prop_map(MessageBody::StoreReq),
        store_ans().prop_map(MessageBody::StoreAns),
        fetch_req().prop_map(MessageBody::FetchReq),
        fetch_ans().prop_map(MessageBody::FetchAns),
        find_req().prop_map(MessageBody::FindReq),
        find_ans().prop_map(MessageBody::FindAns),
        join_req().prop_map(MessageBody::JoinReq),
        bytes(32).prop_map(|d| MessageBody::JoinAns(JoinAns {
            overlay_specific_data: d
        })),
        leave_req().prop_map(MessageBody::LeaveReq),
        Just(MessageBody::LeaveAns(LeaveAns)),
        bytes(64).prop_map(|d| MessageBody::UpdateReq(UpdateReq(d))),
        bytes(8).prop_map(|d| MessageBody::UpdateAns(UpdateAns(d))),
        route_query_req().prop_map(MessageBody::RouteQueryReq),
        bytes(20).prop_map(|d| MessageBody::RouteQueryAns(RouteQueryAns(d))),
        bytes(64).prop_map(|padding| MessageBody::PingReq(PingReq { padding })),
        (any::<u64>(), any::<u64>())
            .prop_map(|(response_id, time)| MessageBody::PingAns(PingAns { response_id, time })),
        stat_req().prop_map(MessageBody::StatReq),
        stat_ans().prop_map(MessageBody::StatAns),
        app_attach().prop_map(MessageBody::AppAttachReq),
        app_attach().prop_map(MessageBody::AppAttachAns),
        config_update_req().prop_map(MessageBody::ConfigUpdateReq),
        Just(MessageBody::ConfigUpdateAns(ConfigUpdateAns)),
        (destination(), diagnostics_request()).prop_map(|(destination, request)| {
            MessageBody::PathTrackReq(PathTrackReq {
                destination,
                request,
            })
        }),
        (destination(), diagnostics_response()).prop_map(|(next_hop, response)| {
            MessageBody::PathTrackAns(PathTrackAns { next_hop, response })
        }),
        error_response().prop_map(MessageBody::Error),
        (
            prop_oneof![Just(0x05u16), Just(0x23), Just(0x8000), Just(0x1234)],
            bytes(32)
        )
            .prop_map(|(c, body)| MessageBody::Unknown {
                code: MessageCode(c),
                body
            }),
    ]
}

/// Encodes, checks `encoded_len`, decodes, and compares.
pub fn round_trip<T: Wire + PartialEq + std::fmt::Debug>(x: &T) {
    let b = x
        .to_bytes()
        .expect("strategy values fit their length prefixes");
    assert_eq!(
        b.len(),
        x.encoded_len(),
        "encoded_len disagrees with encode for {x:?}"
    );
    let y = T::decode(&b, &opts()).unwrap_or_else(|e| panic!("decode failed: {e} for {x:?}"));
    assert_eq!(&y, x);
}
