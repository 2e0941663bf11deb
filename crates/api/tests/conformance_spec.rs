//! OCI Distribution Spec, clause by clause: the MUSTs of v1.1.1 and of the unreleased changes on
//! the spec's main branch that the workflow files (`conformance_pull.rs`, `conformance_push.rs`,
//! `conformance_manage.rs`) do not already pin down. Each test names its clauses:
//!
//! * Pull, "Checking if content exists": a `HEAD` of a manifest or blob MUST answer 200 with
//!   `Docker-Content-Digest` and `Content-Length` (MUST on main, SHOULD in v1.1.1); 404 when
//!   absent. "Pulling manifests/blobs": `GET` MUST carry `Docker-Content-Digest` (main), matching
//!   the body; a nonexistent repository MUST answer 404.
//! * Push, "POST then PUT": the 202 `Location` MUST contain a UUID. "Pushing a blob in chunks":
//!   each 202 MUST have `Location` and `Range: 0-<end>` matching the request's `Content-Range`
//!   end (main); the status `GET` MUST be 204 with `Location` and `Range`; a final chunk sent
//!   out of order in the closing `PUT` MUST answer 416 (main).
//! * Push, "Cancel a blob upload" (main, end-14): `DELETE` answers 204 and the session is gone
//!   (404 `BLOB_UPLOAD_UNKNOWN`) for every later request.
//! * Push, "Pushing blobs": an invalid digest or unsupported algorithm answers 400 (main, SHOULD),
//!   also for `?digest-algorithm=` (end-4c).
//! * Digests in sha512 (main: conformance data `sha512`, `tag-param-sha512`, `blobs-sha512`):
//!   blobs by every push method, mounts, manifests and indexes by sha512 digest, referrers of a
//!   sha512 subject; `Docker-Content-Digest` MUST equal the client's digest on a manifest push and
//!   answers in the client's algorithm everywhere else.
//! * Push, "Pushing Manifests" (main, end-7b): a registry applying `?tag=` MUST answer one
//!   `OCI-Tag` per accepted tag (and SHOULD take at least 10).
//! * Push: a manifest whose `subject` does not exist MUST be accepted; a manifest rejected for a
//!   descriptor naming missing content MUST get `MANIFEST_BLOB_UNKNOWN` (index children too).
//! * Content discovery, "Listing Referrers": MUST NOT 404 (unknown repository included),
//!   `artifactType` falls back to the config `mediaType` for an image and is omitted for an
//!   index without one, annotations copied. "Listing Tags": lexical or ASCIIbetical order,
//!   exactly `n` entries while more remain, `n=0` empty and without `Link`.
//! * Content management: a manifest delete in a nonexistent repository MUST answer 404.
//!
//! `429 TOOMANYREQUESTS` with `Retry-After` is asserted where Berth produces it, the login rate
//! limit: `auth_basic.rs` (`repeated_failures_get_429_with_retry_after`) and `auth_token.rs`
//! (`the_token_endpoint_limits_failed_logins`). The shape of every error body is asserted by
//! `Resp::assert_error`; that every code string is uppercase letters and underscores, by the code
//! table's own test in `berth_oci`.

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
use serde_json::json;

/// Starts an upload session (with an optional query) and returns its `Location`.
async fn session(r: &Reg, repo: &str, query: &str) -> String {
    let resp = r
        .req(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/{query}"),
            &[("content-length", "0")],
            "",
        )
        .await;
    resp.assert_status(202);
    resp.header("location").expect("Location").to_string()
}

/// Every `OCI-Tag` value, comma-separated lists split (RFC 9110 §5.3).
fn oci_tags(resp: &Resp) -> Vec<String> {
    resp.headers
        .get_all("oci-tag")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .collect()
}

