//! Property tests: encode/decode round trips, every single-bit flip of a
//! sealed envelope is rejected, and no input makes a decoder panic.
//! Failing cases are saved under `proptest-regressions/` and replayed first.

// Test code: a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use poc_proto::certificate::{PocCertificate, SignedPrekey};
use poc_proto::envelope::{MemoryReplayCache, OuterHeader};
use poc_proto::message::*;
use poc_proto::testkit::{NOW, World, inquiry_message};
use poc_proto::{Body, Message, PocId, Timestamp};
use proptest::prelude::*;

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(World::new)
}

fn sealed_inquiry() -> &'static [u8] {
    static SEALED: OnceLock<Vec<u8>> = OnceLock::new();
    SEALED.get_or_init(|| {
        let w = world();
        w.seal(&inquiry_message(w, "EST.cert", "FRA.cert", 600), "prop")
            .unwrap()
            .into_bytes()
    })
}

fn short() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn text() -> impl Strategy<Value = Text> {
    ("\\PC{0,80}", proptest::option::of("\\PC{0,80}"))
        .prop_map(|(original, english)| Text { original, english })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<u64>().prop_map(Timestamp)
}

fn poc_id() -> impl Strategy<Value = PocId> {
    "[A-Z]{3}\\.[a-z0-9-]{1,12}".prop_map(|s| PocId::new(s).unwrap())
}

fn language() -> impl Strategy<Value = Language> {
    proptest::sample::select(Language::ALL.to_vec())
}

fn handling() -> impl Strategy<Value = Handling> {
    prop_oneof![
        Just(Handling::Confidential),
        proptest::sample::select(vec![
            Tlp::Clear,
            Tlp::Green,
            Tlp::Amber,
            Tlp::AmberStrict,
            Tlp::Red
        ])
        .prop_map(Handling::Tlp),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    (
        poc_id(),
        poc_id(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        proptest::option::of(any::<[u8; 16]>()),
        timestamp(),
        language(),
        handling(),
        proptest::option::of("[A-Z0-9-]{1,20}"),
    )
        .prop_map(
            |(sender, recipient, id, thread, reply, created_at, language, handling, exercise)| {
                Header {
                    sender,
                    recipient,
                    message_id: MessageId(id),
                    thread_id: ThreadId(thread),
                    in_reply_to: reply.map(MessageId),
                    created_at,
                    language,
                    handling,
                    exercise: exercise.map(ExerciseId),
                }
            },
        )
}

fn indicator() -> impl Strategy<Value = Indicator> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Indicator::Ip(IpAddress::V4(a))),
        (any::<[u8; 16]>(), 0u8..=128).prop_map(|(a, p)| Indicator::Network {
            address: IpAddress::V6(a),
            prefix_len: p
        }),
        (
            any::<u16>(),
            proptest::option::of(Just(TransportProtocol::Tcp))
        )
            .prop_map(|(number, protocol)| Indicator::Port { number, protocol }),
        "[a-z]{1,10}\\.[a-z]{2,3}".prop_map(Indicator::Domain),
        "https://[a-z]{1,10}/\\PC{0,20}".prop_map(Indicator::Url),
        proptest::collection::vec(any::<u8>(), 32).prop_map(|digest| Indicator::Hash {
            algorithm: HashAlgorithm::Sha256,
            digest
        }),
        any::<u32>().prop_map(Indicator::Asn),
    ]
}

