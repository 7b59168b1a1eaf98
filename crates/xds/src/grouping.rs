//! The node-to-group hook: which proxy group (cache entry) a stream's node is served from.
//!
//! The server does not know what sets proxies apart (node metadata conventions, identities,
//! zones): the wiring supplies a [`NodeGrouping`], the role go-control-plane's `NodeHash`
//! plays. The stream task asks it once, with the node of the stream's first request and the
//! identity the client proved, and takes its answer ([`Grouped`]) as it is: the group key is an
//! opaque cache key, and what else the server must know (warnings to log, whether the group
//! needs Delta) comes with it. Adding a dimension to a group changes the hook, never the
//! stream task or the state machines. Without a hook, [`ByCluster`] groups by `node.cluster`.

use std::fmt::Debug;

use envoy_types::pb::envoy::config::core::v3::Node;

use crate::authz::PeerIdentity;

/// The group of nodes that name no cluster (and of streams whose first request has no node).
pub const DEFAULT_GROUP: &str = "default";

/// Decides a node's proxy group.
pub trait NodeGrouping: Send + Sync + Debug {
    /// The group of the proxy that sent `node` and proved `peer` (its client certificate).
    fn group(&self, node: &Node, peer: Option<&PeerIdentity>) -> Grouped;

    /// The namespace the node claims for itself (its metadata), checked against the namespace
    /// of a verified service account token (see [`crate::token`]); none by default.
    fn claimed_namespace(&self, _node: &Node) -> Option<String> {
        None
    }

    /// The proxy groups (`node.cluster`) a verified token of `namespace/service_account` may
    /// ask for besides the one named after its service account (a gateway's); none by default.
    fn token_groups(&self, _namespace: &str, _service_account: &str) -> Vec<String> {
        Vec::new()
    }
}

/// A node's group, and what the server should know about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grouped {
    /// The group key: the cache entry the node's stream watches.
    pub key: String,
    /// Why the group needs Delta ADS, if the node asked for what only Delta serves (a
    /// State-of-the-World stream logs it: `REASON needs Delta ADS ...`).
    pub needs_delta: Option<String>,
    /// What in the node could not be used, naming the node field (logged and shown in the
    /// proxy status).
    pub warnings: Vec<String>,
}

/// The default hook: a node's group is its `node.cluster` ([`DEFAULT_GROUP`] when empty).
#[derive(Clone, Copy, Debug, Default)]
pub struct ByCluster;

// === impl Grouped ===

impl Grouped {
    /// The group `key`, with nothing more to say.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            ..Self::default()
        }
    }
}

// === impl ByCluster ===

impl NodeGrouping for ByCluster {
    fn group(&self, node: &Node, _peer: Option<&PeerIdentity>) -> Grouped {
        Grouped::new(if node.cluster.is_empty() {
            DEFAULT_GROUP
        } else {
            node.cluster.as_str()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_cluster_groups_by_the_node_cluster() {
        let node = |cluster: &str| Node {
            cluster: cluster.into(),
            ..Default::default()
        };
        assert_eq!(ByCluster.group(&node("web"), None), Grouped::new("web"));
        assert_eq!(ByCluster.group(&node(""), None), Grouped::new("default"));
    }
}
