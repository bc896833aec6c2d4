//! The signed directory: which States are enrolled (their root keys), which
//! PoCs they certified, their published prekeys, and which are revoked.
//!
//! The directory manager signs each snapshot; every snapshot carries a
//! sequence number and the digest of the previous one, so nodes can keep the
//! chain and refuse rollbacks and forks ([`VerifiedDirectory::check_successor`]).
//! The manager's signature alone cannot put a key in a State's mouth: every
//! entry must also verify under the State root key enrolled for its State,
//! and entries that do not are set aside in [`VerifiedDirectory::rejected`]
//! for the node to report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::certificate::{PocCertificate, SignedPrekey, VerifiedCertificate, VerifiedPrekey};
use crate::codec::{self, limits};
use crate::envelope::{PeerDirectory, PeerStatus};
use crate::error::{CertificateError, DecodeError};
use crate::identity::{Issuer, PocId, StateCode};
use crate::keys::{
    ManagerKeyPair, ManagerPublicKey, Signature, SignatureLabel, StateRootKeyPair,
    StateRootPublicKey,
};
use crate::message::Language;
use crate::time::Timestamp;
use crate::validate::{Validate, Validator};

/// A State's enrolment: its root public key, registered once by the manager
/// through the State's Permanent Mission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEnrolment {
    /// The State.
    pub state: StateCode,
    /// Its root key.
    pub root_key: StateRootPublicKey,
}

impl Validate for StateEnrolment {
    fn validate(&self, _: &mut Validator) {}
}

/// One PoC as listed in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// Its certificate, signed by its State's root key.
    pub certificate: PocCertificate,
    /// Prekeys published since the certificate, signed by the identity key.
    pub prekeys: Vec<SignedPrekey>,
    /// Whether the State revoked it.
    pub revoked: bool,
    /// Contact details and status, signed by the State's root key (absent
    /// for the manager's own entry and for entries built from a bare
    /// certificate).
    pub details: Option<SignedEntryDetails>,
}

impl Validate for DirectoryEntry {
    fn validate(&self, v: &mut Validator) {
        v.field("certificate", |v| self.certificate.validate(v));
        v.list("prekeys", &self.prekeys, limits::MAX_PUBLISHED_PREKEYS);
        if let Some(details) = &self.details {
            v.field("details", |v| details.validate(v));
        }
    }
}

/// Most working languages an entry may list (the six UN official ones).
pub const MAX_WORKING_LANGUAGES: usize = 6;

/// What a State says about one of its PoCs besides its keys: who and how to
/// reach them by other means, in which languages, and whether the PoC is
/// revoked. Signed by the State's root key ([`SignedEntryDetails`]), so the
/// manager can neither write nor alter it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryDetails {
    /// The PoC these details belong to.
    pub poc_id: PocId,
    /// Increases with every update the State signs for this PoC, so an
    /// older statement cannot be put back in place of a newer one.
    pub revision: u64,
    /// Entity or institution (e.g. the national CERT, the foreign ministry).
    pub entity: String,
    /// Person's name (optional: many States list a function, not a person).
    pub person_name: Option<String>,
    /// Person's title.
    pub person_title: Option<String>,
    /// Telephone, in international format.
    pub phone: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Languages the PoC works in (UN official languages).
    pub working_languages: Vec<Language>,
    /// The language the entry's free text is written in.
    pub language: Language,
    /// An English translation of the entity and title, when `language` is
    /// not English.
    pub english: Option<String>,
    /// The State revoked this PoC: no one may send to it or accept from it.
    pub revoked: bool,
}

impl Validate for Language {
    fn validate(&self, _: &mut Validator) {}
}

impl Validate for EntryDetails {
    fn validate(&self, v: &mut Validator) {
        v.non_empty_short_text("entity", &self.entity);
        v.optional_short_text("person_name", &self.person_name);
        v.optional_short_text("person_title", &self.person_title);
        v.optional_short_text("phone", &self.phone);
        v.optional_short_text("email", &self.email);
        v.optional_short_text("english", &self.english);
        v.list(
            "working_languages",
            &self.working_languages,
            MAX_WORKING_LANGUAGES,
        );
    }
}

/// [`EntryDetails`] as they travel: the encoded body and the State root
/// key's signature over exactly those bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEntryDetails {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    signature: Signature,
}

impl std::fmt::Debug for SignedEntryDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedEntryDetails")
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Validate for SignedEntryDetails {
    fn validate(&self, v: &mut Validator) {
        v.max_len("body", self.body.len(), limits::MAX_CERTIFICATE_BYTES);
    }
}

impl SignedEntryDetails {
    /// Encodes and signs `details` with the State's root key.
    pub fn sign(details: &EntryDetails, root: &StateRootKeyPair) -> Result<Self, CertificateError> {
        let body = codec::encode(details)?;
        let signature = root.sign(SignatureLabel::DirectoryEntry, &body);
        Ok(SignedEntryDetails { body, signature })
    }

