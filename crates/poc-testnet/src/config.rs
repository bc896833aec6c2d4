//! A node's `pocd.toml`, in the [`NodeDir`] layout.

use crate::{Error, NodeDir};

/// The configuration of one test node: its own files in its node
/// directory, the network's directory snapshot and manager key one level
/// up, and whatever a harness adds.
#[derive(Debug, Clone, Default)]
pub struct PocdConfig {
    /// The node's PoC id.
    pub poc_id: String,
    /// The loopback UDP port it listens on.
    pub port: u16,
    /// Extra `key = value` lines of its `[directory]` table (e.g. the
    /// directory service to sync from).
    pub directory_extra: String,
    /// Retry deliveries after 1 s, at most 2 s apart, so tests of retries
    /// finish quickly; off, pocd's defaults apply (a benchmark must not
    /// tune the daemon).
    pub fast_retries: bool,
    /// TOML appended after everything else (more tables, `[[relay]]`
    /// entries).
    pub tail: String,
}

impl PocdConfig {
    /// `poc_id` listening on `port`, with pocd's defaults otherwise.
    pub fn new(poc_id: &str, port: u16) -> PocdConfig {
        PocdConfig {
            poc_id: poc_id.to_owned(),
            port,
            ..PocdConfig::default()
        }
    }

    /// The configuration's text.
    pub fn to_toml(&self) -> String {
        let PocdConfig {
            poc_id,
            port,
            directory_extra,
            fast_retries,
            tail,
        } = self;
        let mut text = format!(
            "[node]\npoc_id = \"{poc_id}\"\ndata_dir = \"data\"\nidentity_key = \"identity.key\"\n\
             prekey_key = \"prekey.key\"\nlisten = \"127.0.0.1:{port}\"\n\n\
             [directory]\nsnapshot = \"../directory.snapshot\"\nmanager_key = \"../manager.pub\"\n\
             {directory_extra}"
        );
        if *fast_retries {
            text.push_str("\n[delivery]\nretry_initial_seconds = 1\nretry_max_seconds = 2\n");
        }
        text.push_str(tail);
        text
    }

    /// Writes it to `node`'s `pocd.toml` (replacing an earlier one).
    pub fn write(&self, node: &NodeDir) -> Result<(), Error> {
        let path = node.config();
        std::fs::write(&path, self.to_toml())
            .map_err(Error::io(format!("cannot write {}", path.display())))
    }
}
