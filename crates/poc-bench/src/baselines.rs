//! What a delivery cannot do without, measured in the same run: a raw QUIC
//! round trip, the envelope crypto of a message and its receipt, one fsync.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use poc_proto::envelope::{MemoryReplayCache, Sender};
use poc_proto::keys::{EphemeralSecret, IdentityKeyPair, IdentityPublicKey};
use poc_proto::message::Receipt;
use poc_proto::testkit::{DeterministicRandom, NOW, World, inquiry_message};
use poc_proto::{Body, Header, Message, PocId, Seconds};
use poc_transport::{ALPN_NODE, Endpoint, Limits, PeerAuthority};
use serde::Serialize;

use crate::stats::Summary;

/// Size of the inquiry content and of the raw QUIC request.
pub(crate) const PAYLOAD: usize = 4096;

/// Both peers of the raw QUIC baseline know each other, nobody else.
#[derive(Debug)]
struct Pair(Vec<(IdentityPublicKey, PocId)>);

impl PeerAuthority for Pair {
    fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<PocId> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, id)| id.clone())
    }
}

/// Raw QUIC request/response round trips between two in-process
/// poc-transport endpoints on loopback: a `PAYLOAD`-byte request answered
/// with one byte (as pocd acknowledges an envelope), one stream each, on an
/// established connection. Server side spawns a task per request, as pocd.
pub(crate) fn quic_round_trip(warmup: usize, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    let result = runtime.block_on(async move {
        let client_key =
            IdentityKeyPair::from_secret_bytes(&DeterministicRandom::bytes32("quic client"));
        let server_key =
            IdentityKeyPair::from_secret_bytes(&DeterministicRandom::bytes32("quic server"));
        let authority = Arc::new(Pair(vec![
            (
                client_key.public(),
                PocId::new("EST.cert").map_err(|e| anyhow!("{e}"))?,
            ),
            (
                server_key.public(),
                PocId::new("FRA.cert").map_err(|e| anyhow!("{e}"))?,
            ),
        ]));
        let loopback = "127.0.0.1:0".parse().context("loopback address")?;
        let server = Endpoint::bind(
            loopback,
            &server_key,
            authority.clone(),
            ALPN_NODE,
            Limits::default(),
        )?;
        let client = Endpoint::bind(
            loopback,
            &client_key,
            authority,
            ALPN_NODE,
            Limits::default(),
        )?;
        let address = server.local_addr()?;
        let accepting = server.clone();
        let serve = tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let Ok(connection) = incoming else { continue };
                tokio::spawn(async move {
                    while let Some(request) = connection.accept_request().await {
                        let Ok(request) = request else { continue };
                        tokio::spawn(async move {
                            let _ = request.respond(&[0]).await;
                        });
                    }
                });
            }
        });
        let connection = client.connect(address, server_key.public()).await?;
        let payload = vec![0x42u8; PAYLOAD];
        let mut times = Vec::with_capacity(samples);
        for i in 0..warmup + samples {
            let start = Instant::now();
            let answer = connection.request(&payload).await?;
            let took = start.elapsed();
            anyhow::ensure!(answer == [0], "unexpected answer from the QUIC server");
            if i >= warmup {
                times.push(took);
            }
        }
        connection.close();
        client.close();
        server.close();
        serve.abort();
        Ok::<_, anyhow::Error>(times)
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Envelope crypto per delivered message, each operation timed alone.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Crypto {
    /// `Sender::seal` of the 4 KiB inquiry (by the sender).
    pub(crate) seal_message: Summary,
    /// `Recipient::open` of it (by the recipient).
    pub(crate) open_message: Summary,
    /// `Sender::seal` of the receipt (by the recipient).
    pub(crate) seal_receipt: Summary,
    /// `Recipient::open` of the receipt (by the sender).
    pub(crate) open_receipt: Summary,
    /// The four together, per iteration.
    pub(crate) total: Summary,
    /// Envelope bytes of the inquiry.
    pub(crate) message_envelope_bytes: usize,
    /// Envelope bytes of the receipt.
    pub(crate) receipt_envelope_bytes: usize,
}

/// Raw samples of the envelope crypto, to pool over several slices.
#[derive(Debug, Default)]
pub(crate) struct CryptoSamples {
    /// seal message, open message, seal receipt, open receipt, the four.
    parts: [Vec<Duration>; 5],
    message_bytes: usize,
    receipt_bytes: usize,
}

impl CryptoSamples {
    /// Adds another slice's samples.
    pub(crate) fn extend(&mut self, other: CryptoSamples) {
        for (mine, theirs) in self.parts.iter_mut().zip(other.parts) {
            mine.extend(theirs);
        }
        self.message_bytes = other.message_bytes;
        self.receipt_bytes = other.receipt_bytes;
    }

