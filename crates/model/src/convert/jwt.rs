//! RequestAuthentication -> [`crate::jwt`].

use super::duration;
use crate::jwt::*;
use crate::policy_attach::PolicyMeta;
use portolan_api::Resource;
use portolan_api::crd::request_authentication as ra;
use std::time::Duration;

/// Default of `remoteJwks.cacheDuration`.
const DEFAULT_CACHE: Duration = Duration::from_secs(300);
/// Default of `remoteJwks.timeout`.
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn request_authentication(
    resource: &Resource,
    r: &ra::RequestAuthentication,
) -> RequestAuthentication {
    let spec = &r.spec;
    let requirement = spec.requirement.clone().unwrap_or_default();
    RequestAuthentication {
        meta: PolicyMeta {
            source: resource.object_ref(),
            generation: resource.generation(),
            created: resource
                .metadata()
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            targets: spec.target_refs.clone(),
        },
        providers: spec.providers.iter().filter_map(provider).collect(),
        requirement: JwtRequirement {
            optional: requirement.mode == ra::JwtMode::Optional,
            providers: requirement.providers,
        },
    }
}

/// A validated provider (`None` only for input validation would have refused).
fn provider(p: &ra::JwtProvider) -> Option<JwtProvider> {
    let jwks = match (&p.remote_jwks, &p.local_jwks) {
        (Some(remote), _) => {
            let uri = ra::parse_jwks_uri(&remote.uri).ok()?;
            Jwks::Remote {
                uri: remote.uri.clone(),
                host: uri.host,
                port: uri.port,
                tls: uri.tls,
                cache_duration: duration(remote.cache_duration.as_deref()).unwrap_or(DEFAULT_CACHE),
                timeout: duration(remote.timeout.as_deref()).unwrap_or(DEFAULT_FETCH_TIMEOUT),
            }
        }
        (None, Some(local)) => Jwks::Local(local.inline.clone()),
        (None, None) => return None,
    };
    Some(JwtProvider {
        name: p.name.clone(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        jwks,
        from_headers: p
            .from_headers
            .iter()
            .map(|h| (h.name.clone(), h.prefix.clone()))
            .collect(),
        from_params: p.from_params.clone(),
        from_cookies: p.from_cookies.clone(),
        claim_to_headers: p
            .claim_to_headers
            .iter()
            .map(|c| (c.claim.clone(), c.header.to_ascii_lowercase()))
            .collect(),
        forward_token: p.forward_token.unwrap_or(false),
    })
}
