//! Issue 11: Store, Fetch, Stat and Find (RFC 6940 §7.4) between full node cores of a
//! CHORD-RELOAD ring in the deterministic simulator — every request signed, routed and
//! verified; every value signed by its writer and verified on store and on fetch.
//!
//! - each data model (§7.2) is stored, replicated to the two successors of the
//!   responsible peer (§10.4) and fetched back, verified;
//! - each access policy (§7.3) lets its writer store and refuses another with
//!   Error_Forbidden;
//! - each error of §7.4.1.1-§7.4.4 is produced by a real request;
//! - Stat (§7.4.3), Find (§7.4.4), deletion by `exists = false` (§7.4.1.3), expiry.

mod pki;
mod simnet;
mod storage;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use pki::kinds::*;
use reload_proto::identity::chord_resource_id;
use reload_proto::node::everything;
use reload_proto::storage::policy::node_multiple_name;
use reload_wire::body::MessageBody;
use reload_wire::message::ErrorCode;
use reload_wire::storage::{
    ArrayRange, DataModel, FindReq, KindId, KindValues, MetaDataValue, ModelSpecifier, StatReq,
    StoreAns, StoreKindData, StoredDataSpecifier, StoredDataValue, UnknownKinds,
};
use reload_wire::{Destination, NodeId, ResourceId, Signature, Wire};
use simnet::*;
use storage::*;

const N: usize = 8;

fn ring(seed: u64) -> Net {
    let ca = pki::TestCa::new(false);
    let overlay = ca.storage_overlay();
    let addr = |i: usize| SocketAddr::from(([10, 0, 0, i as u8 + 1], 6084));
    let mut net = build_in(ca, overlay, seed, random_ids(N, seed), addr, None, None);
    join_sequentially(&mut net, SEC, |_, _| {});
    assert!(
        converge(&mut net, 5, SEC, 120 * SEC).is_some(),
        "{:?}",
        ring_error(&net, 5)
    );
    clear_events(&mut net.sim);
    net
}

/// A node other than `i` and other than the responsible peer of `r`.
fn bystander(net: &Net, i: usize, r: &ResourceId) -> usize {
    let resp = responsible(net, r);
    (0..N).find(|&j| j != i && j != resp).unwrap()
}

fn spec(kind: u32, m: ModelSpecifier) -> StoredDataSpecifier {
    StoredDataSpecifier {
        kind: KindId(kind),
        generation: 0,
        model_specifier: m,
    }
}

