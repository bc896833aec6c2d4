//! The QUIC endpoint: one UDP socket that accepts authenticated connections
//! and opens them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use poc_proto::keys::{IdentityKeyPair, IdentityPublicKey};
use quinn::VarInt;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::timeout;

use crate::connection::Connection;
use crate::error::{TransportError, close_code, from_connection_error, from_read_error};
use crate::limits::HandshakeRateLimiter;
use crate::tls::{self, ServerCheck};
use crate::{KeySlot, KeySlots, Limits, PeerAuthority};

/// The single byte of the server's acceptance signal.
const ACCEPTED: u8 = 0x01;

/// Server name given to quinn for outgoing connections. It is never sent
/// (SNI is disabled) and never checked (the peer is identified by its key).
const SERVER_NAME: &str = "pocnet.invalid";

/// Connections handed over by the accept loop but not yet taken by
/// [`Endpoint::accept`].
const ACCEPT_QUEUE: usize = 32;

/// A pocnet QUIC endpoint bound to one UDP socket, serving one ALPN.
///
/// It accepts connections from peers its [`PeerAuthority`] knows and opens
/// connections to peers by address and expected key. Cheap to clone; the
/// accept loop stops when the last clone is dropped or on
/// [`close`](Endpoint::close). Connections already handed out keep working
/// until closed, unless the endpoint was closed explicitly.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

struct EndpointInner {
    quinn: quinn::Endpoint,
    provider: Arc<CryptoProvider>,
    identity: Arc<CertifiedKey>,
    authority: Arc<dyn PeerAuthority>,
    alpn: &'static [u8],
    limits: Arc<Limits>,
    client_transport: Arc<quinn::TransportConfig>,
    incoming: Mutex<mpsc::Receiver<Connection>>,
    stats: Arc<Counters>,
    accept_task: tokio::task::AbortHandle,
}

impl Drop for EndpointInner {
    fn drop(&mut self) {
        self.accept_task.abort();
        // Refuse new connections; existing ones live on with their handles.
        self.quinn.set_server_config(None);
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addr", &self.inner.quinn.local_addr().ok())
            .field("alpn", &String::from_utf8_lossy(self.inner.alpn))
            .finish_non_exhaustive()
    }
}

