//! GAMMA conformance (MESH-HTTP and MESH-GRPC of Gateway API v1.6.1), reproduced in file mode
//! in the style of the Gateway runner ([`super::gateway_api`]): the scenarios of upstream's
//! `conformance/tests/mesh` with our own manifests (`tests/e2e/gateway-api/mesh/*.yaml`), run
//! through the file source and stock Envoy sidecars.
//!
//! Upstream's "mesh client" is a pod whose sidecar routes its calls; here it is a sidecar
//! Envoy bootstrapped by `portolan bootstrap` as a workload of namespace
//! `gateway-conformance-mesh` (the producer namespace) or `gateway-conformance-mesh-consumer`
//! (`serve --identity insecure-node-metadata`: the bootstrap claims the namespace), called
//! through its mesh outbound listener with the Host header upstream's client sends (`echo`,
//! `echo-v1.gateway-conformance-mesh`). The Services' endpoints are real HTTP upstreams
//! answering with their name, and real gRPC servers (`tests/e2e/grpc/gateway_echo.py`).
//! Status conditions are read from `GET /debug/status`. Every scenario runs even when one
//! before it failed; the board prints the MESH profiles' counts and the run fails if any
//! scenario did.

use crate::bin;
use crate::gateway_api::board::Board;
use futures::FutureExt;
use portolan_e2e::envoy::Protocol;
use portolan_e2e::http::{Reply, send};
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::ports::free_port;
use portolan_e2e::{Envoy, Portolan, Upstream, endpoints_yaml, eventually, workspace_root};
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

/// The producer namespace: the Services and their routes.
const NS: &str = "gateway-conformance-mesh";
/// The consumer namespace of MeshConsumerRoute.
const CONSUMER_NS: &str = "gateway-conformance-mesh-consumer";
const DEADLINE: Duration = Duration::from_secs(20);
/// How many more times a routed request must reach its backend once it did (a request that
/// the default routing of `echo` sent to either version passes 10 times in 2^10).
const STABLE: usize = 10;

/// One Portolan, the upstreams behind the Services, and a client sidecar per namespace.
struct Gamma {
    config: ConfigDir,
    portolan: Portolan,
    /// The mesh client of the producer namespace (upstream's `echo.MeshAppEchoV1`).
    producer: Envoy,
    /// The mesh client of the consumer namespace.
    consumer: Envoy,
    _upstreams: Vec<Upstream>,
    _ca_dir: tempfile::TempDir,
    grpc: Vec<Echo>,
    grpc_client: Option<Echo>,
}

// === impl Gamma ===

