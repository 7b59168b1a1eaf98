//! In-process xDS clients that behave like Envoy on a State-of-the-World ADS stream, and fleets
//! of thousands of them sharing a few HTTP/2 connections: for load tests and benchmarks that
//! need many real gRPC proxies against a real `portolan serve` without starting Envoys.
//!
//! A client subscribes the way Envoy does: wildcard CDS first; EDS for every cluster name CDS
//! returned (again whenever the set changes); wildcard LDS after the first CDS response; RDS
//! for the mesh route configuration after the first LDS response. Every response is ACKed at
//! once (the client never NACKs).

use anyhow::{Context, anyhow};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// The route configuration of the mesh outbound listener (what RDS subscribes to).
pub const MESH_ROUTE: &str = "mesh-outbound";

/// The four types Envoy subscribes to over ADS, in push order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdsType {
    Cluster,
    Endpoint,
    Listener,
    Route,
}

/// One response as a client received (and ACKed) it.
#[derive(Clone, Debug)]
pub struct Received {
    pub ty: XdsType,
    pub version: String,
    pub resources: Vec<Any>,
    /// When the client had sent its ACK.
    pub at: Instant,
}

/// One Envoy-like client on a SotW ADS stream.
pub struct AdsClient {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
    node: Node,
    /// Version and nonce of the last response per type (what the next request ACKs).
    last: [Option<(String, String)>; 4],
    requested: [bool; 4],
    eds_names: Vec<String>,
}

/// A channel to Portolan's xDS port on loopback; `window` sets small HTTP/2 windows.
pub async fn channel(port: u16, window: Option<u32>) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?;
    if let Some(w) = window {
        endpoint = endpoint
            .initial_stream_window_size(w)
            .initial_connection_window_size(w);
    }
    Ok(endpoint.connect().await?)
}

/// An Envoy node: `id`, in proxy group `group` (`node.cluster`).
pub fn node(id: &str, group: &str) -> Node {
    Node {
        id: id.to_string(),
        cluster: group.to_string(),
        user_agent_name: "envoy".to_string(),
        ..Default::default()
    }
}

/// `node` with node metadata `portolan.dev/scope` (when `scope` is some).
pub fn scoped(mut node: Node, scope: Option<&str>) -> Node {
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
    if let Some(scope) = scope {
        let value = Value {
            kind: Some(Kind::StringValue(scope.to_string())),
        };
        node.metadata = Some(Struct {
            fields: [("portolan.dev/scope".to_string(), value)].into(),
        });
    }
    node
}

// === impl XdsType ===

impl XdsType {
    pub const ALL: [XdsType; 4] = [Self::Cluster, Self::Endpoint, Self::Listener, Self::Route];

    pub fn type_url(self) -> String {
        match self {
            Self::Cluster => Cluster::type_url(),
            Self::Endpoint => ClusterLoadAssignment::type_url(),
            Self::Listener => Listener::type_url(),
            Self::Route => RouteConfiguration::type_url(),
        }
    }

    pub fn from_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    fn slot(self) -> usize {
        self as usize
    }
}

// === impl AdsClient ===

impl AdsClient {
    /// Opens an ADS stream on `channel` and sends the first (wildcard CDS) request.
    pub async fn connect(channel: Channel, node: Node) -> anyhow::Result<Self> {
        let (tx, requests) = mpsc::channel(8);
        let rx = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .stream_aggregated_resources(ReceiverStream::new(requests))
            .await?
            .into_inner();
        let mut client = Self {
            tx,
            rx,
            node,
            last: Default::default(),
            requested: [false; 4],
            eds_names: Vec::new(),
        };
        client.request(XdsType::Cluster).await?;
        Ok(client)
    }

    /// Whether every type has been received at least once.
    pub fn synced(&self) -> bool {
        self.last.iter().all(Option::is_some)
    }

    /// Reads responses (ACKing each) until every type has been received once.
    pub async fn sync(&mut self, timeout: Duration) -> anyhow::Result<()> {
        while !self.synced() {
            self.next(timeout).await?;
        }
        Ok(())
    }

