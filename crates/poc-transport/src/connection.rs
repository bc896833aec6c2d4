//! An authenticated connection to a peer, and framed requests over it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poc_proto::PocId;
use poc_proto::keys::IdentityPublicKey;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::time::{Instant, timeout, timeout_at};

use crate::Limits;
use crate::endpoint::InboundSlot;
use crate::error::{
    StreamErrorCode, TransportError, close_code, from_connection_error, from_read_error,
    from_write_error,
};

/// Initial buffer for a frame; a frame grows beyond this only as its bytes
/// actually arrive, so a peer announcing a large length costs nothing until
/// it sends the data.
const INITIAL_FRAME_CAPACITY: usize = 64 * 1024;

/// An authenticated QUIC connection to a PoC's node.
///
/// Cheap to clone; all clones share the connection. The connection is closed
/// when [`close`](Connection::close) is called or the last clone is dropped.
/// Either side may send requests ([`request`](Connection::request)) and
/// receive them ([`accept_request`](Connection::accept_request)).
#[derive(Clone)]
pub struct Connection {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    conn: quinn::Connection,
    peer: PocId,
    peer_key: IdentityPublicKey,
    limits: Arc<Limits>,
    requests: Mutex<mpsc::Receiver<Result<IncomingRequest, TransportError>>>,
    /// Starts the reader: the first `accept_request` says the application
    /// serves the peer's requests on this connection.
    wanted: Arc<Notify>,
    reader: tokio::task::AbortHandle,
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        self.reader.abort();
        self.conn
            .close(VarInt::from_u32(close_code::NORMAL), b"closed");
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.inner.peer)
            .field("peer_key", &self.inner.peer_key)
            .field("remote_address", &self.inner.conn.remote_address())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Wraps an authenticated quinn connection and starts reading the
    /// peer's request streams. `permit` is an inbound connection's slot
    /// (overall and per peer), given back when the connection ends.
    pub(crate) fn new(
        conn: quinn::Connection,
        peer: PocId,
        peer_key: IdentityPublicKey,
        limits: Arc<Limits>,
        permit: Option<InboundSlot>,
    ) -> Connection {
        let capacity = usize::try_from(limits.max_concurrent_bidi_streams)
            .unwrap_or(64)
            .max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let wanted = Arc::new(Notify::new());
        let reader = tokio::spawn(read_requests(
            conn.clone(),
            peer.clone(),
            Arc::clone(&limits),
            tx,
            permit,
            Arc::clone(&wanted),
        ))
        .abort_handle();
        Connection {
            inner: Arc::new(ConnInner {
                conn,
                peer,
                peer_key,
                limits,
                requests: Mutex::new(rx),
                wanted,
                reader,
            }),
        }
    }

    /// The peer's PoC id, as the directory named it when the connection was
    /// authenticated.
    pub fn peer(&self) -> &PocId {
        &self.inner.peer
    }

    /// The peer's identity key, as proven in the TLS handshake.
    pub fn peer_key(&self) -> IdentityPublicKey {
        self.inner.peer_key
    }

    /// The peer's current UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.inner.conn.remote_address()
    }

    /// Whether the connection has been closed (by either side) or lost.
    pub fn is_closed(&self) -> bool {
        self.inner.conn.close_reason().is_some()
    }

    /// Closes the connection now; requests in flight on both sides fail.
    pub fn close(&self) {
        self.inner
            .conn
            .close(VarInt::from_u32(close_code::NORMAL), b"closed");
    }

    /// Closes the connection now with an application close code (see
    /// [`crate::close_code`]) and a short reason the peer sees in its error.
    pub fn close_with(&self, code: u32, reason: &str) {
        self.inner
            .conn
            .close(VarInt::from_u32(code), reason.as_bytes());
    }

    /// Waits until the connection is closed or lost, and says why.
    pub async fn closed(&self) -> TransportError {
        from_connection_error(&self.inner.conn.closed().await, false)
    }

    /// Sends one request and waits for its response: opens a bidirectional
    /// stream, writes one frame, finishes the stream and reads one response
    /// frame. All of it within `limits.stream_timeout` plus the request's
    /// bytes at `limits.min_transfer_rate`, and the response's bytes at that
    /// rate once its length is known.
    ///
    /// `payload` may be at most `limits.max_frame` bytes; the response at
    /// most `limits.max_response_frame`.
    pub async fn request(&self, payload: &[u8]) -> Result<Vec<u8>, TransportError> {
        let limits = &self.inner.limits;
        check_len(payload.len(), limits.max_frame)?;
        let deadline = after(Instant::now(), limits.allowance(payload.len()));
        let (mut send, mut recv) = match timeout_at(deadline, self.inner.conn.open_bi()).await {
            Err(_) => {
                return Err(TransportError::Timeout {
                    during: "opening a request stream",
                });
            }
            Ok(Err(e)) => return Err(from_connection_error(&e, false)),
            Ok(Ok(streams)) => streams,
        };
        let exchange = async {
            let sent = async {
                write_frame(&mut send, payload).await?;
                send.finish().map_err(|_| TransportError::Closed)
            };
            match timeout_at(deadline, sent).await {
                Ok(sent) => sent?,
                Err(_) => {
                    return Err(TransportError::Timeout {
                        during: "sending the request",
                    });
                }
            }
            let frame = FrameRead {
                max: limits.max_response_frame,
                deadline,
                limits,
                during: "waiting for the response",
            };
            frame.read(&mut recv).await
        };
        let result = exchange.await;
        if let Err(e) = &result {
            abort_streams(&mut send, &mut recv, e);
        }
        result
    }

    /// Waits for the peer's next request on this connection.
    ///
    /// Returns `None` once the connection is closed and every request read
    /// from it has been handed out. `Some(Err(_))` reports a request stream
    /// the peer botched (oversize, truncated or too slow); that stream has
    /// already been reset, the connection is still usable, and the caller
    /// should simply call again (the daemon may count these against the
    /// peer). Such reports are dropped when the caller lags behind.
    ///
    /// The peer's request streams are read only once this is first called:
    /// on a connection whose requests nobody serves (e.g. one a node opened
    /// to deliver), QUIC flow control holds the peer to the connection's
    /// receive window instead of its frames being read into memory for
    /// nobody.
    pub async fn accept_request(&self) -> Option<Result<IncomingRequest, TransportError>> {
        self.inner.wanted.notify_one();
        self.inner.requests.lock().await.recv().await
    }

    #[cfg(test)]
    pub(crate) fn quinn(&self) -> &quinn::Connection {
        &self.inner.conn
    }
}

