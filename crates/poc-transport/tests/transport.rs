//! Integration tests of the QUIC transport over real sockets on 127.0.0.1.
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
use poc_transport::{
    ALPN_NODE, ALPN_RELAY, Connection, Endpoint, Limits, PeerAuthority, StreamErrorCode,
    TransportError,
};
use tokio::sync::mpsc;

/// A directory view backed by a map, changeable at runtime.
#[derive(Debug, Default)]
struct TestAuthority(Mutex<HashMap<IdentityPublicKey, PocId>>);

impl TestAuthority {
    fn with(entries: &[(&IdentityKeyPair, &str)]) -> Arc<Self> {
        let auth = Arc::new(Self::default());
        for (key, id) in entries {
            auth.insert(key, id);
        }
        auth
    }
    fn insert(&self, key: &IdentityKeyPair, id: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(key.public(), PocId::new(id).unwrap());
    }
    fn remove(&self, key: &IdentityKeyPair) {
        self.0.lock().unwrap().remove(&key.public());
    }
}

impl PeerAuthority for TestAuthority {
    fn poc_for_key(&self, key: &IdentityPublicKey) -> Option<PocId> {
        self.0.lock().unwrap().get(key).cloned()
    }
}

fn identity(n: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(&[n; 32])
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn bind(id: &IdentityKeyPair, auth: &Arc<TestAuthority>, limits: Limits) -> Endpoint {
    let auth: Arc<dyn PeerAuthority> = auth.clone();
    Endpoint::bind(localhost(), id, auth, ALPN_NODE, limits).unwrap()
}

/// Answers every request on `conn` with "<tag>:" + payload; reports refused
/// request streams on `errors`.
fn serve_connection(
    conn: Connection,
    tag: &'static str,
    errors: mpsc::UnboundedSender<TransportError>,
) {
    tokio::spawn(async move {
        while let Some(req) = conn.accept_request().await {
            match req {
                Ok(req) => {
                    tokio::spawn(async move {
                        let mut answer = tag.as_bytes().to_vec();
                        answer.push(b':');
                        answer.extend_from_slice(&req.payload);
                        let _ = req.respond(&answer).await;
                    });
                }
                Err(e) => {
                    let _ = errors.send(e);
                }
            }
        }
    });
}

/// Accepts connections on `ep` and serves them; each accepted peer is
/// reported on the returned channel.
fn serve(
    ep: &Endpoint,
) -> (
    mpsc::UnboundedReceiver<Connection>,
    mpsc::UnboundedReceiver<TransportError>,
) {
    let (conn_tx, conn_rx) = mpsc::unbounded_channel();
    let (err_tx, err_rx) = mpsc::unbounded_channel();
    let ep = ep.clone();
    tokio::spawn(async move {
        while let Some(conn) = ep.accept().await {
            let conn = conn.unwrap();
            serve_connection(conn.clone(), "server", err_tx.clone());
            let _ = conn_tx.send(conn);
        }
    });
    (conn_rx, err_rx)
}

struct Pair {
    server_id: IdentityKeyPair,
    client_id: IdentityKeyPair,
    server_auth: Arc<TestAuthority>,
    client_auth: Arc<TestAuthority>,
    server: Endpoint,
    client: Endpoint,
}

fn pair(server_limits: Limits, client_limits: Limits) -> Pair {
    let server_id = identity(1);
    let client_id = identity(2);
    let server_auth = TestAuthority::with(&[(&client_id, "FRA.cert")]);
    let client_auth = TestAuthority::with(&[(&server_id, "EST.cert")]);
    let server = bind(&server_id, &server_auth, server_limits);
    let client = bind(&client_id, &client_auth, client_limits);
    Pair {
        server_id,
        client_id,
        server_auth,
        client_auth,
        server,
        client,
    }
}

async fn next_conn(rx: &mut mpsc::UnboundedReceiver<Connection>) -> Connection {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("server accepted nothing")
        .expect("accept loop ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_response_both_directions_on_one_connection() {
    let p = pair(Limits::default(), Limits::default());
    let (mut accepted, _errors) = serve(&p.server);
    let addr = p.server.local_addr().unwrap();

    let conn = p.client.connect(addr, p.server_id.public()).await.unwrap();
    assert_eq!(conn.peer().as_str(), "EST.cert");
    assert_eq!(conn.peer_key(), p.server_id.public());
    assert_eq!(conn.remote_address(), addr);
    let (tx, _client_errors) = mpsc::unbounded_channel();
    serve_connection(conn.clone(), "client", tx);

    // Client -> server.
    assert_eq!(conn.request(b"hello").await.unwrap(), b"server:hello");
    assert_eq!(conn.request(b"").await.unwrap(), b"server:");

    // Server -> client on the same connection.
    let server_side = next_conn(&mut accepted).await;
    assert_eq!(server_side.peer().as_str(), "FRA.cert");
    assert_eq!(server_side.peer_key(), p.client_id.public());
    assert_eq!(server_side.remote_address(), p.client.local_addr().unwrap());
    assert_eq!(server_side.request(b"ping").await.unwrap(), b"client:ping");

    assert!(!conn.is_closed());
    conn.close();
    assert!(conn.is_closed());
    assert!(matches!(
        conn.request(b"after close").await,
        Err(TransportError::Closed | TransportError::ConnectionLost { .. })
    ));
    // The server side learns that the connection ended.
    let reason = tokio::time::timeout(Duration::from_secs(10), server_side.closed())
        .await
        .unwrap();
    assert!(
        matches!(reason, TransportError::ConnectionLost { .. }),
        "{reason:?}"
    );
    assert!(server_side.accept_request().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_request_within_the_limit_is_delivered() {
    let p = pair(Limits::default(), Limits::default());
    let addr = p.server.local_addr().unwrap();
    let server = p.server.clone();
    let handler = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().unwrap();
        let req = conn.accept_request().await.unwrap().unwrap();
        let len = req.payload.len();
        let ok = req.payload.iter().all(|&b| b == 0xa5);
        req.respond(&(len as u64).to_be_bytes()).await.unwrap();
        assert!(ok);
        conn
    });
    let conn = p.client.connect(addr, p.server_id.public()).await.unwrap();
    let max = Limits::default().max_frame;
    let reply = conn.request(&vec![0xa5; max]).await.unwrap();
    assert_eq!(reply, (max as u64).to_be_bytes());
    let _server_conn = handler.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_on_one_connection() {
    let p = pair(Limits::default(), Limits::default());
    let (_accepted, _errors) = serve(&p.server);
    let conn = p
        .client
        .connect(p.server.local_addr().unwrap(), p.server_id.public())
        .await
        .unwrap();

    // More requests than the 64 concurrent streams a peer may open: the
    // excess waits for stream credit instead of failing.
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let payload = format!("request {i}").into_bytes();
            let reply = conn.request(&payload).await.unwrap();
            assert_eq!(reply, [b"server:".as_slice(), &payload].concat());
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_is_refused_during_the_handshake() {
    let p = pair(Limits::default(), Limits::default());
    let (mut accepted, _errors) = serve(&p.server);
    let addr = p.server.local_addr().unwrap();

    // A stranger: it knows the server, the server does not know it.
    let stranger_id = identity(66);
    let stranger_auth = TestAuthority::with(&[(&p.server_id, "EST.cert")]);
    let stranger = bind(&stranger_id, &stranger_auth, Limits::default());
    let err = stranger
        .connect(addr, p.server_id.public())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeRefused { ref reason } if reason.contains("access_denied")),
        "{err:?}"
    );

    // The server keeps serving a good client, and the first connection its
    // accept loop yields is that good client, not the stranger.
    let conn = p.client.connect(addr, p.server_id.public()).await.unwrap();
    assert_eq!(
        conn.request(b"still there?").await.unwrap(),
        b"server:still there?"
    );
    let first = next_conn(&mut accepted).await;
    assert_eq!(first.peer_key(), p.client_id.public());
    assert_eq!(p.server.stats().accepted, 1);
    // Counted when the server's side of the handshake ends, which may be a
    // moment after the stranger saw the alert.
    for _ in 0..400 {
        if p.server.stats().handshakes_failed >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(p.server.stats().handshakes_failed, 1);
    assert!(accepted.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_refuses_a_server_with_another_key() {
    let p = pair(Limits::default(), Limits::default());
    let (_accepted, _errors) = serve(&p.server);
    let addr = p.server.local_addr().unwrap();

    // The client expects someone else at this address (a directory entry
    // it knows), but the server proves a different key.
    let other = identity(3);
    p.client_auth.insert(&other, "DEU.cert");
    let err = p.client.connect(addr, other.public()).await.unwrap_err();
    match err {
        TransportError::WrongPeerKey {
            expected,
            presented,
        } => {
            assert_eq!(expected, other.public());
            assert_eq!(presented, Some(p.server_id.public()));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The server saw a failed handshake, not a connection.
    assert_eq!(p.server.stats().accepted, 0);

    // A key the client's directory does not know is not even dialled.
    let unknown = identity(4);
    let err = p.client.connect(addr, unknown.public()).await.unwrap_err();
    assert!(
        matches!(err, TransportError::PeerNotInDirectory { key } if key == unknown.public()),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_with_different_alpn_do_not_connect() {
    let p = pair(Limits::default(), Limits::default());
    let (_accepted, _errors) = serve(&p.server);
    let auth: Arc<dyn PeerAuthority> = p.client_auth.clone();
    let relay_client = Endpoint::bind(
        localhost(),
        &p.client_id,
        auth,
        ALPN_RELAY,
        Limits::default(),
    )
    .unwrap();
    let err = relay_client
        .connect(p.server.local_addr().unwrap(), p.server_id.public())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeRefused { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_changes_apply_to_the_next_handshake() {
    let p = pair(Limits::default(), Limits::default());
    let (_accepted, _errors) = serve(&p.server);
    let addr = p.server.local_addr().unwrap();

    let first = p.client.connect(addr, p.server_id.public()).await.unwrap();
    assert_eq!(first.request(b"1").await.unwrap(), b"server:1");

    // The server's directory drops the client: the next handshake fails
    // (no session resumption can bypass the check).
    p.server_auth.remove(&p.client_id);
    let err = p
        .client
        .connect(addr, p.server_id.public())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeRefused { .. }),
        "{err:?}"
    );

    // Back in the directory: accepted again.
    p.server_auth.insert(&p.client_id, "FRA.cert");
    let again = p.client.connect(addr, p.server_id.public()).await.unwrap();
    assert_eq!(again.request(b"2").await.unwrap(), b"server:2");

    // The client's directory drops the server: refused before dialling.
    p.client_auth.remove(&p.server_id);
    let err = p
        .client
        .connect(addr, p.server_id.public())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::PeerNotInDirectory { .. }),
        "{err:?}"
    );

    // Established connections are not re-checked (the daemon closes them
    // when it revokes a peer).
    assert_eq!(first.request(b"3").await.unwrap(), b"server:3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frames_are_refused_and_the_connection_survives() {
    let mut server_limits = Limits::default();
    server_limits.max_frame = 1024;
    server_limits.max_response_frame = 1024 * 1024;
    let mut client_limits = Limits::default();
    client_limits.max_response_frame = 100;
    let p = pair(server_limits, client_limits);
    let (_accepted, mut errors) = serve(&p.server);
    let conn = p
        .client
        .connect(p.server.local_addr().unwrap(), p.server_id.public())
        .await
        .unwrap();

    // Within the client's own limit, beyond the server's: the server reads
    // the length, refuses, and resets the stream.
    let err = conn.request(&vec![1; 200_000]).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::RefusedByPeer {
                code: StreamErrorCode::FrameTooLarge
            }
        ),
        "{err:?}"
    );
    let reported = tokio::time::timeout(Duration::from_secs(10), errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            reported,
            TransportError::FrameTooLarge {
                len: 200_000,
                max: 1024
            }
        ),
        "{reported:?}"
    );

    // The same connection serves the next request.
    assert_eq!(conn.request(b"next").await.unwrap(), b"server:next");

    // Beyond the client's own limit: refused locally, nothing sent.
    let err = conn
        .request(&vec![1; Limits::default().max_frame + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::FrameTooLarge { .. }),
        "{err:?}"
    );

    // A response larger than the client accepts is refused by the client.
    let err = conn.request(&[7; 200]).await.unwrap_err();
    assert!(
        matches!(err, TransportError::FrameTooLarge { len: 207, max: 100 }),
        "{err:?}"
    );
    assert_eq!(conn.request(b"fine").await.unwrap(), b"server:fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_and_slow_requests_fail_cleanly() {
    let mut limits = Limits::default();
    limits.stream_timeout = Duration::from_secs(1);
    let p = pair(Limits::default(), limits);
    let addr = p.server.local_addr().unwrap();
    let server = p.server.clone();
    tokio::spawn(async move {
        let conn = server.accept().await.unwrap().unwrap();
        // First request: dropped unanswered. Second: never answered.
        let first = conn.accept_request().await.unwrap().unwrap();
        drop(first);
        let _second = conn.accept_request().await.unwrap().unwrap();
        let third = conn.accept_request().await.unwrap().unwrap();
        third.respond(b"third").await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let conn = p.client.connect(addr, p.server_id.public()).await.unwrap();
    let err = conn.request(b"first").await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::RefusedByPeer {
                code: StreamErrorCode::NoResponse
            }
        ),
        "{err:?}"
    );
    let err = conn.request(b"second").await.unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    assert_eq!(conn.request(b"third").await.unwrap(), b"third");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_per_address_are_rate_limited() {
    let mut server_limits = Limits::default();
    server_limits.handshakes_per_second_per_ip = 1;
    server_limits.handshake_burst_per_ip = 3;
    let p = pair(server_limits, Limits::default());
    let (_accepted, _errors) = serve(&p.server);
    let addr = p.server.local_addr().unwrap();

    let mut ok = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        match p.client.connect(addr, p.server_id.public()).await {
            Ok(conn) => ok.push(conn),
            Err(TransportError::HandshakeRefused { reason }) => {
                assert!(reason.contains("0x2"), "{reason}");
                refused += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(ok.len() >= 3, "the burst is admitted");
    assert!(refused >= 1, "the excess is refused");
    assert!(p.server.stats().refused_rate_limited >= 1);
    assert!(
        p.server.stats().retries_sent >= 10,
        "addresses are validated first"
    );

    // Connections already up are unaffected, and once the bucket refills a
    // new attempt succeeds.
    assert_eq!(ok[0].request(b"up").await.unwrap(), b"server:up");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = p.client.connect(addr, p.server_id.public()).await.unwrap();
    assert_eq!(later.request(b"later").await.unwrap(), b"server:later");
}

/// Connects `p.client` to `addr`, retrying while the server refuses (a
/// closed connection's slot is free once the server has seen the close).
async fn connect_once_a_slot_frees(p: &Pair, addr: SocketAddr) -> Connection {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match p.client.connect(addr, p.server_id.public()).await {
            Ok(c) => return c,
            Err(TransportError::HandshakeRefused { .. }) if attempts < 50 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_are_capped() {
    let mut server_limits = Limits::default();
    server_limits.max_connections = 2;
    let p = pair(server_limits, Limits::default());
    let (_accepted, _errors) = serve(&p.server);
    let addr = p.server.local_addr().unwrap();

    let a = p.client.connect(addr, p.server_id.public()).await.unwrap();
    let b = p.client.connect(addr, p.server_id.public()).await.unwrap();
    let err = p
        .client
        .connect(addr, p.server_id.public())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::HandshakeRefused { .. }),
        "{err:?}"
    );
    assert_eq!(p.server.stats().refused_capacity, 1);

    // Closing one frees its slot once the server has seen the close.
    a.close();
    let c = connect_once_a_slot_frees(&p, addr).await;
    assert_eq!(b.request(b"b").await.unwrap(), b"server:b");
    assert_eq!(c.request(b"c").await.unwrap(), b"server:c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_endpoint_ends_accept_and_connections() {
    let p = pair(Limits::default(), Limits::default());
    let addr = p.server.local_addr().unwrap();
    let server = p.server.clone();
    let accepting = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().unwrap();
        let next = server.accept().await;
        (conn, next.is_none())
    });
    let conn = p.client.connect(addr, p.server_id.public()).await.unwrap();
    // Wait until the server has taken the connection, then close it all.
    while p.server.stats().accepted == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    p.server.close();
    let (server_conn, ended) = accepting.await.unwrap();
    assert!(ended, "accept returns None after close");
    let reason = tokio::time::timeout(Duration::from_secs(10), server_conn.closed())
        .await
        .unwrap();
    assert!(matches!(reason, TransportError::Closed), "{reason:?}");
    assert!(server_conn.is_closed());
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(reason, TransportError::ConnectionLost { .. }),
        "{reason:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), p.server.wait_idle())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_limits_are_rejected() {
    let mut limits = Limits::default();
    limits.keep_alive_interval = limits.idle_timeout;
    let auth: Arc<dyn PeerAuthority> = TestAuthority::with(&[]);
    let err = Endpoint::bind(localhost(), &identity(1), auth, ALPN_NODE, limits).unwrap_err();
    assert!(matches!(err, TransportError::Config(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_take_every_inbound_slot() {
    // Nine slots in all. One directory member opens as many connections as
    // it can and keeps them; another member must still get in.
    let mut server_limits = Limits::default();
    server_limits.max_connections = 9;
    let p = pair(server_limits, Limits::default());
    let other_id = identity(3);
    p.server_auth.insert(&other_id, "KEN.cert");
    let other_auth = TestAuthority::with(&[(&p.server_id, "EST.cert")]);
    let other = bind(&other_id, &other_auth, Limits::default());
    let (_accepted, _errors) = serve(&p.server);
    let addr = p.server.local_addr().unwrap();

    let per_peer = Limits::default().max_connections_per_peer;
    assert!(
        per_peer < 9,
        "the test needs the per-peer cap below the total"
    );
    let mut held = Vec::new();
    for _ in 0..per_peer {
        held.push(p.client.connect(addr, p.server_id.public()).await.unwrap());
    }
    let err = p
        .client
        .connect(addr, p.server_id.public())
        .await
        .unwrap_err();
    match &err {
        TransportError::HandshakeRefused { reason } => assert!(
            reason.contains("0x12") && reason.contains("too many connections"),
            "{reason}"
        ),
        other => panic!("expected a refusal naming the limit, got {other:?}"),
    }
    assert_eq!(p.server.stats().refused_peer_limit, 1);

    // The other member still connects, and the first one's connections work.
    let fine = other.connect(addr, p.server_id.public()).await.unwrap();
    assert_eq!(fine.request(b"other").await.unwrap(), b"server:other");
    for (i, conn) in held.iter().enumerate() {
        let payload = format!("held {i}");
        let mut expected = b"server:".to_vec();
        expected.extend_from_slice(payload.as_bytes());
        assert_eq!(conn.request(payload.as_bytes()).await.unwrap(), expected);
    }

    // Closing one of the first member's connections gives it its slot back.
    held.pop().unwrap().close();
    let again = connect_once_a_slot_frees(&p, addr).await;
    assert_eq!(again.request(b"again").await.unwrap(), b"server:again");
}
