//! What happened during a run (the controller's state file), and its pure
//! evaluation against the scenario: which injects went out, which expected
//! actions were met, late, missed or still pending.

use poc_proto::message::CampaignId;
use poc_proto::{MessageId, PocId, ThreadId};
use serde::{Deserialize, Serialize};

use crate::scenario::{ExpectKind, Expectation, InjectMode, Scenario};

/// The controller's state file: the scenario and everything observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLog {
    /// The scenario as run (with any time scale override applied).
    pub scenario: Scenario,
    /// T, in real milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// When the controller last updated this log.
    pub updated_ms: u64,
    /// When the run ended, if it has.
    pub ended_ms: Option<u64>,
    /// Injects fired so far.
    pub injects: Vec<InjectRecord>,
    /// Every exercise message seen on the participants' nodes.
    pub messages: Vec<ObservedMessage>,
    /// What the controller did for automated players, and what it told
    /// human players.
    pub actions: Vec<ActionRecord>,
}

/// One inject as fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectRecord {
    /// The inject's id.
    pub inject: String,
    /// When it fired (real ms).
    pub at_ms: u64,
    /// Sent by the controller, or told to the player.
    pub mode: InjectMode,
    /// One per recipient.
    pub sends: Vec<InjectSend>,
}

/// An inject's message to one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectSend {
    /// The recipient participant.
    pub to: String,
    /// The message, if sent.
    pub message_id: Option<MessageId>,
    /// Its thread, if sent.
    pub thread_id: Option<ThreadId>,
    /// Why it could not be sent.
    pub error: Option<String>,
}

/// One exercise message, as seen on the sender's and/or recipient's node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedMessage {
    /// Message id.
    pub message_id: MessageId,
    /// Thread.
    pub thread_id: ThreadId,
    /// Kind (`inquiry`, `receipt`, `response`, `follow-up`, `close`,
    /// `ping`, `ping reply`, ...).
    pub kind: String,
    /// For responses: `eta` or `answer`.
    pub detail: Option<String>,
    /// For pings: the campaign (a ping reply names it).
    pub campaign: Option<CampaignId>,
    /// Sender.
    pub from: PocId,
    /// Recipient.
    pub to: PocId,
    /// The exercise marker it carries.
    pub exercise: Option<String>,
    /// When it was sent (real ms; from the sender's record).
    pub sent_ms: Option<u64>,
    /// When it was received (real ms; from the recipient's record).
    pub received_ms: Option<u64>,
}

impl ObservedMessage {
    /// The best known time of sending.
    pub fn time_ms(&self) -> u64 {
        self.sent_ms.or(self.received_ms).unwrap_or(0)
    }
}

/// Something the controller did or said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// When (real ms).
    pub at_ms: u64,
    /// The expectation it answers, or the inject it announces.
    pub step: String,
    /// The participant concerned.
    pub who: String,
    /// What was done or said.
    pub what: String,
    /// The message sent, for automated players.
    pub message_id: Option<MessageId>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Where an inject stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InjectOutcome {
    /// Not yet due.
    Pending,
    /// Sent through the sender's node.
    Sent,
    /// Told to a human player, who has not sent it (yet).
    Instructed,
    /// Told to a human player, who sent it.
    Performed,
    /// Could not be sent.
    Failed,
    /// The exercise ended before it was due.
    NotReached,
}

/// Where an expected action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Done within the deadline.
    Met,
    /// Done after the deadline.
    Late,
    /// Not done, and the exercise has ended.
    Missed,
    /// Not done, the deadline has passed, the exercise runs on.
    Overdue,
    /// Not done, the deadline is still ahead.
    Pending,
    /// What it follows has not happened yet.
    Waiting,
    /// What it follows never happened.
    NotReached,
}

impl Outcome {
    /// The word used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Met => "met",
            Outcome::Late => "late",
            Outcome::Missed => "missed",
            Outcome::Overdue => "overdue",
            Outcome::Pending => "pending",
            Outcome::Waiting => "waiting",
            Outcome::NotReached => "not reached",
        }
    }

    /// Whether the step is settled (nothing more can change it but a late answer).
    pub fn is_done(self) -> bool {
        matches!(self, Outcome::Met | Outcome::Late)
    }
}

/// An inject, evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectResult {
    /// Its id.
    pub id: String,
    /// Where it stands.
    pub outcome: InjectOutcome,
    /// When it happened (real ms), if it did.
    pub at_ms: Option<u64>,
    /// Messages that carried it, one per recipient: (recipient, message, thread).
    pub messages: Vec<(String, MessageId, ThreadId)>,
}

