//! How `reload` prints what the overlay answered: lines for people, JSON for scripts.

use reload_proto::config::AccessPolicy;
use reload_proto::node::Fetched;
use reload_wire::storage::{
    FindAns, MetaDataValue, StatAns, StoreAns, StoredData, StoredDataValue,
};
use reload_wire::{NodeId, ResourceId, SignerIdentity};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::spec::{Kind, kind_name, model_name, show_bytes, time_ms};

/// Longest value shown on a line (`--raw` writes any value whole).
const SHOWN: usize = 160;

/// This node's own identity, to recognise the values it signed.
#[derive(Clone, Debug)]
pub struct Own {
    pub user: Option<String>,
    pub node_id: NodeId,
    /// SHA-256 of the DER certificate (`cert_hash`, §6.3.4).
    pub cert_hash: Vec<u8>,
    /// SHA-256 of Node-ID ‖ certificate (`cert_hash_node_id`).
    pub cert_node_hash: Vec<u8>,
}

impl Own {
    pub fn new(user: Option<String>, node_id: NodeId, der: &[u8]) -> Own {
        let mut h = Sha256::new();
        h.update(node_id.as_bytes());
        h.update(der);
        Own {
            user,
            node_id,
            cert_hash: Sha256::digest(der).to_vec(),
            cert_node_hash: h.finalize().to_vec(),
        }
    }
}

/// Who signed a fetched value, as far as the answer tells: the core verified the signature
/// and the Kind's access policy (§7.4.2.2) but hands over the values without their
/// certificates, so the user name and Node-ID come from where they can be known — our own
/// certificate, or what the access policy proved — and otherwise the certificate hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signer {
    pub user: Option<String>,
    pub node_id: Option<NodeId>,
    /// The signer identity's certificate hash (hex), when it is `cert_hash`.
    pub cert_sha256: Option<String>,
    /// Where `user` and `node_id` come from.
    pub source: &'static str,
}

/// The signer of `d`, a value of `kind` at the resource named `name` (when the operator
/// gave a name).
pub fn signer(d: &StoredData, kind: &Kind, name: Option<&str>, own: &Own) -> Signer {
    let mut s = Signer {
        source: "unknown",
        ..Signer::default()
    };
    match &d.signature.identity {
        SignerIdentity::CertHash {
            certificate_hash, ..
        } => {
            if certificate_hash[..] == own.cert_hash[..] {
                return Signer {
                    user: own.user.clone(),
                    node_id: Some(own.node_id),
                    cert_sha256: Some(hex::encode(certificate_hash)),
                    source: "this node's certificate",
                };
            }
            s.cert_sha256 = Some(hex::encode(certificate_hash));
        }
        SignerIdentity::CertHashNodeId {
            certificate_node_id_hash,
            ..
        } if certificate_node_id_hash[..] == own.cert_node_hash[..] => {
            return Signer {
                user: own.user.clone(),
                node_id: Some(own.node_id),
                cert_sha256: None,
                source: "this node's certificate",
            };
        }
        _ => {}
    }
    // The value passed the Kind's policy at the fetcher (§7.3): under USER-MATCH and
    // USER-NODE-MATCH the signer's user name hashes to the Resource-ID — it is the name
    // the operator asked for; under USER-NODE-MATCH the dictionary key is its Node-ID.
    if matches!(
        kind.policy,
        AccessPolicy::UserMatch | AccessPolicy::UserNodeMatch
    ) && let Some(n) = name
    {
        s.user = Some(n.to_string());
        s.source = "the Kind's access policy";
    }
    if kind.policy == AccessPolicy::UserNodeMatch
        && let StoredDataValue::Dictionary(e) = &d.value
        && let Some(id) = NodeId::from_slice(&e.key).filter(|n| n.len() == own.node_id.len())
    {
        s.node_id = Some(id);
    }
    s
}

