//! TCPRoute (experimental channel) scenarios of the conformance run: TCP listeners of a
//! Gateway proxy every connection to the backends of the one TCPRoute attached (Envoy
//! `tcp_proxy`, weighted clusters). The upstreams speak HTTP, but the Gateway's listener has no
//! HTTP filter at all: the bytes pass through untouched, and the `x-upstream` header of the
//! reply names the backend the connection reached.

use super::tls::route_parent;
use super::{Conformance, INFRA, assert_condition, condition};
use portolan_e2e::http::send;
use portolan_e2e::ports::free_port;
use portolan_e2e::{client, eventually};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A case's manifest with its three TCP listener ports filled in.
fn tcp_manifest(c: &Conformance, file: &str, ports: [u16; 3]) -> anyhow::Result<String> {
    let mut text = c.manifest(file)?;
    for (i, p) in ports.iter().enumerate() {
        text = text.replace(&format!("{{TCP_PORT_{}}}", i + 1), &p.to_string());
    }
    Ok(text)
}

/// The backend that answers a connection to `addr:port`, once one does.
async fn reached(addr: &str, port: u16) -> Result<String, String> {
    let r = send(client().get(format!("http://{addr}:{port}/tcp")))
        .await
        .map_err(|e| e.to_string())?;
    r.upstream()
        .map(str::to_string)
        .ok_or_else(|| format!("no x-upstream in {:?}", r.headers))
}

/// Polls connections to `addr:port` until every backend of `want` answered (and no other).
async fn reaches_all(addr: &str, port: u16, want: &[&str]) -> anyhow::Result<()> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let seen = std::sync::Mutex::new(BTreeSet::new());
    eventually(
        &format!("connections to {addr}:{port} reach {want:?}"),
        super::DEADLINE,
        || async {
            let b = reached(addr, port).await?;
            let mut seen = seen.lock().map_err(|e| e.to_string())?;
            seen.insert(b);
            if !seen.is_subset(&want) {
                return Err(format!("unexpected backend: {seen:?}"));
            }
            if *seen == want {
                Ok(())
            } else {
                Err(format!("so far {seen:?}"))
            }
        },
    )
    .await?;
    // A backend outside `want` fails the check above at once; keep the assertion explicit.
    let seen = seen.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(seen, want);
    Ok(())
}

/// `parents[]` of TCPRoute `route` for Gateway `gw`, once it has condition `type_`.
async fn tcp_parent(c: &Conformance, route: &str, gw: &str, type_: &str) -> anyhow::Result<Value> {
    route_parent(c, &format!("TCPRoute {INFRA}/{route}"), gw, type_).await
}

