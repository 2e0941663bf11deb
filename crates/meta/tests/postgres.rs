//! What only the PostgreSQL store has: two replicas (two pools) racing on one database,
//! migrations run concurrently, a server restart under load, the query plans of the hot read
//! statements, and replicas sharing the outbox (one lease holder, ordered delivery). The cases
//! every store must pass, the outbox and inventory ones included, are in `postgres_suite.rs`.
//! Each test starts its own throwaway cluster (see `pg/mod.rs`).

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod pg;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_meta::ops::Outbox;
use berth_meta::postgres::{read, PostgresStore, SCHEMA_VERSION};
use berth_meta::{BlobLinks, Health, Listing, Manifests, MetaError, NewManifest};
use berth_oci::{Digest, Reference, RepoName, Tag};
use bytes::Bytes;
use pg::PgCluster;

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("repo")
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("tag")
}

fn image(body: &str, blobs: &[Digest]) -> NewManifest {
    let bytes = Bytes::from(format!("{{\"schemaVersion\":2,\"body\":\"{body}\"}}"));
    NewManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes,
        blobs: blobs.to_vec(),
        children: Vec::new(),
        subject: None,
        artifact_type: None,
        annotations_json: None,
    }
}

/// Two stores with separate pools on one database: two replicas.
async fn replicas(cluster: &PgCluster) -> [Arc<PostgresStore>; 2] {
    [
        Arc::new(cluster.store().await),
        Arc::new(cluster.store().await),
    ]
}

/// Waits for every task; any error or panic fails the test with its message.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<Result<T, MetaError>>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("task panicked").expect("operation failed"));
    }
    out
}

/// 32 pushes of different manifests to the same two tags, alternating between two replicas:
/// every push succeeds, each tag ends up at exactly one of the pushed manifests, and every
/// manifest stays reachable by digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_racing_the_same_tags_all_succeed() {
    let cluster = PgCluster::start();
    let stores = replicas(&cluster).await;
    let r = repo("race/tags");
    let base = Digest::sha256_of(b"base layer");
    stores[0].link_blob(&r, &base, 7).await.expect("link");
    let tasks = (0..32)
        .map(|i| {
            let (s, r, base) = (Arc::clone(&stores[i % 2]), r.clone(), base.clone());
            tokio::spawn(async move {
                let m = image(&format!("m{i}"), &[base]);
                s.put_manifest(&r, &m, &[tag("latest"), tag("stable"), tag("latest")])
                    .await?;
                Ok(m.digest)
            })
        })
        .collect();
    let pushed = join_all(tasks).await;
    let tags = stores[1].list_tags(&r, None, 100).await.expect("tags");
    assert_eq!(tags, Some(vec!["latest".to_string(), "stable".to_string()]));
    for t in ["latest", "stable"] {
        let got = stores[0].get_manifest(&r, &Reference::Tag(tag(t))).await;
        let got = got.expect("get").expect("tag resolves");
        assert!(pushed.contains(&got.digest), "{t} -> {}", got.digest);
    }
    for d in &pushed {
        let got = stores[1]
            .get_manifest(&r, &Reference::Digest(d.clone()))
            .await;
        assert!(got.expect("get").is_some(), "{d} lost");
    }
    assert_eq!(cluster.count("SELECT count(*) FROM manifests").await, 32);
    assert_eq!(cluster.count("SELECT count(*) FROM tags").await, 2);
}

