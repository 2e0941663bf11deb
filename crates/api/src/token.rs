//! `GET|POST /auth/token`: Berth's own token endpoint (Docker's registry token protocol).
//!
//! `GET ?service=&scope=…&scope=…` with optional basic credentials (users or robots; none means
//! an anonymous token), and the OAuth2 forms as a `POST` (`grant_type=password` with `username`
//! and `password`, or `grant_type=refresh_token` with `refresh_token`; plus `service`, `scope`).
//! A login that asks for offline access (`offline_token=true` on GET, `access_type=offline` on
//! POST) also gets a `refresh_token`. A bearer token is never accepted here: tokens do not mint
//! tokens (see `berth_auth`'s session module). The token grants the intersection of the
//! requested scopes and the policy; the answer is
//! `{"token","access_token","expires_in","issued_at","scope"[,"refresh_token"]}`. Every attempt
//! is an audit `login` line.

use axum::body::Body;
use axum::http::{header, request::Parts, Method, StatusCode};
use berth_auth::token::Session;
use berth_auth::{AuthFailure, Authenticator, Caller, Credentials, Scope, ScopeError};
use berth_oci::{quoted, ErrorCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::access::{claimed, credentials, token_unauthorized, too_many};
use crate::audit;
use crate::client::ClientInfo;
use crate::error::{ApiError, ApiResult};
use crate::util::{empty, finish, Query};

/// Largest accepted form body.
const FORM_LIMIT: usize = 64 * 1024;

/// How the client asks for a token.
enum Ask {
    /// Basic credentials (header or the password grant), none (anonymous), or something that
    /// cannot mint a token (a bearer token, an unreadable header).
    Login(Credentials),
    /// The OAuth2 refresh-token grant.
    Refresh(String),
}

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
    let (params, ask) = request(parts, body).await?;
    if let Some(svc) = params.get("service").filter(|s| *s != issuer.service()) {
        return Err(ApiError::msg(
            ErrorCode::Unsupported,
            format!("unknown service {}", quoted(svc)),
        )
        .status(StatusCode::BAD_REQUEST));
    }
    let scopes = scopes(&params)?;
    let (caller, session, who) = match ask {
        Ask::Refresh(t) => refreshed(auth, &t, client)?,
        Ask::Login(Credentials::Bearer(t)) => return Err(bearer_refused(auth, &t, client).await),
        Ask::Login(creds) => logged_in(auth, &creds, client).await?,
    };
    let minted = auth
        .mint(&caller, session.as_ref(), &scopes, offline(&params))
        .map_err(|e| {
            tracing::error!(error = %e, "cannot issue token");
            ApiError::new(ErrorCode::Unknown)
        })?;
    let granted: Vec<String> = minted.granted.iter().map(ToString::to_string).collect();
    tracing::debug!(who = %who, granted = ?granted, refresh = minted.refresh.is_some(), "token issued");
    let mut body = json!({
        "token": minted.access.token,
        "access_token": minted.access.token,
        "expires_in": minted.access.expires_in,
        "issued_at": minted.access.issued_at,
        "scope": granted.join(" "),
    });
    if let Some(r) = minted.refresh {
        body["refresh_token"] = r.into();
    }
    let b = empty(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store");
    finish(b, Body::from(body.to_string()))
}

/// Whether the client asks for a refresh token: `offline_token=true` (Docker's GET form) or
/// `access_type=offline` (the OAuth2 POST form).
fn offline(params: &Query) -> bool {
    params.get("offline_token") == Some("true") || params.get("access_type") == Some("offline")
}

type Authenticated = (Caller, Option<Session>, String);

async fn logged_in(
    auth: &Authenticator,
    creds: &Credentials,
    client: &ClientInfo,
) -> Result<Authenticated, ApiError> {
    let who = claimed(creds);
    let caller = match auth.authenticate(creds, &client.addr).await {
        Ok(c) => c,
        Err(f) => return Err(refuse(&who, f, client)),
    };
    if !matches!(creds, Credentials::None) {
        audit::login(&who, "token", true, "", client);
    }
    Ok((caller, None, who))
}

fn refreshed(
    auth: &Authenticator,
    token: &str,
    client: &ClientInfo,
) -> Result<Authenticated, ApiError> {
    match auth.refresh(token) {
        Ok((caller, session)) => {
            let who = session.subject.clone();
            audit::login(&who, "refresh", true, "", client);
            Ok((caller, Some(session), who))
        }
        Err(f) => {
            let why = match &f {
                AuthFailure::InvalidToken(e) => e.to_string(),
                other => format!("{other:?}"),
            };
            let who = auth
                .refresh_subject(token)
                .unwrap_or_else(|| "refresh-token".into());
            audit::login(&who, "refresh", false, &why, client);
            Err(token_unauthorized(&format!(
                "the refresh token is not valid ({why}); log in again"
            )))
        }
    }
}

/// A bearer token at the token endpoint: tokens never mint tokens. The audit line names the
/// token's subject when it verifies.
async fn bearer_refused(auth: &Authenticator, token: &str, client: &ClientInfo) -> ApiError {
    let creds = Credentials::Bearer(token.to_string());
    let who = match auth.authenticate(&creds, &client.addr).await {
        Ok(c) if !c.principal.is_anonymous() => c.principal.to_string(),
        Ok(_) => "anonymous".to_string(),
        Err(_) => claimed(&creds),
    };
    audit::login(&who, "token", false, "access token presented", client);
    token_unauthorized(
        "an access token cannot be exchanged for another token: log in with a user name and \
         password (or a robot secret), or use the refresh token of an offline login \
         (grant_type=refresh_token)",
    )
}

/// Query (GET) or form (POST) parameters, and how they ask for a token.
async fn request(parts: &Parts, body: Body) -> Result<(Query, Ask), ApiError> {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        let creds = credentials(&parts.headers);
        return Ok((Query::parse(parts.uri.query()), Ask::Login(creds)));
    }
    if parts.method != Method::POST {
        return Err(ApiError::msg(ErrorCode::Unsupported, "use GET or POST")
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, POST"));
    }
    let form = Query::parse(Some(&String::from_utf8_lossy(&read_form(body).await?)));
    let ask = match form.get("grant_type") {
        Some("password") => Ask::Login(Credentials::Basic {
            user: form.get("username").unwrap_or_default().to_string(),
            password: form.get("password").unwrap_or_default().to_string(),
        }),
        Some("refresh_token") => match form.get("refresh_token").filter(|t| !t.is_empty()) {
            Some(t) => Ask::Refresh(t.to_string()),
            None => {
                return Err(ApiError::msg(
                    ErrorCode::Unsupported,
                    "grant_type refresh_token needs a refresh_token parameter",
                )
                .status(StatusCode::BAD_REQUEST))
            }
        },
        Some(other) => {
            return Err(ApiError::msg(
                ErrorCode::Unsupported,
                format!(
                    "grant_type {} is not supported (use password or refresh_token)",
                    quoted(other)
                ),
            )
            .status(StatusCode::BAD_REQUEST))
        }
        None => Ask::Login(credentials(&parts.headers)),
    };
    Ok((form, ask))
}

/// The form body, at most [`FORM_LIMIT`] bytes.
async fn read_form(body: Body) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(body, FORM_LIMIT).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::msg(
            ErrorCode::SizeTooLarge,
            format!("a token request form is at most {FORM_LIMIT} bytes"),
        )),
        Err(e) => {
            tracing::debug!(error = %e, "token request body unreadable");
            Err(
                ApiError::msg(ErrorCode::Unsupported, "the request body could not be read")
                    .status(StatusCode::BAD_REQUEST),
            )
        }
    }
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
