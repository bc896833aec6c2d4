//! Building messages from flags and template files: inquiries (flags over an
//! optional `--from-file` template) and attachments.

use std::path::{Path, PathBuf};

use poc_proto::message::{
    Attachment, AttachmentContent, Channel, ExerciseId, Handling, Header, IncidentCategory,
    Indicator, Inquiry, Language, Message, Sector, Text, Urgency,
};
use poc_proto::{Body, MessageId, PocId, ThreadId, Timestamp};
use serde::Deserialize;

use crate::fail::usage;
use crate::parse::{self, When};

/// Every inquiry field, typed, as given on the command line or in a template
/// file. `None` (or an empty list) means "not given here".
#[derive(Debug, Clone, Default)]
pub(crate) struct Draft {
    pub(crate) to: Option<PocId>,
    pub(crate) summary: Option<String>,
    pub(crate) english: Option<String>,
    pub(crate) category: Option<IncidentCategory>,
    pub(crate) description: Option<String>,
    pub(crate) indicators: Vec<Indicator>,
    pub(crate) sectors: Vec<Sector>,
    pub(crate) critical_infrastructure: Option<bool>,
    pub(crate) first_seen: Option<When>,
    pub(crate) last_seen: Option<When>,
    pub(crate) impact: Option<String>,
    pub(crate) request: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) entity: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) urgency: Option<Urgency>,
    pub(crate) respond_within: Option<When>,
    pub(crate) respond_by: Option<When>,
    pub(crate) channel: Option<Channel>,
    pub(crate) lead_agency: Option<String>,
    pub(crate) attach: Vec<PathBuf>,
    pub(crate) lang: Option<Language>,
    pub(crate) handling: Option<Handling>,
    pub(crate) exercise: Option<String>,
}

impl Draft {
    /// `self` (the command line) over `file` (a template): a field given on
    /// the command line wins; lists given on the command line replace the
    /// template's.
    pub(crate) fn over(self, file: Draft) -> Draft {
        fn list<T>(flags: Vec<T>, file: Vec<T>) -> Vec<T> {
            if flags.is_empty() { file } else { flags }
        }
        // A new summary on the command line makes the template's translation stale.
        let english = if self.summary.is_some() {
            self.english
        } else {
            self.english.or(file.english)
        };
        let (respond_within, respond_by) =
            if self.respond_within.is_some() || self.respond_by.is_some() {
                (self.respond_within, self.respond_by)
            } else {
                (file.respond_within, file.respond_by)
            };
        Draft {
            to: self.to.or(file.to),
            summary: self.summary.or(file.summary),
            english,
            category: self.category.or(file.category),
            description: self.description.or(file.description),
            indicators: list(self.indicators, file.indicators),
            sectors: list(self.sectors, file.sectors),
            critical_infrastructure: self
                .critical_infrastructure
                .or(file.critical_infrastructure),
            first_seen: self.first_seen.or(file.first_seen),
            last_seen: self.last_seen.or(file.last_seen),
            impact: self.impact.or(file.impact),
            request: self.request.or(file.request),
            name: self.name.or(file.name),
            title: self.title.or(file.title),
            entity: self.entity.or(file.entity),
            phone: self.phone.or(file.phone),
            email: self.email.or(file.email),
            urgency: self.urgency.or(file.urgency),
            respond_within,
            respond_by,
            channel: self.channel.or(file.channel),
            lead_agency: self.lead_agency.or(file.lead_agency),
            attach: list(self.attach, file.attach),
            lang: self.lang.or(file.lang),
            handling: self.handling.or(file.handling),
            exercise: self.exercise.or(file.exercise),
        }
    }

