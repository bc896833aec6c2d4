//! The record: every message sent, received or rejected, append-only and
//! hash-chained.
//!
//! # Construction (version 1)
//!
//! Integers are little-endian `u64`. An optional field is encoded as
//! `opt(None) = 0x00` and `opt(Some(b)) = 0x01 || u64(len(b)) || b`, where
//! `b` is the field's bytes: a PoC id, kind, exercise or detail as its UTF-8
//! text, a message or thread id as its 16 bytes, a signature as its 64 bytes,
//! an envelope or content as stored.
//!
//! ```text
//! payload_hash = SHA-256("pocnet/v1 record-payload\0"
//!                        || opt(envelope) || opt(content)
//!                        || opt(signature) || opt(detail))
//! body_hash    = SHA-256("pocnet/v1 record-body\0"
//!                        || u64(at) || u8(event)
//!                        || opt(peer) || opt(message_id) || opt(thread_id)
//!                        || opt(kind) || opt(exercise)
//!                        || payload_hash)
//! entry_hash   = SHA-256("pocnet/v1 record\0" || prev_hash || u64(seq) || body_hash)
//! ```
//!
//! `event` is 1 sent, 2 received, 3 rejected, 4 purge, 5 note. `seq` counts
//! from 1; the first entry's `prev_hash` is 32 zero bytes
//! ([`GENESIS_PREV_HASH`]), every later one's is the previous `entry_hash`.
//! The `record_head` row holds the last `(seq, entry_hash)`, updated in the
//! same transaction as the append, so a deleted tail is detected.
//!
//! The body hash covers every field; the purgeable ones (envelope, content,
//! signature, detail) through `payload_hash`. Purging an exercise (see
//! [`Tx::record_purge_exercise`]) sets those four to NULL and keeps
//! `payload_hash`, so the chain still verifies and every other field of a
//! purged entry is still checked. The `purged_by` column (the seq of the Purge
//! entry) is outside the hashes; verification checks it against the Purge
//! entries instead (same exercise, later seq, counts match).
//!
//! The chain makes a partial edit evident. Someone able to write the file can
//! still rewrite the whole chain from some point on, recomputing every hash:
//! anchor the head outside the node (export it, sign it, send it to a peer)
//! to detect that too.

use poc_proto::{MessageId, PocId, ThreadId, Timestamp};
use ring::digest::{Context, SHA256};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, params};

use crate::sql::{get_array, get_opt_array, get_opt_poc, get_time, get_u64, int_exact, time_sat};
use crate::{Reader, StoreError, Tx};

/// The `prev_hash` of the first entry.
pub const GENESIS_PREV_HASH: [u8; 32] = [0; 32];

const LABEL_PAYLOAD: &[u8] = b"pocnet/v1 record-payload\0";
const LABEL_BODY: &[u8] = b"pocnet/v1 record-body\0";
const LABEL_ENTRY: &[u8] = b"pocnet/v1 record\0";

/// How far from its position verification looks for the seq a moved entry
/// was written with.
const REORDER_WINDOW: u64 = 1024;

/// For how many entries verification looks for the seq they were written
/// with (up to 2 * [`REORDER_WINDOW`] hashes each). Past that an entry whose
/// own hash does not match is reported as edited: on a record where every
/// entry moved, looking for each would take hours and hold the store.
const REORDER_SEARCHES: u32 = 64;

/// What a record entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordEvent {
    /// A message this node sealed and handed to the outbox.
    Sent,
    /// A message received, opened and accepted.
    Received,
    /// An envelope received and refused (`detail` says why).
    Rejected,
    /// An exercise's payloads were purged (`exercise` names it, `detail`
    /// says how many entries: `purged N entries`).
    Purge,
    /// Anything else worth keeping (operator note, key rotation, start-up).
    Note,
}

impl RecordEvent {
    /// All events.
    pub const ALL: [RecordEvent; 5] = [
        RecordEvent::Sent,
        RecordEvent::Received,
        RecordEvent::Rejected,
        RecordEvent::Purge,
        RecordEvent::Note,
    ];

