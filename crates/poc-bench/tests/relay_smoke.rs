//! Smoke test: the built `poc-relay-bench` runs end to end with `--quick
//! --json` (a real poc-relay process) and prints a complete JSON report. No
//! timing is asserted: figures from a quick run on a shared machine mean
//! nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn quick_relay_run_prints_a_complete_json_report() {
    let bench = Path::new(env!("CARGO_BIN_EXE_poc-relay-bench"));
    let relay = bench.with_file_name("poc-relay");
    assert!(
        relay.is_file(),
        "no poc-relay binary at {}: build it first (`cargo build -p poc-relay`, or run \
         `cargo test --workspace`, which builds it)",
        relay.display()
    );
    let out = Command::new(bench)
        .args(["--quick", "--json", "--messages", "100", "--idle", "20"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "poc-relay-bench failed:\n{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr:\n{stderr}"));
    assert_eq!(doc["tool"], "poc-relay-bench");
    assert_eq!(doc["storage"], "log");
    for run in ["raw_quic", "relay"] {
        assert_eq!(doc[run]["messages"], 100, "{run}");
        assert_eq!(
            doc[run]["latency"]["samples"], 100,
            "{run}: every message timed"
        );
        assert!(doc[run]["messages_per_second"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(doc["schema"], 2);
    // Where the CPU goes: /proc is there on the machines this runs on.
    assert!(doc["target_budget_us"].as_f64().unwrap() > 0.0);
    assert!(doc["relay_cpu"]["busy"].as_f64().unwrap() > 0.0);
    assert!(doc["store_alone_us"].as_f64().is_some());
    assert_eq!(doc["idle_connections"], 20);
    assert!(doc["relay_rss_kib_after"].as_u64().unwrap() > 0);
}
