//! The overlay configuration document (RFC 6940 §11.1, media type
//! `application/p2p-overlay+xml`, extension `.relo`), parsed with `roxmltree`.
//!
//! - [`ConfigDocument::parse`] checks the document against the RELAX NG grammar of §11.1.1
//!   (plus the elements of the companion RFCs) and collects **all** grammar errors, each
//!   naming the element and its line;
//! - [`ConfigDocument::semantic_problems`] lists every defect that can be found without
//!   cryptography (expiry, certificates that are not certificates, Node-ID lengths, missing
//!   signatures, registry conflicts, MUSTs of §11.1 …);
//! - [`OverlayConfig`] is the one typed struct holding every tunable of an overlay, with the
//!   RFC default for each absent element; [`OverlayConfig::decode_options`] derives the
//!   wire codec's options from it;
//! - [`Configuration::signed_bytes`] and [`KindDefinition::signed_bytes`] give the exact
//!   byte ranges that the `signature` and `kind-signature` elements sign (§11.1); signing
//!   and verifying them is `crate::sign`'s business;
//! - [`OverlayConfig::to_xml`], [`KindDefinition::to_xml`] and [`ConfigDocument::assemble`]
//!   write documents back; `parse(to_xml(c))` gives `c` back.
//!
//! # How the parser reads the grammar
//!
//! - A `ConfigDocument::parse` error means the document does not follow the grammar, or a
//!   value cannot be held by its typed field (an `initial-ttl` of 300 does not fit the
//!   header's 8-bit TTL). Values that the grammar types as `xsd:string` but that the text
//!   gives a meaning (a Node-ID in hex, a bootstrap IP address) never fail the parse: a bad
//!   one is dropped from the typed field and reported by `semantic_problems`.
//! - Values are trimmed of XML white space before use, `xsd:string` ones included (the §11.1
//!   example writes `<shared-secret> password </shared-secret>` and
//!   `<kind-signer> 47112162e84c69ba </kind-signer>`); booleans take `true`/`false`/`1`/`0`
//!   (§11.1, XML Schema `xsd:boolean`).
//! - Documents larger than [`MAX_DOCUMENT_BYTES`], deeper than [`MAX_DEPTH`] elements or
//!   with more than [`MAX_NODES`] XML nodes are refused before any further work; DTDs are
//!   refused (no entity expansion).
//!
//! # Ambiguities of the texts, and how they are resolved (line numbers of `rfc6940.txt`)
//!
//! - `overlay-reliability-timer` is described (§11.1, L7189) but missing from the grammar
//!   (§11.1.1): accepted as a base element, `xsd:unsignedInt` milliseconds.
//! - The text names `topology-plug-in` (L7082), the grammar and example `topology-plugin`
//!   (L7380): both are read, `topology-plugin` is written.
//! - `enrollment-server`: the URL is "in a `url` element" (L7098), but directly in the
//!   element in the grammar (L7394) and the example: both are read.
//! - `xsd:string` values (`shared-secret`, signer IDs, `mandatory-extension`) are trimmed
//!   like every other value, as the example's padded values require (L6975ff.).
//! - `expiration` and `sequence` are optional in the grammar (L7367–L7368), yet every
//!   version MUST carry a sequence number (§6.3.2.1, L2694): a missing sequence reads as 0
//!   and is reported; a missing expiration means "does not expire".
//! - `signature` elements interleave freely in the grammar (L7372) but sign "the preceding
//!   configuration element" (L7059): each belongs to the configuration before it; one before
//!   any configuration is kept in [`ConfigDocument::stray_signatures`] and reported.
//! - `id=` Kinds are "allocated out of private space" (L7256): a non-registered id outside
//!   0xF0000001–0xFFFFFFFE (like the example's 2000) is reported, not refused.
//! - Registered Kinds: the document's `data-model`/`access-control` "MUST match … clients
//!   MUST ignore them in favor of the IANA versions" (L7290): the registry's values are
//!   used and a mismatch is reported.
//! - `self-signed-permitted` `false` is the same as absent (L7117): `None`.
//! - RFC 7904 §3.4: the text says `domain-restrictions` with an optional `enable`, the
//!   grammar `sip:domain-restriction` with a required one, among the kind parameters: both
//!   spellings are read, inside a `kind` or at configuration level; no `enable` = false.
//! - RFC 7374 §8: `redir:branching-factor` goes "inside the new REDIR kind element" (text)
//!   but is a configuration `parameter` in its grammar: both places are read; the REDIR
//!   kind's value wins ([`OverlayConfig::branching_factor`]).
//! - RFC 7851 §7 gives no grammar: `diag:diagnostic-kind kind="0x…"` with
//!   `diag:access-node` children, at configuration level.
//! - RFC 7263 §6, RFC 7363 §7, RFC 7374 §8 say their namespace "is added into the
//!   `<mandatory-extension>` element"; RFC 7851 §9.6 says MUST: using one of these without
//!   listing it is reported.
//! - CHORD-RELOAD (and CHORD-SELF-TUNING, RFC 7363) work on 128-bit identifiers (§10): a
//!   `node-id-length` other than 16 is reported as refused for them.
//! - Sequence numbers: see [`sequence_is_newer`].

