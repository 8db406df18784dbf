//! Assembling a running peer from its data directory: configuration, credentials, trust
//! policy, link layer and CHORD-RELOAD, all taken from the overlay configuration (the
//! single source of tunables, RFC 6940 §11.1).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use reload_wire::link::OverlayLinkType;

use reload_proto::check::trust_policy;
use reload_proto::config::OverlayConfig;
use reload_proto::link::{LinkConfig, LinkContext};
use reload_proto::node::{Node, NodeSettings};
use reload_proto::sign::{Credentials, Verifier};
use reload_proto::topology::TopologySettings;
use reload_proto::topology::chord::Chord;

/// Local choices of one peer.
#[derive(Clone, Debug, Default)]
pub struct PeerOptions {
    /// Addresses to listen on, with the link protocol of each.
    pub listen: Vec<(OverlayLinkType, SocketAddr)>,
    /// Write an NSS key log of the TLS and DTLS links here (debugging captures).
    pub key_log: Option<PathBuf>,
}

/// A random seed from the operating system, for transaction IDs.
pub fn os_seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_be_bytes(b)
}

/// Builds the core of a peer over real (D)TLS links.
pub fn build(
    config: &OverlayConfig,
    creds: Credentials,
    opts: &PeerOptions,
) -> Result<Node, String> {
    reload_proto::identity::check_topology(&config.topology_plugin, config.node_id_length)
        .map_err(|e| e.to_string())?;
    let trust = trust_policy(config);
    let mut lc = LinkConfig::new(trust.clone(), config.max_message_size as usize);
    if let Some(path) = &opts.key_log {
        lc.key_log = Some(crate::datadir::key_log_file(path));
    }
    let ctx = LinkContext::new(lc, &creds).map_err(|e| format!("link layer: {e}"))?;
    let settings = NodeSettings::from_config(config, opts.listen.clone());
    let topo = Chord::new(creds.node_id, TopologySettings::from_config(config));
    let verifier = Verifier::new(trust, settings.cert_cache_size);
    let node = Node::new(
        settings,
        creds,
        verifier,
        Box::new(topo),
        Instant::now(),
        SystemTime::now(),
        os_seed(),
    );
    Ok(node.with_links(Arc::<LinkContext>::clone(&ctx)))
}

/// Loads what `reload-node enroll` stored in `dir` and builds the peer, with its signed
/// configuration document (sent to peers whose configuration is older, §6.3.2.1).
pub fn from_data_dir(dir: &Path, opts: &PeerOptions) -> Result<Node, String> {
    let (config, creds) = crate::enroll::load_credentials(dir).map_err(|e| e.to_string())?;
    let path = dir.join(crate::datadir::CONFIG_FILE);
    let doc = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(build(&config, creds, opts)?.with_configuration(config, bytes::Bytes::from(doc)))
}
