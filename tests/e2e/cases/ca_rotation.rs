//! A mesh CA rotation under steady traffic, with stock Envoy on loopback: a client sidecar
//! calls a server sidecar (STRICT mutual TLS) in a loop of sequential requests while
//! `POST /debug/ca/rotate` takes the CA through its phases. What each Envoy holds is read from
//! its own admin config dump: the trust bundle it verifies peers with (1, then 2, then 1
//! roots) and the root that signed its workload certificate (the old, then the new one,
//! checked by signature). Then an operator's own root, added to `--ca-dir` as `next.crt` and
//! `next.key`, is rotated to the same way. No request fails. Every wait polls with a deadline.

use crate::mesh_security::{HOST, Identities, Mesh, counter};
use portolan_e2e::manifests::example;
use portolan_e2e::{Envoy, client, eventually};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The SHA-256 of a certificate's DER, first 16 bytes in hex (what `/debug/ca` shows).
fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The DER of every certificate in a PEM text.
fn ders(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|p| p.contents)
        .collect()
}

/// What one Envoy holds: the fingerprints of its trust bundle's roots and of the root that
/// signed its workload certificate (by signature; "?" for none of them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    bundle: Vec<String>,
    signer: String,
}

async fn held(envoy: &Envoy) -> anyhow::Result<Held> {
    let text = envoy
        .admin("/config_dump?resource=dynamic_active_secrets")
        .await?;
    let dump: serde_json::Value = serde_json::from_str(&text)?;
    let (mut bundle_pem, mut chain_pem) = (String::new(), String::new());
    for entry in dump["configs"].as_array().into_iter().flatten() {
        let secret = &entry["secret"];
        if let Some(ca) = secret["validation_context"]["trusted_ca"]["inline_string"].as_str() {
            bundle_pem = ca.to_string();
        }
        if let Some(chain) =
            secret["tls_certificate"]["certificate_chain"]["inline_string"].as_str()
        {
            chain_pem = chain.to_string();
        }
    }
    let roots = ders(&bundle_pem);
    let leaf = ders(&chain_pem)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no workload certificate in the config dump"))?;
    let (_, leaf) = X509Certificate::from_der(&leaf)?;
    let mut signer = "?".to_string();
    for root in &roots {
        let (_, parsed) = X509Certificate::from_der(root)?;
        if leaf.verify_signature(Some(parsed.public_key())).is_ok() {
            signer = fingerprint(root);
        }
    }
    Ok(Held {
        bundle: roots.iter().map(|r| fingerprint(r)).collect(),
        signer,
    })
}

/// Sequential requests through the client sidecar until `stop`: (answered 200, failures).
fn traffic(
    envoy: Arc<Envoy>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u32, Vec<String>)> {
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        let start = Instant::now();
        // Bounded in time and count whatever happens.
        while !stop.load(Ordering::Relaxed)
            && start.elapsed() < Duration::from_secs(90)
            && ok + (failed.len() as u32) < 20_000
        {
            match envoy.get(HOST, "/").await {
                Ok((200, body)) if body == "server-app" => ok += 1,
                other => failed.push(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ok, failed)
    })
}

/// Waits (20 s at most) until `envoy`'s counter `name` is at least `min`.
async fn counter_reaches(envoy: &Envoy, name: &str, min: u64, what: &str) -> anyhow::Result<()> {
    eventually(what, Duration::from_secs(20), || async {
        let n = counter(envoy, name).await.map_err(|e| e.to_string())?;
        (n >= min)
            .then_some(())
            .ok_or(format!("{name} = {n}, want {min}"))
    })
    .await
}

