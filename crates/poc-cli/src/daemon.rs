//! Talking to the local pocd through its control socket, and the commands
//! that do.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use poc_control::{
    Client, ClientError, DirectoryPoc, OutboxView, RecordEntryView, RecordProblemView,
    RecordVerifyView, Request, SendAccepted, SendRequest, StatusView, ThreadSummary, ThreadView,
};
use poc_proto::message::{
    Attachment, ChannelAgreement, Close, CloseReason, ExerciseId, FollowUp, Handling, Indicator,
    Inquiry, Language, Response, ResponseOutcome, Text,
};
use poc_proto::{Body, MessageId, PocId, ThreadId};
use serde::de::DeserializeOwned;

use crate::compose::{self, Draft, Template};
use crate::fail::{fail, usage};
use crate::parse::{self, ThreadRef, When};
use crate::render;
use crate::rng::now;

/// Where the control socket is: `--socket`, else `POC_SOCKET`, else the
/// `[node] data_dir` of `--config` (default `pocd.toml`).
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// `--socket` or `POC_SOCKET`.
    pub(crate) socket: Option<PathBuf>,
    /// `--config`.
    pub(crate) config: Option<PathBuf>,
}

impl Connection {
    fn start_hint(&self) -> String {
        let config = self
            .config
            .as_deref()
            .unwrap_or(Path::new("pocd.toml"))
            .display()
            .to_string();
        format!(
            "is pocd running? start it with `pocd --config {config}`, or pass --socket PATH (or set POC_SOCKET) to reach a running one"
        )
    }

    /// The socket path to use.
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        let config = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("pocd.toml"));
        let shown = config.display();
        let text = std::fs::read_to_string(&config).map_err(|e| {
            fail(
                format!("cannot find pocd's control socket: no --socket, no POC_SOCKET, and cannot read {shown}: {e}"),
                "pass --config /path/to/pocd.toml (the socket is <data_dir>/pocd.sock), --socket PATH, or set POC_SOCKET; if pocd is not running, start it with `pocd --config /path/to/pocd.toml`",
            )
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            fail(
                format!("{shown} is not valid TOML: {e}"),
                "fix the configuration file, or pass --socket PATH",
            )
        })?;
        let data_dir = table
            .get("node")
            .and_then(|n| n.get("data_dir"))
            .and_then(|d| d.as_str())
            .ok_or_else(|| {
                fail(
                    format!("{shown} has no [node] data_dir"),
                    "pass the pocd configuration file with --config, or the socket with --socket",
                )
            })?;
        let data_dir = PathBuf::from(data_dir);
        let data_dir = if data_dir.is_relative() {
            config.parent().unwrap_or(Path::new(".")).join(data_dir)
        } else {
            data_dir
        };
        Ok(data_dir.join("pocd.sock"))
    }
}

/// A connection to pocd.
pub(crate) struct Daemon {
    client: Client,
    start_hint: String,
}

impl Daemon {
    /// Connects, or says how to start pocd.
    pub(crate) fn connect(connection: &Connection) -> anyhow::Result<Daemon> {
        let socket = connection.resolve()?;
        let start_hint = connection.start_hint();
        let client = Client::connect(&socket).map_err(|e| client_error(e, &start_hint))?;
        Ok(Daemon { client, start_hint })
    }

    /// One request; the raw `ok` value.
    pub(crate) fn value(&mut self, request: &Request) -> anyhow::Result<serde_json::Value> {
        self.client
            .call::<serde_json::Value>(request)
            .map_err(|e| client_error(e, &self.start_hint))
    }

    /// One request, decoded as `T`.
    pub(crate) fn typed<T: DeserializeOwned>(&mut self, request: &Request) -> anyhow::Result<T> {
        decode(self.value(request)?)
    }
}

fn decode<T: DeserializeOwned>(value: serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(value).map_err(|e| {
        fail(
            format!("pocd answered something this poc does not understand: {e}"),
            "poc and pocd may be different versions; install both from the same release (`--json` shows the raw answer)",
        )
    })
}

