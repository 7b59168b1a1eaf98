//! Limits on what one client may cost the server: streams, message sizes, request rate, and how
//! streams are closed on shutdown. Each has a flag in `portolan serve` (see `docs/security.md`).

use std::time::{Duration, Instant};

/// The server's limits. [`Limits::default`] holds the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// xDS streams open at once on the whole server; beyond it a new stream gets
    /// `RESOURCE_EXHAUSTED`.
    pub max_streams: usize,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` advertised on every connection.
    pub max_streams_per_connection: u32,
    /// Largest request message decoded (responses may be larger: see `MAX_RESPONSE_SIZE`).
    pub max_request_bytes: usize,
    /// Sustained requests per second one stream may send (ACKs and NACKs are requests).
    pub request_rate: u32,
    /// Requests one stream may send in a burst above the sustained rate.
    pub request_burst: u32,
    /// On shutdown each stream closes after a random delay within this window, so that the
    /// proxies do not all reconnect to another replica at once.
    pub drain_spread: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_streams: 10_000,
            max_streams_per_connection: 128,
            max_request_bytes: 4 * 1024 * 1024,
            request_rate: 50,
            request_burst: 200,
            drain_spread: Duration::from_secs(5),
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second; one request takes one.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

// === impl TokenBucket ===

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token at `now`; false when the bucket is empty (the request is over the limit).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A random delay in `[0, spread)`, different for every call (no extra dependency: the
/// standard library's randomly seeded hasher).
pub fn jitter(spread: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nanos);
    Duration::from_nanos(h.finish() % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_a_burst_then_refuses() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, t0);
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0), "burst of 3 spent");
    }

    #[test]
    fn the_bucket_refills_at_the_rate_and_caps_at_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 2, t0);
        assert!(bucket.try_take(t0) && bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
        // 100 ms at 10/s: one token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(bucket.try_take(t1));
        assert!(!bucket.try_take(t1));
        // A long idle time refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert!(bucket.try_take(t2) && bucket.try_take(t2));
        assert!(!bucket.try_take(t2));
    }

    #[test]
    fn a_steady_client_under_the_rate_is_never_refused() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(50, 1, t0);
        for i in 1..1000u64 {
            assert!(
                bucket.try_take(t0 + Duration::from_millis(20 * i)),
                "request {i}"
            );
        }
    }

    #[test]
    fn jitter_stays_in_the_window() {
        let spread = Duration::from_millis(500);
        for _ in 0..100 {
            assert!(jitter(spread) < spread);
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
