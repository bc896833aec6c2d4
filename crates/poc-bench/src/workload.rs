//! The workload: 4 KiB inquiries sent through the sender's control API, each
//! followed until its neutral receipt is in the sender's record.
//!
//! Completion is detected with `Request::RecordFollow` long polls: one call
//! outstanding per watched daemon, held by the daemon until a commit
//! appends to its record, answered with compact entry summaries (no
//! envelope or content bytes), and re-issued at once with the last seq
//! seen. A message is complete when a `received` entry of kind `receipt` on
//! its thread arrives from the sender; in the phases run, a `received`
//! `inquiry` entry arriving from the recipient marks "recorded by the
//! recipient".
//!
//! The time of a completion is the instant the follow call's answer was
//! read here, so each figure includes, after the commit itself, the
//! control-socket hop of that answer: the daemon's waiting control task
//! wakes on the new record head, reads the summaries on the store thread
//! (queued behind any transaction already running there, which matters
//! under load rather than at concurrency 1), writes one JSON line on the
//! Unix socket, and this tool's follower thread reads it. There is no poll
//! window any more: the figure is measured, not bracketed, but it is later
//! than the commit by that hop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use poc_control::{ApiError, Client, Request, SendAccepted, SendRequest};
use poc_proto::message::Handling;
use poc_proto::testkit::sample_inquiry;
use poc_proto::{Body, PocId, ThreadId};
use serde::Deserialize;

use crate::baselines::PAYLOAD;
use crate::cluster::{Daemon, RECIPIENT};
use crate::cpu::{CpuUse, Snapshot};
use crate::stats::Summary;

/// How long one message may take before the run is declared failed.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);

/// The fields of a record summary this tool needs (the rest is skipped).
#[derive(Debug, Deserialize)]
struct Entry {
    seq: u64,
    event: String,
    kind: Option<String>,
    thread_id: Option<ThreadId>,
}

/// The control API's answer, decoded straight into the entries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Ok(Vec<Entry>),
    Error(ApiError),
}

/// Entries per follow call.
const PAGE: u32 = poc_control::FOLLOW_MAX_LIMIT;

/// How long the daemon holds a follow call with nothing new. At the end of
/// a run the follower's connection is shut down, so this does not delay it.
const WAIT_MS: u32 = 10_000;

/// Follows a daemon's record from a starting point with long polls on the
/// control socket (JSON lines, as `poc_control::Client` speaks them, but
/// decoding only the fields needed, without an intermediate
/// `serde_json::Value`).
struct RecordFollower {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    after: u64,
    line: String,
    /// Bytes of answers read.
    bytes: u64,
    /// Follow calls answered.
    calls: u64,
}

impl RecordFollower {
    /// Connects and skips everything already in the record (paging through
    /// it without waiting).
    fn at_end(socket: &Path) -> anyhow::Result<RecordFollower> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        let writer = stream.try_clone()?;
        let mut follower = RecordFollower {
            reader: BufReader::new(stream),
            writer,
            after: 0,
            line: String::new(),
            bytes: 0,
            calls: 0,
        };
        while follower.call(0)?.0.len() >= PAGE as usize {}
        follower.bytes = 0;
        follower.calls = 0;
        Ok(follower)
    }

    /// A handle that ends a waiting call (shut it down once the run is over).
    fn stopper(&self) -> anyhow::Result<UnixStream> {
        Ok(self.writer.try_clone()?)
    }

    /// The entries appended after the last call's, waiting up to `wait_ms`
    /// for the first; with the instant the answer arrived.
    fn call(&mut self, wait_ms: u32) -> anyhow::Result<(Vec<Entry>, Instant)> {
        let request = Request::RecordFollow {
            after_seq: self.after,
            limit: PAGE,
            wait_ms,
        };
        let mut out = serde_json::to_vec(&request)?;
        out.push(b'\n');
        self.writer.write_all(&out)?;
        self.line.clear();
        let n = self.reader.read_line(&mut self.line)?;
        let arrived = Instant::now();
        if n == 0 {
            bail!("pocd closed the control connection");
        }
        self.bytes += n as u64;
        self.calls += 1;
        let page = match serde_json::from_str::<Answer>(&self.line)? {
            Answer::Ok(page) => page,
            Answer::Error(e) => bail!("record follow refused: {e}"),
        };
        if let Some(last) = page.last() {
            self.after = last.seq;
        }
        Ok((page, arrived))
    }
}