/// Asserts a 200 `GET` and a 200 `HEAD` of `uri` answering `body` with digest `d`.
#[track_caller]
fn assert_content(get: &Resp, head: &Resp, body: &[u8], d: &Digest) {
    let len = body.len().to_string();
    get.assert_status(200);
    assert_eq!(get.body, body);
    assert_eq!(get.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        Digest::of(d.algorithm(), &get.body),
        *d,
        "digest matches body"
    );
    head.assert_status(200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(head.header("content-length"), Some(len.as_str()));
}

async fn get_and_head(r: &Reg, uri: &str) -> (Resp, Resp) {
    (r.get(uri).await, r.req("HEAD", uri, &[], "").await)
}

#[tokio::test]
async fn manifest_and_blob_reads_carry_digest_and_length() {
    let r = Reg::new();
    let (m, d) = r.push_image("app", "v1", b"layer").await;
    for reference in ["v1", d.as_str()] {
        let (get, head) = get_and_head(&r, &format!("/v2/app/manifests/{reference}")).await;
        assert_content(&get, &head, &m, &d);
        assert_eq!(head.header("content-type"), Some(OCI_MANIFEST));
    }
    let data = vec![5u8; 3000];
    let blob = r.push_blob("app", &data).await;
    let (get, head) = get_and_head(&r, &format!("/v2/app/blobs/{blob}")).await;
    assert_content(&get, &head, &data, &blob);
    let part = r
        .req(
            "GET",
            &format!("/v2/app/blobs/{blob}"),
            &[("range", "bytes=0-9")],
            "",
        )
        .await;
    part.assert_status(206);
    assert_eq!(part.header("docker-content-digest"), Some(blob.as_str()));
    // absent content: 404 for GET and HEAD, in a known and in a nonexistent repository
    let missing = Digest::sha256_of(b"missing");
    for repo in ["app", "never/pushed"] {
        for (path, code) in [
            (
                format!("/v2/{repo}/manifests/{missing}"),
                "MANIFEST_UNKNOWN",
            ),
            (format!("/v2/{repo}/manifests/nope"), "MANIFEST_UNKNOWN"),
            (format!("/v2/{repo}/blobs/{missing}"), "BLOB_UNKNOWN"),
        ] {
            r.get(&path).await.assert_error(404, code);
            r.req("HEAD", &path, &[], "").await.assert_status(404);
        }
    }
}

#[tokio::test]
async fn sessions_are_uuids_and_report_location_and_range() {
    let r = Reg::new();
    let loc = session(&r, "app", "").await;
    let id = loc.rsplit('/').next().unwrap_or_default();
    assert!(
        berth_oci::UploadId::parse(id).is_some(),
        "{loc} names a UUID"
    );
    let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    for (first, last) in [(0usize, 999usize), (1000, 1999)] {
        let p = r
            .req(
                "PATCH",
                &loc,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-range", &format!("{first}-{last}")),
                    ("content-length", &(last - first + 1).to_string()),
                ],
                data[first..=last].to_vec(),
            )
            .await;
        p.assert_status(202);
        assert_eq!(p.header("location"), Some(loc.as_str()));
        assert_eq!(p.header("range"), Some(format!("0-{last}").as_str()));
    }
    let st = r.get(&loc).await;
    st.assert_status(204);
    assert_eq!(st.header("location"), Some(loc.as_str()));
    assert_eq!(st.header("range"), Some("0-1999"));
    let d = Digest::sha256_of(&data);
    let put = r
        .req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("content-range", "2000-2499"), ("content-length", "500")],
            data[2000..].to_vec(),
        )
        .await;
    put.assert_status(201);
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/app/blobs/{d}").as_str())
    );
}

