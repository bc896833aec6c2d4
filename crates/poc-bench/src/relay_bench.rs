//! `poc-relay-bench`: measures the relay (the `poc-relay` binary next to this
//! one) against a raw QUIC baseline in the same run.
//!
//! - **Throughput and latency**: `--messages` 4 KiB envelopes deposited by one
//!   client with `--concurrency` deposits in flight (one QUIC connection) and
//!   fetched (long poll, pages of 256) and acknowledged by the recipient's
//!   client. Latency is per envelope from the start of its deposit to the
//!   moment the recipient's fetch returned it; the relay stores it durably
//!   (SQLite, WAL, each deposit answered after an fsync of the WAL that
//!   began after its commit) in between.
//! - **Baseline**: raw poc-transport QUIC requests of 4 KiB answered with one
//!   byte, same concurrency, same loopback, same machine, measured in this
//!   run before and after the relay runs (pooled).
//! - **Idle connections**: `--idle` authenticated connections held open to the
//!   relay; the relay process's resident memory before and after gives the
//!   per-connection figure.
//! - **Where the CPU goes**: the machine's busy time per envelope over the
//!   timed relay run (and the relay's and this tool's shares), per request
//!   over the baseline, the CPU per envelope that the rate target leaves
//!   (`nproc / (0.5 x raw rate)`), and the relay's storage alone, in this
//!   process with nothing else running: groups of 16 deposits, a fetch and
//!   an acknowledgement of each group, and a WAL flush for each.
//!
//! ```sh
//! cargo build --release -p poc-relay -p poc-bench && target/release/poc-relay-bench [--json]
//! ```
#![forbid(unsafe_code)]

#[path = "cpu.rs"]
#[allow(dead_code)]
mod cpu;
#[path = "stats.rs"]
#[allow(dead_code)]
mod stats;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, ensure};
use clap::Parser;
use poc_proto::certificate::MailboxId;
use poc_proto::directory::{SignedSnapshot, SnapshotDigest};
use poc_proto::keys::IdentityKeyPair;
use poc_proto::testkit::World;
use poc_proto::{PocId, Timestamp};
use poc_relay::client::{RelayClient, RelayPins, bind_endpoint};
use poc_relay::store::{LogStore, MemoryStore, NewEnvelope, Quota, RelayStore, SqliteStore};
use poc_transport::{ALPN_NODE, Endpoint, Limits, PeerAuthority};
use serde::Serialize;
use stats::Summary;
use tokio::sync::Mutex;

/// Envelope size, as the daemon benchmark's inquiries.
const ENVELOPE: usize = 4096;

/// Measure poc-relay: throughput, latency and idle-connection memory,
/// against raw QUIC measured in the same run.
//
// `about` without a value would print the package's description, which is
// the daemon benchmark's; the doc comment above is this tool's.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Envelopes in the timed relay run [default: 20000; --quick: 200].
    #[arg(long)]
    messages: Option<usize>,
    /// Deposits (and raw requests) in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Idle authenticated connections for the memory figure [default:
    /// 10000; --quick: 100].
    #[arg(long)]
    idle: Option<usize>,
    /// Small counts (a smoke run; figures meaningless).
    #[arg(long)]
    quick: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Relay storage: `log` (durable, the relay's default and the measured
    /// configuration), `sqlite` (durable) or `memory` (to see what
    /// durability costs).
    #[arg(long, default_value = "log")]
    storage: String,
    /// Keep the temporary directory (relay store, log, config).
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Serialize)]
struct Throughput {
    messages: usize,
    concurrency: usize,
    messages_per_second: f64,
    latency: Summary,
}

/// CPU counters read around a timed run.
#[derive(Debug, Clone, Copy)]
struct Counters {
    /// Whole machine: (busy, idle, iowait) ticks.
    machine: Option<(u64, u64, u64)>,
    relay: Option<u64>,
    me: Option<u64>,
}

impl Counters {
    fn read(relay: Option<u32>) -> Counters {
        Counters {
            machine: cpu::machine_ticks(),
            relay: relay.and_then(|pid| cpu::process_ticks(Some(pid))),
            me: cpu::process_ticks(None),
        }
    }
}

/// CPU used over a run, per envelope (or request), µs.
#[derive(Debug, Default, Serialize)]
struct CpuPerItem {
    /// Everything on the machine (busy time of all CPUs).
    machine_us: Option<f64>,
    /// The relay process.
    relay_us: Option<f64>,
    /// This tool (both clients, or both baseline endpoints).
    this_tool_us: Option<f64>,
    /// Share of all CPUs' time busy.
    busy: Option<f64>,
    /// What the spans added so far used, for the figures above over all
    /// of them: machine busy, all machine, relay and this tool's ticks, and
    /// items.
    #[serde(skip)]
    sums: Sums,
}