    /// Writes every field given here into `inquiry`.
    pub(crate) fn apply(&self, inquiry: &mut Inquiry, now: Timestamp) -> anyhow::Result<()> {
        let text = |s: &String| Text::new(s.clone());
        if let Some(summary) = &self.summary {
            inquiry.incident.summary = Text {
                original: summary.clone(),
                english: self.english.clone(),
            };
        } else if let Some(english) = &self.english {
            inquiry.incident.summary.english = Some(english.clone());
        }
        let incident = &mut inquiry.incident;
        if let Some(c) = &self.category {
            incident.category = Some(c.clone());
        }
        if let Some(d) = &self.description {
            incident.description = Some(text(d));
        }
        if !self.indicators.is_empty() {
            incident.indicators = self.indicators.clone();
        }
        if !self.sectors.is_empty() {
            incident.affected_sectors = self.sectors.clone();
        }
        if let Some(ci) = self.critical_infrastructure {
            incident.critical_infrastructure = Some(ci);
        }
        if let Some(w) = self.first_seen {
            incident.first_seen = Some(w.resolve(now));
        }
        if let Some(w) = self.last_seen {
            incident.last_seen = Some(w.resolve(now));
        }
        if let Some(i) = &self.impact {
            incident.impact = Some(text(i));
        }
        if let Some(r) = &self.request {
            inquiry.information_requested = Some(text(r));
        }
        let requester = &mut inquiry.requester;
        for (given, slot) in [
            (&self.name, &mut requester.name),
            (&self.title, &mut requester.title),
            (&self.entity, &mut requester.entity),
            (&self.phone, &mut inquiry.contact.phone),
            (&self.email, &mut inquiry.contact.email),
            (&self.lead_agency, &mut inquiry.lead_agency),
        ] {
            if let Some(value) = given {
                *slot = Some(value.clone());
            }
        }
        if let Some(u) = self.urgency {
            inquiry.time_sensitivity.urgency = u;
        }
        if let Some(w) = self.respond_within.or(self.respond_by) {
            let at = w.resolve(now);
            if at <= now {
                return Err(usage(
                    format!("the respond-by time {at} is already past"),
                    "give a future time, or a duration with --respond-within (e.g. 4h)",
                ));
            }
            inquiry.time_sensitivity.respond_by = Some(at);
        }
        if let Some(c) = &self.channel {
            inquiry.preferred_channel = Some(c.clone());
        }
        // Added to what a template or an imported IODEF document already
        // attached, never replacing it.
        for path in &self.attach {
            inquiry.attachments.push(attachment(path)?);
        }
        Ok(())
    }
}

/// A template file in its friendly form: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFields {
    to: Option<String>,
    summary: Option<String>,
    english: Option<String>,
    category: Option<String>,
    description: Option<String>,
    #[serde(default, alias = "indicator")]
    indicators: Vec<String>,
    #[serde(default, alias = "sector")]
    sectors: Vec<String>,
    critical_infrastructure: Option<bool>,
    first_seen: Option<String>,
    last_seen: Option<String>,
    impact: Option<String>,
    #[serde(alias = "information_requested")]
    request: Option<String>,
    name: Option<String>,
    title: Option<String>,
    entity: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    urgency: Option<String>,
    respond_within: Option<String>,
    respond_by: Option<String>,
    channel: Option<String>,
    lead_agency: Option<String>,
    #[serde(default, alias = "attachments")]
    attach: Vec<PathBuf>,
    #[serde(alias = "language")]
    lang: Option<String>,
    handling: Option<String>,
    exercise: Option<String>,
}

/// A template file: either the friendly form (flag names) or a whole
/// `Inquiry` in its serde form (as `poc show --json` prints message bodies).
#[derive(Debug)]
pub(crate) enum Template {
    /// Flag-named fields.
    Fields(Box<Draft>),
    /// A complete inquiry body.
    Inquiry(Box<Inquiry>),
}

/// TOML datetimes deserialize to a private marker map; turn them into strings.
fn untoml(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.len() == 1
                && let Some(serde_json::Value::String(s)) = map.get("$__toml_private_datetime")
            {
                *value = serde_json::Value::String(s.clone());
                return;
            }
            map.values_mut().for_each(untoml);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(untoml),
        _ => {}
    }
}

