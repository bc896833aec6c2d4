//! PoC certificates and signed prekeys.
//!
//! Both travel as `(bytes, signature)` pairs: the signature covers the exact
//! encoded bytes, which are kept as received and only decoded for reading.
//! The only way to get a [`VerifiedCertificate`] or [`VerifiedPrekey`] is to
//! check the signature, so code that takes one cannot be handed an unchecked key.

use serde::{Deserialize, Serialize};

use crate::codec::{self, limits};
use crate::error::CertificateError;
use crate::identity::{Issuer, PocId, Role};
use crate::keys::{
    IdentityKeyPair, IdentityPublicKey, ManagerKeyPair, ManagerPublicKey, PrekeyPublic, Signature,
    SignatureLabel, StateRootKeyPair, StateRootPublicKey,
};
use crate::time::Timestamp;
use crate::validate::{Validate, Validator};

/// Identifies one prekey of a PoC; chosen at random by its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PrekeyId(pub u64);

impl std::fmt::Display for PrekeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A key-agreement key with its id and validity period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prekey {
    /// The prekey's id, named by envelopes sealed to it.
    pub id: PrekeyId,
    /// The X25519 public key.
    pub public: PrekeyPublic,
    /// Senders may seal to it from this time.
    pub valid_from: Timestamp,
    /// Senders stop sealing to it after this time; its owner deletes the
    /// secret after this time plus a grace period.
    pub valid_until: Timestamp,
}

impl Prekey {
    /// Whether senders may seal to this prekey at `now`.
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.valid_from <= now && now <= self.valid_until
    }
}

impl Validate for Prekey {
    fn validate(&self, v: &mut Validator) {
        if self.valid_from >= self.valid_until {
            v.field("valid_until", |v| v.fail("must be after valid_from"));
        }
    }
}

/// Where a PoC's node can be reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    /// The node's own QUIC endpoint, `host:port`.
    Direct {
        /// `host:port`.
        address: String,
    },
    /// A relay that holds the PoC's mailbox, `host:port`.
    Relay {
        /// `host:port`.
        address: String,
    },
}

impl Validate for Endpoint {
    fn validate(&self, v: &mut Validator) {
        let (Endpoint::Direct { address } | Endpoint::Relay { address }) = self;
        v.non_empty_short_text("address", address);
    }
}

/// What a certificate states about a PoC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBody {
    /// The PoC's id; for a State's PoC it starts with the State's code.
    pub poc_id: PocId,
    /// Who signs this certificate.
    pub issuer: Issuer,
    /// The PoC's role.
    pub role: Role,
    /// The PoC's long-term identity key.
    pub identity_key: IdentityPublicKey,
    /// The PoC's key-agreement key at issuance; later prekeys are signed by
    /// the identity key (see [`SignedPrekey`]) so they rotate without the
    /// offline root key.
    pub prekey: Prekey,
    /// Start of validity.
    pub valid_from: Timestamp,
    /// End of validity.
    pub valid_until: Timestamp,
    /// How to reach the PoC's node.
    pub endpoints: Vec<Endpoint>,
}

impl Validate for CertificateBody {
    fn validate(&self, v: &mut Validator) {
        v.field("prekey", |v| self.prekey.validate(v));
        if self.valid_from >= self.valid_until {
            v.field("valid_until", |v| v.fail("must be after valid_from"));
        }
        v.list("endpoints", &self.endpoints, limits::MAX_ENDPOINTS);
        match (self.issuer, self.role) {
            (Issuer::State(state), Role::Diplomatic | Role::Technical) => {
                if !self.poc_id.belongs_to(state) {
                    v.field("poc_id", |v| {
                        v.fail(format!(
                            "must start with the issuing State's code, `{state}.`"
                        ))
                    });
                }
            }
            (Issuer::DirectoryManager, Role::DirectoryManager) => {
                // Otherwise the manager could list its own key under a
                // State PoC's id (ahead of the genuine entry) and speak as it.
                if let Some(state) = self.poc_id.state() {
                    v.field("poc_id", |v| {
                        v.fail(format!(
                            "the directory manager's own id must not be a PoC id of {state} (`{state}.`)"
                        ))
                    });
                }
            }
            (issuer, role) => v.field("role", |v| {
                v.fail(format!("role {role} cannot be certified by {issuer:?}"))
            }),
        }
    }
}

/// A PoC certificate as it travels: the encoded [`CertificateBody`] and the
/// issuer's signature over exactly those bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PocCertificate {
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    signature: Signature,
}

impl Validate for PocCertificate {
    fn validate(&self, v: &mut Validator) {
        v.max_len("body", self.body.len(), limits::MAX_CERTIFICATE_BYTES);
    }
}

impl std::fmt::Debug for PocCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PocCertificate")
            .field("body_len", &self.body.len())
            .field("signature", &self.signature)
            .finish()
    }
}

