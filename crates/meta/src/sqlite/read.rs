//! Queries run on the `query_only` read connections. Each is one indexed statement (list_tags
//! adds a repository lookup first, to tell an unknown repository from an empty one).

use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, RepoName, Tag, UploadId};
use bytes::Bytes;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row};

use super::{Context, INLINE_PAGE};
use crate::rows::{sql_int, ReferrerRow, SQLITE};
use crate::{Result, StoredManifest, UploadSession};

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
    row.map(|(digest, media_type, bytes)| SQLITE.manifest(&digest, media_type, bytes))
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
    let params = (repo.as_str(), last.unwrap_or(""), sql_int(limit.max(1)));
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

/// A TEXT column that is never NULL, borrowed from the row.
fn text<'r>(row: &'r Row, idx: usize) -> rusqlite::Result<&'r str> {
    text_or_null(row, idx)?.ok_or(rusqlite::Error::InvalidColumnType(
        idx,
        "text".into(),
        rusqlite::types::Type::Null,
    ))
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
        .query((last.unwrap_or(""), sql_int(limit)))
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

pub(super) fn referrers(c: &Connection, q: &ReferrersQuery) -> Result<Vec<Descriptor>> {
    let mut st = c.prepare_cached(REFERRERS).ctx("list referrers")?;
    let last = q.last.as_ref().map_or("", Digest::as_str);
    let params = (
        q.repo.as_str(),
        q.subject.as_str(),
        last,
        q.artifact_type.as_deref(),
        sql_int(q.limit),
    );
    let mut rows = st.query(params).ctx("list referrers")?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().ctx("list referrers")? {
        out.push(SQLITE.referrer(referrer_row(row).ctx("read referrer")?)?);
    }
    Ok(out)
}

/// The columns of one referrers row, borrowed from SQLite's row buffer where they are text.
fn referrer_row<'r>(r: &'r Row<'_>) -> rusqlite::Result<ReferrerRow<'r>> {
    Ok(ReferrerRow {
        media_type: r.get(0)?,
        digest: text(r, 1)?,
        size: r.get(2)?,
        artifact_type: r.get(3)?,
        annotations: text_or_null(r, 4)?,
    })
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
    row.map(|(repo, started_at, hash_state)| SQLITE.upload(id, &repo, started_at, hash_state))
        .transpose()
}

pub(super) fn ping(c: &Connection) -> Result<()> {
    c.prepare_cached("SELECT 1")
        .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
        .ctx("ping")
        .map(drop)
}
