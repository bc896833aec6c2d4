//! The segment log beyond the conformance suite: what survives a reopen, a
//! torn write, damage and a long-lived envelope among many short-lived ones.
//! Real files in a temporary directory; "a crash" is the files as a killed
//! process would leave them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use poc_proto::Timestamp;
use poc_proto::certificate::MailboxId;
use poc_relay::store::{
    DepositOutcome, LogStore, NewEnvelope, Quota, RelayStore, StoreError, StoredEnvelope, Usage,
};
use proptest::prelude::Strategy as _;

const QUOTA: Quota = Quota {
    max_envelopes: 1_000_000,
    max_bytes: 1 << 40,
};
const A: MailboxId = MailboxId([0xaa; 16]);
const B: MailboxId = MailboxId([0xbb; 16]);
const LATER: Timestamp = Timestamp(u64::MAX / 2);

fn env(mailbox: MailboxId, fill: u8, len: usize) -> NewEnvelope {
    NewEnvelope {
        mailbox,
        expires_at: LATER,
        bytes: vec![fill; len],
    }
}

fn deposit(store: &mut LogStore, batch: &[NewEnvelope]) -> Vec<u64> {
    store
        .deposit_batch(batch, QUOTA)
        .unwrap()
        .into_iter()
        .map(|o| match o {
            DepositOutcome::Stored(id) => id,
            other => panic!("not stored: {other:?}"),
        })
        .collect()
}

fn everything(store: &mut LogStore, mailbox: MailboxId) -> Vec<StoredEnvelope> {
    store
        .fetch(mailbox, Timestamp(0), usize::MAX, usize::MAX)
        .unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn what_was_flushed_is_there_after_a_reopen_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    let (kept, gone) = {
        let mut store = LogStore::open(&log).unwrap();
        let mut flusher = store.take_flusher().expect("the log flushes");
        assert!(store.take_flusher().is_none(), "handed out once");
        let ids = deposit(&mut store, &[env(A, 1, 10), env(B, 2, 20), env(A, 3, 30)]);
        flusher.flush().unwrap();
        assert_eq!(store.ack(A, &[ids[0]]).unwrap(), 1);
        (vec![ids[1], ids[2]], ids[0])
    };
    let mut store = LogStore::open(&log).unwrap();
    let a = everything(&mut store, A);
    assert_eq!(a.iter().map(|e| e.id).collect::<Vec<_>>(), vec![kept[1]]);
    assert_eq!(a[0].bytes, vec![3; 30]);
    assert_eq!(a[0].expires_at, LATER);
    assert_eq!(everything(&mut store, B)[0].id, kept[0]);
    assert_eq!(
        store.totals().unwrap(),
        Usage {
            envelopes: 2,
            bytes: 50
        }
    );
    // Everything acknowledged: the old segments may all go, and ids still
    // continue from where they were.
    store.ack(A, &[kept[1]]).unwrap();
    store.ack(B, &[kept[0]]).unwrap();
    drop(store);
    let mut store = LogStore::open(&log).unwrap();
    assert_eq!(store.totals().unwrap(), Usage::default());
    let next = deposit(&mut store, &[env(A, 4, 10)]);
    assert!(next[0] > gone && next[0] > kept[1], "ids are not reused");
}

#[test]
fn the_directory_is_0700_and_segments_are_0600() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    let mut store = LogStore::open(&log).unwrap();
    deposit(&mut store, &[env(A, 1, 10)]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log), 0o700);
    for segment in segments(&log) {
        assert_eq!(mode(&segment), 0o600, "{}", segment.display());
    }
}

#[test]
fn a_torn_last_record_is_cut_off_and_what_came_before_and_after_survives() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    let ids = {
        let mut store = LogStore::open(&log).unwrap();
        deposit(&mut store, &[env(A, 1, 100), env(A, 2, 100)])
    };
    // A crash in the middle of writing the next record: half of it on disk.
    let newest = segments(&log).pop().unwrap();
    let whole = std::fs::metadata(&newest).unwrap().len();
    let mut torn = std::fs::read(&newest).unwrap();
    let half_a_record = torn[torn.len() - 141..torn.len() - 60].to_vec();
    torn.extend_from_slice(&half_a_record);
    std::fs::write(&newest, &torn).unwrap();

    let mut store = LogStore::open(&log).unwrap();
    assert_eq!(
        everything(&mut store, A)
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(
        std::fs::metadata(&newest).unwrap().len(),
        whole,
        "the torn record was cut off"
    );
    // A record written after the cut is not hidden behind the torn bytes.
    let more = deposit(&mut store, &[env(A, 3, 100)]);
    drop(store);
    let mut store = LogStore::open(&log).unwrap();
    assert_eq!(everything(&mut store, A).last().unwrap().id, more[0]);
}

