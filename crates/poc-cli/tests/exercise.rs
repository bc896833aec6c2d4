//! `poc exercise` commands that need no node: validating scenario files
//! (the shipped ones, and bad ones with every problem named) and reading a
//! missing state file. Runs against real nodes are in
//! `crates/pocd/tests/exercise.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn poc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poc"))
        .env_remove("POC_SOCKET")
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn exercises() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/exercises")
}

#[test]
fn the_shipped_scenarios_validate() {
    for (file, id) in [
        ("connectivity-drill.toml", "DRILL-PING-1"),
        ("technical-inquiry.toml", "DRILL-TECH-1"),
        ("urgent-incident.toml", "DRILL-URGENT-1"),
    ] {
        let out = poc(&[
            "exercise",
            "validate",
            exercises().join(file).to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with(&format!("*** EXERCISE {id} — NOT A REAL INCIDENT ***")),
            "{stdout}"
        );
    }
}

#[test]
fn a_bad_scenario_is_refused_with_its_fields_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[exercise]\nid = \"x y\"\ntitle = \"t\"\nduration = \"1h\"\n\
         [[participant]]\nname = \"a\"\npoc = \"EST.cert\"\nrole = \"tech\"\n",
    )
    .unwrap();
    let out = poc(&["exercise", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("exercise.id:"), "{stderr}");
    assert!(stderr.contains("participant[0].role:"), "{stderr}");
    assert!(stderr.contains("README.md"), "{stderr}");

    // A missing attachment is named by its field.
    let shipped = std::fs::read_to_string(exercises().join("technical-inquiry.toml")).unwrap();
    let moved = dir.path().join("moved.toml");
    std::fs::write(&moved, shipped).unwrap();
    let out = poc(&["exercise", "validate", moved.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("inject[0].attachments[0]: no file at"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn status_without_a_run_says_where_to_look() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("none.json");
    let out = poc(&["exercise", "status", "--state", state.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot read") && stderr.contains("--state"),
        "{stderr}"
    );
}
