//! The after-action report: built from a run log (pure), rendered as JSON,
//! Markdown, or HTML with an SVG chart of response times against deadlines.
//!
//! Times are scenario time (`T+...`, scaled by the exercise's time scale)
//! unless named `*_unix_ms` (real time).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::run::{InjectOutcome, Outcome, RunLog};
use crate::scenario::{format_offset, format_span};

/// The whole report; its JSON form is `poc exercise report --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The exercise.
    pub exercise: ExerciseSummary,
    /// Every inject, with its outcome.
    pub injects: Vec<InjectLine>,
    /// Every expected action, with its outcome.
    pub expectations: Vec<ExpectLine>,
    /// Every exercise message, in time order.
    pub timeline: Vec<TimelineLine>,
    /// Per State.
    pub per_state: Vec<GroupSummary>,
    /// Per role.
    pub per_role: Vec<GroupSummary>,
    /// Totals.
    pub totals: GroupSummary,
}

/// The exercise itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExerciseSummary {
    /// Exercise id (the marker on its messages).
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Scenario seconds per real second.
    pub time_scale: u32,
    /// Scheduled length (scenario seconds).
    pub duration_s: u64,
    /// `running` or `finished`.
    pub status: String,
    /// Scenario time reached.
    pub elapsed_s: u64,
    /// T (real).
    pub started_unix_ms: u64,
    /// End (real), if ended.
    pub ended_unix_ms: Option<u64>,
    /// Participants: name, PoC, State, role, player.
    pub participants: Vec<ParticipantLine>,
}

/// A participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantLine {
    /// Scenario handle.
    pub name: String,
    /// PoC id.
    pub poc: String,
    /// State.
    pub state: String,
    /// Role.
    pub role: String,
    /// human / automated.
    pub player: String,
}

/// An inject and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectLine {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Sender (participant name).
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// `send` or `instruct`.
    pub mode: String,
    /// Planned time (scenario seconds).
    pub planned_s: u64,
    /// Actual time (scenario seconds), if it happened.
    pub actual_s: Option<u64>,
    /// pending, sent, instructed, performed, failed, not-reached.
    pub outcome: String,
    /// Message ids (hex), one per recipient reached.
    pub messages: Vec<String>,
    /// Errors, if any.
    pub errors: Vec<String>,
}

/// An expected action and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectLine {
    /// Id.
    pub id: String,
    /// Who acts (participant name).
    pub who: String,
    /// Their PoC.
    pub poc: String,
    /// Their State.
    pub state: String,
    /// Their role.
    pub role: String,
    /// Expected kind.
    pub kind: String,
    /// What it follows.
    pub after: String,
    /// Allowed time (scenario seconds).
    pub within_s: u64,
    /// When what it follows happened (scenario seconds).
    pub anchor_s: Option<u64>,
    /// Deadline (scenario seconds).
    pub deadline_s: Option<u64>,
    /// When it was done (scenario seconds).
    pub done_s: Option<u64>,
    /// Time taken (scenario seconds).
    pub response_s: Option<u64>,
    /// met, late, missed, overdue, pending, waiting, not reached.
    pub outcome: String,
    /// The message that did it (hex).
    pub message: Option<String>,
}

/// One message on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineLine {
    /// Sent (scenario seconds).
    pub at_s: u64,
    /// Sender PoC.
    pub from: String,
    /// Recipient PoC.
    pub to: String,
    /// Kind (with `(eta)` / `(answer)` for responses).
    pub kind: String,
    /// Thread (hex).
    pub thread: String,
    /// Message (hex).
    pub message: String,
    /// Exercise marker carried.
    pub exercise: Option<String>,
    /// Delivery time (scenario seconds), if seen at the recipient.
    pub delivery_s: Option<u64>,
    /// The inject it carried, if any.
    pub inject: Option<String>,
    /// The expected actions it fulfilled.
    pub fulfils: Vec<String>,
}

