//! # reload-node
//!
//! The RELOAD overlay peer (RFC 6940).
//!
//! Today: what a peer must know before it sends a single message —
//! - [`config`]: the overlay configuration document (§11.1), typed as [`config::OverlayConfig`],
//!   the single source of every tunable;
//! - [`identity`]: overlay hash, Resource-IDs (§10.2), certificates and their Node-IDs and
//!   user names (§11.3, §14.15), self-signed identities (§11.3.1);
//! - [`sign`]: message signatures (§6.3.4), stored-data signatures (§7.1) and the
//!   certificate cache.
//!
//! To come: the **sans-IO core** — routing (§6.1–§6.2), transactions, CHORD-RELOAD (§10),
//! storage (§7), fragmentation (§6.7) and link state machines (§6.6) — driven by
//! `handle_input`, `handle_timeout`, `poll_transmit`, `poll_event` and `poll_timeout`; the
//! tokio shell; and the deterministic simulator.

pub mod check;
pub mod config;
pub mod identity;
pub mod sign;
