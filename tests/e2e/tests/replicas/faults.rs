//! Faults under the two-replica deployment: SeaweedFS dies during pushes, PostgreSQL restarts
//! under load.

use std::io::{BufReader, Write as _};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use berth_e2e::http::{self, Response};
use berth_e2e::raw::{image_manifest, RawApi};
use berth_e2e::{random_bytes, sha256_digest, OCI_MANIFEST};

use super::cluster::{assert_oci_server_error, path_of, Cluster};
use super::MIB;

/// Pushes a one-layer image `repo:tag` through `api`; returns the manifest digest.
fn push_image(api: &RawApi, repo: &str, tag: &str, layer: &[u8]) -> String {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
    let (cd, _) = api.push_blob_monolithic(repo, config.as_bytes());
    let (ld, _) = api.push_blob_monolithic(repo, layer);
    let m = image_manifest((&cd, config.len()), &[(&ld, layer.len())]);
    api.put_manifest(repo, tag, OCI_MANIFEST, &m);
    sha256_digest(&m)
}

/// `METHOD <path>` with a body streamed from another thread, which calls `midway` once `cut`
/// bytes are sent and then keeps sending until done or until the server stops reading. The
/// response is read while the body is still being written, as real clients do: a server may
/// answer an error before it has read the whole body.
fn send_streaming(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Arc<Vec<u8>>,
    cut: usize,
    midway: impl FnOnce(),
) -> Response {
    let stream = TcpStream::connect(addr).expect("connect");
    // Bounds the wait: an answer must come well before this, or the test fails.
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut w = stream.try_clone().expect("clone socket");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let (tx, rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        w.write_all(head.as_bytes())?;
        let (first, rest) = body.split_at(cut);
        w.write_all(first)?;
        let _ = tx.send(());
        for chunk in rest.chunks(256 << 10) {
            w.write_all(chunk)?;
        }
        Ok::<(), std::io::Error>(())
    });
    // A writer that failed before `cut` (server closed early) drops the sender: go on reading.
    let _ = rx.recv();
    midway();
    let r = http::read_response(BufReader::new(stream), false)
        .unwrap_or_else(|e| panic!("{method} {path}: no response: {e}"));
    // The writer ends either way: done, or the server closed the connection on it.
    let _ = writer.join();
    r
}

/// [`assert_oci_server_error`] for a storage outage: the message must say so.
#[track_caller]
fn assert_storage_error(r: &Response, what: &str) {
    assert_oci_server_error(r, what);
    let msg = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("storage"), "{what}: unclear message {msg:?}");
}

