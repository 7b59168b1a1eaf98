//! Test support: a throwaway CA and certificate files, a webhook served over real HTTPS on a
//! loopback port, an HTTPS client that trusts only the test CA, and AdmissionReview builders.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use portolan_api::Resource;
use portolan_model::{Index, Object, convert};
use portolan_webhook::{Admission, Certificates, DryRun};
use portolan_xds::{TlsFiles, TlsReloader};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

/// A CA made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and key, PEM, and the certificate's DER.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        Self { issuer }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn issue(&self, name: &str) -> Pair {
        let params = CertificateParams::new(vec![name.to_string()]).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &*self.issuer).expect("signs");
        Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }
}

/// Writes the pair to `dir/tls.crt` and `dir/tls.key` (replacing them atomically).
pub fn write_pair(dir: &Path, pair: &Pair) -> TlsFiles {
    for (name, text) in [("tls.crt", &pair.cert_pem), ("tls.key", &pair.key_pem)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
    TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        client_ca: None,
    }
}

/// A model object from a manifest (which must be valid).
pub fn object(manifest: Value) -> Object {
    let resource = Resource::decode(manifest)
        .expect("decodes")
        .expect("a kind Portolan reads");
    let errors = portolan_api::validate::validate(&resource);
    assert!(errors.is_empty(), "fixture is invalid: {errors:?}");
    convert::to_object(&resource)
}

/// An index holding these manifests.
pub fn index(manifests: Vec<Value>) -> Arc<Mutex<Index>> {
    let mut index = Index::new();
    for m in manifests {
        index.apply(object(m));
    }
    Arc::new(Mutex::new(index))
}

/// A webhook served over HTTPS on a loopback port.
pub struct Served {
    pub port: u16,
    pub ca: TestCa,
    pub tls: Arc<TlsReloader>,
    pub dir: tempfile::TempDir,
}

/// Serves a webhook whose dry run reads `index`, with a certificate for `localhost`.
pub async fn serve(index: Arc<Mutex<Index>>) -> Served {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_pair(dir.path(), &ca.issue("localhost"));
    let alpn = vec![portolan_webhook::server::ALPN_HTTP1.to_vec()];
    let tls = TlsReloader::with_alpn(files, alpn).expect("loads the certificate");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let port = listener.local_addr().expect("address").port();
    let admission = Admission::new(DryRun::new(
        index,
        None,
        portolan_translate::Options::default(),
    ));
    let certificates = Certificates::Files(tls.clone());
    tokio::spawn(portolan_webhook::serve(
        listener,
        certificates,
        admission,
        std::future::pending(),
    ));
    Served { port, ca, tls, dir }
}

/// What came back over HTTPS.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// The leaf certificate the server presented, DER.
    pub peer_certificate: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request on a new TLS connection to `localhost:port`, trusting only `ca`.
pub async fn request(
    ca: &TestCa,
    port: u16,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<Reply> {
    request_to(ca.der(), "localhost", port, method, path, body).await
}

/// One request on a new TLS connection to 127.0.0.1:`port` with SNI `sni`; the server must
/// present a certificate for `sni` chaining to `ca`.
pub async fn request_to(
    ca: CertificateDer<'static>,
    sni: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<Reply> {
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let provider = Arc::new(crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string())?, tcp)
        .await?;
    let peer_certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("{sni}:{port}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        peer_certificate,
    })
}

/// `POST /validate` with this AdmissionReview.
pub async fn review(served: &Served, review: &Value) -> Reply {
    let body = serde_json::to_vec(review).expect("serializes");
    request(&served.ca, served.port, "POST", "/validate", body)
        .await
        .expect("HTTPS request")
}

/// An AdmissionReview as the API server sends it for `operation` of `object`.
pub fn admission_review(uid: &str, operation: &str, object: &Value) -> Value {
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .split_once('/')
        .unwrap_or(("", "v1"));
    let name = object["metadata"]["name"].clone();
    let namespace = object["metadata"]["namespace"].clone();
    let (object, old) = match operation {
        "DELETE" => (Value::Null, object.clone()),
        "UPDATE" => (object.clone(), object.clone()),
        _ => (object.clone(), Value::Null),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}