impl Gamma {
    async fn start() -> anyhow::Result<Self> {
        let config = ConfigDir::new()?;
        config.write("base.yaml", &manifest("base.yaml")?)?;
        let v1 = Upstream::start("echo-v1").await?;
        let v2 = Upstream::start("echo-v2").await?;
        config.write(
            "endpoints.yaml",
            &[
                endpoints_yaml(NS, "echo", &[&v1, &v2]),
                two_port_slice("echo-v1", &v1),
                two_port_slice("echo-v2", &v2),
            ]
            .join("---\n"),
        )?;
        let ca_dir = tempfile::tempdir()?;
        let ca = ca_dir.path().to_string_lossy().into_owned();
        let args = ["--identity", "insecure-node-metadata", "--ca-dir", &ca];
        let portolan = Portolan::start_with(bin(), &config, Ports::free(), &args).await?;
        let producer = sidecar(&portolan, NS).await?;
        let consumer = sidecar(&portolan, CONSUMER_NS).await?;
        Ok(Self {
            config,
            portolan,
            producer,
            consumer,
            _upstreams: vec![v1, v2],
            _ca_dir: ca_dir,
            grpc: Vec::new(),
            grpc_client: None,
        })
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
    /// the consumer's for a consumer route, else the producer's.
    async fn wait_envoy(&self, needle: &str, present: bool) -> anyhow::Result<()> {
        let envoy = if needle.contains(CONSUMER_NS) {
            &self.consumer
        } else {
            &self.producer
        };
        let res = eventually(
            &format!("{needle} present={present} in the sidecar"),
            DEADLINE,
            || async move {
                match envoy.admin("/config_dump").await {
                    Ok(dump) if dump.contains(needle) == present => Ok(()),
                    Ok(_) => Err("not yet".to_string()),
                    Err(e) => Err(e.to_string()),
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

    /// Sends `GET path` (Host `host`, `headers`) through `client` until `check` accepts it.
    async fn expect(
        &self,
        client: &Envoy,
        (host, path): (&str, &str),
        headers: &[(&str, &str)],
        check: impl Fn(&Reply) -> Result<(), String>,
    ) -> anyhow::Result<Reply> {
        let what = format!("GET {path} (Host {host}) {headers:?}");
        eventually(&what, DEADLINE, || async {
            let mut r = client.request(Method::GET, host, path);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            match send(r).await {
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

    /// Expects the producer's client to reach backend `name` with `GET path` (Host `echo`):
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
            let mut r = self.producer.request(Method::GET, "echo", path);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            let again = send(r).await?;
            check(&again).map_err(|e| {
                anyhow::anyhow!("GET {path} {headers:?}: {e}, got {:?}", again.upstream())
            })?;
        }
        Ok(reply)
    }

    /// Starts the gRPC servers behind the gRPC Services and the client (once); the client
    /// calls the producer's sidecar.
    fn grpc_client(&mut self) -> anyhow::Result<&mut Echo> {
        if self.grpc.is_empty() {
            let mut slices = Vec::new();
            for name in ["grpc-echo-v1", "grpc-echo-v2"] {
                let mut server = Echo::start(&["serve", name])?;
                let port: u16 = server.line()?.parse()?;
                for service in ["grpc-echo", name] {
                    slices.push(grpc_slice(service, name, port));
                }
                self.grpc.push(server);
            }
            self.config
                .write("grpc-endpoints.yaml", &slices.join("---\n"))?;
        }
        let target = format!("127.0.0.1:{}", self.producer.mesh_port());
        let client = match self.grpc_client.take() {
            Some(c) => c,
            None => Echo::start(&["client", &target])?,
        };
        Ok(self.grpc_client.insert(client))
    }

    /// `n` gRPC calls of `Echo` with `:authority` `authority`, counted by answer (a server
    /// name, or `error:CODE`).
    fn grpc_calls(&mut self, authority: &str, n: usize) -> anyhow::Result<BTreeMap<String, usize>> {
        let client = self.grpc_client()?;
        writeln!(client.stdin, "call Echo {authority} {n}")?;
        client.stdin.flush()?;
        let answers: Value = serde_json::from_str(&client.line()?)?;
        Ok(serde_json::from_value(answers["counts"].clone())?)
    }
}

/// A client sidecar: a workload of namespace `ns` (service account `client`) with its own
/// mesh outbound port.
async fn sidecar(portolan: &Portolan, ns: &str) -> anyhow::Result<Envoy> {
    let port = free_port();
    let ports = Ports {
        mesh: port,
        ..portolan.ports()
    };
    let port = port.to_string();
    let args = [
        "--namespace",
        ns,
        "--service-account",
        "client",
        "--outbound-port",
        &port,
    ];
    let group = format!("client.{ns}");
    Envoy::start_with(
        bin(),
        ports,
        &format!("{group}-1"),
        &group,
        Protocol::Sotw,
        &args,
    )
    .await
}

/// The EndpointSlice of `service` (ports `http` 80 and `http-alt` 8080) holding `upstream`
/// on both ports.
fn two_port_slice(service: &str, upstream: &Upstream) -> String {
    let (ip, port) = (upstream.addr().ip(), upstream.port());
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}\n  namespace: {NS}\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\nports:\n- name: http\n  port: {port}\n- name: http-alt\n  port: {port}\n"
    )
}

/// A manifest of tests/e2e/gateway-api/mesh.
fn manifest(name: &str) -> anyhow::Result<String> {
    let path = workspace_root()
        .join("tests/e2e/gateway-api/mesh")
        .join(name);
    std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn grpc_slice(service: &str, server: &str, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-{server}\n  namespace: {NS}\n  labels:\n    kubernetes.io/service-name: {service}\naddressType: IPv4\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions: {{ready: true}}\nports:\n- name: grpc\n  port: {port}\n"
    )
}

/// One `gateway_echo.py` process (a gRPC echo server or client), killed on drop.
struct Echo {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

// === impl Echo ===

impl Echo {
    fn start(args: &[&str]) -> anyhow::Result<Self> {
        let python = std::env::var_os("PORTOLAN_GRPC_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
        let mut child = Command::new(python)
            .arg(workspace_root().join("tests/e2e/grpc/gateway_echo.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        anyhow::ensure!(
            self.stdout.read_line(&mut line)? > 0,
            "gateway_echo.py exited"
        );
        Ok(line.trim().to_string())
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        let outcome = AssertUnwindSafe($f(&mut $g)).catch_unwind().await;
        $board.record(stringify!($f), $tests, outcome);
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gamma_mesh_conformance() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mut g = Gamma::start().await?;
    let mut b = Board::mesh();
    scenario!(b, g, &["MeshBasic"], mesh_basic);
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
    scenario!(
        b,
        g,
        &["Portolan: GAMMA parent status (missing Service, port, backend)"],
        invalid_parents
    );
    let report = b.report();
    eprintln!("{report}");
    anyhow::ensure!(b.all_passed(), "{report}");
    Ok(())
}

/// MeshBasic: without routes, a mesh client reaches Service `echo` (either version).
async fn mesh_basic(g: &mut Gamma) -> anyhow::Result<()> {
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

/// MeshTrafficSplit.
async fn traffic_split(g: &mut Gamma) -> anyhow::Result<()> {
    let (file, route) = ("split.yaml", "mesh-split");
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "HTTPRoute", route, "echo").await?;
    g.expect_backend("/v1", &[], "echo-v1").await?;
    g.expect_backend("/v2", &[], "echo-v2").await?;
    g.unload(file, &[(NS, route)]).await
}

/// MeshHTTPRouteSimpleSameNamespace.
async fn simple_same_namespace(g: &mut Gamma) -> anyhow::Result<()> {
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
async fn matching(g: &mut Gamma) -> anyhow::Result<()> {
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
async fn weight(g: &mut Gamma) -> anyhow::Result<()> {
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
async fn redirect_host_and_status(g: &mut Gamma) -> anyhow::Result<()> {
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
async fn request_header_modifier(g: &mut Gamma) -> anyhow::Result<()> {
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

/// MeshGRPCRouteWeight: gRPC calls through the sidecar split 70/30 (within 5 points, over
/// samples of 500 calls, as the Gateway runner's GRPCRouteWeight).
async fn grpc_weight(g: &mut Gamma) -> anyhow::Result<()> {
    let (file, route) = ("grpc-weight.yaml", "mesh-grpc-weighted-backends");
    let authority = format!("grpc-echo.{NS}:7070");
    g.grpc_client()?;
    g.load(file, &[(NS, route)]).await?;
    route_accepted(g, "GRPCRoute", route, "grpc-echo").await?;
    let this = std::sync::Mutex::new(&mut *g);
    eventually("a gRPC call answered", DEADLINE, || async {
        let mut g = this.lock().map_err(|e| e.to_string())?;
        match g.grpc_calls(&authority, 1) {
            Ok(c) if c.contains_key("grpc-echo-v1") || c.contains_key("grpc-echo-v2") => Ok(()),
            Ok(c) => Err(format!("{c:?}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;
    const N: usize = 500;
    let mut last = BTreeMap::new();
    for _ in 0..10 {
        let seen = g.grpc_calls(&authority, N)?;
        let share = |n: &str| seen.get(n).copied().unwrap_or(0) as f64 / N as f64;
        let ok = (share("grpc-echo-v1") - 0.7).abs() <= 0.05
            && (share("grpc-echo-v2") - 0.3).abs() <= 0.05
            && seen.keys().all(|k| k.starts_with("grpc-echo-v"));
        if ok {
            return g.unload(file, &[(NS, route)]).await;
        }
        last = seen;
    }
    anyhow::bail!("10 samples of {N} calls, none 70/30 within 5 points; the last: {last:?}")
}

/// MeshConsumerRoute: the consumer namespace's route changes its own requests only.
async fn consumer_route(g: &mut Gamma) -> anyhow::Result<()> {
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
async fn ports(g: &mut Gamma) -> anyhow::Result<()> {
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
        g.expect(&g.producer, (host, "/"), &[], check).await?;
        for _ in 0..STABLE {
            let r = send(g.producer.request(Method::GET, host, "/")).await?;
            check(&r).map_err(|e| anyhow::anyhow!("{host}: {e}: {:?}", r.headers))?;
        }
    }
    g.unload(file, &routes).await
}

/// Parent status of Service parents that do not match, and of a backend that does not exist
/// (that route still routes its Service: 500).
async fn invalid_parents(g: &mut Gamma) -> anyhow::Result<()> {
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
