//! Extensive routing modes: Direct Response Routing (RFC 7263) and Relay Peer Routing
//! (RFC 7264). Both travel in the `extensive_routing_mode` forwarding option (type 2,
//! RFC 7263 §8.1) whose value is an [`ExtensiveRoutingModeOption`] (RFC 7263 §5.2.2,
//! RFC 7264 §5.2.1).
//!
//! Reading notes:
//! - `RouteMode` is `enum {(0),DRR(1),RPR(2),(255)}` (RFC 7264 §5.2.1): 0 and 255 are
//!   unnamed placeholders, not "invalid" values. The layout does not depend on the mode,
//!   so every value, 0 included, is decoded and kept; whether the mode is usable is a
//!   processing decision (RFC 7263 §5.4.1: answer Error_Unknown_Extension over SRR).
//! - `destinations<1..2^8-1>`: a one-byte length prefix counting bytes, at least 1. Every
//!   `Destination` takes at least 2 bytes, so this means "not empty"; an empty list is
//!   refused on decode and on encode.
//! - The IGNORE-STATE-KEEPING flag (0x08, RFC 7263 §5.2.1) is a flag of the enclosing
//!   `ForwardingOption`, not part of this value; §5.3.1 says a DRR/RPR sender MUST set it
//!   ([`ExtensiveRoutingModeOption::to_forwarding_option`] takes the flags to use).

use bytes::BufMut;

use crate::codec::{
    Cx, DecodeError, DecodeOptions, EncodeError, In, Len, PResult, Wire, code_point, field,
    items_len,
};
use crate::common::{Destination, IpAddressPort, NodeId};
use crate::ext::{put_vec_min, wire_vec_min};
use crate::header::{ForwardingOption, ForwardingOptionType, option_flags};
use crate::link::OverlayLinkType;

code_point! {
    /// `RouteMode` (RFC 7263 §5.2.2; RFC 7264 §5.2.1 adds RPR).
    RouteMode(u8) {
        /// Direct Response Routing (RFC 7263): the response goes straight to the sender.
        DRR = 1 => "DRR",
        /// Relay Peer Routing (RFC 7264): the response goes through a relay peer.
        RPR = 2 => "RPR",
    }
}

/// `ExtensiveRoutingModeOption` (RFC 7263 §5.2.2, RFC 7264 §5.2.1): the value of an
/// `extensive_routing_mode` [`ForwardingOption`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ExtensiveRoutingModeOption {
    pub routemode: RouteMode,
    /// Link type the responder uses to reach `ipaddressport`.
    pub transport: OverlayLinkType,
    /// Where the response is sent: the sender's address (DRR) or the relay peer's (RPR).
    pub ipaddressport: IpAddressPort,
    /// DRR: the sending peer's Node-ID (RFC 7263 §5.3.1 2.4). RPR: the relay peer's
    /// Node-ID, then the sending peer's (RFC 7264 §5.3.1 2.4). Never empty.
    pub destinations: Vec<Destination>,
}

impl ExtensiveRoutingModeOption {
    /// The flags a DRR/RPR request carries: IGNORE-STATE-KEEPING (RFC 7263 §5.3.1).
    pub const RECOMMENDED_FLAGS: u8 = option_flags::IGNORE_STATE_KEEPING;

    /// A DRR option (RFC 7263 §5.3.1): respond directly to `sender` at `addr`.
    pub fn drr(transport: OverlayLinkType, addr: IpAddressPort, sender: NodeId) -> Self {
        ExtensiveRoutingModeOption {
            routemode: RouteMode::DRR,
            transport,
            ipaddressport: addr,
            destinations: vec![Destination::Node(sender)],
        }
    }

    /// An RPR option (RFC 7264 §5.3.1): respond to `relay` at `relay_addr`, which relays
    /// to `sender`.
    pub fn rpr(
        transport: OverlayLinkType,
        relay_addr: IpAddressPort,
        relay: NodeId,
        sender: NodeId,
    ) -> Self {
        ExtensiveRoutingModeOption {
            routemode: RouteMode::RPR,
            transport,
            ipaddressport: relay_addr,
            destinations: vec![Destination::Node(relay), Destination::Node(sender)],
        }
    }

