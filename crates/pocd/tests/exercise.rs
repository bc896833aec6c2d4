//! Simulation exercises end to end: the shipped scenarios run by the real
//! `poc exercise run` against real pocd processes on loopback, compressed in
//! time, and their after-action reports checked against what the nodes
//! recorded; plus the marking rules (an exercise thread cannot be answered
//! as real, real and exercise threads never mix, exercise threads are listed
//! apart, an exercise can be purged after the debrief with the record still
//! verifying).
//!
//! These tests run the built `poc` binary beside `pocd`: build both in the
//! same cargo call (`cargo build --workspace --bins && cargo test -p pocd
//! --test exercise`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod exercise_support;

use std::path::Path;

use common::Cluster;
use exercise_support::{add_manager_node, poc, shipped, text, variant};
use poc_control::{
    ApiError, ClientError, PurgeView, RecordEntryView, RecordVerifyView, Request, SendAccepted,
    SendRequest, ThreadSummary, ThreadView,
};
use poc_exercise::Report;
use poc_proto::message::*;
use poc_proto::{Body, PocId, Role, ThreadId};
use poc_testnet::{Daemon, eventually, now};

/// `poc exercise run SCENARIO` over the cluster's nodes, compressed by
/// `scale`, ending when complete (or at the scenario's end time); its state
/// in the cluster's directory.
fn exercise_run(
    cluster: &Cluster,
    scenario: &Path,
    scale: &str,
    until_complete: bool,
) -> std::process::Command {
    let state = cluster.root.path().join("exercise-state.json");
    let mut command = std::process::Command::new(exercise_support::poc_binary());
    command.env_remove("POC_SOCKET").args([
        "exercise",
        "run",
        scenario.to_str().unwrap(),
        "--nodes-dir",
        cluster.root.path().to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--time-scale",
        scale,
        "--tick-ms",
        "100",
    ]);
    if until_complete {
        command.arg("--until-complete");
    }
    command
}

/// Runs a scenario file with `poc exercise run` and returns the JSON report.
fn run_exercise(cluster: &Cluster, scenario: &Path, scale: &str) -> (Report, String) {
    let state = cluster.root.path().join("exercise-state.json");
    let out = exercise_run(cluster, scenario, scale, true)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "poc exercise run failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    let out = poc(&[
        "exercise",
        "report",
        "--state",
        state.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    (report, stdout)
}

/// EST.cert and FRA.cert, technical PoCs of two States.
fn two_cert_cluster() -> Cluster {
    Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.cert", Role::Technical)],
        &[],
    )
}

fn expectation<'a>(report: &'a Report, id: &str) -> &'a poc_exercise::report::ExpectLine {
    report
        .expectations
        .iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("no expectation {id} in the report"))
}

fn thread(daemon: &Daemon, id: ThreadId) -> ThreadView {
    daemon.call(&Request::Thread { thread: id })
}

fn thread_id(hex: &str) -> ThreadId {
    ThreadId::from_hex(hex).unwrap()
}

fn verify(daemon: &Daemon) -> RecordVerifyView {
    daemon.call(&Request::RecordVerify)
}

/// Every message of the report's timeline is on the nodes of both its
/// parties with the same kind, and carries the exercise marker; every
/// exercise message on the nodes is on the timeline.
fn timeline_matches_the_nodes(report: &Report, daemons: &[(&str, &Daemon)]) {
    let exercise = report.exercise.id.as_str();
    let mut on_nodes = std::collections::BTreeSet::new();
    for (id, daemon) in daemons {
        let threads: Vec<ThreadSummary> = daemon.call(&Request::Inbox);
        for t in threads
            .iter()
            .filter(|t| t.exercise.as_deref() == Some(exercise))
        {
            for m in thread(daemon, t.thread_id).messages {
                assert_eq!(m.exercise.as_deref(), Some(exercise), "{id}: {m:?}");
                on_nodes.insert(m.message_id.to_string());
                let line = report
                    .timeline
                    .iter()
                    .find(|l| l.message == m.message_id.to_string())
                    .unwrap_or_else(|| {
                        panic!(
                            "{id} recorded {} {}, not in the report",
                            m.kind, m.message_id
                        )
                    });
                assert!(line.kind.starts_with(&m.kind), "{line:?} vs {}", m.kind);
                assert_eq!(line.from, m.sender.to_string());
                assert_eq!(line.to, m.recipient.to_string());
            }
        }
    }
    for line in &report.timeline {
        assert!(on_nodes.contains(&line.message), "{line:?} is on no node");
        assert_eq!(line.exercise.as_deref(), Some(exercise));
    }
}

