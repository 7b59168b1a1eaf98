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
//! `outboundPort`, `appProtocol`) refine the proxy group key
//! (`;ns=NS;sa=SA;app=PORT;in=PORT;out=PORT;proto=P`), so a
//! workload certificate is only ever in the snapshot of the group of its own identity.

use crate::authz::PeerIdentity;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;

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

    /// `group` refined by the identity and workload settings (unchanged without an identity).
    pub fn refine_group(&self, group: &str, peer: Option<&PeerIdentity>, node: &Node) -> String {
        let Some(id) = self.identify(peer, node) else {
            return group.to_string();
        };
        let mut key = group.to_string();
        for (k, v) in [
            ("ns", Some(id.namespace)),
            ("sa", Some(id.service_account)),
            ("app", metadata_port(node, "appPort")),
            ("in", metadata_port(node, "inboundPort")),
            ("out", metadata_port(node, "outboundPort")),
            ("proto", metadata_string(node, "appProtocol")),
        ] {
            if let Some(v) = v {
                key.push(';');
                key.push_str(k);
                key.push('=');
                key.push_str(&crate::group::escape(&v));
            }
        }
        key
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
fn metadata_port(node: &Node, field: &str) -> Option<String> {
    let port = match node.metadata.as_ref()?.fields.get(field)?.kind.as_ref()? {
        Kind::StringValue(s) => s.parse::<u16>().ok()?,
        Kind::NumberValue(n) if n.fract() == 0.0 && (1.0..=65535.0).contains(n) => *n as u16,
        _ => return None,
    };
    (port > 0).then(|| port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{Struct, Value};

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
            cert_mode().refine_group("web", Some(&p), &n),
            "web;ns=shop;sa=web;app=8080;in=15006"
        );
        // No certificate: no identity, whatever the metadata says.
        assert_eq!(cert_mode().refine_group("web", None, &n), "web");
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
        assert_eq!(
            mode.refine_group("web", None, &n),
            "web;ns=shop;sa=a%3Bb;proto=tcp"
        );
    }
}
