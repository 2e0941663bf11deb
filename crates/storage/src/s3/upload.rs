//! [`UploadStore`] for [`S3Backend`]: sessions as part objects plus one state object, assembled
//! into the blob by a multipart upload at commit (see the module doc of [`super`]).

use std::collections::HashSet;
use std::io;

use async_trait::async_trait;
use berth_oci::UploadId;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, UpdateVersion,
};

use super::session::{PartRef, PendingCommit, SessionState, MAX_PARTS};
use super::{backend_err, deadline, into_byte_stream, map_err, S3Backend};
use crate::layout::{self, Key};
use crate::{ByteStream, Result, StorageError, UploadStore};

/// User metadata on the state object holding the session's size (so `upload_size` is a HEAD).
const SIZE_META: &str = "berth-size";
/// `UploadPartCopy` requests in flight at once during a commit.
const COPY_CONCURRENCY: usize = 8;

/// A session state as read, with the ETag a conditional rewrite must match.
struct Loaded {
    state: SessionState,
    etag: Option<String>,
}

/// Why a state rewrite failed.
#[derive(Debug)]
enum SaveError {
    /// Another writer changed the state since it was read.
    Conflict,
    Failed(StorageError),
}

impl From<StorageError> for SaveError {
    fn from(e: StorageError) -> Self {
        SaveError::Failed(e)
    }
}

impl S3Backend {
    fn state_path(&self, id: &UploadId) -> Path {
        self.path(&layout::upload_state(id))
    }

    fn part_path(&self, id: &UploadId, part: &PartRef) -> Path {
        self.path(&layout::upload_part(id, part.number, part.nonce))
    }

    /// Reads a session's state; `NotFound` for an unknown session.
    async fn load(&self, id: &UploadId) -> Result<Loaded> {
        let got = self
            .small(self.store.get(&self.state_path(id)))
            .await
            .map_err(|e| map_err("get upload state", e))?;
        let etag = got.meta.e_tag.clone();
        let data = self
            .bounded(got.meta.size, got.bytes())
            .await
            .map_err(|e| backend_err("get upload state", e))?;
        let state = SessionState::decode(data).map_err(|e| backend_err("upload", e))?;
        Ok(Loaded { state, etag })
    }

    /// Writes a session's state: `Create` for a new session, else conditional on `etag` when the
    /// service gave one. Returns the new ETag.
    async fn save(
        &self,
        id: &UploadId,
        state: &SessionState,
        mode: PutMode,
    ) -> std::result::Result<Option<String>, SaveError> {
        let size = state.size().to_string();
        let opts = PutOptions {
            mode,
            attributes: Attributes::from_iter([(Attribute::Metadata(SIZE_META.into()), size)]),
            ..Default::default()
        };
        let payload = PutPayload::from(state.encode());
        let len = payload.content_length() as u64;
        let path = self.state_path(id);
        match self
            .bounded(len, self.store.put_opts(&path, payload, opts))
            .await
        {
            Ok(done) => Ok(done.e_tag),
            Err(object_store::Error::Precondition { .. }) => Err(SaveError::Conflict),
            Err(object_store::Error::AlreadyExists { .. }) => Err(SaveError::Failed(backend_err(
                "create upload",
                format!("upload {id} already exists"),
            ))),
            Err(e) => Err(SaveError::Failed(backend_err("put upload state", e))),
        }
    }