#[test]
fn the_connectivity_drill_runs_end_to_end() {
    let mut cluster = Cluster::new(
        &[
            ("EST.cert", Role::Technical),
            ("EST.mfa", Role::Diplomatic),
            ("FRA.cert", Role::Technical),
            ("FRA.mfa", Role::Diplomatic),
        ],
        &[],
    );
    add_manager_node(&mut cluster, "UNODA.ping");
    let ids = ["UNODA.ping", "EST.cert", "EST.mfa", "FRA.cert", "FRA.mfa"];
    let daemons: Vec<Daemon> = ids.iter().map(|id| cluster.start(id)).collect();

    let (report, stdout) = run_exercise(&cluster, &shipped("connectivity-drill.toml"), "3600");
    assert!(
        stdout.contains("*** EXERCISE DRILL-PING-1 — NOT A REAL INCIDENT ***"),
        "{stdout}"
    );
    assert_eq!(report.exercise.status, "finished");
    assert_eq!(report.injects.len(), 1);
    assert_eq!(report.injects[0].outcome, "sent");
    assert_eq!(report.injects[0].messages.len(), 4);
    assert_eq!(report.expectations.len(), 4);
    for e in &report.expectations {
        assert_eq!(e.outcome, "met", "{e:?}");
        assert!(e.response_s.unwrap() <= e.within_s, "{e:?}");
    }
    assert_eq!(
        (report.totals.met, report.totals.late, report.totals.missed),
        (4, 0, 0)
    );
    // Each PoC's own node recorded the ping reply the report credits it with.
    for (id, daemon) in ids.iter().zip(&daemons).skip(1) {
        let e = report.expectations.iter().find(|e| e.poc == *id).unwrap();
        let threads: Vec<ThreadSummary> = daemon.call(&Request::Inbox);
        let ping = threads
            .iter()
            .find(|t| t.exercise.as_deref() == Some("DRILL-PING-1"))
            .unwrap();
        let view = thread(daemon, ping.thread_id);
        let reply = view
            .messages
            .iter()
            .find(|m| m.kind == "ping reply")
            .unwrap();
        assert_eq!(reply.direction, "sent");
        assert_eq!(
            e.message.as_deref(),
            Some(reply.message_id.to_string().as_str())
        );
    }
    let pairs: Vec<(&str, &Daemon)> = ids.iter().copied().zip(&daemons).collect();
    timeline_matches_the_nodes(&report, &pairs);
    // Per State: EST and FRA each met both of theirs.
    for state in ["EST", "FRA"] {
        let g = report.per_state.iter().find(|g| g.group == state).unwrap();
        assert_eq!((g.expected, g.met), (2, 2), "{g:?}");
    }
}

