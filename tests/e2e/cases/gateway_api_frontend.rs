//! Frontend client certificate validation scenarios of the conformance runner (Gateway
//! `spec.tls.frontend`, features `GatewayFrontendClientCertificateValidation` and
//! `GatewayFrontendClientCertificateValidationInsecureFallback` of v1.6.1): stock Envoy asks
//! HTTPS clients for a certificate and verifies it against the CA a ConfigMap holds. Two CAs
//! made by the run sign one client certificate each: the default validation trusts the first,
//! the per-port one the second. A refused client gets no HTTP exchange at all (the TLS
//! handshake fails), which is what upstream's `MakeTLSRequestAndExpectFailureResponse` checks.

use super::*;
use portolan_e2e::tls::https_get_as;

/// The client certificates of the run: one per CA.
struct Clients {
    default: ServerCert,
    per_port: ServerCert,
}

/// Makes the two CAs, writes their ConfigMaps and issues a client certificate from each.
fn clients(c: &Conformance) -> anyhow::Result<Clients> {
    let (ca_default, ca_per_port) = (TestCa::new()?, TestCa::new()?);
    c.config.write(
        "frontend-cas.yaml",
        &[
            backend_tls::ca_config_map("client-ca-default", &ca_default.cert_pem()),
            backend_tls::ca_config_map("client-ca-per-port", &ca_per_port.cert_pem()),
        ]
        .join("---\n"),
    )?;
    Ok(Clients {
        default: ca_default.issue_client(&["client.example.org"], &[])?,
        per_port: ca_per_port.issue_client(&["per-port-client.example.org"], &[])?,
    })
}

/// Manifest `file` with `{TLS_PORT_2}` replaced by `port_2`.
fn manifest_with(c: &Conformance, file: &str, port_2: u16) -> anyhow::Result<String> {
    Ok(c.manifest(file)?
        .replace("{TLS_PORT_2}", &port_2.to_string()))
}

/// One `GET /` over TLS to `addr:port` (SNI and Host `sni`), presenting `client`.
async fn once(
    c: &Conformance,
    (addr, port): (&str, u16),
    sni: &str,
    client: Option<&ServerCert>,
) -> anyhow::Result<HttpsReply> {
    let to = HttpsTarget {
        addr,
        port,
        sni,
        host: sni,
    };
    https_get_as(&c.ca, &to, "/", client).await
}

/// Waits until a request with `client` reaches backend `backend`, then expects 10 more in a
/// row to (MakeTLSRequestAndExpectEventuallyConsistentResponse).
async fn expect_served(
    c: &Conformance,
    at: (&str, u16),
    sni: &str,
    client: Option<&ServerCert>,
    backend: &str,
) -> anyhow::Result<()> {
    let ok = |r: &HttpsReply| r.status == 200 && r.header("x-upstream") == Some(backend);
    eventually(
        &format!("{sni} at {at:?} to {backend}"),
        DEADLINE,
        || async {
            match once(c, at, sni, client).await {
                Ok(r) if ok(&r) => Ok(()),
                Ok(r) => Err(format!("{} {:?}", r.status, r.headers)),
                Err(e) => Err(format!("{e:#}")),
            }
        },
    )
    .await?;
    for _ in 0..10 {
        let r = once(c, at, sni, client).await?;
        anyhow::ensure!(ok(&r), "{sni} at {at:?}: {} {:?}", r.status, r.headers);
    }
    Ok(())
}

/// Expects a request with `client` to fail: no HTTP response comes back.
async fn expect_refused(
    c: &Conformance,
    at: (&str, u16),
    sni: &str,
    client: Option<&ServerCert>,
) -> anyhow::Result<()> {
    for _ in 0..3 {
        if let Ok(r) = once(c, at, sni, client).await {
            anyhow::bail!(
                "{sni} at {at:?} answered {} {:?}: the client should have been refused",
                r.status,
                r.headers
            );
        }
    }
    Ok(())
}

/// The routes of a scenario accepted by `gw` with their refs resolved.
async fn routes_accepted(c: &Conformance, gw: &str, routes: &[&str]) -> anyhow::Result<()> {
    let s = c.status(&format!("Gateway {INFRA}/{gw}")).await?;
    assert_condition(&s["conditions"], "Accepted", "True", "Accepted");
    for route in routes {
        route_accepted(c, INFRA, route, gw).await?;
    }
    Ok(())
}

