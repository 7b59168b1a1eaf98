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
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
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

/// A stream's per-type status rows.
pub trait StatusRows {
    /// Writes one row per subscribed type over `rows`, reusing their allocations.
    fn write_status(&self, rows: &mut Vec<TypeStatus>);

    /// Per subscribed type: sent, ACKed, last NACK.
    fn status(&self) -> Vec<TypeStatus> {
        let mut rows = Vec::new();
        self.write_status(&mut rows);
        rows
    }
}

/// Writes one row per state over `rows` with `write`, adding rows or dropping those past the
/// last state as needed.
pub(crate) fn write_rows<'s, S: 's>(
    rows: &mut Vec<TypeStatus>,
    states: impl ExactSizeIterator<Item = &'s S>,
    write: impl Fn(&S, &mut TypeStatus),
) {
    rows.resize_with(states.len(), TypeStatus::default);
    for (state, row) in states.zip(rows.iter_mut()) {
        write(state, row);
    }
}

/// `to` becomes a copy of `from`, in `to`'s own allocation when it has one.
fn set_option<T: Clone>(to: &mut Option<T>, from: Option<&T>) {
    match (to.as_mut(), from) {
        (Some(to), Some(from)) => to.clone_from(from),
        (_, from) => *to = from.cloned(),
    }
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
    /// Makes this row say `type_url`, `sent`, `acked`, `last_nack` and `names`, reusing its
    /// strings' allocations (a stream rewrites its rows after every response and request).
    pub(crate) fn set(
        &mut self,
        type_url: &str,
        sent: Option<&String>,
        acked: Option<&String>,
        last_nack: Option<&Nack>,
        names: Option<&SubscribedNames>,
    ) {
        if self.type_url != type_url {
            type_url.clone_into(&mut self.type_url);
        }
        set_option(&mut self.sent_version, sent);
        set_option(&mut self.acked_version, acked);
        set_option(&mut self.last_nack, last_nack);
        set_option(&mut self.names, names);
    }

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

    /// `rows` made a copy of `from` with [`write_rows`] and [`TypeStatus::set`].
    fn copy_rows(rows: &mut Vec<TypeStatus>, from: &[TypeStatus]) {
        write_rows(rows, from.iter(), |from, row| {
            row.set(
                &from.type_url,
                from.sent_version.as_ref(),
                from.acked_version.as_ref(),
                from.last_nack.as_ref(),
                from.names.as_ref(),
            )
        });
    }

    #[test]
    fn rows_copied_over_others_equal_the_source_and_keep_their_allocations() {
        let nack = Nack {
            version: "2".into(),
            message: "no".into(),
            at: SystemTime::UNIX_EPOCH,
        };
        let names: SubscribedNames = Arc::new(["a".into()].into_iter().collect());
        let before = vec![
            status(ResourceType::Cluster, Some("1111111111111111"), None),
            TypeStatus {
                last_nack: Some(nack.clone()),
                names: Some(names.clone()),
                ..status(ResourceType::Endpoint, Some("2"), Some("1"))
            },
            status(ResourceType::Listener, Some("1"), Some("1")),
        ];
        let after = vec![
            status(
                ResourceType::Cluster,
                Some("2222222222222222"),
                Some("1111111111111111"),
            ),
            status(ResourceType::Route, None, None),
        ];
        let mut rows = before.clone();
        let sent = rows[0].sent_version.as_ref().map(|v| v.as_ptr());
        copy_rows(&mut rows, &after);
        assert_eq!(rows, after, "fewer rows, fields set and cleared");
        assert_eq!(
            rows[0].sent_version.as_ref().map(|v| v.as_ptr()),
            sent,
            "a version of the same length is written into the row's own string"
        );
        copy_rows(&mut rows, &before);
        assert_eq!(rows, before, "more rows, a NACK and names set");
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
