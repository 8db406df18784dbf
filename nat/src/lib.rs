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
//! - [`ice`]: one ICE session per Attach (candidates, priorities, checks, nomination,
//!   keepalives), around `rtc-ice` (0.21.1, the webrtc-rs sans-IO agent);
//!   `tests/ice_pair.rs` pins what we rely on of that agent on a virtual clock.

pub mod ice;
pub mod stun;
