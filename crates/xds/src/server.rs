//! The xDS server: ADS and per-type CDS/EDS/LDS/RDS, SotW and Delta (the gRPC services are in
//! [`crate::grpc`]), each stream run by its own task ([`crate::task`]); and [`serve`] /
//! [`serve_tls`], which run them on a listener (plaintext or TLS, see [`crate::incoming`]) until
//! shutdown.
//!
//! Streams are admitted within [`Limits`]: a server-wide stream count (beyond it
//! `RESOURCE_EXHAUSTED "too many xDS streams (limit N)"`), HTTP/2 concurrent streams per
//! connection, the request size, and a per-stream request rate; [`Authz`] decides which groups a
//! client certificate may ask for.
//!
//! Unary `Fetch*` RPCs answer `UNIMPLEMENTED`. CSDS ([`crate::csds`]) is served on the same port.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic::{Request, Status};
use tracing::warn;

use crate::authz::Authz;
use crate::cache::Cache;
use crate::csds::Csds;
use crate::grouping::{ByCluster, NodeGrouping};
use crate::grpc::{Ads, Cds, Eds, Lds, Rds, XdsService};
use crate::incoming::{ConnInfo, incoming};
use crate::limits::{Limits, TokenBucket, jitter};
use crate::metrics::XdsMetrics;
use crate::stream::StreamTypes;
use crate::task::{self, Admission, Context, Machine, ResponseStream};
use crate::tls::TlsReloader;
use crate::token::{TokenAuth, bearer_token};

/// Largest response sent (large meshes make large CDS responses); requests are bounded by
/// [`Limits::max_request_bytes`].
pub(crate) const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// The largest HTTP/2 frame clients may send (HTTP/2's default is 16 KiB): a SotW EDS ACK names
/// every cluster (about 45 KB at 1,000 Services, 450 KB at 10,000) and arrives in one DATA
/// frame, decoded from the frame's bytes instead of being gathered from several (see
/// `request_body`). It bounds nothing more than the flow-control windows already do.
pub(crate) const MAX_FRAME_SIZE: u32 = 1024 * 1024;
/// Responses buffered per stream before the task waits for the client.
const RESPONSE_BUFFER: usize = 4;

/// Errors of the xDS server.
#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error("xDS gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The xDS gRPC services over one [`Cache`].
#[derive(Clone, Debug)]
pub struct XdsServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cache: Arc<Cache>,
    metrics: XdsMetrics,
    stop: watch::Sender<bool>,
    limits: Limits,
    authz: Authz,
    grouping: Arc<dyn NodeGrouping>,
    tokens: Option<TokenAuth>,
    streams: Arc<Semaphore>,
}

// === impl XdsServer ===

impl XdsServer {
    /// A server with the default [`Limits`] and [`Authz`].
    pub fn new(cache: Arc<Cache>, metrics: XdsMetrics) -> Self {
        Self::with_limits(cache, metrics, Limits::default(), Authz::default())
    }

