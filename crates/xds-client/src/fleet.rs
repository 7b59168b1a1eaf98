//! Thousands of Envoy-like SotW clients against one xDS server on loopback, a hundred or so
//! ADS streams sharing each HTTP/2 connection (Envoys would each have their own; sharing keeps
//! the socket count small), each on its own task: for load tests and benchmarks that need many
//! real gRPC proxies without starting Envoys.

use crate::{ClientError, Follow, SotwClient, SotwSubscriber, channel, node};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::protobuf::Any;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// What a fleet is and where it connects.
#[derive(Clone, Debug)]
pub struct FleetSpec {
    /// The server's xDS port on 127.0.0.1.
    pub port: u16,
    pub clients: usize,
    /// ADS streams sharing one HTTP/2 connection.
    pub streams_per_channel: usize,
    /// Proxy group (`node.cluster`) of every client.
    pub group: String,
    /// Node ids are `{id_prefix}-{n}`.
    pub id_prefix: String,
    /// String node metadata of every client.
    pub metadata: Vec<(String, String)>,
    /// The route configurations every client asks RDS for.
    pub routes: Vec<String>,
    /// How long one client may wait for one response while it syncs.
    pub timeout: Duration,
}

/// One response as a client received (and ACKed) it.
#[derive(Clone, Debug)]
pub struct Received {
    pub type_url: String,
    pub version: String,
    pub resources: Vec<Any>,
    /// When the client had sent its ACK.
    pub at: Instant,
}

/// Connected clients, every one synced. After its initial sync each client hands every
/// response it receives (and has ACKed) to the fleet's owner.
pub struct Fleet {
    stop: watch::Sender<bool>,
    updates: mpsc::UnboundedReceiver<(usize, Result<Received, ClientError>)>,
    /// Per client: the time from the start of [`Fleet::start`] until it was synced.
    pub sync_times: Vec<Duration>,
}

/// How long a synced client waits for its next response before it gives up (never, in
/// practice).
const IDLE: Duration = Duration::from_secs(24 * 3600);

// === impl FleetSpec ===

impl FleetSpec {
    /// The subscriber of client `n`.
    fn subscriber(&self, n: usize) -> SotwSubscriber {
        let mut node = node::envoy(&format!("{}-{n}", self.id_prefix), &self.group);
        for (key, value) in &self.metadata {
            node = node::with_metadata(node, key, value);
        }
        let routes = self.routes.clone();
        SotwSubscriber::new(node, Follow::Envoy { routes })
    }
}

// === impl Fleet ===

impl Fleet {
    /// Connects every client at once and waits until each has received every type once.
    pub async fn start(spec: &FleetSpec) -> Result<Self, FleetError> {
        let start = Instant::now();
        let (stop, stop_rx) = watch::channel(false);
        let (synced_tx, mut synced_rx) = mpsc::unbounded_channel();
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let per_channel = spec.streams_per_channel.max(1);
        for first in (0..spec.clients).step_by(per_channel) {
            let shared = channel(([127, 0, 0, 1], spec.port), None).await?;
            for n in first..(first + per_channel).min(spec.clients) {
                let task = ClientTask {
                    n,
                    subscriber: spec.subscriber(n),
                    timeout: spec.timeout,
                    synced: synced_tx.clone(),
                    updates: updates_tx.clone(),
                    stop: stop_rx.clone(),
                };
                tokio::spawn(task.run(shared.clone()));
            }
        }
        drop(synced_tx);
        let mut sync_times = vec![Duration::ZERO; spec.clients];
        for synced in 0..spec.clients {
            let (n, result) = synced_rx
                .recv()
                .await
                .ok_or(FleetError::Vanished { synced })?;
            let at = result.map_err(|source| FleetError::Client { n, synced, source })?;
            sync_times[n] = at.duration_since(start);
        }
        Ok(Self {
            stop,
            updates,
            sync_times,
        })
    }

    /// The next response any client received after its initial sync, and which client.
    pub async fn next_update(
        &mut self,
        timeout: Duration,
    ) -> Result<(usize, Received), FleetError> {
        let (n, received) = tokio::time::timeout(timeout, self.updates.recv())
            .await
            .map_err(|_| FleetError::NoUpdate(timeout))?
            .ok_or(FleetError::AllGone)?;
        let received = received.map_err(|source| FleetError::Client {
            n,
            synced: self.sync_times.len(),
            source,
        })?;
        Ok((n, received))
    }

    /// Closes every stream.
    pub fn stop(self) {
        let _ = self.stop.send(true);
    }
}

/// Why a fleet failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Connect(#[from] ClientError),
    #[error("client {n} failed ({synced} synced): {source}")]
    Client {
        n: usize,
        synced: usize,
        #[source]
        source: ClientError,
    },
    #[error("clients vanished after {synced} synced")]
    Vanished { synced: usize },
    #[error("no update from any client in {0:?}")]
    NoUpdate(Duration),
    #[error("every client is gone")]
    AllGone,
}

/// One client's task: connect, sync, report, then forward responses until told to stop.
struct ClientTask {
    n: usize,
    subscriber: SotwSubscriber,
    timeout: Duration,
    synced: mpsc::UnboundedSender<(usize, Result<Instant, ClientError>)>,
    updates: mpsc::UnboundedSender<(usize, Result<Received, ClientError>)>,
    stop: watch::Receiver<bool>,
}

// === impl ClientTask ===

impl ClientTask {
    async fn run(mut self, channel: Channel) {
        let connected = async {
            let mut client = SotwClient::connect(channel, self.subscriber).await?;
            client.sync(self.timeout).await?;
            Ok(client)
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
                next = client.next(IDLE) => {
                    let failed = next.is_err();
                    let _ = self.updates.send((self.n, next.map(received)));
                    if failed {
                        return;
                    }
                }
            }
        }
    }
}

/// What the owner gets of an ACKed response.
fn received(response: DiscoveryResponse) -> Received {
    Received {
        type_url: response.type_url,
        version: response.version_info,
        resources: response.resources,
        at: Instant::now(),
    }
}
