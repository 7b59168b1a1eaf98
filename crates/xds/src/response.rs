//! The responses the state machines produce, and their protobuf encoding written by hand.
//!
//! A [`SotwResponse`] or [`DeltaResponse`] holds the snapshot's own resources (`Arc`s of their
//! encoded bytes), never copies: a response waiting in a stream's channel costs a pointer per
//! resource, and its bytes are copied once, into the gRPC frame's chunks
//! ([`crate::response_body`]), as HTTP/2 asks for them. [`Encode`] writes, part by part,
//! exactly what prost writes for the equivalent `DiscoveryResponse` /
//! `DeltaDiscoveryResponse` (fields in tag order, empty strings and bytes left out, every
//! repeated message written even when empty); the `From` conversions build those prost
//! messages, for tests and simulated clients, and the tests check that both encodings agree
//! byte for byte. Portolan sets none of the other fields (`canary`,
//! `control_plane`, `resource_errors`, `removed_resource_names`, a resource's `ttl`,
//! `cache_control`, `metadata`, `resource_name`), so neither encoding has them.

use std::sync::Arc;

use bytes::BufMut;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource as WireResource,
};
use prost::{EncodeError, encode_length_delimiter, length_delimiter_len};

use crate::resource::{Resource, ResourceType};

/// A message written straight into gRPC frames, part by part.
///
/// Its encoding is a sequence of [`Encode::parts`]: each some small bytes (field keys,
/// lengths, names, versions), a shared body (a resource's encoded bytes, or nothing), and some
/// small bytes after it. [`crate::response_body`] copies them into bounded chunks as HTTP/2
/// asks for them, so no buffer ever holds the whole message.
pub trait Encode {
    /// The resource type it carries.
    fn ty(&self) -> ResourceType;

    /// The length of its protobuf encoding.
    fn encoded_len(&self) -> usize;

    /// How many parts its encoding is written in.
    fn parts(&self) -> usize;

    /// Part `i` (below [`Encode::parts`]): writes the bytes before its body into `head` and
    /// those after it into `tail`.
    fn part(&self, i: usize, head: &mut Vec<u8>, tail: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// The body of part `i`: a resource's encoded bytes (the snapshot's, borrowed: no count of
    /// references is touched per stream), or nothing.
    fn body(&self, i: usize) -> &[u8];

    /// Writes the whole protobuf encoding (no length prefix), `encoded_len` bytes.
    fn encode_raw(&self, buf: &mut impl BufMut) -> Result<(), EncodeError> {
        let (mut head, mut tail) = (Vec::new(), Vec::new());
        for i in 0..self.parts() {
            head.clear();
            tail.clear();
            self.part(i, &mut head, &mut tail)?;
            buf.put_slice(&head);
            buf.put_slice(self.body(i));
            buf.put_slice(&tail);
        }
        Ok(())
    }
}

/// A State-of-the-World `DiscoveryResponse`.
#[derive(Clone, Debug, PartialEq)]
pub struct SotwResponse {
    pub version_info: String,
    /// The snapshot's resources, in the order sent (a first sync of every resource shares the
    /// snapshot's own list).
    pub resources: Arc<[Arc<Resource>]>,
    pub ty: ResourceType,
    pub nonce: String,
}

/// A `DeltaDiscoveryResponse`.
#[derive(Clone, Debug, PartialEq)]
pub struct DeltaResponse {
    pub system_version_info: String,
    /// The snapshot's resources sent (upserts), in the order sent.
    pub resources: Vec<Arc<Resource>>,
    /// Virtual hosts asked for that do not exist, sent after `resources` as resources with the
    /// name as alias and no body (VHDS's "does not exist").
    pub absent: Vec<String>,
    pub ty: ResourceType,
    pub removed_resources: Vec<String>,
    pub nonce: String,
}

/// Field tags of `DiscoveryResponse`.
mod sotw_tag {
    pub const VERSION_INFO: u8 = 1;
    pub const RESOURCES: u8 = 2;
    pub const TYPE_URL: u8 = 4;
    pub const NONCE: u8 = 5;
}

/// Field tags of `DeltaDiscoveryResponse`.
mod delta_tag {
    pub const SYSTEM_VERSION_INFO: u8 = 1;
    pub const RESOURCES: u8 = 2;
    pub const TYPE_URL: u8 = 4;
    pub const NONCE: u8 = 5;
    pub const REMOVED_RESOURCES: u8 = 6;
}

/// Field tags of a Delta `Resource`.
mod resource_tag {
    pub const VERSION: u8 = 1;
    pub const RESOURCE: u8 = 2;
    pub const NAME: u8 = 3;
    pub const ALIASES: u8 = 4;
}

/// Field tags of `google.protobuf.Any`.
mod any_tag {
    pub const TYPE_URL: u8 = 1;
    pub const VALUE: u8 = 2;
}

// === impl SotwResponse ===

impl Encode for SotwResponse {
    fn ty(&self) -> ResourceType {
        self.ty
    }

