//! Storage conformance: replay detection, outbox, prekeys and snapshots,
//! each case run against an in-memory store and a store file (reopened
//! between steps where that matters).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{T0, message_id, poc, temp_store, thread_id};
use poc_proto::certificate::{Prekey, PrekeyId};
use poc_proto::keys::PrekeySecret;
use poc_proto::testkit::DeterministicRandom;
use poc_proto::{PocId, Seconds, Timestamp};
use poc_store::{
    NewEntry, NewOutboxItem, OutboxId, OutboxStatus, RecordEvent, Store, StoreError, Tx,
};

/// Runs `case` on a fresh in-memory store and on a fresh file store.
fn on_both(case: impl Fn(&mut Store)) {
    let mut memory = Store::open_in_memory().unwrap();
    case(&mut memory);
    let (_dir, path, mut file) = temp_store();
    case(&mut file);
    drop(file);
    // And the file store still verifies after the case.
    let file = Store::open(&path).unwrap();
    assert!(file.read(|r| r.record_verify()).unwrap().is_clean());
}

fn at(offset: u64) -> Timestamp {
    Timestamp(T0.0 + offset)
}

// ---------------------------------------------------------------------------
// Replay detection

#[test]
fn a_message_is_seen_once_received_from_its_sender() {
    on_both(|store| {
        let fra = poc("FRA.cert");
        let ken = poc("KEN.cert");
        let received = |n: u8, from: &PocId| NewEntry {
            peer: Some(from.clone()),
            message_id: Some(message_id(n)),
            exercise: Some("EX-1".into()),
            envelope: Some(vec![n; 64]),
            ..NewEntry::new(at(u64::from(n)), RecordEvent::Received)
        };
        store
            .transaction(|tx| {
                assert!(!tx.record_received_from(&fra, message_id(1))?);
                tx.record_append(received(1, &fra))?;
                // Seen inside the transaction that recorded it.
                assert!(tx.record_received_from(&fra, message_id(1))?);
                // Ids are per sender, and only Received entries count.
                assert!(!tx.record_received_from(&ken, message_id(1))?);
                tx.record_append(NewEntry {
                    event: RecordEvent::Rejected,
                    ..received(2, &fra)
                })?;
                tx.record_append(NewEntry {
                    event: RecordEvent::Sent,
                    ..received(3, &fra)
                })?;
                assert!(!tx.record_received_from(&fra, message_id(2))?);
                assert!(!tx.record_received_from(&fra, message_id(3))?);
                Ok(())
            })
            .unwrap();
        // A purge removes payloads, not what was seen.
        store
            .transaction(|tx| tx.record_purge_exercise("EX-1", at(10)))
            .unwrap();
        assert!(
            store
                .read(|r| r.record_received_from(&fra, message_id(1)))
                .unwrap()
        );
    });
}

// ---------------------------------------------------------------------------
// Outbox

/// Records message `n` as sent and queues it: recipient FRA.cert for even
/// `n`, KEN.cert for odd, envelope `[n; 64]`.
fn send(tx: &mut Tx<'_>, n: u8, next_attempt: u64, expires: u64) -> Result<OutboxId, StoreError> {
    tx.record_send(sent(n), schedule(next_attempt, expires))
}

fn sent(n: u8) -> NewEntry {
    NewEntry {
        peer: Some(poc(if n.is_multiple_of(2) {
            "FRA.cert"
        } else {
            "KEN.cert"
        })),
        message_id: Some(message_id(n)),
        thread_id: Some(thread_id(n)),
        kind: Some("inquiry".into()),
        envelope: Some(vec![n; 64]),
        content: Some(vec![n; 32]),
        ..NewEntry::new(at(u64::from(n)), RecordEvent::Sent)
    }
}

fn schedule(next_attempt: u64, expires: u64) -> NewOutboxItem {
    NewOutboxItem {
        expires_at: at(expires),
        next_attempt_at: at(next_attempt),
    }
}

