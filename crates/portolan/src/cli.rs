//! Command-line interface: every flag, its default, and its environment variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "portolan", version, about = "An xDS control plane for Envoy")]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[allow(clippy::large_enum_variant)] // parsed once at start-up
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve xDS to Envoy from a directory of Kubernetes manifests or a Kubernetes cluster.
    Serve(ServeArgs),
    /// Print a stock Envoy bootstrap that connects to Portolan.
    Bootstrap(BootstrapArgs),
    /// Print, as JSON, the Envoy resources a proxy of a group gets.
    Render(RenderArgs),
    /// Check manifests; exit 1 and print field-path errors if any is invalid.
    Validate(ValidateArgs),
    /// Run route tests (RouteTest documents) through stock Envoy on the rendered
    /// configuration, or without Envoy on the rendered route tables; exit 1 on any failure.
    Test(TestArgs),
    /// Print what a proxy group does with one request: listener, virtual host, route, policies,
    /// clusters and endpoints.
    Explain(ExplainArgs),
    /// Print Portolan's CustomResourceDefinitions (or write them to a directory).
    Crds(CrdsArgs),
    /// Show every connected proxy and, per xDS type, whether it is SYNCED, STALE or NACKED.
    ProxyStatus(ProxyStatusArgs),
    /// Print, as JSON, the configuration a connected proxy's group holds and what it ACKed.
    ConfigDump(ConfigDumpArgs),
    /// Print, as JSON, the status of Gateway API objects a running server owns (all, or one
    /// as KIND/NAMESPACE/NAME, e.g. `HTTPRoute/default/web`).
    Status(StatusArgs),
    /// List the config versions a running server keeps (newest last), with the objects that
    /// changed in each and whether a rollback is in force.
    History(HistoryArgs),
    /// Show the Envoy-level difference between two kept versions, per resource.
    Diff(DiffArgs),
    /// File mode: serve a kept version until the next change of the source (needs
    /// `serve --enable-rollback`). Kubernetes mode: not served (see docs/operations.md).
    Rollback(RollbackArgs),
    /// The mesh CA of a running server: `status` (rotation phase, trust bundle, signing root)
    /// or `rotate` (start a rotation to a generated root; needs `serve --enable-ca-rotation`).
    Ca(CaArgs),
    /// Program this network namespace's netfilter rules so that its TCP connections go through
    /// the sidecar (transparent capture; an injected pod's init container runs it).
    Capture(CaptureArgs),
}

/// `portolan capture`. The list flags take comma-separated values, as the pod annotations
/// they mirror (`portolan.dev/exclude-outbound-ports`, ...) hold them.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The sidecar's outbound listener port (`serve --mesh-port`).
    #[arg(long, default_value_t = 15001, env = "PORTOLAN_CAPTURE_OUTBOUND_PORT")]
    pub outbound_port: u16,
    /// The sidecar's inbound listener port (`serve --inbound-port`, `bootstrap --inbound-port`).
    #[arg(long, default_value_t = 15006, env = "PORTOLAN_CAPTURE_INBOUND_PORT")]
    pub inbound_port: u16,
    /// The UID the proxy runs as: its own connections are not captured.
    #[arg(long, default_value_t = 1337, env = "PORTOLAN_CAPTURE_PROXY_UID")]
    pub proxy_uid: u32,
    /// The GID the proxy runs as, to also exclude its connections by group.
    #[arg(long, env = "PORTOLAN_CAPTURE_PROXY_GID")]
    pub proxy_gid: Option<u32>,
    /// Inbound ports captured, `*` for all (`portolan.dev/include-inbound-ports`); an empty
    /// value captures no inbound connection.
    #[arg(long, default_value = "*", value_name = "PORTS")]
    pub inbound_ports: Vec<String>,
    /// Inbound ports never captured (`portolan.dev/exclude-inbound-ports`).
    #[arg(long, value_name = "PORTS")]
    pub exclude_inbound_ports: Vec<String>,
    /// Outbound destination ports never captured (`portolan.dev/exclude-outbound-ports`).
    #[arg(long, value_name = "PORTS")]
    pub exclude_outbound_ports: Vec<String>,
    /// Outbound destination ranges captured, `*` for all
    /// (`portolan.dev/include-outbound-ip-ranges`).
    #[arg(long, default_value = "*", value_name = "CIDRS")]
    pub include_outbound_cidrs: Vec<String>,
    /// Outbound destination ranges never captured (`portolan.dev/exclude-outbound-ip-ranges`).
    #[arg(long, value_name = "CIDRS")]
    pub exclude_outbound_cidrs: Vec<String>,
    /// Print the `iptables-restore` input and change nothing (needs no capability).
    #[arg(long)]
    pub dry_run: bool,
    /// Remove Portolan's rules and chains instead (with --dry-run: print how).
    #[arg(long)]
    pub remove: bool,
    /// The `iptables-restore` binary (`iptables-legacy-restore` for the legacy backend).
    #[arg(
        long,
        default_value = "iptables-restore",
        env = "PORTOLAN_IPTABLES_RESTORE"
    )]
    pub iptables_restore: PathBuf,
    /// The `iptables-save` binary, read to keep the jumps into Portolan's chains single.
    #[arg(long, default_value = "iptables-save", env = "PORTOLAN_IPTABLES_SAVE")]
    pub iptables_save: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// KIND/NAMESPACE/NAME (cluster-scoped kinds: KIND//NAME or KIND/NAME).
    pub object: Option<String>,
    /// Portolan's HTTP address.
    #[arg(
        long,
        default_value = "http://127.0.0.1:18080",
        env = "PORTOLAN_HTTP_URL"
    )]
    pub server: String,
}

/// `portolan history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Portolan's HTTP address.
    #[arg(
        long,
        default_value = "http://127.0.0.1:18080",
        env = "PORTOLAN_HTTP_URL"
    )]
    pub server: String,
    /// Print the server's JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `portolan diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older version.
    #[arg(long)]
    pub from: u64,
    /// The newer version.
    #[arg(long)]
    pub to: u64,
    /// The proxy group (node cluster or group key).
    #[arg(long, default_value = portolan_pipeline::DEFAULT_GROUP)]
    pub group: String,
    /// Portolan's HTTP address.
    #[arg(
        long,
        default_value = "http://127.0.0.1:18080",
        env = "PORTOLAN_HTTP_URL"
    )]
    pub server: String,
    /// Print the server's JSON instead of the text diff.
    #[arg(long)]
    pub json: bool,
}

