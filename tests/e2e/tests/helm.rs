//! Helm v4 via helm-python-sdk: package a chart, push two versions to `oci://HOST/helm`, list
//! tags, resolve, pull a version and compare the .tgz bytes. The checks live in
//! `py/helm_e2e.py`; this file runs it and cross-checks the end state over HTTP.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use berth_e2e::{run_python, sha256_digest, Server, TestDir, OCI_MANIFEST};

#[test]
fn helm_python_sdk() {
    let (s, t) = (Server::start(), TestDir::new("helm"));
    let workdir = t.path().to_str().expect("utf-8 temp path");
    let out = run_python("helm_e2e.py", &[&s.addr(), workdir], t.path());
    assert!(
        out.stdout.contains("helm e2e: all checks passed"),
        "{}",
        out.describe()
    );

    assert_eq!(s.tags("helm/e2echart").unwrap(), ["0.1.0", "0.2.0"]);
    let packaged = std::fs::read(t.join("dist/e2echart-0.2.0.tgz")).expect("packaged chart");
    let m = s.get_manifest("helm/e2echart", "0.2.0");
    assert_eq!(
        m.header("content-type"),
        Some(OCI_MANIFEST),
        "{}",
        m.describe()
    );
    let layer = m.json()["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_string();
    assert_eq!(layer, sha256_digest(&packaged));
    let blob = berth_e2e::http::get(&format!("{}/v2/helm/e2echart/blobs/{layer}", s.url()), &[]);
    assert_eq!(blob.status, 200, "{}", blob.describe());
    berth_e2e::assert_bytes_eq(&blob.body, &packaged, "chart blob");
}
