//! The node-to-group rules: which [`GroupKey`] a node is in, from what it sends and proves.
//! [`ProxyGrouping`] is the [`NodeGrouping`] hook the wiring gives the xDS server.
//!
//! A group is Envoy's `node.cluster` (empty: `default`), refined by the node's locality zone and
//! its `labels` metadata (a struct of strings in `node.metadata.labels`), because gateways
//! select proxies by labels and locality-aware balancing depends on the proxy's zone; then by
//! Portolan's node metadata:
//!
//! * `portolan.dev/discovery: on-demand` ([`DiscoveryMode::OnDemand`]): the proxy learns
//!   virtual hosts (VHDS) and clusters (on-demand CDS) on first use (Delta ADS only); `full`
//!   ([`DiscoveryMode::Full`]) everything up front. Either way the node chose, and a
//!   `ProxyScope`'s `discovery` does not apply to it. Another value is no choice (see
//!   [`metadata_warnings`]).
//! * `portolan.dev/namespace` ([`GroupKey::node_namespace`]): with the labels, it picks the
//!   `ProxyScope` that applies to the group (see [`crate::groups`]), so proxies of different
//!   namespaces are different groups.
//! * `portolan.dev/scope` ([`GroupKey::scope`]): comma-separated `namespace/host` entries (see
//!   `portolan_translate::scope`), made canonical ([`ScopeHosts::canonical`]) so the same scope
//!   written two ways is one group; an entry's `.` namespace becomes the
//!   `portolan.dev/namespace` metadata when the node sends it.
//! * `portolan.dev/client: grpc` ([`ClientKind::Grpc`], see [`is_grpc_client`]): a proxyless
//!   gRPC client. gRPC libraries also say so in `node.user_agent_name` (`gRPC C-core`,
//!   `gRPC Go`, `gRPC Java`).
//! * `portolan.dev/outbound-traffic-policy: allow-any | registry-only`
//!   ([`GroupKey::egress`]): what the sidecar does with captured connections to unknown
//!   destinations, over the server's `--outbound-traffic-policy`. Another value is no choice.
//!
//! Last, the workload identity the proxy proved, and its workload settings
//! ([`GroupKey::workload`], see [`crate::identity`]).

use crate::identity::IdentityMode;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
use portolan_model::gateway_api;
use portolan_model::group::{ClientKind, DiscoveryMode, EgressPolicy, GroupKey, ScopeHosts};
use portolan_xds::{Grouped, NodeGrouping, PeerIdentity};
use std::collections::BTreeMap;

/// Node metadata key choosing how a proxy discovers configuration.
pub const DISCOVERY_METADATA: &str = "portolan.dev/discovery";
/// Node metadata naming what the proxy may reach.
pub const SCOPE_METADATA: &str = "portolan.dev/scope";
/// Node metadata naming the proxy's own namespace (`.` in its scope).
pub const NAMESPACE_METADATA: &str = "portolan.dev/namespace";
/// Node metadata that names the kind of client (`grpc` or `envoy`), over the user agent.
pub const CLIENT_METADATA: &str = "portolan.dev/client";
/// Node metadata choosing what a captured sidecar does with unknown destinations.
pub const EGRESS_METADATA: &str = "portolan.dev/outbound-traffic-policy";

/// The xDS server's node-to-group hook: [`group_key`] refined by the workload identity.
#[derive(Clone, Debug, Default)]
pub struct ProxyGrouping {
    identity: IdentityMode,
}

// === impl ProxyGrouping ===

impl ProxyGrouping {
    /// Groups with workload identities from `identity`.
    pub fn new(identity: IdentityMode) -> Self {
        Self { identity }
    }

    /// The typed key of the proxy that sent `node` and proved `peer`. A Gateway's proxy
    /// (`gateway:NS/NAME`) is no mesh workload, whatever identity it proved.
    pub fn key(&self, node: &Node, peer: Option<&PeerIdentity>) -> GroupKey {
        let workload = match gateway_api::is_gateway_group(&node.cluster) {
            true => None,
            false => self.identity.workload(peer, node),
        };
        GroupKey {
            workload,
            ..group_key(node)
        }
    }
}

impl NodeGrouping for ProxyGrouping {
    fn group(&self, node: &Node, peer: Option<&PeerIdentity>) -> Grouped {
        let key = self.key(node, peer);
        Grouped {
            key: key.to_string(),
            needs_delta: key
                .is_on_demand()
                .then(|| format!("on-demand discovery ({DISCOVERY_METADATA}: on-demand)")),
            warnings: metadata_warnings(node),
        }
    }

    /// The namespace in `portolan.dev/namespace`, else in `namespace` (the development-only
    /// claimed identity's).
    fn claimed_namespace(&self, node: &Node) -> Option<String> {
        metadata_string(node, NAMESPACE_METADATA)
            .or_else(|| metadata_string(node, "namespace"))
            .map(str::to_string)
    }

