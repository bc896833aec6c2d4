//! The sans-IO state machine of one incident thread, as one PoC's node sees it.
//!
//! A thread starts with an inquiry (appendix to Annex A, "Inquiry procedure")
//! and carries the neutral receipt (Annex A para 10), the response
//! ("Response-to-inquiry procedure", steps 1-3), follow-ups, consent
//! exchanges (para 11) and finally a close. [`IncidentThread::apply`] takes
//! each message this node sent or received, with the time it handled it,
//! checks that the message belongs on the thread, and returns what changed as
//! [`ThreadEvent`]s. A rejected message leaves the thread untouched.
//!
//! ```text
//!   Open ──receipt──▶ Receipted
//!    │                   │
//!    ├───────────────────┴──response, step 1 (immediate)──▶ Answered
//!    └───────────────────┴──response, step 2 (will follow up)──▶ FollowUpPending { eta }
//!   Answered ──follow-up with an ETA──▶ FollowUpPending
//!   FollowUpPending ──follow-up without an ETA from the party that promised──▶ Answered
//!   any state ──close──▶ Closed { reason }
//! ```
//!
//! A response may overtake the receipt on the network: the state moves on and
//! the receipt, when it comes, is still recorded.
//!
//! Deadlines are the inquiry's respond-by time (step 3, time sensitivity) and
//! each promised ETA (response step 2, or a follow-up's next update). A driver
//! sleeps until [`IncidentThread::next_deadline`], then calls
//! [`IncidentThread::handle_timeout`], which reports each deadline that passed
//! once (in the manner of `quinn-proto`'s `poll_timeout`/`handle_timeout`).
//! A deadline is overdue from its own second on; a message handled within that
//! second still meets it on time.
//!
//! The state is a pure function of the messages and times given, so a node
//! rebuilds a thread after a restart by replaying its record: `start` with the
//! inquiry, then `apply` each later message with the time it was recorded.

use crate::identity::PocId;
use crate::message::{
    Body, CloseReason, ExerciseId, Message, MessageId, MessageKind, ResponseOutcome, ThreadId,
    TimeSensitivity,
};
use crate::time::{Seconds, Timestamp};

/// Whether this node sent or received a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// This node sent it.
    Sent,
    /// This node received it.
    Received,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        })
    }
}

/// Where an incident thread stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadState {
    /// The inquiry was sent or received; no receipt and no response yet.
    Open,
    /// The neutral receipt of the inquiry was seen (Annex A para 10); no
    /// response yet.
    Receipted,
    /// An immediate response was given (response step 1), and nobody has
    /// promised more since.
    Answered,
    /// A party said more will follow (response step 2, or a follow-up naming
    /// its next update); `eta` is the earliest promised time, if any was given.
    FollowUpPending {
        /// The earliest outstanding estimated time of the next update.
        eta: Option<Timestamp>,
    },
    /// The thread is closed; only receipts may still arrive.
    Closed {
        /// Why it was closed.
        reason: CloseReason,
    },
}

impl ThreadState {
    /// Whether the thread is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, ThreadState::Closed { .. })
    }
}

/// The kind of a thread deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadlineKind {
    /// The inquiry's respond-by time (inquiry step 3, time sensitivity), met
    /// by the first response of the inquired PoC.
    RespondBy,
    /// An estimated time of further information (response step 2, or a
    /// follow-up's next update), met by the next follow-up, response or close
    /// from the party that gave it.
    Eta,
}

impl std::fmt::Display for DeadlineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeadlineKind::RespondBy => "respond-by",
            DeadlineKind::Eta => "ETA",
        })
    }
}

/// A deadline on a thread, met or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// Which deadline.
    pub kind: DeadlineKind,
    /// When it falls.
    pub at: Timestamp,
    /// The PoC that owes the message meeting it.
    pub owed_by: PocId,
    /// Whether it was met (on time or late); always `met_at.is_some()`.
    pub met: bool,
    /// When this node handled the message that met it.
    pub met_at: Option<Timestamp>,
}

impl Deadline {
    /// Whether it is unmet and its time has come (`now >= at`).
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        !self.met && now >= self.at
    }

    /// Whether it was met after its time.
    pub fn met_late(&self) -> bool {
        self.met_at.is_some_and(|t| t > self.at)
    }

    fn meet(&mut self, now: Timestamp) {
        self.met = true;
        self.met_at = Some(now);
    }
}

/// One message of a thread, as this node handled it (Annex A para 11 asks
/// PoCs to keep a record of all information exchanged; the full record is the
/// node's journal, this is the thread's index of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    /// The message's id.
    pub message_id: MessageId,
    /// Its kind.
    pub kind: MessageKind,
    /// Whether this node sent or received it.
    pub direction: Direction,
    /// When this node handled it.
    pub at: Timestamp,
}

/// What changed on a thread, for a daemon to store, show or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThreadEvent {
    /// The first neutral receipt of the inquiry was seen (Annex A para 10:
    /// it implies no agreement with the content).
    InquiryReceipted {
        /// When the inquired PoC's node says it recorded the inquiry.
        received_at: Timestamp,
    },
    /// A receipt of another message of the thread (or a repeated receipt of
    /// the inquiry) was seen.
    MessageReceipted {
        /// The acknowledged message.
        acknowledged: MessageId,
    },
    /// An immediate response was given (response step 1).
    Answered {
        /// The responding PoC.
        by: PocId,
    },
    /// A party said more information will follow (response step 2, or a
    /// follow-up with a next update time).
    FollowUpPromised {
        /// The promising PoC.
        by: PocId,
        /// The estimated time, if one was given.
        eta: Option<Timestamp>,
    },
    /// A follow-up brought further information.
    FollowedUp {
        /// Its sender.
        by: PocId,
    },
    /// A deadline was met, on time or late ([`Deadline::met_late`]).
    DeadlineMet(Deadline),
    /// A deadline passed unmet (reported once, by
    /// [`IncidentThread::handle_timeout`]).
    DeadlinePassed(Deadline),
    /// Consent to share the thread with a third party was asked (para 11).
    ConsentRequested {
        /// The request's message id.
        request: MessageId,
        /// Who asks.
        by: PocId,
        /// The named third party.
        third_party: String,
    },
    /// A consent request was answered (para 11).
    ConsentAnswered {
        /// The request answered.
        request: MessageId,
        /// Who answers.
        by: PocId,
        /// Whether consent was given.
        granted: bool,
    },
    /// The thread was closed.
    Closed {
        /// Why.
        reason: CloseReason,
        /// Who closed it.
        by: PocId,
    },
    /// The thread's state changed.
    StateChanged {
        /// The state before.
        from: ThreadState,
        /// The state after.
        to: ThreadState,
    },
}

