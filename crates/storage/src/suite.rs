//! The backend conformance suite, in the style of Distribution's storage-driver test suite: every
//! backend runs the very same cases, written against the trait API only.
//!
//! A backend's test file needs a [`Harness`] factory and one macro call:
//!
//! ```ignore
//! fn harness() -> berth_storage::suite::Harness<MyBackend> { /* empty, isolated backend */ }
//! berth_storage::backend_suite!(harness());   // or `harness().await`
//! ```
//!
//! [`backend_suite!`](crate::backend_suite) expands into one `#[tokio::test]` per case, named after
//! the case, so a failure names the contract point (or, in its `sequential` form, into one test
//! that runs every case on one shared setup and names the failed cases). Each case gets a fresh harness and may assume
//! its backend is empty. The caller needs `tokio` (with `macros` and `rt-multi-thread`) as a
//! dev-dependency and the `suite` feature of this crate.

// Test-suite code (compiled only for tests through the `suite` feature): a failed unwrap/expect
// is how a case fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::io;
use std::time::Duration;

use berth_oci::{Algorithm, Digest, Hasher, UploadId};
use bytes::Bytes;
use futures::StreamExt;

use crate::layout::{self, Key};
use crate::{Backend, ByteRange, ByteStream, StorageError};

/// A backend under test plus whatever keeps it alive (a temp dir, a bucket) until the case ends.
pub struct Harness<B> {
    /// The backend the case runs against.
    pub backend: B,
    _keep: Box<dyn Any + Send>,
}

impl<B: Backend> Harness<B> {
    /// Wraps `backend`; `keep` is dropped after the case (e.g. a `tempfile::TempDir`).
    pub fn new(backend: B, keep: impl Any + Send) -> Self {
        Harness {
            backend,
            _keep: Box::new(keep),
        }
    }
}

/// Expands into the suite's tests. Two forms:
///
/// * `backend_suite!(harness_expr)`: one `#[tokio::test]` per case; `harness_expr` is evaluated
///   (inside the async test) to a [`Harness`](crate::suite::Harness) for each case;
/// * `backend_suite!(sequential test_name, setup_expr, |env| harness_expr)`: one test that
///   evaluates `setup_expr` once (e.g. starts a server, dropped when the test ends), then runs
///   every case in turn on a fresh `harness_expr` (which may use `env`), reporting each case and
///   failing at the end with the names of those that failed. For backends whose setup is too
///   slow to repeat per case when each test runs in its own process (nextest).
#[macro_export]
macro_rules! backend_suite {
    (sequential $name:ident, $setup:expr, |$env:ident| $harness:expr) => {
        $crate::backend_suite!(@cases [sequential $name, $setup, $env, $harness]);
    };
    ($harness:expr) => {
        $crate::backend_suite!(@cases [per_case $harness]);
    };
    (@cases [$($form:tt)*]) => {
        $crate::backend_suite!(@expand [$($form)*]
            put_stat_read_delete, put_replaces_object, missing_objects, empty_object,
            ranged_reads, list_in_lexical_order, list_shows_only_committed_keys,
            upload_lifecycle, upload_read_streams_received_bytes, upload_abort_discards,
            unknown_upload, duplicate_create_fails, append_at_wrong_offset_writes_nothing,
            commit_of_another_size_writes_nothing,
            append_many_small_chunks, failing_input_keeps_prefix_and_resumes,
            commit_replaces_existing_object, concurrent_appends_one_wins,
            large_upload_random_chunks,
        );
    };
    (@expand [per_case $harness:expr] $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let harness = $harness;
                $crate::suite::$case(&harness.backend).await;
            }
        )+
    };
    (@expand [sequential $name:ident, $setup:expr, $env:ident, $harness:expr]
        $($case:ident),+ $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let $env = $setup;
            let mut failed: Vec<&str> = Vec::new();
            $(
                let harness = $harness;
                let case = $crate::suite::$case(&harness.backend);
                if !$crate::suite::run_case(stringify!($case), case).await {
                    failed.push(stringify!($case));
                }
                drop(harness);
            )+
            assert!(failed.is_empty(), "backend suite cases failed: {failed:?}");
        }
    };
}

