//! Messages split across frames, sharing frames, cut short, compressed, too large.

use super::*;
use crate::frame;
use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use futures::StreamExt;
use http_body::Frame;
use prost::Message;
use std::collections::VecDeque;

/// A body of these frames.
struct Frames(VecDeque<Result<Frame<Bytes>, std::io::Error>>);

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

fn prost_decode(bytes: Bytes) -> Result<DiscoveryRequest, Status> {
    DiscoveryRequest::decode(bytes).map_err(|e| Status::internal(e.to_string()))
}

fn messages<B>(body: B, max_len: usize) -> Messages<B, DiscoveryRequest> {
    Messages::new(body, max_len, prost_decode)
}

async fn all(
    messages: Messages<Frames, DiscoveryRequest>,
) -> Vec<Result<DiscoveryRequest, Status>> {
    messages.collect().await
}

#[tokio::test]
async fn messages_split_across_frames_or_sharing_one_are_decoded_in_order() {
    let (a, b, c) = (request(3), request(1_000), request(0));
    let mut wire = frame(&a).to_vec();
    wire.extend(frame(&b));
    wire.extend(frame(&c));
    for size in [1, 2, 5, 7, 100, 4096, wire.len()] {
        let frames = wire.chunks(size).map(<[u8]>::to_vec).collect();
        let decoded = all(messages(body(frames), 1 << 20)).await;
        let decoded: Vec<_> = decoded.into_iter().map(|r| r.expect("decodes")).collect();
        assert_eq!(
            decoded,
            vec![a.clone(), b.clone(), c.clone()],
            "frames of {size}"
        );
    }
}

#[tokio::test]
async fn no_buffer_is_kept_once_a_message_is_decoded() {
    let big = request(2_000);
    let mut wire = frame(&big).to_vec();
    let small = frame(&request(1));
    // The big message in two frames, then half of a small one.
    let rest = wire.split_off(wire.len() / 2);
    let half = small[..small.len() / 2].to_vec();
    let mut decoded = messages(body(vec![wire, rest, half]), 1 << 20);
    let first = decoded.next().await.expect("a message").expect("decodes");
    assert_eq!(first, big);
    assert_eq!(decoded.held(), 0, "buffer released after the message");
    // The cut-short message is an error, and the stream ends.
    let cut = decoded
        .next()
        .await
        .expect("an error")
        .expect_err("cut short");
    assert_eq!(cut.code(), tonic::Code::Internal);
    assert!(decoded.next().await.is_none());
}

#[test]
fn a_message_spanning_frames_is_gathered_in_a_buffer_of_its_size() {
    let big = frame(&request(2_000));
    let mut gathering = messages(body(Vec::new()), 1 << 20);
    for part in [big.slice(..100), big.slice(100..110)] {
        gathering.receive(part);
        assert!(gathering.decode_one().expect("no error").is_none());
    }
    assert_eq!(
        gathering.buf.capacity(),
        big.len(),
        "exactly the message, once"
    );
    gathering.receive(big.slice(110..));
    let decoded = gathering.decode_one().expect("decodes").expect("whole");
    assert_eq!(decoded, request(2_000));
    assert_eq!(gathering.held(), 0, "released once decoded");
}

#[tokio::test]
async fn a_message_whole_in_one_frame_is_decoded_from_the_frames_bytes() {
    let (a, b) = (request(1_000), request(2));
    let mut wire = frame(&a).to_vec();
    wire.extend(frame(&b));
    let frame = Bytes::from(wire);
    let within = frame.as_ptr_range();
    let frames = Frames([Ok(Frame::data(frame.clone()))].into());
    let mut seen = Vec::new();
    let mut decoded = Messages::new(frames, 1 << 20, |bytes: Bytes| Ok::<_, Status>(bytes));
    while let Some(bytes) = decoded.next().await {
        seen.push(bytes.expect("decodes"));
    }
    assert_eq!(seen.len(), 2);
    for (bytes, expected) in seen.iter().zip([a, b]) {
        assert!(
            within.contains(&bytes.as_ptr()),
            "the message is a slice of the frame, not a copy"
        );
        assert_eq!(prost_decode(bytes.clone()).expect("decodes"), expected);
    }
    assert_eq!(decoded.held(), 0);
}

#[tokio::test]
async fn a_message_over_the_limit_is_out_of_range() {
    let wire = frame(&request(100)).to_vec();
    let decoded = all(messages(body(vec![wire]), 64)).await;
    assert_eq!(decoded.len(), 1);
    let status = decoded
        .into_iter()
        .next()
        .expect("one")
        .expect_err("too large");
    assert_eq!(status.code(), tonic::Code::OutOfRange);
}

#[tokio::test]
async fn a_compressed_or_malformed_message_is_an_internal_error() {
    let mut compressed = frame(&request(1)).to_vec();
    compressed[0] = 1;
    let mut garbage = vec![0, 0, 0, 0, 3];
    garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
    for wire in [compressed, garbage] {
        let decoded = all(messages(body(vec![wire]), 1 << 20)).await;
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
            Ok(Frame::data(frame(&request(2)))),
            Err(std::io::Error::other("connection reset")),
        ]
        .into_iter()
        .collect(),
    );
    let decoded = all(messages(frames, 1 << 20)).await;
    assert_eq!(decoded.len(), 2);
    assert!(decoded[0].is_ok());
    assert!(decoded[1].is_err());
}

#[tokio::test]
async fn the_trailers_are_kept() {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "16".parse().expect("a header value"));
    let frames = Frames(
        [
            Ok(Frame::data(frame(&request(1)))),
            Ok(Frame::trailers(trailers)),
        ]
        .into_iter()
        .collect(),
    );
    let mut decoded = messages(frames, 1 << 20);
    assert!(decoded.next().await.expect("a message").is_ok());
    assert!(decoded.next().await.is_none());
    let status = Status::from_header_map(decoded.trailers().expect("trailers")).expect("a status");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}
