//! Statements run on the single writer connection, inside the group commit's `IMMEDIATE`
//! transaction (the write lock is taken up front, so they never fail half-way on a lock upgrade)
//! and a savepoint per write (see `batch`). Multi-statement operations nest one more savepoint so
//! their helpers read as one unit; single statements are atomic on their own.

use berth_oci::{Digest, RepoName, Tag, UploadId};
use rusqlite::{Connection, OptionalExtension, Savepoint};

use super::read::repo_id;
use super::Context;
use crate::rows::unix_now as now;
use crate::{MetaError, NewManifest, Result, UploadSession};

fn begin(c: &mut Connection) -> Result<Savepoint<'_>> {
    c.savepoint().ctx("begin savepoint")
}

/// The repository's id, inserting the row if it is new.
fn ensure_repo(tx: &Connection, repo: &RepoName) -> rusqlite::Result<i64> {
    if let Some(id) = repo_id(tx, repo)? {
        return Ok(id);
    }
    tx.prepare_cached("INSERT INTO repositories (name, created_at) VALUES (?1, ?2)")?
        .execute((repo.as_str(), now()))?;
    Ok(tx.last_insert_rowid())
}

/// The blob's id, inserting the row if the digest is new (an existing size is kept: the digest
/// determines the content).
fn ensure_blob(tx: &Connection, digest: &Digest, size: u64) -> rusqlite::Result<i64> {
    let existing = tx
        .prepare_cached("SELECT id FROM blobs WHERE digest = ?1")?
        .query_row([digest.as_str()], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    tx.prepare_cached("INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3)")?
        .execute((digest.as_str(), size, now()))?;
    Ok(tx.last_insert_rowid())
}

pub(super) fn link_blob(
    c: &mut Connection,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let tx = begin(c)?;
    link(&tx, repo, digest, size).ctx("link blob")?;
    tx.commit().ctx("commit blob link")
}

/// The rows of a blob link: repository, blob, and the link between them.
fn link(tx: &Connection, repo: &RepoName, digest: &Digest, size: u64) -> rusqlite::Result<()> {
    let repo_id = ensure_repo(tx, repo)?;
    let blob_id = ensure_blob(tx, digest, size)?;
    tx.prepare_cached(
        "INSERT INTO repo_blobs (repo_id, blob_id, linked_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
    )?
    .execute((repo_id, blob_id, now()))
    .map(drop)
}

/// Forgets `repo`'s session `id` and links its blob, in one savepoint; `false` (nothing
/// written) when `repo` has no such session.
pub(super) fn complete_upload(
    c: &mut Connection,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
    id: &UploadId,
) -> Result<bool> {
    let tx = begin(c)?;
    let closed = tx
        .prepare_cached("DELETE FROM uploads WHERE id = ?1 AND repo = ?2")
        .and_then(|mut st| st.execute((id.as_str(), repo.as_str())))
        .ctx("close upload session")?;
    if closed == 0 {
        return Ok(false);
    }
    link(&tx, repo, digest, size).ctx("link uploaded blob")?;
    tx.commit().ctx("commit upload completion")?;
    Ok(true)
}

pub(super) fn unlink_blob(c: &mut Connection, repo: &RepoName, digest: &Digest) -> Result<bool> {
    c.prepare_cached(
        "DELETE FROM repo_blobs \
         WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) \
         AND blob_id = (SELECT id FROM blobs WHERE digest = ?2)",
    )
    .and_then(|mut st| st.execute((repo.as_str(), digest.as_str())))
    .ctx("unlink blob")
    .map(|n| n > 0)
}

/// Records a manifest, its references and its tags in one transaction; on any error the
/// transaction is dropped, which rolls everything back (the repository row included).
pub(super) fn put_manifest(
    c: &mut Connection,
    repo: &RepoName,
    m: &NewManifest,
    tags: &[Tag],
) -> Result<()> {
    let tx = begin(c)?;
    let repo_id = ensure_repo(&tx, repo).ctx("create repository")?;
    let blob_ids = linked_blobs(&tx, repo_id, &m.blobs)?;
    check_children(&tx, repo_id, &m.children)?;
    let manifest_id = insert_manifest(&tx, repo_id, m)?;
    insert_references(&tx, repo_id, manifest_id, &blob_ids, &m.children)
        .ctx("record manifest references")?;
    point_tags(&tx, repo_id, manifest_id, tags).ctx("move tags")?;
    tx.commit().ctx("commit manifest")
}

/// Ids of `blobs` as linked into the repository; `MissingBlob` names the first one that is not.
fn linked_blobs(tx: &Connection, repo_id: i64, blobs: &[Digest]) -> Result<Vec<i64>> {
    let mut st = tx
        .prepare_cached(
            "SELECT b.id FROM blobs b JOIN repo_blobs rb ON rb.blob_id = b.id \
             WHERE rb.repo_id = ?1 AND b.digest = ?2",
        )
        .ctx("prepare blob check")?;
    let mut ids = Vec::with_capacity(blobs.len());
    for digest in blobs {
        let id: Option<i64> = st
            .query_row((repo_id, digest.as_str()), |r| r.get(0))
            .optional()
            .ctx("check blob link")?;
        ids.push(id.ok_or_else(|| MetaError::MissingBlob(digest.clone()))?);
    }
    Ok(ids)
}

/// `MissingManifest` names the first child that is not a manifest of the repository.
fn check_children(tx: &Connection, repo_id: i64, children: &[Digest]) -> Result<()> {
    let mut st = tx
        .prepare_cached("SELECT 1 FROM manifests WHERE repo_id = ?1 AND digest = ?2")
        .ctx("prepare child check")?;
    for digest in children {
        let found = st
            .exists((repo_id, digest.as_str()))
            .ctx("check child manifest")?;
        if !found {
            return Err(MetaError::MissingManifest(digest.clone()));
        }
    }
    Ok(())
}

/// Inserts the manifest unless the repository already holds this digest; returns its id.
fn insert_manifest(tx: &Connection, repo_id: i64, m: &NewManifest) -> Result<i64> {
    let size = u64::try_from(m.bytes.len()).unwrap_or(u64::MAX);
    tx.prepare_cached(
        "INSERT INTO manifests \
         (repo_id, digest, media_type, size, subject, artifact_type, annotations, created_at, bytes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (repo_id, digest) DO NOTHING",
    )
    .and_then(|mut st| {
        st.execute(rusqlite::params![
            repo_id,
            m.digest.as_str(),
            m.media_type,
            size,
            m.subject.as_ref().map(Digest::as_str),
            m.artifact_type,
            m.annotations_json,
            now(),
            &m.bytes[..],
        ])
    })
    .ctx("insert manifest")?;
    tx.prepare_cached("SELECT id FROM manifests WHERE repo_id = ?1 AND digest = ?2")
        .and_then(|mut st| st.query_row((repo_id, m.digest.as_str()), |r| r.get(0)))
        .ctx("read manifest id")
}

fn insert_references(
    tx: &Connection,
    repo_id: i64,
    manifest_id: i64,
    blob_ids: &[i64],
    children: &[Digest],
) -> rusqlite::Result<()> {
    let mut blobs = tx.prepare_cached(
        "INSERT INTO manifest_blobs (manifest_id, blob_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?;
    for blob_id in blob_ids {
        blobs.execute((manifest_id, blob_id))?;
    }
    let mut kids = tx.prepare_cached(
        "INSERT INTO manifest_children (parent_id, repo_id, child_digest) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
    )?;
    for child in children {
        kids.execute((manifest_id, repo_id, child.as_str()))?;
    }
    Ok(())
}

fn point_tags(
    tx: &Connection,
    repo_id: i64,
    manifest_id: i64,
    tags: &[Tag],
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO tags (repo_id, name, manifest_id, updated_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (repo_id, name) DO UPDATE \
         SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at \
         WHERE manifest_id != excluded.manifest_id",
    )?;
    let now = now();
    for tag in tags {
        st.execute((repo_id, tag.as_str(), manifest_id, now))?;
    }
    Ok(())
}

/// Deletes the manifest; `ON DELETE CASCADE` removes its tags and reference rows in the same
/// statement.
pub(super) fn delete_manifest(
    c: &mut Connection,
    repo: &RepoName,
    digest: &Digest,
) -> Result<bool> {
    c.prepare_cached(
        "DELETE FROM manifests \
         WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2",
    )
    .and_then(|mut st| st.execute((repo.as_str(), digest.as_str())))
    .ctx("delete manifest")
    .map(|n| n > 0)
}

pub(super) fn delete_tag(c: &mut Connection, repo: &RepoName, tag: &Tag) -> Result<bool> {
    c.prepare_cached(
        "DELETE FROM tags \
         WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) AND name = ?2",
    )
    .and_then(|mut st| st.execute((repo.as_str(), tag.as_str())))
    .ctx("delete tag")
    .map(|n| n > 0)
}

pub(super) fn create_upload(c: &mut Connection, s: &UploadSession) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO uploads (id, repo, started_at, hash_state) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut st| {
        st.execute((
            s.id.as_str(),
            s.repo.as_str(),
            s.started_at,
            &s.hash_state[..],
        ))
    })
    .ctx("create upload session")
    .map(drop)
}

pub(super) fn delete_upload(c: &mut Connection, id: &UploadId) -> Result<bool> {
    c.prepare_cached("DELETE FROM uploads WHERE id = ?1")
        .and_then(|mut st| st.execute([id.as_str()]))
        .ctx("delete upload session")
        .map(|n| n > 0)
}

pub(super) fn update_upload(c: &mut Connection, id: &UploadId, hash_state: &[u8]) -> Result<bool> {
    c.prepare_cached("UPDATE uploads SET hash_state = ?2 WHERE id = ?1")
        .and_then(|mut st| st.execute((id.as_str(), hash_state)))
        .ctx("update upload session")
        .map(|n| n > 0)
}