#[test]
fn each_data_model_is_stored_replicated_and_fetched_verified() {
    let mut net = ring(11);
    let i = 2;
    let r = user_resource(i);
    // single value
    let ans = store(&mut net, i, &r, SINGLE, vec![single("hello")]).unwrap();
    let resp = responsible(&net, &r);
    assert_eq!(
        ans.0,
        NodeId::from_u128(net.ids[resp]),
        "answered by the responsible peer"
    );
    let MessageBody::StoreAns(a) = ans.1 else {
        panic!()
    };
    assert_eq!(a.kind_responses[0].generation_counter, 1);
    // §7.4.1.2: the replicas named are the responsible peer's two successors.
    let group = replica_group(&net, &r);
    let named: Vec<NodeId> = group[1..]
        .iter()
        .map(|&k| NodeId::from_u128(net.ids[k]))
        .collect();
    assert_eq!(a.kind_responses[0].replicas, named);
    // array, with an append (§7.4.1.1)
    store(
        &mut net,
        i,
        &r,
        ARRAY,
        vec![
            element(0, "a0"),
            element(reload_proto::storage::ARRAY_END, "a1"),
        ],
    )
    .unwrap();
    // dictionary
    store(
        &mut net,
        i,
        &r,
        DICT,
        vec![entry(b"k1", "v1"), entry(b"k2", "v2")],
    )
    .unwrap();
    // Later stores of Kinds the replicas already hold (§10.4: each change copied).
    store(
        &mut net,
        i,
        &r,
        ARRAY,
        vec![element(reload_proto::storage::ARRAY_END, "a2")],
    )
    .unwrap();
    store(&mut net, i, &r, DICT, vec![entry(b"k3", "v3")]).unwrap();
    net.sim.run_for(2 * SEC);
    let held = |net: &Net, k: usize, kind: u32| -> Vec<Vec<u8>> {
        net.sim.nodes[k]
            .node
            .storage()
            .record(&r, KindId(kind))
            .map(|rec| {
                rec.entries
                    .values()
                    .filter_map(|e| content(&e.data))
                    .collect()
            })
            .unwrap_or_default()
    };
    for &k in &group {
        for kind in [SINGLE, ARRAY, DICT] {
            assert_eq!(
                held(&net, k, kind),
                held(&net, resp, kind),
                "node {k} of the replica group holds what the responsible peer holds of \
                 Kind {kind:x}"
            );
        }
    }
    let others = (0..N).filter(|k| !group.contains(k)).count();
    assert!(others > 0);
    for k in (0..N).filter(|k| !group.contains(k)) {
        assert!(
            !holds(&net, k, &r, SINGLE),
            "node {k} outside the replica group holds data"
        );
    }
    // Fetch everything back from a third node, each value verified.
    let j = bystander(&net, i, &r);
    let f = fetch(
        &mut net,
        j,
        &r,
        vec![
            everything(KindId(SINGLE), DataModel::Single),
            everything(KindId(ARRAY), DataModel::Array),
            everything(KindId(DICT), DataModel::Dictionary),
        ],
    )
    .unwrap();
    assert!(f.rejected.is_empty(), "{:?}", f.rejected);
    assert_eq!(f.responder, NodeId::from_u128(net.ids[resp]));
    let got: Vec<Vec<Option<Vec<u8>>>> = f
        .kinds
        .iter()
        .map(|k| k.values.as_slice().iter().map(content).collect())
        .collect();
    assert_eq!(
        got,
        vec![
            vec![Some(b"hello".to_vec())],
            vec![
                Some(b"a0".to_vec()),
                Some(b"a1".to_vec()),
                Some(b"a2".to_vec())
            ],
            vec![
                Some(b"v1".to_vec()),
                Some(b"v2".to_vec()),
                Some(b"v3".to_vec())
            ],
        ]
    );
    // The appended element has its real index (§7.4.1.1).
    assert!(
        matches!(&f.kinds[1].values.as_slice()[1].value, StoredDataValue::Array(e) if e.index == 1)
    );
    // Lifetimes count down from the store (§7.4.1.1).
    assert!(f.kinds[0].values.as_slice()[0].lifetime <= LIFETIME);
}

#[test]
fn each_policy_lets_its_writer_store_and_forbids_others() {
    let mut net = ring(12);
    let (i, other) = (1, 3);
    // USER-MATCH (§7.3.1): at H(user name).
    let r = user_resource(i);
    assert!(store(&mut net, i, &r, SINGLE, vec![single("mine")]).is_ok());
    let e = store(&mut net, other, &r, SINGLE, vec![single("not yours")]);
    assert_eq!(code(&e), Some(ErrorCode::FORBIDDEN));
    // NODE-MATCH (§7.3.2): at H(Node-ID).
    let node_i = NodeId::from_u128(net.ids[i]);
    let rn = chord_resource_id(node_i.as_bytes());
    assert!(store(&mut net, i, &rn, NODE, vec![single("by node")]).is_ok());
    let e = store(&mut net, other, &rn, NODE, vec![single("by node")]);
    assert_eq!(code(&e), Some(ErrorCode::FORBIDDEN));
    // USER-NODE-MATCH (§7.3.3, SIP-REGISTRATION): key = the signer's Node-ID.
    let k = KindId::SIP_REGISTRATION.0;
    assert!(
        store(
            &mut net,
            i,
            &r,
            k,
            vec![entry(node_i.as_bytes(), "contact")]
        )
        .is_ok()
    );
    let node_o = NodeId::from_u128(net.ids[other]);
    let e = store(
        &mut net,
        i,
        &r,
        k,
        vec![entry(node_o.as_bytes(), "contact")],
    );
    assert_eq!(
        code(&e),
        Some(ErrorCode::FORBIDDEN),
        "key is not the signer's Node-ID"
    );
    let e = store(
        &mut net,
        other,
        &r,
        k,
        vec![entry(node_o.as_bytes(), "contact")],
    );
    assert_eq!(
        code(&e),
        Some(ErrorCode::FORBIDDEN),
        "user name does not match"
    );
    // NODE-MULTIPLE (§7.3.4): H(Node-ID ‖ i) for i ≤ max-node-multiple (5).
    for n in 1..=5u32 {
        let name = node_multiple_name(&node_i, n);
        let rm = chord_resource_id(&name);
        assert!(
            store(&mut net, i, &rm, MULTI, vec![single("m")]).is_ok(),
            "i = {n}"
        );
    }
    let name = node_multiple_name(&node_i, 6);
    let e = store(
        &mut net,
        i,
        &chord_resource_id(&name),
        MULTI,
        vec![single("m")],
    );
    assert_eq!(
        code(&e),
        Some(ErrorCode::FORBIDDEN),
        "beyond max-node-multiple"
    );
    let name = node_multiple_name(&node_i, 1);
    let e = store(
        &mut net,
        other,
        &chord_resource_id(&name),
        MULTI,
        vec![single("m")],
    );
    assert_eq!(
        code(&e),
        Some(ErrorCode::FORBIDDEN),
        "another node's Resource-ID"
    );
    // TURN-SERVICE (§9): NODE-MULTIPLE with 20.
    let name = node_multiple_name(&node_i, 20);
    assert!(
        store(
            &mut net,
            i,
            &chord_resource_id(&name),
            KindId::TURN_SERVICE.0,
            vec![single("turn")]
        )
        .is_ok()
    );
    let name = node_multiple_name(&node_i, 21);
    let e = store(
        &mut net,
        i,
        &chord_resource_id(&name),
        KindId::TURN_SERVICE.0,
        vec![single("turn")],
    );
    assert_eq!(code(&e), Some(ErrorCode::FORBIDDEN));
}

