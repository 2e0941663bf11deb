//! A throwaway PostgreSQL cluster per test, driven through `scripts/postgres` (which also serves
//! shell scripts, e.g. a two-replica end-to-end run): a fresh data directory copied from a cached
//! `initdb` template, a free 127.0.0.1 port, `fsync=off`; stopped and removed when the
//! [`PgCluster`] drops, also when the test panics. A test binary that is killed outright leaves
//! the server running only until it notices its data directory is gone (PostgreSQL checks its
//! lock file every minute).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use berth_meta::ops::{Inventory, Outbox};
use berth_meta::postgres::{PostgresOptions, PostgresStore};
use berth_meta::suite::Fixture;
use berth_meta::MetaStore;

/// `scripts/postgres` of this workspace.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres")
}

/// Runs `scripts/postgres ARGS…`, returning its trimmed standard output; panics with its
/// standard error when it fails.
fn run_script(args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
    assert!(
        out.status.success(),
        "scripts/postgres {args:?} failed ({}): {}\n(run scripts/install-test-deps for PostgreSQL)",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A running cluster; stopped and removed on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    url: String,
}

impl PgCluster {
    /// Starts a fresh cluster (with an empty database `berth`).
    pub fn start() -> PgCluster {
        // As root, the server runs as `postgres` and must be able to enter the directory.
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-test.")
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .expect("temp dir");
        let url = run_script(&["start", &cluster_dir(dir.path())]);
        PgCluster { dir, url }
    }

    /// URL of the `berth` database (`postgres://postgres@127.0.0.1:PORT/berth`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fast shutdown: connected clients are told the server is going away.
    pub fn halt(&self) {
        run_script(&["halt", &cluster_dir(self.dir.path())]);
    }

    /// Starts the halted cluster again, on the same port, with its data.
    pub fn resume(&self) {
        run_script(&["start", &cluster_dir(self.dir.path())]);
    }

    /// Options for a store on the `berth` database.
    pub fn options(&self) -> PostgresOptions {
        PostgresOptions {
            pool_size: 8,
            ..PostgresOptions::new(self.url.clone())
        }
    }

    /// A migrated store with its own pool.
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.options())
            .await
            .expect("connect to the test cluster")
    }

    /// A plain connection for inspecting the database behind the stores' backs.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("test connection ended: {e}");
            }
        });
        client
    }

    /// The first column of the first row of `sql`, as an integer (counts).
    pub async fn count(&self, sql: &str) -> i64 {
        let row = self.client().await.query_one(sql, &[]).await;
        row.expect("count query").get(0)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let dir = cluster_dir(self.dir.path());
        // Never panic in drop (it may run during a panic); report instead.
        match Command::new(script()).args(["stop", &dir]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "scripts/postgres stop {dir}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("scripts/postgres stop {dir}: {e}"),
        }
    }
}

fn cluster_dir(tmp: &Path) -> String {
    tmp.join("cluster").display().to_string()
}

/// The conformance-suite fixture: a cluster of its own and a store on it; `reopen` closes the
/// pool and connects a new store to the same database.
pub struct PgFixture {
    store: PostgresStore,
    cluster: PgCluster,
}

impl PgFixture {
    pub async fn new() -> PgFixture {
        let cluster = PgCluster::start();
        PgFixture {
            store: cluster.store().await,
            cluster,
        }
    }
}

#[async_trait]
impl Fixture for PgFixture {
    fn store(&self) -> Arc<dyn MetaStore> {
        Arc::new(self.store.clone())
    }

    fn outbox(&self) -> Arc<dyn Outbox> {
        Arc::new(self.store.clone())
    }

    fn inventory(&self) -> Arc<dyn Inventory> {
        Arc::new(self.store.clone())
    }

    async fn reopen(self) -> Option<Self> {
        let PgFixture { store, cluster } = self;
        drop(store);
        let store = cluster.store().await;
        Some(PgFixture { store, cluster })
    }
}
