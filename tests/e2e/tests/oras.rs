//! The ORAS Python SDK (oras 0.2.43): artifacts with artifactType, a 20 MiB file, a chunked
//! push, pull and byte-compare, referrers with `subject` (OCI-Subject header, the referrers
//! API and its artifactType filter), tag deletion. The checks live in `py/oras_e2e.py`; this
//! file runs it and cross-checks the end state over HTTP.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use berth_e2e::{run_python, target_supports_referrers, Server, TestDir, OCI_INDEX};

#[test]
fn oras_python_sdk() {
    let (s, t) = (Server::start(), TestDir::new("oras"));
    let referrers = if target_supports_referrers() {
        "yes"
    } else {
        "no"
    };
    let workdir = t.path().to_str().expect("utf-8 temp path");
    let out = run_python(
        "oras_e2e.py",
        &[&s.addr(), workdir, "--referrers", referrers],
        t.path(),
    );
    assert!(
        out.stdout.contains("oras e2e: all checks passed"),
        "{}",
        out.describe()
    );

    // The end state, seen without the SDK.
    assert_eq!(s.tags("oras/art").unwrap(), ["sbom", "sig", "v1"]);
    assert_eq!(s.get_manifest("oras/art", "chunked").status, 404);
    let subject = s.get_manifest("oras/art", "v1");
    assert_eq!(subject.status, 200, "{}", subject.describe());
    let digest = subject
        .header("docker-content-digest")
        .expect("digest header")
        .to_string();
    for tag in ["sig", "sbom"] {
        let m = s.get_manifest("oras/art", tag).json();
        assert_eq!(m["subject"]["digest"], digest.as_str(), "{tag}: {m}");
    }
    if target_supports_referrers() {
        let r = berth_e2e::http::get(&format!("{}/v2/oras/art/referrers/{digest}", s.url()), &[]);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(
            r.header("content-type"),
            Some(OCI_INDEX),
            "{}",
            r.describe()
        );
        assert_eq!(
            r.json()["manifests"].as_array().map(Vec::len),
            Some(2),
            "{}",
            r.describe()
        );
    }
}
