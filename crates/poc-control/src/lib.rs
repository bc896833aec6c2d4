//! The local control API of a pocd node, spoken by the `poc` CLI.
//!
//! Transport: a Unix domain socket (mode 0600, inside the node's 0700 data
//! directory, so only the node's operator account can connect). Each request
//! is one line of JSON; each response is one line of JSON:
//! `{"ok": <value>}` or `{"error": {"message": "...", "hint": "..."}}`.
//! A connection may carry many requests in turn. Requests are at most
//! [`MAX_REQUEST_BYTES`]; the daemon closes connections idle for a minute.
//! Message, thread and campaign ids, digests and byte strings (attachments,
//! hash indicators) are lowercase hex strings; times are seconds since the
//! Unix epoch; message bodies follow serde's externally tagged form of the
//! `poc_proto::message` types (e.g. `{"Inquiry": {...}}`).
//!
//! The API is local-only by design: nothing here is reachable from the
//! network, and nothing returned contains key material.
//!
//! Directory and ping requests (appended after the original ones):
//! `{"DirectorySync": {"file": null}}` syncs from the directory service (or
//! from a snapshot file path) and answers a [`DirectorySyncView`] (a refused
//! rollback or fork is an error naming why); `"DirectoryEntries"` answers
//! [`DirectoryEntryView`]s; `"DirectoryStatus"` a [`DirectoryStatusView`]
//! with the alerts about the node's own State; `"Pings"` the
//! [`PingView`]s received; `{"PingAck": {"campaign": "<hex>"}}` sends the
//! ping reply; `{"DirectorySubmit": {"file": "/abs/EST.cert.entry"}}` sends
//! a State-signed entry to the directory service and answers its
//! confirmation (a string).
//!
//! Following the record live:
//! `{"op": "record_follow", "after_seq": 41, "limit": 1000, "wait_ms": 25000}`
//! answers the [`RecordSummaryView`]s of the entries after `after_seq` (at
//! most `limit`, clamped to 1..=[`FOLLOW_MAX_LIMIT`]). If there are none
//! yet, the daemon holds the answer until a commit appends to the record,
//! for at most `wait_ms` (clamped to [`FOLLOW_MAX_WAIT_MS`]), then answers
//! what was appended, or `[]` if nothing was. Summaries leave out the
//! envelope and content bytes (use `RecordExport` for those), so a follower
//! costs the daemon little per entry. Re-issue the call with the last seq
//! seen to follow the record without polling; entries are never missed or
//! repeated that way. A waiting call holds no storage resources; it does
//! hold its connection (one request at a time per connection), and the
//! daemon's one-minute idle limit does not apply while it waits. If the
//! caller closes the connection (or only its sending side) while the call
//! waits, the daemon answers at once with what is there, as with
//! `wait_ms: 0`, and then closes the connection.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use poc_proto::message::{ExerciseId, Handling, Language};
use poc_proto::{Body, MessageId, PocId, ThreadId, Timestamp};
use serde::{Deserialize, Serialize};

/// Longest a [`Request::RecordFollow`] waits for new entries, in ms.
pub const FOLLOW_MAX_WAIT_MS: u32 = 30_000;

/// Most entries one [`Request::RecordFollow`] answers.
pub const FOLLOW_MAX_LIMIT: u32 = 1000;

