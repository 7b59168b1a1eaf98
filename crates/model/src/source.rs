//! The contract between config sources and the index.
//!
//! A [`Source`] (a directory of manifests, a Kubernetes cluster, ...) reads objects from
//! somewhere and hands everything to a [`SourceSink`]: the [`Changes`] it read (objects to
//! apply and delete, and its complete list of errors), its [`SourceHealth`] (whether it can
//! read what it watches), and the moment it has read everything once (nothing is served
//! before every source has). The sink behind `portolan serve` is the pipeline's index writer,
//! which applies changes under the index lock and wakes the pipeline; a new source is one
//! more implementation of [`Source`], nothing else.
//!
//! Pure data and traits: no I/O, no runtime.

use crate::{ConfigError, Index, Object};
use portolan_api::ObjectRef;
use std::future::Future;
use std::sync::Arc;

/// A config source: reads until it is dropped (its task aborted), reporting to `sink`.
pub trait Source: Send + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads everything once (then calls [`SourceSink::synced`]) and keeps reading changes.
    /// Fails only when the source cannot start at all.
    fn run(self, sink: Arc<dyn SourceSink>)
    -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Where a source puts what it reads. Called from the source's tasks; never blocks for long.
pub trait SourceSink: Send + Sync {
    /// Applies `changes` to the index, their errors under `reporter` (a source may report
    /// under several names, one per watcher). Returns whether the index changed.
    fn write(&self, reporter: &str, changes: Changes) -> bool;

    /// Whether the source can read what it watches now (down: the last good config stays).
    fn health(&self, health: SourceHealth);

    /// The source has read everything once.
    fn synced(&self);
}

/// What changed in a source since it last wrote, under one reporter name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// New or changed objects.
    pub apply: Vec<Object>,
    /// Objects no longer defined anywhere.
    pub delete: Vec<ObjectRef>,
    /// The complete current list of this reporter's errors (not a delta), sorted.
    pub errors: Vec<ConfigError>,
    /// The source documents of applied objects, as a user would re-apply them (Kubernetes
    /// source; see [`crate::world::World::manifests`]).
    pub manifests: Vec<(ObjectRef, Arc<str>)>,
}

/// Whether a source could read what it watches at its last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceHealth {
    /// The last attempt worked.
    pub up: bool,
    /// Why it did not (when down).
    pub error: Option<String>,
}

// === impl Changes ===

impl Changes {
    /// Whether there is nothing to apply or delete. `errors` is a complete list, not a
    /// delta, so it is not considered: [`Changes::apply_to`] compares it with the list the
    /// index holds.
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.delete.is_empty()
    }

    /// Applies to the index (under the caller's lock): objects first, then deletes, then the
    /// errors under `reporter`. Returns whether the index changed.
    pub fn apply_to(self, reporter: &str, index: &mut Index) -> bool {
        let mut changed = false;
        for (object, manifest) in self.manifests {
            index.set_manifest(object, manifest);
        }
        for object in self.apply {
            changed |= index.apply(object);
        }
        for object in &self.delete {
            changed |= index.delete(object);
        }
        changed |= index.set_errors(reporter, self.errors);
        changed
    }
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
