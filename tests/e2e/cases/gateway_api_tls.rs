//! HTTPS and TLS of the Gateway API conformance runner: HTTPS listeners (certificateRefs,
//! ReferenceGrants for Secrets, SNI), TLS passthrough with TLSRoute, and Portolan's check
//! that private keys stay out of `/debug` and the log. Requests go through a client that
//! trusts only the run's CA and sends the SNI and Host each case asks for.

use super::*;
use portolan_e2e::tls::{HttpsReply, HttpsTarget, https_get_at};

/// A listener condition check for [`Conformance::listener_where`].
fn has(type_: &'static str, status: &'static str) -> impl Fn(&Value) -> bool {
    move |l: &Value| condition(&l["conditions"], type_).is_some_and(|c| c["status"] == status)
}

fn backend_v1(r: &HttpsReply) -> Result<(), String> {
    match (r.status, r.header("x-upstream")) {
        (200, Some("infra-backend-v1")) => Ok(()),
        _ => Err("want 200 from infra-backend-v1".to_string()),
    }
}

fn not_found(r: &HttpsReply) -> Result<(), String> {
    match r.status {
        404 => Ok(()),
        _ => Err("want 404".to_string()),
    }
}

/// HTTPRouteHTTPSListener: routes on HTTPS listeners, the listener chosen by SNI.
pub(super) async fn https_listener(c: &mut Conformance) -> anyhow::Result<()> {
    let gw = "same-namespace-with-https-listener";
    let routes = ["httproute-https-test", "httproute-https-test-no-hostname"];
    let file = "https-listener.yaml";
    let addr = c.load(file, gw, &routes).await?;
    for r in routes {
        route_accepted(c, INFRA, r, gw).await?;
    }
    let r = c
        .expect_https(&addr, ("example.org", "example.org"), "/", backend_v1)
        .await?;
    assert_eq!(
        r.peer_certificate, c.gateway_cert.cert_der,
        "the listener presents its certificateRefs Secret"
    );
    // The SNI picks the listener without hostname: second-example.org has no route there.
    let sni_other = ("unknown-example.org", "second-example.org");
    c.expect_https(&addr, sni_other, "/", not_found).await?;
    c.expect_https(
        &addr,
        ("second-example.org", "second-example.org"),
        "/",
        backend_v1,
    )
    .await?;
    let unknown = ("unknown-example.org", "unknown-example.org");
    c.expect_https(&addr, unknown, "/", not_found).await?;
    let gw_status = c.status(&format!("Gateway {INFRA}/{gw}")).await?;
    let attached: Vec<i64> = gw_status["listeners"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l["attachedRoutes"].as_i64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(attached, [1, 1], "{gw_status}");
    c.unload(file, gw, &routes).await
}

/// GatewayInvalidTLSConfiguration: a missing Secret, a ref of another group or kind, and a
/// malformed Secret each give the HTTPS listener `ResolvedRefs=False InvalidCertificateRef`.
pub(super) async fn invalid_tls_configuration(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "invalid-tls-configuration.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    for gw in [
        "gateway-certificate-nonexistent-secret",
        "gateway-certificate-unsupported-group",
        "gateway-certificate-unsupported-kind",
        "gateway-certificate-malformed-secret",
    ] {
        let l = c
            .listener_where(gw, "https", has("ResolvedRefs", "False"))
            .await?;
        assert_condition(
            &l["conditions"],
            "ResolvedRefs",
            "False",
            "InvalidCertificateRef",
        );
        assert_condition(&l["conditions"], "Programmed", "False", "Invalid");
        assert_eq!(l["attachedRoutes"], 0, "{l}");
        assert_eq!(l["supportedKinds"][0]["kind"], "HTTPRoute", "{l}");
        route_accepted(c, INFRA, &format!("{gw}-control"), gw).await?;
    }
    // The malformed Secret itself is refused with its field path.
    let errors = c.portolan.get_text("/debug/config-errors").await?;
    assert!(
        errors.contains("malformed-certificate") && errors.contains("tls.crt"),
        "{errors}"
    );
    c.config.remove(file)?;
    Ok(())
}

