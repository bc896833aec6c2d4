//! The messages of the standard procedures in the appendix to Annex A of
//! A/78/265 (the OEWG's second annual progress report), plus ping tests,
//! follow-ups, closing and consent to share.
//!
//! Every field beyond the inquiry's summary is optional: the directory's text
//! asks for templates that can be sent "when some information is not
//! available" (para 11). [`crate::template`] reports what a message lacks
//! without refusing to send it.

use serde::{Deserialize, Serialize};

use crate::codec::limits;
use crate::identity::PocId;
use crate::time::Timestamp;
use crate::validate::{Validate, Validator};

/// Declares a 16-byte random identifier type shown as hex.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// 16 raw bytes on the wire; 32 hex digits in JSON.
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(#[serde(with = "crate::codec::hex_text::array")] pub [u8; 16]);

        impl $name {
            /// Draws a fresh random id.
            pub fn random(rng: &mut impl crate::keys::RandomSource) -> Self {
                let mut id = [0u8; 16];
                rng.fill(&mut id);
                Self(id)
            }

            /// Parses 32 hex digits.
            pub fn from_hex(text: &str) -> Option<Self> {
                // Exactly 32 hex digits (`from_str_radix` would also take a
                // sign, so "+f" read as a byte).
                let bytes: Vec<u8> =
                    crate::codec::hex_text::decode::<serde::de::value::Error>(text).ok()?;
                Some(Self(bytes.try_into().ok()?))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

id_type!(
    /// A message's 128-bit random id, unique per sender; the replay key.
    MessageId
);
id_type!(
    /// An incident thread's 128-bit id, drawn at random by the inquirer and
    /// carried by every later message on the thread.
    ThreadId
);
id_type!(
    /// A ping campaign's 128-bit id.
    CampaignId
);

/// One of the six UN official languages, as a BCP 47 tag (Annex A para 7(a)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Language {
    /// Arabic, `ar`.
    Arabic,
    /// Chinese, `zh`.
    Chinese,
    /// English, `en`.
    English,
    /// French, `fr`.
    French,
    /// Russian, `ru`.
    Russian,
    /// Spanish, `es`.
    Spanish,
}

impl Language {
    /// All six, in wire order.
    pub const ALL: [Language; 6] = [
        Language::Arabic,
        Language::Chinese,
        Language::English,
        Language::French,
        Language::Russian,
        Language::Spanish,
    ];

    /// The BCP 47 tag.
    pub fn tag(self) -> &'static str {
        match self {
            Language::Arabic => "ar",
            Language::Chinese => "zh",
            Language::English => "en",
            Language::French => "fr",
            Language::Russian => "ru",
            Language::Spanish => "es",
        }
    }

    /// Parses a BCP 47 tag of one of the six languages (case-insensitive;
    /// region and script subtags such as `zh-Hans` or `es-419` are accepted
    /// and ignored).
    pub fn from_tag(tag: &str) -> Option<Language> {
        let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
        Language::ALL.into_iter().find(|l| l.tag() == primary)
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.tag())
    }
}

/// A TLP 2.0 label (FIRST Traffic Light Protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tlp {
    /// TLP:CLEAR, no limit on disclosure.
    Clear,
    /// TLP:GREEN, the community.
    Green,
    /// TLP:AMBER, the recipient's organisation and its clients on a need-to-know basis.
    Amber,
    /// TLP:AMBER+STRICT, the recipient's organisation only.
    AmberStrict,
    /// TLP:RED, the named recipients only.
    Red,
}

/// How the content of a message may be handled.
///
/// Confidential by default (Annex A para 11: information exchanged stays
/// confidential and is not shared with third parties except by mutual consent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Handling {
    /// Confidential between the two PoCs unless both consent.
    #[default]
    Confidential,
    /// An agreed TLP 2.0 label.
    Tlp(Tlp),
}

impl std::fmt::Display for Handling {
    /// As TLP asks: capital letters, e.g. `TLP:AMBER+STRICT`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handling::Confidential => "CONFIDENTIAL",
            Handling::Tlp(Tlp::Clear) => "TLP:CLEAR",
            Handling::Tlp(Tlp::Green) => "TLP:GREEN",
            Handling::Tlp(Tlp::Amber) => "TLP:AMBER",
            Handling::Tlp(Tlp::AmberStrict) => "TLP:AMBER+STRICT",
            Handling::Tlp(Tlp::Red) => "TLP:RED",
        })
    }
}