#[test]
fn every_store_error_is_produced_by_a_real_request() {
    let mut net = ring(13);
    let i = 4;
    let r = user_resource(i);
    store(&mut net, i, &r, SINGLE, vec![single("v1")]).unwrap();
    store(&mut net, i, &r, SINGLE, vec![single("v2")]).unwrap();

    // Error_Unknown_Kind, listing the unknown Kinds (§7.4.1.2).
    let unknown = 0xf000_0099;
    let e = store(&mut net, i, &r, unknown, vec![single("x")]);
    let Err(reload_proto::node::RequestError::Error(_, err)) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(err.error_code, ErrorCode::UNKNOWN_KIND);
    let listed = UnknownKinds::decode(&err.error_info, &Default::default()).unwrap();
    assert_eq!(listed.unknown_kinds, vec![KindId(unknown)]);

    // Error_Generation_Counter_Too_Low, with the current counter in a StoreAns.
    let signed = sign(&mut net, i, &r, SINGLE, vec![single("v3")], LIFETIME);
    let e = store_raw(
        &mut net,
        i,
        &r,
        vec![StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 1,
            values: KindValues::Decoded(signed.clone()),
        }],
    );
    let Err(reload_proto::node::RequestError::Error(_, err)) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(err.error_code, ErrorCode::GENERATION_COUNTER_TOO_LOW);
    let current = StoreAns::decode(&err.error_info, &Default::default()).unwrap();
    assert_eq!(current.kind_responses[0].generation_counter, 2);
    assert!(current.kind_responses[0].replicas.is_empty());
    // With the right counter it goes through.
    let ok = store_raw(
        &mut net,
        i,
        &r,
        vec![StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 2,
            values: KindValues::Decoded(signed),
        }],
    );
    assert!(ok.is_ok(), "{ok:?}");

    // Error_Data_Too_Old: a value whose storage time is before the stored one.
    let mut old = sign(&mut net, i, &r, SINGLE, vec![single("old")], LIFETIME).remove(0);
    old.storage_time -= 60_000;
    net.sim.nodes[i]
        .node
        .credentials()
        .sign_stored_data(&r, KindId(SINGLE), &mut old)
        .unwrap();
    let e = store_raw(
        &mut net,
        i,
        &r,
        vec![StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 0,
            values: KindValues::Decoded(vec![old]),
        }],
    );
    assert_eq!(code(&e), Some(ErrorCode::DATA_TOO_OLD));

    // Error_Data_Too_Large: max-size (1024), max-count (16 for the array).
    let e = store(&mut net, i, &r, SINGLE, vec![single(&"x".repeat(1025))]);
    assert_eq!(code(&e), Some(ErrorCode::DATA_TOO_LARGE));
    let many = (0..17).map(|k| element(k, "e")).collect();
    let e = store(&mut net, i, &r, ARRAY, many);
    assert_eq!(code(&e), Some(ErrorCode::DATA_TOO_LARGE));

    // Error_Forbidden: a value whose signature does not verify; one with identity none.
    let mut tampered = sign(&mut net, i, &r, SINGLE, vec![single("signed")], LIFETIME).remove(0);
    tampered.value = single("changed");
    let e = store_raw(
        &mut net,
        i,
        &r,
        vec![StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 0,
            values: KindValues::Decoded(vec![tampered.clone()]),
        }],
    );
    assert_eq!(code(&e), Some(ErrorCode::FORBIDDEN));
    tampered.signature = Signature::none();
    let e = store_raw(
        &mut net,
        i,
        &r,
        vec![StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 0,
            values: KindValues::Decoded(vec![tampered]),
        }],
    );
    assert_eq!(code(&e), Some(ErrorCode::FORBIDDEN));

    // Error_Invalid_Message: the same Kind twice in one Store (§7.4.1.1 MUST NOT).
    let a = sign(&mut net, i, &r, SINGLE, vec![single("a")], LIFETIME);
    let b = sign(&mut net, i, &r, SINGLE, vec![single("b")], LIFETIME);
    let twice = vec![
        StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 0,
            values: KindValues::Decoded(a),
        },
        StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 0,
            values: KindValues::Decoded(b),
        },
    ];
    assert_eq!(
        code(&store_raw(&mut net, i, &r, twice)),
        Some(ErrorCode::INVALID_MESSAGE)
    );
    // … and overlapping array ranges in a Fetch (§7.4.2.1).
    let overlapping = ModelSpecifier::Array(vec![
        ArrayRange { first: 0, last: 5 },
        ArrayRange { first: 3, last: 9 },
    ]);
    let e = fetch(&mut net, i, &r, vec![spec(ARRAY, overlapping)]);
    assert!(
        matches!(&e, Err(reload_proto::node::RequestError::Error(_, x)) if x.error_code == ErrorCode::INVALID_MESSAGE),
        "{e:?}"
    );

    // Error_Not_Found: a Store addressed to a peer that is not responsible.
    let resp = responsible(&net, &r);
    let not_resp = (0..N).find(|&k| k != resp && k != i).unwrap();
    let signed = sign(
        &mut net,
        i,
        &r,
        SINGLE,
        vec![single("misdirected")],
        LIFETIME,
    );
    let body = MessageBody::StoreReq(reload_wire::storage::StoreReq {
        resource: r.clone(),
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 0,
            values: KindValues::Decoded(signed.clone()),
        }],
    });
    let to = vec![Destination::Node(NodeId::from_u128(net.ids[not_resp]))];
    let e = request(&mut net, i, to, body);
    assert_eq!(code(&e), Some(ErrorCode::NOT_FOUND));
    // A replica Store the receiver does not expect to hold (it is not in the replica set
    // of the Resource-ID): Error_Forbidden (§7.4.1.1).
    let body = MessageBody::StoreReq(reload_wire::storage::StoreReq {
        resource: r.clone(),
        replica_number: 1,
        kind_data: vec![StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 9,
            values: KindValues::Decoded(signed),
        }],
    });
    let group = replica_group(&net, &r);
    let outsider = (0..N).find(|k| !group.contains(k)).unwrap();
    let to = vec![Destination::Node(NodeId::from_u128(net.ids[outsider]))];
    let e = request(&mut net, i, to, body);
    assert_eq!(code(&e), Some(ErrorCode::FORBIDDEN));
    // Nothing above changed the value: still v3, counter 3.
    let f = fetch(
        &mut net,
        i,
        &r,
        vec![everything(KindId(SINGLE), DataModel::Single)],
    )
    .unwrap();
    assert_eq!(f.kinds[0].generation, 3);
    assert_eq!(
        content(&f.kinds[0].values.as_slice()[0]),
        Some(b"v3".to_vec())
    );
}

