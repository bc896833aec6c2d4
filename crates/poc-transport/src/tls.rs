//! TLS 1.3 configurations with RFC 7250 raw Ed25519 public keys, pinned to
//! PoC identities (see the crate docs for why raw keys and not X.509).

use std::sync::{Arc, Mutex};

use poc_proto::PocId;
use poc_proto::keys::{IdentityKeyPair, IdentityPublicKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, PeerIncompatible, PeerMisbehaved,
    SignatureScheme,
};
use zeroize::Zeroizing;

use crate::PeerAuthority;
use crate::error::TransportError;

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): SEQUENCE {
/// SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) }, then the
/// 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410), then the
/// 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The only signature scheme offered and accepted.
const SCHEME: SignatureScheme = SignatureScheme::ED25519;

/// The SPKI DER of an identity key, as presented on the wire.
pub(crate) fn key_to_spki(key: &IdentityPublicKey) -> Vec<u8> {
    let mut der = Vec::with_capacity(44);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(&key.to_bytes());
    der
}

/// The identity key in a presented SPKI, if it is exactly an Ed25519 SPKI
/// holding a valid (non-weak) key. DER is canonical, so byte equality with
/// the one valid encoding is the strict parse.
pub(crate) fn spki_to_key(der: &[u8]) -> Option<IdentityPublicKey> {
    let key = der.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    let key: [u8; 32] = key.try_into().ok()?;
    IdentityPublicKey::from_bytes(key).ok()
}

/// The peer's identity key from a quinn connection (raw public key mode:
/// the "certificate" is the SPKI).
pub(crate) fn peer_key(conn: &quinn::Connection) -> Option<IdentityPublicKey> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    match certs.as_slice() {
        [only] => spki_to_key(only.as_ref()),
        _ => None,
    }
}

/// The explicitly configured *ring* provider.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The endpoint's own identity, ready for rustls: the SPKI as the
/// "certificate" and a *ring* Ed25519 signing key built from the seed (the
/// PKCS#8 buffer is zeroized; ring's key pair itself is not zeroized on drop).
pub(crate) fn certified_key(
    identity: &IdentityKeyPair,
) -> Result<Arc<CertifiedKey>, TransportError> {
    let signing_key = signing_key(identity)?;
    let spki = key_to_spki(&identity.public());
    // The key ring derived from the seed must be the identity's public key.
    match signing_key.public_key() {
        Some(derived) if derived.as_ref() == spki.as_slice() => {}
        _ => {
            return Err(TransportError::Config(
                "ring derived a different public key from the identity seed".to_owned(),
            ));
        }
    }
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki)],
        signing_key,
    )))
}

fn signing_key(identity: &IdentityKeyPair) -> Result<Arc<dyn SigningKey>, TransportError> {
    let seed = identity.to_secret_bytes();
    let mut pkcs8 = Zeroizing::new(Vec::with_capacity(48));
    pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
    pkcs8.extend_from_slice(seed.as_ref());
    let der = PrivatePkcs8KeyDer::from(pkcs8.as_slice());
    rustls::crypto::ring::sign::any_eddsa_type(&der)
        .map_err(|e| TransportError::Config(format!("identity key rejected by ring: {e}")))
}

/// A key that presents `presented` but signs with `signer`: an impostor
/// who knows a PoC's public key but not its secret.
#[cfg(test)]
#[allow(clippy::expect_used)]
pub(crate) fn impostor_key(
    presented: &IdentityPublicKey,
    signer: &IdentityKeyPair,
) -> Arc<CertifiedKey> {
    Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(key_to_spki(presented))],
        signing_key(signer).expect("ring accepts the seed"),
    ))
}

fn unknown_key() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
}

