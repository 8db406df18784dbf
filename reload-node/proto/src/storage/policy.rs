//! Access control policies (RFC 6940 §7.3): who may write a value of a Kind at a
//! Resource-ID. Pure functions of the Kind's definition, the Resource-ID, the value and the
//! signer's verified certificate; the hash is the topology plug-in's Resource-ID function
//! (§5.2: "hashes (using the hash function for the overlay)").

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

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

/// The Resource Name of NODE-MULTIPLE's `i`-th Resource-ID of `node_id`, as this node
/// writes it: `Node-ID ‖ i`, `i` in one byte up to 255 (TurnServer's `iteration` is a
/// uint8, §9), else four bytes big-endian. RFC 6940 §7.3.4 does not say how `i` is
/// encoded (spec-notes/decisions.md).
pub fn node_multiple_name(node_id: &NodeId, i: u32) -> Vec<u8> {
    let mut name = node_id.as_bytes().to_vec();
    match u8::try_from(i) {
        Ok(b) => name.push(b),
        Err(_) => name.extend_from_slice(&i.to_be_bytes()),
    }
    name
}

/// Every Resource Name accepted for NODE-MULTIPLE's `i`: one byte (when `i` fits) and
/// four bytes big-endian.
pub fn node_multiple_names(node_id: &NodeId, i: u32) -> Vec<Vec<u8>> {
    let mut four = node_id.as_bytes().to_vec();
    four.extend_from_slice(&i.to_be_bytes());
    match u8::try_from(i) {
        Ok(b) => {
            let mut one = node_id.as_bytes().to_vec();
            one.push(b);
            vec![one, four]
        }
        Err(_) => vec![four],
    }
}

/// The most `i` a NODE-MULTIPLE check tries, whatever max-node-multiple says.
pub const MAX_NODE_MULTIPLE: u32 = 1 << 16;

/// Largest max-node-multiple whose Resource-IDs are tried one by one; above it they are
/// computed once per signer and kept ([`NodeMultipleCache`]).
const LINEAR_MAX: u32 = 64;

/// Signers whose NODE-MULTIPLE Resource-IDs are kept.
const CACHED_SIGNERS: usize = 32;

/// The NODE-MULTIPLE Resource-IDs of recent signers (§7.3.4: "the verifier MUST iterate
/// through potential i values"): for a large max-node-multiple, every check would hash up
/// to max names; the table of one signer is computed once (8 bytes of each Resource-ID →
/// `i`, confirmed by hashing that `i` again) and kept for the last [`CACHED_SIGNERS`].
#[derive(Debug, Default)]
pub struct NodeMultipleCache {
    tables: HashMap<(NodeId, u32), Arc<HashMap<u64, u32>>>,
    order: VecDeque<(NodeId, u32)>,
}

fn prefix(id: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = id.len().min(8);
    b[..n].copy_from_slice(&id[..n]);
    u64::from_be_bytes(b)
}

impl NodeMultipleCache {
    /// The `i` ≤ `max` for which H(Node-ID ‖ i) is `resource`, if any.
    pub fn find_i(
        &mut self,
        node_id: &NodeId,
        max: u32,
        resource: &ResourceId,
        hash: &dyn Fn(&[u8]) -> ResourceId,
    ) -> Option<u32> {
        let matches = |i: u32| {
            node_multiple_names(node_id, i)
                .iter()
                .any(|name| hash(name) == *resource)
        };
        if max <= LINEAR_MAX {
            return (1..=max).find(|&i| matches(i));
        }
        let key = (*node_id, max);
        let table = match self.tables.get(&key) {
            Some(t) => t.clone(),
            None => {
                let mut t = HashMap::with_capacity(2 * max as usize);
                for i in 1..=max {
                    for name in node_multiple_names(node_id, i) {
                        t.insert(prefix(hash(&name).as_bytes()), i);
                    }
                }
                let t = Arc::new(t);
                if self.order.len() >= CACHED_SIGNERS
                    && let Some(old) = self.order.pop_front()
                {
                    self.tables.remove(&old);
                }
                self.order.push_back(key);
                self.tables.insert(key, t.clone());
                t
            }
        };
        let i = *table.get(&prefix(resource.as_bytes()))?;
        matches(i).then_some(i)
    }
}

