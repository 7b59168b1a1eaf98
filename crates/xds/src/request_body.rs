//! The requests of an xDS stream, decoded from the HTTP/2 request body, with no buffer kept
//! between them.
//!
//! tonic's `Streaming` decodes into one buffer per stream that grows to the largest request and
//! keeps that size for the stream's life: a SotW proxy's EDS request (and every EDS ACK) names
//! every cluster it holds, about 45 KB at 1,000 Services and 450 KB at 10,000, so every
//! connected proxy pinned that much. Here the bytes of a request are gathered only until it is
//! complete: once everything received is decoded the buffer is released, so an idle stream holds
//! none. Same wire format and answers as tonic's: 5-byte prefix (a compressed message is
//! refused, since Portolan accepts only `identity`), `OUT_OF_RANGE` for a request over the size
//! limit, `INTERNAL` for one that does not decode or is cut short. Each request is decoded from
//! its own bytes ([`Decode`]): prost for Delta, and a SotW request keeps its resource names as a
//! slice of them ([`crate::sotw_request`]). A request that arrives whole in one HTTP/2 DATA
//! frame (the server allows frames of [`crate::server::MAX_FRAME_SIZE`]) is decoded from the
//! frame's own bytes, not copied.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
#[cfg(test)]
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use futures::Stream;
use http_body::Body;
use prost::Message;
use tonic::Status;
use tonic::codegen::StdError;

use crate::sotw_request::SotwRequest;

/// Length of the gRPC message prefix: a compression flag and a big-endian u32 length.
const PREFIX: usize = 5;

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
pub(crate) struct Requests<B, D> {
    body: Pin<Box<B>>,
    /// A received frame whose front holds whole requests not decoded yet (decoded from its
    /// bytes without a copy); empty when `buf` is in use.
    frame: Bytes,
    /// Received bytes of a request that spans frames, not decoded yet: no allocation between
    /// requests.
    buf: BytesMut,
    max_request: usize,
    /// The body ended, or a request failed (nothing more is read).
    done: bool,
    decoded: PhantomData<fn() -> D>,
}

// === impl Requests ===

impl<B, D> Requests<B, D> {
    /// Decodes `body`'s requests, each of at most `max_request` bytes.
    pub(crate) fn new(body: B, max_request: usize) -> Self {
        Self {
            body: Box::pin(body),
            frame: Bytes::new(),
            buf: BytesMut::new(),
            max_request,
            done: false,
            decoded: PhantomData,
        }
    }

    /// The capacity of the buffer held for a request not received whole yet.
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.buf.capacity() + self.frame.len()
    }
}

impl<B, D: Decode> Requests<B, D> {
    /// The next request if the frame or the buffer holds all of it.
    fn decode_one(&mut self) -> Result<Option<D>, Status> {
        if !self.frame.is_empty() {
            if let Some(len) = self.whole(&self.frame)? {
                let mut message = self.frame.split_to(PREFIX + len);
                message.advance(PREFIX);
                return D::decode(message).map(Some);
            }
            // The rest of the frame starts a request that spans frames: gather it.
            self.buf.extend_from_slice(&self.frame);
            self.frame = Bytes::new();
        }
        let Some(len) = self.whole(&self.buf)? else {
            if let Some(len) = message_len(&self.buf) {
                // Room for the rest of this request only, not a doubling.
                self.buf.reserve(PREFIX + len - self.buf.len());
            }
            return Ok(None);
        };
        let mut message = self.buf.split_to(PREFIX + len);
        message.advance(PREFIX);
        let request = D::decode(message.freeze())?;
        if self.buf.is_empty() {
            // Everything received is decoded: let the allocation go.
            self.buf = BytesMut::new();
        }
        Ok(Some(request))
    }

    /// The length of the request at the front of `received` if all of it is there; refuses a
    /// compressed or oversized one.
    fn whole(&self, received: &[u8]) -> Result<Option<usize>, Status> {
        let Some(prefix) = received.get(..PREFIX) else {
            return Ok(None);
        };
        match prefix[0] {
            0 => {}
            1 => {
                return Err(Status::internal(
                    "protocol error: received message with compressed-flag but no grpc-encoding was specified",
                ));
            }
            flag => {
                return Err(Status::internal(format!(
                    "protocol error: received message with invalid compression flag: {flag} (valid flags are 0 and 1)"
                )));
            }
        }
        let len = [prefix[1], prefix[2], prefix[3], prefix[4]];
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_request {
            return Err(Status::out_of_range(format!(
                "Error, decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_request
            )));
        }
        Ok((received.len() >= PREFIX + len).then_some(len))
    }
}

/// The length a gRPC message prefix at the front of `received` announces.
fn message_len(received: &[u8]) -> Option<usize> {
    let prefix = received.get(..PREFIX)?;
    let len = [prefix[1], prefix[2], prefix[3], prefix[4]];
    Some(u32::from_be_bytes(len) as usize)
}

