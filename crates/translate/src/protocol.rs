//! Which upstream protocol a Service port speaks, from `appProtocol` or the port name.

use portolan_model::ServicePort;

/// `appProtocol` values that mean HTTP/2 (prior knowledge) upstream.
const HTTP2_APP_PROTOCOLS: &[&str] = &["http2", "grpc", "kubernetes.io/h2c"];

/// Port name prefixes (Istio's `<protocol>[-<suffix>]` convention) that mean HTTP/2.
const HTTP2_NAME_PREFIXES: &[&str] = &["grpc", "http2", "h2c"];

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
