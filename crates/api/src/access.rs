//! Authentication and authorization of `/v2` requests.
//!
//! Every endpoint maps to what it needs: `GET /v2/` any valid credentials; the catalog an
//! authenticated caller (and the listing is filtered to what it may pull); reads `pull`; uploads
//! and manifest puts `push`; deletes `delete`. A cross-repository mount also needs `pull` on the
//! source: without it the mount is not attempted and a plain upload session starts instead, so
//! nothing can be copied out of a repository the caller may not read.
//!
//! Answers: no or invalid credentials → 401 `UNAUTHORIZED` with the challenge; valid
//! credentials without the right → 403 `DENIED` (or 401 with `error="insufficient_scope"` when a
//! new token would grant it); too many failed logins → 429 `TOOMANYREQUESTS` with `Retry-After`.

use axum::http::{header, HeaderMap, Method, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use berth_auth::{
    Action, Actions, AuthFailure, Authenticator, Caller, Challenge, Credentials, Decision, Realm,
    Scope,
};
use berth_oci::{ErrorCode, RepoName};

use crate::audit;
use crate::client::ClientInfo;
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::util::Query;

/// What an endpoint requires.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    Base,
    Catalog,
    Repo(RepoName, Actions),
}

fn need(ep: &Endpoint, m: &Method) -> Need {
    use Endpoint as E;
    let act = |a: Action| Actions::only(a);
    let read_or = |other: Action| {
        if m == Method::GET || m == Method::HEAD {
            act(Action::Pull)
        } else {
            act(other)
        }
    };
    match ep {
        E::Base => Need::Base,
        E::Catalog => Need::Catalog,
        E::Tags(r) | E::Referrers(r, _) => Need::Repo(r.clone(), act(Action::Pull)),
        E::Manifest(r, _) if m == Method::PUT => Need::Repo(r.clone(), act(Action::Push)),
        E::Manifest(r, _) | E::Blob(r, _) => Need::Repo(r.clone(), read_or(Action::Delete)),
        E::Uploads(r) | E::Upload(r, _) => Need::Repo(r.clone(), act(Action::Push)),
    }
}

/// Parses the `Authorization` header. A malformed header is an attempt with bad credentials.
pub fn credentials(h: &HeaderMap) -> Credentials {
    let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Credentials::None;
    };
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer(rest.to_string());
    }
    let decoded = scheme
        .eq_ignore_ascii_case("basic")
        .then(|| STANDARD.decode(rest).ok())
        .flatten()
        .and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|s| s.split_once(':')) {
        // containers/image sends `Basic Og==` (":") when it has no credentials for a basic
        // challenge: that is an anonymous request, not a failed login.
        Some(("", "")) => Credentials::None,
        Some((u, p)) => Credentials::Basic {
            user: u.to_string(),
            password: p.to_string(),
        },
        None => Credentials::Malformed,
    }
}

/// Who the credentials claim to be, for logs (never the secret).
pub fn claimed(c: &Credentials) -> String {
    match c {
        Credentials::None => "anonymous".into(),
        Credentials::Basic { user, .. } => user.clone(),
        Credentials::Bearer(_) => "bearer".into(),
        Credentials::Malformed => "malformed".into(),
    }
}

/// Authenticates the request and checks it may do what `ep` needs. May drop `mount`/`from`
/// from `q` when the source repository is not readable.
pub async fn check(
    auth: &Authenticator,
    ep: &Endpoint,
    m: &Method,
    q: &mut Query,
    h: &HeaderMap,
    client: &ClientInfo,
) -> Result<Caller, ApiError> {
    let need = need(ep, m);
    let creds = credentials(h);
    let caller = match auth.authenticate(&creds, &client.addr).await {
        Ok(c) => c,
        Err(f) => return Err(failure(auth, &need, &creds, f, client)),
    };
    if caller.fresh_login {
        audit::login(&caller.principal.to_string(), "basic", true, "", client);
    }
    let decision = match &need {
        Need::Base => auth.decide_base(&caller),
        Need::Catalog => auth.decide_catalog(&caller),
        Need::Repo(repo, acts) => auth.decide(&caller, repo, *acts),
    };
    match decision {
        Decision::Allow => {
            restrict_mount(auth, &caller, ep, q);
            Ok(caller)
        }
        Decision::Challenge { insufficient_scope } => {
            let err = insufficient_scope.then_some("insufficient_scope");
            Err(unauthorized(
                auth,
                &need,
                err,
                client,
                "authentication required",
            ))
        }
        Decision::Deny => Err(ApiError::msg(
            ErrorCode::Denied,
            format!("{} may not do this", caller.principal),
        )),
    }
}

