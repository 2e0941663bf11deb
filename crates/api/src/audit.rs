//! The audit log: one `tracing` event with target `berth::audit` per push (manifest put, blob
//! upload completion), mount, delete and login, allowed or not.
//!
//! Fields: `event`, `who`, `repository`, `reference` (tag or digest), `client`, `user_agent`,
//! `result` (`ok` or `denied`/`failed` with the HTTP status). Route the target to its own sink
//! with `BERTH_LOG=berth::audit=info` style filters.

use axum::http::{Method, StatusCode};

use crate::client::ClientInfo;
use crate::endpoint::Endpoint;
use crate::util::Query;

/// What an audited request did.
struct Event<'a> {
    kind: &'static str,
    repository: String,
    reference: &'a str,
}

fn event<'a>(ep: &'a Endpoint, m: &Method, q: &'a Query) -> Option<Event<'a>> {
    let mk = |kind, repo: &berth_oci::RepoName, reference: &'a str| Event {
        kind,
        repository: repo.to_string(),
        reference,
    };
    match ep {
        Endpoint::Manifest(r, _) if m == Method::PUT => Some(mk("push-manifest", r, "")),
        Endpoint::Manifest(r, _) if m == Method::DELETE => Some(mk("delete-manifest", r, "")),
        Endpoint::Blob(r, _) if m == Method::DELETE => Some(mk("delete-blob", r, "")),
        Endpoint::Upload(r, _) if m == Method::PUT => {
            Some(mk("push-blob", r, q.get("digest").unwrap_or("")))
        }
        Endpoint::Uploads(r) if m == Method::POST => match (q.get("mount"), q.get("digest")) {
            (Some(d), _) => Some(mk("mount-blob", r, d)),
            (None, Some(d)) => Some(mk("push-blob", r, d)),
            (None, None) => None,
        },
        _ => None,
    }
}

/// Logs `ep` if it is a push, mount or delete.
pub fn request(
    ep: &Endpoint,
    m: &Method,
    q: &Query,
    who: &str,
    c: &ClientInfo,
    status: StatusCode,
) {
    let Some(ev) = event(ep, m, q) else {
        return;
    };
    let reference = match ep {
        Endpoint::Manifest(_, r) => r.to_string(),
        Endpoint::Blob(_, d) => d.to_string(),
        _ => ev.reference.to_string(),
    };
    let result = outcome(status);
    let from = q.get("from").unwrap_or("");
    tracing::info!(
        target: "berth::audit",
        event = ev.kind,
        who,
        repository = %ev.repository,
        reference = %reference,
        from,
        client = %c.addr,
        user_agent = %c.user_agent,
        result,
        status = status.as_u16(),
        "{} {who} {} {reference} {result}", ev.kind, ev.repository
    );
}

/// Logs a login attempt (`how`: `basic` on /v2, `token` at the token endpoint).
pub fn login(who: &str, how: &str, ok: bool, reason: &str, c: &ClientInfo) {
    let result = if ok { "ok" } else { "failed" };
    tracing::info!(
        target: "berth::audit",
        event = "login",
        who,
        method = how,
        result,
        reason,
        client = %c.addr,
        user_agent = %c.user_agent,
        "login {who} via {how} {result}"
    );
}

fn outcome(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200..=299 => "ok",
        401 | 403 => "denied",
        429 => "limited",
        _ => "failed",
    }
}