/// Largest request line the daemon reads (a message with attachments).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Node identity, deliveries, overdue deadlines.
    Status,
    /// Sign, seal and queue a message.
    Send(Box<SendRequest>),
    /// Incident threads, newest activity first.
    Inbox,
    /// One thread with all its messages, receipts and deadlines.
    Thread {
        /// The thread.
        thread: ThreadId,
    },
    /// Outbox entries.
    Outbox,
    /// PoCs in the node's directory.
    Directory,
    /// Check the record's hash chain.
    RecordVerify,
    /// Record entries after `after_seq`, at most `limit`.
    RecordExport {
        /// Exclusive lower bound.
        after_seq: u64,
        /// Page size.
        limit: u32,
    },
    /// After the debrief: purge an exercise's message content from the
    /// record. A Purge entry is appended, so the hash chain still verifies.
    ExercisePurge {
        /// The exercise id.
        exercise: String,
    },
    /// Fetch the newest directory snapshot (from the directory service, or
    /// from `file`), verify it and its chain link, and adopt it.
    DirectorySync {
        /// A snapshot file to offer instead of asking the service.
        file: Option<String>,
    },
    /// Every verified directory entry with its State-signed details.
    DirectoryEntries,
    /// The snapshot held, the last sync, and alerts about this State's entries.
    DirectoryStatus,
    /// Pings received from the directory manager, and whether each was answered.
    Pings,
    /// Acknowledge a ping (send the ping reply) by campaign id (hex).
    PingAck {
        /// The campaign.
        campaign: String,
    },
    /// Send a State-signed entry submission file to the directory service.
    DirectorySubmit {
        /// The submission file (from `poc state sign-entry`), an absolute path.
        file: String,
    },
    /// The [`RecordSummaryView`]s of the entries after `after_seq`, waiting
    /// up to `wait_ms` for the next commit that appends to the record if
    /// there are none yet (a long poll; see the crate documentation).
    RecordFollow {
        /// Exclusive lower bound: the last seq already seen (0 for all).
        after_seq: u64,
        /// Most entries to answer (clamped to 1..=[`FOLLOW_MAX_LIMIT`]).
        limit: u32,
        /// Longest wait for a new entry, in ms (clamped to
        /// [`FOLLOW_MAX_WAIT_MS`]; 0 answers at once).
        wait_ms: u32,
    },
}

/// What a directory sync did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectorySyncView {
    /// Sequence held before.
    pub from_sequence: u64,
    /// Sequence held after.
    pub to_sequence: u64,
    /// Snapshots adopted (0 when already up to date).
    pub adopted: u32,
    /// Entries of the adopted snapshots that did not verify, with why.
    pub rejected: Vec<String>,
    /// Alerts raised about this node's own State.
    pub alerts: Vec<String>,
    /// PoCs revoked by the adopted snapshots.
    pub revoked: Vec<PocId>,
}

/// A directory entry with its details.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectoryEntryView {
    /// PoC id.
    pub poc_id: PocId,
    /// Its State (none for the manager's ping identity).
    pub state: Option<String>,
    /// Role.
    pub role: String,
    /// Revoked?
    pub revoked: bool,
    /// Entity or institution.
    pub entity: Option<String>,
    /// Person's name.
    pub person_name: Option<String>,
    /// Person's title.
    pub person_title: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Working languages (BCP 47 tags).
    pub working_languages: Vec<String>,
    /// Language the entry is written in.
    pub language: Option<String>,
    /// English translation.
    pub english: Option<String>,
    /// Revision of the details.
    pub revision: Option<u64>,
    /// Endpoints.
    pub endpoints: Vec<String>,
    /// Identity key (hex).
    pub identity_key: String,
    /// Certificate validity end.
    pub valid_until: Timestamp,
}

/// The node's directory state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectoryStatusView {
    /// Sequence held.
    pub sequence: u64,
    /// Its digest (hex).
    pub digest: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Verified entries.
    pub entries: u64,
    /// Entries that did not verify.
    pub rejected: Vec<String>,
    /// The last sync attempt's outcome.
    pub last_sync: Option<String>,
    /// Alerts about this node's own State (never cleared automatically).
    pub alerts: Vec<String>,
}

/// A ping received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingView {
    /// Campaign id (hex).
    pub campaign: String,
    /// Who sent it.
    pub from: PocId,
    /// When it arrived.
    pub received_at: Timestamp,
    /// The reply deadline.
    pub reply_by: Timestamp,
    /// Whether a ping reply was sent.
    pub answered: bool,
    /// The thread.
    pub thread_id: ThreadId,
}

