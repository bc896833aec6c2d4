//! Typed errors.
//!
//! They separate what a hostile or broken peer sent ([`DecodeError`],
//! [`OpenError::BadSignature`], ...), what an incompatible peer sent
//! ([`DecodeError::UnknownVersion`]), what our caller got wrong
//! ([`SealError`]), and our own storage failing ([`OpenError::ReplayCache`]).
//! [`OpenError::code`] gives the detail-free [`RejectCode`] that may go back
//! over the wire.

use crate::identity::{PocId, Role};
use crate::message::{MessageId, MessageKind};
use crate::time::Timestamp;

/// Bytes that do not form a valid value of the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is larger than the limit for this type.
    #[error("{what} is {len} bytes; the limit is {max}")]
    TooLarge {
        /// The type being decoded.
        what: &'static str,
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ended before the value was complete.
    #[error("{what} is truncated")]
    Truncated {
        /// The type being decoded.
        what: &'static str,
    },
    /// Bytes remain after a complete value.
    #[error("{what} is followed by {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// The type being decoded.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// The bytes do not follow the encoding rules (bad tag, invalid UTF-8, ...).
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// The type being decoded.
        what: &'static str,
        /// What the decoder found.
        reason: String,
    },
    /// A field is well-formed but breaks a limit or a format rule.
    #[error("field `{field}` is invalid: {reason}")]
    InvalidField {
        /// Path of the field, e.g. `incident.indicators[3]`.
        field: String,
        /// What rule it breaks.
        reason: String,
    },
    /// The envelope's version is not one this implementation speaks.
    #[error("unknown envelope version {version}; this implementation speaks version 1")]
    UnknownVersion {
        /// The version found.
        version: u16,
    },
}

/// A public key or signature that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not a valid Ed25519 point, or the point has small order.
    #[error("not a valid Ed25519 public key")]
    InvalidEd25519Key,
    /// An X25519 public key of small order (it would give a predictable secret).
    #[error("X25519 public key has small order")]
    WeakX25519Key,
}

/// Why a certificate or signed prekey cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The bytes do not decode.
    #[error("certificate does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The issuer's signature does not verify.
    #[error("certificate signature does not verify under the issuer's key")]
    BadSignature,
    /// `now` is past the end of the validity period.
    #[error("certificate of {poc_id} expired at {valid_until}")]
    Expired {
        /// Subject of the certificate.
        poc_id: PocId,
        /// End of its validity.
        valid_until: Timestamp,
    },
    /// `now` is before the start of the validity period.
    #[error("certificate of {poc_id} is not valid before {valid_from}")]
    NotYetValid {
        /// Subject of the certificate.
        poc_id: PocId,
        /// Start of its validity.
        valid_from: Timestamp,
    },
    /// The directory lists the certificate as revoked.
    #[error("certificate of {poc_id} is revoked")]
    Revoked {
        /// Subject of the certificate.
        poc_id: PocId,
    },
    /// The fields contradict each other (role vs issuer, PoC id vs State, validity).
    #[error("certificate is inconsistent: {0}")]
    Inconsistent(String),
    /// A prekey's signature does not verify under the identity key.
    #[error("prekey {prekey_id} of {poc_id} has a bad signature")]
    BadPrekeySignature {
        /// Owner of the prekey.
        poc_id: PocId,
        /// The prekey.
        prekey_id: u64,
    },
    /// A key inside the certificate is invalid.
    #[error("certificate holds an invalid key: {0}")]
    Key(#[from] KeyError),
}

/// Failure of the replay cache the caller provides (its storage, not the peer).
#[derive(Debug, thiserror::Error)]
#[error("replay cache failed: {0}")]
pub struct ReplayCacheError(pub Box<dyn std::error::Error + Send + Sync>);

