//! GATEWAY-GRPC of the Gateway API conformance runner: the suite's GRPCRoute scenarios with
//! real gRPC over HTTP/2 through the Gateway's stock Envoy. Servers and client are
//! `tests/e2e/grpc/gateway_echo.py` (grpcio from `.venv`, or `PORTOLAN_GRPC_PYTHON`): echo
//! servers shaped like the suite's (`GrpcEcho` with `Echo`, `EchoTwo`, `EchoThree`) that
//! answer with their Service's name, and a client that calls a method with an `:authority`
//! and metadata and counts the answers (or the gRPC error codes).

use super::{Conformance, DEADLINE, INFRA, assert_condition, parent};
use portolan_e2e::{eventually, grpc_python, workspace_root};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The gRPC backends of the base world.
const BACKENDS: &[&str] = &[
    "grpc-infra-backend-v1",
    "grpc-infra-backend-v2",
    "grpc-infra-backend-v3",
];

/// The gRPC processes of a run: the servers (started on first use) and a client per Gateway
/// address.
#[derive(Default)]
pub(super) struct GrpcProcesses {
    servers: Vec<Echo>,
    /// Servers over TLS (BackendTLSPolicy), apart: `servers` empty means the base world's
    /// are not started yet.
    tls_servers: Vec<Echo>,
    clients: BTreeMap<String, Echo>,
    /// The run's CA certificate, for clients over TLS.
    ca_file: Option<tempfile::NamedTempFile>,
}

/// One `gateway_echo.py` process, killed on drop.
struct Echo {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

// === impl Echo ===

impl Echo {
    fn start(args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(grpc_python())
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

/// What a client line of `gateway_echo.py` reports.
#[derive(Debug, serde::Deserialize)]
struct Answers {
    counts: BTreeMap<String, usize>,
    metadata: BTreeMap<String, Vec<String>>,
}

/// One gRPC call's shape: method, `:authority` and metadata.
#[derive(Clone, Copy)]
pub(super) struct Call<'a> {
    pub method: &'a str,
    pub authority: &'a str,
    pub metadata: &'a [(&'a str, &'a str)],
    /// Over TLS to the Gateway's HTTPS port (SNI = authority), else plaintext HTTP/2.
    pub tls: bool,
}

fn echo(metadata: &'static [(&'static str, &'static str)]) -> Call<'static> {
    Call {
        method: "Echo",
        authority: "example.com",
        metadata,
        tls: false,
    }
}

fn slice(name: &str, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-echo\n  namespace: {INFRA}\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions: {{ready: true}}\nports:\n- name: grpc\n  port: {port}\n"
    )
}

// === impl Conformance ===

impl Conformance {
    /// Starts the gRPC servers behind the base world's gRPC Services (once).
    fn grpc_servers(&mut self) -> anyhow::Result<()> {
        if !self.grpc.servers.is_empty() {
            return Ok(());
        }
        let mut slices = Vec::new();
        for name in BACKENDS {
            let mut server = Echo::start(&["serve", name])?;
            let port: u16 = server.line()?.parse()?;
            slices.push(slice(name, port));
            self.grpc.servers.push(server);
        }
        self.config
            .write("grpc-endpoints.yaml", &slices.join("---\n"))
    }

    /// `n` calls through the Gateway at `addr`, counted by answer (`error:CODE` for errors).
    fn grpc_calls(
        &mut self,
        addr: &str,
        call: Call<'_>,
        n: usize,
    ) -> anyhow::Result<BTreeMap<String, usize>> {
        Ok(self.grpc_exchange(addr, call, n)?.counts)
    }

    /// `n` calls through the Gateway at `addr`: the answers counted, and the metadata the
    /// last answering server saw.
    fn grpc_exchange(&mut self, addr: &str, call: Call<'_>, n: usize) -> anyhow::Result<Answers> {
        let port = if call.tls { self.tls_port } else { self.port };
        let target = format!("{addr}:{port}");
        if !self.grpc.clients.contains_key(&target) {
            let client = if call.tls {
                let ca = self.ca_file()?;
                Echo::start(&["client", &target, &ca])?
            } else {
                Echo::start(&["client", &target])?
            };
            self.grpc.clients.insert(target.clone(), client);
        }
        let client = self
            .grpc
            .clients
            .get_mut(&target)
            .ok_or_else(|| anyhow::anyhow!("no client"))?;
        let metadata: Vec<String> = call
            .metadata
            .iter()
            .map(|(k, v)| format!("{}={v}", k.to_ascii_lowercase()))
            .collect();
        writeln!(
            client.stdin,
            "call {} {} {n} {}",
            call.method,
            call.authority,
            metadata.join(" ")
        )?;
        client.stdin.flush()?;
        Ok(serde_json::from_str(&client.line()?)?)
    }

