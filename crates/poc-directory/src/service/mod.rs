//! The directory service: `poc-directory serve --config FILE`.
//!
//! One process holds the manager key and the manager's own ping identity
//! (a PoC certified by the manager key, listed in every snapshot). It runs:
//!
//! - **snapshot publication** (and State submissions, signed by the
//!   State's root key, sent by any of its participants' nodes) over QUIC/TLS 1.3 (ALPN `pocnet-directory/1`,
//!   [`poc_proto::directory::fetch`]): only peers whose identity key is
//!   listed (and not revoked) in the latest snapshot complete the
//!   handshake, and they authenticate the service by the ping identity's
//!   key in their own verified snapshot;
//! - **the ping identity's node endpoint** (ALPN `pocnet/1`): pings go out
//!   from it and ping replies come back to it, through the same transport
//!   and envelopes as every other message ([`pings`]);
//! - **a public overview** over plain HTTP: counts of States and PoCs per
//!   role, the sequence, and the mandate text; never contact data;
//! - **the campaign scheduler**: a campaign every `interval_days`, or at once
//!   when `poc-directory campaign start` asks.
//!
//! Changes (enrolments, submissions, campaign requests) are written to the
//! SQLite file by the `poc-directory` CLI; the running service polls the
//! file and serves each new snapshot as soon as it is committed.
//!
//! Design note: the pings are sent by the service itself with
//! `poc-transport`, directly to each PoC's direct endpoint, with retries,
//! rather than through a pocd run under the manager identity. That keeps
//! campaign tracking (sent, delivered, replied) exact and in one database;
//! as a node does, a ping that cannot be delivered directly is deposited at
//! the pinned relays, and the ping identity takes its own mail (replies from
//! PoCs that cannot reach the service) from them.

pub mod db;
pub mod pings;
pub mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use poc_proto::certificate::{
    CertificateBody, Endpoint as CertEndpoint, PocCertificate, Prekey, PrekeyId,
    VerifiedCertificate,
};
use poc_proto::directory::fetch::{self, FetchRequest};
use poc_proto::directory::{SignedSnapshot, VerifiedDirectory};
use poc_proto::envelope::PrekeyRing;
use poc_proto::keys::{IdentityKeyPair, IdentityPublicKey, ManagerKeyPair, PrekeySecret};
use poc_proto::{Issuer, PocId, Role, Seconds};
use poc_transport::{Endpoint, Limits, PeerAuthority};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::clock;
use crate::rng::OsRandom;
use db::ServiceDb;

/// `poc-directory.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// `[service]`.
    pub service: ServiceSection,
    /// `[campaigns]`.
    #[serde(default)]
    pub campaigns: CampaignSection,
    /// `[[relay]]`: relays the ping identity deposits pings to when a PoC
    /// cannot be reached directly (as a node does; see
    /// `poc_relay::client::RelaySet`). Replies come back to `listen_node`,
    /// or to the ping identity's mailbox at these relays, which the service
    /// fetches.
    #[serde(default, rename = "relay")]
    pub relays: Vec<RelaySection>,
}

/// `[[relay]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    /// A short name (letters, digits, `.`, `_`, `-`).
    pub name: poc_proto::PocId,
    /// `host:port` of the relay's QUIC endpoint.
    pub address: String,
    /// The relay's identity key, 64 hex digits (`poc-relay --keygen`).
    pub public_key: String,
}

/// `[service]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// State directory (0700): `directory.sqlite`, the ping identity's keys.
    pub data_dir: PathBuf,
    /// The manager's secret key (from `poc-directory init`).
    pub manager_key: PathBuf,
    /// The ping identity's PoC id.
    #[serde(default = "default_ping_id")]
    pub ping_poc_id: String,
    /// QUIC address serving snapshots to participants.
    pub listen_directory: SocketAddr,
    /// QUIC address of the ping identity (pings out, replies in).
    pub listen_node: SocketAddr,
    /// Plain-HTTP address of the public overview (optional).
    pub listen_public: Option<SocketAddr>,
    /// The mandate text shown on the public overview.
    #[serde(default = "default_mandate")]
    pub mandate: String,
    /// How often the database is polled for changes, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Handshakes per second accepted from one address on the ping
    /// endpoint (and the burst allowed), when many PoCs reply from behind
    /// one address (a NAT, or a load test on loopback). Default: the
    /// transport's (20).
    #[serde(default)]
    pub handshakes_per_second_per_ip: Option<u32>,
}

