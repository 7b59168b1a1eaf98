//! [`ProxyGroup`]: the set of proxies that get identical configuration, as translation sees
//! it, read back from the group key the xDS server builds from a node.

use crate::mesh::{Workload, WorkloadParts};
use crate::on_demand::{self, Discovery};
use crate::proxyless::Client;
use crate::scope::{EgressScope, ScopeError};
use std::collections::BTreeMap;

/// A set of proxies that get identical configuration: Envoy's `node.cluster`, refined by the
/// node's zone and `labels` metadata (see [`ProxyGroup::from_key`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyGroup {
    /// The group key, as the xDS cache names the group.
    pub name: String,
    /// Envoy `node.cluster` (empty: `default`).
    pub cluster: String,
    /// Envoy `node.locality.zone`, if set.
    pub zone: Option<String>,
    /// String fields of the node's `labels` metadata.
    pub labels: BTreeMap<String, String>,
    /// The mesh workload these proxies are, when they proved an identity.
    pub workload: Option<Workload>,
    /// Whether they learn hosts and clusters on first use (key part `mode=on-demand`).
    pub discovery: Discovery,
    /// What the proxies may reach (`;scope=...`, see [`crate::scope`]); `None`: everything.
    pub scope: Option<EgressScope>,
    /// Envoy, or a proxyless gRPC client (`;client=grpc`, see [`crate::proxyless`]).
    pub client: Client,
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
        }
    }

    /// Parses a group key as the xDS server builds it from a node:
    /// `cluster[;zone=ZONE][;l.KEY=VALUE]...[;mode=on-demand][;scope=HOSTS][;client=grpc][;ns=NS;sa=SA[;app=PORT][;in=PORT][;proto=P]]`,
    /// parts percent-encoded (`%3B` `%3D` `%25`). The identity parts (`ns`, `sa`) come only
    /// from what the proxy proved (see `portolan_xds::identity`). Unknown parts are ignored, so
    /// any string is a valid key.
    pub fn from_key(key: &str) -> Self {
        let mut parts = key.split(';');
        let mut group = Self::new(&unescape(parts.next().unwrap_or_default()));
        group.name = key.to_string();
        let mut workload = WorkloadParts::default();
        for part in parts {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            if k == "zone" {
                group.zone = Some(unescape(v));
            } else if k == on_demand::KEY_PART.0 {
                group.discovery = Discovery::from_part(v);
            } else if k == "scope" {
                group.scope = Some(EgressScope::parse(&unescape(v)));
            } else if k == "client" {
                group.client = Client::parse(v);
            } else if let Some(label) = k.strip_prefix("l.") {
                group.labels.insert(unescape(label), unescape(v));
            } else {
                workload.set(k, unescape(v));
            }
        }
        group.workload = workload.build();
        group
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

fn unescape(s: &str) -> String {
    s.replace("%3B", ";")
        .replace("%3D", "=")
        .replace("%25", "%")
}