impl PocCertificate {
    /// Issues a certificate for one of a State's PoCs with the State's root key.
    pub fn issue_by_state(
        body: &CertificateBody,
        root: &StateRootKeyPair,
    ) -> Result<Self, CertificateError> {
        if !matches!(body.issuer, Issuer::State(_)) {
            return Err(CertificateError::Inconsistent(
                "a State root key can only issue certificates with a State issuer".into(),
            ));
        }
        let bytes = codec::encode(body)?;
        let signature = root.sign(SignatureLabel::PocCertificate, &bytes);
        Ok(Self {
            body: bytes,
            signature,
        })
    }

    /// Issues the directory manager's own (ping) certificate.
    pub fn issue_by_manager(
        body: &CertificateBody,
        manager: &ManagerKeyPair,
    ) -> Result<Self, CertificateError> {
        if body.issuer != Issuer::DirectoryManager {
            return Err(CertificateError::Inconsistent(
                "the manager key only issues certificates with the manager as issuer".into(),
            ));
        }
        let bytes = codec::encode(body)?;
        let signature = manager.sign(SignatureLabel::PocCertificate, &bytes);
        Ok(Self {
            body: bytes,
            signature,
        })
    }

    /// Decodes a certificate (not yet verified).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertificateError> {
        Ok(codec::decode(bytes, limits::MAX_CERTIFICATE_BYTES + 128)?)
    }

    /// Encodes the certificate.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode_signed(&self.body, &self.signature.0)
    }

    /// The body, decoded but **not verified**: for routing a verification
    /// to the right issuer key, never for trusting its content.
    pub fn unverified_body(&self) -> Result<CertificateBody, CertificateError> {
        Ok(codec::decode(&self.body, limits::MAX_CERTIFICATE_BYTES)?)
    }

    /// Verifies a State-issued certificate against that State's root key.
    pub fn verify_by_state(
        &self,
        root: &StateRootPublicKey,
    ) -> Result<VerifiedCertificate, CertificateError> {
        let body = self.unverified_body()?;
        if !matches!(body.issuer, Issuer::State(_)) {
            return Err(CertificateError::Inconsistent(
                "certificate is not issued by a State".into(),
            ));
        }
        if !root.verify(SignatureLabel::PocCertificate, &self.body, &self.signature) {
            return Err(CertificateError::BadSignature);
        }
        VerifiedCertificate::new(body, self.clone())
    }

    /// [`verify_by_state`](Self::verify_by_state) for a caller that has
    /// already decoded the body and parsed the root key (a directory
    /// snapshot verifies thousands of entries under a few root keys).
    pub(crate) fn verify_by_state_parsed(
        &self,
        body: CertificateBody,
        root: &ed25519_dalek::VerifyingKey,
    ) -> Result<VerifiedCertificate, CertificateError> {
        if !matches!(body.issuer, Issuer::State(_)) {
            return Err(CertificateError::Inconsistent(
                "certificate is not issued by a State".into(),
            ));
        }
        if !crate::keys::verify_parsed(
            root,
            SignatureLabel::PocCertificate,
            &self.body,
            &self.signature,
        ) {
            return Err(CertificateError::BadSignature);
        }
        VerifiedCertificate::new(body, self.clone())
    }

    /// Verifies the manager's certificate against the manager key.
    pub fn verify_by_manager(
        &self,
        manager: &ManagerPublicKey,
    ) -> Result<VerifiedCertificate, CertificateError> {
        let body = self.unverified_body()?;
        if body.issuer != Issuer::DirectoryManager {
            return Err(CertificateError::Inconsistent(
                "certificate is not issued by the directory manager".into(),
            ));
        }
        if !manager.verify(SignatureLabel::PocCertificate, &self.body, &self.signature) {
            return Err(CertificateError::BadSignature);
        }
        VerifiedCertificate::new(body, self.clone())
    }
}

/// A certificate whose issuer signature has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    body: CertificateBody,
    certificate: PocCertificate,
    /// The identity key, parsed once: every message from this PoC is
    /// verified against it.
    identity: ed25519_dalek::VerifyingKey,
}

impl VerifiedCertificate {
    fn new(body: CertificateBody, certificate: PocCertificate) -> Result<Self, CertificateError> {
        let identity = crate::keys::checked_verifying_key(&body.identity_key.to_bytes())?;
        Ok(VerifiedCertificate {
            body,
            certificate,
            identity,
        })
    }

    /// Verifies a signature by this PoC's identity key.
    pub(crate) fn verify_signature(
        &self,
        label: SignatureLabel,
        bytes: &[u8],
        signature: &Signature,
    ) -> bool {
        crate::keys::verify_parsed(&self.identity, label, bytes, signature)
    }

    /// What the certificate states.
    pub fn body(&self) -> &CertificateBody {
        &self.body
    }

    /// The PoC's id.
    pub fn poc_id(&self) -> &PocId {
        &self.body.poc_id
    }

    /// The PoC's role.
    pub fn role(&self) -> Role {
        self.body.role
    }

    /// The certificate as signed, for storing or forwarding.
    pub fn certificate(&self) -> &PocCertificate {
        &self.certificate
    }

