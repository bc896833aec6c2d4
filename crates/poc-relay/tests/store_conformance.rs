//! One conformance suite for every relay storage backend: the in-memory
//! store, the segment log and the SQLite store must behave the same. A new backend (e.g.
//! PostgreSQL) adds one line to `backends!`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use poc_proto::Timestamp;
use poc_proto::certificate::MailboxId;
use poc_relay::store::{
    DepositOutcome, LogStore, MemoryStore, NewEnvelope, Quota, RelayStore, SqliteStore, Usage,
};

const QUOTA: Quota = Quota {
    max_envelopes: 100,
    max_bytes: 1_000_000,
};
const A: MailboxId = MailboxId([0xaa; 16]);
const B: MailboxId = MailboxId([0xbb; 16]);

fn env(mailbox: MailboxId, expires: u64, fill: u8, len: usize) -> NewEnvelope {
    NewEnvelope {
        mailbox,
        expires_at: Timestamp(expires),
        bytes: vec![fill; len],
    }
}

fn stored(outcomes: &[DepositOutcome]) -> Vec<u64> {
    outcomes
        .iter()
        .map(|o| match o {
            DepositOutcome::Stored(id) => *id,
            other => panic!("not stored: {other:?}"),
        })
        .collect()
}

fn deposit_then_fetch_in_order_without_deleting(store: &mut dyn RelayStore) {
    let ids = stored(
        &store
            .deposit_batch(
                &[
                    env(A, 1000, 1, 10),
                    env(B, 1000, 2, 20),
                    env(A, 1000, 3, 30),
                ],
                QUOTA,
            )
            .unwrap(),
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let page = store.fetch(A, Timestamp(10), 10, 1 << 20).unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].bytes, vec![1; 10]);
    assert_eq!(page[1].bytes, vec![3; 30]);
    assert_eq!((page[0].id, page[1].id), (ids[0], ids[2]));
    assert_eq!(page[0].expires_at, Timestamp(1000));
    // Fetching does not delete.
    assert_eq!(store.fetch(A, Timestamp(10), 10, 1 << 20).unwrap(), page);
    assert_eq!(
        store.usage(A).unwrap(),
        Usage {
            envelopes: 2,
            bytes: 40
        }
    );
    assert_eq!(
        store.totals().unwrap(),
        Usage {
            envelopes: 3,
            bytes: 60
        }
    );
}

fn pages_respect_item_and_byte_limits_but_always_return_one(store: &mut dyn RelayStore) {
    let batch: Vec<_> = (0..5u8).map(|i| env(A, 1000, i, 100)).collect();
    stored(&store.deposit_batch(&batch, QUOTA).unwrap());
    assert_eq!(store.fetch(A, Timestamp(0), 3, 1 << 20).unwrap().len(), 3);
    assert_eq!(store.fetch(A, Timestamp(0), 10, 250).unwrap().len(), 2);
    assert_eq!(store.fetch(A, Timestamp(0), 10, 50).unwrap().len(), 1);
    assert!(
        store
            .fetch(B, Timestamp(0), 10, 1 << 20)
            .unwrap()
            .is_empty()
    );
}

fn ack_deletes_only_the_own_mailbox(store: &mut dyn RelayStore) {
    let ids = stored(
        &store
            .deposit_batch(&[env(A, 1000, 1, 10), env(B, 1000, 2, 10)], QUOTA)
            .unwrap(),
    );
    // B cannot delete A's envelope, even knowing its id.
    assert_eq!(store.ack(B, &[ids[0]]).unwrap(), 0);
    assert_eq!(store.fetch(A, Timestamp(0), 10, 1 << 20).unwrap().len(), 1);
    assert_eq!(store.ack(A, &[ids[0], ids[0], 999_999]).unwrap(), 1);
    assert_eq!(store.usage(A).unwrap(), Usage::default());
    assert_eq!(
        store.usage(B).unwrap(),
        Usage {
            envelopes: 1,
            bytes: 10
        }
    );
    assert!(
        store
            .fetch(A, Timestamp(0), 10, 1 << 20)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.fetch(B, Timestamp(0), 10, 1 << 20).unwrap().len(), 1);
    // Ids are never reused after deletion.
    let next = stored(&store.deposit_batch(&[env(A, 1000, 4, 10)], QUOTA).unwrap());
    assert!(next[0] > ids[1]);
}

fn quotas_count_and_bytes_are_enforced_per_mailbox(store: &mut dyn RelayStore) {
    let quota = Quota {
        max_envelopes: 3,
        max_bytes: 250,
    };
    let outcomes = store
        .deposit_batch(
            &[
                env(A, 1000, 1, 100),
                env(A, 1000, 2, 100),
                env(A, 1000, 3, 100),
                env(A, 1000, 4, 50),
                env(B, 1000, 5, 100),
            ],
            quota,
        )
        .unwrap();
    assert!(matches!(outcomes[0], DepositOutcome::Stored(_)));
    assert!(matches!(outcomes[1], DepositOutcome::Stored(_)));
    assert_eq!(outcomes[2], DepositOutcome::MailboxBytesFull);
    assert!(matches!(outcomes[3], DepositOutcome::Stored(_)));
    assert!(
        matches!(outcomes[4], DepositOutcome::Stored(_)),
        "B has its own quota"
    );
    let outcomes = store.deposit_batch(&[env(A, 1000, 6, 1)], quota).unwrap();
    assert_eq!(outcomes, vec![DepositOutcome::MailboxFull]);
    assert_eq!(
        store.usage(A).unwrap(),
        Usage {
            envelopes: 3,
            bytes: 250
        }
    );
}

