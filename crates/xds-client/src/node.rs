//! The `Node` a simulated client introduces itself with.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

/// An Envoy node `id` in `cluster` (`node.cluster`, the proxy group), user agent `envoy`.
pub fn envoy(id: &str, cluster: &str) -> Node {
    Node {
        id: id.to_string(),
        cluster: cluster.to_string(),
        user_agent_name: "envoy".to_string(),
        ..Default::default()
    }
}

/// `node` with the string `value` under `key` in its metadata.
pub fn with_metadata(mut node: Node, key: &str, value: &str) -> Node {
    let value = Value {
        kind: Some(Kind::StringValue(value.to_string())),
    };
    node.metadata
        .get_or_insert_with(Struct::default)
        .fields
        .insert(key.to_string(), value);
    node
}
