//! End to end, a Gateway: an Envoy in proxy group `ingress` opens the HTTPS, HTTP and TCP
//! listeners of `examples/routing/https-gateway.yaml` (ports swapped for free ones), serves the
//! certificate of a `kubernetes.io/tls` Secret made by the test's own CA, and routes
//! `www.example.com` to a real upstream.

use crate::bin;
use portolan_e2e::mesh::https_gateway;
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