/// `/debug/ca` of the mesh's Portolan.
async fn ca_state(mesh: &Mesh) -> anyhow::Result<serde_json::Value> {
    mesh.portolan.get_json("/debug/ca").await
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_under_steady_traffic_fails_no_request() -> anyhow::Result<()> {
    // Phases last seconds: never beside a test that loads the machine.
    let _shared = portolan_e2e::serial::shared().await;
    // Certificates live 8 s (replaced after 4 s, mesh connections last at most 8 s); the new
    // root is published 3 s before it signs, the old one trusted 4 s after.
    let mesh = Mesh::start(
        Identities::Certificates,
        &[("shop/strict.yaml", example("security/strict-mtls.yaml"))],
        &[
            "--workload-cert-lifetime",
            "8s",
            "--ca-propagation",
            "3s",
            "--ca-rotation-grace",
            "4s",
            "--enable-ca-rotation",
        ],
    )
    .await?;
    let server = Arc::new(mesh.server().await?);
    let client_envoy = Arc::new(mesh.caller("client", mesh.portolan.ports().mesh).await?);
    client_envoy
        .wait_for_response(HOST, 200, "server-app")
        .await?;

    let before = ca_state(&mesh).await?;
    assert_eq!(before["phase"], "steady", "{before}");
    let old = before["signer"].as_str().unwrap_or_default().to_string();
    assert_eq!(strings(&before["bundle"]), std::slice::from_ref(&old));
    for envoy in [&server, &client_envoy] {
        let h = held(envoy).await?;
        assert_eq!(
            h.bundle,
            std::slice::from_ref(&old),
            "one root before the rotation"
        );
        assert_eq!(h.signer, old, "signed by the old root before the rotation");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let loop_task = traffic(client_envoy.clone(), stop.clone());
    // Some traffic before the rotation starts.
    let served_before = counter(&server, "http.inbound.downstream_rq_2xx").await?;
    counter_reaches(
        &server,
        "http.inbound.downstream_rq_2xx",
        served_before + 20,
        "traffic before the rotation",
    )
    .await?;

    let rotated_at = Instant::now();
    let reply = client()
        .post(mesh.portolan.url("/debug/ca/rotate"))
        .send()
        .await?;
    assert_eq!(reply.status().as_u16(), 202, "rotation accepted");
    let started: serde_json::Value = reply.json().await?;
    assert_eq!(started["phase"], "publishing", "{started}");
    let bundle = strings(&started["bundle"]);
    assert_eq!(bundle.len(), 2, "{started}");
    assert_eq!(bundle[0], old);
    let new = bundle[1].clone();
    // One rotation at a time.
    let again = client()
        .post(mesh.portolan.url("/debug/ca/rotate"))
        .send()
        .await?;
    assert_eq!(again.status().as_u16(), 409);

    // Watch both Envoys and Portolan until the rotation is over everywhere.
    let (mut phases, mut metric_phases) = (BTreeSet::new(), BTreeSet::new());
    let mut seen: [BTreeSet<Held>; 2] = [BTreeSet::new(), BTreeSet::new()];
    // When each Envoy first held each state, after the rotation request (reported, not
    // asserted).
    let mut first_seen: std::collections::BTreeMap<(usize, Held), Duration> = Default::default();
    let done = Held {
        bundle: vec![new.clone()],
        signer: new.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let state = ca_state(&mesh).await?;
        phases.insert(state["phase"].as_str().unwrap_or_default().to_string());
        if let Some(p) = mesh.portolan.metric("portolan_ca_rotation_phase").await? {
            metric_phases.insert(p as i64);
        }
        let now = [held(&server).await?, held(&client_envoy).await?];
        for (i, (set, h)) in seen.iter_mut().zip(now.iter()).enumerate() {
            set.insert(h.clone());
            first_seen
                .entry((i, h.clone()))
                .or_insert_with(|| rotated_at.elapsed());
        }
        if state["phase"] == "steady" && now.iter().all(|h| *h == done) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "rotation not over: {state}\nheld: {now:?}\nseen: {seen:?}\nportolan log:\n{}",
            mesh.portolan.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        phases,
        BTreeSet::from(["publishing".into(), "signing".into(), "steady".into()])
    );
    assert_eq!(metric_phases, BTreeSet::from([0, 1, 2]), "the phase gauge");
    let publishing = Held {
        bundle: vec![old.clone(), new.clone()],
        signer: old.clone(),
    };
    let signing = Held {
        bundle: vec![old.clone(), new.clone()],
        signer: new.clone(),
    };
    for (name, set) in ["server", "client"].iter().zip(seen.iter()) {
        assert!(
            set.contains(&publishing) && set.contains(&signing),
            "{name}: both roots trusted, first with the old signer, then with the new: {set:?}"
        );
        // Before the push of the new bundle arrives, the state before the rotation.
        let initial = Held {
            bundle: vec![old.clone()],
            signer: old.clone(),
        };
        let unexpected: Vec<&Held> = set
            .iter()
            .filter(|h| ![&initial, &publishing, &signing, &done].contains(h))
            .collect();
        assert!(unexpected.is_empty(), "{name}: {unexpected:?}");
    }
    assert_eq!(
        mesh.portolan
            .metric("portolan_ca_trust_bundle_roots")
            .await?,
        Some(1.0)
    );
    // Portolan sees both sidecars' ACKs of their current secrets (what publishing waits for).
    eventually(
        "both sidecars' ACKs of their secrets",
        Duration::from_secs(10),
        || async {
            let state = ca_state(&mesh).await.map_err(|e| e.to_string())?;
            (state["proxiesWithoutCurrentSecrets"] == serde_json::json!([]))
                .then_some(())
                .ok_or(state.to_string())
        },
    )
    .await?;

    // New mutual TLS connections are made with the new root alone.
    let handshakes = counter(&server, "listener.inbound.ssl.handshake").await?;
    counter_reaches(
        &server,
        "listener.inbound.ssl.handshake",
        handshakes + 1,
        "a handshake after the old root was dropped",
    )
    .await?;
    // File mode: an operator's own root, added to --ca-dir as next.crt and next.key, is
    // rotated to the same way.
    let own = portolan_ca::Authority::generate("cluster.local", std::time::SystemTime::now())?;
    let own_fp = own.fingerprint();
    std::fs::write(mesh.ca_dir.path().join("next.key"), own.key_pem())?;
    std::fs::write(mesh.ca_dir.path().join("next.crt"), own.root_pem())?;
    let own_done = Held {
        bundle: vec![own_fp.clone()],
        signer: own_fp.clone(),
    };
    let mut own_seen: [BTreeSet<Held>; 2] = [BTreeSet::new(), BTreeSet::new()];
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut polls = 0;
    loop {
        polls += 1;
        let state = ca_state(&mesh).await?;
        let now = [held(&server).await?, held(&client_envoy).await?];
        for (set, h) in own_seen.iter_mut().zip(now.iter()) {
            set.insert(h.clone());
        }
        if state["phase"] == "steady" && now.iter().all(|h| *h == own_done) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "rotation to the operator's root not over: {state}\nheld: {now:?}\nportolan log:\n{}",
            mesh.portolan.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let both = vec![new.clone(), own_fp.clone()];
    for (name, set) in ["server", "client"].iter().zip(own_seen.iter()) {
        assert!(
            set.iter().any(|h| h.bundle == both && h.signer == new)
                && set.iter().any(|h| h.bundle == both && h.signer == own_fp),
            "{name}: the operator's root published, then signing: {set:?} ({polls} polls)\nportolan log:\n{}",
            mesh.portolan.log_tail()
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(mesh.ca_dir.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["ca.crt", "ca.key"],
        "the directory holds the new root alone"
    );

    let served_after = counter(&server, "http.inbound.downstream_rq_2xx").await?;
    counter_reaches(
        &server,
        "http.inbound.downstream_rq_2xx",
        served_after + 20,
        "traffic after the new handshake",
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = loop_task.await?;
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok >= 100, "only {ok} requests");
    let mut timeline: Vec<_> = first_seen.iter().collect();
    timeline.sort_by_key(|(_, at)| **at);
    for ((i, h), at) in timeline {
        let name = ["server", "client"][*i];
        let state = if *h == publishing {
            "publishing (old+new, old signs)"
        } else if *h == signing {
            "signing (old+new, new signs)"
        } else {
            "steady (new only)"
        };
        eprintln!("ca rotation: {name} Envoy held {state} at {at:?}");
    }
    eprintln!("ca rotation: {ok} sequential requests answered 200, none failed");
    Ok(())
}

/// The PEM text of `data.{key}` of a Secret as the API server holds it (base64).
fn secret_pem(secret: &serde_json::Value, key: &str) -> Option<String> {
    use base64::Engine;
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The fingerprint of the first certificate of `data.{key}`.
fn secret_fingerprint(secret: &serde_json::Value, key: &str) -> Option<String> {
    ders(&secret_pem(secret, key)?)
        .first()
        .map(|d| fingerprint(d))
}

/// `--kubernetes --ca-secret`: the leader creates the CA Secret on first start; a second
/// replica (not the leader) and a restarted one use the same CA; a rotation started on the
/// leader is written to the Secret, which the other replica follows phase by phase to the
/// new root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_ca_lives_in_a_secret_shared_by_replicas() -> anyhow::Result<()> {
    use portolan_e2e::Portolan;
    use portolan_e2e::apiserver::FakeApiServer;
    use portolan_e2e::portolan::Ports;
    let _shared = portolan_e2e::serial::shared().await;
    let api = FakeApiServer::start().await?;
    let kubeconfig = api.kubeconfig().display().to_string();
    let env = [("KUBECONFIG", kubeconfig.as_str())];
    let args = |pod: &'static str| {
        [
            "--watch-namespace",
            "shop",
            "--pod-namespace",
            "portolan",
            "--pod-name",
            pod,
            "--ca-secret",
            "portolan-ca",
            "--ca-propagation",
            "2s",
            "--ca-rotation-grace",
            "2s",
            "--enable-ca-rotation",
        ]
    };
    let first =
        Portolan::start_kubernetes(crate::bin(), Ports::free(), &args("portolan-0"), &env).await?;
    let created = api
        .secret("portolan", "portolan-ca")
        .ok_or_else(|| anyhow::anyhow!("no CA Secret\n{}", first.log_tail()))?;
    assert_eq!(created["type"], "Opaque");
    assert!(secret_pem(&created, "ca.key").is_some_and(|k| k.contains("PRIVATE KEY")));
    let root = secret_fingerprint(&created, "ca.crt").expect("ca.crt");
    let state = first.get_json("/debug/ca").await?;
    assert_eq!(state["signer"], root.as_str(), "{state}");
    assert_eq!(state["backing"], "secret portolan/portolan-ca");
    let version = created["metadata"]["resourceVersion"].clone();

    let second =
        Portolan::start_kubernetes(crate::bin(), Ports::free(), &args("portolan-1"), &env).await?;
    let state = second.get_json("/debug/ca").await?;
    assert_eq!(state["signer"], root.as_str(), "the same CA: {state}");
    assert_eq!(state["deciding"], false, "not the leader");
    assert_eq!(
        api.secret("portolan", "portolan-ca").expect("kept")["metadata"]["resourceVersion"],
        version,
        "read, not written again"
    );

    // A rotation on the leader (`portolan ca rotate`) goes through the Secret; the other
    // replica follows it.
    let out = tokio::process::Command::new(crate::bin())
        .args(["ca", "rotate", "--server", &first.url("")])
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(started["phase"], "publishing", "{started}");
    let new = strings(&started["bundle"])
        .get(1)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no new root: {started}"))?;
    let phases = std::sync::Mutex::new(BTreeSet::new());
    eventually(
        "the other replica to finish the rotation",
        Duration::from_secs(30),
        || {
            let (second, new, phases) = (&second, new.clone(), &phases);
            async move {
                let state = second
                    .get_json("/debug/ca")
                    .await
                    .map_err(|e| e.to_string())?;
                let phase = state["phase"].as_str().unwrap_or_default().to_string();
                phases.lock().map_err(|e| e.to_string())?.insert(phase);
                let bundle = strings(&state["bundle"]);
                (state["phase"] == "steady"
                    && bundle == [new.clone()]
                    && state["signer"] == new.as_str())
                .then_some(())
                .ok_or(state.to_string())
            }
        },
    )
    .await?;
    let phases = phases.into_inner().unwrap_or_default();
    assert!(
        phases.contains("publishing") || phases.contains("signing"),
        "the other replica followed the rotation through the Secret: {phases:?}"
    );
    let kept = api.secret("portolan", "portolan-ca").expect("kept");
    assert_eq!(secret_fingerprint(&kept, "ca.crt"), Some(new.clone()));
    for gone in ["next.crt", "next.key", "previous.crt", "rotation"] {
        assert!(kept["data"].get(gone).is_none(), "{gone} left: {kept}");
    }

    // A replica started after a restart uses the CA in the Secret.
    first.kill().await?;
    let third =
        Portolan::start_kubernetes(crate::bin(), Ports::free(), &args("portolan-2"), &env).await?;
    let state = third.get_json("/debug/ca").await?;
    assert_eq!(state["signer"], new.as_str(), "{state}");
    drop(second);
    Ok(())
}