mod datetime;
mod kinds;
mod parse;
mod semantic;
#[cfg(test)]
mod tests;
mod write;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use reload_wire::{DecodeOptions, SecurityBlock, Wire};
use time::OffsetDateTime;

pub use datetime::{format_datetime, parse_datetime};
pub use kinds::{
    AccessPolicy, KindDataModel, KindDefinition, KindRef, ParsedKindBlock, registered_kind,
    registered_max_node_multiple,
};

/// Namespace of the base elements (RFC 6940 §11.1).
pub const NS_BASE: &str = "urn:ietf:params:xml:ns:p2p:config-base";
/// Namespace of the CHORD-RELOAD elements (RFC 6940 §11.1.1).
pub const NS_CHORD: &str = "urn:ietf:params:xml:ns:p2p:config-chord";
/// SIP usage: AOR domain restriction (RFC 7904 §3.4, §9.2).
pub const NS_SIP: &str = "urn:ietf:params:xml:ns:p2p:config-base:sip";
/// ShaRe: variable resource names (RFC 8076 §5.3, §9.3).
pub const NS_SHARE: &str = "urn:ietf:params:xml:ns:p2p:config-base:share";
/// Direct / relay peer routing mode (RFC 7263 §6, §8.2; RFC 7264).
pub const NS_ROUTE_MODE: &str = "urn:ietf:params:xml:ns:p2p:route-mode";
/// Self-tuning Chord (RFC 7363 §7, §9.3).
pub const NS_SELF_TUNING: &str = "urn:ietf:params:xml:ns:p2p:self-tuning";
/// ReDiR service discovery (RFC 7374 §8, §10.2).
pub const NS_REDIR: &str = "urn:ietf:params:xml:ns:p2p:redir";
/// Overlay diagnostics (RFC 7851 §7, §9.6).
pub const NS_DIAGNOSTICS: &str = "urn:ietf:params:xml:ns:p2p:config-diagnostics";

/// The namespaces this implementation supports: a `mandatory-extension` naming any other
/// is a problem (§11.1: a joining node MUST support it).
pub const SUPPORTED_NAMESPACES: &[&str] = &[
    NS_BASE,
    NS_CHORD,
    NS_SIP,
    NS_SHARE,
    NS_ROUTE_MODE,
    NS_SELF_TUNING,
    NS_REDIR,
    NS_DIAGNOSTICS,
];

/// Largest document accepted; larger ones are refused before parsing.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;
/// Deepest element nesting accepted (a real document nests 6 deep).
pub const MAX_DEPTH: usize = 64;
/// Most XML nodes (elements, text, comments …) accepted.
pub const MAX_NODES: u32 = 200_000;

