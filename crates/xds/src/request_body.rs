//! The requests of an xDS stream, decoded from the HTTP/2 request body with no buffer kept
//! between them ([`portolan_grpc_body::Messages`]: a request is gathered only until it is
//! complete, so an idle stream holds no buffer; tonic's `Streaming` kept one the size of the
//! largest request, a SotW proxy's EDS request of 45 KB at 1,000 Services and 450 KB at 10,000,
//! for the stream's life). Each request is decoded from its own bytes ([`Decode`]): prost for
//! Delta, and a SotW request keeps its resource names as a slice of them
//! ([`crate::sotw_request`]). A request that arrives whole in one HTTP/2 DATA frame (the server
//! allows frames of [`crate::server::MAX_FRAME_SIZE`]) is decoded from the frame's own bytes,
//! not copied.

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
#[cfg(test)]
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use portolan_grpc_body::Messages;
use prost::Message;
use tonic::Status;

use crate::sotw_request::SotwRequest;

/// A request decoded from one gRPC message's bytes.
pub(crate) trait Decode: Sized {
    fn decode(bytes: Bytes) -> Result<Self, Status>;
}

impl Decode for DeltaDiscoveryRequest {
    fn decode(bytes: Bytes) -> Result<Self, Status> {
        Message::decode(bytes).map_err(|e| Status::internal(e.to_string()))
    }
}

#[cfg(test)]
impl Decode for DiscoveryRequest {
    fn decode(bytes: Bytes) -> Result<Self, Status> {
        Message::decode(bytes).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decode for SotwRequest {
    fn decode(bytes: Bytes) -> Result<Self, Status> {
        SotwRequest::decode(bytes).map_err(|e| Status::internal(e.to_string()))
    }
}

/// The decoded requests `D` of a request body `B`.
pub(crate) type Requests<B, D> = Messages<B, D>;

/// The requests `D` of `body`, each of at most `max_request` bytes.
pub(crate) fn requests<B, D: Decode>(body: B, max_request: usize) -> Requests<B, D> {
    Messages::new(body, max_request, D::decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::Full;

    /// An EDS request naming `n` clusters.
    fn request(n: usize) -> DiscoveryRequest {
        let names = (0..n).map(|i| format!("outbound|80||svc-{i}.ns")).collect();
        portolan_xds_client::request::sotw(portolan_xds_client::type_url::ENDPOINT, names)
    }

    fn framed(message: &DiscoveryRequest) -> Vec<u8> {
        portolan_grpc_body::frame(message).to_vec()
    }

    #[tokio::test]
    async fn a_request_whole_in_one_frame_is_decoded_from_the_frames_bytes() {
        let (a, b) = (request(1_000), request(2));
        let mut wire = framed(&a);
        wire.extend(framed(&b));
        let frame = Bytes::from(wire);
        let within = frame.as_ptr_range();
        let mut requests: Requests<Full<Bytes>, SotwRequest> =
            requests(Full::new(frame.clone()), 1 << 20);
        for expected in [a, b] {
            let got = requests.next().await.expect("a request").expect("decodes");
            let names = got.resource_names.as_bytes();
            assert!(
                within.contains(&names.as_ptr()),
                "the names are a slice of the frame, not a copy"
            );
            assert_eq!(got, SotwRequest::from(expected));
        }
        assert!(requests.next().await.is_none());
        assert_eq!(requests.held(), 0);
    }
}
