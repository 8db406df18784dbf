//! A new overlay configuration (RFC 6940 §6.5.4, §11.1): verified, then put in force as a
//! whole — message handling, signature checks and every link read the one new
//! [`Overlay`]; links whose peers it refuses are closed. Kind definitions travel between
//! peers too (§6.5.4.1, §7.4.1.2).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use reload_wire::body::MessageBody;
use reload_wire::link::ConfigUpdateReq;
use reload_wire::message::{ErrorCode, ErrorResponse};
use reload_wire::storage::{KindId, UnknownKinds};
use reload_wire::{Destination, NodeId, Wire};

use super::{Event, Node, Purpose};
use crate::check::{CheckOptions, check_document, config_change};
use crate::config::{KindDefinition, OverlayConfig};
use crate::overlay::Overlay;
use crate::sign::Verifier;

fn forbidden(why: String) -> ErrorResponse {
    ErrorResponse::new(ErrorCode::FORBIDDEN, why)
}

impl Node {
    /// ConfigUpdate (§6.5.4.2): a configuration is processed only if its sequence is
    /// newer and it is signed by a configuration-signer of the configuration in force;
    /// kind descriptions only if signed by a kind-signer of it, and not conflicting.
    pub(super) fn on_config_update(
        &mut self,
        now: Instant,
        body: ConfigUpdateReq,
    ) -> Result<(), ErrorResponse> {
        match body {
            ConfigUpdateReq::Config(data) => self.on_new_configuration(now, data),
            ConfigUpdateReq::Kinds(blocks) => self.on_kind_blocks(now, blocks),
            ConfigUpdateReq::Unknown { .. } => Err(ErrorResponse::new(
                ErrorCode::INVALID_MESSAGE,
                "unknown ConfigUpdate type",
            )),
        }
    }

    fn on_new_configuration(&mut self, now: Instant, data: Bytes) -> Result<(), ErrorResponse> {
        let current = self.overlay.config().clone();
        let wall = self.wall(now);
        let report = check_document(
            &data,
            &CheckOptions {
                verify: true,
                previous: Some(current.clone()),
                now: wall,
            },
        );
        if !report.is_clean() {
            let why: Vec<String> = report
                .problems
                .iter()
                .take(3)
                .map(|p| p.to_string())
                .collect();
            return Err(forbidden(format!(
                "configuration refused: {}",
                why.join("; ")
            )));
        }
        let Some(doc) = report.document else {
            return Err(forbidden("configuration refused".into()));
        };
        let Some(index) = doc
            .configurations
            .iter()
            .position(|x| x.config.instance_name == current.instance_name)
        else {
            return Err(forbidden(format!(
                "no configuration for overlay {}",
                current.instance_name
            )));
        };
        let config = doc.configurations[index].config.clone();
        let change = config_change(&current, &doc, index, wall);
        let sequence = config.sequence;
        self.kind_blocks.clear();
        self.put_in_force(now, Overlay::new(config, Some(data.clone())));
        self.events.push_back(Event::ConfigurationChanged {
            sequence,
            rejoin_because: change.rejoin_because,
            dropped_kinds: change.dropped_kinds,
            document: data,
        });
        Ok(())
    }

    fn on_kind_blocks(&mut self, now: Instant, blocks: Vec<Bytes>) -> Result<(), ErrorResponse> {
        let current = self.overlay.config();
        let mut updated = current.clone();
        let signers: Vec<NodeId> = current
            .kind_signers
            .iter()
            .filter_map(|b| NodeId::from_slice(b))
            .collect();
        let mut v = Verifier::new(self.overlay.trust().clone(), 16);
        let wall = self.wall(now);
        let mut accepted = Vec::new();
        for raw in blocks {
            let text = std::str::from_utf8(&raw[..])
                .map_err(|_| forbidden("kind description is not UTF-8".into()))?;
            let block = KindDefinition::parse_kind_block(text).map_err(|p| {
                forbidden(format!(
                    "kind description refused: {}",
                    p.first().map(|p| p.to_string()).unwrap_or_default()
                ))
            })?;
            let sb = block
                .kind
                .signature
                .as_ref()
                .and_then(|s| s.security_block.as_ref().ok())
                .ok_or_else(|| forbidden("kind description without a kind-signature".into()))?;
            v.verify_blob(block.signed_bytes(), sb, &signers, wall)
                .map_err(|e| forbidden(format!("kind-signature refused: {e}")))?;
            let id = block.kind.kind_id();
            // §6.5.4.2: a Kind update that conflicts with a Kind we know is refused. We take
            // any difference as a conflict: a Kind block by ConfigUpdate teaches a Kind to a
            // node that lacks it (§7.4.1.2); changing a known Kind takes a new configuration.
            // So an older, validly signed block cannot downgrade a Kind, and a kind-signer's
            // renewed certificate (§11.1 names signers by Node-ID) does not matter.
            if let Some(known) = updated.kinds.iter().find(|k| k.kind_id() == id) {
                let unsigned = |k: &KindDefinition| KindDefinition {
                    signature: None,
                    ..k.clone()
                };
                if unsigned(known) == unsigned(&block.kind) {
                    continue;
                }
                return Err(forbidden(format!(
                    "Kind {} is known with another definition; a new configuration changes it",
                    id.map(|k| k.to_string()).unwrap_or_default()
                )));
            }
            updated.kinds.retain(|k| k.kind_id() != id);
            updated.kinds.push(block.kind);
            if let Some(id) = id {
                accepted.push((id, raw.clone()));
            }
        }
        self.kind_blocks.extend(accepted);
        let document = self.overlay.document().cloned();
        self.put_in_force(now, Overlay::new(updated, document));
        Ok(())
    }