/// The same blob linked into the same new repositories, and the same manifest pushed there,
/// from two replicas at once: one repository row, one blob row, one link and one manifest each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_racing_first_pushes_create_each_row_once() {
    let cluster = PgCluster::start();
    let stores = replicas(&cluster).await;
    let layer = Digest::sha256_of(b"shared layer");
    let tasks = (0..48)
        .map(|i| {
            let (s, layer) = (Arc::clone(&stores[i % 2]), layer.clone());
            tokio::spawn(async move {
                let r = repo(&format!("race/new{}", i % 4));
                s.link_blob(&r, &layer, 1234).await?;
                let m = image("same", std::slice::from_ref(&layer));
                s.put_manifest(&r, &m, &[tag("v1")]).await
            })
        })
        .collect();
    join_all(tasks).await;
    assert_eq!(cluster.count("SELECT count(*) FROM repositories").await, 4);
    assert_eq!(cluster.count("SELECT count(*) FROM blobs").await, 1);
    assert_eq!(cluster.count("SELECT count(*) FROM repo_blobs").await, 4);
    assert_eq!(cluster.count("SELECT count(*) FROM manifests").await, 4);
    assert_eq!(
        cluster.count("SELECT count(*) FROM manifest_blobs").await,
        4
    );
    assert_eq!(cluster.count("SELECT count(*) FROM tags").await, 4);
    let catalog = stores[0]
        .list_repositories(None, 10)
        .await
        .expect("catalog");
    assert_eq!(
        catalog,
        ["race/new0", "race/new1", "race/new2", "race/new3"]
    );
}

/// One replica deletes a manifest while the other keeps re-pushing it with a tag, and a third
/// set of tasks unlinks and relinks its blob: nothing fails, and afterwards the tag resolves
/// exactly when the manifest exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_racing_deletes_and_pushes_stay_consistent() {
    let cluster = PgCluster::start();
    let stores = replicas(&cluster).await;
    let r = repo("race/delete");
    let layer = Digest::sha256_of(b"layer");
    stores[0].link_blob(&r, &layer, 5).await.expect("link");
    let m = image("contested", std::slice::from_ref(&layer));
    let mut tasks = Vec::new();
    for w in 0..6 {
        let (s, r, m) = (Arc::clone(&stores[w % 2]), r.clone(), m.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                if w < 3 {
                    match s.put_manifest(&r, &m, &[tag("t")]).await {
                        // The blob may be unlinked at this moment by the other tasks.
                        Ok(()) | Err(MetaError::MissingBlob(_)) => {}
                        Err(e) => return Err(e),
                    }
                } else {
                    s.delete_manifest(&r, &m.digest).await?;
                }
            }
            Ok(())
        }));
    }
    for store in &stores {
        let (s, r, layer) = (Arc::clone(store), r.clone(), layer.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                s.unlink_blob(&r, &layer).await?;
                s.link_blob(&r, &layer, 5).await?;
            }
            Ok(())
        }));
    }
    join_all(tasks).await;
    let by_tag = stores[0].get_manifest(&r, &Reference::Tag(tag("t"))).await;
    let by_digest = stores[1]
        .get_manifest(&r, &Reference::Digest(m.digest.clone()))
        .await;
    let (by_tag, by_digest) = (by_tag.expect("get"), by_digest.expect("get"));
    assert_eq!(by_tag.is_some(), by_digest.is_some());
    stores[0]
        .put_manifest(&r, &m, &[tag("t")])
        .await
        .expect("final put");
    let listed = stores[1].list_tags(&r, None, 10).await.expect("tags");
    assert_eq!(listed, Some(vec!["t".to_string()]));
}

/// Eight processes' worth of migrators at once: exactly one applies the schema, the others
/// find it current; running again applies nothing; a newer schema is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_once_under_concurrency_and_refuse_newer_schemas() {
    let cluster = PgCluster::start();
    let tasks = (0..8)
        .map(|_| {
            let opts = cluster.options();
            tokio::spawn(async move { PostgresStore::connect_lazy(&opts)?.migrate().await })
        })
        .collect();
    let applied = join_all(tasks).await;
    let total: Vec<&String> = applied.iter().flatten().collect();
    assert_eq!(
        total,
        ["0001_init", "0002_outbox", "0003_outbox_leases"],
        "{applied:?}"
    );
    let store = cluster.store().await;
    assert_eq!(store.migrate().await.expect("again"), Vec::<String>::new());
    let versions = "SELECT count(*) FROM berth_schema_migrations";
    assert_eq!(cluster.count(versions).await, i64::from(SCHEMA_VERSION));
    let client = cluster.client().await;
    let newer = "INSERT INTO berth_schema_migrations (version, name) VALUES ($1, 'future')";
    client
        .execute(newer, &[&(SCHEMA_VERSION + 1)])
        .await
        .expect("bump");
    match PostgresStore::connect(&cluster.options()).await {
        Err(MetaError::Database(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a schema version error, got {other:?}"),
    }
}

/// Counts of what the load saw while the server went away and came back.
#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    unavailable: AtomicU64,
    other: Mutex<Vec<String>>,
    /// Tag → digest of every push that returned Ok (each task pushes its own tag).
    pushed: Mutex<BTreeMap<String, Digest>>,
}

