//! Kubernetes manifests the tests write: Services, EndpointSlices (optionally labelled, for
//! subsets), and the example CRs under `examples/` (the same files the docs show).

use crate::Upstream;
use crate::workspace_root;
use std::path::PathBuf;

/// Manifests for a Service with one `http` port.
pub fn service_yaml(namespace: &str, name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  ports:\n  - name: http\n    port: {port}\n"
    )
}

/// An EndpointSlice for `service` with one ready endpoint per upstream (each upstream has its
/// own port, so each gets its own slice document).
pub fn endpoints_yaml(namespace: &str, service: &str, upstreams: &[&Upstream]) -> String {
    upstreams
        .iter()
        .map(|u| labeled_endpoints_yaml(namespace, service, u, &[]))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// One EndpointSlice for `service` holding `upstream`, with extra slice labels (what
/// TrafficPolicy subsets select on, e.g. `version: v2`).
pub fn labeled_endpoints_yaml(
    namespace: &str,
    service: &str,
    upstream: &Upstream,
    labels: &[(&str, &str)],
) -> String {
    let extra: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-{name}\n  namespace: {namespace}\n  labels:\n    kubernetes.io/service-name: {service}\n{extra}addressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\nports:\n- name: http\n  port: {port}\n",
        name = upstream.name(),
        ip = upstream.addr().ip(),
        port = upstream.addr().port(),
    )
}

/// The directory of example manifests (`examples/` at the workspace root).
pub fn examples_dir() -> PathBuf {
    workspace_root().join("examples")
}

/// The text of an example manifest, by its path under `examples/` (e.g. `routing/canary.yaml`).
/// Tests apply these files (with ports substituted) so the docs show exactly what is tested.
pub fn example(path: &str) -> String {
    let file = examples_dir().join(path);
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading example {}: {e}", file.display()))
}