fn slot_text(v: &StoredDataValue) -> String {
    match v {
        StoredDataValue::Single(_) => String::new(),
        StoredDataValue::Array(e) => format!("[{}] ", e.index),
        StoredDataValue::Dictionary(e) => format!("[{}] ", show_bytes(&e.key, 64)),
    }
}

fn slot_json(v: &StoredDataValue) -> (Value, Value) {
    match v {
        StoredDataValue::Single(_) => (Value::Null, Value::Null),
        StoredDataValue::Array(e) => (json!(e.index), Value::Null),
        StoredDataValue::Dictionary(e) => (
            Value::Null,
            json!({
                "text": std::str::from_utf8(&e.key).ok(),
                "hex": hex::encode(&e.key),
            }),
        ),
    }
}

fn signer_text(s: &Signer) -> String {
    let mut parts = Vec::new();
    if let Some(u) = &s.user {
        parts.push(u.clone());
    }
    if let Some(n) = &s.node_id {
        parts.push(format!("Node-ID {n}"));
    }
    match (&s.cert_sha256, parts.is_empty()) {
        (Some(h), true) => format!("certificate sha256:{h}"),
        (None, true) => "not known".to_string(),
        (_, false) => parts.join(", "),
    }
}

fn signer_json(s: &Signer) -> Value {
    json!({
        "user": s.user,
        "node_id": s.node_id.map(|n| n.to_hex()),
        "cert_sha256": s.cert_sha256,
        "source": s.source,
    })
}

/// What a Store did.
pub fn stored(
    json_out: bool,
    resource: &ResourceId,
    kind: &Kind,
    from: &NodeId,
    ans: &StoreAns,
) -> String {
    let k = ans.kind_responses.iter().find(|k| k.kind == kind.id);
    let generation = k.map(|k| k.generation_counter);
    let replicas: Vec<NodeId> = k.map(|k| k.replicas.clone()).unwrap_or_default();
    if json_out {
        return json!({
            "resource_id": hex::encode(resource.as_bytes()),
            "kind": kind.id.0,
            "model": model_name(kind.model),
            "stored_by": from.to_hex(),
            "generation": generation,
            "replicas": replicas.iter().map(|n| n.to_hex()).collect::<Vec<_>>(),
        })
        .to_string();
    }
    let mut out = format!(
        "stored Kind {} ({}) at Resource-ID {}\n  stored by:  {from} (the responsible peer)\n",
        kind_name(kind.id),
        model_name(kind.model),
        hex::encode(resource.as_bytes()),
    );
    if let Some(g) = generation {
        out += &format!("  generation: {g}\n");
    }
    if replicas.is_empty() {
        out += "  replicas:   none\n";
    } else {
        for (i, r) in replicas.iter().enumerate() {
            out += &format!("  replica {}:  {r}\n", i + 1);
        }
    }
    out
}

