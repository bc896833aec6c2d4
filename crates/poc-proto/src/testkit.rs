//! Deterministic fixtures for tests, vectors, benchmarks and fuzzing
//! (feature `testkit`; never enabled in production builds).
//!
//! [`World`] holds three States (EST, FRA, KEN), each with a diplomatic and a
//! technical PoC, one PoC whose certificate has expired (`KEN.old`), and the
//! directory manager's ping identity (`UN.ping`). Every key is derived from
//! its name, so the same world is built byte for byte on every machine.
//!
//! Fixtures fail loudly: a panic here is a broken test setup, never input.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use crate::certificate::{
    CertificateBody, Endpoint, PocCertificate, Prekey, PrekeyId, VerifiedCertificate,
    VerifiedPrekey,
};
use crate::envelope::{self, PrekeyRing, Recipient, SealedEnvelope, Sender, VerifyPolicy};
use crate::error::SealError;
use crate::identity::{Issuer, PocId, Role, StateCode};
use crate::keys::{
    EphemeralSecret, IdentityKeyPair, ManagerKeyPair, PrekeySecret, RandomSource, Signature,
    SignatureLabel, StateRootKeyPair,
};
use crate::message::{
    Attachment, AttachmentContent, Body, Channel, Contact, Handling, Header, Incident,
    IncidentCategory, Indicator, Inquiry, IpAddress, Language, Message, MessageId, Requester,
    Sector, Text, ThreadId, TimeSensitivity, Urgency,
};
use crate::time::{Seconds, Timestamp};

/// The fixed "now" of the test world: 2027-01-15T08:00:00Z.
pub const NOW: Timestamp = Timestamp(1_800_000_000);
/// Certificates of the test world are valid from here...
pub const VALID_FROM: Timestamp = Timestamp(1_790_000_000);
/// ...until here.
pub const VALID_UNTIL: Timestamp = Timestamp(1_830_000_000);

/// A deterministic byte stream: SHA-256 of a seed and a counter. Not a CSPRNG
/// for production; reproducible fixtures only.
#[derive(Debug, Clone)]
pub struct DeterministicRandom {
    seed: Vec<u8>,
    counter: u64,
}

impl DeterministicRandom {
    /// A stream determined by `seed`.
    pub fn new(seed: &[u8]) -> Self {
        DeterministicRandom {
            seed: seed.to_vec(),
            counter: 0,
        }
    }

    /// 32 bytes derived from `label` alone.
    pub fn bytes32(label: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        DeterministicRandom::new(label.as_bytes()).fill(&mut out);
        out
    }
}

impl RandomSource for DeterministicRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(b"pocnet testkit\0");
            ctx.update(&self.seed);
            ctx.update(&self.counter.to_le_bytes());
            self.counter += 1;
            let block = ctx.finish();
            let n = chunk.len();
            chunk.copy_from_slice(block.as_ref().get(..n).unwrap_or_default());
        }
    }
}

/// One PoC of the test world with all its secrets.
#[derive(Debug)]
pub struct TestPoc {
    /// Verified certificate.
    pub certificate: VerifiedCertificate,
    /// Identity key.
    pub identity: IdentityKeyPair,
    /// Prekey secrets (one: the certificate's).
    pub prekeys: PrekeyRing,
    /// The seed the identity key was made from (for `keys.json`).
    pub identity_seed: [u8; 32],
    /// The seed the prekey secret was made from.
    pub prekey_seed: [u8; 32],
}

impl TestPoc {
    /// The prekey senders seal to.
    pub fn prekey(&self) -> VerifiedPrekey {
        self.certificate.initial_prekey()
    }

    /// This PoC's id.
    pub fn id(&self) -> &PocId {
        self.certificate.poc_id()
    }
}

/// Three States, their PoCs, and the directory manager.
#[derive(Debug)]
pub struct World {
    /// State root keys.
    pub roots: BTreeMap<StateCode, StateRootKeyPair>,
    /// The manager key.
    pub manager: ManagerKeyPair,
    /// Every PoC, by id.
    pub pocs: BTreeMap<PocId, TestPoc>,
    /// The directory every node of the world holds (KEN.old included: its
    /// certificate is listed but expired).
    pub directory: BTreeMap<PocId, VerifiedCertificate>,
}

