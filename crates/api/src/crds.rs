//! The CustomResourceDefinitions of Portolan's kinds, built from the Rust types, and their
//! YAML rendering (`portolan crds`, the files under `crds/`).

use crate::crd::{
    AccessPolicy, EnvoyPatchPolicy, ExtAuthPolicy, ExternalService, Gateway, PeerAuthentication,
    ProxyScope, RateLimitPolicy, RequestAuthentication, TrafficPolicy, TrafficRoute,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Why the CRDs could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("rendering CRD {name} as YAML: {message}")]
pub struct RenderError {
    pub name: String,
    pub message: String,
}

/// Every Portolan CRD, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        TrafficRoute::crd(),
        TrafficPolicy::crd(),
        Gateway::crd(),
        ExternalService::crd(),
        PeerAuthentication::crd(),
        AccessPolicy::crd(),
        ProxyScope::crd(),
        ExtAuthPolicy::crd(),
        RateLimitPolicy::crd(),
        RequestAuthentication::crd(),
        EnvoyPatchPolicy::crd(),
    ]
}

/// The file name of a CRD under `crds/`: `trafficroutes.portolan.dev.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd_name(crd))
}

fn crd_name(crd: &CustomResourceDefinition) -> &str {
    crd.metadata.name.as_deref().unwrap_or_default()
}

/// One CRD as a YAML document (no leading `---`).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, RenderError> {
    serde_saphyr::to_string(crd).map_err(|e| RenderError {
        name: crd_name(crd).to_string(),
        message: e.to_string(),
    })
}

/// Every CRD as one multi-document YAML stream.
pub fn all_yaml() -> Result<String, RenderError> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

/// Every CRD as `(file name, YAML)`, for writing `crds/`.
pub fn files() -> Result<Vec<(String, String)>, RenderError> {
    all()
        .iter()
        .map(|crd| Ok((file_name(crd), to_yaml(crd)?)))
        .collect()
}
