//! End to end, the sidecar injector of a real `portolan serve --inject --webhook-cert ...`:
//! Pod AdmissionReviews over HTTPS (the same server as `/validate`), the returned JSONPatch
//! applied (json-patch), the patched Pod accepted by kubernetes-validate --strict (Kubernetes
//! 1.33), the sidecar's inline bootstrap equal to what `portolan bootstrap` prints for the flags
//! the injector recorded, the sidecar's whole command line accepted by `envoy --mode validate`,
//! the init container's `portolan capture` command accepted (`--dry-run`) with the pod's
//! exclusions and the probe port in its rules, the application's HTTP, TCP and gRPC probes
//! rewritten to the sidecar's probe port. Then: re-injecting the injected pod changes nothing,
//! an opted-out pod is left alone, a host-network pod is admitted unchanged with a warning, and
//! refused by a server with `--inject-refuse-uninjectable`.
//!
//! And for real, in network namespaces (as `capture.rs`; root and iptables needed, skipped
//! otherwise): three pods injected by the same server, each one's `portolan-init` arguments run
//! as `portolan capture` in its namespace and its `portolan-proxy` command line run as Envoy
//! (UID 1337); an unchanged client's `curl http://reviews:9080/` reaches both versions of a
//! 50/50 canary through its sidecar and the servers' inbound listeners, over mutual TLS; the
//! servers are STRICT, and their rewritten probes, sent in plaintext from a pod without a
//! sidecar as the kubelet would, pass through the probe port while their application port
//! refuses plaintext.

use crate::bin;
use portolan_e2e::envoy::envoy_bin;
use portolan_e2e::netns::{self, Node, Pod, Relay};
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::ports::free_port;
use portolan_e2e::tls::{ServerCert, TestCa, https_request};
use portolan_e2e::{Portolan, eventually, workspace_root};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const XDS_ADDRESS: &str = "portolan.portolan-system.svc:18000";

/// A pod as a Deployment's ReplicaSet creates it: no name yet, a service account, a zone, an
/// init container of its own, a capture annotation, and HTTP, TCP and gRPC probes.
fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "reviews-v2-5c7f9-",
            "namespace": "shop",
            "labels": {"app": "reviews", "version": "v2", "pod-template-hash": "5c7f9"},
            "annotations": {"portolan.dev/exclude-outbound-ports": "5432,6379"}
        },
        "spec": {
            "serviceAccountName": "reviews",
            "nodeSelector": {"topology.kubernetes.io/zone": "zone-b"},
            "securityContext": {"runAsNonRoot": true},
            "initContainers": [{"name": "migrate", "image": "reviews:2", "command": ["migrate"]}],
            "containers": [{
                "name": "app", "image": "reviews:2",
                "ports": [{"name": "http", "containerPort": 9080}],
                "securityContext": {"runAsUser": 1000},
                "readinessProbe": {
                    "httpGet": {"path": "/ready", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "kube let"}]},
                    "periodSeconds": 5
                },
                "livenessProbe": {"tcpSocket": {"port": 9080}, "initialDelaySeconds": 3},
                "startupProbe": {"grpc": {"port": 9090, "service": "reviews"}, "failureThreshold": 30}
            }]
        }
    })
}

fn review(uid: &str, pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod, "oldObject": null, "dryRun": false
        }
    }))
    .unwrap_or_default()
}

/// A `portolan serve --inject` with a webhook certificate for `localhost`.
struct Injector {
    portolan: Portolan,
    port: u16,
    _config: ConfigDir,
    _tls: tempfile::TempDir,
}

impl Injector {
    async fn start(cert: &ServerCert, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(cert, String::new(), extra).await
    }

