//! `PeerAuthentication`: whether a namespace's (or some workloads') inbound listeners require,
//! accept or refuse mutual TLS from other mesh proxies.

use super::common::{ObjectStatus, WorkloadSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of a PeerAuthentication.
pub type PeerAuthenticationStatus = ObjectStatus;

/// Mutual TLS for the inbound traffic of a namespace, or of the workloads `selector` matches.
/// A workload's own (selector) policy wins over its namespace's; with neither the mode is
/// PERMISSIVE.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portolan.dev",
    version = "v1alpha1",
    kind = "PeerAuthentication",
    namespaced,
    status = "PeerAuthenticationStatus",
    shortname = "peerauth",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mtls.mode"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PeerAuthenticationSpec {
    /// The workloads this applies to; absent: every workload of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    pub mtls: PeerMtls,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerMtls {
    pub mode: MtlsMode,
}

/// STRICT: only mutual TLS from a mesh identity. PERMISSIVE: mutual TLS or plaintext.
/// DISABLE: plaintext only (and callers do not originate mutual TLS towards it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    Strict,
    #[default]
    Permissive,
    Disable,
}
