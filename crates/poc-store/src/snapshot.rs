//! Signed directory snapshots, as received, by sequence number.

use rusqlite::{OptionalExtension, params};

use crate::sql::{get_array, get_u64, int_exact};
use crate::{Reader, StoreError, Tx};

/// A stored directory snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// Its sequence number.
    pub sequence: u64,
    /// Its digest, as given when stored.
    pub digest: [u8; 32],
    /// The snapshot's bytes as received.
    pub bytes: Vec<u8>,
}

impl Reader<'_> {
    /// The snapshot with the highest sequence number.
    pub fn snapshot_latest(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        self.snapshot_one(
            "SELECT sequence, digest, bytes FROM directory_snapshot ORDER BY sequence DESC LIMIT 1",
            [],
        )
    }

    /// The snapshot with this sequence number.
    pub fn snapshot_get(&self, sequence: u64) -> Result<Option<StoredSnapshot>, StoreError> {
        let Ok(sequence) = i64::try_from(sequence) else {
            return Ok(None);
        };
        self.snapshot_one(
            "SELECT sequence, digest, bytes FROM directory_snapshot WHERE sequence = ?1",
            [sequence],
        )
    }

    fn snapshot_one(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        rows.next()?
            .map(|row| {
                Ok(StoredSnapshot {
                    sequence: get_u64(row, "sequence")?,
                    digest: get_array(row, "digest")?,
                    bytes: row.get("bytes")?,
                })
            })
            .transpose()
    }
}

impl Tx<'_> {
    /// Stores a snapshot. Storing the same sequence with the same digest
    /// again does nothing; with another digest it is refused
    /// ([`StoreError::SnapshotConflict`]). The caller checks signatures and
    /// the chain before storing.
    pub fn snapshot_put(
        &mut self,
        sequence: u64,
        digest: [u8; 32],
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let seq = int_exact("snapshot sequence", sequence)?;
        let held: Option<Vec<u8>> = self
            .conn()
            .prepare_cached("SELECT digest FROM directory_snapshot WHERE sequence = ?1")?
            .query_row([seq], |row| row.get(0))
            .optional()?;
        match held {
            Some(held) if held == digest => Ok(()),
            Some(_) => Err(StoreError::SnapshotConflict { sequence }),
            None => {
                self.conn()
                    .prepare_cached(
                        "INSERT INTO directory_snapshot (sequence, digest, bytes) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![seq, &digest[..], bytes])?;
                Ok(())
            }
        }
    }

    /// Deletes snapshots with a sequence number below `sequence`; returns
    /// how many.
    pub fn snapshot_prune_before(&mut self, sequence: u64) -> Result<u64, StoreError> {
        let seq = i64::try_from(sequence).unwrap_or(i64::MAX);
        let deleted = self
            .conn()
            .prepare_cached("DELETE FROM directory_snapshot WHERE sequence < ?1")?
            .execute([seq])?;
        Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
    }
}