    /// Deletes everything under the session's prefix, the state object first (so a failure
    /// half-way leaves only unreferenced parts, which are garbage, never a broken session).
    async fn remove_session(&self, id: &UploadId) -> Result<()> {
        match self.small(self.store.delete(&self.state_path(id))).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(backend_err("delete upload state", e)),
        }
        let rest = self.list_paths(&layout::upload_prefix(id)).await?;
        self.delete_paths(rest).await
    }

    /// Aborts a multipart upload a previous commit left open; failures only leave garbage.
    async fn abort_pending(&self, pending: &PendingCommit) {
        let path = Path::from(pending.path.as_str());
        let abort = self.store.abort_multipart(&path, &pending.upload_id);
        if let Err(e) = self.small(abort).await {
            tracing::debug!(path = %pending.path, error = %e, "could not abort a pending multipart upload (it may be gone)");
        }
    }

    /// Creates a multipart upload at `dest` and fills it from the session's parts and tail.
    async fn assemble(&self, id: &UploadId, loaded: &mut Loaded, dest: &Path) -> Result<()> {
        let upload_id = self
            .small(self.store.create_multipart(dest))
            .await
            .map_err(|e| backend_err("create multipart upload", e))?;
        loaded.state.commit = Some(PendingCommit {
            path: dest.to_string(),
            upload_id: upload_id.clone(),
        });
        let mode = update_mode(&loaded.etag);
        let pending = loaded.state.commit.clone();
        let result = match self.save(id, &loaded.state, mode).await {
            Ok(_) => {
                self.fill_and_complete(id, &loaded.state, dest, &upload_id)
                    .await
            }
            Err(SaveError::Conflict) => Err(backend_err(
                "commit",
                format!("upload {id} changed while it was being committed"),
            )),
            Err(SaveError::Failed(e)) => Err(e),
        };
        if result.is_err() {
            if let Some(p) = pending {
                self.abort_pending(&p).await;
            }
        }
        result
    }

    async fn fill_and_complete(
        &self,
        id: &UploadId,
        state: &SessionState,
        dest: &Path,
        upload_id: &str,
    ) -> Result<()> {
        let sources: Vec<Path> = state.parts.iter().map(|p| self.part_path(id, p)).collect();
        let copies: Vec<_> = sources
            .iter()
            .enumerate()
            .map(|(i, src)| self.raw.upload_part_copy(dest, upload_id, i + 1, src))
            .collect();
        let etags: Vec<String> = futures::stream::iter(copies)
            .buffered(COPY_CONCURRENCY)
            .try_collect()
            .await
            .map_err(|e| backend_err("UploadPartCopy", e))?;
        let mut parts: Vec<PartId> = etags
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        let upload_id = upload_id.to_string();
        if !state.tail.is_empty() {
            let len = state.tail.len() as u64;
            let tail = PutPayload::from(state.tail.clone());
            let put = self.store.put_part(dest, &upload_id, parts.len(), tail);
            let part = self
                .bounded(len, put)
                .await
                .map_err(|e| backend_err("upload part", e))?;
            parts.push(part);
        }
        let limit = deadline::for_complete(self.request_timeout, parts.len());
        let complete = self.store.complete_multipart(dest, &upload_id, parts);
        deadline::within(Some(limit), complete)
            .await
            .map_err(|e| backend_err("complete multipart upload", e))?;
        Ok(())
    }

    /// The size a conflicting writer left, for the `OffsetMismatch` of the loser.
    async fn conflict(&self, id: &UploadId, requested: u64, mine: &[PartRef]) -> StorageError {
        let current = match self.load(id).await {
            Ok(l) => l,
            Err(e) => return e,
        };
        let kept: HashSet<u64> = current.state.parts.iter().map(|p| p.nonce).collect();
        let orphans = mine
            .iter()
            .filter(|p| !kept.contains(&p.nonce))
            .map(|p| self.part_path(id, p))
            .collect();
        if let Err(e) = self.delete_paths(orphans).await {
            tracing::debug!(upload = %id, error = %e, "could not delete the parts of a lost append");
        }
        StorageError::OffsetMismatch {
            current: current.state.size(),
            requested,
        }
    }
}

fn update_mode(etag: &Option<String>) -> PutMode {
    match etag {
        Some(e) => PutMode::Update(UpdateVersion {
            e_tag: Some(e.clone()),
            version: None,
        }),
        None => PutMode::Overwrite,
    }
}

/// One `upload_append`: buffers incoming bytes up to a part, writes full parts as objects and
/// checkpoints the state after each, and saves the tail at the end.
struct Appender<'a> {
    backend: &'a S3Backend,
    id: &'a UploadId,
    offset: u64,
    state: SessionState,
    etag: Option<String>,
    buf: Vec<Bytes>,
    buf_len: usize,
    written: Vec<PartRef>,
}

impl<'a> Appender<'a> {
    fn new(backend: &'a S3Backend, id: &'a UploadId, offset: u64, loaded: Loaded) -> Self {
        let mut state = loaded.state;
        let tail = std::mem::take(&mut state.tail);
        let buf_len = tail.len();
        Appender {
            backend,
            id,
            offset,
            state,
            etag: loaded.etag,
            buf: if tail.is_empty() { vec![] } else { vec![tail] },
            buf_len,
            written: Vec::new(),
        }
    }

