//! Which proxy groups a client may ask for, decided by its TLS client certificate.
//!
//! The rule ([`Authz::ClusterInSan`], the default with mutual TLS): a client may open streams only
//! for a `node.cluster` (empty counts as `default`) that equals one of its certificate's DNS SANs
//! or the last path segment of one of its URI SANs (`spiffe://td/ns/shop/sa/web` allows `web`).
//! A stream asking for any other group ends with `PERMISSION_DENIED`. Without a client
//! certificate (plaintext or server-only TLS) there is no identity and nothing to check.

use std::collections::BTreeSet;

use tonic::Status;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Whether client identities restrict proxy groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Authz {
    /// Any authenticated client may ask for any group.
    Off,
    /// `node.cluster` must be named by the client certificate (see the module doc).
    #[default]
    ClusterInSan,
}

/// What a verified client certificate says about its holder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// DNS subject alternative names.
    pub dns: Vec<String>,
    /// URI subject alternative names.
    pub uris: Vec<String>,
}

// === impl PeerIdentity ===

impl PeerIdentity {
    /// Reads the SANs of a DER certificate; `None` if it does not parse (rustls already
    /// verified it, so that does not happen in practice).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut id = Self::default();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => id.dns.push((*d).to_string()),
                    GeneralName::URI(u) => id.uris.push((*u).to_string()),
                    _ => {}
                }
            }
        }
        Some(id)
    }

    /// The proxy groups (node clusters) this identity may ask for under [`Authz::ClusterInSan`].
    pub fn allowed_clusters(&self) -> BTreeSet<&str> {
        let from_uris = self.uris.iter().filter_map(|u| {
            let path = u.split_once("://").map_or(u.as_str(), |(_, rest)| rest);
            path.rsplit('/').next().filter(|s| !s.is_empty())
        });
        self.dns
            .iter()
            .map(String::as_str)
            .chain(from_uris)
            .collect()
    }
}

// === impl Authz ===

impl Authz {
    /// Checks that `peer` may ask for proxy group `cluster` (the node's cluster, `default` if
    /// empty); `PERMISSION_DENIED` naming both otherwise.
    pub fn check(self, peer: Option<&PeerIdentity>, cluster: &str) -> Result<(), Status> {
        let (Authz::ClusterInSan, Some(peer)) = (self, peer) else {
            return Ok(());
        };
        let allowed = peer.allowed_clusters();
        if allowed.contains(cluster) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.into_iter().collect();
        Err(Status::permission_denied(format!(
            "client certificate does not allow proxy group (node.cluster) {cluster:?}; it allows {names:?} (DNS SANs and the last path segment of URI SANs)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(dns: &[&str], uris: &[&str]) -> PeerIdentity {
        PeerIdentity {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            uris: uris.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn dns_sans_name_groups() {
        let peer = id(&["web", "batch"], &[]);
        assert!(Authz::ClusterInSan.check(Some(&peer), "web").is_ok());
        assert!(Authz::ClusterInSan.check(Some(&peer), "batch").is_ok());
        let err = Authz::ClusterInSan
            .check(Some(&peer), "ingress")
            .expect_err("not named");
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(err.message().contains("\"ingress\""), "{}", err.message());
    }

    #[test]
    fn the_last_segment_of_a_spiffe_uri_names_a_group() {
        let peer = id(&[], &["spiffe://cluster.local/ns/shop/sa/web"]);
        assert_eq!(
            peer.allowed_clusters().into_iter().collect::<Vec<_>>(),
            ["web"]
        );
        assert!(Authz::ClusterInSan.check(Some(&peer), "web").is_ok());
        assert!(Authz::ClusterInSan.check(Some(&peer), "shop").is_err());
        assert!(Authz::ClusterInSan.check(Some(&peer), "sa").is_err());
    }

    #[test]
    fn a_uri_ending_in_a_slash_names_nothing() {
        let peer = id(&[], &["spiffe://cluster.local/"]);
        assert!(peer.allowed_clusters().is_empty());
        assert!(Authz::ClusterInSan.check(Some(&peer), "").is_err());
    }

    #[test]
    fn off_or_no_certificate_allows_everything() {
        let peer = id(&["web"], &[]);
        assert!(Authz::Off.check(Some(&peer), "ingress").is_ok());
        assert!(Authz::ClusterInSan.check(None, "ingress").is_ok());
    }

    #[test]
    fn reads_sans_from_a_certificate() {
        use rcgen::{CertificateParams, KeyPair, SanType};
        let mut params = CertificateParams::new(vec!["web".to_string()]).expect("params");
        params.subject_alt_names.push(SanType::URI(
            "spiffe://cluster.local/ns/shop/sa/batch"
                .try_into()
                .expect("ia5"),
        ));
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let peer = PeerIdentity::from_der(cert.der()).expect("parses");
        assert_eq!(peer.dns, ["web"]);
        assert_eq!(peer.uris, ["spiffe://cluster.local/ns/shop/sa/batch"]);
        assert_eq!(
            peer.allowed_clusters().into_iter().collect::<Vec<_>>(),
            ["batch", "web"]
        );
        assert!(PeerIdentity::from_der(b"not a certificate").is_none());
    }
}
