//! Workload identity from a bearer token on the stream (`authorization: Bearer TOKEN`, what
//! Envoy's Google gRPC client sends with `sts_service` call credentials).
//!
//! The server does not know how a token is verified (Kubernetes TokenReview, in the wiring): it
//! is given a [`TokenVerifier`]. A stream's first request is held until its token is verified;
//! the verified namespace and service account become the stream's peer identity, the SPIFFE ID
//! `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`, exactly as if a client certificate had named it, so the
//! proxy group, the workload certificate over SDS and the authorization rule follow from it.
//! A client that proved an identity with a certificate (mutual TLS) needs no token. A stream
//! lives no longer than its token: when the token expires the stream ends with
//! `UNAUTHENTICATED` (`expired`), and the proxy reconnects with the token it holds by then (the
//! kubelet rewrites the file well before expiry). With [`TokenAuth::recheck`] set, the token of
//! an open stream is verified again at that interval: once the verifier refuses it (revoked,
//! for example by deleting its pod), the stream ends with the refusal's status and reason,
//! counted like a refused stream; a verifier that cannot answer (`unverifiable`) leaves the
//! stream open until the next check.
//!
//! Refused, each counted in `xds_auth_refusals_total{reason}` and logged:
//!
//! | reason | code |
//! |---|---|
//! | `missing` (no bearer token) | `UNAUTHENTICATED` |
//! | `expired`, `wrong_audience`, `invalid` (the API server does not authenticate it), `unverifiable` (it could not be asked) | `UNAUTHENTICATED` |
//! | `group_mismatch` (`node.cluster` is not the service account, nor a group the grouping hook grants it: [`crate::NodeGrouping::token_groups`]), `namespace_mismatch` (the node claims another namespace) | `PERMISSION_DENIED` |

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use futures::future::BoxFuture;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::authz::PeerIdentity;
use crate::grouping::{DEFAULT_GROUP, NodeGrouping};

/// The identity a verified token names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenIdentity {
    pub namespace: String,
    pub service_account: String,
    /// When the token expires: the stream it opened is closed then (the proxy reconnects with
    /// the token it holds by then).
    pub expires_at: Option<SystemTime>,
}

/// A stream's verified identity and how long it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub peer: PeerIdentity,
    pub expires_at: Option<SystemTime>,
}

/// Why a token (or the stream presenting it) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    Missing,
    Expired,
    WrongAudience,
    Invalid,
    Unverifiable,
    GroupMismatch,
    NamespaceMismatch,
}

/// A refused token: the reason (the metric label) and a message for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRefusal {
    pub reason: RefusalReason,
    pub message: String,
}

/// Verifies bearer tokens (the wiring's hook).
pub trait TokenVerifier: Send + Sync + Debug {
    /// The identity `token` proves, or why it proves none.
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<TokenIdentity, TokenRefusal>>;
}

/// Token authentication of a server: the verifier and the trust domain of the SPIFFE IDs.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    pub verifier: Arc<dyn TokenVerifier>,
    pub trust_domain: String,
    /// How often an open stream's token is verified again (`None`: only when it opens).
    pub recheck: Option<Duration>,
}

// === impl RefusalReason ===

impl RefusalReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::Missing => "missing",
            RefusalReason::Expired => "expired",
            RefusalReason::WrongAudience => "wrong_audience",
            RefusalReason::Invalid => "invalid",
            RefusalReason::Unverifiable => "unverifiable",
            RefusalReason::GroupMismatch => "group_mismatch",
            RefusalReason::NamespaceMismatch => "namespace_mismatch",
        }
    }
}

// === impl TokenRefusal ===

