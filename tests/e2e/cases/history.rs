//! End to end, config history: a `portolan serve --enable-rollback` on a watched directory and
//! a stock Envoy following it. A route is edited twice (requests show each version),
//! `portolan history` lists the versions with the changed route, `portolan diff` shows the
//! change at the Envoy level, `portolan rollback` makes Envoy answer as the first version did
//! (and the history and `/readyz` say so), and the next file edit applies on top of the source.

use crate::bin;
use portolan_e2e::{Mesh, Upstream, labeled_endpoints_yaml};

/// The Service, its subsets v1..v3 and a TrafficRoute sending everything to `subset`.
fn manifests(subset: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: default
spec:
  ports:
  - name: http
    port: 9080
---
apiVersion: portolan.dev/v1alpha1
kind: TrafficPolicy
metadata:
  name: reviews
  namespace: default
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
  - name: v3
    labels: {{version: v3}}
---
apiVersion: portolan.dev/v1alpha1
kind: TrafficRoute
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - name: main
    route:
    - destination:
        host: reviews
        subset: {subset}
"
    )
}

/// Runs the `portolan` CLI against the server; fails on a non-zero exit.
fn cli(m: &Mesh, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin())
        .args(args)
        .args(["--server", &m.portolan.url("")])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(
        out.status.success(),
        "portolan {args:?}: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

/// Waits until every request to `reviews` is answered by `upstream`.
async fn answers(m: &Mesh, upstream: &str) -> anyhow::Result<()> {
    m.wait_mesh("reviews", "/", upstream, |r| r.upstream() == Some(upstream))
        .await?;
    for _ in 0..20 {
        let r = m
            .wait_mesh("reviews", "/", upstream, |r| r.status == 200)
            .await?;
        anyhow::ensure!(
            r.upstream() == Some(upstream),
            "{upstream} answers every request"
        );
    }
    Ok(())
}

/// The versions whose changes name the route, oldest first.
async fn route_versions(m: &Mesh) -> anyhow::Result<Vec<u64>> {
    let body = m.portolan.get_json("/debug/history").await?;
    Ok(body["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| {
            v["changes"].as_array().into_iter().flatten().any(|c| {
                c["object"]
                    .as_str()
                    .is_some_and(|o| o.contains("TrafficRoute default/reviews"))
            })
        })
        .filter_map(|v| v["version"].as_u64())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_diff_and_rollback_through_a_running_server() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let ups = [
        Upstream::start("reviews-v1").await?,
        Upstream::start("reviews-v2").await?,
        Upstream::start("reviews-v3").await?,
    ];
    let endpoints = ups
        .iter()
        .zip(["v1", "v2", "v3"])
        .map(|(u, v)| labeled_endpoints_yaml("default", "reviews", u, &[("version", v)]))
        .collect::<Vec<_>>()
        .join("---\n");
    let m = Mesh::start_with(
        bin(),
        "mesh",
        &[
            ("reviews.yaml", manifests("v1")),
            ("reviews-endpoints.yaml", endpoints),
        ],
        &["--enable-rollback"],
    )
    .await?;
    answers(&m, "reviews-v1").await?;
    m.config.write("reviews.yaml", &manifests("v2"))?;
    answers(&m, "reviews-v2").await?;
    m.config.write("reviews.yaml", &manifests("v3"))?;
    answers(&m, "reviews-v3").await?;

    // Three versions name the route: added, changed, changed.
    let versions = portolan_e2e::eventually(
        "three route versions",
        std::time::Duration::from_secs(20),
        || async {
            let v = route_versions(&m).await.map_err(|e| e.to_string())?;
            if v.len() == 3 {
                Ok(v)
            } else {
                Err(format!("route versions {v:?}"))
            }
        },
    )
    .await?;
    let (first, second, third) = (versions[0], versions[1], versions[2]);
    let listed = cli(&m, &["history"])?;
    for v in &versions {
        assert!(
            listed.lines().any(
                |l| l.starts_with(&v.to_string()) && l.contains("TrafficRoute default/reviews")
            ),
            "history lists {v} with the route:\n{listed}"
        );
    }
    assert!(
        listed.contains("added TrafficRoute default/reviews"),
        "{listed}"
    );
    assert!(
        listed.contains("changed TrafficRoute default/reviews"),
        "{listed}"
    );

    // The Envoy-level difference: the route now names the v3 cluster instead of v2's.
    let diff = cli(
        &m,
        &[
            "diff",
            "--from",
            &second.to_string(),
            "--to",
            &third.to_string(),
            "--group",
            "mesh",
        ],
    )?;
    assert!(
        diff.contains("~ routes "),
        "a changed RouteConfiguration:\n{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains("|v2|reviews.default")),
        "the old cluster removed from the route:\n{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains("|v3|reviews.default")),
        "the new cluster in the route:\n{diff}"
    );

    // Roll back to the first version: Envoy answers as before, and the server says so.
    let said = cli(&m, &["rollback", "--to", &first.to_string()])?;
    let expected = format!("rolled back to {first}; source is at ");
    assert!(said.contains(&expected), "{said}");
    answers(&m, "reviews-v1").await?;
    assert!(cli(&m, &["history"])?.contains(&expected));
    assert!(m.portolan.get_text("/readyz").await?.contains(&expected));
    assert!(m.portolan.log_text().contains(&expected), "the log says it");

    // The next edit of the source applies on top of the source, and ends the rollback.
    m.config.write("reviews.yaml", &manifests("v2"))?;
    answers(&m, "reviews-v2").await?;
    let body = m.portolan.get_json("/debug/history").await?;
    assert!(body["rolled_back"].is_null(), "{body}");
    assert_eq!(route_versions(&m).await?.len(), 4);
    Ok(())
}
