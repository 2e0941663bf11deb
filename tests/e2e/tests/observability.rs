//! Berth's operations surface driven from outside, on the real binary: Prometheus metrics after
//! a skopeo push and pull (scraped from the debug listener set through `REGISTRY_HTTP_DEBUG_ADDR`
//! and parsed strictly), request ids in responses and JSON access-log lines, health that flips
//! while the storage root is unreadable and recovers by itself, and `http.prefix` with
//! `http.headers` over raw HTTP.
//!
//! These tests always run Berth (`ServerOptions::pin_berth`): they check Berth's own metric names, log lines and health
//! endpoints, not registry:2 API behaviour.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::thread;
use std::time::{Duration, Instant};

use berth_e2e::http::{self, Response};
use berth_e2e::prom::{self, Exposition};
use berth_e2e::raw::{image_manifest, location, RawApi};
use berth_e2e::server::free_port;
use berth_e2e::{images, layer_digests, Server, ServerOptions, TestDir, OCI_MANIFEST};
use serde_json::Value;

fn berth(opts: ServerOptions) -> Server {
    Server::start_with(opts.pin_berth())
}

fn opts() -> ServerOptions {
    ServerOptions::default()
}

/// Scrapes `url` and parses it strictly.
fn scrape(url: &str) -> Exposition {
    let r = http::get(url, &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{}",
        r.describe()
    );
    let text = String::from_utf8(r.body).expect("metrics are UTF-8");
    prom::parse(&text).unwrap_or_else(|e| panic!("malformed exposition: {e}\n{text}"))
}

