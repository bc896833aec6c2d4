//! Keeping the node's directory current: periodic and on-demand sync from
//! the directory service (or a snapshot file), with every snapshot's
//! signature and chain link checked, rollbacks and forks refused (the chain
//! held is kept), and a loud alert when this node's own State's entries
//! change in a way its State did not sign.
//!
//! What counts as a change the State did not make: every entry of a State
//! must be signed by that State's root key, so a change that verifies was
//! made by the State's root key holder. The manager can only (a) replace
//! the root key enrolled for the State, (b) list an entry the root key did
//! not sign (it is refused, and named), (c) drop an entry without a
//! State-signed revocation, or (d) flag an entry revoked without one. Each of those raises an alert here: a
//! `directory ALERT` ERROR log line, a note in the record, and a line in
//! `poc directory status`, kept until the operator reads the record.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use poc_control::{ApiError, DirectorySyncView};
use poc_proto::directory::fetch::{self, FetchRequest};
use poc_proto::directory::{ChainError, DetailsSeen, SignedSnapshot, VerifiedDirectory};
use poc_proto::keys::{IdentityPublicKey, ManagerPublicKey};
use poc_proto::{Issuer, PocId, Role, StateCode};
use poc_store::{NewEntry, RecordEvent};

use crate::node::{Node, now};

const ALERTS_KEY: &str = "directory_alerts";
const LAST_SYNC_KEY: &str = "directory_last_sync";
/// [`DetailsSeen`], one `POC-ID REVISION` line per PoC.
const DETAILS_SEEN_KEY: &str = "directory_details_seen";

fn encode_seen(seen: &DetailsSeen) -> String {
    seen.revisions()
        .map(|(poc, revision)| format!("{poc} {revision}\n"))
        .collect()
}

