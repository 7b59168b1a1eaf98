//! A synthetic world served by a real `portolan serve` over a directory of manifests (one file
//! per service), with the edit the fleet scenarios make: the target service's first endpoint
//! moved to a spare address whose number identifies the change.

use crate::WorldSpec;
use crate::scenario::endpoint_change::with_endpoint;
use crate::synth::{SynthService, Target};
use anyhow::{Context, anyhow};
use portolan_e2e::Portolan;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_translate::names::MESH_ROUTE;
use portolan_xds_client::FleetSpec;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The proxy group every simulated client joins.
pub const GROUP: &str = "bench";
/// ADS streams per HTTP/2 connection (Envoys would each have their own; sharing keeps the
/// bench's socket count small).
pub const STREAMS_PER_CHANNEL: usize = 100;
/// How long one client may wait for one response.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// A world on disk and the Portolan serving it.
pub struct Served {
    pub dir: ConfigDir,
    pub portolan: Portolan,
    pub spec: WorldSpec,
    pub services: Vec<SynthService>,
    pub target: Target,
    bin: PathBuf,
    /// The (namespace, service account) every client claims, if any.
    workload: Option<(String, String)>,
}

// === impl Served ===

impl Served {
    /// Writes the world and starts `portolan serve` on it (with extra environment variables).
    pub async fn start(bin: &Path, spec: WorldSpec, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(bin, spec, env, None).await
    }

    /// [`Served::start`]; with `workload`, `serve --identity insecure-node-metadata` and every
    /// client of [`Served::fleet`] claims that (namespace, service account), so its group is a
    /// workload's, with the capture-aware outbound listener.
    pub async fn start_with(
        bin: &Path,
        spec: WorldSpec,
        env: &[(&str, &str)],
        workload: Option<(String, String)>,
    ) -> anyhow::Result<Self> {
        Self::start_serving(bin, spec, env, workload, &[]).await
    }

    /// [`Served::start_with`] with extra `serve` flags (`--xds-tls-cert ...`).
    pub async fn start_serving(
        bin: &Path,
        spec: WorldSpec,
        env: &[(&str, &str)],
        workload: Option<(String, String)>,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let target = spec
            .target()
            .context("the world has no service with endpoints")?;
        let services = spec.services_list();
        let dir = ConfigDir::new()?;
        for svc in &services {
            dir.write(&file(svc), &manifest(svc))?;
        }
        let mut args: Vec<&str> = if workload.is_some() {
            vec!["--identity", "insecure-node-metadata"]
        } else {
            Vec::new()
        };
        args.extend(extra.iter().map(String::as_str));
        let portolan = Portolan::start_with_env(bin, &dir, Ports::free(), &args, env).await?;
        Ok(Self {
            workload,
            dir,
            portolan,
            spec,
            services,
            target,
            bin: bin.to_path_buf(),
        })
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.portolan
            .pid()
            .ok_or_else(|| anyhow!("portolan exited"))
    }

    /// Clients of this Portolan, all in [`GROUP`].
    pub fn fleet(&self, clients: usize, id_prefix: &str) -> FleetSpec {
        FleetSpec {
            port: self.portolan.ports().xds,
            clients,
            streams_per_channel: STREAMS_PER_CHANNEL,
            group: GROUP.to_string(),
            id_prefix: id_prefix.to_string(),
            metadata: self
                .workload
                .iter()
                .flat_map(|(ns, sa)| {
                    [
                        ("namespace".to_string(), ns.clone()),
                        ("serviceAccount".to_string(), sa.clone()),
                    ]
                })
                .collect(),
            routes: vec![MESH_ROUTE.to_string()],
            timeout: CLIENT_TIMEOUT,
        }
    }

    /// Change number `k`: the target's first endpoint becomes `spare_ip(k)`. Returns the
    /// address and when the file was in place.
    pub fn change(&self, k: usize) -> anyhow::Result<(String, Instant)> {
        let ip = self.spec.spare_ip(k);
        let changed = with_endpoint(&self.services[self.target.index], ip.clone());
        self.dir.write(&file(&changed), &manifest(&changed))?;
        Ok((ip, Instant::now()))
    }

    /// Kills Portolan (SIGKILL) and starts a new one on the same ports and directory.
    pub async fn restart(self) -> anyhow::Result<(Self, Duration)> {
        let ports = self.portolan.ports();
        let killed = Instant::now();
        self.portolan.kill().await?;
        let portolan = Portolan::start(&self.bin, &self.dir, ports).await?;
        let restarted = Self { portolan, ..self };
        Ok((restarted, killed.elapsed()))
    }

    /// A counter or gauge of Portolan's `/metrics`, summed over its labels (0 if absent).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.portolan.get_text("/metrics").await?;
        Ok(metric_sum(&text, name))
    }
}

/// The number of the change that put `ip` in place (the inverse of `WorldSpec::spare_ip`), or
/// none for an address of the world itself (their second octet is never 255).
pub fn change_number(ip: &str) -> Option<usize> {
    let octets: Vec<usize> = ip
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    match octets[..] {
        [_, 255, high, low] if low >= 1 => Some(high * 250 + low - 1),
        _ => None,
    }
}

/// Sum of every sample of metric `name` (`name 3` or `name{...} 3`) in Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let bare = key.split('{').next()?;
            (bare == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn file(svc: &SynthService) -> String {
    format!("{}/{}.yaml", svc.key.namespace, svc.key.name)
}

fn manifest(svc: &SynthService) -> String {
    format!("{}---\n{}", svc.service_yaml(), svc.slices_yaml())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_numbers_invert_spare_ips() {
        let spec = WorldSpec::new(10, 10);
        for k in [0, 1, 249, 250, 2400, 60_000] {
            assert_eq!(change_number(&spec.spare_ip(k)), Some(k));
        }
        assert_eq!(change_number("10.0.0.1"), None);
        assert_eq!(change_number("nonsense"), None);
    }

    #[test]
    fn metrics_sum_over_labels() {
        let text = "# HELP x_total x\nx_total{type=\"a\"} 2\nx_total{type=\"b\"} 3\nxy_total 9\n";
        assert_eq!(metric_sum(text, "x_total"), 5.0);
        assert_eq!(metric_sum(text, "nope"), 0.0);
    }
}
