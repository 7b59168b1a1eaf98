//! A State-of-the-World request as the server reads it: every field of `DiscoveryRequest`
//! but its resource names, which stay in their encoded bytes ([`RequestNames`]).
//!
//! A SotW proxy's EDS request names every cluster it holds, and so does every EDS ACK: about
//! 1,000 names (45 KB) per ACK at 1,000 Services, for every proxy on every endpoint change.
//! Decoding them with prost made a `String` per name, only for the state machine to find them
//! equal to the stream's subscription and drop them. Here the names are one slice of the
//! received message (no copy, no allocation per name), compared byte for byte with the
//! subscription ([`RequestNames::equals`]); only a request whose names differ has them made
//! into strings. The decoding refuses what prost refuses for `DiscoveryRequest` (invalid UTF-8
//! in any string, a truncated or malformed field, a field of the wrong wire type), skips
//! unknown fields and `resource_locators` (which Portolan does not use), and keeps the last of
//! a repeated string field and merges repeated message fields, as prost does; it also refuses
//! unknown fields in the deprecated group encoding, which no xDS client writes.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::{Message, decode_length_delimiter, encode_length_delimiter};

/// Field numbers of `DiscoveryRequest`.
mod tag {
    pub const VERSION_INFO: u64 = 1;
    pub const NODE: u64 = 2;
    pub const RESOURCE_NAMES: u64 = 3;
    pub const TYPE_URL: u64 = 4;
    pub const RESPONSE_NONCE: u64 = 5;
    pub const ERROR_DETAIL: u64 = 6;
    /// `resource_locators`.
    pub const LAST: u64 = 7;
}

/// Protobuf wire types.
mod wire {
    pub const VARINT: u64 = 0;
    pub const FIXED64: u64 = 1;
    pub const LENGTH_DELIMITED: u64 = 2;
    pub const FIXED32: u64 = 5;
}

/// The key of a `resource_names` entry: field 3, length-delimited.
const NAME_KEY: u8 = ((tag::RESOURCE_NAMES as u8) << 3) | wire::LENGTH_DELIMITED as u8;

/// Why a request did not decode.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("failed to decode DiscoveryRequest: truncated or invalid varint")]
    Varint,
    #[error("failed to decode DiscoveryRequest: field {field} runs past the end of the message")]
    Truncated { field: u64 },
    #[error("failed to decode DiscoveryRequest: field {field} has wire type {wire_type}")]
    WireType { field: u64, wire_type: u64 },
    #[error("failed to decode DiscoveryRequest: invalid field number 0")]
    FieldZero,
    #[error("failed to decode DiscoveryRequest: field {field} is not valid UTF-8")]
    Utf8 { field: u64 },
    #[error("failed to decode DiscoveryRequest: field {field}: {source}")]
    Message {
        field: u64,
        source: prost::DecodeError,
    },
}

/// A SotW `DiscoveryRequest`, its resource names left encoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SotwRequest {
    pub version_info: String,
    pub node: Option<Node>,
    pub resource_names: RequestNames,
    pub type_url: String,
    pub response_nonce: String,
    pub error_detail: Option<RpcStatus>,
}

/// The `resource_names` of a request as they were encoded: each entry a field key, a length
/// and the name, in the order sent. Every name is valid UTF-8 (checked when decoded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestNames {
    raw: Bytes,
    len: usize,
}

// === impl SotwRequest ===

