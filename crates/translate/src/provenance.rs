//! Provenance: which source objects produced each resource of a translation, and for a route
//! configuration, each virtual host and each named route in it.
//!
//! Translation records it where it uses the objects: a Service port's clusters and
//! ClusterLoadAssignments come from the Service and the TrafficPolicy of that port (the
//! assignments also from the EndpointSlices), an ExternalService host's cluster from the
//! ExternalService and its policy, a gateway listener from the Gateways with a listener on its
//! port (for a Gateway API Gateway: the Gateway and/or the ListenerSets whose listeners are on
//! the port) and the Secrets it serves, a route configuration's virtual hosts from the Service or
//! external host they route and the TrafficRoute whose rules replace the default route (on a
//! gateway, the TrafficRoute of the host), the inbound listener from the PeerAuthentication
//! and the AccessPolicies it enforces. Resources made from no object (the mesh listener, the
//! telemetry collector, the inbound cluster, workload certificates) have no entry.
//!
//! It is cheap to build and to keep: object lists are shared [`Origins`] (`Arc`), a Service's
//! entries are made when its clusters are translated and a [`crate::Translator`] reuses them
//! with its memo, and a route configuration's whole set of objects is only computed when
//! asked for ([`Entry::objects`]). Readers (NACK attribution) look entries up by resource kind
//! and name, and match the parts of a route configuration against Envoy's error text
//! ([`Entry::parts_in`]): a part's name, or a value of it Envoy quotes (a route's regexes).

use portolan_api::ObjectRef;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The objects behind a resource or part, sorted, each once; shared between entries.
pub type Origins = Arc<[ObjectRef]>;

/// The kinds of resource translation makes (the xDS types Portolan serves from objects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Cluster,
    /// A ClusterLoadAssignment, named by its cluster name.
    Endpoint,
    Listener,
    /// A RouteConfiguration.
    Route,
    /// A VHDS virtual host of an on-demand group (`ROUTE_CONFIG/DOMAIN`).
    VirtualHost,
    /// A gateway certificate served over SDS (`gateway-cert|NS/NAME`).
    Secret,
}

/// What a [`Part`] of a route configuration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartKind {
    VirtualHost,
    /// An Envoy route (a TrafficRoute rule's match entry), named `ns/route/rule`.
    Route,
}

/// A virtual host or a named route of a route configuration, and the objects behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub kind: PartKind,
    pub name: String,
    /// Values of the part that Envoy quotes in its errors (a route's regexes).
    pub quotes: Vec<String>,
    pub origins: Origins,
}

/// The objects behind resources of one kind: one entry may name several resources (a Service
/// port's cluster and its subsets' clusters).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub kind: ResourceKind,
    pub names: Arc<[String]>,
    /// The objects behind the resources themselves (for a route configuration, besides its
    /// parts': say, the Gateways of a gateway route configuration).
    pub origins: Origins,
    /// A route configuration's virtual hosts and named routes (empty for other kinds).
    pub parts: Arc<[Part]>,
    /// The Gateway port whose listeners made the resource (a Gateway API Gateway's listener,
    /// route configurations and UDP cluster of one port), `None` for the others: a NACK of it
    /// is the listeners' on that port only, not every listener of its Gateway or ListenerSet.
    pub port: Option<u16>,
}

/// Everything one translation recorded, in translation order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance {
    entries: Vec<Entry>,
}

/// Sorted, deduplicated [`Origins`] of `objects`.
pub fn origins(objects: impl IntoIterator<Item = ObjectRef>) -> Origins {
    let set: BTreeSet<ObjectRef> = objects.into_iter().collect();
    set.into_iter().collect()
}

/// The union of several [`Origins`].
pub fn union<'a>(all: impl IntoIterator<Item = &'a Origins>) -> Origins {
    origins(all.into_iter().flat_map(|o| o.iter().cloned()))
}

// === impl Entry ===

impl Entry {
    /// An entry of one resource.
    pub fn new(kind: ResourceKind, name: impl Into<String>, origins: Origins) -> Self {
        Self {
            kind,
            names: Arc::from([name.into()]),
            origins,
            parts: Arc::from([]),
            port: None,
        }
    }

