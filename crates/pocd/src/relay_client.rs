//! The node's relays: deposit when the recipient cannot be reached
//! directly, and take our own mail as it arrives.
//!
//! # Which relays a delivery uses
//!
//! Relays are not in the directory, so a node can only talk to relays whose
//! key its operator pinned in `[[relay]]`. For a recipient whose certificate
//! lists `Relay` endpoints, the configured relays with the same `address`
//! are tried in the certificate's order (that is where the recipient
//! fetches); if none of them is configured here, or the certificate lists
//! none, every configured relay is tried in configuration order (the usual
//! case of a community sharing one set of relays). The first relay that
//! stores the envelope ends the attempt; the outbox records `relay NAME`.
//! If every relay refuses or is down, the delivery is retried later, direct
//! first again, until the message's time to live runs out.
//!
//! # Fetching
//!
//! One task per relay keeps a connection and long-polls its own mailbox.
//! Each fetched envelope goes through [`Node::receive_relayed`], the same
//! path as a direct delivery: record, replay check and receipt in one
//! transaction. Only then is it acknowledged to the relay (which deletes
//! it). Rejected envelopes are recorded as rejected and acknowledged too,
//! so a bad envelope never blocks the mailbox; an internal failure leaves
//! the envelope at the relay for the next fetch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poc_proto::certificate::Endpoint as CertEndpoint;
use poc_proto::keys::{IdentityKeyPair, IdentityPublicKey};
use poc_relay::client::{ClientError, RelayClient, RelayPins};
use poc_transport::Endpoint;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::node::{ACK_ACCEPTED, ACK_REJECTED, Node};

/// Envelopes asked for per fetch.
const PAGE: u16 = 64;
/// Long-poll wait asked for (the relay may cap it).
const WAIT: Duration = Duration::from_secs(20);

/// One configured relay and its cached connection.
struct Link {
    name: String,
    address: String,
    key: IdentityPublicKey,
    client: Mutex<Option<RelayClient>>,
}

/// The configured relays.
pub(crate) struct Relays {
    endpoint: Option<Endpoint>,
    links: Vec<Link>,
}

impl std::fmt::Debug for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.links.iter().map(|l| &l.name))
            .finish()
    }
}

impl Relays {
    /// The relays of `config`; binds a client endpoint (ALPN
    /// `pocnet-relay/1`) presenting our identity if there is any.
    pub(crate) fn new(config: &Config, identity: &IdentityKeyPair) -> anyhow::Result<Relays> {
        let mut links = Vec::new();
        for relay in &config.relays {
            links.push(Link {
                name: relay.name.to_string(),
                address: relay.address.trim().to_owned(),
                key: relay.key()?,
                client: Mutex::new(None),
            });
        }
        let endpoint = if links.is_empty() {
            None
        } else {
            let pins = RelayPins::new(
                config
                    .relays
                    .iter()
                    .zip(&links)
                    .map(|(r, l)| (r.name.clone(), l.key)),
            );
            let any: SocketAddr = if config.node.listen.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            Some(poc_relay::client::bind_endpoint(any, identity, pins)?)
        };
        Ok(Relays { endpoint, links })
    }

    /// Whether no relay is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Number of relays configured.
    pub(crate) fn len(&self) -> usize {
        self.links.len()
    }

    /// The relays to try for a recipient with these certificate endpoints.
    fn order(&self, endpoints: &[CertEndpoint]) -> Vec<&Link> {
        let named: Vec<&Link> = endpoints
            .iter()
            .filter_map(|e| match e {
                CertEndpoint::Relay { address } => {
                    self.links.iter().find(|l| l.address == address.trim())
                }
                CertEndpoint::Direct { .. } => None,
            })
            .collect();
        if named.is_empty() {
            self.links.iter().collect()
        } else {
            named
        }
    }

