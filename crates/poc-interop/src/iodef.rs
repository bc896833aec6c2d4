//! IODEF v2 (RFC 7970) import into an [`Inquiry`] and export from one.
//!
//! Import is lenient about what it understands (everything not mapped stays
//! in the original document, attached byte for byte, and is listed in the
//! notes) and strict about hostile input (see [`crate::xml`]).
//!
//! Import mapping (first Incident only; elements matched by local name in the
//! IODEF 2.0 namespace, whatever the prefix):
//! - summary: first Incident/Description, else "IODEF incident <IncidentID>";
//!   description: IncidentID, further Descriptions, EventData Descriptions;
//!   impact: Assessment/*Impact type, severity and Description;
//!   category: only when the summary names DDoS, ransomware, phishing or malware.
//! - first_seen: StartTime, else DetectTime; last_seen: EndTime.
//! - requester/contact: the `creator` Contact (else the first): ContactName
//!   (entity, or name for `type="person"`), Email/EmailTo, Telephone.
//! - indicators, in document order, de-duplicated, from EventData (nested),
//!   IndicatorData and RelatedActivity: Address by category, Service/Port
//!   (protocol from `ip-protocol`), DomainData/Name, URL, EmailFrom/EmailTo,
//!   Hash (ds:DigestMethod + ds:DigestValue), BulkObservableList lines.
//!   Method/Reference URLs are links to reports, not indicators, and are
//!   skipped (noted). Registry keys, certificates, file names, RelatedDNS
//!   and the like stay only in the attachment (noted).
//! - text values are whitespace-collapsed; URLs, addresses and digests, which
//!   the samples wrap across lines, have all whitespace removed.

use poc_proto::limits;
use poc_proto::message::{
    Attachment, AttachmentContent, Contact, Handling, HashAlgorithm, Incident, IncidentCategory,
    Indicator, Inquiry, IpAddress, Language, Requester, Text, TimeSensitivity, TransportProtocol,
    Urgency,
};
use poc_proto::time::Timestamp;

use crate::tlp;
use crate::util::{
    base64_decode, base64_encode, collapse, format_datetime, hex_decode, parse_datetime, strip_ws,
};
use crate::xml::{self, Element, Limits};

/// The IODEF 2.0 XML namespace.
pub const IODEF_NS: &str = "urn:ietf:params:xml:ns:iodef-2.0";
/// The XML Signature namespace (IODEF hashes use its `DigestMethod`/`DigestValue`).
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Most indicators taken from one document (the protocol's own cap).
const MAX_INDICATORS: usize = 4096;

/// Why an IODEF document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IodefError {
    /// The document is larger than the cap.
    #[error("IODEF document is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The document has a DOCTYPE (DTDs and entities are never processed).
    #[error("IODEF document has a DOCTYPE declaration; DTDs and entity definitions are refused")]
    DoctypeRefused,
    /// A reference to an entity other than the five XML predefined ones.
    #[error("IODEF document references undefined entity &{0};")]
    UndefinedEntity(String),
    /// Elements nested deeper than the cap.
    #[error("IODEF document nests elements deeper than {limit} levels")]
    TooDeep {
        /// The cap.
        limit: usize,
    },
    /// More elements than the cap.
    #[error("IODEF document has more than {limit} elements")]
    TooManyElements {
        /// The cap.
        limit: usize,
    },
    /// A text node or attribute value longer than the cap.
    #[error("IODEF document has a text or attribute value longer than {limit} bytes")]
    ValueTooLong {
        /// The cap.
        limit: usize,
    },
    /// Not well-formed XML.
    #[error("IODEF document is not well-formed XML: {0}")]
    Syntax(String),
    /// Well-formed, but not an IODEF 2.0 document.
    #[error("not an IODEF 2.0 document: {0}")]
    NotIodef(String),
}

