//! The Gateway API part of a synthetic world (issue #19's "1k HTTPRoutes in the benchmark
//! world"): Portolan's GatewayClass, one Gateway `ns-0/edge` with an HTTP listener that admits
//! routes from every namespace, and `n` HTTPRoutes. Route `r` is in the namespace of service
//! `i = r * services / n`, answers for `route-r.example.com`, sends `/v2` requests with
//! `x-canary: true` 90/10 to `svc-i` and the next service of its namespace, and everything else
//! to `svc-i`. They go through the same decoding and conversion as manifests read from files.

use portolan_api::Resource;
use portolan_model::Object;
use serde_json::{Value, json};

/// The Gateway's namespace and name; its proxy group is `gateway:ns-0/edge`.
pub const GATEWAY: (&str, &str) = ("ns-0", "edge");

/// The GatewayClass, the Gateway and `n` HTTPRoutes over `services` services spread over
/// `namespaces` namespaces, as model objects.
pub fn objects(n: usize, services: usize, namespaces: usize) -> Result<Vec<Object>, String> {
    if n == 0 || services == 0 {
        return Ok(Vec::new());
    }
    let mut docs = vec![gateway_class(), gateway()];
    docs.extend((0..n).map(|r| http_route(r, r * services / n, services, namespaces)));
    docs.into_iter()
        .map(|doc| match Resource::decode(doc) {
            Ok(Some(resource)) => Ok(portolan_model::convert::to_object(&resource)),
            Ok(None) => Err("a synthetic Gateway API object was not recognised".into()),
            Err(e) => Err(format!("a synthetic Gateway API object: {e}")),
        })
        .collect()
}

fn gateway_class() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": "portolan"},
        "spec": {"controllerName": "portolan.dev/gateway-controller"}
    })
}

fn gateway() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY.1, "namespace": GATEWAY.0},
        "spec": {
            "gatewayClassName": "portolan",
            "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP",
                           "allowedRoutes": {"namespaces": {"from": "All"}}}]
        }
    })
}

/// Route `r` for service `i`; the canary is the next service of the same namespace.
fn http_route(r: usize, i: usize, services: usize, namespaces: usize) -> Value {
    let namespace = format!("ns-{}", i % namespaces);
    let canary = (i + namespaces) % services;
    let backend =
        |s: usize, weight: u32| json!({"name": format!("svc-{s}"), "port": 80, "weight": weight});
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": format!("route-{r}"), "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": GATEWAY.1, "namespace": GATEWAY.0}],
            "hostnames": [format!("route-{r}.example.com")],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"},
                              "headers": [{"name": "x-canary", "value": "true"}]}],
                 "backendRefs": [backend(i, 90), backend(canary, 10)]},
                {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                 "backendRefs": [backend(i, 1)]}
            ]
        }
    })
}