/// A ReferenceGrant lets a Gateway use a Secret of another namespace: the listener is
/// programmed, and its Envoy presents that Secret's certificate.
async fn secret_grant_programmed(c: &mut Conformance, file: &str) -> anyhow::Result<()> {
    let gw = "gateway-secret-reference-grant";
    c.config.write(file, &c.manifest(file)?)?;
    let l = c
        .listener_where(gw, "https", has("ResolvedRefs", "True"))
        .await?;
    assert_condition(&l["conditions"], "Programmed", "True", "Programmed");
    assert_eq!(l["supportedKinds"][0]["kind"], "HTTPRoute", "{l}");
    let addr = c.gateway(gw).await?;
    let r = c
        .expect_https(&addr, ("example.org", "example.org"), "/", not_found)
        .await?;
    assert_eq!(r.peer_certificate, c.gateway_cert.cert_der);
    c.config.remove(file)?;
    c.gone(&format!("Gateway {INFRA}/{gw}")).await
}

/// GatewaySecretReferenceGrantSpecific.
pub(super) async fn secret_grant_specific(c: &mut Conformance) -> anyhow::Result<()> {
    secret_grant_programmed(c, "secret-reference-grant-specific.yaml").await
}

/// GatewaySecretReferenceGrantAllInNamespace.
pub(super) async fn secret_grant_all(c: &mut Conformance) -> anyhow::Result<()> {
    secret_grant_programmed(c, "secret-reference-grant-all-in-namespace.yaml").await
}

/// Every listener of `gw` named in `listeners` has `ResolvedRefs=False RefNotPermitted`.
async fn refs_not_permitted(
    c: &mut Conformance,
    file: &str,
    gw: &str,
    listeners: &[&str],
) -> anyhow::Result<()> {
    c.config.write(file, &c.manifest(file)?)?;
    for name in listeners {
        let l = c
            .listener_where(gw, name, has("ResolvedRefs", "False"))
            .await?;
        assert_condition(&l["conditions"], "ResolvedRefs", "False", "RefNotPermitted");
        assert_condition(&l["conditions"], "Programmed", "False", "Invalid");
        assert_eq!(l["attachedRoutes"], 0, "{l}");
        assert_eq!(l["supportedKinds"][0]["kind"], "HTTPRoute", "{l}");
    }
    c.config.remove(file)?;
    Ok(())
}

/// GatewaySecretMissingReferenceGrant: no grant, whether or not the Secret exists.
pub(super) async fn secret_grant_missing(c: &mut Conformance) -> anyhow::Result<()> {
    let gw = "gateway-secret-missing-reference-grant";
    let listeners = ["https", "https-nonexistent-secret"];
    refs_not_permitted(c, "secret-missing-reference-grant.yaml", gw, &listeners).await
}

/// GatewaySecretInvalidReferenceGrant: grants that each miss in one field permit nothing.
pub(super) async fn secret_grant_invalid(c: &mut Conformance) -> anyhow::Result<()> {
    let gw = "gateway-secret-invalid-reference-grant";
    refs_not_permitted(c, "secret-invalid-reference-grant.yaml", gw, &["https"]).await
}

/// TLSRouteSimpleSameNamespace: TLS passthrough by SNI to a backend that terminates TLS
/// itself with its own certificate.
pub(super) async fn tls_route_simple_same_namespace(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, gw, route) = (
        "tlsroute-simple-same-namespace.yaml",
        "gateway-tlsroute",
        "gateway-conformance-infra-test",
    );
    c.config.write(file, &c.manifest(file)?)?;
    let addr = c.gateway(gw).await?;
    c.wait_envoy(gw, "\"abc.example.com\"", true).await?;
    let s = c.status(&format!("TLSRoute {INFRA}/{route}")).await?;
    let p = parent(&s, gw);
    assert_eq!(p["controllerName"], "portolan.dev/gateway-controller");
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
    let l = c
        .listener_where(gw, "https", has("Programmed", "True"))
        .await?;
    assert_eq!(l["attachedRoutes"], 1, "{l}");
    assert_eq!(
        l["supportedKinds"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "TLSRoute"}]),
        "{l}"
    );
    let sni = ("abc.example.com", "abc.example.com");
    let r = c
        .expect_https(&addr, sni, "/", |r| match r.header("x-upstream") {
            Some("tls-backend") => Ok(()),
            _ => Err("want tls-backend".to_string()),
        })
        .await?;
    assert_eq!(
        r.peer_certificate, c.backend_cert.cert_der,
        "the backend's own certificate: passed through, not terminated"
    );
    // No TLSRoute for this name under the listener's wildcard: no chain, no handshake.
    let other = HttpsTarget {
        addr: &addr,
        port: c.tls_port,
        sni: "xyz.example.com",
        host: "xyz.example.com",
    };
    let refused = https_get_at(&c.ca, &other, "/").await;
    assert!(refused.is_err(), "{refused:?}");
    c.config.remove(file)?;
    c.wait_envoy(gw, "\"abc.example.com\"", false).await
}