#[test]
fn stat_find_delete_and_expiry() {
    let mut net = ring(14);
    let i = 5;
    let r = user_resource(i);
    store(&mut net, i, &r, SINGLE, vec![single("hello")]).unwrap();
    // Stat (§7.4.3): length and SHA-256 of the value, no data.
    let body = MessageBody::StatReq(StatReq {
        resource: r.clone(),
        specifiers: vec![spec(SINGLE, ModelSpecifier::Single)],
    });
    let (_, ans) = request(&mut net, i, vec![Destination::Resource(r.clone())], body).unwrap();
    let MessageBody::StatAns(s) = ans else {
        panic!("{ans:?}")
    };
    let m = &s.kind_responses[0].values.as_slice()[0];
    let MetaDataValue::Single(meta) = &m.metadata else {
        panic!()
    };
    assert!(meta.exists);
    assert_eq!(meta.value_length, 5);
    assert_eq!(meta.hash_value.len(), 32);

    // Find (§7.4.4): from the Resource-ID itself the answer is itself; an unknown Kind 0.
    let body = MessageBody::FindReq(FindReq {
        resource: r.clone(),
        kinds: vec![KindId(SINGLE), KindId(0xf000_0099)],
    });
    let (_, ans) = request(&mut net, i, vec![Destination::Resource(r.clone())], body).unwrap();
    let MessageBody::FindAns(f) = ans else {
        panic!("{ans:?}")
    };
    assert_eq!(f.results[0].closest, r);
    assert_eq!(
        f.results[1].closest,
        ResourceId::new(Bytes::from(vec![0u8; 16]))
    );
    // A Kind listed twice is refused.
    let body = MessageBody::FindReq(FindReq {
        resource: r.clone(),
        kinds: vec![KindId(SINGLE), KindId(SINGLE)],
    });
    let e = request(&mut net, i, vec![Destination::Resource(r.clone())], body);
    assert_eq!(code(&e), Some(ErrorCode::INVALID_MESSAGE));

    // Deletion (§7.4.1.3): exists = false replaces the value and is replicated too.
    let gone = StoredDataValue::Single(reload_wire::storage::DataValue {
        exists: false,
        value: Bytes::new(),
    });
    store(&mut net, i, &r, SINGLE, vec![gone]).unwrap();
    net.sim.run_for(2 * SEC);
    let f = fetch(&mut net, i, &r, vec![spec(SINGLE, ModelSpecifier::Single)]).unwrap();
    let v = &f.kinds[0].values.as_slice()[0];
    assert_eq!(content(v), None);
    assert_ne!(
        v.signature,
        Signature::none(),
        "a stored deletion keeps its signature"
    );
    for k in replica_group(&net, &r) {
        let rec = net.sim.nodes[k]
            .node
            .storage()
            .record(&r, KindId(SINGLE))
            .cloned();
        let e = rec.unwrap().entries.values().next().unwrap().data.clone();
        assert_eq!(content(&e), None, "node {k} still has the value");
    }

    // Expiry: a value with a 5 s lifetime is gone from every replica after it.
    let signed = sign(&mut net, i, &r, DICT, vec![entry(b"short", "lived")], 5);
    store_raw(
        &mut net,
        i,
        &r,
        vec![StoreKindData {
            kind: KindId(DICT),
            generation_counter: 0,
            values: KindValues::Decoded(signed),
        }],
    )
    .unwrap();
    net.sim.run_for(SEC);
    let group = replica_group(&net, &r);
    assert!(group.iter().all(|&k| holds(&net, k, &r, DICT)));
    net.sim.run_for(6 * SEC);
    for &k in &group {
        assert!(!holds(&net, k, &r, DICT), "node {k} kept an expired value");
    }
    let f = fetch(
        &mut net,
        i,
        &r,
        vec![spec(DICT, ModelSpecifier::Dictionary(vec![bytes("short")]))],
    )
    .unwrap();
    assert_eq!(content(&f.kinds[0].values.as_slice()[0]), None);
    let _ = Duration::ZERO;
}

