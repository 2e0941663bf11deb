//! Queries run on the `query_only` read connections. Each is one indexed statement (list_tags
//! adds a repository lookup first, to tell an unknown repository from an empty one).

use std::collections::BTreeMap;

use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, RepoName, Tag, UploadId};
use bytes::Bytes;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row};

use super::{Context, INLINE_PAGE};
use crate::{MetaError, Result, StoredManifest, UploadSession};

// The read statements, named so tests can check their query plans.

/// Size of a blob linked into a repository.
pub(super) const BLOB_SIZE: &str = "SELECT b.size FROM repositories r \
     JOIN repo_blobs rb ON rb.repo_id = r.id \
     JOIN blobs b ON b.id = rb.blob_id \
     WHERE r.name = ?1 AND b.digest = ?2";
/// The pull path: repository name → tag → manifest, three index lookups.
pub(super) const MANIFEST_BY_TAG: &str =
    "SELECT m.digest, m.media_type, m.bytes FROM repositories r \
     JOIN tags t ON t.repo_id = r.id \
     JOIN manifests m ON m.id = t.manifest_id \
     WHERE r.name = ?1 AND t.name = ?2";
/// A manifest by digest in a repository.
pub(super) const MANIFEST_BY_DIGEST: &str = "SELECT m.media_type, m.bytes FROM repositories r \
     JOIN manifests m ON m.repo_id = r.id \
     WHERE r.name = ?1 AND m.digest = ?2";
/// One page of a repository's tags (`''` sorts before every tag, keeping the range scan). One
/// statement, so one read transaction per page: no row means no such repository, one `NULL` row
/// means a repository without tags after `?2`.
pub(super) const LIST_TAGS: &str = "SELECT t.name FROM repositories r \
     LEFT JOIN tags t ON t.repo_id = r.id AND t.name > ?2 \
     WHERE r.name = ?1 ORDER BY t.name LIMIT ?3";
/// One page of repositories holding at least one manifest.
pub(super) const LIST_REPOSITORIES: &str = "SELECT name FROM repositories r WHERE name > ?1 \
     AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id) \
     ORDER BY name LIMIT ?2";
/// One page of referrers, filtered, in digest order.
pub(super) const REFERRERS: &str =
    "SELECT m.media_type, m.digest, m.size, m.artifact_type, m.annotations \
     FROM repositories r JOIN manifests m ON m.repo_id = r.id \
     WHERE r.name = ?1 AND m.subject = ?2 AND m.digest > ?3 \
     AND (?4 IS NULL OR m.artifact_type = ?4) \
     ORDER BY m.digest LIMIT ?5";

/// `LIMIT` bound for a page size (SQLite integers are signed).
pub(super) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Parses a digest read back from the database.
pub(super) fn stored_digest(text: &str) -> Result<Digest> {
    Digest::parse(text)
        .map_err(|e| MetaError::Database(format!("sqlite: stored digest {text:?} is invalid: {e}")))
}

pub(super) fn blob_size(c: &Connection, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
    c.prepare_cached(BLOB_SIZE)
        .and_then(|mut st| {
            st.query_row((repo.as_str(), digest.as_str()), |r| r.get(0))
                .optional()
        })
        .ctx("read blob size")
}

/// The pull path: one statement, three index lookups, no write.
pub(super) fn manifest_by_tag(
    c: &Connection,
    repo: &RepoName,
    tag: &Tag,
) -> Result<Option<StoredManifest>> {
    let row = c
        .prepare_cached(MANIFEST_BY_TAG)
        .and_then(|mut st| {
            st.query_row((repo.as_str(), tag.as_str()), |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, blob(r, 2)?))
            })
            .optional()
        })
        .ctx("read manifest by tag")?;
    row.map(|(digest, media_type, bytes)| {
        Ok(StoredManifest {
            digest: stored_digest(&digest)?,
            media_type,
            bytes,
        })
    })
    .transpose()
}

pub(super) fn manifest_by_digest(
    c: &Connection,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<StoredManifest>> {
    c.prepare_cached(MANIFEST_BY_DIGEST)
        .and_then(|mut st| {
            st.query_row((repo.as_str(), digest.as_str()), |r| {
                Ok(StoredManifest {
                    digest: digest.clone(),
                    media_type: r.get(0)?,
                    bytes: blob(r, 1)?,
                })
            })
            .optional()
        })
        .ctx("read manifest by digest")
}

/// Copies a BLOB column into `Bytes` (one copy, out of SQLite's page buffer).
fn blob(r: &Row<'_>, idx: usize) -> rusqlite::Result<Bytes> {
    Ok(Bytes::copy_from_slice(r.get_ref(idx)?.as_blob()?))
}

pub(super) fn repo_id(c: &Connection, repo: &RepoName) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM repositories WHERE name = ?1")?
        .query_row([repo.as_str()], |r| r.get(0))
        .optional()
}

