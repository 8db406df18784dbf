//! # reload-node
//!
//! The RELOAD overlay peer (RFC 6940). This crate will hold the **sans-IO core** — routing
//! (§6.1–§6.2), transactions and end-to-end retransmission, the topology plug-in trait
//! with CHORD-RELOAD (§10), storage and access control (§7), signing and verification
//! (§6.3.4, §7.1), overlay configuration (§11.1), fragmentation (§6.7) and the link state
//! machines (§6.6) — driven by `handle_input`, `handle_timeout`, `poll_transmit`,
//! `poll_event` and `poll_timeout`; a thin tokio shell that moves bytes and time; the
//! deterministic simulator; and the `reload-node` binary.
//!
//! Today it is empty: the wire codec it builds on lives in `reload-wire`.
