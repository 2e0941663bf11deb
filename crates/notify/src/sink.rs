//! The registry's domain events as registry:2 webhook events.
//!
//! Each [`berth_registry::Event`] becomes the event(s) registry:2 sends for the same operation:
//! a manifest push with several tags is one `push` per tag (one without a tag for a push by
//! digest), a tag delete names only the repository and tag, blobs carry
//! `application/octet-stream`. The conversion copies what the envelope needs and queues it; it
//! never waits.

use berth_registry::events::BLOB_MEDIA_TYPE;
use berth_registry::{Change, Event as RegistryEvent, EventSink, Origin};

use crate::event::{Action, Actor, Event, RequestInfo, Target};
use crate::queue::Notifier;

/// How target URLs are built: `http.host` (scheme and host) when configured, else the scheme
/// Berth serves and the `Host` of the request; then `http.prefix`.
#[derive(Clone, Debug, Default)]
pub struct Urls {
    /// `http.host`, e.g. `https://registry.example.com`.
    pub host: Option<String>,
    /// `http.prefix` without a trailing slash.
    pub prefix: String,
    /// Whether Berth itself serves TLS (the scheme of URLs built from a request's `Host`).
    pub tls: bool,
}

impl Urls {
    /// The URL of `digest` (`kind` is `blobs` or `manifests`) in `repo`; empty when there is
    /// neither `http.host` nor a request to take the host from (Berth's own work).
    fn of(&self, origin: &Origin<'_>, repo: &str, kind: &str, digest: &str) -> String {
        let request_host = origin.request.map(|r| r.host).filter(|h| !h.is_empty());
        let base = match (&self.host, request_host) {
            (Some(h), _) => h.trim_end_matches('/').to_owned(),
            (None, Some(h)) => format!("{}://{h}", if self.tls { "https" } else { "http" }),
            (None, None) => return String::new(),
        };
        format!("{base}{}/v2/{repo}/{kind}/{digest}", self.prefix)
    }
}

/// The webhook subscriber: turns each registry event into registry:2 events for the notifier.
#[derive(Clone)]
pub struct WebhookSink {
    notifier: Notifier,
    urls: Urls,
}

impl WebhookSink {
    /// Events for `notifier`, with target URLs built by `urls`.
    pub fn new(notifier: Notifier, urls: Urls) -> Self {
        WebhookSink { notifier, urls }
    }

    fn blob(&self, e: &RegistryEvent<'_>, size: u64) -> Target {
        let (repo, digest) = (e.repository.as_str(), digest_of(e));
        Target {
            media_type: BLOB_MEDIA_TYPE.into(),
            size,
            length: size,
            url: self.urls.of(e.origin, repo, "blobs", digest),
            digest: digest.to_owned(),
            repository: repo.to_owned(),
            ..Target::default()
        }
    }

    fn manifest(&self, e: &RegistryEvent<'_>, size: u64, media_type: &str) -> Target {
        let (repo, digest) = (e.repository.as_str(), digest_of(e));
        Target {
            media_type: media_type.to_owned(),
            size,
            length: size,
            url: self.urls.of(e.origin, repo, "manifests", digest),
            digest: digest.to_owned(),
            repository: repo.to_owned(),
            ..Target::default()
        }
    }

    /// The registry:2 events for `e`.
    fn targets(&self, e: &RegistryEvent<'_>) -> Vec<(Action, Target)> {
        match e.change {
            Change::BlobPushed { size } => vec![(Action::Push, self.blob(e, size))],
            Change::BlobMounted { size, from } => {
                let t = Target {
                    from_repository: from.to_string(),
                    ..self.blob(e, size)
                };
                vec![(Action::Mount, t)]
            }
            Change::BlobPulled { size } => vec![(Action::Pull, self.blob(e, size))],
            Change::BlobDeleted => vec![(Action::Delete, self.blob(e, 0))],
            Change::ManifestPushed {
                size,
                media_type,
                tags,
            } => {
                let base = self.manifest(e, size, media_type);
                if tags.is_empty() {
                    return vec![(Action::Push, base)];
                }
                tags.iter()
                    .map(|tag| {
                        let t = Target {
                            tag: tag.to_string(),
                            ..base.clone()
                        };
                        (Action::Push, t)
                    })
                    .collect()
            }
            Change::ManifestPulled {
                size,
                media_type,
                tag,
            } => {
                let t = Target {
                    tag: tag.map(ToString::to_string).unwrap_or_default(),
                    ..self.manifest(e, size, media_type)
                };
                vec![(Action::Pull, t)]
            }
            Change::ManifestDeleted => {
                let (repo, digest) = (e.repository.as_str(), digest_of(e));
                let t = Target {
                    digest: digest.to_owned(),
                    repository: repo.to_owned(),
                    url: self.urls.of(e.origin, repo, "manifests", digest),
                    ..Target::default()
                };
                vec![(Action::Delete, t)]
            }
            Change::TagDeleted { tag } => {
                let t = Target {
                    repository: e.repository.to_string(),
                    tag: tag.to_string(),
                    ..Target::default()
                };
                vec![(Action::Delete, t)]
            }
        }
    }
}

impl EventSink for WebhookSink {
    fn emit(&self, e: &RegistryEvent<'_>) {
        let r = e.origin.request.unwrap_or_default();
        let request = RequestInfo {
            id: r.id.to_owned(),
            addr: r.addr.to_owned(),
            host: r.host.to_owned(),
            method: r.method.to_owned(),
            useragent: r.user_agent.to_owned(),
        };
        let actor = Actor {
            name: e.origin.actor.to_owned(),
        };
        for (action, target) in self.targets(e) {
            let event = Event::new(action, target, request.clone(), actor.clone());
            self.notifier.publish(event);
        }
    }
}

fn digest_of<'a>(e: &RegistryEvent<'a>) -> &'a str {
    e.digest.map_or("", |d| d.as_str())
}