/// Why a message cannot start or go on a thread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThreadError {
    /// A thread must start with an inquiry (appendix to Annex A, inquiry procedure).
    #[error("a thread starts with an inquiry, not a {0}")]
    NotAnInquiry(MessageKind),
    /// The inquiry names the same PoC as sender and recipient.
    #[error("the inquiry from {0} is addressed to its own sender")]
    SelfAddressed(PocId),
    /// The message carries another thread's id.
    #[error("the message belongs to thread {found}, not to thread {expected}")]
    WrongThread {
        /// This thread.
        expected: ThreadId,
        /// The message's thread.
        found: ThreadId,
    },
    /// Pings and ping replies are directory traffic (Annex A para 8), never
    /// part of an incident thread.
    #[error("a {0} is directory traffic, not part of an incident thread")]
    NotThreadTraffic(MessageKind),
    /// The message's exercise marker differs from the inquiry's: a message may
    /// never add, drop or change the marker of its thread.
    #[error(
        "exercise marker mismatch: the thread is {}, the message is {}",
        marker(.expected),
        marker(.found)
    )]
    ExerciseMismatch {
        /// The thread's marker, from its inquiry.
        expected: Option<ExerciseId>,
        /// The message's marker.
        found: Option<ExerciseId>,
    },
    /// The message is not from one of the thread's two PoCs to the other.
    #[error(
        "a message from {sender} to {recipient} is not between this thread's PoCs {inquirer} and {responder}"
    )]
    NotParties {
        /// The message's sender.
        sender: PocId,
        /// The message's recipient.
        recipient: PocId,
        /// The thread's inquiring PoC.
        inquirer: PocId,
        /// The thread's inquired PoC.
        responder: PocId,
    },
    /// The direction contradicts the message: this node can only send as its
    /// own PoC and receive what is addressed to it.
    #[error("this node ({local}) cannot have {direction} a message from {sender} to {recipient}")]
    WrongDirection {
        /// The direction given.
        direction: Direction,
        /// This node's PoC on the thread.
        local: PocId,
        /// The message's sender.
        sender: PocId,
        /// The message's recipient.
        recipient: PocId,
    },
    /// A message with this id is already on the thread.
    #[error("message {0} is already on the thread")]
    DuplicateMessage(MessageId),
    /// The thread is closed; only receipts may still arrive.
    #[error("the thread is closed; a {kind} cannot be added")]
    ThreadClosed {
        /// The kind of the refused message.
        kind: MessageKind,
    },
    /// A thread carries exactly one inquiry; a new inquiry opens a new thread.
    #[error("the thread already has its inquiry; a new inquiry needs a new thread")]
    SecondInquiry,
    /// Only the inquired PoC responds (response-to-inquiry procedure).
    #[error("{0} made the inquiry and cannot respond to it")]
    ResponseFromInquirer(PocId),
    /// A receipt must acknowledge a message of the thread that its sender
    /// received.
    #[error(
        "the receipt acknowledges {acknowledged}, which its sender did not receive on this thread"
    )]
    ReceiptMismatch {
        /// The id the receipt acknowledges.
        acknowledged: MessageId,
    },
    /// A consent reply must answer a consent request of the thread that its
    /// sender received: only the party asked can give consent (para 11).
    #[error(
        "the consent reply answers {request}, which is not a consent request its sender received on this thread"
    )]
    ConsentReplyMismatch {
        /// The id the reply names as its request.
        request: MessageId,
    },
}

/// Shows an optional exercise marker in an error message.
fn marker(exercise: &Option<ExerciseId>) -> String {
    match exercise {
        Some(id) => format!("exercise {:?}", id.0),
        None => "real (no exercise marker)".to_owned(),
    }
}

/// A party's outstanding promise of more information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Promise {
    eta: Option<Timestamp>,
}

/// A deadline and whether `handle_timeout` already reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tracked {
    deadline: Deadline,
    reported: bool,
}

/// One incident thread, from the inquiry to its close, as one PoC's node sees
/// it (appendix to Annex A, inquiry and response-to-inquiry procedures).
#[derive(Debug, Clone)]
pub struct IncidentThread {
    id: ThreadId,
    inquiry_id: MessageId,
    inquirer: PocId,
    responder: PocId,
    inquiry_direction: Direction,
    exercise: Option<ExerciseId>,
    time_sensitivity: TimeSensitivity,
    state: ThreadState,
    opened_at: Timestamp,
    receipted_at: Option<Timestamp>,
    first_response_at: Option<Timestamp>,
    closed_at: Option<Timestamp>,
    inquirer_promise: Option<Promise>,
    responder_promise: Option<Promise>,
    deadlines: Vec<Tracked>,
    log: Vec<LogEntry>,
}

impl IncidentThread {
    /// Opens a thread with its inquiry (inquiry procedure, steps 1-4), sent or
    /// received by this node at `now`.
    ///
    /// The thread's id is the inquiry's `thread_id`; its exercise marker, if
    /// any, binds every later message; its respond-by time (step 3), if any,
    /// becomes a deadline owed by the inquired PoC.
    pub fn start(
        inquiry_message: &Message,
        direction: Direction,
        now: Timestamp,
    ) -> Result<Self, ThreadError> {
        let Body::Inquiry(inquiry) = &inquiry_message.body else {
            return Err(ThreadError::NotAnInquiry(inquiry_message.body.kind()));
        };
        let header = &inquiry_message.header;
        if header.sender == header.recipient {
            return Err(ThreadError::SelfAddressed(header.sender.clone()));
        }
        let deadlines = inquiry
            .time_sensitivity
            .respond_by
            .map(|at| Tracked {
                deadline: Deadline {
                    kind: DeadlineKind::RespondBy,
                    at,
                    owed_by: header.recipient.clone(),
                    met: false,
                    met_at: None,
                },
                reported: false,
            })
            .into_iter()
            .collect();
        Ok(IncidentThread {
            id: header.thread_id,
            inquiry_id: header.message_id,
            inquirer: header.sender.clone(),
            responder: header.recipient.clone(),
            inquiry_direction: direction,
            exercise: header.exercise.clone(),
            time_sensitivity: inquiry.time_sensitivity,
            state: ThreadState::Open,
            opened_at: now,
            receipted_at: None,
            first_response_at: None,
            closed_at: None,
            inquirer_promise: None,
            responder_promise: None,
            deadlines,
            log: vec![LogEntry {
                message_id: header.message_id,
                kind: MessageKind::Inquiry,
                direction,
                at: now,
            }],
        })
    }