/// Counts for a group of expected actions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// State code or role name (`all` for totals).
    pub group: String,
    /// Expected actions.
    pub expected: u32,
    /// Met.
    pub met: u32,
    /// Late.
    pub late: u32,
    /// Missed (including never reached).
    pub missed: u32,
    /// Still open.
    pub open: u32,
    /// Mean time to act, over met and late (scenario seconds).
    pub mean_response_s: Option<u64>,
    /// Messages sent by the group.
    pub messages_sent: u32,
}

impl GroupSummary {
    fn count(&mut self, outcome: Outcome, response: Option<u64>, sum: &mut (u64, u64)) {
        self.expected += 1;
        match outcome {
            Outcome::Met => self.met += 1,
            Outcome::Late => self.late += 1,
            Outcome::Missed | Outcome::NotReached => self.missed += 1,
            Outcome::Overdue | Outcome::Pending | Outcome::Waiting => self.open += 1,
        }
        if let Some(r) = response {
            sum.0 += r;
            sum.1 += 1;
        }
    }
}

fn hex_short(text: &str) -> String {
    text.chars().take(8).collect()
}

/// Builds the report as of real time `now_ms` (ignored once the run ended).
pub fn build(log: &RunLog, now_ms: u64) -> Report {
    let now_ms = log.ended_ms.unwrap_or(now_ms);
    let eval = log.evaluate(now_ms);
    let sc = &log.scenario;
    let t = |ms: u64| log.scenario_seconds(ms);

    let injects = sc
        .injects
        .iter()
        .zip(&eval.injects)
        .map(|(inject, result)| {
            let errors = log
                .injects
                .iter()
                .filter(|r| r.inject == inject.id)
                .flat_map(|r| &r.sends)
                .filter_map(|s| s.error.clone())
                .collect();
            InjectLine {
                id: inject.id.clone(),
                kind: inject.kind.name().into(),
                from: inject.from.clone(),
                to: inject.to.clone(),
                mode: match inject.mode {
                    crate::scenario::InjectMode::Send => "send",
                    crate::scenario::InjectMode::Instruct => "instruct",
                }
                .into(),
                planned_s: inject.at,
                actual_s: result.at_ms.map(t),
                outcome: match result.outcome {
                    InjectOutcome::Pending => "pending",
                    InjectOutcome::Sent => "sent",
                    InjectOutcome::Instructed => "instructed",
                    InjectOutcome::Performed => "performed",
                    InjectOutcome::Failed => "failed",
                    InjectOutcome::NotReached => "not reached",
                }
                .into(),
                messages: result
                    .messages
                    .iter()
                    .map(|(_, m, _)| m.to_string())
                    .collect(),
                errors,
            }
        })
        .collect();

    let expectations: Vec<ExpectLine> = sc
        .expectations
        .iter()
        .zip(&eval.expectations)
        .map(|(exp, r)| {
            let who = sc.participant(&exp.who);
            ExpectLine {
                id: exp.id.clone(),
                who: exp.who.clone(),
                poc: who.map(|p| p.poc.to_string()).unwrap_or_default(),
                state: who.map(|p| p.state.clone()).unwrap_or_default(),
                role: who.map(|p| p.role.to_string()).unwrap_or_default(),
                kind: exp.kind.name().into(),
                after: exp.after.clone(),
                within_s: exp.within,
                anchor_s: r.anchor_ms.map(t),
                deadline_s: r.anchor_ms.map(|a| t(a) + exp.within),
                done_s: r.done_ms.map(t),
                response_s: match (r.anchor_ms, r.done_ms) {
                    (Some(a), Some(d)) => Some(
                        d.saturating_sub(a)
                            .saturating_mul(u64::from(sc.time_scale.max(1)))
                            / 1000,
                    ),
                    _ => None,
                },
                outcome: r.outcome.name().into(),
                message: r.message_id.map(|m| m.to_string()),
            }
        })
        .collect();

    let timeline = log
        .messages
        .iter()
        .map(|m| {
            let inject = eval
                .injects
                .iter()
                .find(|i| i.messages.iter().any(|(_, id, _)| *id == m.message_id))
                .map(|i| i.id.clone());
            let fulfils = eval
                .expectations
                .iter()
                .filter(|e| e.message_id == Some(m.message_id))
                .map(|e| e.id.clone())
                .collect();
            let kind = match &m.detail {
                Some(d) => format!("{} ({d})", m.kind),
                None => m.kind.clone(),
            };
            TimelineLine {
                at_s: t(m.time_ms()),
                from: m.from.to_string(),
                to: m.to.to_string(),
                kind,
                thread: m.thread_id.to_string(),
                message: m.message_id.to_string(),
                exercise: m.exercise.clone(),
                delivery_s: match (m.sent_ms, m.received_ms) {
                    (Some(s), Some(r)) => Some(
                        r.saturating_sub(s)
                            .saturating_mul(u64::from(sc.time_scale.max(1)))
                            / 1000,
                    ),
                    _ => None,
                },
                inject,
                fulfils,
            }
        })
        .collect();

    let group = |key: &dyn Fn(&crate::scenario::Participant) -> String| -> Vec<GroupSummary> {
        let mut groups: BTreeMap<String, (GroupSummary, (u64, u64))> = BTreeMap::new();
        for p in &sc.participants {
            let k = key(p);
            let entry = groups.entry(k.clone()).or_insert_with(|| {
                (
                    GroupSummary {
                        group: k,
                        ..GroupSummary::default()
                    },
                    (0, 0),
                )
            });
            entry.0.messages_sent +=
                u32::try_from(log.messages.iter().filter(|m| m.from == p.poc).count())
                    .unwrap_or(u32::MAX);
        }
        for (exp, line) in sc.expectations.iter().zip(&expectations) {
            let Some(p) = sc.participant(&exp.who) else {
                continue;
            };
            if let Some((g, sum)) = groups.get_mut(&key(p)) {
                let outcome = eval
                    .expectations
                    .iter()
                    .find(|e| e.id == exp.id)
                    .map(|e| e.outcome)
                    .unwrap_or(Outcome::Waiting);
                g.count(outcome, line.response_s, sum);
            }
        }
        groups
            .into_values()
            .map(|(mut g, (sum, n))| {
                g.mean_response_s = (n > 0).then(|| sum / n);
                g
            })
            .collect()
    };
    let per_state = group(&|p| p.state.clone());
    let per_role = group(&|p| p.role.to_string());
    let mut totals = GroupSummary {
        group: "all".into(),
        messages_sent: u32::try_from(log.messages.len()).unwrap_or(u32::MAX),
        ..GroupSummary::default()
    };
    let mut sum = (0, 0);
    for (line, r) in expectations.iter().zip(&eval.expectations) {
        totals.count(r.outcome, line.response_s, &mut sum);
    }
    totals.mean_response_s = (sum.1 > 0).then(|| sum.0 / sum.1);

    Report {
        exercise: ExerciseSummary {
            id: sc.id.clone(),
            title: sc.title.clone(),
            description: sc.description.clone(),
            time_scale: sc.time_scale,
            duration_s: sc.duration,
            status: if log.ended_ms.is_some() {
                "finished"
            } else {
                "running"
            }
            .into(),
            elapsed_s: t(now_ms).min(sc.duration),
            started_unix_ms: log.started_ms,
            ended_unix_ms: log.ended_ms,
            participants: sc
                .participants
                .iter()
                .map(|p| ParticipantLine {
                    name: p.name.clone(),
                    poc: p.poc.to_string(),
                    state: p.state.clone(),
                    role: p.role.to_string(),
                    player: match p.player {
                        crate::scenario::Player::Human => "human",
                        crate::scenario::Player::Automated => "automated",
                    }
                    .into(),
                })
                .collect(),
        },
        injects,
        expectations,
        timeline,
        per_state,
        per_role,
        totals,
    }
}

