//! The conformance suite on a database file (every role, the outbox and inventory included),
//! plus what only SQLite has: migrations, pragmas, query plans, reference rows, the temporary
//! store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use berth_oci::{Digest, RepoName, Tag};
use bytes::Bytes;

use super::{migrate, read, SqliteOptions, SqliteStore};
use crate::ops::{Inventory, Outbox};
use crate::suite::Fixture;
use crate::{BlobLinks, Manifests, MetaError, MetaStore, NewManifest};

/// A store on a file in its own temporary directory.
struct FileFixture {
    dir: tempfile::TempDir,
    store: SqliteStore,
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("meta.db")
}

async fn file_fixture() -> FileFixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&db_path(dir.path()), SqliteOptions::default()).expect("open");
    FileFixture { dir, store }
}

#[async_trait]
impl Fixture for FileFixture {
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
        let FileFixture { dir, store } = self;
        drop(store);
        let store = SqliteStore::open(&db_path(dir.path()), SqliteOptions::default());
        Some(FileFixture {
            store: store.expect("reopen"),
            dir,
        })
    }
}

mod conformance {
    crate::meta_suite!(super::file_fixture());
}

// ---------------------------------------------------------------------------------------------

async fn pragma(store: &SqliteStore, name: &'static str) -> String {
    store
        .db
        .with_writer(move |c| {
            c.pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
        })
        .await
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
        .expect("pragma")
}

async fn count(store: &SqliteStore, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    store
        .db
        .with_writer(move |c| c.query_row(&sql, [], |r| r.get(0)))
        .await
        .expect("count")
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("repo")
}

fn manifest(body: &str, blobs: Vec<Digest>, children: Vec<Digest>) -> NewManifest {
    let bytes = Bytes::from(format!("{{\"schemaVersion\":2,\"body\":\"{body}\"}}"));
    NewManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes,
        blobs,
        children,
        subject: None,
        artifact_type: None,
        annotations_json: None,
    }
}

