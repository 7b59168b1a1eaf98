//! ListenerSet scenarios of the conformance runner (`gateway.networking.k8s.io/v1`
//! ListenerSet, feature `ListenerSet` of v1.6.1): listeners added to a Gateway that allows
//! them (`spec.allowedListeners`), served by that Gateway's Envoy, with the ListenerSet's
//! status (`Accepted`, `Programmed`, per listener) and the Gateway's `attachedListenerSets`.
//! Requests go to the Gateway's address with the Host of a set's listener.

use super::*;

/// `ListenerSet NS/NAME`'s status once it has condition `type_`.
async fn set_status(c: &Conformance, ns: &str, name: &str) -> anyhow::Result<Value> {
    c.status_where(&format!("ListenerSet {ns}/{name}"), |s| {
        condition(&s["conditions"], "Accepted").is_some()
    })
    .await
}

/// Waits until Gateway `gw` counts `n` attached ListenerSets (GatewayMustHaveAttachedListeners).
async fn attached_sets(c: &Conformance, gw: &str, n: i64) -> anyhow::Result<Value> {
    c.status_where(&format!("Gateway {INFRA}/{gw}"), |s| {
        s["attachedListenerSets"].as_i64() == Some(n)
    })
    .await
}

/// A ListenerSet refused with `reason` on both conditions and no listener entries.
async fn refused(c: &Conformance, ns: &str, name: &str, reason: &str) -> anyhow::Result<()> {
    let s = set_status(c, ns, name).await?;
    assert_condition(&s["conditions"], "Accepted", "False", reason);
    assert_condition(&s["conditions"], "Programmed", "False", reason);
    Ok(())
}

/// An accepted and programmed ListenerSet whose listeners are all accepted, programmed and
/// resolved (generateAcceptedListenerConditions).
async fn accepted(
    c: &Conformance,
    ns: &str,
    name: &str,
    listeners: &[&str],
) -> anyhow::Result<Value> {
    let s = set_status(c, ns, name).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&s["conditions"], "Programmed", "True", "Programmed");
    for name in listeners {
        ready(&s, name)?;
    }
    Ok(s)
}

/// Listener `name` of a Gateway's or ListenerSet's status `s` is resolved, accepted and
/// programmed (conditions `True`, any reason).
fn ready(s: &Value, name: &str) -> anyhow::Result<()> {
    let l = listener_of(s, name)?;
    for t in ["ResolvedRefs", "Accepted", "Programmed"] {
        let cond = condition(&l["conditions"], t).cloned().unwrap_or_default();
        anyhow::ensure!(cond["status"] == "True", "listener {name} {t}: {s}");
    }
    Ok(())
}

/// ListenerSetDefaultNotAllowed: no `allowedListeners`, no ListenerSet; the set's hostnames
/// are not served (ours) while the Gateway's is.
pub(super) async fn listenerset_default_not_allowed(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "listenerset-default-not-allowed.yaml";
    let gw = "gateway-default-does-not-allow-listenerset";
    let route = "attaches-to-all-listeners";
    let addr = c.load(file, gw, &[route]).await?;
    let s = attached_sets(c, gw, 0).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "Accepted");
    refused(c, INFRA, "listenerset-default-not-allowed", "NotAllowed").await?;
    c.expect_backend(
        &addr,
        get("gateway-listener-1.com", "/route"),
        "infra-backend-v1",
    )
    .await?;
    c.expect_status(&addr, get("listener-set-1-listener-1.com", "/route"), 404)
        .await?;
    c.unload(file, gw, &[route]).await
}

/// ListenerSetAllowedNamespaceSame: the set of the Gateway's namespace is attached, the
/// other namespace's is not; (ours) a route on the attached set's listener is served.
pub(super) async fn listenerset_allowed_namespace_same(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "listenerset-allowed-namespace-same.yaml";
    let gw = "gateway-allows-listenerset-in-same-namespace";
    let route = "listenerset-same-namespace-route";
    let addr = c.load(file, gw, &[route]).await?;
    let s = attached_sets(c, gw, 1).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "Accepted");
    accepted(
        c,
        INFRA,
        "listenerset-in-same-namespace",
        &["listenerset-in-same-namespace-listener"],
    )
    .await?;
    refused(
        c,
        "gateway-api-listenerset-not-allowed-ns",
        "listenerset-in-different-namespace",
        "NotAllowed",
    )
    .await?;
    c.expect_backend(&addr, get("same-namespace.com", "/"), "infra-backend-v2")
        .await?;
    c.expect_status(&addr, get("different-namespace.com", "/"), 404)
        .await?;
    c.unload(file, gw, &[route]).await
}