/// `portolan rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The kept version to serve.
    #[arg(long)]
    pub to: u64,
    /// Portolan's HTTP address.
    #[arg(
        long,
        default_value = "http://127.0.0.1:18080",
        env = "PORTOLAN_HTTP_URL"
    )]
    pub server: String,
}

/// `portolan ca`.
#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub action: CaAction,
    /// Portolan's HTTP address.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:18080",
        env = "PORTOLAN_HTTP_URL"
    )]
    pub server: String,
}

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum CaAction {
    /// Print the CA's state as JSON (`GET /debug/ca`).
    Status,
    /// Start a rotation to a generated root (`POST /debug/ca/rotate`) and print the new state.
    Rotate,
}

fn parse_pool(s: &str) -> Result<portolan_model::gateway_api::AddressPool, String> {
    portolan_model::gateway_api::AddressPool::parse(s)
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "PORTOLAN_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info,portolan_xds=debug`.
    #[arg(long, global = true, default_value = "info", env = "PORTOLAN_LOG")]
    pub log_level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// How resources are translated; shared by `serve` and `render`.
#[derive(Debug, Clone, Args)]
pub struct TranslateArgs {
    /// Port of the mesh outbound HTTP listener on every proxy.
    #[arg(long, default_value_t = 15001, env = "PORTOLAN_MESH_PORT")]
    pub mesh_port: u16,
    /// Address the mesh outbound listener binds on the proxy.
    #[arg(long, default_value = "0.0.0.0", env = "PORTOLAN_MESH_ADDRESS")]
    pub mesh_address: String,
    /// Kubernetes cluster domain used in service host names.
    #[arg(long, default_value = "cluster.local", env = "PORTOLAN_CLUSTER_DOMAIN")]
    pub cluster_domain: String,
    /// Access logs of every HTTP request on every proxy: `json` writes one JSON object per
    /// request to Envoy's stdout.
    #[arg(long, value_enum, default_value_t = AccessLogArg::Off, env = "PORTOLAN_ACCESS_LOG")]
    pub access_log: AccessLogArg,
    /// OpenTelemetry collector (OTLP over gRPC), HOST:PORT: proxies trace requests (W3C
    /// traceparent) and export spans to it through the `portolan-otel-collector` cluster.
    #[arg(long, value_name = "HOST:PORT", value_parser = portolan_translate::Collector::parse, env = "PORTOLAN_TRACING_COLLECTOR")]
    pub tracing_collector: Option<portolan_translate::Collector>,
    /// SPIFFE trust domain of mesh identities (`spiffe://TRUST_DOMAIN/ns/NS/sa/SA`).
    #[arg(long, default_value = "cluster.local", env = "PORTOLAN_TRUST_DOMAIN")]
    pub trust_domain: String,
    /// Port of a mesh workload's inbound listener when its node metadata names none
    /// (`inboundPort`).
    #[arg(long, default_value_t = 15006, env = "PORTOLAN_INBOUND_PORT")]
    pub inbound_port: u16,
    /// What a mesh workload's sidecar does with a captured connection to a destination
    /// Portolan does not know: pass it through (`allow-any`) or close it (`registry-only`).
    #[arg(long, value_enum, default_value_t = OutboundPolicyArg::AllowAny, env = "PORTOLAN_OUTBOUND_TRAFFIC_POLICY")]
    pub outbound_traffic_policy: OutboundPolicyArg,
    /// Whether an AccessPolicy or PeerAuthentication change closes the open connections it
    /// refuses on a mesh workload's inbound TCP ports, within a second (each known caller's
    /// connections go through a health-checked cluster of their own; docs/security.md). The
    /// sidecar's bootstrap needs Envoy's internal listener extension (`portolan bootstrap`
    /// adds it); `false` leaves open TCP connections alone, as Envoy's RBAC filter does.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL", env = "PORTOLAN_INBOUND_TCP_CONNECTION_CHECKS")]
    pub inbound_tcp_connection_checks: bool,
    /// Apply EnvoyPatchPolicy objects: JSON patches to the generated Envoy resources, the
    /// last resort for settings Portolan does not model (docs/policies.md). Off: every
    /// EnvoyPatchPolicy is `Accepted=False` (`Disabled`) and nothing is patched.
    #[arg(long, env = "PORTOLAN_ENABLE_ENVOY_PATCH_POLICY")]
    pub enable_envoy_patch_policy: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutboundPolicyArg {
    AllowAny,
    RegistryOnly,
}

// === impl OutboundPolicyArg ===

impl OutboundPolicyArg {
    /// The flag's value as written (`allow-any`, `registry-only`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllowAny => "allow-any",
            Self::RegistryOnly => "registry-only",
        }
    }
}

// === impl TranslateArgs ===