    /// The name stored in the database: `sent`, `received`, `rejected`,
    /// `purge`, `note`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordEvent::Sent => "sent",
            RecordEvent::Received => "received",
            RecordEvent::Rejected => "rejected",
            RecordEvent::Purge => "purge",
            RecordEvent::Note => "note",
        }
    }

    /// The byte hashed into `body_hash`.
    pub fn code(self) -> u8 {
        match self {
            RecordEvent::Sent => 1,
            RecordEvent::Received => 2,
            RecordEvent::Rejected => 3,
            RecordEvent::Purge => 4,
            RecordEvent::Note => 5,
        }
    }

    /// Parses [`RecordEvent::as_str`].
    pub fn from_name(name: &str) -> Option<RecordEvent> {
        RecordEvent::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for RecordEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry to append. Start from [`NewEntry::new`] and set the fields that
/// apply with struct update syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// When it happened (node clock).
    pub at: Timestamp,
    /// What happened.
    pub event: RecordEvent,
    /// The other PoC: recipient of a sent message, sender of a received one.
    pub peer: Option<PocId>,
    /// The message id.
    pub message_id: Option<MessageId>,
    /// The thread id.
    pub thread_id: Option<ThreadId>,
    /// The message kind's name (e.g. `MessageKind::to_string()`).
    pub kind: Option<String>,
    /// The exercise id, for exercise traffic.
    pub exercise: Option<String>,
    /// The sealed envelope bytes.
    pub envelope: Option<Vec<u8>>,
    /// The signed content bytes.
    pub content: Option<Vec<u8>>,
    /// The Ed25519 signature over the content.
    pub signature: Option<[u8; 64]>,
    /// Free text: a rejection reason, a note.
    pub detail: Option<String>,
}

impl NewEntry {
    /// An entry with only a time and an event.
    pub fn new(at: Timestamp, event: RecordEvent) -> NewEntry {
        NewEntry {
            at,
            event,
            peer: None,
            message_id: None,
            thread_id: None,
            kind: None,
            exercise: None,
            envelope: None,
            content: None,
            signature: None,
            detail: None,
        }
    }

    /// The entry's `payload_hash` (see the module documentation).
    pub fn payload_hash(&self) -> [u8; 32] {
        payload_hash(&self.payload_view())
    }

    /// The entry's `body_hash` given its `payload_hash`.
    pub fn body_hash(&self, payload_hash: &[u8; 32]) -> [u8; 32] {
        body_hash(&self.fields_view(), payload_hash)
    }

    fn fields_view(&self) -> Fields<'_> {
        Fields {
            at: self.at.0,
            event: self.event.code(),
            peer: self.peer.as_ref().map(|p| p.as_str().as_bytes()),
            message_id: self.message_id.as_ref().map(|id| &id.0[..]),
            thread_id: self.thread_id.as_ref().map(|id| &id.0[..]),
            kind: self.kind.as_deref().map(str::as_bytes),
            exercise: self.exercise.as_deref().map(str::as_bytes),
        }
    }

    fn payload_view(&self) -> Payload<'_> {
        Payload {
            envelope: self.envelope.as_deref(),
            content: self.content.as_deref(),
            signature: self.signature.as_ref().map(|s| &s[..]),
            detail: self.detail.as_deref().map(str::as_bytes),
        }
    }
}

/// A stored record entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEntry {
    /// Position in the record, from 1.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub event: RecordEvent,
    /// The other PoC.
    pub peer: Option<PocId>,
    /// The message id.
    pub message_id: Option<MessageId>,
    /// The thread id.
    pub thread_id: Option<ThreadId>,
    /// The message kind's name.
    pub kind: Option<String>,
    /// The exercise id.
    pub exercise: Option<String>,
    /// The sealed envelope (`None` once purged).
    pub envelope: Option<Vec<u8>>,
    /// The signed content (`None` once purged).
    pub content: Option<Vec<u8>>,
    /// The signature (`None` once purged).
    pub signature: Option<[u8; 64]>,
    /// Free text (`None` once purged).
    pub detail: Option<String>,
    /// The seq of the Purge entry that removed the payload, if purged.
    pub purged_by: Option<u64>,
    /// Hash of the payload fields, kept through a purge.
    pub payload_hash: [u8; 32],
    /// Hash of all fields.
    pub body_hash: [u8; 32],
    /// The previous entry's `entry_hash`.
    pub prev_hash: [u8; 32],
    /// This entry's chain hash.
    pub entry_hash: [u8; 32],
}

impl RecordEntry {
    /// Whether the payload was purged.
    pub fn is_purged(&self) -> bool {
        self.purged_by.is_some()
    }

    /// The entry's fields as a [`NewEntry`] (e.g. to recompute hashes of an
    /// exported entry).
    pub fn to_new_entry(&self) -> NewEntry {
        NewEntry {
            at: self.at,
            event: self.event,
            peer: self.peer.clone(),
            message_id: self.message_id,
            thread_id: self.thread_id,
            kind: self.kind.clone(),
            exercise: self.exercise.clone(),
            envelope: self.envelope.clone(),
            content: self.content.clone(),
            signature: self.signature,
            detail: self.detail.clone(),
        }
    }

