//! GATEWAY-HTTP core tests of the conformance runner that the first scenarios did not
//! cover: GatewayClass and Gateway generation bumps and listener changes, unsupported
//! protocols and parameters, rules without backends, Services of every endpoint kind, one
//! route on two Gateways, and a ReferenceGrant that covers one backend of two.

use super::*;
use tokio::net::TcpStream;

/// Writes `text` as the case's manifest `file` and waits until `routes` reach the Envoy of
/// `gateway` (as [`Conformance::load`], for a manifest the case filled in itself).
async fn load_text(
    c: &mut Conformance,
    file: &str,
    text: &str,
    gateway: &str,
    routes: &[&str],
) -> anyhow::Result<String> {
    c.config.write(file, text)?;
    let addr = c.gateway(gateway).await?;
    for route in routes {
        c.wait_envoy(gateway, &format!("\"{INFRA}/{route}/"), true)
            .await?;
    }
    Ok(addr)
}

/// Every condition of `conditions` carries generation `g`.
fn all_at(conditions: &Value, g: i64) -> bool {
    conditions
        .as_array()
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["observedGeneration"] == g))
}

/// GatewayClassObservedGenerationBump: after a spec change, every condition of the class
/// carries the new generation.
pub(super) async fn gatewayclass_observed_generation_bump(
    c: &mut Conformance,
) -> anyhow::Result<()> {
    let file = "gatewayclass-observed-generation-bump.yaml";
    let key = "GatewayClass gatewayclass-observed-generation-bump";
    c.config.write(file, &c.manifest(file)?)?;
    let s = c.status_where(key, |s| all_at(&s["conditions"], 1)).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "Accepted");
    let bumped = c
        .manifest(file)?
        .replace("generation: 1", "generation: 2")
        .replace("description: old", "description: new");
    c.config.write(file, &bumped)?;
    let s = c.status_where(key, |s| all_at(&s["conditions"], 2)).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "Accepted");
    c.config.remove(file)?;
    c.gone(key).await
}

/// A listener's status as GatewayModifyListeners expects it: accepted, refs resolved,
/// serving HTTPRoute, with `attached` routes.
fn listener_ok(l: &Value, attached: i64) {
    assert_condition_status(&l["conditions"], "Accepted", "True");
    assert_condition_status(&l["conditions"], "ResolvedRefs", "True");
    assert_eq!(l["attachedRoutes"], attached, "{l}");
    let kinds = l["supportedKinds"].as_array().cloned().unwrap_or_default();
    assert!(kinds.iter().any(|k| k["kind"] == "HTTPRoute"), "{l}");
}

/// `type_` has `status`, any reason.
fn assert_condition_status(conditions: &Value, type_: &str, status: &str) {
    let c = condition(conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conditions}"));
    assert_eq!(c["status"], status, "{type_} in {conditions}");
}

