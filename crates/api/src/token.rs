//! `GET|POST /auth/token`: Berth's own token endpoint (Docker's registry token protocol).
//!
//! `GET ?service=&scope=…&scope=…` with optional basic credentials (users or robots; none means
//! an anonymous token), and the OAuth2 password grant as a `POST` form (`grant_type=password`,
//! `username`, `password`, `service`, `scope`). The token grants the intersection of the requested
//! scopes and the policy; the answer is `{"token","access_token","expires_in","issued_at"}`.
//! Every attempt is an audit `login` line.

use axum::body::Body;
use axum::http::{header, request::Parts, Method, StatusCode};
use berth_auth::{AuthFailure, Authenticator, Credentials, Scope, ScopeError};
use berth_oci::ErrorCode;
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use crate::access::{claimed, credentials, token_unauthorized, too_many};
use crate::audit;
use crate::client::ClientInfo;
use crate::error::{ApiError, ApiResult};
use crate::util::{empty, finish, Query};

/// Largest accepted form body.
const FORM_LIMIT: usize = 64 * 1024;

/// Handles a token request.
pub async fn handle(
    auth: &Authenticator,
    parts: &Parts,
    body: Body,
    client: &ClientInfo,
) -> ApiResult {
    let issuer = auth.issuer().ok_or_else(|| {
        ApiError::msg(ErrorCode::Unsupported, "unknown endpoint").status(StatusCode::NOT_FOUND)
    })?;
    let (params, creds) = request(parts, body).await?;
    if let Some(svc) = params.get("service").filter(|s| *s != issuer.service()) {
        return Err(
            ApiError::msg(ErrorCode::Unsupported, format!("unknown service {svc:?}"))
                .status(StatusCode::BAD_REQUEST),
        );
    }
    let scopes = scopes(&params)?;
    let who = claimed(&creds);
    let caller = match auth.authenticate(&creds, &client.addr).await {
        Ok(c) => c,
        Err(f) => return Err(refuse(&who, f, client)),
    };
    if !matches!(creds, Credentials::None) {
        audit::login(&who, "token", true, "", client);
    }
    let granted = auth.grant(&caller, &scopes);
    let subject = if caller.principal.is_anonymous() {
        String::new()
    } else {
        caller.principal.to_string()
    };
    let t = issuer.issue(&subject, &granted).map_err(|e| {
        tracing::error!(error = %e, "cannot issue token");
        ApiError::new(ErrorCode::Unknown)
    })?;
    let granted_str: Vec<String> = granted.iter().map(ToString::to_string).collect();
    tracing::debug!(who = %who, granted = ?granted_str, "token issued");
    let body = json!({
        "token": t.token,
        "access_token": t.token,
        "expires_in": t.expires_in,
        "issued_at": t.issued_at,
        "scope": granted_str.join(" "),
    })
    .to_string();
    let b = empty(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store");
    finish(b, Body::from(body))
}

/// Query (GET) or form (POST) parameters, and the credentials they or the header carry.
async fn request(parts: &Parts, body: Body) -> Result<(Query, Credentials), ApiError> {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return Ok((Query::parse(parts.uri.query()), credentials(&parts.headers)));
    }
    if parts.method != Method::POST {
        return Err(ApiError::msg(ErrorCode::Unsupported, "use GET or POST")
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, POST"));
    }
    let bytes = Limited::new(body, FORM_LIMIT)
        .collect()
        .await
        .map_err(|_| ApiError::new(ErrorCode::SizeTooLarge))?
        .to_bytes();
    let form = Query::parse(Some(&String::from_utf8_lossy(&bytes)));
    let creds = match form.get("grant_type") {
        Some("password") => Credentials::Basic {
            user: form.get("username").unwrap_or_default().to_string(),
            password: form.get("password").unwrap_or_default().to_string(),
        },
        Some(other) => {
            return Err(ApiError::msg(
                ErrorCode::Unsupported,
                format!("grant_type {other:?} is not supported (use password)"),
            )
            .status(StatusCode::BAD_REQUEST))
        }
        None => credentials(&parts.headers),
    };
    Ok((form, creds))
}

fn scopes(params: &Query) -> Result<Vec<Scope>, ApiError> {
    let mut out = Vec::new();
    for s in params.all("scope") {
        out.extend(Scope::parse_many(s).map_err(|e| {
            match e {
                ScopeError::Name(_) => ApiError::msg(ErrorCode::NameInvalid, e.to_string()),
                other => ApiError::msg(ErrorCode::Unsupported, other.to_string())
                    .status(StatusCode::BAD_REQUEST),
            }
        })?);
    }
    Ok(out)
}

fn refuse(who: &str, f: AuthFailure, client: &ClientInfo) -> ApiError {
    match f {
        AuthFailure::RateLimited(retry) => {
            audit::login(who, "token", false, "rate limited", client);
            too_many(retry)
        }
        AuthFailure::BadCredentials(why) | AuthFailure::NotAccepted(why) => {
            audit::login(who, "token", false, why, client);
            token_unauthorized("invalid credentials")
        }
        AuthFailure::InvalidToken(e) => {
            audit::login(who, "token", false, "bearer token", client);
            token_unauthorized(&format!("log in with a user or robot, not a token ({e})"))
        }
    }
}