/// Identifies a simulation exercise. Its presence in a header marks the
/// message as exercise traffic; being inside the signed content, the marker
/// cannot be removed or added without breaking the signature.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExerciseId(pub String);

impl std::fmt::Debug for ExerciseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExerciseId({})", self.0)
    }
}

impl std::fmt::Display for ExerciseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text in the message's language, with an optional unofficial English
/// translation (Annex A para 7(a) encourages one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// The text in the header's language.
    pub original: String,
    /// Unofficial English translation.
    pub english: Option<String>,
}

impl Text {
    /// Text with no translation.
    pub fn new(original: impl Into<String>) -> Self {
        Text {
            original: original.into(),
            english: None,
        }
    }
}

impl Validate for Text {
    fn validate(&self, v: &mut Validator) {
        v.max_len("original", self.original.len(), limits::MAX_FREE_TEXT_BYTES);
        if let Some(english) = &self.english {
            v.max_len("english", english.len(), limits::MAX_FREE_TEXT_BYTES);
        }
    }
}

/// Fields common to every message; all of them are covered by the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The sending PoC.
    pub sender: PocId,
    /// The receiving PoC; a receiver refuses a message naming anyone else, so
    /// a signed message cannot be forwarded to a third party unnoticed.
    pub recipient: PocId,
    /// This message's random id.
    pub message_id: MessageId,
    /// The incident thread (or ping campaign exchange) it belongs to.
    pub thread_id: ThreadId,
    /// The message this one answers, if any.
    pub in_reply_to: Option<MessageId>,
    /// When the sender created it.
    pub created_at: Timestamp,
    /// Language of the free text.
    pub language: Language,
    /// Agreed handling of the content.
    pub handling: Handling,
    /// Set on every message of a simulation exercise.
    pub exercise: Option<ExerciseId>,
}

impl Validate for Header {
    fn validate(&self, v: &mut Validator) {
        if self.sender == self.recipient {
            v.field("recipient", |v| v.fail("must differ from the sender"));
        }
        if let Some(exercise) = &self.exercise {
            v.non_empty_short_text("exercise", &exercise.0);
        }
    }
}

/// A whole message: header and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who, to whom, which thread, when, how to handle.
    pub header: Header,
    /// What.
    pub body: Body,
}

impl Message {
    /// Encodes the message as signed content bytes, checking every limit a
    /// receiver enforces.
    pub fn encode(&self) -> Result<Vec<u8>, crate::error::DecodeError> {
        crate::codec::encode(self)
    }

    /// Decodes signed content bytes (as kept in a node's record) back into a
    /// message, enforcing every limit. Verifies nothing: use
    /// [`crate::envelope::Recipient::open`] for input from the network.
    pub fn decode(content: &[u8]) -> Result<Message, crate::error::DecodeError> {
        crate::codec::decode(content, limits::MAX_ENVELOPE_BYTES)
    }
}

impl Validate for Message {
    fn validate(&self, v: &mut Validator) {
        v.field("header", |v| self.header.validate(v));
        v.field("body", |v| self.body.validate(v));
        // A receipt names what it acknowledges twice; they must agree.
        if let Body::Receipt(receipt) = &self.body
            && self.header.in_reply_to != Some(receipt.acknowledged)
        {
            v.field("header", |v| {
                v.field("in_reply_to", |v| {
                    v.fail("must be the acknowledged message's id")
                })
            });
        }
    }
}

/// The content of a message, by procedure.
// An inquiry is larger than the other bodies; a message is built once per
// send, so boxing would add noise for no measurable gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Inquiry procedure, steps 1-4.
    Inquiry(Inquiry),
    /// Response-to-inquiry procedure, steps 1-3.
    Response(Response),
    /// Neutral acknowledgement of receipt (Annex A para 10).
    Receipt(Receipt),
    /// Further information on an open thread.
    FollowUp(FollowUp),
    /// Closes an incident thread.
    Close(Close),
    /// The directory manager's connectivity check (Annex A para 8).
    Ping(Ping),
    /// A PoC's acknowledgement of a ping.
    PingReply(PingReply),
    /// Asks the other PoC's consent to share the thread with a named third party.
    ConsentRequest(ConsentRequest),
    /// Answers a consent request.
    ConsentReply(ConsentReply),
}

