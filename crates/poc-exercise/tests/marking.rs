//! The exercise marker is signed: changing it, adding it or removing it in
//! transit breaks the signature (the node-level rules are in
//! `crates/pocd/tests/exercise.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use poc_proto::envelope::MemoryReplayCache;
use poc_proto::keys::SignatureLabel;
use poc_proto::message::ExerciseId;
use poc_proto::testkit::{NOW, World, inquiry_message};
use poc_proto::{OpenError, RejectCode};

#[test]
fn a_tampered_exercise_marker_fails_signature_verification() {
    let world = World::new();
    for (signed, tampered) in [
        // Renamed to another exercise.
        (Some("CYBEX-2026"), Some("CYBEX-2027")),
        // Added to a real message.
        (None, Some("CYBEX-2026")),
        // Removed from an exercise message.
        (Some("CYBEX-2026"), None),
    ] {
        let mut message = inquiry_message(&world, "EST.cert", "FRA.cert", 256);
        message.header.exercise = signed.map(|e| ExerciseId(e.into()));
        let content = message.encode().unwrap();
        let signature = world
            .poc("EST.cert")
            .identity
            .sign(SignatureLabel::Message, &content);
        let mut changed = message.clone();
        changed.header.exercise = tampered.map(|e| ExerciseId(e.into()));
        let sealed = world
            .seal_raw(&changed.encode().unwrap(), &signature, "FRA.cert", "tamper")
            .unwrap();
        let err = world
            .recipient("FRA.cert")
            .open(sealed.as_bytes(), &mut MemoryReplayCache::default(), NOW)
            .unwrap_err();
        assert!(
            matches!(err, OpenError::BadSignature { .. }),
            "{signed:?} -> {tampered:?}: {err}"
        );
        assert_eq!(err.code(), RejectCode::BadSignature);
    }
}