fn client_error(e: ClientError, start_hint: &str) -> anyhow::Error {
    match e {
        ClientError::Connect { path, source } => {
            let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
                "the control socket is mode 0600: run poc as the account that runs pocd".to_owned()
            } else {
                start_hint.to_owned()
            };
            fail(format!("cannot reach pocd at {path}: {source}"), hint)
        }
        ClientError::Io(e) => fail(
            format!("lost the connection to pocd: {e}"),
            "pocd may have stopped; check its log and start it again if needed",
        ),
        ClientError::Protocol(e) => fail(
            format!("pocd answered something this poc does not understand: {e}"),
            "poc and pocd may be different versions; install both from the same release",
        ),
        ClientError::Api(api) => fail(
            format!("pocd refused: {}", api.message),
            api.hint
                .unwrap_or_else(|| "see `poc status` and pocd's log".to_owned()),
        ),
        other => fail(other.to_string(), "see pocd's log"),
    }
}

/// Writes to stdout; a closed pipe (`poc ... | head`) ends quietly.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot write to standard output: {e}")),
    }
}

fn pretty(value: &serde_json::Value) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

fn warn_missing(what: &str, missing: &[poc_proto::template::MissingField]) {
    if missing.is_empty() {
        return;
    }
    let mut text = format!(
        "warning: the {what} leaves {} recommended field(s) empty; it is sent anyway (Annex A para 11: templates must allow sending when information is not available):\n",
        missing.len()
    );
    for m in missing {
        text.push_str(&format!("  - {m}\n"));
    }
    eprint!("{text}");
}

/// Where `poc inquire` starts from, besides its flags.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InquiryBase<'a> {
    /// `--from-file`: a template.
    pub(crate) template: Option<&'a Path>,
    /// `--from-iodef`: an IODEF document (attached unchanged).
    pub(crate) iodef: Option<&'a Path>,
    /// `--attach-stix`: STIX bundles, validated before they are attached.
    pub(crate) stix: &'a [PathBuf],
}

/// `poc inquire`.
pub(crate) fn inquire(
    connection: &Connection,
    flags: Draft,
    base: InquiryBase<'_>,
    json: bool,
) -> anyhow::Result<u8> {
    let now = now();
    let mut imported_handling = None;
    let (draft, mut inquiry) = match base.template.map(compose::read_template).transpose()? {
        Some(Template::Fields(file)) => (flags.over(*file), Inquiry::new_minimal(Text::new(""))),
        Some(Template::Inquiry(base)) => (flags, *base),
        None => match base.iodef {
            Some(path) => {
                let (inquiry, handling) = crate::interop::inquiry_from_iodef(path)?;
                imported_handling = Some(handling);
                (flags, inquiry)
            }
            None => (flags, Inquiry::new_minimal(Text::new(""))),
        },
    };
    let to = draft.to.clone().ok_or_else(|| {
        usage(
            "no recipient: give --to POC_ID",
            "e.g. --to FRA.cert; `poc directory` lists the PoCs your node knows",
        )
    })?;
    draft.apply(&mut inquiry, now)?;
    for path in base.stix {
        inquiry
            .attachments
            .push(crate::interop::stix_attachment(path)?);
    }
    if inquiry.incident.summary.original.trim().is_empty() {
        return Err(usage(
            "an inquiry needs a summary, its one required field",
            "give --summary \"what happened, in a sentence or two\"",
        ));
    }
    let language = draft.lang.unwrap_or(Language::English);
    let handling = match (draft.handling, imported_handling) {
        (Some(given), Some(document)) if given != document => {
            eprintln!(
                "note: --handling {given} overrides the IODEF document's restriction ({document})"
            );
            given
        }
        (given, document) => given.or(document).unwrap_or_default(),
    };
    let exercise = draft.exercise.clone().map(ExerciseId);
    let missing = poc_proto::template::missing_inquiry_fields(&inquiry);
    let body = Body::Inquiry(inquiry);
    compose::check_locally(&to, language, handling, exercise.as_ref(), &body)?;
    warn_missing("inquiry", &missing);
    let mut daemon = Daemon::connect(connection)?;
    send(
        &mut daemon,
        SendRequest {
            to,
            thread: None,
            in_reply_to: None,
            language,
            handling,
            exercise,
            body,
        },
        json,
    )
}

