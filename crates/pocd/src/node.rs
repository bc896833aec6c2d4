//! The node: a thin async shell around poc-proto's sans-IO core.
//!
//! - **Inbound**: an envelope arrives on a QUIC stream from an authenticated
//!   peer. It is opened and verified (CPU, outside the store thread), then one
//!   transaction records it, marks its id as seen and queues the neutral
//!   receipt (and an automatic ping reply). Only after that commit does the
//!   peer get its transport acknowledgement, so a message is in the record
//!   before anyone is told it arrived, and a crash at any point loses nothing:
//!   the sender retries, and a retry of a recorded message is acknowledged
//!   as a duplicate without a second inbox entry.
//! - **Outbound**: a send is sealed, recorded and queued in one transaction;
//!   the outbox worker delivers it with retries (exponential backoff, jitter)
//!   until acknowledged, refused or expired.
//! - Rejections are recorded too, with their reason, and the peer gets the
//!   detail-free reject code.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use poc_control::{ApiError, SendAccepted, SendRequest};
use poc_proto::certificate::VerifiedCertificate;
use poc_proto::directory::{SignedSnapshot, VerifiedDirectory};
use poc_proto::envelope::{
    OpenedMessage, PeerDirectory, PeerStatus, PrekeyRing, Recipient, ReplayCache, Sender,
    VerifyPolicy,
};
use poc_proto::error::ReplayCacheError;
use poc_proto::keys::{
    EphemeralSecret, IdentityKeyPair, IdentityPublicKey, PrekeySecret, RandomSource,
};
use poc_proto::message::{Body, Header, Message, MessageId, PingReply, Receipt, ThreadId};
use poc_proto::thread::Direction;
use poc_proto::{OpenError, PocId, RejectCode, Seconds, Timestamp};
use poc_store::{NewEntry, NewOutboxItem, RecordEvent};
use poc_transport::{Connection, Endpoint, PeerAuthority};
use tokio::sync::Notify;

use crate::config::Config;
use crate::db::Db;
use crate::rejections::{Charge, RejectionBudget};

/// First byte of a transport acknowledgement: recorded (or already recorded).
pub(crate) const ACK_ACCEPTED: u8 = 0;
/// First byte of a transport refusal, followed by a u16 BE reject code.
pub(crate) const ACK_REJECTED: u8 = 1;

/// Seconds since the Unix epoch, from the system clock (shifted in tests,
/// see [`crate::clock`]).
pub(crate) fn now() -> Timestamp {
    crate::clock::now()
}

/// The operating system's CSPRNG.
pub(crate) struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        use ring::rand::SecureRandom;
        if ring::rand::SystemRandom::new().fill(dest).is_err() {
            // No key, id or envelope can be made safely without entropy.
            tracing::error!("the operating system's random number generator failed");
            std::process::abort();
        }
    }
}

/// The directory as the transport sees it: who may connect.
#[derive(Debug)]
pub(crate) struct DirectoryAuthority {
    directory: Arc<RwLock<VerifiedDirectory>>,
}

impl PeerAuthority for DirectoryAuthority {
    fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<PocId> {
        let directory = self.directory.read().ok()?;
        directory
            .entries()
            .values()
            .find(|e| !e.revoked && e.certificate.body().identity_key == *key)
            .map(|e| e.certificate.poc_id().clone())
    }
}

/// A replay cache that accepts everything: the real check asks the record,
/// inside the transaction that records the message
/// (`Reader::record_received_from`).
struct CheckedInTransaction;

impl ReplayCache for CheckedInTransaction {
    fn insert(&mut self, _: &PocId, _: MessageId, _: Timestamp) -> Result<bool, ReplayCacheError> {
        Ok(true)
    }
}