/// An expected action, evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectResult {
    /// Its id.
    pub id: String,
    /// Where it stands.
    pub outcome: Outcome,
    /// When what it follows happened (real ms).
    pub anchor_ms: Option<u64>,
    /// The deadline (real ms).
    pub deadline_ms: Option<u64>,
    /// When it was done (real ms).
    pub done_ms: Option<u64>,
    /// The message that did it.
    pub message_id: Option<MessageId>,
    /// The thread it belongs to, once known.
    pub thread_id: Option<ThreadId>,
    /// The message it answers on that thread (the anchor), if any.
    pub anchor_message: Option<MessageId>,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Per inject, in scenario order.
    pub injects: Vec<InjectResult>,
    /// Per expectation, in scenario order.
    pub expectations: Vec<ExpectResult>,
}

impl RunLog {
    /// A fresh log for a run starting at `started_ms`.
    pub fn new(scenario: Scenario, started_ms: u64) -> RunLog {
        RunLog {
            scenario,
            started_ms,
            updated_ms: started_ms,
            ended_ms: None,
            injects: Vec::new(),
            messages: Vec::new(),
            actions: Vec::new(),
        }
    }

    /// Scenario seconds at real time `ms`.
    pub fn scenario_seconds(&self, ms: u64) -> u64 {
        ms.saturating_sub(self.started_ms)
            .saturating_mul(u64::from(self.scenario.time_scale.max(1)))
            / 1000
    }

    /// Real milliseconds for a span of scenario seconds.
    pub fn real_ms(&self, scenario_seconds: u64) -> u64 {
        scenario_seconds.saturating_mul(1000) / u64::from(self.scenario.time_scale.max(1))
    }

    /// Records a message seen on a node, merging what the other side saw.
    pub fn observe(&mut self, seen: ObservedMessage) {
        if let Some(known) = self
            .messages
            .iter_mut()
            .find(|m| m.message_id == seen.message_id && m.from == seen.from)
        {
            known.sent_ms = known.sent_ms.or(seen.sent_ms);
            known.received_ms = known.received_ms.or(seen.received_ms);
            known.detail = known.detail.take().or(seen.detail);
            known.campaign = known.campaign.or(seen.campaign);
        } else {
            self.messages.push(seen);
            self.messages.sort_by_key(ObservedMessage::time_ms);
        }
    }

    fn poc_of(&self, name: &str) -> Option<&PocId> {
        self.scenario.participant(name).map(|p| &p.poc)
    }

    /// Evaluates the run as of real time `now_ms`.
    pub fn evaluate(&self, now_ms: u64) -> Evaluation {
        let finished = self.ended_ms.is_some();
        let injects: Vec<InjectResult> = self
            .scenario
            .injects
            .iter()
            .map(|inject| {
                let record = self.injects.iter().find(|r| r.inject == inject.id);
                let Some(record) = record else {
                    return InjectResult {
                        id: inject.id.clone(),
                        outcome: if finished {
                            InjectOutcome::NotReached
                        } else {
                            InjectOutcome::Pending
                        },
                        at_ms: None,
                        messages: Vec::new(),
                    };
                };
                let mut messages = Vec::new();
                for send in &record.sends {
                    if let (Some(m), Some(t)) = (send.message_id, send.thread_id) {
                        messages.push((send.to.clone(), m, t));
                    } else if record.mode == InjectMode::Instruct {
                        // The player sends it: the first matching message.
                        let from = self.poc_of(&inject.from);
                        let to = self.poc_of(&send.to);
                        if let Some(m) = self.messages.iter().find(|m| {
                            Some(&m.from) == from
                                && Some(&m.to) == to
                                && m.kind == inject.kind.name()
                                && m.time_ms() + 1000 >= record.at_ms
                        }) {
                            messages.push((send.to.clone(), m.message_id, m.thread_id));
                        }
                    }
                }
                let sent_all = !record.sends.is_empty() && messages.len() == record.sends.len();
                let outcome = match record.mode {
                    InjectMode::Send if sent_all => InjectOutcome::Sent,
                    InjectMode::Send => InjectOutcome::Failed,
                    InjectMode::Instruct if sent_all => InjectOutcome::Performed,
                    InjectMode::Instruct => InjectOutcome::Instructed,
                };
                let at_ms = match record.mode {
                    // A send that reached no one did not happen.
                    InjectMode::Send => (!messages.is_empty()).then_some(record.at_ms),
                    InjectMode::Instruct => messages
                        .iter()
                        .filter_map(|(_, id, _)| self.message(id))
                        .map(ObservedMessage::time_ms)
                        .min(),
                };
                InjectResult {
                    id: inject.id.clone(),
                    outcome,
                    at_ms,
                    messages,
                }
            })
            .collect();

        let mut expectations: Vec<ExpectResult> = Vec::new();
        for exp in &self.scenario.expectations {
            let result = self.evaluate_one(exp, &injects, &expectations, now_ms, finished);
            expectations.push(result);
        }
        Evaluation {
            injects,
            expectations,
        }
    }

