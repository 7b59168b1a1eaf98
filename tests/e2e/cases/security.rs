//! The xDS port's security and limits with real processes on loopback: stock Envoy over TLS and
//! mutual TLS (bootstrap from `portolan bootstrap --xds-ca ...`), certificate rotation without a
//! restart, client identities restricted to their proxy group, and the stream and request-rate
//! limits. Every wait polls with a deadline.

use crate::bin;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use portolan_e2e::envoy::Protocol;
use portolan_e2e::mesh::CONFIG_DEADLINE;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::tls::TestCa;
use portolan_e2e::xds_tls::{self, TlsDir};
use portolan_e2e::{Envoy, Portolan, Upstream, endpoints_yaml, eventually, service_yaml};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
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

/// One ADS stream driven by hand: requests go through `tx`, responses come from `rx`.
struct Stream {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

fn cds_request(id: &str, cluster: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: id.to_string(),
            cluster: cluster.to_string(),
            ..Default::default()
        }),
        type_url: CLUSTER_TYPE.to_string(),
        ..Default::default()
    }
}

impl Stream {
    /// Opens an ADS stream and subscribes to clusters as node `id` of `cluster`.
    async fn open(channel: Channel, id: &str, cluster: &str) -> Result<Self, tonic::Status> {
        let (tx, requests) = mpsc::channel(1024);
        tx.send(cds_request(id, cluster))
            .await
            .map_err(|_| tonic::Status::internal("request channel closed"))?;
        let rx = AggregatedDiscoveryServiceClient::new(channel)
            .stream_aggregated_resources(ReceiverStream::new(requests))
            .await?
            .into_inner();
        Ok(Self { tx, rx })
    }

    /// The next response, or the status that ended the stream.
    async fn next(&mut self) -> Result<DiscoveryResponse, tonic::Status> {
        match tokio::time::timeout(WAIT, self.rx.message()).await {
            Ok(Ok(Some(r))) => Ok(r),
            Ok(Ok(None)) => Err(tonic::Status::unknown("stream ended without a status")),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "no response within the wait",
            )),
        }
    }

    /// ACKs a response.
    async fn ack(&self, r: &DiscoveryResponse) -> anyhow::Result<()> {
        let mut ack = cds_request("", "");
        ack.node = None;
        ack.version_info = r.version_info.clone();
        ack.response_nonce = r.nonce.clone();
        self.tx.send(ack).await?;
        Ok(())
    }
}

async fn plain_channel(port: u16) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect()
        .await?)
}

// === TLS ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_over_tls_routes_and_a_rotated_certificate_serves_new_connections()
-> anyhow::Result<()> {
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
        Ok(channel) => match Stream::open(channel, "anon", "web").await {
            Err(_) => true,
            Ok(mut s) => s.next().await.is_err(),
        },
    };
    assert!(refused, "a client without a certificate is refused");

    // A certificate for group "web" asking for "batch": PERMISSION_DENIED.
    let web = ca.issue_client(&["web"], &[])?;
    let channel = xds_tls::channel(&ca, port, Some(&web)).await?;
    let mut wrong = Stream::open(channel.clone(), "web-2", "batch").await?;
    let status = wrong.next().await.expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("\"batch\""),
        "{}",
        status.message()
    );

    // The same certificate asking for its own group is served.
    let mut right = Stream::open(channel, "web-3", "web").await?;
    let response = right.next().await?;
    assert_eq!(response.type_url, CLUSTER_TYPE);
    Ok(())
}

// === limits ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_stream_is_closed_and_others_keep_getting_updates() -> anyhow::Result<()> {
    let a = Upstream::start("a").await?;
    let config = web_config(&a)?;
    let args = ["--request-rate", "5", "--request-burst", "10"];
    let portolan = Portolan::start_with(bin(), &config, Ports::free(), &args).await?;
    let port = portolan.ports().xds;

    let mut calm = Stream::open(plain_channel(port).await?, "calm", "web").await?;
    let first = calm.next().await?;
    calm.ack(&first).await?;

    let mut flood = Stream::open(plain_channel(port).await?, "flood", "web").await?;
    let response = flood.next().await?;
    for _ in 0..100 {
        if flood.ack(&response).await.is_err() {
            break;
        }
    }
    let status = loop {
        match flood.next().await {
            Ok(_) => continue,
            Err(status) => break status,
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
    // (Each wait in `next` is bounded; the stream answers only when its clusters change.)
    let next = tokio::time::timeout(CONFIG_DEADLINE, calm.next())
        .await
        .map_err(|_| anyhow::anyhow!("no update for the calm stream"))??;
    assert_ne!(next.version_info, first.version_info);
    assert!(next.resources.len() > first.resources.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_with_resource_exhausted() -> anyhow::Result<()> {
    let a = Upstream::start("a").await?;
    let config = web_config(&a)?;
    let portolan =
        Portolan::start_with(bin(), &config, Ports::free(), &["--max-streams", "2"]).await?;
    let channel = plain_channel(portolan.ports().xds).await?;
    let mut one = Stream::open(channel.clone(), "one", "web").await?;
    let mut two = Stream::open(channel.clone(), "two", "web").await?;
    one.next().await?;
    two.next().await?;
    let third = Stream::open(channel.clone(), "three", "web").await;
    let status = match third {
        Err(status) => status,
        Ok(mut s) => s.next().await.expect_err("refused"),
    };
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
            let mut s = Stream::open(channel, "four", "web")
                .await
                .map_err(|e| e.to_string())?;
            s.next().await.map(|_| ()).map_err(|e| e.to_string())
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_groups_beyond_the_limit_are_refused() -> anyhow::Result<()> {
    let a = Upstream::start("a").await?;
    let config = web_config(&a)?;
    let portolan =
        Portolan::start_with(bin(), &config, Ports::free(), &["--max-groups", "3"]).await?;
    let channel = plain_channel(portolan.ports().xds).await?;
    let mut web = Stream::open(channel.clone(), "web-1", "web").await?;
    web.next().await?;
    // Groups the server may already hold (the pipeline's own) count too: within four new
    // groups one must be refused, and the streams before it served.
    let mut open = Vec::new();
    let mut refused = None;
    for i in 0..4 {
        let mut s = Stream::open(channel.clone(), &format!("g{i}-1"), &format!("g{i}")).await?;
        match s.next().await {
            Ok(_) => open.push(s),
            Err(status) => {
                refused = Some(status);
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
    let mut again = Stream::open(channel, "web-2", "web").await?;
    again.next().await?;
    Ok(())
}