/// Polls `f` every 50 ms until it returns true or `limit` passes; returns whether it did.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_after_skopeo_push_and_pull() {
    let debug_port = free_port();
    let debug_addr = format!("127.0.0.1:{debug_port}");
    let s = berth(opts().env("REGISTRY_HTTP_DEBUG_ADDR", &debug_addr));
    let (t, img) = (TestDir::new("obs-metrics"), images());
    let manifest = img.layout.manifest_bytes("small");
    let blobs = img.layout.image_blobs(&img.layout.digest("small"));
    let blob_bytes: u64 = blobs.iter().map(|d| img.layout.blob(d).len() as u64).sum();
    assert_eq!(blobs.len(), 3, "config + 2 layers");

    t.skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(img.reference("small"))
        .arg(format!("docker://{}/obs/small:v1", s.addr()))
        .run();
    t.skopeo()
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/obs/small:v1", s.addr()))
        .arg(format!("dir:{}", t.join("out").display()))
        .run();

    let m = scrape(&format!("http://{debug_addr}/metrics"));
    let req = "berth_http_requests_total";
    for (family, kind) in [
        (req, "counter"),
        ("berth_http_request_duration_seconds", "histogram"),
        ("berth_http_request_bytes_total", "counter"),
        ("berth_http_response_bytes_total", "counter"),
        ("berth_storage_operation_duration_seconds", "histogram"),
        ("berth_manifests", "gauge"),
        ("berth_blobs", "gauge"),
        ("berth_repositories", "gauge"),
        ("berth_upload_sessions_active", "gauge"),
        ("berth_build_info", "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "# TYPE of {family}"
        );
    }

    // Requests by endpoint, method and status: one manifest PUT, every blob uploaded once and
    // downloaded at least once.
    let count = |ep: &str, method: &str, status: &str| {
        m.sum(
            req,
            &[("endpoint", ep), ("method", method), ("status", status)],
        )
    };
    assert_eq!(count("manifest", "PUT", "201"), 1.0);
    assert!(count("manifest", "GET", "200") >= 1.0);
    assert_eq!(
        count("blob_upload", "POST", "202"),
        3.0,
        "one session per blob"
    );
    assert_eq!(
        count("blob_upload_chunk", "PUT", "201"),
        3.0,
        "one commit per blob"
    );
    assert!(count("blob", "GET", "200") >= 3.0, "every blob pulled");
    assert!(
        count("blob", "HEAD", "404") >= 1.0,
        "skopeo checks before uploading"
    );

    // The latency histogram counts exactly the requests of each endpoint and method.
    for (ep, method) in [("manifest", "PUT"), ("manifest", "GET"), ("blob", "GET")] {
        let hist = m.one(
            "berth_http_request_duration_seconds_count",
            &[("endpoint", ep), ("method", method)],
        );
        let reqs = m.sum(req, &[("endpoint", ep), ("method", method)]);
        assert_eq!(hist, reqs, "{ep} {method}: histogram count vs requests");
        let sum = m.one(
            "berth_http_request_duration_seconds_sum",
            &[("endpoint", ep), ("method", method)],
        );
        assert!(sum > 0.0, "{ep} {method}: duration sum {sum}");
    }

    // Bytes: what was pulled went out, what was pushed came in.
    let out_blob = m.one("berth_http_response_bytes_total", &[("endpoint", "blob")]);
    assert!(out_blob >= blob_bytes as f64, "{out_blob} < {blob_bytes}");
    let in_blobs = m.sum(
        "berth_http_request_bytes_total",
        &[("endpoint", "blob_upload_chunk")],
    ) + m.sum(
        "berth_http_request_bytes_total",
        &[("endpoint", "blob_upload")],
    );
    assert!(in_blobs >= blob_bytes as f64, "{in_blobs} < {blob_bytes}");
    let in_manifest = m.one(
        "berth_http_request_bytes_total",
        &[("endpoint", "manifest")],
    );
    assert_eq!(in_manifest, manifest.len() as f64);
    let out_manifest = m.one(
        "berth_http_response_bytes_total",
        &[("endpoint", "manifest")],
    );
    assert!(out_manifest >= manifest.len() as f64);

    // The registry's own events, whoever caused them: each blob pushed once, the manifest
    // pushed once (one tag) and pulled at least once, every blob pulled, with their sizes.
    let ev = |event: &str| m.sum("berth_registry_events_total", &[("event", event)]);
    let ev_bytes = |event: &str| m.sum("berth_registry_event_bytes_total", &[("event", event)]);
    assert_eq!(ev("blob_pushed"), 3.0);
    assert_eq!(ev_bytes("blob_pushed"), blob_bytes as f64);
    assert_eq!(ev("manifest_pushed"), 1.0);
    assert_eq!(ev_bytes("manifest_pushed"), manifest.len() as f64);
    assert!(ev("manifest_pulled") >= 1.0);
    assert!(ev("blob_pulled") >= 3.0 && ev_bytes("blob_pulled") >= blob_bytes as f64);
    assert_eq!(
        ev("blob_deleted") + ev("manifest_deleted") + ev("tag_deleted"),
        0.0
    );

    // Storage operations on the filesystem backend.
    let op = |name: &str| {
        m.sum(
            "berth_storage_operation_duration_seconds_count",
            &[("backend", "filesystem"), ("op", name)],
        )
    };
    assert!(
        op("upload_commit") >= 3.0,
        "commits: {}",
        op("upload_commit")
    );
    assert!(op("upload_append") >= 3.0);
    assert!(op("read") >= 3.0, "blob reads: {}", op("read"));
    assert_eq!(
        m.sum("berth_storage_errors_total", &[]),
        0.0,
        "no backend errors"
    );

    // Inventory: what was pushed, and no session left open.
    assert_eq!(m.one("berth_repositories", &[]), 1.0);
    assert_eq!(m.one("berth_manifests", &[]), 1.0);
    assert_eq!(m.one("berth_blobs", &[]), blobs.len() as f64);
    assert_eq!(m.one("berth_upload_sessions_active", &[]), 0.0);
    let info: Vec<_> = m.matching("berth_build_info", &[]).collect();
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].value, 1.0);
    assert!(
        info[0].labels.get("version").is_some_and(|v| !v.is_empty()),
        "{info:?}"
    );

    // The debug listener also serves health, and the main port does not serve metrics unless
    // `metrics.enabled` is set.
    let h = http::get(&format!("http://{debug_addr}/debug/health"), &[]);
    assert_eq!((h.status, h.json()), (200, serde_json::json!({})));
    let main = http::get(&format!("{}/metrics", s.url()), &[]);
    assert_eq!(main.status, 404, "{}", main.describe());
    // And the pulled image is the pushed one.
    let pulled = fs::read(t.join("out/manifest.json")).expect("pulled manifest");
    assert_eq!(pulled, manifest);
    assert_eq!(layer_digests(&img.layout.manifest("small")).len(), 2);
}

