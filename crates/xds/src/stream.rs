//! Pieces shared by the SotW and Delta state machines: which types a stream serves, what one
//! step produced, the gate that defers cluster removal until the listeners and routes
//! pushed with it are answered, the memos that let a push skip or shorten planning (`Quiet`,
//! `Synced`) and how often each way of planning ran ([`PlanCounts`]); and who the node is, which only the stream task reads (the
//! state machines never see the node).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{Node, node::UserAgentVersionType};

use crate::authz::PeerIdentity;
use crate::grouping::{DEFAULT_GROUP, NodeGrouping};
use crate::resource::ResourceType;
use crate::snapshot::{Change, Snapshot};
use crate::status::Nack;

/// Which types a stream serves: all four multiplexed (ADS) or one (per-type service).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamTypes {
    Aggregated,
    Single(ResourceType),
}

// === impl StreamTypes ===

impl StreamTypes {
    /// Whether requests for `ty` are served on this stream.
    pub fn allows(self, ty: ResourceType) -> bool {
        match self {
            StreamTypes::Aggregated => true,
            StreamTypes::Single(only) => only == ty,
        }
    }

    /// `ads` or the type's short name.
    pub fn stream_name(self) -> &'static str {
        match self {
            StreamTypes::Aggregated => "ads",
            StreamTypes::Single(ty) => ty.short_name(),
        }
    }
}

/// Who is on the other end, from the stream's first request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// The group key the [`NodeGrouping`] hook gave.
    pub group: String,
    pub client: String,
    /// Why the group needs Delta ADS, if it does (see [`Grouped::needs_delta`]).
    pub needs_delta: Option<String>,
    /// Node metadata that could not be used (see [`Grouped::warnings`]).
    pub warnings: Vec<String>,
}

// === impl NodeInfo ===

impl NodeInfo {
    /// Reads id and client (user agent and version), and asks `grouping` for the group of the
    /// node (and `peer`); without a node, the group is [`DEFAULT_GROUP`].
    pub fn from_node(
        node: Option<&Node>,
        peer: Option<&PeerIdentity>,
        grouping: &dyn NodeGrouping,
    ) -> Self {
        let Some(node) = node else {
            return Self {
                group: DEFAULT_GROUP.to_string(),
                ..Self::default()
            };
        };
        let grouped = grouping.group(node, peer);
        Self {
            id: node.id.clone(),
            group: grouped.key,
            client: client_of(node),
            needs_delta: grouped.needs_delta,
            warnings: grouped.warnings,
        }
    }
}

fn client_of(node: &Node) -> String {
    let version = match &node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentVersion(v)) => v.clone(),
        Some(UserAgentVersionType::UserAgentBuildVersion(b)) => b
            .version
            .as_ref()
            .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch))
            .unwrap_or_default(),
        None => String::new(),
    };
    match (node.user_agent_name.is_empty(), version.is_empty()) {
        (false, false) => format!("{} {version}", node.user_agent_name),
        (false, true) => node.user_agent_name.clone(),
        _ => version,
    }
}

/// What one step of a state machine produced.
#[derive(Debug, PartialEq)]
pub struct Output<R> {
    /// Responses to send, in order.
    pub responses: Vec<R>,
    /// Types ACKed by the request.
    pub acks: Vec<ResourceType>,
    /// Types NACKed by the request, with what was rejected (the stream task logs it).
    pub nacks: Vec<(ResourceType, Nack)>,
    /// What of the request was ignored, and why (the stream task logs it).
    pub ignored: Option<Ignored>,
}

/// Why (part of) a request was ignored.
#[derive(Debug, PartialEq)]
pub enum Ignored {
    /// It is for a type this stream does not serve (this type URL).
    Type(String),
    /// It answers a nonce that is not the last sent for its type (SotW: a stale request,
    /// dropped whole) or not pending (Delta: its subscription changes still apply).
    Nonce { ty: ResourceType, nonce: String },
}

impl<R> Default for Output<R> {
    fn default() -> Self {
        Self {
            responses: Vec::new(),
            acks: Vec::new(),
            nacks: Vec::new(),
            ignored: None,
        }
    }
}

/// The snapshot version of one type for which planning last found nothing to send, while
/// nothing else the plan reads has changed since: the same content plans to nothing again, so
/// it is not planned (most pushes change one type; the stream's other types sit them out).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Quiet(Option<String>);

// === impl Quiet ===

impl Quiet {
    /// Whether planning the type at this snapshot version found nothing, and nothing changed.
    pub(crate) fn at(&self, version: &str) -> bool {
        self.0.as_deref() == Some(version)
    }

    /// Planning the type at `version` found nothing to send.
    pub(crate) fn note(&mut self, version: &str) {
        self.0 = Some(version.to_string());
    }

