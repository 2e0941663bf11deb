//! The event model and its registry:2 JSON shape.

use std::time::SystemTime;

use serde::Serialize;

/// Media type of the envelope.
pub const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A manifest or blob was pushed.
    Push,
    /// A manifest or blob was pulled.
    Pull,
    /// A manifest, tag or blob was deleted.
    Delete,
    /// A blob was mounted from another repository.
    Mount,
}

impl Action {
    /// Every action, in the order the configuration documents them.
    pub const ALL: [Action; 4] = [Action::Push, Action::Pull, Action::Delete, Action::Mount];

    /// The action named `name` in a config filter (`push`, `pull`, `delete`, `mount`).
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The lowercase name used in config filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Delete => "delete",
            Action::Mount => "mount",
        }
    }
}

/// The object acted on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Media type of the manifest or blob, when known.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Size in bytes (0 when unknown, e.g. tag deletes).
    #[serde(skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Content digest.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Same as `size` (registry:2 sends both).
    #[serde(skip_serializing_if = "is_zero")]
    pub length: u64,
    /// Repository name.
    pub repository: String,
    /// Source repository of a mount.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from_repository: String,
    /// URL of the object.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Tag, for tag pushes, pulls by tag and tag deletes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The request that caused the event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestInfo {
    /// Request id (also in the access log and the `X-Request-Id` header).
    pub id: String,
    /// Client address.
    pub addr: String,
    /// `Host` the client used.
    pub host: String,
    /// HTTP method.
    pub method: String,
    /// `User-Agent`.
    pub useragent: String,
}

/// Who acted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// User or robot name; empty when anonymous.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The registry instance that saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Listen address or host name of the instance.
    pub addr: String,
    /// Random id of this process.
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

/// One event, as sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Unique event id.
    pub id: String,
    /// RFC 3339 time with nanoseconds.
    pub timestamp: String,
    /// What happened.
    pub action: Action,
    /// What it happened to.
    pub target: Target,
    /// The request.
    pub request: RequestInfo,
    /// Who.
    pub actor: Actor,
    /// Where (filled in by the notifier).
    pub source: Source,
}

impl Event {
    /// A new event stamped now with a fresh id.
    pub fn new(action: Action, target: Target, request: RequestInfo, actor: Actor) -> Self {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
            action,
            target,
            request,
            actor,
            source: Source::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_like_registry2() {
        let mut e = Event::new(
            Action::Push,
            Target {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 7,
                digest: "sha256:ab".into(),
                length: 7,
                repository: "a/b".into(),
                url: "http://r/v2/a/b/manifests/sha256:ab".into(),
                tag: "latest".into(),
                ..Target::default()
            },
            RequestInfo {
                id: "r1".into(),
                method: "PUT".into(),
                ..RequestInfo::default()
            },
            Actor::default(),
        );
        e.source.instance_id = "i".into();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["action"], "push");
        assert_eq!(
            v["target"]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(v["target"]["length"], 7);
        assert_eq!(v["target"]["tag"], "latest");
        assert!(v["target"].get("fromRepository").is_none());
        assert_eq!(v["request"]["method"], "PUT");
        assert_eq!(v["source"]["instanceID"], "i");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["actor"], serde_json::json!({}));
    }
}
