//! End to end, the rest of TrafficPolicy and ExternalService, and the match kinds and TCP
//! weights the routing tests do not cover: consistent hashing (RingHash, Maglev), LeastRequest
//! and Random, TLS origination to an HTTPS upstream, an ExternalService found by DNS, query
//! parameter and method matches, and weighted TCP routes on a Gateway. Each test applies its
//! file from `examples/routing/` (the files docs/crds.md shows), with its own Portolan, Envoy
//! and ports, and asserts on real traffic through stock Envoy.

use crate::bin;
use portolan_e2e::http::{self, send};
use portolan_e2e::tls::TestCa;
use portolan_e2e::{
    Envoy, Mesh, Reply, Upstream, endpoints_yaml, eventually, example, labeled_endpoints_yaml,
};
use reqwest::Method;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long configuration may take to reach Envoy.
const DEADLINE: Duration = Duration::from_secs(20);

/// The Envoy cluster of a Service port (or subset), as translate names it.
fn cluster(service: &str, port: u16, subset: &str) -> String {
    format!("outbound|{port}|{subset}|{service}.default.svc.cluster.local")
}

/// Waits until Envoy's `/clusters` lists every upstream as a host of `cluster`, so that
/// balancing is observed over all of them rather than over the first ones to arrive.
async fn wait_hosts(m: &Mesh, cluster: &str, upstreams: &[&Upstream]) -> anyhow::Result<()> {
    let res = eventually(
        &format!("{cluster} to have {} hosts", upstreams.len()),
        DEADLINE,
        || async move {
            let lines = m
                .envoy
                .cluster_lines(cluster)
                .await
                .map_err(|e| e.to_string())?;
            let missing: Vec<_> = upstreams
                .iter()
                .map(|u| format!("{cluster}::{}::", u.addr()))
                .filter(|p| !lines.iter().any(|l| l.starts_with(p)))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        },
    )
    .await;
    res.map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))
}

