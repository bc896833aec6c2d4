//! Replays the cargo-fuzz seed corpora (`fuzz/corpus/<target>/`) on stable
//! Rust, so CI checks every decoder against them without libFuzzer.
//!
//! Each check function below is the body of the fuzz target of the same name
//! in `fuzz/fuzz_targets/`; keep the two identical. (The fuzz crate cannot
//! share them through a library without a dependency cycle.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use poc_proto::Message;
use poc_proto::certificate::{PocCertificate, SignedPrekey};
use poc_proto::envelope::{MemoryReplayCache, OuterHeader};
use poc_proto::testkit::{NOW, World};

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(World::new)
}

/// `fuzz/fuzz_targets/outer_header.rs`
fn outer_header(data: &[u8]) {
    let _ = OuterHeader::parse(data);
}

/// `fuzz/fuzz_targets/open_envelope.rs`
fn open_envelope(data: &[u8]) {
    let recipient = world().recipient("FRA.cert");
    let _ = recipient.open(data, &mut MemoryReplayCache::default(), NOW);
}

/// `fuzz/fuzz_targets/message_content.rs`
fn message_content(data: &[u8]) {
    if let Ok(message) = Message::decode(data) {
        let bytes = message.encode().expect("a decoded message re-encodes");
        let again = Message::decode(&bytes).expect("a re-encoded message decodes");
        assert_eq!(again, message);
    }
}

/// `fuzz/fuzz_targets/certificate.rs`
fn certificate(data: &[u8]) {
    if let Ok(certificate) = PocCertificate::from_bytes(data) {
        let _ = certificate.unverified_body();
    }
}

/// `fuzz/fuzz_targets/signed_prekey.rs`
fn signed_prekey(data: &[u8]) {
    let _ = SignedPrekey::from_bytes(data);
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Feeds every file of the target's corpus to `check`; fails naming every
/// input that panicked.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failures.push(format!("{} ({})", path.display(), hex::encode(&data)));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} input(s) panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn outer_header_corpus() {
    replay("outer_header", outer_header);
}

#[test]
fn open_envelope_corpus() {
    replay("open_envelope", open_envelope);
}

#[test]
fn message_content_corpus() {
    replay("message_content", message_content);
}

#[test]
fn certificate_corpus() {
    replay("certificate", certificate);
}

#[test]
fn signed_prekey_corpus() {
    replay("signed_prekey", signed_prekey);
}

/// The seeds must reach past the parsers, or the corpus has gone stale
/// (a format change left only garbage behind).
#[test]
fn seeds_are_still_valid_inputs() {
    let valid = |target: &str, accept: fn(&[u8]) -> bool| {
        let dir = corpus_dir(target);
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
            .filter(|data| accept(data))
            .count()
    };
    assert!(valid("outer_header", |d| OuterHeader::parse(d).is_ok()) > 0);
    assert!(
        valid("open_envelope", |d| world()
            .recipient("FRA.cert")
            .open(d, &mut MemoryReplayCache::default(), NOW)
            .is_ok())
            > 0
    );
    assert!(valid("message_content", |d| Message::decode(d).is_ok()) > 0);
    assert!(
        valid("certificate", |d| PocCertificate::from_bytes(d)
            .and_then(|c| c.unverified_body())
            .is_ok())
            > 0
    );
    assert!(valid("signed_prekey", |d| SignedPrekey::from_bytes(d).is_ok()) > 0);
}