    /// Something the plan reads besides the snapshot changed.
    pub(crate) fn forget(&mut self) {
        self.0 = None;
    }
}

/// The published snapshot whose content of one type the client's state matches exactly (per
/// its subscription, nothing held back, nothing owed), so that a push of the snapshot published
/// right after it can be planned from that snapshot's change set alone, in O(changed).
/// Anything that changes the state other than planning a snapshot (a subscription change, a
/// NACK, a held-back removal) forgets it, and the next push diffs in full.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Synced(Option<u64>);

// === impl Synced ===

impl Synced {
    /// Whether the state matches `snapshot` itself (nothing to plan).
    pub(crate) fn is(&self, snapshot: &Snapshot) -> bool {
        snapshot.id() != 0 && self.0 == Some(snapshot.id())
    }

    /// What changed in `ty` from the matched snapshot to `snapshot`, when `snapshot` was
    /// published right after it.
    pub(crate) fn changes<'s>(
        &self,
        snapshot: &'s Snapshot,
        ty: ResourceType,
    ) -> Option<&'s [Change]> {
        snapshot.changes_since(self.0?, ty)
    }

    /// The state now matches `snapshot` (if it was published).
    pub(crate) fn mark(&mut self, snapshot: &Snapshot) {
        self.0 = Some(snapshot.id()).filter(|id| *id != 0);
    }

    /// `snapshot` has the matched snapshot's content of the type: the state matches it too.
    pub(crate) fn advance(&mut self, snapshot: &Snapshot) {
        if self.0.is_some() {
            self.mark(snapshot);
        }
    }

    pub(crate) fn forget(&mut self) {
        self.0 = None;
    }
}

/// What a stream believes the client holds of one type, by the snapshot's shared names: its
/// own map, or the map over every resource of a snapshot's type (`Snapshot::all_held`,
/// `Snapshot::all_versions`) when the client holds exactly those, shared by every stream that
/// does. Reads go through `Deref`; [`Held::to_mut`] makes the map the stream's own (a copy, if
/// it was shared). `full` is the aggregate version of the type whose every resource the map
/// holds: versions are content hashes, so the map is that of every snapshot with that version.
#[derive(Debug, PartialEq)]
pub(crate) struct Held<V> {
    map: Arc<BTreeMap<Arc<str>, V>>,
    full: Option<String>,
}

impl<V> Default for Held<V> {
    fn default() -> Self {
        Self {
            map: Arc::default(),
            full: None,
        }
    }
}

impl<V> Deref for Held<V> {
    type Target = BTreeMap<Arc<str>, V>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

// === impl Held ===

impl<V: Clone> Held<V> {
    /// A map of the stream's own.
    pub(crate) fn own(map: BTreeMap<Arc<str>, V>) -> Self {
        Self {
            map: Arc::new(map),
            full: None,
        }
    }

    /// `map`, which may be shared (a full diff's target).
    pub(crate) fn own_shared(map: Arc<BTreeMap<Arc<str>, V>>) -> Self {
        Self { map, full: None }
    }

    /// The map to change: the stream's own, copied first if it is shared.
    pub(crate) fn to_mut(&mut self) -> &mut BTreeMap<Arc<str>, V> {
        self.full = None;
        Arc::make_mut(&mut self.map)
    }

    /// Whether this holds every resource of a type at aggregate version `version`.
    pub(crate) fn is_full(&self, version: &str) -> bool {
        self.full.as_deref() == Some(version)
    }

    /// Whether this holds every resource of `ty` in the snapshot `changes` lead from to
    /// `snapshot` (O(changed), nothing when the map is not such a one).
    pub(crate) fn is_full_before(
        &self,
        snapshot: &Snapshot,
        ty: ResourceType,
        changes: &[Change],
    ) -> bool {
        self.full.is_some() && self.is_full(&version_before(snapshot, ty, changes))
    }

    /// Holds `all`, every resource of a type at aggregate version `version` (shared).
    pub(crate) fn share(&mut self, all: &Arc<BTreeMap<Arc<str>, V>>, version: &str) {
        self.map = all.clone();
        self.full = Some(version.to_string());
    }

    /// Holds `all` (as [`Held::share`]) if it holds the same: after a full diff, so that a
    /// client holding every resource of the type costs its stream no map of its own. O(len).
    pub(crate) fn share_if_same(
        &mut self,
        all: &Arc<BTreeMap<Arc<str>, V>>,
        version: &str,
        same: impl Fn(&V, &V) -> bool,
    ) {
        if Arc::ptr_eq(&self.map, all) {
            self.full = Some(version.to_string());
            return;
        }
        let equal = self.map.len() == all.len()
            && self
                .map
                .iter()
                .zip(all.iter())
                .all(|((a, va), (b, vb))| a == b && same(va, vb));
        if equal {
            self.share(all, version);
        }
    }

