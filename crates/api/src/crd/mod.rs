//! Portolan's custom resources (group `portolan.dev`, version `v1alpha1`): the Rust types,
//! their OpenAPI schemas (with CEL rules), and the CustomResourceDefinitions built from them.

pub mod access_policy;
pub mod common;
pub mod envoy_patch_policy;
pub mod ext_auth_policy;
pub mod external_service;
pub mod gateway;
pub mod peer_authentication;
pub mod policy_target;
pub mod proxy_scope;
pub mod rate_limit_policy;
pub mod request_authentication;
pub mod traffic_policy;
pub mod traffic_route;

pub use access_policy::AccessPolicy;
pub use envoy_patch_policy::EnvoyPatchPolicy;
pub use ext_auth_policy::ExtAuthPolicy;
pub use external_service::ExternalService;
pub use gateway::Gateway;
pub use peer_authentication::PeerAuthentication;
pub use proxy_scope::ProxyScope;
pub use rate_limit_policy::RateLimitPolicy;
pub use request_authentication::RequestAuthentication;
pub use traffic_policy::TrafficPolicy;
pub use traffic_route::TrafficRoute;
