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
    pub fn before(&self) -> Option<&Arc<Resource>> {
        self.old.as_ref()
    }

    /// The resource in this snapshot; `None` when it was removed.
    pub fn after(&self) -> Option<&Arc<Resource>> {
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

#[cfg(test)]
mod tests {
    use crate::ResourceType::{Cluster, Endpoint, Listener, Route};
    use crate::testing::*;

    fn names(changes: &[super::Change]) -> Vec<(&str, bool, bool)> {
        changes
            .iter()
            .map(|c| (c.name(), c.before().is_some(), c.after().is_some()))
            .collect()
    }

    #[test]
    fn added_changed_and_removed_resources_in_name_order() {
        let chain = published([
            snapshot_with(&[("a", 1), ("b", 2), ("c", 3)], &[("l", "a")]),
            snapshot_with(&[("a", 1), ("b", 9), ("d", 4)], &[("l", "a")]),
        ]);
        let (first, second) = (&chain[0], &chain[1]);
        let changes = second.changes_since(first.id(), Endpoint).expect("changes");
        assert_eq!(
            names(changes),
            vec![("b", true, true), ("c", true, false), ("d", false, true)]
        );
        let b = &changes[0];
        assert_eq!(
            b.before().map(|r| r.version()),
            first.resources(Endpoint).get("b").map(|r| r.version())
        );
        assert!(std::sync::Arc::ptr_eq(
            b.after().expect("changed"),
            &second.resources(Endpoint)["b"]
        ));
        let clusters = second.changes_since(first.id(), Cluster).expect("changes");
        assert_eq!(
            names(clusters),
            vec![("c", true, false), ("d", false, true)]
        );
        for ty in [Listener, Route] {
            assert_eq!(
                second.changes_since(first.id(), ty).map(<[_]>::len),
                Some(0),
                "{ty}"
            );
        }
    }

    #[test]
    fn only_the_snapshot_published_just_before_is_a_base() {
        let chain = published([
            snapshot_of(&["a"], &[]),
            snapshot_of(&["a", "b"], &[]),
            snapshot_of(&["b"], &[]),
        ]);
        assert!(chain[0].id() != 0 && chain[0].id() < chain[1].id());
        assert!(
            chain[0].changes_since(0, Cluster).is_none(),
            "the first has no base"
        );
        assert!(chain[2].changes_since(chain[1].id(), Cluster).is_some());
        assert!(chain[2].changes_since(chain[0].id(), Cluster).is_none());
        assert!(chain[2].changes_since(chain[2].id(), Cluster).is_none());
        let unpublished = snapshot_of(&["a"], &[]);
        assert_eq!(unpublished.id(), 0);
        assert!(unpublished.changes_since(0, Cluster).is_none());
    }

    #[test]
    fn a_change_of_the_names_served_by_name_only_has_no_change_set() {
        let build = |named_only: &[&str]| {
            let mut builder = crate::Snapshot::builder();
            for name in ["a", "b"] {
                builder
                    .add_cluster(&cluster(name))
                    .add_load_assignment(&cla(name, 1));
            }
            builder.named_only(Cluster, named_only.iter().map(|n| n.to_string()));
            builder.build().expect("consistent")
        };
        let chain = published([build(&[]), build(&["b"]), build(&["b"])]);
        assert!(chain[1].changes_since(chain[0].id(), Cluster).is_none());
        assert!(chain[1].changes_since(chain[0].id(), Endpoint).is_some());
        assert!(chain[2].changes_since(chain[1].id(), Cluster).is_some());
    }
}
