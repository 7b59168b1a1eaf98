//! Validation of `kubernetes.io/tls` Secrets, and reading their certificate and key.

use super::Errors;
use crate::field::FieldPath;
use k8s_openapi::api::core::v1::Secret;

/// The key of the PEM certificate chain.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// The key of the PEM private key.
pub const TLS_KEY_KEY: &str = "tls.key";

/// The text of `key` in a Secret: `stringData` wins over `data` (as the API server merges
/// them); `None` when absent or not UTF-8.
pub fn tls_data(secret: &Secret, key: &str) -> Option<String> {
    if let Some(s) = secret.string_data.as_ref().and_then(|m| m.get(key)) {
        return Some(s.clone());
    }
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

pub(super) fn secret(secret: &Secret, errors: &mut Errors) {
    super::object_name(secret.metadata.name.as_deref(), errors);
    pem(
        secret,
        TLS_CERT_KEY,
        "CERTIFICATE",
        "certificate chain",
        errors,
    );
    pem(secret, TLS_KEY_KEY, "PRIVATE KEY", "private key", errors);
}

fn pem(secret: &Secret, key: &str, label: &str, what: &str, errors: &mut Errors) {
    let path = FieldPath::root().field("data").key(key);
    match tls_data(secret, key) {
        None => errors.push(
            path,
            format!("required: the PEM {what} (base64 in data, or plain text in stringData)"),
        ),
        Some(text) if !(text.contains("-----BEGIN ") && text.contains(label)) => errors.push(
            path,
            format!("does not look like a PEM {what}: expected -----BEGIN {label}-----"),
        ),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::errors_of;
    use serde_json::json;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n";

    fn b64(s: &str) -> String {
        // Tiny encoder for the test: enough for ASCII PEM text.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn secret(fields: serde_json::Value) -> Vec<String> {
        let mut doc = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert"},
                             "type": "kubernetes.io/tls"});
        for (k, v) in fields.as_object().expect("object") {
            doc[k] = v.clone();
        }
        errors_of(doc)
    }

    #[test]
    fn secret_table() {
        assert!(secret(json!({"data": {"tls.crt": b64(CERT), "tls.key": b64(KEY)}})).is_empty());
        assert!(secret(json!({"stringData": {"tls.crt": CERT, "tls.key": KEY}})).is_empty());
        assert_eq!(
            secret(json!({"data": {"tls.crt": b64("hello")}})),
            [
                "data[tls.crt]: does not look like a PEM certificate chain: expected -----BEGIN CERTIFICATE-----",
                "data[tls.key]: required: the PEM private key (base64 in data, or plain text in stringData)",
            ]
        );
    }
}