    /// Reads one response, ACKs it (and subscribes what it makes Envoy subscribe), returns it.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Received> {
        let response = tokio::time::timeout(timeout, self.rx.message())
            .await
            .map_err(|_| anyhow!("{}: no response in {timeout:?}", self.node.id))??
            .ok_or_else(|| anyhow!("{}: stream ended", self.node.id))?;
        let ty = XdsType::from_url(&response.type_url)
            .ok_or_else(|| anyhow!("unexpected type {}", response.type_url))?;
        self.last[ty.slot()] = Some((response.version_info.clone(), response.nonce.clone()));
        self.follow(ty, &response.resources).await?;
        Ok(Received {
            ty,
            version: response.version_info,
            resources: response.resources,
            at: Instant::now(),
        })
    }

    /// ACKs a response of `ty` and sends the requests it leads Envoy to send.
    async fn follow(&mut self, ty: XdsType, resources: &[Any]) -> anyhow::Result<()> {
        match ty {
            XdsType::Cluster => {
                let names = cluster_names(resources)?;
                if !self.requested[XdsType::Endpoint.slot()] || names != self.eds_names {
                    self.eds_names = names;
                    self.request(XdsType::Endpoint).await?;
                }
                self.request(XdsType::Cluster).await?;
                if !self.requested[XdsType::Listener.slot()] {
                    self.request(XdsType::Listener).await?;
                }
            }
            XdsType::Listener => {
                self.request(XdsType::Listener).await?;
                if !self.requested[XdsType::Route.slot()] {
                    self.request(XdsType::Route).await?;
                }
            }
            XdsType::Endpoint | XdsType::Route => self.request(ty).await?,
        }
        Ok(())
    }

    /// Sends the request for `ty` with its current names, ACKing the last response of `ty`.
    async fn request(&mut self, ty: XdsType) -> anyhow::Result<()> {
        let (version, nonce) = self.last[ty.slot()].clone().unwrap_or_default();
        let resource_names = match ty {
            XdsType::Cluster | XdsType::Listener => Vec::new(),
            XdsType::Endpoint => self.eds_names.clone(),
            XdsType::Route => vec![MESH_ROUTE.to_string()],
        };
        self.requested[ty.slot()] = true;
        let request = DiscoveryRequest {
            version_info: version,
            node: Some(self.node.clone()),
            resource_names,
            type_url: ty.type_url(),
            response_nonce: nonce,
            ..Default::default()
        };
        self.tx
            .send(request)
            .await
            .map_err(|_| anyhow!("{}: stream closed", self.node.id))
    }
}

/// The names of the clusters in a CDS response.
fn cluster_names(resources: &[Any]) -> anyhow::Result<Vec<String>> {
    resources
        .iter()
        .map(|any| {
            Cluster::decode(any.value.as_slice())
                .map(|c| c.name)
                .context("decoding a Cluster")
        })
        .collect()
}

/// The endpoint addresses in the ClusterLoadAssignments of an EDS response.
pub fn endpoint_addresses(resources: &[Any]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for any in resources {
        let cla = ClusterLoadAssignment::decode(any.value.as_slice())
            .context("decoding a ClusterLoadAssignment")?;
        let sockets = cla
            .endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .filter_map(|lb| lb.host_identifier.as_ref())
            .filter_map(|host| match host {
                envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(e) => {
                    e.address.as_ref()
                }
                _ => None,
            })
            .filter_map(|a| match a.address.as_ref()? {
                envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s) => {
                    Some(s.address.clone())
                }
                _ => None,
            });
        out.extend(sockets);
    }
    Ok(out)
}

/// What a fleet is and where it connects.
#[derive(Clone, Debug)]
pub struct FleetSpec {
    /// Portolan's xDS port on 127.0.0.1.
    pub port: u16,
    pub clients: usize,
    /// ADS streams sharing one HTTP/2 connection.
    pub streams_per_channel: usize,
    /// Proxy group (`node.cluster`) of every client.
    pub group: String,
    /// Node ids are `{id_prefix}-{n}`.
    pub id_prefix: String,
    /// Node metadata `portolan.dev/scope` of every client (none: unscoped).
    pub scope: Option<String>,
    /// How long one client may wait for one response.
    pub timeout: Duration,
}

