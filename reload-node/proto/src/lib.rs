//! # reload-proto
//!
//! The RELOAD (RFC 6940) protocol core, **sans-IO**: it never opens a socket or a file,
//! never reads a clock, never spawns a task. Bytes and time come in, bytes and events go
//! out; the tokio shell of `reload-node` and the deterministic simulator ([`sim`]) drive
//! the very same code.
//!
//! - [`config`]: the overlay configuration document (§11.1), typed as
//!   [`config::OverlayConfig`]; [`check`]: its complete check (signatures, sequence);
//! - [`identity`]: overlay hash, Resource-IDs (§10.2), certificates with their Node-IDs and
//!   user names (§11.3, §14.15), self-signed identities (§11.3.1), the trust policy;
//! - [`sign`]: message signatures (§6.3.4), stored-data signatures (§7.1), the certificate
//!   cache;
//! - [`link`]: the overlay link layer (§6.6): framing, TLS-TCP-FH-NO-ICE,
//!   DTLS-UDP-SR-NO-ICE, peers bound to the Node-IDs their certificates prove;
//! - [`node`]: the node core — message receipt and forwarding (§6.1), symmetric recursive
//!   routing (§6.2), transactions with end-to-end retransmission (§6.2.1), fragmentation
//!   (§6.7), the forwarding and link management methods (§6.4, §6.5) — driven by
//!   `handle_input`, `handle_timeout`, `poll_transmit`, `poll_event` and `poll_timeout`;
//! - [`topology`]: the topology plug-in interface, with CHORD-RELOAD (§10);
//! - [`sim`]: the deterministic simulator that drives many cores on a virtual clock.

pub mod check;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod link;
pub mod node;
pub mod overlay;
pub mod rand;
pub mod sign;
pub mod sim;
pub mod storage;
pub mod topology;
