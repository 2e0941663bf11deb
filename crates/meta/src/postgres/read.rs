//! Reads: each operation is ONE prepared statement (cached per connection) on a pooled
//! connection, outside any explicit transaction, so it sees one consistent snapshot and never
//! writes.

use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, RepoName, Tag, UploadId};
use bytes::Bytes;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::pool::Fail;
use crate::rows::{sql_int, unsigned, ReferrerRow, POSTGRES};
use crate::{StoredManifest, UploadSession};

type Result<T> = std::result::Result<T, Fail>;

// The read statements, public so tests (and operators running EXPLAIN) can check their plans.
// The repository id comes from a scalar subquery on the unique name index, so every other table
// is entered through an index whose leading column is that id, and `ORDER BY` is index order.

/// Size of a blob linked into a repository.
/// The blob by digest first, then its link by the whole primary key (never a walk over all of
/// the repository's links).
pub const BLOB_SIZE: &str = "SELECT b.size FROM blobs b WHERE b.digest = $2 \
     AND EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.blob_id = b.id \
         AND rb.repo_id = (SELECT id FROM repositories WHERE name = $1))";
/// The pull path: repository name → tag → manifest, three index lookups.
pub const MANIFEST_BY_TAG: &str = "SELECT m.digest, m.media_type, m.bytes \
     FROM tags t JOIN manifests m ON m.id = t.manifest_id \
     WHERE t.repo_id = (SELECT id FROM repositories WHERE name = $1) AND t.name = $2";
/// A manifest by digest in a repository.
pub const MANIFEST_BY_DIGEST: &str = "SELECT media_type, bytes FROM manifests \
     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2";
/// One page of a repository's tags in one round trip: no row for an unknown repository, one row
/// with a NULL name for a known repository without (more) tags.
pub const LIST_TAGS: &str = "SELECT t.name FROM repositories r \
     LEFT JOIN LATERAL (SELECT name FROM tags \
         WHERE repo_id = r.id AND name > $2 ORDER BY name LIMIT $3) t ON true \
     WHERE r.name = $1";
/// One page of repositories holding at least one manifest.
pub const LIST_REPOSITORIES: &str = "SELECT name FROM repositories r WHERE name > $1 \
     AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id) \
     ORDER BY name LIMIT $2";
/// One page of referrers, filtered, in digest order.
pub const REFERRERS: &str = "SELECT media_type, digest, size, artifact_type, annotations \
     FROM manifests \
     WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) \
     AND subject = $2 AND digest > $3 AND ($4::text IS NULL OR artifact_type = $4) \
     ORDER BY digest LIMIT $5";
/// An upload session.
pub const GET_UPLOAD: &str = "SELECT repo, started_at, hash_state FROM uploads WHERE id = $1";

pub(super) async fn blob_size(
    c: &impl GenericClient,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<u64>> {
    let st = c.prepare_cached(BLOB_SIZE).await?;
    let row = c
        .query_opt(&st, &[&repo.as_str(), &digest.as_str()])
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?.map(unsigned))
}

pub(super) async fn manifest_by_tag(
    c: &impl GenericClient,
    repo: &RepoName,
    tag: &Tag,
) -> Result<Option<StoredManifest>> {
    let st = c.prepare_cached(MANIFEST_BY_TAG).await?;
    let Some(row) = c.query_opt(&st, &[&repo.as_str(), &tag.as_str()]).await? else {
        return Ok(None);
    };
    let manifest = POSTGRES.manifest(row.try_get(0)?, row.try_get(1)?, bytes(&row, 2)?)?;
    Ok(Some(manifest))
}

pub(super) async fn manifest_by_digest(
    c: &impl GenericClient,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Option<StoredManifest>> {
    let st = c.prepare_cached(MANIFEST_BY_DIGEST).await?;
    let Some(row) = c
        .query_opt(&st, &[&repo.as_str(), &digest.as_str()])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(StoredManifest {
        digest: digest.clone(),
        media_type: row.try_get(0)?,
        bytes: bytes(&row, 1)?,
    }))
}

/// Copies a `bytea` column into `Bytes` (one copy, out of the row's buffer).
fn bytes(row: &Row, idx: usize) -> Result<Bytes> {
    let raw: &[u8] = row.try_get(idx)?;
    Ok(Bytes::copy_from_slice(raw))
}

pub(super) async fn list_tags(
    c: &impl GenericClient,
    repo: &RepoName,
    last: Option<&str>,
    limit: usize,
) -> Result<Option<Vec<String>>> {
    let st = c.prepare_cached(LIST_TAGS).await?;
    // '' sorts before every tag, so `name > ''` keeps the index range scan for the first page.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&repo.as_str(), &last.unwrap_or(""), &sql_int(limit)];
    let rows = c.query(&st, &params).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut names = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(name) = row.try_get::<_, Option<String>>(0)? {
            names.push(name);
        }
    }
    Ok(Some(names))
}

pub(super) async fn list_repositories(
    c: &impl GenericClient,
    last: Option<&str>,
    limit: usize,
) -> Result<Vec<String>> {
    let st = c.prepare_cached(LIST_REPOSITORIES).await?;
    let rows = c
        .query(&st, &[&last.unwrap_or(""), &sql_int(limit)])
        .await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(Fail::from))
        .collect()
}

/// Arguments of a referrers listing.
pub(super) struct ReferrersQuery<'a> {
    pub(super) repo: &'a RepoName,
    pub(super) subject: &'a Digest,
    pub(super) artifact_type: Option<&'a str>,
    pub(super) last: Option<&'a Digest>,
    pub(super) limit: usize,
}

pub(super) async fn referrers(
    c: &impl GenericClient,
    q: &ReferrersQuery<'_>,
) -> Result<Vec<Descriptor>> {
    let st = c.prepare_cached(REFERRERS).await?;
    let last = q.last.map_or("", Digest::as_str);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &q.repo.as_str(),
        &q.subject.as_str(),
        &last,
        &q.artifact_type,
        &sql_int(q.limit),
    ];
    let rows = c.query(&st, &params).await?;
    rows.iter().map(descriptor).collect()
}

fn descriptor(row: &Row) -> Result<Descriptor> {
    let row = ReferrerRow {
        media_type: row.try_get(0)?,
        digest: row.try_get(1)?,
        size: row.try_get(2)?,
        artifact_type: row.try_get(3)?,
        annotations: row.try_get(4)?,
    };
    Ok(POSTGRES.referrer(row)?)
}

pub(super) async fn get_upload(
    c: &impl GenericClient,
    id: &UploadId,
) -> Result<Option<UploadSession>> {
    let st = c.prepare_cached(GET_UPLOAD).await?;
    let Some(row) = c.query_opt(&st, &[&id.as_str()]).await? else {
        return Ok(None);
    };
    let session = POSTGRES.upload(id, row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)?;
    Ok(Some(session))
}

pub(super) async fn ping(c: &impl GenericClient) -> Result<()> {
    let st = c.prepare_cached("SELECT 1").await?;
    c.query_one(&st, &[]).await?;
    Ok(())
}
