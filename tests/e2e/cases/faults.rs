//! Fault tests with real processes on loopback: the config source vanishing, a thousand bad
//! objects among good ones, Portolan killed under traffic, 2,000 ADS clients connecting at
//! once, and a stream that never reads. Each test has its own Portolan and ports, stops
//! everything it started, and waits by polling with a deadline (no timing assertions).

use crate::bin;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::mesh::CONFIG_DEADLINE;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::procfs::rss_kib;
use portolan_e2e::{Envoy, Mesh, Portolan, Upstream, endpoints_yaml, eventually, service_yaml};
use portolan_xds_client::{Follow, SotwClient, SotwSubscriber, channel, node};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// Generous bound on a Portolan process's resident memory under the load tests.
const RSS_LIMIT_KIB: u64 = 500 * 1024;

fn portolan_rss(p: &Portolan) -> anyhow::Result<u64> {
    rss_kib(p.pid().ok_or_else(|| anyhow::anyhow!("portolan exited"))?)
}

// === the config source goes away ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_config_directory_keeps_traffic_and_is_reported() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let b = Upstream::start("b").await?;
    let m = Mesh::start(
        bin(),
        "mesh",
        &[
            ("web/service.yaml", service_yaml("default", "web", 80)),
            (
                "web/endpoints.yaml",
                endpoints_yaml("default", "web", &[&a]),
            ),
        ],
    )
    .await?;
    m.envoy.wait_for_response("web", 200, "a").await?;
    assert_eq!(
        m.portolan.metric("portolan_config_source_up").await?,
        Some(1.0)
    );

    // The directory disappears (renamed away: as root, permissions would not stop a read).
    let dir = m.config.path().to_path_buf();
    let away = dir.with_extension("away");
    std::fs::rename(&dir, &away)?;
    let sources = eventually("the source reported down", CONFIG_DEADLINE, || async {
        let v = m
            .portolan
            .get_json("/debug/sources")
            .await
            .map_err(|e| e.to_string())?;
        match v["sources"][0]["up"].as_bool() {
            Some(false) => Ok(v),
            _ => Err(v.to_string()),
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", m.diagnostics()))?;
    assert!(
        sources["sources"][0]["error"].as_str().is_some(),
        "{sources}"
    );
    assert_eq!(
        m.portolan.metric("portolan_config_source_up").await?,
        Some(0.0)
    );
    let ready = m.portolan.get_text("/readyz").await?;
    assert!(ready.contains("config source down"), "{ready}");
    assert!(
        m.portolan.log_tail().contains("config source down"),
        "a log line says so:\n{}",
        m.portolan.log_tail()
    );

    // Traffic keeps flowing on the last good config, and xDS is still served: a proxy that
    // connects now gets the same config (its endpoints are a's).
    for _ in 0..20 {
        assert_eq!(m.envoy.get("web", "/").await?, (200, "a".to_string()));
    }
    let late = Envoy::start(bin(), m.portolan.ports(), "mesh-2", "mesh", Protocol::Sotw).await?;
    wait_endpoint(&late, &a).await?;

    // The directory comes back with an edit made meanwhile: the source is up, traffic moves.
    std::fs::write(
        away.join("web/endpoints.yaml"),
        endpoints_yaml("default", "web", &[&b]),
    )?;
    std::fs::rename(&away, &dir)?;
    m.envoy.wait_for_response("web", 200, "b").await?;
    wait_endpoint(&late, &b).await?;
    assert_eq!(
        m.portolan.metric("portolan_config_source_up").await?,
        Some(1.0)
    );
    assert_eq!(m.portolan.get_text("/readyz").await?, "ready\n");

    // And the watch works again after the recovery.
    m.config.write(
        "web/endpoints.yaml",
        &endpoints_yaml("default", "web", &[&a]),
    )?;
    m.envoy.wait_for_response("web", 200, "a").await?;
    Ok(())
}

/// Waits until `envoy` holds `upstream` as the endpoint of the `web` cluster. (A second Envoy
/// shares the mesh listener port with the first, so its requests would prove nothing.)
async fn wait_endpoint(envoy: &Envoy, upstream: &Upstream) -> anyhow::Result<()> {
    let cluster = "outbound|80||web.default.svc.cluster.local";
    let want = format!("{cluster}::{}::", upstream.addr());
    eventually(
        "the endpoint in the late Envoy",
        CONFIG_DEADLINE,
        || async {
            let lines = envoy
                .cluster_lines(cluster)
                .await
                .map_err(|e| e.to_string())?;
            if lines.iter().any(|l| l.starts_with(&want)) {
                Ok(())
            } else {
                Err(format!("{lines:?}"))
            }
        },
    )
    .await
}

// === a thousand bad objects among good ones ===

const GOOD_SERVICES: usize = 100;
const BAD_DOCS: usize = 1000;

/// The `i`-th bad document: each kind of mistake a user makes, each named uniquely so no two
/// documents claim one object. Every one is a parseable YAML document that must be rejected.
fn bad_doc(i: usize) -> String {
    let name = format!("bad-{i}");
    match i % 10 {
        0 => format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: 70000}}]}}\n"
        ),
        1 => "apiVersion: v1\nkind: Service\nmetadata: {namespace: default}\nspec: {ports: [{port: 80}]}\n".to_string(),
        2 => format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: \"eighty\"}}\n"
        ),
        3 => format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/service-name: good-0}}\naddressType: IPv4\nendpoints:\n- addresses: [\"not-an-ip-{i}\"]\n"
        ),
        4 => format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}}}\naddressType: Carrier-Pigeon\nendpoints: []\n"
        ),
        5 => format!(
            "apiVersion: portolan.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: {name}}}\nspec:\n  hosts: []\n  http: [{{route: [{{destination: {{host: good-1}}, weight: -{i}}}]}}]\n"
        ),
        6 => format!(
            "apiVersion: portolan.dev/v1alpha1\nkind: TrafficPolicy\nmetadata: {{name: {name}}}\nspec: {{host: \"Not A Host {i}\", connectionPool: {{maxConnections: -1}}}}\n"
        ),
        7 => format!("- just\n- a\n- list {i}\n"),
        8 => format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: \"Bad_Name_{i}\"}}\nspec: {{ports: [{{port: 80}}]}}\n"
        ),
        _ => format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: 80, protocol: 42}}]}}\n"
        ),
    }
}

