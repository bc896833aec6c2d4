//! A PoC of a test network: its keys, its certificate, and the directory its
//! node runs in.

use std::path::{Path, PathBuf};

use poc_proto::certificate::{CertificateBody, Endpoint, PocCertificate, Prekey, PrekeyId};
use poc_proto::keys::{IdentityKeyPair, PrekeySecret};
use poc_proto::{Issuer, PocId, Role, Seconds};

use crate::{Error, manager_key, seed, state_root, try_free_udp_port, try_now};

/// A node's directory and the files pocd keeps in it.
///
/// Every harness uses the same layout: the configuration, key files and log
/// in the directory, the node's own state under `data/`, and the network's
/// shared files (directory snapshot, manager key) one level up.
#[derive(Debug, Clone)]
pub struct NodeDir {
    path: PathBuf,
}

impl NodeDir {
    /// The node directory at `path`.
    pub fn new(path: PathBuf) -> NodeDir {
        NodeDir { path }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `pocd.toml`.
    pub fn config(&self) -> PathBuf {
        self.path.join("pocd.toml")
    }

    /// The identity key file (secret, 0600).
    pub fn identity_key(&self) -> PathBuf {
        self.path.join("identity.key")
    }

    /// The prekey file (secret, 0600).
    pub fn prekey_key(&self) -> PathBuf {
        self.path.join("prekey.key")
    }

    /// pocd's log (its stderr).
    pub fn log(&self) -> PathBuf {
        self.path.join("pocd.log")
    }

    /// pocd's data directory (`data_dir` in the configuration).
    pub fn data(&self) -> PathBuf {
        self.path.join("data")
    }

    /// The control socket pocd opens in its data directory.
    pub fn socket(&self) -> PathBuf {
        self.data().join("pocd.sock")
    }

    /// The SQLite store pocd keeps in its data directory.
    pub fn database(&self) -> PathBuf {
        self.data().join("pocd.sqlite")
    }
}

/// A certified PoC with its key files written, ready for a configuration.
#[derive(Debug)]
pub struct PocSetup {
    /// Its id.
    pub id: PocId,
    /// Its role.
    pub role: Role,
    /// The loopback UDP port of its direct endpoint.
    pub port: u16,
    /// Its identity key seed.
    pub identity: [u8; 32],
    /// Its node directory.
    pub node: NodeDir,
    /// Its certificate, signed by its issuer.
    pub certificate: PocCertificate,
}

impl PocSetup {
    /// Makes `id`'s keys (from [`seed`]), picks a free port, writes the
    /// identity and prekey files (0600) into `network_root/id`, and has
    /// `issuer` (its State's [`state_root`], or the [`manager_key`]) sign a
    /// certificate valid from a day ago for `valid_for`, with a direct
    /// endpoint on that port.
    pub fn create(
        network_root: &Path,
        id: &str,
        issuer: Issuer,
        role: Role,
        valid_for: Seconds,
    ) -> Result<PocSetup, Error> {
        let poc_id = PocId::new(id).map_err(|e| Error::BadName(e.to_string()))?;
        let identity = seed(&format!("identity {id}"));
        let prekey_seed = seed(&format!("prekey {id}"));
        let port = try_free_udp_port()?;
        let now = try_now()?;
        let body = CertificateBody {
            poc_id: poc_id.clone(),
            issuer,
            role,
            identity_key: IdentityKeyPair::from_secret_bytes(&identity).public(),
            prekey: Prekey {
                // Unique per node of a run, and never 0.
                id: PrekeyId(u64::from(port)),
                public: PrekeySecret::from_secret_bytes(&prekey_seed).public(),
                valid_from: now.minus(Seconds::DAY),
                valid_until: now.plus(valid_for),
            },
            valid_from: now.minus(Seconds::DAY),
            valid_until: now.plus(valid_for),
            endpoints: vec![Endpoint::Direct {
                address: format!("127.0.0.1:{port}"),
            }],
        };
        let certificate = match issuer {
            Issuer::State(state) => PocCertificate::issue_by_state(&body, &state_root(state)),
            Issuer::DirectoryManager => PocCertificate::issue_by_manager(&body, &manager_key()),
        }
        .map_err(|e| Error::Signing {
            what: format!("{id}'s certificate"),
            reason: e.to_string(),
        })?;
        let node = NodeDir::new(network_root.join(id));
        std::fs::create_dir_all(node.path()).map_err(Error::io(format!(
            "cannot create {}",
            node.path().display()
        )))?;
        poc_keyfile::write_secret(
            &node.identity_key(),
            poc_keyfile::KeyKind::Identity,
            Some(id),
            &identity,
        )?;
        poc_keyfile::write_secret(
            &node.prekey_key(),
            poc_keyfile::KeyKind::Prekey,
            Some(id),
            &prekey_seed,
        )?;
        Ok(PocSetup {
            id: poc_id,
            role,
            port,
            identity,
            node,
            certificate,
        })
    }
}
