//! The evaluation and the after-action report, from a hand-made run log
//! (pure: no nodes, no clock).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use poc_exercise::report::{self, Report};
use poc_exercise::run::{InjectRecord, InjectSend, ObservedMessage, Outcome, RunLog};
use poc_exercise::scenario::{InjectMode, Scenario};
use poc_proto::{MessageId, PocId, ThreadId};

const SCENARIO: &str = r#"
[exercise]
id = "DRILL-<b>"
title = "Report <test> & co"
duration = "6h"
time_scale = 60

[[participant]]
name = "a"
poc = "EST.cert"
role = "technical"

[[participant]]
name = "b"
poc = "FRA.cert"
role = "technical"
player = "automated"
delay = "10m"

[[participant]]
name = "d"
poc = "FRA.mfa"
role = "diplomatic"

[[inject]]
id = "INQ"
at = "T+0"
from = "a"
to = "b"
kind = "inquiry"
summary = "s"

[[inject]]
id = "LATER"
at = "T+5h"
from = "a"
to = "b"
kind = "follow-up"
thread = "INQ"
text = "t"

[[expect]]
id = "RECEIPT"
who = "b"
kind = "receipt"
after = "INQ"
within = "15m"

[[expect]]
id = "ETA"
who = "b"
kind = "response-eta"
after = "INQ"
within = "1h"
eta = "1h"

[[expect]]
id = "RESULT"
who = "b"
kind = "follow-up"
after = "ETA"
within = "1h"

[[expect]]
id = "CLOSE"
who = "a"
kind = "close"
after = "RESULT"
within = "1h"

[[expect]]
id = "NEVER"
who = "d"
kind = "inquiry"
to = "a"
after = "LATER"
within = "1h"
"#;

fn scenario() -> Scenario {
    // The ids here are only for the HTML escaping test; a real exercise id
    // may not contain < or >, so take the validated one and put it back.
    let text = SCENARIO.replace("DRILL-<b>", "DRILL-B");
    let mut s = Scenario::from_toml(&text, Path::new(".")).unwrap();
    s.id = "DRILL-<b>".into();
    s
}

const T0: u64 = 1_800_000_000_000;
const THREAD: ThreadId = ThreadId([7; 16]);

fn poc(id: &str) -> PocId {
    PocId::new(id).unwrap()
}

fn message(
    n: u8,
    kind: &str,
    detail: Option<&str>,
    from: &str,
    to: &str,
    at_s: u64,
) -> ObservedMessage {
    // At 60x, a scenario minute is a real second.
    let ms = T0 + at_s * 1000 / 60;
    ObservedMessage {
        message_id: MessageId([n; 16]),
        thread_id: THREAD,
        kind: kind.into(),
        detail: detail.map(str::to_owned),
        campaign: None,
        from: poc(from),
        to: poc(to),
        exercise: Some("DRILL-<b>".into()),
        sent_ms: Some(ms),
        received_ms: Some(ms + 50),
    }
}

/// Inquiry at T+0; receipt at 1 min (met); ETA at 90 min (late: due in
/// 1 h); result 30 min after the ETA (met); no close; the follow-up inject
/// at T+5h fired, the diplomat never writes.
fn log(ended: bool) -> RunLog {
    let mut log = RunLog::new(scenario(), T0);
    log.injects.push(InjectRecord {
        inject: "INQ".into(),
        at_ms: T0,
        mode: InjectMode::Send,
        sends: vec![InjectSend {
            to: "b".into(),
            message_id: Some(MessageId([1; 16])),
            thread_id: Some(THREAD),
            error: None,
        }],
    });
    for m in [
        message(1, "inquiry", None, "EST.cert", "FRA.cert", 0),
        message(2, "receipt", None, "FRA.cert", "EST.cert", 60),
        message(3, "response", Some("eta"), "FRA.cert", "EST.cert", 90 * 60),
        message(4, "receipt", None, "EST.cert", "FRA.cert", 90 * 60 + 2),
        message(5, "follow-up", None, "FRA.cert", "EST.cert", 120 * 60),
    ] {
        log.observe(m);
    }
    log.injects.push(InjectRecord {
        inject: "LATER".into(),
        at_ms: T0 + 5 * 3600 * 1000 / 60,
        mode: InjectMode::Send,
        sends: vec![InjectSend {
            to: "b".into(),
            message_id: None,
            thread_id: Some(THREAD),
            error: Some("pocd refused: FRA.cert is not in the directory".into()),
        }],
    });
    if ended {
        log.ended_ms = Some(T0 + 6 * 3600 * 1000 / 60);
    }
    log
}

