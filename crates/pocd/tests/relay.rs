//! pocd with relays, end to end: real pocd and poc-relay processes, real
//! QUIC on loopback, real SQLite files.
//!
//! Build the relay binary first: `cargo build -p poc-relay --bins` (a
//! workspace test run does it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod relay_harness;

use common::Cluster;
use poc_control::{OutboxView, Request, SendAccepted, SendRequest, ThreadView};
use poc_proto::message::*;
use poc_proto::{Body, PocId, Role, ThreadId};
use poc_testnet::{Daemon, eventually, now};
use relay_harness::{RelaySetup, files_containing, use_relays};

fn send(daemon: &Daemon, to: &str, body: Body) -> SendAccepted {
    daemon.call(&Request::Send(Box::new(SendRequest::new(
        PocId::new(to).unwrap(),
        Handling::Tlp(Tlp::Amber),
        body,
    ))))
}

fn inquiry(summary: &str) -> Body {
    Body::Inquiry(Inquiry::new_minimal(Text::new(summary)))
}

fn thread(daemon: &Daemon, id: ThreadId) -> Option<ThreadView> {
    daemon
        .client()
        .call::<ThreadView>(&Request::Thread { thread: id })
        .ok()
}

fn outbox(daemon: &Daemon) -> Vec<OutboxView> {
    daemon.call(&Request::Outbox)
}

fn two_technical_pocs() -> Cluster {
    Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.cert", Role::Technical)],
        &[],
    )
}

/// Waits until the outbox entry of `message` is delivered, and says how.
fn delivered_via(daemon: &Daemon, message: MessageId) -> String {
    eventually("the outbox entry delivered", || {
        outbox(daemon)
            .into_iter()
            .find(|o| o.message_id == message && o.status == "delivered")
            .and_then(|o| o.delivered_via)
    })
}

