//! The xDS server over real gRPC on loopback, driven by the shared simulated client
//! (`portolan-xds-client`): raw streams and the requests an Envoy sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_client::RouteDiscoveryServiceClient;
use portolan_xds::testing::{response_names, snapshot_with};
use portolan_xds::{
    Cache, Grouped, NodeGrouping, PeerIdentity, ResourceType, XdsMetrics, XdsServer, serve,
};
use portolan_xds_client::{ClientError, DeltaStream, SotwStream, node, request};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use ResourceType::{Cluster, Endpoint as Cla, Listener, Route};

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    cache: Arc<Cache>,
    metrics: XdsMetrics,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Harness {
    start_with(Arc::new(portolan_xds::ByCluster)).await
}

/// A server whose node-to-group hook is `grouping`.
async fn start_with(grouping: Arc<dyn NodeGrouping>) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cache = Cache::new();
    let metrics = XdsMetrics::unregistered();
    let server = XdsServer::new(cache.clone(), metrics.clone()).with_grouping(grouping);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, server, async move {
        let _ = stopped.await;
    }));
    Harness {
        cache,
        metrics,
        addr,
        _stop: stop,
    }
}

async fn channel(addr: SocketAddr, window: Option<u32>) -> Channel {
    portolan_xds_client::channel(addr, window)
        .await
        .expect("connect")
}

fn node(id: &str) -> Option<Node> {
    Some(node::envoy(id, "web"))
}

fn two_clusters() -> portolan_xds::Snapshot {
    snapshot_with(&[("a", 1), ("b", 2)], &[("l", "a")])
}

// === SotW client ===

/// A SotW request of node `sidecar-1` for `ty` and `names`, ACKing `last` when given.
fn sotw_request(
    ty: ResourceType,
    names: &[&str],
    last: Option<&DiscoveryResponse>,
) -> DiscoveryRequest {
    let names = names.iter().map(|n| n.to_string()).collect();
    let request = match last {
        Some(last) => request::sotw_ack(last, names),
        None => request::sotw(ty.type_url(), names),
    };
    DiscoveryRequest {
        node: node("sidecar-1"),
        ..request
    }
}

/// One SotW stream driven by hand.
struct Sotw(SotwStream);

impl Sotw {
    /// An ADS stream whose first request is for `ty` and `names`.
    async fn ads(channel: Channel, ty: ResourceType, names: &[&str]) -> Self {
        let first = sotw_request(ty, names, None);
        Self(SotwStream::ads(channel, first).await.expect("stream"))
    }

    /// A stream on the per-type service of `service`, whose first request is for `ty` and
    /// `names`.
    async fn per_type(
        channel: Channel,
        service: ResourceType,
        ty: ResourceType,
        names: &[&str],
    ) -> Self {
        let first = sotw_request(ty, names, None);
        let stream = SotwStream::per_type(channel, service.type_url(), first).await;
        Self(stream.expect("stream"))
    }

    async fn request(&self, ty: ResourceType, names: &[&str], last: Option<&DiscoveryResponse>) {
        self.0
            .send(sotw_request(ty, names, last))
            .await
            .expect("send");
    }

    /// NACKs `last`, still running version `accepted`.
    async fn nack(&self, last: &DiscoveryResponse, accepted: &str, message: &str) {
        let nack = request::sotw_nack(last, accepted, Vec::new(), message);
        self.0.send(nack).await.expect("send");
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        self.0.recv(WAIT).await.expect("a response in time")
    }

    /// Subscribes and ACKs all four types (the first CDS request was sent when the stream
    /// opened); returns the last response per type.
    async fn sync_all(&mut self) -> HashMap<ResourceType, DiscoveryResponse> {
        let mut last = HashMap::new();
        for (ty, names) in [
            (Cluster, vec![]),
            (Cla, vec!["a", "b"]),
            (Listener, vec![]),
            (Route, vec!["l"]),
        ] {
            if ty != Cluster {
                self.request(ty, &names, None).await;
            }
            let response = self.recv().await;
            assert_eq!(response.type_url, ty.type_url());
            self.request(ty, &names, Some(&response)).await;
            last.insert(ty, response);
        }
        last
    }
}

