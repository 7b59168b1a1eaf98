//! A running mesh for one test: a config directory, a `portolan serve` watching it, and one
//! Envoy in a proxy group; plus the waits routing tests share.

use crate::envoy::Protocol;
use crate::http::{self, Reply};
use crate::portolan::{ConfigDir, Ports};
use crate::{Envoy, Portolan, eventually};
use std::path::Path;
use std::time::Duration;

/// How long configuration may take to reach Envoy.
pub const CONFIG_DEADLINE: Duration = Duration::from_secs(20);

pub struct Mesh {
    pub config: ConfigDir,
    pub portolan: Portolan,
    pub envoy: Envoy,
}

// === impl Mesh ===

impl Mesh {
    /// Writes `files`, starts Portolan on them and one SotW Envoy in proxy group `group`.
    pub async fn start(bin: &Path, group: &str, files: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::start_with(bin, group, files, &[]).await
    }

    /// Like [`Mesh::start`], with extra `portolan serve` flags.
    pub async fn start_with(
        bin: &Path,
        group: &str,
        files: &[(&str, String)],
        serve_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_speaking(bin, group, Protocol::Sotw, files, serve_args).await
    }

    /// Like [`Mesh::start_with`], with Envoy speaking `protocol` (SotW or Delta).
    pub async fn start_speaking(
        bin: &Path,
        group: &str,
        protocol: Protocol,
        files: &[(&str, String)],
        serve_args: &[&str],
    ) -> anyhow::Result<Self> {
        let config = ConfigDir::new()?;
        for (name, contents) in files {
            config.write(name, contents)?;
        }
        let portolan = Portolan::start_with(bin, &config, Ports::free(), serve_args).await?;
        let node_id = format!("{group}-1");
        let envoy = Envoy::start(bin, portolan.ports(), &node_id, group, protocol).await?;
        Ok(Self {
            config,
            portolan,
            envoy,
        })
    }

    /// Waits until Envoy's `/config_dump` contains `needle` (a cluster name, a field that only
    /// a routing object produces, ...), i.e. until the configuration reached the proxy.
    pub async fn wait_config(&self, needle: &str) -> anyhow::Result<()> {
        let res = eventually(
            &format!("envoy config to contain {needle:?}"),
            CONFIG_DEADLINE,
            || async move {
                match self.envoy.admin("/config_dump?include_eds").await {
                    Ok(dump) if dump.contains(needle) => Ok(()),
                    Ok(_) => Err("not there yet".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        res.map_err(|e| anyhow::anyhow!("{e}\n{}", self.diagnostics()))
    }

    /// Polls GET `{path}` with `Host: {host}` on `port` until `ok` holds for the reply.
    pub async fn wait_get(
        &self,
        port: u16,
        host: &str,
        path: &str,
        what: &str,
        ok: impl Fn(&Reply) -> bool,
    ) -> anyhow::Result<Reply> {
        let res = eventually(what, CONFIG_DEADLINE, || async {
            match http::get(port, host, path).await {
                Ok(r) if ok(&r) => Ok(r),
                Ok(r) => Err(format!(
                    "{} {:?} (upstream {:?})",
                    r.status,
                    r.body,
                    r.upstream()
                )),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        res.map_err(|e| anyhow::anyhow!("{e}\n{}", self.diagnostics()))
    }

    /// The same, through the mesh listener.
    pub async fn wait_mesh(
        &self,
        host: &str,
        path: &str,
        what: &str,
        ok: impl Fn(&Reply) -> bool,
    ) -> anyhow::Result<Reply> {
        self.wait_get(self.envoy.mesh_port(), host, path, what, ok)
            .await
    }

    /// `/debug/config-errors` `errors`: every rejected document or object.
    pub async fn config_errors(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let v = self.portolan.get_json("/debug/config-errors").await?;
        Ok(v["errors"].as_array().cloned().unwrap_or_default())
    }

    /// Logs of both processes, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- portolan log:\n{}\n--- envoy log:\n{}",
            self.portolan.log_tail(),
            self.envoy.log_tail()
        )
    }
}

/// The ports `examples/routing/https-gateway.yaml` listens on in one test (free ones, in
/// place of the example's 8443, 8080 and 9000).
#[derive(Clone, Copy, Debug)]
pub struct GatewayPorts {
    pub https: u16,
    pub http: u16,
    pub tcp: u16,
}

/// The example HTTPS gateway on free ports, run by an Envoy in group `ingress`: `www`'s
/// endpoints are `upstream`, and the Secret `www-example-com-tls` holds `cert`.
pub async fn https_gateway(
    bin: &Path,
    upstream: &crate::Upstream,
    cert: &crate::tls::ServerCert,
) -> anyhow::Result<(Mesh, GatewayPorts)> {
    https_gateway_speaking(bin, upstream, cert, Protocol::Sotw).await
}

/// [`https_gateway`] with its Envoy speaking `protocol` (SotW or Delta).
pub async fn https_gateway_speaking(
    bin: &Path,
    upstream: &crate::Upstream,
    cert: &crate::tls::ServerCert,
    protocol: Protocol,
) -> anyhow::Result<(Mesh, GatewayPorts)> {
    use crate::ports::free_port;
    let ports = GatewayPorts {
        https: free_port(),
        http: free_port(),
        tcp: free_port(),
    };
    let gateway = crate::example("routing/https-gateway.yaml")
        .replace("port: 8443", &format!("port: {}", ports.https))
        .replace("port: 8080", &format!("port: {}", ports.http))
        .replace("port: 9000", &format!("port: {}", ports.tcp));
    let mesh = Mesh::start_speaking(
        bin,
        "ingress",
        protocol,
        &[
            ("www.yaml", gateway),
            (
                "www-endpoints.yaml",
                crate::endpoints_yaml("default", "www", &[upstream]),
            ),
            (
                "www-tls.yaml",
                cert.secret_yaml("default", "www-example-com-tls"),
            ),
        ],
        &[],
    )
    .await?;
    Ok((mesh, ports))
}
