//! The offline key ceremonies and the command line's edges, run through the
//! built `poc` binary (and `poc-directory`, built next to it) in temporary
//! directories: State root keys, PoC keys and requests, certificates, a
//! signed directory; refusals, file modes, usage errors and exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn poc() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_poc"));
    cmd.env_remove("POC_SOCKET");
    cmd
}

/// `poc-directory` is another package's binary; cargo builds it into the same
/// directory when both packages are tested (`cargo test -p poc-cli -p
/// poc-directory`, or the whole workspace).
fn poc_directory() -> Command {
    let path = Path::new(env!("CARGO_BIN_EXE_poc")).with_file_name("poc-directory");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p poc-cli -p poc-directory` (or the workspace) so both binaries are built",
        path.display()
    );
    Command::new(path)
}

fn run(cmd: &mut Command, dir: &Path) -> Output {
    cmd.current_dir(dir).output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(cmd: &mut Command, dir: &Path) -> String {
    let out = run(cmd, dir);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// State root for `state` in `dir/<state>`, a technical PoC `<state>.cert`
/// with its keys in `dir/<state>-node` and its certificate `dir/<state>.cert.cert`.
fn ceremony(dir: &Path, state: &str, port: u16) -> PathBuf {
    let lower = state.to_lowercase();
    ok(
        poc().args(["state", "init", "--state", state, "--out", &lower]),
        dir,
    );
    let poc_id = format!("{state}.cert");
    let node = format!("{lower}-node");
    ok(
        poc().args([
            "init",
            "--poc",
            &poc_id,
            "--role",
            "technical",
            "--endpoint",
            &format!("127.0.0.1:{port}"),
            "--out",
            &node,
        ]),
        dir,
    );
    let cert = format!("{poc_id}.cert");
    let summary = ok(
        poc().args([
            "state",
            "sign-cert",
            "--root-key",
            &format!("{lower}/state-root.key"),
            "--request",
            &format!("{node}/{poc_id}.request.json"),
            "--out",
            &cert,
        ]),
        dir,
    );
    assert!(summary.contains(&poc_id), "{summary}");
    assert!(summary.contains("technical"), "{summary}");
    dir.join(cert)
}

#[test]
fn the_full_offline_ceremony_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let est_cert = ceremony(dir, "EST", 7401);
    let fra_cert = ceremony(dir, "FRA", 7402);
    assert!(est_cert.exists() && fra_cert.exists());

    // Every secret is 0600; public material is not secret.
    for secret in [
        "est/state-root.key",
        "fra/state-root.key",
        "est-node/identity.key",
        "est-node/prekey.key",
        "fra-node/identity.key",
        "fra-node/prekey.key",
    ] {
        assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
    }
    assert_eq!(mode(&dir.join("est/state-root.pub")) & 0o077, 0o044);

    // The request is readable JSON with everything the root key holder checks.
    let request: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("est-node/EST.cert.request.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(request["poc_id"], "EST.cert");
    assert_eq!(request["role"], "technical");
    assert_eq!(request["identity_key"].as_str().unwrap().len(), 64);
    assert_eq!(request["prekey"]["public"].as_str().unwrap().len(), 64);
    assert_eq!(request["endpoints"][0]["address"], "127.0.0.1:7401");
    assert_eq!(request["valid_from"], request["prekey"]["valid_from"]);
    assert_eq!(request["valid_until"], request["prekey"]["valid_until"]);

    // The directory manager enrols both States and lists both PoCs.
    ok(poc_directory().args(["init", "--out", "manager"]), dir);
    assert_eq!(mode(&dir.join("manager/manager.key")), 0o600);
    let built = ok(
        poc_directory().args([
            "build",
            "--manager-key",
            "manager/manager.key",
            "--state",
            "EST=est/state-root.pub",
            "--state",
            "FRA=fra/state-root.pub",
            "--cert",
            "EST.cert.cert",
            "--cert",
            "FRA.cert.cert",
            "--sequence",
            "1",
            "--out",
            "directory.snapshot",
        ]),
        dir,
    );
    assert!(built.contains("Directory snapshot 1 signed"), "{built}");
    assert!(
        built.contains("technical PoCs (2): EST.cert, FRA.cert"),
        "{built}"
    );
    let shown = ok(
        poc_directory().args([
            "show",
            "directory.snapshot",
            "--manager-pub",
            "manager/manager.pub",
        ]),
        dir,
    );
    assert!(shown.contains("signature verified"), "{shown}");
    for expected in ["EST.cert", "FRA.cert", "127.0.0.1:7401", "127.0.0.1:7402"] {
        assert!(
            shown.contains(expected),
            "{expected} missing from:\n{shown}"
        );
    }
}

#[test]
fn sign_cert_refuses_a_request_from_another_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        poc().args(["state", "init", "--state", "EST", "--out", "est"]),
        dir,
    );
    ok(
        poc().args([
            "init",
            "--poc",
            "FRA.cert",
            "--role",
            "diplomatic",
            "--endpoint",
            "127.0.0.1:7402",
            "--out",
            "fra-node",
        ]),
        dir,
    );
    let out = run(
        poc().args([
            "state",
            "sign-cert",
            "--root-key",
            "est/state-root.key",
            "--request",
            "fra-node/FRA.cert.request.json",
            "--out",
            "FRA.cert.cert",
        ]),
        dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("FRA.cert"), "{err}");
    assert!(err.contains("belongs to FRA"), "{err}");
    assert!(err.contains("EST's root key"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!dir.join("FRA.cert.cert").exists(), "nothing may be signed");
}

#[test]
fn sign_cert_refuses_a_tampered_role() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        poc().args(["state", "init", "--state", "EST", "--out", "est"]),
        dir,
    );
    ok(
        poc().args([
            "init",
            "--poc",
            "EST.cert",
            "--role",
            "technical",
            "--endpoint",
            "127.0.0.1:7401",
            "--out",
            "node",
        ]),
        dir,
    );
    let path = dir.join("node/EST.cert.request.json");
    let tampered = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"technical\"", "\"directory-manager\"");
    std::fs::write(&path, tampered).unwrap();
    let out = run(
        poc().args([
            "state",
            "sign-cert",
            "--root-key",
            "est/state-root.key",
            "--request",
            "node/EST.cert.request.json",
            "--out",
            "EST.cert.cert",
        ]),
        dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not diplomatic or technical"));
    assert!(!dir.join("EST.cert.cert").exists());
}

#[test]
fn build_refuses_a_certificate_not_signed_by_its_states_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ceremony(dir, "EST", 7401);
    // An impostor "FRA" root signs FRA.cert; the manager enrolled the real one.
    ok(
        poc().args(["state", "init", "--state", "FRA", "--out", "fra"]),
        dir,
    );
    ok(
        poc().args(["state", "init", "--state", "FRA", "--out", "impostor"]),
        dir,
    );
    ok(
        poc().args([
            "init",
            "--poc",
            "FRA.cert",
            "--role",
            "technical",
            "--endpoint",
            "127.0.0.1:7402",
            "--out",
            "fra-node",
        ]),
        dir,
    );
    ok(
        poc().args([
            "state",
            "sign-cert",
            "--root-key",
            "impostor/state-root.key",
            "--request",
            "fra-node/FRA.cert.request.json",
            "--out",
            "FRA.forged.cert",
        ]),
        dir,
    );
    ok(poc_directory().args(["init", "--out", "manager"]), dir);
    let out = run(
        poc_directory().args([
            "build",
            "--manager-key",
            "manager/manager.key",
            "--state",
            "EST=est/state-root.pub",
            "--state",
            "FRA=fra/state-root.pub",
            "--cert",
            "EST.cert.cert",
            "--cert",
            "FRA.forged.cert",
            "--sequence",
            "1",
            "--out",
            "directory.snapshot",
        ]),
        dir,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("FRA.forged.cert"), "{err}");
    assert!(err.contains("FRA's enrolled root key"), "{err}");
    assert!(!dir.join("directory.snapshot").exists());
}

#[test]
fn keys_are_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok(
        poc().args(["state", "init", "--state", "EST", "--out", "est"]),
        dir,
    );
    let before = std::fs::read(dir.join("est/state-root.key")).unwrap();
    let out = run(
        poc().args(["state", "init", "--state", "EST", "--out", "est"]),
        dir,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read(dir.join("est/state-root.key")).unwrap(),
        before
    );
}

#[test]
fn usage_errors_exit_2_with_a_helpful_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage"),
        (&["frobnicate"], "unrecognized subcommand"),
        (
            &["state", "init", "--state", "XYZ", "--out", "d"],
            "ISO 3166-1",
        ),
        (
            &["state", "init", "--state", "est", "--out", "d"],
            "e.g. --state EST",
        ),
        (
            &[
                "init",
                "--poc",
                "cert",
                "--role",
                "technical",
                "--endpoint",
                "127.0.0.1:1",
                "--out",
                "d",
            ],
            "must start with its State's",
        ),
        (
            &[
                "init",
                "--poc",
                "EST.cert",
                "--role",
                "admin",
                "--endpoint",
                "127.0.0.1:1",
                "--out",
                "d",
            ],
            "technical",
        ),
        (
            &[
                "init",
                "--poc",
                "EST.cert",
                "--role",
                "technical",
                "--endpoint",
                "nowhere",
                "--out",
                "d",
            ],
            "host:port",
        ),
        (
            &[
                "init",
                "--poc",
                "EST.cert",
                "--role",
                "technical",
                "--out",
                "d",
            ],
            "--endpoint",
        ),
        (&["inquire", "--to", "FRA.cert"], "--summary"),
        (&["inquire", "--summary", "x"], "--to"),
        (
            &[
                "inquire",
                "--to",
                "FRA.cert",
                "--summary",
                "x",
                "--indicator",
                "ip:300.1.1.1",
            ],
            "not an IPv4",
        ),
        (
            &[
                "inquire",
                "--to",
                "FRA.cert",
                "--summary",
                "x",
                "--indicator",
                "colour:blue",
            ],
            "sha256:HEX",
        ),
        (
            &[
                "inquire",
                "--to",
                "FRA.cert",
                "--summary",
                "x",
                "--respond-within",
                "4",
            ],
            "24h",
        ),
        (
            &[
                "inquire",
                "--to",
                "FRA.cert",
                "--summary",
                "x",
                "--respond-by",
                "tomorrow",
            ],
            "RFC 3339",
        ),
        (
            &[
                "inquire",
                "--to",
                "FRA.cert",
                "--summary",
                "x",
                "--handling",
                "purple",
            ],
            "amber+strict",
        ),
        (
            &[
                "inquire",
                "--to",
                "FRA.cert",
                "--summary",
                "x",
                "--lang",
                "de",
            ],
            "six UN official",
        ),
        (
            &[
                "inquire",
                "--to",
                "FRA.cert",
                "--summary",
                "x",
                "--attach",
                "missing.pdf",
            ],
            "missing.pdf",
        ),
        (&["respond", "abcdef"], "--answer"),
        (
            &["respond", "abcdef", "--answer", "a", "--will-follow-up"],
            "cannot be used with",
        ),
        (&["show", "12345"], "at least the first 6"),
        (
            &["close", "abcdef", "--reason", "bored"],
            "no-further-action",
        ),
    ];
    for (args, expected) in cases {
        let out = run(poc().args(*args), dir);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "poc {args:?}: {err}");
        assert!(
            err.contains(expected),
            "poc {args:?}: expected {expected:?} in:\n{err}"
        );
    }
    // Help is not an error.
    let out = run(poc().arg("--help"), dir);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("inquire"));
    // Nothing was created by the refused commands.
    assert!(!dir.join("d").exists());
}

#[test]
fn status_without_a_daemon_says_how_to_start_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Through the configuration file: the socket is <data_dir>/pocd.sock.
    std::fs::write(
        dir.join("pocd.toml"),
        "[node]\npoc_id = \"EST.cert\"\ndata_dir = \"state\"\nidentity_key = \"identity.key\"\nprekey_key = \"prekey.key\"\nlisten = \"127.0.0.1:7401\"\n\n[directory]\nsnapshot = \"directory.snapshot\"\nmanager_key = \"manager.pub\"\n",
    )
    .unwrap();
    let out = run(poc().args(["--config", "pocd.toml", "status"]), dir);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("cannot reach pocd"), "{err}");
    assert!(err.contains("state/pocd.sock"), "{err}");
    assert!(err.contains("is pocd running?"), "{err}");
    assert!(err.contains("pocd --config pocd.toml"), "{err}");
    assert!(err.contains("--socket"), "{err}");

    // Through --socket and POC_SOCKET.
    let out = run(poc().args(["--socket", "nowhere.sock", "status"]), dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("pocd --config"));
    let out = run(poc().env("POC_SOCKET", "nowhere.sock").arg("inbox"), dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nowhere.sock"));

    // With no configuration at all.
    let empty = tempfile::tempdir().unwrap();
    let out = run(poc().arg("status"), empty.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("pocd.toml"), "{err}");
    assert!(err.contains("--socket"), "{err}");
}
