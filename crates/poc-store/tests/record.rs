//! The hash-chained record: appends, queries, and detection of every kind of
//! tampering done with plain SQL on the database file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{
    T0, append_samples, db_files_contain, message_id, poc, sample_entry, tamper, tamper_sql,
    temp_store, thread_id, verify_file,
};
use poc_proto::Timestamp;
use poc_store::{
    GENESIS_PREV_HASH, NewEntry, ProblemKind, RecordEvent, Store, StoreError, entry_hash,
};

#[test]
fn append_links_entries_and_verifies_clean() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 5);
    let entries = store.read(|r| r.record_page(0, 100)).unwrap();
    assert_eq!(entries.len(), 5);
    let mut prev = GENESIS_PREV_HASH;
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.seq, i as u64 + 1);
        assert_eq!(entry.prev_hash, prev);
        // The documented construction, recomputed from the entry's fields.
        let fields = entry.to_new_entry();
        assert_eq!(entry.payload_hash, fields.payload_hash());
        assert_eq!(entry.body_hash, fields.body_hash(&entry.payload_hash));
        assert_eq!(
            entry.entry_hash,
            entry_hash(&entry.prev_hash, entry.seq, &entry.body_hash)
        );
        prev = entry.entry_hash;
    }
    let report = store.read(|r| r.record_verify()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.entries, 5);
    assert_eq!(report.head.unwrap().seq, 5);
    assert_eq!(report.head_hash(), prev);
    drop(store);
    assert!(verify_file(&path).is_empty());
}

#[test]
fn every_field_is_covered_by_the_hash() {
    let base = sample_entry(7, RecordEvent::Received);
    let base_hash = base.body_hash(&base.payload_hash());
    let variants = [
        NewEntry {
            at: Timestamp(base.at.0 + 1),
            ..base.clone()
        },
        NewEntry {
            event: RecordEvent::Rejected,
            ..base.clone()
        },
        NewEntry {
            peer: Some(poc("EST.cert")),
            ..base.clone()
        },
        NewEntry {
            peer: None,
            ..base.clone()
        },
        NewEntry {
            message_id: Some(message_id(8)),
            ..base.clone()
        },
        NewEntry {
            thread_id: None,
            ..base.clone()
        },
        NewEntry {
            kind: Some("response".into()),
            ..base.clone()
        },
        NewEntry {
            exercise: Some("cyber-drill".into()),
            ..base.clone()
        },
        NewEntry {
            envelope: None,
            ..base.clone()
        },
        NewEntry {
            content: Some(b"other".to_vec()),
            ..base.clone()
        },
        NewEntry {
            signature: Some([0; 64]),
            ..base.clone()
        },
        NewEntry {
            detail: Some(String::new()),
            ..base.clone()
        },
    ];
    for variant in variants {
        assert_ne!(
            variant.body_hash(&variant.payload_hash()),
            base_hash,
            "{variant:?}"
        );
    }
    // Length prefixes keep field boundaries: moving bytes between
    // neighbouring fields changes the hash.
    let a = NewEntry {
        kind: Some("ab".into()),
        exercise: Some("c".into()),
        ..NewEntry::new(T0, RecordEvent::Note)
    };
    let b = NewEntry {
        kind: Some("a".into()),
        exercise: Some("bc".into()),
        ..NewEntry::new(T0, RecordEvent::Note)
    };
    assert_ne!(
        a.body_hash(&a.payload_hash()),
        b.body_hash(&b.payload_hash())
    );
}

#[test]
fn queries_by_seq_thread_message_and_page() {
    let mut store = Store::open_in_memory().unwrap();
    assert_eq!(store.read(|r| r.record_head()).unwrap(), None);
    append_samples(&mut store, 9);
    store
        .read(|r| {
            let third = r.record_get(3)?.unwrap();
            assert_eq!(third.message_id, Some(message_id(3)));
            assert_eq!(
                third.content.as_deref(),
                Some(&b"signed content of message 3"[..])
            );
            assert_eq!(third.signature, Some([3; 64]));
            assert_eq!(r.record_get(10)?, None);
            assert_eq!(r.record_get(u64::MAX)?, None);

            // thread_id(n % 3): entries 1, 4, 7 share thread 1.
            let thread: Vec<u64> = r
                .record_thread(thread_id(1))?
                .iter()
                .map(|e| e.seq)
                .collect();
            assert_eq!(thread, [1, 4, 7]);

            // Entry 4 is Received from FRA.cert (even n).
            let found =
                r.record_find_message(&poc("FRA.cert"), message_id(4), RecordEvent::Received)?;
            assert_eq!(found.map(|e| e.seq), Some(4));
            assert!(
                r.record_find_message(&poc("KEN.cert"), message_id(4), RecordEvent::Received)?
                    .is_none()
            );
            assert!(
                r.record_find_message(&poc("FRA.cert"), message_id(4), RecordEvent::Rejected)?
                    .is_none()
            );

            let mut seen = Vec::new();
            let mut after = 0;
            loop {
                let page = r.record_page(after, 4)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                seen.extend(page.iter().map(|e| e.seq));
            }
            assert_eq!(seen, (1..=9).collect::<Vec<_>>());
            Ok(())
        })
        .unwrap();
}