fn default_ping_id() -> String {
    "UN.ping".into()
}

fn default_mandate() -> String {
    "Global Intergovernmental Points of Contact Directory on ICT security (A/78/265, Annex A): \
     a directory of diplomatic and technical points of contact of participating States, \
     with ping tests every six months."
        .into()
}

fn default_poll_ms() -> u64 {
    500
}

/// `[campaigns]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignSection {
    /// Start a campaign this long after the previous one (0: only on request).
    pub interval_days: u64,
    /// Reply window (Annex A para 8: 48 hours).
    pub reply_window_hours: u64,
    /// Remind PoCs that have not replied this long before the deadline.
    pub reminder_lead_hours: u64,
    /// Delay between delivery attempts of a ping.
    pub retry_seconds: u64,
    /// Failed attempts after which a PoC counts as unreachable (delivery
    /// is still retried until the deadline).
    pub unreachable_after_attempts: u64,
}

impl Default for CampaignSection {
    fn default() -> Self {
        CampaignSection {
            interval_days: 182,
            reply_window_hours: 48,
            reminder_lead_hours: 12,
            retry_seconds: 30,
            unreachable_after_attempts: 5,
        }
    }
}

impl ServiceConfig {
    /// Reads the file; relative paths are relative to it.
    pub fn load(path: &Path) -> anyhow::Result<ServiceConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut config: ServiceConfig = toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid poc-directory configuration",
                path.display()
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.service.data_dir,
            &mut config.service.manager_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if config.campaigns.reply_window_hours == 0
            || config.campaigns.reminder_lead_hours >= config.campaigns.reply_window_hours
        {
            bail!(
                "{}: [campaigns] needs 0 <= reminder_lead_hours < reply_window_hours",
                path.display()
            );
        }
        if config.campaigns.retry_seconds == 0 {
            bail!(
                "{}: [campaigns] retry_seconds must be at least 1",
                path.display()
            );
        }
        PocId::new(&config.service.ping_poc_id)
            .map_err(|e| anyhow!("{}: [service] ping_poc_id: {e}", path.display()))?;
        Ok(config)
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.service.data_dir.join("directory.sqlite")
    }
}

/// The keys and certificate the manager's side works with.
pub struct ManagerSide {
    /// The manager's key (signs snapshots).
    pub manager: ManagerKeyPair,
    /// The ping identity.
    pub identity: IdentityKeyPair,
    /// Its prekey secret.
    pub prekey: PrekeySecret,
    /// Its certificate, issued by the manager key.
    pub certificate: PocCertificate,
}

impl std::fmt::Debug for ManagerSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerSide").finish_non_exhaustive()
    }
}

/// The secret in a key file, created with a random one on first use. Every
/// copy of the secret is zeroized when dropped.
fn secret_file(
    path: &Path,
    kind: poc_keyfile::KeyKind,
    label: &str,
) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    if !path.exists() {
        let mut seed = Zeroizing::new([0u8; 32]);
        poc_proto::keys::RandomSource::fill(&mut OsRandom::new(), seed.as_mut());
        poc_keyfile::write_secret(path, kind, Some(label), &seed)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    Ok(poc_keyfile::read_secret(path, kind)?.secret)
}

