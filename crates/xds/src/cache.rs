//! The snapshot cache: proxy group -> latest [`Snapshot`], published through `tokio::sync::watch`.
//!
//! A watch keeps only the latest value, so a slow stream catches up to the newest snapshot and
//! never accumulates a backlog. The cache also owns the table of connected streams
//! ([`ProxyStatus`]) that the stream tasks keep up to date.
//!
//! Any client can name a new group, so the number of groups subscribers may create is bounded
//! ([`Cache::set_max_groups`], [`Cache::try_subscribe`]) and groups nobody watches are evicted
//! ([`Cache::evict_idle`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::snapshot::Snapshot;
use crate::status::{ProxyStatus, TypeStatus};

type SnapshotTx = watch::Sender<Option<Arc<Snapshot>>>;
type SnapshotRx = watch::Receiver<Option<Arc<Snapshot>>>;

/// Latest snapshot per proxy group, and the connected streams.
#[derive(Debug)]
pub struct Cache {
    groups: Mutex<BTreeMap<String, Group>>,
    groups_changed: watch::Sender<u64>,
    proxies: Mutex<BTreeMap<u64, ProxyStatus>>,
    next_stream: AtomicU64,
    max_groups: AtomicUsize,
}

#[derive(Debug)]
struct Group {
    tx: SnapshotTx,
    /// Since when no stream watches the group (as seen by [`Cache::evict_idle`]).
    idle_since: Option<Instant>,
}

impl Group {
    fn new(tx: SnapshotTx) -> Self {
        Self {
            tx,
            idle_since: None,
        }
    }
}

