//! Ping campaigns (Annex A para 8): the manager pings every PoC, each
//! acknowledges within 48 hours.
//!
//! The campaign's logic is poc-proto's sans-IO [`PingCampaign`]; this module
//! keeps its inputs durable (one row per event in `campaign_event`) and
//! rebuilds the campaign from them, so a restart loses nothing. Each tick
//! it starts a campaign when one is due (schedule or request), delivers
//! pings not yet delivered (retrying every `retry_seconds`), sends the
//! reminders [`PingCampaign::reminder_due`] names, and logs the overdue PoCs
//! once the deadline passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use poc_proto::campaign::{PingCampaign, Target, TargetStatus};
use poc_proto::envelope::{MemoryReplayCache, Recipient, Sender, VerifyPolicy};
use poc_proto::keys::EphemeralSecret;
use poc_proto::message::{CampaignId, Handling, Header, Language, Ping};
use poc_proto::{
    Body, Issuer, Message, MessageId, PocId, Role, Seconds, StateCode, ThreadId, Timestamp,
};
use poc_transport::{Connection, Endpoint};
use rusqlite::{OptionalExtension, params};

use super::Service;
use crate::clock;
use crate::rng::OsRandom;

const ACK_ACCEPTED: u8 = 0;

/// Per-target delivery bookkeeping kept in memory (attempt times).
#[derive(Debug, Default)]
struct Attempts {
    failures: u64,
    /// Next attempt (seconds); `u64::MAX` while one is under way or done.
    next_at: u64,
    done: bool,
}

/// Why a direct delivery failed: a refusal is final, unreachability may be
/// overcome through a relay.
enum DirectFailure {
    Refused(String),
    Unreachable(String),
}

/// Deliveries under way at once.
const MAX_IN_FLIGHT: usize = 64;

/// The campaign driver and the ping identity's endpoint.
pub struct Pinger {
    service: Arc<Service>,
    endpoint: Endpoint,
    /// Relays to deposit to when a PoC cannot be reached directly.
    relays: poc_relay::client::RelaySet,
    connections: tokio::sync::Mutex<HashMap<PocId, Connection>>,
    attempts: Mutex<HashMap<(String, PocId), Attempts>>,
    replay: Mutex<MemoryReplayCache>,
    in_flight: Arc<tokio::sync::Semaphore>,
    events: tokio::sync::mpsc::UnboundedSender<EventJob>,
}

/// One campaign event to record.
#[derive(Debug)]
struct Event {
    campaign: String,
    poc: PocId,
    kind: &'static str,
    at: Timestamp,
    detail: Option<String>,
}

type EventJob = (Event, tokio::sync::oneshot::Sender<Result<(), String>>);

/// Group commit: records every event queued since the last commit in one
/// transaction (one fsync), then tells each waiter. A ping reply is
/// acknowledged to its sender only once its event is committed.
async fn write_events(
    service: Arc<Service>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<EventJob>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < 4096 {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let result = tokio::task::block_in_place(|| {
            let mut db = service.db();
            let tx = db.conn_mut().transaction()?;
            for (e, _) in &jobs {
                record_event(&tx, &e.campaign, &e.poc, e.kind, e.at, e.detail.as_deref())?;
            }
            tx.commit()
        })
        .map_err(|e| e.to_string());
        for (_, done) in jobs {
            let _ = done.send(result.clone());
        }
    }
}

impl std::fmt::Debug for Pinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinger").finish_non_exhaustive()
    }
}

fn role_text(role: Role) -> String {
    role.to_string()
}

fn role_parse(text: &str) -> Role {
    match text {
        "diplomatic" => Role::Diplomatic,
        "technical" => Role::Technical,
        _ => Role::DirectoryManager,
    }
}

/// Records one event of a campaign.
pub fn record_event(
    conn: &rusqlite::Connection,
    campaign: &str,
    poc: &PocId,
    kind: &str,
    at: Timestamp,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO campaign_event (campaign, poc_id, kind, at, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![campaign, poc.as_str(), kind, i64::try_from(at.0).unwrap_or(i64::MAX), detail],
    )?;
    Ok(())
}