/// Opens the data directory and the database, loads (creating on first
/// use) the ping identity, and (re)issues its certificate if its endpoint
/// changed or it is within 30 days of expiry. Publishes the first snapshot
/// if none exists.
pub fn open(config: &ServiceConfig) -> anyhow::Result<(ServiceDb, ManagerSide)> {
    use std::os::unix::fs::DirBuilderExt;
    if !config.service.data_dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.service.data_dir)
            .with_context(|| format!("cannot create {}", config.service.data_dir.display()))?;
    }
    let manager = crate::manager::load_secret(&config.service.manager_key)?;
    let identity = IdentityKeyPair::from_secret_bytes(&*secret_file(
        &config.service.data_dir.join("ping-identity.key"),
        poc_keyfile::KeyKind::Identity,
        &config.service.ping_poc_id,
    )?);
    let prekey = PrekeySecret::from_secret_bytes(&*secret_file(
        &config.service.data_dir.join("ping-prekey.key"),
        poc_keyfile::KeyKind::Prekey,
        &config.service.ping_poc_id,
    )?);
    let mut db = ServiceDb::open(&config.database())?;
    let now = clock::now();
    let endpoint = CertEndpoint::Direct {
        address: config.service.listen_node.to_string(),
    };
    let held = db
        .setting("ping_certificate")?
        .and_then(|bytes| PocCertificate::from_bytes(&bytes).ok())
        .and_then(|cert| cert.verify_by_manager(&manager.public()).ok())
        .filter(|cert| {
            let body = cert.body();
            body.identity_key == identity.public()
                && body.prekey.public == prekey.public()
                && body.endpoints == [endpoint.clone()]
                && body.poc_id.as_str() == config.service.ping_poc_id
                && body.valid_until > now.plus(Seconds::days(30))
                && body.valid_from <= now
        });
    let certificate = match held {
        Some(cert) => cert.certificate().clone(),
        None => {
            let body = CertificateBody {
                poc_id: PocId::new(&config.service.ping_poc_id)?,
                issuer: Issuer::DirectoryManager,
                role: Role::DirectoryManager,
                identity_key: identity.public(),
                prekey: Prekey {
                    id: PrekeyId(now.0),
                    public: prekey.public(),
                    valid_from: now.minus(Seconds::DAY),
                    valid_until: now.plus(Seconds::days(730)),
                },
                valid_from: now.minus(Seconds::DAY),
                valid_until: now.plus(Seconds::days(730)),
                endpoints: vec![endpoint],
            };
            let cert = PocCertificate::issue_by_manager(&body, &manager)?;
            db.set_setting("ping_certificate", &cert.to_bytes())?;
            cert
        }
    };
    db.ensure_published(&manager, &certificate, now)?;
    Ok((
        db,
        ManagerSide {
            manager,
            identity,
            prekey,
            certificate,
        },
    ))
}

/// The latest verified directory, shared by every task.
pub type SharedDirectory = Arc<RwLock<Arc<VerifiedDirectory>>>;

/// Who may connect: every listed, unrevoked PoC of the latest snapshot.
#[derive(Debug)]
pub struct Participants(pub SharedDirectory);

impl PeerAuthority for Participants {
    fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<PocId> {
        let directory = self.0.read().ok()?.clone();
        directory
            .entries()
            .values()
            .find(|e| !e.revoked && e.certificate.body().identity_key == *key)
            .map(|e| e.certificate.poc_id().clone())
    }
}

/// The running service's shared state.
pub struct Service {
    /// Configuration.
    pub config: ServiceConfig,
    /// Keys.
    pub side: ManagerSide,
    /// The ping identity's verified certificate.
    pub own: VerifiedCertificate,
    /// Its prekeys.
    pub prekeys: PrekeyRing,
    /// The database.
    pub db: Mutex<ServiceDb>,
    /// The latest snapshot, verified.
    pub directory: SharedDirectory,
    /// The latest snapshot's bytes.
    latest_bytes: RwLock<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

/// Large enough for a maximal snapshot.
fn directory_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_response_frame = poc_proto::limits::MAX_SNAPSHOT_BYTES + 1;
    // A request is a few bytes, or one entry submission (two signed
    // structures of at most 8 KiB each).
    limits.max_frame = 4 * poc_proto::limits::MAX_CERTIFICATE_BYTES + 1024;
    limits
}

