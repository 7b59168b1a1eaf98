//! JWT authentication (`RequestAuthentication`) through stock Envoy with real upstreams.
//!
//! * `examples/policies/jwt-gateway.yaml` (the file docs/policies.md shows): a Portolan
//!   Gateway with a RequestAuthentication attached to it, its remote JWKS served by a
//!   loopback HTTP server the test runs and fetched by Envoy through the cluster Portolan
//!   makes. A token signed by the test's key is accepted and its claims reach the upstream
//!   as headers (the token itself does not); expired, wrong issuer, foreign key and missing
//!   tokens get 401, a wrong audience too (jwt_authn's own 403, mapped to 401 by the
//!   connection manager's local reply config). A second policy on one named
//!   rule of the TrafficRoute (optional) wins there: no token passes, a bad one does not.
//!   Status per ancestor (the Gateway, also for the route rule's policy): Accepted,
//!   TargetNotFound, Conflicted. A bad edit is refused by field
//!   path and the last good policies stay; a good one takes effect.
//! * A mesh workload whose Service a RequestAuthentication (inline JWKS) targets:
//!   AccessPolicy rules on a JWT claim and on a request principal allow or deny (403, which
//!   the 401 mapping leaves alone) on its inbound listener.

use crate::bin;
use crate::mesh_security::{Identities, Mesh as SecureMesh};
use portolan_e2e::jwt::{Issuer, JwksServer, now};
use portolan_e2e::ports::free_port;
use portolan_e2e::{Mesh, Reply, Upstream, endpoints_yaml, eventually, example};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const ISS: &str = "https://issuer.example";
const AUD: &str = "shop-api";
const HOST: &str = "api.example.com";

/// `examples/policies/jwt-gateway.yaml` (Gateway `edge`, TrafficRoute `api` with rule
/// `public`, RequestAuthentications `edge-jwt` and `public-optional`) with the listener on
/// `port` and the JWKS at `jwks_uri`.
fn gateway_example(port: u16, jwks_uri: &str) -> String {
    example("policies/jwt-gateway.yaml")
        .replace("port: 8080", &format!("port: {port}"))
        .replace("https://issuer.example/.well-known/jwks.json", jwks_uri)
}

/// RequestAuthentication `name` on `target` with one provider (`jwks`: the provider's JWKS
/// source as YAML, indented for the provider).
fn request_authentication(name: &str, target: &str, jwks: &str) -> String {
    format!(
        r#"apiVersion: portolan.dev/v1alpha1
kind: RequestAuthentication
metadata:
  name: {name}
  namespace: default
spec:
  targetRefs:
  - {target}
  providers:
  - name: test
    issuer: {ISS}
    audiences: [{AUD}]
{jwks}
    claimToHeaders:
    - claim: sub
      header: x-jwt-sub
    - claim: realm.role
      header: x-jwt-role
"#
    )
}

async fn get_with(port: u16, path: &str, token: Option<&str>) -> anyhow::Result<Reply> {
    let mut req = portolan_e2e::http::request(port, reqwest::Method::GET, HOST, path);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    portolan_e2e::http::send(req).await
}

