//! Probe rewriting: the kubelet's probes of an injected pod's application containers go to the
//! sidecar's probe port instead (docs/mesh.md, "Probes").
//!
//! Capture sends every inbound connection through the sidecar's inbound listener, which, under
//! STRICT mutual TLS, refuses the kubelet's plaintext probes. So each `httpGet`, `tcpSocket`
//! and `grpc` liveness, readiness and startup probe of a container becomes `httpGet
//! http://POD_IP:PROBE_PORT/app-health/CONTAINER/KIND` (KIND `livez`, `readyz`, `startupz`),
//! its timing and thresholds kept; the original check becomes a `portolan bootstrap
//! --app-probe` flag (`http://127.0.0.1:PORT/PATH`, `tcp://...`, `grpc://.../SERVICE`, named
//! ports resolved against the container's ports) and `--app-probe-header`s, which the sidecar's
//! static probe listener serves; `portolan capture` leaves the probe port alone.
//!
//! Left as they are: `exec` probes (they run in the container), `https` probes and probes with
//! a `host` (they do not target the pod's plaintext port), probes whose named port the container
//! does not declare, and probes already pointing at the probe port under `/app-health/`.

use serde_json::{Value, json};

/// The probes rewritten: (container field, path segment).
const KINDS: [(&str, &str); 3] = [
    ("livenessProbe", "livez"),
    ("readinessProbe", "readyz"),
    ("startupProbe", "startupz"),
];

/// The path prefix of rewritten probes.
pub const PREFIX: &str = "/app-health/";

/// What rewriting a pod's probes takes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rewrite {
    /// JSONPatch operations replacing the probes.
    pub ops: Vec<Value>,
    /// `portolan bootstrap` flags describing the original checks.
    pub bootstrap_args: Vec<String>,
}

/// The probe rewrite of `pod`'s application containers, to `probe_port`.
pub fn rewrite(pod: &Value, probe_port: u16) -> Rewrite {
    let mut out = Rewrite::default();
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    for (i, container) in containers.into_iter().flatten().enumerate() {
        let Some(name) = container.get("name").and_then(Value::as_str) else {
            continue;
        };
        for (field, kind) in KINDS {
            let Some(probe) = container.get(field) else {
                continue;
            };
            let probe_name = format!("{name}/{kind}");
            let Some((url, headers)) = original(container, probe, probe_port) else {
                continue;
            };
            out.bootstrap_args
                .push(format!("--app-probe={probe_name}={url}"));
            out.bootstrap_args.extend(
                headers
                    .iter()
                    .map(|(h, v)| format!("--app-probe-header={probe_name}={h}:{}", encode(v))),
            );
            out.ops.push(json!({
                "op": "replace",
                "path": format!("/spec/containers/{i}/{field}"),
                "value": rewritten(probe, &probe_name, probe_port),
            }));
        }
    }
    out
}

/// The check a probe makes, as a `--app-probe` URL, and its HTTP headers; none when it is not
/// rewritten.
fn original(
    container: &Value,
    probe: &Value,
    probe_port: u16,
) -> Option<(String, Vec<(String, String)>)> {
    let has_host = |action: &Value| {
        action
            .get("host")
            .and_then(Value::as_str)
            .is_some_and(|h| !h.is_empty())
    };
    if let Some(get) = probe.get("httpGet") {
        let scheme = get.get("scheme").and_then(Value::as_str).unwrap_or("HTTP");
        if !scheme.eq_ignore_ascii_case("HTTP") || has_host(get) {
            return None;
        }
        let port = resolve(container, get.get("port")?)?;
        let path = get.get("path").and_then(Value::as_str).unwrap_or("/");
        if port == probe_port && path.starts_with(PREFIX) {
            return None; // already rewritten
        }
        if !path.chars().all(|c| c.is_ascii_graphic()) {
            return None; // not a path the sidecar can forward
        }
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let mut headers = Vec::new();
        for h in get
            .get("httpHeaders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = h.get("name").and_then(Value::as_str).unwrap_or_default();
            let value = h.get("value").and_then(Value::as_str).unwrap_or_default();
            if !valid_header(name, value) {
                return None; // Envoy would refuse it: left to the kubelet
            }
            headers.push((name.to_string(), value.to_string()));
        }
        return Some((format!("http://127.0.0.1:{port}{path}"), headers));
    }
    if let Some(tcp) = probe.get("tcpSocket") {
        if has_host(tcp) {
            return None;
        }
        let port = resolve(container, tcp.get("port")?)?;
        return Some((format!("tcp://127.0.0.1:{port}"), Vec::new()));
    }
    if let Some(grpc) = probe.get("grpc") {
        let port = grpc
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)?;
        let service = grpc.get("service").and_then(Value::as_str).unwrap_or("");
        return Some((format!("grpc://127.0.0.1:{port}/{service}"), Vec::new()));
    }
    None
}