impl Service {
    fn db(&self) -> std::sync::MutexGuard<'_, ServiceDb> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest directory.
    pub fn directory(&self) -> Arc<VerifiedDirectory> {
        self.directory
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Reloads the latest snapshot if the database holds a newer one.
    fn refresh(&self) -> anyhow::Result<()> {
        let Some(latest) = self.db().latest()? else {
            return Ok(());
        };
        if latest.sequence == self.directory().sequence() {
            return Ok(());
        }
        let verified =
            SignedSnapshot::from_bytes(&latest.bytes)?.verify(&self.side.manager.public())?;
        tracing::info!(
            sequence = verified.sequence(),
            pocs = verified.entries().len(),
            "serving a new directory snapshot"
        );
        if let Ok(mut bytes) = self.latest_bytes.write() {
            *bytes = Arc::new(latest.bytes);
        }
        if let Ok(mut dir) = self.directory.write() {
            *dir = Arc::new(verified);
        }
        Ok(())
    }

    fn answer_fetch(&self, request: &[u8]) -> Vec<u8> {
        match FetchRequest::decode(request) {
            Some(FetchRequest::Latest) => {
                let bytes = self
                    .latest_bytes
                    .read()
                    .map(|b| b.clone())
                    .unwrap_or_else(|e| e.into_inner().clone());
                fetch::snapshot_response(&bytes)
            }
            Some(FetchRequest::Get(n)) => match self.db().snapshot(n) {
                Ok(Some(s)) => fetch::snapshot_response(&s.bytes),
                Ok(None) => fetch::error_response(&format!("no snapshot number {n}")),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a snapshot");
                    fetch::error_response("internal error")
                }
            },
            Some(FetchRequest::Submit(bytes)) => {
                let outcome = self.db().submit(
                    &bytes,
                    &self.side.manager,
                    &self.side.certificate,
                    clock::now(),
                );
                match outcome {
                    Ok((poc, sequence)) => {
                        tracing::info!(%poc, sequence, "entry submitted over the network");
                        if let Err(e) = self.refresh() {
                            tracing::error!(error = %e, "cannot reload the latest snapshot");
                        }
                        fetch::snapshot_response(
                            format!("{poc}: accepted; directory snapshot {sequence} published")
                                .as_bytes(),
                        )
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "submission refused");
                        fetch::error_response(&format!("refused: {e}"))
                    }
                }
            }
            None => fetch::error_response("unintelligible request"),
        }
    }

    /// The public overview: counts and mandate, never contact data.
    pub fn overview(&self) -> serde_json::Value {
        let dir = self.directory();
        let mut by_role: BTreeMap<String, usize> = BTreeMap::new();
        let mut states: BTreeMap<String, usize> = BTreeMap::new();
        for entry in dir.entries().values().filter(|e| !e.revoked) {
            let body = entry.certificate.body();
            if body.role == Role::DirectoryManager {
                continue;
            }
            *by_role.entry(body.role.to_string()).or_default() += 1;
            if let Issuer::State(state) = body.issuer {
                *states.entry(state.to_string()).or_default() += 1;
            }
        }
        serde_json::json!({
            "mandate": self.config.service.mandate,
            "participating_states": dir.states().count(),
            "states_with_pocs": states.len(),
            "pocs_by_role": by_role,
            "snapshot_sequence": dir.sequence(),
        })
    }
}

