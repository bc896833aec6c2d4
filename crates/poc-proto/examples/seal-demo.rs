//! Two PoCs, one inquiry: the protocol end to end, with nothing but this crate.
//!
//! Creates the State root keys of Estonia and France, certifies a technical
//! PoC (the national CERT) for each, seals an Annex A inquiry from EST.cert to
//! FRA.cert, opens and verifies it as FRA.cert, and prints the envelope's size,
//! what a relay would see, and the decoded inquiry.
//!
//! `cargo run --release -p poc-proto --example seal-demo`

use std::collections::BTreeMap;
use std::error::Error;
use std::time::{SystemTime, UNIX_EPOCH};

use poc_proto::certificate::{CertificateBody, Endpoint, PocCertificate, Prekey, PrekeyId};
use poc_proto::envelope::{
    MemoryReplayCache, OuterHeader, PrekeyRing, Recipient, Sender, VerifyPolicy,
};
use poc_proto::keys::{
    EphemeralSecret, IdentityKeyPair, PrekeySecret, RandomSource, StateRootKeyPair,
};
use poc_proto::message::*;
use poc_proto::{Body, Issuer, Message, PocId, Role, Seconds, StateCode, Timestamp};

/// The operating system's CSPRNG (through ring).
struct OsRandom(ring::rand::SystemRandom);

impl RandomSource for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        use ring::rand::SecureRandom;
        if self.0.fill(dest).is_err() {
            // Without entropy no key or envelope can be made safely.
            eprintln!("error: the operating system's random number generator failed");
            std::process::exit(70);
        }
    }
}

/// A PoC as its own node would hold it.
struct Node {
    certificate: poc_proto::certificate::VerifiedCertificate,
    identity: IdentityKeyPair,
    prekeys: PrekeyRing,
}

