//! # reload-nat
//!
//! NAT traversal for RELOAD links: the ICE profile of RFC 6940 §6.5.1.3–§6.5.1.14 (full
//! ICE, one component, peers acting as STUN servers for each other), TURN relays found
//! through the TURN-SERVICE Kind (§9), built on the sans-IO `rtc-ice`, `rtc-stun` and
//! `rtc-turn` crates.
//!
//! - [`stun`]: STUN Binding — the server side every peer runs on its overlay ports
//!   (§6.5.1.4) and the request a node sends to learn its server-reflexive address.
//!
//! The ICE agent is `rtc-ice` (0.21.1, the webrtc-rs sans-IO agent): `tests/ice_pair.rs`
//! pins what we rely on of it (our candidates only, both sides agreeing on the selected
//! pair, failure within its timeouts) on a virtual clock. To come (issue 13): driving it
//! from the core for Attach and AppAttach, TURN allocations.

pub mod stun;
