//! Timing and memory: medians of repeated runs, and the process's resident set from
//! `/proc/self/status`.

use std::time::{Duration, Instant};

/// Runs `f` `runs` times (at least once) and returns each run's wall time and the last result.
pub fn time_runs<T>(runs: usize, mut f: impl FnMut() -> T) -> (Vec<Duration>, T) {
    let mut times = Vec::with_capacity(runs.max(1));
    let mut timed = || {
        let start = Instant::now();
        let out = std::hint::black_box(f());
        (start.elapsed(), out)
    };
    let (time, mut last) = timed();
    times.push(time);
    for _ in 1..runs {
        let (time, out) = timed();
        times.push(time);
        last = out;
    }
    (times, last)
}

/// The median of some durations (the mean of the two middle ones for an even count; zero for
/// none).
pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let n = sorted.len();
    match n {
        0 => Duration::ZERO,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// The largest of some durations (zero for none).
pub fn max(times: &[Duration]) -> Duration {
    times.iter().copied().max().unwrap_or_default()
}

/// `a / b` as a float (0 when `b` is zero).
pub fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        0.0
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

/// Resident set of this process, in KiB: now and the peak so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident set since the process started.
    pub peak_kib: u64,
}

// === impl Memory ===

impl Memory {
    /// Reads `/proc/self/status`; zeros where it is not available (not Linux).
    pub fn now() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Self {
            rss_kib: status_kib(&status, "VmRSS:"),
            peak_kib: status_kib(&status, "VmHWM:"),
        }
    }

    /// Resets the peak (`VmHWM`) to the current RSS (Linux: `5` into `/proc/self/clear_refs`),
    /// so that the next [`Memory::now`] reports the peak of what ran in between. Whether it
    /// could.
    pub fn reset_peak() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
}

/// The `kB` value of one `/proc/self/status` line.
fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(
            median(&[ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2500)
        );
        assert_eq!(median(&[]), Duration::ZERO);
        assert_eq!(max(&[ms(4), ms(9), ms(2)]), ms(9));
    }

    #[test]
    fn status_lines_parse() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), 1024);
        assert_eq!(status_kib(status, "VmHWM:"), 2048);
        assert_eq!(status_kib(status, "VmSwap:"), 0);
    }

    #[test]
    fn time_runs_runs_at_least_once() {
        let mut calls = 0;
        let (times, last) = time_runs(0, || {
            calls += 1;
            calls
        });
        assert_eq!((times.len(), last), (1, 1));
    }
}