/// Starts everything and runs until the process is stopped.
pub async fn serve(config: ServiceConfig) -> anyhow::Result<()> {
    if clock::is_shifted() {
        tracing::warn!(
            offset = clock::offset(),
            "TEST CLOCK: {} is set; time is shifted",
            clock::OFFSET_FILE_ENV
        );
    }
    let (db, side) = open(&config)?;
    let own = side.certificate.verify_by_manager(&side.manager.public())?;
    let mut prekeys = PrekeyRing::new();
    prekeys.insert(
        own.body().prekey.clone(),
        PrekeySecret::from_secret_bytes(&side.prekey.to_secret_bytes()),
    )?;
    let latest = db
        .latest()?
        .ok_or_else(|| anyhow!("no snapshot was published"))?;
    let verified = SignedSnapshot::from_bytes(&latest.bytes)?.verify(&side.manager.public())?;
    let directory: SharedDirectory = Arc::new(RwLock::new(Arc::new(verified)));
    let authority = Arc::new(Participants(directory.clone()));
    let dir_endpoint = Endpoint::bind(
        config.service.listen_directory,
        &side.identity,
        authority.clone(),
        poc_transport::ALPN_DIRECTORY,
        directory_limits(),
    )
    .with_context(|| format!("cannot listen on {}", config.service.listen_directory))?;
    let mut node_limits = Limits::default();
    if let Some(rate) = config.service.handshakes_per_second_per_ip {
        node_limits.handshakes_per_second_per_ip = rate.max(1);
        node_limits.handshake_burst_per_ip = rate.max(1);
    }
    let node_endpoint = Endpoint::bind(
        config.service.listen_node,
        &side.identity,
        authority,
        poc_transport::ALPN_NODE,
        node_limits,
    )
    .with_context(|| format!("cannot listen on {}", config.service.listen_node))?;
    let public = match config.service.listen_public {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        ),
        None => None,
    };
    let poll = Duration::from_millis(config.service.poll_ms.max(50));
    let service = Arc::new(Service {
        config,
        side,
        own,
        prekeys,
        db: Mutex::new(db),
        directory,
        latest_bytes: RwLock::new(Arc::new(latest.bytes)),
    });
    tracing::info!(
        directory = %service.config.service.listen_directory,
        node = %service.config.service.listen_node,
        sequence = service.directory().sequence(),
        "directory service started"
    );

    let s = service.clone();
    tokio::spawn(async move {
        while let Some(incoming) = dir_endpoint.accept().await {
            let Ok(connection) = incoming else { continue };
            let s = s.clone();
            tokio::spawn(async move {
                while let Some(Ok(mut request)) = connection.accept_request().await {
                    let payload = std::mem::take(&mut request.payload);
                    // A submission signs and checks a snapshot: CPU and disk.
                    let answer = tokio::task::block_in_place(|| s.answer_fetch(&payload));
                    let _ = request.respond(&answer).await;
                }
            });
        }
    });
    if let Some(listener) = public {
        let s = service.clone();
        tokio::spawn(async move { serve_public(listener, s).await });
    }
    let mut pinned = Vec::new();
    for relay in &service.config.relays {
        pinned.push(poc_relay::client::PinnedRelay {
            name: relay.name.clone(),
            address: relay.address.clone(),
            key: poc_relay::client::PinnedRelay::parse_key(&relay.public_key)
                .map_err(|e| anyhow::anyhow!("[[relay]] {}: {e}", relay.name))?,
        });
    }
    let relays = poc_relay::client::RelaySet::new(
        pinned,
        &service.side.identity,
        !service.config.service.listen_node.is_ipv4(),
    )
    .context("cannot bind the ping identity's relay endpoint")?;
    let pinger = Arc::new(pings::Pinger::new(service.clone(), node_endpoint, relays));
    tokio::spawn(pinger.clone().run_inbound());
    pinger.spawn_relay_mail();
    loop {
        if let Err(e) = service.refresh() {
            tracing::error!(error = %e, "cannot reload the latest snapshot");
        }
        if let Err(e) = pinger.tick().await {
            tracing::error!(error = %e, "campaign step failed");
        }
        tokio::time::sleep(poll).await;
    }
}

/// A minimal HTTP/1.1 responder: `GET /` (text) and `GET /overview.json`.
async fn serve_public(listener: tokio::net::TcpListener, service: Arc<Service>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            // Read the request head (bounded: 8 KiB, 5 s); the body, if
            // any, is ignored.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let overview = service.overview();
            let (status, kind, body) = match path.as_str() {
                "/overview.json" => ("200 OK", "application/json", format!("{overview:#}\n")),
                "/" => (
                    "200 OK",
                    "text/plain; charset=utf-8",
                    overview_text(&overview),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

fn overview_text(overview: &serde_json::Value) -> String {
    let mut text = String::from("UN Global Intergovernmental PoC Directory: public overview\n\n");
    text.push_str(overview["mandate"].as_str().unwrap_or_default());
    text.push_str(&format!(
        "\n\nParticipating States: {}\n",
        overview["participating_states"]
    ));
    if let Some(roles) = overview["pocs_by_role"].as_object() {
        for (role, n) in roles {
            text.push_str(&format!("{role} PoCs: {n}\n"));
        }
    }
    text
}