    /// The path of a file holding the run's CA certificate (written once).
    fn ca_file(&mut self) -> anyhow::Result<String> {
        if self.grpc.ca_file.is_none() {
            let mut file = tempfile::NamedTempFile::new()?;
            file.write_all(self.ca.cert_pem().as_bytes())?;
            self.grpc.ca_file = Some(file);
        }
        let file = self
            .grpc
            .ca_file
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no CA"))?;
        Ok(file.path().display().to_string())
    }

    /// Starts a gRPC echo server `name` over TLS with `cert` (kept with the base world's
    /// servers); returns its port.
    pub(super) fn grpc_tls_server(
        &mut self,
        name: &str,
        cert: &portolan_e2e::tls::ServerCert,
    ) -> anyhow::Result<u16> {
        let mut cert_file = tempfile::NamedTempFile::new()?;
        cert_file.write_all(cert.cert_pem.as_bytes())?;
        let mut key_file = tempfile::NamedTempFile::new()?;
        key_file.write_all(cert.key_pem.as_bytes())?;
        let paths = [cert_file.path(), key_file.path()].map(|p| p.display().to_string());
        let mut server = Echo::start(&["serve", name, &paths[0], &paths[1]])?;
        // The files are read before the port is printed.
        let port: u16 = server.line()?.parse()?;
        self.grpc.tls_servers.push(server);
        Ok(port)
    }

