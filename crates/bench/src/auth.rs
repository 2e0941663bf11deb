//! Registry authentication as clients do it: send anonymously (or with what is cached), and on a
//! `401` answer the `WWW-Authenticate` challenge. `Basic` gets the configured credentials;
//! `Bearer realm=…,service=…,scope=…` gets a token from the realm (fetched with the credentials
//! as basic auth, or anonymously) that is cached per scope, so only the first request of each
//! repository and action pays for the round trip.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use http::header::HeaderValue;
use http::Method;

use crate::http::{read_small, status_error, Client, Req};
use crate::{BenchError, Result};

/// What a request needs access to, in token-scope syntax (`repository:name:pull,push`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope(String);

impl Scope {
    /// The scope of a request on a registry path (or absolute URL).
    pub(crate) fn of(method: &Method, target: &str) -> Scope {
        let path = strip_origin(target);
        let path = path.split('?').next().unwrap_or(path);
        if path.starts_with("/v2/_catalog") {
            return Scope("registry:catalog:*".into());
        }
        let action = match *method {
            Method::GET | Method::HEAD => "pull",
            Method::DELETE => "delete",
            _ => "pull,push",
        };
        let rest = path.strip_prefix("/v2/").unwrap_or("");
        let name = ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
            .iter()
            .filter_map(|m| rest.rfind(m).map(|i| &rest[..i]))
            .max_by_key(|n| n.len());
        match name {
            Some(n) if !n.is_empty() => Scope(format!("repository:{n}:{action}")),
            _ => Scope(String::new()),
        }
    }
}

fn strip_origin(target: &str) -> &str {
    match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    }
}

/// Credentials and the cached answers to challenges.
pub(crate) struct Auth {
    user: Option<String>,
    password: Option<String>,
    basic: Mutex<bool>,
    tokens: Mutex<HashMap<String, HeaderValue>>,
}

impl Auth {
    pub(crate) fn new(user: Option<String>, password: Option<String>) -> Auth {
        Auth {
            user,
            password,
            basic: Mutex::new(false),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The Authorization header to send up front for this scope, if one is known.
    pub(crate) fn cached(&self, scope: &Scope) -> Option<HeaderValue> {
        if *self.basic.lock().unwrap_or_else(|p| p.into_inner()) {
            return self.basic_header();
        }
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.get(&scope.0).cloned()
    }

    /// Answers a challenge; returns the Authorization header to retry with.
    pub(crate) async fn answer(
        &self,
        client: &Client,
        challenge: &str,
        scope: &Scope,
    ) -> Result<HeaderValue> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let h = self.basic_header().ok_or_else(|| {
                    BenchError::Args(
                        "the registry wants basic auth: pass --user and --password".into(),
                    )
                })?;
                *self.basic.lock().unwrap_or_else(|p| p.into_inner()) = true;
                Ok(h)
            }
            "bearer" => {
                let header = self.fetch_token(client, &params, scope).await?;
                let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                tokens.insert(scope.0.clone(), header.clone());
                Ok(header)
            }
            other => Err(BenchError::Protocol(format!(
                "unsupported auth scheme {other:?} in {challenge:?}"
            ))),
        }
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let user = self.user.as_deref()?;
        let raw = format!("{user}:{}", self.password.as_deref().unwrap_or(""));
        let enc = base64::engine::general_purpose::STANDARD.encode(raw);
        HeaderValue::from_str(&format!("Basic {enc}")).ok()
    }

    async fn fetch_token(
        &self,
        client: &Client,
        params: &HashMap<String, String>,
        scope: &Scope,
    ) -> Result<HeaderValue> {
        let realm = params
            .get("realm")
            .ok_or_else(|| BenchError::Protocol("Bearer challenge without realm".into()))?;
        let wanted = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| scope.0.clone());
        let query = token_query(params.get("service").map(String::as_str), &wanted);
        let sep = if realm.contains('?') { '&' } else { '?' };
        let req = Req::new(Method::GET, format!("{realm}{sep}{query}"));
        let resp = client.raw(&req, self.basic_header()).await?;
        if !resp.status().is_success() {
            return Err(status_error(&format!("token {realm}"), resp).await);
        }
        let body = read_small(resp, 1 << 20).await?;
        token_header(&body)
    }
}

/// `service=…&scope=…` (the serializer is not `Send`, so it never lives across an await).
fn token_query(service: Option<&str>, scope: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(service) = service {
        query.append_pair("service", service);
    }
    if !scope.is_empty() {
        query.append_pair("scope", scope);
    }
    query.finish()
}

/// `{"token": …}` or `{"access_token": …}` → `Bearer …`.
fn token_header(body: &[u8]) -> Result<HeaderValue> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| BenchError::Protocol(format!("token response is not JSON: {e}")))?;
    let token = v
        .get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .ok_or_else(|| BenchError::Protocol("token response without token".into()))?;
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| BenchError::Protocol("token is not a valid header value".into()))
}

/// Splits `Scheme k="v",k2=v2` into the scheme and its parameters (quoted values may hold commas).
fn parse_challenge(s: &str) -> (String, HashMap<String, String>) {
    let s = s.trim();
    let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_from_paths() {
        let s = |m: Method, p: &str| Scope::of(&m, p).0;
        assert_eq!(
            s(Method::GET, "/v2/a/b/manifests/latest"),
            "repository:a/b:pull"
        );
        assert_eq!(
            s(Method::HEAD, "/v2/a/blobs/sha256:00"),
            "repository:a:pull"
        );
        assert_eq!(
            s(Method::POST, "/v2/a/b/blobs/uploads/"),
            "repository:a/b:pull,push"
        );
        assert_eq!(
            s(Method::PUT, "http://h:1/v2/x/blobs/uploads/u?digest=d"),
            "repository:x:pull,push"
        );
        assert_eq!(s(Method::GET, "/v2/x/tags/list?n=100"), "repository:x:pull");
        assert_eq!(s(Method::GET, "/v2/_catalog?n=10"), "registry:catalog:*");
        assert_eq!(s(Method::GET, "/v2/"), "");
        // A repository whose name contains a resource word still resolves to the full name.
        assert_eq!(
            s(Method::GET, "/v2/team/tags/app/manifests/1"),
            "repository:team/tags/app:pull"
        );
    }

    #[test]
    fn challenges() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry");
        assert_eq!(p["scope"], "repository:a:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(p["realm"], "Registry Realm");
        let (_, p) = parse_challenge("Bearer realm=http://t/x, service=s");
        assert_eq!(p["realm"], "http://t/x");
        assert_eq!(p["service"], "s");
    }

    #[test]
    fn token_bodies() {
        assert_eq!(
            token_header(br#"{"token":"abc"}"#).ok(),
            HeaderValue::from_str("Bearer abc").ok()
        );
        assert_eq!(
            token_header(br#"{"access_token":"xyz","expires_in":60}"#).ok(),
            HeaderValue::from_str("Bearer xyz").ok()
        );
        assert!(token_header(br#"{"nope":1}"#).is_err());
        assert!(token_header(b"<html>").is_err());
    }

    #[test]
    fn basic_header_encodes_credentials() {
        let a = Auth::new(Some("u".into()), Some("p".into()));
        assert_eq!(a.basic_header(), HeaderValue::from_str("Basic dTpw").ok());
        assert!(Auth::new(None, None).basic_header().is_none());
    }
}
