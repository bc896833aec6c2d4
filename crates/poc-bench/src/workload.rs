//! The workload: 4 KiB inquiries sent through the sender's control API, each
//! followed until its neutral receipt is in the sender's record.
//!
//! Completion is detected by tailing the sender's record with
//! `Request::RecordExport { after_seq }`: one call per poll cycle returns
//! only the entries appended since the previous one, so a poll costs the
//! same whatever the size of the record. (`Inbox`, `Thread` and `Outbox`
//! rebuild or list everything on every call, on the daemon's single store
//! thread; see the Daemon section of BENCHMARKS.md.) A message is
//! complete when a `received` entry of kind `receipt` on its thread appears;
//! the entry was committed after the previous poll started (it was not in
//! that answer) and before this poll's answer arrived. Each completion is
//! therefore known within a window of about one poll interval plus one poll
//! call; the latency reported is the window's midpoint, with both bounds
//! reported as well.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use poc_control::{ApiError, Client, Request, SendAccepted, SendRequest};
use poc_proto::message::{Handling, Language};
use poc_proto::testkit::sample_inquiry;
use poc_proto::{Body, PocId, ThreadId};
use serde::Deserialize;

use crate::baselines::PAYLOAD;
use crate::cluster::{Daemon, RECIPIENT};
use crate::cpu::{CpuUse, Snapshot};
use crate::stats::Summary;

/// How long one message may take before the run is declared failed.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);

/// The fields of a record entry this tool needs (the rest is skipped).
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

/// Page size of the record tail.
const PAGE: u32 = 1000;

/// Follows a daemon's record from a starting point, through the control
/// socket (JSON lines, as `poc_control::Client` speaks them, but decoding
/// only the fields needed, without an intermediate `serde_json::Value`).
struct RecordTail {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    after: u64,
    line: String,
    /// Bytes of answers read.
    bytes: u64,
    /// Duration of every poll (all its pages).
    polls: Vec<Duration>,
    /// When the previous poll was sent: entries new in this poll were
    /// committed after it.
    previous: Instant,
}

/// When a record entry became visible: after `after`, by `by`.
#[derive(Debug, Clone, Copy)]
struct Seen {
    after: Instant,
    by: Instant,
}

impl Seen {
    /// The bounds and midpoint of the time from `start` to the commit.
    fn since(self, start: Instant) -> (Duration, Duration, Duration) {
        let lower = self.after.max(start) - start;
        let upper = self.by.saturating_duration_since(start).max(lower);
        (lower, lower + (upper - lower) / 2, upper)
    }
}

impl RecordTail {
    /// Connects and skips everything already in the record.
    fn at_end(socket: &Path) -> anyhow::Result<RecordTail> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("cannot connect to {}", socket.display()))?;
        let writer = stream.try_clone()?;
        let mut tail = RecordTail {
            reader: BufReader::new(stream),
            writer,
            after: 0,
            line: String::new(),
            bytes: 0,
            polls: Vec::new(),
            previous: Instant::now(),
        };
        tail.poll()?;
        tail.polls.clear();
        tail.bytes = 0;
        Ok(tail)
    }

    /// The entries appended since the last call, and when they became visible.
    fn poll(&mut self) -> anyhow::Result<(Vec<Entry>, Seen)> {
        let start = Instant::now();
        let mut all = Vec::new();
        loop {
            let request = Request::RecordExport {
                after_seq: self.after,
                limit: PAGE,
            };
            let mut out = serde_json::to_vec(&request)?;
            out.push(b'\n');
            self.writer.write_all(&out)?;
            self.line.clear();
            let n = self.reader.read_line(&mut self.line)?;
            if n == 0 {
                bail!("pocd closed the control connection");
            }
            self.bytes += n as u64;
            let page = match serde_json::from_str::<Answer>(&self.line)? {
                Answer::Ok(page) => page,
                Answer::Error(e) => bail!("record export refused: {e}"),
            };
            let full = page.len() >= PAGE as usize;
            if let Some(last) = page.last() {
                self.after = last.seq;
            }
            all.extend(page);
            if !full {
                break;
            }
        }
        let seen = Seen {
            after: self.previous,
            by: Instant::now(),
        };
        self.previous = start;
        self.polls.push(seen.by - start);
        Ok((all, seen))
    }
}