impl TokenRefusal {
    pub fn new(reason: RefusalReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// `UNAUTHENTICATED` for a token that proves nothing, `PERMISSION_DENIED` for an identity
    /// that may not have this stream; the message names the reason.
    pub fn status(&self) -> Status {
        let text = format!("{}: {}", self.reason.label(), self.message);
        match self.reason {
            RefusalReason::GroupMismatch | RefusalReason::NamespaceMismatch => {
                Status::permission_denied(text)
            }
            _ => Status::unauthenticated(text),
        }
    }
}

// === impl TokenAuth ===

impl TokenAuth {
    /// The peer identity of a stream that presented `token` and sent `node`: verified, and
    /// checked against what the node claims (its cluster must be the service account, its
    /// claimed namespace, if any, the token's).
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        node: Option<&Node>,
        grouping: &dyn NodeGrouping,
    ) -> Result<Authenticated, TokenRefusal> {
        let token = token.ok_or_else(|| {
            TokenRefusal::new(
                RefusalReason::Missing,
                "no bearer token (authorization: Bearer ...); this server identifies proxies by their service account token",
            )
        })?;
        let id = self.verifier.verify(token).await?;
        let groups = grouping.token_groups(&id.namespace, &id.service_account);
        check_node(&id, &groups, node, grouping)?;
        // The other groups it may ask for are named as a certificate's DNS SANs would name
        // them (see [`crate::authz`]).
        let peer = PeerIdentity {
            dns: groups,
            uris: vec![format!(
                "spiffe://{}/ns/{}/sa/{}",
                self.trust_domain, id.namespace, id.service_account
            )],
        };
        Ok(Authenticated {
            peer,
            expires_at: id.expires_at,
        })
    }
}

impl TokenAuth {
    /// Completes with the refusal once `token`, verified again every [`TokenAuth::recheck`],
    /// is refused; never without a recheck interval. An `unverifiable` answer (the verifier
    /// could not ask) keeps waiting for the next check.
    pub(crate) async fn revoked(&self, token: &str) -> TokenRefusal {
        let Some(every) = self.recheck else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(every).await;
            match self.verifier.verify(token).await {
                Err(refusal) if refusal.reason != RefusalReason::Unverifiable => return refusal,
                Err(refusal) => tracing::warn!(
                    reason = refusal.message,
                    "could not verify an open stream's token again; it stays open"
                ),
                Ok(_) => {}
            }
        }
    }
}

/// The node's cluster must be the token's service account (as a certificate's URI SAN names
/// its group) or one of `groups` (what the grouping hook grants it, a gateway's), and the
/// namespace it claims, if any, the token's.
fn check_node(
    id: &TokenIdentity,
    groups: &[String],
    node: Option<&Node>,
    grouping: &dyn NodeGrouping,
) -> Result<(), TokenRefusal> {
    let cluster = node
        .map(|n| n.cluster.as_str())
        .filter(|c| !c.is_empty())
        .unwrap_or(DEFAULT_GROUP);
    if cluster != id.service_account && !groups.iter().any(|g| g == cluster) {
        let allowed: Vec<&str> = std::iter::once(id.service_account.as_str())
            .chain(groups.iter().map(String::as_str))
            .collect();
        return Err(TokenRefusal::new(
            RefusalReason::GroupMismatch,
            format!(
                "the token is service account {}/{}, which may ask only for proxy group (node.cluster) {allowed:?}, not {cluster:?}",
                id.namespace, id.service_account
            ),
        ));
    }
    if let Some(claimed) = node.and_then(|n| grouping.claimed_namespace(n))
        && claimed != id.namespace
    {
        return Err(TokenRefusal::new(
            RefusalReason::NamespaceMismatch,
            format!(
                "the node claims namespace {claimed:?} but the token is service account {}/{}",
                id.namespace, id.service_account
            ),
        ));
    }
    Ok(())
}