#[test]
fn seaweedfs_outage_during_pushes_fails_cleanly_and_recovers() {
    let mut c = Cluster::start();
    let (a, b, lb) = (
        RawApi::new(c.a.url()),
        RawApi::new(c.b.url()),
        RawApi::new(c.lb.url()),
    );
    let pids = (c.a.pid(), c.b.pid());
    let before = random_bytes(300_000);
    let before_md = push_image(&lb, "ha/before", "v1", &before);
    let before_m = c.a.get_manifest("ha/before", "v1").body;

    // 1. A 48 MiB blob streamed through nginx; SeaweedFS is killed after 12 MiB.
    let big = Arc::new(random_bytes(48 * MIB));
    let big_digest = sha256_digest(&big);
    let r = lb.call("POST", "/v2/ha/big/blobs/uploads/", &[], &[]);
    assert_eq!(r.status, 202, "{}", r.describe());
    let loc = path_of(&r);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = format!("{loc}{sep}digest={big_digest}");
    let (started, lb_addr, weed) = (Instant::now(), c.lb.addr(), &mut c.weed);
    let r = send_streaming(
        &lb_addr,
        "PUT",
        &put,
        &[],
        Arc::clone(&big),
        12 * MIB,
        || weed.stop(),
    );
    eprintln!(
        "streamed PUT answered {} after {:?}",
        r.status,
        started.elapsed()
    );
    assert_storage_error(&r, "PUT of a 48 MiB blob while SeaweedFS dies");

    // 2. A chunked upload whose second PATCH (on the other replica) meets the outage.
    let small = random_bytes(11 * MIB);
    let small_digest = sha256_digest(&small);
    c.rt.block_on(c.weed.restart());
    let r = a.call("POST", "/v2/ha/chunked/blobs/uploads/", &[], &[]);
    assert_eq!(r.status, 202, "{}", r.describe());
    let range = format!("0-{}", 6 * MIB - 1);
    let r = b.at(
        "PATCH",
        &path_of(&r),
        &[("Content-Range", &range)],
        &small[..6 * MIB],
    );
    assert_eq!(r.status, 202, "{}", r.describe());
    let loc = path_of(&r);
    c.weed.stop();
    let range = format!("{}-{}", 6 * MIB, small.len() - 1);
    let rest = Arc::new(small[6 * MIB..].to_vec());
    let r = send_streaming(
        &c.a.addr(),
        "PATCH",
        &loc,
        &[("Content-Range", &range)],
        rest,
        0,
        || {},
    );
    assert_storage_error(&r, "PATCH while SeaweedFS is down");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = b.at("PUT", &format!("{loc}{sep}digest={small_digest}"), &[], &[]);
    assert_storage_error(&r, "PUT ?digest while SeaweedFS is down");
    // Manifests live in PostgreSQL: a manifest push whose blobs were stored before the outage
    // still succeeds; reads of stored blob bytes fail cleanly.
    let mut m: serde_json::Value = serde_json::from_slice(&before_m).expect("manifest JSON");
    m["annotations"] = serde_json::json!({"pushed": "during the outage"});
    let m = serde_json::to_vec(&m).expect("manifest");
    let r = lb.call(
        "PUT",
        "/v2/ha/before/manifests/during",
        &[("Content-Type", OCI_MANIFEST)],
        &m,
    );
    assert_eq!(
        r.status,
        201,
        "manifest PUT while SeaweedFS is down:\n{}",
        r.describe()
    );
    let during_md = sha256_digest(&m);
    let r = b.call(
        "GET",
        &format!("/v2/ha/before/blobs/{}", sha256_digest(&before)),
        &[],
        &[],
    );
    assert_storage_error(&r, "blob GET while SeaweedFS is down");

    // 3. SeaweedFS returns on the same port and data; Berth is not restarted.
    c.rt.block_on(c.weed.restart());
    assert_eq!((c.a.pid(), c.b.pid()), pids, "no replica restarted");
    assert!(c.a.is_running() && c.b.is_running());
    for s in [&c.a, &c.b] {
        // Nothing half-written is visible: the failed blobs are unknown everywhere.
        assert_eq!(s.blob_status("ha/big", &big_digest), 404, "{}", s.addr());
        assert_eq!(
            s.blob_status("ha/chunked", &small_digest),
            404,
            "{}",
            s.addr()
        );
        assert_eq!(
            s.tags("ha/before"),
            Some(vec!["during".into(), "v1".into()])
        );
        let r = s.get_manifest("ha/before", "during");
        assert_eq!((r.status, sha256_digest(&r.body)), (200, during_md.clone()));
        let big_tags = s.tags("ha/big");
        assert!(big_tags.as_ref().is_none_or(Vec::is_empty), "{big_tags:?}");
        // What was pushed before the outage is intact.
        let r = s.get_manifest("ha/before", &before_md);
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    assert_eq!(c.a.catalog(), c.b.catalog());
    wait_until_pushes_work(&lb);

    // Push and pull work again, large blobs included.
    let (d, _) = lb.push_blob_monolithic("ha/big", &big);
    assert_eq!(d, big_digest);
    let md = push_image(&lb, "ha/after", "v1", &small);
    for s in [&c.a, &c.b] {
        let r = http::get(&format!("{}/v2/ha/big/blobs/{big_digest}", s.url()), &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert!(r.body == *big, "48 MiB blob bytes via {}", s.addr());
        assert_eq!(s.get_manifest("ha/after", "v1").status, 200);
        assert_eq!(s.get_manifest("ha/after", &md).status, 200);
    }
    assert_eq!((c.a.pid(), c.b.pid()), pids, "no replica restarted");
}

/// The first pushes after SeaweedFS restarts may meet its volume servers still registering;
/// waits (bounded) until a small monolithic push through the load balancer succeeds.
fn wait_until_pushes_work(lb: &RawApi) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let data = random_bytes(1024);
        let r = lb.call(
            "POST",
            &format!(
                "/v2/ha/probe/blobs/uploads/?digest={}",
                sha256_digest(&data)
            ),
            &[],
            &data,
        );
        if r.status == 201 {
            return;
        }
        assert_oci_server_error(&r, "push while SeaweedFS comes back");
        assert!(
            Instant::now() < deadline,
            "pushes did not recover:\n{}",
            r.describe()
        );
        thread::sleep(Duration::from_millis(250));
    }
}

/// One request of the load and what came back.
struct Outcome {
    what: String,
    result: Result<Response, String>,
    tag: Option<String>,
}

