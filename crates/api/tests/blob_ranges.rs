//! `Range` on blob GET: every 416 names the blob's size in `Content-Range: bytes */<size>` and
//! carries an OCI error body; a last byte position past the blob (or past `u64`) reads to the end.

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

const SIZE: usize = 1000;

async fn blob() -> (Reg, String, Vec<u8>) {
    let r = Reg::new();
    let data: Vec<u8> = (0..SIZE as u32).map(|i| (i % 251) as u8).collect();
    let d = r.push_blob("a", &data).await;
    (r, format!("/v2/a/blobs/{d}"), data)
}

#[track_caller]
fn assert_416(resp: &Resp, range: &str) {
    resp.assert_error(416, "RANGE_INVALID");
    assert_eq!(
        resp.header("content-range"),
        Some(format!("bytes */{SIZE}").as_str()),
        "{range}"
    );
}

#[tokio::test]
async fn every_416_carries_the_blob_size() {
    let (r, uri, _) = blob().await;
    for range in [
        "bytes=0-1,3-4",
        "bytes=abc",
        "bytes=",
        "bytes=-",
        "bytes=1",
        "bytes=x-y",
        "bytes=+1-2",
        "bytes=1000-",
        "bytes=1000-2000",
        "bytes=5-2",
        "bytes=-0",
        "bytes=99999999999999999999999-",
        "bytes=99999999999999999999999-99999999999999999999999",
        "bytes=-99999999999999999999999",
    ] {
        let resp = r.req("GET", &uri, &[("range", range)], "").await;
        assert_416(&resp, range);
    }
}

#[tokio::test]
async fn a_last_byte_past_the_blob_or_u64_reads_to_the_end() {
    let (r, uri, data) = blob().await;
    for (range, first) in [
        ("bytes=0-99999999999999999999999", 0),
        ("bytes=990-99999999999999999999999", 990),
        ("bytes=990-18446744073709551615", 990),
        ("bytes=999-5000", 999),
    ] {
        let resp = r.req("GET", &uri, &[("range", range)], "").await;
        resp.assert_status(206);
        assert_eq!(resp.body, data[first..], "{range}");
        assert_eq!(
            resp.header("content-range"),
            Some(format!("bytes {first}-{}/{SIZE}", SIZE - 1).as_str()),
            "{range}"
        );
    }
}

#[tokio::test]
async fn suffix_ranges_keep_their_meaning() {
    let (r, uri, data) = blob().await;
    let resp = r.req("GET", &uri, &[("range", "bytes=-10")], "").await;
    resp.assert_status(206);
    assert_eq!(resp.body, data[SIZE - 10..]);
    let resp = r.req("GET", &uri, &[("range", "bytes=-5000")], "").await;
    resp.assert_status(206);
    assert_eq!(resp.body, data);
    assert_eq!(
        resp.header("content-range"),
        Some(format!("bytes 0-{}/{SIZE}", SIZE - 1).as_str())
    );
}

#[tokio::test]
async fn other_units_are_ignored_and_a_bad_range_on_a_missing_blob_is_404() {
    let (r, uri, data) = blob().await;
    let resp = r.req("GET", &uri, &[("range", "items=0-1")], "").await;
    resp.assert_status(200);
    assert_eq!(resp.body, data);
    let missing = format!("/v2/a/blobs/{}", Digest::sha256_of(b"missing"));
    let resp = r.req("GET", &missing, &[("range", "bytes=abc")], "").await;
    resp.assert_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn a_manifest_read_as_a_blob_answers_416_with_its_size() {
    let r = Reg::new();
    let (m, d) = r.push_image("a", "v1", b"layer").await;
    let uri = format!("/v2/a/blobs/{d}");
    for range in ["bytes=0-1,3-4", "bytes=99999-"] {
        let resp = r.req("GET", &uri, &[("range", range)], "").await;
        resp.assert_error(416, "RANGE_INVALID");
        let want = format!("bytes */{}", m.len());
        assert_eq!(resp.header("content-range"), Some(want.as_str()), "{range}");
    }
}
