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
    limits.max_response_frame = crate::wire::MAX_PAGE_RESPONSE_BYTES;
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
    /// A relay claiming to have deleted more than it was asked to is
    /// answering nonsense: [`ClientError::BadResponse`].
    pub async fn ack(&self, ids: &[u64]) -> Result<u64, ClientError> {
        let mut deleted: u64 = 0;
        for chunk in ids.chunks(wire::MAX_ACK_IDS) {
            let answer = self
                .conn
                .request(&Request::Ack(chunk.to_vec()).encode())
                .await?;
            let done = wire::decode_acked(&answer)?.map_err(ClientError::Refused)?;
            if done > u64::try_from(chunk.len()).unwrap_or(u64::MAX) {
                return Err(ClientError::BadResponse(BadResponse));
            }
            deleted = deleted.saturating_add(done);
        }
        Ok(deleted)
    }
}

/// A relay a sender trusts, pinned by its key (relays are not in the
/// directory: an operator pins them in its configuration).
#[derive(Debug, Clone)]
pub struct PinnedRelay {
    /// A short name, used in logs and in "delivered via relay NAME".
    pub name: PocId,
    /// `host:port` of its QUIC endpoint.
    pub address: String,
    /// Its identity key.
    pub key: IdentityPublicKey,
}

impl PinnedRelay {
    /// Parses a relay's public key as configured: 64 hex digits, as
    /// `poc-relay --keygen` prints it.
    pub fn parse_key(text: &str) -> Result<IdentityPublicKey, String> {
        let bytes = hex::decode(text.trim())
            .map_err(|e| format!("public_key must be 64 hex digits: {e}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "public_key must be 64 hex digits (32 bytes)".to_owned())?;
        IdentityPublicKey::from_bytes(bytes)
            .map_err(|e| format!("public_key is not a valid Ed25519 key: {e}"))
    }
}

/// One pinned relay and its cached connection.
struct Link {
    name: String,
    address: String,
    key: IdentityPublicKey,
    client: tokio::sync::Mutex<Option<RelayClient>>,
}

/// The relays a sender (a node, or the directory's ping identity) deposits
/// to when a recipient cannot be reached directly, with one cached
/// connection each.
///
/// # Which relays a delivery uses
///
/// For a recipient whose certificate lists `Relay` endpoints, the pinned
/// relays with the same `address` are tried in the certificate's order
/// (that is where the recipient fetches); if none of them is pinned here,
/// or the certificate lists none, every pinned relay is tried in order (the
/// usual case of a community sharing one set of relays). The first relay
/// that stores the envelope ends the attempt.
pub struct RelaySet {
    endpoint: Option<Endpoint>,
    links: Vec<Link>,
}

impl std::fmt::Debug for RelaySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.links.iter().map(|l| &l.name))
            .finish()
    }
}

impl RelaySet {
    /// The relays `relays`; binds a client endpoint (ALPN `pocnet-relay/1`)
    /// presenting `identity` if there is any (on IPv6 if `ipv6`).
    pub fn new(
        relays: Vec<PinnedRelay>,
        identity: &IdentityKeyPair,
        ipv6: bool,
    ) -> Result<RelaySet, TransportError> {
        let endpoint = if relays.is_empty() {
            None
        } else {
            let pins = RelayPins::new(relays.iter().map(|r| (r.name.clone(), r.key)));
            let any: SocketAddr = if ipv6 {
                SocketAddr::from(([0u16; 8], 0))
            } else {
                SocketAddr::from(([0, 0, 0, 0], 0))
            };
            Some(bind_endpoint(any, identity, pins)?)
        };
        let links = relays
            .into_iter()
            .map(|r| Link {
                name: r.name.to_string(),
                address: r.address.trim().to_owned(),
                key: r.key,
                client: tokio::sync::Mutex::new(None),
            })
            .collect();
        Ok(RelaySet { endpoint, links })
    }

