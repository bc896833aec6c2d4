//! Misbehaving peers: raw streams that break the framing rules, written with
//! access to the underlying quinn connection.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poc_proto::PocId;
use poc_proto::keys::{IdentityKeyPair, IdentityPublicKey};
use quinn::VarInt;
use tokio::sync::mpsc;

use crate::{
    ALPN_NODE, Connection, Endpoint, Limits, PeerAuthority, StreamErrorCode, TransportError,
};

#[derive(Debug, Default)]
struct MapAuthority(Mutex<HashMap<IdentityPublicKey, PocId>>);

impl PeerAuthority for MapAuthority {
    fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<PocId> {
        self.0.lock().unwrap().get(key).cloned()
    }
}

fn identity(n: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(&[n; 32])
}

fn authority(entries: &[(&IdentityKeyPair, &str)]) -> Arc<dyn PeerAuthority> {
    let map = entries
        .iter()
        .map(|(k, id)| (k.public(), PocId::new(*id).unwrap()))
        .collect();
    Arc::new(MapAuthority(Mutex::new(map)))
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server (key 1) that knows clients 2 and 3 and echoes requests; refused
/// request streams are reported on the returned channel.
fn echo_server(limits: Limits) -> (Endpoint, mpsc::UnboundedReceiver<TransportError>) {
    let auth = authority(&[(&identity(2), "FRA.cert"), (&identity(3), "DEU.cert")]);
    let server = Endpoint::bind(localhost(), &identity(1), auth, ALPN_NODE, limits).unwrap();
    let (err_tx, err_rx) = mpsc::unbounded_channel();
    let ep = server.clone();
    tokio::spawn(async move {
        while let Some(conn) = ep.accept().await {
            let conn = conn.unwrap();
            let err_tx = err_tx.clone();
            tokio::spawn(async move {
                while let Some(req) = conn.accept_request().await {
                    match req {
                        Ok(req) => {
                            tokio::spawn(async move {
                                let reply = req.payload.clone();
                                let _ = req.respond(&reply).await;
                            });
                        }
                        Err(e) => {
                            let _ = err_tx.send(e);
                        }
                    }
                }
            });
        }
    });
    (server, err_rx)
}

async fn client(n: u8, server: &Endpoint) -> Connection {
    let auth = authority(&[(&identity(1), "EST.cert")]);
    let ep = Endpoint::bind(
        localhost(),
        &identity(n),
        auth,
        ALPN_NODE,
        Limits::default(),
    )
    .unwrap();
    ep.connect(server.local_addr().unwrap(), identity(1).public())
        .await
        .unwrap()
}

/// Sends raw bytes on a new stream (finishing it if asked) and returns what
/// the server does with the stream: `Ok(response bytes)` or the reset code.
async fn raw_stream(conn: &Connection, bytes: &[u8], finish: bool) -> Result<Vec<u8>, u64> {
    let (mut send, mut recv) = conn.quinn().open_bi().await.unwrap();
    // The server may stop the stream while we write.
    let _ = send.write_all(bytes).await;
    if finish {
        let _ = send.finish();
    }
    answer_or_reset(&mut recv).await
}

/// What the server sent back on a stream (whole), or the code it reset
/// the stream with.
async fn answer_or_reset(recv: &mut quinn::RecvStream) -> Result<Vec<u8>, u64> {
    let outcome = tokio::time::timeout(Duration::from_secs(20), recv.read_to_end(1 << 20))
        .await
        .expect("the server neither answered nor reset the stream");
    match outcome {
        Ok(bytes) => Ok(bytes),
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => Err(code.into_inner()),
        Err(e) => panic!("unexpected {e:?}"),
    }
}

/// A well-behaved client on its own connection, running throughout.
fn bystander(conn: Connection, rounds: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..rounds {
            let payload = format!("good {i}");
            assert_eq!(
                conn.request(payload.as_bytes()).await.unwrap(),
                payload.as_bytes()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Waits (up to 20 s) for a condition that another task will make true.
async fn eventually(condition: impl Fn() -> bool) {
    for _ in 0..400 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition never became true");
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_streams_are_reset_without_harming_others() {
    let (server, mut errors) = echo_server(Limits::default());
    let good = bystander(client(3, &server).await, 50);
    let bad = client(2, &server).await;

    // A correct raw frame is echoed back as a frame.
    assert_eq!(
        raw_stream(&bad, &frame(b"raw"), true).await,
        Ok(frame(b"raw"))
    );

    // Stream ends inside the length prefix.
    assert_eq!(raw_stream(&bad, &[0, 0], true).await, Err(0x3));
    // Stream ends inside the frame.
    assert_eq!(raw_stream(&bad, &[0, 0, 0, 9, 1, 2], true).await, Err(0x3));
    // Data after the frame.
    let mut trailing = frame(b"x");
    trailing.push(0xff);
    assert_eq!(raw_stream(&bad, &trailing, true).await, Err(0x3));
    // A length of 4 GiB: refused from the prefix alone.
    assert_eq!(
        raw_stream(&bad, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3], false).await,
        Err(StreamErrorCode::FrameTooLarge.to_u64())
    );

    for _ in 0..4 {
        let e = tokio::time::timeout(Duration::from_secs(10), errors.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                e,
                TransportError::ProtocolViolation { .. } | TransportError::FrameTooLarge { .. }
            ),
            "{e:?}"
        );
    }

    // The misbehaving connection itself still works, and so does the other.
    assert_eq!(bad.request(b"sorry").await.unwrap(), b"sorry");
    good.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_are_cut_off_at_the_stream_timeout() {
    let limits = Limits {
        stream_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (server, mut errors) = echo_server(limits);
    let good = bystander(client(3, &server).await, 150);
    let slow = client(2, &server).await;

    // Announces 100 bytes, sends 10, then stalls without finishing.
    let mut partial = vec![0, 0, 0, 100];
    partial.extend_from_slice(&[7; 10]);
    let stalled = raw_stream(&slow, &partial, false);
    // Stalls inside the length prefix on a second stream. (A stream on
    // which nothing is sent does not exist for the peer yet: QUIC announces
    // a stream with its first frame, so it costs the server nothing.)
    let silent = raw_stream(&slow, &[0, 0], false);
    let (stalled, silent) = tokio::join!(stalled, silent);
    assert_eq!(stalled, Err(StreamErrorCode::Timeout.to_u64()));
    assert_eq!(silent, Err(StreamErrorCode::Timeout.to_u64()));
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(10), errors.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(e, TransportError::Timeout { .. }), "{e:?}");
    }

    good.await.unwrap();
    assert_eq!(slow.request(b"quick now").await.unwrap(), b"quick now");
}

/// Sends one framed request of `len` bytes in `chunk`-byte pieces, `gap`
/// apart, and returns the response frame's payload or the reset code.
async fn trickle(
    conn: &Connection,
    len: usize,
    chunk: usize,
    gap: Duration,
) -> Result<Vec<u8>, u64> {
    let (mut send, mut recv) = conn.quinn().open_bi().await.unwrap();
    let prefix = u32::try_from(len).unwrap().to_be_bytes();
    let mut written = 0;
    let mut ok = send.write_all(&prefix).await.is_ok();
    while ok && written < len {
        tokio::time::sleep(gap).await;
        let n = chunk.min(len - written);
        // The server may stop the stream while we write.
        ok = send.write_all(&vec![9; n]).await.is_ok();
        written += n;
    }
    if ok {
        let _ = send.finish();
    }
    // The response frame's payload, after its length prefix.
    answer_or_reset(&mut recv)
        .await
        .map(|frame| frame.get(4..).unwrap_or_default().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_frame_on_a_slow_link_has_time_for_its_size_and_no_more() {
    // 64 KiB at 32 KiB/s: 1 s + 2 s to arrive.
    let limits = Limits {
        stream_timeout: Duration::from_secs(1),
        min_transfer_rate: 32 * 1024,
        ..Limits::default()
    };
    let (server, mut errors) = echo_server(limits);
    let steady = client(2, &server).await;
    let trickling = client(3, &server).await;
    let started = std::time::Instant::now();
    let (steady, trickled) = tokio::join!(
        // 40 KiB/s: all of it after 1.6 s, past the fixed timeout alone.
        trickle(&steady, 64 * 1024, 4 * 1024, Duration::from_millis(100)),
        // 8 KiB/s: would take 8 s; cut off once its 3 s are up.
        trickle(&trickling, 64 * 1024, 4 * 1024, Duration::from_millis(500)),
    );
    assert_eq!(steady.unwrap(), vec![9; 64 * 1024]);
    assert_eq!(trickled, Err(StreamErrorCode::Timeout.to_u64()));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the trickle was not cut off: {took:?}"
    );
    let e = tokio::time::timeout(Duration::from_secs(10), errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(e, TransportError::Timeout { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_beyond_the_clock_mean_no_timeout_not_a_panic() {
    let limits = Limits {
        stream_timeout: Duration::MAX,
        min_transfer_rate: 1,
        ..Limits::default()
    };
    let (server, _errors) = echo_server(limits.clone());
    let auth = authority(&[(&identity(1), "EST.cert")]);
    let client = Endpoint::bind(localhost(), &identity(2), auth, ALPN_NODE, limits).unwrap();
    let conn = client
        .connect(server.local_addr().unwrap(), identity(1).public())
        .await
        .unwrap();
    assert_eq!(conn.request(&[5; 4096]).await.unwrap(), vec![5; 4096]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_may_not_open_unidirectional_streams() {
    let (server, _errors) = echo_server(Limits::default());
    let conn = client(2, &server).await;
    // The server grants no unidirectional stream credit: opening one waits
    // forever (it is never delivered), while requests keep working.
    let opened = tokio::time::timeout(Duration::from_millis(300), conn.quinn().open_uni()).await;
    assert!(opened.is_err());
    assert_eq!(conn.request(b"bidi").await.unwrap(), b"bidi");
    conn.quinn().close(VarInt::from_u32(0), b"");
}

/// Connects with a hand-built client TLS configuration from a plain quinn
/// endpoint, and waits for the server's verdict like `Endpoint::connect`.
async fn raw_connect(
    server: &Endpoint,
    tls: rustls::ClientConfig,
) -> Result<quinn::Connection, TransportError> {
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let ep = quinn::Endpoint::client(localhost()).unwrap();
    let connecting = ep
        .connect_with(
            quinn::ClientConfig::new(Arc::new(quic)),
            server.local_addr().unwrap(),
            "pocnet.invalid",
        )
        .unwrap();
    let attempt = async {
        let conn = connecting
            .await
            .map_err(|e| crate::error::from_connection_error(&e, true))?;
        crate::endpoint::await_acceptance(&conn).await?;
        Ok(conn)
    };
    tokio::time::timeout(Duration::from_secs(20), attempt)
        .await
        .expect("no verdict from the server")
}

fn client_tls(presented: Arc<rustls::sign::CertifiedKey>) -> rustls::ClientConfig {
    crate::tls::client_config(
        &crate::tls::provider(),
        presented,
        authority(&[(&identity(1), "EST.cert")]),
        ALPN_NODE,
        identity(1).public(),
    )
    .unwrap()
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_claiming_a_known_key_without_its_secret_is_refused() {
    let (server, _errors) = echo_server(Limits::default());
    // Presents the known key of client 2, signs with key 9.
    let impostor = crate::tls::impostor_key(&identity(2).public(), &identity(9));
    let err = raw_connect(&server, client_tls(impostor))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeRefused { ref reason } if reason.contains("0x133")),
        "expected a decrypt_error alert: {err:?}"
    );
    // The genuine key still works; the impostor was never accepted.
    let genuine = crate::tls::certified_key(&identity(2)).unwrap();
    let conn = raw_connect(&server, client_tls(genuine)).await.unwrap();
    conn.close(VarInt::from_u32(0), b"");
    eventually(|| server.stats().handshakes_failed == 1).await;
    assert_eq!(server.stats().accepted, 1);
}

#[derive(Debug)]
struct NoKey;

impl rustls::client::ResolvesClientCert for NoKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
    fn only_raw_public_keys(&self) -> bool {
        true
    }
    fn has_certs(&self) -> bool {
        false
    }
}

/// Presents a known key but does not negotiate raw public keys (so the
/// SPKI would travel as an "X.509 certificate").
#[derive(Debug)]
struct NotRaw(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for NotRaw {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
    fn only_raw_public_keys(&self) -> bool {
        false
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_presenting_no_raw_key_is_refused() {
    let (server, _errors) = echo_server(Limits::default());
    let key = crate::tls::certified_key(&identity(2)).unwrap();

    let mut tls = client_tls(Arc::clone(&key));
    tls.client_auth_cert_resolver = Arc::new(NoKey);
    let err = raw_connect(&server, tls).await.unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeRefused { .. }),
        "{err:?}"
    );

    let mut tls = client_tls(Arc::clone(&key));
    tls.client_auth_cert_resolver = Arc::new(NotRaw(key));
    let err = raw_connect(&server, tls).await.unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeRefused { .. }),
        "{err:?}"
    );

    // The server counts a failure once its side of the handshake ends,
    // which may be a moment after the client has seen the alert.
    eventually(|| server.stats().handshakes_failed == 2).await;
    assert_eq!(server.stats().accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_claiming_the_expected_key_without_its_secret_is_refused() {
    // A raw quinn server presenting server 1's key but signing with key 9.
    let impostor = crate::tls::impostor_key(&identity(1).public(), &identity(9));
    let tls = crate::tls::server_config(
        &crate::tls::provider(),
        impostor,
        authority(&[(&identity(2), "FRA.cert")]),
        ALPN_NODE,
    )
    .unwrap();
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let fake = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(quic)),
        localhost(),
    )
    .unwrap();
    let fake_addr = fake.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = fake.accept().await {
            if let Ok(connecting) = incoming.accept() {
                let _ = connecting.await;
            }
        }
    });

    let auth = authority(&[(&identity(1), "EST.cert")]);
    let client = Endpoint::bind(
        localhost(),
        &identity(2),
        auth,
        ALPN_NODE,
        Limits::default(),
    )
    .unwrap();
    let err = client
        .connect(fake_addr, identity(1).public())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeRefused { ref reason } if reason.contains("0x133")),
        "expected a failed signature check: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_nobody_serves_are_held_to_the_receive_window() {
    // The server (the peer we dial, e.g. a relay or another State's node)
    // turns hostile: it opens request streams on the connection we opened,
    // where our side never calls accept_request.
    let auth = authority(&[(&identity(2), "FRA.cert")]);
    let server = Endpoint::bind(
        localhost(),
        &identity(1),
        auth,
        ALPN_NODE,
        Limits::default(),
    )
    .unwrap();
    let accepting = server.clone();
    let accepted = tokio::spawn(async move { accepting.accept().await.unwrap().unwrap() });
    let ours = client(2, &server).await;
    let theirs = accepted.await.unwrap();

    const STREAMS: usize = 24;
    let payload = vec![0x5a; 1 << 20];
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..STREAMS {
        let (conn, bytes, written) = (theirs.clone(), frame(&payload), written.clone());
        writers.push(tokio::spawn(async move {
            let (mut send, _recv) = conn.quinn().open_bi().await.unwrap();
            send.write_all(&bytes).await.unwrap();
            send.finish().unwrap();
            written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Keep the stream until the end of the test.
            std::future::pending::<()>().await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Nobody asked for requests: QUIC flow control (the connection's
    // receive window, about 8 MiB) stops the peer; nothing is read into
    // memory for nobody.
    let taken = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        taken <= 8,
        "{taken} MiB of requests nobody serves were taken from the peer"
    );

    // Once the application serves requests, they all arrive whole.
    for _ in 0..STREAMS {
        let request = tokio::time::timeout(Duration::from_secs(20), ours.accept_request())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(request.payload, payload);
    }
    for writer in writers {
        writer.abort();
    }
}