fn restrict_mount(auth: &Authenticator, caller: &Caller, ep: &Endpoint, q: &mut Query) {
    if !matches!(ep, Endpoint::Uploads(_)) || q.get("mount").is_none() {
        return;
    }
    let readable = q
        .get("from")
        .and_then(|f| RepoName::parse(f).ok())
        .is_some_and(|from| {
            auth.decide(caller, &from, Actions::only(Action::Pull)) == Decision::Allow
        });
    if q.get("from").is_some() && !readable {
        q.remove(&["mount", "from"]);
    }
}

fn failure(
    auth: &Authenticator,
    need: &Need,
    creds: &Credentials,
    f: AuthFailure,
    client: &ClientInfo,
) -> ApiError {
    let who = claimed(creds);
    match f {
        AuthFailure::RateLimited(retry) => {
            audit::login(&who, "basic", false, "rate limited", client);
            too_many(retry)
        }
        AuthFailure::BadCredentials(why) | AuthFailure::NotAccepted(why) => {
            audit::login(&who, "basic", false, why, client);
            unauthorized(auth, need, None, client, "invalid credentials")
        }
        AuthFailure::InvalidToken(e) => {
            tracing::warn!(target: "berth::audit", event = "token-rejected", reason = %e, client = %client.addr, "bearer token rejected");
            unauthorized(
                auth,
                need,
                Some("invalid_token"),
                client,
                &format!("invalid token: {e}"),
            )
        }
    }
}

/// 429 with `Retry-After` in whole seconds.
pub fn too_many(retry: std::time::Duration) -> ApiError {
    let secs = retry.as_secs() + u64::from(retry.subsec_nanos() > 0);
    ApiError::msg(
        ErrorCode::TooManyRequests,
        "too many failed logins; try again later",
    )
    .header(header::RETRY_AFTER, &secs.max(1).to_string())
}

fn unauthorized(
    auth: &Authenticator,
    need: &Need,
    error: Option<&str>,
    client: &ClientInfo,
    message: &str,
) -> ApiError {
    let scope = match need {
        Need::Base => None,
        Need::Catalog => Some(Scope::Catalog.to_string()),
        Need::Repo(r, a) => Some(Scope::Repository(r.clone(), with_pull(*a)).to_string()),
    };
    ApiError::msg(ErrorCode::Unauthorized, message).header(
        header::WWW_AUTHENTICATE,
        &challenge(auth.challenge(), scope.as_deref(), error, client),
    )
}

/// Pushing clients ask for `pull,push` (they check what exists first), as registry:2 answers.
fn with_pull(a: Actions) -> Actions {
    if a.contains(Action::Push) {
        a.with(Action::Pull)
    } else {
        a
    }
}

