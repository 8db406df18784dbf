//! Kind definitions (RFC 6940 §11.1 `kind-block`) and the IANA Kind registry (§14.6 and
//! the companion RFCs).

use std::ops::Range;

use reload_wire::storage::{DataModel, KindId};

use super::{ConfigDocument, ConfigProblem, ExtensionElement, NamePatterns, SignatureElement};

/// An access control policy (RFC 6940 §7.3, §14.4 and the companion RFCs), by its
/// configuration-document name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AccessPolicy {
    /// `USER-MATCH` (§7.3.1).
    UserMatch,
    /// `NODE-MATCH` (§7.3.2).
    NodeMatch,
    /// `USER-NODE-MATCH` (§7.3.3).
    UserNodeMatch,
    /// `NODE-MULTIPLE` (§7.3.4).
    NodeMultiple,
    /// `USER-CHAIN-ACL` (RFC 8076 §6.6).
    UserChainAcl,
    /// `NODE-ID-MATCH` (RFC 7374 §5).
    NodeIdMatch,
    /// `URI-MATCH` (RFC 7650 §9).
    UriMatch,
    /// `URI-NODE-MATCH` (RFC 7650 §9).
    UriNodeMatch,
    /// Any other name (`access-control-type |= xsd:string`), not supported here.
    Other(String),
}

impl AccessPolicy {
    pub fn config_name(&self) -> &str {
        match self {
            AccessPolicy::UserMatch => "USER-MATCH",
            AccessPolicy::NodeMatch => "NODE-MATCH",
            AccessPolicy::UserNodeMatch => "USER-NODE-MATCH",
            AccessPolicy::NodeMultiple => "NODE-MULTIPLE",
            AccessPolicy::UserChainAcl => "USER-CHAIN-ACL",
            AccessPolicy::NodeIdMatch => "NODE-ID-MATCH",
            AccessPolicy::UriMatch => "URI-MATCH",
            AccessPolicy::UriNodeMatch => "URI-NODE-MATCH",
            AccessPolicy::Other(s) => s,
        }
    }

    /// The policy with this name; unknown names give `Other` (names are case-sensitive).
    pub fn from_config_name(s: &str) -> Self {
        match s {
            "USER-MATCH" => AccessPolicy::UserMatch,
            "NODE-MATCH" => AccessPolicy::NodeMatch,
            "USER-NODE-MATCH" => AccessPolicy::UserNodeMatch,
            "NODE-MULTIPLE" => AccessPolicy::NodeMultiple,
            "USER-CHAIN-ACL" => AccessPolicy::UserChainAcl,
            "NODE-ID-MATCH" => AccessPolicy::NodeIdMatch,
            "URI-MATCH" => AccessPolicy::UriMatch,
            "URI-NODE-MATCH" => AccessPolicy::UriNodeMatch,
            other => AccessPolicy::Other(other.to_string()),
        }
    }
}

/// The data model named by a `data-model` element (§7.2, §14.7; `data-model-type |=
/// xsd:string` allows extensions, kept as `Other`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KindDataModel {
    Single,
    Array,
    Dictionary,
    Other(String),
}

impl KindDataModel {
    /// The wire codec's data model, if it is one of the three of §7.2.
    pub fn wire(&self) -> Option<DataModel> {
        match self {
            KindDataModel::Single => Some(DataModel::Single),
            KindDataModel::Array => Some(DataModel::Array),
            KindDataModel::Dictionary => Some(DataModel::Dictionary),
            KindDataModel::Other(_) => None,
        }
    }

    pub fn config_name(&self) -> &str {
        match self {
            KindDataModel::Single => "SINGLE",
            KindDataModel::Array => "ARRAY",
            KindDataModel::Dictionary => "DICTIONARY",
            KindDataModel::Other(s) => s,
        }
    }

    pub fn from_config_name(s: &str) -> Self {
        match DataModel::from_config_name(s) {
            Some(m) => m.into(),
            None => KindDataModel::Other(s.to_string()),
        }
    }
}

impl From<DataModel> for KindDataModel {
    fn from(m: DataModel) -> Self {
        match m {
            DataModel::Single => KindDataModel::Single,
            DataModel::Array => KindDataModel::Array,
            DataModel::Dictionary => KindDataModel::Dictionary,
        }
    }
}

/// How a `kind` element names its Kind (§11.1): `id=` (an integer Kind-ID, private range)
/// or `name=` (an IANA-registered name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KindRef {
    Id(KindId),
    Name(String),
}

impl From<KindId> for KindRef {
    fn from(k: KindId) -> Self {
        KindRef::Id(k)
    }
}

impl From<u32> for KindRef {
    fn from(k: u32) -> Self {
        KindRef::Id(KindId(k))
    }
}

impl From<&str> for KindRef {
    fn from(s: &str) -> Self {
        KindRef::Name(s.to_string())
    }
}

impl From<String> for KindRef {
    fn from(s: String) -> Self {
        KindRef::Name(s)
    }
}

