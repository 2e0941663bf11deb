//! The S3 backend: blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, SeaweedFS, R2).
//!
//! # Why object_store
//!
//! [`object_store`] (Apache Arrow's object-store crate, used by DataFusion, Delta-rs, InfluxDB) is a
//! small, well-kept S3 client on `reqwest`/`rustls`, which the workspace already builds; the AWS
//! SDK would add its own HTTP stack and several hundred thousand lines of generated code to every
//! build on our two-core machines. object_store gives ranged streaming `GET`s with resumption,
//! conditional `PUT`s, the low-level [`MultipartStore`], presigned URLs and the whole credential
//! chain (static keys, environment, web identity, ECS/EKS, instance metadata). Its SigV4 signer
//! and HTTP client are public, so the three calls it lacks (`UploadPartCopy`,
//! `ListMultipartUploads`, `CreateBucket`) are small signed requests in [`raw`].
//!
//! # How an upload session is stored
//!
//! A multipart upload must name its object when it starts, but a blob's key (its digest) is
//! known only when the client finishes, so the session cannot stream into a multipart upload at
//! the blob key. Nor can it stream into one at a temporary key: S3 cannot read an unfinished
//! multipart upload back (`upload_read`), nor tell two replicas' part `N` apart. So a session is
//! plain objects under `layout::upload_prefix(id)`, and the multipart upload happens at commit:
//!
//! * appended bytes are buffered up to `chunksize` (≥ 5 MiB) and each full buffer is written as
//!   a **part object** (`part-<n>-<nonce>`); the random nonce means a writer that lost a race
//!   never overwrites the winner's part;
//! * the **state object** (see [`session`]) lists the parts and carries the tail (< one part);
//!   it is rewritten after every part and at the end of every append with a conditional `PUT`
//!   (`If-Match` on its ETag), so two replicas appending to one session at once cannot both
//!   win: the loser gets `OffsetMismatch`. Its size is also in the `x-amz-meta-berth-size`
//!   header, so `upload_size` is one `HEAD`;
//! * **commit** with no part: one `PUT` of the tail at the blob key. Otherwise it creates a
//!   multipart upload at the blob key, fills it server-side with `UploadPartCopy` from the part
//!   objects (several at a time) plus the tail as the last part, and completes it: the blob
//!   appears whole or not at all. The multipart id is saved in the state first, so an abort (or
//!   a retried commit) after a crash aborts it;
//! * **abort** aborts such a pending multipart upload and deletes everything under the prefix.
//!
//! Nothing lives in process memory between requests, so any replica continues any session.
//! Memory per request is one part buffer. A blob can have at most 10 000 parts (S3's limit):
//! 97 GiB at the default 10 MiB `chunksize`.
//!
//! # Time limits
//!
//! Small requests (`HEAD`, `DELETE`, list pages, multipart create/abort/complete, the state
//! object and other bodies up to 1 MiB, and every `GET` until its headers arrive) must finish,
//! retries included, within `requesttimeout` (5 s); transfers (blob bodies, part objects,
//! `UploadPartCopy`) only fail when they stop moving for the idle timeout (60 s). See
//! [`deadline`].

mod deadline;
mod options;
mod raw;
mod session;
#[cfg(test)]
mod stall_tests;
mod upload;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};

use crate::layout::Key;
use crate::locks::UploadLocks;
use crate::{BlobRead, BlobRedirect, BlobWrite, ByteRange, ByteStream, Result, StorageError};

pub use options::{
    InvalidS3Option, S3Options, CREDENTIAL_ENV, DEFAULT_CHUNK_SIZE, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_REGION, DEFAULT_REQUEST_TIMEOUT, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
};
pub use raw::PendingMultipart;

/// Blob storage in an S3 bucket, laid out as [`layout`](crate::layout) describes under the
/// configured root directory.
pub struct S3Backend {
    store: Arc<AmazonS3>,
    raw: raw::RawClient,
    prefix: String,
    part_size: usize,
    /// Total limit of a small request ([`S3Options::request_timeout`]).
    request_timeout: Duration,
    locks: Arc<UploadLocks>,
    describe: String,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

/// A failed S3 call as the contract's `Backend` error, with what was being done. When the
/// service could not be reached at all (refused connection, timeout, no answer within
/// `requesttimeout`, a transfer cut off, all retries spent), the `io::Error` carries a
/// connection [`io::ErrorKind`]: the registry answers those with 503 `UNAVAILABLE` (retry
/// later) rather than 500 `UNKNOWN`.
fn backend_err(what: &str, e: impl S3Cause) -> StorageError {
    StorageError::Backend(io::Error::new(
        e.kind(),
        format!("S3 {what}: {}", e.describe()),
    ))
}

/// What an S3 failure says about reachability.
trait S3Cause: std::fmt::Display {
    /// `Other`, or a connection kind when the service was not reachable.
    fn kind(&self) -> io::ErrorKind {
        io::ErrorKind::Other
    }

