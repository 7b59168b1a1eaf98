//! Object identity: which kind, namespace and name a document or error is about.

use std::fmt;

/// The kinds of objects Portolan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    EndpointSlice,
    Endpoints,
    Secret,
    TrafficRoute,
    TrafficPolicy,
    Gateway,
    ExternalService,
    PeerAuthentication,
    AccessPolicy,
    ProxyScope,
}

// === impl Kind ===

impl Kind {
    /// `apiVersion` and `kind` as written in manifests.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Service | Kind::Endpoints | Kind::Secret => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::TrafficRoute
            | Kind::TrafficPolicy
            | Kind::Gateway
            | Kind::ExternalService
            | Kind::PeerAuthentication
            | Kind::AccessPolicy
            | Kind::ProxyScope => "portolan.dev/v1alpha1",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Endpoints => "Endpoints",
            Kind::Secret => "Secret",
            Kind::TrafficRoute => "TrafficRoute",
            Kind::TrafficPolicy => "TrafficPolicy",
            Kind::Gateway => "Gateway",
            Kind::ExternalService => "ExternalService",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AccessPolicy => "AccessPolicy",
            Kind::ProxyScope => "ProxyScope",
        }
    }

    /// Every kind Portolan reads. Secrets are read only when of type `kubernetes.io/tls`.
    pub fn all() -> &'static [Kind] {
        &[
            Kind::Service,
            Kind::EndpointSlice,
            Kind::Endpoints,
            Kind::Secret,
            Kind::TrafficRoute,
            Kind::TrafficPolicy,
            Kind::Gateway,
            Kind::ExternalService,
            Kind::PeerAuthentication,
            Kind::AccessPolicy,
            Kind::ProxyScope,
        ]
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to one object: `Service default/reviews`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

// === impl ObjectRef ===

impl ObjectRef {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}
