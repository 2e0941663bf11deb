//! The HTTP application: the OCI API under `http.prefix`, health and metrics beside it, and the
//! wrappers (observe, configured headers, prefix rewriting) around both.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use berth_api::ApiError;
use berth_oci::ErrorCode;
use berth_registry::Registry;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::observe::{observe, Observe, RouteLabel};

/// Everything the application is built from.
pub struct Parts {
    /// The registry.
    pub registry: Arc<Registry>,
    /// Access control and the other API options.
    pub api: berth_api::ApiOptions,
    /// Health state.
    pub health: Health,
    /// Metrics, when served on the main port.
    pub metrics_on_main: Option<(String, Metrics)>,
    /// The observe wrapper's settings.
    pub observe: Arc<Observe>,
    /// `http.prefix` without a trailing slash.
    pub prefix: String,
    /// `http.headers`.
    pub headers: Vec<(String, String)>,
}

/// Builds the main router.
pub fn build(p: Parts) -> Router {
    let api = berth_api::router_with(p.registry, p.api);
    let mut app = health_routes(p.health);
    if let Some((path, m)) = p.metrics_on_main {
        app = app.route(
            &path,
            get(move || {
                let m = m.clone();
                async move { (Extension(RouteLabel("metrics")), m.render().await) }
            }),
        );
    }
    let app = if p.prefix.is_empty() {
        app.fallback_service(api)
    } else {
        let prefixed = Router::new()
            .fallback_service(api)
            .layer(from_fn_with_state(Arc::new(p.prefix.clone()), strip_prefix));
        app.fallback_service(prefixed)
    };
    app.layer(from_fn_with_state(p.observe, observe))
        .layer(from_fn_with_state(
            Arc::new(static_headers(&p.headers)),
            add_headers,
        ))
}

/// The debug listener's router: metrics and health.
pub fn debug_router(health: Health, metrics: Option<(String, Metrics)>) -> Router {
    let mut app = health_routes(health);
    if let Some((path, m)) = metrics {
        app = app.route(
            &path,
            get(move || {
                let m = m.clone();
                async move { (Extension(RouteLabel("metrics")), m.render().await) }
            }),
        );
    }
    app
}

fn health_routes(h: Health) -> Router {
    let (a, b, c) = (h.clone(), h.clone(), h);
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let h = a.clone();
                async move { (Extension(RouteLabel("health")), h.live().await) }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let h = b.clone();
                async move { (Extension(RouteLabel("health")), h.ready().await) }
            }),
        )
        .route(
            "/debug/health",
            get(move || {
                let h = c.clone();
                async move { (Extension(RouteLabel("health")), h.debug().await) }
            }),
        )
}

fn static_headers(h: &[(String, String)]) -> Vec<(HeaderName, HeaderValue)> {
    h.iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect()
}

async fn add_headers(
    State(h): State<Arc<Vec<(HeaderName, HeaderValue)>>>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    for (k, v) in h.iter() {
        resp.headers_mut().append(k.clone(), v.clone());
    }
    resp
}

/// Serves the API below `prefix`: strips it from requests, adds it to `Location` and `Link`.
async fn strip_prefix(State(prefix): State<Arc<String>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let Some(rest) = path
        .strip_prefix(prefix.as_str())
        .filter(|r| r.starts_with('/'))
    else {
        return not_found();
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    match pq.parse::<Uri>() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return not_found(),
    }
    let mut resp = next.run(req).await;
    for name in [header::LOCATION, header::LINK] {
        let Some(v) = resp.headers().get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let fixed = v.replacen("/v2/", &format!("{prefix}/v2/"), 1);
        if let Ok(v) = HeaderValue::from_str(&fixed) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// 404 for a path outside `http.prefix`, as OCI error JSON.
fn not_found() -> Response {
    ApiError::msg(
        ErrorCode::Unsupported,
        "unknown endpoint: the registry is served below http.prefix",
    )
    .status(StatusCode::NOT_FOUND)
    .into_response()
}
