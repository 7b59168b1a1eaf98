//! Simulated proxies: the pure SotW and Delta stream state machines driven through the initial
//! subscription the way Envoy does it over ADS, every response ACKed, counting the bytes each
//! response takes on the wire.

use crate::BenchError;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use portolan_translate::names::MESH_ROUTE;
use portolan_xds::{DeltaStream, ResourceType, Scope, Snapshot, SotwStream};
use prost::Message;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What one push carried to one proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Push {
    /// Responses sent.
    pub responses: usize,
    /// Resources carried (Delta: upserts; removals are counted in bytes only).
    pub resources: usize,
    /// Sum of the responses' `encoded_len()`.
    pub bytes: usize,
}

/// One Envoy on a State-of-the-World ADS stream.
pub struct SotwProxy {
    stream: SotwStream,
    /// Last response per type (to ACK with), in push order.
    last: [Option<DiscoveryResponse>; 4],
    eds_names: Vec<String>,
}

/// One Envoy on a Delta ADS stream.
pub struct DeltaProxy {
    stream: DeltaStream,
    /// Cluster names received so far (what EDS subscribes to).
    clusters: BTreeSet<String>,
    /// Whether EDS is subscribed (new clusters then subscribe their assignments).
    eds: bool,
}

fn node() -> Option<Node> {
    Some(Node {
        id: "bench-sidecar".to_string(),
        cluster: "default".to_string(),
        ..Default::default()
    })
}

// === impl Push ===

impl std::ops::AddAssign for Push {
    fn add_assign(&mut self, other: Self) {
        self.responses += other.responses;
        self.resources += other.resources;
        self.bytes += other.bytes;
    }
}

fn slot(type_url: &str) -> Option<usize> {
    ResourceType::ALL
        .iter()
        .position(|ty| ty.type_url() == type_url)
}

// === impl SotwProxy ===

impl SotwProxy {
    /// Connects and subscribes like Envoy: wildcard CDS, then EDS for every cluster received,
    /// then wildcard LDS, then RDS for the mesh route configuration; each response ACKed.
    /// Returns the proxy and what the initial sync carried.
    pub fn connect(snapshot: Arc<Snapshot>) -> Result<(Self, Push), BenchError> {
        let mut proxy = Self {
            stream: SotwStream::new(Scope::Aggregated),
            last: Default::default(),
            eds_names: Vec::new(),
        };
        let mut total = proxy.update(snapshot)?;
        total += proxy.request(ResourceType::Cluster, Vec::new())?;
        total += proxy.request(ResourceType::Endpoint, proxy.eds_names.clone())?;
        total += proxy.request(ResourceType::Listener, Vec::new())?;
        total += proxy.request(ResourceType::Route, vec![MESH_ROUTE.to_string()])?;
        if proxy.last.iter().any(Option::is_none) {
            return Err(BenchError::Proxy(
                "SotW initial sync left a type unanswered".into(),
            ));
        }
        Ok((proxy, total))
    }

    /// Feeds a new snapshot; ACKs what it pushes; returns what it pushed.
    pub fn update(&mut self, snapshot: Arc<Snapshot>) -> Result<Push, BenchError> {
        let responses = proxy_out(self.stream.on_snapshot(snapshot));
        self.absorb(responses)
    }

    /// Sends one request for `ty` (ACKing the last response of that type, if any).
    fn request(&mut self, ty: ResourceType, names: Vec<String>) -> Result<Push, BenchError> {
        let index = ty_index(ty);
        let (version, nonce) = self.last[index]
            .as_ref()
            .map(|r| (r.version_info.clone(), r.nonce.clone()))
            .unwrap_or_default();
        let request = DiscoveryRequest {
            version_info: version,
            node: node(),
            resource_names: names,
            type_url: ty.type_url().to_string(),
            response_nonce: nonce,
            ..Default::default()
        };
        let responses = proxy_out(self.stream.on_request(request));
        self.absorb(responses)
    }

    /// Counts responses, remembers them, learns the cluster names, and ACKs each.
    fn absorb(&mut self, responses: Vec<DiscoveryResponse>) -> Result<Push, BenchError> {
        let mut push = Push::default();
        let mut acks = Vec::new();
        for response in responses {
            push.responses += 1;
            push.resources += response.resources.len();
            push.bytes += response.encoded_len();
            let Some(index) = slot(&response.type_url) else {
                return Err(BenchError::Proxy(format!(
                    "unknown type {}",
                    response.type_url
                )));
            };
            if index == ty_index(ResourceType::Cluster) {
                self.eds_names = portolan_xds::testing::response_names(&response);
            }
            acks.push(index);
            self.last[index] = Some(response);
        }
        for index in acks {
            push += self.ack(index)?;
        }
        Ok(push)
    }