    /// Adds a message this node sent or received at `now`, and returns what
    /// changed. On error the thread is unchanged.
    ///
    /// Refused: another thread's message, a ping or ping reply, a different
    /// exercise marker, a message not between the thread's two PoCs or
    /// contradicting `direction`, a repeated message id, anything but a
    /// receipt after the close, a second inquiry, a response from the
    /// inquirer, a receipt of a message its sender did not receive here, and
    /// a consent reply to anything but a consent request its sender received
    /// here.
    pub fn apply(
        &mut self,
        message: &Message,
        direction: Direction,
        now: Timestamp,
    ) -> Result<Vec<ThreadEvent>, ThreadError> {
        self.check(message, direction)?;
        let header = &message.header;
        let by = header.sender.clone();
        let before = self.state;
        let mut events = Vec::new();
        match &message.body {
            Body::Inquiry(_) => return Err(ThreadError::SecondInquiry),
            Body::Ping(_) | Body::PingReply(_) => {
                return Err(ThreadError::NotThreadTraffic(message.body.kind()));
            }
            Body::Receipt(receipt) => {
                if receipt.acknowledged == self.inquiry_id && self.receipted_at.is_none() {
                    self.receipted_at = Some(now);
                    events.push(ThreadEvent::InquiryReceipted {
                        received_at: receipt.received_at,
                    });
                } else {
                    events.push(ThreadEvent::MessageReceipted {
                        acknowledged: receipt.acknowledged,
                    });
                }
            }
            Body::Response(response) => {
                self.meet_etas(&by, now, &mut events);
                if self.first_response_at.is_none() {
                    self.first_response_at = Some(now);
                    for tracked in &mut self.deadlines {
                        let deadline = &mut tracked.deadline;
                        if deadline.kind == DeadlineKind::RespondBy && !deadline.met {
                            deadline.meet(now);
                            events.push(ThreadEvent::DeadlineMet(deadline.clone()));
                        }
                    }
                }
                match &response.outcome {
                    ResponseOutcome::Immediate { .. } => {
                        events.push(ThreadEvent::Answered { by });
                    }
                    ResponseOutcome::WillFollowUp { eta, .. } => {
                        self.promise(&by, *eta);
                        events.push(ThreadEvent::FollowUpPromised { by, eta: *eta });
                    }
                }
            }
            Body::FollowUp(follow_up) => {
                self.meet_etas(&by, now, &mut events);
                events.push(ThreadEvent::FollowedUp { by: by.clone() });
                if let Some(eta) = follow_up.next_update_eta {
                    self.promise(&by, Some(eta));
                    events.push(ThreadEvent::FollowUpPromised { by, eta: Some(eta) });
                }
            }
            Body::Close(close) => {
                self.meet_etas(&by, now, &mut events);
                self.state = ThreadState::Closed {
                    reason: close.reason,
                };
                self.closed_at = Some(now);
                events.push(ThreadEvent::Closed {
                    reason: close.reason,
                    by,
                });
            }
            Body::ConsentRequest(request) => events.push(ThreadEvent::ConsentRequested {
                request: header.message_id,
                by,
                third_party: request.third_party.clone(),
            }),
            Body::ConsentReply(reply) => events.push(ThreadEvent::ConsentAnswered {
                request: reply.request,
                by,
                granted: reply.granted,
            }),
        }
        self.log.push(LogEntry {
            message_id: header.message_id,
            kind: message.body.kind(),
            direction,
            at: now,
        });
        self.settle();
        if self.state != before {
            events.push(ThreadEvent::StateChanged {
                from: before,
                to: self.state,
            });
        }
        Ok(events)
    }

    /// Every check of [`apply`](Self::apply), before anything changes.
    fn check(&self, message: &Message, direction: Direction) -> Result<(), ThreadError> {
        let header = &message.header;
        let kind = message.body.kind();
        if header.thread_id != self.id {
            return Err(ThreadError::WrongThread {
                expected: self.id,
                found: header.thread_id,
            });
        }
        if matches!(kind, MessageKind::Ping | MessageKind::PingReply) {
            return Err(ThreadError::NotThreadTraffic(kind));
        }
        if header.exercise != self.exercise {
            return Err(ThreadError::ExerciseMismatch {
                expected: self.exercise.clone(),
                found: header.exercise.clone(),
            });
        }
        let forward = header.sender == self.inquirer && header.recipient == self.responder;
        let backward = header.sender == self.responder && header.recipient == self.inquirer;
        if !forward && !backward {
            return Err(ThreadError::NotParties {
                sender: header.sender.clone(),
                recipient: header.recipient.clone(),
                inquirer: self.inquirer.clone(),
                responder: self.responder.clone(),
            });
        }
        let local = self.local_party();
        let consistent = match direction {
            Direction::Sent => header.sender == *local,
            Direction::Received => header.recipient == *local,
        };
        if !consistent {
            return Err(ThreadError::WrongDirection {
                direction,
                local: local.clone(),
                sender: header.sender.clone(),
                recipient: header.recipient.clone(),
            });
        }
        if self.log.iter().any(|e| e.message_id == header.message_id) {
            return Err(ThreadError::DuplicateMessage(header.message_id));
        }
        if self.state.is_closed() && kind != MessageKind::Receipt {
            return Err(ThreadError::ThreadClosed { kind });
        }
        match &message.body {
            Body::Inquiry(_) => Err(ThreadError::SecondInquiry),
            Body::Response(_) if header.sender != self.responder => {
                Err(ThreadError::ResponseFromInquirer(header.sender.clone()))
            }
            Body::Receipt(receipt) => {
                // The receipt's sender must be the acknowledged message's
                // recipient: the two travelled in opposite directions.
                let acknowledged = self
                    .log
                    .iter()
                    .find(|e| e.message_id == receipt.acknowledged);
                match acknowledged {
                    Some(entry) if entry.direction != direction => Ok(()),
                    _ => Err(ThreadError::ReceiptMismatch {
                        acknowledged: receipt.acknowledged,
                    }),
                }
            }
            Body::ConsentReply(reply) => {
                // Only the party asked answers: the request travelled the
                // other way, so the asker cannot grant its own request.
                let asked = self.log.iter().any(|e| {
                    e.message_id == reply.request
                        && e.kind == MessageKind::ConsentRequest
                        && e.direction != direction
                });
                if asked {
                    Ok(())
                } else {
                    Err(ThreadError::ConsentReplyMismatch {
                        request: reply.request,
                    })
                }
            }
            _ => Ok(()),
        }
    }

    fn promise_of(&mut self, party: &PocId) -> &mut Option<Promise> {
        if *party == self.inquirer {
            &mut self.inquirer_promise
        } else {
            &mut self.responder_promise
        }
    }

    /// `party` spoke again: its outstanding ETA is met and its promise kept.
    fn meet_etas(&mut self, party: &PocId, now: Timestamp, events: &mut Vec<ThreadEvent>) {
        for tracked in &mut self.deadlines {
            let deadline = &mut tracked.deadline;
            if deadline.kind == DeadlineKind::Eta && !deadline.met && deadline.owed_by == *party {
                deadline.meet(now);
                events.push(ThreadEvent::DeadlineMet(deadline.clone()));
            }
        }
        *self.promise_of(party) = None;
    }

