//! The Kubernetes Gateway API as a second front end onto the routing model.
//!
//! Sources put the Gateway API objects in the index as they are ([`portolan_api::Resource`]);
//! building a World compiles them ([`compile`]) into one [`ApiGateway`] per Gateway of a
//! Portolan GatewayClass (`controllerName: portolan.dev/gateway-controller`) and the status
//! of every object Portolan owns status for. Objects of other classes are ignored.
//!
//! An [`ApiGateway`] holds, per listener port, virtual hosts whose rules are the model's
//! [`HttpRule`]s of every HTTPRoute and GRPCRoute attached there, one rule per match, already
//! sorted in the spec's precedence (see [`rules`] and [`grpc`]); HTTPS and TLS ports hold
//! filter chains chosen by SNI instead ([`ApiChain`]: one per HTTPS listener, terminating TLS
//! with its certificates, and one per TLSRoute hostname for passthrough, see [`tls`]).
//! Translation only turns them into Envoy resources.

mod address;
mod attach;
pub mod backend_tls;
pub mod converged;
mod frontend;
mod grpc;
mod listener;
pub mod mesh;
mod rules;
pub mod status;
mod tls;

pub use address::{ANY, AddressPool, DEFAULT_POOL};
pub use backend_tls::{BackendTls, BackendTlsMap};
pub use mesh::{MeshPort, MeshRouting};
pub use rules::INVALID_BACKEND_HOST;
pub use status::ApiStatus;

use crate::gateway::TlsSecret;
use crate::routing::{Backend, HttpRule};
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
    /// One entry per listener port that has a valid listener (a UDP port apart from a
    /// TCP-based one of the same number).
    pub ports: Vec<ApiPort>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiPort {
    pub port: u16,
    /// Whether the port speaks TLS (HTTPS and TLS listeners): then `chains` hold its
    /// configuration, else `virtual_hosts` do.
    pub tls: bool,
    /// Whether the port is a TCP listener's: then `chains` hold at most one passthrough
    /// chain (no server names) with the TCPRoute's backends, and there is no TLS inspector.
    pub tcp: bool,
    /// Whether the port is a UDP listener's: then `chains` hold at most one passthrough chain
    /// (no server names) with the UDPRoute's backends, served by Envoy's UDP proxy.
    pub udp: bool,
    /// Plain HTTP: sorted by hostname; `*` is the catch-all.
    pub virtual_hosts: Vec<ApiVirtualHost>,
    /// TLS: the filter chains, chosen by SNI.
    pub chains: Vec<ApiChain>,
    /// The objects whose valid listeners are on the port: the Gateway and/or ListenerSets
    /// attached to it (what a NACK of the port's configuration is attributed to); empty
    /// means the Gateway.
    pub owners: Vec<ObjectRef>,
}

/// One filter chain of a TLS port: an HTTPS listener (terminates TLS, then routes HTTP by its
/// own virtual hosts) or one hostname of a TLS passthrough listener (proxies the TLS bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiChain {
    /// Unique on the port: the listener name (HTTPS), `listener/hostname` (passthrough).
    pub name: String,
    /// The SNI names that select this chain; empty: any name, and none.
    pub server_names: Vec<String>,
    pub kind: ChainKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ChainKind {
    /// HTTPS: TLS with these certificates (from `kubernetes.io/tls` Secrets), then HTTP.
    Terminate {
        certificates: Vec<Arc<TlsSecret>>,
        virtual_hosts: Vec<ApiVirtualHost>,
        /// Client certificates verified against these CAs (Gateway `spec.tls.frontend`).
        client_validation: Option<Arc<ClientValidation>>,
    },
    /// TLS passthrough: the connection goes, still encrypted, to these weighted backends
    /// (an invalid backend keeps its weight and names a cluster that does not exist).
    Passthrough { backends: Vec<Backend> },
}

/// Client certificate validation on an HTTPS listener (Gateway `spec.tls.frontend`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClientValidation {
    /// `NAMESPACE/GATEWAY/PORT`: unique per Gateway and port (names the SDS secret).
    pub name: String,
    /// The PEM bundle: the `ca.crt` of every CA ConfigMap that resolved, joined.
    pub ca_bundle: String,
    /// Those ConfigMaps.
    pub sources: Vec<ObjectRef>,
    /// `AllowInsecureFallback`: a client without a certificate, or with one that does not
    /// verify, is let through.
    pub insecure_fallback: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiVirtualHost {
    /// A hostname (`*.example.com` allowed) or `*` for any host.
    pub hostname: String,
    /// In precedence order: the first that matches a request wins.
    pub rules: Vec<ApiRule>,
}

/// One match of one HTTPRoute or GRPCRoute rule.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiRule {
    /// The HTTPRoute or GRPCRoute it came from.
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
    /// TLS towards Service ports, from BackendTLSPolicies.
    pub backend_tls: BackendTlsMap,
    /// HTTPRoutes and GRPCRoutes attached to Services (GAMMA, see [`mesh`]).
    pub mesh: MeshRouting,
}

/// The `node.cluster` of a Gateway's proxies: `gateway:NAMESPACE/NAME` (no Kubernetes name
/// contains `:` or `/`, so it cannot clash with a proxy group a user names).
pub fn group_of(namespace: &str, name: &str) -> String {
    format!("gateway:{namespace}/{name}")
}

/// Prefix of the service account a Gateway's proxies prove with a token:
/// `portolan-gateway-NAME` in the Gateway's namespace (the name of its provisioned objects).
pub const GATEWAY_SERVICE_ACCOUNT_PREFIX: &str = "portolan-gateway-";

/// The service account whose token may ask for Gateway `name`'s proxy group (in its
/// namespace).
pub fn service_account_of(name: &str) -> String {
    format!("{GATEWAY_SERVICE_ACCOUNT_PREFIX}{name}")
}

/// Whether `cluster` is a Gateway's proxy group ([`group_of`]).
pub fn is_gateway_group(cluster: &str) -> bool {
    cluster.starts_with("gateway:")
}

/// Compiles the Gateway API objects of `world` (its `gateway_api` map).
pub fn compile(world: &World, pool: &AddressPool) -> Compiled {
    attach::compile(world, pool)
}

#[cfg(test)]
mod tests;
