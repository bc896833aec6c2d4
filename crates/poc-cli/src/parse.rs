//! Parsers for what an operator types: durations, RFC 3339 times, indicators,
//! categories, sectors, channels, handling labels, languages, PoC ids.
//!
//! Each parser returns a message that says what is wrong and what a valid
//! value looks like; clap shows it as a usage error (exit code 2). Each has a
//! `format_*` inverse where the CLI prints the value back.

use std::net::IpAddr;

use poc_proto::message::{
    Channel, CloseReason, Handling, HashAlgorithm, IncidentCategory, Indicator, IpAddress,
    Language, Sector, Tlp, TransportProtocol, Urgency,
};
use poc_proto::{PocId, Seconds, ThreadId, Timestamp};

/// A duration such as `24h`, `90m`, `2d`, `1w`, `45s`, or a sum like `1d12h`.
pub(crate) fn duration(text: &str) -> Result<Seconds, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: use a number and a unit (s, m, h, d, w), e.g. 90m, 24h, 2d, 1d12h"
        )
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' | 'S' => 1,
            'm' | 'M' => 60,
            'h' | 'H' => 3600,
            'd' | 'D' => 86_400,
            'w' | 'W' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
    }
    if !digits.is_empty() {
        // A bare number has no unit: refuse rather than guess seconds or hours.
        return Err(bad());
    }
    if total == 0 {
        return Err(format!("{text:?} is zero; give a positive duration"));
    }
    Ok(Seconds(total))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days-from-civil), for years from 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An RFC 3339 date-time, e.g. `2026-11-24T22:15:00Z` or
/// `2026-11-24T23:15:00+01:00`, converted to UTC seconds. Fractions of a
/// second are dropped.
pub(crate) fn rfc3339(text: &str) -> Result<Timestamp, String> {
    let bad = |why: &str| {
        format!(
            "{text:?} is not an RFC 3339 time ({why}); write e.g. 2026-11-24T22:15:00Z (UTC) or 2026-11-24T23:15:00+01:00"
        )
    };
    let s = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<u64, String> {
        let part = s.get(range).ok_or_else(|| bad("too short"))?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad("digits expected"));
        }
        std::str::from_utf8(part)
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| bad("digits expected"))
    };
    let expect = |at: usize, allowed: &[u8], what: &str| -> Result<(), String> {
        match s.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(bad(what)),
        }
    };
    let year = num(0..4)?;
    expect(4, b"-", "`-` after the year")?;
    let month = num(5..7)?;
    expect(7, b"-", "`-` after the month")?;
    let day = num(8..10)?;
    expect(10, b"Tt ", "`T` between date and time")?;
    let hour = num(11..13)?;
    expect(13, b":", "`:` after the hour")?;
    let minute = num(14..16)?;
    expect(16, b":", "`:` after the minutes")?;
    let second = num(17..19)?;
    let mut at = 19;
    if s.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while s.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return Err(bad("digits expected after `.`"));
        }
    }
    // Offset east of UTC, in seconds (negative west).
    let offset: i64 = match s.get(at) {
        Some(b'Z' | b'z') if at + 1 == s.len() => 0,
        Some(sign @ (b'+' | b'-')) if at + 6 == s.len() => {
            expect(at + 3, b":", "offset as +HH:MM")?;
            let oh = num(at + 1..at + 3)?;
            let om = num(at + 4..at + 6)?;
            if oh > 23 || om > 59 {
                return Err(bad("offset out of range"));
            }
            let magnitude = i64::try_from(oh * 3600 + om * 60).map_err(|_| bad("offset"))?;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        None => return Err(bad("a time zone is required: end with Z for UTC")),
        _ => return Err(bad("end with Z or an offset such as +01:00")),
    };
    if year < 1970 {
        return Err(bad("years before 1970 are not supported"));
    }
    if !(1..=12).contains(&month) {
        return Err(bad("month out of range"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(bad("day out of range for the month"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("time of day out of range"));
    }
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let local = i64::try_from(local).map_err(|_| bad("too far in the future"))?;
    let utc = u64::try_from(local - offset).map_err(|_| bad("before 1970"))?;
    Ok(Timestamp(utc))
}

/// A duration or a time, kept unresolved until the message is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// So long from the moment of sending.
    In(Seconds),
    /// At this time.
    At(Timestamp),
}

impl When {
    /// The time this stands for, counting from `now`.
    pub(crate) fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            When::In(span) => now.plus(span),
            When::At(at) => at,
        }
    }
}

