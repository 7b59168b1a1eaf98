//! The index writer: the one place config sources' changes enter the index (the sink side of
//! [`portolan_model::source`]).
//!
//! [`IndexWriter::spawn`] runs a [`Source`] on a task with a [`SourceWriter`] as its
//! [`SourceSink`], and hands the rest of `serve` its [`SourceStatus`] to read. A write applies the changes
//! under the index lock, logs errors that appeared or were resolved, and bumps the change
//! counter the pipeline debounces, only when the index changed. The source's health and its
//! first full read go to its status: `/readyz`, `/debug/sources` and
//! `portolan_config_source_up` read them, and the pipeline builds nothing before every
//! source has synced ([`SourceStatus::all_synced`]).

use portolan_model::source::{Changes, Source, SourceHealth, SourceSink};
use portolan_model::{ConfigError, Index};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Applies source changes to the index and counts those that changed it.
#[derive(Clone, Debug)]
pub struct IndexWriter {
    index: Arc<Mutex<Index>>,
    /// Bumped after every write that changed the index (the pipeline's debounce input).
    changed: watch::Sender<u64>,
}

/// One source's sink: writes through the [`IndexWriter`], publishes the source's health and
/// whether it has read everything once.
#[derive(Debug)]
pub struct SourceWriter {
    name: String,
    writer: IndexWriter,
    health: watch::Sender<SourceHealth>,
    synced: watch::Sender<bool>,
    /// The errors last written, by reporter (to log only what appeared or was resolved).
    reported: Mutex<BTreeMap<String, BTreeSet<ConfigError>>>,
}

/// What the rest of `serve` reads of one source.
#[derive(Clone, Debug)]
pub struct SourceStatus {
    /// `files`, `kubernetes`, ... (`/debug/sources`).
    pub name: String,
    /// Whether the source can read what it watches (down: the last good config is served).
    pub health: watch::Receiver<SourceHealth>,
    /// Whether the source has read everything once.
    pub synced: watch::Receiver<bool>,
}

// === impl IndexWriter ===

impl IndexWriter {
    /// A writer into `index`, and the change counter the pipeline debounces.
    pub fn new(index: Arc<Mutex<Index>>) -> (Self, watch::Receiver<u64>) {
        let (changed, changes) = watch::channel(0);
        (Self { index, changed }, changes)
    }

    /// A sink for one more source, named `name`, and its status.
    pub fn source(&self, name: &str) -> (Arc<SourceWriter>, SourceStatus) {
        let (health, health_rx) = watch::channel(SourceHealth::up());
        let (synced, synced_rx) = watch::channel(false);
        let writer = SourceWriter {
            name: name.to_string(),
            writer: self.clone(),
            health,
            synced,
            reported: Mutex::new(BTreeMap::new()),
        };
        let status = SourceStatus {
            name: name.to_string(),
            health: health_rx,
            synced: synced_rx,
        };
        (Arc::new(writer), status)
    }

    /// Runs `source` on a task, writing into the index under the source name `name`; returns
    /// its status and the task (abort it to stop the source). A source that cannot start is
    /// logged; it never syncs.
    pub fn spawn<S: Source>(&self, name: &str, source: S) -> (SourceStatus, JoinHandle<()>) {
        let (sink, status) = self.source(name);
        let task = tokio::spawn(async move {
            let name = sink.name.clone();
            if let Err(e) = source.run(sink).await {
                tracing::error!(source = %name, error = %e, "config source stopped; nothing more is read from it");
            }
        });
        (status, task)
    }

    /// The change counter (for wiring that reacts to index changes, like the status writer).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Applies `changes` under the index lock; returns whether the index changed.
    fn apply(&self, reporter: &str, changes: Changes) -> bool {
        let changed = {
            let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            changes.apply_to(reporter, &mut index)
        };
        if changed {
            self.changed.send_modify(|v| *v += 1);
        }
        changed
    }
}

// === impl SourceWriter ===

