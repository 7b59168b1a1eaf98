//! Addresses of Gateway proxies in file mode: each Gateway listens on an address of its own,
//! `spec.addresses` when given, else one from a pool (a CIDR), derived from a hash of the
//! Gateway's namespace and name (stable across restarts) with linear probing on collisions.
//!
//! In a cluster ([`AddressPool::cluster`]) each Gateway has proxies (pods) of its own: the
//! listeners bind `0.0.0.0`, and the addresses in status are the ones its Service gets (the
//! Kubernetes source fills them in), else `spec.addresses` as requested.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// An IPv4 CIDR the Gateways without `spec.addresses` take their address from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPool {
    base: u32,
    prefix: u8,
    /// Cluster mode: every Gateway binds [`ANY`].
    any: bool,
}

/// What Gateway listeners bind in a cluster.
pub const ANY: &str = "0.0.0.0";

/// The pool when `serve --gateway-address-pool` is not given.
pub const DEFAULT_POOL: &str = "127.0.1.0/24";

impl Default for AddressPool {
    fn default() -> Self {
        Self::parse(DEFAULT_POOL).unwrap_or(Self {
            base: u32::from(Ipv4Addr::new(127, 0, 1, 0)),
            prefix: 24,
            any: false,
        })
    }
}

impl AddressPool {
    /// Parses `A.B.C.D/N` (N 8-30: the pool needs room besides network and broadcast).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR: expected A.B.C.D/N"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not a CIDR: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("{s:?}: the prefix length must be 8-30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            base: u32::from(ip) & mask,
            prefix,
            any: false,
        })
    }

    /// Cluster mode: Gateways bind `0.0.0.0` on their own pods.
    pub fn cluster() -> Self {
        Self {
            any: true,
            ..Self::default()
        }
    }

    /// Whether this is cluster mode.
    pub fn binds_any(&self) -> bool {
        self.any
    }

    /// Usable host addresses (without network and broadcast).
    fn size(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The address for `key` (`namespace/name`): its hash's slot, or the next free one.
    pub fn assign(&self, key: &str, taken: &BTreeSet<String>) -> Option<String> {
        if self.any {
            return Some(ANY.to_string());
        }
        let size = self.size();
        let start = fnv1a(key) % size;
        (0..size)
            .map(|i| Ipv4Addr::from(self.base + 1 + (start + i) % size).to_string())
            .find(|a| !taken.contains(a))
    }
}

/// FNV-1a (32 bit): stable across builds and platforms, unlike `std`'s hasher.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_stable_inside_the_pool_and_probe_past_collisions() {
        let pool = AddressPool::parse("127.0.1.0/24").expect("pool");
        let none = BTreeSet::new();
        let a = pool.assign("ns/a", &none).expect("address");
        assert_eq!(pool.assign("ns/a", &none).as_ref(), Some(&a));
        assert!(a.starts_with("127.0.1."), "{a}");
        assert_ne!(a, "127.0.1.0");
        assert_ne!(a, "127.0.1.255");
        let taken: BTreeSet<String> = [a.clone()].into();
        let b = pool.assign("ns/a", &taken).expect("next");
        assert_ne!(a, b);
        assert!(AddressPool::parse("127.0.1.0").is_err());
        assert!(AddressPool::parse("127.0.1.0/31").is_err());
        assert!(AddressPool::parse("x/24").is_err());
    }
}