#[tokio::test]
async fn an_out_of_order_final_chunk_in_put_is_416_and_keeps_the_session() {
    let r = Reg::new();
    let loc = session(&r, "app", "").await;
    let data = vec![9u8; 300];
    r.req(
        "PATCH",
        &loc,
        &[("content-range", "0-99"), ("content-length", "100")],
        data[..100].to_vec(),
    )
    .await
    .assert_status(202);
    let d = Digest::sha256_of(&data);
    let put = format!("{loc}?digest={d}");
    for range in ["200-299", "0-199"] {
        let (a, b) = range.split_once('-').unwrap();
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
        let len = (b - a + 1).to_string();
        let resp = r
            .req(
                "PUT",
                &put,
                &[("content-range", range), ("content-length", &len)],
                data[a..=b].to_vec(),
            )
            .await;
        resp.assert_error(416, "RANGE_INVALID");
        assert_eq!(resp.header("range"), Some("0-99"), "{range}");
    }
    let st = r.get(&loc).await;
    st.assert_status(204);
    assert_eq!(st.header("range"), Some("0-99"));
    r.req(
        "PUT",
        &put,
        &[("content-range", "100-299"), ("content-length", "200")],
        data[100..].to_vec(),
    )
    .await
    .assert_status(201);
    assert_eq!(r.get(&format!("/v2/app/blobs/{d}")).await.body, data);
}

#[tokio::test]
async fn a_cancelled_upload_is_unknown_to_every_later_request() {
    let r = Reg::new();
    let before = r.files();
    let loc = session(&r, "app", "").await;
    r.req("PATCH", &loc, &[], vec![1u8; 64])
        .await
        .assert_status(202);
    let del = r.req("DELETE", &loc, &[("content-length", "0")], "").await;
    del.assert_status(204);
    assert!(del.body.is_empty());
    let d = Digest::sha256_of(&[1u8; 64]);
    r.get(&loc).await.assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.req("PATCH", &loc, &[], vec![1u8; 8])
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.req("PUT", &format!("{loc}?digest={d}"), &[], "")
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.req("DELETE", &loc, &[], "")
        .await
        .assert_error(404, "BLOB_UPLOAD_UNKNOWN");
    r.req("HEAD", &format!("/v2/app/blobs/{d}"), &[], "")
        .await
        .assert_status(404);
    assert_eq!(r.files(), before, "nothing of the session is left");
}

#[tokio::test]
async fn invalid_digests_and_unsupported_algorithms_are_400() {
    let r = Reg::new();
    let before = r.files();
    for bad in [
        format!("sha384:{}", "a".repeat(96)),
        "md5:d41d8cd98f00b204e9800998ecf8427e".to_string(),
        format!("sha512:{}", "a".repeat(64)),
    ] {
        r.req(
            "POST",
            &format!("/v2/app/blobs/uploads/?digest={bad}"),
            &[],
            b"x".to_vec(),
        )
        .await
        .assert_error(400, "DIGEST_INVALID");
    }
    for alg in ["md5", "sha384", "SHA512", ""] {
        r.req(
            "POST",
            &format!("/v2/app/blobs/uploads/?digest-algorithm={alg}"),
            &[],
            "",
        )
        .await
        .assert_error(400, "DIGEST_INVALID");
    }
    assert_eq!(r.files(), before, "no session was opened");
    // a closing PUT with an unusable digest is refused and the session stays
    let loc = session(&r, "app", "").await;
    r.req("PATCH", &loc, &[], b"abc".to_vec())
        .await
        .assert_status(202);
    r.req("PUT", &format!("{loc}?digest=blake3:abcd"), &[], "")
        .await
        .assert_error(400, "DIGEST_INVALID");
    let st = r.get(&loc).await;
    st.assert_status(204);
    assert_eq!(st.header("range"), Some("0-2"));
}

