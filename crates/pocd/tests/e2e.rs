//! End-to-end tests of pocd: real processes, real QUIC on loopback, real
//! SQLite files, driven through the control socket as the `poc` CLI does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::Cluster;
use poc_control::{
    OutboxView, RecordVerifyView, Request, SendAccepted, SendRequest, StatusView, ThreadSummary,
    ThreadView,
};
use poc_proto::message::*;
use poc_proto::{Body, PocId, Role, Seconds, ThreadId};
use poc_testnet::{Daemon, eventually, now};

fn send(
    daemon: &Daemon,
    to: &str,
    thread: Option<ThreadId>,
    in_reply_to: Option<MessageId>,
    body: Body,
) -> SendAccepted {
    daemon.call(&Request::Send(Box::new(SendRequest {
        thread,
        in_reply_to,
        ..SendRequest::new(PocId::new(to).unwrap(), Handling::Tlp(Tlp::Amber), body)
    })))
}

fn inquiry() -> Body {
    let mut inquiry = Inquiry::new_minimal(Text::new("DDoS from addresses in your networks"));
    inquiry
        .incident
        .indicators
        .push(Indicator::Ip(IpAddress::V4([192, 0, 2, 17])));
    inquiry.time_sensitivity = TimeSensitivity {
        urgency: Urgency::Urgent,
        respond_by: Some(now().plus(Seconds::hours(4))),
    };
    Body::Inquiry(inquiry)
}

fn thread(daemon: &Daemon, id: ThreadId) -> Option<ThreadView> {
    daemon
        .client()
        .call::<ThreadView>(&Request::Thread { thread: id })
        .ok()
}

fn kinds(view: &ThreadView) -> Vec<(String, String)> {
    view.messages
        .iter()
        .map(|m| (m.direction.clone(), m.kind.clone()))
        .collect()
}

fn outbox(daemon: &Daemon) -> Vec<OutboxView> {
    daemon.call(&Request::Outbox)
}

/// Waits until `sent` is delivered in `daemon`'s outbox; its outbox entry.
fn delivered(daemon: &Daemon, sent: &SendAccepted, what: &str) -> OutboxView {
    eventually(what, || {
        outbox(daemon)
            .into_iter()
            .find(|o| o.message_id == sent.message_id && o.status == "delivered")
    })
}

fn verify(daemon: &Daemon) -> RecordVerifyView {
    daemon.call(&Request::RecordVerify)
}

