//! The complete check of a configuration document (RFC 6940 §11.1): grammar, every
//! defect found without cryptography, and — unless told not to — the configuration and
//! kind-block signatures and the sequence rule. Used by `reload-node config check` and by
//! the node when a new configuration arrives (ConfigUpdate, §6.5.4.2).
//!
//! Where trust comes from: a configuration MUST be signed by a configuration-signer of the
//! configuration already in use (§11.1). When there is one (`previous`), its
//! configuration-signers, root-certs and bad-nodes decide. For the very first document a
//! node sees there is no previous configuration: trust then rests on how the document was
//! obtained — the enrollment server's HTTPS (certificate matching the overlay name, §11.2)
//! or a signer pinned by fingerprint (`reload-node enroll --config-signer-sha256`) — and
//! the document is checked against its own signer list and roots; the report says so.

use std::time::SystemTime;

use time::OffsetDateTime;

use crate::config::{
    ConfigDocument, ConfigProblem, Configuration, OverlayConfig, sequence_is_newer,
};
use crate::identity::TrustPolicy;
use crate::sign::Verifier;
use reload_wire::NodeId;

/// What to check beyond the grammar.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Verify signatures and sequence (false = `--no-verify`: grammar only).
    pub verify: bool,
    /// The configuration in use, whose signers must have signed the new one.
    pub previous: Option<OverlayConfig>,
    pub now: SystemTime,
}

/// The outcome: the parsed document (when the grammar allowed), every problem, and notes
/// on what trust the verdict rests on.
#[derive(Debug)]
pub struct CheckReport {
    pub document: Option<ConfigDocument>,
    pub problems: Vec<ConfigProblem>,
    pub notes: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn node_ids(raw: &[Vec<u8>]) -> Vec<NodeId> {
    raw.iter().filter_map(|b| NodeId::from_slice(b)).collect()
}

/// The trust policy a configuration defines for its overlay.
pub fn trust_policy(config: &OverlayConfig) -> TrustPolicy {
    TrustPolicy {
        overlay: config.instance_name.clone(),
        node_id_len: config.node_id_length,
        roots: config.root_certs.clone(),
        bad_nodes: node_ids(&config.bad_nodes),
        self_signed: config
            .self_signed_permitted
            .as_ref()
            .and_then(|d| d.identity_digest()),
    }
}

/// Checks a document completely.
pub fn check_document(xml: &[u8], opts: &CheckOptions) -> CheckReport {
    let doc = match ConfigDocument::parse_bytes(xml) {
        Ok(d) => d,
        Err(problems) => {
            return CheckReport {
                document: None,
                problems,
                notes: vec![],
            };
        }
    };
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    if opts.verify {
        problems.extend(doc.semantic_problems(OffsetDateTime::from(opts.now)));
        for c in &doc.configurations {
            problems.extend(verify_configuration(&doc, c, opts, &mut notes));
        }
    } else {
        notes
            .push("--no-verify: grammar only; signatures, expiry and semantics not checked".into());
    }
    problems.sort_by_key(|p| p.line);
    problems.dedup();
    CheckReport {
        document: Some(doc),
        problems,
        notes,
    }
}

/// Signature and sequence checks of one configuration element and its kind blocks.
fn verify_configuration(
    doc: &ConfigDocument,
    c: &Configuration,
    opts: &CheckOptions,
    notes: &mut Vec<String>,
) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let name = &c.config.instance_name;
    let trust_config = match &opts.previous {
        Some(prev) if prev.instance_name == *name => {
            if !sequence_is_newer(c.config.sequence, prev.sequence) {
                problems.push(problem(
                    "configuration",
                    c.line,
                    format!(
                        "sequence {} is not newer than the configuration in use ({}) (RFC 6940 §6.3.2.1, §6.5.4.2)",
                        c.config.sequence, prev.sequence
                    ),
                ));
            }
            prev
        }
        _ => {
            notes.push(format!(
                "{name}: no configuration in use to compare with; checked against the document's own \
                 configuration-signer list and root-certs (trust in a first document comes from the \
                 enrollment server's HTTPS or a pinned signer)"
            ));
            &c.config
        }
    };
    let mut verifier = Verifier::new(trust_policy(trust_config), 64);
    let signers = node_ids(&trust_config.configuration_signers);
    let blob = c.signed_bytes(doc);
    let mut good = false;
    let mut why = Vec::new();
    // An undecodable signature element is reported by semantic_problems.
    for (s, sb) in c
        .signatures
        .iter()
        .filter_map(|s| Some((s, s.security_block.as_ref().ok()?)))
    {
        match verifier.verify_blob(blob, sb, &signers, opts.now) {
            Ok(signer) => {
                good = true;
                notes.push(format!(
                    "{name}: configuration signed by configuration-signer {}",
                    signer.node_id
                ));
            }
            Err(e) => why.push((s.line, e.to_string())),
        }
    }
    // A missing or undecodable signature is reported by semantic_problems.
    if !good {
        for (line, e) in why {
            problems.push(problem(
                "signature",
                line,
                format!("configuration signature rejected: {e}"),
            ));
        }
    }
    // Kind blocks: signed by a kind-signer of this (the new current) configuration,
    // whose own signature covers the kind-signer list (§11.1).
    let mut kind_verifier = Verifier::new(trust_policy(&c.config), 64);
    let kind_signers = node_ids(&c.config.kind_signers);
    for k in &c.config.kinds {
        let Some(sig) = &k.signature else { continue };
        let Ok(sb) = &sig.security_block else {
            continue;
        };
        if let Err(e) = kind_verifier.verify_blob(k.signed_bytes(doc), sb, &kind_signers, opts.now)
        {
            problems.push(problem(
                "kind-signature",
                sig.line,
                format!("kind-signature rejected: {e}"),
            ));
        }
    }
    problems
}