pub(super) fn list_tags(
    c: &Connection,
    repo: &RepoName,
    last: Option<&str>,
    limit: usize,
) -> Result<Option<Vec<String>>> {
    let mut st = c.prepare_cached(LIST_TAGS).ctx("list tags")?;
    // LIMIT is at least 1 so that a known repository always yields a row.
    let params = (repo.as_str(), last.unwrap_or(""), sql_limit(limit.max(1)));
    let mut rows = st.query(params).ctx("list tags")?;
    let mut known = false;
    // Names are copied straight out of SQLite's row buffer: one allocation per name, no
    // intermediate `Option<String>` vector (with the range scan, half a tag page's server CPU).
    let mut names = Vec::with_capacity(limit.min(INLINE_PAGE));
    while let Some(row) = rows.next().ctx("list tags")? {
        known = true;
        if names.len() < limit {
            if let Some(name) = text_or_null(row, 0).ctx("list tags")? {
                names.push(name.to_owned());
            }
        }
    }
    Ok(known.then_some(names))
}

/// A TEXT column borrowed from the row (`None` for NULL), without the conversions of `Row::get`.
fn text_or_null<'r>(row: &'r Row, idx: usize) -> rusqlite::Result<Option<&'r str>> {
    match row.get_ref(idx)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(b) => std::str::from_utf8(b)
            .map(Some)
            .map_err(rusqlite::Error::Utf8Error),
        other => Err(rusqlite::Error::InvalidColumnType(
            idx,
            "name".into(),
            other.data_type(),
        )),
    }
}

pub(super) fn list_repositories(
    c: &Connection,
    last: Option<&str>,
    limit: usize,
) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached(LIST_REPOSITORIES)
        .ctx("list repositories")?;
    let mut rows = st
        .query((last.unwrap_or(""), sql_limit(limit)))
        .ctx("list repositories")?;
    let mut names = Vec::with_capacity(limit.min(INLINE_PAGE));
    while let Some(row) = rows.next().ctx("list repositories")? {
        if let Some(name) = text_or_null(row, 0).ctx("list repositories")? {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Arguments of a referrers listing.
pub(super) struct ReferrersQuery {
    pub(super) repo: RepoName,
    pub(super) subject: Digest,
    pub(super) artifact_type: Option<String>,
    pub(super) last: Option<Digest>,
    pub(super) limit: usize,
}

/// A referrer row before its digest and annotations are parsed.
type ReferrerRow = (String, String, u64, Option<String>, Option<String>);

pub(super) fn referrers(c: &Connection, q: &ReferrersQuery) -> Result<Vec<Descriptor>> {
    let rows = c
        .prepare_cached(REFERRERS)
        .and_then(|mut st| {
            let last = q.last.as_ref().map_or("", Digest::as_str);
            let params = (
                q.repo.as_str(),
                q.subject.as_str(),
                last,
                q.artifact_type.as_deref(),
                sql_limit(q.limit),
            );
            st.query_map(params, |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<Vec<ReferrerRow>>>()
        })
        .ctx("list referrers")?;
    rows.into_iter().map(descriptor).collect()
}

fn descriptor(row: ReferrerRow) -> Result<Descriptor> {
    let (media_type, digest, size, artifact_type, annotations) = row;
    let digest = stored_digest(&digest)?;
    let annotations = annotations.and_then(|json| parse_annotations(&digest, &json));
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type,
        annotations,
        urls: None,
        platform: None,
    })
}

/// Annotations stored at push; a value that is not a JSON object of strings is left out (and
/// logged) rather than failing the whole listing.
fn parse_annotations(digest: &Digest, json: &str) -> Option<BTreeMap<String, String>> {
    match serde_json::from_str(json) {
        Ok(map) => Some(map),
        Err(e) => {
            tracing::warn!(%digest, error = %e, "stored annotations are not a JSON object of strings");
            None
        }
    }
}

pub(super) fn get_upload(c: &Connection, id: &UploadId) -> Result<Option<UploadSession>> {
    let row = c
        .prepare_cached("SELECT repo, started_at, hash_state FROM uploads WHERE id = ?1")
        .and_then(|mut st| {
            st.query_row([id.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get(2)?))
            })
            .optional()
        })
        .ctx("read upload session")?;
    row.map(|(repo, started_at, hash_state)| {
        let repo = RepoName::parse(&repo).map_err(|e| {
            MetaError::Database(format!("sqlite: stored repository name is invalid: {e}"))
        })?;
        Ok(UploadSession {
            id: id.clone(),
            repo,
            started_at,
            hash_state,
        })
    })
    .transpose()
}

pub(super) fn ping(c: &Connection) -> Result<()> {
    c.prepare_cached("SELECT 1")
        .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
        .ctx("ping")
        .map(drop)
}