    fn from_row(row: &Row<'_>) -> Result<RecordEntry, StoreError> {
        let event = get_event(row)?;
        Ok(RecordEntry {
            seq: get_u64(row, "seq")?,
            at: get_time(row, "at")?,
            event,
            peer: get_opt_poc(row, "peer")?,
            message_id: get_opt_array(row, "message_id")?.map(MessageId),
            thread_id: get_opt_array(row, "thread_id")?.map(ThreadId),
            kind: row.get("kind")?,
            exercise: row.get("exercise")?,
            envelope: row.get("envelope")?,
            content: row.get("content")?,
            signature: get_opt_array(row, "signature")?,
            detail: row.get("detail")?,
            purged_by: row
                .get::<_, Option<i64>>("purged_by")?
                .map(|p| u64::try_from(p).map_err(|_| StoreError::corrupt("negative purged_by")))
                .transpose()?,
            payload_hash: get_array(row, "payload_hash")?,
            body_hash: get_array(row, "body_hash")?,
            prev_hash: get_array(row, "prev_hash")?,
            entry_hash: get_array(row, "entry_hash")?,
        })
    }
}

fn get_event(row: &Row<'_>) -> Result<RecordEvent, StoreError> {
    let event: String = row.get("event")?;
    RecordEvent::from_name(&event)
        .ok_or_else(|| StoreError::corrupt(format!("unknown record event {event:?}")))
}

/// A record entry without its payload (envelope, content, signature) and
/// without the hashes other than its own: what a live view of the record
/// needs, read by [`Reader::record_summaries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    /// Position in the record, from 1.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub event: RecordEvent,
    /// The other PoC.
    pub peer: Option<PocId>,
    /// The message id.
    pub message_id: Option<MessageId>,
    /// The thread id.
    pub thread_id: Option<ThreadId>,
    /// The message kind's name.
    pub kind: Option<String>,
    /// The exercise id.
    pub exercise: Option<String>,
    /// Free text: a rejection reason, a note (`None` once purged).
    pub detail: Option<String>,
    /// Whether the payload was purged.
    pub purged: bool,
    /// This entry's chain hash.
    pub entry_hash: [u8; 32],
}

impl RecordSummary {
    fn from_row(row: &Row<'_>) -> Result<RecordSummary, StoreError> {
        let event = get_event(row)?;
        Ok(RecordSummary {
            seq: get_u64(row, "seq")?,
            at: get_time(row, "at")?,
            event,
            peer: get_opt_poc(row, "peer")?,
            message_id: get_opt_array(row, "message_id")?.map(MessageId),
            thread_id: get_opt_array(row, "thread_id")?.map(ThreadId),
            kind: row.get("kind")?,
            exercise: row.get("exercise")?,
            detail: row.get("detail")?,
            purged: row.get("purged")?,
            entry_hash: get_array(row, "entry_hash")?,
        })
    }
}

/// The last entry of the record, as kept in the `record_head` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    /// The last entry's seq (the number of entries appended).
    pub seq: u64,
    /// The last entry's `entry_hash`.
    pub entry_hash: [u8; 32],
}

/// What [`Reader::record_verify`] found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The entry's stored fields do not match its hashes: a column was
    /// changed (content, time, peer, ...), or a column has an impossible
    /// value.
    Edited,
    /// Entries are missing at this seq (deleted rows).
    Missing,
    /// The entry is stored at another position than it was written at
    /// (rows swapped or moved).
    Reordered,
    /// The entry and its predecessor are each consistent but do not link:
    /// one of them was rewritten with recomputed hashes.
    BrokenLink,
    /// Entries at the end were deleted (the head names a later entry).
    TruncatedTail,
    /// The head row does not match the last entry (missing head, last entry
    /// replaced, or entries added behind the store's back).
    HeadMismatch,
    /// A purged entry is not covered by a matching later Purge entry, or a
    /// Purge entry's count does not match the entries it covers.
    PurgeInvalid,
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Missing => "missing",
            ProblemKind::Reordered => "reordered",
            ProblemKind::BrokenLink => "broken link",
            ProblemKind::TruncatedTail => "truncated tail",
            ProblemKind::HeadMismatch => "head mismatch",
            ProblemKind::PurgeInvalid => "invalid purge",
        })
    }
}

/// One problem found by [`Reader::record_verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordProblem {
    /// The entry concerned (for a gap, the first missing seq).
    pub seq: u64,
    /// What is wrong.
    pub kind: ProblemKind,
    /// Human-readable detail.
    pub detail: String,
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry #{}: {}: {}", self.seq, self.kind, self.detail)
    }
}

/// The result of verifying the whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many entries are stored.
    pub entries: u64,
    /// The stored head (`None` for an empty record).
    pub head: Option<RecordHead>,
    /// Everything found wrong, in seq order (purge problems last).
    pub problems: Vec<RecordProblem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The head's entry hash (all zeros for an empty record): the value to
    /// anchor outside the node.
    pub fn head_hash(&self) -> [u8; 32] {
        self.head.map_or(GENESIS_PREV_HASH, |h| h.entry_hash)
    }
}

// ---------------------------------------------------------------------------
// Hashing

struct Fields<'a> {
    at: u64,
    event: u8,
    peer: Option<&'a [u8]>,
    message_id: Option<&'a [u8]>,
    thread_id: Option<&'a [u8]>,
    kind: Option<&'a [u8]>,
    exercise: Option<&'a [u8]>,
}

