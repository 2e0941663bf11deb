//! From what crossed the wire to registry:2 webhook events.
//!
//! A successful response says everything an event needs: the endpoint (parsed from the path),
//! the digest (`Docker-Content-Digest`), media type and size (request or response headers), the
//! tags (`?tag=`), the mount source (`?from=`). Blob sizes after an upload are filled in by the
//! notifier from the metadata store.

use axum::http::{header, HeaderMap, Method};
use berth_api::Endpoint;
use berth_notify::{Action, Actor, Event, Notifier, RequestInfo, Target};
use berth_oci::Reference;

const OCTET_STREAM: &str = "application/octet-stream";

/// What one request did, as seen by the observe wrapper.
pub struct Facts<'a> {
    /// Request id.
    pub request_id: &'a str,
    /// Client address.
    pub remote: &'a str,
    /// Authenticated user, or empty.
    pub user: &'a str,
    /// Method.
    pub method: &'a Method,
    /// Path (after any `http.prefix`).
    pub path: &'a str,
    /// Query string.
    pub query: Option<&'a str>,
    /// Request headers.
    pub req_headers: &'a HeaderMap,
    /// Response status.
    pub status: u16,
    /// Response headers.
    pub resp_headers: &'a HeaderMap,
    /// Request body bytes received.
    pub received: u64,
}

/// Turns facts into events for the notifier.
#[derive(Clone)]
pub struct Events {
    notifier: Notifier,
    /// `http.host` with `http.prefix`, or empty to use the request's Host.
    base: Option<String>,
    prefix: String,
    scheme: &'static str,
}

impl Events {
    /// Events published to `notifier`; URLs use `host` (else the request's Host) and `prefix`.
    pub fn new(notifier: Notifier, host: Option<String>, prefix: String, tls: bool) -> Self {
        Events {
            notifier,
            base: host,
            prefix,
            scheme: if tls { "https" } else { "http" },
        }
    }

    /// Publishes the events of one request, if it changed or read something.
    pub fn publish(&self, f: &Facts<'_>) {
        if !(200..300).contains(&f.status) {
            return;
        }
        let Ok(ep) = Endpoint::parse(f.path) else {
            return;
        };
        for (action, target) in self.targets(f, &ep) {
            let request = RequestInfo {
                id: f.request_id.to_owned(),
                addr: f.remote.to_owned(),
                host: header(f.req_headers, header::HOST).to_owned(),
                method: f.method.to_string(),
                useragent: header(f.req_headers, header::USER_AGENT).to_owned(),
            };
            let actor = Actor {
                name: f.user.to_owned(),
            };
            self.notifier
                .publish(Event::new(action, target, request, actor));
        }
    }

    fn targets(&self, f: &Facts<'_>, ep: &Endpoint) -> Vec<(Action, Target)> {
        let digest = header(f.resp_headers, "docker-content-digest").to_owned();
        let m = f.method;
        match ep {
            Endpoint::Manifest(repo, r) if *m == Method::PUT => {
                let base = Target {
                    media_type: header(f.req_headers, header::CONTENT_TYPE).to_owned(),
                    size: f.received,
                    length: f.received,
                    url: self.url(f, repo.as_str(), "manifests", &digest),
                    digest,
                    repository: repo.to_string(),
                    ..Target::default()
                };
                let mut tags: Vec<String> = query_values(f.query, "tag");
                if let Reference::Tag(t) = r {
                    tags.insert(0, t.to_string());
                }
                if tags.is_empty() {
                    return vec![(Action::Push, base)];
                }
                tags.into_iter()
                    .map(|tag| {
                        (
                            Action::Push,
                            Target {
                                tag,
                                ..base.clone()
                            },
                        )
                    })
                    .collect()
            }
            Endpoint::Manifest(repo, r) if *m == Method::GET => {
                let size = content_length(f.resp_headers);
                let t = Target {
                    media_type: header(f.resp_headers, header::CONTENT_TYPE).to_owned(),
                    size,
                    length: size,
                    url: self.url(f, repo.as_str(), "manifests", &digest),
                    digest,
                    repository: repo.to_string(),
                    tag: tag_of(r),
                    ..Target::default()
                };
                vec![(Action::Pull, t)]
            }
            Endpoint::Manifest(repo, r) if *m == Method::DELETE => {
                let t = match r {
                    Reference::Tag(tag) => Target {
                        repository: repo.to_string(),
                        tag: tag.to_string(),
                        ..Target::default()
                    },
                    Reference::Digest(d) => Target {
                        digest: d.to_string(),
                        repository: repo.to_string(),
                        url: self.url(f, repo.as_str(), "manifests", d.as_str()),
                        ..Target::default()
                    },
                };
                vec![(Action::Delete, t)]
            }
            Endpoint::Blob(repo, d) if *m == Method::GET => {
                let size = content_length(f.resp_headers);
                vec![(Action::Pull, self.blob(f, repo.as_str(), d.as_str(), size))]
            }
            Endpoint::Blob(repo, d) if *m == Method::DELETE => {
                vec![(Action::Delete, self.blob(f, repo.as_str(), d.as_str(), 0))]
            }
            Endpoint::Upload(repo, _) if *m == Method::PUT => {
                vec![(Action::Push, self.blob(f, repo.as_str(), &digest, 0))]
            }
            Endpoint::Uploads(repo) if *m == Method::POST && f.status == 201 => {
                let from = query_values(f.query, "from").into_iter().next();
                let mounted = from.is_some() && query_values(f.query, "mount").len() == 1;
                let mut t = self.blob(f, repo.as_str(), &digest, 0);
                if mounted {
                    t.from_repository = from.unwrap_or_default();
                    vec![(Action::Mount, t)]
                } else {
                    vec![(Action::Push, t)]
                }
            }
            _ => Vec::new(),
        }
    }

    fn blob(&self, f: &Facts<'_>, repo: &str, digest: &str, size: u64) -> Target {
        Target {
            media_type: OCTET_STREAM.into(),
            size,
            length: size,
            url: self.url(f, repo, "blobs", digest),
            digest: digest.to_owned(),
            repository: repo.to_owned(),
            ..Target::default()
        }
    }

    fn url(&self, f: &Facts<'_>, repo: &str, kind: &str, digest: &str) -> String {
        let base = match &self.base {
            Some(b) => b.clone(),
            None => format!("{}://{}", self.scheme, header(f.req_headers, header::HOST)),
        };
        format!("{base}{}/v2/{repo}/{kind}/{digest}", self.prefix)
    }
}

fn header(h: &HeaderMap, name: impl header::AsHeaderName) -> &str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn content_length(h: &HeaderMap) -> u64 {
    header(h, header::CONTENT_LENGTH).parse().unwrap_or(0)
}

fn tag_of(r: &Reference) -> String {
    match r {
        Reference::Tag(t) => t.to_string(),
        Reference::Digest(_) => String::new(),
    }
}

fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}