fn id(text: &str) -> PocId {
    PocId::new(text).expect("test fixture PoC ids are valid")
}

impl World {
    /// Builds the world. Every key is derived from a fixed label.
    pub fn new() -> World {
        let manager =
            ManagerKeyPair::from_secret_bytes(&DeterministicRandom::bytes32("manager root"));
        let mut roots = BTreeMap::new();
        let mut pocs = BTreeMap::new();
        let specs: [(&str, &str, Role, Timestamp, Timestamp); 7] = [
            ("EST", "EST.mfa", Role::Diplomatic, VALID_FROM, VALID_UNTIL),
            ("EST", "EST.cert", Role::Technical, VALID_FROM, VALID_UNTIL),
            ("FRA", "FRA.mfa", Role::Diplomatic, VALID_FROM, VALID_UNTIL),
            ("FRA", "FRA.cert", Role::Technical, VALID_FROM, VALID_UNTIL),
            ("KEN", "KEN.mfa", Role::Diplomatic, VALID_FROM, VALID_UNTIL),
            ("KEN", "KEN.cert", Role::Technical, VALID_FROM, VALID_UNTIL),
            (
                "KEN",
                "KEN.old",
                Role::Technical,
                Timestamp(1_700_000_000),
                Timestamp(1_750_000_000),
            ),
        ];
        for (state, poc, role, from, until) in specs {
            let Ok(state) = StateCode::new(state) else {
                continue;
            };
            let root = roots.entry(state).or_insert_with(|| {
                StateRootKeyPair::from_secret_bytes(&DeterministicRandom::bytes32(&format!(
                    "state root {state}"
                )))
            });
            let (identity_seed, prekey_seed, body) =
                Self::body(id(poc), Issuer::State(state), role, from, until);
            let Ok(cert) = PocCertificate::issue_by_state(&body, root) else {
                continue;
            };
            let Ok(certificate) = cert.verify_by_state(&root.public()) else {
                continue;
            };
            pocs.insert(
                id(poc),
                Self::make_poc(certificate, body.prekey.clone(), identity_seed, prekey_seed),
            );
        }
        let (identity_seed, prekey_seed, body) = Self::body(
            id("UN.ping"),
            Issuer::DirectoryManager,
            Role::DirectoryManager,
            VALID_FROM,
            VALID_UNTIL,
        );
        if let Ok(cert) = PocCertificate::issue_by_manager(&body, &manager)
            && let Ok(certificate) = cert.verify_by_manager(&manager.public())
        {
            pocs.insert(
                id("UN.ping"),
                Self::make_poc(certificate, body.prekey, identity_seed, prekey_seed),
            );
        }
        let directory = pocs
            .iter()
            .map(|(id, poc)| (id.clone(), poc.certificate.clone()))
            .collect();
        World {
            roots,
            manager,
            pocs,
            directory,
        }
    }

    fn body(
        poc_id: PocId,
        issuer: Issuer,
        role: Role,
        valid_from: Timestamp,
        valid_until: Timestamp,
    ) -> ([u8; 32], [u8; 32], CertificateBody) {
        let identity_seed = DeterministicRandom::bytes32(&format!("identity {poc_id}"));
        let prekey_seed = DeterministicRandom::bytes32(&format!("prekey {poc_id}"));
        let identity = IdentityKeyPair::from_secret_bytes(&identity_seed);
        let prekey_secret = PrekeySecret::from_secret_bytes(&prekey_seed);
        let mut prekey_id = [0u8; 8];
        DeterministicRandom::new(format!("prekey id {poc_id}").as_bytes()).fill(&mut prekey_id);
        let body = CertificateBody {
            endpoints: vec![Endpoint::Direct {
                address: "127.0.0.1:7400".into(),
            }],
            poc_id,
            issuer,
            role,
            identity_key: identity.public(),
            prekey: Prekey {
                id: PrekeyId(u64::from_le_bytes(prekey_id)),
                public: prekey_secret.public(),
                valid_from,
                valid_until,
            },
            valid_from,
            valid_until,
        };
        (identity_seed, prekey_seed, body)
    }

