//! The CoAP usage for RELOAD (RFC 7650): `CoAPRegistration` (§8.1), the value of the
//! CoAP-REGISTRATION Kind (0x105, dictionary keyed by the storing node's Node-ID), and
//! `CoAPCaching` (§7) with `ProxyCache`/`SensorEntry` (§7.1) and
//! `SensorCache`/`SensorInfo`/`SensorValue` (§7.2), the value of the CoAP-CACHING Kind
//! (0x106, single value).
//!
//! The RFC's presentation language is loose here. How each construct is read (line
//! numbers are those of `rfc7650.txt`):
//! - `Node-ID Node_ID` (§7.1 L621, §7.2 L678, §8.1 L789) is RFC 6940's `NodeId`: a
//!   fixed-length field of the overlay's Node-ID length, no prefix ([`NodeId`], length
//!   from [`crate::DecodeOptions`]). The field is named `node_id`.
//! - `uint32 length; T items[count];` (ProxyCache L622–623, SensorEntry L642–643,
//!   SensorCache L680–681): `length` is described as "the length of the rest of the
//!   structure" (L631, L653, L692), and the array is the rest, so `length` is the byte
//!   length of the array and `count` is however many elements fill it. This is exactly
//!   `T items<0..2^32-1>`; `length` is not stored, it is computed when encoding. The
//!   elements must fill `length` exactly.
//! - `opaque coap_uri;` (L640), `opaque dev_info;` (L702) and `opaque value;` (L732) have
//!   no length at all; they are read as `opaque x<0..2^16-1>` (two-byte prefix), the width
//!   RFC 7650 itself uses for `coap_uris` (L791) and RFC 6940 uses for most strings.
//! - `uint16 coap_uris_length; opaque coap_uris (0..2^16-1);` (§8.1 L790–791): the
//!   explicit `coap_uris_length` *is* the two-byte prefix of `coap_uris` (the bounds in
//!   parentheses being its range), not a second length before a separately prefixed
//!   vector. So the wire form is `NodeId ‖ uint16 n ‖ n bytes`; the length is not stored.
//! - `/* extensions */` in `SensorInfo` (L704) and `SensorValue` (L734) has no length
//!   and no selector, so nothing can follow: the structures are exactly the fields shown.
//! - `CoAPCaching` (§7 L588–599) selects on `coap_caching_type`; the rest is `/*
//!   extensions */` with no length, so an unknown type keeps *all remaining bytes* of the
//!   value raw. `reserved (0)` is kept the same way (the layout does not depend on it).
//! - `measurement_time` is a `uint32` of "milliseconds elapsed since midnight Jan 1, 1970"
//!   (L737–739), which no longer fits 32 bits; the field is kept as the `uint32` the
//!   structure defines, its meaning left to the application.

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, In, Len, PResult, Wire, code_point, field, items_len, opaque, put_opaque,
    put_vec, u32_, wire_vec,
};
use crate::common::NodeId;

/// `CoAPRegistration` (RFC 7650 §8.1): the CoAP URIs a node serves, in CoRE link format
/// (RFC 6690), e.g. `</sensors/temp-1>;rt="temperature-c";if="sensor"`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CoAPRegistration {
    /// The RFC's `Node_ID`.
    pub node_id: NodeId,
    /// `coap_uris`, length given by `coap_uris_length`.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub coap_uris: Bytes,
}

impl Wire for CoAPRegistration {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("CoAPRegistration", i, |i| {
            let (i, node_id) = field("Node_ID", i, |i| NodeId::decode_from(cx, i))?;
            let (i, coap_uris) = field("coap_uris", i, |i| opaque(cx, Len::U16, i))?;
            Ok((i, CoAPRegistration { node_id, coap_uris }))
        })
    }
    fn encoded_len(&self) -> usize {
        self.node_id.len() + 2 + self.coap_uris.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.node_id.encode(b)?;
        put_opaque(b, Len::U16, &self.coap_uris, "CoAPRegistration.coap_uris")
    }
}

