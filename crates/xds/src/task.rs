//! The task behind one xDS stream: reads requests, watches the group's snapshots, feeds the state
//! machine, and sends its responses.
//!
//! Responses go through a small bounded channel: awaiting a send is the backpressure, and while a
//! slow client holds the task up the group's `watch` keeps only the newest snapshot, so the client
//! gets the latest state when it catches up, never a backlog.
//!
//! Before serving, the task checks the client's identity against the group it asks for
//! ([`crate::authz`]) and that the group may be created; every request takes a token from the
//! stream's [`TokenBucket`] (a flooding client gets `RESOURCE_EXHAUSTED` and the stream ends). On
//! shutdown each stream closes after its own random delay within the drain spread.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use tracing::{debug, info, warn};

use crate::authz::{Authz, PeerIdentity};
use crate::cache::Cache;
use crate::convergence::Member;
use crate::delta::DeltaStream;
use crate::group::DEFAULT_GROUP;
use crate::identity::IdentityMode;
use crate::limits::TokenBucket;
use crate::metrics::{XdsMetrics, client_kind};
use crate::resource::ResourceType;
use crate::snapshot::Snapshot;
use crate::sotw::SotwStream;
use crate::status::{ProxyStatus, TypeStatus};
use crate::stream::{NodeInfo, Output, StreamTypes};

/// A per-stream state machine, SotW or Delta.
pub(crate) trait Machine: Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Send + 'static;
    const DELTA: bool;

    fn create(served: StreamTypes) -> Self;
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

    fn create(served: StreamTypes) -> Self {
        SotwStream::new(served)
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

    fn create(served: StreamTypes) -> Self {
        DeltaStream::new(served)
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
    pub(crate) authz: Authz,
    /// Where workload identities come from (they refine the group key).
    pub(crate) identity: Arc<IdentityMode>,
    /// How long after the server stops this stream closes (random within the drain spread).
    pub(crate) drain_delay: Duration,
}

/// What a stream was admitted with: its slot among the server's streams, the client's
/// identity, and its request budget.
pub(crate) struct Admission {
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) peer: Option<Arc<PeerIdentity>>,
    pub(crate) bucket: TokenBucket,
}

// === impl Context ===

impl Context {
    /// Completes when the server stops, plus this stream's drain delay.
    async fn draining(&mut self) {
        let _ = self.stop.wait_for(|stop| *stop).await;
        tokio::time::sleep(self.drain_delay).await;
    }
}

/// A response (or the status ending the stream) in the channel, boxed so that the channel's
/// preallocated slots stay pointer-sized.
type Sent<R> = Box<Result<R, Status>>;

type Responses<R> = mpsc::Sender<Sent<R>>;

/// The receiving half of a stream's response channel, as tonic reads it.
#[derive(Debug)]
pub(crate) struct ResponseStream<R>(mpsc::Receiver<Sent<R>>);

/// A response channel: `capacity` responses buffered before the task waits for the client.
pub(crate) fn response_channel<R>(capacity: usize) -> (Responses<R>, ResponseStream<R>) {
    let (tx, rx) = mpsc::channel(capacity);
    (tx, ResponseStream(rx))
}

impl<R> Stream for ResponseStream<R> {
    type Item = Result<R, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|sent| sent.map(|boxed| *boxed))
    }
}

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
    served: StreamTypes,
    mut admission: Admission,
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
    let mut node = NodeInfo::from_node(M::node_of(&first));
    for warning in &node.warnings {
        warn!(node = %node.id, group = %node.group, "{warning}");
    }
    if let Some(n) = M::node_of(&first) {
        node.group = ctx
            .identity
            .refine_group(&node.group, admission.peer.as_deref(), n);
    }
    let cluster = M::node_of(&first)
        .map(|n| n.cluster.as_str())
        .filter(|c| !c.is_empty())
        .unwrap_or(DEFAULT_GROUP);
    let admitted = ctx
        .authz
        .check(admission.peer.as_deref(), cluster)
        .and_then(|()| over_rate(&mut admission.bucket))
        .and_then(|()| {
            ctx.cache
                .try_subscribe(&node.group)
                .map_err(|e| Status::resource_exhausted(e.to_string()))
        });
    let mut snapshots = match admitted {
        Ok(snapshots) => snapshots,
        Err(status) => return refuse(&tx, &node, status).await,
    };
    let registration = ctx.cache.register(ProxyStatus {
        node_id: node.id.clone(),
        group: node.group.clone(),
        stream: served.stream_name().to_string(),
        delta: M::DELTA,
        client: node.client.clone(),
        connected_at: SystemTime::now(),
        types: Vec::new(),
        responses_sent: 0,
        warnings: node.warnings.clone(),
    });
    let user_agent = M::node_of(&first).map_or("", |n| n.user_agent_name.as_str());
    let mut connected = Connected::new(&ctx.metrics, M::DELTA, client_kind(user_agent));
    info!(node = %node.id, group = %node.group, stream = served.stream_name(), delta = M::DELTA, "xDS stream opened");

    let mut machine = M::create(served);
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
    let mut sending = out.responses.len() as u64;
    while deliver::<M>(&mut ctx, &tx, out, published).await {
        registration.add_responses(sending);
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
                Some(Ok(request)) => match over_rate(&mut admission.bucket) {
                    Ok(()) => machine.on_request(request),
                    Err(status) => return refuse(&tx, &node, status).await,
                },
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
            _ = ctx.draining() => break,
        };
        sending = out.responses.len() as u64;
    }
    info!(node = %node.id, group = %node.group, stream = served.stream_name(), delta = M::DELTA, "xDS stream closed");
}

/// Takes a token for one request; `RESOURCE_EXHAUSTED` when the stream is over its rate.
fn over_rate(bucket: &mut TokenBucket) -> Result<(), Status> {
    if bucket.try_take(Instant::now()) {
        return Ok(());
    }
    Err(Status::resource_exhausted(
        "xDS request rate limit exceeded; closing the stream",
    ))
}

/// Ends the stream with `status` (sent if the client reads it within a second) and logs why.
async fn refuse<R>(tx: &Responses<R>, node: &NodeInfo, status: Status) {
    warn!(node = %node.id, group = %node.group, code = ?status.code(), reason = status.message(), "xDS stream refused");
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Box::new(Err(status)))).await;
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
            sent = tx.send(Box::new(Ok(response))) => sent.is_ok(),
            _ = ctx.draining() => false,
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
