//! Conversions between protocol types and SQLite values.
//!
//! SQLite integers are signed 64-bit. Times in the record and sequence
//! numbers must fit (an error otherwise); schedule times (outbox, replay,
//! prekey validity) saturate at `i64::MAX`, which is "never" in practice.
//! Random 64-bit ids (prekey ids) are stored bit for bit.

use poc_proto::{MessageId, PocId, ThreadId, Timestamp};
use rusqlite::Row;
use rusqlite::types::ValueRef;

use crate::StoreError;

/// A value that must fit exactly.
pub(crate) fn int_exact(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

/// A schedule time, saturating at `i64::MAX`.
pub(crate) fn time_sat(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// A random 64-bit id, bit for bit.
pub(crate) fn id_bits(id: u64) -> i64 {
    i64::from_le_bytes(id.to_le_bytes())
}

/// Back from [`id_bits`].
pub(crate) fn id_from_bits(bits: i64) -> u64 {
    u64::from_le_bytes(bits.to_le_bytes())
}

/// A non-negative integer column.
pub(crate) fn get_u64(row: &Row<'_>, column: &str) -> Result<u64, StoreError> {
    let value: i64 = row.get(column)?;
    u64::try_from(value).map_err(|_| StoreError::corrupt(format!("negative {column} {value}")))
}

/// A non-negative integer column, as a time.
pub(crate) fn get_time(row: &Row<'_>, column: &str) -> Result<Timestamp, StoreError> {
    get_u64(row, column).map(Timestamp)
}

/// A nullable time column.
pub(crate) fn get_opt_time(row: &Row<'_>, column: &str) -> Result<Option<Timestamp>, StoreError> {
    let value: Option<i64> = row.get(column)?;
    value
        .map(|v| {
            u64::try_from(v)
                .map(Timestamp)
                .map_err(|_| StoreError::corrupt(format!("negative {column} {v}")))
        })
        .transpose()
}

/// A fixed-size blob column.
pub(crate) fn get_array<const N: usize>(
    row: &Row<'_>,
    column: &str,
) -> Result<[u8; N], StoreError> {
    get_opt_array(row, column)?.ok_or_else(|| StoreError::corrupt(format!("{column} is NULL")))
}

/// A nullable fixed-size blob column.
pub(crate) fn get_opt_array<const N: usize>(
    row: &Row<'_>,
    column: &str,
) -> Result<Option<[u8; N]>, StoreError> {
    match row.get_ref(column)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(bytes) => bytes.try_into().map(Some).map_err(|_| {
            StoreError::corrupt(format!("{column} has {} bytes, not {N}", bytes.len()))
        }),
        _ => Err(StoreError::corrupt(format!("{column} is not a blob"))),
    }
}

/// A PoC id column.
pub(crate) fn get_poc(row: &Row<'_>, column: &str) -> Result<PocId, StoreError> {
    get_opt_poc(row, column)?.ok_or_else(|| StoreError::corrupt(format!("{column} is NULL")))
}

/// A nullable PoC id column.
pub(crate) fn get_opt_poc(row: &Row<'_>, column: &str) -> Result<Option<PocId>, StoreError> {
    let text: Option<String> = row.get(column)?;
    text.map(|t| PocId::new(t).map_err(|e| StoreError::corrupt(format!("{column}: {e}"))))
        .transpose()
}

/// A message id column.
pub(crate) fn get_message_id(row: &Row<'_>, column: &str) -> Result<MessageId, StoreError> {
    get_array(row, column).map(MessageId)
}

/// A thread id column.
pub(crate) fn get_thread_id(row: &Row<'_>, column: &str) -> Result<ThreadId, StoreError> {
    get_array(row, column).map(ThreadId)
}
