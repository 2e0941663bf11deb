//! Error messages that name client input (names, references, digests, media types, query
//! parameters) repeat it escaped and cut to a few dozen characters, never raw.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use berth_oci::{Digest, QUOTE_LIMIT};
use common::*;

/// Longest message a hostile input may produce: the fixed text plus one quoted, cut echo.
const MAX_MESSAGE: usize = 300;

/// 10 000 characters after a control character, a quote and a backslash (percent-encoded for
/// paths and queries: `%0A` newline, `%1B` escape).
fn long_tail() -> String {
    "z".repeat(10_000)
}

#[track_caller]
fn assert_escaped(resp: &Resp, status: u16, code: &str, escaped: &str) {
    resp.assert_error(status, code);
    let message = resp.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.len() <= MAX_MESSAGE,
        "{} chars: {message}",
        message.len()
    );
    assert!(!message.chars().any(char::is_control), "{message:?}");
    assert!(message.contains(escaped), "{message:?} lacks {escaped:?}");
    assert!(message.contains('…'), "the echo is cut: {message:?}");
    assert!(!message.contains(&"z".repeat(QUOTE_LIMIT + 1)), "{message}");
}

#[tokio::test]
async fn path_names_references_and_digests_are_quoted() {
    let r = Reg::new();
    let tail = long_tail();
    let cases = [
        (
            format!("/v2/a%0A%1B%5B31m{tail}/tags/list"),
            "NAME_INVALID",
            "\\u{a}\\u{1b}[31m",
        ),
        (
            format!("/v2/a/manifests/v%0A%1B{tail}"),
            "TAG_INVALID",
            "\\u{a}\\u{1b}",
        ),
        (
            format!("/v2/a/manifests/sha256:%0A{tail}"),
            "DIGEST_INVALID",
            "\\u{a}",
        ),
        (
            format!("/v2/a/blobs/md5%0A%1B{tail}:abc"),
            "DIGEST_INVALID",
            "\\u{a}\\u{1b}",
        ),
        (
            format!("/v2/a/referrers/sha256:%22%5C%0A{tail}"),
            "DIGEST_INVALID",
            "\\\"\\\\\\u{a}",
        ),
    ];
    for (uri, code, escaped) in cases {
        // A manifest reference that is invalid is refused on push and unknown on reads.
        let (method, status, code) = match code {
            "TAG_INVALID" | "DIGEST_INVALID" if uri.contains("/manifests/") => {
                let resp = r.req("GET", &uri, &[], Vec::new()).await;
                assert_escaped(&resp, 404, "MANIFEST_UNKNOWN", escaped);
                ("PUT", 400, code)
            }
            _ => ("GET", 400, code),
        };
        let resp = r.req(method, &uri, &[], Vec::new()).await;
        assert_escaped(&resp, status, code, escaped);
    }
}

#[tokio::test]
async fn query_parameters_are_quoted() {
    let r = Reg::new();
    let tail = long_tail();
    let (m, _) = r.push_image("a", "v1", b"layer").await;
    let n = r.get(&format!("/v2/a/tags/list?n=%0A%1B{tail}")).await;
    assert_escaped(&n, 400, "PAGINATION_NUMBER_INVALID", "\\u{a}\\u{1b}");
    let uploads = [
        (format!("?digest=sha256:%0A{tail}"), "DIGEST_INVALID"),
        (format!("?mount=md5%0A{tail}:x&from=b"), "DIGEST_INVALID"),
        (
            format!("?mount={}&from=B%0A{tail}", Digest::sha256_of(b"layer")),
            "NAME_INVALID",
        ),
    ];
    for (q, code) in uploads {
        let resp = r
            .req("POST", &format!("/v2/a/blobs/uploads/{q}"), &[], "")
            .await;
        assert_escaped(&resp, 400, code, "\\u{a}");
    }
    let tag = r
        .req(
            "PUT",
            &format!("/v2/a/manifests/v2?tag=t%0A{tail}"),
            &[("content-type", OCI_MANIFEST)],
            m,
        )
        .await;
    assert_escaped(&tag, 400, "TAG_INVALID", "\\u{a}");
}

#[tokio::test]
async fn media_types_from_headers_and_bodies_are_quoted() {
    let r = Reg::new();
    let tail = long_tail();
    let (m, _) = r.push_image("a", "v1", b"layer").await;
    // Header values cannot hold newlines, but tabs, quotes and backslashes pass.
    let header_type = format!("application/x\t\"\\{tail}");
    let mismatch = r.put_manifest("a", "v2", &header_type, &m).await;
    assert_escaped(&mismatch, 400, "MANIFEST_INVALID", "\\u{9}\\\"\\\\");
    let body = String::from_utf8(m.clone()).unwrap().replace(
        &format!("\"mediaType\": \"{OCI_MANIFEST}\""),
        &format!("\"mediaType\": \"application/x\\n\\u001b[2J{tail}\""),
    );
    assert_ne!(
        body.as_bytes(),
        m.as_slice(),
        "the manifest's mediaType was replaced"
    );
    let unsupported = r.put_manifest("a", "v3", "", body.as_bytes()).await;
    assert_escaped(&unsupported, 400, "MANIFEST_INVALID", "\\u{a}\\u{1b}[2J");
    let not_json = format!("{{\"schemaVersion\": 2, \"config\": \"\\n{tail}\"}}");
    let resp = r
        .put_manifest("a", "v4", OCI_MANIFEST, not_json.as_bytes())
        .await;
    assert_escaped(&resp, 400, "MANIFEST_INVALID", "\\\\n");
    assert_eq!(
        r.get("/v2/a/tags/list").await.json()["tags"],
        serde_json::json!(["v1"])
    );
}