/// The kind of a [`Body`], without its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// [`Body::Inquiry`].
    Inquiry,
    /// [`Body::Response`].
    Response,
    /// [`Body::Receipt`].
    Receipt,
    /// [`Body::FollowUp`].
    FollowUp,
    /// [`Body::Close`].
    Close,
    /// [`Body::Ping`].
    Ping,
    /// [`Body::PingReply`].
    PingReply,
    /// [`Body::ConsentRequest`].
    ConsentRequest,
    /// [`Body::ConsentReply`].
    ConsentReply,
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MessageKind::Inquiry => "inquiry",
            MessageKind::Response => "response",
            MessageKind::Receipt => "receipt",
            MessageKind::FollowUp => "follow-up",
            MessageKind::Close => "close",
            MessageKind::Ping => "ping",
            MessageKind::PingReply => "ping reply",
            MessageKind::ConsentRequest => "consent request",
            MessageKind::ConsentReply => "consent reply",
        })
    }
}

impl Body {
    /// The kind of this body.
    pub fn kind(&self) -> MessageKind {
        match self {
            Body::Inquiry(_) => MessageKind::Inquiry,
            Body::Response(_) => MessageKind::Response,
            Body::Receipt(_) => MessageKind::Receipt,
            Body::FollowUp(_) => MessageKind::FollowUp,
            Body::Close(_) => MessageKind::Close,
            Body::Ping(_) => MessageKind::Ping,
            Body::PingReply(_) => MessageKind::PingReply,
            Body::ConsentRequest(_) => MessageKind::ConsentRequest,
            Body::ConsentReply(_) => MessageKind::ConsentReply,
        }
    }
}

impl Validate for Body {
    fn validate(&self, v: &mut Validator) {
        match self {
            Body::Inquiry(b) => v.field("inquiry", |v| b.validate(v)),
            Body::Response(b) => v.field("response", |v| b.validate(v)),
            Body::Receipt(_) | Body::Ping(_) | Body::PingReply(_) => {}
            Body::FollowUp(b) => v.field("follow_up", |v| b.validate(v)),
            Body::Close(b) => v.field("close", |v| b.validate(v)),
            Body::ConsentRequest(b) => v.field("consent_request", |v| b.validate(v)),
            Body::ConsentReply(b) => v.field("consent_reply", |v| b.validate(v)),
        }
    }
}

/// An inquiry about an ICT security incident (appendix to Annex A, "Inquiry
/// procedure").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inquiry {
    /// Step 1: the requester's name and entity.
    pub requester: Requester,
    /// Step 2: as much information as possible on the nature of the incident.
    pub incident: Incident,
    /// Step 3: the additional information requested.
    pub information_requested: Option<Text>,
    /// Step 3: the requester's contact details.
    pub contact: Contact,
    /// Step 3: time sensitivity.
    pub time_sensitivity: TimeSensitivity,
    /// Step 4: the preferred communication channel.
    pub preferred_channel: Option<Channel>,
    /// Step 4: the agency that becomes the primary point of contact for this incident.
    pub lead_agency: Option<String>,
    /// Supporting documents (IODEF, STIX, other).
    pub attachments: Vec<Attachment>,
}

impl Validate for Inquiry {
    fn validate(&self, v: &mut Validator) {
        v.field("requester", |v| self.requester.validate(v));
        v.field("incident", |v| self.incident.validate(v));
        v.field("information_requested", |v| {
            self.information_requested.validate(v)
        });
        v.field("contact", |v| self.contact.validate(v));
        v.field("preferred_channel", |v| self.preferred_channel.validate(v));
        v.optional_short_text("lead_agency", &self.lead_agency);
        v.list("attachments", &self.attachments, limits::MAX_ATTACHMENTS);
    }
}

/// Who is asking (inquiry step 1).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Requester {
    /// Name of the person.
    pub name: Option<String>,
    /// Title of the person.
    pub title: Option<String>,
    /// The entity or institution they belong to.
    pub entity: Option<String>,
}