/// Private keys of TLS Secrets appear nowhere Portolan shows: not in `/debug` (the xDS
/// resources of an HTTPS Gateway are redacted), not in its log.
pub(super) async fn keys_stay_private(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "https-listener.yaml";
    let gw = "same-namespace-with-https-listener";
    c.load(file, gw, &["httproute-https-test"]).await?;
    let group = format!("gateway:{INFRA}/{gw}");
    let dump = c
        .portolan
        .get_text(&format!("/debug/config_dump?group={group}"))
        .await?;
    assert!(
        dump.contains("BEGIN CERTIFICATE"),
        "the listener's chain is there"
    );
    assert!(dump.contains("[redacted]"), "its key is redacted");
    // The key reaches the gateway's Envoy as an SDS secret of its group; its listener only
    // names it.
    let secret = format!("gateway-cert|{INFRA}/tls-validity-checks-certificate");
    let (envoy, _) = c
        .envoys
        .get(gw)
        .ok_or_else(|| anyhow::anyhow!("no Envoy for {gw}"))?;
    let secrets = envoy
        .admin("/config_dump?resource=dynamic_active_secrets")
        .await?;
    assert!(
        secrets.contains(&secret),
        "no SDS secret {secret}: {secrets}"
    );
    let listeners = envoy
        .admin("/config_dump?resource=dynamic_listeners")
        .await?;
    assert!(listeners.contains(&secret), "the listener names {secret}");
    assert!(
        !listeners.contains("private_key"),
        "a key inline in a listener"
    );
    // The key's base64 body, line by line: none of it may show anywhere.
    let key_lines: Vec<&str> = c
        .gateway_cert
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .collect();
    assert!(!key_lines.is_empty());
    let shows_key = |text: &str| key_lines.iter().any(|l| text.contains(l));
    for path in [
        "/debug/status",
        "/debug/config-errors",
        "/debug/sources",
        "/debug/proxies",
    ] {
        let text = c.portolan.get_text(path).await?;
        assert!(!shows_key(&text), "{path} shows the key");
    }
    assert!(!shows_key(&dump), "the config dump shows the key");
    assert!(!shows_key(&c.portolan.log_text()), "the log shows the key");
    c.unload(file, gw, &["httproute-https-test"]).await
}

/// A route's `parents[]` entry for `gw` once it has condition `type_`.
pub(super) async fn route_parent(
    c: &Conformance,
    key: &str,
    gw: &str,
    type_: &str,
) -> anyhow::Result<Value> {
    let s = c
        .status_where(key, |s| {
            s["parents"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["parentRef"]["name"] == gw))
                .and_then(|p| condition(&p["conditions"], type_))
                .is_some()
        })
        .await?;
    Ok(parent(&s, gw).clone())
}

/// TLSRouteInvalidReferenceGrant: accepted, but its backend in another namespace is not
/// permitted by any of the grants.
pub(super) async fn tls_route_invalid_reference_grant(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "tlsroute-invalid-reference-grant.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    let key = format!("TLSRoute {INFRA}/tlsroute-invalid-reference-grant");
    let p = route_parent(c, &key, "gateway-tlsroute-referencegrant", "ResolvedRefs").await?;
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&p["conditions"], "ResolvedRefs", "False", "RefNotPermitted");
    c.config.remove(file)?;
    Ok(())
}

/// TLSRouteInvalidNoMatchingListener: no listener serves the TLSRoute (HTTP, HTTP for
/// HTTPRoute only, HTTPS), or its sectionName names none; no parent accepts it and no
/// Gateway counts it.
pub(super) async fn tls_route_no_matching_listener(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "tlsroute-invalid-no-matching-listener.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    for (route, gw, reason) in [
        (
            "tlsroute-no-matching-listener",
            "gateway-http-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-not-allowed-kind",
            "gateway-tls-httproute-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-wrong-protocol",
            "gateway-https-only",
            "NotAllowedByListeners",
        ),
        (
            "tlsroute-no-matching-section-name",
            "gateway-tlsroute-tls-passthrough-only",
            "NoMatchingParent",
        ),
    ] {
        let key = format!("TLSRoute {INFRA}/{route}");
        let p = route_parent(c, &key, gw, "Accepted").await?;
        assert_condition(&p["conditions"], "Accepted", "False", reason);
        let s = c.status(&key).await?;
        let accepted = s["parents"].as_array().into_iter().flatten().any(|p| {
            condition(&p["conditions"], "Accepted").is_some_and(|c| c["status"] == "True")
        });
        assert!(!accepted, "{route}: no parent may accept it: {s}");
        let g = c.status(&format!("Gateway {INFRA}/{gw}")).await?;
        for l in g["listeners"].as_array().into_iter().flatten() {
            assert_eq!(l["attachedRoutes"], 0, "{gw}: {l}");
        }
    }
    c.config.remove(file)?;
    Ok(())
}

