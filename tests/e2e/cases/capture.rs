//! Transparent capture end to end, in network namespaces this test makes (root and iptables
//! needed; skipped with a message otherwise): unchanged applications in "pods" (curl and a
//! line-based TCP client), each pod with a sidecar Envoy bootstrapped by `portolan bootstrap`
//! and netfilter rules from `portolan capture`, Service ClusterIPs that no interface holds.
//!
//! Shown: the rules are idempotent, removable and need CAP_NET_ADMIN; HTTP by name, by namespaced name
//! and by ClusterIP, routed with an 80/20 canary, over mutual TLS between captured pods; a TCP
//! Service proxied, half of its connections to a canary by a mesh TrafficRoute's TCP rule
//! (and an AccessPolicy refusing a caller of it); an unknown destination
//! passed through with ALLOW_ANY and refused in registry-only mode; a pod-IP call reaching
//! that pod and not the canary route; a server's own port reachable only through its
//! sidecar's inbound listener; an HTTPRoute with Service `reviews` as its parent (GAMMA)
//! replacing the canary for the captured client; a server pod's second application port served
//! on its own by the sidecar's inbound listener, with an AccessPolicy for one port leaving the
//! other closed; a db pod's application on a port no Service declares (Service `db-extra`
//! names it by a `targetPort` name, which the inbound side does not resolve) reached on that
//! port through the sidecar's passthrough, over STRICT mutual TLS, the port-less AccessPolicy
//! refusing another caller there too. Bounded in time; every namespace goes when
//! the test ends.

use crate::bin;
use portolan_e2e::netns::{self, Node, Pod, Relay};
use portolan_e2e::portolan::{ConfigDir, Ports};
use portolan_e2e::{Portolan, eventually};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const REVIEWS_IP: &str = "10.96.0.20";
const DB_IP: &str = "10.96.0.30";
const REVIEWS_V2_IP: &str = "10.96.0.22";
const V1_IP: &str = "10.244.0.11";
const V2_IP: &str = "10.244.0.12";
const DB_POD_IP: &str = "10.244.0.21";
const DB_CANARY_IP: &str = "10.96.0.31";
const DB_CANARY_POD_IP: &str = "10.244.0.22";
const OUTSIDE_IP: &str = "10.244.0.50";
/// Service `reviews-admin`: the second application of the v2 pod, on its own port.
const ADMIN_IP: &str = "10.96.0.23";
const ADMIN_PORT: u16 = 9081;
/// Service `db-extra` (port 7000, `targetPort: extra`): the db pod's second application on
/// 5433, a port the inbound side serves no chain for.
const DB_EXTRA_IP: &str = "10.96.0.32";
const DB_EXTRA_PORT: u16 = 5433;

