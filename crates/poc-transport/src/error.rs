//! Transport errors and the application error codes used on the wire.

use poc_proto::keys::IdentityPublicKey;
use quinn::VarInt;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The handshake was refused: by the peer (a TLS alert, e.g. because our
    /// key is not in its directory), by its admission control (rate limit or
    /// capacity), or because the TLS negotiation failed.
    #[error("handshake refused: {reason}")]
    HandshakeRefused {
        /// What we know about the refusal (codes and sanitized text only).
        reason: String,
    },
    /// The peer's identity key is not in our current directory view.
    #[error(
        "peer key {key:?} is not in the directory: refresh the directory or check the peer's entry"
    )]
    PeerNotInDirectory {
        /// The key the peer presented (or that we were asked to dial).
        key: IdentityPublicKey,
    },
    /// The server presented an identity key other than the one we expected.
    #[error(
        "server presented key {presented:?}, expected {expected:?}: check the directory entry and the address"
    )]
    WrongPeerKey {
        /// The key we expected (from the directory).
        expected: IdentityPublicKey,
        /// The key the server presented, if it was a valid Ed25519 key.
        presented: Option<IdentityPublicKey>,
    },
    /// An operation did not complete within its time limit.
    #[error("timed out {during}")]
    Timeout {
        /// What was under way (e.g. "during the handshake").
        during: &'static str,
    },
    /// A frame is larger than the local limit (sending or receiving).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Declared or actual length of the frame.
        len: u64,
        /// The limit that applies.
        max: u64,
    },
    /// The peer reset or stopped our stream with an application error code
    /// (e.g. our frame was larger than its limit, or it timed out reading).
    #[error("peer refused the stream: {code}")]
    RefusedByPeer {
        /// The code the peer gave.
        code: StreamErrorCode,
    },
    /// The connection was closed by the peer, timed out while idle, or was
    /// lost.
    #[error("connection lost: {reason}")]
    ConnectionLost {
        /// What we know about the loss (codes and sanitized text only).
        reason: String,
    },
    /// The endpoint or connection was closed locally.
    #[error("closed locally")]
    Closed,
    /// The peer broke the framing protocol (truncated or trailing data,
    /// unexpected streams, wrong ALPN).
    #[error("protocol violation: {reason}")]
    ProtocolViolation {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A socket-level I/O error (binding, local address).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The endpoint could not be configured (invalid limits, identity key
    /// rejected by the TLS provider, no tokio runtime).
    #[error("configuration error: {0}")]
    Config(String),
}

/// Application error codes carried in `RESET_STREAM` and `STOP_SENDING`
/// frames on request streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamErrorCode {
    /// `0x1`: the frame's declared length exceeds the receiver's limit.
    FrameTooLarge,
    /// `0x2`: the frame did not arrive within the receiver's stream timeout.
    Timeout,
    /// `0x3`: the stream broke the framing rules (truncated frame, data after
    /// the frame).
    ProtocolViolation,
    /// `0x4`: the request was dropped without a response (the node is
    /// shutting down or chose not to answer).
    NoResponse,
    /// Any other code (`0x0` is what QUIC stacks send when a stream handle is
    /// dropped without an explicit code).
    Other(u64),
}

impl StreamErrorCode {
    /// The code's numeric value on the wire.
    pub fn to_u64(self) -> u64 {
        match self {
            StreamErrorCode::FrameTooLarge => 0x1,
            StreamErrorCode::Timeout => 0x2,
            StreamErrorCode::ProtocolViolation => 0x3,
            StreamErrorCode::NoResponse => 0x4,
            StreamErrorCode::Other(code) => code,
        }
    }

    /// The code for a numeric value received on the wire.
    pub fn from_u64(code: u64) -> Self {
        match code {
            0x1 => StreamErrorCode::FrameTooLarge,
            0x2 => StreamErrorCode::Timeout,
            0x3 => StreamErrorCode::ProtocolViolation,
            0x4 => StreamErrorCode::NoResponse,
            other => StreamErrorCode::Other(other),
        }
    }

    pub(crate) fn varint(self) -> VarInt {
        VarInt::from_u64(self.to_u64()).unwrap_or(VarInt::from_u32(0))
    }
}

impl std::fmt::Display for StreamErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamErrorCode::FrameTooLarge => f.write_str("frame too large (0x1)"),
            StreamErrorCode::Timeout => f.write_str("timeout (0x2)"),
            StreamErrorCode::ProtocolViolation => f.write_str("protocol violation (0x3)"),
            StreamErrorCode::NoResponse => f.write_str("no response (0x4)"),
            StreamErrorCode::Other(code) => write!(f, "code {code:#x}"),
        }
    }
}

