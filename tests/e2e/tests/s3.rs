//! The registry on S3 storage: a SeaweedFS started by the test (`berth_storage::seaweedfs`),
//! registry:2's `storage.s3` keys in config.yml. skopeo pushes an image with a 50 MiB layer
//! (ten 5 MiB parts, assembled by a multipart upload at commit) and pulls it back through
//! 307 redirects to presigned SeaweedFS URLs; with `storage.redirect.disable` the registry
//! serves the bytes itself. Runs against Distribution 2.8.2 too (`E2E_TARGET=distribution`).

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use berth_e2e::fixtures::BIG_SIZE;
use berth_e2e::http;
use berth_e2e::{assert_bytes_eq, images, layer_digests, sha256_digest, Server, TestDir};
use berth_storage::seaweedfs::{SeaweedFs, ACCESS_KEY, SECRET_KEY};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The `storage:` section for `bucket` on `weed` under `root`.
fn s3_storage(weed: &SeaweedFs, bucket: &str, root: &str, redirect_disabled: bool) -> String {
    format!(
        "  s3:\n    accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    region: us-east-1\n    regionendpoint: {}\n    bucket: {bucket}\n    rootdirectory: /{root}\n    forcepathstyle: true\n    chunksize: 5242880\n  delete:\n    enabled: true\n  redirect:\n    disable: {redirect_disabled}\n",
        weed.endpoint()
    )
}

#[test]
fn skopeo_push_and_pull_on_s3_with_and_without_redirects() {
    let rt = runtime();
    let weed = rt.block_on(SeaweedFs::start());
    rt.block_on(weed.backend("registry"));
    let (t, img) = (TestDir::new("s3"), images());
    let m = img.layout.manifest("multi");
    let big = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|l| l["size"].as_u64().unwrap_or(0) >= BIG_SIZE as u64)
        .and_then(|l| l["digest"].as_str())
        .expect("a layer of at least 50 MiB")
        .to_string();

    // redirects on (registry:2's default)
    let s = Server::start_with_storage(Some(&s3_storage(&weed, "registry", "a", false)));
    t.skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(img.reference("multi"))
        .arg(format!("docker://{}/s3/big:v1", s.addr()))
        .run();
    let manifest = t.inspect_raw(&s, "s3/big:v1");
    assert_eq!(
        sha256_digest(manifest.as_bytes()),
        img.layout.digest("multi")
    );

    let blob_url = format!("{}/v2/s3/big/blobs/{big}", s.url());
    let r = http::get(&blob_url, &[]);
    assert_eq!(r.status, 307, "{}", r.describe());
    let location = r.header("location").expect("Location").to_string();
    assert!(location.starts_with(&weed.endpoint()), "{location}");
    let direct = http::get(&location, &[]);
    assert_eq!(direct.status, 200, "presigned GET: {}", direct.describe());
    assert_bytes_eq(&direct.body, &img.layout.blob(&big), "50 MiB layer from S3");
    let ranged = http::get(&location, &[("Range", "bytes=5242870-5242889")]);
    assert_eq!(ranged.status, 206);
    assert_bytes_eq(
        &ranged.body,
        &img.layout.blob(&big)[5242870..5242890],
        "range",
    );

    // skopeo follows the redirects for every layer
    let dir = t.join("pulled");
    t.skopeo()
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/s3/big:v1", s.addr()))
        .arg(format!("dir:{}", dir.display()))
        .run();
    for d in layer_digests(&m) {
        let hex = d.trim_start_matches("sha256:");
        let got = std::fs::read(dir.join(hex)).expect("pulled blob");
        assert_eq!(sha256_digest(&got), d, "pulled layer");
    }
    if s.target() == berth_e2e::Target::Berth {
        let post = http::request(
            "POST",
            &format!("{}/v2/s3/x/blobs/uploads/", s.url()),
            &[],
            &[],
        )
        .expect("POST upload");
        assert_eq!(post.status, 202, "{}", post.describe());
        assert_eq!(post.header("oci-chunk-min-length"), Some("5242880"));
    }
    drop(s);

    // redirects off: the registry streams the blob itself, from the same kind of bucket
    let s = Server::start_with_storage(Some(&s3_storage(&weed, "registry", "b", true)));
    t.skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(img.reference("multi"))
        .arg(format!("docker://{}/s3/big:v1", s.addr()))
        .run();
    let r = http::get(&format!("{}/v2/s3/big/blobs/{big}", s.url()), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_bytes_eq(
        &r.body,
        &img.layout.blob(&big),
        "50 MiB layer through the registry",
    );
}
