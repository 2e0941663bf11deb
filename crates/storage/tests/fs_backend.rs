//! What the shared backend suite cannot see: the files `FsBackend` leaves on disk, and the states a
//! crash leaves behind. (The suite itself runs in `src/fs.rs`.)

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::Path;
use std::sync::Arc;

use berth_oci::{Digest, UploadId};
use berth_storage::fs::{FsBackend, READ_CHUNK};
use berth_storage::layout::{self, Key};
use berth_storage::{BlobRead, BlobWrite, ByteRange, ByteStream, StorageError, UploadStore};
use bytes::Bytes;
use futures::StreamExt;

fn setup() -> (tempfile::TempDir, FsBackend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = FsBackend::new(dir.path().join("root")).expect("backend");
    (dir, backend)
}

fn id(n: u8) -> UploadId {
    UploadId::from_random([n; 16])
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `data` as a stream of 16 KiB frames, like hyper's.
fn frames(data: &[u8]) -> ByteStream {
    let chunks: Vec<_> = data
        .chunks(16 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// Every file under `root`, as sorted `/`-separated relative paths.
fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

async fn chunk_sizes(s: ByteStream) -> Vec<usize> {
    s.map(|c| c.expect("chunk").len()).collect().await
}

/// A sha256 digest whose hex starts with `prefix` (for keys sharing directories).
fn digest_with_prefix(prefix: &str, n: usize) -> Digest {
    Digest::parse(&format!("sha256:{prefix}{n:0>62}")).expect("digest")
}

#[tokio::test]
async fn put_and_commit_leave_no_temp_or_upload_files() {
    let (_dir, b) = setup();
    let mut want = Vec::new();
    for n in 0..3u8 {
        let data = bytes(1000 + n as usize, n);
        let key = layout::blob(&Digest::sha256_of(&data));
        b.put(&key, Bytes::from(data)).await.expect("put");
        want.push(key.to_string());
    }
    for n in 10..12u8 {
        let data = bytes(3 << 20, n);
        let key = layout::blob(&Digest::sha256_of(&data));
        b.upload_create(&id(n)).await.expect("create");
        b.upload_append(&id(n), 0, frames(&data))
            .await
            .expect("append");
        let size = data.len() as u64;
        b.upload_commit(&id(n), &key, size).await.expect("commit");
        want.push(key.to_string());
    }
    want.sort();
    assert_eq!(files_under(b.root()), want);
    let uploads = b.root().join(layout::UPLOADS);
    let left = std::fs::read_dir(uploads).expect("uploads dir").count();
    assert_eq!(left, 0, "committed upload directories are removed");
}

#[tokio::test]
async fn upload_bytes_reach_the_blob_key_only_at_commit() {
    let (_dir, b) = setup();
    let data = bytes(3 << 20, 7);
    let key = layout::blob(&Digest::sha256_of(&data));
    let (upload_path, blob_path) = (
        b.root().join(layout::upload(&id(1)).as_str()),
        b.root().join(key.as_str()),
    );
    b.upload_create(&id(1)).await.expect("create");
    b.upload_append(&id(1), 0, frames(&data))
        .await
        .expect("append");
    assert_eq!(
        std::fs::metadata(&upload_path).expect("upload file").len(),
        data.len() as u64
    );
    assert!(!blob_path.exists(), "nothing at the blob key before commit");
    assert_eq!(b.stat(&key).await.expect("stat"), None);
    let size = data.len() as u64;
    b.upload_commit(&id(1), &key, size).await.expect("commit");
    assert!(!upload_path.exists());
    assert!(std::fs::read(&blob_path).expect("blob file") == data);
}

#[tokio::test]
async fn crash_leftovers_are_never_listed_and_uploads_resume() {
    let (dir, b) = setup();
    let root = b.root().to_path_buf();
    let kept = b"committed before the crash".to_vec();
    let kept_key = layout::blob(&Digest::sha256_of(&kept));
    b.put(&kept_key, Bytes::from(kept.clone()))
        .await
        .expect("put");
    // Crash during a push: the upload's bytes were written, the rename never happened.
    b.upload_create(&id(1)).await.expect("create");
    b.upload_append(&id(1), 0, frames(&bytes(5000, 1)))
        .await
        .expect("append");
    // Crash inside `put`: a partial temp file next to where the blob would go.
    let pending = layout::blob(&Digest::sha256_of(b"pending"));
    let pending_dir = root
        .join(pending.as_str())
        .parent()
        .expect("parent")
        .to_path_buf();
    std::fs::create_dir_all(&pending_dir).expect("mkdir");
    std::fs::write(pending_dir.join(".tmp-4242-0-1"), b"pend").expect("tmp");
    // Crash between `mkdir` and the file in `upload_create`.
    std::fs::create_dir_all(root.join(layout::UPLOADS).join(id(2).as_str())).expect("mkdir");
    drop(b);

    let b = FsBackend::new(&root).expect("reopen");
    assert_eq!(
        b.list(layout::BLOBS).await.expect("list"),
        vec![kept_key.clone()]
    );
    assert_eq!(b.stat(&pending).await.expect("stat"), None);
    assert!(matches!(
        b.read(&pending, None).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(b.upload_size(&id(2)).await.expect("size"), None);
    assert_eq!(b.upload_size(&id(1)).await.expect("size"), Some(5000));
    let rest = bytes(100, 2);
    b.upload_append(&id(1), 5000, frames(&rest))
        .await
        .expect("resume");
    let whole = [bytes(5000, 1), rest].concat();
    let key = layout::blob(&Digest::sha256_of(&whole));
    b.upload_commit(&id(1), &key, whole.len() as u64)
        .await
        .expect("commit");
    let mut want = vec![kept_key, key];
    want.sort();
    assert_eq!(b.list(layout::BLOBS).await.expect("list"), want);
    drop(dir);
}

#[tokio::test]
async fn failed_input_keeps_exactly_the_received_bytes() {
    let (_dir, b) = setup();
    let data = bytes((3 << 20) + 777, 3);
    let mut items: Vec<std::io::Result<Bytes>> = data
        .chunks(16 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    items.push(Err(std::io::Error::other("reset")));
    b.upload_create(&id(1)).await.expect("create");
    let got = b
        .upload_append(&id(1), 0, Box::pin(futures::stream::iter(items)))
        .await;
    assert!(matches!(got, Err(StorageError::Input(_))));
    assert_eq!(
        b.upload_size(&id(1)).await.expect("size"),
        Some(data.len() as u64)
    );
    let path = b.root().join(layout::upload(&id(1)).as_str());
    assert!(std::fs::read(path).expect("upload file") == data);
}

#[tokio::test]
async fn reads_stream_in_large_chunks() {
    let (_dir, b) = setup();
    let data = bytes(5 * READ_CHUNK + 3, 4);
    let key = layout::blob(&Digest::sha256_of(&data));
    b.put(&key, Bytes::from(data)).await.expect("put");
    let sizes = chunk_sizes(b.read(&key, None).await.expect("read")).await;
    assert_eq!(sizes, [vec![READ_CHUNK; 5], vec![3]].concat());
    let range = Some(ByteRange {
        start: 10,
        end: Some(10 + 2 * READ_CHUNK as u64),
    });
    let sizes = chunk_sizes(b.read(&key, range).await.expect("read")).await;
    assert_eq!(sizes, vec![READ_CHUNK; 2]);
}

#[tokio::test]
async fn delete_prunes_empty_directories_but_keeps_prefix_roots() {
    let (_dir, b) = setup();
    let (k1, k2) = (
        layout::blob(&digest_with_prefix("ab", 1)),
        layout::blob(&digest_with_prefix("ab", 2)),
    );
    b.put(&k1, Bytes::from_static(b"1")).await.expect("put");
    b.put(&k2, Bytes::from_static(b"2")).await.expect("put");
    let shard = b.root().join(layout::BLOBS).join("sha256/ab");
    assert!(b.delete(&k1).await.expect("delete"));
    assert!(shard.is_dir(), "a directory that still holds a blob stays");
    assert_eq!(std::fs::read_dir(&shard).expect("shard").count(), 1);
    assert!(b.delete(&k2).await.expect("delete"));
    assert!(!b.root().join(layout::BLOBS).join("sha256").exists());
    assert!(
        b.root().join(layout::BLOBS).is_dir(),
        "the blobs prefix root stays"
    );
    b.put(&k1, Bytes::from_static(b"again"))
        .await
        .expect("put after prune");
    assert_eq!(b.stat(&k1).await.expect("stat"), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_commits_deletes_and_lists_race_in_one_directory() {
    let (_dir, b) = setup();
    let b = Arc::new(b);
    let mut tasks = Vec::new();
    for t in 0..4usize {
        let b = Arc::clone(&b);
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let key = layout::blob(&digest_with_prefix("cd", t * 1000 + i));
                if t % 2 == 0 {
                    b.put(&key, Bytes::from_static(b"x")).await.expect("put");
                } else {
                    let up = UploadId::from_random([
                        t as u8, i as u8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
                    ]);
                    b.upload_create(&up).await.expect("create");
                    b.upload_append(&up, 0, frames(b"xy"))
                        .await
                        .expect("append");
                    b.upload_commit(&up, &key, 2).await.expect("commit");
                }
                assert!(b.stat(&key).await.expect("stat").is_some());
                assert!(b.delete(&key).await.expect("delete"));
            }
        }));
    }
    let lister = Arc::clone(&b);
    let listing = tokio::spawn(async move {
        for _ in 0..100 {
            lister
                .list(layout::BLOBS)
                .await
                .expect("list while others write");
        }
    });
    for task in tasks {
        task.await.expect("task");
    }
    listing.await.expect("lister");
    assert!(b.list(layout::BLOBS).await.expect("list").is_empty());
}

#[tokio::test]
async fn non_file_keys_are_absent() {
    let (_dir, b) = setup();
    let data = b"x".to_vec();
    b.put(&layout::blob(&Digest::sha256_of(&data)), Bytes::from(data))
        .await
        .expect("put");
    let dir_key = Key::from_listed("docker/registry/v2/blobs/sha256").expect("key");
    assert_eq!(b.stat(&dir_key).await.expect("stat"), None);
    assert!(matches!(
        b.read(&dir_key, None).await,
        Err(StorageError::NotFound)
    ));
    let below_file =
        Key::from_listed(&format!("{}/more", layout::blob(&Digest::sha256_of(b"x")))).expect("key");
    assert_eq!(b.stat(&below_file).await.expect("stat"), None);
    assert!(!b.delete(&below_file).await.expect("delete"));
}
