//! `pocd.toml`: where the node keeps its state and keys, where it listens,
//! which directory it trusts, and its limits.
//!
//! ```toml
//! [node]
//! poc_id = "EST.cert"
//! data_dir = "/var/lib/pocd"          # 0700; holds pocd.sqlite and pocd.sock
//! identity_key = "identity.key"       # 0600; relative paths are relative to this file
//! prekey_key = "prekey.key"           # 0600
//! listen = "127.0.0.1:7401"
//!
//! [directory]
//! snapshot = "directory.snapshot"     # signed by the directory manager
//! manager_key = "manager.pub"         # pinned manager public key
//! service = "directory.example:7500"  # optional: sync from the directory service
//! sync_interval_seconds = 3600        # how often (also `poc directory sync`)
//!
//! [delivery]
//! message_ttl_hours = 168             # give up (and report) after this
//! retry_initial_seconds = 2
//! retry_max_seconds = 300
//!
//! [pings]
//! auto_reply = true                   # answer directory pings without a human
//!
//! [limits]
//! rejections_recorded_per_minute = 120  # per peer or relay; past it, refused unrecorded
//!
//! [[relay]]                           # zero or more, in order of preference
//! name = "relay-un"                   # shown in `poc outbox` ("via relay relay-un")
//! address = "relay.example.org:7501"
//! public_key = "<64 hex digits>"      # the relay's key, as `poc-relay --keygen` printed it
//! ```
//!
//! Relays are optional: without `[[relay]]` the node delivers directly only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use poc_proto::PocId;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// This node.
    pub(crate) node: NodeConfig,
    /// The directory it trusts.
    pub(crate) directory: DirectoryConfig,
    /// Outbox behaviour.
    #[serde(default)]
    pub(crate) delivery: DeliveryConfig,
    /// Ping handling.
    #[serde(default)]
    pub(crate) pings: PingConfig,
    /// `[[relay]]`: store-and-forward relays, in order of preference.
    #[serde(default, rename = "relay")]
    pub(crate) relays: Vec<RelayConfig>,
    /// Limits on what peers can make the node do.
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LimitsConfig {
    /// Refused envelopes recorded whole per origin (a peer, or a relay the
    /// node fetches from) and minute; past it, one entry says so and the
    /// rest of that minute are refused without being recorded, so that a
    /// peer sending garbage cannot fill the disk with it.
    pub(crate) rejections_recorded_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            rejections_recorded_per_minute: 120,
        }
    }
}

/// One `[[relay]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelayConfig {
    /// A short name (letters, digits, `.`, `_`, `-`).
    pub(crate) name: PocId,
    /// `host:port` of the relay's QUIC endpoint.
    pub(crate) address: String,
    /// The relay's Ed25519 identity key, 64 hex digits (pinned: no other key
    /// is accepted from that address).
    pub(crate) public_key: String,
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeConfig {
    /// The PoC this node speaks for.
    pub(crate) poc_id: PocId,
    /// State directory (0700).
    pub(crate) data_dir: PathBuf,
    /// Identity key file.
    pub(crate) identity_key: PathBuf,
    /// Prekey secret file.
    pub(crate) prekey_key: PathBuf,
    /// QUIC listen address.
    pub(crate) listen: SocketAddr,
}

/// `[directory]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirectoryConfig {
    /// Signed directory snapshot file.
    pub(crate) snapshot: PathBuf,
    /// The directory manager's public key file.
    pub(crate) manager_key: PathBuf,
    /// The directory service's snapshot address (`host:port`), if the node
    /// syncs from it; the snapshot file above is then only the first link.
    #[serde(default)]
    pub(crate) service: Option<String>,
    /// How often to sync from the service, in seconds.
    #[serde(default = "default_sync_interval")]
    pub(crate) sync_interval_seconds: u64,
}

fn default_sync_interval() -> u64 {
    3600
}

/// `[delivery]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DeliveryConfig {
    /// How long a message may wait for delivery.
    pub(crate) message_ttl_hours: u64,
    /// First retry delay.
    pub(crate) retry_initial_seconds: u64,
    /// Longest retry delay.
    pub(crate) retry_max_seconds: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            message_ttl_hours: 168,
            retry_initial_seconds: 2,
            retry_max_seconds: 300,
        }
    }
}

/// `[pings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PingConfig {
    /// Reply to directory pings automatically.
    pub(crate) auto_reply: bool,
}

impl Default for PingConfig {
    fn default() -> Self {
        PingConfig { auto_reply: true }
    }
}

impl Config {
    /// Reads and checks a configuration file; relative paths in it are
    /// resolved against the file's directory.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid pocd configuration", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.node.data_dir,
            &mut config.node.identity_key,
            &mut config.node.prekey_key,
            &mut config.directory.snapshot,
            &mut config.directory.manager_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let max_ttl = poc_proto::envelope::MAX_MESSAGE_AGE.0 / 3600;
        if config.delivery.message_ttl_hours == 0 || config.delivery.message_ttl_hours > max_ttl {
            bail!(
                "{}: [delivery] message_ttl_hours must be between 1 and {max_ttl} (receivers refuse older messages)",
                path.display()
            );
        }
        if config.delivery.retry_initial_seconds == 0
            || config.delivery.retry_max_seconds < config.delivery.retry_initial_seconds
        {
            bail!(
                "{}: [delivery] needs 0 < retry_initial_seconds <= retry_max_seconds",
                path.display()
            );
        }
        let mut names = std::collections::HashSet::new();
        for relay in &config.relays {
            if !names.insert(relay.name.as_str()) {
                bail!(
                    "{}: two [[relay]] entries are named {}",
                    path.display(),
                    relay.name
                );
            }
            relay.key().with_context(|| {
                format!(
                    "{}: [[relay]] {}: bad public_key",
                    path.display(),
                    relay.name
                )
            })?;
        }
        Ok(config)
    }

    /// The SQLite database.
    pub(crate) fn database_path(&self) -> PathBuf {
        self.node.data_dir.join("pocd.sqlite")
    }

    /// The control socket.
    pub(crate) fn control_socket(&self) -> PathBuf {
        self.node.data_dir.join("pocd.sock")
    }
}

impl RelayConfig {
    /// The pinned relay key.
    pub(crate) fn key(&self) -> anyhow::Result<poc_proto::keys::IdentityPublicKey> {
        poc_relay::client::PinnedRelay::parse_key(&self.public_key).map_err(anyhow::Error::msg)
    }
}
