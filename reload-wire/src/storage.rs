//! Data storage structures (RFC 6940 §7) and the Store, Fetch, Stat and Find methods
//! (§7.4). The data model of a Kind is not on the wire (§7.2): the decoder looks it up in
//! [`DecodeOptions`](crate::DecodeOptions); values of a Kind it does not know are kept
//! undecoded so that they round-trip unchanged.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, ErrorKind, In, Len, PResult, Wire, boolean, code_point, exact, fail, field,
    items_len, opaque, prefixed, put_opaque, put_vec, u8_, u32_, u64_, vector, wire_vec,
};
use crate::common::{NodeId, ResourceId};
use crate::security::{HashAlgorithm, Signature};

code_point! {
    /// `KindId` (RFC 6940 §6.5.4.1, §14.6) with the Kinds registered by RFC 6940, 7904,
    /// 8076, 7374 and 7650.
    KindId(u32) {
        INVALID = 0 => "INVALID",
        /// RFC 7904 §7.
        SIP_REGISTRATION = 0x1 => "SIP-REGISTRATION",
        /// RFC 6940 §9.
        TURN_SERVICE = 0x2 => "TURN-SERVICE",
        /// RFC 6940 §8.
        CERTIFICATE_BY_NODE = 0x3 => "CERTIFICATE_BY_NODE",
        /// RFC 8076 §7.
        ACCESS_CONTROL_LIST = 0x4 => "ACCESS-CONTROL-LIST",
        /// RFC 6940 §8.
        CERTIFICATE_BY_USER = 0x10 => "CERTIFICATE_BY_USER",
        /// RFC 7374 §10.
        REDIR = 0x104 => "REDIR",
        /// RFC 7650 §11.
        COAP_REGISTRATION = 0x105 => "CoAP-REGISTRATION",
        /// RFC 7650 §11.
        COAP_CACHING = 0x106 => "CoAP-CACHING",
        RESERVED_7FFFFFFF = 0x7fff_ffff => "reserved",
        RESERVED_FFFFFFFE = 0xffff_fffe => "reserved",
    }
}

impl KindId {
    /// Kind-IDs 0xF0000001–0xFFFFFFFE are private: defined by the overlay configuration
    /// (RFC 6940 §14.6).
    pub fn is_private(self) -> bool {
        (0xf000_0001..=0xffff_fffe).contains(&self.0)
    }
}

/// The data model of a Kind (RFC 6940 §7.2, §14.7). It selects how values, specifiers
/// and metadata are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum DataModel {
    Single,
    Array,
    Dictionary,
}

impl DataModel {
    /// The name used in the configuration document (§11.1 `data-model`).
    pub fn config_name(self) -> &'static str {
        match self {
            DataModel::Single => "SINGLE",
            DataModel::Array => "ARRAY",
            DataModel::Dictionary => "DICTIONARY",
        }
    }

    pub fn from_config_name(s: &str) -> Option<Self> {
        match s {
            "SINGLE" => Some(DataModel::Single),
            "ARRAY" => Some(DataModel::Array),
            "DICTIONARY" => Some(DataModel::Dictionary),
            _ => None,
        }
    }
}

/// Data models of the IANA-registered Kinds (RFC 6940 §8, §9; RFC 7904 §7; RFC 8076 §7;
/// RFC 7374 §10; RFC 7650 §11).
pub fn registered_kind_models() -> BTreeMap<u32, DataModel> {
    [
        (KindId::SIP_REGISTRATION, DataModel::Dictionary),
        (KindId::TURN_SERVICE, DataModel::Single),
        (KindId::CERTIFICATE_BY_NODE, DataModel::Array),
        (KindId::ACCESS_CONTROL_LIST, DataModel::Array),
        (KindId::CERTIFICATE_BY_USER, DataModel::Array),
        (KindId::REDIR, DataModel::Dictionary),
        (KindId::COAP_REGISTRATION, DataModel::Dictionary),
        (KindId::COAP_CACHING, DataModel::Single),
    ]
    .into_iter()
    .map(|(k, m)| (k.0, m))
    .collect()
}