/// Reads an inquiry template (`.toml` or `.json`).
pub(crate) fn read_template(path: &Path) -> anyhow::Result<Template> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(
            format!("--from-file {shown}: {e}"),
            "give an inquiry template file (.toml or .json)",
        )
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let mut value: serde_json::Value = if is_json {
        serde_json::from_str(&text).map_err(|e| {
            usage(
                format!("{shown} is not valid JSON: {e}"),
                "fix the template file",
            )
        })?
    } else {
        toml::from_str(&text).map_err(|e| {
            usage(
                format!("{shown} is not valid TOML: {e}"),
                "fix the template file (or name it .json if it is JSON)",
            )
        })?
    };
    untoml(&mut value);
    if value.get("incident").is_some() {
        let inquiry: Inquiry = serde_json::from_value(value).map_err(|e| {
            usage(
                format!("{shown} looks like a whole inquiry body but does not decode: {e}"),
                "use the flag-named template form (summary = \"...\", indicators = [\"ip:...\"], ...)",
            )
        })?;
        return Ok(Template::Inquiry(Box::new(inquiry)));
    }
    let fields: FileFields = serde_json::from_value(value).map_err(|e| {
        usage(
            format!("{shown}: {e}"),
            "template fields have the flags' names: to, summary, english, category, description, indicators, sectors, critical_infrastructure, first_seen, last_seen, impact, request, name, title, entity, phone, email, urgency, respond_within, respond_by, channel, lead_agency, attach, lang, handling, exercise",
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    fields_to_draft(fields, &shown.to_string(), base).map(|d| Template::Fields(Box::new(d)))
}

fn fields_to_draft(f: FileFields, file: &str, base: &Path) -> anyhow::Result<Draft> {
    let field = |name: &'static str| {
        move |e: String| {
            usage(
                format!("{file}: field `{name}`: {e}"),
                "fix the template file",
            )
        }
    };
    fn opt<T>(
        value: Option<String>,
        parser: impl Fn(&str) -> Result<T, String>,
        err: impl Fn(String) -> anyhow::Error,
    ) -> anyhow::Result<Option<T>> {
        value.map(|v| parser(&v)).transpose().map_err(err)
    }
    if f.respond_within.is_some() && f.respond_by.is_some() {
        return Err(usage(
            format!("{file}: give respond_within or respond_by, not both"),
            "fix the template file",
        ));
    }
    Ok(Draft {
        to: opt(f.to, parse::poc_id, field("to"))?,
        summary: f.summary,
        english: f.english,
        category: opt(f.category, parse::category, field("category"))?,
        description: f.description,
        indicators: f
            .indicators
            .iter()
            .map(|i| parse::indicator(i))
            .collect::<Result<_, _>>()
            .map_err(field("indicators"))?,
        sectors: f
            .sectors
            .iter()
            .map(|s| parse::sector(s))
            .collect::<Result<_, _>>()
            .map_err(field("sectors"))?,
        critical_infrastructure: f.critical_infrastructure,
        first_seen: opt(f.first_seen, parse::at, field("first_seen"))?,
        last_seen: opt(f.last_seen, parse::at, field("last_seen"))?,
        impact: f.impact,
        request: f.request,
        name: f.name,
        title: f.title,
        entity: f.entity,
        phone: f.phone,
        email: f.email,
        urgency: opt(f.urgency, parse::urgency, field("urgency"))?,
        respond_within: opt(f.respond_within, parse::within, field("respond_within"))?,
        respond_by: opt(f.respond_by, parse::at, field("respond_by"))?,
        channel: opt(f.channel, parse::channel, field("channel"))?,
        lead_agency: f.lead_agency,
        attach: f
            .attach
            .into_iter()
            .map(|p| if p.is_relative() { base.join(p) } else { p })
            .collect(),
        lang: opt(f.lang, parse::language, field("lang"))?,
        handling: opt(f.handling, parse::handling, field("handling"))?,
        exercise: f.exercise,
    })
}

/// Whether XML bytes look like an IODEF document.
fn looks_like_iodef(bytes: &[u8]) -> bool {
    let head = bytes.get(..64 * 1024).unwrap_or(bytes);
    let text = String::from_utf8_lossy(head);
    text.contains("IODEF-Document") || text.contains("urn:ietf:params:xml:ns:iodef")
}

/// Whether JSON bytes are a STIX bundle (`"type": "bundle"` at the top).
fn looks_like_stix(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("type")
                .and_then(|t| t.as_str())
                .map(|t| t == "bundle")
        })
        .unwrap_or(false)
}

/// Reads a file as an attachment, typing it by content and extension.
pub(crate) fn attachment(path: &Path) -> anyhow::Result<Attachment> {
    let bytes = crate::interop::read_file(path, "--attach")?;
    let name = crate::interop::file_name(path, "attachment");
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let other = |media_type: &str, bytes: Vec<u8>| AttachmentContent::Other {
        media_type: media_type.to_owned(),
        bytes,
    };
    let content = match ext.as_str() {
        "xml" if looks_like_iodef(&bytes) => AttachmentContent::Iodef(bytes),
        "xml" => other("application/xml", bytes),
        // Labelled STIX only if it is a well-formed bundle: the receiver's
        // tools will trust the label.
        "json" if looks_like_stix(&bytes) => match poc_interop::stix::validate_bundle(&bytes) {
            Ok(_) => AttachmentContent::Stix(bytes),
            Err(e) => {
                return Err(usage(
                    format!(
                        "--attach {}: a STIX bundle, but malformed: {e}",
                        path.display()
                    ),
                    "fix the bundle, or rename it (not .json) to send it as an opaque file",
                ));
            }
        },
        "json" => other("application/json", bytes),
        "txt" | "log" => other("text/plain", bytes),
        "csv" => other("text/csv", bytes),
        "pdf" => other("application/pdf", bytes),
        "png" => other("image/png", bytes),
        "jpg" | "jpeg" => other("image/jpeg", bytes),
        "zip" => other("application/zip", bytes),
        "pcap" => other("application/vnd.tcpdump.pcap", bytes),
        _ => other("application/octet-stream", bytes),
    };
    Ok(Attachment { name, content })
}

