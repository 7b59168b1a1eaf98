//! Mesh security with stock Envoy on loopback: a client sidecar and a server sidecar (each
//! proving its identity with an xDS client certificate), the server's inbound listener in
//! front of a real upstream, workload certificates from Portolan's CA over SDS, mutual TLS on
//! the wire (the server Envoy's SSL stats), plaintext refused in STRICT, AccessPolicies
//! deciding 403 or 200 by identity, certificates rotated during a stream of requests, and the
//! development-only identity from node metadata. Every wait polls with a deadline.

use crate::bin;
use portolan_e2e::manifests::example;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::ports::free_port;
use portolan_e2e::tls::TestCa;
use portolan_e2e::tokens::Tokens;
use portolan_e2e::xds_tls::TlsDir;
use portolan_e2e::{Envoy, Portolan, Upstream, client, eventually};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// The host the client asks for (Service `server` in `shop`).
pub(crate) const HOST: &str = "server.shop";

fn spiffe(sa: &str) -> String {
    format!("spiffe://cluster.local/ns/shop/sa/{sa}")
}

/// The EndpointSlice of Service `server`: the server sidecar's inbound listener.
fn server_endpoints(inbound: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: server-1\n  namespace: shop\n  labels:\n    kubernetes.io/service-name: server\naddressType: IPv4\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions: {{ready: true}}\nports:\n- name: http\n  port: {inbound}\n"
    )
}

/// How the sidecars prove who they are.
pub(crate) enum Identities {
    /// xDS client certificates from the test's CA, SPIFFE URI SANs.
    Certificates,
    /// `--identity insecure-node-metadata`: claimed in the bootstrap.
    NodeMetadata,
    /// Service account token files (`--xds-token-review` against the stand-in API server),
    /// over server-only TLS.
    Tokens,
}

/// Portolan, the upstream behind the server sidecar, and what is needed to start sidecars.
pub(crate) struct Mesh {
    pub(crate) config: ConfigDir,
    pub(crate) portolan: Portolan,
    pub(crate) app: Upstream,
    files: Option<(TestCa, TlsDir)>,
    pub(crate) tokens: Option<Tokens>,
    pub(crate) inbound: u16,
    /// Portolan's `--ca-dir`.
    pub(crate) ca_dir: tempfile::TempDir,
}

// === impl Mesh ===

impl Mesh {
    /// Service `server` in the mesh (service account `server`) behind the server sidecar's
    /// inbound port, plus the given manifests; Portolan started with `serve_args`.
    pub(crate) async fn start(
        identities: Identities,
        manifests: &[(&str, String)],
        serve_args: &[&str],
    ) -> anyhow::Result<Self> {
        let app = Upstream::start("server-app").await?;
        Self::start_with_app(app, identities, manifests, serve_args).await
    }

    /// [`Mesh::start`] with `app` behind the server sidecar (a WebSocket upstream).
    pub(crate) async fn start_with_app(
        app: Upstream,
        identities: Identities,
        manifests: &[(&str, String)],
        serve_args: &[&str],
    ) -> anyhow::Result<Self> {
        let inbound = free_port();
        let config = ConfigDir::new()?;
        config.write("shop/service.yaml", &example("security/mesh-service.yaml"))?;
        config.write("shop/endpoints.yaml", &server_endpoints(inbound))?;
        for (name, text) in manifests {
            config.write(name, text)?;
        }
        let mut args: Vec<String> = serve_args.iter().map(|s| s.to_string()).collect();
        // The mesh CA survives a restart of Portolan.
        let ca_dir = tempfile::tempdir()?;
        args.extend([
            "--ca-dir".to_string(),
            ca_dir.path().to_string_lossy().into_owned(),
        ]);
        let mut tokens = None;
        let files = match identities {
            Identities::Certificates => {
                let ca = TestCa::new()?;
                let files = TlsDir::new(&ca)?;
                for sa in ["client", "server", "intruder"] {
                    let cert = ca.issue_client(&[], &[&spiffe(sa)])?;
                    files.write_pair(&format!("sa-{sa}"), &cert)?;
                }
                args.extend(files.serve_args(true));
                Some((ca, files))
            }
            Identities::NodeMetadata => {
                args.extend([
                    "--identity".to_string(),
                    "insecure-node-metadata".to_string(),
                ]);
                None
            }
            Identities::Tokens => {
                let ca = TestCa::new()?;
                let files = TlsDir::new(&ca)?;
                let issued = Tokens::start().await?;
                for sa in ["client", "server", "intruder"] {
                    issued.issue(sa, "shop", sa)?;
                }
                args.extend(files.serve_args(false));
                args.push("--xds-token-review".to_string());
                tokens = Some(issued);
                Some((ca, files))
            }
        };
        let portolan = start_portolan(&config, Ports::free(), &args, tokens.as_ref()).await?;
        Ok(Self {
            config,
            portolan,
            app,
            files,
            tokens,
            inbound,
            ca_dir,
        })
    }