/// `SensorInfo` (RFC 7650 §7.2): use-case dependent information about a sensor.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SensorInfo {
    /// Device information (RFC 6690 attributes, manufacturer, …).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub dev_info: Bytes,
}

impl Wire for SensorInfo {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("SensorInfo", i, |i| {
            let (i, dev_info) = field("dev_info", i, |i| opaque(cx, Len::U16, i))?;
            Ok((i, SensorInfo { dev_info }))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + self.dev_info.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_opaque(b, Len::U16, &self.dev_info, "SensorInfo.dev_info")
    }
}

/// `SensorValue` (RFC 7650 §7.2): one measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SensorValue {
    /// When the measurement was taken (milliseconds since the Unix epoch, as a `uint32`).
    pub measurement_time: u32,
    /// Milliseconds after `measurement_time` during which the value is valid.
    pub lifetime: u32,
    /// The measured value, in an application-defined encoding.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub value: Bytes,
}

impl Wire for SensorValue {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("SensorValue", i, |i| {
            let (i, measurement_time) = field("measurement_time", i, u32_)?;
            let (i, lifetime) = field("lifetime", i, u32_)?;
            let (i, value) = field("value", i, |i| opaque(cx, Len::U16, i))?;
            Ok((
                i,
                SensorValue {
                    measurement_time,
                    lifetime,
                    value,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        4 + 4 + 2 + self.value.len()
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_u32(self.measurement_time);
        b.put_u32(self.lifetime);
        put_opaque(b, Len::U16, &self.value, "SensorValue.value")
    }
}

/// `SensorEntry` (RFC 7650 §7.1): one sensor behind a proxy, with its cached values.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SensorEntry {
    /// CoAP name of the sensor.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
    pub coap_uri: Bytes,
    pub sensor_info: SensorInfo,
    /// The values; `length` is their encoded size.
    pub sensor_value: Vec<SensorValue>,
}

impl Wire for SensorEntry {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("SensorEntry", i, |i| {
            let (i, coap_uri) = field("coap_uri", i, |i| opaque(cx, Len::U16, i))?;
            let (i, sensor_info) = field("sensor_info", i, |i| SensorInfo::decode_from(cx, i))?;
            let (i, sensor_value) = field("sensor_value", i, |i| wire_vec(cx, Len::U32, i))?;
            Ok((
                i,
                SensorEntry {
                    coap_uri,
                    sensor_info,
                    sensor_value,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        2 + self.coap_uri.len() + self.sensor_info.encoded_len() + 4 + items_len(&self.sensor_value)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_opaque(b, Len::U16, &self.coap_uri, "SensorEntry.coap_uri")?;
        self.sensor_info.encode(b)?;
        put_vec(b, Len::U32, &self.sensor_value, "SensorEntry.sensor_value")
    }
}

/// `ProxyCache` (RFC 7650 §7.1): the cached values of all sensors behind one proxy node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ProxyCache {
    /// The RFC's `Node_ID`: the proxy node responsible for the sensors.
    pub node_id: NodeId,
    /// The sensors; `length` is their encoded size.
    pub sensors: Vec<SensorEntry>,
}

impl Wire for ProxyCache {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ProxyCache", i, |i| {
            let (i, node_id) = field("Node_ID", i, |i| NodeId::decode_from(cx, i))?;
            let (i, sensors) = field("sensors", i, |i| wire_vec(cx, Len::U32, i))?;
            Ok((i, ProxyCache { node_id, sensors }))
        })
    }
    fn encoded_len(&self) -> usize {
        self.node_id.len() + 4 + items_len(&self.sensors)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.node_id.encode(b)?;
        put_vec(b, Len::U32, &self.sensors, "ProxyCache.sensors")
    }
}

/// `SensorCache` (RFC 7650 §7.2): the cached values of one sensor (its URI is the
/// Resource Name, so it is not repeated).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SensorCache {
    /// The RFC's `Node_ID`: the proxy node responsible for the sensor.
    pub node_id: NodeId,
    pub sensor_info: SensorInfo,
    /// The values; `length` is their encoded size.
    pub sensor_value: Vec<SensorValue>,
}

impl Wire for SensorCache {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("SensorCache", i, |i| {
            let (i, node_id) = field("Node_ID", i, |i| NodeId::decode_from(cx, i))?;
            let (i, sensor_info) = field("sensor_info", i, |i| SensorInfo::decode_from(cx, i))?;
            let (i, sensor_value) = field("sensor_value", i, |i| wire_vec(cx, Len::U32, i))?;
            Ok((
                i,
                SensorCache {
                    node_id,
                    sensor_info,
                    sensor_value,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        self.node_id.len() + self.sensor_info.encoded_len() + 4 + items_len(&self.sensor_value)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.node_id.encode(b)?;
        self.sensor_info.encode(b)?;
        put_vec(b, Len::U32, &self.sensor_value, "SensorCache.sensor_value")
    }
}

code_point! {
    /// `CoAPCachingType` (RFC 7650 §7).
    CoAPCachingType(u8) {
        RESERVED = 0 => "reserved",
        PROXY_CACHE = 1 => "proxy_cache",
        SENSOR_CACHE = 2 => "sensor_cache",
    }
}

/// `CoAPCaching` (RFC 7650 §7): the value of the CoAP-CACHING Kind, by type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum CoAPCaching {
    /// `proxy_cache`: `proxy_cache_entry`.
    ProxyCache(ProxyCache),
    /// `sensor_cache`: `sensor_cache_entry`.
    SensorCache(SensorCache),
    /// A type this codec does not know (or `reserved`): the rest of the value as it came.
    Unknown {
        coap_caching_type: CoAPCachingType,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        data: Bytes,
    },
}

impl CoAPCaching {
    /// The RFC's `coap_caching_type`.
    pub fn coap_caching_type(&self) -> CoAPCachingType {
        match self {
            CoAPCaching::ProxyCache(_) => CoAPCachingType::PROXY_CACHE,
            CoAPCaching::SensorCache(_) => CoAPCachingType::SENSOR_CACHE,
            CoAPCaching::Unknown {
                coap_caching_type, ..
            } => *coap_caching_type,
        }
    }
}

impl Wire for CoAPCaching {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("CoAPCaching", i, |i| {
            let (r, t) = field("coap_caching_type", i, |i| {
                CoAPCachingType::decode_from(cx, i)
            })?;
            match t {
                CoAPCachingType::PROXY_CACHE => {
                    let (r, e) = field("proxy_cache_entry", r, |r| ProxyCache::decode_from(cx, r))?;
                    Ok((r, CoAPCaching::ProxyCache(e)))
                }
                CoAPCachingType::SENSOR_CACHE => {
                    let (r, e) =
                        field("sensor_cache_entry", r, |r| SensorCache::decode_from(cx, r))?;
                    Ok((r, CoAPCaching::SensorCache(e)))
                }
                coap_caching_type => Ok((
                    &r[r.len()..],
                    CoAPCaching::Unknown {
                        coap_caching_type,
                        data: cx.bytes(r),
                    },
                )),
            }
        })
    }
    fn encoded_len(&self) -> usize {
        1 + match self {
            CoAPCaching::ProxyCache(e) => e.encoded_len(),
            CoAPCaching::SensorCache(e) => e.encoded_len(),
            CoAPCaching::Unknown { data, .. } => data.len(),
        }
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.coap_caching_type().encode(b)?;
        match self {
            CoAPCaching::ProxyCache(e) => e.encode(b),
            CoAPCaching::SensorCache(e) => e.encode(b),
            CoAPCaching::Unknown { data, .. } => {
                b.put_slice(data);
                Ok(())
            }
        }
    }
}
