//! Two real `berth serve` processes sharing one PostgreSQL (a throwaway cluster from
//! `scripts/postgres`) and one storage directory: `berth migrate-db` prepares the schema, a push
//! through one replica is pullable through the other at once, a chunked upload alternates
//! between them, a delete is visible everywhere, and a PostgreSQL restart makes requests fail
//! with 503 UNAVAILABLE and then work again without restarting either replica.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres")
}

/// A throwaway cluster; stopped and removed on drop.
struct Postgres {
    dir: String,
    url: String,
}

impl Postgres {
    fn start(tmp: &Path) -> Postgres {
        let dir = tmp.join("pg").display().to_string();
        let url = run(Command::new(script()).args(["start", &dir]));
        Postgres { dir, url }
    }

    fn halt(&self) {
        run(Command::new(script()).args(["halt", &self.dir]));
    }

    fn resume(&self) {
        run(Command::new(script()).args(["start", &self.dir]));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["stop", &self.dir]).output();
    }
}

/// Runs a command to success and returns its trimmed stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    fn start(dir: &Path, name: &str, url: &str) -> Replica {
        let port = free_port();
        let cfg = dir.join(format!("{name}.yml"));
        let yaml = format!(
            "version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\n  delete:\n    enabled: true\ndatabase:\n  url: {url}\n  \
             poolsize: 4\n",
            dir.join("data").display()
        );
        std::fs::write(&cfg, yaml).expect("write config");
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berth");
        let replica = Replica { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/v2/", &[], b"").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "{name} did not become ready");
            thread::sleep(Duration::from_millis(20));
        }
        replica
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// One HTTP/1.1 request with `Connection: close`: (status, lower-cased head, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head, raw[split + 4..].to_vec()))
}

/// The request must succeed with `status`; returns the head and body.
fn expect(
    port: u16,
    method: &str,
    path: &str,
    hdrs: &[(&str, &str)],
    body: &[u8],
    status: u16,
) -> (String, Vec<u8>) {
    let (got, head, body) = http(port, method, path, hdrs, body).expect("connection");
    assert_eq!(
        got,
        status,
        "{method} {path} on :{port}: {}",
        String::from_utf8_lossy(&body)
    );
    (head, body)
}

fn location(head: &str) -> String {
    let line = head.lines().find_map(|l| l.strip_prefix("location: "));
    line.expect("Location header").trim().to_string()
}

fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn two_replicas_share_one_postgres_and_survive_its_restart() {
    let tmp = tempfile::Builder::new()
        .prefix("berth-pg-replicas.")
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir()
        .expect("temp dir");
    let pg = Postgres::start(tmp.path());
    let migrated = run(Command::new(env!("CARGO_BIN_EXE_berth")).args([
        "migrate-db",
        "--database-url",
        &pg.url,
    ]));
    assert_eq!(
        migrated,
        "applied migrations: 0001_init, 0002_outbox, 0003_outbox_leases"
    );
    let (a, b) = (
        Replica::start(tmp.path(), "a", &pg.url),
        Replica::start(tmp.path(), "b", &pg.url),
    );

    // A chunked layer upload started on A, continued on B, finished on A.
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let ld = digest(&layer);
    let (head, _) = expect(a.port, "POST", "/v2/ha/app/blobs/uploads/", &[], b"", 202);
    let upload = location(&head);
    let (head, _) = expect(b.port, "PATCH", &upload, &[], &layer[..100_000], 202);
    let upload = location(&head);
    let (head, _) = expect(a.port, "PATCH", &upload, &[], &layer[100_000..], 202);
    let upload = location(&head);
    let sep = if upload.contains('?') { '&' } else { '?' };
    expect(
        b.port,
        "PUT",
        &format!("{upload}{sep}digest={ld}"),
        &[],
        b"",
        201,
    );
    let config = b"{}";
    let cd = digest(config);
    expect(
        a.port,
        "POST",
        &format!("/v2/ha/app/blobs/uploads/?digest={cd}"),
        &[],
        config,
        201,
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{}}}]}}"#,
        layer.len()
    );
    let md = digest(manifest.as_bytes());
    expect(
        a.port,
        "PUT",
        "/v2/ha/app/manifests/v1",
        &[("Content-Type", MANIFEST)],
        manifest.as_bytes(),
        201,
    );

    // Pullable through B at once.
    let (_, body) = expect(
        b.port,
        "GET",
        "/v2/ha/app/manifests/v1",
        &[("Accept", MANIFEST)],
        b"",
        200,
    );
    assert_eq!(body, manifest.as_bytes());
    let (_, body) = expect(
        b.port,
        "GET",
        &format!("/v2/ha/app/blobs/{ld}"),
        &[],
        b"",
        200,
    );
    assert!(body == layer, "layer bytes differ");
    let (_, body) = expect(b.port, "GET", "/v2/ha/app/tags/list", &[], b"", 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"name":"ha/app","tags":["v1"]}"#
    );

    // PostgreSQL goes away: a clean 503 UNAVAILABLE, then recovery without restarting berth.
    pg.halt();
    let (status, _, body) =
        http(a.port, "GET", "/v2/ha/app/manifests/v1", &[], b"").expect("answer");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("OCI error JSON");
    assert_eq!(json["errors"][0]["code"], "UNAVAILABLE");
    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(a.port, "GET", "/v2/ha/app/manifests/v1", &[], b"").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "replica a did not recover");
        thread::sleep(Duration::from_millis(50));
    }

    // A delete through B is visible through A.
    expect(
        b.port,
        "DELETE",
        &format!("/v2/ha/app/manifests/{md}"),
        &[],
        b"",
        202,
    );
    expect(a.port, "GET", "/v2/ha/app/manifests/v1", &[], b"", 404);
    expect(
        a.port,
        "GET",
        &format!("/v2/ha/app/manifests/{md}"),
        &[],
        b"",
        404,
    );
}
