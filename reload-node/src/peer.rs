//! Assembling a running peer from its data directory: configuration, credentials, link
//! layer and topology plug-in, all taken from the overlay configuration (the single source
//! of tunables, RFC 6940 §11.1) and the operator's local choices.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use reload_proto::config::OverlayConfig;
use reload_proto::link::{LinkConfig, LinkContext, SecureLinks, WallAnchor};
use reload_proto::node::{Admission, Node, NodeParts, NodeSettings};
use reload_proto::overlay::Overlay;
use reload_proto::rand::Seed;
use reload_proto::sign::Credentials;
use reload_proto::storage::{Storage, StorageLimits};
use reload_proto::topology::{Topologies, TopologyContext};
use reload_wire::link::OverlayLinkType;

/// Local choices of one peer.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// Addresses to listen on, with the link protocol of each.
    pub listen: Vec<(OverlayLinkType, SocketAddr)>,
    /// Write an NSS key log of the TLS and DTLS links here (debugging captures).
    pub key_log: Option<PathBuf>,
    /// Which new links the peer admits.
    pub admission: Admission,
    /// A (D)TLS handshake (and the TCP connect before it) must finish within this.
    pub handshake_timeout: Duration,
    /// Where the values this node stores for the overlay live (RFC 6940 §7).
    pub storage: StorageMode,
    /// What this node stores at most.
    pub storage_limits: StorageLimits,
    /// TURN servers for relayed ICE candidates (ICE overlays, RFC 6940 §9).
    pub turn_servers: Vec<reload_proto::node::TurnServer>,
    /// The application sockets bound for AppAttach over ICE (§6.5.2;
    /// [`crate::shell::Listeners::app_addrs`]).
    pub app_sockets: Vec<SocketAddr>,
}

/// Where a peer keeps what it stores for the overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageMode {
    /// In SQLite, `storage.sqlite3` in the data directory ([`crate::store_db`]): what was
    /// stored survives a restart, and a Store is answered only once it is on disk.
    DataDir,
    /// In memory only: for a client (RFC 6940 §4.2: it stores nothing for others) or a
    /// throw-away node.
    Memory,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            listen: Vec::new(),
            key_log: None,
            admission: Admission::default(),
            handshake_timeout: Duration::from_secs(10),
            storage: StorageMode::DataDir,
            storage_limits: StorageLimits::default(),
            turn_servers: Vec::new(),
            app_sockets: Vec::new(),
        }
    }
}

/// 32 random bytes from the operating system, for the core's CSPRNG (transaction IDs must
/// be unpredictable, RFC 6940 §6.3.2): a peer does not start without them.
pub fn os_seed() -> Result<Seed, String> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| "the operating system's random source failed: cannot start".to_string())?;
    Ok(Seed(b))
}

/// Builds the core of a peer over real (D)TLS links, with the topology plug-in the
/// configuration names (from `topologies`).
pub fn build_with(
    overlay: std::sync::Arc<Overlay>,
    creds: Credentials,
    opts: &PeerOptions,
    topologies: &Topologies,
) -> Result<Node, String> {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let topology = topologies
        .build(&TopologyContext {
            node_id: creds.node_id,
            overlay: &overlay,
        })
        .map_err(|e| e.to_string())?;
    let mut lc = LinkConfig::new(
        overlay.trust().as_ref().clone(),
        overlay.max_message_size(),
        WallAnchor::new(now, wall),
    );
    lc.handshake_timeout = opts.handshake_timeout;
    if let Some(path) = &opts.key_log {
        lc.key_log = Some(crate::datadir::key_log_file(path));
    }
    let ctx = LinkContext::new(lc, &creds).map_err(|e| format!("link layer: {e}"))?;
    let mut settings = NodeSettings::new(opts.listen.clone());
    settings.admission = opts.admission;
    settings.storage_limits = opts.storage_limits.clone();
    settings.turn_servers = opts.turn_servers.clone();
    settings.app_sockets = opts.app_sockets.clone();
    let parts = NodeParts {
        settings,
        overlay,
        credentials: creds,
        topology,
        links: Box::new(SecureLinks::new(ctx)),
    };
    Ok(Node::new(parts, now, wall, os_seed()?))
}

/// [`build_with`] the default plug-ins.
pub fn build(
    config: OverlayConfig,
    creds: Credentials,
    opts: &PeerOptions,
) -> Result<Node, String> {
    build_with(
        Overlay::new(config, None),
        creds,
        opts,
        &Topologies::default(),
    )
}

/// Loads what `reload-node enroll` stored in `dir` and builds the peer, with its signed
/// configuration document (sent to peers whose configuration is older, §6.3.2.1) and —
/// with [`StorageMode::DataDir`] — the values it stored before (`dir/storage.sqlite3`,
/// what expired while it was down removed; logged).
pub fn from_data_dir(dir: &Path, opts: &PeerOptions) -> Result<Node, String> {
    let (doc, config) = crate::datadir::load_config(dir)?;
    let creds = crate::datadir::load_credentials(dir, config.node_id_length)?;
    let node_id_len = config.node_id_length;
    let overlay = Overlay::new(config, Some(bytes::Bytes::from(doc)));
    let node = build_with(overlay, creds, opts, &Topologies::default())?;
    match opts.storage {
        StorageMode::Memory => Ok(node),
        StorageMode::DataDir => {
            let storage = open_storage(dir, node_id_len, &opts.storage_limits)?;
            Ok(node.with_storage(storage))
        }
    }
}

/// Opens the stored values of the peer in `dir` (creating an empty database the first
/// time) and logs what was loaded and what had expired meanwhile.
pub fn open_storage(
    dir: &Path,
    node_id_len: usize,
    limits: &StorageLimits,
) -> Result<Storage, String> {
    let backend =
        crate::store_db::SqliteBackend::open_in(dir, node_id_len).map_err(|e| e.to_string())?;
    let path = backend.path().display().to_string();
    let now_ms = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let (storage, report) = Storage::open(Box::new(backend), limits.clone(), node_id_len, now_ms)
        .map_err(|e| e.to_string())?;
    tracing::info!(
        file = %path,
        "storage loaded: {} values ({} bytes); {} expired while the peer was down and {} \
         with an unreadable certificate were removed",
        report.values,
        storage.bytes(),
        report.expired,
        report.unreadable,
    );
    Ok(storage)
}