/// `reviews` (HTTP 9080, pods v1 and v2, 80/20 canary) and `db` (TCP 5432, half of it to
/// `db-canary` by a TCP rule; STRICT mutual TLS, callable by service account `client` only)
/// in the mesh, namespace `default`.
fn manifests() -> String {
    let slice = |name: &str, service: &str, version: Option<&str>, ip: &str, port: &str| {
        let version = version
            .map(|v| format!("\n    version: {v}"))
            .unwrap_or_default();
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    kubernetes.io/service-name: {service}{version}\naddressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\nports:\n- name: {port}\n  port: {}\n",
            match service {
                "db-extra" => DB_EXTRA_PORT,
                s if s.starts_with("db") => 5432,
                "reviews-admin" => ADMIN_PORT,
                _ => 9080,
            }
        )
    };
    // Servers run as the service account that starts the Service's name (db-canary: db).
    let service = |name: &str, ip: &str, port_name: &str, port: u16| {
        let sa = name.split('-').next().unwrap_or(name);
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    portolan.dev/service-account: {sa}\nspec:\n  clusterIP: {ip}\n  ports:\n  - name: {port_name}\n    port: {port}\n"
        )
    };
    [
        service("reviews", REVIEWS_IP, "http", 9080),
        slice("reviews-v1", "reviews", Some("v1"), V1_IP, "http"),
        slice("reviews-v2", "reviews", Some("v2"), V2_IP, "http"),
        // Only the GAMMA step's HTTPRoute sends to it (the v2 pod, without the canary).
        service("reviews-v2", REVIEWS_V2_IP, "http", 9080),
        slice("reviews-v2-only", "reviews-v2", None, V2_IP, "http"),
        // The v2 pod's second application, on a port of its own.
        service("reviews-admin", ADMIN_IP, "http", ADMIN_PORT),
        slice("reviews-admin", "reviews-admin", None, V2_IP, "http"),
        service("db", DB_IP, "tcp-db", 5432),
        slice("db", "db", None, DB_POD_IP, "tcp-db"),
        service("db-canary", DB_CANARY_IP, "tcp-db", 5432),
        slice("db-canary", "db-canary", None, DB_CANARY_POD_IP, "tcp-db"),
        // A named target port: the inbound side does not resolve it, so serves no chain for 5433.
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: db-extra\n  namespace: default\n  labels:\n    portolan.dev/service-account: db\nspec:\n  clusterIP: {DB_EXTRA_IP}\n  ports:\n  - name: tcp-extra\n    port: 7000\n    targetPort: extra\n"
        ),
        slice("db-extra", "db-extra", None, DB_POD_IP, "tcp-extra"),
        "apiVersion: portolan.dev/v1alpha1\nkind: TrafficRoute\nmetadata:\n  name: db-split\n  namespace: default\nspec:\n  hosts: [db]\n  tcp:\n  - route:\n    - destination: {host: db}\n      weight: 50\n    - destination: {host: db-canary, port: 5432}\n      weight: 50\n".into(),
        "apiVersion: portolan.dev/v1alpha1\nkind: TrafficPolicy\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n  - name: v2\n    labels: {version: v2}\n".into(),
        "apiVersion: portolan.dev/v1alpha1\nkind: TrafficRoute\nmetadata:\n  name: reviews-canary\n  namespace: default\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 80\n    - destination: {host: reviews, subset: v2}\n      weight: 20\n".into(),
        "apiVersion: portolan.dev/v1alpha1\nkind: PeerAuthentication\nmetadata:\n  name: db\n  namespace: default\nspec:\n  selector:\n    matchLabels: {app: db}\n  mtls:\n    mode: STRICT\n".into(),
        "apiVersion: portolan.dev/v1alpha1\nkind: AccessPolicy\nmetadata:\n  name: db-callers\n  namespace: default\nspec:\n  selector:\n    matchLabels: {app: db}\n  action: ALLOW\n  rules:\n  - from:\n      serviceAccounts: [client]\n".into(),
    ]
    .join("---\n")
}