/// Runs one case of a sequential suite, catching its panic; reports it on stderr and returns
/// whether it passed.
// The verdict line is test output (libtest shows it with the failing test), not a log line.
#[allow(clippy::print_stderr)]
pub async fn run_case(name: &str, case: impl std::future::Future<Output = ()>) -> bool {
    use futures::FutureExt;
    let started = std::time::Instant::now();
    let passed = std::panic::AssertUnwindSafe(case)
        .catch_unwind()
        .await
        .is_ok();
    let verdict = if passed { "ok" } else { "FAILED" };
    eprintln!(
        "suite case {name}: {verdict} ({} ms)",
        started.elapsed().as_millis()
    );
    passed
}

/// A small deterministic PRNG (xorshift64*), so the suite needs no `rand`.
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero-ised seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A random upload id.
    pub fn upload_id(&mut self) -> UploadId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        UploadId::from_random(b)
    }
}

/// The blob key of `data`.
pub fn key_of(data: &[u8]) -> Key {
    layout::blob(&Digest::sha256_of(data))
}

/// A stream yielding `data` cut into the given chunks (zero-copy slices).
pub fn stream_of(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)))
}

/// `data` as a single-chunk stream.
pub fn one_chunk(data: &[u8]) -> ByteStream {
    stream_of(vec![Bytes::copy_from_slice(data)])
}

/// `data` cut into random-sized chunks of at most `max` bytes.
pub fn random_chunks(rng: &mut Rng, data: &Bytes, max: usize) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = rng.range(1, max).min(data.len() - at);
        chunks.push(data.slice(at..at + n));
        at += n;
    }
    chunks
}

