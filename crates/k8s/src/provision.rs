//! Provisioning: every Gateway of Portolan's class gets proxies of its own, in its namespace,
//! owned by the Gateway (`ownerReferences`, so deleting the Gateway deletes them):
//!
//! * a ConfigMap `portolan-gateway-NAME` holding the stock Envoy bootstrap for that Gateway
//!   (what `portolan bootstrap --gateway NS/NAME` prints, supplied by the binary);
//! * a Deployment of stock Envoy reading it (each pod's `node.id` is its pod name); the pods
//!   may bind ports below 1024 (`net.ipv4.ip_unprivileged_port_start=0`, a safe sysctl);
//! * a Service (LoadBalancer by default) exposing every listener port;
//! * with [`ProvisionConfig::tokens`] (`serve --xds-token-review` with `--inject-xds-ca`), a
//!   ServiceAccount `portolan-gateway-NAME`, the pods' identity: they prove it to Portolan with
//!   a projected token of it (audience as sidecars'), over TLS trusting the xDS CA (in the
//!   ConfigMap), and its token may ask for that Gateway's proxy group only.
//!
//! The Gateway's `spec.infrastructure.labels` and `annotations` go on all three and on the pods
//! (Portolan's own labels win over a clash).
//!
//! All three are server-side applied (field manager `portolan`) by the leader, and again only
//! when what would be applied changes, or [`RESYNC`] after the last apply (so an object deleted
//! or edited by hand comes back). The Service's addresses (load balancer ingress, else
//! its cluster IP) become the Gateway's `status.addresses`. [`manifests`] is pure.

use crate::error::K8sError;
use crate::writer::FIELD_MANAGER;
use kube::api::{Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use portolan_api::gwapi::{GROUP, Gateway};
use portolan_api::{ObjectRef, Resource};
use portolan_model::World;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an applied object is trusted to be as applied before it is applied again.
pub const RESYNC: Duration = Duration::from_secs(300);

/// The label every provisioned object carries (the Gateway API's convention).
pub const GATEWAY_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// Renders the Envoy bootstrap (JSON) of one Gateway's proxies.
pub type Bootstrap = Arc<dyn Fn(&ObjectRef) -> Result<Value, String> + Send + Sync>;

/// Where a provisioned pod finds the xDS CA (a key of its ConfigMap).
pub const XDS_CA_FILE: &str = "/etc/portolan/xds-ca.crt";
/// Where a provisioned pod's projected service account token is mounted (file `token`).
pub const TOKEN_DIR: &str = "/var/run/secrets/portolan";
/// Lifetime asked for the projected token (the kubelet refreshes it at 80 %).
const TOKEN_SECONDS: u32 = 600;

/// How Gateways are provisioned (`serve --provision-gateways`, chart `gatewayProvisioning`).
#[derive(Clone)]
pub struct ProvisionConfig {
    pub envoy_image: String,
    /// `LoadBalancer`, `NodePort` or `ClusterIP`.
    pub service_type: String,
    pub replicas: i32,
    pub bootstrap: Bootstrap,
    /// The pods prove their Gateway's service account with a token over TLS; none: plaintext
    /// xDS with no credential.
    pub tokens: Option<GatewayTokens>,
}

/// Token identity of provisioned proxies: the xDS CA they trust and their tokens' audience.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayTokens {
    pub ca_pem: String,
    pub audience: String,
}

/// The addresses of each provisioned Gateway's Service (for its `status.addresses`).
#[derive(Clone, Debug, Default)]
pub struct Addresses {
    inner: Arc<Mutex<BTreeMap<ObjectRef, Vec<Value>>>>,
}

// === impl Addresses ===

impl Addresses {
    pub fn get(&self, gateway: &ObjectRef) -> Option<Vec<Value>> {
        self.lock().get(gateway).cloned()
    }

    pub fn snapshot(&self) -> BTreeMap<ObjectRef, Vec<Value>> {
        self.lock().clone()
    }

