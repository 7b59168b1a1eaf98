//! [`ClusterView`]: what the watchers last saw of each Portolan custom resource in the cluster
//! (generation, resource version, written status). The status writer reads it to know which
//! objects exist, which generation an invalid object has, and what status is already there.

use crate::decode::Seen;
use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Shared between the watchers (writers) and the status writer (reader).
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    inner: Arc<Mutex<BTreeMap<ObjectRef, Seen>>>,
}

// === impl ClusterView ===

impl ClusterView {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ObjectRef, Seen>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, object: ObjectRef, seen: Seen) {
        self.lock().insert(object, seen);
    }

    /// Replaces what is known of an object only if it is still there (a status write's
    /// answer must not bring back an object deleted meanwhile).
    pub fn update(&self, object: &ObjectRef, seen: Seen) {
        if let Some(entry) = self.lock().get_mut(object) {
            *entry = seen;
        }
    }

    pub fn forget(&self, object: &ObjectRef) {
        self.lock().remove(object);
    }

    pub fn get(&self, object: &ObjectRef) -> Option<Seen> {
        self.lock().get(object).cloned()
    }

    /// A copy of everything seen.
    pub fn snapshot(&self) -> BTreeMap<ObjectRef, Seen> {
        self.lock().clone()
    }
}