    /// Like [`Injector::start`], serving `manifests` (the injected sidecars' configuration).
    async fn start_with(
        cert: &ServerCert,
        manifests: String,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let config = ConfigDir::new()?;
        if !manifests.is_empty() {
            config.write("mesh.yaml", &manifests)?;
        }
        let tls = tempfile::tempdir()?;
        let (cert_file, key_file) = (tls.path().join("tls.crt"), tls.path().join("tls.key"));
        std::fs::write(&cert_file, &cert.cert_pem)?;
        std::fs::write(&key_file, &cert.key_pem)?;
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let mut args = vec![
            "--webhook-address",
            address.as_str(),
            "--webhook-cert",
            cert_file.to_str().unwrap_or_default(),
            "--webhook-key",
            key_file.to_str().unwrap_or_default(),
            "--inject",
            "--inject-init-image",
            "portolan-init:e2e",
        ];
        if !extra.contains(&"--inject-xds-address") {
            args.extend(["--inject-xds-address", XDS_ADDRESS]);
        }
        args.extend(extra);
        let portolan = Portolan::start_with(bin(), &config, Ports::free(), &args).await?;
        Ok(Self {
            portolan,
            port,
            _config: config,
            _tls: tls,
        })
    }

    /// POSTs a Pod review to `/inject`; the `response` of the answer.
    async fn review(&self, ca: &TestCa, uid: &str, pod: &Value) -> anyhow::Result<Value> {
        let reply = https_request(
            ca,
            self.port,
            "localhost",
            "POST",
            "/inject",
            &review(uid, pod),
        )
        .await?;
        anyhow::ensure!(
            reply.status == 200,
            "{}\n{}",
            reply.body,
            self.portolan.log_tail()
        );
        let answer: Value = serde_json::from_str(&reply.body)?;
        anyhow::ensure!(answer["response"]["uid"] == uid, "{answer}");
        Ok(answer["response"].clone())
    }
}

/// The pod with the response's JSONPatch applied.
fn apply(pod: &Value, response: &Value) -> anyhow::Result<Value> {
    use base64::Engine;
    anyhow::ensure!(response["patchType"] == "JSONPatch", "{response}");
    let encoded = response["patch"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded)?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes)?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch)?;
    Ok(patched)
}

fn kubernetes_validate() -> PathBuf {
    workspace_root().join(".venv/bin/kubernetes-validate")
}

/// kubernetes-validate --strict against Kubernetes 1.33 (as scripts/chart-check.sh runs it),
/// with the name the API server makes from `generateName`.
fn validate_pod(pod: &Value, dir: &Path) -> anyhow::Result<()> {
    let mut pod = pod.clone();
    pod["metadata"]["name"] = json!("reviews-v2-5c7f9-x2b4k");
    let file = dir.join("pod.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&pod)?)?;
    let out = std::process::Command::new(kubernetes_validate())
        .args(["--strict", "-k", "1.33.0"])
        .arg(&file)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        out.status.success() && !text.contains("Couldn't find schema"),
        "kubernetes-validate refused the injected pod:\n{text}\n{}",
        serde_json::to_string_pretty(&pod)?
    );
    Ok(())
}