#[tokio::test]
async fn sha512_blobs_by_every_push_method() {
    let r = Reg::new();
    let sha512 = Algorithm::Sha512;
    // single POST
    let mono = r.push_blob_by("app", b"monolithic sha512", sha512).await;
    // POST then PUT, the session hashing sha512 from the start
    let data = b"post then put in sha512".to_vec();
    let d = Digest::of(sha512, &data);
    let loc = session(&r, "app", "?digest-algorithm=sha512").await;
    let put = r
        .req("PUT", &format!("{loc}?digest={d}"), &[], data.clone())
        .await;
    put.assert_status(201);
    assert_eq!(put.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/app/blobs/{d}").as_str())
    );
    // chunked, with and without ?digest-algorithm=
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 241) as u8).collect();
    let chunked = Digest::of(sha512, &big);
    for query in ["?digest-algorithm=sha512", ""] {
        let loc = session(&r, "chunks", query).await;
        for (a, b) in [(0usize, 9_999usize), (10_000, 19_999)] {
            r.req(
                "PATCH",
                &loc,
                &[
                    ("content-range", &format!("{a}-{b}")),
                    ("content-length", &(b - a + 1).to_string()),
                ],
                big[a..=b].to_vec(),
            )
            .await
            .assert_status(202);
        }
        let done = r
            .req("PUT", &format!("{loc}?digest={chunked}"), &[], "")
            .await;
        done.assert_status(201);
        assert_eq!(done.header("docker-content-digest"), Some(chunked.as_str()));
    }
    for (repo, d, body) in [
        ("app", &mono, b"monolithic sha512".to_vec()),
        ("app", &d, data.clone()),
        ("chunks", &chunked, big.clone()),
    ] {
        let (get, head) = get_and_head(&r, &format!("/v2/{repo}/blobs/{d}")).await;
        assert_content(&get, &head, &body, d);
    }
    // a sha512 digest that does not match keeps nothing
    let files = r.files();
    let wrong = Digest::of(sha512, b"other bytes");
    let loc = session(&r, "app", "?digest-algorithm=sha512").await;
    r.req(
        "PUT",
        &format!("{loc}?digest={wrong}"),
        &[],
        b"bytes".to_vec(),
    )
    .await
    .assert_error(400, "DIGEST_INVALID");
    assert_eq!(r.files(), files);
    // mount by sha512 digest
    let m = r
        .req(
            "POST",
            &format!("/v2/other/blobs/uploads/?mount={mono}&from=app"),
            &[],
            "",
        )
        .await;
    m.assert_status(201);
    assert_eq!(m.header("docker-content-digest"), Some(mono.as_str()));
    assert_eq!(
        m.header("location"),
        Some(format!("/v2/other/blobs/{mono}").as_str())
    );
    // a mount the source cannot serve falls back to a session that takes the sha512 bytes
    let fresh = b"not in app yet".to_vec();
    let fresh_d = Digest::of(sha512, &fresh);
    let loc = session(&r, "other", &format!("?mount={fresh_d}&from=app")).await;
    r.req(
        "PUT",
        &format!("{loc}?digest={fresh_d}"),
        &[],
        fresh.clone(),
    )
    .await
    .assert_status(201);
    assert_eq!(
        r.get(&format!("/v2/other/blobs/{fresh_d}")).await.body,
        fresh
    );
    // delete by sha512 digest
    r.req("DELETE", &format!("/v2/other/blobs/{mono}"), &[], "")
        .await
        .assert_status(202);
    r.get(&format!("/v2/other/blobs/{mono}"))
        .await
        .assert_error(404, "BLOB_UNKNOWN");
}

/// An image manifest in `repo` whose config and layer are sha512 blobs; (bytes, sha512 digest).
async fn sha512_image(r: &Reg, repo: &str, layer: &[u8]) -> (Vec<u8>, Digest) {
    let config = br#"{"architecture":"arm64","os":"linux"}"#;
    let c = r.push_blob_by(repo, config, Algorithm::Sha512).await;
    let l = r.push_blob_by(repo, layer, Algorithm::Sha512).await;
    let m = image_manifest(&c, config.len(), &[(&l, layer.len())], None);
    let d = Digest::of(Algorithm::Sha512, &m);
    (m, d)
}

