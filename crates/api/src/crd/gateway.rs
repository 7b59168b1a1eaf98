//! `Gateway`: listeners opened on selected proxies (ingress and egress gateways).

use super::common::ObjectStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Status of a Gateway.
pub type GatewayStatus = ObjectStatus;

/// Listeners on the proxies the selector picks.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portolan.dev",
    version = "v1alpha1",
    kind = "Gateway",
    namespaced,
    status = "GatewayStatus",
    shortname = "pgw",
    derive = "PartialEq"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    pub selector: GatewaySelector,
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(l, self.exists_one(m, m.name == l.name))", "message": "listener names must be unique"},
        {
            "rule": "self.all(l, self.exists_one(m, m.port == l.port && (has(m.hostnames) ? m.hostnames : []) == (has(l.hostnames) ? l.hostnames : [])))",
            "message": "listeners must be unique by port and hostnames"
        }
    ]))]
    pub listeners: Vec<Listener>,
}

/// Which proxies run the gateway: all given conditions must hold, and at least one is given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.cluster) && size(self.cluster) > 0) || (has(self.metadata) && size(self.metadata) > 0)",
    "message": "a selector needs a cluster, metadata labels, or both"
}]))]
pub struct GatewaySelector {
    /// Envoy `node.cluster` (the proxy group).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// Labels the proxy declares in its node metadata (`node.metadata.labels`, string values;
    /// `portolan bootstrap --label k=v`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.tls) == (self.protocol == 'HTTPS')",
    "message": "tls is required for protocol HTTPS and not allowed otherwise"
}]))]
pub struct Listener {
    /// A DNS label, unique in the Gateway.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    pub protocol: ListenerProtocol,
    /// Hostnames routes may claim (`*.example.com` allowed); absent: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 253)))]
    pub hostnames: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ListenerProtocol {
    Http,
    Https,
    Tcp,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    pub secret_ref: SecretRef,
}

/// A `kubernetes.io/tls` Secret; the namespace defaults to the Gateway's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}
