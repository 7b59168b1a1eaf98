//! Names shared between translation, the xDS server, the binary and the tests.

use portolan_model::ServiceKey;

/// Name of the mesh outbound listener.
pub const MESH_LISTENER: &str = "mesh-outbound";

/// Name of the route configuration the mesh outbound listener asks for over RDS.
pub const MESH_ROUTE: &str = "mesh-outbound";

/// Stat prefix of the mesh outbound HTTP connection manager.
pub const MESH_STAT_PREFIX: &str = "mesh_outbound";

/// The cluster (and EDS service name) of a Service port, Istio style:
/// `outbound|{port}||{name}.{namespace}.svc.{domain}`.
pub fn cluster_name(svc: &ServiceKey, port: u16, domain: &str) -> String {
    format!("outbound|{port}||{}", service_fqdn(svc, domain))
}

/// `{name}.{namespace}.svc.{domain}`.
pub fn service_fqdn(svc: &ServiceKey, domain: &str) -> String {
    format!("{}.{}.svc.{domain}", svc.name, svc.namespace)
}

/// The virtual host of a Service port: `{name}.{namespace}:{port}`.
pub fn virtual_host_name(svc: &ServiceKey, port: u16) -> String {
    format!("{}.{}:{port}", svc.name, svc.namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_name_is_istio_style() {
        let svc = ServiceKey::new("shop", "cart");
        assert_eq!(
            cluster_name(&svc, 8080, "cluster.local"),
            "outbound|8080||cart.shop.svc.cluster.local"
        );
        assert_eq!(virtual_host_name(&svc, 80), "cart.shop:80");
    }
}