/// GatewayHTTPSAndTLSPassthroughSamePort: on one port, the SNI abc.example.com is passed
/// through to the TLS backend, any other name under *.example.com is terminated.
pub(super) async fn https_and_passthrough(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "https-and-tls-passthrough-same-port.yaml";
    let gw = "gateway-https-tls-passthrough-same-port";
    let addr = c
        .load(file, gw, &["gateway-conformance-https-terminate"])
        .await?;
    c.wait_envoy(gw, "\"abc.example.com\"", true).await?;
    for (listener, kind) in [
        ("https-terminate", "HTTPRoute"),
        ("tls-passthrough", "TLSRoute"),
    ] {
        let l = c
            .listener_where(gw, listener, has("Accepted", "True"))
            .await?;
        assert_condition(&l["conditions"], "Accepted", "True", "Accepted");
        assert_eq!(l["attachedRoutes"], 1, "{l}");
        assert_eq!(l["supportedKinds"][0]["kind"], kind, "{l}");
    }
    let r = c
        .expect_https(
            &addr,
            ("other.example.com", "other.example.com"),
            "/",
            backend_v1,
        )
        .await?;
    assert_eq!(r.peer_certificate, c.gateway_cert.cert_der, "terminated");
    let r = c
        .expect_https(
            &addr,
            ("abc.example.com", "abc.example.com"),
            "/",
            |r| match r.header("x-upstream") {
                Some("tls-backend") => Ok(()),
                _ => Err("want tls-backend".to_string()),
            },
        )
        .await?;
    assert_eq!(
        r.peer_certificate, c.backend_cert.cert_der,
        "passed through"
    );
    c.unload(file, gw, &["gateway-conformance-https-terminate"])
        .await
}

/// HTTPRouteHostnameIntersection with HTTPS listeners (the same routes and hostnames): the
/// SNI picks the listener, so a name no listener has gets no handshake, and one a listener
/// has but no route there answers 404.
pub(super) async fn hostname_intersection_https(c: &mut Conformance) -> anyhow::Result<()> {
    let gw = "httproute-hostname-intersection-https";
    let accepted = [
        "specific-host-matches-listener-specific-host",
        "specific-host-matches-listener-wildcard-host",
        "wildcard-host-matches-listener-specific-host",
        "wildcard-host-matches-listener-wildcard-host",
    ];
    let file = "hostname-intersection-https.yaml";
    let https = c
        .manifest("hostname-intersection.yaml")?
        .replace("httproute-hostname-intersection", gw)
        .replace(
            &format!("port: {}, protocol: HTTP,", c.port),
            &format!(
                "port: {}, protocol: HTTPS, tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}},",
                c.tls_port
            ),
        );
    c.config.write(file, &https)?;
    let addr = c.gateway(gw).await?;
    for r in accepted {
        c.wait_envoy(gw, &format!("\"{INFRA}/{r}/"), true).await?;
        route_accepted(c, INFRA, r, gw).await?;
    }
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    for (sni, host, path, want) in [
        ("very.specific.com", "very.specific.com", "/s1", v1),
        ("very.specific.com", "very.specific.com:1234", "/s1", v1),
        ("foo.wildcard.io", "foo.wildcard.io", "/s2", v2),
        ("bar.wildcard.io", "bar.wildcard.io", "/s2", v2),
        ("foo.bar.wildcard.io", "foo.bar.wildcard.io", "/s2", v2),
        ("very.specific.com", "very.specific.com", "/s3", v3),
        (
            "foo.anotherwildcard.io",
            "foo.anotherwildcard.io",
            "/s4",
            v1,
        ),
        (
            "bar.anotherwildcard.io",
            "bar.anotherwildcard.io",
            "/s4",
            v1,
        ),
        (
            "foo.bar.anotherwildcard.io",
            "foo.bar.anotherwildcard.io",
            "/s4",
            v1,
        ),
    ] {
        c.expect_https(&addr, (sni, host), path, |r| {
            match (r.status, r.header("x-upstream")) {
                (200, Some(u)) if u == want => Ok(()),
                _ => Err(format!("want {want}")),
            }
        })
        .await?;
    }
    for (host, path) in [
        ("foo.wildcard.io", "/s1"),
        ("very.specific.com", "/non-matching-prefix"),
        ("very.specific.com", "/s2"),
        ("foo.wildcard.io", "/s3"),
        ("foo.wildcard.io", "/s4"),
    ] {
        c.expect_https(&addr, (host, host), path, not_found).await?;
    }
    for host in [
        "non.matching.com",
        "foo.nonmatchingwildcard.io",
        "wildcard.io",
        "foo.specific.com",
        "anotherwildcard.io",
        "specific.but.wrong.com",
    ] {
        let to = HttpsTarget {
            addr: &addr,
            port: c.tls_port,
            sni: host,
            host,
        };
        let refused = https_get_at(&c.ca, &to, "/s1").await;
        assert!(refused.is_err(), "{host}: {refused:?}");
    }
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
    c.config.remove(file)?;
    for r in accepted {
        c.wait_envoy(gw, &format!("\"{INFRA}/{r}/"), false).await?;
    }
    Ok(())
}

