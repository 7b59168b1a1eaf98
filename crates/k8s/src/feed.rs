//! [`KindFeed`]: turns one watcher's events into [`Changes`] for the index (the contract of
//! [`portolan_model::source`]). Pure and sync: tests feed it events without an API server.
//!
//! * `Apply` of a valid object applies it; of an invalid one keeps the last good version and
//!   reports the field-path errors (`/debug/config-errors`).
//! * `Delete` removes the object and its errors.
//! * A (re-)list (`Init`, `InitApply`..., `InitDone`) is buffered and applied at `InitDone`
//!   as one step: listed objects are applied, and objects this feed held that the list no
//!   longer contains are deleted (they went away while the watch was down).
//!
//! Errors are reported under one reporter per feed (`kubernetes/<Kind>[/<namespace>]`), each a
//! complete list, so a fixed object clears its error. The sink applies the changes; the feed
//! only remembers what it handed over.

use crate::decode::{self, Decoded, Outcome};
use crate::kinds;
use crate::view::ClusterView;
use kube::core::DynamicObject;
use kube::runtime::watcher::Event;
use portolan_api::{FieldError, Kind, ObjectRef};
use portolan_model::ConfigError;
use portolan_model::source::Changes;
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

/// What one event amounts to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Handled {
    /// What to apply to the index, with this feed's complete list of errors.
    pub changes: Changes,
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

    /// The changes one watcher event makes (for the sink to apply under its lock).
    pub fn handle(&mut self, event: Event<DynamicObject>) -> Handled {
        let mut out = Handled::default();
        let changes = &mut out.changes;
        match event {
            Event::Apply(obj) => self.upsert(decode::decode(self.kind, &obj), changes),
            Event::Delete(obj) => self.remove(&decode::object_ref(self.kind, &obj), changes),
            Event::Init => self.relist = Some(BTreeMap::new()),
            Event::InitApply(obj) => {
                let d = decode::decode(self.kind, &obj);
                match &mut self.relist {
                    Some(buffer) => {
                        buffer.insert(d.object.clone(), d);
                    }
                    None => self.upsert(d, changes),
                }
            }
            Event::InitDone => {
                self.finish_list(changes);
                out.first_sync = !self.synced;
                self.synced = true;
            }
        }
        changes.errors = self.errors();
        out
    }

    /// A completed list: deletes of the objects it lacks, and every listed object.
    fn finish_list(&mut self, changes: &mut Changes) {
        let listed = self.relist.take().unwrap_or_default();
        let held: BTreeSet<ObjectRef> = self
            .applied
            .iter()
            .chain(self.errors.keys())
            .filter(|r| !listed.contains_key(*r))
            .cloned()
            .collect();
        for gone in &held {
            self.remove(gone, changes);
        }
        for (_, d) in listed {
            self.upsert(d, changes);
        }
    }

    fn upsert(&mut self, d: Decoded, changes: &mut Changes) {
        if kinds::has_status(self.kind) || kinds::has_api_status(self.kind) {
            self.view.record(d.object.clone(), d.seen);
        }
        match d.outcome {
            Outcome::Valid(object) => {
                self.errors.remove(&d.object);
                if let Some(manifest) = d.manifest {
                    changes.manifests.push((d.object.clone(), manifest));
                }
                self.applied.insert(d.object);
                changes.apply.push(object);
            }
            Outcome::Invalid(errors) => {
                tracing::debug!(object = %d.object, "invalid; the last good version stays");
                self.errors.insert(d.object, errors);
            }
            Outcome::Skipped => self.remove(&d.object, changes),
        }
    }

    fn remove(&mut self, object: &ObjectRef, changes: &mut Changes) {
        self.view.forget(object);
        self.errors.remove(object);
        if self.applied.remove(object) {
            changes.delete.push(object.clone());
        }
    }

    /// This feed's complete list of errors.
    fn errors(&self) -> Vec<ConfigError> {
        self.errors
            .iter()
            .flat_map(|(object, errors)| {
                errors.iter().map(|e| ConfigError {
                    location: LOCATION.to_string(),
                    object: Some(object.clone()),
                    error: e.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
