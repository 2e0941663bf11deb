//! Manifest push, pull and delete.

use std::collections::HashSet;

use berth_meta::{NewManifest, StoredManifest};
use berth_oci::manifest::{Manifest, ManifestError, MAX_MANIFEST_BYTES};
use berth_oci::{Digest, Reference, RepoName, Tag};
use bytes::Bytes;

use crate::events::{Change, Origin};
use crate::{Registry, RegistryError, Result};

/// Result of a manifest push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutManifest {
    /// Digest of the stored bytes.
    pub digest: Digest,
    /// The manifest's `subject`, answered as `OCI-Subject`.
    pub subject: Option<Digest>,
    /// The extra tags (`?tag=`) the push applied, once each in request order, answered as
    /// `OCI-Tag`.
    pub extra_tags: Vec<Tag>,
}

impl Registry {
    /// Stores a manifest byte-exact under `reference` (a tag, or its own digest) and the extra
    /// `tags`, after checking that everything it references is in `repo`.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
        origin: &Origin<'_>,
    ) -> Result<PutManifest> {
        let parsed = Manifest::parse(&bytes, content_type).map_err(|e| match e {
            ManifestError::TooLarge => RegistryError::ManifestTooLarge,
            other => RegistryError::ManifestInvalid(other.to_string()),
        })?;
        let digest = match reference {
            Reference::Digest(d) => {
                let computed = Digest::of(d.algorithm(), &bytes);
                if &computed != d {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest digest is {computed}, not {d}"
                    )));
                }
                computed
            }
            Reference::Tag(_) => Digest::sha256_of(&bytes),
        };
        let extra_tags = distinct(extra_tags);
        // The reference's tag first, then the extra ones in request order, each once.
        let mut tags = Vec::with_capacity(extra_tags.len() + 1);
        if let Reference::Tag(t) = reference {
            tags.push(t.clone());
        }
        for t in &extra_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        let size = bytes.len() as u64;
        let record = new_manifest(&parsed, digest.clone(), bytes)?;
        self.meta.put_manifest(repo, &record, &tags).await?;
        let media_type = &record.media_type;
        let change = Change::ManifestPushed {
            size,
            media_type,
            tags: &tags,
        };
        self.emit(origin, repo, Some(&digest), change);
        Ok(PutManifest {
            digest,
            subject,
            extra_tags,
        })
    }

    /// Serves the manifest a tag or digest names in `repo` (a GET: subscribers hear of it).
    pub async fn pull_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        origin: &Origin<'_>,
    ) -> Result<StoredManifest> {
        let m = self.get_manifest(repo, reference).await?;
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        let change = Change::ManifestPulled {
            size: m.bytes.len() as u64,
            media_type: &m.media_type,
            tag,
        };
        self.emit(origin, repo, Some(&m.digest), change);
        Ok(m)
    }

    /// The manifest a tag or digest names in `repo`, without telling anyone (a HEAD).
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        self.meta
            .get_manifest(repo, reference)
            .await?
            .ok_or(RegistryError::ManifestUnknown)
    }

    /// Deletes by digest (the manifest and all its tags) or by tag (only the tag).
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        origin: &Origin<'_>,
    ) -> Result<()> {
        self.ensure_delete_enabled()?;
        let found = match reference {
            Reference::Digest(d) => self.meta.delete_manifest(repo, d).await?,
            Reference::Tag(t) => self.meta.delete_tag(repo, t).await?,
        };
        if !found {
            return Err(RegistryError::ManifestUnknown);
        }
        match reference {
            Reference::Digest(d) => self.emit(origin, repo, Some(d), Change::ManifestDeleted),
            Reference::Tag(tag) => self.emit(origin, repo, None, Change::TagDeleted { tag }),
        }
        Ok(())
    }
}

/// Largest manifest body the API should read before giving up (one byte over the limit, so an
/// oversized body is detected rather than silently truncated).
pub const MANIFEST_READ_LIMIT: usize = MAX_MANIFEST_BYTES + 1;

/// `tags` without repeats, in their first-seen order.
fn distinct(tags: &[Tag]) -> Vec<Tag> {
    let mut seen = HashSet::with_capacity(tags.len());
    tags.iter().filter(|t| seen.insert(*t)).cloned().collect()
}

fn new_manifest(parsed: &Manifest, digest: Digest, bytes: Bytes) -> Result<NewManifest> {
    let annotations_json = parsed
        .annotations
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| {
            RegistryError::ManifestInvalid(format!("annotations cannot be encoded: {e}"))
        })?;
    Ok(NewManifest {
        digest,
        media_type: parsed.media_type.clone(),
        bytes,
        blobs: parsed.required_blobs(),
        children: parsed.child_manifests(),
        subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
        artifact_type: parsed.referrer_artifact_type(),
        annotations_json,
    })
}
