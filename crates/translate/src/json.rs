//! proto3 JSON of Envoy messages (for `portolan render`, golden files and config dumps).
//!
//! Messages are re-read through prost-reflect with the descriptors envoy-types ships, so
//! nested `Any`s (`typed_config` and friends) are expanded with their `@type`. Field names are
//! the proto (snake_case) names, as Envoy's own config dump shows them; default values are left out.

use crate::Resources;
use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Value, json};
use std::sync::LazyLock;

/// Envoy's FileDescriptorSet, copied out of envoy-types by build.rs.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy-types.bin"));

static POOL: LazyLock<Result<DescriptorPool, prost_reflect::DescriptorError>> =
    LazyLock::new(|| DescriptorPool::decode(DESCRIPTORS));

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

/// `{"clusters": [...], "endpoints": [...], "listeners": [...], "routes": [...]}`.
pub fn resources_to_json(r: &Resources) -> Result<Value, JsonError> {
    Ok(json!({
        "clusters": list(&r.clusters)?,
        "endpoints": list(&r.load_assignments)?,
        "listeners": list(&r.listeners)?,
        "routes": list(&r.routes)?,
    }))
}

fn list<M: prost::Message + prost::Name>(msgs: &[M]) -> Result<Value, JsonError> {
    msgs.iter()
        .map(message_to_json)
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn pool() -> Result<&'static DescriptorPool, JsonError> {
    POOL.as_ref()
        .map_err(|e| JsonError::Descriptors(e.to_string()))
}

fn bytes_to_json(type_name: &str, bytes: &[u8]) -> Result<Value, JsonError> {
    let desc = pool()?
        .get_message_by_name(type_name)
        .ok_or_else(|| JsonError::UnknownType(type_name.to_string()))?;
    let msg = DynamicMessage::decode(desc, bytes).map_err(|source| JsonError::Decode {
        type_name: type_name.to_string(),
        source,
    })?;
    msg.serialize_with_options(serde_json::value::Serializer, &OPTIONS)
        .map_err(|source| JsonError::Serialize {
            type_name: type_name.to_string(),
            source,
        })
}
