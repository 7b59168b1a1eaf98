//! The sidecar injector: a mutating admission webhook (`POST /inject`, on the same HTTPS
//! server as `/validate`) that adds Portolan's capture init container and a stock Envoy sidecar
//! to a Pod, as a base64 JSONPatch (docs/mesh.md, "Injection").
//!
//! * `portolan-init` runs `portolan capture` (NET_ADMIN and NET_RAW, as root) with the pod's
//!   capture annotations passed to their flags;
//! * `portolan-proxy` is a native sidecar (an init container with `restartPolicy: Always`, so
//!   it starts before the application and stops after it) running Envoy as
//!   [`InjectConfig::proxy_uid`], with the bootstrap `portolan bootstrap` prints for the pod,
//!   inline (`--config-yaml`): the injector builds the flags ([`Injector::bootstrap_args`]) and
//!   the caller's [`RenderBootstrap`] renders them with that same code;
//! * the application containers' HTTP, TCP and gRPC probes go to the sidecar's static probe
//!   listener, which checks the application over loopback ([`probes`]), so they pass under
//!   STRICT mutual TLS.
//!
//! Which pods: the MutatingWebhookConfiguration's selectors pick them (an enabled namespace, or
//! a pod labelled `portolan.dev/inject: "true"`); here a pod that says `"false"` (label or
//! annotation) is left alone, and so is one already injected (idempotent: no patch). A pod the
//! injector cannot serve (host network, a container running as the proxy's UID, a port the
//! sidecar needs, a bad annotation) is admitted unchanged with a warning, or refused with
//! [`InjectConfig::refuse_uninjectable`]. Nothing here can make the API server fail a pod: an
//! object that is not a Pod is admitted unchanged.

use crate::review::{Request, Verdict};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

pub mod probes;

/// Name of the capture init container.
pub const INIT_CONTAINER: &str = "portolan-init";
/// Name of the Envoy sidecar (a native sidecar: an init container with `restartPolicy: Always`).
pub const PROXY_CONTAINER: &str = "portolan-proxy";
/// Label or annotation choosing injection for one pod: `"true"` or `"false"`.
pub const INJECT_KEY: &str = "portolan.dev/inject";
/// Annotation the injector sets on the pods it injected (the value: the bootstrap flags).
pub const INJECTED_ANNOTATION: &str = "portolan.dev/injected";
/// Annotation naming the application's port (default: the first TCP container port).
pub const APP_PORT_ANNOTATION: &str = "portolan.dev/app-port";
/// Annotation turning probe rewriting off for one pod: `"false"`.
pub const REWRITE_PROBES_ANNOTATION: &str = "portolan.dev/rewrite-probes";
/// Annotation naming the application's protocol (`tcp`; default HTTP).
pub const APP_PROTOCOL_ANNOTATION: &str = "portolan.dev/app-protocol";
/// Annotation naming the proxy's locality zone (default: the pod's `nodeSelector`
/// `topology.kubernetes.io/zone`).
pub const ZONE_ANNOTATION: &str = "portolan.dev/zone";
/// Annotation choosing the sidecar's outbound traffic policy.
pub const EGRESS_ANNOTATION: &str = "portolan.dev/outbound-traffic-policy";
/// The node selector label of a zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Annotation holding the xDS CA (PEM) in token identity mode; the sidecar reads it as a file
/// through the downward API.
pub const XDS_CA_ANNOTATION: &str = "portolan.dev/xds-ca";
/// The sidecar's identity volume (token identity mode).
pub const IDENTITY_VOLUME: &str = "portolan-identity";
/// Where the identity volume is mounted: `token` (the projected service account token) and
/// `ca.crt` (the xDS CA).
pub const IDENTITY_DIR: &str = "/var/run/secrets/portolan";
/// Lifetime asked for the projected token (the kubelet refreshes it at 80 %).
const TOKEN_SECONDS: u32 = 600;

/// Pod annotations passed to `portolan capture` flags: (annotation, flag, what the value holds).
const CAPTURE_ANNOTATIONS: [(&str, &str, ValueKind); 5] = [
    (
        "portolan.dev/include-inbound-ports",
        "--inbound-ports",
        ValueKind::PortsOrStar,
    ),
    (
        "portolan.dev/exclude-inbound-ports",
        "--exclude-inbound-ports",
        ValueKind::Ports,
    ),
    (
        "portolan.dev/exclude-outbound-ports",
        "--exclude-outbound-ports",
        ValueKind::Ports,
    ),
    (
        "portolan.dev/include-outbound-ip-ranges",
        "--include-outbound-cidrs",
        ValueKind::CidrsOrStar,
    ),
    (
        "portolan.dev/exclude-outbound-ip-ranges",
        "--exclude-outbound-cidrs",
        ValueKind::Cidrs,
    ),
];

