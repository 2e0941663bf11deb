//! The OCI distribution operations the workloads are made of. Each returns how many requests it
//! sent so reports can show requests per operation.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, LINK, LOCATION};
use http::{Method, StatusCode};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::content::{sha256_of, Blob, OCI_MANIFEST};
use crate::http::{drain, drain_sha256, header, read_small, status_error, Client, Req};
use crate::{BenchError, Result};

const OCTETS: &str = "application/octet-stream";
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
const CONTENT_RANGE: HeaderName = HeaderName::from_static("content-range");
/// Largest listing page accepted (Distribution returns all tags in one page).
const MAX_PAGE_BYTES: usize = 64 << 20;

/// Starts an upload session; returns its Location.
pub(crate) async fn start_upload(c: &Client, repo: &str) -> Result<String> {
    let req = Req::new(Method::POST, format!("/v2/{repo}/blobs/uploads/"));
    let resp = c.expect(&req, &[202]).await?;
    let loc = location(&req, &resp)?;
    drain(resp).await?;
    Ok(loc)
}

/// Monolithic push: POST, then one PUT with the whole blob. Returns requests sent (2).
pub(crate) async fn push_blob(c: &Client, repo: &str, blob: &Blob) -> Result<u64> {
    let loc = start_upload(c, repo).await?;
    finish_upload(c, &loc, blob, blob.body()).await?;
    Ok(2)
}

/// Chunked push: POST, one PATCH per chunk (following each new Location), then a PUT with the
/// digest and no body. Returns requests sent.
pub(crate) async fn push_blob_chunked(
    c: &Client,
    repo: &str,
    blob: &Blob,
    chunk: u64,
) -> Result<u64> {
    let mut loc = start_upload(c, repo).await?;
    let mut requests = 1;
    let mut start = 0;
    while start < blob.size {
        let end = (start + chunk).min(blob.size);
        let range = HeaderValue::from_str(&format!("{start}-{}", end - 1))
            .map_err(|e| BenchError::Protocol(e.to_string()))?;
        let mut req = Req::new(Method::PATCH, loc.clone())
            .header(CONTENT_TYPE, OCTETS)
            .body(blob.range(start, end));
        req.headers.push((CONTENT_RANGE, range));
        let resp = c.expect(&req, &[202]).await?;
        loc = location(&req, &resp)?;
        drain(resp).await?;
        requests += 1;
        start = end;
    }
    finish_upload(c, &loc, blob, crate::http::Body::empty()).await?;
    Ok(requests + 1)
}

async fn finish_upload(c: &Client, loc: &str, blob: &Blob, body: crate::http::Body) -> Result<()> {
    let sep = if loc.contains('?') { '&' } else { '?' };
    let digest: String = form_urlencoded::byte_serialize(blob.digest.as_bytes()).collect();
    let req = Req::new(Method::PUT, format!("{loc}{sep}digest={digest}"))
        .header(CONTENT_TYPE, OCTETS)
        .body(body);
    let resp = c.expect(&req, &[201]).await?;
    drain(resp).await?;
    Ok(())
}

/// Cross-repository mount. `Ok(true)` when mounted; when the registry started an upload instead,
/// the blob is pushed to it (`Ok(false)`). Returns (mounted, requests).
pub(crate) async fn mount_or_push(
    c: &Client,
    repo: &str,
    blob: &Blob,
    from: &str,
) -> Result<(bool, u64)> {
    let digest: String = form_urlencoded::byte_serialize(blob.digest.as_bytes()).collect();
    let from: String = form_urlencoded::byte_serialize(from.as_bytes()).collect();
    let req = Req::new(
        Method::POST,
        format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"),
    );
    let resp = c.expect(&req, &[201, 202]).await?;
    if resp.status() == StatusCode::CREATED {
        drain(resp).await?;
        return Ok((true, 1));
    }
    let loc = location(&req, &resp)?;
    drain(resp).await?;
    finish_upload(c, &loc, blob, blob.body()).await?;
    Ok((false, 2))
}

/// `HEAD` a blob: its size, or `None` on 404.
pub(crate) async fn head_blob(c: &Client, repo: &str, digest: &str) -> Result<Option<u64>> {
    let req = Req::new(Method::HEAD, format!("/v2/{repo}/blobs/{digest}"));
    let resp = c.expect(&req, &[200, 404]).await?;
    let size = match resp.status() {
        StatusCode::OK => Some(content_length(&req, &resp)?),
        _ => None,
    };
    drain(resp).await?;
    Ok(size)
}

/// `GET` a blob and stream it to nowhere (hashing it when `verify`); follows one redirect.
/// Returns the bytes received.
pub(crate) async fn get_blob(
    c: &Client,
    repo: &str,
    blob: (&str, u64),
    verify: bool,
) -> Result<u64> {
    let (digest, size) = blob;
    let req = Req::new(Method::GET, format!("/v2/{repo}/blobs/{digest}"));
    let mut resp = c.expect(&req, &[200, 302, 307]).await?;
    if resp.status() != StatusCode::OK {
        let target = location(&req, &resp)?;
        drain(resp).await?;
        let redirected = Req::new(Method::GET, target);
        resp = c.raw(&redirected, None).await?;
        if resp.status() != StatusCode::OK {
            return Err(status_error(&redirected.what(), resp).await);
        }
    }
    let (n, got) = if verify {
        drain_sha256(resp).await?
    } else {
        (drain(resp).await?, digest.to_string())
    };
    if n != size || got != digest {
        return Err(BenchError::Protocol(format!(
            "{}: got {n} bytes with digest {got}, expected {size} bytes {digest}",
            req.what()
        )));
    }
    Ok(n)
}

