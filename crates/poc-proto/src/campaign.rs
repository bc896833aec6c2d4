//! The sans-IO state machine of one ping campaign of the directory manager.
//!
//! Annex A para 8: the directory manager runs ping tests every six months to
//! check that the directory is up to date, and each PoC is to acknowledge
//! receipt within 48 hours. A [`PingCampaign`] tracks, per PoC, whether the
//! ping was sent, delivered and answered, answered late, or could not be
//! delivered; it says which PoCs to remind before the deadline
//! ([`PingCampaign::reminder_due`]) and produces the manager's
//! [`CampaignReport`], with totals per State and per role so that non-responding
//! States can be contacted (para 8 again: the manager follows up with States
//! whose PoCs do not respond).
//!
//! As everywhere in this crate, time is given by the caller. A driver sleeps
//! until [`PingCampaign::next_deadline`], then sends the reminders that are due
//! and, once the deadline has come, calls [`PingCampaign::handle_timeout`],
//! which names each overdue PoC once.
//!
//! A deadline is passed from its own second on: a reply handled within that
//! second is still on time, and a PoC without a reply counts as overdue.

use std::collections::BTreeMap;

use crate::identity::{PocId, Role, StateCode};
use crate::message::{Body, CampaignId, Message, MessageKind, Ping};
use crate::time::{Seconds, Timestamp};

/// The reply window of Annex A para 8: each PoC acknowledges a ping within
/// 48 hours.
pub const DEFAULT_REPLY_WINDOW: Seconds = Seconds::hours(48);

/// How long before the deadline PoCs that have not replied are reminded, by
/// default.
pub const DEFAULT_REMINDER_LEAD: Seconds = Seconds::hours(12);

/// A PoC pinged by a campaign, as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The PoC.
    pub poc: PocId,
    /// Its State.
    pub state: StateCode,
    /// Its role (Annex A para 9).
    pub role: Role,
}

impl Target {
    /// A target.
    pub fn new(poc: PocId, state: StateCode, role: Role) -> Self {
        Target { poc, state, role }
    }
}

/// Where one target's ping stands. Being overdue is not a status: it is
/// derived from the time ([`TargetOutcome::Overdue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStatus {
    /// The ping has not been sent yet.
    Pending,
    /// The ping left this node (possibly through a relay).
    Sent {
        /// When.
        at: Timestamp,
    },
    /// The PoC's node (or its relay mailbox) accepted the ping.
    Delivered {
        /// When.
        at: Timestamp,
    },
    /// The PoC acknowledged the ping (Annex A para 8).
    Replied {
        /// When the reply was handled; the first reply counts.
        at: Timestamp,
        /// Whether it came after the deadline.
        late: bool,
    },
    /// Delivery failed definitively (no reachable endpoint or relay).
    Unreachable {
        /// When the last failure was reported.
        last_error_at: Timestamp,
    },
}

/// How a target stands in a report at a given time: exactly one per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetOutcome {
    /// Replied by the deadline.
    RepliedOnTime,
    /// Replied after the deadline.
    RepliedLate,
    /// No reply, and the deadline has come (whatever the delivery status).
    Overdue,
    /// No reply, and delivery failed definitively.
    Unreachable,
    /// No reply yet, and the deadline has not come.
    Awaiting,
}

/// Why a campaign refuses an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CampaignError {
    /// The PoC is not a target of this campaign.
    #[error("{0} is not a target of this ping campaign")]
    UnknownTarget(PocId),
    /// The same PoC was listed twice when the campaign was created.
    #[error("{0} is listed twice among the campaign's targets")]
    DuplicateTarget(PocId),
    /// The message is not a ping reply.
    #[error("expected a ping reply, got a {0}")]
    NotPingReply(MessageKind),
    /// The ping reply answers another campaign.
    #[error("the ping reply answers campaign {found}, not {expected}")]
    WrongCampaign {
        /// This campaign.
        expected: CampaignId,
        /// The campaign named by the reply.
        found: CampaignId,
    },
}