#[test]
fn record_time_must_fit_sqlite_integers() {
    let mut store = Store::open_in_memory().unwrap();
    let err = store
        .transaction(|tx| tx.record_append(NewEntry::new(Timestamp(u64::MAX), RecordEvent::Note)))
        .unwrap_err();
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err}");
}

#[test]
fn guard_triggers_refuse_plain_deletes_and_rewrites() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 2);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert!(
        conn.execute("DELETE FROM record WHERE seq = 1", [])
            .is_err()
    );
    assert!(
        conn.execute("UPDATE record SET at = 5 WHERE seq = 1", [])
            .is_err()
    );
    assert!(
        conn.execute("UPDATE record SET content = x'00' WHERE seq = 1", [])
            .is_err()
    );
    drop(conn);
    assert!(verify_file(&path).is_empty());
}

/// Flips one byte of entry 3's content.
#[test]
fn detects_an_edited_content_byte() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 5);
    drop(store);
    tamper(&path, |conn| {
        let mut content: Vec<u8> = conn
            .query_row("SELECT content FROM record WHERE seq = 3", [], |r| r.get(0))
            .unwrap();
        content[0] ^= 0x01;
        conn.execute("UPDATE record SET content = ?1 WHERE seq = 3", [content])
            .unwrap();
    });
    assert_eq!(verify_file(&path), [(3, ProblemKind::Edited)]);
}

#[test]
fn detects_a_changed_time() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 5);
    drop(store);
    tamper_sql(&path, "UPDATE record SET at = at - 3600 WHERE seq = 2");
    assert_eq!(verify_file(&path), [(2, ProblemKind::Edited)]);
}

#[test]
fn detects_a_changed_peer_and_a_changed_column_type() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 5);
    drop(store);
    tamper_sql(&path, "UPDATE record SET peer = 'EST.cert' WHERE seq = 4");
    assert_eq!(verify_file(&path), [(4, ProblemKind::Edited)]);

    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 5);
    drop(store);
    // The same bytes as a blob instead of text: the hash input is unchanged,
    // the type check still catches it. (STRICT tables refuse the change, so
    // the attacker rewrites the table without STRICT.)
    tamper_sql(
        &path,
        "PRAGMA writable_schema = ON;
         UPDATE sqlite_schema SET sql = replace(sql, ') STRICT', ')')
           WHERE name = 'record';
         PRAGMA writable_schema = OFF;",
    );
    tamper_sql(
        &path,
        "UPDATE record SET peer = CAST(peer AS BLOB) WHERE seq = 2",
    );
    assert_eq!(verify_file(&path), [(2, ProblemKind::Edited)]);
}

#[test]
fn detects_a_deleted_middle_entry() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 5);
    drop(store);
    tamper_sql(&path, "DELETE FROM record WHERE seq = 3");
    assert_eq!(verify_file(&path), [(3, ProblemKind::Missing)]);
}

#[test]
fn detects_a_deleted_first_entry_and_a_deleted_range() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 6);
    drop(store);
    tamper_sql(
        &path,
        "DELETE FROM record WHERE seq = 1; DELETE FROM record WHERE seq IN (3, 4)",
    );
    assert_eq!(
        verify_file(&path),
        [(1, ProblemKind::Missing), (3, ProblemKind::Missing)]
    );
}

