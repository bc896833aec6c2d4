//! Handling labels ↔ IODEF `restriction` ↔ STIX 2.1 TLP 2.0 markings.
//!
//! # IODEF (RFC 7970 §3.3.1 `restriction-type`)
//!
//! RFC 7970 lists `default`, `public`, `partner`, `need-to-know`, `private`,
//! `white`, `green`, `amber`, `red` and `ext-value`. The last four colour
//! values are TLP 1.0 labels, so TLP is exported with them:
//!
//! | pocnet handling     | exported `restriction` | note |
//! |---------------------|------------------------|------|
//! | `TLP:CLEAR`         | `white`  | TLP 2.0 renamed WHITE to CLEAR; same meaning |
//! | `TLP:GREEN`         | `green`  | |
//! | `TLP:AMBER`         | `amber`  | |
//! | `TLP:AMBER+STRICT`  | `need-to-know` | **lossy**: IODEF has no AMBER+STRICT; `need-to-know` ("only within the organization with individuals that have a need to know") is the closest, but a reader may treat it as plain AMBER |
//! | `TLP:RED`           | `red`    | |
//! | Confidential        | `private` | "may not be shared"; also the RFC default |
//!
//! On import: `white`/`public` → CLEAR, `green`/`partner` → GREEN, `amber` →
//! AMBER, `need-to-know` → AMBER+STRICT (organisation only, the stricter
//! reading), `red` → RED, `private` → Confidential, `default`/absent →
//! Confidential (RFC 7970's schema default is `private`), `ext-value` →
//! Confidential with a note (the safe side).
//!
//! # STIX 2.1 TLP 2.0 marking definitions
//!
//! The ids are those of the OASIS TLP 2.0 marking definitions (extension
//! `extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d`), created
//! 2022-10-01. Confidential has no TLP marking: nothing is emitted for it.

use poc_proto::message::{Handling, Tlp};

/// The OASIS STIX 2.1 marking definition id of TLP 2.0 `TLP:CLEAR`.
pub const STIX_TLP_CLEAR: &str = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487";
/// The OASIS STIX 2.1 marking definition id of TLP 2.0 `TLP:GREEN`.
pub const STIX_TLP_GREEN: &str = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
/// The OASIS STIX 2.1 marking definition id of TLP 2.0 `TLP:AMBER`.
pub const STIX_TLP_AMBER: &str = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421";
/// The OASIS STIX 2.1 marking definition id of TLP 2.0 `TLP:AMBER+STRICT`.
pub const STIX_TLP_AMBER_STRICT: &str = "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003";
/// The OASIS STIX 2.1 marking definition id of TLP 2.0 `TLP:RED`.
pub const STIX_TLP_RED: &str = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1";
/// The STIX extension definition that defines the TLP 2.0 markings.
pub const STIX_TLP2_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

/// A mapped value, with a note when the mapping loses meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped<T> {
    /// Same meaning on both sides.
    Exact(T),
    /// The closest value; the note says what is lost.
    Lossy(T, String),
}

impl<T> Mapped<T> {
    /// The value, dropping any note.
    pub fn value(self) -> T {
        match self {
            Mapped::Exact(v) | Mapped::Lossy(v, _) => v,
        }
    }

    /// The note, if lossy.
    pub fn note(&self) -> Option<&str> {
        match self {
            Mapped::Exact(_) => None,
            Mapped::Lossy(_, note) => Some(note),
        }
    }
}

/// The IODEF `restriction` attribute value for a handling label.
pub fn to_iodef_restriction(handling: Handling) -> Mapped<&'static str> {
    match handling {
        Handling::Confidential => Mapped::Exact("private"),
        Handling::Tlp(Tlp::Clear) => Mapped::Exact("white"),
        Handling::Tlp(Tlp::Green) => Mapped::Exact("green"),
        Handling::Tlp(Tlp::Amber) => Mapped::Exact("amber"),
        Handling::Tlp(Tlp::AmberStrict) => Mapped::Lossy(
            "need-to-know",
            "IODEF has no TLP:AMBER+STRICT; exported as restriction=\"need-to-know\" \
             (organisation only), which a reader may treat as plain TLP:AMBER"
                .into(),
        ),
        Handling::Tlp(Tlp::Red) => Mapped::Exact("red"),
    }
}