/// Reads what [`encode_seen`] wrote; a line that does not parse means the
/// store was altered, which is reported rather than forgotten.
fn decode_seen(text: &str) -> anyhow::Result<DetailsSeen> {
    let pairs = text
        .lines()
        .map(|line| {
            let (poc, revision) = line
                .split_once(' ')
                .ok_or_else(|| anyhow!("malformed line {line:?}"))?;
            let poc = PocId::new(poc).map_err(|e| anyhow!("line {line:?}: {e}"))?;
            let revision = revision
                .parse()
                .map_err(|e| anyhow!("line {line:?}: {e}"))?;
            Ok((poc, revision))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(DetailsSeen::from_revisions(pairs))
}

/// The details revisions remembered from every snapshot adopted, and those
/// of `held` (which a node that synced before this memory existed has not
/// stored).
async fn details_seen(node: &Node, held: &VerifiedDirectory) -> anyhow::Result<DetailsSeen> {
    let stored = node
        .db
        .run(|tx| tx.setting_get(DETAILS_SEEN_KEY))
        .await
        .context("cannot read the directory details seen")?;
    let mut seen = match stored {
        Some(text) => decode_seen(&text)
            .with_context(|| format!("the stored setting {DETAILS_SEEN_KEY} is damaged"))?,
        None => DetailsSeen::default(),
    };
    seen.remember(held);
    Ok(seen)
}

fn lock() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

fn manager_key(node: &Node) -> anyhow::Result<ManagerPublicKey> {
    let file = poc_keyfile::read_public(
        &node.config.directory.manager_key,
        poc_keyfile::KeyKind::Manager,
    )?;
    ManagerPublicKey::from_bytes(file.public)
        .map_err(|e| anyhow!("{}: {e}", node.config.directory.manager_key.display()))
}

fn current(node: &Node) -> VerifiedDirectory {
    node.directory
        .read()
        .map(|d| d.clone())
        .unwrap_or_else(|e| e.into_inner().clone())
}

/// At start: adopt the newest snapshot already stored if it is newer than
/// the configured file, and store the file's snapshot if it is new.
pub(crate) async fn restore(node: &Arc<Node>) -> anyhow::Result<()> {
    let manager = manager_key(node)?;
    let stored = node
        .db
        .run(|tx| tx.snapshot_latest())
        .await
        .context("cannot read stored snapshots")?;
    let held = current(node);
    match stored {
        Some(stored) if stored.sequence > held.sequence() => {
            let verified = SignedSnapshot::from_bytes(&stored.bytes)?.verify(&manager)?;
            tracing::info!(
                sequence = verified.sequence(),
                "using the newest directory snapshot synced before"
            );
            if let Ok(mut dir) = node.directory.write() {
                *dir = verified;
            }
        }
        Some(stored) if stored.sequence == held.sequence() && stored.digest != held.digest().0 => {
            tracing::error!(
                sequence = held.sequence(),
                "directory ALERT: the configured snapshot file forks from the chain synced before; keeping the synced chain"
            );
            let verified = SignedSnapshot::from_bytes(&stored.bytes)?.verify(&manager)?;
            if let Ok(mut dir) = node.directory.write() {
                *dir = verified;
            }
        }
        Some(stored) if stored.sequence < held.sequence() => {
            // The configured file is newer than anything synced: adopt it
            // only if it extends the stored chain.
            let previous = SignedSnapshot::from_bytes(&stored.bytes)?.verify(&manager)?;
            match previous.check_successor(&held) {
                Ok(_) | Err(ChainError::Gap { .. }) => {
                    let bytes = std::fs::read(&node.config.directory.snapshot)?;
                    let (seq, digest) = (held.sequence(), held.digest().0);
                    node.db
                        .run(move |tx| tx.snapshot_put(seq, digest, &bytes))
                        .await?;
                }
                Err(e) => {
                    tracing::error!(error = %e, "directory ALERT: the configured snapshot file does not extend the chain synced before; keeping the synced chain");
                    if let Ok(mut dir) = node.directory.write() {
                        *dir = previous;
                    }
                }
            }
        }
        Some(_) => {}
        None => {
            let bytes = std::fs::read(&node.config.directory.snapshot)?;
            let (seq, digest) = (held.sequence(), held.digest().0);
            node.db
                .run(move |tx| tx.snapshot_put(seq, digest, &bytes))
                .await?;
        }
    }
    Ok(())
}

/// Syncs every `sync_interval_seconds` while a service is configured.
pub(crate) async fn run_periodic(node: Arc<Node>) {
    if node.config.directory.service.is_none() {
        return;
    }
    let interval = Duration::from_secs(node.config.directory.sync_interval_seconds.max(1));
    loop {
        match sync(&node, None).await {
            Ok(view) if view.adopted > 0 => {
                tracing::info!(
                    from = view.from_sequence,
                    to = view.to_sequence,
                    "directory synced"
                )
            }
            Ok(_) => tracing::debug!("directory up to date"),
            Err(e) => tracing::warn!(error = %e.message, "directory sync failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Knows only the directory service's key, for the client handshake.
#[derive(Debug)]
struct ServiceOnly(IdentityPublicKey, PocId);

impl poc_transport::PeerAuthority for ServiceOnly {
    fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<PocId> {
        (*key == self.0).then(|| self.1.clone())
    }
}

/// Connects to the directory service, authenticating it by the manager's
/// ping identity in the directory held.
async fn connect_service(
    node: &Node,
    address: &str,
    held: &VerifiedDirectory,
) -> anyhow::Result<(poc_transport::Endpoint, poc_transport::Connection)> {
    let (service_id, service_key) = held
        .entries()
        .values()
        .find(|e| e.certificate.role() == Role::DirectoryManager && !e.revoked)
        .map(|e| {
            (
                e.certificate.poc_id().clone(),
                e.certificate.body().identity_key,
            )
        })
        .ok_or_else(|| anyhow!("the directory held lists no directory manager identity"))?;
    let socket = tokio::net::lookup_host(address)
        .await
        .with_context(|| format!("cannot resolve {address}"))?
        .next()
        .ok_or_else(|| anyhow!("{address} resolves to nothing"))?;
    let bind: std::net::SocketAddr = match (socket.is_ipv4(), socket.ip().is_loopback()) {
        (true, true) => "127.0.0.1:0".parse()?,
        (true, false) => "0.0.0.0:0".parse()?,
        (false, _) => "[::]:0".parse()?,
    };
    let mut limits = poc_transport::Limits::default();
    limits.max_response_frame = poc_proto::limits::MAX_SNAPSHOT_BYTES + 1;
    let endpoint = poc_transport::Endpoint::bind(
        bind,
        node.identity(),
        Arc::new(ServiceOnly(service_key, service_id)),
        poc_transport::ALPN_DIRECTORY,
        limits,
    )?;
    let conn = endpoint
        .connect(socket, service_key)
        .await
        .with_context(|| format!("cannot reach the directory service at {address}"))?;
    Ok((endpoint, conn))
}

async fn ask(conn: &poc_transport::Connection, request: &FetchRequest) -> anyhow::Result<Vec<u8>> {
    let answer = conn.request(&request.encode()).await?;
    fetch::decode_response(&answer)
        .map(<[u8]>::to_vec)
        .map_err(|reason| anyhow!("the directory service refused: {reason}"))
}

/// Fetches snapshots from the service: the latest, and (if needed) the
/// ones between the held one and it, in order.
async fn fetch_from_service(
    node: &Node,
    address: &str,
    manager: &ManagerPublicKey,
    held: &VerifiedDirectory,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let (endpoint, conn) = connect_service(node, address, held).await?;
    let latest = ask(&conn, &FetchRequest::Latest).await?;
    let verified = SignedSnapshot::from_bytes(&latest)?.verify(manager)?;
    let mut out = Vec::new();
    if let Err(ChainError::Gap { held, offered }) = held.check_successor(&verified) {
        for n in held + 1..offered {
            out.push(ask(&conn, &FetchRequest::Get(n)).await?);
        }
    }
    out.push(latest);
    conn.close();
    endpoint.close();
    Ok(out)
}

/// Sends a State-signed entry submission (from `poc state sign-entry`) to
/// the directory service; answers the service's confirmation.
pub(crate) async fn submit(node: &Arc<Node>, file: PathBuf) -> Result<String, ApiError> {
    let bytes = std::fs::read(&file)
        .map_err(|e| ApiError::new(format!("cannot read {}: {e}", file.display()), None))?;
    poc_proto::directory::EntrySubmission::from_bytes(&bytes).map_err(|e| {
        ApiError::new(
            format!("{} is not an entry submission: {e}", file.display()),
            Some("make it with `poc state sign-entry`"),
        )
    })?;
    let Some(address) = node.config.directory.service.clone() else {
        return Err(ApiError::new(
            "no directory service is configured",
            Some("set [directory] service in pocd.toml, or give the file to the directory manager"),
        ));
    };
    let held = current(node);
    let result = async {
        let (endpoint, conn) = connect_service(node, &address, &held).await?;
        let answer = ask(&conn, &FetchRequest::Submit(bytes)).await;
        conn.close();
        endpoint.close();
        answer
    }
    .await;
    let answer = result.map_err(|e| ApiError::new(format!("{e:#}"), None))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn state_of(node: &Node) -> Option<StateCode> {
    let me = node.me.as_str();
    me.get(..3).and_then(|s| StateCode::new(s).ok())
}

/// What changed for `state` between two snapshots that the State did not
/// sign.
fn alerts_for(state: StateCode, old: &VerifiedDirectory, new: &VerifiedDirectory) -> Vec<String> {
    let mut alerts = Vec::new();
    let seq = new.sequence();
    match (old.state_root(state), new.state_root(state)) {
        (Some(a), Some(b)) if a != b => alerts.push(format!(
            "snapshot {seq}: the root key enrolled for {state} was REPLACED (was {}, now {}); unless {state} asked for this through its Permanent Mission, the directory manager swapped your State's key",
            hex::encode(a.to_bytes()),
            hex::encode(b.to_bytes())
        )),
        (Some(_), None) => alerts.push(format!("snapshot {seq}: {state} is no longer enrolled")),
        _ => {}
    }
    for rejected in new.rejected() {
        if let Some(id) = &rejected.poc_id
            && id.belongs_to(state)
        {
            alerts.push(format!(
                "snapshot {seq}: an entry for {id} is NOT signed by {state}'s root key and was refused ({}); someone other than your State tried to change it",
                rejected.reason
            ));
        }
    }
    for (id, entry) in new.entries() {
        let ours = matches!(entry.certificate.body().issuer, Issuer::State(s) if s == state);
        let signed_revocation = entry.details.as_ref().is_some_and(|d| d.revoked);
        let was = old.entries().get(id).is_some_and(|e| e.revoked);
        if ours && entry.revoked && !signed_revocation && !was {
            alerts.push(format!(
                "snapshot {seq}: {id} of {state} is listed as revoked without a revocation signed by {state}"
            ));
        }
    }
    for (id, entry) in old.entries() {
        let ours = matches!(entry.certificate.body().issuer, Issuer::State(s) if s == state);
        if ours && !new.entries().contains_key(id) {
            alerts.push(format!(
                "snapshot {seq}: {id} of {state} was removed from the directory without a revocation signed by {state}"
            ));
        }
    }
    alerts
}

async fn record_alerts(node: &Arc<Node>, alerts: &[String]) {
    if alerts.is_empty() {
        return;
    }
    for alert in alerts {
        tracing::error!(alert = %alert, "directory ALERT");
    }
    let alerts = alerts.to_vec();
    let at = now();
    let result = node
        .db
        .run(move |tx| {
            let mut held: Vec<String> = tx
                .setting_get(ALERTS_KEY)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            for alert in &alerts {
                tx.record_append(NewEntry {
                    detail: Some(format!("directory ALERT: {alert}")),
                    ..NewEntry::new(at, RecordEvent::Note)
                })?;
                held.push(format!("{at} {alert}"));
            }
            tx.setting_put(
                ALERTS_KEY,
                &serde_json::to_string(&held).unwrap_or_else(|_| "[]".into()),
            )
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "could not record directory alerts");
    }
}

/// The alerts recorded so far.
pub(crate) async fn alerts(node: &Node) -> Vec<String> {
    node.db
        .run(|tx| tx.setting_get(ALERTS_KEY))
        .await
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// The last sync's outcome.
pub(crate) async fn last_sync(node: &Node) -> Option<String> {
    node.db
        .run(|tx| tx.setting_get(LAST_SYNC_KEY))
        .await
        .ok()
        .flatten()
}

async fn note_sync(node: &Node, text: String) {
    let _ = node
        .db
        .run(move |tx| tx.setting_put(LAST_SYNC_KEY, &text))
        .await;
}

/// One sync: from `file` if given, else from the configured service.
pub(crate) async fn sync(
    node: &Arc<Node>,
    file: Option<PathBuf>,
) -> Result<DirectorySyncView, ApiError> {
    let _guard = lock().lock().await;
    let outcome = sync_locked(node, file).await;
    let note = match &outcome {
        Ok(view) => format!("{} ok: snapshot {}", now(), view.to_sequence),
        Err(e) => format!("{} FAILED: {}", now(), e.message),
    };
    note_sync(node, note).await;
    outcome
}

async fn sync_locked(
    node: &Arc<Node>,
    file: Option<PathBuf>,
) -> Result<DirectorySyncView, ApiError> {
    let fail = |e: anyhow::Error| ApiError::new(format!("{e:#}"), None);
    let manager = manager_key(node).map_err(fail)?;
    let mut held = current(node);
    let from_sequence = held.sequence();
    let candidates = match (file, node.config.directory.service.as_deref()) {
        (Some(path), _) => vec![
            std::fs::read(&path)
                .map_err(|e| ApiError::new(format!("cannot read {}: {e}", path.display()), None))?,
        ],
        (None, Some(address)) => fetch_from_service(node, address, &manager, &held)
            .await
            .map_err(fail)?,
        (None, None) => {
            return Err(ApiError::new(
                "no directory service is configured",
                Some("set [directory] service in pocd.toml, or give a snapshot file"),
            ));
        }
    };
    let mut seen = details_seen(node, &held).await.map_err(fail)?;
    let own_state = state_of(node);
    let mut view = DirectorySyncView {
        from_sequence,
        to_sequence: from_sequence,
        adopted: 0,
        rejected: Vec::new(),
        alerts: Vec::new(),
        revoked: Vec::new(),
    };
    for bytes in candidates {
        let snapshot = SignedSnapshot::from_bytes(&bytes).map_err(|e| {
            ApiError::new(
                format!("refused: the offered snapshot does not decode: {e}"),
                None,
            )
        })?;
        let next = snapshot.verify(&manager).map_err(|e| {
            ApiError::new(
                format!("refused: the offered snapshot does not verify: {e}"),
                Some("the chain held is kept; tell the directory manager"),
            )
        })?;
        match held.check_successor_seen(&next, &seen) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                let message = format!(
                    "refused: {e}; the chain held (snapshot {}, digest {}) is kept",
                    held.sequence(),
                    held.digest()
                );
                if matches!(
                    e,
                    ChainError::Rollback { .. }
                        | ChainError::Fork { .. }
                        | ChainError::DetailsRolledBack { .. }
                ) {
                    let alert = format!("directory source offered a bad snapshot: {e}");
                    record_alerts(node, std::slice::from_ref(&alert)).await;
                    view.alerts.push(alert);
                }
                return Err(ApiError::new(message, Some("the chain held is kept")));
            }
        }
        let (seq, digest) = (next.sequence(), next.digest().0);
        seen.remember(&next);
        let remembered = encode_seen(&seen);
        node.db
            .run(move |tx| {
                tx.snapshot_put(seq, digest, &bytes)?;
                tx.setting_put(DETAILS_SEEN_KEY, &remembered)
            })
            .await
            .map_err(|e| ApiError::new(format!("cannot store snapshot {seq}: {e}"), None))?;
        for rejected in next.rejected() {
            let line = format!(
                "snapshot {seq}: entry {} refused: {}",
                rejected
                    .poc_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "(undecodable)".into()),
                rejected.reason
            );
            tracing::warn!("{line}");
            view.rejected.push(line);
        }
        if let Some(state) = own_state {
            let alerts = alerts_for(state, &held, &next);
            record_alerts(node, &alerts).await;
            view.alerts.extend(alerts);
        }
        for (id, entry) in next.entries() {
            let was = held.entries().get(id).is_some_and(|e| e.revoked);
            if entry.revoked && !was {
                view.revoked.push(id.clone());
            }
        }
        if let Ok(mut dir) = node.directory.write() {
            *dir = next.clone();
        }
        held = next;
        view.adopted += 1;
        view.to_sequence = held.sequence();
    }
    for id in &view.revoked {
        tracing::warn!(poc = %id, "revoked in the directory: no longer sent to or accepted from");
        node.forget_connection(id).await;
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn details_seen_are_stored_as_lines_and_damage_is_reported() {
        let seen = DetailsSeen::from_revisions([
            (PocId::new("FRA.cert").unwrap(), 3),
            (PocId::new("EST.cert").unwrap(), 2),
        ]);
        let text = encode_seen(&seen);
        assert_eq!(text, "EST.cert 2\nFRA.cert 3\n");
        assert_eq!(decode_seen(&text).unwrap(), seen);
        assert_eq!(decode_seen("").unwrap(), DetailsSeen::default());
        for damaged in ["EST.cert", "EST.cert two", "not a poc 2"] {
            let err = decode_seen(damaged).unwrap_err().to_string();
            assert!(err.contains(damaged.split(' ').next().unwrap()), "{err}");
        }
    }
}
