//! proto3 JSON of translated [`Resources`] (for `portolan render` and golden files), rendered
//! message by message by `portolan-envoy-json`.

use crate::Resources;
pub use portolan_envoy_json::{JsonError, any_to_json, message_to_json};
use serde_json::{Value, json};

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