#[test]
fn detects_a_deleted_last_entry() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 5);
    drop(store);
    tamper_sql(&path, "DELETE FROM record WHERE seq = 5");
    assert_eq!(verify_file(&path), [(5, ProblemKind::TruncatedTail)]);

    // Appending afterwards keeps the deletion evident: the new entry links
    // to the head, not to the last surviving row.
    let mut store = Store::open(&path).unwrap();
    let appended = store
        .transaction(|tx| tx.record_append(sample_entry(6, RecordEvent::Sent)))
        .unwrap();
    assert_eq!(appended.seq, 6);
    drop(store);
    assert_eq!(verify_file(&path), [(5, ProblemKind::Missing)]);
}

#[test]
fn detects_a_swapped_pair_by_seq() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 6);
    drop(store);
    tamper_sql(
        &path,
        "UPDATE record SET seq = -1 WHERE seq = 3;
         UPDATE record SET seq = 3 WHERE seq = 4;
         UPDATE record SET seq = 4 WHERE seq = -1;",
    );
    let problems = verify_file(&path);
    assert_eq!(
        problems,
        [(3, ProblemKind::Reordered), (4, ProblemKind::Reordered)]
    );
}

#[test]
fn detects_a_swapped_pair_by_contents() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 6);
    drop(store);
    // Swap every column but seq between entries 2 and 3 (the last one is
    // also covered: the head names the old entry 3).
    let columns = "at, event, peer, message_id, thread_id, kind, exercise, envelope, content, \
                   signature, detail, purged_by, payload_hash, body_hash, prev_hash, entry_hash";
    tamper_sql(
        &path,
        &format!(
            "CREATE TABLE saved AS SELECT * FROM record WHERE seq IN (2, 3);
             UPDATE record SET ({columns}) = (SELECT {columns} FROM saved WHERE saved.seq = 5 - record.seq)
               WHERE seq IN (2, 3);
             DROP TABLE saved;"
        ),
    );
    assert_eq!(
        verify_file(&path),
        [(2, ProblemKind::Reordered), (3, ProblemKind::Reordered)]
    );
}

#[test]
fn detects_a_rewritten_entry_with_recomputed_hashes() {
    // The attacker recomputes the edited entry's own hashes: the link from
    // the next entry still breaks.
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 4);
    let original = store.read(|r| r.record_get(2)).unwrap().unwrap();
    drop(store);
    let mut forged = original.to_new_entry();
    forged.content = Some(b"what we wish we had said".to_vec());
    let payload = forged.payload_hash();
    let body = forged.body_hash(&payload);
    let entry = entry_hash(&original.prev_hash, 2, &body);
    tamper(&path, |conn| {
        conn.execute(
            "UPDATE record SET content = ?1, payload_hash = ?2, body_hash = ?3, entry_hash = ?4 \
             WHERE seq = 2",
            rusqlite::params![forged.content, &payload[..], &body[..], &entry[..]],
        )
        .unwrap();
    });
    assert_eq!(verify_file(&path), [(3, ProblemKind::BrokenLink)]);
}

#[test]
fn detects_a_replaced_last_entry_and_a_missing_head() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 3);
    let last = store.read(|r| r.record_get(3)).unwrap().unwrap();
    drop(store);
    let mut forged = last.to_new_entry();
    forged.at = Timestamp(last.at.0 + 1);
    let payload = forged.payload_hash();
    let body = forged.body_hash(&payload);
    let entry = entry_hash(&last.prev_hash, 3, &body);
    tamper(&path, |conn| {
        conn.execute(
            "UPDATE record SET at = ?1, body_hash = ?2, entry_hash = ?3 WHERE seq = 3",
            rusqlite::params![forged.at.0 as i64, &body[..], &entry[..]],
        )
        .unwrap();
    });
    assert_eq!(verify_file(&path), [(3, ProblemKind::HeadMismatch)]);

    tamper_sql(&path, "DELETE FROM record_head");
    assert_eq!(verify_file(&path), [(3, ProblemKind::HeadMismatch)]);
    // And the store refuses to append to a record without a head.
    let mut store = Store::open(&path).unwrap();
    let err = store
        .transaction(|tx| tx.record_append(NewEntry::new(T0, RecordEvent::Note)))
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn detects_entries_appended_behind_the_stores_back() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 3);
    let last = store.read(|r| r.record_get(3)).unwrap().unwrap();
    drop(store);
    // A well-formed entry #4 that links correctly, but the head was not moved.
    let extra = sample_entry(4, RecordEvent::Received);
    let payload = extra.payload_hash();
    let body = extra.body_hash(&payload);
    let entry = entry_hash(&last.entry_hash, 4, &body);
    tamper(&path, |conn| {
        conn.execute(
            "INSERT INTO record (seq, at, event, payload_hash, body_hash, prev_hash, entry_hash, \
                 peer, message_id, thread_id, kind, envelope, content, signature) \
             VALUES (4, ?1, 'received', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            rusqlite::params![
                extra.at.0 as i64,
                &payload[..],
                &body[..],
                &last.entry_hash[..],
                &entry[..],
                extra.peer.as_ref().map(|p| p.as_str().to_owned()),
                &extra.message_id.unwrap().0[..],
                &extra.thread_id.unwrap().0[..],
                extra.kind,
                extra.envelope,
                extra.content,
                &extra.signature.unwrap()[..],
            ],
        )
        .unwrap();
    });
    assert_eq!(verify_file(&path), [(4, ProblemKind::HeadMismatch)]);
}