impl SotwRequest {
    /// Decodes a `DiscoveryRequest`'s protobuf encoding (no gRPC prefix); the names are a
    /// slice of `bytes`.
    pub fn decode(bytes: Bytes) -> Result<Self, RequestError> {
        let mut request = SotwRequest::default();
        let mut names = NamesBuilder::default();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            if rest.first() == Some(&NAME_KEY) {
                // The names, one after the other (as every encoder writes them).
                let start = bytes.len() - rest.len();
                let count = name_run(&mut rest)?;
                names.push_span(&bytes, start, bytes.len() - rest.len(), count);
                continue;
            }
            let key = varint(&mut rest)?;
            let (field, wire_type) = (key >> 3, key & 7);
            if field == 0 {
                return Err(RequestError::FieldZero);
            }
            let value = match wire_type {
                wire::LENGTH_DELIMITED => length_delimited(&mut rest, field)?,
                // Every field of `DiscoveryRequest` is length-delimited.
                _ if field <= tag::LAST => return Err(RequestError::WireType { field, wire_type }),
                wire::VARINT => {
                    varint(&mut rest)?;
                    continue;
                }
                wire::FIXED64 => {
                    skip(&mut rest, 8, field)?;
                    continue;
                }
                wire::FIXED32 => {
                    skip(&mut rest, 4, field)?;
                    continue;
                }
                _ => return Err(RequestError::WireType { field, wire_type }),
            };
            match field {
                // A name whose key is written in more bytes than it needs.
                tag::RESOURCE_NAMES => {
                    check_utf8(value, field)?;
                    names.push_name(&bytes, value);
                }
                tag::VERSION_INFO => request.version_info = string(value, field)?,
                tag::NODE => merge(request.node.get_or_insert_default(), value, field)?,
                tag::TYPE_URL => request.type_url = string(value, field)?,
                tag::RESPONSE_NONCE => request.response_nonce = string(value, field)?,
                tag::ERROR_DETAIL => {
                    merge(request.error_detail.get_or_insert_default(), value, field)?
                }
                // `resource_locators` and unknown fields.
                _ => {}
            }
        }
        request.resource_names = names.finish(&bytes);
        Ok(request)
    }
}

impl From<DiscoveryRequest> for SotwRequest {
    fn from(request: DiscoveryRequest) -> Self {
        Self {
            resource_names: RequestNames::from_names(&request.resource_names),
            version_info: request.version_info,
            node: request.node,
            type_url: request.type_url,
            response_nonce: request.response_nonce,
            error_detail: request.error_detail,
        }
    }
}

// === impl RequestNames ===

impl RequestNames {
    /// Encodes `names` as a request would carry them.
    pub fn from_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let (mut raw, mut len) = (BytesMut::new(), 0);
        for name in names {
            let name = name.as_ref().as_bytes();
            raw.extend_from_slice(&[NAME_KEY]);
            // Writing into a growable buffer cannot run out of room.
            let _ = encode_length_delimiter(name.len(), &mut raw);
            raw.extend_from_slice(name);
            len += 1;
        }
        Self {
            raw: raw.freeze(),
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The entries as encoded.
    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The names' bytes, in order.
    pub fn iter_bytes(&self) -> impl Iterator<Item = &[u8]> {
        entries(&self.raw)
    }

    /// The names, in order (valid UTF-8, so never altered).
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.iter_bytes().map(String::from_utf8_lossy)
    }

    /// Whether the names are exactly `names`, in that order: no string made.
    pub fn equals<'a, S: AsRef<str> + 'a>(&self, names: impl ExactSizeIterator<Item = S>) -> bool {
        self.len == names.len()
            && self
                .iter_bytes()
                .zip(names)
                .all(|(a, b)| a == b.as_ref().as_bytes())
    }

    /// Whether one of the names is `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.iter_bytes().any(|n| n == name.as_bytes())
    }
}

/// Gathers a request's `resource_names` entries: a slice of the message while they are
/// contiguous (as every encoder writes them), a copy once they are not.
#[derive(Default)]
struct NamesBuilder {
    span: Option<(usize, usize)>,
    copied: Option<BytesMut>,
    len: usize,
}

// === impl NamesBuilder ===

impl NamesBuilder {
    /// Adds the `count` entries at `start..end` of `message`.
    fn push_span(&mut self, message: &[u8], start: usize, end: usize, count: usize) {
        self.len += count;
        if let Some(copied) = &mut self.copied {
            copied.extend_from_slice(&message[start..end]);
            return;
        }
        match &mut self.span {
            None => self.span = Some((start, end)),
            Some((_, last)) if *last == start => *last = end,
            Some(_) => self.copy(message).extend_from_slice(&message[start..end]),
        }
    }