/// Values of one Kind: decoded when the Kind's data model is known, else kept as the raw
/// bytes of the `values` vector.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum KindValues<T> {
    Decoded(Vec<T>),
    UnknownModel(
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))] Bytes,
    ),
}

impl<T> KindValues<T> {
    /// The decoded values; empty for an unknown Kind.
    pub fn as_slice(&self) -> &[T] {
        match self {
            KindValues::Decoded(v) => v,
            KindValues::UnknownModel(_) => &[],
        }
    }
}

impl<T> Default for KindValues<T> {
    fn default() -> Self {
        KindValues::Decoded(Vec::new())
    }
}

/// Decodes `values<0..2^32-1>` of `kind` with `f` if its model is known.
fn kind_values<'a, T>(
    cx: &Cx<'a>,
    kind: KindId,
    i: In<'a>,
    mut f: impl FnMut(DataModel, In<'a>) -> PResult<'a, T>,
) -> PResult<'a, KindValues<T>> {
    match cx.opts.data_model(kind.0) {
        Some(model) => {
            let (r, v) = vector(Len::U32, i, |i| f(model, i))?;
            Ok((r, KindValues::Decoded(v)))
        }
        None => {
            let (r, raw) = prefixed(Len::U32, i)?;
            Ok((r, KindValues::UnknownModel(cx.bytes(raw))))
        }
    }
}

fn kind_values_len<T: Wire>(v: &KindValues<T>) -> usize {
    4 + match v {
        KindValues::Decoded(v) => items_len(v),
        KindValues::UnknownModel(b) => b.len(),
    }
}

fn put_kind_values<B: BufMut, T: Wire>(
    b: &mut B,
    v: &KindValues<T>,
    name: &'static str,
) -> Result<(), EncodeError> {
    match v {
        KindValues::Decoded(v) => put_vec(b, Len::U32, v, name),
        KindValues::UnknownModel(raw) => put_opaque(b, Len::U32, raw, name),
    }
}

/// `DataValue` (RFC 6940 §7.2). `exists = false` marks a deleted value (§7.4.1.3).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DataValue {
    pub exists: bool,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub value: Bytes,
}

impl DataValue {
    pub fn new(value: impl Into<Bytes>) -> Self {
        DataValue {
            exists: true,
            value: value.into(),
        }
    }
}

impl Wire for DataValue {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("DataValue", i, |i| {
            let (i, exists) = field("exists", i, boolean)?;
            let (i, value) = field("value", i, |i| opaque(cx, Len::U32, i))?;
            Ok((i, DataValue { exists, value }))
        })
    }
    fn encoded_len(&self) -> usize {
        5 + self.value.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u8(self.exists as u8);
        put_opaque(b, Len::U32, &self.value, "DataValue.value")
    }
}

/// `ArrayEntry` (RFC 6940 §7.2.2). Index 0xFFFFFFFF in a Store appends (§7.2.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ArrayEntry {
    pub index: u32,
    pub value: DataValue,
}

impl ArrayEntry {
    /// The index that means "append at the end" (RFC 6940 §7.2.2).
    pub const APPEND: u32 = 0xffff_ffff;
}

impl Wire for ArrayEntry {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ArrayEntry", i, |i| {
            let (i, index) = field("index", i, u32_)?;
            let (i, value) = DataValue::decode_from(cx, i)?;
            Ok((i, ArrayEntry { index, value }))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + self.value.encoded_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u32(self.index);
        self.value.encode(b)
    }
}

/// `DictionaryEntry` (RFC 6940 §7.2.3); the key is `DictionaryKey = opaque<0..2^16-1>`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DictionaryEntry {
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub key: Bytes,
    pub value: DataValue,
}