impl From<&KindRef> for KindRef {
    fn from(k: &KindRef) -> Self {
        k.clone()
    }
}

/// One row of the IANA "RELOAD Data Kind-ID" registry.
pub(crate) struct Registered {
    pub name: &'static str,
    pub id: KindId,
    pub model: DataModel,
    pub policy: AccessPolicy,
    /// Where the Kind is defined.
    pub source: &'static str,
    /// NODE-MULTIPLE maximum of the registration, if it sets one.
    pub max_node_multiple: Option<u32>,
}

pub(crate) fn registry() -> [Registered; 8] {
    [
        Registered {
            name: "SIP-REGISTRATION",
            id: KindId::SIP_REGISTRATION,
            model: DataModel::Dictionary,
            policy: AccessPolicy::UserNodeMatch,
            source: "RFC 7904 §7",
            max_node_multiple: None,
        },
        Registered {
            name: "TURN-SERVICE",
            id: KindId::TURN_SERVICE,
            model: DataModel::Single,
            policy: AccessPolicy::NodeMultiple,
            source: "RFC 6940 §9",
            max_node_multiple: Some(20),
        },
        Registered {
            name: "CERTIFICATE_BY_NODE",
            id: KindId::CERTIFICATE_BY_NODE,
            model: DataModel::Array,
            policy: AccessPolicy::NodeMatch,
            source: "RFC 6940 §8",
            max_node_multiple: None,
        },
        Registered {
            name: "ACCESS-CONTROL-LIST",
            id: KindId::ACCESS_CONTROL_LIST,
            model: DataModel::Array,
            policy: AccessPolicy::UserChainAcl,
            source: "RFC 8076 §7",
            max_node_multiple: None,
        },
        Registered {
            name: "CERTIFICATE_BY_USER",
            id: KindId::CERTIFICATE_BY_USER,
            model: DataModel::Array,
            policy: AccessPolicy::UserMatch,
            source: "RFC 6940 §8",
            max_node_multiple: None,
        },
        Registered {
            name: "REDIR",
            id: KindId::REDIR,
            model: DataModel::Dictionary,
            policy: AccessPolicy::NodeIdMatch,
            source: "RFC 7374 §6",
            max_node_multiple: None,
        },
        Registered {
            name: "CoAP-REGISTRATION",
            id: KindId::COAP_REGISTRATION,
            model: DataModel::Dictionary,
            policy: AccessPolicy::UriNodeMatch,
            source: "RFC 7650 §8.1",
            max_node_multiple: None,
        },
        Registered {
            name: "CoAP-CACHING",
            id: KindId::COAP_CACHING,
            model: DataModel::Single,
            policy: AccessPolicy::UriMatch,
            source: "RFC 7650 §8.2",
            max_node_multiple: None,
        },
    ]
}

pub(crate) fn lookup(kind: &KindRef) -> Option<Registered> {
    registry().into_iter().find(|r| match kind {
        KindRef::Id(id) => r.id == *id,
        KindRef::Name(n) => r.name == n,
    })
}

/// The IANA registration of a Kind, by Kind-ID or registered name (names are
/// case-sensitive, as registered): Kind-ID, data model and access policy. For these Kinds
/// the registry, not the document, decides the data model and policy (§11.1).
///
/// SIP-REGISTRATION 0x1 dictionary USER-NODE-MATCH (RFC 7904 §7); TURN-SERVICE 0x2 single
/// NODE-MULTIPLE (RFC 6940 §9); CERTIFICATE_BY_NODE 0x3 array NODE-MATCH (§8);
/// ACCESS-CONTROL-LIST 0x4 array USER-CHAIN-ACL (RFC 8076 §7); CERTIFICATE_BY_USER 0x10
/// array USER-MATCH (§8); REDIR 0x104 dictionary NODE-ID-MATCH (RFC 7374 §6);
/// CoAP-REGISTRATION 0x105 dictionary URI-NODE-MATCH (RFC 7650 §8.1); CoAP-CACHING 0x106
/// single URI-MATCH (RFC 7650 §8.2).
pub fn registered_kind<K: Into<KindRef>>(kind: K) -> Option<(KindId, DataModel, AccessPolicy)> {
    lookup(&kind.into()).map(|r| (r.id, r.model, r.policy))
}

/// The NODE-MULTIPLE maximum a registration sets: 20 for TURN-SERVICE ("a maximum
/// iteration of counter 20", RFC 6940 §9).
pub fn registered_max_node_multiple(id: KindId) -> Option<u32> {
    lookup(&KindRef::Id(id)).and_then(|r| r.max_node_multiple)
}

