//! Simulated proxies in process: Portolan's own SotW and Delta stream state machines driven by
//! the shared Envoy-like subscribers (`portolan-xds-client`), every response answered as
//! Envoy answers it, counting the bytes each response takes on the wire.

use crate::BenchError;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use portolan_translate::names::MESH_ROUTE;
use portolan_xds::{DeltaStream, Snapshot, SotwStream, StreamTypes};
use portolan_xds_client::{DeltaSubscriber, Follow, SotwSubscriber, node};
use prost::Message;
use std::collections::{BTreeMap, VecDeque};
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
    subscriber: SotwSubscriber,
    /// The last response of each type, kept as Envoy keeps its config: the memory figures of
    /// the in-process scenarios hold both ends.
    held: BTreeMap<String, DiscoveryResponse>,
}

/// One Envoy on a Delta ADS stream.
pub struct DeltaProxy {
    stream: DeltaStream,
    subscriber: DeltaSubscriber,
}

/// The node of the bench's full-push proxies.
fn sidecar() -> Node {
    node::envoy("bench-sidecar", "default")
}

// === impl Push ===

impl std::ops::AddAssign for Push {
    fn add_assign(&mut self, other: Self) {
        self.responses += other.responses;
        self.resources += other.resources;
        self.bytes += other.bytes;
    }
}

impl Push {
    fn count(&mut self, resources: usize, bytes: usize) {
        self.responses += 1;
        self.resources += resources;
        self.bytes += bytes;
    }
}

/// The wire messages of what a stream state machine sent (the bench counts their encoded size).
fn wire<R, P: From<R>>(out: portolan_xds::Output<R>) -> VecDeque<P> {
    out.responses.into_iter().map(P::from).collect()
}

fn proxy_error(error: portolan_xds_client::ClientError) -> BenchError {
    BenchError::Proxy(error.to_string())
}

// === impl SotwProxy ===

impl SotwProxy {
    /// Connects and subscribes like Envoy: wildcard CDS, then EDS for every cluster received,
    /// wildcard LDS, then RDS for the mesh route configuration; each response ACKed.
    /// Returns the proxy and what the initial sync carried.
    pub fn connect(snapshot: Arc<Snapshot>) -> Result<(Self, Push), BenchError> {
        let routes = vec![MESH_ROUTE.to_string()];
        let mut proxy = Self {
            stream: SotwStream::new(StreamTypes::Aggregated),
            subscriber: SotwSubscriber::new(sidecar(), Follow::Envoy { routes }),
            held: BTreeMap::new(),
        };
        let mut total = proxy.update(snapshot)?;
        let first = proxy.subscriber.start();
        total += proxy.send(first)?;
        if !proxy.subscriber.synced() {
            return Err(BenchError::Proxy(
                "SotW initial sync left a type unanswered".into(),
            ));
        }
        Ok((proxy, total))
    }

    /// Feeds a new snapshot; answers what it pushes; returns what it pushed.
    pub fn update(&mut self, snapshot: Arc<Snapshot>) -> Result<Push, BenchError> {
        let responses = wire(self.stream.on_snapshot(snapshot));
        self.exchange(responses)
    }

    /// Sends one request and everything the answers lead to.
    fn send(&mut self, request: DiscoveryRequest) -> Result<Push, BenchError> {
        let responses = wire(self.stream.on_request(request));
        self.exchange(responses)
    }

    /// Reads responses in order, each answered before the next is read, until none is left.
    fn exchange(&mut self, mut queue: VecDeque<DiscoveryResponse>) -> Result<Push, BenchError> {
        let mut push = Push::default();
        while let Some(response) = queue.pop_front() {
            push.count(response.resources.len(), response.encoded_len());
            let requests = self.subscriber.accept(&response).map_err(proxy_error)?;
            self.held.insert(response.type_url.clone(), response);
            for request in requests {
                queue.extend(wire(self.stream.on_request(request)));
            }
        }
        Ok(push)
    }
}

// === impl DeltaProxy ===

impl DeltaProxy {
    /// Connects and subscribes like Envoy on Delta ADS: wildcard CDS, EDS for every cluster
    /// received, wildcard LDS, RDS for the mesh route configuration; each response ACKed.
    pub fn connect(snapshot: Arc<Snapshot>) -> Result<(Self, Push), BenchError> {
        let (proxy, push) = Self::connect_as(sidecar(), snapshot)?;
        if !proxy.subscriber.synced() {
            return Err(BenchError::Proxy(
                "Delta initial sync left a type unanswered".into(),
            ));
        }
        Ok((proxy, push))
    }

    /// [`DeltaProxy::connect`] as `node`, without requiring a full sync (an on-demand proxy
    /// holds no endpoints to begin with).
    pub fn connect_as(node: Node, snapshot: Arc<Snapshot>) -> Result<(Self, Push), BenchError> {
        let mut proxy = Self {
            stream: DeltaStream::new(StreamTypes::Aggregated),
            subscriber: DeltaSubscriber::new(node, vec![MESH_ROUTE.to_string()]),
        };
        let mut total = proxy.update(snapshot)?;
        let first = proxy.subscriber.start();
        total += proxy.send(first)?;
        Ok((proxy, total))
    }

    /// Feeds a new snapshot; answers what it pushes; returns what it pushed.
    pub fn update(&mut self, snapshot: Arc<Snapshot>) -> Result<Push, BenchError> {
        let responses = wire(self.stream.on_snapshot(snapshot));
        self.exchange(responses)
    }

    /// Subscribes to `names` of `type_url` (VHDS, on-demand CDS); returns what followed.
    pub fn subscribe(&mut self, type_url: &str, names: Vec<String>) -> Result<Push, BenchError> {
        let request = self.subscriber.subscribe(type_url, names);
        self.send(request)
    }

    fn send(&mut self, request: DeltaDiscoveryRequest) -> Result<Push, BenchError> {
        let responses = wire(self.stream.on_request(request));
        self.exchange(responses)
    }

    /// Reads responses in order, each answered before the next is read, until none is left.
    fn exchange(
        &mut self,
        mut queue: VecDeque<DeltaDiscoveryResponse>,
    ) -> Result<Push, BenchError> {
        let mut push = Push::default();
        while let Some(response) = queue.pop_front() {
            push.count(response.resources.len(), response.encoded_len());
            for request in self.subscriber.accept(&response) {
                queue.extend(wire(self.stream.on_request(request)));
            }
        }
        Ok(push)
    }
}
