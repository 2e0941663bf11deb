//! Blob reads and deletes.

use berth_oci::{Digest, Reference, RepoName};
use berth_storage::{layout, ByteRange, ByteStream, StorageError};
use bytes::Bytes;
use futures::stream;

use crate::events::{Change, Origin};
use crate::{Registry, RegistryError, Result};

/// A requested byte range, as in an HTTP `Range: bytes=…` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-` or `first-last` (inclusive).
    From(u64, Option<u64>),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// How a blob GET is answered.
pub enum BlobRead {
    /// Fetch it from this (presigned) URL.
    Redirect(String),
    /// These bytes.
    Body(BlobBody),
}

/// A blob ready to stream: its total size, the served range (inclusive end) and the bytes.
pub struct BlobBody {
    /// Size of the whole blob.
    pub size: u64,
    /// `(first, last)` byte positions served when a range was asked for.
    pub range: Option<(u64, u64)>,
    /// The bytes (the whole blob, or the range).
    pub stream: ByteStream,
}

impl Registry {
    /// Size of a blob in `repo`. Manifests are blobs too, as in registry:2, so a manifest digest in
    /// the repository answers with the manifest's size.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        if let Some(size) = self.meta.blob_size(repo, digest).await? {
            return Ok(size);
        }
        match self.manifest_as_blob(repo, digest).await? {
            Some(bytes) => Ok(bytes.len() as u64),
            None => Err(RegistryError::BlobUnknown(digest.clone())),
        }
    }

    /// Opens blob `digest` of `repo` for a GET, with one metadata lookup: a URL the client may
    /// fetch it from directly when redirects are on ([`Registry::with_blob_redirect`]), the
    /// backend presigns URLs and the blob is linked in `repo` (the client sends its `Range` to
    /// that URL); else the bytes (or an inclusive byte range of them). Manifests are blobs too.
    /// Subscribers hear of the pull once it is ready to serve.
    pub async fn open_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<RangeSpec>,
        origin: &Origin<'_>,
    ) -> Result<BlobRead> {
        let (read, size) = self.read_blob(repo, digest, range).await?;
        self.emit(origin, repo, Some(digest), Change::BlobPulled { size });
        Ok(read)
    }

    /// [`Registry::open_blob`] without the event: how it is served and the whole blob's size.
    async fn read_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<RangeSpec>,
    ) -> Result<(BlobRead, u64)> {
        let Some(size) = self.meta.blob_size(repo, digest).await? else {
            let body = self.manifest_blob_body(repo, digest, range).await?;
            let size = body.size;
            return Ok((BlobRead::Body(body), size));
        };
        if let Some(expires) = self.redirect {
            let key = layout::blob(digest);
            if let Some(url) = self.storage.presign_get(&key, expires).await? {
                return Ok((BlobRead::Redirect(url), size));
            }
        }
        let body = self.stream_blob(repo, digest, size, range).await?;
        Ok((BlobRead::Body(body), size))
    }

    async fn stream_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        range: Option<RangeSpec>,
    ) -> Result<BlobBody> {
        let served = resolve_range(range, size)?;
        let byte_range = served.map(|(first, last)| ByteRange {
            start: first,
            end: Some(last + 1),
        });
        let stream = match self.storage.read(&layout::blob(digest), byte_range).await {
            Ok(s) => s,
            Err(StorageError::RangeNotSatisfiable { size }) => {
                return Err(RegistryError::RangeInvalid { size })
            }
            Err(StorageError::NotFound) => {
                tracing::error!(%repo, %digest, "blob linked in metadata but missing from storage");
                return Err(RegistryError::BlobUnknown(digest.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(BlobBody {
            size,
            range: served,
            stream,
        })
    }

    /// Unlinks a blob from `repo`. The bytes stay until garbage collection finds them unreferenced.
    pub async fn delete_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        origin: &Origin<'_>,
    ) -> Result<()> {
        self.ensure_delete_enabled()?;
        if !self.meta.unlink_blob(repo, digest).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        self.emit(origin, repo, Some(digest), Change::BlobDeleted);
        Ok(())
    }

    async fn manifest_as_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Bytes>> {
        let found = self
            .meta
            .get_manifest(repo, &Reference::Digest(digest.clone()))
            .await?;
        Ok(found.map(|m| m.bytes))
    }

    async fn manifest_blob_body(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<RangeSpec>,
    ) -> Result<BlobBody> {
        let bytes = self
            .manifest_as_blob(repo, digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        let size = bytes.len() as u64;
        let served = resolve_range(range, size)?;
        let slice = match served {
            Some((first, last)) => bytes.slice(first as usize..=last as usize),
            None => bytes,
        };
        Ok(BlobBody {
            size,
            range: served,
            stream: Box::pin(stream::once(async { Ok(slice) })),
        })
    }
}

/// Clamps a requested inclusive range to the object; `None` means the whole object.
fn resolve_range(range: Option<RangeSpec>, size: u64) -> Result<Option<(u64, u64)>> {
    let (first, last) = match range {
        None => return Ok(None),
        Some(RangeSpec::From(first, last)) => (first, last),
        Some(RangeSpec::Suffix(0)) => return Err(RegistryError::RangeInvalid { size }),
        Some(RangeSpec::Suffix(n)) => (size.saturating_sub(n), None),
    };
    if first >= size || last.is_some_and(|l| l < first) {
        return Err(RegistryError::RangeInvalid { size });
    }
    let last = last.map_or(size - 1, |l| l.min(size - 1));
    Ok(Some((first, last)))
}

#[cfg(test)]
mod tests {
    use super::{resolve_range, RangeSpec::*};

    #[test]
    fn ranges_clamp_and_reject() {
        assert_eq!(resolve_range(None, 10).unwrap(), None);
        assert_eq!(
            resolve_range(Some(From(0, Some(3))), 10).unwrap(),
            Some((0, 3))
        );
        assert_eq!(
            resolve_range(Some(From(5, None)), 10).unwrap(),
            Some((5, 9))
        );
        assert_eq!(
            resolve_range(Some(From(5, Some(100))), 10).unwrap(),
            Some((5, 9))
        );
        assert_eq!(resolve_range(Some(Suffix(3)), 10).unwrap(), Some((7, 9)));
        assert_eq!(resolve_range(Some(Suffix(30)), 10).unwrap(), Some((0, 9)));
        assert!(resolve_range(Some(Suffix(0)), 10).is_err());
        assert!(resolve_range(Some(From(10, None)), 10).is_err());
        assert!(resolve_range(Some(From(4, Some(3))), 10).is_err());
        assert!(resolve_range(Some(From(0, None)), 0).is_err());
    }
}