#[test]
fn a_node_that_does_not_answer_pings_itself_is_answered_by_its_scripted_player() {
    let mut cluster = Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.mfa", Role::Diplomatic)],
        &[],
    );
    add_manager_node(&mut cluster, "UNODA.ping");
    // FRA.mfa's operator acknowledges pings by hand: its node does not.
    let config = cluster.poc("FRA.mfa").node.config();
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str("\n[pings]\nauto_reply = false\n");
    std::fs::write(&config, text_config).unwrap();
    let ids = ["UNODA.ping", "EST.cert", "FRA.mfa"];
    let daemons: Vec<Daemon> = ids.iter().map(|id| cluster.start(id)).collect();
    // The drill for these two PoCs; FRA.mfa's player takes 10 hours.
    let file = variant(
        cluster.root.path(),
        "connectivity-drill.toml",
        &[
            (
                "to = [\"est-cert\", \"est-mfa\", \"fra-cert\", \"fra-mfa\"]",
                "to = [\"est-cert\", \"fra-mfa\"]",
            ),
            (
                "poc = \"FRA.mfa\"\nrole = \"diplomatic\"\nplayer = \"automated\"",
                "poc = \"FRA.mfa\"\nrole = \"diplomatic\"\nplayer = \"automated\"\ndelay = \"10h\"",
            ),
        ],
    );
    // Drop the participants and expectations that are not in this cluster.
    let text_scenario = std::fs::read_to_string(&file).unwrap();
    let kept: Vec<&str> = text_scenario
        .split("\n[[")
        .filter(|block| !block.contains("\"est-mfa\"") && !block.contains("\"fra-cert\""))
        .collect();
    std::fs::write(&file, kept.join("\n[[")).unwrap();

    let (report, stdout) = run_exercise(&cluster, &file, "3600");
    let est = expectation(&report, "ACK-EST-CERT");
    let fra = expectation(&report, "ACK-FRA-MFA");
    assert_eq!(
        (est.outcome.as_str(), fra.outcome.as_str()),
        ("met", "met"),
        "{stdout}"
    );
    // EST's node answered at once; FRA's player after its 10 hours.
    assert!(est.response_s.unwrap() < 3 * 3600, "{est:?}");
    assert!(fra.response_s.unwrap() >= 10 * 3600, "{fra:?}");
    assert!(
        stdout.contains("ACK-FRA-MFA for fra-mfa (automated) sends a ping-reply"),
        "{stdout}"
    );
    let pairs: Vec<(&str, &Daemon)> = ids.iter().copied().zip(&daemons).collect();
    timeline_matches_the_nodes(&report, &pairs);
}

