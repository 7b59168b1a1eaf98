//! `portolan serve --kubernetes`: the Kubernetes source run by the pipeline's index writer
//! (its sync and health are the source's status, its watchers `/debug/sources`), and the
//! leader-elected status writer fed by the World's conditions and the NACKs of connected
//! proxies (see docs/kubernetes.md).
//!
//! Nothing is served before every watcher has listed once: the source reports itself synced
//! only then, and the pipeline builds no snapshot (and `/readyz` stays 503) until it is. The
//! status writer also waits for that, so it never writes conditions computed from a partial
//! cluster.
//!
//! With `--provision-gateways` (the default) the status writer also provisions the proxies of
//! every Gateway API Gateway of Portolan's class ([`portolan_k8s::provision`]), bootstrapped
//! as `portolan bootstrap --gateway NS/NAME` would print it.

use crate::cli::KubernetesArgs;
use anyhow::Context;
use portolan_api::ObjectRef;
use portolan_k8s::provision::{GatewayTokens, ProvisionConfig};
use portolan_k8s::{ClusterView, Inputs, LeaseConfig, LeaseLock, SourceState, StatusWriter};
use portolan_model::{Condition, Index, World};
use portolan_pipeline::patch::Patches;
use portolan_pipeline::programmed::Provenances;
use portolan_pipeline::{IndexWriter, SourceStatus};
use portolan_xds::Cache;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the leader recomputes statuses (NACKs change without a new World).
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The running Kubernetes source.
pub struct Running {
    /// Synced once every watcher has listed; up while every watcher's last request worked
    /// (`portolan_config_source_up`, `/readyz`).
    pub status: SourceStatus,
    /// Every watcher's state (`/debug/sources`).
    pub watchers: watch::Receiver<SourceState>,
    /// The client, Portolan's namespace and whether this replica leads: for the mesh CA
    /// Secret (`--ca-secret`).
    pub cluster: Cluster,
    election: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The cluster Portolan runs in, as the mesh CA Secret needs it.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    pub namespace: String,
    pub leading: watch::Receiver<bool>,
}

/// What the pipeline records about its builds that status reads: the provenance of each
/// group's snapshot (NACK attribution) and the EnvoyPatchPolicy outcomes.
#[derive(Clone)]
pub struct BuildState {
    pub provenances: Arc<Provenances>,
    pub patches: Arc<Patches>,
    /// Token identity of provisioned Gateway proxies (`--xds-token-review` with
    /// `--inject-xds-ca`); none: plaintext xDS.
    pub gateway_tokens: Option<GatewayTokens>,
}

/// Starts the watchers, the election and the status writer.
pub async fn start(
    args: &KubernetesArgs,
    writer: &IndexWriter,
    index: Arc<Mutex<Index>>,
    cache: Arc<Cache>,
    built: BuildState,
    shutdown: watch::Receiver<bool>,
    registry: &mut Registry,
) -> anyhow::Result<Running> {
    let client = portolan_k8s::client()
        .await
        .context("connecting to Kubernetes")?;
    let view = ClusterView::new();
    let source =
        portolan_k8s::KubernetesSource::new(client.clone(), &args.watch_namespaces, view.clone());
    let state = source.state();
    let (status, watchers) = writer.spawn("kubernetes", source);
    let errors = Counter::<u64>::default();
    registry.register(
        "kubernetes_watch_errors",
        "Failed Kubernetes list/watch requests (each retried with backoff; the last known state stays)",
        errors.clone(),
    );
    let mut tasks = vec![watchers, tokio::spawn(count_errors(state.clone(), errors))];

    let namespace = args
        .pod_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let (leading, election) = if args.leader_election {
        let identity = args.pod_name.clone().unwrap_or_else(hostname);
        tracing::info!(lease = %format!("{namespace}/{}", args.lease_name), %identity, "leader election for the status writer");
        let lock = LeaseLock::new(
            client.clone(),
            LeaseConfig::new(&namespace, &args.lease_name, &identity),
        );
        let (tx, rx) = watch::channel(false);
        (rx, Some(tokio::spawn(lock.run(tx, shutdown))))
    } else {
        tracing::info!("leader election off: this replica writes status");
        let (tx, rx) = watch::channel(true);
        // Kept open for the life of the process.
        tasks.push(tokio::spawn(async move { tx.closed().await }));
        (rx, None)
    };

    let cluster = Cluster {
        client: client.clone(),
        namespace: namespace.clone(),
        leading: leading.clone(),
    };
    let mut status_writer = StatusWriter::new(client.clone(), view);
    if args.provision_gateways {
        let config = provision_config(args, &namespace, built.gateway_tokens.clone());
        tracing::info!(image = %config.envoy_image, service_type = %config.service_type, "provisioning Gateway proxies");
        status_writer = status_writer.with_provisioner(config);
    }
    let mut synced_rx = status.synced.clone();
    let wake = writer.changes();
    tasks.push(tokio::spawn(async move {
        let _ = synced_rx.wait_for(|s| *s).await;
        let inputs = move || status_inputs(&index, &cache, &built.provenances, &built.patches);
        status_writer.run(inputs, leading, wake, STATUS_EVERY).await;
    }));
    Ok(Running {
        status,
        watchers: state,
        cluster,
        election,
        tasks,
    })
}

