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
//! The peer itself:
//! - [`node`]: the **sans-IO core** — message receipt and forwarding (§6.1), symmetric
//!   recursive routing (§6.2), transactions with end-to-end retransmission (§6.2.1),
//!   signatures at the destination, Attach/Ping/Join/Leave/Update/RouteQuery/Probe —
//!   driven by `handle_input`, `handle_timeout`, `poll_transmit`, `poll_event` and
//!   `poll_timeout`;
//! - [`topology`]: the topology plug-in interface, with CHORD-RELOAD (§10);
//! - [`sim`]: the deterministic simulator that drives many cores on a virtual clock.
//!
//! - [`link`]: the (D)TLS link layer under the core (§6.6): framing, TLS-TCP-FH-NO-ICE,
//!   DTLS-UDP-SR-NO-ICE, peers bound to the Node-IDs in their certificates;
//! - [`shell`] and [`run`]: the tokio shell that moves bytes and time, and `reload-node run`;
//!   [`control`]: the operator's socket (status, ping, trace); [`sandbox`]: a whole overlay
//!   on loopback.
//!
//! To come: storage (§7), ICE (§6.5.1 with ICE), usages.

pub mod client;
pub mod control;
pub mod datadir;
pub mod enroll;
pub mod peer;
pub mod run;
pub mod sandbox;
pub mod shell;
