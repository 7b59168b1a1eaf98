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
    /// External authorization on Gateways, listeners and routes.
    ExtAuthPolicy,
    /// Local and global rate limits on Gateways, listeners and routes.
    RateLimitPolicy,
    /// The escape hatch: JSON patches to generated Envoy resources.
    EnvoyPatchPolicy,
    RequestAuthentication,
    /// core/v1 Namespace (its labels, for Gateway API `allowedRoutes` selectors).
    Namespace,
    /// `gateway.networking.k8s.io` GatewayClass.
    GatewayClass,
    /// `gateway.networking.k8s.io` Gateway (Portolan's own Gateway CRD is [`Kind::Gateway`]).
    ApiGateway,
    /// `gateway.networking.k8s.io` HTTPRoute.
    HttpRoute,
    /// `gateway.networking.k8s.io` ReferenceGrant.
    ReferenceGrant,
    /// `gateway.networking.k8s.io` GRPCRoute.
    GrpcRoute,
    /// `gateway.networking.k8s.io` TLSRoute.
    TlsRoute,
    /// `gateway.networking.k8s.io` TCPRoute (experimental channel, `v1alpha2`).
    TcpRoute,
    /// `gateway.networking.k8s.io` UDPRoute (experimental channel, `v1alpha2`).
    UdpRoute,
    /// `gateway.networking.k8s.io` BackendTLSPolicy (read at `v1` and `v1alpha3`).
    BackendTlsPolicy,
    /// core/v1 ConfigMap holding a CA bundle under `ca.crt` (others are not read).
    ConfigMap,
    /// `gateway.networking.k8s.io` ListenerSet (standard channel, `v1`).
    ListenerSet,
    /// core/v1 ServiceAccount (its name only: the mesh identities that exist, see
    /// `portolan_translate::inbound_tcp`).
    ServiceAccount,
}

// === impl Kind ===

impl Kind {
    /// `apiVersion` and `kind` as written in manifests.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Service
            | Kind::Endpoints
            | Kind::Secret
            | Kind::Namespace
            | Kind::ConfigMap
            | Kind::ServiceAccount => "v1",
            Kind::GatewayClass
            | Kind::ApiGateway
            | Kind::HttpRoute
            | Kind::GrpcRoute
            | Kind::TlsRoute
            | Kind::ListenerSet
            | Kind::BackendTlsPolicy => "gateway.networking.k8s.io/v1",
            Kind::TcpRoute | Kind::UdpRoute => "gateway.networking.k8s.io/v1alpha2",
            Kind::ReferenceGrant => "gateway.networking.k8s.io/v1beta1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::TrafficRoute
            | Kind::TrafficPolicy
            | Kind::Gateway
            | Kind::ExternalService
            | Kind::PeerAuthentication
            | Kind::AccessPolicy
            | Kind::ProxyScope
            | Kind::ExtAuthPolicy
            | Kind::RateLimitPolicy
            | Kind::EnvoyPatchPolicy
            | Kind::RequestAuthentication => "portolan.dev/v1alpha1",
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
            Kind::ExtAuthPolicy => "ExtAuthPolicy",
            Kind::RateLimitPolicy => "RateLimitPolicy",
            Kind::EnvoyPatchPolicy => "EnvoyPatchPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::Namespace => "Namespace",
            Kind::GatewayClass => "GatewayClass",
            Kind::ApiGateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::TlsRoute => "TLSRoute",
            Kind::TcpRoute => "TCPRoute",
            Kind::UdpRoute => "UDPRoute",
            Kind::BackendTlsPolicy => "BackendTLSPolicy",
            Kind::ConfigMap => "ConfigMap",
            Kind::ListenerSet => "ListenerSet",
            Kind::ServiceAccount => "ServiceAccount",
        }
    }

    /// Whether a manifest's `apiVersion` is one this kind is read at: Gateway API kinds at
    /// any served version of their group (`v1`, `v1beta1`, `v1alpha2`), the others at exactly theirs.
    pub fn accepts(self, api_version: &str) -> bool {
        if self.is_gateway_api() {
            return api_version
                .strip_prefix(crate::gwapi::GROUP)
                .is_some_and(|v| matches!(v, "/v1" | "/v1beta1" | "/v1alpha2" | "/v1alpha3"));
        }
        self.api_version() == api_version
    }

    /// Cluster-scoped kinds have no namespace (their [`ObjectRef`] namespace is empty).
    pub fn cluster_scoped(self) -> bool {
        matches!(self, Kind::Namespace | Kind::GatewayClass)
    }

    /// A kind of the Kubernetes Gateway API (`gateway.networking.k8s.io`).
    pub fn is_gateway_api(self) -> bool {
        matches!(
            self,
            Kind::GatewayClass
                | Kind::ApiGateway
                | Kind::HttpRoute
                | Kind::ReferenceGrant
                | Kind::GrpcRoute
                | Kind::TlsRoute
                | Kind::TcpRoute
                | Kind::UdpRoute
                | Kind::BackendTlsPolicy
                | Kind::ListenerSet
        )
    }

    /// Every kind Portolan reads. Secrets are read only when of type `kubernetes.io/tls`,
    /// ConfigMaps only when they hold `ca.crt`.
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
            Kind::ExtAuthPolicy,
            Kind::RateLimitPolicy,
            Kind::EnvoyPatchPolicy,
            Kind::RequestAuthentication,
            Kind::Namespace,
            Kind::GatewayClass,
            Kind::ApiGateway,
            Kind::HttpRoute,
            Kind::ReferenceGrant,
            Kind::GrpcRoute,
            Kind::TlsRoute,
            Kind::TcpRoute,
            Kind::UdpRoute,
            Kind::BackendTlsPolicy,
            Kind::ConfigMap,
            Kind::ListenerSet,
            Kind::ServiceAccount,
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
