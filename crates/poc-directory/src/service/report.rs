//! `poc-directory campaign report`: replied, late, overdue and unreachable
//! PoCs per State and role, with the response rate (Annex A para 8).

use std::fmt::Write as _;

use poc_proto::campaign::{CampaignReport, Tally, TargetOutcome, TargetStatus};
use serde::Serialize;

/// One PoC's line.
#[derive(Debug, Clone, Serialize)]
pub struct TargetLine {
    /// PoC id.
    pub poc_id: String,
    /// State.
    pub state: String,
    /// Role.
    pub role: String,
    /// `replied`, `replied-late`, `overdue`, `unreachable` or `awaiting`.
    pub outcome: String,
    /// When the ping was delivered (RFC 3339), if it was.
    pub delivered_at: Option<String>,
    /// When the reply came (RFC 3339), if it did.
    pub replied_at: Option<String>,
    /// Seconds from the campaign's start to the reply.
    pub reply_after_seconds: Option<u64>,
    /// When the reminder went out, if one did.
    pub reminded_at: Option<String>,
}

/// Totals for a group.
#[derive(Debug, Clone, Serialize)]
pub struct TallyLine {
    /// Targets.
    pub targets: usize,
    /// Replied by the deadline.
    pub replied: usize,
    /// Replied after the deadline.
    pub replied_late: usize,
    /// No reply, deadline passed.
    pub overdue: usize,
    /// No reply, never delivered.
    pub unreachable: usize,
    /// Deadline not passed yet.
    pub awaiting: usize,
    /// Share that replied (on time or late), 0 to 1.
    pub response_rate: f64,
    /// Share that replied on time, 0 to 1.
    pub on_time_rate: f64,
}

impl From<&Tally> for TallyLine {
    fn from(t: &Tally) -> Self {
        TallyLine {
            targets: t.targets,
            replied: t.replied_on_time,
            replied_late: t.replied_late,
            overdue: t.overdue,
            unreachable: t.unreachable,
            awaiting: t.awaiting,
            response_rate: t.response_rate(),
            on_time_rate: t.on_time_rate(),
        }
    }
}

/// The whole report as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct ReportView {
    /// Campaign id.
    pub campaign: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Reply deadline (RFC 3339).
    pub deadline: String,
    /// As of (RFC 3339).
    pub as_of: String,
    /// Totals.
    pub totals: TallyLine,
    /// Per State.
    pub by_state: std::collections::BTreeMap<String, TallyLine>,
    /// Per role.
    pub by_role: std::collections::BTreeMap<String, TallyLine>,
    /// States to contact (an overdue or unreachable PoC).
    pub non_responding_states: Vec<String>,
    /// Every PoC.
    pub targets: Vec<TargetLine>,
}

fn outcome_text(outcome: TargetOutcome) -> &'static str {
    match outcome {
        TargetOutcome::RepliedOnTime => "replied",
        TargetOutcome::RepliedLate => "replied-late",
        TargetOutcome::Overdue => "overdue",
        TargetOutcome::Unreachable => "unreachable",
        TargetOutcome::Awaiting => "awaiting",
    }
}

/// Builds the view; `delivered` gives each PoC's delivery time.
pub fn view(
    report: &CampaignReport,
    delivered: &std::collections::BTreeMap<String, poc_proto::Timestamp>,
) -> ReportView {
    ReportView {
        campaign: report.campaign.to_string(),
        started_at: report.started_at.to_string(),
        deadline: report.deadline.to_string(),
        as_of: report.as_of.to_string(),
        totals: (&report.totals).into(),
        by_state: report
            .by_state
            .iter()
            .map(|(s, t)| (s.to_string(), t.into()))
            .collect(),
        by_role: report
            .by_role
            .iter()
            .map(|(r, t)| (r.to_string(), t.into()))
            .collect(),
        non_responding_states: report
            .non_responding_states()
            .iter()
            .map(ToString::to_string)
            .collect(),
        targets: report
            .targets
            .iter()
            .map(|t| TargetLine {
                poc_id: t.poc.to_string(),
                state: t.state.to_string(),
                role: t.role.to_string(),
                outcome: outcome_text(t.outcome).to_owned(),
                delivered_at: match t.status {
                    TargetStatus::Delivered { at } => Some(at.to_string()),
                    _ => delivered.get(t.poc.as_str()).map(ToString::to_string),
                },
                replied_at: t.replied_at.map(|at| at.to_string()),
                reply_after_seconds: t
                    .replied_at
                    .map(|at| at.0.saturating_sub(report.started_at.0)),
                reminded_at: t.reminded_at.map(|at| at.to_string()),
            })
            .collect(),
    }
}

fn pct(rate: f64) -> String {
    format!("{:.0} %", rate * 100.0)
}

/// The report as text.
pub fn text(view: &ReportView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Ping campaign {}", view.campaign);
    let _ = writeln!(out, "  started:   {}", view.started_at);
    let _ = writeln!(out, "  deadline:  {}", view.deadline);
    let _ = writeln!(out, "  as of:     {}", view.as_of);
    let t = &view.totals;
    let _ = writeln!(
        out,
        "  {} PoCs: {} replied, {} replied late (overdue), {} overdue, {} unreachable, {} awaiting; response rate {} ({} on time)",
        t.targets,
        t.replied,
        t.replied_late,
        t.overdue,
        t.unreachable,
        t.awaiting,
        pct(t.response_rate),
        pct(t.on_time_rate)
    );
    let _ = writeln!(out, "\nBy State:");
    for (state, t) in &view.by_state {
        let _ = writeln!(
            out,
            "  {state}: {}/{} replied ({} late), {} overdue, {} unreachable, rate {}",
            t.replied + t.replied_late,
            t.targets,
            t.replied_late,
            t.overdue,
            t.unreachable,
            pct(t.response_rate)
        );
    }
    let _ = writeln!(out, "\nBy role:");
    for (role, t) in &view.by_role {
        let _ = writeln!(
            out,
            "  {role}: {}/{} replied ({} late), {} overdue, {} unreachable, rate {}",
            t.replied + t.replied_late,
            t.targets,
            t.replied_late,
            t.overdue,
            t.unreachable,
            pct(t.response_rate)
        );
    }
    let _ = writeln!(out, "\nPoCs:");
    for line in &view.targets {
        let _ = writeln!(
            out,
            "  {:<24} {:<4} {:<11} {:<13} replied {}",
            line.poc_id,
            line.state,
            line.role,
            line.outcome.to_uppercase(),
            line.replied_at.as_deref().unwrap_or("-")
        );
    }
    if !view.non_responding_states.is_empty() {
        let _ = writeln!(
            out,
            "\nContact the competent authorities of: {}",
            view.non_responding_states.join(", ")
        );
    }
    out
}
