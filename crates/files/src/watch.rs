//! [`watch`]: keeps a [`FileSource`] in step with its directory. Sends the initial full scan
//! first, then one [`Changes`] per burst of file-system events (coalesced: a rescan happens
//! once events have been quiet for [`SETTLE`]). If the watcher fails or the directory goes
//! away, the last good state stays and the directory is polled every [`RETRY`] until the
//! watcher can be set up again. [`watch_reporting`] also publishes the source's
//! [`SourceHealth`]: down while the directory cannot be read, up again once it can.

use crate::error::FilesError;
use crate::source::{Changes, FileSource};
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// Quiet time after the last event before rescanning.
pub const SETTLE: Duration = Duration::from_millis(50);
/// Longest a steady stream of events can delay a rescan.
const MAX_SETTLE: Duration = Duration::from_secs(1);
/// Poll interval while the watcher is down (directory missing, watcher error).
pub const RETRY: Duration = Duration::from_secs(1);

/// Whether the source could read its directory at the last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceHealth {
    /// The directory was read at the last attempt.
    pub up: bool,
    /// Why it could not be read (when down).
    pub error: Option<String>,
}

// === impl SourceHealth ===

impl SourceHealth {
    pub fn up() -> Self {
        Self {
            up: true,
            error: None,
        }
    }

    pub fn down(error: impl ToString) -> Self {
        Self {
            up: false,
            error: Some(error.to_string()),
        }
    }
}

/// Watches the source's directory and sends changes on `tx` until `tx` is closed.
///
/// The first message is the initial full scan (the moment the source is synced). Fails only
/// when that initial scan cannot read the directory.
pub async fn watch(source: FileSource, tx: mpsc::Sender<Changes>) -> Result<(), FilesError> {
    let (health, _) = tokio::sync::watch::channel(SourceHealth::up());
    watch_reporting(source, tx, health).await
}

/// [`watch`], publishing on `health` whether the directory can be read.
pub async fn watch_reporting(
    mut source: FileSource,
    tx: mpsc::Sender<Changes>,
    health: tokio::sync::watch::Sender<SourceHealth>,
) -> Result<(), FilesError> {
    let signal = Arc::new(Signal::default());
    // Watch before the first scan, so nothing written in between is missed.
    let mut watcher = match start(source.dir(), &signal) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "file watcher failed to start; polling every second");
            None
        }
    };
    let initial = source.rescan()?;
    let mut sent_errors = initial.errors.clone();
    if tx.send(initial).await.is_err() {
        return Ok(());
    }
    let mut healthy = true;
    loop {
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = signal.notify.notified() => {
                if !settle(&signal, &tx).await {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep(RETRY), if watcher.is_none() => {}
        }
        if signal.broken.swap(false, Ordering::SeqCst) {
            tracing::warn!(dir = %source.dir().display(), "file watcher lost the directory");
            watcher = None;
        }
        if watcher.is_none() {
            watcher = start(source.dir(), &signal).ok();
        }
        let changes = match source.rescan() {
            Ok(changes) => changes,
            Err(e) => {
                if healthy {
                    tracing::warn!(error = %e, "config source down: keeping the last good configuration; retrying every second");
                }
                healthy = false;
                health.send_replace(SourceHealth::down(&e));
                watcher = None;
                continue;
            }
        };
        if !healthy {
            tracing::info!(dir = %source.dir().display(), "config source up: directory is readable again");
            healthy = true;
            health.send_replace(SourceHealth::up());
        }
        if changes.is_empty() && changes.errors == sent_errors {
            continue;
        }
        sent_errors = changes.errors.clone();
        if tx.send(changes).await.is_err() {
            return Ok(());
        }
    }
}

/// What the watcher thread tells the watch loop.
#[derive(Default)]
struct Signal {
    notify: Notify,
    /// The watcher failed or its directory was removed or moved: set it up again.
    broken: AtomicBool,
}

// === impl Signal ===

impl Signal {
    fn event(&self, root: &Path, event: notify::Result<notify::Event>) {
        match event {
            Ok(ev) if is_own_read(&ev.kind) => return,
            Ok(ev) if is_root_gone(root, &ev) => self.broken.store(true, Ordering::SeqCst),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "file watcher error");
                self.broken.store(true, Ordering::SeqCst);
            }
        }
        self.notify.notify_one();
    }
}

/// Opening and reading files (our own scans do it) changes nothing.
fn is_own_read(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
        )
    )
}

fn is_root_gone(root: &Path, ev: &notify::Event) -> bool {
    let gone = matches!(
        ev.kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    );
    gone && ev.paths.iter().any(|p| p == root)
}

fn start(dir: &Path, signal: &Arc<Signal>) -> Result<RecommendedWatcher, FilesError> {
    let root: PathBuf = dir.to_path_buf();
    let s = signal.clone();
    let err = |source| FilesError::Watch {
        path: dir.to_path_buf(),
        source,
    };
    let mut watcher = notify::recommended_watcher(move |ev| s.event(&root, ev)).map_err(err)?;
    watcher.watch(dir, RecursiveMode::Recursive).map_err(err)?;
    Ok(watcher)
}

/// Waits until events have been quiet for [`SETTLE`] (at most [`MAX_SETTLE`]). Returns false
/// when `tx` closed meanwhile.
async fn settle(signal: &Signal, tx: &mpsc::Sender<Changes>) -> bool {
    let deadline = Instant::now() + MAX_SETTLE;
    loop {
        tokio::select! {
            _ = tx.closed() => return false,
            _ = signal.notify.notified() => {
                if Instant::now() >= deadline {
                    return true;
                }
            }
            _ = tokio::time::sleep(SETTLE) => return true,
        }
    }
}
