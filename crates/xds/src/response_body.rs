//! The HTTP/2 body of a streaming xDS response: each message gRPC-framed in bounded chunks.
//!
//! tonic's encoder writes every response of a stream into one buffer that it splits and hands
//! to HTTP/2; the buffer's allocation stays referenced by the stream for its whole life, so an
//! idle stream pins memory the size of its largest response (3.4 MB for the EDS response of a
//! 10,000-Service mesh, per connected proxy). Here a message is written only when HTTP/2 asks
//! for more of the body, in chunks of at most [`CHUNK`] bytes, each in a buffer of exactly its
//! size that HTTP/2 frees once it is written, and at most two chunks queued (below), so a
//! stream in the middle of a 9 MiB initial push holds 128 KiB at most, not the push; an idle
//! stream holds no buffer at all. The chunks are written straight from the snapshot's shared
//! resource bytes ([`crate::response`]): they are the only copy of those bytes a push makes.
//!
//! HTTP/2 (hyper over h2) asks for more of a body while the stream has send capacity: up to
//! its send buffer (400 KiB per stream) when the client's flow-control window is larger (a
//! tonic client opens 2 MiB, Envoy 256 MiB), so in a connect storm every syncing stream could
//! queue 400 KiB at once. A body therefore hands out at most [`MAX_QUEUED`] bytes that HTTP/2
//! has not written to the socket yet: each chunk counts itself out when HTTP/2 drops it
//! (written), and the body waits (`Pending`, woken by that drop) while it is at the bound.
//! The bytes on the wire are the same gRPC messages (uncompressed, 5-byte prefix, prost's
//! encoding; only where HTTP/2 DATA frames begin and end may differ), and the stream ends with
//! the same `grpc-status` trailers.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes};
use futures::Stream;
use futures::task::AtomicWaker;
use http_body::{Body, Frame};
use tonic::Status;
use tonic::codegen::http::{self, HeaderMap};

use crate::response::Encode;

/// Length of the gRPC message prefix: a compression flag and a big-endian u32 length.
const PREFIX: usize = 5;

/// The most bytes of a message written at once: HTTP/2's default stream window (64 KiB).
pub(crate) const CHUNK: usize = 64 * 1024;

/// The most bytes of one stream's chunks handed to HTTP/2 and not yet written out: two chunks,
/// so the next is ready while one is being written.
pub(crate) const MAX_QUEUED: usize = 2 * CHUNK;

/// A gRPC streaming response body over `S`'s messages, ended by a status trailer.
pub(crate) struct ResponseBody<S, M> {
    messages: S,
    max_message: usize,
    /// The message being written, while it has bytes left.
    writing: Option<Writing<M>>,
    /// The bytes of this body's chunks that HTTP/2 holds, not yet written.
    queued: Arc<Queued>,
    ended: bool,
}

/// What a body's chunks held by HTTP/2 add up to, and the body to wake when one is written.
#[derive(Debug, Default)]
struct Queued {
    bytes: AtomicUsize,
    waker: AtomicWaker,
}

/// One chunk's buffer: counted in its body's [`Queued`] until HTTP/2 drops it.
struct Chunk {
    bytes: Vec<u8>,
    queued: Arc<Queued>,
}

impl<S, M> ResponseBody<S, M> {
    /// Frames each message of `messages`; a message over `max_message` bytes ends the stream
    /// with `OUT_OF_RANGE`, as tonic's encoder does.
    pub(crate) fn new(messages: S, max_message: usize) -> Self {
        Self {
            messages,
            max_message,
            writing: None,
            queued: Arc::default(),
            ended: false,
        }
    }

    /// Bytes of this body's chunks that are handed out and not dropped yet.
    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        self.queued.bytes.load(Ordering::Acquire)
    }

    /// Whether another chunk may be handed out now; if not, `cx` is woken when one is dropped.
    fn has_room(&self, cx: &mut Context<'_>) -> bool {
        let room = || self.queued.bytes.load(Ordering::Acquire) + CHUNK <= MAX_QUEUED;
        if room() {
            return true;
        }
        self.queued.waker.register(cx.waker());
        // A chunk dropped between the check and the registration woke nobody.
        room()
    }
}

// === impl Queued ===

impl Queued {
    /// `chunk` as bytes for HTTP/2, counted until they are dropped.
    fn hand_out(self: &Arc<Self>, chunk: Vec<u8>) -> Bytes {
        self.bytes.fetch_add(chunk.len(), Ordering::AcqRel);
        Bytes::from_owner(Chunk {
            bytes: chunk,
            queued: self.clone(),
        })
    }
}

// === impl Chunk ===

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.queued
            .bytes
            .fetch_sub(self.bytes.len(), Ordering::AcqRel);
        self.queued.waker.wake();
    }
}

/// The response to start a stream with: gRPC headers and this body.
pub(crate) fn streaming_response<S, M>(
    messages: S,
    max_message: usize,
) -> http::Response<tonic::body::Body>
where
    S: Stream<Item = Result<M, Status>> + Unpin + Send + 'static,
    M: Encode + Unpin + Send + 'static,
{
    let mut response = http::Response::new(tonic::body::Body::new(ResponseBody::new(
        messages,
        max_message,
    )));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}

/// A message being written: its gRPC prefix, then its parts, chunk by chunk.
struct Writing<M> {
    message: M,
    /// Bytes of the prefix and the message not written yet.
    left: usize,
    /// The next part to open.
    next: usize,
    /// The open part (`next - 1`): the bytes before its body (the prefix, at first), its body
    /// (borrowed from the message when copied out), the bytes after it; each consumed as it is
    /// written. `head` and `tail` are reused for every part.
    head: Scratch,
    /// How much of the open part's body is written out.
    body_at: usize,
    tail: Scratch,
}

