//! The gRPC plumbing of the xDS services: the five services (ADS, CDS, EDS, LDS, RDS) as tower
//! services over [`XdsServer`], and the prost codec they use, with buffers sized for thousands
//! of long-lived streams.
//!
//! Why not the generated servers: they hard-wire tonic's default codec, whose per-stream encode
//! buffer starts at 8 KiB, grows by doubling to fit whatever is encoded before it yields (up to
//! 32 KiB of coalesced responses), and is kept at that size for the stream's life. With one
//! ~33 KB ClusterLoadAssignment response that is 64 KiB held by every idle stream. [`XdsCodec`]
//! reserves each message's exact size before encoding it and yields after every message, so a
//! stream keeps one buffer the size of its largest single response; requests start from a
//! smaller decode buffer. The bytes on the wire are the same: prost encodes the same messages.
//!
//! Paths, methods and answers are those of the generated servers: `Stream*` is SotW, `Delta*` is
//! Delta, `Fetch*` answers `UNIMPLEMENTED` with a message, any other method `UNIMPLEMENTED`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::task::{Context, Poll};

use bytes::BufMut;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};

use crate::delta::DeltaStream;
use crate::resource::ResourceType;
use crate::server::{MAX_MESSAGE_SIZE, XdsServer};
use crate::sotw::SotwStream;
use crate::stream::Scope;
use crate::task::{Machine, ResponseStream};

/// Initial size of a stream's encode buffer (it grows to the largest response).
const ENCODE_BUFFER: usize = 1024;
/// Initial size of a stream's decode buffer (it grows to the largest request read at once).
const DECODE_BUFFER: usize = 2048;
/// tonic's default yield threshold, kept for decoding.
const DECODE_YIELD: usize = 32 * 1024;
/// Yield each encoded response on its own, so the buffer never holds several at once.
const YIELD_EACH_MESSAGE: usize = 1;

/// One xDS gRPC service: its name, the scope of its streams and its method names.
pub trait Api: Send + Sync + 'static {
    /// The gRPC service name (`package.Service`).
    const NAME: &'static str;
    const SCOPE: Scope;
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
    const SCOPE: Scope = Scope::Aggregated;
    const SOTW: &'static str = "StreamAggregatedResources";
    const DELTA: &'static str = "DeltaAggregatedResources";
    const FETCH: Option<&'static str> = None;
}

impl Api for Cds {
    const NAME: &'static str = "envoy.service.cluster.v3.ClusterDiscoveryService";
    const SCOPE: Scope = Scope::Single(ResourceType::Cluster);
    const SOTW: &'static str = "StreamClusters";
    const DELTA: &'static str = "DeltaClusters";
    const FETCH: Option<&'static str> = Some("FetchClusters");
}

impl Api for Eds {
    const NAME: &'static str = "envoy.service.endpoint.v3.EndpointDiscoveryService";
    const SCOPE: Scope = Scope::Single(ResourceType::Endpoint);
    const SOTW: &'static str = "StreamEndpoints";
    const DELTA: &'static str = "DeltaEndpoints";
    const FETCH: Option<&'static str> = Some("FetchEndpoints");
}

impl Api for Lds {
    const NAME: &'static str = "envoy.service.listener.v3.ListenerDiscoveryService";
    const SCOPE: Scope = Scope::Single(ResourceType::Listener);
    const SOTW: &'static str = "StreamListeners";
    const DELTA: &'static str = "DeltaListeners";
    const FETCH: Option<&'static str> = Some("FetchListeners");
}

impl Api for Rds {
    const NAME: &'static str = "envoy.service.route.v3.RouteDiscoveryService";
    const SCOPE: Scope = Scope::Single(ResourceType::Route);
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
            let mut grpc = self.grpc::<DiscoveryResponse, DiscoveryRequest>();
            let method = StreamMethod::<SotwStream>::new(self.server.clone(), A::SCOPE);
            Box::pin(async move { Ok(grpc.streaming(method, request).await) })
        } else if method == Some(A::DELTA) {
            let mut grpc = self.grpc::<DeltaDiscoveryResponse, DeltaDiscoveryRequest>();
            let method = StreamMethod::<DeltaStream>::new(self.server.clone(), A::SCOPE);
            Box::pin(async move { Ok(grpc.streaming(method, request).await) })
        } else if method.is_some() && method == A::FETCH {
            let mut grpc = self.grpc::<DiscoveryResponse, DiscoveryRequest>();
            Box::pin(async move { Ok(grpc.unary(FetchMethod, request).await) })
        } else {
            Box::pin(ready(Ok(unimplemented())))
        }
    }
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

/// A streaming method run by state machine `M`.
struct StreamMethod<M> {
    server: XdsServer,
    scope: Scope,
    machine: PhantomData<fn() -> M>,
}

impl<M> StreamMethod<M> {
    fn new(server: XdsServer, scope: Scope) -> Self {
        Self {
            server,
            scope,
            machine: PhantomData,
        }
    }
}

impl<M: Machine> StreamingService<M::Request> for StreamMethod<M> {
    type Response = M::Response;
    type ResponseStream = ResponseStream<M::Response>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<M::Request>>) -> Self::Future {
        ready(
            self.server
                .start::<M>(self.scope, request)
                .map(Response::new),
        )
    }
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
