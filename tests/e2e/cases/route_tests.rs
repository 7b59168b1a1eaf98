//! `portolan test` and `portolan explain` (issue #23): the route test suites in
//! `examples/tests/` pass through stock Envoy on the rendered examples; a wrong expectation
//! fails with a readable diff and exit 1; the evaluator (no Envoy) reaches the same verdict on
//! every check of every case, right or wrong; RouteTest documents may live in the config
//! directory without disturbing `serve`'s source or `validate`; `explain` names the route,
//! policies, clusters and endpoints.

use crate::bin;
use portolan_e2e::envoy::envoy_bin;
use portolan_e2e::manifests::examples_dir;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// The example directories and the route test file written for each.
const SUITES: &[(&str, &str)] = &[
    ("routing", "tests/routing.yaml"),
    ("bookinfo", "tests/bookinfo.yaml"),
    ("security", "tests/security.yaml"),
];

/// The proxy group of the `server` workload in examples/security.
const SERVER: &str = "server;l.app=server;ns=shop;sa=server;app=8080;in=15006";

/// Wrong expectations about AccessPolicy over examples/security.
const WRONG_ACCESS: &str = r#"
apiVersion: portolan.dev/v1alpha1
kind: RouteTest
metadata: {name: wrong-access}
spec:
  group: "server;l.app=server;ns=shop;sa=server;app=8080;in=15006"
  cases:
  - name: the client may not DELETE
    request: {host: server.shop, method: DELETE, path: /api, port: 15006, source: {namespace: shop, serviceAccount: client}}
    expect: {allowed: true}
  - name: healthz is open
    request: {host: server.shop, path: /healthz, port: 15006}
    expect: {allowed: false}
"#;

/// A deliberately wrong suite over examples/routing: every case has one wrong expectation.
const WRONG: &str = r#"
apiVersion: portolan.dev/v1alpha1
kind: RouteTest
metadata: {name: wrong}
spec:
  group: default
  cases:
  - name: the canary is not 50/50
    request: {host: reviews}
    expect:
      status: 200
      backends:
      - {service: reviews, subset: v1, weight: 50}
      - {service: reviews, subset: v2, weight: 50}
  - name: jason does not get v1
    request: {host: ratings, headers: {end-user: jason}}
    expect: {status: 200, backend: {service: ratings, subset: v1}}
  - name: /old is a 301 to /new
    request: {host: frontend, path: /old}
    expect: {status: 302, redirect: "http://frontend/newer"}
  - name: profile headers
    request: {host: profile}
    expect:
      requestHeaders: {x-tenant: other}
      responseHeaders: {x-served-by: portolan}
      timeout: 1s
      retries: {attempts: 3}
  - name: a right case among wrong ones
    request: {host: orders}
    expect: {status: 200, timeout: 5s}
"#;

