//! Config history: the last N World versions `serve` built, each with the objects that changed
//! since the previous one and the per-group snapshot versions it produced.
//!
//! Memory: an entry holds an `Arc<World>`; a World shares every unchanged object (`Arc`) with
//! its neighbours, so an entry costs its small metadata (the changed-object list and the
//! group/type version strings) plus the World's maps of pointers and only the objects that
//! changed. The ring holds at most `capacity` entries; the oldest is dropped first.

use portolan_model::World;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Display;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// What happened to one object between two versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

/// One changed object: `KIND NAMESPACE/NAME` and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub object: String,
    pub change: ChangeKind,
}

/// One World version as it was served.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub version: u64,
    /// Seconds since the Unix epoch when the version was first built.
    pub time: u64,
    /// The objects that differ from the previous entry (every object for the first one).
    pub changes: Vec<Change>,
    /// Group -> resource type -> snapshot version.
    pub groups: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(skip)]
    pub world: Arc<World>,
}

/// A rollback in force: version `to` is served while the source is at `source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RolledBack {
    pub to: u64,
    pub source: u64,
}

// === impl RolledBack ===

impl std::fmt::Display for RolledBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rolled back to {}; source is at {}",
            self.to, self.source
        )
    }
}

/// The bounded ring of [`Entry`]s.
#[derive(Debug)]
pub struct History {
    capacity: usize,
    entries: Mutex<VecDeque<Arc<Entry>>>,
    rolled_back: Mutex<Option<RolledBack>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl History ===

impl History {
    /// A ring of at most `capacity` versions (0 keeps none).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            entries: Mutex::new(VecDeque::new()),
            rolled_back: Mutex::new(None),
        })
    }

    /// Records a build of `world` that set these group snapshot versions. A build of the
    /// World version already at the head (a new group, a certificate rotation) updates its
    /// group versions instead of adding an entry.
    pub fn record(&self, world: &Arc<World>, groups: BTreeMap<String, BTreeMap<String, String>>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = lock(&self.entries);
        if let Some(last) = entries.back_mut()
            && last.version == world.version
        {
            let mut merged = last.groups.clone();
            merged.extend(groups);
            *last = Arc::new(Entry {
                version: last.version,
                time: last.time,
                changes: last.changes.clone(),
                groups: merged,
                world: last.world.clone(),
            });
            return;
        }
        *lock(&self.rolled_back) = None;
        let changes = match entries.back() {
            Some(last) => changed_objects(&last.world, world),
            None => changed_objects(&World::default(), world),
        };
        entries.push_back(Arc::new(Entry {
            version: world.version,
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            changes,
            groups,
            world: world.clone(),
        }));
        while entries.len() > self.capacity {
            entries.pop_front();
        }
    }

    /// Marks a rollback to `to` (ended by the next recorded version).
    pub fn set_rolled_back(&self, to: u64) -> RolledBack {
        let source = self.head().map_or(0, |e| e.version);
        let rolled = RolledBack { to, source };
        *lock(&self.rolled_back) = Some(rolled);
        rolled
    }

    /// Ends the rollback (the source is served again).
    pub fn clear_rolled_back(&self) {
        *lock(&self.rolled_back) = None;
    }

    /// The rollback in force, if any.
    pub fn rolled_back(&self) -> Option<RolledBack> {
        *lock(&self.rolled_back)
    }

    /// The newest entry (the source's version).
    pub fn head(&self) -> Option<Arc<Entry>> {
        lock(&self.entries).back().cloned()
    }

    /// Every kept entry, oldest first.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        lock(&self.entries).iter().cloned().collect()
    }

    /// The entry of World version `version`, if still kept.
    pub fn get(&self, version: u64) -> Option<Arc<Entry>> {
        lock(&self.entries)
            .iter()
            .find(|e| e.version == version)
            .cloned()
    }
}

