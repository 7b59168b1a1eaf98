//! BackendTLSPolicy scenarios of the conformance runner (GATEWAY-HTTP extended features
//! `BackendTLSPolicy` and `BackendTLSPolicySANValidation` of v1.6.1): stock Envoy originates
//! TLS to a real HTTPS backend whose certificate the run's CA signed (DNS SANs
//! `abc.example.com`, `other.example.com`, URI SAN `spiffe://abc.example.com/test-identity`),
//! trusting the CA a ConfigMap holds. The backend answers with the SNI of its connection
//! (`x-seen-sni`), so every 200 also proves which policy was in force; a failed verification
//! is a 503 that Envoy counts as such for the Service's cluster, and never reaches the
//! backend.

use super::*;

/// The HTTPS backend every BackendTLSPolicy Service of the run points at.
const BACKEND: &str = "btls-backend";
/// The CA ConfigMaps: the run's CA, and one that signed nothing the backend presents.
const CA_FILE: &str = "backendtlspolicy-ca.yaml";

/// Starts the HTTPS backend and writes the CA ConfigMaps (once per run).
async fn setup(c: &mut Conformance) -> anyhow::Result<()> {
    if c.upstreams.contains_key(BACKEND) {
        return Ok(());
    }
    let cert = c.ca.issue_with_uris(
        &["abc.example.com", "other.example.com"],
        &["spiffe://abc.example.com/test-identity"],
    )?;
    let upstream = Upstream::start_tls(BACKEND, &cert).await?;
    c.upstreams.insert(BACKEND.to_string(), upstream);
    let stranger = TestCa::new()?;
    c.config.write(
        CA_FILE,
        &[
            ca_config_map("tls-checks-ca-certificate", &c.ca.cert_pem()),
            ca_config_map("mismatch-ca-certificate", &stranger.cert_pem()),
        ]
        .join("---\n"),
    )?;
    Ok(())
}

/// A ConfigMap holding `pem` under `ca.crt`.
pub(super) fn ca_config_map(name: &str, pem: &str) -> String {
    let indented: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {INFRA}\ndata:\n  ca.crt: |\n{indented}"
    )
}

/// Manifest `file` and, for each Service, an EndpointSlice to the HTTPS backend carrying
/// each of its port names.
fn with_slices(
    c: &Conformance,
    file: &str,
    services: &[(&str, &[&str])],
) -> anyhow::Result<String> {
    let addr = c.upstream(BACKEND)?.addr();
    let mut text = c.manifest(file)?;
    for (service, ports) in services {
        let ports: String = ports
            .iter()
            .map(|p| format!("- {{name: {p}, port: {}}}\n", addr.port()))
            .collect();
        text.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-btls\n  namespace: {INFRA}\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:\n- addresses: [\"{}\"]\n  conditions: {{ready: true}}\nports:\n{ports}",
            addr.ip()
        ));
    }
    Ok(text)
}

/// Writes `text` as `file` and waits until `routes` reach the Envoy of `gateway`.
async fn load_with(
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

/// The policy's `ancestors[]` entry for Gateway `gw`.
fn ancestor<'v>(policy_status: &'v Value, gw: &str) -> Option<&'v Value> {
    policy_status["ancestors"]
        .as_array()?
        .iter()
        .find(|a| a["ancestorRef"]["name"] == gw)
}

/// Waits until policy `name` has, for Gateway `gw`, condition `type_` with `status` and
/// `reason` (BackendTLSPolicyMustHaveCondition), at the policy's generation `generation`.
async fn policy_condition(
    c: &Conformance,
    name: &str,
    gw: &str,
    (type_, status, reason): (&str, &str, &str),
) -> anyhow::Result<Value> {
    let key = format!("BackendTLSPolicy {INFRA}/{name}");
    let s = c
        .status_where(&key, |s| {
            ancestor(s, gw)
                .and_then(|a| condition(&a["conditions"], type_))
                .is_some_and(|c| c["status"] == status && c["reason"] == reason)
        })
        .await?;
    let a = ancestor(&s, gw).ok_or_else(|| anyhow::anyhow!("no ancestor {gw} in {s}"))?;
    assert_eq!(
        a["controllerName"], "portolan.dev/gateway-controller",
        "{s}"
    );
    assert_eq!(
        (&a["ancestorRef"]["group"], &a["ancestorRef"]["kind"]),
        (
            &Value::from("gateway.networking.k8s.io"),
            &Value::from("Gateway")
        ),
        "{s}"
    );
    Ok(s)
}

