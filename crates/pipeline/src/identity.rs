//! Workload identity: which mesh identity (namespace and service account) a proxy gets, from
//! what it proves, never from what it claims.
//!
//! With [`IdentityMode::Certificate`] (the default) the identity is the SPIFFE ID
//! (`spiffe://TRUST_DOMAIN/ns/NS/sa/SA`) in a URI SAN of the proxy's verified xDS client
//! certificate, in Portolan's trust domain; a proxy without one has no mesh identity (no
//! workload certificate, no inbound listener). [`IdentityMode::InsecureNodeMetadata`] takes it
//! from `node.metadata.namespace` / `node.metadata.serviceAccount` instead: any client can claim
//! any identity (and receive its private key), so it is for development only.
//!
//! The identity and the workload's settings (`node.metadata.appPort`, `inboundPort`,
//! `outboundPort`, `appProtocol`) refine the proxy group key ([`GroupKey::workload`], see
//! [`crate::grouping`]), so a workload certificate is only ever in the snapshot of the group of
//! its own identity.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
#[cfg(doc)]
use portolan_model::GroupKey;
use portolan_model::group::WorkloadKey;
use portolan_xds::PeerIdentity;

/// Where a proxy's workload identity comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityMode {
    /// No mesh identities.
    Off,
    /// The SPIFFE URI SAN of the verified xDS client certificate, in this trust domain.
    Certificate { trust_domain: String },
    /// Insecure, development only: the node's metadata claims the identity (a verified
    /// certificate's SPIFFE ID still wins).
    InsecureNodeMetadata { trust_domain: String },
}

/// A proxy's mesh identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadIdentity {
    pub namespace: String,
    pub service_account: String,
}

// === impl IdentityMode ===

impl Default for IdentityMode {
    /// Certificates in the trust domain `cluster.local`.
    fn default() -> Self {
        IdentityMode::Certificate {
            trust_domain: "cluster.local".to_string(),
        }
    }
}

impl IdentityMode {
    /// The identity of a proxy that presented `peer` (if any) and sent `node`.
    pub fn identify(&self, peer: Option<&PeerIdentity>, node: &Node) -> Option<WorkloadIdentity> {
        match self {
            IdentityMode::Off => None,
            IdentityMode::Certificate { trust_domain } => from_certificate(peer, trust_domain),
            IdentityMode::InsecureNodeMetadata { trust_domain } => {
                from_certificate(peer, trust_domain).or_else(|| from_metadata(node))
            }
        }
    }

    /// The workload a proxy that presented `peer` (if any) and sent `node` is in: its
    /// identity and workload settings; `None` without an identity.
    pub fn workload(&self, peer: Option<&PeerIdentity>, node: &Node) -> Option<WorkloadKey> {
        let id = self.identify(peer, node)?;
        Some(WorkloadKey {
            namespace: id.namespace,
            service_account: id.service_account,
            app_port: metadata_port(node, "appPort"),
            inbound_port: metadata_port(node, "inboundPort"),
            outbound_port: metadata_port(node, "outboundPort"),
            protocol: metadata_string(node, "appProtocol"),
        })
    }
}

fn from_certificate(peer: Option<&PeerIdentity>, trust_domain: &str) -> Option<WorkloadIdentity> {
    let prefix = format!("spiffe://{trust_domain}/ns/");
    peer?.uris.iter().find_map(|uri| {
        let rest = uri.strip_prefix(&prefix)?;
        let (namespace, sa) = rest.split_once("/sa/")?;
        let ok = |s: &str| !s.is_empty() && !s.contains('/');
        (ok(namespace) && ok(sa)).then(|| WorkloadIdentity {
            namespace: namespace.to_string(),
            service_account: sa.to_string(),
        })
    })
}

fn from_metadata(node: &Node) -> Option<WorkloadIdentity> {
    let namespace = metadata_string(node, "namespace")?;
    let service_account = metadata_string(node, "serviceAccount")?;
    let ok = |s: &str| !s.is_empty() && !s.contains('/');
    (ok(&namespace) && ok(&service_account)).then_some(WorkloadIdentity {
        namespace,
        service_account,
    })
}

fn metadata_string(node: &Node, field: &str) -> Option<String> {
    match node.metadata.as_ref()?.fields.get(field)?.kind.as_ref()? {
        Kind::StringValue(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A port in the metadata, as a number or a string of digits.
fn metadata_port(node: &Node, field: &str) -> Option<u16> {
    let port = match node.metadata.as_ref()?.fields.get(field)?.kind.as_ref()? {
        Kind::StringValue(s) => s.parse::<u16>().ok()?,
        Kind::NumberValue(n) if n.fract() == 0.0 && (1.0..=65535.0).contains(n) => *n as u16,
        _ => return None,
    };
    (port > 0).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grouping::ProxyGrouping;
    use envoy_types::pb::google::protobuf::{Struct, Value};

    /// The group key of `node` (whose cluster is `web`) as the hook makes it with `mode`.
    fn key(mode: &IdentityMode, peer: Option<&PeerIdentity>, node: &Node) -> String {
        ProxyGrouping::new(mode.clone()).key(node, peer).to_string()
    }

    fn node(fields: &[(&str, Kind)]) -> Node {
        Node {
            cluster: "web".into(),
            metadata: Some(Struct {
                fields: fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value {
                                kind: Some(v.clone()),
                            },
                        )
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> Kind {
        Kind::StringValue(v.into())
    }

    fn peer(uris: &[&str]) -> PeerIdentity {
        PeerIdentity {
            dns: vec![],
            uris: uris.iter().map(|u| u.to_string()).collect(),
        }
    }

    fn cert_mode() -> IdentityMode {
        IdentityMode::Certificate {
            trust_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn the_certificate_names_the_identity_and_metadata_cannot_override_it() {
        let n = node(&[
            ("namespace", s("other")),
            ("serviceAccount", s("admin")),
            ("appPort", Kind::NumberValue(8080.0)),
            ("inboundPort", s("15006")),
        ]);
        let p = peer(&["spiffe://cluster.local/ns/shop/sa/web"]);
        assert_eq!(
            key(&cert_mode(), Some(&p), &n),
            "web;ns=shop;sa=web;app=8080;in=15006"
        );
        // No certificate: no identity, whatever the metadata says.
        assert_eq!(key(&cert_mode(), None, &n), "web");
    }

    #[test]
    fn other_trust_domains_and_shapes_give_no_identity() {
        let n = node(&[]);
        for uri in [
            "spiffe://evil.example/ns/shop/sa/web",
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns/shop/sa/",
            "spiffe://cluster.local/ns/a/b/sa/web",
        ] {
            assert_eq!(cert_mode().identify(Some(&peer(&[uri])), &n), None, "{uri}");
        }
        assert_eq!(
            IdentityMode::Off.identify(Some(&peer(&["spiffe://cluster.local/ns/a/sa/b"])), &n),
            None
        );
    }

    #[test]
    fn insecure_mode_reads_the_metadata() {
        let mode = IdentityMode::InsecureNodeMetadata {
            trust_domain: "cluster.local".into(),
        };
        let n = node(&[
            ("namespace", s("shop")),
            ("serviceAccount", s("a;b")),
            ("appProtocol", s("tcp")),
        ]);
        assert_eq!(key(&mode, None, &n), "web;ns=shop;sa=a%3Bb;proto=tcp");
    }
}
