//! The service's durable state (SQLite, WAL, synchronous=FULL): enrolled
//! States, the entries they submitted, the snapshot chain, and the ping
//! campaigns with every event of each target.
//!
//! Every change to the directory and the snapshot it yields are written in
//! one transaction, so the chain never skips a change and a crash never
//! leaves a change unpublished. The manager's CLI and the running service
//! open the same file; the service notices new snapshots by polling.

use std::path::Path;

use poc_proto::certificate::PocCertificate;
use poc_proto::directory::{
    DirectoryEntry, EntrySubmission, SignedSnapshot, SnapshotBody, SnapshotDigest, StateEnrolment,
    VerifiedDirectory,
};
use poc_proto::keys::{ManagerKeyPair, StateRootPublicKey};
use poc_proto::{CertificateError, Issuer, PocId, StateCode, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS enrolment (
    state       TEXT    NOT NULL PRIMARY KEY,
    root_key    BLOB    NOT NULL CHECK (length(root_key) = 32),
    enrolled_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS entry (
    poc_id     TEXT    NOT NULL PRIMARY KEY,
    state      TEXT    NOT NULL,
    revision   INTEGER NOT NULL,
    submission BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS snapshot (
    sequence  INTEGER PRIMARY KEY,
    digest    BLOB    NOT NULL CHECK (length(digest) = 32),
    issued_at INTEGER NOT NULL,
    bytes     BLOB    NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS setting (
    key   TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS campaign (
    id           TEXT    NOT NULL PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    reply_window INTEGER NOT NULL,
    reminder_lead INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS campaign_target (
    campaign TEXT NOT NULL,
    poc_id   TEXT NOT NULL,
    state    TEXT NOT NULL,
    role     TEXT NOT NULL,
    PRIMARY KEY (campaign, poc_id)
) STRICT;
CREATE TABLE IF NOT EXISTS campaign_event (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign TEXT    NOT NULL,
    poc_id   TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    at       INTEGER NOT NULL,
    detail   TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS campaign_request (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    requested_at INTEGER NOT NULL,
    handled      INTEGER NOT NULL DEFAULT 0
) STRICT;
"#;

/// Why the service refuses a change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A submission names a State that is not enrolled.
    #[error(
        "{state} is not enrolled: the manager enrols its root key first (`poc-directory enrol`)"
    )]
    NotEnrolled {
        /// The State.
        state: StateCode,
    },
    /// A submission does not verify under the State's enrolled root key.
    #[error(
        "refused entry for {poc_id}: it is not signed by {state}'s enrolled root key ({reason}); only the State's own root key may add, update or revoke its PoCs"
    )]
    NotSignedByState {
        /// The PoC.
        poc_id: String,
        /// The State.
        state: StateCode,
        /// What failed.
        reason: CertificateError,
    },
    /// A submission is older than, or as old as, the entry held.
    #[error(
        "refused entry for {poc_id}: revision {offered} is not newer than revision {held} already listed"
    )]
    StaleRevision {
        /// The PoC.
        poc_id: PocId,
        /// Revision held.
        held: u64,
        /// Revision offered.
        offered: u64,
    },
    /// The bytes are not a submission, or another rule failed.
    #[error("{0}")]
    Invalid(String),
    /// A State is already enrolled with another key.
    #[error(
        "{state} is already enrolled with another root key; a State's root key is replaced only through its Permanent Mission (`poc-directory enrol --replace`)"
    )]
    AlreadyEnrolled {
        /// The State.
        state: StateCode,
    },
}

/// A stored snapshot.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    /// Sequence.
    pub sequence: u64,
    /// Signed bytes.
    pub bytes: Vec<u8>,
}

/// The service database.
#[derive(Debug)]
pub struct ServiceDb {
    conn: Connection,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl ServiceDb {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<ServiceDb, ServiceError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(ServiceDb { conn })
    }

