//! Proxy group keys: the proxies that get identical configuration.
//!
//! A group is Envoy's `node.cluster` (empty: `default`), refined by the node's locality zone and
//! its `labels` metadata (a struct of strings in `node.metadata.labels`), because gateways
//! select proxies by labels and locality-aware balancing depends on the proxy's zone. The key is
//! a string so the cache stays oblivious of what it means:
//!
//! ```text
//! cluster[;zone=ZONE][;l.KEY=VALUE]...[;mode=on-demand|full][;scope=HOSTS][;client=grpc][;node-ns=NS]
//!     (labels sorted by key; ';' '=' '%' percent-encoded)
//! ```
//!
//! `;mode=on-demand` marks a node whose metadata says `portolan.dev/discovery: on-demand`: it
//! learns virtual hosts (VHDS) and clusters (on-demand CDS) on first use (Delta ADS only);
//! `;mode=full` one that says `full`. Either way the node chose, and a `ProxyScope`'s
//! `discovery` does not apply to it. Another value is no choice (see [`metadata_warnings`]).
//!
//! `;node-ns=NS` is the node's `portolan.dev/namespace` metadata: with the labels, it picks the
//! `ProxyScope` that applies to the group (the pipeline resolves it, see
//! `portolan_pipeline::groups`), so proxies of different namespaces are different groups.
//!
//! `HOSTS` is the node's `portolan.dev/scope` metadata (comma-separated `namespace/host`
//! entries, see `portolan_translate::scope`), trimmed, sorted and deduplicated so the same
//! scope written two ways is one group; an entry's `.` namespace becomes the
//! `portolan.dev/namespace` metadata when the node sends it.
//!
//! `;client=grpc` marks a proxyless gRPC client (see [`is_grpc_client`]): gRPC libraries set
//! `node.user_agent_name` to `gRPC <language>` (`gRPC C-core`, `gRPC Go`, `gRPC Java`), and any
//! node can say so with the metadata `portolan.dev/client: grpc`.
//!
//! Translation parses it back (`portolan_translate::ProxyGroup::from_key`).

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
use std::collections::BTreeMap;

/// The group of proxies whose node names no cluster.
pub const DEFAULT_GROUP: &str = "default";

/// Node metadata key choosing how a proxy discovers configuration.
pub const DISCOVERY_METADATA: &str = "portolan.dev/discovery";

/// The group key part of on-demand proxies.
pub const ON_DEMAND_PART: &str = ";mode=on-demand";

/// The group key of a node.
pub fn group_key(node: &Node) -> String {
    let cluster = if node.cluster.is_empty() {
        DEFAULT_GROUP
    } else {
        node.cluster.as_str()
    };
    let zone = node
        .locality
        .as_ref()
        .map(|l| l.zone.as_str())
        .filter(|z| !z.is_empty());
    let mut key = format_key(cluster, zone, &labels(node));
    match discovery_said(node) {
        Some(true) => key.push_str(ON_DEMAND_PART),
        Some(false) => key.push_str(FULL_PART),
        None => {}
    }
    if let Some(scope) = scope(node) {
        key.push_str(";scope=");
        key.push_str(&escape(&scope));
    }
    if is_grpc_client(node) {
        key.push_str(";client=grpc");
    }
    if let Some(namespace) = metadata_string(node, NAMESPACE_METADATA) {
        key.push_str(NODE_NAMESPACE_PART);
        key.push_str(&escape(namespace));
    }
    key
}

/// The group key part of proxies whose node metadata says `portolan.dev/discovery: full`.
pub const FULL_PART: &str = ";mode=full";

/// The group key part carrying the node's `portolan.dev/namespace` metadata.
pub const NODE_NAMESPACE_PART: &str = ";node-ns=";

/// Whether the node's metadata chooses on-demand (`Some(true)`) or full (`Some(false)`)
/// discovery; `None` when it says nothing, or something that is neither.
fn discovery_said(node: &Node) -> Option<bool> {
    match metadata_string(node, DISCOVERY_METADATA)? {
        "on-demand" => Some(true),
        "full" => Some(false),
        _ => None,
    }
}

