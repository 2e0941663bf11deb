//! A stalled S3 endpoint: SeaweedFS frozen with SIGSTOP keeps accepting connections (the kernel
//! does that) and never answers. Small storage requests have a total limit
//! (`storage.s3.requesttimeout`, 5 s by default), so pushes and pulls get 503 `UNAVAILABLE` in
//! seconds, not after the 60 s idle timeout; after SIGCONT everything works again.

use std::fs;
use std::time::{Duration, Instant};

use berth_e2e::http::Response;
use berth_e2e::raw::{image_manifest, RawApi};
use berth_e2e::{assert_bytes_eq, random_bytes, sha256_digest, OCI_MANIFEST};

use super::cluster::{path_of, Cluster};
use super::MIB;

/// How long a request may take to fail while storage is stalled: a correctness bound (the
/// request must not wait for the 60 s idle timeout), not a performance assertion.
const BOUND: Duration = Duration::from_secs(15);

/// A frozen process, thawed (SIGCONT) when dropped, panics included; the cluster's own drop
/// then kills it as usual.
struct Frozen {
    pid: libc::pid_t,
}

impl Frozen {
    fn freeze(pid: libc::pid_t) -> Frozen {
        signal(pid, libc::SIGSTOP);
        Frozen { pid }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.pid, libc::SIGCONT);
    }
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid this test started (found by its unique port) and a signal.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// The pid of the `weed server` whose S3 gateway listens at `endpoint` (a port this test picked).
fn weed_pid(endpoint: &str) -> libc::pid_t {
    let port = endpoint.rsplit(':').next().unwrap_or_default();
    let arg = format!("-s3.port={port}");
    let found = fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .find(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
        });
    found.unwrap_or_else(|| panic!("no weed process with {arg}"))
}

/// Sends a request and checks it failed with 503 `UNAVAILABLE` OCI JSON naming storage, within
/// [`BOUND`]; returns how long it took.
#[track_caller]
fn expect_unavailable(what: &str, send: impl FnOnce() -> Response) -> Duration {
    let started = Instant::now();
    let r = send();
    let took = started.elapsed();
    eprintln!("{what}: {} after {took:?}", r.status);
    assert_eq!(r.status, 503, "{what}:\n{}", r.describe());
    let v = r.json();
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE", "{what}");
    let msg = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("storage"), "{what}: {msg:?}");
    assert!(took < BOUND, "{what} took {took:?}");
    took
}