    fn make_poc(
        certificate: VerifiedCertificate,
        prekey: Prekey,
        identity_seed: [u8; 32],
        prekey_seed: [u8; 32],
    ) -> TestPoc {
        let mut prekeys = PrekeyRing::new();
        // The prekey was derived from this seed above, so the pair matches.
        let _ = prekeys.insert(prekey, PrekeySecret::from_secret_bytes(&prekey_seed));
        TestPoc {
            certificate,
            identity: IdentityKeyPair::from_secret_bytes(&identity_seed),
            prekeys,
            identity_seed,
            prekey_seed,
        }
    }

    /// Every State root of the world, as a directory snapshot enrols them.
    pub fn enrolments(&self) -> Vec<crate::directory::StateEnrolment> {
        self.roots
            .iter()
            .map(|(state, root)| crate::directory::StateEnrolment {
                state: *state,
                root_key: root.public(),
            })
            .collect()
    }

    /// A snapshot body enrolling every State and listing the PoCs that
    /// `listed` accepts, each with its certificate only (no prekeys, no
    /// details, not revoked); sign it with [`World::manager`].
    pub fn snapshot_body(
        &self,
        sequence: u64,
        previous: crate::directory::SnapshotDigest,
        issued_at: Timestamp,
        listed: impl Fn(&PocId) -> bool,
    ) -> crate::directory::SnapshotBody {
        crate::directory::SnapshotBody {
            sequence,
            previous,
            issued_at,
            states: self.enrolments(),
            entries: self
                .pocs
                .iter()
                .filter(|(id, _)| listed(id))
                .map(|(_, poc)| crate::directory::DirectoryEntry {
                    certificate: poc.certificate.certificate().clone(),
                    prekeys: vec![],
                    revoked: false,
                    details: None,
                })
                .collect(),
        }
    }

    /// A PoC by id. Panics on an unknown id: test fixtures only.
    pub fn poc(&self, poc: &str) -> &TestPoc {
        match self.pocs.get(&id(poc)) {
            Some(poc) => poc,
            None => panic!("no PoC {poc} in the test world"),
        }
    }

    /// A message header from `from` to `to` at [`NOW`], with ids derived from `label`.
    pub fn header(&self, from: &str, to: &str, label: &str) -> Header {
        let mut rng = DeterministicRandom::new(label.as_bytes());
        Header {
            sender: id(from),
            recipient: id(to),
            message_id: MessageId::random(&mut rng),
            thread_id: ThreadId::random(&mut rng),
            in_reply_to: None,
            created_at: NOW,
            language: Language::English,
            handling: Handling::Confidential,
            exercise: None,
        }
    }

    /// Seals `message` from its header's sender to its recipient, expiring a
    /// week after [`NOW`], with an ephemeral key derived from `label`.
    pub fn seal(&self, message: &Message, label: &str) -> Result<SealedEnvelope, SealError> {
        let from = self.poc(message.header.sender.as_str());
        let to = self.poc(message.header.recipient.as_str());
        let sender = Sender::new(&from.certificate, &from.identity)?;
        let ephemeral = EphemeralSecret::from_random_bytes(DeterministicRandom::bytes32(&format!(
            "ephemeral {label}"
        )));
        sender.seal(
            message,
            &to.certificate,
            &to.prekey(),
            NOW.plus(Seconds::days(7)),
            ephemeral,
        )
    }

    /// Seals arbitrary content bytes with an arbitrary signature, skipping
    /// every check `seal` makes: for negative vectors only.
    pub fn seal_raw(
        &self,
        content: &[u8],
        signature: &Signature,
        to: &str,
        label: &str,
    ) -> Result<SealedEnvelope, SealError> {
        let to = self.poc(to);
        let ephemeral = EphemeralSecret::from_random_bytes(DeterministicRandom::bytes32(&format!(
            "ephemeral {label}"
        )));
        envelope::seal_signed(
            content,
            signature,
            &to.certificate,
            &to.prekey(),
            NOW.plus(Seconds::days(7)),
            ephemeral,
            MessageId([0; 16]),
        )
    }