/// Whether a group key's node chose its discovery mode (`;mode=on-demand` or `;mode=full`).
pub fn key_chooses_discovery(key: &str) -> bool {
    key.split(';')
        .skip(1)
        .any(|part| part == &ON_DEMAND_PART[1..] || part == &FULL_PART[1..])
}

/// The `portolan.dev/namespace` a group key's node sent, unescaped.
pub fn key_node_namespace(key: &str) -> Option<String> {
    let prefix = &NODE_NAMESPACE_PART[1..];
    key.split(';')
        .skip(1)
        .find_map(|part| part.strip_prefix(prefix))
        .map(unescape)
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

/// Whether the node asks for on-demand discovery (`portolan.dev/discovery: on-demand`).
pub fn is_on_demand(node: &Node) -> bool {
    discovery_said(node) == Some(true)
}

/// Whether a group key is of on-demand proxies.
pub fn key_is_on_demand(key: &str) -> bool {
    key.split(';').any(|part| part == &ON_DEMAND_PART[1..])
}

/// Node metadata naming what the proxy may reach.
pub const SCOPE_METADATA: &str = "portolan.dev/scope";
/// Node metadata naming the proxy's own namespace (`.` in its scope).
pub const NAMESPACE_METADATA: &str = "portolan.dev/namespace";

/// The node's scope entries, canonical: trimmed, `.` resolved when the node names its
/// namespace, sorted, deduplicated; `None` without any.
fn scope(node: &Node) -> Option<String> {
    let text = metadata_string(node, SCOPE_METADATA)?;
    let namespace = metadata_string(node, NAMESPACE_METADATA);
    let mut entries: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match (e.strip_prefix("./"), &namespace) {
            (Some(host), Some(ns)) => format!("{ns}/{host}"),
            _ => e.to_string(),
        })
        .collect();
    entries.sort();
    entries.dedup();
    (!entries.is_empty()).then(|| entries.join(","))
}

fn metadata_string<'n>(node: &'n Node, field: &str) -> Option<&'n str> {
    match node.metadata.as_ref()?.fields.get(field)?.kind.as_ref()? {
        Kind::StringValue(s) if !s.trim().is_empty() => Some(s.trim()),
        _ => None,
    }
}

/// Node metadata that names the kind of client (`grpc` or `envoy`), over the user agent.
pub const CLIENT_METADATA: &str = "portolan.dev/client";

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

/// Builds a key from its parts.
pub fn format_key(cluster: &str, zone: Option<&str>, labels: &BTreeMap<String, String>) -> String {
    let mut key = escape(cluster);
    if let Some(zone) = zone {
        key.push_str(";zone=");
        key.push_str(&escape(zone));
    }
    for (k, v) in labels {
        key.push_str(";l.");
        key.push_str(&escape(k));
        key.push('=');
        key.push_str(&escape(v));
    }
    key
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

pub(crate) fn escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace(';', "%3B")
        .replace('=', "%3D")
}

