//! Access control policies (RFC 6940 §7.3): who may write a value of a Kind at a
//! Resource-ID. Pure functions of the Kind's definition, the Resource-ID, the value and the
//! signer's verified certificate; the hash is the topology plug-in's Resource-ID function
//! (§5.2: "hashes (using the hash function for the overlay)").

use reload_wire::storage::{StoredData, StoredDataValue};
use reload_wire::{NodeId, ResourceId};

use crate::config::AccessPolicy;
use crate::identity::ReloadCertificate;

/// Why a write is refused (answered Error_Forbidden, §7.4.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied(pub String);

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Kind's policy and its parameter.
#[derive(Clone, Copy, Debug)]
pub struct PolicyOf<'a> {
    pub policy: &'a AccessPolicy,
    /// `max-node-multiple` (§7.3.4, §11.1).
    pub max_node_multiple: Option<u32>,
}

/// Who signed: the certificate and the Node-ID the signer identity designates (§6.3.4).
#[derive(Clone, Copy, Debug)]
pub struct Signer<'a> {
    pub cert: &'a ReloadCertificate,
    pub node_id: &'a NodeId,
}

/// The Resource-ID names of NODE-MULTIPLE: `Node-ID ‖ i`. RFC 6940 §7.3.4 and §9 do not
/// say how `i` is encoded; this node writes one byte (TurnServer's `iteration` is a
/// uint8) and also accepts a 4-byte big-endian `i` (spec-notes/decisions.md).
pub fn node_multiple_names(node_id: &NodeId, i: u32) -> [Vec<u8>; 2] {
    let mut one = node_id.as_bytes().to_vec();
    one.push(i as u8);
    let mut four = node_id.as_bytes().to_vec();
    four.extend_from_slice(&i.to_be_bytes());
    [one, four]
}

/// Whether `signer` may write `value` at `resource` under `policy` (§7.3). `hash` maps a
/// Resource Name to its Resource-ID.
pub fn check(
    policy: PolicyOf<'_>,
    resource: &ResourceId,
    value: &StoredData,
    signer: Signer<'_>,
    hash: &dyn Fn(&[u8]) -> ResourceId,
) -> Result<(), Denied> {
    let user_matches = || {
        signer
            .cert
            .user_name
            .as_deref()
            .is_some_and(|u| hash(u.as_bytes()) == *resource)
    };
    let node_matches = || hash(signer.node_id.as_bytes()) == *resource;
    match policy.policy {
        // §7.3.1
        AccessPolicy::UserMatch => {
            if user_matches() {
                Ok(())
            } else {
                Err(Denied(format!(
                    "USER-MATCH: the signer's user name ({}) does not hash to this Resource-ID",
                    signer.cert.user_name.as_deref().unwrap_or("none")
                )))
            }
        }
        // §7.3.2
        AccessPolicy::NodeMatch => {
            if node_matches() {
                Ok(())
            } else {
                Err(Denied(format!(
                    "NODE-MATCH: the signer's Node-ID {} does not hash to this Resource-ID",
                    signer.node_id
                )))
            }
        }
        // §7.3.3
        AccessPolicy::UserNodeMatch => {
            let StoredDataValue::Dictionary(entry) = &value.value else {
                return Err(Denied(
                    "USER-NODE-MATCH applies to dictionaries only".to_string(),
                ));
            };
            if !user_matches() {
                return Err(Denied(format!(
                    "USER-NODE-MATCH: the signer's user name ({}) does not hash to this Resource-ID",
                    signer.cert.user_name.as_deref().unwrap_or("none")
                )));
            }
            if entry.key.as_ref() != signer.node_id.as_bytes() {
                return Err(Denied(format!(
                    "USER-NODE-MATCH: the dictionary key is not the signer's Node-ID {}",
                    signer.node_id
                )));
            }
            Ok(())
        }
        // §7.3.4
        AccessPolicy::NodeMultiple => {
            let Some(max) = policy.max_node_multiple.filter(|m| *m > 0) else {
                return Err(Denied(
                    "NODE-MULTIPLE without max-node-multiple in the Kind definition".to_string(),
                ));
            };
            // A configuration could ask for billions of hashes per value: iterate at most
            // 2^16 (far above any "small integer", §7.3.4).
            let max = max.min(1 << 16);
            let found = (1..=max).any(|i| {
                node_multiple_names(signer.node_id, i)
                    .iter()
                    .any(|name| hash(name) == *resource)
            });
            if found {
                Ok(())
            } else {
                Err(Denied(format!(
                    "NODE-MULTIPLE: no H(Node-ID ‖ i), i ≤ {max}, of the signer {} is this Resource-ID",
                    signer.node_id
                )))
            }
        }
        other => Err(Denied(format!(
            "access control policy {} is not supported by this node",
            other.config_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_multiple_names_are_one_and_four_byte_forms() {
        let n = NodeId::from_u128(7);
        let [one, four] = node_multiple_names(&n, 3);
        assert_eq!(one.len(), 17);
        assert_eq!(one[16], 3);
        assert_eq!(&four[16..], &[0, 0, 0, 3]);
    }
}