/// The names an application resolves (Kubernetes DNS would give the ClusterIPs).
const HOSTS: &[&str] = &[
    "10.96.0.20 reviews reviews.default reviews.default.svc.cluster.local",
    "10.96.0.30 db db.default",
    "10.96.0.23 reviews-admin",
    "10.96.0.32 db-extra",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_pods_join_the_mesh_through_capture() -> anyhow::Result<()> {
    if let Some(why) = netns::unsupported() {
        eprintln!("skipping capture::unchanged_pods_join_the_mesh_through_capture: {why}");
        return Ok(());
    }
    let _shared = portolan_e2e::serial::shared().await;
    // Dropping the scenario (on time-out too) kills every process and deletes every namespace.
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .map_err(|_| anyhow::anyhow!("the capture scenario took over 240 s"))?
}

/// The pods and what they talk to.
struct Cluster {
    client: Pod,
    registry_only: Pod,
    outside: Pod,
    v1: Pod,
    v2: Pod,
    db: Pod,
    _db_canary: Pod,
    _relay: Relay,
    _portolan: Portolan,
    config: ConfigDir,
    node: Node,
}

impl Cluster {
    fn diagnostics(&self) -> String {
        [
            &self.client,
            &self.registry_only,
            &self.v1,
            &self.v2,
            &self.db,
        ]
        .iter()
        .map(|p| p.diagnostics())
        .collect()
    }
}

async fn start() -> anyhow::Result<Cluster> {
    let config = ConfigDir::new()?;
    config.write("mesh.yaml", &manifests())?;
    let portolan = Portolan::start_with(bin(), &config, Ports::free(), &netns::SERVE_ARGS).await?;
    let node = Node::new()?;
    let relay = Relay::start(node.dir().join("xds.sock"), portolan.ports().xds)?;
    let xds = relay.path();
    let workload = |sa: &'static str| vec!["--namespace", "default", "--service-account", sa];

    let mut outside = node.pod("outside", OUTSIDE_IP)?;
    outside.http_app("outside", 8080)?;
    let mut v1 = node.pod("reviews-v1", V1_IP)?;
    let mut v2 = node.pod("reviews-v2", V2_IP)?;
    for (pod, version) in [(&mut v1, "v1"), (&mut v2, "v2")] {
        pod.http_app(&format!("reviews-{version}"), 9080)?;
        if version == "v2" {
            pod.http_app("reviews-admin", ADMIN_PORT)?;
        }
        captured(pod).await?;
        let mut args = workload("reviews");
        let label = format!("version={version}");
        args.extend([
            "--app-port",
            "9080",
            "--label",
            "app=reviews",
            "--label",
            &label,
        ]);
        pod.sidecar(bin(), xds, &args).await?;
    }
    let mut db = node.pod("db", DB_POD_IP)?;
    let mut db_canary = node.pod("db-canary", DB_CANARY_POD_IP)?;
    for (pod, name) in [(&mut db, "db"), (&mut db_canary, "db-canary")] {
        pod.tcp_app(name, 5432)?;
        if name == "db" {
            pod.tcp_app("db-extra", DB_EXTRA_PORT)?;
        }
        captured(pod).await?;
        let mut args = workload("db");
        let tcp = ["--app-port", "5432", "--app-protocol", "tcp"];
        args.extend(tcp.into_iter().chain(["--label", "app=db"]));
        pod.sidecar(bin(), xds, &args).await?;
    }
    let mut client = node.pod("client", "10.244.0.10")?;
    client.hosts(HOSTS)?;
    captured(&client).await?;
    client.sidecar(bin(), xds, &workload("client")).await?;
    let mut registry_only_pod = node.pod("client-ro", "10.244.0.13")?;
    registry_only_pod.hosts(HOSTS)?;
    captured(&registry_only_pod).await?;
    // This pod's sidecar chooses registry-only (what a pod annotation would set), over the
    // server's allow-any.
    let mut args = workload("client-ro");
    args.extend(["--outbound-traffic-policy", "registry-only"]);
    registry_only_pod.sidecar(bin(), xds, &args).await?;
    Ok(Cluster {
        client,
        registry_only: registry_only_pod,
        outside,
        v1,
        v2,
        db,
        _db_canary: db_canary,
        _relay: relay,
        _portolan: portolan,
        config,
        node,
    })
}

/// Programs the pod's capture rules (as an injected pod's init container would).
async fn captured(pod: &Pod) -> anyhow::Result<()> {
    pod.capture(bin(), &[])
        .await
        .map_err(|e| anyhow::anyhow!("portolan capture in {}: {e}", pod.role))?;
    Ok(())
}

/// Polls `check` until it holds.
async fn until<F, Fut>(what: &str, check: F) -> anyhow::Result<String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    eventually(what, WAIT, check).await
}

async fn scenario() -> anyhow::Result<()> {
    let cluster = start().await?;
    let result = checks(&cluster).await;
    result.map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.diagnostics()))
}

async fn checks(c: &Cluster) -> anyhow::Result<()> {
    rules_are_idempotent_and_need_the_capability(c).await?;
    http_by_name_and_cluster_ip_with_a_canary(c).await?;
    tcp_service_and_access_policy(c).await?;
    websocket_through_the_capture(c).await?;
    unknown_destinations_and_pod_ips(c).await?;
    server_ports_only_through_the_sidecar(c).await?;
    gamma_route_through_the_capture(c).await?;
    second_port_with_its_own_policy(c).await?;
    undeclared_port_passed_through(c).await?;
    let _ = &c.node;
    Ok(())
}

