//! Extended HTTPRoute features of the conformance runner: several request mirrors per rule,
//! mirroring a percentage of requests, header filters on a backendRef, and the CORS filter.
//! Mirrors are checked on the mirror upstreams' own request counts (the response always comes
//! from the primary backend); CORS preflights are answered by Envoy's CORS filter.

use super::*;

/// Requests per percentage case, and how far (in percentage points) the mirrored share may be
/// from the configured one: 7 points is over 3 standard deviations of a 500-request binomial
/// sample at any percentage, and each case is resampled up to 3 times, as upstream resamples.
const MIRROR_SAMPLE: u32 = 500;
const MIRROR_TOLERANCE: f64 = 7.0;
const MIRROR_ROUNDS: usize = 3;

/// Header values as one comma-joined string (an appended header may arrive as two lines).
fn joined(seen: &BTreeMap<String, Vec<String>>, name: &str) -> Option<String> {
    seen.get(name).map(|v| v.join(","))
}

/// Waits until the upstream `name` has seen `path` at least `at_least` times in all.
async fn hits_reach(c: &Conformance, name: &str, path: &str, at_least: u64) -> anyhow::Result<()> {
    let up = c.upstream(name)?;
    eventually(
        &format!("{at_least} hits of {path} at {name}"),
        DEADLINE,
        || async {
            let n = up.path_hits(path);
            if n >= at_least {
                Ok(())
            } else {
                Err(format!("{n} so far"))
            }
        },
    )
    .await
}

/// The request-header edits every mirror case with headers expects at the primary.
fn expect_edited_headers(seen: &BTreeMap<String, Vec<String>>) {
    assert_eq!(
        joined(seen, "x-header-add").as_deref(),
        Some("header-val-1")
    );
    assert_eq!(
        joined(seen, "x-header-add-append").as_deref(),
        Some("append-val-1,header-val-2")
    );
    assert_eq!(
        joined(seen, "x-header-set").as_deref(),
        Some("set-overwrites-values")
    );
    assert!(!seen.contains_key("x-header-remove"), "{seen:?}");
}

/// The request headers of the mirror cases with header edits.
const MIRROR_SENT: [(&str, &str); 2] = [
    ("X-Header-Remove", "remove-val"),
    ("X-Header-Add-Append", "append-val-1"),
];