impl Outcomes {
    fn record<T>(&self, res: Result<T, MetaError>) -> Option<T> {
        match res {
            Ok(v) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Err(MetaError::Unavailable(_)) => {
                self.unavailable.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.other.lock().expect("lock").push(e.to_string());
                None
            }
        }
    }
}

/// One load task: push a new manifest to its own tag, read it back, repeat until told to stop.
async fn load(store: Arc<PostgresStore>, n: usize, out: Arc<Outcomes>, stop: Arc<AtomicBool>) {
    let r = repo("load/app");
    let t = format!("w{n}");
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let m = image(&format!("w{n}-{i}"), &[]);
        if out
            .record(store.put_manifest(&r, &m, &[tag(&t)]).await)
            .is_some()
        {
            out.pushed.lock().expect("lock").insert(t.clone(), m.digest);
        }
        out.record(store.get_manifest(&r, &Reference::Tag(tag(&t))).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `cond` every 20 ms; panics with `what` if it is still false after a minute (a hang
/// guard, not a timing assertion).
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PostgreSQL stops (fast shutdown) and starts again while 8 tasks push and pull: while it is
/// down every failure is `Unavailable` (never a panic, never another error), and afterwards the
/// same store works again without being recreated, with every acknowledged push readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_under_load_fails_cleanly_then_recovers() {
    let cluster = PgCluster::start();
    let store = Arc::new(cluster.store().await);
    let (out, stop) = (
        Arc::new(Outcomes::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            tokio::spawn(load(
                Arc::clone(&store),
                n,
                Arc::clone(&out),
                Arc::clone(&stop),
            ))
        })
        .collect();
    wait_for("load before the restart", || {
        out.ok.load(Ordering::Relaxed) >= 40
    })
    .await;

    cluster.halt();
    wait_for("unavailable errors", || {
        out.unavailable.load(Ordering::Relaxed) > 0
    })
    .await;
    match store.ping().await {
        Err(MetaError::Unavailable(msg)) => assert!(msg.contains("postgres"), "{msg}"),
        other => panic!("ping with the server down: {other:?}"),
    }
    let ok_while_down = out.ok.load(Ordering::Relaxed);

    cluster.resume();
    wait_for("recovery", || {
        out.ok.load(Ordering::Relaxed) >= ok_while_down + 80
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task panicked");
    }
    store.ping().await.expect("ping after recovery");
    let other = out.other.lock().expect("lock").clone();
    assert!(other.is_empty(), "errors other than Unavailable: {other:?}");
    let pushed = out.pushed.lock().expect("lock").clone();
    assert_eq!(pushed.len(), 8);
    let r = repo("load/app");
    for (t, digest) in pushed {
        let got = store.get_manifest(&r, &Reference::Tag(tag(&t))).await;
        let got = got.expect("get").expect("acknowledged push is there");
        assert_eq!(got.digest, digest, "{t}");
    }
}

/// Enough rows (3000 repositories with 5 blob links and 5 tags each, …) that the planner's statistics look like a
/// real registry's rather than a handful of rows any plan would do for.
const SEED: &str = "
    INSERT INTO repositories (name, created_at)
        SELECT 'seed/r' || g, 0 FROM generate_series(1, 3000) g;
    INSERT INTO blobs (digest, size, created_at)
        SELECT 'sha256:' || md5(g::text) || md5(g::text), 1, 0 FROM generate_series(1, 3000) g;
    INSERT INTO repo_blobs SELECT r.id, b.id, 0 FROM repositories r JOIN blobs b ON b.id % 600 = r.id % 600;
    INSERT INTO manifests (repo_id, digest, media_type, size, subject, created_at, bytes)
        SELECT id, 'sha256:' || md5(id::text) || md5(id::text), 'x', 2,
               CASE WHEN id % 2 = 0 THEN 'sha256:s' END, 0, '\\x7b7d'
        FROM repositories WHERE name LIKE 'seed/%';
    INSERT INTO tags SELECT m.repo_id, 't' || g, m.id, 0 FROM manifests m, generate_series(1, 5) g;
    INSERT INTO uploads SELECT 'u' || g, 'seed/r1', 0, '' FROM generate_series(1, 3000) g;
    ANALYZE;
    SET plan_cache_mode = force_generic_plan;
";

/// The generic plan (the one a prepared statement ends up with) of `sql` with `args`.
async fn generic_plan(
    client: &tokio_postgres::Client,
    name: &str,
    sql: &str,
    args: &str,
) -> Vec<String> {
    let script = format!("PREPARE {name} AS {sql}; EXPLAIN EXECUTE {name}({args})");
    let messages = client.simple_query(&script).await.expect("explain");
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

/// Why a plan is not made of index lookups: a sequential scan, a sort, or an index scan without
/// an index condition (a full index walk with a filter).
fn plan_problem(plan: &[String]) -> Option<String> {
    for (i, line) in plan.iter().enumerate() {
        if line.contains("Seq Scan")
            || line
                .trim_start()
                .trim_start_matches("->  ")
                .starts_with("Sort")
        {
            return Some(line.clone());
        }
        if line.contains("Index Scan") || line.contains("Index Only Scan") {
            let details = plan[i + 1..].iter().take_while(|l| !l.contains("->"));
            if !details.into_iter().any(|l| l.contains("Index Cond")) {
                return Some(format!("no index condition: {line}"));
            }
        }
    }
    None
}

/// The hot read statements (pull by tag, blob lookup, tag and catalog pages, referrers, upload
/// sessions) are index lookups in index order on a database of realistic shape.
#[tokio::test]
async fn hot_read_statements_use_indexes() {
    let cluster = PgCluster::start();
    let store = cluster.store().await;
    let r = repo("plan/app");
    let subject = image("subject", &[]);
    store
        .put_manifest(&r, &subject, &[tag("latest")])
        .await
        .expect("put");
    let client = cluster.client().await;
    client.batch_execute(SEED).await.expect("seed");
    let statements = [
        ("blob_size", read::BLOB_SIZE, "'seed/r7', 'sha256:x'"),
        ("manifest_by_tag", read::MANIFEST_BY_TAG, "'seed/r7', 't3'"),
        (
            "manifest_by_digest",
            read::MANIFEST_BY_DIGEST,
            "'seed/r7', 'sha256:x'",
        ),
        ("list_tags", read::LIST_TAGS, "'seed/r7', 't2', 100"),
        (
            "list_repositories",
            read::LIST_REPOSITORIES,
            "'seed/r5', 100",
        ),
        (
            "referrers",
            read::REFERRERS,
            "'seed/r8', 'sha256:s', '', NULL, 100",
        ),
        ("get_upload", read::GET_UPLOAD, "'u5'"),
    ];
    for (name, sql, args) in statements {
        let plan = generic_plan(&client, name, sql, args).await;
        println!("{name}:\n  {}", plan.join("\n  "));
        assert!(!plan.is_empty(), "{name}: no plan");
        if let Some(problem) = plan_problem(&plan) {
            panic!("{name}: {problem}\n{}", plan.join("\n"));
        }
    }
}

/// Replicas racing for an endpoint's delivery lease: exactly one wins each round, the holder
/// renews, others get it only after a release or once it ran out (a crashed holder).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_holds_a_delivery_lease_until_released_or_expired() {
    let cluster = PgCluster::start();
    let stores = replicas(&cluster).await;
    let long = Duration::from_secs(60);
    for round in 0..20 {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let s = Arc::clone(&stores[i % 2]);
                tokio::spawn(async move {
                    let won = s.lease("hook", &format!("r{round}-{i}"), long).await?;
                    Ok((i, won))
                })
            })
            .collect();
        let winners: Vec<usize> = join_all(tasks)
            .await
            .into_iter()
            .filter_map(|(i, won)| won.then_some(i))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let holder = format!("r{round}-{}", winners[0]);
        assert!(stores[1].lease("hook", &holder, long).await.expect("renew"));
        assert!(!stores[0].lease("hook", "other", long).await.expect("race"));
        stores[0].release("hook", "other").await.expect("release");
        assert!(!stores[0].lease("hook", "other", long).await.expect("race"));
        stores[1].release("hook", &holder).await.expect("release");
    }
    assert!(stores[0]
        .lease("hook", "crashed", Duration::from_millis(1))
        .await
        .expect("lease"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(stores[1]
        .lease("hook", "next", long)
        .await
        .expect("expired"));
}

/// Two replicas enqueue batches concurrently while a deliverer reads and acks prefixes: every
/// event is delivered exactly once, each producer's events in the order it enqueued them (an
/// ack never removes an event the deliverer has not seen).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_delivers_concurrent_enqueues_exactly_once_in_order() {
    const PRODUCER_EVENTS: usize = 2000;
    const BATCH: usize = 250;
    let cluster = PgCluster::start();
    let stores = replicas(&cluster).await;
    // Big batches keep each enqueue's ids allocated-but-uncommitted for a while: without the
    // table lock, the deliverer would see a later batch first and ack over an earlier one.
    let producers: Vec<_> = (0..6)
        .map(|p| {
            let s = Arc::clone(&stores[p % 2]);
            tokio::spawn(async move {
                for b in 0..PRODUCER_EVENTS / BATCH {
                    let batch: Vec<_> = (b * BATCH..(b + 1) * BATCH)
                        .map(|i| ("hook".to_string(), Bytes::from(format!("{p}:{i:04}"))))
                        .collect();
                    s.enqueue(&batch).await?;
                }
                Ok(())
            })
        })
        .collect();
    let deliverer = Arc::clone(&stores[1]);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let done = producers.iter().all(|t| t.is_finished());
        let page = deliverer.pending("hook", 50).await.expect("pending");
        if let Some(last) = page.last() {
            deliverer.ack("hook", last.id).await.expect("ack");
        }
        let empty = page.is_empty();
        seen.extend(
            page.iter()
                .map(|e| String::from_utf8_lossy(&e.payload).into_owned()),
        );
        if done && empty {
            break;
        }
    }
    join_all(producers).await;
    assert_eq!(seen.len(), 6 * PRODUCER_EVENTS, "lost or duplicated events");
    for p in 0..6 {
        let mine: Vec<&String> = seen
            .iter()
            .filter(|s| s.starts_with(&format!("{p}:")))
            .collect();
        let expected: Vec<String> = (0..PRODUCER_EVENTS)
            .map(|i| format!("{p}:{i:04}"))
            .collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>(), "producer {p}");
    }
}