/// GatewayFrontendClientCertificateValidation: the default validation on one port, the
/// per-port one on the other; each port takes its own CA's client and refuses the other's
/// (and, ours, a client without a certificate).
pub(super) async fn frontend_client_validation(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, gw) = (
        "frontend-client-validation.yaml",
        "client-validation-default",
    );
    let routes = [
        "client-certificate-validation-https-test",
        "client-certificate-validation-https-test-no-hostname",
    ];
    let clients = clients(c)?;
    let port_2 = free_port();
    c.config.write(file, &manifest_with(c, file, port_2)?)?;
    let addr = c.gateway(gw).await?;
    routes_accepted(c, gw, &routes).await?;
    let default = (addr.as_str(), c.tls_port);
    expect_served(
        c,
        default,
        "example.org",
        Some(&clients.default),
        "infra-backend-v1",
    )
    .await?;
    expect_refused(c, default, "example.org", Some(&clients.per_port)).await?;
    expect_refused(c, default, "example.org", None).await?;
    let per_port = (addr.as_str(), port_2);
    expect_served(
        c,
        per_port,
        "second-example.org",
        Some(&clients.per_port),
        "infra-backend-v2",
    )
    .await?;
    expect_refused(c, per_port, "second-example.org", Some(&clients.default)).await?;
    expect_refused(c, per_port, "second-example.org", None).await?;
    c.unload(file, gw, &routes).await
}

/// GatewayFrontendClientCertificateValidationInsecureFallback: the Gateway says
/// `InsecureFrontendValidationMode`, and every client gets through on both ports (its own
/// CA's certificate, the other CA's, none).
pub(super) async fn frontend_insecure_fallback(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, gw) = (
        "frontend-client-validation-insecure-fallback.yaml",
        "client-validation-insecure-fallback",
    );
    let routes = [
        "client-cert-validation-insecure-fallback-test",
        "client-cert-validation-insecure-fallback-test-no-hostname",
    ];
    let clients = clients(c)?;
    let port_2 = free_port();
    c.config.write(file, &manifest_with(c, file, port_2)?)?;
    let addr = c.gateway(gw).await?;
    routes_accepted(c, gw, &routes).await?;
    let s = c.status(&format!("Gateway {INFRA}/{gw}")).await?;
    assert_condition(
        &s["conditions"],
        "InsecureFrontendValidationMode",
        "True",
        "ConfigurationChanged",
    );
    // The listeners do ask for client certificates (the validation is configured, just not
    // enforced): both ports' CA secrets reach Envoy.
    c.wait_envoy(
        gw,
        &format!("gateway-client-ca|{INFRA}/{gw}/{port_2}"),
        true,
    )
    .await?;
    for (port, sni, backend) in [
        (c.tls_port, "example.org", "infra-backend-v1"),
        (port_2, "second-example.org", "infra-backend-v2"),
    ] {
        let at = (addr.as_str(), port);
        for client in [Some(&clients.default), Some(&clients.per_port), None] {
            expect_served(c, at, sni, client, backend).await?;
        }
    }
    c.unload(file, gw, &routes).await
}

