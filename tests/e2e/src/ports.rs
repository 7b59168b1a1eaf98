//! Free loopback ports, never handed out twice within one test process.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{LazyLock, Mutex};

static GIVEN: LazyLock<Mutex<HashSet<u16>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// A port that was free a moment ago and that this process has not used yet.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}