    /// Whether no relay is pinned.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Number of relays pinned.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// The name of relay `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.links.get(index).map(|l| l.name.as_str())
    }

    /// Indexes of the relays to try for a recipient with these certificate
    /// endpoints, in order.
    pub fn order(&self, endpoints: &[poc_proto::certificate::Endpoint]) -> Vec<usize> {
        use poc_proto::certificate::Endpoint as CertEndpoint;
        let named: Vec<usize> = endpoints
            .iter()
            .filter_map(|e| match e {
                CertEndpoint::Relay { address } => {
                    self.links.iter().position(|l| l.address == address.trim())
                }
                CertEndpoint::Direct { .. } => None,
            })
            .collect();
        if named.is_empty() {
            (0..self.links.len()).collect()
        } else {
            named
        }
    }

    /// The cached connection to relay `index`, connecting if needed.
    pub async fn client(&self, index: usize) -> Result<RelayClient, String> {
        let link = self.links.get(index).ok_or("no such relay")?;
        let mut cached = link.client.lock().await;
        if let Some(client) = cached.as_ref()
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        let endpoint = self.endpoint.as_ref().ok_or("no relay endpoint")?;
        let socket = tokio::net::lookup_host(&link.address)
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", link.address))?
            .next()
            .ok_or_else(|| format!("{} resolves to nothing", link.address))?;
        let client = RelayClient::connect(endpoint, socket, link.key)
            .await
            .map_err(|e| format!("cannot reach relay {} at {}: {e}", link.name, link.address))?;
        *cached = Some(client.clone());
        Ok(client)
    }

    /// Drops the cached connection to relay `index` (the next use reconnects).
    pub async fn forget(&self, index: usize) {
        if let Some(link) = self.links.get(index)
            && let Some(client) = link.client.lock().await.take()
        {
            client.close();
        }
    }

    /// Deposits `envelope` at the first relay (in [`RelaySet::order`]) that
    /// stores it; returns its name, or why each one failed.
    pub async fn deposit(
        &self,
        endpoints: &[poc_proto::certificate::Endpoint],
        envelope: &[u8],
    ) -> Result<String, String> {
        let mut reasons = Vec::new();
        for index in self.order(endpoints) {
            let name = self.name(index).unwrap_or("?").to_owned();
            let client = match self.client(index).await {
                Ok(client) => client,
                Err(e) => {
                    reasons.push(format!("relay {name}: {e}"));
                    continue;
                }
            };
            match client.deposit(envelope).await {
                Ok(()) => return Ok(name),
                Err(ClientError::Refused(refusal)) => {
                    reasons.push(format!("relay {name}: refused: {refusal}"));
                }
                Err(e) => {
                    self.forget(index).await;
                    reasons.push(format!("relay {name}: {e}"));
                }
            }
        }
        Err(reasons.join("; "))
    }
}

/// What became of an envelope taken from our relay mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Handled for good (recorded, or refused and recorded as refused): the
    /// relay may delete it.
    Handled,
    /// Not handled (a storage failure): leave it, and what follows it, at
    /// the relay for the next fetch.
    LeaveAtRelay,
}

impl Taken {
    /// Reads a node's answer to a delivered envelope (`pocnet/1`: `0`
    /// accepted, `1` + a big-endian reject code refused): anything but an
    /// `Internal` refusal, or an answer that does not parse, is final.
    pub fn from_delivery_answer(answer: &[u8]) -> Taken {
        match answer {
            [0] => Taken::Handled,
            [1, hi, lo]
                if poc_proto::RejectCode::from_u16(u16::from_be_bytes([*hi, *lo]))
                    .is_some_and(|c| c != poc_proto::RejectCode::Internal) =>
            {
                Taken::Handled
            }
            _ => Taken::LeaveAtRelay,
        }
    }
}

/// Envelopes asked for per fetch of our own mailbox.
const TAKE_PAGE: u16 = 64;
/// Long-poll wait asked for (the relay may cap it).
const TAKE_WAIT: Duration = Duration::from_secs(20);

