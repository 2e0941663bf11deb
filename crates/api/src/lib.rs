//! Berth's HTTP layer.
//!
//! Design decision: one fallback handler receives every request, parses its path into an
//! [`Endpoint`] (repository names contain slashes, so path wildcards cannot route them), then
//! dispatches on `(endpoint, method)` to a handler in the module for that resource. Handlers call
//! the [`Registry`]; the registry never sees HTTP. Every failure is an [`ApiError`], whose body is
//! the OCI `{"errors":[…]}` JSON and whose status comes from the single code table in `berth_oci`.

mod blobs;
mod endpoint;
mod error;
mod listing;
mod manifests;
mod uploads;
mod util;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use berth_oci::ErrorCode;
use berth_registry::Registry;

pub use endpoint::{Endpoint, PathError};

/// Response extension naming the authenticated caller (user or robot), for access logs and
/// webhook events outside the API. Absent for anonymous requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticatedUser(pub String);
pub use error::ApiError;

use error::ApiResult;
use util::{empty, finish, Query};

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";
const SUBJECT_HEADER: &str = "oci-subject";
const FILTERS_HEADER: &str = "oci-filters-applied";
const CHUNK_MIN_HEADER: &str = "oci-chunk-min-length";
const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// The router serving the OCI Distribution API for `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new().fallback(dispatch).with_state(registry)
}

async fn dispatch(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let mut resp = route(&reg, req)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    resp
}

async fn route(reg: &Registry, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    let ep = Endpoint::parse(parts.uri.path())?;
    let q = Query::parse(parts.uri.query());
    let h = &parts.headers;
    let m = &parts.method;
    use Endpoint as E;
    match ep {
        E::Base if is_get(m) => base(),
        E::Catalog if m == Method::GET => listing::catalog(reg, &q).await,
        E::Tags(repo) if m == Method::GET => listing::tags(reg, &repo, &q).await,
        E::Referrers(repo, d) if m == Method::GET => listing::referrers(reg, &repo, &d, &q).await,
        E::Manifest(repo, r) if is_get(m) => manifests::get(reg, &repo, &r, m == Method::GET).await,
        E::Manifest(repo, r) if m == Method::PUT => {
            manifests::put(reg, &repo, &r, &q, h, body).await
        }
        E::Manifest(repo, r) if m == Method::DELETE => manifests::delete(reg, &repo, &r).await,
        E::Blob(repo, d) if m == Method::HEAD => blobs::head(reg, &repo, &d).await,
        E::Blob(repo, d) if m == Method::GET => blobs::get(reg, &repo, &d, h).await,
        E::Blob(repo, d) if m == Method::DELETE => blobs::delete(reg, &repo, &d).await,
        E::Uploads(repo) if m == Method::POST => uploads::start(reg, &repo, &q, h, body).await,
        E::Upload(repo, id) if m == Method::GET => uploads::status(reg, &repo, &id).await,
        E::Upload(repo, id) if m == Method::PATCH => uploads::patch(reg, &repo, &id, h, body).await,
        E::Upload(repo, id) if m == Method::PUT => {
            uploads::finish_upload(reg, &repo, &id, &q, h, body).await
        }
        E::Upload(repo, id) if m == Method::DELETE => uploads::cancel(reg, &repo, &id).await,
        other => Err(method_not_allowed(&other)),
    }
}

fn is_get(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

fn base() -> ApiResult {
    let b = empty(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, 2);
    finish(b, Body::from("{}"))
}

fn method_not_allowed(ep: &Endpoint) -> ApiError {
    let allow = match ep {
        Endpoint::Base => "GET, HEAD",
        Endpoint::Catalog | Endpoint::Tags(_) | Endpoint::Referrers(..) => "GET",
        Endpoint::Manifest(..) => "GET, HEAD, PUT, DELETE",
        Endpoint::Blob(..) => "GET, HEAD, DELETE",
        Endpoint::Uploads(_) => "POST",
        Endpoint::Upload(..) => "GET, PATCH, PUT, DELETE",
    };
    ApiError::msg(
        ErrorCode::Unsupported,
        "method not allowed on this endpoint",
    )
    .status(StatusCode::METHOD_NOT_ALLOWED)
    .header(header::ALLOW, allow)
}
