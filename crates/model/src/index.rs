//! The Index: where source objects change. Sources apply and delete objects and report
//! errors; [`Index::world`] hands out the current immutable [`World`].
//!
//! The index is plain data behind whatever lock the caller holds; it does no I/O and keeps no
//! clock. Applying an object equal to the one held is not a change and does not bump the version.

use crate::changes::{Change, Recorder};
use crate::error::ConfigError;
use crate::external::ExternalService;
use crate::gateway::{Gateway, TlsSecret};
use crate::policy::DestinationPolicy;
use crate::proxy_scope::ProxyScope;
use crate::routing::HttpRoute;
use crate::security::{AccessPolicy, PeerAuthentication};
use crate::types::{EndpointGroup, Object, Service, ServiceKey};
use crate::world::World;
use portolan_api::{Kind, ObjectRef};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Index {
    services: BTreeMap<ServiceKey, Arc<Service>>,
    endpoints: BTreeMap<ObjectRef, Arc<EndpointGroup>>,
    routes: BTreeMap<ObjectRef, Arc<HttpRoute>>,
    policies: BTreeMap<ObjectRef, Arc<DestinationPolicy>>,
    gateways: BTreeMap<ObjectRef, Arc<Gateway>>,
    external_services: BTreeMap<ObjectRef, Arc<ExternalService>>,
    secrets: BTreeMap<ObjectRef, Arc<TlsSecret>>,
    peer_authentications: BTreeMap<ObjectRef, Arc<PeerAuthentication>>,
    access_policies: BTreeMap<ObjectRef, Arc<AccessPolicy>>,
    proxy_scopes: BTreeMap<ObjectRef, Arc<ProxyScope>>,
    ext_auths: BTreeMap<ObjectRef, Arc<crate::edge::ExtAuth>>,
    rate_limits: BTreeMap<ObjectRef, Arc<crate::edge::RateLimit>>,
    envoy_patches: BTreeMap<ObjectRef, Arc<crate::envoy_patch::EnvoyPatch>>,
    request_authentications: BTreeMap<ObjectRef, Arc<crate::jwt::RequestAuthentication>>,
    gateway_api: BTreeMap<ObjectRef, Arc<portolan_api::Resource>>,
    /// Source documents by object (Kubernetes source only; see `World::manifests`).
    manifests: BTreeMap<ObjectRef, Arc<str>>,
    /// Where Gateway API Gateways without `spec.addresses` get their address.
    gateway_pool: crate::gateway_api::AddressPool,
    /// Errors per reporter (a file, a watcher), replaced whole on each report.
    errors: BTreeMap<String, Vec<ConfigError>>,
    version: u64,
    current: Option<Arc<World>>,
    /// What each version changed (see [`crate::changes`]).
    log: Recorder,
}

