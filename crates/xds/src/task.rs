//! The task behind one xDS stream: reads requests, watches the group's snapshots, feeds the state
//! machine, and sends its responses.
//!
//! The task, not the state machine, knows the node: it reads it from the first request and logs,
//! with the node's id, what the node's metadata could not say (`NodeInfo::warnings`), each NACK
//! and ignored request the state machine reports, and, on a State-of-the-World stream, that an
//! on-demand group needs Delta ([`OnDemandCheck`]).
//!
//! Responses go through a small bounded channel: awaiting a send is the backpressure, and while a
//! slow client holds the task up the group's `watch` keeps only the newest snapshot, so the client
//! gets the latest state when it catches up, never a backlog.
//!
//! Before serving, the task verifies the client's bearer token when the server takes tokens
//! ([`crate::token`]; the stream then ends when the token expires), checks the client's
//! identity against the group it asks for ([`crate::authz`]) and that the group may be
//! created; every request takes a token from the stream's [`TokenBucket`] (a flooding client
//! gets `RESOURCE_EXHAUSTED` and the stream ends). On shutdown each stream closes after its own
//! random delay within the drain spread.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use tracing::{debug, error, info, warn};

use crate::authz::{Authz, PeerIdentity};
use crate::cache::Cache;
use crate::convergence::Member;
use crate::delta::DeltaStream;
use crate::grouping::{DEFAULT_GROUP, NodeGrouping};
use crate::limits::TokenBucket;
use crate::metrics::{XdsMetrics, client_kind};
use crate::request_body::Decode;
use crate::resource::ResourceType;
use crate::response::{DeltaResponse, Encode, SotwResponse};
use crate::snapshot::Snapshot;
use crate::sotw::SotwStream;
use crate::sotw_request::SotwRequest;
use crate::status::{ProxyStatus, StatusRows, TypeStatus};
use crate::stream::{Ignored, NodeInfo, Output, StreamTypes};
use crate::token::TokenAuth;

/// A per-stream state machine, SotW or Delta.
pub(crate) trait Machine: Send + 'static {
    type Request: Decode + Send + Sync + 'static;
    type Response: Encode + Unpin + Send + 'static;
    const DELTA: bool;

    fn create(served: StreamTypes) -> Self;
    fn on_request(&mut self, request: Self::Request) -> Output<Self::Response>;
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<Self::Response>;
    /// The stream's status rows written over `rows` (their allocations reused).
    fn write_status(&self, rows: &mut Vec<TypeStatus>);
    fn node_of(request: &Self::Request) -> Option<&Node>;
}

impl Machine for SotwStream {
    type Request = SotwRequest;
    type Response = SotwResponse;
    const DELTA: bool = false;

    fn create(served: StreamTypes) -> Self {
        SotwStream::new(served)
    }
    fn on_request(&mut self, request: SotwRequest) -> Output<SotwResponse> {
        SotwStream::on_request(self, request)
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<SotwResponse> {
        SotwStream::on_snapshot(self, snapshot)
    }
    fn write_status(&self, rows: &mut Vec<TypeStatus>) {
        StatusRows::write_status(self, rows)
    }
    fn node_of(request: &SotwRequest) -> Option<&Node> {
        request.node.as_ref()
    }
}

impl Machine for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaResponse;
    const DELTA: bool = true;

    fn create(served: StreamTypes) -> Self {
        DeltaStream::new(served)
    }
    fn on_request(&mut self, request: DeltaDiscoveryRequest) -> Output<DeltaResponse> {
        DeltaStream::on_request(self, request)
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<DeltaResponse> {
        DeltaStream::on_snapshot(self, snapshot)
    }
    fn write_status(&self, rows: &mut Vec<TypeStatus>) {
        StatusRows::write_status(self, rows)
    }
    fn node_of(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }
}

/// What every stream task shares.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub(crate) cache: Arc<Cache>,
    pub(crate) metrics: XdsMetrics,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) authz: Authz,
    /// Which group a node is in (the wiring's hook).
    pub(crate) grouping: Arc<dyn NodeGrouping>,
    /// Bearer-token identities, when the server takes them.
    pub(crate) tokens: Option<TokenAuth>,
    /// How long after the server stops this stream closes (random within the drain spread).
    pub(crate) drain_delay: Duration,
}

/// What a stream was admitted with: its slot among the server's streams, the client's
/// identity, and its request budget.
pub(crate) struct Admission {
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) peer: Option<Arc<PeerIdentity>>,
    /// The request's bearer token, if any.
    pub(crate) token: Option<String>,
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

    /// Reports `rollout` converged on this stream.
    fn settle(&mut self, rollout: u64) {
        self.metrics.rollouts().synced(&mut self.member, rollout);
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.metrics.stream_closed(self.delta);
        self.metrics.proxy_disconnected(self.client);
        self.metrics.rollouts().leave(&self.member);
    }
}

