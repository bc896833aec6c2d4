//! The replay cache: `(sender, message id)` pairs already accepted.

use poc_proto::envelope::ReplayCache;
use poc_proto::error::ReplayCacheError;
use poc_proto::{MessageId, PocId, Timestamp};
use rusqlite::params;

use crate::sql::time_sat;
use crate::{Reader, StoreError, Tx};

impl Reader<'_> {
    /// Whether the pair is in the cache (pruned or not yet).
    pub fn replay_contains(&self, sender: &PocId, id: MessageId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM replay WHERE sender = ?1 AND message_id = ?2)",
            )?
            .query_row(params![sender.as_str(), &id.0[..]], |row| row.get(0))?)
    }
}

impl Tx<'_> {
    /// Remembers the pair until `keep_until`. Returns `true` if it is new,
    /// `false` if it was already there (a replay; the stored `keep_until`
    /// is then left as it is).
    pub fn replay_insert(
        &mut self,
        sender: &PocId,
        id: MessageId,
        keep_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let inserted = self
            .conn()
            .prepare_cached(
                "INSERT INTO replay (sender, message_id, keep_until) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![sender.as_str(), &id.0[..], time_sat(keep_until)])?;
        Ok(inserted == 1)
    }

    /// Forgets pairs whose `keep_until` is before `now`; returns how many.
    pub fn replay_prune(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let deleted = self
            .conn()
            .prepare_cached("DELETE FROM replay WHERE keep_until < ?1")?
            .execute([time_sat(now)])?;
        Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
    }
}

/// Lets [`poc_proto::envelope::Recipient::open`] insert into the cache
/// inside the transaction that also records the message, so a crash can
/// never leave a message marked seen but unrecorded.
impl ReplayCache for Tx<'_> {
    fn insert(
        &mut self,
        sender: &PocId,
        message_id: MessageId,
        keep_until: Timestamp,
    ) -> Result<bool, ReplayCacheError> {
        self.replay_insert(sender, message_id, keep_until)
            .map_err(|e| ReplayCacheError(Box::new(e)))
    }
}
