//! Blob upload sessions: start, mount, append (streamed or chunked), status, finish, cancel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_meta::UploadSession;
use berth_oci::{Algorithm, Digest, Hasher, RepoName, UploadId};
use berth_storage::{layout, ByteStream, StorageError};
use futures::StreamExt;

use crate::events::{Change, Origin};
use crate::{Registry, RegistryError, Result};

/// Where an upload session stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    /// Session id.
    pub id: UploadId,
    /// Bytes received so far.
    pub size: u64,
}

/// Outcome of a cross-repository mount request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// The blob was linked into the target repository; its size.
    Mounted(u64),
    /// The source lacked the blob; a normal upload session was started instead.
    Started(UploadProgress),
}

/// Per-session async locks so appends to one session never interleave within this process
/// (storage's offset check covers other processes).
#[derive(Default)]
pub(crate) struct SessionLocks(Mutex<HashMap<UploadId, Weak<tokio::sync::Mutex<()>>>>);

impl SessionLocks {
    async fn lock(&self, id: &UploadId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 1024 {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(id).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(id.clone(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

/// An append that failed; when the client's stream broke, the hasher reflects the bytes kept.
struct AppendFailure {
    error: RegistryError,
    kept: Option<Hasher>,
}

impl Registry {
    /// Starts an upload session in `repo` that hashes its bytes with `alg` as they arrive (the
    /// spec's `?digest-algorithm=`). A closing digest of another algorithm still verifies, by
    /// reading the bytes once more.
    pub async fn start_upload(&self, repo: &RepoName, alg: Algorithm) -> Result<UploadProgress> {
        let id = new_upload_id();
        self.storage.upload_create(&id).await?;
        let session = UploadSession {
            id: id.clone(),
            repo: repo.clone(),
            started_at: unix_now(),
            hash_state: Hasher::new(alg).to_state(),
        };
        if let Err(e) = self.meta.create_upload(&session).await {
            self.abort_storage(&id).await;
            return Err(e.into());
        }
        Ok(UploadProgress { id, size: 0 })
    }

    /// Links `digest` from `from` into `repo` when `from` (or `repo` itself) has it; otherwise
    /// starts a session hashing with `digest`'s algorithm. Without `from` a session is always
    /// started: Berth does not do the spec's optional automatic content discovery, so a mount
    /// without a source is a plain upload (202), whatever the target already holds.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        origin: &Origin<'_>,
    ) -> Result<Mount> {
        let alg = digest.algorithm();
        let Some(from) = from else {
            return Ok(Mount::Started(self.start_upload(repo, alg).await?));
        };
        for source in [from, repo] {
            if let Some(size) = self.meta.blob_size(source, digest).await? {
                self.meta.link_blob(repo, digest, size).await?;
                let change = Change::BlobMounted { size, from };
                self.emit(origin, repo, Some(digest), change);
                return Ok(Mount::Mounted(size));
            }
        }
        Ok(Mount::Started(self.start_upload(repo, alg).await?))
    }

    /// Bytes received so far by a session of `repo`.
    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<u64> {
        self.session(repo, id).await?;
        self.storage
            .upload_size(id)
            .await?
            .ok_or(RegistryError::UploadUnknown)
    }

    /// Appends a chunk. `start` is the chunk's declared first byte (from `Content-Range`); it must
    /// equal the bytes received so far. Returns the new size.
    pub async fn patch_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let _guard = self.upload_locks.lock(id).await;
        let (size, hasher) = self.resume(repo, id, start).await?;
        match self.append(id, size, hasher, body).await {
            Ok((new_size, hasher)) => {
                self.meta.update_upload(id, &hasher.to_state()).await?;
                Ok(new_size)
            }
            Err(AppendFailure { error, kept }) => {
                if let Some(h) = kept {
                    self.meta.update_upload(id, &h.to_state()).await?;
                }
                Err(error)
            }
        }
    }

    /// Completes a session: appends the optional final chunk, verifies `digest` over all bytes,
    /// commits the blob and links it into `repo`. On a digest mismatch the upload is discarded.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        start: Option<u64>,
        body: Option<ByteStream>,
        origin: &Origin<'_>,
    ) -> Result<u64> {
        let _guard = self.upload_locks.lock(id).await;
        let (size, mut hasher) = self.resume(repo, id, start).await?;
        if hasher.is_empty() {
            hasher = Hasher::new(digest.algorithm());
        }
        let (size, hasher) = match body {
            Some(b) => self
                .append(id, size, hasher, b)
                .await
                .map_err(|f| f.error)?,
            None => (size, hasher),
        };
        self.verify_and_commit(repo, id, digest, size, hasher)
            .await?;
        self.meta.delete_upload(id).await?;
        self.emit(origin, repo, Some(digest), Change::BlobPushed { size });
        Ok(size)
    }

    /// Single-request upload (`POST ?digest=` with a body, or a monolithic `PUT`): streams, verifies
    /// and commits without creating a persistent session.
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
        origin: &Origin<'_>,
    ) -> Result<u64> {
        let id = new_upload_id();
        self.storage.upload_create(&id).await?;
        let (size, hasher) = match self
            .append(&id, 0, Hasher::new(digest.algorithm()), body)
            .await
        {
            Ok(done) => done,
            Err(f) => {
                self.abort_storage(&id).await;
                return Err(f.error);
            }
        };
        self.verify_and_commit(repo, &id, digest, size, hasher)
            .await?;
        self.emit(origin, repo, Some(digest), Change::BlobPushed { size });
        Ok(size)
    }

    /// Cancels a session and discards its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        let _guard = self.upload_locks.lock(id).await;
        self.session(repo, id).await?;
        self.abort_storage(id).await;
        self.meta.delete_upload(id).await?;
        Ok(())
    }

