//! `RecordFollow`: the record's new entries, in brief, as they are committed.
//!
//! A long poll without polling: the waiter watches the record head that the
//! store thread publishes after each commit that appended to the record
//! (see [`crate::db`]), and reads the store only once the head has moved
//! past the caller's `after_seq`. While it waits it holds no storage
//! resources (no job queued, no transaction, no statement), only its
//! control connection and a watch receiver; the wait is bounded by
//! [`poc_control::FOLLOW_MAX_WAIT_MS`], below the control socket's idle
//! limit, and ends at once if the caller hangs up (see `control::serve`).

use std::time::Duration;

use poc_control::{ApiError, FOLLOW_MAX_LIMIT, FOLLOW_MAX_WAIT_MS, RecordSummaryView};
use poc_store::RecordSummary;

use crate::db::Db;

/// The summaries of the entries after `after_seq` (at most `limit`),
/// waiting up to `wait_ms` for the first of them to be committed.
pub(crate) async fn follow(
    db: &Db,
    after_seq: u64,
    limit: u32,
    wait_ms: u32,
) -> Result<Vec<RecordSummaryView>, ApiError> {
    let limit = limit.clamp(1, FOLLOW_MAX_LIMIT);
    let wait = Duration::from_millis(u64::from(wait_ms.min(FOLLOW_MAX_WAIT_MS)));
    let mut head = db.record_head();
    // `wait_for` checks the current head first, so entries already there
    // are answered at once (even with a zero wait).
    match tokio::time::timeout(wait, head.wait_for(|seq| *seq > after_seq)).await {
        Err(_) => return Ok(Vec::new()),
        Ok(Err(_)) => {
            return Err(ApiError::new(
                "storage is shut down",
                Some("pocd is stopping; start it again and retry"),
            ));
        }
        Ok(Ok(_)) => {}
    }
    drop(head);
    let page = db
        .run(move |tx| tx.record_summaries(after_seq, limit))
        .await
        .map_err(crate::control::storage)?;
    Ok(page.iter().map(view).collect())
}

fn view(entry: &RecordSummary) -> RecordSummaryView {
    RecordSummaryView {
        seq: entry.seq,
        at: entry.at,
        event: entry.event.as_str().to_owned(),
        peer: entry.peer.clone(),
        message_id: entry.message_id,
        thread_id: entry.thread_id,
        kind: entry.kind.clone(),
        exercise: entry.exercise.clone(),
        detail: entry.detail.clone(),
        purged: entry.purged,
        entry_hash: hex::encode(entry.entry_hash),
    }
}