/// Everything a running node holds.
pub(crate) struct Node {
    /// Configuration.
    pub(crate) config: Config,
    /// Our PoC id.
    pub(crate) me: PocId,
    identity: IdentityKeyPair,
    prekeys: PrekeyRing,
    /// Our directory view.
    pub(crate) directory: Arc<RwLock<VerifiedDirectory>>,
    /// The store thread.
    pub(crate) db: Db,
    /// QUIC endpoint.
    pub(crate) endpoint: Endpoint,
    /// The configured relays (none by default).
    pub(crate) relays: poc_relay::client::RelaySet,
    /// One slot per peer: connecting to one peer (up to the handshake
    /// timeout if it is unreachable) never holds up deliveries to others.
    connections: Mutex<HashMap<PocId, Arc<tokio::sync::Mutex<Option<Connection>>>>>,
    in_flight: Mutex<HashSet<poc_store::OutboxId>>,
    /// Wakes the outbox worker.
    pub(crate) outbox_wake: Notify,
    /// Test hook `POCD_FAILPOINT=abort-after-record`: abort the process
    /// right after the first received message is committed, before it is
    /// acknowledged or its receipt sent (the crash-safety tests' "kill -9
    /// at the worst moment"). Read once at start; does nothing unless set.
    abort_after_record: bool,
    /// Held for the node's lifetime (see `start`).
    _lock: std::fs::File,
    threads: Mutex<crate::threads::ThreadIndex>,
    /// Refusals each origin may have recorded whole per minute.
    rejections: RejectionBudget,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// Replays the record into a thread index (once, at start).
fn index_threads(store: &poc_store::Store) -> anyhow::Result<crate::threads::ThreadIndex> {
    let mut index = crate::threads::ThreadIndex::default();
    store
        .read(|reader| {
            let mut after = 0;
            loop {
                let page = reader.record_page(after, 1000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for entry in &page {
                    let direction = match entry.event {
                        RecordEvent::Sent => Direction::Sent,
                        RecordEvent::Received => Direction::Received,
                        _ => continue,
                    };
                    if let Some(message) = entry
                        .content
                        .as_deref()
                        .and_then(|c| Message::decode(c).ok())
                    {
                        index.observe(&message, direction, entry.at);
                    }
                }
            }
            Ok(())
        })
        .context("cannot read the record to index threads")?;
    Ok(index)
}

/// Loads and verifies the signed directory file.
pub(crate) fn load_directory(config: &Config) -> anyhow::Result<VerifiedDirectory> {
    let manager =
        poc_keyfile::read_public(&config.directory.manager_key, poc_keyfile::KeyKind::Manager)?;
    let manager = poc_proto::keys::ManagerPublicKey::from_bytes(manager.public)
        .map_err(|e| anyhow!("{}: {e}", config.directory.manager_key.display()))?;
    let bytes = std::fs::read(&config.directory.snapshot).with_context(|| {
        format!(
            "cannot read the directory snapshot {}",
            config.directory.snapshot.display()
        )
    })?;
    let snapshot = SignedSnapshot::from_bytes(&bytes).with_context(|| {
        format!(
            "{} is not a directory snapshot",
            config.directory.snapshot.display()
        )
    })?;
    let directory = snapshot.verify(&manager).with_context(|| {
        format!(
            "directory snapshot {} does not verify",
            config.directory.snapshot.display()
        )
    })?;
    for rejected in directory.rejected() {
        tracing::warn!(poc = ?rejected.poc_id, reason = %rejected.reason, "directory entry refused");
    }
    Ok(directory)
}

impl Node {
    /// Opens the store, loads keys and directory, binds the QUIC endpoint.
    pub(crate) async fn start(config: Config) -> anyhow::Result<Arc<Node>> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&config.node.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                config.node.data_dir.display()
            )
        })?;
        std::fs::set_permissions(
            &config.node.data_dir,
            std::fs::Permissions::from_mode(0o700),
        )
        .with_context(|| {
            format!(
                "cannot restrict {} to mode 0700",
                config.node.data_dir.display()
            )
        })?;

        let me = config.node.poc_id.clone();
        let identity_file =
            poc_keyfile::read_secret(&config.node.identity_key, poc_keyfile::KeyKind::Identity)?;
        let identity = IdentityKeyPair::from_secret_bytes(&identity_file.secret);
        let prekey_file =
            poc_keyfile::read_secret(&config.node.prekey_key, poc_keyfile::KeyKind::Prekey)?;
        let prekey_secret = PrekeySecret::from_secret_bytes(&prekey_file.secret);

        let directory = load_directory(&config)?;
        let own = match directory.lookup(&me) {
            PeerStatus::Active(cert) => cert.clone(),
            PeerStatus::Revoked => bail!("this node's PoC {me} is revoked in the directory"),
            PeerStatus::Unknown => bail!(
                "this node's PoC {me} is not in the directory snapshot {}; ask the directory manager to include its certificate",
                config.directory.snapshot.display()
            ),
        };
        if own.body().identity_key != identity.public() {
            bail!(
                "{} does not hold the identity key of {me} as certified in the directory",
                config.node.identity_key.display()
            );
        }
        let mut prekeys = PrekeyRing::new();
        let certified = own.body().prekey.clone();
        if certified.public != prekey_secret.public() {
            bail!(
                "{} does not hold the prekey certified for {me}",
                config.node.prekey_key.display()
            );
        }
        prekeys.insert(certified, prekey_secret)?;

        // One daemon per data directory: a second one would race the first
        // on the store and the socket. The lock dies with the process.
        let lock_path = config.node.data_dir.join("pocd.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            bail!(
                "another pocd is already running on {}; stop it first",
                config.node.data_dir.display()
            );
        }

        let store = poc_store::Store::open(&config.database_path()).with_context(|| {
            format!("cannot open the store {}", config.database_path().display())
        })?;
        let threads = index_threads(&store)?;
        let db = Db::start(store)?;
        let directory = Arc::new(RwLock::new(directory));
        let authority = Arc::new(DirectoryAuthority {
            directory: directory.clone(),
        });
        let endpoint = Endpoint::bind(
            config.node.listen,
            &identity,
            authority,
            poc_transport::ALPN_NODE,
            poc_transport::Limits::default(),
        )
        .with_context(|| format!("cannot listen on {}", config.node.listen))?;
        let relays = crate::relay_client::relays(&config, &identity)?;
        tracing::info!(poc = %me, listen = %config.node.listen, relays = relays.len(), "node started");
        let rejections = RejectionBudget::new(config.limits.rejections_recorded_per_minute);
        Ok(Arc::new(Node {
            config,
            me,
            identity,
            prekeys,
            directory,
            db,
            endpoint,
            relays,
            connections: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            outbox_wake: Notify::new(),
            _lock: lock,
            threads: Mutex::new(threads),
            rejections,
            abort_after_record: std::env::var("POCD_FAILPOINT")
                .is_ok_and(|v| v == "abort-after-record"),
        }))
    }

    /// The node's identity key pair (for the directory sync client).
    pub(crate) fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// Closes the cached connection to `peer` (e.g. once it is revoked).
    pub(crate) async fn forget_connection(&self, peer: &PocId) {
        let slot = self.connection_slot(peer);
        if let Some(conn) = slot.lock().await.take() {
            conn.close();
        }
    }

    fn directory(&self) -> std::sync::RwLockReadGuard<'_, VerifiedDirectory> {
        // A poisoned lock only means a panic elsewhere; the data is intact.
        self.directory.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn own_certificate(&self) -> anyhow::Result<VerifiedCertificate> {
        match self.directory().lookup(&self.me) {
            PeerStatus::Active(cert) => Ok(cert.clone()),
            _ => bail!(
                "this node's PoC {} is no longer active in the directory",
                self.me
            ),
        }
    }

    /// Seals `message` to its recipient at its current prekey.
    fn seal(&self, message: &Message) -> Result<poc_proto::envelope::SealedEnvelope, ApiError> {
        let own = self
            .own_certificate()
            .map_err(|e| ApiError::new(e.to_string(), None))?;
        let directory = self.directory();
        let to = &message.header.recipient;
        let recipient = match directory.lookup(to) {
            PeerStatus::Active(cert) => cert.clone(),
            PeerStatus::Revoked => {
                return Err(ApiError::new(
                    format!("{to} is revoked in the directory"),
                    None,
                ));
            }
            PeerStatus::Unknown => {
                return Err(ApiError::new(
                    format!("{to} is not in the directory"),
                    Some("check the id with `poc directory`"),
                ));
            }
        };
        let prekey = directory
            .current_prekey(to, message.header.created_at)
            .ok_or_else(|| {
                ApiError::new(
                    format!("{to} has no prekey valid now"),
                    Some("sync the directory"),
                )
            })?;
        let ttl = Seconds::hours(self.config.delivery.message_ttl_hours);
        let sender =
            Sender::new(&own, &self.identity).map_err(|e| ApiError::new(e.to_string(), None))?;
        sender
            .seal(
                message,
                &recipient,
                &prekey,
                message.header.created_at.plus(ttl),
                EphemeralSecret::generate(&mut OsRandom),
            )
            .map_err(|e| ApiError::new(format!("cannot send: {e}"), None))
    }

    /// Builds, seals, records and queues a message from the control API.
    pub(crate) async fn send(
        self: &Arc<Self>,
        request: SendRequest,
    ) -> Result<SendAccepted, ApiError> {
        let missing_fields = match &request.body {
            Body::Inquiry(inquiry) => poc_proto::template::missing_inquiry_fields(inquiry),
            Body::Response(response) => poc_proto::template::missing_response_fields(response),
            _ => Vec::new(),
        }
        .into_iter()
        .map(|f| f.to_string())
        .collect();
        let thread_id = match (request.thread, &request.body) {
            (Some(thread), _) => thread,
            (None, Body::Inquiry(_) | Body::Ping(_)) => ThreadId::random(&mut OsRandom),
            (None, _) => {
                return Err(ApiError::new(
                    "only an inquiry opens a new thread",
                    Some("give the thread id of the inquiry you are answering (see `poc inbox`)"),
                ));
            }
        };
        if let Some(conflict) = self.exercise_conflict(&thread_id, request.exercise.as_ref()) {
            return Err(ApiError::new(
                conflict,
                Some(
                    "a reply keeps its thread's exercise marker: real and exercise threads never mix",
                ),
            ));
        }
        let message = Message {
            header: Header {
                sender: self.me.clone(),
                recipient: request.to,
                message_id: MessageId::random(&mut OsRandom),
                thread_id,
                in_reply_to: request.in_reply_to,
                created_at: now(),
                language: request.language,
                handling: request.handling,
                exercise: request.exercise,
            },
            body: request.body,
        };
        let (outbox_id, message_id) = self.queue(message).await?;
        Ok(SendAccepted {
            message_id,
            thread_id,
            outbox_id,
            missing_fields,
        })
    }

    /// Seals `message`, records it as sent and queues it, in one transaction.
    async fn queue(self: &Arc<Self>, message: Message) -> Result<(i64, MessageId), ApiError> {
        let sealed = self.seal(&message)?;
        let entry = sent_entry(&message, &sealed);
        let envelope = sealed.into_bytes();
        let item = outbox_item(&message, self.config.delivery.message_ttl_hours);
        let message_id = message.header.message_id;
        let observed = message.clone();
        let outbox_id = self
            .db
            .run(move |tx| tx.record_send(entry, item))
            .await
            .map_err(|e| ApiError::new(e.to_string(), Some("check the node's disk and logs")))?;
        self.observe(&observed, Direction::Sent);
        // First attempt now; the outbox worker only handles retries.
        self.dispatch(Delivery {
            id: outbox_id,
            recipient: observed.header.recipient,
            envelope,
            attempts: 0,
        });
        Ok((outbox_id.0, message_id))
    }

    /// Handles one envelope received from `peer`; returns the transport
    /// acknowledgement frame.
    pub(crate) async fn receive(self: &Arc<Self>, peer: &PocId, envelope: Vec<u8>) -> Vec<u8> {
        self.receive_from(Origin::Peer(peer), envelope).await
    }

    /// Handles one envelope fetched from relay `relay`, through the same
    /// path as a direct one (so a message arriving both ways, or through two
    /// relays, is recorded and delivered once); returns the acknowledgement
    /// frame, which the relay client turns into an ack or a retry.
    pub(crate) async fn receive_relayed(
        self: &Arc<Self>,
        relay: &str,
        envelope: Vec<u8>,
    ) -> Vec<u8> {
        self.receive_from(Origin::Relay(relay), envelope).await
    }

    async fn receive_from(self: &Arc<Self>, origin: Origin<'_>, envelope: Vec<u8>) -> Vec<u8> {
        let received_at = now();
        let opened = {
            let own = match self.own_certificate() {
                Ok(own) => own,
                Err(_) => return rejected(RejectCode::Internal),
            };
            let directory = self.directory();
            let recipient = Recipient {
                certificate: &own,
                prekeys: &self.prekeys,
                directory: &*directory,
                policy: VerifyPolicy::default(),
            };
            recipient.open(&envelope, &mut CheckedInTransaction, received_at)
        };
        match opened {
            Ok(opened) => {
                let header = &opened.message.header;
                if let Some(conflict) =
                    self.exercise_conflict(&header.thread_id, header.exercise.as_ref())
                {
                    // Never take an exercise message as real, nor mix a real
                    // one into an exercise: refused, and recorded as such.
                    tracing::info!(from = %origin, "envelope rejected: {conflict}");
                    let entry = NewEntry {
                        peer: Some(header.sender.clone()),
                        message_id: Some(header.message_id),
                        thread_id: Some(header.thread_id),
                        kind: Some(opened.message.body.kind().to_string()),
                        exercise: header.exercise.as_ref().map(|e| e.0.clone()),
                        envelope: Some(envelope),
                        detail: Some(format!("from {} via {origin}: {conflict}", header.sender)),
                        ..NewEntry::new(received_at, RecordEvent::Rejected)
                    };
                    return self
                        .refuse_from(origin, entry, RejectCode::ExerciseMismatch)
                        .await;
                }
                self.record_received(origin, envelope, opened, received_at)
                    .await
            }
            Err(err) => {
                tracing::info!(from = %origin, error = %err, "envelope rejected");
                let code = err.code();
                let mut entry = rejected_entry(origin.peer(), &err, envelope, received_at);
                if let Origin::Relay(relay) = origin {
                    entry.detail = Some(format!("{err} (fetched from relay {relay})"));
                }
                self.refuse_from(origin, entry, code).await
            }
        }
    }

    /// [`Node::refuse`] within `origin`'s budget of recorded refusals
    /// (`[limits] rejections_recorded_per_minute`): past it, one entry
    /// without the envelope says so, and the rest of the minute's refusals
    /// are answered but not recorded.
    async fn refuse_from(&self, origin: Origin<'_>, entry: NewEntry, code: RejectCode) -> Vec<u8> {
        match self.rejections.charge(&origin.to_string(), Instant::now()) {
            Charge::Record => self.refuse(entry, code).await,
            Charge::Spent => {
                let per_minute = self.rejections.per_minute();
                tracing::warn!(from = %origin, per_minute, "refused envelopes past the recording budget: the rest of this minute's are not recorded");
                let note = NewEntry {
                    peer: entry.peer,
                    detail: Some(format!(
                        "{origin} sent more than {per_minute} refused envelopes within a minute: \
                         further ones this minute are refused without being recorded"
                    )),
                    ..NewEntry::new(entry.at, RecordEvent::Rejected)
                };
                self.refuse(note, code).await
            }
            Charge::Quiet => rejected(code),
        }
    }

    /// Records a refused envelope, then answers with its code (or asks for a
    /// retry if it could not be recorded).
    async fn refuse(&self, entry: NewEntry, code: RejectCode) -> Vec<u8> {
        if let Err(e) = self
            .db
            .run(move |tx| tx.record_append(entry).map(|_| ()))
            .await
        {
            tracing::error!(error = %e, "could not record a rejection");
            return rejected(RejectCode::Internal);
        }
        rejected(code)
    }

    async fn record_received(
        self: &Arc<Self>,
        origin: Origin<'_>,
        envelope: Vec<u8>,
        opened: OpenedMessage,
        received_at: Timestamp,
    ) -> Vec<u8> {
        let message = &opened.message;
        let header = &message.header;
        // Answers prepared now (CPU work), committed with the record or dropped.
        let mut answers = Vec::new();
        if !matches!(message.body, Body::Receipt(_)) {
            answers.push(self.answer(
                message,
                Body::Receipt(Receipt {
                    acknowledged: header.message_id,
                    content_digest: opened.content_digest,
                    received_at,
                }),
            ));
        }
        if let Body::Ping(ping) = &message.body
            && self.config.pings.auto_reply
        {
            answers.push(self.answer(
                message,
                Body::PingReply(PingReply {
                    campaign: ping.campaign,
                }),
            ));
        }
        let mut queued = Vec::new();
        let mut answered = Vec::new();
        for answer in answers {
            match answer.and_then(|m| self.seal(&m).map(|sealed| (m, sealed))) {
                Ok((m, sealed)) => {
                    let entry = sent_entry(&m, &sealed);
                    let ttl = self.config.delivery.message_ttl_hours;
                    let envelope = sealed.into_bytes();
                    queued.push((entry, outbox_item(&m, ttl)));
                    answered.push((m, envelope));
                }
                // The message is still recorded; the operator sees no receipt went out.
                Err(e) => tracing::warn!(error = %e, "could not prepare an answer"),
            }
        }
        let sender = header.sender.clone();
        let message_id = header.message_id;
        let entry = NewEntry {
            at: received_at,
            event: RecordEvent::Received,
            peer: Some(sender.clone()),
            message_id: Some(message_id),
            thread_id: Some(header.thread_id),
            kind: Some(message.body.kind().to_string()),
            exercise: header.exercise.as_ref().map(|e| e.0.clone()),
            envelope: Some(envelope),
            content: Some(opened.content),
            signature: Some(opened.signature.0),
            detail: match origin {
                Origin::Peer(peer) => (peer != &sender).then(|| format!("delivered by {peer}")),
                Origin::Relay(relay) => Some(format!("fetched from relay {relay}")),
            },
        };
        // A relay only carries what the sender deposited: a copy arriving
        // through it counts as the sender's own retry.
        let delivered_by = origin.peer().unwrap_or(&sender).clone();
        let replay_entry = NewEntry {
            detail: Some(format!(
                "replay of message {message_id} from {sender} pushed by {origin}"
            )),
            ..NewEntry::new(received_at, RecordEvent::Rejected)
        };
        let outcome = self
            .db
            .run(move |tx| {
                if tx.record_received_from(&sender, message_id)? {
                    // The sender retrying (its acknowledgement was lost) is
                    // answered again; anyone else pushing the same envelope
                    // is replaying it, and that attempt is recorded.
                    if delivered_by == sender {
                        return Ok((Arrival::Duplicate, Vec::new()));
                    }
                    tx.record_append(NewEntry {
                        peer: Some(delivered_by),
                        ..replay_entry
                    })?;
                    return Ok((Arrival::Replay, Vec::new()));
                }
                tx.record_append(entry)?;
                let mut ids = Vec::with_capacity(queued.len());
                for (sent, item) in queued {
                    ids.push(tx.record_send(sent, item)?);
                }
                Ok((Arrival::Recorded, ids))
            })
            .await;
        if self.abort_after_record && matches!(outcome, Ok((Arrival::Recorded, _))) {
            tracing::warn!("failpoint abort-after-record: aborting");
            std::process::abort();
        }
        match outcome {
            Ok((Arrival::Recorded, ids)) => {
                self.observe_at(message, Direction::Received, received_at);
                for ((answer, envelope), id) in answered.into_iter().zip(ids) {
                    self.observe(&answer, Direction::Sent);
                    self.dispatch(Delivery {
                        id,
                        recipient: answer.header.recipient,
                        envelope,
                        attempts: 0,
                    });
                }
                vec![ACK_ACCEPTED]
            }
            Ok((Arrival::Duplicate, _)) => vec![ACK_ACCEPTED],
            Ok((Arrival::Replay, _)) => rejected(RejectCode::Replay),
            Err(e) => {
                tracing::error!(error = %e, "could not record a received message");
                rejected(RejectCode::Internal)
            }
        }
    }

    /// Why a message with marker `exercise` may not join `thread`, if the
    /// thread is known with another marker.
    fn exercise_conflict(
        &self,
        thread: &ThreadId,
        exercise: Option<&poc_proto::message::ExerciseId>,
    ) -> Option<String> {
        let known = self.threads.lock().ok()?.exercise_of(thread)?;
        let found = exercise.map(|e| e.0.as_str());
        if known.as_deref() == found {
            return None;
        }
        let show = |marker: Option<&str>| match marker {
            Some(id) => format!("exercise {id:?}"),
            None => "real (no exercise marker)".to_owned(),
        };
        Some(format!(
            "exercise marker mismatch: thread {thread} is {}, the message is {}",
            show(known.as_deref()),
            show(found)
        ))
    }

    /// Purges an exercise's payloads from the record (a Purge entry keeps
    /// the chain whole) and drops its threads from the index.
    pub(crate) async fn purge_exercise(
        &self,
        exercise: String,
    ) -> Result<poc_control::PurgeView, ApiError> {
        let at = now();
        let name = exercise.clone();
        let (purged, seq) = self
            .db
            .run(move |tx| {
                let purged = tx.record_purge_exercise(&name, at)?;
                let seq = tx.record_head()?.map(|h| h.seq).unwrap_or(0);
                Ok((purged, seq))
            })
            .await
            .map_err(crate::control::storage)?;
        let threads = self
            .threads
            .lock()
            .map(|mut t| t.forget_exercise(&exercise))
            .unwrap_or(0);
        tracing::info!(%exercise, purged, "exercise purged from the record");
        Ok(poc_control::PurgeView {
            exercise,
            purged_entries: purged,
            threads_forgotten: u32::try_from(threads).unwrap_or(u32::MAX),
            purge_seq: seq,
        })
    }

    fn observe(&self, message: &Message, direction: Direction) {
        self.observe_at(message, direction, message.header.created_at);
    }

    fn observe_at(&self, message: &Message, direction: Direction, at: Timestamp) {
        if let Ok(mut threads) = self.threads.lock() {
            threads.observe(message, direction, at);
        }
    }

    /// Every thread's summary as of `now`.
    pub(crate) fn thread_summaries(&self, now: Timestamp) -> Vec<poc_control::ThreadSummary> {
        self.threads
            .lock()
            .map(|t| t.summaries(now))
            .unwrap_or_default()
    }

    /// One thread's summary as of `now`.
    pub(crate) fn thread_summary(
        &self,
        id: &ThreadId,
        now: Timestamp,
    ) -> Option<poc_control::ThreadSummary> {
        self.threads.lock().ok()?.summary(id, now)
    }

    /// A reply to `to` on its thread.
    fn answer(&self, to: &Message, body: Body) -> Result<Message, ApiError> {
        Ok(Message {
            header: Header {
                sender: self.me.clone(),
                recipient: to.header.sender.clone(),
                message_id: MessageId::random(&mut OsRandom),
                thread_id: to.header.thread_id,
                in_reply_to: Some(to.header.message_id),
                created_at: now(),
                language: to.header.language,
                handling: to.header.handling,
                exercise: to.header.exercise.clone(),
            },
            body,
        })
    }

    /// The outbox worker: delivers due entries until the node stops.
    pub(crate) async fn run_outbox(self: Arc<Self>) {
        loop {
            let now = now();
            let expired = self.db.run(move |tx| tx.outbox_expire(now)).await;
            if let Ok(expired) = expired {
                for item in expired {
                    tracing::warn!(outbox = item.id.0, recipient = %item.recipient, "delivery expired; reported as failed");
                }
            }
            let due = self
                .db
                .run(move |tx| tx.outbox_due(now, 64))
                .await
                .unwrap_or_default();
            for due in due {
                self.dispatch(Delivery::from(due));
            }
            let next = self
                .db
                .run(|tx| {
                    let attempt = tx.next_outbox_attempt()?;
                    let expiry = tx.next_outbox_expiry()?;
                    Ok(attempt.into_iter().chain(expiry).min())
                })
                .await
                .ok()
                .flatten();
            let wait = next
                .map(|at| Duration::from_secs(at.0.saturating_sub(now.0).clamp(0, 60)))
                .unwrap_or(Duration::from_secs(60))
                .max(Duration::from_millis(200));
            tokio::select! {
                () = self.outbox_wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts delivering `delivery` unless it is already under way.
    fn dispatch(self: &Arc<Self>, delivery: Delivery) {
        let fresh = self
            .in_flight
            .lock()
            .map(|mut set| set.insert(delivery.id))
            .unwrap_or(false);
        if fresh {
            let node = self.clone();
            tokio::spawn(async move { node.deliver(delivery).await });
        }
    }

    async fn deliver(self: Arc<Self>, delivery: Delivery) {
        let id = delivery.id;
        let (result, via) = self.try_deliver_or_relay(&delivery).await;
        let now = now();
        let attempts = delivery.attempts + 1;
        let retrying = matches!(result, Err(DeliveryError::Transient(_)));
        let outcome = match result {
            // Deferred: the recipient holds the message durably now, and if a
            // crash loses this mark the message is sent again and answered
            // as a duplicate; an fsync of its own would hold up the store
            // thread just as the receipt arrives.
            Ok(()) => {
                self.db
                    .run_deferred(move |tx| tx.outbox_mark_delivered(id, &via, now).map(|_| ()))
                    .await
            }
            Err(DeliveryError::Refused(code)) => {
                let reason = format!("refused by the recipient: {code:?}");
                tracing::warn!(outbox = id.0, %reason, "delivery refused");
                self.db
                    .run(move |tx| tx.outbox_mark_failed(id, &reason, now).map(|_| ()))
                    .await
            }
            Err(DeliveryError::Transient(reason)) => {
                let delay = backoff(
                    attempts,
                    self.config.delivery.retry_initial_seconds,
                    self.config.delivery.retry_max_seconds,
                );
                tracing::debug!(outbox = id.0, %reason, retry_in = delay, "delivery failed; will retry");
                self.db
                    .run(move |tx| {
                        tx.outbox_reschedule(id, now.plus(Seconds(delay)), &reason)
                            .map(|_| ())
                    })
                    .await
            }
        };
        if let Err(e) = outcome {
            tracing::error!(outbox = id.0, error = %e, "could not update the outbox");
        }
        if let Ok(mut set) = self.in_flight.lock() {
            set.remove(&id);
        }
        if retrying {
            // The worker sleeps until the earliest retry; this one may be earlier.
            self.outbox_wake.notify_one();
        }
    }

    /// The recipient's direct endpoint first; if it cannot be reached, the
    /// relays in order (see `relay_client`). Returns how it was delivered.
    async fn try_deliver_or_relay(&self, item: &Delivery) -> (Result<(), DeliveryError>, String) {
        match self.try_deliver(item).await {
            Err(DeliveryError::Transient(direct)) if !self.relays.is_empty() => {
                let endpoints = match self.directory().lookup(&item.recipient) {
                    PeerStatus::Active(cert) => cert.body().endpoints.clone(),
                    _ => Vec::new(),
                };
                match self.relays.deposit(&endpoints, &item.envelope).await {
                    Ok(relay) => (Ok(()), format!("relay {relay}")),
                    Err(relays) => (
                        Err(DeliveryError::Transient(format!(
                            "direct: {direct}; {relays}"
                        ))),
                        String::new(),
                    ),
                }
            }
            other => (other, "direct".to_owned()),
        }
    }

    async fn try_deliver(&self, item: &Delivery) -> Result<(), DeliveryError> {
        let connection = self.connection(&item.recipient).await?;
        let answer = match connection.request(&item.envelope).await {
            Ok(answer) => answer,
            Err(e) => {
                // Drop the cached connection; the next attempt reconnects.
                *self.connection_slot(&item.recipient).lock().await = None;
                return Err(DeliveryError::Transient(e.to_string()));
            }
        };
        match answer.as_slice() {
            [ACK_ACCEPTED] => Ok(()),
            [ACK_REJECTED, hi, lo] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                match RejectCode::from_u16(code) {
                    Some(RejectCode::Internal) | None => Err(DeliveryError::Transient(format!(
                        "recipient failed internally (code {code})"
                    ))),
                    Some(code) => Err(DeliveryError::Refused(code)),
                }
            }
            _ => Err(DeliveryError::Transient(
                "unintelligible acknowledgement".into(),
            )),
        }
    }

    fn connection_slot(&self, peer: &PocId) -> Arc<tokio::sync::Mutex<Option<Connection>>> {
        let mut slots = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(peer.clone()).or_default().clone()
    }

    async fn connection(&self, peer: &PocId) -> Result<Connection, DeliveryError> {
        let slot = self.connection_slot(peer);
        // Held while connecting, so concurrent deliveries to the same peer
        // share one handshake.
        let mut cached = slot.lock().await;
        if let Some(conn) = cached.as_ref()
            && !conn.is_closed()
        {
            return Ok(conn.clone());
        }
        let (address, key) = {
            let directory = self.directory();
            let PeerStatus::Active(cert) = directory.lookup(peer) else {
                return Err(DeliveryError::Transient(format!(
                    "{peer} is not active in the directory"
                )));
            };
            let address = cert.body().endpoints.iter().find_map(|e| match e {
                poc_proto::certificate::Endpoint::Direct { address } => Some(address.clone()),
                poc_proto::certificate::Endpoint::Relay { .. } => None,
            });
            (address, cert.body().identity_key)
        };
        let address = address
            .ok_or_else(|| DeliveryError::Transient(format!("{peer} lists no direct endpoint")))?;
        let socket = tokio::net::lookup_host(&address)
            .await
            .map_err(|e| DeliveryError::Transient(format!("cannot resolve {address}: {e}")))?
            .next()
            .ok_or_else(|| DeliveryError::Transient(format!("{address} resolves to nothing")))?;
        let conn = self.endpoint.connect(socket, key).await.map_err(|e| {
            DeliveryError::Transient(format!("cannot reach {peer} at {address}: {e}"))
        })?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// Accepts peers and serves their envelopes until the endpoint closes.
    pub(crate) async fn run_inbound(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let connection = match incoming {
                Ok(connection) => connection,
                Err(e) => {
                    tracing::info!(error = %e, "incoming connection refused");
                    continue;
                }
            };
            let node = self.clone();
            tokio::spawn(async move {
                let peer = connection.peer().clone();
                while let Some(request) = connection.accept_request().await {
                    let request = match request {
                        Ok(request) => request,
                        Err(e) => {
                            tracing::info!(peer = %peer, error = %e, "bad stream from peer");
                            continue;
                        }
                    };
                    let node = node.clone();
                    let peer = peer.clone();
                    tokio::spawn(async move {
                        let mut request = request;
                        let payload = std::mem::take(&mut request.payload);
                        let answer = node.receive(&peer, payload).await;
                        if let Err(e) = request.respond(&answer).await {
                            tracing::debug!(peer = %peer, error = %e, "could not acknowledge");
                        }
                    });
                }
            });
        }
    }

    /// Our verified directory, for views.
    pub(crate) fn directory_snapshot(&self) -> BTreeMap<PocId, (VerifiedCertificate, bool)> {
        self.directory()
            .entries()
            .iter()
            .map(|(id, e)| (id.clone(), (e.certificate.clone(), e.revoked)))
            .collect()
    }

    /// The directory's sequence number.
    pub(crate) fn directory_sequence(&self) -> u64 {
        self.directory().sequence()
    }
}

/// Where a received envelope came from.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    /// Pushed by this authenticated peer over a direct connection.
    Peer(&'a PocId),
    /// Fetched from this configured relay (which cannot vouch for anyone).
    Relay(&'a str),
}

impl Origin<'_> {
    fn peer(&self) -> Option<&PocId> {
        match self {
            Origin::Peer(peer) => Some(peer),
            Origin::Relay(_) => None,
        }
    }
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Peer(peer) => write!(f, "{peer}"),
            Origin::Relay(relay) => write!(f, "relay {relay}"),
        }
    }
}