impl Validate for Requester {
    fn validate(&self, v: &mut Validator) {
        v.optional_short_text("name", &self.name);
        v.optional_short_text("title", &self.title);
        v.optional_short_text("entity", &self.entity);
    }
}

/// The nature of the incident (inquiry step 2). Only the summary is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// One-paragraph summary. Required.
    pub summary: Text,
    /// Broad category.
    pub category: Option<IncidentCategory>,
    /// Longer description.
    pub description: Option<Text>,
    /// Sectors affected.
    pub affected_sectors: Vec<Sector>,
    /// Whether critical infrastructure is affected, if known.
    pub critical_infrastructure: Option<bool>,
    /// Technical indicators (addresses, domains, hashes, URLs...).
    pub indicators: Vec<Indicator>,
    /// When the activity was first seen.
    pub first_seen: Option<Timestamp>,
    /// When the activity was last seen.
    pub last_seen: Option<Timestamp>,
    /// Observed or feared impact.
    pub impact: Option<Text>,
}

impl Incident {
    /// An incident known only by its summary.
    pub fn summary_only(summary: Text) -> Self {
        Incident {
            summary,
            category: None,
            description: None,
            affected_sectors: Vec::new(),
            critical_infrastructure: None,
            indicators: Vec::new(),
            first_seen: None,
            last_seen: None,
            impact: None,
        }
    }
}

impl Validate for Incident {
    fn validate(&self, v: &mut Validator) {
        v.field("summary", |v| {
            if self.summary.original.trim().is_empty() {
                v.fail("the summary is the one required field of an inquiry");
            }
            self.summary.validate(v);
        });
        v.field("category", |v| self.category.validate(v));
        v.field("description", |v| self.description.validate(v));
        v.list(
            "affected_sectors",
            &self.affected_sectors,
            limits::MAX_SECTORS,
        );
        v.list("indicators", &self.indicators, limits::MAX_INDICATORS);
        if let (Some(first), Some(last)) = (self.first_seen, self.last_seen)
            && last < first
        {
            v.field("last_seen", |v| v.fail("is before first_seen"));
        }
        v.field("impact", |v| self.impact.validate(v));
    }
}

/// Broad incident categories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IncidentCategory {
    /// Denial of service.
    DenialOfService,
    /// Malware infection or distribution.
    Malware,
    /// Ransomware.
    Ransomware,
    /// Phishing or social engineering.
    Phishing,
    /// Unauthorised access or intrusion.
    Intrusion,
    /// Data breach or exfiltration.
    DataBreach,
    /// Scanning or reconnaissance.
    Scanning,
    /// Exploited vulnerability.
    Vulnerability,
    /// Defacement.
    Defacement,
    /// Anything else, named.
    Other(String),
}

impl Validate for IncidentCategory {
    fn validate(&self, v: &mut Validator) {
        if let IncidentCategory::Other(name) = self {
            v.non_empty_short_text("other", name);
        }
    }
}

/// Sectors, critical-infrastructure ones first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sector {
    /// Energy (electricity, oil, gas).
    Energy,
    /// Water and wastewater.
    Water,
    /// Health care.
    Health,
    /// Banking and finance.
    Finance,
    /// Transport.
    Transport,
    /// Telecommunications and internet infrastructure.
    Telecommunications,
    /// Government services.
    Government,
    /// Emergency services.
    EmergencyServices,
    /// Food and agriculture.
    Food,
    /// Manufacturing.
    Manufacturing,
    /// Elections.
    Elections,
    /// Education and research.
    Education,
    /// Anything else, named.
    Other(String),
}

impl Validate for Sector {
    fn validate(&self, v: &mut Validator) {
        if let Sector::Other(name) = self {
            v.non_empty_short_text("other", name);
        }
    }
}

/// An IP address as raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpAddress {
    /// IPv4, 4 bytes.
    V4([u8; 4]),
    /// IPv6, 16 bytes.
    V6([u8; 16]),
}

impl From<std::net::IpAddr> for IpAddress {
    fn from(addr: std::net::IpAddr) -> Self {
        match addr {
            std::net::IpAddr::V4(a) => IpAddress::V4(a.octets()),
            std::net::IpAddr::V6(a) => IpAddress::V6(a.octets()),
        }
    }
}