/// Pod labels that differ from pod to pod of one workload: not proxy labels (they would make
/// every ReplicaSet or pod a proxy group of its own).
const PER_POD_LABELS: [&str; 5] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    INJECT_KEY,
];

/// Renders the bootstrap for `portolan bootstrap` flags (without the subcommand) as JSON text;
/// an error is the message `portolan bootstrap` would print.
pub type RenderBootstrap = Arc<dyn Fn(&[String]) -> Result<String, String> + Send + Sync>;

/// What the injector adds, from `portolan serve --inject-*` (chart `injection.*`).
#[derive(Clone, Debug)]
pub struct InjectConfig {
    /// The Envoy image of the sidecar.
    pub proxy_image: String,
    /// The image of `portolan-init`: `portolan` and the iptables binaries on PATH.
    pub init_image: String,
    /// The UID (and GID) the sidecar runs as; its connections escape capture.
    pub proxy_uid: u32,
    /// The sidecar's outbound listener port (`serve --mesh-port`).
    pub outbound_port: u16,
    /// The sidecar's inbound listener port (`serve --inbound-port`).
    pub inbound_port: u16,
    /// The sidecar's admin port (on 127.0.0.1).
    pub admin_port: u16,
    /// Portolan's xDS address as the sidecar reaches it (`bootstrap --xds-address`).
    pub xds_address: String,
    /// `resources` of the sidecar (a Kubernetes ResourceRequirements).
    pub proxy_resources: Value,
    /// `resources` of the init container.
    pub init_resources: Value,
    /// Envoy's `--drain-time-s`: how long listeners drain when they change or the proxy stops.
    pub drain_seconds: u32,
    /// Envoy's `--log-level`.
    pub log_level: String,
    /// Refuse a pod that cannot be injected instead of admitting it unchanged with a warning.
    pub refuse_uninjectable: bool,
    /// Rewrite the application containers' probes to the sidecar's probe port (unless the pod
    /// says `portolan.dev/rewrite-probes: "false"`).
    pub rewrite_probes: bool,
    /// The sidecar's probe listener port (`bootstrap --probe-port`), left out of capture.
    pub probe_port: u16,
    /// Sidecars prove their identity with a projected service account token over TLS
    /// (`serve --xds-token-review`); none: plaintext xDS, no credentials.
    pub identity: Option<TokenIdentity>,
}

/// Token identity mode: the xDS CA sidecars trust and the audience of their tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIdentity {
    /// PEM bundle verifying Portolan's xDS certificate.
    pub ca_pem: String,
    /// The audience the projected token is bound to (`serve --xds-token-audience`).
    pub audience: String,
}

/// The injector: its settings and the bootstrap renderer.
#[derive(Clone)]
pub struct Injector {
    config: InjectConfig,
    render: RenderBootstrap,
}

/// What the injector decided for one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Admitted unchanged, and why (not a Pod, opted out, already injected).
    Unchanged(String),
    /// Admitted with this JSONPatch (the operations, in order).
    Inject(Vec<Value>),
    /// Portolan cannot inject this pod: admitted unchanged with the message as a warning, or
    /// refused.
    Uninjectable(String),
}

/// What an annotation value holds.
#[derive(Clone, Copy, Debug)]
enum ValueKind {
    Ports,
    PortsOrStar,
    Cidrs,
    CidrsOrStar,
}