/// A subscriber asked for a new group while the cache holds its maximum.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many proxy groups (limit {limit}); refusing new group {group:?}")]
pub struct GroupLimit {
    pub limit: usize,
    pub group: String,
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
            max_groups: AtomicUsize::new(usize::MAX),
        })
    }

    /// Bounds the groups [`Cache::try_subscribe`] may create (unbounded by default).
    pub fn set_max_groups(&self, limit: usize) {
        self.max_groups.store(limit, Ordering::Relaxed);
    }

    /// Replaces the group's snapshot; its streams wake and see only the latest one.
    /// Setting a group nobody subscribed to yet creates it (without bumping `groups_changed`:
    /// the caller already knows the group). The snapshot gets its id and, per type, what changed
    /// since the group's previous snapshot (see [`Snapshot::changes_since`]), computed here once
    /// for every stream of the group.
    pub fn set(&self, group: &str, mut snapshot: Snapshot) {
        let previous = self.get(group);
        snapshot.publish_after(previous.as_deref());
        let mut groups = lock(&self.groups);
        match groups.get(group) {
            Some(g) => {
                let latest = g.tx.borrow().as_ref().map(|s| s.id());
                if latest != previous.as_ref().map(|s| s.id()) {
                    // Another snapshot was set meanwhile: the change sets are against an old one.
                    snapshot.forget_changes();
                }
                g.tx.send_replace(Some(Arc::new(snapshot)));
            }
            None => {
                snapshot.forget_changes();
                let tx = watch::Sender::new(Some(Arc::new(snapshot)));
                groups.insert(group.to_string(), Group::new(tx));
            }
        }
    }

    /// The group's latest snapshot.
    pub fn get(&self, group: &str) -> Option<Arc<Snapshot>> {
        lock(&self.groups)
            .get(group)
            .and_then(|g| g.tx.borrow().clone())
    }

    /// Watches a group. An unknown group is registered (value `None` until set) and
    /// `groups_changed` is bumped so the wiring translates for it.
    /// Ignores the group limit (for in-process callers); streams use [`Cache::try_subscribe`].
    pub fn subscribe(&self, group: &str) -> SnapshotRx {
        let mut groups = lock(&self.groups);
        if let Some(g) = groups.get_mut(group) {
            g.idle_since = None;
            let first = g.tx.receiver_count() == 0;
            let rx = g.tx.subscribe();
            if first && rx.borrow().is_none() {
                // Retired while nobody watched (or never built): build it now.
                drop(groups);
                self.groups_changed.send_modify(|n| *n += 1);
            }
            return rx;
        }
        drop(groups);
        self.insert(group)
    }

    /// [`Cache::subscribe`], refusing to create a group beyond [`Cache::set_max_groups`].
    pub fn try_subscribe(&self, group: &str) -> Result<SnapshotRx, GroupLimit> {
        self.subscribe_within(group, self.max_groups.load(Ordering::Relaxed))
    }

    fn subscribe_within(&self, group: &str, limit: usize) -> Result<SnapshotRx, GroupLimit> {
        let groups = lock(&self.groups);
        if !groups.contains_key(group) && groups.len() >= limit {
            return Err(GroupLimit {
                limit,
                group: group.to_string(),
            });
        }
        drop(groups);
        Ok(self.subscribe(group))
    }

    /// Registers a group (or joins it if another subscriber just did) and bumps
    /// `groups_changed` if it is new.
    fn insert(&self, group: &str) -> SnapshotRx {
        let mut groups = lock(&self.groups);
        if let Some(g) = groups.get_mut(group) {
            g.idle_since = None;
            return g.tx.subscribe();
        }
        let tx = watch::Sender::new(None);
        let rx = tx.subscribe();
        groups.insert(group.to_string(), Group::new(tx));
        drop(groups);
        self.groups_changed.send_modify(|n| *n += 1);
        rx
    }

    /// Removes the groups no stream has watched for at least `idle` (measured from the first
    /// sweep that found them unwatched, so call it every `idle / 2` or so); returns their names.
    pub fn evict_idle(&self, idle: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut evicted = Vec::new();
        lock(&self.groups).retain(|name, g| {
            if g.tx.receiver_count() > 0 {
                g.idle_since = None;
                return true;
            }
            let since = *g.idle_since.get_or_insert(now);
            let keep = now.duration_since(since) < idle;
            if !keep {
                evicted.push(name.clone());
            }
            keep
        });
        evicted
    }

    /// The groups some stream watches now. Every other group's snapshot is retired (the
    /// group stays known, its value becomes `None`), in the same step: a stream that
    /// subscribes to it later finds no snapshot and has the group built for it then
    /// ([`Cache::subscribe`] bumps `groups_changed`), so a rebuild need not build groups
    /// nobody is connected to.
    pub fn watched_retiring_others(&self) -> Vec<String> {
        let mut watched = Vec::new();
        for (name, g) in lock(&self.groups).iter() {
            if g.tx.receiver_count() > 0 {
                watched.push(name.clone());
            } else if g.tx.borrow().is_some() {
                g.tx.send_replace(None);
            }
        }
        watched
    }

    /// The groups some stream watches that have no snapshot (new, or retired).
    pub fn unbuilt_watched(&self) -> Vec<String> {
        lock(&self.groups)
            .iter()
            .filter(|(_, g)| g.tx.receiver_count() > 0 && g.tx.borrow().is_none())
            .map(|(name, _)| name.clone())
            .collect()
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
    /// Counts `sent` more responses and rewrites the stream's per-type status with `write`
    /// (over the row's own, its allocations reused), under one lock; what `write` returns.
    pub fn update<T: Default>(
        &self,
        sent: u64,
        write: impl FnOnce(&mut Vec<TypeStatus>) -> T,
    ) -> T {
        match lock(&self.cache.proxies).get_mut(&self.id) {
            Some(row) => {
                row.responses_sent += sent;
                write(&mut row.types)
            }
            None => T::default(),
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
    fn new_groups_beyond_the_limit_are_refused_known_ones_are_not() {
        let cache = Cache::new();
        cache.set_max_groups(2);
        let _a = cache.try_subscribe("a").expect("first");
        let _b = cache.try_subscribe("b").expect("second");
        let err = cache
            .try_subscribe("c")
            .expect_err("third is over the limit");
        assert_eq!(err.limit, 2);
        assert!(
            err.to_string().contains("too many proxy groups (limit 2)"),
            "{err}"
        );
        assert!(
            cache.try_subscribe("a").is_ok(),
            "an existing group is always allowed"
        );
        assert_eq!(cache.groups(), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn only_unwatched_groups_are_evicted_after_the_idle_time() {
        let cache = Cache::new();
        cache.set_max_groups(2);
        let watched = cache.try_subscribe("watched").expect("sub");
        drop(cache.try_subscribe("gone").expect("sub"));
        // The first sweep notes that "gone" is idle; a long idle time keeps it.
        assert!(cache.evict_idle(Duration::from_secs(3600)).is_empty());
        assert!(cache.evict_idle(Duration::from_secs(3600)).is_empty());
        // Idle long enough: evicted, and its slot is free for a new group.
        assert_eq!(cache.evict_idle(Duration::ZERO), vec!["gone".to_string()]);
        assert_eq!(cache.groups(), vec!["watched".to_string()]);
        assert!(cache.try_subscribe("new").is_ok());
        drop(watched);
    }

    #[test]
    fn a_group_watched_again_is_no_longer_idle() {
        let cache = Cache::new();
        drop(cache.subscribe("web"));
        assert!(cache.evict_idle(Duration::from_secs(3600)).is_empty());
        let _again = cache.subscribe("web");
        assert!(cache.evict_idle(Duration::ZERO).is_empty());
        assert_eq!(cache.groups(), vec!["web".to_string()]);
    }

    #[tokio::test]
    async fn unwatched_groups_are_retired_and_rebuilt_on_their_next_subscriber() {
        let cache = Cache::new();
        let _watched = cache.subscribe("watched");
        cache.set("watched", snapshot_of(&["a"], &[]));
        cache.set("idle", snapshot_of(&["a"], &[]));
        let mut changed = cache.groups_changed();
        changed.mark_unchanged();
        assert_eq!(cache.watched_retiring_others(), vec!["watched".to_string()]);
        assert!(cache.get("watched").is_some());
        assert!(cache.get("idle").is_none(), "retired");
        assert_eq!(cache.groups().len(), 2, "still known");
        let rx = cache.subscribe("idle");
        assert!(rx.borrow().is_none());
        assert!(
            changed.has_changed().expect("alive"),
            "a subscriber of a retired group asks for a build"
        );
        assert_eq!(cache.unbuilt_watched(), vec!["idle".to_string()]);
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
            responses_sent: 0,
            warnings: vec![],
        };
        let handle = cache.register(row);
        let cluster = TypeStatus {
            type_url: ResourceType::Cluster.type_url().into(),
            sent_version: Some("1".into()),
            acked_version: None,
            last_nack: None,
            names: None,
        };
        handle.update(2, |rows| rows.push(cluster.clone()));
        assert_eq!(cache.proxies()[0].responses_sent, 2);
        assert_eq!(cache.proxies()[0].types, std::slice::from_ref(&cluster));
        let acked = TypeStatus {
            acked_version: Some("1".into()),
            ..cluster
        };
        handle.update(0, |rows| rows[0].clone_from(&acked));
        assert_eq!(cache.proxies()[0].types, [acked]);
        assert_eq!(cache.proxies()[0].responses_sent, 2);
        drop(handle);
        assert!(cache.proxies().is_empty());
    }
}