impl From<IpAddress> for std::net::IpAddr {
    fn from(addr: IpAddress) -> Self {
        match addr {
            IpAddress::V4(a) => std::net::IpAddr::from(a),
            IpAddress::V6(a) => std::net::IpAddr::from(a),
        }
    }
}

/// Hash algorithms for file indicators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HashAlgorithm {
    /// MD5 (16 bytes; still common in incident data).
    Md5,
    /// SHA-1 (20 bytes).
    Sha1,
    /// SHA-256 (32 bytes).
    Sha256,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl HashAlgorithm {
    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Md5 => 16,
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha512 => 64,
        }
    }
}

/// Transport protocol of a port indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransportProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A technical indicator of the incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Indicator {
    /// One address.
    Ip(IpAddress),
    /// A network in CIDR form.
    Network {
        /// Network address.
        address: IpAddress,
        /// Prefix length (at most 32 for IPv4, 128 for IPv6).
        prefix_len: u8,
    },
    /// A port, with its protocol when known.
    Port {
        /// Port number.
        number: u16,
        /// Protocol.
        protocol: Option<TransportProtocol>,
    },
    /// A domain name.
    Domain(String),
    /// A URL.
    Url(String),
    /// An e-mail address.
    Email(String),
    /// A file hash.
    Hash {
        /// The algorithm.
        algorithm: HashAlgorithm,
        /// The digest.
        #[serde(with = "crate::codec::hex_text::bytes")]
        digest: Vec<u8>,
    },
    /// An autonomous system number.
    Asn(u32),
    /// Any other indicator type, named.
    Other {
        /// Its type, e.g. `x509-fingerprint`.
        kind: String,
        /// Its value.
        value: String,
    },
}

impl Validate for Indicator {
    fn validate(&self, v: &mut Validator) {
        match self {
            Indicator::Ip(_) | Indicator::Port { .. } | Indicator::Asn(_) => {}
            Indicator::Network {
                address,
                prefix_len,
            } => {
                let max = match address {
                    IpAddress::V4(_) => 32,
                    IpAddress::V6(_) => 128,
                };
                if *prefix_len > max {
                    v.field("prefix_len", |v| {
                        v.fail(format!(
                            "{prefix_len} is longer than the address ({max} bits)"
                        ))
                    });
                }
            }
            Indicator::Domain(text) => v.non_empty_short_text("domain", text),
            Indicator::Email(text) => v.non_empty_short_text("email", text),
            Indicator::Url(text) => {
                if text.trim().is_empty() {
                    v.field("url", |v| v.fail("must not be empty"));
                }
                v.max_len("url", text.len(), 4096);
            }
            Indicator::Hash { algorithm, digest } => {
                if digest.len() != algorithm.digest_len() {
                    v.field("digest", |v| {
                        v.fail(format!(
                            "{} bytes, but {algorithm:?} digests are {}",
                            digest.len(),
                            algorithm.digest_len()
                        ))
                    });
                }
            }
            Indicator::Other { kind, value } => {
                v.non_empty_short_text("kind", kind);
                v.max_len("value", value.len(), 4096);
            }
        }
    }
}

/// Contact details (inquiry step 3). All optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contact {
    /// Telephone.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Anything else (secure fax, messenger handle...).
    pub other: Option<String>,
}

impl Validate for Contact {
    fn validate(&self, v: &mut Validator) {
        v.optional_short_text("phone", &self.phone);
        v.optional_short_text("email", &self.email);
        v.optional_short_text("other", &self.other);
    }
}

/// How urgent an inquiry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Urgency {
    /// No particular time pressure.
    Routine,
    /// Should be handled ahead of routine traffic.
    Priority,
    /// An urgent or significant ICT incident (Annex A para 5).
    Urgent,
}

/// Time sensitivity of an inquiry (inquiry step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSensitivity {
    /// Urgency level.
    pub urgency: Urgency,
    /// When the requester needs an answer, if there is a deadline.
    pub respond_by: Option<Timestamp>,
}