#[test]
fn a_flipped_bit_in_the_last_record_loses_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    let ids = {
        let mut store = LogStore::open(&log).unwrap();
        deposit(&mut store, &[env(A, 1, 100)]);
        deposit(&mut store, &[env(A, 2, 100)])
    };
    let newest = segments(&log).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&newest, &bytes).unwrap();
    let mut store = LogStore::open(&log).unwrap();
    let left = everything(&mut store, A);
    assert_eq!(left.len(), 1, "the first record is intact");
    assert!(left[0].id < ids[0]);
}

/// Eight envelopes in segments of 512 bytes: three segments or more.
fn log_of_several_segments(log: &Path) {
    let mut store = LogStore::open_with_segment_bytes(log, 512).unwrap();
    for fill in 0..8 {
        deposit(&mut store, &[env(A, fill, 200)]);
    }
}

#[test]
fn damage_in_a_closed_segment_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    log_of_several_segments(&log);
    let files = segments(&log);
    assert!(files.len() >= 3, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&files[0], &bytes).unwrap();
    let err = LogStore::open_with_segment_bytes(&log, 512).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.to_string().contains(&name), "{err}");
    assert!(err.to_string().contains("byte 24"), "{err}");
}

#[test]
fn a_missing_segment_between_two_others_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    log_of_several_segments(&log);
    let files = segments(&log);
    std::fs::remove_file(&files[1]).unwrap();
    let err = LogStore::open_with_segment_bytes(&log, 512).unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");
}

#[test]
fn a_segment_left_half_created_by_a_crash_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    drop(LogStore::open(&log).unwrap());
    let leftover = log.join("0000000000000001.seg.tmp");
    std::fs::write(&leftover, b"POCR").unwrap();
    let mut store = LogStore::open(&log).unwrap();
    assert!(!leftover.exists());
    deposit(&mut store, &[env(A, 1, 10)]);
}

/// The log's segment files this process holds open.
fn open_segments(log: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.starts_with(log))
        .count()
}

#[test]
fn a_large_backlog_does_not_hold_a_descriptor_per_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    let mut store = LogStore::open_with_segment_bytes(&log, 512).unwrap();
    for fill in 0..300 {
        deposit(&mut store, &[env(A, fill as u8, 600)]);
    }
    assert!(segments(&log).len() >= 300);
    // Reading the whole backlog opens each old segment in turn.
    assert_eq!(everything(&mut store, A).len(), 300);
    assert!(open_segments(&log) <= 2, "{} open", open_segments(&log));
    drop(store);
    let mut store = LogStore::open_with_segment_bytes(&log, 512).unwrap();
    assert!(
        open_segments(&log) <= 2,
        "{} open after a reopen",
        open_segments(&log)
    );
    assert_eq!(everything(&mut store, A).len(), 300);
}

#[test]
fn segments_go_once_their_envelopes_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    let mut store = LogStore::open_with_segment_bytes(&log, 4096).unwrap();
    let mut ids = Vec::new();
    for fill in 0..40 {
        ids.extend(deposit(&mut store, &[env(A, fill, 1000)]));
    }
    assert!(segments(&log).len() >= 9);
    store.ack(A, &ids).unwrap();
    // The newest segment stays (new records go there); the rest is gone.
    assert_eq!(segments(&log).len(), 1);
    assert_eq!(store.disk_usage().0, 1);
}

#[test]
fn a_long_lived_envelope_does_not_hold_the_log_on_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    let mut store = LogStore::open_with_segment_bytes(&log, 4096).unwrap();
    // One envelope for an offline recipient, then heavy traffic to another
    // mailbox, each acknowledged soon after.
    let waiting = deposit(&mut store, &[env(B, 0xbb, 500)])[0];
    for round in 0..400u32 {
        let ids = deposit(&mut store, &[env(A, (round % 250) as u8, 1000)]);
        store.ack(A, &ids).unwrap();
    }
    // 400 KB went through; the log holds a few segments, not 100.
    let (files, bytes) = store.disk_usage();
    assert!(files <= 4, "{files} segments, {bytes} bytes");
    assert_eq!(segments(&log).len(), files);
    let page = everything(&mut store, B);
    assert_eq!(page.len(), 1);
    assert_eq!(
        (page[0].id, page[0].bytes.clone()),
        (waiting, vec![0xbb; 500])
    );
    // The copy survives a reopen, once.
    drop(store);
    let mut store = LogStore::open_with_segment_bytes(&log, 4096).unwrap();
    let page = everything(&mut store, B);
    assert_eq!(page.len(), 1);
    assert_eq!(
        (page[0].id, page[0].bytes.clone()),
        (waiting, vec![0xbb; 500])
    );
    assert_eq!(
        store.totals().unwrap(),
        Usage {
            envelopes: 1,
            bytes: 500
        }
    );
}