    /// A message by id.
    pub fn message(&self, id: &MessageId) -> Option<&ObservedMessage> {
        self.messages.iter().find(|m| &m.message_id == id)
    }

    /// The thread of inject `id` or expectation `id`, as seen by `who`.
    fn thread_of(
        &self,
        id: &str,
        who: &str,
        injects: &[InjectResult],
        done: &[ExpectResult],
    ) -> Option<ThreadId> {
        if let Some(inject) = injects.iter().find(|i| i.id == id) {
            return inject
                .messages
                .iter()
                .find(|(to, _, _)| to == who)
                .or(inject.messages.first())
                .map(|(_, _, thread)| *thread);
        }
        done.iter().find(|e| e.id == id).and_then(|e| e.thread_id)
    }

    fn evaluate_one(
        &self,
        exp: &Expectation,
        injects: &[InjectResult],
        done: &[ExpectResult],
        now_ms: u64,
        finished: bool,
    ) -> ExpectResult {
        let mut result = ExpectResult {
            id: exp.id.clone(),
            outcome: if finished {
                Outcome::NotReached
            } else {
                Outcome::Waiting
            },
            anchor_ms: None,
            deadline_ms: None,
            done_ms: None,
            message_id: None,
            thread_id: None,
            anchor_message: None,
        };
        // When what it follows happened, and the message that was.
        let anchor = if let Some(inject) = injects.iter().find(|i| i.id == exp.after) {
            let message = inject
                .messages
                .iter()
                .find(|(to, _, _)| to == &exp.who)
                .or(inject.messages.first())
                .map(|(_, m, _)| *m);
            inject.at_ms.map(|at| (at, message))
        } else {
            done.iter()
                .find(|e| e.id == exp.after)
                .and_then(|e| e.done_ms.map(|at| (at, e.message_id)))
        };
        let Some((anchor_ms, anchor_message)) = anchor else {
            return result;
        };
        let thread = match exp.kind {
            ExpectKind::Inquiry => None,
            _ => self.thread_of(
                exp.thread.as_deref().unwrap_or(&exp.after),
                &exp.who,
                injects,
                done,
            ),
        };
        let deadline_ms = anchor_ms.saturating_add(self.real_ms(exp.within));
        result.anchor_ms = Some(anchor_ms);
        result.deadline_ms = Some(deadline_ms);
        result.thread_id = thread;
        result.anchor_message = anchor_message;
        let who = self.poc_of(&exp.who);
        let to = exp.to.as_deref().and_then(|t| self.poc_of(t));
        let found = self.messages.iter().find(|m| {
            Some(&m.from) == who
                && Some(m.message_id) != anchor_message
                && m.time_ms() >= anchor_ms
                && kind_matches(exp.kind, m)
                && to.is_none_or(|t| &m.to == t)
                && (exp.kind == ExpectKind::Inquiry || thread == Some(m.thread_id))
        });
        match found {
            Some(m) => {
                let at = m.time_ms();
                result.done_ms = Some(at);
                result.message_id = Some(m.message_id);
                if exp.kind == ExpectKind::Inquiry {
                    result.thread_id = Some(m.thread_id);
                }
                result.outcome = if at <= deadline_ms {
                    Outcome::Met
                } else {
                    Outcome::Late
                };
            }
            None if now_ms >= deadline_ms => {
                result.outcome = if finished {
                    Outcome::Missed
                } else {
                    Outcome::Overdue
                };
            }
            None => result.outcome = Outcome::Pending,
        }
        if result.outcome == Outcome::Pending && finished {
            result.outcome = Outcome::Missed;
        }
        result
    }
}

/// Whether an observed message is the kind of action expected.
fn kind_matches(kind: ExpectKind, m: &ObservedMessage) -> bool {
    match kind {
        ExpectKind::Receipt => m.kind == "receipt",
        ExpectKind::Response => m.kind == "response",
        ExpectKind::ResponseEta => m.kind == "response" && m.detail.as_deref() == Some("eta"),
        ExpectKind::ResponseAnswer => m.kind == "response" && m.detail.as_deref() == Some("answer"),
        ExpectKind::FollowUp => m.kind == "follow-up",
        ExpectKind::Close => m.kind == "close",
        ExpectKind::Inquiry => m.kind == "inquiry",
        ExpectKind::PingReply => m.kind == "ping reply",
    }
}
