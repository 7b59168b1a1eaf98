//! The sidecar's application probe listener (`portolan bootstrap --app-probe`), static in the
//! bootstrap so that the kubelet's probes work before xDS is up and whatever Portolan pushes.
//!
//! The injector rewrites an application container's probes to `GET
//! http://POD_IP:PROBE_PORT/app-health/CONTAINER/KIND` (docs/mesh.md, "Probes"); capture leaves
//! the probe port alone, so the kubelet reaches this listener in plaintext whatever the pod's
//! mutual TLS mode. Each `--app-probe NAME=URL` becomes a route `/app-health/NAME`:
//!
//! * `http://HOST:PORT/PATH`: forwarded to `HOST:PORT` (a static cluster per address) with the
//!   path rewritten to `PATH` and the `--app-probe-header`s of `NAME` set; the application's
//!   status is the answer (a 503 stays a 503, a refused connection is a 503);
//! * `tcp://HOST:PORT` and `grpc://HOST:PORT[/SERVICE]`: stock Envoy cannot answer from a
//!   connection attempt, so the route goes to a cluster whose one endpoint is this listener's
//!   own `/app-health/_ok` (always 200) but whose *active health check* targets the
//!   application (a TCP connect, or `grpc.health.v1.Health/Check` for `SERVICE`), every
//!   second, with no panic routing: the route answers 200 while the last check passed, 503
//!   ("no healthy upstream") while it failed.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::net::IpAddr;

/// Name of the static probe listener.
pub const LISTENER: &str = "portolan-probes";
/// The path prefix of the probe routes.
pub const PREFIX: &str = "/app-health/";
/// The route answering 200 itself: the endpoint of the health-checked clusters.
const OK_PATH: &str = "/app-health/_ok";
/// How often the application's TCP port or gRPC health is checked.
const CHECK_INTERVAL: &str = "1s";

/// One `--app-probe NAME=URL`: what `/app-health/NAME` checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppProbe {
    /// `CONTAINER/KIND` (`app/readyz`).
    pub name: String,
    /// The application's address.
    pub host: IpAddr,
    pub port: u16,
    pub check: Check,
}

/// How the application is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// GET this path (and query).
    Http(String),
    /// A TCP connection.
    Tcp,
    /// The gRPC health service, for this service name (empty: the server).
    Grpc(String),
}

/// One `--app-probe-header NAME=HEADER:VALUE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeHeader {
    pub probe: String,
    pub name: String,
    pub value: String,
}

/// Parses `--app-probe NAME=URL` (`http://127.0.0.1:8080/healthz`, `tcp://127.0.0.1:5432`,
/// `grpc://127.0.0.1:9090/my.Service`).
pub fn parse_app_probe(s: &str) -> Result<AppProbe, String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=URL"))?;
    check_name(name)?;
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL (http://, tcp:// or grpc://)"))?;
    let (address, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{url:?}: expected HOST:PORT"))?;
    let host: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("{url:?}: the host must be an IP address"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{url:?}: {port:?} is not a port number"))?;
    let check = match scheme {
        "http" if path.is_empty() => Check::Http("/".into()),
        "http" => Check::Http(path.into()),
        "tcp" if path.is_empty() || path == "/" => Check::Tcp,
        "grpc" => Check::Grpc(path.trim_start_matches('/').into()),
        "tcp" => return Err(format!("{url:?}: a tcp:// probe has no path")),
        other => {
            return Err(format!(
                "{url:?}: scheme {other:?} is not http, tcp or grpc"
            ));
        }
    };
    Ok(AppProbe {
        name: name.into(),
        host,
        port,
        check,
    })
}

/// Parses `--app-probe-header NAME=HEADER:VALUE`.
pub fn parse_probe_header(s: &str) -> Result<ProbeHeader, String> {
    let (probe, header) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=HEADER:VALUE"))?;
    check_name(probe)?;
    let (name, value) = header
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not NAME=HEADER:VALUE"))?;
    let valid = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(valid) {
        return Err(format!("{s:?}: {name:?} is not a header name"));
    }
    let value = decode(value.trim());
    if value.chars().any(|c| c != '\t' && c.is_control()) {
        return Err(format!("{s:?}: the value holds a control character"));
    }
    Ok(ProbeHeader {
        probe: probe.into(),
        name: name.into(),
        value,
    })
}

/// Decodes `%XX` sequences (the injector encodes `%`, space and tab so that its recorded
/// flags split on spaces); anything else stays as it is.
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A probe name: path segments of letters, digits, `-`, `_`, `.`, not `_ok`.
fn check_name(name: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
    if name.is_empty() || !name.chars().all(valid) || name.starts_with('/') || name == "_ok" {
        return Err(format!(
            "probe name {name:?}: expected CONTAINER/KIND (letters, digits, - _ .)"
        ));
    }
    Ok(())
}

/// The probe listener and its clusters, for `probes` on `0.0.0.0:port`; none without probes.
pub fn resources(
    probes: &[AppProbe],
    headers: &[ProbeHeader],
    port: u16,
) -> anyhow::Result<Option<(Value, Vec<Value>)>> {
    if probes.is_empty() {
        if let Some(h) = headers.first() {
            bail!("--app-probe-header {}: no --app-probe {0}", h.probe);
        }
        return Ok(None);
    }
    for h in headers {
        if !probes.iter().any(|p| p.name == h.probe) {
            bail!("--app-probe-header {}: no --app-probe {0}", h.probe);
        }
    }
    let mut routes = vec![json!({
        "match": {"path": OK_PATH},
        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}
    })];
    let mut clusters: Vec<Value> = Vec::new();
    for probe in probes {
        let mine: Vec<&ProbeHeader> = headers.iter().filter(|h| h.probe == probe.name).collect();
        let (route, cluster) = match &probe.check {
            Check::Http(path) => http_route(probe, path, &mine)?,
            Check::Tcp | Check::Grpc(_) => checked_route(probe, port),
        };
        routes.push(route);
        let name = cluster["name"].clone();
        if !clusters.iter().any(|c| c["name"] == name) {
            clusters.push(cluster);
        }
    }
    let listener = json!({
        "name": LISTENER,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "probes",
                "route_config": {
                    "name": LISTENER,
                    "virtual_hosts": [{"name": LISTENER, "domains": ["*"], "routes": routes}]
                },
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                }]
            }
        }]}]
    });
    Ok(Some((listener, clusters)))
}