fn attachment() -> impl Strategy<Value = Attachment> {
    (
        "[a-z]{1,8}\\.xml",
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(|(name, bytes, iodef)| Attachment {
            name,
            content: if iodef {
                AttachmentContent::Iodef(bytes)
            } else {
                AttachmentContent::Other {
                    media_type: "application/octet-stream".into(),
                    bytes,
                }
            },
        })
}

fn inquiry() -> impl Strategy<Value = Inquiry> {
    (
        (proptest::option::of(short()), proptest::option::of(short())),
        text().prop_filter("summary is required", |t| !t.original.trim().is_empty()),
        proptest::collection::vec(indicator(), 0..8),
        (proptest::option::of(text()), proptest::option::of(short())),
        (
            proptest::sample::select(vec![Urgency::Routine, Urgency::Priority, Urgency::Urgent]),
            proptest::option::of(timestamp()),
        ),
        proptest::collection::vec(attachment(), 0..3),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(
            |(
                (name, entity),
                summary,
                indicators,
                (requested, lead),
                (urgency, respond_by),
                attachments,
                ci,
            )| Inquiry {
                requester: Requester {
                    name,
                    title: None,
                    entity,
                },
                incident: Incident {
                    indicators,
                    critical_infrastructure: ci,
                    affected_sectors: vec![Sector::Energy, Sector::Other("space".into())],
                    ..Incident::summary_only(summary)
                },
                information_requested: requested,
                contact: Contact::default(),
                time_sensitivity: TimeSensitivity {
                    urgency,
                    respond_by,
                },
                preferred_channel: Some(Channel::Pocnet),
                lead_agency: lead,
                attachments,
            },
        )
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        inquiry().prop_map(Body::Inquiry),
        (text(), proptest::option::of(timestamp()), any::<bool>()).prop_map(|(t, eta, now)| {
            Body::Response(Response {
                outcome: if now {
                    ResponseOutcome::Immediate { answer: t }
                } else {
                    ResponseOutcome::WillFollowUp { eta, note: Some(t) }
                },
                channel: Some(ChannelAgreement::Accept),
                lead_agency: None,
                attachments: vec![],
            })
        }),
        (any::<[u8; 16]>(), any::<[u8; 32]>(), timestamp()).prop_map(|(id, d, at)| Body::Receipt(
            Receipt {
                acknowledged: MessageId(id),
                content_digest: d,
                received_at: at
            }
        )),
        (
            text(),
            proptest::collection::vec(indicator(), 0..4),
            proptest::option::of(timestamp())
        )
            .prop_map(
                |(text, indicators, next_update_eta)| Body::FollowUp(FollowUp {
                    text,
                    indicators,
                    next_update_eta,
                    attachments: vec![]
                })
            ),
        proptest::option::of(text()).prop_map(|note| Body::Close(Close {
            reason: CloseReason::NoFurtherAction,
            note
        })),
        (any::<[u8; 16]>(), timestamp()).prop_map(|(c, reply_by)| Body::Ping(Ping {
            campaign: CampaignId(c),
            reply_by
        })),
        any::<[u8; 16]>().prop_map(|c| Body::PingReply(PingReply {
            campaign: CampaignId(c)
        })),
        ("[A-Za-z][A-Za-z ]{0,19}", text()).prop_map(
            |(third_party, purpose)| Body::ConsentRequest(ConsentRequest {
                third_party,
                purpose,
                proposed_handling: Handling::Tlp(Tlp::Red)
            })
        ),
        (any::<[u8; 16]>(), any::<bool>()).prop_map(|(r, granted)| Body::ConsentReply(
            ConsentReply {
                request: MessageId(r),
                granted,
                note: None
            }
        )),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        header().prop_filter("a PoC does not write to itself", |h| {
            h.sender != h.recipient
        }),
        body(),
    )
        .prop_map(|(mut header, body)| {
            if let Body::Receipt(receipt) = &body {
                header.in_reply_to = Some(receipt.acknowledged);
            }
            Message { header, body }
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Integration tests have no lib.rs beside them; name the file.
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "proptest-regressions/properties.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn messages_round_trip(msg in message()) {
        let bytes = msg.encode().unwrap();
        prop_assert_eq!(Message::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn any_single_bit_flip_is_rejected(bit in 0usize..(8 * 4096)) {
        let sealed = sealed_inquiry();
        let bit = bit % (8 * sealed.len());
        let mut tampered = sealed.to_vec();
        tampered[bit / 8] ^= 1 << (bit % 8);
        let result = world().recipient("FRA.cert").open(&tampered, &mut MemoryReplayCache::default(), NOW);
        prop_assert!(result.is_err(), "flipping bit {} was accepted", bit);
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = OuterHeader::parse(&bytes);
        let _ = world().recipient("FRA.cert").open(&bytes, &mut MemoryReplayCache::default(), NOW);
        let _ = Message::decode(&bytes);
        let _ = PocCertificate::from_bytes(&bytes).map(|c| c.unverified_body());
        let _ = SignedPrekey::from_bytes(&bytes);
    }

    #[test]
    fn mutated_envelopes_never_panic_and_never_open(
        at in 0usize..4096,
        splice in proptest::collection::vec(any::<u8>(), 1..64),
        cut in any::<bool>(),
    ) {
        let sealed = sealed_inquiry();
        let at = at % sealed.len();
        let mut mutated = sealed[..at].to_vec();
        mutated.extend_from_slice(&splice);
        if !cut {
            mutated.extend_from_slice(&sealed[(at + splice.len()).min(sealed.len())..]);
        }
        prop_assume!(mutated != sealed);
        let result = world().recipient("FRA.cert").open(&mutated, &mut MemoryReplayCache::default(), NOW);
        prop_assert!(result.is_err());
    }

    #[test]
    fn mutated_message_content_never_panics(at in 0usize..4096, byte in any::<u8>()) {
        let w = world();
        let content = inquiry_message(w, "EST.cert", "FRA.cert", 600).encode().unwrap();
        let mut mutated = content.clone();
        let at = at % mutated.len();
        mutated[at] = byte;
        let _ = Message::decode(&mutated);
    }
}