/// What the poller knows about threads.
#[derive(Default)]
struct Tracking {
    /// Workers waiting for their thread's receipt.
    waiting: HashMap<ThreadId, mpsc::SyncSender<Seen>>,
    /// Receipts seen before their sender registered (the send call had not
    /// returned to the worker yet).
    early: HashMap<ThreadId, Seen>,
    /// When the recipient's record was seen holding the inquiry.
    at_recipient: HashMap<ThreadId, Seen>,
}

/// One message's timings.
struct Sample {
    /// Send call (control API round trip: seal, record, queue, commit).
    send_call: Duration,
    /// Send accepted -> receipt recorded by the sender: lower bound,
    /// midpoint, upper bound.
    latency: (Duration, Duration, Duration),
    /// Send accepted -> inquiry recorded by the recipient (midpoint), if watched.
    to_recipient: Option<Duration>,
    /// When the receipt was seen.
    done: Seen,
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
    /// First send issued -> last receipt recorded (midpoint estimate).
    pub(crate) elapsed: Duration,
    /// Per message: send accepted -> receipt recorded by the sender
    /// (midpoint of the window in which it became visible).
    pub(crate) latency: Summary,
    /// The same, lower bounds (recorded after the previous poll started).
    pub(crate) latency_lower: Summary,
    /// The same, upper bounds (when the poll that showed it returned).
    pub(crate) latency_upper: Summary,
    /// Per message: send accepted -> inquiry recorded by the recipient
    /// (only when the recipient was watched too).
    pub(crate) to_recipient: Option<Summary>,
    /// Per message: the control API's Send call.
    pub(crate) send_call: Summary,
    /// Per poll cycle: the record export call(s) on the sender.
    pub(crate) poll_call: Summary,
    /// Poll interval.
    pub(crate) poll_interval: Duration,
    /// Bytes the sender's record export returned.
    pub(crate) poll_bytes: u64,
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
    Ok(Request::Send(Box::new(SendRequest {
        to: PocId::new(RECIPIENT).map_err(|e| anyhow!("{e}"))?,
        thread: None,
        in_reply_to: None,
        language: Language::English,
        handling: Handling::Confidential,
        exercise: None,
        body: Body::Inquiry(sample_inquiry(PAYLOAD)),
    })))
}

/// Size of one Send request line on the control socket (JSON).
pub(crate) fn send_request_bytes() -> anyhow::Result<usize> {
    Ok(serde_json::to_vec(&send_request()?)?.len() + 1)
}

fn worker(
    mut client: Client,
    request: &Request,
    tracking: &Mutex<Tracking>,
    next: &AtomicUsize,
    count: usize,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) && next.fetch_add(1, Ordering::Relaxed) < count {
        let start = Instant::now();
        let accepted: SendAccepted = client.call(request).context("send refused")?;
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
        let to_recipient = tracking
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .at_recipient
            .remove(&thread)
            .map(|seen| seen.since(accepted_at).1);
        samples.push(Sample {
            send_call: accepted_at - start,
            latency: done_at.since(accepted_at),
            to_recipient,
            done: done_at,
            early: early.is_some(),
        });
    }
    Ok(samples)
}

