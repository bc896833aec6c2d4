//! # poc-store: the durable state of one pocd node
//!
//! One SQLite file (WAL, `synchronous=FULL`, `secure_delete=ON`) holding:
//!
//! - the **record**: every message sent, received or rejected, append-only
//!   and hash-chained so that an edited, deleted, reordered or truncated entry
//!   is detected and named by [`Reader::record_verify`] (construction in
//!   [`record`]);
//! - **replay detection** on the record itself
//!   ([`Reader::record_received_from`]);
//! - the **outbox** of pending deliveries with their retry schedule;
//! - the node's **prekey secrets**;
//! - **directory snapshots**, and a few key-value **settings**.
//!
//! The API is synchronous: the daemon calls it from one blocking thread.
//! Every change goes through [`Store::transaction`], which commits once (one
//! fsync) per call, so the daemon batches many operations into one commit.
//! Reads go through [`Store::read`] (one consistent snapshot) or through the
//! transaction, which dereferences to a [`Reader`].
//!
//! ```no_run
//! # use poc_store::{Store, NewEntry, RecordEvent, StoreError};
//! # use poc_proto::Timestamp;
//! # fn main() -> Result<(), StoreError> {
//! let mut store = Store::open(std::path::Path::new("/var/lib/pocd/state.db"))?;
//! let entry = store.transaction(|tx| {
//!     tx.record_append(NewEntry {
//!         detail: Some("node started".into()),
//!         ..NewEntry::new(Timestamp(1_795_000_000), RecordEvent::Note)
//!     })
//! })?;
//! assert_eq!(entry.seq, 1);
//! let report = store.read(|r| r.record_verify())?;
//! assert!(report.is_clean());
//! # Ok(()) }
//! ```
//!
//! # For the daemon
//!
//! - Own the [`Store`] on one storage thread; batch the work that arrives
//!   while a commit is in flight into the next [`Store::transaction`] (one
//!   fsync per batch). Wrap each item in [`Tx::savepoint`] so that one bad
//!   item does not undo the batch.
//! - Receive: open the envelope with a replay cache that accepts everything
//!   (the protocol's checks all run; only the seen-before question is
//!   deferred), then in one transaction ask
//!   [`Reader::record_received_from`] and append the Received entry (or a
//!   Rejected one for a replay); acknowledge only after the commit returns.
//! - Send: [`Tx::record_send`] appends the Sent entry and queues its
//!   envelope (kept once, in the record) in one transaction; then drive
//!   deliveries from [`Reader::outbox_due`],
//!   waking at [`Reader::next_outbox_attempt`] or
//!   [`Reader::next_outbox_expiry`], and report what [`Tx::outbox_expire`]
//!   returns.
//! - Prekeys: load the ring with [`Reader::prekeys_load`] at start-up and
//!   after each rotation; delete expired secrets with
//!   [`Tx::prekeys_expire`] (the store then wipes them from the files).
//! - Anchor [`VerifyReport::head_hash`] (or [`Reader::record_head`])
//!   outside the node now and then: the chain shows partial tampering, an
//!   external anchor also shows a rewrite of the whole tail.
#![forbid(unsafe_code)]

mod error;
mod outbox;
mod prekeys;
pub mod record;
mod replay;
mod schema;
mod settings;
mod snapshot;
mod sql;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use error::StoreError;
pub use outbox::{DueItem, NewOutboxItem, OutboxId, OutboxItem, OutboxStatus};
pub use record::{
    GENESIS_PREV_HASH, NewEntry, ProblemKind, RecordEntry, RecordEvent, RecordHead, RecordProblem,
    RecordSummary, VerifyReport, entry_hash,
};
pub use schema::SCHEMA_VERSION;
pub use snapshot::StoredSnapshot;

/// How long a statement waits for a lock held by another connection before
/// failing with "database is locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A node's store: one SQLite connection.
///
/// `Send` but not `Sync`: own it from one thread (the daemon's storage
/// thread) and send work to it.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: Option<PathBuf>,
    /// Secrets were deleted (prekeys, purged exercise content) but the WAL
    /// could not yet be truncated: retried after every later commit.
    wipe_pending: bool,
    /// The connection's `synchronous` setting is not known to be FULL (a
    /// deferred transaction lowered it and could not raise it again).
    sync_lowered: bool,
}

