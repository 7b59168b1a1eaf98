//! What an Envoy subscribes to on a Delta ADS stream, and how it answers each response, as a
//! pure state machine: [`DeltaSubscriber::start`] gives the first request,
//! [`DeltaSubscriber::accept`] (or [`DeltaSubscriber::reject`]) the requests a response leads
//! to, [`DeltaSubscriber::subscribe`] any later subscription (VHDS, on-demand CDS).
//!
//! Envoy's order: wildcard CDS; EDS for every cluster it receives; wildcard LDS after the first
//! CDS response; its route configurations after the first LDS response. Every response is
//! ACKed before the subscriptions it leads to.

use crate::request;
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use std::collections::BTreeSet;

/// One Envoy's Delta subscriptions and what it holds.
#[derive(Clone, Debug)]
pub struct DeltaSubscriber {
    node: Node,
    /// The route configurations RDS asks for once listeners arrived.
    routes: Vec<String>,
    /// Clusters held (what EDS is subscribed to).
    clusters: BTreeSet<String>,
    /// Endpoint assignments subscribed to and not yet received.
    pending_endpoints: BTreeSet<String>,
    /// Type URLs received at least once.
    received: BTreeSet<String>,
    listeners_requested: bool,
    routes_requested: bool,
}

// === impl DeltaSubscriber ===

impl DeltaSubscriber {
    /// A subscriber for `node` that asks RDS for `routes`. Its subscriptions carry the node;
    /// ACKs do not.
    pub fn new(node: Node, routes: Vec<String>) -> Self {
        Self {
            node,
            routes,
            clusters: BTreeSet::new(),
            pending_endpoints: BTreeSet::new(),
            received: BTreeSet::new(),
            listeners_requested: false,
            routes_requested: false,
        }
    }

    /// The first request on the stream: wildcard CDS.
    pub fn start(&mut self) -> DeltaDiscoveryRequest {
        self.subscribe(CLUSTER, Vec::new())
    }

    /// A subscription to `names` of `type_url`.
    pub fn subscribe(&mut self, type_url: &str, names: Vec<String>) -> DeltaDiscoveryRequest {
        if type_url == ENDPOINT {
            self.pending_endpoints.extend(names.iter().cloned());
        }
        DeltaDiscoveryRequest {
            node: Some(self.node.clone()),
            ..request::delta_subscribe(type_url, names)
        }
    }

    /// Accepts `response`: its ACK, then the subscriptions it leads Envoy to make.
    pub fn accept(&mut self, response: &DeltaDiscoveryResponse) -> Vec<DeltaDiscoveryRequest> {
        self.received.insert(response.type_url.clone());
        let mut out = vec![request::delta_ack(response)];
        match response.type_url.as_str() {
            CLUSTER => {
                let new: Vec<String> = response
                    .resources
                    .iter()
                    .filter(|r| r.resource.is_some() && self.clusters.insert(r.name.clone()))
                    .map(|r| r.name.clone())
                    .collect();
                for gone in &response.removed_resources {
                    self.clusters.remove(gone);
                    self.pending_endpoints.remove(gone);
                }
                if !new.is_empty() {
                    out.push(self.subscribe(ENDPOINT, new));
                }
                if !self.listeners_requested {
                    self.listeners_requested = true;
                    out.push(self.subscribe(LISTENER, Vec::new()));
                }
            }
            ENDPOINT => {
                let names = response.resources.iter().map(|r| &r.name);
                for name in names.chain(&response.removed_resources) {
                    self.pending_endpoints.remove(name);
                }
            }
            LISTENER if !self.routes_requested && !self.routes.is_empty() => {
                self.routes_requested = true;
                out.push(self.subscribe(ROUTE, self.routes.clone()));
            }
            _ => {}
        }
        out
    }

    /// Rejects `response` with Envoy's error text.
    pub fn reject(
        &mut self,
        response: &DeltaDiscoveryResponse,
        message: &str,
    ) -> DeltaDiscoveryRequest {
        self.received.insert(response.type_url.clone());
        request::delta_nack(response, message)
    }