fn not_in_directory() -> rustls::Error {
    // Maps to the TLS `access_denied` alert.
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

/// Checks the handshake signature: Ed25519 only, over the presented raw key.
fn verify_signature(
    algorithms: &WebPkiSupportedAlgorithms,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SCHEME {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    if spki_to_key(cert.as_ref()).is_none() {
        return Err(unknown_key());
    }
    rustls::crypto::verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(cert.as_ref()),
        dss,
        algorithms,
    )
}

/// What the client-side verifier decided, read back by `connect` to give a
/// typed error (rustls only reports a generic certificate error).
#[derive(Debug, Clone)]
pub(crate) enum ServerCheck {
    /// The server's key is the expected one and the authority knows it.
    Accepted(PocId),
    /// The server presented another key (or no valid Ed25519 key).
    WrongKey(Option<IdentityPublicKey>),
    /// The expected key is no longer in the directory.
    NotInDirectory(IdentityPublicKey),
}

/// Where the client-side verifier leaves its decision.
pub(crate) type CheckSlot = Arc<Mutex<Option<ServerCheck>>>;

/// Client side: verifies the server's raw key against the expected key and
/// the directory.
#[derive(Debug)]
pub(crate) struct ServerKeyVerifier {
    expected: IdentityPublicKey,
    authority: Arc<dyn PeerAuthority>,
    algorithms: WebPkiSupportedAlgorithms,
    outcome: CheckSlot,
}

impl ServerKeyVerifier {
    fn record(&self, check: ServerCheck) {
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(check);
        }
    }
}

impl ServerCertVerifier for ServerKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = spki_to_key(end_entity.as_ref());
        if !intermediates.is_empty() || presented != Some(self.expected) {
            self.record(ServerCheck::WrongKey(presented));
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ));
        }
        match self.authority.poc_for_key(&self.expected) {
            Some(poc) => {
                self.record(ServerCheck::Accepted(poc));
                Ok(ServerCertVerified::assertion())
            }
            None => {
                self.record(ServerCheck::NotInDirectory(self.expected));
                Err(not_in_directory())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algorithms, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SCHEME]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Server side: accepts a client whose raw key the authority knows.
#[derive(Debug)]
pub(crate) struct ClientKeyVerifier {
    authority: Arc<dyn PeerAuthority>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientKeyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(unknown_key());
        }
        let key = spki_to_key(end_entity.as_ref()).ok_or_else(unknown_key)?;
        match self.authority.poc_for_key(&key) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => {
                tracing::debug!(?key, "refusing client: key not in directory");
                Err(not_in_directory())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algorithms, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SCHEME]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

fn config_error(e: impl std::fmt::Display) -> TransportError {
    TransportError::Config(format!("TLS configuration: {e}"))
}

/// The server-side TLS configuration of an endpoint.
pub(crate) fn server_config(
    provider: &Arc<CryptoProvider>,
    identity: Arc<CertifiedKey>,
    authority: Arc<dyn PeerAuthority>,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, TransportError> {
    let verifier = ClientKeyVerifier {
        authority,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(identity),
        ));
    config.alpn_protocols = vec![alpn.to_vec()];
    // No resumption and no 0-RTT: every connection runs the full handshake,
    // so every connection is checked against the current directory.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The client-side TLS configuration for one outgoing connection, pinned to
/// `expected`. The verifier's decision lands in the returned slot.
pub(crate) fn client_config(
    provider: &Arc<CryptoProvider>,
    identity: Arc<CertifiedKey>,
    authority: Arc<dyn PeerAuthority>,
    alpn: &[u8],
    expected: IdentityPublicKey,
) -> Result<(rustls::ClientConfig, CheckSlot), TransportError> {
    let outcome = Arc::new(Mutex::new(None));
    let verifier = ServerKeyVerifier {
        expected,
        authority,
        algorithms: provider.signature_verification_algorithms,
        outcome: Arc::clone(&outcome),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(identity),
        ));
    config.alpn_protocols = vec![alpn.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_sni = false;
    config.enable_early_data = false;
    Ok((config, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_round_trip_and_strictness() {
        let key = IdentityKeyPair::from_secret_bytes(&[7; 32]).public();
        let der = key_to_spki(&key);
        assert_eq!(der.len(), 44);
        assert_eq!(spki_to_key(&der), Some(key));
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(spki_to_key(&longer), None);
        let mut other_oid = der.clone();
        if let Some(b) = other_oid.get_mut(8) {
            *b = 0x71; // Ed448
        }
        assert_eq!(spki_to_key(&other_oid), None);
        assert_eq!(spki_to_key(&der[..43]), None);
    }

    #[test]
    fn ring_derives_the_identity_key() {
        let identity = IdentityKeyPair::from_secret_bytes(&[9; 32]);
        let certified = certified_key(&identity);
        assert!(certified.is_ok());
    }
}
