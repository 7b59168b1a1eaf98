//! Locality-aware balancing: with a TrafficPolicy's `loadBalancer.localityAware` and a proxy
//! group that knows its zone (Envoy `node.locality.zone`), endpoints in the proxy's zone get
//! priority 0 and the others priority 1. Envoy sends everything to the local zone while it
//! has healthy endpoints and spills over to the others as they fail (health checks or
//! outlier detection) or when the zone has none.

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use portolan_model::policy::DestinationPolicy;

/// Whether a policy asks for locality-aware balancing.
pub(crate) fn is_aware(policy: Option<&DestinationPolicy>) -> bool {
    policy
        .and_then(|p| p.load_balancer.as_ref())
        .is_some_and(|lb| lb.locality_aware)
}

/// Puts the endpoints of `zone` first (priority 0) and the others after (priority 1).
pub(crate) fn prefer(cla: &mut ClusterLoadAssignment, zone: Option<&str>) {
    let Some(zone) = zone else {
        return;
    };
    for group in &mut cla.endpoints {
        let here = group.locality.as_ref().is_some_and(|l| l.zone == zone);
        group.priority = if here { 0 } else { 1 };
    }
    // Envoy requires every priority below the highest to be present; an assignment with only
    // remote endpoints must not leave priority 0 empty.
    if cla.endpoints.iter().all(|g| g.priority == 1) {
        for group in &mut cla.endpoints {
            group.priority = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::Locality;
    use envoy_types::pb::envoy::config::endpoint::v3::LocalityLbEndpoints;

    fn cla(zones: &[&str]) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: "c".into(),
            endpoints: zones
                .iter()
                .map(|z| LocalityLbEndpoints {
                    locality: Some(Locality {
                        zone: z.to_string(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn priorities(c: &ClusterLoadAssignment) -> Vec<u32> {
        c.endpoints.iter().map(|g| g.priority).collect()
    }

    #[test]
    fn local_zone_first() {
        let mut c = cla(&["zone-a", "zone-b", ""]);
        prefer(&mut c, Some("zone-b"));
        assert_eq!(priorities(&c), [1, 0, 1]);
    }

    #[test]
    fn no_local_endpoints_keeps_one_priority() {
        let mut c = cla(&["zone-a", "zone-b"]);
        prefer(&mut c, Some("zone-c"));
        assert_eq!(priorities(&c), [0, 0]);
    }

    #[test]
    fn without_a_zone_nothing_changes() {
        let mut c = cla(&["zone-a", "zone-b"]);
        prefer(&mut c, None);
        assert_eq!(priorities(&c), [0, 0]);
    }
}