/// Counters of an endpoint's inbound connection attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Inbound connections authenticated and queued for [`Endpoint::accept`].
    pub accepted: u64,
    /// Inbound handshakes that failed (unknown key, bad TLS, timeout...).
    pub handshakes_failed: u64,
    /// Attempts refused by the per-address handshake rate limit.
    pub refused_rate_limited: u64,
    /// Attempts refused because `max_connections` were open.
    pub refused_capacity: u64,
    /// Connections closed after the handshake because their peer already
    /// held `max_connections_per_peer`.
    pub refused_peer_limit: u64,
    /// Address-validation Retry packets sent.
    pub retries_sent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    handshakes_failed: AtomicU64,
    refused_rate_limited: AtomicU64,
    refused_capacity: AtomicU64,
    refused_peer_limit: AtomicU64,
    retries_sent: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Endpoint {
    /// Binds a UDP socket at `addr` and starts accepting connections for
    /// `alpn` ([`ALPN_NODE`](crate::ALPN_NODE) or
    /// [`ALPN_RELAY`](crate::ALPN_RELAY)), presenting `identity` and
    /// admitting the peers `authority` knows.
    ///
    /// Must be called from within a tokio runtime (the accept loop and
    /// connection tasks are spawned on it).
    pub fn bind(
        addr: SocketAddr,
        identity: &IdentityKeyPair,
        authority: Arc<dyn PeerAuthority>,
        alpn: &'static [u8],
        limits: Limits,
    ) -> Result<Endpoint, TransportError> {
        limits.check()?;
        if alpn.is_empty() || alpn.len() > 255 {
            return Err(TransportError::Config(
                "ALPN must be 1 to 255 bytes".to_owned(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            TransportError::Config(
                "Endpoint::bind must be called within a tokio runtime".to_owned(),
            )
        })?;
        let limits = Arc::new(limits);
        let provider = tls::provider();
        let certified = tls::certified_key(identity)?;

        let server_tls = tls::server_config(
            &provider,
            Arc::clone(&certified),
            Arc::clone(&authority),
            alpn,
        )?;
        let server_tls = QuicServerConfig::try_from(server_tls)
            .map_err(|e| TransportError::Config(format!("QUIC server TLS: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
        server.transport_config(Arc::new(transport_config(&limits, Side::Server)?));
        // Incoming attempts quinn queues before our accept loop sees them.
        server.max_incoming(limits.max_connections.clamp(16, 4096));

        // The stateless-reset key is derived from the identity key, so a
        // restarted node can reset connections its previous run left open:
        // peers learn at once that the old connection is gone instead of
        // waiting for a timeout (RFC 9000 section 10.3).
        // Connection ids are validated with a keyed hash; the key must
        // survive restarts too, or the old ids are dropped unanswered.
        let (reset, cid_key) = restart_stable_keys(identity, alpn);
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset));
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let socket = std::net::UdpSocket::bind(addr)?;
        let quinn = quinn::Endpoint::new(
            endpoint_config,
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        let local = quinn.local_addr()?;

        let stats = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let accept_task = runtime
            .spawn(accept_loop(
                quinn.clone(),
                Arc::clone(&authority),
                alpn,
                Arc::clone(&limits),
                Arc::clone(&stats),
                tx,
            ))
            .abort_handle();
        tracing::debug!(%local, alpn = %String::from_utf8_lossy(alpn), "endpoint bound");

        Ok(Endpoint {
            inner: Arc::new(EndpointInner {
                quinn,
                provider,
                identity: certified,
                authority,
                alpn,
                client_transport: Arc::new(transport_config(&limits, Side::Client)?),
                limits,
                incoming: Mutex::new(rx),
                stats,
                accept_task,
            }),
        })
    }

    /// The socket address the endpoint is bound to (with the actual port if
    /// bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        Ok(self.inner.quinn.local_addr()?)
    }

    /// The limits this endpoint was bound with.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Counters of inbound connection attempts so far.
    pub fn stats(&self) -> EndpointStats {
        let c = &self.inner.stats;
        EndpointStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            handshakes_failed: c.handshakes_failed.load(Ordering::Relaxed),
            refused_rate_limited: c.refused_rate_limited.load(Ordering::Relaxed),
            refused_capacity: c.refused_capacity.load(Ordering::Relaxed),
            refused_peer_limit: c.refused_peer_limit.load(Ordering::Relaxed),
            retries_sent: c.retries_sent.load(Ordering::Relaxed),
        }
    }

    /// Connects to the node at `addr`, which must prove it holds `expected`
    /// (the identity key from the peer's directory entry) and which the
    /// authority must still know. Returns once the server has authenticated
    /// us too and signalled acceptance, within `limits.handshake_timeout`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: IdentityPublicKey,
    ) -> Result<Connection, TransportError> {
        let inner = &self.inner;
        if inner.authority.poc_for_key(&expected).is_none() {
            return Err(TransportError::PeerNotInDirectory { key: expected });
        }
        let (client_tls, outcome) = tls::client_config(
            &inner.provider,
            Arc::clone(&inner.identity),
            Arc::clone(&inner.authority),
            inner.alpn,
            expected,
        )?;
        let client_tls = QuicClientConfig::try_from(client_tls)
            .map_err(|e| TransportError::Config(format!("QUIC client TLS: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(client_tls));
        config.transport_config(Arc::clone(&inner.client_transport));
        let connecting = inner
            .quinn
            .connect_with(config, addr, SERVER_NAME)
            .map_err(|e| match e {
                quinn::ConnectError::EndpointStopping => TransportError::Closed,
                other => TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    other.to_string(),
                )),
            })?;

        let attempt = async {
            let conn = connecting
                .await
                .map_err(|e| from_connection_error(&e, true))?;
            await_acceptance(&conn).await.inspect_err(|_| {
                conn.close(VarInt::from_u32(close_code::PROTOCOL_VIOLATION), b"");
            })?;
            Ok::<_, TransportError>(conn)
        };
        let result = timeout(inner.limits.handshake_timeout, attempt).await;
        let check = outcome.lock().ok().and_then(|slot| slot.clone());
        let conn = match result {
            Err(_) => {
                return Err(TransportError::Timeout {
                    during: "during the handshake",
                });
            }
            Ok(Err(e)) => {
                return Err(match check {
                    Some(ServerCheck::WrongKey(presented)) => TransportError::WrongPeerKey {
                        expected,
                        presented,
                    },
                    Some(ServerCheck::NotInDirectory(key)) => {
                        TransportError::PeerNotInDirectory { key }
                    }
                    _ => e,
                });
            }
            Ok(Ok(conn)) => conn,
        };
        // Belt and braces: the verifier ran, accepted this key, and TLS
        // negotiated our ALPN.
        let verified = matches!(check, Some(ServerCheck::Accepted(_)))
            && tls::peer_key(&conn) == Some(expected)
            && negotiated_alpn(&conn).as_deref() == Some(inner.alpn);
        let Some(ServerCheck::Accepted(peer)) = check.filter(|_| verified) else {
            conn.close(VarInt::from_u32(close_code::PROTOCOL_VIOLATION), b"");
            return Err(TransportError::ProtocolViolation {
                reason: "server identity or ALPN not as negotiated",
            });
        };
        tracing::debug!(%peer, remote = %conn.remote_address(), "outbound connection established");
        Ok(Connection::new(
            conn,
            peer,
            expected,
            Arc::clone(&inner.limits),
            None,
        ))
    }

    /// Waits for the next inbound connection that has completed the
    /// handshake and been authenticated against the authority.
    ///
    /// Failed or refused handshakes are never yielded (they are logged at
    /// `debug` and counted in [`stats`](Endpoint::stats)). Returns `None`
    /// once the endpoint is closed. `Some(Err(_))` is reserved for
    /// endpoint-level failures; the current implementation yields none.
    pub async fn accept(&self) -> Option<Result<Connection, TransportError>> {
        self.inner.incoming.lock().await.recv().await.map(Ok)
    }

    /// Closes the endpoint: stops accepting, closes every connection
    /// (requests in flight fail on both sides) and releases the socket once
    /// the peers have been told.
    pub fn close(&self) {
        self.inner.accept_task.abort();
        self.inner
            .quinn
            .close(VarInt::from_u32(close_code::NORMAL), b"endpoint closed");
        tracing::debug!("endpoint closed");
    }

    /// Waits until every connection of this endpoint has been closed and the
    /// peers notified (call after [`close`](Endpoint::close) on shutdown).
    pub async fn wait_idle(&self) {
        self.inner.quinn.wait_idle().await;
    }
}

/// The client waits for the server's acceptance signal: the server sends it
/// only after checking our key against its directory, so a refusal arrives
/// here as a TLS alert instead of a connection that dies on first use.
pub(crate) async fn await_acceptance(conn: &quinn::Connection) -> Result<(), TransportError> {
    let mut signal = conn
        .accept_uni()
        .await
        .map_err(|e| from_connection_error(&e, true))?;
    let bytes = signal.read_to_end(1).await.map_err(|e| match e {
        quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(e)) => {
            from_connection_error(&e, true)
        }
        quinn::ReadToEndError::Read(e) => from_read_error(&e),
        quinn::ReadToEndError::TooLong => TransportError::ProtocolViolation {
            reason: "acceptance signal too long",
        },
    })?;
    if bytes != [ACCEPTED] {
        return Err(TransportError::ProtocolViolation {
            reason: "bad acceptance signal",
        });
    }
    // The signal was the only server-initiated unidirectional stream.
    conn.set_max_concurrent_uni_streams(VarInt::from_u32(0));
    Ok(())
}

fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

fn transport_config(limits: &Limits, side: Side) -> Result<quinn::TransportConfig, TransportError> {
    let idle = quinn::IdleTimeout::try_from(limits.idle_timeout)
        .map_err(|_| TransportError::Config("idle_timeout too large".to_owned()))?;
    let largest_frame = limits.max_frame.max(limits.max_response_frame);
    // Bytes the peer may have in flight unread on one connection: enough for
    // two largest frames, at least 8 MiB.
    let window = u32::try_from(largest_frame.saturating_add(4).saturating_mul(2))
        .unwrap_or(u32::MAX)
        .max(8 * 1024 * 1024);
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(idle))
        .max_concurrent_bidi_streams(VarInt::from_u32(limits.max_concurrent_bidi_streams))
        .receive_window(VarInt::from_u32(window))
        .datagram_receive_buffer_size(None);
    match side {
        Side::Client => {
            transport
                .keep_alive_interval(Some(limits.keep_alive_interval))
                // Room for the server's acceptance signal only.
                .max_concurrent_uni_streams(VarInt::from_u32(1));
        }
        Side::Server => {
            transport.max_concurrent_uni_streams(VarInt::from_u32(0));
        }
    }
    Ok(transport)
}

