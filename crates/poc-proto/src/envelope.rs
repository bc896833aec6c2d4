//! Sealed envelopes: sign, then seal, bound to both parties.
//!
//! # Construction (version 1)
//!
//! Sealing a [`Message`] `m` from sender `S` to recipient `R`, whose chosen
//! signed prekey is `(id, P)`, with a fresh ephemeral X25519 secret `e`:
//!
//! 1. `content = encode(m)`; the header inside names `S`, `R`, the message
//!    id and the creation time, so the signature below covers all of them.
//! 2. `signature = Ed25519(S.identity, "pocnet/v1 message\0" || content)`.
//! 3. `plaintext = u64le(len(content)) || content || signature`.
//! 4. `E = X25519(e, 9)`, `dh = X25519(e, P)`; an all-zero `dh` (small-order
//!    `P`) is refused.
//! 5. `transcript = "pocnet/v1 seal\0" || u16le(1) || mailbox(R) ||
//!    u64le(expires_at) || E || P || u64le(id)`.
//! 6. `key || nonce = HKDF-SHA256(salt = "pocnet/v1 seal\0", ikm = dh,
//!    info = transcript, L = 44)`: a 32-byte key and a 12-byte nonce, used once
//!    because `e` is used once.
//! 7. `ciphertext = ChaCha20-Poly1305(key, nonce, aad = transcript, plaintext)`.
//! 8. The envelope is `u16le(1) || mailbox(R) || u64le(expires_at) ||
//!    u64le(len(body)) || body` with `body = E || u64le(id) ||
//!    u64le(len(ciphertext)) || ciphertext`.
//!
//! The outer header (version, mailbox, expiry, length) is all a relay reads
//! ([`OuterHeader::parse`]); the sender's identity is only inside. Opening
//! reverses the steps and then checks, in order: recipient, sender
//! certificate, signature over the exact content bytes received, timestamp
//! window, role policy, and finally the replay cache (last, so forged
//! envelopes cannot fill it).
//!
//! # Versions
//!
//! The first two bytes are the version. A receiver reads them before
//! anything else and refuses versions it does not speak with
//! [`DecodeError::UnknownVersion`]. Versions after 1 may change everything
//! after the outer header (a hybrid post-quantum KEM, per-peer sessions); the
//! outer header's layout is fixed for all versions so relays can route any.

use std::collections::{BTreeMap, HashMap};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::certificate::{MailboxId, PrekeyId, VerifiedCertificate, VerifiedPrekey};
use crate::codec::{self, fixed_bytes, limits};
use crate::error::{DecodeError, OpenError, ReplayCacheError, SealError};
use crate::identity::PocId;
use crate::keys::{EphemeralSecret, IdentityKeyPair, PrekeySecret, Signature, SignatureLabel};
use crate::message::{Message, MessageId};
use crate::policy;
use crate::time::{Seconds, Timestamp};
use crate::validate::{Validate, Validator};

/// The envelope version this implementation speaks.
pub const VERSION: u16 = 1;

/// Bytes of the outer header before the body: version, mailbox, expiry, length.
pub const OUTER_HEADER_LEN: usize = 2 + 16 + 8 + 8;

const SEAL_LABEL: &[u8] = b"pocnet/v1 seal\0";
const AEAD_TAG_LEN: usize = 16;

/// The routing header of an envelope: everything a relay may learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterHeader {
    /// Envelope version.
    pub version: u16,
    /// Recipient's mailbox.
    pub mailbox: MailboxId,
    /// After this time the envelope may be dropped unread.
    pub expires_at: Timestamp,
    /// Length of the body that follows the header.
    pub body_len: u64,
}

