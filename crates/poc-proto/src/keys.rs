//! Key types. Secret keys zeroize on drop and never print in `Debug`.
//!
//! Each Ed25519 key has its own type per purpose (a State root key cannot be
//! passed where a PoC identity key is expected), and every signature is made
//! over a purpose label followed by the exact bytes signed (see
//! [`SignatureLabel`]), so a signature made for one purpose never verifies
//! for another.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::codec::fixed_bytes;
use crate::error::KeyError;

/// A source of cryptographically secure random bytes, supplied by the caller
/// (the protocol crate reads no global RNG, so tests can be deterministic).
pub trait RandomSource {
    /// Fills `dest` entirely with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

/// What a signature is for; its label is prepended to the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureLabel {
    /// A State root key (or the manager) certifying a PoC.
    PocCertificate,
    /// A PoC identity key certifying one of its key-agreement prekeys.
    Prekey,
    /// A PoC identity key signing a message's content.
    Message,
    /// The directory manager signing a directory snapshot.
    DirectorySnapshot,
    /// A State root key signing a PoC's directory entry details.
    DirectoryEntry,
}

impl SignatureLabel {
    /// The label bytes, NUL-terminated so no label is a prefix of another's input.
    pub const fn bytes(self) -> &'static [u8] {
        match self {
            SignatureLabel::PocCertificate => b"pocnet/v1 poc-certificate\0",
            SignatureLabel::Prekey => b"pocnet/v1 prekey\0",
            SignatureLabel::Message => b"pocnet/v1 message\0",
            SignatureLabel::DirectorySnapshot => b"pocnet/v1 directory-snapshot\0",
            SignatureLabel::DirectoryEntry => b"pocnet/v1 directory-entry\0",
        }
    }
}

/// An Ed25519 signature (64 bytes on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "fixed_bytes")] pub [u8; 64]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({}..)", hex_prefix(&self.0))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn labelled(label: SignatureLabel, bytes: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(label.bytes().len() + bytes.len());
    input.extend_from_slice(label.bytes());
    input.extend_from_slice(bytes);
    input
}

/// Verifies with an already parsed key (for callers that verify many
/// signatures by the same key, such as a certificate's holder).
pub(crate) fn verify_parsed(
    key: &VerifyingKey,
    label: SignatureLabel,
    bytes: &[u8],
    signature: &Signature,
) -> bool {
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(&labelled(label, bytes), &sig).is_ok()
}

pub(crate) fn checked_verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidEd25519Key)?;
    if key.is_weak() {
        return Err(KeyError::InvalidEd25519Key);
    }
    Ok(key)
}

/// Declares an Ed25519 public key type and its key pair type for one purpose.
macro_rules! ed25519_key_types {
    ($(#[$pub_doc:meta])* $public:ident, $(#[$pair_doc:meta])* $pair:ident) => {
        $(#[$pub_doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "[u8; 32]", into = "[u8; 32]")]
        pub struct $public([u8; 32]);

        impl $public {
            /// Parses and checks a 32-byte Ed25519 public key (on the curve, not of small order).
            pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
                checked_verifying_key(&bytes)?;
                Ok(Self(bytes))
            }

            /// The 32 key bytes.
            pub fn to_bytes(&self) -> [u8; 32] {
                self.0
            }

            /// Verifies `signature` over `label || bytes` (strict: canonical
            /// encodings only, no small-order components).
            pub fn verify(
                &self,
                label: SignatureLabel,
                bytes: &[u8],
                signature: &Signature,
            ) -> bool {
                let Ok(key) = checked_verifying_key(&self.0) else {
                    return false;
                };
                let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
                key.verify_strict(&labelled(label, bytes), &sig).is_ok()
            }
        }

        impl TryFrom<[u8; 32]> for $public {
            type Error = KeyError;
            fn try_from(bytes: [u8; 32]) -> Result<Self, KeyError> {
                Self::from_bytes(bytes)
            }
        }

        impl From<$public> for [u8; 32] {
            fn from(key: $public) -> [u8; 32] {
                key.0
            }
        }

        impl std::fmt::Debug for $public {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({}..)", stringify!($public), hex_prefix(&self.0))
            }
        }

        $(#[$pair_doc])*
        pub struct $pair(SigningKey);

        impl $pair {
            /// Generates a new key pair from `rng`.
            pub fn generate(rng: &mut impl RandomSource) -> Self {
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill(seed.as_mut());
                Self::from_secret_bytes(&seed)
            }

            /// Rebuilds a key pair from its 32-byte secret seed (as stored in a key file).
            pub fn from_secret_bytes(seed: &[u8; 32]) -> Self {
                Self(SigningKey::from_bytes(seed))
            }

            /// The 32-byte secret seed, for writing to a 0600 key file.
            pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
                Zeroizing::new(self.0.to_bytes())
            }

            /// The public half.
            pub fn public(&self) -> $public {
                $public(self.0.verifying_key().to_bytes())
            }

            /// Signs `label || bytes`.
            pub fn sign(&self, label: SignatureLabel, bytes: &[u8]) -> Signature {
                Signature(self.0.sign(&labelled(label, bytes)).to_bytes())
            }
        }

        impl std::fmt::Debug for $pair {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($pair))
                    .field("public", &self.public())
                    .field("secret", &"<redacted>")
                    .finish()
            }
        }
    };
}

