//! Validation of `RateLimitPolicy`.

use super::ext_auth_policy::positive_duration;
use super::*;
use crate::crd::rate_limit_policy::*;
use std::time::Duration;

/// Envoy's shortest token bucket refill interval.
const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

pub(super) fn rate_limit_policy(p: &RateLimitPolicy, errors: &mut Errors) {
    object_name(p.metadata.name.as_deref(), errors);
    let spec = &p.spec;
    let path = spec_path();
    errors.0.extend(policy_target::target_refs(
        &spec.target_refs,
        path.field("targetRefs"),
    ));
    if spec.local.is_none() && spec.global.is_none() {
        errors.push(path.clone(), "at least one of local, global is required");
    }
    if let Some(local) = &spec.local {
        local_limit(local, path.field("local"), errors);
    }
    if let Some(global) = &spec.global {
        global_limit(global, path.field("global"), errors);
    }
}

fn local_limit(local: &LocalRateLimit, path: FieldPath, errors: &mut Errors) {
    count(Some(local.requests), 1, path.field("requests"), errors);
    count(local.burst, 1, path.field("burst"), errors);
    match parse_duration(&local.per) {
        Ok(d) if d < MIN_FILL_INTERVAL => errors.push(
            path.field("per"),
            format!("{:?} is too short: at least 50ms", local.per),
        ),
        Ok(_) => {}
        Err(e) => errors.push(path.field("per"), e),
    }
}

fn global_limit(global: &GlobalRateLimit, path: FieldPath, errors: &mut Errors) {
    destination(&global.service, path.field("service"), errors);
    if global.domain.is_empty() {
        errors.push(
            path.field("domain"),
            "required: the rate limit service's domain",
        );
    }
    if global.descriptors.is_empty() {
        errors.push(
            path.field("descriptors"),
            "at least one descriptor is required",
        );
    }
    for (i, d) in global.descriptors.iter().enumerate() {
        let p = path.field("descriptors").index(i);
        if d.entries.is_empty() {
            errors.push(p.field("entries"), "at least one entry is required");
        }
        for (j, e) in d.entries.iter().enumerate() {
            entry(e, p.field("entries").index(j), errors);
        }
    }
    positive_duration(global.timeout.as_deref(), path.field("timeout"), errors);
}

fn entry(e: &DescriptorEntry, path: FieldPath, errors: &mut Errors) {
    exactly_one(
        path.clone(),
        &[
            ("requestHeader", e.request_header.is_some()),
            ("remoteAddress", e.remote_address.is_some()),
            ("path", e.path.is_some()),
            ("generic", e.generic.is_some()),
            ("jwtClaim", e.jwt_claim.is_some()),
        ],
        errors,
    );
    if let Some(h) = &e.request_header {
        header_name(&h.name, path.field("requestHeader").field("name"), errors);
        key(&h.key, path.field("requestHeader").field("key"), errors);
    }
    if let Some(k) = e.path.as_ref().and_then(|p| p.key.as_ref()) {
        key(k, path.field("path").field("key"), errors);
    }
    if let Some(g) = &e.generic {
        if let Some(k) = &g.key {
            key(k, path.field("generic").field("key"), errors);
        }
        if g.value.is_empty() {
            errors.push(path.field("generic").field("value"), "required");
        }
    }
    if let Some(c) = &e.jwt_claim {
        if c.claim.is_empty() {
            errors.push(path.field("jwtClaim").field("claim"), "required");
        }
        key(&c.key, path.field("jwtClaim").field("key"), errors);
    }
}

/// A descriptor key: printable, no spaces.
fn key(k: &str, path: FieldPath, errors: &mut Errors) {
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()) {
        errors.push(
            path,
            format!("{k:?} is not a descriptor key: printable ASCII without spaces"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::json;

    #[test]
    fn rate_limit_policy_table() {
        table(
            "portolan.dev/v1alpha1",
            "RateLimitPolicy",
            &[
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}], "local": {"requests": 10, "per": "1s"}}),
                    &[],
                ),
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}], "local": {"requests": 5, "per": "1m", "burst": 10, "responseHeaders": false},
                           "global": {"service": {"host": "ratelimit", "port": 8081}, "domain": "edge",
                                      "timeout": "50ms", "failureModeDeny": true,
                                      "descriptors": [
                                          {"entries": [{"requestHeader": {"name": "x-user", "key": "user"}}]},
                                          {"entries": [{"remoteAddress": {}}, {"path": {}}, {"generic": {"value": "api"}},
                                                       {"jwtClaim": {"claim": "sub", "key": "subject"}}]}]}}),
                    &[],
                ),
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}]}),
                    &["spec: at least one of local, global is required"],
                ),
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}], "local": {"requests": 0, "per": "10ms", "burst": 0},
                           "global": {"service": {"host": "rls"}, "domain": "", "timeout": "nope", "descriptors": [
                               {"entries": []},
                               {"entries": [{}, {"path": {"key": "a b"}, "remoteAddress": {}},
                                            {"requestHeader": {"name": "x:y", "key": "k"}},
                                            {"generic": {"key": "k", "value": ""}},
                                            {"jwtClaim": {"claim": "", "key": ""}}]}]}}),
                    &[
                        "spec.local.requests: 0 is out of range: must be 1-4294967295",
                        "spec.local.burst: 0 is out of range: must be 1-4294967295",
                        "spec.local.per: \"10ms\" is too short: at least 50ms",
                        "spec.global.domain: required: the rate limit service's domain",
                        "spec.global.descriptors[0].entries: at least one entry is required",
                        "spec.global.descriptors[1].entries[0]: exactly one of requestHeader, remoteAddress, path, generic, jwtClaim is required, found none",
                        "spec.global.descriptors[1].entries[1]: exactly one of requestHeader, remoteAddress, path, generic, jwtClaim is required, found remoteAddress and path",
                        "spec.global.descriptors[1].entries[1].path.key: \"a b\" is not a descriptor key: printable ASCII without spaces",
                        "spec.global.descriptors[1].entries[2].requestHeader.name: \"x:y\" is not a header name: letters, digits and !#$%&'*+-.^_`|~",
                        "spec.global.descriptors[1].entries[3].generic.value: required",
                        "spec.global.descriptors[1].entries[4].jwtClaim.claim: required",
                        "spec.global.descriptors[1].entries[4].jwtClaim.key: \"\" is not a descriptor key: printable ASCII without spaces",
                        "spec.global.timeout: \"nope\" is not a duration: write a number and a unit of ms, s, m or h, like 500ms, 1.5s or 1m30s",
                    ],
                ),
            ],
        );
    }
}