/// A read-only view of the store inside a transaction: every query.
///
/// Obtained from [`Store::read`], or from a [`Tx`] (which dereferences to it).
#[derive(Debug)]
pub struct Reader<'a> {
    conn: &'a Connection,
}

/// A write transaction: every change, plus every query through
/// `Deref<Target = Reader>`. Committed by [`Store::transaction`] when its
/// closure returns `Ok`, rolled back otherwise.
#[derive(Debug)]
pub struct Tx<'a> {
    reader: Reader<'a>,
    wipe: bool,
    /// Seq of the last record entry appended (and not rolled back).
    appended: Option<u64>,
}

impl<'a> Deref for Tx<'a> {
    type Target = Reader<'a>;
    fn deref(&self) -> &Reader<'a> {
        &self.reader
    }
}

impl Store {
    /// Opens the store at `path`, creating it (mode 0600) if absent, and
    /// brings its schema up to date.
    ///
    /// Refuses an existing file (or `-wal`/`-shm` file) that group or others
    /// may access, with [`StoreError::Permissions`]. SQLite creates the
    /// `-wal` and `-shm` files with the database file's mode.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        prepare_file(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        let conn = Connection::open_with_flags(path, flags)?;
        Store::init(conn, Some(path.to_path_buf()))
    }

    /// A fresh store in memory, for tests. Nothing is durable.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?, None)
    }

    fn init(conn: Connection, path: Option<PathBuf>) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Before anything else touches the file: the application id tells a
        // pocnet store from another application's database.
        schema::check_application_id(&conn, path.as_deref())?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if path.is_some() && !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::corrupt(format!(
                "could not switch to WAL journal mode (got {mode})"
            )));
        }
        // Plans must not depend on bound values: otherwise SQLite marks a
        // statement whose plan consulted a binding as expired when the
        // binding changes, and recompiles it on its next step, which undoes
        // the statement cache (see the test `statement_cache`).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        // rusqlite keeps 16 statements by default; the daemon's hot paths use
        // about 30 distinct ones, which would evict each other.
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA secure_delete = ON;
             PRAGMA foreign_keys = ON;
             PRAGMA trusted_schema = OFF;",
        )?;
        let mut store = Store {
            conn,
            path,
            wipe_pending: false,
            sync_lowered: false,
        };
        schema::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// The file this store lives in (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` in one write transaction and commits it (one fsync), or rolls
    /// it back if `f` returns an error (or panics).
    ///
    /// The transaction takes the write lock at its start (`BEGIN IMMEDIATE`),
    /// so it never fails half-way for lock contention. Batch many operations
    /// into one call to pay for one commit (group commit); use
    /// [`Tx::savepoint`] where one failing item must not undo the batch.
    ///
    /// After a commit that deleted secrets (prekeys, purged exercise
    /// content), the WAL is checkpointed and truncated so the deleted bytes
    /// leave the disk files too (see [`Store::checkpoint`]).
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.sync_lowered {
            self.set_synchronous(Synchronous::Full)?;
        }
        self.transaction_as_set(f)
    }

    /// [`Store::transaction`] without waiting for the disk: the commit is
    /// written to the WAL but becomes durable only with the next synced
    /// commit (whose fsync covers every earlier frame of the WAL) or
    /// checkpoint. For changes whose loss in a crash is harmless and that
    /// should not cost an fsync of their own: an outbox entry marked
    /// delivered, say, which after a crash is delivered again and answered
    /// by its recipient as a duplicate.
    pub fn transaction_deferred<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.set_synchronous(Synchronous::Normal)?;
        let result = self.transaction_as_set(f);
        // Every other transaction must sync; if this fails, the next one
        // retries before it begins.
        let restored = self.set_synchronous(Synchronous::Full);
        let value = result?;
        restored?;
        Ok(value)
    }

    fn set_synchronous(&mut self, level: Synchronous) -> Result<(), StoreError> {
        self.sync_lowered = true;
        let sql = match level {
            Synchronous::Full => "PRAGMA synchronous = FULL",
            Synchronous::Normal => "PRAGMA synchronous = NORMAL",
        };
        self.conn.prepare_cached(sql)?.execute([])?;
        self.sync_lowered = level != Synchronous::Full;
        Ok(())
    }

    fn transaction_as_set<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let sqlite_tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut tx = Tx {
            reader: Reader { conn: &sqlite_tx },
            wipe: false,
            appended: None,
        };
        let result = f(&mut tx);
        let wipe = tx.wipe;
        match result {
            Ok(value) => {
                sqlite_tx.commit()?;
                if wipe || self.wipe_pending {
                    // The commit stands whatever happens here; a checkpoint
                    // blocked by a reader is retried after the next commit.
                    self.wipe_pending = !matches!(self.checkpoint(), Ok(true));
                }
                Ok(value)
            }
            Err(error) => {
                // Dropping rolls back; say so explicitly to surface errors.
                sqlite_tx.rollback()?;
                Err(error)
            }
        }
    }

    /// Runs `f` on one consistent read snapshot of the store.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let sqlite_tx = self.conn.unchecked_transaction()?;
        let result = f(&Reader { conn: &sqlite_tx });
        sqlite_tx.rollback()?;
        result
    }

    /// Copies the WAL into the database file and truncates the WAL to zero
    /// bytes. Returns `false` if another connection's reader kept it from
    /// completing (try again later).
    ///
    /// With `secure_delete=ON`, deleted rows are overwritten with zeros in
    /// the pages that held them, but older copies of those pages stay in the
    /// WAL until it is truncated: this is the step that makes a deleted
    /// prekey secret unrecoverable from the files. [`Store::transaction`]
    /// calls it by itself after deleting secrets.
    pub fn checkpoint(&mut self) -> Result<bool, StoreError> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        Ok(busy == 0)
    }

    /// Whether a secret-wiping checkpoint is still owed (a previous one was
    /// blocked); [`Store::checkpoint`] clears it when it succeeds.
    pub fn wipe_pending(&self) -> bool {
        self.wipe_pending
    }
}

