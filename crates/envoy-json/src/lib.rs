//! proto3 JSON of Envoy's messages, for `portolan render`, config dumps and golden files.
//!
//! Messages are re-read through prost-reflect with the descriptor set of the envoy-types
//! version the workspace locks (`descriptor/`, copied from the crate by
//! `scripts/update-envoy-descriptor.sh`), so nested `Any`s (`typed_config` and friends) are
//! expanded with their `@type`. Field names are the proto (snake_case) names, as Envoy's own
//! config dump shows them; default values are left out. A message holding a field the
//! descriptor does not know is refused ([`JsonError::UnknownField`]) instead of rendered
//! without it: that is how a descriptor older than envoy-types' messages shows.
//!
//! The other way, [`json_to_bytes`] reads proto3 JSON back into a message's bytes (for
//! `EnvoyPatchPolicy`): a field the message does not have, a value of the wrong type or an
//! `Any` of an unknown `@type` is refused ([`JsonError::Parse`]) with the JSON path of the
//! offending value.

#![forbid(unsafe_code)]

mod known;

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;
use std::sync::LazyLock;

/// Envoy's FileDescriptorSet, as envoy-types generated its messages from it.
static DESCRIPTOR_SET: &[u8] = include_bytes!("../descriptor/envoy-types.binpb");

/// The envoy-types version [`DESCRIPTOR_SET`] was copied from.
pub const ENVOY_TYPES_VERSION: &str = include_str!("../descriptor/envoy-types.version");

static POOL: LazyLock<Result<DescriptorPool, prost_reflect::DescriptorError>> =
    LazyLock::new(|| DescriptorPool::decode(DESCRIPTOR_SET));

const OPTIONS: SerializeOptions = SerializeOptions::new()
    .skip_default_fields(true)
    .use_proto_field_name(true);

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("envoy descriptors do not load: {0}")]
    Descriptors(String),
    #[error("unknown message type {0}")]
    UnknownType(String),
    #[error("decoding {type_name}: {source}")]
    Decode {
        type_name: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error(
        "{type_name} holds field number {number} at {path}, which the envoy-types {} descriptor \
         does not know (run scripts/update-envoy-descriptor.sh)",
        ENVOY_TYPES_VERSION.trim()
    )]
    UnknownField {
        type_name: String,
        number: u32,
        path: String,
    },
    #[error("{type_name} at {path}: {message}")]
    Parse {
        type_name: String,
        /// Where in the JSON document (`filter_chains[0].filters[0].typed_config`).
        path: String,
        message: String,
    },
    #[error("rendering {type_name}: {source}")]
    Serialize {
        type_name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The proto3 JSON of a message, nested `Any`s expanded.
pub fn message_to_json<M: prost::Message + prost::Name>(msg: &M) -> Result<Value, JsonError> {
    bytes_to_json(&M::full_name(), &msg.encode_to_vec())
}

/// The proto3 JSON of the message inside an `Any`, with its `@type`.
pub fn any_to_json(any: &Any) -> Result<Value, JsonError> {
    message_to_json(any)
}

/// The proto3 JSON of `bytes`, an encoded message of type `type_name` (its full name:
/// `envoy.config.cluster.v3.Cluster`).
pub fn bytes_to_json(type_name: &str, bytes: &[u8]) -> Result<Value, JsonError> {
    let msg = decode(type_name, bytes)?;
    known::check(&msg)?;
    msg.serialize_with_options(serde_json::value::Serializer, &OPTIONS)
        .map_err(|source| JsonError::Serialize {
            type_name: type_name.to_string(),
            source,
        })
}

/// The encoding of the message of type `type_name` whose proto3 JSON is `json`: unknown
/// fields, wrong types and unknown `@type`s are refused, naming the JSON path.
pub fn json_to_bytes(type_name: &str, json: &Value) -> Result<Vec<u8>, JsonError> {
    use prost::Message;
    let desc = pool()?
        .get_message_by_name(type_name)
        .ok_or_else(|| JsonError::UnknownType(type_name.to_string()))?;
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(json, &mut track);
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(true);
    match DynamicMessage::deserialize_with_options(desc, deserializer, &options) {
        Ok(msg) => Ok(msg.encode_to_vec()),
        Err(e) => Err(JsonError::Parse {
            type_name: type_name.to_string(),
            path: match track.path().to_string() {
                p if p == "." => "the top level".to_string(),
                p => p,
            },
            message: e.to_string(),
        }),
    }
}

/// The descriptor pool every rendering uses.
fn pool() -> Result<&'static DescriptorPool, JsonError> {
    POOL.as_ref()
        .map_err(|e| JsonError::Descriptors(e.to_string()))
}

/// Decodes `bytes` as message `type_name` of the pool.
fn decode(type_name: &str, bytes: &[u8]) -> Result<DynamicMessage, JsonError> {
    let desc = pool()?
        .get_message_by_name(type_name)
        .ok_or_else(|| JsonError::UnknownType(type_name.to_string()))?;
    DynamicMessage::decode(desc, bytes).map_err(|source| JsonError::Decode {
        type_name: type_name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests;
