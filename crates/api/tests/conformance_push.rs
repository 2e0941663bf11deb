//! OCI Distribution Spec conformance, "push" workflow: upload sessions (monolithic, streamed,
//! chunked, resumable), cross-repository mounts and manifest pushes, including every error path.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use berth_oci::{Algorithm, Digest};
use common::*;

#[tokio::test]
async fn base_endpoint() {
    let r = Reg::new();
    let resp = r.get("/v2/").await;
    resp.assert_status(200);
    assert_eq!(resp.json(), serde_json::json!({}));
    r.req("HEAD", "/v2/", &[], "").await.assert_status(200);
    r.req("GET", "/v2", &[], "").await.assert_status(200);
    r.req("POST", "/v2/", &[], "")
        .await
        .assert_error(405, "UNSUPPORTED");
}

#[tokio::test]
async fn post_opens_a_session_with_spec_headers() {
    let r = Reg::new();
    let resp = r.req("POST", "/v2/team/app/blobs/uploads/", &[], "").await;
    resp.assert_status(202);
    let loc = resp.header("location").unwrap().to_string();
    let uuid = resp.header("docker-upload-uuid").unwrap();
    assert!(loc.starts_with("/v2/team/app/blobs/uploads/"), "{loc}");
    assert!(loc.ends_with(uuid));
    assert_eq!(resp.header("range"), Some("0-0"));
    assert_eq!(resp.header("content-length"), Some("0"));
    let status = r.get(&loc).await;
    status.assert_status(204);
    assert_eq!(status.header("range"), Some("0-0"));
    assert_eq!(status.header("docker-upload-uuid"), Some(uuid));
}

