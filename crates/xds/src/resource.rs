//! xDS resource types and encoded resources.
//!
//! Owns the six type URLs Portolan serves, their push order, and [`Resource`]: one Envoy message
//! encoded once, typed, named, and versioned by the hash of its bytes. Resources are shared
//! (`Arc`) between snapshots and streams, and their bytes ([`Bytes`]) are framed into responses
//! as they are; nothing re-encodes or copies them until the frame.

use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::google::protobuf::Any;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128_with_seed};

/// The xDS resource types Portolan serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ResourceType {
    /// `envoy.config.cluster.v3.Cluster` (CDS).
    Cluster,
    /// `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
    Endpoint,
    /// `envoy.config.listener.v3.Listener` (LDS).
    Listener,
    /// `envoy.config.route.v3.RouteConfiguration` (RDS).
    Route,
    /// `envoy.extensions.transport_sockets.tls.v3.Secret` (SDS, by name like EDS/RDS): mesh
    /// workload certificates and the trust bundle.
    Secret,
    /// `envoy.config.route.v3.VirtualHost` (VHDS, Delta only, by name): the virtual hosts of an
    /// on-demand proxy's route configuration, asked for as `ROUTE_CONFIG/HOST` on first use.
    VirtualHost,
}

// === impl ResourceType ===

impl ResourceType {
    /// The four configuration types, in push order (make-before-break): clusters, their
    /// endpoints, listeners, routes. Tables and reports list these.
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
    ];

    /// Every type served: [`ResourceType::ALL`], then secrets (asked for by name once a
    /// cluster or listener names them), then virtual hosts (asked for by name on first use).
    pub const SERVED: [ResourceType; 6] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::Secret,
        ResourceType::VirtualHost,
    ];

    /// How many types are served.
    pub const COUNT: usize = Self::SERVED.len();

    /// The v3 type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            ResourceType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
            ResourceType::VirtualHost => "type.googleapis.com/envoy.config.route.v3.VirtualHost",
        }
    }

    /// The type for a v3 type URL, `None` for types Portolan does not serve.
    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::SERVED.into_iter().find(|ty| ty.type_url() == url)
    }

    /// Whether a State-of-the-World response carries every resource of the type (a resource left
    /// out is deleted by the client): true for clusters and listeners.
    pub fn is_wildcard(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }

    /// Whether a Delta client may subscribe to every resource of the type: all but virtual
    /// hosts, which on-demand proxies ask for one by one.
    pub fn allows_wildcard(self) -> bool {
        self != ResourceType::VirtualHost
    }

    /// Short name for metric labels and logs: `cds`, `eds`, `lds`, `rds`, `sds`, `vhds`.
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "cds",
            ResourceType::Endpoint => "eds",
            ResourceType::Listener => "lds",
            ResourceType::Route => "rds",
            ResourceType::Secret => "sds",
            ResourceType::VirtualHost => "vhds",
        }
    }

    /// Position in [`ResourceType::SERVED`].
    pub(crate) fn index(self) -> usize {
        match self {
            ResourceType::Cluster => 0,
            ResourceType::Endpoint => 1,
            ResourceType::Listener => 2,
            ResourceType::Route => 3,
            ResourceType::Secret => 4,
            ResourceType::VirtualHost => 5,
        }
    }
}

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short_name())
    }
}

/// One encoded Envoy resource: its type, name, content version and encoded message.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    ty: ResourceType,
    /// Shared with every stream that tracks the resource by name (no per-stream copy).
    name: Arc<str>,
    /// Shared with every Delta stream that records the version a client holds.
    version: Arc<str>,
    /// The encoded message (the `value` of its `Any`), framed into responses as it is.
    value: Bytes,
}

// === impl Resource ===

impl Resource {
    /// Encodes `msg`, a message of type `ty`, once; the version is the hex xxh3 of the encoded
    /// bytes. The caller vouches for the type ([`crate::SnapshotBuilder::add`] checks it).
    pub fn encode(ty: ResourceType, name: impl Into<Arc<str>>, msg: &impl prost::Message) -> Self {
        Self::new(ty, name, msg.encode_to_vec())
    }

    /// Wraps an already encoded message of type `ty`.
    pub fn new(ty: ResourceType, name: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        let value = value.into();
        let mut digits = [0u8; 16];
        let version = Arc::from(hex16_into(xxh3_64(&value), &mut digits));
        Self {
            ty,
            name: name.into(),
            version,
            value,
        }
    }

    /// The resource type.
    pub fn ty(&self) -> ResourceType {
        self.ty
    }

    /// The type URL of its `Any`.
    pub fn type_url(&self) -> &'static str {
        self.ty.type_url()
    }

    /// The resource name (cluster name, CLA cluster name, listener name, route config name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as a shared string: streams key their per-resource state by it.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// Content version: equal bytes give equal versions.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The version as a shared string: Delta streams record what a client holds with it.
    pub(crate) fn shared_version(&self) -> &Arc<str> {
        &self.version
    }

    /// The encoded message, shared: responses are framed from these bytes, never from copies.
    pub fn value(&self) -> &Bytes {
        &self.value
    }

    /// A copy as an `Any`, for what renders or dumps resources (JSON, CSDS); streams never
    /// make one.
    pub fn to_any(&self) -> Any {
        Any {
            type_url: self.type_url().to_string(),
            value: self.value.to_vec(),
        }
    }
}

