//! The embedded SQLite metadata store, Berth's zero-setup default.
//!
//! # Decisions
//!
//! * **rusqlite, not sqlx.** SQLite is a synchronous library; rusqlite calls it directly, keeps
//!   prepared statements cached per connection (`prepare_cached`) and leaves the connection model
//!   to us. sqlx's SQLite driver runs a worker thread and a channel per connection and owns its
//!   pool, which adds a hop to every query and hides the single-writer model below.
//! * **One writer, a pool of readers; only short reads run inline.** SQLite allows one writer at a
//!   time; instead of letting connections race for the lock (and surface `SQLITE_BUSY`), every write
//!   goes through one connection behind an async FIFO mutex. Reads use a small pool of `query_only`
//!   connections; in WAL mode readers never wait for the writer. Writes, referrers and pages of
//!   more than [`INLINE_PAGE`] rows run inside [`tokio::task::spawn_blocking`]. Indexed point
//!   lookups (the pull path) and small pages run on the runtime thread that asks: they take
//!   microseconds, far less than the two thread hand-offs of the blocking pool, which dominated
//!   paginated walks on a loaded machine. A busy timeout still covers other processes (a
//!   `berth gc` run) holding the lock briefly.
//! * **Group commit.** Writes queue for one writer thread that commits whatever queued up together
//!   in one transaction (each write in its own savepoint) and answers each write after that
//!   commit: concurrent pushes share one WAL fsync instead of taking turns (see `batch`).
//! * **Durability.** WAL journal with `synchronous = FULL` by default ([`SqliteOptions::durable`]):
//!   a put that returned is on disk. `durable: false` selects `NORMAL`, which in WAL mode can lose
//!   the last transactions on power loss (never corrupts) and saves one fsync per write.
//! * **Never write on a read.** The pull path (manifest by tag) is one indexed query joining
//!   repositories → tags → manifests on a read connection; no access-time updates.
//! * **Versioned migrations** (`crates/meta/migrations/NNNN_*.sql`, embedded in the binary) run at
//!   [`SqliteStore::open`] in one transaction and are tracked with `PRAGMA user_version`; opening a
//!   database written by a newer Berth fails instead of guessing.
//!
//! # Schema
//!
//! The tables (see `migrations/0001_init.sql`, which documents each one) are shaped for the whole
//! product, not just today's operations:
//!
//! * `repositories`: integer ids so every other table references a repository with 8 bytes.
//! * `blobs`: one row per digest registry-wide: where online GC keeps blob-level state.
//! * `repo_blobs`: which repository may use which blob (registry:2's layer links).
//! * `manifests`: byte-exact manifest bytes plus what the referrers API lists (subject, artifact
//!   type, annotations); bytes last in the row so metadata-only queries skip them.
//! * `tags`: (repository, name) → manifest; moving a tag is an update.
//! * `manifest_blobs` and `manifest_children`: what each manifest references, indexed by the
//!   referenced side so a later GC reference count is an index lookup.
//! * `uploads`: in-progress upload sessions, keyed by id.

mod batch;
mod conn;
mod migrate;
mod ops;
mod read;
#[cfg(test)]
mod tests;
mod write;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, Reference, RepoName, Tag, UploadId};

use crate::{
    BlobLinks, Health, Listing, Manifests, MetaError, NewManifest, Result, StoredManifest,
    UploadSession, UploadSessions,
};

/// Largest page (rows) read inline on the runtime thread; bigger pages go to the blocking pool.
pub const INLINE_PAGE: usize = 1001;

/// Tuning for [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// `synchronous = FULL` (every commit fsynced) when true, the default; `NORMAL` when false.
    pub durable: bool,
    /// Size of the read connection pool (at least one is opened).
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durable: true,
            read_connections: 4,
        }
    }
}