fn send(daemon: &mut Daemon, request: SendRequest, json: bool) -> anyhow::Result<u8> {
    let kind = request.body.kind();
    let to = request.to.clone();
    let handling = request.handling;
    let exercise = request.exercise.clone();
    let value = daemon.value(&Request::Send(Box::new(request)))?;
    if json {
        emit(&pretty(&value)?)?;
        return Ok(0);
    }
    let accepted: SendAccepted = decode(value)?;
    let mut text = String::new();
    if let Some(exercise) = &exercise {
        text.push_str(&format!("{}\n", render::banner(&exercise.0)));
    }
    text.push_str(&format!("{handling}\n"));
    text.push_str(&format!("{kind} queued for {to}.\n"));
    text.push_str(&format!("  message: {}\n", accepted.message_id));
    text.push_str(&format!("  thread:  {}\n", accepted.thread_id));
    text.push_str(&format!("  outbox:  {}\n", accepted.outbox_id));
    text.push_str(&format!(
        "Follow delivery with `poc outbox`, the thread with `poc show {}`.\n",
        accepted.thread_id
    ));
    emit(&text)?;
    Ok(0)
}

/// Resolves a full id or a unique prefix through the inbox.
pub(crate) fn resolve_thread(daemon: &mut Daemon, thread: &ThreadRef) -> anyhow::Result<ThreadId> {
    let prefix = match thread {
        ThreadRef::Full(id) => return Ok(*id),
        ThreadRef::Prefix(p) => p,
    };
    let threads: Vec<ThreadSummary> = daemon.typed(&Request::Inbox)?;
    let matches: Vec<ThreadId> = threads
        .iter()
        .map(|t| t.thread_id)
        .filter(|id| id.to_string().starts_with(prefix.as_str()))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(fail(
            format!("no thread starts with {prefix}"),
            "list threads with `poc inbox`",
        )),
        many => Err(usage(
            format!(
                "{prefix} matches {} threads: {}",
                many.len(),
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "give more digits of the thread id",
        )),
    }
}

/// What a reply on a thread inherits from it.
struct OnThread {
    id: ThreadId,
    peer: PocId,
    outgoing: bool,
    handling: Handling,
    exercise: Option<ExerciseId>,
    inquiry_id: MessageId,
    inquiry_proposed_channel: bool,
    /// The latest substantive message from the peer.
    last_from_peer: Option<MessageId>,
}

fn on_thread(daemon: &mut Daemon, thread: &ThreadRef) -> anyhow::Result<OnThread> {
    let id = resolve_thread(daemon, thread)?;
    let view: ThreadView = daemon.typed(&Request::Thread { thread: id })?;
    let s = &view.summary;
    if s.state.starts_with("closed") {
        return Err(fail(
            format!("thread {id} is {}", s.state),
            "a closed thread takes no more messages; open a new inquiry with `poc inquire` if needed",
        ));
    }
    let Some(inquiry) = view
        .messages
        .iter()
        .find(|m| matches!(m.body, Body::Inquiry(_)))
    else {
        return Err(fail(
            format!("thread {id} has no inquiry ({})", s.state),
            "only incident threads take responses, follow-ups and closes; see `poc show`",
        ));
    };
    let handling = parse::handling(&inquiry.handling).map_err(|e| {
        fail(
            format!("the inquiry's handling label: {e}"),
            "poc and pocd may be different versions",
        )
    })?;
    let last_from_peer = view
        .messages
        .iter()
        .rev()
        .find(|m| m.sender == s.peer && !matches!(m.body, Body::Receipt(_)))
        .map(|m| m.message_id);
    Ok(OnThread {
        id,
        peer: s.peer.clone(),
        outgoing: s.outgoing,
        handling,
        exercise: inquiry.exercise.clone().map(ExerciseId),
        inquiry_id: inquiry.message_id,
        inquiry_proposed_channel: matches!(
            &inquiry.body,
            Body::Inquiry(q) if q.preferred_channel.is_some()
        ),
        last_from_peer,
    })
}

fn reply(
    daemon: &mut Daemon,
    t: &OnThread,
    in_reply_to: MessageId,
    language: Language,
    body: Body,
    json: bool,
) -> anyhow::Result<u8> {
    compose::check_locally(&t.peer, language, t.handling, t.exercise.as_ref(), &body)?;
    send(
        daemon,
        SendRequest {
            to: t.peer.clone(),
            thread: Some(t.id),
            in_reply_to: Some(in_reply_to),
            language,
            handling: t.handling,
            exercise: t.exercise.clone(),
            body,
        },
        json,
    )
}

fn text(original: String, english: Option<String>) -> Text {
    Text { original, english }
}

/// What `poc respond` says.
#[derive(Debug)]
pub(crate) struct RespondParams {
    pub(crate) thread: ThreadRef,
    pub(crate) answer: Option<String>,
    pub(crate) eta: Option<When>,
    pub(crate) note: Option<String>,
    pub(crate) english: Option<String>,
    pub(crate) accept_channel: bool,
    pub(crate) channel: Option<poc_proto::message::Channel>,
    pub(crate) lead_agency: Option<String>,
    pub(crate) attach: Vec<PathBuf>,
    pub(crate) lang: Option<Language>,
    pub(crate) json: bool,
}

