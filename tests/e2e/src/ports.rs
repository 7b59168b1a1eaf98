//! Free loopback ports, never handed out twice within one test process.
//!
//! Ports come from below the kernel's ephemeral range (read from
//! `/proc/sys/net/ipv4/ip_local_port_range`, default 32768): a port handed out here is bound
//! later (by Portolan or Envoy), and an ephemeral port the kernel gives to anyone in between
//! (an Envoy admin on port 0, an outgoing connection) can then never be the same one. Each test
//! process starts at its own offset, so parallel test binaries rarely probe the same ports.

use std::net::TcpListener;
use std::sync::{LazyLock, Mutex};

/// The lowest port handed out.
const LOW: u16 = 20000;

static NEXT: LazyLock<Mutex<u16>> = LazyLock::new(|| {
    let span = ephemeral_low().saturating_sub(LOW).max(1000);
    let offset = (std::process::id() % u32::from(span / 2)) as u16;
    Mutex::new(LOW + offset)
});

fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A port that was free a moment ago and that this process has not handed out yet.
pub fn free_port() -> u16 {
    let high = ephemeral_low();
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..high.saturating_sub(LOW) {
        let port = *next;
        *next = if port + 1 >= high { LOW } else { port + 1 };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {high}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|p| *p >= LOW && *p < ephemeral_low()));
    }
}