/// `topology-plugin` default (§11.1).
pub const DEFAULT_TOPOLOGY_PLUGIN: &str = "CHORD-RELOAD";
/// The self-tuning variant of Chord (RFC 7363 §9.2), also 128-bit.
pub const CHORD_SELF_TUNING: &str = "CHORD-SELF-TUNING";
/// `node-id-length` default, bytes (§11.1).
pub const DEFAULT_NODE_ID_LENGTH: usize = 16;
/// `bootstrap-node` `port` default (§11.1).
pub const DEFAULT_BOOTSTRAP_PORT: u16 = 6084;
/// `initial-ttl` default (§11.1).
pub const DEFAULT_INITIAL_TTL: u8 = 100;
/// `max-message-size` default, bytes (§11.1).
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 5000;
/// `turn-density` default (§11.1).
pub const DEFAULT_TURN_DENSITY: u32 = 1;
/// `overlay-reliability-timer` default (§11.1).
pub const DEFAULT_OVERLAY_RELIABILITY_TIMER: Duration = Duration::from_millis(3000);
/// `overlay-reliability-timer` floor: "MUST be at least 200 milliseconds" (§11.1).
pub const MIN_OVERLAY_RELIABILITY_TIMER: Duration = Duration::from_millis(200);
/// `chord-update-interval` default: "about every ten minutes" (§10.7.4.1).
pub const DEFAULT_CHORD_UPDATE_INTERVAL: Duration = Duration::from_secs(600);
/// `chord-ping-interval` default: 3600 s (§10.7.4.2).
pub const DEFAULT_CHORD_PING_INTERVAL: Duration = Duration::from_secs(3600);
/// `self-tuning:number-of-peers-to-probe` default (RFC 7363 §7).
pub const DEFAULT_PEERS_TO_PROBE: u32 = 4;
/// `redir:branching-factor` default (RFC 7374 §8).
pub const DEFAULT_REDIR_BRANCHING_FACTOR: u32 = 10;
/// `overlay-link-protocol` default: "TLS", meaning TLS and DTLS (§11.1, §14.11).
pub const DEFAULT_OVERLAY_LINK_PROTOCOL: &str = "TLS";

/// Digest of `self-signed-permitted` (§11.1, §11.3.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SelfSignedDigest {
    /// `sha1`.
    Sha1,
    /// `sha256`.
    Sha256,
    /// A digest extension (`self-signed-digest-type |= xsd:string`), not supported here.
    Other(String),
}

impl SelfSignedDigest {
    pub fn config_name(&self) -> &str {
        match self {
            SelfSignedDigest::Sha1 => "sha1",
            SelfSignedDigest::Sha256 => "sha256",
            SelfSignedDigest::Other(s) => s,
        }
    }

    pub fn from_config_name(s: &str) -> Self {
        match s {
            "sha1" => SelfSignedDigest::Sha1,
            "sha256" => SelfSignedDigest::Sha256,
            other => SelfSignedDigest::Other(other.to_string()),
        }
    }

    /// The digest as [`crate::identity`] computes self-signed Node-IDs with it.
    pub fn identity_digest(&self) -> Option<crate::identity::SelfSignedDigest> {
        match self {
            SelfSignedDigest::Sha1 => Some(crate::identity::SelfSignedDigest::Sha1),
            SelfSignedDigest::Sha256 => Some(crate::identity::SelfSignedDigest::Sha256),
            SelfSignedDigest::Other(_) => None,
        }
    }
}

/// Preferred routing mode (`route-mode:mode`, RFC 7263 §6).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteMode {
    /// Direct Response Routing (RFC 7263).
    Drr,
    /// Relay Peer Routing (RFC 7264).
    Rpr,
    /// Anything else (reported by `semantic_problems`).
    Other(String),
}

impl RouteMode {
    pub fn config_name(&self) -> &str {
        match self {
            RouteMode::Drr => "DRR",
            RouteMode::Rpr => "RPR",
            RouteMode::Other(s) => s,
        }
    }

    pub fn from_config_name(s: &str) -> Self {
        match s {
            "DRR" => RouteMode::Drr,
            "RPR" => RouteMode::Rpr,
            other => RouteMode::Other(other.to_string()),
        }
    }
}

/// A pattern list with an `enable` attribute: `sip:domain-restriction` (RFC 7904 §3.4) and
/// `share:variable-resource-names` (RFC 8076 §5.3). Patterns are POSIX extended regular
/// expressions, kept as text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NamePatterns {
    /// The `enable` attribute; absent means `false` (RFC 7904 §3.4, RFC 8076 §5.3).
    pub enable: bool,
    /// The `pattern` children, in order.
    pub patterns: Vec<String>,
}