ed25519_key_types!(
    /// A PoC's long-term Ed25519 identity public key.
    IdentityPublicKey,
    /// A PoC's long-term Ed25519 identity key pair (signs messages and prekeys).
    /// The secret zeroizes on drop.
    IdentityKeyPair
);

ed25519_key_types!(
    /// A State's root public key, registered once with the directory manager.
    StateRootPublicKey,
    /// A State's offline root key pair (signs its PoCs' certificates).
    /// The secret zeroizes on drop.
    StateRootKeyPair
);

ed25519_key_types!(
    /// The directory manager's public key (signs snapshots and its own ping identity).
    ManagerPublicKey,
    /// The directory manager's key pair. The secret zeroizes on drop.
    ManagerKeyPair
);

/// A key-agreement (X25519) public key: a PoC's signed prekey.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "[u8; 32]", into = "[u8; 32]")]
pub struct PrekeyPublic([u8; 32]);

impl PrekeyPublic {
    /// Parses an X25519 public key, refusing the small-order points that
    /// would make the shared secret predictable.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        // A small-order point gives the all-zero secret with the clamped
        // scalar 1·8; checking with a fixed scalar is enough to detect it.
        let probe = x25519_dalek::x25519([9u8; 32], bytes);
        if probe == [0u8; 32] {
            return Err(KeyError::WeakX25519Key);
        }
        Ok(Self(bytes))
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    pub(crate) fn as_dalek(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0)
    }
}

impl TryFrom<[u8; 32]> for PrekeyPublic {
    type Error = KeyError;
    fn try_from(bytes: [u8; 32]) -> Result<Self, KeyError> {
        Self::from_bytes(bytes)
    }
}

impl From<PrekeyPublic> for [u8; 32] {
    fn from(key: PrekeyPublic) -> [u8; 32] {
        key.0
    }
}

impl std::fmt::Debug for PrekeyPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrekeyPublic({}..)", hex_prefix(&self.0))
    }
}

/// The secret half of a prekey. Zeroizes on drop; deleting it after the
/// prekey's validity is what gives forward secrecy.
pub struct PrekeySecret(x25519_dalek::StaticSecret);

impl PrekeySecret {
    /// Generates a new prekey secret from `rng`.
    pub fn generate(rng: &mut impl RandomSource) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill(bytes.as_mut());
        Self::from_secret_bytes(&bytes)
    }

    /// Rebuilds a prekey secret from its 32 bytes (as stored by a node).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Self {
        Self(x25519_dalek::StaticSecret::from(*bytes))
    }

    /// The 32 secret bytes, for durable storage.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PrekeyPublic {
        PrekeyPublic(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    pub(crate) fn diffie_hellman(&self, public: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(*public));
        shared
            .was_contributory()
            .then(|| Zeroizing::new(shared.to_bytes()))
    }
}