fn type_of(response: &DiscoveryResponse) -> Option<ResourceType> {
    ResourceType::from_type_url(&response.type_url)
}

async fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn ads_sotw_serves_acks_and_pushes_only_what_changed() {
    let harness = start().await;
    // Nothing is served before the first snapshot: subscribe first, then set.
    let mut client = Sotw::ads(channel(harness.addr, None).await, Cluster, &[]).await;
    eventually(|| {
        harness
            .cache
            .groups()
            .contains(&"web".to_string())
            .then_some(())
    })
    .await;
    harness.cache.set("web", two_clusters());
    let cds = client.recv().await;
    assert_eq!(response_names(&cds), vec!["a", "b"]);
    client.request(Cluster, &[], Some(&cds)).await;

    for (ty, names, expected) in [
        (Cla, vec!["a", "b"], vec!["a", "b"]),
        (Listener, vec![], vec!["l"]),
        (Route, vec!["l"], vec!["l"]),
    ] {
        client.request(ty, &names, None).await;
        let response = client.recv().await;
        assert_eq!(type_of(&response), Some(ty));
        assert_eq!(response_names(&response), expected);
        client.request(ty, &names, Some(&response)).await;
    }
    let proxies = eventually(|| {
        let proxies = harness.cache.proxies();
        let acked = proxies
            .first()?
            .types
            .iter()
            .all(|t| t.acked_version.is_some());
        (proxies.len() == 1 && proxies[0].types.len() == 4 && acked).then_some(proxies)
    })
    .await;
    assert_eq!(proxies[0].node_id, "sidecar-1");
    assert_eq!(proxies[0].group, "web");
    assert_eq!(proxies[0].stream, "ads");
    assert_eq!(proxies[0].client, "envoy");

    // One CLA changes: one EDS response with that CLA.
    harness
        .cache
        .set("web", snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]));
    let eds = client.recv().await;
    assert_eq!(type_of(&eds), Some(Cla));
    assert_eq!(response_names(&eds), vec!["a"]);
    client.request(Cla, &["a", "b"], Some(&eds)).await;

    // Nothing else was pushed: the next message answers this new RDS subscription.
    client.request(Route, &["l", "missing"], None).await;
    let rds = client.recv().await;
    assert_eq!(type_of(&rds), Some(Route));
    assert!(harness.metrics.pushes(Cla) >= 2);
}

/// A hook that groups by node id, whatever the node's cluster, and has a warning to give.
#[derive(Debug)]
struct ByNodeId;

impl NodeGrouping for ByNodeId {
    fn group(&self, node: &Node, _peer: Option<&PeerIdentity>) -> Grouped {
        Grouped {
            key: format!("by-id/{}", node.id),
            needs_delta: None,
            warnings: vec![format!("node.cluster: {:?} is not used", node.cluster)],
        }
    }
}

#[tokio::test]
async fn the_wirings_hook_puts_each_node_in_its_group() {
    let harness = start_with(Arc::new(ByNodeId)).await;
    let mut client = Sotw::ads(channel(harness.addr, None).await, Cluster, &[]).await;
    eventually(|| {
        let groups = harness.cache.groups();
        (groups == ["by-id/sidecar-1"]).then_some(())
    })
    .await;
    // The node's cluster (`web`) is not its group: nothing set there reaches it.
    harness
        .cache
        .set("web", snapshot_with(&[("wrong", 1)], &[]));
    harness.cache.set("by-id/sidecar-1", two_clusters());
    let cds = client.recv().await;
    assert_eq!(response_names(&cds), vec!["a", "b"]);
    let proxies = eventually(|| {
        let proxies = harness.cache.proxies();
        (proxies.len() == 1).then_some(proxies)
    })
    .await;
    assert_eq!(proxies[0].group, "by-id/sidecar-1");
    assert_eq!(proxies[0].warnings, ["node.cluster: \"web\" is not used"]);
}