/// What the campaign knows of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    state: StateCode,
    role: Role,
    status: TargetStatus,
    reminded_at: Option<Timestamp>,
}

/// One ping campaign of the directory manager (Annex A para 8).
#[derive(Debug, Clone)]
pub struct PingCampaign {
    id: CampaignId,
    started_at: Timestamp,
    reply_window: Seconds,
    reminder_lead: Seconds,
    targets: BTreeMap<PocId, Entry>,
    deadline_handled: bool,
}

impl PingCampaign {
    /// A campaign started at `started_at` whose targets have `reply_window`
    /// ([`DEFAULT_REPLY_WINDOW`], 48 hours, per Annex A para 8) to reply. Every
    /// target starts [`TargetStatus::Pending`]; the reminder lead is
    /// [`DEFAULT_REMINDER_LEAD`] (see [`with_reminder_lead`](Self::with_reminder_lead)).
    pub fn new(
        id: CampaignId,
        started_at: Timestamp,
        reply_window: Seconds,
        targets: impl IntoIterator<Item = Target>,
    ) -> Result<Self, CampaignError> {
        let mut map = BTreeMap::new();
        for target in targets {
            let entry = Entry {
                state: target.state,
                role: target.role,
                status: TargetStatus::Pending,
                reminded_at: None,
            };
            if map.contains_key(&target.poc) {
                return Err(CampaignError::DuplicateTarget(target.poc));
            }
            map.insert(target.poc, entry);
        }
        Ok(PingCampaign {
            id,
            started_at,
            reply_window,
            reminder_lead: DEFAULT_REMINDER_LEAD,
            targets: map,
            deadline_handled: false,
        })
    }

    /// Sets how long before the deadline non-replying PoCs are reminded.
    pub fn with_reminder_lead(mut self, lead: Seconds) -> Self {
        self.reminder_lead = lead;
        self
    }

    /// The campaign's id.
    pub fn id(&self) -> CampaignId {
        self.id
    }

    /// When it started.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// How long targets have to reply.
    pub fn reply_window(&self) -> Seconds {
        self.reply_window
    }

    /// How long before the deadline reminders go out.
    pub fn reminder_lead(&self) -> Seconds {
        self.reminder_lead
    }

    /// The reply deadline: the start plus the reply window.
    pub fn deadline(&self) -> Timestamp {
        self.started_at.plus(self.reply_window)
    }

    /// When reminders fall due: the deadline minus the reminder lead.
    pub fn reminder_at(&self) -> Timestamp {
        self.deadline().minus(self.reminder_lead)
    }

    /// The body of the ping every target is sent (Annex A para 8).
    pub fn ping(&self) -> Ping {
        Ping {
            campaign: self.id,
            reply_by: self.deadline(),
        }
    }

    /// How many targets the campaign has.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether the campaign has no targets.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The status of `poc`, if it is a target.
    pub fn status(&self, poc: &PocId) -> Option<TargetStatus> {
        self.targets.get(poc).map(|e| e.status)
    }

    fn entry(&mut self, poc: &PocId) -> Result<&mut Entry, CampaignError> {
        self.targets
            .get_mut(poc)
            .ok_or_else(|| CampaignError::UnknownTarget(poc.clone()))
    }

    /// The ping to `poc` left this node at `now`. A retry after
    /// [`on_unreachable`](Self::on_unreachable) counts as sent again; later
    /// statuses are kept.
    pub fn on_sent(&mut self, poc: &PocId, now: Timestamp) -> Result<(), CampaignError> {
        let entry = self.entry(poc)?;
        if matches!(
            entry.status,
            TargetStatus::Pending | TargetStatus::Unreachable { .. }
        ) {
            entry.status = TargetStatus::Sent { at: now };
        }
        Ok(())
    }

