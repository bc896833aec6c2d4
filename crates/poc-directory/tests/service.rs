//! The directory service end to end: real `poc-directory serve`, real pocd
//! nodes and the `poc` CLI on loopback, one shared test clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{Net, report_target};
use poc_control::{
    DirectoryEntryView, DirectoryStatusView, DirectorySyncView, OutboxView, PingView, Request,
    SendAccepted, SendRequest, ThreadSummary,
};
use poc_proto::certificate::CertificateBody;
use poc_proto::directory::{
    DirectoryEntry, SignedSnapshot, SnapshotBody, SnapshotDigest, StateEnrolment,
};
use poc_proto::keys::{IdentityKeyPair, StateRootKeyPair};
use poc_proto::message::{Handling, Inquiry, Language, Text};
use poc_proto::{Body, PocId, Role};
use poc_testnet::{built_binary, eventually, eventually_within, seed, state_of, state_root};

const EN: &[Language] = &[Language::English];
const FR: &[Language] = &[Language::French, Language::English];
const SW: &[Language] = &[Language::English, Language::Arabic];

fn six() -> Vec<(&'static str, Role, &'static [Language])> {
    vec![
        ("EST.cert", Role::Technical, EN),
        ("EST.mfa", Role::Diplomatic, EN),
        ("FRA.cert", Role::Technical, FR),
        ("FRA.mfa", Role::Diplomatic, FR),
        ("KEN.cert", Role::Technical, SW),
        ("KEN.mfa", Role::Diplomatic, SW),
    ]
}

fn inquiry(net: &Net, from: &str, to: &str) -> Result<SendAccepted, poc_control::ClientError> {
    net.try_call(
        from,
        &Request::Send(Box::new(SendRequest::new(
            PocId::new(to).unwrap(),
            Handling::Confidential,
            Body::Inquiry(Inquiry::new_minimal(Text::new(
                "Scanning from your networks",
            ))),
        ))),
    )
}

fn sync(net: &Net, id: &str) -> Result<DirectorySyncView, poc_control::ClientError> {
    net.try_call(id, &Request::DirectorySync { file: None })
}

