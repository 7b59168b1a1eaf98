//! The translation dry run: would the serving pipeline accept the World with this object in it?
//!
//! The object is put into a copy of the current [`World`] (its entries are `Arc`s, so the copy
//! is cheap and the index lock is held only to fetch the World), references are resolved
//! again, and the World is translated for every proxy group the object can change, each formed
//! as the pipeline forms it ([`portolan_pipeline::groups`]: its `ProxyScope` resolved): the
//! default group; every connected mesh group that translates differently from it (another
//! scope, discovery mode or client); and for a Gateway (or a route attached to Gateways) a
//! group its selector matches plus every connected group those Gateways select. Groups that
//! would translate alike are checked once. Each group's resources are assembled into its
//! snapshot by the pipeline's own assembly and consistency check
//! ([`portolan_pipeline::translate_checked`]), then go through the checks of [`crate::checks`]
//! (what stock Envoy would NACK). Nothing is published: the cache and the index are only read.
//!
//! An EnvoyPatchPolicy is checked on the groups it selects: its Gateway's (as for a
//! Gateway), the group its `proxies` selector names, and the connected ones; with
//! `--enable-envoy-patch-policy` the patches are applied as served, so a patch that does not
//! apply (bad path, failed test, missing resource, a result Envoy's messages refuse, an
//! inconsistent snapshot) is refused with its field path.
//!
//! A failure that the current World already has is not blamed on the object: it is allowed
//! with a warning, so an unrelated broken object does not block every change.

use crate::{blast, checks};
use portolan_api::{Kind, ObjectRef};
use portolan_model::GroupKey;
use portolan_model::envoy_patch::PatchTarget;
use portolan_model::routing::Parent;
use portolan_model::{Index, Object, World};
use portolan_pipeline::groups::{group_for_key, group_for_name};
use portolan_translate::proxyless::Client;
use portolan_translate::{Discovery, Options, ProxyGroup};
use portolan_xds::Cache;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Reads the serving pipeline's state and dry-runs objects against it.
#[derive(Clone)]
pub struct DryRun {
    index: Arc<Mutex<Index>>,
    /// The xDS cache, for the proxy groups that are connected (none in tests without one).
    cache: Option<Arc<Cache>>,
    options: Options,
}

/// What a dry run found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Why the object would break translation or the snapshot; `None`: it would not.
    pub failure: Option<String>,
    /// References that do not resolve, and failures the World already had.
    pub warnings: Vec<String>,
    /// The blast radius of an accepted object (see [`crate::blast`]); `None` when refused.
    pub report: Option<blast::Report>,
}

// === impl DryRun ===

impl DryRun {
    pub fn new(index: Arc<Mutex<Index>>, cache: Option<Arc<Cache>>, options: Options) -> Self {
        Self {
            index,
            cache,
            options,
        }
    }

    /// Dry-runs one valid object. CPU-bound: call it off the async workers.
    pub fn run(&self, object: Object) -> Outcome {
        let current = self.index.lock().unwrap_or_else(|p| p.into_inner()).world();
        let object_ref = object.object_ref();
        let gateways = related_gateways(&object);
        let selected = selected_proxies(&object);
        let candidate = with_object(&current, object);
        let mut outcome = Outcome {
            failure: None,
            warnings: unresolved(&candidate, &object_ref),
            report: None,
        };
        let check = |world: &World| {
            let mut groups = self.groups(world, &gateways);
            groups.extend(selected.iter().cloned());
            check_world(world, &groups, &self.options)
        };
        let Err(failure) = check(&candidate) else {
            let mut groups = self.groups(&candidate, &gateways);
            groups.extend(selected.iter().cloned());
            let report = self.blast(&current, &candidate, &groups);
            outcome.warnings.extend(blast::warnings(&report));
            outcome.report = Some(report);
            return outcome;
        };
        match check(&current) {
            Err(already) if already == failure => outcome.warnings.push(format!(
                "the current configuration already fails the dry run, not because of {object_ref}: {failure}"
            )),
            _ => outcome.failure = Some(failure),
        }
        outcome
    }

