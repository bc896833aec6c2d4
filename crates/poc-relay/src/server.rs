//! The async shell: QUIC connections, the store thread, long polls, expiry
//! sweeps, directory reloads and metrics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use poc_proto::certificate::MailboxId;
use poc_proto::keys::IdentityPublicKey;
use poc_proto::{PocId, Timestamp};
use poc_transport::{Connection, Endpoint, IncomingRequest, PeerAuthority};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::core::{RateLimiter, RelayDirectory, RelayLimits, check_deposit};
use crate::metrics::Metrics;
use crate::store::{
    DepositOutcome, Flusher, NewEnvelope, Quota, RelayStore, StoredEnvelope, Usage,
};
use crate::wire::{self, Refusal, Request};

/// Seconds since the Unix epoch.
pub fn unix_now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// Operations queued for the store thread (bounded queue: memory stays
/// bounded whatever the clients do).
enum Op {
    Deposit(NewEnvelope, oneshot::Sender<Option<DepositOutcome>>),
    Fetch {
        mailbox: MailboxId,
        now: Timestamp,
        max_items: usize,
        max_bytes: usize,
        reply: oneshot::Sender<Option<Vec<StoredEnvelope>>>,
    },
    Ack {
        mailbox: MailboxId,
        ids: Vec<u64>,
        reply: oneshot::Sender<Option<u64>>,
    },
    Expire(Timestamp, oneshot::Sender<Option<u64>>),
    Totals(oneshot::Sender<Option<Usage>>),
    DiskBytes(oneshot::Sender<Option<u64>>),
}

/// Deposits committed together in one transaction at most.
const GROUP_COMMIT: usize = 256;

/// A handle on the store thread.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Op>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreHandle")
    }
}

impl StoreHandle {
    /// Starts the store thread; it stops when every handle is dropped.
    /// Consecutive deposits are committed together (group commit), so
    /// concurrent depositors share one fsync. When the store hands out a
    /// [`Flusher`], a second thread flushes committed batches while the
    /// store thread writes the next ones, and each deposit is answered once
    /// the flush covering its commit has returned.
    pub fn start(mut store: Box<dyn RelayStore>, quota: Quota, depth: usize) -> StoreHandle {
        let (tx, rx) = mpsc::channel::<Op>(depth.max(1));
        let disk_failed = Arc::new(AtomicBool::new(false));
        let flushing = store.take_flusher().and_then(|flusher| {
            let (to_flush, committed) = std::sync::mpsc::channel::<Committed>();
            let failed = disk_failed.clone();
            std::thread::Builder::new()
                .name("relay-flush".into())
                .spawn(move || flush_loop(flusher, &committed, &failed))
                .inspect_err(|e| tracing::error!(error = %e, "cannot start the flush thread"))
                .ok()
                .map(|_| to_flush)
        });
        std::thread::Builder::new()
            .name("relay-store".into())
            .spawn(move || store_loop(store, quota, rx, flushing, &disk_failed))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the store thread"));
        StoreHandle { tx }
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Option<T>>) -> Op) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Stores one envelope (waits at most `patience` for room in the queue).
    pub async fn deposit(
        &self,
        envelope: NewEnvelope,
        patience: Duration,
    ) -> Result<DepositOutcome, Refusal> {
        let (reply, rx) = oneshot::channel();
        match tokio::time::timeout(patience, self.tx.send(Op::Deposit(envelope, reply))).await {
            Err(_) => return Err(Refusal::Busy),
            Ok(Err(_)) => return Err(Refusal::Internal),
            Ok(Ok(())) => {}
        }
        rx.await.ok().flatten().ok_or(Refusal::Internal)
    }

    /// A page of `mailbox`.
    pub async fn fetch(
        &self,
        mailbox: MailboxId,
        now: Timestamp,
        max_items: usize,
        max_bytes: usize,
    ) -> Option<Vec<StoredEnvelope>> {
        self.call(|reply| Op::Fetch {
            mailbox,
            now,
            max_items,
            max_bytes,
            reply,
        })
        .await
    }

    /// Deletes acknowledged envelopes of `mailbox`.
    pub async fn ack(&self, mailbox: MailboxId, ids: Vec<u64>) -> Option<u64> {
        self.call(|reply| Op::Ack {
            mailbox,
            ids,
            reply,
        })
        .await
    }

    /// Drops expired envelopes.
    pub async fn expire(&self, now: Timestamp) -> Option<u64> {
        self.call(|reply| Op::Expire(now, reply)).await
    }

    /// What the store holds.
    pub async fn totals(&self) -> Option<Usage> {
        self.call(Op::Totals).await
    }

    /// What the store takes on the disk, if it knows.
    pub async fn disk_bytes(&self) -> Option<u64> {
        self.call(Op::DiskBytes).await
    }
}