/// HTTPRouteRequestMirror, the case with header edits (the first case is `request_mirror`).
pub(super) async fn mirror_and_modify_headers(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = (
        "request-mirror-and-modify-headers.yaml",
        "request-mirror-and-modify-headers",
    );
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let path = "/headers/mirror-and-modify-headers";
    let before = c.upstream("infra-backend-v2")?.path_hits(path);
    let r = c
        .expect_backend(
            &addr,
            with_headers("example.com", path, &MIRROR_SENT),
            "infra-backend-v1",
        )
        .await?;
    expect_edited_headers(&r.seen_headers()?);
    hits_reach(c, "infra-backend-v2", path, before + 1).await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteRequestMultipleMirrors.
pub(super) async fn multiple_mirrors(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("request-multiple-mirrors.yaml", "request-multiple-mirrors");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let path = "/headers/multi-mirror";
    let before = [
        c.upstream("infra-backend-v2")?.path_hits(path),
        c.upstream("infra-backend-v3")?.path_hits(path),
    ];
    c.expect_backend(&addr, get("example.com", path), "infra-backend-v1")
        .await?;
    hits_reach(c, "infra-backend-v2", path, before[0] + 1).await?;
    hits_reach(c, "infra-backend-v3", path, before[1] + 1).await?;

    let path = "/headers/multi-mirror-and-modify-request-headers";
    let before = [
        c.upstream("infra-backend-v2")?.path_hits(path),
        c.upstream("infra-backend-v3")?.path_hits(path),
    ];
    let r = c
        .expect_backend(
            &addr,
            with_headers("example.com", path, &MIRROR_SENT),
            "infra-backend-v1",
        )
        .await?;
    expect_edited_headers(&r.seen_headers()?);
    hits_reach(c, "infra-backend-v2", path, before[0] + 1).await?;
    hits_reach(c, "infra-backend-v3", path, before[1] + 1).await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteRequestPercentageMirror: each case's primary answers every request, and each
/// mirror gets its share of them.
pub(super) async fn percentage_mirror(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = (
        "request-percentage-mirror.yaml",
        "request-percentage-mirror",
    );
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let cases: [(&str, &[(&str, f64)]); 3] = [
        ("/headers/percent-mirror", &[("infra-backend-v2", 20.0)]),
        (
            "/headers/percent-mirror-fraction",
            &[("infra-backend-v2", 50.0)],
        ),
        (
            "/headers/percent-mirror-and-modify-headers",
            &[("infra-backend-v2", 35.0), ("infra-backend-v3", 50.0)],
        ),
    ];
    for (path, mirrors) in cases {
        c.expect_backend(&addr, get("example.com", path), "infra-backend-v1")
            .await?;
        let mut last = String::new();
        let mut ok = false;
        for _ in 0..MIRROR_ROUNDS {
            match mirror_round(c, &addr, path, mirrors).await? {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => last = e,
            }
        }
        anyhow::ensure!(ok, "{path}: {last}");
    }
    let path = "/headers/percent-mirror-and-modify-headers";
    let r = c
        .expect_backend(
            &addr,
            with_headers("example.com", path, &MIRROR_SENT),
            "infra-backend-v1",
        )
        .await?;
    expect_edited_headers(&r.seen_headers()?);
    c.unload(file, "same-namespace", &[route]).await
}

/// Sends [`MIRROR_SAMPLE`] requests to `path` (each answered by v1) and checks each mirror's
/// share; the inner error says which share was off.
async fn mirror_round(
    c: &Conformance,
    addr: &str,
    path: &str,
    mirrors: &[(&str, f64)],
) -> anyhow::Result<Result<(), String>> {
    let mut before = Vec::new();
    for (name, _) in mirrors {
        before.push(c.upstream(name)?.path_hits(path));
    }
    let url = format!("http://{addr}:{}{path}", c.port);
    for _ in 0..MIRROR_SAMPLE {
        let reply = send(client().get(&url).header("host", "example.com")).await?;
        anyhow::ensure!(
            reply.status == 200 && reply.upstream() == Some("infra-backend-v1"),
            "{path}: {} from {:?}",
            reply.status,
            reply.upstream()
        );
    }
    for ((name, percent), before) in mirrors.iter().zip(before) {
        let want = f64::from(MIRROR_SAMPLE) * percent / 100.0;
        let low = (want - f64::from(MIRROR_SAMPLE) * MIRROR_TOLERANCE / 100.0).max(1.0);
        // Mirrored requests may still be on their way: wait for the lower bound, then judge.
        let _ = hits_reach(c, name, path, before + low as u64).await;
        let got = c.upstream(name)?.path_hits(path) - before;
        let share = got as f64 * 100.0 / f64::from(MIRROR_SAMPLE);
        if (share - percent).abs() > MIRROR_TOLERANCE {
            return Ok(Err(format!(
                "{name} got {got} of {MIRROR_SAMPLE} ({share:.1} %), want {percent} %"
            )));
        }
    }
    Ok(Ok(()))
}

/// HTTPRouteBackendRequestHeaderModifier: the HTTPRouteRequestHeaderModifier cases with the
/// filters on the backendRef, and two weighted backends each with its own request and
/// response header edits.
pub(super) async fn backend_header_modifier(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = (
        "request-header-modifier-backend.yaml",
        "request-header-modifier-backend",
    );
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
    );
    let cases: [Case<'_>; 7] = [
        (
            "/headers/set",
            &[("Some-Other-Header", "val")],
            &[
                ("some-other-header", "val"),
                ("x-header-set", "set-overwrites-values"),
            ],
            &[],
        ),
        (
            "/headers/set",
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Set", "some-other-value"),
            ],
            &[
                ("some-other-header", "val"),
                ("x-header-set", "set-overwrites-values"),
            ],
            &[],
        ),
        (
            "/headers/add",
            &[("Some-Other-Header", "val")],
            &[
                ("some-other-header", "val"),
                ("x-header-add", "add-appends-values"),
            ],
            &[],
        ),
        (
            "/headers/add",
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Add", "some-other-value"),
            ],
            &[
                ("some-other-header", "val"),
                ("x-header-add", "some-other-value,add-appends-values"),
            ],
            &[],
        ),
        (
            "/headers/remove",
            &[("X-Header-Remove", "val")],
            &[],
            &["x-header-remove"],
        ),
        (
            "/headers/multiple",
            &[
                ("X-Header-Set-2", "set-val-2"),
                ("X-Header-Add-2", "add-val-2"),
                ("X-Header-Remove-2", "remove-val-2"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("x-header-set-1", "header-set-1"),
                ("x-header-set-2", "header-set-2"),
                ("x-header-add-1", "header-add-1"),
                ("x-header-add-2", "add-val-2,header-add-2"),
                ("x-header-add-3", "header-add-3"),
                ("another-header", "another-header-val"),
            ],
            &["x-header-remove-1", "x-header-remove-2"],
        ),
        (
            "/headers/case-insensitivity",
            &[
                ("x-header-set", "original-val-set"),
                ("x-header-add", "original-val-add"),
                ("x-header-remove", "original-val-remove"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("x-header-set", "header-set"),
                ("x-header-add", "original-val-add,header-add"),
                ("another-header", "another-header-val"),
            ],
            &["x-header-remove"],
        ),
    ];
    for (path, sent, want, absent) in cases {
        let r = c
            .expect_backend(
                &addr,
                with_headers("example.com", path, sent),
                "infra-backend-v1",
            )
            .await?;
        let seen = r.seen_headers()?;
        for (name, value) in want {
            assert_eq!(
                joined(&seen, name).as_deref(),
                Some(*value),
                "{path} {sent:?}: {name} in {seen:?}"
            );
        }
        for name in absent {
            assert!(!seen.contains_key(*name), "{path} {sent:?}: {seen:?}");
        }
    }
    // Weighted backends: each request carries the edit of the backend it reached (and the
    // response the edit of that backend), never the other's; both are reached.
    let mut reached = BTreeMap::new();
    let url = format!("http://{addr}:{}/headers/weights", c.port);
    for _ in 0..40 {
        let r = send(client().get(&url).header("host", "example.com")).await?;
        let backend = r.upstream().unwrap_or_default().to_string();
        let seen = r.seen_headers()?;
        assert_eq!(joined(&seen, "backend"), Some(backend.clone()), "{seen:?}");
        let picked = format!("v{}", backend.trim_start_matches("infra-backend-v"));
        assert_eq!(r.header("x-picked"), Some(picked.as_str()));
        *reached.entry(backend).or_insert(0) += 1;
    }
    assert_eq!(reached.len(), 2, "{reached:?}");
    c.unload(file, "same-namespace", &[route]).await
}

/// A CORS request: `method` to `path` with these headers.
fn cors_req<'a>(method: Method, path: &'a str, headers: &'a [(&'a str, &'a str)]) -> Req<'a> {
    Req {
        host: "example.com",
        path,
        method,
        headers,
    }
}

/// The header `name` with spaces removed (implementations may or may not space lists).
fn compact(r: &Reply, name: &str) -> Option<String> {
    r.header(name).map(|v| v.replace(' ', ""))
}

/// HTTPRouteCORS, the cases of its first three routes (see docs/gateway-api.md for the two
/// cases of the fourth route that are not reproduced).
pub(super) async fn cors(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "cors.yaml";
    let routes = [
        "cors-multiple-origins-methods-headers",
        "cors-wildcard-methods",
        "cors-wildcard-origin",
        "cors-wildcard-methods-headers",
    ];
    let addr = c.load(file, "same-namespace", &routes).await?;
    for route in routes {
        route_accepted(c, INFRA, route, "same-namespace").await?;
    }
    // Preflights from allowed origins: exact, wildcard, wildcard over several labels.
    for origin in [
        "https://www.foo.com",
        "https://www.bar.com",
        "https://xpto.www.bar.com",
    ] {
        let headers = [
            ("Origin", origin),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-header-1, x-header-2"),
        ];
        c.expect(&addr, cors_req(Method::OPTIONS, "/cors-1", &headers), |r| {
            let ok = matches!(r.status, 200 | 204)
                && r.header("access-control-allow-origin") == Some(origin)
                && matches!(
                    compact(r, "access-control-allow-methods").as_deref(),
                    Some("GET,OPTIONS" | "OPTIONS,GET")
                )
                && matches!(
                    compact(r, "access-control-allow-headers").as_deref(),
                    Some("x-header-1,x-header-2" | "x-header-2,x-header-1")
                )
                && matches!(
                    compact(r, "access-control-expose-headers").as_deref(),
                    Some("x-header-3,x-header-4" | "x-header-4,x-header-3")
                )
                && r.header("access-control-max-age") == Some("3600")
                && r.header("access-control-allow-credentials") == Some("true");
            ok.then_some(())
                .ok_or_else(|| format!("preflight from {origin}"))
        })
        .await?;
    }
    // A preflight from another origin is not allowed.
    let headers = [
        ("Origin", "https://foobar.com"),
        ("access-control-request-method", "GET"),
    ];
    c.expect(&addr, cors_req(Method::OPTIONS, "/cors-1", &headers), |r| {
        let ok = matches!(r.status, 200 | 204 | 403)
            && r.header("access-control-allow-origin").is_none();
        ok.then_some(())
            .ok_or_else(|| "no allow-origin".to_string())
    })
    .await?;
    // Simple requests: allowed origins get the header (and reach the backend), others not.
    for (origin, allowed) in [
        ("https://www.foo.com", true),
        ("https://www.bar.com", true),
        ("https://foobar.com", false),
    ] {
        let headers = [("Origin", origin), ("access-control-request-method", "GET")];
        c.expect(&addr, cors_req(Method::GET, "/cors-1", &headers), |r| {
            let want = allowed.then_some(origin);
            let ok = r.status == 200
                && r.upstream() == Some("infra-backend-v1")
                && r.header("access-control-allow-origin") == want;
            ok.then_some(())
                .ok_or_else(|| format!("simple request from {origin}"))
        })
        .await?;
    }
    // allowMethods ["*"] without credentials.
    let headers = [
        ("Origin", "https://www.foo.com"),
        ("access-control-request-method", "POST"),
    ];
    c.expect(&addr, cors_req(Method::OPTIONS, "/cors-2", &headers), |r| {
        let ok = matches!(r.status, 200 | 204)
            && matches!(r.header("access-control-allow-methods"), Some("POST" | "*"))
            && r.header("access-control-allow-origin") == Some("https://www.foo.com")
            && r.header("access-control-allow-credentials").is_none();
        ok.then_some(())
            .ok_or_else(|| "wildcard methods".to_string())
    })
    .await?;
    // allowOrigins ["*"]: the requested origin (or `*`), with or without a port.
    for origin in ["https://foobar.com", "https://foobar.com:12345"] {
        let headers = [("Origin", origin), ("access-control-request-method", "PUT")];
        c.expect(
            &addr,
            cors_req(Method::OPTIONS, "/cors-wildcard-origin", &headers),
            |r| {
                let allow = r.header("access-control-allow-origin");
                let ok = matches!(r.status, 200 | 204)
                    && (allow == Some(origin) || allow == Some("*"))
                    && r.header("access-control-allow-methods") == Some("PUT")
                    && r.header("access-control-allow-credentials").is_none();
                ok.then_some(())
                    .ok_or_else(|| format!("wildcard origin preflight from {origin}"))
            },
        )
        .await?;
        let headers = [("Origin", origin)];
        c.expect(
            &addr,
            cors_req(Method::PUT, "/cors-wildcard-origin", &headers),
            |r| {
                let allow = r.header("access-control-allow-origin");
                let ok = r.status == 200 && (allow == Some(origin) || allow == Some("*"));
                ok.then_some(())
                    .ok_or_else(|| format!("wildcard origin request from {origin}"))
            },
        )
        .await?;
    }
    cors_credentials_and_wildcards(c, &addr).await?;
    c.unload(file, "same-namespace", &routes).await
}

/// The fourth route: `allowCredentials: true` with `*` methods and headers must echo the
/// requested method and headers (a literal `*` means nothing to a browser with credentials);
/// without credentials `*` may stay.
async fn cors_credentials_and_wildcards(c: &Conformance, addr: &str) -> anyhow::Result<()> {
    let preflight = [
        ("Origin", "https://other.foo.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-header-1, x-header-2"),
    ];
    for (path, credentials) in [
        ("/cors-wildcard-methods-headers", true),
        ("/cors-wildcard-methods-headers-unauth", false),
    ] {
        c.expect(addr, cors_req(Method::OPTIONS, path, &preflight), |r| {
            let methods = r.header("access-control-allow-methods");
            let headers = compact(r, "access-control-allow-headers");
            let allow = r.header("access-control-allow-origin");
            let echoed = methods == Some("PUT")
                && matches!(
                    headers.as_deref(),
                    Some("x-header-1,x-header-2" | "x-header-2,x-header-1")
                );
            let ok = r.status == 200
                && if credentials {
                    echoed
                        && allow == Some("https://other.foo.com")
                        && r.header("access-control-allow-credentials") == Some("true")
                } else {
                    (echoed || (methods == Some("*") && headers.as_deref() == Some("*")))
                        && matches!(allow, Some("https://other.foo.com" | "*"))
                        && r.header("access-control-allow-credentials").is_none()
                };
            ok.then_some(())
                .ok_or_else(|| format!("preflight to {path}"))
        })
        .await?;
        let simple = [
            ("Origin", "https://other.foo.com"),
            ("Authorization", "Bearer test"),
        ];
        c.expect(addr, cors_req(Method::GET, path, &simple), |r| {
            let creds = r.header("access-control-allow-credentials");
            let ok = r.status == 200
                && r.header("access-control-allow-origin") == Some("https://other.foo.com")
                && if credentials {
                    creds == Some("true")
                } else {
                    creds.is_none()
                };
            ok.then_some(())
                .ok_or_else(|| format!("simple request to {path}"))
        })
        .await?;
    }
    Ok(())
}

/// HTTPRouteRedirectPath: every case of the upstream test (prefix and full-path replacement,
/// alone, with a hostname, with a status code).
pub(super) async fn redirect_path(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("redirect-path.yaml", "redirect-path");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    for (path, status, location) in [
        (
            "/original-prefix/lemon",
            302,
            "http://example.com/replacement-prefix/lemon",
        ),
        (
            "/full/path/original",
            302,
            "http://example.com/full-path-replacement",
        ),
        (
            "/path-and-host",
            302,
            "http://example.org/replacement-prefix",
        ),
        (
            "/path-and-status",
            301,
            "http://example.com/replacement-prefix",
        ),
        (
            "/full-path-and-host",
            302,
            "http://example.org/replacement-full",
        ),
        (
            "/full-path-and-status",
            301,
            "http://example.com/replacement-full",
        ),
    ] {
        c.expect(&addr, get("example.com", path), |r| {
            match (r.status, r.header("location")) {
                (s, Some(l)) if s == status && l == location => Ok(()),
                _ => Err(format!("want {status} to {location}")),
            }
        })
        .await?;
    }
    c.unload(file, "same-namespace", &[route]).await
}

/// A Service of one port with `appProtocol`, its EndpointSlice to `upstream`, and an HTTPRoute
/// `route` sending `path` on the same-namespace Gateway to it.
fn protocol_backend_yaml(
    service: &str,
    app_protocol: &str,
    upstream: &Upstream,
    route: &str,
    path: &str,
) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {service}, namespace: {INFRA}}}\n\
         spec:\n  ports: [{{name: app, port: 8080, appProtocol: {app_protocol}}}]\n---\n{}---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {route}, namespace: {INFRA}}}\nspec:\n  parentRefs: [{{name: same-namespace}}]\n  \
         rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    \
         backendRefs: [{{name: {service}, port: 8080}}]\n",
        endpoints_yaml(INFRA, service, &[upstream])
    )
}

