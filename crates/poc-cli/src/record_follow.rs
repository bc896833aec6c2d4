//! `poc record follow`: the record's entries printed as they are committed.
//!
//! One long-polling `RecordFollow` call at a time on one control connection,
//! re-issued with the last seq printed, so nothing is missed or printed twice
//! and an idle node costs one call per [`WAIT_MS`].

use std::io::Write as _;

use poc_control::{RecordSummaryView, Request, StatusView};

use crate::daemon::{Connection, Daemon};
use crate::fail::fail;

/// How long each call waits for new entries (below the daemon's maximum).
const WAIT_MS: u32 = 25_000;

/// Entries per call.
const PAGE: u32 = 1000;

/// Follows the record until interrupted (or until pocd goes away: an error).
pub(crate) fn follow(
    connection: &Connection,
    after: Option<u64>,
    json: bool,
) -> anyhow::Result<u8> {
    let mut daemon = Daemon::connect(connection)?;
    let mut after_seq = match after {
        Some(seq) => seq,
        None => daemon.typed::<StatusView>(&Request::Status)?.record_entries,
    };
    eprintln!("poc: following the record after entry #{after_seq} (Ctrl-C to stop)");
    let mut out = std::io::stdout().lock();
    loop {
        let entries: Vec<RecordSummaryView> = daemon.typed(&Request::RecordFollow {
            after_seq,
            limit: PAGE,
            wait_ms: WAIT_MS,
        })?;
        let mut text = String::new();
        for entry in &entries {
            if entry.seq <= after_seq {
                return Err(fail(
                    format!(
                        "pocd's record went backwards (entry #{} after #{after_seq})",
                        entry.seq
                    ),
                    "check the record with `poc record verify`",
                ));
            }
            after_seq = entry.seq;
            if json {
                text += &serde_json::to_string(entry)?;
            } else {
                text += &line(entry);
            }
            text.push('\n');
        }
        if text.is_empty() {
            continue;
        }
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            // `poc record follow | head`: the reader has had enough.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
            Err(e) => return Err(anyhow::anyhow!("cannot write to standard output: {e}")),
        }
    }
}

/// One entry on one line, e.g.
/// `#12 2026-11-25T03:40:01Z received inquiry from FRA.cert thread 0f3a.. message 9b21..`.
fn line(e: &RecordSummaryView) -> String {
    let mut text = format!("#{} {} ", e.seq, e.at);
    if let Some(exercise) = &e.exercise {
        // Exercise traffic must never pass for real.
        text += &format!("[EXERCISE {}] ", shown(exercise));
    }
    text += &e.event;
    if let Some(kind) = &e.kind {
        text += &format!(" {}", shown(kind));
    }
    if let Some(peer) = &e.peer {
        let direction = if e.event == "sent" { "to" } else { "from" };
        text += &format!(" {direction} {peer}");
    }
    if let Some(thread) = &e.thread_id {
        text += &format!(" thread {thread}");
    }
    if let Some(message) = &e.message_id {
        text += &format!(" message {message}");
    }
    if e.purged {
        text += " (payload purged)";
    }
    if let Some(detail) = &e.detail {
        text += &format!(": {}", shown(detail));
    }
    text
}

/// Text from the record as one inert line: control and bidirectional
/// formatting characters (a rejection reason may quote what a peer sent)
/// are shown escaped, so they cannot break the line or reorder what
/// follows.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use poc_proto::{PocId, ThreadId, Timestamp};

    #[test]
    fn a_line_names_the_event_the_peer_and_marks_exercises() {
        let entry = RecordSummaryView {
            seq: 7,
            at: Timestamp(1_795_000_000),
            event: "received".into(),
            peer: Some(PocId::new("FRA.cert").unwrap()),
            message_id: None,
            thread_id: Some(ThreadId([0xab; 16])),
            kind: Some("inquiry".into()),
            exercise: Some("DRILL-1".into()),
            detail: Some("bad\nline\u{202e}".into()),
            purged: false,
            entry_hash: String::new(),
        };
        let text = line(&entry);
        assert!(text.starts_with("#7 "), "{text}");
        assert!(
            text.contains("[EXERCISE DRILL-1] received inquiry from FRA.cert thread abab"),
            "{text}"
        );
        assert!(text.ends_with(": bad\\u{a}line\\u{202e}"), "{text}");
        assert!(!text.contains('\n'));
    }
}