/// Parses `24h` or `2026-11-24T22:15:00Z` into a [`When`].
pub(crate) fn when_spec(text: &str) -> Result<When, String> {
    if let Ok(span) = duration(text) {
        return Ok(When::In(span));
    }
    rfc3339(text).map(When::At).map_err(|_| {
        format!(
            "{text:?} is neither a duration (e.g. 24h, 90m, 2d) nor an RFC 3339 time (e.g. 2026-11-24T22:15:00Z)"
        )
    })
}

/// `--respond-within`: a duration only.
pub(crate) fn within(text: &str) -> Result<When, String> {
    duration(text).map(When::In)
}

/// `--respond-by`, `--first-seen`: an RFC 3339 time only.
pub(crate) fn at(text: &str) -> Result<When, String> {
    rfc3339(text).map(When::At)
}

const INDICATOR_FORMS: &str = "ip:192.0.2.1, net:198.51.100.0/24, domain:example.org, url:https://..., email:a@example.org, sha256:HEX, sha1:HEX, md5:HEX, sha512:HEX, port:123/udp, asn:64496, other:KIND=VALUE";

/// An indicator such as `ip:192.0.2.1` or `sha256:HEX` (see [`INDICATOR_FORMS`]).
pub(crate) fn indicator(text: &str) -> Result<Indicator, String> {
    let (kind, value) = text.split_once(':').ok_or_else(|| {
        format!("{text:?} is not an indicator; write TYPE:VALUE, one of: {INDICATOR_FORMS}")
    })?;
    let value = value.trim();
    let kind = kind.trim().to_ascii_lowercase();
    let empty = || format!("indicator {text:?} has no value after `{kind}:`");
    if value.is_empty() {
        return Err(empty());
    }
    let no_space = |what: &str| -> Result<String, String> {
        if value.chars().any(char::is_whitespace) {
            Err(format!("{what} {value:?} must not contain spaces"))
        } else {
            Ok(value.to_owned())
        }
    };
    let hash = |algorithm: HashAlgorithm| -> Result<Indicator, String> {
        let digest = hex::decode(value)
            .map_err(|_| format!("{kind} digest {value:?} is not hexadecimal"))?;
        if digest.len() != algorithm.digest_len() {
            return Err(format!(
                "{kind} digest {value:?} has {} hex digits; a {kind} digest has {}",
                value.len(),
                algorithm.digest_len() * 2
            ));
        }
        Ok(Indicator::Hash { algorithm, digest })
    };
    match kind.as_str() {
        "ip" => value
            .parse::<IpAddr>()
            .map(|ip| Indicator::Ip(ip.into()))
            .map_err(|_| format!("{value:?} is not an IPv4 or IPv6 address")),
        "net" | "cidr" | "network" => {
            let (addr, len) = value.split_once('/').ok_or_else(|| {
                format!("network {value:?} needs a prefix length, e.g. 198.51.100.0/24")
            })?;
            let address: IpAddr = addr
                .parse()
                .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
            let prefix_len: u8 = len
                .parse()
                .map_err(|_| format!("prefix length {len:?} is not a number"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            if prefix_len > max {
                return Err(format!(
                    "prefix length /{prefix_len} is longer than the address ({max} bits)"
                ));
            }
            Ok(Indicator::Network {
                address: address.into(),
                prefix_len,
            })
        }
        "domain" => {
            let domain = no_space("domain")?;
            if !domain.contains('.') && domain != "localhost" {
                return Err(format!(
                    "domain {domain:?} has no dot; give a full domain name"
                ));
            }
            Ok(Indicator::Domain(domain))
        }
        "url" => {
            let url = no_space("URL")?;
            if !url.contains("://") {
                return Err(format!(
                    "URL {url:?} has no scheme; write e.g. url:https://example.org/path"
                ));
            }
            Ok(Indicator::Url(url))
        }
        "email" => {
            let email = no_space("e-mail address")?;
            match email.split_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                    Ok(Indicator::Email(email))
                }
                _ => Err(format!("{email:?} is not an e-mail address (local@domain)")),
            }
        }
        "sha256" => hash(HashAlgorithm::Sha256),
        "sha1" => hash(HashAlgorithm::Sha1),
        "md5" => hash(HashAlgorithm::Md5),
        "sha512" => hash(HashAlgorithm::Sha512),
        "port" => {
            let (number, protocol) = match value.split_once('/') {
                Some((n, p)) => (n, Some(p)),
                None => (value, None),
            };
            let number: u16 = number
                .parse()
                .map_err(|_| format!("port {number:?} is not a number from 0 to 65535"))?;
            let protocol = match protocol.map(str::to_ascii_lowercase).as_deref() {
                None => None,
                Some("tcp") => Some(TransportProtocol::Tcp),
                Some("udp") => Some(TransportProtocol::Udp),
                Some("sctp") => Some(TransportProtocol::Sctp),
                Some(other) => {
                    return Err(format!("protocol {other:?} is not tcp, udp or sctp"));
                }
            };
            Ok(Indicator::Port { number, protocol })
        }
        "asn" | "as" => {
            let digits = value
                .strip_prefix("AS")
                .or_else(|| value.strip_prefix("as"))
                .unwrap_or(value);
            digits
                .parse::<u32>()
                .map(Indicator::Asn)
                .map_err(|_| format!("{value:?} is not an AS number, e.g. 64496 or AS64496"))
        }
        "other" => {
            let (kind, value) = value.split_once('=').ok_or_else(|| {
                format!("write other:KIND=VALUE, e.g. other:x509-fingerprint=ab12..; got {text:?}")
            })?;
            if kind.trim().is_empty() {
                return Err(format!("indicator {text:?} has an empty KIND"));
            }
            Ok(Indicator::Other {
                kind: kind.trim().to_owned(),
                value: value.trim().to_owned(),
            })
        }
        _ => Err(format!(
            "unknown indicator type {kind:?} in {text:?}; use one of: {INDICATOR_FORMS}"
        )),
    }
}

