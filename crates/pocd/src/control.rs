//! The control socket: JSON lines for the `poc` CLI (see `poc_control`).
//!
//! Thread views are derived, not stored: the record is the truth, and each
//! thread's state is rebuilt by replaying its messages through poc-proto's
//! `IncidentThread` state machine.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poc_control::{
    ApiError, DirectoryPoc, MessageView, OutboxView, RecordEntryView, RecordProblemView,
    RecordVerifyView, Request, Response, StatusView, ThreadView,
};
use poc_proto::ThreadId;
use poc_proto::message::Message;
use poc_proto::thread::Direction;
use poc_store::{OutboxItem, OutboxStatus, RecordEntry, RecordEvent};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use crate::node::{Node, now};

/// Serves the control socket until the node stops.
pub(crate) async fn serve(node: Arc<Node>) -> anyhow::Result<()> {
    let path = node.config.control_socket();
    if path.exists() {
        // A stale socket from a previous run; the data directory is ours (0700).
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to mode 0600", path.display()))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let node = node.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read);
            let mut closing = false;
            while !closing {
                let mut line = String::new();
                // Bounded: at most one request's worth plus the newline.
                let limited = (&mut lines).take(poc_control::MAX_REQUEST_BYTES as u64 + 1);
                let read =
                    tokio::time::timeout(Duration::from_secs(60), read_line(limited, &mut line))
                        .await;
                let Ok(Ok(n)) = read else { break };
                if n == 0 {
                    break;
                }
                let request = line.strip_suffix('\n').unwrap_or(&line);
                let response = if request.len() > poc_control::MAX_REQUEST_BYTES {
                    // The rest of the line is still unread, and would be
                    // taken for further requests: answer, then hang up.
                    closing = true;
                    Response::Error(ApiError::new(
                        format!(
                            "request too large (at most {} bytes)",
                            poc_control::MAX_REQUEST_BYTES
                        ),
                        None,
                    ))
                } else {
                    match Request::decode(request) {
                        Ok(request) => {
                            let (result, gone) = answer(&node, request, &mut lines).await;
                            closing = gone;
                            match result {
                                Ok(value) => Response::Ok(value),
                                Err(err) => Response::Error(err),
                            }
                        }
                        Err(e) => Response::Error(ApiError::new(
                            format!("malformed request: {e}"),
                            Some("this poc and this pocd may be different versions"),
                        )),
                    }
                };
                let mut out = serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec());
                out.push(b'\n');
                if write.write_all(&out).await.is_err() {
                    break;
                }
            }
        });
    }
}

async fn read_line(
    mut reader: impl tokio::io::AsyncBufRead + Unpin,
    line: &mut String,
) -> std::io::Result<usize> {
    reader.read_line(line).await
}

/// Runs one request; also says whether the caller hung up meanwhile.
///
/// A follow only reads and may wait long: if its caller hangs up (or closes
/// its sending side) while it waits, it is answered at once with what is
/// there, as with `wait_ms: 0`, and the connection ends after that answer,
/// rather than holding on until the end of its wait. Other requests always
/// run to their end (a send must not stop half-way).
async fn answer(
    node: &Arc<Node>,
    request: Request,
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> (Result<serde_json::Value, ApiError>, bool) {
    let &Request::RecordFollow {
        after_seq, limit, ..
    } = &request
    else {
        return (handle(node, request).await, false);
    };
    tokio::select! {
        result = handle(node, request) => (result, false),
        () = hung_up(reader) => {
            let at_once = Request::RecordFollow { after_seq, limit, wait_ms: 0 };
            (handle(node, at_once).await, true)
        }
    }
}

/// Resolves when the peer has closed its end of the connection (or it
/// failed); never if the peer sends more, which stays buffered for the next
/// read.
async fn hung_up(reader: &mut (impl tokio::io::AsyncBufRead + Unpin)) {
    match reader.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

fn json<T: serde::Serialize>(value: T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::new(e.to_string(), None))
}

/// A storage failure as the control API reports it.
pub(crate) fn storage(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        format!("storage: {e}"),
        Some("check the node's disk and logs"),
    )
}