/// The two `synchronous` levels the store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    /// fsync the WAL at every commit.
    Full,
    /// fsync only at checkpoints (durable with the next FULL commit).
    Normal,
}

impl Tx<'_> {
    /// Runs `f` inside a savepoint: if it returns an error, only its own
    /// changes are undone and the error is returned, while the surrounding
    /// transaction goes on (and commits the rest of the batch).
    pub fn savepoint<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Cached statements: a savepoint wraps every job of the daemon's
        // store thread, so parsing these each time was measurable.
        let run = |tx: &Tx<'_>, sql: &str| -> Result<(), StoreError> {
            tx.conn().prepare_cached(sql)?.execute([])?;
            Ok(())
        };
        run(self, "SAVEPOINT poc_store_item")?;
        let appended = self.appended;
        match f(self) {
            Ok(value) => {
                run(self, "RELEASE poc_store_item")?;
                Ok(value)
            }
            Err(error) => {
                // Its appends are undone with it.
                self.appended = appended;
                run(self, "ROLLBACK TO poc_store_item")?;
                run(self, "RELEASE poc_store_item")?;
                Err(error)
            }
        }
    }

    fn conn(&self) -> &Connection {
        self.reader.conn
    }

    /// The seq of the last record entry this transaction appended so far
    /// (`None` if it appended none; entries of a [`Tx::savepoint`] that was
    /// rolled back do not count). Read it at the end of the closure given to
    /// [`Store::transaction`] to learn, once the commit returns, whether the
    /// record grew and to where: the daemon wakes its record followers with
    /// it.
    pub fn record_appended(&self) -> Option<u64> {
        self.appended
    }

    /// Marks that this transaction deleted secret bytes.
    fn wipe_after_commit(&mut self) {
        self.wipe = true;
    }
}

