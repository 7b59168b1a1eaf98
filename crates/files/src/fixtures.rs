//! Test fixtures: small manifests written the way users write them.

/// A Service with one named port.
pub(crate) fn service(name: &str, port: i64) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  ports:\n  - name: http\n    port: {port}\n"
    )
}

/// An EndpointSlice for service `svc` with one IPv4 address.
pub(crate) fn slice(name: &str, svc: &str, ip: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/service-name: {svc}\naddressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\nports:\n- name: http\n  port: 9080\n"
    )
}

/// A Deployment: a kind Portolan does not read.
pub(crate) fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n"
    )
}

/// Documents joined into one YAML stream.
pub(crate) fn stream(docs: &[String]) -> String {
    docs.join("---\n")
}

/// A temporary directory of manifests and a [`crate::FileSource`] reading it.
pub(crate) struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, content).expect("write");
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).expect("remove");
    }

    pub fn rename(&self, from: &str, to: &str) {
        std::fs::rename(self.path(from), self.path(to)).expect("rename");
    }

    pub fn source(&self) -> crate::FileSource {
        crate::FileSource::new(self.dir.path())
    }
}