/// A request received from the peer, waiting for its response.
///
/// Dropping it without [`respond`](IncomingRequest::respond) resets the
/// stream with [`StreamErrorCode::NoResponse`].
pub struct IncomingRequest {
    /// The request frame's payload.
    pub payload: Vec<u8>,
    send: Option<SendStream>,
    max_response_frame: usize,
    limits: Arc<Limits>,
}

impl std::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the payload bytes.
        f.debug_struct("IncomingRequest")
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl IncomingRequest {
    /// Sends the response frame and finishes the stream, within
    /// `limits.stream_timeout` plus its bytes at `limits.min_transfer_rate`.
    /// `payload` may be at most
    /// `limits.max_response_frame` bytes; a larger one is not sent and the
    /// stream is reset with [`StreamErrorCode::FrameTooLarge`].
    pub async fn respond(mut self, payload: &[u8]) -> Result<(), TransportError> {
        let Some(mut send) = self.send.take() else {
            return Err(TransportError::Closed);
        };
        if let Err(e) = check_len(payload.len(), self.max_response_frame) {
            let _ = send.reset(StreamErrorCode::FrameTooLarge.varint());
            return Err(e);
        }
        let exchange = async {
            write_frame(&mut send, payload).await?;
            send.finish().map_err(|_| TransportError::Closed)
        };
        let result = match timeout(self.limits.allowance(payload.len()), exchange).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                during: "sending the response",
            }),
        };
        if let Err(e) = &result {
            let _ = send.reset(reset_code(e).varint());
        }
        result
    }
}

impl Drop for IncomingRequest {
    fn drop(&mut self) {
        if let Some(send) = self.send.as_mut() {
            let _ = send.reset(StreamErrorCode::NoResponse.varint());
        }
    }
}

/// Accepts the peer's request streams and reads each one's frame in its own
/// task, so a slow stream never holds up the others.
async fn read_requests(
    conn: quinn::Connection,
    peer: PocId,
    limits: Arc<Limits>,
    tx: mpsc::Sender<Result<IncomingRequest, TransportError>>,
    permit: Option<InboundSlot>,
    wanted: Arc<Notify>,
) {
    // Held until the connection ends: an inbound-connection slot.
    let _permit = permit;
    tokio::select! {
        () = wanted.notified() => {}
        _ = conn.closed() => return,
    }
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(read_request(
                    send,
                    recv,
                    peer.clone(),
                    Arc::clone(&limits),
                    tx.clone(),
                ));
            }
            Err(e) => {
                tracing::debug!(%peer, remote = %conn.remote_address(), reason = %e, "connection ended");
                break;
            }
        }
    }
}

async fn read_request(
    send: SendStream,
    mut recv: RecvStream,
    peer: PocId,
    limits: Arc<Limits>,
    tx: mpsc::Sender<Result<IncomingRequest, TransportError>>,
) {
    let mut send = Some(send);
    let frame = FrameRead {
        max: limits.max_frame,
        deadline: after(Instant::now(), limits.stream_timeout),
        limits: &limits,
        during: "reading a request frame",
    };
    let result = frame.read(&mut recv).await;
    match result {
        Ok(payload) => {
            let request = IncomingRequest {
                payload,
                send: send.take(),
                max_response_frame: limits.max_response_frame,
                limits: Arc::clone(&limits),
            };
            // Waits for room: at most max_concurrent_bidi_streams requests
            // can be pending, as the peer cannot open more streams than that.
            let _ = tx.send(Ok(request)).await;
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "request stream refused");
            if let Some(send) = send.as_mut() {
                abort_streams(send, &mut recv, &e);
            }
            // Informational; dropped if the application lags, so a peer
            // cannot queue unbounded error reports.
            let _ = tx.try_send(Err(e));
        }
    }
}

