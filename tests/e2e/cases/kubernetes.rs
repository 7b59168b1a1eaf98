//! End to end with `portolan serve --kubernetes`. First against a stand-in API server on
//! loopback (always runs): the real binary, real Envoy, real traffic, the sync gate, status
//! writes and the Lease. Then against a real cluster: Portolan's CRDs, a Service and an EndpointSlice applied
//! with the API server, `portolan serve --kubernetes` watching them, stock Envoy routing real
//! traffic by what the cluster says, and the status conditions Portolan writes back.
//!
//! The real-cluster test is ignored unless asked for: with KUBECONFIG naming a reachable cluster
//! (kind, k3d, minikube...), run it with `cargo test -p portolan --test e2e -- --ignored
//! kubernetes::`; asked for without a reachable cluster, it fails and says why. Portolan, Envoy
//! and the upstream run on this machine.
//! The API server refuses loopback addresses in EndpointSlices, so the Service's endpoint is a
//! never-contacted TEST-NET-1 address checked in Envoy's cluster table, and traffic goes to an
//! ExternalService on 127.0.0.1. Everything is created in a fresh namespace that is deleted
//! afterwards; the CRDs stay installed.

use crate::bin;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::DynamicObject;
use portolan_api::Kind;
use portolan_e2e::apiserver::FakeApiServer;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::portolan::Ports;
use portolan_e2e::{Envoy, Portolan, Upstream, client, eventually, workspace_root};
use serde_json::{Value, json};
use std::time::Duration;

/// A client for the cluster KUBECONFIG names, or why there is none.
async fn cluster() -> anyhow::Result<kube::Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        anyhow::bail!("KUBECONFIG is not set: this test needs a Kubernetes cluster");
    }
    let client = portolan_k8s::client().await?;
    client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!("the API server KUBECONFIG names does not answer: {e}"))?;
    Ok(client)
}

fn apply_params() -> PatchParams {
    PatchParams::apply("portolan-e2e").force()
}

/// Server-side applies every CRD in crds/ and waits until each is Established.
async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for entry in std::fs::read_dir(workspace_root().join("crds"))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&std::fs::read_to_string(&path)?)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &apply_params(), &Patch::Apply(&crd))
            .await?;
        eventually(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || {
                let (crds, name) = (crds.clone(), name.clone());
                async move {
                    let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
                    let established = crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established
                        .then_some(())
                        .ok_or_else(|| "not yet".to_string())
                }
            },
        )
        .await?;
    }
    Ok(())
}

async fn apply(client: &kube::Client, ns: &str, kind: Kind, object: Value) -> anyhow::Result<()> {
    let resource = portolan_k8s::kinds::api_resource(kind);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut object = object;
    object["apiVersion"] = json!(resource.api_version);
    object["kind"] = json!(resource.kind);
    api.patch(&name, &apply_params(), &Patch::Apply(&object))
        .await?;
    Ok(())
}

