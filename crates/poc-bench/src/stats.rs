//! Order statistics over measured durations.

use std::time::Duration;

use serde::Serialize;

/// Summary of a sample of durations, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// How many values.
    pub(crate) samples: usize,
    /// Smallest.
    pub(crate) min_us: f64,
    /// 25th percentile.
    pub(crate) p25_us: f64,
    /// Median.
    pub(crate) median_us: f64,
    /// 75th percentile.
    pub(crate) p75_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// Largest.
    pub(crate) max_us: f64,
    /// Arithmetic mean.
    pub(crate) mean_us: f64,
}

/// Microseconds as a float.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank: the smallest value with at least q of the sample at or below it.
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

impl Summary {
    /// Summarises `values` (any order). An empty sample gives NaNs.
    pub(crate) fn of(values: &[Duration]) -> Summary {
        let mut sorted: Vec<f64> = values.iter().copied().map(micros).collect();
        sorted.sort_by(f64::total_cmp);
        let mean = if sorted.is_empty() {
            f64::NAN
        } else {
            sorted.iter().sum::<f64>() / sorted.len() as f64
        };
        Summary {
            samples: sorted.len(),
            min_us: sorted.first().copied().unwrap_or(f64::NAN),
            p25_us: quantile(&sorted, 0.25),
            median_us: quantile(&sorted, 0.50),
            p75_us: quantile(&sorted, 0.75),
            p99_us: quantile(&sorted, 0.99),
            max_us: sorted.last().copied().unwrap_or(f64::NAN),
            mean_us: mean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let s = Summary::of(&values);
        assert_eq!(s.samples, 100);
        assert_eq!(s.median_us, 50.0);
        assert_eq!(s.p25_us, 25.0);
        assert_eq!(s.p99_us, 99.0);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.max_us, 100.0);
        let one = Summary::of(&[Duration::from_micros(7)]);
        assert_eq!(one.p99_us, 7.0);
        assert!(Summary::of(&[]).median_us.is_nan());
    }
}