impl OuterHeader {
    /// Parses the outer header of an envelope of any version, and checks that
    /// the body length matches the input exactly. Reads nothing else.
    pub fn parse(envelope: &[u8]) -> Result<Self, DecodeError> {
        if envelope.len() > limits::MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge {
                what: "Envelope",
                len: envelope.len(),
                max: limits::MAX_ENVELOPE_BYTES,
            });
        }
        let header = OuterHeader {
            version: u16::from_le_bytes(fixed_at(envelope, 0)?),
            mailbox: MailboxId(fixed_at(envelope, 2)?),
            expires_at: Timestamp(u64::from_le_bytes(fixed_at(envelope, 18)?)),
            body_len: u64::from_le_bytes(fixed_at(envelope, 26)?),
        };
        let actual = (envelope.len() - OUTER_HEADER_LEN) as u64;
        match header.body_len.cmp(&actual) {
            std::cmp::Ordering::Greater => Err(DecodeError::Truncated { what: "Envelope" }),
            std::cmp::Ordering::Less => Err(DecodeError::TrailingBytes {
                what: "Envelope",
                extra: (actual - header.body_len) as usize,
            }),
            std::cmp::Ordering::Equal => Ok(header),
        }
    }
}

/// The `N` bytes of `bytes` starting at `start`.
fn fixed_at<const N: usize>(bytes: &[u8], start: usize) -> Result<[u8; N], DecodeError> {
    bytes
        .get(start..start + N)
        .and_then(|slice| slice.try_into().ok())
        .ok_or(DecodeError::Truncated { what: "Envelope" })
}

/// The wire form of a version-1 envelope.
#[derive(Serialize, Deserialize)]
struct EnvelopeV1 {
    version: u16,
    mailbox: MailboxId,
    expires_at: Timestamp,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

impl Validate for EnvelopeV1 {
    fn validate(&self, _: &mut Validator) {}
}

/// The body of a version-1 envelope.
#[derive(Serialize, Deserialize)]
struct SealedBodyV1 {
    ephemeral: [u8; 32],
    prekey_id: PrekeyId,
    #[serde(with = "serde_bytes")]
    ciphertext: Vec<u8>,
}

impl Validate for SealedBodyV1 {
    fn validate(&self, v: &mut Validator) {
        if self.ciphertext.len() < AEAD_TAG_LEN {
            v.field("ciphertext", |v| v.fail("shorter than the AEAD tag"));
        }
    }
}

/// The signed message inside the seal: content bytes and the signature over them.
#[derive(Serialize, Deserialize)]
struct SignedMessage {
    #[serde(with = "serde_bytes")]
    content: Vec<u8>,
    #[serde(with = "fixed_bytes")]
    signature: [u8; 64],
}

impl Validate for SignedMessage {
    fn validate(&self, _: &mut Validator) {}
}

/// A sealed envelope ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEnvelope {
    bytes: Vec<u8>,
    message_id: MessageId,
    content: Vec<u8>,
    signature: Signature,
}

impl SealedEnvelope {
    /// The envelope's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Consumes the envelope into its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The id of the message inside (known to the sender only).
    pub fn message_id(&self) -> MessageId {
        self.message_id
    }

    /// The exact signed content bytes inside, for the sender's own record.
    pub fn content(&self) -> &[u8] {
        &self.content
    }

    /// The sender's signature over [`Self::content`].
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
}

impl std::fmt::Debug for SealedEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedEnvelope")
            .field("len", &self.bytes.len())
            .field("message_id", &self.message_id)
            .finish()
    }
}

/// A PoC able to sign and seal: its verified certificate and identity key.
pub struct Sender<'a> {
    certificate: &'a VerifiedCertificate,
    identity: &'a IdentityKeyPair,
}

impl<'a> Sender<'a> {
    /// Pairs a certificate with its identity key; refuses a key that is not
    /// the certificate's.
    pub fn new(
        certificate: &'a VerifiedCertificate,
        identity: &'a IdentityKeyPair,
    ) -> Result<Self, SealError> {
        if identity.public() != certificate.body().identity_key {
            return Err(SealError::KeyMismatch);
        }
        Ok(Sender {
            certificate,
            identity,
        })
    }

