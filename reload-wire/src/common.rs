//! Common types of RFC 6940 §6.3.1.1: `NodeId`, `ResourceId`, `IpAddressPort`, and the
//! `Destination` of §6.3.2.2.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes};

use crate::codec::{
    Cx, EncodeError, ErrorKind, In, Len, PResult, Wire, fail, field, opaque, put_opaque, take, u8_,
    u16_, u32_,
};

/// Longest Node-ID any overlay may use (RFC 6940 §6.3.1.1).
pub const MAX_NODE_ID_LEN: usize = 20;

/// `typedef opaque NodeId[NodeIdLength]` (RFC 6940 §6.3.1.1): 16 to 20 bytes, most
/// significant first. The length comes from the overlay configuration, never the wire.
/// Stored inline so that routing tables copy Node-IDs without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    len: u8,
    bytes: [u8; MAX_NODE_ID_LEN],
}

impl NodeId {
    /// A Node-ID from 16 to 20 bytes; `None` for any other length.
    pub fn from_slice(s: &[u8]) -> Option<NodeId> {
        if !(16..=MAX_NODE_ID_LEN).contains(&s.len()) {
            return None;
        }
        let mut bytes = [0u8; MAX_NODE_ID_LEN];
        bytes[..s.len()].copy_from_slice(s);
        Some(NodeId {
            len: s.len() as u8,
            bytes,
        })
    }

    /// A 16-byte (128-bit, CHORD-RELOAD default) Node-ID.
    pub fn from_u128(v: u128) -> NodeId {
        NodeId::from_slice(&v.to_be_bytes()).expect("16 bytes")
    }

    /// The value of a 16-byte Node-ID as an integer on the Chord ring; `None` for other
    /// lengths.
    pub fn as_u128(&self) -> Option<u128> {
        let b: [u8; 16] = self.as_bytes().try_into().ok()?;
        Some(u128::from_be_bytes(b))
    }

    /// All bytes zero: not a valid Node-ID (RFC 6940 §3).
    pub fn zero(len: usize) -> Option<NodeId> {
        NodeId::from_slice(&[0u8; MAX_NODE_ID_LEN][..len])
    }

    /// All bits one: the wildcard Node-ID (RFC 6940 §3).
    pub fn wildcard(len: usize) -> Option<NodeId> {
        NodeId::from_slice(&[0xffu8; MAX_NODE_ID_LEN][..len])
    }

    pub fn is_zero(&self) -> bool {
        self.as_bytes().iter().all(|&b| b == 0)
    }

    pub fn is_wildcard(&self) -> bool {
        self.as_bytes().iter().all(|&b| b == 0xff)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Lower-case hex of the Node-ID's bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Big-endian byte order, the order RFC 6940 §6.5.1.2 uses to compare Node-IDs.
impl Ord for NodeId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.to_hex())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl Wire for NodeId {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        let (r, s) = take(i, cx.opts.node_id_len())?;
        match NodeId::from_slice(s) {
            Some(id) => Ok((r, id)),
            None => fail(i, ErrorKind::Invalid("Node-ID length outside 16..=20")),
        }
    }

    fn encoded_len(&self) -> usize {
        self.len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        b.put_slice(self.as_bytes());
        Ok(())
    }
}

/// `typedef opaque ResourceId<0..2^8-1>` (RFC 6940 §6.3.1.1).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ResourceId(pub Bytes);

impl ResourceId {
    pub fn new(b: impl Into<Bytes>) -> ResourceId {
        ResourceId(b.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value of a 16-byte Resource-ID on the Chord ring.
    pub fn as_u128(&self) -> Option<u128> {
        let b: [u8; 16] = self.0.as_ref().try_into().ok()?;
        Some(u128::from_be_bytes(b))
    }
}

impl From<NodeId> for ResourceId {
    fn from(n: NodeId) -> Self {
        ResourceId(Bytes::copy_from_slice(n.as_bytes()))
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({})", hex::encode(&self.0))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl Wire for ResourceId {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        let (i, b) = opaque(cx, Len::U8, i)?;
        Ok((i, ResourceId(b)))
    }

    fn encoded_len(&self) -> usize {
        1 + self.0.len()
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        put_opaque(b, Len::U8, &self.0, "ResourceId")
    }
}

/// `IpAddressPort` (RFC 6940 §6.3.1.1): an IPv4 or IPv6 address and port, or an address
/// type this codec does not know, kept as it came.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum IpAddressPort {
    V4 {
        addr: Ipv4Addr,
        port: u16,
    },
    V6 {
        addr: Ipv6Addr,
        port: u16,
    },
    Unknown {
        address_type: u8,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        data: Bytes,
    },
}

impl IpAddressPort {
    /// The socket address, for the known address types.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match *self {
            IpAddressPort::V4 { addr, port } => Some(SocketAddr::from((addr, port))),
            IpAddressPort::V6 { addr, port } => Some(SocketAddr::from((addr, port))),
            IpAddressPort::Unknown { .. } => None,
        }
    }
}

impl From<SocketAddr> for IpAddressPort {
    fn from(a: SocketAddr) -> Self {
        match a {
            SocketAddr::V4(a) => IpAddressPort::V4 {
                addr: *a.ip(),
                port: a.port(),
            },
            SocketAddr::V6(a) => IpAddressPort::V6 {
                addr: *a.ip(),
                port: a.port(),
            },
        }
    }
}

