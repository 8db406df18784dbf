//! The SIP usage for RELOAD (RFC 7904): SIP user agents register their address of record
//! (AOR) in the overlay and call each other with no central proxy.
//!
//! - [`aor`]: AORs as Resource Names (§2), GRUUs (§6);
//! - [`registry`]: the SIP-REGISTRATION Kind (§3, §7) — register, remove, resolve (§4.2);
//! - [`demo_ua`]: a minimal UDP user agent for the sandbox and tests;
//! - [`proxy`]: the SIP front end that makes a peer the registrar and outbound proxy of
//!   unmodified user agents, carrying SIP between peers over AppAttach flows (§5.1).
//!
//! The storing peer's checks (§3.3: USER-NODE-MATCH and the domain restriction of §3.4)
//! run in the node's core, which holds the data.

pub mod aor;
pub mod demo_ua;
#[doc(hidden)]
pub mod fuzzing;
pub mod proxy;
pub mod registry;

pub use proxy::{SipEvent, SipFrontEnd, SipOptions};
/// The SIP library the usage is built on (its message types appear in this API).
pub use rsipstack;

pub const NAME: &str = "sip";
pub const ABOUT: &str = "SIP usage (RFC 7904): registrar and outbound proxy for local SIP user agents, AORs in the overlay, calls over AppAttach";