/// The objects that differ between two Worlds (by pointer: the index replaces an object's
/// `Arc` only when it changes).
pub fn changed_objects(old: &World, new: &World) -> Vec<Change> {
    let mut out = Vec::new();
    diff_map(&old.services, &new.services, "Service ", &mut out);
    diff_map(&old.routes, &new.routes, "", &mut out);
    diff_map(&old.policies, &new.policies, "", &mut out);
    diff_map(&old.gateways, &new.gateways, "", &mut out);
    diff_map(&old.external_services, &new.external_services, "", &mut out);
    diff_map(&old.secrets, &new.secrets, "", &mut out);
    diff_map(
        &old.peer_authentications,
        &new.peer_authentications,
        "",
        &mut out,
    );
    diff_map(&old.access_policies, &new.access_policies, "", &mut out);
    diff_map(&old.proxy_scopes, &new.proxy_scopes, "", &mut out);
    diff_map(&old.ext_auths, &new.ext_auths, "", &mut out);
    diff_map(&old.rate_limits, &new.rate_limits, "", &mut out);
    diff_map(&old.envoy_patches, &new.envoy_patches, "", &mut out);
    diff_map(
        &old.request_authentications,
        &new.request_authentications,
        "",
        &mut out,
    );
    diff_map(&old.gateway_api, &new.gateway_api, "", &mut out);
    out
}

/// What to do in a cluster to bring its objects back to an older World version: Kubernetes
/// mode never serves from the history (the cluster is the source of truth), so a rollback
/// is this plan, for the user to re-apply.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct ReApply {
    /// Objects changed or removed since the target version, as they were then.
    pub apply: Vec<Manifest>,
    /// Objects created since the target version.
    pub delete: Vec<Deletion>,
    /// Objects changed since the target version whose documents the history does not keep
    /// (Secrets, EndpointSlices, Endpoints, Namespaces; or objects read before the history).
    pub not_kept: Vec<String>,
}

/// One document to re-apply.
#[derive(Debug, PartialEq, Serialize)]
pub struct Manifest {
    /// `KIND NAMESPACE/NAME`.
    pub object: String,
    pub manifest: serde_json::Value,
}

/// One object to delete, and the `kubectl` command that does it.
#[derive(Debug, PartialEq, Serialize)]
pub struct Deletion {
    pub object: String,
    pub command: String,
}

/// The plan that turns the objects of `current` back into those of `target`, from the
/// source documents both Worlds keep (`World::manifests`).
pub fn reapply(target: &World, current: &World) -> ReApply {
    let mut plan = ReApply::default();
    for (object, then) in &target.manifests {
        if current.manifests.get(object) != Some(then) {
            plan.apply.push(Manifest {
                object: object.to_string(),
                manifest: serde_json::from_str(then).unwrap_or(serde_json::Value::Null),
            });
        }
    }
    for (object, now) in &current.manifests {
        if !target.manifests.contains_key(object) {
            plan.delete.push(Deletion {
                object: object.to_string(),
                command: delete_command(object, now),
            });
        }
    }
    let planned: std::collections::BTreeSet<String> = plan
        .apply
        .iter()
        .map(|m| m.object.clone())
        .chain(plan.delete.iter().map(|d| d.object.clone()))
        .collect();
    plan.not_kept = changed_objects(target, current)
        .into_iter()
        .map(|c| c.object)
        .filter(|o| !planned.contains(o))
        .collect();
    plan
}

