//! The daemon commands of the built `poc` binary against a stand-in pocd: a
//! Unix socket in a temporary directory that speaks the control API
//! (`poc_control` JSON lines) with canned answers and records every request,
//! so each test checks both what `poc` sends and what it prints.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use poc_control::{
    ApiError, DeadlineView, MessageView, RecordEntryView, RecordProblemView, RecordVerifyView,
    Request, Response, SendAccepted, StatusView, ThreadSummary, ThreadView,
};
use poc_proto::message::{
    Channel, ChannelAgreement, Handling, Indicator, Inquiry, IpAddress, Receipt, ResponseOutcome,
    Text, Tlp, Urgency,
};
use poc_proto::{Body, MessageId, PocId, ThreadId, Timestamp};

const THREAD: ThreadId = ThreadId([0xab; 16]);
const OTHER_THREAD: ThreadId = ThreadId([0x12; 16]);
const INQUIRY_ID: MessageId = MessageId([0x11; 16]);
const NEW_MESSAGE: MessageId = MessageId([0x77; 16]);

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A stand-in pocd on a Unix socket.
struct FakePocd {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakePocd {
    fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> FakePocd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("pocd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let request: Request = serde_json::from_str(&line).unwrap();
                    let response = handler(&request);
                    seen.lock().unwrap().push(request);
                    let mut out = serde_json::to_vec(&response).unwrap();
                    out.push(b'\n');
                    if writer.write_all(&out).is_err() {
                        break;
                    }
                }
            }
        });
        FakePocd {
            _dir: dir,
            socket,
            requests,
        }
    }

    fn poc(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_poc"))
            .env_remove("POC_SOCKET")
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .current_dir(self._dir.path())
            .output()
            .unwrap()
    }

    fn sent(&self) -> Vec<poc_control::SendRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                Request::Send(s) => Some((**s).clone()),
                _ => None,
            })
            .collect()
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }
}

