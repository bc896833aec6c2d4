//! CPU time accounting from /proc: per process, and for the whole machine.

use serde::Serialize;

/// Clock ticks per second of /proc's times (`getconf CLK_TCK`; 100 on
/// Linux unless the kernel says otherwise).
pub(crate) fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// User + system CPU time of a process (all its threads), or of this one.
pub(crate) fn process_ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces), from
    // field 3 (state): utime is field 14, stime field 15.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Bytes a process caused to be written to storage (`write_bytes` of
/// /proc/<pid>/io: pages it dirtied, whatever the file).
fn process_write_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whole-machine ticks: (busy, idle, iowait), from the `cpu` line of /proc/stat.
pub(crate) fn machine_ticks() -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is inside user)
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some((busy, get(3), get(4)))
}

/// A snapshot of the counters.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    sender: Option<u64>,
    recipient: Option<u64>,
    me: Option<u64>,
    machine: Option<(u64, u64, u64)>,
    sender_written: Option<u64>,
    recipient_written: Option<u64>,
}

impl Snapshot {
    /// Reads the counters of the two daemons, this process and the machine.
    pub(crate) fn take(sender: u32, recipient: u32) -> Snapshot {
        Snapshot {
            sender: process_ticks(Some(sender)),
            recipient: process_ticks(Some(recipient)),
            me: process_ticks(None),
            machine: machine_ticks(),
            sender_written: process_write_bytes(sender),
            recipient_written: process_write_bytes(recipient),
        }
    }
}

/// CPU used between two snapshots.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CpuUse {
    /// Sender daemon, CPU ms (user + system).
    pub(crate) sender_ms: Option<f64>,
    /// Recipient daemon, CPU ms.
    pub(crate) recipient_ms: Option<f64>,
    /// This tool (clients, record followers), CPU ms.
    pub(crate) bench_ms: Option<f64>,
    /// Sender daemon CPU per message, µs.
    pub(crate) sender_us_per_message: Option<f64>,
    /// Recipient daemon CPU per message, µs.
    pub(crate) recipient_us_per_message: Option<f64>,
    /// This tool's CPU per message, µs.
    pub(crate) bench_us_per_message: Option<f64>,
    /// Share of all CPUs' time busy (anything on the machine).
    pub(crate) machine_busy: Option<f64>,
    /// Share of all CPUs' time idle waiting for I/O.
    pub(crate) machine_iowait: Option<f64>,
    /// Resolution of these figures, ms (one clock tick).
    pub(crate) tick_ms: f64,
    /// Bytes the sender daemon wrote to storage per message, KiB (its
    /// SQLite WAL and database files: pages dirtied, checkpoints included).
    pub(crate) sender_write_kib_per_message: Option<f64>,
    /// The same for the recipient daemon.
    pub(crate) recipient_write_kib_per_message: Option<f64>,
}

impl CpuUse {
    /// What was used from `before` to `after`, over `messages` messages.
    pub(crate) fn between(before: &Snapshot, after: &Snapshot, messages: usize) -> CpuUse {
        let tick_ms = 1e3 / ticks_per_second();
        let ms = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 * tick_ms);
        let per = |v: Option<f64>| v.map(|ms| ms * 1e3 / messages.max(1) as f64);
        let sender_ms = ms(before.sender, after.sender);
        let recipient_ms = ms(before.recipient, after.recipient);
        let bench_ms = ms(before.me, after.me);
        let (machine_busy, machine_iowait) = match (before.machine, after.machine) {
            (Some((b0, i0, w0)), Some((b1, i1, w1))) => {
                let busy = b1.saturating_sub(b0) as f64;
                let idle = i1.saturating_sub(i0) as f64;
                let wait = w1.saturating_sub(w0) as f64;
                let total = busy + idle + wait;
                if total > 0.0 {
                    (Some(busy / total), Some(wait / total))
                } else {
                    (None, None)
                }
            }
            _ => (None, None),
        };
        let kib = |a: Option<u64>, b: Option<u64>| {
            Some(b?.saturating_sub(a?) as f64 / 1024.0 / messages.max(1) as f64)
        };
        CpuUse {
            sender_write_kib_per_message: kib(before.sender_written, after.sender_written),
            recipient_write_kib_per_message: kib(before.recipient_written, after.recipient_written),
            sender_us_per_message: per(sender_ms),
            recipient_us_per_message: per(recipient_ms),
            bench_us_per_message: per(bench_ms),
            sender_ms,
            recipient_ms,
            bench_ms,
            machine_busy,
            machine_iowait,
            tick_ms,
        }
    }
}
