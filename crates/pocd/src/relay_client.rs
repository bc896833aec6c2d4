//! The node's relays: deposit when the recipient cannot be reached
//! directly, and take our own mail as it arrives.
//!
//! # Which relays a delivery uses
//!
//! Relays are not in the directory, so a node can only talk to relays whose
//! key its operator pinned in `[[relay]]`; the order is
//! [`poc_relay::client::RelaySet`]'s (the recipient's own relays first). The
//! first relay that stores the envelope ends the attempt; the outbox records
//! `relay NAME`. If every relay refuses or is down, the delivery is retried
//! later, direct first again, until the message's time to live runs out.
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

use std::sync::Arc;
use std::time::Duration;

use poc_proto::keys::IdentityKeyPair;
use poc_relay::client::{PinnedRelay, RelaySet};

use crate::config::Config;
use crate::node::{ACK_ACCEPTED, ACK_REJECTED, Node};

/// Envelopes asked for per fetch.
const PAGE: u16 = 64;
/// Long-poll wait asked for (the relay may cap it).
const WAIT: Duration = Duration::from_secs(20);

/// The relays of `config`, pinned, with a client endpoint presenting our
/// identity if there is any.
pub(crate) fn relays(config: &Config, identity: &IdentityKeyPair) -> anyhow::Result<RelaySet> {
    let mut pinned = Vec::new();
    for relay in &config.relays {
        pinned.push(PinnedRelay {
            name: relay.name.clone(),
            address: relay.address.clone(),
            key: relay.key()?,
        });
    }
    Ok(RelaySet::new(
        pinned,
        identity,
        !config.node.listen.is_ipv4(),
    )?)
}

/// Starts one fetch task per configured relay.
pub(crate) fn spawn_fetchers(node: &Arc<Node>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..node.relays.len())
        .map(|index| tokio::spawn(fetch_loop(Arc::clone(node), index)))
        .collect()
}

/// Keeps a connection to relay `index` and takes our mail as it arrives.
async fn fetch_loop(node: Arc<Node>, index: usize) {
    let Some(name) = node.relays.name(index).map(str::to_owned) else {
        return;
    };
    let mut failures: u32 = 0;
    loop {
        match fetch_once(&node, index, &name).await {
            Ok(()) => failures = 0,
            Err(e) => {
                node.relays.forget(index).await;
                failures = failures.saturating_add(1);
                let delay =
                    Duration::from_millis(250u64 << failures.min(5)).min(Duration::from_secs(5));
                tracing::debug!(relay = %name, error = %e, retry_in = ?delay, "relay fetch failed");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One long poll: fetch a page, receive each envelope, acknowledge those
/// that are durably handled.
async fn fetch_once(node: &Arc<Node>, index: usize, name: &str) -> Result<(), String> {
    let client = node.relays.client(index).await?;
    let page = client.fetch(PAGE, WAIT).await.map_err(|e| e.to_string())?;
    if page.items.is_empty() {
        return Ok(());
    }
    let mut done = Vec::with_capacity(page.items.len());
    let mut failed = None;
    for item in page.items {
        let answer = node.receive_relayed(name, item.envelope).await;
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
        tracing::info!(relay = %name, taken, deleted, "mail taken from relay");
    }
    failed.map_or(Ok(()), Err)
}