fn enrol(
    rng: &mut OsRandom,
    root: &StateRootKeyPair,
    state: StateCode,
    poc: &str,
    now: Timestamp,
) -> Result<Node, Box<dyn Error>> {
    let identity = IdentityKeyPair::generate(rng);
    let prekey_secret = PrekeySecret::generate(rng);
    let mut prekey_id = [0u8; 8];
    rng.fill(&mut prekey_id);
    let prekey = Prekey {
        id: PrekeyId(u64::from_le_bytes(prekey_id)),
        public: prekey_secret.public(),
        valid_from: now,
        valid_until: now.plus(Seconds::days(30)),
    };
    let body = CertificateBody {
        poc_id: PocId::new(poc)?,
        issuer: Issuer::State(state),
        role: Role::Technical,
        identity_key: identity.public(),
        prekey: prekey.clone(),
        valid_from: now,
        valid_until: now.plus(Seconds::days(365)),
        endpoints: vec![Endpoint::Direct {
            address: "127.0.0.1:7401".into(),
        }],
    };
    let certificate =
        PocCertificate::issue_by_state(&body, root)?.verify_by_state(&root.public())?;
    let mut prekeys = PrekeyRing::new();
    prekeys.insert(prekey, prekey_secret)?;
    Ok(Node {
        certificate,
        identity,
        prekeys,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let now = Timestamp(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs());
    let mut rng = OsRandom(ring::rand::SystemRandom::new());

    let (est, fra) = (StateCode::new("EST")?, StateCode::new("FRA")?);
    let est_root = StateRootKeyPair::generate(&mut rng);
    let fra_root = StateRootKeyPair::generate(&mut rng);
    let sender = enrol(&mut rng, &est_root, est, "EST.cert", now)?;
    let receiver = enrol(&mut rng, &fra_root, fra, "FRA.cert", now)?;
    let directory: BTreeMap<PocId, _> = [&sender, &receiver]
        .iter()
        .map(|n| (n.certificate.poc_id().clone(), n.certificate.clone()))
        .collect();
    println!(
        "Created State roots for {est} and {fra}, and certified EST.cert and FRA.cert (technical)."
    );

    let inquiry = Inquiry {
        requester: Requester {
            name: Some("Kadri Tamm".into()),
            title: Some("Duty officer".into()),
            entity: Some("CERT-EE".into()),
        },
        incident: Incident {
            category: Some(IncidentCategory::DenialOfService),
            affected_sectors: vec![Sector::Government],
            critical_infrastructure: Some(false),
            indicators: vec![
                Indicator::Ip(IpAddress::V4([192, 0, 2, 17])),
                Indicator::Domain("c2.example.net".into()),
            ],
            first_seen: Some(now.minus(Seconds::hours(3))),
            ..Incident::summary_only(Text::new(
                "DDoS against government portals from addresses in your networks",
            ))
        },
        information_requested: Some(Text::new("Owners of the listed hosts.")),
        contact: Contact {
            email: Some("duty@cert.example".into()),
            ..Contact::default()
        },
        time_sensitivity: TimeSensitivity {
            urgency: Urgency::Urgent,
            respond_by: Some(now.plus(Seconds::hours(4))),
        },
        preferred_channel: Some(Channel::Pocnet),
        lead_agency: Some("CERT-EE".into()),
        attachments: vec![],
    };
    let message = Message {
        header: Header {
            sender: sender.certificate.poc_id().clone(),
            recipient: receiver.certificate.poc_id().clone(),
            message_id: MessageId::random(&mut rng),
            thread_id: ThreadId::random(&mut rng),
            in_reply_to: None,
            created_at: now,
            language: Language::English,
            handling: Handling::default(),
            exercise: None,
        },
        body: Body::Inquiry(inquiry),
    };

    let sealed = Sender::new(&sender.certificate, &sender.identity)?.seal(
        &message,
        &receiver.certificate,
        &receiver.certificate.initial_prekey(),
        now.plus(Seconds::days(7)),
        EphemeralSecret::generate(&mut rng),
    )?;
    let outer = OuterHeader::parse(sealed.as_bytes())?;
    println!("\nSealed envelope: {} bytes", sealed.as_bytes().len());
    println!(
        "What a relay sees: version {}, mailbox {}, expires {}, {} body bytes",
        outer.version, outer.mailbox, outer.expires_at, outer.body_len
    );

    let recipient = Recipient {
        certificate: &receiver.certificate,
        prekeys: &receiver.prekeys,
        directory: &directory,
        policy: VerifyPolicy::default(),
    };
    let mut replay = MemoryReplayCache::default();
    let opened = recipient.open(sealed.as_bytes(), &mut replay, now)?;
    println!(
        "\nOpened by {} and verified: signed by {} ({}), content digest {}",
        receiver.certificate.poc_id(),
        opened.sender.poc_id(),
        opened.sender.role(),
        opened
            .content_digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    print_inquiry(&opened.message);

    match recipient.open(sealed.as_bytes(), &mut replay, now) {
        Err(err) => println!("\nThe same envelope delivered again is refused: {err}"),
        Ok(_) => return Err("a replayed envelope was accepted".into()),
    }
    Ok(())
}

fn print_inquiry(message: &Message) {
    let h = &message.header;
    println!("\n{}", h.handling);
    println!(
        "INQUIRY {} -> {}  (thread {}, {})",
        h.sender, h.recipient, h.thread_id, h.created_at
    );
    let Body::Inquiry(inquiry) = &message.body else {
        return;
    };
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!(
        "  Requester:      {} ({})",
        or_dash(&inquiry.requester.name),
        or_dash(&inquiry.requester.entity)
    );
    println!("  Summary:        {}", inquiry.incident.summary.original);
    if let Some(category) = &inquiry.incident.category {
        println!("  Category:       {category:?}");
    }
    for indicator in &inquiry.incident.indicators {
        println!("  Indicator:      {indicator:?}");
    }
    println!("  Urgency:        {:?}", inquiry.time_sensitivity.urgency);
    if let Some(by) = inquiry.time_sensitivity.respond_by {
        println!("  Respond by:     {by}");
    }
    println!("  Lead agency:    {}", or_dash(&inquiry.lead_agency));
    println!("  Contact e-mail: {}", or_dash(&inquiry.contact.email));
}
