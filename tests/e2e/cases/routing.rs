//! End to end, routing CRDs on the mesh listener: TrafficRoute, TrafficPolicy and
//! ExternalService from `examples/routing/` (the files docs/crds.md shows), applied to a watched
//! directory, with real traffic through stock Envoy to real upstreams.
//! Each test has its own Portolan, Envoy and ports, so they run in parallel.

use crate::bin;
use portolan_e2e::http::send;
use portolan_e2e::{
    Envoy, Mesh, Reply, Upstream, endpoints_yaml, eventually, example, labeled_endpoints_yaml,
};
use reqwest::Method;
use std::collections::BTreeMap;
use std::time::Duration;

/// The Envoy cluster of a Service port (or subset), as translate names it.
fn cluster(service: &str, port: u16, subset: &str) -> String {
    format!("outbound|{port}|{subset}|{service}.default.svc.cluster.local")
}

/// EndpointSlices for `service`: one per upstream, labelled `version: {version}`.
fn versioned_endpoints(service: &str, upstreams: &[(&Upstream, &str)]) -> String {
    upstreams
        .iter()
        .map(|(u, version)| labeled_endpoints_yaml("default", service, u, &[("version", version)]))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Sends `n` GETs for `host` through the mesh and counts the answers per upstream (status
/// must be 200 for every one).
async fn tally(envoy: &Envoy, host: &str, n: usize) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let r = envoy.fetch(host, "/").await?;
        anyhow::ensure!(r.status == 200, "request {i} for {host}: {r:?}");
        let who = r.upstream().unwrap_or("<none>").to_string();
        *counts.entry(who).or_default() += 1;
    }
    Ok(counts)
}

/// Asserts the share of `name` in `counts` is `percent` ± `tolerance` points. Envoy picks
/// weighted clusters at random, so the tolerance must cover at least 4 standard deviations of
/// the binomial share (10% of 1,000: sd 0.95 points, ±5 is over 5 sd; 50% of 400: sd 2.5
/// points, ±10 is 4 sd). A 90/10 split that lost its route would be 50/50: far outside.
fn assert_share(counts: &BTreeMap<String, usize>, name: &str, percent: f64, tolerance: f64) {
    let total: usize = counts.values().sum();
    let got = counts.get(name).copied().unwrap_or(0) as f64 * 100.0 / total as f64;
    assert!(
        (got - percent).abs() <= tolerance,
        "{name} got {got:.1}% of {total} requests, want {percent}% ± {tolerance}: {counts:?}"
    );
}

/// A comma-separated header value as a list.
fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Whether admin `/clusters` lines flag `host` of `cluster` with `flag` (e.g.
/// `/failed_active_hc`; a host may carry several flags).
fn flagged(lines: &[String], cluster: &str, host: std::net::SocketAddr, flag: &str) -> bool {
    let prefix = format!("{cluster}::{host}::health_flags::");
    lines
        .iter()
        .any(|l| l.strip_prefix(&prefix).is_some_and(|f| f.contains(flag)))
}

/// The canary example, with reviews v1 and v2 upstreams behind it.
async fn canary_mesh(v1: &Upstream, v2: &Upstream) -> anyhow::Result<Mesh> {
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("reviews.yaml", example("routing/canary.yaml")),
            (
                "reviews-endpoints.yaml",
                versioned_endpoints("reviews", &[(v1, "v1"), (v2, "v2")]),
            ),
        ],
    )
    .await?;
    // Wait for the route itself (its Envoy route is named after the rule): the subset
    // clusters arrive first (make-before-break), and until the route does, the zero-config
    // route splits 50/50 over both endpoints.
    m.wait_config("\"default/reviews-canary/canary\"").await?;
    Ok(m)
}