const ACCEPTED: (&str, &str, &str) = ("Accepted", "True", "Accepted");
const RESOLVED: (&str, &str, &str) = ("ResolvedRefs", "True", "ResolvedRefs");

/// Expects the backend to answer 200 over TLS with SNI `sni`.
async fn expect_sni(c: &Conformance, addr: &str, req: Req<'_>, sni: &str) -> anyhow::Result<()> {
    c.expect(addr, req, |r| {
        let seen = r.header("x-seen-sni");
        if r.status == 200 && r.upstream() == Some(BACKEND) && seen == Some(sni) {
            Ok(())
        } else {
            Err(format!("want {BACKEND} with SNI {sni}"))
        }
    })
    .await?;
    Ok(())
}

/// Expects a 503 that is a failed verification of the backend's certificate: Envoy counts
/// it for the Service's cluster (`ssl.fail_verify_san` or `ssl.fail_verify_error` in the
/// admin stats of Gateway `gw`'s proxy), and the backend never saw the request.
async fn expect_tls_failure(
    c: &Conformance,
    gw: &str,
    addr: &str,
    service: &str,
    req: Req<'_>,
) -> anyhow::Result<()> {
    let path = req.path.to_string();
    c.expect_status(addr, req, 503).await?;
    let (envoy, _) = c
        .envoys
        .get(gw)
        .ok_or_else(|| anyhow::anyhow!("no Envoy for {gw}"))?;
    eventually(
        &format!("a failed certificate verification for {service}"),
        DEADLINE,
        || async {
            let stats = envoy
                .admin(&format!("/stats?filter={service}"))
                .await
                .map_err(|e| e.to_string())?;
            let failed = stats.lines().any(|l| {
                l.contains(".ssl.fail_verify_")
                    && l.rsplit(": ")
                        .next()
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        > Some(0)
            });
            if failed { Ok(()) } else { Err(stats) }
        },
    )
    .await?;
    let hits = c.upstream(BACKEND)?.path_hits(&path);
    anyhow::ensure!(hits == 0, "{path} reached the backend {hits} times");
    Ok(())
}

/// BackendTLSPolicy: a valid policy (200, the SNI is its hostname), one whose hostname the
/// certificate does not carry and one trusting another CA (503, TLS error, the backend never
/// reached), all three `Accepted` and `ResolvedRefs`; and re-encryption behind an HTTPS
/// listener.
pub(super) async fn backend_tls_policy(c: &mut Conformance) -> anyhow::Result<()> {
    setup(c).await?;
    let file = "backendtlspolicy.yaml";
    let text = with_slices(
        c,
        file,
        &[
            ("backendtlspolicy-test", &["https"]),
            ("backendtlspolicy-host-mismatch-test", &["https"]),
            ("backendtlspolicy-cert-mismatch-test", &["https"]),
        ],
    )?;
    let gw = "same-namespace";
    let addr = load_with(c, file, &text, gw, &["backendtlspolicy"]).await?;
    route_accepted(c, INFRA, "backendtlspolicy", gw).await?;
    for policy in ["normative-test", "host-mismatch", "cert-mismatch"] {
        policy_condition(c, policy, gw, ACCEPTED).await?;
        policy_condition(c, policy, gw, RESOLVED).await?;
    }
    expect_sni(
        c,
        &addr,
        get("abc.example.com", "/backendtlspolicy"),
        "abc.example.com",
    )
    .await?;
    expect_tls_failure(
        c,
        gw,
        &addr,
        "backendtlspolicy-host-mismatch-test",
        get("abc.example.org", "/backendtlspolicy-host-mismatch"),
    )
    .await?;
    expect_tls_failure(
        c,
        gw,
        &addr,
        "backendtlspolicy-cert-mismatch-test",
        get("abc.example.com", "/backendtlspolicy-cert-mismatch"),
    )
    .await?;

    // Re-encrypt: HTTPS terminated with the Gateway's certificate, TLS again to the backend.
    let https = "same-namespace-with-https-listener";
    let https_addr = c.gateway(https).await?;
    c.wait_envoy(
        https,
        &format!("\"{INFRA}/backendtlspolicy-reencrypt/"),
        true,
    )
    .await?;
    route_accepted(c, INFRA, "backendtlspolicy-reencrypt", https).await?;
    policy_condition(c, "normative-test", https, ACCEPTED).await?;
    c.expect_https(
        &https_addr,
        ("example.org", "example.org"),
        "/backendtlspolicy",
        |r| {
            let sni = r.headers.iter().find(|(k, _)| k == "x-seen-sni");
            match (r.status, sni) {
                (200, Some((_, v))) if v == "abc.example.com" => Ok(()),
                _ => Err("want 200 re-encrypted with SNI abc.example.com".to_string()),
            }
        },
    )
    .await?;
    c.config.remove(file)?;
    c.wait_envoy(
        https,
        &format!("\"{INFRA}/backendtlspolicy-reencrypt/"),
        false,
    )
    .await?;
    c.wait_envoy(gw, &format!("\"{INFRA}/backendtlspolicy/"), false)
        .await?;
    c.gone(&format!("BackendTLSPolicy {INFRA}/normative-test"))
        .await
}

