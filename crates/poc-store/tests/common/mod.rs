//! Helpers shared by the store's integration tests: temporary stores, sample
//! entries, and raw tampering with the database file behind the store's back.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use poc_proto::{MessageId, PocId, ThreadId, Timestamp};
use poc_store::{NewEntry, ProblemKind, RecordEvent, Store};
use tempfile::TempDir;

pub const T0: Timestamp = Timestamp(1_800_000_000);

pub fn poc(id: &str) -> PocId {
    PocId::new(id).unwrap()
}

/// A fresh store file in a fresh temporary directory.
pub fn temp_store() -> (TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pocd.db");
    let store = Store::open(&path).unwrap();
    (dir, path, store)
}

pub fn message_id(n: u8) -> MessageId {
    MessageId([n; 16])
}

pub fn thread_id(n: u8) -> ThreadId {
    ThreadId([0xa0 | (n & 0x0f); 16])
}

/// A fully populated entry; `n` varies every field.
pub fn sample_entry(n: u8, event: RecordEvent) -> NewEntry {
    NewEntry {
        peer: Some(poc(if n.is_multiple_of(2) {
            "FRA.cert"
        } else {
            "KEN.cert"
        })),
        message_id: Some(message_id(n)),
        thread_id: Some(thread_id(n % 3)),
        kind: Some("inquiry".into()),
        exercise: None,
        envelope: Some(vec![n; 100 + usize::from(n)]),
        content: Some(format!("signed content of message {n}").into_bytes()),
        signature: Some([n; 64]),
        detail: None,
        ..NewEntry::new(Timestamp(T0.0 + u64::from(n) * 60), event)
    }
}

/// Appends `count` sample entries (seq 1..=count) in one transaction.
pub fn append_samples(store: &mut Store, count: u8) {
    store
        .transaction(|tx| {
            for n in 1..=count {
                let event = if n.is_multiple_of(2) {
                    RecordEvent::Received
                } else {
                    RecordEvent::Sent
                };
                tx.record_append(sample_entry(n, event))?;
            }
            Ok(())
        })
        .unwrap();
}

/// Opens the file with plain SQLite, drops the store's guard triggers (as
/// anyone with the file can) and runs `f` on it.
pub fn tamper(path: &Path, f: impl FnOnce(&rusqlite::Connection)) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS record_no_delete;
         DROP TRIGGER IF EXISTS record_no_rewrite;
         DROP TRIGGER IF EXISTS record_purge_only;",
    )
    .unwrap();
    f(&conn);
    conn.close().unwrap();
}

/// Runs raw SQL on the file behind the store's back.
pub fn tamper_sql(path: &Path, sql: &str) {
    tamper(path, |conn| conn.execute_batch(sql).unwrap());
}

/// Reopens the store and verifies the record; returns `(seq, kind)` pairs.
pub fn verify_file(path: &Path) -> Vec<(u64, ProblemKind)> {
    let store = Store::open(path).unwrap();
    let report = store.read(|r| r.record_verify()).unwrap();
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    report.problems.iter().map(|p| (p.seq, p.kind)).collect()
}

/// Whether `needle` occurs in the file (missing file: no).
pub fn file_contains(path: &Path, needle: &[u8]) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// Whether `needle` occurs in the database file or its WAL.
pub fn db_files_contain(path: &Path, needle: &[u8]) -> bool {
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    file_contains(path, needle) || file_contains(Path::new(&wal), needle)
}
