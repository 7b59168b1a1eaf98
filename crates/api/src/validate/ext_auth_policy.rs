//! Validation of `ExtAuthPolicy`.

use super::*;
use crate::crd::ext_auth_policy::*;

/// The largest body Portolan lets Envoy buffer for a check (64 MiB).
pub const MAX_BODY_BYTES: i64 = 64 * 1024 * 1024;

pub(super) fn ext_auth_policy(p: &ExtAuthPolicy, errors: &mut Errors) {
    object_name(p.metadata.name.as_deref(), errors);
    let spec = &p.spec;
    let path = spec_path();
    errors.0.extend(policy_target::target_refs(
        &spec.target_refs,
        path.field("targetRefs"),
    ));
    if spec.disabled == Some(true) {
        for (name, set) in [("grpc", spec.grpc.is_some()), ("http", spec.http.is_some())] {
            if set {
                errors.push(
                    path.field(name),
                    "not allowed with disabled: true (a disabled policy names no service)",
                );
            }
        }
    } else {
        exactly_one(
            path.clone(),
            &[("grpc", spec.grpc.is_some()), ("http", spec.http.is_some())],
            errors,
        );
    }
    if let Some(grpc) = &spec.grpc {
        destination(&grpc.service, path.field("grpc").field("service"), errors);
    }
    if let Some(http) = &spec.http {
        http_service(http, path.field("http"), errors);
    }
    header_names(&spec.allowed_headers, &path.field("allowedHeaders"), errors);
    positive_duration(spec.timeout.as_deref(), path.field("timeout"), errors);
    if let Some(body) = &spec.include_body
        && !(1..=MAX_BODY_BYTES).contains(&body.max_bytes)
    {
        errors.push(
            path.field("includeBody").field("maxBytes"),
            format!(
                "{} is out of range: must be 1-{MAX_BODY_BYTES} (64 MiB)",
                body.max_bytes
            ),
        );
    }
}

fn http_service(http: &HttpAuthService, path: FieldPath, errors: &mut Errors) {
    destination(&http.service, path.field("service"), errors);
    if let Some(prefix) = &http.path_prefix {
        let ok = prefix.starts_with('/')
            && !prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
        if !ok {
            errors.push(
                path.field("pathPrefix"),
                format!("{prefix:?} is not a path prefix: must start with '/' and hold no spaces, '?' or '#'"),
            );
        }
    }
    header_names(
        &http.headers_to_upstream,
        &path.field("headersToUpstream"),
        errors,
    );
    header_names(
        &http.headers_to_client,
        &path.field("headersToClient"),
        errors,
    );
}

/// Header names, each valid and none twice (case-insensitive).
pub(super) fn header_names(names: &[String], path: &FieldPath, errors: &mut Errors) {
    for (i, name) in names.iter().enumerate() {
        header_name(name, path.index(i), errors);
    }
    unique(
        names,
        |n| n.to_ascii_lowercase(),
        path,
        "",
        "header",
        errors,
    );
}

/// A duration above zero.
pub(super) fn positive_duration(value: Option<&str>, path: FieldPath, errors: &mut Errors) {
    let Some(v) = value else { return };
    match parse_duration(v) {
        Ok(d) if d.is_zero() => errors.push(path, format!("{v:?} must be longer than 0")),
        Ok(_) => {}
        Err(e) => errors.push(path, e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::json;

    #[test]
    fn ext_auth_policy_table() {
        table(
            "portolan.dev/v1alpha1",
            "ExtAuthPolicy",
            &[
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}], "grpc": {"service": {"host": "authz", "port": 9000}}}),
                    &[],
                ),
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}], "http": {"service": {"host": "authz.auth"}, "pathPrefix": "/check",
                                    "headersToUpstream": ["x-user"], "headersToClient": ["www-authenticate"]},
                           "allowedHeaders": ["authorization", "x-tenant"], "timeout": "1s",
                           "failOpen": true, "includeBody": {"maxBytes": 4096, "allowPartial": true}}),
                    &[],
                ),
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}], "disabled": true}),
                    &[],
                ),
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}]}),
                    &["spec: exactly one of grpc, http is required, found none"],
                ),
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}], "disabled": true, "grpc": {"service": {"host": "authz"}}}),
                    &[
                        "spec.grpc: not allowed with disabled: true (a disabled policy names no service)",
                    ],
                ),
                (
                    json!({"targetRefs": [{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}], "grpc": {"service": {"host": "Authz", "port": 0}},
                           "http": {"service": {"host": "a"}, "pathPrefix": "check?x",
                                    "headersToUpstream": ["x-user", "X-User"], "headersToClient": ["bad header"]},
                           "allowedHeaders": [""], "timeout": "0s", "includeBody": {"maxBytes": 0}}),
                    &[
                        "spec: exactly one of grpc, http is required, found grpc and http",
                        "spec.grpc.service.host: \"Authz\" is not a host name: must be a lower-case DNS name (dot-separated labels of letters, digits and '-')",
                        "spec.grpc.service.port: 0 is not a port: must be 1-65535",
                        "spec.http.pathPrefix: \"check?x\" is not a path prefix: must start with '/' and hold no spaces, '?' or '#'",
                        "spec.http.headersToUpstream[1]: duplicate header \"x-user\"",
                        "spec.http.headersToClient[0]: \"bad header\" is not a header name: letters, digits and !#$%&'*+-.^_`|~",
                        "spec.allowedHeaders[0]: \"\" is not a header name: letters, digits and !#$%&'*+-.^_`|~",
                        "spec.timeout: \"0s\" must be longer than 0",
                        "spec.includeBody.maxBytes: 0 is out of range: must be 1-67108864 (64 MiB)",
                    ],
                ),
            ],
        );
    }
}
