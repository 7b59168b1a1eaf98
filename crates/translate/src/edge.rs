//! The ExtAuthPolicies and RateLimitPolicies of one HTTP connection manager (a gateway port):
//! which filters it carries and what each of its routes says to them.
//!
//! The policy that applies to a route is the most specific one attached
//! ([`portolan_model::policy_attach::Resolution::effective`]: the rule, the route, the listener,
//! the Gateway), per kind. A policy that applies to every listener of the port (attached to
//! the listener or the Gateway, the same one for each) is the listener's: its filters are
//! enabled in the connection manager, so requests no route matches pass them too. Any other
//! policy's filters are disabled there and enabled by the routes it applies to; a route under
//! another policy (or a `disabled: true` ExtAuthPolicy) turns the listener's filters off.
//!
//! Local limits share one `envoy.filters.http.local_ratelimit` filter: the listener's policy
//! is its token bucket (one for the whole listener), another policy's bucket is per-route
//! config (one bucket per Envoy route).

use crate::context::Context;
use crate::ext_authz;
use crate::filters;
use crate::rate_limit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::google::protobuf::Any;
use portolan_api::ObjectRef;
use portolan_model::edge::{ExtAuth, RateLimit};
use portolan_model::policy_attach::Reach;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The edge policies one connection manager uses.
#[derive(Default)]
pub(crate) struct EdgeUse {
    /// The ExtAuthPolicy of the whole listener, if it names a service.
    listener_auth: Option<Arc<ExtAuth>>,
    /// The RateLimitPolicy of the whole listener.
    listener_limit: Option<Arc<RateLimit>>,
    /// Policies enabled per route, by source.
    route_auth: BTreeMap<ObjectRef, Arc<ExtAuth>>,
    route_limit: BTreeMap<ObjectRef, Arc<RateLimit>>,
    /// Whether some route has its own local bucket.
    route_local: bool,
}

// === impl EdgeUse ===

impl EdgeUse {
    /// `listeners`: per listener of the port, its candidates (the listener, then its Gateway).
    pub(crate) fn new(ctx: &Context<'_>, listeners: &[Vec<Reach>]) -> Self {
        let world = ctx.world;
        let auth = common(listeners.iter().map(|c| world.ext_auth.effective(c)));
        let limit = common(listeners.iter().map(|c| world.rate_limit.effective(c)));
        Self {
            listener_auth: auth
                .and_then(|s| world.ext_auths.get(s))
                .filter(|p| p.service.is_some())
                .cloned(),
            listener_limit: limit.and_then(|s| world.rate_limits.get(s)).cloned(),
            ..Default::default()
        }
    }

    /// The per-filter config of one route whose candidates (most specific first) are
    /// `candidates`; records the policies it enables.
    pub(crate) fn route_config(
        &mut self,
        ctx: &Context<'_>,
        candidates: &[Reach],
    ) -> Vec<(String, Any)> {
        let world = ctx.world;
        let auth = world
            .ext_auth
            .effective(candidates)
            .and_then(|s| world.ext_auths.get(s));
        let limit = world
            .rate_limit
            .effective(candidates)
            .and_then(|s| world.rate_limits.get(s));
        let mut out = self.auth_config(auth);
        out.extend(self.limit_config(limit));
        out
    }

    fn auth_config(&mut self, policy: Option<&Arc<ExtAuth>>) -> Vec<(String, Any)> {
        let source = policy.map(|p| p.source());
        let mut out = Vec::new();
        if let Some(l) = &self.listener_auth {
            if Some(l.source()) == source {
                return out;
            }
            let name = ext_authz::filter_name(l.source());
            out.push((name, ext_authz::disabled_on_route()));
        }
        if let Some(p) = policy.filter(|p| p.service.is_some()) {
            self.route_auth.insert(p.source().clone(), p.clone());
            let name = ext_authz::filter_name(p.source());
            out.push((name, ext_authz::enabled_on_route()));
        }
        out
    }

    fn limit_config(&mut self, policy: Option<&Arc<RateLimit>>) -> Vec<(String, Any)> {
        let listener = self.listener_limit.clone();
        if listener.as_ref().map(|l| l.source()) == policy.map(|p| p.source()) {
            return Vec::new();
        }
        let mut out = Vec::new();
        match policy.and_then(|p| p.local.as_ref()) {
            Some(local) => {
                self.route_local = true;
                let config = rate_limit::local_on_route(local);
                out.push((rate_limit::LOCAL_RATE_LIMIT.to_string(), config));
            }
            None if listener.as_ref().is_some_and(|l| l.local.is_some()) => {
                let off = filters::disabled_on_route();
                out.push((rate_limit::LOCAL_RATE_LIMIT.to_string(), off));
            }
            None => {}
        }
        if let Some(l) = listener.as_ref().filter(|l| l.global.is_some()) {
            let name = rate_limit::global_filter_name(l.source());
            out.push((name, filters::disabled_on_route()));
        }
        if let Some(p) = policy.filter(|p| p.global.is_some()) {
            self.route_limit.insert(p.source().clone(), p.clone());
            let name = rate_limit::global_filter_name(p.source());
            out.push((name, rate_limit::global_on_route()));
        }
        out
    }

    /// The HTTP filters (before the router): ext_authz filters, the local rate limit filter,
    /// then the global rate limit filters; the listener's enabled, the others disabled.
    pub(crate) fn http_filters(&self, ctx: &Context<'_>) -> Vec<HttpFilter> {
        let mut out = Vec::new();
        let auth = self.listener_auth.iter().map(|p| (p, true));
        let route_auth = self.route_auth.values().map(|p| (p, false));
        for (policy, enabled) in auth.chain(route_auth) {
            let Some(service) = &policy.service else {
                continue;
            };
            let dest = match service {
                portolan_model::edge::AuthService::Grpc(d) => d,
                portolan_model::edge::AuthService::Http(h) => &h.destination,
            };
            let cluster = ctx.resolve(&policy.source().namespace, dest, None).cluster;
            out.extend(ext_authz::http_filter_for(policy, &cluster, enabled));
        }
        let listener_local = self.listener_limit.as_ref().and_then(|l| l.local.as_ref());
        if listener_local.is_some() || self.route_local {
            out.push(rate_limit::local_filter(listener_local));
        }
        let global = self.listener_limit.iter().map(|p| (p, true));
        let route_global = self.route_limit.values().map(|p| (p, false));
        for (policy, enabled) in global.chain(route_global) {
            let Some(limit) = &policy.global else {
                continue;
            };
            let ns = &policy.source().namespace;
            let cluster = ctx.resolve(ns, &limit.service, None).cluster;
            out.push(rate_limit::global_filter(
                policy.source(),
                limit,
                &cluster,
                enabled,
            ));
        }
        out
    }

    /// Every policy used, for provenance.
    pub(crate) fn sources(&self) -> impl Iterator<Item = ObjectRef> + '_ {
        let auth = self.listener_auth.iter().chain(self.route_auth.values());
        let limit = self.listener_limit.iter().chain(self.route_limit.values());
        auth.map(|p| p.source().clone())
            .chain(limit.map(|p| p.source().clone()))
    }
}

/// The one value every item has (`None` when some differ or one is `None`, or no items).
fn common<'a>(mut items: impl Iterator<Item = Option<&'a ObjectRef>>) -> Option<&'a ObjectRef> {
    let first = items.next()??;
    items.all(|i| i == Some(first)).then_some(first)
}
