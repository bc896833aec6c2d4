//! The store thread's pipelined group commit: a deposit is answered as
//! stored only after a flush that started after its commit has returned,
//! and once a flush has failed no deposit is answered as stored again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poc_proto::Timestamp;
use poc_proto::certificate::MailboxId;
use poc_relay::server::StoreHandle;
use poc_relay::store::{
    DepositOutcome, Flusher, MemoryStore, NewEnvelope, Quota, RelayStore, StoreError,
    StoredEnvelope, Usage,
};
use poc_relay::wire::Refusal;

const QUOTA: Quota = Quota {
    max_envelopes: 100,
    max_bytes: 1_000_000,
};
const A: MailboxId = MailboxId([0xaa; 16]);
const PATIENCE: Duration = Duration::from_secs(5);

fn env(fill: u8) -> NewEnvelope {
    NewEnvelope {
        mailbox: A,
        expires_at: Timestamp(u64::MAX / 2),
        bytes: vec![fill; 64],
    }
}

/// What the test flusher was asked, and how it answers.
#[derive(Default)]
struct FlushLog {
    /// Envelopes committed when each flush started.
    committed_at_flush: Vec<u64>,
}

/// A memory store that counts what it committed and hands out a flusher
/// driven by the test.
struct GatedStore {
    inner: MemoryStore,
    committed: Arc<Mutex<u64>>,
    flusher: Option<GatedFlusher>,
}

/// Each flush waits for a permit from the test (`Ok`: the disk flushed,
/// `Err`: it failed).
struct GatedFlusher {
    committed: Arc<Mutex<u64>>,
    log: Arc<Mutex<FlushLog>>,
    permits: mpsc::Receiver<Result<(), ()>>,
}

impl Flusher for GatedFlusher {
    fn flush(&mut self) -> Result<(), StoreError> {
        let committed = *self.committed.lock().unwrap();
        self.log.lock().unwrap().committed_at_flush.push(committed);
        match self.permits.recv() {
            Ok(Ok(())) => Ok(()),
            _ => Err(StoreError::Flush {
                path: "test-disk".into(),
                source: std::io::Error::other("injected write error"),
            }),
        }
    }
}

struct Gated {
    handle: StoreHandle,
    permits: mpsc::Sender<Result<(), ()>>,
    log: Arc<Mutex<FlushLog>>,
}

impl RelayStore for GatedStore {
    fn take_flusher(&mut self) -> Option<Box<dyn Flusher>> {
        self.flusher.take().map(|f| Box::new(f) as Box<dyn Flusher>)
    }
    fn deposit_batch(
        &mut self,
        batch: &[NewEnvelope],
        quota: Quota,
    ) -> Result<Vec<DepositOutcome>, StoreError> {
        let outcomes = self.inner.deposit_batch(batch, quota)?;
        *self.committed.lock().unwrap() += u64::try_from(batch.len()).unwrap();
        Ok(outcomes)
    }
    fn fetch(
        &mut self,
        mailbox: MailboxId,
        now: Timestamp,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        self.inner.fetch(mailbox, now, max_items, max_bytes)
    }
    fn ack(&mut self, mailbox: MailboxId, ids: &[u64]) -> Result<u64, StoreError> {
        self.inner.ack(mailbox, ids)
    }
    fn expire(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.expire(now)
    }
    fn usage(&mut self, mailbox: MailboxId) -> Result<Usage, StoreError> {
        self.inner.usage(mailbox)
    }
    fn totals(&mut self) -> Result<Usage, StoreError> {
        self.inner.totals()
    }
}

fn gated() -> Gated {
    let (permits, gate) = mpsc::channel();
    let log = Arc::new(Mutex::new(FlushLog::default()));
    let committed = Arc::new(Mutex::new(0));
    let store = GatedStore {
        inner: MemoryStore::new(),
        committed: committed.clone(),
        flusher: Some(GatedFlusher {
            committed,
            log: log.clone(),
            permits: gate,
        }),
    };
    Gated {
        handle: StoreHandle::start(Box::new(store), QUOTA, 64),
        permits,
        log,
    }
}

#[tokio::test]
async fn a_deposit_is_answered_only_after_a_flush_that_covers_its_commit() {
    let g = gated();
    let first = tokio::spawn({
        let handle = g.handle.clone();
        async move { handle.deposit(env(1), PATIENCE).await }
    });
    // Committed but not flushed: no answer yet, and the envelope can already
    // be fetched (a crash now only makes its sender deposit it again).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!first.is_finished(), "answered before its flush returned");
    let page = g
        .handle
        .fetch(A, Timestamp(0), 10, 1 << 20)
        .await
        .expect("fetch");
    assert_eq!(page.len(), 1);

    // A deposit committed while the first flush is in progress waits for
    // the next flush, which covers it.
    let second = tokio::spawn({
        let handle = g.handle.clone();
        async move { handle.deposit(env(2), PATIENCE).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    g.permits.send(Ok(())).unwrap();
    assert!(matches!(
        first.await.unwrap(),
        Ok(DepositOutcome::Stored(_))
    ));
    assert!(
        !second.is_finished(),
        "answered by a flush that began before its commit"
    );
    g.permits.send(Ok(())).unwrap();
    assert!(matches!(
        second.await.unwrap(),
        Ok(DepositOutcome::Stored(_))
    ));
    let log = g.log.lock().unwrap();
    assert_eq!(
        log.committed_at_flush,
        vec![1, 2],
        "each flush started after the commit it answers"
    );
}

#[tokio::test]
async fn after_a_failed_flush_no_deposit_is_answered_as_stored() {
    let g = gated();
    let first = tokio::spawn({
        let handle = g.handle.clone();
        async move { handle.deposit(env(1), PATIENCE).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    g.permits.send(Err(())).unwrap();
    assert_eq!(first.await.unwrap(), Err(Refusal::Internal));
    // Later deposits are refused without being written, and nothing waits
    // for a flush that will never come.
    for fill in 2..5 {
        assert_eq!(
            g.handle.deposit(env(fill), PATIENCE).await,
            Err(Refusal::Internal)
        );
    }
    assert_eq!(
        g.handle.totals().await.expect("totals").envelopes,
        1,
        "only the envelope committed before the failure is in the store"
    );
}