    /// The details, decoded but **not verified**.
    pub fn unverified(&self) -> Result<EntryDetails, CertificateError> {
        Ok(codec::decode(&self.body, limits::MAX_CERTIFICATE_BYTES)?)
    }

    /// Verifies the State root signature and decodes the details.
    pub fn verify(&self, root: &StateRootPublicKey) -> Result<EntryDetails, CertificateError> {
        if !root.verify(SignatureLabel::DirectoryEntry, &self.body, &self.signature) {
            return Err(CertificateError::BadSignature);
        }
        self.unverified()
    }

    /// [`verify`](Self::verify) with the root key already parsed.
    fn verify_parsed(
        &self,
        root: &ed25519_dalek::VerifyingKey,
    ) -> Result<EntryDetails, CertificateError> {
        if !crate::keys::verify_parsed(
            root,
            SignatureLabel::DirectoryEntry,
            &self.body,
            &self.signature,
        ) {
            return Err(CertificateError::BadSignature);
        }
        self.unverified()
    }
}

/// What a State submits to the directory for one of its PoCs: the
/// certificate and the details, both signed by the State's root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntrySubmission {
    /// The PoC's certificate.
    pub certificate: PocCertificate,
    /// Its details.
    pub details: SignedEntryDetails,
}

impl Validate for EntrySubmission {
    fn validate(&self, v: &mut Validator) {
        v.field("certificate", |v| self.certificate.validate(v));
        v.field("details", |v| self.details.validate(v));
    }
}

impl EntrySubmission {
    /// Decodes a submission (not yet verified).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertificateError> {
        Ok(codec::decode(bytes, 4 * limits::MAX_CERTIFICATE_BYTES)?)
    }

    /// Encodes the submission.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CertificateError> {
        Ok(codec::encode(self)?)
    }

    /// Verifies both parts against `root` and that they name the same PoC.
    pub fn verify(
        &self,
        root: &StateRootPublicKey,
    ) -> Result<(VerifiedCertificate, EntryDetails), CertificateError> {
        let certificate = self.certificate.verify_by_state(root)?;
        let details = self.details.verify(root)?;
        if details.poc_id != *certificate.poc_id() {
            return Err(CertificateError::Inconsistent(format!(
                "the details name {} but the certificate {}",
                details.poc_id,
                certificate.poc_id()
            )));
        }
        Ok((certificate, details))
    }
}

/// The SHA-256 digest of a signed snapshot's bytes: the chain link.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotDigest(pub [u8; 32]);

impl std::fmt::Display for SnapshotDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for SnapshotDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotDigest({self})")
    }
}

/// What a snapshot states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBody {
    /// Position in the chain; the first snapshot is 1.
    pub sequence: u64,
    /// Digest of snapshot `sequence - 1`; all zero for the first.
    pub previous: SnapshotDigest,
    /// When the manager issued it.
    pub issued_at: Timestamp,
    /// Enrolled States.
    pub states: Vec<StateEnrolment>,
    /// Listed PoCs (the manager's own ping identity included).
    pub entries: Vec<DirectoryEntry>,
}

impl Validate for SnapshotBody {
    fn validate(&self, v: &mut Validator) {
        if self.sequence == 0 {
            v.field("sequence", |v| v.fail("starts at 1"));
        }
        v.list("states", &self.states, limits::MAX_DIRECTORY_STATES);
        v.list("entries", &self.entries, limits::MAX_DIRECTORY_ENTRIES);
    }
}

/// Why a snapshot as a whole is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The bytes do not decode.
    #[error("directory snapshot does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The manager's signature does not verify.
    #[error("directory snapshot signature does not verify under the pinned manager key")]
    BadSignature,
    /// A State is enrolled twice.
    #[error("directory snapshot enrols {0} twice")]
    DuplicateState(StateCode),
}

/// Why a snapshot does not extend the chain a node holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// An older snapshot than the one held (a rollback).
    #[error("rollback refused: offered snapshot {offered}, but snapshot {held} is already held")]
    Rollback {
        /// Sequence held.
        held: u64,
        /// Sequence offered.
        offered: u64,
    },
    /// A different snapshot with a sequence number already seen, or one whose
    /// link does not point at the snapshot held (a fork).
    #[error(
        "fork refused: snapshot {sequence} does not extend the chain held (digest {offered}, expected link {expected})"
    )]
    Fork {
        /// Sequence of the offending snapshot.
        sequence: u64,
        /// Its digest or link.
        offered: SnapshotDigest,
        /// The digest the chain held requires.
        expected: SnapshotDigest,
    },
    /// Snapshots are missing between the one held and the one offered.
    #[error("snapshots {} to {} are missing; fetch them in order", held + 1, offered - 1)]
    Gap {
        /// Sequence held.
        held: u64,
        /// Sequence offered.
        offered: u64,
    },
    /// The offered snapshot lists a PoC without the State-signed details
    /// the held one carries, or with an older revision of them: a change
    /// the State did not sign (it would lift a State's revocation, say).
    #[error(
        "snapshot {sequence} undoes what the State of {poc} signed: it lists {} for {poc} where revision {held_revision} is held",
        offered_revision.map_or_else(|| "no State-signed details".to_owned(), |r| format!("revision {r}"))
    )]
    DetailsRolledBack {
        /// Sequence of the offending snapshot.
        sequence: u64,
        /// The PoC.
        poc: PocId,
        /// Revision of the details held.
        held_revision: u64,
        /// Revision offered, if any details are.
        offered_revision: Option<u64>,
    },
}