/// The names of a Gateway status's listeners.
fn listener_names(s: &Value) -> Vec<String> {
    s["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .collect()
}

/// GatewayModifyListeners: a listener added to a Gateway becomes accepted, counts the
/// routes attached there and serves them; a listener removed disappears from the status
/// and stops taking connections.
pub(super) async fn modify_listeners(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "gateway-modify-listeners.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    let (add, remove) = ("gateway-add-listener", "gateway-remove-listener");
    let add_key = format!("Gateway {INFRA}/{add}");
    let s = c
        .status_where(&add_key, |s| all_at(&s["conditions"], 1))
        .await?;
    assert_eq!(listener_names(&s), ["https"], "{s}");
    let http_listener = format!(
        "  - name: http\n    port: {}\n    protocol: HTTP\n    hostname: data.test.com\n    \
         allowedRoutes:\n      namespaces: {{from: All}}\n",
        c.port
    );
    let added = c
        .manifest(file)?
        .replace("generation: 1", "generation: 2")
        .replace("#ADD-LISTENER\n", &http_listener);
    c.config.write(file, &added)?;
    let s = c
        .status_where(&add_key, |s| {
            all_at(&s["conditions"], 2) && listener_names(s).len() == 2
        })
        .await?;
    for l in s["listeners"].as_array().into_iter().flatten() {
        listener_ok(l, 1);
        assert!(all_at(&l["conditions"], 2), "{l}");
    }
    // The new listener serves the route (its backend does not exist: 500).
    let addr = load_text(c, file, &added, add, &["http-route-1"]).await?;
    c.expect_status(&addr, get("data.test.com", "/"), 500)
        .await?;
    // The other Gateway loses its HTTPS listener.
    let remove_key = format!("Gateway {INFRA}/{remove}");
    let s = c
        .status_where(&remove_key, |s| listener_names(s).len() == 2)
        .await?;
    for l in s["listeners"].as_array().into_iter().flatten() {
        listener_ok(l, 1);
    }
    let remove_addr = c.gateway(remove).await?;
    c.wait_envoy(remove, &format!("\"{INFRA}/http-route-2/"), true)
        .await?;
    c.wait_envoy(remove, "secure.test.com", true).await?;
    let removed = added
        .split("#REMOVE-BEGIN\n")
        .next()
        .zip(added.split("#REMOVE-END\n").nth(1))
        .map(|(head, tail)| format!("{head}{tail}"))
        .ok_or_else(|| anyhow::anyhow!("markers missing in {file}"))?;
    c.config.write(file, &removed)?;
    let s = c
        .status_where(&remove_key, |s| listener_names(s) == ["http"])
        .await?;
    listener_ok(&s["listeners"][0], 1);
    c.wait_envoy(remove, "secure.test.com", false).await?;
    c.expect_status(&remove_addr, get("example.com", "/"), 500)
        .await?;
    let tls = format!("{remove_addr}:{}", c.tls_port);
    eventually(&format!("{tls} refuses connections"), DEADLINE, || async {
        match TcpStream::connect(&tls).await {
            Err(_) => Ok(()),
            Ok(_) => Err("still accepts".to_string()),
        }
    })
    .await?;
    c.config.remove(file)?;
    c.gone(&add_key).await?;
    c.gone(&remove_key).await
}

/// GatewayListenerUnsupportedProtocol: a listener of an unknown protocol is refused
/// (`UnsupportedProtocol`, no supportedKinds, nothing attached, nothing bound); a Gateway
/// with no other listener is not accepted, one with a valid listener is (`ListenersNotValid`)
/// and serves its route there.
pub(super) async fn listener_unsupported_protocol(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "gateway-listener-unsupported-protocol.yaml";
    let spare = free_port();
    let text = c
        .manifest(file)?
        .replace("{SPARE_PORT}", &spare.to_string());
    let invalid_ok = |l: &Value| {
        assert_condition(&l["conditions"], "Accepted", "False", "UnsupportedProtocol");
        assert_eq!(l["supportedKinds"], serde_json::json!([]), "{l}");
        assert_eq!(l["attachedRoutes"], 0, "{l}");
    };
    c.config.write(file, &text)?;
    let only = c
        .status(&format!(
            "Gateway {INFRA}/gateway-only-unsupported-protocols"
        ))
        .await?;
    assert_condition(
        &only["conditions"],
        "Accepted",
        "False",
        "ListenersNotValid",
    );
    assert_eq!(listener_names(&only), ["invalid"], "{only}");
    invalid_ok(&only["listeners"][0]);

    let gw = "gateway-supported-and-unsupported-protocols";
    let route = "gateway-supported-and-unsupported-protocols-control";
    let addr = load_text(c, file, &text, gw, &[route]).await?;
    let s = c.status(&format!("Gateway {INFRA}/{gw}")).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "ListenersNotValid");
    assert_eq!(listener_names(&s), ["http", "invalid"], "{s}");
    assert_condition(
        &s["listeners"][0]["conditions"],
        "Accepted",
        "True",
        "Accepted",
    );
    assert_eq!(
        s["listeners"][0]["supportedKinds"][0]["kind"], "HTTPRoute",
        "{s}"
    );
    assert_eq!(s["listeners"][0]["attachedRoutes"], 1, "{s}");
    invalid_ok(&s["listeners"][1]);
    route_accepted(c, INFRA, route, gw).await?;
    c.expect_backend(
        &addr,
        get("unsupported-protocol.example.com", "/"),
        "infra-backend-v1",
    )
    .await?;
    // The invalid listener binds nothing.
    let target = format!("{addr}:{spare}");
    assert!(
        TcpStream::connect(&target).await.is_err(),
        "{target} accepts connections"
    );
    c.unload(file, gw, &[route]).await?;
    c.gone(&format!("Gateway {INFRA}/{gw}")).await
}