#[test]
fn the_technical_inquiry_runs_end_to_end_with_the_iodef_report_attached() {
    let cluster = two_cert_cluster();
    let est = cluster.start("EST.cert");
    let fra = cluster.start("FRA.cert");
    let scenario = shipped("technical-inquiry.toml");
    let (report, stdout) = run_exercise(&cluster, &scenario, "300");
    assert!(stdout.contains("EXERCISE DRILL-TECH-1"), "{stdout}");
    for id in ["RECEIPT", "ETA", "RESULT", "CLOSE"] {
        let e = expectation(&report, id);
        assert_eq!(e.outcome, "met", "{e:?}\n{stdout}");
        assert!(e.done_s.unwrap() <= e.deadline_s.unwrap(), "{e:?}");
    }
    // FRA took its scripted 20 minutes for the ETA (scenario time, give or
    // take the one-second resolution of the records at 300x).
    let eta = expectation(&report, "ETA");
    assert!(
        (15 * 60..=35 * 60).contains(&eta.response_s.unwrap()),
        "{eta:?}"
    );

    // What the nodes recorded is what the report says.
    let inject = &report.injects[0];
    assert_eq!(inject.outcome, "sent");
    let inquiry_line = report
        .timeline
        .iter()
        .find(|l| l.inject.as_deref() == Some("INQ"))
        .unwrap();
    let at_fra = thread(&fra, thread_id(&inquiry_line.thread));
    let kinds: Vec<(String, String)> = at_fra
        .messages
        .iter()
        .map(|m| (m.direction.clone(), m.kind.clone()))
        .collect();
    for expected in [
        ("received", "inquiry"),
        ("sent", "receipt"),
        ("sent", "response"),
        ("sent", "follow-up"),
        ("received", "close"),
    ] {
        assert!(
            kinds.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} not in {kinds:?}"
        );
    }
    assert!(
        at_fra.summary.state.starts_with("closed"),
        "{}",
        at_fra.summary.state
    );
    // The IODEF report arrived byte for byte.
    let Body::Inquiry(inquiry) = &at_fra.messages[0].body else {
        panic!("not an inquiry: {:?}", at_fra.messages[0].body)
    };
    let original = std::fs::read(
        scenario
            .parent()
            .unwrap()
            .join("attachments/GuidanceDraft_DDoS.xml"),
    )
    .unwrap();
    assert_eq!(inquiry.attachments.len(), 1);
    assert!(
        matches!(&inquiry.attachments[0].content, AttachmentContent::Iodef(b) if *b == original)
    );
    timeline_matches_the_nodes(&report, &[("EST.cert", &est), ("FRA.cert", &fra)]);

    // The report's JSON lists every inject and expected action with an outcome.
    let state = cluster.root.path().join("exercise-state.json");
    let json = poc(&[
        "exercise",
        "report",
        "--state",
        state.to_str().unwrap(),
        "--json",
    ]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["injects"].as_array().unwrap().len(), 1);
    assert_eq!(value["expectations"].as_array().unwrap().len(), 4);
    for item in value["injects"]
        .as_array()
        .unwrap()
        .iter()
        .chain(value["expectations"].as_array().unwrap())
    {
        assert!(item["outcome"].is_string(), "{item}");
    }
    // Markdown and HTML carry the banner; the HTML embeds the SVG chart.
    let md = text(&poc(&["exercise", "report", "--state", state.to_str().unwrap()]).stdout);
    assert!(
        md.contains("*** EXERCISE DRILL-TECH-1 — NOT A REAL INCIDENT ***"),
        "{md}"
    );
    assert!(md.contains("| ETA |"), "{md}");
    let html = text(
        &poc(&[
            "exercise",
            "report",
            "--state",
            state.to_str().unwrap(),
            "--format",
            "html",
        ])
        .stdout,
    );
    assert!(html.contains("<svg"), "no chart");
    assert!(html.contains("EXERCISE DRILL-TECH-1"));
    // `status` shows the finished exercise.
    let status = text(&poc(&["exercise", "status", "--state", state.to_str().unwrap()]).stdout);
    assert!(
        status.contains("finished") && status.contains("4 met"),
        "{status}"
    );

    // The node lists the exercise thread apart from real ones.
    let real = est.call::<SendAccepted>(&Request::Send(Box::new(SendRequest::new(
        PocId::new("FRA.cert").unwrap(),
        Handling::Confidential,
        Body::Inquiry(Inquiry::new_minimal(Text::new("A real phishing wave"))),
    ))));
    let inbox = poc(&["--socket", est.socket().to_str().unwrap(), "inbox"]);
    let inbox = text(&inbox.stdout);
    let heading = inbox
        .find("=== EXERCISE THREADS")
        .unwrap_or_else(|| panic!("{inbox}"));
    let real_at = inbox.find(&real.thread_id.to_string()).unwrap();
    let exercise_at = inbox.find(&inquiry_line.thread).unwrap();
    assert!(real_at < heading && heading < exercise_at, "{inbox}");
    let exercise_line = inbox[exercise_at..].lines().next().unwrap();
    assert!(
        exercise_line.contains("*** EXERCISE DRILL-TECH-1"),
        "{exercise_line}"
    );
    // `poc outbox` lists threads by id: exercise lines carry the banner,
    // the real one does not.
    let outbox = text(&poc(&["--socket", est.socket().to_str().unwrap(), "outbox"]).stdout);
    for line in outbox.lines().skip(1) {
        let is_exercise = line.contains(&inquiry_line.thread);
        assert_eq!(
            line.contains("*** EXERCISE DRILL-TECH-1"),
            is_exercise,
            "{outbox}"
        );
    }
    assert!(outbox.contains(&real.thread_id.to_string()), "{outbox}");
}

