//! Where the relay keeps envelopes: a narrow storage trait and three
//! implementations, all run through one conformance suite
//! (`tests/store_conformance.rs`): [`LogStore`], an append-only segment log
//! (the default), [`SqliteStore`] (WAL) and [`MemoryStore`]. A PostgreSQL
//! backend for several stateless front ends would be one more.
//!
//! What is stored per envelope is only what the outer header gives and the
//! opaque bytes: mailbox id, expiry, length, the envelope. Never who
//! deposited it.
//!
//! Durability is split from the commit: a store may hand out a [`Flusher`]
//! that makes every commit made before its call durable, run on a thread of
//! its own. While one batch of deposits waits for the disk, the next one is
//! already being written (pipelined group commit), and a deposit is answered
//! only once its flush has returned.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use poc_proto::Timestamp;
use poc_proto::certificate::MailboxId;
use rusqlite::{Connection, params};

mod segment_log;
pub use segment_log::{DEFAULT_SEGMENT_BYTES, LogFlusher, LogStore};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("relay database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The stored data is not in the expected state.
    #[error("relay store: {0}")]
    Corrupt(String),
    /// Reading or writing the segment log failed.
    #[error("relay log: {path}: {source}")]
    Log {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Flushing committed data to the disk failed.
    #[error("relay database: cannot flush {path} to the disk: {source}")]
    Flush {
        /// The file that could not be flushed.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Makes committed changes durable, on a thread other than the one that
/// commits.
pub trait Flusher: Send {
    /// Returns once every change committed before this call is on stable
    /// storage. After an error nothing committed since the last successful
    /// flush may be assumed durable, not even after a later successful one
    /// (the kernel may have dropped the pages that failed to write).
    fn flush(&mut self) -> Result<(), StoreError>;
}

/// An envelope to store.
#[derive(Clone, PartialEq, Eq)]
pub struct NewEnvelope {
    /// Recipient mailbox, from the outer header.
    pub mailbox: MailboxId,
    /// Expiry, from the outer header (possibly shortened by the relay).
    pub expires_at: Timestamp,
    /// The sealed envelope.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for NewEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEnvelope")
            .field("mailbox", &self.mailbox)
            .field("expires_at", &self.expires_at)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A stored envelope as fetched.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Store-wide id, increasing, never reused.
    pub id: u64,
    /// Expiry.
    pub expires_at: Timestamp,
    /// The sealed envelope.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for StoredEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEnvelope")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Per-mailbox limits enforced atomically with a deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Most envelopes one mailbox may hold.
    pub max_envelopes: u64,
    /// Most bytes one mailbox may hold.
    pub max_bytes: u64,
}

/// What became of one deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepositOutcome {
    /// Stored durably under this id.
    Stored(u64),
    /// Refused: the mailbox already holds `max_envelopes`.
    MailboxFull,
    /// Refused: the envelope would take the mailbox past `max_bytes`.
    MailboxBytesFull,
}

/// Envelope count and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Envelopes.
    pub envelopes: u64,
    /// Bytes of envelopes.
    pub bytes: u64,
}

/// The relay's storage. Every method that changes state has committed when
/// it returns; it is durable then, unless the store hands out a [`Flusher`],
/// in which case it is durable once a flush started after the commit has
/// returned.
pub trait RelayStore: Send {
    /// The store's flusher, handed out once; `None` when commits are durable
    /// on return (or, for memory, never).
    fn take_flusher(&mut self) -> Option<Box<dyn Flusher>> {
        None
    }

    /// Stores a batch of envelopes in order, each checked against `quota`
    /// (counting the batch's earlier envelopes), in one transaction.
    fn deposit_batch(
        &mut self,
        batch: &[NewEnvelope],
        quota: Quota,
    ) -> Result<Vec<DepositOutcome>, StoreError>;

    /// Up to `max_items` unexpired envelopes of `mailbox` as of `now`, oldest
    /// first, stopping before `max_bytes` would be exceeded (but always
    /// including the first one). Nothing is deleted.
    fn fetch(
        &mut self,
        mailbox: MailboxId,
        now: Timestamp,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError>;

    /// Deletes those of `ids` that are in `mailbox` (others are ignored:
    /// a client can only delete its own mail). Returns how many were deleted.
    fn ack(&mut self, mailbox: MailboxId, ids: &[u64]) -> Result<u64, StoreError>;

    /// Deletes every envelope whose expiry is before `now`; returns how many.
    fn expire(&mut self, now: Timestamp) -> Result<u64, StoreError>;

    /// What `mailbox` holds (expired envelopes not yet swept included).
    fn usage(&mut self, mailbox: MailboxId) -> Result<Usage, StoreError>;

    /// What the whole store holds.
    fn totals(&mut self) -> Result<Usage, StoreError>;

    /// Bytes the store takes on the disk, where it knows (for the
    /// operator's metrics: with the log this is not the bytes held).
    fn disk_bytes(&mut self) -> Option<u64> {
        None
    }
}

fn len64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// Per-mailbox usage as it will be once a batch is written, for checking
/// each of the batch's envelopes against the quota in order.
struct BatchUsage {
    quota: Quota,
    usage: HashMap<MailboxId, Usage>,
}

impl BatchUsage {
    fn new(quota: Quota) -> BatchUsage {
        BatchUsage {
            quota,
            usage: HashMap::new(),
        }
    }

    /// Counts an envelope of `len` bytes into `mailbox` (which held `held`
    /// before the batch), or says why the quota refuses it.
    fn admit(
        &mut self,
        mailbox: MailboxId,
        len: u64,
        held: impl FnOnce() -> Usage,
    ) -> Result<(), DepositOutcome> {
        let usage = self.usage.entry(mailbox).or_insert_with(held);
        if let Some(refused) = check_quota(*usage, len, self.quota) {
            return Err(refused);
        }
        usage.envelopes += 1;
        usage.bytes = usage.bytes.saturating_add(len);
        Ok(())
    }
}

/// A fetch page being filled: at most `max_items` envelopes, stopping
/// before `max_bytes` would be passed, but always taking the first.
struct Page {
    max_items: usize,
    max_bytes: usize,
    bytes: usize,
    envelopes: Vec<StoredEnvelope>,
}

impl Page {
    fn new(max_items: usize, max_bytes: usize) -> Page {
        Page {
            max_items,
            max_bytes,
            bytes: 0,
            envelopes: Vec::new(),
        }
    }

    /// Whether an envelope of `len` bytes goes in; once one does not, the
    /// page is complete (envelopes are taken oldest first).
    fn has_room_for(&self, len: usize) -> bool {
        self.envelopes.len() < self.max_items
            && (self.envelopes.is_empty() || self.bytes.saturating_add(len) <= self.max_bytes)
    }

    fn push(&mut self, envelope: StoredEnvelope) {
        self.bytes = self.bytes.saturating_add(envelope.bytes.len());
        self.envelopes.push(envelope);
    }
}

fn check_quota(usage: Usage, len: u64, quota: Quota) -> Option<DepositOutcome> {
    if usage.envelopes >= quota.max_envelopes {
        Some(DepositOutcome::MailboxFull)
    } else if usage.bytes.saturating_add(len) > quota.max_bytes {
        Some(DepositOutcome::MailboxBytesFull)
    } else {
        None
    }
}

/// Envelopes in memory: for tests and for a relay that may lose its mail on
/// restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    next_id: u64,
    mailboxes: HashMap<MailboxId, BTreeMap<u64, StoredEnvelope>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

fn usage_of<'a>(envelopes: impl Iterator<Item = &'a StoredEnvelope>) -> Usage {
    envelopes.fold(Usage::default(), |u, e| Usage {
        envelopes: u.envelopes + 1,
        bytes: u.bytes.saturating_add(len64(&e.bytes)),
    })
}

impl RelayStore for MemoryStore {
    fn deposit_batch(
        &mut self,
        batch: &[NewEnvelope],
        quota: Quota,
    ) -> Result<Vec<DepositOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for new in batch {
            let mailbox = self.mailboxes.entry(new.mailbox).or_default();
            let usage = usage_of(mailbox.values());
            if let Some(refused) = check_quota(usage, len64(&new.bytes), quota) {
                outcomes.push(refused);
                continue;
            }
            self.next_id += 1;
            let id = self.next_id;
            mailbox.insert(
                id,
                StoredEnvelope {
                    id,
                    expires_at: new.expires_at,
                    bytes: new.bytes.clone(),
                },
            );
            outcomes.push(DepositOutcome::Stored(id));
        }
        Ok(outcomes)
    }

    fn fetch(
        &mut self,
        mailbox: MailboxId,
        now: Timestamp,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let mut page = Page::new(max_items, max_bytes);
        for e in self
            .mailboxes
            .get(&mailbox)
            .into_iter()
            .flat_map(|m| m.values())
        {
            if e.expires_at < now {
                continue;
            }
            if !page.has_room_for(e.bytes.len()) {
                break;
            }
            page.push(e.clone());
        }
        Ok(page.envelopes)
    }

    fn ack(&mut self, mailbox: MailboxId, ids: &[u64]) -> Result<u64, StoreError> {
        let Some(envelopes) = self.mailboxes.get_mut(&mailbox) else {
            return Ok(0);
        };
        let deleted = ids
            .iter()
            .filter(|id| envelopes.remove(id).is_some())
            .count();
        Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
    }

    fn expire(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let mut dropped = 0u64;
        for envelopes in self.mailboxes.values_mut() {
            let before = envelopes.len();
            envelopes.retain(|_, e| e.expires_at >= now);
            dropped += u64::try_from(before - envelopes.len()).unwrap_or(0);
        }
        self.mailboxes.retain(|_, m| !m.is_empty());
        Ok(dropped)
    }

    fn usage(&mut self, mailbox: MailboxId) -> Result<Usage, StoreError> {
        Ok(usage_of(
            self.mailboxes
                .get(&mailbox)
                .into_iter()
                .flat_map(|m| m.values()),
        ))
    }

    fn totals(&mut self) -> Result<Usage, StoreError> {
        Ok(usage_of(self.mailboxes.values().flat_map(|m| m.values())))
    }
}

