//! The SIP-REGISTRATION Kind (RFC 7904 §3, §7) on the node's client API: registering a
//! peer as the route to its user's AOR, removing it, and resolving an AOR to the
//! destination lists to AppAttach to (§4.2).

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use reload_node::client::{NodeHandle, OpError};
use reload_proto::node::everything;
use reload_wire::ext::sip::SipRegistration;
use reload_wire::storage::{DataModel, DataValue, DictionaryEntry, KindId, StoredDataValue};
use reload_wire::{DecodeOptions, Destination, NodeId, Wire};

use super::aor;

/// SIP-REGISTRATION (RFC 7904 §9.1): dictionary keyed by the storing peer's Node-ID,
/// USER-NODE-MATCH.
pub const KIND: KindId = KindId::SIP_REGISTRATION;
/// AOR indirections followed from the AOR asked for (RFC 7904 §4.2 step 2 and §8.2.1:
/// "throttle at some reasonable number").
pub const MAX_DEPTH: usize = 4;
/// AORs fetched while resolving one (indirections, breadth first).
pub const MAX_FETCHES: usize = 16;
/// Destination lists one AOR resolves to (forks).
pub const MAX_TARGETS: usize = 16;

/// One place an AOR can be reached: a destination list to AppAttach along (§5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub destinations: Vec<Destination>,
    /// The registrant's contact predicate (RFC 3840), e.g. `(sip.schemes=SIPS)`.
    pub contact_prefs: String,
    /// The AOR whose registration named it (the one asked for, or an indirection).
    pub aor: String,
}

impl Target {
    /// Whether the callee prefers SIPS (§5.1: the caller SHOULD follow it).
    pub fn wants_sips(&self) -> bool {
        let p = self.contact_prefs.to_ascii_lowercase().replace(' ', "");
        p.contains("sip.schemes=sips") && !p.contains("sip.schemes=sip)")
    }
}

/// Why an AOR did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Nothing is registered (or every registration is removed or unusable).
    #[error("no registration for {0}")]
    NotFound(String),
    /// The overlay did not answer.
    #[error("the overlay could not be asked about {aor}: {why}")]
    Overlay { aor: String, why: String },
}

/// What a lookup fetches (RFC 7904 §4.2 step 1): every SIP-REGISTRATION entry at the
/// AOR's Resource-ID — a dictionary specifier naming no keys (the SHOULD NOT of L623-624).
pub fn lookup_specifier() -> reload_wire::storage::StoredDataSpecifier {
    everything(KIND, DataModel::Dictionary)
}

fn overlay_error(aor: &str, e: OpError) -> LookupError {
    LookupError::Overlay {
        aor: aor.to_string(),
        why: e.to_string(),
    }
}

/// Stores the registration of `node_id` (this node) as a route to `aor` (RFC 7904 §3.2,
/// `sip_registration_route` with the one-entry destination list to this node), for
/// `lifetime` seconds. The AOR must be the node's user name (USER-NODE-MATCH, §3.3).
pub async fn register(
    node: &NodeHandle,
    aor: &str,
    node_id: NodeId,
    contact_prefs: &str,
    lifetime: u32,
) -> Result<(), OpError> {
    let reg = SipRegistration::Route {
        contact_prefs: Bytes::copy_from_slice(contact_prefs.as_bytes()),
        destination_list: vec![Destination::Node(node_id)],
    };
    let value = reg
        .to_bytes()
        .map_err(|e| OpError::Unsendable(format!("SipRegistration: {e}")))?;
    store_entry(node, aor, node_id, true, value, lifetime).await
}

/// Stores `aor` → `target_aor` (`sip_registration_uri`, §3.1): calls to `aor` go to
/// `target_aor` (an AOR or a GRUU).
pub async fn register_uri(
    node: &NodeHandle,
    aor: &str,
    node_id: NodeId,
    target_aor: &str,
    lifetime: u32,
) -> Result<(), OpError> {
    let reg = SipRegistration::Uri(Bytes::copy_from_slice(target_aor.as_bytes()));
    let value = reg
        .to_bytes()
        .map_err(|e| OpError::Unsendable(format!("SipRegistration: {e}")))?;
    store_entry(node, aor, node_id, true, value, lifetime).await
}

/// Removes this node's registration for `aor` (`exists = false`, RFC 6940 §7.4.1.3;
/// `lifetime` SHOULD be at least what the value had left).
pub async fn deregister(
    node: &NodeHandle,
    aor: &str,
    node_id: NodeId,
    lifetime: u32,
) -> Result<(), OpError> {
    store_entry(node, aor, node_id, false, Bytes::new(), lifetime).await
}

async fn store_entry(
    node: &NodeHandle,
    aor: &str,
    node_id: NodeId,
    exists: bool,
    value: Bytes,
    lifetime: u32,
) -> Result<(), OpError> {
    let rid = node
        .resource_id(aor.as_bytes())
        .await
        .map_err(|_| OpError::Stopped)?;
    let entry = StoredDataValue::Dictionary(DictionaryEntry {
        key: Bytes::copy_from_slice(node_id.as_bytes()),
        value: DataValue { exists, value },
    });
    node.store(KIND, rid, vec![entry], lifetime.max(1))
        .await
        .map(|_| ())
}