fn socket(host: IpAddr, port: u16) -> Value {
    json!({"socket_address": {"address": host.to_string(), "port_value": port}})
}

/// An HTTP probe: the application's path and headers, its status as the answer.
fn http_route(
    probe: &AppProbe,
    path: &str,
    headers: &[&ProbeHeader],
) -> anyhow::Result<(Value, Value)> {
    let cluster_name = format!("probe-http-{}", address_key(probe));
    let mut forward = json!({"cluster": cluster_name, "prefix_rewrite": path});
    let mut add = Vec::new();
    for h in headers {
        if h.name.eq_ignore_ascii_case("host") {
            forward["host_rewrite_literal"] = json!(h.value);
        } else {
            add.push(json!({
                "header": {"key": h.name, "value": h.value},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"
            }));
        }
    }
    let mut route = json!({"match": {"path": route_path(&probe.name)}, "route": forward});
    if !add.is_empty() {
        route["request_headers_to_add"] = Value::Array(add);
    }
    let cluster = json!({
        "name": cluster_name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": cluster_name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(probe.host, probe.port)}}]}]
        }
    });
    Ok((route, cluster))
}

/// A TCP or gRPC probe: a cluster whose endpoint is this listener's `/app-health/_ok`, healthy
/// while the application's check passes (no panic routing: unhealthy means 503).
fn checked_route(probe: &AppProbe, listener_port: u16) -> (Value, Value) {
    let (kind, check, http2) = match &probe.check {
        Check::Grpc(service) => (
            format!("grpc-{}", sanitize(service)),
            json!({"grpc_health_check": {"service_name": service}}),
            true,
        ),
        _ => ("tcp".to_string(), json!({"tcp_health_check": {}}), false),
    };
    let cluster_name = format!("probe-{kind}-{}", address_key(probe));
    let route = json!({
        "match": {"path": route_path(&probe.name)},
        "route": {"cluster": cluster_name, "prefix_rewrite": OK_PATH}
    });
    let mut health_check = json!({
        "timeout": CHECK_INTERVAL,
        "interval": CHECK_INTERVAL,
        "no_traffic_interval": CHECK_INTERVAL,
        "no_traffic_healthy_interval": CHECK_INTERVAL,
        "unhealthy_threshold": 1,
        "healthy_threshold": 1,
        "always_log_health_check_failures": false
    });
    if let (Some(h), Some(c)) = (health_check.as_object_mut(), check.as_object()) {
        h.extend(c.clone());
    }
    let self_address =
        json!({"socket_address": {"address": "127.0.0.1", "port_value": listener_port}});
    let mut cluster = json!({
        "name": cluster_name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "common_lb_config": {"healthy_panic_threshold": {"value": 0.0}},
        "health_checks": [health_check],
        "load_assignment": {
            "cluster_name": cluster_name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": self_address,
                "health_check_config": {"address": socket(probe.host, probe.port)}
            }}]}]
        }
    });
    if http2 {
        // gRPC health checks need an HTTP/2 cluster (the listener speaks both).
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        });
    }
    (route, cluster)
}

