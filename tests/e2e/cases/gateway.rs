//! End to end, a Gateway: an Envoy in proxy group `ingress` opens the HTTPS, HTTP and TCP
//! listeners of `examples/routing/https-gateway.yaml` (ports swapped for free ones), serves the
//! certificate of a `kubernetes.io/tls` Secret made by the test's own CA, and routes
//! `www.example.com` to a real upstream. The certificate reaches Envoy as an SDS secret
//! (`gateway-cert|NS/NAME`) of the gateway's group only: rotating the Secret pushes that secret,
//! never the listener, and no other group ever receives the key.

use crate::bin;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::mesh::{https_gateway, https_gateway_speaking};
use portolan_e2e::ports::free_port;
use portolan_e2e::tls::{TestCa, https_get};
use portolan_e2e::{Mesh, eventually, example};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_http_and_tcp_gateway_listeners_reach_the_upstream() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let www = portolan_e2e::Upstream::start("www").await?;
    let ca = TestCa::new()?;
    let cert = ca.issue(&["www.example.com", "*.example.com"])?;
    let (m, ports) = https_gateway(bin(), &www, &cert).await?;
    let (https, http, tcp) = (ports.https, ports.http, ports.tcp);
    m.wait_config(&format!("\"gateway-{https}\"")).await?;

    // HTTPS: SNI www.example.com, verified against the test CA only; the Secret's certificate.
    let reply = eventually(
        "an HTTPS answer from www",
        Duration::from_secs(20),
        || async {
            match https_get(&ca, https, "www.example.com", "/").await {
                Ok(r) if r.status == 200 => Ok(r),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    assert_eq!(reply.body, "www");
    assert_eq!(reply.header("x-upstream"), Some("www"));
    assert_eq!(reply.header("x-seen-host"), Some("www.example.com"));
    assert!(
        reply.peer_certificate == cert.cert_der,
        "envoy served a certificate other than the Secret's"
    );
    // A hostname the route does not claim gets 404 on the same listener.
    let r = https_get(&ca, https, "shop.example.com", "/").await?;
    assert_eq!(r.status, 404, "{r:?}");

    // Plain HTTP on the other listener.
    let r = m
        .wait_get(
            http,
            "www.example.com",
            "/hello",
            "an HTTP answer from www",
            |r| r.status == 200,
        )
        .await?;
    assert_eq!(
        (r.upstream(), r.header("x-seen-path")),
        (Some("www"), Some("/hello"))
    );
    let r = portolan_e2e::http::get(http, "shop.example.com", "/").await?;
    assert_eq!(r.status, 404, "unclaimed host: {r:?}");

    // TCP: bytes proxied as they are, so plain HTTP with any Host works.
    let r = m
        .wait_get(
            tcp,
            "anything.test",
            "/via-tcp",
            "an answer over TCP",
            |r| r.status == 200,
        )
        .await?;
    assert_eq!(
        (
            r.upstream(),
            r.header("x-seen-host"),
            r.header("x-seen-path")
        ),
        (Some("www"), Some("anything.test"), Some("/via-tcp"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_private_key_is_not_shown_on_debug_pages() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let ca = TestCa::new()?;
    let cert = ca.issue(&["www.example.com"])?;
    let https = free_port();
    let gateway =
        example("routing/https-gateway.yaml").replace("port: 8443", &format!("port: {https}"));
    let m = Mesh::start(
        bin(),
        "ingress",
        &[
            ("www.yaml", gateway),
            (
                "www-tls.yaml",
                cert.secret_yaml("default", "www-example-com-tls"),
            ),
        ],
    )
    .await?;
    m.wait_config(&format!("\"gateway-{https}\"")).await?;
    // The key's base64 body, without PEM armour or line breaks.
    let key_line = cert
        .key_pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .unwrap_or_default()
        .to_string();
    for page in [
        "/debug/config_dump?group=ingress",
        "/debug/config-errors",
        "/debug/proxies",
    ] {
        let text = m.portolan.get_text(page).await?;
        if page.starts_with("/debug/config_dump") {
            assert!(text.contains(&format!("gateway-{https}")), "{text}");
        }
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(&key_line),
            "{page} shows the gateway's private key"
        );
    }
    Ok(())
}

/// The SDS name of the example gateway's certificate.
const WWW_SECRET: &str = "gateway-cert|default/www-example-com-tls";

/// The base64 body line of a PEM key (no armour), to look for in text.
fn key_line(key_pem: &str) -> String {
    key_pem
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .unwrap_or_default()
        .to_string()
}

/// The version of Envoy's dynamic listener `name` (admin `/config_dump`).
async fn listener_version(envoy: &portolan_e2e::Envoy, name: &str) -> anyhow::Result<String> {
    let text = envoy
        .admin("/config_dump?resource=dynamic_listeners")
        .await?;
    let dump: serde_json::Value = serde_json::from_str(&text)?;
    let version = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["active_state"]["version_info"].as_str())
        .map(str::to_string);
    version.ok_or_else(|| anyhow::anyhow!("no active listener {name}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_gateway_secret_pushes_one_secret_to_that_gateway_only() -> anyhow::Result<()> {
    rotate_gateway_secret(Protocol::Sotw).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_a_gateway_secret_over_delta_pushes_one_secret() -> anyhow::Result<()> {
    rotate_gateway_secret(Protocol::Delta).await
}

/// The gateway's Envoy speaks `protocol`: (a) new connections get the rotated certificate,
/// (b) one secret is pushed and the listener is not, (c) a proxy of another group never holds
/// the secret, (d) no key text on a debug page or in a log.
async fn rotate_gateway_secret(protocol: Protocol) -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let www = portolan_e2e::Upstream::start("www").await?;
    let ca = TestCa::new()?;
    let first = ca.issue(&["www.example.com"])?;
    let (m, ports) = https_gateway_speaking(bin(), &www, &first, protocol).await?;
    let https = ports.https;
    let listener = format!("gateway-{https}");
    m.wait_config(&format!("\"{listener}\"")).await?;
    // A proxy of another group, connected throughout.
    let other =
        portolan_e2e::Envoy::start(bin(), m.portolan.ports(), "other-1", "other", protocol).await?;
    let served = |cert: Vec<u8>, what: &'static str| {
        let ca = &ca;
        async move {
            eventually(what, Duration::from_secs(20), || {
                let cert = cert.clone();
                async move {
                    match https_get(ca, https, "www.example.com", "/").await {
                        Ok(r) if r.status == 200 && r.peer_certificate == cert => Ok(()),
                        Ok(r) => Err(format!("status {}, another certificate", r.status)),
                        Err(e) => Err(e.to_string()),
                    }
                }
            })
            .await
        }
    };
    served(first.cert_der.clone(), "the first certificate served")
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;

    // The key is an SDS secret of the gateway's proxy, not part of its listener.
    let dump = m
        .envoy
        .admin("/config_dump?resource=dynamic_active_secrets")
        .await?;
    assert!(
        dump.contains(WWW_SECRET),
        "no SDS secret {WWW_SECRET}: {dump}"
    );
    let listeners = m
        .envoy
        .admin("/config_dump?resource=dynamic_listeners")
        .await?;
    assert!(
        listeners.contains(WWW_SECRET),
        "listener names no SDS secret"
    );
    assert!(
        !listeners.contains("private_key"),
        "a key inline: {listeners}"
    );

    let lds_version = listener_version(&m.envoy, &listener).await?;
    let lds_pushes = m
        .portolan
        .metric("portolan_xds_pushes_total{type=\"lds\"}")
        .await?;
    assert!(lds_pushes.is_some_and(|n| n > 0.0), "no LDS push counted");
    let sds_pushes = m
        .portolan
        .metric("portolan_xds_pushes_total{type=\"sds\"}")
        .await?
        .unwrap_or(0.0);
    let lds_updates = m.envoy.stat("listener_manager.lds.update_success").await?;
    assert!(lds_updates.is_some_and(|n| n > 0), "no LDS update in Envoy");

    // Rotate: the same Secret, a new certificate and key.
    let second = ca.issue(&["www.example.com"])?;
    assert_ne!(second.cert_der, first.cert_der);
    m.config.write(
        "www-tls.yaml",
        &second.secret_yaml("default", "www-example-com-tls"),
    )?;
    // (a) New TLS connections get the new certificate.
    served(second.cert_der.clone(), "the rotated certificate served")
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    // (b) One secret was pushed; the listener was not.
    let sds_after = m
        .portolan
        .metric("portolan_xds_pushes_total{type=\"sds\"}")
        .await?
        .unwrap_or(0.0);
    assert!(
        sds_after > sds_pushes,
        "no SDS push: {sds_pushes} -> {sds_after}"
    );
    assert_eq!(
        m.portolan
            .metric("portolan_xds_pushes_total{type=\"lds\"}")
            .await?,
        lds_pushes,
        "the listener was pushed again for a rotated Secret"
    );
    assert_eq!(listener_version(&m.envoy, &listener).await?, lds_version);
    assert_eq!(
        m.envoy.stat("listener_manager.lds.update_success").await?,
        lds_updates
    );

    // (c) The other group's proxy never received the secret (nor does its snapshot hold it).
    let other_dump = other.admin("/config_dump?include_eds").await?;
    assert!(
        !other_dump.contains("gateway-cert|"),
        "another group got a gateway secret: {other_dump}"
    );
    let other_group = m
        .portolan
        .get_text("/debug/config_dump?group=other")
        .await?;
    assert!(!other_group.contains("gateway-cert|"), "{other_group}");

    // (d) No key text on any debug page or in either log.
    let keys = [key_line(&first.key_pem), key_line(&second.key_pem)];
    for page in [
        "/debug/config_dump?group=ingress",
        "/debug/config_dump?group=other",
        "/debug/config-errors",
        "/debug/proxies",
    ] {
        let text = m.portolan.get_text(page).await?;
        if page == "/debug/config_dump?group=ingress" {
            assert!(text.contains(WWW_SECRET), "{text}");
        }
        assert!(
            !text.contains("PRIVATE KEY") && keys.iter().all(|k| !text.contains(k)),
            "{page} shows a gateway private key"
        );
    }
    let logs = [m.portolan.log_text(), m.envoy.log_lines("").join("\n")];
    for log in &logs {
        assert!(
            !log.contains("PRIVATE KEY") && keys.iter().all(|k| !log.contains(k)),
            "a private key in a log"
        );
    }
    Ok(())
}