#[tokio::test]
async fn nack_is_recorded_and_not_resent_until_a_new_version() {
    let harness = start().await;
    harness.cache.set("web", two_clusters());
    let mut client = Sotw::ads(channel(harness.addr, None).await, Cluster, &[]).await;
    let last = client.sync_all().await;

    harness.cache.set(
        "web",
        snapshot_with(&[("a", 1), ("b", 2), ("c", 3)], &[("l", "a")]),
    );
    let cds = client.recv().await;
    assert_eq!(response_names(&cds), vec!["a", "b", "c"]);
    client
        .nack(&cds, &last[&Cluster].version_info, "cluster c is bad")
        .await;

    let nack = eventually(|| {
        let proxies = harness.cache.proxies();
        let cluster = proxies
            .first()?
            .types
            .iter()
            .find(|t| t.type_url == Cluster.type_url())?
            .clone();
        cluster
            .last_nack
            .clone()
            .map(|n| (n, cluster.acked_version.clone()))
    })
    .await;
    assert_eq!(nack.0.message, "cluster c is bad");
    assert_eq!(nack.0.version, cds.version_info);
    assert_eq!(
        nack.1.as_deref(),
        Some(last[&Cluster].version_info.as_str())
    );
    assert_eq!(harness.metrics.nacks(Cluster), 1);

    // The same content again is not resent: the next message answers a new subscription.
    harness.cache.set(
        "web",
        snapshot_with(&[("a", 1), ("b", 2), ("c", 3)], &[("l", "a")]),
    );
    client
        .request(Route, &["l", "other"], Some(&last[&Route]))
        .await;
    let rds = client.recv().await;
    assert_eq!(type_of(&rds), Some(Route));

    // A new version is.
    harness.cache.set(
        "web",
        snapshot_with(&[("a", 1), ("b", 2), ("d", 4)], &[("l", "a")]),
    );
    let cds = client.recv().await;
    assert_eq!(response_names(&cds), vec!["a", "b", "d"]);
}

#[tokio::test]
async fn per_type_cds_service_works() {
    let harness = start().await;
    harness.cache.set("web", two_clusters());
    let mut client = Sotw::per_type(channel(harness.addr, None).await, Cluster, Cluster, &[]).await;
    let cds = client.recv().await;
    assert_eq!(response_names(&cds), vec!["a", "b"]);
    client.request(Cluster, &[], Some(&cds)).await;
    harness.cache.set("web", snapshot_with(&[("a", 1)], &[]));
    let cds = client.recv().await;
    assert_eq!(response_names(&cds), vec!["a"]);
    let proxies = harness.cache.proxies();
    assert_eq!(proxies[0].stream, "cds");
}

