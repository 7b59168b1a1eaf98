//! The tree both examples read: N Services, one file each (a Service and an EndpointSlice of
//! 10 endpoints), in 10 namespace directories.

use std::path::Path;

/// Service `i`'s file; `round` changes the first endpoint's address.
pub fn manifest(i: usize, round: usize) -> String {
    let mut s = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: ns-{ns}\nspec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{i}-a\n  namespace: ns-{ns}\n  labels:\n    kubernetes.io/service-name: svc-{i}\naddressType: IPv4\nports:\n- name: http\n  port: 8080\nendpoints:\n",
        ns = i % 10
    );
    for e in 0..10 {
        let last = if e == 0 { round % 250 } else { e };
        s.push_str(&format!(
            "- addresses: [\"10.{}.{}.{last}\"]\n  zone: zone-a\n",
            (i / 250) % 250,
            i % 250
        ));
    }
    s
}

/// The example's `n`-th argument (from 1) as a number, `default` without one.
pub fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().expect("a number"))
        .unwrap_or(default)
}

/// A temporary directory holding the tree of `services` files.
pub fn world(services: usize) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_world(tmp.path(), services);
    tmp
}

/// Writes the tree of `services` files under `dir`.
fn write_world(dir: &Path, services: usize) {
    for i in 0..services {
        let sub = dir.join(format!("ns-{}", i % 10));
        std::fs::create_dir_all(&sub).expect("mkdir");
        std::fs::write(sub.join(format!("svc-{i}.yaml")), manifest(i, 0)).expect("write");
    }
}
