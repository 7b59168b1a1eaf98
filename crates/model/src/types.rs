//! Plain model types: services, their ports, and the endpoints behind them.

use crate::external::ExternalService;
use crate::gateway::{Gateway, TlsSecret};
use crate::policy::DestinationPolicy;
use crate::routing::HttpRoute;
use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// `namespace/name` of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Transport protocol of a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

/// Where a Service port sends traffic on the endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ServicePort {
    /// Empty when the Service has a single unnamed port.
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// `None` means the same number as `port`.
    pub target_port: Option<TargetPort>,
    /// `appProtocol` (`http`, `http2`, `grpc`, `kubernetes.io/h2c`, ...), if set.
    pub app_protocol: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Service {
    pub key: ServiceKey,
    pub ports: Vec<ServicePort>,
    pub cluster_ip: Option<String>,
    /// Set for `type: ExternalName`.
    pub external_name: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Address family of an endpoint group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum AddressType {
    #[default]
    Ipv4,
    Ipv6,
    Fqdn,
}

/// One endpoint address, with the conditions Kubernetes reports for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Endpoint {
    /// An IP address, or a DNS name for FQDN slices.
    pub address: String,
    /// Ready to receive new traffic.
    pub ready: bool,
    /// Serving, even if terminating.
    pub serving: bool,
    pub terminating: bool,
    pub zone: Option<String>,
    pub node_name: Option<String>,
    pub hostname: Option<String>,
}

impl Endpoint {
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

/// A named port on a set of endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct EndpointPort {
    /// Matches the Service port's `name` (empty for an unnamed port).
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// Ports and the endpoints that serve all of them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EndpointSubset {
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// One EndpointSlice (one subset), or a core/v1 Endpoints object (one subset per `subsets[]`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EndpointGroup {
    /// The object this came from: an EndpointSlice or an Endpoints.
    #[serde(skip)]
    pub source: ObjectRef,
    pub service: ServiceKey,
    pub address_type: AddressType,
    pub subsets: Vec<EndpointSubset>,
    /// Labels of every endpoint in the group (the EndpointSlice's own labels, less the
    /// `kubernetes.io/` and `endpointslice.kubernetes.io/` ones); subsets select on them.
    pub labels: BTreeMap<String, String>,
}

/// Anything a source can apply to the index. Each variant holds its object behind an `Arc`,
/// which the index, the Worlds built from it and a source that remembers what it applied
/// (the files source) all share: one copy of each object in the process.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Service(Arc<Service>),
    Endpoints(Arc<EndpointGroup>),
    Route(Arc<HttpRoute>),
    Policy(Arc<DestinationPolicy>),
    Gateway(Arc<Gateway>),
    ExternalService(Arc<ExternalService>),
    Secret(Arc<TlsSecret>),
    PeerAuthentication(Arc<crate::security::PeerAuthentication>),
    AccessPolicy(Arc<crate::security::AccessPolicy>),
    ProxyScope(Arc<crate::proxy_scope::ProxyScope>),
    ExtAuth(Arc<crate::edge::ExtAuth>),
    RateLimit(Arc<crate::edge::RateLimit>),
    EnvoyPatch(Arc<crate::envoy_patch::EnvoyPatch>),
    RequestAuthentication(Arc<crate::jwt::RequestAuthentication>),
    /// A Gateway API object, a Namespace or a ServiceAccount, kept as read (compiled when a
    /// World is built).
    GatewayApi(Arc<portolan_api::Resource>),
}

/// `Object::from(value)`: the variant for the value's type, its `Arc` made here.
macro_rules! object_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for Object {
            fn from(value: $ty) -> Self {
                Object::$variant(Arc::new(value))
            }
        })*
    };
}

object_from!(
    Service(Service),
    Endpoints(EndpointGroup),
    Route(HttpRoute),
    Policy(DestinationPolicy),
    Gateway(Gateway),
    ExternalService(ExternalService),
    Secret(TlsSecret),
    PeerAuthentication(crate::security::PeerAuthentication),
    AccessPolicy(crate::security::AccessPolicy),
    ProxyScope(crate::proxy_scope::ProxyScope),
    ExtAuth(crate::edge::ExtAuth),
    RateLimit(crate::edge::RateLimit),
    EnvoyPatch(crate::envoy_patch::EnvoyPatch),
    RequestAuthentication(crate::jwt::RequestAuthentication),
    GatewayApi(portolan_api::Resource),
);

impl Object {
    pub fn object_ref(&self) -> ObjectRef {
        match self {
            Object::Service(s) => {
                ObjectRef::new(portolan_api::Kind::Service, &s.key.namespace, &s.key.name)
            }
            Object::Endpoints(e) => e.source.clone(),
            Object::Route(r) => r.source.clone(),
            Object::Policy(p) => p.source.clone(),
            Object::Gateway(g) => g.source.clone(),
            Object::ExternalService(e) => e.source.clone(),
            Object::Secret(s) => s.source.clone(),
            Object::PeerAuthentication(p) => p.source.clone(),
            Object::AccessPolicy(p) => p.source.clone(),
            Object::ProxyScope(p) => p.source.clone(),
            Object::ExtAuth(p) => p.meta.source.clone(),
            Object::RateLimit(p) => p.meta.source.clone(),
            Object::EnvoyPatch(p) => p.source.clone(),
            Object::RequestAuthentication(r) => r.meta.source.clone(),
            Object::GatewayApi(r) => r.object_ref(),
        }
    }
}
