//! Service account tokens for identity tests: JWT-shaped tokens (claims readable, signature a
//! placeholder: the stand-in API server, not the signature, decides what is valid), token files
//! the test writes and rotates as the kubelet does, and their answers in the stand-in API
//! server's TokenReview table.

use crate::apiserver::{FakeApiServer, TokenAnswer};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The audience Portolan's tokens are bound to.
pub const AUDIENCE: &str = "portolan";

/// A JWT with these claims (header `RS256`, signature a placeholder).
pub fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"test"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The stand-in API server and a directory of token files.
pub struct Tokens {
    pub api: FakeApiServer,
    dir: tempfile::TempDir,
    serial: AtomicU64,
}

// === impl Tokens ===

impl Tokens {
    pub async fn start() -> anyhow::Result<Self> {
        Ok(Self {
            api: FakeApiServer::start().await?,
            dir: tempfile::tempdir()?,
            serial: AtomicU64::new(0),
        })
    }

    /// The token file named `name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.token"))
    }

    /// A fresh token's claims for `namespace/sa` and `aud`, expiring at `exp`.
    pub fn claims(&self, namespace: &str, sa: &str, aud: &str, exp: i64) -> Value {
        json!({
            "aud": [aud],
            "exp": exp,
            "iat": unix_now(),
            "iss": "https://kubernetes.default.svc",
            "sub": format!("system:serviceaccount:{namespace}:{sa}"),
            "jti": self.serial.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A new valid token of `namespace/sa` (for [`AUDIENCE`], an hour left), known to the API
    /// server and written to the file `name` (replacing the one there, atomically); returns it.
    pub fn issue(&self, name: &str, namespace: &str, sa: &str) -> anyhow::Result<String> {
        self.issue_for(name, namespace, sa, 3600)
    }

    /// [`Tokens::issue`] with `seconds` left before the token expires.
    pub fn issue_for(
        &self,
        name: &str,
        namespace: &str,
        sa: &str,
        seconds: i64,
    ) -> anyhow::Result<String> {
        let token = jwt(&self.claims(namespace, sa, AUDIENCE, unix_now() + seconds));
        self.api.token(
            &token,
            TokenAnswer::Valid {
                namespace: namespace.to_string(),
                name: sa.to_string(),
                audiences: vec![AUDIENCE.to_string()],
            },
        );
        self.write(name, &token)?;
        Ok(token)
    }

    /// Writes `token` to the file `name` atomically (temp file, then rename, as the kubelet's
    /// symlink swap does).
    pub fn write(&self, name: &str, token: &str) -> anyhow::Result<()> {
        let path = self.file(name);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{token}\n"))?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The KUBECONFIG pointing at the stand-in API server.
    pub fn kubeconfig(&self) -> String {
        self.api.kubeconfig().to_string_lossy().into_owned()
    }
}
