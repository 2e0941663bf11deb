//! Two `berth serve` replicas sharing one SeaweedFS (S3) and one PostgreSQL behind a real nginx
//! (round-robin, no stickiness, buffering off): the deployment of docs/deploy-ha.md, all on
//! loopback and started by the test.
//!
//! * skopeo pushes through nginx and pulls through each replica and through nginx, byte for byte;
//!   a chunked upload hops between the replicas on every request; a delete through one replica
//!   is a 404 through the other at once; tags and catalog agree everywhere.
//! * SeaweedFS killed during a push (between PATCHes, and in the middle of a streamed 48 MiB
//!   blob): the client gets OCI error JSON in bounded time, nothing half-written becomes
//!   visible, and after SeaweedFS restarts on the same port and data pushes and pulls work again
//!   without restarting Berth.
//! * SeaweedFS frozen (SIGSTOP: connections accepted, never answered) during a push and a
//!   pull: 503 `UNAVAILABLE` JSON within seconds (`storage.s3.requesttimeout`), and after
//!   SIGCONT the push completes and the digests match.
//! * PostgreSQL restarted under concurrent load: requests during the outage get 503
//!   `UNAVAILABLE` JSON (never a hang, a 500 or a dropped connection), every acknowledged tag
//!   push survives, and everything recovers without restarting Berth.
//!
//! Berth only (PostgreSQL metadata is a Berth feature), whatever `E2E_TARGET` says.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "replicas/cluster.rs"]
mod cluster;
#[path = "replicas/faults.rs"]
mod faults;
#[path = "replicas/stall.rs"]
mod stall;

use berth_e2e::http;
use berth_e2e::raw::{image_manifest, RawApi};
use berth_e2e::{assert_bytes_eq, images, layer_digests, random_bytes, sha256_digest, TestDir};
use cluster::{path_of, Cluster};

const MIB: usize = 1 << 20;