    /// The message for the log.
    fn describe(&self) -> String {
        self.to_string()
    }
}

impl S3Cause for object_store::Error {
    fn kind(&self) -> io::ErrorKind {
        use object_store::client::{HttpError, HttpErrorKind};
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cause {
            if let Some(http) = e.downcast_ref::<HttpError>() {
                return match http.kind() {
                    HttpErrorKind::Connect => io::ErrorKind::ConnectionRefused,
                    HttpErrorKind::Timeout => io::ErrorKind::TimedOut,
                    HttpErrorKind::Request | HttpErrorKind::Interrupted => {
                        io::ErrorKind::ConnectionAborted
                    }
                    _ => io::ErrorKind::Other,
                };
            }
            // a call cut off by its time limit (`deadline`)
            if let Some(io) = e.downcast_ref::<io::Error>() {
                if io.kind() == io::ErrorKind::TimedOut {
                    return io::ErrorKind::TimedOut;
                }
            }
            cause = e.source();
        }
        io::ErrorKind::Other
    }

    fn describe(&self) -> String {
        match self {
            // a call cut off by its time limit: "no answer within 5s (…)"
            object_store::Error::Generic { store, source } if *store == deadline::STORE => {
                source.to_string()
            }
            other => other.to_string(),
        }
    }
}

impl S3Cause for raw::RawError {
    fn kind(&self) -> io::ErrorKind {
        self.kind
    }
}

impl S3Cause for String {}
impl S3Cause for &str {}

/// `NotFound` from S3 is the contract's `NotFound`; everything else is a backend error.
fn map_err(what: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        e => backend_err(what, e),
    }
}

