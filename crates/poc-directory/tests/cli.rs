//! The built `poc-directory` binary in temporary directories: manager key,
//! snapshot building (only certificates signed by their State's enrolled
//! root key get in), the snapshot chain, `show`, file modes, exit codes.
//!
//! State root keys and certificates are made here with poc-proto and
//! poc-keyfile directly (the `poc` binary's own tests run the same ceremony
//! end to end with both binaries).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use poc_keyfile::KeyKind;
use poc_proto::certificate::{CertificateBody, Endpoint, PocCertificate, Prekey, PrekeyId};
use poc_proto::keys::{IdentityKeyPair, PrekeySecret, StateRootKeyPair};
use poc_proto::{Issuer, PocId, Role, StateCode, Timestamp};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poc-directory"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "poc-directory {args:?} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Writes `<name>.pub` for a State root made from `seed`, returns the key pair.
fn state_root(dir: &Path, state: &str, seed: u8, name: &str) -> StateRootKeyPair {
    let root = StateRootKeyPair::from_secret_bytes(&[seed; 32]);
    poc_keyfile::write_public(
        &dir.join(format!("{name}.pub")),
        KeyKind::StateRoot,
        Some(state),
        &root.public().to_bytes(),
    )
    .unwrap();
    root
}

/// Writes `<file>` with a certificate for `poc_id` signed by `root` as `state`.
fn certificate(
    dir: &Path,
    poc_id: &str,
    state: &str,
    role: Role,
    root: &StateRootKeyPair,
    seed: u8,
    file: &str,
) {
    let t = now();
    let body = CertificateBody {
        poc_id: PocId::new(poc_id).unwrap(),
        issuer: Issuer::State(StateCode::new(state).unwrap()),
        role,
        identity_key: IdentityKeyPair::from_secret_bytes(&[seed; 32]).public(),
        prekey: Prekey {
            id: PrekeyId(u64::from(seed)),
            public: PrekeySecret::from_secret_bytes(&[seed.wrapping_add(100); 32]).public(),
            valid_from: Timestamp(t - 60),
            valid_until: Timestamp(t + 86_400 * 365),
        },
        valid_from: Timestamp(t - 60),
        valid_until: Timestamp(t + 86_400 * 365),
        endpoints: vec![Endpoint::Direct {
            address: format!("127.0.0.1:74{seed:02}"),
        }],
    };
    let cert = PocCertificate::issue_by_state(&body, root).unwrap();
    std::fs::write(dir.join(file), cert.to_bytes()).unwrap();
}

/// Two States, EST (one technical, one diplomatic PoC) and FRA (one technical).
fn world(dir: &Path) {
    let est = state_root(dir, "EST", 1, "est-root");
    let fra = state_root(dir, "FRA", 2, "fra-root");
    certificate(
        dir,
        "EST.cert",
        "EST",
        Role::Technical,
        &est,
        11,
        "EST.cert.cert",
    );
    certificate(
        dir,
        "EST.mfa",
        "EST",
        Role::Diplomatic,
        &est,
        12,
        "EST.mfa.cert",
    );
    certificate(
        dir,
        "FRA.cert",
        "FRA",
        Role::Technical,
        &fra,
        21,
        "FRA.cert.cert",
    );
    ok(dir, &["init", "--out", "manager"]);
}

const BUILD_1: &[&str] = &[
    "build",
    "--manager-key",
    "manager/manager.key",
    "--state",
    "EST=est-root.pub",
    "--state",
    "FRA=fra-root.pub",
    "--cert",
    "EST.cert.cert",
    "--cert",
    "EST.mfa.cert",
    "--cert",
    "FRA.cert.cert",
    "--sequence",
    "1",
    "--out",
    "directory-1.snapshot",
];