impl TranslateArgs {
    /// The translation options these flags ask for.
    pub fn options(&self) -> portolan_translate::Options {
        portolan_translate::Options {
            mesh_listener_address: self.mesh_address.clone(),
            mesh_listener_port: self.mesh_port,
            cluster_domain: self.cluster_domain.clone(),
            telemetry: portolan_translate::Telemetry {
                access_log: match self.access_log {
                    AccessLogArg::Off => portolan_translate::AccessLog::Off,
                    AccessLogArg::Json => portolan_translate::AccessLog::Json,
                },
                collector: self.tracing_collector.clone(),
            },
            mesh: portolan_translate::mesh::MeshOptions {
                trust_domain: self.trust_domain.clone(),
                inbound_port: self.inbound_port,
                max_connection_duration: None,
                outbound_policy: match self.outbound_traffic_policy {
                    OutboundPolicyArg::AllowAny => portolan_translate::OutboundPolicy::AllowAny,
                    OutboundPolicyArg::RegistryOnly => {
                        portolan_translate::OutboundPolicy::RegistryOnly
                    }
                },
                tcp_connection_checks: self.inbound_tcp_connection_checks,
            },
            envoy_patch_policy: self.enable_envoy_patch_policy,
            ..portolan_translate::Options::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccessLogArg {
    Off,
    Json,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .args(["config_dir", "kubernetes"])
))]
pub struct ServeArgs {
    /// Directory of Kubernetes YAML/JSON manifests (Service, EndpointSlice, Endpoints), watched
    /// for changes. Exactly one of --config-dir and --kubernetes is required.
    #[arg(long, env = "PORTOLAN_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// Address of the xDS gRPC server.
    #[arg(long, default_value = "0.0.0.0:18000", env = "PORTOLAN_XDS_ADDRESS")]
    pub xds_address: SocketAddr,
    /// Address of the HTTP server (/healthz, /readyz, /metrics, /debug/...).
    #[arg(long, default_value = "0.0.0.0:18080", env = "PORTOLAN_HTTP_ADDRESS")]
    pub http_address: SocketAddr,
    /// Listen backlog of the xDS port: connections the kernel queues before Portolan accepts
    /// them (capped by `net.core.somaxconn`). A connection storm beyond it is reset.
    #[arg(long, default_value_t = 4096, env = "PORTOLAN_XDS_BACKLOG")]
    pub xds_backlog: u32,
    /// With --config-dir: quiet time after the last file-system event before the directory is
    /// read again (so that a file written in several steps is read once, complete). A change
    /// whose written files have all been closed by their writers is read at once.
    #[arg(long, default_value = "50ms", value_parser = parse_duration, env = "PORTOLAN_SETTLE")]
    pub settle: Duration,
    /// Quiet time that ends a burst of changes before a push. The first change after a quiet
    /// period is pushed at once; only the changes that follow it wait.
    #[arg(long, default_value = "100ms", value_parser = parse_duration, env = "PORTOLAN_DEBOUNCE")]
    pub debounce: Duration,
    /// Longest a burst of changes may delay a push.
    #[arg(long, default_value = "1s", value_parser = parse_duration, env = "PORTOLAN_DEBOUNCE_MAX")]
    pub debounce_max: Duration,
    /// IPv4 CIDR from which Gateway API Gateways without `spec.addresses` get an address of
    /// their own (stable for the same Gateway), bound by their listeners. File mode only: with
    /// --kubernetes each Gateway's proxies bind 0.0.0.0 on pods of their own.
    #[arg(long, default_value = portolan_model::gateway_api::DEFAULT_POOL, value_parser = parse_pool, env = "PORTOLAN_GATEWAY_ADDRESS_POOL")]
    pub gateway_address_pool: portolan_model::gateway_api::AddressPool,
    /// Config versions kept for `portolan history`, `diff` and `rollback` (0: none).
    #[arg(long, default_value_t = 20, env = "PORTOLAN_HISTORY")]
    pub history: usize,
    /// Serve `POST /debug/rollback` on the HTTP port (file mode). The HTTP port has no
    /// authentication: enable this only where that port is reachable by operators alone.
    #[arg(long, env = "PORTOLAN_ENABLE_ROLLBACK")]
    pub enable_rollback: bool,
    #[command(flatten)]
    pub translate: TranslateArgs,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    #[command(flatten)]
    pub webhook: WebhookArgs,
    #[command(flatten)]
    pub inject: InjectArgs,
}

/// The Kubernetes source and the status writer's leader election (docs/kubernetes.md).
#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// Watch the cluster (in-cluster config, else KUBECONFIG / ~/.kube/config) instead of
    /// --config-dir.
    #[arg(long, env = "PORTOLAN_KUBERNETES")]
    pub kubernetes: bool,
    /// Namespace to watch (repeatable); default: all namespaces.
    #[arg(
        long = "watch-namespace",
        value_name = "NS",
        conflicts_with = "config_dir",
        env = "PORTOLAN_WATCH_NAMESPACE",
        value_delimiter = ','
    )]
    pub watch_namespaces: Vec<String>,
    /// This pod's name (downward API): the Lease holder identity. Default: the host name.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// This pod's namespace (downward API): where the Lease lives. Default: the namespace of
    /// the service account, else `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// Elect one replica (with a coordination.k8s.io Lease) to write status;
    /// `--leader-election=false`: this replica writes status unconditionally.
    #[arg(
        long,
        env = "PORTOLAN_LEADER_ELECTION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub leader_election: bool,
    /// Name of the leader election Lease (in the pod namespace).
    #[arg(long, default_value = "portolan-leader", env = "PORTOLAN_LEASE_NAME")]
    pub lease_name: String,
    /// Provision every Gateway API Gateway of Portolan's class: a Deployment of stock Envoy
    /// bootstrapped to Portolan and a Service exposing its listener ports, owned by the
    /// Gateway (docs/gateway-api.md). `--provision-gateways=false`: run the proxies yourself
    /// (`portolan bootstrap --gateway NS/NAME`).
    #[arg(
        long,
        env = "PORTOLAN_PROVISION_GATEWAYS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub provision_gateways: bool,
    /// The Envoy image of provisioned Gateway proxies.
    #[arg(
        long,
        default_value = "envoyproxy/envoy:v1.40.0",
        env = "PORTOLAN_GATEWAY_ENVOY_IMAGE"
    )]
    pub gateway_envoy_image: String,
    /// The type of provisioned Gateways' Services.
    #[arg(long, default_value = "LoadBalancer", value_parser = ["LoadBalancer", "NodePort", "ClusterIP"], env = "PORTOLAN_GATEWAY_SERVICE_TYPE")]
    pub gateway_service_type: String,
    /// Replicas of each provisioned Gateway's Deployment.
    #[arg(long, default_value_t = 1, env = "PORTOLAN_GATEWAY_REPLICAS")]
    pub gateway_replicas: i32,
    /// Where provisioned Gateway proxies reach Portolan's xDS port (HOST:PORT). Default:
    /// `portolan.POD_NAMESPACE.svc:18000`.
    #[arg(long, value_name = "HOST:PORT", env = "PORTOLAN_GATEWAY_XDS_ADDRESS")]
    pub gateway_xds_address: Option<String>,
}

