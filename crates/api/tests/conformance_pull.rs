//! OCI Distribution Spec conformance, "pull" and "content discovery" workflows: manifests and
//! blobs by tag and digest, ranges, tag listing, catalog and referrers with pagination.

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
async fn pull_manifest_by_tag_and_digest() {
    let r = Reg::new();
    let (m, d) = r.push_image("library/app", "latest", b"layer bytes").await;
    for reference in ["latest".to_string(), d.to_string()] {
        let got = r
            .get(&format!("/v2/library/app/manifests/{reference}"))
            .await;
        got.assert_status(200);
        assert_eq!(got.body, m);
        assert_eq!(got.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(got.header("docker-content-digest"), Some(d.as_str()));
        assert_eq!(
            got.header("content-length"),
            Some(m.len().to_string().as_str())
        );
        let head = r
            .req(
                "HEAD",
                &format!("/v2/library/app/manifests/{reference}"),
                &[],
                "",
            )
            .await;
        head.assert_status(200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("docker-content-digest"), Some(d.as_str()));
    }
    r.get("/v2/library/app/manifests/nope")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    r.get(&format!(
        "/v2/library/app/manifests/{}",
        Digest::sha256_of(b"x")
    ))
    .await
    .assert_error(404, "MANIFEST_UNKNOWN");
    r.get("/v2/never/pushed/manifests/latest")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    let head = r
        .req("HEAD", "/v2/library/app/manifests/nope", &[], "")
        .await;
    head.assert_status(404);
}

#[tokio::test]
async fn pull_blob_with_ranges() {
    let r = Reg::new();
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    let d = r.push_blob("a", &data).await;
    let uri = format!("/v2/a/blobs/{d}");
    let full = r.get(&uri).await;
    full.assert_status(200);
    assert_eq!(full.body, data);
    assert_eq!(full.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(full.header("content-length"), Some("1000"));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let head = r.req("HEAD", &uri, &[], "").await;
    head.assert_status(200);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert!(head.body.is_empty());
    for (range, first, last) in [
        ("bytes=0-99", 0, 99),
        ("bytes=900-", 900, 999),
        ("bytes=-10", 990, 999),
        ("bytes=990-5000", 990, 999),
    ] {
        let part = r.req("GET", &uri, &[("range", range)], "").await;
        part.assert_status(206);
        assert_eq!(part.body, data[first..=last], "{range}");
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {first}-{last}/1000").as_str())
        );
        assert_eq!(
            part.header("content-length"),
            Some((last - first + 1).to_string().as_str())
        );
    }
    for bad in [
        "bytes=1000-",
        "bytes=5-2",
        "bytes=0-1,5-6",
        "bytes=x-y",
        "bytes=-0",
    ] {
        let resp = r.req("GET", &uri, &[("range", bad)], "").await;
        resp.assert_error(416, "RANGE_INVALID");
        if bad == "bytes=1000-" {
            assert_eq!(resp.header("content-range"), Some("bytes */1000"));
        }
    }
    r.get(&format!("/v2/a/blobs/{}", Digest::sha256_of(b"missing")))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn manifests_are_readable_as_blobs() {
    let r = Reg::new();
    let (m, d) = r.push_image("a", "v1", b"l").await;
    let got = r.get(&format!("/v2/a/blobs/{d}")).await;
    got.assert_status(200);
    assert_eq!(got.body, m);
}

#[tokio::test]
async fn tag_listing_paginates_exactly() {
    let r = Reg::new();
    let (m, _) = r.push_image("app", "seed", b"l").await;
    let mut want: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
    for t in &want {
        r.put_manifest("app", t, OCI_MANIFEST, &m)
            .await
            .assert_status(201);
    }
    want.push("seed".into());
    want.sort();
    let all = r.get("/v2/app/tags/list").await;
    all.assert_status(200);
    assert_eq!(all.json()["name"], "app");
    assert_eq!(all.json()["tags"], serde_json::json!(want));
    assert!(all.header("link").is_none());
    // walk pages of 10 following Link
    let mut got = Vec::new();
    let mut uri = "/v2/app/tags/list?n=10".to_string();
    loop {
        let page = r.get(&uri).await;
        page.assert_status(200);
        let tags: Vec<String> = serde_json::from_value(page.json()["tags"].clone()).unwrap();
        assert!(tags.len() <= 10);
        got.extend(tags);
        match page.header("link") {
            Some(l) => {
                assert!(l.ends_with("rel=\"next\""), "{l}");
                uri = l
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string();
            }
            None => break,
        }
    }
    assert_eq!(got, want);
    let after = r.get("/v2/app/tags/list?n=2&last=t05").await.json();
    assert_eq!(after["tags"], serde_json::json!(["t06", "t07"]));
    let zero = r.get("/v2/app/tags/list?n=0").await;
    zero.assert_status(200);
    assert_eq!(zero.json()["tags"], serde_json::json!([]));
    r.get("/v2/app/tags/list?n=abc")
        .await
        .assert_error(400, "PAGINATION_NUMBER_INVALID");
    r.get("/v2/app/tags/list?n=-1")
        .await
        .assert_error(400, "PAGINATION_NUMBER_INVALID");
    r.get("/v2/unknown/tags/list")
        .await
        .assert_error(404, "NAME_UNKNOWN");
}

#[tokio::test]
async fn catalog_paginates() {
    let r = Reg::new();
    let names = ["a/x", "b", "c/d/e", "z"];
    for n in names {
        r.push_image(n, "v1", b"l").await;
    }
    r.push_blob("only-blobs", b"no manifest here").await;
    let all = r.get("/v2/_catalog").await;
    all.assert_status(200);
    assert_eq!(all.json()["repositories"], serde_json::json!(names));
    let p1 = r.get("/v2/_catalog?n=2").await;
    assert_eq!(p1.json()["repositories"], serde_json::json!(["a/x", "b"]));
    assert_eq!(
        p1.header("link"),
        Some("</v2/_catalog?n=2&last=b>; rel=\"next\"")
    );
    let p2 = r.get("/v2/_catalog?n=2&last=b").await;
    assert_eq!(p2.json()["repositories"], serde_json::json!(["c/d/e", "z"]));
    assert!(p2.header("link").is_none());
    assert_eq!(
        r.get("/v2/_catalog?n=0").await.json()["repositories"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn referrers_list_filter_and_paginate() {
    let r = Reg::new();
    let (m, subject) = r.push_image("app", "v1", b"layer").await;
    let empty = r.push_blob("app", b"{}").await;
    let mut pushed = Vec::new();
    for (i, kind) in [
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let blob = r.push_blob("app", format!("payload {i}").as_bytes()).await;
        let art = artifact_manifest(
            &empty,
            kind,
            &blob,
            9,
            (&subject, m.len()),
            &format!("n{i}"),
        );
        let d = Digest::sha256_of(&art);
        r.put_manifest("app", d.as_str(), OCI_MANIFEST, &art)
            .await
            .assert_status(201);
        pushed.push((d, art.len(), *kind));
    }
    let resp = r.get(&format!("/v2/app/referrers/{subject}")).await;
    resp.assert_status(200);
    assert_eq!(resp.header("content-type"), Some(OCI_INDEX));
    assert!(resp.header("oci-filters-applied").is_none());
    let idx = resp.json();
    assert_eq!(idx["schemaVersion"], 2);
    assert_eq!(idx["mediaType"], OCI_INDEX);
    let ms = idx["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 3);
    for (d, size, kind) in &pushed {
        let e = ms
            .iter()
            .find(|e| e["digest"] == d.as_str())
            .expect("referrer listed");
        assert_eq!(e["size"], *size);
        assert_eq!(e["artifactType"], *kind);
        assert_eq!(e["mediaType"], OCI_MANIFEST);
        assert!(e["annotations"]["note"].is_string());
    }
    let f = r
        .get(&format!(
            "/v2/app/referrers/{subject}?artifactType=application/vnd.example.sbom"
        ))
        .await;
    assert_eq!(f.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(f.json()["manifests"].as_array().unwrap().len(), 1);
    // pagination
    let p1 = r.get(&format!("/v2/app/referrers/{subject}?n=2")).await;
    assert_eq!(p1.json()["manifests"].as_array().unwrap().len(), 2);
    let link = p1
        .header("link")
        .expect("Link for more referrers")
        .to_string();
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    assert_eq!(
        r.get(next).await.json()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // unknown subject: an empty index, not 404
    let none = r
        .get(&format!(
            "/v2/app/referrers/{}",
            Digest::sha256_of(b"nothing")
        ))
        .await;
    none.assert_status(200);
    assert_eq!(none.json()["manifests"], serde_json::json!([]));
    r.get("/v2/app/referrers/sha256:bad")
        .await
        .assert_error(400, "DIGEST_INVALID");
}