    /// Signs `content` with `signer`'s identity key and seals it to `to`,
    /// skipping every check `seal` makes: for negative tests and vectors
    /// (forged senders, forwarded messages, out-of-window timestamps...).
    pub fn seal_signed_by(
        &self,
        content: &[u8],
        signer: &str,
        to: &str,
        label: &str,
    ) -> Result<SealedEnvelope, SealError> {
        let signature = self
            .poc(signer)
            .identity
            .sign(SignatureLabel::Message, content);
        self.seal_raw(content, &signature, to, label)
    }

    /// The recipient view of a PoC, with the default policy.
    pub fn recipient(&self, poc: &str) -> Recipient<'_, BTreeMap<PocId, VerifiedCertificate>> {
        let poc = self.poc(poc);
        Recipient {
            certificate: &poc.certificate,
            prekeys: &poc.prekeys,
            directory: &self.directory,
            policy: VerifyPolicy::default(),
        }
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// A realistic inquiry of roughly `target_len` encoded bytes: a technical
/// CERT asking about DDoS traffic from the other State's address space.
pub fn sample_inquiry(target_len: usize) -> Inquiry {
    let mut inquiry = Inquiry {
        requester: Requester {
            name: Some("Kadri Tamm".into()),
            title: Some("Duty officer".into()),
            entity: Some("CERT-EE".into()),
        },
        incident: Incident {
            summary: Text {
                original:
                    "Sustained DDoS against government portals from addresses in your networks"
                        .into(),
                english: None,
            },
            category: Some(IncidentCategory::DenialOfService),
            description: Some(Text::new(
                "Since 06:10 UTC, 40 Gbit/s of UDP reflection traffic reaches gov.ee portals.",
            )),
            affected_sectors: vec![Sector::Government, Sector::Telecommunications],
            critical_infrastructure: Some(true),
            indicators: vec![
                Indicator::Ip(IpAddress::V4([192, 0, 2, 17])),
                Indicator::Network {
                    address: IpAddress::V4([198, 51, 100, 0]),
                    prefix_len: 24,
                },
                Indicator::Domain("c2.example.net".into()),
                Indicator::Url("http://c2.example.net/bot/config".into()),
            ],
            first_seen: Some(NOW.minus(Seconds::hours(3))),
            last_seen: Some(NOW.minus(Seconds::MINUTE)),
            impact: Some(Text::new("Public e-services unavailable for citizens.")),
        },
        information_requested: Some(Text::new(
            "Owners of the listed hosts, and whether you can act on the C2 domain.",
        )),
        contact: Contact {
            phone: Some("+372 000 0000".into()),
            email: Some("duty@cert.example".into()),
            other: None,
        },
        time_sensitivity: TimeSensitivity {
            urgency: Urgency::Urgent,
            respond_by: Some(NOW.plus(Seconds::hours(4))),
        },
        preferred_channel: Some(Channel::Pocnet),
        lead_agency: Some("CERT-EE, Information System Authority".into()),
        attachments: Vec::new(),
    };
    let so_far = crate::codec::encode(&inquiry).map(|b| b.len()).unwrap_or(0);
    if target_len > so_far + 64 {
        let filler = target_len - so_far - 64;
        inquiry.attachments.push(Attachment {
            name: "flows.csv".into(),
            content: AttachmentContent::Other {
                media_type: "text/csv".into(),
                bytes: b"0123456789abcdef,
"
                .iter()
                .copied()
                .cycle()
                .take(filler)
                .collect(),
            },
        });
    }
    inquiry
}

/// A whole inquiry message from `from` to `to`.
pub fn inquiry_message(world: &World, from: &str, to: &str, target_len: usize) -> Message {
    Message {
        header: world.header(from, to, "inquiry"),
        body: Body::Inquiry(sample_inquiry(target_len)),
    }
}
