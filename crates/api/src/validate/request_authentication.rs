//! Validation of `RequestAuthentication`: its targets, each provider (issuer, exactly one
//! JWKS source, token locations, claim headers) and the requirement's provider names.

use super::*;
use crate::crd::request_authentication::*;

pub(super) fn request_authentication(ra: &RequestAuthentication, errors: &mut Errors) {
    object_name(ra.metadata.name.as_deref(), errors);
    let spec = &ra.spec;
    let path = spec_path();
    errors.0.extend(policy_target::target_refs(
        &spec.target_refs,
        path.field("targetRefs"),
    ));
    let providers = path.field("providers");
    if spec.providers.is_empty() {
        errors.push(providers.clone(), "at least one provider is required");
    }
    unique(
        &spec.providers,
        |p| p.name.clone(),
        &providers,
        "name",
        "provider",
        errors,
    );
    for (i, p) in spec.providers.iter().enumerate() {
        provider(p, providers.index(i), errors);
    }
    if let Some(req) = &spec.requirement {
        let at = path.field("requirement").field("providers");
        for (i, name) in req.providers.iter().enumerate() {
            if !spec.providers.iter().any(|p| &p.name == name) {
                errors.push(
                    at.index(i),
                    format!("{name:?} is not one of spec.providers"),
                );
            }
        }
    }
}

fn provider(p: &JwtProvider, path: FieldPath, errors: &mut Errors) {
    dns_label(&p.name, "provider name", path.field("name"), errors);
    if p.issuer.is_empty() {
        errors.push(path.field("issuer"), "required");
    }
    for (i, a) in p.audiences.iter().enumerate() {
        if a.is_empty() {
            errors.push(path.field("audiences").index(i), "must not be empty");
        }
    }
    exactly_one(
        path.clone(),
        &[
            ("remoteJwks", p.remote_jwks.is_some()),
            ("localJwks", p.local_jwks.is_some()),
        ],
        errors,
    );
    if let Some(remote) = &p.remote_jwks {
        let at = path.field("remoteJwks");
        if let Err(e) = parse_jwks_uri(&remote.uri) {
            errors.push(at.field("uri"), e);
        }
        duration(
            remote.cache_duration.as_deref(),
            at.field("cacheDuration"),
            errors,
        );
        duration(remote.timeout.as_deref(), at.field("timeout"), errors);
    }
    if let Some(local) = &p.local_jwks {
        local_jwks(
            &local.inline,
            path.field("localJwks").field("inline"),
            errors,
        );
    }
    for (i, h) in p.from_headers.iter().enumerate() {
        header_name(
            &h.name,
            path.field("fromHeaders").index(i).field("name"),
            errors,
        );
    }
    for (field, names) in [
        ("fromParams", &p.from_params),
        ("fromCookies", &p.from_cookies),
    ] {
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                errors.push(path.field(field).index(i), "must not be empty");
            }
        }
    }
    let claims = path.field("claimToHeaders");
    for (i, c) in p.claim_to_headers.iter().enumerate() {
        if c.claim.is_empty() {
            errors.push(claims.index(i).field("claim"), "required");
        }
        header_name(&c.header, claims.index(i).field("header"), errors);
    }
}

/// Key types a JWK may have (RFC 7518, RFC 8037).
const KEY_TYPES: &[&str] = &["RSA", "EC", "oct", "OKP"];

/// An inline JWKS: a JSON object whose `keys` is a non-empty array of keys, each with a known
/// `kty`. (The key material itself is Envoy's to check.)
fn local_jwks(inline: &str, path: FieldPath, errors: &mut Errors) {
    let checked = serde_json::from_str::<serde_json::Value>(inline)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|v| match v.get("keys") {
            Some(serde_json::Value::Array(keys)) if !keys.is_empty() => Ok(keys.clone()),
            _ => Err("a JWKS needs a non-empty `keys` array".to_string()),
        })
        .and_then(|keys| {
            let bad = keys.iter().position(|k| {
                !k.get("kty")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|t| KEY_TYPES.contains(&t))
            });
            match bad {
                Some(i) => Err(format!(
                    "keys[{i}] has no `kty` of {}",
                    KEY_TYPES.join(", ")
                )),
                None => Ok(()),
            }
        });
    if let Err(e) = checked {
        errors.push(path, e);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::table;
    use serde_json::json;

    fn target() -> serde_json::Value {
        json!([{"group": "portolan.dev", "kind": "Gateway", "name": "edge"}])
    }

    #[test]
    fn request_authentication_table() {
        let remote = json!({"name": "idp", "issuer": "https://idp", "remoteJwks": {"uri": "http://127.0.0.1:9000/jwks", "cacheDuration": "5m"}});
        table(
            "portolan.dev/v1alpha1",
            "RequestAuthentication",
            &[
                (
                    json!({"targetRefs": target(), "providers": [remote.clone()]}),
                    &[],
                ),
                (
                    json!({"targetRefs": target(), "providers": [remote.clone()],
                        "requirement": {"mode": "Optional", "providers": ["idp"]}}),
                    &[],
                ),
                (
                    json!({"targetRefs": [], "providers": []}),
                    &[
                        "spec.targetRefs: at least one target is required",
                        "spec.providers: at least one provider is required",
                    ],
                ),
                (
                    json!({"targetRefs": target(), "providers": [
                        {"name": "a", "issuer": "i"},
                        {"name": "b", "issuer": "i", "remoteJwks": {"uri": "ftp://x/y", "timeout": "soon"},
                         "fromHeaders": [{"name": "bad header"}],
                         "claimToHeaders": [{"claim": "sub", "header": ""}]},
                        {"name": "c", "issuer": "i", "localJwks": {"inline": "{\"keys\": []}"}},
                        {"name": "d", "issuer": "i", "localJwks": {"inline": "{\"keys\": [{\"kty\": \"EC\"}, {\"kid\": \"x\"}]}"}},
                        {"name": "e", "issuer": "i", "localJwks": {"inline": "not json"}}],
                        "requirement": {"providers": ["z"]}}),
                    &[
                        "spec.providers[0]: exactly one of remoteJwks, localJwks is required, found none",
                        "spec.providers[1].remoteJwks.uri: scheme \"ftp\" is not http or https",
                        "spec.providers[1].remoteJwks.timeout: \"soon\" is not a duration: write a number and a unit of ms, s, m or h, like 500ms, 1.5s or 1m30s",
                        "spec.providers[1].fromHeaders[0].name: \"bad header\" is not a header name: letters, digits and !#$%&'*+-.^_`|~",
                        "spec.providers[1].claimToHeaders[0].header: \"\" is not a header name: letters, digits and !#$%&'*+-.^_`|~",
                        "spec.providers[2].localJwks.inline: a JWKS needs a non-empty `keys` array",
                        "spec.providers[3].localJwks.inline: keys[1] has no `kty` of RSA, EC, oct, OKP",
                        "spec.providers[4].localJwks.inline: not JSON: expected ident at line 1 column 2",
                        "spec.requirement.providers[0]: \"z\" is not one of spec.providers",
                    ],
                ),
            ],
        );
    }
}