#[test]
fn every_node_stores_its_certificate_once_by_node_and_by_user() {
    // RFC 6940 §8: at H(Node-ID) (CERTIFICATE_BY_NODE) and H(user name)
    // (CERTIFICATE_BY_USER), appended to the array.
    let mut net = ring(15);
    net.sim.run_for(5 * SEC);
    for i in 0..N {
        let der = net.sim.nodes[i].node.credentials().cert.der().clone();
        let node_r = chord_resource_id(NodeId::from_u128(net.ids[i]).as_bytes());
        let user_r = user_resource(i);
        for (kind, r) in [
            (KindId::CERTIFICATE_BY_NODE, node_r),
            (KindId::CERTIFICATE_BY_USER, user_r),
        ] {
            let j = (i + 1) % N;
            let f = fetch(&mut net, j, &r, vec![everything(kind, DataModel::Array)]).unwrap();
            assert!(f.rejected.is_empty(), "{:?}", f.rejected);
            let certs: Vec<Vec<u8>> = f.kinds[0]
                .values
                .as_slice()
                .iter()
                .filter_map(content)
                .collect();
            assert_eq!(certs, vec![der.to_vec()], "node {i}, {kind}");
        }
    }
}

#[test]
fn a_turn_server_is_advertised_and_found_from_random_resource_ids() {
    // RFC 6940 §9: TurnServer values at H(Node-ID ‖ d), d = 1..turn-density; a Find for
    // TURN-SERVICE at a random Resource-ID returns one when the peer it reaches knows one.
    let mut net = ring(16);
    let server: SocketAddr = "192.0.2.7:3478".parse().unwrap();
    let now = net.sim.now;
    let txs = net.sim.nodes[3]
        .node
        .advertise_turn(now, server, 600)
        .unwrap();
    assert_eq!(txs.len() as u32, net.overlay.config().turn_density);
    net.sim.after_input(3);
    for tx in txs {
        assert!(wait(&mut net, 3, tx).is_ok());
    }
    let mut rng = reload_proto::rand::Prng::new(5);
    let zero = ResourceId::new(Bytes::from(vec![0u8; 16]));
    let mut found = None;
    for _ in 0..200 {
        let key = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
        let r = ResourceId::new(key.to_be_bytes().to_vec());
        let body = MessageBody::FindReq(FindReq {
            resource: r.clone(),
            kinds: vec![KindId::TURN_SERVICE],
        });
        let (_, ans) = request(&mut net, 6, vec![Destination::Resource(r)], body).unwrap();
        let MessageBody::FindAns(f) = ans else {
            panic!()
        };
        if f.results[0].closest != zero {
            found = Some(f.results[0].closest.clone());
            break;
        }
    }
    let at = found.expect("no Find located the TURN server");
    let f = fetch(
        &mut net,
        6,
        &at,
        vec![everything(KindId::TURN_SERVICE, DataModel::Single)],
    )
    .unwrap();
    let v = content(&f.kinds[0].values.as_slice()[0]).unwrap();
    let t = reload_wire::storage::TurnServer::decode(&Bytes::from(v), &Default::default()).unwrap();
    assert_eq!(t.iteration, 1);
    assert_eq!(t.server_address.socket_addr(), Some(server));
}