/// What became of a verified envelope.
enum Arrival {
    /// New: recorded, receipt queued.
    Recorded,
    /// Already recorded, and retried by its own sender: acknowledged again.
    Duplicate,
    /// Already recorded, pushed again by someone else: refused and recorded.
    Replay,
}

/// One delivery attempt's input.
struct Delivery {
    id: poc_store::OutboxId,
    recipient: PocId,
    envelope: Vec<u8>,
    /// Failed attempts so far.
    attempts: u64,
}

impl From<poc_store::DueItem> for Delivery {
    fn from(due: poc_store::DueItem) -> Self {
        Delivery {
            id: due.item.id,
            recipient: due.item.recipient,
            envelope: due.envelope,
            attempts: due.item.attempts,
        }
    }
}

enum DeliveryError {
    /// Worth retrying: unreachable, timed out, recipient busy.
    Transient(String),
    /// The recipient refused the envelope; retrying cannot help.
    Refused(RejectCode),
}

fn rejected(code: RejectCode) -> Vec<u8> {
    let [hi, lo] = code.as_u16().to_be_bytes();
    vec![ACK_REJECTED, hi, lo]
}

/// Exponential backoff with ±20 % jitter, in seconds.
fn backoff(attempts: u64, initial: u64, max: u64) -> u64 {
    let exp = initial
        .saturating_mul(1u64 << attempts.min(20).saturating_sub(1))
        .min(max);
    let mut byte = [0u8; 1];
    OsRandom.fill(&mut byte);
    let spread = exp / 5;
    (exp - spread + (u64::from(byte[0]) * 2 * spread) / 255).max(1)
}

