//! Provisioning: the manifests of a Gateway's proxies, their owner reference, the Service's
//! addresses; and the leader's pass over a scripted API server.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::gateway_api_tests::{gateway, gateway_class, http_route, service};
use crate::testing::{mock_client, next, respond};
use crate::view::ClusterView;
use crate::writer::{Inputs, StatusWriter};
use portolan_api::Kind;

/// The ConfigMap, Deployment and Service (without token identity).
fn three(manifests: Vec<Value>) -> [Value; 3] {
    manifests.try_into().expect("three manifests")
}

fn config() -> ProvisionConfig {
    ProvisionConfig {
        envoy_image: "envoyproxy/envoy:v1.40.0".into(),
        service_type: "ClusterIP".into(),
        replicas: 2,
        bootstrap: Arc::new(|gw: &ObjectRef| {
            Ok(json!({"node": {"cluster": format!("gateway:{}/{}", gw.namespace, gw.name)}}))
        }),
        tokens: None,
    }
}

fn edge() -> ObjectRef {
    ObjectRef::new(Kind::ApiGateway, "infra", "edge")
}

fn spec() -> Gateway {
    let mut v = gateway("edge", "portolan");
    v["spec"]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "https", "port": 443, "protocol": "HTTPS"}));
    v["spec"]["infrastructure"] = json!({
        "labels": {"team": "web", GATEWAY_LABEL: "spoofed"},
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
    });
    v["apiVersion"] = json!("gateway.networking.k8s.io/v1");
    v["kind"] = json!("Gateway");
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_udp_listener_port_is_a_udp_port_of_the_pod_and_the_service() {
    let mut gw = spec();
    gw.spec.listeners.push(
        serde_json::from_value(json!({"name": "dns", "port": 53, "protocol": "UDP"})).unwrap(),
    );
    let served = std::collections::BTreeSet::new();
    let bootstrap = json!({});
    let [_, deploy, svc] = three(manifests(
        &edge(),
        "uid-1",
        &gw,
        &served,
        &bootstrap,
        &config(),
    ));
    assert_ports(
        &svc,
        &deploy,
        &[
            (53, "port-53-udp", "UDP"),
            (443, "port-443", "TCP"),
            (8080, "port-8080", "TCP"),
        ],
    );
}

