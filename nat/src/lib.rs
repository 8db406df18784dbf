//! # reload-nat
//!
//! NAT traversal for RELOAD links: the ICE profile of RFC 6940 §6.5.1.3–§6.5.1.14 (full
//! ICE, one component, peers acting as STUN servers for each other), TURN relays found
//! through the TURN-SERVICE Kind (§9), built on the sans-IO `rtc-ice`, `rtc-stun` and
//! `rtc-turn` crates.
//!
//! Today it is empty: the overlay runs No-ICE until this lands.
