//! Message bodies built from a scenario's injects and expected actions
//! (pure: times and attachment bytes come in as arguments).

use poc_proto::message::{
    Attachment, AttachmentContent, Close, CloseReason, FollowUp, Handling, IncidentCategory,
    Inquiry, Response, ResponseOutcome, Sector, Text, TimeSensitivity, Tlp, Urgency,
};
use poc_proto::{Body, Seconds, Timestamp};

use crate::scenario::Content;

/// A handling label as scenario files write it.
pub fn handling(text: &str) -> Option<Handling> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_prefix("tlp:").unwrap_or(&t);
    Some(match t {
        "confidential" => Handling::Confidential,
        "clear" => Handling::Tlp(Tlp::Clear),
        "green" => Handling::Tlp(Tlp::Green),
        "amber" => Handling::Tlp(Tlp::Amber),
        "amber+strict" => Handling::Tlp(Tlp::AmberStrict),
        "red" => Handling::Tlp(Tlp::Red),
        _ => return None,
    })
}

/// An incident category; unknown words become `Other`.
pub fn category(text: &str) -> Option<IncidentCategory> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    Some(match t.to_ascii_lowercase().as_str() {
        "ddos" | "dos" => IncidentCategory::DenialOfService,
        "malware" => IncidentCategory::Malware,
        "ransomware" => IncidentCategory::Ransomware,
        "phishing" => IncidentCategory::Phishing,
        "intrusion" => IncidentCategory::Intrusion,
        "data-breach" => IncidentCategory::DataBreach,
        "scanning" => IncidentCategory::Scanning,
        "vulnerability" => IncidentCategory::Vulnerability,
        "defacement" => IncidentCategory::Defacement,
        _ => IncidentCategory::Other(t.to_owned()),
    })
}

/// `routine`, `priority`, `urgent`.
pub fn urgency(text: &str) -> Option<Urgency> {
    match text.trim().to_ascii_lowercase().as_str() {
        "routine" => Some(Urgency::Routine),
        "priority" => Some(Urgency::Priority),
        "urgent" => Some(Urgency::Urgent),
        _ => None,
    }
}

fn sector(text: &str) -> Sector {
    match text.trim().to_ascii_lowercase().as_str() {
        "energy" => Sector::Energy,
        "water" => Sector::Water,
        "health" => Sector::Health,
        "finance" => Sector::Finance,
        "transport" => Sector::Transport,
        "telecommunications" => Sector::Telecommunications,
        "government" => Sector::Government,
        "emergency-services" => Sector::EmergencyServices,
        other => Sector::Other(other.to_owned()),
    }
}

/// An attachment from a file's name and bytes: `.xml` as IODEF, `.json` as
/// STIX, anything else as `application/octet-stream`.
pub fn attachment(name: &str, bytes: Vec<u8>) -> Attachment {
    let lower = name.to_ascii_lowercase();
    let content = if lower.ends_with(".xml") {
        AttachmentContent::Iodef(bytes)
    } else if lower.ends_with(".json") {
        AttachmentContent::Stix(bytes)
    } else {
        AttachmentContent::Other {
            media_type: "application/octet-stream".into(),
            bytes,
        }
    };
    Attachment {
        name: name.to_owned(),
        content,
    }
}

/// Real time `scenario_seconds` of scenario time after `now`.
fn later(now: Timestamp, scenario_seconds: u64, scale: u32) -> Timestamp {
    now.plus(Seconds(scenario_seconds.div_ceil(u64::from(scale.max(1)))))
}

/// An inquiry inject's body, as sent at real time `now`.
pub fn inquiry(c: &Content, now: Timestamp, scale: u32, attachments: Vec<Attachment>) -> Body {
    let mut q = Inquiry::new_minimal(Text::new(c.summary.clone().unwrap_or_default()));
    q.incident.description = c.description.clone().map(Text::new);
    q.incident.category = c.category.as_deref().and_then(category);
    q.incident.critical_infrastructure = c.critical_infrastructure;
    q.incident.affected_sectors = c.sectors.iter().map(|s| sector(s)).collect();
    q.information_requested = c.text.clone().map(Text::new);
    q.time_sensitivity = TimeSensitivity {
        urgency: c
            .urgency
            .as_deref()
            .and_then(urgency)
            .unwrap_or(Urgency::Routine),
        respond_by: c.respond_within.map(|w| later(now, w, scale)),
    };
    q.preferred_channel = Some(poc_proto::message::Channel::Pocnet);
    q.attachments = attachments;
    Body::Inquiry(q)
}

/// A response: with an ETA, "will consider and follow up"; else an answer.
pub fn response(text: Option<&str>, eta: Option<u64>, now: Timestamp, scale: u32) -> Body {
    let outcome = match eta {
        Some(eta) => ResponseOutcome::WillFollowUp {
            eta: Some(later(now, eta, scale)),
            note: text.map(Text::new),
        },
        None => ResponseOutcome::Immediate {
            answer: Text::new(
                text.unwrap_or("Acknowledged; see our answer in the exercise brief."),
            ),
        },
    };
    Body::Response(Response {
        outcome,
        channel: Some(poc_proto::message::ChannelAgreement::Accept),
        lead_agency: None,
        attachments: Vec::new(),
    })
}

/// A follow-up.
pub fn follow_up(text: Option<&str>, eta: Option<u64>, now: Timestamp, scale: u32) -> Body {
    Body::FollowUp(FollowUp {
        text: Text::new(text.unwrap_or("Further information follows.")),
        indicators: Vec::new(),
        next_update_eta: eta.map(|e| later(now, e, scale)),
        attachments: Vec::new(),
    })
}

/// A close.
pub fn close(text: Option<&str>) -> Body {
    Body::Close(Close {
        reason: CloseReason::Resolved,
        note: text.map(Text::new),
    })
}