impl RelaySet {
    /// Keeps a connection to relay `index` and hands each envelope of our
    /// own mailbox to `take` as it arrives, oldest first, until the task is
    /// dropped. Acknowledges (the relay then deletes) what `take` handled;
    /// the first envelope left at the relay ends the page, so it and those
    /// after it are fetched again. Reconnects with a capped backoff.
    pub async fn take_mail<F, Fut>(&self, index: usize, mut take: F)
    where
        F: FnMut(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Taken>,
    {
        let Some(name) = self.name(index).map(str::to_owned) else {
            return;
        };
        let mut failures: u32 = 0;
        loop {
            match self.take_page(index, &name, &mut take).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    self.forget(index).await;
                    failures = failures.saturating_add(1);
                    let delay = Duration::from_millis(250u64 << failures.min(5))
                        .min(Duration::from_secs(5));
                    tracing::debug!(relay = %name, error = %e, retry_in = ?delay, "relay fetch failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One long poll: fetch a page, hand each envelope to `take`,
    /// acknowledge those handled.
    async fn take_page<F, Fut>(&self, index: usize, name: &str, take: &mut F) -> Result<(), String>
    where
        F: FnMut(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Taken>,
    {
        let client = self.client(index).await?;
        let page = client
            .fetch(TAKE_PAGE, TAKE_WAIT)
            .await
            .map_err(|e| e.to_string())?;
        let mut done = Vec::with_capacity(page.items.len());
        let mut left = None;
        for item in page.items {
            match take(item.envelope).await {
                Taken::Handled => done.push(item.id),
                Taken::LeaveAtRelay => {
                    left =
                        Some("could not record a relayed envelope; left at the relay".to_owned());
                    break;
                }
            }
        }
        if !done.is_empty() {
            let taken = done.len();
            let deleted = client.ack(&done).await.map_err(|e| e.to_string())?;
            tracing::info!(relay = %name, taken, deleted, "mail taken from relay");
        }
        left.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use poc_proto::certificate::Endpoint as CertEndpoint;

    fn set(names: &[(&str, &str)]) -> RelaySet {
        RelaySet {
            endpoint: None,
            links: names
                .iter()
                .map(|(name, address)| Link {
                    name: (*name).to_owned(),
                    address: (*address).to_owned(),
                    key: IdentityKeyPair::from_secret_bytes(&[9; 32]).public(),
                    client: tokio::sync::Mutex::new(None),
                })
                .collect(),
        }
    }

    #[test]
    fn delivery_answers_are_final_unless_internal_or_unreadable() {
        let refused = |code: poc_proto::RejectCode| {
            let [hi, lo] = code.as_u16().to_be_bytes();
            Taken::from_delivery_answer(&[1, hi, lo])
        };
        assert_eq!(Taken::from_delivery_answer(&[0]), Taken::Handled);
        assert_eq!(refused(poc_proto::RejectCode::BadSignature), Taken::Handled);
        assert_eq!(
            refused(poc_proto::RejectCode::Internal),
            Taken::LeaveAtRelay
        );
        assert_eq!(
            Taken::from_delivery_answer(&[1, 0xff, 0xff]),
            Taken::LeaveAtRelay
        );
        assert_eq!(Taken::from_delivery_answer(&[]), Taken::LeaveAtRelay);
        assert_eq!(Taken::from_delivery_answer(&[7]), Taken::LeaveAtRelay);
    }

    #[test]
    fn the_recipients_relays_come_first_in_its_order_else_all_pinned() {
        let relays = set(&[
            ("a", "a.example:1"),
            ("b", "b.example:2"),
            ("c", "c.example:3"),
        ]);
        let direct = CertEndpoint::Direct {
            address: "node.example:7401".into(),
        };
        let relay = |address: &str| CertEndpoint::Relay {
            address: address.into(),
        };
        // No relay in the certificate: every pinned relay, in order.
        assert_eq!(relays.order(std::slice::from_ref(&direct)), [0, 1, 2]);
        // The certificate's relays that are pinned, in the certificate's order.
        assert_eq!(
            relays.order(&[relay("c.example:3"), direct.clone(), relay("a.example:1")]),
            [2, 0]
        );
        // Relays that cannot be authenticated (not pinned) are skipped; if
        // none is left, fall back to all.
        assert_eq!(
            relays.order(&[relay("unknown.example:9"), relay(" b.example:2 ")]),
            [1]
        );
        assert_eq!(relays.order(&[relay("unknown.example:9")]), [0, 1, 2]);
    }
}
