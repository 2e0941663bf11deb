//! The registry domain: every OCI Distribution operation, independent of HTTP.
//!
//! Design decision: handlers call the registry; the registry never calls handlers. [`Registry`]
//! holds a blob [`Backend`], a [`MetaStore`] and the [`EventSink`]s it tells of what it did; it
//! knows digests, repositories and tags, not status codes or headers. Its errors ([`RegistryError`]) carry an OCI [`ErrorCode`] so the
//! API layer maps them without knowing the cases.
//!
//! Invariants it keeps:
//! * a blob is visible in a repository only once its bytes are committed at their final key *and*
//!   linked in the metadata store — commit always precedes link, so nothing half-written is visible;
//! * uploads are hashed while they stream; the resumable hash state is saved with the session after
//!   every append, so a session continues after a restart (or on another replica);
//! * completing an upload links its blob and closes its session in one metadata transaction;
//!   appends to one session never interleave, guarded by storage's per-upload lock alone (the
//!   registry adds checks, not a second lock: see the `uploads` module);
//! * a manifest, its blob links and its tags commit in one metadata transaction;
//! * every change and every served manifest or blob is told to the subscribed [`EventSink`]s
//!   once it succeeded, with the caller's [`Origin`] ([`events`]).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod blobs;
mod error;
pub mod events;
#[cfg(test)]
mod events_tests;
mod listing;
mod manifests;
mod uploads;

use std::sync::Arc;
use std::time::Duration;

use berth_meta::MetaStore;
use berth_oci::{Digest, RepoName};
use berth_storage::Backend;

pub use berth_meta::StoredManifest;
pub use berth_storage::ByteStream;
pub use blobs::{BlobBody, BlobRead, RangeSpec};
pub use error::{RegistryError, Result};
pub use events::{Change, Event, EventSink, Origin, RequestFacts, Sinks};
pub use listing::Page;
pub use manifests::{PutManifest, MANIFEST_READ_LIMIT};
pub use uploads::{Mount, UploadProgress};

/// Behaviour switches of a registry (from the `storage.delete` and similar config keys).
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Whether blob and manifest deletes are allowed (`storage.delete.enabled`).
    pub delete_enabled: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            delete_enabled: true,
        }
    }
}

/// The OCI registry: blob storage plus metadata.
pub struct Registry {
    storage: Arc<dyn Backend>,
    meta: Arc<dyn MetaStore>,
    opts: RegistryOptions,
    redirect: Option<Duration>,
    sinks: Sinks,
}

impl Registry {
    /// A registry over the given storage and metadata store.
    pub fn new(storage: Arc<dyn Backend>, meta: Arc<dyn MetaStore>, opts: RegistryOptions) -> Self {
        Registry {
            storage,
            meta,
            opts,
            redirect: None,
            sinks: Sinks::default(),
        }
    }

    /// Tells `sinks` of everything this registry changes or serves ([`events`]).
    pub fn with_events(mut self, sinks: Sinks) -> Self {
        self.sinks = sinks;
        self
    }

    /// Lets blob downloads redirect to a URL the storage backend presigns for `expires`
    /// (`storage.redirect`, on by default in registry:2), so blob bytes skip the registry.
    /// Backends that cannot presign (the filesystem) keep serving the bytes themselves.
    pub fn with_blob_redirect(mut self, expires: Duration) -> Self {
        self.redirect = Some(expires);
        self
    }

    /// The options it was built with.
    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// Smallest non-final chunk the storage backend accepts, to advertise as `OCI-Chunk-Min-Length`.
    pub fn min_chunk_len(&self) -> Option<u64> {
        self.storage.min_chunk_len()
    }

    /// Tells the subscribers, if any, that `change` happened to `digest` in `repository`.
    fn emit(
        &self,
        origin: &Origin<'_>,
        repository: &RepoName,
        digest: Option<&Digest>,
        change: Change<'_>,
    ) {
        if self.sinks.is_empty() {
            return;
        }
        self.sinks.emit(&Event {
            change,
            repository,
            digest,
            origin,
        });
    }

    fn ensure_delete_enabled(&self) -> Result<()> {
        if self.opts.delete_enabled {
            Ok(())
        } else {
            Err(RegistryError::Unsupported(
                "deletes are disabled (storage.delete.enabled is false)",
            ))
        }
    }
}