/// A mesh in group `mesh` serving one example file, with `service`'s endpoints on `upstream`.
async fn one_service(
    example_file: &str,
    service: &str,
    upstream: &Upstream,
) -> anyhow::Result<Mesh> {
    Mesh::start(
        bin(),
        "mesh",
        &[
            (&format!("{service}.yaml"), example(example_file)),
            (
                &format!("{service}-endpoints.yaml"),
                endpoints_yaml("default", service, &[upstream]),
            ),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_weights_split_traffic_and_follow_edits() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let v1 = Upstream::start("reviews-v1").await?;
    let v2 = Upstream::start("reviews-v2").await?;
    let m = canary_mesh(&v1, &v2).await?;
    m.wait_mesh("reviews", "/", "v2 to answer once", |r| {
        r.upstream() == Some("reviews-v2")
    })
    .await?;

    let counts = tally(&m.envoy, "reviews", 1000).await?;
    assert_share(&counts, "reviews-v2", 10.0, 5.0);
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["reviews-v1", "reviews-v2"],
        "only the two subsets answer"
    );

    // Move everything to v2 by editing the file; Envoy follows without a restart.
    let all_v2 = example("routing/canary.yaml")
        .replace("weight: 90", "weight: 0")
        .replace("weight: 10", "weight: 100");
    m.config.write("reviews.yaml", &all_v2)?;
    eventually(
        "20 answers in a row from v2",
        Duration::from_secs(20),
        || {
            let envoy = &m.envoy;
            async move {
                let counts = tally(envoy, "reviews", 20)
                    .await
                    .map_err(|e| e.to_string())?;
                match counts.get("reviews-v2") {
                    Some(20) => Ok(()),
                    _ => Err(format!("{counts:?}")),
                }
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    let counts = tally(&m.envoy, "reviews", 100).await?;
    assert_eq!(counts.get("reviews-v2"), Some(&100), "{counts:?}");

    // And back to 50/50.
    let half = example("routing/canary.yaml")
        .replace("weight: 90", "weight: 50")
        .replace("weight: 10", "weight: 50");
    m.config.write("reviews.yaml", &half)?;
    eventually("v1 to answer again", Duration::from_secs(20), || async {
        match m.envoy.fetch("reviews", "/").await {
            Ok(r) if r.upstream() == Some("reviews-v1") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let counts = tally(&m.envoy, "reviews", 400).await?;
    assert_share(&counts, "reviews-v2", 50.0, 10.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_match_sends_jason_to_v2_and_others_to_v1() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let v1 = Upstream::start("ratings-v1").await?;
    let v2 = Upstream::start("ratings-v2").await?;
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("ratings.yaml", example("routing/header-routing.yaml")),
            (
                "ratings-endpoints.yaml",
                versioned_endpoints("ratings", &[(&v1, "v1"), (&v2, "v2")]),
            ),
        ],
    )
    .await?;
    m.wait_config("\"default/ratings-ab/jason-to-v2\"").await?;
    let jason = || {
        m.envoy
            .request(Method::GET, "ratings", "/")
            .header("end-user", "jason")
    };
    eventually("jason to reach v2", Duration::from_secs(20), || async {
        match send(jason()).await {
            Ok(r) if r.upstream() == Some("ratings-v2") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;

    for i in 0..20 {
        let r = send(jason()).await?;
        assert_eq!(
            (r.status, r.upstream()),
            (200, Some("ratings-v2")),
            "jason {i}"
        );
        let r = m.envoy.fetch("ratings", "/").await?;
        assert_eq!(
            (r.status, r.upstream()),
            (200, Some("ratings-v1")),
            "anonymous {i}"
        );
        let r = send(
            m.envoy
                .request(Method::GET, "ratings", "/")
                .header("end-user", "jasonette"),
        )
        .await?;
        assert_eq!(
            (r.status, r.upstream()),
            (200, Some("ratings-v1")),
            "exact match only, {i}"
        );
    }
    Ok(())
}

/// The retries-and-timeouts example in front of one `orders` upstream.
async fn orders_mesh(up: &Upstream) -> anyhow::Result<Mesh> {
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("orders.yaml", example("routing/retries-timeouts.yaml")),
            (
                "orders-endpoints.yaml",
                endpoints_yaml("default", "orders", &[up]),
            ),
        ],
    )
    .await?;
    m.wait_config("\"retry_policy\"").await?;
    m.wait_mesh("orders", "/", "orders to answer", |r| {
        r.upstream() == Some("orders")
    })
    .await?;
    Ok(m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_turn_a_failed_try_into_success() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let up = Upstream::start("orders").await?;
    let m = orders_mesh(&up).await?;

    // With retries: the first try gets 503, Envoy tries again and the caller sees 200.
    let r = m.envoy.fetch("orders", "/fail-once/with-retries").await?;
    assert_eq!((r.status, r.body.as_str()), (200, "orders"), "{r:?}");
    assert_eq!(up.path_hits("/fail-once/with-retries"), 2, "one retry");
    let retried = m
        .envoy
        .stat(&format!(
            "cluster.{}.upstream_rq_retry",
            cluster("orders", 80, "")
        ))
        .await?;
    assert_eq!(retried, Some(1), "envoy counted the retry");

    // Without retries (the x-no-retry rule): the 503 reaches the caller.
    let r = send(
        m.envoy
            .request(Method::GET, "orders", "/fail-once/without-retries")
            .header("x-no-retry", "1"),
    )
    .await?;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.body, "orders failed once");
    assert_eq!(up.path_hits("/fail-once/without-retries"), 1, "no retry");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_answers_504() -> anyhow::Result<()> {
    // Asserts on an elapsed time: never beside a test that loads the machine (they run alone).
    let _shared = portolan_e2e::serial::shared().await;
    let up = Upstream::start("orders").await?;
    let m = orders_mesh(&up).await?;

    let r = m.envoy.fetch("orders", "/delay/3000").await?;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.body, "upstream request timeout");
    assert!(
        r.elapsed >= Duration::from_millis(400) && r.elapsed < Duration::from_millis(2500),
        "timed out after {:?}, want about 500ms",
        r.elapsed
    );
    // A fast answer under the same rule is unaffected.
    let r = m.envoy.fetch("orders", "/delay/10").await?;
    assert_eq!((r.status, r.body.as_str()), (200, "orders"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_overflows_with_503() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let up = Upstream::start("inventory").await?;
    let m = one_service("routing/circuit-breaking.yaml", "inventory", &up).await?;
    m.wait_config("\"max_pending_requests\"").await?;
    m.wait_mesh("inventory", "/", "inventory to answer", |r| r.status == 200)
        .await?;

    // 20 concurrent slow requests, each on its own connection: one in flight, one waiting,
    // the rest overflow.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        calls.spawn(send(m.envoy.request(
            Method::GET,
            "inventory",
            "/delay/500",
        )));
    }
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut overloaded = 0;
    while let Some(r) = calls.join_next().await {
        let r: Reply = r??;
        *statuses.entry(r.status).or_default() += 1;
        if r.status == 503 && r.header("x-envoy-overloaded") == Some("true") {
            overloaded += 1;
        }
    }
    assert!(
        statuses.get(&200).copied().unwrap_or(0) >= 1,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) >= 1,
        "{statuses:?}"
    );
    assert!(
        overloaded >= 1,
        "503s carry x-envoy-overloaded: {statuses:?}"
    );
    let name = format!(
        "cluster.{}.upstream_rq_pending_overflow",
        cluster("inventory", 80, "")
    );
    let overflow = m.envoy.stat(&name).await?;
    assert!(
        overflow.unwrap_or(0) >= 1,
        "{name} = {overflow:?}; stats: {:?}",
        m.envoy.stats_containing("inventory").await?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_the_failing_endpoint() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let good = Upstream::start("payments-good").await?;
    let bad = Upstream::start("payments-bad").await?;
    bad.set_failing(true);
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("payments.yaml", example("routing/outlier-detection.yaml")),
            (
                "payments-endpoints.yaml",
                endpoints_yaml("default", "payments", &[&good, &bad]),
            ),
        ],
    )
    .await?;
    m.wait_config("\"outlier_detection\"").await?;
    let name = cluster("payments", 80, "");
    let ejections = format!("cluster.{name}.outlier_detection.ejections_enforced_total");

    // Keep calling until Envoy ejects the failing endpoint (3 consecutive 5xx).
    eventually("an ejection", Duration::from_secs(20), || async {
        let _ = m.envoy.fetch("payments", "/").await;
        match m.envoy.stat(&ejections).await {
            Ok(Some(n)) if n >= 1 => Ok(()),
            other => Err(format!("{ejections} = {other:?}")),
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    assert!(
        bad.hits() >= 3,
        "the bad endpoint was tried: {}",
        bad.hits()
    );
    let lines = m.envoy.cluster_lines(&name).await?;
    assert!(
        flagged(&lines, &name, bad.addr(), "/failed_outlier_check"),
        "{lines:#?}"
    );

    let before = bad.hits();
    for i in 0..30 {
        let r = m.envoy.fetch("payments", "/").await?;
        assert_eq!(
            (r.status, r.upstream()),
            (200, Some("payments-good")),
            "request {i} after the ejection"
        );
    }
    assert_eq!(
        bad.hits(),
        before,
        "no request reached the ejected endpoint"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_take_a_dead_endpoint_out() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("catalog-a").await?;
    let b = Upstream::start("catalog-b").await?;
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("catalog.yaml", example("routing/health-checks.yaml")),
            (
                "catalog-endpoints.yaml",
                endpoints_yaml("default", "catalog", &[&a, &b]),
            ),
        ],
    )
    .await?;
    m.wait_config("\"health_checks\"").await?;
    // Both endpoints pass their first check and take traffic.
    eventually(
        "both endpoints to serve",
        Duration::from_secs(20),
        || async {
            let _ = m.envoy.fetch("catalog", "/").await;
            if a.hits() > 0 && b.hits() > 0 {
                Ok(())
            } else {
                Err(format!("hits a={} b={}", a.hits(), b.hits()))
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    assert!(a.path_hits("/healthz") >= 1, "envoy checks /healthz");

    // b dies: the health checker marks it failed, and every request goes to a.
    b.stop();
    let name = cluster("catalog", 80, "");
    eventually(
        "b to be marked unhealthy",
        Duration::from_secs(20),
        || async {
            let lines = m
                .envoy
                .cluster_lines(&name)
                .await
                .map_err(|e| e.to_string())?;
            if flagged(&lines, &name, b.addr(), "/failed_active_hc") {
                Ok(())
            } else {
                Err(format!(
                    "{:#?}",
                    lines
                        .iter()
                        .filter(|l| l.contains("health_flags"))
                        .collect::<Vec<_>>()
                ))
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    for i in 0..20 {
        let r = m.envoy.fetch("catalog", "/").await?;
        assert_eq!(
            (r.status, r.upstream()),
            (200, Some("catalog-a")),
            "request {i} with b down"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_rewrites_and_direct_responses() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let up = Upstream::start("frontend").await?;
    let m = one_service("routing/redirects-rewrites.yaml", "frontend", &up).await?;
    m.wait_mesh("frontend", "/ping", "the direct response", |r| {
        r.status == 200 && r.body == "pong"
    })
    .await?;
    assert_eq!(up.path_hits("/ping"), 0, "envoy answered /ping itself");

    let r = m.envoy.fetch("frontend", "/old").await?;
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(r.header("location"), Some("http://frontend/new"), "{r:?}");

    let r = m.envoy.fetch("frontend", "/secure/cart?x=1").await?;
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("https://secure.example.com:8443/secure/cart?x=1"),
        "{r:?}"
    );

    let r = m.envoy.fetch("frontend", "/api/items?id=7").await?;
    assert_eq!((r.status, r.upstream()), (200, Some("frontend")), "{r:?}");
    assert_eq!(
        r.header("x-seen-path"),
        Some("/v2/items?id=7"),
        "path rewrite"
    );
    assert_eq!(
        r.header("x-seen-host"),
        Some("frontend.internal"),
        "authority rewrite"
    );

    let r = m.envoy.fetch("frontend", "/other").await?;
    assert_eq!(r.header("x-seen-path"), Some("/other"), "{r:?}");
    assert_eq!(r.header("x-seen-host"), Some("frontend"), "{r:?}");
    // The direct response is for GET only; other methods fall through to the default rule.
    let r = send(m.envoy.request(Method::POST, "frontend", "/ping")).await?;
    assert_eq!((r.status, r.upstream()), (200, Some("frontend")), "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_aborts_and_delays() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let up = Upstream::start("details").await?;
    let m = one_service("routing/fault-injection.yaml", "details", &up).await?;
    let with_fault = |kind: &'static str| {
        m.envoy
            .request(Method::GET, "details", "/")
            .header("x-fault", kind)
    };
    eventually("the abort fault", Duration::from_secs(20), || async {
        match send(with_fault("abort")).await {
            Ok(r) if r.status == 500 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    let hits = up.hits();
    for i in 0..10 {
        let r = send(with_fault("abort")).await?;
        assert_eq!(r.status, 500, "abort {i}: {r:?}");
        assert_eq!(r.body, "fault filter abort");
    }
    assert_eq!(up.hits(), hits, "aborted requests never reach the upstream");

    let r = send(with_fault("delay")).await?;
    assert_eq!((r.status, r.upstream()), (200, Some("details")), "{r:?}");
    assert!(
        r.elapsed >= Duration::from_millis(900),
        "delayed only {:?}",
        r.elapsed
    );
    let r = m.envoy.fetch("details", "/").await?;
    assert_eq!((r.status, r.upstream()), (200, Some("details")), "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_copies_requests_to_the_shadow() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let primary = Upstream::start("checkout").await?;
    let shadow = Upstream::start("checkout-next").await?;
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("checkout.yaml", example("routing/mirroring.yaml")),
            (
                "checkout-endpoints.yaml",
                format!(
                    "{}---\n{}",
                    endpoints_yaml("default", "checkout", &[&primary]),
                    endpoints_yaml("default", "checkout-next", &[&shadow])
                ),
            ),
        ],
    )
    .await?;
    m.wait_config("\"request_mirror_policies\"").await?;
    m.wait_mesh("checkout", "/", "checkout to answer", |r| {
        r.upstream() == Some("checkout")
    })
    .await?;
    let before = shadow.hits();
    for i in 0..20 {
        let r = m.envoy.fetch("checkout", &format!("/order/{i}")).await?;
        assert_eq!((r.status, r.upstream()), (200, Some("checkout")), "{r:?}");
    }
    // Mirrored requests are fire and forget: they arrive, maybe a moment later.
    eventually(
        "the shadow to see the copies",
        Duration::from_secs(10),
        || async {
            if shadow.hits() >= before + 20 {
                Ok(())
            } else {
                Err(format!("shadow hits {} (before {before})", shadow.hits()))
            }
        },
    )
    .await?;
    assert_eq!(shadow.path_hits("/order/7"), 1, "the same path is mirrored");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_operations_on_requests_and_responses() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let up = Upstream::start("profile").await?;
    let m = one_service("routing/header-manipulation.yaml", "profile", &up).await?;
    m.wait_mesh("profile", "/headers", "the header edits", |r| {
        r.header("x-served-by") == Some("portolan")
    })
    .await?;
    let r = send(
        m.envoy
            .request(Method::GET, "profile", "/headers")
            .header("x-tenant", "intruder")
            .header("x-trace-tag", "caller")
            .header("x-debug", "1"),
    )
    .await?;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = r.seen_headers()?;
    assert_eq!(
        seen.get("x-tenant"),
        Some(&vec!["acme".to_string()]),
        "set overwrites: {seen:?}"
    );
    let tags = seen.get("x-trace-tag").cloned().unwrap_or_default();
    assert!(
        tags.contains(&"caller".to_string()) && tags.contains(&"portolan".to_string()),
        "add appends: {tags:?}"
    );
    assert!(!seen.contains_key("x-debug"), "remove drops: {seen:?}");

    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header_all("x-served-by"), ["portolan"]);
    assert_eq!(r.header("x-seen-host"), None, "response header removed");
    assert_eq!(r.upstream(), Some("profile"), "other headers untouched");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_for_allowed_origins() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let up = Upstream::start("search").await?;
    let m = one_service("routing/cors.yaml", "search", &up).await?;
    let preflight = |origin: &'static str| {
        m.envoy
            .request(Method::OPTIONS, "search", "/query")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-user")
    };
    let r = eventually(
        "a CORS preflight answer",
        Duration::from_secs(20),
        || async {
            match send(preflight("https://app.example.com")).await {
                Ok(r) if r.header("access-control-allow-origin").is_some() => Ok(r),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        list(r.header("access-control-allow-methods")),
        ["GET", "POST"]
    );
    assert_eq!(list(r.header("access-control-allow-headers")), ["x-user"]);
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(up.hits(), 0, "envoy answered the preflight itself");

    let r = send(preflight("https://shop.partner.example")).await?;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.partner.example"),
        "regex origin: {r:?}"
    );
    let r = send(preflight("https://evil.example.org")).await?;
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");

    // A simple cross-origin GET is proxied and gets the CORS response headers.
    let r = send(
        m.envoy
            .request(Method::GET, "search", "/query")
            .header("origin", "https://app.example.com"),
    )
    .await?;
    assert_eq!((r.status, r.upstream()), (200, Some("search")), "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("x-trace"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_service_is_reachable_through_the_mesh() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let api = Upstream::start("api").await?;
    let manifest = example("routing/external-service.yaml")
        .replace("http: 8080", &format!("http: {}", api.port()));
    let external_only = manifest
        .split("\n---\n")
        .next()
        .unwrap_or_default()
        .to_string();
    let m = Mesh::start(bin(), "mesh", &[("api.yaml", external_only)]).await?;

    // The ExternalService alone: a cluster and a virtual host for its host name.
    m.wait_mesh("api.example.com", "/", "api.example.com to answer", |r| {
        r.upstream() == Some("api")
    })
    .await?;
    m.wait_config("\"outbound|80||api.example.com\"").await?;
    let r = m.envoy.fetch("api.example.com:80", "/").await?;
    assert_eq!(
        (r.status, r.upstream()),
        (200, Some("api")),
        "with port: {r:?}"
    );

    // With the TrafficRoute too: its request header reaches the external endpoint.
    m.config.write("api.yaml", &manifest)?;
    let r = m
        .wait_mesh("api.example.com", "/headers", "the route's header", |r| {
            r.body.contains("x-api-client")
        })
        .await?;
    let seen = r.seen_headers()?;
    assert_eq!(
        seen.get("x-api-client"),
        Some(&vec!["portolan".to_string()])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_route_edit_keeps_the_previous_route() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let v1 = Upstream::start("reviews-v1").await?;
    let v2 = Upstream::start("reviews-v2").await?;
    let m = canary_mesh(&v1, &v2).await?;
    m.wait_mesh("reviews", "/", "v2 to answer once", |r| {
        r.upstream() == Some("reviews-v2")
    })
    .await?;

    // A negative weight is rejected with its field path...
    let bad = example("routing/canary.yaml").replace("weight: 90", "weight: -5");
    m.config.write("reviews.yaml", &bad)?;
    let errors = eventually(
        "the error to be reported",
        Duration::from_secs(10),
        || async {
            let errors = m.config_errors().await.map_err(|e| e.to_string())?;
            if errors.is_empty() {
                Err("no errors yet".to_string())
            } else {
                Ok(errors)
            }
        },
    )
    .await?;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["location"], "reviews.yaml#2", "{errors:#?}");
    assert_eq!(
        errors[0]["object"], "TrafficRoute default/reviews-canary",
        "{errors:#?}"
    );
    assert_eq!(
        errors[0]["field"], "spec.http[0].route[0].weight",
        "{errors:#?}"
    );

    // ...and the previous version keeps serving: still 90/10.
    let counts = tally(&m.envoy, "reviews", 1000).await?;
    assert_share(&counts, "reviews-v2", 10.0, 5.0);

    // Two actions in one rule are rejected too.
    let two_actions = example("routing/canary.yaml").replace(
        "  - name: canary\n",
        "  - name: canary\n    directResponse:\n      status: 200\n",
    );
    m.config.write("reviews.yaml", &two_actions)?;
    let errors = eventually("the second error", Duration::from_secs(10), || async {
        let errors = m.config_errors().await.map_err(|e| e.to_string())?;
        match errors.first() {
            Some(e) if e["field"] != "spec.http[0].route[0].weight" => Ok(errors),
            _ => Err(format!("{errors:?}")),
        }
    })
    .await?;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0]["object"], "TrafficRoute default/reviews-canary",
        "{errors:#?}"
    );
    assert_eq!(errors[0]["field"], "spec.http[0]", "{errors:#?}");
    let message = errors[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exactly one of route, redirect, directResponse"),
        "{errors:#?}"
    );
    let counts = tally(&m.envoy, "reviews", 1000).await?;
    assert_share(&counts, "reviews-v2", 10.0, 5.0);

    // Fixing the file clears the error.
    m.config
        .write("reviews.yaml", &example("routing/canary.yaml"))?;
    eventually("the error to clear", Duration::from_secs(10), || async {
        match m.config_errors().await {
            Ok(e) if e.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolved_subset_gets_503_for_its_share() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let v1 = Upstream::start("reviews-v1").await?;
    let v2 = Upstream::start("reviews-v2").await?;
    let m = canary_mesh(&v1, &v2).await?;
    let v9 = example("routing/canary.yaml").replace("subset: v2", "subset: v9");
    m.config.write("reviews.yaml", &v9)?;
    m.wait_config("unresolved|").await?;
    let before = v2.hits();
    let mut statuses: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for _ in 0..400 {
        let r = m.envoy.fetch("reviews", "/").await?;
        let who = r.upstream().unwrap_or("<envoy>").to_string();
        *statuses.entry((r.status, who)).or_default() += 1;
    }
    let share =
        |k: (u16, &str)| statuses.get(&(k.0, k.1.to_string())).copied().unwrap_or(0) as f64 / 4.0;
    assert!(
        (share((503, "<envoy>")) - 10.0).abs() <= 5.0,
        "the v9 share gets 503 from envoy: {statuses:?}"
    );
    assert!(
        (share((200, "reviews-v1")) - 90.0).abs() <= 5.0,
        "{statuses:?}"
    );
    assert_eq!(v2.hits(), before, "nothing goes to v2 any more");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_subset_is_reported_in_status() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let v1 = Upstream::start("reviews-v1").await?;
    let v2 = Upstream::start("reviews-v2").await?;
    let m = canary_mesh(&v1, &v2).await?;
    let v9 = example("routing/canary.yaml").replace("subset: v2", "subset: v9");
    m.config.write("reviews.yaml", &v9)?;
    let status = eventually(
        "a ResolvedRefs=False condition",
        Duration::from_secs(10),
        || async {
            let v = m
                .portolan
                .get_json("/debug/config-errors")
                .await
                .map_err(|e| e.to_string())?;
            let conditions = v["statuses"]["TrafficRoute default/reviews-canary"].clone();
            let unresolved = conditions
                .as_array()
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c["type"] == "ResolvedRefs" && c["status"] == false)
                })
                .cloned();
            unresolved.ok_or_else(|| v.to_string())
        },
    )
    .await?;
    assert_eq!(status["reason"], "SubsetNotFound", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.http[0].route[1].destination") && message.contains("v9"),
        "{status}"
    );
    Ok(())
}
