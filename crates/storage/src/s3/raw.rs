//! The few S3 calls object_store does not expose, sent through object_store's own HTTP client
//! and SigV4 signer ([`AwsAuthorizer`]): `UploadPartCopy` (server-side assembly of a blob from
//! its part objects), `ListMultipartUploads` (leftover checks) and `CreateBucket` (test setup).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use object_store::aws::{AmazonS3, AwsAuthorizer, AwsCredential};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequestBody, ReqwestConnector,
};
use object_store::path::Path;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::deadline;
use super::options::S3Options;

/// Characters kept verbatim in a key inside a URL or `x-amz-copy-source` (as object_store).
const PATH_ENCODE_SET: AsciiSet = NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// Characters kept verbatim in a query value.
const QUERY_ENCODE_SET: AsciiSet = PATH_ENCODE_SET.add(b'/');
/// Attempts per raw request (connection errors and 5xx are retried; timeouts are not).
const ATTEMPTS: u32 = 3;

/// An error of a raw request (the caller wraps it in `StorageError::Backend`).
#[derive(Debug)]
pub(crate) struct RawError {
    /// What failed, for the log.
    pub(crate) message: String,
    /// `Other`, or a connection kind (`TimedOut`, `ConnectionAborted`) when the service was
    /// not reachable (connection or transfer failed on every attempt, or no answer in time).
    pub(crate) kind: io::ErrorKind,
}

impl From<String> for RawError {
    fn from(message: String) -> Self {
        RawError {
            message,
            kind: io::ErrorKind::Other,
        }
    }
}

impl RawError {
    /// A request that did not finish within `limit`.
    fn timed_out(what: &str, limit: Duration) -> Self {
        RawError {
            message: format!("{what}: {}", deadline::timed_out(limit)),
            kind: io::ErrorKind::TimedOut,
        }
    }

    /// A connection or transfer failure (a timeout of the idle limit included).
    fn unreachable(message: String, e: &HttpError) -> Self {
        let kind = match e.kind() {
            HttpErrorKind::Timeout => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::ConnectionAborted,
        };
        RawError { message, kind }
    }
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Signs and sends raw S3 requests for one bucket.
pub(crate) struct RawClient {
    http: HttpClient,
    store: Arc<AmazonS3>,
    bucket_url: String,
    bucket: String,
    region: String,
    /// Total limit of a small request ([`S3Options::request_timeout`]).
    request_timeout: Duration,
}

/// A multipart upload the bucket still holds (neither completed nor aborted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMultipart {
    /// The object key it would complete to (including any root directory).
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CopyPartResult {
    #[serde(rename = "ETag")]
    e_tag: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMultipartUploadsResult {
    #[serde(default)]
    upload: Vec<UploadEntry>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadEntry {
    key: String,
    upload_id: String,
}

impl RawClient {
    pub(crate) fn new(
        opts: &S3Options,
        bucket_url: &str,
        store: Arc<AmazonS3>,
    ) -> Result<Self, String> {
        let http = ReqwestConnector::default()
            .connect(&opts.client_options(bucket_url)?)
            .map_err(|e| format!("S3 HTTP client: {e}"))?;
        Ok(RawClient {
            http,
            store,
            bucket_url: bucket_url.to_string(),
            bucket: opts.bucket.clone(),
            region: opts.region_or_default(),
            request_timeout: opts.request_timeout,
        })
    }

    fn object_url(&self, path: &Path) -> String {
        format!("{}/{}", self.bucket_url, encode_path(path))
    }

    /// Copies the whole object `source` into part `part_number` (1-based) of multipart upload
    /// `upload_id` of `dest`; returns the part's ETag. A transfer (the service copies a whole
    /// part before it answers): only the idle timeout applies.
    pub(crate) async fn upload_part_copy(
        &self,
        dest: &Path,
        upload_id: &str,
        part_number: usize,
        source: &Path,
    ) -> Result<String, RawError> {
        let url = format!(
            "{}?partNumber={part_number}&uploadId={}",
            self.object_url(dest),
            utf8_percent_encode(upload_id, &QUERY_ENCODE_SET)
        );
        let copy_source = format!("{}/{}", self.bucket, encode_path(source));
        let headers = [("x-amz-copy-source", copy_source.as_str())];
        let body = self.send(Method::PUT, &url, &headers, None).await?;
        let result: CopyPartResult = quick_xml::de::from_reader(body.as_ref())
            .map_err(|e| format!("UploadPartCopy: unexpected response: {e}"))?;
        Ok(result.e_tag)
    }

    /// Multipart uploads in progress under the object-key prefix `prefix`.
    pub(crate) async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<PendingMultipart>, RawError> {
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut url = format!(
                "{}/?uploads&prefix={}",
                self.bucket_url,
                utf8_percent_encode(prefix, &QUERY_ENCODE_SET)
            );
            if let Some((key, id)) = &marker {
                url.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    utf8_percent_encode(key, &QUERY_ENCODE_SET),
                    utf8_percent_encode(id, &QUERY_ENCODE_SET)
                ));
            }
            let limit = Some(self.request_timeout);
            let body = self.send(Method::GET, &url, &[], limit).await?;
            let page: ListMultipartUploadsResult = quick_xml::de::from_reader(body.as_ref())
                .map_err(|e| format!("ListMultipartUploads: unexpected response: {e}"))?;
            out.extend(page.upload.into_iter().map(|u| PendingMultipart {
                key: u.key,
                upload_id: u.upload_id,
            }));
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(u)) => marker = Some((k, u)),
                _ => return Ok(out),
            }
        }
    }

    /// Creates the bucket (`PUT /bucket`); an existing bucket owned by us is fine.
    pub(crate) async fn create_bucket(&self) -> Result<(), RawError> {
        let url = format!("{}/", self.bucket_url);
        match self
            .send(Method::PUT, &url, &[], Some(self.request_timeout))
            .await
        {
            Err(e) if e.message.contains("BucketAlreadyOwnedByYou") => Ok(()),
            other => other.map(drop),
        }
    }

    /// Sends a body-less signed request, retrying connection errors and 5xx responses; with a
    /// `limit`, all attempts together end after that long.
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        limit: Option<Duration>,
    ) -> Result<Bytes, RawError> {
        let attempts = self.send_with_retries(&method, url, headers);
        let Some(limit) = limit else {
            return attempts.await;
        };
        tokio::time::timeout(limit, attempts)
            .await
            .unwrap_or_else(|_| Err(RawError::timed_out(&format!("{method} {url}"), limit)))
    }

    async fn send_with_retries(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Bytes, RawError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(method.clone(), url, headers).await {
                Err((retry, e)) if retry && attempt < ATTEMPTS => {
                    tracing::debug!(%url, attempt, error = %e, "retrying S3 request");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                other => return other.map_err(|(_, e)| e),
            }
        }
    }

    /// One attempt; the error says whether it is worth retrying (a timeout is not: the
    /// service is stalled, and another attempt would only multiply the wait).
    async fn send_once(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Bytes, (bool, RawError)> {
        let credential = self.credential().await.map_err(|e| (false, e))?;
        let unreachable = |message: String, e: HttpError| {
            let retry = e.kind() != HttpErrorKind::Timeout;
            (retry, RawError::unreachable(message, &e))
        };
        let mut builder = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder
            .body(HttpRequestBody::from(Bytes::new()))
            .map_err(|e| (false, format!("building {method} {url}: {e}").into()))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| (false, format!("signing {method} {url}: {e}").into()))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| unreachable(format!("{method} {url}: {e}"), e))?;
        let status = response.status();
        let body =
            response.into_body().bytes().await.map_err(|e| {
                unreachable(format!("{method} {url}: reading the response: {e}"), e)
            })?;
        // UploadPartCopy may fail after a 200 status line: the error is then in the body
        let error_body = body.starts_with(b"<?xml") && find_tag(&body, "Code").is_some();
        if status.is_success() && !error_body {
            return Ok(body);
        }
        let code = find_tag(&body, "Code").unwrap_or_default();
        let retry = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        Err((
            retry || (status.is_success() && code == "InternalError"),
            format!("{method} {url}: {status} {code}").into(),
        ))
    }

    async fn credential(&self) -> Result<Arc<AwsCredential>, RawError> {
        self.store
            .credentials()
            .get_credential()
            .await
            .map_err(|e| format!("S3 credentials: {e}").into())
    }
}