struct Payload<'a> {
    envelope: Option<&'a [u8]>,
    content: Option<&'a [u8]>,
    signature: Option<&'a [u8]>,
    detail: Option<&'a [u8]>,
}

impl Payload<'_> {
    fn is_empty(&self) -> bool {
        self.envelope.is_none()
            && self.content.is_none()
            && self.signature.is_none()
            && self.detail.is_none()
    }
}

fn put_opt(ctx: &mut Context, field: Option<&[u8]>) {
    match field {
        None => ctx.update(&[0]),
        Some(bytes) => {
            ctx.update(&[1]);
            // usize always fits u64 on supported targets.
            ctx.update(&u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_le_bytes());
            ctx.update(bytes);
        }
    }
}

fn finish(ctx: Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn payload_hash(p: &Payload<'_>) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(LABEL_PAYLOAD);
    put_opt(&mut ctx, p.envelope);
    put_opt(&mut ctx, p.content);
    put_opt(&mut ctx, p.signature);
    put_opt(&mut ctx, p.detail);
    finish(ctx)
}

fn body_hash(f: &Fields<'_>, payload_hash: &[u8; 32]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(LABEL_BODY);
    ctx.update(&f.at.to_le_bytes());
    ctx.update(&[f.event]);
    put_opt(&mut ctx, f.peer);
    put_opt(&mut ctx, f.message_id);
    put_opt(&mut ctx, f.thread_id);
    put_opt(&mut ctx, f.kind);
    put_opt(&mut ctx, f.exercise);
    ctx.update(payload_hash);
    finish(ctx)
}

/// `entry_hash = SHA-256("pocnet/v1 record\0" || prev_hash || u64le(seq) || body_hash)`.
pub fn entry_hash(prev_hash: &[u8; 32], seq: u64, body_hash: &[u8; 32]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    ctx.update(LABEL_ENTRY);
    ctx.update(prev_hash);
    ctx.update(&seq.to_le_bytes());
    ctx.update(body_hash);
    finish(ctx)
}

// ---------------------------------------------------------------------------
// Queries

pub(crate) const COLUMNS: &str = "seq, at, event, peer, message_id, thread_id, kind, exercise, \
     envelope, content, signature, detail, purged_by, payload_hash, body_hash, prev_hash, entry_hash";

impl Reader<'_> {
    /// The head: last seq and entry hash (`None` while the record is empty).
    pub fn record_head(&self) -> Result<Option<RecordHead>, StoreError> {
        let row = self
            .conn
            .prepare_cached("SELECT seq, entry_hash FROM record_head WHERE id = 1")?
            .query_row([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        row.map(|(seq, hash)| {
            Ok(RecordHead {
                seq: u64::try_from(seq).map_err(|_| StoreError::corrupt("negative record head"))?,
                entry_hash: hash
                    .try_into()
                    .map_err(|_| StoreError::corrupt("record head hash is not 32 bytes"))?,
            })
        })
        .transpose()
    }

    /// The entry at `seq`.
    pub fn record_get(&self, seq: u64) -> Result<Option<RecordEntry>, StoreError> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM record WHERE seq = ?1"))?;
        let mut rows = stmt.query([seq])?;
        rows.next()?.map(RecordEntry::from_row).transpose()
    }

    /// Every entry of a thread, in record order.
    pub fn record_thread(&self, thread_id: ThreadId) -> Result<Vec<RecordEntry>, StoreError> {
        self.record_query(
            &format!("SELECT {COLUMNS} FROM record WHERE thread_id = ?1 ORDER BY seq"),
            params![&thread_id.0[..]],
        )
    }

    /// The first entry of `event` about message `message_id` with peer
    /// `peer`, if any. For deduplication, ask for
    /// [`RecordEvent::Received`]: a message that was only rejected before
    /// may still be accepted.
    pub fn record_find_message(
        &self,
        peer: &PocId,
        message_id: MessageId,
        event: RecordEvent,
    ) -> Result<Option<RecordEntry>, StoreError> {
        let found = self.record_query(
            &format!(
                "SELECT {COLUMNS} FROM record \
                 WHERE message_id = ?1 AND peer = ?2 AND event = ?3 ORDER BY seq LIMIT 1"
            ),
            params![&message_id.0[..], peer.as_str(), event.as_str()],
        )?;
        Ok(found.into_iter().next())
    }

    /// Up to `limit` entries with seq greater than `after_seq`, in order:
    /// page through the record with `after_seq` = the last seq seen (0 to
    /// start).
    pub fn record_page(&self, after_seq: u64, limit: u32) -> Result<Vec<RecordEntry>, StoreError> {
        let Ok(after) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        self.record_query(
            &format!("SELECT {COLUMNS} FROM record WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
            params![after, limit],
        )
    }

    /// Like [`Reader::record_page`], but only the [`RecordSummary`] of each
    /// entry: the envelope, content and signature columns (kilobytes per
    /// message) are neither copied out nor returned, so following the
    /// record live costs little per entry.
    pub fn record_summaries(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<RecordSummary>, StoreError> {
        let Ok(after) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, at, event, peer, message_id, thread_id, kind, exercise, detail, \
                    purged_by IS NOT NULL AS purged, entry_hash \
             FROM record WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![after, limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(RecordSummary::from_row(row)?);
        }
        Ok(out)
    }

    fn record_query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<RecordEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(RecordEntry::from_row(row)?);
        }
        Ok(out)
    }

    /// Recomputes every hash and link of the record and reports which
    /// entries are wrong. Reads the whole record once (one row in memory at a
    /// time); a storage error is an `Err`, a tampered entry is a problem in
    /// the report.
    pub fn record_verify(&self) -> Result<VerifyReport, StoreError> {
        let head = self.record_head();
        let mut v = Verifier::default();
        {
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT {COLUMNS} FROM record ORDER BY seq"))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let raw = RawRow::read(row)?;
                v.check(&raw);
            }
        }
        let head = match head {
            Ok(head) => {
                v.check_head(head.as_ref());
                head
            }
            Err(error) => {
                v.problem(
                    v.last_seq,
                    ProblemKind::HeadMismatch,
                    format!("head row unreadable: {error}"),
                );
                None
            }
        };
        self.check_purges(&mut v)?;
        Ok(VerifyReport {
            entries: v.entries,
            head,
            problems: v.problems,
        })
    }

    fn check_purges(&self, v: &mut Verifier) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.seq, r.purged_by, r.event, r.exercise, p.seq, p.event, p.exercise \
             FROM record r LEFT JOIN record p ON p.seq = r.purged_by \
             WHERE r.purged_by IS NOT NULL ORDER BY r.seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let seq = u64::try_from(seq).unwrap_or(0);
            let purged_by: Value = row.get(1)?;
            let event: Value = row.get(2)?;
            let exercise: Value = row.get(3)?;
            let purge_seq: Option<i64> = row.get(4)?;
            let purge_event: Value = row.get(5)?;
            let purge_exercise: Value = row.get(6)?;
            let by = match &purged_by {
                Value::Integer(by) => *by,
                _ => {
                    v.problem(
                        seq,
                        ProblemKind::PurgeInvalid,
                        "purged_by is not an integer",
                    );
                    continue;
                }
            };
            let reason = if purge_seq.is_none() {
                Some(format!(
                    "marked purged by entry #{by}, which does not exist"
                ))
            } else if event == Value::Text("purge".into()) {
                Some("a Purge entry is marked purged".to_owned())
            } else if purge_event != Value::Text("purge".into()) {
                Some(format!(
                    "marked purged by entry #{by}, which is not a Purge entry"
                ))
            } else if by <= i64::try_from(seq).unwrap_or(i64::MAX) {
                Some(format!("marked purged by earlier entry #{by}"))
            } else if !matches!(exercise, Value::Text(_)) || exercise != purge_exercise {
                Some(format!(
                    "marked purged by entry #{by}, which purged another exercise"
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                v.problem(seq, ProblemKind::PurgeInvalid, reason);
            }
        }
        drop(rows);
        let mut stmt = self.conn.prepare(
            "SELECT p.seq, p.detail, (SELECT count(*) FROM record r WHERE r.purged_by = p.seq) \
             FROM record p WHERE p.event = 'purge' ORDER BY p.seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let seq = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
            let detail: Value = row.get(1)?;
            let covered: i64 = row.get(2)?;
            let stated = match &detail {
                Value::Text(text) => parse_purge_detail(text),
                _ => None,
            };
            match stated {
                None => v.problem(
                    seq,
                    ProblemKind::PurgeInvalid,
                    "Purge entry without a `purged N entries` count",
                ),
                Some(n) if i64::try_from(n).ok() != Some(covered) => v.problem(
                    seq,
                    ProblemKind::PurgeInvalid,
                    format!("Purge entry says {n} entries were purged, {covered} are marked"),
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

fn purge_detail(count: u64) -> String {
    format!("purged {count} entries")
}

fn parse_purge_detail(detail: &str) -> Option<u64> {
    detail
        .strip_prefix("purged ")?
        .strip_suffix(" entries")?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------
// Changes

impl Tx<'_> {
    /// Appends an entry to the record and moves the head to it.
    ///
    /// The seq and `prev_hash` come from the head row, never from the last
    /// stored row, so entries appended after a deleted tail keep the
    /// deletion evident. Refuses to append (as [`StoreError::Corrupt`]) when
    /// the head row is missing while entries exist, or entries exist past
    /// the head.
    ///
    /// Purge entries are written only by [`Tx::record_purge_exercise`]
    /// ([`StoreError::Invalid`] here).
    pub fn record_append(&mut self, entry: NewEntry) -> Result<RecordEntry, StoreError> {
        if entry.event == RecordEvent::Purge {
            return Err(StoreError::Invalid(
                "Purge entries are appended by record_purge_exercise only".into(),
            ));
        }
        self.append(entry)
    }

    fn append(&mut self, entry: NewEntry) -> Result<RecordEntry, StoreError> {
        let at = int_exact("record time", entry.at.0)?;
        let head = self.record_head()?;
        let (seq, prev_hash) = match head {
            Some(head) => (
                head.seq
                    .checked_add(1)
                    .ok_or_else(|| StoreError::corrupt("record seq overflow"))?,
                head.entry_hash,
            ),
            None => (1, GENESIS_PREV_HASH),
        };
        let seq_sql = int_exact("record seq", seq)?;
        // Cached: this runs on every append, and preparing it each time cost
        // ~2.5 % of all CPU in poc-bench's concurrency-64 run.
        let beyond: bool = self
            .conn()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM record WHERE seq >= ?1)")?
            .query_row([seq_sql], |row| row.get(0))?;
        if beyond {
            return Err(StoreError::corrupt(format!(
                "the record has entries at or after #{seq} but its head says #{}: run the record verification",
                seq - 1
            )));
        }
        let payload_hash = entry.payload_hash();
        let body_hash = entry.body_hash(&payload_hash);
        let entry_hash = entry_hash(&prev_hash, seq, &body_hash);
        self.conn()
            .prepare_cached(&format!(
                "INSERT INTO record ({COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL, ?13, ?14, ?15, ?16)"
            ))?
            .execute(params![
                seq_sql,
                at,
                entry.event.as_str(),
                entry.peer.as_ref().map(PocId::as_str),
                entry.message_id.as_ref().map(|id| &id.0[..]),
                entry.thread_id.as_ref().map(|id| &id.0[..]),
                entry.kind,
                entry.exercise,
                entry.envelope,
                entry.content,
                entry.signature.as_ref().map(|s| &s[..]),
                entry.detail,
                &payload_hash[..],
                &body_hash[..],
                &prev_hash[..],
                &entry_hash[..],
            ])?;
        self.conn()
            .prepare_cached(
                "INSERT INTO record_head (id, seq, entry_hash) VALUES (1, ?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, entry_hash = excluded.entry_hash",
            )?
            .execute(params![seq_sql, &entry_hash[..]])?;
        self.appended = Some(seq);
        Ok(RecordEntry {
            seq,
            at: entry.at,
            event: entry.event,
            peer: entry.peer,
            message_id: entry.message_id,
            thread_id: entry.thread_id,
            kind: entry.kind,
            exercise: entry.exercise,
            envelope: entry.envelope,
            content: entry.content,
            signature: entry.signature,
            detail: entry.detail,
            purged_by: None,
            payload_hash,
            body_hash,
            prev_hash,
            entry_hash,
        })
    }

    /// Purges an exercise: appends a Purge entry (`exercise` set, `detail` =
    /// `purged N entries`), then sets envelope, content, signature and detail
    /// to NULL in the N earlier, not yet purged entries of that exercise
    /// (Purge entries excepted), marking them `purged_by` the new entry.
    /// Their hashes stay, so the chain still verifies. Returns N.
    ///
    /// With `secure_delete=ON` and the WAL truncated after the commit (done
    /// by [`crate::Store::transaction`]), the purged bytes leave the files.
    pub fn record_purge_exercise(
        &mut self,
        exercise: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let count: i64 = self.conn().query_row(
            "SELECT count(*) FROM record \
             WHERE exercise = ?1 AND event != 'purge' AND purged_by IS NULL",
            [exercise],
            |row| row.get(0),
        )?;
        let count = u64::try_from(count).unwrap_or(0);
        let purge = self.append(NewEntry {
            exercise: Some(exercise.to_owned()),
            detail: Some(purge_detail(count)),
            ..NewEntry::new(at, RecordEvent::Purge)
        })?;
        let purge_seq = int_exact("record seq", purge.seq)?;
        let changed = self.conn().execute(
            "UPDATE record SET envelope = NULL, content = NULL, signature = NULL, detail = NULL, \
                 purged_by = ?1 \
             WHERE exercise = ?2 AND event != 'purge' AND purged_by IS NULL AND seq < ?1",
            params![purge_seq, exercise],
        )?;
        if u64::try_from(changed).ok() != Some(count) {
            return Err(StoreError::corrupt(format!(
                "purge of {exercise:?}: counted {count} entries, changed {changed}"
            )));
        }
        // An undelivered message of the exercise lost its envelope with the
        // purge: it can no longer be sent, and says so.
        self.conn().execute(
            "UPDATE outbox SET status = 'failed', finished_at = ?2, \
                 last_error = 'the exercise was purged before delivery' \
             WHERE status = 'pending' AND id IN (SELECT seq FROM record WHERE purged_by = ?1)",
            params![purge_seq, time_sat(at)],
        )?;
        self.wipe_after_commit();
        Ok(count)
    }
}

// ---------------------------------------------------------------------------
// Verification

/// One record row exactly as stored, types unchecked.
struct RawRow {
    seq: i64,
    at: Value,
    event: Value,
    peer: Value,
    message_id: Value,
    thread_id: Value,
    kind: Value,
    exercise: Value,
    envelope: Value,
    content: Value,
    signature: Value,
    detail: Value,
    purged_by: Value,
    payload_hash: Value,
    body_hash: Value,
    prev_hash: Value,
    entry_hash: Value,
}

impl RawRow {
    fn read(row: &Row<'_>) -> Result<RawRow, StoreError> {
        Ok(RawRow {
            seq: row.get("seq")?,
            at: row.get("at")?,
            event: row.get("event")?,
            peer: row.get("peer")?,
            message_id: row.get("message_id")?,
            thread_id: row.get("thread_id")?,
            kind: row.get("kind")?,
            exercise: row.get("exercise")?,
            envelope: row.get("envelope")?,
            content: row.get("content")?,
            signature: row.get("signature")?,
            detail: row.get("detail")?,
            purged_by: row.get("purged_by")?,
            payload_hash: row.get("payload_hash")?,
            body_hash: row.get("body_hash")?,
            prev_hash: row.get("prev_hash")?,
            entry_hash: row.get("entry_hash")?,
        })
    }
}

fn opt_text<'a>(value: &'a Value, column: &str) -> Result<Option<&'a [u8]>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Text(text) => Ok(Some(text.as_bytes())),
        _ => Err(format!("{column} is not text")),
    }
}

fn opt_blob<'a>(
    value: &'a Value,
    column: &str,
    len: Option<usize>,
) -> Result<Option<&'a [u8]>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Blob(bytes) if len.is_none_or(|n| n == bytes.len()) => Ok(Some(bytes)),
        _ => Err(format!("{column} is not a blob of the right size")),
    }
}