// === impl Index ===

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// An index whose Gateway API Gateways take their addresses from `pool`.
    pub fn with_gateway_pool(pool: crate::gateway_api::AddressPool) -> Self {
        Self {
            gateway_pool: pool,
            ..Self::default()
        }
    }

    /// Adds or replaces an object. Returns whether anything changed.
    pub fn apply(&mut self, object: Object) -> bool {
        let what = self.change_of(&object);
        let changed = match object {
            Object::Service(svc) => {
                let key = svc.key.clone();
                replace(&mut self.services, key, svc)
            }
            Object::Endpoints(group) => {
                let key = group.source.clone();
                replace(&mut self.endpoints, key, group)
            }
            Object::Route(r) => replace(&mut self.routes, r.source.clone(), r),
            Object::Policy(p) => replace(&mut self.policies, p.source.clone(), p),
            Object::Gateway(g) => replace(&mut self.gateways, g.source.clone(), g),
            Object::ExternalService(e) => replace(&mut self.external_services, e.source.clone(), e),
            Object::Secret(s) => replace(&mut self.secrets, s.source.clone(), s),
            Object::PeerAuthentication(p) => {
                replace(&mut self.peer_authentications, p.source.clone(), p)
            }
            Object::AccessPolicy(p) => replace(&mut self.access_policies, p.source.clone(), p),
            Object::ProxyScope(p) => replace(&mut self.proxy_scopes, p.source.clone(), p),
            Object::ExtAuth(p) => replace(&mut self.ext_auths, p.meta.source.clone(), p),
            Object::RateLimit(p) => replace(&mut self.rate_limits, p.meta.source.clone(), p),
            Object::EnvoyPatch(p) => replace(&mut self.envoy_patches, p.source.clone(), p),
            Object::RequestAuthentication(r) => {
                replace(&mut self.request_authentications, r.meta.source.clone(), r)
            }
            Object::GatewayApi(r) => replace(&mut self.gateway_api, r.object_ref(), r),
        };
        self.touch_with(changed, what)
    }

    /// What applying `object` changes, if it changes anything: an endpoint group, the
    /// endpoints of its Service (and of the Service it belonged to before); anything else,
    /// something else.
    fn change_of(&self, object: &Object) -> Change {
        let Object::Endpoints(group) = object else {
            return Change::Other;
        };
        let mut services = vec![group.service.clone()];
        if let Some(old) = self.endpoints.get(&group.source)
            && old.service != group.service
        {
            services.push(old.service.clone());
        }
        Change::Endpoints(services)
    }

    /// Records the source document of an object. Not a change by itself: it reaches the next
    /// World built (a document that differs only in what the model ignores makes none).
    pub fn set_manifest(&mut self, object: ObjectRef, manifest: Arc<str>) {
        self.manifests.insert(object, manifest);
    }

    /// Removes an object. Returns whether it was there.
    pub fn delete(&mut self, object: &ObjectRef) -> bool {
        self.manifests.remove(object);
        let what = match self.endpoints.get(object) {
            Some(old) => Change::Endpoints(vec![old.service.clone()]),
            None => Change::Other,
        };
        let changed = match object.kind {
            Kind::Service => self
                .services
                .remove(&ServiceKey::new(&object.namespace, &object.name))
                .is_some(),
            Kind::EndpointSlice | Kind::Endpoints => self.endpoints.remove(object).is_some(),
            Kind::TrafficRoute => self.routes.remove(object).is_some(),
            Kind::TrafficPolicy => self.policies.remove(object).is_some(),
            Kind::Gateway => self.gateways.remove(object).is_some(),
            Kind::ExternalService => self.external_services.remove(object).is_some(),
            Kind::Secret => self.secrets.remove(object).is_some(),
            Kind::PeerAuthentication => self.peer_authentications.remove(object).is_some(),
            Kind::AccessPolicy => self.access_policies.remove(object).is_some(),
            Kind::ProxyScope => self.proxy_scopes.remove(object).is_some(),
            Kind::ExtAuthPolicy => self.ext_auths.remove(object).is_some(),
            Kind::RateLimitPolicy => self.rate_limits.remove(object).is_some(),
            Kind::EnvoyPatchPolicy => self.envoy_patches.remove(object).is_some(),
            Kind::RequestAuthentication => self.request_authentications.remove(object).is_some(),
            Kind::Namespace
            | Kind::ServiceAccount
            | Kind::GatewayClass
            | Kind::ApiGateway
            | Kind::HttpRoute
            | Kind::ReferenceGrant
            | Kind::GrpcRoute
            | Kind::TlsRoute
            | Kind::TcpRoute
            | Kind::UdpRoute
            | Kind::BackendTlsPolicy
            | Kind::ListenerSet
            | Kind::ConfigMap => self.gateway_api.remove(object).is_some(),
        };
        self.touch_with(changed, what)
    }

    /// Replaces the errors reported by one reporter (`errors` empty clears them).
    pub fn set_errors(&mut self, reporter: &str, mut errors: Vec<ConfigError>) -> bool {
        errors.sort();
        let old = if errors.is_empty() {
            self.errors.remove(reporter)
        } else {
            self.errors.insert(reporter.to_string(), errors.clone())
        };
        let changed = old.unwrap_or_default() != errors;
        self.touch(changed)
    }

    /// Whether the index holds this object.
    pub fn contains(&self, object: &ObjectRef) -> bool {
        match object.kind {
            Kind::Service => self
                .services
                .contains_key(&ServiceKey::new(&object.namespace, &object.name)),
            Kind::EndpointSlice | Kind::Endpoints => self.endpoints.contains_key(object),
            Kind::TrafficRoute => self.routes.contains_key(object),
            Kind::TrafficPolicy => self.policies.contains_key(object),
            Kind::Gateway => self.gateways.contains_key(object),
            Kind::ExternalService => self.external_services.contains_key(object),
            Kind::Secret => self.secrets.contains_key(object),
            Kind::PeerAuthentication => self.peer_authentications.contains_key(object),
            Kind::AccessPolicy => self.access_policies.contains_key(object),
            Kind::ProxyScope => self.proxy_scopes.contains_key(object),
            Kind::ExtAuthPolicy => self.ext_auths.contains_key(object),
            Kind::RateLimitPolicy => self.rate_limits.contains_key(object),
            Kind::EnvoyPatchPolicy => self.envoy_patches.contains_key(object),
            Kind::RequestAuthentication => self.request_authentications.contains_key(object),
            Kind::Namespace
            | Kind::ServiceAccount
            | Kind::GatewayClass
            | Kind::ApiGateway
            | Kind::HttpRoute
            | Kind::ReferenceGrant
            | Kind::GrpcRoute
            | Kind::TlsRoute
            | Kind::TcpRoute
            | Kind::UdpRoute
            | Kind::BackendTlsPolicy
            | Kind::ListenerSet
            | Kind::ConfigMap => self.gateway_api.contains_key(object),
        }
    }

    /// The current World; built once per version and shared.
    pub fn world(&mut self) -> Arc<World> {
        if let Some(w) = &self.current {
            return w.clone();
        }
        let world = Arc::new(self.build());
        self.current = Some(world.clone());
        world
    }

    fn touch(&mut self, changed: bool) -> bool {
        self.touch_with(changed, Change::Other)
    }

    /// Bumps the version when `changed`, recording that `what` made the new one.
    fn touch_with(&mut self, changed: bool, what: Change) -> bool {
        if changed {
            self.version += 1;
            self.current = None;
            self.log.record(self.version, what);
        }
        changed
    }

    fn build(&mut self) -> World {
        let mut slices: BTreeMap<ServiceKey, Vec<Arc<EndpointGroup>>> = BTreeMap::new();
        let mut legacy: BTreeMap<ServiceKey, Vec<Arc<EndpointGroup>>> = BTreeMap::new();
        for group in self.endpoints.values() {
            let by_kind = match group.source.kind {
                Kind::Endpoints => &mut legacy,
                _ => &mut slices,
            };
            by_kind
                .entry(group.service.clone())
                .or_default()
                .push(group.clone());
        }
        for (svc, groups) in legacy {
            slices.entry(svc).or_insert(groups);
        }
        let mut world = World {
            version: self.version,
            services: self.services.clone(),
            endpoints: slices,
            routes: self.routes.clone(),
            policies: self.policies.clone(),
            gateways: self.gateways.clone(),
            external_services: self.external_services.clone(),
            secrets: self.secrets.clone(),
            peer_authentications: self.peer_authentications.clone(),
            access_policies: self.access_policies.clone(),
            proxy_scopes: self.proxy_scopes.clone(),
            ext_auths: self.ext_auths.clone(),
            rate_limits: self.rate_limits.clone(),
            ext_auth: Default::default(),
            rate_limit: Default::default(),
            envoy_patches: self.envoy_patches.clone(),
            request_authentications: self.request_authentications.clone(),
            jwt: Default::default(),
            statuses: BTreeMap::new(),
            errors: self.errors.values().flatten().cloned().collect(),
            gateway_api: self.gateway_api.clone(),
            manifests: self.manifests.clone(),
            api_gateways: BTreeMap::new(),
            api_statuses: BTreeMap::new(),
            backend_tls: BTreeMap::new(),
            api_mesh: Default::default(),
            changes: self.log.log(self.version),
        };
        world.statuses = crate::resolve::statuses(&world);
        let compiled = crate::gateway_api::compile(&world, &self.gateway_pool);
        world.api_gateways = compiled.gateways;
        world.api_statuses = compiled.statuses;
        world.backend_tls = compiled.backend_tls;
        world.api_mesh = Arc::new(compiled.mesh);
        crate::edge::finish(&mut world);
        crate::jwt::finish(&mut world);
        world
    }
}

