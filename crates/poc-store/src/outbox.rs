//! The outbox: sealed envelopes to deliver, with their retry schedule.
//!
//! An item is `Pending` until it is delivered (directly or through a relay),
//! fails for good, or expires; only pending items change. Times beyond
//! `i64::MAX` seconds are stored as `i64::MAX` ("never").

use poc_proto::{MessageId, PocId, ThreadId, Timestamp};
use rusqlite::{OptionalExtension, Row, params};

use crate::sql::{
    get_message_id, get_opt_time, get_poc, get_thread_id, get_time, get_u64, time_sat,
};
use crate::{Reader, StoreError, Tx};

/// An outbox item's id (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxId(pub i64);

impl std::fmt::Display for OutboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Where an outbox item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Handed over (to the recipient or a relay).
    Delivered,
    /// Given up for a reason other than time (e.g. recipient revoked).
    Failed,
    /// Not delivered before its envelope expired.
    Expired,
}

impl OutboxStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Expired => "expired",
        }
    }

    fn from_name(name: &str) -> Option<OutboxStatus> {
        [
            OutboxStatus::Pending,
            OutboxStatus::Delivered,
            OutboxStatus::Failed,
            OutboxStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An envelope to queue for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxItem {
    /// The message id (unique in the outbox).
    pub message_id: MessageId,
    /// The thread id.
    pub thread_id: ThreadId,
    /// The recipient PoC.
    pub recipient: PocId,
    /// The sealed envelope.
    pub envelope: Vec<u8>,
    /// The message kind's name.
    pub kind: String,
    /// When it was queued.
    pub created_at: Timestamp,
    /// The envelope's expiry: after it, the item expires undelivered.
    pub expires_at: Timestamp,
    /// The first attempt (usually `created_at`).
    pub next_attempt_at: Timestamp,
}

/// A stored outbox item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Its id.
    pub id: OutboxId,
    /// The message id.
    pub message_id: MessageId,
    /// The thread id.
    pub thread_id: ThreadId,
    /// The recipient PoC.
    pub recipient: PocId,
    /// The sealed envelope.
    pub envelope: Vec<u8>,
    /// The message kind's name.
    pub kind: String,
    /// When it was queued.
    pub created_at: Timestamp,
    /// The envelope's expiry.
    pub expires_at: Timestamp,
    /// When the next attempt is due (meaningful while pending).
    pub next_attempt_at: Timestamp,
    /// Where it stands.
    pub status: OutboxStatus,
    /// Failed attempts so far (each [`Tx::outbox_reschedule`]).
    pub attempts: u64,
    /// The last attempt's error, or the reason it failed.
    pub last_error: Option<String>,
    /// `direct`, or the relay's name, once delivered.
    pub delivered_via: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
    /// When it left `Pending` (delivered, failed or expired).
    pub finished_at: Option<Timestamp>,
}

impl OutboxItem {
    fn from_row(row: &Row<'_>) -> Result<OutboxItem, StoreError> {
        let status: String = row.get("status")?;
        Ok(OutboxItem {
            id: OutboxId(row.get("id")?),
            message_id: get_message_id(row, "message_id")?,
            thread_id: get_thread_id(row, "thread_id")?,
            recipient: get_poc(row, "recipient")?,
            envelope: row.get("envelope")?,
            kind: row.get("kind")?,
            created_at: get_time(row, "created_at")?,
            expires_at: get_time(row, "expires_at")?,
            next_attempt_at: get_time(row, "next_attempt_at")?,
            status: OutboxStatus::from_name(&status)
                .ok_or_else(|| StoreError::corrupt(format!("unknown outbox status {status:?}")))?,
            attempts: get_u64(row, "attempts")?,
            last_error: row.get("last_error")?,
            delivered_via: row.get("delivered_via")?,
            delivered_at: get_opt_time(row, "delivered_at")?,
            finished_at: get_opt_time(row, "finished_at")?,
        })
    }
}

const COLUMNS: &str = "id, message_id, thread_id, recipient, envelope, kind, created_at, \
     expires_at, next_attempt_at, status, attempts, last_error, delivered_via, delivered_at, \
     finished_at";

impl Reader<'_> {
    fn outbox_query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(OutboxItem::from_row(row)?);
        }
        Ok(out)
    }

    /// Up to `limit` pending items whose next attempt is due at `now` and
    /// whose envelope has not expired, most overdue first (then in queue
    /// order). Expired ones are left for [`Tx::outbox_expire`].
    pub fn outbox_due(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        self.outbox_query(
            &format!(
                "SELECT {COLUMNS} FROM outbox \
                 WHERE status = 'pending' AND next_attempt_at <= ?1 AND expires_at >= ?1 \
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ),
            params![time_sat(now), limit],
        )
    }

    /// The item with this id.
    pub fn outbox_get(&self, id: OutboxId) -> Result<Option<OutboxItem>, StoreError> {
        Ok(self
            .outbox_query(
                &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
                [id.0],
            )?
            .into_iter()
            .next())
    }

    /// The item carrying this message.
    pub fn outbox_by_message(
        &self,
        message_id: MessageId,
    ) -> Result<Option<OutboxItem>, StoreError> {
        Ok(self
            .outbox_query(
                &format!("SELECT {COLUMNS} FROM outbox WHERE message_id = ?1"),
                [&message_id.0[..]],
            )?
            .into_iter()
            .next())
    }

    /// Every item (with `status`, only those), in queue order.
    pub fn outbox_list(&self, status: Option<OutboxStatus>) -> Result<Vec<OutboxItem>, StoreError> {
        match status {
            Some(status) => self.outbox_query(
                &format!("SELECT {COLUMNS} FROM outbox WHERE status = ?1 ORDER BY id"),
                [status.as_str()],
            ),
            None => self.outbox_query(&format!("SELECT {COLUMNS} FROM outbox ORDER BY id"), []),
        }
    }

    /// The earliest next attempt of any pending item: when the delivery loop
    /// should wake next (see also [`Reader::next_outbox_expiry`]).
    pub fn next_outbox_attempt(&self) -> Result<Option<Timestamp>, StoreError> {
        self.outbox_min("SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'")
    }

    /// The earliest expiry of any pending item: after it,
    /// [`Tx::outbox_expire`] has something to report.
    pub fn next_outbox_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.outbox_min("SELECT min(expires_at) FROM outbox WHERE status = 'pending'")
    }

    fn outbox_min(&self, sql: &str) -> Result<Option<Timestamp>, StoreError> {
        let min: Option<i64> = self
            .conn
            .prepare_cached(sql)?
            .query_row([], |row| row.get(0))?;
        min.map(|t| {
            u64::try_from(t)
                .map(Timestamp)
                .map_err(|_| StoreError::corrupt("negative outbox time"))
        })
        .transpose()
    }
}