fn hash32(value: &Value, column: &str) -> Result<[u8; 32], String> {
    match value {
        Value::Blob(bytes) => bytes
            .as_slice()
            .try_into()
            .map_err(|_| format!("{column} is not 32 bytes")),
        _ => Err(format!("{column} is not a blob")),
    }
}

/// The checked views of one row.
struct Decoded<'a> {
    fields: Fields<'a>,
    payload: Payload<'a>,
    purged: bool,
    payload_hash: [u8; 32],
    body_hash: [u8; 32],
    prev_hash: [u8; 32],
    entry_hash: [u8; 32],
}

fn decode(raw: &RawRow) -> Result<Decoded<'_>, String> {
    let at = match raw.at {
        Value::Integer(at) => u64::try_from(at).map_err(|_| "negative time".to_owned())?,
        _ => return Err("at is not an integer".into()),
    };
    let event = match &raw.event {
        Value::Text(name) => RecordEvent::from_name(name)
            .ok_or_else(|| format!("unknown event {name:?}"))?
            .code(),
        _ => return Err("event is not text".into()),
    };
    let purged = match raw.purged_by {
        Value::Null => false,
        Value::Integer(_) => true,
        _ => return Err("purged_by is not an integer".into()),
    };
    Ok(Decoded {
        fields: Fields {
            at,
            event,
            peer: opt_text(&raw.peer, "peer")?,
            message_id: opt_blob(&raw.message_id, "message_id", Some(16))?,
            thread_id: opt_blob(&raw.thread_id, "thread_id", Some(16))?,
            kind: opt_text(&raw.kind, "kind")?,
            exercise: opt_text(&raw.exercise, "exercise")?,
        },
        payload: Payload {
            envelope: opt_blob(&raw.envelope, "envelope", None)?,
            content: opt_blob(&raw.content, "content", None)?,
            signature: opt_blob(&raw.signature, "signature", Some(64))?,
            detail: opt_text(&raw.detail, "detail")?,
        },
        purged,
        payload_hash: hash32(&raw.payload_hash, "payload_hash")?,
        body_hash: hash32(&raw.body_hash, "body_hash")?,
        prev_hash: hash32(&raw.prev_hash, "prev_hash")?,
        entry_hash: hash32(&raw.entry_hash, "entry_hash")?,
    })
}