async fn handle(node: &Arc<Node>, request: Request) -> Result<serde_json::Value, ApiError> {
    match request {
        Request::Status => json(status(node).await?),
        Request::Send(send) => json(node.send(*send).await?),
        Request::Inbox => json(node.thread_summaries(now())),
        Request::Thread { thread } => json(thread_view(node, thread).await?),
        Request::Outbox => {
            let items = node
                .db
                .run(|tx| tx.outbox_list(None))
                .await
                .map_err(storage)?;
            json(items.iter().map(outbox_view).collect::<Vec<_>>())
        }
        Request::Directory => json(
            node.directory_snapshot()
                .into_iter()
                .map(|(poc_id, (cert, revoked))| DirectoryPoc {
                    poc_id,
                    role: cert.role().to_string(),
                    revoked,
                    endpoints: cert
                        .body()
                        .endpoints
                        .iter()
                        .map(|e| format!("{e:?}"))
                        .collect(),
                    valid_until: cert.body().valid_until,
                })
                .collect::<Vec<_>>(),
        ),
        Request::RecordVerify => {
            let report = node
                .db
                .run(|tx| tx.record_verify())
                .await
                .map_err(storage)?;
            json(RecordVerifyView {
                entries: report.entries,
                head_hash: hex::encode(report.head.map(|h| h.entry_hash).unwrap_or_default()),
                problems: report
                    .problems
                    .iter()
                    .map(|p| RecordProblemView {
                        seq: p.seq,
                        kind: p.kind.to_string(),
                        detail: p.detail.clone(),
                    })
                    .collect(),
            })
        }
        Request::RecordExport { after_seq, limit } => {
            let limit = limit.clamp(1, 1000);
            let page = node
                .db
                .run(move |tx| tx.record_page(after_seq, limit))
                .await
                .map_err(storage)?;
            json(page.iter().map(entry_view).collect::<Vec<_>>())
        }
        Request::ExercisePurge { exercise } => {
            if exercise.trim().is_empty() {
                return Err(ApiError::new(
                    "no exercise id given",
                    Some("e.g. `poc exercise purge CYBEX-2026`"),
                ));
            }
            json(node.purge_exercise(exercise).await?)
        }
        Request::DirectorySync { file } => {
            json(crate::directory_sync::sync(node, file.map(std::path::PathBuf::from)).await?)
        }
        Request::DirectoryEntries => json(crate::directory_view::entries(node)),
        Request::DirectoryStatus => json(crate::directory_view::status(node).await),
        Request::Pings => json(crate::pings::list(node).await?),
        Request::PingAck { campaign } => json(crate::pings::ack(node, &campaign).await?),
        Request::DirectorySubmit { file } => {
            json(crate::directory_sync::submit(node, std::path::PathBuf::from(file)).await?)
        }
        Request::RecordFollow {
            after_seq,
            limit,
            wait_ms,
        } => json(crate::follow::follow(&node.db, after_seq, limit, wait_ms).await?),
    }
}

