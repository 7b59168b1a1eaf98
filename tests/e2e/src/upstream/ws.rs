//! A WebSocket upstream, for backends whose Service port says `appProtocol: kubernetes.io/ws`:
//! it completes the HTTP/1.1 upgrade handshake on any path (counted in
//! [`Upstream::path_hits`]) and echoes every text and binary message back.

use super::{UpState, Upstream};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

// === impl Upstream ===

impl Upstream {
    /// Starts a WebSocket echo server on 127.0.0.1 with a free port.
    pub async fn start_ws(name: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = UpState::new(name);
        let task = tokio::spawn(serve_ws(listener, state.clone()));
        Ok(Self {
            name: name.to_string(),
            addr,
            state,
            task,
        })
    }
}

async fn serve_ws(listener: TcpListener, state: UpState) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        connections.spawn(echo(stream, state.clone()));
        while connections.try_join_next().is_some() {}
    }
}

/// Upgrades one connection and echoes its messages until the client closes it.
// The handshake callback's error type (an HTTP response) is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn echo(stream: TcpStream, state: UpState) {
    let count = |req: &Request, resp: Response| {
        state.count(req.uri().path());
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, count).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Text(_) | Message::Binary(_) => msg,
            Message::Close(_) => break,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}