fn opt_offset(s: Option<u64>) -> String {
    s.map(format_offset).unwrap_or_else(|| "—".into())
}

fn opt_span(s: Option<u64>) -> String {
    s.map(format_span).unwrap_or_else(|| "—".into())
}

/// The banner every rendering of exercise material starts with.
pub fn banner(id: &str) -> String {
    format!("*** EXERCISE {id} — NOT A REAL INCIDENT ***")
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn md_table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        headers.iter().map(|_| "---|").collect::<String>()
    );
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// One table of the report: heading, column headers, rows.
type Section = (&'static str, Vec<&'static str>, Vec<Vec<String>>);

/// The sections, shared by Markdown and HTML.
fn sections(r: &Report) -> Vec<Section> {
    let groups = |g: &[GroupSummary]| -> Vec<Vec<String>> {
        g.iter()
            .map(|g| {
                vec![
                    g.group.clone(),
                    g.expected.to_string(),
                    g.met.to_string(),
                    g.late.to_string(),
                    g.missed.to_string(),
                    g.open.to_string(),
                    opt_span(g.mean_response_s),
                    g.messages_sent.to_string(),
                ]
            })
            .collect()
    };
    let group_headers = vec![
        "group",
        "expected",
        "met",
        "late",
        "missed",
        "open",
        "mean time",
        "messages sent",
    ];
    vec![
        (
            "Participants",
            vec!["name", "PoC", "State", "role", "player"],
            r.exercise
                .participants
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.poc.clone(),
                        p.state.clone(),
                        p.role.clone(),
                        p.player.clone(),
                    ]
                })
                .collect(),
        ),
        (
            "Injects",
            vec![
                "id", "planned", "actual", "kind", "from", "to", "mode", "outcome",
            ],
            r.injects
                .iter()
                .map(|i| {
                    let mut outcome = i.outcome.clone();
                    if !i.errors.is_empty() {
                        let _ = write!(outcome, ": {}", i.errors.join("; "));
                    }
                    vec![
                        i.id.clone(),
                        format_offset(i.planned_s),
                        opt_offset(i.actual_s),
                        i.kind.clone(),
                        i.from.clone(),
                        i.to.join(", "),
                        i.mode.clone(),
                        outcome,
                    ]
                })
                .collect(),
        ),
        (
            "Expected actions",
            vec![
                "id",
                "who",
                "kind",
                "after",
                "within",
                "deadline",
                "done",
                "time taken",
                "outcome",
            ],
            r.expectations
                .iter()
                .map(|e| {
                    vec![
                        e.id.clone(),
                        format!("{} ({}, {} {})", e.who, e.poc, e.state, e.role),
                        e.kind.clone(),
                        e.after.clone(),
                        format_span(e.within_s),
                        opt_offset(e.deadline_s),
                        opt_offset(e.done_s),
                        opt_span(e.response_s),
                        e.outcome.to_uppercase(),
                    ]
                })
                .collect(),
        ),
        ("Per State", group_headers.clone(), groups(&r.per_state)),
        ("Per role", group_headers.clone(), groups(&r.per_role)),
        (
            "Totals",
            group_headers,
            groups(std::slice::from_ref(&r.totals)),
        ),
        (
            "Timeline of every message",
            vec![
                "time", "from", "to", "kind", "thread", "delivery", "inject", "fulfils", "marker",
            ],
            r.timeline
                .iter()
                .map(|m| {
                    vec![
                        format_offset(m.at_s),
                        m.from.clone(),
                        m.to.clone(),
                        m.kind.clone(),
                        hex_short(&m.thread),
                        opt_span(m.delivery_s),
                        m.inject.clone().unwrap_or_default(),
                        m.fulfils.join(", "),
                        m.exercise
                            .as_ref()
                            .map(|e| format!("EXERCISE {e}"))
                            .unwrap_or_else(|| "NONE (not exercise traffic!)".into()),
                    ]
                })
                .collect(),
        ),
    ]
}