#[test]
fn outbox_due_order_and_limit() {
    on_both(|store| {
        let ids = store
            .transaction(|tx| {
                Ok([
                    send(tx, 1, 30, 10_000)?,
                    send(tx, 2, 10, 10_000)?,
                    send(tx, 3, 10, 10_000)?,
                    send(tx, 4, 500, 10_000)?,
                ])
            })
            .unwrap();
        store
            .read(|r| {
                let due: Vec<OutboxId> = r
                    .outbox_due(at(100), 10)?
                    .iter()
                    .map(|d| d.item.id)
                    .collect();
                // Most overdue first, then queue order; item 4 is not due.
                assert_eq!(due, [ids[1], ids[2], ids[0]]);
                let due: Vec<OutboxId> = r
                    .outbox_due(at(100), 2)?
                    .iter()
                    .map(|d| d.item.id)
                    .collect();
                assert_eq!(due, [ids[1], ids[2]]);
                assert!(r.outbox_due(at(9), 10)?.is_empty());
                assert_eq!(r.next_outbox_attempt()?, Some(at(10)));
                assert_eq!(r.next_outbox_expiry()?, Some(at(10_000)));
                let first = r.outbox_get(ids[0])?.unwrap();
                assert_eq!(first.status, OutboxStatus::Pending);
                assert_eq!(first.attempts, 0);
                assert_eq!(first.created_at, at(1));
                let due = r.outbox_due(at(100), 10)?;
                assert_eq!((due[2].item.id, &due[2].envelope), (ids[0], &vec![1; 64]));
                assert_eq!(first.recipient, poc("KEN.cert"));
                assert_eq!(r.outbox_by_message(message_id(4))?.unwrap().id, ids[3]);
                assert!(r.outbox_get(OutboxId(999))?.is_none());
                Ok(())
            })
            .unwrap();
        let err = store.transaction(|tx| send(tx, 1, 0, 1)).unwrap_err();
        assert!(matches!(err, StoreError::OutboxDuplicate(id) if id == message_id(1)));
    });
}

#[test]
fn outbox_lifecycle_reschedule_deliver_fail() {
    on_both(|store| {
        let (a, b, c) = store
            .transaction(|tx| {
                Ok((
                    send(tx, 1, 0, 10_000)?,
                    send(tx, 2, 0, 10_000)?,
                    send(tx, 3, 0, 10_000)?,
                ))
            })
            .unwrap();
        // Two failed attempts for a, then delivery through a relay.
        store
            .transaction(|tx| {
                assert!(tx.outbox_reschedule(a, at(60), "connection refused")?);
                assert!(tx.outbox_reschedule(a, at(180), "timed out")?);
                Ok(())
            })
            .unwrap();
        store
            .read(|r| {
                let item = r.outbox_get(a)?.unwrap();
                assert_eq!(item.attempts, 2);
                assert_eq!(item.last_error.as_deref(), Some("timed out"));
                assert_eq!(item.next_attempt_at, at(180));
                let due: Vec<OutboxId> = r
                    .outbox_due(at(100), 10)?
                    .iter()
                    .map(|d| d.item.id)
                    .collect();
                assert_eq!(due, [b, c]);
                assert_eq!(r.next_outbox_attempt()?, Some(at(0)));
                Ok(())
            })
            .unwrap();
        store
            .transaction(|tx| {
                assert!(tx.outbox_mark_delivered(a, "relay.example", at(200))?);
                assert!(tx.outbox_mark_delivered(b, "direct", at(201))?);
                assert!(tx.outbox_mark_failed(c, "recipient revoked", at(202))?);
                // Only pending items change.
                assert!(!tx.outbox_mark_delivered(a, "direct", at(300))?);
                assert!(!tx.outbox_reschedule(b, at(400), "late")?);
                assert!(!tx.outbox_mark_failed(a, "late", at(400))?);
                Ok(())
            })
            .unwrap();
        store
            .read(|r| {
                let a = r.outbox_get(a)?.unwrap();
                assert_eq!(a.status, OutboxStatus::Delivered);
                assert_eq!(a.delivered_via.as_deref(), Some("relay.example"));
                assert_eq!(a.delivered_at, Some(at(200)));
                assert_eq!(a.finished_at, Some(at(200)));
                assert_eq!(a.attempts, 2);
                let b = r.outbox_get(b)?.unwrap();
                assert_eq!(b.attempts, 0);
                assert_eq!(b.delivered_via.as_deref(), Some("direct"));
                let c = r.outbox_get(c)?.unwrap();
                assert_eq!(c.status, OutboxStatus::Failed);
                assert_eq!(c.last_error.as_deref(), Some("recipient revoked"));
                assert_eq!(c.delivered_at, None);
                assert_eq!(c.finished_at, Some(at(202)));
                assert!(r.outbox_due(at(u64::from(u32::MAX)), 10)?.is_empty());
                assert_eq!(r.next_outbox_attempt()?, None);
                assert_eq!(r.outbox_list(Some(OutboxStatus::Delivered))?.len(), 2);
                assert_eq!(r.outbox_list(Some(OutboxStatus::Failed))?.len(), 1);
                assert_eq!(r.outbox_list(None)?.len(), 3);
                Ok(())
            })
            .unwrap();
        let err = store
            .transaction(|tx| tx.outbox_mark_delivered(OutboxId(999), "direct", at(0)))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::OutboxNotFound(OutboxId(999))),
            "{err}"
        );
        // Finished items can be pruned; the record keeps what was sent.
        let pruned = store
            .transaction(|tx| tx.outbox_prune_finished(at(202)))
            .unwrap();
        assert_eq!(pruned, 2);
        assert_eq!(store.read(|r| r.outbox_list(None)).unwrap().len(), 1);
    });
}