/// A load thread: reads of the seeded image and tag pushes, round-robin over the targets.
fn load(
    id: usize,
    targets: Vec<String>,
    manifest: Vec<u8>,
    md: String,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let root = &targets[i % targets.len()];
        let api = RawApi::new(root.clone());
        let (what, tag, method, path, body): (_, _, _, _, &[u8]) = match i % 4 {
            0 => (
                "GET manifest",
                None,
                "GET",
                "/v2/ha/load/manifests/seed".to_string(),
                &[],
            ),
            1 => (
                "HEAD manifest",
                None,
                "HEAD",
                format!("/v2/ha/load/manifests/{md}"),
                &[],
            ),
            2 => (
                "GET tags",
                None,
                "GET",
                "/v2/ha/load/tags/list".to_string(),
                &[],
            ),
            _ => {
                let tag = format!("t{id}-{i}");
                let path = format!("/v2/ha/load/manifests/{tag}");
                ("PUT manifest", Some(tag), "PUT", path, &manifest[..])
            }
        };
        let url = format!("{}{path}", api.root);
        let result = http::request(method, &url, &[("Content-Type", OCI_MANIFEST)], body)
            .map_err(|e| e.to_string());
        out.push(Outcome {
            what: format!("{what} via {root}"),
            result,
            tag,
        });
        i += 1;
        thread::sleep(Duration::from_millis(5));
    }
    out
}

#[test]
fn postgres_restart_under_load_fails_cleanly_and_recovers() {
    let c = Cluster::start();
    let lb = RawApi::new(c.lb.url());
    let pids = (c.a.pid(), c.b.pid());
    let layer = random_bytes(100_000);
    let md = push_image(&lb, "ha/load", "seed", &layer);
    let manifest = c.a.get_manifest("ha/load", "seed").body;

    let stop = Arc::new(AtomicBool::new(false));
    let targets = vec![c.lb.url(), c.a.url(), c.b.url()];
    let workers: Vec<_> = (0..6)
        .map(|id| {
            let (t, m, d, s) = (
                targets.clone(),
                manifest.clone(),
                md.clone(),
                Arc::clone(&stop),
            );
            thread::spawn(move || load(id, t, m, d, s))
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));

    c.pg.halt();
    // While it is down: a clean 503 from each replica and through nginx.
    for url in [c.a.url(), c.b.url(), c.lb.url()] {
        let r = http::get(&format!("{url}/v2/ha/load/manifests/seed"), &[]);
        assert_eq!(r.status, 503, "{url}: {}", r.describe());
        assert_oci_server_error(&r, "manifest GET while PostgreSQL is down");
        assert!(r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("database"));
        let r = http::get(&format!("{url}/readyz"), &[]);
        assert_eq!(r.status, 503, "/readyz via {url}: {}", r.describe());
    }
    thread::sleep(Duration::from_millis(1500));
    c.pg.resume();
    let deadline = Instant::now() + Duration::from_secs(60);
    for s in [&c.a, &c.b] {
        while s.get_manifest("ha/load", "seed").status != 200 {
            assert!(Instant::now() < deadline, "{} did not recover", s.addr());
            thread::sleep(Duration::from_millis(50));
        }
    }
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("load thread"))
        .collect();

    // Every answer was a success or a clean 503; none hung, dropped the connection or was a 500.
    let mut unavailable = 0;
    let mut acknowledged = Vec::new();
    for o in &outcomes {
        let r = o
            .result
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: no answer: {e}", o.what));
        match r.status {
            200 => {}
            201 => acknowledged.extend(o.tag.clone()),
            503 => {
                unavailable += 1;
                if !o.what.starts_with("HEAD") {
                    assert_oci_server_error(r, &o.what);
                }
            }
            _ => panic!("{}: unexpected answer:\n{}", o.what, r.describe()),
        }
    }
    eprintln!(
        "{} requests under load, {unavailable} answered 503, {} tags acknowledged",
        outcomes.len(),
        acknowledged.len()
    );
    assert!(unavailable > 0, "the load never met the outage");
    assert!(
        outcomes.len() > unavailable + 20,
        "too little load succeeded"
    );

    // Every acknowledged tag push survived, on both replicas alike, and nothing else appeared.
    let tags = c.a.tags("ha/load").expect("tags of ha/load");
    assert_eq!(c.b.tags("ha/load").as_ref(), Some(&tags));
    for t in &acknowledged {
        assert!(tags.contains(t), "acknowledged tag {t} is missing");
    }
    let attempted: Vec<&String> = outcomes.iter().filter_map(|o| o.tag.as_ref()).collect();
    for t in tags.iter().filter(|t| *t != "seed") {
        assert!(attempted.contains(&t), "unexpected tag {t}");
    }

    // Reads and writes work on both replicas without a restart.
    for s in [&c.a, &c.b] {
        assert_eq!(http::get(&format!("{}/readyz", s.url()), &[]).status, 200);
    }
    push_image(&lb, "ha/load", "after", &layer);
    for s in [&c.a, &c.b] {
        assert_eq!(
            s.get_manifest("ha/load", "after").status,
            200,
            "{}",
            s.addr()
        );
    }
    assert_eq!((c.a.pid(), c.b.pid()), pids, "no replica restarted");
}