#[test]
fn the_whole_appendix_flow_between_two_states() {
    let cluster = Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.cert", Role::Technical)],
        &[],
    );
    let est = cluster.start("EST.cert");
    let fra = cluster.start("FRA.cert");

    let sent = send(&est, "FRA.cert", None, None, inquiry());
    // The template reports what the minimal inquiry lacks, and it is sent anyway.
    assert!(
        sent.missing_fields
            .iter()
            .any(|f| f.contains("requester.name")),
        "{:?}",
        sent.missing_fields
    );

    // FRA's node records it and sends a neutral receipt back.
    let at_fra = eventually("the inquiry at FRA", || thread(&fra, sent.thread_id));
    assert_eq!(at_fra.messages[0].kind, "inquiry");
    eventually("the receipt at EST", || {
        thread(&est, sent.thread_id).filter(|t| t.summary.state.starts_with("receipted"))
    });

    // FRA: will consider, ETA 24 h.
    let response = Body::Response(Response {
        outcome: ResponseOutcome::WillFollowUp {
            eta: Some(now().plus(Seconds::hours(24))),
            note: Some(Text::new("Looking into it.")),
        },
        channel: Some(ChannelAgreement::Accept),
        lead_agency: Some("ANSSI".into()),
        attachments: vec![],
    });
    send(
        &fra,
        "EST.cert",
        Some(sent.thread_id),
        Some(sent.message_id),
        response,
    );
    eventually("the follow-up promise at EST", || {
        thread(&est, sent.thread_id).filter(|t| t.summary.state.starts_with("follow-up pending"))
    });
    let follow_up = Body::FollowUp(FollowUp {
        text: Text::new("Hosts cleaned."),
        indicators: vec![],
        next_update_eta: None,
        attachments: vec![],
    });
    send(
        &fra,
        "EST.cert",
        Some(sent.thread_id),
        Some(sent.message_id),
        follow_up,
    );
    eventually("the follow-up at EST", || {
        thread(&est, sent.thread_id).filter(|t| t.messages.iter().any(|m| m.kind == "follow-up"))
    });
    let close = Body::Close(Close {
        reason: CloseReason::Resolved,
        note: None,
    });
    send(
        &est,
        "FRA.cert",
        Some(sent.thread_id),
        Some(sent.message_id),
        close,
    );
    let at_fra = eventually("the close at FRA and every receipt home", || {
        let fra_view = thread(&fra, sent.thread_id)?;
        let est_view = thread(&est, sent.thread_id)?;
        (fra_view.summary.state.starts_with("closed")
            && fra_view.messages.len() == 8
            && est_view.messages.len() == 8)
            .then_some(fra_view)
    });
    let at_est = thread(&est, sent.thread_id).unwrap();

    // Both records hold the same eight messages (4 substantive + 4 receipts),
    // mirrored, and verify.
    let mirror = |d: &str| {
        if d == "sent" {
            "received".to_string()
        } else {
            "sent".to_string()
        }
    };
    let mut est_ids: Vec<_> = at_est
        .messages
        .iter()
        .map(|m| (m.message_id, m.direction.clone(), m.kind.clone()))
        .collect();
    let mut fra_ids: Vec<_> = at_fra
        .messages
        .iter()
        .map(|m| (m.message_id, mirror(&m.direction), m.kind.clone()))
        .collect();
    est_ids.sort_by_key(|(id, _, _)| *id);
    fra_ids.sort_by_key(|(id, _, _)| *id);
    assert_eq!(est_ids, fra_ids);
    assert_eq!(
        kinds(&at_est)
            .iter()
            .filter(|(_, k)| k == "receipt")
            .count(),
        4
    );
    for daemon in [&est, &fra] {
        let report = verify(daemon);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report.entries >= 8);
    }
    // Every outbox entry on both sides is delivered.
    for daemon in [&est, &fra] {
        assert!(
            outbox(daemon).iter().all(|o| o.status == "delivered"),
            "{:?}",
            outbox(daemon)
        );
    }
}

#[test]
fn a_diplomat_cannot_write_to_a_foreign_technical_poc() {
    let cluster = Cluster::new(
        &[("EST.mfa", Role::Diplomatic), ("FRA.cert", Role::Technical)],
        &[],
    );
    let est = cluster.start("EST.mfa");
    let err = est
        .client()
        .call::<SendAccepted>(&Request::Send(Box::new(SendRequest::new(
            PocId::new("FRA.cert").unwrap(),
            Handling::Confidential,
            inquiry(),
        ))))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("diplomatic PoCs write to diplomatic PoCs"),
        "{text}"
    );
}

#[test]
fn a_node_not_in_the_directory_is_refused_at_the_handshake() {
    let cluster = Cluster::new(
        &[("FRA.cert", Role::Technical), ("EST.cert", Role::Technical)],
        &[("KEN.cert", Role::Technical)],
    );
    let fra = cluster.start("FRA.cert");
    // KEN.cert is not listed: its own node will not even start without its
    // entry, so connect with its key directly over QUIC.
    let ken = cluster.poc("KEN.cert");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        #[derive(Debug)]
        struct Anyone;
        impl poc_transport::PeerAuthority for Anyone {
            fn poc_for_key(&self, _: &poc_proto::keys::IdentityPublicKey) -> Option<PocId> {
                PocId::new("FRA.cert").ok()
            }
        }
        let identity = poc_proto::keys::IdentityKeyPair::from_secret_bytes(&ken.identity);
        let endpoint = poc_transport::Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &identity,
            std::sync::Arc::new(Anyone),
            poc_transport::ALPN_NODE,
            poc_transport::Limits::default(),
        )
        .unwrap();
        let fra_setup = cluster.poc("FRA.cert");
        let fra_key =
            poc_proto::keys::IdentityKeyPair::from_secret_bytes(&fra_setup.identity).public();
        let result = async {
            let conn = endpoint
                .connect(
                    format!("127.0.0.1:{}", fra_setup.port).parse().unwrap(),
                    fra_key,
                )
                .await?;
            conn.request(b"hello").await
        }
        .await;
        assert!(result.is_err(), "an unlisted node got through");
    });
    // FRA keeps serving.
    let status: StatusView = fra.call(&Request::Status);
    assert_eq!(status.poc_id.as_str(), "FRA.cert");
}

