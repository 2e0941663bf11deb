//! The S3 backend against a real SeaweedFS started on loopback by the test (see
//! `berth_storage::seaweedfs`): the whole backend suite, then what only S3 has — sessions
//! shared by two backend instances (two replicas), multipart assembly, abort cleanup, presigned
//! URLs, plain HTTP with a CA bundle configured, and an outage in the middle of an upload.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_oci::{Digest, UploadId};
use berth_storage::layout::{self, Key};
use berth_storage::s3::{S3Backend, S3Options, MIN_CHUNK_SIZE};
use berth_storage::seaweedfs::SeaweedFs;
use berth_storage::suite::{self, collect, one_chunk, read_all, stream_of, Harness, Rng};
use berth_storage::{
    BlobRead, BlobRedirect, BlobWrite, ByteRange, ByteStream, StorageError, UploadStore,
};
use bytes::Bytes;
use futures::StreamExt;

const PART: usize = MIN_CHUNK_SIZE as usize;

/// One server for the whole suite; each case gets its own root directory in one bucket.
async fn suite_setup() -> SeaweedFs {
    let weed = SeaweedFs::start().await;
    weed.backend("suite").await;
    weed
}

fn suite_harness(weed: &SeaweedFs) -> Harness<S3Backend> {
    static CASE: AtomicU64 = AtomicU64::new(0);
    let mut opts = weed.options("suite");
    opts.root_directory = format!("/case-{}/", CASE.fetch_add(1, Ordering::Relaxed));
    Harness::new(S3Backend::new(&opts).expect("backend"), ())
}

berth_storage::backend_suite!(
    sequential backend_suite_on_seaweedfs,
    suite_setup().await,
    |weed| suite_harness(&weed)
);

/// Objects under an upload session's prefix.
async fn session_objects(b: &S3Backend, id: &UploadId) -> Vec<Key> {
    b.list(&layout::upload_prefix(id)).await.expect("list")
}

async fn append(b: &S3Backend, id: &UploadId, at: u64, data: &[u8]) -> u64 {
    b.upload_append(id, at, one_chunk(data))
        .await
        .expect("append")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_specific_behaviour() {
    let weed = SeaweedFs::start().await;
    let a = weed.backend("replicas").await;
    let b = S3Backend::new(&weed.options("replicas")).expect("second instance");
    assert_eq!(a.min_chunk_len(), Some(MIN_CHUNK_SIZE));

    session_continues_on_another_instance(&a, &b).await;
    concurrent_appends_on_two_instances_one_wins(&a, &b).await;
    multipart_assembly_of_many_parts(&a).await;
    failed_commit_aborts_its_multipart_and_abort_cleans_up(&a, &b).await;
    ranged_reads_across_parts(&a).await;
    presigned_urls_serve_the_blob(&a).await;
    root_directories_isolate(&weed).await;
    plain_http_with_a_ca_bundle_configured(&weed).await;
}

/// A session started on one instance is continued, inspected and committed on another: nothing
/// of it lives in process memory.
async fn session_continues_on_another_instance(a: &S3Backend, b: &S3Backend) {
    let mut rng = Rng::new(21);
    let id = rng.upload_id();
    let data = rng.bytes(3 * PART + 12345);
    a.upload_create(&id).await.expect("create on a");
    let n = append(a, &id, 0, &data[..PART + 100]).await;
    assert_eq!(b.upload_size(&id).await.expect("size on b"), Some(n));
    let n = append(b, &id, n, &data[PART + 100..2 * PART]).await;
    assert_eq!(a.upload_size(&id).await.expect("size on a"), Some(n));
    let wrong = a.upload_append(&id, n - 1, one_chunk(b"x")).await;
    assert!(matches!(
        wrong,
        Err(StorageError::OffsetMismatch { current, requested }) if current == n && requested == n - 1
    ));
    let n = append(a, &id, n, &data[2 * PART..]).await;
    assert_eq!(n, data.len() as u64);
    let reread = collect(b.upload_read(&id).await.expect("upload_read on b"))
        .await
        .expect("stream");
    assert!(reread == data, "upload_read on the other instance");
    let dest = suite::key_of(&data);
    assert_eq!(
        a.stat(&dest).await.expect("stat"),
        None,
        "visible before commit"
    );
    let size = data.len() as u64;
    b.upload_commit(&id, &dest, size)
        .await
        .expect("commit on b");
    assert!(read_all(a, &dest, None).await == data);
    assert!(session_objects(a, &id).await.is_empty());
    assert_eq!(a.upload_size(&id).await.expect("size"), None);
}

/// A stream that sends `n` chunks of `byte`, pausing between them.
fn slow(byte: u8, n: usize, chunk: usize) -> ByteStream {
    Box::pin(futures::stream::iter(0..n).then(move |_| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(Bytes::from(vec![byte; chunk]))
    }))
}

