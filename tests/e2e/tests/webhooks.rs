//! registry:2 webhooks from the real `berth` binary to a real HTTP receiver in the test.
//!
//! Two endpoints: `all` gets every event, `filtered` ignores pulls, mounts and blob media types.
//! The test checks the exact events (action, target, request, source) and the envelope (media
//! type, configured `Authorization`), then the delivery guarantees: a receiver answering 500 and
//! then stopped gets every missed event in order, without duplicates, once it is back; events
//! queued while it is down survive a graceful restart (SIGTERM) and a kill -9 of the registry.
//!
//! Always runs Berth (`ServerOptions::pin_berth`): the outage phases read Berth's notification metrics.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::HashSet;
use std::time::Duration;

use berth_e2e::fixtures::sha256_digest;
use berth_e2e::http::{self, Response};
use berth_e2e::prom;
use berth_e2e::raw::{image_manifest, RawApi};
use berth_e2e::server::free_port;
use berth_e2e::webhook::{summarize, Receiver};
use berth_e2e::{Server, ServerOptions, OCI_MANIFEST};
use serde_json::Value;

const UA: &str = "berth-e2e-webhooks/1.0";
const ENVELOPE: &str = "application/vnd.docker.distribution.events.v1+json";
const OCTET: &str = "application/octet-stream";
const AUTH_ALL: &str = "Bearer e2e-token-all";
const AUTH_FILTERED: &str = "Bearer e2e-token-filtered";
/// Generous bound for a delivery after the receiver comes back (backoff is at most a few
/// seconds in these phases).
const WAIT: Duration = Duration::from_secs(30);

/// One expected event.
#[derive(Debug, Clone, Default)]
struct Want {
    action: &'static str,
    repo: String,
    tag: String,
    digest: String,
    media_type: String,
    size: u64,
    from: String,
    /// `blobs` or `manifests` when the target carries a URL.
    url_kind: &'static str,
    method: &'static str,
    request_id: String,
}

impl Want {
    fn new(action: &'static str, method: &'static str, repo: &str, r: &Response) -> Want {
        Want {
            action,
            method,
            repo: repo.into(),
            request_id: r
                .header("x-request-id")
                .unwrap_or_else(|| panic!("no X-Request-Id:\n{}", r.describe()))
                .into(),
            ..Want::default()
        }
    }

    /// Whether the `filtered` endpoint gets it.
    fn passes_filter(&self) -> bool {
        !matches!(self.action, "pull" | "mount") && self.media_type != OCTET
    }
}

/// The registry, the API client and the expectations so far.
struct Harness {
    server: Server,
    api: RawApi,
    debug: String,
    wants: Vec<Want>,
}

