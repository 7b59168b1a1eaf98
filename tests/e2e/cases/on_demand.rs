//! End to end, on-demand discovery: stock Envoy started from `portolan bootstrap --on-demand`
//! (Delta ADS, node metadata `portolan.dev/discovery: on-demand`) learns each virtual host over
//! VHDS and each cluster over on-demand CDS on its first request. The proof: `/clusters` lists
//! nothing for a Service until the first request, and that request succeeds; a Service added
//! afterwards answers its first request; an unknown host gets 404 at once and resolves once
//! it is added; Envoy's `/config_dump` stays the same size when 1,000 unused Services appear;
//! a weighted split fetches each of its clusters on first use; a route's mirror gets its copies
//! from the first request on, though no request is ever routed to the shadow.

use crate::bin;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::manifests::{example, labeled_endpoints_yaml};
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::{Envoy, Portolan, Upstream, endpoints_yaml, eventually, service_yaml};
use std::collections::BTreeMap;
use std::time::Duration;

fn cluster_name(service: &str) -> String {
    format!("outbound|80||{service}.default.svc.cluster.local")
}

fn service_files(name: &str, upstream: &Upstream) -> String {
    format!(
        "{}---\n{}",
        service_yaml("default", name, 80),
        endpoints_yaml("default", name, &[upstream])
    )
}

/// The proxy group of the test's Envoy (node cluster `mesh`, on-demand), URL-encoded.
const GROUP: &str = "mesh%3Bmode%3Don-demand";

/// Waits until Portolan's snapshot of the on-demand group holds `clusters` clusters: the
/// config directory change was translated, without sending Envoy any request.
async fn wait_for_clusters(portolan: &Portolan, clusters: usize) -> anyhow::Result<()> {
    let path = format!("/debug/config_dump?group={GROUP}");
    eventually(
        &format!("{clusters} clusters in the on-demand group's snapshot"),
        Duration::from_secs(30),
        || {
            let path = path.clone();
            async move {
                let dump = portolan.get_json(&path).await.map_err(|e| e.to_string())?;
                let have = dump["types"]["cds"]["resources"]
                    .as_array()
                    .map_or(0, Vec::len);
                if have == clusters {
                    Ok(())
                } else {
                    Err(format!("{have} clusters"))
                }
            }
        },
    )
    .await
}

async fn on_demand_envoy(portolan: &Portolan) -> anyhow::Result<Envoy> {
    Envoy::start_with(
        bin(),
        portolan.ports(),
        "sidecar-1",
        "mesh",
        Protocol::Delta,
        &["--on-demand"],
    )
    .await
}

