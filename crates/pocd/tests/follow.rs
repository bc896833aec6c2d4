//! `RecordFollow` against real pocd processes: a long poll on an idle node
//! is answered with the entries of a delivery as they are committed (sends,
//! receipts, rejections and purges alike), an idle follow answers `[]` once
//! its wait is over, and `poc record follow` (the built binary) prints new
//! entries live and exits with a clear error when its daemon dies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod exercise_support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Cluster;
use poc_control::{
    Client, RecordEntryView, RecordSummaryView, Request, SendAccepted, SendRequest, StatusView,
};
use poc_proto::message::{Handling, Inquiry, Text};
use poc_proto::{Body, PocId, Role};
use poc_testnet::Daemon;

fn two_nodes() -> (Cluster, Daemon, Daemon) {
    let cluster = Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.cert", Role::Technical)],
        &[],
    );
    let est = cluster.start("EST.cert");
    let fra = cluster.start("FRA.cert");
    (cluster, est, fra)
}

fn head(daemon: &Daemon) -> u64 {
    daemon.call::<StatusView>(&Request::Status).record_entries
}

fn inquire(from: &Daemon, to: &str) -> SendAccepted {
    from.call(&Request::Send(Box::new(SendRequest::new(
        PocId::new(to).unwrap(),
        Handling::Confidential,
        Body::Inquiry(Inquiry::new_minimal(Text::new("Scanning from your AS"))),
    ))))
}

fn follow_call(client: &mut Client, after_seq: u64, wait_ms: u32) -> Vec<RecordSummaryView> {
    client
        .call(&Request::RecordFollow {
            after_seq,
            limit: 100,
            wait_ms,
        })
        .unwrap()
}

/// On its own thread: long polls (30 s each, the maximum) from `after`
/// until `want` entries came; returns the answers, one Vec per call.
fn follower(
    socket: PathBuf,
    after: u64,
    want: usize,
) -> std::thread::JoinHandle<Vec<Vec<RecordSummaryView>>> {
    std::thread::spawn(move || {
        let mut client = Client::connect(&socket).unwrap();
        let (mut after, mut got, mut answers) = (after, 0, Vec::new());
        while got < want {
            let entries = follow_call(&mut client, after, poc_control::FOLLOW_MAX_WAIT_MS);
            assert!(
                !entries.is_empty(),
                "a follow waited its whole 30 s with a delivery under way"
            );
            after = entries.last().unwrap().seq;
            got += entries.len();
            answers.push(entries);
        }
        answers
    })
}