/// Resolves `aor` (RFC 7904 §4.2): fetches its registrations (no dictionary keys named,
/// §4.2 SHOULD NOT), follows `sip_registration_uri` indirections breadth first (at most
/// [`MAX_DEPTH`] deep and [`MAX_FETCHES`] AORs, each once: loops end), takes GRUUs as
/// routes, and drops duplicate routes. Values whose signature or policy did not verify
/// were already dropped by the node (RFC 6940 §7.4.2.2).
pub async fn resolve(
    node: &NodeHandle,
    aor: &str,
    opts: &DecodeOptions,
) -> Result<Vec<Target>, LookupError> {
    let mut targets: Vec<Target> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue = VecDeque::from([(aor.to_string(), 0usize)]);
    seen.insert(aor.to_string());
    let mut fetches = 0;
    let mut first_error = None;
    while let Some((name, depth)) = queue.pop_front() {
        if fetches >= MAX_FETCHES || targets.len() >= MAX_TARGETS {
            break;
        }
        fetches += 1;
        let rid = node
            .resource_id(name.as_bytes())
            .await
            .map_err(|_| overlay_error(&name, OpError::Stopped))?;
        let fetched = match node.fetch(rid, vec![lookup_specifier()]).await {
            Ok(f) => f,
            Err(e) => {
                tracing::info!(aor = %name, "SIP lookup failed: {e}");
                first_error.get_or_insert(overlay_error(&name, e));
                continue;
            }
        };
        for data in fetched.kinds.iter().flat_map(|k| k.values.as_slice()) {
            let v = data.value.data_value();
            if !v.exists {
                continue;
            }
            let Ok(reg) = SipRegistration::decode(&v.value, opts) else {
                tracing::debug!(aor = %name, "a SIP registration that does not decode: skipped");
                continue;
            };
            match reg {
                SipRegistration::Route {
                    contact_prefs,
                    destination_list,
                } => push_target(
                    &mut targets,
                    Target {
                        destinations: destination_list,
                        contact_prefs: String::from_utf8_lossy(&contact_prefs).into_owned(),
                        aor: name.clone(),
                    },
                ),
                SipRegistration::Uri(uri) => {
                    let text = String::from_utf8_lossy(&uri).into_owned();
                    let with_scheme = if text.starts_with("sip:") || text.starts_with("sips:") {
                        text.clone()
                    } else {
                        format!("sip:{text}")
                    };
                    let Ok(parsed) = rsipstack::sip::Uri::try_from(with_scheme.as_str()) else {
                        continue;
                    };
                    if let Some(gr) = aor::gr_param(&parsed) {
                        // A GRUU: its destination list is the route (§6), no Fetch.
                        if let Some(d) = aor::gruu_destinations(&gr, opts) {
                            push_target(
                                &mut targets,
                                Target {
                                    destinations: d,
                                    contact_prefs: String::new(),
                                    aor: name.clone(),
                                },
                            );
                        }
                    } else if let Ok(next) = aor::aor_of_uri(&parsed)
                        && depth < MAX_DEPTH
                        && seen.insert(next.clone())
                    {
                        queue.push_back((next, depth + 1));
                    }
                }
                SipRegistration::Unknown { .. } => {}
            }
        }
    }
    if !targets.is_empty() {
        return Ok(targets);
    }
    Err(first_error.unwrap_or_else(|| LookupError::NotFound(aor.to_string())))
}

fn push_target(targets: &mut Vec<Target>, t: Target) {
    if targets.len() < MAX_TARGETS && !targets.iter().any(|o| o.destinations == t.destinations) {
        targets.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7904 §4.2 (SIP-USAGE.md checklist 11): the lookup's Fetch names no dictionary
    /// keys — Kind 1, generation 0, an empty key list.
    #[test]
    fn the_lookup_fetch_names_no_dictionary_keys() {
        let wire = lookup_specifier().to_bytes().unwrap();
        assert_eq!(
            wire.as_ref(),
            [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0].as_slice()
        );
    }

    /// RFC 7904 §5.1: the caller follows the callee's SIP/SIPS preference (RFC 3840
    /// feature predicate).
    #[test]
    fn contact_preferences_pick_sips_only_when_asked_for_alone() {
        let t = |p: &str| Target {
            destinations: vec![],
            contact_prefs: p.into(),
            aor: String::new(),
        };
        assert!(t("(sip.schemes=SIPS)").wants_sips());
        assert!(t("( sip.schemes = sips )").wants_sips());
        assert!(!t("").wants_sips());
        assert!(!t("(sip.schemes=SIP)").wants_sips());
        assert!(!t("(|(sip.schemes=SIPS)(sip.schemes=SIP))").wants_sips());
    }
}
