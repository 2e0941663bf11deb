//! Blob upload sessions: start, mount, append (streamed or chunked), status, finish, cancel.
//!
//! # Concurrency: one lock layer, storage's
//!
//! The registry takes no per-upload lock of its own. The backends' per-upload lock (storage's
//! `locks` module) is the one layer: every append, commit and abort of an upload holds it, so
//! appends to one session never interleave, and the filesystem's lock outlives a cancelled request
//! whose write is still running on the blocking pool (a registry-level lock is released when the
//! request's future is dropped, which is exactly when that write may still be going). That lock
//! is also what the backend conformance suite holds every backend to, for any caller; a second,
//! registry-level lock could only ever cover one process, while sessions continue on any replica.
//!
//! What the registry adds on top is ordering and checks, so that a request racing another on
//! the same session fails instead of corrupting it:
//! * an append starts at the size storage reports and storage refuses any other offset
//!   (`OffsetMismatch`, answered 416), so of two racing appends one wins whole;
//! * the saved hash state must cover exactly the bytes storage holds, else the append is refused;
//! * a commit names the size that was verified and storage checks it under its lock
//!   ([`berth_storage::UploadStore::upload_commit`]), so an append that slipped in between
//!   verification and commit fails the completion and never puts unverified bytes at a blob's
//!   key;
//! * completing links the blob and closes the session in one metadata transaction
//!   ([`berth_meta::UploadSessions::complete_upload`]); of two racing completions, or a
//!   completion racing a cancel, only one takes effect and the other answers "upload unknown".

use std::sync::{Arc, Mutex};
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
        let (size, hasher) = self.resume(repo, id, start).await?;
        match self.append(id, size, hasher, body).await {
            Ok((new_size, hasher)) => {
                self.save_hash(id, &hasher).await?;
                Ok(new_size)
            }
            Err(AppendFailure { error, kept }) => {
                if let Some(h) = kept {
                    self.save_hash(id, &h).await?;
                }
                Err(error)
            }
        }
    }

    /// Saves the hash state after an append; the session may have been completed or cancelled
    /// meanwhile, and then the append is answered as one to an unknown session.
    async fn save_hash(&self, id: &UploadId, hasher: &Hasher) -> Result<()> {
        if self.meta.update_upload(id, &hasher.to_state()).await? {
            Ok(())
        } else {
            Err(RegistryError::UploadUnknown)
        }
    }

    /// Completes a session: appends the optional final chunk, verifies `digest` over all bytes,
    /// commits the blob, then links it into `repo` and closes the session in one metadata
    /// transaction. On a digest mismatch the upload is discarded.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        start: Option<u64>,
        body: Option<ByteStream>,
        origin: &Origin<'_>,
    ) -> Result<u64> {
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
        self.verify_and_commit(id, digest, size, hasher).await?;
        if !self.meta.complete_upload(repo, digest, size, id).await? {
            // Cancelled or completed by a concurrent request after our checks.
            return Err(RegistryError::UploadUnknown);
        }
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
        self.verify_and_commit(&id, digest, size, hasher).await?;
        self.meta.link_blob(repo, digest, size).await?;
        self.emit(origin, repo, Some(digest), Change::BlobPushed { size });
        Ok(size)
    }

    /// Cancels a session and discards its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
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
            // Committed or aborted by a concurrent request since this one resumed.
            Err(StorageError::NotFound) => Err(fail(RegistryError::UploadUnknown)),
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

    /// Checks `digest` against the bytes hashed, then makes the upload the blob at its key (or
    /// drops it when an identical blob is already there). Links nothing: the caller does.
    async fn verify_and_commit(
        &self,
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
            return Ok(());
        }
        match self.storage.upload_commit(id, &key, size).await {
            Ok(()) => Ok(()),
            Err(StorageError::NotFound) => Err(RegistryError::UploadUnknown),
            // An append slipped in between verification and commit: storage refused to put
            // bytes that were not verified at the blob's key.
            Err(StorageError::OffsetMismatch { current, .. }) => {
                tracing::warn!(%digest, size, current, "upload changed while it was being completed; not committed");
                Err(RegistryError::UploadInvalid(
                    "the upload changed while it was being completed; start a new upload".into(),
                ))
            }
            Err(e) => Err(e.into()),
        }
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

#[cfg(test)]
mod tests {
    //! Requests racing on one session, with no registry-level lock: storage's lock and the
    //! registry's checks keep the bytes whole and never link a blob its digest does not name.

    use std::time::Duration;

    use berth_meta::sqlite::SqliteStore;
    use berth_meta::BlobLinks;
    use berth_storage::fs::FsBackend;
    use berth_storage::{BlobRead, UploadStore};
    use bytes::Bytes;
    use futures::stream;

    use super::*;
    use crate::RegistryOptions;

    struct Setup {
        _dir: tempfile::TempDir,
        reg: Arc<Registry>,
        storage: Arc<FsBackend>,
        meta: Arc<SqliteStore>,
        repo: RepoName,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(FsBackend::new(dir.path()).unwrap());
        let meta = Arc::new(SqliteStore::open_temporary().unwrap());
        let reg = Registry::new(storage.clone(), meta.clone(), RegistryOptions::default());
        let repo = RepoName::parse("race/app").unwrap();
        Setup {
            _dir: dir,
            reg: Arc::new(reg),
            storage,
            meta,
            repo,
        }
    }