/// Who may read one diagnostic Kind (RFC 7851 §7): `diagnostic-kind kind="0x…"` with
/// `access-node` children.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DiagnosticKindAccess {
    /// The `kind` attribute: a `DiagnosticKindId` (RFC 7851 §9.2), written in hexadecimal.
    pub kind: u16,
    /// The `access-node` Node-IDs, raw bytes from hex (lengths are checked by
    /// `semantic_problems`).
    pub access_nodes: Vec<Vec<u8>>,
}

/// A foreign-namespace element kept as it was (§11.1.1 `foreign-elements`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtensionElement {
    /// Namespace URI.
    pub namespace: String,
    /// Local name.
    pub name: String,
    /// The element's source text, made self-contained: the namespace declarations it
    /// relies on from its ancestors are added to its start tag (e.g.
    /// `<ext:example-extension xmlns:ext="urn:…"> foo </ext:example-extension>`), so it can
    /// be written into another document unchanged.
    pub xml: String,
}

/// A foreign-namespace attribute of `configuration` (§11.1.1 `foreign-attributes`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtensionAttribute {
    pub namespace: String,
    pub name: String,
    pub value: String,
}

/// A `signature` or `kind-signature` element (§11.1): a base64 SecurityBlock (§6.3.4).
///
/// Equality ignores [`SignatureElement::line`].
#[derive(Clone, Debug, Eq)]
pub struct SignatureElement {
    /// The `algorithm` attribute (`signature-algorithm-type`, e.g. `rsa-sha1`), if given.
    pub algorithm: Option<String>,
    /// The base64 text with white space removed.
    pub value: String,
    /// The base64-decoded text decoded with [`reload_wire::Wire::decode`]; the error text
    /// if either step fails.
    pub security_block: Result<SecurityBlock, String>,
    /// Line of the element (0 when not parsed from a document).
    pub line: u32,
}

impl PartialEq for SignatureElement {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm
            && self.value == other.value
            && self.security_block == other.security_block
    }
}

impl SignatureElement {
    /// Decodes base64 text (white space allowed, as `xsd:base64Binary`) into a
    /// SecurityBlock.
    pub fn from_base64(value: &str, algorithm: Option<String>) -> Self {
        let value: String = value.chars().filter(|c| !is_xml_space(*c)).collect();
        let security_block = decode_security_block(&value);
        SignatureElement {
            algorithm,
            value,
            security_block,
            line: 0,
        }
    }

    /// Encodes a SecurityBlock as a signature element.
    pub fn from_security_block(block: &SecurityBlock) -> Result<Self, reload_wire::EncodeError> {
        use base64::Engine as _;
        let bytes = block.to_bytes()?;
        Ok(SignatureElement {
            algorithm: None,
            value: base64::engine::general_purpose::STANDARD.encode(&bytes),
            security_block: Ok(block.clone()),
            line: 0,
        })
    }
}

fn decode_security_block(b64: &str) -> Result<SecurityBlock, String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("not base64: {e}"))?;
    SecurityBlock::decode(&Bytes::from(raw), &DecodeOptions::default())
        .map_err(|e| format!("not a SecurityBlock (RFC 6940 §6.3.4): {e}"))
}

/// A defect of a configuration document: the element, its line, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfigProblem {
    /// Element name as written in the document (`kind-signer`, `chord:chord-ping-interval`),
    /// or `document` for problems of the whole text.
    pub element: String,
    /// 1-based line; 0 when the configuration was not parsed from a document.
    pub line: u32,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(element: impl Into<String>, line: u32, message: impl Into<String>) -> Self {
        ConfigProblem {
            element: element.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: <{}>: {}",
            self.line, self.element, self.message
        )
    }
}

impl std::error::Error for ConfigProblem {}

