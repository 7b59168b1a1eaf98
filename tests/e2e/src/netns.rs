//! Network namespaces as pods, for transparent-capture tests: a "node" namespace holding a
//! bridge, and one namespace per pod plugged into it by a veth pair (`eth0` in the pod), each
//! running unchanged applications (`netns/pod.py`), and optionally a sidecar Envoy (as UID
//! [`PROXY_UID`], bootstrapped by `portolan bootstrap`) with the pod's netfilter rules
//! programmed by `portolan capture`.
//!
//! Everything stays inside namespaces the test made: pod and ClusterIP addresses
//! (`10.244.0.0/16`, `10.96.0.0/16`) exist only on their bridge, and nothing is added to the
//! host's network. Sidecars reach Portolan (listening on the host's loopback) through a Unix
//! socket relayed to its xDS port by this process ([`Relay`]): a socket path crosses network
//! namespaces, a loopback address does not. Names resolve through `/etc/netns/NS/hosts`, which
//! `ip netns exec` mounts over `/etc/hosts` for the pod. A test that makes many calls from a
//! pod keeps one client process running there ([`Pod::interactive`], [`HttpClient`]) rather
//! than starting curl for each.
//!
//! Clean-up: every namespace, process and hosts file is removed when its handle drops (also
//! when a test fails or panics); namespaces left behind by a test process that was killed are
//! removed by the next [`Node::new`] (their names carry the owning process id).

use crate::eventually;
use crate::http::Reply;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The UID (and GID) sidecars run as; `portolan capture`'s default `--proxy-uid`.
pub const PROXY_UID: u32 = 1337;
/// Prefix of every namespace this harness makes: `pe2e-{pid}-{n}-{role}`.
const PREFIX: &str = "pe2e-";
/// The `portolan serve` flags for sidecars in pods: the workload identity their bootstrap
/// claims (`insecure-node-metadata`), and the standard outbound listener on every address
/// (each pod is its own network namespace, so every sidecar takes the same port).
pub const SERVE_ARGS: [&str; 6] = [
    "--identity",
    "insecure-node-metadata",
    "--mesh-address",
    "0.0.0.0",
    "--mesh-port",
    "15001",
];
/// The sidecar's admin port inside its pod.
const ADMIN_PORT: u16 = 15000;

/// Why the capture tests cannot run here, if they cannot: not root, or no `ip` / iptables.
pub fn unsupported() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string));
    if uid.as_deref() != Some("0") {
        return Some("not running as root (network namespaces and netfilter need it)".into());
    }
    for tool in [["ip", "-V"], ["iptables-restore", "--version"]] {
        let ok = std::process::Command::new(tool[0])
            .arg(tool[1])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!(
                "`{}` is not available (scripts/install-tools.sh installs iptables)",
                tool[0]
            ));
        }
    }
    None
}

/// Runs `program args` to completion; its stdout, or an error with its stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(program).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One network namespace, deleted (with every process still in it) on drop.
pub struct Netns {
    name: String,
}

// === impl Netns ===

