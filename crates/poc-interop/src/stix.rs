//! STIX 2.1 bundles: structural validation, indicator export and import.
//!
//! Exported indicator ids are deterministic: `indicator--<UUIDv5>` with the
//! STIX 2.1 SCO namespace `00abedb4-aa42-466c-9c01-fed23315a9b7` over the
//! name `"pocnet-indicator:" + pattern`. Exporting the same indicator twice
//! yields the same id, so re-exports of a thread de-duplicate downstream.
//! (STIX suggests UUIDv4 for SDOs; v5 is equally valid as an id.)

use std::collections::BTreeMap;

use poc_proto::message::{Handling, HashAlgorithm, Indicator, IpAddress, TransportProtocol};
use poc_proto::time::Timestamp;
use serde_json::{Value, json};

use crate::tlp;
use crate::util::{format_datetime, hex_decode, hex_encode};

/// Largest bundle accepted by [`validate_bundle`].
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;

/// STIX 2.1 Cyber-observable object types (spec_version optional on these).
const SCO_TYPES: &[&str] = &[
    "artifact",
    "autonomous-system",
    "directory",
    "domain-name",
    "email-addr",
    "email-message",
    "file",
    "ipv4-addr",
    "ipv6-addr",
    "mac-addr",
    "mutex",
    "network-traffic",
    "process",
    "software",
    "url",
    "user-account",
    "windows-registry-key",
    "x509-certificate",
];

/// Why a STIX bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StixError {
    /// Larger than [`MAX_BUNDLE_BYTES`].
    #[error("STIX bundle is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// Not JSON.
    #[error("STIX bundle is not valid JSON: {0}")]
    Json(String),
    /// The top level is not a bundle.
    #[error("not a STIX bundle: {0}")]
    NotBundle(String),
    /// One object is malformed.
    #[error("STIX bundle object {index}: {reason}")]
    Object {
        /// Its index in `objects`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// What a valid bundle contains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StixSummary {
    /// The bundle id.
    pub id: String,
    /// Object count per type.
    pub counts: BTreeMap<String, usize>,
    /// Patterns of `indicator` objects, in order.
    pub indicator_patterns: Vec<String>,
    /// TLP 2.0 labels referenced by `object_marking_refs`, in order of first use.
    pub tlp: Vec<poc_proto::message::Tlp>,
}

