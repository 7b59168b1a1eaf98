//! The chunked gRPC body against prost's encoding of the same messages.

use super::*;
use crate::resource::{Resource, ResourceType};
use crate::response::{DeltaResponse, SotwResponse};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use http_body_util::BodyExt;
use prost::{EncodeError, Message};
use std::sync::Arc;

fn resource(ty: ResourceType, name: &str, len: usize) -> Arc<Resource> {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    Arc::new(Resource::new(ty, name, bytes))
}

fn response(version: &str) -> SotwResponse {
    SotwResponse {
        version_info: version.to_string(),
        resources: vec![resource(ResourceType::Endpoint, "a", 200)].into(),
        ty: ResourceType::Endpoint,
        nonce: "1".to_string(),
    }
}

/// A SotW response of `count` resources of `len` bytes, plus one of `big` bytes.
fn big_sotw(count: usize, len: usize, big: usize) -> SotwResponse {
    let mut resources: Vec<_> = (0..count)
        .map(|i| resource(ResourceType::Cluster, &format!("c{i}"), len))
        .collect();
    resources.insert(count / 2, resource(ResourceType::Cluster, "big", big));
    SotwResponse {
        version_info: "0123456789abcdef".into(),
        resources: resources.into(),
        ty: ResourceType::Cluster,
        nonce: "9".into(),
    }
}

/// A Delta VHDS response: upserts with aliases after their bodies, absent names, removals.
fn big_delta() -> DeltaResponse {
    DeltaResponse {
        system_version_info: "v".into(),
        resources: (0..300)
            .map(|i| resource(ResourceType::VirtualHost, &format!("routes/h{i}"), 700))
            .collect(),
        absent: vec!["routes/nope".into()],
        ty: ResourceType::VirtualHost,
        removed_resources: (0..500).map(|i| format!("routes/gone{i}")).collect(),
        nonce: "3".into(),
    }
}

/// `message`'s gRPC frame as prost would make it.
fn framed_by_prost(encoded: Vec<u8>) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    framed.extend_from_slice(&encoded);
    framed
}

/// Every chunk of `message` written `chunk` bytes at a time.
fn chunks(message: impl Encode, chunk: usize) -> Vec<Vec<u8>> {
    let mut writing = Writing::start(message, usize::MAX >> 1).expect("starts");
    let mut out = Vec::new();
    while !writing.is_done() {
        out.push(writing.chunk(chunk).expect("chunk"));
    }
    out
}

#[test]
fn a_small_message_is_one_exact_chunk_of_prefix_and_prost_bytes() {
    let message = response("v1");
    let expected = framed_by_prost(DiscoveryResponse::from(message.clone()).encode_to_vec());
    let written = chunks(message, CHUNK);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0], expected);
}

#[test]
fn a_big_message_goes_out_in_chunks_of_at_most_chunk_bytes() {
    let message = big_sotw(2_000, 300, 3 * CHUNK + 17);
    let expected = framed_by_prost(DiscoveryResponse::from(message.clone()).encode_to_vec());
    assert!(expected.len() > 10 * CHUNK);
    let written = chunks(message, CHUNK);
    let (last, full) = written.split_last().expect("chunks");
    assert!(full.iter().all(|c| c.len() == CHUNK));
    assert!(!last.is_empty() && last.len() <= CHUNK);
    assert_eq!(written.concat(), expected);

    let delta = big_delta();
    let expected = framed_by_prost(DeltaDiscoveryResponse::from(delta.clone()).encode_to_vec());
    assert_eq!(chunks(delta, CHUNK).concat(), expected);
}

#[test]
fn any_chunk_size_writes_the_same_bytes() {
    let sotw = big_sotw(20, 90, 1_000);
    let sotw_bytes = framed_by_prost(DiscoveryResponse::from(sotw.clone()).encode_to_vec());
    let delta = big_delta();
    let delta_bytes = framed_by_prost(DeltaDiscoveryResponse::from(delta.clone()).encode_to_vec());
    for chunk in [1, 2, 3, 5, 7, 64, 999, 4096] {
        let written = chunks(sotw.clone(), chunk);
        assert!(written.iter().all(|c| c.len() <= chunk));
        assert_eq!(written.concat(), sotw_bytes, "SotW, chunk {chunk}");
        assert_eq!(
            chunks(delta.clone(), chunk).concat(),
            delta_bytes,
            "Delta, chunk {chunk}"
        );
    }
}

#[test]
fn a_message_over_the_limit_is_out_of_range() {
    let err = Writing::start(response("v1"), 100)
        .err()
        .expect("too large");
    assert_eq!(err.code(), tonic::Code::OutOfRange);
}

/// A response whose parts say more, or less, than its encoded length.
#[derive(Debug)]
struct Lying {
    claimed: usize,
    written: usize,
}

impl Encode for Lying {
    fn ty(&self) -> ResourceType {
        ResourceType::Cluster
    }
    fn encoded_len(&self) -> usize {
        self.claimed
    }
    fn parts(&self) -> usize {
        1
    }
    fn part(&self, _: usize, head: &mut Vec<u8>, _: &mut Vec<u8>) -> Result<(), EncodeError> {
        head.resize(self.written, 1);
        Ok(())
    }
    fn body(&self, _: usize) -> &[u8] {
        &[]
    }
}

