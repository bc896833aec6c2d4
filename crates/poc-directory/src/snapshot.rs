//! Building a signed directory snapshot.
//!
//! The manager enrols State root keys and lists certificates; each
//! certificate is verified against the root key enrolled for the State that
//! issued it before it is included, so the manager cannot (even by mistake)
//! publish a PoC key its State did not sign. Snapshots chain: sequence 1
//! links to the all-zero digest, every later one to the digest of its
//! predecessor, which must verify under the same manager key.

use std::collections::{BTreeMap, BTreeSet};

use poc_proto::certificate::PocCertificate;
use poc_proto::directory::{
    DirectoryEntry, DirectoryError, SignedSnapshot, SnapshotBody, SnapshotDigest, StateEnrolment,
};
use poc_proto::keys::{ManagerKeyPair, StateRootPublicKey};
use poc_proto::{CertificateError, Issuer, PocId, Role, StateCode, Timestamp};

/// A State's enrolment as given to [`build`].
#[derive(Debug, Clone)]
pub struct StateInput {
    /// The State.
    pub state: StateCode,
    /// Its root public key.
    pub root_key: StateRootPublicKey,
    /// Where it came from (a file name), for messages.
    pub source: String,
}

/// A certificate as given to [`build`].
#[derive(Debug, Clone)]
pub struct CertInput {
    /// The certificate.
    pub certificate: PocCertificate,
    /// Where it came from (a file name), for messages.
    pub source: String,
}

/// Everything a snapshot is built from.
#[derive(Debug)]
pub struct BuildInput<'a> {
    /// The manager's key.
    pub manager: &'a ManagerKeyPair,
    /// Enrolled States.
    pub states: Vec<StateInput>,
    /// Certificates to list.
    pub certificates: Vec<CertInput>,
    /// PoCs to list as revoked (each must be among the certificates).
    pub revoke: Vec<PocId>,
    /// This snapshot's sequence number (from 1).
    pub sequence: u64,
    /// The previous snapshot (required from sequence 2 on).
    pub previous: Option<SignedSnapshot>,
    /// Issue time.
    pub issued_at: Timestamp,
}

/// Why a snapshot is not built. Every variant names what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The sequence number is 0.
    #[error("the sequence number starts at 1")]
    SequenceZero,
    /// A State is enrolled twice.
    #[error("{state} is enrolled twice ({first} and {second})")]
    DuplicateState {
        /// The State.
        state: StateCode,
        /// First source.
        first: String,
        /// Second source.
        second: String,
    },
    /// A certificate does not decode.
    #[error("certificate {source_name} does not decode: {reason}")]
    Unreadable {
        /// Its source.
        source_name: String,
        /// Why.
        reason: CertificateError,
    },
    /// A certificate is issued by a State that is not enrolled.
    #[error(
        "certificate {source_name} ({poc_id}) is issued by {state}, which is not enrolled: give --state {state}=<its state-root.pub>"
    )]
    StateNotEnrolled {
        /// Its source.
        source_name: String,
        /// The PoC.
        poc_id: PocId,
        /// The issuing State.
        state: StateCode,
    },
    /// A certificate is not signed by its State's enrolled root key.
    #[error(
        "refused certificate {source_name} ({poc_id}): it does not verify under {state}'s enrolled root key ({reason}); only a certificate signed by the State's own root key may be listed"
    )]
    NotSignedByState {
        /// Its source.
        source_name: String,
        /// The PoC.
        poc_id: PocId,
        /// The State it claims.
        state: StateCode,
        /// What failed.
        reason: CertificateError,
    },
    /// A certificate claims the manager as issuer.
    #[error(
        "certificate {source_name} ({poc_id}) is issued by the directory manager, not a State; State PoCs must be certified by their State's root key"
    )]
    ManagerIssued {
        /// Its source.
        source_name: String,
        /// The PoC.
        poc_id: PocId,
    },
    /// The same PoC is listed twice.
    #[error("{poc_id} is listed twice ({first} and {second}); list one certificate per PoC")]
    DuplicatePoc {
        /// The PoC.
        poc_id: PocId,
        /// First source.
        first: String,
        /// Second source.
        second: String,
    },
    /// A revocation names a PoC that is not listed.
    #[error("cannot revoke {0}: no --cert lists it (a revoked PoC stays listed, marked revoked)")]
    RevokeUnknown(PocId),
    /// Sequence 2 or later without the previous snapshot.
    #[error(
        "snapshot {sequence} must link to snapshot {}: give --previous with that file",
        sequence - 1
    )]
    PreviousMissing {
        /// The sequence being built.
        sequence: u64,
    },
    /// A previous snapshot given for sequence 1.
    #[error("snapshot 1 starts the chain and has no previous snapshot; drop --previous")]
    PreviousUnexpected,
    /// The previous snapshot does not verify under this manager key.
    #[error("the previous snapshot does not verify under this manager key: {0}")]
    PreviousInvalid(DirectoryError),
    /// The previous snapshot is not sequence - 1.
    #[error("the previous snapshot is number {found}, but snapshot {sequence} must follow number {}", sequence - 1)]
    PreviousSequence {
        /// The sequence being built.
        sequence: u64,
        /// The previous snapshot's sequence.
        found: u64,
    },
    /// Signing failed (a limit was exceeded).
    #[error("cannot sign the snapshot: {0}")]
    Sign(DirectoryError),
    /// The signed snapshot does not verify (a bug).
    #[error("the snapshot just signed does not verify: {0}")]
    SelfCheck(String),
}