/// Every per-type service streams its own type (and only it) on its own path, with the stream
/// name in the status table; the unary `Fetch*` methods answer UNIMPLEMENTED with a reason.
#[tokio::test]
async fn per_type_services_stream_their_type_and_fetch_is_unimplemented() {
    let harness = start().await;
    harness.cache.set("web", two_clusters());
    let channel = channel(harness.addr, None).await;
    let mut client = Sotw::per_type(channel.clone(), Cla, Cla, &["b"]).await;
    assert_eq!(response_names(&client.recv().await), vec!["b"]);
    drop(client);

    // A type the per-type service does not serve is ignored: only the listener is answered.
    let mut client = Sotw::per_type(channel.clone(), Listener, Cluster, &[]).await;
    client.request(Listener, &[], None).await;
    let lds = client.recv().await;
    assert_eq!(type_of(&lds), Some(Listener));
    assert_eq!(response_names(&lds), vec!["l"]);

    let mut client = Sotw::per_type(channel.clone(), Route, Route, &["l"]).await;
    assert_eq!(response_names(&client.recv().await), vec!["l"]);
    let streams = eventually(|| {
        let mut streams: Vec<String> = harness
            .cache
            .proxies()
            .into_iter()
            .map(|p| p.stream)
            .collect();
        streams.sort();
        (streams == ["lds", "rds"]).then_some(streams)
    })
    .await;
    assert_eq!(streams, ["lds", "rds"]);

    let fetch = ClusterDiscoveryServiceClient::new(channel.clone())
        .fetch_clusters(DiscoveryRequest::default())
        .await
        .expect_err("fetch is not served");
    assert_eq!(fetch.code(), tonic::Code::Unimplemented);
    assert!(
        fetch.message().contains("Fetch is not supported"),
        "{fetch:?}"
    );
    let fetch = RouteDiscoveryServiceClient::new(channel)
        .fetch_routes(DiscoveryRequest::default())
        .await
        .expect_err("fetch is not served");
    assert_eq!(fetch.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn sotw_reconnect_gets_the_full_state() {
    let harness = start().await;
    harness.cache.set("web", two_clusters());
    let mut first = Sotw::ads(channel(harness.addr, None).await, Cluster, &[]).await;
    first.sync_all().await;
    drop(first);
    eventually(|| harness.cache.proxies().is_empty().then_some(())).await;
    assert_eq!(harness.metrics.connected_streams(false), 0);

    let mut second = Sotw::ads(channel(harness.addr, None).await, Cluster, &[]).await;
    let last = second.sync_all().await;
    assert_eq!(response_names(&last[&Cluster]), vec!["a", "b"]);
    assert_eq!(response_names(&last[&Cla]), vec!["a", "b"]);
}

/// A snapshot's encoded resources by name, as a client should receive them.
fn encoded(snapshot: &portolan_xds::Snapshot, ty: ResourceType) -> Vec<(String, Vec<u8>)> {
    snapshot
        .resources(ty)
        .iter()
        .map(|(name, r)| (name.clone(), r.value().to_vec()))
        .collect()
}

/// A snapshot whose CDS and EDS responses are many times one write chunk.
fn many_clusters() -> portolan_xds::Snapshot {
    let names: Vec<String> = (0..5000).map(|i| format!("cluster-{i:04}")).collect();
    let clusters: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 8080)).collect();
    snapshot_with(&clusters, &[("l", "cluster-0000")])
}

#[tokio::test]
async fn big_responses_arrive_whole_through_a_small_window() {
    let harness = start().await;
    let snapshot = many_clusters();
    harness.cache.set("web", snapshot.clone());
    let mut client = Sotw::ads(channel(harness.addr, Some(16 * 1024)).await, Cluster, &[]).await;
    let cds = client.recv().await;
    assert!(
        prost::Message::encoded_len(&cds) > 4 * 64 * 1024,
        "several chunks"
    );
    let received: Vec<(String, Vec<u8>)> = response_names(&cds)
        .into_iter()
        .zip(cds.resources.iter().map(|any| any.value.clone()))
        .collect();
    assert_eq!(received, encoded(&snapshot, Cluster));
    assert_eq!(cds.version_info, snapshot.version(Cluster));

    let names: Vec<&str> = snapshot.resources(Cla).keys().map(String::as_str).collect();
    let channel = channel(harness.addr, Some(16 * 1024)).await;
    let mut delta = Delta::ads(channel, Cla, &names, HashMap::new()).await;
    let eds = delta.recv().await;
    let received: Vec<(String, Vec<u8>)> = eds
        .resources
        .iter()
        .map(|r| {
            let any = r.resource.as_ref().expect("a body");
            assert_eq!(r.version, snapshot.resources(Cla)[&r.name].version());
            (r.name.clone(), any.value.clone())
        })
        .collect();
    assert_eq!(received, encoded(&snapshot, Cla));
}

// === Delta ===

/// One Delta ADS stream driven by hand, as node `sidecar-2`.
struct Delta(DeltaStream);

/// A Delta request of node `sidecar-2` subscribing to `names`, holding `initial`.
fn delta_request(
    ty: ResourceType,
    names: &[&str],
    initial: HashMap<String, String>,
) -> DeltaDiscoveryRequest {
    let names = names.iter().map(|n| n.to_string()).collect();
    DeltaDiscoveryRequest {
        node: node("sidecar-2"),
        ..request::delta_resume(ty.type_url(), names, initial)
    }
}

impl Delta {
    /// An ADS stream whose first request subscribes to `names` of `ty`, holding `initial`.
    async fn ads(
        channel: Channel,
        ty: ResourceType,
        names: &[&str],
        initial: HashMap<String, String>,
    ) -> Self {
        let first = delta_request(ty, names, initial);
        Self(DeltaStream::ads(channel, first).await.expect("stream"))
    }

