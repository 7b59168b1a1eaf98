//! What each connected stream has been sent and has accepted, for `/debug/proxies` and proxy status.
//!
//! The stream tasks write these rows (through the cache's table); readers get copies.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// One connected xDS stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyStatus {
    /// Envoy `node.id`.
    pub node_id: String,
    /// Proxy group (`node.cluster`, empty -> `default`).
    pub group: String,
    /// `ads`, `cds`, `eds`, `lds` or `rds`.
    pub stream: String,
    /// Whether the stream is Delta xDS.
    pub delta: bool,
    /// `node.user_agent_name` and its version, when present.
    pub client: String,
    /// When the stream opened (seconds since the epoch in JSON).
    #[serde(serialize_with = "epoch_seconds")]
    pub connected_at: SystemTime,
    /// Per type URL the stream subscribes to.
    pub types: Vec<TypeStatus>,
}

/// What one stream was sent and accepted for one type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeStatus {
    pub type_url: String,
    /// Version of the last response sent.
    pub sent_version: Option<String>,
    /// Version of the last response the client ACKed.
    pub acked_version: Option<String>,
    /// The last NACK, kept after later ACKs so operators can see it.
    pub last_nack: Option<Nack>,
}

/// A rejected response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Nack {
    /// The version the client rejected (the one sent with the NACKed nonce).
    pub version: String,
    /// Envoy's `error_detail.message`.
    pub message: String,
    /// When the NACK arrived (seconds since the epoch in JSON).
    #[serde(serialize_with = "epoch_seconds")]
    pub at: SystemTime,
}

fn epoch_seconds<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    serializer.serialize_u64(seconds)
}