/// Envelopes in a SQLite file (WAL, `secure_delete=FAST`: deleted rows are
/// zeroed where that costs no extra I/O; what may linger in free pages is
/// ciphertext the relay held anyway).
///
/// Durability: the connection runs with `synchronous=NORMAL`, so a commit
/// writes its frames to the WAL without waiting for the disk, and the store
/// hands out a [`WalFlusher`] that fsyncs the WAL file: the same fsync that
/// `synchronous=FULL` would run inside the commit, moved to another thread so
/// that the next batch is written while this one is flushed. Checkpoints stay
/// with SQLite, which in this mode syncs the WAL before copying it into the
/// database and the database after, so a frame is durable either in the WAL
/// (our flush) or in the database (the checkpoint) before the WAL is reused.
///
/// Per-mailbox usage (for quotas) is kept in memory, loaded at open and
/// updated after each commit: the store thread is the database's only
/// writer, and counting a mailbox's rows on every deposit would make a
/// backlog quadratic.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    usage: HashMap<MailboxId, Usage>,
    flusher: Option<WalFlusher>,
}

/// Flushes a SQLite database's WAL file (see [`SqliteStore`]).
#[derive(Debug)]
pub struct WalFlusher {
    path: PathBuf,
    file: File,
    inode: u64,
}