/// The `WWW-Authenticate` value.
pub fn challenge(
    c: &Challenge,
    scope: Option<&str>,
    error: Option<&str>,
    client: &ClientInfo,
) -> String {
    match c {
        Challenge::Basic { realm } => format!("Basic realm={}", quote(realm)),
        Challenge::Bearer { realm, service } => {
            let realm = match realm {
                Realm::Fixed(u) => u.clone(),
                Realm::Auto(path) => {
                    format!("{}://{}{}{path}", client.scheme, client.host, client.prefix)
                }
            };
            let mut s = format!("Bearer realm={},service={}", quote(&realm), quote(service));
            if let Some(sc) = scope {
                s.push_str(&format!(",scope={}", quote(sc)));
            }
            if let Some(e) = error {
                s.push_str(&format!(",error={}", quote(e)));
            }
            s
        }
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// 401 for the token endpoint (asks for basic credentials).
pub fn token_unauthorized(message: &str) -> ApiError {
    ApiError::msg(ErrorCode::Unauthorized, message)
        .header(header::WWW_AUTHENTICATE, "Basic realm=\"berth token\"")
}

/// The status an error answers with (for the audit log).
pub fn status_of(r: &Result<axum::response::Response, ApiError>) -> StatusCode {
    match r {
        Ok(resp) => resp.status(),
        Err(e) => e.status_code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn parses_credentials() {
        assert_eq!(credentials(&HeaderMap::new()), Credentials::None);
        let b = STANDARD.encode("alice:pa:ss");
        assert_eq!(
            credentials(&with_auth(&format!("basic {b}"))),
            Credentials::Basic {
                user: "alice".into(),
                password: "pa:ss".into()
            }
        );
        assert_eq!(
            credentials(&with_auth("Bearer abc.def.ghi")),
            Credentials::Bearer("abc.def.ghi".into())
        );
        for junk in [
            "Basic !!!",
            "Basic",
            "Digest x",
            &format!("Basic {}", STANDARD.encode("nocolon")),
        ] {
            assert_eq!(
                credentials(&with_auth(junk)),
                Credentials::Malformed,
                "{junk}"
            );
        }
        let empty = format!("Basic {}", STANDARD.encode(":"));
        assert_eq!(credentials(&with_auth(&empty)), Credentials::None);
    }

    #[test]
    fn needs_per_endpoint() {
        let r = RepoName::parse("a/b").unwrap();
        let d = berth_oci::Digest::sha256_of(b"");
        let reference = berth_oci::Reference::Digest(d.clone());
        let one = |a| Need::Repo(r.clone(), Actions::only(a));
        for (ep, m, want) in [
            (Endpoint::Base, Method::GET, Need::Base),
            (Endpoint::Catalog, Method::GET, Need::Catalog),
            (Endpoint::Tags(r.clone()), Method::GET, one(Action::Pull)),
            (
                Endpoint::Manifest(r.clone(), reference.clone()),
                Method::HEAD,
                one(Action::Pull),
            ),
            (
                Endpoint::Manifest(r.clone(), reference.clone()),
                Method::PUT,
                one(Action::Push),
            ),
            (
                Endpoint::Manifest(r.clone(), reference),
                Method::DELETE,
                one(Action::Delete),
            ),
            (
                Endpoint::Blob(r.clone(), d.clone()),
                Method::GET,
                one(Action::Pull),
            ),
            (
                Endpoint::Blob(r.clone(), d.clone()),
                Method::DELETE,
                one(Action::Delete),
            ),
            (
                Endpoint::Referrers(r.clone(), d),
                Method::GET,
                one(Action::Pull),
            ),
            (
                Endpoint::Uploads(r.clone()),
                Method::POST,
                one(Action::Push),
            ),
        ] {
            assert_eq!(need(&ep, &m), want, "{ep:?} {m}");
        }
    }

    #[test]
    fn challenges() {
        let client = ClientInfo {
            addr: "-".into(),
            user_agent: String::new(),
            scheme: "https".into(),
            host: "reg.example:5000".into(),
            prefix: "/registry".into(),
            direct_peer: None,
        };
        let basic = Challenge::Basic {
            realm: "My \"Realm\"".into(),
        };
        assert_eq!(
            challenge(&basic, Some("x"), None, &client),
            r#"Basic realm="My \"Realm\"""#
        );
        let bearer = Challenge::Bearer {
            realm: Realm::Auto("/auth/token".into()),
            service: "berth".into(),
        };
        assert_eq!(
            challenge(
                &bearer,
                Some("repository:a:pull,push"),
                Some("insufficient_scope"),
                &client
            ),
            r#"Bearer realm="https://reg.example:5000/registry/auth/token",service="berth",scope="repository:a:pull,push",error="insufficient_scope""#
        );
        let fixed = Challenge::Bearer {
            realm: Realm::Fixed("https://auth.example/token".into()),
            service: "registry".into(),
        };
        assert_eq!(
            challenge(&fixed, None, None, &client),
            r#"Bearer realm="https://auth.example/token",service="registry""#
        );
    }
}
