//! Distributions of per-client and per-change times: nearest-rank percentiles, and the
//! formatting the fleet scenarios (S3–S9) print them with.

use std::time::Duration;

/// p50, p99 and max of some durations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dist {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

// === impl Dist ===

impl Dist {
    pub fn of(times: &[Duration]) -> Self {
        let mut sorted = times.to_vec();
        sorted.sort();
        Self {
            count: sorted.len(),
            p50: percentile(&sorted, 50),
            p99: percentile(&sorted, 99),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

/// Nearest-rank percentile of sorted durations (zero for none).
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let times: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        let d = Dist::of(&times);
        assert_eq!(d.count, 200);
        assert_eq!(d.p50, Duration::from_millis(100));
        assert_eq!(d.p99, Duration::from_millis(198));
        assert_eq!(d.max, Duration::from_millis(200));
        assert_eq!(Dist::of(&[]), Dist::default());
        let one = Dist::of(&[Duration::from_millis(7)]);
        assert_eq!(
            (one.p50, one.p99),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
    }
}