    /// The ping to `poc` was delivered at `now`. A reply already recorded is kept.
    pub fn on_delivered(&mut self, poc: &PocId, now: Timestamp) -> Result<(), CampaignError> {
        let entry = self.entry(poc)?;
        if !matches!(
            entry.status,
            TargetStatus::Delivered { .. } | TargetStatus::Replied { .. }
        ) {
            entry.status = TargetStatus::Delivered { at: now };
        }
        Ok(())
    }

    /// `poc` acknowledged the ping at `at` (the time this node handled the
    /// reply). A reply after the deadline is recorded as late, not dropped;
    /// it is accepted even after delivery was reported failed. Only the first
    /// reply counts.
    pub fn on_reply(&mut self, poc: &PocId, at: Timestamp) -> Result<(), CampaignError> {
        let deadline = self.deadline();
        let entry = self.entry(poc)?;
        if !matches!(entry.status, TargetStatus::Replied { .. }) {
            entry.status = TargetStatus::Replied {
                at,
                late: at > deadline,
            };
        }
        Ok(())
    }

    /// Checks that `message` is a ping reply to this campaign from one of its
    /// targets, then records it as [`on_reply`](Self::on_reply) at `at`.
    pub fn on_ping_reply(&mut self, message: &Message, at: Timestamp) -> Result<(), CampaignError> {
        let Body::PingReply(reply) = &message.body else {
            return Err(CampaignError::NotPingReply(message.body.kind()));
        };
        if reply.campaign != self.id {
            return Err(CampaignError::WrongCampaign {
                expected: self.id,
                found: reply.campaign,
            });
        }
        self.on_reply(&message.header.sender, at)
    }

    /// Delivery to `poc` failed definitively at `now`. A reply already
    /// recorded is kept: it proves the PoC reachable.
    pub fn on_unreachable(&mut self, poc: &PocId, now: Timestamp) -> Result<(), CampaignError> {
        let entry = self.entry(poc)?;
        if !matches!(entry.status, TargetStatus::Replied { .. }) {
            entry.status = TargetStatus::Unreachable { last_error_at: now };
        }
        Ok(())
    }

    /// A reminder went to `poc` at `now`. Each target is reminded once: a
    /// second call keeps the first time.
    pub fn on_reminded(&mut self, poc: &PocId, now: Timestamp) -> Result<(), CampaignError> {
        let entry = self.entry(poc)?;
        entry.reminded_at.get_or_insert(now);
        Ok(())
    }

    /// Whether `entry` still needs a reminder, whatever the time.
    fn awaits_reminder(entry: &Entry) -> bool {
        entry.reminded_at.is_none()
            && matches!(
                entry.status,
                TargetStatus::Sent { .. } | TargetStatus::Delivered { .. }
            )
    }

    /// The PoCs to remind at `now`: once `now` reaches
    /// [`reminder_at`](Self::reminder_at), every target that was sent the ping,
    /// has not replied, is not unreachable and was not reminded yet.
    pub fn reminder_due(&self, now: Timestamp) -> Vec<PocId> {
        if now < self.reminder_at() {
            return Vec::new();
        }
        self.targets
            .iter()
            .filter(|(_, entry)| Self::awaits_reminder(entry))
            .map(|(poc, _)| poc.clone())
            .collect()
    }