fn ok<T: serde::Serialize>(value: T) -> Response {
    Response::Ok(serde_json::to_value(value).unwrap())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn id(s: &str) -> PocId {
    PocId::new(s).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn inquiry_body() -> Body {
    let mut inquiry = Inquiry::new_minimal(Text {
        original: "Attaque DDoS contre le réseau électrique".into(),
        english: Some("DDoS against the power grid".into()),
    });
    inquiry.incident.indicators = vec![Indicator::Ip(IpAddress::V4([192, 0, 2, 1]))];
    inquiry.preferred_channel = Some(Channel::Pocnet);
    inquiry.time_sensitivity.urgency = Urgency::Urgent;
    Body::Inquiry(inquiry)
}

fn summary(outgoing: bool, exercise: Option<&str>) -> ThreadSummary {
    ThreadSummary {
        thread_id: THREAD,
        peer: id("FRA.cert"),
        outgoing,
        subject: "Attaque DDoS contre le réseau électrique".into(),
        state: "receipted (awaiting response)".into(),
        exercise: exercise.map(str::to_owned),
        handling: "TLP:AMBER".into(),
        opened_at: Timestamp(1_795_000_000),
        last_activity: Timestamp(1_795_000_100),
        messages: 2,
        deadlines: vec![DeadlineView {
            kind: "respond-by".into(),
            at: Timestamp(1_795_014_400),
            owed_by: id(if outgoing { "FRA.cert" } else { "EST.cert" }),
            met: false,
            overdue: true,
        }],
    }
}

fn thread_view(outgoing: bool, exercise: Option<&str>) -> ThreadView {
    let (me, peer) = (id("EST.cert"), id("FRA.cert"));
    let (inq_from, inq_to) = if outgoing {
        (me.clone(), peer.clone())
    } else {
        (peer.clone(), me.clone())
    };
    let message =
        |seq, direction: &str, kind: &str, mid, reply, sender: &PocId, recipient: &PocId, body| {
            MessageView {
                seq,
                direction: direction.into(),
                at: Timestamp(1_795_000_000 + seq * 50),
                kind: kind.into(),
                message_id: mid,
                in_reply_to: reply,
                sender: sender.clone(),
                recipient: recipient.clone(),
                handling: "TLP:AMBER".into(),
                language: "fr".into(),
                exercise: exercise.map(str::to_owned),
                delivery: (direction == "sent")
                    .then(|| "delivered 2026-11-18T11:07:00Z via direct".into()),
                body,
            }
        };
    let (dir_in, dir_out) = if outgoing {
        ("sent", "received")
    } else {
        ("received", "sent")
    };
    ThreadView {
        summary: summary(outgoing, exercise),
        messages: vec![
            message(
                1,
                dir_in,
                "inquiry",
                INQUIRY_ID,
                None,
                &inq_from,
                &inq_to,
                inquiry_body(),
            ),
            message(
                2,
                dir_out,
                "receipt",
                MessageId([0x22; 16]),
                Some(INQUIRY_ID),
                &inq_to,
                &inq_from,
                Body::Receipt(Receipt {
                    acknowledged: INQUIRY_ID,
                    content_digest: [7; 32],
                    received_at: Timestamp(1_795_000_090),
                }),
            ),
        ],
    }
}

fn inbox() -> Vec<ThreadSummary> {
    let mut other = summary(true, None);
    other.thread_id = OTHER_THREAD;
    other.deadlines.clear();
    other.subject = "Phishing wave".into();
    other.handling = "CONFIDENTIAL".into();
    vec![summary(false, Some("CYBER-DRILL-7")), other]
}

fn accepted(thread: ThreadId) -> Response {
    ok(SendAccepted {
        message_id: NEW_MESSAGE,
        thread_id: thread,
        outbox_id: 42,
        missing_fields: vec![],
    })
}

/// A pocd that knows one incoming exercise thread (THREAD) and one outgoing one.
fn standard(outgoing: bool) -> FakePocd {
    FakePocd::start(move |request| match request {
        Request::Inbox => ok(inbox()),
        Request::Thread { thread } if *thread == THREAD => {
            ok(thread_view(outgoing, Some("CYBER-DRILL-7")))
        }
        Request::Thread { .. } => Response::Error(ApiError::new(
            "no such thread",
            Some("list threads with `poc inbox`"),
        )),
        Request::Send(send) => accepted(send.thread.unwrap_or(THREAD)),
        other => Response::Error(ApiError::new(format!("unexpected {other:?}"), None)),
    })
}

#[test]
fn inquire_sends_a_complete_inquiry_and_warns_about_missing_fields() {
    let pocd = standard(false);
    let before = now();
    let out = pocd.poc(&[
        "inquire",
        "--to",
        "FRA.cert",
        "--summary",
        "DDoS on the grid",
        "--english",
        "DDoS on the grid (en)",
        "--category",
        "ddos",
        "--indicator",
        "ip:192.0.2.1",
        "--indicator",
        "net:198.51.100.0/24",
        "--indicator",
        "port:123/udp",
        "--sector",
        "energy",
        "--critical-infrastructure",
        "--urgency",
        "urgent",
        "--respond-within",
        "4h",
        "--channel",
        "phone:+372 555 0100",
        "--handling",
        "amber+strict",
        "--exercise",
        "CYBER-DRILL-7",
        "--lang",
        "en",
    ]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(&NEW_MESSAGE.to_string()), "{stdout}");
    assert!(stdout.contains(&THREAD.to_string()), "{stdout}");
    assert!(
        stdout.contains("*** EXERCISE CYBER-DRILL-7 — NOT A REAL INCIDENT ***"),
        "{stdout}"
    );
    assert!(stdout.contains("TLP:AMBER+STRICT"), "{stdout}");
    // Missing recommended fields are warned about, and the inquiry is sent anyway.
    assert!(stderr.contains("warning:"), "{stderr}");
    assert!(stderr.contains("requester.name"), "{stderr}");
    assert!(stderr.contains("lead_agency"), "{stderr}");
    assert!(!stderr.contains("time_sensitivity.respond_by"), "{stderr}");

    let sent = pocd.sent();
    assert_eq!(sent.len(), 1);
    let s = &sent[0];
    assert_eq!(s.to.as_str(), "FRA.cert");
    assert_eq!(s.thread, None);
    assert_eq!(s.in_reply_to, None);
    assert_eq!(s.handling, Handling::Tlp(Tlp::AmberStrict));
    assert_eq!(s.exercise.as_ref().unwrap().0, "CYBER-DRILL-7");
    let Body::Inquiry(q) = &s.body else {
        panic!("not an inquiry: {:?}", s.body)
    };
    assert_eq!(q.incident.summary.original, "DDoS on the grid");
    assert_eq!(
        q.incident.summary.english.as_deref(),
        Some("DDoS on the grid (en)")
    );
    assert_eq!(q.incident.indicators.len(), 3);
    assert_eq!(q.incident.critical_infrastructure, Some(true));
    assert_eq!(q.time_sensitivity.urgency, Urgency::Urgent);
    let by = q.time_sensitivity.respond_by.unwrap().0;
    assert!(by >= before + 4 * 3600 && by <= now() + 4 * 3600, "{by}");
    assert_eq!(
        q.preferred_channel,
        Some(Channel::Phone("+372 555 0100".into()))
    );
}

#[test]
fn inquire_reads_a_template_and_flags_override_it() {
    let pocd = standard(false);
    std::fs::write(
        pocd.dir().join("inquiry.toml"),
        "to = \"FRA.cert\"\nsummary = \"from the template\"\nname = \"Mari Maasikas\"\nentity = \"CERT-EE\"\nindicators = [\"domain:bad.example\"]\nhandling = \"green\"\n",
    )
    .unwrap();
    let out = pocd.poc(&[
        "inquire",
        "--from-file",
        "inquiry.toml",
        "--handling",
        "red",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let sent = pocd.sent();
    let Body::Inquiry(q) = &sent[0].body else {
        panic!()
    };
    assert_eq!(q.incident.summary.original, "from the template");
    assert_eq!(q.requester.entity.as_deref(), Some("CERT-EE"));
    assert_eq!(
        q.incident.indicators,
        vec![Indicator::Domain("bad.example".into())]
    );
    assert_eq!(sent[0].handling, Handling::Tlp(Tlp::Red));
    assert!(!text(&out.stderr).contains("requester.name"));
}

#[test]
fn inbox_shows_labels_banners_and_overdue_deadlines() {
    let pocd = standard(false);
    let out = pocd.poc(&["inbox"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("THREAD"), "{stdout}");
    let exercise = lines
        .iter()
        .find(|l| l.contains(&THREAD.to_string()))
        .unwrap();
    assert!(
        exercise.contains("*** EXERCISE CYBER-DRILL-7 — NOT A REAL INCIDENT ***"),
        "{exercise}"
    );
    assert!(exercise.contains("OVERDUE"), "{exercise}");
    let label = exercise.find("TLP:AMBER").unwrap();
    assert!(
        label < exercise.find("Attaque DDoS").unwrap(),
        "label before content: {exercise}"
    );
    let other = lines
        .iter()
        .find(|l| l.contains(&OTHER_THREAD.to_string()))
        .unwrap();
    assert!(!other.contains("EXERCISE"), "{other}");
    assert!(other.contains("CONFIDENTIAL"), "{other}");
    // Exercise threads are listed apart: real threads first, then the
    // exercise ones under their own heading and table.
    let heading = lines
        .iter()
        .position(|l| l.starts_with("=== EXERCISE THREADS"))
        .unwrap_or_else(|| panic!("no exercise section: {stdout}"));
    let exercise_at = lines.iter().position(|l| l == exercise).unwrap();
    let other_at = lines.iter().position(|l| l == other).unwrap();
    assert!(other_at < heading && heading < exercise_at, "{stdout}");
    // Columns are aligned within each table.
    let col = lines[0].find("PEER").unwrap();
    assert_eq!(&other[col..col + 8], "FRA.cert");
    let header = lines[heading + 1];
    assert!(header.starts_with("THREAD"), "{stdout}");
    let col = header.find("PEER").unwrap();
    assert_eq!(&exercise[col..col + 8], "FRA.cert");

    let out = pocd.poc(&["inbox", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["exercise"], "CYBER-DRILL-7");
}

#[test]
fn show_resolves_a_prefix_and_renders_every_message() {
    let pocd = standard(false);
    let out = pocd.poc(&["show", "abababab"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("*** EXERCISE CYBER-DRILL-7 — NOT A REAL INCIDENT ***"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("neutral acknowledgement of receipt (implies no agreement, Annex A para 10)")
    );
    assert!(stdout.contains("received"), "{stdout}");
    assert!(stdout.contains("FRA.cert → EST.cert"), "{stdout}");
    assert!(stdout.contains("ip:192.0.2.1"), "{stdout}");
    assert!(stdout.contains("DDoS against the power grid"), "{stdout}");
    assert!(stdout.contains("URGENT"), "{stdout}");
    assert!(stdout.contains("OVERDUE"), "{stdout}");
    assert!(
        stdout.contains("delivered 2026-11-18T11:07:00Z via direct"),
        "{stdout}"
    );
    // Each message: banner, then handling label, then content.
    let inquiry = stdout.find("[1]").unwrap();
    let after = &stdout[inquiry..];
    let banner = after.find("*** EXERCISE").unwrap();
    let label = after.find("TLP:AMBER").unwrap();
    let content = after.find("Attaque DDoS").unwrap();
    assert!(banner < label && label < content, "{after}");
    // It asked for the full id.
    assert!(
        pocd.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| matches!(r, Request::Thread { thread } if *thread == THREAD))
    );

    // Unknown and ambiguous prefixes.
    let out = pocd.poc(&["show", "cdcdcd"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("poc inbox"));
}

#[test]
fn respond_answers_the_inquiry_on_its_thread() {
    let pocd = standard(false);
    let out = pocd.poc(&[
        "respond",
        "ababab",
        "--will-follow-up",
        "--eta",
        "24h",
        "--note",
        "Nous examinons.",
        "--accept-channel",
        "--lead-agency",
        "ANSSI",
        "--lang",
        "fr",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("*** EXERCISE CYBER-DRILL-7"));
    let sent = pocd.sent();
    let s = &sent[0];
    assert_eq!(s.to.as_str(), "FRA.cert");
    assert_eq!(s.thread, Some(THREAD));
    assert_eq!(s.in_reply_to, Some(INQUIRY_ID));
    assert_eq!(
        s.handling,
        Handling::Tlp(Tlp::Amber),
        "same handling as the inquiry"
    );
    assert_eq!(
        s.exercise.as_ref().unwrap().0,
        "CYBER-DRILL-7",
        "same exercise"
    );
    let Body::Response(r) = &s.body else { panic!() };
    assert!(matches!(
        &r.outcome,
        ResponseOutcome::WillFollowUp { eta: Some(eta), note: Some(note) }
            if eta.0 >= now() + 86_000 && note.original == "Nous examinons."
    ));
    assert_eq!(r.channel, Some(ChannelAgreement::Accept));
    assert_eq!(r.lead_agency.as_deref(), Some("ANSSI"));
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));

    // An immediate answer without channel or lead agency: warned, sent anyway.
    let out = pocd.poc(&[
        "respond",
        &THREAD.to_string(),
        "--answer",
        "No such traffic seen.",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("channel"), "{stderr}");
    assert!(!stderr.contains("outcome.eta"), "{stderr}");
}

#[test]
fn follow_up_and_close_stay_on_the_thread() {
    let pocd = standard(true);
    let out = pocd.poc(&[
        "follow-up",
        "ababab",
        "--text",
        "More traffic now.",
        "--indicator",
        "asn:64496",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = pocd.poc(&[
        "close", "ababab", "--reason", "resolved", "--note", "Thanks.",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let sent = pocd.sent();
    assert_eq!(sent.len(), 2);
    for s in &sent {
        assert_eq!(s.thread, Some(THREAD));
        assert_eq!(s.to.as_str(), "FRA.cert");
        assert_eq!(s.exercise.as_ref().unwrap().0, "CYBER-DRILL-7");
        assert_eq!(s.handling, Handling::Tlp(Tlp::Amber));
    }
    let Body::FollowUp(f) = &sent[0].body else {
        panic!()
    };
    assert_eq!(f.indicators, vec![Indicator::Asn(64496)]);
    assert!(matches!(sent[1].body, Body::Close(_)));

    // One does not respond to one's own inquiry.
    let out = pocd.poc(&["respond", "ababab", "--answer", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("poc follow-up"));
    assert_eq!(pocd.sent().len(), 2);
}

#[test]
fn daemon_refusals_are_shown_with_their_hint() {
    let pocd = FakePocd::start(|_| {
        Response::Error(ApiError::new(
            "FRA.cert is not in the directory",
            Some("sync the directory"),
        ))
    });
    let out = pocd.poc(&["inquire", "--to", "FRA.cert", "--summary", "x"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("FRA.cert is not in the directory"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: sync the directory"), "{stderr}");
}

#[test]
fn status_outbox_and_directory_render() {
    let pocd = FakePocd::start(|request| match request {
        Request::Status => ok(StatusView {
            poc_id: id("EST.cert"),
            role: "technical".into(),
            listen: "127.0.0.1:7401".into(),
            directory_sequence: 3,
            record_entries: 12,
            outbox_pending: 0,
            outbox_delivered: 5,
            outbox_failed: 0,
            pending: vec![poc_control::OutboxView {
                id: 8,
                message_id: NEW_MESSAGE,
                thread_id: OTHER_THREAD,
                recipient: id("KEN.cert"),
                kind: "inquiry".into(),
                status: "pending".into(),
                attempts: 3,
                last_error: Some("direct: connection refused; relay eu-1: timed out".into()),
                delivered_via: None,
                delivered_at: None,
                created_at: Timestamp(1_795_000_000),
                next_attempt_at: Some(Timestamp(1_795_000_060)),
            }],
            recent: vec![poc_control::OutboxView {
                id: 7,
                message_id: INQUIRY_ID,
                thread_id: OTHER_THREAD,
                recipient: id("FRA.cert"),
                kind: "inquiry".into(),
                status: "delivered".into(),
                attempts: 2,
                last_error: None,
                delivered_via: Some("relay eu-1".into()),
                delivered_at: Some(Timestamp(1_795_000_030)),
                created_at: Timestamp(1_795_000_000),
                next_attempt_at: None,
            }],
            overdue: vec![(
                THREAD,
                DeadlineView {
                    kind: "eta".into(),
                    at: Timestamp(1_795_000_000),
                    owed_by: id("FRA.cert"),
                    met: false,
                    overdue: true,
                },
            )],
        }),
        Request::Outbox => ok(Vec::<poc_control::OutboxView>::new()),
        Request::Directory => ok(vec![poc_control::DirectoryPoc {
            poc_id: id("FRA.cert"),
            role: "technical".into(),
            revoked: true,
            endpoints: vec!["Direct { address: \"127.0.0.1:7402\" }".into()],
            valid_until: Timestamp(1_795_000_000),
        }]),
        _ => Response::Error(ApiError::new("unexpected", None)),
    });
    let out = pocd.poc(&["status"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("EST.cert (technical)"), "{stdout}");
    assert!(stdout.contains("OVERDUE"), "{stdout}");
    assert!(stdout.contains("snapshot 3"), "{stdout}");
    // Per outbox entry: why it is still pending, and how it was delivered.
    assert!(stdout.contains("Pending deliveries"), "{stdout}");
    assert!(
        stdout.contains("direct: connection refused; relay eu-1: timed out"),
        "{stdout}"
    );
    assert!(stdout.contains("Recent deliveries"), "{stdout}");
    assert!(stdout.contains("via relay eu-1"), "{stdout}");
    let out = pocd.poc(&["outbox"]);
    assert!(text(&out.stdout).contains("empty"));
    let out = pocd.poc(&["directory"]);
    assert!(text(&out.stdout).contains("REVOKED"));
    let out = pocd.poc(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["directory_sequence"], 3);
}

#[test]
fn record_verify_exit_codes() {
    let damaged = FakePocd::start(|_| {
        ok(RecordVerifyView {
            entries: 9,
            head_hash: "ff".repeat(32),
            problems: vec![
                RecordProblemView {
                    seq: 3,
                    kind: "edited".into(),
                    detail: "hash mismatch".into(),
                },
                RecordProblemView {
                    seq: 7,
                    kind: "missing".into(),
                    detail: "gap after 6".into(),
                },
            ],
        })
    });
    let out = damaged.poc(&["record", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("entry seq 3: edited"), "{stdout}");
    assert!(stdout.contains("entry seq 7: missing"), "{stdout}");
    let out = damaged.poc(&["record", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));

    let intact = FakePocd::start(|_| {
        ok(RecordVerifyView {
            entries: 9,
            head_hash: "ab".repeat(32),
            problems: vec![],
        })
    });
    let out = intact.poc(&["record", "verify"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("record intact: 9 entries, head {}", "ab".repeat(32))
    );
}

#[test]
fn record_verify_checks_an_anchored_entry() {
    // The record as a node holds it after its last 4 entries were deleted
    // and its head row rewritten to entry #5: the chain checks out (the
    // stand-in reports no problem), only an anchor kept elsewhere shows it.
    let hash_of = |seq: u64| format!("{seq:064x}");
    let pocd = FakePocd::start(move |request| match request {
        Request::RecordVerify => ok(RecordVerifyView {
            entries: 5,
            head_hash: hash_of(5),
            problems: vec![],
        }),
        Request::RecordExport { after_seq, limit } => ok((after_seq + 1..=5)
            .take(*limit as usize)
            .map(|seq| RecordEntryView {
                seq,
                at: Timestamp(seq),
                event: "note".into(),
                peer: None,
                message_id: None,
                thread_id: None,
                kind: None,
                exercise: None,
                detail: None,
                envelope_hex: None,
                content_hex: None,
                entry_hash: hash_of(seq),
            })
            .collect::<Vec<_>>()),
        _ => Response::Error(ApiError::new("unexpected", None)),
    });
    // An anchor the record still holds (hex in any case).
    let anchor = format!("4:{}", hash_of(4).to_uppercase());
    let out = pocd.poc(&["record", "verify", "--anchor", &anchor]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("record intact"),
        "{}",
        text(&out.stdout)
    );
    // The anchor taken before the tail was cut: entry #9 is gone.
    let out = pocd.poc(&["record", "verify", "--anchor", &format!("9:{}", hash_of(9))]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("RECORD DAMAGED"), "{stdout}");
    assert!(stdout.contains("entry seq 9: anchor mismatch"), "{stdout}");
    // An entry at the anchored seq with another hash: rewritten.
    let out = pocd.poc(&[
        "record",
        "verify",
        "--json",
        "--anchor",
        &format!("3:{}", "ee".repeat(32)),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: RecordVerifyView = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.problems.len(), 1);
    assert_eq!(
        (json.problems[0].seq, json.problems[0].kind.as_str()),
        (3, "anchor mismatch")
    );
    // A malformed anchor is a usage error naming the expected form.
    for bad in ["9", "0:00", &format!("x:{}", hash_of(1)), "2:abc"] {
        let out = pocd.poc(&["record", "verify", "--anchor", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out.stderr).contains("SEQ:HASH"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn record_export_pages_until_empty() {
    // The stand-in answers at most two entries per page, out of five.
    let pocd = FakePocd::start(|request| match request {
        Request::RecordExport { after_seq, .. } => ok((after_seq + 1..=5)
            .take(2)
            .map(|seq| RecordEntryView {
                seq,
                at: Timestamp(seq),
                event: "sent".into(),
                peer: None,
                message_id: None,
                thread_id: None,
                kind: Some("inquiry".into()),
                exercise: None,
                detail: None,
                envelope_hex: None,
                content_hex: Some("00".into()),
                entry_hash: format!("{seq:064x}"),
            })
            .collect::<Vec<_>>()),
        _ => Response::Error(ApiError::new("unexpected", None)),
    });
    let out = pocd.poc(&["record", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let seqs: Vec<u64> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

// ---- CERT formats: IODEF import/export, STIX attachments, TLP (issue 7) ----

fn fixtures() -> Option<PathBuf> {
    poc_interop::shared_fixtures_dir()
        .map_err(|missing| println!("{missing}"))
        .ok()
}

/// The IODEF samples (not the schema), sorted.
fn iodef_samples(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("iodef"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "expected the seven shared IODEF samples");
    files
}

/// A pocd whose thread THREAD is an outgoing inquiry with `body`.
fn pocd_with_inquiry(body: Body, handling: &str) -> FakePocd {
    let handling = handling.to_owned();
    FakePocd::start(move |request| match request {
        Request::Inbox => ok(inbox()),
        Request::Thread { thread } if *thread == THREAD => {
            let mut view = thread_view(true, None);
            view.summary.exercise = None;
            view.messages[0].body = body.clone();
            for m in &mut view.messages {
                m.handling.clone_from(&handling);
                m.language = "en".into();
            }
            ok(view)
        }
        other => Response::Error(ApiError::new(format!("unexpected {other:?}"), None)),
    })
}

#[test]
fn inquire_from_iodef_takes_in_every_sample_and_attaches_it_unchanged() {
    let Some(dir) = fixtures() else { return };
    let pocd = standard(true);
    let samples = iodef_samples(&dir);
    for file in &samples {
        let out = pocd.poc(&[
            "inquire",
            "--to",
            "FRA.cert",
            "--from-iodef",
            file.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
    }
    let sent = pocd.sent();
    assert_eq!(sent.len(), samples.len());
    for (file, request) in samples.iter().zip(&sent) {
        let original = std::fs::read(file).unwrap();
        let expected = poc_interop::iodef::import(&original).unwrap();
        let Body::Inquiry(inquiry) = &request.body else {
            panic!("{}: not an inquiry", file.display())
        };
        // The library's per-file expectations are pinned in poc-interop's
        // tests; here the CLI must carry them over intact.
        assert_eq!(
            inquiry.incident.indicators,
            expected.inquiry.incident.indicators,
            "{}",
            file.display()
        );
        assert_eq!(inquiry.incident.summary, expected.inquiry.incident.summary);
        assert_eq!(request.handling, expected.handling, "{}", file.display());
        let attached: Vec<_> = inquiry
            .attachments
            .iter()
            .filter(|a| matches!(a.content, poc_proto::message::AttachmentContent::Iodef(_)))
            .collect();
        assert_eq!(attached.len(), 1, "{}", file.display());
        assert_eq!(attached[0].content.bytes(), original.as_slice());
        assert_eq!(
            attached[0].name,
            file.file_name().unwrap().to_string_lossy()
        );
    }
    // The DDoS sample names the attacking addresses: spot-check one.
    let ddos = samples
        .iter()
        .position(|p| p.ends_with("GuidanceDraft_DDoS.xml"))
        .unwrap();
    let Body::Inquiry(inquiry) = &sent[ddos].body else {
        unreachable!()
    };
    assert!(!inquiry.incident.indicators.is_empty());
}

#[test]
fn inquire_from_iodef_refuses_what_is_not_iodef() {
    let pocd = standard(true);
    let not_iodef = pocd.dir().join("page.xml");
    std::fs::write(&not_iodef, "<html><body>hello</body></html>").unwrap();
    let out = pocd.poc(&[
        "inquire",
        "--to",
        "FRA.cert",
        "--from-iodef",
        not_iodef.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("not an IODEF 2.0 document"), "{err}");
    assert!(err.contains("<html>"), "{err}");
    let laughs = pocd.dir().join("laughs.xml");
    std::fs::write(
        &laughs,
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><IODEF-Document>&lol2;</IODEF-Document>",
    )
    .unwrap();
    let out = pocd.poc(&[
        "inquire",
        "--to",
        "FRA.cert",
        "--from-iodef",
        laughs.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("DOCTYPE"),
        "{}",
        text(&out.stderr)
    );
    assert!(pocd.sent().is_empty(), "nothing may be sent");
}

const BUNDLE: &str = r#"{"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": [
  {"type": "marking-definition", "spec_version": "2.1", "id": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
   "created": "2022-10-01T00:00:00.000Z", "name": "TLP:AMBER",
   "extensions": {"extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {"extension_type": "property-extension", "tlp_2_0": "amber"}}},
  {"type": "indicator", "spec_version": "2.1", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
   "created": "2026-11-24T22:15:00.000Z", "modified": "2026-11-24T22:15:00.000Z",
   "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"],
   "pattern": "[ipv4-addr:value = '192.0.2.17']", "pattern_type": "stix", "valid_from": "2026-11-24T22:15:00Z"}]}"#;

#[test]
fn attach_stix_checks_the_bundle_and_show_summarises_it() {
    let pocd = standard(true);
    let good = pocd.dir().join("bundle.json");
    std::fs::write(&good, BUNDLE).unwrap();
    let bad = pocd.dir().join("broken.json");
    std::fs::write(
        &bad,
        r#"{"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": [{"type": "indicator"}]}"#,
    )
    .unwrap();

    let out = pocd.poc(&[
        "inquire",
        "--to",
        "FRA.cert",
        "--summary",
        "C2 traffic",
        "--attach-stix",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--attach-stix") && err.contains("object 0"),
        "{err}"
    );
    assert!(pocd.sent().is_empty());

    let out = pocd.poc(&[
        "inquire",
        "--to",
        "FRA.cert",
        "--summary",
        "C2 traffic",
        "--attach-stix",
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let Body::Inquiry(inquiry) = &pocd.sent()[0].body else {
        panic!("not an inquiry")
    };
    assert_eq!(
        inquiry.attachments[0].content,
        poc_proto::message::AttachmentContent::Stix(BUNDLE.as_bytes().to_vec())
    );

    // `poc show` on a thread carrying it: the label first, then the summary.
    let shown = pocd_with_inquiry(Body::Inquiry(inquiry.clone()), "TLP:AMBER");
    let out = shown.poc(&["show", &THREAD.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.starts_with("TLP:AMBER\n"), "{page}");
    assert!(
        page.contains("STIX 2.1 bundle--5d0092c5-5f74-4287-9642-33f4c354e56d: 1 indicator, 1 marking-definition"),
        "{page}"
    );
    assert!(page.contains("marked TLP:AMBER"), "{page}");
    assert!(
        page.contains("indicator [ipv4-addr:value = '192.0.2.17']"),
        "{page}"
    );
}

#[test]
fn export_iodef_of_every_imported_sample_validates_against_the_schema() {
    let Some(dir) = fixtures() else { return };
    if !poc_interop::schema::xmllint_available() {
        println!("xmllint not found (apt-get install libxml2-utils); skipping schema validation");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let schema =
        poc_interop::schema::write_offline(tmp.path(), &dir.join("iodef/iodef-2.0.xsd")).unwrap();
    for file in iodef_samples(&dir) {
        let imported = poc_interop::iodef::import(&std::fs::read(&file).unwrap()).unwrap();
        let label = imported.handling.to_string();
        let pocd = pocd_with_inquiry(Body::Inquiry(imported.inquiry), &label);
        let out_file = tmp.path().join(file.file_name().unwrap());
        let out = pocd.poc(&[
            "export",
            &THREAD.to_string(),
            "--iodef",
            "--out",
            out_file.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).starts_with(&label),
            "the label comes first: {}",
            text(&out.stderr)
        );
        if let Err(why) = poc_interop::schema::validate(&schema, &out_file) {
            panic!("{why}");
        }
        // And what we wrote imports again with the same indicators.
        let again = poc_interop::iodef::import(&std::fs::read(&out_file).unwrap()).unwrap();
        let Body::Inquiry(original) = &pocd_body(&file) else {
            unreachable!()
        };
        // Export groups indicators by IODEF element, so compare as sets.
        let (again, original) = (
            &again.inquiry.incident.indicators,
            &original.incident.indicators,
        );
        assert_eq!(again.len(), original.len(), "{}", file.display());
        for indicator in original {
            assert!(
                again.contains(indicator),
                "{}: lost {indicator:?}",
                file.display()
            );
        }
    }
}

fn pocd_body(file: &Path) -> Body {
    Body::Inquiry(
        poc_interop::iodef::import(&std::fs::read(file).unwrap())
            .unwrap()
            .inquiry,
    )
}

#[test]
fn export_stix_round_trips_the_threads_indicators() {
    let mut inquiry = Inquiry::new_minimal(Text::new("C2 traffic"));
    inquiry.incident.indicators = vec![
        Indicator::Ip(IpAddress::V4([192, 0, 2, 17])),
        Indicator::Domain("c2.example.net".into()),
        Indicator::Url("http://c2.example.net/gate.php".into()),
    ];
    let pocd = pocd_with_inquiry(Body::Inquiry(inquiry.clone()), "TLP:AMBER+STRICT");
    let out = pocd.poc(&["export", &THREAD.to_string()[..8], "--stix"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("TLP:AMBER+STRICT\n"));
    let bundle: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    poc_interop::stix::validate_bundle(&out.stdout).unwrap();
    assert_eq!(
        poc_interop::stix::import_indicators(&bundle),
        inquiry.incident.indicators
    );
    let summary = poc_interop::stix::validate_bundle(&out.stdout).unwrap();
    assert_eq!(summary.tlp, vec![Tlp::AmberStrict]);

    // Neither format, or both: a usage error.
    let out = pocd.poc(&["export", &THREAD.to_string()]);
    assert_eq!(out.status.code(), Some(2));
}