impl std::fmt::Debug for PrekeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrekeySecret")
            .field("public", &self.public())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The one-time X25519 secret of a single sealed envelope. Zeroizes on drop
/// and is consumed by sealing, so it cannot be used twice.
pub struct EphemeralSecret(x25519_dalek::StaticSecret);

impl EphemeralSecret {
    /// Generates a fresh ephemeral secret from `rng`.
    pub fn generate(rng: &mut impl RandomSource) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill(bytes.as_mut());
        Self::from_random_bytes(*bytes)
    }

    /// Wraps 32 bytes that the caller drew from a CSPRNG (or fixed bytes in
    /// test vectors). Never reuse them for a second envelope.
    pub fn from_random_bytes(mut bytes: [u8; 32]) -> Self {
        let secret = x25519_dalek::StaticSecret::from(bytes);
        bytes.zeroize();
        Self(secret)
    }

    pub(crate) fn public_bytes(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
    }

    pub(crate) fn diffie_hellman(self, public: &PrekeyPublic) -> Option<Zeroizing<[u8; 32]>> {
        let shared = self.0.diffie_hellman(&public.as_dalek());
        shared
            .was_contributory()
            .then(|| Zeroizing::new(shared.to_bytes()))
    }
}

impl std::fmt::Debug for EphemeralSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EphemeralSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn secrets_never_appear_in_debug() {
        let seed = [0x5a; 32];
        let identity = IdentityKeyPair::from_secret_bytes(&seed);
        let root = StateRootKeyPair::from_secret_bytes(&seed);
        let manager = ManagerKeyPair::from_secret_bytes(&seed);
        let prekey = PrekeySecret::from_secret_bytes(&seed);
        let ephemeral = EphemeralSecret::from_random_bytes(seed);
        let rendered = [
            format!("{identity:?}"),
            format!("{root:?}"),
            format!("{manager:?}"),
            format!("{prekey:?}"),
            format!("{ephemeral:?}"),
            format!("{:#?}", identity),
        ];
        let secret_hex = hex(&seed);
        let prefix = &secret_hex[..8];
        for text in rendered {
            assert!(text.contains("redacted"), "{text}");
            assert!(
                !text.contains(prefix),
                "secret bytes leaked into Debug: {text}"
            );
            assert!(
                !text.contains("90, 90"),
                "secret bytes leaked into Debug: {text}"
            );
        }
        // The prekey's clamped scalar must not leak either.
        let scalar = hex(prekey.to_secret_bytes().as_ref());
        assert!(!format!("{prekey:?}").contains(&scalar[..8]));
    }

    #[test]
    fn signatures_are_bound_to_their_label() {
        let key = IdentityKeyPair::from_secret_bytes(&[7; 32]);
        let sig = key.sign(SignatureLabel::Message, b"hello");
        assert!(key.public().verify(SignatureLabel::Message, b"hello", &sig));
        assert!(!key.public().verify(SignatureLabel::Prekey, b"hello", &sig));
        assert!(!key.public().verify(SignatureLabel::Message, b"hellO", &sig));
    }

    #[test]
    fn weak_public_keys_are_refused() {
        // The identity point and a small-order point are not usable keys.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            IdentityPublicKey::from_bytes(identity),
            Err(KeyError::InvalidEd25519Key)
        );
        assert_eq!(
            PrekeyPublic::from_bytes([0; 32]),
            Err(KeyError::WeakX25519Key)
        );
        let mut order_eight = [0u8; 32];
        order_eight[0] = 1;
        assert_eq!(
            PrekeyPublic::from_bytes(order_eight),
            Err(KeyError::WeakX25519Key)
        );
    }

    #[test]
    fn secret_bytes_round_trip() {
        let key = IdentityKeyPair::from_secret_bytes(&[3; 32]);
        let again = IdentityKeyPair::from_secret_bytes(&key.to_secret_bytes());
        assert_eq!(key.public(), again.public());
        let prekey = PrekeySecret::from_secret_bytes(&[4; 32]);
        let again = PrekeySecret::from_secret_bytes(&prekey.to_secret_bytes());
        assert_eq!(prekey.public(), again.public());
    }
}
