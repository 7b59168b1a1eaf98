//! What a host name resolves to, which route owns a host on a parent, and which policy
//! applies to a destination port (the last two are the model's, so translation and status
//! agree: the first object by (namespace, name) wins a conflict; a port-specific policy beats
//! a port-less one for its port).

use portolan_api::ObjectRef;
use portolan_model::World;
use portolan_model::resolve::{Target, lookup_host, parents_of};
use portolan_model::routing::{HttpRoute, Parent};

pub(crate) use portolan_model::resolve::{policy_for, route_owners};

/// What a host name resolves to, comparable across namespaces and spellings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TargetId {
    Service(portolan_model::ServiceKey),
    /// An ExternalService (by object) and the host named (without a port).
    External(ObjectRef, String),
}

/// The identity of what `host` means for an object in `namespace`.
pub(crate) fn target_id(world: &World, namespace: &str, host: &str) -> Option<TargetId> {
    match lookup_host(world, namespace, host)? {
        Target::Service(svc) => Some(TargetId::Service(svc.key.clone())),
        Target::External(ext) => {
            let bare = host.split(':').next().unwrap_or(host);
            Some(TargetId::External(ext.source.clone(), bare.to_string()))
        }
    }
}

/// Whether a route attaches to `parent` (no parents means the mesh).
pub(crate) fn attaches_to(route: &HttpRoute, parent: &Parent) -> bool {
    parents_of(route).contains(parent)
}