impl Netns {
    fn create(name: String) -> anyhow::Result<Self> {
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        run("ip", &["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS`.
    fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command run inside the namespace (`ip netns exec NS program ...`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    fn hosts_dir(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    /// Removes the namespace `name`: kills what runs in it, deletes it and its hosts file.
    fn remove(name: &str) {
        if let Ok(pids) = run("ip", &["netns", "pids", name]) {
            for pid in pids.split_whitespace() {
                let _ = run("kill", &["-9", pid]);
            }
        }
        let _ = run("ip", &["netns", "del", name]);
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(name));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Self::remove(&self.name);
    }
}

/// Removes namespaces of test processes that no longer run.
fn remove_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            Netns::remove(name);
        }
    }
}

/// Relays connections to a Unix socket to `127.0.0.1:port` on the host (for sidecars in
/// pods to reach Portolan's xDS port); stops on drop.
pub struct Relay {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

// === impl Relay ===

impl Relay {
    pub fn start(path: PathBuf, port: u16) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let listener = tokio::net::UnixListener::bind(&path)?;
        // Sidecars run as PROXY_UID: connecting needs write permission on the socket.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
        let task = tokio::spawn(async move {
            while let Ok((mut unix, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
                    }
                });
            }
        });
        Ok(Self { path, task })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The node: a namespace with the bridge pods plug into, and a directory for their files.
pub struct Node {
    prefix: String,
    ns: Netns,
    dir: tempfile::TempDir,
}

// === impl Node ===

impl Node {
    /// A new node (removing namespaces a killed test process left behind first).
    pub fn new() -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}{}-{n}", std::process::id());
        let ns = Netns::create(format!("{prefix}-node"))?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        let dir = tempfile::tempdir()?;
        // Sidecars (PROXY_UID) read their bootstrap here.
        set_mode(dir.path(), 0o755)?;
        Ok(Self { prefix, ns, dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A pod `role` with address `ip`/16 on the bridge, and a default route through it (so
    /// connections to ClusterIPs, which no interface has, leave the application and are
    /// captured).
    pub fn pod(&self, role: &str, ip: &str) -> anyhow::Result<Pod> {
        let ns = Netns::create(format!("{}-{role}", self.prefix))?;
        let veth = format!("v{role}");
        let veth = &veth[..veth.len().min(15)];
        self.ns.ip(&[
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ])?;
        self.ns.ip(&["link", "set", veth, "master", "br0", "up"])?;
        ns.ip(&["addr", "add", &format!("{ip}/16"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["route", "add", "default", "dev", "eth0"])?;
        Ok(Pod {
            role: role.to_string(),
            ip: ip.to_string(),
            dir: self.dir.path().to_path_buf(),
            processes: Vec::new(),
            ns,
        })
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The script of the pods' applications.
fn pod_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/netns/pod.py")
}

/// What a command run in a pod printed, or why it failed.
pub type Outcome = Result<String, String>;

/// A pod: its namespace, address and processes (killed on drop, before the namespace goes).
pub struct Pod {
    pub role: String,
    pub ip: String,
    dir: PathBuf,
    processes: Vec<(String, Child)>,
    ns: Netns,
}

// === impl Pod ===

impl Pod {
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    fn log(&self, what: &str) -> PathBuf {
        self.dir.join(format!("{}-{what}.log", self.role))
    }

    /// Runs `cmd` (made with [`Netns::command`]) as process `what` of the pod, its output in
    /// the pod's log `what`; killed when the pod drops.
    pub fn spawn(&mut self, what: &str, mut cmd: Command) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.log(what))?;
        let child = cmd.stdout(log.try_clone()?).stderr(log).spawn()?;
        self.processes.push((what.to_string(), child));
        Ok(())
    }

    /// Runs `cmd` (made with [`Netns::command`]) as process `what` of the pod, talking to it
    /// a line at a time ([`Session`]; its stderr in the pod's log `what`); killed when the pod
    /// drops.
    pub fn interactive(&mut self, what: &str, mut cmd: Command) -> anyhow::Result<Session> {
        let log = std::fs::File::create(self.log(what))?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        self.processes.push((what.to_string(), child));
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            anyhow::bail!("{what}: no stdin or stdout");
        };
        Ok(Session {
            what: format!("{what} of pod {}", self.role),
            io: tokio::sync::Mutex::new((stdin, BufReader::new(stdout))),
        })
    }

    /// An unchanged HTTP client in the pod (`pod.py http-client`), kept running for many
    /// requests.
    pub fn http_client(&mut self) -> anyhow::Result<HttpClient> {
        let mut cmd = self.ns.command("python3");
        cmd.arg(pod_script()).arg("http-client");
        Ok(HttpClient(self.interactive("http-client", cmd)?))
    }

    /// `hosts` lines (`ADDRESS NAME...`) as the pod's `/etc/hosts`.
    pub fn hosts(&self, hosts: &[impl AsRef<str>]) -> anyhow::Result<()> {
        let dir = self.ns.hosts_dir();
        std::fs::create_dir_all(&dir)?;
        let mut text = String::from("127.0.0.1 localhost\n");
        for line in hosts {
            text.push_str(line.as_ref());
            text.push('\n');
        }
        std::fs::write(dir.join("hosts"), text)?;
        Ok(())
    }

    /// An HTTP server on `0.0.0.0:port` answering with `name`.
    pub fn http_app(&mut self, name: &str, port: u16) -> anyhow::Result<()> {
        self.app("http", name, port)
    }

    /// A TCP server on `0.0.0.0:port` answering a line with `name`.
    pub fn tcp_app(&mut self, name: &str, port: u16) -> anyhow::Result<()> {
        self.app("tcp", name, port)
    }

    fn app(&mut self, mode: &str, name: &str, port: u16) -> anyhow::Result<()> {
        let mut cmd = self.ns.command("python3");
        cmd.arg(pod_script()).args([mode, name, &port.to_string()]);
        self.spawn(&format!("app-{name}"), cmd)
    }

    /// Starts a sidecar Envoy as [`PROXY_UID`] from `portolan bootstrap` (node `{role}-1` in
    /// group `role`, xDS over `xds_socket`, admin on 127.0.0.1:15000, plus `bootstrap_args`)
    /// and waits until it is LIVE.
    pub async fn sidecar(
        &mut self,
        portolan: &Path,
        xds_socket: &Path,
        bootstrap_args: &[&str],
    ) -> anyhow::Result<()> {
        let xds = format!("unix:{}", xds_socket.display());
        let node_id = format!("{}-1", self.role);
        let admin = format!("127.0.0.1:{ADMIN_PORT}");
        let out = std::process::Command::new(portolan)
            .args(["bootstrap", "--node-id", &node_id, "--cluster", &self.role])
            .args(["--xds-address", &xds, "--admin-address", &admin])
            .args(bootstrap_args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "portolan bootstrap: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = self.dir.join(format!("{}-bootstrap.yaml", self.role));
        std::fs::write(&config, &out.stdout)?;
        set_mode(&config, 0o644)?;
        let args = [
            "-c".to_string(),
            config.display().to_string(),
            "--disable-hot-restart".into(),
            "--log-level".into(),
            "info".into(),
            "--drain-time-s".into(),
            "1".into(),
        ];
        self.envoy(&args).await
    }

    /// Starts Envoy as [`PROXY_UID`] with exactly `args` (e.g. an injected sidecar's command
    /// line) and waits until it is LIVE.
    pub async fn envoy(&mut self, args: &[String]) -> anyhow::Result<()> {
        ensure_reachable_by_proxy_uid(&crate::envoy::envoy_bin())?;
        let uid = PROXY_UID.to_string();
        let mut cmd = self.ns.command("setpriv");
        cmd.args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "--"]);
        cmd.arg(crate::envoy::envoy_bin()).args(args);
        self.spawn("envoy", cmd)?;
        let res = eventually(
            &format!("sidecar of {} LIVE", self.role),
            Duration::from_secs(30),
            || async {
                match self.admin("/ready").await {
                    Ok(body) if body.trim() == "LIVE" => Ok(()),
                    Ok(body) => Err(body),
                    Err(e) => Err(e),
                }
            },
        )
        .await;
        res.map_err(|e| anyhow::anyhow!("{e}\n{}", self.diagnostics()))
    }

    /// `portolan capture ARGS` in the pod; its stdout, or its stderr as the error.
    pub async fn capture(&self, portolan: &Path, args: &[&str]) -> Outcome {
        let mut cmd = self.ns.command(&portolan.display().to_string());
        cmd.arg("capture").args(args);
        output(cmd).await
    }

    /// `iptables-save -t nat` in the pod, without comments and counters.
    pub async fn nat_rules(&self) -> Outcome {
        let mut cmd = self.ns.command("iptables-save");
        cmd.args(["-t", "nat"]);
        let text = output(cmd).await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" [").next().unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// GET `url` with curl from the pod (an unchanged client): the body, or curl's error.
    pub async fn curl(&self, url: &str) -> Outcome {
        let mut cmd = self.ns.command("curl");
        cmd.args(["-sS", "--globoff", "--max-time", "5", "--fail", url]);
        output(cmd).await.map(|b| b.trim().to_string())
    }

    /// Connects to `host:port` from the pod, sends a line and reads the answer.
    pub async fn tcp(&self, host: &str, port: u16) -> Outcome {
        let mut cmd = self.ns.command("python3");
        cmd.arg(pod_script())
            .args(["tcp-client", host, &port.to_string()]);
        output(cmd).await.map(|b| b.trim().to_string())
    }

    /// A WebSocket session from inside the pod (`pod.py ws-client`) to `host:port`: the
    /// echoes of its two messages, one per line.
    pub async fn ws(&self, host: &str, port: u16) -> Outcome {
        let mut cmd = self.ns.command("python3");
        cmd.arg(pod_script())
            .args(["ws-client", host, &port.to_string()]);
        output(cmd).await.map(|b| b.trim().to_string())
    }

    /// GET `path` of the sidecar's admin interface.
    pub async fn admin(&self, path: &str) -> Outcome {
        self.curl(&format!("http://127.0.0.1:{ADMIN_PORT}{path}"))
            .await
    }

    /// A counter of the sidecar (0 when absent).
    pub async fn counter(&self, name: &str) -> anyhow::Result<u64> {
        let text = self.admin("/stats").await.map_err(anyhow::Error::msg)?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_default())
    }

    /// The tail of the pod's process logs, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (what, _) in &self.processes {
            out.push_str(&format!(
                "--- {} {what}:\n{}\n",
                self.role,
                crate::portolan::tail(&self.log(what), 30)
            ));
        }
        out
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for (_, child) in &mut self.processes {
            let _ = child.start_kill();
        }
    }
}