/// A `kind` element with its `kind-signature` (§11.1).
///
/// For a registered Kind, `data_model` and `access_control` hold the registry's values
/// whatever the document says (§11.1: "clients MUST ignore them in favor of the IANA
/// versions"); a disagreeing document is reported by `semantic_problems`.
///
/// Equality ignores the position fields [`KindDefinition::signed_region`] and
/// [`KindDefinition::line`].
#[derive(Clone, Debug, Eq)]
pub struct KindDefinition {
    /// `id` or `name` attribute.
    pub id: KindRef,
    /// `data-model` (required), effective value.
    pub data_model: KindDataModel,
    /// `access-control` (required), effective value.
    pub access_control: AccessPolicy,
    /// `max-count` (required): most values per Resource-ID members must support.
    pub max_count: u32,
    /// `max-size` (required): largest value, bytes.
    pub max_size: u32,
    /// `max-node-multiple`: the NODE-MULTIPLE counter's maximum; MUST be present, and
    /// above 0, when the policy is NODE-MULTIPLE (§11.1).
    pub max_node_multiple: Option<u32>,
    /// `sip:domain-restriction` (RFC 7904 §3.4 grammar: a kind parameter; the text spells
    /// it `domain-restrictions`, accepted too).
    pub domain_restriction: Option<NamePatterns>,
    /// `share:variable-resource-names` (RFC 8076 §5.3). Absent = `enable` false.
    pub variable_resource_names: Option<NamePatterns>,
    /// `redir:branching-factor` (RFC 7374 §8 text: inside the REDIR kind). `None` = 10.
    pub redir_branching_factor: Option<u32>,
    /// Other foreign-namespace elements of the `kind` element.
    pub extensions: Vec<ExtensionElement>,
    /// The `kind-signature` of the kind block (MUST be present, §11.1).
    pub signature: Option<SignatureElement>,
    /// Bytes of the source that the kind-signature signs: from the first `<` of `<kind` to
    /// the last `>` of `</kind>` (§11.1). Empty when not parsed.
    pub signed_region: Range<usize>,
    /// Line of the `kind` start tag (0 when not parsed).
    pub line: u32,
}

impl PartialEq for KindDefinition {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.data_model == o.data_model
            && self.access_control == o.access_control
            && self.max_count == o.max_count
            && self.max_size == o.max_size
            && self.max_node_multiple == o.max_node_multiple
            && self.domain_restriction == o.domain_restriction
            && self.variable_resource_names == o.variable_resource_names
            && self.redir_branching_factor == o.redir_branching_factor
            && self.extensions == o.extensions
            && self.signature == o.signature
    }
}

impl KindDefinition {
    /// A Kind with the given parameters. For a registered Kind the registry's data model
    /// and policy replace `data_model` and `access_control`, as the parser does.
    pub fn new(
        id: impl Into<KindRef>,
        data_model: KindDataModel,
        access_control: AccessPolicy,
        max_count: u32,
        max_size: u32,
    ) -> Self {
        let id = id.into();
        let (data_model, access_control) = match lookup(&id) {
            Some(r) => (r.model.into(), r.policy),
            None => (data_model, access_control),
        };
        KindDefinition {
            id,
            data_model,
            access_control,
            max_count,
            max_size,
            max_node_multiple: None,
            domain_restriction: None,
            variable_resource_names: None,
            redir_branching_factor: None,
            extensions: Vec::new(),
            signature: None,
            signed_region: 0..0,
            line: 0,
        }
    }

    /// The Kind-ID: the `id` attribute, or the registered ID of the `name`.
    pub fn kind_id(&self) -> Option<KindId> {
        match &self.id {
            KindRef::Id(id) => Some(*id),
            KindRef::Name(_) => lookup(&self.id).map(|r| r.id),
        }
    }

    /// Whether the Kind is IANA-registered (so its model and policy are the registry's).
    pub fn is_registered(&self) -> bool {
        lookup(&self.id).is_some()
    }

    /// The exact bytes the kind-signature signs (§11.1), in the document it came from.
    pub fn signed_bytes<'a>(&self, doc: &'a ConfigDocument) -> &'a [u8] {
        self.signed_bytes_in(&doc.source)
    }

    /// The same, in any source text (e.g. a ConfigUpdate's kind block).
    pub fn signed_bytes_in<'a>(&self, source: &'a str) -> &'a [u8] {
        source
            .as_bytes()
            .get(self.signed_region.clone())
            .unwrap_or(&[])
    }

    /// Parses one `kind-block` on its own, as a ConfigUpdate of type `kind` carries it
    /// (§6.5.4.1: UTF-8, default namespace `urn:ietf:params:xml:ns:p2p:config-base`
    /// assumed, so elements without a namespace are read as base elements).
    pub fn parse_kind_block(xml: &str) -> Result<ParsedKindBlock, Vec<ConfigProblem>> {
        super::parse::parse_kind_block(xml)
    }
}

/// A kind block parsed on its own ([`KindDefinition::parse_kind_block`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedKindBlock {
    /// The text, as given ([`KindDefinition::signed_region`] indexes into it).
    pub source: String,
    pub kind: KindDefinition,
    /// Defects found without cryptography (registry conflicts, missing signature …).
    pub problems: Vec<ConfigProblem>,
}

impl ParsedKindBlock {
    /// The exact bytes the kind-signature signs.
    pub fn signed_bytes(&self) -> &[u8] {
        self.kind.signed_bytes_in(&self.source)
    }
}
