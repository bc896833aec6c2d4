//! The store's single writer thread, with group commit.
//!
//! Every read and write of the node's SQLite store runs here, on one OS
//! thread, as a job. Jobs that queue up while a transaction runs are taken
//! together into the next one, so under load many messages share one fsync
//! (group commit) while each caller still learns only after the commit that
//! its work is durable. Each job runs inside its own savepoint: a job that
//! fails leaves no partial writes, and does not fail the others.
//!
//! After each commit that appended to the record, whichever job did it, the
//! new head seq is published on a watch channel ([`Db::record_head`]): the
//! control API's record followers wait on it instead of polling the store.

use std::sync::{Arc, mpsc};

use anyhow::Context;
use poc_store::{Store, StoreError, Tx};
use tokio::sync::{oneshot, watch};

/// Most jobs committed together.
const MAX_BATCH: usize = 256;

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
type Work = Box<dyn FnOnce(&mut Tx<'_>) -> Reply + Send>;

/// One caller's work, and whether its commit must reach the disk before the
/// caller hears of it.
struct Job {
    work: Work,
    synced: bool,
}

/// Why a database job failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    /// The job itself failed (its writes were rolled back).
    #[error("storage: {0}")]
    Job(String),
    /// The commit failed; nothing of the batch is durable.
    #[error("storage commit failed: {0}")]
    Commit(String),
    /// The writer thread is gone (the node is shutting down).
    #[error("storage is shut down")]
    Closed,
}

/// A handle to the writer thread.
#[derive(Clone, Debug)]
pub(crate) struct Db {
    jobs: mpsc::Sender<Job>,
    /// The record's head seq as of the last commit (0 while empty).
    head: Arc<watch::Sender<u64>>,
}

impl Db {
    /// Starts the writer thread owning `store`.
    pub(crate) fn start(mut store: Store) -> anyhow::Result<Db> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let start_head = store
            .read(|r| r.record_head())
            .context("cannot read the record head")?
            .map_or(0, |h| h.seq);
        let head = Arc::new(watch::Sender::new(start_head));
        let publish = head.clone();
        std::thread::Builder::new()
            .name("pocd-store".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let mut replies = Vec::with_capacity(batch.len());
                    // One job that needs the disk makes the batch synced.
                    let synced = batch.iter().any(|job| job.synced);
                    let work = |tx: &mut Tx<'_>| {
                        for job in batch.drain(..) {
                            replies.push((job.work)(tx));
                        }
                        Ok(tx.record_appended())
                    };
                    let commit = if synced {
                        store.transaction(work)
                    } else {
                        store.transaction_deferred(work)
                    };
                    // Followers hear only of what is on disk (a deferred
                    // batch appends nothing to the record anyway).
                    if synced && let Ok(Some(seq)) = commit {
                        publish.send_if_modified(|head| {
                            let moved = seq > *head;
                            if moved {
                                *head = seq;
                            }
                            moved
                        });
                    }
                    let commit = commit.map(|_| ()).map_err(|e: StoreError| e.to_string());
                    for reply in replies {
                        reply(commit.clone());
                    }
                }
            })?;
        Ok(Db { jobs, head })
    }

    /// The record's head seq, updated after every commit that appended to
    /// the record (by any job: sends, receipts, rejections, purges, notes).
    pub(crate) fn record_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Runs `f` in the next transaction; returns once it is committed and
    /// on disk.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// Runs `f` in the next transaction; returns once it is committed, but
    /// its commit reaches the disk only with a later synced one (see
    /// `Store::transaction_deferred`). Only for changes whose loss in a
    /// crash is harmless, e.g. marking a delivery done: after a crash the
    /// message is sent again and its recipient answers it as a duplicate.
    pub(crate) async fn run_deferred<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, synced: bool) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let work: Work = Box::new(move |tx| {
            let outcome = tx.savepoint(f);
            Box::new(move |commit: Result<(), String>| {
                let _ = done.send(match (outcome, commit) {
                    (Err(e), _) => Err(DbError::Job(e.to_string())),
                    (Ok(_), Err(c)) => Err(DbError::Commit(c)),
                    (Ok(v), Ok(())) => Ok(v),
                });
            })
        });
        self.jobs
            .send(Job { work, synced })
            .map_err(|_| DbError::Closed)?;
        result.await.map_err(|_| DbError::Closed)?
    }
}