fn sync_file(net: &Net, id: &str, bytes: &[u8]) -> Result<DirectorySyncView, String> {
    let path = net
        .path()
        .join(format!("offered-{}.snapshot", rand_suffix()));
    std::fs::write(&path, bytes).unwrap();
    net.try_call(
        id,
        &Request::DirectorySync {
            file: Some(path.display().to_string()),
        },
    )
    .map_err(|e| e.to_string())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The service's newest snapshot.
fn latest(net: &Net) -> SignedSnapshot {
    let bytes: Vec<u8> = net
        .service_db()
        .query_row(
            "SELECT bytes FROM snapshot ORDER BY sequence DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    SignedSnapshot::from_bytes(&bytes).unwrap()
}

/// What a compromised manager could publish: the newest snapshot's body
/// with `edit` applied, properly chained and signed by the manager key.
fn forged_successor(net: &Net, edit: impl FnOnce(&mut SnapshotBody)) -> SignedSnapshot {
    let held = latest(net);
    let dir = held.verify(&net.manager.public()).unwrap();
    let mut body = body_of(net, &held);
    body.sequence = dir.sequence() + 1;
    body.previous = held.digest();
    edit(&mut body);
    SignedSnapshot::sign(&body, &net.manager).unwrap()
}

/// Rebuilds the body of a snapshot from its verified content (the body is
/// not exposed decoded; entries keep their exact signed bytes).
fn body_of(net: &Net, snapshot: &SignedSnapshot) -> SnapshotBody {
    let dir = snapshot.verify(&net.manager.public()).unwrap();
    // Re-sign each entry's details unchanged: take them from the stored submissions.
    let conn = net.service_db();
    let mut stmt = conn
        .prepare("SELECT submission FROM entry ORDER BY poc_id")
        .unwrap();
    let submissions: Vec<Vec<u8>> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut entries: Vec<DirectoryEntry> = dir
        .entries()
        .values()
        .filter(|e| e.certificate.role() == Role::DirectoryManager)
        .map(|e| DirectoryEntry {
            certificate: e.certificate.certificate().clone(),
            prekeys: vec![],
            revoked: false,
            details: None,
        })
        .collect();
    for bytes in submissions {
        let s = poc_proto::directory::EntrySubmission::from_bytes(&bytes).unwrap();
        entries.push(DirectoryEntry {
            certificate: s.certificate,
            prekeys: vec![],
            revoked: false,
            details: Some(s.details),
        });
    }
    SnapshotBody {
        sequence: dir.sequence(),
        previous: dir.previous(),
        issued_at: dir.issued_at(),
        states: dir
            .states()
            .map(|s| StateEnrolment {
                state: s,
                root_key: *dir.state_root(s).unwrap(),
            })
            .collect(),
        entries,
    }
}

fn started(pocs: &[(&'static str, Role, &'static [Language])]) -> Net {
    let mut net = Net::new(pocs);
    net.publish_all();
    net.start_service();
    net
}

#[test]
fn three_states_enrol_submit_sync_and_message() {
    let mut net = started(&six());
    for id in ["EST.cert", "FRA.cert", "KEN.mfa", "FRA.mfa"] {
        net.start_node(id, true);
    }
    // EST.cert's node syncs from the service: already up to date.
    let view = sync(&net, "EST.cert").unwrap();
    assert_eq!(view.alerts, Vec::<String>::new());
    let status: DirectoryStatusView = net.call("EST.cert", &Request::DirectoryStatus);
    // Snapshot 1 lists the manager's ping identity; then 3 enrolments and
    // 6 submissions, one snapshot each.
    assert_eq!(status.sequence, 10);
    assert_eq!(
        status.entries, 7,
        "six PoCs and the manager's ping identity"
    );

    // Technical to technical across States works.
    let sent = inquiry(&net, "EST.cert", "FRA.cert").unwrap();
    eventually("the inquiry at FRA.cert", || {
        let inbox: Vec<ThreadSummary> = net.call("FRA.cert", &Request::Inbox);
        inbox
            .iter()
            .any(|t| t.thread_id == sent.thread_id)
            .then_some(())
    });

    // `poc directory list` filters by State, role and language.
    let out = net.poc_cli(
        "EST.cert",
        &["directory", "list", "--language", "fr", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<DirectoryEntryView> = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<_> = listed.iter().map(|e| e.poc_id.to_string()).collect();
    assert_eq!(ids, ["FRA.cert", "FRA.mfa"]);
    let out = net.poc_cli(
        "EST.cert",
        &[
            "directory",
            "list",
            "--state",
            "KEN",
            "--role",
            "diplomatic",
            "--json",
        ],
    );
    let listed: Vec<DirectoryEntryView> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].poc_id.as_str(), "KEN.mfa");
    assert_eq!(listed[0].email.as_deref(), Some("ken.mfa@example.invalid"));
    let out = net.poc_cli("EST.cert", &["directory", "show", "FRA.cert"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FRA national CERT") && text.contains("works in:   fr, en"),
        "{text}"
    );

    // The public overview: counts and mandate, no contact data.
    let overview = http_get(net.public_port, "/overview.json");
    assert!(
        overview.contains("\"participating_states\": 3"),
        "{overview}"
    );
    assert!(
        overview.contains("\"technical\": 3") && overview.contains("\"diplomatic\": 3"),
        "{overview}"
    );
    assert!(overview.contains("Annex A"));
    for secret in ["example.invalid", "+000", "Officer of", "127.0.0.1"] {
        assert!(
            !overview.contains(secret),
            "overview leaks {secret}: {overview}"
        );
    }
    assert!(http_get(net.public_port, "/").contains("Participating States: 3"));

    // A node that is not a participant cannot fetch snapshots: a key not in
    // the directory is refused at the handshake (no snapshot bytes leave).
    let outsider = IdentityKeyPair::from_secret_bytes(&seed("outsider"));
    assert!(fetch_as(&net, &outsider).is_err());
    let insider = IdentityKeyPair::from_secret_bytes(&seed("identity KEN.cert"));
    assert!(fetch_as(&net, &insider).is_ok());
}

/// Fetches the latest snapshot from the service with a raw client.
fn fetch_as(net: &Net, identity: &IdentityKeyPair) -> Result<Vec<u8>, String> {
    #[derive(Debug)]
    struct Any;
    impl poc_transport::PeerAuthority for Any {
        fn poc_for_key(&self, _: &poc_proto::keys::IdentityPublicKey) -> Option<PocId> {
            Some(PocId::new("UN.ping").unwrap())
        }
    }
    let dir = latest(net).verify(&net.manager.public()).unwrap();
    let service_key = dir
        .entries()
        .values()
        .find(|e| e.certificate.role() == Role::DirectoryManager)
        .unwrap()
        .certificate
        .body()
        .identity_key;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let endpoint = poc_transport::Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            identity,
            std::sync::Arc::new(Any),
            poc_transport::ALPN_DIRECTORY,
            {
                let mut l = poc_transport::Limits::default();
                l.max_response_frame = 64 * 1024 * 1024;
                l
            },
        )
        .unwrap();
        let conn = endpoint
            .connect(
                format!("127.0.0.1:{}", net.directory_port).parse().unwrap(),
                service_key,
            )
            .await
            .map_err(|e| e.to_string())?;
        let answer = conn
            .request(&poc_proto::directory::fetch::FetchRequest::Latest.encode())
            .await
            .map_err(|e| e.to_string())?;
        poc_proto::directory::fetch::decode_response(&answer).map(<[u8]>::to_vec)
    })
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn altered_rolled_back_and_forked_snapshots_are_refused_with_reasons() {
    let mut net = started(&six()[..4]);
    net.start_node("FRA.cert", true);
    let held = latest(&net);
    let held_dir = held.verify(&net.manager.public()).unwrap();

    // Altered signature: one byte of the signed snapshot flipped.
    let mut bytes = forged_successor(&net, |_| {}).to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = sync_file(&net, "FRA.cert", &bytes).unwrap_err();
    assert!(err.contains("does not verify"), "{err}");

    // Altered chain link.
    let bad_link = forged_successor(&net, |b| b.previous = SnapshotDigest([7; 32]));
    let err = sync_file(&net, "FRA.cert", &bad_link.to_bytes()).unwrap_err();
    assert!(err.contains("fork refused"), "{err}");

    // Altered entry signature: EST.cert's certificate signed by another key.
    let forged_cert = {
        let body: CertificateBody = net.poc("EST.cert").certificate.unverified_body().unwrap();
        poc_proto::certificate::PocCertificate::issue_by_state(
            &body,
            &StateRootKeyPair::from_secret_bytes(&[9; 32]),
        )
        .unwrap()
    };
    let altered = forged_successor(&net, |b| {
        for e in &mut b.entries {
            if e.certificate == net.poc("EST.cert").certificate {
                e.certificate = forged_cert.clone();
            }
        }
    });
    let view = sync_file(&net, "FRA.cert", &altered.to_bytes()).unwrap();
    assert_eq!(view.adopted, 1);
    assert!(
        view.rejected.iter().any(|r| r.contains("EST.cert")),
        "{:?}",
        view.rejected
    );
    assert!(
        view.alerts.is_empty(),
        "not FRA's own State: {:?}",
        view.alerts
    );
    let entries: Vec<DirectoryEntryView> = net.call("FRA.cert", &Request::DirectoryEntries);
    assert!(!entries.iter().any(|e| e.poc_id.as_str() == "EST.cert"));

    // Rollback: the snapshot before.
    let err = sync_file(&net, "FRA.cert", &held.to_bytes()).unwrap_err();
    assert!(err.contains("rollback refused"), "{err}");
    // Fork: a different snapshot with the same sequence number.
    let fork = {
        let mut body = body_of(&net, &held);
        body.sequence = held_dir.sequence() + 1;
        body.previous = held.digest();
        body.issued_at = body.issued_at.plus(poc_proto::Seconds(1));
        SignedSnapshot::sign(&body, &net.manager).unwrap()
    };
    let err = sync_file(&net, "FRA.cert", &fork.to_bytes()).unwrap_err();
    assert!(err.contains("fork refused"), "{err}");
    // The chain held is kept, and the refusals are on record as alerts.
    let status: DirectoryStatusView = net.call("FRA.cert", &Request::DirectoryStatus);
    assert_eq!(status.sequence, held_dir.sequence() + 1);
    assert_eq!(status.digest, altered.digest().to_string());
    assert!(
        status.alerts.iter().any(|a| a.contains("rollback")),
        "{:?}",
        status.alerts
    );
    assert!(
        status.alerts.iter().any(|a| a.contains("fork")),
        "{:?}",
        status.alerts
    );
    // Also through the CLI, with the reason.
    let path = net.path().join("old.snapshot");
    std::fs::write(&path, held.to_bytes()).unwrap();
    let out = net.poc_cli(
        "FRA.cert",
        &["directory", "sync", "--file", path.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rollback refused"));
}

#[test]
fn a_manager_cannot_swap_a_states_key_silently() {
    let mut net = started(&six()[..4]);
    net.start_node("EST.mfa", true);
    net.start_node("FRA.cert", true);

    // The manager submits a new key for EST.cert without EST's root: refused.
    let mut body: CertificateBody = net.poc("EST.cert").certificate.unverified_body().unwrap();
    body.identity_key = IdentityKeyPair::from_secret_bytes(&[5; 32]).public();
    let impostor = StateRootKeyPair::from_secret_bytes(&[6; 32]);
    let forged_cert =
        poc_proto::certificate::PocCertificate::issue_by_state(&body, &impostor).unwrap();
    let path = net.submission(
        "EST.cert",
        &net.details("EST.cert", 2, false),
        &forged_cert,
        &impostor,
        "forged",
    );
    let config = net.service_config.display().to_string();
    let out = net.directory_cli(&["submit", "--config", &config, path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not signed by EST's enrolled root key"),
        "{err}"
    );
    // Details signed by EST but a certificate signed by someone else: refused too.
    let path = net.submission(
        "EST.cert",
        &net.details("EST.cert", 2, false),
        &forged_cert,
        &state_root(state_of("EST")),
        "mixed",
    );
    let out = net.directory_cli(&["submit", "--config", &config, path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));

    // Forced into a snapshot anyway (a compromised manager writes the
    // service's database): nodes refuse the entry, EST's own node alerts.
    let forced = forged_successor(&net, |b| {
        for e in &mut b.entries {
            if e.certificate == net.poc("EST.cert").certificate {
                e.certificate = forged_cert.clone();
            }
        }
    });
    let dir = forced.verify(&net.manager.public()).unwrap();
    net.service_db()
        .execute(
            "INSERT INTO snapshot (sequence, digest, issued_at, bytes) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                i64::try_from(dir.sequence()).unwrap(),
                &forced.digest().0[..],
                0i64,
                forced.to_bytes()
            ],
        )
        .unwrap();
    let fra = eventually("FRA.cert to adopt the forced snapshot", || {
        sync(&net, "FRA.cert").ok().filter(|v| v.adopted == 1)
    });
    assert!(
        fra.rejected.iter().any(|r| r.contains("EST.cert")),
        "{:?}",
        fra.rejected
    );
    assert!(fra.alerts.is_empty());
    let est = sync(&net, "EST.mfa").unwrap();
    assert!(
        est.alerts
            .iter()
            .any(|a| a.contains("EST.cert") && a.contains("NOT signed by EST's root key")),
        "{:?}",
        est.alerts
    );
    let out = net.poc_cli("EST.mfa", &["directory", "status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("!!! ALERT"));
    // The node's record keeps the alert too.
    let log = std::fs::read_to_string(net.poc("EST.mfa").node.log()).unwrap();
    assert!(log.contains("directory ALERT"));

    // The manager replacing EST's root key is also raised at EST's node.
    let new_root = StateRootKeyPair::from_secret_bytes(&[8; 32]);
    let key_path = net.path().join("EST-new-root.pub");
    poc_keyfile::write_public(
        &key_path,
        poc_keyfile::KeyKind::StateRoot,
        Some("EST"),
        &new_root.public().to_bytes(),
    )
    .unwrap();
    // Without --replace the service refuses.
    let out = net.directory_cli(&[
        "enrol",
        "--config",
        &config,
        "--state",
        "EST",
        "--root-key",
        key_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already enrolled"));
    net.manager(&[
        "enrol",
        "--state",
        "EST",
        "--root-key",
        key_path.to_str().unwrap(),
        "--replace",
    ]);
    // EST's entries, signed by the old root, no longer verify: EST.mfa is
    // no longer a participant and the service refuses it; it gets the
    // snapshot as a file (e.g. from another State) and raises the alert.
    let snapshot = net.path().join("replaced.snapshot");
    net.manager(&["export", "--out", snapshot.to_str().unwrap()]);
    let est = sync_file(&net, "EST.mfa", &std::fs::read(&snapshot).unwrap()).unwrap();
    assert!(
        est.alerts.iter().any(|a| a.contains("REPLACED")),
        "{:?}",
        est.alerts
    );
}

#[test]
fn revoked_poc_is_refused_after_the_next_sync() {
    let mut net = started(&six()[..4]);
    net.start_node("EST.cert", true);
    net.start_node("FRA.cert", true);
    inquiry(&net, "FRA.cert", "EST.cert").unwrap();

    // EST revokes EST.cert (a State-signed revision 2).
    net.submit("EST.cert", 2, true);
    // FRA.cert syncs; EST.cert's node does not yet.
    let view = eventually("FRA.cert to sync the revocation", || {
        sync(&net, "FRA.cert").ok().filter(|v| v.adopted > 0)
    });
    assert_eq!(view.revoked, [PocId::new("EST.cert").unwrap()]);
    // Sending to it is refused.
    let err = inquiry(&net, "FRA.cert", "EST.cert")
        .unwrap_err()
        .to_string();
    assert!(err.contains("revoked"), "{err}");
    // What it sends is refused by FRA.cert.
    let sent = inquiry(&net, "EST.cert", "FRA.cert").unwrap();
    let item = eventually("EST.cert's delivery to be refused", || {
        let outbox: Vec<OutboxView> = net.call("EST.cert", &Request::Outbox);
        outbox
            .into_iter()
            .find(|o| o.message_id == sent.message_id && o.status == "failed")
    });
    assert!(item.last_error.unwrap_or_default().contains("refused"));
    // The service no longer lets the revoked PoC fetch snapshots.
    let err = sync(&net, "EST.cert").unwrap_err().to_string();
    assert!(err.contains("not in the peer's directory"), "{err}");
    // Once EST.cert's node has the snapshot, it knows it is revoked and sends nothing.
    let snapshot = net.path().join("revoked.snapshot");
    net.manager(&["export", "--out", snapshot.to_str().unwrap()]);
    sync_file(&net, "EST.cert", &std::fs::read(&snapshot).unwrap()).unwrap();
    let err = inquiry(&net, "EST.cert", "FRA.cert")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no longer active"), "{err}");
}

#[test]
fn ping_campaign_four_on_time_one_late_one_unreachable() {
    let mut net = started(&six());
    for id in ["EST.cert", "EST.mfa", "FRA.cert", "FRA.mfa"] {
        net.start_node(id, true);
    }
    // KEN.cert answers only when its operator acknowledges; KEN.mfa's node
    // is down for the whole campaign.
    net.start_node("KEN.cert", false);
    net.manager(&["campaign", "start"]);
    eventually("four replies", || {
        let r = net.campaign_report();
        (r["totals"]["replied"] == 4).then_some(())
    });
    // KEN.mfa's node is down: after the first failed attempt (10 s
    // handshake timeout) it counts as unreachable; delivery is still retried.
    eventually("KEN.mfa to count as unreachable", || {
        let r = net.campaign_report();
        (r["totals"]["unreachable"] == 1).then_some(())
    });
    // KEN.cert's operator sees the ping, unanswered.
    let pings: Vec<PingView> = eventually("the ping at KEN.cert", || {
        let p: Vec<PingView> = net.call("KEN.cert", &Request::Pings);
        (!p.is_empty()).then_some(p)
    });
    assert!(!pings[0].answered);
    assert_eq!(pings[0].from.as_str(), "UN.ping");

    // 40 hours later (past the reminder time, 12 h before the deadline):
    // KEN.cert is reminded.
    net.set_clock(40 * 3600);
    eventually("the reminder to KEN.cert", || {
        let r = net.campaign_report();
        r["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["poc_id"] == "KEN.cert" && !t["reminded_at"].is_null())
            .then_some(())
    });
    // 50 hours after the start, the deadline has passed; KEN.cert acks late.
    net.set_clock(50 * 3600);
    let out = net.poc_cli("KEN.cert", &["ping", "ack", &pings[0].campaign]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = eventually("the late reply", || {
        let r = net.campaign_report();
        (r["totals"]["replied_late"] == 1).then_some(r)
    });
    assert_eq!(r["totals"]["replied"], 4);
    assert_eq!(r["totals"]["unreachable"], 1);
    assert_eq!(r["totals"]["targets"], 6);
    assert!((r["totals"]["response_rate"].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-9);
    let line = |id: &str| report_target(&r, id);
    assert_eq!(line("KEN.cert")["outcome"], "replied-late");
    assert!(line("KEN.cert")["reply_after_seconds"].as_u64().unwrap() >= 50 * 3600);
    assert_eq!(line("KEN.mfa")["outcome"], "unreachable");
    assert_eq!(line("EST.cert")["outcome"], "replied");
    assert!(line("EST.cert")["reply_after_seconds"].as_u64().unwrap() < 3600);
    assert_eq!(r["by_state"]["KEN"]["replied_late"], 1);
    assert_eq!(r["by_role"]["diplomatic"]["unreachable"], 1);
    assert_eq!(r["non_responding_states"], serde_json::json!(["KEN"]));
    let text = net.manager(&["campaign", "report"]);
    assert!(
        text.contains("4 replied, 1 replied late (overdue), 0 overdue, 1 unreachable"),
        "{text}"
    );
    assert!(
        text.contains("Contact the competent authorities of: KEN"),
        "{text}"
    );

    // Six months on, the next campaign starts by itself.
    let first = r["campaign"].clone();
    net.set_clock(183 * 24 * 3600);
    let next = eventually("the next scheduled campaign", || {
        let r = net.campaign_report();
        (r["campaign"] != first && r["totals"]["replied"] == 4).then_some(r)
    });
    assert_eq!(next["totals"]["targets"], 6);
}

/// Runs the `poc` binary (offline ceremony commands).
fn poc(args: &[&str]) -> std::process::Output {
    std::process::Command::new(built_binary("poc"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_state_ceremony_with_the_cli_tools() {
    // The manager's configuration only (no PoC made by the harness).
    let net = Net::new(&[]);
    let p = |name: &str| net.path().join(name).display().to_string();
    // EST makes its root key, a PoC's keys and certificate, and signs its entry.
    ok(poc(&[
        "state",
        "init",
        "--state",
        "EST",
        "--out",
        &p("est"),
    ]));
    ok(poc(&[
        "init",
        "--poc",
        "EST.cert",
        "--role",
        "technical",
        "--endpoint",
        "127.0.0.1:7401",
        "--out",
        &p("est-cert"),
    ]));
    ok(poc(&[
        "state",
        "sign-cert",
        "--root-key",
        &p("est/state-root.key"),
        "--request",
        &p("est-cert/EST.cert.request.json"),
        "--out",
        &p("EST.cert.cert"),
    ]));
    let text = ok(poc(&[
        "state",
        "sign-entry",
        "--root-key",
        &p("est/state-root.key"),
        "--cert",
        &p("EST.cert.cert"),
        "--entity",
        "CERT-EE",
        "--email",
        "cert@example.invalid",
        "--works-in",
        "en,ru",
        "--out",
        &p("EST.cert.entry"),
    ]));
    assert!(text.contains("EST.cert entry revision 1"), "{text}");
    // Another State's root cannot sign EST's entry.
    ok(poc(&[
        "state",
        "init",
        "--state",
        "FRA",
        "--out",
        &p("fra"),
    ]));
    let out = poc(&[
        "state",
        "sign-entry",
        "--root-key",
        &p("fra/state-root.key"),
        "--cert",
        &p("EST.cert.cert"),
        "--entity",
        "x",
        "--out",
        &p("bad.entry"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed by this root key"));

    // The manager enrols EST (key received through its mission) and submits.
    let text = net.manager(&[
        "enrol",
        "--state",
        "EST",
        "--root-key",
        &p("est/state-root.pub"),
    ]);
    assert!(text.contains("EST enrolled"), "{text}");
    let text = net.manager(&["submit", &p("EST.cert.entry")]);
    assert!(
        text.contains("EST.cert: accepted.") && text.contains("snapshot 3 published"),
        "{text}"
    );
    // The same submission again is stale; a revocation needs revision 2.
    let config = net.service_config.display().to_string();
    let out = net.directory_cli(&["submit", "--config", &config, &p("EST.cert.entry")]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revision 1 is not newer than revision 1")
    );
    ok(poc(&[
        "state",
        "sign-entry",
        "--root-key",
        &p("est/state-root.key"),
        "--cert",
        &p("EST.cert.cert"),
        "--entity",
        "CERT-EE",
        "--revision",
        "2",
        "--revoke",
        "--out",
        &p("EST.cert.revoke"),
    ]));
    net.manager(&["submit", &p("EST.cert.revoke")]);
    // The exported snapshot verifies with the manager's public key and lists it revoked.
    net.manager(&["export", "--out", &p("directory.snapshot")]);
    let out = net.directory_cli(&[
        "show",
        &p("directory.snapshot"),
        "--manager-pub",
        &p("manager.pub"),
    ]);
    let text = ok(out);
    assert!(
        text.contains("EST.cert") && text.contains("REVOKED"),
        "{text}"
    );
}

#[test]
fn a_restarted_node_keeps_the_chain_it_synced() {
    let mut net = started(&six()[..2]);
    net.start_node("EST.cert", true);
    let first: DirectoryStatusView = net.call("EST.cert", &Request::DirectoryStatus);
    // A new revision of EST.mfa: snapshot first + 1; the node syncs it.
    net.submit("EST.mfa", 2, false);
    let view = eventually("the sync", || {
        sync(&net, "EST.cert").ok().filter(|v| v.adopted > 0)
    });
    assert_eq!(view.to_sequence, first.sequence + 1);
    // Restarted with the same (older) snapshot file in its configuration,
    // and the service down (so nothing comes from it), it keeps the newer
    // chain it synced, and refuses the old one.
    let mut service = net.service.take().unwrap();
    service.kill().unwrap();
    service.wait().unwrap();
    net.stop_node("EST.cert");
    net.start_node("EST.cert", true);
    let status: DirectoryStatusView = net.call("EST.cert", &Request::DirectoryStatus);
    assert_eq!(status.sequence, first.sequence + 1);
    let old = std::fs::read(net.path().join("directory.snapshot")).unwrap();
    let err = sync_file(&net, "EST.cert", &old).unwrap_err();
    assert!(err.contains("rollback refused"), "{err}");
}

#[test]
fn a_state_submits_its_entries_through_its_own_node() {
    let mut net = started(&six()[..4]);
    net.start_node("EST.cert", true);
    net.start_node("FRA.cert", true);
    // EST's root key holder signs a new revision of EST.mfa's details; the
    // EST.cert node sends it to the service.
    let mut details = net.details("EST.mfa", 2, false);
    details.phone = Some("+372 555 0100".into());
    let good = net.submission(
        "EST.mfa",
        &details,
        &net.poc("EST.mfa").certificate,
        &state_root(state_of("EST")),
        "net",
    );
    let out = net.poc_cli("EST.cert", &["directory", "submit", good.to_str().unwrap()]);
    let text = ok(out);
    assert!(text.contains("EST.mfa: accepted"), "{text}");
    // Everyone sees it at the next sync.
    eventually("FRA.cert to see the new phone number", || {
        sync(&net, "FRA.cert").ok()?;
        let entries: Vec<DirectoryEntryView> = net.call("FRA.cert", &Request::DirectoryEntries);
        entries
            .iter()
            .any(|e| e.poc_id.as_str() == "EST.mfa" && e.phone.as_deref() == Some("+372 555 0100"))
            .then_some(())
    });
    // A participant cannot change another State's entry: FRA's node sends
    // an entry for EST.mfa signed by FRA's root; the service refuses it.
    let mut forged = net.details("EST.mfa", 3, true);
    forged.entity = "hijacked".into();
    let bad = net.submission(
        "EST.mfa",
        &forged,
        &net.poc("EST.mfa").certificate,
        &state_root(state_of("FRA")),
        "forged",
    );
    let out = net.poc_cli("FRA.cert", &["directory", "submit", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not signed by EST's enrolled root key"),
        "{err}"
    );
}

#[test]
fn a_revocation_the_state_did_not_sign_is_alerted() {
    let mut net = started(&six()[..2]);
    net.start_node("EST.mfa", true);
    // The manager flags EST.cert revoked, with no revocation signed by EST.
    let flagged = forged_successor(&net, |b| {
        for e in &mut b.entries {
            if e.certificate == net.poc("EST.cert").certificate {
                e.revoked = true;
            }
        }
    });
    let view = sync_file(&net, "EST.mfa", &flagged.to_bytes()).unwrap();
    assert_eq!(view.revoked, [PocId::new("EST.cert").unwrap()]);
    assert!(
        view.alerts
            .iter()
            .any(|a| a.contains("EST.cert") && a.contains("without a revocation signed by EST")),
        "{:?}",
        view.alerts
    );
}

#[test]
fn a_states_revocation_cannot_be_lifted_by_the_manager() {
    let mut net = started(&six()[..2]);
    net.start_node("EST.mfa", true);
    // EST revokes EST.cert (State-signed revision 2); EST.mfa adopts it.
    net.submit("EST.cert", 2, true);
    let view = eventually("EST.mfa to sync the revocation", || {
        sync(&net, "EST.mfa").ok().filter(|v| v.adopted > 0)
    });
    assert_eq!(view.revoked, [PocId::new("EST.cert").unwrap()]);
    // The manager lists EST.cert again, without the State's details: an
    // attacker holding EST.cert's old key would be heard again.
    let lifted = forged_successor(&net, |b| {
        for e in &mut b.entries {
            if e.certificate == net.poc("EST.cert").certificate {
                e.details = None;
                e.revoked = false;
            }
        }
    });
    let err = sync_file(&net, "EST.mfa", &lifted.to_bytes()).unwrap_err();
    assert!(
        err.contains("undoes what the State of EST.cert signed")
            && err.contains("no State-signed details"),
        "{err}"
    );
    // The node keeps the chain it holds: EST.cert stays revoked.
    let err = inquiry(&net, "EST.mfa", "EST.cert")
        .unwrap_err()
        .to_string();
    assert!(err.contains("revoked"), "{err}");
    let status: DirectoryStatusView = net.call("EST.mfa", &Request::DirectoryStatus);
    assert!(
        status
            .alerts
            .iter()
            .any(|a| a.contains("bad snapshot") && a.contains("EST.cert")),
        "{:?}",
        status.alerts
    );
}

#[test]
fn a_revoked_poc_removed_and_listed_again_stays_revoked_across_a_restart() {
    let mut net = started(&six()[..2]);
    net.start_node("EST.mfa", true);
    net.submit("EST.cert", 2, true);
    eventually("EST.mfa to sync the revocation", || {
        sync(&net, "EST.mfa").ok().filter(|v| v.adopted > 0)
    });
    let est_cert = net.poc("EST.cert").certificate.clone();
    // The manager removes EST.cert (the node adopts that, with an alert)...
    let removed = forged_successor(&net, |b| b.entries.retain(|e| e.certificate != est_cert));
    let view = sync_file(&net, "EST.mfa", &removed.to_bytes()).unwrap();
    assert_eq!(view.adopted, 1);
    assert!(
        view.alerts
            .iter()
            .any(|a| a.contains("EST.cert") && a.contains("removed")),
        "{:?}",
        view.alerts
    );
    // ...the node restarts, with the service down...
    let mut service = net.service.take().unwrap();
    service.kill().unwrap();
    service.wait().unwrap();
    net.stop_node("EST.mfa");
    net.start_node("EST.mfa", true);
    // ...and the manager lists EST.cert again, without the State's details.
    let removed_dir = removed.verify(&net.manager.public()).unwrap();
    let mut again = body_of(&net, &latest(&net));
    again.sequence = removed_dir.sequence() + 1;
    again.previous = removed.digest();
    for e in &mut again.entries {
        if e.certificate == est_cert {
            e.details = None;
            e.revoked = false;
        }
    }
    let again = SignedSnapshot::sign(&again, &net.manager).unwrap();
    let err = sync_file(&net, "EST.mfa", &again.to_bytes()).unwrap_err();
    assert!(
        err.contains("undoes what the State of EST.cert signed") && err.contains("revision 2"),
        "{err}"
    );
    let status: DirectoryStatusView = net.call("EST.mfa", &Request::DirectoryStatus);
    assert_eq!(status.sequence, removed_dir.sequence());
}

#[test]
fn a_poc_reachable_only_through_a_relay_gets_its_ping_there_and_replies() {
    let mut net = Net::new(&six()[..3]);
    net.publish_all();
    // The manager's ping identity and the nodes share one relay.
    net.share_a_relay();
    net.start_service();
    net.start_node("EST.cert", true);
    net.start_node("EST.mfa", true);
    // FRA.cert's node is offline when the campaign starts: its ping waits,
    // sealed, in its relay mailbox.
    net.manager(&["campaign", "start"]);
    eventually("the ping to FRA.cert deposited at the relay", || {
        let r = net.campaign_report();
        (!report_target(&r, "FRA.cert")["delivered_at"].is_null()).then_some(())
    });
    assert_eq!(
        report_target(&net.campaign_report(), "FRA.cert")["outcome"],
        "awaiting"
    );
    let log = std::fs::read_to_string(net.path().join("service.log")).unwrap();
    assert!(
        log.contains("ping deposited at a relay") && log.contains("FRA.cert"),
        "{log}"
    );
    // FRA.cert comes back, takes the ping from the relay and answers it.
    net.start_node("FRA.cert", true);
    let r = eventually("three replies", || {
        let r = net.campaign_report();
        (r["totals"]["replied"] == 3).then_some(r)
    });
    assert_eq!(report_target(&r, "FRA.cert")["outcome"], "replied");
    assert_eq!(r["totals"]["unreachable"], 0);
}

#[test]
fn a_reply_that_cannot_reach_the_service_goes_through_the_relay_and_is_counted() {
    let mut net = Net::new(&six()[..3]);
    net.publish_all();
    net.share_a_relay();
    net.start_service();
    net.start_node("EST.cert", true);
    net.start_node("EST.mfa", true);
    // FRA.cert's operator answers by hand.
    net.start_node("FRA.cert", false);
    net.manager(&["campaign", "start"]);
    let pings: Vec<PingView> = eventually("the ping at FRA.cert", || {
        let p: Vec<PingView> = net.call("FRA.cert", &Request::Pings);
        (!p.is_empty()).then_some(p)
    });
    // The service goes down before FRA.cert answers: the reply cannot be
    // delivered directly, so FRA.cert's node deposits it at the relay, in
    // the ping identity's mailbox.
    net.stop_service();
    let out = net.poc_cli("FRA.cert", &["ping", "ack", &pings[0].campaign]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A killed service sends no close, and FRA.cert's node still holds a
    // connection to it: the reply goes to the relay once its request there
    // has timed out (the transport's 30 s; 30.06 s measured), so this step
    // must outwait that rather than race it with the usual 30 s.
    eventually_within(
        Duration::from_secs(90),
        "the reply deposited at the relay",
        || {
            let outbox: serde_json::Value = net.call("FRA.cert", &Request::Outbox);
            outbox
                .as_array()?
                .iter()
                .any(|e| {
                    e["kind"] == "ping reply"
                        && e["status"] == "delivered"
                        && e["delivered_via"]
                            .as_str()
                            .is_some_and(|v| v.contains("relay-un"))
                })
                .then_some(())
        },
    );
    // Back up, the service takes its mail from the relay and counts the
    // reply; the mailbox is emptied.
    net.start_service();
    let r = eventually("three replies", || {
        let r = net.campaign_report();
        (r["totals"]["replied"] == 3).then_some(r)
    });
    assert_eq!(report_target(&r, "FRA.cert")["outcome"], "replied");
    // The service logs the take once the relay has answered its
    // acknowledgement, which may come after the reply is counted.
    eventually("the service's log of the mail taken from the relay", || {
        let log = std::fs::read_to_string(net.path().join("service.log")).unwrap();
        log.contains("mail taken from relay").then_some(())
    });
}