impl WalFlusher {
    fn open(path: PathBuf) -> Result<WalFlusher, StoreError> {
        let fail = |source| StoreError::Flush {
            path: path.clone(),
            source,
        };
        // Read access is enough for fsync(2) on Linux; this handle never
        // writes.
        let file = File::open(&path).map_err(fail)?;
        let inode = file.metadata().map_err(fail)?.ino();
        Ok(WalFlusher { path, file, inode })
    }
}

impl Flusher for WalFlusher {
    fn flush(&mut self) -> Result<(), StoreError> {
        // SQLite keeps its WAL file while its connection is open, but a
        // handle on a replaced file would make this flush a silent no-op:
        // check that the path still names the file we hold.
        let current = std::fs::metadata(&self.path)
            .map_err(|source| StoreError::Flush {
                path: self.path.clone(),
                source,
            })?
            .ino();
        if current != self.inode {
            tracing::warn!(path = %self.path.display(), "the WAL file was replaced; reopening it");
            *self = WalFlusher::open(self.path.clone())?;
        }
        self.file.sync_data().map_err(|source| StoreError::Flush {
            path: self.path.clone(),
            source,
        })
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS envelopes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox    BLOB    NOT NULL,
    expires_at INTEGER NOT NULL,
    len        INTEGER NOT NULL,
    bytes      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS envelopes_by_mailbox ON envelopes (mailbox, id);
CREATE INDEX IF NOT EXISTS envelopes_by_expiry ON envelopes (expires_at);
";

/// SQLite stores integers as i64; times beyond that saturate.
fn time_sql(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// A write transaction begun and ended through cached statements, where
/// rusqlite's `Transaction` parses `BEGIN` and `COMMIT` anew every time (the
/// parser was ~5 % of the store's CPU per envelope in `benches/store.rs`).
/// Dropped without [`WriteTx::commit`], it rolls back.
struct WriteTx<'c> {
    conn: &'c Connection,
    committed: bool,
}

impl<'c> WriteTx<'c> {
    fn begin(conn: &'c Connection) -> Result<WriteTx<'c>, StoreError> {
        conn.prepare_cached("BEGIN")?.execute([])?;
        Ok(WriteTx {
            conn,
            committed: false,
        })
    }

    fn commit(mut self) -> Result<(), StoreError> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.committed = true;
        Ok(())
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        // After some errors SQLite has already rolled back by itself.
        if !self.committed && !self.conn.is_autocommit() {
            let rollback = self.conn.prepare_cached("ROLLBACK");
            if let Err(e) = rollback.and_then(|mut stmt| stmt.execute([])) {
                tracing::error!(error = %e, "could not roll back a relay store transaction");
            }
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // SQLite's default page size, set explicitly because it was once
        // 16 KiB here (to keep a 4 KiB envelope in its row): with an envelope
        // in an overflow page of its own, B-tree balancing moves small cells
        // instead of whole envelopes, and a deposit, fetch and acknowledgement
        // cost ~30 % less (`benches/store.rs`, BENCHMARKS.md). Takes effect
        // only when the file is new.
        conn.execute_batch("PRAGMA page_size = 4096;")?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "could not enable WAL (journal_mode is {mode})"
            )));
        }
        // Plans must not depend on bound values, or SQLite recompiles a
        // statement whenever a binding its plan consulted changes (~1 % of
        // the relay's CPU in a profile), undoing the statement cache.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA secure_delete = FAST;
             PRAGMA trusted_schema = OFF;",
        )?;
        conn.execute_batch(SCHEMA)?;
        // The WAL file exists from here on (opening a WAL database creates
        // it); it is flushed once now so that the schema is durable too.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let mut flusher = WalFlusher::open(PathBuf::from(wal))?;
        flusher.flush()?;
        let mut usage = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT mailbox, count(*), sum(len) FROM envelopes GROUP BY mailbox")?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })?;
            for row in rows {
                let (mailbox, count, bytes) = row?;
                let mailbox: [u8; 16] = mailbox
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a mailbox id is not 16 bytes".into()))?;
                usage.insert(
                    MailboxId(mailbox),
                    Usage {
                        envelopes: u64::try_from(count).unwrap_or(0),
                        bytes: u64::try_from(bytes.unwrap_or(0)).unwrap_or(0),
                    },
                );
            }
        }
        Ok(SqliteStore {
            conn,
            usage,
            flusher: Some(flusher),
        })
    }

    fn apply(&mut self, mailbox: MailboxId, envelopes: i64, bytes: i64) {
        let entry = self.usage.entry(mailbox).or_default();
        entry.envelopes = entry.envelopes.saturating_add_signed(envelopes);
        entry.bytes = entry.bytes.saturating_add_signed(bytes);
        if entry.envelopes == 0 {
            self.usage.remove(&mailbox);
        }
    }

    /// A pragma's current value, for tests.
    pub fn pragma(&self, name: &str) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |row| {
                row.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })?)
    }
}

