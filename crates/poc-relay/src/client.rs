//! The node's side of the relay protocol: deposit, fetch, acknowledge.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poc_proto::PocId;
use poc_proto::keys::{IdentityKeyPair, IdentityPublicKey};
use poc_transport::{Connection, Endpoint, PeerAuthority, StreamErrorCode, TransportError};

use crate::wire::{self, BadResponse, Page, Refusal, Request};

/// What went wrong talking to a relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The relay refused the request, saying why.
    #[error("relay refused: {0}")]
    Refused(Refusal),
    /// The connection failed.
    #[error("relay unreachable: {0}")]
    Transport(#[from] TransportError),
    /// The relay's answer did not decode.
    #[error(transparent)]
    BadResponse(#[from] BadResponse),
}

/// The relays a node trusts, pinned by their keys: the transport authority
/// of the node's relay endpoint. A relay is named by a [`PocId`]-shaped
/// name from the node's configuration (relays are not PoCs and are not in
/// the directory).
#[derive(Debug, Clone, Default)]
pub struct RelayPins(Vec<(PocId, IdentityPublicKey)>);

impl RelayPins {
    /// Pins these relays.
    pub fn new(relays: impl IntoIterator<Item = (PocId, IdentityPublicKey)>) -> RelayPins {
        RelayPins(relays.into_iter().collect())
    }
}

impl PeerAuthority for RelayPins {
    fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<PocId> {
        self.0
            .iter()
            .find(|(_, k)| k == key)
            .map(|(name, _)| name.clone())
    }
}

/// Transport limits for a node's relay endpoint: pages may be larger than
/// node-to-node answers.
pub fn client_limits() -> poc_transport::Limits {
    let mut limits = poc_transport::Limits::default();
    limits.max_response_frame = 6 * 1024 * 1024;
    // A restarted relay answers our keep-alive with a stateless reset: the
    // fetch loop learns within seconds that it must reconnect.
    limits.keep_alive_interval = std::time::Duration::from_secs(5);
    limits
}

/// Binds a client endpoint for talking to `relays`, presenting `identity`.
pub fn bind_endpoint(
    addr: SocketAddr,
    identity: &IdentityKeyPair,
    relays: RelayPins,
) -> Result<Endpoint, TransportError> {
    Endpoint::bind(
        addr,
        identity,
        Arc::new(relays),
        poc_transport::ALPN_RELAY,
        client_limits(),
    )
}

/// An authenticated connection to one relay.
#[derive(Debug, Clone)]
pub struct RelayClient {
    conn: Connection,
}

impl RelayClient {
    /// Connects to the relay at `addr` holding `key`.
    pub async fn connect(
        endpoint: &Endpoint,
        addr: SocketAddr,
        key: IdentityPublicKey,
    ) -> Result<RelayClient, TransportError> {
        Ok(RelayClient {
            conn: endpoint.connect(addr, key).await?,
        })
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.close();
    }

    /// Hands `envelope` to the relay for its recipient; `Ok` once the relay
    /// has stored it durably.
    pub async fn deposit(&self, envelope: &[u8]) -> Result<(), ClientError> {
        let answer = match self
            .conn
            .request(&Request::Deposit(envelope).encode())
            .await
        {
            // The relay's transport refuses a frame above its envelope limit
            // before reading it (bounded memory); that is a size refusal.
            Err(TransportError::RefusedByPeer {
                code: StreamErrorCode::FrameTooLarge,
            })
            | Err(TransportError::FrameTooLarge { .. }) => {
                return Err(ClientError::Refused(Refusal::TooLarge));
            }
            other => other?,
        };
        wire::decode_stored(&answer)?.map_err(ClientError::Refused)
    }

    /// Up to `max_items` envelopes of the own mailbox, waiting up to `wait`
    /// for one if it is empty (the relay caps the wait).
    pub async fn fetch(&self, max_items: u16, wait: Duration) -> Result<Page, ClientError> {
        let answer = self
            .conn
            .request(&Request::Fetch { max_items, wait }.encode())
            .await?;
        wire::decode_page(&answer)?.map_err(ClientError::Refused)
    }

    /// Tells the relay these envelopes are durably taken; it deletes them.
    /// Returns how many it deleted (ids not in the own mailbox are ignored).
    pub async fn ack(&self, ids: &[u64]) -> Result<u64, ClientError> {
        let mut deleted = 0;
        for chunk in ids.chunks(wire::MAX_ACK_IDS) {
            let answer = self
                .conn
                .request(&Request::Ack(chunk.to_vec()).encode())
                .await?;
            deleted += wire::decode_acked(&answer)?.map_err(ClientError::Refused)?;
        }
        Ok(deleted)
    }
}