/// Inserts `value` (the source's own `Arc`, shared) unless an equal one is there; returns
/// whether the map changed.
fn replace<K: Ord, V: PartialEq>(map: &mut BTreeMap<K, Arc<V>>, key: K, value: Arc<V>) -> bool {
    match map.get(&key) {
        Some(old) if Arc::ptr_eq(old, &value) || **old == *value => false,
        _ => {
            map.insert(key, value);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::*;
    use portolan_api::FieldError;
    use std::collections::BTreeSet;

    fn mk_service(ns: &str, name: &str, port: u16) -> Object {
        Object::from(Service {
            key: ServiceKey::new(ns, name),
            ports: vec![ServicePort {
                name: String::new(),
                port,
                protocol: Protocol::Tcp,
                target_port: None,
                app_protocol: None,
            }],
            cluster_ip: None,
            external_name: None,
            labels: Default::default(),
        })
    }

    fn mk_group(kind: Kind, name: &str, svc: &str, ip: &str) -> Object {
        Object::from(EndpointGroup {
            source: ObjectRef::new(kind, "default", name),
            service: ServiceKey::new("default", svc),
            address_type: AddressType::Ipv4,
            labels: Default::default(),
            subsets: vec![EndpointSubset {
                ports: vec![EndpointPort {
                    name: String::new(),
                    port: 8080,
                    protocol: Protocol::Tcp,
                }],
                endpoints: vec![Endpoint {
                    address: ip.to_string(),
                    ready: true,
                    serving: true,
                    terminating: false,
                    zone: None,
                    node_name: None,
                    hostname: None,
                }],
            }],
        })
    }

    #[test]
    fn the_world_shares_the_objects_sources_hand_in() {
        let mut idx = Index::new();
        let service = mk_service("default", "reviews", 80);
        let group = mk_group(Kind::EndpointSlice, "reviews-a", "reviews", "10.0.0.1");
        assert!(idx.apply(service.clone()));
        assert!(idx.apply(group.clone()));
        let world = idx.world();
        let (Object::Service(s), Object::Endpoints(g)) = (&service, &group) else {
            unreachable!("made above");
        };
        // One copy of each object: the source's `Arc` is the one the World holds.
        assert!(Arc::ptr_eq(&world.services[&s.key], s));
        assert!(Arc::ptr_eq(&world.endpoints[&g.service][0], g));
        // An equal object in a new allocation changes nothing and keeps the first copy.
        assert!(!idx.apply(mk_service("default", "reviews", 80)));
        assert!(Arc::ptr_eq(&idx.world().services[&s.key], s));
    }

    #[test]
    fn apply_bumps_version_only_on_change() {
        let mut idx = Index::new();
        assert!(idx.apply(mk_service("default", "a", 80)));
        let w1 = idx.world();
        assert_eq!(w1.version, 1);
        assert!(!idx.apply(mk_service("default", "a", 80)));
        assert!(Arc::ptr_eq(&w1, &idx.world()));
        assert!(idx.apply(mk_service("default", "a", 81)));
        assert_eq!(idx.world().version, 2);
    }

    #[test]
    fn unchanged_services_keep_their_allocation() {
        let mut idx = Index::new();
        idx.apply(mk_service("default", "a", 80));
        idx.apply(mk_service("default", "b", 80));
        let w1 = idx.world();
        idx.apply(mk_service("default", "b", 81));
        let w2 = idx.world();
        let a = ServiceKey::new("default", "a");
        assert!(Arc::ptr_eq(&w1.services[&a], &w2.services[&a]));
    }

    #[test]
    fn delete_removes_and_reports() {
        let mut idx = Index::new();
        idx.apply(mk_service("default", "a", 80));
        let r = ObjectRef::new(Kind::Service, "default", "a");
        assert!(idx.contains(&r));
        assert!(idx.delete(&r));
        assert!(!idx.delete(&r));
        assert!(idx.world().services.is_empty());
    }

    #[test]
    fn slices_win_over_legacy_endpoints() {
        let mut idx = Index::new();
        idx.apply(mk_group(Kind::Endpoints, "a", "a", "10.0.0.9"));
        let w = idx.world();
        assert_eq!(w.endpoints_of(&ServiceKey::new("default", "a")).len(), 1);
        idx.apply(mk_group(Kind::EndpointSlice, "a-1", "a", "10.0.0.1"));
        idx.apply(mk_group(Kind::EndpointSlice, "a-2", "a", "10.0.0.2"));
        let w = idx.world();
        let groups = w.endpoints_of(&ServiceKey::new("default", "a"));
        assert_eq!(groups.len(), 2);
        assert!(groups.iter().all(|g| g.source.kind == Kind::EndpointSlice));
    }

    #[test]
    fn errors_are_replaced_per_reporter() {
        let mut idx = Index::new();
        let e = ConfigError {
            location: "a.yaml#0".into(),
            object: None,
            error: FieldError::new(Default::default(), "bad"),
        };
        assert!(idx.set_errors("a.yaml", vec![e.clone()]));
        assert!(!idx.set_errors("a.yaml", vec![e]));
        assert_eq!(idx.world().errors.len(), 1);
        assert!(idx.set_errors("a.yaml", vec![]));
        assert!(idx.world().errors.is_empty());
    }

    /// A World tells which Services' endpoints are all that changed since an earlier World of
    /// the same index, and cannot tell across anything else.
    #[test]
    fn worlds_report_endpoint_only_changes() {
        let (a, b) = (
            ServiceKey::new("default", "a"),
            ServiceKey::new("default", "b"),
        );
        let mut idx = Index::new();
        idx.apply(mk_service("default", "a", 80));
        idx.apply(mk_service("default", "b", 80));
        idx.apply(mk_group(Kind::EndpointSlice, "a-1", "a", "10.0.0.1"));
        let w1 = idx.world();
        assert_eq!(w1.endpoint_changes_since(w1.stamp()), Some(BTreeSet::new()));
        idx.apply(mk_group(Kind::EndpointSlice, "a-1", "a", "10.0.0.2"));
        idx.apply(mk_group(Kind::EndpointSlice, "b-1", "b", "10.0.0.3"));
        let w2 = idx.world();
        let both: BTreeSet<ServiceKey> = [a.clone(), b.clone()].into();
        assert_eq!(w2.endpoint_changes_since(w1.stamp()), Some(both.clone()));
        // A slice moved from a to b changes both; its deletion, b.
        idx.apply(mk_group(Kind::EndpointSlice, "a-1", "b", "10.0.0.2"));
        idx.delete(&ObjectRef::new(Kind::EndpointSlice, "default", "b-1"));
        let w3 = idx.world();
        assert_eq!(w3.endpoint_changes_since(w2.stamp()), Some(both));
        // Anything else: no answer, from any World before it.
        idx.apply(mk_service("default", "b", 81));
        let w4 = idx.world();
        assert_eq!(w4.endpoint_changes_since(w3.stamp()), None);
        assert_eq!(w4.endpoint_changes_since(w1.stamp()), None);
        // An older World, another index, a World altered by hand: no answer.
        assert_eq!(w3.endpoint_changes_since(w4.stamp()), None);
        let mut other = Index::new();
        other.apply(mk_service("default", "a", 80));
        let o1 = other.world();
        assert_eq!(w4.endpoint_changes_since(o1.stamp()), None);
        let mut bumped = (*w3).clone();
        bumped.version += 1;
        assert_eq!(bumped.endpoint_changes_since(w3.stamp()), None);
        assert_eq!(
            World::default().endpoint_changes_since(World::default().stamp()),
            None
        );
    }

    /// The log forgets the oldest changes: a World further behind gets no answer.
    #[test]
    fn a_world_further_behind_than_the_log_gets_no_answer() {
        let mut idx = Index::new();
        idx.apply(mk_service("default", "a", 80));
        let w1 = idx.world();
        for i in 0..crate::changes::LOG_LEN + 1 {
            let ip = format!("10.0.{}.{}", i / 250, i % 250);
            idx.apply(mk_group(Kind::EndpointSlice, "a-1", "a", &ip));
        }
        let w2 = idx.world();
        assert_eq!(w2.endpoint_changes_since(w1.stamp()), None);
        idx.apply(mk_group(Kind::EndpointSlice, "a-1", "a", "10.1.0.1"));
        let one: BTreeSet<ServiceKey> = [ServiceKey::new("default", "a")].into();
        assert_eq!(idx.world().endpoint_changes_since(w2.stamp()), Some(one));
    }
}
