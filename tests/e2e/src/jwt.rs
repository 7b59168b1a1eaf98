//! JSON Web Tokens for end-to-end tests: an issuer with its own ES256 (P-256) key, signing
//! tokens with any claims, its public key as a JWKS, and a loopback HTTP server that serves
//! that JWKS (counting fetches) for remote-JWKS providers.

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A token issuer with a fresh signing key.
pub struct Issuer {
    pub issuer: String,
    kid: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

// === impl Issuer ===

impl Issuer {
    /// A new issuer `iss` whose key has id `kid`.
    pub fn new(iss: &str, kid: &str) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| anyhow::anyhow!("generating a P-256 key: {e}"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| anyhow::anyhow!("reading the P-256 key: {e}"))?;
        Ok(Self {
            issuer: iss.to_string(),
            kid: kid.to_string(),
            key,
            rng,
        })
    }

    /// The public key as a JWKS document.
    pub fn jwks(&self) -> String {
        // Uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
        let point = self.key.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
        .to_string()
    }

    /// A signed token with `iss` this issuer's, `iat` now, `exp` in an hour, and `claims`
    /// (which may override any of them).
    pub fn token(&self, claims: serde_json::Value) -> anyhow::Result<String> {
        let now = now();
        let mut payload = serde_json::json!({"iss": self.issuer, "iat": now, "exp": now + 3600});
        if let (Some(p), Some(extra)) = (payload.as_object_mut(), claims.as_object()) {
            p.extend(extra.clone());
        }
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A loopback HTTP server answering `GET /jwks.json` with a JWKS.
pub struct JwksServer {
    addr: SocketAddr,
    fetches: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

// === impl JwksServer ===

impl JwksServer {
    pub async fn start(jwks: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let fetches = Arc::new(AtomicU64::new(0));
        let counter = fetches.clone();
        let router = Router::new().route(
            "/jwks.json",
            get(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                let body = jwks.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            addr,
            fetches,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/jwks.json`.
    pub fn uri(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
