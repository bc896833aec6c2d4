//! Golden vectors under `proto/vectors/`.
//!
//! - `vectors_on_disk_check_out`: reads `keys.json` and `manifest.json` only
//!   (as a second implementation would), rebuilds every PoC from its seeds and
//!   certificate, and checks each vector's expected outcome.
//! - `vectors_have_not_drifted`: regenerates every file deterministically and
//!   fails if any byte differs from disk. After an intended format change,
//!   run `POCNET_REGENERATE_VECTORS=1 cargo test -p poc-proto --test vectors -- vectors_have_not_drifted`
//!   and update `proto/SPEC.md` in the same commit.

// Test code: a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use poc_proto::certificate::{PocCertificate, Prekey, SignedPrekey, VerifiedCertificate};
use poc_proto::envelope::{MemoryReplayCache, OuterHeader, PrekeyRing, Recipient, VerifyPolicy};
use poc_proto::keys::{
    EphemeralSecret, IdentityKeyPair, ManagerPublicKey, PrekeySecret, SignatureLabel,
    StateRootPublicKey,
};
use poc_proto::message::*;
use poc_proto::testkit::{DeterministicRandom, NOW, World, sample_inquiry};
use poc_proto::{Body, Message, OpenError, PocId, RejectCode, Seconds, StateCode, Timestamp};
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/vectors")
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn unhex(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().expect("hex string")).expect("valid hex")
}

fn code_name(code: RejectCode) -> String {
    format!("{code:?}")
}

/// One vector: a file, what it holds, and what opening or verifying it must give.
struct Vector {
    name: String,
    kind: &'static str,
    bytes: Vec<u8>,
    description: String,
    /// For envelopes: the PoC that opens it.
    recipient: Option<&'static str>,
    /// `ok` or a `RejectCode` name.
    expect: String,
    /// Envelopes opened first, with the same replay cache.
    open_after: Vec<String>,
    /// Extra readable detail (decoded content).
    detail: String,
}

struct Generator {
    world: World,
    vectors: Vec<Vector>,
}

impl Generator {
    fn envelope(&mut self, name: &str, msg: &Message, description: &str) -> Vec<u8> {
        let sealed = self.world.seal(msg, name).expect("seal");
        let bytes = sealed.into_bytes();
        let header = OuterHeader::parse(&bytes).unwrap();
        self.vectors.push(Vector {
            name: name.into(),
            kind: "envelope",
            bytes: bytes.clone(),
            description: description.into(),
            recipient: Some(leak(msg.header.recipient.as_str())),
            expect: "ok".into(),
            open_after: vec![],
            detail: format!(
                "Outer header: version={} mailbox={} expires_at={} ({}) body_len={}\n\
                 Ephemeral secret: 32 bytes of DeterministicRandom(\"ephemeral {name}\") = {}\n\n\
                 Message:\n{:#?}\n",
                header.version,
                header.mailbox,
                header.expires_at.0,
                header.expires_at,
                header.body_len,
                hex(&DeterministicRandom::bytes32(&format!("ephemeral {name}"))),
                msg
            ),
        });
        bytes
    }

    fn negative(
        &mut self,
        name: &str,
        bytes: Vec<u8>,
        recipient: &'static str,
        expect: RejectCode,
        description: &str,
    ) {
        self.negative_after(name, bytes, recipient, expect, description, vec![]);
    }