/// A message to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendRequest {
    /// Recipient PoC.
    pub to: PocId,
    /// Existing thread (replies), or `None` to open a new one (inquiries).
    pub thread: Option<ThreadId>,
    /// The message answered.
    pub in_reply_to: Option<MessageId>,
    /// Language of the free text.
    pub language: Language,
    /// Handling label.
    pub handling: Handling,
    /// Exercise marker.
    pub exercise: Option<ExerciseId>,
    /// The content.
    pub body: Body,
}

impl SendRequest {
    /// A message opening a new thread with `to` (an inquiry, a ping), in
    /// English, outside any exercise. Replies and exercise traffic set the
    /// other fields with struct update syntax.
    pub fn new(to: PocId, handling: Handling, body: Body) -> SendRequest {
        SendRequest {
            to,
            thread: None,
            in_reply_to: None,
            language: Language::English,
            handling,
            exercise: None,
            body,
        }
    }
}

/// What the daemon says back after accepting a send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendAccepted {
    /// The new message's id.
    pub message_id: MessageId,
    /// Its thread.
    pub thread_id: ThreadId,
    /// Outbox entry that will deliver it.
    pub outbox_id: i64,
    /// Recommended template fields it lacks (it is sent anyway).
    pub missing_fields: Vec<String>,
}

/// A deadline on a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineView {
    /// `respond-by` or `eta`.
    pub kind: String,
    /// When.
    pub at: Timestamp,
    /// Who owes it.
    pub owed_by: PocId,
    /// Whether it was met.
    pub met: bool,
    /// Whether it has passed unmet.
    pub overdue: bool,
}

/// One thread in the inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadSummary {
    /// The thread.
    pub thread_id: ThreadId,
    /// The other PoC.
    pub peer: PocId,
    /// True if this node sent the inquiry.
    pub outgoing: bool,
    /// The inquiry's summary.
    pub subject: String,
    /// Life-cycle state, e.g. `receipted`, `follow-up pending (ETA ...)`.
    pub state: String,
    /// Exercise marker, if an exercise thread.
    pub exercise: Option<String>,
    /// Handling label of the inquiry (e.g. `TLP:AMBER`).
    pub handling: String,
    /// When the inquiry was sent or received.
    pub opened_at: Timestamp,
    /// Last message time.
    pub last_activity: Timestamp,
    /// Messages on the thread.
    pub messages: u32,
    /// Deadlines, met or not.
    pub deadlines: Vec<DeadlineView>,
}

/// One message as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageView {
    /// Record sequence number.
    pub seq: u64,
    /// `sent` or `received`.
    pub direction: String,
    /// When recorded.
    pub at: Timestamp,
    /// Message kind.
    pub kind: String,
    /// Message id.
    pub message_id: MessageId,
    /// The message answered.
    pub in_reply_to: Option<MessageId>,
    /// Sender.
    pub sender: PocId,
    /// Recipient.
    pub recipient: PocId,
    /// Handling label.
    pub handling: String,
    /// Language tag.
    pub language: String,
    /// Exercise marker.
    pub exercise: Option<String>,
    /// For sent messages: delivery status.
    pub delivery: Option<String>,
    /// The decoded content.
    pub body: Body,
}

/// A thread with its messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadView {
    /// Summary line.
    pub summary: ThreadSummary,
    /// Every message, in record order.
    pub messages: Vec<MessageView>,
}

/// An outbox entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxView {
    /// Outbox id.
    pub id: i64,
    /// Message id.
    pub message_id: MessageId,
    /// Thread.
    pub thread_id: ThreadId,
    /// Recipient.
    pub recipient: PocId,
    /// Message kind.
    pub kind: String,
    /// `pending`, `delivered`, `failed` or `expired`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// How it was delivered (`direct` or a relay).
    pub delivered_via: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
    /// When it was queued.
    pub created_at: Timestamp,
    /// Next attempt, while pending.
    pub next_attempt_at: Option<Timestamp>,
}