/// Envoy's VHDS init fetch timeouts (`http.mesh_outbound.rds.vhds.mesh-outbound.init_fetch_timeout`).
async fn vhds_init_fetch_timeouts(envoy: &Envoy) -> anyhow::Result<Vec<(String, u64)>> {
    Ok(envoy
        .stats_containing(".vhds.")
        .await?
        .into_iter()
        .filter(|(name, _)| name.ends_with(".init_fetch_timeout"))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_without_waiting_out_the_vhds_initial_fetch() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let config = ConfigDir::new()?;
    config.write("web.yaml", &service_files("web", &a))?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = on_demand_envoy(&portolan).await?;
    // Ready, and not because the VHDS initial fetch timed out: Portolan answered Envoy's
    // first VHDS request, which names no virtual host, with an empty response.
    let timeouts = vhds_init_fetch_timeouts(&envoy).await?;
    assert!(!timeouts.is_empty(), "no VHDS init_fetch_timeout stat");
    assert!(
        timeouts.iter().all(|(_, n)| *n == 0),
        "{timeouts:?}\n{}",
        envoy.log_tail()
    );
    // Still so once virtual hosts are fetched on demand.
    assert_eq!(envoy.get("web", "/").await?, (200, "a".to_string()));
    let timeouts = vhds_init_fetch_timeouts(&envoy).await?;
    assert!(timeouts.iter().all(|(_, n)| *n == 0), "{timeouts:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_learned_on_first_request() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let b = Upstream::start("b").await?;
    let config = ConfigDir::new()?;
    config.write("web.yaml", &service_files("web", &a))?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = on_demand_envoy(&portolan).await?;

    // Nothing about `web` before the first request.
    assert!(envoy.cluster_lines(&cluster_name("web")).await?.is_empty());
    assert_eq!(envoy.cluster_config(&cluster_name("web")).await?, None);

    // The first request succeeds, and now Envoy has the cluster.
    let first = envoy.get("web", "/").await?;
    assert_eq!(first, (200, "a".to_string()), "{}", envoy.log_tail());
    assert!(!envoy.cluster_lines(&cluster_name("web")).await?.is_empty());
    // Other domains of the same Service are their own virtual hosts; the cluster is shared.
    assert_eq!(envoy.get("web.default:80", "/").await?, (200, "a".into()));
    // Portolan's dump of the group shows the virtual hosts it serves over VHDS.
    let dump = portolan
        .get_json(&format!("/debug/config_dump?group={GROUP}"))
        .await?;
    let vhosts: Vec<&str> = dump["types"]["vhds"]["resources"]
        .as_array()
        .map(|items| items.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(vhosts.contains(&"mesh-outbound/web"), "{vhosts:?}");

    // A Service added afterwards answers its first request.
    config.write("api.yaml", &service_files("api", &b))?;
    wait_for_clusters(&portolan, 2).await?;
    assert!(envoy.cluster_lines(&cluster_name("api")).await?.is_empty());
    let first = envoy.get("api.default.svc.cluster.local", "/").await?;
    assert_eq!(first, (200, "b".to_string()), "{}", envoy.log_tail());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_is_404_at_once_and_resolves_once_added() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let config = ConfigDir::new()?;
    config.write("web.yaml", &service_files("web", &a))?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = on_demand_envoy(&portolan).await?;

    // Not a hang: the answer comes (the client's own timeout is 10 s) and it is 404.
    let (status, _) = envoy.get("late", "/").await?;
    assert_eq!(status, 404, "{}", envoy.log_tail());
    let (status, _) = envoy.get("late", "/").await?;
    assert_eq!(status, 404);

    // Added later: the next request for it resolves.
    config.write("late.yaml", &service_files("late", &a))?;
    envoy.wait_for_response("late", 200, "a").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_dump_stays_flat_as_unused_services_are_added() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let a = Upstream::start("a").await?;
    let config = ConfigDir::new()?;
    config.write("web.yaml", &service_files("web", &a))?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = on_demand_envoy(&portolan).await?;
    assert_eq!(envoy.get("web", "/").await?, (200, "a".to_string()));
    let before = envoy.admin("/config_dump").await?.len();

    let many: Vec<String> = (0..1000)
        .map(|i| service_files(&format!("svc-{i}"), &a))
        .collect();
    config.write("many.yaml", &many.join("---\n"))?;
    wait_for_clusters(&portolan, 1001).await?;
    // One more round trip for `web`, so any push to Envoy has landed before measuring.
    assert_eq!(envoy.get("web", "/").await?, (200, "a".to_string()));
    let after = envoy.admin("/config_dump").await?.len();
    // In full mode each Service adds a cluster and a virtual host (about 1.5 KB each).
    assert!(
        after.abs_diff(before) < 2048,
        "config_dump grew from {before} to {after} bytes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_split_fetches_each_cluster_on_first_use() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let v1 = Upstream::start("v1").await?;
    let v2 = Upstream::start("v2").await?;
    let config = ConfigDir::new()?;
    let half = example("routing/canary.yaml")
        .replace("weight: 90", "weight: 50")
        .replace("weight: 10", "weight: 50");
    config.write("reviews.yaml", &half)?;
    let slices = [(&v1, "v1"), (&v2, "v2")]
        .iter()
        .map(|(u, version)| {
            labeled_endpoints_yaml("default", "reviews", u, &[("version", version)])
        })
        .collect::<Vec<_>>()
        .join("---\n");
    config.write("reviews-endpoints.yaml", &slices)?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = on_demand_envoy(&portolan).await?;
    let subset = |v: &str| format!("outbound|9080|{v}|reviews.default.svc.cluster.local");
    assert!(envoy.cluster_lines(&subset("v1")).await?.is_empty());
    assert!(envoy.cluster_lines(&subset("v2")).await?.is_empty());

    // Every request succeeds, including the first to each side of the split.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..60 {
        let (status, body) = envoy.get("reviews", "/").await?;
        assert_eq!(status, 200, "request {i}: {body}\n{}", envoy.log_tail());
        *counts.entry(body).or_default() += 1;
    }
    assert_eq!(counts.len(), 2, "both subsets answered: {counts:?}");
    assert!(!envoy.cluster_lines(&subset("v1")).await?.is_empty());
    assert!(!envoy.cluster_lines(&subset("v2")).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_gets_every_copy_without_a_request_of_its_own() -> anyhow::Result<()> {
    let primary = Upstream::start("checkout").await?;
    let shadow = Upstream::start("checkout-next").await?;
    let config = ConfigDir::new()?;
    config.write("checkout.yaml", &example("routing/mirroring.yaml"))?;
    let endpoints = format!(
        "{}---\n{}",
        endpoints_yaml("default", "checkout", &[&primary]),
        endpoints_yaml("default", "checkout-next", &[&shadow])
    );
    config.write("checkout-endpoints.yaml", &endpoints)?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;
    let envoy = on_demand_envoy(&portolan).await?;

    // Nothing routes to `checkout-next`: Envoy's on-demand CDS never asks for it. The copies
    // arrive only if Portolan pushed the mirror's cluster with the route.
    for i in 0..40 {
        let (status, body) = envoy.get("checkout", &format!("/order/{i}")).await?;
        assert_eq!(
            (status, body.as_str()),
            (200, "checkout"),
            "request {i}\n{}",
            envoy.log_tail()
        );
    }
    // Mirrored requests are fire and forget: they arrive, maybe a moment later.
    eventually(
        "the shadow to see 40 copies",
        Duration::from_secs(10),
        || async {
            match shadow.hits() {
                40 => Ok(()),
                n => Err(format!("the shadow saw {n} of 40 copies")),
            }
        },
    )
    .await?;
    assert_eq!(
        shadow.path_hits("/order/0"),
        1,
        "the first request is mirrored"
    );
    assert_eq!(primary.hits(), 40);
    Ok(())
}