/// Raises an alert (a WARN log line, machine-readable with `--log-format
/// json`) once for every deadline that passes unmet: a respond-by time owed
/// by this node, or an ETA owed by either side.
pub(crate) async fn watch_deadlines(node: Arc<Node>) {
    let mut alerted = std::collections::HashSet::new();
    loop {
        for summary in node.thread_summaries(now()) {
            for deadline in summary.deadlines.iter().filter(|d| d.overdue) {
                if alerted.insert((summary.thread_id, deadline.kind.clone(), deadline.at)) {
                    tracing::warn!(
                        thread = %summary.thread_id,
                        peer = %summary.peer,
                        kind = %deadline.kind,
                        due = %deadline.at,
                        owed_by = %deadline.owed_by,
                        "deadline overdue"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn status(node: &Arc<Node>) -> Result<StatusView, ApiError> {
    let (items, head) = node
        .db
        .run(|tx| Ok((tx.outbox_list(None)?, tx.record_head()?)))
        .await
        .map_err(storage)?;
    let count = |status: OutboxStatus| items.iter().filter(|i| i.status == status).count() as u32;
    let overdue = node
        .thread_summaries(now())
        .into_iter()
        .flat_map(|t| {
            let id = t.thread_id;
            t.deadlines
                .into_iter()
                .filter(|d| d.overdue)
                .map(move |d| (id, d))
        })
        .collect();
    let role = node
        .own_certificate()
        .map(|c| c.role().to_string())
        .unwrap_or_default();
    Ok(StatusView {
        poc_id: node.me.clone(),
        role,
        listen: node.config.node.listen.to_string(),
        directory_sequence: node.directory_sequence(),
        record_entries: head.map(|h| h.seq).unwrap_or(0),
        outbox_pending: count(OutboxStatus::Pending),
        outbox_delivered: count(OutboxStatus::Delivered),
        outbox_failed: count(OutboxStatus::Failed) + count(OutboxStatus::Expired),
        pending: items
            .iter()
            .filter(|i| i.status == OutboxStatus::Pending)
            .map(outbox_view)
            .collect(),
        recent: items
            .iter()
            .rev()
            .filter(|i| i.status != OutboxStatus::Pending)
            .take(poc_control::STATUS_RECENT)
            .map(outbox_view)
            .collect(),
        overdue,
    })
}

/// One thread with its messages: the summary from the index, the messages
/// from the record (an indexed query on the thread).
async fn thread_view(node: &Arc<Node>, thread: ThreadId) -> Result<ThreadView, ApiError> {
    let summary = node.thread_summary(&thread, now()).ok_or_else(|| {
        ApiError::new(
            format!("no thread {thread}"),
            Some("list threads with `poc inbox`"),
        )
    })?;
    let (entries, deliveries) = node
        .db
        .run(move |tx| {
            let entries = tx.record_thread(thread)?;
            let mut deliveries = BTreeMap::new();
            for entry in entries.iter().filter(|e| e.event == RecordEvent::Sent) {
                if let Some(id) = entry.message_id
                    && let Some(item) = tx.outbox_by_message(id)?
                {
                    deliveries.insert(id, item);
                }
            }
            Ok((entries, deliveries))
        })
        .await
        .map_err(storage)?;
    let messages = entries
        .iter()
        .filter(|e| matches!(e.event, RecordEvent::Sent | RecordEvent::Received))
        .filter_map(|entry| {
            let message = Message::decode(entry.content.as_deref()?).ok()?;
            let direction = if entry.event == RecordEvent::Sent {
                Direction::Sent
            } else {
                Direction::Received
            };
            Some(MessageView {
                seq: entry.seq,
                direction: direction.to_string(),
                at: entry.at,
                kind: message.body.kind().to_string(),
                message_id: message.header.message_id,
                in_reply_to: message.header.in_reply_to,
                sender: message.header.sender.clone(),
                recipient: message.header.recipient.clone(),
                handling: message.header.handling.to_string(),
                language: message.header.language.tag().to_owned(),
                exercise: message.header.exercise.as_ref().map(|e| e.0.clone()),
                delivery: deliveries
                    .get(&message.header.message_id)
                    .map(delivery_text),
                body: message.body,
            })
        })
        .collect();
    Ok(ThreadView { summary, messages })
}

fn delivery_text(item: &OutboxItem) -> String {
    match item.status {
        OutboxStatus::Delivered => format!(
            "delivered {} via {}",
            item.delivered_at.map(|t| t.to_string()).unwrap_or_default(),
            item.delivered_via.as_deref().unwrap_or("?")
        ),
        OutboxStatus::Pending => format!(
            "pending (attempt {}{})",
            item.attempts,
            item.last_error
                .as_ref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ),
        OutboxStatus::Failed => format!("FAILED: {}", item.last_error.as_deref().unwrap_or("?")),
        OutboxStatus::Expired => "EXPIRED: never delivered".into(),
    }
}

fn outbox_view(item: &OutboxItem) -> OutboxView {
    OutboxView {
        id: item.id.0,
        message_id: item.message_id,
        thread_id: item.thread_id,
        recipient: item.recipient.clone(),
        kind: item.kind.clone(),
        status: format!("{:?}", item.status).to_lowercase(),
        attempts: u32::try_from(item.attempts).unwrap_or(u32::MAX),
        last_error: item.last_error.clone(),
        delivered_via: item.delivered_via.clone(),
        delivered_at: item.delivered_at,
        created_at: item.created_at,
        next_attempt_at: (item.status == OutboxStatus::Pending).then_some(item.next_attempt_at),
    }
}

fn entry_view(entry: &RecordEntry) -> RecordEntryView {
    RecordEntryView {
        seq: entry.seq,
        at: entry.at,
        event: entry.event.as_str().to_owned(),
        peer: entry.peer.clone(),
        message_id: entry.message_id,
        thread_id: entry.thread_id,
        kind: entry.kind.clone(),
        exercise: entry.exercise.clone(),
        detail: entry.detail.clone(),
        envelope_hex: entry.envelope.as_ref().map(hex::encode),
        content_hex: entry.content.as_ref().map(hex::encode),
        entry_hash: hex::encode(entry.entry_hash),
    }
}