    fn encoded_len(&self) -> usize {
        let resources: usize = self.resources.iter().map(|r| field_len(any_len(r))).sum();
        string_len(&self.version_info)
            + resources
            + string_len(self.ty.type_url())
            + string_len(&self.nonce)
    }

    /// The version, one part per resource, then the type URL and the nonce.
    fn parts(&self) -> usize {
        self.resources.len() + 2
    }

    fn part(&self, i: usize, head: &mut Vec<u8>, _: &mut Vec<u8>) -> Result<(), EncodeError> {
        if i == 0 {
            return put_string(head, sotw_tag::VERSION_INFO, &self.version_info);
        }
        if let Some(resource) = self.resources.get(i - 1) {
            return put_any_head(head, sotw_tag::RESOURCES, resource);
        }
        put_string(head, sotw_tag::TYPE_URL, self.ty.type_url())?;
        put_string(head, sotw_tag::NONCE, &self.nonce)
    }

    fn body(&self, i: usize) -> &[u8] {
        let resource = i.checked_sub(1).and_then(|i| self.resources.get(i));
        resource.map_or(&[], |r| r.value())
    }
}

impl From<SotwResponse> for DiscoveryResponse {
    fn from(response: SotwResponse) -> Self {
        DiscoveryResponse {
            version_info: response.version_info,
            resources: response.resources.iter().map(|r| r.to_any()).collect(),
            type_url: response.ty.type_url().to_string(),
            nonce: response.nonce,
            ..Default::default()
        }
    }
}

// === impl DeltaResponse ===

impl DeltaResponse {
    /// VHDS: Envoy matches a virtual host to the name it asked for by the resource's aliases.
    fn aliased(&self) -> bool {
        self.ty == ResourceType::VirtualHost
    }

    /// The encoded length of an upsert's `Resource` message.
    fn upsert_len(&self, resource: &Resource) -> usize {
        let alias = if self.aliased() {
            string_field_len(resource.name())
        } else {
            0
        };
        string_len(resource.version())
            + field_len(any_len(resource))
            + string_len(resource.name())
            + alias
    }
}

impl Encode for DeltaResponse {
    fn ty(&self) -> ResourceType {
        self.ty
    }

    fn encoded_len(&self) -> usize {
        let upserts: usize = self
            .resources
            .iter()
            .map(|r| field_len(self.upsert_len(r)))
            .sum();
        let absent: usize = self.absent.iter().map(|n| field_len(absent_len(n))).sum();
        let removed: usize = self
            .removed_resources
            .iter()
            .map(|n| string_field_len(n))
            .sum();
        string_len(&self.system_version_info)
            + upserts
            + absent
            + string_len(self.ty.type_url())
            + string_len(&self.nonce)
            + removed
    }

    /// The version, one part per upsert and per absent name, the type URL and the nonce, then
    /// one part per removed name.
    fn parts(&self) -> usize {
        self.resources.len() + self.absent.len() + 2 + self.removed_resources.len()
    }