#[test]
fn outbox_expire_reports_each_expired_item_once() {
    on_both(|store| {
        let (a, b, c) = store
            .transaction(|tx| {
                Ok((
                    send(tx, 1, 0, 100)?,
                    send(tx, 2, 0, 200)?,
                    send(tx, 3, 0, 100)?,
                ))
            })
            .unwrap();
        store
            .transaction(|tx| tx.outbox_mark_delivered(c, "direct", at(50)).map(|_| ()))
            .unwrap();
        // Expiry is strict: at(100) is not past expires_at = at(100).
        assert!(
            store
                .transaction(|tx| tx.outbox_expire(at(100)))
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.read(|r| r.outbox_due(at(100), 10)).unwrap().len(), 2);
        // Past expiry, a pending item is no longer due, only expirable.
        assert_eq!(store.read(|r| r.outbox_due(at(101), 10)).unwrap().len(), 1);
        let expired = store.transaction(|tx| tx.outbox_expire(at(101))).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, a);
        assert_eq!(expired[0].status, OutboxStatus::Expired);
        assert_eq!(expired[0].finished_at, Some(at(101)));
        assert_eq!(expired[0].message_id, message_id(1));
        assert_eq!(
            store.read(|r| r.outbox_get(a)).unwrap().unwrap(),
            expired[0]
        );
        assert!(
            store
                .transaction(|tx| tx.outbox_expire(at(150)))
                .unwrap()
                .is_empty()
        );
        let expired = store
            .transaction(|tx| tx.outbox_expire(at(10_000)))
            .unwrap();
        assert_eq!(expired.iter().map(|i| i.id).collect::<Vec<_>>(), [b]);
        assert_eq!(store.read(|r| r.next_outbox_expiry()).unwrap(), None);
        assert!(
            !store
                .transaction(|tx| tx.outbox_mark_delivered(a, "direct", at(10_001)))
                .unwrap()
        );
    });
}

#[test]
fn outbox_survives_reopen_mid_lifecycle() {
    let (_dir, path, mut store) = temp_store();
    let id = store.transaction(|tx| send(tx, 1, 0, 10_000)).unwrap();
    store
        .transaction(|tx| tx.outbox_reschedule(id, at(60), "no route"))
        .unwrap();
    drop(store);
    let mut store = Store::open(&path).unwrap();
    let item = store.read(|r| r.outbox_get(id)).unwrap().unwrap();
    assert_eq!((item.attempts, item.next_attempt_at), (1, at(60)));
    assert_eq!(store.read(|r| r.outbox_due(at(60), 1)).unwrap().len(), 1);
    // Ids are never reused, even after pruning.
    store
        .transaction(|tx| {
            tx.outbox_mark_delivered(id, "direct", at(61))?;
            tx.outbox_prune_finished(at(62))
        })
        .unwrap();
    let next = store.transaction(|tx| send(tx, 2, 0, 10_000)).unwrap();
    assert!(next > id);
}

