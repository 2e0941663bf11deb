//! [`Metered`]: a [`Backend`] wrapper that times every storage call and counts its errors,
//! labelled by backend and operation (cross-cutting concerns are wrappers, not calls sprinkled
//! through the registry). Reads are timed to the first byte: the stream itself is the client's.
//!
//! Decision: the metric handles of every (operation) are registered once, when the wrapper is
//! built, so a call costs one clock read and one histogram record, no label allocation. Like
//! any backend it passes the backend conformance suite (`tests/metered_backend.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_oci::UploadId;
use bytes::Bytes;
use metrics::{Counter, Histogram};

use crate::{
    Backend, BlobRead, BlobRedirect, BlobWrite, ByteRange, ByteStream, Key, Result, StorageError,
    UploadStore,
};

/// The operations timed, in [`Op`] order (the `op` label).
const OPS: [&str; 12] = [
    "stat",
    "read",
    "put",
    "delete",
    "list",
    "upload_create",
    "upload_size",
    "upload_append",
    "upload_read",
    "upload_commit",
    "upload_abort",
    "presign_get",
];

/// Index of an operation in [`OPS`].
#[derive(Clone, Copy)]
enum Op {
    Stat,
    Read,
    Put,
    Delete,
    List,
    UploadCreate,
    UploadSize,
    UploadAppend,
    UploadRead,
    UploadCommit,
    UploadAbort,
    PresignGet,
}

/// Times calls into `inner`.
pub struct Metered {
    inner: Arc<dyn Backend>,
    handles: [(Histogram, Counter); OPS.len()],
}

impl Metered {
    /// Wraps `inner`, labelling its metrics `backend="<name>"`
    /// (`berth_storage_operation_duration_seconds`, `berth_storage_errors_total`).
    pub fn new(inner: Arc<dyn Backend>, name: &'static str) -> Self {
        let handles = OPS.map(|op| {
            (
                metrics::histogram!("berth_storage_operation_duration_seconds", "backend" => name, "op" => op),
                metrics::counter!("berth_storage_errors_total", "backend" => name, "op" => op),
            )
        });
        Metered { inner, handles }
    }

    async fn timed<T>(&self, op: Op, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let out = f.await;
        let (time, errors) = &self.handles[op as usize];
        time.record(start.elapsed());
        if let Err(e) = &out {
            if is_failure(e) {
                errors.increment(1);
            }
        }
        out
    }
}

/// Expected outcomes (absent key, client-side stream errors) are not backend errors.
fn is_failure(e: &StorageError) -> bool {
    matches!(e, StorageError::Backend(_))
}

#[async_trait]
impl BlobRead for Metered {
    async fn stat(&self, key: &Key) -> Result<Option<u64>> {
        self.timed(Op::Stat, self.inner.stat(key)).await
    }

    async fn read(&self, key: &Key, range: Option<ByteRange>) -> Result<ByteStream> {
        self.timed(Op::Read, self.inner.read(key, range)).await
    }
}

#[async_trait]
impl BlobWrite for Metered {
    async fn put(&self, key: &Key, data: Bytes) -> Result<()> {
        self.timed(Op::Put, self.inner.put(key, data)).await
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        self.timed(Op::Delete, self.inner.delete(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        self.timed(Op::List, self.inner.list(prefix)).await
    }
}

#[async_trait]
impl UploadStore for Metered {
    async fn upload_create(&self, id: &UploadId) -> Result<()> {
        self.timed(Op::UploadCreate, self.inner.upload_create(id))
            .await
    }

    async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>> {
        self.timed(Op::UploadSize, self.inner.upload_size(id)).await
    }

    async fn upload_append(&self, id: &UploadId, offset: u64, data: ByteStream) -> Result<u64> {
        self.timed(Op::UploadAppend, self.inner.upload_append(id, offset, data))
            .await
    }

    async fn upload_read(&self, id: &UploadId) -> Result<ByteStream> {
        self.timed(Op::UploadRead, self.inner.upload_read(id)).await
    }

    async fn upload_commit(&self, id: &UploadId, dest: &Key, size: u64) -> Result<()> {
        self.timed(Op::UploadCommit, self.inner.upload_commit(id, dest, size))
            .await
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<bool> {
        self.timed(Op::UploadAbort, self.inner.upload_abort(id))
            .await
    }

    fn min_chunk_len(&self) -> Option<u64> {
        self.inner.min_chunk_len()
    }
}

#[async_trait]
impl BlobRedirect for Metered {
    async fn presign_get(&self, key: &Key, expires: Duration) -> Result<Option<String>> {
        self.timed(Op::PresignGet, self.inner.presign_get(key, expires))
            .await
    }
}