#[test]
fn skopeo_through_nginx_and_each_replica_sees_one_registry() {
    let c = Cluster::start();
    let (t, img) = (TestDir::new("replicas"), images());
    let m = img.layout.manifest("multi");

    // Push through the load balancer (the 50 MiB layer streams through nginx unbuffered).
    t.skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(img.reference("multi"))
        .arg(format!("docker://{}/ha/multi:v1", c.lb.addr()))
        .run();
    // Both replicas served requests of that push: no stickiness, yet one registry.
    let log = c.lb.access_log();
    for r in [&c.a, &c.b] {
        assert!(
            log.contains(&r.addr()),
            "no request reached {}:\n{log}",
            r.addr()
        );
    }

    // Pull through A, B and nginx: the same manifest bytes and the same layers.
    for (name, host) in [("a", c.a.addr()), ("b", c.b.addr()), ("lb", c.lb.addr())] {
        let raw = t
            .skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{host}/ha/multi:v1"))
            .run()
            .stdout;
        assert_eq!(
            sha256_digest(raw.as_bytes()),
            img.layout.digest("multi"),
            "{name}"
        );
        let dir = t.join(format!("pulled-{name}"));
        t.skopeo()
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{host}/ha/multi:v1"))
            .arg(format!("dir:{}", dir.display()))
            .run();
        for d in layer_digests(&m) {
            let got = std::fs::read(dir.join(d.trim_start_matches("sha256:"))).expect("layer");
            assert_bytes_eq(&got, &img.layout.blob(&d), &format!("{d} via {name}"));
        }
    }

    // A chunked upload whose requests alternate A, B, A, B and that completes on A.
    let (a, b) = (RawApi::new(c.a.url()), RawApi::new(c.b.url()));
    let layer = random_bytes(13 * MIB + 12_345);
    let digest = sha256_digest(&layer);
    let r = a.call("POST", "/v2/ha/chunked/blobs/uploads/", &[], &[]);
    assert_eq!(r.status, 202, "{}", r.describe());
    let mut loc = path_of(&r);
    let hops = [&b, &a, &b];
    let parts: Vec<&[u8]> = vec![
        &layer[..6 * MIB],
        &layer[6 * MIB..12 * MIB],
        &layer[12 * MIB..],
    ];
    let mut offset = 0;
    for (api, part) in hops.iter().zip(&parts) {
        let range = format!("{offset}-{}", offset + part.len() - 1);
        let r = api.at(
            "PATCH",
            &loc,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            part,
        );
        assert_eq!(
            r.status,
            202,
            "PATCH {range} on {}:\n{}",
            api.root,
            r.describe()
        );
        offset += part.len();
        assert_eq!(
            r.header("range"),
            Some(format!("0-{}", offset - 1).as_str())
        );
        loc = path_of(&r);
    }
    // Either replica reports the session's progress.
    let r = a.at("GET", &loc, &[], &[]);
    assert_eq!(r.status, 204, "{}", r.describe());
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", layer.len() - 1).as_str())
    );
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = a.at("PUT", &format!("{loc}{sep}digest={digest}"), &[], &[]);
    assert_eq!(r.status, 201, "{}", r.describe());
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let (cd, _) = b.push_blob_monolithic("ha/chunked", config);
    let manifest = image_manifest((&cd, config.len()), &[(&digest, layer.len())]);
    let lb = RawApi::new(c.lb.url());
    lb.put_manifest("ha/chunked", "v1", berth_e2e::OCI_MANIFEST, &manifest);
    for (name, api) in [("a", &a), ("b", &b), ("lb", &lb)] {
        let r = api.call("GET", &format!("/v2/ha/chunked/blobs/{digest}"), &[], &[]);
        assert_eq!(r.status, 200, "{name}: {}", r.describe());
        assert_bytes_eq(&r.body, &layer, &format!("chunked layer via {name}"));
        let r = api.call(
            "GET",
            "/v2/ha/chunked/manifests/v1",
            &[("Accept", berth_e2e::OCI_MANIFEST)],
            &[],
        );
        assert_eq!(r.status, 200, "{name}: {}", r.describe());
        assert_eq!(r.body, manifest, "manifest via {name}");
    }

    // Tags and catalog agree on both replicas and through nginx.
    lb.put_manifest("ha/chunked", "v2", berth_e2e::OCI_MANIFEST, &manifest);
    for s in [&c.a, &c.b] {
        assert_eq!(s.tags("ha/chunked"), Some(vec!["v1".into(), "v2".into()]));
        assert_eq!(s.tags("ha/multi"), Some(vec!["v1".into()]));
        assert_eq!(s.catalog(), ["ha/chunked", "ha/multi"]);
    }
    let r = http::get(&format!("{}/v2/_catalog", c.lb.url()), &[]);
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["ha/chunked", "ha/multi"])
    );

    // A delete through A is a 404 through B at once: the manifest (both tags go with it)…
    let md = sha256_digest(&manifest);
    let r = a.call(
        "DELETE",
        &format!("/v2/ha/chunked/manifests/{md}"),
        &[],
        &[],
    );
    assert_eq!(r.status, 202, "{}", r.describe());
    for reference in ["v1", "v2", md.as_str()] {
        assert_eq!(
            c.b.get_manifest("ha/chunked", reference).status,
            404,
            "{reference}"
        );
    }
    let tags = c.b.tags("ha/chunked");
    assert!(tags.as_ref().is_none_or(Vec::is_empty), "{tags:?}");
    assert_eq!(c.a.tags("ha/chunked"), tags);
    // …and a blob.
    let r = a.call(
        "DELETE",
        &format!("/v2/ha/chunked/blobs/{digest}"),
        &[],
        &[],
    );
    assert_eq!(r.status, 202, "{}", r.describe());
    assert_eq!(c.b.blob_status("ha/chunked", &digest), 404);
    let r = b.call("GET", &format!("/v2/ha/chunked/blobs/{digest}"), &[], &[]);
    assert_eq!(r.status, 404, "{}", r.describe());
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UNKNOWN");
    // The other image is untouched everywhere.
    assert_eq!(c.b.get_manifest("ha/multi", "v1").status, 200);
    assert_eq!(c.a.get_manifest("ha/multi", "v1").status, 200);
}
