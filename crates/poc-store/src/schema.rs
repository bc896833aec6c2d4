//! The schema and its migrations, keyed on `PRAGMA user_version`.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

/// `PRAGMA application_id` of a pocnet store: ASCII "pocs".
pub(crate) const APPLICATION_ID: i32 = 0x706f_6373;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only;
/// never edit a released migration.
const MIGRATIONS: &[&str] = &[V1];

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
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
    }
}
