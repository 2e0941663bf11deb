//! Berth's HTTP layer.
//!
//! Design decision: one fallback handler receives every request, parses its path into an
//! [`Endpoint`] (repository names contain slashes, so path wildcards cannot route them), then
//! dispatches on `(endpoint, method)` to a handler in the module for that resource. Handlers call
//! the [`Registry`]; the registry never sees HTTP. Every failure is an [`ApiError`], whose body is
//! the OCI `{"errors":[…]}` JSON and whose status comes from the single code table in `berth_oci`.
//!
//! Access control is an explicit step of that same dispatch, right after parsing: the endpoint
//! says which repository and actions it needs ([`access`]), the `berth_auth::Authenticator`
//! decides, and only then does a handler run. Pushes, mounts, deletes and logins are written to
//! the audit log ([`audit`]) whatever the outcome.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod access;
mod audit;
mod blobs;
mod client;
mod endpoint;
mod error;
mod listing;
mod manifests;
mod token;
mod uploads;
mod util;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use berth_auth::{Authenticator, Caller};
use berth_oci::ErrorCode;
use berth_registry::{Origin, Registry, RequestFacts};

pub use audit::AuditLog;
pub use client::{ClientInfo, IpNet};
pub use endpoint::{Classified, Endpoint, EndpointKind, PathError};

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
const TAG_HEADER: &str = "oci-tag";
const FILTERS_HEADER: &str = "oci-filters-applied";
const CHUNK_MIN_HEADER: &str = "oci-chunk-min-length";
const API_VERSION_HEADER: &str = "docker-distribution-api-version";
/// The request id the binary's wrapper puts on every request (and answers).
const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the HTTP layer needs besides the registry.
#[derive(Clone, Default)]
pub struct ApiOptions {
    /// Authentication and authorization; `None` serves everyone (registry:2 without `auth`).
    pub auth: Option<Arc<Authenticator>>,
    /// Proxies whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Whether Berth itself serves TLS (the scheme of realm URLs built from requests).
    pub https: bool,
    /// `http.prefix` the API is served below (part of realm URLs built from requests).
    pub prefix: String,
}

#[derive(Clone)]
struct AppState {
    reg: Arc<Registry>,
    opts: Arc<ApiOptions>,
}

/// The router serving the OCI Distribution API for `registry`, without access control.
pub fn router(registry: Arc<Registry>) -> Router {
    router_with(registry, ApiOptions::default())
}

/// The router with options (authentication, trusted proxies).
pub fn router_with(registry: Arc<Registry>, opts: ApiOptions) -> Router {
    let state = AppState {
        reg: registry,
        opts: Arc::new(opts),
    };
    Router::new().fallback(dispatch).with_state(state)
}

/// Parses the path once and answers with the [`EndpointKind`] it addresses (a response
/// extension, for the wrappers' metrics), whatever the outcome.
async fn dispatch(State(st): State<AppState>, req: Request) -> Response {
    let classified = Endpoint::classify(req.uri().path());
    let kind = classified.kind;
    let mut resp = route(&st, req, classified.endpoint)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    if let Some(kind) = kind {
        resp.extensions_mut().insert(kind);
    }
    resp
}

