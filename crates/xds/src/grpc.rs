//! The gRPC plumbing of the xDS services: the five services (ADS, CDS, EDS, LDS, RDS) as tower
//! services over [`XdsServer`], with buffers sized for thousands of long-lived streams.
//!
//! Why not the generated servers: they hard-wire tonic's default codec and its response
//! encoder, which writes every response of a stream into one buffer that stays allocated for
//! the stream's life, as large as the largest response it ever sent (8 KiB at least; 3.4 MB
//! per proxy for the EDS response of a 10,000-Service mesh); their request decoder likewise
//! keeps a buffer as large as the largest request (a SotW EDS ACK names every cluster). Here
//! stream requests are decoded by [`crate::request_body`], which keeps no buffer between
//! requests, and streaming responses are framed by [`crate::response_body`]: written from the
//! snapshot's shared bytes in exact-size chunks of at most 64 KiB as HTTP/2 asks for them, at
//! most two of them queued in HTTP/2 per stream, each freed once written, so an idle stream
//! holds no buffer. The unary `Fetch*` methods use tonic with [`XdsCodec`]. The gRPC messages
//! on the wire are the same.
//!
//! Paths, methods and answers are those of the generated servers: `Stream*` is SotW, `Delta*` is
//! Delta, `Fetch*` answers `UNIMPLEMENTED` with a message, any other method `UNIMPLEMENTED`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::task::{Context, Poll};

use bytes::BufMut;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::delta::DeltaStream;
use crate::request_body::requests;
use crate::resource::ResourceType;
use crate::response_body::streaming_response;
use crate::server::{MAX_MESSAGE_SIZE, XdsServer};
use crate::sotw::SotwStream;
use crate::stream::StreamTypes;
use crate::task::Machine;

/// Initial size of a stream's encode buffer (it grows to the largest response).
const ENCODE_BUFFER: usize = 1024;
/// Initial size of a stream's decode buffer (it grows to the largest request read at once).
const DECODE_BUFFER: usize = 2048;
/// tonic's default yield threshold, kept for decoding.
const DECODE_YIELD: usize = 32 * 1024;
/// Yield each encoded response on its own, so the buffer never holds several at once.
const YIELD_EACH_MESSAGE: usize = 1;

/// One xDS gRPC service: its name, the types its streams serve and its method names.
pub trait Api: Send + Sync + 'static {
    /// The gRPC service name (`package.Service`).
    const NAME: &'static str;
    const SERVES: StreamTypes;
    /// The SotW streaming method.
    const SOTW: &'static str;
    /// The Delta streaming method.
    const DELTA: &'static str;
    /// The unary fetch method (per-type services only).
    const FETCH: Option<&'static str>;
}

/// `envoy.service.discovery.v3.AggregatedDiscoveryService`.
#[derive(Debug)]
pub enum Ads {}
/// `envoy.service.cluster.v3.ClusterDiscoveryService`.
#[derive(Debug)]
pub enum Cds {}
/// `envoy.service.endpoint.v3.EndpointDiscoveryService`.
#[derive(Debug)]
pub enum Eds {}
/// `envoy.service.listener.v3.ListenerDiscoveryService`.
#[derive(Debug)]
pub enum Lds {}
/// `envoy.service.route.v3.RouteDiscoveryService`.
#[derive(Debug)]
pub enum Rds {}

impl Api for Ads {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
    const SERVES: StreamTypes = StreamTypes::Aggregated;
    const SOTW: &'static str = "StreamAggregatedResources";
    const DELTA: &'static str = "DeltaAggregatedResources";
    const FETCH: Option<&'static str> = None;
}

impl Api for Cds {
    const NAME: &'static str = "envoy.service.cluster.v3.ClusterDiscoveryService";
    const SERVES: StreamTypes = StreamTypes::Single(ResourceType::Cluster);
    const SOTW: &'static str = "StreamClusters";
    const DELTA: &'static str = "DeltaClusters";
    const FETCH: Option<&'static str> = Some("FetchClusters");
}

