//! `portolan.dev/Converged` on Gateway API Gateways: whether every connected proxy of the
//! Gateway has ACKed the configuration Portolan holds for it now. The spec's `Programmed`
//! says the configuration is built and served (it never waits for a proxy); this condition is
//! what `kubectl wait --for=condition=portolan.dev/Converged` waits for after a change.

use super::status::{ApiCondition, ApiStatus};

/// The condition type (domain-prefixed, as the spec asks of implementation conditions).
pub const PORTOLAN_CONVERGED: &str = "portolan.dev/Converged";

/// How far the connected proxies of one Gateway (its proxy group) are: node ids of those
/// still behind and of those whose last answer was a NACK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Convergence {
    /// Connected proxies (node ids counted once).
    pub proxies: usize,
    /// Proxies with a newer version in flight or not yet sent.
    pub pending: Vec<String>,
    /// Proxies that rejected the version sent last.
    pub nacked: Vec<String>,
}

/// At most this many node ids are named in a message.
const NAMED: usize = 5;

/// `status` with `portolan.dev/Converged` set on a Gateway (other kinds unchanged):
/// `True` `Converged` when every connected proxy ACKed the current configuration, `False`
/// `Nacked` / `Pending` naming the proxies behind, `False` `NoProxies` when none is
/// connected (`convergence` `None` or empty).
pub fn with_convergence(status: &ApiStatus, convergence: Option<&Convergence>) -> ApiStatus {
    let ApiStatus::Gateway(gateway) = status else {
        return status.clone();
    };
    let mut gateway = gateway.clone();
    let generation = gateway
        .conditions
        .iter()
        .map(|c| c.observed_generation)
        .max()
        .unwrap_or_default();
    let (ok, reason, message) = describe(convergence);
    let condition = ApiCondition::new(PORTOLAN_CONVERGED, ok, reason, message, generation);
    gateway.conditions.retain(|c| c.type_ != PORTOLAN_CONVERGED);
    gateway.conditions.push(condition);
    ApiStatus::Gateway(gateway)
}

fn describe(convergence: Option<&Convergence>) -> (bool, &'static str, String) {
    let Some(c) = convergence.filter(|c| c.proxies > 0) else {
        return (
            false,
            "NoProxies",
            "no proxy of this Gateway is connected".to_string(),
        );
    };
    let named = |ids: &[String]| {
        let mut shown = ids
            .iter()
            .take(NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if ids.len() > NAMED {
            shown.push_str(&format!(" and {} more", ids.len() - NAMED));
        }
        shown
    };
    if !c.nacked.is_empty() {
        let message = format!(
            "{} of {} connected proxies rejected the configuration: {}",
            c.nacked.len(),
            c.proxies,
            named(&c.nacked)
        );
        return (false, "Nacked", message);
    }
    if !c.pending.is_empty() {
        let message = format!(
            "{} of {} connected proxies have not ACKed the current configuration yet: {}",
            c.pending.len(),
            c.proxies,
            named(&c.pending)
        );
        return (false, "Pending", message);
    }
    let message = format!(
        "all {} connected proxies ACKed the current configuration",
        c.proxies
    );
    (true, "Converged", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_api::status::GatewayStatus;

    fn gateway() -> ApiStatus {
        ApiStatus::Gateway(GatewayStatus {
            addresses: Vec::new(),
            conditions: vec![ApiCondition::new("Programmed", true, "Programmed", "ok", 4)],
            listeners: Vec::new(),
            attached_listener_sets: None,
        })
    }

    fn converged(status: &ApiStatus) -> ApiCondition {
        let ApiStatus::Gateway(g) = status else {
            panic!("a Gateway stays a Gateway");
        };
        let found: Vec<_> = g
            .conditions
            .iter()
            .filter(|c| c.type_ == PORTOLAN_CONVERGED)
            .collect();
        assert_eq!(found.len(), 1, "exactly one: {:?}", g.conditions);
        found[0].clone()
    }

    #[test]
    fn every_state_has_its_reason_and_the_generation_of_the_others() {
        let none = with_convergence(&gateway(), None);
        let c = converged(&none);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NoProxies")
        );
        assert_eq!(c.observed_generation, 4);

        let all = Convergence {
            proxies: 2,
            ..Default::default()
        };
        let c = converged(&with_convergence(&none, Some(&all)));
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "Converged")
        );
        assert!(c.message.contains("all 2"), "{}", c.message);

        let behind = Convergence {
            proxies: 9,
            pending: (1..=7).map(|i| format!("gw-{i}")).collect(),
            nacked: Vec::new(),
        };
        let c = converged(&with_convergence(&gateway(), Some(&behind)));
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Pending"));
        assert!(c.message.contains("7 of 9") && c.message.contains("gw-5 and 2 more"));
        assert!(!c.message.contains("gw-6"), "{}", c.message);

        let rejected = Convergence {
            nacked: vec!["gw-1".into()],
            ..behind
        };
        let c = converged(&with_convergence(&gateway(), Some(&rejected)));
        assert_eq!(c.reason, "Nacked");
    }

    #[test]
    fn other_kinds_are_unchanged() {
        let class = ApiStatus::GatewayClass(crate::gateway_api::status::GatewayClassStatus {
            conditions: Vec::new(),
            supported_features: Vec::new(),
        });
        assert_eq!(with_convergence(&class, None), class);
    }
}
