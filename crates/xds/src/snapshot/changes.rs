//! Change sets: per type, which resources a snapshot added, changed or removed relative to the
//! snapshot its group published just before it.
//!
//! [`crate::Cache::set`] computes them once per published snapshot (one ordered walk over both
//! snapshots' names per type; a resource the builder shared with the previous snapshot is the
//! same `Arc` and costs one pointer comparison), and every stream of the group shares them. A
//! stream whose state for a type matches the previous snapshot exactly plans its push from the
//! change set, in O(changed resources), instead of diffing everything it subscribes to.
//!
//! A type has no change set when what a subscription gets may change without a resource
//! changing: when the names served by name only ([`super::Snapshot::in_wildcard`]) differ.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::TypeResources;
use crate::resource::Resource;

/// One resource name whose content differs between two snapshots of a group.
#[derive(Clone, Debug)]
pub struct Change {
    name: Arc<str>,
    old: Option<Arc<Resource>>,
    new: Option<Arc<Resource>>,
}

/// The changes of one type, in name order (shared by every stream of the group).
pub type Changes = Arc<[Change]>;

// === impl Change ===

impl Change {
    /// The resource name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resource in the previous snapshot; `None` when it was added.
    pub fn old(&self) -> Option<&Arc<Resource>> {
        self.old.as_ref()
    }

    /// The resource in this snapshot; `None` when it was removed.
    pub fn new(&self) -> Option<&Arc<Resource>> {
        self.new.as_ref()
    }

    /// The name as the snapshots share it.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }
}

/// What changed from `old` to `new` (one type), or `None` when a change set cannot describe it
/// (the names served by name only differ).
pub(super) fn diff(old: &TypeResources, new: &TypeResources) -> Option<Changes> {
    if old.named_only != new.named_only {
        return None;
    }
    if old.version == new.version {
        // Equal versions are equal contents: what every stream's quiet memo relies on too.
        return Some(Arc::from(Vec::new()));
    }
    Some(walk(&old.resources, &new.resources).into())
}

/// Both maps in name order, side by side.
fn walk(
    old: &BTreeMap<String, Arc<Resource>>,
    new: &BTreeMap<String, Arc<Resource>>,
) -> Vec<Change> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let mut changes = Vec::new();
    let (mut old, mut new) = (old.values().peekable(), new.values().peekable());
    loop {
        let order = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => Less,
            (None, Some(_)) => Greater,
            (Some(o), Some(n)) => o.name().cmp(n.name()),
        };
        let (o, n) = match order {
            Less => (old.next(), None),
            Greater => (None, new.next()),
            Equal => (old.next(), new.next()),
        };
        if let (Some(o), Some(n)) = (o, n)
            && (Arc::ptr_eq(o, n) || o.version() == n.version())
        {
            continue;
        }
        let Some(name) = n.or(o).map(|r| r.shared_name().clone()) else {
            break;
        };
        changes.push(Change {
            name,
            old: o.cloned(),
            new: n.cloned(),
        });
    }
    changes
}
