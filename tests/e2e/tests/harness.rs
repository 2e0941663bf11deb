//! The harness itself: fixtures have the promised shape, servers are isolated, and a SIGKILLed
//! server restarts on the same port with the same storage (the basis for crash tests).

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use berth_e2e::fixtures::BIG_SIZE;
use berth_e2e::{images, layer_digests, sha256_digest, Server, TestDir, OCI_INDEX};

#[test]
fn fixtures_have_the_promised_shape() {
    let img = images();
    let l = &img.layout;
    for (tag, arch, layers) in [
        ("small", "amd64", 2),
        ("arm", "arm64", 1),
        ("multi", "amd64", 3),
    ] {
        let m = l.manifest(tag);
        assert_eq!(layer_digests(&m).len(), layers, "{tag}: {m}");
        let cfg = l.blob_json(m["config"]["digest"].as_str().unwrap());
        assert_eq!(
            (cfg["architecture"].as_str(), cfg["os"].as_str()),
            (Some(arch), Some("linux")),
            "{tag}"
        );
        assert_eq!(
            sha256_digest(&l.manifest_bytes(tag)),
            l.digest(tag),
            "{tag} blob matches its digest"
        );
    }
    let big = l.manifest("multi")["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["size"].as_u64().unwrap())
        .max();
    assert!(
        big.unwrap() >= BIG_SIZE as u64,
        "multi has a >= 50 MiB layer"
    );
    let idx = l.manifest("idx");
    assert_eq!(idx["mediaType"], OCI_INDEX);
    let plats: Vec<(&str, &str)> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["digest"].as_str().unwrap(),
                e["platform"]["architecture"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        plats,
        [
            (l.digest("small").as_str(), "amd64"),
            (l.digest("arm").as_str(), "arm64")
        ]
    );
}

#[test]
fn servers_are_isolated() {
    let (a, b, t) = (
        Server::start(),
        Server::start(),
        TestDir::new("harness-iso"),
    );
    assert_ne!(a.port(), b.port());
    assert_ne!(a.storage_dir(), b.storage_dir());
    t.skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(images().reference("arm"))
        .arg(format!("docker://{}/iso/x:v1", a.addr()))
        .run();
    assert_eq!(a.get_manifest("iso/x", "v1").status, 200);
    assert_eq!(b.get_manifest("iso/x", "v1").status, 404);
}

#[test]
fn kill9_and_restart_keep_port_and_storage() {
    let (mut s, t, img) = (Server::start(), TestDir::new("harness-restart"), images());
    t.skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(img.reference("small"))
        .arg(format!("docker://{}/crash/x:v1", s.addr()))
        .run();
    let port = s.port();
    s.kill9();
    assert!(!s.is_running());
    assert!(
        berth_e2e::http::request("GET", &format!("{}/v2/", s.url()), &[], &[]).is_err(),
        "nothing listens after kill9"
    );
    s.restart();
    assert!(s.is_running());
    assert_eq!(s.port(), port);
    assert_eq!(
        sha256_digest(t.inspect_raw(&s, "crash/x:v1").as_bytes()),
        img.layout.digest("small")
    );
    assert_eq!(s.tags("crash/x").unwrap(), ["v1"]);
}
