//! The self-managed certificate (`--webhook-self-signed`): a CA and a serving certificate for
//! the webhook Service, kept in one Secret shared by every replica, and the CA written into
//! the `caBundle` of every webhook of the ValidatingWebhookConfiguration (and of the sidecar
//! injector's MutatingWebhookConfiguration, when there is one).
//!
//! The first replica to find the Secret missing generates both certificates and creates it;
//! a create that conflicts means another replica won the race, and its Secret is read instead,
//! so every replica serves the same certificate. [`SelfSigned::resync`] repeats the read (a
//! deleted Secret is recreated, a replaced one is picked up) and patches `caBundle` wherever it
//! differs from the Secret's CA. A Secret that cannot serve (keys missing, a broken pair, a
//! certificate for another Service) is replaced, guarded by its resourceVersion.
//!
//! The CA's private key is never stored: to rotate, delete the Secret and every replica
//! converges on the new one at its next resync.

use crate::error::WebhookError;
use crate::server::ALPN_HTTP1;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Keys of the Secret: the serving pair as in any `kubernetes.io/tls` Secret, plus the CA.
pub const CERT_KEY: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";
pub const CA_KEY: &str = "ca.crt";

/// Field manager of the `caBundle` patches.
const FIELD_MANAGER: &str = "portolan-webhook";

/// Where the self-managed certificate lives and whom it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfSignedConfig {
    /// The pod namespace: the Secret's and the Service's.
    pub namespace: String,
    /// The Service in front of the webhook pods.
    pub service: String,
    /// The Secret holding `tls.crt`, `tls.key` and `ca.crt`.
    pub secret: String,
    /// The ValidatingWebhookConfiguration whose webhooks get the CA as `caBundle`.
    pub configuration: String,
    /// The sidecar injector's MutatingWebhookConfiguration, whose webhooks get it too.
    pub mutating_configuration: Option<String>,
    /// Kubernetes cluster DNS domain (`cluster.local`).
    pub cluster_domain: String,
}

/// A CA and the serving certificate it signed, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The self-signed mode's running state: the client and the certificate being served.
pub struct SelfSigned {
    client: kube::Client,
    config: SelfSignedConfig,
    current: RwLock<(Issued, Arc<ServerConfig>)>,
}

// === impl SelfSignedConfig ===

impl SelfSignedConfig {
    /// The DNS names the API server may use for the Service.
    pub fn dns_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service, &self.namespace);
        vec![
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.{}", self.cluster_domain),
            format!("{svc}.{ns}"),
            svc.clone(),
        ]
    }
}

// === impl Issued ===