/// ListenerSetAllowedNamespaceSelector: sets from namespaces with the selected label are
/// attached, others not; the route's parent entry for the refused set says so.
pub(super) async fn listenerset_allowed_namespace_selector(
    c: &mut Conformance,
) -> anyhow::Result<()> {
    let file = "listenerset-allowed-namespace-selector.yaml";
    let gw = "gateway-allows-listenerset-by-selector";
    let route = "listenerset-selector-route";
    let addr = c.load(file, gw, &[route]).await?;
    attached_sets(c, gw, 1).await?;
    accepted(
        c,
        "listenerset-allowed-ns",
        "listenerset-selected",
        &["selected-listener"],
    )
    .await?;
    refused(
        c,
        "listenerset-other-ns",
        "listenerset-not-selected",
        "NotAllowed",
    )
    .await?;
    let r = c.status(&format!("HTTPRoute {INFRA}/{route}")).await?;
    assert_condition(
        &parent(&r, "listenerset-selected")["conditions"],
        "Accepted",
        "True",
        "Accepted",
    );
    assert_condition(
        &parent(&r, "listenerset-not-selected")["conditions"],
        "Accepted",
        "False",
        "NoMatchingParent",
    );
    c.expect_backend(&addr, get("selected.com", "/"), "infra-backend-v1")
        .await?;
    c.expect_status(&addr, get("not-selected.com", "/"), 404)
        .await?;
    c.unload(file, gw, &[route]).await
}

/// ListenerSetParentNotAccepted: a set of a Gateway that is not accepted is
/// `Accepted=False ParentNotAccepted`, not programmed, and not counted.
pub(super) async fn listenerset_parent_not_accepted(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "listenerset-parent-not-accepted.yaml";
    let gw = "gateway-with-listenerset-not-accepted";
    c.config.write(file, &c.manifest(file)?)?;
    let s = attached_sets(c, gw, 0).await?;
    let accepted = condition(&s["conditions"], "Accepted")
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(accepted["status"] == "False", "Gateway Accepted: {s}");
    let set = set_status(c, INFRA, "listenerset-parent-not-accepted").await?;
    assert_condition(&set["conditions"], "Accepted", "False", "ParentNotAccepted");
    let programmed = condition(&set["conditions"], "Programmed")
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        programmed["status"] == "False",
        "ListenerSet Programmed: {set}"
    );
    c.config.remove(file)?;
    c.gone(&format!(
        "ListenerSet {INFRA}/listenerset-parent-not-accepted"
    ))
    .await
}

/// ListenerSetDualParentRefIndependence: a route's Gateway parent and ListenerSet parent are
/// accepted (or not) each on its own; the set's listener counts both routes.
pub(super) async fn listenerset_dual_parent_ref(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "listenerset-dual-parentref.yaml";
    let gw = "gateway-dual-parentref";
    let routes = ["route-dual-parentref-both", "route-dual-parentref-one"];
    let addr = c.load(file, gw, &routes).await?;
    let s = attached_sets(c, gw, 1).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "Accepted");
    let set = accepted(
        c,
        INFRA,
        "ls-dual-parentref",
        &["ls-dual-parentref-listener"],
    )
    .await?;
    let listener = &set["listeners"][0];
    anyhow::ensure!(listener["attachedRoutes"] == 2, "attachedRoutes: {set}");
    let kinds: Vec<&str> = listener["supportedKinds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kind"].as_str())
        .collect();
    anyhow::ensure!(kinds.contains(&"HTTPRoute"), "supportedKinds: {set}");
    let both = c
        .status(&format!("HTTPRoute {INFRA}/{}", routes[0]))
        .await?;
    for p in [gw, "ls-dual-parentref"] {
        assert_condition(
            &parent(&both, p)["conditions"],
            "Accepted",
            "True",
            "Accepted",
        );
    }
    let one = c
        .status(&format!("HTTPRoute {INFRA}/{}", routes[1]))
        .await?;
    assert_condition(
        &parent(&one, gw)["conditions"],
        "Accepted",
        "False",
        "NoMatchingParent",
    );
    assert_condition(
        &parent(&one, "ls-dual-parentref")["conditions"],
        "Accepted",
        "True",
        "Accepted",
    );
    assert_condition(
        &parent(&one, "ls-dual-parentref")["conditions"],
        "ResolvedRefs",
        "True",
        "ResolvedRefs",
    );
    c.expect_backend(&addr, get("gw-dual.com", "/dualboth"), "infra-backend-v1")
        .await?;
    c.expect_backend(&addr, get("ls-dual.com", "/dualboth"), "infra-backend-v1")
        .await?;
    c.expect_backend(&addr, get("ls-dual.com", "/dualone"), "infra-backend-v2")
        .await?;
    c.expect_status(&addr, get("gw-dual.com", "/dualone"), 404)
        .await?;
    c.unload(file, gw, &routes).await
}

