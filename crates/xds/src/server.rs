//! The tonic services: ADS and per-type CDS/EDS/LDS/RDS, SotW and Delta, each stream run by its
//! own task ([`crate::task`]); and [`serve`], which runs them on a listener until shutdown.
//!
//! Unary `Fetch*` RPCs answer `UNIMPLEMENTED`. CSDS ([`crate::csds`]) is served on the same port.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server::{
    ClusterDiscoveryService, ClusterDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server::{
    EndpointDiscoveryService, EndpointDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_server::{
    ListenerDiscoveryService, ListenerDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::{
    RouteDiscoveryService, RouteDiscoveryServiceServer,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status, Streaming};

use crate::cache::Cache;
use crate::csds::Csds;
use crate::delta::DeltaStream;
use crate::metrics::XdsMetrics;
use crate::resource::ResourceType;
use crate::sotw::SotwStream;
use crate::stream::Scope;
use crate::task::{self, Context, Machine};

/// Largest message accepted or sent (large meshes make large CDS responses).
const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
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
}

type SotwResponses = ReceiverStream<Result<DiscoveryResponse, Status>>;
type DeltaResponses = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

// === impl XdsServer ===

impl XdsServer {
    pub fn new(cache: Arc<Cache>, metrics: XdsMetrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache,
                metrics,
                stop: watch::Sender::new(false),
            }),
        }
    }

    /// The cache the streams read.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.cache
    }

    /// A router with ADS, CDS, EDS, LDS, RDS (64 MiB messages, HTTP/2 keepalive) and CSDS.
    pub fn router(&self) -> Router {
        Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(
                AggregatedDiscoveryServiceServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(
                ClusterDiscoveryServiceServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(
                EndpointDiscoveryServiceServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(
                ListenerDiscoveryServiceServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(
                RouteDiscoveryServiceServer::new(self.clone())
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            )
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
        }
    }

    fn start<M: Machine>(
        &self,
        scope: Scope,
        requests: Streaming<M::Request>,
    ) -> ReceiverStream<Result<M::Response, Status>> {
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        tokio::spawn(task::run::<M, _>(self.context(), scope, requests, tx));
        ReceiverStream::new(rx)
    }

    fn sotw(
        &self,
        scope: Scope,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwResponses>, Status> {
        Ok(Response::new(
            self.start::<SotwStream>(scope, request.into_inner()),
        ))
    }

    fn delta(
        &self,
        scope: Scope,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        Ok(Response::new(
            self.start::<DeltaStream>(scope, request.into_inner()),
        ))
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
    let signal = async move {
        shutdown.await;
        server.stop_streams();
    };
    router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
        .await?;
    Ok(())
}

fn fetch_unimplemented() -> Status {
    Status::unimplemented("Fetch is not supported; use the streaming RPCs")
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsServer {
    type StreamAggregatedResourcesStream = SotwResponses;
    type DeltaAggregatedResourcesStream = DeltaResponses;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwResponses>, Status> {
        self.sotw(Scope::Aggregated, request)
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        self.delta(Scope::Aggregated, request)
    }
}

#[tonic::async_trait]
impl ClusterDiscoveryService for XdsServer {
    type StreamClustersStream = SotwResponses;
    type DeltaClustersStream = DeltaResponses;

    async fn stream_clusters(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwResponses>, Status> {
        self.sotw(Scope::Single(ResourceType::Cluster), request)
    }

    async fn delta_clusters(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        self.delta(Scope::Single(ResourceType::Cluster), request)
    }

    async fn fetch_clusters(
        &self,
        _request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        Err(fetch_unimplemented())
    }
}

#[tonic::async_trait]
impl EndpointDiscoveryService for XdsServer {
    type StreamEndpointsStream = SotwResponses;
    type DeltaEndpointsStream = DeltaResponses;

    async fn stream_endpoints(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwResponses>, Status> {
        self.sotw(Scope::Single(ResourceType::Endpoint), request)
    }

    async fn delta_endpoints(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        self.delta(Scope::Single(ResourceType::Endpoint), request)
    }

    async fn fetch_endpoints(
        &self,
        _request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        Err(fetch_unimplemented())
    }
}

#[tonic::async_trait]
impl ListenerDiscoveryService for XdsServer {
    type StreamListenersStream = SotwResponses;
    type DeltaListenersStream = DeltaResponses;

    async fn stream_listeners(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwResponses>, Status> {
        self.sotw(Scope::Single(ResourceType::Listener), request)
    }

    async fn delta_listeners(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        self.delta(Scope::Single(ResourceType::Listener), request)
    }

    async fn fetch_listeners(
        &self,
        _request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        Err(fetch_unimplemented())
    }
}

#[tonic::async_trait]
impl RouteDiscoveryService for XdsServer {
    type StreamRoutesStream = SotwResponses;
    type DeltaRoutesStream = DeltaResponses;

    async fn stream_routes(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwResponses>, Status> {
        self.sotw(Scope::Single(ResourceType::Route), request)
    }

    async fn delta_routes(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        self.delta(Scope::Single(ResourceType::Route), request)
    }

    async fn fetch_routes(
        &self,
        _request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        Err(fetch_unimplemented())
    }
}