/// Whether `text` is `<type>--<uuid>` with the given type.
fn valid_id(id: &str, expected_type: &str) -> Result<(), String> {
    let Some((ty, uuid)) = id.split_once("--") else {
        return Err(format!("id {id:?} is not of the form <type>--<uuid>"));
    };
    if ty != expected_type {
        return Err(format!(
            "id {id:?} does not start with its type {expected_type:?}"
        ));
    }
    if !is_uuid(uuid) {
        return Err(format!("id {id:?} does not end with a UUID"));
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn valid_type_name(t: &str) -> bool {
    (3..=250).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !t.contains("--")
        && !t.starts_with('-')
        && !t.ends_with('-')
}

/// Checks a STIX 2.1 bundle's structure and summarises it.
pub fn validate_bundle(json: &[u8]) -> Result<StixSummary, StixError> {
    if json.len() > MAX_BUNDLE_BYTES {
        return Err(StixError::TooLarge {
            size: json.len(),
            limit: MAX_BUNDLE_BYTES,
        });
    }
    let value: Value = serde_json::from_slice(json).map_err(|e| StixError::Json(e.to_string()))?;
    let bundle = value
        .as_object()
        .ok_or_else(|| StixError::NotBundle("the top level is not a JSON object".into()))?;
    match bundle.get("type") {
        Some(Value::String(t)) if t == "bundle" => {}
        Some(Value::String(t)) => {
            return Err(StixError::NotBundle(format!(
                "type is {t:?}, not \"bundle\""
            )));
        }
        _ => {
            return Err(StixError::NotBundle(
                "missing string property \"type\"".into(),
            ));
        }
    }
    let id = bundle
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| StixError::NotBundle("missing string property \"id\"".into()))?;
    valid_id(id, "bundle").map_err(StixError::NotBundle)?;
    let mut summary = StixSummary {
        id: id.to_string(),
        ..StixSummary::default()
    };
    let objects = match bundle.get("objects") {
        None => return Ok(summary),
        Some(Value::Array(objects)) => objects,
        Some(_) => return Err(StixError::NotBundle("\"objects\" is not an array".into())),
    };
    for (index, object) in objects.iter().enumerate() {
        let err = |reason: String| StixError::Object { index, reason };
        let object = object
            .as_object()
            .ok_or_else(|| err("is not a JSON object".into()))?;
        let ty = object
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err("missing string property \"type\"".into()))?;
        if !valid_type_name(ty) {
            return Err(err(format!("type {ty:?} is not a valid STIX type name")));
        }
        let oid = object
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{ty} object has no string property \"id\"")))?;
        valid_id(oid, ty).map_err(err)?;
        match object.get("spec_version") {
            Some(Value::String(v)) if v == "2.1" => {}
            Some(v) => return Err(err(format!("spec_version is {v}, not \"2.1\""))),
            None if SCO_TYPES.contains(&ty) => {}
            None => {
                return Err(err(format!(
                    "{ty} object has no spec_version (required: \"2.1\")"
                )));
            }
        }
        if ty == "indicator" {
            let pattern = object
                .get("pattern")
                .and_then(Value::as_str)
                .ok_or_else(|| err("indicator has no string \"pattern\"".into()))?;
            for required in ["pattern_type", "valid_from", "created", "modified"] {
                if !object.contains_key(required) {
                    return Err(err(format!("indicator has no \"{required}\"")));
                }
            }
            summary.indicator_patterns.push(pattern.to_string());
        }
        if let Some(refs) = object.get("object_marking_refs") {
            let refs = refs
                .as_array()
                .ok_or_else(|| err("object_marking_refs is not an array".into()))?;
            for r in refs {
                let r = r
                    .as_str()
                    .ok_or_else(|| err("object_marking_refs holds a non-string".into()))?;
                valid_id(r, "marking-definition").map_err(err)?;
                if let Some(t) = tlp::from_stix_marking(r)
                    && !summary.tlp.contains(&t)
                {
                    summary.tlp.push(t);
                }
            }
        }
        *summary.counts.entry(ty.to_string()).or_insert(0) += 1;
    }
    Ok(summary)
}

/// Quotes a string for a STIX pattern (`'` and `\` escaped).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn hash_name(a: HashAlgorithm) -> &'static str {
    match a {
        HashAlgorithm::Md5 => "MD5",
        HashAlgorithm::Sha1 => "SHA-1",
        HashAlgorithm::Sha256 => "SHA-256",
        HashAlgorithm::Sha512 => "SHA-512",
    }
}

fn ip_sco(ip: &IpAddress) -> &'static str {
    match ip {
        IpAddress::V4(_) => "ipv4-addr",
        IpAddress::V6(_) => "ipv6-addr",
    }
}

/// The STIX pattern of one indicator.
pub fn pattern(indicator: &Indicator) -> String {
    match indicator {
        Indicator::Ip(ip) => format!(
            "[{}:value = {}]",
            ip_sco(ip),
            quote(&std::net::IpAddr::from(*ip).to_string())
        ),
        Indicator::Network {
            address,
            prefix_len,
        } => format!(
            "[{}:value = {}]",
            ip_sco(address),
            quote(&format!(
                "{}/{prefix_len}",
                std::net::IpAddr::from(*address)
            ))
        ),
        Indicator::Port { number, protocol } => match protocol {
            None => format!("[network-traffic:dst_port = {number}]"),
            Some(p) => {
                let p = match p {
                    TransportProtocol::Tcp => "tcp",
                    TransportProtocol::Udp => "udp",
                    TransportProtocol::Sctp => "sctp",
                };
                format!(
                    "[network-traffic:dst_port = {number} AND network-traffic:protocols[*] = '{p}']"
                )
            }
        },
        Indicator::Domain(d) => format!("[domain-name:value = {}]", quote(d)),
        Indicator::Url(u) => format!("[url:value = {}]", quote(u)),
        Indicator::Email(e) => format!("[email-addr:value = {}]", quote(e)),
        Indicator::Hash { algorithm, digest } => format!(
            "[file:hashes.'{}' = '{}']",
            hash_name(*algorithm),
            hex_encode(digest)
        ),
        Indicator::Asn(n) => format!("[autonomous-system:number = {n}]"),
        Indicator::Other { kind, value } => format!(
            "[x-pocnet-indicator:kind = {} AND x-pocnet-indicator:value = {}]",
            quote(kind),
            quote(value)
        ),
    }
}

