//! Helpers for the exercise end-to-end tests, on top of `common::Cluster`:
//! the directory manager's own ping node, the built `poc` binary, and the
//! shipped scenario files.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use poc_proto::certificate::PocCertificate;
use poc_proto::keys::ManagerKeyPair;
use poc_proto::{Issuer, PocId, Role};

use crate::common::{Cluster, NewPoc, PocSetup, new_poc, seed};

/// Adds the directory manager's ping identity `id` (certified by the
/// manager key) to the cluster and re-signs its directory with it.
pub fn add_manager_node(cluster: &mut Cluster, id: &str) {
    let manager = ManagerKeyPair::from_secret_bytes(&seed("manager"));
    let NewPoc {
        port,
        identity,
        dir,
        body,
    } = new_poc(
        cluster.root.path(),
        id,
        Issuer::DirectoryManager,
        Role::DirectoryManager,
    );
    let certificate = PocCertificate::issue_by_manager(&body, &manager).unwrap();
    // Same configuration as the State nodes of `common`, on its own port.
    let state_config =
        std::fs::read_to_string(cluster.pocs.values().next().unwrap().config()).unwrap();
    let config = state_config
        .lines()
        .map(|line| {
            if line.starts_with("poc_id") {
                format!("poc_id = \"{id}\"")
            } else if line.starts_with("listen") {
                format!("listen = \"127.0.0.1:{port}\"")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("pocd.toml"), config + "\n").unwrap();
    cluster.pocs.insert(
        id.to_owned(),
        PocSetup {
            id: PocId::new(id).unwrap(),
            role: Role::DirectoryManager,
            port,
            dir,
            identity,
            certificate,
        },
    );
    let all: Vec<String> = cluster.pocs.keys().cloned().collect();
    cluster.write_directory(&all.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The built `poc` binary, beside `pocd` (build both in the same cargo call:
/// `cargo build --workspace --bins`).
pub fn poc_binary() -> PathBuf {
    let poc = Path::new(env!("CARGO_BIN_EXE_pocd")).with_file_name("poc");
    assert!(
        poc.is_file(),
        "the `poc` binary is not at {}: build it first with `cargo build -p poc-cli` (or `cargo build --workspace --bins`) in the same target directory",
        poc.display()
    );
    poc
}

/// Runs `poc ARGS` and returns its output.
pub fn poc(args: &[&str]) -> Output {
    Command::new(poc_binary())
        .env_remove("POC_SOCKET")
        .args(args)
        .output()
        .unwrap()
}

/// A shipped scenario file under `deploy/exercises/`.
pub fn shipped(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/exercises")
        .join(name);
    assert!(
        path.is_file(),
        "missing shipped scenario {}",
        path.display()
    );
    path
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes a variant of a shipped scenario into `dir` with `changes`
/// (each `from` must occur), attachments still found beside the original.
pub fn variant(dir: &Path, shipped_name: &str, changes: &[(&str, &str)]) -> PathBuf {
    let original = shipped(shipped_name);
    let mut text = std::fs::read_to_string(&original).unwrap();
    for (from, to) in changes {
        assert!(text.contains(from), "{shipped_name} has no {from:?}");
        text = text.replace(from, to);
    }
    let attachments = original.parent().unwrap().join("attachments/");
    let text = text.replace(
        "attachments = [\"attachments/",
        &format!("attachments = [\"{}", attachments.display()),
    );
    let file = dir.join(format!("variant-{shipped_name}"));
    std::fs::write(&file, text).unwrap();
    file
}