/// How many finished outbox entries [`StatusView::recent`] carries.
pub const STATUS_RECENT: usize = 10;

/// Node status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// This node's PoC.
    pub poc_id: PocId,
    /// Its role.
    pub role: String,
    /// QUIC listen address.
    pub listen: String,
    /// Directory snapshot sequence held.
    pub directory_sequence: u64,
    /// Record entries.
    pub record_entries: u64,
    /// Outbox entries by status.
    pub outbox_pending: u32,
    /// Delivered entries.
    pub outbox_delivered: u32,
    /// Failed or expired entries.
    pub outbox_failed: u32,
    /// Entries still pending, with why.
    pub pending: Vec<OutboxView>,
    /// The most recently finished entries (newest first, at most
    /// [`STATUS_RECENT`]), with how each was delivered (direct or which
    /// relay) or why it failed.
    #[serde(default)]
    pub recent: Vec<OutboxView>,
    /// Overdue deadlines, by thread.
    pub overdue: Vec<(ThreadId, DeadlineView)>,
}

/// A PoC in the directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectoryPoc {
    /// Its id.
    pub poc_id: PocId,
    /// Its role.
    pub role: String,
    /// Revoked?
    pub revoked: bool,
    /// Endpoints.
    pub endpoints: Vec<String>,
    /// Certificate validity end.
    pub valid_until: Timestamp,
}

/// One problem found by record verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordProblemView {
    /// The entry concerned.
    pub seq: u64,
    /// Kind of problem (`edited`, `missing`, `reordered`, ...).
    pub kind: String,
    /// Explanation.
    pub detail: String,
}

/// Result of record verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordVerifyView {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last entry (hex).
    pub head_hash: String,
    /// Problems; empty means the record is intact.
    pub problems: Vec<RecordProblemView>,
}

/// A record entry as exported (JSON lines).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordEntryView {
    /// Sequence.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// `sent`, `received`, `rejected`, `purge`, `note`.
    pub event: String,
    /// Other party.
    pub peer: Option<PocId>,
    /// Message id.
    pub message_id: Option<MessageId>,
    /// Thread.
    pub thread_id: Option<ThreadId>,
    /// Message kind.
    pub kind: Option<String>,
    /// Exercise.
    pub exercise: Option<String>,
    /// Rejection reason or note.
    pub detail: Option<String>,
    /// Sealed envelope bytes, hex.
    pub envelope_hex: Option<String>,
    /// Signed content bytes, hex.
    pub content_hex: Option<String>,
    /// Chain hash (hex).
    pub entry_hash: String,
}

/// A record entry in brief, as [`Request::RecordFollow`] answers it: the
/// fields of [`RecordEntryView`] without the envelope and content bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSummaryView {
    /// Sequence.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// `sent`, `received`, `rejected`, `purge`, `note`.
    pub event: String,
    /// Other party: recipient of a sent message, sender of a received one.
    pub peer: Option<PocId>,
    /// Message id.
    pub message_id: Option<MessageId>,
    /// Thread.
    pub thread_id: Option<ThreadId>,
    /// Message kind (`inquiry`, `receipt`, ...).
    pub kind: Option<String>,
    /// Exercise.
    pub exercise: Option<String>,
    /// Rejection reason or note (none once purged).
    pub detail: Option<String>,
    /// Whether an exercise purge removed the entry's payload.
    pub purged: bool,
    /// Chain hash (hex).
    pub entry_hash: String,
}

/// What an exercise purge did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PurgeView {
    /// The exercise.
    pub exercise: String,
    /// Record entries whose content, envelope, signature and detail were
    /// removed (their hashes stay).
    pub purged_entries: u64,
    /// Threads dropped from the inbox.
    pub threads_forgotten: u32,
    /// The Purge entry's sequence number.
    pub purge_seq: u64,
}