fn init_container<'a>(pod: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .ok_or_else(|| anyhow::anyhow!("no init container {name}: {pod}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Runs `portolan ARGS`; its stdout.
fn portolan(args: &[String]) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin()).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "portolan {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The sidecar: native (restartPolicy Always), UID 1337, its bootstrap what `portolan
/// bootstrap` prints for the recorded flags, its command line valid for Envoy.
fn check_sidecar(patched: &Value, mesh_port: u16) -> anyhow::Result<()> {
    let proxy = init_container(patched, "portolan-proxy")?;
    assert_eq!(proxy["restartPolicy"], "Always", "{proxy}");
    assert_eq!(proxy["securityContext"]["runAsUser"], 1337, "{proxy}");
    assert_eq!(proxy["image"], "envoyproxy/envoy:v1.40.0", "{proxy}");
    // Ready once Portolan's outbound listener (serve --mesh-port) is open.
    assert_eq!(
        proxy["readinessProbe"]["tcpSocket"]["port"], mesh_port,
        "{proxy}"
    );
    let args = strings(&proxy["args"]);
    let (inline, flags) = same_bootstrap(patched)?;
    for expected in [
        "--node-id=reviews-v2-5c7f9.shop",
        "--cluster=reviews",
        "--zone=zone-b",
        "--label=app=reviews",
        "--label=version=v2",
        "--app-port=9080",
        "--namespace=shop",
        "--service-account=reviews",
        "--probe-port=15021",
        "--app-probe=app/readyz=http://127.0.0.1:9080/ready",
        "--app-probe-header=app/readyz=X-Probe:kube%20let",
        "--app-probe=app/livez=tcp://127.0.0.1:9080",
        "--app-probe=app/startupz=grpc://127.0.0.1:9090/reviews",
    ] {
        assert!(
            flags.split(' ').any(|f| f == expected),
            "{expected} not in {flags}"
        );
    }
    assert!(!flags.contains("pod-template-hash"), "{flags}");
    assert_eq!(inline["node"]["locality"]["zone"], "zone-b");
    assert_eq!(
        inline["static_resources"]["listeners"][0]["name"], "portolan-probes",
        "{inline}"
    );
    assert_eq!(
        inline["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
            [0]["endpoint"]["address"]["socket_address"]["address"],
        "portolan.portolan-system.svc"
    );
    // The container's command line, with the downward API variables the kubelet expands.
    let expanded: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("$(POD_NAME)", "reviews-v2-5c7f9-x2b4k")
                .replace("$(POD_NAMESPACE)", "shop")
        })
        .collect();
    let out = std::process::Command::new(envoy_bin())
        .args(&expanded)
        .args(["--mode", "validate"])
        .output()?;
    assert!(
        out.status.success(),
        "envoy --mode validate {expanded:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The sidecar's inline bootstrap, checked equal to what `portolan bootstrap` prints for the
/// flags the injector recorded in the pod's annotation; the bootstrap and the flags.
fn same_bootstrap(patched: &Value) -> anyhow::Result<(Value, String)> {
    let proxy = init_container(patched, "portolan-proxy")?;
    let args = strings(&proxy["args"]);
    let at = args
        .iter()
        .position(|a| a == "--config-yaml")
        .ok_or_else(|| anyhow::anyhow!("no --config-yaml: {args:?}"))?;
    let inline: Value = serde_json::from_str(args.get(at + 1).map_or("", String::as_str))?;
    let flags = patched["metadata"]["annotations"]["portolan.dev/injected"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut command = vec!["bootstrap".to_string()];
    command.extend(flags.split(' ').map(str::to_string));
    let printed: Value = serde_json::from_str(&portolan(&command)?)?;
    assert_eq!(
        inline, printed,
        "the sidecar's bootstrap is not `portolan {command:?}`"
    );
    Ok((inline, flags))
}

/// The pods examples/kubernetes/injected/'s Deployments create: (namespace, pod as the
/// ReplicaSet controller sends it).
fn example_pods() -> anyhow::Result<Vec<(String, Value)>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kubernetes/injected");
    let mut pods = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        for doc in text.split("\n---\n") {
            let object: Value = serde_saphyr::from_str(doc)?;
            if object["kind"] != "Deployment" {
                continue;
            }
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod"});
            pod["metadata"] = object["spec"]["template"]["metadata"].clone();
            pod["metadata"]["generateName"] = json!(format!("{name}-5c7f9-"));
            pod["metadata"]["namespace"] = json!(namespace);
            pod["spec"] = object["spec"]["template"]["spec"].clone();
            pods.push((namespace.to_string(), pod));
        }
    }
    Ok(pods)
}

