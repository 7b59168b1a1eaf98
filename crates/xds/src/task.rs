//! The task behind one xDS stream: reads requests, watches the group's snapshots, feeds the state
//! machine, and sends its responses.
//!
//! Responses go through a small bounded channel: awaiting a send is the backpressure, and while a
//! slow client holds the task up the group's `watch` keeps only the newest snapshot, so the client
//! gets the latest state when it catches up, never a backlog.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use tracing::{debug, info};

use crate::cache::Cache;
use crate::convergence::Member;
use crate::delta::DeltaStream;
use crate::metrics::{XdsMetrics, client_kind};
use crate::resource::ResourceType;
use crate::snapshot::Snapshot;
use crate::sotw::SotwStream;
use crate::status::{ProxyStatus, TypeStatus};
use crate::stream::{NodeInfo, Output, Scope};

/// A per-stream state machine, SotW or Delta.
pub(crate) trait Machine: Send + 'static {
    type Request: Send + 'static;
    type Response: prost::Message + Send + 'static;
    const DELTA: bool;

    fn create(scope: Scope) -> Self;
    fn on_request(&mut self, request: Self::Request) -> Output<Self::Response>;
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<Self::Response>;
    fn status(&self) -> Vec<TypeStatus>;
    fn node_of(request: &Self::Request) -> Option<&Node>;
    fn type_of(response: &Self::Response) -> Option<ResourceType>;
}

impl Machine for SotwStream {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const DELTA: bool = false;

    fn create(scope: Scope) -> Self {
        SotwStream::new(scope)
    }
    fn on_request(&mut self, request: DiscoveryRequest) -> Output<DiscoveryResponse> {
        SotwStream::on_request(self, request)
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<DiscoveryResponse> {
        SotwStream::on_snapshot(self, snapshot)
    }
    fn status(&self) -> Vec<TypeStatus> {
        SotwStream::status(self)
    }
    fn node_of(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }
    fn type_of(response: &DiscoveryResponse) -> Option<ResourceType> {
        ResourceType::from_type_url(&response.type_url)
    }
}

impl Machine for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const DELTA: bool = true;

    fn create(scope: Scope) -> Self {
        DeltaStream::new(scope)
    }
    fn on_request(&mut self, request: DeltaDiscoveryRequest) -> Output<DeltaDiscoveryResponse> {
        DeltaStream::on_request(self, request)
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<DeltaDiscoveryResponse> {
        DeltaStream::on_snapshot(self, snapshot)
    }
    fn status(&self) -> Vec<TypeStatus> {
        DeltaStream::status(self)
    }
    fn node_of(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }
    fn type_of(response: &DeltaDiscoveryResponse) -> Option<ResourceType> {
        ResourceType::from_type_url(&response.type_url)
    }
}

/// What every stream task shares.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub(crate) cache: Arc<Cache>,
    pub(crate) metrics: XdsMetrics,
    pub(crate) stop: watch::Receiver<bool>,
}

type Responses<R> = mpsc::Sender<Result<R, Status>>;

/// Counts the stream as connected while alive, and as a member of the rollouts it owes.
struct Connected {
    metrics: XdsMetrics,
    delta: bool,
    client: &'static str,
    member: Member,
}

// === impl Connected ===

impl Connected {
    fn new(metrics: &XdsMetrics, delta: bool, client: &'static str) -> Self {
        metrics.stream_opened(delta);
        metrics.proxy_connected(client);
        Self {
            metrics: metrics.clone(),
            delta,
            client,
            member: metrics.rollouts().join(),
        }
    }

    /// Reports `rollout` converged on this stream when every type sent is ACKed; true if so.
    fn settle(&mut self, rollout: u64, status: &[TypeStatus]) -> bool {
        if !status.iter().all(|t| t.sent_version == t.acked_version) {
            return false;
        }
        self.metrics.rollouts().synced(&mut self.member, rollout);
        true
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.metrics.stream_closed(self.delta);
        self.metrics.proxy_disconnected(self.client);
        self.metrics.rollouts().leave(&self.member);
    }
}

