//! Gateway API conformance (GATEWAY-HTTP, GATEWAY-TLS and GATEWAY-GRPC, and TCPRoute of the
//! experimental channel), reproduced in file
//! mode: the scenarios of kubernetes-sigs/gateway-api v1.6.1 `conformance/tests` with our own
//! manifests (`tests/e2e/gateway-api/*.yaml`, data), run through the file source, `portolan
//! bootstrap --gateway`, stock Envoy and upstreams that answer with their Service's name
//! (HTTP, HTTPS for TLS passthrough, gRPC: see [`grpc`]), checking the same status conditions
//! (read from `GET /debug/status`) and request/response expectations. HTTPS goes through a
//! client that trusts only the run's CA and sends the SNI and Host each case asks for.
//!
//! One Portolan serves the whole run; each case's manifests are written, checked and removed
//! in turn (polling until its routes reach or leave Envoy). Each Gateway gets one Envoy, on
//! the address Portolan publishes in its `status.addresses`. Every scenario runs even when
//! one before it failed; the run prints, per profile, how many of its v1.6.1 core tests are
//! reproduced and passed (see [`board`]) and fails if any scenario did.

use crate::bin;
use backend_tls::{
    backend_tls_conflict_resolution, backend_tls_grpc_route,
    backend_tls_invalid_edit_keeps_last_good, backend_tls_invalid_refs,
    backend_tls_observed_generation_bump, backend_tls_policy, backend_tls_san_validation,
};
use board::Board;
use ext::{
    backend_header_modifier, backend_protocol_h2c, backend_protocol_websocket, cors,
    cors_allow_credentials, extension_ref, mirror_and_modify_headers, multiple_mirrors,
    percentage_mirror, redirect_path,
};
use frontend::{
    frontend_client_validation, frontend_insecure_fallback, frontend_invalid_default,
    frontend_invalid_validation,
};
use futures::FutureExt;
use grpc::{
    exact_method_matching as grpc_exact_method_matching, header_matching as grpc_header_matching,
    http_and_grpc_same_hostname as grpc_http_same_hostname,
    listener_hostname_matching as grpc_listener_hostname_matching, over_https as grpc_over_https,
    regex_method_matching as grpc_regex_method_matching,
    request_header_modifier as grpc_request_header_modifier, weight as grpc_weight,
};
use listenerset::{
    listenerset_allowed_namespace_same, listenerset_allowed_namespace_selector,
    listenerset_allowed_routes_namespaces, listenerset_default_not_allowed,
    listenerset_dual_parent_ref, listenerset_gateway_parent_section_name_not_found,
    listenerset_hostname_conflict, listenerset_http_routing, listenerset_listener_precedence,
    listenerset_parent_not_accepted, listenerset_protocol_and_route_kind_conflicts,
    listenerset_reference_grant, listenerset_update_listener_hostname,
};
use more::{
    gatewayclass_observed_generation_bump, invalid_parameters_ref, listener_unsupported_protocol,
    modify_listeners, multiple_gateways, no_backend_refs, partially_invalid_reference_grant,
    service_types,
};
use portolan_e2e::envoy::Protocol;
use portolan_e2e::http::{Reply, send};
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::ports::free_port;
use portolan_e2e::tls::{HttpsReply, HttpsTarget, ServerCert, TestCa, https_get_at};
use portolan_e2e::{
    Envoy, Portolan, Upstream, client, endpoints_yaml, eventually, service_yaml, workspace_root,
};
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tcp::{tcp_route_attach_all, tcp_route_parent_refs, tcp_route_refs};
use tls::{
    hostname_intersection_https, https_and_passthrough, https_listener, invalid_tls_configuration,
    keys_stay_private, secret_grant_all, secret_grant_invalid, secret_grant_missing,
    secret_grant_specific, tls_route_hostname_intersection, tls_route_invalid_backend_refs,
    tls_route_invalid_reference_grant, tls_route_no_matching_listener,
    tls_route_no_matching_listener_hostname, tls_route_simple_same_namespace,
    tls_route_terminate_not_supported,
};
use udp::udp_route;

#[path = "gateway_api_backend_tls.rs"]
mod backend_tls;
#[path = "gateway_api_board.rs"]
pub(crate) mod board;
#[path = "gateway_api_ext.rs"]
mod ext;
#[path = "gateway_api_frontend.rs"]
mod frontend;
#[path = "gateway_api_grpc.rs"]
mod grpc;
#[path = "gateway_api_listenerset.rs"]
mod listenerset;
#[path = "gateway_api_core.rs"]
mod more;
#[path = "gateway_api_tcp.rs"]
mod tcp;
#[path = "gateway_api_tls.rs"]
mod tls;
#[path = "gateway_api_udp.rs"]
mod udp;

const INFRA: &str = "gateway-conformance-infra";

/// The names the HTTPS Gateways' certificate is for.
const GATEWAY_CERT_NAMES: &[&str] = &[
    "example.org",
    "second-example.org",
    // ListenerSetMixedProtocolConflict: the Gateway's HTTPS listener's route.
    "https.example.org",
    "unknown-example.org",
    "*.example.com",
    // HTTPRouteHostnameIntersection over HTTPS: every name it sends, so that a refused
    // handshake can only be the Gateway's (no listener for the SNI), never the client's.
    "very.specific.com",
    "foo.specific.com",
    "wildcard.io",
    "*.wildcard.io",
    "*.bar.wildcard.io",
    "anotherwildcard.io",
    "*.anotherwildcard.io",
    "*.bar.anotherwildcard.io",
    "non.matching.com",
    "*.nonmatchingwildcard.io",
    "specific.but.wrong.com",
];
const DEADLINE: Duration = Duration::from_secs(20);

/// The Services of the base world and their namespaces.
const BACKENDS: &[(&str, &str)] = &[
    (INFRA, "infra-backend-v1"),
    (INFRA, "infra-backend-v2"),
    (INFRA, "infra-backend-v3"),
    ("gateway-conformance-app-backend", "app-backend-v1"),
    ("gateway-conformance-app-backend", "app-backend-v2"),
    ("gateway-conformance-web-backend", "web-backend"),
];

/// One Portolan on the base world, the upstreams behind its Services, and an Envoy per
/// Gateway asked for.
struct Conformance {
    config: ConfigDir,
    portolan: Portolan,
    port: u16,
    tls_port: u16,
    envoys: BTreeMap<String, (Envoy, String)>,
    upstreams: BTreeMap<String, Upstream>,
    /// The CA of every certificate in the run (Secrets and the TLS backend).
    ca: TestCa,
    /// The certificate of the `tls-validity-checks-certificate` and `certificate` Secrets.
    gateway_cert: ServerCert,
    /// The certificate the TLS passthrough backend presents.
    backend_cert: ServerCert,
    grpc: grpc::GrpcProcesses,
}

/// A request to a Gateway.
struct Req<'a> {
    host: &'a str,
    path: &'a str,
    method: Method,
    headers: &'a [(&'a str, &'a str)],
}

fn get<'a>(host: &'a str, path: &'a str) -> Req<'a> {
    Req {
        host,
        path,
        method: Method::GET,
        headers: &[],
    }
}

fn with_headers<'a>(host: &'a str, path: &'a str, headers: &'a [(&'a str, &'a str)]) -> Req<'a> {
    Req {
        headers,
        ..get(host, path)
    }
}

/// A manifest of tests/e2e/gateway-api with `{PORT}` (HTTP listeners) and `{TLS_PORT}`
/// (HTTPS and TLS listeners) filled in.
fn manifest(name: &str, port: u16, tls_port: u16) -> anyhow::Result<String> {
    let path = workspace_root().join("tests/e2e/gateway-api").join(name);
    let text =
        std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(text
        .replace("{PORT}", &port.to_string())
        .replace("{TLS_PORT}", &tls_port.to_string()))
}

// === impl Conformance ===

