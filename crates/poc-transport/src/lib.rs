//! # poc-transport: QUIC between pocnet nodes
//!
//! A thin async layer over [quinn] 0.11 and [rustls] 0.23 that carries pocnet
//! traffic between nodes (and, later, between nodes and relays). Every
//! connection is **mutually authenticated by PoC identity keys** and
//! **checked against the node's current directory view** during the TLS
//! handshake; on top of it, each request is one bidirectional QUIC stream
//! carrying exactly one request frame and one response frame.
//!
//! ```text
//! Endpoint::bind ──▶ Endpoint ──connect(addr, expected key)──▶ Connection ──request()──▶ response bytes
//!                       └──────accept()─────────────────────▶ Connection ──accept_request()──▶ IncomingRequest ──respond()
//! ```
//!
//! ## Authentication: RFC 7250 raw public keys, not X.509
//!
//! Each endpoint presents its PoC **Ed25519 identity key** as an RFC 7250 raw
//! public key (a bare `SubjectPublicKeyInfo`, no certificate), both as server
//! and as client. rustls 0.23 supports raw public keys
//! (`requires_raw_public_keys` / `only_raw_public_keys`), and quinn passes the
//! TLS layer through untouched, so we chose them over a self-signed X.509
//! certificate because:
//!
//! - there is nothing to trust in a certificate here: trust comes from the
//!   signed directory, which binds a PoC id to an identity key. A self-signed
//!   certificate would add an X.509/ASN.1 parser, validity dates, names and
//!   extensions that we would have to ignore, i.e. attack surface with no
//!   security value;
//! - the key on the wire is exactly the key in the directory: the verifier
//!   accepts only the 44-byte DER `SubjectPublicKeyInfo` of an Ed25519 key
//!   (`302a300506032b6570032100 || key`), byte for byte, and nothing else;
//! - the handshake `CertificateVerify` signature is checked by rustls'
//!   [`verify_tls13_signature_with_raw_key`](rustls::crypto::verify_tls13_signature_with_raw_key)
//!   with the *ring* provider's algorithms, and only the Ed25519 signature
//!   scheme is offered or accepted.
//!
//! There is no web PKI, no "accept any certificate", no fallback to X.509: a
//! peer that does not negotiate raw public keys fails the handshake.
//!
//! The *ring* crypto provider is passed explicitly to every rustls
//! configuration (`builder_with_provider`); the process-wide default provider
//! is never installed nor consulted. TLS 1.3 only; TLS session resumption,
//! tickets and 0-RTT are disabled, so **every connection runs the full
//! handshake and every handshake consults the directory** (a resumed session
//! would skip the certificate check and let a removed peer back in).
//!
//! ## Who may connect
//!
//! A [`PeerAuthority`] (the daemon's current directory view) maps identity
//! keys to PoC ids. It is consulted on **every handshake**, on both sides:
//!
//! - **server side**: a client whose key the authority does not know is
//!   refused inside the TLS handshake (the client receives a TLS
//!   `access_denied` alert); [`Endpoint::accept`] never yields it;
//! - **client side**: [`Endpoint::connect`] takes the key the caller expects
//!   (from the directory entry it is dialling) and refuses any other server
//!   key, and also refuses a server the authority no longer knows.
//!
//! Because in TLS 1.3 a client completes its side of the handshake before the
//! server has checked the client's key, the server sends an explicit
//! acceptance signal once it has authenticated the client (see *Wire format*);
//! [`Endpoint::connect`] returns only after receiving it, so a refused client
//! gets [`TransportError::HandshakeRefused`] from `connect`, never a
//! connection that dies on first use.
//!
//! ## Wire format (normative for a second implementation)
//!
//! - QUIC v1, TLS 1.3, ALPN [`ALPN_NODE`] (node to node) or [`ALPN_RELAY`]
//!   (node to relay); RFC 7250 raw public keys in both directions, signature
//!   scheme `ed25519` (0x0807) only.
//! - **Acceptance signal**: after authenticating the client, the server opens
//!   one unidirectional stream, writes the single byte `0x01` and finishes it.
//!   The client allows exactly one server-initiated unidirectional stream;
//!   clients may open none.
//! - **Requests**: either side opens a bidirectional stream, writes one frame
//!   and finishes its send side; the other side answers with one frame on the
//!   same stream and finishes. A frame is a `u32` big-endian length followed
//!   by that many payload bytes. Anything after the frame is a protocol
//!   violation.
//! - **Stream error codes** (`RESET_STREAM` / `STOP_SENDING`): see
//!   [`StreamErrorCode`]. **Connection close codes**: see [`close_code`].
//!
//! ## Limits and misbehaving peers
//!
//! See [`Limits`]. A frame length above the limit is refused before any
//! buffer is allocated for it, and the stream is reset; reading a frame is
//! bounded by a timeout; handshakes per remote address are rate-limited
//! (after QUIC address validation, so a spoofed source cannot spend someone
//! else's budget) and the number of inbound connections is capped, overall
//! and per peer identity key (so one directory member cannot take every
//! slot). A connection reads the peer's requests only once the application
//! asks for them ([`Connection::accept_request`]); until then (e.g. on a
//! connection a node opened only to deliver) QUIC flow control holds the
//! peer to the connection's receive window. A misbehaving peer loses its
//! stream or its connection, nobody else's.
//!
//! Payload bytes are never logged; connection events are logged with
//! [`tracing`] at `debug`.

mod connection;
mod endpoint;
mod error;
mod limits;
mod slots;
mod tls;

#[cfg(test)]
mod tests;

pub use connection::{Connection, IncomingRequest};
pub use endpoint::{Endpoint, EndpointStats};
pub use error::{StreamErrorCode, TransportError, close_code};
pub use limits::Limits;
pub use slots::{KeySlot, KeySlots};

use poc_proto::PocId;
use poc_proto::keys::IdentityPublicKey;

/// ALPN protocol id for node-to-node connections.
pub const ALPN_NODE: &[u8] = b"pocnet/1";

/// ALPN protocol id for node-to-relay connections.
pub const ALPN_RELAY: &[u8] = b"pocnet-relay/1";

/// ALPN protocol id for node-to-directory-service connections (snapshot fetch).
pub const ALPN_DIRECTORY: &[u8] = b"pocnet-directory/1";

/// The node's current view of who may connect: maps a peer's Ed25519
/// identity key to its PoC id, or `None` if the key is unknown (not in the
/// directory, revoked, expired...).
///
/// It is called from inside the TLS handshake on every incoming and outgoing
/// connection, so a directory swap takes effect for the next handshake. It
/// must be fast and must not block (no I/O, no async locks): keep the
/// directory behind an `RwLock` or an atomically swapped `Arc` and look the
/// key up in memory. Connections already established are not re-checked;
/// the daemon closes them itself when it revokes a peer.
pub trait PeerAuthority: Send + Sync + std::fmt::Debug + 'static {
    /// The PoC that holds `key`, if the directory currently lets it connect.
    fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<PocId>;
}