/// A directory snapshot as it travels: the encoded [`SnapshotBody`] and the
/// manager's signature over exactly those bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSnapshot {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    signature: Signature,
}

impl std::fmt::Debug for SignedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedSnapshot")
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Validate for SignedSnapshot {
    fn validate(&self, _: &mut Validator) {}
}

impl SignedSnapshot {
    /// Encodes and signs a snapshot with the manager key.
    pub fn sign(body: &SnapshotBody, manager: &ManagerKeyPair) -> Result<Self, DirectoryError> {
        let bytes = codec::encode_large(body)?;
        let signature = manager.sign(SignatureLabel::DirectorySnapshot, &bytes);
        Ok(SignedSnapshot {
            body: bytes,
            signature,
        })
    }

    /// Decodes a signed snapshot (not yet verified).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DirectoryError> {
        Ok(codec::decode_large(bytes)?)
    }

    /// Encodes the signed snapshot.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode_signed(&self.body, &self.signature.0)
    }

    /// SHA-256 of [`Self::to_bytes`]: what the next snapshot links to.
    pub fn digest(&self) -> SnapshotDigest {
        SnapshotDigest(crate::envelope::content_digest(&self.to_bytes()))
    }

    /// Verifies the manager's signature, then every entry against its State's
    /// enrolled root key. Entries that fail are set aside, not trusted.
    pub fn verify(&self, manager: &ManagerPublicKey) -> Result<VerifiedDirectory, DirectoryError> {
        if !manager.verify(
            SignatureLabel::DirectorySnapshot,
            &self.body,
            &self.signature,
        ) {
            return Err(DirectoryError::BadSignature);
        }
        let body: SnapshotBody = codec::decode_large(&self.body)?;
        let mut roots = BTreeMap::new();
        for enrolment in &body.states {
            if roots.insert(enrolment.state, enrolment.root_key).is_some() {
                return Err(DirectoryError::DuplicateState(enrolment.state));
            }
        }
        // Each root key parsed once, not once per signature. A root key
        // that does not parse verifies nothing (as `StateRootPublicKey::verify`).
        let parsed: BTreeMap<StateCode, ed25519_dalek::VerifyingKey> = roots
            .iter()
            .filter_map(|(state, key)| {
                crate::keys::checked_verifying_key(&key.to_bytes())
                    .ok()
                    .map(|k| (*state, k))
            })
            .collect();
        let mut entries = BTreeMap::new();
        let mut rejected = Vec::new();
        for entry in &body.entries {
            match verify_entry(entry, &roots, &parsed, manager) {
                Ok(verified) => {
                    let id = verified.certificate.poc_id().clone();
                    match entries.entry(id) {
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(verified);
                        }
                        std::collections::btree_map::Entry::Occupied(slot) => {
                            rejected.push(RejectedEntry {
                                poc_id: Some(slot.key().clone()),
                                reason: CertificateError::Inconsistent("listed twice".into()),
                            });
                        }
                    }
                }
                Err(rejection) => rejected.push(rejection),
            }
        }
        Ok(VerifiedDirectory {
            sequence: body.sequence,
            previous: body.previous,
            issued_at: body.issued_at,
            digest: self.digest(),
            roots,
            entries,
            rejected,
        })
    }
}

