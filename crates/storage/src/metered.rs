//! A [`Backend`] wrapper that times every storage call and counts its errors, labelled by backend
//! and operation (DESIGN decision 10: cross-cutting concerns are wrappers, not calls sprinkled
//! through the registry). Reads are timed to the first byte: the stream itself is the client's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_oci::UploadId;
use berth_storage::{
    Backend, BlobRead, BlobRedirect, BlobWrite, ByteRange, ByteStream, Key, Result, StorageError,
    UploadStore,
};
use bytes::Bytes;

/// Times calls into `inner`.
pub struct Metered {
    inner: Arc<dyn Backend>,
    name: &'static str,
}

impl Metered {
    /// Wraps `inner`, labelling its metrics `backend="<name>"`.
    pub fn new(inner: Arc<dyn Backend>, name: &'static str) -> Self {
        Metered { inner, name }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let out = f.await;
        metrics::histogram!("berth_storage_operation_duration_seconds", "backend" => self.name, "op" => op)
            .record(start.elapsed());
        if let Err(e) = &out {
            if is_failure(e) {
                metrics::counter!("berth_storage_errors_total", "backend" => self.name, "op" => op)
                    .increment(1);
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
        self.timed("stat", self.inner.stat(key)).await
    }

    async fn read(&self, key: &Key, range: Option<ByteRange>) -> Result<ByteStream> {
        self.timed("read", self.inner.read(key, range)).await
    }
}

#[async_trait]
impl BlobWrite for Metered {
    async fn put(&self, key: &Key, data: Bytes) -> Result<()> {
        self.timed("put", self.inner.put(key, data)).await
    }

    async fn delete(&self, key: &Key) -> Result<bool> {
        self.timed("delete", self.inner.delete(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Key>> {
        self.timed("list", self.inner.list(prefix)).await
    }
}

#[async_trait]
impl UploadStore for Metered {
    async fn upload_create(&self, id: &UploadId) -> Result<()> {
        self.timed("upload_create", self.inner.upload_create(id))
            .await
    }

    async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>> {
        self.timed("upload_size", self.inner.upload_size(id)).await
    }

    async fn upload_append(&self, id: &UploadId, offset: u64, data: ByteStream) -> Result<u64> {
        self.timed("upload_append", self.inner.upload_append(id, offset, data))
            .await
    }

    async fn upload_read(&self, id: &UploadId) -> Result<ByteStream> {
        self.timed("upload_read", self.inner.upload_read(id)).await
    }

    async fn upload_commit(&self, id: &UploadId, dest: &Key) -> Result<()> {
        self.timed("upload_commit", self.inner.upload_commit(id, dest))
            .await
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<bool> {
        self.timed("upload_abort", self.inner.upload_abort(id))
            .await
    }

    fn min_chunk_len(&self) -> Option<u64> {
        self.inner.min_chunk_len()
    }
}

#[async_trait]
impl BlobRedirect for Metered {
    async fn presign_get(&self, key: &Key, expires: Duration) -> Result<Option<String>> {
        self.timed("presign_get", self.inner.presign_get(key, expires))
            .await
    }
}