/// A header Envoy accepts: a token name, a value without control characters (but tab).
fn valid_header(name: &str, value: &str) -> bool {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    !name.is_empty()
        && name.chars().all(token)
        && value.chars().all(|c| c == '\t' || !c.is_control())
}

/// A header value in a flag: `%`, space and tab percent-encoded (`--app-probe-header` decodes
/// them), so the recorded flags split on spaces.
fn encode(value: &str) -> String {
    value
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('\t', "%09")
}

/// A probe's port: a number, or the name of one of the container's ports.
fn resolve(container: &Value, port: &Value) -> Option<u16> {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).ok().filter(|p| *p > 0);
    }
    let name = port.as_str()?;
    let declared = container
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_u64);
    declared
        .or_else(|| name.parse().ok())
        .and_then(|n| u16::try_from(n).ok())
        .filter(|p| *p > 0)
}

/// The probe as the kubelet will run it: GET on the sidecar's probe port, timing kept, the
/// HTTP headers kept (the sidecar sets them again).
fn rewritten(probe: &Value, name: &str, probe_port: u16) -> Value {
    let mut new = probe.clone();
    let headers = probe.pointer("/httpGet/httpHeaders").cloned();
    if let Some(map) = new.as_object_mut() {
        for action in ["httpGet", "tcpSocket", "grpc"] {
            map.remove(action);
        }
        let mut get = json!({
            "path": format!("{PREFIX}{name}"),
            "port": probe_port,
            "scheme": "HTTP"
        });
        if let Some(h) = headers {
            get["httpHeaders"] = h;
        }
        map.insert("httpGet".into(), get);
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(container: Value) -> Value {
        json!({"spec": {"containers": [{"name": "side", "image": "s"}, container]}})
    }

    #[test]
    fn every_kind_of_probe_goes_to_the_probe_port() {
        let p = pod(json!({
            "name": "app", "image": "a",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 9090}],
            "readinessProbe": {
                "httpGet": {"path": "healthz", "port": "http", "httpHeaders": [{"name": "Authorization", "value": "Bearer 50% off"}]},
                "periodSeconds": 3, "failureThreshold": 2
            },
            "livenessProbe": {"tcpSocket": {"port": 5432}, "initialDelaySeconds": 5},
            "startupProbe": {"grpc": {"port": 9090, "service": "shop.Cart"}}
        }));
        let r = rewrite(&p, 15021);
        assert_eq!(
            r.bootstrap_args,
            [
                "--app-probe=app/livez=tcp://127.0.0.1:5432",
                "--app-probe=app/readyz=http://127.0.0.1:8080/healthz",
                "--app-probe-header=app/readyz=Authorization:Bearer%2050%25%20off",
                "--app-probe=app/startupz=grpc://127.0.0.1:9090/shop.Cart",
            ]
        );
        assert_eq!(r.ops.len(), 3);
        assert_eq!(r.ops[0]["path"], "/spec/containers/1/livenessProbe");
        assert_eq!(
            r.ops[0]["value"],
            json!({"httpGet": {"path": "/app-health/app/livez", "port": 15021, "scheme": "HTTP"}, "initialDelaySeconds": 5})
        );
        let ready = &r.ops[1]["value"];
        assert_eq!(ready["httpGet"]["path"], "/app-health/app/readyz");
        assert_eq!(ready["httpGet"]["httpHeaders"][0]["name"], "Authorization");
        assert_eq!(ready["periodSeconds"], 3);
        assert_eq!(ready["failureThreshold"], 2);
        assert!(r.ops[2]["value"].get("grpc").is_none());
    }

    #[test]
    fn probes_that_do_not_target_the_plain_pod_port_are_left_alone() {
        let p = pod(json!({
            "name": "app", "image": "a",
            "livenessProbe": {"exec": {"command": ["true"]}},
            "readinessProbe": {"httpGet": {"path": "/", "port": 8443, "scheme": "HTTPS"}},
            "startupProbe": {"httpGet": {"path": "/", "port": "undeclared"}}
        }));
        assert_eq!(rewrite(&p, 15021), Rewrite::default());
        let p = pod(json!({
            "name": "app", "image": "a",
            "readinessProbe": {"tcpSocket": {"port": 80, "host": "10.0.0.1"}},
            "livenessProbe": {"httpGet": {"path": "/", "port": 80, "httpHeaders": [{"name": "X", "value": "a\nb"}]}},
            "startupProbe": {"httpGet": {"path": "/a b", "port": 80}}
        }));
        assert_eq!(rewrite(&p, 15021), Rewrite::default());
    }

    #[test]
    fn a_rewritten_probe_is_not_rewritten_again() {
        let p = pod(json!({
            "name": "app", "image": "a",
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}
        }));
        let r = rewrite(&p, 15021);
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(r.ops)).expect("a JSONPatch");
        let mut doc = p.clone();
        json_patch::patch(&mut doc, &patch).expect("applies");
        assert_eq!(rewrite(&doc, 15021), Rewrite::default());
    }
}