/// Mesh identities and the certificate authority (docs/security.md, "Mesh security").
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Where a proxy's workload identity comes from: the SPIFFE URI SAN of its verified xDS
    /// client certificate, `node.metadata.namespace`/`serviceAccount` (INSECURE: any client can
    /// claim any identity; development only), or nowhere (no mesh identities).
    #[arg(long, value_enum, default_value_t = IdentityArg::XdsCertificate, env = "PORTOLAN_IDENTITY")]
    pub identity: IdentityArg,
    /// The CA certificate (PEM) signing workload certificates; with --ca-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "ca_key",
        conflicts_with = "ca_dir",
        env = "PORTOLAN_CA_CERT"
    )]
    pub ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "ca_cert",
        env = "PORTOLAN_CA_KEY"
    )]
    pub ca_key: Option<PathBuf>,
    /// A directory holding `ca.crt` and `ca.key`; generated there on first start. Without any
    /// CA flag the CA is generated in memory (proxies must reconnect after a restart).
    #[arg(long, value_name = "DIR", env = "PORTOLAN_CA_DIR")]
    pub ca_dir: Option<PathBuf>,
    /// With --kubernetes: the Secret (in Portolan's namespace) holding the mesh CA and its
    /// rotation state, shared by every replica; the leader creates it on first start.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = ["ca_dir", "ca_cert"],
        env = "PORTOLAN_CA_SECRET"
    )]
    pub ca_secret: Option<String>,
    /// Lifetime of workload certificates; each is replaced at half of it.
    #[arg(long, default_value = "24h", value_parser = parse_duration, env = "PORTOLAN_WORKLOAD_CERT_LIFETIME")]
    pub workload_cert_lifetime: Duration,
    /// CA rotation: how long a new root is published in the trust bundle before it signs.
    #[arg(long, default_value = "1m", value_parser = parse_duration, env = "PORTOLAN_CA_PROPAGATION")]
    pub ca_propagation: Duration,
    /// CA rotation: how long the old root stays trusted after the new one signs (the longest
    /// a workload certificate lives). Default: --workload-cert-lifetime.
    #[arg(long, value_parser = parse_duration, env = "PORTOLAN_CA_ROTATION_GRACE")]
    pub ca_rotation_grace: Option<Duration>,
    /// Serve `POST /debug/ca/rotate` (starts a CA rotation to a generated root) on the HTTP
    /// port, which has no authentication: enable only where operators alone reach it.
    #[arg(long, env = "PORTOLAN_ENABLE_CA_ROTATION")]
    pub enable_ca_rotation: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IdentityArg {
    XdsCertificate,
    InsecureNodeMetadata,
    Off,
}

/// The validating admission webhook (docs/kubernetes.md): HTTPS, served only when a
/// certificate mode is given.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Address of the admission webhook (HTTPS, `POST /validate`); served only with
    /// --webhook-cert/--webhook-key or --webhook-self-signed.
    #[arg(
        long,
        default_value = "0.0.0.0:18443",
        env = "PORTOLAN_WEBHOOK_ADDRESS"
    )]
    pub webhook_address: SocketAddr,
    /// PEM certificate chain of the webhook (cert-manager or any mounted kubernetes.io/tls
    /// Secret); re-read when it changes.
    #[arg(
        long,
        value_name = "FILE",
        requires = "webhook_key",
        conflicts_with = "webhook_self_signed",
        env = "PORTOLAN_WEBHOOK_CERT"
    )]
    pub webhook_cert: Option<PathBuf>,
    /// PEM private key of --webhook-cert; re-read when it changes.
    #[arg(
        long,
        value_name = "FILE",
        requires = "webhook_cert",
        env = "PORTOLAN_WEBHOOK_KEY"
    )]
    pub webhook_key: Option<PathBuf>,
    /// How often the webhook certificate files are checked for changes.
    #[arg(long, default_value = "2s", value_parser = parse_duration, env = "PORTOLAN_WEBHOOK_CERT_RELOAD")]
    pub webhook_cert_reload: Duration,
    /// Manage the webhook certificate: a CA and serving certificate for
    /// --webhook-service in the Secret --webhook-secret (created by the first replica), and the
    /// CA kept in the caBundle of --webhook-configuration. Needs a Kubernetes API and
    /// --pod-namespace.
    #[arg(
        long,
        requires_all = ["webhook_service", "webhook_configuration", "pod_namespace"],
        env = "PORTOLAN_WEBHOOK_SELF_SIGNED"
    )]
    pub webhook_self_signed: bool,
    /// The Service in front of the webhook pods (in the pod namespace).
    #[arg(long, value_name = "NAME", env = "PORTOLAN_WEBHOOK_SERVICE")]
    pub webhook_service: Option<String>,
    /// The ValidatingWebhookConfiguration whose webhooks' clientConfig.caBundle is kept equal
    /// to the self-managed CA.
    #[arg(long, value_name = "NAME", env = "PORTOLAN_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// The sidecar injector's MutatingWebhookConfiguration, whose caBundle is kept equal to the
    /// self-managed CA as well.
    #[arg(
        long,
        value_name = "NAME",
        env = "PORTOLAN_WEBHOOK_MUTATING_CONFIGURATION"
    )]
    pub webhook_mutating_configuration: Option<String>,
    /// The Secret (in the pod namespace) holding the self-managed CA and serving certificate.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "portolan-webhook-tls",
        env = "PORTOLAN_WEBHOOK_SECRET"
    )]
    pub webhook_secret: String,
    /// How often the self-managed Secret and caBundle are checked again.
    #[arg(long, default_value = "1m", value_parser = parse_duration, env = "PORTOLAN_WEBHOOK_RESYNC")]
    pub webhook_resync: Duration,
}