/// The object-key part of a URL for `path`.
fn encode_path(path: &Path) -> String {
    utf8_percent_encode(path.as_ref(), &PATH_ENCODE_SET).to_string()
}

/// The text of the first `<tag>…</tag>` in an XML body (enough for S3 error codes).
fn find_tag(body: &[u8], tag: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_copy_part_and_list_results() {
        let copy = br#"<?xml version="1.0" encoding="UTF-8"?>
<CopyPartResult><LastModified>2026-01-01T00:00:00Z</LastModified><ETag>"abc"</ETag></CopyPartResult>"#;
        let r: CopyPartResult = quick_xml::de::from_reader(&copy[..]).unwrap();
        assert_eq!(r.e_tag, "\"abc\"");
        let list = br#"<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>
<Upload><Key>a/b</Key><UploadId>u1</UploadId></Upload><Upload><Key>a/c</Key><UploadId>u2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        let r: ListMultipartUploadsResult = quick_xml::de::from_reader(&list[..]).unwrap();
        let keys: Vec<_> = r
            .upload
            .iter()
            .map(|u| (&u.key[..], &u.upload_id[..]))
            .collect();
        assert_eq!(keys, [("a/b", "u1"), ("a/c", "u2")]);
        let empty =
            br#"<ListMultipartUploadsResult><Bucket>b</Bucket></ListMultipartUploadsResult>"#;
        let r: ListMultipartUploadsResult = quick_xml::de::from_reader(&empty[..]).unwrap();
        assert!(r.upload.is_empty() && !r.is_truncated);
    }

    #[test]
    fn error_codes_and_paths() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code></Error>";
        assert_eq!(find_tag(body, "Code").as_deref(), Some("NoSuchKey"));
        assert_eq!(find_tag(b"<a></a>", "Code"), None);
        assert_eq!(encode_path(&Path::from("root dir/x")), "root%20dir/x");
        let key = "docker/registry/v2/blobs/sha256/ab/ab12/data";
        assert_eq!(encode_path(&Path::from(key)), key);
    }
}
