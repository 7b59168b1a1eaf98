//! `ProxyScope`: what the mesh proxies of a namespace (or some of them, by label) may reach, and
//! how they discover it, like Istio's `Sidecar` (`egress.hosts`, with the same host syntax).

use super::common::{ObjectStatus, WorkloadSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of a ProxyScope.
pub type ProxyScopeStatus = ObjectStatus;

/// The scope (and discovery mode) of the mesh proxies of this namespace, or of those
/// `selector` matches. A selector ProxyScope wins over the namespace's (without a selector);
/// the node metadata `portolan.dev/scope` and `portolan.dev/discovery` win over both.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portolan.dev",
    version = "v1alpha1",
    kind = "ProxyScope",
    namespaced,
    status = "ProxyScopeStatus",
    shortname = "pscope",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Discovery","type":"string","jsonPath":".spec.discovery"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProxyScopeSpec {
    /// The proxies (by the `labels` of their node metadata) this applies to; absent: every
    /// proxy of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// `namespace/host` entries the proxies may reach: namespace a name, `*`, `.` (the
    /// proxy's own) or `~` (none); host `*`, `*.suffix` or a host name. Absent: everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub hosts: Option<Vec<String>>,
    /// `full` (everything pushed up front) or `on-demand` (VHDS and on-demand CDS; Delta ADS
    /// only). Absent: full, unless the node asks otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryMode>,
}

/// How the selected proxies learn their configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DiscoveryMode {
    #[default]
    Full,
    OnDemand,
}