    /// Whether the map is shared with a snapshot (for tests).
    #[cfg(test)]
    pub(crate) fn is_shared_with(&self, all: &Arc<BTreeMap<Arc<str>, V>>) -> bool {
        Arc::ptr_eq(&self.map, all)
    }
}

/// The aggregate version of `ty` in the snapshot a change set starts from: `snapshot`'s,
/// with `changes` undone (O(changed)).
fn version_before(snapshot: &Snapshot, ty: ResourceType, changes: &[Change]) -> String {
    let mut sum = snapshot.version_sum(ty);
    for change in changes {
        if let Some(after) = change.after() {
            sum.remove_resource(after);
        }
        if let Some(before) = change.before() {
            sum.add_resource(before);
        }
    }
    sum.version()
}

/// How a stream planned its pushes: from a snapshot's change set (O(changed)), or by diffing
/// everything it subscribes to. Pushes the memos skipped count as neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanCounts {
    pub from_changes: u64,
    pub full: u64,
}

/// Nonce counter, one per stream.
#[derive(Debug, Default)]
pub(crate) struct Nonces(u64);

impl Nonces {
    pub(crate) fn next(&mut self) -> String {
        self.0 += 1;
        self.0.to_string()
    }
}

/// Defers cluster removal: holds the nonces of the listener/route responses pushed together with
/// a removal; removed clusters stay until each of them is ACKed or NACKed.
#[derive(Debug, Default)]
pub(crate) struct RemovalGate {
    waiting: BTreeSet<String>,
}

// === impl RemovalGate ===

impl RemovalGate {
    pub(crate) fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    pub(crate) fn wait_for(&mut self, nonce: String) {
        self.waiting.insert(nonce);
    }

    /// A response was answered (ACK or NACK).
    pub(crate) fn settle(&mut self, nonce: &str) {
        self.waiting.remove(nonce);
    }

    /// A newer response of the same type replaced `old`: its answer will never come (stale).
    pub(crate) fn supersede(&mut self, old: &str, new: &str) {
        if self.waiting.remove(old) {
            self.waiting.insert(new.to_string());
        }
    }
}

/// Whether a NACK's `message` points at `resource`: it names it (as a whole word), or a value
/// it quotes (`'...'` or `"..."`, at least 4 bytes, as Envoy quotes an offending regex or
/// header name) is in the resource's encoded bytes, where protobuf keeps strings verbatim.
pub(crate) fn blames(message: &str, resource: &crate::resource::Resource) -> bool {
    mentions(message, resource.name())
        || quoted(message).any(|fragment| {
            let value = resource.value();
            value
                .windows(fragment.len())
                .any(|window| window == fragment.as_bytes())
        })
}

/// The quoted values of a message, 4 bytes or longer.
fn quoted(message: &str) -> impl Iterator<Item = &str> {
    ['\'', '"'].into_iter().flat_map(move |quote| {
        message
            .split(quote)
            .skip(1)
            .step_by(2)
            .filter(|fragment| fragment.len() >= 4)
    })
}

/// Whether `message` names `name` as a whole word: not inside a longer name (`gateway-80` is
/// not named by a message about `gateway-8081`).
pub(crate) fn mentions(message: &str, name: &str) -> bool {
    let part_of_name = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    !name.is_empty()
        && message.match_indices(name).any(|(at, _)| {
            let before = message[..at].chars().next_back();
            let after = message[at + name.len()..].chars().next();
            !before.is_some_and(part_of_name) && !after.is_some_and(part_of_name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::BuildVersion;
    use envoy_types::pb::envoy::r#type::v3::SemanticVersion;

    #[test]
    fn node_info_reads_group_and_client() {
        let node = Node {
            id: "sidecar-1".into(),
            cluster: String::new(),
            user_agent_name: "envoy".into(),
            user_agent_version_type: Some(UserAgentVersionType::UserAgentBuildVersion(
                BuildVersion {
                    version: Some(SemanticVersion {
                        major_number: 1,
                        minor_number: 40,
                        patch: 0,
                    }),
                    metadata: None,
                },
            )),
            ..Default::default()
        };
        let by_cluster = crate::grouping::ByCluster;
        let info = NodeInfo::from_node(Some(&node), None, &by_cluster);
        assert_eq!(info.id, "sidecar-1");
        assert_eq!(info.group, "default");
        assert_eq!(info.client, "envoy 1.40.0");
        assert_eq!(
            NodeInfo::from_node(None, None, &by_cluster).group,
            "default"
        );
    }

    #[test]
    fn removal_gate_follows_superseded_nonces() {
        let mut gate = RemovalGate::default();
        gate.wait_for("3".into());
        gate.supersede("3", "5");
        gate.settle("3");
        assert!(gate.is_waiting());
        gate.settle("5");
        assert!(!gate.is_waiting());
    }
}
