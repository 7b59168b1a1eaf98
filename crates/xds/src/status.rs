//! What each connected stream has been sent and has accepted, for `/debug/proxies` and proxy status.
//!
//! The stream tasks write these rows (through the cache's table); readers get copies.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::resource::{Resource, ResourceType, aggregate_version};
use crate::snapshot::Snapshot;

/// A stream's subscribed names, shared between its state machine and its status row (the names
/// themselves are the snapshot's): updating the row copies no name.
pub type SubscribedNames = Arc<BTreeSet<Arc<str>>>;

/// One connected xDS stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyStatus {
    /// Envoy `node.id`.
    pub node_id: String,
    /// Proxy group (`node.cluster`, empty -> `default`).
    pub group: String,
    /// `ads`, `cds`, `eds`, `lds` or `rds`.
    pub stream: String,
    /// Whether the stream is Delta xDS.
    pub delta: bool,
    /// `node.user_agent_name` and its version, when present.
    pub client: String,
    /// When the stream opened (seconds since the epoch in JSON).
    #[serde(serialize_with = "epoch_seconds")]
    pub connected_at: SystemTime,
    /// Per type URL the stream subscribes to.
    pub types: Vec<TypeStatus>,
    /// xDS responses sent on the stream (pushes and answers), so operators and tests can see
    /// which proxies a change reached.
    pub responses_sent: u64,
    /// Node metadata Portolan could not use (e.g. an unknown `portolan.dev/discovery` value),
    /// naming the field; logged once when the stream opened.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What one stream was sent and accepted for one type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeStatus {
    pub type_url: String,
    /// Version of the last response sent.
    pub sent_version: Option<String>,
    /// Version of the last response the client ACKed.
    pub acked_version: Option<String>,
    /// The last NACK, kept after later ACKs so operators can see it.
    pub last_nack: Option<Nack>,
    /// The subscribed names the versions cover (SotW by-name types); `None` when they cover
    /// every resource of the type (wildcard subscriptions, and Delta, whose versions are the
    /// snapshot's).
    #[serde(skip)]
    pub names: Option<SubscribedNames>,
}

/// A rejected response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Nack {
    /// The version the client rejected (the one sent with the NACKed nonce).
    pub version: String,
    /// Envoy's `error_detail.message`.
    pub message: String,
    /// When the NACK arrived (seconds since the epoch in JSON).
    #[serde(serialize_with = "epoch_seconds")]
    pub at: SystemTime,
}

fn epoch_seconds<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    serializer.serialize_u64(seconds)
}

/// How far one stream is behind the cache for one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SyncState {
    /// Nothing of the type was sent yet.
    NotSent,
    /// The client ACKed the version the cache holds now.
    Synced,
    /// A newer version is in flight or not sent yet.
    Stale,
    /// The client rejected the version sent last.
    Nacked,
}

// === impl SyncState ===

impl SyncState {
    /// Classifies versions: `sent` and `acked` by the stream, `nacked` the version of the last
    /// NACK, `current` the version the cache holds for the stream (`None`: no snapshot).
    pub fn of(
        sent: Option<&str>,
        acked: Option<&str>,
        nacked: Option<&str>,
        current: Option<&str>,
    ) -> Self {
        let Some(sent) = sent else {
            return SyncState::NotSent;
        };
        if nacked == Some(sent) {
            return SyncState::Nacked;
        }
        if acked == Some(sent) && current == Some(sent) {
            return SyncState::Synced;
        }
        SyncState::Stale
    }

    /// `SYNCED`, `STALE`, `NACKED` or `NOT SENT`.
    pub fn label(self) -> &'static str {
        match self {
            SyncState::NotSent => "NOT SENT",
            SyncState::Synced => "SYNCED",
            SyncState::Stale => "STALE",
            SyncState::Nacked => "NACKED",
        }
    }
}

// === impl TypeStatus ===

impl TypeStatus {
    /// The resource type, `None` for a type Portolan does not serve.
    pub fn resource_type(&self) -> Option<ResourceType> {
        ResourceType::from_type_url(&self.type_url)
    }