/// Waits until Envoy holds `cluster` with `lb_policy` (the proto JSON enum name).
async fn wait_lb_policy(m: &Mesh, cluster: &str, lb_policy: &str) -> anyhow::Result<()> {
    let res = eventually(
        &format!("{cluster} with lb_policy {lb_policy}"),
        DEADLINE,
        || async move {
            match m.envoy.cluster_config(cluster).await {
                Ok(Some(c)) if c["lb_policy"] == lb_policy => Ok(()),
                Ok(Some(c)) => Err(format!("lb_policy {}", c["lb_policy"])),
                Ok(None) => Err("no such cluster yet".to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    res.map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))
}

/// Sends a request through the mesh listener until `ok` holds for the reply.
async fn wait_request(
    m: &Mesh,
    method: Method,
    host: &str,
    path: &str,
    ok: impl Fn(&Reply) -> bool,
) -> anyhow::Result<Reply> {
    let what = format!("{method} {host}{path}");
    let res = eventually(&what, DEADLINE, || async {
        match send(m.envoy.request(method.clone(), host, path)).await {
            Ok(r) if ok(&r) => Ok(r),
            Ok(r) => Err(format!(
                "{} {:?} (upstream {:?})",
                r.status,
                r.body,
                r.upstream()
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    res.map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))
}

/// Sends `n` GETs for `host` through the mesh (each on its own connection), every one with
/// `headers`, and counts the answers per upstream; every answer must be 200.
async fn tally(
    envoy: &Envoy,
    host: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let mut req = envoy.request(Method::GET, host, "/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = send(req).await?;
        anyhow::ensure!(r.status == 200, "request {i} for {host} {headers:?}: {r:?}");
        *counts
            .entry(r.upstream().unwrap_or("<none>").to_string())
            .or_default() += 1;
    }
    Ok(counts)
}

// === consistent hashing ===

/// Three upstreams behind `service` (port 80) with the policy of `file`: twenty requests with
/// the same `x-user` all land on one upstream, for each of twelve users, and the users do not
/// all land on the same one.
async fn each_user_sticks_to_one_upstream(
    file: &str,
    service: &str,
    lb_policy: &str,
) -> anyhow::Result<()> {
    let a = Upstream::start(&format!("{service}-a")).await?;
    let b = Upstream::start(&format!("{service}-b")).await?;
    let c = Upstream::start(&format!("{service}-c")).await?;
    let all = [&a, &b, &c];
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("svc.yaml", example(file)),
            ("endpoints.yaml", endpoints_yaml("default", service, &all)),
        ],
    )
    .await?;
    let name = cluster(service, 80, "");
    wait_lb_policy(&m, &name, lb_policy).await?;
    // The route's hash policy names the header; nothing else in the config does.
    m.wait_config("\"x-user\"").await?;
    wait_hosts(&m, &name, &all).await?;

    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..12 {
        let user = format!("user-{i}");
        let counts = tally(&m.envoy, service, &[("x-user", &user)], 20).await?;
        assert_eq!(
            counts.len(),
            1,
            "{lb_policy}: the 20 requests of {user} went to several upstreams: {counts:?}"
        );
        chosen.extend(counts.into_keys().map(|up| (user.clone(), up)));
    }
    let used: BTreeSet<&String> = chosen.values().collect();
    assert!(
        used.len() >= 2,
        "{lb_policy}: every user hashed to the same upstream: {chosen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_keeps_each_user_on_one_upstream() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    each_user_sticks_to_one_upstream("routing/ring-hash.yaml", "sessions", "RING_HASH").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_keeps_each_user_on_one_upstream() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    each_user_sticks_to_one_upstream("routing/maglev.yaml", "carts", "MAGLEV").await
}

// === LeastRequest and Random ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_and_random_reach_every_upstream() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let r1 = Upstream::start("recommendations-1").await?;
    let r2 = Upstream::start("recommendations-2").await?;
    let t1 = Upstream::start("thumbnails-1").await?;
    let t2 = Upstream::start("thumbnails-2").await?;
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("lb.yaml", example("routing/load-balancing.yaml")),
            (
                "recommendations-endpoints.yaml",
                endpoints_yaml("default", "recommendations", &[&r1, &r2]),
            ),
            (
                "thumbnails-endpoints.yaml",
                endpoints_yaml("default", "thumbnails", &[&t1, &t2]),
            ),
        ],
    )
    .await?;
    for (service, lb_policy, ups) in [
        ("recommendations", "LEAST_REQUEST", [&r1, &r2]),
        ("thumbnails", "RANDOM", [&t1, &t2]),
    ] {
        let name = cluster(service, 80, "");
        wait_lb_policy(&m, &name, lb_policy).await?;
        wait_hosts(&m, &name, &ups).await?;
        let counts = tally(&m.envoy, service, &[], 100).await?;
        let names: Vec<&str> = counts.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [ups[0].name(), ups[1].name()],
            "{lb_policy}: 100 requests reach both upstreams, and only them: {counts:?}"
        );
    }
    Ok(())
}

// === TLS origination ===

const BILLING: &str = "billing.example.com";
const BILLING_CLUSTER: &str = "outbound|80||billing.example.com";

/// The TLS origination example pointed at `upstream`, trusting `ca_pem` (in place of the
/// placeholder certificate the example ends with).
fn tls_origination(upstream: &Upstream, ca_pem: &str) -> String {
    let text = example("routing/tls-origination.yaml")
        .replace("http: 8443", &format!("http: {}", upstream.port()));
    let marker = "    caCertificates: |\n";
    let (head, _placeholder) = text
        .split_once(marker)
        .unwrap_or_else(|| panic!("tls-origination.yaml has no {marker:?}"));
    let ca: String = ca_pem
        .replace("\r\n", "\n")
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    format!("{head}{marker}{ca}")
}