    /// The mailbox id envelopes for this PoC carry in their outer header.
    pub fn mailbox(&self) -> MailboxId {
        MailboxId::for_identity(&self.body.identity_key)
    }

    /// Checks the validity period at `now`.
    pub fn check_valid_at(&self, now: Timestamp) -> Result<(), CertificateError> {
        if now < self.body.valid_from {
            return Err(CertificateError::NotYetValid {
                poc_id: self.body.poc_id.clone(),
                valid_from: self.body.valid_from,
            });
        }
        if now > self.body.valid_until {
            return Err(CertificateError::Expired {
                poc_id: self.body.poc_id.clone(),
                valid_until: self.body.valid_until,
            });
        }
        Ok(())
    }

    /// The certificate's own prekey, as a verified prekey.
    pub fn initial_prekey(&self) -> VerifiedPrekey {
        VerifiedPrekey {
            owner: self.body.poc_id.clone(),
            certified_by: self.body.identity_key,
            prekey: self.body.prekey.clone(),
        }
    }

    /// Verifies a rotated prekey against this PoC's identity key.
    pub fn verify_prekey(&self, signed: &SignedPrekey) -> Result<VerifiedPrekey, CertificateError> {
        let statement: PrekeyStatement = codec::decode(&signed.statement, 1024)?;
        let bad = || CertificateError::BadPrekeySignature {
            poc_id: self.body.poc_id.clone(),
            prekey_id: statement.prekey.id.0,
        };
        if statement.owner != self.body.poc_id {
            return Err(bad());
        }
        if !self.verify_signature(SignatureLabel::Prekey, &signed.statement, &signed.signature) {
            return Err(bad());
        }
        Ok(VerifiedPrekey {
            owner: statement.owner,
            certified_by: self.body.identity_key,
            prekey: statement.prekey,
        })
    }
}

/// The 16-byte routing id of a PoC's mailbox, the only recipient information
/// in an envelope's outer header.
///
/// `mailbox = SHA-256("pocnet/v1 mailbox\0" || identity_key)[0..16]`
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailboxId(pub [u8; 16]);

impl MailboxId {
    /// Derives the mailbox id of a PoC from its identity key.
    pub fn for_identity(key: &IdentityPublicKey) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"pocnet/v1 mailbox\0");
        ctx.update(&key.to_bytes());
        let digest = ctx.finish();
        let mut id = [0u8; 16];
        id.copy_from_slice(digest.as_ref().get(..16).unwrap_or(&[0u8; 16]));
        MailboxId(id)
    }
}

impl std::fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MailboxId({self})")
    }
}

impl std::fmt::Display for MailboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What a signed prekey states: whose it is and the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PrekeyStatement {
    owner: PocId,
    prekey: Prekey,
}

impl Validate for PrekeyStatement {
    fn validate(&self, v: &mut Validator) {
        v.field("prekey", |v| self.prekey.validate(v));
    }
}

/// A rotated key-agreement key, signed by its owner's identity key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPrekey {
    #[serde(with = "serde_bytes")]
    statement: Vec<u8>,
    signature: Signature,
}

impl std::fmt::Debug for SignedPrekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedPrekey")
            .field("statement_len", &self.statement.len())
            .field("signature", &self.signature)
            .finish()
    }
}

impl Validate for SignedPrekey {
    fn validate(&self, v: &mut Validator) {
        v.max_len("statement", self.statement.len(), 1024);
    }
}

impl SignedPrekey {
    /// Signs a new prekey of `owner` with its identity key.
    pub fn sign(
        owner: &PocId,
        prekey: &Prekey,
        identity: &IdentityKeyPair,
    ) -> Result<Self, CertificateError> {
        let statement = codec::encode(&PrekeyStatement {
            owner: owner.clone(),
            prekey: prekey.clone(),
        })?;
        let signature = identity.sign(SignatureLabel::Prekey, &statement);
        Ok(Self {
            statement,
            signature,
        })
    }

    /// Decodes a signed prekey (not yet verified).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertificateError> {
        Ok(codec::decode(bytes, 1024 + 128)?)
    }

    /// Encodes the signed prekey.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode_signed(&self.statement, &self.signature.0)
    }
}

/// A prekey whose signature (by the root via the certificate, or by the
/// identity key) has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPrekey {
    owner: PocId,
    /// The identity key of the certificate it was verified against: a PoC
    /// id outlives a re-issued certificate, so the id alone does not tie
    /// the prekey to the certificate a sender seals for.
    certified_by: IdentityPublicKey,
    prekey: Prekey,
}

impl VerifiedPrekey {
    /// The PoC the prekey belongs to.
    pub fn owner(&self) -> &PocId {
        &self.owner
    }

    /// The identity key of the certificate the prekey was verified
    /// against (its own, or the one that signed it).
    pub fn certified_by(&self) -> &IdentityPublicKey {
        &self.certified_by
    }

    /// The prekey.
    pub fn prekey(&self) -> &Prekey {
        &self.prekey
    }
}
