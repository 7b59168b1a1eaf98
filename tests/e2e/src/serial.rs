//! Which end-to-end tests must not overlap. All cases share one test binary and run side by
//! side; most of them wait on Envoy with generous deadlines and do not mind a busy machine. A
//! test that loads the machine (thousands of xDS streams) or measures what load disturbs
//! (Portolan's memory, an elapsed time, certificates expiring on schedule) holds [`alone`]
//! for its whole run, so no two such tests ever run at once.

use tokio::sync::{Mutex, MutexGuard};

static ALONE: Mutex<()> = Mutex::const_new(());

/// Waits until no other heavy or measuring test runs; the guard keeps it so.
pub async fn alone() -> MutexGuard<'static, ()> {
    ALONE.lock().await
}