/// What the followers know about threads.
#[derive(Default)]
struct Tracking {
    /// Workers waiting for their thread's receipt.
    waiting: HashMap<ThreadId, mpsc::SyncSender<Instant>>,
    /// Receipts seen before their sender registered (the send call had not
    /// returned to the worker yet).
    early: HashMap<ThreadId, Instant>,
    /// When the recipient's record was seen holding the inquiry.
    at_recipient: HashMap<ThreadId, Instant>,
    /// When the sender's follower saw the inquiry's own `sent` entry: the
    /// same commit the Send call's answer reports, so the two arrival
    /// times calibrate the follow hop.
    sent_seen: HashMap<ThreadId, Instant>,
}

/// The entries a follower looks for.
#[derive(Debug, Clone, Copy)]
enum Watch {
    /// On the sender: receipts recorded (completions).
    Receipts,
    /// On the recipient: inquiries recorded.
    Inquiries,
}

/// One message's timings.
struct Sample {
    /// Its thread.
    thread: ThreadId,
    /// When the send call returned.
    accepted: Instant,
    /// Send call (control API round trip: seal, record, queue, commit).
    send_call: Duration,
    /// When the answer showing the receipt recorded by the sender arrived.
    done: Instant,
    /// The receipt was seen before the send call returned to the worker.
    early: bool,
}

/// The result of one load run.
#[derive(Debug)]
pub(crate) struct Run {
    /// Messages completed.
    pub(crate) messages: usize,
    /// Messages kept in flight.
    pub(crate) concurrency: usize,
    /// First send issued -> last receipt seen recorded.
    pub(crate) elapsed: Duration,
    /// Per message: send accepted -> the sender's follow answer showing
    /// the receipt recorded.
    pub(crate) latency: Summary,
    /// Per message: send accepted -> the recipient's follow answer showing
    /// the inquiry recorded (only when the recipient was followed too).
    pub(crate) to_recipient: Option<Summary>,
    /// Per message: the control API's Send call.
    pub(crate) send_call: Summary,
    /// Median over the messages of (the sender's follow answer showing the
    /// inquiry's `sent` entry) - (the Send call's answer), in µs: how much
    /// later than a direct answer the follow call reports the same commit
    /// (negative: earlier).
    pub(crate) follow_lag_us: Option<f64>,
    /// Follow calls answered by the sender during the run.
    pub(crate) follow_calls: u64,
    /// Bytes those answers carried.
    pub(crate) follow_bytes: u64,
    /// Receipts seen before the send call had returned.
    pub(crate) early: usize,
    /// CPU used during the run.
    pub(crate) cpu: CpuUse,
}