/// The result of importing an IODEF document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IodefImport {
    /// The inquiry built from the first Incident, with the document attached.
    pub inquiry: Inquiry,
    /// Handling derived from the Incident's `restriction` attribute.
    pub handling: Handling,
    /// What was lossy or kept only in the attachment, for the operator.
    pub notes: Vec<String>,
}

/// Imports with the default [`Limits`].
pub fn import(xml: &[u8]) -> Result<IodefImport, IodefError> {
    import_with_limits(xml, &Limits::default())
}

/// Imports an IODEF 2.0 document, enforcing `limits`.
pub fn import_with_limits(xml: &[u8], limits: &Limits) -> Result<IodefImport, IodefError> {
    let root = xml::parse(xml, limits)?;
    if root.name != "IODEF-Document" {
        return Err(IodefError::NotIodef(format!(
            "the root element is <{}>, not <IODEF-Document>",
            root.name
        )));
    }
    if root.ns.as_deref() != Some(IODEF_NS) {
        return Err(IodefError::NotIodef(format!(
            "the root element is in namespace {:?}, not {IODEF_NS:?}",
            root.ns.as_deref().unwrap_or("(none)")
        )));
    }
    let mut notes = Vec::new();
    match root.attr("version") {
        Some("2.00") => {}
        Some(v) => notes.push(format!("IODEF-Document version {v:?}, expected \"2.00\"")),
        None => notes.push("IODEF-Document has no version attribute".into()),
    }
    let mut incidents = root.children_named(IODEF_NS, "Incident");
    let incident = incidents
        .next()
        .ok_or_else(|| IodefError::NotIodef("the document contains no Incident".into()))?;
    let extra = incidents.count();
    if extra > 0 {
        notes.push(format!(
            "{extra} further Incident(s) kept only in the attached document"
        ));
    }

    let mapped = tlp::from_iodef_restriction(incident.attr("restriction"));
    if let Some(note) = mapped.note() {
        notes.push(note.to_string());
    }
    let handling = mapped.value();

    let text_of = |e: &Element| collapse(&e.text);
    let incident_id = incident
        .child(IODEF_NS, "IncidentID")
        .map(text_of)
        .unwrap_or_default();
    let descriptions: Vec<String> = incident
        .children_named(IODEF_NS, "Description")
        .map(text_of)
        .filter(|d| !d.is_empty())
        .collect();
    let summary = match descriptions.first() {
        Some(d) => d.clone(),
        None if !incident_id.is_empty() => {
            notes.push("the Incident has no Description: the summary is its IncidentID".into());
            format!("IODEF incident {incident_id}")
        }
        None => {
            return Err(IodefError::NotIodef(
                "the Incident has neither IncidentID nor Description".into(),
            ));
        }
    };

    // Longer description: further incident descriptions, event descriptions.
    let mut long = Vec::new();
    if !incident_id.is_empty() {
        let name = incident
            .child(IODEF_NS, "IncidentID")
            .and_then(|e| e.attr("name"))
            .unwrap_or("?");
        long.push(format!("IODEF IncidentID {incident_id} ({name})"));
    }
    long.extend(descriptions.iter().skip(1).cloned());
    for event in incident.children_named(IODEF_NS, "EventData") {
        long.extend(
            event
                .children_named(IODEF_NS, "Description")
                .map(text_of)
                .filter(|d| !d.is_empty()),
        );
    }

    // Impact from Assessment.
    let mut impacts = Vec::new();
    for assessment in incident.children_named(IODEF_NS, "Assessment") {
        for impact in &assessment.children {
            if impact.ns.as_deref() != Some(IODEF_NS) || !impact.name.ends_with("Impact") {
                continue;
            }
            let mut line = impact.name.clone();
            let attrs: Vec<String> = ["type", "severity", "completion"]
                .iter()
                .filter_map(|k| impact.attr(k).map(|v| format!("{k}={v}")))
                .collect();
            if !attrs.is_empty() {
                line = format!("{line} ({})", attrs.join(", "));
            }
            let desc: Vec<String> = impact
                .children_named(IODEF_NS, "Description")
                .map(text_of)
                .filter(|d| !d.is_empty())
                .collect();
            if !desc.is_empty() {
                line = format!("{line}: {}", desc.join(" "));
            }
            impacts.push(line);
        }
    }

    let category = infer_category(&summary);
    if let Some(c) = &category {
        notes.push(format!("category {c:?} inferred from the summary text"));
    }

    // Times.
    let time = |name: &str| -> Option<Timestamp> {
        let e = incident.child(IODEF_NS, name)?;
        parse_datetime(&e.text)
    };
    for name in ["StartTime", "DetectTime", "EndTime"] {
        if let Some(e) = incident.child(IODEF_NS, name)
            && parse_datetime(&e.text).is_none()
        {
            notes.push(format!("unreadable {name} {:?} ignored", collapse(&e.text)));
        }
    }
    let first_seen = time("StartTime").or_else(|| time("DetectTime"));
    let mut last_seen = time("EndTime");
    if let (Some(first), Some(last)) = (first_seen, last_seen)
        && last < first
    {
        notes.push("EndTime is before StartTime/DetectTime: ignored".into());
        last_seen = None;
    }

    // Contacts: the first one (creator preferred) becomes requester and contact.
    let mut requester = Requester::default();
    let mut contact = Contact::default();
    let contacts: Vec<&Element> = incident.children_named(IODEF_NS, "Contact").collect();
    let chosen = contacts
        .iter()
        .find(|c| c.attr("role") == Some("creator"))
        .or_else(|| contacts.first());
    if let Some(c) = chosen {
        let name = short(
            c.child(IODEF_NS, "ContactName").map(text_of),
            "ContactName",
            &mut notes,
        );
        if c.attr("type") == Some("person") {
            requester.name = name;
            requester.title = short(
                c.child(IODEF_NS, "ContactTitle").map(text_of),
                "ContactTitle",
                &mut notes,
            );
        } else {
            requester.entity = name;
        }
        contact.email = short(
            c.child(IODEF_NS, "Email")
                .and_then(|e| e.child(IODEF_NS, "EmailTo"))
                .map(|e| strip_ws(&e.text)),
            "EmailTo",
            &mut notes,
        );
        contact.phone = short(
            c.child(IODEF_NS, "Telephone")
                .and_then(|e| e.child(IODEF_NS, "TelephoneNumber"))
                .map(text_of),
            "TelephoneNumber",
            &mut notes,
        );
    }
    if contacts.len() > 1 {
        notes.push(format!(
            "{} further Contact(s) kept only in the attached document",
            contacts.len() - 1
        ));
    }

    // Indicators.
    let mut walker = Walker {
        indicators: Vec::new(),
        notes: &mut notes,
        skipped: std::collections::BTreeSet::new(),
        seen: std::collections::HashSet::new(),
        capped: false,
    };
    for child in &incident.children {
        if child.ns.as_deref() == Some(IODEF_NS)
            && matches!(
                child.name.as_str(),
                "EventData" | "IndicatorData" | "RelatedActivity"
            )
        {
            walker.walk(child, None);
        }
    }
    let Walker {
        indicators,
        skipped,
        ..
    } = walker;
    if !skipped.is_empty() {
        notes.push(format!(
            "kept only in the attached document (not mapped to indicators): {}",
            skipped.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }

    let summary = fit(summary, limits::MAX_FREE_TEXT_BYTES, "summary", &mut notes);
    let long = (!long.is_empty()).then(|| {
        fit(
            long.join("\n"),
            limits::MAX_FREE_TEXT_BYTES,
            "description",
            &mut notes,
        )
    });
    let impacts = (!impacts.is_empty()).then(|| {
        fit(
            impacts.join("\n"),
            limits::MAX_FREE_TEXT_BYTES,
            "impact",
            &mut notes,
        )
    });
    let inquiry = Inquiry {
        requester,
        incident: Incident {
            summary: Text::new(summary),
            category,
            description: long.map(Text::new),
            affected_sectors: Vec::new(),
            critical_infrastructure: None,
            indicators,
            first_seen,
            last_seen,
            impact: impacts.map(Text::new),
        },
        information_requested: None,
        contact,
        time_sensitivity: TimeSensitivity {
            urgency: Urgency::Routine,
            respond_by: None,
        },
        preferred_channel: None,
        lead_agency: None,
        attachments: vec![Attachment {
            name: if incident_id.is_empty() {
                "incident.iodef.xml".into()
            } else {
                format!("iodef-{}.xml", sanitize_file_name(&incident_id))
            },
            content: AttachmentContent::Iodef(xml.to_vec()),
        }],
    };
    Ok(IodefImport {
        inquiry,
        handling,
        notes,
    })
}

/// Truncates `text` to at most `max` bytes (on a character boundary), noting it.
fn fit(text: String, max: usize, what: &str, notes: &mut Vec<String>) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    notes.push(format!(
        "{what} truncated from {} to {end} bytes (the full text is in the attachment)",
        text.len()
    ));
    text.get(..end).unwrap_or_default().to_string()
}

fn short(text: Option<String>, what: &str, notes: &mut Vec<String>) -> Option<String> {
    text.filter(|t| !t.is_empty())
        .map(|t| fit(t, limits::MAX_SHORT_TEXT_BYTES, what, notes))
}

fn sanitize_file_name(id: &str) -> String {
    id.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Category only when the summary says so plainly.
fn infer_category(summary: &str) -> Option<IncidentCategory> {
    let s = summary.to_lowercase();
    if s.contains("ddos") || s.contains("denial of service") || s.contains("denial-of-service") {
        Some(IncidentCategory::DenialOfService)
    } else if s.contains("ransomware") {
        Some(IncidentCategory::Ransomware)
    } else if s.contains("phishing") {
        Some(IncidentCategory::Phishing)
    } else if s.contains("malware") {
        Some(IncidentCategory::Malware)
    } else {
        None
    }
}

struct Walker<'n> {
    indicators: Vec<Indicator>,
    notes: &'n mut Vec<String>,
    skipped: std::collections::BTreeSet<String>,
    seen: std::collections::HashSet<String>,
    capped: bool,
}

impl Walker<'_> {
    fn push(&mut self, indicator: Indicator) {
        // The protocol's per-indicator limits (poc_proto::message::Indicator).
        let too_long = match &indicator {
            Indicator::Domain(t) | Indicator::Email(t) => t.len() > limits::MAX_SHORT_TEXT_BYTES,
            Indicator::Url(t) => t.len() > 4096,
            Indicator::Other { kind, value } => {
                kind.len() > limits::MAX_SHORT_TEXT_BYTES
                    || value.len() > 4096
                    || kind.trim().is_empty()
            }
            _ => false,
        };
        if too_long {
            self.notes.push(
                "an indicator longer than the protocol allows is kept only in the attachment"
                    .into(),
            );
            return;
        }
        // Indicator has no Hash impl; its Debug text is an exact key.
        if !self.seen.insert(format!("{indicator:?}")) {
            return;
        }
        if self.indicators.len() >= MAX_INDICATORS {
            if !self.capped {
                self.capped = true;
                self.notes.push(format!(
                    "more than {MAX_INDICATORS} indicators: the rest are only in the attachment"
                ));
            }
            return;
        }
        self.indicators.push(indicator);
    }

    fn walk(&mut self, e: &Element, protocol: Option<TransportProtocol>) {
        if e.ns.as_deref() != Some(IODEF_NS) {
            return;
        }
        match e.name.as_str() {
            "Address" => self.address(e),
            "DomainData" => {
                if let Some(name) = e.child(IODEF_NS, "Name") {
                    let name = strip_ws(&name.text);
                    if !name.is_empty() {
                        self.push(Indicator::Domain(name.trim_end_matches('.').to_string()));
                    }
                }
                if e.child(IODEF_NS, "RelatedDNS").is_some() {
                    self.skipped.insert("RelatedDNS".into());
                }
            }
            "Service" => {
                let protocol = match e.attr("ip-protocol").map(str::trim) {
                    Some("6") => Some(TransportProtocol::Tcp),
                    Some("17") => Some(TransportProtocol::Udp),
                    Some("132") => Some(TransportProtocol::Sctp),
                    _ => None,
                };
                for c in &e.children {
                    self.walk(c, protocol);
                }
            }
            "Port" => match e.text.trim().parse::<u16>() {
                Ok(number) => self.push(Indicator::Port { number, protocol }),
                Err(_) => self
                    .notes
                    .push(format!("unreadable Port {:?} ignored", collapse(&e.text))),
            },
            "Portlist" => {
                self.skipped.insert("Portlist".into());
            }
            "EmailFrom" | "EmailTo" => {
                let email = strip_ws(&e.text);
                if !email.is_empty() {
                    self.push(Indicator::Email(email));
                }
            }
            "Reference" => {
                // Method/Reference URLs point to reports about the activity,
                // not to the activity itself.
                self.skipped.insert("Reference (report URLs)".into());
            }
            "URL" => {
                let url = strip_ws(&e.text);
                if !url.is_empty() {
                    self.push(Indicator::Url(url));
                }
            }
            "Hash" => self.hash(e),
            "BulkObservable" => self.bulk(e),
            "Contact" => {
                self.skipped.insert("Contact inside EventData".into());
            }
            name @ ("WindowsRegistryKeysModified"
            | "CertificateData"
            | "FileName"
            | "FileSize"
            | "EmailSubject"
            | "EmailX-Mailer"
            | "NodeRole"
            | "OperatingSystem"
            | "ThreatActor"
            | "Campaign"
            | "Expectation"
            | "Discovery"
            | "ObservableReference"
            | "FuzzyHash"
            | "Location"
            | "Counter"
            | "RecordItem"
            | "RecordPattern"
            | "AdditionalData") => {
                self.skipped.insert(name.to_string());
            }
            _ => {
                for c in &e.children {
                    self.walk(c, protocol);
                }
            }
        }
    }

    fn address(&mut self, e: &Element) {
        let raw = strip_ws(&e.text);
        let category = e.attr("category").unwrap_or("ipv6-addr");
        let bad = |w: &mut Self| {
            w.notes.push(format!(
                "unreadable Address {raw:?} (category {category}) kept as an \"other\" indicator"
            ));
        };
        let indicator = match category {
            "ipv4-addr" | "ipv6-addr" => match raw.parse::<std::net::IpAddr>() {
                Ok(ip) => Indicator::Ip(IpAddress::from(ip)),
                Err(_) => {
                    bad(self);
                    Indicator::Other {
                        kind: category.into(),
                        value: raw.clone(),
                    }
                }
            },
            "ipv4-net" | "ipv6-net" => match parse_cidr(&raw) {
                Some((address, prefix_len)) => Indicator::Network {
                    address,
                    prefix_len,
                },
                None => {
                    bad(self);
                    Indicator::Other {
                        kind: category.into(),
                        value: raw.clone(),
                    }
                }
            },
            "asn" => match raw.trim_start_matches("AS").parse::<u32>() {
                Ok(n) => Indicator::Asn(n),
                Err(_) => {
                    bad(self);
                    Indicator::Other {
                        kind: "asn".into(),
                        value: raw.clone(),
                    }
                }
            },
            "site-uri" => Indicator::Url(raw.clone()),
            "e-mail" => Indicator::Email(raw.clone()),
            "ext-value" => Indicator::Other {
                kind: e.attr("ext-category").unwrap_or("ext-value").to_string(),
                value: collapse(&e.text),
            },
            other => Indicator::Other {
                kind: other.to_string(),
                value: collapse(&e.text),
            },
        };
        if !raw.is_empty() {
            self.push(indicator);
        }
    }

    fn hash(&mut self, e: &Element) {
        let method = e
            .child(DSIG_NS, "DigestMethod")
            .and_then(|m| m.attr("Algorithm"))
            .unwrap_or("");
        let value = e
            .child(DSIG_NS, "DigestValue")
            .map(|v| strip_ws(&v.text))
            .unwrap_or_default();
        let Some(algorithm) = hash_algorithm(method) else {
            self.notes.push(format!(
                "hash with unsupported algorithm {method:?} kept only in the attachment"
            ));
            return;
        };
        match decode_digest(&value, algorithm) {
            Some((digest, note)) => {
                if let Some(note) = note {
                    self.notes.push(note);
                }
                self.push(Indicator::Hash { algorithm, digest });
            }
            None => self.notes.push(format!(
                "DigestValue {value:?} is not a {algorithm:?} digest in base64 or hex; kept only in the attachment"
            )),
        }
    }

    fn bulk(&mut self, e: &Element) {
        let kind = match e.attr("type") {
            Some("ext-value") => e.attr("ext-type").unwrap_or("ext-value"),
            Some(t) => t,
            None => "unknown",
        };
        let Some(list) = e.child(IODEF_NS, "BulkObservableList") else {
            return;
        };
        // RFC 7970 §3.24.1: one observable per line.
        for line in list.text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let indicator = match kind {
                "fqdn" | "domain-name" => Indicator::Domain(line.trim_end_matches('.').to_string()),
                "site-uri" | "url" => Indicator::Url(line.to_string()),
                "email-address" | "e-mail" | "email" => Indicator::Email(line.to_string()),
                "ipv4-addr" | "ipv6-addr" => match line.parse::<std::net::IpAddr>() {
                    Ok(ip) => Indicator::Ip(IpAddress::from(ip)),
                    Err(_) => Indicator::Other {
                        kind: kind.into(),
                        value: line.into(),
                    },
                },
                _ => Indicator::Other {
                    kind: kind.to_string(),
                    value: collapse(line),
                },
            };
            self.push(indicator);
        }
    }
}

