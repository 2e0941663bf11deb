//! The PostgreSQL metadata store, for several stateless replicas sharing one database.
//!
//! # Decisions
//!
//! * **tokio-postgres + deadpool-postgres, not sqlx.** tokio-postgres is the asynchronous
//!   PostgreSQL driver sqlx's own driver was modelled on, with none of sqlx's machinery (its
//!   `Any` layer, its runtime abstraction, proc-macros, its own pool and migrator): our queries
//!   are plain SQL strings, so the extra layers would only add build time and indirection.
//!   deadpool-postgres adds a small async pool with a per-connection **prepared statement
//!   cache** (`prepare_cached`), so every statement is parsed and planned once per connection
//!   and then runs as a bind/execute of binary parameters. TLS is rustls (ring provider) through
//!   tokio-postgres-rustls, the same TLS stack as the rest of the workspace.
//! * **READ COMMITTED plus explicit locks, not SERIALIZABLE.** Each multi-statement operation
//!   is one transaction whose invariants are protected where another replica could break them:
//!   upserts (`INSERT … ON CONFLICT`) make link, manifest and tag writes idempotent and let the
//!   second of two concurrent writers wait for the first, and the rows a manifest put relies on
//!   (the repository's blob links, the index's children, an existing manifest row) are locked
//!   `FOR KEY SHARE`, so a concurrent unlink or delete waits until the put commits. Tag sets
//!   are sorted before they are upserted, so concurrent pushes lock rows in one order. This
//!   never fails spuriously (SERIALIZABLE would abort every concurrent push of the same tag);
//!   the rare deadlock or serialization failure is retried a few times with back-off.
//! * **Reads are one statement each** (the pull path is one indexed join), outside explicit
//!   transactions, and never write.
//! * **Connection trouble is [`MetaError::Unavailable`]**: refused or dropped connections,
//!   server shutdown and "too many connections" map to it (the registry answers 503
//!   `UNAVAILABLE`), the pool waits at most `acquire_timeout` for a connection, and dead
//!   connections are discarded on return, so the store recovers by itself when the server is
//!   back: nothing needs restarting.
//! * **Migrations** (`migrations/postgres/NNNN_*.sql`, embedded) run in one transaction under
//!   an advisory lock and are recorded in `berth_schema_migrations`; see [`migrate`].
//! * **URL**: libpq's `postgres://user:password@host:port/dbname?sslmode=…` or `key=value`
//!   form. With TLS (`sslmode=prefer`, the default, or `require`) the server certificate is
//!   always verified against the system roots plus `sslrootcert=PATH`, like libpq's
//!   `verify-full`; `sslmode=disable` turns TLS off.

mod migrate;
mod ops;
mod pool;
pub mod read;
mod write;

use std::time::Duration;

use async_trait::async_trait;
use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, Reference, RepoName, Tag, UploadId};
use deadpool_postgres::{Object, Pool};

pub use migrate::LATEST as SCHEMA_VERSION;
use pool::Fail;

use crate::{
    BlobLinks, Health, Listing, Manifests, NewManifest, Result, StoredManifest, UploadSession,
    UploadSessions,
};

/// How often an operation that hit a deadlock or serialization failure is tried in all.
const ATTEMPTS: u32 = 5;

/// Settings for [`PostgresStore`].
#[derive(Clone)]
pub struct PostgresOptions {
    /// libpq-style URL or `key=value` string.
    pub url: String,
    /// Most connections this process opens.
    pub pool_size: usize,
    /// How long an operation waits for a free connection before failing as unavailable.
    pub acquire_timeout: Duration,
}

impl PostgresOptions {
    /// Defaults for `url`: 16 connections, a 10 s wait for one.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            pool_size: 16,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("PostgresOptions")
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish_non_exhaustive()
    }
}