/// (event, kind, peer) of each entry.
fn shape(entries: &[RecordSummaryView]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e.event.clone(),
                e.kind.clone().unwrap_or_default(),
                e.peer.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

fn strings(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

fn assert_consecutive(entries: &[RecordSummaryView], after: u64) {
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (after + 1..=after + entries.len() as u64).collect();
    assert_eq!(seqs, expected);
}

#[test]
fn follows_waiting_on_idle_nodes_get_the_delivery_as_it_is_committed() {
    let (_cluster, est, fra) = two_nodes();
    let (est_head, fra_head) = (head(&est), head(&fra));
    // Long polls outstanding on both idle nodes before anything is sent.
    let at_est = follower(est.socket().to_path_buf(), est_head, 2);
    let at_fra = follower(fra.socket().to_path_buf(), fra_head, 2);
    std::thread::sleep(Duration::from_millis(300));
    let sent = inquire(&est, "FRA.cert");

    let fra_entries: Vec<_> = at_fra.join().unwrap().concat();
    assert_eq!(
        shape(&fra_entries),
        strings(&[
            ("received", "inquiry", "EST.cert"),
            ("sent", "receipt", "EST.cert"),
        ])
    );
    assert_consecutive(&fra_entries, fra_head);
    assert_eq!(fra_entries[0].message_id, Some(sent.message_id));
    let est_entries: Vec<_> = at_est.join().unwrap().concat();
    assert_eq!(
        shape(&est_entries),
        strings(&[
            ("sent", "inquiry", "FRA.cert"),
            ("received", "receipt", "FRA.cert"),
        ])
    );
    assert_consecutive(&est_entries, est_head);
    assert_eq!(est_entries[0].message_id, Some(sent.message_id));
    // The receipt FRA sent is the one EST recorded.
    assert_eq!(est_entries[1].message_id, fra_entries[1].message_id);
    for entry in fra_entries.iter().chain(&est_entries) {
        assert_eq!(entry.thread_id, Some(sent.thread_id), "{entry:?}");
        assert!(entry.exercise.is_none() && !entry.purged, "{entry:?}");
    }

    // A summary is the export's entry without its bytes.
    let export: Vec<RecordEntryView> = est.call(&Request::RecordExport {
        after_seq: est_head,
        limit: 2,
    });
    for (summary, full) in est_entries.iter().zip(&export) {
        assert_eq!(summary.seq, full.seq);
        assert_eq!(summary.at, full.at);
        assert_eq!(summary.event, full.event);
        assert_eq!(summary.peer, full.peer);
        assert_eq!(summary.message_id, full.message_id);
        assert_eq!(summary.kind, full.kind);
        assert_eq!(summary.detail, full.detail);
        assert_eq!(summary.entry_hash, full.entry_hash);
        assert!(full.content_hex.is_some());
    }
    let raw: serde_json::Value = est.call(&Request::RecordFollow {
        after_seq: est_head,
        limit: 1000,
        wait_ms: 0,
    });
    let first = raw[0].as_object().unwrap();
    assert!(!first.contains_key("envelope_hex") && !first.contains_key("content_hex"));
}

#[test]
fn an_idle_follow_answers_nothing_once_its_wait_is_over() {
    let (_cluster, est, fra) = two_nodes();
    inquire(&est, "FRA.cert");
    let at_head = poc_testnet::eventually("the receipt at EST", || {
        let head = head(&est);
        (head >= 2).then_some(head)
    });
    let mut client = est.client();
    for (after_seq, what) in [
        (at_head, "nothing new"),
        (at_head + 1000, "after_seq beyond the head"),
    ] {
        let start = Instant::now();
        let entries = follow_call(&mut client, after_seq, 400);
        assert!(entries.is_empty(), "{what}: {entries:?}");
        // The daemon held the call for its wait (a lower bound only).
        assert!(start.elapsed() >= Duration::from_millis(400), "{what}");
    }
    // The connection still serves; what exists is answered without waiting,
    // from the start, one entry for a zero limit.
    let all = follow_call(&mut client, 0, 0);
    assert_consecutive(&all, 0);
    assert_eq!(all.len() as u64, at_head);
    let one: Vec<RecordSummaryView> = client
        .call(&Request::RecordFollow {
            after_seq: 0,
            limit: 0,
            wait_ms: 0,
        })
        .unwrap();
    assert_eq!(one, all[..1]);
    drop(fra);
}

#[test]
fn rejections_and_purges_wake_followers_too() {
    let (cluster, est, fra) = two_nodes();
    let fra_head = head(&fra);
    let waiting = follower(fra.socket().to_path_buf(), fra_head, 1);
    std::thread::sleep(Duration::from_millis(300));
    // Garbage from an authenticated peer: refused, and recorded.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async {
        let conn = cluster.raw_client("EST.cert", "FRA.cert").await;
        conn.request(b"not an envelope").await.unwrap()
    });
    assert_eq!(answer.first(), Some(&1), "refused");
    let rejected = waiting.join().unwrap().concat();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].seq, fra_head + 1);
    assert_eq!(rejected[0].event, "rejected");
    assert_eq!(
        rejected[0].peer.as_ref().map(|p| p.as_str()),
        Some("EST.cert")
    );
    assert!(rejected[0].detail.is_some());

    let waiting = follower(fra.socket().to_path_buf(), fra_head + 1, 1);
    std::thread::sleep(Duration::from_millis(300));
    let _: serde_json::Value = fra.call(&Request::ExercisePurge {
        exercise: "DRILL-NONE".into(),
    });
    let purge = waiting.join().unwrap().concat();
    assert_eq!(purge.len(), 1);
    assert_eq!(purge[0].seq, fra_head + 2);
    assert_eq!(purge[0].event, "purge");
    assert_eq!(purge[0].exercise.as_deref(), Some("DRILL-NONE"));
    assert_eq!(purge[0].detail.as_deref(), Some("purged 0 entries"));
    drop(est);
}