    /// The blast radius of deleting `object` (its stored version): the groups it reaches in
    /// the current World, and what they lose. A deletion is never refused.
    pub fn run_delete(&self, object: Object) -> Outcome {
        let current = self.index.lock().unwrap_or_else(|p| p.into_inner()).world();
        let gateways = related_gateways(&object);
        let mut groups = self.groups(&current, &gateways);
        groups.extend(selected_proxies(&object));
        let candidate = without_object(&current, &object.object_ref());
        let report = self.blast(&current, &candidate, &groups);
        Outcome {
            failure: None,
            warnings: blast::warnings(&report),
            report: Some(report),
        }
    }

    /// The blast radius of `candidate` against `current` on `groups`, with the connected
    /// proxies per group from the xDS cache's stream registry (unknown without a cache).
    pub fn blast(
        &self,
        current: &World,
        candidate: &World,
        groups: &[ProxyGroup],
    ) -> blast::Report {
        let proxies = self.cache.as_ref().map(|c| c.proxies());
        let connected = |group: &str| {
            proxies.as_ref().map(|all| {
                all.iter()
                    .filter(|p| p.group == group)
                    .map(|p| p.node_id.as_str())
                    .collect::<BTreeSet<_>>()
                    .len()
            })
        };
        blast::report(current, candidate, groups, &self.options, &connected)
    }

    /// Dry-runs several objects applied together, and others deleted, (`portolan validate
    /// --against [--delete]`): the first refusal, or the blast radius of all of them on the
    /// current World.
    pub fn run_all(
        &self,
        objects: Vec<Object>,
        deleted: Vec<Object>,
    ) -> Result<blast::Report, String> {
        let current = self.index.lock().unwrap_or_else(|p| p.into_inner()).world();
        let mut gateways = BTreeSet::new();
        let mut selected = Vec::new();
        let mut candidate: World = (*current).clone();
        for object in objects {
            gateways.extend(related_gateways(&object));
            selected.extend(selected_proxies(&object));
            candidate = with_object(&candidate, object);
        }
        let mut gone = BTreeSet::new();
        for object in deleted {
            gone.extend(related_gateways(&object));
            selected.extend(selected_proxies(&object));
            candidate = without_object(&candidate, &object.object_ref());
        }
        let mut groups = self.groups(&candidate, &gateways);
        // The groups of deleted Gateways (and of routes' Gateways) as they are now.
        for group in self.groups(&current, &gone) {
            if !groups.iter().any(|g| g.name == group.name) {
                groups.push(group);
            }
        }
        groups.extend(selected);
        if let Err(failure) = check_world(&candidate, &groups, &self.options)
            && check_world(&current, &groups, &self.options).err().as_ref() != Some(&failure)
        {
            return Err(failure);
        }
        Ok(self.blast(&current, &candidate, &groups))
    }

    /// The groups to check in `world`, formed as served: the default group, each connected
    /// mesh group that translates differently, and for each related Gateway a group its
    /// selector matches and the connected groups it selects. One group per [`Shape`].
    fn groups(&self, world: &World, gateways: &BTreeSet<ObjectRef>) -> Vec<ProxyGroup> {
        let default = group_for_key(&GroupKey::default(), world);
        let mut seen: BTreeSet<Shape> = [Shape::of(world, &default)].into();
        let mut groups = vec![default];
        let selected = world
            .gateways
            .values()
            .filter(|g| gateways.contains(&g.source))
            .filter_map(|g| selector_group(&g.selector));
        let connected = self
            .cache
            .iter()
            .flat_map(|c| c.groups())
            .filter_map(|key| group_for_name(&key, world).ok());
        for group in selected.chain(connected) {
            let shape = Shape::of(world, &group);
            let related = match shape.gateways.as_slice() {
                [] => true,
                selecting => selecting.iter().any(|g| gateways.contains(g)),
            };
            if related && seen.insert(shape) {
                groups.push(group);
            }
        }
        groups
    }
}

