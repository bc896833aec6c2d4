//! Time as the protocol sees it: whole seconds since the Unix epoch, always
//! passed in by the caller (the crate reads no clock).

use serde::{Deserialize, Serialize};

/// Seconds since 1970-01-01T00:00:00Z (UTC), as carried on the wire (u64 LE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

/// A span of time in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Seconds(pub u64);

impl Seconds {
    /// One minute.
    pub const MINUTE: Seconds = Seconds(60);
    /// One hour.
    pub const HOUR: Seconds = Seconds(3600);
    /// One day.
    pub const DAY: Seconds = Seconds(86_400);

    /// `n` hours, saturating (callers pass configured counts).
    pub const fn hours(n: u64) -> Seconds {
        Seconds(n.saturating_mul(3600))
    }

    /// `n` days, saturating (callers pass configured counts).
    pub const fn days(n: u64) -> Seconds {
        Seconds(n.saturating_mul(86_400))
    }
}

impl Timestamp {
    /// This instant plus `span`, saturating at the end of time.
    pub fn plus(self, span: Seconds) -> Timestamp {
        Timestamp(self.0.saturating_add(span.0))
    }

    /// This instant minus `span`, saturating at the epoch.
    pub fn minus(self, span: Seconds) -> Timestamp {
        Timestamp(self.0.saturating_sub(span.0))
    }

    /// Seconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Seconds {
        Seconds(self.0.saturating_sub(earlier.0))
    }
}

impl std::fmt::Display for Timestamp {
    /// RFC 3339 in UTC, e.g. `2026-11-24T22:15:00Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        match s {
            _ if s > 0 && s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
            _ if s > 0 && s.is_multiple_of(3600) => write!(f, "{}h", s / 3600),
            _ if s > 0 && s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, UTC).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(1_795_000_000).to_string(), "2026-11-18T11:06:40Z");
        assert_eq!(Timestamp(951_782_400).to_string(), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Timestamp(u64::MAX).plus(Seconds::DAY), Timestamp(u64::MAX));
        assert_eq!(Timestamp(5).minus(Seconds::HOUR), Timestamp(0));
        assert_eq!(Timestamp(5).since(Timestamp(9)), Seconds(0));
        assert_eq!(Seconds::hours(48).to_string(), "2d");
        // Spans built from configured counts saturate too, rather than
        // panicking (debug) or wrapping to a short span (release).
        assert_eq!(Seconds::hours(u64::MAX / 3600 + 1), Seconds(u64::MAX));
        assert_eq!(Seconds::days(u64::MAX), Seconds(u64::MAX));
        assert_eq!(Seconds::days(213_503_982_334_602), Seconds(u64::MAX));
    }
}
