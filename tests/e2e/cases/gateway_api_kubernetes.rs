//! The Gateway API through `portolan serve --kubernetes`, against the stand-in API server:
//! a GatewayClass, a Gateway and an HTTPRoute listed from the "cluster" route real requests
//! through stock Envoy bootstrapped with `portolan bootstrap --gateway`; the leader provisions
//! the Gateway (ConfigMap, Deployment, Service owned by it) and server-side applies the status
//! (GatewayClass, Gateway with the Service's address, the route's `parents` entry next to the
//! one another controller wrote, which stays). A Gateway of another class gets nothing.
//! A BackendTLSPolicy and its CA ConfigMap, listed from the cluster, make Envoy originate TLS
//! to an HTTPS backend (with the policy's SNI, verified against that CA), and its
//! `ancestors` status is applied next to another controller's entry. A ListenerSet listed
//! from the cluster adds a listener to the Gateway (which allows it): a route on it is served,
//! and its status and the Gateway's `attachedListenerSets` are applied.

use crate::bin;
use portolan_e2e::apiserver::{CLUSTER_IP, FakeApiServer, StatusWrite};
use portolan_e2e::envoy::Protocol;
use portolan_e2e::portolan::Ports;
use portolan_e2e::tls::TestCa;
use portolan_e2e::{Envoy, Portolan, Upstream, eventually, http};
use serde_json::{Value, json};
use std::time::Duration;

const GW: &str = "/apis/gateway.networking.k8s.io/v1";
const OTHER: &str = "example.com/other-controller";

fn foreign_entry() -> Value {
    json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "foreign", "namespace": "infra"},
        "controllerName": OTHER,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    })
}

