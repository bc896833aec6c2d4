//! The pieces on their own: deterministic keys, a certified PoC's files,
//! the signed directory, a real `pocd` started and stopped through
//! [`Daemon`], and the messages a harness shows when something is missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use poc_control::{Request, StatusView};
use poc_proto::directory::SignedSnapshot;
use poc_proto::{Issuer, Role, Seconds};
use poc_testnet::{
    Daemon, PocSetup, PocdConfig, built_binary, manager_key, seed, state_of, state_root,
    try_built_binary, write_directory, write_manager_public_key,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// EST.cert, a technical PoC certified by EST, in the network at `root`.
fn est_cert(root: &Path) -> Result<PocSetup, poc_testnet::Error> {
    PocSetup::create(
        root,
        "EST.cert",
        Issuer::State(state_of("EST.cert")),
        Role::Technical,
        Seconds::days(30),
    )
}

/// A network at `root` of EST.cert alone: manager key, EST.cert's files,
/// the directory listing it.
fn one_poc_network(root: &Path) -> PocSetup {
    write_manager_public_key(root).unwrap();
    let est = est_cert(root).unwrap();
    write_directory(root, [state_of("EST.cert")], [&est.certificate]).unwrap();
    est
}

#[test]
fn seeds_are_deterministic_and_distinct() {
    assert_eq!(seed("identity EST.cert"), seed("identity EST.cert"));
    assert_ne!(seed("identity EST.cert"), seed("identity FRA.cert"));
    assert_eq!(state_of("EST.cert").as_str(), "EST");
    assert!(poc_testnet::try_state_of("nodot").is_err());
}

#[test]
fn a_poc_gets_secret_key_files_and_a_certificate_its_state_signed() {
    let root = tempfile::tempdir().unwrap();
    let poc = est_cert(root.path()).unwrap();
    assert_eq!(mode(&poc.node.identity_key()), 0o600);
    assert_eq!(mode(&poc.node.prekey_key()), 0o600);
    let verified = poc
        .certificate
        .verify_by_state(&state_root(state_of("EST.cert")).public())
        .unwrap();
    assert_eq!(verified.poc_id().as_str(), "EST.cert");
    // Another State's root did not sign it.
    assert!(
        poc.certificate
            .verify_by_state(&state_root(state_of("FRA.cert")).public())
            .is_err()
    );
    // Key files are never overwritten: a second setup of the same PoC fails.
    let again = est_cert(root.path());
    assert!(again.is_err());
}

#[test]
fn the_directory_snapshot_is_signed_by_the_manager() {
    let root = tempfile::tempdir().unwrap();
    let est = one_poc_network(root.path());
    let bytes = std::fs::read(root.path().join("directory.snapshot")).unwrap();
    let snapshot = SignedSnapshot::from_bytes(&bytes).unwrap();
    let directory = snapshot.verify(&manager_key().public()).unwrap();
    assert_eq!(
        directory.states().collect::<Vec<_>>(),
        [state_of("EST.cert")]
    );
    assert_eq!(
        directory.state_root(state_of("EST.cert")),
        Some(&state_root(state_of("EST.cert")).public())
    );
    // The State-signed certificate is listed, not rejected.
    assert!(directory.rejected().is_empty());
    assert!(directory.entries().contains_key(&est.id));
}

#[test]
fn a_missing_binary_is_named_with_the_build_command() {
    let message = format!("{}", try_built_binary("no-such-pocnet-binary").unwrap_err());
    assert!(message.contains("no-such-pocnet-binary"), "{message}");
    assert!(
        message.contains("cargo build --workspace --bins"),
        "{message}"
    );
}

#[test]
fn a_daemon_starts_answers_and_is_killed() {
    let root = tempfile::tempdir().unwrap();
    let est = one_poc_network(root.path());
    PocdConfig::new("EST.cert", est.port)
        .write(&est.node)
        .unwrap();
    let pocd = built_binary("pocd");
    let mut daemon = Daemon::start(&pocd, &est.node, &[("POCD_LOG", "debug")]);
    let status: StatusView = daemon.call(&Request::Status);
    assert_eq!(status.poc_id, est.id);
    daemon.check_alive().unwrap();
    assert_eq!(mode(&est.node.socket()), 0o600);
    let pid = daemon.pid();
    daemon.kill9();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());

    // A daemon that refuses its configuration is reported at once, with
    // its log.
    std::fs::write(est.node.config(), "[node]\n").unwrap();
    let err = Daemon::try_start(&pocd, &est.node, &[]).unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("pocd exited"), "{message}");
    assert!(message.contains("pocd.toml"), "{message}");
}
