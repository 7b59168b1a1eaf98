//! One xDS stream over real gRPC: requests go in through a channel, responses come out with a
//! deadline. Raw: it sends what it is given; [`crate::SotwClient`] and [`crate::DeltaClient`]
//! put a subscriber on it.
//!
//! The call is made on the channel's HTTP/2 connection directly (gRPC's headers, each request
//! one gRPC message in a DATA frame of its own), and the responses are read with
//! [`Messages`]: a response is gathered only until it is whole and the buffer is let go once it
//! is decoded, as Envoy frees its read buffers. tonic's `Streaming` kept a buffer the size of the
//! largest response for the stream's life (300 KB of EDS per proxy at 1,000 Services): 5,000
//! simulated proxies held 1.5 GB of them, and the page faults of that memory cost the bench a
//! large part of the CPU it shares with Portolan in a connect storm.

use crate::ClientError;
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::StreamExt;
use http_body::Frame;
use http_body_util::StreamBody;
use portolan_grpc_body::{Messages, frame};
use prost::Message;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{self, HeaderValue, header};
use tonic::transport::{Channel, Endpoint};

/// The gRPC method paths of the xDS services.
const ADS: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_ADS: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
const CDS: &str = "/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters";
const EDS: &str = "/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints";
const LDS: &str = "/envoy.service.listener.v3.ListenerDiscoveryService/StreamListeners";
const RDS: &str = "/envoy.service.route.v3.RouteDiscoveryService/StreamRoutes";

/// Requests queued ahead of the stream: enough that a burst (a test flooding the server)
/// never waits on the transport, which stops reading once the server ends the call. Tokio
/// allocates queue slots as they are used.
const QUEUE: usize = 1024;

/// One stream: `Req` in, `Resp` out.
pub struct AdsStream<Req, Resp> {
    tx: mpsc::Sender<Req>,
    rx: Messages<Body, Resp>,
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

/// A response decoded from its gRPC message's bytes.
fn decode<M: Message + Default>(bytes: Bytes) -> Result<M, Status> {
    M::decode(bytes).map_err(|e| Status::internal(e.to_string()))
}

/// Opens a call to `path` on `channel` whose request messages are what `requests` yields; the
/// response's body once the server answered with a gRPC stream, or the status it refused the
/// call with.
async fn call<Req: Message + 'static>(
    mut channel: Channel,
    path: &'static str,
    requests: ReceiverStream<Req>,
) -> Result<Body, Status> {
    let frames = requests.map(|request| Ok::<_, Status>(Frame::data(frame(&request))));
    let mut request = http::Request::new(Body::new(StreamBody::new(frames)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static(path);
    let headers = request.headers_mut();
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let transport = |e: tonic::transport::Error| Status::from_error(Box::new(e));
    poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(transport)?;
    let response = channel.call(request).await.map_err(transport)?;
    // A refusal comes as headers only (`grpc-status` in them), or as an HTTP error.
    if let Some(status) = Status::from_header_map(response.headers())
        && status.code() != tonic::Code::Ok
    {
        return Err(status);
    }
    if response.status() != http::StatusCode::OK {
        return Err(http_status(response.status()));
    }
    Ok(response.into_body())
}

/// The gRPC status of an HTTP error (gRPC's HTTP to gRPC status mapping).
fn http_status(code: http::StatusCode) -> Status {
    let grpc = match code {
        http::StatusCode::BAD_REQUEST => tonic::Code::Internal,
        http::StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        http::StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        http::StatusCode::NOT_FOUND => tonic::Code::Unimplemented,
        http::StatusCode::TOO_MANY_REQUESTS
        | http::StatusCode::BAD_GATEWAY
        | http::StatusCode::SERVICE_UNAVAILABLE
        | http::StatusCode::GATEWAY_TIMEOUT => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    };
    Status::new(grpc, format!("HTTP status {code}"))
}

// === impl AdsStream ===

impl<Req: Message + 'static, Resp: Message + Default> AdsStream<Req, Resp> {
    /// Opens a stream on `path` and sends `first` on it once the server answered the call, as
    /// Envoy does. (Queued before, the first request reached Portolan with the call's headers,
    /// and Portolan's memory per client in the fan-out benchmark read one allocator step, about
    /// 2 KiB, higher: median of 30 and 44 runs.)
    async fn open(channel: Channel, path: &'static str, first: Req) -> Result<Self, ClientError> {
        let (tx, requests) = queue();
        let body = call(channel, path, requests).await?;
        let stream = Self {
            tx,
            rx: Messages::new(body, usize::MAX, decode::<Resp>),
        };
        stream.send(first).await?;
        Ok(stream)
    }
}

impl<Req, Resp> AdsStream<Req, Resp> {
    /// Queues `request` on the stream.
    pub async fn send(&self, request: Req) -> Result<(), ClientError> {
        self.tx.send(request).await.map_err(|_| ClientError::Closed)
    }

    /// The next response, or why none came within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Resp, ClientError> {
        match tokio::time::timeout(timeout, self.rx.next()).await {
            Err(_) => Err(ClientError::Timeout(timeout)),
            Ok(Some(Err(status))) => Err(ClientError::Status(status)),
            Ok(Some(Ok(response))) => Ok(response),
            Ok(None) => match self.rx.trailers().and_then(Status::from_header_map) {
                Some(status) if status.code() != tonic::Code::Ok => {
                    Err(ClientError::Status(status))
                }
                _ => Err(ClientError::Ended),
            },
        }
    }
}

impl SotwStream {
    /// Opens a SotW stream on the aggregated service (ADS), `first` its first request.
    pub async fn ads(channel: Channel, first: DiscoveryRequest) -> Result<Self, ClientError> {
        Self::open(channel, ADS, first).await
    }

    /// Opens a stream on the per-type service (CDS, EDS, LDS or RDS) of `type_url`, `first` its
    /// first request (of any type: a test may send the service a type it does not serve).
    pub async fn per_type(
        channel: Channel,
        type_url: &str,
        first: DiscoveryRequest,
    ) -> Result<Self, ClientError> {
        let path = match type_url {
            CLUSTER => CDS,
            ENDPOINT => EDS,
            LISTENER => LDS,
            ROUTE => RDS,
            other => return Err(ClientError::NoService(other.to_string())),
        };
        Self::open(channel, path, first).await
    }
}

impl DeltaStream {
    /// Opens a Delta stream on the aggregated service (ADS), `first` its first request.
    pub async fn ads(channel: Channel, first: DeltaDiscoveryRequest) -> Result<Self, ClientError> {
        Self::open(channel, DELTA_ADS, first).await
    }
}