#[tokio::test]
async fn monolithic_post_with_digest() {
    let r = Reg::new();
    let data = b"monolithic blob".to_vec();
    let d = Digest::sha256_of(&data);
    let resp = r
        .req(
            "POST",
            &format!("/v2/a/blobs/uploads/?digest={d}"),
            &[],
            data.clone(),
        )
        .await;
    resp.assert_status(201);
    assert_eq!(
        resp.header("location"),
        Some(format!("/v2/a/blobs/{d}").as_str())
    );
    assert_eq!(resp.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(r.get(&format!("/v2/a/blobs/{d}")).await.body, data);
}

#[tokio::test]
async fn streamed_patch_then_put() {
    let r = Reg::new();
    let loc = r
        .req("POST", "/v2/a/blobs/uploads/", &[], "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    let part1 = vec![1u8; 100_000];
    let part2 = vec![2u8; 50_000];
    let p = r.req("PATCH", &loc, &[], part1.clone()).await;
    p.assert_status(202);
    assert_eq!(p.header("range"), Some("0-99999"));
    assert_eq!(p.header("location"), Some(loc.as_str()));
    let p = r.req("PATCH", &loc, &[], part2.clone()).await;
    assert_eq!(p.header("range"), Some("0-149999"));
    let all = [part1, part2].concat();
    let d = Digest::sha256_of(&all);
    let put = r.req("PUT", &format!("{loc}?digest={d}"), &[], "").await;
    put.assert_status(201);
    assert_eq!(put.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/a/blobs/{d}").as_str())
    );
    assert_eq!(r.get(&format!("/v2/a/blobs/{d}")).await.body, all);
    // the session is gone once completed
    r.get(&loc).await.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn chunked_with_content_range_and_final_chunk_in_put() {
    let r = Reg::new();
    let loc = r
        .req("POST", "/v2/a/blobs/uploads/", &[], "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 253) as u8).collect();
    let (c1, rest) = data.split_at(10_000);
    let (c2, c3) = rest.split_at(10_000);
    r.req(
        "PATCH",
        &loc,
        &[("content-range", "0-9999"), ("content-length", "10000")],
        c1.to_vec(),
    )
    .await
    .assert_status(202);
    // out of order: starts past the end
    let bad = r
        .req(
            "PATCH",
            &loc,
            &[
                ("content-range", "20000-29999"),
                ("content-length", "10000"),
            ],
            c3.to_vec(),
        )
        .await;
    bad.assert_error(416, "RANGE_INVALID");
    assert_eq!(bad.header("range"), Some("0-9999"));
    // replays an old range
    r.req(
        "PATCH",
        &loc,
        &[("content-range", "0-9999"), ("content-length", "10000")],
        c1.to_vec(),
    )
    .await
    .assert_error(416, "RANGE_INVALID");
    // Content-Length contradicting Content-Range
    r.req(
        "PATCH",
        &loc,
        &[
            ("content-range", "10000-10009"),
            ("content-length", "10000"),
        ],
        c2.to_vec(),
    )
    .await
    .assert_error(416, "RANGE_INVALID");
    // malformed Content-Range
    r.req("PATCH", &loc, &[("content-range", "abc")], c2.to_vec())
        .await
        .assert_error(400, "BLOB_UPLOAD_INVALID");
    r.req(
        "PATCH",
        &loc,
        &[
            ("content-range", "10000-19999"),
            ("content-length", "10000"),
        ],
        c2.to_vec(),
    )
    .await
    .assert_status(202);
    let d = Digest::sha256_of(&data);
    let put = r
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[
                ("content-range", "20000-29999"),
                ("content-length", "10000"),
            ],
            c3.to_vec(),
        )
        .await;
    put.assert_status(201);
    assert_eq!(r.get(&format!("/v2/a/blobs/{d}")).await.body, data);
}

#[tokio::test]
async fn monolithic_put_after_post() {
    let r = Reg::new();
    let loc = r
        .req("POST", "/v2/a/blobs/uploads/", &[], "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    let data = b"whole blob in the PUT".to_vec();
    let d = Digest::sha256_of(&data);
    r.req(
        "PUT",
        &format!("{loc}?digest={d}"),
        &[("content-length", &data.len().to_string())],
        data.clone(),
    )
    .await
    .assert_status(201);
    r.req("HEAD", &format!("/v2/a/blobs/{d}"), &[], "")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn sha512_blobs_are_accepted() {
    let r = Reg::new();
    let data = b"sha512 content".to_vec();
    let d = Digest::of(Algorithm::Sha512, &data);
    r.req(
        "POST",
        &format!("/v2/a/blobs/uploads/?digest={d}"),
        &[],
        data.clone(),
    )
    .await
    .assert_status(201);
    assert_eq!(r.get(&format!("/v2/a/blobs/{d}")).await.body, data);
    // chunked: earlier chunks were hashed as sha256, the final digest is sha512
    let loc = r
        .req("POST", "/v2/b/blobs/uploads/", &[], "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    r.req("PATCH", &loc, &[], b"part one ".to_vec())
        .await
        .assert_status(202);
    let all = b"part one part two".to_vec();
    let d = Digest::of(Algorithm::Sha512, &all);
    r.req(
        "PUT",
        &format!("{loc}?digest={d}"),
        &[],
        b"part two".to_vec(),
    )
    .await
    .assert_status(201);
    assert_eq!(r.get(&format!("/v2/b/blobs/{d}")).await.body, all);
}

#[tokio::test]
async fn digest_mismatch_keeps_nothing() {
    let r = Reg::new();
    let before = r.files();
    let wrong = Digest::sha256_of(b"something else");
    let resp = r
        .req(
            "POST",
            &format!("/v2/a/blobs/uploads/?digest={wrong}"),
            &[],
            b"actual".to_vec(),
        )
        .await;
    resp.assert_error(400, "DIGEST_INVALID");
    r.req("HEAD", &format!("/v2/a/blobs/{wrong}"), &[], "")
        .await
        .assert_status(404);
    assert_eq!(r.files(), before, "nothing may be left in storage");
    // session path
    let loc = r
        .req("POST", "/v2/a/blobs/uploads/", &[], "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    r.req("PATCH", &loc, &[], b"actual".to_vec())
        .await
        .assert_status(202);
    r.req("PUT", &format!("{loc}?digest={wrong}"), &[], "")
        .await
        .assert_error(400, "DIGEST_INVALID");
    r.get(&loc).await.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(r.files(), before);
    // malformed digests
    for bad in [
        "sha256:abc",
        "md5:00",
        "nonsense",
        "sha256:../../etc/passwd",
    ] {
        let resp = r
            .req(
                "POST",
                &format!("/v2/a/blobs/uploads/?digest={bad}"),
                &[],
                b"x".to_vec(),
            )
            .await;
        resp.assert_error(400, "DIGEST_INVALID");
    }
    let loc = r
        .req("POST", "/v2/a/blobs/uploads/", &[], "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    r.req("PUT", &loc, &[], "")
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn cross_repo_mount() {
    let r = Reg::new();
    let d = r.push_blob("src/repo", b"shared layer").await;
    let m = r
        .req(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"),
            &[],
            "",
        )
        .await;
    m.assert_status(201);
    assert_eq!(
        m.header("location"),
        Some(format!("/v2/dst/blobs/{d}").as_str())
    );
    assert_eq!(m.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        r.get(&format!("/v2/dst/blobs/{d}")).await.body.as_ref(),
        b"shared layer"
    );
    // source lacks it: falls back to a session
    let missing = Digest::sha256_of(b"nope");
    let f = r
        .req(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={missing}&from=src/repo"),
            &[],
            "",
        )
        .await;
    f.assert_status(202);
    assert!(f.header("docker-upload-uuid").is_some());
    // mount without from: Berth does no automatic content discovery, so it is a new upload
    // session (202) even though the repository already has the blob
    let n = r
        .req(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}"),
            &[],
            "",
        )
        .await;
    n.assert_status(202);
    assert!(n.header("docker-upload-uuid").is_some());
    assert!(n
        .header("location")
        .is_some_and(|l| l.contains("/blobs/uploads/")));
    // bad parameters
    r.req(
        "POST",
        "/v2/dst/blobs/uploads/?mount=sha256:zz&from=src/repo",
        &[],
        "",
    )
    .await
    .assert_error(400, "DIGEST_INVALID");
    r.req(
        "POST",
        &format!("/v2/dst/blobs/uploads/?mount={d}&from=../etc"),
        &[],
        "",
    )
    .await
    .assert_error(400, "NAME_INVALID");
}

#[tokio::test]
async fn blobs_are_per_repository() {
    let r = Reg::new();
    let d = r.push_blob("a", b"only in a").await;
    r.req("HEAD", &format!("/v2/b/blobs/{d}"), &[], "")
        .await
        .assert_status(404);
    r.get(&format!("/v2/b/blobs/{d}"))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
    // a session id from repo a cannot be used through repo b
    let loc = r
        .req("POST", "/v2/a/blobs/uploads/", &[], "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    let other = loc.replace("/v2/a/", "/v2/b/");
    r.req("PATCH", &other, &[], b"x".to_vec())
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn unknown_and_cancelled_sessions() {
    let r = Reg::new();
    let unknown = "/v2/a/blobs/uploads/0b1e3f2a-1111-4222-8333-444455556666";
    r.req("PATCH", unknown, &[], b"x".to_vec())
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.get(unknown)
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.req(
        "PUT",
        &format!("{unknown}?digest={}", Digest::sha256_of(b"x")),
        &[],
        "",
    )
    .await
    .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.req("DELETE", unknown, &[], "")
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.req(
        "PATCH",
        "/v2/a/blobs/uploads/not-a-uuid",
        &[],
        b"x".to_vec(),
    )
    .await
    .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    let before = r.files();
    let loc = r
        .req("POST", "/v2/a/blobs/uploads/", &[], "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    r.req("PATCH", &loc, &[], vec![7u8; 1000])
        .await
        .assert_status(202);
    r.req("DELETE", &loc, &[], "").await.assert_status(204);
    r.get(&loc).await.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(r.files(), before, "a cancelled upload leaves no bytes");
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let mut r = Reg::new();
    let loc = r
        .req("POST", "/v2/a/blobs/uploads/", &[], "")
        .await
        .header("location")
        .unwrap()
        .to_string();
    r.req("PATCH", &loc, &[], b"before restart, ".to_vec())
        .await
        .assert_status(202);
    r.restart();
    let st = r.get(&loc).await;
    st.assert_status(204);
    assert_eq!(st.header("range"), Some("0-15"));
    r.req(
        "PATCH",
        &loc,
        &[("content-range", "16-29"), ("content-length", "14")],
        b"after restart.".to_vec(),
    )
    .await
    .assert_status(202);
    let d = Digest::sha256_of(b"before restart, after restart.");
    r.req("PUT", &format!("{loc}?digest={d}"), &[], "")
        .await
        .assert_status(201);
}

#[tokio::test]
async fn manifest_push_headers_and_multi_tag() {
    let r = Reg::new();
    let (m, d) = r.push_image("app", "v1", b"layer").await;
    let got = r.get("/v2/app/manifests/v1").await;
    assert_eq!(got.body, m, "stored byte-exact");
    // by digest with several ?tag=
    let resp = r
        .req(
            "PUT",
            &format!("/v2/app/manifests/{d}?tag=a&tag=b"),
            &[("content-type", OCI_MANIFEST)],
            m.clone(),
        )
        .await;
    resp.assert_status(201);
    assert_eq!(
        resp.header("location"),
        Some(format!("/v2/app/manifests/{d}").as_str())
    );
    assert_eq!(resp.header("docker-content-digest"), Some(d.as_str()));
    assert!(resp.header("oci-subject").is_none());
    let tags = r.get("/v2/app/tags/list").await.json();
    assert_eq!(tags["tags"], serde_json::json!(["a", "b", "v1"]));
    // a digest in the URL that does not match the body
    let wrong = Digest::sha256_of(b"other");
    r.req(
        "PUT",
        &format!("/v2/app/manifests/{wrong}"),
        &[("content-type", OCI_MANIFEST)],
        m.clone(),
    )
    .await
    .assert_error(400, "DIGEST_INVALID");
    r.req(
        "PUT",
        "/v2/app/manifests/v1?tag=bad/tag",
        &[("content-type", OCI_MANIFEST)],
        m,
    )
    .await
    .assert_error(400, "TAG_INVALID");
}

#[tokio::test]
async fn manifest_validation_errors_change_nothing() {
    let r = Reg::new();
    let config = r.push_blob("app", b"{}").await;
    let before_tags = r.get("/v2/app/tags/list").await.json();
    let missing = Digest::sha256_of(b"never pushed");
    let m = image_manifest(&config, 2, &[(&missing, 12)], None);
    let resp = r.put_manifest("app", "v1", OCI_MANIFEST, &m).await;
    resp.assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(resp.json()["errors"][0]["detail"], missing.as_str());
    r.put_manifest("app", "v1", OCI_MANIFEST, b"{not json")
        .await
        .assert_error(400, "MANIFEST_INVALID");
    r.put_manifest("app", "v1", OCI_MANIFEST, b"[1,2]")
        .await
        .assert_error(400, "MANIFEST_INVALID");
    let ok = image_manifest(&config, 2, &[], None);
    r.put_manifest("app", "v1", DOCKER_MANIFEST, &ok)
        .await
        .assert_error(400, "MANIFEST_INVALID");
    let schema1 = br#"{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[]}"#;
    r.put_manifest(
        "app",
        "v1",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        schema1,
    )
    .await
    .assert_error(400, "MANIFEST_INVALID");
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    r.put_manifest("app", "v1", OCI_MANIFEST, &big)
        .await
        .assert_error(413, "SIZE_INVALID");
    r.put_manifest("app", "-bad", OCI_MANIFEST, &ok)
        .await
        .assert_error(400, "TAG_INVALID");
    // index whose child is not in the repository: the spec's MANIFEST_BLOB_UNKNOWN, as registry:2
    let child = Digest::sha256_of(b"no such manifest");
    let idx = index_manifest(OCI_INDEX, &[(&child, 10, "amd64")]);
    r.put_manifest("app", "multi", OCI_INDEX, &idx)
        .await
        .assert_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        r.get("/v2/app/tags/list").await.json(),
        before_tags,
        "no tag was created"
    );
    r.get("/v2/app/manifests/v1")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn all_manifest_kinds_round_trip() {
    let r = Reg::new();
    let (amd, amd_d) = r.push_image("multi", "amd64", b"amd layer").await;
    let (arm, arm_d) = r.push_image("multi", "arm64", b"arm layer").await;
    let children = [(&amd_d, amd.len(), "amd64"), (&arm_d, arm.len(), "arm64")];
    for (kind, tag) in [(OCI_INDEX, "oci"), (DOCKER_LIST, "docker")] {
        let idx = index_manifest(kind, &children);
        r.put_manifest("multi", tag, kind, &idx)
            .await
            .assert_status(201);
        let got = r.get(&format!("/v2/multi/manifests/{tag}")).await;
        assert_eq!(got.header("content-type"), Some(kind));
        assert_eq!(got.body, idx);
    }
    // Docker schema 2 image manifest, content type from the header
    let c = r.push_blob("dock", b"{\"os\":\"linux\"}").await;
    let l = r.push_blob("dock", b"docker layer").await;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType":"application/vnd.docker.container.image.v1+json","digest":c.as_str(),"size":14},
        "layers": [{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":l.as_str(),"size":12}]
    }))
    .unwrap();
    r.put_manifest("dock", "v1", DOCKER_MANIFEST, &m)
        .await
        .assert_status(201);
    let got = r.req("HEAD", "/v2/dock/manifests/v1", &[], "").await;
    assert_eq!(got.header("content-type"), Some(DOCKER_MANIFEST));
    assert_eq!(
        got.header("content-length"),
        Some(m.len().to_string().as_str())
    );
    assert!(got.body.is_empty());
    // a manifest without a mediaType field (umoci) takes the Content-Type
    let bare = String::from_utf8(image_manifest(&c, 14, &[], None))
        .unwrap()
        .replace(&format!("\"mediaType\": \"{OCI_MANIFEST}\","), "");
    r.put_manifest("dock", "bare", OCI_MANIFEST, bare.as_bytes())
        .await
        .assert_status(201);
    assert_eq!(
        r.get("/v2/dock/manifests/bare")
            .await
            .header("content-type"),
        Some(OCI_MANIFEST)
    );
}

#[tokio::test]
async fn subject_header_on_referrer_push() {
    let r = Reg::new();
    let (m, d) = r.push_image("app", "v1", b"layer").await;
    let empty = r.push_blob("app", b"{}").await;
    let sig = r.push_blob("app", b"signature").await;
    let art = artifact_manifest(
        &empty,
        "application/vnd.example.sig",
        &sig,
        9,
        (&d, m.len()),
        "x",
    );
    let resp = r
        .put_manifest(
            "app",
            &Digest::sha256_of(&art).to_string(),
            OCI_MANIFEST,
            &art,
        )
        .await;
    resp.assert_status(201);
    assert_eq!(resp.header("oci-subject"), Some(d.as_str()));
}