/// Admission control for inbound attempts, then one task per handshake so a
/// slow handshake never holds up the others.
async fn accept_loop(
    endpoint: quinn::Endpoint,
    authority: Arc<dyn PeerAuthority>,
    alpn: &'static [u8],
    limits: Arc<Limits>,
    stats: Arc<Counters>,
    tx: mpsc::Sender<Connection>,
) {
    let mut rate = HandshakeRateLimiter::new(
        limits.handshakes_per_second_per_ip,
        limits.handshake_burst_per_ip,
    );
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_peer = KeySlots::default();
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        if limits.validate_addresses && !incoming.remote_address_validated() {
            if incoming.may_retry() {
                match incoming.retry() {
                    Ok(()) => bump(&stats.retries_sent),
                    Err(e) => e.into_incoming().refuse(),
                }
            } else {
                incoming.refuse();
            }
            continue;
        }
        if !rate.allow(remote.ip(), Instant::now()) {
            bump(&stats.refused_rate_limited);
            tracing::debug!(%remote, "refusing connection: handshake rate limit");
            incoming.refuse();
            continue;
        }
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            bump(&stats.refused_capacity);
            tracing::debug!(%remote, "refusing connection: at max_connections");
            incoming.refuse();
            continue;
        };
        match incoming.accept() {
            Ok(connecting) => {
                tokio::spawn(server_handshake(
                    connecting,
                    Arc::clone(&authority),
                    alpn,
                    Arc::clone(&limits),
                    Arc::clone(&stats),
                    Admitted {
                        permit,
                        per_peer: per_peer.clone(),
                    },
                    tx.clone(),
                ));
            }
            Err(e) => {
                bump(&stats.handshakes_failed);
                tracing::debug!(%remote, reason = %e, "inbound connection failed");
            }
        }
    }
    tracing::debug!("accept loop ended");
}