#[test]
fn a_compaction_cut_short_before_the_original_is_deleted_leaves_one_copy() {
    // Compaction writes the copies, flushes them, then deletes segments
    // oldest first. A crash before the deletions leaves the original and
    // its copy both on the disk: reading back must count the envelope once.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay-log");
    let mut store = LogStore::open_with_segment_bytes(&log, 4096).unwrap();
    let waiting = deposit(&mut store, &[env(B, 0xbb, 500)])[0];
    let first = segments(&log)[0].clone();
    let mut before = Vec::new();
    for round in 0..400u32 {
        before = segments(&log)
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        let ids = deposit(&mut store, &[env(A, (round % 250) as u8, 1000)]);
        store.ack(A, &ids).unwrap();
        if !first.exists() {
            break;
        }
    }
    assert!(!first.exists(), "the first segment was never compacted");
    drop(store);
    // Undo this round's deletions: the files as a crash just before them
    // leaves them (segments the round wrote keep their new contents).
    for (path, bytes) in before {
        if !path.exists() {
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let mut store = LogStore::open_with_segment_bytes(&log, 4096).unwrap();
    let page = everything(&mut store, B);
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), vec![waiting]);
    assert_eq!(page[0].bytes, vec![0xbb; 500]);
    assert!(everything(&mut store, A).is_empty());
    assert_eq!(
        store.totals().unwrap(),
        Usage {
            envelopes: 1,
            bytes: 500
        }
    );
    // And the next compaction or acknowledgement settles it.
    store.ack(B, &[waiting]).unwrap();
    assert_eq!(store.disk_usage().0, 1);
}

/// What a damaged log may do to a mutation, whatever it is.
#[derive(Debug, Clone)]
enum Damage {
    /// The file cut at this fraction of its length.
    Truncate(f64),
    /// One bit flipped at this fraction of the file.
    FlipBit(f64, u8),
    /// These bytes written at this fraction of the file.
    Overwrite(f64, Vec<u8>),
    /// These bytes appended.
    Append(Vec<u8>),
}

fn at_fraction(len: usize, fraction: f64) -> usize {
    ((len as f64 * fraction) as usize).min(len.saturating_sub(1))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

    /// Whatever happens to one segment file, opening the log never panics,
    /// and whatever it then serves is exactly what was deposited under that
    /// id: damage loses envelopes (or stops the relay), never alters one.
    #[test]
    fn a_damaged_log_never_serves_altered_bytes(
        sizes in proptest::collection::vec(1usize..700, 1..24),
        acked in proptest::collection::vec(proptest::bool::ANY, 24),
        segment_pick in 0usize..16,
        damage in proptest::prop_oneof![
            (0.0f64..1.0).prop_map(Damage::Truncate),
            ((0.0f64..1.0), 0u8..8).prop_map(|(f, b)| Damage::FlipBit(f, b)),
            ((0.0f64..1.0), proptest::collection::vec(proptest::num::u8::ANY, 1..64))
                .prop_map(|(f, b)| Damage::Overwrite(f, b)),
            proptest::collection::vec(proptest::num::u8::ANY, 1..64).prop_map(Damage::Append),
        ],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("relay-log");
        let mut deposited = std::collections::HashMap::new();
        {
            let mut store = LogStore::open_with_segment_bytes(&log, 1500).unwrap();
            for (i, size) in sizes.iter().enumerate() {
                let envelope = env(A, i as u8, *size);
                let id = deposit(&mut store, std::slice::from_ref(&envelope))[0];
                deposited.insert(id, envelope.bytes);
                if acked[i] {
                    store.ack(A, &[id]).unwrap();
                }
            }
        }
        let files = segments(&log);
        let file = &files[segment_pick % files.len()];
        let mut bytes = std::fs::read(file).unwrap();
        match &damage {
            Damage::Truncate(f) => bytes.truncate(at_fraction(bytes.len(), *f)),
            Damage::FlipBit(f, bit) => {
                let at = at_fraction(bytes.len(), *f);
                bytes[at] ^= 1 << bit;
            }
            Damage::Overwrite(f, with) => {
                let at = at_fraction(bytes.len(), *f);
                for (i, b) in with.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            Damage::Append(more) => bytes.extend_from_slice(more),
        }
        std::fs::write(file, &bytes).unwrap();

        if let Ok(mut store) = LogStore::open_with_segment_bytes(&log, 1500) {
            for served in everything(&mut store, A) {
                let original = deposited.get(&served.id);
                proptest::prop_assert_eq!(Some(&served.bytes), original, "envelope {}", served.id);
            }
            // And it keeps working.
            deposit(&mut store, &[env(A, 0xee, 10)]);
        }
    }
}