fn ip_text(addr: IpAddress) -> String {
    IpAddr::from(addr).to_string()
}

/// The inverse of [`indicator`], for display.
pub(crate) fn format_indicator(indicator: &Indicator) -> String {
    match indicator {
        Indicator::Ip(addr) => format!("ip:{}", ip_text(*addr)),
        Indicator::Network {
            address,
            prefix_len,
        } => format!("net:{}/{prefix_len}", ip_text(*address)),
        Indicator::Port { number, protocol } => match protocol {
            Some(TransportProtocol::Tcp) => format!("port:{number}/tcp"),
            Some(TransportProtocol::Udp) => format!("port:{number}/udp"),
            Some(TransportProtocol::Sctp) => format!("port:{number}/sctp"),
            None => format!("port:{number}"),
        },
        Indicator::Domain(d) => format!("domain:{d}"),
        Indicator::Url(u) => format!("url:{u}"),
        Indicator::Email(e) => format!("email:{e}"),
        Indicator::Hash { algorithm, digest } => {
            let name = match algorithm {
                HashAlgorithm::Md5 => "md5",
                HashAlgorithm::Sha1 => "sha1",
                HashAlgorithm::Sha256 => "sha256",
                HashAlgorithm::Sha512 => "sha512",
            };
            format!("{name}:{}", hex::encode(digest))
        }
        Indicator::Asn(n) => format!("asn:{n}"),
        Indicator::Other { kind, value } => format!("other:{kind}={value}"),
    }
}