/// Creates the file with mode 0600 if absent; checks the modes of an
/// existing file and of its WAL companions.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(file) => {
            file.sync_all().map_err(io)?;
            // Make the new directory entry durable too.
            #[cfg(unix)]
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|source| StoreError::Io {
                        path: dir.to_path_buf(),
                        source,
                    })?;
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(io(error)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        check_mode(Path::new(&name))?;
    }
    Ok(())
}

#[cfg(unix)]
fn check_mode(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(StoreError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(not(unix))]
fn check_mode(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Helpers for the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::Store;

    /// The plan SQLite picks for `sql` (parameters bound to 0), one line
    /// per step: for tests that pin which index a statement uses.
    pub(crate) fn plan(store: &Store, sql: &str) -> Vec<String> {
        store
            .read(|r| {
                let mut stmt = r.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                for index in 1..=stmt.parameter_count() {
                    stmt.raw_bind_parameter(index, 0)?;
                }
                let mut rows = stmt.raw_query();
                let mut steps = Vec::new();
                while let Some(row) = rows.next()? {
                    steps.push(row.get::<_, String>(3)?);
                }
                Ok(steps)
            })
            .unwrap_or_else(|e| vec![format!("cannot plan: {e}")])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pragma(store: &Store, name: &str) -> String {
        store
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |row| {
                row.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .unwrap()
    }

    #[test]
    fn connection_pragmas_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pragmas.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(pragma(&store, "journal_mode"), "wal");
        assert_eq!(pragma(&store, "synchronous"), "2"); // FULL
        assert_eq!(pragma(&store, "secure_delete"), "1");
        assert_eq!(pragma(&store, "foreign_keys"), "1");
        assert_eq!(pragma(&store, "trusted_schema"), "0");
        assert_eq!(pragma(&store, "busy_timeout"), "5000");
        assert_eq!(
            pragma(&store, "application_id"),
            schema::APPLICATION_ID.to_string()
        );
    }

    #[test]
    fn only_a_deferred_transaction_commits_without_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("deferred.db")).unwrap();
        let level = |tx: &Tx<'_>| -> Result<i64, StoreError> {
            Ok(tx
                .conn()
                .query_row("PRAGMA synchronous", [], |row| row.get(0))?)
        };
        assert_eq!(store.transaction_deferred(|tx| level(tx)).unwrap(), 1);
        assert_eq!(store.transaction(|tx| level(tx)).unwrap(), 2);
        // A deferred transaction that fails restores FULL too.
        let failed: Result<(), StoreError> =
            store.transaction_deferred(|_| Err(StoreError::Invalid("no".into())));
        assert!(failed.is_err());
        assert_eq!(pragma(&store, "synchronous"), "2");
        // If restoring failed, the next transaction sets FULL before it
        // begins.
        store
            .conn
            .execute_batch("PRAGMA synchronous = NORMAL")
            .unwrap();
        store.sync_lowered = true;
        assert_eq!(store.transaction(|tx| level(tx)).unwrap(), 2);
    }
}

#[cfg(test)]
mod statement_cache {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::record::{COLUMNS, NewEntry, RecordEvent};

    /// Without the query planner stability guarantee, SQLite recompiled the
    /// record page query on every execution with new bindings (a profile
    /// showed `sqlite3Reprepare` at half of the store thread's time for an
    /// empty `RecordExport`).
    #[test]
    fn cached_statements_are_not_recompiled_for_new_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        for round in 0..20u64 {
            store
                .transaction(|tx| {
                    tx.savepoint(|tx| {
                        tx.record_append(NewEntry {
                            envelope: Some(vec![1; 100]),
                            ..NewEntry::new(
                                poc_proto::Timestamp(1_800_000_000 + round),
                                RecordEvent::Received,
                            )
                        })
                    })
                })
                .unwrap();
            store.read(|r| r.record_page(round, 10)).unwrap();
            store.read(|r| r.record_page(round + 1, 10)).unwrap();
        }
        let page = format!("SELECT {COLUMNS} FROM record WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        let stmt = store.conn.prepare_cached(&page).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }
}