#[test]
fn metrics_on_the_main_port_when_enabled() {
    let s = berth(opts().env("REGISTRY_METRICS_ENABLED", "true"));
    let api = RawApi::new(s.url());
    api.push_blob_monolithic("obs/main", b"some bytes");
    let m = scrape(&format!("{}/metrics", s.url()));
    assert_eq!(
        m.one(
            "berth_http_requests_total",
            &[
                ("endpoint", "blob_upload"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        1.0
    );
    assert_eq!(m.one("berth_blobs", &[]), 1.0);
}

/// The access-log lines (JSON, target `berth::access`) written so far.
fn access_lines(s: &Server) -> Vec<Value> {
    s.log()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["target"] == "berth::access")
        .collect()
}

/// Waits for the access line of request `id` and returns it.
fn access_line(s: &Server, id: &str) -> Value {
    let mut found = None;
    eventually(Duration::from_secs(5), || {
        found = access_lines(s).into_iter().find(|v| v["request_id"] == id);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no access line for request {id}; log:\n{}", s.log()))
}

#[test]
fn request_ids_in_headers_and_json_access_log() {
    let s = berth(
        opts()
            .env("REGISTRY_LOG_FORMATTER", "json")
            .env("REGISTRY_LOG_FIELDS_SERVICE", "berth-e2e"),
    );
    let api = RawApi::new(s.url());
    let (digest, monolithic) = api.push_blob_monolithic("obs/ids", b"hello request ids");
    let (_, chunked) = api.push_blob_chunked("obs/ids", &[7u8; 3000], 1000);
    let mut responses: Vec<(&str, String, Response)> =
        vec![("POST", "/v2/obs/ids/blobs/uploads/".into(), monolithic)];
    let upload_path = location(&chunked[0]);
    for (i, r) in chunked.into_iter().enumerate() {
        let method = match i {
            0 => "POST",
            4 => "PUT",
            _ => "PATCH",
        };
        let path = if i == 0 {
            "/v2/obs/ids/blobs/uploads/".to_string()
        } else {
            upload_path.clone()
        };
        responses.push((method, path, r));
    }
    let blob_path = format!("/v2/obs/ids/blobs/{digest}");
    responses.push((
        "GET",
        blob_path.clone(),
        api.call("GET", &blob_path, &[], &[]),
    ));
    responses.push((
        "HEAD",
        blob_path.clone(),
        api.call("HEAD", &blob_path, &[], &[]),
    ));
    let missing = "/v2/obs/ids/manifests/nope";
    responses.push(("GET", missing.into(), api.call("GET", missing, &[], &[])));
    responses.push(("GET", "/v2/".into(), api.call("GET", "/v2/", &[], &[])));

    let mut ids = HashSet::new();
    for (method, path, r) in &responses {
        let id = r
            .header("x-request-id")
            .unwrap_or_else(|| panic!("{method} {path} has no X-Request-Id:\n{}", r.describe()));
        assert!(ids.insert(id.to_string()), "request id {id} reused");
        let line = access_line(&s, id);
        let got_path = line["path"].as_str().expect("path");
        assert!(
            got_path == path.split('?').next().unwrap(),
            "path {got_path} vs {path}: {line}"
        );
        assert_eq!(line["method"], *method, "{line}");
        assert_eq!(line["status"], u64::from(r.status), "{line}");
        assert_eq!(line["level"], "info", "{line}");
        assert_eq!(
            line["service"], "berth-e2e",
            "log.fields from the environment: {line}"
        );
        let remote = line["remote"].as_str().expect("remote");
        assert!(remote.starts_with("127.0.0.1:"), "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "{line}"
        );
        assert!(
            line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
    let not_found = &responses[responses.len() - 2].2;
    assert_eq!(not_found.status, 404);

    // A sane id from the client (nginx's $request_id, a trace id) is kept and logged.
    let r = api.call("GET", "/v2/", &[("X-Request-Id", "edge-7f3a.1:42_x")], &[]);
    assert_eq!(r.header("x-request-id"), Some("edge-7f3a.1:42_x"));
    assert_eq!(access_line(&s, "edge-7f3a.1:42_x")["path"], "/v2/");
    // One that could forge log content is replaced by a fresh id.
    let r = api.call("GET", "/v2/", &[("X-Request-Id", "two words\"}")], &[]);
    let id = r.header("x-request-id").expect("id").to_string();
    assert_ne!(id, "two words\"}");
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        "{id}"
    );
    access_line(&s, &id);
}

/// Polls `url` until it answers `status`; returns the response.
fn wait_status(url: &str, status: u16, limit: Duration) -> Response {
    let mut last = None;
    let ok = eventually(limit, || {
        let r = http::get(url, &[]);
        let hit = r.status == status;
        last = Some(r);
        hit
    });
    let last = last.expect("polled at least once");
    assert!(
        ok,
        "{url} never answered {status} within {limit:?}; last:\n{}",
        last.describe()
    );
    last
}

#[test]
fn health_flips_when_storage_is_unreadable_and_recovers() {
    let s = berth(
        opts()
            .env("REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL", "200ms")
            .env("REGISTRY_HEALTH_STORAGEDRIVER_THRESHOLD", "2")
            .run_as_nobody(),
    );
    let root = s.storage_dir();
    let (healthz, readyz, debug) = (
        format!("{}/healthz", s.url()),
        format!("{}/readyz", s.url()),
        format!("{}/debug/health", s.url()),
    );
    // Healthy, and the server really runs as nobody (it created its database as nobody).
    assert_eq!(http::get(&healthz, &[]).status, 200);
    assert_eq!(http::get(&readyz, &[]).status, 200);
    let d = http::get(&debug, &[]);
    assert_eq!((d.status, d.json()), (200, serde_json::json!({})));
    let db = root.join("berth-meta.sqlite");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&fs::metadata(&db).unwrap()),
        65534
    );

    fs::set_permissions(&root, fs::Permissions::from_mode(0o000)).expect("chmod 000");
    let r = wait_status(&readyz, 503, Duration::from_secs(10));
    let v = r.json();
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE", "{v}");
    assert!(v["errors"][0]["message"].is_string(), "{v}");
    let d = wait_status(&debug, 503, Duration::from_secs(10));
    let v = d.json();
    let msg = v["storagedriver_filesystem"]
        .as_str()
        .unwrap_or_else(|| panic!("registry:2 shape expected: {v}"));
    assert!(!msg.is_empty(), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    assert_eq!(
        http::get(&healthz, &[]).status,
        200,
        "alive while not ready"
    );

    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod back");
    wait_status(&readyz, 200, Duration::from_secs(10));
    let d = wait_status(&debug, 200, Duration::from_secs(10));
    assert_eq!(d.json(), serde_json::json!({}));
    // And it serves again without a restart.
    let api = RawApi::new(s.url());
    api.push_blob_monolithic("obs/health", b"after recovery");
}

#[test]
fn prefix_and_configured_headers() {
    let s = berth(
        opts()
            .extra_yaml("http:\n  prefix: /registry/\n  headers:\n    X-Content-Type-Options: [nosniff]\n    X-Berth-E2E: [prefixed]\n")
            .ready_path("/registry/v2/"),
    );
    let api = RawApi::new(s.url()).with_prefix("/registry");
    let mut all: Vec<(String, Response)> = Vec::new();
    let repo = "pre/fix";

    let config_bytes = br#"{"architecture":"amd64","os":"linux"}"#;
    let (config, r) = api.push_blob_monolithic(repo, config_bytes);
    assert!(
        location(&r).starts_with("/registry/v2/pre/fix/blobs/sha256:"),
        "{}",
        r.describe()
    );
    all.push(("monolithic".into(), r));
    let layer_bytes = vec![42u8; 5000];
    let (layer, rs) = api.push_blob_chunked(repo, &layer_bytes, 2000);
    for r in rs {
        assert!(
            location(&r).starts_with("/registry/v2/pre/fix/blobs/"),
            "{}",
            r.describe()
        );
        all.push(("chunked".into(), r));
    }
    let got = api.call("GET", &format!("/v2/{repo}/blobs/{layer}"), &[], &[]);
    assert_eq!(got.body, layer_bytes);
    all.push(("blob get".into(), got));

    let manifest = image_manifest(
        (&config, config_bytes.len()),
        &[(&layer, layer_bytes.len())],
    );
    for tag in ["t1", "t2", "t3"] {
        let r = api.put_manifest(repo, tag, OCI_MANIFEST, &manifest);
        assert!(
            location(&r).starts_with("/registry/v2/pre/fix/manifests/"),
            "{}",
            r.describe()
        );
        all.push((format!("put {tag}"), r));
    }
    // Pagination links stay below the prefix, and following one works.
    let page = api.call("GET", &format!("/v2/{repo}/tags/list?n=1"), &[], &[]);
    assert_eq!(page.json()["tags"], serde_json::json!(["t1"]));
    let link = page.header("link").expect("Link header").to_string();
    assert!(
        link.starts_with("</registry/v2/pre/fix/tags/list?"),
        "{link}"
    );
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    all.push(("tags page 1".into(), page));
    let page2 = api.at("GET", &next, &[], &[]);
    assert_eq!(
        page2.json()["tags"],
        serde_json::json!(["t2"]),
        "{}",
        page2.describe()
    );
    all.push(("tags page 2".into(), page2));

    // Outside the prefix: 404 with an OCI error body.
    for path in [
        "/v2/",
        "/v2/pre/fix/tags/list",
        "/registryx/v2/",
        "/other/v2/pre/fix/manifests/t1",
    ] {
        let r = http::get(&format!("{}{path}", s.url()), &[]);
        assert_eq!(r.status, 404, "{path}: {}", r.describe());
        let v = r.json();
        assert!(v["errors"][0]["code"].is_string(), "{path}: {v}");
        all.push((format!("outside {path}"), r));
    }
    all.push((
        "healthz".into(),
        http::get(&format!("{}/healthz", s.url()), &[]),
    ));

    for (what, r) in &all {
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}: {}",
            r.describe()
        );
        assert_eq!(
            r.header("x-berth-e2e"),
            Some("prefixed"),
            "{what}: {}",
            r.describe()
        );
        assert!(
            r.header("x-request-id").is_some(),
            "{what}: {}",
            r.describe()
        );
    }
}
