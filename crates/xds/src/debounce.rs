//! Debouncing of change notifications: many quick changes become one translation.

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