/// The (port, name, protocol) of each entry of a `ports` array (Service or container).
fn port_entries(ports: &Value) -> Vec<(i64, String, String)> {
    ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let n = p["port"].as_i64().or(p["containerPort"].as_i64()).unwrap();
            let name = p["name"].as_str().unwrap().to_string();
            (n, name, p["protocol"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The Service and the pod template have exactly the ports `want`, in that order; each name
/// fits a container port name (an IANA_SVC_NAME, at most 15 characters).
fn assert_ports(svc: &Value, deploy: &Value, want: &[(i64, &str, &str)]) {
    let want: Vec<(i64, String, String)> = want
        .iter()
        .map(|(p, n, t)| (*p, n.to_string(), t.to_string()))
        .collect();
    assert_eq!(port_entries(&svc["spec"]["ports"]), want);
    assert_eq!(
        port_entries(&deploy["spec"]["template"]["spec"]["containers"][0]["ports"]),
        want
    );
    for (_, name, _) in &want {
        assert!(
            name.len() <= 15,
            "{name}: too long for a container port name"
        );
    }
}

/// A TCP listener and a UDP listener on one port number, and UDP listeners of an attached
/// ListenerSet (one of them beside the Gateway's TCP listener): every UDP listener port is a
/// UDP port of the pod and the Service, named apart from the TCP port of the same number.
#[test]
fn udp_ports_of_the_gateway_and_its_listener_sets_are_udp_beside_tcp_ones() {
    let view = ClusterView::new();
    let mut index = portolan_model::Index::with_gateway_pool(
        portolan_model::gateway_api::AddressPool::cluster(),
    );
    let mut gw = gateway("edge", "portolan");
    gw["spec"]["listeners"] = json!([
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "web", "port": 8443, "protocol": "TCP"},
    ]);
    gw["spec"]["allowedListeners"] = json!({"namespaces": {"from": "Same"}});
    let set = json!({"metadata": {"name": "extra", "namespace": "infra", "generation": 1},
        "spec": {"parentRef": {"name": "edge"}, "listeners": [
            {"name": "quic", "port": 8443, "protocol": "UDP"},
            {"name": "syslog", "port": 5514, "protocol": "UDP"}]}});
    for (kind, value) in [
        (
            Kind::GatewayClass,
            gateway_class("portolan", "portolan.dev/gateway-controller"),
        ),
        (Kind::ApiGateway, gw.clone()),
        (Kind::ListenerSet, set),
    ] {
        let mut feed = crate::KindFeed::new(kind, None, view.clone());
        let handled = feed.handle(kube::runtime::watcher::Event::Apply(
            serde_json::from_value(value).unwrap(),
        ));
        handled.changes.apply_to(feed.reporter(), &mut index);
    }
    let world = index.world();
    let served = served_ports(&world, &edge());
    let want_served: Vec<(i32, bool)> = vec![
        (53, false),
        (53, true),
        (5514, true),
        (8443, false),
        (8443, true),
    ];
    assert_eq!(
        served.iter().map(|p| (p.port, p.udp)).collect::<Vec<_>>(),
        want_served,
        "the ListenerSet's listeners are served, over UDP"
    );
    let spec: Gateway = {
        let mut v = gw;
        v["apiVersion"] = json!("gateway.networking.k8s.io/v1");
        v["kind"] = json!("Gateway");
        serde_json::from_value(v).unwrap()
    };
    let [_, deploy, svc] = three(manifests(
        &edge(),
        "uid-1",
        &spec,
        &served,
        &json!({}),
        &config(),
    ));
    assert_ports(
        &svc,
        &deploy,
        &[
            (53, "port-53", "TCP"),
            (53, "port-53-udp", "UDP"),
            (5514, "port-5514-udp", "UDP"),
            (8443, "port-8443", "TCP"),
            (8443, "port-8443-udp", "UDP"),
        ],
    );
}

#[test]
fn a_gateway_gets_a_bootstrap_a_deployment_and_a_service_it_owns() {
    let bootstrap = json!({"node": {"cluster": "gateway:infra/edge"}});
    let served = std::collections::BTreeSet::from([ServedPort {
        port: 9443,
        udp: false,
    }]);
    let [cm, deploy, svc] = three(manifests(
        &edge(),
        "uid-1",
        &spec(),
        &served,
        &bootstrap,
        &config(),
    ));
    for m in [&cm, &deploy, &svc] {
        assert_eq!(m["metadata"]["name"], "portolan-gateway-edge");
        assert_eq!(m["metadata"]["namespace"], "infra");
        assert_eq!(m["metadata"]["labels"][GATEWAY_LABEL], "edge", "ours win");
        assert_eq!(
            m["metadata"]["labels"]["team"], "web",
            "spec.infrastructure.labels"
        );
        assert_eq!(
            m["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-type"],
            "nlb"
        );
        let owner = &m["metadata"]["ownerReferences"][0];
        assert_eq!(
            owner,
            &json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                    "name": "edge", "uid": "uid-1", "controller": true})
        );
    }
    let stored: Value = serde_json::from_str(cm["data"]["envoy.json"].as_str().unwrap()).unwrap();
    assert_eq!(stored, bootstrap);
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], "envoyproxy/envoy:v1.40.0");
    assert_eq!(
        pod["containers"][0]["args"],
        json!([
            "-c",
            "/etc/portolan/envoy.json",
            "--service-node",
            "$(POD_NAME)"
        ])
    );
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        "portolan-gateway-edge"
    );
    assert_eq!(
        deploy["spec"]["selector"]["matchLabels"], svc["spec"]["selector"],
        "the Service selects the Deployment's pods"
    );
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    let ports: Vec<i64> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ports,
        [443, 8080, 9443],
        "every listener port, and those of attached ListenerSets"
    );
}

#[test]
fn the_gateway_address_is_the_load_balancers_else_the_cluster_ip() {
    let svc = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9"},
                     "status": {"loadBalancer": {}}});
    assert_eq!(
        service_addresses(&svc),
        [json!({"type": "IPAddress", "value": "10.96.0.9"})]
    );
    assert!(!has_ingress(&svc));
    let lb = json!({"spec": {"clusterIP": "10.96.0.9"}, "status": {"loadBalancer": {"ingress": [
        {"ip": "203.0.113.4"}, {"hostname": "lb.example.com"}]}}});
    assert_eq!(
        service_addresses(&lb),
        [
            json!({"type": "IPAddress", "value": "203.0.113.4"}),
            json!({"type": "Hostname", "value": "lb.example.com"})
        ]
    );
    assert!(service_addresses(&json!({"spec": {"clusterIP": "None"}})).is_empty());
}