impl Wire for IpAddressPort {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("IpAddressPort", i, |i| {
            let (r, atype) = u8_(i)?;
            let (r, body) = crate::codec::prefixed(Len::U8, r)?;
            let v = match atype {
                0 => return fail(i, ErrorKind::Invalid("address type 0 (invalidAddressType)")),
                1 => {
                    if body.len() != 6 {
                        return fail(i, ErrorKind::Invalid("ipv4_address length must be 6"));
                    }
                    let (p, a) = u32_(body)?;
                    let (_, port) = u16_(p)?;
                    IpAddressPort::V4 {
                        addr: Ipv4Addr::from(a),
                        port,
                    }
                }
                2 => {
                    if body.len() != 18 {
                        return fail(i, ErrorKind::Invalid("ipv6_address length must be 18"));
                    }
                    let a: [u8; 16] = body[..16].try_into().expect("checked length");
                    let (_, port) = u16_(&body[16..])?;
                    IpAddressPort::V6 {
                        addr: Ipv6Addr::from(a),
                        port,
                    }
                }
                t => IpAddressPort::Unknown {
                    address_type: t,
                    data: cx.bytes(body),
                },
            };
            Ok((r, v))
        })
    }

    fn encoded_len(&self) -> usize {
        2 + match self {
            IpAddressPort::V4 { .. } => 6,
            IpAddressPort::V6 { .. } => 18,
            IpAddressPort::Unknown { data, .. } => data.len(),
        }
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        match self {
            IpAddressPort::V4 { addr, port } => {
                b.put_u8(1);
                b.put_u8(6);
                b.put_slice(&addr.octets());
                b.put_u16(*port);
            }
            IpAddressPort::V6 { addr, port } => {
                b.put_u8(2);
                b.put_u8(18);
                b.put_slice(&addr.octets());
                b.put_u16(*port);
            }
            IpAddressPort::Unknown { address_type, data } => {
                b.put_u8(*address_type);
                put_opaque(b, Len::U8, data, "IpAddressPort.data")?;
            }
        }
        Ok(())
    }
}

/// `Destination` (RFC 6940 §6.3.2.2): one entry of a via list or destination list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Destination {
    /// `node(1)`: a Node-ID.
    Node(NodeId),
    /// `resource(2)`: a Resource-ID; only as the last destination-list entry.
    Resource(ResourceId),
    /// `opaque_id_type(3)`: a compressed list meaningful only to the peer that made it.
    OpaqueId(#[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))] Bytes),
    /// The 2-byte short form of an opaque id: a bare `uint16` whose top bit is 1.
    Compressed(u16),
    /// A destination type this codec does not know (top bit 0, value ≥ 4), kept as is.
    Unknown {
        destination_type: u8,
        #[cfg_attr(feature = "serde", serde(serialize_with = "crate::codec::ser_hex"))]
        data: Bytes,
    },
}

impl Destination {
    /// The short form from a 15-bit value (the top bit is forced to 1).
    pub fn compressed(v: u16) -> Destination {
        Destination::Compressed(v | 0x8000)
    }

    pub fn node_id(&self) -> Option<&NodeId> {
        match self {
            Destination::Node(n) => Some(n),
            _ => None,
        }
    }
}

impl Wire for Destination {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("Destination", i, |i| {
            let (r, t) = u8_(i)?;
            if t & 0x80 != 0 {
                let (r, v) = u16_(i)?;
                return Ok((r, Destination::Compressed(v)));
            }
            let (r, data) = crate::codec::prefixed(Len::U8, r)?;
            let d = match t {
                0 => {
                    return fail(
                        i,
                        ErrorKind::Invalid("destination type 0 (invalidDestinationType)"),
                    );
                }
                1 => {
                    if data.len() != cx.opts.node_id_len() {
                        return fail(
                            i,
                            ErrorKind::Invalid(
                                "node destination length is not the overlay's Node-ID length",
                            ),
                        );
                    }
                    let (_, n) = NodeId::decode_from(cx, data)?;
                    Destination::Node(n)
                }
                2 => {
                    let (_, id) = crate::codec::exact(data, |d| ResourceId::decode_from(cx, d))?;
                    Destination::Resource(id)
                }
                3 => {
                    let (_, o) = crate::codec::exact(data, |d| opaque(cx, Len::U8, d))?;
                    Destination::OpaqueId(o)
                }
                t => Destination::Unknown {
                    destination_type: t,
                    data: cx.bytes(data),
                },
            };
            Ok((r, d))
        })
    }

    fn encoded_len(&self) -> usize {
        match self {
            Destination::Compressed(_) => 2,
            Destination::Node(n) => 2 + n.len(),
            Destination::Resource(r) => 2 + r.encoded_len(),
            Destination::OpaqueId(o) => 3 + o.len(),
            Destination::Unknown { data, .. } => 2 + data.len(),
        }
    }

    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        match self {
            Destination::Compressed(v) => b.put_u16(*v | 0x8000),
            Destination::Node(n) => {
                b.put_u8(1);
                b.put_u8(n.len() as u8);
                n.encode(b)?;
            }
            Destination::Resource(r) => {
                b.put_u8(2);
                Len::U8.write(b, r.encoded_len(), "Destination.length")?;
                r.encode(b)?;
            }
            Destination::OpaqueId(o) => {
                b.put_u8(3);
                Len::U8.write(b, 1 + o.len(), "Destination.length")?;
                put_opaque(b, Len::U8, o, "Destination.opaque_id")?;
            }
            Destination::Unknown {
                destination_type,
                data,
            } => {
                b.put_u8(*destination_type & 0x7f);
                put_opaque(b, Len::U8, data, "Destination.destination_data")?;
            }
        }
        Ok(())
    }
}
