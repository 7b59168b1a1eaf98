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
        Some(text) if label == "CERTIFICATE" => {
            if let Err(why) = super::pem::certificates(&text) {
                errors.push(path, format!("not a PEM {what}: {why}"));
            }
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::errors_of;
    use serde_json::json;

    const CERT: &str = super::super::pem::tests::CA;
    const KEY: &str = "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n";

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
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
    fn a_pem_block_that_is_no_certificate_is_rejected() {
        let not_der = "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n-----END CERTIFICATE-----\n";
        assert_eq!(
            secret(json!({"stringData": {"tls.crt": not_der, "tls.key": KEY}})),
            [
                "data[tls.crt]: not a PEM certificate chain: certificate 1 is not a DER-encoded X.509 certificate"
            ]
        );
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