impl Api for Eds {
    const NAME: &'static str = "envoy.service.endpoint.v3.EndpointDiscoveryService";
    const SERVES: StreamTypes = StreamTypes::Single(ResourceType::Endpoint);
    const SOTW: &'static str = "StreamEndpoints";
    const DELTA: &'static str = "DeltaEndpoints";
    const FETCH: Option<&'static str> = Some("FetchEndpoints");
}

impl Api for Lds {
    const NAME: &'static str = "envoy.service.listener.v3.ListenerDiscoveryService";
    const SERVES: StreamTypes = StreamTypes::Single(ResourceType::Listener);
    const SOTW: &'static str = "StreamListeners";
    const DELTA: &'static str = "DeltaListeners";
    const FETCH: Option<&'static str> = Some("FetchListeners");
}

impl Api for Rds {
    const NAME: &'static str = "envoy.service.route.v3.RouteDiscoveryService";
    const SERVES: StreamTypes = StreamTypes::Single(ResourceType::Route);
    const SOTW: &'static str = "StreamRoutes";
    const DELTA: &'static str = "DeltaRoutes";
    const FETCH: Option<&'static str> = Some("FetchRoutes");
}

/// One xDS gRPC service over an [`XdsServer`], for `tonic`'s router.
#[derive(Debug)]
pub struct XdsService<A> {
    server: XdsServer,
    max_request: usize,
    api: PhantomData<fn() -> A>,
}

// === impl XdsService ===

impl<A: Api> XdsService<A> {
    /// Serves `A` on `server`, reading requests up to `max_request` bytes.
    pub fn new(server: XdsServer, max_request: usize) -> Self {
        Self {
            server,
            max_request,
            api: PhantomData,
        }
    }

    fn grpc<E, D>(&self) -> Grpc<XdsCodec<E, D>>
    where
        E: Message + Send + 'static,
        D: Message + Default + Send + 'static,
    {
        Grpc::new(XdsCodec::default())
            .apply_max_message_size_config(Some(self.max_request), Some(MAX_MESSAGE_SIZE))
    }
}

impl<A> Clone for XdsService<A> {
    fn clone(&self) -> Self {
        Self {
            server: self.server.clone(),
            max_request: self.max_request,
            api: PhantomData,
        }
    }
}

impl<A: Api> NamedService for XdsService<A> {
    const NAME: &'static str = A::NAME;
}

impl<A, B> Service<http::Request<B>> for XdsService<A>
where
    A: Api,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_of(request.uri().path(), A::NAME);
        if method == Some(A::SOTW) {
            Box::pin(ready(Ok(self.stream::<SotwStream, B>(request))))
        } else if method == Some(A::DELTA) {
            Box::pin(ready(Ok(self.stream::<DeltaStream, B>(request))))
        } else if method.is_some() && method == A::FETCH {
            let mut grpc = self.grpc::<DiscoveryResponse, DiscoveryRequest>();
            Box::pin(async move { Ok(grpc.unary(FetchMethod, request).await) })
        } else {
            Box::pin(ready(Ok(unimplemented())))
        }
    }
}

impl<A: Api> XdsService<A> {
    /// Starts a stream run by machine `M`: requests are decoded by [`requests`] (no buffer kept
    /// between them), responses framed by [`streaming_response`] (bounded chunks, none kept
    /// while idle).
    fn stream<M, B>(&self, request: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        M: Machine,
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        if let Some(status) = unsupported_encoding(request.headers()) {
            return status.into_http();
        }
        let (parts, body) = request.into_parts();
        let requests = requests::<B, M::Request>(body, self.max_request);
        let request = Request::from_http(http::Request::from_parts(parts, requests));
        match self.server.start::<M, _>(A::SERVES, request) {
            Ok(responses) => streaming_response(responses, MAX_MESSAGE_SIZE),
            Err(status) => status.into_http(),
        }
    }
}