fn headline(r: &Report) -> String {
    format!(
        "{} expected actions: {} met, {} late, {} missed, {} open",
        r.totals.expected, r.totals.met, r.totals.late, r.totals.missed, r.totals.open
    )
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let e = &r.exercise;
    let mut out = String::new();
    // A plain line: `*** ` followed by a space is not emphasis in Markdown.
    let _ = writeln!(out, "{}\n", banner(&e.id));
    let _ = writeln!(out, "# After-action report: {} ({})\n", e.title, e.id);
    if let Some(d) = &e.description {
        let _ = writeln!(out, "{d}\n");
    }
    let _ = writeln!(
        out,
        "- Status: {} at {} of {}\n- Time scale: {}\n- {}\n",
        e.status,
        format_offset(e.elapsed_s),
        format_offset(e.duration_s),
        scale_text(e.time_scale),
        headline(r)
    );
    for (title, headers, rows) in sections(r) {
        let _ = writeln!(out, "## {title}\n");
        md_table(&mut out, &headers, &rows);
        out.push('\n');
    }
    let _ = writeln!(out, "{}", banner(&e.id));
    out
}

fn scale_text(scale: u32) -> String {
    if scale <= 1 {
        "real time".into()
    } else {
        format!(
            "compressed {scale}x (1 real second = {} scenario)",
            format_span(u64::from(scale))
        )
    }
}