impl SourceWriter {
    /// Logs the errors of `reporter` that are new, and those that are gone.
    fn log_errors(&self, reporter: &str, errors: &[ConfigError]) {
        let current: BTreeSet<ConfigError> = errors.iter().cloned().collect();
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let before = reported.entry(reporter.to_string()).or_default();
        for e in current.difference(before) {
            tracing::warn!(source = %self.name, error = %e, "rejected; the last good version of the object stays in force");
        }
        for e in before.difference(&current) {
            tracing::info!(source = %self.name, error = %e, "resolved");
        }
        *before = current;
    }
}

impl SourceSink for SourceWriter {
    fn write(&self, reporter: &str, changes: Changes) -> bool {
        self.log_errors(reporter, &changes.errors);
        let (applied, deleted) = (changes.apply.len(), changes.delete.len());
        let changed = self.writer.apply(reporter, changes);
        if changed {
            tracing::debug!(source = %self.name, reporter, applied, deleted, "config changed");
        }
        changed
    }

    fn health(&self, health: SourceHealth) {
        self.health
            .send_if_modified(|h| std::mem::replace(h, health.clone()) != health);
    }

    fn synced(&self) {
        if !*self.synced.borrow() {
            tracing::info!(source = %self.name, "config source synced");
            self.synced.send_replace(true);
        }
    }
}

// === impl SourceStatus ===

impl SourceStatus {
    /// A receiver that turns true once every one of `sources` has synced (the pipeline's
    /// start signal). Follows them on a task while any has not.
    pub fn all_synced(sources: &[SourceStatus]) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let mut pending: Vec<watch::Receiver<bool>> =
            sources.iter().map(|s| s.synced.clone()).collect();
        tokio::spawn(async move {
            for synced in &mut pending {
                if synced.wait_for(|s| *s).await.is_err() {
                    return;
                }
            }
            tx.send_replace(true);
            // Held open: the pipeline stops waiting when the sender is gone.
            tx.closed().await;
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::{FieldError, FieldPath, Kind, ObjectRef};
    use portolan_model::{Object, Service, ServiceKey};

    fn service(name: &str) -> Object {
        Object::from(Service {
            key: ServiceKey::new("default", name),
            ports: vec![],
            cluster_ip: None,
            external_name: None,
            labels: Default::default(),
        })
    }

    fn error(name: &str) -> ConfigError {
        ConfigError {
            location: "a.yaml".into(),
            object: Some(ObjectRef::new(Kind::Service, "default", name)),
            error: FieldError::new(FieldPath::root(), "bad"),
        }
    }

    #[tokio::test]
    async fn writes_change_the_index_and_count_only_real_changes() {
        let index = Arc::new(Mutex::new(Index::new()));
        let (writer, mut changes) = IndexWriter::new(index.clone());
        let (sink, status) = writer.source("files");
        let write = |c: Changes| sink.write("files", c);
        let add = Changes {
            apply: vec![service("a")],
            ..Default::default()
        };
        assert!(write(add.clone()));
        assert!(changes.has_changed().expect("open"));
        changes.mark_unchanged();
        assert!(!write(add), "the same object again is no change");
        assert!(!changes.has_changed().expect("open"));

        // Errors are part of the index: a new one is a change, the same list is not.
        let errors = Changes {
            errors: vec![error("b")],
            ..Default::default()
        };
        assert!(write(errors.clone()));
        assert!(!write(errors));
        let world = index.lock().expect("lock").world();
        assert_eq!(world.errors.len(), 1);
        assert_eq!(world.services.len(), 1);
        assert_eq!(status.name, "files");
    }

    #[tokio::test]
    async fn health_and_sync_reach_the_status_and_all_synced_waits_for_every_source() {
        let (writer, _changes) = IndexWriter::new(Arc::new(Mutex::new(Index::new())));
        let (files, files_status) = writer.source("files");
        let (cluster, cluster_status) = writer.source("kubernetes");
        let mut all = SourceStatus::all_synced(&[files_status.clone(), cluster_status]);

        files.health(SourceHealth::down("gone"));
        assert_eq!(files_status.health.borrow().error.as_deref(), Some("gone"));
        files.synced();
        tokio::task::yield_now().await;
        assert!(!*all.borrow(), "kubernetes has not synced");
        cluster.synced();
        all.wait_for(|s| *s).await.expect("all synced");
    }
}