#[test]
fn a_send_survives_kill_9_of_the_sender_and_is_delivered_once() {
    let cluster = Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.cert", Role::Technical)],
        &[],
    );
    // FRA is down: the message can only wait in EST's outbox.
    let est = cluster.start("EST.cert");
    let sent = send(&est, "FRA.cert", None, None, inquiry());
    eventually("a failed first attempt", || {
        outbox(&est)
            .into_iter()
            .find(|o| o.message_id == sent.message_id && o.attempts >= 1)
    });
    est.kill9();

    let fra = cluster.start("FRA.cert");
    let est = cluster.start("EST.cert");
    let entry = delivered(&est, &sent, "delivery after restart");
    assert_eq!(entry.delivered_via.as_deref(), Some("direct"));
    eventually("the receipt at EST", || {
        thread(&est, sent.thread_id).filter(|t| t.summary.state.starts_with("receipted"))
    });
    let inbox: Vec<ThreadSummary> = fra.call(&Request::Inbox);
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        thread(&fra, sent.thread_id)
            .unwrap()
            .messages
            .iter()
            .filter(|m| m.kind == "inquiry")
            .count(),
        1
    );
}

#[test]
fn a_receiver_crashing_after_recording_still_ends_with_exactly_one_message_and_one_receipt() {
    let cluster = Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.cert", Role::Technical)],
        &[],
    );
    // FRA aborts (like kill -9) right after committing the first received
    // message, before acknowledging it or sending its receipt.
    let fra = cluster.start_with_env("FRA.cert", &[("POCD_FAILPOINT", "abort-after-record")]);
    let est = cluster.start("EST.cert");
    let sent = send(&est, "FRA.cert", None, None, inquiry());
    fra.wait_exit();

    let fra = cluster.start("FRA.cert");
    delivered(&est, &sent, "delivery acknowledged after FRA restarts");
    let at_est = eventually("exactly one receipt at EST", || {
        thread(&est, sent.thread_id).filter(|t| t.messages.iter().any(|m| m.kind == "receipt"))
    });
    // Give any duplicate a chance to show up, then count.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let at_est = thread(&est, sent.thread_id).unwrap_or(at_est);
    assert_eq!(
        at_est
            .messages
            .iter()
            .filter(|m| m.kind == "receipt")
            .count(),
        1,
        "{:?}",
        kinds(&at_est)
    );
    let at_fra = thread(&fra, sent.thread_id).unwrap();
    assert_eq!(
        at_fra
            .messages
            .iter()
            .filter(|m| m.kind == "inquiry")
            .count(),
        1,
        "{:?}",
        kinds(&at_fra)
    );
    let inbox: Vec<ThreadSummary> = fra.call(&Request::Inbox);
    assert_eq!(inbox.len(), 1);
    assert!(verify(&fra).problems.is_empty());
}

