//! The crate's errors: certificates that cannot be made or read, and Kubernetes API failures
//! of the self-signed mode.

/// Why the webhook could not start or refresh its certificate.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("generating the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("webhook certificate: {0}")]
    Pem(String),
    #[error("webhook TLS configuration: {0}")]
    Tls(#[from] tokio_rustls::rustls::Error),
    #[error("Secret {secret}: {key}: {reason}")]
    SecretField {
        secret: String,
        key: String,
        reason: String,
    },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}