/// A communication channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Channel {
    /// This system (pocnet), end-to-end protected.
    Pocnet,
    /// Telephone, at this number.
    Phone(String),
    /// E-mail, at this address.
    Email(String),
    /// Anything else, described.
    Other(String),
}

impl Validate for Channel {
    fn validate(&self, v: &mut Validator) {
        match self {
            Channel::Pocnet => {}
            Channel::Phone(s) | Channel::Email(s) | Channel::Other(s) => {
                v.non_empty_short_text("channel", s)
            }
        }
    }
}

/// The content of an attachment, typed by format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachmentContent {
    /// An IODEF v2 (RFC 7970) XML document, byte for byte.
    Iodef(#[serde(with = "crate::codec::hex_text::bytes")] Vec<u8>),
    /// A STIX 2.1 JSON bundle, byte for byte.
    Stix(#[serde(with = "crate::codec::hex_text::bytes")] Vec<u8>),
    /// Anything else, with its media type.
    Other {
        /// Media type, e.g. `application/pdf`.
        media_type: String,
        /// The bytes.
        #[serde(with = "crate::codec::hex_text::bytes")]
        bytes: Vec<u8>,
    },
}

impl AttachmentContent {
    /// The bytes of the attachment.
    pub fn bytes(&self) -> &[u8] {
        match self {
            AttachmentContent::Iodef(b) | AttachmentContent::Stix(b) => b,
            AttachmentContent::Other { bytes, .. } => bytes,
        }
    }

    /// The media type.
    pub fn media_type(&self) -> &str {
        match self {
            AttachmentContent::Iodef(_) => "application/iodef+xml",
            AttachmentContent::Stix(_) => "application/stix+json;version=2.1",
            AttachmentContent::Other { media_type, .. } => media_type,
        }
    }
}

/// A document attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name shown to the operator.
    pub name: String,
    /// The content.
    pub content: AttachmentContent,
}

impl Validate for Attachment {
    fn validate(&self, v: &mut Validator) {
        v.non_empty_short_text("name", &self.name);
        if let AttachmentContent::Other { media_type, .. } = &self.content {
            v.non_empty_short_text("media_type", media_type);
        }
        v.max_len(
            "content",
            self.content.bytes().len(),
            limits::MAX_ATTACHMENT_BYTES,
        );
    }
}

/// A response to an inquiry (appendix to Annex A, "Response-to-inquiry
/// procedure").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Step 1 (an immediate answer) or step 2 (will consider, with an ETA).
    pub outcome: ResponseOutcome,
    /// Step 3: agreement on the communication channel.
    pub channel: Option<ChannelAgreement>,
    /// Step 3: the responding State's lead agency for this incident.
    pub lead_agency: Option<String>,
    /// Supporting documents.
    pub attachments: Vec<Attachment>,
}

impl Validate for Response {
    fn validate(&self, v: &mut Validator) {
        v.field("outcome", |v| match &self.outcome {
            ResponseOutcome::Immediate { answer } => v.field("answer", |v| answer.validate(v)),
            ResponseOutcome::WillFollowUp { note, .. } => v.field("note", |v| note.validate(v)),
        });
        v.field("channel", |v| {
            if let Some(ChannelAgreement::Propose(channel)) = &self.channel {
                channel.validate(v);
            }
        });
        v.optional_short_text("lead_agency", &self.lead_agency);
        v.list("attachments", &self.attachments, limits::MAX_ATTACHMENTS);
    }
}

/// What a response gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOutcome {
    /// Step 1: an immediate response.
    Immediate {
        /// The answer.
        answer: Text,
    },
    /// Step 2: the incident will be considered; more will follow.
    WillFollowUp {
        /// Estimated time by which more information will follow.
        eta: Option<Timestamp>,
        /// Anything said now.
        note: Option<Text>,
    },
}

/// Agreement on the channel proposed by the inquiry (response step 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelAgreement {
    /// The channel the inquiry proposed is accepted.
    Accept,
    /// Another channel is proposed.
    Propose(Channel),
}