impl Harness {
    fn start(recv: &Receiver) -> Harness {
        let debug = format!("127.0.0.1:{}", free_port());
        let yaml = format!(
            "notifications:
  endpoints:
    - name: all
      url: {all}
      headers:
        Authorization: [\"{AUTH_ALL}\"]
        X-Hook: [all]
      timeout: 1s
      threshold: 3
      backoff: 200ms
    - name: filtered
      url: {filtered}
      headers:
        Authorization: [\"{AUTH_FILTERED}\"]
      timeout: 1s
      threshold: 3
      backoff: 200ms
      ignoredmediatypes: [{OCTET}]
      ignore:
        actions: [pull, mount]
    - name: off
      disabled: true
      url: {off}
",
            all = recv.url("/all"),
            filtered = recv.url("/filtered"),
            off = recv.url("/off"),
        );
        let server = Server::start_with(
            ServerOptions::default()
                .env("REGISTRY_HTTP_DEBUG_ADDR", &debug)
                .extra_yaml(&yaml)
                .pin_berth(),
        );
        let api = RawApi::new(server.url()).with_header("User-Agent", UA);
        Harness {
            server,
            api,
            debug,
            wants: Vec::new(),
        }
    }

    fn metrics(&self) -> prom::Exposition {
        let r = http::get(&format!("http://{}/metrics", self.debug), &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
        prom::parse(&String::from_utf8_lossy(&r.body)).expect("valid exposition")
    }

    /// Polls the metrics until `f` holds (bounded).
    #[track_caller]
    fn wait_metrics(&self, what: &str, f: impl Fn(&prom::Exposition) -> bool) {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let m = self.metrics();
            if f(&m) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "metrics never showed {what}: {:?}",
                m.samples
                    .iter()
                    .filter(|s| s.name.starts_with("berth_notifications"))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pending(m: &prom::Exposition, endpoint: &str) -> f64 {
        m.sum("berth_notifications_pending", &[("endpoint", endpoint)])
    }

    /// Monolithic blob push: one `push` event from the POST.
    fn push_blob(&mut self, repo: &str, data: &[u8]) -> String {
        let (digest, r) = self.api.push_blob_monolithic(repo, data);
        self.wants.push(Want {
            digest: digest.clone(),
            media_type: OCTET.into(),
            size: data.len() as u64,
            url_kind: "blobs",
            ..Want::new("push", "POST", repo, &r)
        });
        digest
    }

    /// Chunked blob push: one `push` event from the final PUT (none for POST or PATCH).
    fn push_blob_chunked(&mut self, repo: &str, data: &[u8]) -> String {
        let (digest, rs) = self
            .api
            .push_blob_chunked(repo, data, data.len().div_ceil(2));
        self.wants.push(Want {
            digest: digest.clone(),
            media_type: OCTET.into(),
            size: data.len() as u64,
            url_kind: "blobs",
            ..Want::new("push", "PUT", repo, rs.last().expect("responses"))
        });
        digest
    }

    /// Config + layer + manifest by tag; returns the manifest bytes and digest.
    fn push_image(&mut self, repo: &str, tag: &str, seed: &str) -> (Vec<u8>, String) {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"{seed}\"}}");
        let layer = format!("layer bytes for {seed}").repeat(50);
        let c = self.push_blob(repo, config.as_bytes());
        let l = self.push_blob_chunked(repo, layer.as_bytes());
        let manifest = image_manifest((&c, config.len()), &[(&l, layer.len())]);
        let r = self.api.put_manifest(repo, tag, OCI_MANIFEST, &manifest);
        let digest = sha256_digest(&manifest);
        self.wants.push(Want {
            tag: tag.into(),
            digest: digest.clone(),
            media_type: OCI_MANIFEST.into(),
            size: manifest.len() as u64,
            url_kind: "manifests",
            ..Want::new("push", "PUT", repo, &r)
        });
        (manifest, digest)
    }

    fn pull_manifest(&mut self, repo: &str, tag: &str, manifest: &[u8]) {
        let r = self.api.call(
            "GET",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Accept", OCI_MANIFEST)],
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.body, manifest);
        self.wants.push(Want {
            tag: tag.into(),
            digest: sha256_digest(manifest),
            media_type: OCI_MANIFEST.into(),
            size: manifest.len() as u64,
            url_kind: "manifests",
            ..Want::new("pull", "GET", repo, &r)
        });
    }

    fn pull_blob(&mut self, repo: &str, digest: &str) {
        let r = self
            .api
            .call("GET", &format!("/v2/{repo}/blobs/{digest}"), &[], &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
        self.wants.push(Want {
            digest: digest.into(),
            media_type: OCTET.into(),
            size: r.body.len() as u64,
            url_kind: "blobs",
            ..Want::new("pull", "GET", repo, &r)
        });
    }

    /// Requests that must not produce events: HEADs, a 404, a catalog listing. (registry:2 also
    /// sends `pull` events for HEAD requests; Berth sends them only for GETs that return content,
    /// as documented in docs/operations.md.)
    fn no_event_requests(&self, repo: &str, blob: &str) {
        for (m, p) in [
            ("HEAD", format!("/v2/{repo}/blobs/{blob}")),
            ("HEAD", format!("/v2/{repo}/manifests/v1")),
            ("GET", format!("/v2/{repo}/manifests/missing")),
            ("GET", "/v2/_catalog".to_string()),
            ("GET", format!("/v2/{repo}/tags/list")),
        ] {
            self.api.call(m, &p, &[("Accept", OCI_MANIFEST)], &[]);
        }
    }

    /// Checks everything `recv` got: envelopes and the exact events of both endpoints.
    fn check(&self, recv: &Receiver) {
        check_envelopes(recv);
        let all = recv.events("/all");
        self.check_events("all", &all, self.wants.iter().collect());
        let filtered = recv.events("/filtered");
        let want_f: Vec<&Want> = self.wants.iter().filter(|w| w.passes_filter()).collect();
        self.check_events("filtered", &filtered, want_f);
        assert!(
            recv.events("/off").is_empty(),
            "disabled endpoint got events"
        );
    }

    fn check_events(&self, endpoint: &str, got: &[Value], want: Vec<&Want>) {
        let summary: Vec<String> = got.iter().map(summarize).collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{endpoint}: got {summary:#?}\nwant {:#?}",
            want.iter()
                .map(|w| (w.action, &w.repo, &w.tag))
                .collect::<Vec<_>>()
        );
        let mut ids = HashSet::new();
        for (i, (e, w)) in got.iter().zip(want).enumerate() {
            let ctx = format!("{endpoint} event {i}: {e:#}");
            let id = e["id"].as_str().expect("event id");
            assert!(ids.insert(id.to_string()), "duplicate event id: {ctx}");
            self.check_event(e, w, &ctx);
        }
    }

    fn check_event(&self, e: &Value, w: &Want, ctx: &str) {
        let t = &e["target"];
        let opt_str = |v: &Value| v.as_str().unwrap_or("").to_string();
        let opt_num = |v: &Value| v.as_u64().unwrap_or(0);
        assert_eq!(e["action"], w.action, "{ctx}");
        assert_eq!(t["repository"], w.repo.as_str(), "{ctx}");
        assert_eq!(opt_str(&t["tag"]), w.tag, "{ctx}");
        assert_eq!(opt_str(&t["digest"]), w.digest, "{ctx}");
        assert_eq!(opt_str(&t["mediaType"]), w.media_type, "{ctx}");
        assert_eq!(
            (opt_num(&t["size"]), opt_num(&t["length"])),
            (w.size, w.size),
            "{ctx}"
        );
        assert_eq!(opt_str(&t["fromRepository"]), w.from, "{ctx}");
        let url = match w.url_kind {
            "" => String::new(),
            kind => format!("{}/v2/{}/{kind}/{}", self.server.url(), w.repo, w.digest),
        };
        assert_eq!(opt_str(&t["url"]), url, "{ctx}");
        let r = &e["request"];
        assert_eq!(r["id"], w.request_id.as_str(), "{ctx}");
        assert_eq!(r["method"], w.method, "{ctx}");
        assert_eq!(r["useragent"], UA, "{ctx}");
        assert_eq!(r["host"], self.server.addr().as_str(), "{ctx}");
        assert!(opt_str(&r["addr"]).starts_with("127.0.0.1:"), "{ctx}");
        assert_eq!(e["actor"], serde_json::json!({}), "anonymous: {ctx}");
        assert!(!opt_str(&e["source"]["instanceID"]).is_empty(), "{ctx}");
        assert_eq!(e["source"]["addr"], self.server.addr().as_str(), "{ctx}");
        let ts = opt_str(&e["timestamp"]);
        assert!(
            ts.len() > 20 && ts.ends_with('Z') && ts.contains('T'),
            "{ctx}"
        );
    }
}

/// Every POST carries the envelope type and its endpoint's headers.
fn check_envelopes(recv: &Receiver) {
    let posts = recv.posts();
    assert!(!posts.is_empty());
    for p in posts {
        assert_eq!(p.method, "POST");
        assert_eq!(p.header("content-type"), Some(ENVELOPE), "{p:?}");
        let (auth, hook) = match p.path.as_str() {
            "/all" => (AUTH_ALL, Some("all")),
            "/filtered" => (AUTH_FILTERED, None),
            other => panic!("POST to unexpected path {other}"),
        };
        assert_eq!(p.header("authorization"), Some(auth), "{}", p.path);
        assert_eq!(p.header("x-hook"), hook, "{}", p.path);
        assert!(!p.events().is_empty(), "empty envelope");
    }
}

/// Waits until both endpoints got everything expected so far, then checks it all.
fn delivered(h: &Harness, recv: &Receiver) {
    recv.wait_events("/all", h.wants.len(), WAIT);
    let nf = h.wants.iter().filter(|w| w.passes_filter()).count();
    recv.wait_events("/filtered", nf, WAIT);
    h.check(recv);
}

#[test]
fn webhook_events_and_delivery_guarantees() {
    let mut recv = Receiver::start();
    let mut h = Harness::start(&recv);

    // 1. The exact events of each kind of operation.
    let (manifest, digest) = h.push_image("hooks/a", "v1", "one");
    let layer = h.wants[1].digest.clone();
    h.pull_manifest("hooks/a", "v1", &manifest);
    h.pull_blob("hooks/a", &layer);
    h.no_event_requests("hooks/a", &layer);
    let r = h.api.call(
        "POST",
        &format!("/v2/hooks/b/blobs/uploads/?mount={layer}&from=hooks/a"),
        &[],
        &[],
    );
    assert_eq!(r.status, 201, "mount: {}", r.describe());
    h.wants.push(Want {
        digest: layer.clone(),
        media_type: OCTET.into(),
        size: h.wants[1].size,
        from: "hooks/a".into(),
        url_kind: "blobs",
        ..Want::new("mount", "POST", "hooks/b", &r)
    });
    let r = h.api.call("DELETE", "/v2/hooks/a/manifests/v1", &[], &[]);
    assert_eq!(r.status, 202, "tag delete: {}", r.describe());
    h.wants.push(Want {
        tag: "v1".into(),
        ..Want::new("delete", "DELETE", "hooks/a", &r)
    });
    let r = h.api.call(
        "DELETE",
        &format!("/v2/hooks/a/manifests/{digest}"),
        &[],
        &[],
    );
    assert_eq!(r.status, 202, "manifest delete: {}", r.describe());
    h.wants.push(Want {
        digest: digest.clone(),
        url_kind: "manifests",
        ..Want::new("delete", "DELETE", "hooks/a", &r)
    });
    delivered(&h, &recv);
    let first_instance = recv.events("/all")[0]["source"]["instanceID"].clone();

    // 2. The receiver fails (500), then goes away: events wait, metrics say so, and they all
    // arrive in order, once, when it is back.
    recv.set_status(500);
    let (m2, _) = h.push_image("hooks/c", "v1", "two");
    h.wait_metrics("a failed delivery", |m| {
        m.sum("berth_notifications_failed_total", &[("endpoint", "all")]) > 0.0
    });
    assert!(recv.posts().iter().any(|p| p.status == 500));
    recv.stop();
    h.pull_manifest("hooks/c", "v1", &m2);
    let n_all = h.wants.len() - recv.events("/all").len();
    h.wait_metrics("pending events while the receiver is down", |m| {
        Harness::pending(m, "all") >= n_all as f64 && Harness::pending(m, "filtered") >= 1.0
    });
    recv.set_status(200);
    recv.start_again();
    delivered(&h, &recv);
    h.wait_metrics("an empty queue after delivery", |m| {
        Harness::pending(m, "all") == 0.0 && Harness::pending(m, "filtered") == 0.0
    });

    // 3. Queued while the receiver is down, then a graceful restart of the registry.
    recv.stop();
    h.push_image("hooks/d", "v1", "three");
    h.server.stop();
    h.server.restart();
    recv.start_again();
    delivered(&h, &recv);

    // 4. Queued while the receiver is down, persisted, then kill -9.
    recv.stop();
    h.push_image("hooks/e", "v1", "four");
    h.wait_metrics("the new events persisted in the outbox", |m| {
        Harness::pending(m, "all") == 3.0 && Harness::pending(m, "filtered") == 1.0
    });
    h.server.kill9();
    h.server.restart();
    recv.start_again();
    delivered(&h, &recv);
    let last = recv.events("/all").last().cloned().expect("events");
    assert_ne!(
        last["source"]["instanceID"], first_instance,
        "the restarted registry has a new instance id"
    );
}