#[test]
fn record_send_refuses_an_entry_it_cannot_deliver() {
    on_both(|store| {
        let cases: [(&str, NewEntry); 4] = [
            (
                "a Sent event",
                NewEntry {
                    event: RecordEvent::Received,
                    ..sent(1)
                },
            ),
            (
                "a message id",
                NewEntry {
                    message_id: None,
                    ..sent(1)
                },
            ),
            (
                "a recipient",
                NewEntry {
                    peer: None,
                    ..sent(1)
                },
            ),
            (
                "an envelope",
                NewEntry {
                    envelope: None,
                    ..sent(1)
                },
            ),
        ];
        for (needs, entry) in cases {
            let err = store
                .transaction(|tx| tx.record_send(entry, schedule(0, 100)))
                .unwrap_err();
            assert!(
                matches!(&err, StoreError::Invalid(m) if m.contains(needs)),
                "{needs}: {err}"
            );
        }
        // Nothing was recorded or queued.
        assert!(store.read(|r| r.record_head()).unwrap().is_none());
        assert!(store.read(|r| r.outbox_list(None)).unwrap().is_empty());
    });
}

#[test]
fn a_purged_exercise_fails_its_undelivered_messages() {
    on_both(|store| {
        let exercise = |n| NewEntry {
            exercise: Some("EX-1".into()),
            ..sent(n)
        };
        let (a, b, real) = store
            .transaction(|tx| {
                Ok((
                    tx.record_send(exercise(1), schedule(0, 10_000))?,
                    tx.record_send(exercise(2), schedule(0, 10_000))?,
                    send(tx, 3, 0, 10_000)?,
                ))
            })
            .unwrap();
        store
            .transaction(|tx| {
                tx.outbox_mark_delivered(b, "direct", at(10))?;
                tx.record_purge_exercise("EX-1", at(20))
            })
            .unwrap();
        store
            .read(|r| {
                let a = r.outbox_get(a)?.unwrap();
                assert_eq!(a.status, OutboxStatus::Failed);
                assert_eq!(
                    a.last_error.as_deref(),
                    Some("the exercise was purged before delivery")
                );
                assert_eq!(a.finished_at, Some(at(20)));
                // Delivered before the purge: left as it was.
                assert_eq!(r.outbox_get(b)?.unwrap().status, OutboxStatus::Delivered);
                let due: Vec<OutboxId> = r
                    .outbox_due(at(100), 10)?
                    .iter()
                    .map(|d| d.item.id)
                    .collect();
                assert_eq!(due, [real]);
                Ok(())
            })
            .unwrap();
    });
}

// ---------------------------------------------------------------------------
// Prekeys

fn prekey(label: &str, id: u64, until: u64) -> (Prekey, PrekeySecret) {
    let secret = PrekeySecret::from_secret_bytes(&DeterministicRandom::bytes32(label));
    let prekey = Prekey {
        id: PrekeyId(id),
        public: secret.public(),
        valid_from: T0,
        valid_until: at(until),
    };
    (prekey, secret)
}

#[test]
fn prekeys_put_load_list_delete() {
    on_both(|store| {
        // Random ids use the full u64 range.
        let (p1, s1) = prekey("one", 1, 1000);
        let (p2, s2) = prekey("two", u64::MAX - 5, 2000);
        let (p3, s3) = prekey("three", 1 << 63, 3000);
        store
            .transaction(|tx| {
                tx.prekey_put(&p1, &s1)?;
                tx.prekey_put(&p2, &s2)?;
                tx.prekey_put(&p3, &s3)?;
                // The same key again: its validity is updated.
                let longer = Prekey {
                    valid_until: at(1500),
                    ..p1.clone()
                };
                tx.prekey_put(&longer, &s1)
            })
            .unwrap();
        store
            .read(|r| {
                let list = r.prekeys_list()?;
                assert_eq!(
                    list.iter().map(|p| p.id).collect::<Vec<_>>(),
                    [p1.id, p3.id, p2.id]
                );
                assert_eq!(list[0].valid_until, at(1500));
                assert_eq!(list[2], p2);
                let ring = r.prekeys_load()?;
                for (p, s) in [(&p1, &s1), (&p2, &s2), (&p3, &s3)] {
                    let loaded = ring.secret(p.id).unwrap();
                    assert_eq!(loaded.public(), p.public);
                    assert_eq!(*loaded.to_secret_bytes(), *s.to_secret_bytes());
                }
                Ok(())
            })
            .unwrap();
        // A secret that is not the prekey's, and an id reused for another key.
        let err = store.transaction(|tx| tx.prekey_put(&p1, &s2)).unwrap_err();
        assert!(
            matches!(err, StoreError::PrekeyMismatch { id } if id == p1.id),
            "{err}"
        );
        let (other, other_secret) = prekey("other", 1, 1000);
        let err = store
            .transaction(|tx| tx.prekey_put(&other, &other_secret))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::PrekeyIdInUse { id } if id == p1.id),
            "{err}"
        );

        assert!(store.transaction(|tx| tx.prekey_delete(p2.id)).unwrap());
        assert!(!store.transaction(|tx| tx.prekey_delete(p2.id)).unwrap());
        // Expired with a grace period, as PrekeyRing::expire does.
        let expired = store
            .transaction(|tx| tx.prekeys_expire(at(1500 + 100 + 1), Seconds(100)))
            .unwrap();
        assert_eq!(expired, [p1.id]);
        let ring = store.read(|r| r.prekeys_load()).unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), [p3.id]);
    });
}