/// BackendTLSPolicyConflictResolution: of two policies on one Service (or one port), the
/// first wins and the other is `Accepted=False Conflicted`; a port's own policy and the
/// Service's do not conflict. The SNI the backend sees tells which policy is in force.
pub(super) async fn backend_tls_conflict_resolution(c: &mut Conformance) -> anyhow::Result<()> {
    setup(c).await?;
    let file = "backendtlspolicy-conflict-resolution.yaml";
    let text = with_slices(
        c,
        file,
        &[
            (
                "backendtlspolicy-conflicted-without-section-name-test",
                &["https"],
            ),
            (
                "backendtlspolicy-conflicted-with-section-name-test",
                &["https-1", "https-2"],
            ),
            (
                "backendtlspolicy-not-conflicted-test",
                &["https-1", "https-2"],
            ),
        ],
    )?;
    let (gw, route) = ("same-namespace", "backendtlspolicy-conflict-resolution");
    let addr = load_with(c, file, &text, gw, &[route]).await?;
    route_accepted(c, INFRA, route, gw).await?;
    let conflicted = ("Accepted", "False", "Conflicted");
    for (winner, loser) in [
        (
            "conflicted-without-section-name-1",
            "conflicted-without-section-name-2",
        ),
        (
            "conflicted-with-section-name-1",
            "conflicted-with-section-name-2",
        ),
    ] {
        policy_condition(c, winner, gw, ACCEPTED).await?;
        policy_condition(c, loser, gw, conflicted).await?;
    }
    for p in [
        "not-conflicted-with-section-name",
        "not-conflicted-without-section-name",
    ] {
        policy_condition(c, p, gw, ACCEPTED).await?;
    }
    for (path, sni) in [
        (
            "/backendtlspolicy-conflicted-without-section-name",
            "other.example.com",
        ),
        (
            "/backendtlspolicy-conflicted-with-section-name",
            "other.example.com",
        ),
        (
            "/backendtlspolicy-not-conflicted-with-section-name",
            "other.example.com",
        ),
        (
            "/backendtlspolicy-not-conflicted-without-section-name",
            "abc.example.com",
        ),
    ] {
        expect_sni(c, &addr, get("abc.example.com", path), sni).await?;
    }
    c.unload(file, gw, &[route]).await
}