fn problem(element: &str, line: u32, message: String) -> ConfigProblem {
    ConfigProblem {
        element: element.into(),
        line,
        message,
    }
}

/// Produces a signed configuration document (RFC 6940 §11.1): each kind without a
/// signature is signed by `kind_signer`, then the configuration element by
/// `config_signer`. Both must be listed in the configuration (kind-signer,
/// configuration-signer) for receivers to accept it.
pub fn signed_document(
    config: &mut OverlayConfig,
    config_signer: &crate::sign::Credentials,
    kind_signer: &crate::sign::Credentials,
) -> Result<String, crate::sign::SignError> {
    use crate::config::SignatureElement;
    use crate::sign::{SignError, sign_blob};
    let enc = |e: reload_wire::EncodeError| SignError::Encode(e.to_string());
    for k in config.kinds.iter_mut().filter(|k| k.signature.is_none()) {
        let sb = sign_blob(kind_signer, k.to_xml().as_bytes())?;
        k.signature = Some(SignatureElement::from_security_block(&sb).map_err(enc)?);
    }
    let xml = config.to_xml();
    let sb = sign_blob(config_signer, xml.as_bytes())?;
    let sig = SignatureElement::from_security_block(&sb).map_err(enc)?;
    Ok(ConfigDocument::assemble(&[(xml, vec![sig.value])]))
}

/// What a node must do when a new configuration replaces the one in use (RFC 6940 §11.1:
/// "it MUST change its configuration to meet the new requirements … exit the DHT and
/// rejoin … If any Kind data was signed by a node that is no longer allowed to sign
/// Kinds, that Kind MUST be discarded along with any stored information of that Kind").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// Settings that cannot change under a running peer; non-empty = leave and rejoin.
    pub rejoin_because: Vec<&'static str>,
    /// Kinds to discard with their stored data: no longer defined, or their
    /// kind-signature no longer verifies against the new kind-signers.
    pub dropped_kinds: Vec<reload_wire::storage::KindId>,
    /// Kinds whose definition (limits, policy, model) changed: the new values apply.
    pub changed_kinds: Vec<reload_wire::storage::KindId>,
}

/// Compares the configuration in use with `new` (configuration `index` of `new_doc`).
pub fn config_change(
    old: &OverlayConfig,
    new_doc: &ConfigDocument,
    index: usize,
    now: SystemTime,
) -> ConfigChange {
    let mut change = ConfigChange::default();
    let Some(new_c) = new_doc.configurations.get(index) else {
        return change;
    };
    let new = &new_c.config;
    let checks: [(&'static str, bool); 8] = [
        (
            "topology-plugin",
            old.topology_plugin != new.topology_plugin,
        ),
        ("node-id-length", old.node_id_length != new.node_id_length),
        (
            "overlay-link-protocol",
            old.overlay_link_protocols != new.overlay_link_protocols,
        ),
        ("no-ice", old.no_ice != new.no_ice),
        ("root-cert", old.root_certs != new.root_certs),
        ("shared-secret", old.shared_secret != new.shared_secret),
        (
            "self-signed-permitted",
            old.self_signed_permitted != new.self_signed_permitted,
        ),
        ("instance-name", old.instance_name != new.instance_name),
    ];
    change.rejoin_because = checks.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect();
    let mut verifier = Verifier::new(trust_policy(new), 64);
    let signers = node_ids(&new.kind_signers);
    for k in &new.kinds {
        let Some(id) = k.kind_id() else { continue };
        let verified = k
            .signature
            .as_ref()
            .and_then(|s| s.security_block.as_ref().ok())
            .is_some_and(|sb| {
                verifier
                    .verify_blob(k.signed_bytes(new_doc), sb, &signers, now)
                    .is_ok()
            });
        if !verified {
            change.dropped_kinds.push(id);
        } else if let Some(o) = old.kinds.iter().find(|o| o.kind_id() == Some(id)) {
            // Compare the definitions, not their (possibly randomized) signatures.
            let unsigned = |k: &crate::config::KindDefinition| {
                let mut k = k.clone();
                k.signature = None;
                k
            };
            if unsigned(o) != unsigned(k) {
                change.changed_kinds.push(id);
            }
        }
    }
    for id in old.kinds.iter().filter_map(|o| o.kind_id()) {
        if !new.kinds.iter().any(|k| k.kind_id() == Some(id)) && !change.dropped_kinds.contains(&id)
        {
            change.dropped_kinds.push(id);
        }
    }
    change
}