    fn set(&self, gateway: &ObjectRef, addresses: Vec<Value>) {
        self.lock().insert(gateway.clone(), addresses);
    }

    fn retain(&self, keep: &BTreeSet<ObjectRef>) {
        self.lock().retain(|g, _| keep.contains(g));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ObjectRef, Vec<Value>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The name of a Gateway's ConfigMap, Deployment and Service.
pub fn object_name(gateway: &str) -> String {
    format!("portolan-gateway-{gateway}")
}

/// A port a Gateway's proxies listen on, and whether over UDP (a UDP listener's: UDPRoute)
/// rather than TCP. One number may be served over both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServedPort {
    pub port: i32,
    pub udp: bool,
}

/// The ConfigMap, Deployment and Service of one Gateway (`uid`: the Gateway's, for the
/// owner reference). `served`: the ports its proxies listen on beyond its own listeners'
/// (those of the ListenerSets attached to it).
pub fn manifests(
    source: &ObjectRef,
    uid: &str,
    spec: &Gateway,
    served: &BTreeSet<ServedPort>,
    bootstrap: &Value,
    config: &ProvisionConfig,
) -> Vec<Value> {
    let name = object_name(&source.name);
    let infra = spec.spec.infrastructure.clone().unwrap_or_default();
    let mut labels = serde_json::Map::new();
    for (k, v) in &infra.labels {
        labels.insert(k.clone(), Value::from(v.as_str()));
    }
    for (k, v) in [
        (GATEWAY_LABEL, source.name.as_str()),
        ("app.kubernetes.io/name", "portolan-gateway"),
        ("app.kubernetes.io/managed-by", "portolan"),
    ] {
        labels.insert(k.to_string(), Value::from(v));
    }
    let labels = Value::Object(labels);
    let annotations = json!(infra.annotations);
    let metadata = json!({
        "name": name,
        "namespace": source.namespace,
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [{
            "apiVersion": format!("{GROUP}/v1"), "kind": "Gateway",
            "name": source.name, "uid": uid, "controller": true,
        }],
    });
    // A UDP listener's port (UDPRoute) is a UDP port of the pod and the Service; a TCP-based
    // listener of the same number adds a TCP port beside it.
    let ports: BTreeSet<ServedPort> = spec
        .spec
        .listeners
        .iter()
        .map(|l| ServedPort {
            port: l.port,
            udp: l.protocol == "UDP",
        })
        .chain(served.iter().copied())
        .collect();
    let mut config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
        "data": {"envoy.json": bootstrap.to_string()},
    });
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
        "spec": {
            "replicas": config.replicas,
            "selector": {"matchLabels": {GATEWAY_LABEL: source.name}},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "securityContext": {"sysctls": [
                        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
                    ]},
                    "containers": [{
                        "name": "envoy",
                        "image": config.envoy_image,
                        "args": ["-c", "/etc/portolan/envoy.json", "--service-node", "$(POD_NAME)"],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "ports": ports.iter().map(|p| json!({"name": port_name(p), "containerPort": p.port, "protocol": protocol(p)})).collect::<Vec<_>>(),
                        "volumeMounts": [{"name": "bootstrap", "mountPath": "/etc/portolan", "readOnly": true}],
                    }],
                    "volumes": [{"name": "bootstrap", "configMap": {"name": name}}],
                },
            },
        },
    });
    let mut manifests = Vec::new();
    if let Some(tokens) = &config.tokens {
        config_map["data"]["xds-ca.crt"] = json!(tokens.ca_pem);
        with_token(&mut deployment, &name, &tokens.audience);
        manifests.push(json!({
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata,
            "automountServiceAccountToken": false,
        }));
    }
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": metadata,
        "spec": {
            "type": config.service_type,
            "selector": {GATEWAY_LABEL: source.name},
            "ports": ports.iter().map(|p| json!({
                "name": port_name(p), "port": p.port, "targetPort": p.port, "protocol": protocol(p)
            })).collect::<Vec<_>>(),
        },
    });
    manifests.extend([config_map, deployment, service]);
    manifests
}

