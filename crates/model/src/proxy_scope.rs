//! Proxy scopes (`ProxyScope`): what the mesh proxies of a namespace, or some of them by
//! label, may reach and how they discover it, and which ProxyScope applies to a proxy.
//!
//! Precedence, like Istio's `Sidecar`: a ProxyScope whose selector matches the proxy's labels
//! wins over its namespace's default (a ProxyScope without selector). Among several of one
//! kind the oldest (`metadata.creationTimestamp`; objects without one, such as files, count as
//! newest) wins, then the first by name; the others are reported `Conflicted` (see
//! [`conflicts`]). The node metadata of a proxy wins over both (decided where groups are
//! formed, not here).

use crate::security::selects;
use crate::world::World;
use portolan_api::ObjectRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How the selected proxies discover their configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Discovery {
    Full,
    OnDemand,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyScope {
    pub source: ObjectRef,
    pub generation: i64,
    /// `metadata.creationTimestamp` in seconds since the epoch (none for files).
    pub created: Option<i64>,
    /// `None`: every proxy of the namespace.
    pub selector: Option<BTreeMap<String, String>>,
    /// `namespace/host` entries, as written (validated); `None`: everything.
    pub hosts: Option<Vec<String>>,
    /// `None`: as the node asks (default full).
    pub discovery: Option<Discovery>,
}

// === impl ProxyScope ===

impl ProxyScope {
    /// Oldest first, objects without a creation time last, then by name.
    fn precedence(&self) -> (bool, Option<i64>, &str) {
        (self.created.is_none(), self.created, &self.source.name)
    }

    /// Whether some proxy could be selected by both (same namespace, and both namespace-wide
    /// or both with selectors that agree on every label they share).
    fn overlaps(&self, other: &ProxyScope) -> bool {
        if self.source.namespace != other.source.namespace {
            return false;
        }
        match (&self.selector, &other.selector) {
            (None, None) => true,
            (Some(a), Some(b)) => a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v)),
            _ => false,
        }
    }
}

/// The ProxyScope of a proxy of `namespace` with node `labels`: the winning selector match,
/// else the winning namespace default, else none.
pub fn proxy_scope_for<'w>(
    world: &'w World,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Option<&'w Arc<ProxyScope>> {
    let in_ns = || {
        world
            .proxy_scopes
            .values()
            .filter(move |p| p.source.namespace == namespace)
    };
    let selected = in_ns()
        .filter(|p| p.selector.is_some() && selects(p.selector.as_ref(), labels))
        .min_by(|a, b| a.precedence().cmp(&b.precedence()));
    selected.or_else(|| {
        in_ns()
            .filter(|p| p.selector.is_none())
            .min_by(|a, b| a.precedence().cmp(&b.precedence()))
    })
}

/// Every ProxyScope that loses to another for some proxy, with the one it loses to (the
/// first by precedence of those it overlaps).
pub fn conflicts(world: &World) -> BTreeMap<ObjectRef, ObjectRef> {
    let mut ordered: Vec<&Arc<ProxyScope>> = world.proxy_scopes.values().collect();
    ordered.sort_by(|a, b| a.precedence().cmp(&b.precedence()));
    let mut out = BTreeMap::new();
    for (i, loser) in ordered.iter().enumerate() {
        if let Some(winner) = ordered[..i].iter().find(|w| w.overlaps(loser)) {
            out.insert(loser.source.clone(), winner.source.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::Kind;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn scope(
        ns: &str,
        name: &str,
        created: Option<i64>,
        selector: Option<&[(&str, &str)]>,
    ) -> Arc<ProxyScope> {
        Arc::new(ProxyScope {
            source: ObjectRef::new(Kind::ProxyScope, ns, name),
            generation: 1,
            created,
            selector: selector.map(labels),
            hosts: Some(vec![format!("{name}/*")]),
            discovery: None,
        })
    }

    fn world(scopes: &[Arc<ProxyScope>]) -> World {
        let mut world = World::default();
        for s in scopes {
            world.proxy_scopes.insert(s.source.clone(), s.clone());
        }
        world
    }

    fn name_for(world: &World, ns: &str, l: &[(&str, &str)]) -> Option<String> {
        proxy_scope_for(world, ns, &labels(l)).map(|p| p.source.name.clone())
    }

    #[test]
    fn a_selector_match_wins_over_the_namespace_default() {
        let w = world(&[
            scope("shop", "default", Some(10), None),
            scope("shop", "web", Some(20), Some(&[("app", "web")])),
            scope("other", "other", Some(1), None),
        ]);
        assert_eq!(
            name_for(&w, "shop", &[("app", "web"), ("v", "1")]),
            Some("web".into())
        );
        assert_eq!(
            name_for(&w, "shop", &[("app", "db")]),
            Some("default".into())
        );
        assert_eq!(name_for(&w, "third", &[]), None);
        assert!(
            conflicts(&w).is_empty(),
            "a default and a selector do not conflict"
        );
    }

    #[test]
    fn among_several_matches_the_oldest_then_the_first_by_name_wins() {
        let w = world(&[
            scope("shop", "b-old", Some(5), Some(&[("app", "web")])),
            scope("shop", "a-new", Some(9), Some(&[("tier", "front")])),
            scope("shop", "c-file", None, Some(&[("app", "web")])),
            scope("shop", "z", None, None),
            scope("shop", "y", None, None),
        ]);
        let both = [("app", "web"), ("tier", "front")];
        assert_eq!(name_for(&w, "shop", &both), Some("b-old".into()));
        assert_eq!(
            name_for(&w, "shop", &[("tier", "front")]),
            Some("a-new".into())
        );
        assert_eq!(
            name_for(&w, "shop", &[]),
            Some("y".into()),
            "no timestamps: by name"
        );
        let lost = conflicts(&w);
        let winner = |n: &str| lost.get(&ObjectRef::new(Kind::ProxyScope, "shop", n));
        assert_eq!(winner("a-new").map(|r| r.name.as_str()), Some("b-old"));
        assert_eq!(winner("c-file").map(|r| r.name.as_str()), Some("b-old"));
        assert_eq!(winner("z").map(|r| r.name.as_str()), Some("y"));
        assert_eq!(winner("b-old"), None);
        assert_eq!(winner("y"), None);
    }

    #[test]
    fn selectors_that_disagree_on_a_label_never_conflict() {
        let w = world(&[
            scope("shop", "web", Some(1), Some(&[("app", "web")])),
            scope("shop", "db", Some(2), Some(&[("app", "db")])),
        ]);
        assert!(conflicts(&w).is_empty());
    }
}