    /// `len` bytes of `byte` in 16 KiB frames, yielding to the scheduler between frames.
    fn frames(byte: u8, len: usize) -> ByteStream {
        let frame = Bytes::from(vec![byte; 16 << 10]);
        let count = len / frame.len();
        Box::pin(stream::iter(0..count).then(move |_| {
            let frame = frame.clone();
            async move {
                tokio::task::yield_now().await;
                Ok(frame)
            }
        }))
    }

    /// Nothing, after `delay`: a final chunk that keeps its append (and storage's lock) open.
    fn slow_empty(delay: Duration) -> ByteStream {
        Box::pin(stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok(Bytes::new())
        }))
    }

    impl Setup {
        /// A new session of the test repository holding `bytes`.
        async fn session(&self, bytes: &'static [u8]) -> UploadId {
            let id = self
                .reg
                .start_upload(&self.repo, Algorithm::Sha256)
                .await
                .unwrap()
                .id;
            if !bytes.is_empty() {
                let body = Box::pin(stream::iter([Ok(Bytes::from_static(bytes))]));
                self.reg
                    .patch_upload(&self.repo, &id, Some(0), body)
                    .await
                    .unwrap();
            }
            id
        }
    }

    async fn collect(s: ByteStream) -> Vec<u8> {
        let chunks: Vec<_> = s.collect().await;
        chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect()
    }

    const ORIGIN: Origin<'static> = Origin::system("test");

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_patches_to_one_session_never_interleave() {
        const BLOCK: usize = 256 << 10;
        let s = setup();
        let id = s.session(b"").await;
        let tasks: Vec<_> = (1..=8u8)
            .map(|byte| {
                let (reg, repo, id) = (Arc::clone(&s.reg), s.repo.clone(), id.clone());
                tokio::spawn(async move {
                    let res = reg
                        .patch_upload(&repo, &id, None, frames(byte, BLOCK))
                        .await;
                    (byte, res)
                })
            })
            .collect();
        let mut won = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (byte, Ok(_)) => won.push(byte),
                (_, Err(RegistryError::RangeInvalid { .. } | RegistryError::UploadInvalid(_))) => {}
                (byte, Err(e)) => panic!("append of {byte}: unexpected {e:?}"),
            }
        }
        assert!(!won.is_empty());
        let bytes = collect(s.storage.upload_read(&id).await.unwrap()).await;
        assert_eq!(bytes.len(), won.len() * BLOCK, "only whole appends landed");
        let mut blocks: Vec<u8> = bytes.chunks(BLOCK).map(|b| b[0]).collect();
        for (i, block) in bytes.chunks(BLOCK).enumerate() {
            assert!(
                block.iter().all(|&b| b == blocks[i]),
                "block {i} interleaved"
            );
        }
        blocks.sort_unstable();
        won.sort_unstable();
        assert_eq!(blocks, won);
        let digest = Digest::sha256_of(&bytes);
        let size = s
            .reg
            .finish_upload(&s.repo, &id, &digest, None, None, &ORIGIN)
            .await
            .unwrap();
        assert_eq!(size, bytes.len() as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_patch_slipping_into_a_completion_fails_it_and_links_nothing() {
        let s = setup();
        let id = s.session(b"abc").await;
        let digest = Digest::sha256_of(b"abc");
        let finish = {
            let (reg, repo, id, d) = (
                Arc::clone(&s.reg),
                s.repo.clone(),
                id.clone(),
                digest.clone(),
            );
            let body = slow_empty(Duration::from_millis(200));
            tokio::spawn(async move {
                reg.finish_upload(&repo, &id, &d, None, Some(body), &ORIGIN)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let more = Box::pin(stream::iter([Ok(Bytes::from_static(b"def"))]));
        let patched = s.reg.patch_upload(&s.repo, &id, Some(3), more).await;
        let finished = finish.await.unwrap();
        assert_eq!(
            patched.unwrap(),
            6,
            "the patch waited for storage's lock, then appended"
        );
        assert!(
            matches!(finished, Err(RegistryError::UploadInvalid(_))),
            "{finished:?}"
        );
        assert_eq!(s.meta.blob_size(&s.repo, &digest).await.unwrap(), None);
        assert_eq!(
            s.storage.stat(&layout::blob(&digest)).await.unwrap(),
            None,
            "storage refused to commit bytes that were not verified"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_completions_link_once_and_close_the_session() {
        let s = setup();
        let id = s.session(b"payload").await;
        let digest = Digest::sha256_of(b"payload");
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (reg, repo, id, d) = (
                    Arc::clone(&s.reg),
                    s.repo.clone(),
                    id.clone(),
                    digest.clone(),
                );
                tokio::spawn(
                    async move { reg.finish_upload(&repo, &id, &d, None, None, &ORIGIN).await },
                )
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(size) => {
                    assert_eq!(size, 7);
                    ok += 1;
                }
                Err(RegistryError::UploadUnknown | RegistryError::UploadInvalid(_)) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(ok, 1, "exactly one completion wins");
        assert_eq!(s.meta.blob_size(&s.repo, &digest).await.unwrap(), Some(7));
        let stored = s.storage.read(&layout::blob(&digest), None).await.unwrap();
        assert_eq!(collect(stored).await, b"payload");
        let status = s.reg.upload_status(&s.repo, &id).await;
        assert!(
            matches!(status, Err(RegistryError::UploadUnknown)),
            "{status:?}"
        );
    }
}
