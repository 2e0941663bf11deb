//! The audit log: one `tracing` event with target `berth::audit` per push (manifest put, blob
//! upload completion), mount, delete and login, allowed or not.
//!
//! Done changes are logged from the registry's domain events ([`AuditLog`] subscribes), so a
//! change made without HTTP (garbage collection, an import) is audited like a push, with its
//! actor; refused and failed requests, which change nothing, are logged here from the request
//! ([`refusal`]) with their HTTP status.
//!
//! Fields: `event`, `who`, `repository`, `reference` (tag or digest), `digest`, `from`, `client`,
//! `user_agent`, `result` (`ok`, or `denied`/`limited`/`failed` with the HTTP `status`). Route
//! the target to its own sink with `BERTH_LOG=berth::audit=info` style filters.
//!
//! Text the client chose (a claimed user name, `from`, a query digest, the `User-Agent`) is
//! logged as sent when it is short printable ASCII, else [`quoted`] (escaped and cut).

use std::borrow::Cow;

use axum::http::{Method, StatusCode};
use berth_oci::quoted;
use berth_registry::{Change, Event as RegistryEvent, EventSink};

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

/// Logs `ep` if it is a push, mount or delete that was refused or failed (`status` not 2xx).
pub fn refusal(
    ep: &Endpoint,
    m: &Method,
    q: &Query,
    who: &str,
    c: &ClientInfo,
    status: StatusCode,
) {
    if status.is_success() {
        return;
    }
    let Some(ev) = event(ep, m, q) else {
        return;
    };
    let reference = match ep {
        Endpoint::Manifest(_, r) => r.to_string(),
        Endpoint::Blob(_, d) => d.to_string(),
        _ => client_text(ev.reference).into_owned(),
    };
    let result = outcome(status);
    let from = client_text(q.get("from").unwrap_or(""));
    let who = client_text(who);
    let user_agent = client_text(&c.user_agent);
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "berth::audit",
                $level,
                event = ev.kind,
                who = &*who,
                repository = %ev.repository,
                reference = %reference,
                from = &*from,
                client = %c.addr,
                user_agent = %user_agent,
                result,
                status = status.as_u16(),
                "{} {who} {} {reference} {result}", ev.kind, ev.repository
            )
        };
    }
    if refused(status) {
        line!(tracing::Level::WARN);
    } else {
        line!(tracing::Level::INFO);
    }
}

/// The audit subscriber of the registry's events: one INFO line per change done, whoever did
/// it (a client, or `berth-gc`, `berth-import` …). Pulls are not audited.
pub struct AuditLog;

impl EventSink for AuditLog {
    fn emit(&self, e: &RegistryEvent<'_>) {
        let (kind, reference, from) = match e.change {
            Change::BlobPushed { .. } => ("push-blob", None, None),
            Change::BlobMounted { from, .. } => ("mount-blob", None, Some(from)),
            Change::BlobDeleted => ("delete-blob", None, None),
            Change::ManifestPushed { tags, .. } => ("push-manifest", tags.first(), None),
            Change::ManifestDeleted => ("delete-manifest", None, None),
            Change::TagDeleted { tag } => ("delete-manifest", Some(tag), None),
            Change::BlobPulled { .. } | Change::ManifestPulled { .. } => return,
        };
        let digest = e.digest.map_or("", |d| d.as_str());
        let reference = reference.map_or(digest, |t| t.as_str());
        let who = if e.origin.actor.is_empty() {
            Cow::Borrowed("-")
        } else {
            client_text(e.origin.actor)
        };
        let request = e.origin.request.unwrap_or_default();
        let from = from.map(|f| f.as_str()).unwrap_or("");
        let client = if request.addr.is_empty() {
            "-"
        } else {
            request.addr
        };
        tracing::info!(
            target: "berth::audit",
            event = kind,
            who = &*who,
            repository = %e.repository,
            reference,
            digest,
            from,
            client,
            user_agent = &*client_text(request.user_agent),
            result = "ok",
            "{kind} {who} {} {reference} ok",
            e.repository
        );
    }
}

/// Logs a login attempt (`how`: `basic` on /v2, `token` at the token endpoint).
pub fn login(who: &str, how: &str, ok: bool, reason: &str, c: &ClientInfo) {
    let result = if ok { "ok" } else { "failed" };
    let who = client_text(who);
    let (reason, user_agent) = (client_text(reason), client_text(&c.user_agent));
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "berth::audit",
                $level,
                event = "login",
                who = &*who,
                method = how,
                result,
                reason = &*reason,
                client = %c.addr,
                user_agent = %user_agent,
                "login {who} via {how} {result}"
            )
        };
    }
    // A failed login is what `grep -i warn` must find.
    if ok {
        line!(tracing::Level::INFO);
    } else {
        line!(tracing::Level::WARN);
    }
}

/// The longest client text logged as sent.
const PLAIN_LIMIT: usize = 256;

/// `s` as sent when it is at most [`PLAIN_LIMIT`] bytes of printable ASCII; else [`quoted`].
fn client_text(s: &str) -> Cow<'_, str> {
    if s.len() <= PLAIN_LIMIT && s.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(quoted(s))
    }
}

/// Whether `s` refuses the caller (401, 403, 429): logged at WARN.
pub fn refused(s: StatusCode) -> bool {
    matches!(s.as_u16(), 401 | 403 | 429)
}

fn outcome(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200..=299 => "ok",
        401 | 403 => "denied",
        429 => "limited",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_kept_when_plain_and_quoted_otherwise() {
        assert_eq!(client_text("alice"), "alice");
        let ua = "docker/24.0.5 go/go1.20.6 UpstreamClient(Docker-Client/24.0.5 \\(linux\\))";
        assert_eq!(client_text(ua), ua);
        assert_eq!(client_text("a\nfake=entry"), r#""a\u{a}fake=entry""#);
        let long = client_text(&"u".repeat(10_000)).into_owned();
        assert!(long.len() < 80 && long.ends_with("…\""), "{long}");
    }
}