impl Tx<'_> {
    /// Queues an envelope. Refuses a message id already in the outbox
    /// ([`StoreError::OutboxDuplicate`]).
    pub fn outbox_enqueue(&mut self, item: NewOutboxItem) -> Result<OutboxId, StoreError> {
        let exists: bool = self
            .conn()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE message_id = ?1)")?
            .query_row([&item.message_id.0[..]], |row| row.get(0))?;
        if exists {
            return Err(StoreError::OutboxDuplicate(item.message_id));
        }
        self.conn()
            .prepare_cached(
                "INSERT INTO outbox (message_id, thread_id, recipient, envelope, kind, \
                     created_at, expires_at, next_attempt_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                &item.message_id.0[..],
                &item.thread_id.0[..],
                item.recipient.as_str(),
                item.envelope,
                item.kind,
                time_sat(item.created_at),
                time_sat(item.expires_at),
                time_sat(item.next_attempt_at),
            ])?;
        Ok(OutboxId(self.conn().last_insert_rowid()))
    }

    /// Runs a status change on a pending item: `Ok(true)` if it applied,
    /// `Ok(false)` if the item is no longer pending, an error if it does
    /// not exist.
    fn outbox_change(
        &mut self,
        id: OutboxId,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<bool, StoreError> {
        let changed = self.conn().prepare_cached(sql)?.execute(params)?;
        if changed == 1 {
            return Ok(true);
        }
        let exists: Option<i64> = self
            .conn()
            .prepare_cached("SELECT id FROM outbox WHERE id = ?1")?
            .query_row([id.0], |row| row.get(0))
            .optional()?;
        match exists {
            Some(_) => Ok(false),
            None => Err(StoreError::OutboxNotFound(id)),
        }
    }

    /// Marks a pending item delivered, `via` `direct` or a relay's name.
    /// Returns `false` (and changes nothing) if it was no longer pending.
    pub fn outbox_mark_delivered(
        &mut self,
        id: OutboxId,
        via: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.outbox_change(
            id,
            "UPDATE outbox SET status = 'delivered', delivered_via = ?2, delivered_at = ?3, \
                 finished_at = ?3 \
             WHERE id = ?1 AND status = 'pending'",
            params![id.0, via, time_sat(at)],
        )
    }

    /// Records a failed attempt: sets the next attempt time and the error,
    /// and counts the attempt. Returns `false` if it was no longer pending.
    pub fn outbox_reschedule(
        &mut self,
        id: OutboxId,
        next_attempt_at: Timestamp,
        last_error: &str,
    ) -> Result<bool, StoreError> {
        self.outbox_change(
            id,
            "UPDATE outbox SET next_attempt_at = ?2, last_error = ?3, attempts = attempts + 1 \
             WHERE id = ?1 AND status = 'pending'",
            params![id.0, time_sat(next_attempt_at), last_error],
        )
    }

    /// Gives up on a pending item for `reason` (kept in `last_error`).
    /// Returns `false` if it was no longer pending.
    pub fn outbox_mark_failed(
        &mut self,
        id: OutboxId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.outbox_change(
            id,
            "UPDATE outbox SET status = 'failed', last_error = ?2, finished_at = ?3 \
             WHERE id = ?1 AND status = 'pending'",
            params![id.0, reason, time_sat(at)],
        )
    }

    /// Moves every pending item whose envelope expired before `now` to
    /// `Expired` and returns them (in queue order), for the daemon to report.
    pub fn outbox_expire(&mut self, now: Timestamp) -> Result<Vec<OutboxItem>, StoreError> {
        let now_sql = time_sat(now);
        let mut expired = self.outbox_query(
            &format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = 'pending' AND expires_at < ?1 \
                 ORDER BY id"
            ),
            [now_sql],
        )?;
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE outbox SET status = 'expired', finished_at = ?1 \
                 WHERE status = 'pending' AND expires_at < ?1",
            )?
            .execute([now_sql])?;
        if changed != expired.len() {
            return Err(StoreError::corrupt("outbox changed while expiring"));
        }
        for item in &mut expired {
            item.status = OutboxStatus::Expired;
            item.finished_at = Some(now);
        }
        Ok(expired)
    }

    /// Deletes items that finished (delivered, failed or expired) before
    /// `before`; returns how many. The record keeps what was sent.
    pub fn outbox_prune_finished(&mut self, before: Timestamp) -> Result<u64, StoreError> {
        let deleted = self
            .conn()
            .prepare_cached("DELETE FROM outbox WHERE status != 'pending' AND finished_at < ?1")?
            .execute([time_sat(before)])?;
        Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
    }
}