/// Two instances (no shared lock) append at the same offset at once: the conditional state
/// write lets exactly one win; the loser's parts are gone.
async fn concurrent_appends_on_two_instances_one_wins(a: &S3Backend, b: &S3Backend) {
    let id = Rng::new(22).upload_id();
    a.upload_create(&id).await.expect("create");
    let (ra, rb) = tokio::join!(
        a.upload_append(&id, 0, slow(b'a', 12, 512 << 10)),
        b.upload_append(&id, 0, slow(b'b', 12, 512 << 10)),
    );
    let winner = match (&ra, &rb) {
        (Ok(_), Err(StorageError::OffsetMismatch { requested: 0, .. })) => b'a',
        (Err(StorageError::OffsetMismatch { requested: 0, .. }), Ok(_)) => b'b',
        _ => panic!("want one winner and one OffsetMismatch, got {ra:?} and {rb:?}"),
    };
    let want = vec![winner; 12 * (512 << 10)];
    assert_eq!(
        a.upload_size(&id).await.expect("size"),
        Some(want.len() as u64)
    );
    // one part object (the winner's) and the state: the loser cleaned up its part
    assert_eq!(session_objects(a, &id).await.len(), 2);
    let dest = suite::key_of(&want);
    let size = want.len() as u64;
    a.upload_commit(&id, &dest, size).await.expect("commit");
    assert!(
        read_all(b, &dest, None).await == want,
        "appends interleaved"
    );
}

/// Six parts plus a tail, in chunks that straddle part boundaries, assembled server-side.
async fn multipart_assembly_of_many_parts(a: &S3Backend) {
    let mut rng = Rng::new(23);
    let id = rng.upload_id();
    let data = Bytes::from(rng.bytes(6 * PART + 777));
    let digest = Digest::sha256_of(&data);
    a.upload_create(&id).await.expect("create");
    let chunks = suite::random_chunks(&mut rng, &data, 3 << 20);
    let n = a
        .upload_append(&id, 0, stream_of(chunks))
        .await
        .expect("append");
    assert_eq!(n, data.len() as u64);
    // six part objects plus the state
    assert_eq!(session_objects(a, &id).await.len(), 7);
    let dest = layout::blob(&digest);
    a.upload_commit(&id, &dest, n).await.expect("commit");
    assert_eq!(a.stat(&dest).await.expect("stat"), Some(data.len() as u64));
    assert!(read_all(a, &dest, None).await == data);
    assert!(session_objects(a, &id).await.is_empty());
    assert!(a
        .pending_multipart_uploads()
        .await
        .expect("list")
        .is_empty());
    assert_eq!(a.list(layout::UPLOADS).await.expect("list"), vec![]);
}

/// A commit whose part vanished fails cleanly: its multipart upload is aborted, nothing is
/// visible at the destination, the session stays; an abort then removes every object.
async fn failed_commit_aborts_its_multipart_and_abort_cleans_up(a: &S3Backend, b: &S3Backend) {
    let mut rng = Rng::new(24);
    let id = rng.upload_id();
    let data = rng.bytes(2 * PART + 10);
    a.upload_create(&id).await.expect("create");
    append(a, &id, 0, &data).await;
    let objects = session_objects(a, &id).await;
    let part = objects
        .iter()
        .find(|k| k.as_str().contains("/part-00002-"))
        .expect("part 2");
    assert!(b.delete(part).await.expect("delete part behind its back"));
    let dest = suite::key_of(&data);
    let got = a.upload_commit(&id, &dest, data.len() as u64).await;
    assert!(matches!(got, Err(StorageError::Backend(_))), "{got:?}");
    assert_eq!(a.stat(&dest).await.expect("stat"), None);
    assert!(a
        .pending_multipart_uploads()
        .await
        .expect("list")
        .is_empty());
    assert!(b.upload_size(&id).await.expect("size").is_some());
    assert!(b.upload_abort(&id).await.expect("abort"));
    assert!(session_objects(a, &id).await.is_empty());
    assert_eq!(a.upload_size(&id).await.expect("size"), None);
    assert!(!a.upload_abort(&id).await.expect("second abort"));
}