impl Conformance {
    async fn start() -> anyhow::Result<Self> {
        let config = ConfigDir::new()?;
        let (port, tls_port) = (free_port(), free_port());
        config.write("base.yaml", &manifest("base.yaml", port, tls_port)?)?;
        let ca = TestCa::new()?;
        let gateway_cert = ca.issue(GATEWAY_CERT_NAMES)?;
        config.write(
            "secrets.yaml",
            &[
                gateway_cert.secret_yaml(INFRA, "tls-validity-checks-certificate"),
                gateway_cert.secret_yaml("gateway-conformance-web-backend", "certificate"),
            ]
            .join("---\n"),
        )?;
        let mut upstreams = BTreeMap::new();
        for (ns, name) in BACKENDS {
            let upstream = Upstream::start(name).await?;
            config.write(
                &format!("{ns}-{name}-endpoints.yaml"),
                &endpoints_yaml(ns, name, &[&upstream]),
            )?;
            upstreams.insert(name.to_string(), upstream);
        }
        // The TLS passthrough backends: HTTPS, each with its own certificate.
        let backend_cert = ca.issue(&["abc.example.com"])?;
        let backend_cert_2 = ca.issue(&["other.example.com"])?;
        for (name, cert) in [
            ("tls-backend", &backend_cert),
            ("tls-backend-2", &backend_cert_2),
        ] {
            let upstream = Upstream::start_tls(name, cert).await?;
            config.write(
                &format!("{name}.yaml"),
                &format!(
                    "{}---\n{}",
                    service_yaml(INFRA, name, 443),
                    endpoints_yaml(INFRA, name, &[&upstream])
                ),
            )?;
            upstreams.insert(name.to_string(), upstream);
        }
        let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
        Ok(Self {
            config,
            portolan,
            port,
            tls_port,
            envoys: BTreeMap::new(),
            upstreams,
            ca,
            gateway_cert,
            backend_cert,
            grpc: grpc::GrpcProcesses::default(),
        })
    }

    fn manifest(&self, name: &str) -> anyhow::Result<String> {
        manifest(name, self.port, self.tls_port)
    }

