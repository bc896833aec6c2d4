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

use poc_proto::{Issuer, Role, Seconds};
use poc_testnet::PocSetup;

use crate::common::{Cluster, node_config};

/// Adds the directory manager's ping identity `id` (certified by the
/// manager key) to the cluster and re-signs its directory with it.
pub fn add_manager_node(cluster: &mut Cluster, id: &str) {
    let setup = PocSetup::create(
        cluster.root.path(),
        id,
        Issuer::DirectoryManager,
        Role::DirectoryManager,
        Seconds::days(30),
    )
    .unwrap();
    // Same configuration as the State nodes of `common`, on its own port.
    node_config(id, setup.port).write(&setup.node).unwrap();
    cluster.pocs.insert(id.to_owned(), setup);
    let all: Vec<String> = cluster.pocs.keys().cloned().collect();
    cluster.write_directory(&all.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The built `poc` binary, beside `pocd` (build both in the same cargo call:
/// `cargo build --workspace --bins`).
pub fn poc_binary() -> PathBuf {
    poc_testnet::built_binary("poc")
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