    /// Median of the per-message total.
    pub(crate) fn total_median_us(&self) -> f64 {
        let [.., total] = &self.parts;
        Summary::of(total).median_us
    }

    /// The summaries.
    pub(crate) fn summary(&self) -> Crypto {
        let [seal_m, open_m, seal_r, open_r, total] = &self.parts;
        Crypto {
            seal_message: Summary::of(seal_m),
            open_message: Summary::of(open_m),
            seal_receipt: Summary::of(seal_r),
            open_receipt: Summary::of(open_r),
            total: Summary::of(total),
            message_envelope_bytes: self.message_bytes,
            receipt_envelope_bytes: self.receipt_bytes,
        }
    }
}

fn ephemeral(counter: &mut u64) -> EphemeralSecret {
    *counter += 1;
    let mut bytes = [0x5a; 32];
    for (dst, src) in bytes.iter_mut().zip(counter.to_le_bytes()) {
        *dst = src;
    }
    EphemeralSecret::from_random_bytes(bytes)
}

/// `Sender::seal` + `Recipient::open` of the 4 KiB inquiry (testkit world,
/// EST.cert to FRA.cert) and of the receipt FRA.cert sends back, a fresh
/// replay cache for every open; a fresh ephemeral key for every seal.
pub(crate) fn envelope_crypto(warmup: usize, samples: usize) -> anyhow::Result<CryptoSamples> {
    let world = World::new();
    let est = world.poc("EST.cert");
    let fra = world.poc("FRA.cert");
    let message = inquiry_message(&world, "EST.cert", "FRA.cert", PAYLOAD);
    let est_sender = Sender::new(&est.certificate, &est.identity)?;
    let fra_sender = Sender::new(&fra.certificate, &fra.identity)?;
    let at_fra = world.recipient("FRA.cert");
    let at_est = world.recipient("EST.cert");
    let expires = NOW.plus(Seconds::days(7));
    let mut counter = 0u64;
    let mut parts: [Vec<Duration>; 5] = Default::default();
    let (mut message_bytes, mut receipt_bytes) = (0, 0);
    for i in 0..warmup + samples {
        let t0 = Instant::now();
        let sealed = est_sender.seal(
            &message,
            &fra.certificate,
            &fra.prekey(),
            expires,
            ephemeral(&mut counter),
        )?;
        let t1 = Instant::now();
        let opened = at_fra.open(sealed.as_bytes(), &mut MemoryReplayCache::default(), NOW)?;
        let t2 = Instant::now();
        // Building the receipt message is not crypto: outside the timing.
        let receipt = Message {
            header: Header {
                sender: fra.id().clone(),
                recipient: est.id().clone(),
                message_id: poc_proto::MessageId::random(&mut DeterministicRandom::new(
                    &counter.to_le_bytes(),
                )),
                thread_id: message.header.thread_id,
                in_reply_to: Some(message.header.message_id),
                created_at: NOW,
                language: message.header.language,
                handling: message.header.handling,
                exercise: None,
            },
            body: Body::Receipt(Receipt {
                acknowledged: message.header.message_id,
                content_digest: opened.content_digest,
                received_at: NOW,
            }),
        };
        let t3 = Instant::now();
        let sealed_receipt = fra_sender.seal(
            &receipt,
            &est.certificate,
            &est.prekey(),
            expires,
            ephemeral(&mut counter),
        )?;
        let t4 = Instant::now();
        let opened_receipt = at_est.open(
            sealed_receipt.as_bytes(),
            &mut MemoryReplayCache::default(),
            NOW,
        )?;
        let t5 = Instant::now();
        anyhow::ensure!(
            matches!(opened_receipt.message.body, Body::Receipt(_)),
            "the receipt did not open as a receipt"
        );
        message_bytes = sealed.as_bytes().len();
        receipt_bytes = sealed_receipt.as_bytes().len();
        if i >= warmup {
            let [seal_m, open_m, seal_r, open_r, total] = &mut parts;
            seal_m.push(t1 - t0);
            open_m.push(t2 - t1);
            seal_r.push(t4 - t3);
            open_r.push(t5 - t4);
            total.push((t2 - t0) + (t5 - t3));
        }
    }
    Ok(CryptoSamples {
        parts,
        message_bytes,
        receipt_bytes,
    })
}

/// Appends 4 KiB to a new file in `dir` and `sync_all`s it, `samples`
/// times (as a WAL commit appends frames and syncs); the file is removed.
pub(crate) fn fsync(dir: &Path, warmup: usize, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let path = dir.join("poc-bench-fsync.probe");
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let block = vec![0x5au8; PAYLOAD];
    let mut times = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_all()?;
        let took = start.elapsed();
        if i >= warmup {
            times.push(took);
        }
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(times)
}
