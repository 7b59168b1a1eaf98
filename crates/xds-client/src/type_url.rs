//! The type URLs (xDS v3) of the resources an Envoy-like client subscribes to.

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// VHDS (Delta only): virtual hosts by `ROUTE_CONFIG/HOST`.
pub const VIRTUAL_HOST: &str = "type.googleapis.com/envoy.config.route.v3.VirtualHost";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::{cluster, endpoint, listener, route};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
    use prost::Name;

    #[test]
    fn type_urls_are_the_messages_own() {
        assert_eq!(super::CLUSTER, cluster::v3::Cluster::type_url());
        assert_eq!(
            super::ENDPOINT,
            endpoint::v3::ClusterLoadAssignment::type_url()
        );
        assert_eq!(super::LISTENER, listener::v3::Listener::type_url());
        assert_eq!(super::ROUTE, route::v3::RouteConfiguration::type_url());
        assert_eq!(super::VIRTUAL_HOST, route::v3::VirtualHost::type_url());
        assert_eq!(super::SECRET, Secret::type_url());
    }
}
