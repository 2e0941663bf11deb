//! OCI Distribution Spec conformance, "content management" (deletes) and bad input of every kind:
//! each answers the right OCI error and leaves storage unchanged.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use berth_oci::Digest;
use common::*;

#[tokio::test]
async fn delete_tag_keeps_manifest() {
    let r = Reg::new();
    let (m, d) = r.push_image("app", "v1", b"l").await;
    r.put_manifest("app", "v2", OCI_MANIFEST, &m)
        .await
        .assert_status(201);
    r.req("DELETE", "/v2/app/manifests/v1", &[], "")
        .await
        .assert_status(202);
    r.get("/v2/app/manifests/v1")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    r.get("/v2/app/manifests/v2").await.assert_status(200);
    r.get(&format!("/v2/app/manifests/{d}"))
        .await
        .assert_status(200);
    r.req("DELETE", "/v2/app/manifests/v1", &[], "")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_manifest_by_digest_removes_its_tags() {
    let r = Reg::new();
    let (m, d) = r.push_image("app", "v1", b"l").await;
    r.put_manifest("app", "v2", OCI_MANIFEST, &m)
        .await
        .assert_status(201);
    r.req("DELETE", &format!("/v2/app/manifests/{d}"), &[], "")
        .await
        .assert_status(202);
    for reference in ["v1".to_string(), "v2".to_string(), d.to_string()] {
        r.get(&format!("/v2/app/manifests/{reference}"))
            .await
            .assert_error(404, "MANIFEST_UNKNOWN");
    }
    assert_eq!(
        r.get("/v2/app/tags/list").await.json()["tags"],
        serde_json::json!([])
    );
    r.req("DELETE", &format!("/v2/app/manifests/{d}"), &[], "")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn delete_blob() {
    let r = Reg::new();
    let d = r.push_blob("app", b"bytes").await;
    r.req("DELETE", &format!("/v2/app/blobs/{d}"), &[], "")
        .await
        .assert_status(202);
    r.get(&format!("/v2/app/blobs/{d}"))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    r.req("DELETE", &format!("/v2/app/blobs/{d}"), &[], "")
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn deletes_disabled_answer_405_unsupported() {
    let r = Reg::with_deletes(false);
    let (_, d) = r.push_image("app", "v1", b"l").await;
    let blob = r.push_blob("app", b"b").await;
    r.req("DELETE", &format!("/v2/app/manifests/{d}"), &[], "")
        .await
        .assert_error(405, "UNSUPPORTED");
    r.req("DELETE", "/v2/app/manifests/v1", &[], "")
        .await
        .assert_error(405, "UNSUPPORTED");
    r.req("DELETE", &format!("/v2/app/blobs/{blob}"), &[], "")
        .await
        .assert_error(405, "UNSUPPORTED");
    r.get("/v2/app/manifests/v1").await.assert_status(200);
}

#[tokio::test]
async fn invalid_names_and_traversal() {
    let r = Reg::new();
    r.push_image("ok", "v1", b"l").await;
    let before = r.files();
    let d = Digest::sha256_of(b"x");
    let paths = [
        "/v2/UPPER/tags/list".to_string(),
        "/v2/../../etc/tags/list".to_string(),
        "/v2/%2e%2e/%2e%2e/etc/tags/list".to_string(),
        "/v2/a/%2E%2E/b/manifests/v1".to_string(),
        "/v2//etc/passwd/manifests/v1".to_string(),
        format!("/v2/a%2F..%2F..%2Fetc/blobs/{d}"),
        "/v2/a..b/blobs/uploads/".to_string(),
        format!("/v2/{}/tags/list", "a".repeat(256)),
    ];
    for p in &paths {
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let resp = r.req(method, p, &[], b"{}".to_vec()).await;
            assert!(
                resp.status.as_u16() == 400
                    || resp.status.as_u16() == 404
                    || resp.status.as_u16() == 405,
                "{method} {p}: {}",
                resp.status
            );
            let v = resp.json();
            let code = v["errors"][0]["code"].as_str().unwrap();
            assert!(
                ["NAME_INVALID", "UNSUPPORTED"].contains(&code),
                "{method} {p}: {code}"
            );
        }
        r.get(p).await.assert_error(400, "NAME_INVALID");
    }
    assert_eq!(r.files(), before, "no bad request may touch storage");
}

#[tokio::test]
async fn invalid_tags_and_digests_in_paths() {
    let r = Reg::new();
    // A reference that can name no manifest is an unknown manifest for reads and deletes
    // (registry:2; the conformance suite's `.INVALID_MANIFEST_NAME`), invalid for pushes.
    let long = format!("/v2/app/manifests/{}", "t".repeat(129));
    for path in [
        "/v2/app/manifests/.INVALID_MANIFEST_NAME",
        "/v2/app/manifests/-tag",
        &long,
        "/v2/app/manifests/sha256:short",
    ] {
        for method in ["GET", "HEAD", "DELETE"] {
            let resp = r.req(method, path, &[], Vec::new()).await;
            assert_eq!(resp.status.as_u16(), 404, "{method} {path}");
            if method != "HEAD" {
                resp.assert_error(404, "MANIFEST_UNKNOWN");
            }
        }
    }
    for (path, code) in [
        ("/v2/app/manifests/-tag", "TAG_INVALID"),
        (long.as_str(), "TAG_INVALID"),
        ("/v2/app/manifests/sha256:short", "DIGEST_INVALID"),
    ] {
        let headers = [("content-type", OCI_MANIFEST)];
        r.req("PUT", path, &headers, b"{}".to_vec())
            .await
            .assert_error(400, code);
    }
    r.get("/v2/app/blobs/sha256:short")
        .await
        .assert_error(400, "DIGEST_INVALID");
    r.get("/v2/app/blobs/latest")
        .await
        .assert_error(400, "DIGEST_INVALID");
    r.get(&format!("/v2/app/blobs/SHA256:{}", "A".repeat(64)))
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let r = Reg::new();
    r.get("/v2/app/unknown/thing")
        .await
        .assert_error(404, "UNSUPPORTED");
    r.get("/other").await.assert_error(404, "UNSUPPORTED");
    let resp = r.req("POST", "/v2/app/tags/list", &[], "").await;
    resp.assert_error(405, "UNSUPPORTED");
    assert_eq!(resp.header("allow"), Some("GET"));
    r.req(
        "PUT",
        &format!("/v2/app/blobs/{}", Digest::sha256_of(b"")),
        &[],
        "",
    )
    .await
    .assert_error(405, "UNSUPPORTED");
    r.req("POST", "/v2/_catalog", &[], "")
        .await
        .assert_error(405, "UNSUPPORTED");
}

#[tokio::test]
async fn post_with_body_but_no_digest_is_rejected() {
    let r = Reg::new();
    let before = r.files();
    r.req(
        "POST",
        "/v2/app/blobs/uploads/",
        &[("content-length", "3")],
        b"abc".to_vec(),
    )
    .await
    .assert_error(400, "DIGEST_INVALID");
    assert_eq!(r.files(), before);
}
