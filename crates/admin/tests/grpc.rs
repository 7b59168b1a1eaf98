//! The admin API and CSDS over real gRPC on loopback, against a real `XdsServer` that an
//! Envoy-like ADS client (`portolan-xds-client`) ACKs clusters and endpoints on, and NACKs
//! listeners on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::admin::v3::ClientResourceStatus;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
use envoy_types::pb::envoy::service::status::v3::{ClientStatusRequest, ConfigStatus};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::{NodeMatcher, StringMatcher};
use portolan_admin::client::{Client, ClientError};
use portolan_admin::proto::ProxyStatusResponse;
use portolan_admin::{AdminService, table};
use portolan_xds::testing::snapshot_with;
use portolan_xds::{Cache, ResourceType, SyncState, XdsMetrics, XdsServer, serve_with};
use portolan_xds_client::{self as xds_client, Follow, SotwClient, SotwSubscriber};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use ResourceType::{Cluster, Endpoint, Listener, Route};

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    cache: Arc<Cache>,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// xDS, CSDS and the admin API on one port, as `portolan serve` runs them.
async fn start() -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cache = Cache::new();
    let server = XdsServer::new(cache.clone(), XdsMetrics::unregistered());
    let router = server
        .router()
        .add_service(AdminService::new(cache.clone()).into_server());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_with(listener, server, router, async move {
        let _ = stopped.await;
    }));
    Harness {
        cache,
        addr,
        _stop: stop,
    }
}