    async fn subscribe(&self, ty: ResourceType, names: &[&str], initial: HashMap<String, String>) {
        let request = delta_request(ty, names, initial);
        self.0.send(request).await.expect("send");
    }

    async fn ack(&self, response: &DeltaDiscoveryResponse) {
        self.0
            .send(request::delta_ack(response))
            .await
            .expect("send");
    }

    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        self.0.recv(WAIT).await.expect("a response in time")
    }
}

fn delta_names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

fn delta_versions(response: &DeltaDiscoveryResponse) -> HashMap<String, String> {
    response
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect()
}

#[tokio::test]
async fn delta_ads_subscribe_then_reconnect_gets_only_the_diff() {
    let harness = start().await;
    harness.cache.set("web", two_clusters());
    let mut client = Delta::ads(
        channel(harness.addr, None).await,
        Cluster,
        &[],
        HashMap::new(),
    )
    .await;
    let cds = client.recv().await;
    assert_eq!(delta_names(&cds), vec!["a", "b"]);
    client.ack(&cds).await;
    client.subscribe(Cla, &["a", "b"], HashMap::new()).await;
    let eds = client.recv().await;
    assert_eq!(delta_names(&eds), vec!["a", "b"]);
    client.ack(&eds).await;
    let (held_clusters, held_clas) = (delta_versions(&cds), delta_versions(&eds));

    // One CLA changes while connected: one resource.
    harness
        .cache
        .set("web", snapshot_with(&[("a", 9), ("b", 2)], &[("l", "a")]));
    let update = client.recv().await;
    assert_eq!(update.type_url, Cla.type_url());
    assert_eq!(delta_names(&update), vec!["a"]);
    let mut held_clas_now = held_clas.clone();
    held_clas_now.extend(delta_versions(&update));
    drop(client);
    eventually(|| harness.cache.proxies().is_empty().then_some(())).await;

    // While disconnected: b goes away, c appears, a's endpoints change again.
    harness
        .cache
        .set("web", snapshot_with(&[("a", 7), ("c", 3)], &[("l", "a")]));
    let mut client = Delta::ads(
        channel(harness.addr, None).await,
        Cluster,
        &[],
        held_clusters,
    )
    .await;
    let cds = client.recv().await;
    assert_eq!(delta_names(&cds), vec!["c"], "a is unchanged");
    assert_eq!(cds.removed_resources, vec!["b"]);
    client.ack(&cds).await;
    client.subscribe(Cla, &["a", "b", "c"], held_clas_now).await;
    let eds = client.recv().await;
    assert_eq!(delta_names(&eds), vec!["a", "c"]);
    assert_eq!(eds.removed_resources, vec!["b"]);
    let proxies = harness.cache.proxies();
    assert!(proxies[0].delta);
}