/// Everything an overlay configures (RFC 6940 §11.1 and the companion RFCs): the single
/// source of every tunable. Absent elements hold the RFC default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayConfig {
    /// `instance-name` attribute: the overlay name (§11.1). Required.
    pub instance_name: String,
    /// `expiration` attribute (§11.1): RFC 3339, UTC. The grammar makes it optional
    /// (`attribute expiration { xsd:dateTime }?`); `None` = never expires.
    pub expiration: Option<OffsetDateTime>,
    /// `sequence` attribute (§11.1, §6.3.2.1): 0 to 65534. The grammar makes it optional;
    /// absent reads as 0 and is reported (§6.3.2.1: each version MUST contain one).
    pub sequence: u16,
    /// `topology-plugin` (§11.1). Default `CHORD-RELOAD`.
    pub topology_plugin: String,
    /// `node-id-length`, bytes (§11.1): 16 to 20. Default 16; CHORD-RELOAD needs 16 (§10).
    pub node_id_length: usize,
    /// `root-cert`* (§11.1): DER X.509v3 trust anchors, base64-decoded. Default none.
    pub root_certs: Vec<Bytes>,
    /// `enrollment-server`* (§11.1): `https:` URLs. Default none.
    pub enrollment_servers: Vec<String>,
    /// `self-signed-permitted` (§11.1, §11.3.1): `Some(digest)` when the element says
    /// `true`; `None` when absent (the default) or `false`.
    pub self_signed_permitted: Option<SelfSignedDigest>,
    /// `bootstrap-node`* (§11.1, §11.4): `address` and `port` (default 6084). Entries whose
    /// address does not parse are left out and reported.
    pub bootstrap_nodes: Vec<SocketAddr>,
    /// `turn-density` (§11.1, §9): reciprocal of the share of TURN-capable nodes; 0 = none.
    /// Default 1. The grammar types it `xsd:unsignedByte`.
    pub turn_density: u32,
    /// `clients-permitted` (§11.1). Default true.
    pub clients_permitted: bool,
    /// `no-ice` (§11.1): all nodes use No-ICE link protocols. Default false.
    pub no_ice: bool,
    /// `chord:chord-update-interval` (§11.1, §10.7.4.1), seconds in the document. Default
    /// 600 s ("about every ten minutes").
    pub chord_update_interval: Duration,
    /// `chord:chord-ping-interval` (§11.1, §10.7.4.2), seconds in the document. Default
    /// 3600 s.
    pub chord_ping_interval: Duration,
    /// `chord:chord-reactive` (§11.1, §10): reactive recovery. Default true.
    pub chord_reactive: bool,
    /// `shared-secret` (§11.1, §13.4): TLS-PSK / TLS-SRP secret. Default none.
    pub shared_secret: Option<String>,
    /// `max-message-size`, bytes (§11.1). Default 5000.
    pub max_message_size: u32,
    /// `initial-ttl` (§11.1, §6.3.2). Default 100.
    pub initial_ttl: u8,
    /// `overlay-reliability-timer` (§11.1), milliseconds in the document; at least 200 ms.
    /// Default 3000 ms. (Described in the text but missing from the grammar of §11.1.1;
    /// accepted in the base namespace.)
    pub overlay_reliability_timer: Duration,
    /// `overlay-link-protocol`* (§11.1, §14.11). Default `["TLS"]` when none is given; an
    /// empty vector is written as the default.
    pub overlay_link_protocols: Vec<String>,
    /// `kind-signer`* (§11.1): Node-IDs allowed to sign kind blocks, raw bytes from hex.
    pub kind_signers: Vec<Vec<u8>>,
    /// `configuration-signer`* (§11.1): Node-IDs allowed to sign the next configuration.
    pub configuration_signers: Vec<Vec<u8>>,
    /// `bad-node`* (§11.1): revoked Node-IDs.
    pub bad_nodes: Vec<Vec<u8>>,
    /// `mandatory-extension`* (§11.1): namespaces a joining node MUST support.
    pub mandatory_extensions: Vec<String>,
    /// `required-kinds`/`kind-block`* (§11.1): the Kinds members MUST support.
    pub kinds: Vec<KindDefinition>,
    /// `sip:domain-restriction` at configuration level (RFC 7904 §3.4; its grammar puts the
    /// element among the kind parameters, see [`KindDefinition::domain_restriction`];
    /// both places are accepted). `None` = accept any AOR.
    pub sip_domain_restriction: Option<NamePatterns>,
    /// `route-mode:mode` (RFC 7263 §6): preferred routing mode. Default none (SRR).
    pub route_mode: Option<RouteMode>,
    /// `self-tuning:number-of-peers-to-probe` (RFC 7363 §7). `None` = default 4.
    pub self_tuning_peers_to_probe: Option<u32>,
    /// `redir:branching-factor` at configuration level (RFC 7374 §8 grammar:
    /// `parameter &=`; its text puts it in the REDIR kind, see
    /// [`KindDefinition::redir_branching_factor`]). `None` = default 10.
    pub redir_branching_factor: Option<u32>,
    /// `diag:diagnostic-kind`* (RFC 7851 §7): who may read which diagnostic Kind.
    pub diagnostic_kinds: Vec<DiagnosticKindAccess>,
    /// Foreign-namespace attributes of `configuration` (§11.1.1), e.g. `ext:ext-example`.
    pub extension_attributes: Vec<ExtensionAttribute>,
    /// Every other foreign-namespace element of `configuration` (§11.1.1), kept.
    pub extensions: Vec<ExtensionElement>,
}