fn verify_entry(
    entry: &DirectoryEntry,
    roots: &BTreeMap<StateCode, StateRootPublicKey>,
    parsed: &BTreeMap<StateCode, ed25519_dalek::VerifyingKey>,
    manager: &ManagerPublicKey,
) -> Result<VerifiedEntry, RejectedEntry> {
    let reject = |poc_id: Option<PocId>, reason| RejectedEntry { poc_id, reason };
    let claimed = entry
        .certificate
        .unverified_body()
        .map_err(|e| reject(None, e))?;
    let poc_id = claimed.poc_id.clone();
    let issuer = claimed.issuer;
    let certificate = match issuer {
        Issuer::State(state) => {
            if !roots.contains_key(&state) {
                return Err(reject(
                    Some(poc_id),
                    CertificateError::Inconsistent(format!("{state} is not enrolled")),
                ));
            }
            match parsed.get(&state) {
                Some(root) => entry.certificate.verify_by_state_parsed(claimed, root),
                None => Err(CertificateError::BadSignature),
            }
        }
        Issuer::DirectoryManager => entry.certificate.verify_by_manager(manager),
    }
    .map_err(|e| reject(Some(poc_id.clone()), e))?;
    let claimed = certificate.body();
    let prekeys = entry
        .prekeys
        .iter()
        .map(|signed| certificate.verify_prekey(signed))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| reject(Some(claimed.poc_id.clone()), e))?;
    let details = match (&entry.details, claimed.issuer) {
        (None, _) => None,
        (Some(signed), Issuer::State(state)) => {
            let root = parsed.get(&state).ok_or_else(|| {
                reject(
                    Some(claimed.poc_id.clone()),
                    CertificateError::Inconsistent(format!("{state} is not enrolled")),
                )
            })?;
            let details = signed.verify_parsed(root).map_err(|e| {
                reject(
                    Some(claimed.poc_id.clone()),
                    match e {
                        CertificateError::BadSignature => CertificateError::Inconsistent(format!(
                            "the entry details are not signed by {state}'s enrolled root key"
                        )),
                        other => other,
                    },
                )
            })?;
            if details.poc_id != claimed.poc_id {
                return Err(reject(
                    Some(claimed.poc_id.clone()),
                    CertificateError::Inconsistent(format!(
                        "the entry details name {}",
                        details.poc_id
                    )),
                ));
            }
            Some(details)
        }
        (Some(_), Issuer::DirectoryManager) => {
            return Err(reject(
                Some(claimed.poc_id.clone()),
                CertificateError::Inconsistent(
                    "the manager's own entry carries no State details".into(),
                ),
            ));
        }
    };
    let revoked = entry.revoked || details.as_ref().is_some_and(|d| d.revoked);
    Ok(VerifiedEntry {
        certificate,
        prekeys,
        revoked,
        details,
    })
}

/// A listed PoC whose certificate and prekeys verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry {
    /// The certificate.
    pub certificate: VerifiedCertificate,
    /// Rotated prekeys.
    pub prekeys: Vec<VerifiedPrekey>,
    /// Revoked by its State.
    pub revoked: bool,
    /// The State-signed details, if the entry carries them.
    pub details: Option<EntryDetails>,
}

/// An entry of a snapshot that did not verify, kept for the node to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEntry {
    /// The PoC it claims to be, if that much decoded.
    pub poc_id: Option<PocId>,
    /// Why it was refused.
    pub reason: CertificateError,
}

/// A snapshot whose signature and entries were checked.
#[derive(Debug, Clone)]
pub struct VerifiedDirectory {
    sequence: u64,
    previous: SnapshotDigest,
    issued_at: Timestamp,
    digest: SnapshotDigest,
    roots: BTreeMap<StateCode, StateRootPublicKey>,
    entries: BTreeMap<PocId, VerifiedEntry>,
    rejected: Vec<RejectedEntry>,
}

impl VerifiedDirectory {
    /// Position in the chain.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// This snapshot's digest.
    pub fn digest(&self) -> SnapshotDigest {
        self.digest
    }

    /// The digest this snapshot links to.
    pub fn previous(&self) -> SnapshotDigest {
        self.previous
    }

    /// When it was issued.
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }

    /// The root key enrolled for `state`.
    pub fn state_root(&self, state: StateCode) -> Option<&StateRootPublicKey> {
        self.roots.get(&state)
    }

    /// Enrolled States.
    pub fn states(&self) -> impl Iterator<Item = StateCode> + '_ {
        self.roots.keys().copied()
    }

    /// Every verified entry, by PoC id.
    pub fn entries(&self) -> &BTreeMap<PocId, VerifiedEntry> {
        &self.entries
    }

    /// Entries that failed verification.
    pub fn rejected(&self) -> &[RejectedEntry] {
        &self.rejected
    }

    /// The prekey to seal to for `poc` at `now`: the most recent one valid now.
    pub fn current_prekey(&self, poc: &PocId, now: Timestamp) -> Option<VerifiedPrekey> {
        let entry = self.entries.get(poc)?;
        std::iter::once(entry.certificate.initial_prekey())
            .chain(entry.prekeys.iter().cloned())
            .filter(|p| p.prekey().is_valid_at(now))
            .max_by_key(|p| p.prekey().valid_from)
    }

    /// Checks that `next` extends the chain ending at this snapshot, and
    /// that it keeps every State-signed statement this one holds: a PoC
    /// listed in both keeps its details, at the same or a newer revision
    /// (only the State signs a newer one). `Ok(false)` means `next` is this
    /// very snapshot (nothing to do).
    pub fn check_successor(&self, next: &VerifiedDirectory) -> Result<bool, ChainError> {
        self.check_successor_seen(next, &DetailsSeen::default())
    }

    /// [`check_successor`](VerifiedDirectory::check_successor), also
    /// judging PoCs that `self` does not list against the details revisions
    /// `seen` remembers from the snapshots adopted before it: a PoC the
    /// manager removed and lists again must come back with details of at
    /// least the revision its State last signed (SPEC 15.8 row 6).
    pub fn check_successor_seen(
        &self,
        next: &VerifiedDirectory,
        seen: &DetailsSeen,
    ) -> Result<bool, ChainError> {
        let extends = self.check_link(next)?;
        if extends {
            // Row 6: the highest revision of each PoC's details held now or
            // seen before, whichever is higher, must not be undone.
            for (poc, offered) in &next.entries {
                let held_now = self.entries.get(poc).and_then(|e| e.details.as_ref());
                let seen_before = seen.0.get(poc).copied();
                let Some(held_revision) = held_now.map(|d| d.revision).max(seen_before) else {
                    continue;
                };
                let offered_revision = offered.details.as_ref().map(|d| d.revision);
                if offered_revision.is_none_or(|r| r < held_revision) {
                    return Err(ChainError::DetailsRolledBack {
                        sequence: next.sequence,
                        poc: poc.clone(),
                        held_revision,
                        offered_revision,
                    });
                }
            }
        }
        Ok(extends)
    }

    /// Rows 1 to 5 and 7 (row 6 is judged by the caller).
    fn check_link(&self, next: &VerifiedDirectory) -> Result<bool, ChainError> {
        use std::cmp::Ordering;
        match next.sequence.cmp(&self.sequence) {
            Ordering::Less => Err(ChainError::Rollback {
                held: self.sequence,
                offered: next.sequence,
            }),
            Ordering::Equal if next.digest == self.digest => Ok(false),
            Ordering::Equal => Err(ChainError::Fork {
                sequence: next.sequence,
                offered: next.digest,
                expected: self.digest,
            }),
            Ordering::Greater if next.sequence > self.sequence + 1 => Err(ChainError::Gap {
                held: self.sequence,
                offered: next.sequence,
            }),
            Ordering::Greater if next.previous != self.digest => Err(ChainError::Fork {
                sequence: next.sequence,
                offered: next.previous,
                expected: self.digest,
            }),
            Ordering::Greater => Ok(true),
        }
    }
}

