//! Opening the store file: permissions, pragmas, schema versions, foreign
//! files, transactions and savepoints, durability across reopen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{T0, append_samples, message_id, poc, sample_entry, temp_store, thread_id};
use poc_proto::Timestamp;
use poc_store::{NewEntry, NewOutboxItem, RecordEvent, SCHEMA_VERSION, Store, StoreError};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    name.into()
}

#[test]
fn store_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Store>();
}

#[test]
fn creates_the_file_and_its_wal_with_mode_0600() {
    let (_dir, path, mut store) = temp_store();
    assert_eq!(mode(&path), 0o600);
    append_samples(&mut store, 1);
    let wal = sibling(&path, "-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&sibling(&path, "-shm")), 0o600);
    assert_eq!(store.path(), Some(path.as_path()));
}

#[test]
fn sets_the_pragmas() {
    let (_dir, path, store) = temp_store();
    drop(store);
    // journal_mode=WAL is persistent in the file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    // The connection-level pragmas are checked by the unit test in lib.rs.
}

#[test]
fn refuses_a_world_or_group_readable_file() {
    let (_dir, path, store) = temp_store();
    drop(store);
    for bad in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::Permissions { mode, .. } if mode == bad),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("chmod 600"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Store::open(&path).unwrap();
}

#[test]
fn refuses_a_readable_wal_file() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 1);
    // Left behind as after a crash (the store is never closed cleanly).
    std::mem::forget(store);
    let wal = sibling(&path, "-wal");
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Permissions { .. }), "{err}");
    assert!(err.to_string().contains("-wal"), "{err}");
}

#[test]
fn refuses_another_applications_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    drop(conn);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
}

#[test]
fn refuses_a_newer_schema() {
    let (_dir, path, store) = temp_store();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
}

#[test]
fn missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(&dir.path().join("no/such/dir/pocd.db")).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
}