/// What makes two groups translate differently, as far as the dry run's checks can tell: the
/// Gateways that select them (their listeners and routes), and a mesh group's scope,
/// discovery mode and client.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    gateways: Vec<ObjectRef>,
    scope: Option<String>,
    on_demand: bool,
    grpc: bool,
}

// === impl Shape ===

impl Shape {
    fn of(world: &World, group: &ProxyGroup) -> Self {
        Self {
            gateways: portolan_translate::gateways_selecting(world, group),
            scope: group.scope.as_ref().map(ToString::to_string),
            on_demand: group.discovery == Discovery::OnDemand,
            grpc: group.client == Client::Grpc,
        }
    }
}

/// The Gateways whose listeners the object can change: itself, or a route's Gateway parents.
fn related_gateways(object: &Object) -> BTreeSet<ObjectRef> {
    match object {
        Object::Gateway(g) => [g.source.clone()].into(),
        Object::Route(r) => r
            .parents
            .iter()
            .filter_map(|p| match p {
                Parent::Gateway { namespace, name } => {
                    Some(ObjectRef::new(Kind::Gateway, namespace, name))
                }
                Parent::Mesh => None,
            })
            .collect(),
        Object::EnvoyPatch(p) => match &p.target {
            PatchTarget::Gateway(g) => [g.clone()].into(),
            _ => BTreeSet::new(),
        },
        _ => BTreeSet::new(),
    }
}

/// The group an EnvoyPatchPolicy's `proxies` selector names (its cluster and labels), or the
/// group of the Gateway API Gateway it targets, so a patch for proxies not connected yet is
/// checked too.
fn selected_proxies(object: &Object) -> Vec<ProxyGroup> {
    match object {
        Object::EnvoyPatch(_) => patched_proxies(object).into_iter().collect(),
        Object::GatewayApi(resource) => api_gateway_groups(resource),
        _ => Vec::new(),
    }
}

/// The groups of the Gateway API Gateways a Gateway API object can change: a Gateway's own,
/// a route's parent Gateways' (`parentRefs` of kind Gateway, in the route's namespace unless
/// the reference names one).
fn api_gateway_groups(resource: &portolan_api::Resource) -> Vec<ProxyGroup> {
    use portolan_api::Resource;
    let namespace = resource.object_ref().namespace;
    let parents = match resource {
        Resource::ApiGateway(_) => {
            let name = resource.object_ref().name;
            return vec![dry_run_group(&portolan_model::gateway_api::group_of(
                &namespace, &name,
            ))];
        }
        Resource::HttpRoute(r) => &r.spec.parent_refs,
        Resource::GrpcRoute(r) => &r.spec.parent_refs,
        Resource::TlsRoute(r) => &r.spec.parent_refs,
        Resource::TcpRoute(r) => &r.spec.parent_refs,
        Resource::UdpRoute(r) => &r.spec.parent_refs,
        _ => return Vec::new(),
    };
    parents
        .iter()
        .filter(|p| p.kind.as_deref().is_none_or(|k| k == "Gateway"))
        .map(|p| {
            let ns = p.namespace.as_deref().unwrap_or(&namespace);
            dry_run_group(&portolan_model::gateway_api::group_of(ns, &p.name))
        })
        .collect()
}

fn dry_run_group(cluster: &str) -> ProxyGroup {
    let mut group = ProxyGroup::new(cluster);
    group.name = format!("{cluster} (dry run)");
    group
}

/// The proxies an EnvoyPatchPolicy selects (see [`selected_proxies`]).
fn patched_proxies(object: &Object) -> Option<ProxyGroup> {
    let Object::EnvoyPatch(p) = object else {
        return None;
    };
    let mut group = match &p.target {
        PatchTarget::Proxies { cluster, labels } => {
            let mut group = ProxyGroup::new(cluster.as_deref().unwrap_or_default());
            group.labels = labels.clone();
            group
        }
        PatchTarget::ApiGateway(g) => ProxyGroup::new(&portolan_model::gateway_api::group_of(
            &g.namespace,
            &g.name,
        )),
        PatchTarget::Gateway(_) => return None,
    };
    group.name = format!("{} (dry run)", group.cluster);
    Some(group)
}