/// The bearer token of a request (`authorization: Bearer TOKEN`), if any.
pub fn bearer_token(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grouping::{ByCluster, Grouped};
    use std::collections::BTreeMap;

    /// Tokens and the identities they prove; anything else is invalid.
    #[derive(Debug)]
    struct Table(BTreeMap<&'static str, Result<TokenIdentity, TokenRefusal>>);

    impl TokenVerifier for Table {
        fn verify<'a>(
            &'a self,
            token: &'a str,
        ) -> BoxFuture<'a, Result<TokenIdentity, TokenRefusal>> {
            let answer =
                self.0.get(token).cloned().unwrap_or_else(|| {
                    Err(TokenRefusal::new(RefusalReason::Invalid, "unknown token"))
                });
            Box::pin(async move { answer })
        }
    }

    /// Groups by cluster; the node claims the namespace in its `id` after a `.`.
    #[derive(Debug)]
    struct ClaimsInId;

    impl NodeGrouping for ClaimsInId {
        fn group(&self, node: &Node, peer: Option<&PeerIdentity>) -> Grouped {
            ByCluster.group(node, peer)
        }
        fn claimed_namespace(&self, node: &Node) -> Option<String> {
            node.id.split_once('.').map(|(_, ns)| ns.to_string())
        }
    }

    fn auth() -> TokenAuth {
        let web = TokenIdentity {
            namespace: "shop".into(),
            service_account: "web".into(),
            expires_at: Some(SystemTime::UNIX_EPOCH),
        };
        let table = Table(BTreeMap::from([
            ("good", Ok(web)),
            (
                "old",
                Err(TokenRefusal::new(RefusalReason::Expired, "expired at ...")),
            ),
        ]));
        TokenAuth {
            verifier: Arc::new(table),
            trust_domain: "cluster.local".into(),
            recheck: None,
        }
    }

    fn node(id: &str, cluster: &str) -> Node {
        Node {
            id: id.into(),
            cluster: cluster.into(),
            ..Default::default()
        }
    }

    async fn reason(token: Option<&str>, node: &Node) -> RefusalReason {
        auth()
            .authenticate(token, Some(node), &ClaimsInId)
            .await
            .expect_err("refused")
            .reason
    }

    #[tokio::test]
    async fn a_verified_token_becomes_a_spiffe_identity() {
        let id = auth()
            .authenticate(Some("good"), Some(&node("w-1.shop", "web")), &ClaimsInId)
            .await
            .expect("verified");
        assert_eq!(id.peer.uris, ["spiffe://cluster.local/ns/shop/sa/web"]);
        assert!(id.peer.dns.is_empty());
        assert_eq!(id.expires_at, Some(SystemTime::UNIX_EPOCH));
    }

    #[tokio::test]
    async fn every_refusal_has_its_reason_and_code() {
        let ok = node("w-1", "web");
        assert_eq!(reason(None, &ok).await, RefusalReason::Missing);
        assert_eq!(reason(Some("old"), &ok).await, RefusalReason::Expired);
        assert_eq!(reason(Some("forged"), &ok).await, RefusalReason::Invalid);
        assert_eq!(
            reason(Some("good"), &node("w-1", "batch")).await,
            RefusalReason::GroupMismatch
        );
        assert_eq!(
            reason(Some("good"), &node("w-1.other", "web")).await,
            RefusalReason::NamespaceMismatch
        );
        let denied = TokenRefusal::new(RefusalReason::GroupMismatch, "x").status();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        let unauth = TokenRefusal::new(RefusalReason::Expired, "at 12:00").status();
        assert_eq!(unauth.code(), tonic::Code::Unauthenticated);
        assert_eq!(unauth.message(), "expired: at 12:00");
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut md = MetadataMap::new();
        assert_eq!(bearer_token(&md), None);
        md.insert("authorization", "Bearer abc.def".parse().expect("ascii"));
        assert_eq!(bearer_token(&md).as_deref(), Some("abc.def"));
        md.insert("authorization", "Basic abc".parse().expect("ascii"));
        assert_eq!(bearer_token(&md), None);
        md.insert("authorization", "bearer  ".parse().expect("ascii"));
        assert_eq!(bearer_token(&md), None);
    }
}