impl<B, D> Stream for Requests<B, D>
where
    B: Body,
    B::Error: Into<StdError>,
    D: Decode,
{
    type Item = Result<D, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (the body is boxed).
        let this = Pin::into_inner(self);
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.decode_one() {
                Ok(Some(request)) => return Poll::Ready(Some(Ok(request))),
                Ok(None) => {}
                Err(status) => {
                    this.end();
                    return Poll::Ready(Some(Err(status)));
                }
            }
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers of a request stream carry nothing for xDS.
                    if let Ok(mut data) = frame.into_data() {
                        if this.buf.is_empty() && this.frame.is_empty() {
                            // A slice of the frame for `Bytes` (hyper's), a copy otherwise.
                            this.frame = data.copy_to_bytes(data.remaining());
                            continue;
                        }
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            this.buf.put_slice(chunk);
                            data.advance(n);
                        }
                    }
                }
                Some(Err(e)) => {
                    this.end();
                    return Poll::Ready(Some(Err(Status::from_error(e.into()))));
                }
                None => {
                    let cut = !this.buf.is_empty();
                    this.end();
                    if cut {
                        return Poll::Ready(Some(Err(Status::internal(
                            "Unexpected EOF decoding stream.",
                        ))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl<B, D> Requests<B, D> {
    /// Reads nothing more and lets the buffer go.
    fn end(&mut self) {
        self.done = true;
        self.frame = Bytes::new();
        self.buf = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use futures::StreamExt;
    use http_body::Frame;

    /// A request body of these frames.
    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, std::io::Error>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn body(frames: Vec<Vec<u8>>) -> Frames {
        Frames(
            frames
                .into_iter()
                .map(|f| Ok(Frame::data(Bytes::from(f))))
                .collect(),
        )
    }

    fn request(n: usize) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: format!("v{n}"),
            resource_names: (0..n).map(|i| format!("outbound|80||svc-{i}.ns")).collect(),
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            response_nonce: n.to_string(),
            ..Default::default()
        }
    }

    fn framed(message: &DiscoveryRequest) -> Vec<u8> {
        let encoded = message.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        out.extend_from_slice(&encoded);
        out
    }

    async fn all(
        requests: Requests<Frames, DiscoveryRequest>,
    ) -> Vec<Result<DiscoveryRequest, Status>> {
        requests.collect().await
    }

    #[tokio::test]
    async fn requests_split_across_frames_or_sharing_one_are_decoded_in_order() {
        let (a, b, c) = (request(3), request(1_000), request(0));
        let mut wire = framed(&a);
        wire.extend(framed(&b));
        wire.extend(framed(&c));
        for size in [1, 2, 5, 7, 100, 4096, wire.len()] {
            let frames = wire.chunks(size).map(<[u8]>::to_vec).collect();
            let decoded = all(Requests::new(body(frames), 1 << 20)).await;
            let decoded: Vec<_> = decoded.into_iter().map(|r| r.expect("decodes")).collect();
            assert_eq!(
                decoded,
                vec![a.clone(), b.clone(), c.clone()],
                "frames of {size}"
            );
        }
    }

    #[tokio::test]
    async fn no_buffer_is_kept_once_a_request_is_decoded() {
        let big = request(2_000);
        let mut wire = framed(&big);
        let small = framed(&request(1));
        // The big request in two frames, then half of a small one.
        let rest = wire.split_off(wire.len() / 2);
        let half = small[..small.len() / 2].to_vec();
        let mut requests: Requests<Frames, DiscoveryRequest> =
            Requests::new(body(vec![wire, rest, half]), 1 << 20);
        let first = requests.next().await.expect("a request").expect("decodes");
        assert_eq!(first, big);
        assert_eq!(
            requests.buffered_capacity(),
            0,
            "buffer released after the request"
        );
        // The cut-short request is an error, and the stream ends.
        let cut = requests
            .next()
            .await
            .expect("an error")
            .expect_err("cut short");
        assert_eq!(cut.code(), tonic::Code::Internal);
        assert!(requests.next().await.is_none());
    }

    #[tokio::test]
    async fn a_request_whole_in_one_frame_is_decoded_from_the_frames_bytes() {
        let (a, b) = (request(1_000), request(2));
        let mut wire = framed(&a);
        wire.extend(framed(&b));
        let frame = Bytes::from(wire);
        let within = frame.as_ptr_range();
        let frames = Frames([Ok(Frame::data(frame.clone()))].into());
        let mut requests: Requests<Frames, SotwRequest> = Requests::new(frames, 1 << 20);
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
        assert_eq!(requests.buffered_capacity(), 0);
    }

    #[tokio::test]
    async fn a_request_over_the_limit_is_out_of_range() {
        let wire = framed(&request(100));
        let decoded = all(Requests::new(body(vec![wire]), 64)).await;
        assert_eq!(decoded.len(), 1);
        let status = decoded
            .into_iter()
            .next()
            .expect("one")
            .expect_err("too large");
        assert_eq!(status.code(), tonic::Code::OutOfRange);
    }

    #[tokio::test]
    async fn a_compressed_or_malformed_request_is_an_internal_error() {
        let mut compressed = framed(&request(1));
        compressed[0] = 1;
        let mut garbage = vec![0, 0, 0, 0, 3];
        garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
        for wire in [compressed, garbage] {
            let decoded = all(Requests::new(body(vec![wire]), 1 << 20)).await;
            assert_eq!(decoded.len(), 1, "one error, then the end");
            let status = decoded
                .into_iter()
                .next()
                .expect("one")
                .expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Internal);
        }
    }

    #[tokio::test]
    async fn a_body_error_ends_the_stream_with_its_status() {
        let frames = Frames(
            [
                Ok(Frame::data(Bytes::from(framed(&request(2))))),
                Err(std::io::Error::other("connection reset")),
            ]
            .into_iter()
            .collect(),
        );
        let decoded = all(Requests::new(frames, 1 << 20)).await;
        assert_eq!(decoded.len(), 2);
        assert!(decoded[0].is_ok());
        assert!(decoded[1].is_err());
    }
}