    async fn push(&mut self, mut chunk: Bytes) -> Result<()> {
        let part_size = self.backend.part_size;
        while !chunk.is_empty() {
            let take = (part_size - self.buf_len).min(chunk.len());
            self.buf.push(chunk.split_to(take));
            self.buf_len += take;
            if self.buf_len == part_size {
                self.flush_part().await?;
            }
        }
        Ok(())
    }

    /// Writes the buffer as the next part object, then records it in the state.
    async fn flush_part(&mut self) -> Result<()> {
        if self.state.parts.len() >= MAX_PARTS {
            return Err(backend_err(
                "append",
                format!("an upload holds at most {MAX_PARTS} parts; raise storage.s3.chunksize"),
            ));
        }
        let part = PartRef {
            number: self.state.next_part_number(),
            nonce: rand::random(),
            size: self.buf_len as u64,
        };
        let payload = PutPayload::from_iter(self.buf.drain(..));
        self.buf_len = 0;
        self.written.push(part.clone());
        let path = self.backend.part_path(self.id, &part);
        // a part is at least 5 MiB: a transfer, limited by the idle timeout only
        self.backend
            .bounded(part.size, self.backend.store.put(&path, payload))
            .await
            .map_err(|e| backend_err("put upload part", e))?;
        self.state.parts.push(part);
        self.checkpoint().await
    }

    /// Saves the state (with the buffered bytes as its tail when `with_tail`).
    async fn checkpoint(&mut self) -> Result<()> {
        let mode = update_mode(&self.etag);
        match self.backend.save(self.id, &self.state, mode).await {
            Ok(etag) => {
                self.etag = etag;
                Ok(())
            }
            Err(SaveError::Failed(e)) => Err(e),
            Err(SaveError::Conflict) => Err(self
                .backend
                .conflict(self.id, self.offset, &self.written)
                .await),
        }
    }

    /// Saves the buffered bytes as the tail; returns the session's size.
    async fn finish(mut self) -> Result<u64> {
        let mut tail = BytesMut::with_capacity(self.buf_len);
        for b in self.buf.drain(..) {
            tail.extend_from_slice(&b);
        }
        self.state.tail = tail.freeze();
        self.checkpoint().await?;
        Ok(self.state.size())
    }
}

#[async_trait]
impl UploadStore for S3Backend {
    async fn upload_create(&self, id: &UploadId) -> Result<()> {
        match self
            .save(id, &SessionState::default(), PutMode::Create)
            .await
        {
            Ok(_) => Ok(()),
            Err(SaveError::Failed(e)) => Err(e),
            Err(SaveError::Conflict) => Err(backend_err(
                "create upload",
                format!("upload {id} already exists"),
            )),
        }
    }