async fn server_handshake(
    connecting: quinn::Connecting,
    authority: Arc<dyn PeerAuthority>,
    alpn: &'static [u8],
    limits: Arc<Limits>,
    stats: Arc<Counters>,
    admitted: Admitted,
    tx: mpsc::Sender<Connection>,
) {
    let Admitted { permit, per_peer } = admitted;
    let remote = connecting.remote_address();
    let over_peer_limit = std::sync::atomic::AtomicBool::new(false);
    let attempt = async {
        let conn = connecting
            .await
            .map_err(|e| from_connection_error(&e, true))?;
        let protocol_violation = |reason| {
            conn.close(VarInt::from_u32(close_code::PROTOCOL_VIOLATION), b"");
            TransportError::ProtocolViolation { reason }
        };
        if negotiated_alpn(&conn).as_deref() != Some(alpn) {
            return Err(protocol_violation("ALPN not negotiated"));
        }
        let Some(key) = tls::peer_key(&conn) else {
            return Err(protocol_violation("no Ed25519 raw public key"));
        };
        // The verifier checked the key moments ago; ask again for the PoC id
        // (and in case the directory changed in between).
        let Some(peer) = authority.poc_for_key(&key) else {
            conn.close(VarInt::from_u32(close_code::NOT_IN_DIRECTORY), b"");
            return Err(TransportError::PeerNotInDirectory { key });
        };
        // Before the acceptance signal, so the client's connect fails with
        // the reason instead of handing it a connection about to close.
        let limit = limits.max_connections_per_peer;
        let Some(peer_slot) = per_peer.take(key, limit) else {
            over_peer_limit.store(true, Ordering::Relaxed);
            let reason = format!("too many connections from this peer (limit {limit})");
            conn.close(
                VarInt::from_u32(close_code::TOO_MANY_CONNECTIONS),
                reason.as_bytes(),
            );
            return Err(TransportError::HandshakeRefused { reason });
        };
        let mut signal = conn
            .open_uni()
            .await
            .map_err(|e| from_connection_error(&e, false))?;
        signal
            .write_all(&[ACCEPTED])
            .await
            .map_err(|e| crate::error::from_write_error(&e))?;
        signal.finish().map_err(|_| TransportError::Closed)?;
        Ok((conn, key, peer, peer_slot))
    };
    match timeout(limits.handshake_timeout, attempt).await {
        Ok(Ok((conn, key, peer, peer_slot))) => {
            bump(&stats.accepted);
            tracing::debug!(%peer, %remote, "inbound connection accepted");
            let slot = InboundSlot {
                _permit: permit,
                _peer: peer_slot,
            };
            let connection = Connection::new(conn, peer, key, limits, Some(slot));
            // Fails only if the endpoint is gone; dropping the connection
            // then closes it.
            let _ = tx.send(connection).await;
        }
        Ok(Err(e)) if over_peer_limit.load(Ordering::Relaxed) => {
            bump(&stats.refused_peer_limit);
            tracing::debug!(%remote, error = %e, "refusing connection: max_connections_per_peer");
        }
        Ok(Err(e)) => {
            bump(&stats.handshakes_failed);
            tracing::debug!(%remote, error = %e, "inbound handshake failed");
        }
        Err(_) => {
            bump(&stats.handshakes_failed);
            tracing::debug!(%remote, "inbound handshake timed out");
        }
    }
}

