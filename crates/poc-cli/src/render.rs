//! Human-readable output: aligned tables, handling labels before content, and
//! an unmistakable banner on every exercise line.

use std::fmt::Write as _;

use poc_control::{
    DeadlineView, DirectoryPoc, MessageView, OutboxView, RecordVerifyView, StatusView,
    ThreadSummary, ThreadView,
};
use poc_proto::Body;
use poc_proto::message::{
    Attachment, AttachmentContent, ChannelAgreement, Inquiry, Response, ResponseOutcome, Text,
    Urgency,
};

use crate::parse;

/// The banner every exercise message and thread line carries.
pub(crate) fn banner(exercise: &str) -> String {
    format!("*** EXERCISE {exercise} — NOT A REAL INCIDENT ***")
}

/// What a receipt means, said every time one is shown.
pub(crate) const RECEIPT_MEANING: &str =
    "neutral acknowledgement of receipt (implies no agreement, Annex A para 10)";

fn width(s: &str) -> usize {
    s.chars().count()
}

/// An aligned table; the last column is not padded.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == columns {
                text.push_str(cell);
            } else {
                let _ = write!(
                    text,
                    "{cell}{}  ",
                    " ".repeat(w.saturating_sub(width(cell)))
                );
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn deadline_text(d: &DeadlineView, with_owner: bool) -> String {
    let mut text = format!("{} {}", d.kind, d.at);
    if with_owner {
        let _ = write!(text, " (owed by {})", d.owed_by);
    }
    if d.overdue {
        text.push_str(" OVERDUE");
    } else if d.met {
        text.push_str(" met");
    }
    text
}

/// `poc inbox`: real threads first, exercise threads apart below them,
/// under their own heading, each line with the EXERCISE banner.
pub(crate) fn inbox(threads: &[ThreadSummary]) -> String {
    if threads.is_empty() {
        return "No threads yet. Open one with `poc inquire --to XXX.name --summary \"...\"`.\n"
            .into();
    }
    let (exercise, real): (Vec<ThreadSummary>, Vec<ThreadSummary>) =
        threads.iter().cloned().partition(|t| t.exercise.is_some());
    let mut out = String::new();
    if real.is_empty() {
        out.push_str("No real incident threads.\n");
    } else {
        out.push_str(&thread_table(&real));
    }
    if !exercise.is_empty() {
        let _ = writeln!(
            out,
            "\n=== EXERCISE THREADS — simulation exercises, NOT real incidents ({}) ===",
            exercise.len()
        );
        out.push_str(&thread_table(&exercise));
    }
    let overdue = threads
        .iter()
        .flat_map(|t| &t.deadlines)
        .filter(|d| d.overdue)
        .count();
    if overdue > 0 {
        let _ = writeln!(
            out,
            "\n{overdue} deadline(s) OVERDUE; see `poc show THREAD`."
        );
    }
    out
}

fn thread_table(threads: &[ThreadSummary]) -> String {
    let rows: Vec<Vec<String>> = threads
        .iter()
        .map(|t| {
            let deadlines = t
                .deadlines
                .iter()
                .filter(|d| !d.met || d.overdue)
                .map(|d| deadline_text(d, false))
                .collect::<Vec<_>>();
            let mut subject = String::new();
            if let Some(exercise) = &t.exercise {
                let _ = write!(subject, "{}  ", banner(exercise));
            }
            subject.push_str(&t.subject);
            vec![
                t.thread_id.to_string(),
                t.peer.to_string(),
                if t.outgoing { "out" } else { "in" }.into(),
                t.state.clone(),
                if deadlines.is_empty() {
                    "-".into()
                } else {
                    deadlines.join("; ")
                },
                t.last_activity.to_string(),
                t.handling.clone(),
                subject,
            ]
        })
        .collect();
    table(
        &[
            "THREAD",
            "PEER",
            "DIR",
            "STATE",
            "DEADLINES",
            "LAST",
            "HANDLING",
            "SUBJECT",
        ],
        &rows,
    )
}

/// Appends `label: value` lines, indenting continuation lines.
struct Fields {
    out: String,
    indent: usize,
}

impl Fields {
    const LABEL: usize = 22;

    fn new(indent: usize) -> Self {
        Fields {
            out: String::new(),
            indent,
        }
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{}{text}", " ".repeat(self.indent));
    }

    fn field(&mut self, label: &str, value: &str) {
        let pad = " ".repeat(self.indent);
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        let _ = writeln!(self.out, "{pad}{label:<w$}{first}", w = Self::LABEL);
        for more in lines {
            let _ = writeln!(self.out, "{pad}{}{more}", " ".repeat(Self::LABEL));
        }
    }

    fn opt(&mut self, label: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            self.field(label, v);
        }
    }

    fn text(&mut self, label: &str, text: Option<&Text>) {
        if let Some(t) = text {
            self.field(label, &show_text(t));
        }
    }
}