// ---------------------------------------------------------------------------
// Exercise purge

const EXERCISE: &str = "drill-2026-11";

/// 1 note, 2-3 exercise traffic, 4 real traffic, 5 another exercise,
/// 6 exercise traffic rejected; then the purge (7) and one more entry (8).
fn purged_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path, mut store) = temp_store();
    let secret_content = b"EXERCISE-SECRET-CONTENT-0123456789".to_vec();
    store
        .transaction(|tx| {
            tx.record_append(NewEntry {
                detail: Some("node started".into()),
                ..NewEntry::new(T0, RecordEvent::Note)
            })?;
            tx.record_append(NewEntry {
                exercise: Some(EXERCISE.into()),
                content: Some(secret_content.clone()),
                ..sample_entry(2, RecordEvent::Sent)
            })?;
            tx.record_append(NewEntry {
                exercise: Some(EXERCISE.into()),
                ..sample_entry(3, RecordEvent::Received)
            })?;
            tx.record_append(sample_entry(4, RecordEvent::Received))?;
            tx.record_append(NewEntry {
                exercise: Some("other-drill".into()),
                ..sample_entry(5, RecordEvent::Received)
            })?;
            tx.record_append(NewEntry {
                exercise: Some(EXERCISE.into()),
                detail: Some("bad signature".into()),
                ..sample_entry(6, RecordEvent::Rejected)
            })?;
            Ok(())
        })
        .unwrap();
    assert!(db_files_contain(&path, &secret_content));
    let purged = store
        .transaction(|tx| tx.record_purge_exercise(EXERCISE, Timestamp(T0.0 + 3600)))
        .unwrap();
    assert_eq!(purged, 3);
    store
        .transaction(|tx| tx.record_append(sample_entry(8, RecordEvent::Sent)))
        .unwrap();
    drop(store);
    // secure_delete plus the truncated WAL: the purged bytes left the files.
    assert!(!db_files_contain(&path, &secret_content));
    (dir, path)
}

#[test]
fn purge_removes_payloads_and_keeps_the_chain_valid() {
    let (_dir, path) = purged_store();
    let store = Store::open(&path).unwrap();
    store
        .read(|r| {
            let purge = r.record_get(7)?.unwrap();
            assert_eq!(purge.event, RecordEvent::Purge);
            assert_eq!(purge.exercise.as_deref(), Some(EXERCISE));
            assert_eq!(purge.detail.as_deref(), Some("purged 3 entries"));
            for seq in [2, 3, 6] {
                let e = r.record_get(seq)?.unwrap();
                assert_eq!(e.purged_by, Some(7), "#{seq}");
                assert!(e.envelope.is_none() && e.content.is_none());
                assert!(e.signature.is_none() && e.detail.is_none());
                // Metadata stays.
                assert_eq!(e.exercise.as_deref(), Some(EXERCISE));
                assert!(e.message_id.is_some());
            }
            for seq in [1, 4, 5, 8] {
                assert_eq!(r.record_get(seq)?.unwrap().purged_by, None, "#{seq}");
            }
            assert!(r.record_get(4)?.unwrap().content.is_some());
            Ok(())
        })
        .unwrap();
    drop(store);
    assert!(verify_file(&path).is_empty());

    // Purging again finds nothing new, and says so in its own entry.
    let mut store = Store::open(&path).unwrap();
    let again = store
        .transaction(|tx| tx.record_purge_exercise(EXERCISE, Timestamp(T0.0 + 7200)))
        .unwrap();
    assert_eq!(again, 0);
    drop(store);
    assert!(verify_file(&path).is_empty());
}

