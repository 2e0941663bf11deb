//! The per-request wrapper around the API: request id, access log line and HTTP metrics.
//!
//! What a request did to the registry is not its business: webhooks, the audit log and the
//! registry metrics hear of that from the registry's domain events. The endpoint label comes
//! from the router, which answers with the [`EndpointKind`] it parsed (a response extension);
//! the routes beside the API (health, metrics) answer with a [`RouteLabel`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use metrics::{Counter, Histogram};

use berth_api::EndpointKind;

use crate::listener::body::{answer_too_slow, BodyTrip};

/// Response header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Settings of the wrapper.
pub struct Observe {
    /// Write one access line per request.
    pub access_log: bool,
}

/// Response extension naming the metrics label of a route outside the OCI API (`health`,
/// `metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLabel(pub &'static str);

/// What only the access log reads; copied only when it is on.
struct Detail {
    method: Method,
    path: String,
    remote: String,
    /// Whether the request sent credentials (a 401 to it is a refusal, not a challenge).
    credentials: bool,
}

impl Detail {
    fn of(req: &Request) -> Detail {
        Detail {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            remote: req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string())
                .unwrap_or_default(),
            credentials: req.headers().contains_key(header::AUTHORIZATION),
        }
    }
}

/// The middleware. With the access log off it allocates only the request id, the request-byte
/// tally and the two byte-counting body wrappers: every request pays for it.
pub async fn observe(State(o): State<Arc<Observe>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(req.headers());
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let method = method_label(req.method());
    let detail = o.access_log.then(|| Detail::of(&req));
    // The endpoint is known once the router answered; the request body is counted until then.
    let received = Arc::new(AtomicU64::new(0));
    let req = req.map(|b| Body::new(Counted::request(b, received.clone())));
    let (version, trip) = (req.version(), req.extensions().get::<BodyTrip>().cloned());
    let resp = next.run(req).await;
    // A body the listener cut off for its rate is answered (and logged, and counted) as 408.
    let resp = answer_too_slow(resp, trip.as_ref(), version);
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(REQUEST_ID, id.clone());
    let endpoint = endpoint_label(&parts.extensions);
    let status = parts.status.as_u16();
    record_request(endpoint, method, status, start.elapsed());
    let got = received.load(Ordering::Relaxed);
    if got > 0 {
        bytes_counter("berth_http_request_bytes_total", endpoint).increment(got);
    }
    if let Some(d) = detail.filter(|_| endpoint != "health") {
        let id = id.to_str().unwrap_or("-");
        let user = parts
            .extensions
            .get::<berth_api::AuthenticatedUser>()
            .map_or("", |u| u.0.as_str());
        access_line(&d, id, user, status, &parts.headers, start.elapsed());
    }
    Response::from_parts(
        parts,
        Body::new(Counted::response(
            body,
            endpoint,
            "berth_http_response_bytes_total",
        )),
    )
}

fn access_line(d: &Detail, id: &str, user: &str, status: u16, h: &HeaderMap, took: Duration) {
    let bytes = header_str(h, header::CONTENT_LENGTH).unwrap_or("-");
    let (method, path) = (&d.method, &d.path);
    let user = if user.is_empty() { "-" } else { user };
    let duration_ms = (took.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "berth::access",
                $level,
                request_id = %id,
                remote = %d.remote,
                user = %user,
                method = %method,
                path = %path,
                status,
                bytes,
                duration_ms,
                "{method} {path} {status}"
            )
        };
    }
    if refused(status, d.credentials) {
        line!(tracing::Level::WARN);
    } else {
        line!(tracing::Level::INFO);
    }
}

/// Whether an answer refuses the caller and belongs at WARN: 403 and 429 always, 401 when the
/// request carried credentials (a 401 to a request without any is the normal challenge every
/// client meets first).
fn refused(status: u16, credentials: bool) -> bool {
    matches!(status, 403 | 429) || (status == 401 && credentials)
}

/// Counts and times one request. The handles are cached per thread: `counter!` with labels
/// builds, hashes and looks up its key in the recorder on every call (allocating the labels).
/// The key space is small and bounded (endpoint × method × status).
fn record_request(endpoint: &'static str, method: &'static str, status: u16, took: Duration) {
    type Handles = HashMap<(&'static str, &'static str, u16), (Counter, Histogram)>;
    thread_local!(static HANDLES: RefCell<Handles> = RefCell::new(HashMap::new()));
    HANDLES.with_borrow_mut(|h| {
        let (count, time) = h.entry((endpoint, method, status)).or_insert_with(|| {
            let (e, m) = ("endpoint", "method");
            (
                metrics::counter!("berth_http_requests_total", e => endpoint, m => method, "status" => status.to_string()),
                metrics::histogram!("berth_http_request_duration_seconds", e => endpoint, m => method),
            )
        });
        count.increment(1);
        time.record(took);
    });
}

