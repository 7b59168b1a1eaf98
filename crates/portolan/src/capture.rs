//! `portolan capture`: programs a pod's netfilter rules so that its TCP connections go
//! through the sidecar without the application knowing (transparent capture), the job of an
//! injected pod's init container.
//!
//! Outbound connections are redirected to the sidecar's outbound listener, inbound ones to its
//! inbound listener; the proxy's own connections (by UID) are not. The rules (`rules.rs`) are
//! applied with `iptables-restore --noflush` in one atomic commit (`netfilter.rs`), into
//! chains of Portolan's own, so running it again changes nothing. `--dry-run` prints them and
//! touches nothing; `--remove` takes them out again. See docs/mesh.md.

mod netfilter;
mod rules;

use crate::cli::CaptureArgs;
use ipnet::IpNet;
use rules::{Include, Rules};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Why capture rules could not be made or applied.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("--{flag}: {value:?} is not {expected}")]
    BadValue {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "portolan capture needs the CAP_NET_ADMIN capability to change netfilter rules, and \
         this process does not have it: run it as root, or give the init container \
         `securityContext.capabilities.add: [NET_ADMIN, NET_RAW]` (--dry-run prints the \
         rules without changing anything)"
    )]
    NoCapability,
    #[error(
        "{binary} not found: install iptables (Debian/Ubuntu: `apt-get install iptables`) or \
         name the binaries with --iptables-restore and --iptables-save"
    )]
    MissingBinary { binary: PathBuf },
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{binary} failed ({status}): {stderr}")]
    Failed {
        binary: PathBuf,
        status: String,
        stderr: String,
    },
}

// === impl CaptureError ===

impl CaptureError {
    fn spawn(binary: &Path, source: std::io::Error) -> Self {
        let binary = binary.to_path_buf();
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::MissingBinary { binary }
        } else {
            Self::Spawn { binary, source }
        }
    }

    fn failed(binary: &Path, status: &std::process::ExitStatus, stderr: &[u8]) -> Self {
        Self::Failed {
            binary: binary.to_path_buf(),
            status: status.to_string(),
            stderr: String::from_utf8_lossy(stderr).trim().to_string(),
        }
    }
}

pub fn run(args: &CaptureArgs) -> anyhow::Result<ExitCode> {
    if args.remove {
        return remove(args);
    }
    let rules = rules_of(args)?;
    if args.dry_run {
        crate::output::print(&rules.restore_input(""))?;
        return Ok(ExitCode::SUCCESS);
    }
    netfilter::check_capability()?;
    let present = netfilter::save(&args.iptables_save)?;
    let input = rules.restore_input(&present);
    netfilter::restore(&args.iptables_restore, &input)?;
    tracing::info!(
        outbound_port = rules.outbound_port,
        inbound_port = rules.inbound_port,
        proxy_uid = rules.proxy_uid,
        "capture rules applied"
    );
    Ok(ExitCode::SUCCESS)
}

/// `--remove`: takes Portolan's rules out (what is there of them), or prints how with
/// `--dry-run`.
fn remove(args: &CaptureArgs) -> anyhow::Result<ExitCode> {
    if !args.dry_run {
        netfilter::check_capability()?;
    }
    let present = netfilter::save(&args.iptables_save)?;
    let input = rules::removal_input(&present);
    if args.dry_run {
        crate::output::print(&input)?;
    } else {
        netfilter::restore(&args.iptables_restore, &input)?;
        tracing::info!("capture rules removed");
    }
    Ok(ExitCode::SUCCESS)
}

/// The rules the flags ask for.
fn rules_of(args: &CaptureArgs) -> Result<Rules, CaptureError> {
    Ok(Rules {
        outbound_port: args.outbound_port,
        inbound_port: args.inbound_port,
        proxy_uid: args.proxy_uid,
        proxy_gid: args.proxy_gid,
        inbound_ports: include(&args.inbound_ports, "inbound-ports", port)?,
        exclude_inbound_ports: list(&args.exclude_inbound_ports, "exclude-inbound-ports", port)?,
        exclude_outbound_ports: list(&args.exclude_outbound_ports, "exclude-outbound-ports", port)?,
        include_outbound_cidrs: include(
            &args.include_outbound_cidrs,
            "include-outbound-cidrs",
            cidr,
        )?,
        exclude_outbound_cidrs: list(&args.exclude_outbound_cidrs, "exclude-outbound-cidrs", cidr)?,
    })
}

type Parse<T> = fn(&'static str, &str) -> Result<T, CaptureError>;

/// Comma-separated values (an annotation's value as it is); blanks ignored.
fn list<T>(values: &[String], flag: &'static str, parse: Parse<T>) -> Result<Vec<T>, CaptureError> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| parse(flag, v))
        .collect()
}

/// `*` (everything), or a [`list`].
fn include<T>(
    values: &[String],
    flag: &'static str,
    parse: Parse<T>,
) -> Result<Include<T>, CaptureError> {
    let all = values
        .iter()
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "*");
    if all {
        return Ok(Include::All);
    }
    list(values, flag, parse).map(Include::Only)
}

fn port(flag: &'static str, value: &str) -> Result<u16, CaptureError> {
    value
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| CaptureError::BadValue {
            flag,
            value: value.to_string(),
            expected: "a port number (1-65535)",
        })
}

/// An IPv4 range (`10.0.0.0/8`) or address (`/32`); IPv6 is refused (IPv4 rules only).
fn cidr(flag: &'static str, value: &str) -> Result<IpNet, CaptureError> {
    let bad = || CaptureError::BadValue {
        flag,
        value: value.to_string(),
        expected: "an IPv4 address or CIDR range (IPv6 is not captured yet)",
    };
    let net = match value.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(value.parse::<std::net::IpAddr>().map_err(|_| bad())?),
    };
    match net {
        IpNet::V4(_) => Ok(net.trunc()),
        IpNet::V6(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn annotation_values_are_comma_separated() {
        let ports = list(&strings(&["80, 443", "8080"]), "x", port).expect("valid");
        assert_eq!(ports, [80, 443, 8080]);
        assert_eq!(
            include(&strings(&["*"]), "x", port).expect("valid"),
            Include::All
        );
        assert_eq!(
            include(&strings(&[""]), "x", port).expect("valid"),
            Include::Only(vec![])
        );
        let nets = list(&strings(&["10.0.0.1", "10.1.2.3/16"]), "x", cidr).expect("valid");
        assert_eq!(
            nets,
            [
                "10.0.0.1/32".parse::<IpNet>().expect("valid"),
                "10.1.0.0/16".parse().expect("valid")
            ]
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err =
            list(&strings(&["80,http"]), "exclude-outbound-ports", port).expect_err("an error");
        assert_eq!(
            err.to_string(),
            "--exclude-outbound-ports: \"http\" is not a port number (1-65535)"
        );
        let err =
            list(&strings(&["fd00::/8"]), "exclude-outbound-cidrs", cidr).expect_err("an error");
        assert!(
            err.to_string()
                .starts_with("--exclude-outbound-cidrs: \"fd00::/8\""),
            "{err}"
        );
        assert!(list(&strings(&["0"]), "x", port).is_err());
    }

    #[test]
    fn a_missing_binary_says_what_to_install() {
        let err = netfilter::save(Path::new("/nonexistent/iptables-save")).expect_err("an error");
        assert!(matches!(err, CaptureError::MissingBinary { .. }), "{err:?}");
        assert!(
            err.to_string().contains("apt-get install iptables"),
            "{err}"
        );
    }
}
