//! `poc-relay.toml`.
//!
//! ```toml
//! [relay]
//! listen = "0.0.0.0:7501"
//! data_dir = "/var/lib/poc-relay"     # 0700; holds relay-log/ (or relay.sqlite)
//! identity_key = "relay.key"          # 0600; relative paths are relative to this file
//! metrics_listen = "127.0.0.1:9501"   # optional; loopback only
//! storage = "log"                     # or "sqlite", or "memory" (mail lost on restart)
//!
//! [directory]
//! snapshot = "directory.snapshot"     # signed by the directory manager
//! manager_key = "manager.pub"
//! reload_seconds = 10                 # re-read the snapshot when it changes
//!
//! [limits]                            # every key optional; defaults shown
//! max_envelope_bytes = 4194304
//! mailbox_max_envelopes = 10000
//! mailbox_max_bytes = 268435456
//! deposits_per_second = 100           # per sender
//! deposit_burst = 200
//! reads_per_second = 50               # fetches and acks per client; paced beyond
//! read_burst = 200
//! max_page_items = 256
//! max_page_bytes = 1048576           # with max_envelope_bytes, a page stays within what nodes read (6 MiB)
//! max_wait_seconds = 20               # long poll
//! max_retention_hours = 336
//! expiry_sweep_seconds = 60
//! max_connections = 1024
//! handshakes_per_second_per_ip = 20
//! handshake_burst_per_ip = 20
//! max_streams_per_connection = 16     # requests in flight per client connection
//! max_connections_per_client = 8      # connections one PoC identity may hold open
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use poc_proto::Seconds;
use serde::Deserialize;

