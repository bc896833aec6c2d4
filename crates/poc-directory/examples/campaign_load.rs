//! A ping campaign over N simulated PoCs on loopback: the real directory
//! service code (`service::serve`, in this process) pings N PoC endpoints
//! (real QUIC endpoints, one UDP socket each, in this process too), each of
//! which opens the sealed ping, acknowledges it, and sends a sealed ping
//! reply back to the service. Measures the time from `campaign start` to
//! every ping delivered and to every reply tracked in the service's
//! database.
//!
//! Baseline, same run, same endpoints: the same number of pings sealed by
//! the manager's ping identity and delivered by a bare poc-transport loop
//! with the same concurrency (64), without the service's bookkeeping.
//!
//! ```sh
//! cargo run --release -p poc-directory --example campaign_load -- 1000
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poc_directory::service::{self, ServiceConfig, db::ServiceDb, pings};
use poc_proto::certificate::{
    CertificateBody, Endpoint as CertEndpoint, PocCertificate, Prekey, PrekeyId,
    VerifiedCertificate,
};
use poc_proto::directory::{EntryDetails, EntrySubmission, SignedEntryDetails};
use poc_proto::envelope::{MemoryReplayCache, PrekeyRing, Recipient, Sender, VerifyPolicy};
use poc_proto::keys::{
    EphemeralSecret, IdentityKeyPair, ManagerKeyPair, PrekeySecret, StateRootKeyPair,
};
use poc_proto::message::{CampaignId, Handling, Header, Language, Ping, PingReply};
use poc_proto::{
    Body, Issuer, Message, MessageId, PocId, Role, Seconds, StateCode, ThreadId, Timestamp,
};
use poc_transport::{Endpoint, Limits, PeerAuthority};

const PER_STATE: usize = 50;
const CONCURRENCY: usize = 64;

fn now() -> Timestamp {
    poc_directory::clock::now()
}

fn seed(label: &str) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, label.as_bytes())
        .as_ref()
        .try_into()
        .unwrap()
}

fn state_code(i: usize) -> StateCode {
    (b'A'..=b'Z')
        .flat_map(|a| {
            (b'A'..=b'Z').flat_map(move |b| {
                (b'A'..=b'Z').map(move |c| String::from_utf8(vec![a, b, c]).unwrap())
            })
        })
        .filter_map(|code| StateCode::new(&code).ok())
        .nth(i)
        .unwrap()
}

#[derive(Debug)]
struct Only(poc_proto::keys::IdentityPublicKey, PocId);
impl PeerAuthority for Only {
    fn poc_for_key(&self, key: &poc_proto::keys::IdentityPublicKey) -> Option<PocId> {
        (*key == self.0).then(|| self.1.clone())
    }
}

struct Sim {
    identity: IdentityKeyPair,
    cert: VerifiedCertificate,
    prekeys: PrekeyRing,
    endpoint: Endpoint,
    manager: VerifiedCertificate,
    service: std::net::SocketAddr,
    replay: Mutex<MemoryReplayCache>,
}

impl Sim {
    async fn run(self: Arc<Self>) {
        while let Some(Ok(conn)) = self.endpoint.accept().await {
            let me = self.clone();
            tokio::spawn(async move {
                while let Some(Ok(mut req)) = conn.accept_request().await {
                    let payload = std::mem::take(&mut req.payload);
                    let opened = {
                        let peers: BTreeMap<PocId, VerifiedCertificate> =
                            [(me.manager.poc_id().clone(), me.manager.clone())].into();
                        let recipient = Recipient {
                            certificate: &me.cert,
                            prekeys: &me.prekeys,
                            directory: &peers,
                            policy: VerifyPolicy::default(),
                        };
                        let mut replay = me.replay.lock().unwrap();
                        recipient.open(&payload, &mut *replay, now())
                    };
                    let Ok(opened) = opened else {
                        let _ = req.respond(&[1, 0, 0]).await;
                        continue;
                    };
                    let _ = req.respond(&[0]).await;
                    if let Body::Ping(ping) = &opened.message.body
                        && ping.reply_by != Timestamp(0)
                    {
                        let me = me.clone();
                        let ping = *ping;
                        let header = opened.message.header.clone();
                        tokio::spawn(async move { me.reply(ping, header).await });
                    }
                }
            });
        }
    }