    /// `/debug/status` entry `key` (`HTTPRoute ns/name`), once it is there.
    async fn status(&self, key: &str) -> anyhow::Result<Value> {
        eventually(&format!("status of {key}"), DEADLINE, || async {
            match self.portolan.get_json("/debug/status").await {
                Ok(all) => all.get(key).cloned().ok_or_else(|| format!("{all}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Waits until `/debug/status` satisfies `ok` for `key` (a change reached the status).
    async fn status_where(&self, key: &str, ok: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        eventually(&format!("status of {key}"), DEADLINE, || async {
            match self.portolan.get_json("/debug/status").await {
                Ok(all) => match all.get(key) {
                    Some(v) if ok(v) => Ok(v.clone()),
                    other => Err(format!("{other:?}")),
                },
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// The Envoy of Gateway `ns/name` (started on first use) and the Gateway's address.
    async fn gateway(&mut self, name: &str) -> anyhow::Result<String> {
        if let Some((_, addr)) = self.envoys.get(name) {
            return Ok(addr.clone());
        }
        let status = self.status(&format!("Gateway {INFRA}/{name}")).await?;
        let addr = status["addresses"][0]["value"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no address in {status}"))?
            .to_string();
        let gateway = format!("{INFRA}/{name}");
        let envoy = Envoy::start_with(
            bin(),
            self.portolan.ports(),
            &format!("{name}-1"),
            "unused",
            Protocol::Sotw,
            &["--gateway", &gateway],
        )
        .await?;
        self.envoys.insert(name.to_string(), (envoy, addr.clone()));
        Ok(addr)
    }

    /// Writes a case's manifests and waits until the routes named reach Envoy of `gateway`.
    async fn load(&mut self, file: &str, gateway: &str, routes: &[&str]) -> anyhow::Result<String> {
        self.config.write(file, &self.manifest(file)?)?;
        let addr = self.gateway(gateway).await?;
        for route in routes {
            self.wait_envoy(gateway, &format!("\"{INFRA}/{route}/"), true)
                .await?;
        }
        Ok(addr)
    }

    /// Removes a case's manifests and waits until its routes left Envoy.
    async fn unload(&self, file: &str, gateway: &str, routes: &[&str]) -> anyhow::Result<()> {
        self.config.remove(file)?;
        for route in routes {
            self.wait_envoy(gateway, &format!("\"{INFRA}/{route}/"), false)
                .await?;
        }
        Ok(())
    }

    async fn wait_envoy(&self, gateway: &str, needle: &str, present: bool) -> anyhow::Result<()> {
        let (envoy, _) = self
            .envoys
            .get(gateway)
            .ok_or_else(|| anyhow::anyhow!("no Envoy for {gateway}"))?;
        let res = eventually(
            &format!("{needle} present={present} in {gateway}'s Envoy"),
            DEADLINE,
            || async move {
                match envoy.admin("/config_dump").await {
                    Ok(dump) if dump.contains(needle) == present => Ok(()),
                    Ok(_) => Err("not yet".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        res.map_err(|e| anyhow::anyhow!("{e}\n{}", self.portolan.log_tail()))
    }

    /// Sends `req` to the Gateway at `addr` until `check` accepts the reply.
    async fn expect(
        &self,
        addr: &str,
        req: Req<'_>,
        check: impl Fn(&Reply) -> Result<(), String>,
    ) -> anyhow::Result<Reply> {
        let url = format!("http://{addr}:{}{}", self.port, req.path);
        let what = format!(
            "{} {} (Host {}) {:?}",
            req.method, req.path, req.host, req.headers
        );
        eventually(&what, DEADLINE, || async {
            let mut r = client()
                .request(req.method.clone(), &url)
                .header("host", req.host);
            for (k, v) in req.headers {
                r = r.header(*k, *v);
            }
            match send(r).await {
                Ok(reply) => match check(&reply) {
                    Ok(()) => Ok(reply),
                    Err(e) => Err(format!(
                        "{e}: {} {:?} {:?}",
                        reply.status, reply.headers, reply.body
                    )),
                },
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Expects the backend `name` to answer 200.
    async fn expect_backend(&self, addr: &str, req: Req<'_>, name: &str) -> anyhow::Result<Reply> {
        self.expect(addr, req, |r| {
            if r.status == 200 && r.upstream() == Some(name) {
                Ok(())
            } else {
                Err(format!("want {name}"))
            }
        })
        .await
    }

    async fn expect_status(&self, addr: &str, req: Req<'_>, status: u16) -> anyhow::Result<Reply> {
        self.expect(addr, req, |r| {
            if r.status == status {
                Ok(())
            } else {
                Err(format!("want status {status}"))
            }
        })
        .await
    }

    /// Sends `GET path` over TLS to the Gateway at `addr` (SNI `sni`, Host `host`), trusting
    /// only the run's CA, until `check` accepts the reply.
    async fn expect_https(
        &self,
        addr: &str,
        (sni, host): (&str, &str),
        path: &str,
        check: impl Fn(&HttpsReply) -> Result<(), String>,
    ) -> anyhow::Result<HttpsReply> {
        let to = HttpsTarget {
            addr,
            port: self.tls_port,
            sni,
            host,
        };
        let what = format!("GET https://{sni}{path} (Host {host}) at {addr}");
        eventually(&what, DEADLINE, || async {
            match https_get_at(&self.ca, &to, path).await {
                Ok(r) => match check(&r) {
                    Ok(()) => Ok(r),
                    Err(e) => Err(format!("{e}: {} {:?} {:?}", r.status, r.headers, r.body)),
                },
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Listener `listener` of Gateway `gw` once `ok` holds for it.
    async fn listener_where(
        &self,
        gw: &str,
        listener: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let find = |s: &Value| -> Option<Value> {
            s["listeners"]
                .as_array()?
                .iter()
                .find(|l| l["name"] == listener)
                .cloned()
        };
        let s = self
            .status_where(&format!("Gateway {INFRA}/{gw}"), |s| {
                find(s).is_some_and(|l| ok(&l))
            })
            .await?;
        find(&s).ok_or_else(|| anyhow::anyhow!("no listener {listener} in {s}"))
    }

    /// Waits until `/debug/status` has no entry `key` (an object's removal reached it).
    async fn gone(&self, key: &str) -> anyhow::Result<()> {
        eventually(&format!("{key} gone"), DEADLINE, || async {
            match self.portolan.get_json("/debug/status").await {
                Ok(all) if all.get(key).is_none() => Ok(()),
                Ok(_) => Err("still there".to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    fn upstream(&self, name: &str) -> anyhow::Result<&Upstream> {
        self.upstreams
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("no upstream {name}"))
    }
}

/// The condition `type_` of a conditions array.
fn condition<'v>(conditions: &'v Value, type_: &str) -> Option<&'v Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == type_)
}

/// Asserts `conditions` has `type_` with `status` (`True`/`False`) and `reason`.
fn assert_condition(conditions: &Value, type_: &str, status: &str, reason: &str) {
    let c = condition(conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions}"));
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some(status), Some(reason)),
        "{type_} in {conditions}"
    );
}

/// The route's `parents[]` entry for Gateway `gw`.
fn parent<'v>(route_status: &'v Value, gw: &str) -> &'v Value {
    route_status["parents"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["parentRef"]["name"] == gw))
        .unwrap_or_else(|| panic!("no parent {gw} in {route_status}"))
}

/// A route accepted by `gw` with its refs resolved (GatewayAndHTTPRoutesMustBeAccepted +
/// HTTPRouteMustHaveResolvedRefsConditionsTrue), with the controller name set.
async fn route_accepted(c: &Conformance, ns: &str, route: &str, gw: &str) -> anyhow::Result<()> {
    let status = c.status(&format!("HTTPRoute {ns}/{route}")).await?;
    let p = parent(&status, gw);
    assert_eq!(p["controllerName"], "portolan.dev/gateway-controller");
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
    Ok(())
}

async fn route_condition(
    c: &Conformance,
    route: &str,
    gw: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let key = format!("HTTPRoute {INFRA}/{route}");
    let s = c
        .status_where(&key, |s| {
            s["parents"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["parentRef"]["name"] == gw))
                .and_then(|p| condition(&p["conditions"], type_))
                .is_some()
        })
        .await?;
    assert_condition(&parent(&s, gw)["conditions"], type_, status, reason);
    Ok(())
}

/// Runs one scenario, catching its failure (an error or a failed assertion) so that the run
/// goes on and the board counts it for every upstream test the scenario reproduces.
/// `PORTOLAN_E2E_SCENARIOS=a,b` runs only the scenarios whose function name contains `a` or
/// `b` (while working on some; the board then counts only those).
macro_rules! scenario {
    ($board:expr, $c:expr, $tests:expr, $f:ident) => {{
        if selected(stringify!($f)) {
            let outcome = AssertUnwindSafe($f(&mut $c)).catch_unwind().await;
            $board.record(stringify!($f), $tests, outcome);
        }
    }};
}

/// Whether `PORTOLAN_E2E_SCENARIOS` (unset: every scenario) selects scenario `name`.
fn selected(name: &str) -> bool {
    std::env::var("PORTOLAN_E2E_SCENARIOS").map_or(true, |only| {
        only.split(',').any(|s| name.contains(s.trim()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_http_core_conformance() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mut c = Conformance::start().await?;

    // GatewayClass Accepted; a Gateway of another class is never touched.
    let class = c.status("GatewayClass portolan").await?;
    assert_condition(&class["conditions"], "Accepted", "True", "Accepted");
    // What the class claims is exactly what the board below reproduces as core.
    let features: Vec<&str> = class["supportedFeatures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        features,
        [
            "BackendTLSPolicy",
            "BackendTLSPolicySANValidation",
            "Gateway",
            "GatewayFrontendClientCertificateValidation",
            "GatewayFrontendClientCertificateValidationInsecureFallback",
            "GRPCRoute",
            "HTTPRoute",
            "HTTPRouteBackendProtocolH2C",
            "HTTPRouteBackendProtocolWebSocket",
            "HTTPRouteBackendRequestHeaderModification",
            "HTTPRouteCORS",
            "HTTPRoutePathRedirect",
            "HTTPRouteRequestMirror",
            "HTTPRouteRequestMultipleMirrors",
            "HTTPRouteRequestPercentageMirror",
            "ListenerSet",
            "Mesh",
            "ReferenceGrant",
            "TCPRoute",
            "TLSRoute",
            "UDPRoute"
        ]
    );
    let all = c.portolan.get_json("/debug/status").await?;
    assert!(all.get("GatewayClass someone-else").is_none(), "{all}");
    assert!(
        all.get(format!("Gateway {INFRA}/not-ours")).is_none(),
        "{all}"
    );
    let gw = c.status(&format!("Gateway {INFRA}/same-namespace")).await?;
    assert_condition(&gw["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&gw["conditions"], "Programmed", "True", "Programmed");
    assert_eq!(gw["addresses"][0]["type"], "IPAddress");

    let mut b = Board::default();
    scenario!(
        b,
        c,
        &["HTTPRouteSimpleSameNamespace"],
        simple_same_namespace
    );
    scenario!(b, c, &["HTTPRouteMatching"], matching);
    scenario!(
        b,
        c,
        &["HTTPRouteMatchingAcrossRoutes"],
        matching_across_routes
    );
    scenario!(b, c, &["HTTPRouteExactPathMatching"], exact_path_matching);
    scenario!(b, c, &["HTTPRoutePathMatchOrder"], path_match_order);
    scenario!(b, c, &["HTTPRouteHeaderMatching"], header_matching);
    scenario!(b, c, &["HTTPRouteQueryParamMatching"], query_param_matching);
    scenario!(b, c, &["HTTPRouteMethodMatching"], method_matching);
    scenario!(b, c, &["HTTPRouteWeight"], weight);
    scenario!(b, c, &["HTTPRouteCrossNamespace"], cross_namespace);
    scenario!(b, c, &["HTTPRouteReferenceGrant"], reference_grant);
    scenario!(
        b,
        c,
        &[
            "HTTPRouteInvalidCrossNamespaceBackendRef",
            "HTTPRouteInvalidBackendRefUnknownKind",
            "HTTPRouteInvalidNonExistentBackendRef"
        ],
        invalid_backends
    );
    scenario!(
        b,
        c,
        &["HTTPRouteRequestHeaderModifier"],
        request_header_modifier
    );
    scenario!(
        b,
        c,
        &["HTTPRouteResponseHeaderModifier"],
        response_header_modifier
    );
    scenario!(
        b,
        c,
        &[
            "HTTPRouteRedirectHostAndStatus",
            "HTTPRouteRedirectScheme",
            "HTTPRouteRedirectPath",
            "HTTPRouteRedirectPort"
        ],
        redirect
    );
    scenario!(
        b,
        c,
        &["HTTPRouteRewritePath", "HTTPRouteRewriteHost"],
        rewrite
    );
    scenario!(b, c, &["HTTPRouteRequestMirror"], request_mirror);
    scenario!(b, c, &["HTTPRouteRequestMirror"], mirror_and_modify_headers);
    scenario!(b, c, &["HTTPRouteRequestMultipleMirrors"], multiple_mirrors);
    scenario!(
        b,
        c,
        &["HTTPRouteRequestPercentageMirror"],
        percentage_mirror
    );
    scenario!(
        b,
        c,
        &["HTTPRouteBackendRequestHeaderModifier"],
        backend_header_modifier
    );
    scenario!(b, c, &["HTTPRouteCORS"], cors);
    scenario!(
        b,
        c,
        &["HTTPRouteCORSAllowCredentialsBehavior"],
        cors_allow_credentials
    );
    scenario!(b, c, &["HTTPRouteRedirectPath"], redirect_path);
    scenario!(b, c, &["HTTPRouteBackendProtocolH2C"], backend_protocol_h2c);
    scenario!(
        b,
        c,
        &["HTTPRouteBackendProtocolWebSocket"],
        backend_protocol_websocket
    );
    scenario!(
        b,
        c,
        &["HTTPRouteHostnameIntersection"],
        hostname_intersection
    );
    scenario!(
        b,
        c,
        &["HTTPRouteListenerHostnameMatching"],
        listener_hostname_matching
    );
    scenario!(b, c, &["GatewayInvalidRouteKind"], invalid_route_kind);
    scenario!(
        b,
        c,
        &["GatewayObservedGenerationBump"],
        observed_generation_bump
    );
    scenario!(
        b,
        c,
        &[
            "HTTPRouteInvalidCrossNamespaceParentRef",
            "HTTPRouteInvalidParentRefNotMatchingSectionName",
            "HTTPRouteInvalidParentRefNotMatchingListenerPort"
        ],
        invalid_parent_refs
    );
    scenario!(
        b,
        c,
        &["HTTPRouteInvalidReferenceGrant"],
        invalid_reference_grant
    );
    scenario!(
        b,
        c,
        &["HTTPRouteObservedGenerationBump"],
        route_observed_generation_bump
    );
    scenario!(
        b,
        c,
        &["GatewayWithAttachedRoutes"],
        gateway_with_attached_routes
    );
    scenario!(b, c, &["HTTPRouteHTTPSListener"], https_listener);
    scenario!(
        b,
        c,
        &["GatewayClassObservedGenerationBump"],
        gatewayclass_observed_generation_bump
    );
    scenario!(b, c, &["GatewayModifyListeners"], modify_listeners);
    scenario!(
        b,
        c,
        &["GatewayListenerUnsupportedProtocol"],
        listener_unsupported_protocol
    );
    scenario!(
        b,
        c,
        &["GatewayInvalidParametersRef"],
        invalid_parameters_ref
    );
    scenario!(b, c, &["HTTPRouteNoBackendRefs"], no_backend_refs);
    scenario!(b, c, &["HTTPRouteServiceTypes"], service_types);
    scenario!(b, c, &["HTTPRouteMultipleGateways"], multiple_gateways);
    scenario!(
        b,
        c,
        &["HTTPRoutePartiallyInvalidViaInvalidReferenceGrant"],
        partially_invalid_reference_grant
    );
    scenario!(
        b,
        c,
        &["HTTPRouteHostnameIntersection"],
        hostname_intersection_https
    );
    scenario!(
        b,
        c,
        &["GatewayInvalidTLSConfiguration"],
        invalid_tls_configuration
    );
    scenario!(
        b,
        c,
        &["GatewaySecretReferenceGrantSpecific"],
        secret_grant_specific
    );
    scenario!(
        b,
        c,
        &["GatewaySecretReferenceGrantAllInNamespace"],
        secret_grant_all
    );
    scenario!(
        b,
        c,
        &["GatewaySecretMissingReferenceGrant"],
        secret_grant_missing
    );
    scenario!(
        b,
        c,
        &["GatewaySecretInvalidReferenceGrant"],
        secret_grant_invalid
    );
    scenario!(
        b,
        c,
        &[
            "TCPRouteSimpleSameNamespace",
            "TCPRouteParentRefPortAndSectionName",
            "TCPRouteWeightedRouting"
        ],
        tcp_route_parent_refs
    );
    scenario!(b, c, &["TCPRouteParentRefAttachAll"], tcp_route_attach_all);
    scenario!(
        b,
        c,
        &[
            "TCPRouteReferenceGrant",
            "TCPRouteInvalidBackendRefNonexistent",
            "TCPRouteInvalidBackendRefUnknownKind"
        ],
        tcp_route_refs
    );
    scenario!(
        b,
        c,
        &[
            "UDPRoute",
            "Portolan:UDPRouteWeightedRouting",
            "Portolan:UDPRouteNotAllowedByListeners",
            "Portolan:UDPRouteInvalidBackendRefNonexistent",
            "Portolan:UDPRouteInvalidBackendShareDropped",
            "Portolan:UDPRouteTCPListenerSamePort"
        ],
        udp_route
    );
    scenario!(
        b,
        c,
        &[
            "TLSRouteSimpleSameNamespace",
            "TLSRouteListenerPassthroughSupportedKinds"
        ],
        tls_route_simple_same_namespace
    );
    scenario!(
        b,
        c,
        &["TLSRouteInvalidReferenceGrant"],
        tls_route_invalid_reference_grant
    );
    scenario!(
        b,
        c,
        &["TLSRouteInvalidNoMatchingListener"],
        tls_route_no_matching_listener
    );
    scenario!(
        b,
        c,
        &[
            "TLSRouteInvalidBackendRefNonexistent",
            "TLSRouteInvalidBackendRefUnknownKind"
        ],
        tls_route_invalid_backend_refs
    );
    scenario!(
        b,
        c,
        &["TLSRouteInvalidNoMatchingListenerHostname"],
        tls_route_no_matching_listener_hostname
    );
    scenario!(
        b,
        c,
        &["TLSRouteHostnameIntersection"],
        tls_route_hostname_intersection
    );
    scenario!(
        b,
        c,
        &["TLSRouteListenerTerminateNotSupported"],
        tls_route_terminate_not_supported
    );
    scenario!(
        b,
        c,
        &["GatewayHTTPSAndTLSPassthroughSamePort"],
        https_and_passthrough
    );
    scenario!(
        b,
        c,
        &["GRPCExactMethodMatching"],
        grpc_exact_method_matching
    );
    scenario!(b, c, &["GRPCRouteHeaderMatching"], grpc_header_matching);
    scenario!(
        b,
        c,
        &["GRPCRouteListenerHostnameMatching"],
        grpc_listener_hostname_matching
    );
    scenario!(b, c, &["GRPCRouteWeight"], grpc_weight);
    scenario!(
        b,
        c,
        &["GRPCRouteRequestHeaderModifier"],
        grpc_request_header_modifier
    );
    scenario!(
        b,
        c,
        &["Portolan: GRPCRoute RegularExpression method matches"],
        grpc_regex_method_matching
    );
    scenario!(
        b,
        c,
        &["Portolan: GRPCRoute over an HTTPS listener"],
        grpc_over_https
    );
    scenario!(
        b,
        c,
        &["Portolan: an HTTPRoute and a GRPCRoute on one hostname: the older is accepted"],
        grpc_http_same_hostname
    );
    scenario!(
        b,
        c,
        &["Portolan: private keys stay out of /debug and logs"],
        keys_stay_private
    );
    scenario!(b, c, &["BackendTLSPolicy"], backend_tls_policy);
    scenario!(
        b,
        c,
        &["BackendTLSPolicyConflictResolution"],
        backend_tls_conflict_resolution
    );
    scenario!(
        b,
        c,
        &[
            "BackendTLSPolicyInvalidCACertificateRef",
            "BackendTLSPolicyInvalidKind"
        ],
        backend_tls_invalid_refs
    );
    scenario!(
        b,
        c,
        &["BackendTLSPolicyObservedGenerationBump"],
        backend_tls_observed_generation_bump
    );
    scenario!(
        b,
        c,
        &["BackendTLSPolicySANValidation"],
        backend_tls_san_validation
    );
    scenario!(
        b,
        c,
        &["Portolan: an invalid BackendTLSPolicy edit keeps the last good version"],
        backend_tls_invalid_edit_keeps_last_good
    );
    scenario!(
        b,
        c,
        &[
            "Portolan: BackendTLSPolicy towards a gRPC backend (after upstream BackendTLSPolicyGRPCRoute, not counted)"
        ],
        backend_tls_grpc_route
    );
    scenario!(
        b,
        c,
        &["Portolan: an ExtensionRef filter is InvalidKind and its rule answers 500"],
        extension_ref
    );
    scenario!(
        b,
        c,
        &["GatewayFrontendClientCertificateValidation"],
        frontend_client_validation
    );
    scenario!(
        b,
        c,
        &["GatewayFrontendClientCertificateValidationInsecureFallback"],
        frontend_insecure_fallback
    );
    scenario!(
        b,
        c,
        &["GatewayFrontendInvalidDefaultClientCertificateValidation"],
        frontend_invalid_default
    );
    scenario!(
        b,
        c,
        &["GatewayInvalidFrontendClientCertificateValidation"],
        frontend_invalid_validation
    );
    scenario!(
        b,
        c,
        &["ListenerSetDefaultNotAllowed"],
        listenerset_default_not_allowed
    );
    scenario!(
        b,
        c,
        &["ListenerSetAllowedNamespaceSame"],
        listenerset_allowed_namespace_same
    );
    scenario!(
        b,
        c,
        &["ListenerSetAllowedNamespaceSelector"],
        listenerset_allowed_namespace_selector
    );
    scenario!(
        b,
        c,
        &["ListenerSetParentNotAccepted"],
        listenerset_parent_not_accepted
    );
    scenario!(
        b,
        c,
        &["ListenerSetDualParentRefIndependence"],
        listenerset_dual_parent_ref
    );
    scenario!(
        b,
        c,
        &["ListenerSetHostnameConflict"],
        listenerset_hostname_conflict
    );
    scenario!(
        b,
        c,
        &["ListenerSetReferenceGrant"],
        listenerset_reference_grant
    );
    scenario!(
        b,
        c,
        &["ListenerSetUpdateListenerHostname"],
        listenerset_update_listener_hostname
    );
    scenario!(
        b,
        c,
        &["ListenerSetAllowedRoutesNamespaces"],
        listenerset_allowed_routes_namespaces
    );
    scenario!(
        b,
        c,
        &["ListenerSetListenerPrecedence"],
        listenerset_listener_precedence
    );
    scenario!(
        b,
        c,
        &[
            "ListenerSetProtocolAndRouteKindConflicts",
            "ListenerSetMixedProtocolConflict"
        ],
        listenerset_protocol_and_route_kind_conflicts
    );
    scenario!(
        b,
        c,
        &["ListenerSetGatewayParentSectionNameNotFound"],
        listenerset_gateway_parent_section_name_not_found
    );
    scenario!(b, c, &["ListenerSetHTTPRouting"], listenerset_http_routing);
    let report = b.report();
    eprintln!("{report}");
    anyhow::ensure!(b.all_passed(), "{report}");
    Ok(())
}

/// HTTPRouteSimpleSameNamespace.
async fn simple_same_namespace(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = (
        "simple-same-namespace.yaml",
        "gateway-conformance-infra-test",
    );
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    c.expect_backend(&addr, get("example.com", "/"), "infra-backend-v1")
        .await?;
    let gw = c.status(&format!("Gateway {INFRA}/same-namespace")).await?;
    assert_eq!(gw["listeners"][0]["attachedRoutes"], 1, "{gw}");
    // Portolan's own condition: the Gateway's connected Envoy ACKed what it serves.
    eventually(
        "portolan.dev/Converged on the Gateway",
        Duration::from_secs(20),
        || async {
            let gw = c
                .status(&format!("Gateway {INFRA}/same-namespace"))
                .await
                .map_err(|e| e.to_string())?;
            let converged = gw["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "portolan.dev/Converged")
                .cloned()
                .ok_or_else(|| format!("no Converged condition: {gw}"))?;
            if converged["status"] == "True" && converged["reason"] == "Converged" {
                Ok(())
            } else {
                Err(converged.to_string())
            }
        },
    )
    .await?;
    // `portolan status KIND/NS/NAME` prints the same status from the running server.
    let out = std::process::Command::new(bin())
        .args(["status", "--server", &c.portolan.url("")])
        .arg(format!("HTTPRoute/{INFRA}/{route}"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        printed,
        c.status(&format!("HTTPRoute {INFRA}/{route}")).await?
    );
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteMatching.
async fn matching(c: &mut Conformance) -> anyhow::Result<()> {
    let addr = c
        .load("matching.yaml", "same-namespace", &["matching"])
        .await?;
    route_accepted(c, INFRA, "matching", "same-namespace").await?;
    let (v1, v2) = ("infra-backend-v1", "infra-backend-v2");
    for (req, want) in [
        (get("example.com", "/"), v1),
        (get("example.com", "/example"), v1),
        (with_headers("example.com", "/", &[("Version", "one")]), v1),
        (get("example.com", "/v2"), v2),
        (get("example.com", "/v2/example"), v2),
        (with_headers("example.com", "/", &[("Version", "two")]), v2),
    ] {
        c.expect_backend(&addr, req, want).await?;
    }
    c.unload("matching.yaml", "same-namespace", &["matching"])
        .await
}

/// HTTPRouteMatchingAcrossRoutes.
async fn matching_across_routes(c: &mut Conformance) -> anyhow::Result<()> {
    let routes = ["matching-part1", "matching-part2"];
    let file = "matching-across-routes.yaml";
    let addr = c.load(file, "same-namespace", &routes).await?;
    for r in routes {
        route_accepted(c, INFRA, r, "same-namespace").await?;
    }
    let (v1, v2) = ("infra-backend-v1", "infra-backend-v2");
    for (req, want) in [
        (get("example.com", "/"), v1),
        (get("example.com", "/example"), v1),
        (get("example.net", "/example"), v1),
        (
            with_headers("example.com", "/example", &[("Version", "one")]),
            v1,
        ),
        (get("example.com", "/v2"), v2),
        (get("example.net", "/v2"), v1),
        (get("example.com", "/v2/example"), v2),
        (with_headers("example.com", "/", &[("Version", "two")]), v2),
    ] {
        c.expect_backend(&addr, req, want).await?;
    }
    c.unload(file, "same-namespace", &routes).await
}

/// HTTPRouteExactPathMatching.
async fn exact_path_matching(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("exact-path-matching.yaml", "exact-path-matching");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    c.expect_backend(&addr, get("example.com", "/one"), "infra-backend-v1")
        .await?;
    c.expect_backend(&addr, get("example.com", "/two"), "infra-backend-v2")
        .await?;
    for path in ["/", "/one/example", "/two/"] {
        c.expect_status(&addr, get("example.com", path), 404)
            .await?;
    }
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRoutePathMatchOrder.
async fn path_match_order(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("path-match-order.yaml", "path-matching-order");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    for (path, want) in [
        ("/match/exact", v3),
        ("/match/exact/one", v1),
        ("/match/prefix/one", v3),
        ("/match/prefix/two", v2),
        ("/match/prefix", v2),
        ("/match", v1),
        ("/match/other", v1),
    ] {
        c.expect_backend(&addr, get("example.com", path), want)
            .await?;
    }
    c.expect_status(&addr, get("example.com", "/matchx"), 404)
        .await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteHeaderMatching.
async fn header_matching(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("header-matching.yaml", "header-matching");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let (v1, v2) = ("infra-backend-v1", "infra-backend-v2");
    let h = |hs| with_headers("example.com", "/", hs);
    for (req, want) in [
        (h(&[("Version", "one")]), v1),
        (h(&[("VERSION", "two")]), v2),
        (h(&[("Version", "two"), ("Color", "orange")]), v1),
        (h(&[("Color", "blue")]), v1),
        (h(&[("Color", "green")]), v1),
        (h(&[("Color", "red")]), v2),
        (h(&[("Color", "yellow")]), v2),
    ] {
        c.expect_backend(&addr, req, want).await?;
    }
    for req in [
        h(&[("Version", "ONE")]),
        h(&[("Color", "purple")]),
        get("example.com", "/"),
    ] {
        c.expect_status(&addr, req, 404).await?;
    }
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteQueryParamMatching.
async fn query_param_matching(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("query-param-matching.yaml", "query-param-matching");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    for (path, want) in [
        ("/?animal=whale", v1),
        ("/?animal=dolphin", v2),
        ("/?animal=dolphin&color=blue", v3),
        ("/?ANIMAL=Whale", v3),
    ] {
        c.expect_backend(&addr, get("example.com", path), want)
            .await?;
    }
    for path in ["/?animal=Whale", "/?ANIMAL=whale", "/"] {
        c.expect_status(&addr, get("example.com", path), 404)
            .await?;
    }
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteMethodMatching.
async fn method_matching(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("method-matching.yaml", "method-matching");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let req = |method| Req {
        method,
        ..get("example.com", "/")
    };
    c.expect_backend(&addr, req(Method::POST), "infra-backend-v1")
        .await?;
    c.expect_backend(&addr, req(Method::GET), "infra-backend-v2")
        .await?;
    c.expect_status(&addr, req(Method::DELETE), 404).await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteWeight: 70/30/0, within a tolerance (the suite's statistical check).
async fn weight(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("weight.yaml", "weighted-backends");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    const N: u32 = 300;
    for _ in 0..N {
        let r = c
            .expect(&addr, get("example.com", "/"), |r| match r.status {
                200 => Ok(()),
                s => Err(format!("status {s}")),
            })
            .await?;
        *seen
            .entry(r.upstream().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let share = |n: &str| f64::from(seen.get(n).copied().unwrap_or(0)) / f64::from(N);
    assert!((share("infra-backend-v1") - 0.7).abs() < 0.1, "{seen:?}");
    assert!((share("infra-backend-v2") - 0.3).abs() < 0.1, "{seen:?}");
    assert_eq!(seen.get("infra-backend-v3"), None, "weight 0 gets nothing");
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteCrossNamespace (and a route the Gateway's listeners do not allow).
async fn cross_namespace(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "cross-namespace.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    let addr = c.gateway("backend-namespaces").await?;
    route_accepted(
        c,
        "gateway-conformance-app-backend",
        "cross-namespace",
        "backend-namespaces",
    )
    .await?;
    c.expect_backend(&addr, get("example.com", "/"), "app-backend-v1")
        .await?;
    let key = "HTTPRoute gateway-conformance-web-backend/not-allowed";
    let s = c.status(key).await?;
    assert_condition(
        &parent(&s, "same-namespace")["conditions"],
        "Accepted",
        "False",
        "NotAllowedByListeners",
    );
    c.config.remove(file)?;
    Ok(())
}

/// HTTPRouteReferenceGrant.
async fn reference_grant(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("reference-grant.yaml", "reference-grant");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    c.expect_backend(&addr, get("example.com", "/"), "web-backend")
        .await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteInvalidCrossNamespaceBackendRef, HTTPRouteInvalidBackendRefUnknownKind,
/// HTTPRouteInvalidNonExistentBackendRef: Accepted, ResolvedRefs=False with the reason, 500.
async fn invalid_backends(c: &mut Conformance) -> anyhow::Result<()> {
    for (file, route, reason) in [
        (
            "invalid-cross-namespace-backend-ref.yaml",
            "invalid-cross-namespace-backend-ref",
            "RefNotPermitted",
        ),
        (
            "invalid-backend-ref-unknown-kind.yaml",
            "invalid-backend-ref-unknown-kind",
            "InvalidKind",
        ),
        (
            "invalid-nonexistent-backend-ref.yaml",
            "invalid-nonexistent-backend-ref",
            "BackendNotFound",
        ),
    ] {
        let addr = c.load(file, "same-namespace", &[route]).await?;
        route_condition(c, route, "same-namespace", "Accepted", "True", "Accepted").await?;
        route_condition(c, route, "same-namespace", "ResolvedRefs", "False", reason).await?;
        c.expect_status(&addr, get("example.com", "/"), 500).await?;
        c.unload(file, "same-namespace", &[route]).await?;
    }
    Ok(())
}

/// HTTPRouteRequestHeaderModifier.
async fn request_header_modifier(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("request-header-modifier.yaml", "request-header-modifier");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let headers = [
        ("X-Header-Set", "some-other-value"),
        ("X-Header-Add", "some-value"),
        ("X-Header-Remove", "val"),
    ];
    let r = c
        .expect_backend(
            &addr,
            with_headers("example.com", "/headers", &headers),
            "infra-backend-v1",
        )
        .await?;
    let seen = r.seen_headers()?;
    let values = |n: &str| seen.get(n).cloned().unwrap_or_default();
    assert_eq!(
        values("x-header-set"),
        ["set-overwrites-values"],
        "{seen:?}"
    );
    assert_eq!(
        values("x-header-add"),
        ["some-value", "add-appends-values"],
        "{seen:?}"
    );
    assert!(!seen.contains_key("x-header-remove"), "{seen:?}");
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteResponseHeaderModifier.
async fn response_header_modifier(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("response-header-modifier.yaml", "response-header-modifier");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    let r = c
        .expect(&addr, get("example.com", "/"), |r| {
            match (r.status, r.header("x-header-set")) {
                (200, Some("set-overwrites-values")) => Ok(()),
                _ => Err("want the set header".to_string()),
            }
        })
        .await?;
    assert_eq!(r.body, "infra-backend-v1");
    assert_eq!(r.header("x-header-add"), Some("add-appends-values"));
    assert_eq!(r.upstream(), None, "x-upstream is removed");
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteRedirectHostAndStatus, HTTPRouteRedirectScheme, HTTPRouteRedirectPath (full path)
/// and HTTPRouteRedirectPort.
async fn redirect(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("redirect.yaml", "redirect");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    for (path, status, location) in [
        (
            "/hostname-redirect",
            302,
            "http://example.org/hostname-redirect",
        ),
        (
            "/host-and-status",
            301,
            "http://example.org/host-and-status",
        ),
        ("/scheme", 302, "https://example.com/scheme"),
        ("/full", 302, "http://example.com/full-path-replacement"),
        ("/port", 302, "http://example.com:8083/port"),
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

/// HTTPRouteRewritePath and HTTPRouteRewriteHost.
async fn rewrite(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("rewrite.yaml", "rewrite-path");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    for (path, seen) in [
        ("/prefix/one/two", "/one/two"),
        ("/prefix/one", "/one"),
        ("/strip-prefix/three", "/three"),
        ("/strip-prefix", "/"),
        ("/full/one/two", "/one"),
    ] {
        c.expect(&addr, get("example.com", path), |r| {
            match (r.status, r.header("x-seen-path")) {
                (200, Some(p)) if p == seen => Ok(()),
                _ => Err(format!("want the upstream to see {seen}")),
            }
        })
        .await?;
    }
    c.expect(&addr, get("example.com", "/host"), |r| {
        match (r.upstream(), r.header("x-seen-host")) {
            (Some("infra-backend-v2"), Some("one.example.org")) => Ok(()),
            _ => Err("want Host one.example.org at v2".to_string()),
        }
    })
    .await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteRequestMirror.
async fn request_mirror(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("request-mirror.yaml", "request-mirror");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    c.expect_backend(&addr, get("example.com", "/mirror"), "infra-backend-v1")
        .await?;
    let v2 = c.upstream("infra-backend-v2")?;
    eventually("the mirror to reach v2", DEADLINE, || async {
        match v2.path_hits("/mirror") {
            0 => Err("no mirrored request yet".to_string()),
            _ => Ok(()),
        }
    })
    .await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteHostnameIntersection.
async fn hostname_intersection(c: &mut Conformance) -> anyhow::Result<()> {
    let gw = "httproute-hostname-intersection";
    let accepted = [
        "specific-host-matches-listener-specific-host",
        "specific-host-matches-listener-wildcard-host",
        "wildcard-host-matches-listener-specific-host",
        "wildcard-host-matches-listener-wildcard-host",
    ];
    let file = "hostname-intersection.yaml";
    let addr = c.load(file, gw, &accepted).await?;
    for r in accepted {
        route_accepted(c, INFRA, r, gw).await?;
    }
    route_condition(
        c,
        "no-intersecting-hosts",
        gw,
        "Accepted",
        "False",
        "NoMatchingListenerHostname",
    )
    .await?;
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    for (host, path, want) in [
        ("very.specific.com", "/s1", v1),
        ("very.specific.com:1234", "/s1", v1),
        ("foo.wildcard.io", "/s2", v2),
        ("bar.wildcard.io", "/s2", v2),
        ("foo.bar.wildcard.io", "/s2", v2),
        ("very.specific.com", "/s3", v3),
        ("foo.anotherwildcard.io", "/s4", v1),
        ("bar.anotherwildcard.io", "/s4", v1),
        ("foo.bar.anotherwildcard.io", "/s4", v1),
    ] {
        c.expect_backend(&addr, get(host, path), want).await?;
    }
    for (host, path) in [
        ("non.matching.com", "/s1"),
        ("foo.nonmatchingwildcard.io", "/s1"),
        ("foo.wildcard.io", "/s1"),
        ("very.specific.com", "/non-matching-prefix"),
        ("non.matching.com", "/s2"),
        ("wildcard.io", "/s2"),
        ("very.specific.com", "/s2"),
        ("foo.specific.com", "/s3"),
        ("foo.wildcard.io", "/s3"),
        ("anotherwildcard.io", "/s4"),
        ("foo.wildcard.io", "/s4"),
        ("specific.but.wrong.com", "/s5"),
        ("wildcard.io", "/s5"),
    ] {
        c.expect_status(&addr, get(host, path), 404).await?;
    }
    // attachedRoutes counts only accepted attachments.
    let status = c.status(&format!("Gateway {INFRA}/{gw}")).await?;
    let attached: Vec<i64> = status["listeners"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l["attachedRoutes"].as_i64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(attached, [2, 1, 1], "{status}");
    for l in status["listeners"].as_array().into_iter().flatten() {
        assert_condition(&l["conditions"], "Accepted", "True", "Accepted");
        assert_condition(&l["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
        assert_eq!(l["supportedKinds"][0]["kind"], "HTTPRoute", "{l}");
    }
    c.unload(file, gw, &accepted).await?;
    // A listener without hostname: the route's hostnames, and only those.
    let (file, gw) = (
        "hostname-intersection-all.yaml",
        "httproute-hostname-intersection-all",
    );
    let addr = c.load(file, gw, &[gw]).await?;
    route_accepted(c, INFRA, gw, gw).await?;
    for host in ["first.com", "sub.first.com", "second.com", "sub.second.com"] {
        c.expect_backend(&addr, get(host, "/"), v2).await?;
    }
    for host in ["third.com", "sub.third.com"] {
        c.expect_status(&addr, get(host, "/"), 404).await?;
    }
    c.unload(file, gw, &[gw]).await
}

/// HTTPRouteListenerHostnameMatching.
async fn listener_hostname_matching(c: &mut Conformance) -> anyhow::Result<()> {
    let gw = "httproute-listener-hostname-matching";
    let routes = ["backend-v1", "backend-v2", "backend-v3"];
    let file = "listener-hostname-matching.yaml";
    let addr = c.load(file, gw, &routes).await?;
    for r in routes {
        route_accepted(c, INFRA, r, gw).await?;
    }
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    for (host, want) in [
        ("bar.com", v1),
        ("foo.bar.com", v2),
        ("baz.bar.com", v3),
        ("boo.bar.com", v3),
        ("multiple.prefixes.bar.com", v3),
        ("multiple.prefixes.foo.com", v3),
    ] {
        c.expect_backend(&addr, get(host, "/"), want).await?;
    }
    for host in ["foo.com", "no.matching.host"] {
        c.expect_status(&addr, get(host, "/"), 404).await?;
    }
    c.unload(file, gw, &routes).await
}

/// GatewayInvalidRouteKind.
async fn invalid_route_kind(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "invalid-route-kind.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    let only = c
        .status(&format!("Gateway {INFRA}/gateway-only-invalid-route-kind"))
        .await?;
    let l = &only["listeners"][0];
    assert_condition(
        &l["conditions"],
        "ResolvedRefs",
        "False",
        "InvalidRouteKinds",
    );
    assert_eq!(l["supportedKinds"], serde_json::json!([]), "{l}");
    let both = c
        .status(&format!(
            "Gateway {INFRA}/gateway-supported-and-invalid-route-kind"
        ))
        .await?;
    let l = &both["listeners"][0];
    assert_condition(
        &l["conditions"],
        "ResolvedRefs",
        "False",
        "InvalidRouteKinds",
    );
    assert_eq!(
        l["supportedKinds"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]),
        "{l}"
    );
    c.config.remove(file)?;
    Ok(())
}

/// GatewayObservedGenerationBump: a new generation is reflected in every condition.
async fn observed_generation_bump(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "observed-generation-bump.yaml";
    let key = format!("Gateway {INFRA}/gateway-observed-generation-bump");
    c.config.write(file, &c.manifest(file)?)?;
    let generation_is = |g: i64| {
        move |s: &Value| {
            s["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["observedGeneration"] == g))
        }
    };
    c.status_where(&key, generation_is(1)).await?;
    let bumped = c
        .manifest(file)?
        .replace("generation: 1", "generation: 2")
        .replace(
            "  - {name: http,",
            "  - {name: http-2, port: 8081, protocol: HTTP}\n  - {name: http,",
        );
    c.config.write(file, &bumped)?;
    let s = c.status_where(&key, generation_is(2)).await?;
    assert_eq!(s["listeners"].as_array().map(Vec::len), Some(2), "{s}");
    for l in s["listeners"].as_array().into_iter().flatten() {
        assert!(
            l["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["observedGeneration"] == 2)),
            "{l}"
        );
    }
    c.config.remove(file)?;
    Ok(())
}

/// HTTPRouteInvalidParentRefNotMatchingSectionName, ...NotMatchingListenerPort and
/// HTTPRouteInvalidCrossNamespaceParentRef.
async fn invalid_parent_refs(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "invalid-parent-refs.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    for route in [
        "httproute-listener-not-matching-section-name",
        "httproute-listener-not-matching-route-port",
    ] {
        route_condition(
            c,
            route,
            "same-namespace",
            "Accepted",
            "False",
            "NoMatchingParent",
        )
        .await?;
    }
    let key = "HTTPRoute gateway-conformance-web-backend/invalid-cross-namespace-parent-ref";
    let s = c.status(key).await?;
    assert_condition(
        &parent(&s, "same-namespace")["conditions"],
        "Accepted",
        "False",
        "NotAllowedByListeners",
    );
    // None of them attached: the listener still counts no route.
    let gw = c.status(&format!("Gateway {INFRA}/same-namespace")).await?;
    assert_eq!(gw["listeners"][0]["attachedRoutes"], 0, "{gw}");
    c.config.remove(file)?;
    Ok(())
}

/// HTTPRouteInvalidReferenceGrant.
async fn invalid_reference_grant(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("invalid-reference-grant.yaml", "invalid-reference-grant");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_condition(c, route, "same-namespace", "Accepted", "True", "Accepted").await?;
    route_condition(
        c,
        route,
        "same-namespace",
        "ResolvedRefs",
        "False",
        "RefNotPermitted",
    )
    .await?;
    c.expect_status(&addr, get("example.com", "/"), 500).await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteObservedGenerationBump.
async fn route_observed_generation_bump(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "route-observed-generation-bump.yaml";
    let key = format!("HTTPRoute {INFRA}/observed-generation-bump");
    let generation_is = |g: i64| {
        move |s: &Value| {
            s["parents"].as_array().is_some_and(|ps| {
                ps.iter().all(|p| {
                    p["conditions"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().all(|c| c["observedGeneration"] == g))
                })
            })
        }
    };
    c.config.write(file, &c.manifest(file)?)?;
    c.status_where(&key, generation_is(1)).await?;
    let bumped = c
        .manifest(file)?
        .replace("generation: 1", "generation: 2")
        .replace("infra-backend-v1", "infra-backend-v2");
    c.config.write(file, &bumped)?;
    let s = c.status_where(&key, generation_is(2)).await?;
    assert_condition(
        &parent(&s, "same-namespace")["conditions"],
        "Accepted",
        "True",
        "Accepted",
    );
    c.config.remove(file)?;
    Ok(())
}

/// GatewayWithAttachedRoutes.
async fn gateway_with_attached_routes(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "gateway-with-attached-routes.yaml";
    let key = format!("Gateway {INFRA}/gateway-with-one-attached-route");
    c.config.write(file, &c.manifest(file)?)?;
    let s = c
        .status_where(&key, |s| s["listeners"][0]["attachedRoutes"] == 1)
        .await?;
    assert_eq!(s["listeners"][1]["attachedRoutes"], 0, "{s}");
    for l in s["listeners"].as_array().into_iter().flatten() {
        assert_condition(&l["conditions"], "Accepted", "True", "Accepted");
        assert_condition(&l["conditions"], "Programmed", "True", "Programmed");
        assert_condition(&l["conditions"], "Conflicted", "False", "NoConflicts");
    }
    c.config.remove(file)?;
    Ok(())
}

/// The condition `type_` of Portolan's `parents[]` entry for `same-namespace`, if any.
fn nack_condition(route: &Value, type_: &str) -> Option<Value> {
    route["parents"]
        .as_array()?
        .iter()
        .find(|p| p["parentRef"]["name"] == "same-namespace")
        .and_then(|p| condition(&p["conditions"], type_))
        .cloned()
}

/// A NACK of what an HTTPRoute produced: stock Envoy refuses the route configuration with the
/// route's oversized regex; `/debug/status` shows the Gateway and its listeners
/// `Programmed=False` (`Invalid`, Envoy's text) and the route's parent entry
/// `portolan.dev/Programmed=False` (`Nacked`); with the regex fixed, all back to programmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_nack_is_attributed_to_the_gateway_and_route() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mut c = Conformance::start().await?;
    let file = "nack-regex.yaml";
    let gw_key = format!("Gateway {INFRA}/same-namespace");
    let route_key = format!("HTTPRoute {INFRA}/nack-regex");
    c.config.write(file, &c.manifest(file)?)?;
    c.gateway("same-namespace").await?;
    let gw = c
        .status_where(&gw_key, |s| {
            condition(&s["conditions"], "Programmed").is_some_and(|p| p["status"] == "False")
        })
        .await;
    let page = c.portolan.get_json("/debug/config-errors").await?;
    let gw = gw.map_err(|e| anyhow::anyhow!("{e}\nconfig-errors: {page}"))?;
    let programmed = condition(&gw["conditions"], "Programmed")
        .cloned()
        .unwrap_or_default();
    println!("Gateway Programmed on NACK: {programmed}");
    assert_eq!(programmed["reason"], "Invalid", "{gw}");
    let text = programmed["message"].as_str().unwrap_or_default();
    assert!(text.contains("rejected by"), "{text}");
    assert!(text.contains("regex") || text.contains("RE2"), "{text}");
    for l in gw["listeners"].as_array().into_iter().flatten() {
        assert_condition(&l["conditions"], "Programmed", "False", "Invalid");
    }
    let route = c
        .status_where(&route_key, |s| {
            nack_condition(s, "portolan.dev/Programmed").is_some()
        })
        .await?;
    let p = nack_condition(&route, "portolan.dev/Programmed").unwrap_or_default();
    assert_eq!(p["status"], "False", "{route}");
    assert_eq!(p["reason"], "Nacked", "{route}");
    // The spec's own conditions stay as computed: Portolan accepted the route.
    assert_eq!(
        nack_condition(&route, "Accepted").unwrap_or_default()["status"],
        "True",
        "{route}"
    );

    // Fixed: the Gateway is programmed again and the route's NACK condition is gone.
    let fixed = c.manifest(file)?.replace(
        "type: RegularExpression, value: \"/(a|b|c|d|e|f|g|h){40}\"",
        "type: PathPrefix, value: /ok",
    );
    c.config.write(file, &fixed)?;
    c.status_where(&gw_key, |s| {
        condition(&s["conditions"], "Programmed").is_some_and(|p| p["status"] == "True")
    })
    .await?;
    c.status_where(&route_key, |s| {
        nack_condition(s, "portolan.dev/Programmed").is_none()
    })
    .await?;
    c.config.remove(file)?;
    Ok(())
}

/// A NACK of what an HTTPRoute on a ListenerSet's listener produced (the oversized regex
/// again, on the set's own port): the ListenerSet and the entry of its listener on that port
/// get `Programmed=False` (`Invalid`, Envoy's text) and the route's parent entry
/// `portolan.dev/Programmed=False`; the set's listener on another port stays
/// `Programmed=True`, and so do the Gateway and its own listener stay `Programmed=True`
/// (its `portolan.dev/Converged` is `False Nacked`), and its port serves: the NACK names the
/// set's route configuration only, so the Gateway's is sent again without it. With the regex
/// fixed, the set is programmed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_nack_on_a_listener_set_is_attributed_to_the_listener_set() -> anyhow::Result<()>
{
    let _shared = portolan_e2e::serial::shared().await;
    let mut c = Conformance::start().await?;
    let file = "nack-listenerset.yaml";
    let gw_key = format!("Gateway {INFRA}/nack-set-gateway");
    let set_key = format!("ListenerSet {INFRA}/nack-set");
    let route_key = format!("HTTPRoute {INFRA}/nack-set-regex");
    let set_port = portolan_e2e::ports::free_port();
    let other_port = portolan_e2e::ports::free_port();
    let text = c
        .manifest(file)?
        .replace("{SET_PORT}", &set_port.to_string())
        .replace("{SET_OTHER_PORT}", &other_port.to_string());
    c.config.write(file, &text)?;
    let addr = c.gateway("nack-set-gateway").await?;
    let programmed_is = |want: &'static str| {
        move |s: &Value| {
            condition(&s["conditions"], "Programmed").is_some_and(|p| p["status"] == want)
        }
    };
    let set = c.status_where(&set_key, programmed_is("False")).await;
    let page = c.portolan.get_json("/debug/config-errors").await?;
    let set = set.map_err(|e| anyhow::anyhow!("{e}\nconfig-errors: {page}"))?;
    assert_condition(&set["conditions"], "Programmed", "False", "Invalid");
    let message = condition(&set["conditions"], "Programmed")
        .and_then(|p| p["message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("rejected by"), "{message}");
    let listener = |name: &str| {
        set["listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(set["listeners"].as_array().map(Vec::len), Some(2), "{set}");
    let refused = listener("set-http");
    assert_condition(&refused["conditions"], "Programmed", "False", "Invalid");
    // Only the listener on the refused port: the other port's configuration was not refused.
    let other = listener("set-other");
    assert_condition(&other["conditions"], "Programmed", "True", "Programmed");
    let route = c
        .status_where(&route_key, |s| {
            s["parents"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| condition(&p["conditions"], "portolan.dev/Programmed").is_some())
        })
        .await?;
    let p = &route["parents"][0];
    assert_condition(
        &p["conditions"],
        "portolan.dev/Programmed",
        "False",
        "Nacked",
    );
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    // The Gateway is not blamed: its own listener's configuration was taken.
    let gw = c.status(&gw_key).await?;
    assert_condition(&gw["conditions"], "Programmed", "True", "Programmed");
    for l in gw["listeners"].as_array().into_iter().flatten() {
        assert_condition(&l["conditions"], "Programmed", "True", "Programmed");
    }
    // Its proxies did NACK: the Gateway's own condition says so (Envoy refuses the whole
    // response, so the route configuration of the Gateway's own port sent with it is not
    // taken either).
    let gw = c
        .status_where(&gw_key, |s| {
            condition(&s["conditions"], "portolan.dev/Converged")
                .is_some_and(|p| p["status"] == "False")
        })
        .await?;
    assert_condition(
        &gw["conditions"],
        "portolan.dev/Converged",
        "False",
        "Nacked",
    );
    // The NACK names the set's route configuration only, so Portolan sends the Gateway's own
    // again without it, and the Gateway's port serves while the set's stays refused.
    c.wait_envoy(
        "nack-set-gateway",
        &format!("\"{INFRA}/nack-set-fine/"),
        true,
    )
    .await?;
    c.expect_backend(&addr, get("example.com", "/"), "infra-backend-v1")
        .await?;

    // Fixed: the set is programmed again.
    let fixed = text.replace(
        "type: RegularExpression, value: \"/(a|b|c|d|e|f|g|h){40}\"",
        "type: PathPrefix, value: /ok",
    );
    c.config.write(file, &fixed)?;
    c.status_where(&set_key, programmed_is("True")).await?;
    c.config.remove(file)?;
    Ok(())
}