    /// The next time the driver has something to do: the reminder time while
    /// a target awaits its reminder, and the deadline until
    /// [`handle_timeout`](Self::handle_timeout) has handled it. Either may be
    /// in the past: act on it at once.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let reminder = self
            .targets
            .values()
            .any(Self::awaits_reminder)
            .then(|| self.reminder_at());
        let deadline = (!self.deadline_handled).then(|| self.deadline());
        reminder.into_iter().chain(deadline).min()
    }

    /// Once `now` reaches the deadline, and only the first time, returns the
    /// targets that are overdue (no reply and not unreachable), so the
    /// manager can contact their States; before the deadline or afterwards,
    /// returns nothing.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<PocId> {
        if self.deadline_handled || now < self.deadline() {
            return Vec::new();
        }
        self.deadline_handled = true;
        self.targets
            .iter()
            .filter(|(_, entry)| self.outcome(entry, now) == TargetOutcome::Overdue)
            .map(|(poc, _)| poc.clone())
            .collect()
    }

    fn outcome(&self, entry: &Entry, now: Timestamp) -> TargetOutcome {
        match entry.status {
            TargetStatus::Replied { late: false, .. } => TargetOutcome::RepliedOnTime,
            TargetStatus::Replied { late: true, .. } => TargetOutcome::RepliedLate,
            TargetStatus::Unreachable { .. } => TargetOutcome::Unreachable,
            _ if now >= self.deadline() => TargetOutcome::Overdue,
            _ => TargetOutcome::Awaiting,
        }
    }

    /// The manager's report at `now`: every target with its status and
    /// outcome, sorted by State, role and PoC id, with totals overall, per
    /// State and per role (Annex A para 8).
    pub fn report(&self, now: Timestamp) -> CampaignReport {
        let mut targets: Vec<TargetReport> = self
            .targets
            .iter()
            .map(|(poc, entry)| TargetReport {
                poc: poc.clone(),
                state: entry.state,
                role: entry.role,
                status: entry.status,
                outcome: self.outcome(entry, now),
                replied_at: match entry.status {
                    TargetStatus::Replied { at, .. } => Some(at),
                    _ => None,
                },
                reminded_at: entry.reminded_at,
            })
            .collect();
        targets.sort_by(|a, b| (a.state, a.role, &a.poc).cmp(&(b.state, b.role, &b.poc)));
        let mut totals = Tally::default();
        let mut by_state: BTreeMap<StateCode, Tally> = BTreeMap::new();
        let mut by_role: BTreeMap<Role, Tally> = BTreeMap::new();
        for target in &targets {
            totals.add(target.outcome);
            by_state
                .entry(target.state)
                .or_default()
                .add(target.outcome);
            by_role.entry(target.role).or_default().add(target.outcome);
        }
        CampaignReport {
            campaign: self.id,
            started_at: self.started_at,
            deadline: self.deadline(),
            as_of: now,
            targets,
            totals,
            by_state,
            by_role,
        }
    }
}

/// One target's line in a [`CampaignReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport {
    /// The PoC.
    pub poc: PocId,
    /// Its State.
    pub state: StateCode,
    /// Its role.
    pub role: Role,
    /// Its status.
    pub status: TargetStatus,
    /// Its outcome at the report's time.
    pub outcome: TargetOutcome,
    /// When it replied, if it did.
    pub replied_at: Option<Timestamp>,
    /// When it was reminded, if it was.
    pub reminded_at: Option<Timestamp>,
}

/// Counts of outcomes over a group of targets; the five counts add up to
/// `targets`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Targets in the group.
    pub targets: usize,
    /// Replied by the deadline.
    pub replied_on_time: usize,
    /// Replied after the deadline.
    pub replied_late: usize,
    /// No reply, deadline passed, not known unreachable.
    pub overdue: usize,
    /// No reply, delivery failed definitively.
    pub unreachable: usize,
    /// No reply yet, deadline not passed.
    pub awaiting: usize,
}

impl Tally {
    fn add(&mut self, outcome: TargetOutcome) {
        self.targets += 1;
        let count = match outcome {
            TargetOutcome::RepliedOnTime => &mut self.replied_on_time,
            TargetOutcome::RepliedLate => &mut self.replied_late,
            TargetOutcome::Overdue => &mut self.overdue,
            TargetOutcome::Unreachable => &mut self.unreachable,
            TargetOutcome::Awaiting => &mut self.awaiting,
        };
        *count += 1;
    }

    /// Targets that replied, on time or late.
    pub fn replied(&self) -> usize {
        self.replied_on_time + self.replied_late
    }

    /// Share of targets that replied, on time or late, from 0.0 to 1.0 (0.0
    /// for an empty group).
    pub fn response_rate(&self) -> f64 {
        ratio(self.replied(), self.targets)
    }