    async fn reply(&self, ping: Ping, to: Header) {
        let message = Message {
            header: Header {
                sender: self.cert.poc_id().clone(),
                recipient: to.sender.clone(),
                message_id: MessageId::random(&mut poc_directory::rng::OsRandom::new()),
                thread_id: to.thread_id,
                in_reply_to: Some(to.message_id),
                created_at: now(),
                language: Language::English,
                handling: Handling::default(),
                exercise: None,
            },
            body: Body::PingReply(PingReply {
                campaign: ping.campaign,
            }),
        };
        let sealed = Sender::new(&self.cert, &self.identity)
            .unwrap()
            .seal(
                &message,
                &self.manager,
                &self.manager.initial_prekey(),
                now().plus(Seconds::DAY),
                EphemeralSecret::generate(&mut poc_directory::rng::OsRandom::new()),
            )
            .unwrap();
        for attempt in 0..20u32 {
            if let Ok(conn) = self
                .endpoint
                .connect(self.service, self.manager.body().identity_key)
                .await
                && let Ok(answer) = conn.request(sealed.as_bytes()).await
                && answer == [0]
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
        }
        eprintln!("{}: reply not delivered", self.cert.poc_id());
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POC_DIRECTORY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let manager = ManagerKeyPair::from_secret_bytes(&seed("manager"));
    poc_keyfile::write_secret(
        &dir.path().join("manager.key"),
        poc_keyfile::KeyKind::Manager,
        Some("directory-manager"),
        &manager.to_secret_bytes(),
    )
    .unwrap();
    let port = |p: std::net::UdpSocket| p.local_addr().unwrap().port();
    let (d, node) = (
        port(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()),
        port(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()),
    );
    std::fs::write(
        dir.path().join("svc.toml"),
        format!("[service]\ndata_dir = \"data\"\nmanager_key = \"manager.key\"\nlisten_directory = \"127.0.0.1:{d}\"\nlisten_node = \"127.0.0.1:{node}\"\npoll_ms = 50\nhandshakes_per_second_per_ip = 100000\n\n[campaigns]\ninterval_days = 0\nretry_seconds = 1\n"),
    )
    .unwrap();
    let config = ServiceConfig::load(&dir.path().join("svc.toml")).unwrap();
    let (mut db, side) = service::open(&config).unwrap();
    let manager_cert = side
        .certificate
        .verify_by_manager(&manager.public())
        .unwrap();
    let service_addr: std::net::SocketAddr = format!("127.0.0.1:{node}").parse().unwrap();

    // N simulated PoCs: endpoints first (their addresses go in the certificates).
    let t0 = Instant::now();
    let mut roots = Vec::new();
    let mut submissions = Vec::new();
    let mut sims = Vec::new();
    for i in 0..n {
        let s = i / PER_STATE;
        if roots.len() <= s {
            let root = StateRootKeyPair::from_secret_bytes(&seed(&format!("root {s}")));
            db.enrol(
                state_code(s),
                root.public(),
                false,
                &manager,
                &side.certificate,
                now(),
            )
            .unwrap();
            roots.push(root);
        }
        let state = state_code(s);
        let identity = IdentityKeyPair::from_secret_bytes(&seed(&format!("identity {i}")));
        let prekey = PrekeySecret::from_secret_bytes(&seed(&format!("prekey {i}")));
        let endpoint = Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &identity,
            Arc::new(Only(
                manager_cert.body().identity_key,
                manager_cert.poc_id().clone(),
            )),
            poc_transport::ALPN_NODE,
            Limits::default(),
        )
        .unwrap();
        let t = now();
        let poc_id = PocId::new(format!("{state}.poc{i}")).unwrap();
        let body = CertificateBody {
            poc_id: poc_id.clone(),
            issuer: Issuer::State(state),
            role: if i % 2 == 0 {
                Role::Technical
            } else {
                Role::Diplomatic
            },
            identity_key: identity.public(),
            prekey: Prekey {
                id: PrekeyId(i as u64),
                public: prekey.public(),
                valid_from: t.minus(Seconds::DAY),
                valid_until: t.plus(Seconds::days(30)),
            },
            valid_from: t.minus(Seconds::DAY),
            valid_until: t.plus(Seconds::days(30)),
            endpoints: vec![CertEndpoint::Direct {
                address: endpoint.local_addr().unwrap().to_string(),
            }],
        };
        let certificate = PocCertificate::issue_by_state(&body, &roots[s]).unwrap();
        let details = EntryDetails {
            poc_id,
            revision: 1,
            entity: "sim".into(),
            person_name: None,
            person_title: None,
            phone: None,
            email: None,
            working_languages: vec![Language::English],
            language: Language::English,
            english: None,
            revoked: false,
        };
        submissions.push(
            EntrySubmission {
                certificate: certificate.clone(),
                details: SignedEntryDetails::sign(&details, &roots[s]).unwrap(),
            }
            .to_bytes()
            .unwrap(),
        );
        let mut prekeys = PrekeyRing::new();
        prekeys.insert(body.prekey.clone(), prekey).unwrap();
        sims.push(Arc::new(Sim {
            identity,
            cert: certificate.verify_by_state(&roots[s].public()).unwrap(),
            prekeys,
            endpoint,
            manager: manager_cert.clone(),
            service: service_addr,
            replay: Mutex::new(MemoryReplayCache::default()),
        }));
    }
    let batch: Vec<&[u8]> = submissions.iter().map(Vec::as_slice).collect();
    let (_, seq) = db
        .submit_batch(&batch, &manager, &side.certificate, now())
        .unwrap();
    eprintln!(
        "setup: {n} PoCs in {} States, snapshot {seq}, {:.1} s",
        roots.len(),
        t0.elapsed().as_secs_f64()
    );
    for sim in &sims {
        tokio::spawn(sim.clone().run());
    }
    tokio::spawn(service::serve(config.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Baseline: a bare loop delivers N sealed pings, 64 at a time.
    let client = Arc::new(
        Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &side.identity,
            Arc::new(AnyPoc),
            poc_transport::ALPN_NODE,
            Limits::default(),
        )
        .unwrap(),
    );
    let identity = Arc::new(IdentityKeyPair::from_secret_bytes(
        &side.identity.to_secret_bytes(),
    ));
    let t = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for sim in &sims {
        let (client, gate, sim, manager_cert, identity) = (
            client.clone(),
            gate.clone(),
            sim.clone(),
            manager_cert.clone(),
            identity.clone(),
        );
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let message = Message {
                header: Header {
                    sender: manager_cert.poc_id().clone(),
                    recipient: sim.cert.poc_id().clone(),
                    message_id: MessageId::random(&mut poc_directory::rng::OsRandom::new()),
                    thread_id: ThreadId::random(&mut poc_directory::rng::OsRandom::new()),
                    in_reply_to: None,
                    created_at: now(),
                    language: Language::English,
                    handling: Handling::default(),
                    exercise: None,
                },
                body: Body::Ping(Ping {
                    campaign: CampaignId::random(&mut poc_directory::rng::OsRandom::new()),
                    reply_by: Timestamp(0),
                }),
            };
            let sealed = Sender::new(&manager_cert, &identity)
                .unwrap()
                .seal(
                    &message,
                    &sim.cert,
                    &sim.cert.initial_prekey(),
                    now().plus(Seconds::DAY),
                    EphemeralSecret::generate(&mut poc_directory::rng::OsRandom::new()),
                )
                .unwrap();
            let addr = sim.endpoint.local_addr().unwrap();
            let conn = client
                .connect(addr, sim.cert.body().identity_key)
                .await
                .unwrap();
            assert_eq!(conn.request(sealed.as_bytes()).await.unwrap(), [0]);
            conn.close();
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let baseline = t.elapsed();

    // The campaign.
    let control = ServiceDb::open(&config.database()).unwrap();
    let t = Instant::now();
    pings::request_campaign(control.conn_pub(), now()).unwrap();
    let mut delivered_at = None;
    let replied_at = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some((id, _)) = pings::latest_campaign(control.conn_pub()).unwrap() else {
            continue;
        };
        let campaign = pings::load_campaign(control.conn_pub(), &id)
            .unwrap()
            .unwrap();
        let report = campaign.report(now());
        let delivered = pings::delivered_times(control.conn_pub(), &id)
            .unwrap()
            .len();
        if delivered_at.is_none() && delivered == n {
            delivered_at = Some(t.elapsed());
        }
        if report.totals.replied_on_time == n {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "campaign did not complete: {:?}",
            report.totals
        );
    };
    let delivered_at = delivered_at.unwrap_or(replied_at);
    println!("PoCs: {n}");
    println!(
        "baseline (bare loop, seal + handshake + deliver, concurrency {CONCURRENCY}): {:.2} s",
        baseline.as_secs_f64()
    );
    println!(
        "campaign: all delivered after {:.2} s ({:.2}x baseline), all replies tracked after {:.2} s ({:.2}x baseline)",
        delivered_at.as_secs_f64(),
        delivered_at.as_secs_f64() / baseline.as_secs_f64(),
        replied_at.as_secs_f64(),
        replied_at.as_secs_f64() / baseline.as_secs_f64()
    );
}

#[derive(Debug)]
struct AnyPoc;
impl PeerAuthority for AnyPoc {
    fn poc_for_key(&self, _: &poc_proto::keys::IdentityPublicKey) -> Option<PocId> {
        PocId::new("SIM.any").ok()
    }
}
