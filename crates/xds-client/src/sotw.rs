//! What an Envoy subscribes to on a State-of-the-World ADS stream, and how it answers each
//! response, as a pure state machine: [`SotwSubscriber::start`] gives the first request,
//! [`SotwSubscriber::accept`] (or [`SotwSubscriber::reject`]) the requests a response leads to.
//!
//! Envoy's order: wildcard CDS first; EDS for every cluster CDS returned (again whenever the set
//! changes); wildcard LDS after the first CDS response; RDS for its route configurations after
//! the first LDS response. A request for a type carries the version and nonce of the last
//! response of that type, so a follow-up request is also an ACK.

use crate::request;
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use crate::{ClientError, names};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

/// What a subscriber asks for beyond wildcard CDS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Nothing: clusters only.
    Clusters,
    /// What Envoy asks for: EDS for its clusters, LDS, and RDS for these route configurations
    /// (an Envoy learns their names from its listeners; a simulated one is told).
    Envoy { routes: Vec<String> },
}

/// One Envoy's SotW subscriptions: what it asked for, and what it accepted.
#[derive(Clone, Debug)]
pub struct SotwSubscriber {
    node: Node,
    follow: Follow,
    /// Per type, in [`Kind`] order.
    types: [TypeState; 4],
    /// The clusters of the last accepted CDS response (what EDS asks for).
    clusters: Vec<String>,
}

/// One type on the stream.
#[derive(Clone, Debug, Default)]
struct TypeState {
    requested: bool,
    received: bool,
    /// The version the client runs (last ACKed), and the nonce of the last response.
    accepted: String,
    nonce: String,
}

/// The four types a SotW subscriber knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cluster,
    Endpoint,
    Listener,
    Route,
}

// === impl Kind ===

impl Kind {
    const ALL: [Kind; 4] = [Kind::Cluster, Kind::Endpoint, Kind::Listener, Kind::Route];

    fn type_url(self) -> &'static str {
        match self {
            Kind::Cluster => CLUSTER,
            Kind::Endpoint => ENDPOINT,
            Kind::Listener => LISTENER,
            Kind::Route => ROUTE,
        }
    }

    fn of(type_url: &str) -> Result<Self, ClientError> {
        Self::ALL
            .into_iter()
            .find(|k| k.type_url() == type_url)
            .ok_or_else(|| ClientError::UnexpectedType(type_url.to_string()))
    }
}

// === impl SotwSubscriber ===

impl SotwSubscriber {
    /// A subscriber for `node` that follows `follow`. Every request it makes carries the node.
    pub fn new(node: Node, follow: Follow) -> Self {
        Self {
            node,
            follow,
            types: Default::default(),
            clusters: Vec::new(),
        }
    }

    /// The first request on the stream: wildcard CDS.
    pub fn start(&mut self) -> DiscoveryRequest {
        self.request(Kind::Cluster)
    }

    /// Accepts `response`: its ACK, and the subscriptions it leads Envoy to make.
    pub fn accept(
        &mut self,
        response: &DiscoveryResponse,
    ) -> Result<Vec<DiscoveryRequest>, ClientError> {
        let kind = self.subscribed(&response.type_url)?;
        let clusters = match kind {
            Kind::Cluster => Some(names::cluster_names(&response.resources)?),
            _ => None,
        };
        let state = &mut self.types[kind as usize];
        state.received = true;
        state.accepted.clone_from(&response.version_info);
        state.nonce.clone_from(&response.nonce);
        let follows = matches!(self.follow, Follow::Envoy { .. });
        let mut out = Vec::with_capacity(3);
        match kind {
            Kind::Cluster => {
                let clusters = clusters.unwrap_or_default();
                let changed = clusters != self.clusters;
                self.clusters = clusters;
                if follows && (changed || !self.types[Kind::Endpoint as usize].requested) {
                    out.push(self.request(Kind::Endpoint));
                }
                out.push(self.request(Kind::Cluster));
                if follows && !self.types[Kind::Listener as usize].requested {
                    out.push(self.request(Kind::Listener));
                }
            }
            Kind::Listener => {
                out.push(self.request(Kind::Listener));
                if follows && !self.types[Kind::Route as usize].requested {
                    out.push(self.request(Kind::Route));
                }
            }
            Kind::Endpoint | Kind::Route => out.push(self.request(kind)),
        }
        Ok(out)
    }

    /// Rejects `response` with Envoy's error text: the NACK keeps the version last accepted.
    pub fn reject(
        &mut self,
        response: &DiscoveryResponse,
        message: &str,
    ) -> Result<DiscoveryRequest, ClientError> {
        let kind = self.subscribed(&response.type_url)?;
        let state = &mut self.types[kind as usize];
        state.received = true;
        state.nonce.clone_from(&response.nonce);
        let accepted = state.accepted.clone();
        Ok(DiscoveryRequest {
            node: Some(self.node.clone()),
            ..request::sotw_nack(response, &accepted, self.names(kind), message)
        })
    }

    /// Whether every type it subscribes to has been received at least once.
    pub fn synced(&self) -> bool {
        match self.follow {
            Follow::Clusters => self.types[Kind::Cluster as usize].received,
            Follow::Envoy { .. } => self.types.iter().all(|t| t.received),
        }
    }

