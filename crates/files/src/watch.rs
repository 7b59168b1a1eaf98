//! [`FileSource`] as a [`Source`]: keeps the index in step with the directory. Writes the
//! initial full scan first (then the source is synced), then one [`Changes`] per burst of
//! file-system events (coalesced: a rescan happens once events have been quiet for the
//! source's settle time, [`FileSource::with_settle`], or at once when every file written since
//! the last scan has been closed by its writer: a closed file is complete). A burst re-reads only the paths its
//! events named ([`FileSource::rescan_paths`]); the whole tree is read again when the watcher
//! reports an overflow (`need_rescan`), an error, an event without paths, or more than
//! [`MAX_PATHS`] paths, and after the watcher is (re)started.
//! If the watcher fails or the directory goes away, the last good state stays,
//! the source reports itself down ([`SourceHealth`]) and the directory is polled every
//! [`RETRY`] until the watcher can be set up again; once it can be read, the source is up.

use crate::error::FilesError;
use crate::source::{FileSource, REPORTER};
use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use portolan_model::source::{Source, SourceHealth, SourceSink};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest a steady stream of events can delay a rescan.
const MAX_SETTLE: Duration = Duration::from_secs(1);
/// Poll interval while the watcher is down (directory missing, watcher error).
const RETRY: Duration = Duration::from_secs(1);
/// More paths than this in one burst: read the whole tree instead of remembering them.
pub(crate) const MAX_PATHS: usize = 4096;

// === impl FileSource (Source) ===

impl Source for FileSource {
    type Error = FilesError;

    /// Fails only when the initial scan cannot read the directory.
    async fn run(mut self, sink: Arc<dyn SourceSink>) -> Result<(), FilesError> {
        let signal = Arc::new(Signal::default());
        // Watch before the first scan, so nothing written in between is missed.
        let mut watcher = match start(self.dir(), &signal) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watcher failed to start; polling every second");
                None
            }
        };
        let initial = self.rescan()?;
        let mut sent_errors = initial.errors.clone();
        sink.write(REPORTER, initial);
        sink.synced();
        let mut healthy = true;
        loop {
            tokio::select! {
                _ = signal.notify.notified() => settle(&signal, self.settle()).await,
                _ = tokio::time::sleep(RETRY), if watcher.is_none() => {}
            }
            if signal.broken.swap(false, Ordering::SeqCst) {
                tracing::warn!(dir = %self.dir().display(), "file watcher lost the directory");
                watcher = None;
            }
            let pending = signal.take();
            let restarted = watcher.is_none();
            if restarted {
                watcher = start(self.dir(), &signal).ok();
            }
            let scan = match pending {
                Pending::Paths(paths) if !restarted => {
                    self.rescan_paths(paths.iter().map(PathBuf::as_path))
                }
                _ => self.rescan(),
            };
            let changes = match scan {
                Ok(changes) => changes,
                Err(e) => {
                    if healthy {
                        tracing::warn!(error = %e, "config source down: keeping the last good configuration; retrying every second");
                    }
                    healthy = false;
                    sink.health(SourceHealth::down(&e));
                    watcher = None;
                    continue;
                }
            };
            if !healthy {
                tracing::info!(dir = %self.dir().display(), "config source up: directory is readable again");
                healthy = true;
                sink.health(SourceHealth::up());
            }
            if changes.is_empty() && changes.errors == sent_errors {
                continue;
            }
            sent_errors = changes.errors.clone();
            sink.write(REPORTER, changes);
        }
    }
}

/// What the watcher thread tells the watch loop.
#[derive(Default)]
struct Signal {
    notify: Notify,
    /// The watcher failed or its directory was removed or moved: set it up again.
    broken: AtomicBool,
    /// What changed since the watch loop last looked.
    pending: Mutex<Pending>,
    /// Files created or written to whose writer has not closed them yet: while there are
    /// any, a scan waits for the settle time.
    open: Mutex<BTreeSet<PathBuf>>,
}

/// The paths events named since the last scan, or that only a full scan will do.
enum Pending {
    Paths(BTreeSet<PathBuf>),
    Everything,
}

impl Default for Pending {
    fn default() -> Self {
        Pending::Paths(BTreeSet::new())
    }
}

// === impl Signal ===

impl Signal {
    fn event(&self, root: &Path, event: notify::Result<notify::Event>) {
        match event {
            Ok(ev) if is_own_read(&ev.kind) => return,
            Ok(ev) if is_root_gone(root, &ev) => {
                self.broken.store(true, Ordering::SeqCst);
                self.note(None);
            }
            Ok(ev) if ev.need_rescan() || ev.paths.is_empty() => self.note(None),
            Ok(ev) => {
                self.track_writes(&ev);
                self.note(Some(ev.paths));
            }
            Err(e) => {
                tracing::warn!(error = %e, "file watcher error");
                self.broken.store(true, Ordering::SeqCst);
                self.note(None);
            }
        }
        self.notify.notify_one();
    }

    /// Adds `paths` to what is pending (`None`: everything).
    fn note(&self, paths: Option<Vec<PathBuf>>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match (&mut *pending, paths) {
            (Pending::Paths(set), Some(paths)) => {
                set.extend(paths);
                if set.len() > MAX_PATHS {
                    *pending = Pending::Everything;
                }
            }
            (_, None) => *pending = Pending::Everything,
            (Pending::Everything, Some(_)) => {}
        }
    }

    /// Follows which files are being written: a creation or a write opens one, its writer's
    /// close (or its removal, or its move away) ends it.
    fn track_writes(&self, ev: &notify::Event) {
        let opens = match ev.kind {
            EventKind::Create(CreateKind::File | CreateKind::Any)
            | EventKind::Modify(ModifyKind::Data(_)) => true,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => false,
            _ => return,
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for path in &ev.paths {
            if opens {
                open.insert(path.clone());
            } else {
                open.remove(path);
            }
        }
    }

    /// Whether every file written since the last scan has been closed.
    fn writes_closed(&self) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Forgets the files still open: the settle time passed without their writers closing
    /// them (a writer that never closes, or a link), so they count as complete.
    fn forget_open(&self) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Takes what is pending; events from now on count towards the next scan.
    fn take(&self) -> Pending {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *pending)
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

/// Waits until every file written since the last scan is closed, or events have been quiet
/// for `quiet` (at most [`MAX_SETTLE`]).
async fn settle(signal: &Signal, quiet: Duration) {
    let deadline = Instant::now() + MAX_SETTLE;
    loop {
        if signal.writes_closed() {
            return;
        }
        tokio::select! {
            _ = signal.notify.notified() => {
                if Instant::now() >= deadline {
                    return;
                }
            }
            _ = tokio::time::sleep(quiet) => {
                signal.forget_open();
                return;
            }
        }
    }
}
