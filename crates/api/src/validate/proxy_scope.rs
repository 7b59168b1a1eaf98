//! Validation of `ProxyScope`: the selector like the security kinds', each `spec.hosts` entry
//! in the syntax of the node metadata `portolan.dev/scope` (Istio's `egress.hosts`).

use super::peer_authentication::workload_selector;
use super::*;
use crate::crd::proxy_scope::ProxyScope;

pub(super) fn proxy_scope(scope: &ProxyScope, errors: &mut Errors) {
    object_name(scope.metadata.name.as_deref(), errors);
    if let Some(selector) = &scope.spec.selector {
        workload_selector(selector, spec_path().field("selector"), errors);
    }
    let Some(hosts) = &scope.spec.hosts else {
        return;
    };
    let path = spec_path().field("hosts");
    if hosts.is_empty() {
        errors.push(
            path.clone(),
            "at least one entry is required (leave hosts out to reach everything; `~/*` reaches nothing)",
        );
    }
    for (i, entry) in hosts.iter().enumerate() {
        if let Err(message) = scope_entry(entry) {
            errors.push(path.index(i), message);
        }
    }
}

/// Checks one `namespace/host` entry: namespace `.`, `*`, `~` or a DNS label; host `*`,
/// `*.suffix` or a lower-case DNS name (no port, no path).
pub fn scope_entry(entry: &str) -> Result<(), String> {
    let Some((namespace, host)) = entry.split_once('/') else {
        return Err(format!(
            "{entry:?} is not `namespace/host` (write `*/{entry}` for any namespace)"
        ));
    };
    if !matches!(namespace, "." | "*" | "~") && !is_dns_label(namespace) {
        return Err(format!(
            "namespace {namespace:?} is not `.`, `*`, `~` or a DNS label"
        ));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if host != "*" && !(name.contains(|c: char| c.is_ascii_alphanumeric()) && is_dns_name(name)) {
        return Err(format!(
            "host {host:?} is not `*`, `*.suffix` or a lower-case host name (no port, no path)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use super::scope_entry;
    use serde_json::json;

    #[test]
    fn proxy_scope_table() {
        table(
            "portolan.dev/v1alpha1",
            "ProxyScope",
            &[
                (
                    json!({"hosts": ["./*", "shared/*", "*/api.example.com", "~/*", "*/*.example.com"]}),
                    &[],
                ),
                (
                    json!({"selector": {"matchLabels": {"app": "web"}}, "discovery": "on-demand"}),
                    &[],
                ),
                (json!({}), &[]),
                (
                    json!({"hosts": []}),
                    &[
                        "spec.hosts: at least one entry is required (leave hosts out to reach everything; `~/*` reaches nothing)",
                    ],
                ),
                (
                    json!({"hosts": ["./*", "shared/*", "payments", "Web/*", "*/a:80"]}),
                    &[
                        "spec.hosts[2]: \"payments\" is not `namespace/host` (write `*/payments` for any namespace)",
                        "spec.hosts[3]: namespace \"Web\" is not `.`, `*`, `~` or a DNS label",
                        "spec.hosts[4]: host \"a:80\" is not `*`, `*.suffix` or a lower-case host name (no port, no path)",
                    ],
                ),
                (
                    json!({"selector": {"matchLabels": {}}}),
                    &[
                        "spec.selector.matchLabels: at least one label is required (leave the selector out to select the whole namespace)",
                    ],
                ),
            ],
        );
    }

    #[test]
    fn a_bad_discovery_mode_is_a_decode_error_naming_the_field() {
        let doc = json!({
            "apiVersion": "portolan.dev/v1alpha1", "kind": "ProxyScope",
            "metadata": {"name": "x", "namespace": "default"}, "spec": {"discovery": "ondemand"}
        });
        let error = crate::Resource::decode(doc)
            .expect_err("ondemand is not a mode")
            .to_string();
        assert!(error.contains("spec.discovery"), "{error}");
    }

    #[test]
    fn entries_are_checked_like_node_metadata_scopes() {
        for ok in [
            "./*",
            "*/*",
            "~/*",
            "shop/web.shop.svc.cluster.local",
            "*/*.example.com",
        ] {
            assert_eq!(scope_entry(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/",
            "*/",
            "a/b/c",
            "shop/*.",
            "shop/*.*",
            "shop/a..b",
            "-x/*",
        ] {
            assert!(scope_entry(bad).is_err(), "{bad:?}");
        }
    }
}
