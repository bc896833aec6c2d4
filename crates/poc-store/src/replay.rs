//! Replay detection: a message already received is in the record.
//!
//! The record keeps every entry, and `record_by_message` indexes it by
//! message id, so no separate table of seen `(sender, message id)` pairs is
//! needed. A daemon opens an envelope with a replay cache that accepts
//! everything, then, inside the transaction that would record it, asks
//! [`Reader::record_received_from`]: the check and the Received entry that
//! answers it later commit together, so a crash cannot separate them.

use poc_proto::{MessageId, PocId};
use rusqlite::params;

use crate::{Reader, StoreError};

/// Runs for every envelope received, against a record that only grows: it
/// must go through `record_by_message`.
const RECEIVED_FROM: &str = "SELECT EXISTS (SELECT 1 FROM record \
     WHERE message_id = ?1 AND peer = ?2 AND event = 'received')";

impl Reader<'_> {
    /// Whether the record holds a Received entry of message `id` from
    /// `sender` (purged or not: a purge keeps ids and senders).
    pub fn record_received_from(&self, sender: &PocId, id: MessageId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(RECEIVED_FROM)?
            .query_row(params![&id.0[..], sender.as_str()], |row| row.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::test_support::plan;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_replay_check_looks_up_the_message_id() {
        let plan = plan(&Store::open_in_memory().unwrap(), RECEIVED_FROM);
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX record_by_message")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN record")),
            "{plan:?}"
        );
    }
}