/// Runs `deployment`'s pods as service account `name` with its projected token (audience
/// `audience`) at [`TOKEN_DIR`] and no other token mounted.
fn with_token(deployment: &mut Value, name: &str, audience: &str) {
    let pod = &mut deployment["spec"]["template"]["spec"];
    pod["serviceAccountName"] = json!(name);
    pod["automountServiceAccountToken"] = json!(false);
    if let Some(volumes) = pod["volumes"].as_array_mut() {
        volumes.push(json!({
            "name": "portolan-token",
            "projected": {"sources": [{"serviceAccountToken": {
                "audience": audience, "expirationSeconds": TOKEN_SECONDS, "path": "token"
            }}]}
        }));
    }
    if let Some(mounts) = pod["containers"][0]["volumeMounts"].as_array_mut() {
        mounts.push(json!({"name": "portolan-token", "mountPath": TOKEN_DIR, "readOnly": true}));
    }
}

/// The ports the proxies of Gateway `source` listen on as compiled: its own valid listeners'
/// and those of the ListenerSets attached to it, each over UDP or TCP as its listener says.
pub(crate) fn served_ports(world: &World, source: &ObjectRef) -> BTreeSet<ServedPort> {
    world
        .api_gateways
        .get(source)
        .map(|g| {
            g.ports
                .iter()
                .map(|p| ServedPort {
                    port: i32::from(p.port),
                    udp: p.udp,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A port's name in the pod and the Service: unique when one number is served over TCP and
/// UDP (at most 15 characters, as container port names must be).
fn port_name(p: &ServedPort) -> String {
    if p.udp {
        format!("port-{}-udp", p.port)
    } else {
        format!("port-{}", p.port)
    }
}

fn protocol(p: &ServedPort) -> &'static str {
    if p.udp { "UDP" } else { "TCP" }
}

/// The Gateway's status addresses from its Service: load balancer ingress (IP or hostname),
/// else the cluster IP.
pub fn service_addresses(service: &Value) -> Vec<Value> {
    let ingress: Vec<Value> = service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| match (i["ip"].as_str(), i["hostname"].as_str()) {
            (Some(ip), _) => Some(json!({"type": "IPAddress", "value": ip})),
            (None, Some(host)) => Some(json!({"type": "Hostname", "value": host})),
            _ => None,
        })
        .collect();
    if !ingress.is_empty() {
        return ingress;
    }
    service["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(|ip| vec![json!({"type": "IPAddress", "value": ip})])
        .unwrap_or_default()
}

fn has_ingress(service: &Value) -> bool {
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .is_some_and(|i| !i.is_empty())
}

/// Applies the provisioned objects of Portolan's Gateways.
pub struct Provisioner {
    client: Client,
    config: ProvisionConfig,
    addresses: Addresses,
    /// What was last applied per object (`kind ns/name`), and when: unchanged objects are not
    /// applied again before [`RESYNC`].
    applied: Mutex<BTreeMap<String, (Value, Instant)>>,
    /// Gateways whose LoadBalancer Service has no ingress address yet.
    pending: Mutex<BTreeSet<ObjectRef>>,
}

// === impl Provisioner ===

impl Provisioner {
    pub fn new(client: Client, config: ProvisionConfig, addresses: Addresses) -> Self {
        Self {
            client,
            config,
            addresses,
            applied: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(BTreeSet::new()),
        }
    }

    /// Applies what changed for every Gateway of Portolan's class (`uids` from the cluster
    /// view), and refreshes the addresses of their Services. Returns the objects applied and
    /// the failures (each Gateway on its own; retried on the next pass).
    pub async fn pass(
        &self,
        world: &World,
        uids: &BTreeMap<ObjectRef, String>,
    ) -> (usize, Vec<K8sError>) {
        let (mut applied, mut failed) = (0, Vec::new());
        let ours: BTreeSet<ObjectRef> = world.api_gateways.keys().cloned().collect();
        self.addresses.retain(&ours);
        self.lock_pending().retain(|g| ours.contains(g));
        let names: BTreeSet<String> = ours
            .iter()
            .map(|g| format!("{}/{}", g.namespace, object_name(&g.name)))
            .collect();
        self.lock_applied()
            .retain(|key, _| key.split_once(' ').is_some_and(|(_, n)| names.contains(n)));
        for source in &ours {
            let (Some(uid), Some(resource)) = (uids.get(source), world.gateway_api.get(source))
            else {
                continue;
            };
            let Resource::ApiGateway(spec) = &**resource else {
                continue;
            };
            // Ports of attached ListenerSets' listeners are served too.
            let served = served_ports(world, source);
            match self.provision(source, uid, spec, &served).await {
                Ok(n) => applied += n,
                Err(e) => failed.push(e),
            }
            self.refresh_addresses(source).await;
        }
        (applied, failed)
    }

    async fn provision(
        &self,
        source: &ObjectRef,
        uid: &str,
        spec: &Gateway,
        served: &BTreeSet<ServedPort>,
    ) -> Result<usize, K8sError> {
        let bootstrap = (self.config.bootstrap)(source).map_err(|e| K8sError::Provision {
            gateway: source.clone(),
            message: format!("rendering the Envoy bootstrap: {e}"),
        })?;
        let mut applied = 0;
        for manifest in manifests(source, uid, spec, served, &bootstrap, &self.config) {
            let is_service = manifest["kind"] == "Service";
            if let Some(answer) = self.apply_if_changed(manifest).await? {
                applied += 1;
                if is_service {
                    self.record(source, &answer);
                }
            }
        }
        Ok(applied)
    }

    /// Reads a LoadBalancer Service again while it has no load balancer address yet.
    async fn refresh_addresses(&self, gateway: &ObjectRef) {
        if !self.lock_pending().contains(gateway) {
            return;
        }
        let ar = resource("", "v1", "Service", "services");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &gateway.namespace, &ar);
        let Ok(svc) = api.get(&object_name(&gateway.name)).await else {
            return;
        };
        let value = serde_json::to_value(&svc).unwrap_or(Value::Null);
        self.record(gateway, &value);
    }

    /// Records a Service's addresses; a LoadBalancer without ingress yet stays pending.
    fn record(&self, gateway: &ObjectRef, service: &Value) {
        self.addresses.set(gateway, service_addresses(service));
        let waiting = service["spec"]["type"] == "LoadBalancer" && !has_ingress(service);
        let mut pending = self.lock_pending();
        if waiting {
            pending.insert(gateway.clone());
        } else {
            pending.remove(gateway);
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<ObjectRef>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Server-side applies `manifest` unless it was applied as it is; returns the object as
    /// the API server answered.
    async fn apply_if_changed(&self, manifest: Value) -> Result<Option<Value>, K8sError> {
        let kind = manifest["kind"].as_str().unwrap_or_default().to_string();
        let ns = manifest["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = manifest["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = format!("{kind} {ns}/{name}");
        let fresh = |(m, at): &(Value, Instant)| *m == manifest && at.elapsed() < RESYNC;
        if self.lock_applied().get(&key).is_some_and(fresh) {
            return Ok(None);
        }
        let ar = match kind.as_str() {
            "Deployment" => resource("apps", "v1", "Deployment", "deployments"),
            "Service" => resource("", "v1", "Service", "services"),
            "ServiceAccount" => resource("", "v1", "ServiceAccount", "serviceaccounts"),
            _ => resource("", "v1", "ConfigMap", "configmaps"),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &ns, &ar);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let answer = api
            .patch(&name, &params, &Patch::Apply(&manifest))
            .await
            .map_err(K8sError::api(format!("applying {key}")))?;
        self.lock_applied().insert(key, (manifest, Instant::now()));
        Ok(Some(serde_json::to_value(&answer).unwrap_or(Value::Null)))
    }

    fn lock_applied(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Value, Instant)>> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

#[cfg(test)]
#[path = "provision_tests.rs"]
mod tests;