#[test]
fn deleted_prekey_secret_leaves_the_database_files() {
    let (_dir, path, mut store) = temp_store();
    let (keep, keep_secret) = prekey("kept", 10, 1000);
    let (gone, gone_secret) = prekey("deleted", 11, 1000);
    let gone_bytes = *gone_secret.to_secret_bytes();
    let keep_bytes = *keep_secret.to_secret_bytes();
    store
        .transaction(|tx| {
            tx.prekey_put(&keep, &keep_secret)?;
            tx.prekey_put(&gone, &gone_secret)
        })
        .unwrap();
    // Positive control: the search finds secrets that are stored, both while
    // they sit in the WAL and after a checkpoint into the main file.
    assert!(common::db_files_contain(&path, &gone_bytes));
    assert!(store.checkpoint().unwrap());
    assert!(common::file_contains(&path, &gone_bytes));
    // More traffic so the page with the secret is also in the WAL again.
    store
        .transaction(|tx| tx.prekey_put(&keep, &keep_secret))
        .unwrap();

    assert!(store.transaction(|tx| tx.prekey_delete(gone.id)).unwrap());
    assert!(!store.wipe_pending());
    // The store checkpointed and truncated the WAL after that commit.
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    assert!(!common::db_files_contain(&path, &gone_bytes));
    assert!(common::db_files_contain(&path, &keep_bytes));
    drop(store);
    assert!(!common::db_files_contain(&path, &gone_bytes));
    let store = Store::open(&path).unwrap();
    assert!(
        store
            .read(|r| r.prekeys_load())
            .unwrap()
            .secret(gone.id)
            .is_none()
    );
}

// ---------------------------------------------------------------------------
// Directory snapshots

#[test]
fn snapshots_put_latest_get_conflict_prune() {
    on_both(|store| {
        assert!(store.read(|r| r.snapshot_latest()).unwrap().is_none());
        store
            .transaction(|tx| {
                tx.snapshot_put(3, [3; 32], b"three")?;
                tx.snapshot_put(5, [5; 32], b"five")?;
                tx.snapshot_put(4, [4; 32], b"four")?;
                // Idempotent for the same digest.
                tx.snapshot_put(5, [5; 32], b"five")
            })
            .unwrap();
        store
            .read(|r| {
                let latest = r.snapshot_latest()?.unwrap();
                assert_eq!((latest.sequence, latest.digest), (5, [5; 32]));
                assert_eq!(latest.bytes, b"five");
                assert_eq!(r.snapshot_get(4)?.unwrap().bytes, b"four");
                assert!(r.snapshot_get(6)?.is_none());
                assert!(r.snapshot_get(u64::MAX)?.is_none());
                Ok(())
            })
            .unwrap();
        let err = store
            .transaction(|tx| tx.snapshot_put(5, [6; 32], b"fork"))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::SnapshotConflict { sequence: 5 }),
            "{err}"
        );
        let err = store
            .transaction(|tx| tx.snapshot_put(u64::MAX, [0; 32], b"x"))
            .unwrap_err();
        assert!(matches!(err, StoreError::OutOfRange { .. }), "{err}");
        assert_eq!(
            store.transaction(|tx| tx.snapshot_prune_before(5)).unwrap(),
            2
        );
        assert!(store.read(|r| r.snapshot_get(4)).unwrap().is_none());
        assert_eq!(
            store
                .read(|r| r.snapshot_latest())
                .unwrap()
                .unwrap()
                .sequence,
            5
        );
    });
}
