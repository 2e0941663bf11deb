//! Webhooks from two real `berth serve` replicas sharing one PostgreSQL (a throwaway cluster from
//! `scripts/postgres`) and one storage directory, to one real HTTP receiver.
//!
//! Both replicas run a delivery task for the endpoint; the endpoint's lease in PostgreSQL lets
//! one of them deliver at a time. Checked: blobs pushed by six concurrent clients, three per
//! replica, arrive exactly once each, every client's events in the order it pushed them; and when
//! the replica holding the lease is killed (kill -9) while the receiver is failing, the other
//! replica delivers everything the dead one had queued, once, after its lease ran out, in outbox
//! order.
//!
//! Always runs Berth (`ServerOptions::pin_berth`): PostgreSQL metadata is Berth's.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_e2e::http;
use berth_e2e::prom;
use berth_e2e::raw::RawApi;
use berth_e2e::server::free_port;
use berth_e2e::webhook::{summarize, Receiver};
use berth_e2e::{workspace_root, Server, ServerOptions};
use serde_json::Value;

/// Bound for deliveries; a dead holder's lease lasts the endpoint timeout (1 s) plus 10 s.
const WAIT: Duration = Duration::from_secs(90);

/// A throwaway PostgreSQL cluster; stopped and removed on drop.
struct Postgres {
    dir: String,
    url: String,
}

impl Postgres {
    fn start(tmp: &Path) -> Postgres {
        let dir = tmp.join("pg").display().to_string();
        let out = Command::new(script())
            .args(["start", &dir])
            .output()
            .expect("run scripts/postgres");
        assert!(
            out.status.success(),
            "scripts/postgres start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Postgres { dir, url }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["stop", &self.dir]).output();
    }
}

fn script() -> PathBuf {
    workspace_root().join("scripts/postgres")
}

/// One replica: shared storage and database, one endpoint, metrics on its own debug port.
struct Replica {
    server: Server,
    api: RawApi,
    debug: String,
}

impl Replica {
    fn start(pg: &Postgres, storage: &Path, recv: &Receiver) -> Replica {
        let debug = format!("127.0.0.1:{}", free_port());
        let yaml = format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\ndatabase:\n  url: {}\n  \
             poolsize: 4\nnotifications:\n  endpoints:\n    - name: hook\n      url: {}\n      \
             timeout: 1s\n      threshold: 2\n      backoff: 200ms\n",
            storage.display(),
            pg.url,
            recv.url("/hook")
        );
        let server = Server::start_with(
            ServerOptions::default()
                .env("REGISTRY_HTTP_DEBUG_ADDR", &debug)
                .extra_yaml(&yaml)
                .pin_berth(),
        );
        let api = RawApi::new(server.url());
        Replica { server, api, debug }
    }

    fn push(&self, seed: &str) -> String {
        push(&self.api, seed)
    }

    fn failed_attempts(&self) -> f64 {
        let r = http::get(&format!("http://{}/metrics", self.debug), &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
        let m = prom::parse(&String::from_utf8_lossy(&r.body)).expect("valid exposition");
        m.sum("berth_notifications_failed_total", &[("endpoint", "hook")])
    }
}

/// Pushes one small blob; returns its digest (the event's target digest).
fn push(api: &RawApi, seed: &str) -> String {
    let data = format!("webhook replica blob {seed}").repeat(20);
    api.push_blob_monolithic("replicas/app", data.as_bytes()).0
}

fn digest_of(e: &Value) -> String {
    e["target"]["digest"].as_str().unwrap_or("").to_string()
}

/// Each pushed digest arrived exactly once.
#[track_caller]
fn assert_once(got: &[Value], pushed: &[String]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in got {
        *seen.entry(digest_of(e)).or_default() += 1;
    }
    let summary: Vec<String> = got.iter().map(summarize).collect();
    for d in pushed {
        assert_eq!(
            seen.get(d),
            Some(&1),
            "{d} not exactly once in {summary:#?}"
        );
    }
    assert_eq!(got.len(), pushed.len(), "unexpected events: {summary:#?}");
}

#[test]
fn two_replicas_deliver_each_event_once_and_take_over_from_a_dead_one() {
    let tmp = tempfile::Builder::new()
        .prefix("berth-e2e-hook-replicas.")
        .tempdir()
        .expect("temp dir");
    let pg = Postgres::start(tmp.path());
    let storage = tmp.path().join("storage");
    std::fs::create_dir_all(&storage).expect("storage dir");
    let recv = Receiver::start();
    let mut a = Replica::start(&pg, &storage, &recv);
    let mut b = Replica::start(&pg, &storage, &recv);

    // Three clients per replica push at once, so both replicas enqueue and both deliverers are
    // busy on the same queue the whole time: each event must still go out once.
    let streams: Vec<Vec<String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|w| {
                let api = if w % 2 == 0 {
                    a.api.clone()
                } else {
                    b.api.clone()
                };
                s.spawn(move || {
                    (0..25)
                        .map(|i| push(&api, &format!("both-{w}-{i}")))
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|t| t.join().expect("pushing client"))
            .collect()
    });
    let pushed: Vec<String> = streams.concat();
    recv.wait_events("/hook", pushed.len(), WAIT);
    // A graceful stop finishes the batch in flight, so nothing more can arrive afterwards.
    a.server.stop();
    b.server.stop();
    let got = recv.events("/hook");
    assert_once(&got, &pushed);
    // What one client pushed arrives in the order it pushed.
    let position: HashMap<String, usize> = got
        .iter()
        .enumerate()
        .map(|(i, e)| (digest_of(e), i))
        .collect();
    for (w, stream) in streams.iter().enumerate() {
        let at: Vec<usize> = stream.iter().map(|d| position[d]).collect();
        assert!(
            at.windows(2).all(|p| p[0] < p[1]),
            "client {w} out of order: {at:?}"
        );
    }

    // A alone, its receiver failing: A takes the lease and retries.
    recv.set_status(500);
    a.server.restart();
    let queued: Vec<String> = (0..5).map(|i| a.push(&format!("dead-{i}"))).collect();
    let deadline = Instant::now() + WAIT;
    while a.failed_attempts() < 1.0 {
        assert!(Instant::now() < deadline, "A never attempted a delivery");
        std::thread::sleep(Duration::from_millis(50));
    }
    // B comes up while A holds the lease; A dies; the receiver recovers.
    b.server.restart();
    a.server.kill9();
    recv.set_status(200);
    let later: Vec<String> = (0..3).map(|i| b.push(&format!("after-{i}"))).collect();
    let all: Vec<String> = pushed
        .iter()
        .chain(&queued)
        .chain(&later)
        .cloned()
        .collect();
    recv.wait_events("/hook", all.len(), WAIT);
    b.server.stop();
    let got = recv.events("/hook");
    assert_once(&got, &all);
    let tail: Vec<String> = got[pushed.len()..].iter().map(digest_of).collect();
    let want: Vec<String> = queued.iter().chain(&later).cloned().collect();
    assert_eq!(
        tail, want,
        "the dead replica's events first, in outbox order"
    );
}