fn check_len(len: usize, max: usize) -> Result<(), TransportError> {
    if len > max || u32::try_from(len).is_err() {
        return Err(TransportError::FrameTooLarge {
            len: u64::try_from(len).unwrap_or(u64::MAX),
            max: u64::try_from(max).unwrap_or(u64::MAX),
        });
    }
    Ok(())
}

/// The stream error code that tells the peer why we gave up on a stream.
fn reset_code(e: &TransportError) -> StreamErrorCode {
    match e {
        TransportError::FrameTooLarge { .. } => StreamErrorCode::FrameTooLarge,
        TransportError::Timeout { .. } => StreamErrorCode::Timeout,
        TransportError::ProtocolViolation { .. } => StreamErrorCode::ProtocolViolation,
        _ => StreamErrorCode::NoResponse,
    }
}

/// Resets our side and asks the peer to stop sending (errors ignored: the
/// stream may already be gone).
fn abort_streams(send: &mut SendStream, recv: &mut RecvStream, e: &TransportError) {
    let code = reset_code(e).varint();
    let _ = send.reset(code);
    let _ = recv.stop(code);
}

/// Writes one frame: `u32` big-endian length, then the payload.
async fn write_frame(send: &mut SendStream, payload: &[u8]) -> Result<(), TransportError> {
    let len = u32::try_from(payload.len()).map_err(|_| TransportError::FrameTooLarge {
        len: u64::try_from(payload.len()).unwrap_or(u64::MAX),
        max: u64::from(u32::MAX),
    })?;
    send.write_all(&len.to_be_bytes())
        .await
        .map_err(|e| from_write_error(&e))?;
    send.write_all(payload)
        .await
        .map_err(|e| from_write_error(&e))
}

/// `start + time`; limits too large for the clock mean no limit in
/// practice, so they saturate a century out instead of overflowing.
fn after(start: Instant, time: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    start.checked_add(time.min(CENTURY)).unwrap_or(start)
}

/// One frame to read, and the time it has.
struct FrameRead<'l> {
    /// Largest length accepted, checked before anything is allocated.
    max: usize,
    /// When the length prefix must have arrived; the frame's bytes then
    /// have their size at `limits.min_transfer_rate` beyond it.
    deadline: Instant,
    limits: &'l Limits,
    /// What a timeout reports the reader was doing.
    during: &'static str,
}

impl FrameRead<'_> {
    /// Reads exactly one frame and the end of the stream.
    async fn read(self, recv: &mut RecvStream) -> Result<Vec<u8>, TransportError> {
        let timed_out = TransportError::Timeout {
            during: self.during,
        };
        let mut prefix = [0u8; 4];
        match timeout_at(self.deadline, recv.read_exact(&mut prefix)).await {
            Err(_) => return Err(timed_out),
            Ok(Ok(())) => {}
            Ok(Err(quinn::ReadExactError::FinishedEarly(_))) => {
                return Err(TransportError::ProtocolViolation {
                    reason: "stream ended inside the length prefix",
                });
            }
            Ok(Err(quinn::ReadExactError::ReadError(e))) => return Err(from_read_error(&e)),
        }
        let declared = u32::from_be_bytes(prefix);
        let len = usize::try_from(declared).unwrap_or(usize::MAX);
        if len > self.max {
            return Err(TransportError::FrameTooLarge {
                len: u64::from(declared),
                max: u64::try_from(self.max).unwrap_or(u64::MAX),
            });
        }
        let deadline = after(self.deadline, self.limits.transfer_time(len));
        let body = async {
            let mut payload = Vec::with_capacity(len.min(INITIAL_FRAME_CAPACITY));
            while payload.len() < len {
                let wanted = len - payload.len();
                match recv.read_chunk(wanted, true).await {
                    Ok(Some(chunk)) => payload.extend_from_slice(&chunk.bytes),
                    Ok(None) => {
                        return Err(TransportError::ProtocolViolation {
                            reason: "stream ended inside the frame",
                        });
                    }
                    Err(e) => return Err(from_read_error(&e)),
                }
            }
            match recv.read_chunk(1, true).await {
                Ok(None) => Ok(payload),
                Ok(Some(_)) => Err(TransportError::ProtocolViolation {
                    reason: "data after the frame",
                }),
                Err(e) => Err(from_read_error(&e)),
            }
        };
        timeout_at(deadline, body).await.unwrap_or(Err(timed_out))
    }
}