impl Run {
    /// Delivered messages per second.
    pub(crate) fn throughput(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

/// The Send request every message uses (the daemon draws fresh ids).
fn send_request() -> anyhow::Result<Request> {
    Ok(Request::Send(Box::new(SendRequest::new(
        PocId::new(RECIPIENT).map_err(|e| anyhow!("{e}"))?,
        Handling::Confidential,
        Body::Inquiry(sample_inquiry(PAYLOAD)),
    ))))
}

/// The Send request as one control-protocol line, encoded once: every
/// message sends the same bytes, and encoding 4 KiB of attachment as hex per
/// message was this tool's own CPU, not the daemon's.
fn send_request_line() -> anyhow::Result<Vec<u8>> {
    Ok(send_request()?.encode()?)
}

/// Size of one Send request line on the control socket (JSON).
pub(crate) fn send_request_bytes() -> anyhow::Result<usize> {
    Ok(send_request_line()?.len())
}

fn worker(
    mut client: Client,
    request: &[u8],
    tracking: &Mutex<Tracking>,
    next: &AtomicUsize,
    count: usize,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) && next.fetch_add(1, Ordering::Relaxed) < count {
        let start = Instant::now();
        let accepted: SendAccepted = client.call_encoded(request).context("send refused")?;
        let accepted_at = Instant::now();
        let thread = accepted.thread_id;
        let (done, wait) = mpsc::sync_channel(1);
        let early = {
            let mut t = tracking.lock().map_err(|_| anyhow!("poisoned"))?;
            match t.early.remove(&thread) {
                Some(at) => Some(at),
                None => {
                    t.waiting.insert(thread, done);
                    None
                }
            }
        };
        let done_at = match early {
            Some(at) => at,
            None => wait.recv_timeout(MESSAGE_TIMEOUT).map_err(|_| {
                anyhow!(
                    "no receipt for thread {thread} within {} s",
                    MESSAGE_TIMEOUT.as_secs()
                )
            })?,
        };
        samples.push(Sample {
            thread,
            accepted: accepted_at,
            send_call: accepted_at - start,
            done: done_at,
            early: early.is_some(),
        });
    }
    Ok(samples)
}

/// Follows one daemon's record until `stop` (when the run's end shuts its
/// connection down), stamping the entries `watch` looks for.
fn follow(
    mut follower: RecordFollower,
    watch: Watch,
    tracking: &Mutex<Tracking>,
    stop: &AtomicBool,
) -> anyhow::Result<RecordFollower> {
    while !stop.load(Ordering::Relaxed) {
        let (entries, arrived) = match follower.call(WAIT_MS) {
            Ok(answer) => answer,
            // The run is over and the connection was shut down under the call.
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(e) => return Err(e),
        };
        let mut t = tracking.lock().map_err(|_| anyhow!("poisoned"))?;
        for e in entries {
            let Some(thread) = e.thread_id else { continue };
            if matches!(watch, Watch::Receipts)
                && e.event == "sent"
                && e.kind.as_deref() == Some("inquiry")
            {
                t.sent_seen.insert(thread, arrived);
                continue;
            }
            if e.event != "received" {
                continue;
            }
            match (watch, e.kind.as_deref()) {
                (Watch::Inquiries, Some("inquiry")) => {
                    t.at_recipient.insert(thread, arrived);
                }
                (Watch::Receipts, Some("receipt")) => match t.waiting.remove(&thread) {
                    Some(done) => {
                        let _ = done.send(arrived);
                    }
                    None => {
                        t.early.insert(thread, arrived);
                    }
                },
                _ => {}
            }
        }
    }
    Ok(follower)
}

/// Sends `count` inquiries from `sender` to the recipient with
/// `concurrency` in flight, each waiting for its receipt, following the
/// sender's record; with `watch_recipient`, also follows the recipient's to
/// stamp when it recorded each inquiry.
pub(crate) fn run(
    sender: &mut Daemon,
    recipient: &mut Daemon,
    count: usize,
    concurrency: usize,
    watch_recipient: bool,
) -> anyhow::Result<Run> {
    let concurrency = concurrency.clamp(1, count.max(1));
    let request = send_request_line()?;
    let tracking = Mutex::new(Tracking::default());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut followers = vec![(RecordFollower::at_end(sender.socket())?, Watch::Receipts)];
    if watch_recipient {
        followers.push((
            RecordFollower::at_end(recipient.socket())?,
            Watch::Inquiries,
        ));
    }
    let stoppers = followers
        .iter()
        .map(|(f, _)| f.stopper())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let clients = (0..concurrency)
        .map(|_| sender.try_client())
        .collect::<Result<Vec<_>, _>>()?;
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let (sender_pid, recipient_pid) = (sender.pid(), recipient.pid());
    let (results, followed, start, cpu) = std::thread::scope(|scope| {
        let (tracking, stop) = (&tracking, &stop);
        let follow_threads: Vec<_> = followers
            .into_iter()
            .map(|(follower, watch)| {
                scope.spawn(move || {
                    let result = follow(follower, watch, tracking, stop);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        let workers: Vec<_> = clients
            .into_iter()
            .map(|client| {
                let barrier = barrier.clone();
                let (request, next) = (&request, &next);
                scope.spawn(move || {
                    barrier.wait();
                    let result = worker(client, request, tracking, next, count, stop);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        let before = Snapshot::take(sender_pid, recipient_pid);
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow!("a worker thread panicked")))
            })
            .collect();
        let after = Snapshot::take(sender_pid, recipient_pid);
        if watch_recipient {
            // Every inquiry was recorded by the recipient before its receipt
            // was sent; let that follower's last answer arrive before its
            // connection is shut down.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !stop.load(Ordering::Relaxed)
                && Instant::now() < deadline
                && tracking.lock().map_or(0, |t| t.at_recipient.len()) < count
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        stop.store(true, Ordering::Relaxed);
        for stopper in &stoppers {
            // Ends the call each follower is waiting in.
            let _ = stopper.shutdown(Shutdown::Both);
        }
        let followed: Vec<_> = follow_threads
            .into_iter()
            .map(|f| {
                f.join()
                    .unwrap_or_else(|_| Err(anyhow!("a follower thread panicked")))
            })
            .collect();
        (
            results,
            followed,
            start,
            CpuUse::between(&before, &after, count),
        )
    });
    sender.check_alive()?;
    recipient.check_alive()?;
    let mut followed = followed.into_iter();
    let sender_follower = followed
        .next()
        .ok_or_else(|| anyhow!("no follower of the sender"))?
        .context("following the sender's record failed")?;
    if let Some(recipient_follower) = followed.next() {
        recipient_follower.context("following the recipient's record failed")?;
    }
    let mut samples = Vec::with_capacity(count);
    for result in results {
        samples.extend(result?);
    }
    if samples.len() != count {
        bail!("{} of {count} messages completed", samples.len());
    }
    let tracking = tracking.into_inner().map_err(|_| anyhow!("poisoned"))?;
    // The recipient's follower may report an inquiry after the sender's
    // reported its receipt (two threads): matched only now, after both ended.
    let to_recipient: Vec<_> = samples
        .iter()
        .filter_map(|s| {
            let at = tracking.at_recipient.get(&s.thread)?;
            Some(at.saturating_duration_since(s.accepted))
        })
        .collect();
    if watch_recipient && to_recipient.len() != count {
        bail!(
            "the recipient's record showed {} of {count} inquiries",
            to_recipient.len()
        );
    }
    let end = samples.iter().map(|s| s.done).max().unwrap_or(start);
    let latencies: Vec<_> = samples
        .iter()
        .map(|s| s.done.saturating_duration_since(s.accepted))
        .collect();
    let sends: Vec<_> = samples.iter().map(|s| s.send_call).collect();
    let mut lags: Vec<f64> = samples
        .iter()
        .filter_map(|s| {
            let seen = tracking.sent_seen.get(&s.thread)?;
            Some(if *seen >= s.accepted {
                seen.duration_since(s.accepted).as_secs_f64() * 1e6
            } else {
                -(s.accepted.duration_since(*seen).as_secs_f64() * 1e6)
            })
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let follow_lag_us = lags.get(lags.len() / 2).copied();
    Ok(Run {
        messages: count,
        concurrency,
        elapsed: end.saturating_duration_since(start),
        latency: Summary::of(&latencies),
        to_recipient: watch_recipient.then(|| Summary::of(&to_recipient)),
        send_call: Summary::of(&sends),
        follow_lag_us,
        follow_calls: sender_follower.calls,
        follow_bytes: sender_follower.bytes,
        early: samples.iter().filter(|s| s.early).count(),
        cpu,
    })
}

/// Outbox health after the runs: entries delivered on a retry, and entries
/// not delivered, on one daemon.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct OutboxHealth {
    /// Outbox entries.
    pub(crate) entries: usize,
    /// Entries that needed more than one attempt.
    pub(crate) retried: usize,
    /// Entries not (yet) delivered.
    pub(crate) undelivered: usize,
}

/// Reads a daemon's outbox (once: this lists every entry).
pub(crate) fn outbox_health(daemon: &Daemon) -> anyhow::Result<OutboxHealth> {
    let items: Vec<poc_control::OutboxView> = daemon.try_client()?.call(&Request::Outbox)?;
    Ok(OutboxHealth {
        entries: items.len(),
        retried: items.iter().filter(|i| i.attempts > 1).count(),
        undelivered: items.iter().filter(|i| i.status != "delivered").count(),
    })
}