    /// Where a session of `repo` stands before an append: the bytes stored and the hasher over
    /// them, checked against each other and against the chunk's declared `start`.
    async fn resume(
        &self,
        repo: &RepoName,
        id: &UploadId,
        start: Option<u64>,
    ) -> Result<(u64, Hasher)> {
        let session = self.session(repo, id).await?;
        let size = self
            .storage
            .upload_size(id)
            .await?
            .ok_or(RegistryError::UploadUnknown)?;
        let hasher = session_hasher(&session, size)?;
        if start.is_some_and(|s| s != size) {
            return Err(RegistryError::RangeInvalid { size });
        }
        Ok((size, hasher))
    }

    async fn session(&self, repo: &RepoName, id: &UploadId) -> Result<UploadSession> {
        match self.meta.get_upload(id).await? {
            Some(s) if &s.repo == repo => Ok(s),
            _ => Err(RegistryError::UploadUnknown),
        }
    }

    /// Streams `body` into the upload at `offset`, hashing every chunk on its way to storage.
    async fn append(
        &self,
        id: &UploadId,
        offset: u64,
        hasher: Hasher,
        body: ByteStream,
    ) -> std::result::Result<(u64, Hasher), AppendFailure> {
        let shared = Arc::new(Mutex::new(hasher));
        let tap = Arc::clone(&shared);
        let hashing = body.inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                tap.lock().unwrap_or_else(|p| p.into_inner()).update(bytes);
            }
        });
        let result = self
            .storage
            .upload_append(id, offset, Box::pin(hashing))
            .await;
        let hasher = match Arc::try_unwrap(shared) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(arc) => arc.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        match result {
            Ok(size) if size == hasher.len() => Ok((size, hasher)),
            Ok(size) => Err(fail(RegistryError::UploadInvalid(format!(
                "storage holds {size} bytes but {} were hashed",
                hasher.len()
            )))),
            Err(StorageError::OffsetMismatch { current, .. }) => {
                Err(fail(RegistryError::RangeInvalid { size: current }))
            }
            Err(StorageError::Input(e)) => {
                let kept = self.storage.upload_size(id).await.ok().flatten();
                let consistent = kept == Some(hasher.len());
                let error = RegistryError::UploadInvalid(format!("request body failed: {e}"));
                Err(AppendFailure {
                    error,
                    kept: consistent.then_some(hasher),
                })
            }
            Err(e) => Err(fail(e.into())),
        }
    }

    async fn verify_and_commit(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        size: u64,
        hasher: Hasher,
    ) -> Result<()> {
        let computed = if hasher.algorithm() == digest.algorithm() {
            hasher.finish()
        } else {
            self.rehash(id, digest.algorithm()).await?
        };
        if &computed != digest {
            self.abort_storage(id).await;
            let _ = self.meta.delete_upload(id).await;
            return Err(RegistryError::DigestInvalid(format!(
                "content digest is {computed}, not {digest}"
            )));
        }
        let key = layout::blob(digest);
        if self.storage.stat(&key).await? == Some(size) {
            self.abort_storage(id).await;
        } else {
            self.storage.upload_commit(id, &key).await?;
        }
        self.meta.link_blob(repo, digest, size).await?;
        Ok(())
    }

    async fn rehash(&self, id: &UploadId, alg: Algorithm) -> Result<Digest> {
        let mut hasher = Hasher::new(alg);
        let mut stream = self.storage.upload_read(id).await?;
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.map_err(StorageError::Backend)?);
        }
        Ok(hasher.finish())
    }

    async fn abort_storage(&self, id: &UploadId) {
        if let Err(e) = self.storage.upload_abort(id).await {
            tracing::warn!(upload = %id, error = %e, "could not discard upload bytes; garbage collection will");
        }
    }
}

fn fail(error: RegistryError) -> AppendFailure {
    AppendFailure { error, kept: None }
}

/// The session's hasher, checked against the bytes storage holds.
fn session_hasher(session: &UploadSession, size: u64) -> Result<Hasher> {
    let hasher = if session.hash_state.is_empty() {
        Hasher::new(Algorithm::Sha256)
    } else {
        Hasher::from_state(&session.hash_state).ok_or_else(|| {
            RegistryError::UploadInvalid(
                "upload session state is corrupt; start a new upload".into(),
            )
        })?
    };
    if hasher.len() != size {
        return Err(RegistryError::UploadInvalid(
            "upload session was interrupted mid-write; start a new upload".into(),
        ));
    }
    Ok(hasher)
}

fn new_upload_id() -> UploadId {
    UploadId::from_random(rand::random())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