/// The upload's stored size (`Range: 0-<n-1>` of a status GET), retrying (bounded) while
/// SeaweedFS catches up after SIGCONT.
fn stored_size(api: &RawApi, loc: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.at("GET", loc, &[], &[]);
        if r.status == 204 {
            let range = r.header("range").unwrap_or("0-0");
            let end: usize = range
                .rsplit('-')
                .next()
                .and_then(|e| e.parse().ok())
                .unwrap_or(0);
            return if range == "0-0" { 0 } else { end + 1 };
        }
        assert!(
            Instant::now() < deadline,
            "no upload status:\n{}",
            r.describe()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// PATCHes `data[from..]` onto the upload at `loc`; returns the next `Location`.
fn patch_from(api: &RawApi, loc: &str, data: &[u8], from: usize) -> String {
    let range = format!("{from}-{}", data.len() - 1);
    let r = api.at("PATCH", loc, &[("Content-Range", &range)], &data[from..]);
    assert_eq!(r.status, 202, "PATCH {range}:\n{}", r.describe());
    path_of(&r)
}

#[test]
fn stalled_seaweedfs_answers_503_within_seconds_and_recovers() {
    let mut c = Cluster::start();
    let (a, b, lb) = (
        RawApi::new(c.a.url()),
        RawApi::new(c.b.url()),
        RawApi::new(c.lb.url()),
    );
    let pid = weed_pid(&c.weed.endpoint());
    let pids = (c.a.pid(), c.b.pid());
    // Stored before the stall: a blob to pull during it.
    let seed = random_bytes(300_000);
    let (seed_digest, _) = lb.push_blob_monolithic("ha/stall", &seed);
    // A chunked push whose first PATCH lands before the stall.
    let layer = random_bytes(6 * MIB + 4321);
    let digest = sha256_digest(&layer);
    let r = a.call("POST", "/v2/ha/stall/blobs/uploads/", &[], &[]);
    assert_eq!(r.status, 202, "{}", r.describe());
    let first = 2 * MIB;
    let range = format!("0-{}", first - 1);
    let r = b.at(
        "PATCH",
        &path_of(&r),
        &[("Content-Range", &range)],
        &layer[..first],
    );
    assert_eq!(r.status, 202, "{}", r.describe());
    let loc = path_of(&r);

    let frozen = Frozen::freeze(pid);
    let mut took = Vec::new();
    // Push: the next PATCH (it reads the session state first), a new upload, a commit. The
    // PATCH is small enough for the socket buffers: Berth answers before reading the body.
    let next = first + 64 * 1024;
    let range = format!("{first}-{}", next - 1);
    took.push(expect_unavailable("PATCH while stalled", || {
        a.at(
            "PATCH",
            &loc,
            &[("Content-Range", &range)],
            &layer[first..next],
        )
    }));
    took.push(expect_unavailable("POST upload while stalled", || {
        lb.call("POST", "/v2/ha/stall/blobs/uploads/", &[], &[])
    }));
    let sep = if loc.contains('?') { '&' } else { '?' };
    let commit = format!("{loc}{sep}digest={digest}");
    took.push(expect_unavailable("PUT ?digest while stalled", || {
        b.at("PUT", &commit, &[], &[])
    }));
    // Pull: a stored blob through each replica.
    let blob = format!("/v2/ha/stall/blobs/{seed_digest}");
    took.push(expect_unavailable("blob GET via A while stalled", || {
        a.call("GET", &blob, &[], &[])
    }));
    took.push(expect_unavailable(
        "blob GET via nginx while stalled",
        || lb.call("GET", &blob, &[], &[]),
    ));
    eprintln!("503s while stalled came after {took:?}");
    drop(frozen);

    // SIGCONT: the same session continues from what it stored (a PATCH that timed out on our
    // side may still have been applied by SeaweedFS once thawed) and completes.
    let stored = stored_size(&b, &loc);
    assert!(stored == first || stored == next, "stored {stored}");
    let loc = patch_from(&a, &loc, &layer, stored);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = b.at("PUT", &format!("{loc}{sep}digest={digest}"), &[], &[]);
    assert_eq!(r.status, 201, "commit after SIGCONT:\n{}", r.describe());
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let (cd, _) = lb.push_blob_monolithic("ha/stall", config);
    let manifest = image_manifest((&cd, config.len()), &[(&digest, layer.len())]);
    lb.put_manifest("ha/stall", "v1", OCI_MANIFEST, &manifest);
    for (name, api) in [("a", &a), ("b", &b), ("lb", &lb)] {
        let r = api.call("GET", &format!("/v2/ha/stall/blobs/{digest}"), &[], &[]);
        assert_eq!(r.status, 200, "{name}: {}", r.describe());
        assert_eq!(sha256_digest(&r.body), digest, "layer via {name}");
        let r = api.call("GET", &blob, &[], &[]);
        assert_eq!(r.status, 200, "{name}: {}", r.describe());
        assert_bytes_eq(&r.body, &seed, &format!("seed blob via {name}"));
        let r = api.call(
            "GET",
            "/v2/ha/stall/manifests/v1",
            &[("Accept", OCI_MANIFEST)],
            &[],
        );
        assert_eq!(r.status, 200, "{name}: {}", r.describe());
        assert_eq!(sha256_digest(&r.body), sha256_digest(&manifest), "{name}");
    }
    assert!(c.a.is_running() && c.b.is_running());
    assert_eq!((c.a.pid(), c.b.pid()), pids, "no replica restarted");
}