/// Ranged reads of an assembled blob: across part boundaries, clamped, empty, out of range.
async fn ranged_reads_across_parts(a: &S3Backend) {
    let mut rng = Rng::new(25);
    let id = rng.upload_id();
    let data = rng.bytes(2 * PART + 4321);
    let size = data.len() as u64;
    a.upload_create(&id).await.expect("create");
    append(a, &id, 0, &data).await;
    let key = suite::key_of(&data);
    a.upload_commit(&id, &key, size).await.expect("commit");
    let range = |start: u64, end: Option<u64>| Some(ByteRange { start, end });
    let p = PART as u64;
    for (start, end) in [
        (p - 10, Some(p + 10)),
        (2 * p - 1, None),
        (0, Some(size + 99)),
        (size - 1, None),
    ] {
        let want = &data[start as usize..end.unwrap_or(size).min(size) as usize];
        assert!(
            read_all(a, &key, range(start, end)).await == want,
            "{start}..{end:?}"
        );
    }
    assert!(read_all(a, &key, range(7, Some(7))).await.is_empty());
    for start in [size, size + 1] {
        let got = a.read(&key, range(start, None)).await;
        assert!(
            matches!(got, Err(StorageError::RangeNotSatisfiable { size: s }) if s == size),
            "start {start}"
        );
    }
    let missing = suite::key_of(b"missing");
    assert!(matches!(
        a.read(&missing, range(5, None)).await,
        Err(StorageError::NotFound)
    ));
}

/// A presigned URL serves the blob (and a range of it) to curl, with no credentials.
async fn presigned_urls_serve_the_blob(a: &S3Backend) {
    let data = Rng::new(26).bytes(100_000);
    let key = suite::key_of(&data);
    a.put(&key, Bytes::from(data.clone())).await.expect("put");
    let url = a
        .presign_get(&key, Duration::from_secs(60))
        .await
        .expect("presign")
        .expect("S3 presigns");
    let curl = |extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    assert!(curl(&[]) == data);
    assert!(curl(&["-r", "10-19"]) == data[10..20]);
    let tampered = url.replace("X-Amz-Expires=60", "X-Amz-Expires=61");
    let status = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &tampered])
        .output()
        .expect("run curl");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "403",
        "a tampered URL is refused"
    );
}

/// Two root directories in one bucket see only their own keys.
async fn root_directories_isolate(weed: &SeaweedFs) {
    let backend = |root: &str| {
        let mut o = weed.options("roots");
        o.root_directory = root.into();
        S3Backend::new(&o).expect("backend")
    };
    let first = weed.backend_with(weed.options("roots")).await;
    let (x, y) = (backend("/x/"), backend("y/nested"));
    let key = suite::key_of(b"in x");
    x.put(&key, Bytes::from_static(b"in x")).await.expect("put");
    assert_eq!(y.stat(&key).await.expect("stat"), None);
    assert_eq!(
        x.list(layout::BLOBS).await.expect("list"),
        vec![key.clone()]
    );
    assert!(y.list(layout::BLOBS).await.expect("list").is_empty());
    assert!(
        first.list(layout::BLOBS).await.expect("list").is_empty(),
        "keys outside the layout are not listed"
    );
}

