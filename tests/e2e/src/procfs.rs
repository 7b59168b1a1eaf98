//! What `/proc/<pid>` says about a process: its resident memory (now and peak) and the CPU
//! time it has used. Load tests and benchmarks read Portolan's and Envoy's figures from here.

use anyhow::{Context, anyhow};

/// Resident memory of a process in KiB: `VmRSS` (now) from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident memory of a process in KiB: `VmHWM` from `/proc/<pid>/status`.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// Whether transparent huge pages may back the process's memory: `THP_enabled` in
/// `/proc/<pid>/status` (0 once it turned them off with `prctl(PR_SET_THP_DISABLE)`).
pub fn thp_enabled(pid: u32) -> anyhow::Result<bool> {
    let flag = status_kib(pid, "THP_enabled:")?;
    Ok(flag != 0)
}

fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_status_kib(&status, key).ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time a process has used (user + system, `utime + stime` of `/proc/<pid>/stat`), in
/// clock ticks (USER_HZ, 100 per second on Linux).
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat: {stat}"))
}

/// CPU time a process's threads have spent running, in nanoseconds: the sum of the first field
/// of each `/proc/<pid>/task/<tid>/schedstat` (threads that have exited are not counted; a
/// tokio runtime's workers live as long as it does). Finer than [`cpu_ticks`] (10 ms steps),
/// for the CPU one short operation costs.
pub fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let path = task?.path().join("schedstat");
        // A thread may exit between listing and reading.
        let Ok(line) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += parse_schedstat_ns(&line)
            .ok_or_else(|| anyhow!("unexpected {}: {line}", path.display()))?;
    }
    Ok(total)
}

fn parse_schedstat_ns(line: &str) -> Option<u64> {
    line.split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ; 100 on every Linux this runs on).
pub const TICKS_PER_SECOND: u64 = 100;

/// Fields 14 and 15 (utime, stime), counted after the `)` that ends the command name (which
/// may itself contain spaces).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_stat_lines_parse() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
        assert_eq!(
            parse_status_kib("THP_enabled:\t0\n", "THP_enabled:"),
            Some(0)
        );
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
        assert_eq!(parse_schedstat_ns("87802 510476 2\n"), Some(87802));
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let pid = std::process::id();
        let rss = rss_kib(pid).expect("VmRSS");
        assert!(rss > 0);
        assert!(peak_rss_kib(pid).expect("VmHWM") >= rss);
        cpu_ticks(pid).expect("utime + stime");
        cpu_ns(pid).expect("schedstat");
    }
}
