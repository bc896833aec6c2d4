//! The outbox: sealed envelopes to deliver, with their retry schedule.
//!
//! An item is `Pending` until it is delivered (directly or through a relay),
//! fails for good, or expires; only pending items change. Times beyond
//! `i64::MAX` seconds are stored as `i64::MAX` ("never").

use poc_proto::{MessageId, PocId, ThreadId, Timestamp};
use rusqlite::{OptionalExtension, Row, params};

use crate::sql::{
    get_message_id, get_opt_time, get_poc, get_thread_id, get_time, get_u64, int_exact, time_sat,
};
use crate::{NewEntry, Reader, RecordEvent, StoreError, Tx};

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

/// The delivery schedule of a message to send (see [`Tx::record_send`]);
/// everything else about the item comes from its Sent entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOutboxItem {
    /// The envelope's expiry: after it, the item expires undelivered.
    pub expires_at: Timestamp,
    /// The first attempt (usually the message's creation time).
    pub next_attempt_at: Timestamp,
}

/// A stored outbox item. Its message fields are read from its Sent entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Its id: the seq of the message's Sent entry in the record.
    pub id: OutboxId,
    /// The message id.
    pub message_id: MessageId,
    /// The thread id.
    pub thread_id: ThreadId,
    /// The recipient PoC.
    pub recipient: PocId,
    /// The message kind's name.
    pub kind: String,
    /// When it was queued (the Sent entry's time).
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

/// A pending item due for an attempt, with the envelope to hand over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueItem {
    /// The item.
    pub item: OutboxItem,
    /// The sealed envelope, as its Sent entry holds it.
    pub envelope: Vec<u8>,
}

