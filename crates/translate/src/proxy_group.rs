//! [`ProxyGroup`]: the set of proxies that get identical configuration, as translation sees
//! it, built from the typed group key ([`GroupKey`]) the xDS wiring forms from a node.

use crate::capture::OutboundPolicy;
use crate::mesh::Workload;
use crate::on_demand::Discovery;
use crate::proxyless::Client;
use crate::scope::{EgressScope, ScopeError};
use portolan_model::group::{DiscoveryMode, EgressPolicy, GroupKey};
use std::collections::BTreeMap;

/// A set of proxies that get identical configuration: Envoy's `node.cluster`, refined by the
/// node's zone and `labels` metadata and the rest of its [`GroupKey`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyGroup {
    /// The group key's string form, as the xDS cache names the group.
    pub name: String,
    /// Envoy `node.cluster` (empty: `default`).
    pub cluster: String,
    /// Envoy `node.locality.zone`, if set.
    pub zone: Option<String>,
    /// String fields of the node's `labels` metadata.
    pub labels: BTreeMap<String, String>,
    /// The mesh workload these proxies are, when they proved an identity.
    pub workload: Option<Workload>,
    /// Whether they learn hosts and clusters on first use ([`DiscoveryMode::OnDemand`]).
    pub discovery: Discovery,
    /// What the proxies may reach ([`GroupKey::scope`], see [`crate::scope`]); `None`:
    /// everything.
    pub scope: Option<EgressScope>,
    /// Envoy, or a proxyless gRPC client (see [`crate::proxyless`]).
    pub client: Client,
    /// The outbound traffic policy its proxies chose (`None`: the server's, in
    /// [`crate::mesh::MeshOptions::outbound_policy`]).
    pub outbound_policy: Option<OutboundPolicy>,
}

// === impl ProxyGroup ===

impl ProxyGroup {
    /// The group Envoy proxies with an empty `node.cluster` belong to.
    pub const DEFAULT: &str = "default";

    /// The group for an Envoy `node.cluster` alone (empty means [`ProxyGroup::DEFAULT`]).
    pub fn new(node_cluster: &str) -> Self {
        let cluster = if node_cluster.is_empty() {
            Self::DEFAULT
        } else {
            node_cluster
        };
        Self {
            name: cluster.to_string(),
            cluster: cluster.to_string(),
            zone: None,
            labels: BTreeMap::new(),
            workload: None,
            discovery: Discovery::Full,
            scope: None,
            client: Client::Envoy,
            outbound_policy: None,
        }
    }

    /// The namespace `.` means in the scope: the proxy's mesh identity's (a namespace the
    /// node metadata names was put in the scope when the key was built).
    pub fn own_namespace(&self) -> Option<&str> {
        self.workload.as_ref().map(|w| w.namespace.as_str())
    }

    /// The first bad entry of the group's scope (such a group is not served).
    pub fn scope_error(&self) -> Option<&ScopeError> {
        self.scope.as_ref().and_then(|s| s.error.as_ref())
    }
}

impl Default for ProxyGroup {
    fn default() -> Self {
        Self::new("")
    }
}

impl From<&GroupKey> for ProxyGroup {
    /// The group `key` names: its cluster, zone, labels, workload, discovery (unset: full),
    /// scope and client; named by the key's string form.
    fn from(key: &GroupKey) -> Self {
        Self {
            name: key.to_string(),
            cluster: key.cluster.clone(),
            zone: key.zone.clone(),
            labels: key.labels.clone(),
            workload: key.workload.as_ref().map(Workload::from),
            discovery: match key.discovery {
                DiscoveryMode::OnDemand => Discovery::OnDemand,
                DiscoveryMode::Unset | DiscoveryMode::Full => Discovery::Full,
            },
            scope: key
                .scope
                .as_ref()
                .map(|hosts| EgressScope::parse(&hosts.to_string())),
            client: key.client,
            outbound_policy: match key.egress {
                EgressPolicy::Unset => None,
                EgressPolicy::AllowAny => Some(OutboundPolicy::AllowAny),
                EgressPolicy::RegistryOnly => Some(OutboundPolicy::RegistryOnly),
            },
        }
    }
}

impl From<GroupKey> for ProxyGroup {
    fn from(key: GroupKey) -> Self {
        Self::from(&key)
    }
}