/// The highest revision of State-signed details seen for each PoC in the
/// snapshots a node adopted, kept by the node across restarts.
///
/// A snapshot is judged against the one held (SPEC 15.8), which no longer
/// lists a PoC the manager removed; without this memory the manager could
/// remove a PoC its State had revoked and list it again with older details,
/// or none, lifting the revocation. With it, the PoC can come back only with
/// details of at least the revision its State last signed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailsSeen(BTreeMap<PocId, u64>);

impl DetailsSeen {
    /// From `(PoC, revision)` pairs, e.g. as a node stored them; of
    /// repeated PoCs the highest revision counts.
    pub fn from_revisions(revisions: impl IntoIterator<Item = (PocId, u64)>) -> DetailsSeen {
        let mut seen = DetailsSeen::default();
        for (poc, revision) in revisions {
            seen.raise(poc, revision);
        }
        seen
    }

    /// The PoCs and their highest revisions seen, by PoC id.
    pub fn revisions(&self) -> impl Iterator<Item = (&PocId, u64)> {
        self.0.iter().map(|(poc, revision)| (poc, *revision))
    }

    /// Remembers the details revisions `directory` lists (keeping higher
    /// ones seen before).
    pub fn remember(&mut self, directory: &VerifiedDirectory) {
        for (poc, entry) in &directory.entries {
            if let Some(details) = &entry.details {
                self.raise(poc.clone(), details.revision);
            }
        }
    }

    fn raise(&mut self, poc: PocId, revision: u64) {
        let held = self.0.entry(poc).or_insert(revision);
        *held = (*held).max(revision);
    }
}

