//! Debouncing of change notifications: many quick changes become one translation.
//!
//! [`debounce`] waits for quiet after every change (trailing edge). [`Debouncer`] lets the
//! first change after a quiet period through at once (leading edge) and coalesces only the
//! changes that follow it, with the same quiet time and ceiling.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

/// Waits for a first change, then until `quiet` passes with no further change or `max` has
/// passed since the first change. Returns `false` when the sender is gone before any change.
pub async fn debounce(changes: &mut watch::Receiver<u64>, quiet: Duration, max: Duration) -> bool {
    if changes.changed().await.is_err() {
        return false;
    }
    let deadline = Instant::now() + max;
    loop {
        let quiet_end = (Instant::now() + quiet).min(deadline);
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    // The sender is gone: deliver the change we have; the next call says false.
                    return true;
                }
            }
            _ = sleep_until(quiet_end) => return true,
        }
        if Instant::now() >= deadline {
            return true;
        }
    }
}

/// Leading-edge debouncing: a change that comes `quiet` or more after the previous batch was
/// released is a batch of its own, released at once; a change sooner than that starts a
/// trailing wait as in [`debounce`] (until `quiet` passes with no change, at most `max`).
#[derive(Debug)]
pub struct Debouncer {
    quiet: Duration,
    max: Duration,
    /// When the previous batch was released.
    last: Option<Instant>,
}

// === impl Debouncer ===

impl Debouncer {
    pub fn new(quiet: Duration, max: Duration) -> Self {
        Self {
            quiet,
            max,
            last: None,
        }
    }

    /// Waits for the next batch; returns `false` when the sender is gone before any change.
    pub async fn next(&mut self, changes: &mut watch::Receiver<u64>) -> bool {
        if changes.changed().await.is_err() {
            return false;
        }
        let leading = self.last.is_none_or(|last| last.elapsed() >= self.quiet);
        if !leading {
            // Hand the change just seen on to the trailing wait, which starts with it.
            changes.mark_changed();
            debounce(changes, self.quiet, self.max).await;
        }
        self.last = Some(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn settles_after_quiet_period() {
        let (tx, mut rx) = watch::channel(0u64);
        let start = Instant::now();
        tx.send_replace(1);
        let sender = tokio::spawn(async move {
            for i in 2..5 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.send_replace(i);
            }
            tx
        });
        assert!(debounce(&mut rx, QUIET, MAX).await);
        // Last change at 150 ms, then 100 ms of quiet.
        assert_eq!(start.elapsed(), Duration::from_millis(250));
        assert_eq!(*rx.borrow(), 4);
        drop(sender.await);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_waiting_for_quiet_at_max() {
        let (tx, mut rx) = watch::channel(0u64);
        let start = Instant::now();
        tx.send_replace(1);
        let sender = tokio::spawn(async move {
            for i in 2..100 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.send_replace(i);
            }
        });
        assert!(debounce(&mut rx, QUIET, MAX).await);
        assert_eq!(start.elapsed(), MAX);
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn returns_false_when_the_sender_is_gone() {
        let (tx, mut rx) = watch::channel(0u64);
        drop(tx);
        assert!(!debounce(&mut rx, QUIET, MAX).await);
    }

    /// The first change after quiet goes out at once; a change right after it is coalesced
    /// with what follows; after a quiet period the next change goes out at once again.
    #[tokio::test(start_paused = true)]
    async fn leading_edge_then_trailing() {
        let (tx, mut rx) = watch::channel(0u64);
        let mut debouncer = Debouncer::new(QUIET, MAX);
        let start = Instant::now();
        tx.send_replace(1);
        assert!(debouncer.next(&mut rx).await);
        assert_eq!(start.elapsed(), Duration::ZERO, "leading edge: at once");
        let sender = tokio::spawn(async move {
            for i in 2..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tx.send_replace(i);
            }
            tx
        });
        assert!(debouncer.next(&mut rx).await);
        // Changes at 20, 40, 60 ms, coalesced until 100 ms of quiet after the last.
        assert_eq!(start.elapsed(), Duration::from_millis(160));
        assert_eq!(*rx.borrow(), 4);
        let tx = sender.await.expect("joined");
        tokio::time::sleep(QUIET).await;
        let again = Instant::now();
        tx.send_replace(5);
        assert!(debouncer.next(&mut rx).await);
        assert_eq!(
            again.elapsed(),
            Duration::ZERO,
            "after quiet: at once again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn trailing_batches_keep_the_ceiling() {
        let (tx, mut rx) = watch::channel(0u64);
        let mut debouncer = Debouncer::new(QUIET, MAX);
        tx.send_replace(1);
        assert!(debouncer.next(&mut rx).await);
        let start = Instant::now();
        let sender = tokio::spawn(async move {
            for i in 2..100 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.send_replace(i);
            }
        });
        assert!(debouncer.next(&mut rx).await);
        // First change at 50 ms, then never quiet: released at the 1 s ceiling after it.
        assert_eq!(start.elapsed(), Duration::from_millis(50) + MAX);
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn debouncer_returns_false_when_the_sender_is_gone() {
        let (tx, mut rx) = watch::channel(0u64);
        drop(tx);
        assert!(!Debouncer::new(QUIET, MAX).next(&mut rx).await);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_a_first_change() {
        let (tx, mut rx) = watch::channel(0u64);
        let waiter = tokio::spawn(async move { debounce(&mut rx, QUIET, MAX).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        tx.send_replace(1);
        assert!(waiter.await.expect("joined"));
    }
}