fn unescape(s: &str) -> String {
    s.replace("%3B", ";")
        .replace("%3D", "=")
        .replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::Locality;
    use envoy_types::pb::google::protobuf::{Struct, Value};

    fn string(s: &str) -> Value {
        Value {
            kind: Some(Kind::StringValue(s.to_string())),
        }
    }

    #[test]
    fn cluster_alone_is_the_key() {
        let node = Node {
            cluster: "web".into(),
            ..Default::default()
        };
        assert_eq!(group_key(&node), "web");
        assert_eq!(group_key(&Node::default()), "default");
    }

    fn with_metadata(fields: &[(&str, &str)]) -> Node {
        Node {
            cluster: "web".into(),
            metadata: Some(Struct {
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), string(v)))
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_scope_is_canonical_and_resolves_the_own_namespace() {
        let a = with_metadata(&[(SCOPE_METADATA, " shared/*, ./* ,shared/*")]);
        assert_eq!(group_key(&a), "web;scope=./*,shared/*");
        let b = with_metadata(&[
            (SCOPE_METADATA, "./*,shared/*"),
            (NAMESPACE_METADATA, "shop"),
        ]);
        assert_eq!(group_key(&b), "web;scope=shared/*,shop/*;node-ns=shop");
        assert_eq!(key_node_namespace(&group_key(&b)).as_deref(), Some("shop"));
        assert_eq!(key_node_namespace(&group_key(&a)), None);
        assert_eq!(group_key(&with_metadata(&[(SCOPE_METADATA, " , ")])), "web");
    }

    #[test]
    fn zone_and_labels_refine_the_group() {
        let labels = Struct {
            fields: [("version", string("v1")), ("app", string("a;b=c"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        let node = Node {
            cluster: "web".into(),
            locality: Some(Locality {
                zone: "zone-a".into(),
                ..Default::default()
            }),
            metadata: Some(Struct {
                fields: [(
                    "labels".to_string(),
                    Value {
                        kind: Some(Kind::StructValue(labels)),
                    },
                )]
                .into_iter()
                .collect(),
            }),
            ..Default::default()
        };
        assert_eq!(
            group_key(&node),
            "web;zone=zone-a;l.app=a%3Bb%3Dc;l.version=v1"
        );
    }

    #[test]
    fn discovery_metadata_marks_on_demand_groups() {
        let node = |mode: &str| Node {
            cluster: "web".into(),
            metadata: Some(Struct {
                fields: [(DISCOVERY_METADATA.to_string(), string(mode))]
                    .into_iter()
                    .collect(),
            }),
            ..Default::default()
        };
        assert_eq!(group_key(&node("on-demand")), "web;mode=on-demand");
        assert!(key_is_on_demand(&group_key(&node("on-demand"))));
        assert_eq!(group_key(&node("full")), "web;mode=full");
        assert!(key_chooses_discovery(&group_key(&node("full"))));
        assert!(key_chooses_discovery(&group_key(&node("on-demand"))));
        // An unknown value is no choice (a ProxyScope may decide), and is warned about.
        assert_eq!(group_key(&node("ondemand")), "web");
        assert!(!key_chooses_discovery("web"));
        assert_eq!(
            metadata_warnings(&node("ondemand")),
            [
                "node.metadata[\"portolan.dev/discovery\"]: \"ondemand\" is not full or on-demand (ignored)"
            ]
        );
        assert!(metadata_warnings(&node("on-demand")).is_empty());
        // A cluster name cannot claim the mode: ';' is escaped.
        let sneaky = Node {
            cluster: "web;mode=on-demand".into(),
            ..Default::default()
        };
        assert!(!key_is_on_demand(&group_key(&sneaky)));
    }

    fn with_client_metadata(mut node: Node, value: &str) -> Node {
        node.metadata = Some(Struct {
            fields: [(CLIENT_METADATA.to_string(), string(value))]
                .into_iter()
                .collect(),
        });
        node
    }

    #[test]
    fn grpc_clients_are_told_by_user_agent_or_metadata() {
        let grpc = Node {
            cluster: "web".into(),
            user_agent_name: "gRPC C-core".into(),
            ..Default::default()
        };
        assert_eq!(group_key(&grpc), "web;client=grpc");
        let envoy = Node {
            user_agent_name: "envoy".into(),
            ..Default::default()
        };
        assert_eq!(group_key(&envoy), "default");
        assert_eq!(
            group_key(&with_client_metadata(envoy, "grpc")),
            "default;client=grpc"
        );
        assert_eq!(
            group_key(&with_client_metadata(grpc.clone(), "envoy")),
            "web"
        );
        let odd = with_client_metadata(grpc, "gprc");
        assert_eq!(
            metadata_warnings(&odd),
            [
                "node.metadata[\"portolan.dev/client\"]: \"gprc\" is not grpc or envoy (treated as envoy)"
            ]
        );
    }
}