async fn rules_are_idempotent_and_need_the_capability(c: &Cluster) -> anyhow::Result<()> {
    let pod = &c.client;
    let before = pod.nat_rules().await.map_err(anyhow::Error::msg)?;
    captured(pod).await?;
    let after = pod.nat_rules().await.map_err(anyhow::Error::msg)?;
    assert_eq!(
        before, after,
        "a second `portolan capture` changed the rules"
    );
    let jumps = after
        .lines()
        .filter(|l| *l == "-A OUTPUT -p tcp -j PORTOLAN_OUTPUT")
        .count();
    assert_eq!(jumps, 1, "{after}");
    let dry = pod
        .capture(bin(), &["--dry-run"])
        .await
        .map_err(anyhow::Error::msg)?;
    for rule in [
        "-A PORTOLAN_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A PORTOLAN_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
        "-A PORTOLAN_OUTPUT -m owner --uid-owner 1337 -j RETURN",
    ] {
        assert!(dry.contains(rule), "dry run lacks {rule}:\n{dry}");
        assert!(after.contains(rule), "applied rules lack {rule}:\n{after}");
    }
    // --remove takes it all out again (and twice is no error).
    let pristine = c.outside.nat_rules().await.map_err(anyhow::Error::msg)?;
    captured(&c.outside).await?;
    assert_ne!(c.outside.nat_rules().await.as_ref(), Ok(&pristine));
    for _ in 0..2 {
        c.outside
            .capture(bin(), &["--remove"])
            .await
            .map_err(anyhow::Error::msg)?;
        assert_eq!(c.outside.nat_rules().await.as_ref(), Ok(&pristine));
    }
    // Without CAP_NET_ADMIN: a clear error, nothing changed.
    let mut cmd = pod.netns().command("setpriv");
    cmd.args([
        "--bounding-set",
        "-net_admin",
        "--inh-caps",
        "-net_admin",
        "--",
    ])
    .arg(bin())
    .arg("capture");
    let out = cmd.output().await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("needs the CAP_NET_ADMIN capability"),
        "{stderr}"
    );
    Ok(())
}

async fn http_by_name_and_cluster_ip_with_a_canary(c: &Cluster) -> anyhow::Result<()> {
    let client = &c.client;
    let is_reviews = |b: &str| b == "reviews-v1" || b == "reviews-v2";
    until("reviews by name through the capture", || async {
        client
            .curl("http://reviews:9080/")
            .await
            .and_then(|b| if is_reviews(&b) { Ok(b) } else { Err(b) })
    })
    .await?;
    let by_ip = format!("http://{REVIEWS_IP}:9080/");
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for url in ["http://reviews:9080/", by_ip.as_str()] {
        for _ in 0..40 {
            let body = client.curl(url).await.map_err(anyhow::Error::msg)?;
            assert!(is_reviews(&body), "{url}: {body:?}");
            *counts.entry(body).or_default() += 1;
        }
    }
    for url in [
        "http://reviews.default:9080/",
        "http://reviews.default.svc.cluster.local:9080/",
    ] {
        let body = client.curl(url).await.map_err(anyhow::Error::msg)?;
        assert!(is_reviews(&body), "{url}: {body:?}");
    }
    // 80/20 over 80 requests: v2 expected 16 (sd 3.6); 4..=32 is beyond 3 sd on each side.
    let v2 = counts.get("reviews-v2").copied().unwrap_or_default();
    assert!((4..=32).contains(&v2), "canary split off: {counts:?}");
    // Mutual TLS between the captured pods: the client's sidecar and v1's inbound listener.
    let handshakes = client
        .counter("cluster.outbound|9080|v1|reviews.default.svc.cluster.local.ssl.handshake")
        .await?;
    assert!(handshakes > 0, "no mTLS handshake towards reviews v1");
    assert!(c.v1.counter("listener.inbound.ssl.handshake").await? > 0);
    Ok(())
}