/// The init container: `portolan capture` with NET_ADMIN and NET_RAW, its flags accepted by
/// the real command (`--dry-run`), the pod's excluded ports in the rules.
fn check_init(patched: &Value) -> anyhow::Result<()> {
    let init = init_container(patched, "portolan-init")?;
    assert_eq!(init["image"], "portolan-init:e2e");
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        json!(["NET_ADMIN", "NET_RAW"])
    );
    assert_eq!(strings(&init["command"]), ["portolan"]);
    let mut args = strings(&init["args"]);
    assert_eq!(
        args.first().map(String::as_str),
        Some("capture"),
        "{args:?}"
    );
    assert!(args.contains(&"--proxy-uid=1337".to_string()), "{args:?}");
    args.push("--dry-run".into());
    let rules = portolan(&args)?;
    assert!(
        rules.contains("-A PORTOLAN_OUTPUT -p tcp --dport 5432 -j RETURN")
            && rules.contains("-A PORTOLAN_OUTPUT -p tcp --dport 6379 -j RETURN"),
        "{rules}"
    );
    assert!(rules.contains("--uid-owner 1337 -j RETURN"), "{rules}");
    // The probe port is left out of inbound capture.
    assert!(
        rules.contains("-A PORTOLAN_INBOUND -p tcp --dport 15021 -j RETURN"),
        "{rules}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_pods_are_valid_and_bootstrapped_like_portolan_bootstrap() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    if !kubernetes_validate().exists() {
        eprintln!(
            "skipped: {} missing (scripts/install-tools.sh installs it)",
            kubernetes_validate().display()
        );
        return Ok(());
    }
    let ca = TestCa::new()?;
    let cert = ca.issue(&["localhost"])?;
    let injector = Injector::start(&cert, &[]).await?;
    let dir = tempfile::tempdir()?;

    let response = injector.review(&ca, "inject-1", &pod()).await?;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("warnings").is_none(), "{response}");
    let patched = apply(&pod(), &response)?;
    let names: Vec<String> = patched["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names, ["portolan-init", "portolan-proxy", "migrate"]);
    // Of the application, only the probes changed: to the sidecar's probe port.
    let mut app = patched["spec"]["containers"][0].clone();
    for (field, kind) in [
        ("readinessProbe", "readyz"),
        ("livenessProbe", "livez"),
        ("startupProbe", "startupz"),
    ] {
        let get = &app[field]["httpGet"];
        assert_eq!(get["port"], 15021, "{app}");
        assert_eq!(get["path"], format!("/app-health/app/{kind}"), "{app}");
        if let Some(probe) = app.as_object_mut() {
            probe.remove(field);
        }
    }
    let mut original = pod()["spec"]["containers"][0].clone();
    for field in ["readinessProbe", "livenessProbe", "startupProbe"] {
        if let Some(c) = original.as_object_mut() {
            c.remove(field);
        }
    }
    assert_eq!(app, original);
    validate_pod(&patched, dir.path())?;
    check_sidecar(&patched, injector.portolan.ports().mesh)?;
    check_init(&patched)?;

    // The example's pods (examples/kubernetes/injected/): injected, valid, bootstrapped.
    let examples = example_pods()?;
    assert_eq!(examples.len(), 3, "reviews-v1, reviews-v2 and client");
    for (i, (namespace, pod)) in examples.iter().enumerate() {
        assert_eq!(namespace, "shop");
        let response = injector.review(&ca, &format!("example-{i}"), pod).await?;
        assert!(response.get("warnings").is_none(), "{response}");
        let injected = apply(pod, &response)?;
        validate_pod(&injected, dir.path())?;
        let (bootstrap, _) = same_bootstrap(&injected)?;
        let sa = pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(bootstrap["node"]["cluster"], sa, "{bootstrap}");
    }

    // Idempotent: the injected pod again gets no patch.
    let again = injector.review(&ca, "inject-2", &patched).await?;
    assert_eq!(again["allowed"], true, "{again}");
    assert!(again.get("patch").is_none(), "{again}");

    // A pod without annotations or init containers gets both lists made.
    let mut bare = pod();
    bare["metadata"]
        .as_object_mut()
        .map(|m| m.remove("annotations"));
    bare["spec"]
        .as_object_mut()
        .map(|s| s.remove("initContainers"));
    let bare_patched = apply(&bare, &injector.review(&ca, "inject-3", &bare).await?)?;
    validate_pod(&bare_patched, dir.path())?;
    assert_eq!(
        bare_patched["spec"]["initContainers"][1]["name"],
        "portolan-proxy"
    );

    // Opted out.
    let mut out = pod();
    out["metadata"]["annotations"]["portolan.dev/inject"] = json!("false");
    let response = injector.review(&ca, "inject-4", &out).await?;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("patch").is_none(), "{response}");

    // Uninjectable: admitted unchanged, with a warning naming the pod and the field.
    let mut host = pod();
    host["spec"]["hostNetwork"] = json!(true);
    let response = injector.review(&ca, "inject-5", &host).await?;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("patch").is_none(), "{response}");
    let warning = response["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("Pod shop/reviews-v2-5c7f9-*: Portolan cannot inject its sidecar")
            && warning.contains("spec.hostNetwork"),
        "{response}"
    );
    let mut clash = pod();
    clash["spec"]["containers"][0]["ports"] = json!([{"containerPort": 15006}]);
    let response = injector.review(&ca, "inject-6", &clash).await?;
    let warning = response["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("containerPort 15006"), "{response}");

    // ... or refused, with --inject-refuse-uninjectable. This server also gives sidecars
    // token identity (--inject-xds-ca): TLS to Portolan and the projected token.
    let xds_ca = dir.path().join("xds-ca.pem");
    std::fs::write(&xds_ca, ca.cert_pem())?;
    let xds_ca = xds_ca.to_str().unwrap_or_default();
    let refusing = Injector::start(
        &cert,
        &["--inject-refuse-uninjectable", "--inject-xds-ca", xds_ca],
    )
    .await?;
    let response = refusing.review(&ca, "inject-7", &host).await?;
    assert_eq!(response["allowed"], false, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("spec.hostNetwork"), "{response}");
    let response = refusing.review(&ca, "inject-8", &pod()).await?;
    assert_eq!(response["allowed"], true, "{response}");
    let with_token = apply(&pod(), &response)?;
    validate_pod(&with_token, dir.path())?;
    let (bootstrap, _) = same_bootstrap(&with_token)?;
    assert_eq!(
        with_token["metadata"]["annotations"]["portolan.dev/xds-ca"],
        json!(ca.cert_pem())
    );
    let volume = &with_token["spec"]["volumes"][0];
    assert_eq!(volume["name"], "portolan-identity", "{with_token}");
    assert_eq!(
        volume["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "portolan"
    );
    let google = &bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]["google_grpc"];
    assert_eq!(
        google["call_credentials"][0]["sts_service"]["subject_token_path"],
        "/var/run/secrets/portolan/token",
        "{bootstrap}"
    );
    Ok(())
}

