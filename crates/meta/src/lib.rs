//! The metadata store: the source of truth for what a repository contains.
//!
//! Design decision: blob bytes live in content-addressed storage; *references* (which repository
//! holds which blob, manifests and their bytes, tags, index→child and manifest→blob links, referrers,
//! upload sessions) live in a transactional database. Distribution keeps all of this as files, which
//! makes catalog and tag listing crawl and forces stop-the-world GC; Harbor, Quay and GitLab moved to
//! a database for that reason. Each [`MetaStore`] method is one domain operation that commits in one
//! transaction, so a manifest, its links and its tags appear together or not at all, and a
//! completed upload's session disappears in the same transaction that links its blob.
//!
//! The interface is split into small role traits, as storage splits its `Backend`:
//! [`BlobLinks`], [`Manifests`], [`Listing`], [`UploadSessions`] and [`Health`] make up
//! [`MetaStore`] (implemented for every type that has all five); the operations side has
//! [`ops::Outbox`] and [`ops::Inventory`] beside it. Column values read back are turned into
//! domain values in one place for both stores (`rows`).
//!
//! Manifest bytes (≤ 4 MiB) are stored in the database, byte-exact, so a manifest pull is a single
//! indexed lookup. SQLite ([`sqlite::SqliteStore`]) is the zero-setup default; PostgreSQL
//! (`postgres::PostgresStore`, feature `postgres`) serves several replicas sharing one database.
//! Both pass the same test [`suite`].

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod ops;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rows;
pub mod sqlite;
#[cfg(any(test, feature = "suite"))]
pub mod suite;

use async_trait::async_trait;
use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, Reference, RepoName, Tag, UploadId};
use bytes::Bytes;

/// Metadata failures.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// A manifest references a blob not linked into its repository.
    #[error("manifest references blob {0} unknown to the repository")]
    MissingBlob(Digest),
    /// An index references a manifest not present in its repository.
    #[error("index references manifest {0} unknown to the repository")]
    MissingManifest(Digest),
    /// The database failed; details are logged, never sent to clients.
    #[error("metadata database error: {0}")]
    Database(String),
    /// The database cannot be reached right now (connection refused or lost, server shutting
    /// down, no free connection): the request may succeed when retried. Answered with 503.
    #[error("metadata database unavailable: {0}")]
    Unavailable(String),
}

/// Result alias for metadata operations.
pub type Result<T> = std::result::Result<T, MetaError>;

/// A manifest as stored: its digest, effective media type and exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredManifest {
    /// Digest over `bytes`.
    pub digest: Digest,
    /// Media type to answer with (`Content-Type`).
    pub media_type: String,
    /// The bytes the client pushed, byte-exact.
    pub bytes: Bytes,
}

/// Everything needed to record a manifest push.
#[derive(Clone, Debug)]
pub struct NewManifest {
    /// Digest over `bytes`.
    pub digest: Digest,
    /// Effective media type.
    pub media_type: String,
    /// Exact bytes.
    pub bytes: Bytes,
    /// Blobs (config, layers) that must be linked into the repository.
    pub blobs: Vec<Digest>,
    /// Child manifests (index) that must exist in the repository.
    pub children: Vec<Digest>,
    /// The `subject` digest, when the manifest refers to another one.
    pub subject: Option<Digest>,
    /// Artifact type for referrers listings (`artifactType`, else config media type).
    pub artifact_type: Option<String>,
    /// Manifest annotations as a JSON object string, for referrers listings.
    pub annotations_json: Option<String>,
}

/// An in-progress blob upload session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSession {
    /// Session id.
    pub id: UploadId,
    /// Repository the upload belongs to.
    pub repo: RepoName,
    /// Unix seconds when the session started (for purging stale sessions).
    pub started_at: i64,
    /// Opaque resumable-hash state after the last completed append (it encodes the byte count).
    /// Empty for a session that has received nothing yet.
    pub hash_state: Vec<u8>,
}