// === impl Injector ===

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Injector {
    pub fn new(config: InjectConfig, render: RenderBootstrap) -> Self {
        Self { config, render }
    }

    pub fn config(&self) -> &InjectConfig {
        &self.config
    }

    /// The AdmissionReview answering `request`.
    pub fn review(&self, request: &Request) -> Value {
        let decision = self.decide(request);
        let (verdict, patch) = match decision {
            Decision::Unchanged(why) => {
                tracing::debug!(uid = request.uid, reason = why, "pod not injected");
                (Verdict::allow(Vec::new()), None)
            }
            Decision::Inject(ops) => (Verdict::allow(Vec::new()), Some(ops)),
            Decision::Uninjectable(why) => {
                let message = format!(
                    "Pod {}: Portolan cannot inject its sidecar: {why}",
                    pod_name(request)
                );
                tracing::info!(uid = request.uid, message, "pod not injectable");
                if self.config.refuse_uninjectable {
                    (Verdict::invalid(message, Vec::new()), None)
                } else {
                    (Verdict::allow(vec![message]), None)
                }
            }
        };
        let mut review = verdict.to_review(&request.uid);
        if let Some(ops) = patch {
            let text = Value::Array(ops).to_string();
            review["response"]["patchType"] = json!("JSONPatch");
            review["response"]["patch"] = json!(B64.encode(text));
        }
        review
    }

    /// Decides for one admission request.
    pub fn decide(&self, request: &Request) -> Decision {
        let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
        let Some(pod) = request.object.as_ref().filter(|_| is_pod) else {
            return Decision::Unchanged("not a Pod".into());
        };
        if request.operation != "CREATE" {
            return Decision::Unchanged(format!("operation {}", request.operation));
        }
        if choice(pod) == Some(false) {
            return Decision::Unchanged(format!("{INJECT_KEY}: \"false\""));
        }
        if injected(pod) {
            return Decision::Unchanged("already injected".into());
        }
        match self.patch(pod, &request.namespace) {
            Ok(ops) => Decision::Inject(ops),
            Err(why) => Decision::Uninjectable(why),
        }
    }

    /// The JSONPatch injecting `pod`, or why it cannot be injected.
    fn patch(&self, pod: &Value, namespace: &str) -> Result<Vec<Value>, String> {
        self.check(pod)?;
        let rewrite = self.probe_rewrite(pod);
        let mut capture = capture_args(pod, &self.config)?;
        if !rewrite.ops.is_empty() {
            capture.push(format!(
                "--exclude-inbound-ports={}",
                self.config.probe_port
            ));
        }
        let bootstrap_args = self.bootstrap_args(pod, namespace)?;
        let bootstrap = (self.render)(&bootstrap_args)
            .map_err(|e| format!("its bootstrap cannot be rendered: {e}"))?;
        let init = self.init_container(capture);
        let proxy = self.proxy_container(bootstrap);
        let mut ops = self.identity_volume(pod);
        ops.extend(rewrite.ops);
        match pod
            .pointer("/spec/initContainers")
            .and_then(Value::as_array)
        {
            Some(existing) if !existing.is_empty() => {
                // Inserted at 0 in reverse order: capture, then the proxy, then the pod's own.
                ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": proxy}));
                ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": init}));
            }
            _ => ops
                .push(json!({"op": "add", "path": "/spec/initContainers", "value": [init, proxy]})),
        }
        let mut annotations = Map::new();
        annotations.insert(INJECTED_ANNOTATION.into(), json!(bootstrap_args.join(" ")));
        if let Some(identity) = &self.config.identity {
            annotations.insert(XDS_CA_ANNOTATION.into(), json!(identity.ca_pem));
        }
        match pod
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
        {
            Some(_) => ops.extend(annotations.into_iter().map(|(key, value)| {
                json!({
                    "op": "add",
                    "path": format!("/metadata/annotations/{}", escape_pointer(&key)),
                    "value": value
                })
            })),
            None => ops.push(json!({
                "op": "add",
                "path": "/metadata/annotations",
                "value": annotations
            })),
        }
        Ok(ops)
    }

    /// In token identity mode, the volume holding the sidecar's token and the xDS CA (from the
    /// pod's own annotation, so no object has to exist in the pod's namespace).
    fn identity_volume(&self, pod: &Value) -> Vec<Value> {
        let Some(identity) = &self.config.identity else {
            return Vec::new();
        };
        let volume = json!({
            "name": IDENTITY_VOLUME,
            "projected": {"sources": [
                {"serviceAccountToken": {
                    "audience": identity.audience,
                    "expirationSeconds": TOKEN_SECONDS,
                    "path": "token"
                }},
                {"downwardAPI": {"items": [{
                    "path": "ca.crt",
                    "fieldRef": {"fieldPath": format!("metadata.annotations['{XDS_CA_ANNOTATION}']")}
                }]}}
            ]}
        });
        match pod.pointer("/spec/volumes").and_then(Value::as_array) {
            Some(_) => vec![json!({"op": "add", "path": "/spec/volumes/-", "value": volume})],
            None => vec![json!({"op": "add", "path": "/spec/volumes", "value": [volume]})],
        }
    }

    /// Refuses what the sidecar cannot live with: the host's network namespace, a container
    /// running as the proxy's UID (its traffic would escape capture), a port the sidecar
    /// listens on.
    fn check(&self, pod: &Value) -> Result<(), String> {
        if pod.pointer("/spec/hostNetwork") == Some(&Value::Bool(true)) {
            return Err("it uses the host's network (spec.hostNetwork: true)".into());
        }
        let volumes = pod.pointer("/spec/volumes").and_then(Value::as_array);
        if let Some(i) = volumes
            .into_iter()
            .flatten()
            .position(|v| v.get("name").and_then(Value::as_str) == Some(IDENTITY_VOLUME))
        {
            return Err(format!(
                "spec.volumes[{i}] is named {IDENTITY_VOLUME}, the sidecar's volume"
            ));
        }
        let uid = u64::from(self.config.proxy_uid);
        let pod_uid = pod
            .pointer("/spec/securityContext/runAsUser")
            .and_then(Value::as_u64);
        let mut reserved = vec![
            self.config.outbound_port,
            self.config.inbound_port,
            self.config.admin_port,
        ];
        if !self.probe_rewrite(pod).ops.is_empty() {
            reserved.push(self.config.probe_port);
        }
        for (path, container) in containers(pod) {
            let runs_as = container
                .pointer("/securityContext/runAsUser")
                .and_then(Value::as_u64)
                .or(pod_uid);
            if runs_as == Some(uid) {
                return Err(format!(
                    "{path} runs as UID {uid}, the proxy's: its connections would escape capture"
                ));
            }
            let ports = container.get("ports").and_then(Value::as_array);
            for (i, port) in ports.into_iter().flatten().enumerate() {
                let number = port.get("containerPort").and_then(Value::as_u64);
                if let Some(n) = number.filter(|n| reserved.iter().any(|r| u64::from(*r) == *n)) {
                    return Err(format!(
                        "{path}.ports[{i}].containerPort {n} is a port the sidecar listens on \
                         ({reserved:?})"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The `portolan bootstrap` flags of the pod's sidecar: node id from the pod's name and
    /// namespace, group (node cluster) its service account, proxy labels from the pod's
    /// (less the per-pod ones), zone, the application's port and protocol, and the claimed
    /// namespace and service account.
    pub fn bootstrap_args(&self, pod: &Value, namespace: &str) -> Result<Vec<String>, String> {
        let meta = |key: &str| {
            pod.pointer(&format!("/metadata/{key}"))
                .and_then(Value::as_str)
        };
        let namespace = Some(namespace)
            .filter(|n| !n.is_empty())
            .or(meta("namespace"))
            .unwrap_or("default");
        let name = meta("name")
            .filter(|n| !n.is_empty())
            .or(meta("generateName").map(|g| g.trim_end_matches('-')))
            .filter(|n| !n.is_empty())
            .unwrap_or("pod");
        let service_account = pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let c = &self.config;
        let mut args = vec![
            format!("--node-id={name}.{namespace}"),
            format!("--cluster={service_account}"),
            format!("--xds-address={}", c.xds_address),
            format!("--admin-address=127.0.0.1:{}", c.admin_port),
            format!("--namespace={namespace}"),
            format!("--service-account={service_account}"),
            format!("--inbound-port={}", c.inbound_port),
            format!("--outbound-port={}", c.outbound_port),
        ];
        if self.config.identity.is_some() {
            args.push(format!("--xds-ca={IDENTITY_DIR}/ca.crt"));
            args.push(format!("--xds-token-file={IDENTITY_DIR}/token"));
        }
        if let Some(zone) = zone(pod) {
            args.push(format!("--zone={zone}"));
        }
        for (key, value) in proxy_labels(pod) {
            args.push(format!("--label={key}={value}"));
        }
        if let Some(port) = app_port(pod)? {
            args.push(format!("--app-port={port}"));
        }
        if let Some(protocol) = annotation(pod, APP_PROTOCOL_ANNOTATION) {
            args.push(format!("--app-protocol={protocol}"));
        }
        if let Some(policy) = annotation(pod, EGRESS_ANNOTATION) {
            if !matches!(policy, "allow-any" | "registry-only") {
                return Err(format!(
                    "metadata.annotations[{EGRESS_ANNOTATION}]: {policy:?} is not allow-any or registry-only"
                ));
            }
            args.push(format!("--outbound-traffic-policy={policy}"));
        }
        let probes = self.probe_rewrite(pod).bootstrap_args;
        if !probes.is_empty() {
            args.push(format!("--probe-port={}", c.probe_port));
            args.extend(probes);
        }
        args.push("--output=json".into());
        Ok(args)
    }

    /// The pod's probe rewrite: none when rewriting is off (`--inject-rewrite-probes=false`,
    /// or the pod's `portolan.dev/rewrite-probes: "false"`).
    fn probe_rewrite(&self, pod: &Value) -> probes::Rewrite {
        let opted_out = annotation(pod, REWRITE_PROBES_ANNOTATION)
            .is_some_and(|v| matches!(v, "false" | "disabled"));
        if !self.config.rewrite_probes || opted_out {
            return probes::Rewrite::default();
        }
        probes::rewrite(pod, self.config.probe_port)
    }

    /// `portolan-init`: `portolan capture`, as root with NET_ADMIN and NET_RAW only.
    fn init_container(&self, capture: Vec<String>) -> Value {
        json!({
            "name": INIT_CONTAINER,
            "image": self.config.init_image,
            "command": ["portolan"],
            "args": capture,
            "resources": self.config.init_resources,
            "securityContext": {
                "runAsUser": 0,
                "runAsGroup": 0,
                "runAsNonRoot": false,
                "privileged": false,
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}
            }
        })
    }

    /// `portolan-proxy`: stock Envoy as a native sidecar, the bootstrap inline, the node id
    /// the pod's real name (known only at run time), ready (and the application started) once
    /// Portolan's outbound listener is open.
    fn proxy_container(&self, bootstrap: String) -> Value {
        let c = &self.config;
        let probe = |period: u32, failures: u32| {
            json!({
                "tcpSocket": {"port": c.outbound_port},
                "periodSeconds": period,
                "failureThreshold": failures
            })
        };
        let mut proxy = json!({
            "name": PROXY_CONTAINER,
            "image": c.proxy_image,
            "restartPolicy": "Always",
            "command": ["envoy"],
            "args": [
                "--config-yaml", bootstrap,
                "--service-node", "$(POD_NAME).$(POD_NAMESPACE)",
                "--log-level", c.log_level,
                "--drain-time-s", c.drain_seconds.to_string(),
                "--drain-strategy", "immediate",
                "--disable-hot-restart"
            ],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
            ],
            "startupProbe": probe(1, 300),
            "readinessProbe": probe(2, 3),
            "resources": c.proxy_resources,
            "securityContext": {
                "runAsUser": c.proxy_uid,
                "runAsGroup": c.proxy_uid,
                "runAsNonRoot": true,
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}
            }
        });
        if self.config.identity.is_some() {
            proxy["volumeMounts"] =
                json!([{"name": IDENTITY_VOLUME, "mountPath": IDENTITY_DIR, "readOnly": true}]);
        }
        proxy
    }
}

/// The HTTP route of the injector, for the webhook server.
pub fn routes(injector: Arc<Injector>) -> Router {
    Router::new()
        .route("/inject", post(inject))
        .layer(DefaultBodyLimit::max(crate::server::MAX_REVIEW_BYTES))
        .with_state(injector)
}

async fn inject(State(injector): State<Arc<Injector>>, body: Bytes) -> Response {
    let request = match Request::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "malformed AdmissionReview on /inject");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    let body = injector.review(&request).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `namespace/name` of the request's pod (`generateName` + `*` when it has no name yet).
fn pod_name(request: &Request) -> String {
    let object = request.object.as_ref();
    let name = Some(request.name.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| {
            object
                .and_then(|o| o.pointer("/metadata/generateName"))
                .and_then(Value::as_str)
                .map(|g| format!("{g}*"))
        })
        .unwrap_or_default();
    format!("{}/{name}", request.namespace)
}

/// The pod's own choice (`portolan.dev/inject` label or annotation): `true`, `false`, none.
pub fn choice(pod: &Value) -> Option<bool> {
    ["labels", "annotations"].iter().find_map(|map| {
        let value = pod
            .pointer(&format!("/metadata/{map}"))
            .and_then(|m| m.get(INJECT_KEY))
            .and_then(Value::as_str)?;
        match value {
            "true" | "enabled" => Some(true),
            "false" | "disabled" => Some(false),
            _ => None,
        }
    })
}

/// Whether the pod already has Portolan's sidecar (annotation or containers).
fn injected(pod: &Value) -> bool {
    let annotated = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(INJECTED_ANNOTATION))
        .is_some();
    annotated
        || containers(pod).any(|(_, c)| {
            let name = c.get("name").and_then(Value::as_str);
            name == Some(PROXY_CONTAINER) || name == Some(INIT_CONTAINER)
        })
}

/// Every container and init container with its field path.
fn containers(pod: &Value) -> impl Iterator<Item = (String, &Value)> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(move |list| {
            pod.pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .map(move |(i, c)| (format!("spec.{list}[{i}]"), c))
        })
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The zone: the annotation, else the pod's node selector.
fn zone(pod: &Value) -> Option<&str> {
    annotation(pod, ZONE_ANNOTATION)
        .or_else(|| {
            pod.pointer("/spec/nodeSelector")
                .and_then(|s| s.get(ZONE_LABEL))
                .and_then(Value::as_str)
        })
        .filter(|z| !z.is_empty())
}

/// The pod's labels that name its workload (sorted), the per-pod ones left out.
fn proxy_labels(pod: &Value) -> BTreeMap<&str, &str> {
    pod.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(Map::iter)
        .filter(|(k, _)| !PER_POD_LABELS.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect()
}

/// The application's port: the annotation, else the first TCP port of the first container
/// that declares one; none when no container declares a port.
fn app_port(pod: &Value) -> Result<Option<u16>, String> {
    if let Some(value) = annotation(pod, APP_PORT_ANNOTATION) {
        return port(value)
            .map(Some)
            .map_err(|e| format!("metadata.annotations[{APP_PORT_ANNOTATION}]: {e}"));
    }
    let declared = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(|p| {
            p.get("protocol")
                .and_then(Value::as_str)
                .is_none_or(|proto| proto == "TCP")
        })
        .find_map(|p| p.get("containerPort").and_then(Value::as_u64));
    Ok(declared.and_then(|p| u16::try_from(p).ok()))
}

/// `portolan capture` arguments: the sidecar's ports and UID, then each capture annotation's
/// value (checked here, so a bad value never fails the pod's init container).
fn capture_args(pod: &Value, config: &InjectConfig) -> Result<Vec<String>, String> {
    let mut args = vec![
        "capture".to_string(),
        format!("--outbound-port={}", config.outbound_port),
        format!("--inbound-port={}", config.inbound_port),
        format!("--proxy-uid={}", config.proxy_uid),
    ];
    for (key, flag, kind) in CAPTURE_ANNOTATIONS {
        let Some(value) = annotation(pod, key) else {
            continue;
        };
        check_list(value, kind).map_err(|e| format!("metadata.annotations[{key}]: {e}"))?;
        args.push(format!("{flag}={value}"));
    }
    Ok(args)
}

/// Checks a comma-separated annotation value as `portolan capture` will read it.
fn check_list(value: &str, kind: ValueKind) -> Result<(), String> {
    let items = value.split(',').map(str::trim).filter(|v| !v.is_empty());
    for item in items {
        let star = matches!(kind, ValueKind::PortsOrStar | ValueKind::CidrsOrStar);
        if star && item == "*" {
            continue;
        }
        match kind {
            ValueKind::Ports | ValueKind::PortsOrStar => port(item).map(|_| ())?,
            ValueKind::Cidrs | ValueKind::CidrsOrStar => cidr(item)?,
        }
    }
    Ok(())
}

fn port(value: &str) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{value:?} is not a port number (1-65535)")),
    }
}

/// An IPv4 or IPv6 address with an optional prefix length.
fn cidr(value: &str) -> Result<(), String> {
    let bad = || format!("{value:?} is not an IP range (ADDRESS/PREFIX)");
    let (address, prefix) = match value.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (value, None),
    };
    let address: IpAddr = address.parse().map_err(|_| bad())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    match prefix.map(str::parse::<u8>) {
        None => Ok(()),
        Some(Ok(p)) if p <= max => Ok(()),
        Some(_) => Err(bad()),
    }
}

