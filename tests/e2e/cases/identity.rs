//! Workload identity from service account tokens, with stock Envoy: each sidecar's bootstrap
//! (`portolan bootstrap --xds-token-file`) has Envoy's Google gRPC client read a token file,
//! exchange it at Portolan's `/sts/v1/token` and present it over TLS; Portolan
//! (`--xds-token-review`) verifies it with TokenReview against the stand-in API server, whose
//! answers the test controls. Proven: the verified service account becomes the proxy's group
//! and workload certificate, mutual TLS and an AccessPolicy by service account work between two
//! sidecars, a stream ends when its token expires and the token the test rotated into the file
//! is the one presented on reconnect, a stream whose token is revoked ends at the next recheck
//! (long before the token expires), and every refused
//! case (missing, expired, wrong audience, unknown, unverifiable, another group, another
//! namespace) is refused with its reason in Envoy's log and counted in Portolan's metrics.

use crate::bin;
use crate::mesh_security::{HOST, Identities, Mesh, WAIT, counter};
use portolan_e2e::apiserver::TokenAnswer;
use portolan_e2e::manifests::example;
use portolan_e2e::portolan::Ports;
use portolan_e2e::ports::free_port;
use portolan_e2e::tokens::{AUDIENCE, Tokens, jwt, unix_now};
use portolan_e2e::{Envoy, eventually};

fn tokens(mesh: &Mesh) -> anyhow::Result<&Tokens> {
    mesh.tokens
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the mesh has no tokens"))
}

/// The token in the file `name`.
fn token_in(tokens: &Tokens, name: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(tokens.file(name))?
        .trim()
        .to_string())
}