    /// Calls until one call gets `want` (a backend name or `error:CODE`).
    pub(super) async fn expect_grpc(
        &mut self,
        addr: &str,
        call: Call<'_>,
        want: &str,
    ) -> anyhow::Result<()> {
        let what = format!(
            "{} (authority {}, {:?}) answered by {want}",
            call.method, call.authority, call.metadata
        );
        let this = std::sync::Mutex::new(self);
        eventually(&what, DEADLINE, || async {
            let mut c = this.lock().map_err(|e| e.to_string())?;
            match c.grpc_calls(addr, call, 1) {
                Ok(counts) if counts.contains_key(want) => Ok(()),
                Ok(counts) => Err(format!("{counts:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Writes a case's manifests, starts the gRPC servers and waits until the routes reach
    /// the Envoy of `gateway`, whose address it returns.
    async fn load_grpc(
        &mut self,
        file: &str,
        gateway: &str,
        routes: &[&str],
    ) -> anyhow::Result<String> {
        self.grpc_servers()?;
        self.load(file, gateway, routes).await
    }
}

/// A GRPCRoute accepted by `gw` with its refs resolved.
async fn grpc_route_accepted(c: &Conformance, route: &str, gw: &str) -> anyhow::Result<()> {
    let status = c.status(&format!("GRPCRoute {INFRA}/{route}")).await?;
    let p = parent(&status, gw);
    assert_eq!(p["controllerName"], "portolan.dev/gateway-controller");
    assert_condition(&p["conditions"], "Accepted", "True", "Accepted");
    assert_condition(&p["conditions"], "ResolvedRefs", "True", "ResolvedRefs");
    Ok(())
}

const V1: &str = "grpc-infra-backend-v1";
const V2: &str = "grpc-infra-backend-v2";
const V3: &str = "grpc-infra-backend-v3";
const UNIMPLEMENTED: &str = "error:UNIMPLEMENTED";

/// GRPCExactMethodMatching.
pub(super) async fn exact_method_matching(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("grpc-exact-method-matching.yaml", "exact-matching");
    let addr = c.load_grpc(file, "same-namespace", &[route]).await?;
    grpc_route_accepted(c, route, "same-namespace").await?;
    let method = |method| Call {
        method,
        ..echo(&[])
    };
    c.expect_grpc(&addr, method("Echo"), V1).await?;
    c.expect_grpc(&addr, method("EchoTwo"), V2).await?;
    c.expect_grpc(&addr, method("EchoThree"), UNIMPLEMENTED)
        .await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// GRPCRouteHeaderMatching.
pub(super) async fn header_matching(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("grpc-header-matching.yaml", "grpc-header-matching");
    let addr = c.load_grpc(file, "same-namespace", &[route]).await?;
    grpc_route_accepted(c, route, "same-namespace").await?;
    for (call, want) in [
        (echo(&[("Version", "one")]), V1),
        (echo(&[("Version", "two")]), V2),
        (echo(&[("Version", "two"), ("Color", "orange")]), V1),
        (echo(&[("Version", "two"), ("Color", "blue")]), V2),
        (echo(&[("Color", "orange")]), UNIMPLEMENTED),
        (echo(&[("Some-Other-Header", "one")]), UNIMPLEMENTED),
        (echo(&[("Color", "blue")]), V1),
        (echo(&[("Color", "green")]), V1),
        (echo(&[("Color", "red")]), V2),
        (echo(&[("Color", "yellow")]), V2),
        (echo(&[("Color", "purple")]), UNIMPLEMENTED),
    ] {
        c.expect_grpc(&addr, call, want).await?;
    }
    c.unload(file, "same-namespace", &[route]).await
}

/// GRPCRouteListenerHostnameMatching.
pub(super) async fn listener_hostname_matching(c: &mut Conformance) -> anyhow::Result<()> {
    let gw = "grpcroute-listener-hostname-matching";
    let routes = ["backend-v1", "backend-v2", "backend-v3"];
    let file = "grpc-listener-hostname-matching.yaml";
    let addr = c.load_grpc(file, gw, &routes).await?;
    for r in routes {
        grpc_route_accepted(c, r, gw).await?;
    }
    for (authority, want) in [
        ("bar.com", V1),
        ("foo.bar.com", V2),
        ("baz.bar.com", V3),
        ("boo.bar.com", V3),
        ("multiple.prefixes.bar.com", V3),
        ("multiple.prefixes.foo.com", V3),
        ("foo.com", UNIMPLEMENTED),
        ("no.matching.host", UNIMPLEMENTED),
    ] {
        let call = Call {
            authority,
            ..echo(&[])
        };
        c.expect_grpc(&addr, call, want).await?;
    }
    c.unload(file, gw, &routes).await
}

/// GRPCRouteWeight: 500 calls split 70/30 within 5 points (the suite's tolerance; like the
/// suite, a distribution outside it is sampled again, up to 10 times), weight 0 gets none.
pub(super) async fn weight(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("grpc-weight.yaml", "weighted-backends");
    let addr = c.load_grpc(file, "same-namespace", &[route]).await?;
    grpc_route_accepted(c, route, "same-namespace").await?;
    c.expect_grpc(&addr, echo(&[]), V1).await?;
    const N: usize = 500;
    let mut last = BTreeMap::new();
    for _ in 0..10 {
        let seen = c.grpc_calls(&addr, echo(&[]), N)?;
        let share = |n: &str| seen.get(n).copied().unwrap_or(0) as f64 / N as f64;
        let ok = (share(V1) - 0.7).abs() <= 0.05
            && (share(V2) - 0.3).abs() <= 0.05
            && seen.keys().all(|k| k == V1 || k == V2);
        if ok {
            return c.unload(file, "same-namespace", &[route]).await;
        }
        last = seen;
    }
    anyhow::bail!("10 samples of {N} calls, none 70/30 within 5 points; the last: {last:?}")
}

/// Metadata names and the value the backend must see (`None`: absent).
type Seen = &'static [(&'static str, Option<&'static str>)];

/// GRPCRouteRequestHeaderModifier: what the backend sees of the request metadata (several
/// values of one name joined with `,`, as HTTP/2 allows either form).
pub(super) async fn request_header_modifier(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = (
        "grpc-request-header-modifier.yaml",
        "grpc-request-header-modifier",
    );
    let addr = c.load_grpc(file, "same-namespace", &[route]).await?;
    grpc_route_accepted(c, route, "same-namespace").await?;
    const OTHER: (&str, &str) = ("Some-Other-Header", "this-header-should-be-set");
    let two = |metadata| Call {
        method: "EchoTwo",
        ..echo(metadata)
    };
    let cases: [(Call<'_>, &str, Seen); 6] = [
        (
            echo(&[OTHER]),
            V1,
            &[
                ("some-other-header", Some("this-header-should-be-set")),
                ("x-header-set", Some("set-overwrites-values")),
                ("x-header-add", Some("add-appends-values")),
            ],
        ),
        (
            echo(&[OTHER, ("X-Header-Set", "this-value-should-be-overwritten")]),
            V1,
            &[("x-header-set", Some("set-overwrites-values"))],
        ),
        (
            echo(&[OTHER, ("X-Header-Add", "this-value-should-be-appended")]),
            V1,
            &[(
                "x-header-add",
                Some("this-value-should-be-appended,add-appends-values"),
            )],
        ),
        (
            echo(&[("X-Header-Remove", "this-should-be-removed")]),
            V1,
            &[("x-header-remove", None)],
        ),
        (
            two(&[
                ("X-Header-Set-2", "set-header-2"),
                ("X-Header-Add-2", "add-header-2"),
                ("X-Header-Remove-2", "should-be-removed-2"),
                ("Some-Other-Header", "another-header-val"),
            ]),
            V2,
            &[
                ("x-header-set-1", Some("header-set-1")),
                ("x-header-set-2", Some("header-set-2")),
                ("x-header-add-1", Some("header-add-1")),
                ("x-header-add-2", Some("add-header-2,header-add-2")),
                ("x-header-remove-2", None),
                ("some-other-header", Some("another-header-val")),
            ],
        ),
        (
            two(&[
                ("x-header-set-1", "original-set-1"),
                ("x-header-add-1", "existing-add-1"),
                ("x-header-remove-1", "should-be-removed-1"),
            ]),
            V2,
            &[
                ("x-header-set-1", Some("header-set-1")),
                ("x-header-add-1", Some("existing-add-1,header-add-1")),
                ("x-header-remove-1", None),
            ],
        ),
    ];
    for (call, backend, want) in cases {
        c.expect_grpc(&addr, call, backend).await?;
        let answers = c.grpc_exchange(&addr, call, 1)?;
        anyhow::ensure!(answers.counts.contains_key(backend), "{answers:?}");
        for (name, value) in want {
            let seen = answers.metadata.get(*name).map(|v| v.join(","));
            anyhow::ensure!(
                seen.as_deref() == *value,
                "{:?}: {name} is {seen:?}, want {value:?}",
                call.metadata
            );
        }
    }
    c.unload(file, "same-namespace", &[route]).await
}

/// GRPCRoute method matches of type RegularExpression (service and method, method only).
pub(super) async fn regex_method_matching(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("grpc-regex-method-matching.yaml", "regex-matching");
    let addr = c.load_grpc(file, "same-namespace", &[route]).await?;
    grpc_route_accepted(c, route, "same-namespace").await?;
    let method = |method| Call {
        method,
        ..echo(&[])
    };
    c.expect_grpc(&addr, method("Echo"), V3).await?;
    c.expect_grpc(&addr, method("EchoTwo"), V3).await?;
    c.expect_grpc(&addr, method("EchoThree"), V2).await?;
    c.unload(file, "same-namespace", &[route]).await
}

/// gRPC over an HTTPS listener: TLS with ALPN h2, terminated by the Gateway, the GRPCRoute
/// chosen by the SNI's listener.
pub(super) async fn over_https(c: &mut Conformance) -> anyhow::Result<()> {
    let (file, route) = ("grpc-https.yaml", "grpc-over-https");
    let gw = "same-namespace-with-https-listener";
    let addr = c.load_grpc(file, gw, &[route]).await?;
    grpc_route_accepted(c, route, gw).await?;
    let call = Call {
        authority: "example.org",
        tls: true,
        ..echo(&[])
    };
    c.expect_grpc(&addr, call, V1).await?;
    let elsewhere = Call {
        authority: "second-example.org",
        ..call
    };
    c.expect_grpc(&addr, elsewhere, UNIMPLEMENTED).await?;
    c.unload(file, gw, &[route]).await
}

/// Portolan's own: an HTTPRoute and a GRPCRoute on one listener with one hostname. The older
/// GRPCRoute is accepted and serves gRPC there; the HTTPRoute is `Accepted=False`
/// (`HostnameConflict`) and HTTP requests for that name find no route (404), while an
/// HTTPRoute on another hostname of the listener keeps serving.
pub(super) async fn http_and_grpc_same_hostname(c: &mut Conformance) -> anyhow::Result<()> {
    let file = "grpc-http-same-hostname.yaml";
    let routes = ["grpc-owns-hostname", "http-own-hostname"];
    let addr = c.load_grpc(file, "same-namespace", &routes).await?;
    grpc_route_accepted(c, "grpc-owns-hostname", "same-namespace").await?;
    super::route_accepted(c, INFRA, "http-own-hostname", "same-namespace").await?;
    super::route_condition(
        c,
        "http-loses-hostname",
        "same-namespace",
        "Accepted",
        "False",
        "HostnameConflict",
    )
    .await?;
    let status = c
        .status(&format!("HTTPRoute {INFRA}/http-loses-hostname"))
        .await?;
    let accepted = super::condition(&parent(&status, "same-namespace")["conditions"], "Accepted")
        .cloned()
        .unwrap_or_default();
    let message = accepted["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("GRPCRoute {INFRA}/grpc-owns-hostname")),
        "{accepted}"
    );
    let call = Call {
        authority: "grpc-conflict.example.com",
        ..echo(&[])
    };
    c.expect_grpc(&addr, call, V1).await?;
    c.expect_status(&addr, super::get("grpc-conflict.example.com", "/"), 404)
        .await?;
    c.expect_backend(
        &addr,
        super::get("http-only.example.com", "/"),
        "infra-backend-v2",
    )
    .await?;
    // The refused route never reached Envoy.
    c.wait_envoy(
        "same-namespace",
        &format!("\"{INFRA}/http-loses-hostname/"),
        false,
    )
    .await?;
    c.unload(file, "same-namespace", &routes).await
}
