//! How many refused envelopes each origin may have recorded whole.
//!
//! Every refusal is recorded with the envelope it refused, which
//! lets a listed peer, or a relay serving the same garbage again and again,
//! fill the node's disk at the speed of the network. Each origin gets a
//! budget per minute; past it, one entry says so and the rest of that
//! minute's refusals are answered but not recorded. Origins are
//! authenticated peers and configured relays, so the table stays as small
//! as the directory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window a budget covers.
const WINDOW: Duration = Duration::from_secs(60);

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// Within the budget: record it whole.
    Record,
    /// The first past the budget: record that the budget is spent.
    Spent,
    /// Past the budget: answer it, record nothing.
    Quiet,
}

/// Refusals recorded per origin and minute.
#[derive(Debug)]
pub(crate) struct RejectionBudget {
    per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RejectionBudget {
    pub(crate) fn new(per_minute: u32) -> RejectionBudget {
        RejectionBudget {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// The budget per minute.
    pub(crate) fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Counts one refusal from `origin` at `now`.
    pub(crate) fn charge(&self, origin: &str, now: Instant) -> Charge {
        let Ok(mut windows) = self.windows.lock() else {
            // A poisoned lock must not cost a record entry.
            return Charge::Record;
        };
        let (start, count) = windows.entry(origin.to_owned()).or_insert((now, 0));
        if now.saturating_duration_since(*start) >= WINDOW {
            (*start, *count) = (now, 0);
        }
        *count = count.saturating_add(1);
        match count.checked_sub(self.per_minute) {
            None | Some(0) => Charge::Record,
            Some(1) => Charge::Spent,
            Some(_) => Charge::Quiet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_origin_has_its_own_budget_for_each_minute() {
        let budget = RejectionBudget::new(2);
        let t0 = Instant::now();
        let charges: Vec<Charge> = (0..5).map(|_| budget.charge("KEN.cert", t0)).collect();
        assert_eq!(
            charges,
            [
                Charge::Record,
                Charge::Record,
                Charge::Spent,
                Charge::Quiet,
                Charge::Quiet
            ]
        );
        // Another origin is not affected.
        assert_eq!(budget.charge("EST.cert", t0), Charge::Record);
        // Within the minute it stays spent; the next minute starts afresh.
        assert_eq!(
            budget.charge("KEN.cert", t0 + Duration::from_secs(59)),
            Charge::Quiet
        );
        assert_eq!(
            budget.charge("KEN.cert", t0 + Duration::from_secs(61)),
            Charge::Record
        );
    }

    #[test]
    fn a_zero_budget_records_only_that_it_is_spent() {
        let budget = RejectionBudget::new(0);
        let now = Instant::now();
        assert_eq!(budget.charge("x", now), Charge::Spent);
        assert_eq!(budget.charge("x", now), Charge::Quiet);
    }
}