#[test]
fn values_of_a_kind_the_configuration_drops_are_removed() {
    // §7.4.1.1: a node stores only Kinds it knows; a new configuration without a Kind
    // leaves no value of it behind.
    let mut net = ring(17);
    let i = 1;
    let r = user_resource(i);
    store(&mut net, i, &r, SINGLE, vec![single("x")]).unwrap();
    store(&mut net, i, &r, DICT, vec![entry(b"k", "kept")]).unwrap();
    net.sim.run_for(2 * SEC);
    let group = replica_group(&net, &r);
    assert!(group.iter().all(|&k| holds(&net, k, &r, SINGLE)));
    let mut config = net.overlay.config().clone();
    config.kinds.retain(|k| k.kind_id() != Some(KindId(SINGLE)));
    let now = net.sim.now;
    for k in 0..N {
        net.sim.nodes[k].node.set_configuration(
            now,
            config.clone(),
            Bytes::from_static(b"<overlay/>"),
        );
    }
    for &k in &group {
        assert!(!holds(&net, k, &r, SINGLE), "node {k} kept a dropped Kind");
        assert!(
            holds(&net, k, &r, DICT),
            "node {k} lost a Kind still defined"
        );
    }
}

/// `writer` signs `value` of `kind` for `r` with storage time `t`.
fn signed_at(
    net: &Net,
    writer: usize,
    r: &ResourceId,
    kind: u32,
    value: StoredDataValue,
    t: u64,
) -> reload_wire::storage::StoredData {
    let mut d = reload_wire::storage::StoredData {
        storage_time: t,
        lifetime: LIFETIME,
        value,
        signature: Signature::none(),
    };
    net.sim.nodes[writer]
        .node
        .credentials()
        .sign_stored_data(r, KindId(kind), &mut d)
        .unwrap();
    d
}