/// `PUT` a manifest under a tag or digest.
pub(crate) async fn put_manifest(
    c: &Client,
    repo: &str,
    reference: &str,
    bytes: &Bytes,
) -> Result<()> {
    let req = Req::new(Method::PUT, format!("/v2/{repo}/manifests/{reference}"))
        .header(CONTENT_TYPE, OCI_MANIFEST)
        .body(crate::http::Body::from_frames([bytes.clone()]));
    let resp = c.expect(&req, &[201]).await?;
    drain(resp).await?;
    Ok(())
}

/// Whether a manifest exists (`HEAD`).
pub(crate) async fn manifest_exists(c: &Client, repo: &str, reference: &str) -> Result<bool> {
    let req = Req::new(Method::HEAD, format!("/v2/{repo}/manifests/{reference}"))
        .header(ACCEPT, MANIFEST_ACCEPT);
    let resp = c.expect(&req, &[200, 404]).await?;
    let found = resp.status() == StatusCode::OK;
    drain(resp).await?;
    Ok(found)
}

/// `GET` a manifest; checks the body against `Docker-Content-Digest` when the registry sends one.
pub(crate) async fn get_manifest(c: &Client, repo: &str, reference: &str) -> Result<Bytes> {
    let req = Req::new(Method::GET, format!("/v2/{repo}/manifests/{reference}"))
        .header(ACCEPT, MANIFEST_ACCEPT);
    let resp = c.expect(&req, &[200]).await?;
    let claimed =
        header(&resp, &HeaderName::from_static("docker-content-digest")).map(str::to_string);
    let body = read_small(resp, 4 << 20).await?;
    if body.is_empty() {
        return Err(BenchError::Protocol(format!(
            "{}: empty manifest",
            req.what()
        )));
    }
    if let Some(claimed) = claimed.filter(|d| d.starts_with("sha256:")) {
        let actual = sha256_of(&body);
        if claimed != actual {
            return Err(BenchError::Protocol(format!(
                "{}: body digest {actual} but Docker-Content-Digest {claimed}",
                req.what()
            )));
        }
    }
    Ok(body)
}

#[derive(Deserialize)]
struct Page {
    tags: Option<Vec<IgnoredAny>>,
    repositories: Option<Vec<IgnoredAny>>,
}

/// What a paginated walk saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Walk {
    pub items: u64,
    pub pages: u64,
    pub bytes: u64,
}

/// Walks a tag list or catalog from `first`, following `Link: <…>; rel="next"`, at most
/// `max_pages` pages.
pub(crate) async fn walk_pages(c: &Client, first: String, max_pages: u64) -> Result<Walk> {
    let mut next = Some(first);
    let mut walk = Walk::default();
    while let Some(target) = next.take() {
        if walk.pages >= max_pages {
            return Err(BenchError::Protocol(format!(
                "pagination did not end after {max_pages} pages (at {target})"
            )));
        }
        let req = Req::new(Method::GET, target);
        let resp = c.expect(&req, &[200]).await?;
        next = header(&resp, &LINK).and_then(next_link);
        let body = read_small(resp, MAX_PAGE_BYTES).await?;
        let page: Page = serde_json::from_slice(&body)
            .map_err(|e| BenchError::Protocol(format!("{}: bad listing JSON: {e}", req.what())))?;
        let items = page.tags.or(page.repositories).map_or(0, |v| v.len());
        walk.items += items as u64;
        walk.pages += 1;
        walk.bytes += body.len() as u64;
    }
    Ok(walk)
}

/// The target of a `Link: <…>; rel="next"` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',')
        .find(|part| part.contains("rel=\"next\"") || part.contains("rel=next"))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part[start..].find('>')? + start;
            Some(part[start..end].to_string())
        })
}

fn location(req: &Req, resp: &http::Response<hyper::body::Incoming>) -> Result<String> {
    header(resp, &LOCATION)
        .map(str::to_string)
        .ok_or_else(|| BenchError::Protocol(format!("{}: no Location header", req.what())))
}

fn content_length(req: &Req, resp: &http::Response<hyper::body::Incoming>) -> Result<u64> {
    header(resp, &http::header::CONTENT_LENGTH)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::Protocol(format!("{}: no Content-Length", req.what())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/_catalog?n=100&last=a%2Fb>; rel="next""#).as_deref(),
            Some("/v2/_catalog?n=100&last=a%2Fb")
        );
        assert_eq!(
            next_link(r#"<http://r/v2/x/tags/list?last=t1&n=2>; rel=next"#).as_deref(),
            Some("http://r/v2/x/tags/list?last=t1&n=2")
        );
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
    }

    #[test]
    fn pages_count_items_without_keeping_them() {
        let p: Page =
            serde_json::from_str(r#"{"name":"x","tags":["a","b","c"]}"#).unwrap_or(Page {
                tags: None,
                repositories: None,
            });
        assert_eq!(p.tags.map(|t| t.len()), Some(3));
        let p: Page = serde_json::from_str(r#"{"repositories":[]}"#).unwrap_or(Page {
            tags: None,
            repositories: None,
        });
        assert_eq!(p.repositories.map(|t| t.len()), Some(0));
    }
}
