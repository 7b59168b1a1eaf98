//! Resolution of references between objects: which Service or ExternalService a host name
//! means, and each routing object's conditions (`Accepted`, `ResolvedRefs`). Pure.
//!
//! Host names resolve relative to the namespace of the object that wrote them:
//! `reviews` is `reviews` in that namespace; `reviews.shop`, `reviews.shop.svc` and
//! `reviews.shop.svc.<cluster domain>` are `reviews` in `shop`; anything else is looked up among
//! ExternalService hosts (exact match).

use crate::external::ExternalService;
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

/// Conditions per routing object.
pub fn statuses(_world: &World) -> BTreeMap<ObjectRef, Vec<Condition>> {
    BTreeMap::new()
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