fn portolan_test(config_dir: &Path, tests: &[&Path], extra: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("test").arg("--config-dir").arg(config_dir);
    cmd.args(tests).args(extra).env("ENVOY_BIN", envoy_bin());
    cmd.output().expect("portolan test runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json_report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// `(suite, case, check, ok)` for every check of a JSON report, and each case's verdict.
fn verdicts(report: &Value) -> Vec<String> {
    let mut all = Vec::new();
    for s in report["suites"].as_array().expect("suites") {
        for c in s["cases"].as_array().expect("cases") {
            all.push(format!("{} / {}: pass={}", s["name"], c["name"], c["pass"]));
            for ch in c["checks"].as_array().expect("checks") {
                all.push(format!(
                    "{} / {} / {}: ok={}",
                    s["name"], c["name"], ch["what"], ch["ok"]
                ));
            }
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_suites_pass_through_stock_envoy() {
    let _shared = portolan_e2e::serial::shared().await;
    for (dir, tests) in SUITES {
        let out = portolan_test(
            &examples_dir().join(dir),
            &[&examples_dir().join(tests)],
            &[],
        );
        let report = text(&out);
        assert!(out.status.success(), "{dir}: {report}");
        assert!(
            report.contains(": stock Envoy"),
            "{dir}: ran through Envoy: {report}"
        );
        assert!(!report.contains("FAIL"), "{report}");
        assert!(report.contains(" passed, 0 failed"), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_expectation_fails_with_a_readable_diff() {
    let _shared = portolan_e2e::serial::shared().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(&wrong, WRONG).expect("write");
    let out = portolan_test(&examples_dir().join("routing"), &[&wrong], &[]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains(": stock Envoy"), "{report}");
    for expected in [
        "FAIL  the canary is not 50/50",
        "- expected reviews subset v1 weight 50, reviews subset v2 weight 50",
        "+ got      reviews.default:9080 subset v1 weight 90, reviews.default:9080 subset v2 weight 10",
        "FAIL  jason does not get v1",
        "- expected ratings subset v1",
        "+ got      ratings.default:9080 subset v2 (answered by ratings.default:9080 subset v2)",
        "- expected \"http://frontend/newer\"",
        "+ got      \"http://frontend/new\"",
        "request header x-tenant:",
        "+ got      \"acme\"",
        "- expected 1s",
        "+ got      15s",
        "- expected 3 attempts",
        "PASS  a right case among wrong ones",
        "1 passed, 4 failed",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    // Only the wrong expectations are shown as differences.
    assert!(!report.contains("response header x-served-by"), "{report}");

    let access = dir.path().join("wrong-access.yaml");
    std::fs::write(&access, WRONG_ACCESS).expect("write");
    let out = portolan_test(&examples_dir().join("security"), &[&access], &[]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    for expected in [
        "FAIL  the client may not DELETE",
        "- expected allowed\n        + got      denied (403)",
        "FAIL  healthz is open",
        "- expected denied (403)\n        + got      allowed",
        "0 passed, 2 failed",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_evaluator_agrees_with_envoy_on_every_example_case() {
    let _shared = portolan_e2e::serial::shared().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(&wrong, WRONG).expect("write");
    let wrong_access = dir.path().join("wrong-access.yaml");
    std::fs::write(&wrong_access, WRONG_ACCESS).expect("write");
    let files: Vec<_> = SUITES.iter().map(|(_, t)| examples_dir().join(t)).collect();
    let mut runs: Vec<(&str, &Path)> = SUITES
        .iter()
        .map(|(d, _)| *d)
        .zip(files.iter().map(|f| f.as_path()))
        .collect();
    runs.push(("routing", &wrong));
    runs.push(("security", &wrong_access));
    let mut compared = 0;
    for (dir, tests) in runs {
        let config = examples_dir().join(dir);
        let envoy = portolan_test(&config, &[tests], &["--output", "json"]);
        let evaluator = portolan_test(&config, &[tests], &["--output", "json", "--no-envoy"]);
        let (envoy, evaluator) = (json_report(&envoy), json_report(&evaluator));
        for s in envoy["suites"].as_array().expect("suites") {
            assert_eq!(s["mode"], "envoy", "{s}");
        }
        for s in evaluator["suites"].as_array().expect("suites") {
            assert_eq!(s["mode"], "evaluator", "{s}");
        }
        let (a, b) = (verdicts(&envoy), verdicts(&evaluator));
        assert_eq!(a, b, "{dir}: Envoy and the evaluator disagree");
        compared += a.len();
    }
    assert!(compared > 60, "checks compared: {compared}");
}

/// Redirect variants (scheme, host, port, with and without a port in the request): what
/// Envoy writes in `Location` is what the evaluator predicts, value for value.
const REDIRECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: portolan.dev/v1alpha1
kind: TrafficRoute
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - {name: scheme, match: [{path: {prefix: /s}}], redirect: {scheme: https}}
  - {name: host, match: [{path: {prefix: /h}}], redirect: {authority: other.example}}
  - {name: p443, match: [{path: {prefix: /p443}}], redirect: {scheme: https, port: 443}}
  - {name: p80, match: [{path: {prefix: /p80}}], redirect: {port: 80}}
  - {name: p9, match: [{path: {prefix: /p9}}], redirect: {port: 9000, redirectCode: 308}}
  - {name: default, route: [{destination: {host: web}}]}
---
apiVersion: portolan.dev/v1alpha1
kind: RouteTest
metadata: {name: redirects}
spec:
  cases:
  - {name: scheme, request: {host: "web:80", path: "/s?a=1"}, expect: {status: 0, redirect: "?"}}
  - {name: scheme without port, request: {host: web, path: /s}, expect: {status: 0, redirect: "?"}}
  - {name: host, request: {host: "web:80", path: /h}, expect: {status: 0, redirect: "?"}}
  - {name: port 443, request: {host: "web:80", path: /p443}, expect: {status: 0, redirect: "?"}}
  - {name: port 80, request: {host: web, path: /p80}, expect: {status: 0, redirect: "?"}}
  - {name: port 9000, request: {host: "web:80", path: /p9}, expect: {status: 0, redirect: "?"}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_evaluator_writes_redirects_as_envoy_does() {
    let _shared = portolan_e2e::serial::shared().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web.yaml"), REDIRECTS).expect("write");
    let envoy = json_report(&portolan_test(dir.path(), &[], &["--output", "json"]));
    let evaluator = json_report(&portolan_test(
        dir.path(),
        &[],
        &["--output", "json", "--no-envoy"],
    ));
    let got = |report: &Value| -> Vec<String> {
        report["suites"][0]["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .flat_map(|c| c["checks"].as_array().expect("checks").clone())
            .map(|ch| format!("{}: {}", ch["what"], ch["got"]))
            .collect()
    };
    let (a, b) = (got(&envoy), got(&evaluator));
    assert_eq!(a.len(), 12, "{a:?}");
    assert!(a.iter().any(|g| g.contains("https://web/s?a=1")), "{a:?}");
    assert_eq!(a, b, "Envoy's redirects and the evaluator's");
}

#[tokio::test(flavor = "multi_thread")]
async fn route_tests_can_live_in_the_config_directory() {
    let _shared = portolan_e2e::serial::shared().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["bookinfo/bookinfo.yaml", "tests/bookinfo.yaml"] {
        let name = file.replace('/', "-");
        std::fs::copy(examples_dir().join(file), dir.path().join(name)).expect("copy");
    }
    // `validate` (the files source's decoder) skips the RouteTest document.
    let out = Command::new(bin())
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("validate runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(" 0 errors"), "{}", text(&out));
    // Without TESTS, the RouteTest documents of the config directory are run.
    let out = portolan_test(dir.path(), &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("3 passed, 0 failed"), "{}", text(&out));
    // A RouteTest with a field error is named with file, document and field path.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: portolan.dev/v1alpha1\nkind: RouteTest\nmetadata: {name: bad}\nspec:\n  cases:\n  - name: x\n    request: {host: reviews}\n    expect: {status: 200, backend: {service: reviews, wieght: 1}}\n",
    )
    .expect("write");
    let out = portolan_test(dir.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out);
    assert!(
        report.contains("bad.yaml#0: RouteTest bad: spec.cases[0].expect.backend"),
        "{report}"
    );
    assert!(report.contains("wieght"), "{report}");
}

/// A DISABLE workload serving two ports: its inbound listener has a plaintext chain per port
/// (and the passthrough's), which `portolan test` runs on a port Envoy picks.
const DISABLE_TWO_PORTS: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: server
  namespace: shop
  labels: {portolan.dev/service-account: server}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: http-admin, port: 81, targetPort: 9090}
---
apiVersion: portolan.dev/v1alpha1
kind: PeerAuthentication
metadata: {name: server-plaintext, namespace: shop}
spec:
  selector: {matchLabels: {app: server}}
  mtls: {mode: DISABLE}
---
apiVersion: portolan.dev/v1alpha1
kind: RouteTest
metadata: {name: plaintext-inbound}
spec:
  group: "server;l.app=server;ns=shop;sa=server;app=8080;in=15006"
  cases:
  - name: a plaintext caller reaches the application port
    request: {host: server.shop, path: /, port: 15006}
    expect: {allowed: true, status: 200, backend: {cluster: "inbound|8080"}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_plaintext_inbound_listener_with_several_ports_runs_through_envoy() {
    let _shared = portolan_e2e::serial::shared().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("server.yaml"), DISABLE_TWO_PORTS).expect("write");
    let out = portolan_test(dir.path(), &[], &[]);
    let report = text(&out);
    // Before: the chains of 8080, 15006 and 9090 all matched any port once the test
    // listener dropped their ports, and Envoy refused the listener.
    assert!(out.status.success(), "{report}");
    assert!(report.contains(": stock Envoy"), "{report}");
    assert!(report.contains("1 passed, 0 failed"), "{report}");
}

#[test]
fn explain_names_the_route_policies_clusters_and_endpoints() {
    let explain = |dir: &str, request: &str, headers: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(["explain", "--config-dir"])
            .arg(examples_dir().join(dir))
            .args(["--request", request]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.output().expect("explain runs");
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let out = explain("routing", "GET http://orders/checkout", &[]);
    for line in [
        "listener       mesh-outbound (port 15001), route configuration mesh-outbound",
        "virtual host   orders.default:80 (domain \"orders\")",
        "route          #2 default/orders/default: prefix \"/\"",
        "timeout        5000ms",
        "retries        2 attempts, per try 2000ms, on 5xx",
        "  outbound|80||orders.default.svc.cluster.local",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let out = explain("routing", "http://ratings/", &["end-user: jason"]);
    assert!(
        out.contains(
            "#0 default/ratings-ab/jason-to-v2: prefix \"/\", header end-user = \"jason\""
        ),
        "{out}"
    );
    let out = explain("routing", "http://reviews/", &[]);
    assert!(
        out.contains("outbound|9080|v1|reviews.default.svc.cluster.local weight 90"),
        "{out}"
    );
    assert!(
        out.contains("outbound|9080|v2|reviews.default.svc.cluster.local weight 10"),
        "{out}"
    );
    let out = explain("bookinfo", "http://reviews:9080/", &[]);
    for ep in [
        "127.0.0.11:9080",
        "127.0.0.12:9080",
        "127.0.0.13:9080 (HEALTHY, zone zone-b): eligible",
    ] {
        assert!(out.contains(ep), "missing {ep:?} in:\n{out}");
    }
    let denied = Command::new(bin())
        .args(["explain", "--config-dir"])
        .arg(examples_dir().join("security"))
        .args([
            "--group",
            SERVER,
            "--port",
            "15006",
            "--source",
            "batch/job",
        ])
        .args(["--request", "GET http://server.shop/admin/x"])
        .output()
        .expect("explain runs");
    assert!(
        text(&denied)
            .contains("denied by AccessPolicy (RBAC) for spiffe://cluster.local/ns/batch/sa/job"),
        "{}",
        text(&denied)
    );
    let out = explain("routing", "http://frontend/secure/a", &[]);
    assert!(
        out.contains("redirect 302 to https://secure.example.com:8443/secure/a"),
        "{out}"
    );
}