    /// Signs `message` and seals it to `recipient`'s `prekey` (see the module
    /// documentation for the construction). `ephemeral` is consumed.
    pub fn seal(
        &self,
        message: &Message,
        recipient: &VerifiedCertificate,
        prekey: &VerifiedPrekey,
        expires_at: Timestamp,
        ephemeral: EphemeralSecret,
    ) -> Result<SealedEnvelope, SealError> {
        let header = &message.header;
        if &header.sender != self.certificate.poc_id() {
            return Err(SealError::SenderMismatch {
                in_header: header.sender.clone(),
                signer: self.certificate.poc_id().clone(),
            });
        }
        if &header.recipient != recipient.poc_id() || prekey.owner() != recipient.poc_id() {
            return Err(SealError::RecipientMismatch {
                in_header: header.recipient.clone(),
                target: recipient.poc_id().clone(),
            });
        }
        if prekey.certified_by() != &recipient.body().identity_key {
            return Err(SealError::PrekeyOfAnotherCertificate {
                poc_id: recipient.poc_id().clone(),
                prekey_id: prekey.prekey().id.0,
            });
        }
        if !prekey.prekey().is_valid_at(header.created_at) {
            return Err(SealError::PrekeyNotValid {
                prekey_id: prekey.prekey().id.0,
            });
        }
        if expires_at <= header.created_at {
            return Err(SealError::ExpiryNotAfterCreation);
        }
        if expires_at > header.created_at.plus(MAX_MESSAGE_AGE) {
            return Err(SealError::ExpiryTooFar {
                max: MAX_MESSAGE_AGE,
            });
        }
        // Refuse here what the recipient's policy would refuse on arrival.
        policy::check_roles(
            self.certificate.body(),
            recipient.body(),
            message.body.kind(),
        )
        .map_err(|_| SealError::RoleNotAllowed {
            sender_role: self.certificate.role(),
            recipient_role: recipient.role(),
            kind: message.body.kind(),
        })?;

        let content = codec::encode(message)?;
        let signature = self.identity.sign(SignatureLabel::Message, &content);
        seal_signed(
            &content,
            &signature,
            recipient,
            prekey,
            expires_at,
            ephemeral,
            header.message_id,
        )
    }
}

/// Steps 3-8 of the construction: seals already-signed content bytes.
pub(crate) fn seal_signed(
    content: &[u8],
    signature: &Signature,
    recipient: &VerifiedCertificate,
    prekey: &VerifiedPrekey,
    expires_at: Timestamp,
    ephemeral: EphemeralSecret,
    message_id: MessageId,
) -> Result<SealedEnvelope, SealError> {
    let plaintext = Zeroizing::new(codec::encode_signed(content, &signature.0));

    let mailbox = recipient.mailbox();
    let ephemeral_public = ephemeral.public_bytes();
    let prekey_public = prekey.prekey().public;
    let dh = ephemeral
        .diffie_hellman(&prekey_public)
        .ok_or(SealError::Key(crate::error::KeyError::WeakX25519Key))?;
    let transcript = transcript(
        mailbox,
        expires_at,
        &ephemeral_public,
        &prekey_public.to_bytes(),
        prekey.prekey().id,
    );
    let aead_key = derive_key(&dh, &transcript).ok_or(SealError::Crypto)?;

    let mut ciphertext = plaintext.to_vec();
    aead_key
        .key
        .seal_in_place_append_tag(
            aead_key.nonce(),
            Aad::from(&transcript[..]),
            &mut ciphertext,
        )
        .map_err(|_| SealError::Crypto)?;

    let body = codec::encode(&SealedBodyV1 {
        ephemeral: ephemeral_public,
        prekey_id: prekey.prekey().id,
        ciphertext,
    })?;
    let bytes = codec::encode(&EnvelopeV1 {
        version: VERSION,
        mailbox,
        expires_at,
        body,
    })?;
    if bytes.len() > limits::MAX_ENVELOPE_BYTES {
        return Err(SealError::TooLarge {
            len: bytes.len(),
            max: limits::MAX_ENVELOPE_BYTES,
        });
    }
    Ok(SealedEnvelope {
        bytes,
        message_id,
        content: content.to_vec(),
        signature: *signature,
    })
}

/// The transcript bound into both the key derivation and the AEAD.
fn transcript(
    mailbox: MailboxId,
    expires_at: Timestamp,
    ephemeral: &[u8; 32],
    prekey: &[u8; 32],
    prekey_id: PrekeyId,
) -> Vec<u8> {
    let mut t = Vec::with_capacity(SEAL_LABEL.len() + 2 + 16 + 8 + 32 + 32 + 8);
    t.extend_from_slice(SEAL_LABEL);
    t.extend_from_slice(&VERSION.to_le_bytes());
    t.extend_from_slice(&mailbox.0);
    t.extend_from_slice(&expires_at.0.to_le_bytes());
    t.extend_from_slice(ephemeral);
    t.extend_from_slice(prekey);
    t.extend_from_slice(&prekey_id.0.to_le_bytes());
    t
}

