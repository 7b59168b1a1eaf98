//! `portolan serve` turns transparent huge pages off for itself (mimalloc asks for them on its
//! arenas, and a 2 MiB page stays resident for one small object), unless `MIMALLOC_ALLOW_THP`
//! asks for them; `/proc/<pid>/status` tells which.

use crate::bin;
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::procfs::thp_enabled;
use portolan_e2e::{Portolan, service_yaml};

fn pid(p: &Portolan) -> anyhow::Result<u32> {
    p.pid().ok_or_else(|| anyhow::anyhow!("portolan exited"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_without_transparent_huge_pages_unless_asked_for() -> anyhow::Result<()> {
    let _shared = portolan_e2e::serial::shared().await;
    let config = ConfigDir::new()?;
    config.write("svc.yaml", &service_yaml("default", "web", 80))?;

    // (MIMALLOC_ALLOW_THP, huge pages on): unset turns them off, 1 keeps them.
    for (allow, on) in [("", false), ("1", true)] {
        let env = [("MIMALLOC_ALLOW_THP", allow)];
        let portolan = Portolan::start_with_env(bin(), &config, Ports::free(), &[], &env).await?;
        assert_eq!(
            thp_enabled(pid(&portolan)?)?,
            on,
            "MIMALLOC_ALLOW_THP={allow:?}: transparent huge pages should be {}",
            if on { "on" } else { "off" }
        );
    }
    Ok(())
}