impl OutboxItem {
    fn from_row(row: &Row<'_>) -> Result<OutboxItem, StoreError> {
        let status: String = row.get("status")?;
        Ok(OutboxItem {
            id: OutboxId(row.get("id")?),
            message_id: get_message_id(row, "message_id")?,
            thread_id: get_thread_id(row, "thread_id")?,
            recipient: get_poc(row, "recipient")?,
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

/// An item joined with its Sent entry (`o` the outbox row, `r` the entry).
/// The entry's columns read here sit before its envelope in the row, so
/// listing the outbox does not read envelopes.
macro_rules! item_columns {
    () => {
        "o.id, r.message_id, r.thread_id, r.peer AS recipient, r.kind, r.at AS created_at, \
         o.expires_at, o.next_attempt_at, o.status, o.attempts, o.last_error, \
         o.delivered_via, o.delivered_at, o.finished_at"
    };
}
const COLUMNS: &str = item_columns!();
const JOINED: &str = "outbox o JOIN record r ON r.seq = o.id";

// The delivery loop's statements run on every wake-up, while the outbox
// keeps every finished item until it is pruned: each must reach the pending
// items through `outbox_pending`, never by walking the outbox (see the test
// `the_delivery_loop_reads_only_pending_items`).

const DUE: &str = concat!(
    "SELECT ",
    item_columns!(),
    ", r.envelope FROM outbox o JOIN record r ON r.seq = o.id \
     WHERE o.status = 'pending' AND o.next_attempt_at <= ?1 AND o.expires_at >= ?1 \
       AND r.envelope IS NOT NULL \
     ORDER BY o.next_attempt_at, o.id LIMIT ?2"
);
const NEXT_ATTEMPT: &str = "SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'";
const NEXT_EXPIRY: &str = "SELECT min(expires_at) FROM outbox WHERE status = 'pending'";
// INDEXED BY: left to itself the planner walks the whole outbox in id order
// rather than sort the few pending items it would find.
const EXPIRED: &str = concat!(
    "SELECT ",
    item_columns!(),
    " FROM outbox o INDEXED BY outbox_pending JOIN record r ON r.seq = o.id \
     WHERE o.status = 'pending' AND o.expires_at < ?1 ORDER BY o.id"
);
const EXPIRE: &str = "UPDATE outbox SET status = 'expired', finished_at = ?1 \
     WHERE status = 'pending' AND expires_at < ?1";

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
    /// order), each with its envelope. Expired ones are left for
    /// [`Tx::outbox_expire`]; one whose envelope was purged from the record
    /// (see [`Tx::record_purge_exercise`], which fails it) is never due.
    pub fn outbox_due(&self, now: Timestamp, limit: u32) -> Result<Vec<DueItem>, StoreError> {
        let mut stmt = self.conn.prepare_cached(DUE)?;
        let mut rows = stmt.query(params![time_sat(now), limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(DueItem {
                item: OutboxItem::from_row(row)?,
                envelope: row.get("envelope")?,
            });
        }
        Ok(out)
    }

    /// The item with this id.
    pub fn outbox_get(&self, id: OutboxId) -> Result<Option<OutboxItem>, StoreError> {
        Ok(self
            .outbox_query(
                &format!("SELECT {COLUMNS} FROM {JOINED} WHERE o.id = ?1"),
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
                &format!(
                    "SELECT {COLUMNS} FROM {JOINED} WHERE r.message_id = ?1 AND r.event = 'sent'"
                ),
                [&message_id.0[..]],
            )?
            .into_iter()
            .next())
    }

    /// Every item (with `status`, only those), in queue order.
    pub fn outbox_list(&self, status: Option<OutboxStatus>) -> Result<Vec<OutboxItem>, StoreError> {
        match status {
            Some(status) => self.outbox_query(
                &format!("SELECT {COLUMNS} FROM {JOINED} WHERE o.status = ?1 ORDER BY o.id"),
                [status.as_str()],
            ),
            None => self.outbox_query(&format!("SELECT {COLUMNS} FROM {JOINED} ORDER BY o.id"), []),
        }
    }

    /// The earliest next attempt of any pending item: when the delivery loop
    /// should wake next (see also [`Reader::next_outbox_expiry`]).
    pub fn next_outbox_attempt(&self) -> Result<Option<Timestamp>, StoreError> {
        self.outbox_min(NEXT_ATTEMPT)
    }

    /// The earliest expiry of any pending item: after it,
    /// [`Tx::outbox_expire`] has something to report.
    pub fn next_outbox_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.outbox_min(NEXT_EXPIRY)
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
    /// Appends `sent`, the Sent entry of a sealed message, to the record and
    /// queues its envelope for delivery to the entry's peer, in this
    /// transaction; the item's id is the entry's seq. The envelope is kept
    /// once, in the record: the outbox holds only the schedule.
    ///
    /// Refuses an entry that is not a Sent entry with a recipient, message
    /// and thread ids, a kind and an envelope ([`StoreError::Invalid`]), and
    /// a message id already queued ([`StoreError::OutboxDuplicate`]).
    pub fn record_send(
        &mut self,
        sent: NewEntry,
        item: NewOutboxItem,
    ) -> Result<OutboxId, StoreError> {
        let missing = [
            (sent.event != RecordEvent::Sent, "a Sent event"),
            (sent.message_id.is_none(), "a message id"),
            (sent.peer.is_none(), "a recipient"),
            (sent.thread_id.is_none(), "a thread id"),
            (sent.kind.is_none(), "a kind"),
            (sent.envelope.is_none(), "an envelope"),
        ]
        .into_iter()
        .find_map(|(missing, what)| missing.then_some(what));
        let (Some(message_id), None) = (sent.message_id, missing) else {
            return Err(StoreError::Invalid(format!(
                "a message to send needs {} in its record entry",
                missing.unwrap_or("a message id")
            )));
        };
        let queued: bool = self
            .conn()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM record r JOIN outbox o ON o.id = r.seq \
                 WHERE r.message_id = ?1 AND r.event = 'sent')",
            )?
            .query_row([&message_id.0[..]], |row| row.get(0))?;
        if queued {
            return Err(StoreError::OutboxDuplicate(message_id));
        }
        let entry = self.record_append(sent)?;
        let id = int_exact("record seq", entry.seq)?;
        self.conn()
            .prepare_cached(
                "INSERT INTO outbox (id, expires_at, next_attempt_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                id,
                time_sat(item.expires_at),
                time_sat(item.next_attempt_at),
            ])?;
        Ok(OutboxId(id))
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
        let mut expired = self.outbox_query(EXPIRED, [now_sql])?;
        let changed = self.conn().prepare_cached(EXPIRE)?.execute([now_sql])?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::test_support::plan;

    #[test]
    fn the_delivery_loop_reads_only_pending_items() {
        let store = Store::open_in_memory().unwrap();
        for sql in [DUE, NEXT_ATTEMPT, NEXT_EXPIRY, EXPIRED, EXPIRE] {
            let plan = plan(&store, sql);
            let outbox_steps: Vec<&String> = plan
                .iter()
                .filter(|step| step.contains("outbox") || step.contains(" o "))
                .collect();
            assert!(!outbox_steps.is_empty(), "{sql}: {plan:?}");
            for step in outbox_steps {
                assert!(
                    step.contains("USING INDEX outbox_pending")
                        || step.contains("USING COVERING INDEX outbox_pending"),
                    "{sql}\nwalks the outbox: {plan:?}"
                );
            }
        }
    }
}