/// UUIDv5 (SHA-1, RFC 9562 §5.5) of `name` in `namespace`.
fn uuid_v5(namespace: [u8; 16], name: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&namespace);
    ctx.update(name.as_bytes());
    let digest = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(digest.as_ref().get(..16).unwrap_or(&[0u8; 16]));
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex_encode(&b);
    format!(
        "{}-{}-{}-{}-{}",
        h.get(0..8).unwrap_or_default(),
        h.get(8..12).unwrap_or_default(),
        h.get(12..16).unwrap_or_default(),
        h.get(16..20).unwrap_or_default(),
        h.get(20..32).unwrap_or_default()
    )
}

/// The STIX 2.1 SCO id namespace.
const STIX_NAMESPACE: [u8; 16] = [
    0x00, 0xab, 0xed, 0xb4, 0xaa, 0x42, 0x46, 0x6c, 0x9c, 0x01, 0xfe, 0xd2, 0x33, 0x15, 0xa9, 0xb7,
];

/// A STIX 2.1 bundle with one `indicator` per indicator, marked with the TLP
/// 2.0 marking of `handling` (and including that marking definition).
/// Confidential has no TLP marking: the bundle is then unmarked and must not
/// leave the thread. `valid_from` is also used as `created`/`modified`.
pub fn export_indicators(
    indicators: &[Indicator],
    handling: Handling,
    valid_from: Timestamp,
) -> Value {
    let time = format_datetime(valid_from);
    let marking = tlp::to_stix_marking(handling);
    let mut objects = Vec::new();
    if let Handling::Tlp(t) = handling {
        objects.push(tlp::stix_marking_object(t));
    }
    let mut names = Vec::new();
    for indicator in indicators {
        let pattern = pattern(indicator);
        let id = format!(
            "indicator--{}",
            uuid_v5(STIX_NAMESPACE, &format!("pocnet-indicator:{pattern}"))
        );
        names.push(id.clone());
        let mut object = json!({
            "type": "indicator",
            "spec_version": "2.1",
            "id": id,
            "created": time,
            "modified": time,
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_from": time,
        });
        if let (Some(m), Some(o)) = (marking, object.as_object_mut()) {
            o.insert("object_marking_refs".into(), json!([m]));
        }
        objects.push(object);
    }
    let bundle_id = format!(
        "bundle--{}",
        uuid_v5(
            STIX_NAMESPACE,
            &format!("pocnet-bundle:{time}:{}", names.join(","))
        )
    );
    json!({ "type": "bundle", "id": bundle_id, "objects": objects })
}

/// Reads a pattern string literal starting at `s` (after the opening quote).
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '\'' => return Some((out, s.get(i + 1..)?)),
            c => out.push(c),
        }
    }
    None
}

