//! The requests an xDS client sends: the first request for a type, the ACK and the NACK of a
//! response, for State of the World and Delta. None carries a node; set `node` on the ones
//! that should (`DiscoveryRequest { node: Some(n), ..request::sotw(..) }`).

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status;
use std::collections::HashMap;

/// gRPC `INVALID_ARGUMENT`: what Envoy puts in a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// A SotW request for `type_url` and `names` (none: wildcard) that ACKs nothing: the first
/// request for a type on a stream.
pub fn sotw(type_url: &str, names: Vec<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: names,
        ..Default::default()
    }
}

/// A SotW request for `names` that accepts `response` (its version and nonce).
pub fn sotw_ack(response: &DiscoveryResponse, names: Vec<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: response.version_info.clone(),
        response_nonce: response.nonce.clone(),
        ..sotw(&response.type_url, names)
    }
}

/// A SotW request for `names` that rejects `response`: its nonce, the version the client
/// still runs (`accepted`, empty before the first ACK), and Envoy's error text.
pub fn sotw_nack(
    response: &DiscoveryResponse,
    accepted: &str,
    names: Vec<String>,
    message: &str,
) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: accepted.to_string(),
        response_nonce: response.nonce.clone(),
        error_detail: Some(error_detail(message)),
        ..sotw(&response.type_url, names)
    }
}

/// A Delta request subscribing to `names` of `type_url` (none on the first request of a type:
/// wildcard).
pub fn delta_subscribe(type_url: &str, names: Vec<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: names,
        ..Default::default()
    }
}

/// A Delta first request for `type_url` that says which versions the client already holds
/// (after a reconnect).
pub fn delta_resume(
    type_url: &str,
    names: Vec<String>,
    held: HashMap<String, String>,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        initial_resource_versions: held,
        ..delta_subscribe(type_url, names)
    }
}

/// The Delta ACK of `response`.
pub fn delta_ack(response: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    }
}

/// The Delta NACK of `response`, with Envoy's error text.
pub fn delta_nack(response: &DeltaDiscoveryResponse, message: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        error_detail: Some(error_detail(message)),
        ..delta_ack(response)
    }
}

fn error_detail(message: &str) -> Status {
    Status {
        code: INVALID_ARGUMENT,
        message: message.to_string(),
        details: Vec::new(),
    }
}