struct AeadKey {
    key: LessSafeKey,
    nonce: [u8; aead::NONCE_LEN],
}

impl AeadKey {
    fn nonce(&self) -> Nonce {
        // One key per ephemeral secret, one message per key: the nonce is unique.
        Nonce::assume_unique_for_key(self.nonce)
    }
}

struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive_key(dh: &[u8; 32], transcript: &[u8]) -> Option<AeadKey> {
    const KEY_LEN: usize = 32;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SEAL_LABEL).extract(dh);
    let mut okm = Zeroizing::new([0u8; KEY_LEN + aead::NONCE_LEN]);
    prk.expand(&[transcript], OkmLen(okm.len()))
        .ok()?
        .fill(okm.as_mut())
        .ok()?;
    let (key_bytes, nonce_bytes) = okm.split_at(KEY_LEN);
    let key = UnboundKey::new(&aead::CHACHA20_POLY1305, key_bytes).ok()?;
    Some(AeadKey {
        key: LessSafeKey::new(key),
        nonce: nonce_bytes.try_into().ok()?,
    })
}

/// What a receiver knows of its peers: the verified certificates from its
/// copy of the signed directory.
pub trait PeerDirectory {
    /// Looks up a PoC.
    fn lookup(&self, poc: &PocId) -> PeerStatus<'_>;
}

/// A PoC's standing in the receiver's directory.
#[derive(Debug, Clone, Copy)]
pub enum PeerStatus<'a> {
    /// Listed and not revoked.
    Active(&'a VerifiedCertificate),
    /// Listed as revoked.
    Revoked,
    /// Not listed.
    Unknown,
}

impl PeerDirectory for HashMap<PocId, VerifiedCertificate> {
    fn lookup(&self, poc: &PocId) -> PeerStatus<'_> {
        self.get(poc)
            .map_or(PeerStatus::Unknown, PeerStatus::Active)
    }
}

impl PeerDirectory for BTreeMap<PocId, VerifiedCertificate> {
    fn lookup(&self, poc: &PocId) -> PeerStatus<'_> {
        self.get(poc)
            .map_or(PeerStatus::Unknown, PeerStatus::Active)
    }
}

/// Remembers `(sender, message id)` pairs to refuse replays. The caller
/// implements it over its own storage (a node keeps it in SQLite).
pub trait ReplayCache {
    /// Records the pair until `keep_until`. Returns `Ok(false)` if it was
    /// already recorded (a replay), `Ok(true)` if it is new.
    fn insert(
        &mut self,
        sender: &PocId,
        message_id: MessageId,
        keep_until: Timestamp,
    ) -> Result<bool, ReplayCacheError>;
}

/// An in-memory [`ReplayCache`], for tests and short-lived tools.
#[derive(Debug, Default)]
pub struct MemoryReplayCache {
    seen: HashMap<(PocId, MessageId), Timestamp>,
}

impl MemoryReplayCache {
    /// Forgets pairs whose `keep_until` is before `now`.
    pub fn prune(&mut self, now: Timestamp) {
        self.seen.retain(|_, keep_until| *keep_until >= now);
    }

    /// How many pairs are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no pair is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

impl ReplayCache for MemoryReplayCache {
    fn insert(
        &mut self,
        sender: &PocId,
        message_id: MessageId,
        keep_until: Timestamp,
    ) -> Result<bool, ReplayCacheError> {
        use std::collections::hash_map::Entry;
        match self.seen.entry((sender.clone(), message_id)) {
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(slot) => {
                slot.insert(keep_until);
                Ok(true)
            }
        }
    }
}

/// The timestamp window a receiver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Oldest accepted message age. It must cover the longest time a relay
    /// may hold an envelope; the replay cache keeps ids this long.
    pub max_age: Seconds,
    /// How far in the future a timestamp may be (clock skew).
    pub max_future_skew: Seconds,
}