/// A process in a pod that answers each line written to it with one line
/// ([`Pod::interactive`]).
pub struct Session {
    what: String,
    io: tokio::sync::Mutex<(ChildStdin, BufReader<ChildStdout>)>,
}

// === impl Session ===

impl Session {
    /// Writes `line` and reads the answer (one exchange at a time).
    pub async fn exchange(&self, line: &str) -> anyhow::Result<String> {
        let mut io = self.io.lock().await;
        let (stdin, stdout) = &mut *io;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        let mut answer = String::new();
        anyhow::ensure!(
            stdout.read_line(&mut answer).await? > 0,
            "{} exited",
            self.what
        );
        Ok(answer)
    }
}

/// An HTTP client running in a pod (`pod.py http-client`): each [`HttpClient::get`] opens a
/// new connection from the pod to the URL's host, as resolved there (the pod's `/etc/hosts`),
/// with the `Host` header the URL gives. Its process ends with its pod.
pub struct HttpClient(Session);

// === impl HttpClient ===

impl HttpClient {
    /// `GET url` with `headers`: the answer (a redirect is not followed), or why there is
    /// none (refused, reset, timed out after 5 s).
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        let request = serde_json::json!({ "url": url, "headers": headers });
        let line = self.0.exchange(&request.to_string()).await?;
        let answer: serde_json::Value = serde_json::from_str(&line)?;
        if let Some(error) = answer["error"].as_str() {
            anyhow::bail!("GET {url} from the {}: {error}", self.0.what);
        }
        let status = answer["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| anyhow::anyhow!("no status in {line}"))?;
        let mut headers = HeaderMap::new();
        for pair in answer["headers"].as_array().into_iter().flatten() {
            if let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes())?,
                    HeaderValue::from_str(value)?,
                );
            }
        }
        Ok(Reply {
            status,
            headers,
            body: answer["body"].as_str().unwrap_or_default().to_string(),
            elapsed: Duration::ZERO,
        })
    }
}

async fn output(mut cmd: Command) -> Outcome {
    let out = cmd.output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Fails at once, naming the directory, when a sidecar running as [`PROXY_UID`] could not reach
/// `path` (a checkout under a `mktemp -d` directory, mode 0700, is the usual cause), instead of
/// a sidecar that never becomes LIVE.
fn ensure_reachable_by_proxy_uid(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for dir in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        anyhow::ensure!(
            meta.permissions().mode() & 0o001 != 0,
            "the sidecar runs as UID {PROXY_UID}, which cannot enter {} (mode {:o}); \
             make it world-searchable (chmod o+x) or clone the project elsewhere",
            dir.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(())
}