/// `reviews` (ClusterIP 10.96.0.40:9080, pods v1 10.244.0.41 and v2 10.244.0.42) split 50/50
/// between `reviews-v1` and `reviews-v2` by a mesh TrafficRoute, in namespace `shop`, its
/// servers running as service account `reviews`, STRICT mutual TLS.
fn mesh_manifests() -> String {
    let service = |name: &str, ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: shop\n  labels:\n    portolan.dev/service-account: reviews\nspec:\n  clusterIP: {ip}\n  ports:\n  - name: http\n    port: 9080\n"
        )
    };
    let slice = |name: &str, service: &str, ip: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: shop\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\nports:\n- name: http\n  port: 9080\n"
        )
    };
    [
        service("reviews", "10.96.0.40"),
        slice("reviews-a", "reviews", "10.244.0.41"),
        slice("reviews-b", "reviews", "10.244.0.42"),
        service("reviews-v1", "10.96.0.41"),
        slice("reviews-v1", "reviews-v1", "10.244.0.41"),
        service("reviews-v2", "10.96.0.42"),
        slice("reviews-v2", "reviews-v2", "10.244.0.42"),
        "apiVersion: portolan.dev/v1alpha1\nkind: PeerAuthentication\nmetadata:\n  name: reviews\n  namespace: shop\nspec:\n  selector:\n    matchLabels: {app: reviews}\n  mtls:\n    mode: STRICT\n".into(),
        "apiVersion: portolan.dev/v1alpha1\nkind: TrafficRoute\nmetadata:\n  name: reviews-canary\n  namespace: shop\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews-v1}\n      weight: 50\n    - destination: {host: reviews-v2}\n      weight: 50\n".into(),
    ]
    .join("---\n")
}

