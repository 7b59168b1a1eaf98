//! The xDS port's security and limits with real processes on loopback: stock Envoy over TLS and
//! mutual TLS (bootstrap from `portolan bootstrap --xds-ca ...`), certificate rotation without a
//! restart, client identities restricted to their proxy group, and the stream and request-rate
//! limits. Every wait polls with a deadline.

use crate::bin;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::mesh::CONFIG_DEADLINE;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::tls::TestCa;
use portolan_e2e::xds_tls::{self, TlsDir};
use portolan_e2e::{Envoy, Portolan, Upstream, endpoints_yaml, eventually, service_yaml};
use portolan_xds_client::{ClientError, SotwStream, channel, node, request, type_url};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A config directory with Service `web` backed by `upstream`.
fn web_config(upstream: &Upstream) -> anyhow::Result<ConfigDir> {
    let config = ConfigDir::new()?;
    config.write("web/service.yaml", &service_yaml("default", "web", 80))?;
    config.write(
        "web/endpoints.yaml",
        &endpoints_yaml("default", "web", &[upstream]),
    )?;
    Ok(config)
}

/// Opens an ADS stream subscribed to clusters as node `id` of `cluster`.
async fn open(channel: Channel, id: &str, cluster: &str) -> Result<SotwStream, ClientError> {
    let first = DiscoveryRequest {
        node: Some(node::envoy(id, cluster)),
        ..request::sotw(type_url::CLUSTER, Vec::new())
    };
    SotwStream::ads(channel, first).await
}

/// The gRPC status a stream was refused or ended with.
fn status(error: ClientError) -> tonic::Status {
    match error {
        ClientError::Status(status) => status,
        other => panic!("expected a gRPC status, got: {other}"),
    }
}

async fn plain_channel(port: u16) -> anyhow::Result<Channel> {
    Ok(channel(([127, 0, 0, 1], port), None).await?)
}

// === TLS ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_over_tls_routes_and_a_rotated_certificate_serves_new_connections()
-> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let b = Upstream::start("b").await?;
    let ca = TestCa::new()?;
    let files = TlsDir::new(&ca)?;
    let config = web_config(&a)?;
    let portolan = Portolan::start_with(
        bin(),
        &config,
        Ports::free(),
        &strs(&files.serve_args(false)),
    )
    .await?;
    let envoy = Envoy::start_with(
        bin(),
        portolan.ports(),
        "web-1",
        "web",
        Protocol::Sotw,
        &strs(&files.bootstrap_args(None)),
    )
    .await?;
    envoy.wait_for_response("web", 200, "a").await?;
    let port = portolan.ports().xds;
    let first = xds_tls::presented_certificate(&ca, port).await?;

    // Rotate: a new pair from the same CA replaces the files; no restart.
    let rotated = ca.issue(&[xds_tls::XDS_SNI])?;
    files.write_pair("server", &rotated)?;
    let seen = eventually("a new connection to see the new certificate", WAIT, || {
        let (ca, first) = (&ca, &first);
        async move {
            let cert = xds_tls::presented_certificate(ca, port)
                .await
                .map_err(|e| e.to_string())?;
            if cert == *first {
                return Err("still the old certificate".to_string());
            }
            Ok(cert)
        }
    })
    .await?;
    assert_eq!(
        seen, rotated.cert_der,
        "the new connection got the rotated certificate"
    );

    // The Envoy connected before the rotation still gets config changes.
    config.write(
        "web/endpoints.yaml",
        &endpoints_yaml("default", "web", &[&b]),
    )?;
    envoy.wait_for_response("web", 200, "b").await?;
    Ok(())
}