#[test]
fn after_purge_an_edit_of_an_unpurged_entry_is_detected() {
    let (_dir, path) = purged_store();
    tamper_sql(&path, "UPDATE record SET content = x'00' WHERE seq = 4");
    assert_eq!(verify_file(&path), [(4, ProblemKind::Edited)]);
}

#[test]
fn after_purge_an_edit_of_a_purged_entrys_metadata_is_detected() {
    let (_dir, path) = purged_store();
    tamper_sql(&path, "UPDATE record SET at = at + 1 WHERE seq = 3");
    assert_eq!(verify_file(&path), [(3, ProblemKind::Edited)]);

    let (_dir, path) = purged_store();
    tamper_sql(&path, "UPDATE record SET peer = 'EST.cert' WHERE seq = 2");
    assert_eq!(verify_file(&path), [(2, ProblemKind::Edited)]);
}

#[test]
fn after_purge_content_put_back_into_a_purged_entry_is_detected() {
    let (_dir, path) = purged_store();
    tamper_sql(
        &path,
        "UPDATE record SET content = x'deadbeef' WHERE seq = 2",
    );
    assert_eq!(verify_file(&path), [(2, ProblemKind::Edited)]);
}

#[test]
fn faked_or_undone_purge_marks_are_detected() {
    // An unpurged entry's payload nulled and marked purged by the purge of
    // another exercise.
    let (_dir, path) = purged_store();
    tamper_sql(
        &path,
        "UPDATE record SET envelope = NULL, content = NULL, signature = NULL, purged_by = 7 \
         WHERE seq = 5",
    );
    assert_eq!(
        verify_file(&path),
        [
            (5, ProblemKind::PurgeInvalid),
            (7, ProblemKind::PurgeInvalid)
        ]
    );

    // A purge mark removed: the empty payload no longer matches its hash,
    // and the Purge entry's count no longer matches.
    let (_dir, path) = purged_store();
    tamper_sql(&path, "UPDATE record SET purged_by = NULL WHERE seq = 3");
    assert_eq!(
        verify_file(&path),
        [(3, ProblemKind::Edited), (7, ProblemKind::PurgeInvalid)]
    );

    // A purge mark pointing at a non-Purge entry.
    let (_dir, path) = purged_store();
    tamper_sql(&path, "UPDATE record SET purged_by = 8 WHERE seq = 2");
    assert_eq!(
        verify_file(&path),
        [
            (2, ProblemKind::PurgeInvalid),
            (7, ProblemKind::PurgeInvalid)
        ]
    );

    // The Purge entry's own count edited.
    let (_dir, path) = purged_store();
    tamper_sql(
        &path,
        "UPDATE record SET detail = 'purged 2 entries' WHERE seq = 7",
    );
    let problems = verify_file(&path);
    assert_eq!(problems[0], (7, ProblemKind::Edited));
}

// ---------------------------------------------------------------------------
// Summaries and the appended head (what `RecordFollow` reads)

#[test]
fn summaries_carry_every_short_field_of_the_page_and_no_payload() {
    let (_dir, path) = purged_store();
    let store = Store::open(&path).unwrap();
    store
        .read(|r| {
            let page = r.record_page(0, 100)?;
            let summaries = r.record_summaries(0, 100)?;
            assert_eq!(summaries.len(), page.len());
            assert_eq!(page.len(), 8);
            for (s, e) in summaries.iter().zip(&page) {
                assert_eq!(s.seq, e.seq);
                assert_eq!(s.at, e.at);
                assert_eq!(s.event, e.event);
                assert_eq!(s.peer, e.peer);
                assert_eq!(s.message_id, e.message_id);
                assert_eq!(s.thread_id, e.thread_id);
                assert_eq!(s.kind, e.kind);
                assert_eq!(s.exercise, e.exercise);
                assert_eq!(s.detail, e.detail);
                assert_eq!(s.purged, e.is_purged());
                assert_eq!(s.entry_hash, e.entry_hash);
            }
            // Purged entries say so; the Purge entry keeps its detail.
            let purged: Vec<u64> = summaries
                .iter()
                .filter(|s| s.purged)
                .map(|s| s.seq)
                .collect();
            assert_eq!(purged, [2, 3, 6]);
            assert_eq!(summaries[6].detail.as_deref(), Some("purged 3 entries"));
            // Paging: strictly after `after_seq`, at most `limit`.
            let seqs: Vec<u64> = r.record_summaries(3, 2)?.iter().map(|s| s.seq).collect();
            assert_eq!(seqs, [4, 5]);
            assert!(r.record_summaries(8, 10)?.is_empty());
            assert!(r.record_summaries(u64::MAX, 10)?.is_empty());
            Ok(())
        })
        .unwrap();
}

