//! [`Options`]: what a translation depends on besides the World and the proxy group.

use crate::mesh::MeshOptions;
use crate::telemetry::Telemetry;
use std::time::Duration;

/// Knobs of the translation that are not part of the World.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Address the mesh outbound listener (and every gateway listener) binds to.
    pub mesh_listener_address: String,
    /// Port the mesh outbound listener binds to.
    pub mesh_listener_port: u16,
    /// Kubernetes cluster DNS domain, used in cluster names and virtual host domains.
    pub cluster_domain: String,
    /// Upstream connect timeout of every generated cluster.
    pub connect_timeout: Duration,
    /// Access logs, request ids and tracing of every HTTP connection manager.
    pub telemetry: Telemetry,
    /// Mesh identities: trust domain and inbound port.
    pub mesh: MeshOptions,
    /// Whether `EnvoyPatchPolicy` patches are applied (off by default). Translation does not
    /// read it: the pipeline patches its output (`portolan_pipeline::patch`).
    pub envoy_patch_policy: bool,
}

// === impl Options ===

impl Default for Options {
    fn default() -> Self {
        Self {
            mesh_listener_address: "0.0.0.0".to_string(),
            mesh_listener_port: 15001,
            cluster_domain: "cluster.local".to_string(),
            connect_timeout: Duration::from_secs(5),
            telemetry: Telemetry::default(),
            mesh: MeshOptions::default(),
            envoy_patch_policy: false,
        }
    }
}