#[test]
fn init_build_show() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    world(dir);
    let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("manager/manager.key"), 0o600);
    assert_eq!(mode("manager"), 0o700);
    assert!(dir.join("manager/manager.pub").exists());

    let built = ok(dir, BUILD_1);
    assert!(built.contains("Directory snapshot 1 signed"), "{built}");
    assert!(built.contains("States (2): EST, FRA"), "{built}");
    assert!(
        built.contains("technical PoCs (2): EST.cert, FRA.cert"),
        "{built}"
    );
    assert!(built.contains("diplomatic PoCs (1): EST.mfa"), "{built}");
    assert!(
        built.contains(&"0".repeat(64)),
        "sequence 1 links to zero: {built}"
    );

    let shown = ok(
        dir,
        &[
            "show",
            "directory-1.snapshot",
            "--manager-pub",
            "manager/manager.pub",
        ],
    );
    assert!(shown.contains("Directory snapshot 1"), "{shown}");
    assert!(shown.contains("signature verified"), "{shown}");
    for poc in ["EST.cert", "EST.mfa", "FRA.cert"] {
        assert!(shown.contains(poc), "{poc}: {shown}");
    }
    let json: serde_json::Value = serde_json::from_str(&ok(
        dir,
        &[
            "show",
            "directory-1.snapshot",
            "--manager-pub",
            "manager/manager.pub",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(json["sequence"], 1);
    assert_eq!(json["states"].as_array().unwrap().len(), 2);
    assert_eq!(json["pocs"].as_array().unwrap().len(), 3);
    assert_eq!(json["pocs"][0]["status"], "active");
    assert!(json["rejected"].as_array().unwrap().is_empty());

    // The next snapshot chains to this one and can revoke.
    let digest = json["digest"].as_str().unwrap().to_owned();
    let built = ok(
        dir,
        &[
            "build",
            "--manager-key",
            "manager/manager.key",
            "--state",
            "EST=est-root.pub",
            "--state",
            "FRA=fra-root.pub",
            "--cert",
            "EST.cert.cert",
            "--cert",
            "FRA.cert.cert",
            "--revoke",
            "FRA.cert",
            "--sequence",
            "2",
            "--previous",
            "directory-1.snapshot",
            "--out",
            "directory-2.snapshot",
        ],
    );
    assert!(built.contains(&format!("previous:   {digest}")), "{built}");
    assert!(built.contains("REVOKED: FRA.cert"), "{built}");
    let shown = ok(
        dir,
        &[
            "show",
            "directory-2.snapshot",
            "--manager-pub",
            "manager/manager.pub",
        ],
    );
    assert!(shown.contains("REVOKED"), "{shown}");
}

#[test]
fn build_refuses_a_certificate_not_signed_by_the_enrolled_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    world(dir);
    // Someone signs a FRA certificate with a key that is not FRA's enrolled root.
    let impostor = StateRootKeyPair::from_secret_bytes(&[99; 32]);
    certificate(
        dir,
        "FRA.cert",
        "FRA",
        Role::Technical,
        &impostor,
        21,
        "FRA.forged.cert",
    );
    let out = run(
        dir,
        &[
            "build",
            "--manager-key",
            "manager/manager.key",
            "--state",
            "EST=est-root.pub",
            "--state",
            "FRA=fra-root.pub",
            "--cert",
            "EST.cert.cert",
            "--cert",
            "FRA.forged.cert",
            "--sequence",
            "1",
            "--out",
            "directory.snapshot",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("FRA.forged.cert"),
        "names the certificate: {err}"
    );
    assert!(err.contains("FRA.cert"), "{err}");
    assert!(err.contains("FRA's enrolled root key"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!dir.join("directory.snapshot").exists(), "nothing written");

    // EST's root cannot vouch for a FRA PoC either (the certificate claims FRA).
    let est = StateRootKeyPair::from_secret_bytes(&[1; 32]);
    certificate(
        dir,
        "FRA.other",
        "FRA",
        Role::Technical,
        &est,
        22,
        "FRA.other.cert",
    );
    let out = run(
        dir,
        &[
            "build",
            "--manager-key",
            "manager/manager.key",
            "--state",
            "EST=est-root.pub",
            "--state",
            "FRA=fra-root.pub",
            "--cert",
            "FRA.other.cert",
            "--sequence",
            "1",
            "--out",
            "directory.snapshot",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("FRA.other.cert"));

    // A certificate from a State that is not enrolled.
    let out = run(
        dir,
        &[
            "build",
            "--manager-key",
            "manager/manager.key",
            "--state",
            "EST=est-root.pub",
            "--cert",
            "FRA.cert.cert",
            "--sequence",
            "1",
            "--out",
            "directory.snapshot",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not enrolled"));
    // A root key file given for the wrong State.
    let out = run(
        dir,
        &[
            "build",
            "--manager-key",
            "manager/manager.key",
            "--state",
            "FRA=est-root.pub",
            "--sequence",
            "1",
            "--out",
            "directory.snapshot",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("labelled EST"));
}

#[test]
fn the_chain_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    world(dir);
    ok(dir, BUILD_1);
    let base = [
        "build",
        "--manager-key",
        "manager/manager.key",
        "--state",
        "EST=est-root.pub",
        "--cert",
        "EST.cert.cert",
    ];
    let attempt = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        run(dir, &args)
    };
    let out = attempt(&["--sequence", "2", "--out", "d2.snapshot"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--previous"));
    let out = attempt(&[
        "--sequence",
        "3",
        "--previous",
        "directory-1.snapshot",
        "--out",
        "d3.snapshot",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("number 1"));
    let out = attempt(&[
        "--sequence",
        "1",
        "--previous",
        "directory-1.snapshot",
        "--out",
        "d.snapshot",
    ]);
    assert_eq!(out.status.code(), Some(1));
    // A previous snapshot from another manager.
    ok(dir, &["init", "--out", "other-manager"]);
    let out = run(
        dir,
        &[
            "build",
            "--manager-key",
            "other-manager/manager.key",
            "--state",
            "EST=est-root.pub",
            "--sequence",
            "2",
            "--previous",
            "directory-1.snapshot",
            "--out",
            "d2.snapshot",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not verify under this manager key"));
    // Existing output is not replaced without --force.
    let out = run(dir, BUILD_1);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--force"));
    // And show refuses a snapshot under the wrong manager key.
    let out = run(
        dir,
        &[
            "show",
            "directory-1.snapshot",
            "--manager-pub",
            "other-manager/manager.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does NOT verify"));
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (args, expected) in [
        (vec![], "Usage"),
        (vec!["build", "--sequence", "1"], "--manager-key"),
        (
            vec![
                "build",
                "--manager-key",
                "m",
                "--state",
                "EST",
                "--sequence",
                "1",
                "--out",
                "o",
            ],
            "CODE=FILE",
        ),
        (
            vec![
                "build",
                "--manager-key",
                "m",
                "--state",
                "XXX=a.pub",
                "--sequence",
                "1",
                "--out",
                "o",
            ],
            "ISO 3166-1",
        ),
        (
            vec![
                "build",
                "--manager-key",
                "m",
                "--state",
                "EST=a.pub",
                "--sequence",
                "one",
                "--out",
                "o",
            ],
            "invalid value",
        ),
        (vec!["show", "x.snapshot"], "--manager-pub"),
    ] {
        let out = run(dir, &args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
    }
    // The manager key is never overwritten.
    ok(dir, &["init", "--out", "m"]);
    let out = run(dir, &["init", "--out", "m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"));
}