// === impl Running ===

impl Running {
    /// Stops the status writer and the watchers; waits (briefly) for the election to hand
    /// the Lease back, so another replica takes over at once.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(election) = self.election
            && tokio::time::timeout(Duration::from_secs(5), election)
                .await
                .is_err()
        {
            tracing::warn!("the Lease was not released in time; it expires by itself");
        }
    }
}

/// How Gateway proxies are provisioned: the image, the Service type, and their bootstrap
/// (`portolan bootstrap --gateway NS/NAME --xds-address ...`, with `tokens` also `--xds-ca`
/// and `--xds-token-file` at the provisioned pods' paths).
fn provision_config(
    args: &KubernetesArgs,
    namespace: &str,
    tokens: Option<GatewayTokens>,
) -> ProvisionConfig {
    let xds = args
        .gateway_xds_address
        .clone()
        .unwrap_or_else(|| format!("portolan.{namespace}.svc:18000"));
    let with_token = tokens.is_some();
    ProvisionConfig {
        envoy_image: args.gateway_envoy_image.clone(),
        service_type: args.gateway_service_type.clone(),
        replicas: args.gateway_replicas,
        bootstrap: Arc::new(move |gw: &ObjectRef| gateway_bootstrap(gw, &xds, with_token)),
        tokens,
    }
}

/// The bootstrap of a Gateway's proxies; each pod's `--service-node` replaces the node id.
/// With `token`, TLS to Portolan trusting the ConfigMap's CA and the pod's projected token.
fn gateway_bootstrap(gw: &ObjectRef, xds: &str, token: bool) -> Result<serde_json::Value, String> {
    #[derive(clap::Parser)]
    struct Bootstrap {
        #[command(flatten)]
        args: crate::cli::BootstrapArgs,
    }
    let gateway = format!("{}/{}", gw.namespace, gw.name);
    let mut argv = vec![
        "bootstrap".to_string(),
        "--node-id".to_string(),
        "gateway".to_string(),
        "--gateway".to_string(),
        gateway,
        "--xds-address".to_string(),
        xds.to_string(),
    ];
    if token {
        argv.push(format!("--xds-ca={}", portolan_k8s::provision::XDS_CA_FILE));
        argv.push(format!(
            "--xds-token-file={}/token",
            portolan_k8s::provision::TOKEN_DIR
        ));
    }
    let parsed = <Bootstrap as clap::Parser>::try_parse_from(argv).map_err(|e| e.to_string())?;
    crate::bootstrap::render(&parsed.args).map_err(|e| format!("{e:#}"))
}

/// Counts the watchers' failed requests into `errors`.
async fn count_errors(mut state: watch::Receiver<SourceState>, errors: Counter<u64>) {
    let mut counted = 0;
    loop {
        let total: u64 = state
            .borrow_and_update()
            .watchers
            .values()
            .map(|w| w.errors)
            .sum();
        errors.inc_by(total.saturating_sub(counted));
        counted = total;
        if state.changed().await.is_err() {
            return;
        }
    }
}