    /// A token of `portolan-gateway-NAME` may ask for the proxy group of Gateway NAME in its
    /// namespace ([`gateway_api::service_account_of`]).
    fn token_groups(&self, namespace: &str, service_account: &str) -> Vec<String> {
        service_account
            .strip_prefix(gateway_api::GATEWAY_SERVICE_ACCOUNT_PREFIX)
            .filter(|name| !name.is_empty())
            .map(|name| gateway_api::group_of(namespace, name))
            .into_iter()
            .collect()
    }
}

/// The group key of a node, before its workload identity.
pub fn group_key(node: &Node) -> GroupKey {
    let namespace = metadata_string(node, NAMESPACE_METADATA);
    GroupKey {
        zone: node
            .locality
            .as_ref()
            .map(|l| l.zone.as_str())
            .filter(|z| !z.is_empty())
            .map(str::to_string),
        labels: labels(node),
        discovery: discovery_said(node),
        scope: metadata_string(node, SCOPE_METADATA)
            .map(|text| ScopeHosts::canonical([text], namespace))
            .filter(|hosts| !hosts.is_empty()),
        client: if is_grpc_client(node) {
            ClientKind::Grpc
        } else {
            ClientKind::Envoy
        },
        egress: egress_said(node),
        node_namespace: namespace.map(str::to_string),
        ..GroupKey::new(&node.cluster)
    }
}

/// The outbound traffic policy the node's metadata chooses (`allow-any`, `registry-only`, in
/// any case, `_` for `-`); none when it says nothing or something else.
fn egress_said(node: &Node) -> EgressPolicy {
    let said =
        metadata_string(node, EGRESS_METADATA).map(|s| s.to_ascii_lowercase().replace('_', "-"));
    match said.as_deref() {
        Some("allow-any") => EgressPolicy::AllowAny,
        Some("registry-only") => EgressPolicy::RegistryOnly,
        _ => EgressPolicy::Unset,
    }
}

/// The discovery mode the node's metadata chooses; none when it says nothing, or something
/// that is neither `on-demand` nor `full`.
fn discovery_said(node: &Node) -> DiscoveryMode {
    match metadata_string(node, DISCOVERY_METADATA) {
        Some("on-demand") => DiscoveryMode::OnDemand,
        Some("full") => DiscoveryMode::Full,
        _ => DiscoveryMode::Unset,
    }
}

/// Node metadata Portolan reads but whose value it does not know, as warnings naming the node
/// field: `node.metadata["portolan.dev/discovery"]: "ondemand" is not full or on-demand (ignored)`.
pub fn metadata_warnings(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(mode) = metadata_string(node, DISCOVERY_METADATA)
        && !matches!(mode, "on-demand" | "full")
    {
        out.push(format!(
            "node.metadata[\"{DISCOVERY_METADATA}\"]: {mode:?} is not full or on-demand (ignored)"
        ));
    }
    if let Some(egress) = metadata_string(node, EGRESS_METADATA)
        && egress_said(node) == EgressPolicy::Unset
    {
        out.push(format!(
            "node.metadata[\"{EGRESS_METADATA}\"]: {egress:?} is not allow-any or registry-only (ignored)"
        ));
    }
    if let Some(client) = metadata_string(node, CLIENT_METADATA)
        && !client.eq_ignore_ascii_case("grpc")
        && !client.eq_ignore_ascii_case("envoy")
    {
        out.push(format!(
            "node.metadata[\"{CLIENT_METADATA}\"]: {client:?} is not grpc or envoy (treated as envoy)"
        ));
    }
    out
}

fn metadata_string<'n>(node: &'n Node, field: &str) -> Option<&'n str> {
    match node.metadata.as_ref()?.fields.get(field)?.kind.as_ref()? {
        Kind::StringValue(s) if !s.trim().is_empty() => Some(s.trim()),
        _ => None,
    }
}

/// Whether a node is a proxyless gRPC client: its metadata says so, or (without that
/// metadata) its user agent is a gRPC library's.
pub fn is_grpc_client(node: &Node) -> bool {
    let said = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(CLIENT_METADATA))
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) => Some(s.eq_ignore_ascii_case("grpc")),
            _ => None,
        });
    said.unwrap_or_else(|| {
        node.user_agent_name
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("grpc "))
    })
}

/// String fields of `node.metadata.labels`.
fn labels(node: &Node) -> BTreeMap<String, String> {
    let Some(Kind::StructValue(labels)) = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get("labels"))
        .and_then(|v| v.kind.as_ref())
    else {
        return BTreeMap::new();
    };
    labels
        .fields
        .iter()
        .filter_map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[path = "grouping_tests.rs"]
mod tests;
