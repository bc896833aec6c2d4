//! Verifying a snapshot and listing what it says.

use poc_proto::Timestamp;
use poc_proto::certificate::Endpoint;
use poc_proto::directory::{DirectoryError, SignedSnapshot};
use poc_proto::keys::ManagerPublicKey;
use serde::Serialize;

/// An enrolled State.
#[derive(Debug, Clone, Serialize)]
pub struct StateListing {
    /// ISO 3166-1 alpha-3 code.
    pub state: String,
    /// Root public key (hex).
    pub root_key: String,
}

/// A listed PoC whose certificate verified under its State's root key.
#[derive(Debug, Clone, Serialize)]
pub struct PocListing {
    /// PoC id.
    pub poc_id: String,
    /// `diplomatic`, `technical` or `directory-manager`.
    pub role: String,
    /// `active`, `revoked`, `expired` or `not yet valid` at the time of listing.
    pub status: String,
    /// Certificate validity start (RFC 3339).
    pub valid_from: String,
    /// Certificate validity end (RFC 3339).
    pub valid_until: String,
    /// Identity public key (hex).
    pub identity_key: String,
    /// Prekey id (hex).
    pub prekey_id: String,
    /// Endpoints, `direct HOST:PORT` or `relay HOST:PORT`.
    pub endpoints: Vec<String>,
}

/// An entry that did not verify.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedListing {
    /// The PoC it claims to be, if that much decoded.
    pub poc_id: Option<String>,
    /// Why it was refused.
    pub reason: String,
}

/// Everything a verified snapshot says.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// Sequence number.
    pub sequence: u64,
    /// Digest (hex).
    pub digest: String,
    /// Previous snapshot's digest (hex).
    pub previous: String,
    /// Issue time (RFC 3339).
    pub issued_at: String,
    /// Enrolled States.
    pub states: Vec<StateListing>,
    /// Verified PoCs.
    pub pocs: Vec<PocListing>,
    /// Entries that did not verify (a sound snapshot has none).
    pub rejected: Vec<RejectedListing>,
}

/// Verifies `bytes` under the manager key and lists the snapshot, judging
/// validity at `now`.
pub fn list(
    bytes: &[u8],
    manager: &ManagerPublicKey,
    now: Timestamp,
) -> Result<Listing, DirectoryError> {
    let directory = SignedSnapshot::from_bytes(bytes)?.verify(manager)?;
    let states = directory
        .states()
        .map(|state| StateListing {
            state: state.to_string(),
            root_key: directory
                .state_root(state)
                .map(|k| hex::encode(k.to_bytes()))
                .unwrap_or_default(),
        })
        .collect();
    let pocs = directory
        .entries()
        .iter()
        .map(|(id, entry)| {
            let body = entry.certificate.body();
            let status = if entry.revoked {
                "revoked"
            } else if now > body.valid_until {
                "expired"
            } else if now < body.valid_from {
                "not yet valid"
            } else {
                "active"
            };
            PocListing {
                poc_id: id.to_string(),
                role: body.role.to_string(),
                status: status.to_owned(),
                valid_from: body.valid_from.to_string(),
                valid_until: body.valid_until.to_string(),
                identity_key: hex::encode(body.identity_key.to_bytes()),
                prekey_id: body.prekey.id.to_string(),
                endpoints: body
                    .endpoints
                    .iter()
                    .map(|e| match e {
                        Endpoint::Direct { address } => format!("direct {address}"),
                        Endpoint::Relay { address } => format!("relay {address}"),
                    })
                    .collect(),
            }
        })
        .collect();
    let rejected = directory
        .rejected()
        .iter()
        .map(|r| RejectedListing {
            poc_id: r.poc_id.as_ref().map(ToString::to_string),
            reason: r.reason.to_string(),
        })
        .collect();
    Ok(Listing {
        sequence: directory.sequence(),
        digest: directory.digest().to_string(),
        previous: directory.previous().to_string(),
        issued_at: directory.issued_at().to_string(),
        states,
        pocs,
        rejected,
    })
}