    /// `party` promises more information, by `eta` if given.
    fn promise(&mut self, party: &PocId, eta: Option<Timestamp>) {
        *self.promise_of(party) = Some(Promise { eta });
        if let Some(at) = eta {
            self.deadlines.push(Tracked {
                deadline: Deadline {
                    kind: DeadlineKind::Eta,
                    at,
                    owed_by: party.clone(),
                    met: false,
                    met_at: None,
                },
                reported: false,
            });
        }
    }

    /// Derives the state from what has been seen (except a close, which is final).
    fn settle(&mut self) {
        if self.state.is_closed() {
            return;
        }
        self.state = if self.first_response_at.is_none() {
            if self.receipted_at.is_some() {
                ThreadState::Receipted
            } else {
                ThreadState::Open
            }
        } else {
            let promises = [self.inquirer_promise, self.responder_promise];
            let mut pending = promises.iter().flatten().peekable();
            if pending.peek().is_none() {
                ThreadState::Answered
            } else {
                ThreadState::FollowUpPending {
                    eta: pending.filter_map(|p| p.eta).min(),
                }
            }
        };
    }

    /// The thread's id (the inquiry's `thread_id`).
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// The inquiry's message id.
    pub fn inquiry_id(&self) -> MessageId {
        self.inquiry_id
    }

    /// The PoC that made the inquiry.
    pub fn inquirer(&self) -> &PocId {
        &self.inquirer
    }

    /// The inquired PoC, which responds.
    pub fn responder(&self) -> &PocId {
        &self.responder
    }

    /// This node's PoC on the thread.
    pub fn local_party(&self) -> &PocId {
        match self.inquiry_direction {
            Direction::Sent => &self.inquirer,
            Direction::Received => &self.responder,
        }
    }

    /// The other PoC on the thread.
    pub fn remote_party(&self) -> &PocId {
        match self.inquiry_direction {
            Direction::Sent => &self.responder,
            Direction::Received => &self.inquirer,
        }
    }

    /// Whether this node made the inquiry.
    pub fn is_outgoing(&self) -> bool {
        self.inquiry_direction == Direction::Sent
    }

    /// The exercise marker every message of the thread carries, if it is an
    /// exercise (never to be mistaken for a real incident).
    pub fn exercise(&self) -> Option<&ExerciseId> {
        self.exercise.as_ref()
    }

    /// The inquiry's time sensitivity (inquiry step 3).
    pub fn time_sensitivity(&self) -> TimeSensitivity {
        self.time_sensitivity
    }

    /// The current state.
    pub fn state(&self) -> ThreadState {
        self.state
    }

    /// When this node handled the inquiry.
    pub fn opened_at(&self) -> Timestamp {
        self.opened_at
    }

    /// When this node handled the first receipt of the inquiry.
    pub fn receipted_at(&self) -> Option<Timestamp> {
        self.receipted_at
    }

    /// When this node handled the first response.
    pub fn first_response_at(&self) -> Option<Timestamp> {
        self.first_response_at
    }

    /// From the inquiry to the first response, for after-action reports.
    pub fn time_to_first_response(&self) -> Option<Seconds> {
        self.first_response_at.map(|t| t.since(self.opened_at))
    }

    /// When this node handled the close.
    pub fn closed_at(&self) -> Option<Timestamp> {
        self.closed_at
    }

    /// Every message of the thread, in the order handled.
    pub fn log(&self) -> &[LogEntry] {
        &self.log
    }

    /// Every deadline the thread has had, met or not, in the order set.
    pub fn deadlines(&self) -> Vec<Deadline> {
        self.deadlines.iter().map(|t| t.deadline.clone()).collect()
    }

    /// The unmet deadlines whose time has come; none once the thread is closed.
    pub fn overdue(&self, now: Timestamp) -> Vec<Deadline> {
        if self.state.is_closed() {
            return Vec::new();
        }
        self.deadlines
            .iter()
            .filter(|t| t.deadline.is_overdue(now))
            .map(|t| t.deadline.clone())
            .collect()
    }