/// An unchanged application's WebSocket session to `reviews` (by name and by ClusterIP):
/// captured, routed by the canary, upgraded through both sidecars over mutual TLS, and echoed
/// by a reviews pod.
async fn websocket_through_the_capture(c: &Cluster) -> anyhow::Result<()> {
    let echoed = |out: &str| {
        let lines: Vec<&str> = out.lines().collect();
        ["hello", "again"].iter().zip(&lines).all(|(sent, got)| {
            ["reviews-v1", "reviews-v2"]
                .iter()
                .any(|pod| *got == format!("{pod}: {sent}"))
        }) && lines.len() == 2
    };
    for host in ["reviews", REVIEWS_IP] {
        let out = until(&format!("a WebSocket session to {host}"), || async {
            c.client
                .ws(host, 9080)
                .await
                .and_then(|o| if echoed(&o) { Ok(o) } else { Err(o) })
        })
        .await?;
        assert!(echoed(&out), "{out}");
    }
    let upgrades =
        c.v1.counter("http.inbound.downstream_cx_upgrades_total")
            .await?
            + c.v2
                .counter("http.inbound.downstream_cx_upgrades_total")
                .await?;
    assert!(
        upgrades >= 2,
        "the sessions did not pass the servers' inbound listeners ({upgrades})"
    );
    let upgraded = c
        .client
        .counter("http.mesh_outbound.downstream_cx_upgrades_total")
        .await?;
    assert!(
        upgraded >= 2,
        "the client's sidecar upgraded {upgraded} connections"
    );
    Ok(())
}

async fn tcp_service_and_access_policy(c: &Cluster) -> anyhow::Result<()> {
    let is_db = |b: &str| b == "db" || b == "db-canary";
    until("db over TCP by name", || async {
        c.client
            .tcp("db", 5432)
            .await
            .and_then(|b| if is_db(&b) { Ok(b) } else { Err(b) })
    })
    .await?;
    // The mesh TrafficRoute's TCP rule: half of db's connections to db-canary.
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..40 {
        let answer = c.client.tcp("db", 5432).await.map_err(anyhow::Error::msg)?;
        assert!(is_db(&answer), "{answer:?}");
        *counts.entry(answer).or_default() += 1;
    }
    // 50/50 over 40 connections: each expected 20 (sd 3.2); at least 5 is beyond 4 sd.
    for name in ["db", "db-canary"] {
        let n = counts.get(name).copied().unwrap_or_default();
        assert!(n >= 5, "TCP split off: {counts:?}");
    }
    let answer = c.client.tcp(DB_IP, 5432).await;
    assert!(answer.as_deref().is_ok_and(is_db), "{answer:?}");
    let cx = c
        .client
        .counter("cluster.outbound|5432||db-canary.default.svc.cluster.local.upstream_cx_total")
        .await?;
    assert!(
        cx >= 5,
        "db-canary connections did not go through the client's sidecar ({cx})"
    );
    // The registry-only client is service account client-ro: the AccessPolicy refuses it.
    until("db known to the registry-only client", || async {
        c.registry_only.admin("/config_dump").await.and_then(|d| {
            if d.contains(DB_IP) {
                Ok(d)
            } else {
                Err("no chain for db yet".into())
            }
        })
    })
    .await?;
    let refused = c.registry_only.tcp("db", 5432).await;
    assert!(refused.is_err(), "client-ro reached db: {refused:?}");
    Ok(())
}

