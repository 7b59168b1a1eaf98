//! One xDS stream over real gRPC: requests go in through a channel, responses come out with a
//! deadline. Raw: it sends what it is given; [`crate::SotwClient`] and [`crate::DeltaClient`]
//! put a subscriber on it.

use crate::ClientError;
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_client::EndpointDiscoveryServiceClient;
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_client::ListenerDiscoveryServiceClient;
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_client::RouteDiscoveryServiceClient;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// Requests queued ahead of the stream: enough that a burst (a test flooding the server)
/// never waits on the transport, which stops reading once the server ends the call. Tokio
/// allocates queue slots as they are used.
const QUEUE: usize = 1024;

/// One stream: `Req` in, `Resp` out.
pub struct AdsStream<Req, Resp> {
    tx: mpsc::Sender<Req>,
    rx: Streaming<Resp>,
}

/// A State-of-the-World stream (ADS or one per-type service).
pub type SotwStream = AdsStream<DiscoveryRequest, DiscoveryResponse>;

/// A Delta ADS stream.
pub type DeltaStream = AdsStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

/// A plaintext HTTP/2 channel to an xDS server; `window` sets small HTTP/2 flow-control
/// windows (a client that reads slowly).
pub async fn channel(
    addr: impl Into<SocketAddr>,
    window: Option<u32>,
) -> Result<Channel, ClientError> {
    let address = format!("http://{}", addr.into());
    let connect = |source| ClientError::Connect {
        address: address.clone(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(address.clone()).map_err(connect)?;
    if let Some(window) = window {
        endpoint = endpoint
            .initial_stream_window_size(window)
            .initial_connection_window_size(window);
    }
    endpoint.connect().await.map_err(connect)
}

/// The request channel of a new stream.
fn queue<Req>() -> (mpsc::Sender<Req>, ReceiverStream<Req>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (tx, ReceiverStream::new(rx))
}

// === impl AdsStream ===

impl<Req, Resp> AdsStream<Req, Resp> {
    /// The stream once the call is open, `first` sent on it. (Sent after the server answered
    /// the call, as Envoy does: queued before, the first request reached Portolan with the
    /// call's headers, and Portolan's memory per client in the fan-out benchmark read one
    /// allocator step (about 2 KiB) higher, median of 30 and 44 runs.)
    async fn opened(
        tx: mpsc::Sender<Req>,
        rx: Streaming<Resp>,
        first: Req,
    ) -> Result<Self, ClientError> {
        let stream = Self { tx, rx };
        stream.send(first).await?;
        Ok(stream)
    }

    /// Queues `request` on the stream.
    pub async fn send(&self, request: Req) -> Result<(), ClientError> {
        self.tx.send(request).await.map_err(|_| ClientError::Closed)
    }

    /// The next response, or why none came within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Resp, ClientError> {
        match tokio::time::timeout(timeout, self.rx.message()).await {
            Err(_) => Err(ClientError::Timeout(timeout)),
            Ok(Err(status)) => Err(ClientError::Status(status)),
            Ok(Ok(None)) => Err(ClientError::Ended),
            Ok(Ok(Some(response))) => Ok(response),
        }
    }
}

impl SotwStream {
    /// Opens a SotW stream on the aggregated service (ADS), `first` its first request.
    pub async fn ads(channel: Channel, first: DiscoveryRequest) -> Result<Self, ClientError> {
        let (tx, requests) = queue();
        let rx = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .stream_aggregated_resources(requests)
            .await?
            .into_inner();
        Self::opened(tx, rx, first).await
    }

    /// Opens a stream on the per-type service (CDS, EDS, LDS or RDS) of `type_url`, `first` its
    /// first request (of any type: a test may send the service a type it does not serve).
    pub async fn per_type(
        channel: Channel,
        type_url: &str,
        first: DiscoveryRequest,
    ) -> Result<Self, ClientError> {
        let (tx, requests) = queue();
        let response = match type_url {
            CLUSTER => {
                let mut client = ClusterDiscoveryServiceClient::new(channel);
                client.stream_clusters(requests).await?
            }
            ENDPOINT => {
                let mut client = EndpointDiscoveryServiceClient::new(channel);
                client.stream_endpoints(requests).await?
            }
            LISTENER => {
                let mut client = ListenerDiscoveryServiceClient::new(channel);
                client.stream_listeners(requests).await?
            }
            ROUTE => {
                let mut client = RouteDiscoveryServiceClient::new(channel);
                client.stream_routes(requests).await?
            }
            other => return Err(ClientError::NoService(other.to_string())),
        };
        Self::opened(tx, response.into_inner(), first).await
    }
}

impl DeltaStream {
    /// Opens a Delta stream on the aggregated service (ADS), `first` its first request.
    pub async fn ads(channel: Channel, first: DeltaDiscoveryRequest) -> Result<Self, ClientError> {
        let (tx, requests) = queue();
        let rx = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .delta_aggregated_resources(requests)
            .await?
            .into_inner();
        Self::opened(tx, rx, first).await
    }
}