/// GatewayFrontendInvalidDefaultClientCertificateValidation: a default validation whose CA
/// does not exist leaves the HTTP listener alone and makes the HTTPS listener
/// `ResolvedRefs=False InvalidCACertificateRef`, `Accepted=False NoValidCACertificate`, not
/// programmed and not served.
pub(super) async fn frontend_invalid_default(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, gw) = (
        "frontend-invalid-default.yaml",
        "invalid-default-client-validation-config",
    );
    let route = "invalid-default-client-validation-config";
    let addr = c.load(file, gw, &[route]).await?;
    let http = c
        .listener_where(gw, "http", |l| {
            condition(&l["conditions"], "Accepted").is_some()
        })
        .await?;
    for t in ["ResolvedRefs", "Accepted", "Programmed"] {
        let cond = condition(&http["conditions"], t)
            .cloned()
            .unwrap_or_default();
        anyhow::ensure!(cond["status"] == "True", "http listener {t}: {http}");
    }
    c.expect_backend(&addr, get("example.org", "/"), "infra-backend-v1")
        .await?;
    let https = c
        .listener_where(gw, "https", |l| {
            condition(&l["conditions"], "Accepted").is_some()
        })
        .await?;
    assert_condition(
        &https["conditions"],
        "ResolvedRefs",
        "False",
        "InvalidCACertificateRef",
    );
    assert_condition(
        &https["conditions"],
        "Accepted",
        "False",
        "NoValidCACertificate",
    );
    let programmed = condition(&https["conditions"], "Programmed").cloned();
    anyhow::ensure!(
        programmed.is_some_and(|p| p["status"] == "False"),
        "https listener Programmed: {https}"
    );
    expect_refused(c, (addr.as_str(), c.tls_port), "example.org", None).await?;
    c.unload(file, gw, &[route]).await
}

/// GatewayInvalidFrontendClientCertificateValidation: per-port validations that do not
/// resolve (a missing ConfigMap, not a ConfigMap, another namespace's ConfigMap without a
/// ReferenceGrant) make only their own listener `Accepted=False NoValidCACertificate`, with
/// the ResolvedRefs reason of each; the default validation's listener is served.
pub(super) async fn frontend_invalid_validation(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, gw) = (
        "frontend-invalid-validation.yaml",
        "gateway-with-invalid-client-cert-validation",
    );
    let clients = clients(c)?;
    // The other namespace's CA exists: only the missing grant keeps it out.
    let elsewhere = backend_tls::ca_config_map("client-ca-elsewhere", &c.ca.cert_pem()).replace(
        &format!("namespace: {INFRA}"),
        "namespace: gateway-conformance-web-backend",
    );
    c.config.write("frontend-ca-elsewhere.yaml", &elsewhere)?;
    let text = c
        .manifest(file)?
        .replace("{PORT_UNRESOLVED}", &free_port().to_string())
        .replace("{PORT_KIND}", &free_port().to_string())
        .replace("{PORT_GRANT}", &free_port().to_string());
    c.config.write(file, &text)?;
    let addr = c.gateway(gw).await?;
    let cases = [
        ("https-unresolved", "InvalidCACertificateRef"),
        ("https-invalid-kind", "InvalidCACertificateKind"),
        ("https-grant-missing", "RefNotPermitted"),
    ];
    for (listener, reason) in cases {
        let l = c
            .listener_where(gw, listener, |l| {
                condition(&l["conditions"], "Accepted").is_some()
            })
            .await?;
        assert_condition(&l["conditions"], "ResolvedRefs", "False", reason);
        assert_condition(
            &l["conditions"],
            "Accepted",
            "False",
            "NoValidCACertificate",
        );
        let programmed = condition(&l["conditions"], "Programmed").cloned();
        anyhow::ensure!(
            programmed.is_some_and(|p| p["status"] == "False"),
            "{listener} Programmed: {l}"
        );
    }
    let https = c
        .listener_where(gw, "https", |l| {
            condition(&l["conditions"], "Accepted").is_some()
        })
        .await?;
    for t in ["ResolvedRefs", "Accepted", "Programmed"] {
        let cond = condition(&https["conditions"], t)
            .cloned()
            .unwrap_or_default();
        anyhow::ensure!(cond["status"] == "True", "https listener {t}: {https}");
    }
    // Ours: the valid listener does verify clients (its CA's client gets through, no
    // certificate does not); no route, so the answer is a 404 from the Gateway.
    let at = (addr.as_str(), c.tls_port);
    eventually(
        "https listener with a client certificate",
        DEADLINE,
        || async {
            match once(c, at, "example.org", Some(&clients.default)).await {
                Ok(r) if r.status == 404 => Ok(()),
                Ok(r) => Err(format!("{}", r.status)),
                Err(e) => Err(format!("{e:#}")),
            }
        },
    )
    .await?;
    expect_refused(c, at, "example.org", None).await?;
    c.config.remove(file)?;
    c.config.remove("frontend-ca-elsewhere.yaml")?;
    c.gone(&format!("Gateway {INFRA}/{gw}")).await
}