/// A neutral acknowledgement that a message arrived.
///
/// **A receipt implies no agreement with the content and does not prejudice
/// the receiving State's position** (Annex A para 10). It names the message
/// by id (in the header's `in_reply_to`) and by digest, so the sender's
/// record shows exactly which bytes were received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The acknowledged message's id.
    pub acknowledged: MessageId,
    /// SHA-256 of the acknowledged message's signed content bytes.
    #[serde(with = "crate::codec::hex_text::array")]
    pub content_digest: [u8; 32],
    /// When the receiving node recorded it.
    pub received_at: Timestamp,
}

/// More information on an open thread, from either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// The information.
    pub text: Text,
    /// Further indicators.
    pub indicators: Vec<Indicator>,
    /// When the next update is expected, if more will follow.
    pub next_update_eta: Option<Timestamp>,
    /// Supporting documents.
    pub attachments: Vec<Attachment>,
}

impl Validate for FollowUp {
    fn validate(&self, v: &mut Validator) {
        v.field("text", |v| self.text.validate(v));
        v.list("indicators", &self.indicators, limits::MAX_INDICATORS);
        v.list("attachments", &self.attachments, limits::MAX_ATTACHMENTS);
    }
}

/// Why a thread is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// The incident is resolved.
    Resolved,
    /// No further action will be taken.
    NoFurtherAction,
    /// The inquiry is withdrawn.
    Withdrawn,
    /// Continued through another agreed channel.
    MovedToOtherChannel,
}

/// Closes an incident thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    /// Why.
    pub reason: CloseReason,
    /// Closing remarks.
    pub note: Option<Text>,
}

impl Validate for Close {
    fn validate(&self, v: &mut Validator) {
        v.field("note", |v| self.note.validate(v));
    }
}

/// The manager's connectivity check (Annex A para 8: ping tests every six
/// months, to be acknowledged within 48 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// The campaign.
    pub campaign: CampaignId,
    /// The reply deadline.
    pub reply_by: Timestamp,
}

/// A PoC's acknowledgement of a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    /// The campaign.
    pub campaign: CampaignId,
}

/// Asks consent to share the thread's content with a named third party
/// (Annex A para 11: not shared with third parties except by mutual consent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRequest {
    /// Who the content would be shared with.
    pub third_party: String,
    /// Why.
    pub purpose: Text,
    /// The handling the third party would be bound to.
    pub proposed_handling: Handling,
}

impl Validate for ConsentRequest {
    fn validate(&self, v: &mut Validator) {
        v.non_empty_short_text("third_party", &self.third_party);
        v.field("purpose", |v| self.purpose.validate(v));
    }
}

/// The answer to a consent request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentReply {
    /// The request answered.
    pub request: MessageId,
    /// Granted or declined.
    pub granted: bool,
    /// Conditions or reasons.
    pub note: Option<Text>,
}

impl Validate for ConsentReply {
    fn validate(&self, v: &mut Validator) {
        v.field("note", |v| self.note.validate(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_bytes_are_hex_in_json_and_round_trip() {
        let id = MessageId([0xab; 16]);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{}\"", "ab".repeat(16))
        );
        let attachment = AttachmentContent::Iodef(vec![1, 2, 255]);
        let json = serde_json::to_string(&attachment).unwrap();
        assert_eq!(json, r#"{"Iodef":"0102ff"}"#);
        assert_eq!(
            serde_json::from_str::<AttachmentContent>(&json).unwrap(),
            attachment
        );
        assert!(serde_json::from_str::<MessageId>("\"abc\"").is_err());
        assert!(serde_json::from_str::<AttachmentContent>(r#"{"Iodef":"zz"}"#).is_err());
    }

    #[test]
    fn an_id_typed_by_an_operator_is_exactly_32_hex_digits() {
        let id = MessageId([0xab; 16]);
        assert_eq!(MessageId::from_hex(&id.to_string()), Some(id));
        assert_eq!(MessageId::from_hex(&"AB".repeat(16)), Some(id));
        // A sign was taken as part of a byte ("+f" read as 0x0f).
        assert_eq!(MessageId::from_hex(&format!("+f{}", "ab".repeat(15))), None);
        assert_eq!(MessageId::from_hex(&"ab".repeat(15)), None);
        assert_eq!(MessageId::from_hex(&"ab".repeat(17)), None);
        assert_eq!(ThreadId::from_hex(&"zz".repeat(16)), None);
    }
}