/// The byte counter of `metric` for `endpoint`, cached per thread like [`record_request`].
fn bytes_counter(metric: &'static str, endpoint: &'static str) -> Counter {
    type Handles = HashMap<(&'static str, &'static str), Counter>;
    thread_local!(static HANDLES: RefCell<Handles> = RefCell::new(HashMap::new()));
    HANDLES.with_borrow_mut(|h| {
        h.entry((metric, endpoint))
            .or_insert_with(|| metrics::counter!(metric, "endpoint" => endpoint))
            .clone()
    })
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The client's `X-Request-Id` when it is sane (nginx sets one), else a fresh UUID v4 from the
/// thread's CSPRNG (`rand::random`); `Uuid::new_v4` would make a `getrandom` system call for every
/// request.
fn request_id(h: &HeaderMap) -> HeaderValue {
    let given = h.get(REQUEST_ID).filter(|v| {
        (1..=128).contains(&v.len())
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    given.cloned().unwrap_or_else(|| {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
            .unwrap_or(HeaderValue::from_static("-"))
    })
}

/// The low-cardinality label of what answered: the API's [`EndpointKind`], a route's
/// [`RouteLabel`], else `other` (unknown paths, the token endpoint).
fn endpoint_label(answer: &axum::http::Extensions) -> &'static str {
    use EndpointKind as K;
    if let Some(RouteLabel(label)) = answer.get::<RouteLabel>() {
        return label;
    }
    match answer.get::<EndpointKind>() {
        Some(K::Base) => "base",
        Some(K::Catalog) => "catalog",
        Some(K::Tags) => "tags",
        Some(K::Manifest) => "manifest",
        Some(K::Blob) => "blob",
        Some(K::Uploads) => "blob_upload",
        Some(K::Upload) => "blob_upload_chunk",
        Some(K::Referrers) => "referrers",
        None => "other",
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

/// A body that counts its data bytes: a request's into a tally the middleware reads once the
/// endpoint is known, a response's into its metric when dropped.
struct Counted {
    inner: Body,
    seen: u64,
    total: Option<Arc<AtomicU64>>,
    metric: Option<(&'static str, &'static str)>,
}

impl Counted {
    fn request(inner: Body, total: Arc<AtomicU64>) -> Self {
        Counted {
            inner,
            seen: 0,
            total: Some(total),
            metric: None,
        }
    }

    fn response(inner: Body, endpoint: &'static str, metric: &'static str) -> Self {
        Counted {
            inner,
            seen: 0,
            total: None,
            metric: Some((metric, endpoint)),
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
                if let Some(total) = &self.total {
                    total.fetch_add(n, Ordering::Relaxed);
                }
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
        if let Some((metric, endpoint)) = self.metric.filter(|_| self.seen > 0) {
            bytes_counter(metric, endpoint).increment(self.seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_warnings_challenges_are_not() {
        assert!(refused(403, false) && refused(429, false) && refused(401, true));
        assert!(
            !refused(401, false),
            "the first 401 of every token flow is a challenge"
        );
        assert!(!refused(200, true) && !refused(404, true) && !refused(500, true));
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_static("bad id with spaces"));
        assert_eq!(request_id(&h).len(), 36);
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
        h.insert(REQUEST_ID, HeaderValue::from_str(&"x".repeat(129)).unwrap());
        assert_eq!(request_id(&h).len(), 36);
    }

    #[test]
    fn fresh_request_ids_are_distinct_uuid_v4() {
        let a = request_id(&HeaderMap::new());
        let b = request_id(&HeaderMap::new());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(a.to_str().unwrap()).expect("a UUID");
        assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn endpoint_labels_come_from_the_answer() {
        let mut x = axum::http::Extensions::new();
        assert_eq!(endpoint_label(&x), "other");
        x.insert(EndpointKind::Upload);
        assert_eq!(endpoint_label(&x), "blob_upload_chunk");
        x.insert(EndpointKind::Manifest);
        assert_eq!(endpoint_label(&x), "manifest");
        let mut h = axum::http::Extensions::new();
        h.insert(RouteLabel("health"));
        assert_eq!(endpoint_label(&h), "health");
    }
}
