//! `poc-bench`: measures the pocnet daemon end to end.
//!
//! Starts two real `pocd` processes (the binary next to this one) on
//! loopback, EST.cert and FRA.cert (both technical), each with its own
//! durable SQLite store in a temporary directory, and sends 4 KiB inquiries
//! through the sender's control API:
//!
//! - **latency** at concurrency 1: send accepted (the control API returned)
//!   -> inquiry recorded by the recipient -> receipt recorded by the sender;
//! - **throughput** at high concurrency (64 in flight): delivered messages
//!   per second.
//!
//! In the same run it measures the baselines the targets are stated
//! against: a raw QUIC 4 KiB request/response round trip with poc-transport,
//! the envelope crypto of a message and its receipt, and one 4 KiB fsync in
//! the same file system. Completions are seen through `RecordFollow` long
//! polls on each watched daemon's control socket (see `workload`). See
//! BENCHMARKS.md ("Daemon") for the method.
//!
//! ```sh
//! cargo build --release -p pocd -p poc-bench && target/release/poc-bench [--json]
//! ```
#![forbid(unsafe_code)]

mod baselines;
mod cluster;
mod cpu;
mod machine;
mod stats;
mod workload;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

use crate::baselines::Crypto;
use crate::machine::Machine;
use crate::stats::Summary;
use crate::workload::{OutboxHealth, Run};

/// Median latency at concurrency 1 may be at most this many times the
/// baseline (raw round trip + crypto of message and receipt + one fsync).
const LATENCY_MAX_RATIO: f64 = 1.5;
/// Throughput at high concurrency must be at least this fraction of what the
/// envelope crypto alone allows on the machine.
const THROUGHPUT_MIN_RATIO: f64 = 0.5;

/// Measure pocd: delivery latency and throughput of 4 KiB inquiries between
/// two local daemons, against baselines measured in the same run.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Messages timed at concurrency 1 [default: 200; --quick: 10].
    #[arg(long)]
    messages: Option<usize>,
    /// Messages in flight for the throughput run.
    #[arg(long, default_value_t = 64)]
    concurrency_high: usize,
    /// Messages sent in the throughput run [default: 2000; --quick: 64].
    #[arg(long)]
    high_messages: Option<usize>,
    /// Small counts everywhere (a smoke run for CI; figures meaningless).
    #[arg(long)]
    quick: bool,
    /// Keep the temporary directory (stores, logs, configs).
    #[arg(long)]
    keep: bool,
    /// Print one JSON document on stdout instead of the tables.
    #[arg(long)]
    json: bool,
}

/// Counts used in this run.
#[derive(Debug, Clone, Serialize)]
struct Parameters {
    quick: bool,
    payload_bytes: usize,
    /// One Send request on the control socket (JSON line).
    send_request_bytes: usize,
    low_messages: usize,
    low_warmup: usize,
    high_concurrency: usize,
    high_messages: usize,
    high_warmup: usize,
    quic_samples: usize,
    crypto_samples: usize,
    fsync_samples: usize,
}

impl Parameters {
    fn from(args: &Args) -> anyhow::Result<Parameters> {
        let q = args.quick;
        Ok(Parameters {
            quick: q,
            payload_bytes: baselines::PAYLOAD,
            send_request_bytes: workload::send_request_bytes()?,
            low_messages: args.messages.unwrap_or(if q { 10 } else { 200 }).max(1),
            low_warmup: if q { 3 } else { 20 },
            high_concurrency: args.concurrency_high.max(1),
            high_messages: args
                .high_messages
                .unwrap_or(if q { 64 } else { 2000 })
                .max(1),
            high_warmup: if q { 16 } else { 200 },
            quic_samples: if q { 50 } else { 500 },
            crypto_samples: if q { 20 } else { 500 },
            fsync_samples: if q { 20 } else { 200 },
        })
    }
}

/// Baselines, measured in three slices (before the daemons start, between
/// the latency and the throughput runs while they idle, and after they
/// stop) and pooled, so that a drift of the shared machine's speed during
/// the run shows and is averaged over the run.
#[derive(Debug, Clone, Serialize)]
struct Baselines {
    /// Raw QUIC 4 KiB request -> 1-byte answer.
    quic_round_trip: Summary,
    /// Seal + open of the inquiry and of its receipt.
    envelope_crypto: Crypto,
    /// Append 4 KiB + `sync_all`.
    fsync: Summary,
    /// Medians of each slice, in time order.
    slices: Slices,
}