/// Whether `signer` may write `value` at `resource` under `policy` (§7.3). `hash` maps a
/// Resource Name to its Resource-ID.
pub fn check(
    policy: PolicyOf<'_>,
    resource: &ResourceId,
    value: &StoredData,
    signer: Signer<'_>,
    hash: &dyn Fn(&[u8]) -> ResourceId,
    multiple: &mut NodeMultipleCache,
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
            // A configuration could ask for billions of hashes per value: at most 2^16 (far
            // above any "small integer", §7.3.4).
            let max = max.min(MAX_NODE_MULTIPLE);
            if multiple
                .find_i(signer.node_id, max, resource, hash)
                .is_some()
            {
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

/// The AORs a SIP-REGISTRATION may be stored for (RFC 7904 §3.3, §3.4), compiled once per
/// configuration: the storing peer checks the domain of the signer's user name (the AOR,
/// one per certificate) before anything else and refuses with Error_Forbidden.
#[derive(Clone, Debug)]
pub enum AorDomains {
    /// No `sip:domain-restriction`: any AOR (§3.4 default).
    Any,
    /// The element with `enable` absent or false: only the overlay's own domain
    /// (`instance-name`, compared without case) (§3.4 L541-543).
    Overlay(String),
    /// `enable="true"`: only domains that match one of the patterns as a whole (§3.4
    /// L543-545). Patterns are anchored (`dht\.example\.com` does not admit
    /// `dht.example.com.evil.org`) and matched without case; a pattern that does not
    /// compile admits nothing, and no pattern admits nothing.
    Patterns(Vec<regex::Regex>),
}

impl AorDomains {
    pub fn new(restriction: Option<&crate::config::NamePatterns>, instance_name: &str) -> Self {
        match restriction {
            None => AorDomains::Any,
            Some(r) if !r.enable => AorDomains::Overlay(instance_name.to_ascii_lowercase()),
            Some(r) => AorDomains::Patterns(
                r.patterns
                    .iter()
                    .filter_map(|p| {
                        regex::RegexBuilder::new(&format!("^(?:{p})$"))
                            .case_insensitive(true)
                            .size_limit(1 << 20)
                            .build()
                            .ok()
                    })
                    .collect(),
            ),
        }
    }

    /// Whether an AOR (`user@domain`, no scheme) may be registered.
    pub fn admits(&self, aor: &str) -> Result<(), Denied> {
        let Some((_, domain)) = aor.rsplit_once('@') else {
            return Err(Denied(format!(
                "RFC 7904 §3.3: the signer's user name {aor:?} is not a SIP AOR (user@domain)"
            )));
        };
        let ok = match self {
            AorDomains::Any => true,
            AorDomains::Overlay(name) => domain.eq_ignore_ascii_case(name),
            AorDomains::Patterns(p) => p.iter().any(|r| r.is_match(domain)),
        };
        if ok {
            Ok(())
        } else {
            Err(Denied(format!(
                "RFC 7904 §3.4: the AOR domain {domain:?} is not admitted by this overlay's sip:domain-restriction"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aor_domains_follow_rfc7904_section_3_4() {
        use crate::config::NamePatterns;
        // No element: anything that is an AOR.
        let any = AorDomains::new(None, "overlay.example");
        assert!(any.admits("alice@elsewhere.example").is_ok());
        assert!(any.admits("no-at-sign").is_err());
        // enable false (or absent): the overlay's own domain only, patterns ignored.
        let own = NamePatterns {
            enable: false,
            patterns: vec![".*".into()],
        };
        let own = AorDomains::new(Some(&own), "Overlay.Example");
        assert!(own.admits("alice@overlay.example").is_ok());
        assert!(own.admits("alice@OVERLAY.example").is_ok());
        assert!(own.admits("alice@other.example").is_err());
        // enable true: whole-domain matches of the patterns (the §3.4 examples).
        let pats = NamePatterns {
            enable: true,
            patterns: vec![
                r"dht\.example\.com".into(),
                r".*\.my\.example".into(),
                "(".into(),
            ],
        };
        let pats = AorDomains::new(Some(&pats), "x");
        assert!(pats.admits("bob@dht.example.com").is_ok());
        assert!(pats.admits("bob@DHT.example.com").is_ok());
        assert!(pats.admits("bob@a.my.example").is_ok());
        assert!(pats.admits("bob@dht.example.com.evil.org").is_err());
        assert!(pats.admits("bob@my.example").is_err());
        // enable true, no pattern: nothing.
        let none = NamePatterns {
            enable: true,
            patterns: vec![],
        };
        assert!(AorDomains::new(Some(&none), "x").admits("a@x").is_err());
    }

    #[test]
    fn node_multiple_names_are_one_and_four_byte_forms() {
        let n = NodeId::from_u128(7);
        let names = node_multiple_names(&n, 3);
        assert_eq!(names[0].len(), 17);
        assert_eq!(names[0][16], 3);
        assert_eq!(&names[1][16..], &[0, 0, 0, 3]);
        assert_eq!(node_multiple_name(&n, 3), names[0]);
        // Past 255 only the four-byte form exists (a byte would wrap).
        assert_eq!(node_multiple_names(&n, 256).len(), 1);
        assert_eq!(&node_multiple_name(&n, 256)[16..], &[0, 0, 1, 0]);
    }

    #[test]
    fn the_cache_finds_the_same_i_as_the_linear_search() {
        let hash = |name: &[u8]| crate::identity::chord_resource_id(name);
        let n = NodeId::from_u128(0x1234);
        let mut cache = NodeMultipleCache::default();
        for (max, i) in [(20u32, 20u32), (1000, 1), (1000, 999), (1000, 300)] {
            let r = hash(&node_multiple_name(&n, i));
            assert_eq!(cache.find_i(&n, max, &r, &hash), Some(i), "max {max} i {i}");
            let four = node_multiple_names(&n, i).pop().unwrap();
            assert_eq!(cache.find_i(&n, max, &hash(&four), &hash), Some(i));
        }
        let r = hash(&node_multiple_name(&n, 1001));
        assert_eq!(cache.find_i(&n, 1000, &r, &hash), None);
        let other = NodeId::from_u128(0x9999);
        let r = hash(&node_multiple_name(&other, 5));
        assert_eq!(cache.find_i(&n, 1000, &r, &hash), None);
    }
}
