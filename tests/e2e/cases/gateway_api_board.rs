//! The conformance board: which upstream v1.6.1 tests each profile has (the denominators),
//! which of them the run reproduced, and which passed.
//!
//! Upstream, a test belongs to a profile when every one of its features is in that profile's
//! core ∪ extended features, and is core when none of them is extended. So the 11 tests whose
//! features are only `Gateway` (or `Gateway` + `ReferenceGrant`) are core in all three Gateway
//! profiles. The lists below add up to the totals of the published v1.6.1 reports (Envoy
//! Gateway 1.9.0, Cilium 1.20.0, kgateway 2.4.5): 37 / 15 / 20 / 7 / 2.

/// Core in GATEWAY-HTTP, GATEWAY-GRPC and GATEWAY-TLS.
const GATEWAY_ONLY: [&str; 11] = [
    "GatewayClassObservedGenerationBump",
    "GatewayInvalidRouteKind",
    "GatewayInvalidTLSConfiguration",
    "GatewayModifyListeners",
    "GatewayObservedGenerationBump",
    "GatewaySecretInvalidReferenceGrant",
    "GatewaySecretMissingReferenceGrant",
    "GatewaySecretReferenceGrantAllInNamespace",
    "GatewaySecretReferenceGrantSpecific",
    "GatewayListenerUnsupportedProtocol",
    "GatewayInvalidParametersRef",
];

/// Core in GATEWAY-HTTP only.
const HTTP_ROUTE: [&str; 26] = [
    "GatewayWithAttachedRoutes",
    "HTTPRouteSimpleSameNamespace",
    "HTTPRouteMatching",
    "HTTPRouteMatchingAcrossRoutes",
    "HTTPRouteExactPathMatching",
    "HTTPRoutePathMatchOrder",
    "HTTPRouteHeaderMatching",
    "HTTPRouteHostnameIntersection",
    "HTTPRouteListenerHostnameMatching",
    "HTTPRouteCrossNamespace",
    "HTTPRouteReferenceGrant",
    "HTTPRouteInvalidCrossNamespaceBackendRef",
    "HTTPRouteInvalidBackendRefUnknownKind",
    "HTTPRouteInvalidNonExistentBackendRef",
    "HTTPRouteInvalidCrossNamespaceParentRef",
    "HTTPRouteInvalidParentRefNotMatchingSectionName",
    "HTTPRouteInvalidReferenceGrant",
    "HTTPRoutePartiallyInvalidViaInvalidReferenceGrant",
    "HTTPRouteObservedGenerationBump",
    "HTTPRouteRequestHeaderModifier",
    "HTTPRouteRedirectHostAndStatus",
    "HTTPRouteWeight",
    "HTTPRouteServiceTypes",
    "HTTPRouteHTTPSListener",
    "HTTPRouteNoBackendRefs",
    "HTTPRouteMultipleGateways",
];

/// Core in GATEWAY-GRPC only.
const GRPC_ROUTE: [&str; 4] = [
    "GRPCExactMethodMatching",
    "GRPCRouteHeaderMatching",
    "GRPCRouteListenerHostnameMatching",
    "GRPCRouteWeight",
];

/// Core in GATEWAY-TLS only.
const TLS_ROUTE: [&str; 9] = [
    "TLSRouteSimpleSameNamespace",
    "TLSRouteInvalidReferenceGrant",
    "TLSRouteHostnameIntersection",
    "TLSRouteInvalidBackendRefNonexistent",
    "TLSRouteInvalidBackendRefUnknownKind",
    "TLSRouteInvalidNoMatchingListener",
    "TLSRouteInvalidNoMatchingListenerHostname",
    "TLSRouteListenerPassthroughSupportedKinds",
    "TLSRouteListenerTerminateNotSupported",
];

const MESH_HTTP: [&str; 7] = [
    "MeshBasic",
    "MeshTrafficSplit",
    "MeshHTTPRouteSimpleSameNamespace",
    "MeshHTTPRouteMatching",
    "MeshHTTPRouteWeight",
    "MeshHTTPRouteRedirectHostAndStatus",
    "MeshHTTPRouteRequestHeaderModifier",
];

const MESH_GRPC: [&str; 2] = ["MeshBasic", "MeshGRPCRouteWeight"];

/// Extended in MESH-HTTP at v1.6.1 (the ones the GAMMA runner exercises; none is claimed).
const MESH_EXTENDED: [&str; 3] = ["MeshConsumerRoute", "MeshPorts", "MeshFrontend"];