#[test]
fn a_replica_with_newer_data_makes_the_responsible_peer_fetch_it_back() {
    // §7.4.1.1: a replica Store refused with Error_Data_Too_Old makes the sender fetch the
    // newer data from the peer that refused and replace its own copy. The replica gets a
    // newer value than the responsible peer holds (as after a partition); the next change
    // the responsible peer copies to it is refused, and the responsible peer ends up
    // serving the newer value.
    let mut net = ring(18);
    let writer = 6;
    let r = user_resource(writer);
    let t0 = 1_900_000_000_000u64;
    let v1 = signed_at(&net, writer, &r, SINGLE, single("v1"), t0);
    let kd = |d: reload_wire::storage::StoredData| {
        vec![StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 0,
            values: KindValues::Decoded(vec![d]),
        }]
    };
    store_raw(&mut net, writer, &r, kd(v1)).unwrap();
    net.sim.run_for(2 * SEC);
    let group = replica_group(&net, &r);
    let (resp, replica) = (group[0], group[1]);
    // The replica receives a newer value "from the responsible peer" (crafted, signed with
    // its key, sent over their link): it now holds v3, the responsible peer v1.
    let v3 = signed_at(&net, writer, &r, SINGLE, single("v3"), t0 + 3000);
    let body = MessageBody::StoreReq(reload_wire::storage::StoreReq {
        resource: r.clone(),
        replica_number: 1,
        kind_data: vec![StoreKindData {
            kind: KindId(SINGLE),
            generation_counter: 5,
            values: KindValues::Decoded(vec![v3]),
        }],
    });
    let node = &net.sim.nodes[resp].node;
    let overlay = node.overlay().clone();
    let mut h = reload_wire::ForwardingHeader::new(
        overlay.hash(),
        overlay.sequence(),
        overlay.initial_ttl(),
        0x7e57,
    );
    h.destination_list = vec![Destination::Node(NodeId::from_u128(net.ids[replica]))];
    let mut m = reload_wire::Message {
        header: h,
        contents: reload_wire::MessageContents::from_body(&body).unwrap(),
        security: reload_wire::SecurityBlock {
            certificates: vec![],
            signature: Signature::none(),
        },
    };
    let writer_cert = net.sim.nodes[writer].node.credentials().cert.der().clone();
    node.credentials()
        .sign_message(
            &mut m,
            vec![reload_wire::GenericCertificate::x509(writer_cert)],
        )
        .unwrap();
    m.header.length = m.encoded_len() as u32;
    assert!(net.sim.inject(resp, replica, m.to_bytes().unwrap()));
    net.sim.run_for(SEC);
    let held = |net: &Net, k: usize| {
        let rec = net.sim.nodes[k]
            .node
            .storage()
            .record(&r, KindId(SINGLE))
            .cloned()
            .unwrap();
        content(&rec.entries.values().next().unwrap().data)
    };
    assert_eq!(held(&net, replica), Some(b"v3".to_vec()));
    assert_eq!(held(&net, resp), Some(b"v1".to_vec()));
    // The writer stores v2 (newer than v1, older than v3): the responsible peer takes it and
    // copies it to the replica, which refuses it as too old — and the responsible peer
    // fetches v3 back.
    let v2 = signed_at(&net, writer, &r, SINGLE, single("v2"), t0 + 2000);
    store_raw(&mut net, writer, &r, kd(v2)).unwrap();
    net.sim.run_for(3 * SEC);
    assert_eq!(
        held(&net, resp),
        Some(b"v3".to_vec()),
        "the responsible peer merged the newer value"
    );
    let f = fetch(
        &mut net,
        writer,
        &r,
        vec![spec(SINGLE, ModelSpecifier::Single)],
    )
    .unwrap();
    assert_eq!(
        content(&f.kinds[0].values.as_slice()[0]),
        Some(b"v3".to_vec())
    );
}

