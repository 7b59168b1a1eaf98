//! A stock Envoy started from `portolan bootstrap` output.

use crate::http::{self, Reply};
use crate::portolan::{Ports, tail};
use crate::{client, eventually, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// How Envoy talks xDS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Sotw,
    Delta,
}

pub struct Envoy {
    _child: Child,
    admin: String,
    mesh_port: u16,
    log: PathBuf,
    /// Envoy's stdout (where the stdout access logger writes).
    stdout: PathBuf,
    _dir: tempfile::TempDir,
}

/// The Envoy binary: `ENVOY_BIN`, else the workspace's `.venv/bin/envoy`, else `envoy` on PATH.
pub fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/envoy");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("envoy")
}

impl Envoy {
    /// Starts Envoy as node `node_id` in proxy group `cluster`, pointed at Portolan's xDS port,
    /// and waits until its admin `/ready` says LIVE (initial CDS and LDS received).
    pub async fn start(
        portolan_bin: &Path,
        ports: Ports,
        node_id: &str,
        cluster: &str,
        protocol: Protocol,
    ) -> anyhow::Result<Self> {
        Self::start_with(portolan_bin, ports, node_id, cluster, protocol, &[]).await
    }

    /// Like [`Envoy::start`], with extra `portolan bootstrap` flags (`--zone`, `--label k=v`).
    pub async fn start_with(
        portolan_bin: &Path,
        ports: Ports,
        node_id: &str,
        cluster: &str,
        protocol: Protocol,
        bootstrap_args: &[&str],
    ) -> anyhow::Result<Self> {
        let debug = [
            "--log-level",
            "info",
            "--component-log-level",
            "upstream:debug,config:debug",
        ];
        let wait = Some(Duration::from_secs(30));
        Self::spawn(
            portolan_bin,
            ports,
            node_id,
            cluster,
            protocol,
            bootstrap_args,
            &debug,
            wait,
        )
        .await
    }