/// What a built snapshot holds, for the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Sequence number.
    pub sequence: u64,
    /// SHA-256 of the signed snapshot (hex): what the next one links to.
    pub digest: String,
    /// The previous snapshot's digest (hex; all zero for the first).
    pub previous: String,
    /// Issue time (RFC 3339).
    pub issued_at: String,
    /// Enrolled States.
    pub states: Vec<String>,
    /// PoC ids by role.
    pub pocs_by_role: BTreeMap<String, Vec<String>>,
    /// Revoked PoCs.
    pub revoked: Vec<String>,
    /// Things worth a look that did not stop the build.
    pub warnings: Vec<String>,
}

/// Verifies every input, builds the snapshot and signs it.
pub fn build(input: BuildInput<'_>) -> Result<(SignedSnapshot, Summary), BuildError> {
    if input.sequence == 0 {
        return Err(BuildError::SequenceZero);
    }
    let previous = match (input.sequence, &input.previous) {
        (1, None) => SnapshotDigest([0; 32]),
        (1, Some(_)) => return Err(BuildError::PreviousUnexpected),
        (sequence, None) => return Err(BuildError::PreviousMissing { sequence }),
        (sequence, Some(prev)) => {
            let verified = prev
                .verify(&input.manager.public())
                .map_err(BuildError::PreviousInvalid)?;
            if verified.sequence() + 1 != sequence {
                return Err(BuildError::PreviousSequence {
                    sequence,
                    found: verified.sequence(),
                });
            }
            prev.digest()
        }
    };

    let mut roots: BTreeMap<StateCode, (StateRootPublicKey, String)> = BTreeMap::new();
    for s in &input.states {
        if let Some((_, first)) = roots.get(&s.state) {
            return Err(BuildError::DuplicateState {
                state: s.state,
                first: first.clone(),
                second: s.source.clone(),
            });
        }
        roots.insert(s.state, (s.root_key, s.source.clone()));
    }

    let mut warnings = Vec::new();
    let mut listed: BTreeMap<PocId, (String, Role, PocCertificate)> = BTreeMap::new();
    for c in &input.certificates {
        let body = c
            .certificate
            .unverified_body()
            .map_err(|reason| BuildError::Unreadable {
                source_name: c.source.clone(),
                reason,
            })?;
        let state = match body.issuer {
            Issuer::State(state) => state,
            Issuer::DirectoryManager => {
                return Err(BuildError::ManagerIssued {
                    source_name: c.source.clone(),
                    poc_id: body.poc_id,
                });
            }
        };
        let Some((root, _)) = roots.get(&state) else {
            return Err(BuildError::StateNotEnrolled {
                source_name: c.source.clone(),
                poc_id: body.poc_id,
                state,
            });
        };
        let verified =
            c.certificate
                .verify_by_state(root)
                .map_err(|reason| BuildError::NotSignedByState {
                    source_name: c.source.clone(),
                    poc_id: body.poc_id.clone(),
                    state,
                    reason,
                })?;
        if let Err(e) = verified.check_valid_at(input.issued_at) {
            warnings.push(format!("{} ({}): {e}", c.source, body.poc_id));
        }
        if let Some((first, _, _)) = listed.get(&body.poc_id) {
            return Err(BuildError::DuplicatePoc {
                poc_id: body.poc_id,
                first: first.clone(),
                second: c.source.clone(),
            });
        }
        listed.insert(
            body.poc_id,
            (c.source.clone(), verified.role(), c.certificate.clone()),
        );
    }

    let revoked: BTreeSet<PocId> = input.revoke.iter().cloned().collect();
    if let Some(unknown) = revoked.iter().find(|id| !listed.contains_key(*id)) {
        return Err(BuildError::RevokeUnknown(unknown.clone()));
    }
    for state in roots.keys() {
        if !listed.keys().any(|id| id.belongs_to(*state)) {
            warnings.push(format!("{state} is enrolled but lists no PoC yet"));
        }
    }

    let body = SnapshotBody {
        sequence: input.sequence,
        previous,
        issued_at: input.issued_at,
        states: roots
            .iter()
            .map(|(state, (root_key, _))| StateEnrolment {
                state: *state,
                root_key: *root_key,
            })
            .collect(),
        entries: listed
            .iter()
            .map(|(id, (_, _, certificate))| DirectoryEntry {
                certificate: certificate.clone(),
                prekeys: Vec::new(),
                revoked: revoked.contains(id),
                details: None,
            })
            .collect(),
    };
    let signed = SignedSnapshot::sign(&body, input.manager).map_err(BuildError::Sign)?;
    let check = signed
        .verify(&input.manager.public())
        .map_err(|e| BuildError::SelfCheck(e.to_string()))?;
    if !check.rejected().is_empty() || check.entries().len() != listed.len() {
        return Err(BuildError::SelfCheck(format!(
            "{} entries rejected",
            check.rejected().len()
        )));
    }

    let mut pocs_by_role: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, (_, role, _)) in &listed {
        pocs_by_role
            .entry(role.to_string())
            .or_default()
            .push(id.to_string());
    }
    let summary = Summary {
        sequence: input.sequence,
        digest: signed.digest().to_string(),
        previous: previous.to_string(),
        issued_at: input.issued_at.to_string(),
        states: roots.keys().map(ToString::to_string).collect(),
        pocs_by_role,
        revoked: revoked.iter().map(ToString::to_string).collect(),
        warnings,
    };
    Ok((signed, summary))
}
