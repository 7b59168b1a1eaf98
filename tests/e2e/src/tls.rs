//! TLS for gateway tests: a throwaway CA made in the test, server certificates it signs,
//! `kubernetes.io/tls` Secret manifests holding them, and an HTTPS client that trusts only that
//! CA and sends SNI for a hostname while connecting to 127.0.0.1 (or, with [`https_get_at`],
//! to any address, with a Host header that may differ from the SNI).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

/// A certificate authority that exists only for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key, PEM, plus the certificate's DER to compare with what a
/// server presents.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

/// What came back over HTTPS.
#[derive(Debug)]
pub struct HttpsReply {
    pub status: u16,
    /// Response header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The leaf certificate the server presented (DER).
    pub peer_certificate: Vec<u8>,
}

// === impl TestCa ===

impl TestCa {
    pub fn new() -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portolan e2e test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for these DNS names (`*.example.com` allowed), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<ServerCert> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &*self.issuer)?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }
}

impl TestCa {
    /// A server certificate with these DNS and URI SANs (`spiffe://...`), signed by this CA.
    pub fn issue_with_uris(&self, dns: &[&str], uris: &[&str]) -> anyhow::Result<ServerCert> {
        let mut params =
            CertificateParams::new(dns.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        for uri in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*uri).try_into()?));
        }
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            dns.first().copied().unwrap_or("portolan e2e server"),
        );
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &*self.issuer)?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }

    /// A client certificate (client-auth usage) with these DNS and URI SANs.
    pub fn issue_client(&self, dns: &[&str], uris: &[&str]) -> anyhow::Result<ServerCert> {
        let mut params =
            CertificateParams::new(dns.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        for uri in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*uri).try_into()?));
        }
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portolan e2e client");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &*self.issuer)?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }

    /// The CA certificate, DER (to trust it in a rustls client).
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert_der()
    }
}

// === impl ServerCert ===

impl ServerCert {
    /// A `kubernetes.io/tls` Secret holding this certificate and key (base64 `data`).
    pub fn secret_yaml(&self, namespace: &str, name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {crt}\n  tls.key: {key}\n",
            crt = B64.encode(&self.cert_pem),
            key = B64.encode(&self.key_pem),
        )
    }
}

// === impl HttpsReply ===

impl HttpsReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET https://{sni}{path}` sent to 127.0.0.1:{port}: SNI and Host are `sni`, and the server
/// must present a certificate for `sni` that chains to `ca` (nothing else is trusted).
pub async fn https_get(
    ca: &TestCa,
    port: u16,
    sni: &str,
    path: &str,
) -> anyhow::Result<HttpsReply> {
    https_request(ca, port, sni, "GET", path, &[]).await
}

/// Like [`https_get`], with any method and a body (sent with `content-type: application/json`
/// when not empty).
pub async fn https_request(
    ca: &TestCa,
    port: u16,
    sni: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<HttpsReply> {
    let to = HttpsTarget {
        addr: "127.0.0.1",
        port,
        sni,
        host: sni,
    };
    https_exchange(ca, &to, method, path, body, None).await
}

/// Where an HTTPS request goes: the address and port connected to, the SNI name (the server
/// must present a certificate for it) and the Host header, which may differ from it.
pub struct HttpsTarget<'a> {
    pub addr: &'a str,
    pub port: u16,
    pub sni: &'a str,
    pub host: &'a str,
}

/// `GET {path}` to `to`, trusting only `ca`.
pub async fn https_get_at(
    ca: &TestCa,
    to: &HttpsTarget<'_>,
    path: &str,
) -> anyhow::Result<HttpsReply> {
    https_exchange(ca, to, "GET", path, &[], None).await
}

/// Like [`https_get_at`], presenting `client` (a certificate and its key) when the server
/// asks for a client certificate (`None`: none).
pub async fn https_get_as(
    ca: &TestCa,
    to: &HttpsTarget<'_>,
    path: &str,
    client: Option<&ServerCert>,
) -> anyhow::Result<HttpsReply> {
    https_exchange(ca, to, "GET", path, &[], client).await
}

async fn https_exchange(
    ca: &TestCa,
    to: &HttpsTarget<'_>,
    method: &str,
    path: &str,
    body: &[u8],
    client: Option<&ServerCert>,
) -> anyhow::Result<HttpsReply> {
    let (port, sni, host) = (to.port, to.sni, to.host);
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der())?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        Some(c) => {
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())?;
            let chain = vec![CertificateDer::from(c.cert_der.clone())];
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect((to.addr, port)).await?;
    let name = ServerName::try_from(sni.to_string())?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let peer_certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\nuser-agent: portolan-e2e\r\n{content}\r\n"
    );
    tls.write_all(request.as_bytes()).await?;
    tls.write_all(body).await?;
    let mut raw = Vec::new();
    if let Err(e) = tls.read_to_end(&mut raw).await {
        // A peer that closes without close_notify still sent a whole response.
        anyhow::ensure!(
            e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty(),
            "reading the HTTPS response: {e}"
        );
    }
    let (status, headers, body) = parse_response(&raw)?;
    Ok(HttpsReply {
        status,
        headers,
        body,
        peer_certificate,
    })
}

type Parsed = (u16, Vec<(String, String)>, String);

/// Splits a raw HTTP/1.1 response (read to EOF) into status, headers and body.
fn parse_response(raw: &[u8]) -> anyhow::Result<Parsed> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of headers in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, headers, body))
}

/// Decodes a chunked body (enough for test responses: no trailers, no extensions).
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