#[derive(Debug, Default)]
struct Sums {
    busy: Option<u64>,
    all: Option<u64>,
    relay: Option<u64>,
    me: Option<u64>,
    items: usize,
}

impl CpuPerItem {
    /// Adds what was used from `before` to `after` over `items`: the
    /// figures become those of all spans added so far together (ticks over
    /// items, not an average of each span's figures).
    fn add(&mut self, before: Counters, after: Counters, items: usize) {
        let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        let plus = |sum: Option<u64>, d: Option<u64>| match (sum, d) {
            (Some(s), Some(d)) => Some(s + d),
            (s, None) => s,
            (None, d) => d,
        };
        let busy = |m: Option<(u64, u64, u64)>| m.map(|(busy, _, _)| busy);
        let all = |m: Option<(u64, u64, u64)>| m.map(|(b, i, w)| b + i + w);
        let sums = &mut self.sums;
        sums.busy = plus(sums.busy, delta(busy(before.machine), busy(after.machine)));
        sums.all = plus(sums.all, delta(all(before.machine), all(after.machine)));
        sums.relay = plus(sums.relay, delta(before.relay, after.relay));
        sums.me = plus(sums.me, delta(before.me, after.me));
        sums.items += items;
        let tick_us = 1e6 / cpu::ticks_per_second();
        let per = |ticks: Option<u64>| Some(ticks? as f64 * tick_us / sums.items.max(1) as f64);
        self.machine_us = per(sums.busy);
        self.relay_us = per(sums.relay);
        self.this_tool_us = per(sums.me);
        self.busy = match (sums.busy, sums.all) {
            (Some(b), Some(a)) if a > 0 => Some(b as f64 / a as f64),
            _ => None,
        };
    }
}

#[derive(Debug, Serialize)]
struct Report {
    tool: &'static str,
    schema: u32,
    profile: &'static str,
    nproc: usize,
    storage: String,
    envelope_bytes: usize,
    raw_quic: Throughput,
    relay: Throughput,
    /// Relay messages/s over raw QUIC requests/s (target >= 0.5).
    relay_over_raw: f64,
    /// CPU per request over the baseline's timed halves.
    raw_quic_cpu: CpuPerItem,
    /// CPU per envelope over the timed relay run.
    relay_cpu: CpuPerItem,
    /// CPU per envelope the whole machine may spend at the rate target:
    /// nproc / (0.5 x raw QUIC rate), µs.
    target_budget_us: f64,
    /// The relay's storage alone (see [`store_alone`]), CPU µs per envelope.
    store_alone_us: Option<f64>,
    idle_connections_requested: usize,
    /// Connections actually held open when memory was read.
    idle_connections: usize,
    relay_rss_kib_before: u64,
    relay_rss_kib_after: u64,
    /// (after - before) / connections, bytes (target < 64 KiB).
    bytes_per_idle_connection: f64,
}

