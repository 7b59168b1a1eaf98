//! UDPRoute (experimental channel) scenarios of the conformance run: UDP listeners of a
//! Gateway send every datagram to the backends of the UDPRoute attached (Envoy's UDP proxy,
//! one session per client address and port, backend weights as endpoint weights). The
//! upstreams are UDP echo servers ([`UdpEcho`]) answering `NAME: payload`, so each answer
//! names the backend the datagram reached; each datagram goes from a fresh socket, so each is
//! a new session that the proxy balances anew.

use super::tls::route_parent;
use super::{Conformance, INFRA, assert_condition};
use portolan_e2e::http::send;
use portolan_e2e::ports::free_port;
use portolan_e2e::upstream::udp::{UdpEcho, exchange};
use portolan_e2e::{client, eventually};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one datagram waits for its answer before it counts as unanswered.
const ANSWER_WAIT: Duration = Duration::from_millis(500);

/// Datagrams sent to check the 50/50 split (each from its own socket).
const SPLIT_SAMPLES: usize = 60;

/// The backends of the run: (Service, echo name).
const BACKENDS: [&str; 3] = ["l4-backend", "udp-backend-a", "udp-backend-b"];

/// The backend that answers a datagram sent to `to`, if one does.
async fn reached(to: SocketAddr, payload: &str) -> Result<String, String> {
    let answer = exchange(to, payload, ANSWER_WAIT)
        .await
        .map_err(|e| e.to_string())?;
    let (name, echoed) = answer
        .split_once(": ")
        .ok_or_else(|| format!("not an echo: {answer:?}"))?;
    if echoed != payload {
        return Err(format!("echoed {echoed:?}, sent {payload:?}"));
    }
    Ok(name.to_string())
}

/// `parents[]` of UDPRoute `ns/route` for Gateway `gw`, once it has condition `type_`.
async fn udp_parent(c: &Conformance, ns: &str, route: &str, type_: &str) -> anyhow::Result<Value> {
    route_parent(c, &format!("UDPRoute {ns}/{route}"), "udp-gateway", type_).await
}

/// The 50/50 split between `udp-backend-a` and a missing Service at `to`: once `a` answers, a
/// bounded number of sessions lands on `a` or is dropped, both in a loose proportion.
async fn half_missing(c: &Conformance, to: SocketAddr) -> anyhow::Result<()> {
    let p = udp_parent(c, INFRA, "udp-half-missing", "ResolvedRefs").await?;
    assert_condition(&p["conditions"], "ResolvedRefs", "False", "BackendNotFound");
    eventually(
        &format!("datagrams to {to} reach udp-backend-a"),
        super::DEADLINE,
        || async { reached(to, "warm-up").await.map(|_| ()) },
    )
    .await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..SPLIT_SAMPLES / 2 {
        let b = reached(to, &format!("half-{i}"))
            .await
            .unwrap_or_else(|_| "dropped".to_string());
        *counts.entry(b).or_default() += 1;
    }
    eprintln!("UDPRoute 50/50 with a missing backend: {counts:?}");
    let a = counts.get("udp-backend-a").copied().unwrap_or_default();
    let dropped = counts.get("dropped").copied().unwrap_or_default();
    assert_eq!(a + dropped, SPLIT_SAMPLES / 2, "{counts:?}");
    // Loose: each side at least a sixth (a fair split halves them; the old behaviour gave
    // every session to `a`).
    assert!(
        a >= SPLIT_SAMPLES / 12 && dropped >= SPLIT_SAMPLES / 12,
        "50/50 with a missing backend: {counts:?}"
    );
    Ok(())
}