#[derive(Debug, Clone, Serialize)]
struct Slices {
    quic_round_trip_median_us: Vec<f64>,
    envelope_crypto_median_us: Vec<f64>,
    fsync_median_us: Vec<f64>,
}

/// One slice of the baselines.
struct Slice {
    quic: Vec<Duration>,
    crypto: baselines::CryptoSamples,
    fsync: Vec<Duration>,
}

fn measure_baselines(p: &Parameters, dir: &std::path::Path, when: &str) -> anyhow::Result<Slice> {
    progress(&format!("baselines ({when}): raw QUIC round trips"));
    let quic = baselines::quic_round_trip(p.quic_samples / 10, p.quic_samples)?;
    progress(&format!("baselines ({when}): envelope crypto"));
    let crypto = baselines::envelope_crypto(p.crypto_samples / 20 + 1, p.crypto_samples)?;
    progress(&format!("baselines ({when}): fsync"));
    let fsync = baselines::fsync(dir, 5, p.fsync_samples)?;
    Ok(Slice {
        quic,
        crypto,
        fsync,
    })
}

fn pool(slices: Vec<Slice>) -> Baselines {
    let medians = Slices {
        quic_round_trip_median_us: slices
            .iter()
            .map(|s| Summary::of(&s.quic).median_us)
            .collect(),
        envelope_crypto_median_us: slices.iter().map(|s| s.crypto.total_median_us()).collect(),
        fsync_median_us: slices
            .iter()
            .map(|s| Summary::of(&s.fsync).median_us)
            .collect(),
    };
    let mut crypto = baselines::CryptoSamples::default();
    let (mut quic, mut fsync) = (Vec::new(), Vec::new());
    for slice in slices {
        crypto.extend(slice.crypto);
        quic.extend(slice.quic);
        fsync.extend(slice.fsync);
    }
    Baselines {
        quic_round_trip: Summary::of(&quic),
        envelope_crypto: crypto.summary(),
        fsync: Summary::of(&fsync),
        slices: medians,
    }
}

#[derive(Debug, Clone, Serialize)]
struct RunReport {
    messages: usize,
    concurrency: usize,
    elapsed_s: f64,
    delivered_per_s: f64,
    /// Send accepted -> the sender's `RecordFollow` answer showing the
    /// receipt recorded (includes that answer's control-socket hop).
    latency: Summary,
    /// Send accepted -> the recipient's `RecordFollow` answer showing the
    /// inquiry recorded (only in the phases run, which follows both daemons).
    to_recipient: Option<Summary>,
    /// The control API Send call (seal, record, queue, commit on the sender).
    send_call: Summary,
    /// Median of (follow answer showing the inquiry's `sent` entry) - (the
    /// Send call's answer for the same commit), µs: the follow hop's cost
    /// over a direct answer.
    follow_lag_us: Option<f64>,
    /// `RecordFollow` calls the sender answered during the run.
    follow_calls: u64,
    /// Bytes of those answers.
    follow_bytes: u64,
    early_completions: usize,
    /// CPU used by each process during the run.
    cpu: cpu::CpuUse,
}