    /// ACKs the last response of a type. After clusters, Envoy also asks EDS for the new set
    /// of cluster names (once it subscribes to EDS at all); that request ACKs the last EDS
    /// response too.
    fn ack(&mut self, index: usize) -> Result<Push, BenchError> {
        let ty = ResourceType::ALL[index];
        let eds = ty_index(ResourceType::Endpoint);
        let mut push = Push::default();
        if ty == ResourceType::Cluster && self.last[eds].is_some() {
            push += self.request(ResourceType::Endpoint, self.eds_names.clone())?;
        }
        let names = match ty {
            ResourceType::Cluster | ResourceType::Listener => Vec::new(),
            ResourceType::Endpoint => self.eds_names.clone(),
            ResourceType::Route => vec![MESH_ROUTE.to_string()],
            // The bench's proxies have no mesh identity: no secrets.
            ResourceType::Secret => Vec::new(),
            // Full-push bench proxies ask for no virtual hosts.
            ResourceType::VirtualHost => Vec::new(),
        };
        push += self.request(ty, names)?;
        Ok(push)
    }
}

fn ty_index(ty: ResourceType) -> usize {
    ResourceType::ALL.iter().position(|t| *t == ty).unwrap_or(0)
}

/// A step's responses as the prost messages they encode (what a client decodes).
pub(crate) fn proxy_out<R, P: From<R>>(out: portolan_xds::Output<R>) -> Vec<P> {
    out.responses.into_iter().map(P::from).collect()
}

// === impl DeltaProxy ===

impl DeltaProxy {
    /// Connects and subscribes like Envoy on Delta ADS: wildcard CDS, EDS for every cluster
    /// received, wildcard LDS, RDS for the mesh route configuration; each response ACKed.
    pub fn connect(snapshot: Arc<Snapshot>) -> Result<(Self, Push), BenchError> {
        let mut proxy = Self {
            stream: DeltaStream::new(Scope::Aggregated),
            clusters: BTreeSet::new(),
            eds: false,
        };
        let mut total = proxy.update(snapshot)?;
        total += proxy.subscribe(ResourceType::Cluster, Vec::new())?;
        total += proxy.subscribe(
            ResourceType::Endpoint,
            proxy.clusters.iter().cloned().collect(),
        )?;
        proxy.eds = true;
        total += proxy.subscribe(ResourceType::Listener, Vec::new())?;
        total += proxy.subscribe(ResourceType::Route, vec![MESH_ROUTE.to_string()])?;
        Ok((proxy, total))
    }

    /// Feeds a new snapshot; ACKs what it pushes; returns what it pushed.
    pub fn update(&mut self, snapshot: Arc<Snapshot>) -> Result<Push, BenchError> {
        let responses = proxy_out(self.stream.on_snapshot(snapshot));
        self.absorb(responses)
    }

    /// The first request of a type: subscribe to `names` (none: wildcard).
    fn subscribe(&mut self, ty: ResourceType, names: Vec<String>) -> Result<Push, BenchError> {
        let request = DeltaDiscoveryRequest {
            node: node(),
            type_url: ty.type_url().to_string(),
            resource_names_subscribe: names,
            ..Default::default()
        };
        let responses = proxy_out(self.stream.on_request(request));
        if responses.is_empty() {
            return Err(BenchError::Proxy(format!(
                "Delta {ty} subscription unanswered"
            )));
        }
        self.absorb(responses)
    }

    /// Counts responses, learns cluster names, and ACKs each.
    fn absorb(&mut self, responses: Vec<DeltaDiscoveryResponse>) -> Result<Push, BenchError> {
        let mut push = Push::default();
        let mut acks = Vec::new();
        for response in responses {
            push.responses += 1;
            push.resources += response.resources.len();
            push.bytes += response.encoded_len();
            let mut new_clusters = Vec::new();
            if response.type_url == ResourceType::Cluster.type_url() {
                new_clusters = response
                    .resources
                    .iter()
                    .map(|r| r.name.clone())
                    .filter(|n| !self.clusters.contains(n))
                    .collect();
                self.clusters.extend(new_clusters.iter().cloned());
            }
            acks.push(DeltaDiscoveryRequest {
                node: node(),
                type_url: response.type_url,
                response_nonce: response.nonce,
                ..Default::default()
            });
            if self.eds && !new_clusters.is_empty() {
                acks.push(DeltaDiscoveryRequest {
                    node: node(),
                    type_url: ResourceType::Endpoint.type_url().to_string(),
                    resource_names_subscribe: new_clusters,
                    ..Default::default()
                });
            }
        }
        for ack in acks {
            let responses = proxy_out(self.stream.on_request(ack));
            push += self.absorb(responses)?;
        }
        Ok(push)
    }
}
