use super::*;
use crate::identity::IdentityMode;
use envoy_types::pb::envoy::config::core::v3::Locality;
use envoy_types::pb::google::protobuf::{Struct, Value};

/// The string form of a node's key, without an identity.
fn key_of(node: &Node) -> String {
    group_key(node).to_string()
}

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
    assert_eq!(key_of(&node), "web");
    assert_eq!(key_of(&Node::default()), "default");
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
    assert_eq!(key_of(&a), "web;scope=./*,shared/*");
    let b = with_metadata(&[
        (SCOPE_METADATA, "./*,shared/*"),
        (NAMESPACE_METADATA, "shop"),
    ]);
    assert_eq!(key_of(&b), "web;scope=shared/*,shop/*;node-ns=shop");
    assert_eq!(group_key(&b).node_namespace.as_deref(), Some("shop"));
    assert_eq!(group_key(&a).node_namespace, None);
    assert_eq!(key_of(&with_metadata(&[(SCOPE_METADATA, " , ")])), "web");
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
        key_of(&node),
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
    assert_eq!(key_of(&node("on-demand")), "web;mode=on-demand");
    assert!(group_key(&node("on-demand")).is_on_demand());
    assert_eq!(key_of(&node("full")), "web;mode=full");
    assert_eq!(group_key(&node("full")).discovery, DiscoveryMode::Full);
    // An unknown value is no choice (a ProxyScope may decide), and is warned about.
    assert_eq!(key_of(&node("ondemand")), "web");
    assert_eq!(group_key(&node("ondemand")).discovery, DiscoveryMode::Unset);
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
    assert!(!group_key(&sneaky).is_on_demand());
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
    assert_eq!(key_of(&grpc), "web;client=grpc");
    let envoy = Node {
        user_agent_name: "envoy".into(),
        ..Default::default()
    };
    assert_eq!(key_of(&envoy), "default");
    assert_eq!(
        key_of(&with_client_metadata(envoy, "grpc")),
        "default;client=grpc"
    );
    assert_eq!(key_of(&with_client_metadata(grpc.clone(), "envoy")), "web");
    let odd = with_client_metadata(grpc, "gprc");
    assert_eq!(
        metadata_warnings(&odd),
        [
            "node.metadata[\"portolan.dev/client\"]: \"gprc\" is not grpc or envoy (treated as envoy)"
        ]
    );
}

#[test]
fn the_outbound_traffic_policy_is_the_nodes_choice() {
    let key = |v: &str| key_of(&with_metadata(&[(EGRESS_METADATA, v)]));
    assert_eq!(key("registry-only"), "web;egress=registry-only");
    assert_eq!(key("REGISTRY_ONLY"), "web;egress=registry-only");
    assert_eq!(key("allow-any"), "web;egress=allow-any");
    assert_eq!(key("deny"), "web");
    assert_eq!(
        metadata_warnings(&with_metadata(&[(EGRESS_METADATA, "deny")])),
        [
            "node.metadata[\"portolan.dev/outbound-traffic-policy\"]: \"deny\" is not allow-any or registry-only (ignored)"
        ]
    );
}

/// The hook's answer: the key's string form, whether the group needs Delta, the warnings.
#[test]
fn the_hook_answers_with_the_key_and_what_the_server_should_know() {
    let mut node = with_metadata(&[(DISCOVERY_METADATA, "on-demand"), (CLIENT_METADATA, "gprc")]);
    let grouping = ProxyGrouping::new(IdentityMode::default());
    let peer = PeerIdentity {
        dns: vec![],
        uris: vec!["spiffe://cluster.local/ns/shop/sa/web".into()],
    };
    let grouped = grouping.group(&node, Some(&peer));
    assert_eq!(grouped.key, "web;mode=on-demand;ns=shop;sa=web");
    assert_eq!(
        grouped.needs_delta.as_deref(),
        Some("on-demand discovery (portolan.dev/discovery: on-demand)")
    );
    assert_eq!(grouped.warnings, metadata_warnings(&node));
    assert_eq!(grouped.warnings.len(), 1);
    node.metadata = None;
    assert_eq!(grouping.group(&node, None), Grouped::new("web"));
}

/// Identity parts of a key come only from the proven identity: a node that writes them into
/// its cluster, zone or labels gets no workload.
#[test]
fn a_node_cannot_claim_an_identity_through_its_key() {
    use envoy_types::pb::envoy::config::core::v3::Locality;
    let node = Node {
        cluster: "web;ns=admin;sa=root".into(),
        locality: Some(Locality {
            zone: "z;ns=admin;sa=root".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let grouping = ProxyGrouping::new(IdentityMode::default());
    let key = grouping.group(&node, None).key;
    let read: GroupKey = key.parse().expect("the hook's keys parse");
    assert_eq!(read.workload, None, "{key}");
    assert_eq!(read, grouping.key(&node, None));
}

#[test]
fn the_claimed_namespace_is_portolan_namespace_then_namespace() {
    use envoy_types::pb::google::protobuf::value::Kind;
    let node = |fields: &[(&str, &str)]| Node {
        cluster: "web".into(),
        metadata: Some(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value {
                            kind: Some(Kind::StringValue(v.to_string())),
                        },
                    )
                })
                .collect(),
        }),
        ..Default::default()
    };
    let g = ProxyGrouping::default();
    assert_eq!(g.claimed_namespace(&node(&[])), None);
    assert_eq!(
        g.claimed_namespace(&node(&[("namespace", "a")])).as_deref(),
        Some("a")
    );
    assert_eq!(
        g.claimed_namespace(&node(&[("namespace", "a"), (NAMESPACE_METADATA, "b")]))
            .as_deref(),
        Some("b")
    );
}

/// A token of `portolan-gateway-NAME` may ask for Gateway NAME's group in its namespace, and
/// a Gateway's proxy is no mesh workload whatever identity it proved.
#[test]
fn a_gateways_service_account_may_ask_for_its_gateways_group() {
    let g = ProxyGrouping::new(IdentityMode::Certificate {
        trust_domain: "cluster.local".into(),
    });
    assert_eq!(
        g.token_groups("shop", "portolan-gateway-edge"),
        ["gateway:shop/edge"]
    );
    assert!(g.token_groups("shop", "edge").is_empty());
    assert!(g.token_groups("shop", "portolan-gateway-").is_empty());

    let peer = PeerIdentity {
        dns: vec!["gateway:shop/edge".into()],
        uris: vec!["spiffe://cluster.local/ns/shop/sa/portolan-gateway-edge".into()],
    };
    let gateway = Node {
        cluster: "gateway:shop/edge".into(),
        ..Default::default()
    };
    assert_eq!(g.key(&gateway, Some(&peer)).workload, None);
    assert_eq!(g.group(&gateway, Some(&peer)).key, "gateway:shop/edge");
    // The same identity on a sidecar's node is its workload.
    let sidecar = Node {
        cluster: "portolan-gateway-edge".into(),
        ..Default::default()
    };
    assert!(g.key(&sidecar, Some(&peer)).workload.is_some());
}