/// TCPRouteParentRefPortAndSectionName, TCPRouteWeightedRouting and TCPRouteSimpleSameNamespace:
/// routes attach by port, by sectionName and by both; each is Accepted with its refs resolved,
/// each listener has one attached route and supports exactly TCPRoute, each listener's
/// connections reach its route's backends (both weight-1 backends of the weighted route, never
/// its weight-0 one).
pub(super) async fn tcp_route_parent_refs(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "tcproute-parentref-port-and-section-name.yaml";
    let gw = "tcp-multi-listener-gateway";
    let ports = [free_port(), free_port(), free_port()];
    c.config.write(file, &tcp_manifest(c, file, ports)?)?;
    for route in [
        "tcp-route-by-port",
        "tcp-route-by-section",
        "tcp-route-by-section-and-port",
    ] {
        let p = tcp_parent(c, route, gw, "ResolvedRefs").await?;
        assert_eq!(p["controllerName"], "portolan.dev/gateway-controller");
        assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
        assert_condition(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
    }
    for listener in ["one", "two", "three"] {
        let l = c
            .listener_where(gw, listener, |l| l["attachedRoutes"] == 1)
            .await?;
        assert_condition(&l["conditions"], "Accepted", "True", "Accepted");
        assert_eq!(
            l["supportedKinds"],
            json!([{"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}]),
            "{l}"
        );
    }
    let addr = c.gateway(gw).await?;
    reaches_all(&addr, ports[0], &["infra-backend-v1"]).await?;
    reaches_all(&addr, ports[1], &["infra-backend-v2"]).await?;
    reaches_all(&addr, ports[2], &["infra-backend-v1", "infra-backend-v3"]).await?;
    c.config.remove(file)?;
    c.gone(&format!("Gateway {INFRA}/{gw}")).await
}

/// TCPRouteReferenceGrant and the TCPRoute flavours of the invalid-backendRef tests: every
/// route is Accepted; ResolvedRefs is False with RefNotPermitted (cross-namespace without a
/// grant), BackendNotFound, InvalidKind, and no backend answers; a TCPRoute on an HTTP
/// listener is `NotAllowedByListeners`. With the ReferenceGrant written, the cross-namespace
/// route resolves and its connections reach web-backend.
pub(super) async fn tcp_route_refs(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "tcproute-refs.yaml";
    let grant = "tcproute-reference-grant.yaml";
    let gw = "tcp-refs-gateway";
    let ports = [free_port(), free_port(), free_port()];
    c.config.write(file, &tcp_manifest(c, file, ports)?)?;
    for (route, reason) in [
        ("tcp-reference-grant", "RefNotPermitted"),
        ("tcp-backend-not-found", "BackendNotFound"),
        ("tcp-invalid-kind", "InvalidKind"),
    ] {
        let p = tcp_parent(c, route, gw, "ResolvedRefs").await?;
        assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
        assert_condition(&p["conditions"], "ResolvedRefs", "False", reason);
    }
    let p = tcp_parent(c, "tcp-on-http", gw, "Accepted").await?;
    assert_condition(
        &p["conditions"],
        "Accepted",
        "False",
        "NotAllowedByListeners",
    );
    let addr = c.gateway(gw).await?;
    // The listeners are there (the Envoy has them), yet no connection reaches a backend.
    for port in ports {
        c.wait_envoy(gw, &format!("\"port_value\": {port}"), true)
            .await?;
        let r = reached(&addr, port).await;
        assert!(r.is_err(), "port {port}: no backend may answer: {r:?}");
    }
    c.config.write(grant, &c.manifest(grant)?)?;
    let key = format!("TCPRoute {INFRA}/tcp-reference-grant");
    c.status_where(&key, |s| {
        s["parents"].as_array().into_iter().flatten().any(|p| {
            condition(&p["conditions"], "ResolvedRefs").is_some_and(|c| c["status"] == "True")
        })
    })
    .await?;
    reaches_all(&addr, ports[0], &["web-backend"]).await?;
    c.config.remove(grant)?;
    c.config.remove(file)?;
    c.gone(&format!("Gateway {INFRA}/{gw}")).await
}

/// TCPRouteParentRefAttachAll: a parentRef without sectionName or port attaches to both TCP
/// listeners (one accepted parent, `attachedRoutes: 1` on each, none on the HTTP listener)
/// and connections to either reach the backend.
pub(super) async fn tcp_route_attach_all(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "tcproute-parentref-attach-all.yaml";
    let gw = "tcp-attach-all-gateway";
    let ports = [free_port(), free_port(), free_port()];
    c.config.write(file, &tcp_manifest(c, file, ports)?)?;
    let p = tcp_parent(c, "tcp-attach-all", gw, "ResolvedRefs").await?;
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
    for listener in ["first", "second"] {
        c.listener_where(gw, listener, |l| l["attachedRoutes"] == 1)
            .await?;
    }
    let http = c.listener_where(gw, "http", |_| true).await?;
    assert_eq!(http["attachedRoutes"], 0, "{http}");
    let addr = c.gateway(gw).await?;
    reaches_all(&addr, ports[0], &["infra-backend-v2"]).await?;
    reaches_all(&addr, ports[1], &["infra-backend-v2"]).await?;
    c.config.remove(file)?;
    c.gone(&format!("Gateway {INFRA}/{gw}")).await
}