    async fn upload_size(&self, id: &UploadId) -> Result<Option<u64>> {
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        let path = self.state_path(id);
        let got = match self.small(self.store.get_opts(&path, head)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(backend_err("head upload state", e)),
        };
        let meta = got.attributes.get(&Attribute::Metadata(SIZE_META.into()));
        match meta.and_then(|v| v.as_ref().parse().ok()) {
            Some(size) => Ok(Some(size)),
            // a service that drops user metadata: read the state itself
            None => match self.load(id).await {
                Ok(l) => Ok(Some(l.state.size())),
                Err(StorageError::NotFound) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    async fn upload_append(&self, id: &UploadId, offset: u64, mut data: ByteStream) -> Result<u64> {
        let _guard = self.locks.lock(id).await;
        let loaded = self.load(id).await?;
        let current = loaded.state.size();
        if current != offset {
            return Err(StorageError::OffsetMismatch {
                current,
                requested: offset,
            });
        }
        let mut appender = Appender::new(self, id, offset, loaded);
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(chunk) => appender.push(chunk).await?,
                Err(e) => {
                    let kept = appender.finish().await?;
                    tracing::debug!(upload = %id, kept, error = %e, "upload input stream failed");
                    return Err(StorageError::Input(e));
                }
            }
        }
        appender.finish().await
    }

    async fn upload_read(&self, id: &UploadId) -> Result<ByteStream> {
        let loaded = self.load(id).await?;
        let store = std::sync::Arc::clone(&self.store);
        let limit = Some(self.request_timeout);
        let parts: Vec<Path> = loaded
            .state
            .parts
            .iter()
            .map(|p| self.part_path(id, p))
            .collect();
        let part_bytes = futures::stream::iter(parts)
            .then(move |path| {
                let store = std::sync::Arc::clone(&store);
                async move {
                    // until the headers arrive; the body is a transfer
                    let got = deadline::within(limit, store.get(&path)).await;
                    got.map(|g| into_byte_stream(g.into_stream()))
                        .map_err(|e| io::Error::other(format!("S3 get upload part: {e}")))
                }
            })
            .try_flatten();
        let tail = futures::stream::iter([Ok(loaded.state.tail)]);
        Ok(Box::pin(part_bytes.chain(tail)))
    }

    async fn upload_commit(&self, id: &UploadId, dest: &Key, size: u64) -> Result<()> {
        let _guard = self.locks.lock(id).await;
        let mut loaded = self.load(id).await?;
        let held = loaded.state.size();
        if held != size {
            return Err(StorageError::OffsetMismatch {
                current: held,
                requested: size,
            });
        }
        if let Some(stale) = loaded.state.commit.take() {
            self.abort_pending(&stale).await;
        }
        let dest = self.path(dest);
        if loaded.state.parts.is_empty() {
            let len = loaded.state.tail.len() as u64;
            let tail = PutPayload::from(loaded.state.tail.clone());
            self.bounded(len, self.store.put(&dest, tail))
                .await
                .map_err(|e| backend_err("put blob", e))?;
        } else {
            self.assemble(id, &mut loaded, &dest).await?;
        }
        if let Err(e) = self.remove_session(id).await {
            tracing::warn!(upload = %id, error = %e, "blob committed, but its upload objects remain; garbage collection will remove them");
        }
        Ok(())
    }

    async fn upload_abort(&self, id: &UploadId) -> Result<bool> {
        let _guard = self.locks.lock(id).await;
        let existed = match self.load(id).await {
            Ok(loaded) => {
                if let Some(pending) = &loaded.state.commit {
                    self.abort_pending(pending).await;
                }
                true
            }
            Err(StorageError::NotFound) => false,
            Err(e) => return Err(e),
        };
        self.remove_session(id).await?;
        Ok(existed)
    }

    fn min_chunk_len(&self) -> Option<u64> {
        Some(self.part_size as u64)
    }
}

#[cfg(test)]
mod tests {
    use berth_oci::Digest;

    use super::*;
    use crate::seaweedfs::SeaweedFs;
    use crate::suite::one_chunk;
    use crate::BlobRead;

    /// What a commit records before it copies anything; then the process "dies".
    async fn crash_during_commit(b: &S3Backend, id: &UploadId, dest: &Path) {
        let mut loaded = b.load(id).await.expect("load");
        let upload_id = b.store.create_multipart(dest).await.expect("multipart");
        loaded.state.commit = Some(PendingCommit {
            path: dest.to_string(),
            upload_id,
        });
        let mode = update_mode(&loaded.etag);
        b.save(id, &loaded.state, mode).await.expect("save");
    }

    /// A commit that died after opening its multipart upload leaves it named in the session
    /// state: an abort aborts it, and a retried commit aborts it and completes anew.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multipart_left_by_a_crashed_commit_is_aborted() {
        let weed = SeaweedFs::start().await;
        let b = weed.backend("crashed-commit").await;
        let data = vec![3u8; b.part_size() + 10];
        let dest_key = layout::blob(&Digest::sha256_of(&data));
        let dest = b.path(&dest_key);
        for (n, retry_commit) in [(1u8, false), (2, true)] {
            let id = UploadId::from_random([n; 16]);
            b.upload_create(&id).await.expect("create");
            b.upload_append(&id, 0, one_chunk(&data))
                .await
                .expect("append");
            crash_during_commit(&b, &id, &dest).await;
            assert_eq!(b.pending_multipart_uploads().await.expect("list").len(), 1);
            if retry_commit {
                let size = data.len() as u64;
                b.upload_commit(&id, &dest_key, size).await.expect("commit");
                assert_eq!(
                    b.stat(&dest_key).await.expect("stat"),
                    Some(data.len() as u64)
                );
            } else {
                assert!(b.upload_abort(&id).await.expect("abort"));
            }
            assert!(b
                .pending_multipart_uploads()
                .await
                .expect("list")
                .is_empty());
            let left = b
                .list_paths(&layout::upload_prefix(&id))
                .await
                .expect("list");
            assert!(left.is_empty(), "{left:?}");
        }
    }
}
