//! The root of trust: a CA certificate and its key, loaded from PEM files or generated (and
//! then persisted, so a restart keeps the trust every proxy already holds).

use crate::error::CaError;
use crate::spiffe::SpiffeId;
use crate::workload::WorkloadCert;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use std::path::Path;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

/// File names of a persisted root under `--ca-dir`.
pub const ROOT_CERT_FILE: &str = "ca.crt";
pub const ROOT_KEY_FILE: &str = "ca.key";

/// Lifetime of a generated root.
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far a workload certificate's `notBefore` lies before its issuance (clock skew).
const BACKDATE: Duration = Duration::from_secs(60);

/// A certificate authority for one trust domain.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    trust_domain: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

// === impl Authority ===

impl Authority {
    /// A new self-signed root (ECDSA P-256, ten years).
    pub fn generate(trust_domain: &str, now: SystemTime) -> Result<Self, CaError> {
        let invalid = |e: rcgen::Error| CaError::InvalidRoot {
            what: "generating the root".to_string(),
            message: e.to_string(),
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            DnType::CommonName,
            format!("portolan mesh CA {trust_domain}"),
        );
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::from(now - BACKDATE);
        params.not_after = OffsetDateTime::from(now + ROOT_LIFETIME);
        let key = KeyPair::generate().map_err(invalid)?;
        let cert = params.self_signed(&key).map_err(invalid)?;
        Ok(Self {
            root_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            trust_domain: trust_domain.to_string(),
        })
    }

    /// A root from PEM: the CA certificate and its private key (PKCS#8, PKCS#1 or SEC1). The
    /// certificate must be a CA and the key must be its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str, trust_domain: &str) -> Result<Self, CaError> {
        let invalid = |what: &str, message: String| CaError::InvalidRoot {
            what: what.to_string(),
            message,
        };
        let key = KeyPair::from_pem(key_pem).map_err(|e| invalid("CA key", e.to_string()))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| invalid("CA certificate", format!("not PEM: {e}")))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| invalid("CA certificate", format!("not X.509: {e}")))?;
        if !cert.is_ca() {
            return Err(invalid(
                "CA certificate",
                "basicConstraints does not allow it to sign (CA:FALSE)".to_string(),
            ));
        }
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(invalid(
                "CA key",
                "does not match the CA certificate's public key".to_string(),
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| invalid("CA certificate", e.to_string()))?;
        Ok(Self {
            issuer,
            root_pem: cert_pem.to_string(),
            trust_domain: trust_domain.to_string(),
        })
    }

    /// Loads `dir/ca.crt` and `dir/ca.key`, or generates a root and writes them there (the
    /// key with mode 0600) when neither exists.
    pub fn load_or_generate(
        dir: &Path,
        trust_domain: &str,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        let (cert_path, key_path) = (dir.join(ROOT_CERT_FILE), dir.join(ROOT_KEY_FILE));
        if cert_path.exists() || key_path.exists() {
            return Self::from_files(&cert_path, &key_path, trust_domain);
        }
        let ca = Self::generate(trust_domain, now)?;
        let write = |path: &Path, text: &str, mode: u32| {
            write_file(path, text, mode).map_err(|source| CaError::Write {
                path: path.to_path_buf(),
                source,
            })
        };
        std::fs::create_dir_all(dir).map_err(|source| CaError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        write(&key_path, &ca.issuer.key().serialize_pem(), 0o600)?;
        write(&cert_path, &ca.root_pem, 0o644)?;
        Ok(ca)
    }

    /// Reads a root from PEM files.
    pub fn from_files(cert: &Path, key: &Path, trust_domain: &str) -> Result<Self, CaError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CaError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        Self::from_pem(&read(cert)?, &read(key)?, trust_domain)
    }

    /// The root certificate (PEM): what proxies verify peers with.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root's private key (PEM, PKCS#8): what persisting the root writes.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The root's fingerprint: see [`fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.root_pem)
    }

    /// Issues a certificate for `id` valid from `now` (backdated a minute for clock skew) for
    /// `lifetime`: a fresh ECDSA P-256 key, the SPIFFE ID as the only SAN (URI), usable as TLS
    /// client and server.
    pub fn issue(
        &self,
        id: &SpiffeId,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<WorkloadCert, CaError> {
        let failed = |e: rcgen::Error| CaError::Issue {
            id: id.uri(),
            message: e.to_string(),
        };
        let mut params = CertificateParams::default();
        let uri = id.uri().try_into().map_err(failed)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params
            .distinguished_name
            .push(DnType::OrganizationName, id.trust_domain.clone());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = OffsetDateTime::from(now.checked_sub(BACKDATE).unwrap_or(now));
        params.not_after = OffsetDateTime::from(now + lifetime);
        let key = KeyPair::generate().map_err(failed)?;
        params.serial_number = Some(serial_from(&key));
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(WorkloadCert {
            id: id.clone(),
            root: self.fingerprint(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issued_at: now,
            expires_at: now + lifetime,
        })
    }
}

/// The SHA-256 of a certificate's DER, first 16 bytes in hex: how operators and `/debug/ca`
/// tell roots apart (the PEM text itself when it does not parse).
pub fn fingerprint(cert_pem: &str) -> String {
    let der = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map(|(_, pem)| pem.contents)
        .unwrap_or_else(|_| cert_pem.as_bytes().to_vec());
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    digest
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A positive 16-byte serial from the new key's public point (random per key).
fn serial_from(key: &KeyPair) -> SerialNumber {
    let raw = key.public_key_raw();
    let mut bytes: Vec<u8> = raw.iter().skip(1).take(16).copied().collect();
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f) | 0x01;
    }
    SerialNumber::from_slice(&bytes)
}

fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(text.as_bytes())
}