fn sent_entry(message: &Message, sealed: &poc_proto::envelope::SealedEnvelope) -> NewEntry {
    NewEntry {
        at: message.header.created_at,
        event: RecordEvent::Sent,
        peer: Some(message.header.recipient.clone()),
        message_id: Some(message.header.message_id),
        thread_id: Some(message.header.thread_id),
        kind: Some(message.body.kind().to_string()),
        exercise: message.header.exercise.as_ref().map(|e| e.0.clone()),
        envelope: Some(sealed.as_bytes().to_vec()),
        content: Some(sealed.content().to_vec()),
        signature: Some(sealed.signature().0),
        detail: None,
    }
}

fn outbox_item(message: &Message, ttl_hours: u64) -> NewOutboxItem {
    NewOutboxItem {
        expires_at: message.header.created_at.plus(Seconds::hours(ttl_hours)),
        next_attempt_at: message.header.created_at,
    }
}

fn rejected_entry(
    peer: Option<&PocId>,
    err: &OpenError,
    envelope: Vec<u8>,
    at: Timestamp,
) -> NewEntry {
    NewEntry {
        at,
        event: RecordEvent::Rejected,
        peer: peer.cloned(),
        message_id: None,
        thread_id: None,
        kind: None,
        exercise: None,
        envelope: Some(envelope),
        content: None,
        signature: None,
        detail: Some(err.to_string()),
    }
}