impl From<&Run> for RunReport {
    fn from(run: &Run) -> RunReport {
        RunReport {
            messages: run.messages,
            concurrency: run.concurrency,
            elapsed_s: run.elapsed.as_secs_f64(),
            delivered_per_s: run.throughput(),
            latency: run.latency.clone(),
            to_recipient: run.to_recipient.clone(),
            send_call: run.send_call.clone(),
            follow_lag_us: run.follow_lag_us,
            follow_calls: run.follow_calls,
            follow_bytes: run.follow_bytes,
            early_completions: run.early,
            cpu: run.cpu.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct LatencyTarget {
    measured_median_us: f64,
    baseline_us: f64,
    baseline: &'static str,
    ratio: f64,
    max_ratio: f64,
    met: bool,
}

#[derive(Debug, Clone, Serialize)]
struct ThroughputTarget {
    measured_per_s: f64,
    crypto_bound_per_s: f64,
    crypto_bound: String,
    ratio: f64,
    min_ratio: f64,
    met: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Targets {
    latency: LatencyTarget,
    throughput: ThroughputTarget,
}

#[derive(Debug, Clone, Serialize)]
struct OutboxReport {
    sender: OutboxHealth,
    recipient: OutboxHealth,
}

/// Costs of the control API views that list every thread or outbox entry
/// (why this tool follows the record instead), measured once on the sender
/// after the runs.
#[derive(Debug, Clone, Serialize)]
struct Views {
    /// Record entries on the sender at that point.
    sender_record_entries: u64,
    /// One `Status` call (lists the outbox and every thread's deadlines).
    status_call_ms: f64,
    /// One `Inbox` call.
    inbox_call_ms: f64,
}

fn time_views(sender: &cluster::Daemon) -> anyhow::Result<Views> {
    let mut client = sender.try_client()?;
    let start = std::time::Instant::now();
    let status: poc_control::StatusView = client.call(&poc_control::Request::Status)?;
    let status_call = start.elapsed();
    let start = std::time::Instant::now();
    let _: serde_json::Value = client.call(&poc_control::Request::Inbox)?;
    let inbox_call = start.elapsed();
    Ok(Views {
        sender_record_entries: status.record_entries,
        status_call_ms: status_call.as_secs_f64() * 1e3,
        inbox_call_ms: inbox_call.as_secs_f64() * 1e3,
    })
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    tool: &'static str,
    schema: u32,
    machine: Machine,
    parameters: Parameters,
    baselines: Baselines,
    concurrency_1: RunReport,
    /// A second concurrency-1 run following both daemons, to split the latency.
    concurrency_1_phases: RunReport,
    concurrency_high: RunReport,
    targets: Targets,
    outbox: OutboxReport,
    views: Views,
    kept_dir: Option<String>,
}

/// Progress goes to stderr, so stdout carries only the result.
fn progress(text: &str) {
    eprintln!("poc-bench: {text}");
}

fn targets(nproc: usize, baselines: &Baselines, low: &Run, high: &Run) -> Targets {
    let crypto = baselines.envelope_crypto.total.median_us;
    let baseline_us = baselines.quic_round_trip.median_us + crypto + baselines.fsync.median_us;
    let measured = low.latency.median_us;
    let latency_ratio = measured / baseline_us;
    // Every delivered message costs the machine the four envelope operations
    // (the sender seals it and opens the receipt, the recipient opens it and
    // seals the receipt); both daemons share the machine's CPUs, so the
    // crypto alone allows at most nproc / (crypto per message) messages/s.
    let bound = nproc as f64 / (crypto / 1e6);
    let throughput = high.throughput();
    let throughput_ratio = throughput / bound;
    Targets {
        latency: LatencyTarget {
            measured_median_us: measured,
            baseline_us,
            baseline: "median raw QUIC round trip + median crypto (seal+open of message and receipt) + median fsync",
            ratio: latency_ratio,
            max_ratio: LATENCY_MAX_RATIO,
            met: latency_ratio <= LATENCY_MAX_RATIO,
        },
        throughput: ThroughputTarget {
            measured_per_s: throughput,
            crypto_bound_per_s: bound,
            crypto_bound: format!(
                "{nproc} CPUs / {crypto:.1} us (median seal+open of message and receipt, per message)"
            ),
            ratio: throughput_ratio,
            min_ratio: THROUGHPUT_MIN_RATIO,
            met: throughput_ratio >= THROUGHPUT_MIN_RATIO,
        },
    }
}

/// Waits (briefly) for both outboxes to drain, then reports them.
fn outbox_report(
    sender: &cluster::Daemon,
    recipient: &cluster::Daemon,
) -> anyhow::Result<OutboxReport> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let report = OutboxReport {
            sender: workload::outbox_health(sender)?,
            recipient: workload::outbox_health(recipient)?,
        };
        let drained = report.sender.undelivered == 0 && report.recipient.undelivered == 0;
        if drained || std::time::Instant::now() > deadline {
            return Ok(report);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = Parameters::from(&args)?;
    let pocd = poc_testnet::try_built_binary("pocd")?;
    let mut setup = cluster::Setup::create()?;
    let machine = Machine::collect(setup.path(), &pocd);
    progress(&format!("temporary directory {}", setup.path().display()));

    let before = measure_baselines(&p, &setup.sender.data(), "before")?;

    progress("starting two pocd daemons");
    let mut sender = cluster::start(&pocd, &setup.sender).context("EST.cert")?;
    let mut recipient = cluster::start(&pocd, &setup.recipient).context("FRA.cert")?;
    progress(&format!(
        "pocd pids: sender {}, recipient {}",
        sender.pid(),
        recipient.pid()
    ));

    progress(&format!(
        "warm-up: {} messages, concurrency 1",
        p.low_warmup
    ));
    workload::run(&mut sender, &mut recipient, p.low_warmup, 1, true)?;
    progress(&format!(
        "latency: {} messages, concurrency 1",
        p.low_messages
    ));
    let low = workload::run(&mut sender, &mut recipient, p.low_messages, 1, false)?;
    progress(&format!(
        "phases: {} messages, concurrency 1, following both daemons",
        p.low_messages
    ));
    let phases = workload::run(&mut sender, &mut recipient, p.low_messages, 1, true)?;
    let middle = measure_baselines(&p, &setup.sender.data(), "between the runs")?;
    progress(&format!(
        "warm-up: {} messages, concurrency {}",
        p.high_warmup, p.high_concurrency
    ));
    workload::run(
        &mut sender,
        &mut recipient,
        p.high_warmup,
        p.high_concurrency,
        false,
    )?;
    progress(&format!(
        "throughput: {} messages, concurrency {}",
        p.high_messages, p.high_concurrency
    ));
    let high = workload::run(
        &mut sender,
        &mut recipient,
        p.high_messages,
        p.high_concurrency,
        false,
    )?;
    let outbox = outbox_report(&sender, &recipient)?;
    progress("timing the Status and Inbox views once");
    let views = time_views(&sender)?;
    drop(sender);
    drop(recipient);
    let after = measure_baselines(&p, &setup.sender.data(), "after")?;
    let baselines = pool(vec![before, middle, after]);

    let targets = targets(machine.nproc, &baselines, &low, &high);
    let kept_dir = args.keep.then(|| setup.keep().display().to_string());
    let report = Report {
        tool: "poc-bench",
        schema: 2,
        machine,
        parameters: p,
        baselines,
        concurrency_1: RunReport::from(&low),
        concurrency_1_phases: RunReport::from(&phases),
        concurrency_high: RunReport::from(&high),
        targets,
        outbox,
        views,
        kept_dir,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", human(&report));
    }
    Ok(())
}

/// A duration in microseconds, in a readable unit.
fn t(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn row(name: &str, s: &Summary) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} |\n",
        t(s.median_us),
        t(s.p25_us),
        t(s.p75_us),
        t(s.p99_us),
        s.samples
    )
}

fn cpu_line(run: &RunReport) -> String {
    let c = &run.cpu;
    let us = |v: Option<f64>| {
        v.map(|v| format!("{v:.0} µs"))
            .unwrap_or_else(|| "?".into())
    };
    let pct = |v: Option<f64>| {
        v.map(|v| format!("{:.0} %", v * 100.0))
            .unwrap_or_else(|| "?".into())
    };
    let kib = |v: Option<f64>| {
        v.map(|v| format!("{v:.0} KiB"))
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "CPU per message at c={}: sender pocd {}, recipient pocd {}, poc-bench {}; all CPUs busy {}, iowait {}; written to storage per message: sender {}, recipient {}\n",
        run.concurrency,
        us(c.sender_us_per_message),
        us(c.recipient_us_per_message),
        us(c.bench_us_per_message),
        pct(c.machine_busy),
        pct(c.machine_iowait),
        kib(c.sender_write_kib_per_message),
        kib(c.recipient_write_kib_per_message)
    )
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn human(r: &Report) -> String {
    let m = &r.machine;
    let b = &r.baselines;
    let c = &b.envelope_crypto;
    let low = &r.concurrency_1;
    let high = &r.concurrency_high;
    let mut out = String::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "?".into());
    out += &format!(
        "Machine: nproc {}, {} ({}), {} memory, kernel {}, temp on {}\n",
        m.nproc,
        opt(&m.cpu_model),
        opt(&m.cpu_family_model),
        opt(&m.memory),
        opt(&m.kernel),
        opt(&m.temp_fs)
    );
    out += &format!(
        "Software: {}, {}, commit {}{}, {} build\n\n",
        opt(&m.rustc),
        opt(&m.pocd),
        opt(&m.git_commit),
        if m.git_dirty == Some(true) {
            " (+ uncommitted changes)"
        } else {
            ""
        },
        m.profile
    );
    out += "| measurement | median | p25 | p75 | p99 | samples |\n| --- | ---: | ---: | ---: | ---: | ---: |\n";
    out += &row("raw QUIC 4 KiB round trip", &b.quic_round_trip);
    out += &row("seal inquiry (4 KiB)", &c.seal_message);
    out += &row("open inquiry", &c.open_message);
    out += &row("seal receipt", &c.seal_receipt);
    out += &row("open receipt", &c.open_receipt);
    out += &row("crypto per message (the four)", &c.total);
    out += &row("fsync (append 4 KiB + sync_all)", &b.fsync);
    let phases = &r.concurrency_1_phases;
    let sl = &b.slices;
    let list = |v: &[f64]| v.iter().map(|us| t(*us)).collect::<Vec<_>>().join(" / ");
    out += &format!(
        "(baselines pooled from {} slices over the run; slice medians: QUIC {}; crypto {}; fsync {})\n\n",
        sl.envelope_crypto_median_us.len(),
        list(&sl.quic_round_trip_median_us),
        list(&sl.envelope_crypto_median_us),
        list(&sl.fsync_median_us)
    );
    out += "| measurement | median | p25 | p75 | p99 | samples |\n| --- | ---: | ---: | ---: | ---: | ---: |\n";
    out += &row("c=1: send call (control API)", &low.send_call);
    out += &row("**c=1: accepted -> receipt recorded**", &low.latency);
    if let Some(to) = &phases.to_recipient {
        out += &row("c=1 (phases run): accepted -> recorded by recipient", to);
    }
    out += &row(
        "c=1 (phases run): accepted -> receipt recorded",
        &phases.latency,
    );
    out += &row(
        &format!("c={}: send call (control API)", high.concurrency),
        &high.send_call,
    );
    out += &row(
        &format!("c={}: accepted -> receipt recorded", high.concurrency),
        &high.latency,
    );
    out += &format!(
        "\nThroughput at concurrency {}: {} messages in {:.3} s = **{:.1} delivered messages/s**\n",
        high.concurrency, high.messages, high.elapsed_s, high.delivered_per_s
    );
    out += &format!(
        "(concurrency 1: {:.1} messages/s; completions seen through RecordFollow long polls: {} / {} calls answered by the sender, {:.0} / {:.0} bytes per message)\n",
        low.delivered_per_s,
        low.follow_calls,
        high.follow_calls,
        low.follow_bytes as f64 / low.messages.max(1) as f64,
        high.follow_bytes as f64 / high.messages.max(1) as f64
    );
    let lag = |run: &RunReport| {
        run.follow_lag_us
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.0} µs"))
    };
    out += &format!(
        "(follow hop: the sender's follow answer showing an inquiry's `sent` entry came, in the median, {} (c=1) / {} (c={}) after the Send call's answer reporting the same commit)\n",
        lag(low),
        lag(high),
        high.concurrency
    );
    for run in [low, high] {
        out += &cpu_line(run);
    }
    out += "\n";
    let lt = &r.targets.latency;
    let tt = &r.targets.throughput;
    out += "| target | measured | baseline | ratio | limit | |\n| --- | ---: | ---: | ---: | ---: | --- |\n";
    out += &format!(
        "| median latency, c=1 | {} | {} | {:.2}x | <= {:.1}x | {} |\n",
        t(lt.measured_median_us),
        t(lt.baseline_us),
        lt.ratio,
        lt.max_ratio,
        met(lt.met)
    );
    out += &format!(
        "| throughput, c={} | {:.1}/s | {:.1}/s | {:.3}x | >= {:.1}x | {} |\n",
        high.concurrency,
        tt.measured_per_s,
        tt.crypto_bound_per_s,
        tt.ratio,
        tt.min_ratio,
        met(tt.met)
    );
    out += &format!(
        "\nlatency baseline = {}\nthroughput bound = {}\n",
        lt.baseline, tt.crypto_bound
    );
    out += &format!(
        "outboxes after the runs: sender {} entries ({} retried, {} undelivered), recipient {} entries ({} retried, {} undelivered)\n",
        r.outbox.sender.entries,
        r.outbox.sender.retried,
        r.outbox.sender.undelivered,
        r.outbox.recipient.entries,
        r.outbox.recipient.retried,
        r.outbox.recipient.undelivered
    );
    out += &format!(
        "control API views with {} record entries on the sender: Status {:.1} ms, Inbox {:.1} ms\n",
        r.views.sender_record_entries, r.views.status_call_ms, r.views.inbox_call_ms
    );
    if low.early_completions + high.early_completions > 0 {
        out += &format!(
            "receipts seen before the send call returned: {} (c=1), {} (c={})\n",
            low.early_completions, high.early_completions, high.concurrency
        );
    }
    if let Some(dir) = &r.kept_dir {
        out += &format!("kept {dir}\n");
    }
    out
}
