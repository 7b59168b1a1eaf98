//! End to end, mesh telemetry: with `--access-log json` a request through Envoy writes a JSON
//! line to Envoy's stdout; request ids and W3C `traceparent` reach the upstream, without a
//! tracer (passed through) and with the OpenTelemetry tracer (same trace, Envoy's own span).

use crate::bin;
use portolan_e2e::ports::free_port;
use portolan_e2e::{Mesh, Upstream, endpoints_yaml, eventually, service_yaml};
use serde_json::Value;
use std::time::Duration;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn mesh(serve_args: &[&str]) -> anyhow::Result<(Mesh, Upstream)> {
    let web = Upstream::start("web").await?;
    let m = Mesh::start_with(
        bin(),
        "mesh",
        &[
            ("web/service.yaml", service_yaml("default", "web", 80)),
            (
                "web/endpoints.yaml",
                endpoints_yaml("default", "web", &[&web]),
            ),
        ],
        serve_args,
    )
    .await?;
    m.envoy.wait_for_response("web", 200, "web").await?;
    Ok((m, web))
}

/// GET /headers through the mesh with a traceparent and a request id; the headers the
/// upstream saw.
async fn traced_request(m: &Mesh, request_id: &str) -> anyhow::Result<Value> {
    let r = m
        .envoy
        .request(reqwest::Method::GET, "web", "/headers")
        .header("traceparent", TRACEPARENT)
        .header("x-request-id", request_id)
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 200, "status {}", r.status());
    Ok(r.json().await?)
}

fn first(headers: &Value, name: &str) -> String {
    headers[name][0].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_logs_and_trace_headers_without_a_collector() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let (m, _web) = mesh(&["--access-log", "json"]).await?;
    let seen = traced_request(&m, "e2e-request-1").await?;
    assert_eq!(first(&seen, "traceparent"), TRACEPARENT, "{seen}");
    assert_eq!(first(&seen, "x-request-id"), "e2e-request-1", "{seen}");

    // A request without a request id gets one generated.
    let r = m.envoy.fetch("web", "/headers").await?;
    let generated = r.seen_headers()?;
    assert!(
        generated
            .get("x-request-id")
            .is_some_and(|v| !v[0].is_empty()),
        "{generated:?}"
    );

    let line = eventually(
        "the access-log line on Envoy's stdout",
        Duration::from_secs(20),
        || async {
            let out = m.envoy.stdout();
            out.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["request_id"] == "e2e-request-1")
                .ok_or_else(|| format!("stdout: {out}"))
        },
    )
    .await?;
    assert_eq!(line["path"], "/headers", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["authority"], "web", "{line}");
    assert_eq!(line["traceparent"], TRACEPARENT, "{line}");
    assert!(
        line["upstream_cluster"]
            .as_str()
            .is_some_and(|c| c.contains("web.default.svc")),
        "{line}"
    );
    assert!(line["start_time"].is_string(), "{line}");
    assert!(line["duration_ms"].is_number(), "{line}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opentelemetry_tracer_is_accepted_and_continues_the_trace() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    // Nothing listens on the collector port: spans are dropped, requests must not suffer.
    let collector = format!("127.0.0.1:{}", free_port());
    let (m, _web) = mesh(&["--access-log", "json", "--tracing-collector", &collector]).await?;
    m.wait_config("envoy.tracers.opentelemetry").await?;
    m.wait_config("portolan-otel-collector").await?;
    let proxies = m.portolan.get_json("/debug/proxies").await?;
    let nacks: Vec<&Value> = proxies
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["types"].as_array().into_iter().flatten())
        .filter(|t| !t["last_nack"].is_null())
        .collect();
    assert!(nacks.is_empty(), "Envoy NACKed: {nacks:?}");

    let seen = traced_request(&m, "e2e-request-2").await?;
    let traceparent = first(&seen, "traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        parts[1], TRACE_ID,
        "the upstream continues the caller's trace"
    );
    assert_eq!(first(&seen, "x-request-id"), "e2e-request-2", "{seen}");
    Ok(())
}