    /// The earliest unmet deadline not yet reported by
    /// [`handle_timeout`](Self::handle_timeout); `None` when there is none or
    /// the thread is closed. A driver sleeps until then.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.state.is_closed() {
            return None;
        }
        self.deadlines
            .iter()
            .filter(|t| !t.deadline.met && !t.reported)
            .map(|t| t.deadline.at)
            .min()
    }

    /// Reports, once each, the unmet deadlines whose time has come by `now`
    /// as [`ThreadEvent::DeadlinePassed`]. A deadline met late later still
    /// yields [`ThreadEvent::DeadlineMet`].
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<ThreadEvent> {
        if self.state.is_closed() {
            return Vec::new();
        }
        let mut events = Vec::new();
        for tracked in &mut self.deadlines {
            if !tracked.reported && tracked.deadline.is_overdue(now) {
                tracked.reported = true;
                events.push(ThreadEvent::DeadlinePassed(tracked.deadline.clone()));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{
        Close, ConsentReply, ConsentRequest, FollowUp, Handling, Header, Inquiry, Language, Ping,
        PingReply, Receipt, Response, Text, Urgency,
    };

    const T0: Timestamp = Timestamp(1_795_000_000);

    fn at(span: Seconds) -> Timestamp {
        T0.plus(span)
    }

    fn est() -> PocId {
        PocId::new("EST.cert").unwrap()
    }

    fn fra() -> PocId {
        PocId::new("FRA.cert").unwrap()
    }

    fn thread_id() -> ThreadId {
        ThreadId([7; 16])
    }

    fn mid(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    /// A message on the test thread; `n` gives its id.
    fn msg(from: PocId, to: PocId, n: u8, created: Timestamp, body: Body) -> Message {
        Message {
            header: Header {
                sender: from,
                recipient: to,
                message_id: mid(n),
                thread_id: thread_id(),
                in_reply_to: None,
                created_at: created,
                language: Language::English,
                handling: Handling::Confidential,
                exercise: None,
            },
            body,
        }
    }

    fn inquiry_body(respond_by: Option<Timestamp>) -> Body {
        let mut inquiry = Inquiry::new_minimal(Text::new("DDoS from addresses in your networks"));
        inquiry.time_sensitivity.urgency = Urgency::Urgent;
        inquiry.time_sensitivity.respond_by = respond_by;
        Body::Inquiry(inquiry)
    }

    fn receipt(of: u8, received_at: Timestamp) -> Body {
        Body::Receipt(Receipt {
            acknowledged: mid(of),
            content_digest: [0; 32],
            received_at,
        })
    }

    fn follow_up(eta: Option<Timestamp>) -> Body {
        Body::FollowUp(FollowUp {
            text: Text::new("The reflectors are being patched"),
            indicators: Vec::new(),
            next_update_eta: eta,
            attachments: Vec::new(),
        })
    }

    fn close(reason: CloseReason) -> Body {
        Body::Close(Close { reason, note: None })
    }

    /// EST.cert sends an urgent inquiry at T0, to be answered within 48 h.
    fn outgoing() -> IncidentThread {
        let inquiry = msg(
            est(),
            fra(),
            1,
            T0,
            inquiry_body(Some(at(Seconds::hours(48)))),
        );
        IncidentThread::start(&inquiry, Direction::Sent, T0).unwrap()
    }

    fn kinds(thread: &IncidentThread) -> Vec<(MessageKind, Direction)> {
        thread.log().iter().map(|e| (e.kind, e.direction)).collect()
    }

    #[test]
    fn full_appendix_flow() {
        let mut thread = outgoing();
        let respond_by = at(Seconds::hours(48));
        assert_eq!(thread.state(), ThreadState::Open);
        assert_eq!(thread.id(), thread_id());
        assert_eq!(thread.local_party(), &est());
        assert_eq!(thread.remote_party(), &fra());
        assert!(thread.is_outgoing());
        assert_eq!(thread.next_deadline(), Some(respond_by));

        // Neutral receipt (para 10), 10 minutes later.
        let t_receipt = at(Seconds(600));
        let events = thread
            .apply(
                &msg(fra(), est(), 2, t_receipt, receipt(1, t_receipt)),
                Direction::Received,
                t_receipt,
            )
            .unwrap();
        assert_eq!(
            events,
            [
                ThreadEvent::InquiryReceipted {
                    received_at: t_receipt
                },
                ThreadEvent::StateChanged {
                    from: ThreadState::Open,
                    to: ThreadState::Receipted
                },
            ]
        );
        assert_eq!(thread.receipted_at(), Some(t_receipt));
        // A receipt is not a response: respond-by still open.
        assert_eq!(thread.next_deadline(), Some(respond_by));

        // Response step 2: will follow up, ETA 24 h from the inquiry.
        let t_response = at(Seconds::HOUR);
        let eta = at(Seconds::hours(24));
        let events = thread
            .apply(
                &msg(
                    fra(),
                    est(),
                    3,
                    t_response,
                    Body::Response(Response::will_follow_up(Some(eta), None)),
                ),
                Direction::Received,
                t_response,
            )
            .unwrap();
        let respond_by_met = Deadline {
            kind: DeadlineKind::RespondBy,
            at: respond_by,
            owed_by: fra(),
            met: true,
            met_at: Some(t_response),
        };
        assert_eq!(
            events,
            [
                ThreadEvent::DeadlineMet(respond_by_met.clone()),
                ThreadEvent::FollowUpPromised {
                    by: fra(),
                    eta: Some(eta)
                },
                ThreadEvent::StateChanged {
                    from: ThreadState::Receipted,
                    to: ThreadState::FollowUpPending { eta: Some(eta) }
                },
            ]
        );
        assert_eq!(thread.first_response_at(), Some(t_response));
        assert_eq!(thread.time_to_first_response(), Some(Seconds::HOUR));
        assert_eq!(thread.next_deadline(), Some(eta));

        // Our receipt of the response.
        let t_ack = at(Seconds(3660));
        let events = thread
            .apply(
                &msg(est(), fra(), 4, t_ack, receipt(3, t_ack)),
                Direction::Sent,
                t_ack,
            )
            .unwrap();
        assert_eq!(
            events,
            [ThreadEvent::MessageReceipted {
                acknowledged: mid(3)
            }]
        );

        // The follow-up, 20 h in, with nothing more promised.
        let t_follow = at(Seconds::hours(20));
        let events = thread
            .apply(
                &msg(fra(), est(), 5, t_follow, follow_up(None)),
                Direction::Received,
                t_follow,
            )
            .unwrap();
        let eta_met = Deadline {
            kind: DeadlineKind::Eta,
            at: eta,
            owed_by: fra(),
            met: true,
            met_at: Some(t_follow),
        };
        assert_eq!(
            events,
            [
                ThreadEvent::DeadlineMet(eta_met.clone()),
                ThreadEvent::FollowedUp { by: fra() },
                ThreadEvent::StateChanged {
                    from: ThreadState::FollowUpPending { eta: Some(eta) },
                    to: ThreadState::Answered
                },
            ]
        );
        assert_eq!(thread.next_deadline(), None);

        // We close the thread.
        let t_close = at(Seconds::hours(30));
        let events = thread
            .apply(
                &msg(est(), fra(), 6, t_close, close(CloseReason::Resolved)),
                Direction::Sent,
                t_close,
            )
            .unwrap();
        assert_eq!(
            events,
            [
                ThreadEvent::Closed {
                    reason: CloseReason::Resolved,
                    by: est()
                },
                ThreadEvent::StateChanged {
                    from: ThreadState::Answered,
                    to: ThreadState::Closed {
                        reason: CloseReason::Resolved
                    }
                },
            ]
        );
        assert_eq!(thread.closed_at(), Some(t_close));

        // The receipt of the close still arrives and is recorded.
        let t_last = at(Seconds::hours(31));
        thread
            .apply(
                &msg(fra(), est(), 7, t_last, receipt(6, t_last)),
                Direction::Received,
                t_last,
            )
            .unwrap();

        assert_eq!(thread.deadlines(), [respond_by_met, eta_met]);
        assert!(thread.deadlines().iter().all(|d| !d.met_late()));
        assert_eq!(thread.overdue(at(Seconds::days(30))), []);
        use Direction::{Received, Sent};
        assert_eq!(
            kinds(&thread),
            [
                (MessageKind::Inquiry, Sent),
                (MessageKind::Receipt, Received),
                (MessageKind::Response, Received),
                (MessageKind::Receipt, Sent),
                (MessageKind::FollowUp, Received),
                (MessageKind::Close, Sent),
                (MessageKind::Receipt, Received),
            ]
        );
        let times: Vec<_> = thread.log().iter().map(|e| e.at).collect();
        assert_eq!(
            times,
            [T0, t_receipt, t_response, t_ack, t_follow, t_close, t_last]
        );
        let ids: Vec<_> = thread.log().iter().map(|e| e.message_id).collect();
        assert_eq!(ids, (1..=7).map(mid).collect::<Vec<_>>());
    }

    #[test]
    fn same_flow_seen_by_the_inquired_node() {
        let inquiry = msg(est(), fra(), 1, T0, inquiry_body(None));
        let mut thread = IncidentThread::start(&inquiry, Direction::Received, T0).unwrap();
        assert_eq!(thread.local_party(), &fra());
        assert!(!thread.is_outgoing());
        assert_eq!(thread.next_deadline(), None);
        let steps = [
            (msg(fra(), est(), 2, T0, receipt(1, T0)), Direction::Sent),
            (
                msg(
                    fra(),
                    est(),
                    3,
                    T0,
                    Body::Response(Response::will_follow_up(None, None)),
                ),
                Direction::Sent,
            ),
            (
                msg(est(), fra(), 4, T0, receipt(3, T0)),
                Direction::Received,
            ),
            (msg(fra(), est(), 5, T0, follow_up(None)), Direction::Sent),
            (
                msg(est(), fra(), 6, T0, close(CloseReason::Resolved)),
                Direction::Received,
            ),
        ];
        let mut states = Vec::new();
        for (i, (message, direction)) in steps.iter().enumerate() {
            let now = at(Seconds::hours(i as u64 + 1));
            thread.apply(message, *direction, now).unwrap();
            states.push(thread.state());
        }
        assert_eq!(
            states,
            [
                ThreadState::Receipted,
                ThreadState::FollowUpPending { eta: None },
                ThreadState::FollowUpPending { eta: None },
                ThreadState::Answered,
                ThreadState::Closed {
                    reason: CloseReason::Resolved
                },
            ]
        );
        assert_eq!(thread.receipted_at(), Some(at(Seconds::HOUR)));
        assert_eq!(thread.first_response_at(), Some(at(Seconds::hours(2))));
        // No ETA was given, so there were no deadlines at all.
        assert_eq!(thread.deadlines(), []);
    }

    #[test]
    fn response_before_receipt() {
        let mut thread = outgoing();
        let t1 = at(Seconds::MINUTE);
        let events = thread
            .apply(
                &msg(
                    fra(),
                    est(),
                    3,
                    t1,
                    Body::Response(Response::immediate(Text::new("Blocked upstream"))),
                ),
                Direction::Received,
                t1,
            )
            .unwrap();
        assert!(events.contains(&ThreadEvent::Answered { by: fra() }));
        assert!(events.contains(&ThreadEvent::StateChanged {
            from: ThreadState::Open,
            to: ThreadState::Answered
        }));
        assert_eq!(thread.receipted_at(), None);

        // The receipt was overtaken on the network; it is still recorded.
        let t2 = at(Seconds(120));
        let events = thread
            .apply(
                &msg(fra(), est(), 2, T0, receipt(1, T0)),
                Direction::Received,
                t2,
            )
            .unwrap();
        assert_eq!(events, [ThreadEvent::InquiryReceipted { received_at: T0 }]);
        assert_eq!(thread.state(), ThreadState::Answered);
        assert_eq!(thread.receipted_at(), Some(t2));
        assert_eq!(thread.first_response_at(), Some(t1));
        assert!(thread.deadlines().iter().all(|d| d.met && !d.met_late()));
    }

    #[test]
    fn overdue_respond_by() {
        let mut thread = outgoing();
        let respond_by = at(Seconds::hours(48));
        assert_eq!(thread.overdue(respond_by.minus(Seconds(1))), []);
        assert_eq!(thread.handle_timeout(respond_by.minus(Seconds(1))), []);

        // The clock jumps three days.
        let late = at(Seconds::days(5));
        let overdue = thread.overdue(late);
        assert_eq!(overdue.len(), 1);
        assert_eq!(overdue[0].kind, DeadlineKind::RespondBy);
        assert_eq!(overdue[0].at, respond_by);
        assert_eq!(overdue[0].owed_by, fra());
        assert!(!overdue[0].met);
        // Overdue from its own second on.
        assert_eq!(thread.overdue(respond_by).len(), 1);

        let events = thread.handle_timeout(late);
        assert_eq!(events, [ThreadEvent::DeadlinePassed(overdue[0].clone())]);
        // Reported once; the driver has nothing left to sleep for.
        assert_eq!(thread.handle_timeout(late), []);
        assert_eq!(thread.next_deadline(), None);
        assert_eq!(thread.overdue(late).len(), 1);

        // The response finally comes: met, but late.
        let events = thread
            .apply(
                &msg(
                    fra(),
                    est(),
                    3,
                    late,
                    Body::Response(Response::immediate(Text::new("Sorry, holidays"))),
                ),
                Direction::Received,
                late,
            )
            .unwrap();
        let ThreadEvent::DeadlineMet(met) = &events[0] else {
            panic!("expected DeadlineMet, got {events:?}");
        };
        assert_eq!(met.met_at, Some(late));
        assert!(met.met_late());
        assert_eq!(thread.overdue(late), []);
    }

    #[test]
    fn response_at_the_deadline_second_is_on_time() {
        let mut thread = outgoing();
        let respond_by = at(Seconds::hours(48));
        thread
            .apply(
                &msg(
                    fra(),
                    est(),
                    3,
                    respond_by,
                    Body::Response(Response::immediate(Text::new("ok"))),
                ),
                Direction::Received,
                respond_by,
            )
            .unwrap();
        assert!(!thread.deadlines()[0].met_late());
    }

    #[test]
    fn overdue_eta_and_renewed_promise() {
        let mut thread = outgoing();
        let eta = at(Seconds::hours(24));
        thread
            .apply(
                &msg(
                    fra(),
                    est(),
                    3,
                    T0,
                    Body::Response(Response::will_follow_up(Some(eta), None)),
                ),
                Direction::Received,
                at(Seconds::HOUR),
            )
            .unwrap();
        assert_eq!(thread.next_deadline(), Some(eta));
        assert_eq!(thread.overdue(at(Seconds::hours(23))), []);

        // Jump to 30 h: the ETA has passed unmet.
        let t30 = at(Seconds::hours(30));
        let overdue = thread.overdue(t30);
        assert_eq!(overdue.len(), 1);
        assert_eq!(overdue[0].kind, DeadlineKind::Eta);
        assert_eq!(overdue[0].at, eta);
        let events = thread.handle_timeout(t30);
        assert_eq!(events.len(), 1);
        // respond_by (48 h) is met, so nothing is left to wait for.
        assert_eq!(thread.next_deadline(), None);

        // A late follow-up promising the next update in 2 days.
        let t40 = at(Seconds::hours(40));
        let next = at(Seconds::hours(88));
        let events = thread
            .apply(
                &msg(fra(), est(), 4, t40, follow_up(Some(next))),
                Direction::Received,
                t40,
            )
            .unwrap();
        let ThreadEvent::DeadlineMet(met) = &events[0] else {
            panic!("expected DeadlineMet, got {events:?}");
        };
        assert_eq!(
            (met.kind, met.at, met.met_late()),
            (DeadlineKind::Eta, eta, true)
        );
        assert!(events.contains(&ThreadEvent::FollowUpPromised {
            by: fra(),
            eta: Some(next)
        }));
        assert_eq!(
            thread.state(),
            ThreadState::FollowUpPending { eta: Some(next) }
        );
        assert_eq!(thread.next_deadline(), Some(next));
        assert_eq!(thread.overdue(at(Seconds::days(10))).len(), 1);
        assert_eq!(thread.deadlines().len(), 3);

        // Closing meets the closer's own ETA and ends all deadline tracking.
        thread
            .apply(
                &msg(fra(), est(), 5, t40, close(CloseReason::NoFurtherAction)),
                Direction::Received,
                at(Seconds::hours(50)),
            )
            .unwrap();
        assert_eq!(thread.next_deadline(), None);
        assert_eq!(thread.overdue(at(Seconds::days(10))), []);
        assert_eq!(thread.handle_timeout(at(Seconds::days(10))), []);
        assert!(thread.deadlines().iter().all(|d| d.met));
    }

    #[test]
    fn follow_up_after_answered() {
        let mut thread = outgoing();
        let answer = Body::Response(Response::immediate(Text::new("Handled")));
        thread
            .apply(&msg(fra(), est(), 2, T0, answer), Direction::Received, T0)
            .unwrap();
        assert_eq!(thread.state(), ThreadState::Answered);

        // Without an ETA, the thread stays answered.
        let events = thread
            .apply(
                &msg(est(), fra(), 3, T0, follow_up(None)),
                Direction::Sent,
                T0,
            )
            .unwrap();
        assert_eq!(events, [ThreadEvent::FollowedUp { by: est() }]);
        assert_eq!(thread.state(), ThreadState::Answered);

        // With one, it waits for the promised update again.
        let eta = at(Seconds::DAY);
        thread
            .apply(
                &msg(fra(), est(), 4, T0, follow_up(Some(eta))),
                Direction::Received,
                T0,
            )
            .unwrap();
        assert_eq!(
            thread.state(),
            ThreadState::FollowUpPending { eta: Some(eta) }
        );

        // Our own follow-up does not keep their promise.
        thread
            .apply(
                &msg(est(), fra(), 5, T0, follow_up(None)),
                Direction::Sent,
                T0,
            )
            .unwrap();
        assert_eq!(
            thread.state(),
            ThreadState::FollowUpPending { eta: Some(eta) }
        );

        // Theirs does.
        thread
            .apply(
                &msg(fra(), est(), 6, T0, follow_up(None)),
                Direction::Received,
                T0,
            )
            .unwrap();
        assert_eq!(thread.state(), ThreadState::Answered);
    }

    #[test]
    fn follow_up_before_any_response_keeps_waiting() {
        let mut thread = outgoing();
        let events = thread
            .apply(
                &msg(est(), fra(), 2, T0, follow_up(Some(at(Seconds::HOUR)))),
                Direction::Sent,
                T0,
            )
            .unwrap();
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, ThreadEvent::StateChanged { .. }))
        );
        assert_eq!(thread.state(), ThreadState::Open);
        // Our own promise is tracked as a deadline we owe.
        assert_eq!(thread.next_deadline(), Some(at(Seconds::HOUR)));
        assert_eq!(thread.deadlines()[1].owed_by, est());
    }

    #[test]
    fn exercise_marker_must_match() {
        let exercise = ExerciseId("CYBEX-2026".into());
        let mut inquiry = msg(est(), fra(), 1, T0, inquiry_body(None));
        inquiry.header.exercise = Some(exercise.clone());
        let mut thread = IncidentThread::start(&inquiry, Direction::Sent, T0).unwrap();
        assert_eq!(thread.exercise(), Some(&exercise));

        // A reply that drops the marker is refused...
        let mut reply = msg(fra(), est(), 2, T0, receipt(1, T0));
        let err = thread.apply(&reply, Direction::Received, T0).unwrap_err();
        assert_eq!(
            err,
            ThreadError::ExerciseMismatch {
                expected: Some(exercise.clone()),
                found: None
            }
        );
        assert!(err.to_string().contains("real (no exercise marker)"));
        // ...as is one that changes it...
        reply.header.exercise = Some(ExerciseId("OTHER".into()));
        assert!(matches!(
            thread.apply(&reply, Direction::Received, T0),
            Err(ThreadError::ExerciseMismatch { .. })
        ));
        assert_eq!(thread.state(), ThreadState::Open);
        assert_eq!(thread.log().len(), 1);
        // ...and one that keeps it is accepted.
        reply.header.exercise = Some(exercise);
        thread.apply(&reply, Direction::Received, T0).unwrap();
        assert_eq!(thread.state(), ThreadState::Receipted);

        // A real thread refuses a message that adds a marker.
        let mut real = outgoing();
        let mut marked = msg(fra(), est(), 2, T0, receipt(1, T0));
        marked.header.exercise = Some(ExerciseId("CYBEX-2026".into()));
        assert!(matches!(
            real.apply(&marked, Direction::Received, T0),
            Err(ThreadError::ExerciseMismatch { expected: None, .. })
        ));
    }

    #[test]
    fn rejects_what_does_not_belong() {
        let mut thread = outgoing();
        let ken = PocId::new("KEN.cert").unwrap();
        let answer = || Body::Response(Response::immediate(Text::new("x")));

        let mut other = msg(fra(), est(), 2, T0, answer());
        other.header.thread_id = ThreadId([9; 16]);
        assert_eq!(
            thread.apply(&other, Direction::Received, T0),
            Err(ThreadError::WrongThread {
                expected: thread_id(),
                found: ThreadId([9; 16])
            })
        );

        let ping = Body::Ping(Ping {
            campaign: crate::message::CampaignId([1; 16]),
            reply_by: T0,
        });
        assert_eq!(
            thread.apply(&msg(fra(), est(), 2, T0, ping), Direction::Received, T0),
            Err(ThreadError::NotThreadTraffic(MessageKind::Ping))
        );
        let pong = Body::PingReply(PingReply {
            campaign: crate::message::CampaignId([1; 16]),
        });
        assert_eq!(
            thread.apply(&msg(est(), fra(), 2, T0, pong), Direction::Sent, T0),
            Err(ThreadError::NotThreadTraffic(MessageKind::PingReply))
        );

        assert!(matches!(
            thread.apply(
                &msg(ken.clone(), est(), 2, T0, answer()),
                Direction::Received,
                T0
            ),
            Err(ThreadError::NotParties { .. })
        ));
        assert!(matches!(
            thread.apply(&msg(fra(), ken, 2, T0, answer()), Direction::Received, T0),
            Err(ThreadError::NotParties { .. })
        ));
        assert!(matches!(
            thread.apply(
                &msg(est(), est(), 2, T0, follow_up(None)),
                Direction::Sent,
                T0
            ),
            Err(ThreadError::NotParties { .. })
        ));
        // We cannot have "sent" FRA's response, nor "received" our own follow-up.
        assert!(matches!(
            thread.apply(&msg(fra(), est(), 2, T0, answer()), Direction::Sent, T0),
            Err(ThreadError::WrongDirection { .. })
        ));
        assert!(matches!(
            thread.apply(
                &msg(est(), fra(), 2, T0, follow_up(None)),
                Direction::Received,
                T0
            ),
            Err(ThreadError::WrongDirection { .. })
        ));

        assert_eq!(
            thread.apply(
                &msg(est(), fra(), 2, T0, inquiry_body(None)),
                Direction::Sent,
                T0
            ),
            Err(ThreadError::SecondInquiry)
        );
        assert_eq!(
            thread.apply(
                &msg(est(), fra(), 1, T0, follow_up(None)),
                Direction::Sent,
                T0
            ),
            Err(ThreadError::DuplicateMessage(mid(1)))
        );
        assert_eq!(
            thread.apply(&msg(est(), fra(), 2, T0, answer()), Direction::Sent, T0),
            Err(ThreadError::ResponseFromInquirer(est()))
        );
        // A receipt must acknowledge a message its sender received here.
        assert_eq!(
            thread.apply(
                &msg(fra(), est(), 2, T0, receipt(42, T0)),
                Direction::Received,
                T0
            ),
            Err(ThreadError::ReceiptMismatch {
                acknowledged: mid(42)
            })
        );
        assert_eq!(
            thread.apply(
                &msg(est(), fra(), 2, T0, receipt(1, T0)),
                Direction::Sent,
                T0
            ),
            Err(ThreadError::ReceiptMismatch {
                acknowledged: mid(1)
            })
        );
        // Nothing above changed the thread.
        assert_eq!(thread.log().len(), 1);
        assert_eq!(thread.state(), ThreadState::Open);

        thread
            .apply(
                &msg(est(), fra(), 2, T0, close(CloseReason::Withdrawn)),
                Direction::Sent,
                T0,
            )
            .unwrap();
        assert_eq!(
            thread.apply(&msg(fra(), est(), 3, T0, answer()), Direction::Received, T0),
            Err(ThreadError::ThreadClosed {
                kind: MessageKind::Response
            })
        );
        assert_eq!(
            thread.apply(
                &msg(est(), fra(), 3, T0, close(CloseReason::Resolved)),
                Direction::Sent,
                T0
            ),
            Err(ThreadError::ThreadClosed {
                kind: MessageKind::Close
            })
        );
        // The receipt of the close is still welcome.
        thread
            .apply(
                &msg(fra(), est(), 3, T0, receipt(2, T0)),
                Direction::Received,
                T0,
            )
            .unwrap();
    }

    #[test]
    fn start_needs_an_inquiry_between_two_pocs() {
        assert_eq!(
            IncidentThread::start(
                &msg(est(), fra(), 1, T0, follow_up(None)),
                Direction::Sent,
                T0
            )
            .unwrap_err(),
            ThreadError::NotAnInquiry(MessageKind::FollowUp)
        );
        assert_eq!(
            IncidentThread::start(
                &msg(est(), est(), 1, T0, inquiry_body(None)),
                Direction::Sent,
                T0
            )
            .unwrap_err(),
            ThreadError::SelfAddressed(est())
        );
    }

    #[test]
    fn consent_exchange_is_recorded() {
        let mut thread = outgoing();
        let request = Body::ConsentRequest(ConsentRequest {
            third_party: "EU CSIRTs Network".into(),
            purpose: Text::new("Warn other members"),
            proposed_handling: Handling::Confidential,
        });
        let events = thread
            .apply(&msg(est(), fra(), 2, T0, request), Direction::Sent, T0)
            .unwrap();
        assert_eq!(
            events,
            [ThreadEvent::ConsentRequested {
                request: mid(2),
                by: est(),
                third_party: "EU CSIRTs Network".into()
            }]
        );
        let reply = Body::ConsentReply(ConsentReply {
            request: mid(2),
            granted: false,
            note: None,
        });
        let events = thread
            .apply(&msg(fra(), est(), 3, T0, reply), Direction::Received, T0)
            .unwrap();
        assert_eq!(
            events,
            [ThreadEvent::ConsentAnswered {
                request: mid(2),
                by: fra(),
                granted: false
            }]
        );
        assert_eq!(thread.state(), ThreadState::Open);
    }

    #[test]
    fn consent_is_given_only_by_the_party_asked() {
        let mut thread = outgoing();
        let request = Body::ConsentRequest(ConsentRequest {
            third_party: "EU CSIRTs Network".into(),
            purpose: Text::new("Warn other members"),
            proposed_handling: Handling::Confidential,
        });
        thread
            .apply(&msg(est(), fra(), 2, T0, request), Direction::Sent, T0)
            .unwrap();
        let grant = |of: u8| {
            Body::ConsentReply(ConsentReply {
                request: mid(of),
                granted: true,
                note: None,
            })
        };
        // The asker cannot grant its own request, nor can anyone answer a
        // message that is not a consent request of the thread (here the
        // inquiry, 1) or that the thread never saw (9).
        for (n, from, to, direction, of) in [
            (3, est(), fra(), Direction::Sent, 2),
            (4, fra(), est(), Direction::Received, 1),
            (5, fra(), est(), Direction::Received, 9),
        ] {
            let before = thread.log().len();
            assert_eq!(
                thread.apply(&msg(from, to, n, T0, grant(of)), direction, T0),
                Err(ThreadError::ConsentReplyMismatch { request: mid(of) }),
                "reply {n}"
            );
            assert_eq!(thread.log().len(), before);
        }
        // The party asked answers.
        assert_eq!(
            thread
                .apply(&msg(fra(), est(), 6, T0, grant(2)), Direction::Received, T0)
                .unwrap(),
            [ThreadEvent::ConsentAnswered {
                request: mid(2),
                by: fra(),
                granted: true
            }]
        );
    }

    #[test]
    fn next_deadline_is_the_earliest_unmet() {
        let mut thread = outgoing();
        let eta = at(Seconds::hours(12));
        thread
            .apply(
                &msg(
                    fra(),
                    est(),
                    2,
                    T0,
                    Body::Response(Response::will_follow_up(Some(eta), None)),
                ),
                Direction::Received,
                T0,
            )
            .unwrap();
        // respond_by (48 h) is met by the response; the ETA (12 h) is next.
        assert_eq!(thread.next_deadline(), Some(eta));
        // Our own promise of an update in 6 h comes first.
        thread
            .apply(
                &msg(est(), fra(), 3, T0, follow_up(Some(at(Seconds::hours(6))))),
                Direction::Sent,
                T0,
            )
            .unwrap();
        assert_eq!(thread.next_deadline(), Some(at(Seconds::hours(6))));
        assert_eq!(
            thread.state(),
            ThreadState::FollowUpPending {
                eta: Some(at(Seconds::hours(6)))
            }
        );
        assert_eq!(thread.handle_timeout(at(Seconds::hours(6))).len(), 1);
        assert_eq!(thread.next_deadline(), Some(eta));
    }
}
