//! The exercise controller: drives a scenario through the participants' real
//! nodes (their pocd control sockets), watches what happens, acts for
//! automated players, tells human players what to do, and keeps its state
//! file current so `poc exercise status` shows progress live.
//!
//! Every message the controller sends carries the exercise marker; the
//! nodes themselves refuse to continue an exercise thread without it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use poc_control::{
    Client, ClientError, Request, SendAccepted, SendRequest, StatusView, ThreadSummary, ThreadView,
};
use poc_proto::message::{Attachment, CampaignId, ExerciseId, Language, Ping, PingReply};
use poc_proto::{Body, MessageId, PocId, Seconds, ThreadId, Timestamp};

use crate::content;
use crate::run::{ActionRecord, InjectRecord, InjectSend, ObservedMessage, Outcome, RunLog};
use crate::scenario::{
    ExpectKind, Expectation, Inject, InjectKind, InjectMode, Player, Scenario, format_offset,
    format_span,
};

/// Why a run could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// A participant has no control socket.
    #[error(
        "participant {participant}: no control socket; give `socket` in the scenario, --nodes-dir, or --node {participant}=PATH"
    )]
    NoSocket {
        /// The participant.
        participant: String,
    },
    /// A node could not be reached.
    #[error("participant {participant}: cannot reach its node at {path}: {source}")]
    Unreachable {
        /// The participant.
        participant: String,
        /// The socket.
        path: String,
        /// Why.
        source: ClientError,
    },
    /// The socket belongs to another PoC's node.
    #[error("participant {participant}: the node at {path} is {found}, not {expected}")]
    WrongNode {
        /// The participant.
        participant: String,
        /// The socket.
        path: String,
        /// Who the scenario says.
        expected: PocId,
        /// Who the node is.
        found: PocId,
    },
    /// An attachment cannot be read.
    #[error("{field}: cannot read {path}: {source}")]
    Attachment {
        /// The scenario field.
        field: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The state file cannot be written.
    #[error("cannot write the exercise state file {path}: {source}")]
    StateFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where to keep the run's state (read by `poc exercise status|report`).
    pub state_file: PathBuf,
    /// End as soon as every inject went out and every expected action was
    /// taken, instead of at the scenario's end time.
    pub until_complete: bool,
    /// How often to poll the nodes.
    pub tick: Duration,
}

/// Real time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Writes the state file atomically (temporary file, then rename).
pub fn write_state(path: &Path, log: &RunLog) -> Result<(), ControllerError> {
    let err = |source| ControllerError::StateFile {
        path: path.display().to_string(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(log).map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads a state file.
pub fn read_state(path: &Path) -> Result<RunLog, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not an exercise state file: {e}", path.display()))
}

struct NodeLink {
    socket: PathBuf,
    client: Option<Client>,
}

impl NodeLink {
    fn call<T: serde::de::DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<T, ClientError> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.socket)?);
        }
        let Some(client) = self.client.as_mut() else {
            return Err(ClientError::Io(std::io::Error::other("not connected")));
        };
        let result = client.call(request);
        if matches!(result, Err(ClientError::Io(_) | ClientError::Protocol(_))) {
            // Reconnect next time.
            self.client = None;
        }
        result
    }
}

/// The running controller.
struct Controller<'a> {
    log: RunLog,
    nodes: BTreeMap<String, NodeLink>,
    attachments: BTreeMap<PathBuf, Attachment>,
    acted: BTreeSet<String>,
    seen: BTreeMap<(String, ThreadId), (u32, Timestamp)>,
    say: &'a mut dyn FnMut(&str),
}