/// The handling label for an IODEF `restriction` value (`None`: attribute absent).
pub fn from_iodef_restriction(restriction: Option<&str>) -> Mapped<Handling> {
    match restriction.map(str::trim) {
        None | Some("default") => Mapped::Lossy(
            Handling::Confidential,
            "no explicit restriction (IODEF default \"private\"): handled as confidential".into(),
        ),
        Some("private") => Mapped::Exact(Handling::Confidential),
        Some("white") | Some("public") => Mapped::Exact(Handling::Tlp(Tlp::Clear)),
        Some("green") => Mapped::Exact(Handling::Tlp(Tlp::Green)),
        Some("partner") => Mapped::Lossy(
            Handling::Tlp(Tlp::Green),
            "restriction=\"partner\" (closed community) mapped to TLP:GREEN".into(),
        ),
        Some("amber") => Mapped::Exact(Handling::Tlp(Tlp::Amber)),
        Some("need-to-know") => Mapped::Lossy(
            Handling::Tlp(Tlp::AmberStrict),
            "restriction=\"need-to-know\" (organisation only) mapped to TLP:AMBER+STRICT".into(),
        ),
        Some("red") => Mapped::Exact(Handling::Tlp(Tlp::Red)),
        Some(other) => Mapped::Lossy(
            Handling::Confidential,
            format!(
                "unknown restriction {:?}: handled as confidential",
                other.chars().take(64).collect::<String>()
            ),
        ),
    }
}

/// The STIX TLP 2.0 marking definition id for a handling label (none for
/// Confidential, which is not a TLP label).
pub fn to_stix_marking(handling: Handling) -> Option<&'static str> {
    match handling {
        Handling::Confidential => None,
        Handling::Tlp(Tlp::Clear) => Some(STIX_TLP_CLEAR),
        Handling::Tlp(Tlp::Green) => Some(STIX_TLP_GREEN),
        Handling::Tlp(Tlp::Amber) => Some(STIX_TLP_AMBER),
        Handling::Tlp(Tlp::AmberStrict) => Some(STIX_TLP_AMBER_STRICT),
        Handling::Tlp(Tlp::Red) => Some(STIX_TLP_RED),
    }
}

/// The TLP label of a STIX TLP 2.0 marking definition id.
pub fn from_stix_marking(id: &str) -> Option<Tlp> {
    match id {
        STIX_TLP_CLEAR => Some(Tlp::Clear),
        STIX_TLP_GREEN => Some(Tlp::Green),
        STIX_TLP_AMBER => Some(Tlp::Amber),
        STIX_TLP_AMBER_STRICT => Some(Tlp::AmberStrict),
        STIX_TLP_RED => Some(Tlp::Red),
        _ => None,
    }
}

/// The TLP 2.0 marking-definition object for a label, as published by OASIS.
pub fn stix_marking_object(tlp: Tlp) -> serde_json::Value {
    let (id, name, level) = match tlp {
        Tlp::Clear => (STIX_TLP_CLEAR, "TLP:CLEAR", "clear"),
        Tlp::Green => (STIX_TLP_GREEN, "TLP:GREEN", "green"),
        Tlp::Amber => (STIX_TLP_AMBER, "TLP:AMBER", "amber"),
        Tlp::AmberStrict => (STIX_TLP_AMBER_STRICT, "TLP:AMBER+STRICT", "amber+strict"),
        Tlp::Red => (STIX_TLP_RED, "TLP:RED", "red"),
    };
    serde_json::json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": id,
        "created": "2022-10-01T00:00:00.000Z",
        "name": name,
        "extensions": {
            STIX_TLP2_EXTENSION: {
                "extension_type": "property-extension",
                "tlp_2_0": level
            }
        }
    })
}