    /// The entry made by the listeners on Gateway port `port` (see [`Entry::port`]).
    pub fn on_port(self, port: u16) -> Self {
        Self {
            port: Some(port),
            ..self
        }
    }

    /// An entry of several resources of one kind.
    pub fn of_many(kind: ResourceKind, names: Vec<String>, origins: Origins) -> Self {
        Self {
            kind,
            names: names.into(),
            origins,
            parts: Arc::from([]),
            port: None,
        }
    }

    /// A route configuration's entry with its parts.
    pub fn route(name: impl Into<String>, origins: Origins, parts: Vec<Part>) -> Self {
        Self {
            parts: parts.into(),
            ..Self::new(ResourceKind::Route, name, origins)
        }
    }

    /// Whether this entry is of a resource of `kind` named `name`.
    pub fn is(&self, kind: ResourceKind, name: &str) -> bool {
        self.kind == kind && self.names.iter().any(|n| n == name)
    }

    /// Every object behind the resources: their own and their parts'.
    pub fn objects(&self) -> Origins {
        union(std::iter::once(&self.origins).chain(self.parts.iter().map(|p| &p.origins)))
    }

    /// The parts `text` names (their name, or a value Envoy quotes).
    pub fn parts_in<'a>(&'a self, text: &'a str) -> impl Iterator<Item = &'a Part> + 'a {
        self.parts.iter().filter(move |p| p.is_in(text))
    }
}

// === impl Part ===

impl Part {
    /// A virtual host.
    pub fn virtual_host(name: impl Into<String>, origins: Origins) -> Self {
        Self {
            kind: PartKind::VirtualHost,
            name: name.into(),
            quotes: Vec::new(),
            origins,
        }
    }

    /// Whether `text` names this part or quotes one of its values.
    pub fn is_in(&self, text: &str) -> bool {
        (!self.name.is_empty() && text.contains(self.name.as_str()))
            || self.quotes.iter().any(|q| text.contains(q.as_str()))
    }
}

// === impl Provenance ===

impl Provenance {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// Adds the entries of `other`, after this one's.
    pub fn extend(&mut self, other: impl IntoIterator<Item = Entry>) {
        self.entries.extend(other);
    }

    /// Every entry, in translation order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries of the resource of `kind` named `name` (one, unless two made the same).
    pub fn of<'a>(
        &'a self,
        kind: ResourceKind,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.is(kind, name))
    }

    /// Replaces, for each of `entries`, the entry of the same kind and names (a Service's
    /// clusters or assignments translated again after an endpoint change); `false`, with
    /// nothing replaced, when one has no such entry.
    pub fn replace_entries(&mut self, entries: &[Entry]) -> bool {
        let same = |a: &Entry, b: &Entry| a.kind == b.kind && a.names == b.names;
        let mut at = Vec::with_capacity(entries.len());
        for new in entries {
            match self.entries.iter().position(|e| same(e, new)) {
                Some(i) => at.push(i),
                None => return false,
            }
        }
        for (i, new) in at.into_iter().zip(entries) {
            self.entries[i] = new.clone();
        }
        true
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl IntoIterator for Provenance {
    type Item = Entry;
    type IntoIter = std::vec::IntoIter<Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::Kind;

    #[test]
    fn a_route_configurations_objects_are_its_own_and_its_parts() {
        let gateway = ObjectRef::new(Kind::Gateway, "default", "edge");
        let route = ObjectRef::new(Kind::TrafficRoute, "default", "www");
        let part = Part {
            kind: PartKind::Route,
            name: "default/www/0".into(),
            quotes: vec!["/a{40}".into()],
            origins: origins([route.clone()]),
        };
        let entry = Entry::route("gateway-80", origins([gateway.clone()]), vec![part]);
        assert_eq!(&*entry.objects(), [route.clone(), gateway].as_slice());
        let quoted = "regex '/a{40}' RE2 program size of 125 > max program size of 100";
        assert_eq!(entry.parts_in(quoted).count(), 1);
        assert_eq!(entry.parts_in("in route default/www/0").count(), 1);
        assert_eq!(entry.parts_in("something else").count(), 0);
    }
}
