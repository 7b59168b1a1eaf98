//! The World: one immutable, versioned snapshot of everything the sources know.

use crate::error::ConfigError;
use crate::external::ExternalService;
use crate::gateway::{Gateway, TlsSecret};
use crate::policy::DestinationPolicy;
use crate::proxy_scope::ProxyScope;
use crate::routing::HttpRoute;
use crate::security::{AccessPolicy, PeerAuthentication};
use crate::status::Condition;
use crate::types::{EndpointGroup, Service, ServiceKey};
use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An immutable snapshot of the mesh. Cheap to share (`Arc<World>`); entries are `Arc`s, so
/// an unchanged service is the same allocation from one World to the next and translation
/// can reuse its output.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// Increases by one for every World that differs from the previous one.
    pub version: u64,
    pub services: BTreeMap<ServiceKey, Arc<Service>>,
    /// Endpoint groups per service. EndpointSlices win: core/v1 Endpoints are used only for a
    /// service that has no EndpointSlice (as Kubernetes mirrors one into the other).
    pub endpoints: BTreeMap<ServiceKey, Vec<Arc<EndpointGroup>>>,
    /// Routing objects (TrafficRoutes), by source object.
    pub routes: BTreeMap<ObjectRef, Arc<HttpRoute>>,
    /// Destination policies (TrafficPolicies), by source object.
    pub policies: BTreeMap<ObjectRef, Arc<DestinationPolicy>>,
    pub gateways: BTreeMap<ObjectRef, Arc<Gateway>>,
    pub external_services: BTreeMap<ObjectRef, Arc<ExternalService>>,
    /// `kubernetes.io/tls` Secrets (gateway certificates).
    pub secrets: BTreeMap<ObjectRef, Arc<TlsSecret>>,
    pub peer_authentications: BTreeMap<ObjectRef, Arc<PeerAuthentication>>,
    pub access_policies: BTreeMap<ObjectRef, Arc<AccessPolicy>>,
    /// Proxy scopes (what proxies reach, how they discover it), by source object.
    pub proxy_scopes: BTreeMap<ObjectRef, Arc<ProxyScope>>,
    /// ExtAuthPolicies, by source object.
    pub ext_auths: BTreeMap<ObjectRef, Arc<crate::edge::ExtAuth>>,
    /// RateLimitPolicies, by source object.
    pub rate_limits: BTreeMap<ObjectRef, Arc<crate::edge::RateLimit>>,
    /// What the ExtAuthPolicies attach to (computed from this World).
    pub ext_auth: Arc<crate::policy_attach::Resolution>,
    /// What the RateLimitPolicies attach to (computed from this World).
    pub rate_limit: Arc<crate::policy_attach::Resolution>,
    /// Envoy patch policies (the escape hatch), by source object.
    pub envoy_patches: BTreeMap<ObjectRef, Arc<crate::envoy_patch::EnvoyPatch>>,
    /// JWT authentication policies, by source object.
    pub request_authentications: BTreeMap<ObjectRef, Arc<crate::jwt::RequestAuthentication>>,
    /// What the RequestAuthentications attach to (computed from this World).
    pub jwt: Arc<crate::policy_attach::Resolution>,
    /// Conditions of every routing object (`Accepted`, `ResolvedRefs`), computed from this World.
    pub statuses: BTreeMap<ObjectRef, Vec<Condition>>,
    /// Every rejected document or object, sorted by location.
    pub errors: Vec<ConfigError>,
    /// Gateway API objects (and Namespaces) as the sources read them.
    pub gateway_api: BTreeMap<ObjectRef, Arc<portolan_api::Resource>>,
    /// The source documents behind the objects, as a user would re-apply them (metadata a
    /// server sets removed), by object. Only the Kubernetes source fills it, for the objects a
    /// user owns (not Secrets, EndpointSlices or Endpoints); it is what `portolan rollback`
    /// prints in Kubernetes mode.
    pub manifests: BTreeMap<ObjectRef, Arc<str>>,
    /// Portolan's Gateway API Gateways, compiled from `gateway_api`.
    pub api_gateways: BTreeMap<ObjectRef, Arc<crate::gateway_api::ApiGateway>>,
    /// The status of every Gateway API object Portolan owns status for.
    pub api_statuses: BTreeMap<ObjectRef, crate::gateway_api::ApiStatus>,
    /// TLS the proxies of Portolan's Gateway API Gateways originate towards Service ports
    /// (BackendTLSPolicy), compiled from `gateway_api`.
    pub backend_tls: crate::gateway_api::BackendTlsMap,
    /// HTTPRoutes and GRPCRoutes with Service parents (GAMMA), compiled from `gateway_api`.
    pub api_mesh: Arc<crate::gateway_api::MeshRouting>,
    /// What the index changed before this World (see [`crate::changes`]); empty for a World
    /// made outside an index.
    pub changes: crate::changes::ChangeLog,
}

impl World {
    pub fn service(&self, key: &ServiceKey) -> Option<&Arc<Service>> {
        self.services.get(key)
    }

    /// The endpoint groups of a service (empty when it has none).
    pub fn endpoints_of(&self, key: &ServiceKey) -> &[Arc<EndpointGroup>] {
        self.endpoints
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}
