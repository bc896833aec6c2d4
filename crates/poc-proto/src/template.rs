//! Annex A templates: which recommended fields a message leaves empty.
//!
//! Para 11 of Annex A asks for standardised templates that say what
//! information a message needs yet stay flexible enough to be sent **when
//! some information is not available**. So nothing here refuses a message:
//! [`missing_inquiry_fields`] and [`missing_response_fields`] list the
//! recommended fields of the appendix's procedures that are absent (or blank),
//! each with its stable machine name, the appendix step it comes from and a
//! hint for the operator, and the caller decides whether to send anyway.
//!
//! [`INQUIRY_FIELDS`] and [`RESPONSE_FIELDS`] list every recommended field in
//! template order, so a front end can render the whole template.

use crate::message::{
    Incident, Inquiry, Requester, Response, ResponseOutcome, Text, TimeSensitivity, Urgency,
};
use crate::time::Timestamp;

/// The appendix step of inquiry procedure step 1.
const INQUIRY_STEP_1: &str = "Inquiry procedure, step 1";
/// The appendix step of inquiry procedure step 2.
const INQUIRY_STEP_2: &str = "Inquiry procedure, step 2";
/// The appendix step of inquiry procedure step 3.
const INQUIRY_STEP_3: &str = "Inquiry procedure, step 3";
/// The appendix step of inquiry procedure step 4.
const INQUIRY_STEP_4: &str = "Inquiry procedure, step 4";
/// The appendix step of response procedure step 2.
const RESPONSE_STEP_2: &str = "Response-to-inquiry procedure, step 2";
/// The appendix step of response procedure step 3.
const RESPONSE_STEP_3: &str = "Response-to-inquiry procedure, step 3";

/// A recommended field of an Annex A template that a message leaves empty.
///
/// Reporting it never blocks sending (Annex A para 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MissingField {
    /// Stable machine name, the field's path in the message body, e.g.
    /// `requester.name`. Scripts and translations may key on it.
    pub name: &'static str,
    /// The step of the appendix to Annex A that asks for it, e.g.
    /// `Inquiry procedure, step 1`.
    pub step: &'static str,
    /// What to fill in, for the operator (English).
    pub hint: &'static str,
}

impl std::fmt::Display for MissingField {
    /// `name (step): hint`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name, self.step, self.hint)
    }
}

impl MissingField {
    /// Inquiry step 1: the requester's name.
    pub const REQUESTER_NAME: MissingField = MissingField {
        name: "requester.name",
        step: INQUIRY_STEP_1,
        hint: "give your name",
    };
    /// Inquiry step 1: the requester's entity.
    pub const REQUESTER_ENTITY: MissingField = MissingField {
        name: "requester.entity",
        step: INQUIRY_STEP_1,
        hint: "give the entity or institution you belong to",
    };
    /// Inquiry step 2: the incident's category.
    pub const INCIDENT_CATEGORY: MissingField = MissingField {
        name: "incident.category",
        step: INQUIRY_STEP_2,
        hint: "say what kind of incident this is (e.g. denial of service, ransomware)",
    };
    /// Inquiry step 2: a description beyond the summary.
    pub const INCIDENT_DESCRIPTION: MissingField = MissingField {
        name: "incident.description",
        step: INQUIRY_STEP_2,
        hint: "describe the nature of the incident in as much detail as possible",
    };
    /// Inquiry step 2: technical indicators.
    pub const INCIDENT_INDICATORS: MissingField = MissingField {
        name: "incident.indicators",
        step: INQUIRY_STEP_2,
        hint: "add technical indicators (addresses, domains, hashes, URLs...)",
    };
    /// Inquiry step 2: when the activity was first seen.
    pub const INCIDENT_FIRST_SEEN: MissingField = MissingField {
        name: "incident.first_seen",
        step: INQUIRY_STEP_2,
        hint: "say when the activity was first seen",
    };
    /// Inquiry step 3: what information is requested.
    pub const INFORMATION_REQUESTED: MissingField = MissingField {
        name: "information_requested",
        step: INQUIRY_STEP_3,
        hint: "say what additional information you request",
    };
    /// Inquiry step 3: a telephone number or e-mail address.
    pub const CONTACT_PHONE_OR_EMAIL: MissingField = MissingField {
        name: "contact.phone_or_email",
        step: INQUIRY_STEP_3,
        hint: "give a telephone number or an e-mail address where you can be reached",
    };
    /// Inquiry step 3: the respond-by time of an urgent inquiry.
    pub const RESPOND_BY: MissingField = MissingField {
        name: "time_sensitivity.respond_by",
        step: INQUIRY_STEP_3,
        hint: "the inquiry is urgent: say by when you need an answer",
    };
    /// Inquiry step 4: the preferred communication channel.
    pub const PREFERRED_CHANNEL: MissingField = MissingField {
        name: "preferred_channel",
        step: INQUIRY_STEP_4,
        hint: "nominate the preferred communication channel",
    };
    /// Inquiry step 4: the lead agency for this incident.
    pub const INQUIRY_LEAD_AGENCY: MissingField = MissingField {
        name: "lead_agency",
        step: INQUIRY_STEP_4,
        hint: "designate the agency in your country that becomes the primary point of contact for this incident",
    };
    /// Response step 2: the estimated timeframe of a "will follow up" response.
    pub const RESPONSE_ETA: MissingField = MissingField {
        name: "outcome.eta",
        step: RESPONSE_STEP_2,
        hint: "give an estimated timeframe for the follow-up",
    };
    /// Response step 3: agreement on the communication channel.
    pub const RESPONSE_CHANNEL: MissingField = MissingField {
        name: "channel",
        step: RESPONSE_STEP_3,
        hint: "accept the proposed communication channel or propose another",
    };
    /// Response step 3: the responding State's lead agency.
    pub const RESPONSE_LEAD_AGENCY: MissingField = MissingField {
        name: "lead_agency",
        step: RESPONSE_STEP_3,
        hint: "designate the agency in your country that becomes the primary point of contact for this incident",
    };
}