/// Asserts listener `name` of a status (Gateway or ListenerSet) is conflicted with
/// `HostnameConflict` (Accepted, Programmed False; Conflicted True), or fully accepted.
fn listener_state(status: &Value, name: &str, conflicted: bool) -> anyhow::Result<()> {
    let l = status["listeners"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == name))
        .ok_or_else(|| anyhow::anyhow!("no listener {name} in {status}"))?;
    if conflicted {
        assert_condition(&l["conditions"], "Accepted", "False", "HostnameConflict");
        assert_condition(&l["conditions"], "Programmed", "False", "HostnameConflict");
        assert_condition(&l["conditions"], "Conflicted", "True", "HostnameConflict");
    } else {
        for t in ["ResolvedRefs", "Accepted", "Programmed"] {
            let cond = condition(&l["conditions"], t).cloned().unwrap_or_default();
            anyhow::ensure!(cond["status"] == "True", "listener {name} {t}: {status}");
        }
    }
    Ok(())
}

/// The status of ListenerSet `listenerset-with-hostname-conflict-with-{n}`.
async fn conflict_set(c: &Conformance, n: &str) -> anyhow::Result<Value> {
    let name = format!("listenerset-with-hostname-conflict-with-{n}");
    set_status(c, INFRA, &name).await
}

/// ListenerSetHostnameConflict: the Gateway's listeners win, then the older (here: first by
/// name) ListenerSet; sets left with no valid listener are `ListenersNotValid`; (ours) each
/// hostname is served by the listener that won it.
pub(super) async fn listenerset_hostname_conflict(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "listenerset-hostname-conflict.yaml";
    let gw = "gateway-with-listenerset-hostname-conflict";
    let routes = [
        "hostname-conflict-gateway-route",
        "hostname-conflict-set-1-route",
        "hostname-conflict-set-3-route",
    ];
    let addr = c.load(file, gw, &routes).await?;
    let s = attached_sets(c, gw, 2).await?;
    let accepted = condition(&s["conditions"], "Accepted")
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(accepted["status"] == "True", "Gateway Accepted: {s}");
    listener_state(&s, "gateway-listener", false)?;
    listener_state(&s, "hostname-conflict-with-gateway-listener", false)?;
    for (n, valid, conflicted) in [
        (
            "gateway-1",
            "listener-set-1-listener",
            "hostname-conflict-with-gateway-listener",
        ),
        (
            "listener-set-1",
            "listener-set-2-listener",
            "hostname-conflict-with-listener-set-listener",
        ),
    ] {
        let s = conflict_set(c, n).await?;
        let a = condition(&s["conditions"], "Accepted")
            .cloned()
            .unwrap_or_default();
        anyhow::ensure!(a["status"] == "True", "{n} Accepted: {s}");
        assert_condition(&s["conditions"], "Programmed", "True", "Programmed");
        listener_state(&s, valid, false)?;
        listener_state(&s, conflicted, true)?;
    }
    let first = conflict_set(c, "gateway-1").await?;
    listener_state(
        &first,
        "hostname-conflict-with-listener-set-listener",
        false,
    )?;
    for (n, conflicted) in [
        ("gateway-2", "hostname-conflict-with-gateway-listener"),
        (
            "listener-set-2",
            "hostname-conflict-with-listener-set-listener",
        ),
    ] {
        let s = conflict_set(c, n).await?;
        assert_condition(&s["conditions"], "Accepted", "False", "ListenersNotValid");
        assert_condition(&s["conditions"], "Programmed", "False", "ListenersNotValid");
        listener_state(&s, conflicted, true)?;
    }
    for (host, backend) in [
        ("gateway-listener.com", "infra-backend-v1"),
        ("conflict-gateway.com", "infra-backend-v1"),
        ("ls1.com", "infra-backend-v2"),
        ("conflict-ls.com", "infra-backend-v2"),
        ("ls2.com", "infra-backend-v3"),
    ] {
        c.expect_backend(&addr, get(host, "/"), backend).await?;
    }
    c.unload(file, gw, &routes).await
}