    /// Share of targets that replied by the deadline, from 0.0 to 1.0 (0.0
    /// for an empty group).
    pub fn on_time_rate(&self) -> f64 {
        ratio(self.replied_on_time, self.targets)
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The directory manager's report on a ping campaign (Annex A para 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignReport {
    /// The campaign.
    pub campaign: CampaignId,
    /// When it started.
    pub started_at: Timestamp,
    /// The reply deadline.
    pub deadline: Timestamp,
    /// The time the report describes.
    pub as_of: Timestamp,
    /// Every target, sorted by State, role and PoC id.
    pub targets: Vec<TargetReport>,
    /// Totals over all targets.
    pub totals: Tally,
    /// Totals per State.
    pub by_state: BTreeMap<StateCode, Tally>,
    /// Totals per role.
    pub by_role: BTreeMap<Role, Tally>,
}

impl CampaignReport {
    /// The States with at least one overdue or unreachable PoC, for the
    /// manager to contact.
    pub fn non_responding_states(&self) -> Vec<StateCode> {
        self.by_state
            .iter()
            .filter(|(_, tally)| tally.overdue + tally.unreachable > 0)
            .map(|(state, _)| *state)
            .collect()
    }

    /// The targets with the given outcome, in report order.
    pub fn with_outcome(&self, outcome: TargetOutcome) -> impl Iterator<Item = &TargetReport> {
        self.targets.iter().filter(move |t| t.outcome == outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Handling, Header, Language, MessageId, PingReply, ThreadId};

    const T0: Timestamp = Timestamp(1_795_000_000);

    fn at(span: Seconds) -> Timestamp {
        T0.plus(span)
    }

    fn poc(id: &str) -> PocId {
        PocId::new(id).unwrap()
    }

    fn target(id: &str, role: Role) -> Target {
        let state = StateCode::new(id.split('.').next().unwrap()).unwrap();
        Target::new(poc(id), state, role)
    }

    /// Six PoCs of three States.
    fn six() -> PingCampaign {
        PingCampaign::new(
            CampaignId([3; 16]),
            T0,
            DEFAULT_REPLY_WINDOW,
            [
                target("EST.cert", Role::Technical),
                target("EST.mfa", Role::Diplomatic),
                target("FRA.anssi", Role::Technical),
                target("FRA.mfa", Role::Diplomatic),
                target("KEN.ke-cirt", Role::Technical),
                target("KEN.mfa", Role::Diplomatic),
            ],
        )
        .unwrap()
    }

    const ALL: [&str; 6] = [
        "EST.cert",
        "EST.mfa",
        "FRA.anssi",
        "FRA.mfa",
        "KEN.ke-cirt",
        "KEN.mfa",
    ];

    #[test]
    fn six_pocs_four_on_time_one_late_one_silent() {
        let mut campaign = six();
        assert_eq!(campaign.deadline(), at(Seconds::hours(48)));
        assert_eq!(
            campaign.ping(),
            Ping {
                campaign: CampaignId([3; 16]),
                reply_by: at(Seconds::hours(48))
            }
        );
        for (i, id) in ALL.iter().enumerate() {
            campaign.on_sent(&poc(id), at(Seconds(i as u64))).unwrap();
            campaign
                .on_delivered(&poc(id), at(Seconds(60 + i as u64)))
                .unwrap();
        }
        campaign
            .on_reply(&poc("EST.cert"), at(Seconds::HOUR))
            .unwrap();
        campaign
            .on_reply(&poc("EST.mfa"), at(Seconds::hours(5)))
            .unwrap();
        campaign
            .on_reply(&poc("FRA.anssi"), at(Seconds::hours(20)))
            .unwrap();
        // Before the deadline, the silent PoCs are still awaited.
        let early = campaign.report(at(Seconds::hours(30)));
        assert_eq!(early.totals.replied_on_time, 3);
        assert_eq!(early.totals.awaiting, 3);
        assert_eq!(early.totals.overdue, 0);
        assert_eq!(early.non_responding_states(), []);
        // Exactly at the deadline: still on time.
        campaign
            .on_reply(&poc("FRA.mfa"), at(Seconds::hours(48)))
            .unwrap();
        // KEN.mfa replies a day late; KEN.ke-cirt never does.
        campaign
            .on_reply(&poc("KEN.mfa"), at(Seconds::hours(72)))
            .unwrap();

        let now = at(Seconds::days(7));
        let report = campaign.report(now);
        assert_eq!(report.deadline, at(Seconds::hours(48)));
        assert_eq!(report.as_of, now);
        assert_eq!(
            report.totals,
            Tally {
                targets: 6,
                replied_on_time: 4,
                replied_late: 1,
                overdue: 1,
                unreachable: 0,
                awaiting: 0,
            }
        );
        assert!((report.totals.response_rate() - 5.0 / 6.0).abs() < 1e-12);
        assert!((report.totals.on_time_rate() - 4.0 / 6.0).abs() < 1e-12);

        let lines: Vec<_> = report
            .targets
            .iter()
            .map(|t| (t.poc.as_str(), t.role, t.outcome, t.replied_at))
            .collect();
        use TargetOutcome::*;
        assert_eq!(
            lines,
            [
                (
                    "EST.mfa",
                    Role::Diplomatic,
                    RepliedOnTime,
                    Some(at(Seconds::hours(5)))
                ),
                (
                    "EST.cert",
                    Role::Technical,
                    RepliedOnTime,
                    Some(at(Seconds::HOUR))
                ),
                (
                    "FRA.mfa",
                    Role::Diplomatic,
                    RepliedOnTime,
                    Some(at(Seconds::hours(48)))
                ),
                (
                    "FRA.anssi",
                    Role::Technical,
                    RepliedOnTime,
                    Some(at(Seconds::hours(20)))
                ),
                (
                    "KEN.mfa",
                    Role::Diplomatic,
                    RepliedLate,
                    Some(at(Seconds::hours(72)))
                ),
                ("KEN.ke-cirt", Role::Technical, Overdue, None),
            ]
        );
        let silent = report.with_outcome(Overdue).next().unwrap();
        assert_eq!(
            silent.status,
            TargetStatus::Delivered {
                at: at(Seconds(64))
            }
        );
        assert_eq!(
            campaign.status(&poc("KEN.mfa")),
            Some(TargetStatus::Replied {
                at: at(Seconds::hours(72)),
                late: true
            })
        );

        let ken = StateCode::new("KEN").unwrap();
        let est = StateCode::new("EST").unwrap();
        assert_eq!(
            report.by_state[&ken],
            Tally {
                targets: 2,
                replied_on_time: 0,
                replied_late: 1,
                overdue: 1,
                unreachable: 0,
                awaiting: 0,
            }
        );
        assert_eq!(report.by_state[&est].replied_on_time, 2);
        assert_eq!(report.by_state.len(), 3);
        assert_eq!(
            report.by_role[&Role::Technical],
            Tally {
                targets: 3,
                replied_on_time: 2,
                replied_late: 0,
                overdue: 1,
                unreachable: 0,
                awaiting: 0,
            }
        );
        assert_eq!(
            report.by_role[&Role::Diplomatic],
            Tally {
                targets: 3,
                replied_on_time: 2,
                replied_late: 1,
                overdue: 0,
                unreachable: 0,
                awaiting: 0,
            }
        );
        assert_eq!(report.non_responding_states(), [ken]);
    }

    #[test]
    fn reminders_go_out_once() {
        let mut campaign = six();
        // Two PoCs reply at once; the others are sent the ping.
        for id in ALL {
            campaign.on_sent(&poc(id), T0).unwrap();
        }
        campaign
            .on_reply(&poc("EST.cert"), at(Seconds::HOUR))
            .unwrap();
        campaign
            .on_reply(&poc("FRA.mfa"), at(Seconds::HOUR))
            .unwrap();
        campaign
            .on_unreachable(&poc("KEN.mfa"), at(Seconds::hours(2)))
            .unwrap();

        let reminder_at = at(Seconds::hours(36));
        assert_eq!(campaign.reminder_at(), reminder_at);
        assert_eq!(campaign.next_deadline(), Some(reminder_at));
        assert_eq!(campaign.reminder_due(reminder_at.minus(Seconds(1))), []);

        let due = campaign.reminder_due(reminder_at);
        assert_eq!(due, [poc("EST.mfa"), poc("FRA.anssi"), poc("KEN.ke-cirt")]);
        // EST.mfa replies before its reminder goes out.
        campaign
            .on_reply(&poc("EST.mfa"), reminder_at.plus(Seconds(5)))
            .unwrap();
        let due = campaign.reminder_due(reminder_at.plus(Seconds(10)));
        assert_eq!(due, [poc("FRA.anssi"), poc("KEN.ke-cirt")]);
        for p in &due {
            campaign
                .on_reminded(p, reminder_at.plus(Seconds(10)))
                .unwrap();
        }
        assert_eq!(campaign.reminder_due(reminder_at.plus(Seconds::HOUR)), []);
        assert_eq!(campaign.reminder_due(at(Seconds::days(9))), []);
        // A repeated call keeps the first time.
        campaign
            .on_reminded(&poc("FRA.anssi"), at(Seconds::hours(40)))
            .unwrap();

        // Only the deadline is left to wait for.
        assert_eq!(campaign.next_deadline(), Some(campaign.deadline()));
        assert_eq!(
            campaign.handle_timeout(campaign.deadline().minus(Seconds(1))),
            []
        );
        let overdue = campaign.handle_timeout(campaign.deadline());
        assert_eq!(overdue, [poc("FRA.anssi"), poc("KEN.ke-cirt")]);
        assert_eq!(campaign.handle_timeout(at(Seconds::days(3))), []);
        assert_eq!(campaign.next_deadline(), None);

        let report = campaign.report(at(Seconds::days(3)));
        let reminded: Vec<_> = report
            .targets
            .iter()
            .filter_map(|t| t.reminded_at.map(|r| (t.poc.as_str(), r)))
            .collect();
        assert_eq!(
            reminded,
            [
                ("FRA.anssi", reminder_at.plus(Seconds(10))),
                ("KEN.ke-cirt", reminder_at.plus(Seconds(10))),
            ]
        );
        assert_eq!(
            report.totals,
            Tally {
                targets: 6,
                replied_on_time: 3,
                replied_late: 0,
                overdue: 2,
                unreachable: 1,
                awaiting: 0,
            }
        );
    }

    #[test]
    fn reminder_lead_is_configurable() {
        let mut campaign = six().with_reminder_lead(Seconds::hours(24));
        assert_eq!(campaign.reminder_lead(), Seconds::hours(24));
        assert_eq!(campaign.reminder_at(), at(Seconds::hours(24)));
        // Nobody has been sent the ping: nobody to remind, only the deadline.
        assert_eq!(campaign.reminder_due(at(Seconds::hours(30))), []);
        assert_eq!(campaign.next_deadline(), Some(at(Seconds::hours(48))));
        campaign.on_sent(&poc("EST.cert"), T0).unwrap();
        assert_eq!(campaign.next_deadline(), Some(at(Seconds::hours(24))));
        assert_eq!(
            campaign.reminder_due(at(Seconds::hours(24))),
            [poc("EST.cert")]
        );
    }

    #[test]
    fn unreachable_and_recovery() {
        let mut campaign = six();
        let p = poc("KEN.ke-cirt");
        campaign.on_sent(&p, T0).unwrap();
        campaign.on_unreachable(&p, at(Seconds::hours(6))).unwrap();
        assert_eq!(
            campaign.status(&p),
            Some(TargetStatus::Unreachable {
                last_error_at: at(Seconds::hours(6))
            })
        );
        let report = campaign.report(at(Seconds::days(3)));
        assert_eq!(report.totals.unreachable, 1);
        assert_eq!(report.totals.overdue, 5);
        assert_eq!(
            report.non_responding_states().len(),
            3,
            "all States have an overdue or unreachable PoC"
        );
        // A retry gets through and the PoC replies after all, late.
        campaign.on_sent(&p, at(Seconds::hours(50))).unwrap();
        campaign.on_delivered(&p, at(Seconds::hours(51))).unwrap();
        campaign.on_reply(&p, at(Seconds::hours(52))).unwrap();
        // Later reports of failure or delivery do not undo the reply.
        campaign.on_unreachable(&p, at(Seconds::hours(53))).unwrap();
        campaign.on_delivered(&p, at(Seconds::hours(53))).unwrap();
        campaign.on_reply(&p, at(Seconds::hours(54))).unwrap();
        assert_eq!(
            campaign.status(&p),
            Some(TargetStatus::Replied {
                at: at(Seconds::hours(52)),
                late: true
            })
        );
    }

    #[test]
    fn unknown_and_duplicate_targets_are_errors() {
        let mut campaign = six();
        let stranger = poc("USA.cisa");
        let unknown = Err(CampaignError::UnknownTarget(stranger.clone()));
        assert_eq!(campaign.on_sent(&stranger, T0), unknown);
        assert_eq!(campaign.on_delivered(&stranger, T0), unknown);
        assert_eq!(campaign.on_reply(&stranger, T0), unknown);
        assert_eq!(campaign.on_unreachable(&stranger, T0), unknown);
        assert_eq!(campaign.on_reminded(&stranger, T0), unknown);
        assert_eq!(campaign.status(&stranger), None);

        let twice = PingCampaign::new(
            CampaignId([1; 16]),
            T0,
            DEFAULT_REPLY_WINDOW,
            [
                target("EST.cert", Role::Technical),
                target("EST.cert", Role::Diplomatic),
            ],
        );
        assert_eq!(
            twice.unwrap_err(),
            CampaignError::DuplicateTarget(poc("EST.cert"))
        );
    }

    #[test]
    fn ping_reply_messages_are_checked() {
        let mut campaign = six();
        let reply = |campaign_id: CampaignId, from: &str| Message {
            header: Header {
                sender: poc(from),
                recipient: poc("UN.manager"),
                message_id: MessageId([1; 16]),
                thread_id: ThreadId([3; 16]),
                in_reply_to: None,
                created_at: T0,
                language: Language::French,
                handling: Handling::Confidential,
                exercise: None,
            },
            body: Body::PingReply(PingReply {
                campaign: campaign_id,
            }),
        };
        assert_eq!(
            campaign.on_ping_reply(&reply(CampaignId([9; 16]), "FRA.mfa"), T0),
            Err(CampaignError::WrongCampaign {
                expected: CampaignId([3; 16]),
                found: CampaignId([9; 16])
            })
        );
        assert_eq!(
            campaign.on_ping_reply(&reply(CampaignId([3; 16]), "USA.cisa"), T0),
            Err(CampaignError::UnknownTarget(poc("USA.cisa")))
        );
        let mut not_a_reply = reply(CampaignId([3; 16]), "FRA.mfa");
        not_a_reply.body = Body::Ping(campaign.ping());
        assert_eq!(
            campaign.on_ping_reply(&not_a_reply, T0),
            Err(CampaignError::NotPingReply(MessageKind::Ping))
        );
        campaign
            .on_ping_reply(&reply(CampaignId([3; 16]), "FRA.mfa"), at(Seconds::HOUR))
            .unwrap();
        assert_eq!(
            campaign.status(&poc("FRA.mfa")),
            Some(TargetStatus::Replied {
                at: at(Seconds::HOUR),
                late: false
            })
        );
    }

    #[test]
    fn empty_campaign() {
        let campaign =
            PingCampaign::new(CampaignId([0; 16]), T0, DEFAULT_REPLY_WINDOW, []).unwrap();
        assert!(campaign.is_empty());
        let report = campaign.report(at(Seconds::days(3)));
        assert_eq!(report.totals, Tally::default());
        assert_eq!(report.totals.response_rate(), 0.0);
    }
}