/// Why an envelope was rejected by [`crate::envelope::Recipient::open`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Malformed, truncated, oversize or trailing bytes, or an unknown version.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The envelope's expiry has passed.
    #[error("envelope expired at {expires_at}")]
    Expired {
        /// Expiry from the outer header.
        expires_at: Timestamp,
    },
    /// The envelope or the message inside is addressed to someone else.
    #[error("envelope is addressed to another recipient")]
    WrongRecipient,
    /// The envelope was sealed to a key-agreement key we do not hold (never
    /// had, or deleted after its validity: forward secrecy).
    #[error("envelope was sealed to prekey {prekey_id}, which this node does not hold")]
    UnknownPrekey {
        /// The prekey id named by the envelope.
        prekey_id: u64,
    },
    /// Decryption failed: the envelope was altered or sealed to another key.
    #[error("envelope does not decrypt (tampered, or sealed to another key)")]
    Undecryptable,
    /// The sender is not in the directory.
    #[error("sender {poc_id} is not in the directory")]
    UnknownSender {
        /// Claimed sender.
        poc_id: PocId,
    },
    /// The sender's certificate is expired, not yet valid or revoked.
    #[error("sender certificate unusable: {0}")]
    SenderCertificate(CertificateError),
    /// The signature does not verify under the sender's identity key.
    #[error("message signature does not verify for sender {poc_id}")]
    BadSignature {
        /// Claimed sender.
        poc_id: PocId,
    },
    /// The message's timestamp is too old or too far in the future.
    #[error("message timestamp {created_at} is outside the accepted window around {now}")]
    TimestampOutsideWindow {
        /// Timestamp in the message.
        created_at: Timestamp,
        /// Our clock.
        now: Timestamp,
    },
    /// The roles of sender and recipient may not exchange this kind of message.
    #[error(
        "role policy refuses {kind} messages from a {sender_role} PoC to a {recipient_role} PoC of another State (diplomatic PoCs write to diplomatic PoCs, technical to technical)"
    )]
    RoleNotAllowed {
        /// Sender's role.
        sender_role: Role,
        /// Recipient's role.
        recipient_role: Role,
        /// Kind of message.
        kind: MessageKind,
    },
    /// The message id was already seen from this sender.
    #[error("message {message_id} from {sender} was already received (replay)")]
    Replay {
        /// Sender.
        sender: PocId,
        /// Replayed id.
        message_id: MessageId,
    },
    /// Our own replay cache failed; the envelope was not judged.
    #[error(transparent)]
    ReplayCache(#[from] ReplayCacheError),
}

/// Detail-free rejection codes that may be sent back to a peer (SPEC.md
/// section "Error codes"). They say what class of problem occurred and
/// nothing an attacker could use to probe keys or contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum RejectCode {
    /// Bytes malformed, truncated, oversize or with trailing data.
    Malformed = 1,
    /// Envelope version not supported.
    UnknownVersion = 2,
    /// Envelope expired.
    Expired = 3,
    /// Not addressed to this recipient.
    WrongRecipient = 4,
    /// Sealed to a prekey the recipient does not hold.
    UnknownPrekey = 5,
    /// Decryption failed.
    Undecryptable = 6,
    /// Sender unknown, or its certificate unusable.
    UnknownSender = 7,
    /// Signature invalid.
    BadSignature = 8,
    /// Timestamp outside the accepted window.
    StaleTimestamp = 9,
    /// Role policy forbids this exchange.
    RoleNotAllowed = 10,
    /// Message id already received.
    Replay = 11,
    /// The recipient failed internally; try again later.
    Internal = 12,
    /// The message's exercise marker differs from its thread's: a real
    /// message on an exercise thread, or an exercise message on a real one
    /// (or another exercise's). Exercises must never be mistaken for real
    /// incidents.
    ExerciseMismatch = 13,
}

impl RejectCode {
    /// The code's number on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Parses a number from the wire; unknown codes are `None`.
    pub fn from_u16(value: u16) -> Option<Self> {
        use RejectCode::*;
        [
            Malformed,
            UnknownVersion,
            Expired,
            WrongRecipient,
            UnknownPrekey,
            Undecryptable,
            UnknownSender,
            BadSignature,
            StaleTimestamp,
            RoleNotAllowed,
            Replay,
            Internal,
            ExerciseMismatch,
        ]
        .into_iter()
        .find(|code| code.as_u16() == value)
    }
}