/// Waits until `/debug/proxies` lists a proxy whose group contains `fragment`.
async fn wait_group(mesh: &Mesh, fragment: &str) -> anyhow::Result<()> {
    eventually(
        &format!("a proxy in a group with {fragment:?}"),
        WAIT,
        || async {
            let text = mesh
                .portolan
                .get_text("/debug/proxies")
                .await
                .map_err(|e| e.to_string())?;
            if text.contains(fragment) {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await
    .map(|_| ())
}

/// Waits until the client's new token `new` was reviewed, the client is back in its group and
/// served again.
async fn back_with(mesh: &Mesh, client: &Envoy, new: &str) -> anyhow::Result<()> {
    let issued = tokens(mesh)?;
    eventually("the new token to be reviewed", WAIT, || async {
        if issued.api.reviews().iter().any(|t| t == new) {
            Ok(())
        } else {
            Err(mesh.portolan.log_tail())
        }
    })
    .await?;
    wait_group(mesh, "client;ns=shop;sa=client").await?;
    client.wait_for_response(HOST, 200, "server-app").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_bind_identities_and_rotated_tokens_are_used() -> anyhow::Result<()>
{
    let _shared = portolan_e2e::serial::shared().await;
    let mesh = Mesh::start(
        Identities::Tokens,
        &[
            ("shop/strict.yaml", example("security/strict-mtls.yaml")),
            ("shop/allow.yaml", example("security/allow-client.yaml")),
        ],
        &[],
    )
    .await?;
    let server = mesh.server().await?;
    // The client's token expires in a few seconds (the kubelet's would in minutes).
    tokens(&mesh)?.issue_for("client", "shop", "client", 6)?;
    let client_envoy = mesh.caller("client", mesh.portolan.ports().mesh).await?;

    // The verified service accounts are the proxies' identities: groups, certificates, mTLS.
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;
    assert!(counter(&server, "listener.inbound.ssl.handshake").await? >= 1);
    assert_eq!(
        counter(&server, "listener.inbound.ssl.no_certificate").await?,
        0
    );
    wait_group(&mesh, "client;ns=shop;sa=client").await?;
    wait_group(&mesh, "server;ns=shop;sa=server").await?;
    let certs = client_envoy.admin("/certs").await?;
    assert!(
        certs.contains("spiffe://cluster.local/ns/shop/sa/client"),
        "the client holds its workload certificate: {certs}"
    );
    let issued = tokens(&mesh)?;
    let reviewed = issued.api.reviews();
    for sa in ["client", "server"] {
        let token = token_in(issued, sa)?;
        assert!(reviewed.contains(&token), "{sa}'s token was reviewed");
    }

    // The AccessPolicy tells service accounts apart: another token's identity gets 403.
    let hits = mesh.app.hits();
    let intruder = mesh.caller("intruder", free_port()).await?;
    intruder.wait_for_response(HOST, 403, "").await?;
    assert_eq!(
        mesh.app.hits(),
        hits,
        "a denied request never reaches the app"
    );
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;

    // The client's token is about to expire. The kubelet rotates the file and the old token is
    // revoked; when the old token expires Portolan closes the stream it opened, and Envoy
    // reconnects, reading the file again: the new token is the one reviewed.
    let old = token_in(issued, "client")?;
    let new = issued.issue("client", "shop", "client")?;
    issued.api.revoke(&old);
    back_with(&mesh, &client_envoy, &new).await?;
    // Portolan closed the stream at the token's expiry (not a refusal of a new one).
    let closed = mesh.portolan.log_tail();
    assert!(
        closed.contains("the stream's service account token expired; closing it"),
        "{closed}"
    );
    // Envoy flushes its log file every few seconds: poll.
    eventually(
        "Envoy to log its stream ending with the token",
        WAIT,
        || async {
            let ended = client_envoy.log_lines("closed: 16, expired:");
            if ended.is_empty() {
                Err("not in the log (yet)".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await?;
    let invalid = mesh
        .portolan
        .metric("portolan_xds_auth_refusals_total{reason=\"invalid\"}")
        .await?;
    assert_eq!(
        invalid,
        None,
        "the revoked token was never presented again\n{}",
        mesh.portolan.log_tail()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_stream_before_it_expires() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    // Tokens are verified again every second, and a review is reused for a second.
    let mesh = Mesh::start(
        Identities::Tokens,
        &[("shop/strict.yaml", example("security/strict-mtls.yaml"))],
        &["--xds-token-recheck", "1s", "--xds-token-cache", "1s"],
    )
    .await?;
    let _server = mesh.server().await?;
    let client_envoy = mesh.caller("client", mesh.portolan.ports().mesh).await?;
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;
    wait_group(&mesh, "client;ns=shop;sa=client").await?;

    // The client's token (valid for an hour) is revoked, say its pod was deleted: Portolan
    // closes the stream at its next check, long before the token's expiry, with the reason.
    let issued = tokens(&mesh)?;
    let old = token_in(issued, "client")?;
    issued.api.revoke(&old);
    eventually(
        "Portolan to close the revoked token's stream",
        WAIT,
        || async {
            let log = mesh.portolan.log_tail();
            if log.contains("service account token is no longer valid; closing it") {
                Ok(())
            } else {
                Err(log)
            }
        },
    )
    .await?;
    let invalid = mesh
        .portolan
        .metric("portolan_xds_auth_refusals_total{reason=\"invalid\"}")
        .await?;
    assert!(invalid >= Some(1.0), "counted: {invalid:?}");
    eventually(
        "Envoy to log its stream ending as invalid",
        WAIT,
        || async {
            if client_envoy.log_lines("closed: 16, invalid:").is_empty() {
                Err("not in the log (yet)".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await?;

    // A new token in the file (the new pod's): Envoy reconnects with it and is served.
    let new = issued.issue("client", "shop", "client")?;
    back_with(&mesh, &client_envoy, &new).await?;
    Ok(())
}

/// Gateway `shop/edge` (HTTP on `port`) routing `edge.example` to Service `site`, and `site`'s
/// endpoint `app`.
fn edge_gateway(port: u16, app: &portolan_e2e::Upstream) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portolan}}
spec: {{controllerName: portolan.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: shop}}
spec:
  gatewayClassName: portolan
  listeners:
  - {{name: http, protocol: HTTP, port: {port}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: site, namespace: shop}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [edge.example]
  rules:
  - backendRefs: [{{name: site, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: site, namespace: shop}}
spec:
  ports: [{{name: http, port: 80}}]
---
{}"#,
        portolan_e2e::manifests::endpoints_yaml("shop", "site", &[app])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_proxy_proves_its_service_account_with_a_token() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let port = free_port();
    let site = portolan_e2e::Upstream::start("site").await?;
    let mesh = Mesh::start(
        Identities::Tokens,
        &[("shop/edge.yaml", edge_gateway(port, &site))],
        &[],
    )
    .await?;
    let issued = tokens(&mesh)?;
    let ports = Ports {
        mesh: free_port(),
        ..mesh.portolan.ports()
    };
    // The Gateway's service account (`portolan-gateway-NAME` in its namespace) may ask for
    // the Gateway's group; its proxy serves the Gateway's routes.
    issued.issue("edge", "shop", "portolan-gateway-edge")?;
    let mut args = mesh.token_args("edge");
    args.extend(["--gateway".to_string(), "shop/edge".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gateway =
        Envoy::start_with_envoy_args(bin(), ports, "edge-1", "unused", &args, &[]).await?;
    wait_group(&mesh, "gateway:shop/edge").await?;
    let addr = eventually("the Gateway's address", WAIT, || async {
        let all = mesh
            .portolan
            .get_json("/debug/status")
            .await
            .map_err(|e| e.to_string())?;
        all["Gateway shop/edge"]["addresses"][0]["value"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{all}"))
    })
    .await?;
    eventually("a request through the Gateway", WAIT, || async {
        let r = portolan_e2e::client()
            .get(format!("http://{addr}:{port}/"))
            .header("host", "edge.example")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let body = r.text().await.map_err(|e| e.to_string())?;
        match (status, body.as_str()) {
            (200, "site") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    // A Gateway's proxy is no mesh workload: its group carries no identity.
    let proxies = mesh.portolan.get_text("/debug/proxies").await?;
    assert!(
        !proxies.contains("gateway:shop/edge;"),
        "the gateway's group is the Gateway's alone: {proxies}"
    );
    drop(gateway);

    // Another service account's token may not ask for the Gateway's group.
    issued.issue("other", "shop", "client")?;
    let mut args = mesh.token_args("other");
    args.extend(["--gateway".to_string(), "shop/edge".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ports = Ports {
        mesh: free_port(),
        ..mesh.portolan.ports()
    };
    let refused = Envoy::start_refused(bin(), ports, "edge-2", "unused", &args).await?;
    eventually("the other token to be refused", WAIT, || async {
        match mesh
            .portolan
            .metric("portolan_xds_auth_refusals_total{reason=\"group_mismatch\"}")
            .await
        {
            Ok(Some(n)) if n >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    drop(refused);
    Ok(())
}

/// One refused proxy: the token file it presents (none: no token at all), its group, extra
/// bootstrap flags, and the reason and gRPC status code Envoy must be told.
struct Refused {
    name: &'static str,
    token: Option<String>,
    cluster: &'static str,
    extra: &'static [&'static str],
    reason: &'static str,
    code: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_token_is_named_to_envoy_and_counted() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mesh = Mesh::start(Identities::Tokens, &[], &[]).await?;
    let issued = tokens(&mesh)?;
    let client_token = token_in(issued, "client")?;
    let expired = jwt(&issued.claims("shop", "client", AUDIENCE, unix_now() - 60));
    issued.api.token(&expired, TokenAnswer::Expired);
    let vault = jwt(&issued.claims("shop", "client", "vault", unix_now() + 600));
    let forged = jwt(&issued.claims("shop", "client", AUDIENCE, unix_now() + 600));
    let unverifiable = jwt(&issued.claims("shop", "client", AUDIENCE, unix_now() + 600));
    issued.api.token(&unverifiable, TokenAnswer::ServerError);
    let (unauthenticated, permission_denied) = (16, 7);
    let cases = [
        Refused {
            name: "missing",
            token: None,
            cluster: "client",
            extra: &[],
            reason: "missing",
            code: unauthenticated,
        },
        Refused {
            name: "expired",
            token: Some(expired),
            cluster: "client",
            extra: &[],
            reason: "expired",
            code: unauthenticated,
        },
        Refused {
            name: "vault",
            token: Some(vault),
            cluster: "client",
            extra: &[],
            reason: "wrong_audience",
            code: unauthenticated,
        },
        Refused {
            name: "forged",
            token: Some(forged),
            cluster: "client",
            extra: &[],
            reason: "invalid",
            code: unauthenticated,
        },
        Refused {
            name: "unverifiable",
            token: Some(unverifiable),
            cluster: "client",
            extra: &[],
            reason: "unverifiable",
            code: unauthenticated,
        },
        Refused {
            name: "other-group",
            token: Some(client_token.clone()),
            cluster: "server",
            extra: &[],
            reason: "group_mismatch",
            code: permission_denied,
        },
        Refused {
            name: "other-namespace",
            token: Some(client_token),
            cluster: "client",
            extra: &["--scope-namespace", "payments"],
            reason: "namespace_mismatch",
            code: permission_denied,
        },
    ];
    let mut envoys = Vec::new();
    for case in &cases {
        let mut args = match &case.token {
            Some(token) => {
                issued.write(case.name, token)?;
                mesh.token_args(case.name)
            }
            None => mesh.tls_args(),
        };
        args.extend(case.extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ports = Ports {
            mesh: free_port(),
            ..mesh.portolan.ports()
        };
        let envoy = Envoy::start_refused(
            bin(),
            ports,
            &format!("{}-1", case.name),
            case.cluster,
            &args,
        )
        .await?;
        envoys.push(envoy);
    }
    for (case, envoy) in cases.iter().zip(&envoys) {
        // Envoy's own gRPC client shows the message percent-encoded, Google gRPC decoded.
        let said = format!("closed: {}, {}:", case.code, case.reason);
        let told = eventually(
            &format!("{}: Envoy told {said:?}", case.name),
            WAIT,
            || async {
                let closed = envoy.log_lines("gRPC config stream");
                if closed.iter().any(|l| l.contains(&said)) {
                    Ok(())
                } else {
                    Err(closed.join("\n"))
                }
            },
        )
        .await;
        if let Err(e) = told {
            anyhow::bail!("{e}\n--- portolan log:\n{}", mesh.portolan.log_tail());
        }
        let series = format!(
            "portolan_xds_auth_refusals_total{{reason=\"{}\"}}",
            case.reason
        );
        let counted = mesh.portolan.metric(&series).await?.unwrap_or_default();
        assert!(counted >= 1.0, "{series} = {counted}");
    }
    // Envoy keeps reconnecting with the forged token; the refusal is cached, so the API server
    // reviewed it once.
    let forged_at = cases
        .iter()
        .position(|c| c.name == "forged")
        .ok_or_else(|| anyhow::anyhow!("no forged case"))?;
    eventually(
        "the forged proxy to be refused three times",
        WAIT,
        || async {
            let n = envoys[forged_at].log_lines("gRPC config stream").len();
            if n >= 3 { Ok(()) } else { Err(format!("{n}")) }
        },
    )
    .await?;
    let forged = cases[forged_at].token.clone().unwrap_or_default();
    let reviews = issued
        .api
        .reviews()
        .iter()
        .filter(|t| **t == forged)
        .count();
    assert_eq!(
        reviews, 1,
        "a refused token is reviewed once, not at every reconnect"
    );
    // None of them got a configuration or a certificate.
    let proxies = mesh.portolan.get_text("/debug/proxies").await?;
    assert!(!proxies.contains("sa=client"), "{proxies}");
    Ok(())
}
