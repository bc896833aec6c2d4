//! The relay's storage alone, without QUIC or threads: what one envelope
//! costs the store thread in the relay benchmark's steady state (a recipient
//! online, fetching what arrives and acknowledging it).
//!
//! One cycle = a group commit of 16 deposits of 4,096 bytes into one mailbox,
//! a fetch of that page, and its acknowledgement. `log` (the default) and
//! `sqlite` are the durable stores (temporary files, the relay's own
//! settings), without the flush, which runs on another thread in the relay
//! and is timed apart as `log-flush` and `sqlite-flush` (the store's
//! flusher after each cycle); `memory` is the in-memory store, the floor
//! any storage adds to.
//!
//! `cargo bench -p poc-relay --bench store` (criterion prints time per
//! envelope as "thrpt" in elements/s; the time per cycle / 16 is the
//! per-envelope cost).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use poc_proto::certificate::MailboxId;
use poc_proto::time::Timestamp;
use poc_relay::store::{LogStore, MemoryStore, NewEnvelope, Quota, RelayStore, SqliteStore};

/// Deposits per group commit: about what the relay bench's trace log shows
/// at 64 deposits in flight.
const BATCH: usize = 16;
/// The relay bench's envelope size.
const ENVELOPE: usize = 4096;

const QUOTA: Quota = Quota {
    max_envelopes: u64::MAX,
    max_bytes: u64::MAX,
};

fn batch(round: u64) -> Vec<NewEnvelope> {
    (0..BATCH as u64)
        .map(|i| NewEnvelope {
            mailbox: MailboxId([7; 16]),
            expires_at: Timestamp(4_000_000_000),
            // Distinct bytes per envelope, so no page compresses or repeats.
            bytes: (0..ENVELOPE)
                .map(|b| (b as u64 ^ (round * 31 + i * 7)) as u8)
                .collect(),
        })
        .collect()
}

/// Deposit a batch, fetch it, acknowledge it.
fn cycle(store: &mut dyn RelayStore, deposits: &[NewEnvelope]) {
    let outcomes = store.deposit_batch(deposits, QUOTA).unwrap();
    assert_eq!(outcomes.len(), BATCH);
    let page = store
        .fetch(MailboxId([7; 16]), Timestamp(0), 256, 1 << 20)
        .unwrap();
    let ids: Vec<u64> = page.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), BATCH);
    assert_eq!(store.ack(MailboxId([7; 16]), &ids).unwrap(), BATCH as u64);
}

fn store_cycle(c: &mut Criterion) {
    let deposits = batch(1);
    let mut group = c.benchmark_group("relay-store");
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut memory = MemoryStore::default();
    group.bench_function("memory", |b| {
        b.iter(|| cycle(&mut memory, black_box(&deposits)))
    });

    let dir = tempfile::tempdir().unwrap();
    let mut log = LogStore::open(&dir.path().join("relay-log")).unwrap();
    let mut log_flusher = log.take_flusher().unwrap();
    group.bench_function("log", |b| b.iter(|| cycle(&mut log, black_box(&deposits))));
    group.bench_function("log-flush", |b| {
        b.iter(|| {
            cycle(&mut log, black_box(&deposits));
            log_flusher.flush().unwrap();
        })
    });

    let mut sqlite = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
    let mut flusher = sqlite.take_flusher().unwrap();
    group.bench_function("sqlite", |b| {
        b.iter(|| cycle(&mut sqlite, black_box(&deposits)))
    });
    group.bench_function("sqlite-flush", |b| {
        b.iter(|| {
            cycle(&mut sqlite, black_box(&deposits));
            flusher.flush().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, store_cycle);
criterion_main!(benches);