    /// The bootstrap flags of TLS to this Portolan, without any identity.
    pub(crate) fn tls_args(&self) -> Vec<String> {
        self.files
            .as_ref()
            .map(|(_, files)| files.bootstrap_args(None))
            .unwrap_or_default()
    }

    /// The bootstrap flags of the token file `file`, over TLS to this Portolan.
    pub(crate) fn token_args(&self, file: &str) -> Vec<String> {
        let (Some((_, files)), Some(tokens)) = (&self.files, &self.tokens) else {
            return Vec::new();
        };
        let mut args = files.bootstrap_args(None);
        args.extend([
            "--xds-token-file".to_string(),
            tokens.file(file).to_string_lossy().into_owned(),
            "--xds-token-exchange".to_string(),
            format!(
                "http://127.0.0.1:{}/sts/v1/token",
                self.portolan.ports().http
            ),
        ]);
        args
    }

    /// The bootstrap flags proving (or, in the insecure mode, claiming) service account `sa`.
    fn identity_args(&self, sa: &str) -> Vec<String> {
        if self.tokens.is_some() {
            return self.token_args(sa);
        }
        match &self.files {
            Some((_, files)) => files.bootstrap_args(Some(&format!("sa-{sa}"))),
            None => vec![
                "--namespace".into(),
                "shop".into(),
                "--service-account".into(),
                sa.into(),
            ],
        }
    }

    /// The server sidecar: group `server`, label app=server, inbound in front of the app.
    pub(crate) async fn server(&self) -> anyhow::Result<Envoy> {
        self.server_with(&[]).await
    }

    /// [`Mesh::server`] started with extra Envoy flags (`--drain-time-s`) and extra bootstrap
    /// flags (`--app-protocol tcp`).
    async fn server_with_envoy_args(
        &self,
        envoy_args: &[&str],
        extra: &[&str],
    ) -> anyhow::Result<Envoy> {
        let args = self.server_args(extra);
        self.sidecar_with_envoy_args("server", free_port(), args, envoy_args)
            .await
    }

    /// The server sidecar's bootstrap flags: its identity, label app=server, inbound in front
    /// of the app, and `extra`.
    fn server_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.identity_args("server");
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend([
            "--label".into(),
            "app=server".into(),
            "--app-port".into(),
            self.app.port().to_string(),
            "--inbound-port".into(),
            self.inbound.to_string(),
        ]);
        args
    }

    /// [`Mesh::server`] with extra bootstrap flags (`--app-protocol tcp`).
    async fn server_with(&self, extra: &[&str]) -> anyhow::Result<Envoy> {
        let args = self.server_args(extra);
        self.sidecar("server", free_port(), args).await
    }

    /// The `client` and `intruder` sidecars at Envoy's default drain time, each served once.
    async fn callers_at_default_drain(&self) -> anyhow::Result<(Envoy, Envoy)> {
        let mut started = Vec::new();
        for sa in ["client", "intruder"] {
            let args = self.identity_args(sa);
            let envoy = self
                .sidecar_with_envoy_args(sa, free_port(), args, DEFAULT_DRAIN)
                .await?;
            envoy.wait_for_response(HOST, 200, "server-app").await?;
            started.push(envoy);
        }
        let intruder = started.pop().expect("two sidecars");
        let client = started.pop().expect("two sidecars");
        Ok((client, intruder))
    }

    /// A calling sidecar with service account `sa`, its outbound listener on `port`.
    pub(crate) async fn caller(&self, sa: &str, port: u16) -> anyhow::Result<Envoy> {
        self.sidecar(sa, port, self.identity_args(sa)).await
    }

    async fn sidecar(&self, sa: &str, mesh_port: u16, args: Vec<String>) -> anyhow::Result<Envoy> {
        self.sidecar_with_envoy_args(sa, mesh_port, args, &[]).await
    }

    /// A sidecar started with extra Envoy flags (`--drain-time-s`).
    async fn sidecar_with_envoy_args(
        &self,
        sa: &str,
        mesh_port: u16,
        mut args: Vec<String>,
        envoy_args: &[&str],
    ) -> anyhow::Result<Envoy> {
        args.extend(["--outbound-port".into(), mesh_port.to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ports = Ports {
            mesh: mesh_port,
            ..self.portolan.ports()
        };
        let node = format!("{sa}-1");
        Envoy::start_with_envoy_args(bin(), ports, &node, sa, &args, envoy_args).await
    }
}

/// `portolan serve` on `config` with `args`; with tokens, KUBECONFIG names their API server.
async fn start_portolan(
    config: &ConfigDir,
    ports: Ports,
    args: &[String],
    tokens: Option<&Tokens>,
) -> anyhow::Result<Portolan> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let kubeconfig = tokens.map(Tokens::kubeconfig);
    let env: Vec<(&str, &str)> = kubeconfig
        .as_deref()
        .map(|k| ("KUBECONFIG", k))
        .into_iter()
        .collect();
    Portolan::start_with_env(bin(), config, ports, &args, &env).await
}