/// A fetch's values.
pub fn fetched(
    json_out: bool,
    resource: &ResourceId,
    name: Option<&str>,
    kind: &Kind,
    f: &Fetched,
    own: &Own,
) -> String {
    let values: Vec<&StoredData> = f
        .kinds
        .iter()
        .filter(|k| k.kind == kind.id)
        .flat_map(|k| k.values.as_slice())
        .collect();
    let generation = f
        .kinds
        .iter()
        .find(|k| k.kind == kind.id)
        .map(|k| k.generation);
    if json_out {
        let vals: Vec<Value> = values
            .iter()
            .map(|d| {
                let dv = d.value.data_value();
                let (index, key) = slot_json(&d.value);
                let held = dv.exists || d.storage_time != 0;
                json!({
                    "index": index,
                    "key": key,
                    "exists": dv.exists,
                    "value": std::str::from_utf8(&dv.value).ok(),
                    "value_hex": hex::encode(&dv.value),
                    "length": dv.value.len(),
                    "storage_time": d.storage_time,
                    "lifetime": d.lifetime,
                    "signer": if held { signer_json(&signer(d, kind, name, own)) } else { Value::Null },
                })
            })
            .collect();
        return json!({
            "resource_id": hex::encode(resource.as_bytes()),
            "resource_name": name,
            "kind": kind.id.0,
            "model": model_name(kind.model),
            "responder": f.responder.to_hex(),
            "generation": generation,
            "values": vals,
            "rejected": f.rejected.iter().map(|(k, why)| json!({"kind": k.0, "why": why})).collect::<Vec<_>>(),
        })
        .to_string();
    }
    let mut out = format!(
        "Kind {} ({}) at Resource-ID {}{}\n  answered by: {} (generation {})\n",
        kind_name(kind.id),
        model_name(kind.model),
        hex::encode(resource.as_bytes()),
        name.map(|n| format!(" ({n:?})")).unwrap_or_default(),
        f.responder,
        generation.unwrap_or(0)
    );
    let present: Vec<&&StoredData> = values
        .iter()
        .filter(|d| d.value.data_value().exists)
        .collect();
    if present.is_empty() {
        out += "  no value\n";
    }
    for d in values {
        let dv = d.value.data_value();
        if !dv.exists {
            // Deleted (signed, exists = false) or absent (synthesized, §7.4.2.2): in the
            // JSON only.
            continue;
        }
        let s = signer(d, kind, name, own);
        out += &format!(
            "  {}{} ({} bytes)\n    signer:   {}\n    stored:   {}   lifetime left: {} s\n",
            slot_text(&d.value),
            show_bytes(&dv.value, SHOWN),
            dv.value.len(),
            signer_text(&s),
            time_ms(d.storage_time),
            d.lifetime,
        );
    }
    for (k, why) in &f.rejected {
        out += &format!(
            "  REJECTED (Kind {}): {why} (a value that failed verification, RFC 6940 §7.4.2.2)\n",
            kind_name(*k)
        );
    }
    out
}

/// A Stat's metadata.
pub fn stat(
    json_out: bool,
    resource: &ResourceId,
    kind: &Kind,
    from: &NodeId,
    ans: &StatAns,
) -> String {
    let k = ans.kind_responses.iter().find(|k| k.kind == kind.id);
    let values = k.map(|k| k.values.as_slice()).unwrap_or(&[]);
    let rows: Vec<(Value, Value, &reload_wire::storage::MetaData)> = values
        .iter()
        .map(|m| match &m.metadata {
            MetaDataValue::Single(v) => (Value::Null, Value::Null, v),
            MetaDataValue::Array { index, value } => (json!(index), Value::Null, value),
            MetaDataValue::Dictionary { key, value } => (
                Value::Null,
                json!({"text": std::str::from_utf8(key).ok(), "hex": hex::encode(key)}),
                value,
            ),
        })
        .collect();
    if json_out {
        let vals: Vec<Value> = values
            .iter()
            .zip(&rows)
            .map(|(m, (index, key, meta))| {
                json!({
                    "index": index,
                    "key": key,
                    "exists": meta.exists,
                    "value_length": meta.value_length,
                    "hash_algorithm": meta.hash_algorithm.0,
                    "hash": hex::encode(&meta.hash_value),
                    "storage_time": m.storage_time,
                    "lifetime": m.lifetime,
                })
            })
            .collect();
        return json!({
            "resource_id": hex::encode(resource.as_bytes()),
            "kind": kind.id.0,
            "model": model_name(kind.model),
            "responder": from.to_hex(),
            "generation": k.map(|k| k.generation),
            "values": vals,
        })
        .to_string();
    }
    let mut out = format!(
        "Kind {} ({}) at Resource-ID {}\n  answered by: {from} (generation {})\n",
        kind_name(kind.id),
        model_name(kind.model),
        hex::encode(resource.as_bytes()),
        k.map_or(0, |k| k.generation)
    );
    let mut any = false;
    for (m, (index, key, meta)) in values.iter().zip(&rows) {
        if !meta.exists {
            continue;
        }
        any = true;
        let slot = match (index, key) {
            (Value::Number(i), _) => format!("[{i}] "),
            (_, Value::Object(o)) => format!(
                "[{}] ",
                o.get("text")
                    .and_then(Value::as_str)
                    .map(|t| format!("{t:?}"))
                    .unwrap_or_else(|| format!(
                        "hex:{}",
                        o.get("hex").and_then(Value::as_str).unwrap_or("")
                    ))
            ),
            _ => String::new(),
        };
        out += &format!(
            "  {slot}{} bytes, sha256 {}, stored {}, lifetime left {} s\n",
            meta.value_length,
            hex::encode(&meta.hash_value),
            time_ms(m.storage_time),
            m.lifetime
        );
    }
    if !any {
        out += "  no value\n";
    }
    out
}