fn show_text(t: &Text) -> String {
    match &t.english {
        Some(english) if !english.trim().is_empty() => {
            format!("{}\n[unofficial English translation] {english}", t.original)
        }
        _ => t.original.clone(),
    }
}

fn attachments(f: &mut Fields, list: &[Attachment]) {
    for a in list {
        f.field(
            "Attachment:",
            &format!(
                "{} ({}, {} bytes)",
                a.name,
                a.content.media_type(),
                a.content.bytes().len()
            ),
        );
        if let AttachmentContent::Stix(bytes) = &a.content {
            f.field("", &crate::interop::stix_summary(bytes).join("\n"));
        }
    }
}

fn inquiry(f: &mut Fields, q: &Inquiry) {
    f.line("Inquiry (appendix to Annex A, inquiry procedure)");
    let r = &q.requester;
    let who = [r.name.as_deref(), r.title.as_deref(), r.entity.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    f.opt("Requester:", Some(who.as_str()));
    let i = &q.incident;
    f.text("Summary:", Some(&i.summary));
    if let Some(c) = &i.category {
        f.field("Category:", &parse::format_category(c));
    }
    f.text("Description:", i.description.as_ref());
    if !i.affected_sectors.is_empty() {
        f.field(
            "Sectors:",
            &i.affected_sectors
                .iter()
                .map(parse::format_sector)
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    match i.critical_infrastructure {
        Some(true) => f.field("Critical infra:", "AFFECTED"),
        Some(false) => f.field("Critical infra:", "not affected"),
        None => {}
    }
    for ind in &i.indicators {
        f.field("Indicator:", &parse::format_indicator(ind));
    }
    if let Some(t) = i.first_seen {
        f.field("First seen:", &t.to_string());
    }
    if let Some(t) = i.last_seen {
        f.field("Last seen:", &t.to_string());
    }
    f.text("Impact:", i.impact.as_ref());
    f.text("Information requested:", q.information_requested.as_ref());
    f.opt("Phone:", q.contact.phone.as_deref());
    f.opt("E-mail:", q.contact.email.as_deref());
    f.opt("Other contact:", q.contact.other.as_deref());
    let urgency = match q.time_sensitivity.urgency {
        Urgency::Routine => "routine",
        Urgency::Priority => "PRIORITY",
        Urgency::Urgent => "URGENT",
    };
    let ts = match q.time_sensitivity.respond_by {
        Some(by) => format!("{urgency}, respond by {by}"),
        None => urgency.to_owned(),
    };
    f.field("Time sensitivity:", &ts);
    if let Some(c) = &q.preferred_channel {
        f.field("Preferred channel:", &parse::format_channel(c));
    }
    f.opt("Lead agency:", q.lead_agency.as_deref());
    attachments(f, &q.attachments);
}

fn response(f: &mut Fields, r: &Response) {
    f.line("Response (appendix to Annex A, response-to-inquiry procedure)");
    match &r.outcome {
        ResponseOutcome::Immediate { answer } => f.field("Answer:", &show_text(answer)),
        ResponseOutcome::WillFollowUp { eta, note } => {
            f.field(
                "Outcome:",
                "will consider the incident and follow up with more information",
            );
            if let Some(eta) = eta {
                f.field("Estimated by:", &eta.to_string());
            }
            f.text("Note:", note.as_ref());
        }
    }
    match &r.channel {
        Some(ChannelAgreement::Accept) => f.field("Channel:", "accepts the proposed channel"),
        Some(ChannelAgreement::Propose(c)) => f.field(
            "Channel:",
            &format!("proposes {}", parse::format_channel(c)),
        ),
        None => {}
    }
    f.opt("Lead agency:", r.lead_agency.as_deref());
    attachments(f, &r.attachments);
}

/// The content of a message, per kind.
pub(crate) fn body(body: &Body, indent: usize) -> String {
    let mut f = Fields::new(indent);
    match body {
        Body::Inquiry(q) => inquiry(&mut f, q),
        Body::Response(r) => response(&mut f, r),
        Body::Receipt(r) => {
            f.line(&format!("Receipt: {RECEIPT_MEANING}"));
            f.field("Acknowledges:", &r.acknowledged.to_string());
            f.field("Content digest:", &hex::encode(r.content_digest));
            f.field("Recorded by peer:", &r.received_at.to_string());
        }
        Body::FollowUp(u) => {
            f.line("Follow-up");
            f.field("Text:", &show_text(&u.text));
            for ind in &u.indicators {
                f.field("Indicator:", &parse::format_indicator(ind));
            }
            if let Some(eta) = u.next_update_eta {
                f.field("Next update by:", &eta.to_string());
            }
            attachments(&mut f, &u.attachments);
        }
        Body::Close(c) => {
            f.line("Close");
            f.field("Reason:", parse::format_close_reason(c.reason));
            f.text("Note:", c.note.as_ref());
        }
        Body::Ping(p) => {
            f.line("Ping test from the directory manager (Annex A para 8)");
            f.field("Campaign:", &p.campaign.to_string());
            f.field("Reply by:", &p.reply_by.to_string());
        }
        Body::PingReply(p) => {
            f.line("Ping reply (acknowledges the directory manager's ping)");
            f.field("Campaign:", &p.campaign.to_string());
        }
        Body::ConsentRequest(c) => {
            f.line("Consent request (Annex A para 11: no sharing without mutual consent)");
            f.field("Share with:", &c.third_party);
            f.field("Purpose:", &show_text(&c.purpose));
            f.field("Handling:", &c.proposed_handling.to_string());
        }
        Body::ConsentReply(c) => {
            f.line("Consent reply");
            f.field("Request:", &c.request.to_string());
            f.field("Answer:", if c.granted { "GRANTED" } else { "declined" });
            f.text("Note:", c.note.as_ref());
        }
    }
    f.out
}

fn message(out: &mut String, n: usize, m: &MessageView) {
    let arrow = format!("{} → {}", m.sender, m.recipient);
    let _ = writeln!(out, "[{n}] {} {}  {}  {arrow}", m.direction, m.at, m.kind);
    if let Some(exercise) = &m.exercise {
        let _ = writeln!(out, "    {}", banner(exercise));
    }
    let _ = writeln!(out, "    {}", m.handling);
    let mut f = Fields::new(4);
    f.field("Message:", &m.message_id.to_string());
    if let Some(reply) = m.in_reply_to {
        f.field("In reply to:", &reply.to_string());
    }
    f.field("Language:", &m.language);
    if let Some(delivery) = &m.delivery {
        f.field("Delivery:", delivery);
    } else if m.direction == "sent" {
        f.field("Delivery:", "(no outbox entry)");
    }
    out.push_str(&f.out);
    out.push_str(&body(&m.body, 4));
}

/// `poc show THREAD`.
pub(crate) fn thread(view: &ThreadView) -> String {
    let s = &view.summary;
    let mut out = String::new();
    if let Some(exercise) = &s.exercise {
        let _ = writeln!(out, "{}", banner(exercise));
    }
    let _ = writeln!(out, "{}", s.handling);
    let mut f = Fields::new(0);
    f.field("Thread:", &s.thread_id.to_string());
    f.field(
        "Peer:",
        &format!(
            "{} ({} inquiry)",
            s.peer,
            if s.outgoing { "our" } else { "their" }
        ),
    );
    f.field("Subject:", &s.subject);
    f.field("State:", &s.state);
    f.field("Opened:", &s.opened_at.to_string());
    f.field("Last activity:", &s.last_activity.to_string());
    if s.deadlines.is_empty() {
        f.field("Deadlines:", "none");
    }
    for d in &s.deadlines {
        f.field("Deadline:", &deadline_text(d, true));
    }
    out.push_str(&f.out);
    let _ = writeln!(out, "\n{} message(s):", view.messages.len());
    for (i, m) in view.messages.iter().enumerate() {
        out.push('\n');
        message(&mut out, i + 1, m);
    }
    out
}

/// `poc status`.
pub(crate) fn status(s: &StatusView) -> String {
    let mut f = Fields::new(0);
    let role = if s.role.is_empty() {
        "role unknown: not in the directory held".to_owned()
    } else {
        s.role.clone()
    };
    f.field("PoC:", &format!("{} ({role})", s.poc_id));
    f.field("Listening on:", &s.listen);
    f.field("Directory:", &format!("snapshot {}", s.directory_sequence));
    f.field("Record:", &format!("{} entries", s.record_entries));
    f.field(
        "Outbox:",
        &format!(
            "{} pending, {} delivered, {} failed or expired",
            s.outbox_pending, s.outbox_delivered, s.outbox_failed
        ),
    );
    let mut out = f.out;
    if !s.pending.is_empty() {
        let _ = writeln!(out, "\nPending deliveries:");
        out.push_str(&indent(&outbox(&s.pending), 2));
    }
    if !s.recent.is_empty() {
        let _ = writeln!(out, "\nRecent deliveries (newest first):");
        out.push_str(&indent(&outbox(&s.recent), 2));
    }
    if s.overdue.is_empty() {
        let _ = writeln!(out, "\nNo overdue deadlines.");
    } else {
        let _ = writeln!(out, "\nOVERDUE deadlines:");
        for (thread, d) in &s.overdue {
            let _ = writeln!(out, "  thread {thread}: {}", deadline_text(d, true));
        }
    }
    out
}

fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(n)))
        .collect()
}