/// Collects a stream into memory (small objects only).
pub async fn collect(mut s: ByteStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Reads an object (or range) into memory.
pub async fn read_all<B: Backend>(b: &B, key: &Key, range: Option<ByteRange>) -> Vec<u8> {
    let s = b.read(key, range).await.expect("read");
    collect(s).await.expect("read stream")
}

/// Smallest append a non-final `upload_append` may carry on this backend (at least `floor`).
fn part_len<B: Backend>(b: &B, floor: usize) -> usize {
    b.min_chunk_len().map_or(floor, |m| (m as usize).max(floor))
}

async fn upload<B: Backend>(b: &B, id: &UploadId, data: &[u8], dest: &Key) {
    b.upload_create(id).await.expect("create");
    let n = b
        .upload_append(id, 0, one_chunk(data))
        .await
        .expect("append");
    assert_eq!(n, data.len() as u64);
    b.upload_commit(id, dest, n).await.expect("commit");
}

fn range(start: u64, end: Option<u64>) -> Option<ByteRange> {
    Some(ByteRange { start, end })
}

/// `put`, `stat`, `read`, `delete` of one object.
pub async fn put_stat_read_delete<B: Backend>(b: &B) {
    let data = b"hello, berth".to_vec();
    let key = key_of(&data);
    b.put(&key, Bytes::from(data.clone())).await.expect("put");
    assert_eq!(b.stat(&key).await.expect("stat"), Some(data.len() as u64));
    assert_eq!(read_all(b, &key, None).await, data);
    assert!(b.delete(&key).await.expect("delete"));
    assert_eq!(b.stat(&key).await.expect("stat"), None);
    assert!(matches!(
        b.read(&key, None).await,
        Err(StorageError::NotFound)
    ));
    assert!(!b.delete(&key).await.expect("second delete"));
}

/// A second `put` at a key replaces the object whole.
pub async fn put_replaces_object<B: Backend>(b: &B) {
    let key = key_of(b"key");
    b.put(&key, Bytes::from_static(b"first version, longer"))
        .await
        .expect("put");
    b.put(&key, Bytes::from_static(b"second"))
        .await
        .expect("put again");
    assert_eq!(read_all(b, &key, None).await, b"second");
    assert_eq!(b.stat(&key).await.expect("stat"), Some(6));
}

/// Absent keys: `stat` is `None`, `read` is `NotFound`, `delete` is `false`.
pub async fn missing_objects<B: Backend>(b: &B) {
    let key = key_of(b"never written");
    assert_eq!(b.stat(&key).await.expect("stat"), None);
    assert!(matches!(
        b.read(&key, None).await,
        Err(StorageError::NotFound)
    ));
    let r = b.read(&key, range(0, None)).await;
    assert!(matches!(r, Err(StorageError::NotFound)));
    assert!(!b.delete(&key).await.expect("delete"));
}

/// A zero-length object exists, reads empty, and has no satisfiable range.
pub async fn empty_object<B: Backend>(b: &B) {
    let key = key_of(b"");
    b.put(&key, Bytes::new()).await.expect("put");
    assert_eq!(b.stat(&key).await.expect("stat"), Some(0));
    assert!(read_all(b, &key, None).await.is_empty());
    for r in [range(0, None), range(0, Some(0)), range(0, Some(10))] {
        let got = b.read(&key, r).await;
        assert!(
            matches!(got, Err(StorageError::RangeNotSatisfiable { size: 0 })),
            "{r:?}"
        );
    }
}

/// Ranges: from a start, in the middle, end clamped, empty, and past the end.
pub async fn ranged_reads<B: Backend>(b: &B) {
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let key = key_of(&data);
    b.put(&key, Bytes::from(data.clone())).await.expect("put");
    assert_eq!(read_all(b, &key, range(0, None)).await, data);
    assert_eq!(read_all(b, &key, range(10, None)).await, &data[10..]);
    assert_eq!(
        read_all(b, &key, range(100, Some(200))).await,
        &data[100..200]
    );
    assert_eq!(
        read_all(b, &key, range(990, Some(5000))).await,
        &data[990..]
    );
    assert_eq!(
        read_all(b, &key, range(999, Some(1000))).await,
        &data[999..]
    );
    assert!(read_all(b, &key, range(500, Some(500))).await.is_empty());
    for start in [1000, 1001, u64::MAX] {
        let got = b.read(&key, range(start, None)).await;
        let ok = matches!(got, Err(StorageError::RangeNotSatisfiable { size: 1000 }));
        assert!(ok, "start {start}");
    }
}

/// `list` returns exactly the keys under a prefix, in lexical order, for directory-like and
/// partial prefixes alike.
pub async fn list_in_lexical_order<B: Backend>(b: &B) {
    let mut keys = Vec::new();
    for i in 0..20u32 {
        let key = key_of(&i.to_le_bytes());
        b.put(&key, Bytes::from(i.to_string())).await.expect("put");
        keys.push(key);
    }
    keys.sort();
    assert_eq!(b.list(layout::BLOBS).await.expect("list"), keys);
    assert_eq!(b.list("docker/").await.expect("list"), keys);
    let first = keys[0].as_str();
    for cut in [
        layout::BLOBS.len() + 8,
        layout::BLOBS.len() + 9,
        layout::BLOBS.len() + 10,
    ] {
        let prefix = &first[..cut];
        let want: Vec<Key> = keys
            .iter()
            .filter(|k| k.as_str().starts_with(prefix))
            .cloned()
            .collect();
        assert_eq!(b.list(prefix).await.expect("list"), want, "prefix {prefix}");
    }
    assert_eq!(b.list(first).await.expect("list"), vec![keys[0].clone()]);
    let none = format!("{}sha512/", layout::BLOBS);
    assert!(b.list(&none).await.expect("list").is_empty());
}

/// Uploads in progress are not objects: a listing of blobs shows only committed keys.
pub async fn list_shows_only_committed_keys<B: Backend>(b: &B) {
    let mut rng = Rng::new(1);
    let (done, open) = (rng.upload_id(), rng.upload_id());
    let dest = key_of(b"committed");
    b.upload_create(&open).await.expect("create");
    b.upload_append(&open, 0, one_chunk(b"pending"))
        .await
        .expect("append");
    assert!(b.list(layout::BLOBS).await.expect("list").is_empty());
    upload(b, &done, b"committed", &dest).await;
    assert_eq!(b.list(layout::BLOBS).await.expect("list"), vec![dest]);
}

/// create → size 0 → appends (including an empty one) → commit → object readable, upload gone.
pub async fn upload_lifecycle<B: Backend>(b: &B) {
    let mut rng = Rng::new(2);
    let id = rng.upload_id();
    let first = rng.bytes(part_len(b, 1000));
    let second = rng.bytes(777);
    b.upload_create(&id).await.expect("create");
    assert_eq!(b.upload_size(&id).await.expect("size"), Some(0));
    let n1 = b
        .upload_append(&id, 0, one_chunk(&first))
        .await
        .expect("append 1");
    assert_eq!(n1, first.len() as u64);
    assert_eq!(b.upload_size(&id).await.expect("size"), Some(n1));
    let n2 = b
        .upload_append(&id, n1, one_chunk(&second))
        .await
        .expect("append 2");
    assert_eq!(n2, n1 + second.len() as u64);
    let n3 = b
        .upload_append(&id, n2, stream_of(Vec::new()))
        .await
        .expect("empty append");
    assert_eq!(n3, n2);
    let whole = [first, second].concat();
    let dest = key_of(&whole);
    b.upload_commit(&id, &dest, n3).await.expect("commit");
    assert_eq!(read_all(b, &dest, None).await, whole);
    assert_eq!(b.upload_size(&id).await.expect("size"), None);
    let again = b.upload_append(&id, n3, one_chunk(b"x")).await;
    assert!(
        matches!(again, Err(StorageError::NotFound)),
        "append after commit"
    );
    assert!(matches!(
        b.upload_commit(&id, &dest, 0).await,
        Err(StorageError::NotFound)
    ));
    assert!(!b.upload_abort(&id).await.expect("abort after commit"));
}

/// `upload_read` streams exactly the bytes received so far.
pub async fn upload_read_streams_received_bytes<B: Backend>(b: &B) {
    let mut rng = Rng::new(3);
    let id = rng.upload_id();
    b.upload_create(&id).await.expect("create");
    let empty = collect(b.upload_read(&id).await.expect("read empty"))
        .await
        .expect("stream");
    assert!(empty.is_empty());
    let data = rng.bytes(3 << 20);
    b.upload_append(&id, 0, one_chunk(&data))
        .await
        .expect("append");
    let got = collect(b.upload_read(&id).await.expect("read"))
        .await
        .expect("stream");
    assert!(got == data, "upload_read returned other bytes");
    b.upload_abort(&id).await.expect("abort");
    assert!(matches!(
        b.upload_read(&id).await,
        Err(StorageError::NotFound)
    ));
}

/// Abort discards the bytes; a second abort reports that nothing was there.
pub async fn upload_abort_discards<B: Backend>(b: &B) {
    let id = Rng::new(4).upload_id();
    b.upload_create(&id).await.expect("create");
    b.upload_append(&id, 0, one_chunk(b"discard me"))
        .await
        .expect("append");
    assert!(b.upload_abort(&id).await.expect("abort"));
    assert_eq!(b.upload_size(&id).await.expect("size"), None);
    assert!(!b.upload_abort(&id).await.expect("second abort"));
    assert!(b.list(layout::BLOBS).await.expect("list").is_empty());
    b.upload_create(&id)
        .await
        .expect("an aborted id can be created again");
    assert_eq!(b.upload_size(&id).await.expect("size"), Some(0));
}

/// Operations on an id that was never created.
pub async fn unknown_upload<B: Backend>(b: &B) {
    let id = Rng::new(5).upload_id();
    let dest = key_of(b"nothing");
    assert_eq!(b.upload_size(&id).await.expect("size"), None);
    assert!(matches!(
        b.upload_commit(&id, &dest, 0).await,
        Err(StorageError::NotFound)
    ));
    let append = b.upload_append(&id, 0, one_chunk(b"x")).await;
    assert!(matches!(append, Err(StorageError::NotFound)));
    assert!(!b.upload_abort(&id).await.expect("abort"));
    assert_eq!(b.stat(&dest).await.expect("stat"), None);
}

/// Creating an existing upload fails and leaves its bytes alone.
pub async fn duplicate_create_fails<B: Backend>(b: &B) {
    let id = Rng::new(6).upload_id();
    b.upload_create(&id).await.expect("create");
    b.upload_append(&id, 0, one_chunk(b"keep"))
        .await
        .expect("append");
    assert!(b.upload_create(&id).await.is_err());
    assert_eq!(b.upload_size(&id).await.expect("size"), Some(4));
}

/// A commit names the size the caller verified: any other size is refused under the upload's
/// lock, nothing appears at the destination, and the upload stays as it was.
pub async fn commit_of_another_size_writes_nothing<B: Backend>(b: &B) {
    let id = Rng::new(11).upload_id();
    let data = b"verified bytes".to_vec();
    let len = data.len() as u64;
    b.upload_create(&id).await.expect("create");
    b.upload_append(&id, 0, one_chunk(&data))
        .await
        .expect("append");
    let dest = key_of(&data);
    for asked in [0, len - 1, len + 1] {
        let got = b.upload_commit(&id, &dest, asked).await;
        let ok = matches!(got, Err(StorageError::OffsetMismatch { current, requested })
            if current == len && requested == asked);
        assert!(ok, "commit of {asked} bytes: {got:?}");
        assert_eq!(
            b.stat(&dest).await.expect("stat"),
            None,
            "nothing committed"
        );
    }
    assert_eq!(b.upload_size(&id).await.expect("size"), Some(len));
    b.upload_commit(&id, &dest, len).await.expect("commit");
    assert!(read_all(b, &dest, None).await == data);
}

/// An append at another offset than the size is refused and writes nothing.
pub async fn append_at_wrong_offset_writes_nothing<B: Backend>(b: &B) {
    let mut rng = Rng::new(7);
    let id = rng.upload_id();
    let data = rng.bytes(part_len(b, 100));
    let len = data.len() as u64;
    b.upload_create(&id).await.expect("create");
    let zero = b.upload_append(&id, 5, one_chunk(b"early")).await;
    assert!(matches!(
        zero,
        Err(StorageError::OffsetMismatch {
            current: 0,
            requested: 5
        })
    ));
    b.upload_append(&id, 0, one_chunk(&data))
        .await
        .expect("append");
    for at in [0, 1, len - 1, len + 1] {
        let got = b.upload_append(&id, at, one_chunk(b"junk")).await;
        let ok = matches!(got, Err(StorageError::OffsetMismatch { current, requested })
            if current == len && requested == at);
        assert!(ok, "offset {at}: {got:?}");
    }
    assert_eq!(b.upload_size(&id).await.expect("size"), Some(len));
    let dest = key_of(&data);
    b.upload_commit(&id, &dest, data.len() as u64)
        .await
        .expect("commit");
    assert!(read_all(b, &dest, None).await == data);
}

/// Thousands of tiny frames in one append (what hyper delivers), and many small appends where the
/// backend accepts them.
pub async fn append_many_small_chunks<B: Backend>(b: &B) {
    let mut rng = Rng::new(8);
    let id = rng.upload_id();
    let data = Bytes::from(rng.bytes(1 << 20));
    b.upload_create(&id).await.expect("create");
    let chunks = random_chunks(&mut rng, &data, 300);
    let mut size = b
        .upload_append(&id, 0, stream_of(chunks))
        .await
        .expect("append");
    let mut whole = data.to_vec();
    if b.min_chunk_len().is_none() {
        for i in 0..300u32 {
            let n = rng.range(0, 64);
            let piece = rng.bytes(n);
            size = b
                .upload_append(&id, size, one_chunk(&piece))
                .await
                .unwrap_or_else(|e| panic!("append {i}: {e}"));
            whole.extend_from_slice(&piece);
        }
    }
    assert_eq!(size, whole.len() as u64);
    let dest = key_of(&whole);
    b.upload_commit(&id, &dest, size).await.expect("commit");
    assert!(read_all(b, &dest, None).await == whole);
}

/// A failing input stream gives `Input`; the bytes kept are a prefix of what was sent, and the
/// upload resumes from `upload_size`.
pub async fn failing_input_keeps_prefix_and_resumes<B: Backend>(b: &B) {
    let mut rng = Rng::new(9);
    let id = rng.upload_id();
    let data = Bytes::from(rng.bytes(part_len(b, 3 << 20) + (1 << 20)));
    let sent = data.len() - 12345;
    b.upload_create(&id).await.expect("create");
    let mut items: Vec<io::Result<Bytes>> = random_chunks(&mut rng, &data.slice(..sent), 64 << 10)
        .into_iter()
        .map(Ok)
        .collect();
    items.push(Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "client went away",
    )));
    let got = b
        .upload_append(&id, 0, Box::pin(futures::stream::iter(items)))
        .await;
    assert!(matches!(got, Err(StorageError::Input(_))), "{got:?}");
    let kept = b
        .upload_size(&id)
        .await
        .expect("size")
        .expect("upload survives");
    assert!(kept <= sent as u64, "kept {kept} of {sent}");
    let rest = data.slice(kept as usize..);
    let end = b
        .upload_append(&id, kept, stream_of(vec![rest]))
        .await
        .expect("resume");
    assert_eq!(end, data.len() as u64);
    let dest = key_of(&data);
    b.upload_commit(&id, &dest, data.len() as u64)
        .await
        .expect("commit");
    assert!(read_all(b, &dest, None).await == data);
}