#[derive(Default)]
struct Verifier {
    entries: u64,
    problems: Vec<RecordProblem>,
    /// Seq of the last row seen (0 before the first).
    last_seq: u64,
    /// That row's stored entry hash, if readable.
    last_hash: Option<[u8; 32]>,
    /// Whether a problem was already reported for that row.
    last_flagged: bool,
    /// How many entries were looked for in other positions.
    searches: u32,
}

impl Verifier {
    fn problem(&mut self, seq: u64, kind: ProblemKind, detail: impl Into<String>) {
        self.problems.push(RecordProblem {
            seq,
            kind,
            detail: detail.into(),
        });
    }

    fn check(&mut self, raw: &RawRow) {
        self.entries += 1;
        let Ok(seq) = u64::try_from(raw.seq) else {
            self.problem(
                0,
                ProblemKind::Edited,
                format!("entry stored with seq {}", raw.seq),
            );
            return;
        };
        if seq == 0 {
            self.problem(0, ProblemKind::Edited, "entry stored with seq 0");
            return;
        }
        let expected = self.last_seq + 1;
        let gap_before = seq > expected;
        if gap_before {
            let detail = if seq - expected == 1 {
                format!("entry #{expected} was deleted")
            } else {
                format!("entries #{expected} to #{} were deleted", seq - 1)
            };
            self.problem(expected, ProblemKind::Missing, detail);
        }
        let flagged = self.check_entry(seq, raw, gap_before);
        self.last_seq = seq;
        self.last_hash = hash32(&raw.entry_hash, "entry_hash").ok();
        self.last_flagged = flagged;
    }

