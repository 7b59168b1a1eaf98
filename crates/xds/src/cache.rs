//! The snapshot cache: proxy group -> latest [`Snapshot`], published through `tokio::sync::watch`.
//!
//! A watch keeps only the latest value, so a slow stream catches up to the newest snapshot and
//! never accumulates a backlog. The cache also owns the table of connected streams
//! ([`ProxyStatus`]) that the stream tasks keep up to date.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::snapshot::Snapshot;
use crate::status::{ProxyStatus, TypeStatus};

type SnapshotTx = watch::Sender<Option<Arc<Snapshot>>>;

/// Latest snapshot per proxy group, and the connected streams.
#[derive(Debug)]
pub struct Cache {
    groups: Mutex<BTreeMap<String, SnapshotTx>>,
    groups_changed: watch::Sender<u64>,
    proxies: Mutex<BTreeMap<u64, ProxyStatus>>,
    next_stream: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Cache ===

impl Cache {
    pub fn new() -> Arc<Cache> {
        Arc::new(Cache {
            groups: Mutex::new(BTreeMap::new()),
            groups_changed: watch::Sender::new(0),
            proxies: Mutex::new(BTreeMap::new()),
            next_stream: AtomicU64::new(0),
        })
    }

    /// Replaces the group's snapshot; its streams wake and see only the latest one.
    /// Setting a group nobody subscribed to yet creates it (without bumping `groups_changed`:
    /// the caller already knows the group).
    pub fn set(&self, group: &str, mut snapshot: Snapshot) {
        snapshot.mark_published();
        let snapshot = Some(Arc::new(snapshot));
        let mut groups = lock(&self.groups);
        match groups.get(group) {
            Some(tx) => {
                tx.send_replace(snapshot);
            }
            None => {
                groups.insert(group.to_string(), watch::Sender::new(snapshot));
            }
        }
    }

    /// The group's latest snapshot.
    pub fn get(&self, group: &str) -> Option<Arc<Snapshot>> {
        lock(&self.groups)
            .get(group)
            .and_then(|tx| tx.borrow().clone())
    }

    /// Watches a group. An unknown group is registered (value `None` until set) and
    /// `groups_changed` is bumped so the wiring translates for it.
    pub fn subscribe(&self, group: &str) -> watch::Receiver<Option<Arc<Snapshot>>> {
        let mut groups = lock(&self.groups);
        if let Some(tx) = groups.get(group) {
            return tx.subscribe();
        }
        let tx = watch::Sender::new(None);
        let rx = tx.subscribe();
        groups.insert(group.to_string(), tx);
        drop(groups);
        self.groups_changed.send_modify(|n| *n += 1);
        rx
    }

    /// Every known group (set or subscribed).
    pub fn groups(&self) -> Vec<String> {
        lock(&self.groups).keys().cloned().collect()
    }

    /// Bumped whenever a new group is registered by a subscriber.
    pub fn groups_changed(&self) -> watch::Receiver<u64> {
        self.groups_changed.subscribe()
    }

    /// The connected streams.
    pub fn proxies(&self) -> Vec<ProxyStatus> {
        lock(&self.proxies).values().cloned().collect()
    }

    /// Adds a stream to the status table; the row goes away when the handle drops.
    pub fn register(self: &Arc<Self>, status: ProxyStatus) -> StreamRegistration {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        lock(&self.proxies).insert(id, status);
        StreamRegistration {
            cache: self.clone(),
            id,
        }
    }
}

/// A stream's row in the status table.
#[derive(Debug)]
pub struct StreamRegistration {
    cache: Arc<Cache>,
    id: u64,
}

// === impl StreamRegistration ===

impl StreamRegistration {
    /// Replaces the stream's per-type status.
    pub fn update(&self, types: Vec<TypeStatus>) {
        if let Some(row) = lock(&self.cache.proxies).get_mut(&self.id) {
            row.types = types;
        }
    }
}

impl Drop for StreamRegistration {
    fn drop(&mut self) {
        lock(&self.cache.proxies).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResourceType;
    use crate::testing::snapshot_of;
    use std::time::SystemTime;

    #[tokio::test]
    async fn set_wakes_subscribers_with_the_latest() {
        let cache = Cache::new();
        let mut rx = cache.subscribe("web");
        assert!(rx.borrow_and_update().is_none());
        cache.set("web", snapshot_of(&["a"], &[]));
        cache.set("web", snapshot_of(&["a", "b"], &[]));
        rx.changed().await.expect("sender alive");
        let latest = rx.borrow_and_update().clone().expect("set");
        assert_eq!(latest.resources(ResourceType::Cluster).len(), 2);
        assert!(cache.get("web").is_some());
        assert!(cache.get("other").is_none());
    }

    #[tokio::test]
    async fn subscribing_a_new_group_bumps_groups_changed() {
        let cache = Cache::new();
        let mut changed = cache.groups_changed();
        let _rx = cache.subscribe("web");
        changed.changed().await.expect("bumped");
        assert_eq!(cache.groups(), vec!["web".to_string()]);
        let _again = cache.subscribe("web");
        assert!(
            !changed.has_changed().expect("alive"),
            "known group: no bump"
        );
        cache.set("batch", snapshot_of(&[], &[]));
        assert_eq!(cache.groups(), vec!["batch".to_string(), "web".to_string()]);
    }

    #[test]
    fn registrations_come_and_go() {
        let cache = Cache::new();
        let row = ProxyStatus {
            node_id: "n".into(),
            group: "web".into(),
            stream: "ads".into(),
            delta: false,
            client: String::new(),
            connected_at: SystemTime::now(),
            types: vec![],
        };
        let handle = cache.register(row);
        handle.update(vec![TypeStatus {
            type_url: ResourceType::Cluster.type_url().into(),
            sent_version: Some("1".into()),
            acked_version: None,
            last_nack: None,
            names: None,
        }]);
        assert_eq!(cache.proxies()[0].types.len(), 1);
        drop(handle);
        assert!(cache.proxies().is_empty());
    }
}