/// Application error codes carried in `CONNECTION_CLOSE` frames.
pub mod close_code {
    /// Normal close (the node is done with the connection or shutting down).
    pub const NORMAL: u32 = 0x0;
    /// The peer's key left the directory between the TLS check and the
    /// acceptance of the connection.
    pub const NOT_IN_DIRECTORY: u32 = 0x10;
    /// The peer broke the connection-level protocol (wrong ALPN, wrong
    /// identity, bad acceptance signal).
    pub const PROTOCOL_VIOLATION: u32 = 0x11;
    /// The peer already holds as many connections as it may (an endpoint's
    /// `max_connections_per_peer`, or a relay's per-client limit).
    pub const TOO_MANY_CONNECTIONS: u32 = 0x12;
}

/// Keeps at most 120 printable ASCII characters of peer-supplied text, so it
/// cannot forge log lines or carry large blobs.
pub(crate) fn sanitize(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(120)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// Maps a quinn connection error. `handshake` says whether the connection
/// was still being established (errors then mean "refused").
pub(crate) fn from_connection_error(
    err: &quinn::ConnectionError,
    handshake: bool,
) -> TransportError {
    use quinn::ConnectionError as E;
    match err {
        E::LocallyClosed => TransportError::Closed,
        E::TimedOut if handshake => TransportError::Timeout {
            during: "during the handshake",
        },
        E::TimedOut => TransportError::ConnectionLost {
            reason: "idle timeout".to_owned(),
        },
        E::VersionMismatch => TransportError::HandshakeRefused {
            reason: "no common QUIC version".to_owned(),
        },
        E::TransportError(e) => {
            let code = u64::from(e.code);
            let reason = format!(
                "transport error {code:#x}: {}",
                sanitize(e.reason.as_bytes())
            );
            if handshake || is_crypto(code) {
                TransportError::HandshakeRefused { reason }
            } else {
                TransportError::ConnectionLost { reason }
            }
        }
        E::ConnectionClosed(close) => {
            let code = u64::from(close.error_code);
            let reason = format!(
                "peer closed with transport error {code:#x}{}: {}",
                alert_hint(code),
                sanitize(&close.reason)
            );
            if handshake || is_crypto(code) || code == 0x2 {
                TransportError::HandshakeRefused { reason }
            } else {
                TransportError::ConnectionLost { reason }
            }
        }
        E::ApplicationClosed(close) => {
            let code = close.error_code.into_inner();
            let reason = format!(
                "peer closed with application code {code:#x}: {}",
                sanitize(&close.reason)
            );
            if handshake {
                TransportError::HandshakeRefused { reason }
            } else {
                TransportError::ConnectionLost { reason }
            }
        }
        E::Reset => TransportError::ConnectionLost {
            reason: "reset by peer (stateless reset)".to_owned(),
        },
        E::CidsExhausted => TransportError::ConnectionLost {
            reason: "connection ids exhausted".to_owned(),
        },
    }
}

/// QUIC carries TLS alerts as transport error codes `0x100 + alert`.
fn is_crypto(code: u64) -> bool {
    (0x100..=0x1ff).contains(&code)
}

fn alert_hint(code: u64) -> &'static str {
    match code {
        0x2 => " (connection refused: rate limit or capacity)",
        0x128 => " (TLS handshake_failure)",
        0x12a => " (TLS bad_certificate)",
        0x12e => " (TLS certificate_unknown)",
        0x130 => " (TLS unknown_ca)",
        0x131 => " (TLS access_denied: our key is not in the peer's directory)",
        0x133 => " (TLS decrypt_error)",
        0x178 => " (TLS no_application_protocol)",
        _ => "",
    }
}

pub(crate) fn from_read_error(err: &quinn::ReadError) -> TransportError {
    match err {
        quinn::ReadError::Reset(code) => TransportError::RefusedByPeer {
            code: StreamErrorCode::from_u64(code.into_inner()),
        },
        quinn::ReadError::ConnectionLost(e) => from_connection_error(e, false),
        quinn::ReadError::ClosedStream => TransportError::Closed,
        quinn::ReadError::IllegalOrderedRead | quinn::ReadError::ZeroRttRejected => {
            TransportError::ProtocolViolation {
                reason: "unexpected stream state",
            }
        }
    }
}

pub(crate) fn from_write_error(err: &quinn::WriteError) -> TransportError {
    match err {
        quinn::WriteError::Stopped(code) => TransportError::RefusedByPeer {
            code: StreamErrorCode::from_u64(code.into_inner()),
        },
        quinn::WriteError::ConnectionLost(e) => from_connection_error(e, false),
        quinn::WriteError::ClosedStream => TransportError::Closed,
        quinn::WriteError::ZeroRttRejected => TransportError::ProtocolViolation {
            reason: "unexpected 0-RTT rejection",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_codes_round_trip() {
        for code in 0..8 {
            assert_eq!(StreamErrorCode::from_u64(code).to_u64(), code);
        }
    }

    #[test]
    fn sanitize_strips_control_and_truncates() {
        assert_eq!(sanitize(b"a\nb\x1b[31m"), "a?b?[31m");
        assert_eq!(sanitize(&[b'x'; 500]).len(), 120);
    }
}
