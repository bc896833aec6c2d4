//! Small key-value settings (e.g. the node's own PoC id).

use rusqlite::{OptionalExtension, params};

use crate::{Reader, StoreError, Tx};

impl Reader<'_> {
    /// The value of a setting.
    pub fn setting_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM setting WHERE key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?)
    }
}

impl Tx<'_> {
    /// Sets a setting, replacing any previous value.
    pub fn setting_put(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO setting (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    /// Deletes a setting; returns whether it was set.
    pub fn setting_delete(&mut self, key: &str) -> Result<bool, StoreError> {
        let deleted = self
            .conn()
            .prepare_cached("DELETE FROM setting WHERE key = ?1")?
            .execute([key])?;
        Ok(deleted > 0)
    }
}