/// The conditions on a TrafficRoute's status, as `Type=Status` strings, and its generation.
async fn route_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<(i64, Vec<String>, Value), String> {
    let resource = portolan_k8s::kinds::api_resource(Kind::TrafficRoute);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let route = api.get(name).await.map_err(|e| e.to_string())?;
    let status = route.data.get("status").cloned().unwrap_or(Value::Null);
    let conditions = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={}",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    Ok((
        route.metadata.generation.unwrap_or_default(),
        conditions,
        status,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KUBECONFIG"]
async fn cluster_objects_route_traffic_and_get_status_conditions() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let client = cluster().await?;
    install_crds(&client).await?;
    let ns = format!("portolan-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    namespaces
        .patch(&ns, &apply_params(), &Patch::Apply(&namespace))
        .await?;
    let result = run_in(&client, &ns).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    result
}

async fn run_in(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let up = Upstream::start("api-1").await?;
    // A Service and its EndpointSlice. The API server refuses loopback addresses in
    // EndpointSlices, so the endpoint is in TEST-NET-1 (192.0.2.0/24, never contacted): the
    // test checks Envoy got it, and sends traffic only to loopback (the ExternalService).
    apply(
        client,
        ns,
        Kind::Service,
        json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }),
    )
    .await?;
    apply(
        client,
        ns,
        Kind::EndpointSlice,
        json!({
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.0.2.10"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }),
    )
    .await?;
    let host = format!("api.{ns}.example");
    apply(
        client,
        ns,
        Kind::ExternalService,
        json!({
            "metadata": {"name": "api"},
            "spec": {"hosts": [host], "ports": [{"name": "http", "number": 80, "protocol": "HTTP"}],
                     "resolution": "Static",
                     "endpoints": [{"address": "127.0.0.1", "ports": {"http": up.port()}}]}
        }),
    )
    .await?;
    apply(client, ns, Kind::TrafficRoute, json!({
        "metadata": {"name": "api"},
        "spec": {"hosts": [host], "http": [
            {"match": [{"path": {"prefix": "/hello"}}], "directResponse": {"status": 200, "body": "hello from the cluster"}},
            {"route": [{"destination": {"host": host}}]}
        ]}
    })).await?;

    let ports = Ports::free();
    let portolan = Portolan::start_kubernetes(
        bin(),
        ports,
        &[
            "--watch-namespace",
            ns,
            "--pod-namespace",
            ns,
            "--pod-name",
            "portolan-e2e",
        ],
        &[],
    )
    .await?;
    let envoy = Envoy::start(bin(), ports, "sidecar-1", "mesh", Protocol::Sotw).await?;
    envoy.wait_for_response(&host, 200, "api-1").await?;
    assert_eq!(
        envoy.get(&host, "/hello").await?,
        (200, "hello from the cluster".to_string())
    );
    let cluster = format!("outbound|80||web.{ns}.svc.cluster.local");
    eventually(
        "the EndpointSlice's endpoint in Envoy",
        Duration::from_secs(30),
        || async {
            let lines = envoy
                .cluster_lines(&cluster)
                .await
                .map_err(|e| e.to_string())?;
            if lines.iter().any(|l| l.contains("192.0.2.10:8080")) {
                Ok(())
            } else {
                Err(format!("{lines:?}"))
            }
        },
    )
    .await?;

    let (generation, conditions, status) =
        eventually("TrafficRoute status", Duration::from_secs(30), || async {
            let (generation, conditions, status) = route_status(client, ns, "api").await?;
            let want = ["Accepted=True", "ResolvedRefs=True", "Programmed=True"];
            if conditions == want {
                Ok((generation, conditions, status))
            } else {
                Err(format!("{conditions:?}"))
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nportolan log:\n{}", portolan.log_tail()))?;
    assert_eq!(
        status["observedGeneration"],
        json!(generation),
        "{conditions:?}"
    );

    // The route now names a missing backend: ResolvedRefs=False, at the new generation.
    apply(client, ns, Kind::TrafficRoute, json!({
        "metadata": {"name": "api"},
        "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": "ratings", "port": 80}}]}]}
    })).await?;
    eventually("ResolvedRefs=False", Duration::from_secs(30), || async {
        let (generation, conditions, status) = route_status(client, ns, "api").await?;
        let fresh = status["observedGeneration"] == json!(generation);
        if fresh && conditions.contains(&"ResolvedRefs=False".to_string()) {
            Ok(())
        } else {
            Err(format!("{conditions:?}"))
        }
    })
    .await?;
    Ok(())
}