/// TLSRouteInvalidBackendRefNonexistent and TLSRouteInvalidBackendRefUnknownKind: the
/// Gateway and the route are accepted; ResolvedRefs is False with the reason, and the name
/// reaches no backend.
pub(super) async fn tls_route_invalid_backend_refs(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "tlsroute-invalid-backend-refs.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    for (route, gw, reason) in [
        (
            "invalid-backend-ref-nonexistent",
            "gateway-tlsroute-invalid-backend-ref-nonexistent",
            "BackendNotFound",
        ),
        (
            "invalid-backend-ref-unknown-kind",
            "gateway-tlsroute-invalid-backend-ref-unknown-kind",
            "InvalidKind",
        ),
    ] {
        let g = c.status(&format!("Gateway {INFRA}/{gw}")).await?;
        assert_condition(&g["conditions"], "Accepted", "True", "Accepted");
        let key = format!("TLSRoute {INFRA}/{route}");
        let p = route_parent(c, &key, gw, "ResolvedRefs").await?;
        assert_eq!(p["controllerName"], "portolan.dev/gateway-controller");
        assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
        assert_condition(&p["conditions"], "ResolvedRefs", "False", reason);
        let l = c
            .listener_where(gw, "tls", has("Programmed", "True"))
            .await?;
        assert_eq!(l["attachedRoutes"], 1, "{l}");
        let addr = c.gateway(gw).await?;
        c.wait_envoy(gw, "\"example.com\"", true).await?;
        let target = HttpsTarget {
            addr: &addr,
            port: c.tls_port,
            sni: "example.com",
            host: "example.com",
        };
        let r = https_get_at(&c.ca, &target, "/").await;
        assert!(r.is_err(), "{route}: no backend may answer: {r:?}");
    }
    c.config.remove(file)?;
    Ok(())
}

/// TLSRouteInvalidNoMatchingListenerHostname: hostnames that intersect neither an exact nor
/// a wildcard listener hostname: `Accepted=False NoMatchingListenerHostname`, no accepted
/// parent, no attached route.
pub(super) async fn tls_route_no_matching_listener_hostname(
    c: &mut Conformance,
) -> anyhow::Result<()> {
    let file = "tlsroute-invalid-no-matching-listener-hostname.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    for (route, gw) in [
        ("tlsroute-hostname-mismatch-1", "gateway-tls-exact-hostname"),
        (
            "tlsroute-hostname-mismatch-2",
            "gateway-tls-wildcard-hostname",
        ),
    ] {
        let key = format!("TLSRoute {INFRA}/{route}");
        let p = route_parent(c, &key, gw, "Accepted").await?;
        assert_condition(
            &p["conditions"],
            "Accepted",
            "False",
            "NoMatchingListenerHostname",
        );
        let s = c.status(&key).await?;
        let accepted = s["parents"].as_array().into_iter().flatten().any(|p| {
            condition(&p["conditions"], "Accepted").is_some_and(|c| c["status"] == "True")
        });
        assert!(!accepted, "{route}: no parent may accept it: {s}");
        let g = c.status(&format!("Gateway {INFRA}/{gw}")).await?;
        for l in g["listeners"].as_array().into_iter().flatten() {
            assert_eq!(l["attachedRoutes"], 0, "{gw}: {l}");
        }
    }
    c.config.remove(file)?;
    Ok(())
}