fn load_attachments(paths: &[PathBuf]) -> anyhow::Result<Vec<Attachment>> {
    paths.iter().map(|p| compose::attachment(p)).collect()
}

/// `poc respond`.
pub(crate) fn respond(connection: &Connection, p: RespondParams) -> anyhow::Result<u8> {
    let attachments = load_attachments(&p.attach)?;
    let mut daemon = Daemon::connect(connection)?;
    let t = on_thread(&mut daemon, &p.thread)?;
    if t.outgoing {
        return Err(fail(
            format!(
                "you sent the inquiry on thread {}; {} responds to it",
                t.id, t.peer
            ),
            "add information with `poc follow-up`, or end the thread with `poc close`",
        ));
    }
    let outcome = match p.answer {
        Some(answer) => ResponseOutcome::Immediate {
            answer: text(answer, p.english),
        },
        None => ResponseOutcome::WillFollowUp {
            eta: p.eta.map(|w| w.resolve(now())),
            note: p.note.map(|n| text(n, p.english)),
        },
    };
    if p.accept_channel && !t.inquiry_proposed_channel {
        eprintln!(
            "warning: the inquiry proposed no channel, so --accept-channel accepts nothing specific; consider --channel"
        );
    }
    let response = Response {
        outcome,
        channel: if p.accept_channel {
            Some(ChannelAgreement::Accept)
        } else {
            p.channel.map(ChannelAgreement::Propose)
        },
        lead_agency: p.lead_agency,
        attachments,
    };
    warn_missing(
        "response",
        &poc_proto::template::missing_response_fields(&response),
    );
    let inquiry_id = t.inquiry_id;
    reply(
        &mut daemon,
        &t,
        inquiry_id,
        p.lang.unwrap_or(Language::English),
        Body::Response(response),
        p.json,
    )
}

/// What `poc follow-up` says.
#[derive(Debug)]
pub(crate) struct FollowUpParams {
    pub(crate) thread: ThreadRef,
    pub(crate) text: String,
    pub(crate) english: Option<String>,
    pub(crate) eta: Option<When>,
    pub(crate) indicators: Vec<Indicator>,
    pub(crate) attach: Vec<PathBuf>,
    pub(crate) lang: Option<Language>,
    pub(crate) json: bool,
}

/// `poc follow-up`.
pub(crate) fn follow_up(connection: &Connection, p: FollowUpParams) -> anyhow::Result<u8> {
    if p.text.trim().is_empty() {
        return Err(usage("--text is empty", "say what the follow-up adds"));
    }
    let attachments = load_attachments(&p.attach)?;
    let mut daemon = Daemon::connect(connection)?;
    let t = on_thread(&mut daemon, &p.thread)?;
    let body = Body::FollowUp(FollowUp {
        text: text(p.text, p.english),
        indicators: p.indicators,
        next_update_eta: p.eta.map(|w| w.resolve(now())),
        attachments,
    });
    let in_reply_to = t.last_from_peer.unwrap_or(t.inquiry_id);
    reply(
        &mut daemon,
        &t,
        in_reply_to,
        p.lang.unwrap_or(Language::English),
        body,
        p.json,
    )
}

/// `poc close`.
pub(crate) fn close(
    connection: &Connection,
    thread: &ThreadRef,
    reason: CloseReason,
    note: Option<String>,
    lang: Option<Language>,
    json: bool,
) -> anyhow::Result<u8> {
    let mut daemon = Daemon::connect(connection)?;
    let t = on_thread(&mut daemon, thread)?;
    let body = Body::Close(Close {
        reason,
        note: note.map(Text::new),
    });
    let in_reply_to = t.last_from_peer.unwrap_or(t.inquiry_id);
    reply(
        &mut daemon,
        &t,
        in_reply_to,
        lang.unwrap_or(Language::English),
        body,
        json,
    )
}

/// The read commands.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    Inbox,
    Status,
    Outbox,
    Directory,
}