    /// Adds one name, as an entry written the usual way.
    fn push_name(&mut self, message: &[u8], name: &[u8]) {
        self.len += 1;
        let copied = self.copy(message);
        copied.extend_from_slice(&[NAME_KEY]);
        // Writing into a growable buffer cannot run out of room.
        let _ = encode_length_delimiter(name.len(), copied);
        copied.extend_from_slice(name);
    }

    /// The entries gathered so far, copied.
    fn copy(&mut self, message: &[u8]) -> &mut BytesMut {
        let span = self.span.take();
        self.copied.get_or_insert_with(|| match span {
            Some((from, to)) => BytesMut::from(&message[from..to]),
            None => BytesMut::new(),
        })
    }

    fn finish(self, message: &Bytes) -> RequestNames {
        let raw = match (self.copied, self.span) {
            (Some(copied), _) => copied.freeze(),
            (None, Some((from, to))) => message.slice(from..to),
            (None, None) => Bytes::new(),
        };
        RequestNames { raw, len: self.len }
    }
}

/// The names of `resource_names` entries written one after the other (each checked when
/// decoded: a one-byte key, a length that fits, the name).
fn entries(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (_, mut after) = rest.split_first()?;
        let name = length_delimited(&mut after, tag::RESOURCE_NAMES).ok()?;
        rest = after;
        Some(name)
    })
}

/// Reads the `resource_names` entries at the start of `buf` (it starts with their key), as
/// many as follow each other; returns how many. Every name must be UTF-8.
fn name_run(buf: &mut &[u8]) -> Result<usize, RequestError> {
    let run = *buf;
    let mut count = 0;
    while let Some((&NAME_KEY, after)) = buf.split_first() {
        *buf = after;
        length_delimited(buf, tag::RESOURCE_NAMES)?;
        count += 1;
    }
    let run = &run[..run.len() - buf.len()];
    // Keys and lengths below 128 are ASCII bytes: an ASCII run holds ASCII names only.
    if !run.is_ascii() {
        for name in entries(run) {
            check_utf8(name, tag::RESOURCE_NAMES)?;
        }
    }
    Ok(count)
}

/// Reads a varint (one byte in the common case).
fn varint(buf: &mut &[u8]) -> Result<u64, RequestError> {
    if let Some((&byte, rest)) = buf.split_first()
        && byte < 0x80
    {
        *buf = rest;
        return Ok(u64::from(byte));
    }
    decode_length_delimiter(buf)
        .map(|v| v as u64)
        .map_err(|_| RequestError::Varint)
}

/// Reads a length-delimited value.
fn length_delimited<'a>(buf: &mut &'a [u8], field: u64) -> Result<&'a [u8], RequestError> {
    let len = usize::try_from(varint(buf)?).map_err(|_| RequestError::Truncated { field })?;
    let (value, rest) = buf
        .split_at_checked(len)
        .ok_or(RequestError::Truncated { field })?;
    *buf = rest;
    Ok(value)
}

/// Skips `n` bytes.
fn skip(buf: &mut &[u8], n: usize, field: u64) -> Result<(), RequestError> {
    let rest = buf.get(n..).ok_or(RequestError::Truncated { field })?;
    *buf = rest;
    Ok(())
}

fn check_utf8(value: &[u8], field: u64) -> Result<(), RequestError> {
    std::str::from_utf8(value)
        .map(drop)
        .map_err(|_| RequestError::Utf8 { field })
}

fn string(value: &[u8], field: u64) -> Result<String, RequestError> {
    String::from_utf8(value.to_vec()).map_err(|_| RequestError::Utf8 { field })
}

fn merge<M: Message>(message: &mut M, value: &[u8], field: u64) -> Result<(), RequestError> {
    message
        .merge(value)
        .map_err(|source| RequestError::Message { field, source })
}

#[cfg(test)]
#[path = "sotw_request_tests.rs"]
mod tests;