    /// Like [`Envoy::start_with`], with extra Envoy command-line flags; `--drain-time-s` among
    /// them replaces the harness's 1 s (e.g. Envoy's default, 600 s).
    pub async fn start_with_envoy_args(
        portolan_bin: &Path,
        ports: Ports,
        node_id: &str,
        cluster: &str,
        bootstrap_args: &[&str],
        envoy_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "--log-level",
            "info",
            "--component-log-level",
            "upstream:debug,config:debug",
        ];
        args.extend(envoy_args);
        let wait = Some(Duration::from_secs(30));
        let protocol = Protocol::Sotw;
        Self::spawn(
            portolan_bin,
            ports,
            node_id,
            cluster,
            protocol,
            bootstrap_args,
            &args,
            wait,
        )
        .await
    }

    /// Like [`Envoy::start_with`] for benchmarks: logs at `warn` only (no per-resource debug
    /// lines) and waits up to `ready_timeout` for `/ready` (a proxy ingesting 10,000 clusters).
    pub async fn start_quiet(
        portolan_bin: &Path,
        ports: Ports,
        node_id: &str,
        cluster: &str,
        protocol: Protocol,
        bootstrap_args: &[&str],
        ready_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let quiet = ["--log-level", "warn"];
        let (args, wait) = (bootstrap_args, Some(ready_timeout));
        Self::spawn(
            portolan_bin,
            ports,
            node_id,
            cluster,
            protocol,
            args,
            &quiet,
            wait,
        )
        .await
    }

    /// Like [`Envoy::start_with`], without waiting for `/ready`: for a proxy that Portolan
    /// refuses (its log says why).
    pub async fn start_refused(
        portolan_bin: &Path,
        ports: Ports,
        node_id: &str,
        cluster: &str,
        bootstrap_args: &[&str],
    ) -> anyhow::Result<Self> {
        let debug = ["--log-level", "info"];
        let (protocol, args) = (Protocol::Sotw, bootstrap_args);
        Self::spawn(
            portolan_bin,
            ports,
            node_id,
            cluster,
            protocol,
            args,
            &debug,
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn spawn(
        portolan_bin: &Path,
        ports: Ports,
        node_id: &str,
        cluster: &str,
        protocol: Protocol,
        bootstrap_args: &[&str],
        log_args: &[&str],
        ready_timeout: Option<Duration>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut bootstrap = std::process::Command::new(portolan_bin);
        bootstrap.args(["bootstrap", "--node-id", node_id, "--cluster", cluster]);
        bootstrap.args(bootstrap_args);
        bootstrap.args(["--xds-address", &format!("127.0.0.1:{}", ports.xds)]);
        bootstrap.args(["--admin-address", "127.0.0.1:0"]);
        if protocol == Protocol::Delta {
            bootstrap.arg("--delta");
        }
        let out = bootstrap.output()?;
        anyhow::ensure!(
            out.status.success(),
            "portolan bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(&config, &out.stdout)?;
        let admin_path = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        let stdout = dir.path().join("envoy.stdout");
        let stdout_file = std::fs::File::create(&stdout)?;
        let bin = envoy_bin();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("--use-dynamic-base-id")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(log_args)
            .arg("--log-path")
            .arg(&log)
            .args(if log_args.contains(&"--drain-time-s") {
                &[][..]
            } else {
                &["--drain-time-s", "1"][..]
            })
            .stdout(stdout_file)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start Envoy ({}): {e}. Run scripts/test.sh, which installs it, or set ENVOY_BIN",
                    bin.display()
                )
            })?;
        let mut envoy = Self {
            _child: child,
            admin: String::new(),
            mesh_port: ports.mesh,
            log,
            stdout,
            _dir: dir,
        };
        let admin = eventually("envoy admin address", Duration::from_secs(20), || {
            let p = admin_path.clone();
            async move {
                match std::fs::read_to_string(&p) {
                    Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                    _ => Err("not written yet".to_string()),
                }
            }
        })
        .await;
        envoy.admin = match admin {
            Ok(a) => a,
            Err(e) => anyhow::bail!("{e}\n{}", envoy.log_tail()),
        };
        if let Some(timeout) = ready_timeout
            && let Err(e) = envoy.wait_ready(timeout).await
        {
            anyhow::bail!("{e}\nenvoy log:\n{}", envoy.log_tail());
        }
        Ok(envoy)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("http://{}/ready", self.admin);
        let http = client();
        eventually("envoy /ready", timeout, || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("{}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }

    /// The port of the mesh outbound listener this Envoy was told to open.
    pub fn mesh_port(&self) -> u16 {
        self.mesh_port
    }

    /// A request through the mesh listener with `Host: {host}` (redirects are not followed).
    pub fn request(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        http::request(self.mesh_port, method, host, path)
    }

    /// GET through the mesh listener, the whole response.
    pub async fn fetch(&self, host: &str, path: &str) -> anyhow::Result<Reply> {
        http::get(self.mesh_port, host, path).await
    }

    /// GET `http://{host}{path}` through the mesh listener; returns status and body.
    pub async fn get(&self, host: &str, path: &str) -> anyhow::Result<(u16, String)> {
        let r = client()
            .get(format!("http://127.0.0.1:{}{path}", self.mesh_port))
            .header("host", host)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    }

    /// Polls until a request for `host` answers `status` with body `body`.
    pub async fn wait_for_response(
        &self,
        host: &str,
        status: u16,
        body: &str,
    ) -> anyhow::Result<()> {
        let res = eventually(
            &format!("{host} to answer {status} {body:?}"),
            Duration::from_secs(20),
            || async move {
                match self.get(host, "/").await {
                    Ok((s, b)) if s == status && (body.is_empty() || b == body) => Ok(()),
                    Ok((s, b)) => Err(format!("{s} {b:?}")),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        res.map_err(|e| anyhow::anyhow!("{e}\nenvoy log:\n{}", self.log_tail()))
    }

    /// The process id (for reading its memory from `/proc`), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self._child.id()
    }

    /// GET on the admin port, as text.
    pub async fn admin(&self, path: &str) -> anyhow::Result<String> {
        Ok(client()
            .get(format!("http://{}{path}", self.admin))
            .send()
            .await?
            .text()
            .await?)
    }

    /// A counter or gauge from `/stats`, by its full name.
    pub async fn stat(&self, name: &str) -> anyhow::Result<Option<u64>> {
        let text = self
            .admin(&format!("/stats?filter=^{}$", regex_escape(name)))
            .await?;
        Ok(text.lines().find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            (k == name).then(|| v.trim().parse().ok()).flatten()
        }))
    }

    /// Every counter and gauge from `/stats` whose name contains `fragment` (for assertions
    /// on stats whose exact name is long, and for failure messages).
    pub async fn stats_containing(&self, fragment: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let text = self.admin("/stats").await?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                let v = v.trim().parse().ok()?;
                k.contains(fragment).then(|| (k.to_string(), v))
            })
            .collect())
    }

    /// The lines of admin `/clusters` about one cluster (`{cluster}::{host}::{field}::{value}`).
    pub async fn cluster_lines(&self, cluster: &str) -> anyhow::Result<Vec<String>> {
        let text = self.admin("/clusters").await?;
        let prefix = format!("{cluster}::");
        Ok(text
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_string)
            .collect())
    }

    /// The dynamic cluster `name` as Envoy holds it (admin `/config_dump`, proto JSON with
    /// Envoy's field names, e.g. `lb_policy`), if Envoy has accepted a cluster by that name.
    pub async fn cluster_config(&self, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let text = self
            .admin("/config_dump?resource=dynamic_active_clusters")
            .await?;
        let dump: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("admin /config_dump is not JSON ({e}): {text}"))?;
        Ok(dump["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| &c["cluster"])
            .find(|c| c["name"] == name)
            .cloned())
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 80)
    }

    /// The lines of Envoy's log that contain `fragment`.
    pub fn log_lines(&self, fragment: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(fragment))
            .map(str::to_string)
            .collect()
    }

    /// Everything Envoy wrote to stdout so far (access logs of the stdout logger).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}