    /// A server with these limits and client authorization rule.
    pub fn with_limits(
        cache: Arc<Cache>,
        metrics: XdsMetrics,
        limits: Limits,
        authz: Authz,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache,
                metrics,
                stop: watch::Sender::new(false),
                streams: Arc::new(Semaphore::new(limits.max_streams)),
                limits,
                authz,
                grouping: Arc::new(ByCluster),
                tokens: None,
            }),
        }
    }

    /// Which group each node is in (default: [`ByCluster`], its `node.cluster`). Call before
    /// serving.
    pub fn with_grouping(mut self, grouping: Arc<dyn NodeGrouping>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.grouping = grouping;
        }
        self
    }

    /// Identify clients without a client certificate by their bearer token (see
    /// [`crate::token`]): a stream without a verified token is refused. Call before serving.
    pub fn with_tokens(mut self, tokens: TokenAuth) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.tokens = Some(tokens);
        }
        self
    }

    /// The limits streams are admitted within.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The cache the streams read.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.cache
    }

    /// A router with ADS, CDS, EDS, LDS, RDS and CSDS: requests up to
    /// [`Limits::max_request_bytes`], responses up to 64 MiB, HTTP/2 keepalive pings every 30 s
    /// (a peer silent for 10 s after one is dropped), [`Limits::max_streams_per_connection`],
    /// frames from clients up to [`MAX_FRAME_SIZE`].
    pub fn router(&self) -> Router {
        let max_request = self.inner.limits.max_request_bytes;
        Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(self.inner.limits.max_streams_per_connection)
            .max_frame_size(Some(MAX_FRAME_SIZE))
            .add_service(XdsService::<Ads>::new(self.clone(), max_request))
            .add_service(XdsService::<Cds>::new(self.clone(), max_request))
            .add_service(XdsService::<Eds>::new(self.clone(), max_request))
            .add_service(XdsService::<Lds>::new(self.clone(), max_request))
            .add_service(XdsService::<Rds>::new(self.clone(), max_request))
            .add_service(
                Csds::new(self.inner.cache.clone(), self.inner.stop.subscribe())
                    .into_server()
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            )
    }

    /// Ends every open stream of this server (used by [`serve`] on shutdown, so that the graceful
    /// shutdown does not wait forever on long-lived xDS streams).
    pub fn stop_streams(&self) {
        self.inner.stop.send_replace(true);
    }

    fn context(&self) -> Context {
        Context {
            cache: self.inner.cache.clone(),
            metrics: self.inner.metrics.clone(),
            stop: self.inner.stop.subscribe(),
            authz: self.inner.authz,
            grouping: self.inner.grouping.clone(),
            tokens: self.inner.tokens.clone(),
            drain_delay: jitter(self.inner.limits.drain_spread),
        }
    }

    /// Admits a stream within the server-wide stream limit.
    fn admit<T>(&self, request: &Request<T>) -> Result<Admission, Status> {
        let limits = &self.inner.limits;
        let remote = request.extensions().get::<ConnInfo>();
        let Ok(permit) = self.inner.streams.clone().try_acquire_owned() else {
            let remote = remote.and_then(|c| c.remote);
            warn!(
                ?remote,
                limit = limits.max_streams,
                "xDS stream refused: too many streams"
            );
            return Err(Status::resource_exhausted(format!(
                "too many xDS streams (limit {})",
                limits.max_streams
            )));
        };
        Ok(Admission {
            _permit: permit,
            peer: remote.and_then(|c| c.peer.clone()),
            token: bearer_token(request.metadata()),
            bucket: TokenBucket::new(
                limits.request_rate,
                limits.request_burst,
                std::time::Instant::now(),
            ),
        })
    }

    /// Admits a stream and starts its task; returns its responses.
    pub(crate) fn start<M, S>(
        &self,
        served: StreamTypes,
        request: Request<S>,
    ) -> Result<ResponseStream<M::Response>, Status>
    where
        M: Machine,
        S: futures::Stream<Item = Result<M::Request, Status>> + Unpin + Send + 'static,
    {
        let admission = self.admit(&request)?;
        let (tx, rx) = task::response_channel(RESPONSE_BUFFER);
        tokio::spawn(task::run::<M, _>(
            self.context(),
            served,
            admission,
            request.into_inner(),
            tx,
        ));
        Ok(rx)
    }
}

/// Serves the xDS services on `listener` until `shutdown` completes, then ends the open streams
/// and drains.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: XdsServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), XdsError> {
    let router = server.router();
    serve_with(listener, server, router, shutdown).await
}

/// [`serve`] with more services on the same port: `router` is [`XdsServer::router`] with them
/// added (Portolan's admin API).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    server: XdsServer,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), XdsError> {
    serve_tls(listener, None, server, router, shutdown).await
}

/// [`serve_with`] over TLS when `tls` is set (its configuration is read per connection, so a
/// reload applies to new connections). On shutdown tonic sends GOAWAY at once (no new streams)
/// and each open stream ends after its own random delay within [`Limits::drain_spread`].
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<TlsReloader>>,
    server: XdsServer,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), XdsError> {
    let signal = async move {
        shutdown.await;
        server.stop_streams();
    };
    router
        .serve_with_incoming_shutdown(incoming(listener, tls), signal)
        .await?;
    Ok(())
}
