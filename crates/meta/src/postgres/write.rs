//! Writes. Multi-statement operations run in one READ COMMITTED transaction that takes row locks
//! where another replica could invalidate a check before commit; single statements are atomic on
//! their own. See the module doc of [`super`] for the concurrency argument.

use berth_oci::{Digest, RepoName, Tag, UploadId};
use deadpool_postgres::{GenericClient, Transaction};

use super::pool::Fail;
use crate::rows::{sql_int as sql_size, unix_now as now};
use crate::{MetaError, NewManifest, UploadSession};

type Result<T> = std::result::Result<T, Fail>;

/// Inserts a row unless a unique key already has one, and returns the row's id either way.
///
/// `INSERT … ON CONFLICT DO NOTHING` waits for a concurrent inserter of the same key to finish;
/// if it committed, nothing is returned and the following `SELECT` (a new statement, hence a new
/// READ COMMITTED snapshot) sees its row. Rows of these tables are never deleted by the
/// registry, so the loop ends at the second turn at the latest.
async fn ensure(
    tx: &Transaction<'_>,
    select: &str,
    insert: &str,
    key: &(dyn tokio_postgres::types::ToSql + Sync),
    extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<i64> {
    let select = tx.prepare_cached(select).await?;
    let insert = tx.prepare_cached(insert).await?;
    let mut params = vec![key];
    params.extend_from_slice(extra);
    for _ in 0..3 {
        if let Some(row) = tx.query_opt(&select, &[key]).await? {
            return Ok(row.try_get(0)?);
        }
        if let Some(row) = tx.query_opt(&insert, &params).await? {
            return Ok(row.try_get(0)?);
        }
    }
    Err(Fail::Meta(MetaError::Database(
        "postgres: a row vanished while it was being created".into(),
    )))
}

/// The repository's id, inserting the row if it is new.
async fn ensure_repo(tx: &Transaction<'_>, repo: &RepoName) -> Result<i64> {
    ensure(
        tx,
        "SELECT id FROM repositories WHERE name = $1",
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
        &repo.as_str(),
        &[&now()],
    )
    .await
}

/// The blob's id, inserting the row if the digest is new (an existing size is kept: the digest
/// determines the content).
async fn ensure_blob(tx: &Transaction<'_>, digest: &Digest, size: u64) -> Result<i64> {
    ensure(
        tx,
        "SELECT id FROM blobs WHERE digest = $1",
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (digest) DO NOTHING RETURNING id",
        &digest.as_str(),
        &[&sql_size(size), &now()],
    )
    .await
}

pub(super) async fn link_blob(
    tx: &Transaction<'_>,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let repo_id = ensure_repo(tx, repo).await?;
    let blob_id = ensure_blob(tx, digest, size).await?;
    let st = tx
        .prepare_cached(
            "INSERT INTO repo_blobs (repo_id, blob_id, linked_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&st, &[&repo_id, &blob_id, &now()]).await?;
    Ok(())
}

/// Forgets `repo`'s session `id` and links its blob into `repo`. The caller commits; `false`
/// (nothing written) when `repo` has no such session. The `DELETE` takes the session's row
/// lock, so of two replicas completing one session the second waits, finds the row gone and
/// gets `false`.
pub(super) async fn complete_upload(
    tx: &Transaction<'_>,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
    id: &UploadId,
) -> Result<bool> {
    let st = tx
        .prepare_cached("DELETE FROM uploads WHERE id = $1 AND repo = $2")
        .await?;
    if tx.execute(&st, &[&id.as_str(), &repo.as_str()]).await? == 0 {
        return Ok(false);
    }
    link_blob(tx, repo, digest, size).await?;
    Ok(true)
}

pub(super) async fn unlink_blob(
    c: &impl GenericClient,
    repo: &RepoName,
    digest: &Digest,
) -> Result<bool> {
    let st = c
        .prepare_cached(
            "DELETE FROM repo_blobs \
             WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) \
             AND blob_id = (SELECT id FROM blobs WHERE digest = $2)",
        )
        .await?;
    Ok(c.execute(&st, &[&repo.as_str(), &digest.as_str()]).await? > 0)
}

/// Records a manifest, its references and its tags. The caller commits; any error drops the
/// transaction, which rolls everything back (a new repository row included).
pub(super) async fn put_manifest(
    tx: &Transaction<'_>,
    repo: &RepoName,
    m: &NewManifest,
    tags: &[Tag],
) -> Result<()> {
    let repo_id = ensure_repo(tx, repo).await?;
    let blob_ids = linked_blobs(tx, repo_id, &m.blobs).await?;
    check_children(tx, repo_id, &m.children).await?;
    let manifest_id = insert_manifest(tx, repo_id, m).await?;
    insert_references(tx, repo_id, manifest_id, &blob_ids, &m.children).await?;
    point_tags(tx, repo_id, manifest_id, tags).await
}

/// Sorted, de-duplicated text of digests or tags: one array parameter per statement, and a
/// fixed order in which concurrent transactions take row locks (no lock-order deadlocks).
fn unique_sorted<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = items.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Ids of `blobs` as linked into the repository; `MissingBlob` names the first one (in the
/// manifest's order) that is not. The links are locked `FOR KEY SHARE`: an `unlink_blob` from
/// another replica waits until this put commits, so no committed manifest names an unlinked blob.
async fn linked_blobs(tx: &Transaction<'_>, repo_id: i64, blobs: &[Digest]) -> Result<Vec<i64>> {
    if blobs.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = unique_sorted(blobs.iter().map(Digest::as_str));
    let st = tx
        .prepare_cached(
            "SELECT b.digest, b.id FROM repo_blobs rb JOIN blobs b ON b.id = rb.blob_id \
             WHERE rb.repo_id = $1 AND b.digest = ANY($2) \
             ORDER BY b.digest FOR KEY SHARE OF rb",
        )
        .await?;
    let rows = tx.query(&st, &[&repo_id, &wanted]).await?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        found.insert(row.try_get::<_, &str>(0)?, row.try_get::<_, i64>(1)?);
    }
    let mut ids = Vec::with_capacity(found.len());
    for digest in blobs {
        let id = found.get(digest.as_str()).copied();
        ids.push(id.ok_or_else(|| Fail::Meta(MetaError::MissingBlob(digest.clone())))?);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// `MissingManifest` names the first child that is not a manifest of the repository. The
/// children are locked `FOR KEY SHARE`, so a concurrent delete waits for this put.
async fn check_children(tx: &Transaction<'_>, repo_id: i64, children: &[Digest]) -> Result<()> {
    if children.is_empty() {
        return Ok(());
    }
    let wanted = unique_sorted(children.iter().map(Digest::as_str));
    let st = tx
        .prepare_cached(
            "SELECT digest FROM manifests WHERE repo_id = $1 AND digest = ANY($2) \
             ORDER BY digest FOR KEY SHARE",
        )
        .await?;
    let rows = tx.query(&st, &[&repo_id, &wanted]).await?;
    let found = rows
        .iter()
        .map(|r| r.try_get::<_, &str>(0))
        .collect::<std::result::Result<std::collections::HashSet<_>, _>>()?;
    match children.iter().find(|d| !found.contains(d.as_str())) {
        Some(missing) => Err(Fail::Meta(MetaError::MissingManifest(missing.clone()))),
        None => Ok(()),
    }
}

/// Inserts the manifest unless the repository already holds this digest; returns its id. An
/// existing row is locked `FOR KEY SHARE` so a concurrent delete cannot remove it before the
/// tags pointing at it commit; a row deleted between the two statements is inserted anew.
async fn insert_manifest(tx: &Transaction<'_>, repo_id: i64, m: &NewManifest) -> Result<i64> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO manifests (repo_id, digest, media_type, size, subject, artifact_type, \
             annotations, created_at, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (repo_id, digest) DO NOTHING RETURNING id",
        )
        .await?;
    let select = tx
        .prepare_cached("SELECT id FROM manifests WHERE repo_id = $1 AND digest = $2 FOR KEY SHARE")
        .await?;
    let size = sql_size(m.bytes.len());
    let subject = m.subject.as_ref().map(Digest::as_str);
    let bytes: &[u8] = &m.bytes;
    for _ in 0..3 {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &repo_id,
            &m.digest.as_str(),
            &m.media_type,
            &size,
            &subject,
            &m.artifact_type,
            &m.annotations_json,
            &now(),
            &bytes,
        ];
        if let Some(row) = tx.query_opt(&insert, &params).await? {
            return Ok(row.try_get(0)?);
        }
        let existing = tx
            .query_opt(&select, &[&repo_id, &m.digest.as_str()])
            .await?;
        if let Some(row) = existing {
            return Ok(row.try_get(0)?);
        }
    }
    Err(Fail::Meta(MetaError::Database(
        "postgres: the manifest was deleted concurrently three times during its put".into(),
    )))
}

async fn insert_references(
    tx: &Transaction<'_>,
    repo_id: i64,
    manifest_id: i64,
    blob_ids: &[i64],
    children: &[Digest],
) -> Result<()> {
    if !blob_ids.is_empty() {
        let st = tx
            .prepare_cached(
                "INSERT INTO manifest_blobs (manifest_id, blob_id) \
                 SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&st, &[&manifest_id, &blob_ids]).await?;
    }
    if !children.is_empty() {
        let kids = unique_sorted(children.iter().map(Digest::as_str));
        let st = tx
            .prepare_cached(
                "INSERT INTO manifest_children (parent_id, repo_id, child_digest) \
                 SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&st, &[&manifest_id, &repo_id, &kids]).await?;
    }
    Ok(())
}

/// Points every tag at the manifest in one upsert. Tags are de-duplicated (an upsert may not
/// touch a row twice) and sorted, so two replicas moving overlapping tag sets lock them in the
/// same order.
async fn point_tags(
    tx: &Transaction<'_>,
    repo_id: i64,
    manifest_id: i64,
    tags: &[Tag],
) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let names = unique_sorted(tags.iter().map(Tag::as_str));
    let st = tx
        .prepare_cached(
            "INSERT INTO tags (repo_id, name, manifest_id, updated_at) \
             SELECT $1, unnest($2::text[]), $3, $4 \
             ON CONFLICT (repo_id, name) DO UPDATE \
             SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at \
             WHERE tags.manifest_id <> excluded.manifest_id",
        )
        .await?;
    tx.execute(&st, &[&repo_id, &names, &manifest_id, &now()])
        .await?;
    Ok(())
}

/// Deletes the manifest; `ON DELETE CASCADE` removes its tags and reference rows in the same
/// statement.
pub(super) async fn delete_manifest(
    c: &impl GenericClient,
    repo: &RepoName,
    digest: &Digest,
) -> Result<bool> {
    let st = c
        .prepare_cached(
            "DELETE FROM manifests \
             WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2",
        )
        .await?;
    Ok(c.execute(&st, &[&repo.as_str(), &digest.as_str()]).await? > 0)
}

pub(super) async fn delete_tag(c: &impl GenericClient, repo: &RepoName, tag: &Tag) -> Result<bool> {
    let st = c
        .prepare_cached(
            "DELETE FROM tags \
             WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND name = $2",
        )
        .await?;
    Ok(c.execute(&st, &[&repo.as_str(), &tag.as_str()]).await? > 0)
}

pub(super) async fn create_upload(c: &impl GenericClient, s: &UploadSession) -> Result<()> {
    let st = c
        .prepare_cached(
            "INSERT INTO uploads (id, repo, started_at, hash_state) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    let state: &[u8] = &s.hash_state;
    c.execute(
        &st,
        &[&s.id.as_str(), &s.repo.as_str(), &s.started_at, &state],
    )
    .await?;
    Ok(())
}

pub(super) async fn update_upload(
    c: &impl GenericClient,
    id: &UploadId,
    hash_state: &[u8],
) -> Result<bool> {
    let st = c
        .prepare_cached("UPDATE uploads SET hash_state = $2 WHERE id = $1")
        .await?;
    Ok(c.execute(&st, &[&id.as_str(), &hash_state]).await? > 0)
}

pub(super) async fn delete_upload(c: &impl GenericClient, id: &UploadId) -> Result<bool> {
    let st = c
        .prepare_cached("DELETE FROM uploads WHERE id = $1")
        .await?;
    Ok(c.execute(&st, &[&id.as_str()]).await? > 0)
}
