//! The time limits against a fake endpoint on loopback: one that accepts connections and never
//! answers (a stalled service), one that answers and then stops sending, and one that sends a
//! body slowly but steadily.

use std::io;
use std::time::{Duration, Instant};

use berth_oci::{Digest, UploadId};
use bytes::Bytes;
use futures::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{S3Backend, S3Options};
use crate::layout;
use crate::{BlobRead, BlobWrite, StorageError, UploadStore};

const LIMIT: Duration = Duration::from_millis(600);

/// What the fake endpoint does with each connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Accepts and never reads or answers.
    Stall,
    /// Answers a `GET` with headers for `len` bytes, then sends nothing.
    HeadersOnly { len: usize },
    /// Answers a `GET` with `len` bytes, one every `every`.
    Trickle { len: usize, every: Duration },
}

/// Starts the fake endpoint; it lives as long as the test's runtime.
async fn endpoint(behaviour: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            match behaviour {
                Behaviour::Stall => held.push(socket),
                other => {
                    tokio::spawn(answer(socket, other));
                }
            }
        }
    });
    format!("http://{addr}")
}

/// Reads one request head and answers it as `behaviour` says.
async fn answer(mut socket: TcpStream, behaviour: Behaviour) -> io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (len, every) = match behaviour {
        Behaviour::Stall => return Ok(()),
        Behaviour::HeadersOnly { len } => (len, None),
        Behaviour::Trickle { len, every } => (len, Some(every)),
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"e\"\r\n\
         Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n"
    );
    socket.write_all(response.as_bytes()).await?;
    let Some(every) = every else {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return Ok(());
    };
    for _ in 0..len {
        tokio::time::sleep(every).await;
        socket.write_all(b"x").await?;
    }
    Ok(())
}

fn backend(endpoint: String, idle: Duration) -> S3Backend {
    let mut o = S3Options::new("stalled");
    o.region_endpoint = Some(endpoint);
    o.region = Some("us-east-1".into());
    o.force_path_style = true;
    o.access_key = Some("key".into());
    o.secret_key = Some("secret".into());
    o.request_timeout = LIMIT;
    o.idle_timeout = idle;
    S3Backend::new(&o).unwrap()
}

/// `r` is a timeout (503 for the registry) that came after about `LIMIT`, not much later.
#[track_caller]
fn assert_timed_out<T: std::fmt::Debug>(what: &str, started: Instant, r: crate::Result<T>) {
    let took = started.elapsed();
    match r {
        Err(StorageError::Backend(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{what}: {e}");
            assert!(e.to_string().contains("requesttimeout"), "{what}: {e}");
        }
        other => panic!("{what}: expected a timeout, got {other:?}"),
    }
    // one limit per call (a few calls make two requests); far below the 30 s idle timeout
    assert!(took >= LIMIT, "{what}: {took:?}");
    assert!(
        took < LIMIT * 2 + Duration::from_secs(2),
        "{what}: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_fails_small_requests_within_the_limit() {
    let b = backend(endpoint(Behaviour::Stall).await, Duration::from_secs(30));
    let key = layout::blob(&Digest::sha256_of(b"x"));
    let id = UploadId::from_random([9; 16]);
    let t = Instant::now();
    assert_timed_out("stat", t, b.stat(&key).await);
    let t = Instant::now();
    assert_timed_out("read", t, b.read(&key, None).await.map(drop));
    let t = Instant::now();
    let small = Bytes::from_static(b"{\"manifest\":1}");
    assert_timed_out("put", t, b.put(&key, small).await);
    let t = Instant::now();
    assert_timed_out("delete", t, b.delete(&key).await);
    let t = Instant::now();
    assert_timed_out("list", t, b.list("docker/").await);
    let t = Instant::now();
    assert_timed_out("upload_create", t, b.upload_create(&id).await);
    let t = Instant::now();
    assert_timed_out("upload_size", t, b.upload_size(&id).await);
    let t = Instant::now();
    assert_timed_out("upload_commit", t, b.upload_commit(&id, &key, 0).await);
    let t = Instant::now();
    let data = crate::suite::one_chunk(b"abc");
    assert_timed_out("upload_append", t, b.upload_append(&id, 0, data).await);
    let t = Instant::now();
    assert_timed_out(
        "ListMultipartUploads",
        t,
        b.pending_multipart_uploads().await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_transfer_fails_after_the_idle_timeout() {
    let url = endpoint(Behaviour::HeadersOnly { len: 1000 }).await;
    let b = backend(url, Duration::from_secs(1));
    let key = layout::blob(&Digest::sha256_of(b"x"));
    let t = Instant::now();
    let stream = b.read(&key, None).await.expect("headers arrive");
    let got: io::Result<Vec<Bytes>> = stream.try_collect().await;
    assert!(got.is_err(), "a body that stops must fail");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(30),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_moving_transfer_is_not_cut() {
    let every = Duration::from_millis(150);
    let url = endpoint(Behaviour::Trickle { len: 12, every }).await;
    let b = backend(url, Duration::from_secs(2));
    let key = layout::blob(&Digest::sha256_of(b"x"));
    let t = Instant::now();
    let stream = b.read(&key, None).await.expect("headers arrive");
    let got: Vec<Bytes> = stream.try_collect().await.expect("whole body");
    assert_eq!(got.concat(), vec![b'x'; 12]);
    // the body took three times the total limit of a small request
    assert!(t.elapsed() > LIMIT * 2, "{:?}", t.elapsed());
}
