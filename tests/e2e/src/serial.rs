//! Which end-to-end tests may run side by side. All cases share one test binary and run
//! several at a time: most wait on Envoy with generous deadlines and do not mind a busy
//! machine, and each holds [`shared`]. A test that loads the machine (thousands of xDS streams)
//! or measures Portolan's memory holds [`alone`] instead and runs with no other test, as it did
//! when each area had its own binary (an RSS bound measured beside three Envoy tests failed).
//! A test that measures an elapsed time holds [`shared`]: it never runs beside those either.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::const_new(());

/// Waits until no other test runs; the guard keeps it so. (Fair: once a test waits here, tests
/// that come later wait behind it.)
pub async fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// Waits until no test holds [`alone`]; the guard keeps it so.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}