/// `UNIMPLEMENTED` for a compressed request stream (Portolan accepts only `identity`), as tonic
/// answers an encoding it was not configured for.
fn unsupported_encoding(headers: &http::HeaderMap) -> Option<Status> {
    let encoding = headers.get("grpc-encoding")?;
    if encoding == "identity" {
        return None;
    }
    Some(Status::unimplemented(format!(
        "Content is compressed with `{}` which isn't supported",
        encoding.to_str().unwrap_or("?")
    )))
}

/// The method name of a request path `/{service}/{method}` for `service`.
fn method_of<'a>(path: &'a str, service: &str) -> Option<&'a str> {
    path.strip_prefix('/')?
        .strip_prefix(service)?
        .strip_prefix('/')
}

/// What the generated servers answer for an unknown method: `UNIMPLEMENTED`, no message.
fn unimplemented() -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::default());
    let headers = response.headers_mut();
    headers.insert(
        Status::GRPC_STATUS,
        (tonic::Code::Unimplemented as i32).into(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}

/// The unary `Fetch*` methods: not supported.
struct FetchMethod;

impl UnaryService<DiscoveryRequest> for FetchMethod {
    type Response = DiscoveryResponse;
    type Future = Ready<Result<Response<DiscoveryResponse>, Status>>;

    fn call(&mut self, _request: Request<DiscoveryRequest>) -> Self::Future {
        ready(Err(Status::unimplemented(
            "Fetch is not supported; use the streaming RPCs",
        )))
    }
}

/// Prost encoding of `E` responses and decoding of `D` requests with Portolan's buffer sizes.
#[derive(Debug)]
pub struct XdsCodec<E, D>(PhantomData<fn() -> (E, D)>);

impl<E, D> Default for XdsCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<E, D> Codec for XdsCodec<E, D>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = MessageEncoder<E>;
    type Decoder = MessageDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(PhantomData)
    }
}

/// Encodes one message into exactly the room it needs.
#[derive(Debug)]
pub struct MessageEncoder<E>(PhantomData<fn() -> E>);

impl<E: Message> Encoder for MessageEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        encode_exact(&item, buf, |buf, n| buf.reserve(n));
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(ENCODE_BUFFER, YIELD_EACH_MESSAGE)
    }
}

/// Encodes `item` after reserving its exact size (growing while encoding doubles the buffer).
fn encode_exact<B: BufMut>(item: &impl Message, buf: &mut B, reserve: impl FnOnce(&mut B, usize)) {
    reserve(buf, item.encoded_len());
    item.encode_raw(buf);
}

/// Decodes one message, as tonic's prost codec does (a bad message is `INTERNAL`).
#[derive(Debug)]
pub struct MessageDecoder<D>(PhantomData<fn() -> D>);

impl<D: Message + Default> Decoder for MessageDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(DECODE_BUFFER, DECODE_YIELD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use envoy_types::pb::google::protobuf::Any;

    #[test]
    fn methods_are_read_from_paths_of_the_service() {
        let ads = Ads::NAME;
        let path = format!("/{ads}/StreamAggregatedResources");
        assert_eq!(method_of(&path, ads), Some("StreamAggregatedResources"));
        assert_eq!(method_of(&path, Cds::NAME), None);
        assert_eq!(method_of("/x", ads), None);
        assert_eq!(method_of(&format!("/{ads}Extra/Stream"), ads), None);
    }

    #[test]
    fn encoding_is_prost_encoding_in_one_exact_allocation() {
        let response = DiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![Any {
                type_url: ResourceType::Endpoint.type_url().into(),
                value: vec![7; 40_000],
            }],
            type_url: ResourceType::Endpoint.type_url().into(),
            nonce: "1".into(),
            ..Default::default()
        };
        let mut buf = BytesMut::with_capacity(ENCODE_BUFFER);
        encode_exact(&response, &mut buf, |buf, n| buf.reserve(n));
        assert_eq!(buf.as_ref(), response.encode_to_vec().as_slice());
        // The default prost encoder would have doubled 1 KiB up to 64 KiB.
        assert!(buf.capacity() < response.encoded_len() + ENCODE_BUFFER);
    }
}