/// [`MetaStore`](crate::MetaStore) on an SQLite database file. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<conn::Db>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.path())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies pending migrations and opens the
    /// connection pool. Blocking: call it at startup or from `spawn_blocking`.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<Self> {
        let db = conn::Db::open(path, &opts, None)?;
        tracing::info!(path = %path.display(), durable = opts.durable, "opened SQLite metadata store");
        Ok(SqliteStore { db: Arc::new(db) })
    }

    /// Opens a fresh database in a new file under the system temporary directory, removed when the
    /// last clone of the store is dropped. For tests of other crates; `synchronous = NORMAL`.
    pub fn open_temporary() -> Result<Self> {
        let temp = conn::TempFiles::new()?;
        let opts = SqliteOptions {
            durable: false,
            read_connections: 2,
        };
        let path = temp.path().to_path_buf();
        let db = conn::Db::open(&path, &opts, Some(temp))?;
        Ok(SqliteStore { db: Arc::new(db) })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }
}

/// Adds the failed operation to rusqlite errors.
trait Context<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| {
            tracing::debug!(error = %e, "sqlite: {what}");
            MetaError::Database(format!("sqlite: {what}: {e}"))
        })
    }
}

#[async_trait]
impl BlobLinks for SqliteStore {
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.db
            .write(move |c| write::link_blob(c, &repo, &digest, size))
            .await
    }

    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.db
            .read_short(move |c| read::blob_size(c, &repo, &digest))
            .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.db
            .write(move |c| write::unlink_blob(c, &repo, &digest))
            .await
    }
}

#[async_trait]
impl Manifests for SqliteStore {
    async fn put_manifest(&self, repo: &RepoName, m: &NewManifest, tags: &[Tag]) -> Result<()> {
        let (repo, m, tags) = (repo.clone(), m.clone(), tags.to_vec());
        self.db
            .write(move |c| write::put_manifest(c, &repo, &m, &tags))
            .await
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>> {
        let (repo, reference) = (repo.clone(), reference.clone());
        self.db
            .read_short(move |c| match &reference {
                Reference::Tag(tag) => read::manifest_by_tag(c, &repo, tag),
                Reference::Digest(digest) => read::manifest_by_digest(c, &repo, digest),
            })
            .await
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.db
            .write(move |c| write::delete_manifest(c, &repo, &digest))
            .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let (repo, tag) = (repo.clone(), tag.clone());
        self.db
            .write(move |c| write::delete_tag(c, &repo, &tag))
            .await
    }
}

#[async_trait]
impl Listing for SqliteStore {
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        let (repo, last) = (repo.clone(), last.map(str::to_owned));
        let f = move |c: &_| read::list_tags(c, &repo, last.as_deref(), limit);
        if limit <= INLINE_PAGE {
            self.db.read_short(f).await
        } else {
            self.db.read(f).await
        }
    }

    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let last = last.map(str::to_owned);
        let f = move |c: &_| read::list_repositories(c, last.as_deref(), limit);
        if limit <= INLINE_PAGE {
            self.db.read_short(f).await
        } else {
            self.db.read(f).await
        }
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        last: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<Descriptor>> {
        let query = read::ReferrersQuery {
            repo: repo.clone(),
            subject: subject.clone(),
            artifact_type: artifact_type.map(str::to_owned),
            last: last.cloned(),
            limit,
        };
        self.db.read(move |c| read::referrers(c, &query)).await
    }
}

#[async_trait]
impl UploadSessions for SqliteStore {
    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        let session = session.clone();
        self.db
            .write(move |c| write::create_upload(c, &session))
            .await
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        let id = id.clone();
        self.db.read_short(move |c| read::get_upload(c, &id)).await
    }

    async fn update_upload(&self, id: &UploadId, hash_state: &[u8]) -> Result<bool> {
        let (id, hash_state) = (id.clone(), hash_state.to_vec());
        self.db
            .write(move |c| write::update_upload(c, &id, &hash_state))
            .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        let id = id.clone();
        self.db.write(move |c| write::delete_upload(c, &id)).await
    }

    async fn complete_upload(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        id: &UploadId,
    ) -> Result<bool> {
        let (repo, digest, id) = (repo.clone(), digest.clone(), id.clone());
        self.db
            .write(move |c| write::complete_upload(c, &repo, &digest, size, &id))
            .await
    }
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.db.read_short(read::ping).await
    }
}