/// ListenerSetReferenceGrant: a set's HTTPS listener uses another namespace's Secret only with
/// a ReferenceGrant from `ListenerSet`; (ours) the granted listener serves its route over TLS
/// with that certificate, and the ungranted one's name gets no handshake.
pub(super) async fn listenerset_reference_grant(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "listenerset-reference-grant.yaml";
    let gw = "gateway-with-listener-sets-test-reference-grant";
    let route = "listenerset-reference-grant-route";
    let addr = c.load(file, gw, &[route]).await?;
    let s = c.status(&format!("Gateway {INFRA}/{gw}")).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "Accepted");
    let listener = |s: &Value, name: &str| -> anyhow::Result<Value> {
        s["listeners"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == name).cloned())
            .ok_or_else(|| anyhow::anyhow!("no listener {name} in {s}"))
    };
    let granted = set_status(c, INFRA, "listenerset-with-reference-grant").await?;
    for t in ["Accepted", "Programmed"] {
        let cond = condition(&granted["conditions"], t)
            .cloned()
            .unwrap_or_default();
        anyhow::ensure!(cond["status"] == "True", "granted set {t}: {granted}");
    }
    let l = listener(&granted, "listenerset-with-reference-grant-listener")?;
    let resolved = condition(&l["conditions"], "ResolvedRefs")
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(resolved["status"] == "True", "granted listener: {granted}");
    let ns = "gateway-api-listener-sets-test-reference-grant-ns";
    let refused = set_status(c, ns, "listenerset-without-reference-grant").await?;
    assert_condition(
        &refused["conditions"],
        "Accepted",
        "False",
        "ListenersNotValid",
    );
    assert_condition(
        &refused["conditions"],
        "Programmed",
        "False",
        "ListenersNotValid",
    );
    let l = listener(&refused, "listenerset-without-reference-grant-listener")?;
    assert_condition(&l["conditions"], "ResolvedRefs", "False", "RefNotPermitted");
    let cert = c.gateway_cert.cert_der.clone();
    c.expect_https(&addr, ("example.org", "example.org"), "/", |r| {
        if r.status == 200
            && r.header("x-upstream") == Some("infra-backend-v1")
            && r.peer_certificate == cert
        {
            Ok(())
        } else {
            Err("want infra-backend-v1 with the granted certificate".to_string())
        }
    })
    .await?;
    let to = HttpsTarget {
        addr: &addr,
        port: c.tls_port,
        sni: "second-example.org",
        host: "second-example.org",
    };
    anyhow::ensure!(
        https_get_at(&c.ca, &to, "/").await.is_err(),
        "the ungranted listener's name must get no handshake"
    );
    c.unload(file, gw, &[route]).await
}

/// ListenerSetUpdateListenerHostname: a route whose hostname the set's listener does not
/// match is `NoMatchingListenerHostname`; once the listener takes the route's hostname the
/// route is accepted, the listener counts it (supportedKinds exactly HTTPRoute) and (ours)
/// serves it.
pub(super) async fn listenerset_update_listener_hostname(
    c: &mut Conformance,
) -> anyhow::Result<()> {
    let file = "listenerset-update-listener-hostname.yaml";
    let gw = "gateway-listenerset-update-listener-hostname";
    let route = "httproute-listenerset-update-listener-hostname";
    let set = "listenerset-update-listener-hostname";
    let text = c.manifest(file)?;
    c.config
        .write(file, &text.replace("{HOSTNAME}", "rejected.example.com"))?;
    let addr = c.gateway(gw).await?;
    let key = format!("HTTPRoute {INFRA}/{route}");
    let parent_reason = |s: &Value| {
        s["parents"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["parentRef"]["name"] == set))
            .and_then(|p| condition(&p["conditions"], "Accepted"))
            .and_then(|c| c["reason"].as_str().map(str::to_string))
    };
    c.status_where(&key, |s| {
        parent_reason(s).as_deref() == Some("NoMatchingListenerHostname")
    })
    .await?;
    c.config
        .write(file, &text.replace("{HOSTNAME}", "accepted.example.com"))?;
    let r = c
        .status_where(&key, |s| parent_reason(s).as_deref() == Some("Accepted"))
        .await?;
    assert_condition(
        &parent(&r, set)["conditions"],
        "Accepted",
        "True",
        "Accepted",
    );
    let s = c
        .status_where(&format!("ListenerSet {INFRA}/{set}"), |s| {
            s["listeners"][0]["attachedRoutes"] == 1
        })
        .await?;
    let l = &s["listeners"][0];
    assert_eq!(l["name"], "http", "{s}");
    assert_eq!(
        l["supportedKinds"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]),
        "{s}"
    );
    for t in ["ResolvedRefs", "Accepted", "Programmed"] {
        let cond = condition(&l["conditions"], t).cloned().unwrap_or_default();
        anyhow::ensure!(cond["status"] == "True", "listener {t}: {s}");
    }
    c.expect_backend(&addr, get("accepted.example.com", "/"), "infra-backend-v2")
        .await?;
    c.unload(file, gw, &[route]).await
}