/// Escapes a JSON pointer token (`/` and `~`).
fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::GroupVersionKind;

    fn config() -> InjectConfig {
        InjectConfig {
            proxy_image: "envoyproxy/envoy:v1.40.0".into(),
            init_image: "portolan-init:test".into(),
            proxy_uid: 1337,
            outbound_port: 15001,
            inbound_port: 15006,
            admin_port: 15000,
            xds_address: "portolan.portolan-system.svc:18000".into(),
            proxy_resources: json!({"requests": {"cpu": "50m"}}),
            init_resources: json!({}),
            drain_seconds: 5,
            log_level: "info".into(),
            refuse_uninjectable: false,
            rewrite_probes: true,
            probe_port: 15021,
            identity: None,
        }
    }

    fn injector(refuse: bool) -> Injector {
        let mut c = config();
        c.refuse_uninjectable = refuse;
        Injector::new(
            c,
            Arc::new(|args: &[String]| Ok(json!({"args": args}).to_string())),
        )
    }

    fn request(pod: Value) -> Request {
        Request {
            uid: "u1".into(),
            kind: GroupVersionKind {
                group: String::new(),
                version: "v1".into(),
                kind: "Pod".into(),
            },
            namespace: "shop".into(),
            operation: "CREATE".into(),
            object: Some(pod),
            ..Request::default()
        }
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-7d9f-", "labels": {"app": "web", "version": "v2", "pod-template-hash": "7d9f"}},
            "spec": {
                "serviceAccountName": "web",
                "nodeSelector": {ZONE_LABEL: "zone-a"},
                "containers": [{"name": "app", "image": "web", "ports": [{"containerPort": 8080}]}]
            }
        })
    }

    fn patched(pod: &Value, ops: &[Value]) -> Value {
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops.to_vec())).expect("a JSONPatch");
        let mut doc = pod.clone();
        json_patch::patch(&mut doc, &patch).expect("the patch applies");
        doc
    }

    #[test]
    fn bootstrap_flags_name_the_workload() {
        let args = injector(false)
            .bootstrap_args(&pod(), "shop")
            .expect("flags");
        assert_eq!(
            args,
            [
                "--node-id=web-7d9f.shop",
                "--cluster=web",
                "--xds-address=portolan.portolan-system.svc:18000",
                "--admin-address=127.0.0.1:15000",
                "--namespace=shop",
                "--service-account=web",
                "--inbound-port=15006",
                "--outbound-port=15001",
                "--zone=zone-a",
                "--label=app=web",
                "--label=version=v2",
                "--app-port=8080",
                "--output=json",
            ]
        );
    }

    #[test]
    fn injects_once_and_the_patch_applies() {
        let i = injector(false);
        let Decision::Inject(ops) = i.decide(&request(pod())) else {
            panic!("not injected");
        };
        let doc = patched(&pod(), &ops);
        let init = &doc["spec"]["initContainers"];
        assert_eq!(init[0]["name"], INIT_CONTAINER);
        assert_eq!(init[1]["name"], PROXY_CONTAINER);
        assert_eq!(init[1]["restartPolicy"], "Always");
        assert_eq!(init[1]["securityContext"]["runAsUser"], 1337);
        assert_eq!(
            init[0]["securityContext"]["capabilities"]["add"],
            json!(["NET_ADMIN", "NET_RAW"])
        );
        // Again: nothing to do.
        assert_eq!(
            i.decide(&request(doc)),
            Decision::Unchanged("already injected".into())
        );
    }

    #[test]
    fn existing_init_containers_run_after_the_sidecar_starts() {
        let mut p = pod();
        p["spec"]["initContainers"] = json!([{"name": "migrate", "image": "m"}]);
        p["metadata"]["annotations"] = json!({"portolan.dev/exclude-outbound-ports": "5432"});
        let Decision::Inject(ops) = injector(false).decide(&request(p.clone())) else {
            panic!("not injected");
        };
        let doc = patched(&p, &ops);
        let names: Vec<&str> = doc["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, [INIT_CONTAINER, PROXY_CONTAINER, "migrate"]);
        let args = doc["spec"]["initContainers"][0]["args"].to_string();
        assert!(args.contains("--exclude-outbound-ports=5432"), "{args}");
        assert!(doc["metadata"]["annotations"][INJECTED_ANNOTATION].is_string());
    }

    #[test]
    fn opted_out_pods_and_other_objects_are_unchanged() {
        let mut p = pod();
        p["metadata"]["annotations"] = json!({INJECT_KEY: "false"});
        assert!(matches!(
            injector(false).decide(&request(p)),
            Decision::Unchanged(_)
        ));
        let mut r = request(pod());
        r.kind.kind = "Deployment".into();
        r.kind.group = "apps".into();
        assert!(matches!(injector(false).decide(&r), Decision::Unchanged(_)));
    }

    #[test]
    fn uninjectable_pods_warn_or_are_refused() {
        let cases = [
            ("/spec/hostNetwork", json!(true), "spec.hostNetwork"),
            (
                "/spec/securityContext",
                json!({"runAsUser": 1337}),
                "spec.containers[0] runs as UID 1337",
            ),
            (
                "/spec/containers/0/ports",
                json!([{"containerPort": 15001}]),
                "spec.containers[0].ports[0].containerPort 15001",
            ),
            (
                "/metadata/annotations",
                json!({"portolan.dev/exclude-outbound-ip-ranges": "10.0.0.0/33"}),
                "metadata.annotations[portolan.dev/exclude-outbound-ip-ranges]: \"10.0.0.0/33\"",
            ),
        ];
        for (path, value, expected) in cases {
            let mut p = pod();
            let (parent, key) = path.rsplit_once('/').unwrap_or_default();
            p.pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .map(|o| o.insert(key.into(), value));
            let warned = injector(false).review(&request(p.clone()));
            assert_eq!(warned["response"]["allowed"], true, "{warned}");
            assert!(warned["response"].get("patch").is_none(), "{warned}");
            let warning = warned["response"]["warnings"][0]
                .as_str()
                .unwrap_or_default();
            assert!(warning.contains(expected), "{warning}");
            assert!(warning.starts_with("Pod shop/web-7d9f-*: "), "{warning}");
            let refused = injector(true).review(&request(p));
            assert_eq!(refused["response"]["allowed"], false, "{refused}");
            let message = refused["response"]["status"]["message"]
                .as_str()
                .unwrap_or_default();
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn token_identity_mounts_the_token_and_the_ca() {
        let mut c = config();
        c.identity = Some(TokenIdentity {
            ca_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            audience: "portolan".into(),
        });
        let i = Injector::new(c, Arc::new(|args: &[String]| Ok(args.join(" "))));
        let mut p = pod();
        p["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
        let Decision::Inject(ops) = i.decide(&request(p.clone())) else {
            panic!("not injected");
        };
        let doc = patched(&p, &ops);
        assert_eq!(doc["spec"]["volumes"][1]["name"], IDENTITY_VOLUME);
        let sources = &doc["spec"]["volumes"][1]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["audience"], "portolan");
        assert_eq!(
            doc["metadata"]["annotations"][XDS_CA_ANNOTATION],
            "-----BEGIN CERTIFICATE-----\n"
        );
        let proxy = &doc["spec"]["initContainers"][1];
        assert_eq!(proxy["volumeMounts"][0]["mountPath"], IDENTITY_DIR);
        let flags = doc["metadata"]["annotations"][INJECTED_ANNOTATION].to_string();
        assert!(
            flags.contains("--xds-token-file=/var/run/secrets/portolan/token"),
            "{flags}"
        );
        assert!(
            flags.contains("--xds-ca=/var/run/secrets/portolan/ca.crt"),
            "{flags}"
        );
    }

    fn probed_pod() -> Value {
        let mut p = pod();
        p["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8080}]);
        p["spec"]["containers"][0]["readinessProbe"] =
            json!({"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2});
        p["spec"]["containers"][0]["livenessProbe"] = json!({"tcpSocket": {"port": 8080}});
        p
    }

    #[test]
    fn probes_are_rewritten_to_the_probe_port_left_out_of_capture() {
        let i = injector(false);
        let p = probed_pod();
        let Decision::Inject(ops) = i.decide(&request(p.clone())) else {
            panic!("not injected");
        };
        let doc = patched(&p, &ops);
        let app = &doc["spec"]["containers"][0];
        assert_eq!(
            app["readinessProbe"],
            json!({"httpGet": {"path": "/app-health/app/readyz", "port": 15021, "scheme": "HTTP"}, "periodSeconds": 2})
        );
        assert_eq!(
            app["livenessProbe"]["httpGet"]["path"],
            "/app-health/app/livez"
        );
        let capture = doc["spec"]["initContainers"][0]["args"].to_string();
        assert!(
            capture.contains("--exclude-inbound-ports=15021"),
            "{capture}"
        );
        let flags = doc["metadata"]["annotations"][INJECTED_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for expected in [
            "--probe-port=15021",
            "--app-probe=app/readyz=http://127.0.0.1:8080/ready",
            "--app-probe=app/livez=tcp://127.0.0.1:8080",
        ] {
            assert!(
                flags.split(' ').any(|f| f == expected),
                "{expected} not in {flags}"
            );
        }
        // Injecting again changes nothing, and the probes are not rewritten twice.
        assert_eq!(
            i.decide(&request(doc.clone())),
            Decision::Unchanged("already injected".into())
        );
        assert!(probes::rewrite(&doc, 15021).ops.is_empty());
    }

    #[test]
    fn probe_rewriting_can_be_turned_off() {
        let mut p = probed_pod();
        p["metadata"]["annotations"] = json!({REWRITE_PROBES_ANNOTATION: "false"});
        let mut c = config();
        let check = |i: &Injector, p: &Value| {
            let Decision::Inject(ops) = i.decide(&request(p.clone())) else {
                panic!("not injected");
            };
            let doc = patched(p, &ops);
            assert_eq!(
                doc["spec"]["containers"][0]["readinessProbe"],
                p["spec"]["containers"][0]["readinessProbe"]
            );
            let capture = doc["spec"]["initContainers"][0]["args"].to_string();
            assert!(!capture.contains("15021"), "{capture}");
            let flags = doc["metadata"]["annotations"][INJECTED_ANNOTATION].to_string();
            assert!(!flags.contains("--app-probe"), "{flags}");
        };
        check(&injector(false), &p);
        c.rewrite_probes = false;
        let off = Injector::new(
            c,
            Arc::new(|args: &[String]| Ok(json!({"args": args}).to_string())),
        );
        check(&off, &probed_pod());
    }

    #[test]
    fn a_container_port_on_the_probe_port_is_uninjectable_when_probes_are_rewritten() {
        let mut p = probed_pod();
        p["spec"]["containers"][0]["ports"] = json!([
            {"name": "http", "containerPort": 8080},
            {"containerPort": 15021}
        ]);
        let Decision::Uninjectable(why) = injector(false).decide(&request(p)) else {
            panic!("injected");
        };
        assert!(why.contains("ports[1].containerPort 15021"), "{why}");
    }

    #[test]
    fn annotation_values_are_checked_like_capture_flags() {
        assert!(check_list("80, 443", ValueKind::Ports).is_ok());
        assert!(check_list("*", ValueKind::PortsOrStar).is_ok());
        assert!(check_list("*", ValueKind::Ports).is_err());
        assert!(check_list("http", ValueKind::Ports).is_err());
        assert!(check_list("10.0.0.0/8,fd00::/8,1.2.3.4", ValueKind::Cidrs).is_ok());
        assert!(check_list("10.0.0.0/8/1", ValueKind::Cidrs).is_err());
    }
}
