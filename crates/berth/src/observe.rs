//! The per-request wrapper around the API: request id, access log line, metrics and webhook
//! events, all derived from what crossed the wire (the API and the registry stay unaware).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::events::{self, Facts};

/// Response header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Settings of the wrapper.
pub struct Observe {
    /// Write one access line per request.
    pub access_log: bool,
    /// Webhook events, when endpoints are configured.
    pub events: Option<events::Events>,
    /// `http.prefix` (stripped before classifying the path).
    pub prefix: String,
}

/// The middleware.
pub async fn observe(State(o): State<Arc<Observe>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(req.headers());
    let id_value = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("-"));
    req.headers_mut().insert(REQUEST_ID, id_value.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let api_path = path
        .strip_prefix(o.prefix.as_str())
        .unwrap_or(&path)
        .to_owned();
    let endpoint = endpoint_label(&api_path);
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let req_headers = o.events.as_ref().map(|_| req.headers().clone());
    let received = Arc::new(AtomicU64::new(0));
    let req = req.map(|b| {
        Body::new(Counted::new(
            b,
            received.clone(),
            endpoint,
            "berth_http_request_bytes_total",
        ))
    });
    let resp = next.run(req).await;
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(REQUEST_ID, id_value);
    let status = parts.status.as_u16();
    let elapsed = start.elapsed();
    let m = method_label(&method);
    metrics::counter!("berth_http_requests_total", "endpoint" => endpoint, "method" => m, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("berth_http_request_duration_seconds", "endpoint" => endpoint, "method" => m)
        .record(elapsed);
    let user = parts
        .extensions
        .get::<berth_api::AuthenticatedUser>()
        .map(|u| u.0.clone())
        .unwrap_or_default();
    if o.access_log && endpoint != "health" {
        let bytes = header_str(&parts.headers, header::CONTENT_LENGTH).unwrap_or("-");
        tracing::info!(
            target: "berth::access",
            request_id = %id,
            remote = %remote,
            user = %if user.is_empty() { "-" } else { &user },
            method = %method,
            path = %path,
            status,
            bytes,
            duration_ms = (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            "{method} {path} {status}"
        );
    }
    if let (Some(ev), Some(req_headers)) = (&o.events, req_headers) {
        ev.publish(&Facts {
            request_id: &id,
            remote: &remote,
            user: &user,
            method: &method,
            path: &api_path,
            query: query.as_deref(),
            req_headers: &req_headers,
            status,
            resp_headers: &parts.headers,
            received: received.load(Ordering::Relaxed),
        });
    }
    let counter = Arc::new(AtomicU64::new(0));
    Response::from_parts(
        parts,
        Body::new(Counted::new(
            body,
            counter,
            endpoint,
            "berth_http_response_bytes_total",
        )),
    )
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The client's `X-Request-Id` when it is sane (nginx sets one), else a fresh UUID v4 from the
/// thread's CSPRNG (`rand::random`); `Uuid::new_v4` would make a `getrandom` system call for every
/// request.
fn request_id(h: &HeaderMap) -> String {
    let given = h.get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|s| {
        (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    });
    given.map_or_else(
        || {
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string()
        },
        str::to_owned,
    )
}

/// A low-cardinality label for the path.
fn endpoint_label(path: &str) -> &'static str {
    use berth_api::Endpoint as E;
    match path {
        "/healthz" | "/readyz" | "/debug/health" => return "health",
        "/metrics" => return "metrics",
        _ => {}
    }
    match berth_api::Endpoint::parse(path) {
        Ok(E::Base) => "base",
        Ok(E::Catalog) => "catalog",
        Ok(E::Tags(_)) => "tags",
        Ok(E::Manifest(..)) => "manifest",
        Ok(E::Blob(..)) => "blob",
        Ok(E::Uploads(_)) => "blob_upload",
        Ok(E::Upload(..)) => "blob_upload_chunk",
        Ok(E::Referrers(..)) => "referrers",
        Err(_) => "other",
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// A body that counts its data bytes and adds them to a metric when dropped.
struct Counted {
    inner: Body,
    seen: u64,
    total: Arc<AtomicU64>,
    endpoint: &'static str,
    metric: &'static str,
}

impl Counted {
    fn new(
        inner: Body,
        total: Arc<AtomicU64>,
        endpoint: &'static str,
        metric: &'static str,
    ) -> Self {
        Counted {
            inner,
            seen: 0,
            total,
            endpoint,
            metric,
        }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                self.seen += n;
                self.total.fetch_add(n, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.seen > 0 {
            metrics::counter!(self.metric, "endpoint" => self.endpoint).increment(self.seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("bad id with spaces"));
        assert_eq!(request_id(&h).len(), 36);
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }

    #[test]
    fn fresh_request_ids_are_distinct_uuid_v4() {
        let a = request_id(&HeaderMap::new());
        let b = request_id(&HeaderMap::new());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn endpoint_labels() {
        assert_eq!(endpoint_label("/v2/"), "base");
        assert_eq!(endpoint_label("/v2/a/b/manifests/latest"), "manifest");
        assert_eq!(endpoint_label("/v2/a/blobs/uploads/"), "blob_upload");
        assert_eq!(endpoint_label("/readyz"), "health");
        assert_eq!(endpoint_label("/etc/passwd"), "other");
    }
}