/// Logs, once per State-of-the-World stream, that its group is on-demand: VHDS needs Delta
/// ADS, and over SotW the proxy rejects the VHDS route configuration.
#[derive(Debug)]
struct OnDemandCheck {
    /// Logged already, or nothing to log (a Delta stream).
    done: bool,
}

// === impl OnDemandCheck ===

impl OnDemandCheck {
    /// A State-of-the-World stream has something to log; a Delta stream never.
    fn new(delta: bool) -> Self {
        Self { done: delta }
    }

    /// Logs when the node asked for on-demand discovery itself. True if it logged.
    fn on_node(&mut self, node: &NodeInfo) -> bool {
        let Some(reason) = node.needs_delta.as_deref().filter(|_| !self.done) else {
            return false;
        };
        self.done = true;
        error!(node = %node.id, group = %node.group, "{reason} needs Delta ADS (api_type DELTA_GRPC); over State-of-the-World the proxy rejects the VHDS route configuration");
        true
    }

    /// Logs when the group's snapshot is on-demand (VHDS virtual hosts) though the node did not
    /// ask for it: a `ProxyScope` made it so. True if it logged.
    fn on_snapshot(&mut self, node: &NodeInfo, snapshot: &Snapshot) -> bool {
        if self.done || snapshot.resources(ResourceType::VirtualHost).is_empty() {
            return false;
        }
        self.done = true;
        error!(node = %node.id, group = %node.group, "this group is on-demand (a ProxyScope's discovery: on-demand), which needs Delta ADS (api_type DELTA_GRPC); over State-of-the-World the proxy rejects the VHDS route configuration");
        true
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
    let verified = match authenticate::<M>(&ctx, &mut admission, &first).await {
        Ok(verified) => verified,
        Err(status) => {
            let node = NodeInfo::from_node(M::node_of(&first), None, ctx.grouping.as_ref());
            return refuse(&tx, &node, status).await;
        }
    };
    let node = NodeInfo::from_node(
        M::node_of(&first),
        admission.peer.as_deref(),
        ctx.grouping.as_ref(),
    );
    for warning in &node.warnings {
        warn!(node = %node.id, group = %node.group, "{warning}");
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
    let mut on_demand = OnDemandCheck::new(M::DELTA);
    on_demand.on_node(&node);

    let mut machine = M::create(served);
    let mut out = machine.on_request(first);
    // The rollout of the last snapshot handled, until this stream has ACKed everything sent.
    let mut owed = None;
    // When the snapshot behind `out` was published (snapshot pushes only).
    let mut published = None;
    let initial = snapshots.borrow_and_update().clone();
    if let Some(snapshot) = initial {
        owed = Some(snapshot.rollout());
        on_demand.on_snapshot(&node, &snapshot);
        let more = machine.on_snapshot(snapshot);
        out.responses.extend(more.responses);
    }
    let token_expiry = verified.as_ref().and_then(|v| v.expires_at);
    let tokens = ctx.tokens.clone();
    let revoked = async {
        match (&tokens, &verified) {
            (Some(tokens), Some(v)) => tokens.revoked(&v.token).await,
            _ => std::future::pending().await,
        }
    };
    tokio::pin!(revoked);
    let mut sending = out.responses.len() as u64;
    while deliver::<M>(&mut ctx, &tx, &node, out, published).await {
        // The stream's status rows, rewritten in place in the table.
        let all_acked = registration.update(sending, |rows| {
            machine.write_status(rows);
            rows.iter().all(|t| t.sent_version == t.acked_version)
        });
        if let Some(rollout) = owed
            && all_acked
        {
            connected.settle(rollout);
            owed = None;
        }
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
                        on_demand.on_snapshot(&node, &snapshot);
                        machine.on_snapshot(snapshot)
                    }
                    None => Output::default(),
                }
            },
            _ = until(token_expiry) => {
                info!(node = %node.id, group = %node.group, "the stream's service account token expired; closing it (the proxy reconnects with its current token)");
                let status = Status::unauthenticated(
                    "expired: the service account token this stream was opened with has expired; reconnect with a fresh one",
                );
                let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Box::new(Err(status)))).await;
                break;
            }
            refusal = &mut revoked => {
                warn!(node = %node.id, group = %node.group, reason = refusal.reason.label(), message = %refusal.message, "the stream's service account token is no longer valid; closing it");
                ctx.metrics.auth_refused(refusal.reason.label());
                let status = refusal.status();
                let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Box::new(Err(status)))).await;
                break;
            }
            _ = ctx.draining() => break,
        };
        sending = out.responses.len() as u64;
    }
    info!(node = %node.id, group = %node.group, stream = served.stream_name(), delta = M::DELTA, "xDS stream closed");
}

/// The token a stream was opened with, once verified.
struct Verified {
    token: String,
    expires_at: Option<SystemTime>,
}