/// `AWS_CA_BUNDLE` (here: an explicit bundle, which is what the variable sets) only concerns
/// HTTPS; a plain-HTTP endpoint works with it, even when it names a missing file.
async fn plain_http_with_a_ca_bundle_configured(weed: &SeaweedFs) {
    for bundle in ["/etc/ssl/certs/ca-certificates.crt", "/nonexistent/ca.pem"] {
        let mut opts: S3Options = weed.options("plain-http");
        opts.ca_bundle = Some(bundle.into());
        assert!(opts
            .region_endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://")));
        let b = weed.backend_with(opts).await;
        let key = suite::key_of(bundle.as_bytes());
        b.put(&key, Bytes::from(bundle.as_bytes().to_vec()))
            .await
            .expect("put over http");
        assert_eq!(read_all(&b, &key, None).await, bundle.as_bytes());
    }
    assert_eq!(
        S3Options::new("b").ca_bundle,
        None,
        "the crate reads no environment"
    );
    let env = |k: &str| (k == "AWS_CA_BUNDLE").then(|| "/ca.pem".to_string());
    assert_eq!(
        S3Options::new("b").with_environment(env).ca_bundle,
        Some("/ca.pem".into()),
        "the binary passes it in"
    );
}

/// SeaweedFS killed in the middle of an append: the append fails with `Backend` (no panic, no
/// hang), every call fails the same way while it is down, and after it restarts the session
/// resumes from what was saved and the blob commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_mid_upload_fails_cleanly_then_recovers() {
    let mut weed = SeaweedFs::start().await;
    let b = weed.backend("outage").await;
    let mut rng = Rng::new(31);
    let id = rng.upload_id();
    let data = Bytes::from(rng.bytes(3 * PART + 999));
    b.upload_create(&id).await.expect("create");
    let saved = append(&b, &id, 0, &data[..PART + 5]).await;
    let big = suite::key_of(b"big");
    b.put(&big, Bytes::from(vec![7u8; 8 << 20]))
        .await
        .expect("put");
    let mut reading = b.read(&big, None).await.expect("read");
    let first = reading.next().await.expect("first chunk").expect("bytes");
    assert!(!first.is_empty());

    // an append that is mid-way when the server dies: its stream hands over half a part, says
    // so, and waits until the server is gone before sending the rest
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
    let at = saved as usize;
    let (head, rest) = (data.slice(at..at + PART / 2), data.slice(at + PART / 2..));
    let stalled: ByteStream = Box::pin(futures::stream::iter([Ok(head)]).chain(
        futures::stream::once(async move {
            let _ = started_tx.send(());
            let _ = wait.await;
            Ok(rest)
        }),
    ));
    let append_task = {
        let b = S3Backend::new(&weed.options("outage")).expect("backend");
        let id = id.clone();
        tokio::spawn(async move { b.upload_append(&id, saved, stalled).await })
    };
    started.await.expect("the append consumed its first chunk");
    weed.stop();
    let _ = go_on.send(());
    let got = append_task.await.expect("no panic");
    assert!(matches!(got, Err(StorageError::Backend(_))), "{got:?}");

    // while it is down: clean errors everywhere
    assert!(matches!(
        b.upload_size(&id).await,
        Err(StorageError::Backend(_))
    ));
    assert!(matches!(b.stat(&big).await, Err(StorageError::Backend(_))));
    assert!(matches!(
        b.read(&big, None).await,
        Err(StorageError::Backend(_))
    ));
    assert!(matches!(
        b.upload_create(&rng.upload_id()).await,
        Err(StorageError::Backend(_))
    ));
    // a read that was streaming: it either still delivers the whole object (the bytes were
    // already in flight) or ends in an error; never a silently short or wrong stream
    let (mut seen, mut broke) = (first.len(), false);
    while let Some(chunk) = reading.next().await {
        match chunk {
            Ok(c) => {
                assert!(c.iter().all(|&x| x == 7), "wrong bytes");
                seen += c.len();
            }
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(
        broke || seen == 8 << 20,
        "stream ended after {seen} bytes without an error"
    );

    weed.restart().await;
    assert_eq!(
        b.upload_size(&id).await.expect("size after restart"),
        Some(saved)
    );
    let end = append(&b, &id, saved, &data[saved as usize..]).await;
    assert_eq!(end, data.len() as u64);
    let dest = suite::key_of(&data);
    b.upload_commit(&id, &dest, data.len() as u64)
        .await
        .expect("commit after restart");
    assert!(read_all(&b, &dest, None).await == data);
    assert_eq!(b.stat(&big).await.expect("stat"), Some(8 << 20));
}
