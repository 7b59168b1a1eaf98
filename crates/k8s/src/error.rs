//! The Kubernetes source's error type.

use portolan_api::ObjectRef;

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// No in-cluster config and no usable kubeconfig.
    #[error("no Kubernetes client configuration (in-cluster or KUBECONFIG)")]
    Config(#[from] kube::config::InferConfigError),
    /// Building the client from the configuration failed.
    #[error("building the Kubernetes client")]
    Client(#[source] kube::Error),
    /// A request to the API server failed.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// A status write was refused or failed.
    #[error("writing the status of {object}: {source}")]
    Status {
        object: ObjectRef,
        #[source]
        source: kube::Error,
    },
    /// A Gateway's proxies could not be provisioned.
    #[error("provisioning the proxies of {gateway}: {message}")]
    Provision { gateway: ObjectRef, message: String },
    /// An object read from the API server is not what Portolan needs.
    #[error("{what} {message}")]
    Invalid { what: String, message: String },
    /// A request did not answer in time.
    #[error("{0}: timed out")]
    Timeout(String),
}

// === impl K8sError ===

impl K8sError {
    pub(crate) fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| K8sError::Api { what, source }
    }

    /// Whether the API server answered 409 Conflict (someone else changed the object first).
    pub fn is_conflict(&self) -> bool {
        let source = match self {
            K8sError::Api { source, .. } | K8sError::Status { source, .. } => source,
            _ => return false,
        };
        matches!(source, kube::Error::Api(s) if s.code == 409)
    }
}