/// The default oldest accepted message age (14 days), and so the longest an
/// envelope may be set to live: a sender refuses to seal one that outlives it.
pub const MAX_MESSAGE_AGE: Seconds = Seconds::days(14);

/// The default accepted clock skew into the future (5 minutes).
pub const MAX_FUTURE_SKEW: Seconds = Seconds(300);

impl Default for VerifyPolicy {
    /// [`MAX_MESSAGE_AGE`] and [`MAX_FUTURE_SKEW`].
    fn default() -> Self {
        VerifyPolicy {
            max_age: MAX_MESSAGE_AGE,
            max_future_skew: MAX_FUTURE_SKEW,
        }
    }
}

/// The prekey secrets a PoC holds, by id. Deleting expired ones is what
/// gives forward secrecy at rotation granularity.
#[derive(Debug, Default)]
pub struct PrekeyRing {
    keys: BTreeMap<PrekeyId, (crate::certificate::Prekey, PrekeySecret)>,
}

impl PrekeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a prekey and its secret. Refuses a secret that does not match,
    /// and an id already held for a different key (ids name keys on the wire).
    pub fn insert(
        &mut self,
        prekey: crate::certificate::Prekey,
        secret: PrekeySecret,
    ) -> Result<(), SealError> {
        if secret.public() != prekey.public {
            return Err(SealError::KeyMismatch);
        }
        if let Some((held, _)) = self.keys.get(&prekey.id)
            && held.public != prekey.public
        {
            return Err(SealError::PrekeyIdInUse {
                prekey_id: prekey.id.0,
            });
        }
        self.keys.insert(prekey.id, (prekey, secret));
        Ok(())
    }

    /// A prekey and its secret, if still held.
    pub fn get(&self, id: PrekeyId) -> Option<(&crate::certificate::Prekey, &PrekeySecret)> {
        self.keys.get(&id).map(|(prekey, secret)| (prekey, secret))
    }

    /// The secret of a prekey, if still held.
    pub fn secret(&self, id: PrekeyId) -> Option<&PrekeySecret> {
        self.keys.get(&id).map(|(_, secret)| secret)
    }

    /// Ids of the prekeys held.
    pub fn ids(&self) -> impl Iterator<Item = PrekeyId> + '_ {
        self.keys.keys().copied()
    }

    /// Deletes (and zeroizes) every secret whose prekey validity ended more
    /// than `grace` before `now`; returns the ids deleted, for the caller to
    /// delete from durable storage too.
    pub fn expire(&mut self, now: Timestamp, grace: Seconds) -> Vec<PrekeyId> {
        let expired: Vec<PrekeyId> = self
            .keys
            .iter()
            .filter(|(_, (prekey, _))| prekey.valid_until.plus(grace) < now)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.keys.remove(id);
        }
        expired
    }
}

/// A PoC able to open envelopes addressed to it.
pub struct Recipient<'a, D: PeerDirectory> {
    /// Our own verified certificate.
    pub certificate: &'a VerifiedCertificate,
    /// Our prekey secrets.
    pub prekeys: &'a PrekeyRing,
    /// Our copy of the directory.
    pub directory: &'a D,
    /// The timestamp window.
    pub policy: VerifyPolicy,
}

/// A verified, decrypted message.
#[derive(Debug, Clone)]
pub struct OpenedMessage {
    /// The message.
    pub message: Message,
    /// The exact signed content bytes, for the record.
    pub content: Vec<u8>,
    /// The sender's signature over them.
    pub signature: Signature,
    /// SHA-256 of `content`, as a receipt names it.
    pub content_digest: [u8; 32],
    /// The sender's certificate at the time of opening.
    pub sender: VerifiedCertificate,
}

