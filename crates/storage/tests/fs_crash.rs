//! `kill -9` while committing: the test binary re-runs itself as a child that uploads, commits and
//! puts blobs in a loop, is killed at a random moment, and every key then listed must hold exactly
//! the bytes its digest names. (This shows atomic visibility across a process crash; fsync
//! ordering against power loss cannot be tested without a fault-injecting filesystem.)

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_oci::{Digest, UploadId};
use berth_storage::fs::FsBackend;
use berth_storage::{layout, BlobRead, BlobWrite, UploadStore};
use bytes::Bytes;
use futures::StreamExt;

const ROOT_ENV: &str = "BERTH_CRASH_CHILD_ROOT";

struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len.div_ceil(8))
            .flat_map(|_| self.next().to_le_bytes())
            .take(len)
            .collect()
    }
}

/// The child: writes blobs until killed (or 30 s pass). A no-op in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_writer() {
    let Some(root) = std::env::var_os(ROOT_ENV) else {
        return;
    };
    let b = FsBackend::new(root).expect("backend");
    let mut rng = Rng::seeded();
    let pool = Bytes::from(rng.bytes(4 << 20));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let len = (rng.next() % (2 << 20)) as usize;
        let at = (rng.next() % (2 << 20)) as usize;
        let data = pool.slice(at..at + len);
        let id = UploadId::from_random(rng.bytes(16).try_into().expect("16 bytes"));
        let frames: Vec<_> = (0..len)
            .step_by(64 << 10)
            .map(|i| Ok(data.slice(i..len.min(i + (64 << 10)))))
            .collect();
        b.upload_create(&id).await.expect("create");
        let stream = Box::pin(futures::stream::iter(frames));
        b.upload_append(&id, 0, stream).await.expect("append");
        let key = layout::blob(&Digest::sha256_of(&data));
        b.upload_commit(&id, &key, len as u64)
            .await
            .expect("commit");
        let small = pool.slice(at..at + len / 2);
        let key = layout::blob(&Digest::sha256_of(&small));
        b.put(&key, small).await.expect("put");
    }
}

/// Reads every listed blob, checks its bytes against the digest in its key and deletes it (so each
/// round checks only what the last child wrote); returns the count.
async fn verify_and_clear(b: &FsBackend) -> usize {
    let keys = b.list(layout::BLOBS).await.expect("list");
    for key in &keys {
        let hex = key.as_str().rsplit('/').nth(1).expect("hex component");
        let mut s = b.read(key, None).await.expect("read");
        let mut data = Vec::new();
        while let Some(chunk) = s.next().await {
            data.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(
            Digest::sha256_of(&data).hex(),
            hex,
            "partial or corrupt object at {key}"
        );
        assert!(b.delete(key).await.expect("delete"));
    }
    keys.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_never_leaves_a_partial_blob() {
    // tmpfs where there is one: fsync is then cheap, so more kills land inside a commit or put
    // (visibility after kill -9 does not depend on the filesystem; durability is not tested here).
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir");
    let b = FsBackend::new(dir.path()).expect("backend");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = Rng::seeded();
    let mut verified = 0;
    for _round in 0..16 {
        let mut child = Command::new(&exe)
            .args(["crash_child_writer", "--exact", "--test-threads=1"])
            .env(ROOT_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let started = Instant::now();
        while b.list(layout::BLOBS).await.expect("list").is_empty()
            && started.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.next() % 40)).await;
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        verified += verify_and_clear(&b).await;
    }
    assert!(
        verified >= 16,
        "the child committed too little to test anything"
    );
}
