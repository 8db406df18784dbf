//! The overlay a node belongs to, as its configuration document defines it (RFC 6940
//! §11.1): the one object that message handling, signature checks and links read their
//! overlay-wide values and trust from.
//!
//! An [`Overlay`] is immutable and shared (`Arc`). A configuration pushed by ConfigUpdate
//! (§6.5.4) replaces it as a whole; every value derived from the configuration (overlay
//! hash, codec options, trust policy, request lifetime) is computed here, once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reload_wire::DecodeOptions;

use crate::config::{KindDefinition, OverlayConfig};
use crate::identity::{TrustPolicy, overlay_hash};
use reload_wire::storage::{DataModel, KindId};

/// Transmissions of a request before it fails (RFC 6940 §6.2.1: "up to 4 times, for a
/// total of 5 messages").
pub const MAX_TRANSMISSIONS: u32 = 5;

/// An overlay configuration in force, with the values derived from it.
#[derive(Debug)]
pub struct Overlay {
    config: OverlayConfig,
    /// The signed document it came from, when known (sent to peers whose configuration
    /// is older, §6.3.2.1; cut into kind blocks for ConfigUpdate, §6.5.4.1).
    document: Option<Bytes>,
    hash: u32,
    decode: DecodeOptions,
    trust: Arc<TrustPolicy>,
    /// The Kinds of `required-kinds` whose data model this node implements, by Kind-ID.
    kinds: HashMap<KindId, (DataModel, usize)>,
    /// The AOR domains SIP-REGISTRATION values may be stored for (RFC 7904 §3.4).
    sip_domains: crate::storage::policy::AorDomains,
}

impl Overlay {
    /// The overlay `config` defines; `document` is its signed text, when there is one.
    pub fn new(config: OverlayConfig, document: Option<Bytes>) -> Arc<Overlay> {
        let kinds = config
            .kinds
            .iter()
            .enumerate()
            .filter_map(|(i, k)| Some((k.kind_id()?, (k.data_model.wire()?, i))))
            .collect();
        let sip_domains = crate::storage::policy::AorDomains::new(
            config.domain_restriction(),
            &config.instance_name,
        );
        Arc::new(Overlay {
            kinds,
            sip_domains,
            hash: overlay_hash(&config.instance_name),
            decode: config.decode_options(),
            trust: Arc::new(crate::check::trust_policy(&config)),
            config,
            document,
        })
    }

    pub fn config(&self) -> &OverlayConfig {
        &self.config
    }

    pub fn document(&self) -> Option<&Bytes> {
        self.document.as_ref()
    }

    /// The overlay's name (`instance-name`).
    pub fn name(&self) -> &str {
        &self.config.instance_name
    }

    /// The forwarding header's `overlay` field (§6.3.2).
    pub fn hash(&self) -> u32 {
        self.hash
    }

    /// The configuration's `sequence` (§6.3.2.1).
    pub fn sequence(&self) -> u16 {
        self.config.sequence
    }

    /// `initial-ttl` (§11.1).
    pub fn initial_ttl(&self) -> u8 {
        self.config.initial_ttl
    }

    /// `overlay-reliability-timer` (§6.2.1, §11.1).
    pub fn reliability_timer(&self) -> Duration {
        self.config.overlay_reliability_timer
    }

    /// The maximum request lifetime (§3): reliability timer × transmissions, 15 s by
    /// default.
    pub fn request_lifetime(&self) -> Duration {
        self.config.overlay_reliability_timer * MAX_TRANSMISSIONS
    }

    /// Codec options: Node-ID length, max-message-size, Kind data models.
    pub fn decode(&self) -> &DecodeOptions {
        &self.decode
    }

    /// `max-message-size` (§11.1).
    pub fn max_message_size(&self) -> usize {
        self.decode.max_message_size()
    }

    /// `node-id-length` (§11.1).
    pub fn node_id_len(&self) -> usize {
        self.decode.node_id_len()
    }

    /// A Kind of the configuration this node can store (§7.4.1.1 "known and supported"):
    /// its definition and data model. `None` for Kinds the configuration does not define
    /// and for data models other than the three of §7.2.
    pub fn kind(&self, id: KindId) -> Option<(&KindDefinition, DataModel)> {
        let (model, i) = self.kinds.get(&id)?;
        Some((self.config.kinds.get(*i)?, *model))
    }

    /// The AOR domains a SIP-REGISTRATION may be stored for (RFC 7904 §3.4).
    pub fn sip_domains(&self) -> &crate::storage::policy::AorDomains {
        &self.sip_domains
    }

    /// Root-certs, bad-nodes, self-signed policy (§11.1, §11.3).
    pub fn trust(&self) -> &Arc<TrustPolicy> {
        &self.trust
    }
}
