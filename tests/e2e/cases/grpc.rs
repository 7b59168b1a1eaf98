//! End to end, proxyless gRPC: a real gRPC client (grpcio's xDS resolver, from PyPI) gets its
//! listener, routes, clusters and endpoints from a real `portolan serve`, and balances across
//! two real gRPC servers; when the TrafficRoute's weights change from 50/50 to 100/0 in the
//! watched directory, the same client process follows.
//!
//! A proxyless client proves its service account with its token file alone (gRFC A97 JWT call
//! credentials from `portolan bootstrap --grpc --xds-token-file`, over TLS), verified with
//! TokenReview at the stand-in API server; a revoked token's client is refused.
//!
//! The client and the servers are `tests/e2e/grpc/xds_probe.py`, run with the Python of
//! `.venv` (`scripts/install-tools.sh` installs grpcio there), or `PORTOLAN_GRPC_PYTHON`.

use crate::bin;
use portolan_e2e::portolan::{ConfigDir, Portolan, Ports};
use portolan_e2e::{eventually, grpc_python, workspace_root};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

fn probe() -> PathBuf {
    workspace_root().join("tests/e2e/grpc/xds_probe.py")
}

/// A Python process of `xds_probe.py`, killed on drop.
struct Probe {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Probe {
    fn start(args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(grpc_python());
        cmd.arg(probe())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
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
        anyhow::ensure!(self.stdout.read_line(&mut line)? > 0, "probe exited");
        Ok(line.trim().to_string())
    }

    /// A gRPC server answering with `name`, and its port.
    fn server(name: &str) -> anyhow::Result<(Self, u16)> {
        let mut p = Self::start(&["serve", name], &[])?;
        let port = p.line()?.parse()?;
        Ok((p, port))
    }