async fn unknown_destinations_and_pod_ips(c: &Cluster) -> anyhow::Result<()> {
    let outside = format!("http://{OUTSIDE_IP}:8080/");
    assert_eq!(c.client.curl(&outside).await.as_deref(), Ok("outside"));
    let passed = c
        .client
        .counter("cluster.PassthroughCluster.upstream_cx_total")
        .await?;
    assert!(passed >= 1, "the unknown destination bypassed the sidecar");
    // A pod IP is not the Service: no canary, always that pod.
    let pod_ip = format!("http://{V2_IP}:9080/");
    for _ in 0..10 {
        assert_eq!(c.client.curl(&pod_ip).await.as_deref(), Ok("reviews-v2"));
    }
    // Registry-only: the unknown destination is refused by the sidecar; the mesh still works.
    until("reviews from the registry-only client", || async {
        c.registry_only.curl("http://reviews:9080/").await
    })
    .await?;
    let refused = c.registry_only.curl(&outside).await;
    assert!(
        refused.is_err(),
        "registry-only let {outside} through: {refused:?}"
    );
    let blackholed = c
        .registry_only
        .counter("tcp.BlackHoleCluster.downstream_cx_total")
        .await?;
    assert!(blackholed >= 1, "not refused by the sidecar");
    assert_eq!(
        c.registry_only.curl(&pod_ip).await.as_deref(),
        Ok("reviews-v2")
    );
    Ok(())
}

async fn server_ports_only_through_the_sidecar(c: &Cluster) -> anyhow::Result<()> {
    // The db application listens on 0.0.0.0:5432, but a pod without a sidecar reaches its
    // sidecar's inbound listener instead, which (STRICT) refuses plaintext: its plaintext
    // chain's network RBAC closes the connection.
    let direct = c.outside.tcp(DB_POD_IP, 5432).await;
    assert_ne!(
        direct.as_deref(),
        Ok("db"),
        "plaintext reached db's application"
    );
    let denied = c.db.counter("inbound.rbac.denied").await?;
    assert!(
        denied >= 1,
        "the plaintext connection did not meet db's inbound listener"
    );
    // PERMISSIVE reviews: plaintext is accepted, by the sidecar, not the application.
    let before = c.v2.counter("http.inbound.downstream_rq_total").await?;
    let pod_ip = format!("http://{V2_IP}:9080/");
    assert_eq!(c.outside.curl(&pod_ip).await.as_deref(), Ok("reviews-v2"));
    let after = c.v2.counter("http.inbound.downstream_rq_total").await?;
    assert!(
        after > before,
        "the request did not pass v2's inbound listener"
    );
    Ok(())
}

