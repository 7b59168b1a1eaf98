//! Validation of `AccessPolicy`.

use super::peer_authentication::workload_selector;
use super::*;
use crate::crd::access_policy::*;

pub(super) fn access_policy(ap: &AccessPolicy, errors: &mut Errors) {
    object_name(ap.metadata.name.as_deref(), errors);
    let spec = &ap.spec;
    let path = spec_path();
    if let Some(selector) = &spec.selector {
        workload_selector(selector, path.field("selector"), errors);
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let p = path.field("rules").index(i);
        if let Some(from) = &rule.from {
            source(from, p.field("from"), errors);
        }
        if let Some(to) = &rule.to {
            operation(to, p.field("to"), errors);
        }
        for (j, c) in rule.claims.iter().enumerate() {
            claim(c, p.field("claims").index(j), errors);
        }
    }
}

fn claim(c: &ClaimCondition, path: FieldPath, errors: &mut Errors) {
    if c.name.is_empty() || c.name.split('.').any(str::is_empty) {
        errors.push(
            path.field("name"),
            format!(
                "{:?} is not a claim name: a name, or dot-separated names for a nested claim",
                c.name
            ),
        );
    }
    if c.values.is_empty() {
        errors.push(path.field("values"), "at least one value is required");
    }
}

fn source(from: &AccessSource, path: FieldPath, errors: &mut Errors) {
    if from.principals.is_empty()
        && from.namespaces.is_empty()
        && from.service_accounts.is_empty()
        && from.request_principals.is_empty()
    {
        errors.push(
            path.clone(),
            "needs at least one of principals, namespaces, serviceAccounts, requestPrincipals (leave from out to match any source)",
        );
    }
    for (i, rp) in from.request_principals.iter().enumerate() {
        let ok = rp == "*"
            || rp
                .rsplit_once('/')
                .is_some_and(|(iss, sub)| !iss.is_empty() && !sub.is_empty());
        if !ok {
            errors.push(
                path.field("requestPrincipals").index(i),
                format!("{rp:?} is not ISSUER/SUBJECT, ISSUER/* or *"),
            );
        }
    }
    for (i, p) in from.principals.iter().enumerate() {
        if !is_principal(p) {
            errors.push(
                path.field("principals").index(i),
                format!("{p:?} is not a SPIFFE ID: spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/NAME, optionally ending in '*'"),
            );
        }
    }
    for (i, ns) in from.namespaces.iter().enumerate() {
        dns_label(ns, "namespace", path.field("namespaces").index(i), errors);
    }
    for (i, sa) in from.service_accounts.iter().enumerate() {
        let p = path.field("serviceAccounts").index(i);
        let (ns, name) = sa
            .split_once('/')
            .map_or((None, sa.as_str()), |(n, s)| (Some(n), s));
        if let Some(ns) = ns {
            dns_label(ns, "namespace", p.clone(), errors);
        }
        if !is_dns_name(name) {
            errors.push(
                p,
                format!("{sa:?} is not a service account: NAME or NAMESPACE/NAME (DNS names)"),
            );
        }
    }
}

fn is_principal(p: &str) -> bool {
    let Some(rest) = p.strip_prefix("spiffe://") else {
        return false;
    };
    let rest = rest.strip_suffix('*').unwrap_or(rest);
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'*' && b != b';')
}