    /// Checks one entry; returns whether a problem was reported for it.
    fn check_entry(&mut self, seq: u64, raw: &RawRow, gap_before: bool) -> bool {
        let row = match decode(raw) {
            Ok(row) => row,
            Err(reason) => {
                self.problem(seq, ProblemKind::Edited, reason);
                return true;
            }
        };
        // A purged entry keeps its payload hash; anything else recomputes it.
        let payload_hash = if row.purged && row.payload.is_empty() {
            row.payload_hash
        } else {
            let computed = payload_hash(&row.payload);
            if computed != row.payload_hash {
                self.problem(
                    seq,
                    ProblemKind::Edited,
                    "envelope, content, signature or detail changed (payload hash mismatch)",
                );
                return true;
            }
            computed
        };
        let body = body_hash(&row.fields, &payload_hash);
        if body != row.body_hash {
            self.problem(
                seq,
                ProblemKind::Edited,
                "time, event, peer, ids, kind or exercise changed (body hash mismatch)",
            );
            return true;
        }
        let self_ok = entry_hash(&row.prev_hash, seq, &body) == row.entry_hash;
        if !self_ok {
            let searched = self.searches < REORDER_SEARCHES;
            let written_as = if searched {
                self.searches += 1;
                let low = seq.saturating_sub(REORDER_WINDOW).max(1);
                let high = seq.saturating_add(REORDER_WINDOW);
                (low..=high)
                    .filter(|&k| k != seq)
                    .find(|&k| entry_hash(&row.prev_hash, k, &body) == row.entry_hash)
            } else {
                None
            };
            let unsearched = if searched {
                ""
            } else {
                "; too many damaged entries to look for where this one was written"
            };
            match written_as {
                Some(k) => self.problem(
                    seq,
                    ProblemKind::Reordered,
                    format!("entry written as #{k} is stored at #{seq}"),
                ),
                None => self.problem(
                    seq,
                    ProblemKind::Edited,
                    format!(
                        "seq, prev_hash or entry_hash changed (entry hash mismatch{unsearched})"
                    ),
                ),
            }
            return true;
        }
        let expected_prev = if seq == 1 {
            Some(GENESIS_PREV_HASH)
        } else if self.last_seq == seq - 1 {
            self.last_hash
        } else {
            None
        };
        let link_ok = expected_prev == Some(row.prev_hash);
        // A link into a gap, or to an entry already reported, adds nothing.
        let explained = link_ok || gap_before || (seq > 1 && self.last_flagged);
        if !explained {
            self.problem(
                seq,
                ProblemKind::BrokenLink,
                format!(
                    "does not link to entry #{}: one of the two was rewritten",
                    seq - 1
                ),
            );
            return true;
        }
        false
    }

    fn check_head(&mut self, head: Option<&RecordHead>) {
        let last = self.last_seq;
        match head {
            None if self.entries == 0 => {}
            None => self.problem(last, ProblemKind::HeadMismatch, "the head row is missing"),
            Some(head) if head.seq > last => {
                let first = last + 1;
                let detail = if head.seq == first {
                    format!("entry #{first}, the last one, was deleted")
                } else {
                    format!("entries #{first} to #{} at the end were deleted", head.seq)
                };
                self.problem(first, ProblemKind::TruncatedTail, detail);
            }
            Some(head) if head.seq < last => self.problem(
                head.seq + 1,
                ProblemKind::HeadMismatch,
                format!(
                    "entries #{} to #{last} lie beyond the head: added outside the store",
                    head.seq + 1
                ),
            ),
            Some(head) => {
                if self.last_hash != Some(head.entry_hash) {
                    self.problem(
                        last,
                        ProblemKind::HeadMismatch,
                        "the last entry is not the one the head names: replaced",
                    );
                }
            }
        }
    }
}