    /// Whether the destination list has the shape the mode requires: exactly one node
    /// entry for DRR (RFC 7263 §5.4.1), exactly two for RPR (RFC 7264 §5.4.1). A
    /// responder that gets `false` (or an unknown mode) answers Error_Unknown_Extension
    /// over symmetric recursive routing.
    pub fn destinations_match_mode(&self) -> bool {
        let nodes = |n: usize| {
            self.destinations.len() == n
                && self
                    .destinations
                    .iter()
                    .all(|d| matches!(d, Destination::Node(_)))
        };
        match self.routemode {
            RouteMode::DRR => nodes(1),
            RouteMode::RPR => nodes(2),
            _ => false,
        }
    }

    /// Wraps this value in an `extensive_routing_mode` forwarding option with `flags`
    /// (RFC 7263 §5.3.1 requires [`option_flags::IGNORE_STATE_KEEPING`]; see
    /// [`Self::RECOMMENDED_FLAGS`]).
    pub fn to_forwarding_option(&self, flags: u8) -> Result<ForwardingOption, EncodeError> {
        Ok(ForwardingOption {
            option_type: ForwardingOptionType::EXTENSIVE_ROUTING_MODE,
            flags,
            value: self.to_bytes()?,
        })
    }

    /// Decodes the value of `opt` if it is an `extensive_routing_mode` option;
    /// `Ok(None)` for any other option type.
    pub fn from_forwarding_option(
        opt: &ForwardingOption,
        opts: &DecodeOptions,
    ) -> Result<Option<Self>, DecodeError> {
        if opt.option_type != ForwardingOptionType::EXTENSIVE_ROUTING_MODE {
            return Ok(None);
        }
        Self::decode(&opt.value, opts).map(Some)
    }

    /// The first `extensive_routing_mode` option of a forwarding header's option list.
    pub fn find_in(
        options: &[ForwardingOption],
        opts: &DecodeOptions,
    ) -> Result<Option<Self>, DecodeError> {
        match options
            .iter()
            .find(|o| o.option_type == ForwardingOptionType::EXTENSIVE_ROUTING_MODE)
        {
            Some(o) => Self::from_forwarding_option(o, opts),
            None => Ok(None),
        }
    }
}

impl Wire for ExtensiveRoutingModeOption {
    fn decode_from<'a>(cx: &Cx<'a>, i: In<'a>) -> PResult<'a, Self> {
        field("ExtensiveRoutingModeOption", i, |i| {
            let (i, routemode) = field("routemode", i, |i| RouteMode::decode_from(cx, i))?;
            let (i, transport) = field("transport", i, |i| OverlayLinkType::decode_from(cx, i))?;
            let (i, ipaddressport) =
                field("ipaddressport", i, |i| IpAddressPort::decode_from(cx, i))?;
            let (i, destinations) = field("destinations", i, |i| {
                wire_vec_min(
                    cx,
                    Len::U8,
                    1,
                    "destinations<1..2^8-1> must not be empty",
                    i,
                )
            })?;
            Ok((
                i,
                ExtensiveRoutingModeOption {
                    routemode,
                    transport,
                    ipaddressport,
                    destinations,
                },
            ))
        })
    }
    fn encoded_len(&self) -> usize {
        1 + 1 + self.ipaddressport.encoded_len() + 1 + items_len(&self.destinations)
    }
    fn encode<B: BufMut>(&self, b: &mut B) -> Result<(), EncodeError> {
        self.routemode.encode(b)?;
        self.transport.encode(b)?;
        self.ipaddressport.encode(b)?;
        put_vec_min(
            b,
            Len::U8,
            1,
            &self.destinations,
            "ExtensiveRoutingModeOption.destinations<1..2^8-1>",
        )
    }
}
