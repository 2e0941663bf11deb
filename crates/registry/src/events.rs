//! Domain events: what the registry changed or served, told to its subscribers.
//!
//! Design decisions:
//! * **Emitted where the change happens.** Every operation that changes or serves content
//!   ([`Registry::put_manifest`], [`Registry::finish_upload`], [`Registry::open_blob`], …) emits
//!   one [`Event`] after it succeeded, with the facts the registry itself holds (digest, size,
//!   media type, tags) and the [`Origin`] its caller passed in (actor, request). Nothing is read
//!   back from HTTP headers, and a change made by the CLI, garbage collection, an import or a
//!   proxy fill is told exactly like a push (its actor says who: `berth-gc`, `berth-import`).
//! * **One sink trait, borrowed events.** [`EventSink::emit`] is called synchronously with
//!   borrowed data and must not block: a subscriber that needs to keep an event (the webhook
//!   notifier) copies what it needs and queues it; one that only counts (metrics) allocates
//!   nothing. With no subscriber an operation pays one empty loop.
//!
//! [`Registry::put_manifest`]: crate::Registry::put_manifest
//! [`Registry::finish_upload`]: crate::Registry::finish_upload
//! [`Registry::open_blob`]: crate::Registry::open_blob

use std::sync::Arc;

use berth_oci::{Digest, RepoName, Tag};

/// Media type of blob targets in events (registry:2 knows no better either).
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// The request an operation came in, as the HTTP layer saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// Request id (the `X-Request-Id` answered and logged).
    pub id: &'a str,
    /// Client socket address (`ip:port`).
    pub addr: &'a str,
    /// `Host` the client used.
    pub host: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// `User-Agent`.
    pub user_agent: &'a str,
}

/// Who asked for an operation, and through which request (none for work the registry does on
/// its own behalf: garbage collection, imports, replication).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin<'a> {
    /// User or robot name, a component name (`berth-gc`, `berth-import`), or empty for an
    /// anonymous client.
    pub actor: &'a str,
    /// The HTTP request, when there was one.
    pub request: Option<RequestFacts<'a>>,
}

impl<'a> Origin<'a> {
    /// An operation Berth runs itself, named by `component` (`berth-gc`, `berth-import`, …).
    pub const fn system(component: &'a str) -> Origin<'a> {
        Origin {
            actor: component,
            request: None,
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// An upload completed (chunked, monolithic or single-request) and the blob is linked.
    BlobPushed {
        /// Its size.
        size: u64,
    },
    /// A blob was linked from another repository.
    BlobMounted {
        /// Its size.
        size: u64,
        /// The repository it came from.
        from: &'a RepoName,
    },
    /// A blob was served (its bytes, a range of them, or a redirect to them).
    BlobPulled {
        /// Size of the whole blob.
        size: u64,
    },
    /// A blob was unlinked from the repository.
    BlobDeleted,
    /// A manifest was stored, under these tags (none for a push by digest).
    ManifestPushed {
        /// Size of the manifest bytes.
        size: u64,
        /// Its media type.
        media_type: &'a str,
        /// The tags now pointing at it, in request order.
        tags: &'a [Tag],
    },
    /// A manifest was served.
    ManifestPulled {
        /// Size of the manifest bytes.
        size: u64,
        /// Its media type.
        media_type: &'a str,
        /// The tag it was asked for by, if any.
        tag: Option<&'a Tag>,
    },
    /// A manifest and all its tags were deleted.
    ManifestDeleted,
    /// One tag was deleted (the manifest stays).
    TagDeleted {
        /// The tag.
        tag: &'a Tag,
    },
}

/// One event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// What happened.
    pub change: Change<'a>,
    /// The repository it happened in.
    pub repository: &'a RepoName,
    /// The blob or manifest; `None` only for [`Change::TagDeleted`].
    pub digest: Option<&'a Digest>,
    /// Who did it.
    pub origin: &'a Origin<'a>,
}

impl Event<'_> {
    /// Whether it changed something (every event but the pulls).
    pub fn is_change(&self) -> bool {
        !matches!(
            self.change,
            Change::BlobPulled { .. } | Change::ManifestPulled { .. }
        )
    }
}

/// A subscriber. `emit` runs on the operation's task: it must return at once (queue, count or
/// log; never wait on I/O).
pub trait EventSink: Send + Sync {
    /// Takes note of `event`.
    fn emit(&self, event: &Event<'_>);
}

/// The registry's subscribers, told in the order they subscribed.
#[derive(Clone, Default)]
pub struct Sinks(Vec<Arc<dyn EventSink>>);

impl Sinks {
    /// Adds a subscriber.
    pub fn push(&mut self, sink: Arc<dyn EventSink>) {
        self.0.push(sink);
    }

    /// Tells every subscriber.
    pub fn emit(&self, event: &Event<'_>) {
        for s in &self.0 {
            s.emit(event);
        }
    }

    /// Whether anyone listens (a caller may skip gathering facts no one reads).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