    /// The raw connection (campaign bookkeeping lives in `pings`).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The raw connection, for the CLI's read-only reports and requests.
    pub fn conn_pub(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// A setting.
    pub fn setting(&self, key: &str) -> Result<Option<Vec<u8>>, ServiceError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM setting WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets a setting.
    pub fn set_setting(&self, key: &str, value: &[u8]) -> Result<(), ServiceError> {
        self.conn.execute(
            "INSERT INTO setting (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Result<Option<StoredSnapshot>, ServiceError> {
        Ok(self
            .conn
            .query_row(
                "SELECT sequence, bytes FROM snapshot ORDER BY sequence DESC LIMIT 1",
                [],
                |r| {
                    Ok(StoredSnapshot {
                        sequence: to_u64(r.get(0)?),
                        bytes: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Snapshot number `sequence`.
    pub fn snapshot(&self, sequence: u64) -> Result<Option<StoredSnapshot>, ServiceError> {
        Ok(self
            .conn
            .query_row(
                "SELECT sequence, bytes FROM snapshot WHERE sequence = ?1",
                [to_i64(sequence)],
                |r| {
                    Ok(StoredSnapshot {
                        sequence: to_u64(r.get(0)?),
                        bytes: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Enrolled States.
    pub fn enrolments(&self) -> Result<Vec<StateEnrolment>, ServiceError> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, root_key FROM enrolment ORDER BY state")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (state, key) = row?;
            let state = StateCode::new(&state).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            let key: [u8; 32] = key
                .try_into()
                .map_err(|_| ServiceError::Invalid("stored root key is not 32 bytes".into()))?;
            let root_key = StateRootPublicKey::from_bytes(key)
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
            out.push(StateEnrolment { state, root_key });
        }
        Ok(out)
    }

    fn root_of(&self, state: StateCode) -> Result<Option<StateRootPublicKey>, ServiceError> {
        Ok(self
            .enrolments()?
            .into_iter()
            .find(|e| e.state == state)
            .map(|e| e.root_key))
    }

    /// Enrols `state` with `root_key` (once; `replace` for a key change
    /// requested through the State's mission). Publishes a snapshot.
    pub fn enrol(
        &mut self,
        state: StateCode,
        root_key: StateRootPublicKey,
        replace: bool,
        manager: &ManagerKeyPair,
        own: &PocCertificate,
        now: Timestamp,
    ) -> Result<u64, ServiceError> {
        if let Some(held) = self.root_of(state)? {
            if held == root_key {
                return self
                    .latest()?
                    .map(|s| s.sequence)
                    .ok_or_else(|| ServiceError::Invalid("no snapshot published yet".into()));
            }
            if !replace {
                return Err(ServiceError::AlreadyEnrolled { state });
            }
        }
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO enrolment (state, root_key, enrolled_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (state) DO UPDATE SET root_key = excluded.root_key, enrolled_at = excluded.enrolled_at",
            params![state.as_str(), &root_key.to_bytes()[..], to_i64(now.0)],
        )?;
        let seq = publish(&tx, manager, own, now)?;
        tx.commit()?;
        Ok(seq)
    }

    /// Checks one State-signed submission: the State is enrolled, the
    /// certificate and the details verify under its root key, and the
    /// revision is newer than the one listed.
    fn check(&self, bytes: &[u8]) -> Result<(PocId, StateCode, u64), ServiceError> {
        let submission = EntrySubmission::from_bytes(bytes)
            .map_err(|e| ServiceError::Invalid(format!("not an entry submission: {e}")))?;
        let claimed = submission
            .certificate
            .unverified_body()
            .map_err(|e| ServiceError::Invalid(format!("the certificate does not decode: {e}")))?;
        let Issuer::State(state) = claimed.issuer else {
            return Err(ServiceError::Invalid(
                "a State submits only certificates issued by its own root key".into(),
            ));
        };
        let root = self
            .root_of(state)?
            .ok_or(ServiceError::NotEnrolled { state })?;
        let (certificate, details) =
            submission
                .verify(&root)
                .map_err(|reason| ServiceError::NotSignedByState {
                    poc_id: claimed.poc_id.to_string(),
                    state,
                    reason,
                })?;
        let poc_id = certificate.poc_id().clone();
        let held: Option<i64> = self
            .conn
            .query_row(
                "SELECT revision FROM entry WHERE poc_id = ?1",
                [poc_id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(held) = held.map(to_u64)
            && details.revision <= held
        {
            return Err(ServiceError::StaleRevision {
                poc_id,
                held,
                offered: details.revision,
            });
        }
        Ok((poc_id, state, details.revision))
    }

    /// Adds, updates or revokes a PoC from a State-signed submission:
    /// refused unless both the certificate and the details verify under
    /// the root key enrolled for the certificate's State. Publishes a snapshot.
    pub fn submit(
        &mut self,
        bytes: &[u8],
        manager: &ManagerKeyPair,
        own: &PocCertificate,
        now: Timestamp,
    ) -> Result<(PocId, u64), ServiceError> {
        let (mut ids, seq) = self.submit_batch(&[bytes], manager, own, now)?;
        let id = ids
            .pop()
            .ok_or_else(|| ServiceError::Invalid("nothing submitted".into()))?;
        Ok((id, seq))
    }

    /// Several submissions, all or none, published as one snapshot. The
    /// error of a refused one names its position (from 1).
    pub fn submit_batch(
        &mut self,
        batch: &[&[u8]],
        manager: &ManagerKeyPair,
        own: &PocCertificate,
        now: Timestamp,
    ) -> Result<(Vec<PocId>, u64), ServiceError> {
        let mut checked = Vec::with_capacity(batch.len());
        for (i, bytes) in batch.iter().enumerate() {
            let (poc_id, state, revision) = self.check(bytes).map_err(|e| {
                if batch.len() > 1 {
                    ServiceError::Invalid(format!("submission {}: {e}", i + 1))
                } else {
                    e
                }
            })?;
            if checked
                .iter()
                .any(|(id, _, _, _): &(PocId, _, _, _)| *id == poc_id)
            {
                return Err(ServiceError::Invalid(format!(
                    "{poc_id} is submitted twice in one batch"
                )));
            }
            checked.push((poc_id, state, revision, *bytes));
        }
        let tx = self.conn.transaction()?;
        for (poc_id, state, revision, bytes) in &checked {
            tx.execute(
                "INSERT INTO entry (poc_id, state, revision, submission, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (poc_id) DO UPDATE SET revision = excluded.revision, submission = excluded.submission, updated_at = excluded.updated_at",
                params![poc_id.as_str(), state.as_str(), to_i64(*revision), bytes, to_i64(now.0)],
            )?;
        }
        let seq = publish(&tx, manager, own, now)?;
        tx.commit()?;
        Ok((checked.into_iter().map(|(id, ..)| id).collect(), seq))
    }

    /// Publishes a snapshot if the manager's own certificate changed (or
    /// none exists yet). Returns the latest sequence.
    pub fn ensure_published(
        &mut self,
        manager: &ManagerKeyPair,
        own: &PocCertificate,
        now: Timestamp,
    ) -> Result<u64, ServiceError> {
        if let Some(latest) = self.latest()?
            && let Ok(snapshot) = SignedSnapshot::from_bytes(&latest.bytes)
            && let Ok(dir) = snapshot.verify(&manager.public())
            && dir
                .entries()
                .values()
                .any(|e| e.certificate.certificate() == own)
        {
            return Ok(latest.sequence);
        }
        let tx = self.conn.transaction()?;
        let seq = publish(&tx, manager, own, now)?;
        tx.commit()?;
        Ok(seq)
    }
}

/// Builds the next snapshot from the current tables, signs it, checks it
/// and stores it, inside `tx`.
fn publish(
    tx: &rusqlite::Transaction<'_>,
    manager: &ManagerKeyPair,
    own: &PocCertificate,
    now: Timestamp,
) -> Result<u64, ServiceError> {
    let previous: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT sequence, digest FROM snapshot ORDER BY sequence DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (sequence, previous) = match previous {
        None => (1, SnapshotDigest([0; 32])),
        Some((seq, digest)) => (
            to_u64(seq) + 1,
            SnapshotDigest(
                digest
                    .try_into()
                    .map_err(|_| ServiceError::Invalid("stored digest is not 32 bytes".into()))?,
            ),
        ),
    };
    let mut states = Vec::new();
    {
        let mut stmt = tx.prepare("SELECT state, root_key FROM enrolment ORDER BY state")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (state, key) = row?;
            let state = StateCode::new(&state).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            let key: [u8; 32] = key
                .try_into()
                .map_err(|_| ServiceError::Invalid("stored root key is not 32 bytes".into()))?;
            states.push(StateEnrolment {
                state,
                root_key: StateRootPublicKey::from_bytes(key)
                    .map_err(|e| ServiceError::Invalid(e.to_string()))?,
            });
        }
    }
    let mut entries = vec![DirectoryEntry {
        certificate: own.clone(),
        prekeys: Vec::new(),
        revoked: false,
        details: None,
    }];
    {
        let mut stmt = tx.prepare("SELECT submission FROM entry ORDER BY poc_id")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        for row in rows {
            let submission = EntrySubmission::from_bytes(&row?)
                .map_err(|e| ServiceError::Invalid(format!("stored submission: {e}")))?;
            entries.push(DirectoryEntry {
                certificate: submission.certificate,
                prekeys: Vec::new(),
                revoked: false,
                details: Some(submission.details),
            });
        }
    }
    let body = SnapshotBody {
        sequence,
        previous,
        issued_at: now,
        states,
        entries,
    };
    let signed = SignedSnapshot::sign(&body, manager)
        .map_err(|e| ServiceError::Invalid(format!("cannot sign the snapshot: {e}")))?;
    let check: VerifiedDirectory = signed.verify(&manager.public()).map_err(|e| {
        ServiceError::Invalid(format!("the snapshot just signed does not verify: {e}"))
    })?;
    if let Some(bad) = check.rejected().first() {
        // Every stored entry was verified when submitted; one failing now
        // means its State's root key was replaced since. It stays out of
        // the snapshot only by the State re-submitting it.
        tracing::warn!(poc = ?bad.poc_id, reason = %bad.reason, "an entry no longer verifies under its State's root key");
    }
    let bytes = signed.to_bytes();
    tx.execute(
        "INSERT INTO snapshot (sequence, digest, issued_at, bytes) VALUES (?1, ?2, ?3, ?4)",
        params![
            to_i64(sequence),
            &signed.digest().0[..],
            to_i64(now.0),
            bytes
        ],
    )?;
    Ok(sequence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use poc_proto::certificate::{CertificateBody, Endpoint, Prekey, PrekeyId};
    use poc_proto::directory::{EntryDetails, SignedEntryDetails};
    use poc_proto::keys::{IdentityKeyPair, PrekeySecret, StateRootKeyPair};
    use poc_proto::message::Language;
    use poc_proto::{Role, Seconds};

    const NOW: Timestamp = Timestamp(1_800_000_000);

    fn cert(
        id: &str,
        issuer: Issuer,
        role: Role,
        sign: impl Fn(&CertificateBody) -> PocCertificate,
    ) -> PocCertificate {
        let prekey = PrekeySecret::from_secret_bytes(&[3; 32]);
        sign(&CertificateBody {
            poc_id: PocId::new(id).unwrap(),
            issuer,
            role,
            identity_key: IdentityKeyPair::from_secret_bytes(&[id.len() as u8; 32]).public(),
            prekey: Prekey {
                id: PrekeyId(1),
                public: prekey.public(),
                valid_from: NOW.minus(Seconds::DAY),
                valid_until: NOW.plus(Seconds::days(30)),
            },
            valid_from: NOW.minus(Seconds::DAY),
            valid_until: NOW.plus(Seconds::days(30)),
            endpoints: vec![Endpoint::Direct {
                address: "127.0.0.1:1".into(),
            }],
        })
    }

    fn submission(root: &StateRootKeyPair, revision: u64, revoked: bool) -> Vec<u8> {
        let certificate = cert(
            "EST.cert",
            Issuer::State(StateCode::new("EST").unwrap()),
            Role::Technical,
            |b| PocCertificate::issue_by_state(b, root).unwrap(),
        );
        let details = EntryDetails {
            poc_id: PocId::new("EST.cert").unwrap(),
            revision,
            entity: "CERT-EE".into(),
            person_name: None,
            person_title: None,
            phone: None,
            email: None,
            working_languages: vec![Language::English],
            language: Language::English,
            english: None,
            revoked,
        };
        EntrySubmission {
            certificate,
            details: SignedEntryDetails::sign(&details, root).unwrap(),
        }
        .to_bytes()
        .unwrap()
    }

    #[test]
    fn every_change_publishes_a_chained_snapshot_and_bad_submissions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = ServiceDb::open(&dir.path().join("d.sqlite")).unwrap();
        let manager = ManagerKeyPair::from_secret_bytes(&[1; 32]);
        let own = cert(
            "UN.ping",
            Issuer::DirectoryManager,
            Role::DirectoryManager,
            |b| PocCertificate::issue_by_manager(b, &manager).unwrap(),
        );
        assert_eq!(db.ensure_published(&manager, &own, NOW).unwrap(), 1);
        assert_eq!(
            db.ensure_published(&manager, &own, NOW).unwrap(),
            1,
            "nothing changed"
        );
        let root = StateRootKeyPair::from_secret_bytes(&[2; 32]);
        let est = StateCode::new("EST").unwrap();
        // Not enrolled yet.
        let err = db
            .submit(&submission(&root, 1, false), &manager, &own, NOW)
            .unwrap_err();
        assert!(matches!(err, ServiceError::NotEnrolled { .. }), "{err}");
        assert_eq!(
            db.enrol(est, root.public(), false, &manager, &own, NOW)
                .unwrap(),
            2
        );
        // Another key for EST without --replace is refused.
        let other = StateRootKeyPair::from_secret_bytes(&[4; 32]);
        let err = db
            .enrol(est, other.public(), false, &manager, &own, NOW)
            .unwrap_err();
        assert!(matches!(err, ServiceError::AlreadyEnrolled { .. }));
        // Signed by another key: refused with the reason.
        let err = db
            .submit(&submission(&other, 1, false), &manager, &own, NOW)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("not signed by EST's enrolled root key"),
            "{err}"
        );
        let (_, seq) = db
            .submit(&submission(&root, 1, false), &manager, &own, NOW)
            .unwrap();
        assert_eq!(seq, 3);
        // A replayed older revision is refused; a newer one (a revocation) is published.
        let err = db
            .submit(&submission(&root, 1, false), &manager, &own, NOW)
            .unwrap_err();
        assert!(matches!(
            err,
            ServiceError::StaleRevision {
                held: 1,
                offered: 1,
                ..
            }
        ));
        let (_, seq) = db
            .submit(&submission(&root, 2, true), &manager, &own, NOW)
            .unwrap();
        assert_eq!(seq, 4);
        // The chain links up and the last snapshot lists EST.cert revoked.
        let mut previous: Option<VerifiedDirectory> = None;
        for n in 1..=4 {
            let s = db.snapshot(n).unwrap().unwrap();
            let v = SignedSnapshot::from_bytes(&s.bytes)
                .unwrap()
                .verify(&manager.public())
                .unwrap();
            if let Some(p) = &previous {
                assert_eq!(p.check_successor(&v), Ok(true));
            }
            previous = Some(v);
        }
        let last = previous.unwrap();
        assert!(last.entries()[&PocId::new("EST.cert").unwrap()].revoked);
        assert!(last.rejected().is_empty());
    }
}