/// Small bytes written by a part, and how many of them are written out already.
#[derive(Default)]
struct Scratch {
    bytes: Vec<u8>,
    at: usize,
}

// === impl Scratch ===

impl Scratch {
    fn rest(&self) -> &[u8] {
        &self.bytes[self.at..]
    }

    /// Empties it for the next part to write into.
    fn reset(&mut self) -> &mut Vec<u8> {
        self.bytes.clear();
        self.at = 0;
        &mut self.bytes
    }
}

// === impl Writing ===

impl<M: Encode> Writing<M> {
    /// Starts writing `message`; over `max_message` bytes it is `OUT_OF_RANGE`, as with tonic.
    fn start(message: M, max_message: usize) -> Result<Self, Status> {
        let len = message.encoded_len();
        if len > max_message {
            return Err(Status::out_of_range(format!(
                "Error, encoded message length too large: found {len} bytes, the limit is: {max_message} bytes"
            )));
        }
        let prefix_len = u32::try_from(len)
            .map_err(|_| Status::out_of_range(format!("message of {len} bytes")))?;
        let mut head = Scratch::default();
        head.bytes.put_u8(0);
        head.bytes.put_u32(prefix_len);
        Ok(Self {
            message,
            left: PREFIX + len,
            next: 0,
            head,
            body_at: 0,
            tail: Scratch::default(),
        })
    }

    fn is_done(&self) -> bool {
        self.left == 0
    }

    /// The next `min(left, chunk)` bytes, in a buffer of exactly that size.
    fn chunk(&mut self, chunk: usize) -> Result<Vec<u8>, Status> {
        let size = self.left.min(chunk);
        let mut buf = Vec::with_capacity(size);
        while buf.len() < size {
            let room = size - buf.len();
            if !self.head.rest().is_empty() {
                let n = room.min(self.head.rest().len());
                buf.put_slice(&self.head.rest()[..n]);
                self.head.at += n;
            } else if !self.body_rest().is_empty() {
                let rest = self.body_rest();
                let n = room.min(rest.len());
                buf.put_slice(&rest[..n]);
                self.body_at += n;
            } else if !self.tail.rest().is_empty() {
                let n = room.min(self.tail.rest().len());
                buf.put_slice(&self.tail.rest()[..n]);
                self.tail.at += n;
            } else if !self.open_next()? {
                return Err(mislength(&self.message));
            }
        }
        self.left -= size;
        if self.is_done() && self.has_more()? {
            return Err(mislength(&self.message));
        }
        Ok(buf)
    }

    /// What is left to write of the open part's body.
    fn body_rest(&self) -> &[u8] {
        match self.next.checked_sub(1) {
            Some(open) => &self.message.body(open)[self.body_at..],
            None => &[],
        }
    }

    /// Opens the next part; false when there is none.
    fn open_next(&mut self) -> Result<bool, Status> {
        if self.next == self.message.parts() {
            return Ok(false);
        }
        self.message
            .part(self.next, self.head.reset(), self.tail.reset())
            .map_err(|e| Status::internal(format!("encoding a response: {e}")))?;
        self.body_at = 0;
        self.next += 1;
        Ok(true)
    }

    /// Whether bytes are left once `left` says the message is written (a bug).
    fn has_more(&mut self) -> Result<bool, Status> {
        loop {
            let written = self.head.rest().is_empty()
                && self.body_rest().is_empty()
                && self.tail.rest().is_empty();
            if !written {
                return Ok(true);
            }
            if !self.open_next()? {
                return Ok(false);
            }
        }
    }
}

/// The error for a message whose parts do not add up to its encoded length: a bug, and the
/// stream ends rather than send a prefix that lies.
fn mislength(message: &impl Encode) -> Status {
    Status::internal(format!(
        "a {} response's parts do not add up to its length",
        message.ty()
    ))
}

/// The trailers that end a stream with `status` (`grpc-status: 0` for success).
fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // The status message did not fit in a header: keep the code.
        headers.insert(Status::GRPC_STATUS, (status.code() as i32).into());
    }
    headers
}

impl<S, M> ResponseBody<S, M>
where
    S: Stream<Item = Result<M, Status>> + Unpin,
    M: Encode,
{
    /// The next chunk of the message being written, or of the next message; a status ends the
    /// stream. Waits while [`MAX_QUEUED`] bytes are handed out and not written.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Bytes, Status>> {
        if !self.has_room(cx) {
            return Poll::Pending;
        }
        let writing = match self.writing.as_mut() {
            Some(writing) => writing,
            None => {
                let next = ready!(Pin::new(&mut self.messages).poll_next(cx));
                let message = match next {
                    Some(Ok(message)) => message,
                    Some(Err(status)) => return Poll::Ready(Err(status)),
                    None => return Poll::Ready(Err(Status::ok(""))),
                };
                self.writing
                    .insert(Writing::start(message, self.max_message)?)
            }
        };
        let chunk = writing.chunk(CHUNK)?;
        if writing.is_done() {
            self.writing = None;
        }
        Poll::Ready(Ok(self.queued.hand_out(chunk)))
    }
}

impl<S, M> Body for ResponseBody<S, M>
where
    S: Stream<Item = Result<M, Status>> + Unpin,
    M: Encode + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let chunk = ready!(self.poll_chunk(cx));
        Poll::Ready(Some(Ok(match chunk {
            Ok(bytes) => Frame::data(bytes),
            Err(status) => {
                self.ended = true;
                self.writing = None;
                Frame::trailers(trailers(&status))
            }
        })))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
#[path = "response_body_tests.rs"]
mod tests;