#[test]
fn record_verify_names_an_edited_a_deleted_and_a_swapped_entry() {
    let cluster = Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.cert", Role::Technical)],
        &[],
    );
    let est = cluster.start("EST.cert");
    let fra = cluster.start("FRA.cert");
    for _ in 0..3 {
        send(&est, "FRA.cert", None, None, inquiry());
    }
    eventually("three receipts", || {
        let entries: Vec<ThreadSummary> = est.call(&Request::Inbox);
        (entries
            .iter()
            .filter(|t| t.state.starts_with("receipted"))
            .count()
            == 3)
            .then_some(())
    });
    drop(fra);
    est.kill9();
    let db = cluster.poc("EST.cert").node.database();
    let verify_after = |sql: &str| -> Vec<(u64, String)> {
        let backup = std::fs::read(&db).unwrap();
        {
            // An attacker with the file first drops the guard triggers and
            // turns off the outbox's reference to the record.
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("PRAGMA foreign_keys = OFF;").unwrap();
            let triggers: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            for trigger in triggers {
                conn.execute_batch(&format!("DROP TRIGGER {trigger};"))
                    .unwrap();
            }
            conn.execute_batch(sql).unwrap();
        }
        let daemon = cluster.start("EST.cert");
        let report = verify(&daemon);
        daemon.kill9();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        std::fs::write(&db, backup).unwrap();
        report
            .problems
            .into_iter()
            .map(|p| (p.seq, p.kind))
            .collect()
    };
    // Checkpoint so the raw file holds everything, then tamper in three ways.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let clean = verify_after("SELECT 1;");
    assert!(clean.is_empty(), "{clean:?}");
    let edited = verify_after("UPDATE record SET detail = 'edited' WHERE seq = 2;");
    assert!(
        edited
            .iter()
            .any(|(seq, kind)| *seq == 2 && kind.contains("edit")),
        "{edited:?}"
    );
    let deleted = verify_after("DELETE FROM record WHERE seq = 3;");
    assert!(
        deleted.iter().any(|(seq, _)| *seq == 3 || *seq == 4),
        "{deleted:?}"
    );
    let swapped = verify_after(
        "UPDATE record SET seq = -1 WHERE seq = 2; UPDATE record SET seq = 2 WHERE seq = 3; UPDATE record SET seq = 3 WHERE seq = -1;",
    );
    assert!(!swapped.is_empty(), "a swapped pair went unnoticed");
}

/// EST.cert, FRA.cert and KEN.cert, all listed and technical: KEN.cert
/// plays the hostile or unreachable peer.
fn three_technical_pocs() -> Cluster {
    Cluster::new(
        &[
            ("EST.cert", Role::Technical),
            ("FRA.cert", Role::Technical),
            ("KEN.cert", Role::Technical),
        ],
        &[],
    )
}

fn message_from(from: &str, to: &str, body: Body) -> poc_proto::Message {
    let mut rng = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rng).unwrap();
    poc_proto::Message {
        header: Header {
            sender: PocId::new(from).unwrap(),
            recipient: PocId::new(to).unwrap(),
            message_id: MessageId(rng),
            thread_id: ThreadId(rng),
            in_reply_to: None,
            created_at: now(),
            language: Language::English,
            handling: Handling::Confidential,
            exercise: None,
        },
        body,
    }
}

/// The daemon's answer: `Ok(())` accepted, `Err(code)` refused.
fn ack(answer: &[u8]) -> Result<(), u16> {
    match answer {
        [0] => Ok(()),
        [1, hi, lo] => Err(u16::from_be_bytes([*hi, *lo])),
        other => panic!("unintelligible acknowledgement {other:?}"),
    }
}

