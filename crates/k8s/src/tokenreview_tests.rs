#![allow(clippy::unwrap_used)]

use super::*;
use crate::testing::{Handle, mock_client, next, respond};
use serde_json::{Value, json};

fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2ln")
}

fn valid_jwt(sub: &str) -> String {
    jwt(&json!({"aud": ["portolan"], "exp": unix_now() + 600, "sub": sub}))
}

fn reviewer(capacity: usize) -> (TokenReviewer, Handle) {
    let (client, api) = mock_client();
    let reviewer = TokenReviewer::new(client, "portolan", Duration::from_secs(60), capacity);
    (reviewer, api)
}

/// Answers the next TokenReview with `status`, checking what was asked.
async fn answer(api: &mut Handle, token: &str, status: Value) {
    let (seen, responder) = next(api).await;
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.path,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "{seen:?}",
        seen = seen.body
    );
    assert_eq!(seen.body["spec"]["token"], json!(token));
    assert_eq!(seen.body["spec"]["audiences"], json!(["portolan"]));
    let mut body = seen.body.clone();
    body["status"] = status;
    respond(responder, 201, &body);
}

fn sa_status(user: &str, audiences: &[&str]) -> Value {
    json!({"authenticated": true, "user": {"username": user}, "audiences": audiences})
}

#[tokio::test]
async fn a_reviewed_token_names_its_service_account_and_is_cached() {
    let (reviewer, mut api) = reviewer(16);
    let token = valid_jwt("system:serviceaccount:shop:web");
    let (got, ()) = tokio::join!(reviewer.review(&token), async {
        answer(
            &mut api,
            &token,
            sa_status("system:serviceaccount:shop:web", &["portolan"]),
        )
        .await
    });
    let web = ServiceAccountRef {
        namespace: "shop".into(),
        name: "web".into(),
    };
    assert_eq!(got, Ok(web.clone()));
    // The second time comes from the cache: no request (the mock would wait forever).
    assert_eq!(reviewer.review(&token).await, Ok(web));
    assert_eq!(reviewer.reviews(), 1);
}

#[tokio::test]
async fn expired_and_wrong_audience_tokens_never_reach_the_api_server() {
    let (reviewer, _api) = reviewer(16);
    let expired = jwt(&json!({"aud": "portolan", "exp": 1_000}));
    assert_eq!(
        reviewer.review(&expired).await,
        Err(ReviewError::Expired(1_000))
    );
    let other = jwt(&json!({"aud": ["vault"], "exp": unix_now() + 600}));
    assert_eq!(
        reviewer.review(&other).await,
        Err(ReviewError::WrongAudience {
            found: vec!["vault".into()],
            expected: "portolan".into()
        })
    );
    assert_eq!(reviewer.reviews(), 0);
}

#[tokio::test]
async fn the_api_server_decides_what_the_claims_cannot() {
    let (reviewer, mut api) = reviewer(16);
    let cases = [
        (
            "opaque-unknown",
            json!({"authenticated": false, "error": "invalid bearer token"}),
            ReviewError::NotAuthenticated("invalid bearer token".into()),
        ),
        (
            "other-audience",
            sa_status("system:serviceaccount:shop:web", &["vault"]),
            ReviewError::WrongAudience {
                found: vec!["vault".into()],
                expected: "portolan".into(),
            },
        ),
        (
            "a-user",
            sa_status("alice", &["portolan"]),
            ReviewError::NotServiceAccount("alice".into()),
        ),
    ];
    for (token, status, expected) in cases {
        let (got, ()) = tokio::join!(reviewer.review(token), answer(&mut api, token, status));
        assert_eq!(got, Err(expected.clone()), "{token}");
        // Refusals are cached too.
        assert_eq!(reviewer.review(token).await, Err(expected), "{token}");
    }
    assert_eq!(reviewer.reviews(), 3);
}

#[tokio::test]
async fn api_errors_are_not_cached() {
    let (reviewer, mut api) = reviewer(16);
    let token = valid_jwt("x");
    for _ in 0..2 {
        let (got, ()) = tokio::join!(reviewer.review(&token), async {
            let (_, responder) = next(&mut api).await;
            respond(responder, 500, &json!({"kind": "Status", "code": 500}));
        });
        assert!(matches!(got, Err(ReviewError::Api(_))), "{got:?}");
    }
    assert_eq!(reviewer.reviews(), 2);
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let (reviewer, mut api) = reviewer(2);
    for i in 0..5 {
        let token = format!("t{i}");
        let (_, ()) = tokio::join!(
            reviewer.review(&token),
            answer(
                &mut api,
                &token,
                sa_status("system:serviceaccount:a:b", &["portolan"])
            )
        );
        assert!(reviewer.lock().len() <= 2);
    }
}

#[test]
fn service_account_user_names() {
    assert_eq!(
        service_account("system:serviceaccount:shop:web"),
        Some(ServiceAccountRef {
            namespace: "shop".into(),
            name: "web".into()
        })
    );
    for bad in [
        "system:serviceaccount:shop",
        "system:serviceaccount::web",
        "system:serviceaccount:shop:web:x",
        "system:node:n1",
        "alice",
    ] {
        assert_eq!(service_account(bad), None, "{bad}");
    }
}

#[test]
fn claims_are_read_from_jwts_only() {
    assert_eq!(claims("opaque"), Claims::default());
    assert_eq!(claims("a.!!.c"), Claims::default());
    assert_eq!(
        claims(&jwt(&json!({"aud": "portolan", "exp": 5}))),
        Claims {
            exp: Some(5),
            aud: vec!["portolan".into()]
        }
    );
}