    /// The snapshot's resources this stream's versions cover, by name.
    pub fn covered<'a>(&self, snapshot: &'a Snapshot) -> Vec<&'a Arc<Resource>> {
        let Some(ty) = self.resource_type() else {
            return Vec::new();
        };
        let all = snapshot.resources(ty);
        match &self.names {
            None => all.values().collect(),
            Some(names) => names.iter().filter_map(|n| all.get(&**n)).collect(),
        }
    }

    /// The version the stream holds once it is up to date with `snapshot`.
    pub fn current_version(&self, snapshot: &Snapshot) -> Option<String> {
        let ty = self.resource_type()?;
        if self.names.is_none() {
            return Some(snapshot.version(ty).to_string());
        }
        let mut covered = self.covered(snapshot);
        covered.sort_by(|a, b| a.name().cmp(b.name()));
        covered.dedup_by(|a, b| a.name() == b.name());
        Some(aggregate_version(
            covered.iter().map(|r| (r.name(), r.version())),
        ))
    }

    /// This stream's state for the type against the cache's `snapshot`.
    pub fn sync_state(&self, snapshot: Option<&Snapshot>) -> SyncState {
        let current = snapshot.and_then(|s| self.current_version(s));
        SyncState::of(
            self.sent_version.as_deref(),
            self.acked_version.as_deref(),
            self.last_nack.as_ref().map(|n| n.version.as_str()),
            current.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::snapshot_with;

    fn status(ty: ResourceType, sent: Option<&str>, acked: Option<&str>) -> TypeStatus {
        TypeStatus {
            type_url: ty.type_url().to_string(),
            sent_version: sent.map(str::to_string),
            acked_version: acked.map(str::to_string),
            last_nack: None,
            names: None,
        }
    }

    #[test]
    fn states_follow_versions() {
        use SyncState::*;
        assert_eq!(SyncState::of(None, None, None, Some("1")), NotSent);
        assert_eq!(SyncState::of(Some("1"), Some("1"), None, Some("1")), Synced);
        assert_eq!(SyncState::of(Some("2"), Some("1"), None, Some("2")), Stale);
        assert_eq!(SyncState::of(Some("1"), Some("1"), None, Some("2")), Stale);
        assert_eq!(
            SyncState::of(Some("2"), Some("1"), Some("2"), Some("2")),
            Nacked
        );
        // An old NACK does not hide a later ACK.
        assert_eq!(
            SyncState::of(Some("3"), Some("3"), Some("2"), Some("3")),
            Synced
        );
    }

    #[test]
    fn by_name_versions_cover_the_subscribed_names() {
        let snapshot = snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]);
        let wildcard = status(ResourceType::Endpoint, None, None);
        assert_eq!(
            wildcard.current_version(&snapshot).as_deref(),
            Some(snapshot.version(ResourceType::Endpoint))
        );
        assert_eq!(wildcard.covered(&snapshot).len(), 2);
        let by_name = TypeStatus {
            names: Some(Arc::new(
                ["a", "missing"].into_iter().map(Arc::from).collect(),
            )),
            ..wildcard
        };
        let covered = by_name.covered(&snapshot);
        assert_eq!(covered.len(), 1);
        assert_eq!(
            by_name.current_version(&snapshot),
            Some(aggregate_version([(
                covered[0].name(),
                covered[0].version()
            )]))
        );
    }

    #[test]
    fn a_stream_is_synced_only_with_the_cache() {
        let snapshot = snapshot_with(&[("a", 1)], &[]);
        let current = snapshot.version(ResourceType::Cluster).to_string();
        let synced = status(ResourceType::Cluster, Some(&current), Some(&current));
        assert_eq!(synced.sync_state(Some(&snapshot)), SyncState::Synced);
        assert_eq!(synced.sync_state(None), SyncState::Stale);
        let old = status(ResourceType::Cluster, Some("old"), Some("old"));
        assert_eq!(old.sync_state(Some(&snapshot)), SyncState::Stale);
    }
}
