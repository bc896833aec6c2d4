//! The network's shared files, in its root directory: the manager's public
//! key and the signed directory snapshot every node starts from.

use std::path::Path;

use poc_proto::StateCode;
use poc_proto::certificate::PocCertificate;
use poc_proto::directory::{
    DirectoryEntry, SignedSnapshot, SnapshotBody, SnapshotDigest, StateEnrolment,
};

use crate::{Error, manager_key, state_root, try_now};

/// Writes the [`manager_key`]'s public half to `network_root/manager.pub`.
pub fn write_manager_public_key(network_root: &Path) -> Result<(), Error> {
    poc_keyfile::write_public(
        &network_root.join("manager.pub"),
        poc_keyfile::KeyKind::Manager,
        None,
        &manager_key().public().to_bytes(),
    )?;
    Ok(())
}

/// Signs with the [`manager_key`] a first directory snapshot (sequence 1)
/// enrolling `states` (with their [`state_root`] keys) and listing
/// `certificates`, and writes it to `network_root/directory.snapshot`
/// (replacing an earlier one).
pub fn write_directory<'a>(
    network_root: &Path,
    states: impl IntoIterator<Item = StateCode>,
    certificates: impl IntoIterator<Item = &'a PocCertificate>,
) -> Result<(), Error> {
    let body = SnapshotBody {
        sequence: 1,
        previous: SnapshotDigest([0; 32]),
        issued_at: try_now()?,
        states: states
            .into_iter()
            .map(|state| StateEnrolment {
                state,
                root_key: state_root(state).public(),
            })
            .collect(),
        entries: certificates
            .into_iter()
            .map(|certificate| DirectoryEntry {
                certificate: certificate.clone(),
                prekeys: vec![],
                revoked: false,
                details: None,
            })
            .collect(),
    };
    let snapshot = SignedSnapshot::sign(&body, &manager_key()).map_err(|e| Error::Signing {
        what: "the directory".into(),
        reason: e.to_string(),
    })?;
    let path = network_root.join("directory.snapshot");
    std::fs::write(&path, snapshot.to_bytes())
        .map_err(Error::io(format!("cannot write {}", path.display())))
}