#[test]
fn values_survive_peers_leaving_gracefully() {
    // §6.4.2.2, §10.9: a peer receiving a Leave treats it as a failure (§10.7.1) and sends
    // "the appropriate Store/Update sequences": after the responsible peer of a value and
    // then one of its replicas leave, the value is on its new responsible peer and both
    // new replicas, and a Fetch returns it verified.
    let mut net = ring(18);
    let r = user_resource(4);
    store(
        &mut net,
        4,
        &r,
        ARRAY,
        vec![element(0, "kept"), element(1, "too")],
    )
    .unwrap();
    net.sim.run_for(2 * SEC);
    for round in 0..2 {
        let group = replica_group(&net, &r);
        // First the responsible peer, then its first replica (never the writer).
        let leaving = *group.iter().skip(round).find(|&&k| k != 4).unwrap();
        let now = net.sim.now;
        net.sim.nodes[leaving].node.leave(now);
        net.sim.after_input(leaving);
        net.sim.run_for(Duration::from_millis(500));
        net.sim.kill(leaving);
        assert!(
            converge(&mut net, 5, SEC, 60 * SEC).is_some(),
            "{:?}",
            ring_error(&net, 5)
        );
        net.sim.run_for(5 * SEC);
        for &k in &replica_group(&net, &r) {
            assert!(
                holds(&net, k, &r, ARRAY),
                "round {round}: node {k} of the new replica group lacks the value"
            );
        }
    }
    let reader = (0..N).find(|&k| live(&net).contains(&k) && k != 4).unwrap();
    let f = fetch(
        &mut net,
        reader,
        &r,
        vec![everything(KindId(ARRAY), DataModel::Array)],
    )
    .unwrap();
    assert!(f.rejected.is_empty());
    let got: Vec<Option<Vec<u8>>> = f.kinds[0].values.as_slice().iter().map(content).collect();
    assert_eq!(got, vec![Some(b"kept".to_vec()), Some(b"too".to_vec())]);
}

/// RFC 7904 §3.3, §3.4: the storing peer admits a SIP-REGISTRATION only for an AOR whose
/// domain the configuration's `sip:domain-restriction` admits, else Error_Forbidden.
#[test]
fn sip_registrations_follow_the_domain_restriction() {
    use reload_proto::config::NamePatterns;
    let k = KindId::SIP_REGISTRATION.0;
    for (restriction, admitted) in [
        // enable false: the overlay's own domain only (the users are user<i>@<overlay>).
        (
            NamePatterns {
                enable: false,
                patterns: vec![],
            },
            true,
        ),
        // enable true: only matching domains.
        (
            NamePatterns {
                enable: true,
                patterns: vec![r"sip\.example\.com".into()],
            },
            false,
        ),
        (
            NamePatterns {
                enable: true,
                patterns: vec![pki::OVERLAY.replace('.', r"\.")],
            },
            true,
        ),
    ] {
        let ca = pki::TestCa::new(false);
        let mut config = ca.storage_config();
        config.sip_domain_restriction = Some(restriction.clone());
        let overlay = reload_proto::overlay::Overlay::new(config, None);
        let addr = |i: usize| SocketAddr::from(([10, 0, 0, i as u8 + 1], 6084));
        let mut net = build_in(ca, overlay, 31, random_ids(N, 31), addr, None, None);
        join_sequentially(&mut net, SEC, |_, _| {});
        assert!(converge(&mut net, 5, SEC, 120 * SEC).is_some());
        let i = 2;
        let node_i = NodeId::from_u128(net.ids[i]);
        let got = store(
            &mut net,
            i,
            &user_resource(i),
            k,
            vec![entry(node_i.as_bytes(), "contact")],
        );
        if admitted {
            assert!(got.is_ok(), "{restriction:?}: {:?}", code(&got));
        } else {
            assert_eq!(code(&got), Some(ErrorCode::FORBIDDEN), "{restriction:?}");
        }
    }
}