#[test]
fn record_appended_names_the_last_committed_append_only() {
    let (_dir, _path, mut store) = temp_store();
    // Nothing appended: None.
    let none = store.transaction(|tx| Ok(tx.record_appended())).unwrap();
    assert_eq!(none, None);
    let appended = store
        .transaction(|tx| {
            tx.savepoint(|tx| tx.record_append(sample_entry(1, RecordEvent::Sent)))?;
            tx.savepoint(|tx| tx.record_append(sample_entry(2, RecordEvent::Received)))?;
            Ok(tx.record_appended())
        })
        .unwrap();
    assert_eq!(appended, Some(2));
    // A savepoint that fails takes its appends with it.
    let appended = store
        .transaction(|tx| {
            tx.savepoint(|tx| tx.record_append(sample_entry(3, RecordEvent::Sent)))?;
            let failed = tx.savepoint(|tx| {
                tx.record_append(sample_entry(4, RecordEvent::Sent))?;
                Err::<(), _>(StoreError::Invalid("job failed".into()))
            });
            assert!(failed.is_err());
            Ok(tx.record_appended())
        })
        .unwrap();
    assert_eq!(appended, Some(3));
    assert_eq!(store.read(|r| r.record_head()).unwrap().unwrap().seq, 3);
    // A purge appends too.
    let appended = store
        .transaction(|tx| {
            tx.record_purge_exercise("none", T0)?;
            Ok(tx.record_appended())
        })
        .unwrap();
    assert_eq!(appended, Some(4));
}

#[test]
fn a_record_with_many_moved_entries_is_verified_with_a_bounded_search() {
    // Looking for the seq a moved entry was written at costs up to 2048
    // hashes; on a record where every entry moved (here all shifted by 10)
    // only the first few are looked for, so verifying a badly damaged record
    // of a million entries takes seconds, not hours.
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 200);
    drop(store);
    tamper_sql(
        &path,
        "UPDATE record SET seq = -seq; UPDATE record SET seq = 10 - seq;",
    );
    let problems = verify_file(&path);
    assert_eq!(problems.first(), Some(&(1, ProblemKind::Missing)));
    assert_eq!(problems.last(), Some(&(201, ProblemKind::HeadMismatch)));
    let moved = &problems[1..problems.len() - 1];
    assert_eq!(moved.len(), 200);
    assert!(
        moved[..64].iter().all(|p| p.1 == ProblemKind::Reordered),
        "{moved:?}"
    );
    assert!(
        moved[64..].iter().all(|p| p.1 == ProblemKind::Edited),
        "{moved:?}"
    );
}

#[test]
fn a_cut_back_tail_with_a_rewritten_head_is_shown_only_by_an_anchor() {
    // The chain's limit (THREAT_MODEL N6): delete the last entries and
    // rewrite the head row to the new last one, and the record verifies
    // clean. An entry noted outside the node earlier (`poc record verify
    // --anchor SEQ:HASH` reads it back) is gone, or differs once the node
    // appends again.
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 6);
    let anchor = store.read(|r| r.record_head()).unwrap().unwrap();
    drop(store);
    tamper_sql(
        &path,
        "DELETE FROM record WHERE seq > 4;
         UPDATE record_head SET seq = 4, entry_hash = (SELECT entry_hash FROM record WHERE seq = 4);",
    );
    assert!(verify_file(&path).is_empty());
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.read(|r| r.record_get(anchor.seq)).unwrap(), None);
    store
        .transaction(|tx| {
            tx.record_append(sample_entry(9, RecordEvent::Sent))?;
            tx.record_append(sample_entry(10, RecordEvent::Sent))
        })
        .unwrap();
    let again = store.read(|r| r.record_get(anchor.seq)).unwrap().unwrap();
    assert_ne!(again.entry_hash, anchor.entry_hash);
}