/// An incident category; anything not in the list is kept as `Other`.
pub(crate) fn category(text: &str) -> Result<IncidentCategory, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("the category is empty; use e.g. ddos, malware, ransomware, phishing, intrusion, data-breach, scanning, vulnerability, defacement, or a word of your own".into());
    }
    Ok(match t.to_ascii_lowercase().as_str() {
        "ddos" | "dos" | "denial-of-service" => IncidentCategory::DenialOfService,
        "malware" => IncidentCategory::Malware,
        "ransomware" => IncidentCategory::Ransomware,
        "phishing" => IncidentCategory::Phishing,
        "intrusion" => IncidentCategory::Intrusion,
        "data-breach" | "databreach" | "breach" => IncidentCategory::DataBreach,
        "scanning" | "scan" => IncidentCategory::Scanning,
        "vulnerability" => IncidentCategory::Vulnerability,
        "defacement" => IncidentCategory::Defacement,
        _ => IncidentCategory::Other(t.to_owned()),
    })
}

/// The inverse of [`category`], for display.
pub(crate) fn format_category(category: &IncidentCategory) -> String {
    match category {
        IncidentCategory::DenialOfService => "denial of service".into(),
        IncidentCategory::Malware => "malware".into(),
        IncidentCategory::Ransomware => "ransomware".into(),
        IncidentCategory::Phishing => "phishing".into(),
        IncidentCategory::Intrusion => "intrusion".into(),
        IncidentCategory::DataBreach => "data breach".into(),
        IncidentCategory::Scanning => "scanning".into(),
        IncidentCategory::Vulnerability => "exploited vulnerability".into(),
        IncidentCategory::Defacement => "defacement".into(),
        IncidentCategory::Other(name) => name.clone(),
    }
}

/// An affected sector; anything not in the list is kept as `Other`.
pub(crate) fn sector(text: &str) -> Result<Sector, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("the sector is empty; use e.g. energy, water, health, finance, transport, telecommunications, government, emergency-services, food, manufacturing, elections, education".into());
    }
    Ok(match t.to_ascii_lowercase().as_str() {
        "energy" => Sector::Energy,
        "water" => Sector::Water,
        "health" | "healthcare" => Sector::Health,
        "finance" | "banking" => Sector::Finance,
        "transport" | "transportation" => Sector::Transport,
        "telecommunications" | "telecom" | "telecoms" => Sector::Telecommunications,
        "government" => Sector::Government,
        "emergency-services" | "emergency" => Sector::EmergencyServices,
        "food" | "agriculture" => Sector::Food,
        "manufacturing" => Sector::Manufacturing,
        "elections" => Sector::Elections,
        "education" | "research" => Sector::Education,
        _ => Sector::Other(t.to_owned()),
    })
}

/// The inverse of [`sector`], for display.
pub(crate) fn format_sector(sector: &Sector) -> String {
    match sector {
        Sector::Energy => "energy".into(),
        Sector::Water => "water".into(),
        Sector::Health => "health".into(),
        Sector::Finance => "finance".into(),
        Sector::Transport => "transport".into(),
        Sector::Telecommunications => "telecommunications".into(),
        Sector::Government => "government".into(),
        Sector::EmergencyServices => "emergency services".into(),
        Sector::Food => "food".into(),
        Sector::Manufacturing => "manufacturing".into(),
        Sector::Elections => "elections".into(),
        Sector::Education => "education".into(),
        Sector::Other(name) => name.clone(),
    }
}

/// `pocnet`, `phone:+372...`, `email:x@y`, `other:TEXT`.
pub(crate) fn channel(text: &str) -> Result<Channel, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("pocnet") {
        return Ok(Channel::Pocnet);
    }
    let bad = || {
        format!(
            "{text:?} is not a channel; use pocnet, phone:NUMBER, email:ADDRESS or other:DESCRIPTION"
        )
    };
    let (kind, value) = t.split_once(':').ok_or_else(bad)?;
    let value = value.trim();
    if value.is_empty() {
        return Err(bad());
    }
    match kind.trim().to_ascii_lowercase().as_str() {
        "phone" | "tel" => Ok(Channel::Phone(value.to_owned())),
        "email" | "mail" => Ok(Channel::Email(value.to_owned())),
        "other" => Ok(Channel::Other(value.to_owned())),
        _ => Err(bad()),
    }
}

/// The inverse of [`channel`], for display.
pub(crate) fn format_channel(channel: &Channel) -> String {
    match channel {
        Channel::Pocnet => "pocnet (this system, end-to-end protected)".into(),
        Channel::Phone(n) => format!("telephone {n}"),
        Channel::Email(a) => format!("e-mail {a}"),
        Channel::Other(d) => d.clone(),
    }
}