/// Polls the sender's record (and the recipient's, if given) every
/// `interval` until `stop`; returns the sender tail's statistics.
fn poller(
    mut sender: RecordTail,
    mut recipient: Option<RecordTail>,
    interval: Duration,
    tracking: &Mutex<Tracking>,
    stop: &AtomicBool,
) -> anyhow::Result<RecordTail> {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(interval);
        // The recipient first: its record of the inquiry precedes the receipt.
        if let Some(recipient) = &mut recipient {
            let (entries, seen) = recipient.poll()?;
            let mut t = tracking.lock().map_err(|_| anyhow!("poisoned"))?;
            for e in entries {
                if e.event == "received"
                    && e.kind.as_deref() == Some("inquiry")
                    && let Some(thread) = e.thread_id
                {
                    t.at_recipient.insert(thread, seen);
                }
            }
        }
        let (entries, seen) = sender.poll()?;
        let mut t = tracking.lock().map_err(|_| anyhow!("poisoned"))?;
        for e in entries {
            if e.event == "received"
                && e.kind.as_deref() == Some("receipt")
                && let Some(thread) = e.thread_id
            {
                match t.waiting.remove(&thread) {
                    Some(done) => {
                        let _ = done.send(seen);
                    }
                    None => {
                        t.early.insert(thread, seen);
                    }
                }
            }
        }
    }
    Ok(sender)
}

/// Sends `count` inquiries from `sender` to the recipient with
/// `concurrency` in flight, each waiting for its receipt; polls every
/// `interval`; with `watch_recipient`, also stamps when the recipient
/// recorded each inquiry.
pub(crate) fn run(
    sender: &mut Daemon,
    recipient: &mut Daemon,
    count: usize,
    concurrency: usize,
    interval: Duration,
    watch_recipient: bool,
) -> anyhow::Result<Run> {
    let concurrency = concurrency.clamp(1, count.max(1));
    let request = send_request()?;
    let tracking = Mutex::new(Tracking::default());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let sender_tail = RecordTail::at_end(sender.socket())?;
    let recipient_tail = if watch_recipient {
        Some(RecordTail::at_end(recipient.socket())?)
    } else {
        None
    };
    let clients = (0..concurrency)
        .map(|_| sender.client())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let (sender_pid, recipient_pid) = (sender.pid, recipient.pid);
    let (results, tail, start, cpu) = std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            let result = poller(sender_tail, recipient_tail, interval, &tracking, &stop);
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            result
        });
        let workers: Vec<_> = clients
            .into_iter()
            .map(|client| {
                let barrier = barrier.clone();
                let (request, tracking, next, stop) = (&request, &tracking, &next, &stop);
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
        stop.store(true, Ordering::Relaxed);
        let tail = poll
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the poller thread panicked")));
        (
            results,
            tail,
            start,
            CpuUse::between(&before, &after, count),
        )
    });
    sender.check_alive()?;
    recipient.check_alive()?;
    let tail = tail.context("polling the sender's record failed")?;
    let mut samples = Vec::with_capacity(count);
    for result in results {
        samples.extend(result?);
    }
    if samples.len() != count {
        bail!("{} of {count} messages completed", samples.len());
    }
    // The last completion (midpoint of its window) ends the run.
    let end = samples
        .iter()
        .map(|s| s.done.after + (s.done.by.saturating_duration_since(s.done.after)) / 2)
        .max()
        .unwrap_or(start);
    let pick = |f: fn(&Sample) -> Duration| samples.iter().map(f).collect::<Vec<_>>();
    let sends: Vec<_> = samples.iter().map(|s| s.send_call).collect();
    let to_recipient: Vec<_> = samples.iter().filter_map(|s| s.to_recipient).collect();
    Ok(Run {
        messages: count,
        concurrency,
        elapsed: end.saturating_duration_since(start),
        latency: Summary::of(&pick(|s| s.latency.1)),
        latency_lower: Summary::of(&pick(|s| s.latency.0)),
        latency_upper: Summary::of(&pick(|s| s.latency.2)),
        to_recipient: watch_recipient.then(|| Summary::of(&to_recipient)),
        send_call: Summary::of(&sends),
        poll_call: Summary::of(&tail.polls),
        poll_interval: interval,
        poll_bytes: tail.bytes,
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
    let items: Vec<poc_control::OutboxView> = daemon.client()?.call(&Request::Outbox)?;
    Ok(OutboxHealth {
        entries: items.len(),
        retried: items.iter().filter(|i| i.attempts > 1).count(),
        undelivered: items.iter().filter(|i| i.status != "delivered").count(),
    })
}