impl Default for OverlayConfig {
    /// An unnamed configuration with every RFC default.
    fn default() -> Self {
        OverlayConfig {
            instance_name: String::new(),
            expiration: None,
            sequence: 0,
            topology_plugin: DEFAULT_TOPOLOGY_PLUGIN.to_string(),
            node_id_length: DEFAULT_NODE_ID_LENGTH,
            root_certs: Vec::new(),
            enrollment_servers: Vec::new(),
            self_signed_permitted: None,
            bootstrap_nodes: Vec::new(),
            turn_density: DEFAULT_TURN_DENSITY,
            clients_permitted: true,
            no_ice: false,
            chord_update_interval: DEFAULT_CHORD_UPDATE_INTERVAL,
            chord_ping_interval: DEFAULT_CHORD_PING_INTERVAL,
            chord_reactive: true,
            shared_secret: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            initial_ttl: DEFAULT_INITIAL_TTL,
            overlay_reliability_timer: DEFAULT_OVERLAY_RELIABILITY_TIMER,
            overlay_link_protocols: vec![DEFAULT_OVERLAY_LINK_PROTOCOL.to_string()],
            kind_signers: Vec::new(),
            configuration_signers: Vec::new(),
            bad_nodes: Vec::new(),
            mandatory_extensions: Vec::new(),
            kinds: Vec::new(),
            sip_domain_restriction: None,
            route_mode: None,
            self_tuning_peers_to_probe: None,
            redir_branching_factor: None,
            diagnostic_kinds: Vec::new(),
            extension_attributes: Vec::new(),
            extensions: Vec::new(),
        }
    }
}

impl OverlayConfig {
    /// A configuration for `instance_name` with every RFC default.
    pub fn new(instance_name: impl Into<String>) -> Self {
        OverlayConfig {
            instance_name: instance_name.into(),
            ..OverlayConfig::default()
        }
    }

    /// Options for the wire codec: Node-ID length, max-message-size and the data model
    /// of every Kind (registered ones included). A node-id-length outside 16..=20 (which
    /// [`OverlayConfig::problems`] reports) falls back to 16.
    pub fn decode_options(&self) -> DecodeOptions {
        let max = usize::try_from(self.max_message_size).unwrap_or(usize::MAX);
        let mut opts = DecodeOptions::new(self.node_id_length, max)
            .unwrap_or_else(|_| DecodeOptions::default().with_max_message_size(max));
        for k in &self.kinds {
            if let (Some(id), Some(model)) = (k.kind_id(), k.data_model.wire()) {
                opts = opts.with_kind(id.0, model);
            }
        }
        opts
    }