/// A counter of `envoy`, 0 when absent.
pub(crate) async fn counter(envoy: &Envoy, name: &str) -> anyhow::Result<u64> {
    Ok(envoy.stat(name).await?.unwrap_or_default())
}

/// Serial numbers of the workload certificates (`spiffe://...`) Envoy holds (admin `/certs`).
async fn workload_serials(envoy: &Envoy) -> anyhow::Result<BTreeSet<String>> {
    let text = envoy.admin("/certs").await?;
    let certs: serde_json::Value = serde_json::from_str(&text)?;
    let mut out = BTreeSet::new();
    for entry in certs["certificates"].as_array().into_iter().flatten() {
        for cert in entry["cert_chain"].as_array().into_iter().flatten() {
            let spiffe = cert["subject_alt_names"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|san| {
                    san["uri"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("spiffe://"))
                });
            if let (true, Some(serial)) = (spiffe, cert["serial_number"].as_str()) {
                out.insert(serial.to_string());
            }
        }
    }
    Ok(out)
}

/// A plain HTTP request straight to the server's inbound port (no TLS): the status, or the
/// error that ended it.
async fn plaintext(inbound: u16) -> Result<u16, String> {
    client()
        .get(format!("http://127.0.0.1:{inbound}/"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mtls_between_sidecars_and_access_policy_by_identity() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mesh = Mesh::start(
        Identities::Certificates,
        &[
            ("shop/strict.yaml", example("security/strict-mtls.yaml")),
            ("shop/allow.yaml", example("security/allow-client.yaml")),
        ],
        &[],
    )
    .await?;
    let server = mesh.server().await?;
    let client_envoy = mesh.caller("client", mesh.portolan.ports().mesh).await?;

    // The allowed identity gets through, over mutual TLS.
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;
    let handshakes = counter(&server, "listener.inbound.ssl.handshake").await?;
    assert!(
        handshakes >= 1,
        "the server sidecar terminated TLS: {:?}",
        server.stats_containing("ssl").await?
    );
    // The client presented a certificate the server verified.
    assert_eq!(
        counter(&server, "listener.inbound.ssl.no_certificate").await?,
        0
    );
    assert!(mesh.app.hits() >= 1);

    // Plaintext straight to the inbound port is refused in STRICT, by the sidecar (the
    // plaintext chain's route configuration refuses every request, naming the mode).
    let hits = mesh.app.hits();
    let refused = client()
        .get(format!("http://127.0.0.1:{}/", mesh.inbound))
        .send()
        .await?;
    assert_eq!(refused.status().as_u16(), 403);
    assert!(refused.text().await?.contains("STRICT"));
    assert_eq!(mesh.app.hits(), hits, "plaintext reached the application");

    // Another identity is denied by the AccessPolicy: 403 from the server sidecar's RBAC.
    let hits = mesh.app.hits();
    let intruder = mesh.caller("intruder", free_port()).await?;
    intruder.wait_for_response(HOST, 403, "").await?;
    assert_eq!(
        mesh.app.hits(),
        hits,
        "a denied request never reaches the app"
    );
    assert!(counter(&server, "http.inbound.rbac.denied").await? >= 1);
    // ...while the client is still allowed.
    let (status, body) = client_envoy.get(HOST, "/").await?;
    assert_eq!((status, body.as_str()), (200, "server-app"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_accepts_plaintext_and_disable_turns_mtls_off() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mesh = Mesh::start(
        Identities::Certificates,
        &[
            ("shop/strict.yaml", example("security/strict-mtls.yaml")),
            (
                "shop/permissive.yaml",
                example("security/permissive-workload.yaml"),
            ),
        ],
        &[],
    )
    .await?;
    let server = mesh.server().await?;
    let client_envoy = mesh.caller("client", mesh.portolan.ports().mesh).await?;
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;
    let handshakes = counter(&server, "listener.inbound.ssl.handshake").await?;
    assert!(
        handshakes >= 1,
        "the sidecars speak mutual TLS in PERMISSIVE"
    );
    // The workload's PERMISSIVE wins over the namespace's STRICT: plaintext is served too.
    assert_eq!(plaintext(mesh.inbound).await, Ok(200));

    // DISABLE for the namespace (and no workload policy): plaintext both ways, no handshakes.
    mesh.config.remove("shop/permissive.yaml")?;
    mesh.config.write(
        "shop/strict.yaml",
        &example("security/strict-mtls.yaml").replace("STRICT", "DISABLE"),
    )?;
    eventually("the client's cluster to drop TLS", WAIT, || async {
        let cluster = client_envoy
            .cluster_config("outbound|80||server.shop.svc.cluster.local")
            .await
            .map_err(|e| e.to_string())?;
        match cluster {
            Some(c) if c.get("transport_socket").is_none() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    eventually("the server to serve plaintext only", WAIT, || async {
        match (
            plaintext(mesh.inbound).await,
            client_envoy.get(HOST, "/").await,
        ) {
            (Ok(200), Ok((200, _))) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let after = counter(&server, "listener.inbound.ssl.handshake").await?;
    for _ in 0..5 {
        let (status, _) = client_envoy.get(HOST, "/").await?;
        assert_eq!(status, 200);
    }
    assert_eq!(
        counter(&server, "listener.inbound.ssl.handshake").await?,
        after,
        "no TLS in DISABLE"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_rbac_guards_a_tcp_workload() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    // The server's application is declared TCP: its inbound listener is a TCP proxy behind
    // network RBAC; PERMISSIVE lets plaintext connections reach the RBAC filters too.
    let mesh = Mesh::start(
        Identities::Certificates,
        &[
            ("shop/strict.yaml", example("security/strict-mtls.yaml")),
            (
                "shop/permissive.yaml",
                example("security/permissive-workload.yaml"),
            ),
        ],
        &[],
    )
    .await?;
    let server = mesh.server_with(&["--app-protocol", "tcp"]).await?;
    let client_envoy = mesh.caller("client", mesh.portolan.ports().mesh).await?;
    // No policy: mutual TLS and plaintext both reach the app through the TCP proxy.
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;
    assert!(counter(&server, "listener.inbound.ssl.handshake").await? >= 1);
    assert_eq!(plaintext(mesh.inbound).await, Ok(200));

    // ALLOW client only (the rule's HTTP fields do not apply to TCP, so a TCP rule is
    // written without them): plaintext has no identity and is cut off; the intruder too.
    let allow_tcp = "apiVersion: portolan.dev/v1alpha1\nkind: AccessPolicy\nmetadata:\n  name: server-tcp\n  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: server\n  action: ALLOW\n  rules:\n  - from:\n      serviceAccounts: [client]\n";
    mesh.config.write("shop/allow-tcp.yaml", allow_tcp)?;
    eventually("plaintext to be cut off by network RBAC", WAIT, || async {
        match plaintext(mesh.inbound).await {
            Err(e) => Ok(e),
            Ok(s) => Err(format!("answered {s}")),
        }
    })
    .await?;
    // Open plaintext connections are closed (the plaintext check fails); a new one is refused
    // by network RBAC in the plaintext chain.
    assert!(plaintext(mesh.inbound).await.is_err());
    assert!(
        counter(&server, "inbound.rbac.denied").await? >= 1,
        "{:?}",
        server.stats_containing("rbac").await?
    );
    let (status, body) = client_envoy.get(HOST, "/").await?;
    assert_eq!((status, body.as_str()), (200, "server-app"));
    // A second client sidecar (new connections, checked by the new rules) is served too: the
    // rules for callers Portolan does not know find the caller's ID behind the TLS chain.
    let second = mesh.caller("client", free_port()).await?;
    second.wait_for_response(HOST, 200, "server-app").await?;
    // The intruder is no caller Portolan knows (no Service of its service account): network
    // RBAC refuses it.
    let intruder = mesh.caller("intruder", free_port()).await?;
    let hits = mesh.app.hits();
    let (status, _) = intruder.get(HOST, "/").await?;
    assert_eq!(
        status, 503,
        "the intruder's connection is closed by the server sidecar"
    );
    assert_eq!(mesh.app.hits(), hits);
    assert!(
        counter(&server, "inbound.rbac.denied").await? >= 1,
        "{:?}",
        server.stats_containing("rbac").await?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_deny_refuses_everyone_until_an_allow_names_the_caller() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mesh = Mesh::start(
        Identities::Certificates,
        &[
            ("shop/strict.yaml", example("security/strict-mtls.yaml")),
            ("shop/deny.yaml", example("security/default-deny.yaml")),
        ],
        &[],
    )
    .await?;
    let _server = mesh.server().await?;
    let client_envoy = mesh.caller("client", mesh.portolan.ports().mesh).await?;
    client_envoy.wait_for_response(HOST, 403, "").await?;
    assert_eq!(mesh.app.hits(), 0);
    mesh.config
        .write("shop/allow.yaml", &example("security/allow-client.yaml"))?;
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;
    // A DENY wins over that ALLOW.
    mesh.config.write(
        "shop/deny-client.yaml",
        &example("security/deny-admin.yaml")
            .replace("namespaces: [batch]", "serviceAccounts: [client]")
            .replace("\"/admin*\"", "\"/*\""),
    )?;
    client_envoy.wait_for_response(HOST, 403, "").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_during_a_stream_of_requests_without_a_failure() -> anyhow::Result<()> {
    // Certificates expire on a schedule: never beside a test that loads the machine (they
    // run alone).
    let _shared = portolan_e2e::serial::shared().await;
    // Certificates live 4 s and are replaced after 2 s; mesh connections last at most 4 s,
    // so the requests below keep opening new mutual TLS connections with rotated certificates.
    let mesh = Mesh::start(
        Identities::Certificates,
        &[("shop/strict.yaml", example("security/strict-mtls.yaml"))],
        &["--workload-cert-lifetime", "4s"],
    )
    .await?;
    let server = mesh.server().await?;
    let client_envoy = mesh.caller("client", mesh.portolan.ports().mesh).await?;
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;
    let handshakes = counter(&server, "listener.inbound.ssl.handshake").await?;

    let mut server_serials = workload_serials(&server).await?;
    let mut client_serials = workload_serials(&client_envoy).await?;
    let (mut ok, mut failed) = (0u32, Vec::new());
    let start = Instant::now();
    // About three lifetimes, a bounded number of requests.
    while start.elapsed() < Duration::from_secs(12) && ok + (failed.len() as u32) < 2000 {
        match client_envoy.get(HOST, "/").await {
            Ok((200, body)) if body == "server-app" => ok += 1,
            other => failed.push(format!("{other:?}")),
        }
        server_serials.extend(workload_serials(&server).await?);
        client_serials.extend(workload_serials(&client_envoy).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok >= 50, "only {ok} requests");
    assert!(
        server_serials.len() >= 3 && client_serials.len() >= 3,
        "certificates rotated: server {server_serials:?}, client {client_serials:?}"
    );
    let new_handshakes = counter(&server, "listener.inbound.ssl.handshake").await? - handshakes;
    assert!(
        new_handshakes >= 2,
        "new mutual TLS connections were made with rotated certificates: {new_handshakes}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_node_metadata_mode_gives_claimed_identities() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    // Development only: no xDS TLS at all; the bootstrap claims namespace and service account.
    let mesh = Mesh::start(
        Identities::NodeMetadata,
        &[
            ("shop/strict.yaml", example("security/strict-mtls.yaml")),
            ("shop/allow.yaml", example("security/allow-client.yaml")),
        ],
        &[],
    )
    .await?;
    let server = mesh.server().await?;
    let client_envoy = mesh.caller("client", mesh.portolan.ports().mesh).await?;
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;
    assert!(counter(&server, "listener.inbound.ssl.handshake").await? >= 1);
    let intruder = mesh.caller("intruder", free_port()).await?;
    intruder.wait_for_response(HOST, 403, "").await?;
    Ok(())
}

/// Per upstream cluster of a calling sidecar: connections ever opened to it
/// (`cluster.NAME.upstream_cx_total` of the clusters to `server`).
async fn upstream_connections(envoy: &Envoy) -> anyhow::Result<Vec<(String, u64)>> {
    let all = envoy.stats_containing("upstream_cx_total").await?;
    Ok(all
        .into_iter()
        .filter(|(name, n)| name.contains("server.shop") && *n > 0)
        .collect())
}

/// Eight rounds of four concurrent requests through a caller, all answered 200.
async fn warm(envoy: &Envoy) -> anyhow::Result<()> {
    for _ in 0..8 {
        let replies = futures::future::join_all((0..4).map(|_| envoy.get(HOST, "/"))).await;
        for r in replies {
            anyhow::ensure!(r?.0 == 200, "warming up a caller");
        }
    }
    Ok(())
}

/// Requests through a caller sidecar to [`HOST`], one after the other, until stopped.
struct BackToBack {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Result<u16, String>>>,
}

impl BackToBack {
    fn start(caller: &Envoy) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (url, flag) = (
            format!("http://127.0.0.1:{}/", caller.mesh_port()),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client().get(&url).header("host", HOST).send().await;
                statuses.push(r.map(|r| r.status().as_u16()).map_err(|e| e.to_string()));
            }
            statuses
        });
        Self { stop, task }
    }

    /// Stops and returns every request's status (or error).
    async fn stop(self) -> anyhow::Result<Vec<Result<u16, String>>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// Envoy's own default drain time: what a sidecar has unless someone changes it.
const DEFAULT_DRAIN: &[&str] = &["--drain-time-s", "600"];

/// An AccessPolicy change reaches connections opened before it, at Envoy's default drain time
/// (600 s), without cutting an allowed request: the rules travel per virtual host over RDS, so
/// the server sidecar's inbound listener is not modified and its open connections see the new
/// rules at their next request. Both callers keep their connections throughout (the server
/// accepts no new one); the allowed caller's requests, sent back to back across the change,
/// all answer 200. The listener changes only in its passthrough chains (their network RBAC,
/// for ports no Service declares), a filter-chain-only update made in place, which drains
/// those chains only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_reaches_open_connections_without_cutting_allowed_requests()
-> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mesh = Mesh::start(
        Identities::Certificates,
        &[("shop/strict.yaml", example("security/strict-mtls.yaml"))],
        &[],
    )
    .await?;
    let server = mesh.server_with_envoy_args(DEFAULT_DRAIN, &[]).await?;
    let (client_envoy, intruder) = mesh.callers_at_default_drain().await?;
    // Open a few connections from each caller first, more than the test ever uses at once,
    // so that every later request rides a connection opened before the change.
    warm(&client_envoy).await?;
    warm(&intruder).await?;
    let modified = counter(&server, "listener_manager.listener_modified").await?;
    let in_place = counter(&server, "listener_manager.listener_in_place_updated").await?;
    let intruder_connections = upstream_connections(&intruder).await?;
    let client_connections = upstream_connections(&client_envoy).await?;

    // The allowed caller sends back to back until told to stop.
    let allowed = BackToBack::start(&client_envoy);

    let changed = Instant::now();
    mesh.config
        .write("shop/allow.yaml", &example("security/allow-client.yaml"))?;
    intruder.wait_for_response(HOST, 403, "").await?;
    let took = changed.elapsed();
    // Every connection the intruder holds now refuses it, not only the first.
    for _ in 0..20 {
        assert_eq!(intruder.get(HOST, "/").await?.0, 403);
    }
    // The allowed caller goes on for as many requests again after the change has landed.
    let before = intruder_connections.len();
    tokio::time::sleep(took.max(Duration::from_millis(200))).await;
    let statuses = allowed.stop().await?;
    eprintln!(
        "policy change -> intruder refused on its open connection in {took:?}; {} allowed requests across it",
        statuses.len()
    );
    assert!(!statuses.is_empty() && before > 0);
    let cut: Vec<_> = statuses.iter().filter(|s| **s != Ok(200)).collect();
    assert!(cut.is_empty(), "allowed requests cut: {cut:?}");
    // The 403 came over a connection the intruder's sidecar had opened before the change,
    // and the allowed caller's requests over the ones it had.
    assert_eq!(upstream_connections(&intruder).await?, intruder_connections);
    assert_eq!(
        upstream_connections(&client_envoy).await?,
        client_connections
    );
    let modified = counter(&server, "listener_manager.listener_modified").await? - modified;
    let in_place = counter(&server, "listener_manager.listener_in_place_updated").await? - in_place;
    assert_eq!(
        modified, in_place,
        "the policy reached the listener only by filter-chain-only updates"
    );
    Ok(())
}

/// The callers' ServiceAccounts: Portolan knows them as callers (the inbound listener's TCP
/// ports give each known caller a cluster of its own).
fn caller_accounts() -> String {
    ["client", "intruder"]
        .map(|sa| {
            format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {sa}\n  namespace: shop\n"
            )
        })
        .join("---\n")
}

/// On a TCP port, an AccessPolicy change closes the open connections it refuses within a
/// second, at Envoy's default drain time (600 s), and no other: the server's application is
/// TCP (its inbound port a TCP proxy behind network RBAC, which decides only when a
/// connection starts), each known caller's connections go through a health-checked cluster
/// of their own, and the policy change turns the intruder's check to 503 (and its chain to a
/// refusal, updated in place: no other chain is drained). The intruder's
/// sidecar had pooled connections opened before the change: without the check they would
/// serve it for the whole drain time. The allowed caller's requests, back to back across the
/// change, all answer 200 over the connections it had opened before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_closes_the_refused_callers_open_tcp_connections_and_no_others()
-> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mesh = Mesh::start(
        Identities::Certificates,
        &[
            ("shop/strict.yaml", example("security/strict-mtls.yaml")),
            ("shop/callers.yaml", caller_accounts()),
        ],
        &[],
    )
    .await?;
    let server = mesh
        .server_with_envoy_args(DEFAULT_DRAIN, &["--app-protocol", "tcp"])
        .await?;
    let (client_envoy, intruder) = mesh.callers_at_default_drain().await?;
    // The checks of both callers' clusters pass before the change.
    let checked = |sa: &'static str, stat: &'static str| {
        let server = &server;
        async move {
            let name = format!("from|shop/{sa}.health_check.{stat}");
            let stats = server.stats_containing(&name).await?;
            anyhow::Ok(stats.into_iter().map(|(_, n)| n).sum::<u64>())
        }
    };
    eventually("both callers' checks to pass", WAIT, || async {
        match (
            checked("client", "success").await,
            checked("intruder", "success").await,
        ) {
            (Ok(a), Ok(b)) if a > 0 && b > 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    warm(&client_envoy).await?;
    warm(&intruder).await?;
    let client_connections = upstream_connections(&client_envoy).await?;
    assert!(!client_connections.is_empty());
    // (A check may fail at start, before the listener answering them is up.)
    let client_failures = checked("client", "failure").await?;
    let intruder_failures = checked("intruder", "failure").await?;

    let modified = counter(&server, "listener_manager.listener_modified").await?;
    let in_place = counter(&server, "listener_manager.listener_in_place_updated").await?;
    let allowed = BackToBack::start(&client_envoy);
    let deny = "apiVersion: portolan.dev/v1alpha1\nkind: AccessPolicy\nmetadata:\n  name: no-intruder\n  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: server\n  action: DENY\n  rules:\n  - from:\n      serviceAccounts: [intruder]\n";
    let changed = Instant::now();
    mesh.config.write("shop/deny.yaml", deny)?;
    // The intruder's pooled connections are closed by the server's sidecar; its next
    // connection is refused by network RBAC.
    let refusal = eventually("the intruder to be refused", WAIT, || async {
        match intruder.get(HOST, "/").await {
            Ok((200, _)) => Err("served".to_string()),
            other => Ok(other.map(|(s, _)| s).map_err(|e| e.to_string())),
        }
    })
    .await?;
    let took = changed.elapsed();
    for _ in 0..10 {
        assert_ne!(intruder.get(HOST, "/").await?.0, 200);
    }
    tokio::time::sleep(took.max(Duration::from_millis(500))).await;
    let statuses = allowed.stop().await?;
    eprintln!(
        "TCP: policy change -> intruder's open connections closed and it refused ({refusal:?}) in {took:?}; {} allowed requests across it",
        statuses.len()
    );
    let cut: Vec<_> = statuses.iter().filter(|s| **s != Ok(200)).collect();
    assert!(cut.is_empty(), "allowed requests cut: {cut:?}");
    assert!(!statuses.is_empty());
    assert_eq!(
        upstream_connections(&client_envoy).await?,
        client_connections,
        "the allowed caller kept its connections"
    );
    // It was the check: the intruder's cluster failed it, the client's never did.
    assert!(checked("intruder", "failure").await? >= intruder_failures + 2);
    assert_eq!(checked("client", "failure").await?, client_failures);
    // Only in-place (filter-chain-only) listener updates: the client's chains were not drained.
    let modified = counter(&server, "listener_manager.listener_modified").await? - modified;
    let in_place = counter(&server, "listener_manager.listener_in_place_updated").await? - in_place;
    assert!(modified >= 1);
    assert_eq!(
        modified, in_place,
        "listeners replaced, not updated in place"
    );
    Ok(())
}

/// WebSocket through the mesh: a session opened through the client sidecar's outbound
/// listener, across STRICT mutual TLS to the server sidecar's inbound listener and on to a
/// WebSocket app, echoes text and binary messages, and still does after Envoy's default route
/// timeout (15 s) has passed with the session idle; the AccessPolicy refuses the upgrade of a
/// denied identity (403) before it reaches the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_cross_strict_mtls_and_access_policy() -> anyhow::Result<()> {
    use portolan_e2e::protocols::{ws_connect, ws_echo};
    let _shared = portolan_e2e::serial::shared().await;
    let app = Upstream::start_ws("server-app").await?;
    let mesh = Mesh::start_with_app(
        app,
        Identities::Certificates,
        &[
            ("shop/strict.yaml", example("security/strict-mtls.yaml")),
            ("shop/allow.yaml", example("security/allow-client.yaml")),
        ],
        &[],
    )
    .await?;
    let server = mesh.server().await?;
    let client_port = mesh.portolan.ports().mesh;
    let _client = mesh.caller("client", client_port).await?;

    // The sidecars are programmed once a session opens (the first attempts may find no route).
    let mut ws = eventually("a WebSocket session through the mesh", WAIT, || async {
        ws_connect("127.0.0.1", client_port, HOST, "/api/chat")
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    ws_echo(&mut ws, "hello through the mesh").await?;
    assert_eq!(
        mesh.app.path_hits("/api/chat"),
        1,
        "one upgrade reached the app"
    );
    assert!(
        counter(&server, "listener.inbound.ssl.handshake").await? >= 1,
        "the session crossed mutual TLS"
    );
    assert_eq!(
        counter(&server, "http.inbound.downstream_cx_upgrades_total").await?,
        1
    );

    // An idle session outlives the route timeout a request would have had.
    let opened = Instant::now();
    let route_timeout = Duration::from_secs(16);
    tokio::time::sleep(route_timeout.saturating_sub(opened.elapsed())).await;
    ws_echo(&mut ws, "still here").await?;
    ws.close(None).await?;

    // A denied identity's upgrade is refused by the server sidecar's RBAC.
    let intruder_port = free_port();
    let _intruder = mesh.caller("intruder", intruder_port).await?;
    let refused = eventually("the intruder's upgrade refused with 403", WAIT, || async {
        match ws_connect("127.0.0.1", intruder_port, HOST, "/api/chat").await {
            Err(e) if e.to_string().contains("403") => Ok(()),
            other => Err(format!("{:?}", other.map(|_| "upgraded"))),
        }
    })
    .await;
    refused?;
    assert_eq!(
        mesh.app.path_hits("/api/chat"),
        1,
        "the refused upgrade never reached the app"
    );
    Ok(())
}

/// A change of PeerAuthentication mode from PERMISSIVE to STRICT reaches a plaintext
/// connection opened before it, at Envoy's default drain time (600 s), within a second: the
/// plaintext filter chain's route configuration (`inbound-plaintext`) becomes a 403 refusal
/// over RDS, which the drained chain still follows, so the next request on that same
/// connection is refused, and new plaintext connections fail (no plaintext chain). Requests
/// over mutual TLS go on being answered, none cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_reaches_open_plaintext_connections_without_cutting_mtls_requests()
-> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let mode = |m: &str| {
        format!(
            "apiVersion: portolan.dev/v1alpha1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: shop\nspec:\n  mtls:\n    mode: {m}\n"
        )
    };
    let mesh = Mesh::start(
        Identities::Certificates,
        &[("shop/mode.yaml", mode("PERMISSIVE"))],
        &[],
    )
    .await?;
    let server = mesh.server_with_envoy_args(DEFAULT_DRAIN, &[]).await?;
    let client_args = mesh.identity_args("client");
    let client_envoy = mesh
        .sidecar_with_envoy_args("client", free_port(), client_args, DEFAULT_DRAIN)
        .await?;
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;

    // One plaintext HTTP/1.1 connection straight to the inbound port, kept open.
    let mut plain =
        portolan_e2e::protocols::KeptConnection::open("127.0.0.1", mesh.inbound).await?;
    let (status, body) = plain.get(HOST, "/").await?;
    assert_eq!(
        (status, body.as_str()),
        (200, "server-app"),
        "PERMISSIVE answers plaintext"
    );
    let plaintext_chain_connections =
        counter(&server, "listener.inbound.downstream_cx_total").await?;

    // Requests over mutual TLS, back to back, across the change.
    let allowed = BackToBack::start(&client_envoy);

    let changed = Instant::now();
    mesh.config.write("shop/mode.yaml", &mode("STRICT"))?;
    let deadline = changed + WAIT;
    let refused = loop {
        let (status, body) = plain.get(HOST, "/").await?;
        if status == 403 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        anyhow::ensure!(
            Instant::now() < deadline,
            "plaintext still answered after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = changed.elapsed();
    assert!(refused.contains("STRICT"), "{refused}");
    // Every later request on that connection is refused too.
    for _ in 0..10 {
        assert_eq!(plain.get(HOST, "/").await?.0, 403);
    }
    // A new plaintext connection is refused too.
    assert_eq!(plaintext(mesh.inbound).await, Ok(403));
    tokio::time::sleep(took.max(Duration::from_millis(200))).await;
    let statuses = allowed.stop().await?;
    eprintln!(
        "STRICT -> open plaintext connection refused in {took:?}; {} mTLS requests across it",
        statuses.len()
    );
    let cut: Vec<_> = statuses.iter().filter(|s| **s != Ok(200)).collect();
    assert!(
        !statuses.is_empty() && cut.is_empty(),
        "mTLS requests cut: {cut:?}"
    );
    assert!(
        counter(&server, "listener.inbound.downstream_cx_total").await?
            >= plaintext_chain_connections
    );
    Ok(())
}