    /// Whether clusters, listeners and route configurations arrived and every subscribed
    /// endpoint assignment with them.
    pub fn synced(&self) -> bool {
        let routes = self.routes.is_empty() || self.received.contains(ROUTE);
        self.received.contains(CLUSTER)
            && self.received.contains(LISTENER)
            && routes
            && self.pending_endpoints.is_empty()
    }

    /// Clusters held.
    pub fn clusters(&self) -> &BTreeSet<String> {
        &self.clusters
    }

    /// Whether endpoint assignments are subscribed to and not yet received.
    pub fn awaits_endpoints(&self) -> bool {
        !self.pending_endpoints.is_empty()
    }

    pub fn node(&self) -> &Node {
        &self.node
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node;
    use envoy_types::pb::envoy::service::discovery::v3::Resource;
    use envoy_types::pb::google::protobuf::Any;

    fn response(type_url: &str, names: &[&str], removed: &[&str]) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            type_url: type_url.to_string(),
            nonce: format!("n-{}", names.join(",")),
            resources: names
                .iter()
                .map(|n| Resource {
                    name: n.to_string(),
                    resource: Some(Any::default()),
                    ..Default::default()
                })
                .collect(),
            removed_resources: removed.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }
    }

    /// `(type, subscribed names, nonce, with node)` of each request.
    fn shape(requests: &[DeltaDiscoveryRequest]) -> Vec<(&str, Vec<&str>, &str, bool)> {
        requests
            .iter()
            .map(|r| {
                let ty = r.type_url.rsplit('.').next().unwrap_or_default();
                let names = r.resource_names_subscribe.iter().map(String::as_str);
                (
                    ty,
                    names.collect(),
                    r.response_nonce.as_str(),
                    r.node.is_some(),
                )
            })
            .collect()
    }

    #[test]
    fn subscribes_in_envoys_order_and_acks_first() {
        let mut s = DeltaSubscriber::new(node::envoy("d", "web"), vec!["mesh".into()]);
        assert_eq!(shape(&[s.start()]), [("Cluster", vec![], "", true)]);
        let cds = s.accept(&response(CLUSTER, &["a", "b"], &[]));
        assert_eq!(
            shape(&cds),
            [
                ("Cluster", vec![], "n-a,b", false),
                ("ClusterLoadAssignment", vec!["a", "b"], "", true),
                ("Listener", vec![], "", true),
            ]
        );
        s.accept(&response(ENDPOINT, &["a"], &[]));
        let lds = s.accept(&response(LISTENER, &["l"], &[]));
        assert_eq!(
            shape(&lds),
            [
                ("Listener", vec![], "n-l", false),
                ("RouteConfiguration", vec!["mesh"], "", true),
            ]
        );
        s.accept(&response(ROUTE, &["mesh"], &[]));
        assert!(!s.synced(), "b's endpoints are still due");
        s.accept(&response(ENDPOINT, &["b"], &[]));
        assert!(s.synced());

        // Only new clusters subscribe their endpoints; a removed one is dropped.
        let more = s.accept(&response(CLUSTER, &["a", "c"], &["b"]));
        assert_eq!(
            shape(&more),
            [
                ("Cluster", vec![], "n-a,c", false),
                ("ClusterLoadAssignment", vec!["c"], "", true),
            ]
        );
        assert_eq!(s.clusters().iter().collect::<Vec<_>>(), ["a", "c"]);
        assert!(s.awaits_endpoints());
    }

    #[test]
    fn a_nack_carries_the_error_and_the_nonce() {
        let mut s = DeltaSubscriber::new(node::envoy("d", "web"), Vec::new());
        s.start();
        let nack = s.reject(&response(CLUSTER, &["bad"], &[]), "bad cluster");
        assert_eq!(nack.response_nonce, "n-bad");
        assert_eq!(
            nack.error_detail.map(|e| e.message).as_deref(),
            Some("bad cluster")
        );
        assert!(s.clusters().is_empty());
    }
}