/// The backend a passthrough connection with SNI `sni` reaches, checked by the certificate
/// (the run's CA, for `sni`) and the name the backend answers with.
async fn passes_through_to(
    c: &Conformance,
    addr: &str,
    sni: &str,
    backend: &'static str,
) -> anyhow::Result<()> {
    c.expect_https(addr, (sni, sni), "/", move |r| {
        match r.header("x-upstream") {
            Some(b) if b == backend => Ok(()),
            _ => Err(format!("want {backend}")),
        }
    })
    .await
    .map(|_| ())
}

/// One Gateway of TLSRouteHostnameIntersection: its routes, the names that reach a backend
/// (SNI, backend) and a name that gets no handshake.
type IntersectionCase = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// TLSRouteHostnameIntersection: per listener hostname (exact, a more specific wildcard, a
/// less specific wildcard, none), each route is accepted with its refs resolved, a name in
/// the intersection of listener and route hostnames reaches that route's backend, and a name
/// outside it gets no handshake.
pub(super) async fn tls_route_hostname_intersection(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "tlsroute-hostname-intersection.yaml";
    c.config.write(file, &c.manifest(file)?)?;
    let cases: [IntersectionCase; 4] = [
        (
            "gw-tlsroute-exact-hostname-x-1",
            &["tlsroute-more-specific-wc-hostname-x-1"],
            &[("abc.example.com", "tls-backend")],
            "non.matching.com",
        ),
        (
            "gw-tlsroute-more-specific-wc-hostname-x-2",
            &[
                "tlsroute-exact-hostname-x-2",
                "tlsroute-less-specific-wc-hostname-x-2",
            ],
            &[
                ("abc.example.com", "tls-backend"),
                ("other.example.com", "tls-backend-2"),
            ],
            "non.matching.com",
        ),
        (
            "gw-tlsroute-less-specific-wc-hostname-x-3",
            &[
                "tlsroute-exact-hostname-x-3",
                "tlsroute-more-specific-wc-hostname-x-3",
            ],
            &[
                ("abc.example.com", "tls-backend"),
                ("other.example.com", "tls-backend-2"),
            ],
            "non.matching.com",
        ),
        (
            "gw-tlsroute-empty-hostname-x-4",
            &[
                "tlsroute-exact-hostname-x-4",
                "tlsroute-less-specific-wc-hostname-x-4",
            ],
            &[
                ("abc.example.com", "tls-backend"),
                ("other.example.com", "tls-backend-2"),
            ],
            "non.matching.org",
        ),
    ];
    for (gw, routes, reach, refused) in cases {
        for route in routes {
            let key = format!("TLSRoute {INFRA}/{route}");
            let p = route_parent(c, &key, gw, "Accepted").await?;
            assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
            assert_condition(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
        }
        let addr = c.gateway(gw).await?;
        for (sni, backend) in reach {
            passes_through_to(c, &addr, sni, backend).await?;
        }
        let other = HttpsTarget {
            addr: &addr,
            port: c.tls_port,
            sni: refused,
            host: refused,
        };
        let r = https_get_at(&c.ca, &other, "/").await;
        assert!(r.is_err(), "{gw}: {refused} must get no handshake: {r:?}");
    }
    c.config.remove(file)?;
    Ok(())
}

/// TLSRouteListenerTerminateNotSupported: without TLSRouteModeTerminate claimed, a TLS
/// listener in mode Terminate is `Accepted=False UnsupportedValue`, with no route attached.
pub(super) async fn tls_route_terminate_not_supported(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "tlsroute-listener-terminate-not-supported.yaml";
    let gw = "gateway-tlsroute-terminate-unsupported";
    c.config.write(file, &c.manifest(file)?)?;
    let l = c
        .listener_where(gw, "tls-terminate", has("Accepted", "False"))
        .await?;
    assert_condition(&l["conditions"], "Accepted", "False", "UnsupportedValue");
    assert_eq!(l["attachedRoutes"], 0, "{l}");
    assert_eq!(l["supportedKinds"], serde_json::json!([]), "{l}");
    let key = format!("TLSRoute {INFRA}/tlsroute-terminate-unsupported");
    let p = route_parent(c, &key, gw, "Accepted").await?;
    assert_condition(
        &p["conditions"],
        "Accepted",
        "False",
        "NotAllowedByListeners",
    );
    c.config.remove(file)?;
    c.gone(&format!("Gateway {INFRA}/{gw}")).await
}