/// Rebuilds a campaign from its rows.
pub fn load_campaign(
    conn: &rusqlite::Connection,
    id: &str,
) -> anyhow::Result<Option<PingCampaign>> {
    let row: Option<(i64, i64, i64)> = conn
        .query_row(
            "SELECT started_at, reply_window, reminder_lead FROM campaign WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((started, window, lead)) = row else {
        return Ok(None);
    };
    let campaign_id = CampaignId::from_hex(id).ok_or_else(|| anyhow!("bad campaign id {id}"))?;
    let mut stmt =
        conn.prepare("SELECT poc_id, state, role FROM campaign_target WHERE campaign = ?1")?;
    let targets = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .map(|row| {
            let (poc, state, role) = row?;
            Ok(Target::new(
                PocId::new(&poc)?,
                StateCode::new(&state)?,
                role_parse(&role),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secs = |v: i64| u64::try_from(v).unwrap_or(0);
    let mut campaign = PingCampaign::new(
        campaign_id,
        Timestamp(secs(started)),
        Seconds(secs(window)),
        targets,
    )?
    .with_reminder_lead(Seconds(secs(lead)));
    let mut stmt = conn
        .prepare("SELECT poc_id, kind, at FROM campaign_event WHERE campaign = ?1 ORDER BY seq")?;
    let events = stmt.query_map([id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for event in events {
        let (poc, kind, at) = event?;
        let poc = PocId::new(&poc)?;
        let at = Timestamp(secs(at));
        let _ = match kind.as_str() {
            "sent" => campaign.on_sent(&poc, at),
            "delivered" => campaign.on_delivered(&poc, at),
            "replied" => campaign.on_reply(&poc, at),
            "unreachable" => campaign.on_unreachable(&poc, at),
            "reminded" => campaign.on_reminded(&poc, at),
            _ => Ok(()),
        };
    }
    // The deadline's "overdue" list is derived from time; replay it so
    // handle_timeout fires only once per process.
    Ok(Some(campaign))
}

/// The id of the newest campaign, if any.
pub fn latest_campaign(conn: &rusqlite::Connection) -> anyhow::Result<Option<(String, Timestamp)>> {
    Ok(conn
        .query_row(
            "SELECT id, started_at FROM campaign ORDER BY started_at DESC, rowid DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )
        .optional()?
        .map(|(id, at)| (id, Timestamp(u64::try_from(at).unwrap_or(0)))))
}

/// When each target's ping was delivered.
pub fn delivered_times(
    conn: &rusqlite::Connection,
    id: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, Timestamp>> {
    let mut stmt = conn.prepare(
        "SELECT poc_id, min(at) FROM campaign_event WHERE campaign = ?1 AND kind = 'delivered' GROUP BY poc_id",
    )?;
    let rows = stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = std::collections::BTreeMap::new();
    for row in rows {
        let (poc, at) = row?;
        out.insert(poc, Timestamp(u64::try_from(at).unwrap_or(0)));
    }
    Ok(out)
}

/// Asks the running service to start a campaign now.
pub fn request_campaign(conn: &rusqlite::Connection, now: Timestamp) -> anyhow::Result<i64> {
    conn.execute(
        "INSERT INTO campaign_request (requested_at) VALUES (?1)",
        [i64::try_from(now.0).unwrap_or(i64::MAX)],
    )?;
    Ok(conn.last_insert_rowid())
}

impl Pinger {
    /// A pinger speaking as the service's ping identity on `endpoint`.
    pub fn new(
        service: Arc<Service>,
        endpoint: Endpoint,
        relays: poc_relay::client::RelaySet,
    ) -> Pinger {
        let (events, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(write_events(service.clone(), rx));
        Pinger {
            service,
            endpoint,
            relays,
            connections: tokio::sync::Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
            replay: Mutex::new(MemoryReplayCache::default()),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            events,
        }
    }

    /// Records one event (group-committed with others queued meanwhile).
    async fn record(
        &self,
        campaign: &str,
        poc: &PocId,
        kind: &'static str,
        at: Timestamp,
        detail: Option<&str>,
    ) -> anyhow::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let event = Event {
            campaign: campaign.to_owned(),
            poc: poc.clone(),
            kind,
            at,
            detail: detail.map(str::to_owned),
        };
        self.events
            .send((event, done))
            .map_err(|_| anyhow!("the event writer stopped"))?;
        wait.await
            .map_err(|_| anyhow!("the event writer stopped"))?
            .map_err(|e| anyhow!("cannot record a campaign event: {e}"))
    }

    /// One step of the driver.
    pub async fn tick(self: &Arc<Self>) -> anyhow::Result<()> {
        let now = clock::now();
        self.maybe_start(now)?;
        let Some((id, _)) = latest_campaign(self.service.db().conn())? else {
            return Ok(());
        };
        let Some(mut campaign) = load_campaign(self.service.db().conn(), &id)? else {
            return Ok(());
        };
        let deadline = campaign.deadline();
        // Deliver pings not yet delivered, while the reply window is open,
        // and the reminders that are due: each in its own task (at most
        // `MAX_IN_FLIGHT` at once), so an unreachable PoC holds up no one.
        let mut due = Vec::new();
        if now < deadline {
            for target in campaign.report(now).targets {
                let undelivered = matches!(
                    target.status,
                    TargetStatus::Pending
                        | TargetStatus::Sent { .. }
                        | TargetStatus::Unreachable { .. }
                );
                if undelivered {
                    due.push((target.poc, false));
                }
            }
        }
        due.extend(
            campaign
                .reminder_due(now)
                .into_iter()
                .map(|poc| (poc, true)),
        );
        for (poc, reminder) in due {
            if !self.claim(&id, &poc, reminder, now) {
                continue;
            }
            let me = self.clone();
            let id = id.clone();
            let ping = campaign.ping();
            tokio::spawn(async move {
                let Ok(_permit) = me.in_flight.clone().acquire_owned().await else {
                    return;
                };
                if let Err(e) = me.try_ping(&id, ping, &poc, now, reminder).await {
                    tracing::error!(campaign = %id, poc = %poc, error = %e, "cannot record a ping attempt");
                }
            });
        }
        // Deadline: overdue PoCs, logged once (recorded as an event).
        let noted: bool = self
            .service
            .db()
            .conn()
            .query_row(
                "SELECT count(*) FROM campaign_event WHERE campaign = ?1 AND kind = 'deadline'",
                [&id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if !noted && now >= deadline {
            let overdue = campaign.handle_timeout(now);
            for poc in &overdue {
                tracing::warn!(campaign = %id, poc = %poc, "OVERDUE: no ping reply within the reply window");
            }
            let me = self.service.own.poc_id().clone();
            self.record(
                &id,
                &me,
                "deadline",
                now,
                Some(&format!("{} overdue", overdue.len())),
            )
            .await?;
        }
        Ok(())
    }

    fn maybe_start(&self, now: Timestamp) -> anyhow::Result<()> {
        let db = self.service.db();
        let conn = db.conn();
        let requested: Option<i64> = conn
            .query_row(
                "SELECT id FROM campaign_request WHERE handled = 0 ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let interval = self.service.config.campaigns.interval_days;
        let scheduled = match latest_campaign(conn)? {
            Some((_, started)) => interval > 0 && now >= started.plus(Seconds::days(interval)),
            // The first campaign waits for a request or one interval after
            // the first snapshot.
            None => false,
        };
        if requested.is_none() && !scheduled {
            return Ok(());
        }
        drop(db);
        let id = self.start(now)?;
        let db = self.service.db();
        if let Some(req) = requested {
            db.conn().execute(
                "UPDATE campaign_request SET handled = 1 WHERE id <= ?1",
                [req],
            )?;
        }
        tracing::info!(campaign = %id, scheduled, "ping campaign started");
        Ok(())
    }

    /// Starts a campaign over every listed, unrevoked State PoC.
    fn start(&self, now: Timestamp) -> anyhow::Result<String> {
        let directory = self.service.directory();
        let id = CampaignId::random(&mut OsRandom::new()).to_string();
        let c = &self.service.config.campaigns;
        let mut db = self.service.db();
        let tx = db.conn_mut().transaction()?;
        tx.execute(
            "INSERT INTO campaign (id, started_at, reply_window, reminder_lead) VALUES (?1, ?2, ?3, ?4)",
            params![
                id,
                i64::try_from(now.0).unwrap_or(i64::MAX),
                i64::try_from(Seconds::hours(c.reply_window_hours).0).unwrap_or(i64::MAX),
                i64::try_from(Seconds::hours(c.reminder_lead_hours).0).unwrap_or(i64::MAX)
            ],
        )?;
        for entry in directory.entries().values().filter(|e| !e.revoked) {
            let body = entry.certificate.body();
            let Issuer::State(state) = body.issuer else {
                continue;
            };
            tx.execute(
                "INSERT INTO campaign_target (campaign, poc_id, state, role) VALUES (?1, ?2, ?3, ?4)",
                params![id, body.poc_id.as_str(), state.as_str(), role_text(body.role)],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    fn key(id: &str, poc: &PocId, reminder: bool) -> (String, PocId) {
        (
            format!("{id}{}", if reminder { "/reminder" } else { "" }),
            poc.clone(),
        )
    }

    /// Claims the next attempt for `poc` if one is due and none is under
    /// way; an attempt under way holds `next_at` at `u64::MAX`.
    fn claim(&self, id: &str, poc: &PocId, reminder: bool, now: Timestamp) -> bool {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = attempts.entry(Self::key(id, poc, reminder)).or_default();
        if entry.next_at > now.0 {
            return false;
        }
        entry.next_at = u64::MAX;
        true
    }

    /// Seals and delivers one ping (or reminder) to `poc`, and records what
    /// happened.
    async fn try_ping(
        &self,
        id: &str,
        ping: Ping,
        poc: &PocId,
        now: Timestamp,
        reminder: bool,
    ) -> anyhow::Result<()> {
        let key = Self::key(id, poc, reminder);
        let first = self
            .attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_none_or(|a| a.failures == 0 && !a.done);
        if first && !reminder {
            self.record(id, poc, "sent", now, None).await?;
        }
        let outcome = self.deliver_ping(ping, poc, now).await;
        // The lock is taken and released in this block, never across an await.
        let failures = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
            let entry = attempts.entry(key).or_default();
            match &outcome {
                Ok(()) => {
                    entry.done = true;
                    0
                }
                Err(_) => {
                    entry.failures += 1;
                    entry.next_at = clock::now()
                        .plus(Seconds(self.service.config.campaigns.retry_seconds))
                        .0;
                    entry.failures
                }
            }
        };
        match outcome {
            Ok(()) => {
                let kind = if reminder { "reminded" } else { "delivered" };
                self.record(id, poc, kind, clock::now(), None).await?;
                tracing::info!(campaign = %id, poc = %poc, reminder, "ping delivered");
            }
            Err(reason) => {
                tracing::info!(campaign = %id, poc = %poc, %reason, failures, "ping not delivered");
                if failures == self.service.config.campaigns.unreachable_after_attempts && !reminder
                {
                    self.record(id, poc, "unreachable", now, Some(&reason))
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn deliver_ping(&self, ping: Ping, poc: &PocId, now: Timestamp) -> Result<(), String> {
        let directory = self.service.directory();
        let entry = directory
            .entries()
            .get(poc)
            .filter(|e| !e.revoked)
            .ok_or_else(|| format!("{poc} is no longer listed"))?;
        let recipient = entry.certificate.clone();
        let prekey = directory
            .current_prekey(poc, now)
            .ok_or_else(|| format!("{poc} has no prekey valid now"))?;
        let message = Message {
            header: Header {
                sender: self.service.own.poc_id().clone(),
                recipient: poc.clone(),
                message_id: MessageId::random(&mut OsRandom::new()),
                thread_id: ThreadId::random(&mut OsRandom::new()),
                in_reply_to: None,
                created_at: now,
                language: Language::English,
                handling: Handling::default(),
                exercise: None,
            },
            body: Body::Ping(ping),
        };
        let sealed = Sender::new(&self.service.own, &self.service.side.identity)
            .map_err(|e| e.to_string())?
            .seal(
                &message,
                &recipient,
                &prekey,
                now.plus(Seconds::hours(
                    self.service.config.campaigns.reply_window_hours,
                )),
                EphemeralSecret::generate(&mut OsRandom::new()),
            )
            .map_err(|e| e.to_string())?;
        let endpoints = &recipient.body().endpoints;
        let direct = match endpoints.iter().find_map(|e| match e {
            poc_proto::certificate::Endpoint::Direct { address } => Some(address.clone()),
            poc_proto::certificate::Endpoint::Relay { .. } => None,
        }) {
            Some(address) => {
                self.deliver_direct(poc, &address, &recipient, sealed.as_bytes())
                    .await
            }
            None => Err(DirectFailure::Unreachable(format!(
                "{poc} lists no direct endpoint"
            ))),
        };
        let direct = match direct {
            Ok(()) => return Ok(()),
            Err(DirectFailure::Refused(why)) => return Err(why),
            Err(DirectFailure::Unreachable(why)) => why,
        };
        if self.relays.is_empty() {
            return Err(direct);
        }
        // As a node does: the same sealed ping, to the PoC's relay mailbox.
        match self.relays.deposit(endpoints, sealed.as_bytes()).await {
            Ok(relay) => {
                tracing::info!(%poc, %relay, "ping deposited at a relay");
                Ok(())
            }
            Err(relays) => Err(format!("direct: {direct}; {relays}")),
        }
    }

    async fn deliver_direct(
        &self,
        poc: &PocId,
        address: &str,
        recipient: &poc_proto::certificate::VerifiedCertificate,
        envelope: &[u8],
    ) -> Result<(), DirectFailure> {
        let conn = self
            .connection(poc, address, recipient.body().identity_key)
            .await
            .map_err(DirectFailure::Unreachable)?;
        match conn.request(envelope).await {
            Ok(answer) if answer.first() == Some(&ACK_ACCEPTED) => Ok(()),
            Ok(answer) => Err(DirectFailure::Refused(format!(
                "refused by {poc} (answer {answer:02x?})"
            ))),
            Err(e) => {
                self.connections.lock().await.remove(poc);
                Err(DirectFailure::Unreachable(e.to_string()))
            }
        }
    }

    async fn connection(
        &self,
        poc: &PocId,
        address: &str,
        key: poc_proto::keys::IdentityPublicKey,
    ) -> Result<Connection, String> {
        if let Some(conn) = self.connections.lock().await.get(poc)
            && !conn.is_closed()
        {
            return Ok(conn.clone());
        }
        let socket = tokio::net::lookup_host(address)
            .await
            .map_err(|e| format!("cannot resolve {address}: {e}"))?
            .next()
            .ok_or_else(|| format!("{address} resolves to nothing"))?;
        let conn = self
            .endpoint
            .connect(socket, key)
            .await
            .map_err(|e| format!("cannot reach {poc} at {address}: {e}"))?;
        self.connections
            .lock()
            .await
            .insert(poc.clone(), conn.clone());
        Ok(conn)
    }

    /// Accepts PoC nodes' envelopes (ping replies, receipts) and records
    /// the replies.
    pub async fn run_inbound(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let Ok(connection) = incoming else { continue };
            let me = self.clone();
            tokio::spawn(async move {
                while let Some(Ok(mut request)) = connection.accept_request().await {
                    let payload = std::mem::take(&mut request.payload);
                    let answer = me.receive(&payload).await;
                    let _ = request.respond(&answer).await;
                }
            });
        }
    }

    /// Takes the ping identity's mail from each pinned relay as it arrives
    /// (replies from PoCs that cannot reach the service directly), through
    /// the same path as a direct delivery: one task per relay, running
    /// until the service stops.
    pub fn spawn_relay_mail(self: &Arc<Self>) {
        for index in 0..self.relays.len() {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                me.relays
                    .take_mail(index, |envelope| {
                        let me = Arc::clone(&me);
                        async move {
                            poc_relay::client::Taken::from_delivery_answer(
                                &me.receive(&envelope).await,
                            )
                        }
                    })
                    .await;
            });
        }
    }

    async fn receive(&self, envelope: &[u8]) -> Vec<u8> {
        let now = clock::now();
        let directory = self.service.directory();
        let opened = {
            let recipient = Recipient {
                certificate: &self.service.own,
                prekeys: &self.service.prekeys,
                directory: &*directory,
                policy: VerifyPolicy::default(),
            };
            let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
            recipient.open(envelope, &mut *replay, now)
        };
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => {
                tracing::info!(error = %e, "envelope refused");
                let [hi, lo] = e.code().as_u16().to_be_bytes();
                return vec![1, hi, lo];
            }
        };
        let message = opened.message;
        if let Body::PingReply(reply) = &message.body {
            let id = reply.campaign.to_string();
            let sender = message.header.sender.clone();
            let target: rusqlite::Result<Option<i64>> = self
                .service
                .db()
                .conn()
                .query_row(
                    "SELECT 1 FROM campaign_target WHERE campaign = ?1 AND poc_id = ?2",
                    params![id, sender.as_str()],
                    |r| r.get(0),
                )
                .optional();
            match target {
                Ok(Some(_)) => match self.record(&id, &sender, "replied", now, None).await {
                    Ok(()) => tracing::info!(campaign = %id, poc = %sender, "ping reply"),
                    Err(e) => {
                        // Not acknowledged: the PoC's node retries.
                        tracing::error!(error = %e, "ping reply not recorded");
                        let [hi, lo] = poc_proto::RejectCode::Internal.as_u16().to_be_bytes();
                        return vec![1, hi, lo];
                    }
                },
                Ok(None) => {
                    tracing::warn!(campaign = %id, poc = %sender, "ping reply for no campaign of this PoC; not counted")
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read campaign targets");
                    let [hi, lo] = poc_proto::RejectCode::Internal.as_u16().to_be_bytes();
                    return vec![1, hi, lo];
                }
            }
        }
        vec![ACK_ACCEPTED]
    }
}