#[tokio::test]
async fn a_stream_that_never_reads_does_not_block_others() {
    const PUSHES: usize = 40;
    let harness = start().await;
    let big = |extra: usize| {
        let names: Vec<String> = (0..200 + extra)
            .map(|i| format!("outbound|8080||service-{i:04}.default.svc.cluster.local"))
            .collect();
        let clusters: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 8080)).collect();
        snapshot_with(&clusters, &[])
    };
    harness.cache.set("web", big(0));

    // A small receive window so that the stalled stream's responses back up quickly.
    let mut stalled = Sotw::ads(channel(harness.addr, Some(65_535)).await, Cluster, &[]).await;
    let mut reader = Sotw::ads(channel(harness.addr, None).await, Cluster, &[]).await;
    let first = reader.recv().await;
    reader.request(Cluster, &[], Some(&first)).await;

    // Every push reaches the reading client while the other one is stalled (and its task gets
    // to run between pushes, so it really tries to send each one).
    let mut latest_version = String::new();
    for extra in 1..=PUSHES {
        harness.cache.set("web", big(extra));
        latest_version = harness
            .cache
            .get("web")
            .expect("set")
            .version(Cluster)
            .to_string();
        let response = reader.recv().await;
        assert_eq!(response.version_info, latest_version);
        assert_eq!(response.resources.len(), 200 + extra);
        reader.request(Cluster, &[], Some(&response)).await;
    }

    // The stalled client, once it reads, catches up to the latest without a full backlog.
    let mut received = 0;
    loop {
        let response = stalled.recv().await;
        received += 1;
        if response.version_info == latest_version {
            break;
        }
    }
    assert!(
        received < PUSHES,
        "coalesced: {received} responses for {PUSHES} pushes"
    );
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_returns() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cache = Cache::new();
    cache.set("web", two_clusters());
    let server = XdsServer::new(cache.clone(), XdsMetrics::unregistered());
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(serve(listener, server, async move {
        let _ = stopped.await;
    }));
    let mut client = Sotw::ads(channel(addr, None).await, Cluster, &[]).await;
    client.recv().await;

    stop.send(()).expect("server running");
    let ended = client.0.recv(WAIT).await;
    assert!(
        matches!(ended, Err(ClientError::Ended | ClientError::Status(_))),
        "the stream ends, with no more responses: {ended:?}"
    );
    tokio::time::timeout(WAIT, serving)
        .await
        .expect("serve returns in time")
        .expect("joined")
        .expect("clean shutdown");
}

// === service account tokens ===

/// `good` proves `shop/web`; anything else is invalid.
#[derive(Debug)]
struct OneToken;

impl portolan_xds::TokenVerifier for OneToken {
    fn verify<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<portolan_xds::TokenIdentity, portolan_xds::TokenRefusal>,
    > {
        let answer = if token == "good" {
            Ok(portolan_xds::TokenIdentity {
                namespace: "shop".into(),
                service_account: "web".into(),
                expires_at: None,
            })
        } else {
            Err(portolan_xds::TokenRefusal::new(
                portolan_xds::RefusalReason::Invalid,
                "unknown token",
            ))
        };
        Box::pin(async move { answer })
    }
}

/// Groups by cluster, with the proven URI SAN (what the pipeline's hook does with identities).
#[derive(Debug)]
struct ByClusterAndPeer;

impl NodeGrouping for ByClusterAndPeer {
    fn group(&self, node: &Node, peer: Option<&PeerIdentity>) -> Grouped {
        let uri = peer
            .and_then(|p| p.uris.first())
            .cloned()
            .unwrap_or_default();
        Grouped::new(format!("{};{uri}", node.cluster))
    }
}

