//! Envoy-like clients on a real Delta ADS stream (gRPC to a running `portolan serve`), in the
//! three discovery modes: full push, scoped (`portolan.dev/scope`) and on-demand
//! (`portolan.dev/discovery: on-demand`: VHDS and on-demand CDS).
//!
//! A client subscribes like Envoy on Delta ADS: wildcard CDS; EDS for every cluster it
//! receives; wildcard LDS after the first CDS response; the mesh route configuration after
//! the first LDS response. An on-demand client then uses hosts: it subscribes the virtual host
//! `mesh-outbound/HOST` (VHDS), then the cluster its first route names (on-demand CDS), whose
//! arrival subscribes its endpoints. Every response is ACKed at once; the client counts the
//! encoded bytes of what it received. Fleets of them share HTTP/2 connections.

use anyhow::{Context, anyhow, bail};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::route::v3::{
    VirtualHost, route::Action, route_action::ClusterSpecifier,
};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse;
use portolan_pipeline::grouping::{DISCOVERY_METADATA, SCOPE_METADATA};
use portolan_translate::names::MESH_ROUTE;
use portolan_xds_client::{DeltaClient, DeltaSubscriber, Received as Update, channel, type_url};
use prost::Message;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// The discovery mode a client asks for in its node metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    /// `portolan.dev/scope` with this value.
    Scoped(String),
    OnDemand,
}

/// What one client received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Responses and their encoded bytes during the initial sync.
    pub initial_responses: usize,
    pub initial_bytes: usize,
    /// Hosts used (on-demand) and what their lookups carried.
    pub hosts_used: usize,
    pub used_bytes: usize,
    /// Clusters the client holds at the end.
    pub clusters: usize,
}

/// An Envoy-like Delta client that counts the responses it reads and their encoded bytes.
pub struct CountingClient {
    client: DeltaClient,
    timeout: Duration,
    bytes: usize,
    responses: usize,
}

/// An Envoy node `id` in group `group` asking for `mode`.
pub fn node(id: &str, group: &str, mode: &Mode) -> Node {
    use portolan_xds_client::node::{envoy, with_metadata};
    match mode {
        Mode::Full => envoy(id, group),
        Mode::Scoped(scope) => with_metadata(envoy(id, group), SCOPE_METADATA, scope),
        Mode::OnDemand => with_metadata(envoy(id, group), DISCOVERY_METADATA, "on-demand"),
    }
}

// === impl CountingClient ===

impl CountingClient {
    /// Opens a Delta ADS stream on `channel` and subscribes like Envoy.
    pub async fn connect(channel: Channel, node: Node, timeout: Duration) -> anyhow::Result<Self> {
        let subscriber = DeltaSubscriber::new(node, vec![MESH_ROUTE.to_string()]);
        Ok(Self {
            client: DeltaClient::connect(channel, subscriber).await?,
            timeout,
            bytes: 0,
            responses: 0,
        })
    }

    /// Reads until clusters, listeners, the route configuration and every subscribed
    /// endpoint assignment have arrived; returns the responses and bytes so far.
    pub async fn sync(&mut self) -> anyhow::Result<(usize, usize)> {
        while !self.client.subscriber().synced() {
            self.next().await?;
        }
        Ok((self.responses, self.bytes))
    }

    /// A first request for `host` (on-demand): its virtual host over VHDS, then its cluster
    /// by name and the cluster's endpoints. Returns the bytes this took.
    pub async fn use_host(&mut self, host: &str) -> anyhow::Result<usize> {
        let start = self.bytes;
        let name = format!("{MESH_ROUTE}/{host}");
        self.client
            .subscribe(type_url::VIRTUAL_HOST, vec![name.clone()])
            .await?;
        let cluster = loop {
            let response = self.next().await?;
            if response.type_url != type_url::VIRTUAL_HOST {
                continue;
            }
            let Some(resource) = response.resources.iter().find(|r| r.name == name) else {
                continue;
            };
            let any = resource
                .resource
                .as_ref()
                .ok_or_else(|| anyhow!("{}: no virtual host for {host}", self.id()))?;
            break route_cluster(&VirtualHost::decode(any.value.as_slice())?)
                .ok_or_else(|| anyhow!("virtual host {name} routes to no single cluster"))?;
        };
        if !self.holds(&cluster) {
            self.client
                .subscribe(type_url::CLUSTER, vec![cluster.clone()])
                .await?;
            while !self.holds(&cluster) {
                self.next().await?;
            }
        }
        while self.client.subscriber().awaits_endpoints() {
            self.next().await?;
        }
        Ok(self.bytes - start)
    }

    pub fn clusters(&self) -> usize {
        self.client.subscriber().clusters().len()
    }

    fn holds(&self, cluster: &str) -> bool {
        self.client.subscriber().clusters().contains(cluster)
    }

    fn id(&self) -> &str {
        &self.client.subscriber().node().id
    }

    /// Reads one response (the client ACKs it and subscribes what it leads Envoy to), counts it.
    async fn next(&mut self) -> anyhow::Result<DeltaDiscoveryResponse> {
        let response = self
            .client
            .next(self.timeout)
            .await
            .with_context(|| self.id().to_string())?;
        self.responses += 1;
        self.bytes += response.encoded_len();
        Ok(response)
    }
}