#[test]
fn parts_that_do_not_add_up_to_the_length_are_an_internal_error() {
    for (claimed, written) in [(10, 9), (10, 11), (0, 1)] {
        let mut writing = Writing::start(Lying { claimed, written }, 1024).expect("starts");
        let mut result = Ok(Vec::new());
        while result.is_ok() && !writing.is_done() {
            result = writing.chunk(4);
        }
        let err = result.expect_err(&format!("{claimed} claimed, {written} written"));
        assert_eq!(err.code(), tonic::Code::Internal);
    }
}

#[tokio::test]
async fn the_body_sends_each_message_then_the_status_trailers() {
    let items: Vec<Result<SotwResponse, Status>> = vec![
        Ok(response("v1")),
        Ok(big_sotw(10, 20_000, 10)),
        Err(Status::resource_exhausted("too many streams")),
        Ok(response("never sent")),
    ];
    let mut body = ResponseBody::new(futures::stream::iter(items), 1 << 20);
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("frame");
        match frame.into_data() {
            // Copied: a chunk held here would count as queued in HTTP/2.
            Ok(bytes) => data.push(bytes.to_vec()),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    let first = framed_by_prost(DiscoveryResponse::from(response("v1")).encode_to_vec());
    let second = framed_by_prost(DiscoveryResponse::from(big_sotw(10, 20_000, 10)).encode_to_vec());
    assert_eq!(data[0], first);
    assert_eq!(data.len(), 1 + second.len().div_ceil(CHUNK));
    assert_eq!(data[1..].concat(), second);
    let trailers = trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "8");
    assert_eq!(trailers["grpc-message"], "too%20many%20streams");
    assert!(body.is_end_stream());
}

#[tokio::test]
async fn a_stream_that_ends_sends_grpc_status_ok() {
    let items: Vec<Result<SotwResponse, Status>> = vec![Ok(response("v1"))];
    let mut body = ResponseBody::new(futures::stream::iter(items), 1024);
    let mut last = None;
    while let Some(frame) = body.frame().await {
        last = Some(frame.expect("frame"));
    }
    let trailers = last.and_then(|f| f.into_trailers().ok()).expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert!(trailers.get("grpc-message").is_none());
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl futures::task::ArcWake for Wakes {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_body_hands_http2_at_most_max_queued_bytes_it_has_not_written() {
    use std::sync::atomic::Ordering::SeqCst;
    let message = big_sotw(10, 6 * CHUNK / 10, 17);
    let expected = framed_by_prost(DiscoveryResponse::from(message.clone()).encode_to_vec());
    assert!(expected.len() > 5 * CHUNK);
    let items: Vec<Result<SotwResponse, Status>> = vec![Ok(message)];
    let mut body = ResponseBody::new(futures::stream::iter(items), usize::MAX >> 1);
    let wakes = Arc::new(Wakes::default());
    let waker = futures::task::waker(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let mut poll = |body: &mut ResponseBody<_, _>| match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => Poll::Ready(frame),
        Poll::Ready(other) => panic!("expected a frame, got {other:?}"),
        Poll::Pending => Poll::Pending,
    };
    let data = |frame: Poll<Frame<Bytes>>| match frame {
        Poll::Ready(frame) => frame.into_data().expect("data"),
        Poll::Pending => panic!("pending"),
    };
    // HTTP/2 holds the chunks it was handed: two, then the body waits.
    let first = data(poll(&mut body));
    let second = data(poll(&mut body));
    assert_eq!(body.queued_bytes(), MAX_QUEUED);
    assert!(
        poll(&mut body).is_pending(),
        "a third chunk while two are queued"
    );
    assert_eq!(wakes.0.load(SeqCst), 0);
    // Writing one out (HTTP/2 drops it) wakes the body, which hands out the next.
    let mut written = first.to_vec();
    drop(first);
    assert_eq!(wakes.0.load(SeqCst), 1);
    assert_eq!(body.queued_bytes(), CHUNK);
    let mut held = std::collections::VecDeque::from([second, data(poll(&mut body))]);
    // Writing the oldest whenever the body waits: the chunks add up to the message, then the
    // status trailers; nothing stays counted.
    loop {
        match poll(&mut body) {
            Poll::Ready(frame) => match frame.into_data() {
                Ok(chunk) => held.push_back(chunk),
                Err(frame) => {
                    assert!(frame.is_trailers());
                    break;
                }
            },
            Poll::Pending => {
                let oldest = held.pop_front().expect("waiting with nothing queued");
                written.extend_from_slice(&oldest);
            }
        }
        assert!(body.queued_bytes() <= MAX_QUEUED);
        assert!(held.len() <= 2);
    }
    for chunk in held.drain(..) {
        written.extend_from_slice(&chunk);
    }
    assert_eq!(written, expected);
    assert_eq!(body.queued_bytes(), 0);
}