/// Many [`AdsClient`]s, each on its own task, every one synced. After the initial sync each
/// client hands every response it receives (and has ACKed) to the fleet's owner.
pub struct Fleet {
    stop: watch::Sender<bool>,
    updates: mpsc::UnboundedReceiver<(usize, anyhow::Result<Received>)>,
    /// Per client: the time from the start of [`Fleet::start`] until it was synced.
    pub sync_times: Vec<Duration>,
}

// === impl Fleet ===

impl Fleet {
    /// Connects every client at once and waits until each has received all four types.
    pub async fn start(spec: &FleetSpec) -> anyhow::Result<Self> {
        let start = Instant::now();
        let (stop, stop_rx) = watch::channel(false);
        let (synced_tx, mut synced_rx) = mpsc::unbounded_channel();
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let per_channel = spec.streams_per_channel.max(1);
        for first in (0..spec.clients).step_by(per_channel) {
            let ch = channel(spec.port, None).await?;
            for n in first..(first + per_channel).min(spec.clients) {
                let task = ClientTask {
                    n,
                    node: scoped(
                        node(&format!("{}-{n}", spec.id_prefix), &spec.group),
                        spec.scope.as_deref(),
                    ),
                    timeout: spec.timeout,
                    synced: synced_tx.clone(),
                    updates: updates_tx.clone(),
                    stop: stop_rx.clone(),
                };
                tokio::spawn(task.run(ch.clone()));
            }
        }
        drop(synced_tx);
        let mut sync_times = vec![Duration::ZERO; spec.clients];
        for done in 0..spec.clients {
            let (n, result) = synced_rx
                .recv()
                .await
                .ok_or_else(|| anyhow!("clients vanished after {done} synced"))?;
            let at: Instant = result.with_context(|| format!("client {n}, {done} synced"))?;
            sync_times[n] = at.duration_since(start);
        }
        Ok(Self {
            stop,
            updates,
            sync_times,
        })
    }

    /// The next response any client received after its initial sync, and which client.
    pub async fn next_update(&mut self, timeout: Duration) -> anyhow::Result<(usize, Received)> {
        let (n, received) = tokio::time::timeout(timeout, self.updates.recv())
            .await
            .map_err(|_| anyhow!("no update from any client in {timeout:?}"))?
            .ok_or_else(|| anyhow!("every client is gone"))?;
        Ok((n, received.with_context(|| format!("client {n}"))?))
    }

    /// Closes every stream.
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }
}

/// How long a synced client waits for its next response before it gives up.
const IDLE: Duration = Duration::from_secs(24 * 3600);

/// One client's task: connect, sync, report, then forward responses until told to stop.
struct ClientTask {
    n: usize,
    node: Node,
    timeout: Duration,
    synced: mpsc::UnboundedSender<(usize, anyhow::Result<Instant>)>,
    updates: mpsc::UnboundedSender<(usize, anyhow::Result<Received>)>,
    stop: watch::Receiver<bool>,
}

// === impl ClientTask ===

impl ClientTask {
    async fn run(mut self, channel: Channel) {
        let connected = async {
            let mut client = AdsClient::connect(channel, self.node.clone()).await?;
            client.sync(self.timeout).await?;
            anyhow::Ok(client)
        }
        .await;
        let mut client = match connected {
            Ok(client) => {
                let _ = self.synced.send((self.n, Ok(Instant::now())));
                client
            }
            Err(e) => {
                let _ = self.synced.send((self.n, Err(e)));
                return;
            }
        };
        loop {
            tokio::select! {
                _ = self.stop.wait_for(|s| *s) => return,
                received = client.next(IDLE) => {
                    let failed = received.is_err();
                    let _ = self.updates.send((self.n, received));
                    if failed {
                        return;
                    }
                }
            }
        }
    }
}
