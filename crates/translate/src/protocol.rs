//! Which protocol a Service port speaks, from `appProtocol` or the port name: whether Envoy
//! talks HTTP/2 to its endpoints, and whether captured connections to it are HTTP (routed) or
//! plain TCP (proxied).

use portolan_model::ServicePort;

/// `appProtocol` values that mean HTTP/2 (prior knowledge) upstream.
const HTTP2_APP_PROTOCOLS: &[&str] = &["http2", "grpc", "kubernetes.io/h2c"];

/// Port name prefixes (Istio's `<protocol>[-<suffix>]` convention) that mean HTTP/2.
const HTTP2_NAME_PREFIXES: &[&str] = &["grpc", "http2", "h2c"];

/// `appProtocol` values of HTTP ports (anything else set there means TCP).
const HTTP_APP_PROTOCOLS: &[&str] = &[
    "http",
    "http2",
    "grpc",
    "grpc-web",
    "kubernetes.io/h2c",
    "kubernetes.io/ws",
];

/// Port name prefixes (`<protocol>[-<suffix>]`) of ports that are not HTTP.
const TCP_NAME_PREFIXES: &[&str] = &["tcp", "tls", "https", "mongo", "mysql", "redis"];

/// Whether captured connections to this port carry HTTP (routed by Host with every
/// TrafficRoute rule) rather than opaque TCP (proxied as bytes).
///
/// `appProtocol` decides when it is set (`http`, `http2`, `grpc`, `grpc-web`,
/// `kubernetes.io/h2c`, `kubernetes.io/ws` are HTTP; `tcp` or anything else is not);
/// otherwise a port named `tcp`, `tls`, `https`, `mongo`, `mysql` or `redis` (or `tcp-*`, ...)
/// is TCP and every other port HTTP, as on the Host-header listener.
pub(crate) fn is_http(port: &ServicePort) -> bool {
    if let Some(app) = port.app_protocol.as_deref() {
        return HTTP_APP_PROTOCOLS.contains(&app.to_ascii_lowercase().as_str());
    }
    let name = port.name.to_ascii_lowercase();
    let prefix = name.split('-').next().unwrap_or_default();
    !TCP_NAME_PREFIXES.contains(&prefix)
}

/// Whether Envoy must talk HTTP/2 to the endpoints of this port.
///
/// `appProtocol` decides when it is set; otherwise the port name does. `grpc-web` is
/// HTTP/1.1 on the wire, so a `grpc-web` port name does not count.
pub(crate) fn is_http2(port: &ServicePort) -> bool {
    match port.app_protocol.as_deref() {
        Some(app) => HTTP2_APP_PROTOCOLS.contains(&app),
        None => name_means_http2(&port.name),
    }
}

fn name_means_http2(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name == "grpc-web" || name.starts_with("grpc-web-") {
        return false;
    }
    HTTP2_NAME_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_model::Protocol;

    fn mk_port(name: &str, app: Option<&str>) -> ServicePort {
        ServicePort {
            name: name.to_string(),
            port: 80,
            protocol: Protocol::Tcp,
            target_port: None,
            app_protocol: app.map(str::to_string),
        }
    }

    #[test]
    fn app_protocol_decides_first() {
        assert!(is_http2(&mk_port("", Some("grpc"))));
        assert!(is_http2(&mk_port("", Some("kubernetes.io/h2c"))));
        assert!(is_http2(&mk_port("", Some("http2"))));
        assert!(!is_http2(&mk_port("grpc", Some("http"))));
    }

    #[test]
    fn captured_ports_are_http_unless_named_or_declared_otherwise() {
        assert!(is_http(&mk_port("", None)));
        assert!(is_http(&mk_port("http", None)));
        assert!(is_http(&mk_port("grpc-api", None)));
        assert!(is_http(&mk_port("web", Some("HTTP"))));
        assert!(is_http(&mk_port("tcp", Some("kubernetes.io/h2c"))));
        assert!(!is_http(&mk_port("tcp", None)));
        assert!(!is_http(&mk_port("tcp-db", None)));
        assert!(!is_http(&mk_port("mysql", None)));
        assert!(!is_http(&mk_port("https", None)));
        assert!(!is_http(&mk_port("http", Some("tcp"))));
        assert!(!is_http(&mk_port("db", Some("postgresql"))));
    }

    #[test]
    fn port_name_prefix_when_no_app_protocol() {
        assert!(is_http2(&mk_port("grpc", None)));
        assert!(is_http2(&mk_port("grpc-api", None)));
        assert!(is_http2(&mk_port("http2-x", None)));
        assert!(is_http2(&mk_port("h2c", None)));
        assert!(!is_http2(&mk_port("http", None)));
        assert!(!is_http2(&mk_port("grpc-web", None)));
        assert!(!is_http2(&mk_port("", None)));
    }
}
