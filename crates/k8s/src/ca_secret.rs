//! The mesh CA kept in one Opaque Secret (`serve --ca-secret`): its data are the trust
//! state's PEM blobs (`ca.crt`, `ca.key`, and during a rotation `next.*` or `previous.crt`
//! and `rotation`; see `portolan_ca::rotation`). Every replica reads it; the leader creates
//! it on first start and writes each rotation step. Writes carry the `resourceVersion` that
//! was read, so two writers cannot overwrite each other unseen.

use crate::error::K8sError;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client};
use std::collections::BTreeMap;

/// Label marking the Secret as Portolan's mesh CA.
const COMPONENT_LABEL: (&str, &str) = ("app.kubernetes.io/component", "mesh-ca");

/// One Secret holding the mesh CA.
#[derive(Clone)]
pub struct CaSecret {
    api: Api<Secret>,
    namespace: String,
    name: String,
}

// === impl CaSecret ===

impl CaSecret {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// `NAMESPACE/NAME`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The Secret's data as text; `None` when it does not exist. An entry that is not UTF-8
    /// is an error naming it.
    pub async fn get(&self) -> Result<Option<BTreeMap<String, String>>, K8sError> {
        let secret = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(K8sError::api(format!("reading Secret {}", self.name())))?;
        secret.map(|s| text_data(&self.name(), s)).transpose()
    }

    /// Creates the Secret with `data`; `Ok(false)` when it exists already (another replica
    /// created it first: read it instead).
    pub async fn create(&self, data: &BTreeMap<String, String>) -> Result<bool, K8sError> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    COMPONENT_LABEL.0.to_string(),
                    COMPONENT_LABEL.1.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(byte_data(data)),
            ..Secret::default()
        };
        match self.api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(K8sError::api(format!("creating Secret {}", self.name()))(e)),
        }
    }

    /// Replaces the Secret's data with `data` (creating the Secret when absent), at the
    /// `resourceVersion` just read: a concurrent write makes this fail with a conflict.
    pub async fn put(&self, data: &BTreeMap<String, String>) -> Result<(), K8sError> {
        let what = format!("writing Secret {}", self.name());
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(K8sError::api(what.clone()))?;
        let Some(mut secret) = current else {
            self.create(data).await?;
            return Ok(());
        };
        secret.data = Some(byte_data(data));
        secret.string_data = None;
        secret.metadata.managed_fields = None;
        self.api
            .replace(&self.name, &PostParams::default(), &secret)
            .await
            .map_err(K8sError::api(what))?;
        Ok(())
    }
}

fn byte_data(data: &BTreeMap<String, String>) -> BTreeMap<String, ByteString> {
    data.iter()
        .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

fn text_data(name: &str, secret: Secret) -> Result<BTreeMap<String, String>, K8sError> {
    let mut out = BTreeMap::new();
    for (key, value) in secret.data.unwrap_or_default() {
        let text = String::from_utf8(value.0).map_err(|_| K8sError::Invalid {
            what: format!("Secret {name}: data.{key}"),
            message: "is not UTF-8 PEM text".to_string(),
        })?;
        out.insert(key, text);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "ca_secret_tests.rs"]
mod tests;