/// `confidential`, `clear`, `green`, `amber`, `amber+strict`, `red`, or the
/// printed form (`TLP:AMBER+STRICT`, `CONFIDENTIAL`).
pub(crate) fn handling(text: &str) -> Result<Handling, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_prefix("tlp:").unwrap_or(&t);
    Ok(match t {
        "confidential" => Handling::Confidential,
        "clear" | "white" => Handling::Tlp(Tlp::Clear),
        "green" => Handling::Tlp(Tlp::Green),
        "amber" => Handling::Tlp(Tlp::Amber),
        "amber+strict" | "amber-strict" => Handling::Tlp(Tlp::AmberStrict),
        "red" => Handling::Tlp(Tlp::Red),
        _ => {
            return Err(format!(
                "{text:?} is not a handling label; use confidential (the default), clear, green, amber, amber+strict or red (TLP 2.0)"
            ));
        }
    })
}

/// One of the six UN official languages.
pub(crate) fn language(text: &str) -> Result<Language, String> {
    Language::from_tag(text.trim()).ok_or_else(|| {
        format!(
            "{text:?} is not one of the six UN official languages; use ar, zh, en, fr, ru or es"
        )
    })
}

/// `routine`, `priority`, `urgent`.
pub(crate) fn urgency(text: &str) -> Result<Urgency, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "routine" => Ok(Urgency::Routine),
        "priority" => Ok(Urgency::Priority),
        "urgent" => Ok(Urgency::Urgent),
        _ => Err(format!(
            "{text:?} is not an urgency; use routine, priority or urgent"
        )),
    }
}

/// `resolved`, `no-further-action`, `withdrawn`, `moved`.
pub(crate) fn close_reason(text: &str) -> Result<CloseReason, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "resolved" => Ok(CloseReason::Resolved),
        "no-further-action" | "nfa" => Ok(CloseReason::NoFurtherAction),
        "withdrawn" => Ok(CloseReason::Withdrawn),
        "moved" | "moved-to-other-channel" => Ok(CloseReason::MovedToOtherChannel),
        _ => Err(format!(
            "{text:?} is not a close reason; use resolved, no-further-action, withdrawn or moved"
        )),
    }
}

/// The inverse of [`close_reason`], for display.
pub(crate) fn format_close_reason(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Resolved => "resolved",
        CloseReason::NoFurtherAction => "no further action",
        CloseReason::Withdrawn => "inquiry withdrawn",
        CloseReason::MovedToOtherChannel => "moved to another agreed channel",
    }
}

/// A PoC id such as `FRA.cert`.
pub(crate) fn poc_id(text: &str) -> Result<PocId, String> {
    PocId::new(text.trim()).map_err(|e| e.to_string())
}

/// A record entry noted outside the node: its seq and entry hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordAnchor {
    /// The entry's seq (from 1).
    pub(crate) seq: u64,
    /// Its entry hash, 64 lower-case hex digits.
    pub(crate) entry_hash: String,
}

/// `SEQ:HASH`, as `poc record verify` prints a head (`N:HASH`).
pub(crate) fn record_anchor(text: &str) -> Result<RecordAnchor, String> {
    let bad = || {
        format!(
            "{text:?} is not SEQ:HASH (an entry number from 1, a colon and its 64-hex-digit entry hash)"
        )
    };
    let (seq, hash) = text.trim().split_once(':').ok_or_else(bad)?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    if seq == 0 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(RecordAnchor {
        seq,
        entry_hash: hash.to_ascii_lowercase(),
    })
}

/// A thread reference: a full 32-hex id or a prefix of at least 6 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ThreadRef {
    /// The full id.
    Full(ThreadId),
    /// A lower-case hex prefix, resolved through the inbox.
    Prefix(String),
}