fn count_rows(database: &std::path::Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(database).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn an_offline_recipient_gets_its_mail_through_the_relay_and_the_relay_sees_no_plaintext() {
    let cluster = two_technical_pocs();
    let relay = RelaySetup::new(&cluster, "relay-a", "");
    use_relays(&cluster, "EST.cert", &[&relay]);
    use_relays(&cluster, "FRA.cert", &[&relay]);
    let _relay = relay.start();
    let est = cluster.start("EST.cert");

    // A canary in the free text and in an attachment.
    let canary = "CANARY-7d1f0c2e-relay-must-not-see-this";
    let mut body = Inquiry::new_minimal(Text::new("Traffic from your networks"));
    body.incident.description = Some(Text::new(format!("free text with {canary} inside")));
    body.attachments.push(Attachment {
        name: "evidence.txt".into(),
        content: AttachmentContent::Other {
            media_type: "text/plain".into(),
            bytes: format!("attachment bytes {canary} end").into_bytes(),
        },
    });
    // FRA's node is not running: the direct attempt fails, the relay takes it.
    let sent = send(&est, "FRA.cert", Body::Inquiry(body));
    assert_eq!(delivered_via(&est, sent.message_id), "relay relay-a");
    assert_eq!(relay.metric("poc_relay_stored_envelopes"), 1);
    // `poc status` says so per entry, with why the direct attempt failed.
    let status: poc_control::StatusView = est.call(&Request::Status);
    let entry = status
        .recent
        .iter()
        .find(|o| o.message_id == sent.message_id)
        .expect("the inquiry among the recent deliveries");
    assert_eq!(entry.delivered_via.as_deref(), Some("relay relay-a"));

    // The sender goes offline too: the receipt must travel by the relay.
    est.kill9();
    let fra = cluster.start("FRA.cert");
    let at_fra = eventually("the inquiry at FRA", || thread(&fra, sent.thread_id));
    assert_eq!(at_fra.messages[0].kind, "inquiry");
    let receipt = eventually("FRA's receipt handed to the relay", || {
        outbox(&fra)
            .into_iter()
            .find(|o| o.kind == "receipt" && o.status == "delivered")
    });
    assert_eq!(receipt.delivered_via.as_deref(), Some("relay relay-a"));

    let est = cluster.start("EST.cert");
    eventually("the receipt at EST", || {
        thread(&est, sent.thread_id).filter(|t| t.summary.state.starts_with("receipted"))
    });
    eventually("the relay emptied by acknowledgements", || {
        (relay.metric("poc_relay_stored_envelopes") == 0).then_some(())
    });
    assert_eq!(relay.metric("poc_relay_deposits_total"), 2);
    assert_eq!(relay.metric("poc_relay_acked_total"), 2);
    // Recorded exactly once on each side.
    for (daemon, expected) in [(&est, 2), (&fra, 2)] {
        let view = thread(daemon, sent.thread_id).unwrap();
        assert_eq!(view.messages.len(), expected, "{:?}", view.messages);
    }

    // The search finds the canary where it is in clear (the sender's own
    // record), so finding nothing at the relay means something.
    let est_data = cluster.poc("EST.cert").node.data();
    assert!(!files_containing(&est_data, canary.as_bytes()).is_empty());
    // Every file of the relay (its log segments, key, config, log with the
    // relay's debug output) while it runs.
    for needle in [canary, "EST.cert", "FRA.cert"] {
        let found = files_containing(&relay.dir, needle.as_bytes());
        assert!(found.is_empty(), "{needle} in clear in {found:?}");
    }
    let segments: Vec<(std::path::PathBuf, u64)> = std::fs::read_dir(relay.store())
        .unwrap()
        .map(|f| {
            let f = f.unwrap();
            (f.path(), f.metadata().unwrap().len())
        })
        .collect();
    assert!(
        segments.iter().any(|(_, len)| *len > 300),
        "the two envelopes (a few hundred bytes each) went through the relay's store \
         (a segment's header is 24 bytes): {segments:?}"
    );
    assert!(std::fs::metadata(relay.log()).unwrap().len() > 0);
}

#[test]
fn kill_9_of_the_relay_with_stored_mail_loses_nothing_and_delivers_nothing_twice() {
    let cluster = two_technical_pocs();
    let relay = RelaySetup::new(&cluster, "relay-a", "");
    use_relays(&cluster, "EST.cert", &[&relay]);
    use_relays(&cluster, "FRA.cert", &[&relay]);
    let running = relay.start();
    let est = cluster.start("EST.cert");
    let sent: Vec<_> = (0..5)
        .map(|i| send(&est, "FRA.cert", inquiry(&format!("incident {i}"))))
        .collect();
    for s in &sent {
        assert_eq!(delivered_via(&est, s.message_id), "relay relay-a");
    }
    assert_eq!(relay.metric("poc_relay_stored_envelopes"), 5);

    running.kill9();
    let _relay = relay.start();
    assert_eq!(
        relay.metric("poc_relay_stored_envelopes"),
        5,
        "nothing lost"
    );

    let fra = cluster.start("FRA.cert");
    for s in &sent {
        eventually("each inquiry at FRA", || thread(&fra, s.thread_id));
        eventually("each receipt at EST", || {
            thread(&est, s.thread_id).filter(|t| t.summary.state.starts_with("receipted"))
        });
    }
    eventually("the relay emptied", || {
        (relay.metric("poc_relay_stored_envelopes") == 0).then_some(())
    });
    // Exactly five inquiries recorded at FRA, whatever was fetched twice.
    assert_eq!(
        count_rows(
            &cluster.poc("FRA.cert").node.database(),
            "SELECT count(*) FROM record WHERE event = 'received' AND kind = 'inquiry'"
        ),
        5
    );
    for s in &sent {
        assert_eq!(thread(&fra, s.thread_id).unwrap().messages.len(), 2);
    }
}

#[test]
fn an_envelope_tampered_with_in_the_relay_store_is_rejected_and_does_not_block_later_mail() {
    let cluster = two_technical_pocs();
    let relay = RelaySetup::new(&cluster, "relay-a", "");
    use_relays(&cluster, "EST.cert", &[&relay]);
    use_relays(&cluster, "FRA.cert", &[&relay]);
    let running = relay.start();
    let est = cluster.start("EST.cert");
    let first = send(&est, "FRA.cert", inquiry("first"));
    assert_eq!(delivered_via(&est, first.message_id), "relay relay-a");
    let second = send(&est, "FRA.cert", inquiry("second"));
    assert_eq!(delivered_via(&est, second.message_id), "relay relay-a");
    running.kill9();

    // The relay's operator flips one ciphertext byte of the first envelope
    // and fixes up the record's checksum, so the relay serves it as stored
    // (the layout is in poc-relay's src/store/segment_log.rs).
    {
        let mut segments: Vec<_> = std::fs::read_dir(relay.store())
            .unwrap()
            .map(|f| f.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segments.sort();
        let mut bytes = std::fs::read(&segments[0]).unwrap();
        let record = 24;
        let len = u32::from_le_bytes(bytes[record..record + 4].try_into().unwrap()) as usize;
        assert_eq!(bytes[record + 8], 1, "an envelope record");
        let payload = record + 8..record + 8 + len;
        bytes[payload.end - 20] ^= 0x40;
        let crc = crc32fast::hash(&bytes[payload]);
        bytes[record + 4..record + 8].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&segments[0], bytes).unwrap();
    }
    let _relay = relay.start();
    let fra = cluster.start("FRA.cert");
    eventually("the second inquiry at FRA", || {
        thread(&fra, second.thread_id)
    });
    eventually(
        "the relay emptied (the bad envelope acknowledged too)",
        || (relay.metric("poc_relay_stored_envelopes") == 0).then_some(()),
    );
    assert!(thread(&fra, first.thread_id).is_none());
    let database = cluster.poc("FRA.cert").node.database();
    assert_eq!(
        count_rows(
            &database,
            "SELECT count(*) FROM record WHERE event = 'rejected' AND detail LIKE '%relay relay-a%'"
        ),
        1
    );
    assert_eq!(
        count_rows(
            &database,
            "SELECT count(*) FROM record WHERE event = 'received'"
        ),
        1
    );
}

#[test]
fn with_two_relays_and_the_first_one_down_delivery_goes_through_the_second() {
    let cluster = two_technical_pocs();
    let down = RelaySetup::new(&cluster, "relay-down", "");
    let up = RelaySetup::new(&cluster, "relay-up", "");
    use_relays(&cluster, "EST.cert", &[&down, &up]);
    use_relays(&cluster, "FRA.cert", &[&down, &up]);
    let _up = up.start();
    let est = cluster.start("EST.cert");
    let sent = send(&est, "FRA.cert", inquiry("through the second relay"));
    assert_eq!(delivered_via(&est, sent.message_id), "relay relay-up");
    let fra = cluster.start("FRA.cert");
    eventually("the inquiry at FRA", || thread(&fra, sent.thread_id));
    eventually("the receipt at EST", || {
        thread(&est, sent.thread_id).filter(|t| t.summary.state.starts_with("receipted"))
    });
}

#[test]
fn the_same_message_directly_and_through_a_relay_twice_is_recorded_and_delivered_once() {
    let cluster = two_technical_pocs();
    let relay = RelaySetup::new(&cluster, "relay-a", "");
    use_relays(&cluster, "FRA.cert", &[&relay]);
    let _relay = relay.start();
    let fra = cluster.start("FRA.cert");

    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id).unwrap();
    let message = poc_proto::Message {
        header: Header {
            sender: PocId::new("EST.cert").unwrap(),
            recipient: PocId::new("FRA.cert").unwrap(),
            message_id: MessageId(id),
            thread_id: ThreadId(id),
            in_reply_to: None,
            created_at: now(),
            language: Language::English,
            handling: Handling::Confidential,
            exercise: None,
        },
        body: inquiry("sent three ways"),
    };
    let envelope = cluster.seal(&message);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Directly, as EST's node would.
        let direct = cluster.raw_client("EST.cert", "FRA.cert").await;
        assert_eq!(direct.request(&envelope).await.unwrap(), vec![0]);
        // And twice through the relay (a retry via a relay, or two relays).
        let identity =
            poc_proto::keys::IdentityKeyPair::from_secret_bytes(&cluster.poc("EST.cert").identity);
        let pins = poc_relay::client::RelayPins::new([(
            PocId::new("relay-a").unwrap(),
            relay.identity.public(),
        )]);
        let endpoint =
            poc_relay::client::bind_endpoint("127.0.0.1:0".parse().unwrap(), &identity, pins)
                .unwrap();
        let client = poc_relay::client::RelayClient::connect(
            &endpoint,
            format!("127.0.0.1:{}", relay.port).parse().unwrap(),
            relay.identity.public(),
        )
        .await
        .unwrap();
        client.deposit(&envelope).await.unwrap();
        client.deposit(&envelope).await.unwrap();
    });
    eventually("both relayed copies taken and acknowledged", || {
        (relay.metric("poc_relay_acked_total") == 2).then_some(())
    });
    let view = thread(&fra, ThreadId(id)).unwrap();
    assert_eq!(
        view.messages
            .iter()
            .filter(|m| m.direction == "received")
            .count(),
        1,
        "{:?}",
        view.messages
    );
    let database = cluster.poc("FRA.cert").node.database();
    assert_eq!(
        count_rows(
            &database,
            "SELECT count(*) FROM record WHERE event = 'received'"
        ),
        1
    );
    assert_eq!(
        count_rows(
            &database,
            "SELECT count(*) FROM record WHERE event = 'rejected'"
        ),
        0,
        "a relayed copy of a recorded message is a duplicate, not a replay"
    );
}

#[test]
fn a_relay_entry_with_a_bad_key_or_a_duplicate_name_is_named() {
    let cluster = two_technical_pocs();
    let path = cluster.poc("EST.cert").node.config();
    let base = std::fs::read_to_string(&path).unwrap();
    let key = hex::encode(
        poc_proto::keys::IdentityKeyPair::from_secret_bytes(&[1; 32])
            .public()
            .to_bytes(),
    );
    let twice = format!(
        "\n[[relay]]\nname = \"r\"\naddress = \"127.0.0.1:9\"\npublic_key = \"{key}\"\n\
         [[relay]]\nname = \"r\"\naddress = \"127.0.0.1:9\"\npublic_key = \"{key}\"\n"
    );
    for (extra, expected) in [
        (
            "\n[[relay]]\nname = \"relay-a\"\naddress = \"127.0.0.1:9\"\npublic_key = \"abcd\"\n",
            "relay-a: bad public_key",
        ),
        (twice.as_str(), "two [[relay]] entries are named r"),
    ] {
        std::fs::write(&path, format!("{base}{extra}")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pocd"))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}
