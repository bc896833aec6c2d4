//! The one error type of the store.

use std::path::PathBuf;

use poc_proto::MessageId;
use poc_proto::certificate::PrekeyId;

use crate::outbox::OutboxId;

/// Why a store operation failed. Any error inside [`crate::Store::transaction`]
/// rolls the whole transaction back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite reported an error (I/O, full disk, locked database, constraint).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Creating or inspecting the database file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The database file (or its `-wal`/`-shm` companion) can be read by
    /// group or others. It holds prekey secrets and the record, so the node
    /// refuses to use it.
    #[error(
        "{} is accessible by group or others (mode {mode:03o}); it holds key secrets and the record: run `chmod 600 {}` (and check who could have read it)",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The file with too open permissions.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is an SQLite database of some other application.
    #[error(
        "{} is not a pocnet store (SQLite application_id {application_id:#010x})",
        path.display()
    )]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// The application id found in it.
        application_id: i32,
    },
    /// The database was written by a newer version of pocnet.
    #[error(
        "the store has schema version {found}, this build knows up to {supported}: upgrade pocd, or restore a backup made by this version"
    )]
    SchemaTooNew {
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// A stored value cannot be read back as what it should be (a damaged or
    /// hand-edited database).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A value does not fit the store's integer columns (SQLite integers are
    /// signed 64-bit).
    #[error("{what} {value} is out of range for the store (at most {max})", max = i64::MAX)]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The caller asked for something the store does not do (e.g. appending
    /// a Purge entry by hand).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The caller's closure gave up; the transaction was rolled back. Wrap
    /// the daemon's own error here and downcast it back after
    /// [`crate::Store::transaction`] returns.
    #[error("transaction aborted: {0}")]
    Aborted(Box<dyn std::error::Error + Send + Sync>),
    /// No outbox item has this id.
    #[error("no outbox item {0}")]
    OutboxNotFound(OutboxId),
    /// The outbox already holds a message with this id.
    #[error("outbox already holds message {0}")]
    OutboxDuplicate(MessageId),
    /// A prekey secret does not belong to the prekey it is stored with.
    #[error("prekey {id}: secret does not match the public key")]
    PrekeyMismatch {
        /// The prekey id.
        id: PrekeyId,
    },
    /// A prekey id is already held for a different key (ids name keys on the
    /// wire, so they are never reused).
    #[error("prekey id {id} is already used by a different key")]
    PrekeyIdInUse {
        /// The prekey id.
        id: PrekeyId,
    },
    /// A directory snapshot with this sequence number but a different digest
    /// is already stored: the directory forked, or the caller is confused.
    #[error(
        "a different directory snapshot with sequence {sequence} is already stored (possible fork)"
    )]
    SnapshotConflict {
        /// The sequence number.
        sequence: u64,
    },
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt(what.into())
    }
}