fn parse_cidr(text: &str) -> Option<(IpAddress, u8)> {
    let (addr, len) = text.split_once('/')?;
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then(|| (IpAddress::from(addr), len))
}

fn hash_algorithm(uri: &str) -> Option<HashAlgorithm> {
    let name = uri.rsplit('#').next().unwrap_or(uri).to_ascii_lowercase();
    match name.as_str() {
        "md5" => Some(HashAlgorithm::Md5),
        "sha1" => Some(HashAlgorithm::Sha1),
        "sha256" => Some(HashAlgorithm::Sha256),
        "sha512" => Some(HashAlgorithm::Sha512),
        _ => None,
    }
}

fn algorithm_uri(algorithm: HashAlgorithm) -> &'static str {
    match algorithm {
        HashAlgorithm::Md5 => "http://www.w3.org/2001/04/xmldsig-more#md5",
        HashAlgorithm::Sha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
        HashAlgorithm::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
        HashAlgorithm::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
    }
}

/// XML-DSig says base64; samples in the wild also use hex, and base64 of
/// `0x`-prefixed hex text. Accepts the three, noting the non-standard ones.
fn decode_digest(value: &str, algorithm: HashAlgorithm) -> Option<(Vec<u8>, Option<String>)> {
    let len = algorithm.digest_len();
    if value.len() == 2 * len
        && let Some(d) = hex_decode(value)
    {
        return Some((
            d,
            Some(format!(
                "{algorithm:?} DigestValue given in hex, not base64"
            )),
        ));
    }
    let decoded = base64_decode(value)?;
    if decoded.len() == len {
        return Some((decoded, None));
    }
    let text = std::str::from_utf8(&decoded).ok()?;
    let hex = text
        .trim()
        .strip_prefix("0x")
        .or_else(|| text.trim().strip_prefix("0X"))?;
    if hex.len() == 2 * len {
        let d = hex_decode(hex)?;
        return Some((
            d,
            Some(format!(
                "{algorithm:?} DigestValue is base64 of the hex text \"0x…\", not of the digest; decoded as hex"
            )),
        ));
    }
    None
}

