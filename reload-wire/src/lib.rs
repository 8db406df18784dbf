//! # reload-wire
//!
//! The RELOAD wire codec (RFC 6940 and its extension RFCs): one Rust type per RFC
//! structure, named as in the RFC, each with `decode` (nom over [`bytes::Bytes`],
//! zero-copy for opaque fields) and `encode` (into any [`bytes::BufMut`]) side by side.
//!
//! The crate is pure: no IO, no clock, no cryptographic policy. What the wire does not
//! say — the overlay's Node-ID length, its max-message-size, the data model of each
//! Kind — comes from [`DecodeOptions`].
//!
//! Guarantees, for any input:
//! - decoding never panics and never loops; every length is checked against the input
//!   left before anything is taken, and a message against max-message-size;
//! - errors name the field path and byte offset ([`DecodeError`]);
//! - every accepted input re-encodes to the same bytes, unknown code points included.
//!
//! Module map (RFC 6940 sections):
//! - [`common`] — NodeId, ResourceId, IpAddressPort (§6.3.1.1), Destination (§6.3.2.2)
//! - [`header`] — ForwardingHeader (§6.3.2), ForwardingOption (§6.3.2.3), fragment field (§6.7)
//! - [`message`] — MessageContents, MessageExtension (§6.3.3), ErrorResponse (§6.3.3.1), Message
//! - [`security`] — SecurityBlock, GenericCertificate, Signature, SignerIdentity (§6.3.4)
//! - [`topology`] — Join, Leave, Update, RouteQuery, Probe (§6.4.2)
//! - [`link`] — Attach, IceCandidate (§6.5.1), AppAttach (§6.5.2), Ping (§6.5.3), ConfigUpdate (§6.5.4)
//! - [`framing`] — FramedMessage (§6.6.2)
//! - [`storage`] — StoredData and the Store/Fetch/Stat/Find bodies (§7), TurnServer (§9)
//! - [`chord`] — ChordUpdate, ChordRouteQueryAns, ChordLeaveData (§10)
//! - [`body`] — typed message bodies by message code
//! - [`ext`] — extension RFCs (7263, 7264, 7363, 7374, 7851, 7904, 8076, 7650)

pub mod body;
pub mod chord;
pub mod codec;
pub mod common;
pub mod ext;
pub mod framing;
pub mod header;
pub mod link;
pub mod message;
pub mod security;
pub mod storage;
pub mod topology;

pub use body::MessageBody;
pub use codec::{DecodeError, DecodeOptions, EncodeError, ErrorKind, Wire};
pub use common::{Destination, IpAddressPort, NodeId, ResourceId};
pub use framing::FramedMessage;
pub use header::{ForwardingHeader, ForwardingOption, Fragment};
pub use message::{
    ErrorCode, ErrorResponse, Message, MessageCode, MessageContents, MessageExtension,
};
pub use security::{GenericCertificate, SecurityBlock, Signature, SignerIdentity};