/// A pod as a Deployment of `app` (service account `sa`, container port 9080 and its probes if
/// `serves`) would create it.
fn workload_pod(app: &str, version: &str, sa: &str, serves: bool) -> Value {
    let mut container = json!({"name": app, "image": format!("{app}:{version}")});
    if serves {
        container["ports"] = json!([{"name": "http", "containerPort": 9080}]);
        // An HTTP probe on the named port with a header, a TCP probe, and a probe the
        // application fails (pod.py answers 503 under /fail).
        container["readinessProbe"] = json!({"httpGet": {
            "path": "/healthz?full=1", "port": "http",
            "httpHeaders": [{"name": "X-Probe", "value": "kubelet"}]
        }});
        container["livenessProbe"] = json!({"tcpSocket": {"port": 9080}});
        container["startupProbe"] = json!({"httpGet": {
            "path": "/fail", "port": 9080,
            "httpHeaders": [{"name": "X-Probe", "value": "kubelet"}]
        }});
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": format!("{app}-{version}-5c7f9-"),
            "namespace": "shop",
            "labels": {"app": app, "version": version, "pod-template-hash": "5c7f9"}
        },
        "spec": {"serviceAccountName": sa, "containers": [container]}
    })
}

/// Injects `pod` through the server and runs what was injected in the network namespace
/// `target`: the init container's `portolan capture`, then the sidecar's Envoy command line
/// (the downward API variables expanded as the kubelet would).
async fn run_injected(
    injector: &Injector,
    ca: &TestCa,
    pod: &Value,
    target: &mut Pod,
) -> anyhow::Result<Value> {
    let response = injector.review(ca, &target.role.clone(), pod).await?;
    let injected = apply(pod, &response)?;
    let init = init_container(&injected, "portolan-init")?;
    let args = strings(&init["args"]);
    anyhow::ensure!(args.first().is_some_and(|a| a == "capture"), "{args:?}");
    let capture: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    target
        .capture(bin(), &capture)
        .await
        .map_err(|e| anyhow::anyhow!("portolan capture {capture:?} in {}: {e}", target.role))?;
    let proxy = init_container(&injected, "portolan-proxy")?;
    let node = format!("{}-x2b4k", target.role);
    let envoy: Vec<String> = strings(&proxy["args"])
        .iter()
        .map(|a| {
            a.replace("$(POD_NAME)", &node)
                .replace("$(POD_NAMESPACE)", "shop")
        })
        .collect();
    target.envoy(&envoy).await?;
    Ok(injected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_pods_run_in_network_namespaces() -> anyhow::Result<()> {
    if let Some(why) = netns::unsupported() {
        eprintln!("skipping inject::injected_pods_run_in_network_namespaces: {why}");
        return Ok(());
    }
    let _shared = portolan_e2e::serial::shared().await;
    // Dropping the scenario (on time-out too) kills every process and deletes every namespace.
    tokio::time::timeout(Duration::from_secs(240), injected_scenario())
        .await
        .map_err(|_| anyhow::anyhow!("the injection scenario took over 240 s"))?
}

async fn injected_scenario() -> anyhow::Result<()> {
    let node = Node::new()?;
    let ca = TestCa::new()?;
    let cert = ca.issue(&["localhost"])?;
    // The injector's server is also the xDS server; sidecars reach it through a Unix socket
    // relayed into the node directory (what --inject-xds-address names).
    let xds_socket = node.dir().join("xds.sock");
    let xds = format!("unix:{}", xds_socket.display());
    let mut args = vec!["--inject-xds-address", xds.as_str()];
    args.extend(netns::SERVE_ARGS);
    let injector = Injector::start_with(&cert, mesh_manifests(), &args).await?;
    let _relay = Relay::start(xds_socket, injector.portolan.ports().xds)?;
    let mut v1 = node.pod("reviews-v1", "10.244.0.41")?;
    let mut v2 = node.pod("reviews-v2", "10.244.0.42")?;
    let mut client = node.pod("client", "10.244.0.10")?;
    client.hosts(&["10.96.0.40 reviews reviews.shop reviews.shop.svc.cluster.local"])?;
    // No sidecar: the node's kubelet probing pods, in plaintext.
    let kubelet = node.pod("kubelet", "10.244.0.2")?;
    let mut injected_v1 = Value::Null;
    let started = async {
        for (pod, version) in [(&mut v1, "v1"), (&mut v2, "v2")] {
            pod.http_app(&format!("reviews-{version}"), 9080)?;
            let spec = workload_pod("reviews", version, "reviews", true);
            let injected = run_injected(&injector, &ca, &spec, pod).await?;
            if version == "v1" {
                injected_v1 = injected;
            }
        }
        let spec = workload_pod("client", "v1", "client", false);
        run_injected(&injector, &ca, &spec, &mut client).await
    };
    let diagnostics = |pods: [&Pod; 3]| pods.iter().map(|p| p.diagnostics()).collect::<String>();
    if let Err(e) = started.await {
        anyhow::bail!(
            "{e}\n{}{}",
            diagnostics([&client, &v1, &v2]),
            injector.portolan.log_tail()
        );
    }

    // The unchanged client: plain `curl http://reviews:9080/`, both versions answer.
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let res = eventually(
        "both canary versions through the sidecar",
        Duration::from_secs(30),
        || async {
            let body = client.curl("http://reviews:9080/").await?;
            let mut seen = seen.lock().map_err(|e| e.to_string())?;
            seen.insert(body);
            if seen.contains("reviews-v1") && seen.contains("reviews-v2") {
                Ok(())
            } else {
                Err(format!("seen {seen:?}"))
            }
        },
    )
    .await;
    if let Err(e) = res {
        anyhow::bail!("{e}\n{}", diagnostics([&client, &v1, &v2]));
    }
    // Through the client's sidecar, over mutual TLS into each server's inbound listener.
    assert!(
        client
            .counter("http.mesh_outbound.downstream_rq_total")
            .await?
            > 0
    );
    for server in [&v1, &v2] {
        let handshakes = server.counter("listener.inbound.ssl.handshake").await?;
        assert!(
            handshakes > 0,
            "{} saw no mutual TLS\n{}",
            server.role,
            server.diagnostics()
        );
        assert!(server.counter("http.inbound.downstream_rq_total").await? > 0);
    }
    probes_pass_strict_mtls(&injected_v1, &kubelet, &v1).await
}

/// The kubelet's probes of an injected STRICT pod, sent as the rewritten pod says, in
/// plaintext from outside the pod: answered through the sidecar's probe port with the
/// application's own answer (original path, query and header; its 503 stays a failure; a TCP
/// probe passes while the port accepts), while plaintext to the application's port is refused.
async fn probes_pass_strict_mtls(
    injected: &Value,
    kubelet: &Pod,
    server: &Pod,
) -> anyhow::Result<()> {
    let app = &injected["spec"]["containers"][0];
    let url = |probe: &str| -> anyhow::Result<String> {
        let get = &app[probe]["httpGet"];
        anyhow::ensure!(get["scheme"] == "HTTP", "{probe} not rewritten: {app}");
        Ok(format!(
            "http://{}:{}{}",
            server.ip,
            get["port"],
            get["path"].as_str().unwrap_or_default()
        ))
    };
    let ready = url("readinessProbe")?;
    assert_eq!(
        ready,
        format!("http://{}:15021/app-health/reviews/readyz", server.ip)
    );
    let res = eventually(
        "the readiness probe through the probe port",
        Duration::from_secs(30),
        || async {
            match kubelet.curl(&ready).await {
                Ok(body) if body == "reviews-v1 /healthz?full=1 kubelet" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    if let Err(e) = res {
        anyhow::bail!("{e}\n{}", server.diagnostics());
    }
    let live = url("livenessProbe")?;
    let res = eventually(
        "the TCP probe through the probe port",
        Duration::from_secs(10),
        || async { kubelet.curl(&live).await.map(|_| ()) },
    )
    .await;
    res.map_err(|e| anyhow::anyhow!("{e}\n{}", server.diagnostics()))?;
    let startup = kubelet.curl(&url("startupProbe")?).await;
    assert!(
        startup.as_ref().is_err_and(|e| e.contains("503")),
        "the application's 503 was not a failure: {startup:?}"
    );
    // STRICT: the application's own port, in plaintext, is refused by the inbound listener.
    let direct = kubelet.curl(&format!("http://{}:9080/", server.ip)).await;
    assert!(
        direct.is_err(),
        "plaintext reached the application: {direct:?}"
    );
    Ok(())
}
