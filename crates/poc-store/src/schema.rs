//! The schema and its migrations, keyed on `PRAGMA user_version`.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

/// `PRAGMA application_id` of a pocnet store: ASCII "pocs".
pub(crate) const APPLICATION_ID: i32 = 0x706f_6373;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// One schema step: a check that the data can move (so a migration never
/// drops what it cannot carry over), then the SQL.
struct Migration {
    check: fn(&Connection) -> Result<(), StoreError>,
    sql: &'static str,
}

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only;
/// never edit a released migration.
const MIGRATIONS: &[Migration] = &[
    Migration {
        check: |_| Ok(()),
        sql: V1,
    },
    Migration {
        check: check_v2,
        sql: V2,
    },
];

const V1: &str = r#"
-- The record: append-only, hash-chained (see record.rs for the construction).
CREATE TABLE record (
    seq          INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    event        TEXT    NOT NULL
                 CHECK (event IN ('sent', 'received', 'rejected', 'purge', 'note')),
    peer         TEXT,
    message_id   BLOB    CHECK (message_id IS NULL OR length(message_id) = 16),
    thread_id    BLOB    CHECK (thread_id IS NULL OR length(thread_id) = 16),
    kind         TEXT,
    exercise     TEXT,
    envelope     BLOB,
    content      BLOB,
    signature    BLOB    CHECK (signature IS NULL OR length(signature) = 64),
    detail       TEXT,
    -- seq of the Purge entry that removed this entry's payload; not hashed.
    purged_by    INTEGER,
    payload_hash BLOB    NOT NULL CHECK (length(payload_hash) = 32),
    body_hash    BLOB    NOT NULL CHECK (length(body_hash) = 32),
    prev_hash    BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    entry_hash   BLOB    NOT NULL CHECK (length(entry_hash) = 32)
) STRICT;
CREATE INDEX record_by_thread   ON record (thread_id, seq) WHERE thread_id IS NOT NULL;
CREATE INDEX record_by_message  ON record (message_id)     WHERE message_id IS NOT NULL;
CREATE INDEX record_by_exercise ON record (exercise, seq)  WHERE exercise IS NOT NULL;
CREATE INDEX record_by_purge    ON record (purged_by)      WHERE purged_by IS NOT NULL;

-- Guards against bugs (anyone with the file can drop them; the hash chain
-- is what detects tampering).
CREATE TRIGGER record_no_delete BEFORE DELETE ON record
BEGIN SELECT RAISE(ABORT, 'the record is append-only'); END;
CREATE TRIGGER record_no_rewrite
BEFORE UPDATE OF seq, at, event, peer, message_id, thread_id, kind, exercise,
                 payload_hash, body_hash, prev_hash, entry_hash ON record
BEGIN SELECT RAISE(ABORT, 'record entries are never changed'); END;
CREATE TRIGGER record_purge_only
BEFORE UPDATE OF envelope, content, signature, detail, purged_by ON record
WHEN NEW.purged_by IS NULL OR OLD.purged_by IS NOT NULL
  OR NEW.envelope IS NOT NULL OR NEW.content IS NOT NULL
  OR NEW.signature IS NOT NULL OR NEW.detail IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'record payloads are only ever purged'); END;

-- The chain's head, so that a deleted tail is detected.
CREATE TABLE record_head (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    seq        INTEGER NOT NULL,
    entry_hash BLOB    NOT NULL CHECK (length(entry_hash) = 32)
) STRICT;