async fn route(st: &AppState, req: Request, endpoint: Result<Endpoint, PathError>) -> ApiResult {
    let (parts, body) = req.into_parts();
    let mut client = ClientInfo::from_parts(&parts, &st.opts.trusted_proxies, st.opts.https);
    client.prefix.clone_from(&st.opts.prefix);
    if parts.uri.path() == berth_auth::TOKEN_PATH {
        if let Some(auth) = &st.opts.auth {
            return token::handle(auth, &parts, body, &client).await;
        }
    }
    let ep = endpoint.map_err(|e| ApiError::from_path(e, &parts.method))?;
    let asked = Query::parse(parts.uri.query());
    let mut q = asked.clone();
    let mut user = None;
    let remote = client.remote();
    let (who, result) = match &st.opts.auth {
        None => {
            let origin = origin(&parts, &client, &remote, "");
            let r = handle(&st.reg, ep.clone(), &parts, q, body, None, &origin).await;
            ("-".to_string(), r)
        }
        Some(auth) => {
            let who = access::claimed(&access::credentials(&parts.headers));
            match access::check(auth, &ep, &parts.method, &mut q, &parts.headers, &client).await {
                Ok(caller) => {
                    let who = caller.principal.to_string();
                    let actor = if caller.principal.is_anonymous() {
                        ""
                    } else {
                        who.as_str()
                    };
                    let origin = origin(&parts, &client, &remote, actor);
                    let auth = Some((auth.as_ref(), &caller));
                    let r = handle(&st.reg, ep.clone(), &parts, q, body, auth, &origin).await;
                    if !actor.is_empty() {
                        user = Some(AuthenticatedUser(who.clone()));
                    }
                    (who, r)
                }
                Err(e) => (who, Err(e)),
            }
        }
    };
    // Successful changes are audited from the registry's events ([`audit::AuditLog`]).
    audit::refusal(
        &ep,
        &parts.method,
        &asked,
        &who,
        &client,
        access::status_of(&result),
    );
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(u) = user {
        resp.extensions_mut().insert(u);
    }
    Ok(resp)
}

/// The registry's view of who sent this request, for its events.
fn origin<'a>(
    parts: &'a Parts,
    client: &'a ClientInfo,
    remote: &'a str,
    actor: &'a str,
) -> Origin<'a> {
    let h = &parts.headers;
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    Origin {
        actor,
        request: Some(RequestFacts {
            id: text(REQUEST_ID_HEADER),
            addr: remote,
            host: text(header::HOST.as_str()),
            method: parts.method.as_str(),
            user_agent: &client.user_agent,
        }),
    }
}

async fn handle(
    reg: &Registry,
    ep: Endpoint,
    parts: &Parts,
    q: Query,
    body: Body,
    caller: Option<(&Authenticator, &Caller)>,
    o: &Origin<'_>,
) -> ApiResult {
    let h = &parts.headers;
    let m = &parts.method;
    use Endpoint as E;
    match ep {
        E::Base if is_get(m) => base(),
        E::Catalog if m == Method::GET => match caller {
            Some((auth, c)) => {
                let visible = |r: &berth_oci::RepoName| auth.lists(c, r);
                listing::catalog_filtered(reg, &q, &visible).await
            }
            None => listing::catalog(reg, &q).await,
        },
        E::Tags(repo) if m == Method::GET => listing::tags(reg, &repo, &q).await,
        E::Referrers(repo, d) if m == Method::GET => listing::referrers(reg, &repo, &d, &q).await,
        E::Manifest(repo, r) if m == Method::GET => manifests::get(reg, &repo, &r, o).await,
        E::Manifest(repo, r) if m == Method::HEAD => manifests::head(reg, &repo, &r).await,
        E::Manifest(repo, r) if m == Method::PUT => {
            manifests::put(reg, &repo, &r, &q, h, body, o).await
        }
        E::Manifest(repo, r) if m == Method::DELETE => manifests::delete(reg, &repo, &r, o).await,
        E::Blob(repo, d) if m == Method::HEAD => blobs::head(reg, &repo, &d).await,
        E::Blob(repo, d) if m == Method::GET => blobs::get(reg, &repo, &d, h, o).await,
        E::Blob(repo, d) if m == Method::DELETE => blobs::delete(reg, &repo, &d, o).await,
        E::Uploads(repo) if m == Method::POST => uploads::start(reg, &repo, &q, h, body, o).await,
        E::Upload(repo, id) if m == Method::GET => uploads::status(reg, &repo, &id).await,
        E::Upload(repo, id) if m == Method::PATCH => uploads::patch(reg, &repo, &id, h, body).await,
        E::Upload(repo, id) if m == Method::PUT => {
            uploads::finish_upload(reg, &repo, &id, &q, h, body, o).await
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