/// Runs one stream until the client leaves, the response receiver is dropped, or the server stops.
pub(crate) async fn run<M, S>(
    mut ctx: Context,
    scope: Scope,
    mut requests: S,
    tx: Responses<M::Response>,
) where
    M: Machine,
    S: Stream<Item = Result<M::Request, Status>> + Unpin + Send,
{
    let first = tokio::select! {
        first = requests.next() => first,
        _ = ctx.stop.wait_for(|stop| *stop) => return,
    };
    let first = match first {
        Some(Ok(request)) => request,
        Some(Err(status)) => {
            debug!(%status, "xDS stream failed before its first request");
            return;
        }
        None => return,
    };
    let node = NodeInfo::from_node(M::node_of(&first));
    let mut snapshots = ctx.cache.subscribe(&node.group);
    let registration = ctx.cache.register(ProxyStatus {
        node_id: node.id.clone(),
        group: node.group.clone(),
        stream: scope.stream_name().to_string(),
        delta: M::DELTA,
        client: node.client.clone(),
        connected_at: SystemTime::now(),
        types: Vec::new(),
    });
    let user_agent = M::node_of(&first).map_or("", |n| n.user_agent_name.as_str());
    let mut connected = Connected::new(&ctx.metrics, M::DELTA, client_kind(user_agent));
    info!(node = %node.id, group = %node.group, stream = scope.stream_name(), delta = M::DELTA, "xDS stream opened");

    let mut machine = M::create(scope);
    let mut out = machine.on_request(first);
    // The rollout of the last snapshot handled, until this stream has ACKed everything sent.
    let mut owed = None;
    // When the snapshot behind `out` was published (snapshot pushes only).
    let mut published = None;
    let initial = snapshots.borrow_and_update().clone();
    if let Some(snapshot) = initial {
        owed = Some(snapshot.rollout());
        let more = machine.on_snapshot(snapshot);
        out.responses.extend(more.responses);
    }
    while deliver::<M>(&mut ctx, &tx, out, published).await {
        let status = machine.status();
        if let Some(rollout) = owed
            && connected.settle(rollout, &status)
        {
            owed = None;
        }
        registration.update(status);
        published = None;
        out = tokio::select! {
            request = requests.next() => match request {
                Some(Ok(request)) => machine.on_request(request),
                Some(Err(status)) => {
                    debug!(node = %node.id, %status, "xDS stream error");
                    break;
                }
                None => break,
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let latest = snapshots.borrow_and_update().clone();
                match latest {
                    Some(snapshot) => {
                        owed = Some(snapshot.rollout());
                        published = snapshot.published_at();
                        machine.on_snapshot(snapshot)
                    }
                    None => Output::default(),
                }
            },
            _ = ctx.stop.wait_for(|stop| *stop) => break,
        };
    }
    info!(node = %node.id, group = %node.group, stream = scope.stream_name(), delta = M::DELTA, "xDS stream closed");
}

/// Counts and sends one step's output; false when the stream is gone or the server stops.
/// `published` is when the snapshot these responses push was set (none for answers to requests).
async fn deliver<M: Machine>(
    ctx: &mut Context,
    tx: &Responses<M::Response>,
    out: Output<M::Response>,
    published: Option<Instant>,
) -> bool {
    for ty in out.acks {
        ctx.metrics.acked(ty);
    }
    for ty in out.nacks {
        ctx.metrics.nacked(ty);
    }
    for response in out.responses {
        let ty = M::type_of(&response);
        if let Some(ty) = ty {
            ctx.metrics
                .pushed(ty, prost::Message::encoded_len(&response));
        }
        let sent = tokio::select! {
            sent = tx.send(Ok(response)) => sent.is_ok(),
            _ = ctx.stop.wait_for(|stop| *stop) => false,
        };
        if !sent {
            return false;
        }
        if let (Some(ty), Some(at)) = (ty, published) {
            ctx.metrics.push_latency(ty, at);
        }
    }
    true
}
