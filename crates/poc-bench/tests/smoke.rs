//! Smoke test: the built `poc-bench` runs end to end with `--quick --json`
//! (two real pocd processes) and prints a complete JSON report. No timing is
//! asserted: figures from a quick run on a shared machine mean nothing.
// The helpers below are test code outside `#[test]` functions.
#![allow(clippy::panic)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn field<'a>(doc: &'a Value, path: &str) -> &'a Value {
    let mut at = doc;
    for key in path.split('.') {
        at = at
            .get(key)
            .unwrap_or_else(|| panic!("the report has no `{path}` (missing `{key}`)"));
    }
    at
}

fn number(doc: &Value, path: &str) -> f64 {
    field(doc, path)
        .as_f64()
        .unwrap_or_else(|| panic!("`{path}` is not a number: {}", field(doc, path)))
}

#[test]
fn quick_run_prints_a_complete_json_report() {
    let bench = Path::new(env!("CARGO_BIN_EXE_poc-bench"));
    let pocd = bench.with_file_name("pocd");
    assert!(
        pocd.is_file(),
        "no pocd binary at {}: poc-bench runs the daemon built in the same target \
         directory; build it first (`cargo build -p pocd`, or run `cargo test --workspace`, \
         which builds it)",
        pocd.display()
    );
    let out = Command::new(bench)
        .args(["--quick", "--json"])
        .output()
        .expect("poc-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "poc-bench failed:\n{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    assert_eq!(field(&doc, "tool"), "poc-bench");
    assert_eq!(field(&doc, "schema"), 2);
    assert!(number(&doc, "machine.nproc") >= 1.0);
    for key in [
        "cpu_model",
        "rustc",
        "pocd",
        "git_commit",
        "git_dirty",
        "kernel",
        "temp_fs",
        "profile",
    ] {
        // Present; null where the information is unavailable.
        field(&doc, &format!("machine.{key}"));
    }
    assert_eq!(field(&doc, "parameters.quick"), true);
    assert!(number(&doc, "parameters.send_request_bytes") > 4096.0);

    let summaries = [
        "baselines.quic_round_trip",
        "baselines.envelope_crypto.seal_message",
        "baselines.envelope_crypto.open_message",
        "baselines.envelope_crypto.seal_receipt",
        "baselines.envelope_crypto.open_receipt",
        "baselines.envelope_crypto.total",
        "baselines.fsync",
        "concurrency_1.latency",
        "concurrency_1.send_call",
        "concurrency_1_phases.latency",
        "concurrency_1_phases.to_recipient",
        "concurrency_high.latency",
        "concurrency_high.send_call",
    ];
    for summary in summaries {
        for stat in [
            "min_us",
            "p25_us",
            "median_us",
            "p75_us",
            "p99_us",
            "max_us",
            "mean_us",
        ] {
            assert!(number(&doc, &format!("{summary}.{stat}")) >= 0.0);
        }
        assert!(number(&doc, &format!("{summary}.samples")) >= 1.0);
    }
    assert!(number(&doc, "baselines.envelope_crypto.message_envelope_bytes") > 4096.0);
    for key in [
        "quic_round_trip_median_us",
        "envelope_crypto_median_us",
        "fsync_median_us",
    ] {
        let slices = field(&doc, &format!("baselines.slices.{key}"))
            .as_array()
            .unwrap_or_else(|| panic!("baselines.slices.{key} is not an array"));
        assert_eq!(slices.len(), 3, "{key}: before, between and after the runs");
    }
    assert!(number(&doc, "baselines.envelope_crypto.receipt_envelope_bytes") > 0.0);

    for run in ["concurrency_1", "concurrency_1_phases", "concurrency_high"] {
        for key in [
            "messages",
            "concurrency",
            "elapsed_s",
            "delivered_per_s",
            "follow_calls",
            "follow_bytes",
            "early_completions",
        ] {
            number(&doc, &format!("{run}.{key}"));
        }
        // Completions are seen through the sender's follow answers.
        assert!(number(&doc, &format!("{run}.follow_calls")) >= 1.0);
        assert!(number(&doc, &format!("{run}.follow_bytes")) > 0.0);
        assert_eq!(
            number(&doc, &format!("{run}.latency.samples")),
            number(&doc, &format!("{run}.messages")),
            "every message of {run} is timed"
        );
    }
    assert_eq!(number(&doc, "concurrency_1.concurrency"), 1.0);
    assert_eq!(number(&doc, "concurrency_1_phases.concurrency"), 1.0);
    assert!(field(&doc, "concurrency_1.to_recipient").is_null());
    for run in ["concurrency_1", "concurrency_high"] {
        for key in [
            "sender_ms",
            "recipient_ms",
            "bench_ms",
            "sender_us_per_message",
            "recipient_us_per_message",
            "bench_us_per_message",
            "machine_busy",
            "machine_iowait",
            "tick_ms",
            "sender_write_kib_per_message",
            "recipient_write_kib_per_message",
        ] {
            // Present; null where /proc is unavailable.
            field(&doc, &format!("{run}.cpu.{key}"));
        }
    }
    for key in ["sender_record_entries", "status_call_ms", "inbox_call_ms"] {
        number(&doc, &format!("views.{key}"));
    }
    for target in ["targets.latency", "targets.throughput"] {
        number(&doc, &format!("{target}.ratio"));
        assert!(field(&doc, &format!("{target}.met")).is_boolean());
    }
    for key in ["measured_median_us", "baseline_us", "max_ratio"] {
        number(&doc, &format!("targets.latency.{key}"));
    }
    assert!(field(&doc, "targets.latency.baseline").is_string());
    for key in ["measured_per_s", "crypto_bound_per_s", "min_ratio"] {
        number(&doc, &format!("targets.throughput.{key}"));
    }
    assert!(field(&doc, "targets.throughput.crypto_bound").is_string());

    for side in ["sender", "recipient"] {
        for key in ["entries", "retried", "undelivered"] {
            number(&doc, &format!("outbox.{side}.{key}"));
        }
    }
    field(&doc, "kept_dir");
}
