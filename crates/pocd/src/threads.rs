//! The node's in-memory index of incident threads.
//!
//! Built once at start by replaying the record through poc-proto's
//! `IncidentThread` state machine, then kept current as each message is
//! committed, so listing threads, reporting overdue deadlines and alerting
//! cost nothing on the store thread and do not grow with the record.

use std::collections::BTreeMap;

use poc_control::{DeadlineView, ThreadSummary};
use poc_proto::message::{Body, Message};
use poc_proto::thread::{Deadline, DeadlineKind, Direction, IncidentThread, ThreadState};
use poc_proto::{ThreadId, Timestamp};

struct Tracked {
    machine: Option<IncidentThread>,
    summary: ThreadSummary,
}

/// Every thread this node has seen.
#[derive(Default)]
pub(crate) struct ThreadIndex {
    threads: BTreeMap<ThreadId, Tracked>,
}

impl ThreadIndex {
    /// Takes a message into its thread's state, as recorded at `at`.
    pub(crate) fn observe(&mut self, message: &Message, direction: Direction, at: Timestamp) {
        let id = message.header.thread_id;
        let tracked = self.threads.entry(id).or_insert_with(|| {
            let peer = match direction {
                Direction::Sent => message.header.recipient.clone(),
                Direction::Received => message.header.sender.clone(),
            };
            let subject = match &message.body {
                Body::Inquiry(inquiry) => inquiry.incident.summary.original.clone(),
                other => format!("({})", other.kind()),
            };
            Tracked {
                machine: None,
                summary: ThreadSummary {
                    thread_id: id,
                    peer,
                    outgoing: direction == Direction::Sent,
                    subject,
                    state: String::new(),
                    exercise: message.header.exercise.as_ref().map(|e| e.0.clone()),
                    handling: message.header.handling.to_string(),
                    opened_at: at,
                    last_activity: at,
                    messages: 0,
                    deadlines: Vec::new(),
                },
            }
        });
        match &mut tracked.machine {
            None if matches!(message.body, Body::Inquiry(_)) => {
                tracked.machine = IncidentThread::start(message, direction, at).ok();
            }
            Some(machine) => {
                if let Err(e) = machine.apply(message, direction, at) {
                    tracing::debug!(thread = %id, error = %e, "message does not fit its thread");
                }
            }
            None => {}
        }
        tracked.summary.messages += 1;
        tracked.summary.last_activity = tracked.summary.last_activity.max(at);
    }

    /// The exercise marker of a known thread: `Some(None)` for a real
    /// thread, `Some(Some(id))` for an exercise's, `None` if unknown.
    pub(crate) fn exercise_of(&self, id: &ThreadId) -> Option<Option<String>> {
        self.threads.get(id).map(|t| t.summary.exercise.clone())
    }

    /// Drops an exercise's threads (after its record entries are purged).
    pub(crate) fn forget_exercise(&mut self, exercise: &str) -> usize {
        let before = self.threads.len();
        self.threads
            .retain(|_, t| t.summary.exercise.as_deref() != Some(exercise));
        before - self.threads.len()
    }

    /// One thread's summary as of `now`.
    pub(crate) fn summary(&self, id: &ThreadId, now: Timestamp) -> Option<ThreadSummary> {
        self.threads.get(id).map(|t| render(t, now))
    }

    /// Every thread's summary as of `now`, most recent activity first.
    pub(crate) fn summaries(&self, now: Timestamp) -> Vec<ThreadSummary> {
        let mut all: Vec<ThreadSummary> = self.threads.values().map(|t| render(t, now)).collect();
        all.sort_by_key(|t| std::cmp::Reverse(t.last_activity));
        all
    }
}

fn render(tracked: &Tracked, now: Timestamp) -> ThreadSummary {
    let mut summary = tracked.summary.clone();
    match &tracked.machine {
        Some(machine) => {
            summary.state = state_text(machine);
            summary.deadlines = machine
                .deadlines()
                .iter()
                .map(|d| deadline_view(d, now))
                .collect();
        }
        None => summary.state = "not an incident thread".into(),
    }
    summary
}

fn state_text(thread: &IncidentThread) -> String {
    match thread.state() {
        ThreadState::Open => "open (no receipt yet)".into(),
        ThreadState::Receipted => "receipted (awaiting response)".into(),
        ThreadState::Answered => "answered".into(),
        ThreadState::FollowUpPending { eta: Some(eta) } => format!("follow-up pending (ETA {eta})"),
        ThreadState::FollowUpPending { eta: None } => "follow-up pending".into(),
        ThreadState::Closed { reason } => format!("closed ({reason:?})"),
    }
}

fn deadline_view(d: &Deadline, now: Timestamp) -> DeadlineView {
    DeadlineView {
        kind: match d.kind {
            DeadlineKind::RespondBy => "respond-by".into(),
            DeadlineKind::Eta => "eta".into(),
        },
        at: d.at,
        owed_by: d.owed_by.clone(),
        met: d.met,
        overdue: d.is_overdue(now),
    }
}