    /// The clusters of the last accepted CDS response.
    pub fn clusters(&self) -> &[String] {
        &self.clusters
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The kind of a response's type, which this subscriber must have asked for: a server
    /// answers only what was requested.
    fn subscribed(&self, type_url: &str) -> Result<Kind, ClientError> {
        let kind = Kind::of(type_url)?;
        if self.types[kind as usize].requested {
            Ok(kind)
        } else {
            Err(ClientError::UnexpectedType(type_url.to_string()))
        }
    }

    /// The request for `kind` with its current names, ACKing its last response.
    fn request(&mut self, kind: Kind) -> DiscoveryRequest {
        let names = self.names(kind);
        let state = &mut self.types[kind as usize];
        state.requested = true;
        DiscoveryRequest {
            version_info: state.accepted.clone(),
            response_nonce: state.nonce.clone(),
            node: Some(self.node.clone()),
            ..request::sotw(kind.type_url(), names)
        }
    }

    /// What `kind` subscribes to: CDS and LDS are wildcard.
    fn names(&self, kind: Kind) -> Vec<String> {
        match (kind, &self.follow) {
            (Kind::Endpoint, _) => self.clusters.clone(),
            (Kind::Route, Follow::Envoy { routes }) => routes.clone(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;

    fn response(type_url: &str, version: &str, resources: Vec<Any>) -> DiscoveryResponse {
        DiscoveryResponse {
            type_url: type_url.to_string(),
            version_info: version.to_string(),
            nonce: format!("n-{version}"),
            resources,
            ..Default::default()
        }
    }

    fn clusters(names: &[&str]) -> Vec<Any> {
        names
            .iter()
            .map(|n| Any {
                type_url: CLUSTER.to_string(),
                value: Cluster {
                    name: n.to_string(),
                    ..Default::default()
                }
                .encode_to_vec(),
            })
            .collect()
    }

    /// `(type, names, version, nonce)` of each request.
    fn shape(requests: &[DiscoveryRequest]) -> Vec<(&str, Vec<&str>, &str, &str)> {
        requests
            .iter()
            .map(|r| {
                let ty = r.type_url.rsplit('.').next().unwrap_or_default();
                let names = r.resource_names.iter().map(String::as_str).collect();
                (
                    ty,
                    names,
                    r.version_info.as_str(),
                    r.response_nonce.as_str(),
                )
            })
            .collect()
    }

    fn envoy() -> SotwSubscriber {
        SotwSubscriber::new(
            node::envoy("sidecar-1", "web"),
            Follow::Envoy {
                routes: vec!["mesh".into()],
            },
        )
    }

    #[test]
    fn subscribes_in_envoys_order_and_acks_each_response() {
        let mut s = envoy();
        assert_eq!(shape(&[s.start()]), [("Cluster", vec![], "", "")]);
        let cds = s
            .accept(&response(CLUSTER, "1", clusters(&["a", "b"])))
            .expect("accepted");
        assert_eq!(
            shape(&cds),
            [
                ("ClusterLoadAssignment", vec!["a", "b"], "", ""),
                ("Cluster", vec![], "1", "n-1"),
                ("Listener", vec![], "", ""),
            ]
        );
        assert!(
            cds.iter()
                .all(|r| r.node.as_ref().is_some_and(|n| n.id == "sidecar-1"))
        );
        let eds = s.accept(&response(ENDPOINT, "e1", vec![])).expect("ok");
        assert_eq!(
            shape(&eds),
            [("ClusterLoadAssignment", vec!["a", "b"], "e1", "n-e1")]
        );
        let lds = s.accept(&response(LISTENER, "l1", vec![])).expect("ok");
        assert_eq!(
            shape(&lds),
            [
                ("Listener", vec![], "l1", "n-l1"),
                ("RouteConfiguration", vec!["mesh"], "", "")
            ]
        );
        assert!(!s.synced());
        s.accept(&response(ROUTE, "r1", vec![])).expect("ok");
        assert!(s.synced());

        // The same clusters again: only the CDS ACK. A new set: EDS asks again, ACKing e1.
        let same = s
            .accept(&response(CLUSTER, "2", clusters(&["a", "b"])))
            .expect("ok");
        assert_eq!(shape(&same), [("Cluster", vec![], "2", "n-2")]);
        let more = s
            .accept(&response(CLUSTER, "3", clusters(&["a", "b", "c"])))
            .expect("ok");
        assert_eq!(
            shape(&more),
            [
                ("ClusterLoadAssignment", vec!["a", "b", "c"], "e1", "n-e1"),
                ("Cluster", vec![], "3", "n-3"),
            ]
        );
    }

    #[test]
    fn a_nack_keeps_the_accepted_version_and_names_the_error() {
        let mut s = envoy();
        s.start();
        s.accept(&response(CLUSTER, "1", clusters(&["a"])))
            .expect("ok");
        let nack = s
            .reject(&response(CLUSTER, "2", clusters(&["a", "bad"])), "bad")
            .expect("a NACK");
        assert_eq!(
            shape(std::slice::from_ref(&nack)),
            [("Cluster", vec![], "1", "n-2")]
        );
        assert_eq!(nack.error_detail.map(|e| e.message).as_deref(), Some("bad"));
        assert_eq!(s.clusters(), ["a"], "the rejected clusters are not taken");
    }

    #[test]
    fn a_clusters_only_subscriber_asks_for_nothing_else() {
        let mut s = SotwSubscriber::new(node::envoy("n", "g"), Follow::Clusters);
        s.start();
        let out = s
            .accept(&response(CLUSTER, "1", clusters(&["a"])))
            .expect("ok");
        assert_eq!(shape(&out), [("Cluster", vec![], "1", "n-1")]);
        assert!(s.synced());
        for unasked in [ROUTE, "type.googleapis.com/x"] {
            assert!(matches!(
                s.accept(&response(unasked, "1", vec![])),
                Err(ClientError::UnexpectedType(_))
            ));
        }
    }
}
