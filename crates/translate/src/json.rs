//! proto3 JSON of translated [`Resources`] (for `portolan render` and golden files), rendered
//! message by message by `portolan-envoy-json`. A gateway group's SDS secrets are rendered
//! with their private keys redacted.

use crate::Resources;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
pub use portolan_envoy_json::{JsonError, any_to_json, message_to_json};
use serde_json::{Value, json};

/// What a redacted private key reads.
pub const REDACTED: &str = "[redacted]";

/// `{"clusters": [...], "endpoints": [...], "listeners": [...], "routes": [...]}`, and
/// `"secrets": [...]` (private keys redacted) when the group has any.
pub fn resources_to_json(r: &Resources) -> Result<Value, JsonError> {
    let mut value = json!({
        "clusters": list(&r.clusters)?,
        "endpoints": list(&r.load_assignments)?,
        "listeners": list(&r.listeners)?,
        "routes": list(&r.routes)?,
    });
    if !r.secrets.is_empty() {
        let secrets: Vec<Secret> = r.secrets.iter().map(redacted).collect();
        value["secrets"] = list(&secrets)?;
    }
    Ok(value)
}

/// `secret` with its private key (if any) replaced by [`REDACTED`].
fn redacted(secret: &Secret) -> Secret {
    let mut secret = secret.clone();
    if let Some(secret::Type::TlsCertificate(cert)) = &mut secret.r#type
        && cert.private_key.is_some()
    {
        cert.private_key = Some(crate::tls::inline(REDACTED));
    }
    secret
}

fn list<M: prost::Message + prost::Name>(msgs: &[M]) -> Result<Value, JsonError> {
    msgs.iter()
        .map(message_to_json)
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}