impl PeerDirectory for VerifiedDirectory {
    fn lookup(&self, poc: &PocId) -> PeerStatus<'_> {
        match self.entries.get(poc) {
            Some(entry) if entry.revoked => PeerStatus::Revoked,
            Some(entry) => PeerStatus::Active(&entry.certificate),
            None => PeerStatus::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;
    use crate::testkit::{NOW, World};

    fn snapshot(world: &World, sequence: u64, previous: SnapshotDigest) -> SignedSnapshot {
        let body = world.snapshot_body(sequence, previous, NOW, |_| true);
        SignedSnapshot::sign(&body, &world.manager).unwrap()
    }

    #[test]
    fn snapshots_verify_and_chain() {
        let world = World::new();
        let first = snapshot(&world, 1, SnapshotDigest([0; 32]));
        let bytes = first.to_bytes();
        let first = SignedSnapshot::from_bytes(&bytes)
            .unwrap()
            .verify(&world.manager.public())
            .unwrap();
        assert_eq!(first.entries().len(), world.pocs.len());
        assert!(first.rejected().is_empty());
        let second = snapshot(&world, 2, first.digest())
            .verify(&world.manager.public())
            .unwrap();
        assert_eq!(first.check_successor(&second), Ok(true));
        assert_eq!(second.check_successor(&second), Ok(false));
        assert!(matches!(
            second.check_successor(&first),
            Err(ChainError::Rollback {
                held: 2,
                offered: 1
            })
        ));
        let forked = snapshot(&world, 2, SnapshotDigest([9; 32]))
            .verify(&world.manager.public())
            .unwrap();
        assert!(matches!(
            first.check_successor(&forked),
            Err(ChainError::Fork { .. })
        ));
        let mut other = world
            .pocs
            .values()
            .next()
            .unwrap()
            .certificate
            .certificate()
            .clone();
        let _ = &mut other;
        let third = snapshot(&world, 4, second.digest())
            .verify(&world.manager.public())
            .unwrap();
        assert!(matches!(
            second.check_successor(&third),
            Err(ChainError::Gap { .. })
        ));
    }

    #[test]
    fn a_manager_cannot_certify_a_state_poc() {
        // The manager signs a certificate claiming to be EST's: the snapshot
        // verifies, but the entry is set aside.
        let world = World::new();
        let est = world.poc("EST.cert");
        let forged = PocCertificate::issue_by_state(
            est.certificate.body(),
            &crate::keys::StateRootKeyPair::from_secret_bytes(&[1; 32]),
        )
        .unwrap();
        let mut body = SnapshotBody {
            sequence: 1,
            previous: SnapshotDigest([0; 32]),
            issued_at: NOW,
            states: world.enrolments(),
            entries: vec![DirectoryEntry {
                certificate: forged,
                prekeys: vec![],
                revoked: false,
                details: None,
            }],
        };
        let dir = SignedSnapshot::sign(&body, &world.manager)
            .unwrap()
            .verify(&world.manager.public())
            .unwrap();
        assert!(dir.entries().is_empty());
        assert_eq!(dir.rejected().len(), 1);
        assert_eq!(dir.rejected()[0].reason, CertificateError::BadSignature);
        // And a snapshot signed by anyone else is refused whole.
        body.entries.clear();
        let other = ManagerKeyPair::from_secret_bytes(&[2; 32]);
        let err = SignedSnapshot::sign(&body, &other)
            .unwrap()
            .verify(&world.manager.public())
            .unwrap_err();
        assert_eq!(err, DirectoryError::BadSignature);
    }

    #[test]
    fn a_manager_cannot_take_a_state_pocs_id_for_its_own_identity() {
        // The manager certifies its own (DirectoryManager) identity under
        // the id of EST's technical PoC and lists it before the genuine
        // entry. Encoded by hand, as a hostile manager would, since the
        // encoder refuses such a body.
        let world = World::new();
        let mut body = world.poc("UN.ping").certificate.body().clone();
        body.poc_id = PocId::new("EST.cert").unwrap();
        let config = bincode::config::standard()
            .with_little_endian()
            .with_fixed_int_encoding();
        let bytes = bincode::serde::encode_to_vec(&body, config).unwrap();
        let signature = world.manager.sign(SignatureLabel::PocCertificate, &bytes);
        let impostor =
            PocCertificate::from_bytes(&codec::encode_signed(&bytes, &signature.0)).unwrap();
        let mut snapshot = world.snapshot_body(1, SnapshotDigest([0; 32]), NOW, |id| {
            id.as_str() == "EST.cert"
        });
        snapshot.entries.insert(
            0,
            DirectoryEntry {
                certificate: impostor,
                prekeys: vec![],
                revoked: false,
                details: None,
            },
        );
        let dir = SignedSnapshot::sign(&snapshot, &world.manager)
            .unwrap()
            .verify(&world.manager.public())
            .unwrap();
        let est = PocId::new("EST.cert").unwrap();
        let PeerStatus::Active(listed) = dir.lookup(&est) else {
            panic!("EST.cert must stay listed");
        };
        assert_eq!(
            listed.body().issuer,
            world.poc("EST.cert").certificate.body().issuer
        );
        assert_eq!(listed.role(), Role::Technical);
        assert_eq!(dir.rejected().len(), 1);
        assert!(
            matches!(dir.rejected()[0].reason, CertificateError::Decode(_)),
            "{:?}",
            dir.rejected()[0]
        );
        assert!(
            PocCertificate::issue_by_manager(&body, &world.manager).is_err(),
            "the manager key must not certify an id of the form `EST.`"
        );
    }

    #[test]
    fn revoked_entries_are_reported_as_revoked() {
        let world = World::new();
        let fra = world.poc("FRA.cert");
        let body = SnapshotBody {
            sequence: 1,
            previous: SnapshotDigest([0; 32]),
            issued_at: NOW,
            states: world.enrolments(),
            entries: vec![DirectoryEntry {
                certificate: fra.certificate.certificate().clone(),
                prekeys: vec![],
                revoked: true,
                details: None,
            }],
        };
        let dir = SignedSnapshot::sign(&body, &world.manager)
            .unwrap()
            .verify(&world.manager.public())
            .unwrap();
        assert!(matches!(dir.lookup(fra.id()), PeerStatus::Revoked));
        assert_eq!(dir.current_prekey(fra.id(), NOW).unwrap(), fra.prekey());
    }
    /// A hostile manager cannot undo a State's revocation: not by dropping
    /// the State-signed details, nor by putting back an older revision.
    #[test]
    fn a_successor_must_keep_the_state_signed_details_held() {
        let world = World::new();
        let est = world.poc("EST.cert");
        let root = &world.roots[&StateCode::new("EST").unwrap()];
        let listed = |sequence: u64, previous, details: Option<EntryDetails>| {
            let body = SnapshotBody {
                sequence,
                previous,
                issued_at: NOW,
                states: world.enrolments(),
                entries: vec![DirectoryEntry {
                    certificate: est.certificate.certificate().clone(),
                    prekeys: vec![],
                    revoked: false,
                    details: details.map(|d| SignedEntryDetails::sign(&d, root).unwrap()),
                }],
            };
            SignedSnapshot::sign(&body, &world.manager)
                .unwrap()
                .verify(&world.manager.public())
                .unwrap()
        };
        let revision = |revision: u64, revoked: bool| EntryDetails {
            revision,
            ..details("EST.cert", revoked)
        };
        let first = listed(1, SnapshotDigest([0; 32]), Some(revision(1, false)));
        // The State revokes EST.cert at revision 2.
        let revoked = listed(2, first.digest(), Some(revision(2, true)));
        assert_eq!(first.check_successor(&revoked), Ok(true));
        assert!(matches!(revoked.lookup(est.id()), PeerStatus::Revoked));

        // The manager drops the details, or puts revision 1 back.
        for (offered, offered_revision) in [(None, None), (Some(revision(1, false)), Some(1))] {
            let lifted = listed(3, revoked.digest(), offered);
            assert!(matches!(lifted.lookup(est.id()), PeerStatus::Active(_)));
            let err = revoked.check_successor(&lifted).unwrap_err();
            assert_eq!(
                err,
                ChainError::DetailsRolledBack {
                    sequence: 3,
                    poc: est.id().clone(),
                    held_revision: 2,
                    offered_revision,
                }
            );
            assert!(err.to_string().contains("EST.cert"), "{err}");
        }
        // The same revision again, or the State's newer one, extends the chain.
        let same = listed(3, revoked.digest(), Some(revision(2, true)));
        assert_eq!(revoked.check_successor(&same), Ok(true));
        let reinstated = listed(3, revoked.digest(), Some(revision(3, false)));
        assert_eq!(revoked.check_successor(&reinstated), Ok(true));

        // Removed, then listed again: the snapshot held no longer lists
        // EST.cert, so only what the node remembers keeps the revocation.
        let removed = SignedSnapshot::sign(
            &SnapshotBody {
                sequence: 3,
                previous: revoked.digest(),
                issued_at: NOW,
                states: world.enrolments(),
                entries: vec![],
            },
            &world.manager,
        )
        .unwrap()
        .verify(&world.manager.public())
        .unwrap();
        let mut seen = DetailsSeen::default();
        for adopted in [&first, &revoked] {
            seen.remember(adopted);
        }
        assert_eq!(revoked.check_successor_seen(&removed, &seen), Ok(true));
        seen.remember(&removed);
        assert_eq!(seen.revisions().collect::<Vec<_>>(), vec![(est.id(), 2)]);
        for (offered, offered_revision) in [(None, None), (Some(revision(1, false)), Some(1))] {
            let back = listed(4, removed.digest(), offered);
            assert_eq!(
                removed.check_successor(&back),
                Ok(true),
                "row 6 alone misses it"
            );
            assert_eq!(
                removed.check_successor_seen(&back, &seen),
                Err(ChainError::DetailsRolledBack {
                    sequence: 4,
                    poc: est.id().clone(),
                    held_revision: 2,
                    offered_revision,
                })
            );
        }
        let back = listed(4, removed.digest(), Some(revision(2, true)));
        assert_eq!(removed.check_successor_seen(&back, &seen), Ok(true));
        // What a node stored comes back the same.
        let stored: Vec<_> = seen.revisions().map(|(p, r)| (p.clone(), r)).collect();
        assert_eq!(DetailsSeen::from_revisions(stored), seen);
    }

    fn details(poc: &str, revoked: bool) -> EntryDetails {
        EntryDetails {
            poc_id: PocId::new(poc).unwrap(),
            revision: 1,
            entity: "CERT-EE".into(),
            person_name: None,
            person_title: Some("Head of incident response".into()),
            phone: Some("+372 000 0000".into()),
            email: Some("cert@example.invalid".into()),
            working_languages: vec![Language::English, Language::Russian],
            language: Language::English,
            english: None,
            revoked,
        }
    }

    fn single(world: &World, entry: DirectoryEntry) -> VerifiedDirectory {
        let body = SnapshotBody {
            sequence: 1,
            previous: SnapshotDigest([0; 32]),
            issued_at: NOW,
            states: world.enrolments(),
            entries: vec![entry],
        };
        SignedSnapshot::sign(&body, &world.manager)
            .unwrap()
            .verify(&world.manager.public())
            .unwrap()
    }

    #[test]
    fn entry_details_must_be_signed_by_the_state_root() {
        let world = World::new();
        let est = world.poc("EST.cert");
        let root = &world.roots[&StateCode::new("EST").unwrap()];
        let signed = SignedEntryDetails::sign(&details("EST.cert", false), root).unwrap();
        let submission = EntrySubmission {
            certificate: est.certificate.certificate().clone(),
            details: signed.clone(),
        };
        let bytes = submission.to_bytes().unwrap();
        let (cert, got) = EntrySubmission::from_bytes(&bytes)
            .unwrap()
            .verify(&root.public())
            .unwrap();
        assert_eq!(cert.poc_id().as_str(), "EST.cert");
        assert_eq!(got.entity, "CERT-EE");
        let dir = single(
            &world,
            DirectoryEntry {
                certificate: est.certificate.certificate().clone(),
                prekeys: vec![],
                revoked: false,
                details: Some(signed),
            },
        );
        assert_eq!(
            dir.entries()[est.id()].details.as_ref().unwrap().entity,
            "CERT-EE"
        );
        // Details signed by another key (the manager forging a phone number):
        // the entry is set aside.
        let other = crate::keys::StateRootKeyPair::from_secret_bytes(&[7; 32]);
        let forged = SignedEntryDetails::sign(&details("EST.cert", false), &other).unwrap();
        assert_eq!(
            EntrySubmission {
                certificate: est.certificate.certificate().clone(),
                details: forged.clone(),
            }
            .verify(&root.public())
            .unwrap_err(),
            CertificateError::BadSignature
        );
        let dir = single(
            &world,
            DirectoryEntry {
                certificate: est.certificate.certificate().clone(),
                prekeys: vec![],
                revoked: false,
                details: Some(forged),
            },
        );
        assert!(dir.entries().is_empty());
        assert!(dir.rejected()[0].reason.to_string().contains("root key"));
        // A State-signed revocation revokes.
        let revoked = SignedEntryDetails::sign(&details("EST.cert", true), root).unwrap();
        let dir = single(
            &world,
            DirectoryEntry {
                certificate: est.certificate.certificate().clone(),
                prekeys: vec![],
                revoked: false,
                details: Some(revoked),
            },
        );
        assert!(matches!(dir.lookup(est.id()), PeerStatus::Revoked));
    }
}

/// The snapshot fetch protocol between a node and the directory service,
/// one request and one response per QUIC stream (ALPN
/// `pocnet-directory/1`). Sans-IO: only the frame encodings.
///
/// Request: `00` (the latest snapshot), `01 || u64be(sequence)` (that
/// snapshot) or `02 || EntrySubmission` (a State-signed entry to list).
/// Response: `00 || signed snapshot` (for a submission: `00 || UTF-8
/// confirmation`) or `01 || UTF-8 reason`.
pub mod fetch {
    /// What a node asks for.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum FetchRequest {
        /// The newest snapshot.
        Latest,
        /// Snapshot number `n`.
        Get(u64),
        /// An encoded [`EntrySubmission`](super::EntrySubmission) to list
        /// (the service checks it under the State's enrolled root key).
        Submit(Vec<u8>),
    }