/// Every recommended field of an inquiry (appendix to Annex A, "Inquiry
/// procedure", steps 1-4), in template order. `time_sensitivity.respond_by`
/// is only recommended when the urgency is [`Urgency::Urgent`].
pub const INQUIRY_FIELDS: [MissingField; 11] = [
    MissingField::REQUESTER_NAME,
    MissingField::REQUESTER_ENTITY,
    MissingField::INCIDENT_CATEGORY,
    MissingField::INCIDENT_DESCRIPTION,
    MissingField::INCIDENT_INDICATORS,
    MissingField::INCIDENT_FIRST_SEEN,
    MissingField::INFORMATION_REQUESTED,
    MissingField::CONTACT_PHONE_OR_EMAIL,
    MissingField::RESPOND_BY,
    MissingField::PREFERRED_CHANNEL,
    MissingField::INQUIRY_LEAD_AGENCY,
];

/// Every recommended field of a response (appendix to Annex A,
/// "Response-to-inquiry procedure", steps 2-3), in template order.
/// `outcome.eta` is only recommended for a "will follow up" response.
pub const RESPONSE_FIELDS: [MissingField; 3] = [
    MissingField::RESPONSE_ETA,
    MissingField::RESPONSE_CHANNEL,
    MissingField::RESPONSE_LEAD_AGENCY,
];