#[test]
fn a_deliberately_late_participant_shows_late_in_the_report() {
    let cluster = two_cert_cluster();
    let _est = cluster.start("EST.cert");
    let _fra = cluster.start("FRA.cert");
    // The shipped scenario, with B's CERT taking 2h15m per step: its ETA
    // (due within 2h) and result (due 1h after the ETA) come late. Run at
    // 600x, so the receipt's deadline is doubled to stay a few real seconds.
    let file = variant(
        cluster.root.path(),
        "technical-inquiry.toml",
        &[
            ("delay = \"20m\"", "delay = \"2h15m\""),
            ("within = \"15m\"", "within = \"30m\""),
        ],
    );
    let (report, stdout) = run_exercise(&cluster, &file, "600");
    assert_eq!(expectation(&report, "RECEIPT").outcome, "met", "{stdout}");
    for id in ["ETA", "RESULT"] {
        let e = expectation(&report, id);
        assert_eq!(e.outcome, "late", "{e:?}\n{stdout}");
        assert!(e.done_s.unwrap() > e.deadline_s.unwrap(), "{e:?}");
        assert!(e.response_s.unwrap() > e.within_s, "{e:?}");
    }
    assert_eq!(expectation(&report, "CLOSE").outcome, "met");
    let fra = report.per_state.iter().find(|g| g.group == "FRA").unwrap();
    assert_eq!((fra.met, fra.late), (1, 2), "{fra:?}");
    let md = report_markdown(&cluster);
    assert!(md.contains("| LATE |"), "{md}");
}