/// The current World and the `Programmed=False` conditions of what proxies NACKed (Gateways
/// also get `portolan.dev/Converged` from their connected proxies); an
/// EnvoyPatchPolicy's `Accepted` and `Programmed` come from what its patches did (a NACK of
/// what it patched still wins).
fn status_inputs(
    index: &Mutex<Index>,
    cache: &Cache,
    provenances: &Provenances,
    patches: &Patches,
) -> Inputs {
    let mut world = index.lock().unwrap_or_else(|p| p.into_inner()).world();
    let proxies = cache.proxies();
    let nacks = portolan_pipeline::programmed::nacks(cache, provenances, &proxies);
    let by_name = portolan_pipeline::programmed::conditions(&world, &nacks);
    if !world.api_statuses.is_empty() {
        // NACKs in force, and every Gateway's portolan.dev/Converged.
        let convergence = portolan_pipeline::programmed::convergence(cache, &proxies);
        let mut with_proxies = World::clone(&world);
        with_proxies.api_statuses =
            portolan_pipeline::programmed::api_statuses(&world, &by_name, &nacks, &convergence);
        world = Arc::new(with_proxies);
    }
    let mut programmed = objects_by_name(&world, by_name);
    let patched = patches.conditions(&world);
    if !patched.is_empty() {
        let mut with_patches = World::clone(&world);
        with_patches
            .api_statuses
            .extend(patches.api_statuses(&world));
        for (object, conditions) in patched {
            for c in conditions {
                match c.type_ {
                    portolan_model::ConditionType::Programmed => {
                        programmed.entry(object.clone()).or_insert(c);
                    }
                    _ => {
                        let entry = with_patches.statuses.entry(object.clone()).or_default();
                        entry.retain(|old| old.type_ != c.type_);
                        entry.insert(0, c);
                    }
                }
            }
        }
        world = Arc::new(with_patches);
    }
    Inputs { world, programmed }
}

/// Maps `Kind ns/name` keys back to the routing objects of `world` they name.
fn objects_by_name(
    world: &World,
    mut by_name: BTreeMap<String, Condition>,
) -> BTreeMap<ObjectRef, Condition> {
    world
        .statuses
        .keys()
        .filter_map(|r| by_name.remove(&r.to_string()).map(|c| (r.clone(), c)))
        .collect()
}

/// This host's name (a pod's name by default), for the Lease holder identity.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("portolan-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::Kind;
    use portolan_model::ConditionType;

    /// An EnvoyPatchPolicy's status comes from the patch outcomes: disabled here.
    #[test]
    fn envoy_patch_policies_get_their_conditions_from_the_pipeline() {
        let doc = serde_json::json!({"apiVersion": "portolan.dev/v1alpha1",
            "kind": "EnvoyPatchPolicy", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"proxies": {"cluster": "edge"}, "patches": [{"type": "Cluster",
                "name": "c", "merge": {"per_connection_buffer_limit_bytes": 1}}]}});
        let resource = portolan_api::Resource::decode(doc)
            .expect("decodes")
            .expect("a kind Portolan reads");
        let mut index = Index::new();
        index.apply(portolan_model::convert::to_object(&resource));
        let index = Mutex::new(index);
        let cache = Cache::new();
        let inputs = status_inputs(&index, &cache, &Provenances::new(), &Patches::new(false));
        let r = ObjectRef::new(Kind::EnvoyPatchPolicy, "default", "p");
        let accepted = &inputs.world.statuses[&r][0];
        assert_eq!(
            (accepted.type_, accepted.status, accepted.reason.as_str()),
            (ConditionType::Accepted, false, "Disabled")
        );
        assert_eq!(inputs.programmed[&r].reason, "Disabled");
    }

    #[test]
    fn programmed_conditions_find_their_objects() {
        let mut world = World::default();
        let r = ObjectRef::new(Kind::Gateway, "default", "edge");
        world.statuses.insert(r.clone(), vec![]);
        let nacked = Condition::new(ConditionType::Programmed, false, "Nacked", "bad", 1);
        let by_name = BTreeMap::from([
            ("Gateway default/edge".to_string(), nacked.clone()),
            ("Secret default/cert".to_string(), nacked.clone()),
        ]);
        let found = objects_by_name(&world, by_name);
        assert_eq!(found, BTreeMap::from([(r, nacked)]));
    }

    #[test]
    fn provisioned_gateways_are_bootstrapped_into_their_group() {
        let gw = ObjectRef::new(Kind::ApiGateway, "infra", "edge");
        let b = gateway_bootstrap(&gw, "portolan.system.svc:18000", false).expect("renders");
        assert_eq!(b["node"]["cluster"], "gateway:infra/edge");
        let with_token =
            gateway_bootstrap(&gw, "portolan.system.svc:18000", true).expect("renders");
        let text = with_token.to_string();
        assert!(text.contains("/etc/portolan/xds-ca.crt"), "{text}");
        assert!(text.contains("/var/run/secrets/portolan/token"), "{text}");
        assert!(
            text.contains("http://portolan.system.svc:18080/sts/v1/token"),
            "{text}"
        );
        let xds = &b["static_resources"]["clusters"][0];
        assert_eq!(xds["type"], "STRICT_DNS");
        assert_eq!(
            xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["address"],
            "portolan.system.svc"
        );
    }
}