/// UDPRoute (upstream's udproute-simple, with an echo backend for CoreDNS) and Portolan's
/// own UDPRoute checks: the route is Accepted and resolved, the listener supports exactly
/// UDPRoute with one route attached, datagrams reach `l4-backend`; a 50/50 split reaches
/// both backends in a loose proportion; a route from a namespace the listener does not admit
/// is `NotAllowedByListeners` and its port answers nothing; a route to a missing Service is
/// `BackendNotFound` and its port answers nothing; a 50/50 split with a missing Service drops
/// that half of the sessions (the spec: "packet drops must respect weight") instead of giving
/// them to the valid backend; a TCP listener on the first UDP listener's
/// port number is compatible with it (neither is conflicted) and both are served: TCP
/// connections reach the TCPRoute's backend, datagrams the UDPRoute's.
pub(super) async fn udp_route(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "udproute.yaml";
    let backends_file = "udproute-backends.yaml";
    let mut echoes = Vec::new();
    for name in BACKENDS {
        echoes.push(UdpEcho::start(name).await?);
    }
    let services: Vec<String> = echoes.iter().map(|e| e.service_yaml(INFRA, 53)).collect();
    c.config.write(backends_file, &services.join("---\n"))?;
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let mut text = c.manifest(file)?;
    for (i, p) in ports.iter().enumerate() {
        text = text.replace(&format!("{{UDP_PORT_{}}}", i + 1), &p.to_string());
    }
    c.config.write(file, &text)?;

    let p = udp_parent(c, INFRA, "udp-l4-backend", "ResolvedRefs").await?;
    assert_eq!(p["controllerName"], "portolan.dev/gateway-controller");
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
    let l = c
        .listener_where("udp-gateway", "l4-echo", |l| l["attachedRoutes"] == 1)
        .await?;
    assert_condition(&l["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&l["conditions"], "Programmed", "True", "Programmed");
    assert_eq!(
        l["supportedKinds"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "UDPRoute"}]),
        "{l}"
    );
    let addr = c.gateway("udp-gateway").await?;
    let at = |port: u16| -> anyhow::Result<SocketAddr> { Ok(format!("{addr}:{port}").parse()?) };
    let simple = at(ports[0])?;
    eventually(
        &format!("datagrams to {simple} reach l4-backend"),
        super::DEADLINE,
        || async {
            match reached(simple, "hello").await? {
                b if b == "l4-backend" => Ok(()),
                other => Err(format!("reached {other}")),
            }
        },
    )
    .await?;

    // 50/50: once the route is served, a bounded number of sessions lands on both backends.
    let weighted = at(ports[1])?;
    eventually(
        &format!("datagrams to {weighted} are answered"),
        super::DEADLINE,
        || async { reached(weighted, "warm-up").await.map(|_| ()) },
    )
    .await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..SPLIT_SAMPLES {
        let b = reached(weighted, &format!("split-{i}"))
            .await
            .map_err(|e| anyhow::anyhow!("datagram {i} to {weighted}: {e}"))?;
        *counts.entry(b).or_default() += 1;
    }
    eprintln!("UDPRoute 50/50 split over {SPLIT_SAMPLES} sessions: {counts:?}");
    let a = counts.get("udp-backend-a").copied().unwrap_or_default();
    let b = counts.get("udp-backend-b").copied().unwrap_or_default();
    assert_eq!(
        a + b,
        SPLIT_SAMPLES,
        "only the two backends answer: {counts:?}"
    );
    // Loose: each side gets at least a sixth of the sessions (a fair split gets half).
    assert!(
        a >= SPLIT_SAMPLES / 6 && b >= SPLIT_SAMPLES / 6,
        "50/50 split: {counts:?}"
    );

    half_missing(c, at(ports[4])?).await?;

    let p = udp_parent(
        c,
        "gateway-conformance-app-backend",
        "udp-not-allowed",
        "Accepted",
    )
    .await?;
    assert_condition(
        &p["conditions"],
        "Accepted",
        "False",
        "NotAllowedByListeners",
    );
    let p = udp_parent(c, INFRA, "udp-backend-not-found", "ResolvedRefs").await?;
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&p["conditions"], "ResolvedRefs", "False", "BackendNotFound");
    for (listener, attached) in [("same-only", 0), ("missing", 1)] {
        c.listener_where("udp-gateway", listener, |l| l["attachedRoutes"] == attached)
            .await?;
    }
    // Both listeners are in Envoy (bound), yet no datagram is answered there.
    for port in [ports[2], ports[3]] {
        c.wait_envoy("udp-gateway", &format!("\"port_value\": {port}"), true)
            .await?;
        let r = reached(at(port)?, "anyone?").await;
        assert!(r.is_err(), "port {port}: no backend may answer: {r:?}");
    }

    // TCP beside UDP on one port number: distinct, compatible listeners, both served.
    for listener in ["l4-echo", "l4-tcp"] {
        let l = c
            .listener_where("udp-gateway", listener, |l| l["attachedRoutes"] == 1)
            .await?;
        assert_condition(&l["conditions"], "Accepted", "True", "Accepted");
        assert_condition(&l["conditions"], "Conflicted", "False", "NoConflicts");
        assert_condition(&l["conditions"], "Programmed", "True", "Programmed");
    }
    let p = route_parent(
        c,
        &format!("TCPRoute {INFRA}/tcp-beside-udp"),
        "udp-gateway",
        "Accepted",
    )
    .await?;
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    let url = format!("http://{addr}:{}/tcp", ports[0]);
    eventually(
        &format!("connections to {addr}:{} reach infra-backend-v1", ports[0]),
        super::DEADLINE,
        || async {
            let r = send(client().get(&url)).await.map_err(|e| e.to_string())?;
            match r.upstream() {
                Some("infra-backend-v1") => Ok(()),
                other => Err(format!("reached {other:?}")),
            }
        },
    )
    .await?;
    // The UDP listener still answers on that number.
    match reached(simple, "beside-tcp").await {
        Ok(b) if b == "l4-backend" => {}
        other => anyhow::bail!("datagram to {simple} beside the TCP listener: {other:?}"),
    }

    c.config.remove(file)?;
    c.config.remove(backends_file)?;
    c.gone(&format!("Gateway {INFRA}/udp-gateway")).await
}