#[test]
fn a_peer_sending_garbage_cannot_fill_the_record() {
    use poc_proto::RejectCode;
    let cluster = three_technical_pocs();
    // FRA records at most 3 refusals per peer and minute.
    let fra_setup = cluster.poc("FRA.cert");
    poc_testnet::PocdConfig {
        tail: "\n[limits]\nrejections_recorded_per_minute = 3\n".into(),
        ..common::node_config("FRA.cert", fra_setup.port)
    }
    .write(&fra_setup.node)
    .unwrap();
    let fra = cluster.start("FRA.cert");
    let est = cluster.start("EST.cert");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ken = cluster.raw_client("KEN.cert", "FRA.cert").await;
        let garbage = vec![0xee; 64 * 1024];
        for _ in 0..10 {
            // Every one is refused with its reason, recorded or not.
            assert_eq!(
                ack(&ken.request(&garbage).await.unwrap()),
                Err(RejectCode::UnknownVersion.as_u16())
            );
        }
        // Another peer's refusals have their own budget.
        let est_conn = cluster.raw_client("EST.cert", "FRA.cert").await;
        assert_eq!(
            ack(&est_conn.request(b"not an envelope").await.unwrap()),
            Err(RejectCode::UnknownVersion.as_u16())
        );
        // And a well-behaved message goes through meanwhile.
        let sent = send(&est, "FRA.cert", None, None, inquiry());
        delivered(&est, &sent, "EST's inquiry delivered");
    });
    let entries: Vec<poc_control::RecordEntryView> = fra.call(&Request::RecordExport {
        after_seq: 0,
        limit: 1000,
    });
    let from = |peer: &str| -> Vec<&poc_control::RecordEntryView> {
        entries
            .iter()
            .filter(|e| {
                e.event == "rejected" && e.peer.as_ref().is_some_and(|p| p.as_str() == peer)
            })
            .collect()
    };
    let ken = from("KEN.cert");
    // Three whole, then one entry saying the budget is spent; six unrecorded.
    assert_eq!(ken.len(), 4, "{ken:?}");
    assert!(ken[..3].iter().all(|e| {
        e.envelope_hex
            .as_ref()
            .is_some_and(|h| h.len() == 2 * 64 * 1024)
    }));
    assert!(ken[3].envelope_hex.is_none());
    let note = ken[3].detail.as_deref().unwrap_or_default();
    assert!(
        note.contains("more than 3 refused envelopes within a minute"),
        "{note}"
    );
    assert_eq!(from("EST.cert").len(), 1);
}

#[test]
fn hostile_input_is_refused_recorded_and_does_not_disturb_others() {
    use poc_proto::RejectCode;
    let cluster = three_technical_pocs();
    let fra = cluster.start("FRA.cert");
    let est = cluster.start("EST.cert");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // KEN.cert is listed, so it may connect; everything it sends is hostile.
        let ken = cluster.raw_client("KEN.cert", "FRA.cert").await;
        let code = |c: RejectCode| Err(c.as_u16());

        // Garbage reads as an unknown version; garbage after a valid version is malformed.
        assert_eq!(
            ack(&ken.request(b"definitely not an envelope").await.unwrap()),
            code(RejectCode::UnknownVersion)
        );
        assert_eq!(
            ack(&ken.request(b"\x01\x00 and then nonsense").await.unwrap()),
            code(RejectCode::Malformed)
        );

        let oversize = vec![1u8; poc_transport::Limits::default().max_frame + 1];
        assert!(
            ken.request(&oversize).await.is_err(),
            "an oversize frame was read"
        );

        let good = cluster.seal(&message_from("KEN.cert", "FRA.cert", inquiry()));
        assert_eq!(
            ack(&ken.request(&good[..good.len() - 10]).await.unwrap()),
            code(RejectCode::Malformed)
        );

        let for_est = cluster.seal(&message_from("KEN.cert", "EST.cert", inquiry()));
        assert_eq!(
            ack(&ken.request(&for_est).await.unwrap()),
            code(RejectCode::WrongRecipient)
        );

        // A well-behaved node is served meanwhile.
        let sent = send(&est, "FRA.cert", None, None, inquiry());

        // KEN's own message, then KEN retrying it: acknowledged once, recorded once.
        assert_eq!(ack(&ken.request(&good).await.unwrap()), Ok(()));
        assert_eq!(ack(&ken.request(&good).await.unwrap()), Ok(()));
        // EST's message pushed again by KEN: a replay, refused.
        let est_msg = message_from("EST.cert", "FRA.cert", inquiry());
        let est_envelope = cluster.seal(&est_msg);
        let est_conn = cluster.raw_client("EST.cert", "FRA.cert").await;
        assert_eq!(ack(&est_conn.request(&est_envelope).await.unwrap()), Ok(()));
        assert_eq!(
            ack(&ken.request(&est_envelope).await.unwrap()),
            code(RejectCode::Replay)
        );

        delivered(&est, &sent, "EST's inquiry delivered despite the noise");
    });

    // Every refusal is in FRA's record, with its reason.
    let entries: Vec<poc_control::RecordEntryView> = fra.call(&Request::RecordExport {
        after_seq: 0,
        limit: 1000,
    });
    let rejected: Vec<_> = entries.iter().filter(|e| e.event == "rejected").collect();
    let details: Vec<&str> = rejected
        .iter()
        .filter_map(|e| e.detail.as_deref())
        .collect();
    assert_eq!(rejected.len(), 5, "{details:?}");
    assert!(
        details
            .iter()
            .any(|d| d.contains("unknown envelope version")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("truncated")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("another recipient")),
        "{details:?}"
    );
    assert!(details.iter().any(|d| d.contains("replay")), "{details:?}");
    // KEN's inquiry is in the inbox once.
    let inbox: Vec<ThreadSummary> = fra.call(&Request::Inbox);
    assert_eq!(
        inbox
            .iter()
            .filter(|t| t.peer.as_str() == "KEN.cert")
            .count(),
        1
    );
    assert!(verify(&fra).problems.is_empty());
}