fn outcome(report: &Report, id: &str) -> String {
    report
        .expectations
        .iter()
        .find(|e| e.id == id)
        .unwrap()
        .outcome
        .clone()
}

#[test]
fn expected_actions_are_met_late_missed_or_open() {
    // Half-way through the ETA's hour, nothing late yet.
    let live = log(false).evaluate(T0 + 30 * 1000);
    assert_eq!(live.expectations[0].outcome, Outcome::Met);
    // ETA was found (at 90 min) even though "now" is earlier: the log holds it.
    assert_eq!(live.expectations[1].outcome, Outcome::Late);

    let mut early = log(false);
    early
        .messages
        .retain(|m| m.kind == "inquiry" || m.kind == "receipt");
    let eval = early.evaluate(T0 + 30 * 1000);
    assert_eq!(eval.expectations[1].outcome, Outcome::Pending);
    assert_eq!(eval.expectations[2].outcome, Outcome::Waiting);
    let eval = early.evaluate(T0 + 61 * 1000);
    assert_eq!(eval.expectations[1].outcome, Outcome::Overdue);

    let done = log(true);
    let r = report::build(&done, 0);
    assert_eq!(outcome(&r, "RECEIPT"), "met");
    assert_eq!(outcome(&r, "ETA"), "late");
    assert_eq!(outcome(&r, "RESULT"), "met");
    assert_eq!(outcome(&r, "CLOSE"), "missed");
    assert_eq!(outcome(&r, "NEVER"), "not reached");
    let eta = r.expectations.iter().find(|e| e.id == "ETA").unwrap();
    assert_eq!(eta.response_s, Some(90 * 60));
    assert_eq!(eta.deadline_s, Some(3600));
    assert_eq!(eta.done_s, Some(90 * 60));
    let result = r.expectations.iter().find(|e| e.id == "RESULT").unwrap();
    assert_eq!(result.anchor_s, Some(90 * 60));
    assert_eq!(result.response_s, Some(30 * 60));
    // The receipt of the ETA response is EST's, not FRA's: not mistaken for
    // anything FRA owed.
    assert_eq!(r.timeline.len(), 5);
    assert_eq!(r.timeline[1].fulfils, vec!["RECEIPT".to_owned()]);
    assert_eq!(r.timeline[0].inject.as_deref(), Some("INQ"));
    assert_eq!(r.timeline[0].delivery_s, Some(3));
}

#[test]
fn the_report_summarises_per_state_and_role_and_lists_every_step() {
    let r = report::build(&log(true), 0);
    let fra = r.per_state.iter().find(|g| g.group == "FRA").unwrap();
    assert_eq!((fra.expected, fra.met, fra.late, fra.missed), (4, 2, 1, 1));
    let est = r.per_state.iter().find(|g| g.group == "EST").unwrap();
    assert_eq!((est.expected, est.missed, est.messages_sent), (1, 1, 2));
    let diplomatic = r.per_role.iter().find(|g| g.group == "diplomatic").unwrap();
    assert_eq!((diplomatic.expected, diplomatic.missed), (1, 1));
    assert_eq!((r.totals.met, r.totals.late, r.totals.missed), (2, 1, 2));
    // Injects: the failed one says why.
    assert_eq!(r.injects[0].outcome, "sent");
    assert_eq!(r.injects[1].outcome, "failed");
    assert!(r.injects[1].errors[0].contains("not in the directory"));

    // JSON: every inject and every expected action, each with its outcome.
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    let injects = json["injects"].as_array().unwrap();
    let expectations = json["expectations"].as_array().unwrap();
    assert_eq!(injects.len(), 2);
    assert_eq!(expectations.len(), 5);
    for item in injects.iter().chain(expectations) {
        assert!(!item["outcome"].as_str().unwrap().is_empty(), "{item}");
    }
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}