/// [`MetaStore`](crate::MetaStore) on PostgreSQL. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStore {
    /// Connects, applies pending migrations and returns the store: what `berth serve` does at
    /// startup. Fails when the database is unreachable or its schema is newer than this build.
    pub async fn connect(opts: &PostgresOptions) -> Result<Self> {
        let store = Self::connect_lazy(opts)?;
        store.migrate().await?;
        tracing::info!(
            pool_size = opts.pool_size,
            "connected to PostgreSQL metadata store"
        );
        Ok(store)
    }

    /// The store without touching the database (connections open on first use, migrations are
    /// not checked). For `berth migrate-db` and tests.
    pub fn connect_lazy(opts: &PostgresOptions) -> Result<Self> {
        Ok(PostgresStore {
            pool: pool::build(opts)?,
        })
    }

    /// Applies pending migrations; returns the names of those applied (empty when the schema
    /// was current). Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let what = "migrate";
        let mut conn = self.conn().await.map_err(|e| e.into_meta(what))?;
        let client: &mut tokio_postgres::Client = &mut conn;
        migrate::run(client).await.map_err(|e| e.into_meta(what))
    }

    async fn conn(&self) -> std::result::Result<Object, Fail> {
        Ok(self.pool.get().await?)
    }

    /// Runs `op` (which takes its own connection) until it succeeds, fails for good, or has
    /// hit a retryable lock conflict [`ATTEMPTS`] times.
    async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Fail>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tracing::debug!(what, attempt, "postgres: lock conflict; retrying");
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    let err = e.into_meta(what);
                    tracing::debug!(error = %err, "postgres operation failed");
                    return Err(err);
                }
            }
        }
    }
}

#[async_trait]
impl BlobLinks for PostgresStore {
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        self.run("link blob", || async {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            write::link_blob(&tx, repo, digest, size).await?;
            Ok(tx.commit().await?)
        })
        .await
    }

    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        self.run("read blob size", || async {
            read::blob_size(&self.conn().await?, repo, digest).await
        })
        .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.run("unlink blob", || async {
            write::unlink_blob(&self.conn().await?, repo, digest).await
        })
        .await
    }
}

#[async_trait]
impl Manifests for PostgresStore {
    async fn put_manifest(&self, repo: &RepoName, m: &NewManifest, tags: &[Tag]) -> Result<()> {
        self.run("put manifest", || async {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            write::put_manifest(&tx, repo, m, tags).await?;
            Ok(tx.commit().await?)
        })
        .await
    }

    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>> {
        self.run("read manifest", || async {
            let conn = self.conn().await?;
            match reference {
                Reference::Tag(tag) => read::manifest_by_tag(&conn, repo, tag).await,
                Reference::Digest(d) => read::manifest_by_digest(&conn, repo, d).await,
            }
        })
        .await
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.run("delete manifest", || async {
            write::delete_manifest(&self.conn().await?, repo, digest).await
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        self.run("delete tag", || async {
            write::delete_tag(&self.conn().await?, repo, tag).await
        })
        .await
    }
}

#[async_trait]
impl Listing for PostgresStore {
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        self.run("list tags", || async {
            read::list_tags(&self.conn().await?, repo, last, limit).await
        })
        .await
    }

    async fn list_repositories(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>> {
        self.run("list repositories", || async {
            read::list_repositories(&self.conn().await?, last, limit).await
        })
        .await
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
            repo,
            subject,
            artifact_type,
            last,
            limit,
        };
        self.run("list referrers", || async {
            read::referrers(&self.conn().await?, &query).await
        })
        .await
    }
}

#[async_trait]
impl UploadSessions for PostgresStore {
    async fn create_upload(&self, session: &UploadSession) -> Result<()> {
        self.run("create upload session", || async {
            write::create_upload(&self.conn().await?, session).await
        })
        .await
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadSession>> {
        self.run("read upload session", || async {
            read::get_upload(&self.conn().await?, id).await
        })
        .await
    }

    async fn update_upload(&self, id: &UploadId, hash_state: &[u8]) -> Result<bool> {
        self.run("update upload session", || async {
            write::update_upload(&self.conn().await?, id, hash_state).await
        })
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        self.run("delete upload session", || async {
            write::delete_upload(&self.conn().await?, id).await
        })
        .await
    }

    async fn complete_upload(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        id: &UploadId,
    ) -> Result<bool> {
        self.run("complete upload", || async {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await?;
            let closed = write::complete_upload(&tx, repo, digest, size, id).await?;
            tx.commit().await?;
            Ok(closed)
        })
        .await
    }
}

#[async_trait]
impl Health for PostgresStore {
    async fn ping(&self) -> Result<()> {
        self.run("ping", || async { read::ping(&self.conn().await?).await })
            .await
    }
}