    /// Puts a configuration (already verified by the caller) and its signed document in
    /// force.
    pub fn set_configuration(&mut self, now: Instant, config: OverlayConfig, document: Bytes) {
        self.put_in_force(now, Overlay::new(config, Some(document)));
        self.drain_topology(now);
    }

    /// Everything reads the new overlay from now on: signature checks, new links, the
    /// limits of existing links; links whose peers it refuses are closed.
    fn put_in_force(&mut self, now: Instant, overlay: Arc<Overlay>) {
        self.overlay = overlay;
        self.verifier.set_trust(self.overlay.trust().clone());
        self.factory.reconfigure(&self.overlay);
        let lifetime = self.overlay.request_lifetime();
        self.answers.set_lifetime(lifetime);
        self.reassembly.set_lifetime(lifetime);
        self.recheck_links(now);
        // Values of Kinds the configuration no longer defines are not kept (§7.4.1.1: a
        // node stores only Kinds it knows and supports).
        for kind in self.storage.kinds() {
            if self.overlay.kind(kind).is_some() {
                continue;
            }
            match self.storage.remove_kind(kind) {
                Ok(n) => {
                    tracing::info!(%kind, %n, "values of a Kind the configuration dropped removed")
                }
                Err(e) => tracing::warn!(%kind, "could not remove values of a dropped Kind: {e}"),
            }
        }
    }

    /// The kind-block of `kind` to send in a ConfigUpdate (§6.5.4.1): as received by
    /// ConfigUpdate, or cut from the configuration document (the kind element exactly as
    /// signed, and its kind-signature).
    fn kind_block(&self, kind: KindId) -> Option<Bytes> {
        if let Some(b) = self.kind_blocks.get(&kind) {
            return Some(b.clone());
        }
        let c = self.overlay.config();
        let doc = std::str::from_utf8(self.overlay.document()?).ok()?;
        let k = c.kinds.iter().find(|k| k.kind_id() == Some(kind))?;
        let text = std::str::from_utf8(k.signed_bytes_in(doc)).ok()?;
        if text.is_empty() {
            return None;
        }
        k.block_xml_for_update(text).map(Bytes::from)
    }

    /// A peer answered Error_Unknown_Kind (§7.4.1.2): it "MUST" get a ConfigUpdate with
    /// the definitions of the Kinds it lacks that our configuration defines.
    pub(super) fn offer_kinds(&mut self, now: Instant, peer: NodeId, error_info: &Bytes) {
        let Ok(unknown) = UnknownKinds::decode(error_info, self.overlay.decode()) else {
            return;
        };
        let lifetime = self.overlay.request_lifetime();
        self.kinds_offered
            .retain(|_, t| now.saturating_duration_since(*t) < lifetime);
        let mut blocks = Vec::new();
        for kind in unknown.unknown_kinds {
            if self.kinds_offered.len() >= 4096 || self.kinds_offered.contains_key(&(peer, kind)) {
                continue;
            }
            match self.kind_block(kind) {
                Some(b) => {
                    self.kinds_offered.insert((peer, kind), now);
                    blocks.push(b);
                }
                None => tracing::debug!(%kind, %peer, "peer lacks a Kind we cannot describe"),
            }
        }
        if blocks.is_empty() {
            return;
        }
        tracing::info!(%peer, kinds = blocks.len(), "sending Kind definitions (ConfigUpdate)");
        let body = MessageBody::ConfigUpdateReq(ConfigUpdateReq::Kinds(blocks));
        let _ = self.request(
            now,
            vec![Destination::Node(peer)],
            body,
            Purpose::Notification,
        );
    }
}