#[test]
fn markdown_and_html_carry_the_banner_and_the_chart() {
    let r = report::build(&log(true), 0);
    let md = report::markdown(&r);
    assert!(
        md.starts_with("*** EXERCISE DRILL-<b> — NOT A REAL INCIDENT ***\n"),
        "{md}"
    );
    assert!(
        md.trim_end()
            .ends_with("*** EXERCISE DRILL-<b> — NOT A REAL INCIDENT ***"),
        "{md}"
    );
    assert!(md.contains("| ETA |"), "{md}");
    assert!(md.contains("LATE"), "{md}");
    assert!(md.contains("## Per State"), "{md}");

    let html = report::html(&r);
    assert!(html.contains("<svg"), "no chart");
    // Text from the scenario is escaped everywhere.
    assert!(!html.contains("DRILL-<b>"), "unescaped");
    assert!(html.contains("DRILL-&lt;b&gt;"));
    assert!(html.contains("Report &lt;test&gt; &amp; co"));
    assert!(html.contains("class=\"late\""));
    // The chart has one bar per settled step (4 of 5: NEVER was not reached)
    // and a deadline tick for each.
    let svg_start = html.find("<svg").unwrap();
    let svg = &html[svg_start..html.find("</svg>").unwrap()];
    assert!(svg.contains("ETA b late"), "{svg}");
    assert!(!svg.contains("NEVER"), "{svg}");
}

#[test]
fn the_state_file_round_trips() {
    let log = log(true);
    let json = serde_json::to_vec(&log).unwrap();
    let back: RunLog = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, log);
}

#[test]
fn an_instructed_inject_counts_once_the_player_sends_it() {
    let text = SCENARIO.replace("DRILL-<b>", "DRILL-B").replace(
        "kind = \"inquiry\"\nsummary",
        "kind = \"inquiry\"\nmode = \"instruct\"\nsummary",
    );
    let scenario = Scenario::from_toml(&text, Path::new(".")).unwrap();
    assert_eq!(scenario.injects[0].mode, InjectMode::Instruct);
    let mut log = RunLog::new(scenario, T0);
    log.injects.push(InjectRecord {
        inject: "INQ".into(),
        at_ms: T0,
        mode: InjectMode::Instruct,
        sends: vec![InjectSend {
            to: "b".into(),
            message_id: None,
            thread_id: None,
            error: None,
        }],
    });
    // Told, not yet done: what follows it waits.
    let eval = log.evaluate(T0 + 1000);
    assert_eq!(
        eval.injects[0].outcome,
        poc_exercise::run::InjectOutcome::Instructed
    );
    assert_eq!(eval.expectations[0].outcome, Outcome::Waiting);
    // The player sends it 10 scenario minutes later; the receipt follows.
    log.observe(message(1, "inquiry", None, "EST.cert", "FRA.cert", 600));
    log.observe(message(2, "receipt", None, "FRA.cert", "EST.cert", 660));
    let eval = log.evaluate(T0 + 20 * 1000);
    assert_eq!(
        eval.injects[0].outcome,
        poc_exercise::run::InjectOutcome::Performed
    );
    assert_eq!(eval.injects[0].messages[0].1, MessageId([1; 16]));
    assert_eq!(eval.expectations[0].outcome, Outcome::Met);
    let r = report::build(&log, T0 + 20 * 1000);
    assert_eq!(r.injects[0].actual_s, Some(600));
    assert_eq!(r.injects[0].outcome, "performed");
}