/// Committing onto an existing key replaces the object.
pub async fn commit_replaces_existing_object<B: Backend>(b: &B) {
    let mut rng = Rng::new(10);
    let dest = key_of(b"dest");
    b.put(
        &dest,
        Bytes::from_static(b"old object, longer than the new one"),
    )
    .await
    .expect("put");
    upload(b, &rng.upload_id(), b"new object", &dest).await;
    assert_eq!(read_all(b, &dest, None).await, b"new object");
    upload(b, &rng.upload_id(), b"third", &dest).await;
    assert_eq!(read_all(b, &dest, None).await, b"third");
    assert_eq!(b.list(layout::BLOBS).await.expect("list"), vec![dest]);
}

/// A stream of `n` chunks of `byte`, pausing between chunks so two appends overlap in time.
fn slow_stream(byte: u8, n: usize) -> ByteStream {
    Box::pin(futures::stream::unfold(0, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        Some((Ok(Bytes::from(vec![byte; 4096])), i + 1))
    }))
}

/// Two appends at the same offset at the same time: exactly one wins, whole and uninterleaved.
pub async fn concurrent_appends_one_wins<B: Backend>(b: &B) {
    let id = Rng::new(11).upload_id();
    b.upload_create(&id).await.expect("create");
    let (ra, rb) = tokio::join!(
        b.upload_append(&id, 0, slow_stream(b'a', 20)),
        b.upload_append(&id, 0, slow_stream(b'b', 20)),
    );
    let winner = match (&ra, &rb) {
        (Ok(_), Err(StorageError::OffsetMismatch { requested: 0, .. })) => b'a',
        (Err(StorageError::OffsetMismatch { requested: 0, .. }), Ok(_)) => b'b',
        _ => panic!("want exactly one winner and one OffsetMismatch, got {ra:?} and {rb:?}"),
    };
    let want = vec![winner; 20 * 4096];
    assert_eq!(
        b.upload_size(&id).await.expect("size"),
        Some(want.len() as u64)
    );
    let dest = key_of(&want);
    b.upload_commit(&id, &dest, want.len() as u64)
        .await
        .expect("commit");
    assert!(
        read_all(b, &dest, None).await == want,
        "appends interleaved"
    );
}

