//! Clients for the protocols a Gateway forwards besides HTTP/1.1: cleartext HTTP/2 with prior
//! knowledge (h2c) and WebSocket.

use futures::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
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
    let stream = tokio::net::TcpStream::connect((addr, port)).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{host}{path}"), stream).await?;
    let text = Message::text("Websocket Support!");
    let binary = Message::binary(vec![1u8, 2, 3, 4, 5, 6, 7]);
    for sent in [text, binary] {
        ws.send(sent.clone()).await?;
        let got = ws
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("closed before the echo"))??;
        anyhow::ensure!(got == sent, "sent {sent:?}, got {got:?}");
    }
    ws.close(None).await?;
    Ok(())
}