impl Wire for DictionaryEntry {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("DictionaryEntry", i, |i| {
            let (i, key) = field("key", i, |i| opaque(cx, Len::U16, i))?;
            let (i, value) = DataValue::decode_from(cx, i)?;
            Ok((i, DictionaryEntry { key, value }))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + self.key.len() + self.value.encoded_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_opaque(b, Len::U16, &self.key, "DictionaryEntry.key")?;
        self.value.encode(b)
    }
}

/// `StoredDataValue` (RFC 6940 §7.2): one value in the layout of its Kind's data model.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum StoredDataValue {
    Single(DataValue),
    Array(ArrayEntry),
    Dictionary(DictionaryEntry),
}

impl StoredDataValue {
    pub fn model(&self) -> DataModel {
        match self {
            StoredDataValue::Single(_) => DataModel::Single,
            StoredDataValue::Array(_) => DataModel::Array,
            StoredDataValue::Dictionary(_) => DataModel::Dictionary,
        }
    }

    pub fn data_value(&self) -> &DataValue {
        match self {
            StoredDataValue::Single(v) => v,
            StoredDataValue::Array(e) => &e.value,
            StoredDataValue::Dictionary(e) => &e.value,
        }
    }

    pub fn decode_model<'a>(cx: &Cx<'a>, model: DataModel, i: In<'a>) -> PResult<'a, Self> {
        match model {
            DataModel::Single => {
                DataValue::decode_from(cx, i).map(|(r, v)| (r, StoredDataValue::Single(v)))
            }
            DataModel::Array => {
                ArrayEntry::decode_from(cx, i).map(|(r, v)| (r, StoredDataValue::Array(v)))
            }
            DataModel::Dictionary => DictionaryEntry::decode_from(cx, i)
                .map(|(r, v)| (r, StoredDataValue::Dictionary(v))),
        }
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            StoredDataValue::Single(v) => v.encoded_len(),
            StoredDataValue::Array(v) => v.encoded_len(),
            StoredDataValue::Dictionary(v) => v.encoded_len(),
        }
    }

    pub fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        match self {
            StoredDataValue::Single(v) => v.encode(b),
            StoredDataValue::Array(v) => v.encode(b),
            StoredDataValue::Dictionary(v) => v.encode(b),
        }
    }
}

/// `StoredData` (RFC 6940 §7): one signed value with its storage time and lifetime. The
/// `length` field is the encoded size of the rest and is not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StoredData {
    /// Milliseconds since the Unix epoch; orders values (§7.4.1.1).
    pub storage_time: u64,
    /// Seconds.
    pub lifetime: u32,
    pub value: StoredDataValue,
    pub signature: Signature,
}

impl StoredData {
    /// Decodes one value of a Kind with data model `model`.
    pub fn decode_model<'a>(cx: &Cx<'a>, model: DataModel, i: In<'a>) -> PResult<'a, Self> {
        field("StoredData", i, |i| {
            let (rest, body) = field("length", i, |i| prefixed(Len::U32, i))?;
            let (_, v) = exact(body, |b| {
                let (b, storage_time) = field("storage_time", b, u64_)?;
                let (b, lifetime) = field("lifetime", b, u32_)?;
                let (b, value) =
                    field("value", b, |b| StoredDataValue::decode_model(cx, model, b))?;
                let (b, signature) = Signature::decode_from(cx, b)?;
                Ok((
                    b,
                    StoredData {
                        storage_time,
                        lifetime,
                        value,
                        signature,
                    },
                ))
            })?;
            Ok((rest, v))
        })
    }

    fn body_len(&self) -> usize {
        8 + 4 + self.value.encoded_len() + self.signature.encoded_len()
    }
}