/// The leader provisions the Gateway (ConfigMap, Deployment, Service by server-side apply),
/// then writes the Service's address into the Gateway's status; the next pass applies
/// nothing again.
#[tokio::test]
async fn the_leader_provisions_and_publishes_the_service_address() {
    let view = ClusterView::new();
    let mut index = portolan_model::Index::with_gateway_pool(
        portolan_model::gateway_api::AddressPool::cluster(),
    );
    let mut gw = gateway("edge", "portolan");
    gw["metadata"]["uid"] = json!("uid-1");
    for (kind, value) in [
        (Kind::Service, service()),
        (
            Kind::GatewayClass,
            gateway_class("portolan", "portolan.dev/gateway-controller"),
        ),
        (Kind::ApiGateway, gw),
        (Kind::HttpRoute, http_route(&["edge"], Value::Null)),
    ] {
        let mut feed = crate::KindFeed::new(kind, None, view.clone());
        let handled = feed.handle(kube::runtime::watcher::Event::Apply(
            serde_json::from_value(value).unwrap(),
        ));
        handled.changes.apply_to(feed.reporter(), &mut index);
    }
    assert_eq!(index.world().api_gateways[&edge()].address, "0.0.0.0");
    let inputs = Inputs {
        world: index.world(),
        programmed: BTreeMap::new(),
    };
    let (client, mut api) = mock_client();
    let writer = Arc::new(StatusWriter::new(client, view).with_provisioner(config()));
    let (_tx, leading) = tokio::sync::watch::channel(true);
    let (w, l, i) = (writer.clone(), leading.clone(), inputs.clone());
    let pass = tokio::spawn(async move { w.write_pass(&i, &l).await });
    let mut paths = Vec::new();
    let mut gateway_status = Value::Null;
    // ConfigMap, Deployment, Service; then GatewayClass, Gateway and HTTPRoute status.
    for _ in 0..6 {
        let (req, r) = next(&mut api).await;
        assert_eq!(req.method, "PATCH");
        assert!(req.query.contains("fieldManager=portolan"), "{}", req.query);
        let mut answer = req.body.clone();
        if req.path.ends_with("/services/portolan-gateway-edge") {
            answer["spec"]["clusterIP"] = json!("10.96.7.7");
        }
        if req.path.ends_with("/gateways/edge/status") {
            gateway_status = req.body["status"].clone();
        }
        respond(r, 200, &answer);
        paths.push(req.path);
    }
    let pass = pass.await.unwrap();
    assert_eq!((pass.written, pass.failed), (3, 0), "{paths:?}");
    assert_eq!(
        paths[..3],
        [
            "/api/v1/namespaces/infra/configmaps/portolan-gateway-edge",
            "/apis/apps/v1/namespaces/infra/deployments/portolan-gateway-edge",
            "/api/v1/namespaces/infra/services/portolan-gateway-edge",
        ]
    );
    assert_eq!(
        gateway_status["addresses"],
        json!([{"type": "IPAddress", "value": "10.96.7.7"}])
    );
    // Nothing changed: the next pass applies nothing (the mock is gone; a request would fail).
    drop(api);
    let pass = writer.write_pass(&inputs, &leading).await;
    assert_eq!(pass.failed, 0);
}

#[test]
fn with_tokens_the_pods_run_as_the_gateways_service_account_with_its_token() {
    let served = BTreeSet::new();
    let config = ProvisionConfig {
        tokens: Some(GatewayTokens {
            ca_pem: "-----BEGIN CERTIFICATE-----\nCA\n".into(),
            audience: "portolan".into(),
        }),
        ..config()
    };
    let all = manifests(&edge(), "uid-1", &spec(), &served, &json!({}), &config);
    let kinds: Vec<&str> = all.iter().filter_map(|m| m["kind"].as_str()).collect();
    // The ServiceAccount first, so the pods' account exists when they are created.
    assert_eq!(
        kinds,
        ["ServiceAccount", "ConfigMap", "Deployment", "Service"]
    );
    let [sa, cm, deploy, _] = <[Value; 4]>::try_from(all).expect("four");
    assert_eq!(sa["metadata"]["name"], "portolan-gateway-edge");
    assert_eq!(sa["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        cm["data"]["xds-ca.crt"],
        "-----BEGIN CERTIFICATE-----\nCA\n"
    );
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "portolan-gateway-edge");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let token = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "portolan-token")
        .expect("the token volume");
    let source = &token["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(source["audience"], "portolan");
    assert_eq!(source["path"], "token");
    let mounts = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == "portolan-token" && m["mountPath"] == TOKEN_DIR),
        "{mounts:?}"
    );
}