/// Starts the upstream `name` with `start` unless the run has it already.
async fn ensure_upstream<F, Fut>(c: &mut Conformance, name: &str, start: F) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Upstream>>,
{
    if !c.upstreams.contains_key(name) {
        let up = start(name.to_string()).await?;
        c.upstreams.insert(name.to_string(), up);
    }
    Ok(())
}

/// Writes `file`: Service `service` (its port's `appProtocol` `app_protocol`) and HTTPRoute
/// `route` on `path` to it; waits until the Gateway's Envoy has the route and it is accepted.
/// Returns the Gateway's address.
async fn load_protocol_backend(
    c: &mut Conformance,
    (file, route, service): (&str, &str, &str),
    app_protocol: &str,
    path: &str,
) -> anyhow::Result<String> {
    let text = protocol_backend_yaml(service, app_protocol, c.upstream(service)?, route, path);
    c.config.write(file, &text)?;
    let addr = c.gateway("same-namespace").await?;
    c.wait_envoy("same-namespace", &format!("\"{INFRA}/{route}/"), true)
        .await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    Ok(addr)
}

/// HTTPRouteBackendProtocolH2C: a client speaking HTTP/2 with prior knowledge reaches a
/// backend that speaks only h2c (its Service port says `appProtocol: kubernetes.io/h2c`).
pub(super) async fn backend_protocol_h2c(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route, service) = (
        "backend-protocol-h2c.yaml",
        "backend-protocol-h2c",
        "h2c-backend",
    );
    ensure_upstream(c, service, |n| async move { Upstream::start_h2c(&n).await }).await?;
    let addr = load_protocol_backend(c, (file, route, service), "kubernetes.io/h2c", "/").await?;
    let port = c.port;
    eventually(
        "an h2c request to reach the h2c backend",
        DEADLINE,
        || async {
            match portolan_e2e::protocols::h2c_get(&addr, port, "example.com", "/").await {
                Ok((200, Some(up), Some(v))) if up == service && v == "HTTP/2.0" => Ok(()),
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteBackendProtocolWebSocket: a WebSocket session through the Gateway to a backend
/// whose Service port says `appProtocol: kubernetes.io/ws` (text and binary messages echoed).
pub(super) async fn backend_protocol_websocket(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route, service) = (
        "backend-protocol-ws.yaml",
        "backend-protocol-ws",
        "ws-backend",
    );
    ensure_upstream(c, service, |n| async move { Upstream::start_ws(&n).await }).await?;
    let addr = load_protocol_backend(c, (file, route, service), "kubernetes.io/ws", "/ws").await?;
    let port = c.port;
    eventually(
        "a WebSocket session through the Gateway",
        DEADLINE,
        || async {
            portolan_e2e::protocols::ws_round_trip(&addr, port, "example.com", "/ws")
                .await
                .map_err(|e| format!("{e:#}"))
        },
    )
    .await?;
    anyhow::ensure!(
        c.upstream(service)?.path_hits("/ws") > 0,
        "the backend saw no upgrade"
    );
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteCORSAllowCredentialsBehavior: `access-control-allow-credentials` only when
/// configured `true`, and then only with a matching origin.
pub(super) async fn cors_allow_credentials(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("cors-allow-credentials.yaml", "cors-allow-credentials");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    for (path, origin, credentials) in [
        ("/cors-behavior-creds-false", "https://app.example", false),
        ("/cors-behavior-creds-true", "http://not-app.example", false),
        ("/cors-behavior-creds-true", "https://app.example", true),
    ] {
        let headers = [
            ("Origin", origin),
            ("Cookie", "sid=abc123"),
            ("Authorization", "Bearer test"),
        ];
        c.expect(&addr, cors_req(Method::GET, path, &headers), |r| {
            let creds = r.header("access-control-allow-credentials");
            let ok = r.status == 200
                && if credentials {
                    creds == Some("true") && r.header("access-control-allow-origin") == Some(origin)
                } else {
                    creds.is_none()
                };
            ok.then_some(())
                .ok_or_else(|| format!("{path} from {origin}"))
        })
        .await?;
    }
    c.unload(file, "same-namespace", &[route]).await
}

/// Portolan's own: an ExtensionRef filter is `ResolvedRefs=False InvalidKind` (the route stays
/// accepted), its rule answers 500 and the route's other rule is served.
pub(super) async fn extension_ref(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("extension-ref.yaml", "extension-ref");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_condition(
        c,
        route,
        "same-namespace",
        "ResolvedRefs",
        "False",
        "InvalidKind",
    )
    .await?;
    route_condition(c, route, "same-namespace", "Accepted", "True", "Accepted").await?;
    c.expect_status(&addr, get("example.com", "/extension"), 500)
        .await?;
    c.expect_backend(&addr, get("example.com", "/plain"), "infra-backend-v2")
        .await?;
    c.unload(file, "same-namespace", &[route]).await
}