/// The cluster the first route of a virtual host sends to.
pub fn route_cluster(vhost: &VirtualHost) -> Option<String> {
    match &vhost.routes.first()?.action {
        Some(Action::Route(action)) => match &action.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => Some(c.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A fleet of clients of one mode against one Portolan.
#[derive(Clone, Debug)]
pub struct DeltaFleetSpec {
    /// Portolan's xDS port on 127.0.0.1.
    pub port: u16,
    pub clients: usize,
    pub streams_per_channel: usize,
    pub group: String,
    pub id_prefix: String,
    pub mode: Mode,
    /// Per client: the hosts it uses after its sync (on-demand clients).
    pub hosts: Vec<Vec<String>>,
    pub timeout: Duration,
}

/// Connected, synced clients (held open until [`DeltaFleet::stop`]) and what each received.
/// After its sync each client hands every response it receives (and has ACKed) to the fleet's
/// owner ([`DeltaFleet::next_update`]).
pub struct DeltaFleet {
    stop: watch::Sender<bool>,
    pub received: Vec<Received>,
    updates: mpsc::UnboundedReceiver<(usize, Update)>,
}

// === impl DeltaFleet ===

impl DeltaFleet {
    /// Connects every client at once; each syncs, uses its hosts, reports and stays connected.
    pub async fn start(spec: &DeltaFleetSpec) -> anyhow::Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let per_channel = spec.streams_per_channel.max(1);
        for first in (0..spec.clients).step_by(per_channel) {
            let channel = channel(([127, 0, 0, 1], spec.port), None).await?;
            for n in first..(first + per_channel).min(spec.clients) {
                let id = format!("{}-{n}", spec.id_prefix);
                let task = ClientTask {
                    n,
                    node: node(&id, &spec.group, &spec.mode),
                    hosts: spec.hosts.get(n).cloned().unwrap_or_default(),
                    timeout: spec.timeout,
                    done: done_tx.clone(),
                    updates: updates_tx.clone(),
                    stop: stop_rx.clone(),
                };
                tokio::spawn(task.run(channel.clone()));
            }
        }
        drop(done_tx);
        let mut received = vec![Received::default(); spec.clients];
        for finished in 0..spec.clients {
            let (n, result) = done_rx
                .recv()
                .await
                .ok_or_else(|| anyhow!("clients vanished after {finished} finished"))?;
            received[n] = result.with_context(|| format!("client {n}"))?;
        }
        Ok(Self {
            stop,
            received,
            updates,
        })
    }

    /// The next response any client received (and ACKed) after its sync, and which client;
    /// resources as `Any`s (those removed are not listed).
    pub async fn next_update(&mut self, timeout: Duration) -> anyhow::Result<(usize, Update)> {
        tokio::time::timeout(timeout, self.updates.recv())
            .await
            .map_err(|_| anyhow!("no update from any client in {timeout:?}"))?
            .ok_or_else(|| anyhow!("every client is gone"))
    }

    /// Mean of `f` over the clients.
    pub fn mean(&self, f: impl Fn(&Received) -> usize) -> f64 {
        let sum: usize = self.received.iter().map(f).sum();
        sum as f64 / self.received.len().max(1) as f64
    }

    /// Closes every stream.
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }
}

/// How long a synced client waits for a push before it gives up (never, in practice).
const IDLE: Duration = Duration::from_secs(24 * 3600);

/// One client's task: connect, sync, use hosts, report, then hold the stream until stopped.
struct ClientTask {
    n: usize,
    node: Node,
    hosts: Vec<String>,
    timeout: Duration,
    done: mpsc::UnboundedSender<(usize, anyhow::Result<Received>)>,
    updates: mpsc::UnboundedSender<(usize, Update)>,
    stop: watch::Receiver<bool>,
}

// === impl ClientTask ===

impl ClientTask {
    async fn run(mut self, channel: Channel) {
        let result = async {
            let mut client =
                CountingClient::connect(channel, self.node.clone(), self.timeout).await?;
            let (initial_responses, initial_bytes) = client.sync().await?;
            let mut used_bytes = 0;
            for host in &self.hosts {
                used_bytes += client.use_host(host).await?;
            }
            let received = Received {
                initial_responses,
                initial_bytes,
                hosts_used: self.hosts.len(),
                used_bytes,
                clusters: client.clusters(),
            };
            anyhow::Ok((client, received))
        }
        .await;
        let mut client = match result {
            Ok((client, received)) => {
                let _ = self.done.send((self.n, Ok(received)));
                client
            }
            Err(e) => {
                let _ = self.done.send((self.n, Err(e)));
                return;
            }
        };
        // Held open (ACKing any push) until stopped: the stream's state stays in Portolan.
        client.timeout = IDLE;
        loop {
            tokio::select! {
                _ = self.stop.wait_for(|s| *s) => return,
                next = client.next() => match next {
                    Ok(response) => {
                        let _ = self.updates.send((self.n, update(response)));
                    }
                    Err(_) => return,
                },
            }
        }
    }
}

/// What the owner gets of an ACKed response.
fn update(response: DeltaDiscoveryResponse) -> Update {
    Update {
        type_url: response.type_url,
        version: response.system_version_info,
        resources: response
            .resources
            .into_iter()
            .filter_map(|r| r.resource)
            .collect(),
        at: Instant::now(),
    }
}

/// Fails unless every client of an on-demand fleet holds exactly the clusters it used.
pub fn check_on_demand(fleet: &DeltaFleet) -> anyhow::Result<()> {
    for (n, r) in fleet.received.iter().enumerate() {
        if r.clusters > r.hosts_used {
            bail!(
                "on-demand client {n} holds {} clusters after using {} hosts",
                r.clusters,
                r.hosts_used
            );
        }
    }
    Ok(())
}