/// The sidecar injector (docs/mesh.md, "Injection"): `POST /inject` on the webhook server.
#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Serve the sidecar injector (a mutating webhook, `POST /inject`) on the webhook address;
    /// needs a webhook certificate mode.
    #[arg(long, env = "PORTOLAN_INJECT")]
    pub inject: bool,
    /// The Envoy image of injected sidecars.
    #[arg(
        long,
        default_value = "envoyproxy/envoy:v1.40.0",
        env = "PORTOLAN_INJECT_PROXY_IMAGE"
    )]
    pub inject_proxy_image: String,
    /// The image of the `portolan-init` container: `portolan` and the iptables binaries on
    /// PATH.
    #[arg(
        long,
        default_value = "portolan-init:0.1.0",
        env = "PORTOLAN_INJECT_INIT_IMAGE"
    )]
    pub inject_init_image: String,
    /// Portolan's xDS address as sidecars reach it (`bootstrap --xds-address`); default:
    /// `portolan.POD_NAMESPACE.svc:18000`.
    #[arg(long, value_name = "HOST:PORT", env = "PORTOLAN_INJECT_XDS_ADDRESS")]
    pub inject_xds_address: Option<String>,
    /// The UID and GID the sidecar runs as (`capture --proxy-uid`).
    #[arg(long, default_value_t = 1337, env = "PORTOLAN_INJECT_PROXY_UID")]
    pub inject_proxy_uid: u32,
    /// The sidecar's admin port (on 127.0.0.1).
    #[arg(long, default_value_t = 15000, env = "PORTOLAN_INJECT_ADMIN_PORT")]
    pub inject_admin_port: u16,
    /// The sidecar's resources, comma-separated `requests.cpu=50m,limits.memory=256Mi`.
    #[arg(
        long,
        default_value = "requests.cpu=50m,requests.memory=64Mi,limits.memory=256Mi",
        value_parser = parse_resources,
        env = "PORTOLAN_INJECT_PROXY_RESOURCES"
    )]
    pub inject_proxy_resources: serde_json::Value,
    /// The init container's resources, as --inject-proxy-resources.
    #[arg(
        long,
        default_value = "requests.cpu=10m,requests.memory=16Mi,limits.memory=64Mi",
        value_parser = parse_resources,
        env = "PORTOLAN_INJECT_INIT_RESOURCES"
    )]
    pub inject_init_resources: serde_json::Value,
    /// Envoy's `--drain-time-s` in sidecars.
    #[arg(long, default_value_t = 5, env = "PORTOLAN_INJECT_DRAIN_SECONDS")]
    pub inject_drain_seconds: u32,
    /// Envoy's `--log-level` in sidecars.
    #[arg(long, default_value = "info", env = "PORTOLAN_INJECT_LOG_LEVEL")]
    pub inject_log_level: String,
    /// Token identity for injected sidecars: TLS to Portolan trusting this PEM CA (read at
    /// startup, handed to each pod in an annotation), and the pod's projected service account
    /// token (audience --xds-token-audience) as its credential; for `--xds-token-review`.
    /// Without it sidecars speak plaintext xDS with no credential.
    #[arg(long, value_name = "FILE", env = "PORTOLAN_INJECT_XDS_CA")]
    pub inject_xds_ca: Option<PathBuf>,
    /// Refuse a pod Portolan cannot inject (host network, a container running as the proxy's
    /// UID, a port the sidecar needs, a bad annotation) instead of admitting it unchanged with
    /// a warning.
    #[arg(long, env = "PORTOLAN_INJECT_REFUSE_UNINJECTABLE")]
    pub inject_refuse_uninjectable: bool,
    /// Rewrite the application containers' HTTP, TCP and gRPC probes to the sidecar's probe
    /// port, so that they pass under STRICT mutual TLS (a pod opts out with the annotation
    /// `portolan.dev/rewrite-probes: "false"`); `--inject-rewrite-probes=false` turns it off.
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL",
        env = "PORTOLAN_INJECT_REWRITE_PROBES"
    )]
    pub inject_rewrite_probes: bool,
    /// The sidecar's probe port (`bootstrap --probe-port`; capture leaves it alone).
    #[arg(long, default_value_t = 15021, env = "PORTOLAN_INJECT_PROBE_PORT")]
    pub inject_probe_port: u16,
}

/// Parses `requests.cpu=50m,limits.memory=256Mi` into a Kubernetes ResourceRequirements.
pub fn parse_resources(s: &str) -> Result<serde_json::Value, String> {
    let mut resources = serde_json::Map::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, quantity) = item.split_once('=').ok_or_else(|| {
            format!("{item:?}: expected requests.NAME=QUANTITY or limits.NAME=QUANTITY")
        })?;
        let (kind, name) = match key.split_once('.') {
            Some((kind @ ("requests" | "limits"), name)) if !name.is_empty() => (kind, name),
            _ => return Err(format!("{key:?}: expected requests.NAME or limits.NAME")),
        };
        let number = quantity.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        if number.is_empty() || number.parse::<f64>().is_err() {
            return Err(format!(
                "{item:?}: {quantity:?} is not a quantity (50m, 64Mi, 1)"
            ));
        }
        let entry = resources
            .entry(kind.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(map) = entry.as_object_mut() {
            map.insert(
                name.to_string(),
                serde_json::Value::String(quantity.to_string()),
            );
        }
    }
    Ok(serde_json::Value::Object(resources))
}