/// SHA-256 of signed content bytes, as carried in a receipt.
pub fn content_digest(content: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, content);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl<D: PeerDirectory> Recipient<'_, D> {
    /// Decrypts and verifies an envelope (see the module documentation for
    /// the order of checks). Never panics on any input.
    pub fn open(
        &self,
        envelope: &[u8],
        replay: &mut impl ReplayCache,
        now: Timestamp,
    ) -> Result<OpenedMessage, OpenError> {
        // The version comes first so an incompatible peer hears exactly that,
        // whatever else is wrong with the bytes.
        if let Ok(version) = fixed_at::<2>(envelope, 0).map(u16::from_le_bytes)
            && version != VERSION
        {
            return Err(DecodeError::UnknownVersion { version }.into());
        }
        let outer = OuterHeader::parse(envelope)?;
        if outer.version != VERSION {
            return Err(DecodeError::UnknownVersion {
                version: outer.version,
            }
            .into());
        }
        let wire: EnvelopeV1 = codec::decode(envelope, limits::MAX_ENVELOPE_BYTES)?;
        if wire.mailbox != self.certificate.mailbox() {
            return Err(OpenError::WrongRecipient);
        }
        if wire.expires_at < now {
            return Err(OpenError::Expired {
                expires_at: wire.expires_at,
            });
        }
        let body: SealedBodyV1 = codec::decode(&wire.body, limits::MAX_ENVELOPE_BYTES)?;
        let (prekey, secret) =
            self.prekeys
                .get(body.prekey_id)
                .ok_or(OpenError::UnknownPrekey {
                    prekey_id: body.prekey_id.0,
                })?;
        let dh = secret
            .diffie_hellman(&body.ephemeral)
            .ok_or(OpenError::Undecryptable)?;
        let transcript = transcript(
            wire.mailbox,
            wire.expires_at,
            &body.ephemeral,
            // The ring checked at insertion that this public key is the secret's.
            &prekey.public.to_bytes(),
            body.prekey_id,
        );
        let aead_key = derive_key(&dh, &transcript).ok_or(OpenError::Undecryptable)?;
        let mut buffer = Zeroizing::new(body.ciphertext);
        let plaintext = aead_key
            .key
            .open_in_place(aead_key.nonce(), Aad::from(&transcript[..]), &mut buffer)
            .map_err(|_| OpenError::Undecryptable)?;

        let signed: SignedMessage = codec::decode(plaintext, limits::MAX_ENVELOPE_BYTES)?;
        let message: Message = codec::decode(&signed.content, limits::MAX_ENVELOPE_BYTES)?;
        let header = &message.header;

        if &header.recipient != self.certificate.poc_id() {
            return Err(OpenError::WrongRecipient);
        }
        let sender = match self.directory.lookup(&header.sender) {
            PeerStatus::Active(cert) => cert,
            PeerStatus::Revoked => {
                return Err(OpenError::SenderCertificate(
                    crate::error::CertificateError::Revoked {
                        poc_id: header.sender.clone(),
                    },
                ));
            }
            PeerStatus::Unknown => {
                return Err(OpenError::UnknownSender {
                    poc_id: header.sender.clone(),
                });
            }
        };
        // The directory may key entries differently; the certificate decides.
        if sender.poc_id() != &header.sender {
            return Err(OpenError::UnknownSender {
                poc_id: header.sender.clone(),
            });
        }
        sender
            .check_valid_at(now)
            .map_err(OpenError::SenderCertificate)?;
        let signature = Signature(signed.signature);
        if !sender.verify_signature(SignatureLabel::Message, &signed.content, &signature) {
            return Err(OpenError::BadSignature {
                poc_id: header.sender.clone(),
            });
        }
        let oldest = now.minus(self.policy.max_age);
        let newest = now.plus(self.policy.max_future_skew);
        if header.created_at < oldest || header.created_at > newest {
            return Err(OpenError::TimestampOutsideWindow {
                created_at: header.created_at,
                now,
            });
        }
        policy::check_roles(sender.body(), self.certificate.body(), message.body.kind())?;
        let keep_until = header
            .created_at
            .plus(self.policy.max_age)
            .plus(self.policy.max_future_skew);
        if !replay.insert(&header.sender, header.message_id, keep_until)? {
            return Err(OpenError::Replay {
                sender: header.sender.clone(),
                message_id: header.message_id,
            });
        }
        let content_digest = content_digest(&signed.content);
        let sender = sender.clone();
        Ok(OpenedMessage {
            message,
            content: signed.content,
            signature,
            content_digest,
            sender,
        })
    }
}
