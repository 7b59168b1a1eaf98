//! A `portolan serve` process on its own ports, over a config directory the test edits.

use crate::{client, eventually, ports::free_port};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The ports one Portolan instance (and the Envoys pointed at it) use.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub xds: u16,
    pub http: u16,
    /// The mesh outbound listener port Portolan tells Envoy to open.
    pub mesh: u16,
}

impl Ports {
    pub fn free() -> Self {
        Self {
            xds: free_port(),
            http: free_port(),
            mesh: free_port(),
        }
    }
}

/// A directory of manifests that tests edit while Portolan watches it.
pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file atomically (write to a temp name, then rename), as editors and
    /// `kubectl`-style tools do, so the watcher never reads half a file.
    pub fn write(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        let target = self.dir.path().join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = self
            .dir
            .path()
            .join(format!(".{}.tmp", name.replace('/', "_")));
        std::fs::write(&tmp, contents)?;
        std::fs::rename(&tmp, &target)?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        std::fs::remove_file(self.dir.path().join(name))?;
        Ok(())
    }
}

pub struct Portolan {
    child: Child,
    ports: Ports,
    bin: PathBuf,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Portolan {
    /// Starts `portolan serve` and waits until `/readyz` answers 200.
    pub async fn start(bin: &Path, config: &ConfigDir, ports: Ports) -> anyhow::Result<Self> {
        Self::start_with(bin, config, ports, &[]).await
    }

    /// Like [`Portolan::start`], with extra `serve` flags (`--access-log json`, ...).
    pub async fn start_with(
        bin: &Path,
        config: &ConfigDir,
        ports: Ports,
        serve_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with_env(bin, config, ports, serve_args, &[]).await
    }

    /// Like [`Portolan::start_with`], with extra environment variables for the process
    /// (`TOKIO_WORKER_THREADS`, ...).
    pub async fn start_with_env(
        bin: &Path,
        config: &ConfigDir,
        ports: Ports,
        serve_args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let source = ["--config-dir".as_ref(), config.path().as_os_str()];
        Self::start_source(bin, &source, ports, serve_args, env).await
    }

    /// `portolan serve --kubernetes` (with the process's KUBECONFIG), waiting for `/readyz`.
    pub async fn start_kubernetes(
        bin: &Path,
        ports: Ports,
        serve_args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_source(bin, &["--kubernetes".as_ref()], ports, serve_args, env).await
    }

    async fn start_source(
        bin: &Path,
        source: &[&std::ffi::OsStr],
        ports: Ports,
        serve_args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let logdir = tempfile::tempdir()?;
        let log = logdir.path().join("portolan.log");
        let logfile = std::fs::File::create(&log)?;
        // The mesh listener's address and port, unless `serve_args` set them (sidecars in
        // network namespaces listen on 0.0.0.0:15001).
        let mesh_port = ports.mesh.to_string();
        let mesh = [("--mesh-address", "127.0.0.1"), ("--mesh-port", &mesh_port)];
        let mesh = mesh
            .into_iter()
            .filter(|(flag, _)| !serve_args.contains(flag))
            .flat_map(|(flag, value)| [flag, value]);
        let child = Command::new(bin)
            .arg("serve")
            .args(source)
            .args(["--xds-address", &format!("127.0.0.1:{}", ports.xds)])
            .args(["--http-address", &format!("127.0.0.1:{}", ports.http)])
            .args(mesh)
            .args(["--log-level", "info,portolan_xds=debug"])
            .args(serve_args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(logfile)
            .kill_on_drop(true)
            .spawn()?;
        let mut p = Self {
            child,
            ports,
            bin: bin.to_path_buf(),
            log,
            _logdir: logdir,
        };
        let url = p.url("/readyz");
        let http = client();
        let ready = eventually("portolan /readyz", Duration::from_secs(30), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        if let Err(e) = ready {
            anyhow::bail!("{e}\nportolan log:\n{}", p.log_tail());
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            anyhow::bail!("portolan exited: {status}\n{}", p.log_tail());
        }
        Ok(p)
    }

    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The process id (for reading its memory from `/proc`), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.http)
    }

    /// GETs a path on the HTTP port and parses the JSON body.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        Ok(client().get(self.url(path)).send().await?.json().await?)
    }

    /// GETs a path on the HTTP port as text.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(client().get(self.url(path)).send().await?.text().await?)
    }

    /// Kills the process at once (SIGKILL): the harshest way a control plane can go away.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn terminate(mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        Ok(tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await??)
    }

    /// The value of one series of `/metrics`, by its exact name and labels as Prometheus
    /// writes them (`portolan_config_source_up`, `portolan_xds_nacks_total{type="lds"}`);
    /// none when Portolan does not export it.
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let text = self.get_text("/metrics").await?;
        Ok(text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series)
                .then(|| value.trim().parse().ok())
                .flatten()
        }))
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 60)
    }

    /// The whole log so far (empty if it cannot be read).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The last `n` lines of a file (or why it could not be read).
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}
