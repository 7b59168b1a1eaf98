//! `ExternalService`: hosts outside the mesh, reached by static addresses or DNS.

use super::common::ObjectStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Status of an ExternalService.
pub type ExternalServiceStatus = ObjectStatus;

/// Hosts outside the mesh that callers may name.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portolan.dev",
    version = "v1alpha1",
    kind = "ExternalService",
    namespaced,
    status = "ExternalServiceStatus",
    shortname = "es",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hosts"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.resolution) && self.resolution == 'DNS') || (has(self.endpoints) && size(self.endpoints) > 0)",
    "message": "endpoints are required with resolution Static"
}]))]
pub struct ExternalServiceSpec {
    /// DNS names callers use.
    #[schemars(length(min = 1))]
    pub hosts: Vec<String>,
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.all(p, self.exists_one(q, q.name == p.name))", "message": "port names must be unique"},
        {"rule": "self.all(p, self.exists_one(q, q.number == p.number))", "message": "port numbers must be unique"}
    ]))]
    pub ports: Vec<ExternalPort>,
    /// Default Static.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Static: IP addresses (at least one). DNS: names to resolve (default: the hosts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<ExternalEndpoint>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalPort {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[schemars(range(min = 1, max = 65535))]
    pub number: i32,
    pub protocol: ExternalProtocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExternalProtocol {
    Http,
    Https,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Resolution {
    Static,
    #[serde(rename = "DNS")]
    Dns,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEndpoint {
    /// An IP address (Static) or a DNS name (DNS).
    #[schemars(length(min = 1, max = 253))]
    pub address: String,
    /// Per port name, the endpoint's port when it differs from the service port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, i32>,
}