/// An inbound attempt let through admission control: its place under
/// `max_connections`, and the table its peer will be counted in once its
/// key is known.
struct Admitted {
    permit: OwnedSemaphorePermit,
    per_peer: KeySlots,
}

/// What an inbound connection holds until it ends: its place under
/// `max_connections` and under its peer's `max_connections_per_peer`.
pub(crate) struct InboundSlot {
    _permit: OwnedSemaphorePermit,
    _peer: KeySlot,
}

/// The QUIC stateless-reset key (HMAC-SHA256) and connection-id hash key,
/// derived from the identity key and the ALPN: stable across restarts,
/// secret, and distinct per endpoint kind.
fn restart_stable_keys(identity: &IdentityKeyPair, alpn: &[u8]) -> (ring::hmac::Key, u64) {
    let seed = identity.to_secret_bytes();
    let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, seed.as_ref());
    let tag = |label: &[u8]| {
        let mut input = label.to_vec();
        input.extend_from_slice(alpn);
        ring::hmac::sign(&derive, &input)
    };
    let reset = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        tag(b"pocnet/v1 quic-stateless-reset\0").as_ref(),
    );
    let cid = tag(b"pocnet/v1 quic-cid-key\0");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(cid.as_ref().get(..8).unwrap_or(&[0; 8]));
    (reset, u64::from_le_bytes(cid_key))
}