// The domain operations, split into role traits (as storage splits `Backend`), so a wrapper, a
// fake or a caller names only the part it uses. `MetaStore` is their sum and what the registry
// holds (`Arc<dyn MetaStore>`); every store implements the roles and gets `MetaStore` from the
// blanket impl. Each call is atomic.

/// Which repository may use which committed blob (registry:2's layer links).
#[async_trait]
pub trait BlobLinks: Send + Sync {
    /// Links a committed blob into a repository (creating the repository). Idempotent.
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()>;

    /// Size of the blob if it is linked into the repository.
    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;

    /// Unlinks a blob from a repository; `false` if it was not linked.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
}

/// Manifests, byte-exact, with their references and the tags pointing at them.
#[async_trait]
pub trait Manifests: Send + Sync {
    /// Records a manifest and points `tags` at it, in one transaction. Fails with `MissingBlob` /
    /// `MissingManifest` (writing nothing) when a referenced blob is not linked into `repo` or a
    /// child manifest is not in `repo`. Re-putting identical content is idempotent; tags move.
    async fn put_manifest(&self, repo: &RepoName, m: &NewManifest, tags: &[Tag]) -> Result<()>;

    /// The manifest a tag or digest resolves to in `repo`.
    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>>;

    /// Deletes a manifest from a repository together with every tag pointing at it; `false` if absent.
    /// Indexes listing it as a child and manifests naming it as `subject` are kept (their referrers
    /// stay listable).
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;

    /// Deletes one tag (the manifest stays); `false` if absent.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
}

/// Paginated listings: tags, the catalog, referrers.
#[async_trait]
pub trait Listing: Send + Sync {
    /// Tags of `repo` in lexical (byte) order, strictly after `last`, at most `limit`.
    /// `None` when the repository is unknown: it never had a blob linked or a manifest pushed (a
    /// repository stays known after its content is deleted, like registry:2's directory).
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<String>>>;

    /// Repositories holding at least one manifest, in lexical order, strictly after `last`, at most `limit`.
    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>>;

    /// Manifests in `repo` whose subject is `subject`, ordered by digest, strictly after `last`, at
    /// most `limit`, optionally only those with the given artifact type. Each descriptor carries
    /// mediaType, digest, size, artifactType and annotations.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        last: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Descriptor>>;
}

/// In-progress blob upload sessions.
#[async_trait]
pub trait UploadSessions: Send + Sync {
    /// Records a new upload session.
    async fn create_upload(&self, session: &UploadSession) -> Result<()>;

    /// Looks up an upload session.
    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>>;

    /// Replaces the session's `hash_state` after a completed append; `false` if the session is absent.
    async fn update_upload(&self, id: &UploadId, hash_state: &[u8]) -> Result<bool>;

    /// Forgets an upload session; `false` if absent.
    async fn delete_upload(&self, id: &UploadId) -> Result<bool>;

    /// Completes session `id` of `repo` whose bytes were committed as blob `digest` of `size`
    /// bytes: forgets the session and links the blob into `repo` in ONE transaction, so no reader
    /// ever sees the session gone without the blob linked, or the blob linked with the session
    /// still open. `false`, writing nothing, when `repo` has no such session (never started,
    /// already completed or cancelled, or another repository's): of two concurrent completions
    /// exactly one gets `true`.
    async fn complete_upload(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        id: &UploadId,
    ) -> Result<bool>;
}

/// Reachability, for readiness probes.
#[async_trait]
pub trait Health: Send + Sync {
    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<()>;
}

/// Everything the registry needs from the metadata store: the sum of the role traits, each call
/// atomic. Implemented for every type that implements all of them.
pub trait MetaStore: BlobLinks + Manifests + Listing + UploadSessions + Health {}

impl<T: BlobLinks + Manifests + Listing + UploadSessions + Health> MetaStore for T {}
