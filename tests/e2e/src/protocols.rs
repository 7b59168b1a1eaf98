//! Clients for the protocols a Gateway forwards besides HTTP/1.1: cleartext HTTP/2 with prior
//! knowledge (h2c) and WebSocket (a whole echo round trip, or a session kept open).

use futures::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// One GET over cleartext HTTP/2 with prior knowledge to `addr:port` (`:authority` `host`): status, `x-upstream`, `x-seen-version`.
pub async fn h2c_get(
    addr: &str,
    port: u16,
    host: &str,
    path: &str,
) -> anyhow::Result<(u16, Option<String>, Option<String>)> {
    let stream = tokio::net::TcpStream::connect((addr, port)).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(format!("http://{host}{path}"))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Ok((
        resp.status().as_u16(),
        header("x-upstream"),
        header("x-seen-version"),
    ))
}

/// One WebSocket session to `addr:port` (Host `host`): a text and a binary message, each
/// echoed back.
pub async fn ws_round_trip(addr: &str, port: u16, host: &str, path: &str) -> anyhow::Result<()> {
    let mut ws = ws_connect(addr, port, host, path).await?;
    ws_echo(&mut ws, "Websocket Support!").await?;
    let binary = Message::binary(vec![1u8, 2, 3, 4, 5, 6, 7]);
    ws.send(binary.clone()).await?;
    let got = ws
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("closed before the echo"))??;
    anyhow::ensure!(got == binary, "sent {binary:?}, got {got:?}");
    ws.close(None).await?;
    Ok(())
}

/// A WebSocket session opened on `addr:port` with `Host: host` (the upgrade answered 101).
pub async fn ws_connect(
    addr: &str,
    port: u16,
    host: &str,
    path: &str,
) -> anyhow::Result<WebSocketStream<tokio::net::TcpStream>> {
    let stream = tokio::net::TcpStream::connect((addr, port)).await?;
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{host}{path}"), stream).await?;
    Ok(ws)
}

/// Sends `text` on `ws` and expects the same message back (an echo server).
pub async fn ws_echo(
    ws: &mut WebSocketStream<tokio::net::TcpStream>,
    text: &str,
) -> anyhow::Result<()> {
    let sent = Message::text(text);
    ws.send(sent.clone()).await?;
    let got = ws
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("closed before the echo"))??;
    anyhow::ensure!(got == sent, "sent {sent:?}, got {got:?}");
    Ok(())
}

/// One HTTP/1.1 connection kept open: every request goes over it, or fails if it closed
/// (where a pooled client would quietly open another).
pub struct KeptConnection {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
}

impl KeptConnection {
    /// Connects to `addr:port`.
    pub async fn open(addr: &str, port: u16) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect((addr, port)).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { sender })
    }

    /// GET `path` with `Host: host` on this connection: status and body.
    pub async fn get(&mut self, host: &str, path: &str) -> anyhow::Result<(u16, String)> {
        use http_body_util::BodyExt;
        let req = hyper::Request::builder()
            .uri(path)
            .header("host", host)
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