/// `poc outbox`.
pub(crate) fn outbox(items: &[OutboxView]) -> String {
    if items.is_empty() {
        return "The outbox is empty.\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let detail = match i.status.as_str() {
                "delivered" => format!(
                    "via {} at {}",
                    i.delivered_via.as_deref().unwrap_or("?"),
                    i.delivered_at.map(|t| t.to_string()).unwrap_or_default()
                ),
                "pending" => {
                    let mut d = i
                        .next_attempt_at
                        .map(|t| format!("next attempt {t}"))
                        .unwrap_or_default();
                    if let Some(e) = &i.last_error {
                        let _ = write!(d, "; last error: {e}");
                    }
                    d
                }
                _ => i.last_error.clone().unwrap_or_default(),
            };
            let status = match i.status.as_str() {
                "failed" | "expired" => i.status.to_uppercase(),
                other => other.to_owned(),
            };
            vec![
                i.id.to_string(),
                status,
                i.kind.clone(),
                i.recipient.to_string(),
                i.attempts.to_string(),
                i.created_at.to_string(),
                i.thread_id.to_string(),
                detail,
            ]
        })
        .collect();
    table(
        &[
            "ID", "STATUS", "KIND", "TO", "TRIES", "QUEUED", "THREAD", "DETAIL",
        ],
        &rows,
    )
}

