//! Blob storage for Berth.
//!
//! Design decision: storage knows bytes and keys, nothing else. It never parses manifests or decides
//! what a repository contains (that is the metadata store's job); it stores content-addressed blob
//! bytes and in-progress upload bytes. The interface is split into small role traits, as in
//! Distribution's storage drivers, so a wrapper (metrics, tracing) or a new backend (S3) implements
//! exactly what it must:
//!
//! * [`BlobRead`]: `stat` and ranged `read` as a stream;
//! * [`BlobWrite`]: small atomic `put` and `delete`, `list` by prefix;
//! * [`UploadStore`]: resumable uploads — create, append at an offset (streamed), size, commit
//!   atomically to a final key, abort;
//! * [`BlobRedirect`]: an optional presigned URL for a client to fetch an object directly
//!   (S3); backends without one (filesystem) keep the default `None`.
//!
//! [`Backend`] is the sum of the four and is what the registry holds (`Arc<dyn Backend>`).
//! Every key is built in [`layout`]; nothing else formats storage paths.
//!
//! Hashing is not done here: the registry hashes the byte stream while it passes to
//! [`UploadStore::upload_append`], so any backend gets digest verification for free.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod fs;
pub mod layout;
mod locks;
pub mod metered;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "seaweedfs")]
pub mod seaweedfs;
#[cfg(any(test, feature = "suite"))]
pub mod suite;

use std::io;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use berth_oci::UploadId;
use bytes::Bytes;
use futures::Stream;

pub use layout::Key;

/// A stream of byte chunks, as read from or written to a backend.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Storage failures. `NotFound` and `OffsetMismatch` are expected outcomes the caller maps to OCI
/// errors; the others are server-side failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key or upload does not exist.
    #[error("not found")]
    NotFound,
    /// An append started at an offset other than the upload's current size.
    #[error("upload offset mismatch: upload has {current} bytes, append starts at {requested}")]
    OffsetMismatch {
        /// Bytes the upload holds now.
        current: u64,
        /// Offset the caller asked to write at.
        requested: u64,
    },
    /// A read range starts at or beyond the end of the object.
    #[error("range not satisfiable for object of {size} bytes")]
    RangeNotSatisfiable {
        /// Object size.
        size: u64,
    },
    /// The byte stream handed to `upload_append` failed (client disconnect, body limit).
    #[error("input stream failed: {0}")]
    Input(io::Error),
    /// The backend failed (disk error, network error to S3, …).
    #[error("storage backend error: {0}")]
    Backend(#[from] io::Error),
}

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

/// A half-open byte range `[start, end)` of an object; `end = None` means "to the end".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte, or none for the object's end.
    pub end: Option<u64>,
}

/// Reading committed objects.
#[async_trait]
pub trait BlobRead: Send + Sync {
    /// Size of the object at `key`, or `None` when absent.
    async fn stat(&self, key: &Key) -> Result<Option<u64>>;

    /// Streams the object (or the range of it). `NotFound` when absent; `RangeNotSatisfiable` when
    /// `range.start >= size` (so any range of an empty object), an `end` past the size is clamped,
    /// and an `end` at or before `start` gives an empty stream.
    async fn read(&self, key: &Key, range: Option<ByteRange>) -> Result<ByteStream>;
}

/// Writing and removing small committed objects.
#[async_trait]
pub trait BlobWrite: Send + Sync {
    /// Writes `data` at `key` atomically and durably (readers see the old object or the new one).
    async fn put(&self, key: &Key, data: Bytes) -> Result<()>;

    /// Deletes the object; `Ok(false)` when it did not exist.
    async fn delete(&self, key: &Key) -> Result<bool>;

    /// Keys under `prefix` (a key-string prefix), in lexical order.
    async fn list(&self, prefix: &str) -> Result<Vec<Key>>;
}

/// Resumable upload sessions whose bytes become an object only at commit.
#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Starts an empty upload. Creating an id that exists is an error (`Backend`).
    async fn upload_create(&self, id: &UploadId) -> Result<()>;

    /// Bytes received so far, or `None` for an unknown upload.
    async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>>;

    /// Appends the stream at `offset`, which must equal the current size (`OffsetMismatch`
    /// otherwise, nothing written; `NotFound` for an unknown upload). Returns the new size. If the
    /// stream fails midway the error is `Input` and whatever bytes were appended stay (a prefix of
    /// the stream); `upload_size` tells how many. Appends need not be fsynced: durability against
    /// power loss is promised only by `upload_commit`.
    async fn upload_append(&self, id: &UploadId, offset: u64, data: ByteStream) -> Result<u64>;

    /// Streams the bytes received so far (used to re-hash an upload whose final digest uses another
    /// algorithm than the one hashed while streaming). `NotFound` for an unknown upload.
    async fn upload_read(&self, id: &UploadId) -> Result<ByteStream>;

    /// Makes the upload's bytes the object at `dest`, atomically and durably, and removes the
    /// upload; an object already at `dest` is replaced. Readers never see a partial object at
    /// `dest`. Only an upload of exactly `size` bytes (the bytes the caller verified) is
    /// committed, checked under the upload's lock: any other size is `OffsetMismatch` (with the
    /// upload's size as `current`) and nothing is written, so an append that races a commit can
    /// never put unverified bytes at a content-addressed key. `NotFound` for an unknown upload.
    async fn upload_commit(&self, id: &UploadId, dest: &Key, size: u64) -> Result<()>;

    /// Discards the upload. `Ok(false)` when it did not exist.
    async fn upload_abort(&self, id: &UploadId) -> Result<bool>;

    /// Smallest non-final chunk the backend can accept (S3 multipart: 5 MiB). `None`: any size.
    fn min_chunk_len(&self) -> Option<u64> {
        None
    }
}

/// Handing a client a URL to fetch an object from the storage service itself, so blob bytes skip
/// the registry (registry:2's `storage.redirect`).
#[async_trait]
pub trait BlobRedirect: Send + Sync {
    /// A URL that serves the object at `key` to an unauthenticated `GET` (ranges included) for
    /// `expires`, or `None` when this backend cannot hand one out. The URL is not checked against
    /// the object's existence; callers stat first.
    async fn presign_get(&self, key: &Key, expires: Duration) -> Result<Option<String>> {
        let _ = (key, expires);
        Ok(None)
    }
}

/// Everything a registry needs from blob storage.
pub trait Backend: BlobRead + BlobWrite + UploadStore + BlobRedirect {}

impl<T: BlobRead + BlobWrite + UploadStore + BlobRedirect> Backend for T {}