    /// `n` RPCs from the client; replies counted by upstream name (or `error:CODE`).
    fn call(&mut self, n: usize) -> anyhow::Result<BTreeMap<String, usize>> {
        writeln!(self.stdin, "call {n}")?;
        self.stdin.flush()?;
        Ok(serde_json::from_str(&self.line()?)?)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` RPCs, and their counts when `done` holds for them.
fn tally(
    client: &mut Probe,
    n: usize,
    done: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> Result<BTreeMap<String, usize>, String> {
    let counts = client.call(n).map_err(|e| e.to_string())?;
    if done(&counts) {
        Ok(counts)
    } else {
        Err(format!("{counts:?}"))
    }
}

fn slice(name: &str, version: &str, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo-{name}\n  namespace: default\n  labels:\n    kubernetes.io/service-name: echo\n    version: {version}\naddressType: IPv4\nendpoints:\n- addresses: [\"127.0.0.1\"]\n  conditions: {{ready: true}}\nports:\n- name: grpc\n  port: {port}\n"
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\n  namespace: default\nspec:\n  ports:\n  - name: grpc\n    port: 50051\n    appProtocol: grpc\n---\napiVersion: portolan.dev/v1alpha1\nkind: TrafficPolicy\nmetadata:\n  name: echo\n  namespace: default\nspec:\n  host: echo\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n  - name: v2\n    labels:\n      version: v2\n";

fn split(v1: u32, v2: u32) -> String {
    format!(
        "apiVersion: portolan.dev/v1alpha1\nkind: TrafficRoute\nmetadata:\n  name: echo\n  namespace: default\nspec:\n  hosts: [echo]\n  http:\n  - name: split\n    timeout: 10s\n    retries:\n      attempts: 2\n      retryOn: unavailable\n    route:\n    - destination:\n        host: echo\n        subset: v1\n      weight: {v1}\n    - destination:\n        host: echo\n        subset: v2\n      weight: {v2}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_client_balances_and_follows_a_weight_change() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let (_a, port_a) = Probe::server("echo-a")?;
    let (_b, port_b) = Probe::server("echo-b")?;
    let config = ConfigDir::new()?;
    config.write("echo.yaml", SERVICE)?;
    config.write(
        "slices.yaml",
        &format!(
            "{}---\n{}",
            slice("a", "v1", port_a),
            slice("b", "v2", port_b)
        ),
    )?;
    config.write("route.yaml", &split(50, 50))?;
    let portolan = Portolan::start(bin(), &config, Ports::free()).await?;

    let dir = tempfile::tempdir()?;
    let bootstrap = dir.path().join("bootstrap.json");
    let out = Command::new(bin())
        .args([
            "bootstrap",
            "--grpc",
            "--node-id",
            "grpc-1",
            "--cluster",
            "grpc",
        ])
        .arg("--xds-address")
        .arg(format!("127.0.0.1:{}", portolan.ports().xds))
        .output()?;
    anyhow::ensure!(out.status.success(), "bootstrap: {out:?}");
    // Without the metadata that marks the node, so the client is told by gRPC's own user
    // agent (`gRPC C-core ...`), as a hand-written bootstrap would be.
    let mut json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let metadata = json["node"]["metadata"]
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("bootstrap without node metadata"))?;
    anyhow::ensure!(
        metadata.remove("portolan.dev/client").is_some(),
        "bootstrap without portolan.dev/client"
    );
    std::fs::write(&bootstrap, serde_json::to_vec(&json)?)?;
    let mut client = Probe::start(
        &["client", "xds:///echo.default:50051"],
        &[("GRPC_XDS_BOOTSTRAP", bootstrap.as_os_str())],
    )?;

    let counts = eventually("both upstreams answer", Duration::from_secs(30), || {
        std::future::ready(tally(&mut client, 100, |c| {
            c.get("echo-a").unwrap_or(&0) + c.get("echo-b").unwrap_or(&0) == 100
        }))
    })
    .await?;
    for name in ["echo-a", "echo-b"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((25..=75).contains(&n), "50/50 split, got {counts:?}");
    }

    config.write("route.yaml", &split(100, 0))?;
    let counts = eventually("the client follows 100/0", Duration::from_secs(30), || {
        std::future::ready(tally(&mut client, 50, |c| c.get("echo-a") == Some(&50)))
    })
    .await?;
    assert_eq!(counts.len(), 1, "{counts:?}");
    Ok(())
}

/// `portolan bootstrap --grpc` for node `node` of group (and service account) `sa` over TLS
/// to `xds`, proving it with the token file `token`, written to `dir`.
fn token_bootstrap(
    dir: &std::path::Path,
    xds: u16,
    tls: &portolan_e2e::xds_tls::TlsDir,
    node: &str,
    sa: &str,
    token: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    let out = Command::new(bin())
        .args(["bootstrap", "--grpc", "--node-id", node, "--cluster", sa])
        .arg("--xds-address")
        .arg(format!("localhost:{xds}"))
        .arg("--xds-ca")
        .arg(tls.path("ca.crt"))
        .arg("--xds-token-file")
        .arg(token)
        .output()?;
    anyhow::ensure!(out.status.success(), "bootstrap: {out:?}");
    let path = dir.join(format!("{node}.json"));
    std::fs::write(&path, &out.stdout)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxyless_client_proves_its_service_account_with_its_token() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let (_a, port_a) = Probe::server("echo-a")?;
    let config = ConfigDir::new()?;
    config.write("echo.yaml", SERVICE)?;
    config.write("slices.yaml", &slice("a", "v1", port_a))?;
    // Portolan over TLS (a certificate for localhost, as gRPC checks the target's name),
    // verifying tokens with the stand-in API server.
    let ca = portolan_e2e::tls::TestCa::new()?;
    let tls = portolan_e2e::xds_tls::TlsDir::new(&ca)?;
    tls.write_pair("server", &ca.issue(&["localhost"])?)?;
    let tokens = portolan_e2e::tokens::Tokens::start().await?;
    let mut args = tls.serve_args(false);
    args.push("--xds-token-review".to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let kubeconfig = tokens.kubeconfig();
    let portolan = Portolan::start_with_env(
        bin(),
        &config,
        Ports::free(),
        &args,
        &[("KUBECONFIG", kubeconfig.as_str())],
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let xds = portolan.ports().xds;
    // The kubelet writes a projected token without a newline; gRPC sends the file as it is.
    let token = tokens.issue("payments", "shop", "payments")?;
    std::fs::write(tokens.file("payments"), &token)?;
    let bootstrap = token_bootstrap(
        dir.path(),
        xds,
        &tls,
        "grpc-1",
        "payments",
        &tokens.file("payments"),
    )?;
    let env = |bootstrap: &PathBuf| -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("GRPC_XDS_BOOTSTRAP", bootstrap.clone().into_os_string()),
            ("GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS", "true".into()),
        ]
    };
    let start = |bootstrap: &PathBuf| {
        let env = env(bootstrap);
        let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        Probe::start(&["client", "xds:///echo.default:50051"], &env)
    };
    let mut client = start(&bootstrap)?;
    eventually(
        "the token's client is served",
        Duration::from_secs(30),
        || std::future::ready(tally(&mut client, 10, |c| c.get("echo-a") == Some(&10))),
    )
    .await?;
    // The token itself reached Portolan (no exchange) and was reviewed; the verified service
    // account is the client's identity.
    assert!(
        tokens.api.reviews().contains(&token),
        "the token was reviewed"
    );
    let proxies = portolan.get_text("/debug/proxies").await?;
    assert!(
        proxies.contains("ns=shop;sa=payments"),
        "the client's group carries its verified identity: {proxies}"
    );

    // Another client whose token the API server no longer knows is refused, with the reason
    // counted: its RPCs never reach the server.
    let revoked = tokens.issue("revoked", "shop", "payments")?;
    tokens.api.revoke(&revoked);
    std::fs::write(tokens.file("revoked"), &revoked)?;
    let bootstrap = token_bootstrap(
        dir.path(),
        xds,
        &tls,
        "grpc-2",
        "payments",
        &tokens.file("revoked"),
    )?;
    let mut refused = start(&bootstrap)?;
    // (gRPC starts its xDS client with the first RPC.)
    let counts = refused.call(3)?;
    assert!(
        !counts.contains_key("echo-a"),
        "the revoked token's client reached the server: {counts:?}"
    );
    let invalid = "portolan_xds_auth_refusals_total{reason=\"invalid\"}";
    eventually(
        "the revoked token to be refused",
        Duration::from_secs(30),
        || async {
            match portolan.metric(invalid).await {
                Ok(Some(n)) if n >= 1.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    Ok(())
}
