//! The relay process, end to end: the built `poc-relay` binary on loopback,
//! real QUIC clients (the library's [`RelayClient`]), a real SQLite store and
//! its metrics endpoint. The relay only reads outer headers, so most
//! envelopes here are synthetic: a valid outer header over random bytes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poc_proto::certificate::MailboxId;
use poc_proto::directory::{SignedSnapshot, SnapshotDigest};
use poc_proto::keys::IdentityKeyPair;
use poc_proto::testkit::World;
use poc_proto::{PocId, Timestamp};
use poc_relay::client::{ClientError, RelayClient, RelayPins, bind_endpoint};
use poc_relay::wire::Refusal;

/// PoCs of the test world left out of the relay's directory.
const UNLISTED: [&str; 2] = ["KEN.cert", "KEN.old"];

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A synthetic envelope: a version-1 outer header and `body_len` bytes.
fn envelope(mailbox: MailboxId, expires_at: u64, body_len: usize, fill: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(34 + body_len);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&mailbox.0);
    out.extend_from_slice(&expires_at.to_le_bytes());
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    out.extend(std::iter::repeat_n(fill, body_len));
    out
}

struct RelayUnderTest {
    world: World,
    dir: tempfile::TempDir,
    port: u16,
    metrics_port: u16,
    relay_key: IdentityKeyPair,
    child: Child,
}

impl Drop for RelayUnderTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- relay log -----\n{}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
        }
    }
}