/// A proxy group a Gateway selector matches (none for a selector that selects nothing).
fn selector_group(selector: &portolan_model::gateway::GatewaySelector) -> Option<ProxyGroup> {
    if selector.cluster.is_none() && selector.metadata.is_empty() {
        return None;
    }
    let mut group = ProxyGroup::new(selector.cluster.as_deref().unwrap_or_default());
    group.labels = selector.metadata.clone();
    group.name = format!("{} (dry run)", group.cluster);
    Some(group)
}

/// A copy of `world` with `object` applied and references resolved again.
pub fn with_object(world: &World, object: Object) -> World {
    let mut world = world.clone();
    match object {
        Object::Route(r) => {
            world.routes.insert(r.source.clone(), r);
        }
        Object::Policy(p) => {
            world.policies.insert(p.source.clone(), p);
        }
        Object::Gateway(g) => {
            world.gateways.insert(g.source.clone(), g);
        }
        Object::ExternalService(e) => {
            world.external_services.insert(e.source.clone(), e);
        }
        Object::Secret(s) => {
            world.secrets.insert(s.source.clone(), s);
        }
        Object::Service(s) => {
            world.services.insert(s.key.clone(), s);
        }
        Object::PeerAuthentication(p) => {
            world.peer_authentications.insert(p.source.clone(), p);
        }
        Object::AccessPolicy(p) => {
            world.access_policies.insert(p.source.clone(), p);
        }
        Object::ProxyScope(p) => {
            world.proxy_scopes.insert(p.source.clone(), p);
        }
        Object::ExtAuth(p) => {
            world.ext_auths.insert(p.meta.source.clone(), p);
        }
        Object::RateLimit(p) => {
            world.rate_limits.insert(p.meta.source.clone(), p);
        }
        Object::EnvoyPatch(p) => {
            world.envoy_patches.insert(p.source.clone(), p);
        }
        Object::RequestAuthentication(r) => {
            world
                .request_authentications
                .insert(r.meta.source.clone(), r);
        }
        Object::GatewayApi(r) => {
            world.gateway_api.insert(r.object_ref(), r);
        }
        // Endpoints are grouped per Service in the World; the webhook never sees them.
        Object::Endpoints(_) => {}
    }
    resolved(world)
}

/// A copy of `world` without `object` and references resolved again (a DELETE).
pub fn without_object(world: &World, object: &ObjectRef) -> World {
    let mut world = world.clone();
    match object.kind {
        Kind::Service => {
            let key = portolan_model::types::ServiceKey::new(&object.namespace, &object.name);
            world.services.remove(&key);
        }
        Kind::TrafficRoute => drop(world.routes.remove(object)),
        Kind::TrafficPolicy => drop(world.policies.remove(object)),
        Kind::Gateway => drop(world.gateways.remove(object)),
        Kind::ExternalService => drop(world.external_services.remove(object)),
        Kind::Secret => drop(world.secrets.remove(object)),
        Kind::PeerAuthentication => drop(world.peer_authentications.remove(object)),
        Kind::AccessPolicy => drop(world.access_policies.remove(object)),
        Kind::ProxyScope => drop(world.proxy_scopes.remove(object)),
        Kind::ExtAuthPolicy => drop(world.ext_auths.remove(object)),
        Kind::RateLimitPolicy => drop(world.rate_limits.remove(object)),
        Kind::EnvoyPatchPolicy => drop(world.envoy_patches.remove(object)),
        Kind::RequestAuthentication => drop(world.request_authentications.remove(object)),
        // Endpoints are grouped per Service in the World; the webhook never sees them.
        Kind::EndpointSlice | Kind::Endpoints => {}
        _ => drop(world.gateway_api.remove(object)),
    }
    resolved(world)
}