/// TLS, client authorization and limits of the xDS port (docs/security.md).
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// PEM certificate chain for xDS over TLS (with --xds-tls-key); reloaded when it changes.
    #[arg(
        long,
        value_name = "FILE",
        requires = "xds_tls_key",
        env = "PORTOLAN_XDS_TLS_CERT"
    )]
    pub xds_tls_cert: Option<PathBuf>,
    /// PEM private key of --xds-tls-cert; reloaded when it changes.
    #[arg(
        long,
        value_name = "FILE",
        requires = "xds_tls_cert",
        env = "PORTOLAN_XDS_TLS_KEY"
    )]
    pub xds_tls_key: Option<PathBuf>,
    /// PEM CA bundle client certificates must chain to: mutual TLS, client certificates required.
    #[arg(
        long,
        value_name = "FILE",
        requires = "xds_tls_cert",
        env = "PORTOLAN_XDS_CLIENT_CA"
    )]
    pub xds_client_ca: Option<PathBuf>,
    /// With mutual TLS, `cluster-in-san` lets a client ask only for a node.cluster named by its
    /// certificate (a DNS SAN, or the last path segment of a URI SAN); `off` allows any group.
    #[arg(long, value_enum, default_value_t = AuthzArg::ClusterInSan, env = "PORTOLAN_XDS_AUTHZ")]
    pub xds_authz: AuthzArg,
    /// How often the TLS files are checked for changes.
    #[arg(long, default_value = "2s", value_parser = parse_duration, env = "PORTOLAN_XDS_TLS_RELOAD")]
    pub xds_tls_reload: Duration,
    /// xDS streams open at once on the server; beyond it RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 10_000, env = "PORTOLAN_MAX_STREAMS")]
    pub max_streams: usize,
    /// HTTP/2 concurrent streams per xDS connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(
        long,
        default_value_t = 128,
        env = "PORTOLAN_MAX_STREAMS_PER_CONNECTION"
    )]
    pub max_streams_per_connection: u32,
    /// Largest xDS request message, bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, env = "PORTOLAN_MAX_REQUEST_BYTES")]
    pub max_request_bytes: usize,
    /// Sustained xDS requests per second per stream; a stream over it is closed with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 50, env = "PORTOLAN_REQUEST_RATE")]
    pub request_rate: u32,
    /// xDS requests a stream may send in a burst above --request-rate.
    #[arg(long, default_value_t = 200, env = "PORTOLAN_REQUEST_BURST")]
    pub request_burst: u32,
    /// Proxy groups clients may create (each distinct node.cluster, zone and labels); beyond it
    /// new groups are refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 1000, env = "PORTOLAN_MAX_GROUPS")]
    pub max_groups: usize,
    /// A proxy group no stream has watched for this long is evicted.
    #[arg(long, default_value = "10m", value_parser = parse_duration, env = "PORTOLAN_GROUP_IDLE")]
    pub group_idle: Duration,
    /// On shutdown, streams close at random moments within this window so proxies reconnect
    /// to other replicas spread out, not all at once.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "PORTOLAN_DRAIN_SPREAD")]
    pub drain_spread: Duration,
    #[command(flatten)]
    pub tokens: TokenArgs,
}