/// GAMMA through the capture: an HTTPRoute whose parent is Service `reviews` replaces its
/// TrafficRoute canary for the captured client, by name and by ClusterIP (every call to v2,
/// through Service `reviews-v2`); removed, the canary is back.
async fn gamma_route_through_the_capture(c: &Cluster) -> anyhow::Result<()> {
    const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: reviews-gamma\n  namespace: default\nspec:\n  parentRefs:\n  - {group: \"\", kind: Service, name: reviews, port: 9080}\n  rules:\n  - backendRefs:\n    - {name: reviews-v2, port: 9080}\n";
    c.config.write("gamma.yaml", ROUTE)?;
    let client = &c.client;
    // Converged once the client's sidecar has the route's rule.
    until("the HTTPRoute in the client's sidecar", || async {
        let dump = client.admin("/config_dump").await?;
        if dump.contains("default/reviews-gamma/0") {
            Ok(String::new())
        } else {
            Err("not yet".to_string())
        }
    })
    .await?;
    let by_ip = format!("http://{REVIEWS_IP}:9080/");
    for url in ["http://reviews:9080/", by_ip.as_str()] {
        for _ in 0..20 {
            let body = client.curl(url).await.map_err(anyhow::Error::msg)?;
            assert_eq!(
                body, "reviews-v2",
                "{url}: the HTTPRoute sends every call to v2"
            );
        }
    }
    c.config.remove("gamma.yaml")?;
    until("the canary back without the HTTPRoute", || async {
        let body = client.curl("http://reviews:9080/").await?;
        if body == "reviews-v1" {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await?;
    Ok(())
}

/// The v2 pod's second application (`reviews-admin`, port 9081, a port of Service
/// `reviews-admin` of the same service account) is served by its sidecar's inbound listener on
/// its own: chains for its original destination port and cluster `inbound|9081`. An
/// AccessPolicy allowing port 9080 only leaves 9081 to default-deny (403) while 9080 answers;
/// removed, 9081 answers again.
async fn second_port_with_its_own_policy(c: &Cluster) -> anyhow::Result<()> {
    const POLICY: &str = "apiVersion: portolan.dev/v1alpha1\nkind: AccessPolicy\nmetadata:\n  name: reviews-main-port\n  namespace: default\nspec:\n  selector:\n    matchLabels: {app: reviews}\n  action: ALLOW\n  rules:\n  - to:\n      ports: [9080]\n";
    let admin = format!("http://reviews-admin:{ADMIN_PORT}/");
    let answered = || async {
        let body = c.client.curl(&admin).await?;
        if body == "reviews-admin" {
            Ok(body)
        } else {
            Err(body)
        }
    };
    until("the second port through the sidecars", answered).await?;
    let served =
        c.v2.counter(&format!("cluster.inbound|{ADMIN_PORT}.upstream_rq_total"))
            .await?;
    assert!(served >= 1, "no request through v2's inbound|{ADMIN_PORT}");
    let handshakes = c.v2.counter("listener.inbound.ssl.handshake").await?;
    assert!(handshakes >= 1, "no mutual TLS at v2's inbound listener");

    c.config.write("reviews-policy.yaml", POLICY)?;
    until("port 9081 refused by the policy for 9080", || async {
        match c.client.curl(&admin).await {
            Err(e) if e.contains("403") => Ok(e),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    for _ in 0..5 {
        let body = c.client.curl("http://reviews:9080/").await;
        assert!(
            matches!(body.as_deref(), Ok("reviews-v1" | "reviews-v2")),
            "port 9080 under its policy: {body:?}"
        );
        let refused = c.client.curl(&admin).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("403")),
            "port {ADMIN_PORT} under the policy for 9080: {refused:?}"
        );
    }
    c.config.remove("reviews-policy.yaml")?;
    until("the second port open again", answered).await?;
    Ok(())
}

/// The db pod's second application listens on 5433, which no Service of its account declares
/// (Service `db-extra` names it by a `targetPort` name): the client's sidecar reaches it over
/// mutual TLS (the Service's cluster goes to the endpoint's 5433), and the db sidecar's inbound
/// listener (STRICT) passes it through to 127.0.0.1:5433 (`inbound|passthrough`), not to the
/// application port 5432. The port-less AccessPolicy `db-callers` (service account `client`
/// only) refuses the registry-only client there too, at the inbound listener's network RBAC.
async fn undeclared_port_passed_through(c: &Cluster) -> anyhow::Result<()> {
    let answer = until("db's undeclared port through the sidecars", || async {
        let body = c.client.tcp("db-extra", 7000).await?;
        if body == "db-extra" {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await?;
    assert_eq!(answer, "db-extra", "the application port answered instead");
    let passed =
        c.db.counter("cluster.inbound|passthrough.upstream_cx_total")
            .await?;
    assert!(passed >= 1, "not through db's inbound passthrough");
    let handshakes = c
        .client
        .counter("cluster.outbound|7000||db-extra.default.svc.cluster.local.ssl.handshake")
        .await?;
    assert!(handshakes >= 1, "no mutual TLS from the client to db-extra");

    until("db-extra known to the registry-only client", || async {
        c.registry_only.admin("/config_dump").await.and_then(|d| {
            if d.contains(DB_EXTRA_IP) {
                Ok(d)
            } else {
                Err("no chain for db-extra yet".into())
            }
        })
    })
    .await?;
    let denied_before = c.db.counter("inbound.rbac.denied").await?;
    let refused = c.registry_only.tcp("db-extra", 7000).await;
    assert!(refused.is_err(), "client-ro reached db-extra: {refused:?}");
    let denied = c.db.counter("inbound.rbac.denied").await?;
    assert!(
        denied > denied_before,
        "the refusal was not db's AccessPolicy ({denied_before} -> {denied})"
    );
    Ok(())
}
