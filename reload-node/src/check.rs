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

use crate::config::{ConfigDocument, ConfigProblem, Configuration, OverlayConfig, sequence_is_newer};
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
        self_signed: config.self_signed_permitted.as_ref().and_then(|d| d.identity_digest()),
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
        notes.push("--no-verify: grammar only; signatures, expiry and semantics not checked".into());
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
    for s in &c.signatures {
        match &s.security_block {
            Ok(sb) => match verifier.verify_blob(blob, sb, &signers, opts.now) {
                Ok(signer) => {
                    good = true;
                    notes.push(format!("{name}: configuration signed by configuration-signer {}", signer.node_id));
                }
                Err(e) => why.push((s.line, e.to_string())),
            },
            // Already reported by semantic_problems.
            Err(_) => {}
        }
    }
    // A missing or undecodable signature is reported by semantic_problems.
    if !good {
        for (line, e) in why {
            problems.push(problem("signature", line, format!("configuration signature rejected: {e}")));
        }
    }
    // Kind blocks: signed by a kind-signer of this (the new current) configuration,
    // whose own signature covers the kind-signer list (§11.1).
    let mut kind_verifier = Verifier::new(trust_policy(&c.config), 64);
    let kind_signers = node_ids(&c.config.kind_signers);
    for k in &c.config.kinds {
        let Some(sig) = &k.signature else { continue };
        let Ok(sb) = &sig.security_block else { continue };
        if let Err(e) = kind_verifier.verify_blob(k.signed_bytes(doc), sb, &kind_signers, opts.now) {
            problems.push(problem("kind-signature", sig.line, format!("kind-signature rejected: {e}")));
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