/// Workload identity from service account tokens (docs/security.md, "Service account tokens").
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Identify proxies without a client certificate by their projected service account token
    /// (`authorization: Bearer`, see `bootstrap --xds-token-file`), verified with the Kubernetes
    /// TokenReview API (in-cluster config, else KUBECONFIG); a stream without a valid token is
    /// refused. Needs --xds-tls-cert (Envoy sends tokens only over TLS).
    #[arg(long, requires = "xds_tls_cert", env = "PORTOLAN_XDS_TOKEN_REVIEW")]
    pub xds_token_review: bool,
    /// The audience tokens must be bound to.
    #[arg(long, default_value = "portolan", env = "PORTOLAN_XDS_TOKEN_AUDIENCE")]
    pub xds_token_audience: String,
    /// How long a TokenReview answer is reused (never past the token's expiry).
    #[arg(long, default_value = "30s", value_parser = parse_duration, env = "PORTOLAN_XDS_TOKEN_CACHE")]
    pub xds_token_cache: Duration,
    /// How often the token of an open xDS stream is verified again: a stream whose token is
    /// revoked (its pod deleted, for example) ends within this plus --xds-token-cache, not
    /// only at the token's expiry (0: only when the stream opens).
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "PORTOLAN_XDS_TOKEN_RECHECK")]
    pub xds_token_recheck: Duration,
    /// Most TokenReview answers kept at once.
    #[arg(long, default_value_t = 10_000, env = "PORTOLAN_XDS_TOKEN_CACHE_SIZE")]
    pub xds_token_cache_size: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthzArg {
    ClusterInSan,
    Off,
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// Envoy node id (unique per proxy).
    #[arg(long)]
    pub node_id: String,
    /// Envoy node cluster: the proxy group whose configuration this proxy gets.
    #[arg(long, required_unless_present = "gateway", default_value = "")]
    pub cluster: String,
    /// A proxy of this Gateway API Gateway (NAMESPACE/NAME): its node cluster becomes
    /// `gateway:NAMESPACE/NAME` (whatever --cluster says) and it gets that Gateway's listeners.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub gateway: Option<String>,
    /// Envoy node locality zone (locality-aware balancing prefers endpoints in it).
    #[arg(long)]
    pub zone: Option<String>,
    /// A label in the node metadata (`node.metadata.labels`), KEY=VALUE; repeatable. Gateways
    /// select proxies by these.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// What the proxy may reach (`node.metadata["portolan.dev/scope"]`): comma-separated
    /// `namespace/host` entries, e.g. `./*,shared/*,*/api.payments.svc.cluster.local`; the
    /// proxy gets only those Services and hosts (see docs/scoping.md).
    #[arg(long, value_name = "HOSTS")]
    pub scope: Option<String>,
    /// The proxy's namespace (`node.metadata["portolan.dev/namespace"]`; default: its mesh
    /// identity's): what `.` means in --scope, and whose ProxyScopes apply to it.
    #[arg(long, value_name = "NS")]
    pub scope_namespace: Option<String>,
    /// Portolan's xDS address, HOST:PORT, or unix:PATH for a Unix socket.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds_address: String,
    /// Envoy admin address, HOST:PORT (port 0 lets Envoy choose).
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin_address: String,
    /// Use the incremental (Delta) xDS protocol instead of State of the World.
    #[arg(long)]
    pub delta: bool,
    /// On-demand discovery: the proxy learns virtual hosts (VHDS) and clusters (on-demand CDS)
    /// on first use (`node.metadata["portolan.dev/discovery"]: on-demand`); implies --delta.
    #[arg(long)]
    pub on_demand: bool,
    /// Connect to Portolan over TLS, trusting this PEM CA bundle (Envoy reads the file itself,
    /// and re-reads it when it changes).
    #[arg(long, value_name = "FILE")]
    pub xds_ca: Option<PathBuf>,
    /// PEM client certificate Envoy presents to Portolan (mutual TLS).
    #[arg(long, value_name = "FILE", requires_all = ["xds_ca", "xds_client_key"])]
    pub xds_client_cert: Option<PathBuf>,
    /// PEM private key of --xds-client-cert.
    #[arg(long, value_name = "FILE", requires = "xds_client_cert")]
    pub xds_client_key: Option<PathBuf>,
    /// Prove the proxy's identity with this service account token file (a projected token
    /// with audience `portolan`, rotated by the kubelet): Envoy's Google gRPC client reads it
    /// at every (re)connection, exchanges it at --xds-token-exchange, and sends it as a bearer
    /// token over TLS (needs --xds-ca). With --grpc, the proxyless client's JWT call
    /// credentials send the file's token directly (run it with
    /// GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS=true).
    #[arg(
        long,
        value_name = "FILE",
        requires = "xds_ca",
        conflicts_with = "xds_client_cert"
    )]
    pub xds_token_file: Option<PathBuf>,
    /// The token exchange endpoint Envoy posts the token to (Portolan's HTTP port,
    /// `/sts/v1/token`); default: `http://HOST:18080/sts/v1/token` with the host of
    /// --xds-address.
    #[arg(long, value_name = "URL", requires = "xds_token_file")]
    pub xds_token_exchange: Option<String>,
    /// Server name Envoy sends (SNI) and expects in Portolan's certificate; default: the host
    /// of --xds-address.
    #[arg(long, value_name = "NAME", requires = "xds_ca")]
    pub xds_sni: Option<String>,
    /// Mesh workload: the application's port on 127.0.0.1 behind the inbound listener
    /// (`node.metadata.appPort`); the listener also serves every other port the Services of
    /// the workload's service account target, each on its own.
    #[arg(long)]
    pub app_port: Option<u16>,
    /// Mesh workload: the inbound listener's port (`node.metadata.inboundPort`).
    #[arg(long)]
    pub inbound_port: Option<u16>,
    /// Mesh workload: the outbound listener's port when not `serve --mesh-port`
    /// (`node.metadata.outboundPort`; several sidecars on one host).
    #[arg(long)]
    pub outbound_port: Option<u16>,
    /// Mesh workload: `tcp` for a TCP application port (`node.metadata.appProtocol`; default:
    /// as the Service port targeting it says, else HTTP).
    #[arg(long)]
    pub app_protocol: Option<String>,
    /// Mesh workload: a kubelet probe the sidecar answers on --probe-port at
    /// `/app-health/NAME` (NAME is `CONTAINER/KIND`), checking the application at URL:
    /// `http://127.0.0.1:PORT/PATH` (forwarded, the application's status is the answer),
    /// `tcp://127.0.0.1:PORT` (a TCP connect) or `grpc://127.0.0.1:PORT[/SERVICE]` (the gRPC
    /// health service); repeatable. The injector writes these for rewritten probes.
    #[arg(long = "app-probe", value_name = "NAME=URL", value_parser = crate::bootstrap::probes::parse_app_probe)]
    pub app_probes: Vec<crate::bootstrap::probes::AppProbe>,
    /// A header the sidecar sets on the HTTP probe NAME's requests (`Host` rewrites the
    /// authority; `%XX` in VALUE is decoded, so `%20` is a space); repeatable.
    #[arg(long = "app-probe-header", value_name = "NAME=HEADER:VALUE", value_parser = crate::bootstrap::probes::parse_probe_header)]
    pub app_probe_headers: Vec<crate::bootstrap::probes::ProbeHeader>,
    /// The port of the sidecar's static probe listener (on 0.0.0.0), with --app-probe; `portolan
    /// capture --exclude-inbound-ports` must name it.
    #[arg(long, default_value_t = 15021)]
    pub probe_port: u16,
    /// Mesh workload: what its sidecar does with captured connections to unknown destinations,
    /// over `serve --outbound-traffic-policy`
    /// (`node.metadata["portolan.dev/outbound-traffic-policy"]`).
    #[arg(long, value_enum)]
    pub outbound_traffic_policy: Option<OutboundPolicyArg>,
    /// Claimed namespace (`node.metadata.namespace`), read only by `serve --identity
    /// insecure-node-metadata`.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Claimed service account (`node.metadata.serviceAccount`), read only by `serve
    /// --identity insecure-node-metadata`.
    #[arg(long)]
    pub service_account: Option<String>,
    /// Print a gRPC xDS bootstrap (for `GRPC_XDS_BOOTSTRAP`, always JSON) for proxyless gRPC
    /// clients instead of an Envoy bootstrap.
    #[arg(long)]
    pub grpc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Directory of manifests, as for `serve`.
    #[arg(long)]
    pub config_dir: PathBuf,
    /// The proxy group to render for: an Envoy node cluster, or a whole group key
    /// (`web;l.app=web;node-ns=shop`: labels and namespace pick the ProxyScope that applies).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    #[command(flatten)]
    pub translate: TranslateArgs,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Directory of manifests, as for `serve`.
    #[arg(long)]
    pub config_dir: PathBuf,
    /// Files or directories holding RouteTest documents; default: those in --config-dir.
    pub tests: Vec<PathBuf>,
    /// The Envoy binary; default: `envoy` on PATH. Without one the route tables are evaluated
    /// without Envoy (the report says so).
    #[arg(long, env = "ENVOY_BIN")]
    pub envoy: Option<PathBuf>,
    /// Evaluate the route tables without Envoy even when one is available.
    #[arg(long)]
    pub no_envoy: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
    #[command(flatten)]
    pub translate: TranslateArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Directory of manifests, as for `serve`.
    #[arg(long)]
    pub config_dir: PathBuf,
    /// The proxy group, as `render --cluster`.
    #[arg(long, default_value = "default")]
    pub group: String,
    /// The request: `METHOD URL`, e.g. `GET http://reviews:9080/api?x=1` (the URL's host and
    /// port are the Host header; the method defaults to GET).
    #[arg(long)]
    pub request: String,
    /// A request header, `NAME:VALUE`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// The listener port the request arrives on; default: the mesh outbound port, or the
    /// group's only HTTP listener.
    #[arg(long)]
    pub port: Option<u16>,
    /// The caller's mesh identity, `NAMESPACE/SERVICE_ACCOUNT` or a SPIFFE ID (for
    /// AccessPolicy on a workload's inbound listener).
    #[arg(long, value_name = "NS/SA|SPIFFE_ID")]
    pub source: Option<String>,
    #[command(flatten)]
    pub translate: TranslateArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories of manifests.
    #[arg(required_unless_present = "delete")]
    pub paths: Vec<PathBuf>,
    /// A running `portolan serve`'s HTTP address (http://HOST:PORT): send the files to its
    /// `POST /debug/blast-radius` and print their blast radius against its current config.
    #[arg(long, value_name = "URL")]
    pub against: Option<String>,
    /// With `--against`: manifests (files or directories) of objects the change deletes, e.g.
    /// the old versions of files a commit removes; the blast radius includes their removal.
    #[arg(long, value_name = "PATH", requires = "against", num_args = 1..)]
    pub delete: Vec<PathBuf>,
    /// With `--against`: exit 2 when the change removes a cluster, route configuration or
    /// virtual host.
    #[arg(long, requires = "against")]
    pub fail_on_removal: bool,
    /// Report format (`--against` only).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write one file per CRD (`trafficroutes.portolan.dev.yaml`, ...) into this directory
    /// instead of printing them.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Where `proxy-status` and `config-dump` find a running `portolan serve`.
