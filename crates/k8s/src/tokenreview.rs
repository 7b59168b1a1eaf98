//! Service account tokens verified with the TokenReview API (`authentication.k8s.io/v1`,
//! `tokenreviews` `create`), bound to one audience (`portolan`).
//!
//! The identity comes only from the API server's answer: `status.authenticated`, the
//! audience in `status.audiences`, and the user name `system:serviceaccount:NS:SA`. The token's
//! own claims (read without checking the signature) are used only to refuse early, never to
//! accept: a token whose `exp` has passed or whose `aud` does not name the audience never
//! reaches the API server.
//!
//! Answers are cached per token, briefly and bounded, so that a reconnect storm of proxies does
//! not become a storm of TokenReviews: a verified token for at most the cache time and never
//! past its `exp`; a refused one for the cache time; an API error not at all. At most 16
//! TokenReviews are in flight at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::Api;
use kube::api::PostParams;

/// TokenReviews in flight at once; more wait their turn (a reconnect storm after a restart,
/// when every proxy's token is new to the cache, reaches the API server at this pace).
const MAX_IN_FLIGHT: usize = 16;

/// Prefix of a service account's user name.
const SA_PREFIX: &str = "system:serviceaccount:";

/// The service account a token proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

/// Why a token proves no service account.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("the token expired at {0} (unix seconds)")]
    Expired(i64),
    #[error("the token is for audiences {found:?}, not {expected:?}")]
    WrongAudience {
        found: Vec<String>,
        expected: String,
    },
    #[error("the API server does not authenticate the token: {0}")]
    NotAuthenticated(String),
    #[error("the token is user {0:?}, not a service account")]
    NotServiceAccount(String),
    #[error("TokenReview failed: {0}")]
    Api(String),
}

/// Verifies tokens with TokenReview, for one audience, with a bounded cache.
pub struct TokenReviewer {
    client: kube::Client,
    audience: String,
    ttl: Duration,
    capacity: usize,
    cache: Mutex<HashMap<String, Cached>>,
    reviews: AtomicU64,
    in_flight: tokio::sync::Semaphore,
}

#[derive(Clone, Debug)]
struct Cached {
    until: Instant,
    answer: Result<ServiceAccountRef, ReviewError>,
}

/// What a token says about itself (unverified).
#[derive(Debug, Default, PartialEq)]
struct Claims {
    exp: Option<i64>,
    aud: Vec<String>,
}

// === impl TokenReviewer ===

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("reviews", &self.reviews())
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// Reviews tokens for `audience`, caching answers for `ttl`, at most `capacity` of them.
    pub fn new(client: kube::Client, audience: &str, ttl: Duration, capacity: usize) -> Self {
        Self {
            client,
            audience: audience.to_string(),
            ttl,
            capacity: capacity.max(1),
            cache: Mutex::new(HashMap::new()),
            reviews: AtomicU64::new(0),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    /// The audience tokens must be for.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// TokenReviews sent so far (cache misses).
    pub fn reviews(&self) -> u64 {
        self.reviews.load(Ordering::Relaxed)
    }

    /// The service account `token` proves.
    pub async fn review(&self, token: &str) -> Result<ServiceAccountRef, ReviewError> {
        let claims = claims(token);
        let now = unix_now();
        if let Some(exp) = claims.exp.filter(|exp| *exp <= now) {
            return Err(ReviewError::Expired(exp));
        }
        if !claims.aud.is_empty() && !claims.aud.contains(&self.audience) {
            return Err(self.wrong_audience(claims.aud));
        }
        if let Some(answer) = self.cached(token) {
            return answer;
        }
        let _turn = self
            .in_flight
            .acquire()
            .await
            .map_err(|e| ReviewError::Api(e.to_string()))?;
        // Another stream with the same token may have asked while this one waited.
        if let Some(answer) = self.cached(token) {
            return answer;
        }
        self.reviews.fetch_add(1, Ordering::Relaxed);
        let answer = self.ask(token).await;
        if !matches!(answer, Err(ReviewError::Api(_))) {
            let left = claims
                .exp
                .map(|exp| Duration::from_secs(u64::try_from(exp - now).unwrap_or(0)));
            let keep = left.map_or(self.ttl, |left| left.min(self.ttl));
            self.remember(token, answer.clone(), keep);
        }
        answer
    }

    fn wrong_audience(&self, found: Vec<String>) -> ReviewError {
        ReviewError::WrongAudience {
            found,
            expected: self.audience.clone(),
        }
    }

    async fn ask(&self, token: &str) -> Result<ServiceAccountRef, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ReviewError::Api(e.to_string()))?;
        self.identity(answer.status.unwrap_or_default())
    }

    /// The service account of an answer, if it authenticates the token for our audience.
    fn identity(&self, status: TokenReviewStatus) -> Result<ServiceAccountRef, ReviewError> {
        if status.authenticated != Some(true) {
            let why = status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "not authenticated".to_string());
            return Err(ReviewError::NotAuthenticated(why));
        }
        let audiences = status.audiences.unwrap_or_default();
        if !audiences.contains(&self.audience) {
            return Err(self.wrong_audience(audiences));
        }
        let user = status.user.and_then(|u| u.username).unwrap_or_default();
        service_account(&user).ok_or(ReviewError::NotServiceAccount(user))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, token: &str) -> Option<Result<ServiceAccountRef, ReviewError>> {
        let cache = self.lock();
        let entry = cache.get(token)?;
        (entry.until > Instant::now()).then(|| entry.answer.clone())
    }

    /// Keeps `answer` for `keep`; when full, drops stale entries first, then everything.
    fn remember(
        &self,
        token: &str,
        answer: Result<ServiceAccountRef, ReviewError>,
        keep: Duration,
    ) {
        if keep.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.lock();
        if cache.len() >= self.capacity {
            cache.retain(|_, c| c.until > now);
        }
        if cache.len() >= self.capacity {
            cache.clear();
        }
        cache.insert(
            token.to_string(),
            Cached {
                until: now + keep,
                answer,
            },
        );
    }
}

/// The `exp` claim of a JWT (unix seconds). Trustworthy only for a token the API server
/// authenticated (it checked the signature over the claims).
pub fn expiry(token: &str) -> Option<i64> {
    claims(token).exp
}

/// `system:serviceaccount:NS:SA` as its namespace and name.
fn service_account(user: &str) -> Option<ServiceAccountRef> {
    let (namespace, name) = user.strip_prefix(SA_PREFIX)?.split_once(':')?;
    let ok = |s: &str| !s.is_empty() && !s.contains([':', '/']);
    (ok(namespace) && ok(name)).then(|| ServiceAccountRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// The `exp` and `aud` claims of a JWT, unverified; empty for anything else.
fn claims(token: &str) -> Claims {
    let mut parts = token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_), None) => payload,
        _ => return Claims::default(),
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return Claims::default();
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Claims::default();
    };
    let aud = match &value["aud"] {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Claims {
        exp: value["exp"].as_i64(),
        aud,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[path = "tokenreview_tests.rs"]
mod tests;