fn operation(to: &AccessOperation, path: FieldPath, errors: &mut Errors) {
    for (i, p) in to.ports.iter().enumerate() {
        port(*p, path.field("ports").index(i), errors);
    }
    for (i, m) in to.methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push(
                path.field("methods").index(i),
                format!("{m:?} is not an HTTP method: upper-case letters (GET, POST, ...)"),
            );
        }
    }
    for (i, p) in to.paths.iter().enumerate() {
        let body = p.strip_suffix('*').unwrap_or(p);
        if !(p == "*" || body.starts_with('/')) || body.contains('*') {
            errors.push(
                path.field("paths").index(i),
                format!(
                    "{p:?} is not a path: must start with '/', may end in '*' (a prefix), or be '*'"
                ),
            );
        }
    }
    for (i, h) in to.headers.iter().enumerate() {
        let p = path.field("headers").index(i);
        header_name(&h.name, p.field("name"), errors);
        exactly_one(
            p,
            &[
                ("exact", h.exact.is_some()),
                ("prefix", h.prefix.is_some()),
                ("present", h.present.is_some()),
            ],
            errors,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::json;

    #[test]
    fn access_policy_table() {
        table(
            "portolan.dev/v1alpha1",
            "AccessPolicy",
            &[
                (json!({"action": "ALLOW"}), &[]),
                (
                    json!({"action": "DENY", "selector": {"matchLabels": {"app": "web"}}, "rules": [
                        {"from": {"principals": ["spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/ops/*"],
                                  "namespaces": ["shop"], "serviceAccounts": ["web", "ops/admin"]},
                         "to": {"ports": [8080], "methods": ["GET"], "paths": ["/api/*", "/healthz", "*"],
                                "headers": [{"name": "x-user", "exact": "a"}, {"name": "x-debug", "present": true}]}}
                    ]}),
                    &[],
                ),
                (
                    json!({"action": "ALLOW", "rules": [
                        {"from": {}},
                        {"from": {"principals": ["web"], "namespaces": ["Shop"], "serviceAccounts": ["a/b/c"]}},
                        {"to": {"ports": [0], "methods": ["get"], "paths": ["api", "/a*b"],
                                "headers": [{"name": "bad name", "exact": "x", "prefix": "y"}]}}
                    ]}),
                    &[
                        "spec.rules[0].from: needs at least one of principals, namespaces, serviceAccounts, requestPrincipals (leave from out to match any source)",
                        "spec.rules[1].from.principals[0]: \"web\" is not a SPIFFE ID: spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/NAME, optionally ending in '*'",
                        "spec.rules[1].from.namespaces[0]: \"Shop\" is not a valid namespace: a DNS label (lower-case letters, digits and '-', 1-63 characters)",
                        "spec.rules[1].from.serviceAccounts[0]: \"a/b/c\" is not a service account: NAME or NAMESPACE/NAME (DNS names)",
                        "spec.rules[2].to.ports[0]: 0 is not a port: must be 1-65535",
                        "spec.rules[2].to.methods[0]: \"get\" is not an HTTP method: upper-case letters (GET, POST, ...)",
                        "spec.rules[2].to.paths[0]: \"api\" is not a path: must start with '/', may end in '*' (a prefix), or be '*'",
                        "spec.rules[2].to.paths[1]: \"/a*b\" is not a path: must start with '/', may end in '*' (a prefix), or be '*'",
                        "spec.rules[2].to.headers[0].name: \"bad name\" is not a header name: letters, digits and !#$%&'*+-.^_`|~",
                        "spec.rules[2].to.headers[0]: exactly one of exact, prefix, present is required, found exact and prefix",
                    ],
                ),
                (
                    json!({"action": "ALLOW", "rules": [
                        {"from": {"requestPrincipals": ["https://idp/alice", "https://idp/*", "*"]},
                         "claims": [{"name": "realm.role", "values": ["admin"]}]},
                        {"from": {"requestPrincipals": ["alice", "/x"]},
                         "claims": [{"name": "a..b", "values": []}]}
                    ]}),
                    &[
                        "spec.rules[1].from.requestPrincipals[0]: \"alice\" is not ISSUER/SUBJECT, ISSUER/* or *",
                        "spec.rules[1].from.requestPrincipals[1]: \"/x\" is not ISSUER/SUBJECT, ISSUER/* or *",
                        "spec.rules[1].claims[0].name: \"a..b\" is not a claim name: a name, or dot-separated names for a nested claim",
                        "spec.rules[1].claims[0].values: at least one value is required",
                    ],
                ),
            ],
        );
    }
}