impl OpenError {
    /// The code to report to the sender, without detail.
    pub fn code(&self) -> RejectCode {
        match self {
            OpenError::Decode(DecodeError::UnknownVersion { .. }) => RejectCode::UnknownVersion,
            OpenError::Decode(_) => RejectCode::Malformed,
            OpenError::Expired { .. } => RejectCode::Expired,
            OpenError::WrongRecipient => RejectCode::WrongRecipient,
            OpenError::UnknownPrekey { .. } => RejectCode::UnknownPrekey,
            OpenError::Undecryptable => RejectCode::Undecryptable,
            OpenError::UnknownSender { .. } | OpenError::SenderCertificate(_) => {
                RejectCode::UnknownSender
            }
            OpenError::BadSignature { .. } => RejectCode::BadSignature,
            OpenError::TimestampOutsideWindow { .. } => RejectCode::StaleTimestamp,
            OpenError::RoleNotAllowed { .. } => RejectCode::RoleNotAllowed,
            OpenError::Replay { .. } => RejectCode::Replay,
            OpenError::ReplayCache(_) => RejectCode::Internal,
        }
    }
}

/// Why a message could not be sealed (caller error, never peer input).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The message breaks a limit or rule a receiver would enforce.
    #[error("message is not valid: {0}")]
    Invalid(#[from] DecodeError),
    /// The sealed envelope would exceed the maximum envelope size.
    #[error("sealed envelope would be {len} bytes; the limit is {max}")]
    TooLarge {
        /// Size it would have.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header's sender is not the PoC whose key signs.
    #[error("message sender {in_header} does not match the signing PoC {signer}")]
    SenderMismatch {
        /// Sender named in the message header.
        in_header: PocId,
        /// PoC of the signing certificate.
        signer: PocId,
    },
    /// The header's recipient is not the PoC whose keys we seal to.
    #[error("message recipient {in_header} does not match the sealing target {target}")]
    RecipientMismatch {
        /// Recipient named in the message header.
        in_header: PocId,
        /// PoC of the recipient certificate.
        target: PocId,
    },
    /// The identity or prekey secret does not match the public key it is paired with.
    #[error("the secret key does not match the certificate's public key")]
    KeyMismatch,
    /// The prekey was verified against another certificate of the
    /// recipient's PoC id (one it had before being re-issued, say), whose
    /// identity key is not the one sealed for.
    #[error(
        "recipient prekey {prekey_id:016x} was certified by another key than {poc_id}'s certificate; sync the directory for a current one"
    )]
    PrekeyOfAnotherCertificate {
        /// The recipient.
        poc_id: PocId,
        /// The prekey.
        prekey_id: u64,
    },
    /// The chosen prekey is not valid at the message's creation time.
    #[error(
        "recipient prekey {prekey_id:016x} is not valid at the message's creation time; sync the directory for a current one"
    )]
    PrekeyNotValid {
        /// The prekey.
        prekey_id: u64,
    },
    /// The expiry is not after the message's creation time.
    #[error("envelope expiry must be after the message's creation time")]
    ExpiryNotAfterCreation,
    /// The expiry is further from creation than receivers accept messages.
    #[error(
        "envelope expiry must be at most {max} after the message's creation (receivers refuse older messages)"
    )]
    ExpiryTooFar {
        /// The largest allowed span.
        max: crate::time::Seconds,
    },
    /// The role policy forbids this exchange; the recipient would refuse it.
    #[error(
        "role policy forbids {kind} messages from a {sender_role} PoC to a {recipient_role} PoC of another State (diplomatic PoCs write to diplomatic PoCs, technical to technical)"
    )]
    RoleNotAllowed {
        /// Sender's role.
        sender_role: Role,
        /// Recipient's role.
        recipient_role: Role,
        /// Kind of message.
        kind: MessageKind,
    },
    /// A different prekey is already held under this id.
    #[error("prekey id {prekey_id:016x} is already used by another key")]
    PrekeyIdInUse {
        /// The id.
        prekey_id: u64,
    },
    /// The recipient's key-agreement key gives no usable shared secret.
    #[error("recipient prekey is unusable: {0}")]
    Key(#[from] KeyError),
    /// The AEAD refused to seal (cannot happen with valid key sizes).
    #[error("encryption failed")]
    Crypto,
}