#[test]
fn an_exercise_ends_at_its_end_time_and_what_nobody_did_is_missed() {
    let cluster = two_cert_cluster();
    let _est = cluster.start("EST.cert");
    let _fra = cluster.start("FRA.cert");
    // B's CERT is a human player who never acts; the exercise lasts 1 hour.
    let file = variant(
        cluster.root.path(),
        "technical-inquiry.toml",
        &[
            (
                "player = \"automated\"\ndelay = \"20m\"",
                "player = \"human\"",
            ),
            ("duration = \"6h\"", "duration = \"1h\""),
            ("within = \"15m\"", "within = \"30m\""),
        ],
    );
    let state = cluster.root.path().join("exercise-state.json");
    let started = std::time::Instant::now();
    // Without --until-complete: the run goes to its end time (6 s at 600x).
    let out = exercise_run(&cluster, &file, "600", false)
        .output()
        .unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(5),
        "ended early"
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ACTION ETA for fra-cert"), "{stdout}");
    assert!(stdout.contains("exercise ended at T+1h"), "{stdout}");
    let report: Report = serde_json::from_slice(
        &poc(&[
            "exercise",
            "report",
            "--state",
            state.to_str().unwrap(),
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(report.exercise.status, "finished");
    assert_eq!(expectation(&report, "RECEIPT").outcome, "met");
    assert_eq!(expectation(&report, "ETA").outcome, "missed");
    for id in ["RESULT", "CLOSE"] {
        assert_eq!(expectation(&report, id).outcome, "not reached", "{id}");
    }
    assert_eq!((report.totals.met, report.totals.missed), (1, 3));
}

fn report_markdown(cluster: &Cluster) -> String {
    let state = cluster.root.path().join("exercise-state.json");
    text(&poc(&["exercise", "report", "--state", state.to_str().unwrap()]).stdout)
}

#[test]
fn the_urgent_incident_runs_end_to_end_with_diplomatic_engagement_and_hand_back() {
    let cluster = Cluster::new(
        &[
            ("EST.cert", Role::Technical),
            ("EST.mfa", Role::Diplomatic),
            ("FRA.cert", Role::Technical),
            ("FRA.mfa", Role::Diplomatic),
        ],
        &[],
    );
    let ids = ["EST.cert", "EST.mfa", "FRA.cert", "FRA.mfa"];
    let daemons: Vec<Daemon> = ids.iter().map(|id| cluster.start(id)).collect();
    let (report, stdout) = run_exercise(&cluster, &shipped("urgent-incident.toml"), "300");
    for e in &report.expectations {
        assert_eq!(e.outcome, "met", "{e:?}\n{stdout}");
    }
    for i in &report.injects {
        assert_eq!(i.outcome, "sent", "{i:?}");
    }
    // The order of the story: the stall (chase), then the diplomats, then
    // the technical answer, then the diplomats hand back.
    let at = |id: &str| expectation(&report, id).done_s.unwrap();
    let chase = report
        .injects
        .iter()
        .find(|i| i.id == "CHASE")
        .unwrap()
        .actual_s
        .unwrap();
    assert!(chase < at("DIPLO-ANSWER"));
    assert!(at("DIPLO-ANSWER") <= at("TECH-ANSWER"));
    assert!(at("TECH-ANSWER") <= at("HAND-BACK"));
    // The technical answer is on the technical thread, the hand-back closes
    // the diplomatic one.
    let tech = report
        .timeline
        .iter()
        .find(|l| l.inject.as_deref() == Some("TECH-INQ"))
        .unwrap();
    let diplo = report
        .timeline
        .iter()
        .find(|l| l.inject.as_deref() == Some("DIPLO-INQ"))
        .unwrap();
    let answer = report
        .timeline
        .iter()
        .find(|l| l.fulfils.contains(&"TECH-ANSWER".to_owned()))
        .unwrap();
    assert_eq!(answer.thread, tech.thread);
    let at_est_mfa = thread(&daemons[1], thread_id(&diplo.thread));
    assert!(
        at_est_mfa.summary.state.starts_with("closed"),
        "{}",
        at_est_mfa.summary.state
    );
    for role in ["technical", "diplomatic"] {
        let g = report.per_role.iter().find(|g| g.group == role).unwrap();
        assert!(g.expected >= 2 && g.met == g.expected, "{g:?}");
    }
    let pairs: Vec<(&str, &Daemon)> = ids.iter().copied().zip(&daemons).collect();
    timeline_matches_the_nodes(&report, &pairs);
}

fn send_raw(daemon: &Daemon, request: SendRequest) -> Result<SendAccepted, ApiError> {
    match daemon
        .client()
        .call::<SendAccepted>(&Request::Send(Box::new(request)))
    {
        Ok(a) => Ok(a),
        Err(ClientError::Api(e)) => Err(e),
        Err(e) => panic!("{e}"),
    }
}

fn request(to: &str, thread: Option<ThreadId>, exercise: Option<&str>, body: Body) -> SendRequest {
    SendRequest {
        thread,
        exercise: exercise.map(|e| ExerciseId(e.into())),
        ..SendRequest::new(PocId::new(to).unwrap(), Handling::Confidential, body)
    }
}

fn answer(text: &str) -> Body {
    Body::Response(Response {
        outcome: ResponseOutcome::Immediate {
            answer: Text::new(text),
        },
        channel: None,
        lead_agency: None,
        attachments: vec![],
    })
}

#[test]
fn exercise_and_real_threads_never_mix() {
    let cluster = two_cert_cluster();
    let est = cluster.start("EST.cert");
    let fra = cluster.start("FRA.cert");
    let drill = send_raw(
        &est,
        request(
            "FRA.cert",
            None,
            Some("CYBEX-1"),
            Body::Inquiry(Inquiry::new_minimal(Text::new("Exercise DDoS"))),
        ),
    )
    .unwrap();
    let real = send_raw(
        &est,
        request(
            "FRA.cert",
            None,
            None,
            Body::Inquiry(Inquiry::new_minimal(Text::new("Real phishing"))),
        ),
    )
    .unwrap();
    eventually("both inquiries at FRA", || {
        let threads: Vec<ThreadSummary> = fra.call(&Request::Inbox);
        (threads.len() == 2).then_some(())
    });

    // FRA's node refuses to answer the exercise as real, to put an exercise
    // marker on the real thread, or to mix two exercises.
    for (thread, marker) in [
        (drill.thread_id, None),
        (real.thread_id, Some("CYBEX-1")),
        (drill.thread_id, Some("OTHER-EXERCISE")),
    ] {
        let err =
            send_raw(&fra, request("EST.cert", Some(thread), marker, answer("x"))).unwrap_err();
        assert!(err.message.contains("exercise marker mismatch"), "{err}");
    }
    // With the right marker it goes.
    send_raw(
        &fra,
        request(
            "EST.cert",
            Some(drill.thread_id),
            Some("CYBEX-1"),
            answer("exercise answer"),
        ),
    )
    .unwrap();

    // A peer that builds a real answer to the exercise itself (signed with
    // FRA's own key, so it opens) is refused by EST's node and recorded.
    let forged = Message {
        header: Header {
            sender: PocId::new("FRA.cert").unwrap(),
            recipient: PocId::new("EST.cert").unwrap(),
            message_id: MessageId([0x5a; 16]),
            thread_id: drill.thread_id,
            in_reply_to: Some(drill.message_id),
            created_at: now(),
            language: Language::English,
            handling: Handling::Confidential,
            exercise: None,
        },
        body: answer("taken as real"),
    };
    let envelope = cluster.seal(&forged);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ack = runtime.block_on(async {
        let conn = cluster.raw_client("FRA.cert", "EST.cert").await;
        conn.request(&envelope).await.unwrap()
    });
    let code = poc_proto::RejectCode::ExerciseMismatch
        .as_u16()
        .to_be_bytes();
    assert_eq!(ack, vec![1, code[0], code[1]]);
    let entries: Vec<RecordEntryView> = est.call(&Request::RecordExport {
        after_seq: 0,
        limit: 1000,
    });
    let refused = entries
        .iter()
        .find(|e| e.event == "rejected" && e.message_id == Some(MessageId([0x5a; 16])))
        .expect("the refusal is recorded");
    assert!(
        refused
            .detail
            .as_deref()
            .unwrap()
            .contains("exercise marker mismatch"),
        "{refused:?}"
    );
    let view = thread(&est, drill.thread_id);
    assert!(
        view.messages
            .iter()
            .all(|m| m.exercise.as_deref() == Some("CYBEX-1"))
    );
    assert!(
        !view
            .messages
            .iter()
            .any(|m| m.message_id == MessageId([0x5a; 16]))
    );
    assert!(verify(&est).problems.is_empty());
}

#[test]
fn an_exercise_is_purged_after_the_debrief_and_the_record_still_verifies() {
    let cluster = two_cert_cluster();
    let est = cluster.start("EST.cert");
    let fra = cluster.start("FRA.cert");
    let secret = "EXERCISE-CANARY-7f3a";
    let drill = send_raw(
        &est,
        request(
            "FRA.cert",
            None,
            Some("CYBEX-2"),
            Body::Inquiry(Inquiry::new_minimal(Text::new(secret))),
        ),
    )
    .unwrap();
    let real = send_raw(
        &est,
        request(
            "FRA.cert",
            None,
            None,
            Body::Inquiry(Inquiry::new_minimal(Text::new("Real incident"))),
        ),
    )
    .unwrap();
    eventually("receipts at EST", || {
        let t = thread(&est, drill.thread_id);
        let r = thread(&est, real.thread_id);
        (t.messages.len() == 2 && r.messages.len() == 2).then_some(())
    });

    let socket = est.socket().to_str().unwrap().to_owned();
    let out = poc(&[
        "--socket", &socket, "exercise", "purge", "CYBEX-2", "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let purged: PurgeView = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(purged.purged_entries, 2, "{purged:?}");
    assert_eq!(purged.threads_forgotten, 1);

    // The chain verifies, through `poc record verify` too.
    assert!(verify(&est).problems.is_empty(), "{:?}", verify(&est));
    let out = poc(&["--socket", &socket, "record", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // The exercise content is gone from the record, the purge is recorded,
    // the real thread is untouched.
    let entries: Vec<RecordEntryView> = est.call(&Request::RecordExport {
        after_seq: 0,
        limit: 1000,
    });
    let purge = entries.iter().find(|e| e.event == "purge").unwrap();
    assert_eq!(purge.exercise.as_deref(), Some("CYBEX-2"));
    for e in entries
        .iter()
        .filter(|e| e.exercise.as_deref() == Some("CYBEX-2") && e.event != "purge")
    {
        assert!(e.content_hex.is_none() && e.envelope_hex.is_none(), "{e:?}");
    }
    let threads: Vec<ThreadSummary> = est.call(&Request::Inbox);
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].thread_id, real.thread_id);
    let db = std::fs::read(cluster.poc("EST.cert").node.database()).unwrap();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "exercise content left in the database"
    );
    // FRA's record still has it until FRA purges too.
    assert_eq!(thread(&fra, drill.thread_id).messages.len(), 2);
}

#[test]
fn a_human_player_is_told_what_to_do_and_status_shows_progress_live() {
    let cluster = two_cert_cluster();
    let _est = cluster.start("EST.cert");
    let fra = cluster.start("FRA.cert");
    // The shipped technical inquiry with B's CERT played by a person (this
    // test, through the real `poc` CLI).
    let file = variant(
        cluster.root.path(),
        "technical-inquiry.toml",
        &[(
            "player = \"automated\"\ndelay = \"20m\"",
            "player = \"human\"",
        )],
    );
    let state = cluster.root.path().join("exercise-state.json");
    let controller = exercise_run(&cluster, &file, "300", true)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // The inquiry arrives at FRA; the player answers with the CLI.
    let socket = fra.socket().to_str().unwrap().to_owned();
    let drill = eventually("the exercise inquiry at FRA", || {
        let threads: Vec<ThreadSummary> = fra.call(&Request::Inbox);
        threads
            .into_iter()
            .find(|t| t.exercise.as_deref() == Some("DRILL-TECH-1"))
    });
    // Live status while the exercise runs.
    let status = eventually("a live status", || {
        let out = poc(&["exercise", "status", "--state", state.to_str().unwrap()]);
        let s = text(&out.stdout);
        (s.contains("running") && s.contains("SENT")).then_some(s)
    });
    assert!(
        status.contains("*** EXERCISE DRILL-TECH-1 — NOT A REAL INCIDENT ***"),
        "{status}"
    );
    // A watcher follows it to the end on its own.
    let watcher = std::process::Command::new(exercise_support::poc_binary())
        .args([
            "exercise",
            "status",
            "--watch",
            "1",
            "--state",
            state.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let thread_hex = drill.thread_id.to_string();
    let out = poc(&[
        "--socket",
        &socket,
        "respond",
        &thread_hex,
        "--will-follow-up",
        "--eta",
        "1h",
        "--note",
        "Looking",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("EXERCISE DRILL-TECH-1"),
        "{}",
        text(&out.stdout)
    );
    let out = poc(&[
        "--socket",
        &socket,
        "follow-up",
        &thread_hex,
        "--text",
        "Resolvers notified",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let output = controller.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let watched = watcher.wait_with_output().unwrap();
    let watched = text(&watched.stdout);
    let running = watched
        .find(": running, at")
        .unwrap_or_else(|| panic!("{watched}"));
    let finished = watched
        .find(": finished, at")
        .unwrap_or_else(|| panic!("{watched}"));
    assert!(running < finished, "{watched}");
    // The controller told the human player what was expected of them.
    assert!(
        stdout.contains(
            "ACTION ETA for fra-cert (FRA.cert, FRA technical, human player): send a response-eta"
        ),
        "{stdout}"
    );
    let report: Report = serde_json::from_slice(
        &poc(&[
            "exercise",
            "report",
            "--state",
            state.to_str().unwrap(),
            "--json",
        ])
        .stdout,
    )
    .unwrap();
    for id in ["RECEIPT", "ETA", "RESULT", "CLOSE"] {
        assert_eq!(expectation(&report, id).outcome, "met", "{id}: {stdout}");
    }
    // What the player sent through `poc` carries the marker on FRA's node.
    let view = thread(&fra, drill.thread_id);
    assert!(
        view.messages
            .iter()
            .all(|m| m.exercise.as_deref() == Some("DRILL-TECH-1"))
    );
    let show = text(&poc(&["--socket", &socket, "show", &thread_hex]).stdout);
    assert!(
        show.starts_with("*** EXERCISE DRILL-TECH-1 — NOT A REAL INCIDENT ***"),
        "{show}"
    );
}