/// pocd lists endpoints in their debug form (`Direct { address: "h:p" }`);
/// show them as `direct h:p`.
fn endpoint_text(endpoint: &str) -> String {
    for (prefix, kind) in [
        ("Direct { address: \"", "direct"),
        ("Relay { address: \"", "relay"),
    ] {
        if let Some(address) = endpoint
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("\" }"))
        {
            return format!("{kind} {address}");
        }
    }
    endpoint.to_owned()
}

/// `poc directory`.
pub(crate) fn directory(pocs: &[DirectoryPoc]) -> String {
    if pocs.is_empty() {
        return "The directory held lists no PoC.\n".into();
    }
    let rows: Vec<Vec<String>> = pocs
        .iter()
        .map(|p| {
            vec![
                p.poc_id.to_string(),
                p.role.clone(),
                if p.revoked { "REVOKED" } else { "active" }.into(),
                p.valid_until.to_string(),
                p.endpoints
                    .iter()
                    .map(|e| endpoint_text(e))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    table(
        &["POC", "ROLE", "STATUS", "VALID UNTIL", "ENDPOINTS"],
        &rows,
    )
}

/// `poc record verify`.
pub(crate) fn record_verify(v: &RecordVerifyView) -> String {
    if v.problems.is_empty() {
        return format!(
            "record intact: {} entries, head {}\n",
            v.entries, v.head_hash
        );
    }
    let mut out = format!(
        "RECORD DAMAGED: {} problem(s) in {} entries (head {}):\n",
        v.problems.len(),
        v.entries,
        v.head_hash
    );
    for p in &v.problems {
        let _ = writeln!(out, "  entry seq {}: {} — {}", p.seq, p.kind, p.detail);
    }
    out.push_str(
        "The record is tamper-evident: an entry was edited, removed or reordered after it was written.\n\
         Keep this output, preserve the database file as it is (do not repair it), and compare with the peer's record.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "BB", "C"],
            &[
                vec!["xxx".into(), "y".into(), "last".into()],
                vec!["—".into(), "yyyy".into(), "z".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "A    BB    C");
        assert_eq!(lines[1], "xxx  y     last");
        assert_eq!(lines[2], "—    yyyy  z");
    }

    #[test]
    fn endpoints_read_well() {
        assert_eq!(
            endpoint_text("Direct { address: \"127.0.0.1:7402\" }"),
            "direct 127.0.0.1:7402"
        );
        assert_eq!(endpoint_text("Relay { address: \"r:1\" }"), "relay r:1");
        assert_eq!(endpoint_text("direct h:1"), "direct h:1");
    }

    #[test]
    fn receipts_are_neutral_and_exercises_marked() {
        let receipt = Body::Receipt(poc_proto::message::Receipt {
            acknowledged: poc_proto::MessageId([1; 16]),
            content_digest: [2; 32],
            received_at: poc_proto::Timestamp(0),
        });
        assert!(body(&receipt, 0).contains(RECEIPT_MEANING));
        assert_eq!(
            banner("CYBER-DRILL-1"),
            "*** EXERCISE CYBER-DRILL-1 — NOT A REAL INCIDENT ***"
        );
    }
}