/// Parses a [`ThreadRef`].
pub(crate) fn thread_ref(text: &str) -> Result<ThreadRef, String> {
    let t = text.trim().to_ascii_lowercase();
    if !t.bytes().all(|b| b.is_ascii_hexdigit()) || t.len() < 6 || t.len() > 32 {
        return Err(format!(
            "{text:?} is not a thread id: give the 32 hex digits shown by `poc inbox`, or at least the first 6"
        ));
    }
    match ThreadId::from_hex(&t) {
        Some(id) => Ok(ThreadRef::Full(id)),
        None => Ok(ThreadRef::Prefix(t)),
    }
}

/// `host:port` (a name, an IPv4 address, or `[IPv6]`).
pub(crate) fn endpoint(text: &str) -> Result<String, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "{text:?} is not host:port, e.g. 127.0.0.1:7401, node.example.org:7401 or [2001:db8::1]:7401"
        )
    };
    let (host, port) = t.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    if host_ok {
        Ok(t.to_owned())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("24h"), Ok(Seconds(86_400)));
        assert_eq!(duration("90m"), Ok(Seconds(5_400)));
        assert_eq!(duration("2d"), Ok(Seconds(172_800)));
        assert_eq!(duration("1w"), Ok(Seconds(604_800)));
        assert_eq!(duration("45s"), Ok(Seconds(45)));
        assert_eq!(duration("1d12h"), Ok(Seconds(129_600)));
        assert_eq!(duration(" 4H "), Ok(Seconds(14_400)));
        for bad in [
            "",
            "24",
            "h",
            "4x",
            "-4h",
            "4.5h",
            "0h",
            "1h 30m",
            "99999999999999999999w",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(duration("24").unwrap_err().contains("24h"));
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Ok(Timestamp(0)));
        assert_eq!(
            rfc3339("2026-11-18T11:06:40Z"),
            Ok(Timestamp(1_795_000_000))
        );
        assert_eq!(rfc3339("2000-02-29T00:00:00Z"), Ok(Timestamp(951_782_400)));
        // Offsets are converted to UTC; fractions are dropped.
        assert_eq!(
            rfc3339("2026-11-18T12:06:40+01:00"),
            Ok(Timestamp(1_795_000_000))
        );
        assert_eq!(
            rfc3339("2026-11-18T06:36:40-04:30"),
            Ok(Timestamp(1_795_000_000))
        );
        assert_eq!(
            rfc3339("2026-11-18t11:06:40.999z"),
            Ok(Timestamp(1_795_000_000))
        );
        assert_eq!(
            rfc3339("2026-11-18 11:06:40Z"),
            Ok(Timestamp(1_795_000_000))
        );
        // Round trip with the protocol's own formatting.
        for t in [0, 86_399, 951_782_400, 1_795_000_000, 4_102_444_800] {
            assert_eq!(rfc3339(&Timestamp(t).to_string()), Ok(Timestamp(t)));
        }
        for bad in [
            "",
            "2026-11-18",
            "2026-11-18T11:06:40",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-18T24:00:00Z",
            "2026-11-18T11:60:00Z",
            "1969-12-31T23:59:59Z",
            "2026-11-18T11:06:40+0100",
            "2026-11-18T11:06:40Zjunk",
            "26-11-18T11:06:40Z",
            "2026-11-18T11:06:40.Z",
            "1970-01-01T00:30:00+01:00",
        ] {
            assert!(rfc3339(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(rfc3339("2026-11-18T11:06:40").unwrap_err().contains("Z"));
    }

    #[test]
    fn when_takes_durations_or_times() {
        let now = Timestamp(1_000);
        assert_eq!(
            when_spec("1h").map(|w| w.resolve(now)),
            Ok(Timestamp(4_600))
        );
        assert_eq!(
            when_spec("1970-01-01T00:00:10Z").map(|w| w.resolve(now)),
            Ok(Timestamp(10))
        );
        assert!(when_spec("tomorrow").is_err());
        assert_eq!(when_spec("2d"), Ok(When::In(Seconds::days(2))));
        assert_eq!(When::In(Seconds(5)).resolve(now), Timestamp(1_005));
    }

    #[test]
    fn indicators_parse_and_print_back() {
        for text in [
            "ip:192.0.2.1",
            "ip:2001:db8::1",
            "net:198.51.100.0/24",
            "net:2001:db8::/32",
            "domain:example.org",
            "url:https://example.org/a?b=c",
            "email:abuse@example.org",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "port:123/udp",
            "port:443/tcp",
            "port:8080",
            "asn:64496",
            "other:x509-fingerprint=ab12",
        ] {
            let parsed = indicator(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(format_indicator(&parsed), text);
        }
        assert_eq!(indicator("asn:AS64496"), Ok(Indicator::Asn(64496)));
        assert_eq!(
            indicator("IP:192.0.2.1"),
            Ok(Indicator::Ip(IpAddress::V4([192, 0, 2, 1])))
        );
        for bad in [
            "192.0.2.1",
            "ip:",
            "ip:300.1.1.1",
            "net:198.51.100.0",
            "net:198.51.100.0/33",
            "domain:nodot",
            "domain:a b.org",
            "url:example.org",
            "email:nobody",
            "sha256:abcd",
            "sha256:zz",
            "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "port:70000",
            "port:53/icmp",
            "asn:-1",
            "other:novalue",
            "colour:blue",
        ] {
            assert!(indicator(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(indicator("colour:blue").unwrap_err().contains("sha256:HEX"));
    }

    #[test]
    fn categories_sectors_channels_labels() {
        assert_eq!(category("ddos"), Ok(IncidentCategory::DenialOfService));
        assert_eq!(category("data-breach"), Ok(IncidentCategory::DataBreach));
        assert_eq!(
            category("supply chain"),
            Ok(IncidentCategory::Other("supply chain".into()))
        );
        assert!(category(" ").is_err());
        assert_eq!(sector("energy"), Ok(Sector::Energy));
        assert_eq!(sector("emergency-services"), Ok(Sector::EmergencyServices));
        assert_eq!(sector("space"), Ok(Sector::Other("space".into())));
        assert_eq!(channel("pocnet"), Ok(Channel::Pocnet));
        assert_eq!(
            channel("phone:+372 1234"),
            Ok(Channel::Phone("+372 1234".into()))
        );
        assert_eq!(
            channel("email:cert@example.org"),
            Ok(Channel::Email("cert@example.org".into()))
        );
        assert!(channel("pigeon").is_err());
        assert!(channel("phone:").is_err());
        assert_eq!(
            handling("amber+strict"),
            Ok(Handling::Tlp(Tlp::AmberStrict))
        );
        assert_eq!(handling("confidential"), Ok(Handling::Confidential));
        for h in [
            Handling::Confidential,
            Handling::Tlp(Tlp::Clear),
            Handling::Tlp(Tlp::Green),
            Handling::Tlp(Tlp::Amber),
            Handling::Tlp(Tlp::AmberStrict),
            Handling::Tlp(Tlp::Red),
        ] {
            assert_eq!(handling(&h.to_string()), Ok(h));
        }
        assert!(handling("purple").is_err());
        assert_eq!(language("fr"), Ok(Language::French));
        assert_eq!(language("zh-Hans"), Ok(Language::Chinese));
        assert!(language("de").is_err());
        assert_eq!(urgency("URGENT"), Ok(Urgency::Urgent));
        assert!(urgency("asap").is_err());
        assert_eq!(close_reason("moved"), Ok(CloseReason::MovedToOtherChannel));
    }

    #[test]
    fn thread_refs_and_endpoints() {
        let full = "00112233445566778899aabbccddeeff";
        assert!(matches!(thread_ref(full), Ok(ThreadRef::Full(_))));
        assert_eq!(thread_ref("00112A"), Ok(ThreadRef::Prefix("00112a".into())));
        for bad in ["00112", "xyz123", "00112233445566778899aabbccddeeff00", ""] {
            assert!(thread_ref(bad).is_err(), "{bad:?}");
        }
        assert!(endpoint("127.0.0.1:7401").is_ok());
        assert!(endpoint("node.example.org:7401").is_ok());
        assert!(endpoint("[2001:db8::1]:7401").is_ok());
        for bad in ["127.0.0.1", "127.0.0.1:0", "host:port", ":7401", "a b:1"] {
            assert!(endpoint(bad).is_err(), "{bad:?}");
        }
    }
}