#[tokio::test]
async fn sha512_manifests_pushed_and_pulled_by_digest() {
    let r = Reg::new();
    let (m, d) = sha512_image(&r, "app", b"sha512 layer").await;
    let put = r
        .req(
            "PUT",
            &format!("/v2/app/manifests/{d}?tag=v1&tag=stable"),
            &[("content-type", OCI_MANIFEST)],
            m.clone(),
        )
        .await;
    put.assert_status(201);
    assert_eq!(put.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        put.header("location"),
        Some(format!("/v2/app/manifests/{d}").as_str())
    );
    assert_eq!(oci_tags(&put), ["v1", "stable"]);
    for reference in [d.as_str(), "v1", "stable"] {
        let (get, head) = get_and_head(&r, &format!("/v2/app/manifests/{reference}")).await;
        assert_content(&get, &head, &m, &d);
    }
    // the same bytes are unknown by their sha256 digest: Berth indexes the client's digest
    r.get(&format!("/v2/app/manifests/{}", Digest::sha256_of(&m)))
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
    // a sha512 reference that does not match the body
    r.req(
        "PUT",
        &format!("/v2/app/manifests/{}", Digest::of(Algorithm::Sha512, b"x")),
        &[("content-type", OCI_MANIFEST)],
        m.clone(),
    )
    .await
    .assert_error(400, "DIGEST_INVALID");
    // an index of sha512 children, itself by sha512 digest
    let idx = index_manifest(OCI_INDEX, &[(&d, m.len(), "arm64")]);
    let idx_d = Digest::of(Algorithm::Sha512, &idx);
    let resp = r
        .req(
            "PUT",
            &format!("/v2/app/manifests/{idx_d}?tag=multi"),
            &[("content-type", OCI_INDEX)],
            idx.clone(),
        )
        .await;
    resp.assert_status(201);
    assert_eq!(resp.header("docker-content-digest"), Some(idx_d.as_str()));
    let (get, head) = get_and_head(&r, "/v2/app/manifests/multi").await;
    assert_content(&get, &head, &idx, &idx_d);
    // delete by sha512 digest removes the manifest and its tags
    r.req("DELETE", &format!("/v2/app/manifests/{idx_d}"), &[], "")
        .await
        .assert_status(202);
    r.get("/v2/app/manifests/multi")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn sha512_subjects_have_referrers() {
    let r = Reg::new();
    let (m, subject) = sha512_image(&r, "app", b"subject layer").await;
    r.put_manifest("app", subject.as_str(), OCI_MANIFEST, &m)
        .await
        .assert_status(201);
    let empty = r.push_blob_by("app", b"{}", Algorithm::Sha512).await;
    let sig = r.push_blob_by("app", b"signature", Algorithm::Sha512).await;
    let art = artifact_manifest(
        &empty,
        "application/vnd.example.sig",
        &sig,
        9,
        (&subject, m.len()),
        "sha512",
    );
    let art_d = Digest::of(Algorithm::Sha512, &art);
    let put = r
        .put_manifest("app", art_d.as_str(), OCI_MANIFEST, &art)
        .await;
    put.assert_status(201);
    assert_eq!(put.header("oci-subject"), Some(subject.as_str()));
    let list = r.get(&format!("/v2/app/referrers/{subject}")).await;
    list.assert_status(200);
    assert_eq!(list.header("content-type"), Some(OCI_INDEX));
    let ms = list.json()["manifests"].clone();
    assert_eq!(ms.as_array().map(Vec::len), Some(1), "{ms}");
    assert_eq!(ms[0]["digest"], art_d.as_str());
    assert_eq!(ms[0]["size"], art.len());
}

#[tokio::test]
async fn tag_parameters_answer_one_oci_tag_per_tag_applied() {
    let r = Reg::new();
    let (m, d) = r.push_image("app", "seed", b"layer").await;
    let tags: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
    let put = r
        .req(
            "PUT",
            &format!("/v2/app/manifests/{d}?{}", query.join("&")),
            &[("content-type", OCI_MANIFEST)],
            m.clone(),
        )
        .await;
    put.assert_status(201);
    assert_eq!(
        oci_tags(&put),
        tags,
        "ten tags in one request, each answered"
    );
    for t in &tags {
        let got = r.get(&format!("/v2/app/manifests/{t}")).await;
        got.assert_status(200);
        assert_eq!(got.header("docker-content-digest"), Some(d.as_str()));
    }
    // a repeated tag is applied, and answered, once
    let put = r
        .req(
            "PUT",
            &format!("/v2/app/manifests/{d}?tag=x&tag=y&tag=x"),
            &[("content-type", OCI_MANIFEST)],
            m.clone(),
        )
        .await;
    put.assert_status(201);
    assert_eq!(oci_tags(&put), ["x", "y"]);
    // without ?tag= there is no OCI-Tag, by digest or by tag
    for reference in [d.as_str(), "plain"] {
        let put = r.put_manifest("app", reference, OCI_MANIFEST, &m).await;
        put.assert_status(201);
        assert!(put.header("oci-tag").is_none(), "{reference}");
    }
    // one invalid tag refuses the push: nothing applied, no OCI-Tag
    let bad = r
        .req(
            "PUT",
            &format!("/v2/app/manifests/{d}?tag=ok&tag=-bad"),
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
    bad.assert_error(400, "TAG_INVALID");
    assert!(bad.header("oci-tag").is_none());
    r.get("/v2/app/manifests/ok")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn a_manifest_whose_subject_is_missing_is_accepted() {
    let r = Reg::new();
    let subject = Digest::sha256_of(b"pushed later, or never");
    let empty = r.push_blob("app", b"{}").await;
    let sig = r.push_blob("app", b"sig").await;
    let art = artifact_manifest(
        &empty,
        "application/vnd.example.sig",
        &sig,
        3,
        (&subject, 123),
        "early",
    );
    let d = Digest::sha256_of(&art);
    let put = r.put_manifest("app", d.as_str(), OCI_MANIFEST, &art).await;
    put.assert_status(201);
    assert_eq!(put.header("oci-subject"), Some(subject.as_str()));
    let list = r.get(&format!("/v2/app/referrers/{subject}")).await;
    list.assert_status(200);
    assert_eq!(list.json()["manifests"][0]["digest"], d.as_str());
}

#[tokio::test]
async fn missing_descriptors_are_manifest_blob_unknown() {
    let r = Reg::new();
    let config = r.push_blob("app", b"{}").await;
    let layer = r.push_blob("app", b"layer").await;
    let missing = Digest::sha256_of(b"never pushed");
    for m in [
        image_manifest(&missing, 2, &[(&layer, 5)], None),
        image_manifest(&config, 2, &[(&layer, 5), (&missing, 12)], None),
        index_manifest(OCI_INDEX, &[(&missing, 10, "amd64")]),
        index_manifest(DOCKER_LIST, &[(&missing, 10, "amd64")]),
    ] {
        let kind = serde_json::from_slice::<serde_json::Value>(&m).unwrap()["mediaType"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let resp = r.put_manifest("app", "v1", &kind, &m).await;
        resp.assert_error(400, "MANIFEST_BLOB_UNKNOWN");
        assert_eq!(
            resp.json()["errors"][0]["detail"],
            missing.as_str(),
            "{kind}"
        );
    }
    r.get("/v2/app/manifests/v1")
        .await
        .assert_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn referrers_descriptors_follow_the_spec() {
    let r = Reg::new();
    let (m, subject) = r.push_image("app", "v1", b"layer").await;
    let cfg_type = "application/vnd.example.config.v1+json";
    let cfg = r.push_blob("app", b"{\"k\":1}").await;
    // an image manifest without artifactType: the config mediaType stands in
    let image = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": cfg_type, "digest": cfg.as_str(), "size": 7},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.as_str(), "size": m.len()},
        "annotations": {"org.example.kind": "image"},
    }))
    .unwrap();
    // an index without artifactType: none is listed
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.as_str(), "size": m.len()},
        "annotations": {"org.example.kind": "index"},
    }))
    .unwrap();
    for (body, kind) in [(&image, OCI_MANIFEST), (&index, OCI_INDEX)] {
        let d = Digest::sha256_of(body);
        let put = r.put_manifest("app", d.as_str(), kind, body).await;
        put.assert_status(201);
        assert_eq!(put.header("oci-subject"), Some(subject.as_str()), "{kind}");
    }
    let list = r.get(&format!("/v2/app/referrers/{subject}")).await;
    list.assert_status(200);
    assert_eq!(list.header("content-type"), Some(OCI_INDEX));
    let v = list.json();
    assert_eq!(
        (v["schemaVersion"].clone(), v["mediaType"].clone()),
        (json!(2), json!(OCI_INDEX))
    );
    let ms = v["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(ms.len(), 2, "{v}");
    for e in &ms {
        let (d, size) = if e["mediaType"] == OCI_INDEX {
            assert!(e.get("artifactType").is_none(), "{e}");
            assert_eq!(e["annotations"]["org.example.kind"], "index");
            (Digest::sha256_of(&index), index.len())
        } else {
            assert_eq!(e["artifactType"], cfg_type);
            assert_eq!(e["annotations"]["org.example.kind"], "image");
            (Digest::sha256_of(&image), image.len())
        };
        assert_eq!(
            (e["digest"].clone(), e["size"].clone()),
            (json!(d.as_str()), json!(size))
        );
    }
    // never 404: an unknown repository and an unknown subject are empty lists
    for uri in [
        format!("/v2/never/pushed/referrers/{subject}"),
        format!(
            "/v2/app/referrers/{}",
            Digest::of(Algorithm::Sha512, b"none")
        ),
    ] {
        let empty = r.get(&uri).await;
        empty.assert_status(200);
        assert_eq!(empty.header("content-type"), Some(OCI_INDEX));
        assert_eq!(empty.json()["manifests"], json!([]), "{uri}");
    }
    r.get("/v2/app/referrers/sha512:short")
        .await
        .assert_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn tag_lists_are_ordered_and_n_is_exact() {
    let r = Reg::new();
    let (m, _) = r.push_image("app", "seed", b"l").await;
    for t in ["b", "B", "a", "A-1", "a_2", "Z", "0"] {
        r.put_manifest("app", t, OCI_MANIFEST, &m)
            .await
            .assert_status(201);
    }
    let all = r.get("/v2/app/tags/list").await;
    all.assert_status(200);
    assert_eq!(all.header("content-type"), Some("application/json"));
    let v = all.json();
    assert_eq!(v["name"], "app");
    let tags: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap();
    let mut ascii = tags.clone();
    ascii.sort();
    assert_eq!(tags, ascii, "ASCIIbetical order");
    // n while more remain: exactly n, and a Link
    let page = r.get("/v2/app/tags/list?n=3").await;
    assert_eq!(page.json()["tags"], json!(tags[..3]));
    assert!(page
        .header("link")
        .is_some_and(|l| l.ends_with("rel=\"next\"")));
    // last is exclusive, n optional
    let after = r.get(&format!("/v2/app/tags/list?last={}", tags[4])).await;
    assert_eq!(after.json()["tags"], json!(tags[5..]));
    let zero = r.get("/v2/app/tags/list?n=0").await;
    zero.assert_status(200);
    assert_eq!(zero.json()["tags"], json!([]));
    assert!(zero.header("link").is_none(), "n=0 MUST NOT have a Link");
}

#[tokio::test]
async fn deletes_in_a_nonexistent_repository_are_404() {
    let r = Reg::new();
    let d = Digest::sha256_of(b"x");
    for (path, code) in [
        (
            format!("/v2/never/pushed/manifests/{d}"),
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/never/pushed/manifests/v1".to_string(),
            "MANIFEST_UNKNOWN",
        ),
        (format!("/v2/never/pushed/blobs/{d}"), "BLOB_UNKNOWN"),
    ] {
        r.req("DELETE", &path, &[], "")
            .await
            .assert_error(404, code);
    }
}