#[tokio::test]
async fn reopen_is_a_noop_and_records_the_version() {
    let f = file_fixture().await;
    assert_eq!(
        pragma(&f.store, "user_version").await,
        migrate::LATEST.to_string()
    );
    let tables = count(&f.store, "sqlite_schema").await;
    let path = db_path(f.dir.path());
    drop(f.store);
    let again = SqliteStore::open(&path, SqliteOptions::default()).expect("reopen");
    assert_eq!(
        pragma(&again, "user_version").await,
        migrate::LATEST.to_string()
    );
    assert_eq!(count(&again, "sqlite_schema").await, tables);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let f = file_fixture().await;
    let path = db_path(f.dir.path());
    drop(f.store);
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.pragma_update(None, "user_version", migrate::LATEST + 1)
        .expect("bump version");
    drop(conn);
    match SqliteStore::open(&path, SqliteOptions::default()) {
        Err(MetaError::Database(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a schema version error, got {other:?}"),
    }
}

#[tokio::test]
async fn pragmas_follow_the_options() {
    let f = file_fixture().await;
    assert_eq!(pragma(&f.store, "journal_mode").await, "wal");
    assert_eq!(
        pragma(&f.store, "synchronous").await,
        "2",
        "FULL by default"
    );
    assert_eq!(pragma(&f.store, "foreign_keys").await, "1");
    let fast = SqliteOptions {
        durable: false,
        read_connections: 1,
    };
    let path = f.dir.path().join("fast.db");
    let store = SqliteStore::open(&path, fast).expect("open");
    assert_eq!(
        pragma(&store, "synchronous").await,
        "1",
        "NORMAL when not durable"
    );
    let reader = store.db.read(|c| {
        let q = c.pragma_query_value(None, "query_only", |r| r.get::<_, i64>(0));
        let fk = c.pragma_query_value(None, "foreign_keys", |r| r.get::<_, i64>(0));
        Ok((q, fk))
    });
    let (query_only, fk) = reader.await.expect("read");
    assert_eq!((query_only.ok(), fk.ok()), (Some(1), Some(1)));
}

#[tokio::test]
async fn read_connections_cannot_write() {
    let f = file_fixture().await;
    let res = f
        .store
        .db
        .read(|c| Ok(c.execute("INSERT INTO uploads VALUES ('x', 'y', 0)", [])))
        .await
        .expect("read");
    assert!(res.is_err(), "a reader wrote: {res:?}");
}

/// Each read statement must be index lookups only: no full scan, no sort.
#[tokio::test]
// The query plans go to the test output (shown with --nocapture or when the test fails).
#[allow(clippy::print_stdout)]
async fn read_statements_use_indexes() {
    let f = file_fixture().await;
    let statements = [
        read::BLOB_SIZE,
        read::MANIFEST_BY_TAG,
        read::MANIFEST_BY_DIGEST,
        read::LIST_TAGS,
        read::LIST_REPOSITORIES,
        read::REFERRERS,
    ];
    for sql in statements {
        let plan = f
            .store
            .db
            .with_writer(move |c| {
                let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let nulls = vec![rusqlite::types::Null; st.parameter_count()];
                let params = rusqlite::params_from_iter(nulls);
                let rows = st.query_map(params, |r| r.get::<_, String>(3))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .expect("explain");
        println!("{sql}\n  {}", plan.join("\n  "));
        let bad = plan
            .iter()
            .any(|line| line.starts_with("SCAN") || line.contains("TEMP B-TREE"));
        assert!(!bad, "{sql}\n{plan:#?}");
    }
}

#[tokio::test]
async fn reference_rows_follow_puts_and_deletes() {
    let f = file_fixture().await;
    let r = repo("refs/app");
    let (config, layer) = (Digest::sha256_of(b"config"), Digest::sha256_of(b"layer"));
    f.store.link_blob(&r, &config, 10).await.expect("link");
    f.store.link_blob(&r, &layer, 20).await.expect("link");
    let image = manifest("image", vec![config, layer.clone(), layer], vec![]);
    let tag = Tag::parse("v1").expect("tag");
    f.store
        .put_manifest(&r, &image, std::slice::from_ref(&tag))
        .await
        .expect("put image");
    let idx = manifest("index", vec![], vec![image.digest.clone()]);
    f.store
        .put_manifest(&r, &idx, &[tag])
        .await
        .expect("put index");
    assert_eq!(count(&f.store, "manifest_blobs").await, 2);
    assert_eq!(count(&f.store, "manifest_children").await, 1);
    assert!(f
        .store
        .delete_manifest(&r, &idx.digest)
        .await
        .expect("delete"));
    assert_eq!(count(&f.store, "manifest_children").await, 0);
    assert!(f
        .store
        .delete_manifest(&r, &image.digest)
        .await
        .expect("delete"));
    assert_eq!(count(&f.store, "manifest_blobs").await, 0);
    assert_eq!(count(&f.store, "tags").await, 0);
    assert_eq!(count(&f.store, "blobs").await, 2, "blob rows stay for GC");
}

#[tokio::test]
async fn a_failed_put_leaves_no_rows() {
    let f = file_fixture().await;
    let r = repo("refs/new");
    let m = manifest("m", vec![Digest::sha256_of(b"missing")], vec![]);
    let tag = Tag::parse("v1").expect("tag");
    let err = f.store.put_manifest(&r, &m, &[tag]).await;
    assert!(matches!(err, Err(MetaError::MissingBlob(_))), "{err:?}");
    for table in ["repositories", "manifests", "tags", "manifest_blobs"] {
        assert_eq!(count(&f.store, table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn the_temporary_store_removes_its_files() {
    let store = SqliteStore::open_temporary().expect("temporary");
    let path = store.path().to_path_buf();
    let r = repo("temp/app");
    store
        .put_manifest(&r, &manifest("m", vec![], vec![]), &[])
        .await
        .expect("put");
    assert!(path.exists());
    let clone = store.clone();
    drop(store);
    assert!(path.exists(), "a clone keeps the database");
    drop(clone);
    assert!(!path.exists());
}
