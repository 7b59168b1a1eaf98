//! [`KindFeed`]: turns one watcher's events into index changes. Pure and sync: tests feed it
//! events without an API server.
//!
//! * `Apply` of a valid object applies it; of an invalid one keeps the last good version and
//!   reports the field-path errors (`/debug/config-errors`).
//! * `Delete` removes the object and its errors.
//! * A (re-)list (`Init`, `InitApply`..., `InitDone`) is buffered and applied at `InitDone`
//!   as one step: listed objects are applied, and objects this feed held that the list no
//!   longer contains are deleted (they went away while the watch was down).
//!
//! Errors are reported under one reporter per feed (`kubernetes/<Kind>[/<namespace>]`), each a
//! complete list, so a fixed object clears its error.

use crate::decode::{self, Decoded, Outcome};
use crate::kinds;
use crate::view::ClusterView;
use kube::core::DynamicObject;
use kube::runtime::watcher::Event;
use portolan_api::{FieldError, Kind, ObjectRef};
use portolan_model::{ConfigError, Index};
use std::collections::{BTreeMap, BTreeSet};

/// Where errors of cluster objects say they come from.
pub const LOCATION: &str = "kubernetes";

/// The state of one watcher (one kind, one namespace or all).
#[derive(Debug)]
pub struct KindFeed {
    kind: Kind,
    reporter: String,
    /// Objects whose (last good) version this feed applied to the index.
    applied: BTreeSet<ObjectRef>,
    /// Errors of objects whose current version is invalid.
    errors: BTreeMap<ObjectRef, Vec<FieldError>>,
    /// Objects of a list in progress (between `Init` and `InitDone`).
    relist: Option<BTreeMap<ObjectRef, Decoded>>,
    synced: bool,
    view: ClusterView,
}

/// What one event did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handled {
    /// The index changed (objects or errors): a new World.
    pub changed: bool,
    /// This event completed the feed's first list.
    pub first_sync: bool,
}

// === impl KindFeed ===

impl KindFeed {
    /// A feed for `kind` in `namespace` (`None`: all namespaces).
    pub fn new(kind: Kind, namespace: Option<&str>, view: ClusterView) -> Self {
        let reporter = match namespace {
            Some(ns) => format!("{LOCATION}/{kind}/{ns}"),
            None => format!("{LOCATION}/{kind}"),
        };
        Self {
            kind,
            reporter,
            applied: BTreeSet::new(),
            errors: BTreeMap::new(),
            relist: None,
            synced: false,
            view,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The name under which this feed reports errors to the index.
    pub fn reporter(&self) -> &str {
        &self.reporter
    }

    /// Whether the first list has completed.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Applies one watcher event to the index (under the caller's lock).
    pub fn handle(&mut self, event: Event<DynamicObject>, index: &mut Index) -> Handled {
        let mut out = Handled::default();
        match event {
            Event::Apply(obj) => out.changed = self.upsert(decode::decode(self.kind, &obj), index),
            Event::Delete(obj) => {
                out.changed = self.remove(&decode::object_ref(self.kind, &obj), index)
            }
            Event::Init => self.relist = Some(BTreeMap::new()),
            Event::InitApply(obj) => {
                let d = decode::decode(self.kind, &obj);
                match &mut self.relist {
                    Some(buffer) => {
                        buffer.insert(d.object.clone(), d);
                    }
                    None => out.changed = self.upsert(d, index),
                }
            }
            Event::InitDone => {
                out.changed = self.finish_list(index);
                out.first_sync = !self.synced;
                self.synced = true;
            }
        }
        out.changed |= self.report(index);
        out
    }

    /// Applies a completed list: every listed object, and deletes of the ones it lacks.
    fn finish_list(&mut self, index: &mut Index) -> bool {
        let listed = self.relist.take().unwrap_or_default();
        let held: BTreeSet<ObjectRef> = self
            .applied
            .iter()
            .chain(self.errors.keys())
            .filter(|r| !listed.contains_key(*r))
            .cloned()
            .collect();
        let mut changed = false;
        for gone in &held {
            changed |= self.remove(gone, index);
        }
        for (_, d) in listed {
            changed |= self.upsert(d, index);
        }
        changed
    }

    fn upsert(&mut self, d: Decoded, index: &mut Index) -> bool {
        if kinds::has_status(self.kind) {
            self.view.record(d.object.clone(), d.seen);
        }
        match d.outcome {
            Outcome::Valid(object) => {
                self.errors.remove(&d.object);
                self.applied.insert(d.object);
                index.apply(object)
            }
            Outcome::Invalid(errors) => {
                tracing::debug!(object = %d.object, "invalid; the last good version stays");
                self.errors.insert(d.object, errors);
                false
            }
            Outcome::Skipped => self.remove(&d.object, index),
        }
    }

    fn remove(&mut self, object: &ObjectRef, index: &mut Index) -> bool {
        self.view.forget(object);
        self.errors.remove(object);
        self.applied.remove(object) && index.delete(object)
    }

    /// Hands the index this feed's complete list of errors.
    fn report(&self, index: &mut Index) -> bool {
        let errors = self
            .errors
            .iter()
            .flat_map(|(object, errors)| {
                errors.iter().map(|e| ConfigError {
                    location: LOCATION.to_string(),
                    object: Some(object.clone()),
                    error: e.clone(),
                })
            })
            .collect();
        index.set_errors(&self.reporter, errors)
    }
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