/// A Find's answer.
pub fn found(json_out: bool, from: &NodeId, kinds: &[Kind], ans: &FindAns) -> String {
    let none = |r: &ResourceId| r.as_bytes().iter().all(|b| *b == 0);
    if json_out {
        let results: Vec<Value> = ans
            .results
            .iter()
            .map(|r| {
                json!({
                    "kind": r.kind.0,
                    "resource_id": (!none(&r.closest)).then(|| hex::encode(r.closest.as_bytes())),
                })
            })
            .collect();
        return json!({"responder": from.to_hex(), "results": results}).to_string();
    }
    let mut out = format!("answered by: {from}\n");
    for k in kinds {
        let r = ans.results.iter().find(|r| r.kind == k.id);
        let text = match r {
            Some(r) if !none(&r.closest) => hex::encode(r.closest.as_bytes()),
            _ => "none (the responsible peer holds no Resource-ID with values of it)".into(),
        };
        out += &format!("  Kind {}: {text}\n", kind_name(k.id));
    }
    out
}

/// The overlay's Kinds.
pub fn kinds(json_out: bool, overlay: &reload_proto::overlay::Overlay) -> String {
    let mut rows = Vec::new();
    for def in &overlay.config().kinds {
        let Some(id) = def.kind_id() else { continue };
        let Some((_, model)) = overlay.kind(id) else {
            continue;
        };
        rows.push((id, model, def));
    }
    if json_out {
        let v: Vec<Value> = rows
            .iter()
            .map(|(id, model, def)| {
                json!({
                    "kind": id.0,
                    "name": reload_proto::config::registered_kind(*id).and(id.name()),
                    "model": model_name(*model),
                    "access_control": def.access_control.config_name(),
                    "max_count": def.max_count,
                    "max_size": def.max_size,
                })
            })
            .collect();
        return Value::Array(v).to_string();
    }
    let mut out = format!(
        "Kinds of overlay {}:\n  {:<22} {:<11} {:<11} {:<16} {:>9} {:>9}\n",
        overlay.name(),
        "Kind",
        "Kind-ID",
        "model",
        "access control",
        "max-count",
        "max-size"
    );
    for (id, model, def) in rows {
        out += &format!(
            "  {:<22} {:<11} {:<11} {:<16} {:>9} {:>9}\n",
            kind_name(id),
            format!("{}", id.0),
            model_name(model),
            def.access_control.config_name(),
            def.max_count,
            def.max_size
        );
    }
    out
}

/// For `--raw`: the bytes of the one value fetched.
pub fn raw_value(kind: &Kind, f: &Fetched) -> Result<Vec<u8>, String> {
    let present: Vec<&StoredData> = f
        .kinds
        .iter()
        .filter(|k| k.kind == kind.id)
        .flat_map(|k| k.values.as_slice())
        .filter(|d| d.value.data_value().exists)
        .collect();
    match present.as_slice() {
        [one] => Ok(one.value.data_value().value.to_vec()),
        [] => Err("--raw: no value".into()),
        many => Err(format!(
            "--raw writes one value; {} were fetched (select one with --index or --key)",
            many.len()
        )),
    }
}
