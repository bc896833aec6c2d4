//! `poc record follow` (the built binary) against a stand-in pocd that holds
//! each `RecordFollow` call, as the daemon does, until the test "commits" an
//! entry, then goes away: the entry committed after `poc` started waiting is
//! printed at once, and the daemon's disappearance ends `poc` with a clear
//! error (exit code 1, no panic). The same command against real daemons is
//! in `crates/pocd/tests/follow.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use poc_control::{ApiError, RecordSummaryView, Request, Response, StatusView};
use poc_proto::{MessageId, PocId, ThreadId, Timestamp};

const HEAD: u64 = 41;

fn entry(seq: u64) -> RecordSummaryView {
    RecordSummaryView {
        seq,
        at: Timestamp(1_795_000_000 + seq),
        event: "received".into(),
        peer: Some(PocId::new("FRA.cert").unwrap()),
        message_id: Some(MessageId([0x77; 16])),
        thread_id: Some(ThreadId([0xab; 16])),
        kind: Some("receipt".into()),
        exercise: None,
        detail: None,
        purged: false,
        entry_hash: format!("{seq:064x}"),
    }
}

fn status() -> StatusView {
    StatusView {
        poc_id: PocId::new("EST.cert").unwrap(),
        role: "technical".into(),
        listen: "127.0.0.1:7401".into(),
        directory_sequence: 1,
        record_entries: HEAD,
        outbox_pending: 0,
        outbox_delivered: 0,
        outbox_failed: 0,
        pending: vec![],
        recent: vec![],
        overdue: vec![],
    }
}

/// Runs `poc --socket S record follow ARGS` against a stand-in that answers
/// `Status`, holds each `RecordFollow` until an entry arrives on the
/// returned sender, and closes the connection when that sender is dropped.
/// Returns every request seen (as they come) and the running `poc`.
fn follow(
    args: &[&str],
) -> (
    tempfile::TempDir,
    mpsc::Sender<RecordSummaryView>,
    mpsc::Receiver<Request>,
    std::process::Child,
) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("pocd.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (commit, committed) = mpsc::channel::<RecordSummaryView>();
    let (seen, requests) = mpsc::channel::<Request>();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        for line in BufReader::new(stream).lines() {
            let request: Request = serde_json::from_str(&line.unwrap()).unwrap();
            seen.send(request.clone()).unwrap();
            let response = match request {
                Request::Status => Response::Ok(serde_json::to_value(status()).unwrap()),
                Request::RecordFollow { .. } => match committed.recv() {
                    Ok(entry) => Response::Ok(serde_json::to_value(vec![entry]).unwrap()),
                    // The daemon goes away mid-wait: the connection closes.
                    Err(_) => return,
                },
                _ => Response::Error(ApiError::new("unexpected request", None)),
            };
            let mut out = serde_json::to_vec(&response).unwrap();
            out.push(b'\n');
            writer.write_all(&out).unwrap();
        }
    });
    let child = Command::new(env!("CARGO_BIN_EXE_poc"))
        .env_remove("POC_SOCKET")
        .arg("--socket")
        .arg(&socket)
        .args(["record", "follow"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (dir, commit, requests, child)
}

fn next_request(requests: &mpsc::Receiver<Request>) -> Request {
    requests
        .recv_timeout(Duration::from_secs(30))
        .expect("poc sent no further request")
}

fn expect_follow(request: Request, after: u64) {
    match request {
        Request::RecordFollow {
            after_seq,
            limit,
            wait_ms,
        } => {
            assert_eq!(after_seq, after);
            assert!(limit >= 1);
            assert!(
                wait_ms > 0 && wait_ms <= poc_control::FOLLOW_MAX_WAIT_MS,
                "{wait_ms}"
            );
        }
        other => panic!("expected RecordFollow after {after}, got {other:?}"),
    }
}

fn finish(commit: mpsc::Sender<RecordSummaryView>, child: std::process::Child) -> (String, i32) {
    drop(commit);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (stderr, out.status.code().unwrap_or(-1))
}

#[test]
fn json_lines_start_at_the_head_and_print_what_is_committed_later() {
    let (_dir, commit, requests, mut child) = follow(&["--json"]);
    // Without --after: the current head, so only new entries are printed.
    assert!(matches!(next_request(&requests), Request::Status));
    expect_follow(next_request(&requests), HEAD);
    // Committed only now, while poc waits.
    commit.send(entry(HEAD + 1)).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let printed: RecordSummaryView = serde_json::from_str(&line).unwrap();
    assert_eq!(printed, entry(HEAD + 1));
    // It asks again from the entry printed.
    expect_follow(next_request(&requests), HEAD + 1);
    commit.send(entry(HEAD + 2)).unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(
        serde_json::from_str::<RecordSummaryView>(&line).unwrap(),
        entry(HEAD + 2)
    );
    expect_follow(next_request(&requests), HEAD + 2);

    // pocd goes away while poc waits.
    let (stderr, code) = finish(commit, child);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("lost the connection to pocd"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn text_lines_from_a_given_seq() {
    let (_dir, commit, requests, mut child) = follow(&["--after", "7"]);
    // --after given: no Status call, straight to following.
    expect_follow(next_request(&requests), 7);
    commit.send(entry(8)).unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("#8 "), "{line}");
    assert!(
        line.contains(&format!(
            "received receipt from FRA.cert thread {} message {}",
            "ab".repeat(16),
            "77".repeat(16)
        )),
        "{line}"
    );
    expect_follow(next_request(&requests), 8);
    let (stderr, code) = finish(commit, child);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("lost the connection to pocd"), "{stderr}");
}