impl RelayUnderTest {
    fn start(limits: &str) -> RelayUnderTest {
        let world = World::new();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        poc_keyfile::write_public(
            &root.join("manager.pub"),
            poc_keyfile::KeyKind::Manager,
            None,
            &world.manager.public().to_bytes(),
        )
        .unwrap();
        let body = world.snapshot_body(1, SnapshotDigest([0; 32]), Timestamp(now()), |id| {
            !UNLISTED.contains(&id.as_str())
        });
        let snapshot = SignedSnapshot::sign(&body, &world.manager).unwrap();
        std::fs::write(root.join("directory.snapshot"), snapshot.to_bytes()).unwrap();
        let seed = [42u8; 32];
        poc_keyfile::write_secret(
            &root.join("relay.key"),
            poc_keyfile::KeyKind::Identity,
            Some("relay"),
            &seed,
        )
        .unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            root.join("poc-relay.toml"),
            format!(
                "[relay]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\nidentity_key = \"relay.key\"\n\
                 metrics_listen = \"127.0.0.1:{metrics_port}\"\n\n\
                 [directory]\nsnapshot = \"directory.snapshot\"\nmanager_key = \"manager.pub\"\nreload_seconds = 1\n\n\
                 [limits]\nexpiry_sweep_seconds = 1\n{limits}\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(root.join("relay.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_poc-relay"))
            .arg("--config")
            .arg(root.join("poc-relay.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .env("POC_RELAY_LOG", "poc_relay=debug,info")
            .spawn()
            .unwrap();
        let relay = RelayUnderTest {
            world,
            dir,
            port,
            metrics_port,
            relay_key: IdentityKeyPair::from_secret_bytes(&seed),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while relay.try_metrics().is_none() {
            assert!(Instant::now() < deadline, "poc-relay did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        relay
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("relay.log")
    }

    fn mailbox(&self, poc: &str) -> MailboxId {
        MailboxId::for_identity(&self.world.poc(poc).identity.public())
    }

    async fn client(&self, poc: &str) -> Result<RelayClient, poc_transport::TransportError> {
        let identity = IdentityKeyPair::from_secret_bytes(&self.world.poc(poc).identity_seed);
        let pins = RelayPins::new([(PocId::new("relay").unwrap(), self.relay_key.public())]);
        let endpoint = bind_endpoint("127.0.0.1:0".parse().unwrap(), &identity, pins).unwrap();
        let client = RelayClient::connect(
            &endpoint,
            format!("127.0.0.1:{}", self.port).parse().unwrap(),
            self.relay_key.public(),
        )
        .await;
        // The endpoint must outlive the connection for the whole test.
        std::mem::forget(endpoint);
        client
    }

    fn try_metrics(&self) -> Option<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.starts_with("HTTP/1.1 200").then_some(text)
    }

    fn metric(&self, name: &str) -> u64 {
        let text = self.try_metrics().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

fn refused(result: Result<(), ClientError>) -> Refusal {
    match result {
        Err(ClientError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_past_a_limit_get_typed_refusals_which_are_counted() {
    let relay = RelayUnderTest::start(
        "max_envelope_bytes = 8192\nmailbox_max_envelopes = 3\nmailbox_max_bytes = 10000\n\
         deposits_per_second = 1\ndeposit_burst = 12\n",
    );
    let est = relay.client("EST.cert").await.unwrap();
    let later = now() + 3600;
    let fra = relay.mailbox("FRA.cert");
    let fra_mfa = relay.mailbox("FRA.mfa");

    let truncated = &envelope(fra, later, 100, 1)[..50];
    assert_eq!(refused(est.deposit(truncated).await), Refusal::Malformed);
    assert_eq!(
        refused(est.deposit(&envelope(fra, later, 9000, 1)).await),
        Refusal::TooLarge
    );
    assert_eq!(
        refused(
            est.deposit(&envelope(relay.mailbox("KEN.cert"), later, 10, 1))
                .await
        ),
        Refusal::UnknownMailbox
    );
    assert_eq!(
        refused(est.deposit(&envelope(fra, now() - 10, 10, 1)).await),
        Refusal::Expired
    );
    for i in 0..3 {
        est.deposit(&envelope(fra, later, 10, i)).await.unwrap();
    }
    assert_eq!(
        refused(est.deposit(&envelope(fra, later, 10, 9)).await),
        Refusal::MailboxFull
    );
    est.deposit(&envelope(fra_mfa, later, 6000, 1))
        .await
        .unwrap();
    assert_eq!(
        refused(est.deposit(&envelope(fra_mfa, later, 6000, 2)).await),
        Refusal::MailboxBytesFull
    );
    // 10 deposits so far; the burst is 12, then one a second.
    let mut rate_limited = 0;
    for _ in 0..5 {
        if let Err(ClientError::Refused(Refusal::RateLimited)) = est
            .deposit(&envelope(relay.mailbox("EST.mfa"), later, 10, 1))
            .await
        {
            rate_limited += 1;
        }
    }
    assert!(rate_limited >= 2, "{rate_limited}");
    // Another sender is not limited by EST.cert's rate.
    let other = relay.client("FRA.mfa").await.unwrap();
    other
        .deposit(&envelope(relay.mailbox("UN.ping"), later, 10, 1))
        .await
        .unwrap();

    for (reason, at_least) in [
        ("malformed", 1),
        ("too_large", 1),
        ("unknown_mailbox", 1),
        ("expired", 1),
        ("mailbox_full", 1),
        ("mailbox_bytes_full", 1),
        ("rate_limited", 2),
    ] {
        let value = relay.metric(&format!("poc_relay_refusals_total{{reason=\"{reason}\"}}"));
        assert!(value >= at_least, "{reason}: {value}");
    }
    assert_eq!(
        relay.metric("poc_relay_stored_envelopes"),
        4 + 1 + (5 - rate_limited)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fetches_and_acknowledges_only_its_own_mailbox() {
    let relay = RelayUnderTest::start("");
    let later = now() + 3600;
    let est = relay.client("EST.cert").await.unwrap();
    let sent = [
        envelope(relay.mailbox("FRA.cert"), later, 300, 1),
        envelope(relay.mailbox("FRA.cert"), later, 400, 2),
    ];
    for e in &sent {
        est.deposit(e).await.unwrap();
    }
    // Others see nothing of FRA.cert's mail, and cannot delete it.
    for other in ["EST.mfa", "FRA.mfa", "EST.cert"] {
        let client = relay.client(other).await.unwrap();
        assert!(
            client
                .fetch(10, Duration::ZERO)
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
    let fra = relay.client("FRA.cert").await.unwrap();
    let page = fra.fetch(10, Duration::ZERO).await.unwrap();
    let got: Vec<_> = page.items.iter().map(|i| i.envelope.clone()).collect();
    assert_eq!(got, sent.to_vec(), "byte for byte, oldest first");
    let ids: Vec<_> = page.items.iter().map(|i| i.id).collect();
    assert_eq!(
        est.ack(&ids).await.unwrap(),
        0,
        "EST.cert cannot delete FRA's mail"
    );

    // Pages: one at a time, `more` says whether mail is left.
    let one = fra.fetch(1, Duration::ZERO).await.unwrap();
    assert_eq!(one.items.len(), 1);
    assert!(one.more);
    // Only what is acknowledged is deleted; the rest is fetched again.
    assert_eq!(fra.ack(&ids[..1]).await.unwrap(), 1);
    let page = fra.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].envelope, sent[1]);
    assert!(!page.more);
    assert_eq!(fra.ack(&ids).await.unwrap(), 1);
    assert_eq!(relay.metric("poc_relay_stored_envelopes"), 0);
    assert_eq!(relay.metric("poc_relay_acked_total"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reading_in_a_loop_is_paced_then_refused_and_others_are_served() {
    // One read a second, two at once, two more waiting their turn.
    let relay = RelayUnderTest::start("reads_per_second = 1\nread_burst = 2\n");
    let fra = Arc::new(relay.client("FRA.cert").await.unwrap());
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let fra = Arc::clone(&fra);
            tokio::spawn(async move { fra.fetch(10, Duration::ZERO).await })
        })
        .collect();
    let mut served = 0;
    let mut refused = 0;
    for read in reads {
        match read.await.unwrap() {
            Ok(page) => {
                assert!(page.items.is_empty());
                served += 1;
            }
            Err(ClientError::Refused(Refusal::RateLimited)) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Two at once and two paced (a slower machine refills a little more).
    assert!(served >= 4, "{served} served");
    assert!(refused >= 1, "none refused");
    assert_eq!(served + refused, 8);
    assert!(relay.metric("poc_relay_reads_paced_total") >= 2);
    assert_eq!(relay.metric("poc_relay_fetches_total"), served);

    // Another client, reading and depositing, is not held up by FRA's debt.
    let est = relay.client("EST.cert").await.unwrap();
    est.deposit(&envelope(relay.mailbox("FRA.cert"), now() + 3600, 300, 1))
        .await
        .unwrap();
    assert!(
        est.fetch(10, Duration::ZERO)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // FRA itself reads again once its debt is paid off, and finds the mail.
    let mut page = fra.fetch(10, Duration::ZERO).await;
    for _ in 0..20 {
        if !matches!(page, Err(ClientError::Refused(Refusal::RateLimited))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        page = fra.fetch(10, Duration::ZERO).await;
    }
    assert_eq!(page.unwrap().items.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_is_answered_as_soon_as_mail_arrives() {
    let relay = RelayUnderTest::start("max_wait_seconds = 20\n");
    let fra = relay.client("FRA.cert").await.unwrap();
    let est = relay.client("EST.cert").await.unwrap();
    let mailbox = relay.mailbox("FRA.cert");
    let started = Instant::now();
    let waiting = tokio::spawn(async move { fra.fetch(10, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "an empty mailbox holds the fetch");
    est.deposit(&envelope(mailbox, now() + 3600, 100, 7))
        .await
        .unwrap();
    let page = waiting.await.unwrap().unwrap();
    assert_eq!(page.items.len(), 1);
    // Pushed on arrival, not at the end of the 20 s wait.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_envelopes_are_dropped_unread_and_counted() {
    let relay = RelayUnderTest::start("");
    let est = relay.client("EST.cert").await.unwrap();
    let mailbox = relay.mailbox("FRA.cert");
    est.deposit(&envelope(mailbox, now() + 1, 100, 1))
        .await
        .unwrap();
    est.deposit(&envelope(mailbox, now() + 3600, 100, 2))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.metric("poc_relay_expired_total") < 1 {
        assert!(Instant::now() < deadline, "nothing expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fra = relay.client("FRA.cert").await.unwrap();
    let page = fra.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].envelope[34], 2);
    assert_eq!(relay.metric("poc_relay_stored_envelopes"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_certificateless_clients_are_refused_at_the_handshake() {
    let relay = RelayUnderTest::start("");
    // A key the directory does not list.
    match relay.client("KEN.cert").await {
        Err(poc_transport::TransportError::HandshakeRefused { .. }) => {}
        other => panic!("unlisted client not refused: {other:?}"),
    }
    // No client certificate at all: a plain TLS 1.3 client.
    assert!(no_certificate_client_gets_nothing(relay.port).await);
    // Listed clients still connect.
    relay.client("EST.cert").await.unwrap();
}

/// Connects as `poc` and deposits `envelope`; the error of either step.
async fn deposit_on_a_new_connection(
    relay: &RelayUnderTest,
    poc: &str,
    envelope: &[u8],
) -> Result<(), String> {
    let client = relay.client(poc).await.map_err(|e| e.to_string())?;
    client.deposit(envelope).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_connection_limit_is_closed_with_the_reason_and_others_connect() {
    let relay = RelayUnderTest::start("max_connections_per_client = 2");
    let later = now() + 3600;
    let to_fra = envelope(relay.mailbox("FRA.cert"), later, 100, 7);
    let first = relay.client("EST.cert").await.unwrap();
    let second = relay.client("EST.cert").await.unwrap();
    // The third is authenticated, then closed by the relay with its reason
    // (seen by the client at the end of its handshake or at its first
    // request, depending on which comes first).
    let err = deposit_on_a_new_connection(&relay, "EST.cert", &to_fra)
        .await
        .unwrap_err();
    assert!(
        err.contains("too many connections from this client (limit 2)"),
        "{err}"
    );
    assert_eq!(
        relay.metric("poc_relay_connections_over_client_limit_total"),
        1
    );
    // The two within the limit still work, and another PoC connects.
    first.deposit(&to_fra).await.unwrap();
    second.deposit(&to_fra).await.unwrap();
    let fra = relay.client("FRA.cert").await.unwrap();
    assert_eq!(fra.fetch(10, Duration::ZERO).await.unwrap().items.len(), 2);
    // A closed connection gives its slot back.
    first.close();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match deposit_on_a_new_connection(&relay, "EST.cert", &to_fra).await {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "slot never freed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(relay.metric("poc_relay_stored_envelopes"), 3);
}

/// Connects with TLS 1.3 and the relay ALPN but presents no client
/// certificate; true if the relay never accepts it (no acceptance signal, no
/// answer to a request).
async fn no_certificate_client_gets_nothing(port: u16) -> bool {
    #[derive(Debug)]
    struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2".into()))
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
        fn requires_raw_public_keys(&self) -> bool {
            true
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![poc_transport::ALPN_RELAY.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let connecting = endpoint
        .connect(format!("127.0.0.1:{port}").parse().unwrap(), "relay")
        .unwrap();
    let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(10), connecting).await else {
        return true;
    };
    let attempt = async {
        let mut signal = conn.accept_uni().await.ok()?;
        signal.read_to_end(1).await.ok()?;
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(&[0, 0, 0, 7, 2, 0, 10, 0, 0, 0, 0])
            .await
            .ok()?;
        send.finish().ok()?;
        recv.read_to_end(1 << 20).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), attempt).await,
        Ok(None) | Err(_)
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// One deposit by EST.cert, fetched and acknowledged by FRA.cert: the time
/// from deposit to the fetch's answer.
async fn round_trips(
    est: &RelayClient,
    fra: &RelayClient,
    mailbox: MailboxId,
    n: usize,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let e = envelope(mailbox, now() + 3600, 4096, i as u8);
        let started = Instant::now();
        est.deposit(&e).await.unwrap();
        let page = fra.fetch(10, Duration::from_secs(10)).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(page.items.len(), 1, "exactly the one envelope");
        assert_eq!(page.items[0].envelope, e);
        assert_eq!(fra.ack(&[page.items[0].id]).await.unwrap(), 1);
    }
    times
}

/// Not a timed assertion: prints the latency of another client's mail with
/// and without a flood, and asserts only that every message arrived once,
/// that the flood was refused with typed reasons and that memory stayed
/// bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_refused_and_others_are_still_served() {
    let relay = RelayUnderTest::start("deposits_per_second = 200\ndeposit_burst = 200\n");
    let est = relay.client("EST.cert").await.unwrap();
    let fra = relay.client("FRA.cert").await.unwrap();
    let mailbox = relay.mailbox("FRA.cert");
    let n = 40;
    let unloaded = round_trips(&est, &fra, mailbox, n).await;
    let rss_before = relay.rss_kib();

    // The flooder runs on its own runtime thread, as another process would.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = Arc::clone(&stop);
        let identity = relay.world.poc("EST.mfa").identity_seed;
        let relay_key = relay.relay_key.public();
        let port = relay.port;
        let target = relay.mailbox("FRA.mfa");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let identity = IdentityKeyPair::from_secret_bytes(&identity);
                let pins = RelayPins::new([(PocId::new("relay").unwrap(), relay_key)]);
                let endpoint =
                    bind_endpoint("127.0.0.1:0".parse().unwrap(), &identity, pins).unwrap();
                let flooder = RelayClient::connect(
                    &endpoint,
                    format!("127.0.0.1:{port}").parse().unwrap(),
                    relay_key,
                )
                .await
                .unwrap();
                let mut tasks = Vec::new();
                for t in 0..32u8 {
                    let flooder = flooder.clone();
                    let stop = Arc::clone(&stop);
                    tasks.push(tokio::spawn(async move {
                        let (mut ok, mut refused) = (0u64, 0u64);
                        let e = envelope(target, now() + 3600, 4096, t);
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            match flooder.deposit(&e).await {
                                Ok(()) => ok += 1,
                                Err(ClientError::Refused(_)) => refused += 1,
                                Err(e) => panic!("flood connection failed: {e}"),
                            }
                        }
                        (ok, refused)
                    }));
                }
                let (mut ok, mut refused) = (0, 0);
                for task in tasks {
                    let (o, r) = task.await.unwrap();
                    ok += o;
                    refused += r;
                }
                (ok, refused)
            })
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = round_trips(&est, &fra, mailbox, n).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, refused) = flood.join().unwrap();
    let rss_after = relay.rss_kib();
    let (u, l) = (median(unloaded), median(loaded));
    println!(
        "flood: {ok} deposits stored, {refused} refused; other client's deposit->fetch median \
         {u:?} unloaded, {l:?} under flood ({:.2}x); relay RSS {rss_before} KiB -> {rss_after} KiB",
        l.as_secs_f64() / u.as_secs_f64()
    );
    assert!(refused > 0, "the flood was never limited");
    assert!(relay.metric("poc_relay_refusals_total{reason=\"rate_limited\"}") > 0);
    assert!(
        rss_after < 256 * 1024,
        "relay RSS {rss_after} KiB under flood"
    );
    assert_eq!(relay.metric("poc_relay_stored_envelopes"), ok);
}

#[test]
fn the_relay_logs_and_store_hold_no_poc_id() {
    // Companion to pocd's end-to-end canary test: here with synthetic
    // traffic from several clients, the relay's whole directory is searched.
    let relay = RelayUnderTest::start("");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let est = relay.client("EST.cert").await.unwrap();
        let fra = relay.client("FRA.cert").await.unwrap();
        est.deposit(&envelope(relay.mailbox("FRA.cert"), now() + 60, 100, 1))
            .await
            .unwrap();
        let page = fra.fetch(10, Duration::ZERO).await.unwrap();
        fra.ack(&[page.items[0].id]).await.unwrap();
        let _ = relay.client("KEN.cert").await;
    });
    let log = std::fs::read_to_string(relay.log()).unwrap();
    assert!(
        log.contains("envelope stored"),
        "debug logging is on:\n{log}"
    );
    // What the relay writes: its data directory and its log (the snapshot
    // and config next to them are inputs, and the snapshot names every PoC).
    let mut written = walk(&relay.dir.path().join("data"));
    written.push(relay.log());
    assert!(
        written
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "seg")),
        "the relay's log segments are searched too: {written:?}"
    );
    for file in written {
        let bytes = std::fs::read(&file).unwrap();
        for id in ["EST.cert", "FRA.cert", "KEN.cert"] {
            assert!(
                !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
                "{id} in {}",
                file.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn keygen_writes_a_private_key_file_and_prints_its_public_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.key");
    let out = Command::new(env!("CARGO_BIN_EXE_poc-relay"))
        .arg("--keygen")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let key = poc_keyfile::read_secret(&path, poc_keyfile::KeyKind::Identity).unwrap();
    assert_eq!(
        printed.trim(),
        hex::encode(
            IdentityKeyPair::from_secret_bytes(&key.secret)
                .public()
                .to_bytes()
        )
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Never overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_poc-relay"))
        .arg("--keygen")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_mail_survives_kill_9_and_another_backend_never_strands_it() {
    let mut relay = RelayUnderTest::start("");
    let sent = envelope(relay.mailbox("FRA.cert"), now() + 3600, 500, 7);
    relay
        .client("EST.cert")
        .await
        .unwrap()
        .deposit(&sent)
        .await
        .unwrap();
    relay.child.kill().unwrap();
    relay.child.wait().unwrap();

    // The same data directory under the SQLite backend would never deliver
    // what the log holds: the relay refuses to start, naming both.
    let config = relay.dir.path().join("poc-relay.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let other = relay.dir.path().join("poc-relay-sqlite.toml");
    std::fs::write(
        &other,
        text.replace("[relay]\n", "[relay]\nstorage = \"sqlite\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_poc-relay"))
        .arg("--config")
        .arg(&other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("relay-log") && stderr.contains("storage = \"sqlite\""),
        "{stderr}"
    );
    assert!(!relay.dir.path().join("data/relay.sqlite").exists());

    // Back under its own backend, the envelope is there, once.
    relay.child = Command::new(env!("CARGO_BIN_EXE_poc-relay"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.try_metrics().is_none() {
        assert!(Instant::now() < deadline, "poc-relay did not restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.metric("poc_relay_stored_envelopes"), 1);
    // The segment's header (24 bytes) and the envelope's record.
    assert!(relay.metric("poc_relay_store_disk_bytes") > 24 + 500);
    let fra = relay.client("FRA.cert").await.unwrap();
    let page = fra.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].envelope, sent);
}

#[test]
fn a_metrics_endpoint_off_loopback_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("poc-relay.toml");
    std::fs::write(
        &config,
        "[relay]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\nidentity_key = \"relay.key\"\n\
         metrics_listen = \"0.0.0.0:9501\"\n\n[directory]\nsnapshot = \"d\"\nmanager_key = \"m\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_poc-relay"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("metrics_listen") && stderr.contains("loopback"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_directory_snapshot_is_taken_up_without_a_restart() {
    let relay = RelayUnderTest::start("");
    assert!(relay.client("KEN.cert").await.is_err(), "not listed yet");
    // The manager publishes sequence 2, which lists KEN.cert too.
    let world = &relay.world;
    let old = std::fs::read(relay.dir.path().join("directory.snapshot")).unwrap();
    let body = world.snapshot_body(
        2,
        SignedSnapshot::from_bytes(&old).unwrap().digest(),
        Timestamp(now()),
        |id| id.as_str() != "KEN.old",
    );
    let snapshot = SignedSnapshot::sign(&body, &world.manager).unwrap();
    let path = relay.dir.path().join("directory.snapshot");
    std::fs::write(path.with_extension("new"), snapshot.to_bytes()).unwrap();
    std::fs::rename(path.with_extension("new"), &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(ken) = relay.client("KEN.cert").await {
            // And mail for KEN.cert is now accepted.
            ken.deposit(&envelope(relay.mailbox("KEN.cert"), now() + 60, 10, 1))
                .await
                .unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new snapshot was not taken up"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_claiming_more_deletions_than_asked_gets_a_clear_error() {
    // A hostile relay (it holds the pinned key) answers every Ack with
    // "deleted u64::MAX".
    #[derive(Debug)]
    struct Anyone(PocId);
    impl poc_transport::PeerAuthority for Anyone {
        fn poc_for_key(&self, _: &poc_proto::keys::IdentityPublicKey) -> Option<PocId> {
            Some(self.0.clone())
        }
    }
    let relay_key = IdentityKeyPair::from_secret_bytes(&[0x42; 32]);
    let relay = poc_transport::Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &relay_key,
        Arc::new(Anyone(PocId::new("EST.cert").unwrap())),
        poc_transport::ALPN_RELAY,
        poc_transport::Limits::default(),
    )
    .unwrap();
    let accepting = relay.clone();
    tokio::spawn(async move {
        while let Some(Ok(connection)) = accepting.accept().await {
            tokio::spawn(async move {
                while let Some(Ok(request)) = connection.accept_request().await {
                    let _ = request
                        .respond(&poc_relay::wire::encode_acked(u64::MAX))
                        .await;
                }
            });
        }
    });

    let identity = IdentityKeyPair::from_secret_bytes(&[0x24; 32]);
    let pins = RelayPins::new([(PocId::new("relay").unwrap(), relay_key.public())]);
    let endpoint = bind_endpoint("127.0.0.1:0".parse().unwrap(), &identity, pins).unwrap();
    let client = RelayClient::connect(&endpoint, relay.local_addr().unwrap(), relay_key.public())
        .await
        .unwrap();
    // One Ack and two (more ids than one Ack carries): an error, no panic
    // and no absurd count.
    for count in [3u64, 2 * poc_relay::wire::MAX_ACK_IDS as u64] {
        let ids: Vec<u64> = (0..count).collect();
        let err = client.ack(&ids).await.unwrap_err();
        assert!(matches!(err, ClientError::BadResponse(_)), "{err:?}");
    }
}
