//! Proxy groups from group keys, with their `ProxyScope` resolved: what a group may reach and
//! how it discovers it, decided before translation.
//!
//! The group key (see [`crate::grouping`]) carries everything that picks a ProxyScope: the
//! node's labels and its namespace ([`GroupKey::node_namespace`], the `portolan.dev/namespace`
//! metadata, else the proven identity's). So every proxy of one group gets the same
//! ProxyScope, and a ProxyScope change changes the [`ProxyGroup`] its groups translate for:
//! they are rebuilt with the other groups on the next batch, and only those whose output
//! changed are pushed (versions are content hashes).
//!
//! Precedence: explicit node metadata wins, field by field: `portolan.dev/scope` over
//! `spec.hosts`, `portolan.dev/discovery` (`full` or `on-demand`) over `spec.discovery`. Among
//! ProxyScopes, see [`portolan_model::proxy_scope::proxy_scope_for`].

use portolan_model::World;
use portolan_model::group::{DiscoveryMode, GroupKey, GroupKeyError, ScopeHosts};
use portolan_model::proxy_scope::{self, ProxyScope};
use portolan_translate::scope::EgressScope;
use portolan_translate::{Discovery, ProxyGroup};

/// The group a key names, its scope and discovery completed from the ProxyScope that applies.
pub fn group_for_key(key: &GroupKey, world: &World) -> ProxyGroup {
    let mut group = ProxyGroup::from(key);
    let Some(namespace) = proxy_namespace(key) else {
        return group;
    };
    let Some(applied) = proxy_scope::proxy_scope_for(world, namespace, &key.labels) else {
        return group;
    };
    apply(&mut group, applied, key);
    group
}

/// The group a cache entry's name (a group key's string form, see [`crate::grouping`]) names;
/// an error for a name no grouping hook writes.
pub fn group_for_name(name: &str, world: &World) -> Result<ProxyGroup, GroupKeyError> {
    Ok(group_for_key(&name.parse()?, world))
}

/// The proxy's namespace: what its node metadata says, else its proven identity's.
fn proxy_namespace(key: &GroupKey) -> Option<&str> {
    key.node_namespace
        .as_deref()
        .or_else(|| key.workload.as_ref().map(|w| w.namespace.as_str()))
}

/// Fills in what the node's metadata left open.
fn apply(group: &mut ProxyGroup, applied: &ProxyScope, key: &GroupKey) {
    if group.scope.is_none()
        && let Some(hosts) = &applied.hosts
    {
        group.scope = Some(EgressScope::parse(&canonical(
            hosts,
            &applied.source.namespace,
        )));
    }
    if key.discovery == DiscoveryMode::Unset
        && let Some(discovery) = applied.discovery
    {
        group.discovery = match discovery {
            proxy_scope::Discovery::Full => Discovery::Full,
            proxy_scope::Discovery::OnDemand => Discovery::OnDemand,
        };
    }
}

/// Entries in the canonical form node metadata scopes take in group keys, `.` as the
/// ProxyScope's namespace (the proxy's), comma-joined.
fn canonical(hosts: &[String], namespace: &str) -> String {
    ScopeHosts::canonical(hosts.iter().map(String::as_str), Some(namespace)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portolan_api::{Kind, ObjectRef};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn scope(
        name: &str,
        selector: Option<(&str, &str)>,
        hosts: Option<&[&str]>,
        discovery: Option<proxy_scope::Discovery>,
    ) -> Arc<ProxyScope> {
        Arc::new(ProxyScope {
            source: ObjectRef::new(Kind::ProxyScope, "shop", name),
            generation: 1,
            created: None,
            selector: selector.map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())])),
            hosts: hosts.map(|h| h.iter().map(|s| s.to_string()).collect()),
            discovery,
        })
    }

    fn world(scopes: &[Arc<ProxyScope>]) -> World {
        let mut world = World::default();
        for s in scopes {
            world.proxy_scopes.insert(s.source.clone(), s.clone());
        }
        world
    }

    fn group_for_key(key: &str, world: &World) -> ProxyGroup {
        group_for_name(key, world).unwrap_or_else(|e| panic!("{e}"))
    }

    fn scope_of(group: &ProxyGroup) -> Option<String> {
        group.scope.as_ref().map(ToString::to_string)
    }

    #[test]
    fn the_namespace_default_and_a_selector_scope_their_proxies() {
        let w = world(&[
            scope(
                "default",
                None,
                Some(&["./*", " shared/*", "shared/*"]),
                None,
            ),
            scope(
                "web",
                Some(("app", "web")),
                Some(&["*/api.example.com"]),
                None,
            ),
        ]);
        let plain = group_for_key("cart;node-ns=shop", &w);
        assert_eq!(scope_of(&plain).as_deref(), Some("shared/*,shop/*"));
        assert_eq!(
            plain.name, "cart;node-ns=shop",
            "the key stays the group's name"
        );
        let web = group_for_key("web;l.app=web;node-ns=shop", &w);
        assert_eq!(scope_of(&web).as_deref(), Some("*/api.example.com"));
        // The proven identity's namespace counts when the node names none.
        let mesh = group_for_key("cart;ns=shop;sa=cart", &w);
        assert_eq!(scope_of(&mesh).as_deref(), Some("shared/*,shop/*"));
        // Another namespace, or no namespace at all: no ProxyScope.
        assert_eq!(scope_of(&group_for_key("cart;node-ns=other", &w)), None);
        assert_eq!(scope_of(&group_for_key("cart", &w)), None);
    }

    #[test]
    fn explicit_node_metadata_wins_field_by_field() {
        let on_demand = Some(proxy_scope::Discovery::OnDemand);
        let w = world(&[scope("default", None, Some(&["./*"]), on_demand)]);
        let both = group_for_key("cart;node-ns=shop", &w);
        assert_eq!(scope_of(&both).as_deref(), Some("shop/*"));
        assert_eq!(both.discovery, Discovery::OnDemand);
        let own_scope = group_for_key("cart;scope=~/*;node-ns=shop", &w);
        assert_eq!(scope_of(&own_scope).as_deref(), Some("~/*"));
        assert_eq!(
            own_scope.discovery,
            Discovery::OnDemand,
            "discovery still applies"
        );
        let full = group_for_key("cart;mode=full;node-ns=shop", &w);
        assert_eq!(full.discovery, Discovery::Full);
        assert_eq!(
            scope_of(&full).as_deref(),
            Some("shop/*"),
            "hosts still apply"
        );
    }

    #[test]
    fn a_selector_scope_without_hosts_gives_its_proxies_everything() {
        let w = world(&[
            scope("default", None, Some(&["./*"]), None),
            scope("edge", Some(("tier", "edge")), None, None),
        ]);
        assert_eq!(
            scope_of(&group_for_key("x;l.tier=edge;node-ns=shop", &w)),
            None
        );
    }

    /// Entries the API accepts always parse as a translation scope (the two checks agree).
    #[test]
    fn entries_the_api_accepts_parse_without_error() {
        let entries = [
            "./*",
            "*/*",
            "~/*",
            "shop/*",
            "*/web.shop.svc.cluster.local",
            "*/*.example.com",
            "a-b/x_y.z",
            "*/a",
            "payments",
            "Web/*",
            "*/a:80",
            "*/a/b",
            "*/",
            "*/*.",
        ];
        for entry in entries {
            let api_ok = portolan_api::validate::scope_entry(entry).is_ok();
            let parsed = EgressScope::parse(&canonical(&[entry.to_string()], "shop"));
            if api_ok {
                assert_eq!(parsed.error, None, "{entry}");
            }
        }
    }
}