-- (sender, message id) pairs seen, kept until keep_until.
CREATE TABLE replay (
    sender     TEXT    NOT NULL,
    message_id BLOB    NOT NULL CHECK (length(message_id) = 16),
    keep_until INTEGER NOT NULL,
    PRIMARY KEY (sender, message_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX replay_by_keep_until ON replay (keep_until);

-- Deliveries: one row per sealed envelope to send.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id      BLOB    NOT NULL UNIQUE CHECK (length(message_id) = 16),
    thread_id       BLOB    NOT NULL CHECK (length(thread_id) = 16),
    recipient       TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    envelope        BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    delivered_via   TEXT,
    delivered_at    INTEGER,
    finished_at     INTEGER
) STRICT;
CREATE INDEX outbox_due    ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_expiry ON outbox (expires_at)          WHERE status = 'pending';
CREATE INDEX outbox_by_status ON outbox (status, id);

-- The node's prekeys with their secrets.
CREATE TABLE prekey (
    id          INTEGER PRIMARY KEY,
    public      BLOB    NOT NULL CHECK (length(public) = 32),
    valid_from  INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    secret      BLOB    NOT NULL CHECK (length(secret) = 32)
) STRICT;

-- Signed directory snapshots as received.
CREATE TABLE directory_snapshot (
    sequence INTEGER PRIMARY KEY,
    digest   BLOB    NOT NULL CHECK (length(digest) = 32),
    bytes    BLOB    NOT NULL
) STRICT;

CREATE TABLE setting (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
"#;

/// Version 2: an outbox item keeps only its schedule and is keyed by the seq
/// of its message's Sent entry, whose envelope it delivers; replays are
/// found in the record, and the replay table goes. Version 1 kept a
/// second copy of the envelope in the outbox row (written again, with its
/// overflow pages, whenever the row changed) and indexed the outbox by
/// message id and status; every send paid for those pages in its commit.
const V2: &str = r#"
CREATE TABLE outbox_v2 (
    -- The seq of the message's Sent entry.
    id              INTEGER PRIMARY KEY REFERENCES record (seq),
    expires_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    delivered_via   TEXT,
    delivered_at    INTEGER,
    finished_at     INTEGER
) STRICT;
INSERT INTO outbox_v2 (id, expires_at, next_attempt_at, status, attempts, last_error,
                       delivered_via, delivered_at, finished_at)
SELECT (SELECT min(r.seq) FROM record r WHERE r.message_id = o.message_id AND r.event = 'sent'),
       expires_at, next_attempt_at, status, attempts, last_error,
       delivered_via, delivered_at, finished_at
FROM outbox o ORDER BY o.id;
DROP TABLE outbox;
DELETE FROM sqlite_sequence WHERE name = 'outbox';
ALTER TABLE outbox_v2 RENAME TO outbox;
-- One index over the pending items serves the due query, the next wake-up
-- and expiry (it covers expires_at): pending items are those in flight or
-- waiting for a retry, few beside the whole outbox, and every queued or
-- finished item changes one index page instead of two.
CREATE INDEX outbox_pending ON outbox (next_attempt_at, id, expires_at) WHERE status = 'pending';
-- A message already received is found in the record (record_by_message),
-- which keeps every entry anyway; the separate replay table cost a page of
-- its own per received message and was never pruned.
DROP TABLE replay;
"#;

/// Every version-1 outbox item must find its Sent entry, and a pending one
/// the same envelope there: otherwise migrating would lose a delivery.
fn check_v2(conn: &Connection) -> Result<(), StoreError> {
    let orphans: i64 = conn.query_row(
        "SELECT count(*) FROM outbox o WHERE NOT EXISTS \
         (SELECT 1 FROM record r WHERE r.message_id = o.message_id AND r.event = 'sent')",
        [],
        |row| row.get(0),
    )?;
    let differing: i64 = conn.query_row(
        "SELECT count(*) FROM outbox o WHERE o.status = 'pending' AND NOT EXISTS \
         (SELECT 1 FROM record r WHERE r.message_id = o.message_id AND r.event = 'sent' \
          AND r.envelope = o.envelope)",
        [],
        |row| row.get(0),
    )?;
    if orphans != 0 || differing != 0 {
        return Err(StoreError::corrupt(format!(
            "cannot upgrade the store to schema 2: {orphans} outbox items have no Sent entry \
             in the record and {differing} pending ones a different envelope there; the store \
             is left at schema 1 (run the previous pocd to deliver them)"
        )));
    }
    Ok(())
}

/// Refuses a database that belongs to another application.
pub(crate) fn check_application_id(
    conn: &Connection,
    path: Option<&Path>,
) -> Result<(), StoreError> {
    let id: i32 = conn.query_row("PRAGMA application_id", [], |row| row.get(0))?;
    let foreign = match id {
        APPLICATION_ID => false,
        0 => {
            // A fresh file has no tables; one with tables but no id is not ours.
            let tables: i64 =
                conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
            tables != 0
        }
        _ => true,
    };
    if foreign {
        return Err(StoreError::NotAStore {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            application_id: id,
        });
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`], one transaction per migration.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version < 0 {
            return Err(StoreError::corrupt(format!(
                "negative schema version {version}"
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let Some(step) = usize::try_from(version)
            .ok()
            .and_then(|v| MIGRATIONS.get(v))
        else {
            return Ok(());
        };
        (step.check)(&tx)?;
        tx.execute_batch(step.sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use poc_proto::Timestamp;

    use super::*;
    use crate::{OutboxId, OutboxStatus, Store};

    /// A store file at schema 1 holding two sent messages (seq 2 and 4; seq 1
    /// and 3 received) queued in its outbox, one still pending.
    fn version_1_store(dir: &Path, outbox_extra: &str) -> std::path::PathBuf {
        let path = dir.join("v1.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        for (seq, event, id) in [
            (1, "received", 1u8),
            (2, "sent", 2),
            (3, "received", 3),
            (4, "sent", 4),
        ] {
            conn.execute(
                "INSERT INTO record (seq, at, event, peer, message_id, thread_id, kind, envelope, \
                     payload_hash, body_hash, prev_hash, entry_hash) \
                 VALUES (?1, ?2, ?3, 'KEN.cert', ?4, ?5, 'inquiry', ?6, ?7, ?7, ?7, ?7)",
                rusqlite::params![
                    seq,
                    1_800_000_000 + seq,
                    event,
                    [id; 16],
                    [9u8; 16],
                    vec![id; 100],
                    [0u8; 32]
                ],
            )
            .unwrap();
        }
        conn.execute_batch(&format!(
            "INSERT INTO outbox (message_id, thread_id, recipient, envelope, kind, created_at, \
                 expires_at, next_attempt_at, status, delivered_via, delivered_at, finished_at) VALUES \
             (x'{two}', x'{nine}', 'KEN.cert', x'{env2}', 'inquiry', 1800000002, 1900000000, \
                 1800000002, 'delivered', 'direct', 1800000010, 1800000010), \
             (x'{four}', x'{nine}', 'KEN.cert', x'{env4}', 'inquiry', 1800000004, 1900000000, \
                 1800000060, 'pending', NULL, NULL, NULL); {outbox_extra}",
            two = "02".repeat(16),
            four = "04".repeat(16),
            nine = "09".repeat(16),
            env2 = "02".repeat(100),
            env4 = "04".repeat(100),
        ))
        .unwrap();
        drop(conn);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        path
    }

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_version_1_outbox_moves_to_its_sent_entries_and_keeps_every_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let path = version_1_store(dir.path(), "");
        let store = Store::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        store
            .read(|r| {
                let items = r.outbox_list(None)?;
                let ids: Vec<OutboxId> = items.iter().map(|i| i.id).collect();
                assert_eq!(ids, [OutboxId(2), OutboxId(4)]);
                assert_eq!(items[0].status, OutboxStatus::Delivered);
                assert_eq!(items[0].delivered_via.as_deref(), Some("direct"));
                assert_eq!(items[1].status, OutboxStatus::Pending);
                assert_eq!(items[1].created_at, Timestamp(1_800_000_004));
                let due = r.outbox_due(Timestamp(1_800_000_060), 10)?;
                assert_eq!(due.len(), 1);
                assert_eq!(
                    (due[0].item.id, &due[0].envelope),
                    (OutboxId(4), &vec![4; 100])
                );
                Ok(())
            })
            .unwrap();
        let columns: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM pragma_table_info('outbox') WHERE name = 'envelope'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(columns, 0, "the outbox no longer holds envelopes");
        let replay: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'replay'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(replay, 0, "replays are found in the record");
    }

    #[test]
    fn a_version_1_outbox_item_that_cannot_move_stops_the_upgrade_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Pending, and no Sent entry carries it.
        let orphan = format!(
            "INSERT INTO outbox (message_id, thread_id, recipient, envelope, kind, created_at, \
                 expires_at, next_attempt_at) VALUES (x'{}', x'{}', 'KEN.cert', x'07', 'inquiry', \
                 1, 2, 1);",
            "07".repeat(16),
            "09".repeat(16)
        );
        let path = version_1_store(dir.path(), &orphan);
        let err = Store::open(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot upgrade the store to schema 2: 1 outbox items"),
            "{err}"
        );
        assert_eq!(user_version(&path), 1);
        let kept: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM outbox", [], |row| row.get(0))
            .unwrap();
        assert_eq!(kept, 3);
    }
}