/// ListenerSetAllowedRoutesNamespaces: the set's listeners admit routes by their own
/// `allowedRoutes.namespaces` (`Same`: the set's namespace); each route is accepted by the set,
/// each listener counts the routes it admits, and each hostname serves only those.
pub(super) async fn listenerset_allowed_routes_namespaces(
    c: &mut Conformance,
) -> anyhow::Result<()> {
    let file = "listenerset-allowed-routes-namespaces.yaml";
    let gw = "gateway-with-listener-sets";
    let set = "listenerset-test-allowed-routes";
    c.config.write(file, &c.manifest(file)?)?;
    let addr = c.gateway(gw).await?;
    c.wait_envoy(gw, "/route-not-in-selected-namespace", true)
        .await?;
    let s = attached_sets(c, gw, 1).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "Accepted");
    for (ns, route) in [
        (INFRA, "route-in-same-namespace"),
        (
            "gateway-api-example-allowed-ns",
            "route-in-selected-namespace",
        ),
        (
            "gateway-api-example-not-allowed-ns",
            "route-not-in-selected-namespace",
        ),
    ] {
        let r = c.status(&format!("HTTPRoute {ns}/{route}")).await?;
        let p = parent(&r, set);
        assert_eq!(p["controllerName"], "portolan.dev/gateway-controller");
        assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
        assert_condition(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
    }
    let status = accepted(c, INFRA, set, &[]).await?;
    for (listener, attached) in [
        ("listener-set-listener-allowed-routes-all", 3),
        ("listener-set-listener-allowed-routes-same", 1),
        ("listener-set-listener-allowed-routes-selector", 1),
    ] {
        let l = status["listeners"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == listener))
            .ok_or_else(|| anyhow::anyhow!("no listener {listener} in {status}"))?;
        anyhow::ensure!(l["attachedRoutes"] == attached, "{listener}: {status}");
        let kinds: Vec<&str> = l["supportedKinds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k["kind"].as_str())
            .collect();
        anyhow::ensure!(kinds == ["HTTPRoute", "GRPCRoute"], "{listener}: {status}");
        for (t, want) in [
            ("ResolvedRefs", "True"),
            ("Accepted", "True"),
            ("Programmed", "True"),
            ("Conflicted", "False"),
        ] {
            let cond = condition(&l["conditions"], t).cloned().unwrap_or_default();
            anyhow::ensure!(cond["status"] == want, "{listener} {t}: {status}");
        }
    }
    let host = |l: &str| format!("listener-set-listener-allowed-routes-{l}.com");
    for (listener, path, served) in [
        ("all", "/route-in-same-namespace", true),
        ("all", "/route-in-selected-namespace", true),
        ("all", "/route-not-in-selected-namespace", true),
        ("same", "/route-in-same-namespace", true),
        ("same", "/route-in-selected-namespace", false),
        ("same", "/route-not-in-selected-namespace", false),
        ("selector", "/route-in-same-namespace", false),
        ("selector", "/route-in-selected-namespace", true),
        ("selector", "/route-not-in-selected-namespace", false),
    ] {
        let h = host(listener);
        if served {
            c.expect_backend(&addr, get(&h, path), "infra-backend-v1")
                .await?;
        } else {
            c.expect_status(&addr, get(&h, path), 404).await?;
        }
    }
    c.config.remove(file)?;
    c.wait_envoy(gw, "/route-not-in-selected-namespace", false)
        .await
}