/// A proxy in group `web` that ACKed clusters and endpoints, NACKed listeners, and so never
/// asked for routes.
async fn half_synced(harness: &Harness) -> SotwClient {
    harness
        .cache
        .set("web", snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")]));
    let channel = xds_client::channel(harness.addr, None)
        .await
        .expect("connect");
    let node = xds_client::node::envoy("sidecar-1", "web");
    let routes = vec!["l".to_string()];
    let subscriber = SotwSubscriber::new(node, Follow::Envoy { routes });
    let mut ads = SotwClient::connect(channel, subscriber)
        .await
        .expect("stream");
    let cds = ads.next(WAIT).await.expect("clusters");
    assert_eq!(cds.type_url, Cluster.type_url());
    // The clusters lead to the endpoint and listener subscriptions.
    for _ in 0..2 {
        let response = ads.recv(WAIT).await.expect("a response");
        if response.type_url == Listener.type_url() {
            ads.reject(&response, "bad listener: port in use").await
        } else {
            assert_eq!(response.type_url, Endpoint.type_url());
            ads.accept(&response).await
        }
        .expect("answered");
    }
    ads
}

/// Polls the admin API until `done` holds for the status.
async fn status_when(
    client: &mut Client,
    done: impl Fn(&ProxyStatusResponse) -> bool,
) -> ProxyStatusResponse {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = client.proxy_status().await.expect("proxy status");
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status not reached: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn settled(status: &ProxyStatusResponse) -> bool {
    status.streams.iter().any(|s| {
        table::state(s, Cluster) == SyncState::Synced
            && table::state(s, Endpoint) == SyncState::Synced
            && table::state(s, Listener) == SyncState::Nacked
    })
}

#[tokio::test]
async fn proxy_status_shows_synced_nacked_and_not_sent() {
    let harness = start().await;
    let _ads = half_synced(&harness).await;
    let mut client = Client::connect(&harness.addr.to_string())
        .await
        .expect("admin client");
    let status = status_when(&mut client, settled).await;

    let stream = &status.streams[0];
    assert_eq!(stream.node_id, "sidecar-1");
    assert_eq!(stream.group, "web");
    assert_eq!(stream.client, "envoy");
    assert_eq!(stream.stream, "ads");
    assert!(!stream.delta);
    assert!(stream.connected_at > 0);
    assert_eq!(stream.group_versions.len(), 4);
    let listeners = stream
        .types
        .iter()
        .find(|t| t.type_url == Listener.type_url())
        .expect("listener status");
    let nack = listeners.last_nack.as_ref().expect("nack");
    assert_eq!(nack.message, "bad listener: port in use");
    assert_eq!(Some(&nack.version), listeners.sent_version.as_ref());
    assert_eq!(listeners.acked_version, None);

    let rows = table::rows(&status);
    assert_eq!(
        rows[0].states,
        ["SYNCED", "SYNCED", "NACKED", "NOT SENT"].map(String::from)
    );
    let text = table::render(&status);
    assert!(
        text.contains("NACK sidecar-1 LDS version") && text.contains("bad listener: port in use"),
        "{text}"
    );

    // A new snapshot the proxy has not ACKed makes its clusters stale.
    harness
        .cache
        .set("web", snapshot_with(&[("a", 1), ("c", 3)], &[("l", "a")]));
    let status = status_when(&mut client, |s| {
        s.streams
            .iter()
            .any(|s| table::state(s, Cluster) == SyncState::Stale)
    })
    .await;
    assert_eq!(table::rows(&status)[0].states[0], "STALE");
}

#[tokio::test]
async fn config_dump_returns_the_group_and_what_the_proxy_acked() {
    let harness = start().await;
    let _ads = half_synced(&harness).await;
    let mut client = Client::connect(&harness.addr.to_string())
        .await
        .expect("admin client");
    status_when(&mut client, settled).await;

    let dump = client.config_dump("sidecar-1").await.expect("dump");
    assert_eq!(dump.group, "web");
    let types: Vec<&str> = dump.types.iter().map(|t| t.type_url.as_str()).collect();
    assert_eq!(types, ResourceType::SERVED.map(|t| t.type_url()).to_vec());
    let clusters = &dump.types[0];
    let names: Vec<&str> = clusters.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
    let json: serde_json::Value =
        serde_json::from_str(&clusters.resources[0].json).expect("resource JSON");
    assert_eq!(json["name"], "a");
    let status = clusters.status.as_ref().expect("clusters subscribed");
    assert_eq!(
        status.acked_version.as_deref(),
        Some(clusters.version.as_str())
    );
    assert!(
        dump.types[2]
            .status
            .as_ref()
            .expect("lds")
            .last_nack
            .is_some()
    );
    assert!(
        dump.types[3].status.is_none(),
        "routes were never requested"
    );

    let as_json = portolan_admin::dump::to_json(&dump);
    assert_eq!(as_json["types"][0]["resources"][1]["resource"]["name"], "b");

    match client.config_dump("nobody").await {
        Err(ClientError::NotFound { message }) => assert!(message.contains("nobody"), "{message}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn client_reports_a_server_that_is_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let error = Client::connect(&addr.to_string())
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("cannot connect"), "{error}");
}

fn node_id_matcher(pattern: MatchPattern) -> NodeMatcher {
    NodeMatcher {
        node_id: Some(StringMatcher {
            match_pattern: Some(pattern),
            ignore_case: false,
        }),
        node_metadatas: vec![],
    }
}

#[tokio::test]
async fn csds_reports_every_resource_with_its_status() {
    let harness = start().await;
    let _ads = half_synced(&harness).await;
    let mut admin = Client::connect(&harness.addr.to_string())
        .await
        .expect("admin client");
    status_when(&mut admin, settled).await;

    let mut csds = ClientStatusDiscoveryServiceClient::connect(format!("http://{}", harness.addr))
        .await
        .expect("csds client");
    let response = csds
        .fetch_client_status(ClientStatusRequest::default())
        .await
        .expect("fetch")
        .into_inner();
    assert_eq!(response.config.len(), 1);
    let config = &response.config[0];
    assert_eq!(config.node.as_ref().expect("node").id, "sidecar-1");
    let entries: Vec<(ResourceType, &str, ConfigStatus, ClientResourceStatus)> = config
        .generic_xds_configs
        .iter()
        .map(|c| {
            (
                ResourceType::from_type_url(&c.type_url).expect("served type"),
                c.name.as_str(),
                c.config_status(),
                c.client_status(),
            )
        })
        .collect();
    use ClientResourceStatus::{Acked, Nacked};
    assert_eq!(
        entries,
        vec![
            (Cluster, "a", ConfigStatus::Synced, Acked),
            (Cluster, "b", ConfigStatus::Synced, Acked),
            (Endpoint, "a", ConfigStatus::Synced, Acked),
            (Endpoint, "b", ConfigStatus::Synced, Acked),
            (Listener, "l", ConfigStatus::Error, Nacked),
        ]
    );
    assert!(entries.iter().all(|(ty, ..)| *ty != Route));
    let listener = &config.generic_xds_configs[4];
    let error = listener.error_state.as_ref().expect("error state");
    assert_eq!(error.details, "bad listener: port in use");
    let any = listener.xds_config.as_ref().expect("resource contents");
    assert_eq!(any.type_url, Listener.type_url());

    // Node matchers select by node id.
    let none = csds
        .fetch_client_status(ClientStatusRequest {
            node_matchers: vec![node_id_matcher(MatchPattern::Exact("other".into()))],
            ..Default::default()
        })
        .await
        .expect("fetch")
        .into_inner();
    assert!(none.config.is_empty());

    // The stream answers every request.
    let (tx, rx) = mpsc::channel(4);
    let mut responses = csds
        .stream_client_status(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    for prefix in ["side", "nobody"] {
        tx.send(ClientStatusRequest {
            node_matchers: vec![node_id_matcher(MatchPattern::Prefix(prefix.into()))],
            exclude_resource_contents: true,
            ..Default::default()
        })
        .await
        .expect("send");
        let response = tokio::time::timeout(WAIT, responses.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        let expected = usize::from(prefix == "side");
        assert_eq!(response.config.len(), expected, "prefix {prefix}");
        if let Some(config) = response.config.first() {
            assert!(
                config
                    .generic_xds_configs
                    .iter()
                    .all(|c| c.xds_config.is_none())
            );
        }
    }
}
