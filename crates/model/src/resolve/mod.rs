//! Resolution of references between objects: which Service or ExternalService a host name
//! means, and each routing object's conditions (`Accepted`, `ResolvedRefs`). Pure.
//!
//! Host names resolve relative to the namespace of the object that wrote them:
//! `reviews` is `reviews` in that namespace; `reviews.shop`, `reviews.shop.svc` and
//! `reviews.shop.svc.<cluster domain>` are `reviews` in `shop`; anything else is looked up among
//! ExternalService hosts (exact match).

use crate::external::ExternalService;
use crate::policy::DestinationPolicy;
use crate::routing::{HttpRoute, Parent};
mod statuses;
#[cfg(test)]
mod statuses_tests;

use crate::status::Condition;
use crate::types::{Service, ServiceKey};
use crate::world::World;
use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a host name refers to.
#[derive(Clone, Debug)]
pub enum Target<'w> {
    Service(&'w Arc<Service>),
    External(&'w Arc<ExternalService>),
}

/// The Service key a host name means, if it has the shape of a Service name (it may not exist).
pub fn service_key(namespace: &str, host: &str) -> Option<ServiceKey> {
    let host = host.split(':').next().unwrap_or(host);
    let mut parts = host.split('.');
    let name = parts.next().filter(|n| !n.is_empty())?;
    match (parts.next(), parts.next()) {
        (None, _) => Some(ServiceKey::new(namespace, name)),
        (Some(ns), None) => Some(ServiceKey::new(ns, name)),
        (Some(ns), Some("svc")) => Some(ServiceKey::new(ns, name)),
        _ => None,
    }
}

/// Looks a host name up: a Service first, then an ExternalService host.
pub fn lookup_host<'w>(world: &'w World, namespace: &str, host: &str) -> Option<Target<'w>> {
    if let Some(svc) = service_key(namespace, host).and_then(|k| world.services.get(&k)) {
        return Some(Target::Service(svc));
    }
    let bare = host.split(':').next().unwrap_or(host);
    world
        .external_services
        .values()
        .find(|e| e.hosts.iter().any(|h| h == bare))
        .map(Target::External)
}

/// The identity of what a host name means, for comparing hosts written differently
/// (`reviews` in `shop`, `reviews.shop`, `reviews.shop.svc.cluster.local` are one Service).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostId {
    /// A Service (which may not exist).
    Service(ServiceKey),
    /// Any other host name, lower-cased: an ExternalService host or a gateway hostname.
    Name(String),
}

/// What `host`, written in an object of `namespace`, means. A host with the shape of a Service
/// name is that Service when it exists; otherwise an ExternalService host with that exact name
/// wins; otherwise it is the (missing) Service if it has a Service shape, else a plain name.
pub fn host_id(world: &World, namespace: &str, host: &str) -> HostId {
    let bare = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let key = service_key(namespace, &bare);
    if let Some(k) = key.as_ref().filter(|k| world.services.contains_key(*k)) {
        return HostId::Service(k.clone());
    }
    let external = world
        .external_services
        .values()
        .any(|e| e.hosts.contains(&bare));
    match key {
        Some(k) if !external => HostId::Service(k),
        _ => HostId::Name(bare),
    }
}

/// The key [`route_owners`] uses for a host of a route in `namespace` attached to `parent`.
///
/// * On [`Parent::Mesh`], a host naming a Service is keyed `{name}.{namespace}` (its canonical
///   short form; so `reviews` in `default`, `reviews.default` and
///   `reviews.default.svc.cluster.local` are one key, `reviews.default`). Any other host
///   (an ExternalService host) is keyed by itself, lower-cased.
/// * On a gateway, hosts are hostnames matched against the `Host` header and are keyed by
///   themselves, lower-cased (`*.example.com` stays as is).
pub fn host_key(world: &World, parent: &Parent, namespace: &str, host: &str) -> String {
    match parent {
        Parent::Gateway { .. } => host.to_ascii_lowercase(),
        Parent::Mesh => match host_id(world, namespace, host) {
            HostId::Service(k) => format!("{}.{}", k.name, k.namespace),
            HostId::Name(n) => n,
        },
    }
}

/// The parents a route attaches to ([`Parent::Mesh`] when it names none).
pub fn parents_of(route: &HttpRoute) -> Vec<Parent> {
    if route.parents.is_empty() {
        vec![Parent::Mesh]
    } else {
        route.parents.clone()
    }
}

/// The winning route per host on one parent: the routing decision translate and
/// [`statuses`] share.
///
/// Every route attached to `parent` (a route with no parents is attached to the mesh) claims
/// each of its hosts, keyed by [`host_key`]. When two routes claim the same key on the same
/// parent, the first by (namespace, name) owns it; the loser keeps its other hosts (and is
/// reported `Accepted=False` reason `Conflicted` by [`statuses`]). Routes are not filtered by
/// whether the parent Gateway exists, nor by listener hostnames: callers check those.
pub fn route_owners(world: &World, parent: &Parent) -> BTreeMap<String, Arc<HttpRoute>> {
    let mut owners: BTreeMap<String, Arc<HttpRoute>> = BTreeMap::new();
    // `world.routes` is ordered by (kind, namespace, name): first claim wins.
    for route in world.routes.values() {
        if !parents_of(route).contains(parent) {
            continue;
        }
        for host in &route.hosts {
            let key = host_key(world, parent, &route.source.namespace, host);
            owners.entry(key).or_insert_with(|| route.clone());
        }
    }
    owners
}

/// The destination policy in force for `host` (as written in an object of
/// `svc_namespace_of_caller`, resolved with [`host_id`]) on `port`.
///
/// A policy for that exact port beats a port-less one (no merging). Among several policies
/// for the same host and the same port (or several port-less ones), the first by
/// (namespace, name) wins; the others are `Accepted=False` reason `Conflicted` in [`statuses`].
pub fn policy_for(
    world: &World,
    svc_namespace_of_caller: &str,
    host: &str,
    port: u16,
) -> Option<Arc<DestinationPolicy>> {
    let target = host_id(world, svc_namespace_of_caller, host);
    let mut portless = None;
    // `world.policies` is ordered by (kind, namespace, name).
    for policy in world.policies.values() {
        if host_id(world, &policy.source.namespace, &policy.host) != target {
            continue;
        }
        match policy.port {
            Some(p) if p == port => return Some(policy.clone()),
            None if portless.is_none() => portless = Some(policy.clone()),
            _ => {}
        }
    }
    portless
}

/// Conditions (`Accepted`, `ResolvedRefs`) of every TrafficRoute, TrafficPolicy, Gateway and
/// ExternalService in the World. See [`statuses::statuses`] for the rules.
pub fn statuses(world: &World) -> BTreeMap<ObjectRef, Vec<Condition>> {
    statuses::statuses(world)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_key_forms() {
        let k = |ns, h| service_key(ns, h).map(|k| k.to_string());
        assert_eq!(k("default", "reviews").as_deref(), Some("default/reviews"));
        assert_eq!(
            k("default", "reviews:9080").as_deref(),
            Some("default/reviews")
        );
        assert_eq!(
            k("default", "reviews.shop").as_deref(),
            Some("shop/reviews")
        );
        assert_eq!(k("x", "reviews.shop.svc").as_deref(), Some("shop/reviews"));
        assert_eq!(
            k("x", "reviews.shop.svc.cluster.local").as_deref(),
            Some("shop/reviews")
        );
        assert_eq!(k("x", "api.example.com"), None);
    }
}