/// Escapes text for HTML.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report as a self-contained HTML page with the SVG chart embedded.
pub fn html(r: &Report) -> String {
    let e = &r.exercise;
    let banner_html = format!(
        "<div class=\"banner\">{}</div>",
        html_escape(&banner(&e.id))
    );
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>EXERCISE {id} — after-action report</title>\
         <style>body{{font-family:sans-serif;margin:2em}}\
         .banner{{background:#b00020;color:#fff;font-weight:bold;padding:.6em;text-align:center;letter-spacing:.05em}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #999;padding:.25em .5em;text-align:left}}\
         .met{{color:#1b5e20}}.late{{color:#b00020;font-weight:bold}}.missed{{color:#b00020;font-weight:bold}}</style>\
         </head><body>\n{banner_html}\n<h1>After-action report: {title} ({id})</h1>\n",
        id = html_escape(&e.id),
        title = html_escape(&e.title),
    );
    if let Some(d) = &e.description {
        let _ = writeln!(out, "<p>{}</p>", html_escape(d));
    }
    let _ = writeln!(
        out,
        "<ul><li>Status: {} at {} of {}</li><li>Time scale: {}</li><li>{}</li></ul>",
        html_escape(&e.status),
        format_offset(e.elapsed_s),
        format_offset(e.duration_s),
        html_escape(&scale_text(e.time_scale)),
        html_escape(&headline(r))
    );
    let _ = writeln!(out, "<h2>Response times against deadlines</h2>");
    out.push_str(&crate::chart::svg(r));
    out.push('\n');
    for (title, headers, rows) in sections(r) {
        let _ = writeln!(out, "<h2>{}</h2>\n<table><tr>", html_escape(title));
        for h in &headers {
            let _ = write!(out, "<th>{}</th>", html_escape(h));
        }
        out.push_str("</tr>\n");
        for row in rows {
            out.push_str("<tr>");
            for cell in row {
                let class = match cell.as_str() {
                    "MET" => " class=\"met\"",
                    "LATE" => " class=\"late\"",
                    "MISSED" | "NOT REACHED" => " class=\"missed\"",
                    _ => "",
                };
                let _ = write!(out, "<td{class}>{}</td>", html_escape(&cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    let _ = writeln!(out, "{banner_html}\n</body></html>");
    out
}
