//! Plain HTTP requests to a listener on 127.0.0.1 with any Host header, and what came back.

use crate::client;
use reqwest::Method;
use reqwest::header::HeaderMap;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A response, read whole, with how long it took.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    pub elapsed: Duration,
}

// === impl Reply ===

impl Reply {
    /// A response header as text (the first value).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a response header.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The upstream that answered (`x-upstream`), if any did.
    pub fn upstream(&self) -> Option<&str> {
        self.header("x-upstream")
    }

    /// The body of an upstream's `/headers` answer: request header name -> values.
    pub fn seen_headers(&self) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        serde_json::from_str(&self.body)
            .map_err(|e| anyhow::anyhow!("not a /headers answer ({e}): {:?}", self.body))
    }
}

/// A request to `http://127.0.0.1:{port}{path}` carrying `Host: {host}`.
pub fn request(port: u16, method: Method, host: &str, path: &str) -> reqwest::RequestBuilder {
    client()
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .header("host", host)
}

/// Sends a request and reads the whole response.
pub async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
    let start = Instant::now();
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await?;
    Ok(Reply {
        status,
        headers,
        body,
        elapsed: start.elapsed(),
    })
}

/// GET with `Host: {host}` on a port of 127.0.0.1.
pub async fn get(port: u16, host: &str, path: &str) -> anyhow::Result<Reply> {
    send(request(port, Method::GET, host, path)).await
}