impl Issued {
    /// Generates a CA and a serving certificate for `dns_names` (the first is the subject).
    pub fn generate(dns_names: &[String]) -> Result<Self, WebhookError> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, "portolan webhook CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut leaf = CertificateParams::new(dns_names.to_vec())?;
        leaf.distinguished_name.push(
            DnType::CommonName,
            dns_names.first().cloned().unwrap_or_default(),
        );
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &*issuer)?;
        Ok(Self {
            ca_pem: issuer.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Reads the three PEMs out of a Secret.
    pub fn from_secret(secret: &Secret) -> Result<Self, WebhookError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let field = |key: &str| -> Result<String, WebhookError> {
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .ok_or_else(|| WebhookError::SecretField {
                    secret: name.clone(),
                    key: key.to_string(),
                    reason: "missing".into(),
                })?;
            String::from_utf8(bytes.0.clone()).map_err(|_| WebhookError::SecretField {
                secret: name.clone(),
                key: key.to_string(),
                reason: "not UTF-8 PEM".into(),
            })
        };
        Ok(Self {
            ca_pem: field(CA_KEY)?,
            cert_pem: field(CERT_KEY)?,
            key_pem: field(KEY_KEY)?,
        })
    }

    /// The Secret holding these PEMs.
    pub fn to_secret(&self, config: &SelfSignedConfig) -> Secret {
        let data: BTreeMap<String, ByteString> = [
            (CERT_KEY, &self.cert_pem),
            (KEY_KEY, &self.key_pem),
            (CA_KEY, &self.ca_pem),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(config.secret.clone()),
                namespace: Some(config.namespace.clone()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "portolan".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_string()),
            data: Some(data),
            ..Default::default()
        }
    }

    /// Why these PEMs cannot serve the webhook for `dns_names` (`None`: they can): the pair
    /// must load and the certificate must name the first (`SERVICE.NAMESPACE.svc`).
    pub fn unusable(&self, dns_names: &[String]) -> Option<String> {
        if let Err(e) = self.server_config() {
            return Some(e.to_string());
        }
        let leaf = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()).next()?;
        let sans = leaf
            .ok()
            .and_then(|der| portolan_xds::PeerIdentity::from_der(&der))
            .map(|id| id.dns)
            .unwrap_or_default();
        let wanted = dns_names.first()?;
        (!sans.contains(wanted))
            .then(|| format!("the certificate does not name {wanted} (it names {sans:?})"))
    }

    /// A rustls server configuration serving this certificate (HTTP/1.1).
    pub fn server_config(&self) -> Result<ServerConfig, WebhookError> {
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| WebhookError::Pem(format!("{CERT_KEY}: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| WebhookError::Pem(format!("{KEY_KEY}: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(config)
    }
}

// === impl SelfSigned ===

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SelfSigned {
    /// [`SelfSigned::start`] with the in-cluster client (else KUBECONFIG, ~/.kube/config).
    pub async fn connect(config: SelfSignedConfig) -> Result<Arc<Self>, WebhookError> {
        let client = kube::Client::try_default().await?;
        Self::start(client, config).await
    }

    /// Reads (or creates) the Secret and patches `caBundle`; errors here are startup errors.
    pub async fn start(
        client: kube::Client,
        config: SelfSignedConfig,
    ) -> Result<Arc<Self>, WebhookError> {
        let issued = ensure_secret(&client, &config).await?;
        let server = Arc::new(issued.server_config()?);
        sync_ca_bundles(&client, &config, &issued.ca_pem).await?;
        Ok(Arc::new(Self {
            client,
            config,
            current: RwLock::new((issued, server)),
        }))
    }

    /// The server configuration in use.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// The CA in use, PEM.
    pub fn ca_pem(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .ca_pem
            .clone()
    }

    /// Reads the Secret again (recreating it if deleted), serves what it holds, and patches
    /// `caBundle` where it differs. Returns whether anything changed.
    pub async fn resync(&self) -> Result<bool, WebhookError> {
        let issued = ensure_secret(&self.client, &self.config).await?;
        let mut changed = false;
        if issued
            != self
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
        {
            let server = Arc::new(issued.server_config()?);
            *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                (issued.clone(), server);
            tracing::info!(
                secret = self.config.secret,
                "webhook certificate changed in its Secret; serving the new one"
            );
            changed = true;
        }
        let patched = sync_ca_bundles(&self.client, &self.config, &issued.ca_pem).await?;
        Ok(changed || patched)
    }

    /// Resyncs every `every` until dropped, logging failures (the current certificate stays).
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = self.resync().await {
                tracing::warn!(error = %e, "webhook certificate resync failed; retrying later");
            }
        }
    }
}

