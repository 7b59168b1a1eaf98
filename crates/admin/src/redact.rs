//! Redaction of secrets in resources rendered as JSON: shared by the HTTP debug pages and the
//! admin API's config dump.

use serde_json::Value;

/// Fields whose values never leave the process through a debug page or a config dump.
pub const SECRET_FIELDS: &[&str] = &["private_key", "password"];

/// Replaces every secret field (at any depth) with a placeholder, as Envoy's own config dump
/// does for private keys.
pub fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if SECRET_FIELDS.contains(&key.as_str()) {
                    *v = Value::String("[redacted]".to_string());
                } else {
                    redact_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn private_keys_are_redacted_at_any_depth() {
        let mut v = json!({"filter_chains": [{"transport_socket": {"typed_config": {
            "common_tls_context": {"tls_certificates": [{
                "certificate_chain": {"inline_string": "CERT"},
                "private_key": {"inline_string": "-----BEGIN PRIVATE KEY-----"}
            }]}
        }}}]});
        redact_secrets(&mut v);
        let text = v.to_string();
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(text.contains("CERT"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}