    /// Whether the configuration has expired at `now` (§11.1 `expiration`).
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expiration.is_some_and(|e| e <= now)
    }

    /// The Kind with this Kind-ID (by `id=` or by registered `name=`).
    pub fn kind(&self, id: reload_wire::storage::KindId) -> Option<&KindDefinition> {
        self.kinds.iter().find(|k| k.kind_id() == Some(id))
    }

    /// Whether `node_id` is listed as `bad-node` (§11.1).
    pub fn is_bad_node(&self, node_id: &[u8]) -> bool {
        self.bad_nodes.iter().any(|b| b == node_id)
    }

    /// Whether a topology plug-in is Chord (fixed 128-bit Node-IDs, §10).
    pub fn is_chord(&self) -> bool {
        self.topology_plugin == DEFAULT_TOPOLOGY_PLUGIN || self.topology_plugin == CHORD_SELF_TUNING
    }

    /// `self-tuning:number-of-peers-to-probe`, or its default 4 (RFC 7363 §7).
    pub fn peers_to_probe(&self) -> u32 {
        self.self_tuning_peers_to_probe
            .unwrap_or(DEFAULT_PEERS_TO_PROBE)
    }

    /// The ReDiR branching factor (RFC 7374 §8): from the REDIR kind, else from the
    /// configuration level, else 10.
    pub fn branching_factor(&self) -> u32 {
        self.kind(reload_wire::storage::KindId::REDIR)
            .and_then(|k| k.redir_branching_factor)
            .or(self.redir_branching_factor)
            .unwrap_or(DEFAULT_REDIR_BRANCHING_FACTOR)
    }

    /// The SIP AOR domain restriction (RFC 7904 §3.4): from the SIP-REGISTRATION kind,
    /// else from the configuration level; `None` = accept any AOR.
    pub fn domain_restriction(&self) -> Option<&NamePatterns> {
        self.kind(reload_wire::storage::KindId::SIP_REGISTRATION)
            .and_then(|k| k.domain_restriction.as_ref())
            .or(self.sip_domain_restriction.as_ref())
    }

    /// Every defect [`ConfigDocument::semantic_problems`] would report for this
    /// configuration alone (no lines: they are 0), e.g. for one built in code.
    pub fn problems(&self, now: OffsetDateTime) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        semantic::check_config(self, &Lines::default(), 0, now, &mut out);
        out
    }
}

/// Lines of the elements behind the values of an [`OverlayConfig`], by element and index
/// of the value, for the problems `semantic_problems` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lines(BTreeMap<&'static str, Vec<u32>>);

impl Lines {
    pub(crate) fn push(&mut self, key: &'static str, line: u32) {
        self.0.entry(key).or_default().push(line);
    }

    pub(crate) fn get(&self, key: &'static str, index: usize) -> Option<u32> {
        self.0.get(key).and_then(|v| v.get(index)).copied()
    }
}

/// One `configuration` element with the `signature` elements that follow it (§11.1).
#[derive(Clone, Debug, PartialEq)]
pub struct Configuration {
    pub config: OverlayConfig,
    /// Bytes of the source that the signature signs: from the first `<` of
    /// `<configuration` to the last `>` of `</configuration>`, exactly (§11.1).
    pub signed_region: Range<usize>,
    /// The `signature` elements following the configuration, in order.
    pub signatures: Vec<SignatureElement>,
    /// Line of the `configuration` start tag.
    pub line: u32,
    /// Whether the `sequence` attribute was present.
    pub sequence_given: bool,
    pub(crate) lines: Lines,
    /// Problems found while parsing that are not grammar errors.
    pub(crate) deferred: Vec<ConfigProblem>,
}

impl Configuration {
    /// The exact bytes the configuration's signatures sign (§11.1).
    pub fn signed_bytes<'a>(&self, doc: &'a ConfigDocument) -> &'a [u8] {
        doc.source
            .as_bytes()
            .get(self.signed_region.clone())
            .unwrap_or(&[])
    }
}

/// A parsed configuration document: the `overlay` element (§11.1).
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigDocument {
    /// The document text, exactly as given (signed regions index into it).
    pub source: String,
    /// The `configuration` elements, in document order.
    pub configurations: Vec<Configuration>,
    /// `signature` elements before the first configuration: they sign nothing.
    pub stray_signatures: Vec<SignatureElement>,
    pub(crate) deferred: Vec<ConfigProblem>,
}

impl ConfigDocument {
    /// Parses a document, collecting every grammar error (with element and line).
    /// Documents over [`MAX_DOCUMENT_BYTES`] are refused unread.
    pub fn parse(xml: &str) -> Result<ConfigDocument, Vec<ConfigProblem>> {
        parse::parse_document(xml)
    }