/// What to put in an exported IODEF document besides the inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions<'a> {
    /// The IncidentID text (e.g. the thread id in hex).
    pub incident_id: &'a str,
    /// The IncidentID `name` attribute: the CSIRT/PoC issuing the id.
    pub incident_id_name: &'a str,
    /// GenerationTime.
    pub generation_time: Timestamp,
    /// The language of the inquiry's text (the message header's), → `xml:lang`.
    pub language: Language,
    /// The thread's handling label (→ `restriction`).
    pub handling: Handling,
    /// Texts of responses and follow-ups on the thread, added as Descriptions.
    pub responses: &'a [Text],
}

/// An exported document and what the export could not carry exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IodefExport {
    /// The IODEF 2.0 XML document (UTF-8).
    pub xml: String,
    /// Lossy mappings.
    pub notes: Vec<String>,
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn ip_text(ip: IpAddress) -> String {
    std::net::IpAddr::from(ip).to_string()
}

/// Exports an inquiry (and the thread's response texts) as an IODEF 2.0
/// document that validates against `iodef-2.0.xsd`.
pub fn export(inquiry: &Inquiry, options: &ExportOptions<'_>) -> IodefExport {
    use std::fmt::Write as _;
    let mut notes = Vec::new();
    let restriction = tlp::to_iodef_restriction(options.handling);
    if let Some(note) = restriction.note() {
        notes.push(note.to_string());
    }
    let restriction = restriction.value();
    let incident = &inquiry.incident;
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<IODEF-Document version=\"2.00\" xml:lang=\"{}\" xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">",
        options.language.tag()
    );
    let _ = writeln!(
        x,
        "  <Incident purpose=\"reporting\" restriction=\"{restriction}\">"
    );
    let _ = writeln!(
        x,
        "    <IncidentID name=\"{}\">{}</IncidentID>",
        esc(options.incident_id_name),
        esc(options.incident_id)
    );
    // Schema order: DetectTime?, StartTime?, EndTime?, ..., GenerationTime, Description*.
    if let Some(t) = incident.first_seen {
        let _ = writeln!(x, "    <StartTime>{}</StartTime>", format_datetime(t));
    }
    if let Some(t) = incident.last_seen {
        let _ = writeln!(x, "    <EndTime>{}</EndTime>", format_datetime(t));
    }
    let _ = writeln!(
        x,
        "    <GenerationTime>{}</GenerationTime>",
        format_datetime(options.generation_time)
    );
    let mut texts: Vec<&Text> = vec![&incident.summary];
    texts.extend(incident.description.as_ref());
    texts.extend(incident.impact.as_ref());
    texts.extend(options.responses.iter());
    for t in texts {
        let _ = writeln!(x, "    <Description>{}</Description>", esc(&t.original));
        if let Some(en) = &t.english {
            let _ = writeln!(
                x,
                "    <Description xml:lang=\"en\">{}</Description>",
                esc(en)
            );
        }
    }
    if incident.category.is_some() || !incident.affected_sectors.is_empty() {
        notes.push("category and sectors have no IODEF element here; not exported".into());
    }
    // Contact (required).
    x.push_str("    <Contact role=\"creator\" type=\"organization\">\n");
    let name = inquiry
        .requester
        .entity
        .as_ref()
        .or(inquiry.requester.name.as_ref());
    if let Some(name) = name {
        let _ = writeln!(x, "      <ContactName>{}</ContactName>", esc(name));
    }
    if let Some(title) = &inquiry.requester.title {
        let _ = writeln!(x, "      <ContactTitle>{}</ContactTitle>", esc(title));
    }
    if let Some(email) = &inquiry.contact.email {
        let _ = writeln!(x, "      <Email><EmailTo>{}</EmailTo></Email>", esc(email));
    }
    if let Some(phone) = &inquiry.contact.phone {
        let _ = writeln!(
            x,
            "      <Telephone><TelephoneNumber>{}</TelephoneNumber></Telephone>",
            esc(phone)
        );
    }
    x.push_str("    </Contact>\n");

    // EventData: one Flow/System/Node for addresses and domains, Services for
    // ports, Record/RecordData/FileData for hashes.
    let mut domains = Vec::new();
    let mut addresses = Vec::new();
    let mut services = Vec::new();
    let mut hashes = Vec::new();
    for indicator in &incident.indicators {
        match indicator {
            Indicator::Ip(ip) => {
                let cat = if matches!(ip, IpAddress::V4(_)) { "ipv4-addr" } else { "ipv6-addr" };
                addresses.push(format!("<Address category=\"{cat}\">{}</Address>", ip_text(*ip)));
            }
            Indicator::Network { address, prefix_len } => {
                let cat = if matches!(address, IpAddress::V4(_)) { "ipv4-net" } else { "ipv6-net" };
                addresses.push(format!(
                    "<Address category=\"{cat}\">{}/{prefix_len}</Address>",
                    ip_text(*address)
                ));
            }
            Indicator::Asn(n) => addresses.push(format!("<Address category=\"asn\">{n}</Address>")),
            Indicator::Url(u) => {
                addresses.push(format!("<Address category=\"site-uri\">{}</Address>", esc(u)))
            }
            Indicator::Email(e) => {
                addresses.push(format!("<Address category=\"e-mail\">{}</Address>", esc(e)))
            }
            Indicator::Other { kind, value } => addresses.push(format!(
                "<Address category=\"ext-value\" ext-category=\"{}\">{}</Address>",
                esc(kind),
                esc(value)
            )),
            Indicator::Domain(d) => {
                domains.push(format!("<DomainData><Name>{}</Name></DomainData>", esc(d)))
            }
            Indicator::Port { number, protocol } => {
                let proto = match protocol {
                    Some(TransportProtocol::Tcp) => " ip-protocol=\"6\"",
                    Some(TransportProtocol::Udp) => " ip-protocol=\"17\"",
                    Some(TransportProtocol::Sctp) => " ip-protocol=\"132\"",
                    None => "",
                };
                services.push(format!("<Service{proto}><Port>{number}</Port></Service>"));
            }
            Indicator::Hash { algorithm, digest } => hashes.push(format!(
                "<FileData><File><HashData scope=\"file-contents\"><Hash><ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue>{}</ds:DigestValue></Hash></HashData></File></FileData>",
                algorithm_uri(*algorithm),
                base64_encode(digest)
            )),
        }
    }
    if !domains.is_empty() || !addresses.is_empty() || !services.is_empty() || !hashes.is_empty() {
        notes.push(
            "indicators are exported in one System without a source/target role (pocnet does not record roles)"
                .into(),
        );
        x.push_str("    <EventData>\n");
        if !domains.is_empty() || !addresses.is_empty() || !services.is_empty() {
            x.push_str("      <Flow>\n        <System>\n          <Node>\n");
            for line in domains.iter().chain(addresses.iter()) {
                let _ = writeln!(x, "            {line}");
            }
            x.push_str("          </Node>\n");
            for line in &services {
                let _ = writeln!(x, "          {line}");
            }
            x.push_str("        </System>\n      </Flow>\n");
        }
        if !hashes.is_empty() {
            x.push_str("      <Record>\n        <RecordData>\n");
            for line in &hashes {
                let _ = writeln!(x, "          {line}");
            }
            x.push_str("        </RecordData>\n      </Record>\n");
        }
        x.push_str("    </EventData>\n");
    }
    x.push_str("  </Incident>\n</IODEF-Document>\n");
    IodefExport { xml: x, notes }
}