fn route_path(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// `127.0.0.1_8080` (a cluster name part).
fn address_key(probe: &AppProbe) -> String {
    sanitize(&format!("{}_{}", probe.host, probe.port))
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Adds the probe listener and clusters to `bootstrap` (no-op without probes).
pub fn add(
    bootstrap: &mut Value,
    probes: &[AppProbe],
    headers: &[ProbeHeader],
    port: u16,
) -> anyhow::Result<()> {
    let Some((listener, clusters)) = resources(probes, headers, port)? else {
        return Ok(());
    };
    let statics = bootstrap
        .get_mut("static_resources")
        .and_then(Value::as_object_mut)
        .context("the bootstrap has no static_resources")?;
    statics.insert("listeners".into(), json!([listener]));
    if let Some(list) = statics.get_mut("clusters").and_then(Value::as_array_mut) {
        list.extend(clusters);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_of_probe() {
        let p = parse_app_probe("app/readyz=http://127.0.0.1:8080/healthz?full=1").expect("ok");
        assert_eq!(p.name, "app/readyz");
        assert_eq!(p.port, 8080);
        assert_eq!(p.check, Check::Http("/healthz?full=1".into()));
        let p = parse_app_probe("db/livez=tcp://127.0.0.1:5432").expect("ok");
        assert_eq!(p.check, Check::Tcp);
        let p = parse_app_probe("api/startupz=grpc://[::1]:9090/shop.Cart").expect("ok");
        assert_eq!(p.check, Check::Grpc("shop.Cart".into()));
        assert_eq!(p.host, "::1".parse::<IpAddr>().expect("ip"));
        for bad in [
            "app/readyz",
            "app/readyz=https://127.0.0.1:8443/",
            "app/readyz=http://localhost:8080/",
            "app/readyz=http://127.0.0.1:0/",
            "/x=http://127.0.0.1:80/",
            "a b=http://127.0.0.1:80/",
            "_ok=http://127.0.0.1:80/",
            "app/livez=tcp://127.0.0.1:80/x",
        ] {
            assert!(parse_app_probe(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_headers() {
        let h = parse_probe_header("app/readyz=X-Probe: yes, please").expect("ok");
        assert_eq!(
            (h.name.as_str(), h.value.as_str()),
            ("X-Probe", "yes, please")
        );
        let h =
            parse_probe_header("app/readyz=Authorization:Bearer%2050%25%20off 100%").expect("ok");
        assert_eq!(h.value, "Bearer 50% off 100%");
        assert!(parse_probe_header("app/readyz=X:a%0Ab").is_err());
        assert!(parse_probe_header("app/readyz=Bad Name:1").is_err());
        assert!(parse_probe_header("app/readyz=NoColon").is_err());
    }

    #[test]
    fn http_probes_forward_with_the_original_path_and_headers() {
        let probe = parse_app_probe("app/readyz=http://127.0.0.1:8080/healthz").expect("ok");
        let headers = [
            parse_probe_header("app/readyz=X-Probe:1").expect("ok"),
            parse_probe_header("app/readyz=Host:app.local").expect("ok"),
        ];
        let (listener, clusters) = resources(&[probe], &headers, 15021)
            .expect("renders")
            .expect("a listener");
        assert_eq!(listener["address"]["socket_address"]["port_value"], 15021);
        let routes = &listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
            [0]["routes"];
        let route = &routes[1];
        assert_eq!(route["match"]["path"], "/app-health/app/readyz");
        assert_eq!(route["route"]["prefix_rewrite"], "/healthz");
        assert_eq!(route["route"]["host_rewrite_literal"], "app.local");
        assert_eq!(
            route["request_headers_to_add"][0]["header"]["key"],
            "X-Probe"
        );
        assert_eq!(clusters.len(), 1);
        assert_eq!(route["route"]["cluster"], clusters[0]["name"]);
    }

    #[test]
    fn tcp_and_grpc_probes_are_health_checked_clusters_without_panic() {
        let probes = [
            parse_app_probe("db/livez=tcp://127.0.0.1:5432").expect("ok"),
            parse_app_probe("db/readyz=tcp://127.0.0.1:5432").expect("ok"),
            parse_app_probe("api/readyz=grpc://127.0.0.1:9090/shop.Cart").expect("ok"),
        ];
        let (_, clusters) = resources(&probes, &[], 15021)
            .expect("renders")
            .expect("a listener");
        // One cluster per checked address and kind.
        assert_eq!(clusters.len(), 2);
        let tcp = &clusters[0];
        assert_eq!(
            tcp["common_lb_config"]["healthy_panic_threshold"]["value"],
            0.0
        );
        assert!(tcp["health_checks"][0]["tcp_health_check"].is_object());
        let endpoint = &tcp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
        assert_eq!(endpoint["address"]["socket_address"]["port_value"], 15021);
        assert_eq!(
            endpoint["health_check_config"]["address"]["socket_address"]["port_value"],
            5432
        );
        let grpc = &clusters[1];
        assert_eq!(
            grpc["health_checks"][0]["grpc_health_check"]["service_name"],
            "shop.Cart"
        );
    }

    #[test]
    fn headers_need_their_probe() {
        let probe = parse_app_probe("app/readyz=http://127.0.0.1:8080/").expect("ok");
        let header = parse_probe_header("app/livez=X:1").expect("ok");
        assert!(resources(&[probe], std::slice::from_ref(&header), 15021).is_err());
        assert!(resources(&[], &[header], 15021).is_err());
        assert!(resources(&[], &[], 15021).expect("ok").is_none());
    }
}
