//! The Kubernetes Gateway API as a second front end onto the routing model.
//!
//! Sources put the Gateway API objects in the index as they are ([`portolan_api::Resource`]);
//! building a World compiles them ([`compile`]) into one [`ApiGateway`] per Gateway of a
//! Portolan GatewayClass (`controllerName: portolan.dev/gateway-controller`) and the status
//! of every object Portolan owns status for. Objects of other classes are ignored.
//!
//! An [`ApiGateway`] holds, per listener port, virtual hosts whose rules are the model's
//! [`HttpRule`]s of every HTTPRoute attached there, one rule per match, already sorted in
//! the spec's precedence (see [`rules`]); translation only turns them into Envoy resources.

mod address;
mod attach;
mod rules;
pub mod status;

pub use address::{AddressPool, DEFAULT_POOL};
pub use status::ApiStatus;

use crate::gateway::ListenerProtocol;
use crate::routing::HttpRule;
use crate::world::World;
use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A Gateway of a Portolan GatewayClass, ready to translate.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiGateway {
    pub source: ObjectRef,
    pub generation: i64,
    /// The `node.cluster` of its proxies ([`group_of`]).
    pub group: String,
    /// The address its listeners bind.
    pub address: String,
    /// One entry per listener port that has a valid listener.
    pub ports: Vec<ApiPort>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiPort {
    pub port: u16,
    pub protocol: ListenerProtocol,
    /// Sorted by hostname; `*` is the catch-all.
    pub virtual_hosts: Vec<ApiVirtualHost>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiVirtualHost {
    /// A hostname (`*.example.com` allowed) or `*` for any host.
    pub hostname: String,
    /// In precedence order: the first that matches a request wins.
    pub rules: Vec<ApiRule>,
}

/// One match of one HTTPRoute rule.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiRule {
    /// The HTTPRoute it came from.
    pub route: ObjectRef,
    /// The rule's index in `spec.rules`.
    pub index: usize,
    /// Its match (exactly one), action, filters and timeout.
    pub rule: HttpRule,
}

/// What compiling the Gateway API objects of a World gives.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub gateways: BTreeMap<ObjectRef, Arc<ApiGateway>>,
    pub statuses: BTreeMap<ObjectRef, ApiStatus>,
}

/// The `node.cluster` of a Gateway's proxies: `gateway:NAMESPACE/NAME` (no Kubernetes name
/// contains `:` or `/`, so it cannot clash with a proxy group a user names).
pub fn group_of(namespace: &str, name: &str) -> String {
    format!("gateway:{namespace}/{name}")
}

/// Compiles the Gateway API objects of `world` (its `gateway_api` map).
pub fn compile(world: &World, pool: &AddressPool) -> Compiled {
    attach::compile(world, pool)
}

#[cfg(test)]
mod tests;
