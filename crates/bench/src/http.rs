//! The HTTP layer: hyper-util's pooled keep-alive client, a zero-copy request body made of
//! shared [`Bytes`] frames, and response helpers that drain bodies without buffering blobs.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use sha2::Digest as _;

use crate::auth::{Auth, Scope};
use crate::{BenchError, Result};

/// A request body made of shared frames; cloning it clones reference counts, not bytes.
#[derive(Clone, Default)]
pub(crate) struct Body {
    frames: VecDeque<Bytes>,
    len: u64,
}

impl Body {
    /// An empty body.
    pub(crate) fn empty() -> Body {
        Body::default()
    }

    /// A body of the given frames, sent in order.
    pub(crate) fn from_frames(frames: impl IntoIterator<Item = Bytes>) -> Body {
        let frames: VecDeque<Bytes> = frames.into_iter().filter(|b| !b.is_empty()).collect();
        let len = frames.iter().map(|b| b.len() as u64).sum();
        Body { frames, len }
    }

    /// Total length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .frames
                .pop_front()
                .map(|b| Ok(Frame::data(b))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.frames.iter().map(|b| b.len() as u64).sum())
    }
}

/// One request, kept rebuildable so it can be replayed after an auth challenge.
pub(crate) struct Req {
    pub method: Method,
    /// Absolute URL or a path on the registry.
    pub target: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Body,
}

impl Req {
    pub(crate) fn new(method: Method, target: impl Into<String>) -> Req {
        Req {
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Body::empty(),
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &'static str) -> Req {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Req {
        self.body = body;
        self
    }

    /// `METHOD path`, for error messages.
    pub(crate) fn what(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// The registry client: base URL, connection pool, credentials.
pub(crate) struct Client {
    http: HyperClient<HttpConnector, Body>,
    base: String,
    auth: Auth,
}

impl Client {
    pub(crate) fn new(base: &str, user: Option<String>, password: Option<String>) -> Client {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth: Auth::new(user, password),
        }
    }

    /// Resolves a path or absolute URL against the registry base.
    pub(crate) fn url(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_string()
        } else {
            format!("{}{}", self.base, target)
        }
    }

    /// Sends a request, answering one auth challenge (basic, or bearer via the token realm).
    pub(crate) async fn send(&self, req: &Req) -> Result<Response<Incoming>> {
        let scope = Scope::of(&req.method, &req.target);
        let cached = self.auth.cached(&scope);
        let resp = self.raw(req, cached.clone()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        drain(resp).await?;
        let Some(challenge) = challenge else {
            return Err(BenchError::Protocol(format!(
                "{}: 401 without WWW-Authenticate",
                req.what()
            )));
        };
        let header = self.auth.answer(self, &challenge, &scope).await?;
        self.raw(req, Some(header)).await
    }

    /// Sends a request as given plus an optional Authorization header.
    pub(crate) async fn raw(
        &self,
        req: &Req,
        authorization: Option<HeaderValue>,
    ) -> Result<Response<Incoming>> {
        let mut builder = Request::builder()
            .method(req.method.clone())
            .uri(self.url(&req.target));
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        if req.body.len() > 0 || needs_length(&req.method) {
            builder = builder.header(CONTENT_LENGTH, req.body.len());
        }
        let request = builder
            .body(req.body.clone())
            .map_err(|e| BenchError::Http(format!("{}: {e}", req.what())))?;
        self.http
            .request(request)
            .await
            .map_err(|e| BenchError::Http(format!("{}: {}", req.what(), error_chain(&e))))
    }

    /// Sends and checks the status; the response is returned for headers and body.
    pub(crate) async fn expect(&self, req: &Req, ok: &[u16]) -> Result<Response<Incoming>> {
        let resp = self.send(req).await?;
        if ok.contains(&resp.status().as_u16()) {
            return Ok(resp);
        }
        Err(status_error(&req.what(), resp).await)
    }
}

fn needs_length(method: &Method) -> bool {
    *method == Method::PUT || *method == Method::POST || *method == Method::PATCH
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Builds a [`BenchError::Status`] with the start of the response body.
pub(crate) async fn status_error(what: &str, resp: Response<Incoming>) -> BenchError {
    let status = resp.status().as_u16();
    let body = match read_small(resp, 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned(),
        Err(e) => format!("(body unreadable: {e})"),
    };
    BenchError::Status {
        what: what.to_string(),
        status,
        body,
    }
}

/// Reads and discards a response body; returns its length.
pub(crate) async fn drain(resp: Response<Incoming>) -> Result<u64> {
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BenchError::Http(format!("reading body: {e}")))?;
        if let Some(d) = frame.data_ref() {
            n += d.len() as u64;
        }
    }
    Ok(n)
}

/// Reads a body while hashing it; returns its length and `sha256:<hex>`.
pub(crate) async fn drain_sha256(resp: Response<Incoming>) -> Result<(u64, String)> {
    let mut body = resp.into_body();
    let mut hasher = sha2::Sha256::new();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BenchError::Http(format!("reading body: {e}")))?;
        if let Some(d) = frame.data_ref() {
            n += d.len() as u64;
            hasher.update(d);
        }
    }
    Ok((n, format!("sha256:{}", hex::encode(hasher.finalize()))))
}

/// Reads a body of at most `limit` bytes (manifests, JSON listings).
pub(crate) async fn read_small(resp: Response<Incoming>, limit: usize) -> Result<Bytes> {
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BenchError::Http(format!("reading body: {e}")))?;
        if let Some(d) = frame.data_ref() {
            if buf.len() + d.len() > limit {
                return Err(BenchError::Protocol(format!(
                    "response body over {limit} bytes"
                )));
            }
            buf.extend_from_slice(d);
        }
    }
    Ok(Bytes::from(buf))
}

/// A response header as a string, if present and ASCII.
pub(crate) fn header<'a>(resp: &'a Response<Incoming>, name: &HeaderName) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_frames_and_length() {
        let b = Body::from_frames([
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"c"),
        ]);
        assert_eq!(b.len(), 3);
        assert_eq!(b.frames.len(), 2, "empty frames are dropped");
        assert_eq!(http_body::Body::size_hint(&b).exact(), Some(3));
    }

    #[test]
    fn urls_resolve_against_base() {
        let c = Client::new("http://127.0.0.1:5000/", None, None);
        assert_eq!(c.url("/v2/"), "http://127.0.0.1:5000/v2/");
        assert_eq!(c.url("http://other:1/x"), "http://other:1/x");
    }
}