fn good_docs(i: usize, upstream: &Upstream) -> [String; 2] {
    [
        service_yaml("default", &format!("good-{i}"), 80),
        endpoints_yaml("default", &format!("good-{i}"), &[upstream]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_bad_objects_among_good_ones() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mut upstreams = Vec::new();
    for u in 0..8 {
        upstreams.push(Upstream::start(&format!("u{u}")).await?);
    }
    // Files of 12 documents: 2 good objects and 10 bad documents, interleaved.
    let config = ConfigDir::new()?;
    let mut bad = 0;
    for i in 0..GOOD_SERVICES {
        let mut docs: Vec<String> = good_docs(i, &upstreams[i % upstreams.len()]).into();
        for _ in 0..BAD_DOCS / GOOD_SERVICES {
            docs.insert(docs.len() / 2 + 1, bad_doc(bad));
            bad += 1;
        }
        config.write(&format!("mixed/{i:03}.yaml"), &docs.join("---\n"))?;
    }
    assert_eq!(bad, BAD_DOCS);
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = Envoy::start(bin(), portolan.ports(), "mesh-1", "mesh", Protocol::Sotw).await?;

    // Every bad document is reported, each with its location.
    let errors = portolan.get_json("/debug/config-errors").await?["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut locations: Vec<&str> = errors
        .iter()
        .map(|e| e["location"].as_str().unwrap_or_default())
        .collect();
    assert!(
        locations
            .iter()
            .all(|l| l.starts_with("mixed/") && l.contains('#')),
        "{errors:?}"
    );
    locations.sort();
    locations.dedup();
    assert_eq!(locations.len(), BAD_DOCS, "one location per bad document");
    assert!(
        errors
            .iter()
            .all(|e| !e.to_string().contains("good-") || e.to_string().contains("bad-")),
        "no good object is reported: {errors:?}"
    );

    // Every good service reaches Envoy as a cluster, and answers from its upstream.
    let clusters = eventually("every good cluster in Envoy", CONFIG_DEADLINE, || async {
        let text = envoy.admin("/clusters").await.map_err(|e| e.to_string())?;
        let n = text
            .lines()
            .filter(|l| l.starts_with("outbound|80||good-") && l.ends_with("::added_via_api::true"))
            .count();
        if n == GOOD_SERVICES {
            Ok(n)
        } else {
            Err(format!("{n} clusters"))
        }
    })
    .await?;
    assert_eq!(clusters, GOOD_SERVICES);
    let outbound = envoy
        .admin("/clusters")
        .await?
        .lines()
        .filter(|l| l.starts_with("outbound|") && l.ends_with("::added_via_api::true"))
        .count();
    assert_eq!(outbound, GOOD_SERVICES, "no bad object became a cluster");
    for i in [0, 1, 37, 64, GOOD_SERVICES - 1] {
        let want = upstreams[i % upstreams.len()].name().to_string();
        envoy
            .wait_for_response(&format!("good-{i}"), 200, &want)
            .await?;
    }
    Ok(())
}

// === Portolan killed and restarted under traffic ===

const STEADY_REQUESTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portolan_killed_and_restarted_under_traffic_fails_no_request() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let b = Upstream::start("b").await?;
    let Mesh {
        config,
        portolan,
        envoy,
    } = Mesh::start(
        bin(),
        "mesh",
        &[
            ("web/service.yaml", service_yaml("default", "web", 80)),
            (
                "web/endpoints.yaml",
                endpoints_yaml("default", "web", &[&a]),
            ),
        ],
    )
    .await?;
    envoy.wait_for_response("web", 200, "a").await?;
    let ports = portolan.ports();

    // A steady stream of requests, one every 10 ms, while the control plane dies and returns.
    let sent = Arc::new(AtomicUsize::new(0));
    let mesh_port = envoy.mesh_port();
    let traffic = tokio::spawn({
        let sent = sent.clone();
        async move {
            let mut failures = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for _ in 0..STEADY_REQUESTS {
                tick.tick().await;
                match portolan_e2e::http::get(mesh_port, "web", "/").await {
                    Ok(r) if r.status == 200 && r.body == "a" => {}
                    Ok(r) => failures.push(format!("{} {:?}", r.status, r.body)),
                    Err(e) => failures.push(e.to_string()),
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }
    });
    eventually("traffic under way", CONFIG_DEADLINE, || async {
        let n = sent.load(Ordering::SeqCst);
        if n >= STEADY_REQUESTS / 6 {
            Ok(())
        } else {
            Err(format!("{n} sent"))
        }
    })
    .await?;
    portolan.kill().await?;
    let restarted = Portolan::start(bin(), &config, ports).await?;
    let during = sent.load(Ordering::SeqCst);
    let failures = traffic.await?;
    assert!(
        during < STEADY_REQUESTS,
        "the restart happened while requests were still being sent ({during})"
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );

    // Envoy resynced with the new process: a change reaches it.
    config.write(
        "web/endpoints.yaml",
        &endpoints_yaml("default", "web", &[&b]),
    )?;
    envoy
        .wait_for_response("web", 200, "b")
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", restarted.log_tail()))?;
    Ok(())
}

// === ADS clients in-process ===

/// How long an in-process client waits for one response.
const CLIENT_WAIT: Duration = Duration::from_secs(120);

/// An ADS client `id` in group `mesh`, subscribed to clusters only; it ACKs what it reads.
async fn cds_client(channel: Channel, id: &str) -> anyhow::Result<SotwClient> {
    let subscriber = SotwSubscriber::new(node::envoy(id, "mesh"), Follow::Clusters);
    Ok(SotwClient::connect(channel, subscriber).await?)
}

fn services(n: usize, port: u16) -> String {
    (0..n)
        .map(|i| service_yaml("default", &format!("svc-{i:04}"), port))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Whether a CDS response is the full set of `n` service clusters on `port`.
fn has_clusters(r: &DiscoveryResponse, n: usize, port: u16) -> bool {
    let prefix = format!("outbound|{port}||svc-");
    r.resources.len() == n
        && r.resources
            .iter()
            .all(|a| String::from_utf8_lossy(&a.value).contains(&prefix))
}

// === 2,000 clients at once ===

const CLIENTS: usize = 2000;
const STREAMS_PER_CHANNEL: usize = 100;
const FLEET_SERVICES: usize = 50;

/// Starts `CLIENTS` ADS streams at once against `port`; each receives the full cluster set on
/// `svc_port` and ACKs it. Returns once every one has, with the streams still open (dropping
/// the returned sender closes them all).
async fn fleet(port: u16, svc_port: u16) -> anyhow::Result<watch::Sender<bool>> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<anyhow::Result<()>>(CLIENTS);
    for c in 0..CLIENTS / STREAMS_PER_CHANNEL {
        let ch = channel(([127, 0, 0, 1], port), None).await?;
        for s in 0..STREAMS_PER_CHANNEL {
            let (ch, done, mut stop) = (ch.clone(), done_tx.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let synced = async {
                    let mut client = cds_client(ch, &format!("sim-{c}-{s}")).await?;
                    client
                        .until(CLIENT_WAIT, |r| has_clusters(r, FLEET_SERVICES, svc_port))
                        .await?;
                    anyhow::Ok(client)
                }
                .await;
                match synced {
                    Ok(client) => {
                        let _ = done.send(Ok(())).await;
                        let _ = stop.wait_for(|s| *s).await;
                        drop(client);
                    }
                    Err(e) => {
                        let _ = done.send(Err(e)).await;
                    }
                }
            });
        }
    }
    drop(done_tx);
    for n in 0..CLIENTS {
        let result = done_rx
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("clients vanished after {n}"))?;
        result.map_err(|e| anyhow::anyhow!("client failed after {n} synced: {e}"))?;
    }
    Ok(stop_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_reconnecting_at_once_all_sync() -> anyhow::Result<()> {
    let _alone = portolan_e2e::serial::alone().await;
    let config = ConfigDir::new()?;
    config.write("services.yaml", &services(FLEET_SERVICES, 80))?;
    let ports = Ports::free();
    let first = Portolan::start(bin(), &config, ports).await?;
    let stop = fleet(ports.xds, 80).await?;
    let rss = portolan_rss(&first)?;
    assert!(
        rss < RSS_LIMIT_KIB,
        "portolan RSS {rss} KiB with {CLIENTS} streams"
    );

    // Every stream drops at once (the process dies), the config changes meanwhile, and all of
    // them reconnect at once to the new process and get the current config.
    first.kill().await?;
    drop(stop);
    config.write("services.yaml", &services(FLEET_SERVICES, 81))?;
    let second = Portolan::start(bin(), &config, ports).await?;
    let stop = fleet(ports.xds, 81).await?;
    let rss = portolan_rss(&second)?;
    assert!(
        rss < RSS_LIMIT_KIB,
        "portolan RSS {rss} KiB after {CLIENTS} reconnects"
    );
    let proxies = second.get_json("/debug/proxies").await?;
    let connected = proxies.as_array().map(Vec::len).unwrap_or_default();
    assert_eq!(connected, CLIENTS, "every client is a connected proxy");
    drop(stop);
    second.terminate().await?;
    Ok(())
}

// === a stream that never reads ===

const BIG_SERVICES: usize = 1000;
const EDITS: usize = 400;
/// Edits before the first sample: mimalloc's heaps grow by a few MiB over the first builds.
const WARM_UP_EDITS: usize = 60;
/// RSS is sampled every this many edits after the warm-up.
const SAMPLE_EVERY: usize = 5;
/// The first and the last this many edits form the windows whose medians are compared.
const WINDOW_EDITS: usize = 40;

/// The median RSS of the samples whose edit number passes `keep`.
fn median_rss(samples: &[(usize, u64)], keep: impl Fn(usize) -> bool) -> u64 {
    let mut window: Vec<u64> = samples
        .iter()
        .filter(|(i, _)| keep(*i))
        .map(|(_, rss)| *rss)
        .collect();
    window.sort_unstable();
    window.get(window.len() / 2).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_never_reads_leaves_others_updated_and_memory_flat() -> anyhow::Result<()> {
    let _alone = portolan_e2e::serial::alone().await;
    let config = ConfigDir::new()?;
    config.write("services.yaml", &services(BIG_SERVICES, 80))?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let port = portolan.ports().xds;

    // A small receive window: the stalled stream's responses back up after the first one.
    let loopback = ([127, 0, 0, 1], port);
    let stalled = cds_client(channel(loopback, Some(65_535)).await?, "stalled").await?;
    let mut reader = cds_client(channel(loopback, None).await?, "reader").await?;
    reader
        .until(CLIENT_WAIT, |r| r.resources.len() == BIG_SERVICES)
        .await?;

    let (mut samples, mut response_bytes) = (Vec::new(), 0);
    for i in 0..EDITS {
        config.write(
            "extra.yaml",
            &service_yaml("default", &format!("extra-{i}"), 80),
        )?;
        let name = format!("outbound|80||extra-{i}.default");
        let last = reader
            .until(CLIENT_WAIT, |r| {
                r.resources.len() == BIG_SERVICES + 1
                    && r.resources
                        .iter()
                        .any(|a| String::from_utf8_lossy(&a.value).contains(&name))
            })
            .await?;
        response_bytes = last.resources.iter().map(|a| a.value.len()).sum::<usize>();
        if i >= WARM_UP_EDITS && i % SAMPLE_EVERY == 0 {
            samples.push((i, portolan_rss(&portolan)?));
        }
    }
    // RSS moves by a few MiB either way from one sample to the next and drifts up by about
    // 20 KiB per edit with or without a stalled stream (allocator heaps; measured over 500
    // edits); a backlog grows by a whole response (~110 KB) per edit. Compare the medians of the first and the last
    // window of samples: had the stalled stream queued every response, the later median
    // would be about `backlog` higher; it may be higher by half of that at most.
    let early = median_rss(&samples, |i| i < WARM_UP_EDITS + WINDOW_EDITS);
    let late = median_rss(&samples, |i| i >= EDITS - WINDOW_EDITS);
    let between = EDITS - WINDOW_EDITS - WARM_UP_EDITS;
    let backlog = (response_bytes * between / 1024) as u64;
    let growth = late.saturating_sub(early);
    assert!(
        growth < backlog / 2,
        "median RSS grew {growth} KiB over {between} edits ({early} -> {late} KiB, samples \
         {samples:?}); a queued backlog would be {backlog} KiB\n{}",
        portolan.log_tail()
    );
    let end = portolan_rss(&portolan)?;
    assert!(end < RSS_LIMIT_KIB, "portolan RSS {end} KiB");
    drop(stalled);
    drop(reader);
    portolan.terminate().await?;
    Ok(())
}
