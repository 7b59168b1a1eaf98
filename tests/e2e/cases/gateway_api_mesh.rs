//! GAMMA conformance (MESH-HTTP and MESH-GRPC of Gateway API v1.6.1), reproduced in file mode
//! in the style of the Gateway runner ([`super::gateway_api`]): the scenarios of upstream's
//! `conformance/tests/mesh` with our own manifests (`tests/e2e/gateway-api/mesh/*.yaml`), run
//! through captured pods in network namespaces, as `capture::` makes them
//! ([`portolan_e2e::netns`]; root and iptables needed, skipped with a message otherwise).
//!
//! The pods: upstream's mesh client is pod `client` (a workload of namespace
//! `gateway-conformance-mesh`, the producer namespace) and pod `consumer` (of
//! `gateway-conformance-mesh-consumer`), each with a sidecar Envoy bootstrapped by `portolan
//! bootstrap` (`serve --identity insecure-node-metadata`: the bootstrap claims the namespace)
//! and capture rules from `portolan capture`. Their applications are unchanged clients
//! (`pod.py http-client`, `gateway_echo.py client`) that call the Services by name (`echo`,
//! `echo-v1:8080`, `echo-v1.gateway-conformance-mesh`, `grpc-echo.gateway-conformance-mesh:7070`),
//! resolved to the Services' ClusterIPs by the pod's `/etc/hosts`: every connection is
//! redirected to the sidecar by netfilter and routed there. The backends are pods `echo-v1` and
//! `echo-v2`, each an HTTP application answering with its name (`x-upstream`, and the request
//! headers on `/headers`) behind its own captured sidecar (mutual TLS from the clients'
//! sidecars), and a gRPC echo server (`gateway_echo.py serve-on`) on port 7070, captured too:
//! the sidecar's inbound listener serves each port the Services of the pod's service account
//! target, 7070 over HTTP/2 (`appProtocol: grpc`) behind the same mutual TLS.
//!
//! Status conditions are read from `GET /debug/status`. Every scenario runs even when one
//! before it failed; the board prints the MESH profiles' counts and the run fails if any
//! scenario did. One set of pods (four sidecars) serves the whole run and is deleted when it
//! ends, also on failure or time-out.