/// BackendTLSPolicyInvalidCACertificateRef and BackendTLSPolicyInvalidKind: a ConfigMap that
/// does not exist, one without `ca.crt`, a reference of another kind: `Accepted=False
/// NoValidCACertificate`, `ResolvedRefs=False` with the reason, and requests get 500. The
/// missing ConfigMap, once written, makes its policy valid and its Service reachable over
/// TLS.
pub(super) async fn backend_tls_invalid_refs(c: &mut Conformance) -> anyhow::Result<()> {
    setup(c).await?;
    let file = "backendtlspolicy-invalid-refs.yaml";
    let services = [
        "backendtlspolicy-nonexistent-ca-certificate-ref-test",
        "backendtlspolicy-malformed-ca-certificate-ref-test",
        "backendtlspolicy-invalid-kind-test",
    ];
    let slices: Vec<(&str, &[&str])> = services.iter().map(|s| (*s, &["https"][..])).collect();
    let text = with_slices(c, file, &slices)?;
    let (gw, route) = ("same-namespace", "backendtlspolicy-invalid-refs");
    let addr = load_with(c, file, &text, gw, &[route]).await?;
    route_accepted(c, INFRA, route, gw).await?;
    let no_ca = ("Accepted", "False", "NoValidCACertificate");
    for (policy, reason) in [
        ("nonexistent-ca-certificate-ref", "InvalidCACertificateRef"),
        ("malformed-ca-certificate-ref", "InvalidCACertificateRef"),
        ("invalid-kind", "InvalidKind"),
    ] {
        policy_condition(c, policy, gw, no_ca).await?;
        let s = policy_condition(c, policy, gw, ("ResolvedRefs", "False", reason)).await?;
        let message = ancestor(&s, gw)
            .and_then(|a| condition(&a["conditions"], "ResolvedRefs"))
            .map(|c| c["message"].to_string())
            .unwrap_or_default();
        anyhow::ensure!(
            message.contains("spec.validation.caCertificateRefs[0]"),
            "{policy}: the message names the reference: {message}"
        );
        let path = format!("/backendtlspolicy-{policy}");
        c.expect_status(&addr, get("abc.example.com", &path), 500)
            .await?;
    }
    // The ConfigMap appears: the policy is valid, the Service is reached over TLS.
    let late = "backendtlspolicy-late-ca.yaml";
    c.config.write(
        late,
        &ca_config_map("nonexistent-ca-certificate", &c.ca.cert_pem()),
    )?;
    policy_condition(c, "nonexistent-ca-certificate-ref", gw, ACCEPTED).await?;
    policy_condition(c, "nonexistent-ca-certificate-ref", gw, RESOLVED).await?;
    expect_sni(
        c,
        &addr,
        get(
            "abc.example.com",
            "/backendtlspolicy-nonexistent-ca-certificate-ref",
        ),
        "abc.example.com",
    )
    .await?;
    c.config.remove(late)?;
    c.unload(file, gw, &[route]).await
}

/// Every condition of every ancestor entry carries generation `g`.
fn ancestors_at(s: &Value, g: i64) -> bool {
    s["ancestors"].as_array().is_some_and(|a| {
        !a.is_empty()
            && a.iter().all(|e| {
                e["conditions"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().all(|c| c["observedGeneration"] == g))
            })
    })
}

/// BackendTLSPolicyObservedGenerationBump: after a spec change (a new hostname), every
/// ancestor condition carries the new generation and the policy stays accepted. The policy
/// trusts the system store (`wellKnownCACertificates: System`): Envoy takes the cluster with
/// the trust store's path, and the new SNI reaches it.
pub(super) async fn backend_tls_observed_generation_bump(
    c: &mut Conformance,
) -> anyhow::Result<()> {
    let file = "backendtlspolicy-observed-generation-bump.yaml";
    let (gw, route) = (
        "same-namespace",
        "backendtlspolicy-observed-generation-bump",
    );
    let key = format!("BackendTLSPolicy {INFRA}/observed-generation-bump");
    let text = c.manifest(file)?;
    load_with(c, file, &text, gw, &[route]).await?;
    let s = c.status_where(&key, |s| ancestors_at(s, 1)).await?;
    assert_condition(
        &ancestor(&s, gw).cloned().unwrap_or_default()["conditions"],
        "Accepted",
        "True",
        "Accepted",
    );
    c.wait_envoy(gw, "/etc/ssl/certs/ca-certificates.crt", true)
        .await?;
    let bumped = text
        .replace("generation: 1", "generation: 2")
        .replace("hostname: abc.example.com", "hostname: foo.example.com");
    c.config.write(file, &bumped)?;
    let s = c.status_where(&key, |s| ancestors_at(s, 2)).await?;
    assert_condition(
        &ancestor(&s, gw).cloned().unwrap_or_default()["conditions"],
        "Accepted",
        "True",
        "Accepted",
    );
    c.wait_envoy(gw, "foo.example.com", true).await?;
    c.unload(file, gw, &[route]).await?;
    c.gone(&key).await
}

/// BackendTLSPolicySANValidation: a DNS SAN, a URI SAN and both (200, the SNI stays the
/// hostname); the same with names the certificate lacks (503, TLS error, never reached).
pub(super) async fn backend_tls_san_validation(c: &mut Conformance) -> anyhow::Result<()> {
    setup(c).await?;
    let file = "backendtlspolicy-san.yaml";
    let cases = [
        ("san-dns", true),
        ("san-dns-mismatch", false),
        ("san-uri", true),
        ("san-uri-mismatch", false),
        ("multiple-sans", true),
        ("multiple-mismatch-sans", false),
    ];
    let services: Vec<String> = cases
        .iter()
        .map(|(p, _)| format!("backendtlspolicy-{p}-test"))
        .collect();
    let slices: Vec<(&str, &[&str])> = services
        .iter()
        .map(|s| (s.as_str(), &["btls"][..]))
        .collect();
    let text = with_slices(c, file, &slices)?;
    let (gw, route) = ("same-namespace", "backendtlspolicy-san-test");
    let addr = load_with(c, file, &text, gw, &[route]).await?;
    route_accepted(c, INFRA, route, gw).await?;
    for (policy, valid) in cases {
        policy_condition(c, policy, gw, ACCEPTED).await?;
        let path = format!("/backendtlspolicy-{policy}");
        let req = get("abc.example.com", &path);
        if valid {
            expect_sni(c, &addr, req, "abc.example.com").await?;
        } else {
            let service = format!("backendtlspolicy-{policy}-test");
            expect_tls_failure(c, gw, &addr, &service, req).await?;
        }
    }
    c.unload(file, gw, &[route]).await
}

