//! End to end, the sidecar injector of a real `portolan serve --inject --webhook-cert ...`:
//! Pod AdmissionReviews over HTTPS (the same server as `/validate`), the returned JSONPatch
//! applied (json-patch), the patched Pod accepted by kubernetes-validate --strict (Kubernetes
//! 1.33), the sidecar's inline bootstrap equal to what `portolan bootstrap` prints for the flags
//! the injector recorded, the sidecar's whole command line accepted by `envoy --mode validate`,
//! the init container's `portolan capture` command accepted (`--dry-run`) with the pod's
//! exclusions in its rules. Then: re-injecting the injected pod changes nothing, an opted-out
//! pod is left alone, a host-network pod is admitted unchanged with a warning, and refused by a
//! server with `--inject-refuse-uninjectable`.

use crate::bin;
use portolan_e2e::envoy::envoy_bin;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::ports::free_port;
use portolan_e2e::tls::{ServerCert, TestCa, https_request};
use portolan_e2e::{Portolan, workspace_root};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const XDS_ADDRESS: &str = "portolan.portolan-system.svc:18000";

/// A pod as a Deployment's ReplicaSet creates it: no name yet, a service account, a zone, an
/// init container of its own and a capture annotation.
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
                "securityContext": {"runAsUser": 1000}
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
        let config = ConfigDir::new()?;
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
            "--inject-xds-address",
            XDS_ADDRESS,
            "--inject-init-image",
            "portolan-init:e2e",
        ];
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
    ] {
        assert!(
            flags.split(' ').any(|f| f == expected),
            "{expected} not in {flags}"
        );
    }
    assert!(!flags.contains("pod-template-hash"), "{flags}");
    assert_eq!(inline["node"]["locality"]["zone"], "zone-b");
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
    assert_eq!(patched["spec"]["containers"], pod()["spec"]["containers"]);
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
