//! End to end, ExtAuthPolicy and RateLimitPolicy on a Portolan Gateway, through stock Envoy:
//! the examples of `examples/edge/` (the files docs/crds.md shows), listener ports swapped for
//! free ones, with real upstreams, test authorization services (HTTP and gRPC) and a test rate
//! limit service from the harness.
//!
//! * gRPC ext_authz on the listener: allowed and denied by a header, the service's headers
//!   reaching the upstream, a rule turned off by a `disabled: true` policy, fail-closed when the
//!   service goes down, then fail-open after the policy is edited.
//! * HTTP ext_authz on a route: the check path (`pathPrefix`), only `headersToUpstream`
//!   reaching the upstream, the denial returned as the service wrote it, fail-closed.
//! * local rate limits: 429 once the listener's bucket is spent (a bounded number of
//!   requests), `x-ratelimit-*` headers, and a rule with its own bucket still answering.
//! * global rate limits: OVER_LIMIT for one descriptor value, OK for another, the descriptors
//!   Envoy sent, and the failure mode when the service is down (allow, then deny after an edit).
//! * the inbound side of a mesh workload: an ExtAuthPolicy (gRPC) and a local RateLimitPolicy
//!   targeting its Service's port; requests arriving at the server sidecar's inbound listener
//!   are authorised (allowed, denied) and then limited (429 once the bucket is spent), and the
//!   policies' status names the Service port as their ancestor.

use crate::bin;
use portolan_e2e::authz::{ALLOW, AUTH_HEADER, AuthServer};
use portolan_e2e::http::{self, Reply, request, send};
use portolan_e2e::ports::free_port;
use portolan_e2e::ratelimit::RateLimitServer;
use portolan_e2e::{Mesh, Upstream, endpoints_yaml, eventually, example};
use reqwest::Method;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a configuration change may take to show in traffic.
const DEADLINE: Duration = Duration::from_secs(20);

/// An EndpointSlice for `service` whose port `port_name` is served at `addr`.
fn slice_yaml(service: &str, port_name: &str, addr: SocketAddr) -> String {
    slice_yaml_in("default", service, port_name, addr)
}

/// [`slice_yaml`] in `namespace`.
fn slice_yaml_in(namespace: &str, service: &str, port_name: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: {namespace}\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\nports:\n- name: {port_name}\n  port: {port}\n",
        ip = addr.ip(),
        port = addr.port()
    )
}

/// An example of `examples/edge/` with its listener port replaced by a free one.
fn edge_example(name: &str, listener_port: u16) -> (String, u16) {
    let port = free_port();
    let text = example(&format!("edge/{name}")).replace(
        &format!("port: {listener_port}\n"),
        &format!("port: {port}\n"),
    );
    (text, port)
}

/// GET `path` on `port` with `Host: host` and extra headers.
async fn get_with(
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let mut req = request(port, Method::GET, host, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req).await
}