impl RelayStore for SqliteStore {
    fn take_flusher(&mut self) -> Option<Box<dyn Flusher>> {
        self.flusher.take().map(|f| Box::new(f) as Box<dyn Flusher>)
    }

    fn deposit_batch(
        &mut self,
        batch: &[NewEnvelope],
        quota: Quota,
    ) -> Result<Vec<DepositOutcome>, StoreError> {
        let tx = WriteTx::begin(&self.conn)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut pending = BatchUsage::new(quota);
        for new in batch {
            let len = len64(&new.bytes);
            let held = || self.usage.get(&new.mailbox).copied().unwrap_or_default();
            if let Err(refused) = pending.admit(new.mailbox, len, held) {
                outcomes.push(refused);
                continue;
            }
            tx.prepare_cached(
                "INSERT INTO envelopes (mailbox, expires_at, len, bytes) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                &new.mailbox.0[..],
                time_sql(new.expires_at),
                i64::try_from(len).unwrap_or(i64::MAX),
                &new.bytes
            ])?;
            let id = u64::try_from(tx.last_insert_rowid())
                .map_err(|_| StoreError::Corrupt("negative envelope id".into()))?;
            outcomes.push(DepositOutcome::Stored(id));
        }
        tx.commit()?;
        self.usage.extend(pending.usage);
        Ok(outcomes)
    }

    fn fetch(
        &mut self,
        mailbox: MailboxId,
        now: Timestamp,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, expires_at, bytes FROM envelopes \
             WHERE mailbox = ?1 AND expires_at >= ?2 ORDER BY id LIMIT ?3",
        )?;
        let limit = i64::try_from(max_items).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![&mailbox.0[..], time_sql(now), limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut page = Page::new(max_items, max_bytes);
        for row in rows {
            let (id, expires_at, envelope) = row?;
            if !page.has_room_for(envelope.len()) {
                break;
            }
            page.push(StoredEnvelope {
                id: u64::try_from(id).unwrap_or(0),
                expires_at: Timestamp(u64::try_from(expires_at).unwrap_or(0)),
                bytes: envelope,
            });
        }
        Ok(page.envelopes)
    }

    fn ack(&mut self, mailbox: MailboxId, ids: &[u64]) -> Result<u64, StoreError> {
        // A deletion need not reach the disk before we answer: if a crash
        // loses it, the envelope is fetched again and the recipient, which
        // has recorded it, acknowledges it as a duplicate. The next flush
        // makes it durable with whatever was deposited meanwhile.
        let tx = WriteTx::begin(&self.conn)?;
        let (mut deleted, mut bytes) = (0i64, 0i64);
        {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM envelopes WHERE id = ?1 AND mailbox = ?2 RETURNING len",
            )?;
            for id in ids {
                let Ok(id) = i64::try_from(*id) else { continue };
                let mut rows = stmt.query(params![id, &mailbox.0[..]])?;
                while let Some(row) = rows.next()? {
                    deleted += 1;
                    bytes += row.get::<_, i64>(0)?;
                }
            }
        }
        tx.commit()?;
        self.apply(mailbox, -deleted, -bytes);
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    fn expire(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let tx = WriteTx::begin(&self.conn)?;
        let mut dropped: Vec<(MailboxId, i64, i64)> = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM envelopes WHERE expires_at < ?1 RETURNING mailbox, len",
            )?;
            let mut rows = stmt.query(params![time_sql(now)])?;
            while let Some(row) = rows.next()? {
                let mailbox: [u8; 16] = row
                    .get::<_, Vec<u8>>(0)?
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a mailbox id is not 16 bytes".into()))?;
                dropped.push((MailboxId(mailbox), 1, row.get::<_, i64>(1)?));
            }
        }
        tx.commit()?;
        let count = dropped.len();
        for (mailbox, n, bytes) in dropped {
            self.apply(mailbox, -n, -bytes);
        }
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn usage(&mut self, mailbox: MailboxId) -> Result<Usage, StoreError> {
        Ok(self.usage.get(&mailbox).copied().unwrap_or_default())
    }

    fn totals(&mut self) -> Result<Usage, StoreError> {
        Ok(self.usage.values().fold(Usage::default(), |t, u| Usage {
            envelopes: t.envelopes + u.envelopes,
            bytes: t.bytes.saturating_add(u.bytes),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn a_write_transaction_commits_or_rolls_back_when_dropped() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();

        let tx = WriteTx::begin(&conn).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        drop(tx);
        assert_eq!(rows(&conn), 0, "dropped without commit: rolled back");
        assert!(conn.is_autocommit());

        let tx = WriteTx::begin(&conn).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        tx.commit().unwrap();
        assert_eq!(rows(&conn), 1);

        // The cached statements serve the next transaction as well.
        let tx = WriteTx::begin(&conn).unwrap();
        tx.execute("INSERT INTO t VALUES (2)", []).unwrap();
        tx.commit().unwrap();
        assert_eq!(rows(&conn), 2);
    }
}
