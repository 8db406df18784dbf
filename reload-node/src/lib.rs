//! # reload-node
//!
//! The RELOAD overlay peer (RFC 6940) around the sans-IO protocol core of `reload-proto`:
//!
//! - [`shell`]: the tokio shell that moves bytes between sockets and the core and feeds it
//!   time — it makes no protocol decision;
//! - [`client`]: the async client API of a running node ([`client::NodeHandle`]): requests
//!   through the overlay (ping, trace, any method), the node's state, and the seam where
//!   usages serve the methods they define;
//! - [`peer`]: a peer assembled from its data directory and local options (links, topology
//!   plug-in from the configuration);
//! - [`control`]: the operator's control socket (status, ping, trace) on a running peer;
//! - [`datadir`]: a node's data directory (credentials, configuration, key log files);
//! - [`store_db`]: the values the peer stores for the overlay, in SQLite in its data
//!   directory (the storage engine's durable backend, RFC 6940 §7);
//! - [`enroll`]: the enrollment client (§11.2, §11.3): configuration and certificate from
//!   the overlay's servers.
//!
//! The `reload-node` command line is the `reload-node-cli` package (`reload-node/cli`).

pub mod app;
pub mod client;
pub mod control;
pub mod datadir;
pub mod enroll;
#[doc(hidden)]
pub mod fuzzing;
pub mod peer;
pub mod shell;
pub mod store_db;
pub mod turn_service;