impl S3Backend {
    /// A backend for the bucket `opts` names. Checks the options and builds the client; it
    /// does not contact the service (the bucket must exist by the first request).
    pub fn new(opts: &S3Options) -> io::Result<Self> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        opts.validate().map_err(|e| invalid(e.to_string()))?;
        let bucket_url = opts.bucket_url().map_err(invalid)?;
        let store = Arc::new(opts.build_store(&bucket_url).map_err(invalid)?);
        let raw = raw::RawClient::new(opts, &bucket_url, Arc::clone(&store)).map_err(invalid)?;
        let describe = format!(
            "S3Backend({bucket_url}, prefix {:?}, part size {})",
            opts.key_prefix(),
            opts.chunk_size
        );
        Ok(S3Backend {
            store,
            raw,
            prefix: opts.key_prefix(),
            // validate() bounds chunk_size to 5 GiB, which fits a 64-bit usize
            part_size: usize::try_from(opts.chunk_size).unwrap_or(usize::MAX),
            request_timeout: opts.request_timeout,
            locks: Arc::default(),
            describe,
        })
    }

    /// Creates the bucket (for tests and first-time setup; registry:2 never creates one).
    pub async fn create_bucket(&self) -> Result<()> {
        self.raw
            .create_bucket()
            .await
            .map_err(|e| backend_err("CreateBucket", e))
    }

    /// Multipart uploads the bucket holds under this backend's root directory: none unless a
    /// commit is running or a process died during one.
    pub async fn pending_multipart_uploads(&self) -> Result<Vec<PendingMultipart>> {
        self.raw
            .list_multipart_uploads(&self.prefix)
            .await
            .map_err(|e| backend_err("ListMultipartUploads", e))
    }

    /// The part size (`chunksize`).
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// Runs a small call (no body, or one of at most `len` bytes) within `requesttimeout`; a
    /// larger body is a transfer, which only the idle timeout limits.
    async fn bounded<T>(
        &self,
        len: u64,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        deadline::within(deadline::for_body(self.request_timeout, len), call).await
    }

    /// Runs a body-less call within `requesttimeout`.
    async fn small<T>(
        &self,
        call: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        self.bounded(0, call).await
    }

    /// The object path of `key`.
    fn path(&self, key: &Key) -> Path {
        Path::from(format!("{}{}", self.prefix, key.as_str()))
    }

    /// The key of a listed object path, when it is one of ours.
    fn key_of(&self, path: &Path) -> Option<Key> {
        Key::from_listed(path.as_ref().strip_prefix(&self.prefix)?)
    }

    /// Object paths under the key-string prefix `prefix` (any prefix, not only whole segments).
    async fn list_paths(&self, prefix: &str) -> Result<Vec<Path>> {
        let full = format!("{}{prefix}", self.prefix);
        let dir = full.rfind('/').map_or("", |i| &full[..i]);
        let dir = (!dir.is_empty()).then(|| Path::from(dir));
        let mut out = Vec::new();
        let mut listing = self.store.list(dir.as_ref());
        while let Some(meta) = deadline::next_within(self.request_timeout, &mut listing).await {
            let meta = meta.map_err(|e| map_err("list", e))?;
            if meta.location.as_ref().starts_with(&full) {
                out.push(meta.location);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes `paths` (bulk where the service supports it); absent objects are fine.
    async fn delete_paths(&self, paths: Vec<Path>) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let input = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(input);
        while let Some(r) = deadline::next_within(self.request_timeout, &mut results).await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(backend_err("delete", e)),
            }
        }
        Ok(())
    }

    /// The object's size, to tell "range not satisfiable" from "absent" after a failed GET.
    async fn classify_range_failure(
        &self,
        path: &Path,
        start: u64,
        e: object_store::Error,
    ) -> StorageError {
        match self.small(self.store.head(path)).await {
            Ok(meta) if start >= meta.size => StorageError::RangeNotSatisfiable { size: meta.size },
            Ok(_) => map_err("get", e),
            Err(head) => map_err("head", head),
        }
    }

    async fn read_path(&self, path: Path, range: Option<ByteRange>) -> Result<ByteStream> {
        let Some(range) = range else {
            // until the headers arrive; the body is a transfer
            let got = self
                .small(self.store.get(&path))
                .await
                .map_err(|e| map_err("get", e))?;
            return Ok(into_byte_stream(got.into_stream()));
        };
        if range.end.is_some_and(|end| end <= range.start) {
            // an empty range: only existence and the start position need checking
            let size = self
                .small(self.store.head(&path))
                .await
                .map_err(|e| map_err("head", e))?
                .size;
            if range.start >= size {
                return Err(StorageError::RangeNotSatisfiable { size });
            }
            return Ok(Box::pin(futures::stream::empty()));
        }
        let get_range = match range.end {
            Some(end) => GetRange::Bounded(range.start..end),
            None => GetRange::Offset(range.start),
        };
        let opts = GetOptions {
            range: Some(get_range),
            ..Default::default()
        };
        match self.small(self.store.get_opts(&path, opts)).await {
            Ok(got) if range.start >= got.meta.size => Err(StorageError::RangeNotSatisfiable {
                size: got.meta.size,
            }),
            Ok(got) => Ok(into_byte_stream(got.into_stream())),
            Err(e @ object_store::Error::NotFound { .. }) => Err(map_err("get", e)),
            // unreachable: asking again (HEAD) would only double the wait
            Err(e) if e.kind() != io::ErrorKind::Other => Err(map_err("get", e)),
            Err(e) => Err(self.classify_range_failure(&path, range.start, e).await),
        }
    }
}

/// object_store's byte stream as the contract's.
fn into_byte_stream(
    s: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
) -> ByteStream {
    Box::pin(s.map_err(|e| io::Error::other(format!("S3 read: {e}"))))
}

#[async_trait]
impl BlobRead for S3Backend {
    async fn stat(&self, key: &Key) -> Result<Option<u64>> {
        match self.small(self.store.head(&self.path(key))).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend_err("head", e)),
        }
    }

    async fn read(&self, key: &Key, range: Option<ByteRange>) -> Result<ByteStream> {
        self.read_path(self.path(key), range).await
    }
}

#[async_trait]
impl BlobWrite for S3Backend {
    async fn put(&self, key: &Key, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        let path = self.path(key);
        self.bounded(len, self.store.put(&path, PutPayload::from(data)))
            .await
            .map_err(|e| backend_err("put", e))?;
        Ok(())
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        if self.stat(key).await?.is_none() {
            return Ok(false);
        }
        match self.small(self.store.delete(&self.path(key))).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(backend_err("delete", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        let paths = self.list_paths(prefix).await?;
        Ok(paths.iter().filter_map(|p| self.key_of(p)).collect())
    }
}

#[async_trait]
impl BlobRedirect for S3Backend {
    async fn presign_get(&self, key: &Key, expires: Duration) -> Result<Option<String>> {
        let path = self.path(key);
        let url = self
            .small(self.store.signed_url(http::Method::GET, &path, expires))
            .await
            .map_err(|e| backend_err("presign", e))?;
        Ok(Some(url.to_string()))
    }
}