/// Waits until `GET http://{addr}:{port}{path}` (Host `host`) reaches `backend` (`Ok`) or
/// answers `status` (`Err`).
async fn expect_at(
    (addr, port): (&str, u16),
    host: &str,
    path: &str,
    want: Result<&str, u16>,
) -> anyhow::Result<()> {
    let url = format!("http://{addr}:{port}{path}");
    eventually(&format!("{host}{path} at {port}"), DEADLINE, || async {
        match send(client().get(&url).header("host", host)).await {
            Ok(r) => match want {
                Ok(b) if r.status == 200 && r.upstream() == Some(b) => Ok(()),
                Err(s) if r.status == s => Ok(()),
                _ => Err(format!("{} {:?}", r.status, r.upstream())),
            },
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;
    Ok(())
}

/// The listener `name` of a status, or an error.
fn listener_of(status: &Value, name: &str) -> anyhow::Result<Value> {
    status["listeners"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == name).cloned())
        .ok_or_else(|| anyhow::anyhow!("no listener {name} in {status}"))
}

/// ListenerSetListenerPrecedence: on a port where the Gateway and both sets have a listener
/// for one hostname, the Gateway's serves it and the sets' are `HostnameConflict`; on a port
/// where the first set has an HTTP listener and the second an HTTPS one, the first serves and
/// the second is `ProtocolConflict`. Each listener's route is served where it won.
pub(super) async fn listenerset_listener_precedence(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "listenerset-listener-precedence.yaml";
    let gw = "gateway-with-listenerset-http-listener";
    let routes = [
        "gateway-route",
        "listenerset-1-route",
        "listenerset-2-route",
    ];
    let (domain, protocol, ls1, ls2) = (free_port(), free_port(), free_port(), free_port());
    let text = c
        .manifest(file)?
        .replace("{P_DOMAIN}", &domain.to_string())
        .replace("{P_PROTOCOL}", &protocol.to_string())
        .replace("{P_LS1}", &ls1.to_string())
        .replace("{P_LS2}", &ls2.to_string());
    c.config.write(file, &text)?;
    let addr = c.gateway(gw).await?;
    for route in routes {
        c.wait_envoy(gw, &format!("\"{INFRA}/{route}/"), true)
            .await?;
    }
    route_accepted(c, INFRA, "gateway-route", gw).await?;
    let s = attached_sets(c, gw, 2).await?;
    listener_state(&s, "gateway-listener", false)?;
    listener_state(&s, "domain-name-conflict-listener", false)?;
    let set1 = set_status(c, INFRA, "listenerset-with-domain-name-conflict").await?;
    let set2 = set_status(c, INFRA, "listenerset-with-protocol-conflict").await?;
    for set in [&set1, &set2] {
        assert_condition(&set["conditions"], "Accepted", "True", "ListenersNotValid");
        let p = condition(&set["conditions"], "Programmed")
            .cloned()
            .unwrap_or_default();
        anyhow::ensure!(p["status"] == "True", "Programmed: {set}");
    }
    listener_state(&set1, "listenerset-1-listener", false)?;
    listener_state(&set1, "protocol-conflict-listener", false)?;
    listener_state(&set1, "domain-name-conflict-listener", true)?;
    listener_state(&set2, "listenerset-2-listener", false)?;
    listener_state(&set2, "domain-name-conflict-listener", true)?;
    let l = listener_of(&set2, "protocol-conflict-listener")?;
    for t in ["Accepted", "Programmed"] {
        assert_condition(&l["conditions"], t, "False", "ProtocolConflict");
    }
    assert_condition(&l["conditions"], "Conflicted", "True", "ProtocolConflict");
    let a = addr.as_str();
    let (v1, v2, v3) = (
        Ok("infra-backend-v1"),
        Ok("infra-backend-v2"),
        Ok("infra-backend-v3"),
    );
    expect_at((a, c.port), "gateway-listener.com", "/gateway-route", v1).await?;
    expect_at(
        (a, ls1),
        "listenerset-1-listener.com",
        "/listenerset-1-route",
        v2,
    )
    .await?;
    expect_at(
        (a, ls2),
        "listenerset-2-listener.com",
        "/listenerset-2-route",
        v3,
    )
    .await?;
    let conflict = "domain-name-conflict-listener.com";
    expect_at((a, domain), conflict, "/gateway-route", v1).await?;
    expect_at((a, domain), conflict, "/listenerset-1-route", Err(404)).await?;
    expect_at((a, domain), conflict, "/listenerset-2-route", Err(404)).await?;
    let conflict = "protocol-conflict-listener.com";
    expect_at((a, protocol), conflict, "/listenerset-1-route", v2).await?;
    expect_at((a, protocol), conflict, "/listenerset-2-route", Err(404)).await?;
    c.unload(file, gw, &routes).await
}

/// ListenerSetProtocolAndRouteKindConflicts and ListenerSetMixedProtocolConflict: a set's
/// TLS listener allowing only HTTPRoute is `ResolvedRefs=False InvalidRouteKinds`; its TLS
/// listener on a port of its own passes `abc.example.com` through to the TLS backend; its
/// TLS listener on the Gateway's HTTPS port is `ProtocolConflict` (ports merge across the
/// Gateway and its sets with one protocol) and its backend is never reached there, while
/// the Gateway's HTTPS listener stays accepted and serves its route. The set stays accepted
/// and programmed; the Gateway's HTTP listener serves its control route.
pub(super) async fn listenerset_protocol_and_route_kind_conflicts(
    c: &mut Conformance,
) -> anyhow::Result<()> {
    let file = "listenerset-protocol-and-route-kind-conflicts.yaml";
    let gw = "gateway-listenerset-conflicts";
    let set = "listenerset-test-allowed-routes-supported-kinds";
    let routes = [
        "listenerset-mixed-protocol-control",
        "listenerset-mixed-protocol-https",
    ];
    let (tls_only, control) = (free_port(), free_port());
    let text = c
        .manifest(file)?
        .replace("{P_TLS_ONLY}", &tls_only.to_string())
        .replace("{P_CONTROL}", &control.to_string());
    c.config.write(file, &text)?;
    let addr = c.gateway(gw).await?;
    for route in routes {
        c.wait_envoy(gw, &format!("\"{INFRA}/{route}/"), true)
            .await?;
    }
    c.wait_envoy(gw, "\"abc.example.com\"", true).await?;
    let g = attached_sets(c, gw, 1).await?;
    assert_condition(&g["conditions"], "Accepted", "True", "Accepted");
    ready(&g, "https-conflict")?;
    let https = listener_of(&g, "https-conflict")?;
    assert_condition(&https["conditions"], "Conflicted", "False", "NoConflicts");
    let s = set_status(c, INFRA, set).await?;
    for t in ["Accepted", "Programmed"] {
        let cond = condition(&s["conditions"], t).cloned().unwrap_or_default();
        anyhow::ensure!(cond["status"] == "True", "set {t}: {s}");
    }
    let only = listener_of(&s, "listener-set-listener-allowed-routes-tls-only")?;
    assert_condition(
        &only["conditions"],
        "ResolvedRefs",
        "False",
        "InvalidRouteKinds",
    );
    ready(&s, "tls-control")?;
    let conflicted = listener_of(&s, "tls-conflict")?;
    for t in ["Accepted", "Programmed"] {
        assert_condition(&conflicted["conditions"], t, "False", "ProtocolConflict");
    }
    assert_condition(
        &conflicted["conditions"],
        "Conflicted",
        "True",
        "ProtocolConflict",
    );
    let key = format!("TLSRoute {INFRA}/listenerset-supported-kinds-control");
    let p = super::tls::route_parent(c, &key, set, "ResolvedRefs").await?;
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
    route_accepted(c, INFRA, "listenerset-mixed-protocol-control", gw).await?;
    route_accepted(c, INFRA, "listenerset-mixed-protocol-https", gw).await?;
    c.expect_backend(
        &addr,
        get("control.example.com", "/control"),
        "infra-backend-v1",
    )
    .await?;
    // The control listener passes the name through to the TLS backend.
    let to = HttpsTarget {
        addr: &addr,
        port: control,
        sni: "abc.example.com",
        host: "abc.example.com",
    };
    let what = format!("abc.example.com through port {control}");
    let r = eventually(&what, DEADLINE, || async {
        match https_get_at(&c.ca, &to, "/").await {
            Ok(r) if r.header("x-upstream") == Some("tls-backend") => Ok(r),
            Ok(r) => Err(format!("{} {:?}", r.status, r.headers)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;
    assert_eq!(
        r.peer_certificate, c.backend_cert.cert_der,
        "passed through"
    );
    // The Gateway's HTTPS listener keeps its port and serves its route.
    let r = c
        .expect_https(
            &addr,
            ("https.example.org", "https.example.org"),
            "/https",
            |r| match r.header("x-upstream") {
                Some("infra-backend-v1") => Ok(()),
                _ => Err("want infra-backend-v1".to_string()),
            },
        )
        .await?;
    assert_eq!(r.peer_certificate, c.gateway_cert.cert_der, "terminated");
    // The conflicted listener's name is not passed through there: whatever answers is the
    // Gateway's HTTPS listener, never the TLS backend (upstream expects the handshake,
    // trusting the backend's CA only, to fail; here one CA signs both certificates).
    let to = HttpsTarget {
        addr: &addr,
        port: c.tls_port,
        sni: "abc.example.com",
        host: "abc.example.com",
    };
    if let Ok(r) = https_get_at(&c.ca, &to, "/").await {
        anyhow::ensure!(
            r.peer_certificate != c.backend_cert.cert_der
                && r.header("x-upstream") != Some("tls-backend"),
            "the conflicted listener reached its backend: {} {:?}",
            r.status,
            r.headers
        );
    }
    c.unload(file, gw, &routes).await
}

/// ListenerSetGatewayParentSectionNameNotFound: a Gateway parentRef names the Gateway's own
/// listeners only, so a sectionName that only the attached set has is `NoMatchingParent`;
/// the route naming the set is accepted and served (and the other route's path is not).
pub(super) async fn listenerset_gateway_parent_section_name_not_found(
    c: &mut Conformance,
) -> anyhow::Result<()> {
    let file = "listenerset-gateway-parent-section-name-not-found.yaml";
    let gw = "gateway-ls-section-name-test";
    let set = "ls-section-name-test";
    let route = "route-via-listenerset";
    let addr = c.load(file, gw, &[route]).await?;
    let g = attached_sets(c, gw, 1).await?;
    assert_condition(&g["conditions"], "Accepted", "True", "Accepted");
    accepted(c, INFRA, set, &["ls-only-listener"]).await?;
    route_accepted(c, INFRA, route, set).await?;
    route_condition(
        c,
        "route-bad-gw-section-name",
        gw,
        "Accepted",
        "False",
        "NoMatchingParent",
    )
    .await?;
    c.expect_backend(
        &addr,
        get("ls-section-name-test.com", "/ls-route"),
        "infra-backend-v1",
    )
    .await?;
    c.expect_status(&addr, get("ls-section-name-test.com", "/bad-route"), 404)
        .await?;
    c.unload(file, gw, &[route]).await
}

/// ListenerSetHTTPRouting: routes attached to the Gateway and both sets, to the Gateway (all
/// its listeners or one by sectionName) or to one set (all its listeners or one): every route
/// accepted by each parent it names, each set listener's `supportedKinds` (HTTPRoute,
/// GRPCRoute), `attachedRoutes` and accepted conditions, and each path answered by its
/// backend on the hostnames of the listeners it attached to and 404 on the others.
pub(super) async fn listenerset_http_routing(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "listenerset-http-routing.yaml";
    let gw = "gateway-with-listener-sets-http-routing";
    let (ls1, ls2) = ("listener-set-http-routing-1", "listener-set-http-routing-2");
    let routes = [
        "attaches-to-all-listeners",
        "gateway-route",
        "gateway-section-route",
        "listener-set-http-routing-1-route",
        "listener-set-http-routing-1-section-route",
        "listener-set-http-routing-2-route",
    ];
    let addr = c.load(file, gw, &routes).await?;
    attached_sets(c, gw, 2).await?;
    for route in &routes[..3] {
        route_accepted(c, INFRA, route, gw).await?;
    }
    for (set, set_routes, counts) in [
        (ls1, [routes[0], routes[3], routes[4]].as_slice(), [3, 2]),
        (ls2, [routes[0], routes[5]].as_slice(), [2, 2]),
    ] {
        for route in set_routes {
            route_accepted(c, INFRA, route, set).await?;
        }
        let s = accepted(
            c,
            INFRA,
            set,
            &[&format!("{set}-listener-1"), &format!("{set}-listener-2")],
        )
        .await?;
        for (i, n) in counts.into_iter().enumerate() {
            let l = listener_of(&s, &format!("{set}-listener-{}", i + 1))?;
            assert_eq!(l["attachedRoutes"], n, "{l}");
            let kinds: Vec<&str> = l["supportedKinds"]
                .as_array()
                .map(|ks| ks.iter().filter_map(|k| k["kind"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(kinds, ["HTTPRoute", "GRPCRoute"], "{l}");
            assert_condition(&l["conditions"], "Conflicted", "False", "NoConflicts");
        }
    }
    let hosts = [
        "gateway-listener-1.com",
        "gateway-listener-2.com",
        "listener-set-http-routing-1-listener-1.com",
        "listener-set-http-routing-1-listener-2.com",
        "listener-set-http-routing-2-listener-1.com",
        "listener-set-http-routing-2-listener-2.com",
    ];
    // Path, its backend, and the hosts (indices into `hosts`) that serve it.
    let table: [(&str, &str, &[usize]); 6] = [
        ("/route", "infra-backend-v1", &[0, 1, 2, 3, 4, 5]),
        ("/gateway-route", "infra-backend-v2", &[0, 1]),
        ("/gateway-section-route", "infra-backend-v3", &[0]),
        (
            "/listener-set-http-routing-1-route",
            "infra-backend-v2",
            &[2, 3],
        ),
        (
            "/listener-set-http-routing-1-section-route",
            "infra-backend-v3",
            &[2],
        ),
        (
            "/listener-set-http-routing-2-route",
            "infra-backend-v2",
            &[4, 5],
        ),
    ];
    for (path, backend, served) in table {
        for (i, host) in hosts.iter().enumerate() {
            if served.contains(&i) {
                c.expect_backend(&addr, get(host, path), backend).await?;
            } else {
                c.expect_status(&addr, get(host, path), 404).await?;
            }
        }
    }
    c.unload(file, gw, &routes).await
}