fn progress(what: &str) {
    eprintln!("poc-relay-bench: {what}");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A 4 KiB synthetic envelope (the relay reads only the outer header) whose
/// body starts with its sequence number.
fn envelope(mailbox: MailboxId, seq: u64) -> Vec<u8> {
    let body = ENVELOPE - 34;
    let mut out = Vec::with_capacity(ENVELOPE);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&mailbox.0);
    out.extend_from_slice(&(now() + 3600).to_le_bytes());
    out.extend_from_slice(&(body as u64).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.resize(ENVELOPE, 0x5a);
    out
}

fn seq_of(envelope: &[u8]) -> Option<usize> {
    let bytes: [u8; 8] = envelope.get(34..42)?.try_into().ok()?;
    usize::try_from(u64::from_le_bytes(bytes)).ok()
}

/// The relay process, killed on drop.
struct RelayProcess {
    child: Child,
    port: u16,
    key: IdentityKeyPair,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RelayProcess {
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS for the relay"))
    }

    async fn client(&self, world: &World, poc: &str) -> anyhow::Result<(Endpoint, RelayClient)> {
        let identity = IdentityKeyPair::from_secret_bytes(&world.poc(poc).identity_seed);
        let pins = RelayPins::new([(
            PocId::new("relay").map_err(|e| anyhow!("{e}"))?,
            self.key.public(),
        )]);
        let endpoint = bind_endpoint("127.0.0.1:0".parse()?, &identity, pins)?;
        let client = RelayClient::connect(
            &endpoint,
            format!("127.0.0.1:{}", self.port).parse()?,
            self.key.public(),
        )
        .await?;
        Ok((endpoint, client))
    }
}

/// Writes the directory, keys and config; starts the relay with durable
/// storage and limits opened up for a benchmark.
fn start_relay(
    world: &World,
    dir: &Path,
    max_connections: usize,
    streams: usize,
    storage: &str,
) -> anyhow::Result<RelayProcess> {
    ensure!(
        matches!(storage, "log" | "sqlite" | "memory"),
        "--storage is log, sqlite or memory"
    );
    poc_keyfile::write_public(
        &dir.join("manager.pub"),
        poc_keyfile::KeyKind::Manager,
        None,
        &world.manager.public().to_bytes(),
    )?;
    let body = world.snapshot_body(1, SnapshotDigest([0; 32]), Timestamp(now()), |_| true);
    let snapshot = SignedSnapshot::sign(&body, &world.manager)?;
    std::fs::write(dir.join("directory.snapshot"), snapshot.to_bytes())?;
    let seed = [7u8; 32];
    poc_keyfile::write_secret(
        &dir.join("relay.key"),
        poc_keyfile::KeyKind::Identity,
        Some("relay"),
        &seed,
    )?;
    let port = poc_testnet::try_free_udp_port()?;
    let metrics = poc_testnet::try_free_tcp_port()?;
    std::fs::write(
        dir.join("poc-relay.toml"),
        format!(
            "[relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nidentity_key = \"relay.key\"\n\
             metrics_listen = \"127.0.0.1:{metrics}\"\nstorage = \"{storage}\"\n\n\
             [directory]\nsnapshot = \"directory.snapshot\"\nmanager_key = \"manager.pub\"\n\n\
             [limits]\nmailbox_max_envelopes = 10000000\nmailbox_max_bytes = 100000000000\n\
             deposits_per_second = 10000000\ndeposit_burst = 10000000\n\
             reads_per_second = 10000000\nread_burst = 10000000\n\
             max_connections = {max_connections}\nhandshakes_per_second_per_ip = 1000000\n\
             handshake_burst_per_ip = 1000000\nmax_streams_per_connection = {streams}\n\
             max_connections_per_client = {max_connections}\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("relay.log"))?;
    let child = Command::new(poc_testnet::try_built_binary("poc-relay")?)
        .arg("--config")
        .arg(dir.join("poc-relay.toml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start poc-relay")?;
    let relay = RelayProcess {
        child,
        port,
        key: IdentityKeyPair::from_secret_bytes(&seed),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", metrics)).is_err() {
        ensure!(
            Instant::now() < deadline,
            "poc-relay did not start; its log:\n{}",
            std::fs::read_to_string(dir.join("relay.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(relay)
}

/// Both peers of the raw baseline know each other.
#[derive(Debug)]
struct Pair(Vec<(poc_proto::keys::IdentityPublicKey, PocId)>);

impl PeerAuthority for Pair {
    fn poc_for_key(&self, key: &poc_proto::keys::IdentityPublicKey) -> Option<PocId> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, id)| id.clone())
    }
}

/// Raw QUIC: `n` 4 KiB requests answered with one byte, `concurrency` in
/// flight on one connection.
async fn raw_quic(
    world: &World,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let client_key = &world.poc("EST.cert").identity;
    let server_key = &world.poc("FRA.cert").identity;
    let authority = Arc::new(Pair(vec![
        (client_key.public(), world.poc("EST.cert").id().clone()),
        (server_key.public(), world.poc("FRA.cert").id().clone()),
    ]));
    let loopback = "127.0.0.1:0".parse()?;
    let mut limits = Limits::default();
    limits.max_concurrent_bidi_streams = u32::try_from(concurrency).unwrap_or(u32::MAX).max(1);
    let server = Endpoint::bind(
        loopback,
        server_key,
        authority.clone(),
        ALPN_NODE,
        limits.clone(),
    )?;
    let client = Endpoint::bind(loopback, client_key, authority, ALPN_NODE, limits)?;
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
    let payload = Arc::new(vec![0x42u8; ENVELOPE]);
    let next = Arc::new(AtomicUsize::new(0));
    let times = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (connection, payload, next, times) = (
            connection.clone(),
            payload.clone(),
            next.clone(),
            times.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let t = Instant::now();
                let answer = connection.request(&payload).await?;
                ensure!(answer == [0], "unexpected raw answer");
                times.lock().await.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    connection.close();
    client.close();
    server.close();
    serve.abort();
    let times = std::mem::take(&mut *times.lock().await);
    Ok((elapsed, times))
}

/// Through the relay: deposit with `concurrency` in flight, fetch and ack
/// on the recipient's connection until all `n` arrived.
async fn through_relay(
    relay: &RelayProcess,
    world: &World,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let (_e1, sender) = relay.client(world, "EST.cert").await?;
    let (_e2, recipient) = relay.client(world, "FRA.cert").await?;
    let mailbox = MailboxId::for_identity(&world.poc("FRA.cert").identity.public());
    let envelopes: Arc<Vec<Vec<u8>>> =
        Arc::new((0..n as u64).map(|i| envelope(mailbox, i)).collect());
    let starts: Arc<Vec<std::sync::OnceLock<Instant>>> =
        Arc::new((0..n).map(|_| std::sync::OnceLock::new()).collect());

    let receiver = {
        let starts = starts.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            let mut seen = vec![false; n];
            while latencies.len() < n {
                let page = recipient.fetch(256, Duration::from_secs(5)).await?;
                let at = Instant::now();
                let mut ids = Vec::with_capacity(page.items.len());
                for item in &page.items {
                    let seq = seq_of(&item.envelope).ok_or_else(|| anyhow!("bad envelope"))?;
                    let start = starts
                        .get(seq)
                        .and_then(|s| s.get())
                        .ok_or_else(|| anyhow!("unknown envelope"))?;
                    let slot = seen.get_mut(seq).ok_or_else(|| anyhow!("bad sequence"))?;
                    ensure!(!*slot, "envelope {seq} delivered twice");
                    *slot = true;
                    latencies.push(at.duration_since(*start));
                    ids.push(item.id);
                }
                recipient.ack(&ids).await?;
            }
            Ok::<_, anyhow::Error>((latencies, Instant::now()))
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (sender, next, envelopes, starts) = (
            sender.clone(),
            next.clone(),
            envelopes.clone(),
            starts.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let (Some(envelope), Some(start)) = (envelopes.get(i), starts.get(i)) else {
                    break;
                };
                let _ = start.set(Instant::now());
                sender.deposit(envelope).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let (latencies, finished) = receiver.await??;
    Ok(Throughput {
        messages: n,
        concurrency,
        messages_per_second: n as f64 / finished.duration_since(started).as_secs_f64(),
        latency: Summary::of(&latencies),
    })
}

/// Opens `count` authenticated connections and leaves them idle; returns
/// the relay's RSS before and after (KiB).
async fn idle_connections(
    relay: &RelayProcess,
    world: &World,
    count: usize,
) -> anyhow::Result<(u64, u64, Vec<RelayClient>)> {
    let identity = IdentityKeyPair::from_secret_bytes(&world.poc("EST.mfa").identity_seed);
    let pins = RelayPins::new([(
        PocId::new("relay").map_err(|e| anyhow!("{e}"))?,
        relay.key.public(),
    )]);
    // A few client endpoints (sockets), many connections each.
    let endpoints: Vec<Endpoint> = (0..8)
        .map(|_| {
            bind_endpoint(
                "127.0.0.1:0".parse().map_err(|e| anyhow!("{e}"))?,
                &identity,
                pins.clone(),
            )
            .map_err(Into::into)
        })
        .collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = relay.rss_kib()?;
    let address: std::net::SocketAddr = format!("127.0.0.1:{}", relay.port).parse()?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for endpoint in endpoints.iter().cycle().take(16) {
        let (next, endpoint, key) = (next.clone(), endpoint.clone(), relay.key.public());
        tasks.push(tokio::spawn(async move {
            let mut held = Vec::new();
            let mut failure = None;
            'next: while next.fetch_add(1, Ordering::Relaxed) < count {
                // A handshake can time out on a loaded machine: retry a
                // little, then stop at what the machine allows.
                for _ in 0..3 {
                    match RelayClient::connect(&endpoint, address, key).await {
                        Ok(client) => {
                            held.push(client);
                            continue 'next;
                        }
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
                break;
            }
            Ok::<_, anyhow::Error>((held, failure))
        }));
    }
    let mut clients = Vec::with_capacity(count);
    for task in tasks {
        let (held, failure) = task.await??;
        clients.extend(held);
        if let Some(failure) = failure {
            progress(&format!("a connection could not be opened: {failure}"));
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = relay.rss_kib()?;
    // The endpoints must live as long as the connections: leak them into
    // the clients' lifetime by keeping them until the caller drops both.
    std::mem::forget(endpoints);
    Ok((before, after, clients))
}

/// Envelopes per group commit in [`store_alone`]: about what the relay's
/// trace log shows under this bench (1,324 commits for 20,000 deposits).
const STORE_GROUP: usize = 16;

/// CPU of this process per envelope for the relay's storage alone, with
/// nothing else running: `n` envelopes in groups of [`STORE_GROUP`], each
/// group deposited in one commit, fetched, acknowledged, and (durable
/// stores) flushed, as the relay's store and flush threads do it for the run
/// above. `None` if /proc cannot be read.
fn store_alone(dir: &Path, storage: &str, n: usize) -> anyhow::Result<Option<f64>> {
    let mut store: Box<dyn RelayStore> = match storage {
        "memory" => Box::new(MemoryStore::default()),
        "sqlite" => Box::new(SqliteStore::open(&dir.join("store-alone.sqlite"))?),
        _ => Box::new(LogStore::open(&dir.join("store-alone-log"))?),
    };
    let mut flusher = store.take_flusher();
    let mailbox = MailboxId([9; 16]);
    let quota = Quota {
        max_envelopes: u64::MAX,
        max_bytes: u64::MAX,
    };
    let groups = n.div_ceil(STORE_GROUP).max(1);
    let batches: Vec<Vec<NewEnvelope>> = (0..groups)
        .map(|g| {
            (0..STORE_GROUP)
                .map(|i| NewEnvelope {
                    mailbox,
                    expires_at: Timestamp(now() + 3600),
                    bytes: envelope(mailbox, (g * STORE_GROUP + i) as u64),
                })
                .collect()
        })
        .collect();
    let before = cpu::process_ticks(None);
    for batch in &batches {
        let stored = store.deposit_batch(batch, quota)?;
        ensure!(
            stored.len() == batch.len(),
            "store alone: a deposit was refused"
        );
        if let Some(flusher) = flusher.as_mut() {
            flusher.flush()?;
        }
        let page = store.fetch(mailbox, Timestamp(now()), 256, usize::MAX)?;
        let ids: Vec<u64> = page.iter().map(|e| e.id).collect();
        ensure!(
            ids.len() == batch.len(),
            "store alone: fetched {} of {}",
            ids.len(),
            batch.len()
        );
        store.ack(mailbox, &ids)?;
    }
    let after = cpu::process_ticks(None);
    Ok(match (before, after) {
        (Some(b), Some(a)) => Some(
            a.saturating_sub(b) as f64 * 1e6
                / cpu::ticks_per_second()
                / (groups * STORE_GROUP) as f64,
        ),
        _ => None,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let q = args.quick;
    let n = args.messages.unwrap_or(if q { 200 } else { 20_000 }).max(1);
    let idle = args.idle.unwrap_or(if q { 100 } else { 10_000 });
    let concurrency = args.concurrency.max(1);
    let world = World::new();
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        progress("raw QUIC baseline (first half)");
        let warm = (n / 10).max(10);
        raw_quic(&world, warm, concurrency).await?;
        let mut raw_quic_cpu = CpuPerItem::default();
        let before = Counters::read(None);
        let (time_a, mut raw_times) = raw_quic(&world, n / 2, concurrency).await?;
        raw_quic_cpu.add(before, Counters::read(None), n / 2);
        let relay = start_relay(&world, dir.path(), idle + 64, concurrency, &args.storage)?;
        let relay_pid = Some(relay.child.id());
        progress("relay warm-up");
        through_relay(&relay, &world, warm, concurrency).await?;
        progress(&format!(
            "relay: {n} envelopes of {ENVELOPE} bytes at concurrency {concurrency}"
        ));
        let mut relay_cpu = CpuPerItem::default();
        let before = Counters::read(relay_pid);
        let relay_run = through_relay(&relay, &world, n, concurrency).await?;
        relay_cpu.add(before, Counters::read(relay_pid), n);
        progress("raw QUIC baseline (second half)");
        let before = Counters::read(None);
        let (time_b, times_b) = raw_quic(&world, n - n / 2, concurrency).await?;
        raw_quic_cpu.add(before, Counters::read(None), n - n / 2);
        raw_times.extend(times_b);
        progress(&format!("{} store alone: {n} envelopes", args.storage));
        let store_alone_us = store_alone(dir.path(), &args.storage, n)?;
        progress(&format!("relay: {idle} idle authenticated connections"));
        let (before, after, clients) = idle_connections(&relay, &world, idle).await?;
        let opened = clients.len();
        ensure!(opened > 0, "no idle connection could be opened");
        drop(clients);
        // The baseline's two halves pooled: rate over their total time.
        let raw = Throughput {
            messages: n,
            concurrency,
            messages_per_second: n as f64 / (time_a + time_b).as_secs_f64(),
            latency: Summary::of(&raw_times),
        };
        let nproc = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Ok::<_, anyhow::Error>(Report {
            tool: "poc-relay-bench",
            schema: 2,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            storage: args.storage.clone(),
            nproc,
            envelope_bytes: ENVELOPE,
            relay_over_raw: relay_run.messages_per_second / raw.messages_per_second,
            target_budget_us: nproc as f64 * 1e6 / (0.5 * raw.messages_per_second),
            raw_quic_cpu,
            relay_cpu,
            store_alone_us,
            raw_quic: raw,
            relay: relay_run,
            idle_connections_requested: idle,
            idle_connections: opened,
            relay_rss_kib_before: before,
            relay_rss_kib_after: after,
            bytes_per_idle_connection: (after.saturating_sub(before) as f64 * 1024.0)
                / opened as f64,
        })
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    if args.keep {
        progress(&format!("kept {}", dir.keep().display()));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let line = |name: &str, t: &Throughput| {
            println!(
                "{name:<10} {:>9.0} msg/s   latency median {:>8.0} us  p99 {:>8.0} us  ({} msgs, concurrency {})",
                t.messages_per_second,
                t.latency.median_us,
                t.latency.p99_us,
                t.messages,
                t.concurrency
            );
        };
        println!(
            "poc-relay-bench ({} build, {} CPUs), {}-byte envelopes",
            report.profile, report.nproc, ENVELOPE
        );
        line("raw QUIC", &report.raw_quic);
        line("relay", &report.relay);
        println!(
            "relay / raw QUIC message rate: {:.2}x (target >= 0.5x)",
            report.relay_over_raw
        );
        let us = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.0}"));
        let c = &report.relay_cpu;
        println!(
            "CPU per envelope over the relay run: machine {} us (relay {} us, this tool's two clients {} us; all CPUs busy {} %); raw QUIC: machine {} us per request",
            us(c.machine_us),
            us(c.relay_us),
            us(c.this_tool_us),
            us(c.busy.map(|b| b * 100.0)),
            us(report.raw_quic_cpu.machine_us),
        );
        println!(
            "at the target (0.5x raw) the machine has {:.0} us of CPU per envelope ({} CPUs / (0.5 x {:.0} msg/s)); the {} store alone takes {} us of it (groups of {STORE_GROUP} deposits, fetch, ack, WAL flush)",
            report.target_budget_us,
            report.nproc,
            report.raw_quic.messages_per_second,
            report.storage,
            us(report.store_alone_us),
        );
        println!(
            "idle connections: {} of {} requested  relay RSS {} KiB -> {} KiB  = {:.0} bytes per connection (target < 65536)",
            report.idle_connections,
            report.idle_connections_requested,
            report.relay_rss_kib_before,
            report.relay_rss_kib_after,
            report.bytes_per_idle_connection
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Counters, CpuPerItem};

    fn counters(busy: u64, idle: u64, relay: u64, me: u64) -> Counters {
        Counters {
            machine: Some((busy, idle, 0)),
            relay: Some(relay),
            me: Some(me),
        }
    }

    #[test]
    fn two_spans_give_the_figures_of_one_span_over_both() {
        // The same work in two halves must read as in one span: the raw
        // baseline is measured in two halves, and its CPU per request was
        // once reported as the sum of the halves' figures (twice too high).
        let mut halves = CpuPerItem::default();
        halves.add(counters(0, 0, 0, 0), counters(100, 100, 40, 30), 1000);
        halves.add(
            counters(500, 500, 90, 90),
            counters(600, 600, 130, 120),
            1000,
        );
        let mut whole = CpuPerItem::default();
        whole.add(counters(0, 0, 0, 0), counters(200, 200, 80, 60), 2000);
        assert_eq!(halves.machine_us, whole.machine_us);
        assert_eq!(halves.relay_us, whole.relay_us);
        assert_eq!(halves.this_tool_us, whole.this_tool_us);
        assert_eq!(halves.busy, Some(0.5));
        assert_eq!(whole.busy, Some(0.5));
    }
}
