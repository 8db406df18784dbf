//! Storage helpers over `simnet` (which the including crate declares, with `pki`): sign,
//! store, fetch, stat and find from a simulated core and wait for the answer.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use reload_proto::identity::chord_resource_id;
use reload_proto::node::{Event, Fetched, RequestError};
use reload_wire::body::MessageBody;
use reload_wire::storage::{
    ArrayEntry, DataValue, DictionaryEntry, KindId, KindValues, StoreKindData, StoredData,
    StoredDataSpecifier, StoredDataValue,
};
use reload_wire::{Destination, NodeId, ResourceId};

use crate::pki::OVERLAY;
use crate::simnet::{Net, take_response};

pub const LIFETIME: u32 = 3600;

/// The Resource-ID of `user{i}`'s user name (what USER-MATCH Kinds are stored at).
pub fn user_resource(i: usize) -> ResourceId {
    chord_resource_id(format!("user{i}@{OVERLAY}").as_bytes())
}

pub fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub fn single(s: &str) -> StoredDataValue {
    StoredDataValue::Single(DataValue {
        exists: true,
        value: bytes(s),
    })
}

pub fn element(index: u32, s: &str) -> StoredDataValue {
    StoredDataValue::Array(ArrayEntry {
        index,
        value: DataValue {
            exists: true,
            value: bytes(s),
        },
    })
}

pub fn entry(key: &[u8], s: &str) -> StoredDataValue {
    StoredDataValue::Dictionary(DictionaryEntry {
        key: Bytes::copy_from_slice(key),
        value: DataValue {
            exists: true,
            value: bytes(s),
        },
    })
}

/// The bytes of a value (None: exists = false).
pub fn content(d: &StoredData) -> Option<Vec<u8>> {
    let v = match &d.value {
        StoredDataValue::Single(v) => v,
        StoredDataValue::Array(e) => &e.value,
        StoredDataValue::Dictionary(e) => &e.value,
    };
    v.exists.then(|| v.value.to_vec())
}

/// Node `i` signs `values` of `kind` for `resource`.
pub fn sign(
    net: &mut Net,
    i: usize,
    resource: &ResourceId,
    kind: u32,
    values: Vec<StoredDataValue>,
    lifetime: u32,
) -> Vec<StoredData> {
    let now = net.sim.now;
    values
        .into_iter()
        .map(|v| {
            net.sim.nodes[i]
                .node
                .sign_value(now, resource, KindId(kind), v, lifetime)
                .unwrap()
        })
        .collect()
}

/// Runs until node `i` has the answer to `tx` (at most 30 s of simulated time).
pub fn wait(net: &mut Net, i: usize, tx: u64) -> Result<(NodeId, MessageBody), RequestError> {
    for _ in 0..600 {
        if let Some(r) = take_response(&mut net.sim, i, tx) {
            return r;
        }
        net.sim.run_for(Duration::from_millis(50));
    }
    panic!("no answer to {tx:x} at node {i}");
}

/// Node `i` stores `kind_data` at `resource`; the answer.
pub fn store_raw(
    net: &mut Net,
    i: usize,
    resource: &ResourceId,
    kind_data: Vec<StoreKindData>,
) -> Result<(NodeId, MessageBody), RequestError> {
    let now = net.sim.now;
    let tx = net.sim.nodes[i]
        .node
        .store(now, resource.clone(), kind_data)
        .unwrap();
    net.sim.after_input(i);
    wait(net, i, tx)
}

/// Node `i` signs and stores `values` of `kind` at `resource` (generation 0).
pub fn store(
    net: &mut Net,
    i: usize,
    resource: &ResourceId,
    kind: u32,
    values: Vec<StoredDataValue>,
) -> Result<(NodeId, MessageBody), RequestError> {
    let signed = sign(net, i, resource, kind, values, LIFETIME);
    store_raw(
        net,
        i,
        resource,
        vec![StoreKindData {
            kind: KindId(kind),
            generation_counter: 0,
            values: KindValues::Decoded(signed),
        }],
    )
}

/// The error code of a failed request.
pub fn code(
    r: &Result<(NodeId, MessageBody), RequestError>,
) -> Option<reload_wire::message::ErrorCode> {
    match r {
        Err(RequestError::Error(_, e)) => Some(e.error_code),
        _ => None,
    }
}

/// Node `i` fetches; the verified answer.
pub fn fetch(
    net: &mut Net,
    i: usize,
    resource: &ResourceId,
    specifiers: Vec<StoredDataSpecifier>,
) -> Result<Fetched, RequestError> {
    let now = net.sim.now;
    let tx = net.sim.nodes[i]
        .node
        .fetch(now, resource.clone(), specifiers)
        .unwrap();
    net.sim.after_input(i);
    for _ in 0..600 {
        let ev = &mut net.sim.nodes[i].events;
        if let Some(k) = ev.iter().position(
            |e| matches!(e, Event::Fetched { transaction_id, .. } if *transaction_id == tx),
        ) {
            match ev.remove(k) {
                Event::Fetched { result, .. } => return result,
                _ => unreachable!(),
            }
        }
        net.sim.run_for(Duration::from_millis(50));
    }
    panic!("no Fetch answer at node {i}");
}

/// Node `i` sends any request to `resource` (Stat, Find …); the answer.
pub fn request(
    net: &mut Net,
    i: usize,
    destination: Vec<Destination>,
    body: MessageBody,
) -> Result<(NodeId, MessageBody), RequestError> {
    let now = net.sim.now;
    let tx = net.sim.nodes[i]
        .node
        .send_request(now, destination, body)
        .unwrap();
    net.sim.after_input(i);
    wait(net, i, tx)
}

/// Index of the live node responsible for `r` (the first live Node-ID ≥ r, wrapping).
pub fn responsible(net: &Net, r: &ResourceId) -> usize {
    let k = r.as_u128().unwrap();
    let live = crate::simnet::live(net);
    *live.iter().find(|&&i| net.ids[i] >= k).unwrap_or(&live[0])
}

/// The live nodes responsible for `r` and its two replicas (§10.4).
pub fn replica_group(net: &Net, r: &ResourceId) -> Vec<usize> {
    let live = crate::simnet::live(net);
    let first = responsible(net, r);
    let p = live.iter().position(|&i| i == first).unwrap();
    (0..3.min(live.len()))
        .map(|d| live[(p + d) % live.len()])
        .collect()
}

/// Whether node `i` holds a live value of `kind` at `r`.
pub fn holds(net: &Net, i: usize, r: &ResourceId, kind: u32) -> bool {
    net.sim.nodes[i]
        .node
        .storage()
        .record(r, KindId(kind))
        .is_some_and(|rec| !rec.entries.is_empty())
}