/// Portolan's own: an edit that makes a BackendTLSPolicy invalid (a wildcard hostname, a URI
/// SAN without a scheme) is refused with its field paths in `/debug/config-errors`, and the
/// last good version stays in force (the backend still sees the old SNI); fixing it applies.
pub(super) async fn backend_tls_invalid_edit_keeps_last_good(
    c: &mut Conformance,
) -> anyhow::Result<()> {
    setup(c).await?;
    let file = "backendtlspolicy.yaml";
    let text = with_slices(c, file, &[("backendtlspolicy-test", &["https"])])?;
    let gw = "same-namespace";
    let addr = load_with(c, file, &text, gw, &["backendtlspolicy"]).await?;
    let req = || get("abc.example.com", "/backendtlspolicy");
    expect_sni(c, &addr, req(), "abc.example.com").await?;
    let broken = text.replacen(
        "    hostname: abc.example.com\n",
        "    hostname: \"*.example.com\"\n    subjectAltNames: [{type: URI, uri: no-scheme}]\n",
        1,
    );
    anyhow::ensure!(broken != text, "the manifest has the hostname to break");
    c.config.write(file, &broken)?;
    eventually(
        "the refused edit in /debug/config-errors",
        DEADLINE,
        || async {
            let errors = c
                .portolan
                .get_text("/debug/config-errors")
                .await
                .map_err(|e| e.to_string())?;
            let named = errors
                .contains("BackendTLSPolicy gateway-conformance-infra/normative-test")
                && errors.contains("spec.validation.hostname")
                && errors.contains("spec.validation.subjectAltNames[0].uri");
            if named { Ok(()) } else { Err(errors) }
        },
    )
    .await?;
    expect_sni(c, &addr, req(), "abc.example.com").await?;
    let fixed = text.replacen(
        "hostname: abc.example.com",
        "hostname: other.example.com",
        1,
    );
    c.config.write(file, &fixed)?;
    expect_sni(c, &addr, req(), "other.example.com").await?;
    c.unload(file, gw, &["backendtlspolicy"]).await
}

/// Portolan's own, after upstream's BackendTLSPolicyGRPCRoute: a GRPCRoute whose backend is a
/// gRPC server over TLS. With a valid policy the call is answered (HTTP/2 over TLS, ALPN
/// `h2`); with a hostname the certificate lacks it fails (`UNAVAILABLE`).
pub(super) async fn backend_tls_grpc_route(c: &mut Conformance) -> anyhow::Result<()> {
    setup(c).await?;
    let name = "grpc-btls-backend";
    let port = c.grpc_tls_server(name, &c.ca.issue(&["abc.example.com"])?)?;
    let file = "backendtlspolicy-grpcroute.yaml";
    let mut text = c.manifest(file)?;
    for service in ["grpc-btls-test", "grpc-btls-host-mismatch-test"] {
        text.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-btls\n  namespace: {INFRA}\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions: {{ready: true}}\nports:\n- {{name: grpc, port: {port}}}\n"
        ));
    }
    let (gw, route) = ("same-namespace", "backendtlspolicy-grpcroute");
    let addr = load_with(c, file, &text, gw, &[route]).await?;
    for policy in ["grpc-normative-test", "grpc-host-mismatch"] {
        policy_condition(c, policy, gw, ACCEPTED).await?;
        policy_condition(c, policy, gw, RESOLVED).await?;
    }
    let call = |method| grpc::Call {
        method,
        authority: "abc.example.com",
        metadata: &[],
        tls: false,
    };
    c.expect_grpc(&addr, call("Echo"), name).await?;
    c.expect_grpc(&addr, call("EchoTwo"), "error:UNAVAILABLE")
        .await?;
    c.unload(file, gw, &[route]).await
}
