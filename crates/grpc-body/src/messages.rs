//! The messages of an HTTP/2 body, decoded with no buffer kept between them.
//!
//! tonic's `Streaming` decodes into one buffer per stream that grows to the largest message and
//! keeps that size for the stream's life: a SotW proxy's EDS request names every cluster it
//! holds (45 KB at 1,000 Services, 450 KB at 10,000), and its EDS response carries every
//! endpoint (300 KB at 1,000 Services), so every stream pinned that much on its reading side.
//! Here the bytes of a message are gathered only until it is complete: once everything received
//! is decoded the buffer is released, so an idle stream holds none. A message that arrives whole
//! in one DATA frame is decoded from the frame's own bytes, not copied; one that spans frames is
//! gathered into a buffer of exactly its size.
//!
//! Same wire format and errors as tonic's: a compressed message is refused (`INTERNAL`: only
//! `identity` is spoken), a message over the size limit is `OUT_OF_RANGE`, one that does not
//! decode or is cut short by the end of the body `INTERNAL`; an error of the body is its status.
//! The body's trailers (where a server puts `grpc-status`) are kept for the reader.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::Stream;
use http_body::Body;
use sync_wrapper::SyncWrapper;
use tonic::Status;
use tonic::codegen::StdError;
use tonic::codegen::http::HeaderMap;

use crate::PREFIX;

/// The decoded messages `D` of a body `B`.
pub struct Messages<B, D> {
    /// Only ever read through `&mut self`, so the stream is `Sync` even when `B` is not.
    body: SyncWrapper<Pin<Box<B>>>,
    decode: fn(Bytes) -> Result<D, Status>,
    /// A received frame whose front holds whole messages not decoded yet (decoded from its
    /// bytes without a copy); empty when `buf` is in use.
    frame: Bytes,
    /// Received bytes of a message that spans frames, not decoded yet: no allocation between
    /// messages.
    buf: BytesMut,
    max_len: usize,
    /// The body's trailers, once they came.
    trailers: Option<HeaderMap>,
    /// The body ended, or a message failed (nothing more is read).
    done: bool,
}

// === impl Messages ===

impl<B, D> Messages<B, D> {
    /// The messages of `body`, each of at most `max_len` bytes, decoded by `decode` from their
    /// own bytes (without the prefix).
    pub fn new(body: B, max_len: usize, decode: fn(Bytes) -> Result<D, Status>) -> Self {
        Self {
            body: SyncWrapper::new(Box::pin(body)),
            decode,
            frame: Bytes::new(),
            buf: BytesMut::new(),
            max_len,
            trailers: None,
            done: false,
        }
    }

    /// The body's trailers, if it has ended with some.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// The capacity of the buffer held for a message not received whole yet, and of a frame
    /// not decoded yet.
    pub fn held(&self) -> usize {
        self.buf.capacity() + self.frame.len()
    }

    /// The next message if the frame or the buffer holds all of it.
    fn decode_one(&mut self) -> Result<Option<D>, Status> {
        if !self.frame.is_empty() {
            if let Some(len) = self.whole(&self.frame)? {
                let mut message = self.frame.split_to(PREFIX + len);
                message.advance(PREFIX);
                return (self.decode)(message).map(Some);
            }
            // The rest of the frame starts a message that spans frames: gather it.
            if let Some(len) = message_len(&self.frame) {
                self.buf.reserve(PREFIX + len);
            }
            self.buf.extend_from_slice(&self.frame);
            self.frame = Bytes::new();
        }
        let Some(len) = self.whole(&self.buf)? else {
            if let Some(len) = message_len(&self.buf) {
                // Room for the rest of this message only, not a doubling.
                self.buf.reserve(PREFIX + len - self.buf.len());
            }
            return Ok(None);
        };
        let mut message = self.buf.split_to(PREFIX + len);
        message.advance(PREFIX);
        let decoded = (self.decode)(message.freeze())?;
        if self.buf.is_empty() {
            // Everything received is decoded: let the allocation go.
            self.buf = BytesMut::new();
        }
        Ok(Some(decoded))
    }

    /// The length of the message at the front of `received` if all of it is there; refuses a
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
        if len > self.max_len {
            return Err(Status::out_of_range(format!(
                "Error, decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_len
            )));
        }
        Ok((received.len() >= PREFIX + len).then_some(len))
    }

    /// Takes a DATA frame's bytes: kept as they are when nothing is pending (a slice of the
    /// frame for `Bytes`, hyper's), else appended to the message being gathered.
    fn receive(&mut self, mut data: impl Buf) {
        if self.buf.is_empty() && self.frame.is_empty() {
            self.frame = data.copy_to_bytes(data.remaining());
            return;
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            let n = chunk.len();
            self.buf.put_slice(chunk);
            data.advance(n);
        }
    }

    /// Reads nothing more and lets the buffer go.
    fn end(&mut self) {
        self.done = true;
        self.frame = Bytes::new();
        self.buf = BytesMut::new();
    }
}

/// The length a gRPC message prefix at the front of `received` announces.
fn message_len(received: &[u8]) -> Option<usize> {
    let prefix = received.get(..PREFIX)?;
    let len = [prefix[1], prefix[2], prefix[3], prefix[4]];
    Some(u32::from_be_bytes(len) as usize)
}

impl<B, D> Stream for Messages<B, D>
where
    B: Body,
    B::Error: Into<StdError>,
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
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(status) => {
                    this.end();
                    return Poll::Ready(Some(Err(status)));
                }
            }
            match ready!(this.body.get_mut().as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.receive(data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            this.trailers = Some(trailers);
                        }
                    }
                },
                Some(Err(e)) => {
                    this.end();
                    return Poll::Ready(Some(Err(Status::from_error(e.into()))));
                }
                None => {
                    let cut = !this.buf.is_empty() || !this.frame.is_empty();
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

#[cfg(test)]
mod tests;