/// With token identities, a client without a certificate identity proves one with its bearer
/// token; the verified identity becomes the stream's peer, and the token (to verify again)
/// with its expiry is returned. Refusals are counted.
async fn authenticate<M: Machine>(
    ctx: &Context,
    admission: &mut Admission,
    first: &M::Request,
) -> Result<Option<Verified>, Status> {
    let Some(tokens) = &ctx.tokens else {
        return Ok(None);
    };
    if admission.peer.is_some() {
        return Ok(None);
    }
    let verified = tokens
        .authenticate(
            admission.token.as_deref(),
            M::node_of(first),
            ctx.grouping.as_ref(),
        )
        .await;
    match verified {
        Ok(id) => {
            admission.peer = Some(Arc::new(id.peer));
            Ok(admission.token.take().map(|token| Verified {
                token,
                expires_at: id.expires_at,
            }))
        }
        Err(refusal) => {
            ctx.metrics.auth_refused(refusal.reason.label());
            Err(refusal.status())
        }
    }
}

/// Completes at `at` (never without it).
async fn until(at: Option<SystemTime>) {
    match at {
        Some(at) => {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
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

/// Counts and sends one step's output, and logs its NACKs; false when the stream is gone or the
/// server stops. `published` is when the snapshot these responses push was set (none for
/// answers to requests).
async fn deliver<M: Machine>(
    ctx: &mut Context,
    tx: &Responses<M::Response>,
    node: &NodeInfo,
    out: Output<M::Response>,
    published: Option<Instant>,
) -> bool {
    for ty in out.acks {
        ctx.metrics.acked(ty);
    }
    for (ty, nack) in out.nacks {
        warn!(node = %node.id, kind = %ty, version = %nack.version, message = %nack.message, "xDS NACK");
        ctx.metrics.nacked(ty);
    }
    match out.ignored {
        Some(Ignored::Type(type_url)) => {
            debug!(node = %node.id, %type_url, "ignoring request for a type this stream does not serve");
        }
        Some(Ignored::Nonce { ty, nonce }) => {
            debug!(node = %node.id, kind = %ty, %nonce, "ignoring an answer to a nonce that is not the last sent");
        }
        None => {}
    }
    for response in out.responses {
        let ty = response.ty();
        ctx.metrics.pushed(ty, response.encoded_len());
        let sent = tokio::select! {
            sent = tx.send(Box::new(Ok(response))) => sent.is_ok(),
            _ = ctx.draining() => false,
        };
        if !sent {
            return false;
        }
        if let Some(at) = published {
            ctx.metrics.push_latency(ty, at);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_token_expiry_ends_the_wait_and_none_never_does() {
        let at = SystemTime::now() + Duration::from_secs(600);
        tokio::time::timeout(Duration::from_secs(601), until(Some(at)))
            .await
            .expect("the expiry came");
        let past = SystemTime::now() - Duration::from_secs(1);
        tokio::time::timeout(Duration::from_millis(1), until(Some(past)))
            .await
            .expect("an expiry in the past is now");
        let never = tokio::time::timeout(Duration::from_secs(3600), until(None)).await;
        assert!(never.is_err());
    }
    use crate::testing::snapshot_of;

    fn node(needs_delta: bool) -> NodeInfo {
        NodeInfo {
            id: "sidecar-1".into(),
            group: "web".into(),
            needs_delta: needs_delta.then(|| "on-demand discovery".to_string()),
            ..NodeInfo::default()
        }
    }

    fn on_demand_snapshot() -> Snapshot {
        use envoy_types::pb::envoy::config::route::v3::VirtualHost;
        let mut builder = Snapshot::builder();
        builder.add_virtual_host(&VirtualHost {
            name: "mesh-outbound/a".into(),
            ..Default::default()
        });
        builder.build().expect("consistent")
    }

    #[test]
    fn a_sotw_node_asking_for_on_demand_is_told_once() {
        let node = node(true);
        let mut check = OnDemandCheck::new(false);
        assert!(check.on_node(&node));
        assert!(!check.on_snapshot(&node, &on_demand_snapshot()));
    }

    #[test]
    fn a_sotw_stream_of_an_on_demand_group_is_told_once() {
        let node = node(false);
        let mut check = OnDemandCheck::new(false);
        assert!(!check.on_node(&node));
        assert!(!check.on_snapshot(&node, &snapshot_of(&["a"], &[])));
        assert!(check.on_snapshot(&node, &on_demand_snapshot()));
        assert!(!check.on_snapshot(&node, &on_demand_snapshot()));
    }

    #[test]
    fn delta_streams_need_no_warning() {
        let node = node(true);
        let mut check = OnDemandCheck::new(true);
        assert!(!check.on_node(&node));
        assert!(!check.on_snapshot(&node, &on_demand_snapshot()));
    }
}
