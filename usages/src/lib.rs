//! # reload-usages
//!
//! Usages of the RELOAD overlay (RFC 6940 §5.2), built on `reload-node`'s public API only:
//! a usage gets a [`reload_node::client::NodeHandle`] to a running node, serves the
//! methods it defines ([`reload_node::client::NodeHandle::serve`]: each request arrives
//! with its decoded body and the signer's verified certificate) and sends requests of its
//! own.
//!
//! - [`echo`]: a small test usage on the experimental message codes (RFC 6940 §14.8):
//!   it answers `exp_a_req` with its body, for interoperability and end-to-end tests of the
//!   usage seam.
//!
//! - [`sip`]: the SIP usage (RFC 7904) — the SIP-REGISTRATION Kind, AOR lookup, GRUUs,
//!   and a SIP front end (registrar and outbound proxy) for unmodified user agents; it
//!   needs settings (addresses) and is started with [`sip::SipFrontEnd::start`].
//!
//! To come: ReDiR (RFC 7374), ShaRe (RFC 8076), CoAP (RFC 7650).

pub mod echo;
pub mod sip;

use reload_node::client::NodeHandle;

/// A usage a peer can run: its name (as `reload-node run --usage NAME` takes it) and what
/// it does.
#[derive(Clone, Copy, Debug)]
pub struct UsageInfo {
    pub name: &'static str,
    pub about: &'static str,
}

/// The usages this crate provides.
pub const USAGES: &[UsageInfo] = &[UsageInfo {
    name: echo::NAME,
    about: echo::ABOUT,
}];

/// Starts the usage called `name` on the node of `node` (in the current tokio runtime).
/// It runs until the node stops.
pub async fn start(name: &str, node: &NodeHandle) -> Result<tokio::task::JoinHandle<()>, String> {
    match name {
        echo::NAME => echo::start(node).await.map_err(|e| e.to_string()),
        other => Err(format!(
            "no usage {other:?} (usages: {})",
            USAGES.iter().map(|u| u.name).collect::<Vec<_>>().join(", ")
        )),
    }
}