/// `kubectl delete` for an object, by the resource its document names (`KIND.GROUP/NAME`).
fn delete_command(object: &portolan_api::ObjectRef, document: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
    let kind = value["kind"].as_str().unwrap_or_default().to_lowercase();
    let group = value["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .map(|(group, _)| format!(".{group}"))
        .unwrap_or_default();
    let namespace = if object.kind.cluster_scoped() {
        String::new()
    } else {
        format!(" -n {}", object.namespace)
    };
    format!("kubectl delete{namespace} {kind}{group}/{}", object.name)
}

fn diff_map<K: Ord + Display, V>(
    old: &BTreeMap<K, Arc<V>>,
    new: &BTreeMap<K, Arc<V>>,
    prefix: &str,
    out: &mut Vec<Change>,
) {
    let mut push = |key: &K, change| {
        out.push(Change {
            object: format!("{prefix}{key}"),
            change,
        })
    };
    for (key, value) in new {
        match old.get(key) {
            None => push(key, ChangeKind::Added),
            Some(before) if !Arc::ptr_eq(before, value) => push(key, ChangeKind::Changed),
            Some(_) => {}
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(k)) {
        push(key, ChangeKind::Removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_model::Index;

    fn route(name: &str, host: &str) -> String {
        format!(
            "apiVersion: portolan.dev/v1alpha1\nkind: TrafficRoute\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n    - destination:\n        host: {host}\n        port: 80\n"
        )
    }

    fn object(doc: &str) -> portolan_model::Object {
        let value: serde_json::Value = serde_saphyr::from_str(doc).expect("yaml fixture");
        let resource = portolan_api::Resource::decode(value)
            .expect("decodes")
            .expect("known kind");
        portolan_model::convert::to_object(&resource)
    }

    fn world_with(docs: &[String]) -> Arc<World> {
        let mut index = Index::new();
        for doc in docs {
            index.apply(object(doc));
        }
        index.world()
    }

    #[test]
    fn bounded_and_ordered() {
        let history = History::new(2);
        let mut index = Index::new();
        for (i, host) in ["a", "b", "c"].iter().enumerate() {
            index.apply(object(&route("r", host)));
            let world = index.world();
            history.record(&world, BTreeMap::new());
            assert_eq!(history.entries().len(), (i + 1).min(2));
        }
        let versions: Vec<u64> = history.entries().iter().map(|e| e.version).collect();
        assert_eq!(versions.len(), 2);
        assert!(versions[0] < versions[1], "oldest first: {versions:?}");
        assert!(history.get(versions[1]).is_some());
        let rolled = history.set_rolled_back(versions[0]);
        assert_eq!(rolled.source, versions[1]);
        assert_eq!(history.rolled_back(), Some(rolled));
        index.apply(object(&route("r", "d")));
        history.record(&index.world(), BTreeMap::new());
        assert_eq!(
            history.rolled_back(),
            None,
            "a new version ends the rollback"
        );
    }

    #[test]
    fn same_version_merges_groups() {
        let history = History::new(5);
        let world = world_with(&[route("r", "a")]);
        history.record(&world, BTreeMap::from([("g1".into(), BTreeMap::new())]));
        history.record(&world, BTreeMap::from([("g2".into(), BTreeMap::new())]));
        let entries = history.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].groups.len(), 2);
    }

    #[test]
    fn changed_object_sets() {
        let v1 = world_with(&[route("r1", "a"), route("r2", "b")]);
        let v2 = world_with(&[route("r1", "a2"), route("r3", "c")]);
        let changes = changed_objects(&v1, &v2);
        let find = |name: &str| {
            changes
                .iter()
                .find(|c| c.object.ends_with(&format!("default/{name}")))
                .map(|c| c.change)
        };
        assert_eq!(find("r1"), Some(ChangeKind::Changed));
        assert_eq!(find("r2"), Some(ChangeKind::Removed));
        assert_eq!(find("r3"), Some(ChangeKind::Added));
        assert!(changed_objects(&v1, &v1).is_empty());
    }

    /// Applies `docs` the way the Kubernetes source does: each object with its document.
    fn cluster_world(index: &mut Index, docs: &[String]) -> Arc<World> {
        let mut changes = portolan_model::source::Changes::default();
        for doc in docs {
            let value: serde_json::Value = serde_saphyr::from_str(doc).expect("yaml fixture");
            let o = object(doc);
            let name = value["metadata"]["name"].as_str().unwrap_or_default();
            let key =
                portolan_api::ObjectRef::new(portolan_api::Kind::TrafficRoute, "default", name);
            changes.manifests.push((key, Arc::from(value.to_string())));
            changes.apply.push(o);
        }
        changes.apply_to("k8s", index);
        index.world()
    }

    #[test]
    fn reapply_restores_changed_and_removed_documents_and_deletes_new_ones() {
        let mut index = Index::new();
        let v1 = cluster_world(&mut index, &[route("r1", "a"), route("r2", "b")]);
        let r2 = portolan_api::ObjectRef::new(portolan_api::Kind::TrafficRoute, "default", "r2");
        index.delete(&r2);
        let v2 = cluster_world(&mut index, &[route("r1", "a2"), route("r3", "c")]);
        let plan = reapply(&v1, &v2);
        let applied: Vec<&str> = plan.apply.iter().map(|m| m.object.as_str()).collect();
        assert_eq!(
            applied,
            ["TrafficRoute default/r1", "TrafficRoute default/r2"]
        );
        assert_eq!(
            plan.apply[0].manifest["spec"]["hosts"][0], "a",
            "r1 as it was at the target version"
        );
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.delete[0].object, "TrafficRoute default/r3");
        assert_eq!(
            plan.delete[0].command,
            "kubectl delete -n default trafficroute.portolan.dev/r3"
        );
        assert!(plan.not_kept.is_empty(), "{:?}", plan.not_kept);
        assert_eq!(reapply(&v2, &v2), ReApply::default());
        // Objects whose documents are not kept are named, not lost.
        let without = world_with(&[route("r1", "a")]);
        let plan = reapply(&World::default(), &without);
        assert_eq!(plan.not_kept, ["TrafficRoute default/r1"]);
    }
}