/// Extended in GATEWAY-HTTP at v1.6.1 (the ones the run exercises; none is claimed).
const HTTP_EXTENDED: [&str; 8] = [
    "HTTPRouteInvalidParentRefNotMatchingListenerPort",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteMethodMatching",
    "HTTPRouteResponseHeaderModifier",
    "HTTPRouteRedirectScheme",
    "HTTPRouteRedirectPort",
    "HTTPRouteRewritePath",
    "HTTPRouteRewriteHost",
];

/// Extended in GATEWAY-HTTP at v1.6.1, reproduced with every case of the upstream test (the
/// extended features Portolan claims are among these; see docs/gateway-api.md).
const HTTP_EXTENDED_FULL: [&str; 9] = [
    "HTTPRouteCORS",
    "HTTPRouteCORSAllowCredentialsBehavior",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteRequestMirror",
    "HTTPRouteRedirectPath",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteBackendRequestHeaderModifier",
];

/// Extended in GATEWAY-HTTP at v1.6.1, features `BackendTLSPolicy` (the first five) and
/// `BackendTLSPolicySANValidation` (the last): claimed.
const BACKEND_TLS: [&str; 6] = [
    "BackendTLSPolicy",
    "BackendTLSPolicyConflictResolution",
    "BackendTLSPolicyInvalidCACertificateRef",
    "BackendTLSPolicyInvalidKind",
    "BackendTLSPolicyObservedGenerationBump",
    "BackendTLSPolicySANValidation",
];

/// Extended in GATEWAY-HTTP at v1.6.1, features `GatewayFrontendClientCertificateValidation`
/// (all four) and `GatewayFrontendClientCertificateValidationInsecureFallback` (the second):
/// claimed. (The last one also needs `ReferenceGrant`; the stored sources do not settle
/// whether it ships in v1.6.1 or only the Invalid*Default* one does: both are counted.)
const FRONTEND_TLS: [&str; 4] = [
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayFrontendInvalidDefaultClientCertificateValidation",
    "GatewayInvalidFrontendClientCertificateValidation",
];

/// ListenerSet tests (feature `ListenerSet`, standard channel): every test of the v1
/// `ListenerSet` kind that the stored upstream sources hold and whose features Portolan
/// claims (ListenerSetNonDisruptiveConfig also needs `GatewayNonDisruptiveConfig`, not
/// claimed, so the suite skips it). ListenerSetProtocolConflict,
/// ListenerSetAllowedRoutesSupportedKinds and ListenerSetDomainNameConflict exist there only
/// as `XListenerSet` revisions (feature `GatewayListenerSet`), which the v1 tests replace:
/// ListenerSetListenerPrecedence, ListenerSetProtocolAndRouteKindConflicts and
/// ListenerSetHostnameConflict. The feature is claimed.
const LISTENER_SET: [&str; 14] = [
    "ListenerSetHTTPRouting",
    "ListenerSetGatewayParentSectionNameNotFound",
    "ListenerSetListenerPrecedence",
    "ListenerSetAllowedRoutesNamespaces",
    "ListenerSetReferenceGrant",
    "ListenerSetUpdateListenerHostname",
    "ListenerSetHostnameConflict",
    "ListenerSetDefaultNotAllowed",
    "ListenerSetAllowedNamespaceSame",
    "ListenerSetAllowedNamespaceSelector",
    "ListenerSetParentNotAccepted",
    "ListenerSetProtocolAndRouteKindConflicts",
    "ListenerSetMixedProtocolConflict",
    "ListenerSetDualParentRefIndependence",
];

/// TCPRoute (experimental channel): upstream's TCPRoute tests are provisional (not in any
/// profile of the v1.6.1 reports), so they are counted apart and claimed as experimental
/// only. The names follow upstream's provisional tests; the invalid-ref ones mirror the
/// TLSRoute tests of the same name.
const TCP_ROUTE_EXPERIMENTAL: [&str; 7] = [
    "TCPRouteSimpleSameNamespace",
    "TCPRouteParentRefPortAndSectionName",
    "TCPRouteWeightedRouting",
    "TCPRouteParentRefAttachAll",
    "TCPRouteReferenceGrant",
    "TCPRouteInvalidBackendRefNonexistent",
    "TCPRouteInvalidBackendRefUnknownKind",
];