/// Opens an ADS stream for node `web-1` (cluster `web`) with `authorization: Bearer TOKEN` if
/// given; the first answer.
async fn ads_with_token(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<DiscoveryResponse, tonic::Status> {
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let mut client = AggregatedDiscoveryServiceClient::new(channel(addr, None).await);
    let first = DiscoveryRequest {
        node: node("web-1"),
        type_url: Cluster.type_url().to_string(),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(first).await.expect("queued");
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    let mut responses = client
        .stream_aggregated_resources(request)
        .await?
        .into_inner();
    let answer = tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("an answer in time")?;
    drop(tx);
    answer.ok_or_else(|| tonic::Status::aborted("the stream ended"))
}

#[tokio::test]
async fn bearer_tokens_prove_identities_over_grpc_and_refusals_are_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cache = Cache::new();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = XdsMetrics::new(&mut registry);
    let server = XdsServer::new(cache.clone(), metrics)
        .with_grouping(Arc::new(ByClusterAndPeer))
        .with_tokens(portolan_xds::TokenAuth {
            verifier: Arc::new(OneToken),
            trust_domain: "cluster.local".into(),
            recheck: None,
        });
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, server, async move {
        let _ = stopped.await;
    }));
    let group = "web;spiffe://cluster.local/ns/shop/sa/web";
    cache.set(group, two_clusters());

    // The verified token's identity picks the group: its snapshot is served.
    let served = ads_with_token(addr, Some("good")).await.expect("served");
    assert_eq!(response_names(&served), ["a", "b"]);

    for (token, reason) in [(None, "missing"), (Some("forged"), "invalid")] {
        let status = ads_with_token(addr, token).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        assert!(
            status.message().starts_with(&format!("{reason}: ")),
            "{status:?}"
        );
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    for reason in ["missing", "invalid"] {
        let series = format!("xds_auth_refusals_total{{reason=\"{reason}\"}} 1");
        assert!(text.contains(&series), "{series} in\n{text}");
    }

    // The simulated client (its own gRPC framing) reports the refusal's status.
    let first = sotw_request(Cluster, &[], None);
    let refused = match SotwStream::ads(channel(addr, None).await, first).await {
        Ok(mut stream) => stream.recv(WAIT).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match refused {
        Err(ClientError::Status(status)) => {
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
            assert!(status.message().starts_with("missing: "), "{status:?}");
        }
        other => panic!("refused with a status: {other:?}"),
    }
}

/// Token "good" of shop/web, valid, then unverifiable (the API cannot be asked), then revoked;
/// counts the verifications.
#[derive(Debug, Default)]
struct Revocable {
    state: std::sync::atomic::AtomicU8,
    calls: std::sync::atomic::AtomicUsize,
}

const VALID: u8 = 0;
const UNVERIFIABLE: u8 = 1;
const REVOKED: u8 = 2;

impl portolan_xds::TokenVerifier for Revocable {
    fn verify<'a>(
        &'a self,
        _token: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<portolan_xds::TokenIdentity, portolan_xds::TokenRefusal>,
    > {
        use std::sync::atomic::Ordering;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let refused = |reason, text| Err(portolan_xds::TokenRefusal::new(reason, text));
        let answer = match self.state.load(Ordering::SeqCst) {
            VALID => Ok(portolan_xds::TokenIdentity {
                namespace: "shop".into(),
                service_account: "web".into(),
                expires_at: None,
            }),
            UNVERIFIABLE => refused(portolan_xds::RefusalReason::Unverifiable, "API down"),
            _ => refused(portolan_xds::RefusalReason::Invalid, "token revoked"),
        };
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn a_revoked_token_ends_its_open_stream_at_the_next_check() {
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use std::sync::atomic::Ordering;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cache = Cache::new();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = XdsMetrics::new(&mut registry);
    let verifier = Arc::new(Revocable::default());
    let server = XdsServer::new(cache.clone(), metrics)
        .with_grouping(Arc::new(ByClusterAndPeer))
        .with_tokens(portolan_xds::TokenAuth {
            verifier: verifier.clone(),
            trust_domain: "cluster.local".into(),
            recheck: Some(Duration::from_millis(50)),
        });
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, server, async move {
        let _ = stopped.await;
    }));
    cache.set("web;spiffe://cluster.local/ns/shop/sa/web", two_clusters());

    let mut client = AggregatedDiscoveryServiceClient::new(channel(addr, None).await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: node("web-1"),
        type_url: Cluster.type_url().to_string(),
        ..Default::default()
    })
    .await
    .expect("queued");
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", "Bearer good".parse().expect("ascii"));
    let mut responses = client
        .stream_aggregated_resources(request)
        .await
        .expect("opened")
        .into_inner();
    let first = tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("an answer in time")
        .expect("served")
        .expect("a response");
    assert_eq!(response_names(&first), ["a", "b"]);

    // Checks that cannot reach the verifier leave the stream open.
    verifier.state.store(UNVERIFIABLE, Ordering::SeqCst);
    let calls = verifier.calls.load(Ordering::SeqCst);
    tokio::time::timeout(WAIT, async {
        while verifier.calls.load(Ordering::SeqCst) < calls + 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the token is checked again");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), responses.message())
            .await
            .is_err(),
        "the stream stays open while its token cannot be verified"
    );

    // Revoked: the next check ends the stream, with the reason, counted.
    verifier.state.store(REVOKED, Ordering::SeqCst);
    let ended = tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("the stream ends in time")
        .expect_err("ended with a status");
    assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().starts_with("invalid: "), "{ended:?}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    let series = "xds_auth_refusals_total{reason=\"invalid\"} 1";
    assert!(text.contains(series), "{series} in\n{text}");
    drop(tx);
}