use crate::core::RelayLimits;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[relay]`.
    pub relay: RelaySection,
    /// `[directory]`.
    pub directory: DirectorySection,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
}

/// Where the relay keeps state and listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// State directory.
    pub data_dir: PathBuf,
    /// The relay's Ed25519 identity key file.
    pub identity_key: PathBuf,
    /// Prometheus metrics address (loopback only).
    pub metrics_listen: Option<SocketAddr>,
    /// Storage backend.
    #[serde(default)]
    pub storage: Storage,
}

/// Storage backends.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// An append-only segment log in `data_dir/relay-log`.
    #[default]
    Log,
    /// SQLite in `data_dir/relay.sqlite`.
    Sqlite,
    /// Memory only.
    Memory,
}

impl Storage {
    /// The name used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Storage::Log => "log",
            Storage::Sqlite => "sqlite",
            Storage::Memory => "memory",
        }
    }
}

/// The directory the relay serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySection {
    /// Signed snapshot file.
    pub snapshot: PathBuf,
    /// Manager public key file.
    pub manager_key: PathBuf,
    /// How often to look for a newer snapshot.
    #[serde(default = "default_reload")]
    pub reload_seconds: u64,
}

fn default_reload() -> u64 {
    10
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct LimitsSection {
    pub max_envelope_bytes: usize,
    pub mailbox_max_envelopes: u64,
    pub mailbox_max_bytes: u64,
    pub deposits_per_second: u32,
    pub deposit_burst: u32,
    pub reads_per_second: u32,
    pub read_burst: u32,
    pub max_page_items: u16,
    pub max_page_bytes: usize,
    pub max_wait_seconds: u64,
    pub max_retention_hours: u64,
    pub expiry_sweep_seconds: u64,
    pub max_connections: usize,
    pub handshakes_per_second_per_ip: u32,
    pub handshake_burst_per_ip: u32,
    pub max_streams_per_connection: u32,
    pub max_connections_per_client: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let d = RelayLimits::default();
        let t = poc_transport::Limits::default();
        LimitsSection {
            max_envelope_bytes: d.max_envelope_bytes,
            mailbox_max_envelopes: d.mailbox_max_envelopes,
            mailbox_max_bytes: d.mailbox_max_bytes,
            deposits_per_second: d.deposits_per_second,
            deposit_burst: d.deposit_burst,
            reads_per_second: d.reads_per_second,
            read_burst: d.read_burst,
            max_page_items: d.max_page_items,
            max_page_bytes: d.max_page_bytes,
            max_wait_seconds: d.max_wait.as_secs(),
            max_retention_hours: d.max_retention.0 / 3600,
            expiry_sweep_seconds: 60,
            max_connections: t.max_connections,
            handshakes_per_second_per_ip: t.handshakes_per_second_per_ip,
            handshake_burst_per_ip: t.handshake_burst_per_ip,
            max_streams_per_connection: d.max_streams_per_connection,
            max_connections_per_client: d.max_connections_per_client,
        }
    }
}

impl Config {
    /// Reads and checks a configuration file; relative paths are resolved
    /// against its directory.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text).with_context(|| {
            format!("{} is not a valid poc-relay configuration", path.display())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.relay.data_dir,
            &mut config.relay.identity_key,
            &mut config.directory.snapshot,
            &mut config.directory.manager_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let l = &config.limits;
        if l.max_envelope_bytes == 0 || l.max_envelope_bytes > poc_proto::limits::MAX_ENVELOPE_BYTES
        {
            bail!(
                "{}: [limits] max_envelope_bytes must be between 1 and {}",
                path.display(),
                poc_proto::limits::MAX_ENVELOPE_BYTES
            );
        }
        if l.max_page_items == 0
            || l.max_page_bytes == 0
            || l.deposits_per_second == 0
            || l.reads_per_second == 0
        {
            bail!(
                "{}: [limits] max_page_items, max_page_bytes, deposits_per_second and reads_per_second must be positive",
                path.display()
            );
        }
        let pages = config.relay_limits().max_page_response_bytes();
        if pages > crate::wire::MAX_PAGE_RESPONSE_BYTES {
            bail!(
                "{}: [limits] a page could be {pages} bytes (max_page_bytes + max_envelope_bytes + framing), \
                 more than the {} a node reads: lower max_page_bytes",
                path.display(),
                crate::wire::MAX_PAGE_RESPONSE_BYTES
            );
        }
        if l.max_wait_seconds >= 25 {
            bail!(
                "{}: [limits] max_wait_seconds must be below 25 (the transport's request timeout is 30 s)",
                path.display()
            );
        }
        // A paced fetch may wait read_burst / reads_per_second for its turn
        // before its long poll starts; both must fit the client's timeout.
        let pacing = u64::from(l.read_burst) / u64::from(l.reads_per_second.max(1));
        if pacing.saturating_add(l.max_wait_seconds) >= 25 {
            bail!(
                "{}: [limits] read_burst / reads_per_second ({pacing} s, the longest a fetch waits for its turn) \
                 plus max_wait_seconds must be below 25 (the transport's request timeout is 30 s)",
                path.display()
            );
        }
        if let Some(metrics) = config.relay.metrics_listen
            && !metrics.ip().is_loopback()
        {
            bail!(
                "{}: [relay] metrics_listen {metrics} must be a loopback address",
                path.display()
            );
        }
        Ok(config)
    }

    /// The relay limits.
    pub fn relay_limits(&self) -> RelayLimits {
        let l = &self.limits;
        RelayLimits {
            max_envelope_bytes: l.max_envelope_bytes,
            mailbox_max_envelopes: l.mailbox_max_envelopes,
            mailbox_max_bytes: l.mailbox_max_bytes,
            deposits_per_second: l.deposits_per_second,
            deposit_burst: l.deposit_burst,
            reads_per_second: l.reads_per_second,
            read_burst: l.read_burst,
            max_page_items: l.max_page_items,
            max_page_bytes: l.max_page_bytes,
            max_wait: Duration::from_secs(l.max_wait_seconds),
            max_retention: Seconds::hours(l.max_retention_hours.max(1)),
            max_streams_per_connection: l.max_streams_per_connection.max(1),
            max_connections_per_client: l.max_connections_per_client.max(1),
        }
    }

    /// The SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.relay.data_dir.join("relay.sqlite")
    }

    /// The segment log's directory.
    pub fn log_dir(&self) -> PathBuf {
        self.relay.data_dir.join("relay-log")
    }

    /// The other durable backend's data, if `data_dir` holds any: mail
    /// there would never be delivered under this configuration, so the
    /// relay refuses to start rather than strand it.
    pub fn other_backends_data(&self) -> Option<PathBuf> {
        let other = match self.relay.storage {
            Storage::Log => self.database_path(),
            Storage::Sqlite => self.log_dir(),
            Storage::Memory => return None,
        };
        other.exists().then_some(other)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn load(limits: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poc-relay.toml");
        std::fs::write(
            &path,
            format!(
                "[relay]\nlisten = \"127.0.0.1:7501\"\ndata_dir = \"data\"\nidentity_key = \"relay.key\"\n\n\
                 [directory]\nsnapshot = \"directory.snapshot\"\nmanager_key = \"manager.pub\"\n\n\
                 [limits]\n{limits}"
            ),
        )
        .unwrap();
        Config::load(&path)
    }

    #[test]
    fn pages_larger_than_a_node_reads_are_refused_at_load() {
        let defaults = load("").unwrap().relay_limits();
        assert!(defaults.max_page_response_bytes() <= crate::wire::MAX_PAGE_RESPONSE_BYTES);
        // With 4 MiB envelopes, 4 MiB pages could answer ~8 MiB: every
        // client's fetch would fail, forever.
        let err = load("max_page_bytes = 4194304\n").unwrap_err().to_string();
        assert!(err.contains("lower max_page_bytes"), "{err}");
        // Smaller envelopes leave room for larger pages.
        load("max_envelope_bytes = 65536\nmax_page_bytes = 4194304\n").unwrap();
    }

    #[test]
    fn read_pacing_that_outlasts_a_clients_timeout_is_refused_at_load() {
        let defaults = load("").unwrap().relay_limits();
        assert_eq!((defaults.reads_per_second, defaults.read_burst), (50, 200));
        // 200 reads owed at 10 a second: a fetch could wait 20 s for its
        // turn, then 20 s more on an empty mailbox.
        let err = load("reads_per_second = 10\n").unwrap_err().to_string();
        assert!(err.contains("read_burst / reads_per_second"), "{err}");
        let err = load("reads_per_second = 0\n").unwrap_err().to_string();
        assert!(err.contains("must be positive"), "{err}");
        load("reads_per_second = 10\nmax_wait_seconds = 4\n").unwrap();
    }
}