/// GatewayInvalidParametersRef: `infrastructure.parametersRef` to a kind Portolan does not
/// know: `Accepted=False`, `InvalidParameters`, at the latest generation.
pub(super) async fn invalid_parameters_ref(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "gateway-invalid-parameters-ref.yaml";
    let key = format!("Gateway {INFRA}/gateway-invalid-parameters-ref");
    c.config.write(file, &c.manifest(file)?)?;
    let s = c.status(&key).await?;
    assert_condition(&s["conditions"], "Accepted", "False", "InvalidParameters");
    assert_condition(&s["conditions"], "Programmed", "False", "Invalid");
    c.config.remove(file)?;
    c.gone(&key).await
}

/// HTTPRouteNoBackendRefs: rules with omitted or empty backendRefs answer 500; the route is
/// accepted with its refs resolved, and its rule with a backend is served.
pub(super) async fn no_backend_refs(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("no-backend-refs.yaml", "omitted-backendrefs");
    let addr = c.load(file, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    c.expect_backend(&addr, get("example.com", "/forward"), "infra-backend-v1")
        .await?;
    for path in ["/omitted-no-forward", "/empty-no-forward"] {
        c.expect_status(&addr, get("example.com", path), 500)
            .await?;
    }
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteServiceTypes: headless Services, and Services with manual Endpoints or
/// EndpointSlices, all reach their endpoints.
pub(super) async fn service_types(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("service-types.yaml", "service-types");
    let v1 = c.upstream("infra-backend-v1")?.addr();
    let text = c
        .manifest(file)?
        .replace("{V1_IP}", &v1.ip().to_string())
        .replace("{V1_PORT}", &v1.port().to_string());
    let addr = load_text(c, file, &text, "same-namespace", &[route]).await?;
    route_accepted(c, INFRA, route, "same-namespace").await?;
    for path in [
        "/headless",
        "/manual-endpoints",
        "/headless-manual-endpoints",
        "/manual-endpointslices",
        "/headless-manual-endpointslices",
    ] {
        c.expect_backend(&addr, get("example.com", path), "infra-backend-v1")
            .await?;
    }
    c.unload(file, "same-namespace", &[route]).await
}

/// HTTPRouteMultipleGateways: a route on two Gateways serves its path through both; each
/// Gateway's dedicated route serves the rest there only.
pub(super) async fn multiple_gateways(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "multiple-gateways.yaml";
    let shared = "multiple-gateways-shared-route";
    c.config.write(file, &c.manifest(file)?)?;
    for (gw, dedicated, backend) in [
        (
            "same-namespace",
            "same-namespace-dedicated-route",
            "infra-backend-v2",
        ),
        (
            "all-namespaces",
            "all-namespaces-dedicated-route",
            "infra-backend-v3",
        ),
    ] {
        let addr = c.load(file, gw, &[shared, dedicated]).await?;
        route_accepted(c, INFRA, shared, gw).await?;
        route_accepted(c, INFRA, dedicated, gw).await?;
        c.expect_backend(&addr, get("example.com", "/shared"), "infra-backend-v1")
            .await?;
        c.expect_backend(&addr, get("example.com", "/"), backend)
            .await?;
    }
    c.unload(
        file,
        "same-namespace",
        &[shared, "same-namespace-dedicated-route"],
    )
    .await?;
    for r in [shared, "all-namespaces-dedicated-route"] {
        c.wait_envoy("all-namespaces", &format!("\"{INFRA}/{r}/"), false)
            .await?;
    }
    Ok(())
}

/// HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: the route is accepted with
/// `ResolvedRefs=False RefNotPermitted`; the rule to the backend the grant does not cover
/// answers 500, its sibling is served.
pub(super) async fn partially_invalid_reference_grant(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = (
        "partially-invalid-reference-grant.yaml",
        "invalid-reference-grant",
    );
    let gw = "same-namespace";
    let addr = c.load(file, gw, &[route]).await?;
    route_condition(c, route, gw, "Accepted", "True", "Accepted").await?;
    route_condition(c, route, gw, "ResolvedRefs", "False", "RefNotPermitted").await?;
    c.expect_status(&addr, get("example.com", "/v2"), 500)
        .await?;
    c.expect_backend(&addr, get("example.com", "/"), "app-backend-v1")
        .await?;
    c.unload(file, gw, &[route]).await
}