/// An error from the daemon: what happened and what to do.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}{}", hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
pub struct ApiError {
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl ApiError {
    /// An error with a hint.
    pub fn new(message: impl Into<String>, hint: Option<&str>) -> Self {
        ApiError {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// The wire form of a response.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Success with a value.
    Ok(serde_json::Value),
    /// Failure.
    Error(ApiError),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket is not there or refuses connections.
    #[error("cannot reach pocd at {path}: {source}")]
    Connect {
        /// The socket path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("lost the connection to pocd: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon answered something unreadable.
    #[error("pocd answered something this poc does not understand: {0}")]
    Protocol(#[from] serde_json::Error),
    /// The daemon refused the request.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl Request {
    /// Parses one line of the control protocol.
    ///
    /// Same result as `serde_json::from_str`, faster for `send`: the derived
    /// parser of an internally tagged enum copies the whole request into
    /// serde's buffer before it has seen `op`, kilobytes of hex attachment
    /// included, where a send is read straight into its struct here.
    pub fn decode(line: &str) -> Result<Request, serde_json::Error> {
        #[derive(Deserialize)]
        struct Op<'a> {
            #[serde(borrow)]
            op: std::borrow::Cow<'a, str>,
        }
        match serde_json::from_str::<Op<'_>>(line) {
            Ok(Op { op }) if op == "send" => {
                serde_json::from_str::<SendRequest>(line).map(|send| Request::Send(Box::new(send)))
            }
            _ => serde_json::from_str(line),
        }
    }

    /// The request as one line of the control protocol: JSON and a newline.
    pub fn encode(&self) -> Result<Vec<u8>, ClientError> {
        let mut line = serde_json::to_vec(self)?;
        line.push(b'\n');
        Ok(line)
    }
}

/// A blocking client for the CLI.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the node's control socket.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one request and decodes the `ok` value as `T`.
    pub fn call<T: serde::de::DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<T, ClientError> {
        self.call_encoded(&Request::encode(request)?)
    }

    /// [`Client::call`] with a request already encoded by
    /// [`Request::encode`], for a caller sending the same request many
    /// times (a load generator).
    pub fn call_encoded<T: serde::de::DeserializeOwned>(
        &mut self,
        line: &[u8],
    ) -> Result<T, ClientError> {
        self.writer.write_all(line)?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer)?;
        if answer.is_empty() {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "pocd closed the connection",
            )));
        }
        match serde_json::from_str::<Response>(&answer)? {
            Response::Ok(value) => Ok(serde_json::from_value(value)?),
            Response::Error(err) => Err(ClientError::Api(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn send() -> Request {
        // An attachment of 1 KiB: hex text, the part the fast path is for.
        let inquiry = poc_proto::testkit::sample_inquiry(1024);
        Request::Send(Box::new(SendRequest::new(
            PocId::new("FRA.cert").unwrap(),
            Handling::Confidential,
            Body::Inquiry(inquiry),
        )))
    }

    #[test]
    fn decode_reads_every_request_as_the_derived_parser_does() {
        let requests = [
            send(),
            Request::Status,
            Request::Thread {
                thread: ThreadId([7; 16]),
            },
        ];
        for request in requests {
            let line = String::from_utf8(request.encode().unwrap()).unwrap();
            let fast = Request::decode(line.trim_end()).unwrap();
            let derived: Request = serde_json::from_str(&line).unwrap();
            // Same value, compared through its canonical JSON.
            assert_eq!(
                serde_json::to_value(&fast).unwrap(),
                serde_json::to_value(&derived).unwrap()
            );
        }
    }

    #[test]
    fn decode_names_what_is_wrong_with_a_bad_request() {
        let no_recipient = r#"{"op":"send","thread":null}"#;
        let err = Request::decode(no_recipient).unwrap_err().to_string();
        assert!(err.contains("missing field `to`"), "{err}");
        let unknown = Request::decode(r#"{"op":"launch"}"#)
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown variant `launch`"), "{unknown}");
        assert!(Request::decode("not json").is_err());
    }
}