/// Runs `scenario` to its end; `sockets` gives each participant's control
/// socket; `say` receives every line meant for the controller's screen.
pub fn run(
    scenario: Scenario,
    sockets: &BTreeMap<String, PathBuf>,
    options: &RunOptions,
    say: &mut dyn FnMut(&str),
) -> Result<RunLog, ControllerError> {
    let mut nodes = BTreeMap::new();
    for p in &scenario.participants {
        let socket = sockets
            .get(&p.name)
            .cloned()
            .ok_or_else(|| ControllerError::NoSocket {
                participant: p.name.clone(),
            })?;
        let mut link = NodeLink {
            socket: socket.clone(),
            client: None,
        };
        let status: StatusView =
            link.call(&Request::Status)
                .map_err(|source| ControllerError::Unreachable {
                    participant: p.name.clone(),
                    path: socket.display().to_string(),
                    source,
                })?;
        if status.poc_id != p.poc {
            return Err(ControllerError::WrongNode {
                participant: p.name.clone(),
                path: socket.display().to_string(),
                expected: p.poc.clone(),
                found: status.poc_id,
            });
        }
        nodes.insert(p.name.clone(), link);
    }
    let mut attachments = BTreeMap::new();
    for (field, path) in scenario.attachment_files() {
        let bytes = std::fs::read(path).map_err(|source| ControllerError::Attachment {
            field,
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        attachments.insert(path.to_path_buf(), content::attachment(&name, bytes));
    }
    let banner = crate::report::banner(&scenario.id);
    say(&banner);
    say(&format!(
        "{}: {} participants, {} injects, {} expected actions; ends at {} ({} real seconds at {}x)",
        scenario.title,
        scenario.participants.len(),
        scenario.injects.len(),
        scenario.expectations.len(),
        format_offset(scenario.duration),
        scenario.real_seconds(scenario.duration).ceil(),
        scenario.time_scale
    ));
    let mut c = Controller {
        log: RunLog::new(scenario, now_ms()),
        nodes,
        attachments,
        acted: BTreeSet::new(),
        seen: BTreeMap::new(),
        say,
    };
    write_state(&options.state_file, &c.log)?;
    loop {
        let now = now_ms();
        let elapsed = c.log.scenario_seconds(now);
        c.fire_due_injects(now, elapsed);
        c.observe_all(now_ms());
        c.act(now_ms());
        c.log.updated_ms = now_ms();
        write_state(&options.state_file, &c.log)?;
        let complete = c.log.injects.len() == c.log.scenario.injects.len()
            && c.log
                .evaluate(now_ms())
                .expectations
                .iter()
                .all(|e| e.outcome.is_done());
        if elapsed >= c.log.scenario.duration || (options.until_complete && complete) {
            break;
        }
        std::thread::sleep(options.tick);
    }
    // Let receipts in flight land, then take the last look.
    std::thread::sleep(Duration::from_millis(500));
    c.observe_all(now_ms());
    let end = now_ms();
    c.log.ended_ms = Some(end);
    c.log.updated_ms = end;
    write_state(&options.state_file, &c.log)?;
    let report = crate::report::build(&c.log, end);
    let line = format!(
        "exercise ended at {}: {} expected actions, {} met, {} late, {} missed",
        format_offset(report.exercise.elapsed_s),
        report.totals.expected,
        report.totals.met,
        report.totals.late,
        report.totals.missed
    );
    (c.say)(&line);
    (c.say)(&banner);
    Ok(c.log)
}

/// Real time from real milliseconds, as the protocol counts it.
fn timestamp(ms: u64) -> Timestamp {
    Timestamp(ms / 1000)
}

impl Controller<'_> {
    fn line(&mut self, now: u64, text: &str) {
        let at = format_offset(self.log.scenario_seconds(now));
        let id = self.log.scenario.id.clone();
        (self.say)(&format!("[EXERCISE {id} {at}] {text}"));
    }

    fn language(&self) -> Language {
        Language::from_tag(&self.log.scenario.language).unwrap_or(Language::English)
    }

    fn send(
        &mut self,
        from: &str,
        to: PocId,
        thread: Option<ThreadId>,
        in_reply_to: Option<MessageId>,
        body: Body,
    ) -> Result<SendAccepted, String> {
        let request = SendRequest {
            to,
            thread,
            in_reply_to,
            language: self.language(),
            handling: content::handling(&self.log.scenario.handling).unwrap_or_default(),
            exercise: Some(ExerciseId(self.log.scenario.id.clone())),
            body,
        };
        let node = self
            .nodes
            .get_mut(from)
            .ok_or_else(|| format!("no node for {from}"))?;
        node.call(&Request::Send(Box::new(request)))
            .map_err(|e| e.to_string())
    }

    /// The latest substantive message from `peer` on `thread`, as recorded
    /// by `who`'s node (what a reply answers).
    fn last_from(&mut self, who: &str, thread: ThreadId, peer: &PocId) -> Option<MessageId> {
        let view: ThreadView = self
            .nodes
            .get_mut(who)?
            .call(&Request::Thread { thread })
            .ok()?;
        view.messages
            .iter()
            .rev()
            .find(|m| &m.sender == peer && !matches!(m.body, Body::Receipt(_)))
            .or_else(|| view.messages.first())
            .map(|m| m.message_id)
    }

    fn fire_due_injects(&mut self, now: u64, elapsed: u64) {
        let due: Vec<Inject> = self
            .log
            .scenario
            .injects
            .iter()
            .filter(|i| i.at <= elapsed && !self.log.injects.iter().any(|r| r.inject == i.id))
            .cloned()
            .collect();
        for inject in due {
            self.fire(&inject, now);
        }
    }

    fn fire(&mut self, inject: &Inject, now: u64) {
        let scale = self.log.scenario.time_scale;
        let Some(from) = self.log.scenario.participant(&inject.from).cloned() else {
            return;
        };
        let mut record = InjectRecord {
            inject: inject.id.clone(),
            at_ms: now,
            mode: inject.mode,
            sends: Vec::new(),
        };
        let eval = self.log.evaluate(now);
        for to_name in &inject.to {
            let Some(to) = self.log.scenario.participant(to_name).cloned() else {
                continue;
            };
            if inject.mode == InjectMode::Instruct {
                let what = inject
                    .content
                    .summary
                    .clone()
                    .or_else(|| inject.content.text.clone())
                    .unwrap_or_default();
                self.line(
                    now,
                    &format!(
                        "INJECT {} for {} ({}, {} {}, human player): send a {} to {} ({}) marked --exercise {}: {what}",
                        inject.id,
                        from.name,
                        from.poc,
                        from.state,
                        from.role,
                        inject.kind.name(),
                        to.name,
                        to.poc,
                        self.log.scenario.id
                    ),
                );
                record.sends.push(InjectSend {
                    to: to.name.clone(),
                    message_id: None,
                    thread_id: None,
                    error: None,
                });
                continue;
            }
            // The thread a reply continues: the one the named inject opened
            // between these two participants.
            let thread = inject.thread.as_ref().and_then(|t| {
                eval.injects
                    .iter()
                    .find(|i| &i.id == t)
                    .and_then(|i| {
                        i.messages
                            .iter()
                            .find(|(n, _, _)| n == &to.name || n == &from.name)
                            .or(i.messages.first())
                    })
                    .map(|(_, _, thread)| *thread)
            });
            let ts = timestamp(now);
            let body = match inject.kind {
                InjectKind::Inquiry => {
                    let attachments = inject
                        .content
                        .attachments
                        .iter()
                        .filter_map(|p| self.attachments.get(p).cloned())
                        .collect();
                    content::inquiry(&inject.content, ts, scale, attachments)
                }
                InjectKind::Response => content::response(
                    inject.content.text.as_deref(),
                    inject.content.eta,
                    ts,
                    scale,
                ),
                InjectKind::FollowUp => content::follow_up(
                    inject.content.text.as_deref(),
                    inject.content.eta,
                    ts,
                    scale,
                ),
                InjectKind::Close => content::close(inject.content.text.as_deref()),
                InjectKind::Ping => Body::Ping(Ping {
                    campaign: campaign_id(&self.log.scenario.id, &inject.id, now),
                    reply_by: ts.plus(Seconds(
                        inject
                            .content
                            .reply_window
                            .unwrap_or(48 * 3600)
                            .div_ceil(u64::from(scale.max(1))),
                    )),
                }),
            };
            let needs_thread = !matches!(inject.kind, InjectKind::Inquiry | InjectKind::Ping);
            let result = if needs_thread && thread.is_none() {
                Err(format!(
                    "the thread of {} is not known (was it sent?)",
                    inject.thread.as_deref().unwrap_or("?")
                ))
            } else {
                let in_reply_to = thread.and_then(|t| self.last_from(&from.name, t, &to.poc));
                self.send(&from.name, to.poc.clone(), thread, in_reply_to, body)
            };
            match result {
                Ok(accepted) => {
                    self.line(
                        now,
                        &format!(
                            "INJECT {}: {} {} -> {} sent (thread {})",
                            inject.id,
                            inject.kind.name(),
                            from.poc,
                            to.poc,
                            accepted.thread_id
                        ),
                    );
                    record.sends.push(InjectSend {
                        to: to.name.clone(),
                        message_id: Some(accepted.message_id),
                        thread_id: Some(accepted.thread_id),
                        error: None,
                    });
                }
                Err(e) => {
                    self.line(
                        now,
                        &format!("INJECT {} to {} FAILED: {e}", inject.id, to.poc),
                    );
                    record.sends.push(InjectSend {
                        to: to.name.clone(),
                        message_id: None,
                        thread_id: thread,
                        error: Some(e),
                    });
                }
            }
        }
        self.log.injects.push(record);
    }

    fn observe_all(&mut self, now: u64) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in names {
            self.observe(&name, now);
        }
    }

    fn observe(&mut self, name: &str, now: u64) {
        let exercise = self.log.scenario.id.clone();
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        let Ok(threads) = node.call::<Vec<ThreadSummary>>(&Request::Inbox) else {
            return;
        };
        for t in threads
            .into_iter()
            .filter(|t| t.exercise.as_deref() == Some(exercise.as_str()))
        {
            let key = (name.to_owned(), t.thread_id);
            let mark = (t.messages, t.last_activity);
            if self.seen.get(&key) == Some(&mark) {
                continue;
            }
            let Ok(view) = node.call::<ThreadView>(&Request::Thread {
                thread: t.thread_id,
            }) else {
                continue;
            };
            for m in &view.messages {
                // The record keeps whole seconds; the controller's own
                // clock narrows that down to when it first saw the message.
                let floor = m.at.0.saturating_mul(1000);
                let at = now.clamp(floor, floor + 999);
                let sent = m.direction == "sent";
                let (detail, campaign) = match &m.body {
                    Body::Response(r) => (
                        Some(
                            match r.outcome {
                                poc_proto::message::ResponseOutcome::Immediate { .. } => "answer",
                                poc_proto::message::ResponseOutcome::WillFollowUp { .. } => "eta",
                            }
                            .to_owned(),
                        ),
                        None,
                    ),
                    Body::Ping(p) => (None, Some(p.campaign)),
                    _ => (None, None),
                };
                self.log.observe(ObservedMessage {
                    message_id: m.message_id,
                    thread_id: t.thread_id,
                    kind: m.kind.clone(),
                    detail,
                    campaign,
                    from: m.sender.clone(),
                    to: m.recipient.clone(),
                    exercise: m.exercise.clone(),
                    sent_ms: sent.then_some(at),
                    received_ms: (!sent).then_some(at),
                });
            }
            self.seen.insert(key, mark);
        }
    }

    fn act(&mut self, now: u64) {
        let eval = self.log.evaluate(now);
        let expectations = self.log.scenario.expectations.clone();
        for (exp, r) in expectations.iter().zip(eval.expectations) {
            if !matches!(r.outcome, Outcome::Pending | Outcome::Overdue)
                || self.acted.contains(&exp.id)
            {
                continue;
            }
            let (Some(anchor), Some(who)) = (
                r.anchor_ms,
                self.log.scenario.participant(&exp.who).cloned(),
            ) else {
                continue;
            };
            match who.player {
                // A node sends its receipts itself, whoever plays it.
                Player::Human if exp.kind == ExpectKind::Receipt => {
                    self.acted.insert(exp.id.clone());
                }
                Player::Human => {
                    self.acted.insert(exp.id.clone());
                    let deadline = self.log.scenario_seconds(anchor) + exp.within;
                    let text = format!(
                        "ACTION {} for {} ({}, {} {}, human player): send a {}{} within {} (by {}){}",
                        exp.id,
                        who.name,
                        who.poc,
                        who.state,
                        who.role,
                        exp.kind.name(),
                        r.thread_id
                            .map(|t| format!(" on thread {t}"))
                            .unwrap_or_default(),
                        format_span(exp.within),
                        format_offset(deadline),
                        exp.text
                            .as_ref()
                            .map(|t| format!(": {t}"))
                            .unwrap_or_default()
                    );
                    self.line(now, &text);
                    self.log.actions.push(ActionRecord {
                        at_ms: now,
                        step: exp.id.clone(),
                        who: who.name.clone(),
                        what: text,
                        message_id: None,
                        error: None,
                    });
                }
                Player::Automated => {
                    if now < anchor.saturating_add(self.log.real_ms(who.delay)) {
                        continue;
                    }
                    self.perform(exp, &r, &who.name, now);
                }
            }
        }
    }

    /// An automated player's action for `exp`.
    fn perform(&mut self, exp: &Expectation, r: &crate::run::ExpectResult, who: &str, now: u64) {
        let scale = self.log.scenario.time_scale;
        let ts = timestamp(now);
        let Some(me) = self.log.scenario.participant(who).map(|p| p.poc.clone()) else {
            return;
        };
        let target = exp
            .to
            .as_deref()
            .and_then(|t| self.log.scenario.participant(t))
            .map(|p| p.poc.clone());
        let (to, thread, body) = match exp.kind {
            // The node sends receipts itself on arrival.
            ExpectKind::Receipt => {
                self.acted.insert(exp.id.clone());
                return;
            }
            ExpectKind::Inquiry => {
                let Some(to) = target else { return };
                let mut c = crate::scenario::Content {
                    summary: Some(
                        exp.text
                            .clone()
                            .unwrap_or_else(|| "Exercise inquiry".into()),
                    ),
                    ..Default::default()
                };
                c.urgency = Some("urgent".into());
                (to, None, content::inquiry(&c, ts, scale, Vec::new()))
            }
            kind => {
                let Some(thread) = r.thread_id else { return };
                // The other party on the thread.
                let Some(peer) = target.or_else(|| {
                    self.log
                        .messages
                        .iter()
                        .find(|m| m.thread_id == thread && (m.from == me || m.to == me))
                        .map(|m| {
                            if m.from == me {
                                m.to.clone()
                            } else {
                                m.from.clone()
                            }
                        })
                }) else {
                    return;
                };
                let body = match kind {
                    ExpectKind::PingReply => {
                        let Some(campaign) = self
                            .log
                            .messages
                            .iter()
                            .find(|m| m.thread_id == thread && m.campaign.is_some())
                            .and_then(|m| m.campaign)
                        else {
                            return;
                        };
                        Body::PingReply(PingReply { campaign })
                    }
                    ExpectKind::ResponseEta => content::response(
                        exp.text.as_deref(),
                        Some(exp.eta.unwrap_or(3600)),
                        ts,
                        scale,
                    ),
                    ExpectKind::Response | ExpectKind::ResponseAnswer => content::response(
                        exp.text.as_deref(),
                        exp.eta.filter(|_| kind == ExpectKind::Response),
                        ts,
                        scale,
                    ),
                    ExpectKind::FollowUp => {
                        content::follow_up(exp.text.as_deref(), exp.eta, ts, scale)
                    }
                    _ => content::close(exp.text.as_deref()),
                };
                (peer, Some(thread), body)
            }
        };
        self.acted.insert(exp.id.clone());
        let in_reply_to = thread.and_then(|t| self.last_from(who, t, &to));
        let result = self.send(who, to.clone(), thread, in_reply_to, body);
        let (message_id, error) = match result {
            Ok(a) => (Some(a.message_id), None),
            Err(e) => (None, Some(e)),
        };
        let what = format!("{} (automated) sends a {} to {to}", who, exp.kind.name());
        self.line(
            now,
            &match &error {
                None => format!("{} for {what}", exp.id),
                Some(e) => format!("{} for {what}: FAILED: {e}", exp.id),
            },
        );
        self.log.actions.push(ActionRecord {
            at_ms: now,
            step: exp.id.clone(),
            who: who.to_owned(),
            what,
            message_id,
            error,
        });
    }
}

/// A campaign id for an exercise ping: distinct per exercise, inject and run.
fn campaign_id(exercise: &str, inject: &str, now: u64) -> CampaignId {
    // FNV-1a over the names and the start time: unique enough to tell
    // campaigns apart in a node's view; it protects nothing.
    let mut id = [0u8; 16];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in exercise
        .bytes()
        .chain([0])
        .chain(inject.bytes())
        .chain(now.to_le_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let (a, b) = id.split_at_mut(8);
    a.copy_from_slice(&h.to_le_bytes());
    b.copy_from_slice(
        &h.rotate_left(29)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_le_bytes(),
    );
    CampaignId(id)
}