#[test]
fn one_peer_cannot_take_every_connection_slot_of_a_node() {
    let cluster = three_technical_pocs();
    let _fra = cluster.start("FRA.cert");
    let est = cluster.start("EST.cert");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // KEN.cert is listed; it opens connection after connection and
        // keeps them (the client side's keep-alives hold them open).
        let per_peer = poc_transport::Limits::default().max_connections_per_peer;
        let mut held = Vec::new();
        for _ in 0..per_peer {
            held.push(cluster.raw_client("KEN.cert", "FRA.cert").await);
        }
        let err = cluster
            .try_raw_client("KEN.cert", "FRA.cert")
            .await
            .expect_err("a peer got more connections than its share");
        let reason = err.to_string();
        assert!(
            reason.contains("0x12") && reason.contains("too many connections"),
            "{reason}"
        );

        // What KEN already holds still works.
        let good = cluster.seal(&message_from("KEN.cert", "FRA.cert", inquiry()));
        assert_eq!(ack(&held[0].request(&good).await.unwrap()), Ok(()));
    });

    // Another State still gets through.
    let sent = send(&est, "FRA.cert", None, None, inquiry());
    eventually("EST's inquiry delivered directly", || {
        outbox(&est).into_iter().find(|o| {
            o.message_id == sent.message_id
                && o.status == "delivered"
                && o.delivered_via.as_deref() == Some("direct")
        })
    });
}

#[test]
fn an_oversize_control_request_is_refused_once_and_its_tail_is_never_run() {
    use std::io::{Read as _, Write as _};
    let cluster = Cluster::new(&[("EST.cert", Role::Technical)], &[]);
    let est = cluster.start("EST.cert");
    let max = poc_control::MAX_REQUEST_BYTES;
    let status = serde_json::to_vec(&Request::Status).unwrap();
    let answers = |line: &[u8]| {
        let mut caller = std::os::unix::net::UnixStream::connect(est.socket()).unwrap();
        caller.write_all(line).unwrap();
        caller.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        caller.read_to_string(&mut answer).unwrap();
        answer.lines().map(str::to_owned).collect::<Vec<_>>()
    };

    // One line longer than the limit, whose tail is a request of its own:
    // one refusal naming the limit, and the tail is not run as a request.
    let mut oversize = vec![b' '; max + 1];
    oversize.extend_from_slice(&status);
    oversize.push(b'\n');
    let got = answers(&oversize);
    assert_eq!(got.len(), 1, "one line, one answer: {got:?}");
    assert!(
        got[0].contains("request too large") && got[0].contains(&max.to_string()),
        "{got:?}"
    );

    // A request of exactly the limit is served.
    let mut exact = vec![b' '; max - status.len()];
    exact.extend_from_slice(&status);
    exact.push(b'\n');
    let got = answers(&exact);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("{\"ok\":"), "{got:?}");
}