/// The stand-in API server's cluster: Service `web` in `shop` with one EndpointSlice pointing
/// at `upstream`, and a TrafficRoute for it. The EndpointSlice list is held back.
async fn fake_cluster(upstream: &Upstream) -> anyhow::Result<FakeApiServer> {
    let api = FakeApiServer::start().await?;
    api.add(
        "/api/v1/namespaces/shop/services",
        json!({"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
               "spec": {"ports": [{"name": "http", "port": 80}]}}),
    );
    let slices = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices";
    api.add(
        slices,
        json!({"metadata": {"name": "web-1", "namespace": "shop", "resourceVersion": "1",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
               "ports": [{"name": "http", "port": upstream.port(), "protocol": "TCP"}]}),
    );
    api.hold(slices);
    api.add(
        "/apis/portolan.dev/v1alpha1/namespaces/shop/trafficroutes",
        json!({"metadata": {"name": "web", "namespace": "shop", "generation": 4, "resourceVersion": "1"},
               "spec": {"hosts": ["web"], "http": [
                   {"match": [{"path": {"prefix": "/hello"}}], "directResponse": {"status": 200, "body": "hello from the cluster"}},
                   {"route": [{"destination": {"host": "web", "port": 80}}]}
               ]}}),
    );
    Ok(api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_kubernetes_waits_for_every_list_then_routes_and_writes_status() -> anyhow::Result<()>
{
    let _shared = portolan_e2e::serial::shared().await;
    let web = Upstream::start("web-1").await?;
    let api = fake_cluster(&web).await?;
    let kubeconfig = api.kubeconfig().display().to_string();
    let ports = Ports::free();
    let args = [
        "--watch-namespace",
        "shop",
        "--pod-namespace",
        "portolan",
        "--pod-name",
        "portolan-0",
    ];
    let starting = tokio::spawn(async move {
        Portolan::start_kubernetes(bin(), ports, &args, &[("KUBECONFIG", kubeconfig.as_str())])
            .await
    });

    // The EndpointSlice list has not answered: not ready, and the watcher says so.
    let http = client();
    let readyz = format!("http://127.0.0.1:{}/readyz", ports.http);
    let not_ready = eventually("/readyz answering", Duration::from_secs(30), || {
        let (http, url) = (http.clone(), readyz.clone());
        async move {
            let r = http.get(&url).send().await.map_err(|e| e.to_string())?;
            Ok(r.status().as_u16())
        }
    })
    .await?;
    assert_eq!(not_ready, 503, "not ready before every watcher listed");
    let sources: Value = http
        .get(format!("http://127.0.0.1:{}/debug/sources", ports.http))
        .send()
        .await?
        .json()
        .await?;
    let watchers = &sources["sources"][0]["watchers"];
    assert_eq!(
        watchers["kubernetes/EndpointSlice/shop"]["synced"],
        json!(false),
        "{sources}"
    );

    // The list answers: ready, and Envoy routes by what the cluster says.
    api.release();
    let portolan = starting.await??;
    let envoy = Envoy::start(bin(), ports, "sidecar-1", "mesh", Protocol::Sotw).await?;
    envoy.wait_for_response("web.shop", 200, "web-1").await?;
    assert_eq!(
        envoy.get("web.shop", "/hello").await?,
        (200, "hello from the cluster".to_string())
    );

    // This replica took the Lease and wrote the route's status, server-side applied.
    let lease = api.lease("portolan", "portolan-leader").expect("a Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "portolan-0");
    let write = eventually("a status write", Duration::from_secs(30), || async {
        api.status_writes()
            .into_iter()
            .find(|w| {
                w.path == "/apis/portolan.dev/v1alpha1/namespaces/shop/trafficroutes/web/status"
            })
            .ok_or_else(|| "none yet".to_string())
    })
    .await?;
    assert!(
        write.query.contains("fieldManager=portolan") && write.query.contains("force=true"),
        "{}",
        write.query
    );
    assert_eq!(write.content_type, "application/apply-patch+yaml");
    let status = &write.body["status"];
    assert_eq!(status["observedGeneration"], 4);
    let conditions: Vec<String> = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={}",
                c["type"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(
        conditions,
        ["Accepted=True", "ResolvedRefs=True", "Programmed=True"]
    );

    // On SIGTERM the leader hands the Lease back.
    portolan.terminate().await?;
    let lease = api.lease("portolan", "portolan-leader").expect("a Lease");
    assert!(
        lease["spec"].get("holderIdentity").is_none(),
        "released: {lease}"
    );
    drop(envoy);
    Ok(())
}

/// The web route of [`fake_cluster`] answering `/hello` with `body` at `version`.
fn web_route(body: &str, version: &str) -> Value {
    json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
    "metadata": {"name": "web", "namespace": "shop", "generation": 5, "resourceVersion": version},
    "spec": {"hosts": ["web"], "http": [
        {"match": [{"path": {"prefix": "/hello"}}], "directResponse": {"status": 200, "body": body}},
        {"route": [{"destination": {"host": "web", "port": 80}}]}
    ]}})
}

/// In Kubernetes mode the cluster stays the source of truth: after the cluster's route is
/// edited and another added, `portolan rollback --to V` changes nothing that Envoy sees and
/// prints the route as it was at V (ready for `kubectl apply -f -`, without the server's
/// metadata) and the `kubectl delete` of the route added since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_rollback_prints_the_manifests_to_reapply() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let web = Upstream::start("web-1").await?;
    let api = fake_cluster(&web).await?;
    api.release();
    let kubeconfig = api.kubeconfig().display().to_string();
    let ports = Ports::free();
    let args = [
        "--watch-namespace",
        "shop",
        "--pod-namespace",
        "portolan",
        "--pod-name",
        "portolan-0",
    ];
    let portolan =
        Portolan::start_kubernetes(bin(), ports, &args, &[("KUBECONFIG", kubeconfig.as_str())])
            .await?;
    let envoy = Envoy::start(bin(), ports, "sidecar-1", "mesh", Protocol::Sotw).await?;
    envoy.wait_for_response("web.shop", 200, "web-1").await?;
    let hello = || async { envoy.get("web.shop", "/hello").await.map(|(_, body)| body) };
    assert_eq!(hello().await?, "hello from the cluster");
    let server = format!("http://127.0.0.1:{}", ports.http);
    let history: Value = client()
        .get(format!("{server}/debug/history"))
        .send()
        .await?
        .json()
        .await?;
    let first = history["versions"][0]["version"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no version: {history}"))?;

    // The cluster changes: the route is edited and another one added.
    let routes = "/apis/portolan.dev/v1alpha1/namespaces/shop/trafficroutes";
    api.event(routes, "MODIFIED", web_route("edited in the cluster", "2"));
    api.event(
        routes,
        "ADDED",
        json!({"apiVersion": "portolan.dev/v1alpha1", "kind": "TrafficRoute",
               "metadata": {"name": "extra", "namespace": "shop", "resourceVersion": "3"},
               "spec": {"hosts": ["extra"], "http": [{"directResponse": {"status": 200, "body": "extra"}}]}}),
    );
    eventually(
        "the edit reaching Envoy",
        Duration::from_secs(30),
        || async {
            match hello().await {
                Ok(body) if body == "edited in the cluster" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    eventually(
        "the added route in the history",
        Duration::from_secs(30),
        || async {
            let history: Value = client()
                .get(format!("{server}/debug/history"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let added = history["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|v| v["changes"].as_array().into_iter().flatten())
                .any(|c| c["object"] == "TrafficRoute shop/extra" && c["change"] == "added");
            added.then_some(()).ok_or_else(|| history.to_string())
        },
    )
    .await?;

    let out = std::process::Command::new(bin())
        .args(["rollback", "--to", &first.to_string(), "--server", &server])
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("# TrafficRoute shop/web") && stdout.contains("hello from the cluster"),
        "the route as it was: {stdout}"
    );
    assert!(
        !stdout.contains("resourceVersion") && !stdout.contains("generation"),
        "no server-set metadata: {stdout}"
    );
    assert!(!stdout.contains("extra"), "{stdout}");
    assert!(
        stderr.contains("then delete: kubectl delete -n shop trafficroute.portolan.dev/extra"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was changed here"), "{stderr}");
    assert_eq!(
        hello().await?,
        "edited in the cluster",
        "Kubernetes mode serves the cluster, not the history"
    );
    drop(envoy);
    portolan.terminate().await?;
    Ok(())
}