use crate::bin;
use crate::gateway_api::board::Board;
use futures::FutureExt;
use portolan_e2e::http::Reply;
use portolan_e2e::netns::{self, HttpClient, Node, Pod, Relay, Session};
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::{Portolan, eventually, grpc_python, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

/// The producer namespace: the Services and their routes.
const NS: &str = "gateway-conformance-mesh";
/// The consumer namespace of MeshConsumerRoute.
const CONSUMER_NS: &str = "gateway-conformance-mesh-consumer";
const DEADLINE: Duration = Duration::from_secs(20);
/// How many more times a routed request must reach its backend once it did (a request that
/// the default routing of `echo` sent to either version passes 10 times in 2^10).
const STABLE: usize = 10;
/// The Services of `base.yaml` and their ClusterIPs.
const SERVICES: [(&str, &str); 6] = [
    ("echo", "10.96.0.10"),
    ("echo-v1", "10.96.0.11"),
    ("echo-v2", "10.96.0.12"),
    ("grpc-echo", "10.96.0.20"),
    ("grpc-echo-v1", "10.96.0.21"),
    ("grpc-echo-v2", "10.96.0.22"),
];
/// The pod addresses of the backends, by version.
const BACKENDS: [(&str, &str); 2] = [("v1", "10.244.0.11"), ("v2", "10.244.0.12")];
/// The HTTP application's port in the backend pods (the Services' `targetPort`).
const HTTP_PORT: u16 = 8080;
/// The gRPC server's port in the backend pods.
const GRPC_PORT: u16 = 7070;

/// One Portolan, the backend pods, and a client pod per namespace (fields drop in order:
/// clients, pods, then Portolan and the node).
struct Gamma {
    /// The unchanged HTTP client of the producer namespace's pod (upstream's
    /// `echo.MeshAppEchoV1`).
    producer: HttpClient,
    /// The unchanged HTTP client of the consumer namespace's pod.
    consumer: HttpClient,
    /// The gRPC client in the producer namespace's pod.
    grpc: Session,
    client_pod: Pod,
    consumer_pod: Pod,
    backends: Vec<Pod>,
    _relay: Relay,
    portolan: Portolan,
    config: ConfigDir,
    _node: Node,
}

// === impl Gamma ===

impl Gamma {
    async fn start() -> anyhow::Result<Self> {
        let config = ConfigDir::new()?;
        config.write("base.yaml", &manifest("base.yaml")?)?;
        config.write("endpoints.yaml", &endpoint_slices())?;
        let args = netns::SERVE_ARGS;
        let portolan = Portolan::start_with(bin(), &config, Ports::free(), &args).await?;
        let node = Node::new()?;
        let relay = Relay::start(node.dir().join("xds.sock"), portolan.ports().xds)?;

        let mut backends = Vec::new();
        for (version, ip) in BACKENDS {
            let mut pod = node.pod(&format!("echo-{version}"), ip)?;
            pod.http_app(&format!("echo-{version}"), HTTP_PORT)?;
            let mut grpc = pod.netns().command(&grpc_python().display().to_string());
            grpc.arg(grpc_script())
                .arg("serve-on")
                .arg(format!("0.0.0.0:{GRPC_PORT}"))
                .arg(format!("grpc-echo-{version}"));
            pod.spawn("grpc-echo", grpc)?;
            captured(&pod, &[]).await?;
            backends.push(pod);
        }
        let mut client_pod = node.pod("client", "10.244.0.10")?;
        client_pod.hosts(&hosts(true))?;
        captured(&client_pod, &[]).await?;
        let mut consumer_pod = node.pod("consumer", "10.244.0.13")?;
        consumer_pod.hosts(&hosts(false))?;
        captured(&consumer_pod, &[]).await?;

        // The four sidecars start side by side.
        let xds = relay.path();
        let app_port = HTTP_PORT.to_string();
        let server_args = |version: &str| {
            [
                "--namespace",
                NS,
                "--service-account",
                "echo",
                "--app-port",
                &app_port,
                "--label",
                "app=echo",
                "--label",
                version,
            ]
            .map(str::to_string)
        };
        let (v1_args, v2_args) = (server_args("version=v1"), server_args("version=v2"));
        let client_args = |ns: &'static str| ["--namespace", ns, "--service-account", "client"];
        let (producer_args, consumer_args) = (client_args(NS), client_args(CONSUMER_NS));
        let [v1, v2] = &mut backends[..] else {
            anyhow::bail!("two backend pods");
        };
        let v1_args: Vec<&str> = v1_args.iter().map(String::as_str).collect();
        let v2_args: Vec<&str> = v2_args.iter().map(String::as_str).collect();
        futures::try_join!(
            v1.sidecar(bin(), xds, &v1_args),
            v2.sidecar(bin(), xds, &v2_args),
            client_pod.sidecar(bin(), xds, &producer_args),
            consumer_pod.sidecar(bin(), xds, &consumer_args),
        )?;

        let producer = client_pod.http_client()?;
        let consumer = consumer_pod.http_client()?;
        let mut cmd = client_pod
            .netns()
            .command(&grpc_python().display().to_string());
        // The resolver that reads the pod's /etc/hosts (c-ares, when built in, may not).
        cmd.env("GRPC_DNS_RESOLVER", "native");
        cmd.arg(grpc_script())
            .arg("client")
            .arg(format!("grpc-echo.{NS}:{GRPC_PORT}"));
        let grpc = client_pod.interactive("grpc-client", cmd)?;
        Ok(Self {
            producer,
            consumer,
            grpc,
            client_pod,
            consumer_pod,
            backends,
            _relay: relay,
            portolan,
            config,
            _node: node,
        })
    }

    /// The pods' process logs, for a failure.
    fn diagnostics(&self) -> String {
        [&self.client_pod, &self.consumer_pod]
            .into_iter()
            .chain(&self.backends)
            .map(Pod::diagnostics)
            .collect()
    }

    /// Writes a case's manifests and waits until the routes named reach the sidecars.
    async fn load(&self, file: &str, routes: &[(&str, &str)]) -> anyhow::Result<()> {
        self.config
            .write(&format!("mesh-{file}"), &manifest(file)?)?;
        for (ns, route) in routes {
            self.wait_envoy(&format!("\"{ns}/{route}/"), true).await?;
        }
        Ok(())
    }

    /// Removes a case's manifests and waits until its routes left the sidecars.
    async fn unload(&self, file: &str, routes: &[(&str, &str)]) -> anyhow::Result<()> {
        self.config.remove(&format!("mesh-{file}"))?;
        for (ns, route) in routes {
            self.wait_envoy(&format!("\"{ns}/{route}/"), false).await?;
        }
        Ok(())
    }

    /// Waits until `needle` is (or is not) in the config of the sidecar that routes with it:
    /// the consumer pod's for a consumer route, else the client pod's.
    async fn wait_envoy(&self, needle: &str, present: bool) -> anyhow::Result<()> {
        let pod = if needle.contains(CONSUMER_NS) {
            &self.consumer_pod
        } else {
            &self.client_pod
        };
        let res = eventually(
            &format!("{needle} present={present} in the sidecar"),
            DEADLINE,
            || async move {
                match pod.admin("/config_dump").await {
                    Ok(dump) if dump.contains(needle) == present => Ok(()),
                    Ok(_) => Err("not yet".to_string()),
                    Err(e) => Err(e),
                }
            },
        )
        .await;
        res.map_err(|e| anyhow::anyhow!("{e}\n{}", self.portolan.log_tail()))
    }

    /// `/debug/status` entry `key` once `ok` holds for it.
    async fn status_where(&self, key: &str, ok: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        eventually(&format!("status of {key}"), DEADLINE, || async {
            match self.portolan.get_json("/debug/status").await {
                Ok(all) => match all.get(key) {
                    Some(v) if ok(v) => Ok(v.clone()),
                    other => Err(format!("{other:?}")),
                },
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Sends `GET http://{host}{path}` (with `headers`) from `client`'s pod until `check`
    /// accepts the answer.
    async fn expect(
        &self,
        client: &HttpClient,
        (host, path): (&str, &str),
        headers: &[(&str, &str)],
        check: impl Fn(&Reply) -> Result<(), String>,
    ) -> anyhow::Result<Reply> {
        let url = format!("http://{host}{path}");
        let what = format!("GET {url} {headers:?}");
        eventually(&what, DEADLINE, || async {
            match client.get(&url, headers).await {
                Ok(reply) => match check(&reply) {
                    Ok(()) => Ok(reply),
                    Err(e) => Err(format!(
                        "{e}: {} {:?} {:?}",
                        reply.status, reply.headers, reply.body
                    )),
                },
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// [`Self::expect`], then `check` must hold for [`STABLE`] more answers in a row (upstream's
    /// "eventually consistent" response).
    async fn expect_stable(
        &self,
        client: &HttpClient,
        (host, path): (&str, &str),
        check: impl Fn(&Reply) -> Result<(), String>,
    ) -> anyhow::Result<()> {
        self.expect(client, (host, path), &[], &check).await?;
        let url = format!("http://{host}{path}");
        for _ in 0..STABLE {
            let r = client.get(&url, &[]).await?;
            check(&r).map_err(|e| anyhow::anyhow!("{url}: {e}: {} {:?}", r.status, r.headers))?;
        }
        Ok(())
    }

    /// Expects the producer's client to reach backend `name` with `GET http://echo{path}`:
    /// once the configuration is there, every time (Service `echo` alone would reach either
    /// version at random).
    async fn expect_backend(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        name: &str,
    ) -> anyhow::Result<Reply> {
        let check = |r: &Reply| {
            if r.status == 200 && r.upstream() == Some(name) {
                Ok(())
            } else {
                Err(format!("want {name}"))
            }
        };
        let reply = self
            .expect(&self.producer, ("echo", path), headers, check)
            .await?;
        for _ in 0..STABLE {
            let again = self
                .producer
                .get(&format!("http://echo{path}"), headers)
                .await?;
            check(&again).map_err(|e| {
                anyhow::anyhow!("GET {path} {headers:?}: {e}, got {:?}", again.upstream())
            })?;
        }
        Ok(reply)
    }

    /// `n` gRPC calls of `Echo` from the producer's pod with `:authority` `authority`,
    /// counted by answer (a server name, or `error:CODE`).
    async fn grpc_calls(
        &self,
        authority: &str,
        n: usize,
    ) -> anyhow::Result<BTreeMap<String, usize>> {
        let line = self
            .grpc
            .exchange(&format!("call Echo {authority} {n}"))
            .await?;
        let answers: Value = serde_json::from_str(&line)?;
        Ok(serde_json::from_value(answers["counts"].clone())?)
    }

    /// A counter of every backend's sidecar, summed.
    async fn backends_counter(&self, name: &str) -> anyhow::Result<u64> {
        let mut sum = 0;
        for pod in &self.backends {
            sum += pod.counter(name).await?;
        }
        Ok(sum)
    }
}

/// Programs a pod's capture rules (as an injected pod's init container would).
async fn captured(pod: &Pod, args: &[&str]) -> anyhow::Result<()> {
    pod.capture(bin(), args)
        .await
        .map_err(|e| anyhow::anyhow!("portolan capture in {}: {e}", pod.role))?;
    Ok(())
}

/// A client pod's `/etc/hosts`: every Service's namespaced and full names, and (in the producer
/// namespace, `same_namespace`) its short name, as the cluster's DNS with the pod's search
/// path would resolve them.
fn hosts(same_namespace: bool) -> Vec<String> {
    SERVICES
        .iter()
        .map(|(name, ip)| {
            let short = if same_namespace { *name } else { "" };
            format!("{ip} {short} {name}.{NS} {name}.{NS}.svc.cluster.local")
        })
        .collect()
}

/// The EndpointSlices of the Services: `echo` and `grpc-echo` on both backend pods, the
/// others on one each; HTTP ports (`http`, and `http-alt` of `echo-v1` and `echo-v2`) on the
/// application's port 8080, gRPC on 7070.
fn endpoint_slices() -> String {
    let slice = |service: &str, ips: &[&str], ports: &[(&str, u16)]| {
        let addresses: Vec<String> = ips.iter().map(|ip| format!("\"{ip}\"")).collect();
        let ports: String = ports
            .iter()
            .map(|(name, port)| format!("- name: {name}\n  port: {port}\n"))
            .collect();
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}\n  namespace: {NS}\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:\n- addresses: [{}]\n  conditions: {{ready: true}}\nports:\n{ports}",
            addresses.join(", ")
        )
    };
    let both: Vec<&str> = BACKENDS.iter().map(|(_, ip)| *ip).collect();
    let mut slices = vec![
        slice("echo", &both, &[("http", HTTP_PORT)]),
        slice("grpc-echo", &both, &[("grpc", GRPC_PORT)]),
    ];
    for (version, ip) in BACKENDS {
        let http = [("http", HTTP_PORT), ("http-alt", HTTP_PORT)];
        slices.push(slice(&format!("echo-{version}"), &[ip], &http));
        let grpc = [("grpc", GRPC_PORT)];
        slices.push(slice(&format!("grpc-echo-{version}"), &[ip], &grpc));
    }
    slices.join("---\n")
}

/// A manifest of tests/e2e/gateway-api/mesh.
fn manifest(name: &str) -> anyhow::Result<String> {
    let path = workspace_root()
        .join("tests/e2e/gateway-api/mesh")
        .join(name);
    std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn grpc_script() -> PathBuf {
    workspace_root().join("tests/e2e/grpc/gateway_echo.py")
}

/// The condition `type_` of a conditions array.
fn condition<'v>(conditions: &'v Value, type_: &str) -> Option<&'v Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == type_)
}

/// Waits until route `kind ns/name` has a `parents[]` entry for Service `service` whose
/// condition `type_` is `status` with `reason`, and checks the entry's shape.
async fn parent_condition(
    g: &Gamma,
    (kind, ns, name): (&str, &str, &str),
    service: &str,
    (type_, status, reason): (&str, &str, &str),
) -> anyhow::Result<()> {
    let entry = |s: &Value| -> Option<Value> {
        s["parents"]
            .as_array()?
            .iter()
            .find(|p| p["parentRef"]["name"] == service && p["parentRef"]["kind"] == "Service")
            .cloned()
    };
    let holds = |p: &Value| {
        condition(&p["conditions"], type_)
            .is_some_and(|c| c["status"] == status && c["reason"] == reason)
    };
    let s = g
        .status_where(&format!("{kind} {ns}/{name}"), |s| {
            entry(s).is_some_and(|p| holds(&p))
        })
        .await?;
    let p = entry(&s).ok_or_else(|| anyhow::anyhow!("no parent {service} in {s}"))?;
    anyhow::ensure!(
        p["controllerName"] == "portolan.dev/gateway-controller" && p["parentRef"]["group"] == "",
        "parent entry {p}"
    );
    Ok(())
}

/// A route attached to Service `service` with its refs resolved.
async fn route_accepted(g: &Gamma, kind: &str, route: &str, service: &str) -> anyhow::Result<()> {
    let at = (kind, NS, route);
    parent_condition(g, at, service, ("Accepted", "True", "Accepted")).await?;
    parent_condition(g, at, service, ("ResolvedRefs", "True", "ResolvedRefs")).await
}

/// Runs one scenario, catching its failure, so that the run goes on and the board counts it
/// for every upstream test the scenario reproduces.
macro_rules! scenario {
    ($board:expr, $g:expr, $tests:expr, $f:ident) => {{
        let outcome = AssertUnwindSafe($f(&$g)).catch_unwind().await;
        $board.record(stringify!($f), $tests, outcome);
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gamma_mesh_conformance() -> anyhow::Result<()> {
    if let Some(why) = netns::unsupported() {
        eprintln!("skipping gateway_api_mesh::gamma_mesh_conformance: {why}");
        return Ok(());
    }
    let _shared = portolan_e2e::serial::shared().await;
    // Dropping the pods (on time-out too) kills every process and deletes every namespace.
    tokio::time::timeout(Duration::from_secs(300), run())
        .await
        .map_err(|_| anyhow::anyhow!("the GAMMA run took over 300 s"))?
}

async fn run() -> anyhow::Result<()> {
    let g = Gamma::start().await?;
    let mut b = Board::mesh();
    scenario!(b, g, &["MeshBasic"], mesh_basic);
    scenario!(
        b,
        g,
        &["Portolan: the runner's calls pass both sidecars (captured, mutual TLS)"],
        captured_path
    );
    scenario!(b, g, &["MeshTrafficSplit"], traffic_split);
    scenario!(
        b,
        g,
        &["MeshHTTPRouteSimpleSameNamespace"],
        simple_same_namespace
    );
    scenario!(b, g, &["MeshHTTPRouteMatching"], matching);
    scenario!(b, g, &["MeshHTTPRouteWeight"], weight);
    scenario!(
        b,
        g,
        &["MeshHTTPRouteRedirectHostAndStatus"],
        redirect_host_and_status
    );
    scenario!(
        b,
        g,
        &["MeshHTTPRouteRequestHeaderModifier"],
        request_header_modifier
    );
    scenario!(b, g, &["MeshGRPCRouteWeight"], grpc_weight);
    scenario!(b, g, &["MeshConsumerRoute"], consumer_route);
    scenario!(b, g, &["MeshPorts"], ports);
    scenario!(b, g, &["MeshFrontend"], frontend);
    scenario!(
        b,
        g,
        &["Portolan: GAMMA parent status (missing Service, port, backend)"],
        invalid_parents
    );
    let report = b.report();
    eprintln!("{report}");
    anyhow::ensure!(b.all_passed(), "{report}\n{}", g.diagnostics());
    Ok(())
}

/// MeshBasic: without routes, a mesh client reaches Service `echo` (either version).
async fn mesh_basic(g: &Gamma) -> anyhow::Result<()> {
    let r = g
        .expect(&g.producer, ("echo", "/"), &[], |r| match r.status {
            200 => Ok(()),
            s => Err(format!("status {s}")),
        })
        .await?;
    anyhow::ensure!(
        matches!(r.upstream(), Some("echo-v1" | "echo-v2")),
        "answered by {:?}",
        r.upstream()
    );
    Ok(())
}

/// The transport of the run: the calls of MeshBasic left the client pod's application for
/// a ClusterIP, were captured by its sidecar (`mesh-outbound`), and reached a backend through
/// its sidecar's inbound listener over mutual TLS. The gRPC calls of MeshGRPCRouteWeight take
/// the same way, in HTTP/2 to the gRPC server (checked there).
async fn captured_path(g: &Gamma) -> anyhow::Result<()> {
    let routed = g
        .client_pod
        .counter("http.mesh_outbound.downstream_rq_total")
        .await?;
    anyhow::ensure!(routed >= 1, "the client pod's sidecar routed no request");
    let handshakes = g.backends_counter("listener.inbound.ssl.handshake").await?;
    anyhow::ensure!(
        handshakes >= 1,
        "no mutual TLS handshake at a backend's sidecar"
    );
    let served = g
        .backends_counter("http.inbound.downstream_rq_total")
        .await?;
    anyhow::ensure!(
        served >= 1,
        "no request passed a backend's inbound listener"
    );
    // Nothing went around the routes as an unknown destination.
    let direct = g
        .client_pod
        .counter("cluster.PassthroughCluster.upstream_cx_total")
        .await?;
    anyhow::ensure!(direct == 0, "{direct} connections passed the mesh by");
    Ok(())
}

/// MeshTrafficSplit.
async fn traffic_split(g: &Gamma) -> anyhow::Result<()> {
    let (file, route) = ("split.yaml", "mesh-split");
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "HTTPRoute", route, "echo").await?;
    g.expect_backend("/v1", &[], "echo-v1").await?;
    g.expect_backend("/v2", &[], "echo-v2").await?;
    g.unload(file, &[(NS, route)]).await
}

/// MeshHTTPRouteSimpleSameNamespace.
async fn simple_same_namespace(g: &Gamma) -> anyhow::Result<()> {
    let (file, route) = ("simple.yaml", "mesh-simple");
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "HTTPRoute", route, "echo").await?;
    for _ in 0..10 {
        g.expect_backend("/", &[], "echo-v1").await?;
    }
    g.unload(file, &[(NS, route)]).await
}

/// A request's path and headers, and the backend that must answer it.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// MeshHTTPRouteMatching: the cases of upstream's test.
async fn matching(g: &Gamma) -> anyhow::Result<()> {
    let (file, route) = ("matching.yaml", "mesh-matching");
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "HTTPRoute", route, "echo").await?;
    let cases: [Case; 9] = [
        ("/", &[], "echo-v1"),
        ("/example", &[], "echo-v1"),
        ("/", &[("Version", "one")], "echo-v1"),
        ("/v2", &[], "echo-v2"),
        ("/v2/example", &[], "echo-v2"),
        ("/", &[("Version", "two")], "echo-v2"),
        ("/v2/", &[], "echo-v2"),
        ("/v2example", &[], "echo-v1"),
        ("/foo/v2/example", &[], "echo-v1"),
    ];
    for (path, headers, backend) in cases {
        g.expect_backend(path, headers, backend).await?;
    }
    g.unload(file, &[(NS, route)]).await
}

/// MeshHTTPRouteWeight: 70/30 within 10 points over 300 requests.
async fn weight(g: &Gamma) -> anyhow::Result<()> {
    let (file, route) = ("weight.yaml", "mesh-weighted-backends");
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "HTTPRoute", route, "echo").await?;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    const N: u32 = 300;
    for _ in 0..N {
        let r = g
            .expect(&g.producer, ("echo", "/"), &[], |r| match r.status {
                200 => Ok(()),
                s => Err(format!("status {s}")),
            })
            .await?;
        *seen
            .entry(r.upstream().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let share = |n: &str| f64::from(seen.get(n).copied().unwrap_or(0)) / f64::from(N);
    anyhow::ensure!((share("echo-v1") - 0.7).abs() < 0.1, "{seen:?}");
    anyhow::ensure!((share("echo-v2") - 0.3).abs() < 0.1, "{seen:?}");
    g.unload(file, &[(NS, route)]).await
}

/// MeshHTTPRouteRedirectHostAndStatus.
async fn redirect_host_and_status(g: &Gamma) -> anyhow::Result<()> {
    let (file, route) = (
        "redirect-host-and-status.yaml",
        "mesh-redirect-host-and-status",
    );
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "HTTPRoute", route, "echo").await?;
    for (path, status) in [
        ("/hostname-redirect", 302),
        ("/host-and-status", 301),
        ("/host-and-temporary", 307),
        ("/host-and-permanent", 308),
    ] {
        let location = format!("http://example.org{path}");
        g.expect(&g.producer, ("echo", path), &[], |r| {
            match (r.status, r.header("location")) {
                (s, Some(l)) if s == status && l == location => Ok(()),
                _ => Err(format!("want {status} to {location}")),
            }
        })
        .await?;
    }
    g.unload(file, &[(NS, route)]).await
}

/// MeshHTTPRouteRequestHeaderModifier: what the backend receives.
async fn request_header_modifier(g: &Gamma) -> anyhow::Result<()> {
    let (file, route) = (
        "request-header-modifier.yaml",
        "mesh-request-header-modifier",
    );
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "HTTPRoute", route, "echo").await?;
    let headers = [
        ("X-Header-Set", "some-other-value"),
        ("X-Header-Add", "some-value"),
        ("X-Header-Remove", "val"),
    ];
    let r = g.expect_backend("/headers", &headers, "echo-v1").await?;
    let seen = r.seen_headers()?;
    let values = |n: &str| seen.get(n).cloned().unwrap_or_default();
    anyhow::ensure!(
        values("x-header-set") == ["set-overwrites-values"],
        "{seen:?}"
    );
    anyhow::ensure!(
        values("x-header-add") == ["some-value", "add-appends-values"],
        "{seen:?}"
    );
    anyhow::ensure!(!seen.contains_key("x-header-remove"), "{seen:?}");
    g.unload(file, &[(NS, route)]).await
}

/// MeshGRPCRouteWeight: gRPC calls from the client pod, captured by its sidecar, split 70/30
/// (within 5 points, over samples of 500 calls, as the Gateway runner's GRPCRouteWeight).
async fn grpc_weight(g: &Gamma) -> anyhow::Result<()> {
    let (file, route) = ("grpc-weight.yaml", "mesh-grpc-weighted-backends");
    let authority = format!("grpc-echo.{NS}:{GRPC_PORT}");
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "GRPCRoute", route, "grpc-echo").await?;
    eventually("a gRPC call answered", DEADLINE, || async {
        match g.grpc_calls(&authority, 1).await {
            Ok(c) if c.contains_key("grpc-echo-v1") || c.contains_key("grpc-echo-v2") => Ok(()),
            Ok(c) => Err(format!("{c:?}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;
    const N: usize = 500;
    let mut last = BTreeMap::new();
    for _ in 0..10 {
        let seen = g.grpc_calls(&authority, N).await?;
        let share = |n: &str| seen.get(n).copied().unwrap_or(0) as f64 / N as f64;
        let ok = (share("grpc-echo-v1") - 0.7).abs() <= 0.05
            && (share("grpc-echo-v2") - 0.3).abs() <= 0.05
            && seen.keys().all(|k| k.starts_with("grpc-echo-v"));
        if ok {
            grpc_captured(g).await?;
            return g.unload(file, &[(NS, route)]).await;
        }
        last = seen;
    }
    anyhow::bail!("10 samples of {N} calls, none 70/30 within 5 points; the last: {last:?}")
}

/// The gRPC calls passed the backends' sidecars: their inbound listener's port 7070 chain
/// (mutual TLS: the gRPC Services are of service account `echo`) and the `inbound|7070`
/// cluster, which speaks HTTP/2 to the gRPC server.
async fn grpc_captured(g: &Gamma) -> anyhow::Result<()> {
    let cluster = format!("cluster.inbound|{GRPC_PORT}");
    let requests = g
        .backends_counter(&format!("{cluster}.upstream_rq_total"))
        .await?;
    anyhow::ensure!(
        requests >= 500,
        "{requests} gRPC calls passed the backends' inbound listeners"
    );
    let http2 = g
        .backends_counter(&format!("{cluster}.upstream_cx_http2_total"))
        .await?;
    anyhow::ensure!(http2 >= 1, "no HTTP/2 connection to the gRPC server");
    let http1 = g
        .backends_counter(&format!("{cluster}.upstream_cx_http1_total"))
        .await?;
    anyhow::ensure!(
        http1 == 0,
        "{http1} HTTP/1.1 connections to the gRPC server"
    );
    let mtls = g
        .client_pod
        .counter(&format!(
            "cluster.outbound|{GRPC_PORT}||grpc-echo-v1.{NS}.svc.cluster.local.ssl.handshake"
        ))
        .await?;
    anyhow::ensure!(
        mtls >= 1,
        "the client's sidecar called grpc-echo-v1 without TLS"
    );
    Ok(())
}

/// MeshConsumerRoute: the consumer namespace's route changes its own requests only.
async fn consumer_route(g: &Gamma) -> anyhow::Result<()> {
    let (file, route) = ("consumer-route.yaml", "consumer-rule");
    g.load(file, &[(CONSUMER_NS, route)]).await?;
    let at = ("HTTPRoute", CONSUMER_NS, route);
    parent_condition(g, at, "echo-v1", ("Accepted", "True", "Accepted")).await?;
    parent_condition(g, at, "echo-v1", ("ResolvedRefs", "True", "ResolvedRefs")).await?;
    let host = format!("echo-v1.{NS}");
    g.expect(&g.consumer, (&host, "/"), &[], |r| {
        match (r.status, r.header("x-header-set"), r.upstream()) {
            (200, Some("set"), Some("echo-v1")) => Ok(()),
            _ => Err("want echo-v1 with X-Header-Set: set".to_string()),
        }
    })
    .await?;
    let r = g
        .expect(&g.producer, (&host, "/"), &[], |r| match r.status {
            200 => Ok(()),
            s => Err(format!("status {s}")),
        })
        .await?;
    anyhow::ensure!(
        r.upstream() == Some("echo-v1") && r.header("x-header-set").is_none(),
        "the producer namespace's request is not the consumer route's: {:?}",
        r.headers
    );
    g.unload(file, &[(CONSUMER_NS, route)]).await
}

/// MeshPorts: `parentRef.port` limits a route to that port of its Service.
async fn ports(g: &Gamma) -> anyhow::Result<()> {
    let file = "ports.yaml";
    let routes = [(NS, "mesh-ports-v1"), (NS, "mesh-ports-v2")];
    g.load(file, &routes).await?;
    route_accepted(g, "HTTPRoute", "mesh-ports-v1", "echo-v1").await?;
    route_accepted(g, "HTTPRoute", "mesh-ports-v2", "echo-v2").await?;
    for (host, backend, header) in [
        ("echo-v1", "echo-v1", Some("v1")),
        ("echo-v1:8080", "echo-v1", None),
        ("echo-v2", "echo-v2", Some("v2")),
        ("echo-v2:8080", "echo-v2", Some("v2")),
    ] {
        let check = |r: &Reply| {
            let seen = (r.status, r.upstream(), r.header("x-header-set"));
            if seen == (200, Some(backend), header) {
                Ok(())
            } else {
                Err(format!("want {backend} with X-Header-Set {header:?}"))
            }
        };
        g.expect_stable(&g.producer, (host, "/"), check).await?;
    }
    g.unload(file, &routes).await
}

/// MeshFrontend: a route applies to calls to its Service (the frontend), not to a call to a
/// backend pod by its address (which the client's sidecar passes through, and the pod's own
/// sidecar lets in).
async fn frontend(g: &Gamma) -> anyhow::Result<()> {
    let (file, route) = ("frontend.yaml", "mesh-frontend");
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "HTTPRoute", route, "echo-v2").await?;
    let pod = BACKENDS
        .iter()
        .find(|(version, _)| *version == "v2")
        .map(|(_, ip)| format!("{ip}:{HTTP_PORT}"))
        .ok_or_else(|| anyhow::anyhow!("no v2 pod"))?;
    for (host, header) in [("echo-v2", Some("set")), (pod.as_str(), None)] {
        let check = |r: &Reply| {
            let seen = (r.status, r.upstream(), r.header("x-header-set"));
            if seen == (200, Some("echo-v2"), header) {
                Ok(())
            } else {
                Err(format!("want echo-v2 with X-Header-Set {header:?}"))
            }
        };
        g.expect_stable(&g.producer, (host, "/"), check).await?;
    }
    g.unload(file, &[(NS, route)]).await
}

/// Parent status of Service parents that do not match, and of a backend that does not exist
/// (that route still routes its Service: 500).
async fn invalid_parents(g: &Gamma) -> anyhow::Result<()> {
    let file = "invalid-parents.yaml";
    g.load(file, &[(NS, "mesh-missing-backend")]).await?;
    let not_matching = ("Accepted", "False", "NoMatchingParent");
    parent_condition(
        g,
        ("HTTPRoute", NS, "mesh-missing-service"),
        "does-not-exist",
        not_matching,
    )
    .await?;
    parent_condition(
        g,
        ("HTTPRoute", NS, "mesh-missing-port"),
        "echo",
        not_matching,
    )
    .await?;
    let backend = ("HTTPRoute", NS, "mesh-missing-backend");
    parent_condition(g, backend, "echo-v2", ("Accepted", "True", "Accepted")).await?;
    parent_condition(
        g,
        backend,
        "echo-v2",
        ("ResolvedRefs", "False", "BackendNotFound"),
    )
    .await?;
    g.expect(
        &g.producer,
        (&format!("echo-v2.{NS}"), "/"),
        &[],
        |r| match r.status {
            500 => Ok(()),
            s => Err(format!("want 500, got {s}")),
        },
    )
    .await?;
    // The route on a port Echo does not have left `echo` alone.
    mesh_basic(g).await?;
    g.unload(file, &[(NS, "mesh-missing-backend")]).await
}