/// `poc inbox|status|outbox|directory`.
pub(crate) fn read(connection: &Connection, what: Read, json: bool) -> anyhow::Result<u8> {
    let mut daemon = Daemon::connect(connection)?;
    let request = match what {
        Read::Inbox => Request::Inbox,
        Read::Status => Request::Status,
        Read::Outbox => Request::Outbox,
        Read::Directory => Request::Directory,
    };
    let value = daemon.value(&request)?;
    if json {
        emit(&pretty(&value)?)?;
        return Ok(0);
    }
    let text = match what {
        Read::Inbox => render::inbox(&decode::<Vec<ThreadSummary>>(value)?),
        Read::Status => render::status(&decode::<StatusView>(value)?),
        Read::Outbox => render::outbox(&decode::<Vec<OutboxView>>(value)?),
        Read::Directory => render::directory(&decode::<Vec<DirectoryPoc>>(value)?),
    };
    let text = match what {
        Read::Status | Read::Outbox => crate::exercise::mark_exercise_lines(&mut daemon, text),
        _ => text,
    };
    emit(&text)?;
    Ok(0)
}

/// `poc show`.
pub(crate) fn show(connection: &Connection, thread: &ThreadRef, json: bool) -> anyhow::Result<u8> {
    let mut daemon = Daemon::connect(connection)?;
    let id = resolve_thread(&mut daemon, thread)?;
    let value = daemon.value(&Request::Thread { thread: id })?;
    if json {
        emit(&pretty(&value)?)?;
    } else {
        emit(&render::thread(&decode::<ThreadView>(value)?))?;
    }
    Ok(0)
}

/// `poc record verify`: exit code 1 when the record is damaged or does not
/// hold the anchored entry.
pub(crate) fn record_verify(
    connection: &Connection,
    json: bool,
    anchor: Option<&parse::RecordAnchor>,
) -> anyhow::Result<u8> {
    let mut daemon = Daemon::connect(connection)?;
    let mut value = daemon.value(&Request::RecordVerify)?;
    let mut view: RecordVerifyView = decode(value.clone())?;
    if let Some(anchor) = anchor
        && let Some(problem) = check_anchor(&mut daemon, anchor)?
    {
        view.problems.push(problem);
        value = serde_json::to_value(&view)?;
    }
    if json {
        emit(&pretty(&value)?)?;
    } else {
        emit(&render::record_verify(&view))?;
    }
    Ok(if view.problems.is_empty() { 0 } else { 1 })
}

/// The problem, if the record does not hold `anchor`'s entry with its hash.
/// The chain alone cannot show a record cut back with its head row
/// rewritten to match; an entry noted outside the node can.
fn check_anchor(
    daemon: &mut Daemon,
    anchor: &parse::RecordAnchor,
) -> anyhow::Result<Option<RecordProblemView>> {
    let page: Vec<RecordEntryView> = daemon.typed(&Request::RecordExport {
        after_seq: anchor.seq - 1,
        limit: 1,
    })?;
    let detail = match page.first() {
        Some(entry) if entry.seq == anchor.seq => {
            if entry.entry_hash.eq_ignore_ascii_case(&anchor.entry_hash) {
                return Ok(None);
            }
            format!(
                "the entry's hash is {}, not the anchored {}: the record was rewritten from this entry or an earlier one",
                entry.entry_hash, anchor.entry_hash
            )
        }
        _ => "the anchored entry is gone: entries were deleted and the head rewritten to hide it"
            .to_owned(),
    };
    Ok(Some(RecordProblemView {
        seq: anchor.seq,
        kind: "anchor mismatch".into(),
        detail,
    }))
}

/// `poc record export`: every entry as one JSON line.
pub(crate) fn record_export(connection: &Connection) -> anyhow::Result<u8> {
    const PAGE: u32 = 500;
    let mut daemon = Daemon::connect(connection)?;
    let mut after_seq = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let page: Vec<serde_json::Value> = daemon.typed(&Request::RecordExport {
            after_seq,
            limit: PAGE,
        })?;
        let Some(last) = page.last() else { break };
        let next = last
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| {
                fail(
                    "pocd's record export has an entry without a seq",
                    "poc and pocd may be different versions",
                )
            })?;
        if next <= after_seq {
            return Err(fail(
                format!("pocd's record export went backwards (seq {next} after {after_seq})"),
                "check the record with `poc record verify`",
            ));
        }
        after_seq = next;
        for entry in &page {
            let line = serde_json::to_string(entry)?;
            match writeln!(out, "{line}") {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                Err(e) => return Err(anyhow::anyhow!("cannot write to standard output: {e}")),
            }
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write to standard output: {e}"))
        }
        _ => Ok(0),
    }
}