// === mutual TLS and authorization ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_named_clients_only_for_their_group() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let ca = TestCa::new()?;
    let files = TlsDir::new(&ca)?;
    // Envoy's certificate names group "web" in a SPIFFE URI SAN.
    files.write_pair(
        "envoy",
        &ca.issue_client(&[], &["spiffe://cluster.local/ns/default/sa/web"])?,
    )?;
    let config = web_config(&a)?;
    let portolan = Portolan::start_with(
        bin(),
        &config,
        Ports::free(),
        &strs(&files.serve_args(true)),
    )
    .await?;
    let port = portolan.ports().xds;
    let envoy = Envoy::start_with(
        bin(),
        portolan.ports(),
        "web-1",
        "web",
        Protocol::Sotw,
        &strs(&files.bootstrap_args(Some("envoy"))),
    )
    .await?;
    envoy.wait_for_response("web", 200, "a").await?;

    // No client certificate: the handshake fails (with TLS 1.3 the client learns it on its
    // first read, so the stream fails instead of the connect).
    let refused = match xds_tls::channel(&ca, port, None).await {
        Err(_) => true,
        Ok(channel) => match open(channel, "anon", "web").await {
            Err(_) => true,
            Ok(mut s) => s.recv(WAIT).await.is_err(),
        },
    };
    assert!(refused, "a client without a certificate is refused");

    // A certificate for group "web" asking for "batch": PERMISSION_DENIED.
    let web = ca.issue_client(&["web"], &[])?;
    let channel = xds_tls::channel(&ca, port, Some(&web)).await?;
    let mut wrong = open(channel.clone(), "web-2", "batch").await?;
    let status = status(wrong.recv(WAIT).await.expect_err("denied"));
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("\"batch\""),
        "{}",
        status.message()
    );

    // The same certificate asking for its own group is served.
    let mut right = open(channel, "web-3", "web").await?;
    let response = right.recv(WAIT).await?;
    assert_eq!(response.type_url, type_url::CLUSTER);

    // The operator tools speak the same mutual TLS (`bootstrap`'s flags); in plaintext they
    // fail and say which flags are missing.
    let server = format!("127.0.0.1:{port}");
    let mut tls = vec![
        "proxy-status".to_string(),
        "--server".to_string(),
        server.clone(),
    ];
    tls.extend(files.bootstrap_args(Some("envoy")));
    let out = std::process::Command::new(bin()).args(&tls).output()?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("web-1"),
        "proxy-status over mutual TLS: {table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(bin())
        .args(["config-dump", "--node", "web-1", "--server", &server])
        .args(files.bootstrap_args(Some("envoy")))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"web\""));
    let out = std::process::Command::new(bin())
        .args(["proxy-status", "--server", &server])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--xds-ca"), "{err}");
    Ok(())
}

// === limits ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_stream_is_closed_and_others_keep_getting_updates() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let config = web_config(&a)?;
    let args = ["--request-rate", "5", "--request-burst", "10"];
    let portolan = Portolan::start_with(bin(), &config, Ports::free(), &args).await?;
    let port = portolan.ports().xds;

    let mut calm = open(plain_channel(port).await?, "calm", "web").await?;
    let first = calm.recv(WAIT).await?;
    calm.send(request::sotw_ack(&first, Vec::new())).await?;

    let mut flood = open(plain_channel(port).await?, "flood", "web").await?;
    let response = flood.recv(WAIT).await?;
    for _ in 0..100 {
        if flood
            .send(request::sotw_ack(&response, Vec::new()))
            .await
            .is_err()
        {
            break;
        }
    }
    let status = loop {
        match flood.recv(WAIT).await {
            Ok(_) => continue,
            Err(e) => break status(e),
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("rate limit"),
        "{}",
        status.message()
    );

    // The calm stream still gets the next change.
    config.write("batch/service.yaml", &service_yaml("default", "batch", 80))?;
    // The stream answers only when its clusters change.
    let next = calm.recv(CONFIG_DEADLINE).await?;
    assert_ne!(next.version_info, first.version_info);
    assert!(next.resources.len() > first.resources.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_with_resource_exhausted() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let config = web_config(&a)?;
    let portolan =
        Portolan::start_with(bin(), &config, Ports::free(), &["--max-streams", "2"]).await?;
    let channel = plain_channel(portolan.ports().xds).await?;
    let mut one = open(channel.clone(), "one", "web").await?;
    let mut two = open(channel.clone(), "two", "web").await?;
    one.recv(WAIT).await?;
    two.recv(WAIT).await?;
    let status = status(match open(channel.clone(), "three", "web").await {
        Err(e) => e,
        Ok(mut s) => s.recv(WAIT).await.expect_err("refused"),
    });
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("too many xDS streams (limit 2)"),
        "{}",
        status.message()
    );
    // A slot frees when a stream ends.
    drop(one);
    eventually("a new stream once one closed", WAIT, || {
        let channel = channel.clone();
        async move {
            let mut s = open(channel, "four", "web")
                .await
                .map_err(|e| e.to_string())?;
            s.recv(WAIT).await.map(|_| ()).map_err(|e| e.to_string())
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_groups_beyond_the_limit_are_refused() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let config = web_config(&a)?;
    let portolan =
        Portolan::start_with(bin(), &config, Ports::free(), &["--max-groups", "3"]).await?;
    let channel = plain_channel(portolan.ports().xds).await?;
    let mut web = open(channel.clone(), "web-1", "web").await?;
    web.recv(WAIT).await?;
    // Groups the server may already hold (the pipeline's own) count too: within four new
    // groups one must be refused, and the streams before it served.
    let mut served = Vec::new();
    let mut refused = None;
    for i in 0..4 {
        let mut s = open(channel.clone(), &format!("g{i}-1"), &format!("g{i}")).await?;
        match s.recv(WAIT).await {
            Ok(_) => served.push(s),
            Err(e) => {
                refused = Some(status(e));
                break;
            }
        }
    }
    let status = refused.expect("a group beyond the limit is refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("too many proxy groups (limit 3)"),
        "{}",
        status.message()
    );
    // A known group is still served.
    let mut again = open(channel, "web-2", "web").await?;
    again.recv(WAIT).await?;
    Ok(())
}