/// Parses `[a = v AND b = v ...]` into (path, value) pairs; `None` for any
/// other pattern shape (OR, other operators, several observations).
fn parse_comparisons(pattern: &str) -> Option<Vec<(String, String)>> {
    let mut rest = pattern.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    let mut out = Vec::new();
    loop {
        // Path: up to " =", allowing quoted segments like hashes.'SHA-256'.
        let eq = rest.find(" = ")?;
        let path = rest.get(..eq)?.trim().to_string();
        rest = rest.get(eq + 3..)?.trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('\'') {
            let (v, r) = parse_quoted(q)?;
            value = v;
            rest = r.trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            value = rest.get(..end)?.to_string();
            rest = rest.get(end..)?.trim_start();
        }
        out.push((path, value));
        if rest.is_empty() {
            return Some(out);
        }
        rest = rest.strip_prefix("AND ")?.trim_start();
    }
}

fn indicator_from_pattern(pattern: &str) -> Option<Indicator> {
    let cmp = parse_comparisons(pattern)?;
    let get = |p: &str| cmp.iter().find(|(k, _)| k == p).map(|(_, v)| v.as_str());
    let (first, value) = cmp.first()?;
    let ip_or_net = |v: &str| -> Option<Indicator> {
        if let Some((a, l)) = v.split_once('/') {
            let a: std::net::IpAddr = a.parse().ok()?;
            Some(Indicator::Network {
                address: a.into(),
                prefix_len: l.parse().ok()?,
            })
        } else {
            Some(Indicator::Ip(v.parse::<std::net::IpAddr>().ok()?.into()))
        }
    };
    match first.as_str() {
        "ipv4-addr:value" | "ipv6-addr:value" if cmp.len() == 1 => ip_or_net(value),
        "domain-name:value" if cmp.len() == 1 => Some(Indicator::Domain(value.clone())),
        "url:value" if cmp.len() == 1 => Some(Indicator::Url(value.clone())),
        "email-addr:value" if cmp.len() == 1 => Some(Indicator::Email(value.clone())),
        "autonomous-system:number" if cmp.len() == 1 => value.parse().ok().map(Indicator::Asn),
        "network-traffic:dst_port" => {
            let number = value.parse().ok()?;
            let protocol = match get("network-traffic:protocols[*]") {
                None if cmp.len() == 1 => None,
                Some("tcp") => Some(TransportProtocol::Tcp),
                Some("udp") => Some(TransportProtocol::Udp),
                Some("sctp") => Some(TransportProtocol::Sctp),
                _ => return None,
            };
            Some(Indicator::Port { number, protocol })
        }
        path if path.starts_with("file:hashes.") && cmp.len() == 1 => {
            let name = path.trim_start_matches("file:hashes.").trim_matches('\'');
            let algorithm = match name.to_ascii_uppercase().as_str() {
                "MD5" => HashAlgorithm::Md5,
                "SHA-1" | "SHA1" => HashAlgorithm::Sha1,
                "SHA-256" | "SHA256" => HashAlgorithm::Sha256,
                "SHA-512" | "SHA512" => HashAlgorithm::Sha512,
                _ => return None,
            };
            let digest = hex_decode(&value.to_ascii_lowercase())?;
            (digest.len() == algorithm.digest_len())
                .then_some(Indicator::Hash { algorithm, digest })
        }
        "x-pocnet-indicator:kind" => Some(Indicator::Other {
            kind: value.clone(),
            value: get("x-pocnet-indicator:value")?.to_string(),
        }),
        _ => None,
    }
}

/// The indicators of a bundle's `indicator` objects whose STIX pattern is a
/// single comparison (or the AND forms [`export_indicators`] writes); other
/// patterns are skipped.
pub fn import_indicators(bundle: &Value) -> Vec<Indicator> {
    let mut out: Vec<Indicator> = Vec::new();
    let objects = bundle.get("objects").and_then(Value::as_array);
    for object in objects.into_iter().flatten() {
        if object.get("type").and_then(Value::as_str) != Some("indicator")
            || object.get("pattern_type").and_then(Value::as_str) != Some("stix")
        {
            continue;
        }
        if let Some(i) = object
            .get("pattern")
            .and_then(Value::as_str)
            .and_then(indicator_from_pattern)
            && !out.contains(&i)
        {
            out.push(i);
        }
    }
    out
}
