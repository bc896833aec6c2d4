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

use poc_proto::keys::IdentityKeyPair;
use poc_relay::client::{PinnedRelay, RelaySet, Taken};

use crate::config::Config;
use crate::node::Node;

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

/// Keeps a connection to relay `index` and takes our mail as it arrives,
/// through the same receive path as a direct delivery.
async fn fetch_loop(node: Arc<Node>, index: usize) {
    let name = node.relays.name(index).unwrap_or("?").to_owned();
    node.relays
        .take_mail(index, |envelope| {
            let node = Arc::clone(&node);
            let name = name.clone();
            async move { Taken::from_delivery_answer(&node.receive_relayed(&name, envelope).await) }
        })
        .await;
}