/// Polls until a GET with `headers` satisfies `ok`.
async fn wait_reply(
    m: &Mesh,
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    what: &str,
    ok: impl Fn(&Reply) -> bool,
) -> anyhow::Result<Reply> {
    let res = eventually(what, DEADLINE, || async {
        match get_with(port, host, path, headers).await {
            Ok(r) if ok(&r) => Ok(r),
            Ok(r) => Err(format!("{} {:?} {:?}", r.status, r.body, r.headers)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    match res {
        Ok(r) => Ok(r),
        Err(e) => {
            let clusters = m.envoy.admin("/clusters").await.unwrap_or_default();
            let clusters: Vec<&str> = clusters
                .lines()
                .filter(|l| l.contains("authz") || l.contains("ratelimit"))
                .collect();
            let stats = m.envoy.admin("/stats").await.unwrap_or_default();
            let stats: Vec<&str> = stats
                .lines()
                .filter(|l| l.contains("authz") || l.contains("ratelimit"))
                .collect();
            anyhow::bail!("{e}\n{clusters:#?}\n{stats:#?}\n{}", m.diagnostics())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_ext_authz_allows_denies_and_fails_closed_then_open() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let www = Upstream::start("www").await?;
    let authz = AuthServer::start_grpc("grpc-authz").await?;
    let (manifest, port) = edge_example("ext-authz-grpc.yaml", 8080);
    let m = Mesh::start(
        bin(),
        "ingress",
        &[
            ("edge.yaml", manifest.clone()),
            (
                "www-endpoints.yaml",
                endpoints_yaml("default", "www", &[&www]),
            ),
            (
                "authz-endpoints.yaml",
                slice_yaml("authz", "grpc", authz.addr()),
            ),
        ],
    )
    .await?;
    let host = "api.example.com";
    let allow = [(AUTH_HEADER, ALLOW)];

    // Allowed: the upstream answers and sees the header the service added.
    let r = wait_reply(
        &m,
        port,
        host,
        "/headers",
        &allow,
        "an allowed request",
        |r| r.status == 200,
    )
    .await?;
    let seen = r.seen_headers()?;
    assert_eq!(
        seen.get("x-auth-user"),
        Some(&vec!["alice".to_string()]),
        "{seen:?}"
    );
    // Denied: the service's status, body and header reach the client; the upstream sees nothing.
    let hits = www.hits();
    let r = http::get(port, host, "/orders").await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, "denied by grpc-authz"),
        "{r:?}"
    );
    assert_eq!(r.header("x-denied-by"), Some("grpc-authz"));
    assert_eq!(www.hits(), hits, "a denied request reached the upstream");
    // The rule `public` is not checked (its own policy says disabled: true).
    let checks = authz.checks();
    let r = http::get(port, host, "/public/page").await?;
    assert_eq!((r.status, r.upstream()), (200, Some("www")), "{r:?}");
    assert_eq!(authz.checks(), checks, "the public rule was checked");
    assert!(
        authz.paths().iter().any(|p| p == "/orders"),
        "{:?}",
        authz.paths()
    );

    // The service goes down: fail-closed refuses even an allowed request.
    authz.stop();
    let r = wait_reply(
        &m,
        port,
        host,
        "/orders",
        &allow,
        "403 while authz is down",
        |r| r.status == 403,
    )
    .await?;
    assert_ne!(r.upstream(), Some("www"));
    let r = http::get(port, host, "/public/page").await?;
    assert_eq!(r.status, 200, "the public rule needs no authz: {r:?}");

    // Edited to fail open: requests pass while the service is down, with no header at all.
    m.config.write(
        "edge.yaml",
        &manifest.replace("failOpen: false", "failOpen: true"),
    )?;
    let r = wait_reply(
        &m,
        port,
        host,
        "/orders",
        &[],
        "fail-open while authz is down",
        |r| r.status == 200,
    )
    .await?;
    assert_eq!(r.upstream(), Some("www"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ext_authz_on_a_route_sends_the_path_and_returns_only_chosen_headers()
-> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let shop = Upstream::start("shop").await?;
    let authz = AuthServer::start_http("http-authz").await?;
    let (manifest, port) = edge_example("ext-authz-http.yaml", 8081);
    let m = Mesh::start(
        bin(),
        "ingress",
        &[
            ("shop.yaml", manifest),
            (
                "shop-endpoints.yaml",
                endpoints_yaml("default", "shop", &[&shop]),
            ),
            (
                "authz-endpoints.yaml",
                slice_yaml("shop-authz", "http", authz.addr()),
            ),
        ],
    )
    .await?;
    let host = "shop.example.com";
    let r = wait_reply(
        &m,
        port,
        host,
        "/headers",
        &[(AUTH_HEADER, ALLOW)],
        "an allowed request",
        |r| r.status == 200,
    )
    .await?;
    let seen = r.seen_headers()?;
    assert_eq!(
        seen.get("x-auth-user"),
        Some(&vec!["alice".to_string()]),
        "{seen:?}"
    );
    assert!(
        !seen.contains_key("x-auth-extra"),
        "a header not in headersToUpstream leaked: {seen:?}"
    );
    assert!(
        authz.paths().iter().any(|p| p == "/check/headers"),
        "{:?}",
        authz.paths()
    );

    let hits = shop.hits();
    let r = get_with(port, host, "/cart", &[(AUTH_HEADER, "nope")]).await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, "denied by http-authz"),
        "{r:?}"
    );
    assert_eq!(r.header("x-denied-by"), Some("http-authz"));
    assert_eq!(shop.hits(), hits, "a denied request reached the upstream");

    authz.stop();
    let r = wait_reply(
        &m,
        port,
        host,
        "/cart",
        &[(AUTH_HEADER, ALLOW)],
        "403 while authz is down",
        |r| r.status == 403,
    )
    .await?;
    assert_ne!(r.upstream(), Some("shop"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_answers_429_once_the_listener_bucket_is_spent() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let catalog = Upstream::start("catalog").await?;
    let (manifest, port) = edge_example("local-rate-limit.yaml", 8082);
    // A bucket of 3 for the listener that does not refill within the test; the search rule's
    // own bucket stays large.
    let manifest = manifest.replacen(
        "    requests: 100\n    per: 1s\n    burst: 200\n",
        "    requests: 3\n    per: 1h\n",
        1,
    );
    let m = Mesh::start(
        bin(),
        "ingress",
        &[
            ("catalog.yaml", manifest.clone()),
            (
                "catalog-endpoints.yaml",
                endpoints_yaml("default", "catalog", &[&catalog]),
            ),
        ],
    )
    .await?;
    m.wait_config("envoy.filters.http.local_ratelimit").await?;
    let host = "catalog.example.com";
    // At most 3 requests pass on the listener's bucket; a bounded number of requests must
    // meet a 429.
    let mut passed = 0;
    let mut limited = None;
    for _ in 0..10 {
        let r = http::get(port, host, "/browse").await?;
        match r.status {
            200 => {
                passed += 1;
                assert_eq!(r.header("x-ratelimit-limit"), Some("3"), "{r:?}");
            }
            429 => {
                limited = Some(r);
                break;
            }
            other => anyhow::bail!("unexpected {other}: {r:?}\n{}", m.diagnostics()),
        }
    }
    let limited =
        limited.ok_or_else(|| anyhow::anyhow!("no 429 in 10 requests\n{}", m.diagnostics()))?;
    assert!(passed <= 3, "{passed} requests passed a bucket of 3");
    assert_eq!(
        limited.header("x-ratelimit-remaining"),
        Some("0"),
        "{limited:?}"
    );
    assert_eq!(
        limited.header("x-local-rate-limit"),
        Some("true"),
        "{limited:?}"
    );
    assert_ne!(limited.upstream(), Some("catalog"));
    // The search rule has its own bucket: it still answers.
    let r = http::get(port, host, "/search?q=x").await?;
    assert_eq!((r.status, r.upstream()), (200, Some("catalog")), "{r:?}");

    // A bad edit is refused with its field path; the last good policy stays in force.
    let bad = manifest.replacen(
        "    requests: 3\n    per: 1h\n",
        "    requests: 3\n    per: 10ms\n",
        1,
    );
    m.config.write("catalog.yaml", &bad)?;
    let errors = eventually("the bad edit reported", DEADLINE, || async {
        let errors = m.config_errors().await.map_err(|e| e.to_string())?;
        let text = serde_json::to_string(&errors).unwrap_or_default();
        match text.contains("spec.local.per") && text.contains("at least 50ms") {
            true => Ok(text),
            false => Err(text),
        }
    })
    .await?;
    assert!(
        errors.contains("RateLimitPolicy default/catalog-edge"),
        "{errors}"
    );
    let r = http::get(port, host, "/browse").await?;
    assert_eq!(r.status, 429, "the last good bucket is gone: {r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_rate_limit_by_descriptor_and_its_failure_mode() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let partner = Upstream::start("partner").await?;
    let rls = RateLimitServer::start("user", "bob").await?;
    let (manifest, port) = edge_example("global-rate-limit.yaml", 8083);
    let m = Mesh::start(
        bin(),
        "ingress",
        &[
            ("partner.yaml", manifest.clone()),
            (
                "partner-endpoints.yaml",
                endpoints_yaml("default", "partner", &[&partner]),
            ),
            (
                "rls-endpoints.yaml",
                slice_yaml("ratelimit", "grpc", rls.addr()),
            ),
        ],
    )
    .await?;
    let host = "partner.example.com";
    let r = wait_reply(
        &m,
        port,
        host,
        "/items",
        &[("x-user", "bob")],
        "bob over the limit",
        |r| r.status == 429,
    )
    .await?;
    assert_ne!(r.upstream(), Some("partner"));
    let r = get_with(port, host, "/items", &[("x-user", "alice")]).await?;
    assert_eq!((r.status, r.upstream()), (200, Some("partner")), "{r:?}");
    let seen = rls.descriptors();
    assert!(seen.iter().any(|d| d == "partner|user=alice"), "{seen:?}");
    assert!(
        seen.iter()
            .any(|d| d == "partner|path=/items,remote_address=127.0.0.1"),
        "{seen:?}"
    );

    // The service goes down: failureModeDeny false lets even bob through.
    rls.stop();
    wait_reply(
        &m,
        port,
        host,
        "/items",
        &[("x-user", "bob")],
        "allowed while the RLS is down",
        |r| r.status == 200,
    )
    .await?;
    // Edited to deny on failure: refused with 500.
    m.config.write(
        "partner.yaml",
        &manifest.replace("failureModeDeny: false", "failureModeDeny: true"),
    )?;
    let r = wait_reply(
        &m,
        port,
        host,
        "/items",
        &[("x-user", "alice")],
        "refused while the RLS is down",
        |r| r.status == 500,
    )
    .await?;
    assert_ne!(r.upstream(), Some("partner"));
    Ok(())
}

/// A Gateway API Gateway `gw` (listener `http` on `port`), an HTTPRoute with a rule `limited`
/// and a catch-all rule to `www`; an ExtAuthPolicy (HTTP) on the Gateway and a local
/// RateLimitPolicy (2 per hour) on the rule.
fn gateway_api_manifest(port: u16) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portolan
spec:
  controllerName: portolan.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
spec:
  gatewayClassName: portolan
  listeners:
  - name: http
    port: {port}
    protocol: HTTP
---
apiVersion: v1
kind: Service
metadata:
  name: www
  namespace: default
spec:
  ports:
  - name: http
    port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: authz
  namespace: default
spec:
  ports:
  - name: http
    port: 9001
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: api
  namespace: default
spec:
  parentRefs:
  - name: gw
  hostnames: [api.example.com]
  rules:
  - name: limited
    matches:
    - path:
        type: PathPrefix
        value: /limited
    backendRefs:
    - name: www
      port: 80
  - backendRefs:
    - name: www
      port: 80
---
apiVersion: portolan.dev/v1alpha1
kind: ExtAuthPolicy
metadata:
  name: gw-authz
  namespace: default
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: gw
  http:
    service:
      host: authz
      port: 9001
  allowedHeaders: [x-auth]
---
apiVersion: portolan.dev/v1alpha1
kind: RateLimitPolicy
metadata:
  name: limited
  namespace: default
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: api
    sectionName: limited
  local:
    requests: 2
    per: 1h
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_gateway_and_rule_targets() -> anyhow::Result<()> {
    use portolan_e2e::envoy::Protocol;
    use portolan_e2e::portolan::{ConfigDir, Ports};
    use portolan_e2e::{Envoy, Portolan};
    let _shared = portolan_e2e::serial::shared().await;
    let www = Upstream::start("www").await?;
    let authz = AuthServer::start_http("gw-authz").await?;
    let port = free_port();
    let config = ConfigDir::new()?;
    config.write("gw.yaml", &gateway_api_manifest(port))?;
    config.write(
        "www-endpoints.yaml",
        &endpoints_yaml("default", "www", &[&www]),
    )?;
    config.write(
        "authz-endpoints.yaml",
        &slice_yaml("authz", "http", authz.addr()),
    )?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let addr = eventually("the Gateway's address", DEADLINE, || async {
        let all = portolan
            .get_json("/debug/status")
            .await
            .map_err(|e| e.to_string())?;
        all["Gateway default/gw"]["addresses"][0]["value"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{all}"))
    })
    .await?;
    let _envoy = Envoy::start_with(
        bin(),
        portolan.ports(),
        "gw-1",
        "unused",
        Protocol::Sotw,
        &["--gateway", "default/gw"],
    )
    .await?;
    let get = |path: &'static str, auth: Option<&'static str>| {
        let url = format!("http://{addr}:{port}{path}");
        async move {
            let mut req = portolan_e2e::client()
                .get(url)
                .header("host", "api.example.com");
            if let Some(v) = auth {
                req = req.header(AUTH_HEADER, v);
            }
            send(req).await
        }
    };
    // The Gateway's authorization: allowed with the header, denied without.
    let r = eventually(
        "an allowed request through the Gateway",
        DEADLINE,
        || async {
            match get("/", Some(ALLOW)).await {
                Ok(r) if r.status == 200 => Ok(r),
                Ok(r) => Err(format!("{} {:?}", r.status, r.body)),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", portolan.log_tail()))?;
    assert_eq!(r.upstream(), Some("www"));
    let r = get("/", None).await?;
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, "denied by gw-authz"),
        "{r:?}"
    );
    // The rule's own bucket of 2: a 429 within a bounded number of requests, and the
    // Gateway's authorization still applies there (a different kind of policy).
    let mut passed = 0;
    let mut limited = false;
    for _ in 0..8 {
        let r = get("/limited/x", Some(ALLOW)).await?;
        match r.status {
            200 => passed += 1,
            429 => {
                limited = true;
                break;
            }
            other => anyhow::bail!("unexpected {other}: {r:?}"),
        }
    }
    assert!(limited && passed <= 2, "passed {passed}, limited {limited}");
    assert_eq!(get("/limited/x", None).await?.status, 403);
    // Other rules have no limit.
    for _ in 0..4 {
        assert_eq!(get("/other", Some(ALLOW)).await?.status, 200);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_rate_limit_by_a_jwt_claim() -> anyhow::Result<()> {
    use portolan_e2e::jwt::Issuer;
    let _shared = portolan_e2e::serial::shared().await;
    let partner = Upstream::start("partner").await?;
    let rls = RateLimitServer::start("subject", "bob").await?;
    let issuer = Issuer::new("https://issuer.example", "k1")?;
    let (manifest, port) = edge_example("global-rate-limit.yaml", 8083);
    // The first descriptor from the verified token's `sub` instead of a header, and a
    // RequestAuthentication (inline keys) on the same Gateway, which puts the payload where
    // the descriptor reads it.
    let manifest = manifest.replacen(
        "      - requestHeader:\n          name: x-user\n          key: user\n",
        "      - jwtClaim:\n          claim: sub\n          key: subject\n",
        1,
    );
    let jwt = format!(
        "---\napiVersion: portolan.dev/v1alpha1\nkind: RequestAuthentication\nmetadata:\n  name: partner-jwt\n  namespace: default\nspec:\n  targetRefs:\n  - {{group: portolan.dev, kind: Gateway, name: partner-edge}}\n  providers:\n  - name: idp\n    issuer: https://issuer.example\n    localJwks:\n      inline: '{}'\n",
        issuer.jwks().replace('\'', "''")
    );
    let m = Mesh::start(
        bin(),
        "ingress",
        &[
            ("partner.yaml", format!("{manifest}{jwt}")),
            (
                "partner-endpoints.yaml",
                endpoints_yaml("default", "partner", &[&partner]),
            ),
            (
                "rls-endpoints.yaml",
                slice_yaml("ratelimit", "grpc", rls.addr()),
            ),
        ],
    )
    .await?;
    let host = "partner.example.com";
    let bearer = |sub: &str| -> anyhow::Result<String> {
        Ok(format!(
            "Bearer {}",
            issuer.token(serde_json::json!({"sub": sub}))?
        ))
    };
    let bob = bearer("bob")?;
    let alice = bearer("alice")?;
    let r = wait_reply(
        &m,
        port,
        host,
        "/items",
        &[("authorization", &bob)],
        "bob's token over the limit",
        |r| r.status == 429,
    )
    .await?;
    assert_ne!(r.upstream(), Some("partner"));
    let r = get_with(port, host, "/items", &[("authorization", &alice)]).await?;
    assert_eq!((r.status, r.upstream()), (200, Some("partner")), "{r:?}");
    let seen = rls.descriptors();
    assert!(
        seen.iter().any(|d| d == "partner|subject=alice"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|d| d == "partner|subject=bob"), "{seen:?}");
    // No token: the JWT filter refuses it before any limit.
    assert_eq!(http::get(port, host, "/items").await?.status, 401);
    Ok(())
}

/// Service `authz` (gRPC) in `shop`, an ExtAuthPolicy on port `http` of Service `server` and
/// a local RateLimitPolicy (3 per hour) on the same port.
const INBOUND_POLICIES: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: authz
  namespace: shop
spec:
  ports:
  - name: grpc
    port: 9000
    appProtocol: grpc
---
apiVersion: portolan.dev/v1alpha1
kind: ExtAuthPolicy
metadata:
  name: server-authz
  namespace: shop
spec:
  targetRefs:
  - {group: "", kind: Service, name: server, sectionName: http}
  grpc:
    service:
      host: authz
      port: 9000
  timeout: 2s
---
apiVersion: portolan.dev/v1alpha1
kind: RateLimitPolicy
metadata:
  name: server-limit
  namespace: shop
spec:
  targetRefs:
  - {group: "", kind: Service, name: server, sectionName: http}
  local:
    requests: 3
    per: 1h
"#;

/// The ancestors of policy `key` on `/debug/status`: `(group, kind, name, sectionName, status)`.
async fn ancestors(
    portolan: &portolan_e2e::Portolan,
    key: &str,
) -> anyhow::Result<Vec<[String; 5]>> {
    let all = portolan.get_json("/debug/status").await?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    Ok(all[key]["ancestors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let r = &a["ancestorRef"];
            [
                s(&r["group"]),
                s(&r["kind"]),
                s(&r["name"]),
                s(&r["sectionName"]),
                s(&a["conditions"][0]["status"]),
            ]
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_and_local_rate_limit_on_a_services_inbound_side() -> anyhow::Result<()> {
    use crate::mesh_security::{Identities, Mesh as SecureMesh};
    let _shared = portolan_e2e::serial::shared().await;
    let authz = AuthServer::start_grpc("server-authz").await?;
    let mesh = SecureMesh::start(
        Identities::Certificates,
        &[
            ("shop/policies.yaml", INBOUND_POLICIES.to_string()),
            (
                "shop/authz-endpoints.yaml",
                slice_yaml_in("shop", "authz", "grpc", authz.addr()),
            ),
        ],
        &[],
    )
    .await?;
    // Port `http` of Service `server` is the application's port (its targetPort), which is
    // how the inbound side knows the policies' `sectionName: http` applies to it.
    let service = example("security/mesh-service.yaml").replace(
        "    port: 80\n",
        &format!("    port: 80\n    targetPort: {}\n", mesh.app.port()),
    );
    mesh.config.write("shop/service.yaml", &service)?;
    let server = mesh.server().await?;
    let inbound = mesh.inbound;
    let call = |allow: bool| async move {
        let mut req = request(inbound, Method::GET, "server.shop", "/headers");
        if allow {
            req = req.header(AUTH_HEADER, ALLOW);
        }
        send(req).await
    };
    // The inbound listener asks the service: without the header, its denial comes back.
    let denied = eventually("a request denied on the inbound side", DEADLINE, || async {
        match call(false).await {
            Ok(r) if r.status == 403 => Ok(r),
            Ok(r) => Err(format!("{} {:?}", r.status, r.body)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let denied = match denied {
        Ok(r) => r,
        Err(e) => {
            let errors = mesh.portolan.get_json("/debug/config-errors").await?;
            let dump = server
                .admin("/config_dump?resource=dynamic_listeners")
                .await?;
            anyhow::bail!("{e}\n{errors}\n{dump}\n{}", mesh.portolan.log_tail())
        }
    };
    assert_eq!(denied.body, "denied by server-authz", "{denied:?}");
    assert_eq!(denied.header("x-denied-by"), Some("server-authz"));
    assert_ne!(denied.upstream(), Some("server-app"));
    let dump = server
        .admin("/config_dump?resource=dynamic_listeners")
        .await?;
    assert!(
        dump.contains("envoy.filters.http.local_ratelimit"),
        "the inbound listener has its bucket"
    );

    // Allowed: the app answers and sees the service's header; then the bucket of 3 is spent
    // within a bounded number of requests.
    let mut passed = 0;
    let mut limited = None;
    for _ in 0..10 {
        let r = call(true).await?;
        match r.status {
            200 => {
                passed += 1;
                assert_eq!(r.upstream(), Some("server-app"), "{r:?}");
                let seen = r.seen_headers()?;
                assert_eq!(seen.get("x-auth-user"), Some(&vec!["alice".to_string()]));
            }
            429 => {
                limited = Some(r);
                break;
            }
            other => anyhow::bail!("unexpected {other}: {r:?}\n{}", server.log_tail()),
        }
    }
    let limited = limited.ok_or_else(|| anyhow::anyhow!("no 429 in 10 requests"))?;
    assert!(
        (1..=3).contains(&passed),
        "{passed} requests passed a bucket of 3"
    );
    assert_eq!(
        limited.header("x-local-rate-limit"),
        Some("true"),
        "{limited:?}"
    );
    // Authorization runs first: a request without the header is still denied, not limited.
    assert_eq!(call(false).await?.status, 403);
    assert!(authz.checks() >= passed + 2, "checks: {}", authz.checks());

    // Each policy's ancestor is the Service port it targets.
    for key in [
        "ExtAuthPolicy shop/server-authz",
        "RateLimitPolicy shop/server-limit",
    ] {
        let a = ancestors(&mesh.portolan, key).await?;
        assert_eq!(
            a,
            vec![["", "Service", "server", "http", "True"].map(String::from)],
            "{key}"
        );
    }
    Ok(())
}