#[test]
fn a_second_daemon_on_the_same_data_directory_refuses_to_start() {
    let cluster = Cluster::new(&[("EST.cert", Role::Technical)], &[]);
    let _first = cluster.start("EST.cert");
    // Only the operator's account can reach the node's state and socket.
    use std::os::unix::fs::PermissionsExt;
    let poc = cluster.poc("EST.cert");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&poc.node.data()), 0o700);
    assert_eq!(mode(&poc.node.socket()), 0o600);
    assert_eq!(mode(&poc.node.database()), 0o600);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pocd"))
        .arg("--config")
        .arg(cluster.poc("EST.cert").node.config())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
}

#[test]
fn bad_configuration_and_exposed_key_files_are_named() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::new(&[("EST.cert", Role::Technical)], &[]);
    let poc = cluster.poc("EST.cert");
    let run = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pocd"))
            .arg("--config")
            .arg(poc.node.config())
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let key = poc.node.identity_key();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = run();
    assert!(
        stderr.contains("chmod 600") && stderr.contains("identity.key"),
        "{stderr}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(poc.node.config(), "[node]\npoc_id = 'EST.cert'\n").unwrap();
    let stderr = run();
    assert!(
        stderr.contains("pocd.toml") && stderr.contains("not a valid pocd configuration"),
        "{stderr}"
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_pocd"))
        .args(["--config", "/nonexistent/pocd.toml"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read the configuration file")
    );
}

#[test]
fn an_unmet_respond_by_time_is_reported_and_alerted() {
    let cluster = Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.cert", Role::Technical)],
        &[],
    );
    let est = cluster.start("EST.cert");
    let _fra = cluster.start("FRA.cert");
    let mut inquiry = Inquiry::new_minimal(Text::new("Respond within two seconds"));
    inquiry.time_sensitivity = TimeSensitivity {
        urgency: Urgency::Urgent,
        respond_by: Some(now().plus(Seconds(2))),
    };
    let sent = send(&est, "FRA.cert", None, None, Body::Inquiry(inquiry));
    let overdue = eventually("the overdue respond-by in status", || {
        let status: StatusView = est.call(&Request::Status);
        status
            .overdue
            .into_iter()
            .find(|(thread, _)| *thread == sent.thread_id)
    });
    assert_eq!(overdue.1.kind, "respond-by");
    assert_eq!(overdue.1.owed_by.as_str(), "FRA.cert");
    eventually("the alert in the log", || {
        let log = std::fs::read_to_string(est.log()).unwrap_or_default();
        log.contains("deadline overdue").then_some(())
    });
}

#[test]
fn an_unreachable_peer_does_not_hold_up_deliveries_to_others() {
    let cluster = three_technical_pocs();
    // KEN's address swallows packets and never answers: its handshake can
    // only end by timing out.
    let _black_hole =
        std::net::UdpSocket::bind(("127.0.0.1", cluster.poc("KEN.cert").port)).unwrap();
    let est = cluster.start("EST.cert");
    let _fra = cluster.start("FRA.cert");
    let to_ken = send(&est, "KEN.cert", None, None, inquiry());
    let to_fra = send(&est, "FRA.cert", None, None, inquiry());
    delivered(&est, &to_fra, "delivery to FRA");
    let ken = outbox(&est)
        .into_iter()
        .find(|o| o.message_id == to_ken.message_id)
        .unwrap();
    assert_eq!(ken.status, "pending");
    assert_eq!(
        ken.attempts, 0,
        "FRA waited for KEN's handshake to fail: {ken:?}"
    );
}
