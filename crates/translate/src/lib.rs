//! Portolan's translation: a [`World`](portolan_model::World) snapshot and a proxy group in,
//! Envoy xDS resources out.
//!
//! Translation is a pure function: no I/O, no clock, no randomness. The same World always
//! gives the same [`Resources`], each list sorted by resource name, so the cache can compare
//! and hash encoded bytes.
//!
//! Every TCP Service port becomes an EDS cluster (see [`names::cluster_name`]) with its
//! ClusterLoadAssignment, plus one per subset its TrafficPolicy defines; every ExternalService
//! host and port a STATIC or DNS cluster. TrafficPolicies set the clusters' load balancing,
//! circuit breakers, outlier detection, health checks and upstream TLS.
//!
//! There is one translation path (`translation.rs`): [`translate`] runs it cold and returns
//! the messages; a [`Translator`] runs it with a per-Service memo, so a rebuild translates
//! only the Services whose inputs changed, and keeps what its [`Keep`] makes of each message
//! (say, its encoding).
//!
//! A proxy group that no Gateway selects gets the `mesh-outbound` listener, whose route
//! configuration has a virtual host per Service port (and external HTTP port); TrafficRoutes
//! attached to the mesh replace those virtual hosts' default route. A group that Gateways
//! select gets their listeners instead (see `gateway.rs`).
//!
//! A group of proxyless gRPC clients (`ClientKind::Grpc` in its group key) gets API listeners named after its
//! targets and only what gRPC can use (see [`proxyless`]).
//!
//! With its resources, a translation returns their [`Provenance`]: which objects produced
//! each resource, and each virtual host and rule of a route configuration (see
//! [`provenance`]), for attributing a proxy's NACK to objects without reading names.
//!
//! A group with a workload identity ([`mesh`]) also gets the `inbound` listener in front of
//! its application (mutual TLS per PeerAuthentication, RBAC per AccessPolicy, see
//! `inbound.rs` and `rbac.rs`), and originates mutual TLS to Services in the mesh. Its
//! `mesh-outbound` listener takes captured connections too ([`capture`]): by original
//! destination, HTTP Service ports are routed, TCP ports proxied, and unknown destinations
//! passed through or refused ([`OutboundPolicy`]).

#![forbid(unsafe_code)]

mod actions;
mod address;
pub mod capture;
mod cluster;
mod context;
mod edge;
mod endpoint;
mod ext_authz;
mod external;
mod filters;
mod gamma;
mod gateway;
mod gateway_api;
mod gateway_api_udp;
mod inbound;
pub mod inbound_tcp;
pub mod json;
mod jwt;
mod keep;
mod listener;
mod locality;
mod lookup;
mod matches;
pub mod mesh;
pub mod names;
pub mod on_demand;
mod options;
mod policy;
mod protocol;
pub mod provenance;
mod proxy_group;
pub mod proxyless;
mod rate_limit;
mod rbac;
mod resources;
mod route;
mod route_rules;
pub mod scope;
mod service;
mod service_clusters;
mod subsets;
mod tcp;
pub mod telemetry;
mod tls;
mod translation;
mod translator;

pub use capture::OutboundPolicy;
pub use gateway::gateways_selecting;
pub use gateway_api_udp::udp_backends_among;
pub use json::JsonError;
pub use keep::{Keep, Messages};
pub use on_demand::{Discovery, OnDemandResources};
pub use options::Options;
pub use provenance::Provenance;
pub use proxy_group::ProxyGroup;
pub use resources::{Resources, SharedResources};
pub use telemetry::{AccessLog, Collector, Telemetry};
pub use tls::{GATEWAY_CERT_PREFIX, gateway_secret_name};
pub use translation::{PARALLEL_MIN_SERVICES, translate, translate_on};
pub use translator::{MemoStats, ServiceOutput, Translator};

#[cfg(test)]
mod tests;