fn gateway(name: &str, class: &str, port: u16) -> Value {
    json!({"metadata": {"name": name, "namespace": "infra", "uid": format!("uid-{name}"),
                        "generation": 2, "resourceVersion": "1"},
           "spec": {"gatewayClassName": class, "listeners": [{"name": "http", "port": port,
                    "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}],
                    "allowedListeners": {"namespaces": {"from": "All"}}}})
}

/// ListenerSet `shop/extra` on Gateway `infra/edge` (a listener for `ls.example.com` on the
/// Gateway's port) and an HTTPRoute attached to it.
fn listener_set(api: &FakeApiServer, port: u16) {
    api.add(
        &format!("{GW}/namespaces/shop/listenersets"),
        json!({"metadata": {"name": "extra", "namespace": "shop", "generation": 2, "resourceVersion": "4"},
               "spec": {"parentRef": {"name": "edge", "namespace": "infra"},
                        "listeners": [{"name": "ls", "port": port, "protocol": "HTTP",
                                       "hostname": "ls.example.com"}]}}),
    );
    api.add(
        &format!("{GW}/namespaces/shop/httproutes"),
        json!({"metadata": {"name": "on-set", "namespace": "shop", "generation": 1, "resourceVersion": "5"},
               "spec": {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "ListenerSet",
                                        "name": "extra"}],
                        "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}),
    );
}

/// The other controller's BackendTLSPolicy ancestor entry, as it wrote it.
fn foreign_ancestor() -> Value {
    json!({
        "ancestorRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "foreign", "namespace": "infra"},
        "controllerName": OTHER,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    })
}

/// Service `shop/secure` on the HTTPS backend `upstream`, an HTTPRoute to it on `edge`, and
/// a BackendTLSPolicy trusting `ca` (ConfigMap `shop/secure-ca`) with SNI `secure.internal`.
fn backend_tls(api: &FakeApiServer, upstream: &Upstream, ca: &TestCa) {
    api.add(
        "/api/v1/namespaces/shop/services",
        json!({"metadata": {"name": "secure", "namespace": "shop", "resourceVersion": "1"},
               "spec": {"ports": [{"name": "https", "port": 443}]}}),
    );
    api.add(
        "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
        json!({"metadata": {"name": "secure-1", "namespace": "shop", "resourceVersion": "1",
                            "labels": {"kubernetes.io/service-name": "secure"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
               "ports": [{"name": "https", "port": upstream.port(), "protocol": "TCP"}]}),
    );
    api.add(
        "/api/v1/namespaces/shop/configmaps",
        json!({"metadata": {"name": "secure-ca", "namespace": "shop", "resourceVersion": "1"},
               "data": {"ca.crt": ca.cert_pem()}}),
    );
    api.add(
        "/api/v1/namespaces/shop/configmaps",
        json!({"metadata": {"name": "unrelated", "namespace": "shop", "resourceVersion": "1"},
               "data": {"settings.json": "{}"}}),
    );
    api.add(
        &format!("{GW}/namespaces/shop/httproutes"),
        json!({"metadata": {"name": "secure", "namespace": "shop", "generation": 1, "resourceVersion": "3"},
               "spec": {"parentRefs": [{"name": "edge", "namespace": "infra"}],
                        "hostnames": ["secure.example.com"],
                        "rules": [{"backendRefs": [{"name": "secure", "port": 443}]}]}}),
    );
    api.add(
        &format!("{GW}/namespaces/shop/backendtlspolicies"),
        json!({"metadata": {"name": "secure-tls", "namespace": "shop", "generation": 4,
                            "resourceVersion": "5"},
               "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "secure"}],
                        "validation": {"caCertificateRefs": [{"group": "", "kind": "ConfigMap",
                                                              "name": "secure-ca"}],
                                       "hostname": "secure.internal"}},
               "status": {"ancestors": [foreign_ancestor()]}}),
    );
}

/// The stand-in cluster: Service `shop/web` (its endpoint: `upstream`), Portolan's class and
/// another controller's, a Gateway of each, and an HTTPRoute naming both.
async fn cluster(upstream: &Upstream, port: u16) -> anyhow::Result<FakeApiServer> {
    let api = FakeApiServer::start().await?;
    api.add(
        "/api/v1/namespaces/shop/services",
        json!({"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
               "spec": {"ports": [{"name": "http", "port": 80}]}}),
    );
    api.add(
        "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
        json!({"metadata": {"name": "web-1", "namespace": "shop", "resourceVersion": "1",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
               "ports": [{"name": "http", "port": upstream.port(), "protocol": "TCP"}]}),
    );
    for (name, controller) in [
        ("portolan", "portolan.dev/gateway-controller"),
        ("other", OTHER),
    ] {
        api.add(
            &format!("{GW}/gatewayclasses"),
            json!({"metadata": {"name": name, "generation": 1, "resourceVersion": "1"},
                   "spec": {"controllerName": controller}}),
        );
    }
    let gateways = format!("{GW}/namespaces/infra/gateways");
    api.add(&gateways, gateway("edge", "portolan", port));
    api.add(&gateways, gateway("foreign", "other", port));
    api.add(
        &format!("{GW}/namespaces/shop/httproutes"),
        json!({"metadata": {"name": "web", "namespace": "shop", "generation": 3, "resourceVersion": "7"},
               "spec": {"parentRefs": [{"name": "edge", "namespace": "infra"}, {"name": "foreign", "namespace": "infra"}],
                        "hostnames": ["web.example.com"],
                        "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
               "status": {"parents": [foreign_entry()]}}),
    );
    // A UDPRoute (experimental channel, v1alpha2) naming a listener `edge` does not have.
    api.add(
        "/apis/gateway.networking.k8s.io/v1alpha2/namespaces/shop/udproutes",
        json!({"metadata": {"name": "dns", "namespace": "shop", "generation": 2, "resourceVersion": "4"},
               "spec": {"parentRefs": [{"name": "edge", "namespace": "infra", "sectionName": "dns"}],
                        "rules": [{"backendRefs": [{"name": "web", "port": 53}]}]}}),
    );
    Ok(api)
}

/// The last write to `path` once `ok` accepts it.
async fn written(
    writes: impl Fn() -> Vec<StatusWrite>,
    path: &str,
    ok: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    eventually(path, Duration::from_secs(30), || async {
        writes()
            .into_iter()
            .rev()
            .find(|w| w.path == path)
            .map(|w| w.body)
            .filter(|b| ok(b))
            .ok_or_else(|| "not yet".to_string())
    })
    .await
}

fn condition(conditions: &Value, type_: &str) -> String {
    conditions
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .map(|c| format!("{}={}", type_, c["status"].as_str().unwrap_or("?")))
        .unwrap_or_else(|| format!("{type_} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_from_the_cluster_routes_provisions_and_gets_status() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let web = Upstream::start("web-1").await?;
    let listener = Ports::free().mesh;
    let api = cluster(&web, listener).await?;
    let ca = TestCa::new()?;
    let secure = Upstream::start_tls("secure-1", &ca.issue(&["secure.internal"])?).await?;
    backend_tls(&api, &secure, &ca);
    listener_set(&api, listener);
    let kubeconfig = api.kubeconfig().display().to_string();
    let ports = Ports::free();
    let xds = format!("127.0.0.1:{}", ports.xds);
    let args = [
        "--watch-namespace",
        "shop,infra",
        "--pod-namespace",
        "portolan",
        "--pod-name",
        "portolan-0",
        "--gateway-service-type",
        "ClusterIP",
        "--gateway-xds-address",
        &xds,
    ];
    let portolan =
        Portolan::start_kubernetes(bin(), ports, &args, &[("KUBECONFIG", kubeconfig.as_str())])
            .await?;

    // Stock Envoy as the Gateway's proxy: requests for the route's host reach the backend.
    let envoy = Envoy::start_with(
        bin(),
        ports,
        "edge-1",
        "unused",
        Protocol::Sotw,
        &["--gateway", "infra/edge"],
    )
    .await?;
    let reply = eventually(
        "web.example.com through the Gateway",
        Duration::from_secs(30),
        || async {
            match http::get(listener, "web.example.com", "/").await {
                Ok(r) if r.status == 200 && r.body.contains("web-1") => Ok(r),
                Ok(r) => Err(format!("{} {}", r.status, r.body)),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", portolan.log_tail(), envoy.log_tail()))?;
    assert!(reply.body.contains("web-1"));
    // The ListenerSet's listener serves the route attached to it.
    eventually(
        "ls.example.com through the ListenerSet",
        Duration::from_secs(30),
        || async {
            match http::get(listener, "ls.example.com", "/").await {
                Ok(r) if r.status == 200 && r.body.contains("web-1") => Ok(()),
                Ok(r) => Err(format!("{} {}", r.status, r.body)),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", portolan.log_tail()))?;
    let miss = http::get(listener, "other.example.com", "/").await?;
    assert_eq!(miss.status, 404, "no route for another host");
    // BackendTLSPolicy: TLS to the HTTPS backend, with the policy's SNI.
    eventually(
        "secure.example.com over backend TLS",
        Duration::from_secs(30),
        || async {
            match http::get(listener, "secure.example.com", "/").await {
                Ok(r) if r.status == 200 && r.header("x-seen-sni") == Some("secure.internal") => {
                    Ok(())
                }
                Ok(r) => Err(format!("{} {:?} {}", r.status, r.headers, r.body)),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", portolan.log_tail()))?;

    // Provisioned: the bootstrap, a Deployment of Envoy and a Service, owned by the Gateway.
    let applies = || api.applies();
    let deploy_path = "/apis/apps/v1/namespaces/infra/deployments/portolan-gateway-edge";
    let deploy = written(applies, deploy_path, |_| true).await?;
    assert_eq!(
        deploy["metadata"]["ownerReferences"][0]["uid"], "uid-edge",
        "{deploy}"
    );
    assert_eq!(deploy["metadata"]["ownerReferences"][0]["kind"], "Gateway");
    let cm = written(
        applies,
        "/api/v1/namespaces/infra/configmaps/portolan-gateway-edge",
        |_| true,
    )
    .await?;
    let bootstrap: Value = serde_json::from_str(cm["data"]["envoy.json"].as_str().unwrap_or("{}"))?;
    assert_eq!(bootstrap["node"]["cluster"], "gateway:infra/edge");
    let svc = written(
        applies,
        "/api/v1/namespaces/infra/services/portolan-gateway-edge",
        |_| true,
    )
    .await?;
    assert_eq!(svc["spec"]["ports"][0]["port"], json!(listener));
    assert!(
        !api.applies().iter().any(|w| w.path.contains("foreign")),
        "nothing is provisioned for another class's Gateway"
    );

    // Status, server-side applied by the leader.
    let writes = || api.status_writes();
    let class = written(
        writes,
        &format!("{GW}/gatewayclasses/portolan/status"),
        |_| true,
    )
    .await?;
    assert_eq!(
        condition(&class["status"]["conditions"], "Accepted"),
        "Accepted=True"
    );
    let gw = written(
        writes,
        &format!("{GW}/namespaces/infra/gateways/edge/status"),
        |b| b["status"]["addresses"][0]["value"] == CLUSTER_IP,
    )
    .await?;
    let status = &gw["status"];
    assert_eq!(
        status["addresses"],
        json!([{"type": "IPAddress", "value": CLUSTER_IP}])
    );
    for t in ["Accepted", "Programmed"] {
        assert_eq!(
            condition(&status["conditions"], t),
            format!("{t}=True"),
            "{status}"
        );
    }
    assert_eq!(
        status["listeners"][0]["attachedRoutes"], 2,
        "web and secure"
    );
    assert_eq!(status["attachedListenerSets"], 1, "{status}");
    let set = written(
        writes,
        &format!("{GW}/namespaces/shop/listenersets/extra/status"),
        |_| true,
    )
    .await?;
    for t in ["Accepted", "Programmed"] {
        assert_eq!(
            condition(&set["status"]["conditions"], t),
            format!("{t}=True"),
            "{set}"
        );
    }
    assert_eq!(set["status"]["conditions"][0]["observedGeneration"], 2);
    assert_eq!(set["status"]["listeners"][0]["name"], "ls");
    assert_eq!(set["status"]["listeners"][0]["attachedRoutes"], 1, "{set}");
    let route = written(
        writes,
        &format!("{GW}/namespaces/shop/httproutes/web/status"),
        |_| true,
    )
    .await?;
    assert_eq!(route["metadata"]["resourceVersion"], "7", "{route}");
    let parents = route["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert_eq!(
        parents[0],
        foreign_entry(),
        "the other controller's entry stays as it was"
    );
    assert_eq!(
        parents[1]["controllerName"],
        "portolan.dev/gateway-controller"
    );
    assert_eq!(parents[1]["parentRef"]["name"], "edge");
    for t in ["Accepted", "ResolvedRefs"] {
        assert_eq!(condition(&parents[1]["conditions"], t), format!("{t}=True"));
    }
    assert_eq!(parents[1]["conditions"][0]["observedGeneration"], 3);
    // The UDPRoute is watched at v1alpha2 and gets its status there.
    let udp = written(
        writes,
        "/apis/gateway.networking.k8s.io/v1alpha2/namespaces/shop/udproutes/dns/status",
        |_| true,
    )
    .await?;
    let p = &udp["status"]["parents"][0];
    assert_eq!(p["parentRef"]["sectionName"], "dns", "{udp}");
    assert_eq!(
        condition(&p["conditions"], "Accepted"),
        "Accepted=False",
        "{udp}"
    );
    assert_eq!(p["conditions"][0]["reason"], "NoMatchingParent", "{udp}");
    assert_eq!(p["conditions"][0]["observedGeneration"], 2, "{udp}");
    // Service web has no port 53.
    assert_eq!(
        condition(&p["conditions"], "ResolvedRefs"),
        "ResolvedRefs=False",
        "{udp}"
    );
    let policy = written(
        writes,
        &format!("{GW}/namespaces/shop/backendtlspolicies/secure-tls/status"),
        |_| true,
    )
    .await?;
    assert_eq!(policy["metadata"]["resourceVersion"], "5", "{policy}");
    let ancestors = policy["status"]["ancestors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(ancestors.len(), 2, "{ancestors:?}");
    assert_eq!(
        ancestors[0],
        foreign_ancestor(),
        "the other controller's entry stays"
    );
    assert_eq!(
        ancestors[1]["controllerName"],
        "portolan.dev/gateway-controller"
    );
    assert_eq!(ancestors[1]["ancestorRef"]["name"], "edge");
    for t in ["Accepted", "ResolvedRefs"] {
        assert_eq!(
            condition(&ancestors[1]["conditions"], t),
            format!("{t}=True")
        );
    }
    assert_eq!(ancestors[1]["conditions"][0]["observedGeneration"], 4);
    let untouched = |name: &str| {
        !api.status_writes()
            .iter()
            .any(|w| w.path.ends_with(&format!("/{name}/status")))
    };
    assert!(
        untouched("foreign") && untouched("other"),
        "another class's objects are never touched"
    );
    drop(envoy);
    portolan.terminate().await?;
    Ok(())
}