/// A cluster stat of the billing cluster (0 while Envoy has not created it).
async fn billing_stat(envoy: &Envoy, stat: &str) -> anyhow::Result<u64> {
    Ok(envoy
        .stat(&format!("cluster.{BILLING_CLUSTER}.{stat}"))
        .await?
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_origination_reaches_an_https_upstream_over_plain_http() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let ca = TestCa::new()?;
    let billing = Upstream::start_tls("billing", &ca.issue(&[BILLING])?).await?;
    let m = Mesh::start(
        bin(),
        "mesh",
        &[("billing.yaml", tls_origination(&billing, &ca.cert_pem()))],
    )
    .await?;
    let r = wait_request(&m, Method::GET, BILLING, "/invoices?id=7", |r| {
        r.status == 200
    })
    .await?;
    assert_eq!(
        (
            r.body.as_str(),
            r.header("x-seen-host"),
            r.header("x-seen-path")
        ),
        ("billing", Some(BILLING), Some("/invoices?id=7")),
        "{r:?}"
    );
    // Envoy spoke TLS, with the policy's SNI.
    let names = billing.server_names();
    assert!(
        !names.is_empty() && names.iter().all(|n| n == BILLING),
        "SNI seen by the upstream: {names:?}"
    );
    assert!(billing_stat(&m.envoy, "ssl.handshake").await? >= 1);
    assert_eq!(billing_stat(&m.envoy, "ssl.fail_verify_error").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_origination_with_the_wrong_ca_answers_503() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let ca = TestCa::new()?;
    let other_ca = TestCa::new()?;
    let billing = Upstream::start_tls("billing", &ca.issue(&[BILLING])?).await?;
    let m = Mesh::start(
        bin(),
        "mesh",
        &[(
            "billing.yaml",
            tls_origination(&billing, &other_ca.cert_pem()),
        )],
    )
    .await?;
    // The server's certificate does not chain to the CA the policy trusts: Envoy refuses
    // the connection, the request never reaches the upstream, the caller gets 503.
    let failed = eventually("a 503 after a failed verification", DEADLINE, || async {
        let r = m
            .envoy
            .fetch(BILLING, "/")
            .await
            .map_err(|e| e.to_string())?;
        let fails = billing_stat(&m.envoy, "ssl.fail_verify_error")
            .await
            .map_err(|e| e.to_string())?;
        if r.status == 503 && fails >= 1 {
            Ok(r)
        } else {
            Err(format!(
                "{} {:?}, fail_verify_error {fails}",
                r.status, r.body
            ))
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    assert_eq!(billing.hits(), 0, "no request reached the upstream");
    assert!(
        !billing.server_names().is_empty(),
        "Envoy did start TLS handshakes with the upstream"
    );
    assert!(failed.body.contains("connection failure"), "{failed:?}");

    // Trusting the right CA fixes it: the 503 was the verification, nothing else.
    m.config
        .write("billing.yaml", &tls_origination(&billing, &ca.cert_pem()))?;
    let r = m
        .wait_mesh(BILLING, "/", "billing to answer with the right CA", |r| {
            r.status == 200
        })
        .await?;
    assert_eq!(r.body, "billing");
    Ok(())
}

// === ExternalService by DNS ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_service_resolved_by_dns_is_reachable() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let ext = Upstream::start("ext").await?;
    let manifest = example("routing/dns-external.yaml")
        .replace("http: 8080", &format!("http: {}", ext.port()));
    let m = Mesh::start(bin(), "mesh", &[("ext.yaml", manifest)]).await?;
    let r = m
        .wait_mesh("ext.test", "/hello", "ext.test to answer", |r| {
            r.status == 200
        })
        .await?;
    assert_eq!(
        (
            r.upstream(),
            r.header("x-seen-host"),
            r.header("x-seen-path")
        ),
        (Some("ext"), Some("ext.test"), Some("/hello"))
    );
    // Envoy got the name, not an address, and resolved it itself.
    let cluster = m
        .envoy
        .cluster_config("outbound|80||ext.test")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no cluster outbound|80||ext.test"))?;
    assert_eq!(cluster["type"], "LOGICAL_DNS", "{cluster:#}");
    let address = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"];
    assert_eq!(
        (&address["address"], &address["port_value"]),
        (
            &serde_json::json!("localhost"),
            &serde_json::json!(ext.port())
        ),
        "{cluster:#}"
    );
    Ok(())
}

// === query parameter and method matches ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_and_methods_pick_the_destination() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let v1 = Upstream::start("feed-v1").await?;
    let v2 = Upstream::start("feed-v2").await?;
    let writer = Upstream::start("feed-writer").await?;
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("feed.yaml", example("routing/query-method-routing.yaml")),
            (
                "feed-endpoints.yaml",
                [
                    labeled_endpoints_yaml("default", "feed", &v1, &[("version", "v1")]),
                    labeled_endpoints_yaml("default", "feed", &v2, &[("version", "v2")]),
                    endpoints_yaml("default", "feed-writer", &[&writer]),
                ]
                .join("---\n"),
            ),
        ],
    )
    .await?;
    m.wait_config("\"default/feed/beta\"").await?;
    for (method, path, who) in [
        (Method::GET, "/?beta=1", "feed-v2"),
        (Method::POST, "/", "feed-writer"),
        (Method::GET, "/", "feed-v1"),
    ] {
        wait_request(&m, method, "feed", path, |r| r.upstream() == Some(who)).await?;
    }

    let cases = [
        (Method::GET, "/", "feed-v1"),
        (Method::GET, "/?beta=1", "feed-v2"),
        (Method::GET, "/items?page=2&beta=1", "feed-v2"),
        (Method::GET, "/?beta=2", "feed-v1"),
        (Method::GET, "/?beta=10", "feed-v1"),
        (Method::GET, "/?betax=1", "feed-v1"),
        (Method::PUT, "/?beta=1", "feed-v2"),
        (Method::DELETE, "/", "feed-v1"),
        (Method::POST, "/", "feed-writer"),
        // Rules are tried in order: the POST rule comes before the query rule.
        (Method::POST, "/?beta=1", "feed-writer"),
    ];
    for round in 0..5 {
        for (method, path, who) in &cases {
            let r = send(m.envoy.request(method.clone(), "feed", path)).await?;
            assert_eq!(
                (r.status, r.upstream()),
                (200, Some(*who)),
                "round {round}: {method} {path}: {r:?}"
            );
        }
    }
    Ok(())
}

// === weighted TCP routes on a Gateway ===

/// EndpointSlices for a Service whose port is named `tcp` (not `http`).
fn tcp_endpoints(service: &str, upstream: &Upstream) -> String {
    endpoints_yaml("default", service, &[upstream]).replace("- name: http\n", "- name: tcp\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_route_weights_split_connections_between_backends() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let blue = Upstream::start("ledger-blue").await?;
    let green = Upstream::start("ledger-green").await?;
    let port = portolan_e2e::ports::free_port();
    let manifest =
        example("routing/tcp-weights.yaml").replace("port: 9100", &format!("port: {port}"));
    let m = Mesh::start(
        bin(),
        "edge",
        &[
            ("ledger.yaml", manifest),
            ("blue.yaml", tcp_endpoints("ledger-blue", &blue)),
            ("green.yaml", tcp_endpoints("ledger-green", &green)),
        ],
    )
    .await?;
    m.wait_config(&format!("\"gateway-{port}\"")).await?;
    wait_hosts(&m, &cluster("ledger-blue", 7000, ""), &[&blue]).await?;
    wait_hosts(&m, &cluster("ledger-green", 7000, ""), &[&green]).await?;

    // Each request on a connection of its own (a new client each time, `connection: close`):
    // the TCP proxy picks a backend per connection.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..40 {
        let req = http::request(port, Method::GET, "ledger.example.com", "/")
            .header("connection", "close");
        let r = send(req).await?;
        assert_eq!(r.status, 200, "connection {i}: {r:?}");
        *counts
            .entry(r.upstream().unwrap_or("<none>").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        counts.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ledger-blue", "ledger-green"],
        "40 connections at 50/50 reach both backends, and only them: {counts:?}"
    );
    assert_eq!((blue.hits() + green.hits()) as usize, 40);
    Ok(())
}
