//! From the xDS cache's status rows and snapshots to the admin API's messages.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use portolan_xds::{Nack, ProxyStatus, ResourceType, Snapshot, TypeStatus};

use crate::proto;

/// Unix seconds (0 for times before the epoch).
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

pub(crate) fn nack(nack: &Nack) -> proto::Nack {
    proto::Nack {
        version: nack.version.clone(),
        message: nack.message.clone(),
        at: unix_seconds(nack.at),
    }
}

pub(crate) fn type_status(status: &TypeStatus, snapshot: Option<&Snapshot>) -> proto::TypeStatus {
    proto::TypeStatus {
        type_url: status.type_url.clone(),
        sent_version: status.sent_version.clone(),
        acked_version: status.acked_version.clone(),
        last_nack: status.last_nack.as_ref().map(nack),
        current_version: snapshot.and_then(|s| status.current_version(s)),
    }
}

/// Type URL -> version, for every type of the snapshot.
pub(crate) fn group_versions(snapshot: Option<&Snapshot>) -> HashMap<String, String> {
    let Some(snapshot) = snapshot else {
        return HashMap::new();
    };
    ResourceType::ALL
        .into_iter()
        .map(|ty| (ty.type_url().to_string(), snapshot.version(ty).to_string()))
        .collect()
}

pub(crate) fn proxy_stream(row: &ProxyStatus, snapshot: Option<&Snapshot>) -> proto::ProxyStream {
    proto::ProxyStream {
        node_id: row.node_id.clone(),
        group: row.group.clone(),
        client: row.client.clone(),
        stream: row.stream.clone(),
        delta: row.delta,
        connected_at: unix_seconds(row.connected_at),
        types: row.types.iter().map(|t| type_status(t, snapshot)).collect(),
        group_versions: group_versions(snapshot),
    }
}