/// A committed batch of deposits waiting for its flush.
struct Committed {
    replies: Vec<oneshot::Sender<Option<DepositOutcome>>>,
    outcomes: Vec<DepositOutcome>,
}

impl Committed {
    fn answer(self, durable: bool) {
        for (reply, outcome) in self.replies.into_iter().zip(self.outcomes) {
            let _ = reply.send(durable.then_some(outcome));
        }
    }
}

/// The store thread: runs every operation in order, taking consecutive
/// deposits into one transaction. Without a flusher (`flushing` is `None`)
/// a commit is durable when it returns and deposits are answered at once.
fn store_loop(
    mut store: Box<dyn RelayStore>,
    quota: Quota,
    mut rx: mpsc::Receiver<Op>,
    flushing: Option<std::sync::mpsc::Sender<Committed>>,
    disk_failed: &AtomicBool,
) {
    let mut pending: Option<Op> = None;
    loop {
        let op = match pending.take() {
            Some(op) => op,
            None => match rx.blocking_recv() {
                Some(op) => op,
                None => break,
            },
        };
        match op {
            Op::Deposit(first, reply) => {
                let mut batch = vec![first];
                let mut replies = vec![reply];
                while batch.len() < GROUP_COMMIT {
                    match rx.try_recv() {
                        Ok(Op::Deposit(next, reply)) => {
                            batch.push(next);
                            replies.push(reply);
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if disk_failed.load(Ordering::Acquire) {
                    for reply in replies {
                        let _ = reply.send(None);
                    }
                    continue;
                }
                let started = std::time::Instant::now();
                let result = store.deposit_batch(&batch, quota);
                tracing::trace!(size = batch.len(), took = ?started.elapsed(), "deposit batch committed");
                match result {
                    Ok(outcomes) => {
                        let committed = Committed { replies, outcomes };
                        match &flushing {
                            Some(flush) => {
                                if let Err(unsent) = flush.send(committed) {
                                    unsent.0.answer(false);
                                }
                            }
                            None => committed.answer(true),
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not store deposits");
                        for reply in replies {
                            let _ = reply.send(None);
                        }
                    }
                }
            }
            Op::Fetch {
                mailbox,
                now,
                max_items,
                max_bytes,
                reply,
            } => {
                let page = store.fetch(mailbox, now, max_items, max_bytes);
                let _ = reply.send(log_err(page, "fetch"));
            }
            Op::Ack {
                mailbox,
                ids,
                reply,
            } => {
                let _ = reply.send(log_err(store.ack(mailbox, &ids), "ack"));
            }
            Op::Expire(now, reply) => {
                let _ = reply.send(log_err(store.expire(now), "expire"));
            }
            Op::Totals(reply) => {
                let _ = reply.send(log_err(store.totals(), "totals"));
            }
            Op::DiskBytes(reply) => {
                let _ = reply.send(store.disk_bytes());
            }
        }
    }
}

/// The flush thread: each flush covers every batch committed before it
/// started, so batches that queue during one flush share the next.
fn flush_loop(
    mut flusher: Box<dyn Flusher>,
    committed: &std::sync::mpsc::Receiver<Committed>,
    disk_failed: &AtomicBool,
) {
    while let Ok(first) = committed.recv() {
        let mut waiting = vec![first];
        waiting.extend(committed.try_iter());
        match flusher.flush() {
            Ok(()) => waiting.into_iter().for_each(|c| c.answer(true)),
            Err(e) => {
                // After a failed fsync the kernel may have dropped the
                // pages it could not write, and a later fsync can succeed
                // without them: nothing committed since the last good
                // flush may be called stored, now or later. Refuse every
                // deposit from here on (their senders keep them and try
                // again or elsewhere); a restart recovers from the disk.
                disk_failed.store(true, Ordering::Release);
                tracing::error!(error = %e, "the relay's disk failed a flush: deposits are refused until the relay is restarted");
                waiting.into_iter().for_each(|c| c.answer(false));
                committed.iter().for_each(|c| c.answer(false));
                return;
            }
        }
    }
}

fn log_err<T>(result: Result<T, crate::store::StoreError>, what: &str) -> Option<T> {
    result
        .inspect_err(|e| tracing::error!(error = %e, op = what, "store operation failed"))
        .ok()
}

/// The relay's directory view, as the transport's authority.
#[derive(Debug, Clone, Default)]
pub struct SharedDirectory(Arc<RwLock<Arc<RelayDirectory>>>);

impl SharedDirectory {
    /// Wraps a view.
    pub fn new(view: RelayDirectory) -> SharedDirectory {
        SharedDirectory(Arc::new(RwLock::new(Arc::new(view))))
    }

    /// The current view.
    pub fn current(&self) -> Arc<RelayDirectory> {
        self.0.read().map(|v| Arc::clone(&v)).unwrap_or_default()
    }

    /// Replaces the view.
    pub fn replace(&self, view: RelayDirectory) {
        if let Ok(mut slot) = self.0.write() {
            *slot = Arc::new(view);
        }
    }
}

impl PeerAuthority for SharedDirectory {
    fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<PocId> {
        self.current().poc_for_key(key).cloned()
    }
}

/// Everything the connection handlers share.
pub struct Relay {
    store: StoreHandle,
    directory: SharedDirectory,
    limits: RelayLimits,
    rate: Mutex<RateLimiter>,
    /// Fetches and acknowledgements, per client key.
    reads: Mutex<RateLimiter>,
    waiting: Mutex<HashMap<MailboxId, Arc<Notify>>>,
    metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    /// Connections open per client identity key.
    per_client: poc_transport::KeySlots,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Transport limits for the relay's endpoint given its own limits.
pub fn transport_limits(limits: &RelayLimits) -> poc_transport::Limits {
    let mut t = poc_transport::Limits::default();
    t.max_frame = limits.max_envelope_bytes.saturating_add(1);
    t.max_response_frame = limits.max_page_response_bytes();
    t.max_concurrent_bidi_streams = limits.max_streams_per_connection.max(1);
    // The relay enforces (and counts) its own per-client limit,
    // `max_connections_per_client`, in `serve_connection`.
    t.max_connections_per_peer = usize::MAX;
    t
}

impl Relay {
    /// A relay over `store` for the PoCs of `directory`.
    pub fn new(
        store: StoreHandle,
        directory: SharedDirectory,
        limits: RelayLimits,
        metrics: Arc<Metrics>,
    ) -> Arc<Relay> {
        Arc::new(Relay {
            store,
            directory,
            rate: Mutex::new(RateLimiter::new(
                limits.deposits_per_second,
                limits.deposit_burst,
            )),
            reads: Mutex::new(RateLimiter::new(limits.reads_per_second, limits.read_burst)),
            limits,
            waiting: Mutex::new(HashMap::new()),
            metrics,
            next_conn: AtomicU64::new(1),
            per_client: poc_transport::KeySlots::default(),
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    fn notifier(&self, mailbox: MailboxId) -> Arc<Notify> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(waiting.entry(mailbox).or_default())
    }

    fn wake(&self, mailbox: &MailboxId) {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(notify) = waiting.get(mailbox) {
            notify.notify_waiters();
        }
    }

    /// Accepts and serves clients until the endpoint closes.
    pub async fn serve(self: Arc<Self>, endpoint: Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let Ok(connection) = incoming else { continue };
            let relay = Arc::clone(&self);
            tokio::spawn(async move { relay.serve_connection(connection).await });
        }
    }

    async fn serve_connection(self: Arc<Self>, connection: Connection) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let key = connection.peer_key();
        let mailbox = MailboxId::for_identity(&key);
        let limit = self.limits.max_connections_per_client;
        let Some(_slot) = self.per_client.take(key, limit) else {
            self.metrics
                .connections_over_client_limit
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(conn, %mailbox, limit, "client over its connection limit; closed");
            connection.close_with(
                poc_transport::close_code::TOO_MANY_CONNECTIONS,
                &format!("too many connections from this client (limit {limit})"),
            );
            return;
        };
        // The log names connections by number and mailbox only: what the
        // relay learns anyway from headers. Never a PoC id.
        tracing::debug!(conn, %mailbox, "client connected");
        self.metrics.connections.fetch_add(1, Ordering::Relaxed);
        while let Some(request) = connection.accept_request().await {
            let request = match request {
                Ok(request) => request,
                // Refused by the transport before it was read whole.
                Err(poc_transport::TransportError::FrameTooLarge { .. }) => {
                    self.metrics.refused(Refusal::TooLarge);
                    continue;
                }
                Err(_) => continue,
            };
            let relay = Arc::clone(&self);
            let connection = connection.clone();
            tokio::spawn(async move {
                relay.handle(conn, &connection, key, mailbox, request).await;
            });
        }
        self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(conn, "client disconnected");
    }

    async fn handle(
        &self,
        conn: u64,
        connection: &Connection,
        key: IdentityPublicKey,
        mailbox: MailboxId,
        mut request: IncomingRequest,
    ) {
        let payload = std::mem::take(&mut request.payload);
        let answer = match Request::decode(&payload) {
            Err(refusal) => Err(refusal),
            Ok(Request::Deposit(envelope)) => self.deposit(conn, &key, envelope).await,
            Ok(Request::Fetch { max_items, wait }) => {
                match self.pace_read(connection, &key).await {
                    Ok(()) => self.fetch(connection, mailbox, max_items, wait).await,
                    Err(refusal) => Err(refusal),
                }
            }
            Ok(Request::Ack(ids)) => match self.pace_read(connection, &key).await {
                Ok(()) => self.ack(conn, mailbox, ids).await,
                Err(refusal) => Err(refusal),
            },
        };
        drop(payload);
        if connection.is_closed() {
            // Nobody to answer (e.g. a long poll whose client went away):
            // not a refusal.
            return;
        }
        let frame = answer.unwrap_or_else(|refusal| {
            self.metrics.refused(refusal);
            tracing::debug!(conn, reason = %refusal, "request refused");
            wire::encode_refusal(refusal)
        });
        if let Err(e) = request.respond(&frame).await {
            tracing::debug!(conn, error = %e, "could not answer");
        }
    }

    /// Waits for `key`'s turn to read (fetch or acknowledge): each one
    /// reads or deletes in the store that every deposit waits for. Refused
    /// once the client has `read_burst` reads waiting already.
    async fn pace_read(
        &self,
        connection: &Connection,
        key: &IdentityPublicKey,
    ) -> Result<(), Refusal> {
        let wait = self
            .reads
            .lock()
            .ok()
            .and_then(|mut r| r.reserve(key, Instant::now()))
            .ok_or(Refusal::RateLimited)?;
        if !wait.is_zero() {
            self.metrics.reads_paced.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = connection.closed() => return Err(Refusal::Busy),
            }
        }
        Ok(())
    }

    async fn deposit(
        &self,
        conn: u64,
        key: &IdentityPublicKey,
        envelope: &[u8],
    ) -> Result<Vec<u8>, Refusal> {
        let allowed = self
            .rate
            .lock()
            .map(|mut r| r.allow(key, Instant::now()))
            .unwrap_or(false);
        if !allowed {
            return Err(Refusal::RateLimited);
        }
        let new = check_deposit(
            envelope,
            unix_now(),
            &self.directory.current(),
            &self.limits,
        )?;
        let to = new.mailbox;
        let len = new.bytes.len();
        match self.store.deposit(new, Duration::from_secs(5)).await? {
            DepositOutcome::Stored(id) => {
                self.metrics.deposits.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .deposited_bytes
                    .fetch_add(u64::try_from(len).unwrap_or(0), Ordering::Relaxed);
                tracing::debug!(conn, id, mailbox = %to, len, "envelope stored");
                self.wake(&to);
                Ok(wire::encode_stored())
            }
            DepositOutcome::MailboxFull => Err(Refusal::MailboxFull),
            DepositOutcome::MailboxBytesFull => Err(Refusal::MailboxBytesFull),
        }
    }

    async fn fetch(
        &self,
        connection: &Connection,
        mailbox: MailboxId,
        max_items: u16,
        wait: Duration,
    ) -> Result<Vec<u8>, Refusal> {
        self.metrics.fetches.fetch_add(1, Ordering::Relaxed);
        let max_items = usize::from(max_items.clamp(1, self.limits.max_page_items.max(1)));
        // One more than asked, to tell the client whether more is waiting.
        let ask = max_items + 1;
        let notify = self.notifier(mailbox);
        let notified = notify.notified();
        tokio::pin!(notified);
        // Registered before looking, so a deposit in between is not missed.
        notified.as_mut().enable();
        let mut page = self
            .store
            .fetch(mailbox, unix_now(), ask, self.limits.max_page_bytes)
            .await
            .ok_or(Refusal::Internal)?;
        if page.is_empty() && !wait.is_zero() {
            let wait = wait.min(self.limits.max_wait);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(wait) => {}
                _ = connection.closed() => return Err(Refusal::Busy),
            }
            page = self
                .store
                .fetch(mailbox, unix_now(), ask, self.limits.max_page_bytes)
                .await
                .ok_or(Refusal::Internal)?;
        }
        let more = page.len() > max_items;
        page.truncate(max_items);
        self.metrics
            .fetched
            .fetch_add(u64::try_from(page.len()).unwrap_or(0), Ordering::Relaxed);
        Ok(wire::encode_page(
            page.iter().map(|e| (e.id, e.bytes.as_slice())),
            more,
        ))
    }

    async fn ack(&self, conn: u64, mailbox: MailboxId, ids: Vec<u64>) -> Result<Vec<u8>, Refusal> {
        let asked = ids.len();
        let deleted = self
            .store
            .ack(mailbox, ids)
            .await
            .ok_or(Refusal::Internal)?;
        self.metrics.acked.fetch_add(deleted, Ordering::Relaxed);
        tracing::debug!(conn, asked, deleted, "acknowledged");
        Ok(wire::encode_acked(deleted))
    }

    /// Drops expired envelopes every `every` until the relay stops.
    pub async fn sweep_expired(self: Arc<Self>, every: Duration) {
        loop {
            if let Some(dropped) = self.store.expire(unix_now()).await
                && dropped > 0
            {
                self.metrics.expired.fetch_add(dropped, Ordering::Relaxed);
                tracing::info!(dropped, "expired envelopes dropped");
            }
            tokio::time::sleep(every).await;
        }
    }
}
