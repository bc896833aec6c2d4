//! Issue 7 between real nodes: every shared IODEF sample, imported into an
//! inquiry, travels from one pocd to another with the original document
//! attached byte for byte, and the receiver's view of the inquiry carries the
//! same indicators.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::Cluster;
use poc_control::{Request, SendAccepted, SendRequest, ThreadView};
use poc_proto::message::AttachmentContent;
use poc_proto::{Body, PocId, Role};
use poc_testnet::eventually;

#[test]
fn imported_iodef_inquiries_arrive_with_the_original_attached_byte_for_byte() {
    let Some(fixtures) = poc_interop::shared_fixtures_dir()
        .map_err(|missing| println!("{missing}"))
        .ok()
    else {
        return;
    };
    let mut samples: Vec<_> = std::fs::read_dir(fixtures.join("iodef"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    samples.sort();
    assert!(
        samples.len() >= 7,
        "expected the seven shared IODEF samples"
    );

    let cluster = Cluster::new(
        &[("EST.cert", Role::Technical), ("FRA.cert", Role::Technical)],
        &[],
    );
    let est = cluster.start("EST.cert");
    let fra = cluster.start("FRA.cert");

    for file in &samples {
        let original = std::fs::read(file).unwrap();
        let imported = poc_interop::iodef::import(&original).unwrap();
        let sent: SendAccepted = est.call(&Request::Send(Box::new(SendRequest::new(
            PocId::new("FRA.cert").unwrap(),
            imported.handling,
            Body::Inquiry(imported.inquiry.clone()),
        ))));
        let at_fra: ThreadView = eventually("the imported inquiry at FRA", || {
            fra.client()
                .call::<ThreadView>(&Request::Thread {
                    thread: sent.thread_id,
                })
                .ok()
        });
        let received = &at_fra.messages[0];
        assert_eq!(received.direction, "received");
        assert_eq!(received.handling, imported.handling.to_string());
        let Body::Inquiry(inquiry) = &received.body else {
            panic!("{}: FRA did not record an inquiry", file.display())
        };
        assert_eq!(
            inquiry.incident.indicators,
            imported.inquiry.incident.indicators,
            "{}",
            file.display()
        );
        let documents: Vec<&[u8]> = inquiry
            .attachments
            .iter()
            .filter_map(|a| match &a.content {
                AttachmentContent::Iodef(bytes) => Some(bytes.as_slice()),
                _ => None,
            })
            .collect();
        assert_eq!(
            documents,
            vec![original.as_slice()],
            "{}: the attached document must arrive unchanged",
            file.display()
        );
    }
}

/// `deploy/exercises/attachments/` carries a copy of the MILE guidance DDoS
/// sample so the shipped scenario runs without `../shared`; it must stay the
/// document it claims to be.
#[test]
fn the_shipped_exercise_attachment_is_the_shared_ddos_sample() {
    let Some(fixtures) = poc_interop::shared_fixtures_dir()
        .map_err(|missing| println!("{missing}"))
        .ok()
    else {
        return;
    };
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/exercises/attachments/GuidanceDraft_DDoS.xml");
    assert_eq!(
        std::fs::read(shipped).unwrap(),
        std::fs::read(fixtures.join("iodef/GuidanceDraft_DDoS.xml")).unwrap()
    );
}