/// A version for a set of resources: derived from their (name, version) pairs, in any order.
/// The same set always gives the same version; the empty set gives a fixed one. (Sets are keyed
/// by name, so no pair repeats.)
pub(crate) fn aggregate_version<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sum = VersionSum::default();
    for (name, version) in items {
        sum.add(name, version);
    }
    sum.version()
}

/// The running form of [`aggregate_version`]: a sum of one 128-bit hash per (name, version)
/// pair, so a set's version follows a change of one pair in O(1) (take the old pair out, put
/// the new one in) instead of rehashing the whole set. Streams keep one per by-name type and
/// update it from a snapshot's change set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionSum(u128);

// === impl VersionSum ===

impl VersionSum {
    /// The hash of one pair: the version's bytes, seeded with the hash of the name.
    fn term(name: &str, version: &str) -> u128 {
        xxh3_128_with_seed(version.as_bytes(), xxh3_64(name.as_bytes()))
    }

    pub(crate) fn add(&mut self, name: &str, version: &str) {
        self.0 = self.0.wrapping_add(Self::term(name, version));
    }

    pub(crate) fn remove(&mut self, name: &str, version: &str) {
        self.0 = self.0.wrapping_sub(Self::term(name, version));
    }

    /// Adds a resource's pair.
    pub(crate) fn add_resource(&mut self, resource: &Resource) {
        self.add(resource.name(), resource.version());
    }

    /// Takes a resource's pair out.
    pub(crate) fn remove_resource(&mut self, resource: &Resource) {
        self.remove(resource.name(), resource.version());
    }

    /// The set's version: 16 hex digits.
    pub(crate) fn version(&self) -> String {
        hex16(xxh3_64(&self.0.to_le_bytes()))
    }
}

/// `value` as 16 lower-case hex digits (what `format!("{value:016x}")` gives, without the
/// formatting machinery: one version is made per resource per build).
fn hex16(value: u64) -> String {
    let mut digits = [0u8; 16];
    hex16_into(value, &mut digits).to_string()
}

/// [`hex16`] written into `digits`, for a caller that makes its own string of it.
fn hex16_into(value: u64, digits: &mut [u8; 16]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, digit) in digits.iter_mut().enumerate() {
        let shift = (15 - i) * 4;
        *digit = DIGITS[((value >> shift) & 0xf) as usize];
    }
    // Every byte is an ASCII hex digit.
    std::str::from_utf8(digits).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_round_trip() {
        for ty in ResourceType::SERVED {
            assert_eq!(ResourceType::from_type_url(ty.type_url()), Some(ty));
            assert_eq!(ResourceType::SERVED[ty.index()], ty);
        }
        assert_eq!(ResourceType::from_type_url("type.googleapis.com/x"), None);
    }

    #[test]
    fn version_follows_content() {
        let a = Resource::new(ResourceType::Cluster, "a", vec![1, 2]);
        let b = Resource::new(ResourceType::Cluster, "b", vec![1, 2]);
        let c = Resource::new(ResourceType::Cluster, "a", vec![1, 3]);
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
    }

    #[test]
    fn any_carries_the_type_url_and_the_bytes() {
        let cluster = crate::testing::cluster("a");
        let resource = Resource::encode(ResourceType::Cluster, "a", &cluster);
        let any = resource.to_any();
        assert_eq!(any.type_url, ResourceType::Cluster.type_url());
        assert_eq!(any.value, prost::Message::encode_to_vec(&cluster));
        assert_eq!(resource.value().as_ref(), any.value.as_slice());
    }

    #[test]
    fn hex16_matches_format() {
        for value in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(hex16(value), format!("{value:016x}"));
        }
    }

    #[test]
    fn aggregate_version_depends_on_names_and_versions() {
        let one = aggregate_version([("a", "1"), ("b", "2")]);
        assert_eq!(one, aggregate_version([("a", "1"), ("b", "2")]));
        assert_ne!(one, aggregate_version([("a", "1"), ("b", "3")]));
        assert_ne!(one, aggregate_version([("a", "1")]));
        assert_ne!(
            aggregate_version([("ab", "")]),
            aggregate_version([("a", "b")])
        );
        assert_ne!(
            aggregate_version([("a", "1"), ("b", "2")]),
            aggregate_version([("a", "2"), ("b", "1")])
        );
    }

    #[test]
    fn aggregate_version_ignores_order_and_follows_a_running_sum() {
        let whole = aggregate_version([("a", "1"), ("b", "2"), ("c", "3")]);
        assert_eq!(
            whole,
            aggregate_version([("c", "3"), ("a", "1"), ("b", "2")])
        );
        let mut sum = VersionSum::default();
        assert_eq!(sum.version(), aggregate_version([]));
        sum.add("a", "1");
        sum.add("b", "9");
        sum.add("c", "3");
        sum.remove("b", "9");
        sum.add("b", "2");
        assert_eq!(sum.version(), whole);
        sum.remove("c", "3");
        assert_eq!(sum.version(), aggregate_version([("a", "1"), ("b", "2")]));
    }
}
