//! The node's prekeys and their secrets.
//!
//! Secrets are bound as borrowed BLOBs (no Rust-side copy beyond the
//! zeroizing buffer) and read back straight into a zeroizing buffer. A
//! deleted secret is overwritten in its page (`secure_delete=ON`) and, after
//! the commit, the WAL is truncated (see [`crate::Store::checkpoint`]).

use poc_proto::Timestamp;
use poc_proto::certificate::{Prekey, PrekeyId};
use poc_proto::envelope::PrekeyRing;
use poc_proto::keys::{PrekeyPublic, PrekeySecret};
use rusqlite::types::ValueRef;
use rusqlite::{OptionalExtension, Row, params};
use zeroize::Zeroizing;

use crate::sql::{get_array, get_time, id_bits, id_from_bits, time_sat};
use crate::{Reader, StoreError, Tx};

fn prekey_from_row(row: &Row<'_>) -> Result<Prekey, StoreError> {
    let id = PrekeyId(id_from_bits(row.get("id")?));
    let public = PrekeyPublic::from_bytes(get_array(row, "public")?)
        .map_err(|e| StoreError::corrupt(format!("prekey {id}: {e}")))?;
    Ok(Prekey {
        id,
        public,
        valid_from: get_time(row, "valid_from")?,
        valid_until: get_time(row, "valid_until")?,
    })
}

fn secret_from_row(row: &Row<'_>, id: PrekeyId) -> Result<PrekeySecret, StoreError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    match row.get_ref("secret")? {
        ValueRef::Blob(stored) if stored.len() == 32 => bytes.copy_from_slice(stored),
        _ => {
            return Err(StoreError::corrupt(format!(
                "prekey {id}: secret is not 32 bytes"
            )));
        }
    }
    Ok(PrekeySecret::from_secret_bytes(&bytes))
}

impl Reader<'_> {
    /// Every stored prekey with its secret, as the ring
    /// [`poc_proto::envelope::Recipient`] opens envelopes with.
    pub fn prekeys_load(&self) -> Result<PrekeyRing, StoreError> {
        let mut ring = PrekeyRing::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, public, valid_from, valid_until, secret FROM prekey")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let prekey = prekey_from_row(row)?;
            let id = prekey.id;
            let secret = secret_from_row(row, id)?;
            ring.insert(prekey, secret)
                .map_err(|e| StoreError::corrupt(format!("prekey {id}: {e}")))?;
        }
        Ok(ring)
    }

    /// Every stored prekey's public data, by id.
    pub fn prekeys_list(&self) -> Result<Vec<Prekey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, public, valid_from, valid_until FROM prekey")?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(prekey_from_row(row)?);
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }
}

impl Tx<'_> {
    /// Stores a prekey and its secret. Refuses a secret that does not match
    /// the public key, and an id already stored for a different key; storing
    /// the same key again updates its validity.
    pub fn prekey_put(&mut self, prekey: &Prekey, secret: &PrekeySecret) -> Result<(), StoreError> {
        if secret.public() != prekey.public {
            return Err(StoreError::PrekeyMismatch { id: prekey.id });
        }
        let id = id_bits(prekey.id.0);
        let held: Option<Vec<u8>> = self
            .conn()
            .prepare_cached("SELECT public FROM prekey WHERE id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()?;
        if held.is_some_and(|held| held != prekey.public.to_bytes()) {
            return Err(StoreError::PrekeyIdInUse { id: prekey.id });
        }
        let secret_bytes = secret.to_secret_bytes();
        self.conn()
            .prepare_cached(
                "INSERT INTO prekey (id, public, valid_from, valid_until, secret) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO UPDATE SET valid_from = excluded.valid_from, \
                     valid_until = excluded.valid_until",
            )?
            .execute(params![
                id,
                &prekey.public.to_bytes()[..],
                time_sat(prekey.valid_from),
                time_sat(prekey.valid_until),
                &secret_bytes[..],
            ])?;
        Ok(())
    }

    /// Deletes a prekey and its secret; returns whether it was stored. The
    /// secret's bytes leave the files when the transaction commits.
    pub fn prekey_delete(&mut self, id: PrekeyId) -> Result<bool, StoreError> {
        let deleted = self
            .conn()
            .prepare_cached("DELETE FROM prekey WHERE id = ?1")?
            .execute([id_bits(id.0)])?;
        if deleted > 0 {
            self.wipe_after_commit();
        }
        Ok(deleted > 0)
    }

    /// Deletes every prekey whose validity ended more than `grace` seconds
    /// before `now` (as [`PrekeyRing::expire`] does in memory); returns their
    /// ids.
    pub fn prekeys_expire(
        &mut self,
        now: Timestamp,
        grace: poc_proto::Seconds,
    ) -> Result<Vec<PrekeyId>, StoreError> {
        let expired: Vec<PrekeyId> = self
            .prekeys_list()?
            .into_iter()
            .filter(|p| p.valid_until.plus(grace) < now)
            .map(|p| p.id)
            .collect();
        for id in &expired {
            self.prekey_delete(*id)?;
        }
        Ok(expired)
    }
}
