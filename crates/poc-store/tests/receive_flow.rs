//! The daemon's receive path against a real store file: prekeys loaded from
//! the store, the replay check asked of the record inside the transaction
//! that records the message, so a crash never leaves a message marked seen
//! but unrecorded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::temp_store;
use poc_proto::envelope::{MemoryReplayCache, OpenedMessage, Recipient, VerifyPolicy};
use poc_proto::keys::PrekeySecret;
use poc_proto::testkit::{NOW, World, inquiry_message};
use poc_store::{NewEntry, RecordEvent, Store, StoreError, Tx};

/// What the daemon does with one incoming envelope, inside a transaction.
fn receive(
    tx: &mut Tx<'_>,
    recipient: &Recipient<
        '_,
        std::collections::BTreeMap<poc_proto::PocId, poc_proto::certificate::VerifiedCertificate>,
    >,
    envelope: &[u8],
) -> Result<Result<OpenedMessage, String>, StoreError> {
    // Every check but seen-before runs here; that one asks the record below.
    match recipient.open(envelope, &mut MemoryReplayCache::default(), NOW) {
        Ok(opened) => {
            let header = &opened.message.header;
            if tx.record_received_from(&header.sender, header.message_id)? {
                let reason = format!("replay of message {}", header.message_id);
                tx.record_append(NewEntry {
                    peer: Some(header.sender.clone()),
                    envelope: Some(envelope.to_vec()),
                    detail: Some(reason.clone()),
                    ..NewEntry::new(NOW, RecordEvent::Rejected)
                })?;
                return Ok(Err(reason));
            }
            tx.record_append(NewEntry {
                peer: Some(header.sender.clone()),
                message_id: Some(header.message_id),
                thread_id: Some(header.thread_id),
                kind: Some(opened.message.body.kind().to_string()),
                exercise: header.exercise.as_ref().map(|e| e.0.clone()),
                envelope: Some(envelope.to_vec()),
                content: Some(opened.content.clone()),
                signature: Some(opened.signature.0),
                ..NewEntry::new(NOW, RecordEvent::Received)
            })?;
            Ok(Ok(opened))
        }
        Err(error) => {
            tx.record_append(NewEntry {
                envelope: Some(envelope.to_vec()),
                detail: Some(error.to_string()),
                ..NewEntry::new(NOW, RecordEvent::Rejected)
            })?;
            Ok(Err(error.to_string()))
        }
    }
}

#[test]
fn receive_records_and_remembers_in_one_commit() {
    let world = World::new();
    let fra = world.poc("FRA.cert");
    let (_dir, path, mut store) = temp_store();
    store
        .transaction(|tx| {
            tx.prekey_put(
                fra.prekey().prekey(),
                &PrekeySecret::from_secret_bytes(&fra.prekey_seed),
            )
        })
        .unwrap();
    drop(store);

    let message = inquiry_message(&world, "EST.cert", "FRA.cert", 512);
    let sealed = world.seal(&message, "receive flow").unwrap();

    // A crash between opening and committing: the transaction is abandoned,
    // so the message is neither recorded nor marked seen.
    let mut store = Store::open(&path).unwrap();
    let ring = store.read(|r| r.prekeys_load()).unwrap();
    let recipient = Recipient {
        certificate: &fra.certificate,
        prekeys: &ring,
        directory: &world.directory,
        policy: VerifyPolicy::default(),
    };
    let err = store
        .transaction(|tx| {
            receive(tx, &recipient, sealed.as_bytes())?.unwrap();
            Err::<(), _>(StoreError::Aborted("simulated crash before commit".into()))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Aborted(_)));
    assert!(store.read(|r| r.record_head()).unwrap().is_none());

    // Delivered again: accepted and recorded, durably.
    let opened = store
        .transaction(|tx| receive(tx, &recipient, sealed.as_bytes()))
        .unwrap()
        .unwrap();
    assert_eq!(opened.message, message);
    drop(store);

    // After a restart, a replay is refused and recorded as rejected.
    let mut store = Store::open(&path).unwrap();
    let ring = store.read(|r| r.prekeys_load()).unwrap();
    let recipient = Recipient {
        certificate: &fra.certificate,
        prekeys: &ring,
        directory: &world.directory,
        policy: VerifyPolicy::default(),
    };
    let outcome = store
        .transaction(|tx| receive(tx, &recipient, sealed.as_bytes()))
        .unwrap();
    let reason = outcome.unwrap_err();
    assert!(reason.contains("replay"), "{reason}");

    store
        .read(|r| {
            let header = &message.header;
            assert!(r.record_received_from(&header.sender, header.message_id)?);
            let received = r
                .record_find_message(&header.sender, header.message_id, RecordEvent::Received)?
                .unwrap();
            assert_eq!(received.seq, 1);
            assert_eq!(received.content.as_deref(), Some(&opened.content[..]));
            assert_eq!(received.kind.as_deref(), Some("inquiry"));
            let rejected = r.record_get(2)?.unwrap();
            assert_eq!(rejected.event, RecordEvent::Rejected);
            assert!(r.record_verify()?.is_clean());
            Ok(())
        })
        .unwrap();
}