    async fn client(&self, link: &Link) -> Result<RelayClient, String> {
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

    async fn forget(&self, link: &Link) {
        if let Some(client) = link.client.lock().await.take() {
            client.close();
        }
    }

    /// Deposits `envelope` at the first relay that stores it; returns its
    /// name, or why each one failed.
    pub(crate) async fn deposit(
        &self,
        endpoints: &[CertEndpoint],
        envelope: &[u8],
    ) -> Result<String, String> {
        let mut reasons = Vec::new();
        for link in self.order(endpoints) {
            let client = match self.client(link).await {
                Ok(client) => client,
                Err(e) => {
                    reasons.push(format!("relay {}: {e}", link.name));
                    continue;
                }
            };
            match client.deposit(envelope).await {
                Ok(()) => return Ok(link.name.clone()),
                Err(ClientError::Refused(refusal)) => {
                    reasons.push(format!("relay {}: refused: {refusal}", link.name));
                }
                Err(e) => {
                    self.forget(link).await;
                    reasons.push(format!("relay {}: {e}", link.name));
                }
            }
        }
        Err(reasons.join("; "))
    }
}

/// Starts one fetch task per configured relay.
pub(crate) fn spawn_fetchers(node: &Arc<Node>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..node.relays.len())
        .map(|index| tokio::spawn(fetch_loop(Arc::clone(node), index)))
        .collect()
}

/// Keeps a connection to relay `index` and takes our mail as it arrives.
async fn fetch_loop(node: Arc<Node>, index: usize) {
    let Some(link) = node.relays.links.get(index) else {
        return;
    };
    let mut failures: u32 = 0;
    loop {
        match fetch_once(&node, link).await {
            Ok(()) => failures = 0,
            Err(e) => {
                node.relays.forget(link).await;
                failures = failures.saturating_add(1);
                let delay =
                    Duration::from_millis(250u64 << failures.min(5)).min(Duration::from_secs(5));
                tracing::debug!(relay = %link.name, error = %e, retry_in = ?delay, "relay fetch failed");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One long poll: fetch a page, receive each envelope, acknowledge those
/// that are durably handled.
async fn fetch_once(node: &Arc<Node>, link: &Link) -> Result<(), String> {
    let client = node.relays.client(link).await?;
    let page = client.fetch(PAGE, WAIT).await.map_err(|e| e.to_string())?;
    if page.items.is_empty() {
        return Ok(());
    }
    let mut done = Vec::with_capacity(page.items.len());
    let mut failed = None;
    for item in page.items {
        let answer = node.receive_relayed(&link.name, item.envelope).await;
        match answer.as_slice() {
            [ACK_ACCEPTED] => done.push(item.id),
            [ACK_REJECTED, hi, lo]
                if poc_proto::RejectCode::from_u16(u16::from_be_bytes([*hi, *lo]))
                    .is_some_and(|c| c != poc_proto::RejectCode::Internal) =>
            {
                // Recorded as rejected: nothing more to do with it.
                done.push(item.id);
            }
            _ => {
                failed = Some("could not record a relayed envelope; left at the relay".to_owned());
                break;
            }
        }
    }
    if !done.is_empty() {
        let taken = done.len();
        let deleted = client.ack(&done).await.map_err(|e| e.to_string())?;
        tracing::info!(relay = %link.name, taken, deleted, "mail taken from relay");
    }
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relays(names: &[(&str, &str)]) -> Relays {
        Relays {
            endpoint: None,
            links: names
                .iter()
                .map(|(name, address)| Link {
                    name: (*name).to_owned(),
                    address: (*address).to_owned(),
                    key: IdentityKeyPair::from_secret_bytes(&[9; 32]).public(),
                    client: Mutex::new(None),
                })
                .collect(),
        }
    }

    fn names(links: Vec<&Link>) -> Vec<&str> {
        links.into_iter().map(|l| l.name.as_str()).collect()
    }

    #[test]
    fn the_recipients_relays_come_first_in_its_order_else_all_configured() {
        let relays = relays(&[
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
        // No relay in the certificate: every configured relay, in order.
        assert_eq!(
            names(relays.order(std::slice::from_ref(&direct))),
            ["a", "b", "c"]
        );
        // The certificate's relays that we know, in the certificate's order.
        assert_eq!(
            names(relays.order(&[relay("c.example:3"), direct.clone(), relay("a.example:1")])),
            ["c", "a"]
        );
        // Relays we cannot authenticate (not configured) are skipped; if none
        // is left, fall back to ours.
        assert_eq!(
            names(relays.order(&[relay("unknown.example:9"), relay(" b.example:2 ")])),
            ["b"]
        );
        assert_eq!(
            names(relays.order(&[relay("unknown.example:9")])),
            ["a", "b", "c"]
        );
    }
}