/// The Secret's certificates; generated and created when the Secret does not exist, read
/// back from the winner when another replica created it first. A Secret that cannot serve
/// (keys missing, a broken pair, a certificate for another Service) is replaced.
pub async fn ensure_secret(
    client: &kube::Client,
    config: &SelfSignedConfig,
) -> Result<Issued, WebhookError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let names = config.dns_names();
    if let Some(secret) = api.get_opt(&config.secret).await? {
        let why = match Issued::from_secret(&secret) {
            Ok(issued) => match issued.unusable(&names) {
                None => return Ok(issued),
                Some(why) => why,
            },
            Err(e) => e.to_string(),
        };
        return replace_secret(&api, config, secret, &why).await;
    }
    let issued = Issued::generate(&names)?;
    match api
        .create(&PostParams::default(), &issued.to_secret(config))
        .await
    {
        Ok(_) => {
            tracing::info!(
                secret = config.secret,
                namespace = config.namespace,
                "created the webhook certificate Secret"
            );
            Ok(issued)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(
                secret = config.secret,
                "another replica created the webhook Secret first; using theirs"
            );
            Issued::from_secret(&api.get(&config.secret).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Replaces an unusable Secret with new certificates, guarded by its resourceVersion: when
/// another replica replaced it first (409), theirs is read and used.
async fn replace_secret(
    api: &Api<Secret>,
    config: &SelfSignedConfig,
    old: Secret,
    why: &str,
) -> Result<Issued, WebhookError> {
    tracing::warn!(
        secret = config.secret,
        reason = why,
        "the webhook Secret cannot be used; replacing it"
    );
    let issued = Issued::generate(&config.dns_names())?;
    let mut secret = issued.to_secret(config);
    secret.metadata.resource_version = old.metadata.resource_version;
    match api
        .replace(&config.secret, &PostParams::default(), &secret)
        .await
    {
        Ok(_) => Ok(issued),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Issued::from_secret(&api.get(&config.secret).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// [`sync_ca_bundle`] of the validating configuration, then of the mutating one if any.
async fn sync_ca_bundles(
    client: &kube::Client,
    config: &SelfSignedConfig,
    ca_pem: &str,
) -> Result<bool, WebhookError> {
    let validating = sync_ca_bundle(client, &config.configuration, ca_pem).await?;
    let Some(mutating) = &config.mutating_configuration else {
        return Ok(validating);
    };
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let current = api.get(mutating).await?;
    let stale: Vec<&str> = current
        .webhooks
        .iter()
        .flatten()
        .filter(|w| stale_bundle(w.client_config.ca_bundle.as_ref(), ca_pem))
        .map(|w| w.name.as_str())
        .collect();
    Ok(patch_ca_bundle(&api, mutating, &stale, ca_pem).await? || validating)
}

fn stale_bundle(bundle: Option<&ByteString>, ca_pem: &str) -> bool {
    bundle.map(|b| b.0.as_slice()) != Some(ca_pem.as_bytes())
}

/// Sets `clientConfig.caBundle` to `ca_pem` on every webhook of the configuration that has
/// another value (one strategic-merge patch keyed by webhook name). Returns whether it patched.
pub async fn sync_ca_bundle(
    client: &kube::Client,
    configuration: &str,
    ca_pem: &str,
) -> Result<bool, WebhookError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let current = api.get(configuration).await?;
    let stale: Vec<&str> = current
        .webhooks
        .iter()
        .flatten()
        .filter(|w| stale_bundle(w.client_config.ca_bundle.as_ref(), ca_pem))
        .map(|w| w.name.as_str())
        .collect();
    patch_ca_bundle(&api, configuration, &stale, ca_pem).await
}

/// Patches `caBundle` of the `stale` webhooks of a webhook configuration.
async fn patch_ca_bundle<K>(
    api: &Api<K>,
    configuration: &str,
    stale: &[&str],
    ca_pem: &str,
) -> Result<bool, WebhookError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if stale.is_empty() {
        return Ok(false);
    }
    let bundle = B64.encode(ca_pem);
    let webhooks: Vec<serde_json::Value> = stale
        .iter()
        .map(|name| serde_json::json!({"name": name, "clientConfig": {"caBundle": bundle}}))
        .collect();
    let patch = serde_json::json!({ "webhooks": webhooks });
    api.patch(
        configuration,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        },
        &Patch::Strategic(patch),
    )
    .await?;
    tracing::info!(configuration, webhooks = ?stale, "patched caBundle of the webhook configuration");
    Ok(true)
}
