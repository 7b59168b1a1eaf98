//! Proxy group keys: the proxies that get identical configuration.
//!
//! A group is Envoy's `node.cluster` (empty: `default`), refined by the node's locality zone and
//! its `labels` metadata (a struct of strings in `node.metadata.labels`), because gateways
//! select proxies by labels and locality-aware balancing depends on the proxy's zone. The key is
//! a string so the cache stays oblivious of what it means:
//!
//! ```text
//! cluster[;zone=ZONE][;l.KEY=VALUE]...[;client=grpc]   (labels sorted by key; ';' '=' '%' encoded)
//! ```
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
    if is_grpc_client(node) {
        key.push_str(";client=grpc");
    }
    key
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

    fn with_metadata(mut node: Node, key: &str, value: &str) -> Node {
        node.metadata = Some(Struct {
            fields: [(key.to_string(), string(value))].into_iter().collect(),
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
            group_key(&with_metadata(envoy, CLIENT_METADATA, "grpc")),
            "default;client=grpc"
        );
        assert_eq!(
            group_key(&with_metadata(grpc, CLIENT_METADATA, "envoy")),
            "web"
        );
    }
}
