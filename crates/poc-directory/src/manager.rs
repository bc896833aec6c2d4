//! The directory manager's key pair: `manager.key` (0600) and `manager.pub`.

use std::path::{Path, PathBuf};

use poc_keyfile::{KeyFileError, KeyKind};
use poc_proto::keys::{ManagerKeyPair, ManagerPublicKey};

use crate::rng::OsRandom;

/// The label written into the manager's key files.
pub const LABEL: &str = "directory-manager";

/// Where [`create`] put the keys.
#[derive(Debug, Clone)]
pub struct Created {
    /// The secret key file (0600).
    pub secret: PathBuf,
    /// The public key file, to pin in every node's configuration.
    pub public: PathBuf,
    /// The public key.
    pub key: ManagerPublicKey,
}

/// Creates `dir/manager.key` and `dir/manager.pub`; refuses to overwrite.
pub fn create(dir: &Path) -> Result<Created, KeyFileError> {
    let secret = dir.join("manager.key");
    let public = dir.join("manager.pub");
    if public.exists() {
        return Err(KeyFileError::Exists { path: public });
    }
    let pair = ManagerKeyPair::generate(&mut OsRandom::new());
    poc_keyfile::write_secret(
        &secret,
        KeyKind::Manager,
        Some(LABEL),
        &pair.to_secret_bytes(),
    )?;
    let key = pair.public();
    poc_keyfile::write_public(&public, KeyKind::Manager, Some(LABEL), &key.to_bytes())?;
    Ok(Created {
        secret,
        public,
        key,
    })
}

/// Reads the manager's secret key.
pub fn load_secret(path: &Path) -> Result<ManagerKeyPair, KeyFileError> {
    let file = poc_keyfile::read_secret(path, KeyKind::Manager)?;
    Ok(ManagerKeyPair::from_secret_bytes(&file.secret))
}

/// Reads the manager's public key.
pub fn load_public(path: &Path) -> Result<ManagerPublicKey, KeyFileError> {
    let file = poc_keyfile::read_public(path, KeyKind::Manager)?;
    ManagerPublicKey::from_bytes(file.public).map_err(|e| KeyFileError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}
