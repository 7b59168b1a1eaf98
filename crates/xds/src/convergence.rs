//! Convergence tracking: how long a debounced batch of changes takes to be ACKed by every
//! connected proxy.
//!
//! The pipeline [`Rollouts::begin`]s a rollout when a batch settles, with the time the batch's
//! first change was seen, and tags the snapshots it sets with the rollout's id. Every stream
//! [`Rollouts::join`]s when it opens; a stream that joined before a rollout began owes it one
//! report: once it has handled a snapshot of that rollout and every type it was sent is ACKed,
//! it reports [`Rollouts::synced`]. When the last owed report arrives (or the last owing stream
//! leaves), the time since the batch's first change is observed. A rollout still open after the
//! timeout counts as timed out instead (a NACK, a stuck proxy).
//!
//! A rollout that begins while another is open takes its place and keeps the older start: the
//! latency is from the first change not yet converged. In the steady state a stream owes
//! nothing and does no work here; reports and joins take one short lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// How long a rollout may take before it counts as timed out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Open rollouts and the streams that owe them a report.
#[derive(Debug)]
pub struct Rollouts {
    state: Mutex<State>,
    /// Id of the latest rollout begun (0: none yet).
    current: AtomicU64,
    timeout: Duration,
    seconds: Histogram,
    /// Rollouts observed in `seconds` (a histogram's count is not readable).
    converged: Counter,
    timeouts: Counter,
}

#[derive(Debug, Default)]
struct State {
    /// Streams joined and not left.
    streams: u64,
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    id: u64,
    started: Instant,
    /// Streams that still owe a report.
    pending: u64,
}

/// One stream's membership: which rollouts it owes a report.
#[derive(Debug)]
pub(crate) struct Member {
    /// The latest rollout begun when the stream joined; it owes only later ones.
    joined: u64,
    /// The latest rollout it reported (or did not owe).
    reported: u64,
}

// === impl Rollouts ===

impl Rollouts {
    pub(crate) fn new(timeout: Duration, seconds: Histogram, timeouts: Counter) -> Self {
        Self {
            state: Mutex::new(State::default()),
            current: AtomicU64::new(0),
            timeout,
            seconds,
            converged: Counter::default(),
            timeouts,
        }
    }

    /// Rollouts that converged.
    pub fn converged(&self) -> u64 {
        self.converged.get()
    }

    /// How long a rollout may stay open before [`Rollouts::expire`] counts it as timed out.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Begins a rollout whose first change was seen at `started`; returns its id, to tag the
    /// snapshots of the rollout with ([`crate::Snapshot::with_rollout`]).
    pub fn begin(&self, started: Instant) -> u64 {
        let mut state = self.lock();
        let id = self.current.load(Ordering::Relaxed) + 1;
        self.current.store(id, Ordering::Relaxed);
        let started = state.open.as_ref().map_or(started, |o| o.started);
        state.open = (state.streams > 0).then_some(Open {
            id,
            started,
            pending: state.streams,
        });
        id
    }

    /// Counts the open rollout as timed out if it has been open for the timeout or longer.
    pub fn expire(&self) {
        let mut state = self.lock();
        if state
            .open
            .as_ref()
            .is_some_and(|o| o.started.elapsed() >= self.timeout)
        {
            state.open = None;
            self.timeouts.inc();
        }
    }

    /// Whether a rollout is open (not yet converged nor timed out).
    pub fn is_open(&self) -> bool {
        self.lock().open.is_some()
    }

    pub(crate) fn join(&self) -> Member {
        let mut state = self.lock();
        state.streams += 1;
        let joined = self.current.load(Ordering::Relaxed);
        Member {
            joined,
            reported: joined,
        }
    }

    /// The member handled a snapshot of `rollout` and every type it was sent is ACKed.
    pub(crate) fn synced(&self, member: &mut Member, rollout: u64) {
        if rollout <= member.reported {
            return;
        }
        member.reported = rollout;
        let mut state = self.lock();
        if state.open.as_ref().is_some_and(|o| o.id == rollout) {
            self.settle_one(&mut state);
        }
    }

    /// The member's stream closed.
    pub(crate) fn leave(&self, member: &Member) {
        let mut state = self.lock();
        state.streams = state.streams.saturating_sub(1);
        let owes = state
            .open
            .as_ref()
            .is_some_and(|o| member.joined < o.id && member.reported < o.id);
        if owes {
            self.settle_one(&mut state);
        }
    }

    fn settle_one(&self, state: &mut State) {
        let Some(open) = state.open.as_mut() else {
            return;
        };
        open.pending = open.pending.saturating_sub(1);
        if open.pending == 0 {
            self.seconds.observe(open.started.elapsed().as_secs_f64());
            self.converged.inc();
            state.open = None;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::exponential_buckets;

    fn rollouts(timeout: Duration) -> (Rollouts, Counter) {
        let seconds = Histogram::new(exponential_buckets(0.01, 2.0, 4));
        let timeouts = Counter::default();
        let r = Rollouts::new(timeout, seconds, timeouts.clone());
        (r, timeouts)
    }

    #[test]
    fn converges_when_every_owing_stream_reports() {
        let (r, timeouts) = rollouts(DEFAULT_TIMEOUT);
        let mut a = r.join();
        let mut b = r.join();
        let id = r.begin(Instant::now());
        // A stream that joins after the rollout began owes it nothing.
        let mut late = r.join();
        r.synced(&mut late, id);
        r.synced(&mut a, id);
        r.synced(&mut a, id);
        assert!(r.is_open(), "b has not reported");
        assert_eq!(r.converged(), 0);
        r.synced(&mut b, id);
        assert!(!r.is_open());
        assert_eq!(r.converged(), 1);
        assert_eq!(timeouts.get(), 0);
    }

    #[test]
    fn a_newer_rollout_replaces_the_open_one_and_stale_reports_are_ignored() {
        let (r, _) = rollouts(DEFAULT_TIMEOUT);
        let mut a = r.join();
        let first = r.begin(Instant::now());
        let second = r.begin(Instant::now());
        r.synced(&mut a, first);
        assert!(
            r.is_open(),
            "a report of the replaced rollout does not count"
        );
        r.synced(&mut a, second);
        assert!(!r.is_open());
        assert_eq!(r.converged(), 1);
    }

    #[test]
    fn a_leaving_stream_no_longer_holds_the_rollout() {
        let (r, _) = rollouts(DEFAULT_TIMEOUT);
        let mut a = r.join();
        let b = r.join();
        let id = r.begin(Instant::now());
        r.synced(&mut a, id);
        r.leave(&b);
        assert!(!r.is_open());
        assert_eq!(r.converged(), 1);
        r.leave(&a);
        r.begin(Instant::now());
        assert!(!r.is_open(), "no stream: nothing to converge");
    }

    #[test]
    fn an_unanswered_rollout_times_out() {
        let (r, timeouts) = rollouts(Duration::ZERO);
        let _a = r.join();
        r.begin(Instant::now());
        r.expire();
        assert!(!r.is_open());
        assert_eq!(timeouts.get(), 1);
        assert_eq!(r.converged(), 0);
    }
}