impl Wire for StoredData {
    /// Without a Kind there is no data model: refuse. Use [`StoredData::decode_model`].
    fn decode_from<'a>(_cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        fail(
            i,
            ErrorKind::Invalid("StoredData needs its Kind's data model"),
        )
    }
    fn encoded_len(&self) -> usize {
        4 + self.body_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        Len::U32.write(b, self.body_len(), "StoredData.length")?;
        b.put_u64(self.storage_time);
        b.put_u32(self.lifetime);
        self.value.encode(b)?;
        self.signature.encode(b)
    }
}

/// `StoreKindData` (RFC 6940 §7.4.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StoreKindData {
    pub kind: KindId,
    pub generation_counter: u64,
    pub values: KindValues<StoredData>,
}

impl Wire for StoreKindData {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("StoreKindData", i, |i| {
            let (i, kind) = field("kind", i, |i| KindId::decode_from(cx, i))?;
            let (i, generation_counter) = field("generation_counter", i, u64_)?;
            let (i, values) = field("values", i, |i| {
                kind_values(cx, kind, i, |m, i| StoredData::decode_model(cx, m, i))
            })?;
            Ok((
                i,
                StoreKindData {
                    kind,
                    generation_counter,
                    values,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + 8 + kind_values_len(&self.values)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.kind.encode(b)?;
        b.put_u64(self.generation_counter);
        put_kind_values(b, &self.values, "StoreKindData.values")
    }
}

/// `StoreReq` (RFC 6940 §7.4.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StoreReq {
    pub resource: ResourceId,
    /// 0 for the original store, 1, 2, … for replicas (§10.4).
    pub replica_number: u8,
    pub kind_data: Vec<StoreKindData>,
}

impl Wire for StoreReq {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("StoreReq", i, |i| {
            let (i, resource) = field("resource", i, |i| ResourceId::decode_from(cx, i))?;
            let (i, replica_number) = field("replica_number", i, u8_)?;
            let (i, kind_data) = field("kind_data", i, |i| wire_vec(cx, Len::U32, i))?;
            Ok((
                i,
                StoreReq {
                    resource,
                    replica_number,
                    kind_data,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        self.resource.encoded_len() + 1 + 4 + items_len(&self.kind_data)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.resource.encode(b)?;
        b.put_u8(self.replica_number);
        put_vec(b, Len::U32, &self.kind_data, "StoreReq.kind_data")
    }
}

/// `StoreKindResponse` (RFC 6940 §7.4.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StoreKindResponse {
    pub kind: KindId,
    pub generation_counter: u64,
    pub replicas: Vec<NodeId>,
}

impl Wire for StoreKindResponse {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("StoreKindResponse", i, |i| {
            let (i, kind) = field("kind", i, |i| KindId::decode_from(cx, i))?;
            let (i, generation_counter) = field("generation_counter", i, u64_)?;
            let (i, replicas) = field("replicas", i, |i| wire_vec(cx, Len::U16, i))?;
            Ok((
                i,
                StoreKindResponse {
                    kind,
                    generation_counter,
                    replicas,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + 8 + 2 + items_len(&self.replicas)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.kind.encode(b)?;
        b.put_u64(self.generation_counter);
        put_vec(b, Len::U16, &self.replicas, "StoreKindResponse.replicas")
    }
}

/// `StoreAns` (RFC 6940 §7.4.1.2); also the error_info of
/// Error_Generation_Counter_Too_Low.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StoreAns {
    pub kind_responses: Vec<StoreKindResponse>,
}

impl Wire for StoreAns {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("StoreAns", i, |i| {
            let (i, kind_responses) = field("kind_responses", i, |i| wire_vec(cx, Len::U16, i))?;
            Ok((i, StoreAns { kind_responses }))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + items_len(&self.kind_responses)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_vec(b, Len::U16, &self.kind_responses, "StoreAns.kind_responses")
    }
}

/// `ArrayRange` (RFC 6940 §7.4.2.1). The RFC types both bounds `int32`, but they index a
/// `uint32` array and 0xFFFFFFFF means "the last element", so they are kept unsigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ArrayRange {
    pub first: u32,
    pub last: u32,
}

impl Wire for ArrayRange {
    fn decode_from<'a>(_cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        let (i, first) = field("first", i, u32_)?;
        let (i, last) = field("last", i, u32_)?;
        Ok((i, ArrayRange { first, last }))
    }
    fn encoded_len(&self) -> usize {
        8
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u32(self.first);
        b.put_u32(self.last);
        Ok(())
    }
}

/// The `model_specifier` of a [`StoredDataSpecifier`] (RFC 6940 §7.4.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ModelSpecifier {
    Single,
    Array(Vec<ArrayRange>),
    /// No keys means every entry.
    Dictionary(
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex_vec"))]
        Vec<Bytes>,
    ),
    /// For a Kind whose data model the decoder does not know.
    UnknownModel(
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))] Bytes,
    ),
}

impl ModelSpecifier {
    fn len(&self) -> usize {
        match self {
            ModelSpecifier::Single => 0,
            ModelSpecifier::Array(r) => 2 + 8 * r.len(),
            ModelSpecifier::Dictionary(k) => 2 + k.iter().map(|k| 2 + k.len()).sum::<usize>(),
            ModelSpecifier::UnknownModel(b) => b.len(),
        }
    }
}

/// `StoredDataSpecifier` (RFC 6940 §7.4.2.1): what to fetch of one Kind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StoredDataSpecifier {
    pub kind: KindId,
    /// The generation the requester already has; 0 = none.
    pub generation: u64,
    pub model_specifier: ModelSpecifier,
}

impl Wire for StoredDataSpecifier {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("StoredDataSpecifier", i, |i| {
            let (i, kind) = field("kind", i, |i| KindId::decode_from(cx, i))?;
            let (i, generation) = field("generation", i, u64_)?;
            let (r, spec) = field("length", i, |i| prefixed(Len::U16, i))?;
            let model_specifier = match cx.opts.data_model(kind.0) {
                None => ModelSpecifier::UnknownModel(cx.bytes(spec)),
                Some(DataModel::Single) => {
                    if !spec.is_empty() {
                        return fail(
                            spec,
                            ErrorKind::Invalid("single-value specifier must be empty"),
                        );
                    }
                    ModelSpecifier::Single
                }
                Some(DataModel::Array) => {
                    let (_, r) =
                        field("indices", spec, |s| exact(s, |s| wire_vec(cx, Len::U16, s)))?;
                    ModelSpecifier::Array(r)
                }
                Some(DataModel::Dictionary) => {
                    let (_, k) = field("keys", spec, |s| {
                        exact(s, |s| {
                            vector(Len::U16, s, |k| {
                                field("DictionaryKey", k, |k| opaque(cx, Len::U16, k))
                            })
                        })
                    })?;
                    ModelSpecifier::Dictionary(k)
                }
            };
            Ok((
                r,
                StoredDataSpecifier {
                    kind,
                    generation,
                    model_specifier,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + 8 + 2 + self.model_specifier.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.kind.encode(b)?;
        b.put_u64(self.generation);
        Len::U16.write(b, self.model_specifier.len(), "StoredDataSpecifier.length")?;
        match &self.model_specifier {
            ModelSpecifier::Single => Ok(()),
            ModelSpecifier::Array(r) => put_vec(b, Len::U16, r, "StoredDataSpecifier.indices"),
            ModelSpecifier::Dictionary(keys) => {
                let n = keys.iter().map(|k| 2 + k.len()).sum();
                Len::U16.write(b, n, "StoredDataSpecifier.keys")?;
                for k in keys {
                    put_opaque(b, Len::U16, k, "StoredDataSpecifier.DictionaryKey")?;
                }
                Ok(())
            }
            ModelSpecifier::UnknownModel(raw) => {
                b.put_slice(raw);
                Ok(())
            }
        }
    }
}

/// `FetchReq` (RFC 6940 §7.4.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FetchReq {
    pub resource: ResourceId,
    pub specifiers: Vec<StoredDataSpecifier>,
}

/// `StatReq` (RFC 6940 §7.4.3.1): the same layout as FetchReq.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StatReq {
    pub resource: ResourceId,
    pub specifiers: Vec<StoredDataSpecifier>,
}

macro_rules! resource_specifiers {
    ($name:ident) => {
        impl Wire for $name {
            fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
                field(stringify!($name), i, |i| {
                    let (i, resource) = field("resource", i, |i| ResourceId::decode_from(cx, i))?;
                    let (i, specifiers) = field("specifiers", i, |i| wire_vec(cx, Len::U16, i))?;
                    Ok((
                        i,
                        $name {
                            resource,
                            specifiers,
                        },
                    ))
                })
            }
            fn encoded_len(&self) -> usize {
                self.resource.encoded_len() + 2 + items_len(&self.specifiers)
            }
            fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
                self.resource.encode(b)?;
                put_vec(
                    b,
                    Len::U16,
                    &self.specifiers,
                    concat!(stringify!($name), ".specifiers"),
                )
            }
        }
    };
}
resource_specifiers!(FetchReq);
resource_specifiers!(StatReq);

/// `FetchKindResponse` (RFC 6940 §7.4.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FetchKindResponse {
    pub kind: KindId,
    pub generation: u64,
    pub values: KindValues<StoredData>,
}

impl Wire for FetchKindResponse {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("FetchKindResponse", i, |i| {
            let (i, kind) = field("kind", i, |i| KindId::decode_from(cx, i))?;
            let (i, generation) = field("generation", i, u64_)?;
            let (i, values) = field("values", i, |i| {
                kind_values(cx, kind, i, |m, i| StoredData::decode_model(cx, m, i))
            })?;
            Ok((
                i,
                FetchKindResponse {
                    kind,
                    generation,
                    values,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + 8 + kind_values_len(&self.values)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.kind.encode(b)?;
        b.put_u64(self.generation);
        put_kind_values(b, &self.values, "FetchKindResponse.values")
    }
}

/// `FetchAns` (RFC 6940 §7.4.2.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FetchAns {
    pub kind_responses: Vec<FetchKindResponse>,
}

impl Wire for FetchAns {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("FetchAns", i, |i| {
            let (i, kind_responses) = field("kind_responses", i, |i| wire_vec(cx, Len::U32, i))?;
            Ok((i, FetchAns { kind_responses }))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + items_len(&self.kind_responses)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_vec(b, Len::U32, &self.kind_responses, "FetchAns.kind_responses")
    }
}

/// `MetaData` (RFC 6940 §7.4.3.2): a value's size and hash instead of the value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MetaData {
    pub exists: bool,
    pub value_length: u32,
    pub hash_algorithm: HashAlgorithm,
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub hash_value: Bytes,
}

impl Wire for MetaData {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("MetaData", i, |i| {
            let (i, exists) = field("exists", i, boolean)?;
            let (i, value_length) = field("value_length", i, u32_)?;
            let (i, hash_algorithm) =
                field("hash_algorithm", i, |i| HashAlgorithm::decode_from(cx, i))?;
            let (i, hash_value) = field("hash_value", i, |i| opaque(cx, Len::U8, i))?;
            Ok((
                i,
                MetaData {
                    exists,
                    value_length,
                    hash_algorithm,
                    hash_value,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        1 + 4 + 1 + 1 + self.hash_value.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u8(self.exists as u8);
        b.put_u32(self.value_length);
        self.hash_algorithm.encode(b)?;
        put_opaque(b, Len::U8, &self.hash_value, "MetaData.hash_value")
    }
}

/// `MetaDataValue` (RFC 6940 §7.4.3.2), with `ArrayEntryMeta` and `DictionaryEntryMeta`
/// folded into its variants.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum MetaDataValue {
    Single(MetaData),
    /// `ArrayEntryMeta`.
    Array {
        index: u32,
        value: MetaData,
    },
    /// `DictionaryEntryMeta`.
    Dictionary {
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        key: Bytes,
        value: MetaData,
    },
}

impl MetaDataValue {
    fn decode_model<'a>(cx: &Cx<'a>, model: DataModel, i: In<'a>) -> PResult<'a, Self> {
        match model {
            DataModel::Single => {
                MetaData::decode_from(cx, i).map(|(r, v)| (r, MetaDataValue::Single(v)))
            }
            DataModel::Array => field("ArrayEntryMeta", i, |i| {
                let (i, index) = field("index", i, u32_)?;
                let (i, value) = MetaData::decode_from(cx, i)?;
                Ok((i, MetaDataValue::Array { index, value }))
            }),
            DataModel::Dictionary => field("DictionaryEntryMeta", i, |i| {
                let (i, key) = field("key", i, |i| opaque(cx, Len::U16, i))?;
                let (i, value) = MetaData::decode_from(cx, i)?;
                Ok((i, MetaDataValue::Dictionary { key, value }))
            }),
        }
    }
    fn encoded_len(&self) -> usize {
        match self {
            MetaDataValue::Single(v) => v.encoded_len(),
            MetaDataValue::Array { value, .. } => 4 + value.encoded_len(),
            MetaDataValue::Dictionary { key, value } => 2 + key.len() + value.encoded_len(),
        }
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        match self {
            MetaDataValue::Single(v) => v.encode(b),
            MetaDataValue::Array { index, value } => {
                b.put_u32(*index);
                value.encode(b)
            }
            MetaDataValue::Dictionary { key, value } => {
                put_opaque(b, Len::U16, key, "DictionaryEntryMeta.key")?;
                value.encode(b)
            }
        }
    }
}

/// `StoredMetaData` (RFC 6940 §7.4.3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StoredMetaData {
    pub value_length: u32,
    pub storage_time: u64,
    pub lifetime: u32,
    pub metadata: MetaDataValue,
}

impl StoredMetaData {
    fn decode_model<'a>(cx: &Cx<'a>, model: DataModel, i: In<'a>) -> PResult<'a, Self> {
        field("StoredMetaData", i, |i| {
            let (i, value_length) = field("value_length", i, u32_)?;
            let (i, storage_time) = field("storage_time", i, u64_)?;
            let (i, lifetime) = field("lifetime", i, u32_)?;
            let (i, metadata) =
                field("metadata", i, |i| MetaDataValue::decode_model(cx, model, i))?;
            Ok((
                i,
                StoredMetaData {
                    value_length,
                    storage_time,
                    lifetime,
                    metadata,
                },
            ))
        })
    }
}

impl Wire for StoredMetaData {
    /// Without a Kind there is no data model: refuse (decoded through [`StatKindResponse`]).
    fn decode_from<'a>(_cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        fail(
            i,
            ErrorKind::Invalid("StoredMetaData needs its Kind's data model"),
        )
    }
    fn encoded_len(&self) -> usize {
        4 + 8 + 4 + self.metadata.encoded_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u32(self.value_length);
        b.put_u64(self.storage_time);
        b.put_u32(self.lifetime);
        self.metadata.encode(b)
    }
}

/// `StatKindResponse` (RFC 6940 §7.4.3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StatKindResponse {
    pub kind: KindId,
    pub generation: u64,
    pub values: KindValues<StoredMetaData>,
}

impl Wire for StatKindResponse {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("StatKindResponse", i, |i| {
            let (i, kind) = field("kind", i, |i| KindId::decode_from(cx, i))?;
            let (i, generation) = field("generation", i, u64_)?;
            let (i, values) = field("values", i, |i| {
                kind_values(cx, kind, i, |m, i| StoredMetaData::decode_model(cx, m, i))
            })?;
            Ok((
                i,
                StatKindResponse {
                    kind,
                    generation,
                    values,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + 8 + kind_values_len(&self.values)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.kind.encode(b)?;
        b.put_u64(self.generation);
        put_kind_values(b, &self.values, "StatKindResponse.values")
    }
}

/// `StatAns` (RFC 6940 §7.4.3.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StatAns {
    pub kind_responses: Vec<StatKindResponse>,
}

impl Wire for StatAns {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("StatAns", i, |i| {
            let (i, kind_responses) = field("kind_responses", i, |i| wire_vec(cx, Len::U32, i))?;
            Ok((i, StatAns { kind_responses }))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + items_len(&self.kind_responses)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_vec(b, Len::U32, &self.kind_responses, "StatAns.kind_responses")
    }
}

/// `FindReq` (RFC 6940 §7.4.4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FindReq {
    pub resource: ResourceId,
    pub kinds: Vec<KindId>,
}

impl Wire for FindReq {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("FindReq", i, |i| {
            let (i, resource) = field("resource", i, |i| ResourceId::decode_from(cx, i))?;
            let (i, kinds) = field("kinds", i, |i| wire_vec(cx, Len::U8, i))?;
            Ok((i, FindReq { resource, kinds }))
        })
    }
    fn encoded_len(&self) -> usize {
        self.resource.encoded_len() + 1 + 4 * self.kinds.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.resource.encode(b)?;
        put_vec(b, Len::U8, &self.kinds, "FindReq.kinds")
    }
}

/// `FindKindData` (RFC 6940 §7.4.4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FindKindData {
    pub kind: KindId,
    /// Closest Resource-ID holding data of the Kind; empty (length 0) when there is none.
    pub closest: ResourceId,
}

impl Wire for FindKindData {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("FindKindData", i, |i| {
            let (i, kind) = field("kind", i, |i| KindId::decode_from(cx, i))?;
            let (i, closest) = field("closest", i, |i| ResourceId::decode_from(cx, i))?;
            Ok((i, FindKindData { kind, closest }))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + self.closest.encoded_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.kind.encode(b)?;
        self.closest.encode(b)
    }
}

/// `FindAns` (RFC 6940 §7.4.4.2).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FindAns {
    pub results: Vec<FindKindData>,
}

impl Wire for FindAns {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("FindAns", i, |i| {
            let (i, results) = field("results", i, |i| wire_vec(cx, Len::U16, i))?;
            Ok((i, FindAns { results }))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + items_len(&self.results)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_vec(b, Len::U16, &self.results, "FindAns.results")
    }
}

/// `TurnServer` (RFC 6940 §9), the value of a TURN-SERVICE Kind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TurnServer {
    /// The `d` value (1..=turn-density) this record was stored under.
    pub iteration: u8,
    pub server_address: crate::common::IpAddressPort,
}

impl Wire for TurnServer {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("TurnServer", i, |i| {
            let (i, iteration) = field("iteration", i, u8_)?;
            let (i, server_address) = crate::common::IpAddressPort::decode_from(cx, i)?;
            Ok((
                i,
                TurnServer {
                    iteration,
                    server_address,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        1 + self.server_address.encoded_len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u8(self.iteration);
        self.server_address.encode(b)
    }
}

/// The error_info of Error_Unknown_Kind: `KindId unknown_kinds<0..2^8-1>` (RFC 6940
/// §6.3.3.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct UnknownKinds {
    pub unknown_kinds: Vec<KindId>,
}

impl Wire for UnknownKinds {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("UnknownKinds", i, |i| {
            let (i, unknown_kinds) = field("unknown_kinds", i, |i| wire_vec(cx, Len::U8, i))?;
            Ok((i, UnknownKinds { unknown_kinds }))
        })
    }
    fn encoded_len(&self) -> usize {
        1 + 4 * self.unknown_kinds.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_vec(
            b,
            Len::U8,
            &self.unknown_kinds,
            "UnknownKinds.unknown_kinds",
        )
    }
}