/// Hashes a stream without holding it in memory; returns (digest, length).
async fn hash_stream(mut s: ByteStream) -> (Digest, u64) {
    let mut h = Hasher::new(Algorithm::Sha256);
    while let Some(chunk) = s.next().await {
        h.update(&chunk.expect("read stream"));
    }
    let len = h.len();
    (h.finish(), len)
}

/// 64 MiB in four appends of random-sized frames reads back byte-identical (by sha256), whole and
/// by range.
pub async fn large_upload_random_chunks<B: Backend>(b: &B) {
    const TOTAL: usize = 64 << 20;
    let mut rng = Rng::new(12);
    let id = rng.upload_id();
    let data = Bytes::from(rng.bytes(TOTAL));
    let digest = Digest::sha256_of(&data);
    b.upload_create(&id).await.expect("create");
    let mut size = 0u64;
    for part in 0..4 {
        let piece = data.slice(part * TOTAL / 4..(part + 1) * TOTAL / 4);
        let max = if part % 2 == 0 { 256 << 10 } else { 2048 };
        let chunks = random_chunks(&mut rng, &piece, max);
        size = b
            .upload_append(&id, size, stream_of(chunks))
            .await
            .expect("append");
    }
    assert_eq!(size, TOTAL as u64);
    let dest = layout::blob(&digest);
    b.upload_commit(&id, &dest, size).await.expect("commit");
    assert_eq!(b.stat(&dest).await.expect("stat"), Some(TOTAL as u64));
    let (got, len) = hash_stream(b.read(&dest, None).await.expect("read")).await;
    assert_eq!((got, len), (digest, TOTAL as u64));
    let (start, end) = (12_345_678u64, 45_678_901u64);
    let (got, len) = hash_stream(b.read(&dest, range(start, Some(end))).await.expect("read")).await;
    let want = Digest::sha256_of(&data[start as usize..end as usize]);
    assert_eq!((got, len), (want, end - start));
}