/// Checks a body against every limit a receiver enforces, before it goes to
/// the daemon, so a bad field is reported as a usage error naming the field.
pub(crate) fn check_locally(
    to: &PocId,
    language: Language,
    handling: Handling,
    exercise: Option<&ExerciseId>,
    body: &Body,
) -> anyhow::Result<()> {
    let sender = PocId::new(if to.as_str() == "local.check" {
        "local.check2"
    } else {
        "local.check"
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let message = Message {
        header: Header {
            sender,
            recipient: to.clone(),
            message_id: MessageId([0; 16]),
            thread_id: ThreadId([0; 16]),
            in_reply_to: None,
            created_at: Timestamp(0),
            language,
            handling,
            exercise: exercise.cloned(),
        },
        body: body.clone(),
    };
    message.encode().map(|_| ()).map_err(|e| {
        usage(
            format!("the message is not valid: {e}"),
            "fix the flag or template field named above",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_templates() {
        let file = Draft {
            summary: Some("old".into()),
            english: Some("old translation".into()),
            name: Some("A".into()),
            indicators: vec![Indicator::Asn(1)],
            ..Draft::default()
        };
        let flags = Draft {
            summary: Some("new".into()),
            entity: Some("CERT-EE".into()),
            ..Draft::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.summary.as_deref(), Some("new"));
        assert_eq!(merged.english, None, "a stale translation is dropped");
        assert_eq!(merged.name.as_deref(), Some("A"));
        assert_eq!(merged.entity.as_deref(), Some("CERT-EE"));
        assert_eq!(merged.indicators, vec![Indicator::Asn(1)]);
        let mut inquiry = Inquiry::new_minimal(Text::new(""));
        merged.apply(&mut inquiry, Timestamp(100)).unwrap();
        assert_eq!(inquiry.incident.summary.original, "new");
        assert_eq!(inquiry.requester.entity.as_deref(), Some("CERT-EE"));
    }

    #[test]
    fn templates_read_in_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("inquiry.toml");
        std::fs::write(
            &toml_path,
            "to = \"FRA.cert\"\nsummary = \"DDoS\"\ncategory = \"ddos\"\nindicators = [\"ip:192.0.2.1\"]\nfirst_seen = 2026-11-18T11:06:40Z\nrespond_within = \"4h\"\n",
        )
        .unwrap();
        let Template::Fields(draft) = read_template(&toml_path).unwrap() else {
            panic!("expected fields");
        };
        assert_eq!(draft.to.unwrap().as_str(), "FRA.cert");
        assert_eq!(draft.first_seen, Some(When::At(Timestamp(1_795_000_000))));
        assert_eq!(draft.category, Some(IncidentCategory::DenialOfService));

        let json_path = dir.path().join("inquiry.json");
        let inquiry = Inquiry::new_minimal(Text::new("from json"));
        std::fs::write(&json_path, serde_json::to_string(&inquiry).unwrap()).unwrap();
        let Template::Inquiry(read) = read_template(&json_path).unwrap() else {
            panic!("expected a whole inquiry");
        };
        assert_eq!(*read, inquiry);

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "sumary = \"typo\"\n").unwrap();
        let err = read_template(&bad).unwrap_err();
        assert!(err.to_string().contains("sumary"), "{err}");
    }

    #[test]
    fn attachments_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let iodef = dir.path().join("incident.xml");
        std::fs::write(
            &iodef,
            "<IODEF-Document version=\"2.00\" xmlns=\"urn:ietf:params:xml:ns:iodef-2.0\"/>",
        )
        .unwrap();
        assert!(matches!(
            attachment(&iodef).unwrap().content,
            AttachmentContent::Iodef(_)
        ));
        let stix = dir.path().join("bundle.json");
        std::fs::write(
            &stix,
            r#"{"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": [
                {"type": "indicator", "spec_version": "2.1", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                 "created": "2026-11-24T22:15:00.000Z", "modified": "2026-11-24T22:15:00.000Z",
                 "pattern": "[ipv4-addr:value = '192.0.2.17']", "pattern_type": "stix", "valid_from": "2026-11-24T22:15:00Z"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            attachment(&stix).unwrap().content,
            AttachmentContent::Stix(_)
        ));
        // Looks like a bundle, but its id is not bundle--<uuid>: refused, not
        // sent labelled as STIX.
        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            r#"{"type": "bundle", "id": "bundle--1", "objects": []}"#,
        )
        .unwrap();
        let err = attachment(&bad).unwrap_err().to_string();
        assert!(
            err.contains("malformed") && err.contains("bundle--1"),
            "{err}"
        );
        let plain = dir.path().join("notes.json");
        std::fs::write(&plain, r#"{"type": "note"}"#).unwrap();
        assert_eq!(
            attachment(&plain).unwrap().content.media_type(),
            "application/json"
        );
        let blob = dir.path().join("sample.bin");
        std::fs::write(&blob, [0u8, 1, 2]).unwrap();
        let a = attachment(&blob).unwrap();
        assert_eq!(a.name, "sample.bin");
        assert_eq!(a.content.media_type(), "application/octet-stream");
        assert!(attachment(&dir.path().join("missing")).is_err());
    }
}