/// Whether an optional string is absent or only white space.
fn blank(text: &Option<String>) -> bool {
    text.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// Whether an optional free text is absent or only white space.
fn blank_text(text: &Option<Text>) -> bool {
    text.as_ref().is_none_or(|t| t.original.trim().is_empty())
}

/// The recommended fields of the inquiry procedure (appendix to Annex A,
/// steps 1-4) that `inquiry` leaves empty, in template order.
///
/// Blank strings count as missing. An empty result means the template is
/// complete; a non-empty one never means the inquiry may not be sent
/// (Annex A para 11).
pub fn missing_inquiry_fields(inquiry: &Inquiry) -> Vec<MissingField> {
    let incident = &inquiry.incident;
    let checks = [
        // Step 1: name and entity.
        (blank(&inquiry.requester.name), MissingField::REQUESTER_NAME),
        (
            blank(&inquiry.requester.entity),
            MissingField::REQUESTER_ENTITY,
        ),
        // Step 2: as much information as possible on the nature of the incident.
        (incident.category.is_none(), MissingField::INCIDENT_CATEGORY),
        (
            blank_text(&incident.description),
            MissingField::INCIDENT_DESCRIPTION,
        ),
        (
            incident.indicators.is_empty(),
            MissingField::INCIDENT_INDICATORS,
        ),
        (
            incident.first_seen.is_none(),
            MissingField::INCIDENT_FIRST_SEEN,
        ),
        // Step 3: what is requested, contact details, time sensitivity.
        (
            blank_text(&inquiry.information_requested),
            MissingField::INFORMATION_REQUESTED,
        ),
        (
            blank(&inquiry.contact.phone) && blank(&inquiry.contact.email),
            MissingField::CONTACT_PHONE_OR_EMAIL,
        ),
        (
            inquiry.time_sensitivity.urgency == Urgency::Urgent
                && inquiry.time_sensitivity.respond_by.is_none(),
            MissingField::RESPOND_BY,
        ),
        // Step 4: preferred channel and lead agency.
        (
            inquiry.preferred_channel.is_none(),
            MissingField::PREFERRED_CHANNEL,
        ),
        (
            blank(&inquiry.lead_agency),
            MissingField::INQUIRY_LEAD_AGENCY,
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(missing, field)| missing.then_some(field))
        .collect()
}

/// The recommended fields of the response-to-inquiry procedure (appendix to
/// Annex A, steps 2-3) that `response` leaves empty, in template order.
///
/// Step 1 (an immediate answer) and step 2 (will follow up) are
/// alternatives, so an immediate answer is never asked for an ETA. As for
/// inquiries, a non-empty result never blocks sending (Annex A para 11).
pub fn missing_response_fields(response: &Response) -> Vec<MissingField> {
    let checks = [
        (
            matches!(
                response.outcome,
                ResponseOutcome::WillFollowUp { eta: None, .. }
            ),
            MissingField::RESPONSE_ETA,
        ),
        (response.channel.is_none(), MissingField::RESPONSE_CHANNEL),
        (
            blank(&response.lead_agency),
            MissingField::RESPONSE_LEAD_AGENCY,
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(missing, field)| missing.then_some(field))
        .collect()
}

impl Inquiry {
    /// An inquiry that gives only the incident's summary, the one required
    /// field; routine, with no deadline. Fill in what is known, then check
    /// [`missing_inquiry_fields`]; it can be sent as is (Annex A para 11).
    pub fn new_minimal(summary: Text) -> Inquiry {
        Inquiry {
            requester: Requester::default(),
            incident: Incident::summary_only(summary),
            information_requested: None,
            contact: Default::default(),
            time_sensitivity: TimeSensitivity {
                urgency: Urgency::Routine,
                respond_by: None,
            },
            preferred_channel: None,
            lead_agency: None,
            attachments: Vec::new(),
        }
    }
}

impl Response {
    /// An immediate response (response-to-inquiry procedure, step 1), with no
    /// channel agreement or lead agency yet.
    pub fn immediate(answer: Text) -> Response {
        Response {
            outcome: ResponseOutcome::Immediate { answer },
            channel: None,
            lead_agency: None,
            attachments: Vec::new(),
        }
    }

    /// A "will consider and follow up" response (response-to-inquiry
    /// procedure, step 2), with its estimated timeframe if one can be given.
    pub fn will_follow_up(eta: Option<Timestamp>, note: Option<Text>) -> Response {
        Response {
            outcome: ResponseOutcome::WillFollowUp { eta, note },
            channel: None,
            lead_agency: None,
            attachments: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Channel, ChannelAgreement, Contact, IncidentCategory, Indicator};

    fn names(fields: &[MissingField]) -> Vec<&'static str> {
        fields.iter().map(|f| f.name).collect()
    }

    fn complete_inquiry() -> Inquiry {
        let mut inquiry = Inquiry::new_minimal(Text::new("DDoS on the national tax portal"));
        inquiry.requester = Requester {
            name: Some("Mari Tamm".into()),
            title: None,
            entity: Some("CERT-EE".into()),
        };
        inquiry.incident.category = Some(IncidentCategory::DenialOfService);
        inquiry.incident.description = Some(Text::new("40 Gbit/s UDP reflection since 06:00"));
        inquiry.incident.indicators = vec![Indicator::Domain("c2.example".into())];
        inquiry.incident.first_seen = Some(Timestamp(1_795_000_000));
        inquiry.information_requested = Some(Text::new("Owners of the reflecting hosts"));
        inquiry.contact = Contact {
            phone: Some("+372 600 0000".into()),
            email: None,
            other: None,
        };
        inquiry.time_sensitivity = TimeSensitivity {
            urgency: Urgency::Urgent,
            respond_by: Some(Timestamp(1_795_086_400)),
        };
        inquiry.preferred_channel = Some(Channel::Pocnet);
        inquiry.lead_agency = Some("RIA".into());
        inquiry
    }

    #[test]
    fn minimal_inquiry_lacks_everything_but_respond_by() {
        let inquiry = Inquiry::new_minimal(Text::new("Phishing wave"));
        let missing = missing_inquiry_fields(&inquiry);
        assert_eq!(
            names(&missing),
            [
                "requester.name",
                "requester.entity",
                "incident.category",
                "incident.description",
                "incident.indicators",
                "incident.first_seen",
                "information_requested",
                "contact.phone_or_email",
                "preferred_channel",
                "lead_agency",
            ]
        );
        assert_eq!(missing[0].step, "Inquiry procedure, step 1");
        assert_eq!(missing[2].step, "Inquiry procedure, step 2");
        assert_eq!(missing[6].step, "Inquiry procedure, step 3");
        assert_eq!(missing[9].step, "Inquiry procedure, step 4");
        assert!(missing.iter().all(|f| !f.hint.is_empty()));
    }

    #[test]
    fn complete_inquiry_lacks_nothing() {
        assert_eq!(missing_inquiry_fields(&complete_inquiry()), []);
    }

    #[test]
    fn urgent_inquiry_without_deadline_asks_for_respond_by() {
        let mut inquiry = complete_inquiry();
        inquiry.time_sensitivity.respond_by = None;
        assert_eq!(missing_inquiry_fields(&inquiry), [MissingField::RESPOND_BY]);
        inquiry.time_sensitivity.urgency = Urgency::Priority;
        assert_eq!(missing_inquiry_fields(&inquiry), []);
    }

    #[test]
    fn blank_strings_count_as_missing() {
        let mut inquiry = complete_inquiry();
        inquiry.requester.name = Some("   ".into());
        inquiry.incident.description = Some(Text::new("\n"));
        inquiry.lead_agency = Some(String::new());
        assert_eq!(
            names(&missing_inquiry_fields(&inquiry)),
            ["requester.name", "incident.description", "lead_agency"]
        );
    }

    #[test]
    fn either_phone_or_email_is_enough() {
        let mut inquiry = complete_inquiry();
        inquiry.contact = Contact {
            phone: None,
            email: Some("cert@cert.ee".into()),
            other: None,
        };
        assert_eq!(missing_inquiry_fields(&inquiry), []);
        inquiry.contact = Contact {
            phone: None,
            email: None,
            other: Some("secure fax".into()),
        };
        assert_eq!(
            missing_inquiry_fields(&inquiry),
            [MissingField::CONTACT_PHONE_OR_EMAIL]
        );
    }

    #[test]
    fn response_fields() {
        let bare = Response::will_follow_up(None, None);
        let missing = missing_response_fields(&bare);
        assert_eq!(names(&missing), ["outcome.eta", "channel", "lead_agency"]);
        assert_eq!(missing[0].step, "Response-to-inquiry procedure, step 2");
        assert_eq!(missing[1].step, "Response-to-inquiry procedure, step 3");

        let with_eta = Response::will_follow_up(Some(Timestamp(5)), None);
        assert_eq!(
            names(&missing_response_fields(&with_eta)),
            ["channel", "lead_agency"]
        );

        let mut answer = Response::immediate(Text::new("The hosts are ours; being cleaned"));
        assert_eq!(
            names(&missing_response_fields(&answer)),
            ["channel", "lead_agency"]
        );
        answer.channel = Some(ChannelAgreement::Accept);
        answer.lead_agency = Some("ANSSI".into());
        assert_eq!(missing_response_fields(&answer), []);
    }

    #[test]
    fn field_lists_are_stable_and_unique_per_template() {
        for list in [&INQUIRY_FIELDS[..], &RESPONSE_FIELDS[..]] {
            let mut seen = std::collections::HashSet::new();
            assert!(list.iter().all(|f| seen.insert(f.name)));
        }
        // A minimal urgent inquiry misses every recommended field, in list order.
        let mut inquiry = Inquiry::new_minimal(Text::new("x"));
        inquiry.time_sensitivity.urgency = Urgency::Urgent;
        assert_eq!(missing_inquiry_fields(&inquiry), INQUIRY_FIELDS);
        assert_eq!(
            missing_response_fields(&Response::will_follow_up(None, None)),
            RESPONSE_FIELDS
        );
        assert_eq!(
            MissingField::REQUESTER_NAME.to_string(),
            "requester.name (Inquiry procedure, step 1): give your name"
        );
    }
}