/// `world` as a new version with everything derived from its objects computed again.
fn resolved(mut world: World) -> World {
    world.version += 1;
    world.statuses = portolan_model::resolve::statuses(&world);
    let pool = portolan_model::gateway_api::AddressPool::default();
    let compiled = portolan_model::gateway_api::compile(&world, &pool);
    world.api_gateways = compiled.gateways;
    world.api_statuses = compiled.statuses;
    world.api_mesh = std::sync::Arc::new(compiled.mesh);
    portolan_model::edge::finish(&mut world);
    portolan_model::jwt::finish(&mut world);
    world
}

/// The object's false conditions, worded as `portolan validate` words them; for a Gateway API
/// object, those Portolan will write to its status (per parent, per listener).
fn unresolved(world: &World, object: &ObjectRef) -> Vec<String> {
    let own = world
        .statuses
        .get(object)
        .into_iter()
        .flatten()
        .filter(|c| !c.status)
        .map(|c| {
            format!(
                "{object}: {}={} ({}): {}",
                c.type_, c.status, c.reason, c.message
            )
        });
    own.chain(api_unresolved(world, object)).collect()
}

/// The `False` conditions of a Gateway API object's status, each with where it sits.
fn api_unresolved(world: &World, object: &ObjectRef) -> Vec<String> {
    use portolan_model::gateway_api::ApiStatus;
    let line = |at: String, c: &portolan_model::gateway_api::status::ApiCondition| {
        format!(
            "{object}{at}: {}=False ({}): {}",
            c.type_, c.reason, c.message
        )
    };
    let falses = |at: String, conditions: &[portolan_model::gateway_api::status::ApiCondition]| {
        conditions
            .iter()
            .filter(|c| c.status == "False")
            .map(|c| line(at.clone(), c))
            .collect::<Vec<_>>()
    };
    match world.api_statuses.get(object) {
        Some(ApiStatus::Route(r)) => r
            .parents
            .iter()
            .filter(|p| p.controller_name == portolan_api::gwapi::CONTROLLER_NAME)
            .flat_map(|p| falses(format!(" (parent {})", p.parent_ref.name), &p.conditions))
            .collect(),
        Some(ApiStatus::Gateway(g)) => falses(String::new(), &g.conditions)
            .into_iter()
            .chain(
                g.listeners
                    .iter()
                    .flat_map(|l| falses(format!(" (listener {})", l.name), &l.conditions)),
            )
            .collect(),
        Some(ApiStatus::ListenerSet(g)) => falses(String::new(), &g.conditions)
            .into_iter()
            .chain(
                g.listeners
                    .iter()
                    .flat_map(|l| falses(format!(" (listener {})", l.name), &l.conditions)),
            )
            .collect(),
        Some(ApiStatus::GatewayClass(c)) => falses(String::new(), &c.conditions),
        Some(ApiStatus::Policy(p)) => p
            .ancestors
            .iter()
            .flat_map(|a| falses(String::new(), &a.conditions))
            .collect(),
        None => Vec::new(),
    }
}

