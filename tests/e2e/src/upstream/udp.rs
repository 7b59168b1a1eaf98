//! A UDP echo upstream: answers each datagram with `NAME: payload` to the address it came
//! from, so a client learns which backend a datagram reached ([`UdpEcho`]); and a client
//! that sends one datagram from a fresh socket (a new session for a UDP proxy) and reads the
//! answer ([`exchange`]).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The largest datagram the echo reads.
const MAX_DATAGRAM: usize = 2048;

/// A UDP echo server on `127.0.0.1`, stopped when dropped.
#[derive(Debug)]
pub struct UdpEcho {
    name: String,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UdpEcho {
    /// Binds a free port on `127.0.0.1` and answers every datagram with `NAME: payload`.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let prefix = format!("{name}: ");
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let mut reply = prefix.clone().into_bytes();
                reply.extend_from_slice(&buf[..n]);
                // A reply that cannot be sent is the client's loss, as with any UDP server.
                let _ = socket.send_to(&reply, from).await;
            }
        });
        Ok(Self {
            name: name.to_string(),
            addr,
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A Service `name` in `namespace` with one UDP port `port` (named `udp`) and an
    /// EndpointSlice holding this echo server behind it.
    pub fn service_yaml(&self, namespace: &str, port: u16) -> String {
        let name = &self.name;
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  ports:\n  - {{name: udp, port: {port}, protocol: UDP}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-udp\n  namespace: {namespace}\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nendpoints:\n- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\nports:\n- {{name: udp, port: {target}, protocol: UDP}}\n",
            ip = self.addr.ip(),
            target = self.addr.port(),
        )
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `payload` to `to` from a fresh socket on `127.0.0.1` and returns the answer, or an
/// error when none comes within `wait` (UDP has no other way to say "nobody answered").
pub async fn exchange(to: SocketAddr, payload: &str, wait: Duration) -> anyhow::Result<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.send_to(payload.as_bytes(), to).await?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let (n, _) = tokio::time::timeout(wait, socket.recv_from(&mut buf))
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {to} within {wait:?}"))??;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}