    fn negative_after(
        &mut self,
        name: &str,
        bytes: Vec<u8>,
        recipient: &'static str,
        expect: RejectCode,
        description: &str,
        open_after: Vec<String>,
    ) {
        self.vectors.push(Vector {
            name: name.into(),
            kind: "envelope",
            bytes,
            description: description.into(),
            recipient: Some(recipient),
            expect: code_name(expect),
            open_after,
            detail: String::new(),
        });
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn reply_header(world: &World, from: &str, to: &str, label: &str, to_msg: &Message) -> Header {
    Header {
        thread_id: to_msg.header.thread_id,
        in_reply_to: Some(to_msg.header.message_id),
        ..world.header(from, to, label)
    }
}

fn flip(bytes: &[u8], offset: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[offset] ^= 0x01;
    out
}

/// Builds every vector file: name -> bytes.
fn generate() -> BTreeMap<String, Vec<u8>> {
    let mut g = Generator {
        world: World::new(),
        vectors: vec![],
    };
    let w = World::new();

    // --- Positive envelopes, one per message kind -------------------------
    let inquiry = Message {
        header: w.header("EST.cert", "FRA.cert", "inquiry"),
        body: Body::Inquiry(sample_inquiry(1024)),
    };
    let inquiry_bytes = g.envelope("envelope-inquiry", &inquiry, "An Annex A inquiry (DDoS, urgent, respond-by in 4 h) from EST.cert (technical) to FRA.cert (technical), with a CSV attachment.");
    let receipt = Message {
        header: reply_header(&w, "FRA.cert", "EST.cert", "receipt", &inquiry),
        body: Body::Receipt(Receipt {
            acknowledged: inquiry.header.message_id,
            content_digest: poc_proto::envelope::content_digest(&inquiry.encode().unwrap()),
            received_at: NOW,
        }),
    };
    g.envelope("envelope-receipt", &receipt, "FRA.cert's neutral receipt of the inquiry: it implies no agreement with the content (Annex A para 10).");
    let response_eta = Message {
        header: reply_header(&w, "FRA.cert", "EST.cert", "response-eta", &inquiry),
        body: Body::Response(Response {
            outcome: ResponseOutcome::WillFollowUp {
                eta: Some(NOW.plus(Seconds::hours(24))),
                note: Some(Text {
                    original: "Nous examinons les adresses signalées.".into(),
                    english: Some("We are examining the reported addresses.".into()),
                }),
            },
            channel: Some(ChannelAgreement::Accept),
            lead_agency: Some("ANSSI / CERT-FR".into()),
            attachments: vec![],
        }),
    };
    let mut fr = response_eta.clone();
    fr.header.language = Language::French;
    g.envelope("envelope-response-follow-up", &fr, "Response-to-inquiry step 2 in French with an English translation: will consider, ETA 24 h; channel accepted; lead agency named.");
    let response_now = Message {
        header: reply_header(&w, "FRA.cert", "EST.cert", "response-now", &inquiry),
        body: Body::Response(Response {
            outcome: ResponseOutcome::Immediate {
                answer: Text::new("The hosts belong to a hosting provider; takedown requested."),
            },
            channel: Some(ChannelAgreement::Propose(Channel::Phone(
                "+33 0 00 00 00 00".into(),
            ))),
            lead_agency: None,
            attachments: vec![],
        }),
    };
    g.envelope(
        "envelope-response-immediate",
        &response_now,
        "Response-to-inquiry step 1: an immediate answer, proposing another channel.",
    );
    let follow_up = Message {
        header: reply_header(&w, "FRA.cert", "EST.cert", "follow-up", &inquiry),
        body: Body::FollowUp(FollowUp {
            text: Text::new("Two of the hosts are cleaned; the C2 domain is suspended."),
            indicators: vec![
                Indicator::Hash {
                    algorithm: HashAlgorithm::Sha256,
                    digest: vec![0xab; 32],
                },
                Indicator::Port {
                    number: 123,
                    protocol: Some(TransportProtocol::Udp),
                },
                Indicator::Ip(IpAddress::V6([
                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                ])),
                Indicator::Asn(64_496),
                Indicator::Email("abuse@example.net".into()),
                Indicator::Other {
                    kind: "ja3".into(),
                    value: "e7d705a3286e19ea42f587b344ee6865".into(),
                },
            ],
            next_update_eta: None,
            attachments: vec![],
        }),
    };
    g.envelope(
        "envelope-follow-up",
        &follow_up,
        "A follow-up with every indicator type not used by the inquiry.",
    );
    let close = Message {
        header: reply_header(&w, "EST.cert", "FRA.cert", "close", &inquiry),
        body: Body::Close(Close {
            reason: CloseReason::Resolved,
            note: Some(Text::new("Thank you.")),
        }),
    };
    g.envelope(
        "envelope-close",
        &close,
        "EST.cert closes the thread as resolved.",
    );
    let ping = Message {
        header: w.header("UN.ping", "EST.cert", "ping"),
        body: Body::Ping(Ping {
            campaign: CampaignId([0x11; 16]),
            reply_by: NOW.plus(Seconds::hours(48)),
        }),
    };
    g.envelope(
        "envelope-ping",
        &ping,
        "The directory manager's six-monthly ping to EST.cert, reply due in 48 h.",
    );
    let ping_reply = Message {
        header: reply_header(&w, "EST.cert", "UN.ping", "ping-reply", &ping),
        body: Body::PingReply(PingReply {
            campaign: CampaignId([0x11; 16]),
        }),
    };
    g.envelope(
        "envelope-ping-reply",
        &ping_reply,
        "EST.cert's acknowledgement of the ping.",
    );
    let consent = Message {
        header: reply_header(&w, "EST.cert", "FRA.cert", "consent", &inquiry),
        body: Body::ConsentRequest(ConsentRequest {
            third_party: "CERT-EU".into(),
            purpose: Text::new("Share the indicators with CERT-EU to protect EU institutions."),
            proposed_handling: Handling::Tlp(Tlp::AmberStrict),
        }),
    };
    g.envelope(
        "envelope-consent-request",
        &consent,
        "EST.cert asks consent to share the thread with CERT-EU under TLP:AMBER+STRICT.",
    );
    let consent_reply = Message {
        header: reply_header(&w, "FRA.cert", "EST.cert", "consent-reply", &consent),
        body: Body::ConsentReply(ConsentReply {
            request: consent.header.message_id,
            granted: true,
            note: None,
        }),
    };
    g.envelope(
        "envelope-consent-reply",
        &consent_reply,
        "FRA.cert grants consent.",
    );
    let mut exercise = Message {
        header: w.header("EST.mfa", "FRA.mfa", "exercise"),
        body: Body::Inquiry(Inquiry {
            requester: Requester::default(),
            incident: Incident::summary_only(Text::new(
                "EXERCISE: simulated outage of a shared undersea cable",
            )),
            information_requested: None,
            contact: Contact::default(),
            time_sensitivity: TimeSensitivity {
                urgency: Urgency::Routine,
                respond_by: None,
            },
            preferred_channel: None,
            lead_agency: None,
            attachments: vec![],
        }),
    };
    exercise.header.exercise = Some(ExerciseId("EX-2027-01".into()));
    exercise.header.handling = Handling::Tlp(Tlp::Green);
    g.envelope(
        "envelope-exercise-minimal-inquiry",
        &exercise,
        "A minimal diplomatic inquiry (summary only) marked as exercise EX-2027-01, TLP:GREEN.",
    );

    // --- Negative envelopes ------------------------------------------------
    let b = &inquiry_bytes;
    use RejectCode as C;
    g.negative(
        "neg-flip-version",
        flip(b, 0),
        "FRA.cert",
        C::UnknownVersion,
        "envelope-inquiry with the low bit of the version flipped (version 0).",
    );
    g.negative(
        "neg-flip-mailbox",
        flip(b, 2),
        "FRA.cert",
        C::WrongRecipient,
        "envelope-inquiry with a bit of the mailbox id flipped.",
    );
    g.negative(
        "neg-flip-expiry",
        flip(b, 18),
        "FRA.cert",
        C::Undecryptable,
        "envelope-inquiry with the low bit of expires_at flipped (bound by the AEAD).",
    );
    g.negative(
        "neg-flip-body-length",
        flip(b, 26),
        "FRA.cert",
        C::Malformed,
        "envelope-inquiry with the low bit of body_len flipped (length no longer matches).",
    );
    g.negative(
        "neg-flip-ephemeral",
        flip(b, 34),
        "FRA.cert",
        C::Undecryptable,
        "envelope-inquiry with a bit of the ephemeral public key flipped.",
    );
    g.negative(
        "neg-flip-prekey-id",
        flip(b, 66),
        "FRA.cert",
        C::UnknownPrekey,
        "envelope-inquiry with a bit of the prekey id flipped.",
    );
    g.negative(
        "neg-flip-ciphertext",
        flip(b, 100),
        "FRA.cert",
        C::Undecryptable,
        "envelope-inquiry with a bit of the ciphertext flipped.",
    );
    g.negative(
        "neg-flip-tag",
        flip(b, b.len() - 1),
        "FRA.cert",
        C::Undecryptable,
        "envelope-inquiry with a bit of the AEAD tag flipped.",
    );
    g.negative(
        "neg-truncated",
        b[..b.len() - 1].to_vec(),
        "FRA.cert",
        C::Malformed,
        "envelope-inquiry without its last byte.",
    );
    let mut trailing = b.clone();
    trailing.push(0);
    g.negative(
        "neg-trailing",
        trailing,
        "FRA.cert",
        C::Malformed,
        "envelope-inquiry followed by one extra zero byte.",
    );
    let mut oversize = b[..34].to_vec();
    let body_len = (poc_proto::limits::MAX_ENVELOPE_BYTES + 1 - 34) as u64;
    oversize[26..34].copy_from_slice(&body_len.to_le_bytes());
    oversize.resize(poc_proto::limits::MAX_ENVELOPE_BYTES + 1, 0);
    g.negative(
        "neg-oversize",
        oversize,
        "FRA.cert",
        C::Malformed,
        "An envelope of 4 MiB + 1 byte (consistent header, zero body): refused before parsing.",
    );
    g.negative(
        "neg-wrong-recipient",
        b.clone(),
        "KEN.cert",
        C::WrongRecipient,
        "envelope-inquiry (for FRA.cert) opened by KEN.cert.",
    );
    g.negative_after(
        "neg-replay",
        b.clone(),
        "FRA.cert",
        C::Replay,
        "envelope-inquiry opened a second time with the same replay cache.",
        vec!["envelope-inquiry".into()],
    );

    let content = inquiry.encode().unwrap();
    let forwarded = w
        .seal_signed_by(&content, "EST.cert", "KEN.cert", "neg-forwarded")
        .unwrap()
        .into_bytes();
    g.negative("neg-forwarded", forwarded, "KEN.cert", C::WrongRecipient, "EST.cert's signed inquiry to FRA.cert, re-sealed by FRA.cert to KEN.cert (surreptitious forwarding): the inner recipient is FRA.cert.");
    let bad_sig = w
        .seal_signed_by(&content, "KEN.cert", "FRA.cert", "neg-bad-signature")
        .unwrap()
        .into_bytes();
    g.negative(
        "neg-bad-signature",
        bad_sig,
        "FRA.cert",
        C::BadSignature,
        "The inquiry claiming EST.cert as sender but signed by KEN.cert's identity key.",
    );
    let ex_content = exercise.encode().unwrap();
    let ex_sig = w
        .poc("EST.mfa")
        .identity
        .sign(SignatureLabel::Message, &ex_content);
    let mut stripped = exercise.clone();
    stripped.header.exercise = None;
    let stripped = w
        .seal_raw(
            &stripped.encode().unwrap(),
            &ex_sig,
            "FRA.mfa",
            "neg-exercise-stripped",
        )
        .unwrap()
        .into_bytes();
    g.negative(
        "neg-exercise-stripped",
        stripped,
        "FRA.mfa",
        C::BadSignature,
        "The exercise inquiry with its exercise marker removed after signing.",
    );
    let old = Message {
        header: w.header("KEN.old", "FRA.cert", "old"),
        body: Body::Close(Close {
            reason: CloseReason::Withdrawn,
            note: None,
        }),
    };
    let old_content = old.encode().unwrap();
    let old_env = w
        .seal_signed_by(
            &old_content,
            "KEN.old",
            "FRA.cert",
            "neg-expired-certificate",
        )
        .unwrap()
        .into_bytes();
    g.negative(
        "neg-expired-certificate",
        old_env,
        "FRA.cert",
        C::UnknownSender,
        "A message from KEN.old, whose certificate expired at 1750000000.",
    );
    let role = Message {
        header: w.header("EST.mfa", "FRA.cert", "role"),
        body: Body::Inquiry(sample_inquiry(256)),
    };
    let role_content = role.encode().unwrap();
    let role_env = w
        .seal_signed_by(&role_content, "EST.mfa", "FRA.cert", "neg-role")
        .unwrap()
        .into_bytes();
    g.negative(
        "neg-role-diplomatic-to-foreign-technical",
        role_env,
        "FRA.cert",
        C::RoleNotAllowed,
        "An inquiry from EST.mfa (diplomatic) to FRA.cert (technical).",
    );
    let mut stale = inquiry.clone();
    stale.header.created_at = NOW.minus(Seconds::days(20));
    let stale_content = stale.encode().unwrap();
    let stale_env = w
        .seal_signed_by(&stale_content, "EST.cert", "FRA.cert", "neg-stale")
        .unwrap()
        .into_bytes();
    g.negative(
        "neg-stale-timestamp",
        stale_env,
        "FRA.cert",
        C::StaleTimestamp,
        "The inquiry with created_at 20 days before now (the window is 14 days).",
    );
    let mut big = inquiry.clone();
    if let Body::Inquiry(i) = &mut big.body {
        i.requester.name = Some("n".repeat(256));
    }
    let mut big_content = big.encode().unwrap();
    let at = big_content
        .windows(256)
        .position(|w| w.iter().all(|b| *b == b'n'))
        .unwrap();
    big_content[at - 8..at].copy_from_slice(&257u64.to_le_bytes());
    big_content.insert(at, b'n');
    let big_env = w
        .seal_signed_by(&big_content, "EST.cert", "FRA.cert", "neg-oversize-field")
        .unwrap()
        .into_bytes();
    g.negative(
        "neg-oversize-field",
        big_env,
        "FRA.cert",
        C::Malformed,
        "A correctly signed inquiry whose requester.name is 257 bytes (limit 256).",
    );

    // --- Certificates, prekeys, bare content -------------------------------
    let est = w.poc("EST.cert");
    g.vectors.push(Vector {
        name: "certificate-EST.cert".into(),
        kind: "certificate",
        bytes: est.certificate.certificate().to_bytes(),
        description: "EST.cert's PoC certificate, signed by the EST State root key.".into(),
        recipient: None,
        expect: "ok".into(),
        open_after: vec![],
        detail: format!("Body:\n{:#?}\n", est.certificate.body()),
    });
    let rotated_secret =
        PrekeySecret::from_secret_bytes(&DeterministicRandom::bytes32("rotated prekey FRA.cert"));
    let rotated = Prekey {
        id: poc_proto::certificate::PrekeyId(0x0102_0304_0506_0708),
        public: rotated_secret.public(),
        valid_from: NOW,
        valid_until: NOW.plus(Seconds::days(30)),
    };
    let fra = w.poc("FRA.cert");
    let signed = SignedPrekey::sign(fra.id(), &rotated, &fra.identity).unwrap();
    g.vectors.push(Vector {
        name: "signed-prekey-FRA.cert".into(),
        kind: "signed-prekey",
        bytes: signed.to_bytes(),
        description: "A rotated prekey of FRA.cert, signed by FRA.cert's identity key.".into(),
        recipient: Some("FRA.cert"),
        expect: "ok".into(),
        open_after: vec![],
        detail: format!(
            "Prekey:\n{rotated:#?}\nSecret seed: {}\n",
            hex(&DeterministicRandom::bytes32("rotated prekey FRA.cert"))
        ),
    });
    g.vectors.push(Vector {
        name: "content-ping".into(),
        kind: "message-content",
        bytes: ping.encode().unwrap(),
        description:
            "The signed content bytes of envelope-ping (the encoded Message, before signing)."
                .into(),
        recipient: None,
        expect: "ok".into(),
        open_after: vec![],
        detail: format!("Message:\n{ping:#?}\n"),
    });

    // --- Files --------------------------------------------------------------
    let mut files = BTreeMap::new();
    let mut manifest = vec![];
    for v in &g.vectors {
        files.insert(format!("{}.bin", v.name), v.bytes.clone());
        let mut text = format!(
            "{}\n\n{}\nKind: {}\nExpected: {}{}\nLength: {} bytes\nSHA-256: {}\n",
            v.name,
            v.description,
            v.kind,
            v.expect,
            v.recipient
                .map(|r| format!(" when opened by {r} at {} ({})", NOW.0, NOW))
                .unwrap_or_default(),
            v.bytes.len(),
            hex(&poc_proto::envelope::content_digest(&v.bytes)),
        );
        if !v.open_after.is_empty() {
            text.push_str(&format!(
                "Opened after: {} (same replay cache)\n",
                v.open_after.join(", ")
            ));
        }
        if !v.detail.is_empty() {
            text.push('\n');
            text.push_str(&v.detail);
        }
        files.insert(format!("{}.txt", v.name), text.into_bytes());
        manifest.push(json!({
            "name": v.name,
            "file": format!("{}.bin", v.name),
            "kind": v.kind,
            "recipient": v.recipient,
            "now": NOW.0,
            "expect": v.expect,
            "open_after": v.open_after,
            "description": v.description,
        }));
    }
    let manifest = json!({ "format": "pocnet vectors v1", "now": NOW.0, "vectors": manifest });
    files.insert("manifest.json".into(), pretty(&manifest));
    files.insert("keys.json".into(), pretty(&keys_json(&w)));
    files
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).unwrap();
    out.push(b'\n');
    out
}

fn keys_json(w: &World) -> Value {
    let roots: serde_json::Map<String, Value> = w
        .roots
        .iter()
        .map(|(state, root)| {
            (state.to_string(), json!({ "public": hex(&root.public().to_bytes()), "secret_seed": hex(root.to_secret_bytes().as_ref()) }))
        })
        .collect();
    let pocs: Vec<Value> = w
        .pocs
        .values()
        .map(|p| {
            let prekey = p.prekey();
            json!({
                "poc_id": p.id().as_str(),
                "role": p.certificate.role().to_string(),
                "identity_seed": hex(&p.identity_seed),
                "identity_public": hex(&p.identity.public().to_bytes()),
                "prekey_id": prekey.prekey().id.0,
                "prekey_seed": hex(&p.prekey_seed),
                "prekey_public": hex(&prekey.prekey().public.to_bytes()),
                "mailbox": p.certificate.mailbox().to_string(),
                "certificate": hex(&p.certificate.certificate().to_bytes()),
            })
        })
        .collect();
    json!({
        "note": "Test keys only. Every secret here is public; never use them outside tests.",
        "state_roots": roots,
        "manager": { "public": hex(&w.manager.public().to_bytes()), "secret_seed": hex(w.manager.to_secret_bytes().as_ref()) },
        "pocs": pocs,
    })
}

#[test]
fn vectors_have_not_drifted() {
    let dir = vectors_dir();
    let generated = generate();
    if std::env::var_os("POCNET_REGENERATE_VECTORS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|e| e == "bin" || e == "txt" || e == "json")
            {
                std::fs::remove_file(path).unwrap();
            }
        }
        for (name, bytes) in &generated {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        return;
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin") || n.ends_with(".txt") || n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let expected: Vec<String> = generated.keys().cloned().collect();
    assert_eq!(
        on_disk, expected,
        "the set of vector files changed; regenerate (see module docs)"
    );
    for (name, bytes) in &generated {
        let disk = std::fs::read(dir.join(name)).unwrap();
        assert!(
            disk == *bytes,
            "{name} drifted from the generated vector; the wire format changed (see module docs)"
        );
    }
}

/// A node rebuilt from keys.json alone.
struct Rebuilt {
    directory: BTreeMap<PocId, VerifiedCertificate>,
    rings: BTreeMap<PocId, PrekeyRing>,
    identities: BTreeMap<PocId, IdentityKeyPair>,
}

fn rebuild(keys: &Value) -> Rebuilt {
    let roots: BTreeMap<StateCode, StateRootPublicKey> = keys["state_roots"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(state, v)| {
            let bytes: [u8; 32] = unhex(&v["public"]).try_into().unwrap();
            (
                StateCode::new(state).unwrap(),
                StateRootPublicKey::from_bytes(bytes).unwrap(),
            )
        })
        .collect();
    let manager =
        ManagerPublicKey::from_bytes(unhex(&keys["manager"]["public"]).try_into().unwrap())
            .unwrap();
    let mut rebuilt = Rebuilt {
        directory: BTreeMap::new(),
        rings: BTreeMap::new(),
        identities: BTreeMap::new(),
    };
    for poc in keys["pocs"].as_array().unwrap() {
        let cert = PocCertificate::from_bytes(&unhex(&poc["certificate"])).unwrap();
        let verified = match cert.unverified_body().unwrap().issuer {
            poc_proto::Issuer::State(state) => cert.verify_by_state(&roots[&state]).unwrap(),
            poc_proto::Issuer::DirectoryManager => cert.verify_by_manager(&manager).unwrap(),
        };
        let id = verified.poc_id().clone();
        assert_eq!(
            verified.mailbox().to_string(),
            poc["mailbox"].as_str().unwrap()
        );
        let identity =
            IdentityKeyPair::from_secret_bytes(&unhex(&poc["identity_seed"]).try_into().unwrap());
        assert_eq!(identity.public(), verified.body().identity_key);
        let mut ring = PrekeyRing::new();
        let secret =
            PrekeySecret::from_secret_bytes(&unhex(&poc["prekey_seed"]).try_into().unwrap());
        ring.insert(verified.body().prekey.clone(), secret).unwrap();
        rebuilt.rings.insert(id.clone(), ring);
        rebuilt.identities.insert(id.clone(), identity);
        rebuilt.directory.insert(id, verified);
    }
    rebuilt
}

#[test]
fn vectors_on_disk_check_out() {
    let dir = vectors_dir();
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let keys: Value = serde_json::from_slice(&read("keys.json")).unwrap();
    let manifest: Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    let node = rebuild(&keys);
    let now = Timestamp(manifest["now"].as_u64().unwrap());
    let vectors = manifest["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 30, "expected the full vector set");
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let bytes = read(v["file"].as_str().unwrap());
        let expect = v["expect"].as_str().unwrap();
        let outcome: Result<(), String> = match v["kind"].as_str().unwrap() {
            "envelope" => {
                let me = PocId::new(v["recipient"].as_str().unwrap()).unwrap();
                let recipient = Recipient {
                    certificate: &node.directory[&me],
                    prekeys: &node.rings[&me],
                    directory: &node.directory,
                    policy: VerifyPolicy::default(),
                };
                let mut cache = MemoryReplayCache::default();
                for earlier in v["open_after"].as_array().unwrap() {
                    let earlier = read(&format!("{}.bin", earlier.as_str().unwrap()));
                    recipient.open(&earlier, &mut cache, now).unwrap();
                }
                recipient
                    .open(&bytes, &mut cache, now)
                    .map(|_| ())
                    .map_err(|e: OpenError| code_name(e.code()))
            }
            "certificate" => {
                let cert = PocCertificate::from_bytes(&bytes).unwrap();
                let body = cert.unverified_body().unwrap();
                assert_eq!(
                    &node.directory[&body.poc_id].certificate().to_bytes(),
                    &bytes
                );
                Ok(())
            }
            "signed-prekey" => {
                let me = PocId::new(v["recipient"].as_str().unwrap()).unwrap();
                let signed = SignedPrekey::from_bytes(&bytes).unwrap();
                node.directory[&me]
                    .verify_prekey(&signed)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            "message-content" => Message::decode(&bytes)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            other => panic!("unknown vector kind {other}"),
        };
        match (expect, outcome) {
            ("ok", Ok(())) => {}
            ("ok", Err(e)) => panic!("{name}: expected ok, got {e}"),
            (code, Err(got)) => assert_eq!(got, code, "{name}"),
            (code, Ok(())) => panic!("{name}: expected {code}, but it was accepted"),
        }
    }
    // The vectors' identities can also seal: a round trip with rebuilt keys.
    let est = PocId::new("EST.cert").unwrap();
    let fra = PocId::new("FRA.cert").unwrap();
    let sender =
        poc_proto::envelope::Sender::new(&node.directory[&est], &node.identities[&est]).unwrap();
    let msg = Message {
        header: World::new().header("EST.cert", "FRA.cert", "rebuilt"),
        body: Body::Inquiry(sample_inquiry(300)),
    };
    let sealed = sender
        .seal(
            &msg,
            &node.directory[&fra],
            &node.directory[&fra].initial_prekey(),
            now.plus(Seconds::DAY),
            EphemeralSecret::from_random_bytes([8; 32]),
        )
        .unwrap();
    let recipient = Recipient {
        certificate: &node.directory[&fra],
        prekeys: &node.rings[&fra],
        directory: &node.directory,
        policy: VerifyPolicy::default(),
    };
    assert_eq!(
        recipient
            .open(sealed.as_bytes(), &mut MemoryReplayCache::default(), now)
            .unwrap()
            .message,
        msg
    );
}
