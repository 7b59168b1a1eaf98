//! Applying capture rules: the capability check, and `iptables-save` / `iptables-restore`
//! run as child processes (the kernel interface is theirs, so both the nf_tables and the
//! legacy backends work, whichever the image's `iptables` is).

use super::CaptureError;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Bit of `CAP_NET_ADMIN` in the capability sets (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process holds `CAP_NET_ADMIN` in its effective set, from `status` (the text of
/// `/proc/self/status`); `None` when it does not say.
pub fn has_net_admin(status: &str) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Fails with [`CaptureError::NoCapability`] unless this process may change netfilter rules.
/// A system without `/proc` is left to the binary's own error.
pub fn check_capability() -> Result<(), CaptureError> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Ok(());
    };
    match has_net_admin(&status) {
        Some(false) => Err(CaptureError::NoCapability),
        _ => Ok(()),
    }
}

/// `iptables-save -t nat`: the table as it is.
pub fn save(binary: &Path) -> Result<String, CaptureError> {
    let out = Command::new(binary)
        .args(["-t", "nat"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CaptureError::spawn(binary, e))?;
    if !out.status.success() {
        return Err(CaptureError::failed(binary, &out.status, &out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `iptables-restore --noflush` of `input`: applied in one commit, or not at all.
pub fn restore(binary: &Path, input: &str) -> Result<(), CaptureError> {
    let mut child = Command::new(binary)
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CaptureError::spawn(binary, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| CaptureError::spawn(binary, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CaptureError::spawn(binary, e))?;
    if !out.status.success() {
        return Err(CaptureError::failed(binary, &out.status, &out.stderr));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_admin_is_read_from_the_effective_set() {
        let root = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(has_net_admin(root), Some(true));
        let plain = "CapPrm:\t0000000000001000\nCapEff:\t0000000000000000\n";
        assert_eq!(has_net_admin(plain), Some(false));
        assert_eq!(has_net_admin("CapEff:\t0000000000001000\n"), Some(true));
        assert_eq!(has_net_admin("Name:\tx\n"), None);
    }
}