#[derive(Debug, Args)]
pub struct AdminServerArgs {
    /// Portolan's xDS gRPC address, HOST:PORT (the admin API is served there).
    #[arg(long, default_value = "127.0.0.1:18000", env = "PORTOLAN_SERVER")]
    pub server: String,
    /// Connect over TLS, verifying Portolan's certificate against this PEM CA bundle (as
    /// `bootstrap --xds-ca`).
    #[arg(long, value_name = "FILE", env = "PORTOLAN_XDS_CA")]
    pub xds_ca: Option<PathBuf>,
    /// PEM client certificate to present (mutual TLS, `serve --xds-client-ca`).
    #[arg(long, value_name = "FILE", requires_all = ["xds_ca", "xds_client_key"], env = "PORTOLAN_XDS_CLIENT_CERT")]
    pub xds_client_cert: Option<PathBuf>,
    /// PEM private key of --xds-client-cert.
    #[arg(
        long,
        value_name = "FILE",
        requires = "xds_client_cert",
        env = "PORTOLAN_XDS_CLIENT_KEY"
    )]
    pub xds_client_key: Option<PathBuf>,
    /// The name Portolan's certificate must be valid for (sent as SNI unless an IP address);
    /// default: the host of --server.
    #[arg(
        long,
        value_name = "NAME",
        requires = "xds_ca",
        env = "PORTOLAN_XDS_SNI"
    )]
    pub xds_sni: Option<String>,
}

// === impl AdminServerArgs ===

impl AdminServerArgs {
    /// The client's TLS settings, when --xds-ca is given.
    pub fn tls(&self) -> Option<portolan_admin::tls::ClientTls> {
        let ca = self.xds_ca.clone()?;
        Some(portolan_admin::tls::ClientTls {
            ca,
            client: self
                .xds_client_cert
                .clone()
                .zip(self.xds_client_key.clone()),
            sni: self.xds_sni.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct ProxyStatusArgs {
    #[command(flatten)]
    pub admin: AdminServerArgs,
}

#[derive(Debug, Args)]
pub struct ConfigDumpArgs {
    /// Envoy node id of a connected proxy.
    #[arg(long)]
    pub node: String,
    #[command(flatten)]
    pub admin: AdminServerArgs,
}

/// Parses `KEY=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Parses `250ms`, `2s`, `1m`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 100ms, 2s, 1m or 24h"))?;
    match unit {
        "" | "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("app=web"), Ok(("app".into(), "web".into())));
        assert_eq!(parse_label("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_label("=x").is_err());
        assert!(parse_label("novalue").is_err());
    }

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = ["portolan", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(s) => Ok(s),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn serve_needs_exactly_one_source() {
        let none = serve(&[]).expect_err("no source");
        assert_eq!(none.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(none.to_string().contains("--config-dir"), "{none}");
        assert!(none.to_string().contains("--kubernetes"), "{none}");
        let both = serve(&["--config-dir", "x", "--kubernetes"]).expect_err("two sources");
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(serve(&["--config-dir", "x"]).is_ok());
        let k = serve(&["--kubernetes"]).expect("kubernetes alone");
        assert!(k.kubernetes.kubernetes && k.config_dir.is_none());
    }

    #[test]
    fn kubernetes_flags_follow_the_contract() {
        let k = serve(&["--kubernetes"]).expect("parses").kubernetes;
        assert!(k.leader_election, "on by default");
        assert_eq!(k.lease_name, "portolan-leader");
        assert!(k.watch_namespaces.is_empty(), "all namespaces");
        let k = serve(&[
            "--kubernetes",
            "--watch-namespace",
            "shop",
            "--watch-namespace",
            "web",
            "--leader-election=false",
            "--pod-name",
            "portolan-0",
            "--pod-namespace",
            "portolan",
            "--lease-name",
            "lead",
        ])
        .expect("parses")
        .kubernetes;
        assert_eq!(k.watch_namespaces, ["shop", "web"]);
        assert!(!k.leader_election);
        assert_eq!(k.pod_name.as_deref(), Some("portolan-0"));
        assert_eq!(k.pod_namespace.as_deref(), Some("portolan"));
        assert_eq!(k.lease_name, "lead");
        assert!(serve(&["--config-dir", "x", "--watch-namespace", "a"]).is_err());
    }

    #[test]
    fn gateway_provisioning_flags() {
        let k = serve(&["--kubernetes"]).expect("parses").kubernetes;
        assert!(k.provision_gateways, "on by default");
        assert_eq!(k.gateway_service_type, "LoadBalancer");
        assert_eq!(k.gateway_replicas, 1);
        let k = serve(&[
            "--kubernetes",
            "--provision-gateways=false",
            "--gateway-service-type",
            "ClusterIP",
            "--gateway-envoy-image",
            "registry.example/envoy:1",
            "--gateway-xds-address",
            "portolan.system.svc:18000",
        ])
        .expect("parses")
        .kubernetes;
        assert!(!k.provision_gateways);
        assert_eq!(k.gateway_service_type, "ClusterIP");
        assert_eq!(k.gateway_envoy_image, "registry.example/envoy:1");
        assert!(serve(&["--kubernetes", "--gateway-service-type", "Magic"]).is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
