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
    let mut name = String::with_capacity(
        "outbound|65535||.svc.".len() + svc.name.len() + svc.namespace.len() + domain.len(),
    );
    name.push_str("outbound|");
    push_port(&mut name, port);
    name.push_str("||");
    push_fqdn(&mut name, svc, domain);
    name
}

/// The cluster of a subset of a Service port: `outbound|{port}|{subset}|{fqdn}`.
pub fn subset_cluster_name(svc: &ServiceKey, port: u16, subset: &str, domain: &str) -> String {
    format!("outbound|{port}|{subset}|{}", service_fqdn(svc, domain))
}

/// The cluster of one host and port of an ExternalService: `outbound|{port}||{host}`.
pub fn external_cluster_name(host: &str, port: u16) -> String {
    format!("outbound|{port}||{host}")
}

/// A cluster name that never exists, for a destination that does not resolve:
/// `unresolved|{host}|{port}|{subset}` (empty parts for what was not written). Envoy answers
/// 503 (no cluster) for the traffic sent there.
pub fn unresolved_cluster_name(host: &str, port: Option<u16>, subset: Option<&str>) -> String {
    let port = port.map(|p| p.to_string()).unwrap_or_default();
    format!("unresolved|{host}|{port}|{}", subset.unwrap_or_default())
}

/// The listener of a gateway port, and the route configuration it asks for: `gateway-{port}`.
pub fn gateway_listener_name(port: u16) -> String {
    format!("gateway-{port}")
}

/// The listener of a Gateway API UDP listener port: `gateway-{port}-udp` (a TCP-based
/// listener may use the same port number, see [`gateway_listener_name`]).
pub fn gateway_udp_listener_name(port: u16) -> String {
    format!("gateway-{port}-udp")
}

/// The cluster of a Gateway API UDP listener port's route: `gateway-{port}|udp`.
pub fn gateway_udp_cluster_name(port: u16) -> String {
    format!("gateway-{port}|udp")
}

/// Stat prefix of a Gateway API UDP listener port: `gateway_{port}_udp`.
pub fn gateway_udp_stat_prefix(port: u16) -> String {
    format!("gateway_{port}_udp")
}

/// Stat prefix of a gateway listener: `gateway_{port}`.
pub fn gateway_stat_prefix(port: u16) -> String {
    format!("gateway_{port}")
}

/// The (nonexistent) cluster a gateway TCP listener without a route proxies to.
pub fn unrouted_cluster_name(port: u16) -> String {
    format!("unrouted|gateway-{port}")
}

/// `{name}.{namespace}.svc.{domain}`.
pub fn service_fqdn(svc: &ServiceKey, domain: &str) -> String {
    let mut fqdn =
        String::with_capacity(".svc.".len() + svc.name.len() + svc.namespace.len() + domain.len());
    push_fqdn(&mut fqdn, svc, domain);
    fqdn
}

/// The virtual host of a Service port: `{name}.{namespace}:{port}`.
pub fn virtual_host_name(svc: &ServiceKey, port: u16) -> String {
    let mut name = String::with_capacity(".:65535".len() + svc.name.len() + svc.namespace.len());
    name.push_str(&svc.name);
    name.push('.');
    name.push_str(&svc.namespace);
    name.push(':');
    push_port(&mut name, port);
    name
}

/// `host:port` (what `format!` would give, without its machinery: names are built once per
/// Service port on every translation).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    let mut out = String::with_capacity(host.len() + ":65535".len());
    out.push_str(host);
    out.push(':');
    push_port(&mut out, port);
    out
}

fn push_fqdn(out: &mut String, svc: &ServiceKey, domain: &str) {
    out.push_str(&svc.name);
    out.push('.');
    out.push_str(&svc.namespace);
    out.push_str(".svc.");
    out.push_str(domain);
}

/// Appends a port in decimal.
fn push_port(out: &mut String, port: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut rest = port;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
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
        assert_eq!(
            subset_cluster_name(&svc, 80, "v1", "cluster.local"),
            "outbound|80|v1|cart.shop.svc.cluster.local"
        );
        assert_eq!(
            external_cluster_name("api.example.com", 443),
            "outbound|443||api.example.com"
        );
        assert_eq!(
            unresolved_cluster_name("x", Some(80), None),
            "unresolved|x|80|"
        );
        assert_eq!(gateway_listener_name(8443), "gateway-8443");
        assert_eq!(gateway_udp_listener_name(8443), "gateway-8443-udp");
        assert_ne!(gateway_udp_listener_name(53), gateway_listener_name(53));
        assert_eq!(
            service_fqdn(&svc, "cluster.local"),
            "cart.shop.svc.cluster.local"
        );
    }

    #[test]
    fn ports_print_like_format() {
        for port in [
            0, 1, 9, 10, 80, 99, 100, 443, 8080, 9999, 10000, 15001, 65535,
        ] {
            assert_eq!(host_port("h", port), format!("h:{port}"));
        }
    }
}