fn expired_envelopes_are_not_fetched_and_are_swept(store: &mut dyn RelayStore) {
    stored(
        &store
            .deposit_batch(
                &[env(A, 100, 1, 10), env(A, 200, 2, 10), env(B, 50, 3, 10)],
                QUOTA,
            )
            .unwrap(),
    );
    let page = store.fetch(A, Timestamp(150), 10, 1 << 20).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].bytes, vec![2; 10]);
    assert_eq!(store.expire(Timestamp(150)).unwrap(), 2);
    assert_eq!(store.expire(Timestamp(150)).unwrap(), 0);
    assert_eq!(
        store.totals().unwrap(),
        Usage {
            envelopes: 1,
            bytes: 10
        }
    );
    // Expiry is inclusive: an envelope is still good at its expiry second.
    assert_eq!(
        store.fetch(A, Timestamp(200), 10, 1 << 20).unwrap().len(),
        1
    );
}

fn empty_store_answers_everything(store: &mut dyn RelayStore) {
    assert!(store.fetch(A, Timestamp(0), 10, 100).unwrap().is_empty());
    assert_eq!(store.ack(A, &[1, 2]).unwrap(), 0);
    assert_eq!(store.expire(Timestamp(u64::MAX)).unwrap(), 0);
    assert_eq!(store.totals().unwrap(), Usage::default());
    assert!(store.deposit_batch(&[], QUOTA).unwrap().is_empty());
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            fn make() -> (Box<dyn RelayStore>, Option<tempfile::TempDir>) {
                $make
            }
            #[test]
            fn deposit_then_fetch() {
                let (mut s, _d) = make();
                deposit_then_fetch_in_order_without_deleting(s.as_mut());
            }
            #[test]
            fn pages() {
                let (mut s, _d) = make();
                pages_respect_item_and_byte_limits_but_always_return_one(s.as_mut());
            }
            #[test]
            fn ack() {
                let (mut s, _d) = make();
                ack_deletes_only_the_own_mailbox(s.as_mut());
            }
            #[test]
            fn quotas() {
                let (mut s, _d) = make();
                quotas_count_and_bytes_are_enforced_per_mailbox(s.as_mut());
            }
            #[test]
            fn expiry() {
                let (mut s, _d) = make();
                expired_envelopes_are_not_fetched_and_are_swept(s.as_mut());
            }
            #[test]
            fn empty() {
                let (mut s, _d) = make();
                empty_store_answers_everything(s.as_mut());
            }
        }
    };
}

conformance!(memory, (Box::new(MemoryStore::new()), None));
conformance!(log, {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(&dir.path().join("relay-log")).unwrap();
    (Box::new(store), Some(dir))
});
// Segments of ~1 KiB: every suite above then crosses segment boundaries,
// deletes segments and compacts.
conformance!(log_small_segments, {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open_with_segment_bytes(&dir.path().join("relay-log"), 1024).unwrap();
    (Box::new(store), Some(dir))
});
conformance!(sqlite, {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("relay.sqlite")).unwrap();
    (Box::new(store), Some(dir))
});

#[test]
fn sqlite_is_durable_across_reopen_with_wal_and_a_flusher_of_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.sqlite");
    let ids = {
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.pragma("journal_mode").unwrap(), "wal");
        // Commits do not wait for the disk: the flusher syncs the WAL.
        assert_eq!(store.pragma("synchronous").unwrap(), "1", "NORMAL");
        assert_eq!(store.pragma("secure_delete").unwrap(), "2", "FAST");
        // An envelope in an overflow page of its own (benches/store.rs).
        assert_eq!(store.pragma("page_size").unwrap(), "4096");
        let mut flusher = store
            .take_flusher()
            .expect("the SQLite store flushes its WAL");
        assert!(store.take_flusher().is_none(), "handed out once");
        let ids = stored(
            &store
                .deposit_batch(&[env(A, 1000, 1, 10), env(A, 1000, 2, 10)], QUOTA)
                .unwrap(),
        );
        flusher.flush().unwrap();
        ids
    };
    let mut store = SqliteStore::open(&path).unwrap();
    let page = store.fetch(A, Timestamp(0), 10, 1 << 20).unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    store.ack(A, &[ids[0]]).unwrap();
    drop(store);
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.totals().unwrap(),
        Usage {
            envelopes: 1,
            bytes: 10
        }
    );
    assert_eq!(
        store.usage(A).unwrap(),
        Usage {
            envelopes: 1,
            bytes: 10
        }
    );
    let next = stored(&store.deposit_batch(&[env(A, 1000, 3, 10)], QUOTA).unwrap());
    assert!(next[0] > ids[1], "ids are not reused after a restart");
}