/// The per-target conditions of a policy on `/debug/status`: `(kind/name[#section], reason)`.
async fn ancestors(m: &Mesh, policy: &str) -> anyhow::Result<Vec<(String, String, String)>> {
    let status = m.portolan.get_json("/debug/status").await?;
    let key = format!("RequestAuthentication default/{policy}");
    let mut out = Vec::new();
    for a in status[&key]["ancestors"].as_array().into_iter().flatten() {
        let r = &a["ancestorRef"];
        let c = &a["conditions"][0];
        out.push((
            format!(
                "{}/{}",
                r["kind"].as_str().unwrap_or("?"),
                r["name"].as_str().unwrap_or("?")
            ),
            c["status"].as_str().unwrap_or("?").to_string(),
            c["reason"].as_str().unwrap_or("?").to_string(),
        ));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_jwt_accepts_signed_tokens_passes_claims_and_refuses_bad_ones() -> anyhow::Result<()>
{
    let _shared = portolan_e2e::serial::shared().await;
    let api = Upstream::start("api").await?;
    let issuer = Issuer::new(ISS, "k1")?;
    let stranger = Issuer::new(ISS, "k1")?;
    let jwks = JwksServer::start(issuer.jwks()).await?;
    let port = free_port();
    let inline = format!(
        "    localJwks:\n      inline: '{}'\n",
        issuer.jwks().replace('\'', "''")
    );
    let conflicting = request_authentication(
        "zz-second",
        "{group: portolan.dev, kind: Gateway, name: edge}",
        &inline,
    );
    let missing = request_authentication(
        "nowhere",
        "{group: portolan.dev, kind: Gateway, name: nowhere}",
        &inline,
    );
    let m = Mesh::start(
        bin(),
        "ingress",
        &[
            (
                "api-endpoints.yaml",
                endpoints_yaml("default", "api", &[&api]),
            ),
            ("policies.yaml", gateway_example(port, &jwks.uri())),
            ("second.yaml", conflicting),
            ("nowhere.yaml", missing),
        ],
    )
    .await?;

    // A valid token: the upstream answers, and sees the claims as headers, not the token.
    let good = issuer.token(json!({"sub": "alice", "aud": AUD, "realm": {"role": "admin"}}))?;
    let reply = eventually("a valid token to pass the gateway", WAIT, || async {
        match get_with(port, "/headers", Some(&good)).await {
            Ok(r) if r.status == 200 => Ok(r),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    let seen = reply.seen_headers()?;
    assert_eq!(
        seen.get("x-jwt-sub"),
        Some(&vec!["alice".to_string()]),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("x-jwt-role"),
        Some(&vec!["admin".to_string()]),
        "{seen:?}"
    );
    assert!(
        !seen.contains_key("authorization"),
        "token forwarded: {seen:?}"
    );
    assert!(jwks.fetches() >= 1, "Envoy never fetched the remote JWKS");

    // Every bad token, and none, is refused with 401 on the gateway-wide policy.
    let t = now();
    // (jwt_authn answers a token for another audience with 403 `Audiences in Jwt are not
    // allowed`; Portolan's local reply mapper makes it 401 like the others, body kept.)
    let wrong_audience = issuer.token(json!({"sub": "a", "aud": "other"}))?;
    let r = get_with(port, "/headers", Some(&wrong_audience)).await?;
    assert_eq!(
        (r.status, r.upstream()),
        (401, None),
        "wrong audience: {r:?}"
    );
    assert_eq!(r.body, "Audiences in Jwt are not allowed");
    let bad = [
        ("missing", None),
        (
            "expired",
            Some(issuer.token(json!({"sub": "a", "aud": AUD, "iat": t - 7200, "exp": t - 3600}))?),
        ),
        (
            "wrong issuer",
            Some(issuer.token(json!({"sub": "a", "aud": AUD, "iss": "https://evil.test"}))?),
        ),
        (
            "foreign key",
            Some(stranger.token(json!({"sub": "a", "aud": AUD}))?),
        ),
    ];
    for (what, token) in &bad {
        let r = get_with(port, "/headers", token.as_deref()).await?;
        assert_eq!(r.status, 401, "{what}: {r:?}");
        assert_eq!(r.upstream(), None, "{what} reached the upstream");
    }

    // Rule `public`: its own optional policy wins over the gateway's.
    let r = get_with(port, "/public/x", None).await?;
    assert_eq!((r.status, r.upstream()), (200, Some("api")), "{r:?}");
    let r = get_with(port, "/public/x", bad[1].1.as_deref()).await?;
    assert_eq!(r.status, 401, "an expired token on an optional rule: {r:?}");
    let r = get_with(port, "/public/x", Some(&wrong_audience)).await?;
    assert_eq!(r.status, 401, "a wrong audience on an optional rule: {r:?}");
    let r = get_with(port, "/public/x", Some(&good)).await?;
    assert_eq!(r.status, 200, "{r:?}");

    // Status per target.
    assert_eq!(
        ancestors(&m, "edge-jwt").await?,
        [("Gateway/edge".into(), "True".into(), "Accepted".into())]
    );
    assert_eq!(
        ancestors(&m, "public-optional").await?,
        [("Gateway/edge".into(), "True".into(), "Accepted".into())],
        "a rule's ancestor is the Gateway its route is served on"
    );
    assert_eq!(
        ancestors(&m, "zz-second").await?,
        [("Gateway/edge".into(), "False".into(), "Conflicted".into())]
    );
    assert_eq!(
        ancestors(&m, "nowhere").await?,
        [(
            "Gateway/nowhere".into(),
            "False".into(),
            "TargetNotFound".into()
        )]
    );

    // An invalid policy is refused by field path and the last good one stays in force.
    m.config.write(
        "policies.yaml",
        &gateway_example(port, "ftp://nowhere/jwks.json"),
    )?;
    eventually("the bad policy to be reported", WAIT, || async {
        let errors = m.config_errors().await.map_err(|e| e.to_string())?;
        let text = serde_json::to_string(&errors).unwrap_or_default();
        if text.contains("spec.providers[0].remoteJwks.uri") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await?;
    let r = get_with(port, "/headers", None).await?;
    assert_eq!(r.status, 401, "the last good policy stays: {r:?}");
    let r = get_with(port, "/headers", Some(&good)).await?;
    assert_eq!(r.status, 200, "{r:?}");
    let r = get_with(port, "/public/x", None).await?;
    assert_eq!(r.status, 200, "the last good optional policy stays: {r:?}");

    // A valid change takes effect: rule `public` now requires a token too.
    m.config.write(
        "policies.yaml",
        &gateway_example(port, &jwks.uri()).replace("mode: Optional", "mode: Required"),
    )?;
    eventually("rule public to require a token", WAIT, || async {
        match get_with(port, "/public/x", None).await {
            Ok(r) if r.status == 401 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let r = get_with(port, "/public/x", Some(&good)).await?;
    assert_eq!(r.status, 200, "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_policy_allows_and_denies_by_jwt_claim_and_request_principal() -> anyhow::Result<()>
{
    let _shared = portolan_e2e::serial::shared().await;
    let issuer = Issuer::new(ISS, "k1")?;
    let authn = format!(
        r#"apiVersion: portolan.dev/v1alpha1
kind: RequestAuthentication
metadata:
  name: server-jwt
  namespace: shop
spec:
  targetRefs:
  - {{group: "", kind: Service, name: server}}
  providers:
  - name: test
    issuer: {ISS}
    localJwks:
      inline: '{jwks}'
"#,
        jwks = issuer.jwks()
    );
    let allow = format!(
        r#"apiVersion: portolan.dev/v1alpha1
kind: AccessPolicy
metadata:
  name: server-by-jwt
  namespace: shop
spec:
  selector:
    matchLabels:
      app: server
  action: ALLOW
  rules:
  - claims:
    - name: groups
      values: [admins]
  - from:
      requestPrincipals: ["{ISS}/bob"]
"#
    );
    let mesh = SecureMesh::start(
        Identities::Certificates,
        &[("shop/authn.yaml", authn), ("shop/allow.yaml", allow)],
        &[],
    )
    .await?;
    let _server = mesh.server().await?;
    let inbound = mesh.inbound;
    let call = |token: String| async move {
        portolan_e2e::client()
            .get(format!("http://127.0.0.1:{inbound}/"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    };
    let admin = issuer.token(json!({"sub": "alice", "groups": ["users", "admins"]}))?;
    let user = issuer.token(json!({"sub": "carol", "groups": ["users"]}))?;
    let bob = issuer.token(json!({"sub": "bob", "groups": ["users"]}))?;
    eventually("a token with the admins group to be allowed", WAIT, || {
        let t = admin.clone();
        async move {
            match call(t).await {
                Ok(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", mesh.portolan.log_tail()))?;
    assert_eq!(call(user).await, Ok(403), "no admins group, not bob");
    assert_eq!(call(bob).await, Ok(200), "request principal ISS/bob");
    let no_token = portolan_e2e::client()
        .get(format!("http://127.0.0.1:{inbound}/"))
        .send()
        .await?
        .status()
        .as_u16();
    assert_eq!(no_token, 401, "the Service's policy requires a token");
    Ok(())
}