/// UDPRoute (experimental channel): upstream has one test, `UDPRoute` (udproute-simple: a
/// DNS query through a UDP listener to CoreDNS), in no profile of the v1.6.1 reports; it is
/// reproduced with an echo backend, with Portolan's own checks beside it (weights, a route
/// the listener does not admit, a missing backend, a missing backend's share dropped, a TCP
/// listener on the same port number).
const UDP_ROUTE_EXPERIMENTAL: [&str; 6] = [
    "UDPRoute",
    "Portolan:UDPRouteWeightedRouting",
    "Portolan:UDPRouteNotAllowedByListeners",
    "Portolan:UDPRouteInvalidBackendRefNonexistent",
    "Portolan:UDPRouteInvalidBackendShareDropped",
    "Portolan:UDPRouteTCPListenerSamePort",
];

/// Upstream tests that are not in v1.6.1 (added in 1.7, or open pull requests).
const NOT_IN_V1_6_1: [&str; 2] = [
    "GRPCRouteRequestHeaderModifier",
    "GatewayHTTPSAndTLSPassthroughSamePort",
];

/// A profile's core tests.
struct Profile {
    name: &'static str,
    tests: Vec<&'static str>,
    note: &'static str,
}

fn profiles() -> Vec<Profile> {
    let with = |route: &[&'static str]| GATEWAY_ONLY.iter().chain(route).copied().collect();
    vec![
        Profile {
            name: "GATEWAY-HTTP",
            tests: with(&HTTP_ROUTE),
            note: "",
        },
        Profile {
            name: "GATEWAY-GRPC",
            tests: with(&GRPC_ROUTE),
            note: "",
        },
        Profile {
            name: "GATEWAY-TLS",
            tests: with(&TLS_ROUTE),
            note: "",
        },
        Profile {
            name: "MESH-HTTP",
            tests: MESH_HTTP.to_vec(),
            note: "",
        },
        Profile {
            name: "MESH-GRPC",
            tests: MESH_GRPC.to_vec(),
            note: "",
        },
    ]
}

/// Scenario outcomes, each for the upstream tests (or Portolan's own checks) it reproduces.
#[derive(Default)]
pub(crate) struct Board {
    /// (scenario, upstream tests, result).
    results: Vec<(&'static str, &'static [&'static str], Result<(), String>)>,
    /// The GAMMA runner's board (MESH profiles only); else the Gateway runner's (the MESH
    /// lines point at the GAMMA runner).
    mesh: bool,
}

// === impl Board ===

impl Board {
    /// The board of the GAMMA runner (tests/e2e/cases/gateway_api_mesh.rs).
    pub(crate) fn mesh() -> Self {
        Self {
            mesh: true,
            ..Self::default()
        }
    }

    /// Records one scenario. Every upstream name must be one of the catalogue's, so a typo
    /// cannot silently drop a test from the counts.
    pub(crate) fn record(
        &mut self,
        scenario: &'static str,
        tests: &'static [&'static str],
        outcome: std::thread::Result<anyhow::Result<()>>,
    ) {
        for t in tests {
            assert!(
                Self::known(t) || t.starts_with("Portolan:"),
                "{scenario}: {t} is not a v1.6.1 test the board knows"
            );
        }
        let result = match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(panic) => Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".to_string())),
        };
        eprintln!(
            "{scenario} {tests:?}: {}",
            if result.is_ok() { "pass" } else { "FAIL" }
        );
        self.results.push((scenario, tests, result));
    }

    fn known(t: &str) -> bool {
        profiles().iter().any(|p| p.tests.contains(&t))
            || HTTP_EXTENDED.contains(&t)
            || BACKEND_TLS.contains(&t)
            || FRONTEND_TLS.contains(&t)
            || LISTENER_SET.contains(&t)
            || HTTP_EXTENDED_FULL.contains(&t)
            || TCP_ROUTE_EXPERIMENTAL.contains(&t)
            || UDP_ROUTE_EXPERIMENTAL.contains(&t)
            || NOT_IN_V1_6_1.contains(&t)
            || MESH_EXTENDED.contains(&t)
    }

    /// `Some(passed)` when some scenario reproduces `test`; it passes when all of them did.
    fn outcome(&self, test: &str) -> Option<bool> {
        let of: Vec<_> = self
            .results
            .iter()
            .filter(|r| r.1.contains(&test))
            .collect();
        (!of.is_empty()).then(|| of.iter().all(|r| r.2.is_ok()))
    }

    /// One line per set of tests: `LABEL: X/TOTAL reproduced, Y passed`.
    fn line(&self, label: &str, tests: &[&str], total: bool, note: &str) -> String {
        let outcomes: Vec<_> = tests.iter().filter_map(|t| self.outcome(t)).collect();
        let passed = outcomes.iter().filter(|p| **p).count();
        let of = if total {
            format!("/{}", tests.len())
        } else {
            String::new()
        };
        format!(
            "{label}: {}{of} reproduced, {passed} passed{note}\n",
            outcomes.len()
        )
    }

    /// Per-profile lines, the tests still missing, and every failure with its reason.
    pub(crate) fn report(&self) -> String {
        let mut out = String::new();
        let mut missing = String::new();
        for p in profiles() {
            if p.name.starts_with("MESH") != self.mesh {
                if !self.mesh {
                    out.push_str(&format!(
                        "{} core: see the GAMMA runner (gateway_api_mesh)\n",
                        p.name
                    ));
                }
                continue;
            }
            out.push_str(&self.line(&format!("{} core", p.name), &p.tests, true, p.note));
            let absent: Vec<_> = p
                .tests
                .iter()
                .filter(|t| self.outcome(t).is_none())
                .copied()
                .collect();
            if !absent.is_empty() && p.note.is_empty() {
                missing.push_str(&format!("{} missing: {}\n", p.name, absent.join(", ")));
            }
        }
        if self.mesh {
            return self.finish_mesh(out, missing);
        }
        let ext: Vec<_> = HTTP_EXTENDED
            .iter()
            .filter(|t| self.outcome(t).is_some())
            .copied()
            .collect();
        out.push_str(&self.line("GATEWAY-HTTP extended (not claimed)", &ext, false, ""));
        out.push_str(&self.line(
            "GATEWAY-HTTP extended (every case reproduced)",
            &HTTP_EXTENDED_FULL,
            true,
            "",
        ));
        out.push_str(&self.line(
            "GATEWAY-HTTP extended, claimed (BackendTLSPolicy, BackendTLSPolicySANValidation)",
            &BACKEND_TLS,
            true,
            "",
        ));
        out.push_str(&self.line(
            "GATEWAY-HTTP extended, claimed (GatewayFrontendClientCertificateValidation, ...InsecureFallback)",
            &FRONTEND_TLS,
            true,
            "",
        ));
        out.push_str(&self.line(
            "ListenerSet, claimed (ListenerSet)",
            &LISTENER_SET,
            true,
            "",
        ));
        out.push_str(&self.line(
            "TCPRoute experimental (provisional upstream)",
            &TCP_ROUTE_EXPERIMENTAL,
            true,
            "",
        ));
        out.push_str(&self.line(
            "UDPRoute experimental (upstream's one test, in no profile, and Portolan's own)",
            &UDP_ROUTE_EXPERIMENTAL,
            true,
            "",
        ));
        out.push_str(&self.line(
            "not in v1.6.1 (later or open upstream)",
            &NOT_IN_V1_6_1,
            false,
            "",
        ));
        self.finish(out, missing)
    }

    /// The GAMMA runner's report, after its profile lines.
    fn finish_mesh(&self, mut out: String, missing: String) -> String {
        out.push_str(&self.line("MESH-HTTP extended (not claimed)", &MESH_EXTENDED, true, ""));
        self.finish(out, missing)
    }

    /// Portolan's own checks, what is missing and every failure.
    fn finish(&self, mut out: String, missing: String) -> String {
        let own: Vec<_> = self
            .results
            .iter()
            .filter(|r| r.1.iter().all(|t| t.starts_with("Portolan:")))
            .collect();
        let own_passed = own.iter().filter(|r| r.2.is_ok()).count();
        out.push_str(&format!(
            "Portolan's own (not upstream): {} checks, {own_passed} passed\n",
            own.len()
        ));
        out.push_str(&missing);
        for (scenario, tests, r) in &self.results {
            if let Err(e) = r {
                out.push_str(&format!("FAILED {scenario} {tests:?}: {e}\n"));
            }
        }
        out
    }

    pub(crate) fn all_passed(&self) -> bool {
        self.results.iter().all(|r| r.2.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denominators_are_the_v1_6_1_reports() {
        let totals: Vec<_> = profiles().iter().map(|p| p.tests.len()).collect();
        assert_eq!(totals, [37, 15, 20, 7, 2]);
    }
}
