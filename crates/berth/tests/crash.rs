//! Kill -9 the real `berth` binary in the middle of pushes, restart it on the same storage, and
//! check the promises: every completed push is intact, nothing partial is visible, in-flight upload
//! sessions either resume or fail with a clean OCI error.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    fn start(dir: &Path, port: u16) -> Server {
        let cfg = dir.join("config.yml");
        let root = dir.join("data");
        std::fs::write(
            &cfg,
            format!("version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n", root.display()),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("berth.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Server { child, dir: root };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if http(port, "GET", "/v2/", &[], b"").map(|r| r.0) == Some(200) {
                return s;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "berth did not become ready; log: {}",
            std::fs::read_to_string(dir.join("berth.log")).unwrap_or_default()
        );
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on unix
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request with `Connection: close`; `None` when the connection failed.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_lowercase(), raw[split + 4..].to_vec()))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A completed push: (repo, tag, layer bytes, manifest digest).
type Pushed = (String, String, Vec<u8>, String);

/// Pushes a layer, a config and a manifest referencing them.
fn push_image(port: u16, i: u64) -> Option<Pushed> {
    let repo = format!("crash/r{}", i % 5);
    let data = blob(i, 256 * 1024 + i as usize);
    let d = digest(&data);
    let (st, ..) = http(
        port,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[],
        &data,
    )?;
    if st != 201 {
        return None;
    }
    let cfg = b"{}";
    let cd = digest(cfg);
    let (st, ..) = http(
        port,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={cd}"),
        &[],
        cfg,
    )?;
    if st != 201 {
        return None;
    }
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}]}}"#,
        data.len()
    );
    let ct = [(
        "Content-Type",
        "application/vnd.oci.image.manifest.v1+json".to_string(),
    )];
    let (st, ..) = http(
        port,
        "PUT",
        &format!("/v2/{repo}/manifests/t{i}"),
        &ct,
        m.as_bytes(),
    )?;
    (st == 201).then(|| (repo, format!("t{i}"), data, digest(m.as_bytes())))
}

/// Starts a monolithic push whose body is only half sent, and leaves the connection hanging.
fn hanging_push(port: u16) -> (TcpStream, String) {
    let data = blob(999, 4 << 20);
    let d = digest(&data);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let req = format!("POST /v2/crash/hang/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", data.len());
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(&data[..data.len() / 2]).unwrap();
    (s, d)
}

#[test]
fn kill9_during_pushes_loses_nothing_and_shows_nothing_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server::start(tmp.path(), port);

    // A chunked session with one chunk stored before the crash.
    let (st, head, _) = http(port, "POST", "/v2/crash/session/blobs/uploads/", &[], b"").unwrap();
    assert_eq!(st, 202);
    let session = header(&head, "location").unwrap().to_string();
    let part1 = blob(7, 300_000);
    assert_eq!(http(port, "PATCH", &session, &[], &part1).unwrap().0, 202);

    // Pushes that complete, then more racing the kill.
    let done: Arc<Mutex<Vec<Pushed>>> = Arc::default();
    for i in 0..10 {
        done.lock()
            .unwrap()
            .push(push_image(port, i).expect("push before the crash"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3u64)
        .map(|w| {
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            thread::spawn(move || {
                let mut i = 100 + w * 1000;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(ok) = push_image(port, i) {
                        done.lock().unwrap().push(ok);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let (_hanging, hanging_digest) = hanging_push(port);
    thread::sleep(Duration::from_millis(400));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let root = server.dir.clone();
    drop(server);

    // Nothing at a blob key is partial: every stored blob hashes to its own name.
    let blobs_dir = root.join("docker/registry/v2/blobs/sha256");
    for prefix in std::fs::read_dir(&blobs_dir).unwrap().flatten() {
        for entry in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            // A kill between creating the directory and the rename leaves a directory without
            // `data`: no blob is visible there, which is fine. A `data` file must be complete.
            let Ok(bytes) = std::fs::read(entry.path().join("data")) else {
                continue;
            };
            assert_eq!(
                digest(&bytes),
                format!("sha256:{name}"),
                "corrupt blob visible after crash"
            );
        }
    }

    let server = Server::start(tmp.path(), port);
    let completed = done.lock().unwrap().clone();
    assert!(completed.len() > 10, "some pushes raced the kill");
    for (repo, tag, data, mdigest) in &completed {
        let (st, head, body) = http(
            port,
            "GET",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(st, 200, "completed push {repo}:{tag} lost");
        assert_eq!(&digest(&body), mdigest);
        assert_eq!(
            header(&head, "docker-content-digest"),
            Some(mdigest.as_str())
        );
        let (st, _, got) = http(
            port,
            "GET",
            &format!("/v2/{repo}/blobs/{}", digest(data)),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(st, 200);
        assert!(got == *data, "blob of {repo}:{tag} corrupted");
    }
    // The half-sent monolithic push never became visible.
    let (st, ..) = http(
        port,
        "HEAD",
        &format!("/v2/crash/hang/blobs/{hanging_digest}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(st, 404);
    // Every tag that exists resolves to a readable manifest (no dangling tags).
    for r in 0..5 {
        let (st, _, body) =
            http(port, "GET", &format!("/v2/crash/r{r}/tags/list"), &[], b"").unwrap();
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for t in v["tags"].as_array().unwrap() {
            let (st, ..) = http(
                port,
                "GET",
                &format!("/v2/crash/r{r}/manifests/{}", t.as_str().unwrap()),
                &[],
                b"",
            )
            .unwrap();
            assert_eq!(st, 200, "tag {t} dangles");
        }
    }
    // The in-flight session resumes where it stood.
    let (st, head, _) = http(port, "GET", &session, &[], b"").unwrap();
    assert_eq!(st, 204);
    assert_eq!(header(&head, "range"), Some("0-299999"));
    let part2 = blob(8, 100_000);
    let range = [("Content-Range", "300000-399999".to_string())];
    assert_eq!(
        http(port, "PATCH", &session, &range, &part2).unwrap().0,
        202
    );
    let whole = [part1, part2].concat();
    let (st, ..) = http(
        port,
        "PUT",
        &format!("{session}?digest={}", digest(&whole)),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(st, 201);
    let (st, _, got) = http(
        port,
        "GET",
        &format!("/v2/crash/session/blobs/{}", digest(&whole)),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(st, 200);
    assert!(got == whole);
    drop(server);
}