#[test]
fn poc_record_follow_prints_new_entries_and_stops_when_pocd_dies() {
    let (_cluster, est, fra) = two_nodes();
    // Something in the record already, which must not be printed.
    inquire(&est, "FRA.cert");
    poc_testnet::eventually("the receipt at EST", || (head(&est) >= 2).then_some(()));
    let mut poc = std::process::Command::new(exercise_support::poc_binary())
        .env_remove("POC_SOCKET")
        .arg("--socket")
        .arg(est.socket())
        .args(["record", "follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(poc.stderr.take().unwrap());
    let mut started = String::new();
    stderr.read_line(&mut started).unwrap();
    assert!(
        started.contains("following the record after entry #2"),
        "{started}"
    );
    // Committed after poc started following.
    let sent = inquire(&est, "FRA.cert");
    let mut stdout = BufReader::new(poc.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let thread = sent.thread_id.to_string();
    assert!(lines[0].starts_with("#3 "), "{lines:?}");
    assert!(
        lines[0].contains(&format!("sent inquiry to FRA.cert thread {thread}")),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("#4 "), "{lines:?}");
    assert!(
        lines[1].contains(&format!("received receipt from FRA.cert thread {thread}")),
        "{lines:?}"
    );

    // The daemon dies under the waiting follow.
    est.kill9();
    let status = poc.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(rest.contains("lost the connection to pocd"), "{rest}");
    assert!(!rest.contains("panicked"), "{rest}");
    let mut more = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut more).unwrap();
    assert!(more.is_empty(), "nothing else printed: {more}");
    drop(fra);
}

#[test]
fn a_follow_whose_caller_hangs_up_is_dropped_before_its_wait_is_over() {
    use std::io::Write as _;
    let (_cluster, est, fra) = two_nodes();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", est.pid()))
            .unwrap()
            .count()
    };
    let at_head = head(&est);
    let before = fds();
    let mut line = serde_json::to_vec(&Request::RecordFollow {
        after_seq: at_head,
        limit: 10,
        wait_ms: poc_control::FOLLOW_MAX_WAIT_MS,
    })
    .unwrap();
    line.push(b'\n');
    let sent = Instant::now();
    let callers: Vec<_> = (0..40)
        .map(|_| {
            let mut stream = std::os::unix::net::UnixStream::connect(est.socket()).unwrap();
            stream.write_all(&line).unwrap();
            stream
        })
        .collect();
    // (`before` may still count the connection `head` used.)
    poc_testnet::eventually("40 follows waiting", || {
        (fds() >= before + 35).then_some(())
    });
    drop(callers);
    // Their connections close as soon as the callers are gone, not when
    // their 30 s waits end.
    let closed = poc_testnet::eventually("the abandoned follows' connections closed", || {
        (fds() <= before + 5).then(Instant::now)
    });
    assert!(
        closed.duration_since(sent) < Duration::from_secs(20),
        "closed only after {:?}",
        closed.duration_since(sent)
    );
    // A caller that only closes its sending side is answered at once with
    // what is there (nothing new here), then the connection ends.
    let mut caller = std::os::unix::net::UnixStream::connect(est.socket()).unwrap();
    caller.write_all(&line).unwrap();
    let asked = Instant::now();
    caller.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut caller, &mut answer).unwrap();
    assert_eq!(answer, "{\"ok\":[]}\n");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    // The node serves on.
    assert_eq!(head(&est), at_head);
    drop(fra);
}