/// An enqueue waits for any transaction that is inserting into the outbox, so ids commit in
/// order: here a raw transaction holds an uncommitted event (an in-flight enqueue elsewhere) and
/// the store's enqueue must queue behind it rather than commit a later id first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_waits_for_an_in_flight_enqueue() {
    let cluster = PgCluster::start();
    let store = Arc::new(cluster.store().await);
    let mut raw = cluster.client().await;
    let tx = raw.transaction().await.expect("begin");
    tx.execute(
        "INSERT INTO outbox (endpoint, payload, created_at) VALUES ('hook', 'first', 0)",
        &[],
    )
    .await
    .expect("in-flight insert");
    let s = Arc::clone(&store);
    let second = tokio::spawn(async move {
        s.enqueue(&[("hook".into(), Bytes::from_static(b"second"))])
            .await
    });
    let waiting = "SELECT count(*) FROM pg_locks \
                   WHERE relation = 'outbox'::regclass AND NOT granted";
    let watcher = cluster.client().await;
    loop {
        assert!(
            !second.is_finished(),
            "enqueue committed while an earlier one was in flight"
        );
        let row = watcher.query_one(waiting, &[]).await.expect("pg_locks");
        if row.get::<_, i64>(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.commit().await.expect("commit");
    second.await.expect("task").expect("enqueue");
    let order: Vec<Bytes> = store
        .pending("hook", 10)
        .await
        .expect("pending")
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(
        order,
        [Bytes::from_static(b"first"), Bytes::from_static(b"second")]
    );
}