    fn part(&self, i: usize, head: &mut Vec<u8>, tail: &mut Vec<u8>) -> Result<(), EncodeError> {
        if i == 0 {
            return put_string(
                head,
                delta_tag::SYSTEM_VERSION_INFO,
                &self.system_version_info,
            );
        }
        let i = i - 1;
        if let Some(resource) = self.resources.get(i) {
            put_header(head, delta_tag::RESOURCES, self.upsert_len(resource))?;
            put_string(head, resource_tag::VERSION, resource.version())?;
            put_any_head(head, resource_tag::RESOURCE, resource)?;
            put_string(tail, resource_tag::NAME, resource.name())?;
            if self.aliased() {
                put_string_field(tail, resource_tag::ALIASES, resource.name())?;
            }
            return Ok(());
        }
        let i = i - self.resources.len();
        if let Some(name) = self.absent.get(i) {
            put_header(head, delta_tag::RESOURCES, absent_len(name))?;
            put_string(head, resource_tag::NAME, name)?;
            return put_string_field(head, resource_tag::ALIASES, name);
        }
        let i = i - self.absent.len();
        if i == 0 {
            put_string(head, delta_tag::TYPE_URL, self.ty.type_url())?;
            put_string(head, delta_tag::NONCE, &self.nonce)?;
        } else if let Some(name) = self.removed_resources.get(i - 1) {
            put_string_field(head, delta_tag::REMOVED_RESOURCES, name)?;
        }
        Ok(())
    }

    fn body(&self, i: usize) -> &[u8] {
        let resource = i.checked_sub(1).and_then(|i| self.resources.get(i));
        resource.map_or(&[], |r| r.value())
    }
}

impl From<DeltaResponse> for DeltaDiscoveryResponse {
    fn from(response: DeltaResponse) -> Self {
        let aliased = response.aliased();
        let upserts = response.resources.iter().map(|r| WireResource {
            name: r.name().to_string(),
            aliases: if aliased {
                vec![r.name().to_string()]
            } else {
                Vec::new()
            },
            version: r.version().to_string(),
            resource: Some(r.to_any()),
            ..Default::default()
        });
        let absent = response.absent.into_iter().map(|name| WireResource {
            aliases: vec![name.clone()],
            name,
            ..Default::default()
        });
        DeltaDiscoveryResponse {
            system_version_info: response.system_version_info,
            resources: upserts.chain(absent).collect(),
            type_url: response.ty.type_url().to_string(),
            removed_resources: response.removed_resources,
            nonce: response.nonce,
            ..Default::default()
        }
    }
}

/// The encoded length of a VHDS "does not exist" `Resource`: its name, and the name as alias.
fn absent_len(name: &str) -> usize {
    string_len(name) + string_field_len(name)
}

/// The encoded length of a resource's `Any`: its type URL and its bytes.
fn any_len(resource: &Resource) -> usize {
    string_len(resource.type_url()) + string_len_of(resource.value().len())
}

/// A length-delimited field (one-byte key: every tag here is below 16) of `len` bytes.
fn field_len(len: usize) -> usize {
    1 + length_delimiter_len(len) + len
}

/// A proto3 string or bytes field of `len` bytes: absent when empty.
fn string_len_of(len: usize) -> usize {
    if len == 0 { 0 } else { field_len(len) }
}

fn string_len(value: &str) -> usize {
    string_len_of(value.len())
}

/// One element of a repeated string field: written even when empty.
fn string_field_len(value: &str) -> usize {
    field_len(value.len())
}

/// The key and length of a length-delimited field; `len` bytes of content follow.
fn put_header(buf: &mut impl BufMut, tag: u8, len: usize) -> Result<(), EncodeError> {
    const LENGTH_DELIMITED: u8 = 2;
    buf.put_u8((tag << 3) | LENGTH_DELIMITED);
    encode_length_delimiter(len, buf)
}

/// A proto3 string field, left out when empty.
fn put_string(buf: &mut impl BufMut, tag: u8, value: &str) -> Result<(), EncodeError> {
    if value.is_empty() {
        return Ok(());
    }
    put_string_field(buf, tag, value)
}

/// One element of a repeated string field.
fn put_string_field(buf: &mut impl BufMut, tag: u8, value: &str) -> Result<(), EncodeError> {
    put_header(buf, tag, value.len())?;
    buf.put_slice(value.as_bytes());
    Ok(())
}

/// A resource as an `Any` message field, up to its bytes (the part's body): the field's key
/// and length, the type URL, and the key and length of the value (none when it is empty).
fn put_any_head(buf: &mut impl BufMut, tag: u8, resource: &Resource) -> Result<(), EncodeError> {
    put_header(buf, tag, any_len(resource))?;
    put_string(buf, any_tag::TYPE_URL, resource.type_url())?;
    let len = resource.value().len();
    if len == 0 {
        return Ok(());
    }
    put_header(buf, any_tag::VALUE, len)
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