/// Translates `world` for each group and checks the result; the first failure, naming the group.
fn check_world(world: &World, groups: &[ProxyGroup], options: &Options) -> Result<(), String> {
    for group in groups {
        checks::group(world, group, options)
            .map_err(|e| format!("translation for proxy group {:?}: {e}", group.cluster))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::Resource;
    use serde_json::json;

    fn gateway(name: &str, cluster: &str) -> Object {
        let r = Resource::decode(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"cluster": cluster},
                     "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}
        }))
        .expect("decodes")
        .expect("a Gateway");
        portolan_model::convert::to_object(&r)
    }

    #[test]
    fn groups_are_the_default_and_one_per_distinct_set_of_related_gateways() {
        let cache = Cache::new();
        for group in ["ingress;zone=a", "ingress;zone=b", "web", "edge"] {
            let _rx = cache.subscribe(group);
        }
        let mut index = Index::new();
        index.apply(gateway("edge", "edge"));
        let dry = DryRun::new(Arc::new(Mutex::new(index)), Some(cache), Options::default());
        let object = gateway("ingress", "ingress");
        let related = related_gateways(&object);
        let world = with_object(&dry.index.lock().expect("lock").world(), object);
        let groups: Vec<String> = dry
            .groups(&world, &related)
            .into_iter()
            .map(|g| g.cluster)
            .collect();
        // `ingress` once (its selector's group; both zones select the same Gateways), not `web`
        // (no Gateway) nor `edge` (an unrelated Gateway).
        assert_eq!(groups, ["default", "ingress"]);
        let unrelated = dry.groups(&world, &BTreeSet::new());
        assert_eq!(unrelated.len(), 1);
    }

    fn object(doc: serde_json::Value) -> Object {
        let r = Resource::decode(doc)
            .expect("decodes")
            .expect("a kind Portolan reads");
        assert!(portolan_api::validate::validate(&r).is_empty());
        portolan_model::convert::to_object(&r)
    }

    /// With EnvoyPatchPolicy enabled, a patch that does not apply to the Gateway's proxies
    /// (not connected yet) is refused with its field path; a good one passes; disabled,
    /// nothing is patched so nothing is refused.
    #[test]
    fn a_bad_envoy_patch_is_refused_with_its_field_path() {
        let mut index = Index::new();
        index.apply(gateway("edge", "edge"));
        let index = Arc::new(Mutex::new(index));
        let enabled = Options {
            envoy_patch_policy: true,
            ..Options::default()
        };
        let policy = |value: serde_json::Value| {
            object(
                json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "EnvoyPatchPolicy",
                "metadata": {"name": "buffers", "namespace": "default"},
                "spec": {"targetRef": {"group": "portolan.dev", "kind": "Gateway", "name": "edge"},
                    "patches": [{"type": "Listener", "name": "gateway-8080", "operations": [
                        {"op": "add", "path": "/per_connection_buffer_limit_bytes", "value": value}]}]}}),
            )
        };
        let dry = DryRun::new(index.clone(), None, enabled);
        let failure = dry.run(policy(json!("lots"))).failure.expect("refused");
        assert!(
            failure.contains(
                "EnvoyPatchPolicy default/buffers: spec.patches[0]: the patched Listener"
            ),
            "{failure}"
        );
        assert_eq!(dry.run(policy(json!(32768))).failure, None);
        let off = DryRun::new(index, None, Options::default());
        assert_eq!(off.run(policy(json!("lots"))).failure, None);
    }

    /// A connected group in a namespace with a ProxyScope is checked as it is served: scoped
    /// to what the ProxyScope admits, in its discovery mode, whatever kind the object is.
    #[test]
    fn connected_groups_are_checked_with_their_proxy_scope() {
        let cache = Cache::new();
        let _subscriptions = [cache.subscribe("web;node-ns=shop"), cache.subscribe("web")];
        let mut index = Index::new();
        index.apply(object(json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "ProxyScope",
            "metadata": {"name": "default", "namespace": "shop"},
            "spec": {"hosts": ["./*"], "discovery": "on-demand"}
        })));
        let dry = DryRun::new(Arc::new(Mutex::new(index)), Some(cache), Options::default());
        let service = object(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "cart", "namespace": "shop"},
            "spec": {"ports": [{"port": 80}]}}));
        let related = related_gateways(&service);
        let world = with_object(&dry.index.lock().expect("lock").world(), service);
        let groups = dry.groups(&world, &related);
        let scoped = groups
            .iter()
            .find(|g| g.name == "web;node-ns=shop")
            .unwrap_or_else(|| panic!("the scoped group is checked: {groups:?}"));
        let scope = scoped.scope.as_ref().map(ToString::to_string);
        assert_eq!(scope.as_deref(), Some("shop/*"));
        assert_eq!(scoped.discovery, portolan_translate::Discovery::OnDemand);
    }
}