#[test]
fn a_failed_transaction_leaves_nothing() {
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 2);
    let err = store
        .transaction(|tx| {
            tx.record_append(sample_entry(3, RecordEvent::Sent))?;
            tx.setting_put("poc_id", "EST.cert")?;
            Err::<(), _>(StoreError::Aborted("caller gave up".into()))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Aborted(_)));
    assert_eq!(err.to_string(), "transaction aborted: caller gave up");
    drop(store);
    let store = Store::open(&path).unwrap();
    store
        .read(|r| {
            assert_eq!(r.record_head()?.unwrap().seq, 2);
            assert!(r.record_get(3)?.is_none());
            assert_eq!(r.setting_get("poc_id")?, None);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_failed_savepoint_undoes_only_its_item() {
    let mut store = Store::open_in_memory().unwrap();
    let outcomes = store
        .transaction(|tx| {
            let mut outcomes = Vec::new();
            for n in 1..=3u8 {
                outcomes.push(tx.savepoint(|tx| {
                    tx.record_append(sample_entry(n, RecordEvent::Received))?;
                    tx.setting_put(&format!("item {n}"), "done")?;
                    if n == 2 {
                        return Err(StoreError::Aborted("item 2 is bad".into()));
                    }
                    Ok(())
                }));
            }
            Ok(outcomes)
        })
        .unwrap();
    assert!(outcomes[0].is_ok() && outcomes[1].is_err() && outcomes[2].is_ok());
    store
        .read(|r| {
            let entries = r.record_page(0, 10)?;
            assert_eq!(entries.len(), 2);
            assert_eq!(entries[1].message_id, Some(message_id(3)));
            assert_eq!(entries[1].seq, 2);
            assert_eq!(r.setting_get("item 2")?, None);
            assert_eq!(r.setting_get("item 3")?.as_deref(), Some("done"));
            assert!(r.record_verify()?.is_clean());
            Ok(())
        })
        .unwrap();
}

#[test]
fn everything_survives_a_reopen() {
    let (_dir, path, mut store) = temp_store();
    let world = poc_proto::testkit::World::new();
    let fra = world.poc("FRA.cert");
    let prekey = fra.prekey().prekey().clone();
    store
        .transaction(|tx| {
            tx.setting_put("poc_id", "FRA.cert")?;
            for n in 1..=3 {
                tx.record_append(sample_entry(n, RecordEvent::Received))?;
            }
            tx.record_send(
                NewEntry {
                    peer: Some(poc("KEN.cert")),
                    message_id: Some(message_id(9)),
                    thread_id: Some(thread_id(1)),
                    kind: Some("response".into()),
                    envelope: Some(vec![9; 300]),
                    ..NewEntry::new(T0, RecordEvent::Sent)
                },
                NewOutboxItem {
                    expires_at: Timestamp(T0.0 + 86_400),
                    next_attempt_at: T0,
                },
            )?;
            tx.prekey_put(
                &prekey,
                &poc_proto::keys::PrekeySecret::from_secret_bytes(&fra.prekey_seed),
            )?;
            tx.snapshot_put(7, [7; 32], b"snapshot seven")?;
            Ok(())
        })
        .unwrap();
    // Dropped without a checkpoint: everything is still in the WAL.
    drop(store);

    let store = Store::open(&path).unwrap();
    store
        .read(|r| {
            assert_eq!(r.setting_get("poc_id")?.as_deref(), Some("FRA.cert"));
            assert_eq!(r.record_head()?.unwrap().seq, 4);
            assert_eq!(r.record_get(2)?.unwrap(), {
                let mut fresh = Store::open_in_memory()?;
                fresh.transaction(|tx| {
                    tx.record_append(sample_entry(1, RecordEvent::Received))?;
                    tx.record_append(sample_entry(2, RecordEvent::Received))
                })?
            });
            assert!(r.record_received_from(&poc("KEN.cert"), message_id(1))?);
            let item = r.outbox_by_message(message_id(9))?.unwrap();
            assert_eq!(item.id.0, 4);
            let due = r.outbox_due(T0, 1)?;
            assert_eq!((due[0].item.id, &due[0].envelope), (item.id, &vec![9; 300]));
            let ring = r.prekeys_load()?;
            assert_eq!(ring.secret(prekey.id).unwrap().public(), prekey.public);
            assert_eq!(r.snapshot_latest()?.unwrap().bytes, b"snapshot seven");
            assert!(r.record_verify()?.is_clean());
            Ok(())
        })
        .unwrap();
}

#[test]
fn an_unflushed_crash_keeps_committed_transactions() {
    // The store is leaked rather than dropped (no close, no checkpoint), as
    // if the process died right after the commit returned.
    let (_dir, path, mut store) = temp_store();
    append_samples(&mut store, 4);
    std::mem::forget(store);
    let store = Store::open(&path).unwrap();
    let report = store.read(|r| r.record_verify()).unwrap();
    assert!(report.is_clean());
    assert_eq!(report.entries, 4);
}

#[test]
fn settings_put_get_delete() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .transaction(|tx| {
            assert_eq!(tx.setting_get("k")?, None);
            tx.setting_put("k", "one")?;
            tx.setting_put("k", "two")?;
            assert_eq!(tx.setting_get("k")?.as_deref(), Some("two"));
            assert!(tx.setting_delete("k")?);
            assert!(!tx.setting_delete("k")?);
            Ok(())
        })
        .unwrap();
}

#[test]
fn notes_without_any_optional_field_verify() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .transaction(|tx| {
            tx.record_append(NewEntry::new(T0, RecordEvent::Note))?;
            tx.record_append(NewEntry {
                detail: Some("ключ обновлён — 密钥已轮换".into()),
                ..NewEntry::new(T0, RecordEvent::Note)
            })
        })
        .unwrap();
    assert!(store.read(|r| r.record_verify()).unwrap().is_clean());
}

#[test]
fn purge_entries_cannot_be_appended_by_hand() {
    let mut store = Store::open_in_memory().unwrap();
    let err = store
        .transaction(|tx| tx.record_append(NewEntry::new(T0, RecordEvent::Purge)))
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(store.read(|r| r.record_head()).unwrap().is_none());
}
