//! `serve --xds-token-review`: proxies prove their identity with their projected service
//! account token, verified with Kubernetes TokenReview ([`portolan_k8s::TokenReviewer`]) and
//! handed to the xDS server as its [`TokenVerifier`]; and the token exchange endpoint
//! (`POST /sts/v1/token` on the HTTP port) that Envoy's `sts_service` call credentials post the
//! token file to.
//!
//! The exchange hands the token back unchanged as the access token (RFC 8693 response, valid
//! 30 s, so Envoy's gRPC client exchanges again, re-reading the file, at every connection):
//! it proves nothing by itself, and verification happens once, on the xDS stream.

use crate::cli::TokenArgs;
use anyhow::Context;
use axum::Form;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use futures::future::BoxFuture;
use portolan_k8s::{ReviewError, TokenReviewer};
use portolan_xds::{RefusalReason, TokenAuth, TokenIdentity, TokenRefusal, TokenVerifier};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Longest a TokenReview may take before the stream is refused as unverifiable.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// The RFC 8693 grant type of a token exchange.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Seconds the exchanged token is said to be valid: below gRPC's refresh threshold (60 s), so
/// every new stream exchanges (and reads the token file) again; with 60 gRPC reuses the last
/// exchanged token once (seen with Envoy 1.40: a revoked token presented on reconnect).
const EXCHANGED_LIFETIME: u64 = 30;

/// The xDS server's hook over a [`TokenReviewer`].
#[derive(Debug)]
pub struct Reviewer(pub Arc<TokenReviewer>);

impl TokenVerifier for Reviewer {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<TokenIdentity, TokenRefusal>> {
        Box::pin(async move {
            let reviewed = tokio::time::timeout(REVIEW_TIMEOUT, self.0.review(token))
                .await
                .unwrap_or_else(|_| Err(ReviewError::Api("timed out".to_string())));
            // The API server checked the signature over the claims: `exp` is the token's.
            let expires_at = portolan_k8s::token_expiry(token)
                .and_then(|exp| u64::try_from(exp).ok())
                .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
            reviewed
                .map(|sa| TokenIdentity {
                    namespace: sa.namespace,
                    service_account: sa.name,
                    expires_at,
                })
                .map_err(refusal)
        })
    }
}

/// The refusal reason of a review error.
fn refusal(error: ReviewError) -> TokenRefusal {
    let reason = match &error {
        ReviewError::Expired(_) => RefusalReason::Expired,
        ReviewError::WrongAudience { .. } => RefusalReason::WrongAudience,
        ReviewError::NotAuthenticated(_) | ReviewError::NotServiceAccount(_) => {
            RefusalReason::Invalid
        }
        ReviewError::Api(_) => RefusalReason::Unverifiable,
    };
    TokenRefusal::new(reason, error.to_string())
}

/// The xDS server's token authentication, when `--xds-token-review` is on.
pub async fn setup(args: &TokenArgs, trust_domain: &str) -> anyhow::Result<Option<TokenAuth>> {
    if !args.xds_token_review {
        return Ok(None);
    }
    let client = portolan_k8s::client()
        .await
        .context("--xds-token-review needs the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let reviewer = TokenReviewer::new(
        client,
        &args.xds_token_audience,
        args.xds_token_cache,
        args.xds_token_cache_size,
    );
    tracing::info!(audience = %args.xds_token_audience, "xDS clients without a certificate prove their identity with a service account token (TokenReview)");
    Ok(Some(TokenAuth {
        verifier: Arc::new(Reviewer(Arc::new(reviewer))),
        trust_domain: trust_domain.to_string(),
        recheck: (!args.xds_token_recheck.is_zero()).then_some(args.xds_token_recheck),
    }))
}

/// `POST /sts/v1/token`: an RFC 8693 token exchange that returns the subject token as the
/// access token; 400 `invalid_request` without one.
pub async fn exchange(Form(form): Form<HashMap<String, String>>) -> Response {
    let token = form.get("subject_token").map(|t| t.trim()).unwrap_or("");
    let grant = form.get("grant_type").map(String::as_str);
    if grant != Some(TOKEN_EXCHANGE) || token.is_empty() {
        let body = json!({"error": "invalid_request",
            "error_description": format!("expected grant_type={TOKEN_EXCHANGE} and a subject_token")});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    Json(json!({
        "access_token": token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_type": "Bearer",
        "expires_in": EXCHANGED_LIFETIME
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn post(form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
        let form = form
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let response = exchange(Form(form)).await;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn the_exchange_hands_the_subject_token_back() {
        let (status, body) = post(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", "a.b.c\n"),
            ("audience", "portolan"),
        ])
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["access_token"], "a.b.c");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 30);
        let (status, body) = post(&[("grant_type", TOKEN_EXCHANGE)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_request");
        let (status, _) = post(&[("grant_type", "password"), ("subject_token", "x")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn review_errors_map_to_refusal_reasons() {
        let reason = |e| refusal(e).reason;
        assert_eq!(reason(ReviewError::Expired(1)), RefusalReason::Expired);
        assert_eq!(
            reason(ReviewError::WrongAudience {
                found: vec![],
                expected: "portolan".into()
            }),
            RefusalReason::WrongAudience
        );
        assert_eq!(
            reason(ReviewError::NotAuthenticated("x".into())),
            RefusalReason::Invalid
        );
        assert_eq!(
            reason(ReviewError::Api("down".into())),
            RefusalReason::Unverifiable
        );
    }
}