    /// Parses bytes (e.g. a ConfigUpdate's `config_data`, §6.5.4.1): the size limit first,
    /// then UTF-8 (§11.1: the file MUST use UTF-8), then [`ConfigDocument::parse`].
    pub fn parse_bytes(bytes: &[u8]) -> Result<ConfigDocument, Vec<ConfigProblem>> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(vec![parse::too_large(bytes.len())]);
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Self::parse(s),
            Err(e) => {
                let good = bytes.get(..e.valid_up_to()).unwrap_or(&[]);
                let line = 1 + good.iter().filter(|b| **b == b'\n').count();
                Err(vec![ConfigProblem::new(
                    "document",
                    u32::try_from(line).unwrap_or(u32::MAX),
                    format!(
                        "not UTF-8 at byte {} (RFC 6940 §11.1: the file MUST use UTF-8)",
                        e.valid_up_to()
                    ),
                )])
            }
        }
    }

    /// The configuration for an overlay name.
    pub fn configuration(&self, instance_name: &str) -> Option<&Configuration> {
        self.configurations
            .iter()
            .find(|c| c.config.instance_name == instance_name)
    }

    /// Every defect found without cryptography, ordered by line. `now` decides expiry.
    pub fn semantic_problems(&self, now: OffsetDateTime) -> Vec<ConfigProblem> {
        semantic::document_problems(self, now)
    }

    /// Builds an `overlay` document from configuration elements (as
    /// [`OverlayConfig::to_xml`] writes them) each with its base64 signatures. Each
    /// configuration text is copied byte for byte, so the signed region of the parsed
    /// result is exactly that text.
    pub fn assemble(parts: &[(String, Vec<String>)]) -> String {
        write::assemble(parts)
    }
}

/// Configuration sequence comparison (RFC 6940 §6.3.2.1, §6.5.4.2): whether `new` is
/// later than `current`.
///
/// Sequence numbers run 0..=65534 and wrap modulo 65535; "greater than" is the TCP-style
/// serial-number comparison, i.e. `new` is newer when `(new - current) mod 65535` lies in
/// 1..=32767 (65535 being odd, no difference is ambiguous). 65535 is reserved: a
/// ConfigUpdate carrying it MUST be accepted whatever the receiver's sequence, so
/// `new == 65535` is always newer; a `current` of 65535 (a node that took such an update)
/// is older than anything. After 65534 comes 0 ([`next_sequence`]).
pub fn sequence_is_newer(new: u16, current: u16) -> bool {
    if new == u16::MAX || current == u16::MAX {
        return new != current || new == u16::MAX;
    }
    let d = (u32::from(new) + 65535 - u32::from(current)) % 65535;
    (1..=32767).contains(&d)
}

/// The sequence number of the configuration after `current` (§6.3.2.1: after 65534 comes
/// 0, skipping the reserved 65535).
pub fn next_sequence(current: u16) -> u16 {
    if current >= 65534 { 0 } else { current + 1 }
}

/// What the destination of a request does with its `configuration_sequence` (§6.3.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Equal to ours (or 65535 on a ConfigUpdate): process.
    Accept,
    /// Older than ours: answer Error_Config_Too_Old and send the sender a ConfigUpdate.
    TooOld,
    /// Newer than ours: answer Error_Config_Too_New.
    TooNew,
}

/// The §6.3.2.1 check of a received header's `configuration_sequence` against ours.
pub fn check_sequence(received: u16, own: u16, is_config_update: bool) -> SequenceCheck {
    if received == own || (is_config_update && received == u16::MAX) {
        SequenceCheck::Accept
    } else if sequence_is_newer(received, own) {
        SequenceCheck::TooNew
    } else {
        SequenceCheck::TooOld
    }
}

pub(crate) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

pub(crate) fn xml_trim(s: &str) -> &str {
    s.trim_matches(is_xml_space)
}

pub(crate) fn to_hex(b: &[u8]) -> String {
    hex::encode(b)
}

/// Hex (either case) to bytes; the messages name the text as written.
pub(crate) fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| match e {
        hex::FromHexError::OddLength => format!("'{s}' has an odd number of hex digits"),
        _ => format!("'{s}' is not hexadecimal"),
    })
}