    impl FetchRequest {
        /// The request frame.
        pub fn encode(&self) -> Vec<u8> {
            match self {
                FetchRequest::Latest => vec![0],
                FetchRequest::Get(n) => {
                    let mut out = vec![1];
                    out.extend_from_slice(&n.to_be_bytes());
                    out
                }
                FetchRequest::Submit(bytes) => {
                    let mut out = Vec::with_capacity(bytes.len() + 1);
                    out.push(2);
                    out.extend_from_slice(bytes);
                    out
                }
            }
        }

        /// Parses a request frame.
        pub fn decode(bytes: &[u8]) -> Option<FetchRequest> {
            match bytes {
                [0] => Some(FetchRequest::Latest),
                [1, rest @ ..] => Some(FetchRequest::Get(u64::from_be_bytes(
                    <[u8; 8]>::try_from(rest).ok()?,
                ))),
                [2, rest @ ..] if !rest.is_empty() => Some(FetchRequest::Submit(rest.to_vec())),
                _ => None,
            }
        }
    }

    /// A response frame carrying a snapshot.
    pub fn snapshot_response(snapshot: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(snapshot.len() + 1);
        out.push(0);
        out.extend_from_slice(snapshot);
        out
    }

    /// A response frame carrying a refusal.
    pub fn error_response(reason: &str) -> Vec<u8> {
        let mut out = vec![1];
        out.extend_from_slice(reason.as_bytes());
        out
    }

    /// Splits a response: the snapshot bytes, or the service's reason.
    pub fn decode_response(bytes: &[u8]) -> Result<&[u8], String> {
        match bytes {
            [0, rest @ ..] => Ok(rest),
            [1, rest @ ..] => Err(String::from_utf8_lossy(rest).into_owned()),
            _ => Err("empty or unknown response from the directory service".into()),
        }
    }
}
