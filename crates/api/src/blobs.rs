//! `/v2/<name>/blobs/<digest>`: HEAD, GET (with ranges), DELETE.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use berth_oci::{Digest, ErrorCode, RepoName};
use berth_registry::{BlobRead, Origin, Registry, RegistryError};

use crate::error::{ApiError, ApiResult};
use crate::util::{empty, finish, parse_range, BadRange};
use crate::DIGEST_HEADER;

/// `HEAD`: size and digest, no body.
pub async fn head(reg: &Registry, repo: &RepoName, digest: &Digest) -> ApiResult {
    let size = reg.stat_blob(repo, digest).await?;
    let b = empty(StatusCode::OK)
        .header(header::CONTENT_LENGTH, size)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(DIGEST_HEADER, digest.as_str());
    finish(b, Body::empty())
}

/// `GET`: a 307 to the storage backend when redirects are on and it presigns (S3); else the
/// bytes, streamed; a single `Range` answers 206.
pub async fn get(
    reg: &Registry,
    repo: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    o: &Origin<'_>,
) -> ApiResult {
    let range = match parse_range(headers) {
        Ok(range) => range,
        Err(BadRange) => return Err(bad_range(reg.stat_blob(repo, digest).await?)),
    };
    let opened = reg
        .open_blob(repo, digest, range, o)
        .await
        .map_err(|e| match e {
            RegistryError::RangeInvalid { size } => {
                ApiError::from(e).header(header::CONTENT_RANGE, &unsatisfied(size))
            }
            other => other.into(),
        })?;
    let blob = match opened {
        BlobRead::Body(blob) => blob,
        BlobRead::Redirect(url) => {
            let b = empty(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, url)
                .header(DIGEST_HEADER, digest.as_str());
            return finish(b, Body::empty());
        }
    };
    let (status, len) = match blob.range {
        Some((first, last)) => (StatusCode::PARTIAL_CONTENT, last - first + 1),
        None => (StatusCode::OK, blob.size),
    };
    let mut b = empty(status)
        .header(header::CONTENT_LENGTH, len)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(DIGEST_HEADER, digest.as_str());
    if let Some((first, last)) = blob.range {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {first}-{last}/{}", blob.size),
        );
    }
    finish(b, Body::from_stream(blob.stream))
}

/// 416 for a `Range` header that is not one well-formed byte range, with the blob's size.
fn bad_range(size: u64) -> ApiError {
    ApiError::msg(
        ErrorCode::RangeInvalid,
        "Range must be a single bytes=first-last, first- or -suffix range",
    )
    .header(header::CONTENT_RANGE, &unsatisfied(size))
}

/// `Content-Range` value of a 416 answer for an object of `size` bytes.
fn unsatisfied(size: u64) -> String {
    format!("bytes */{size}")
}

/// `DELETE`: unlinks the blob from the repository (202).
pub async fn delete(reg: &Registry, repo: &RepoName, digest: &Digest, o: &Origin<'_>) -> ApiResult {
    reg.delete_blob(repo, digest, o)
        .await
        .map_err(unsupported_as_405)?;
    finish(
        empty(StatusCode::ACCEPTED).header(DIGEST_HEADER, digest.as_str()),
        Body::empty(),
    )
}

/// Deletes switched off answer 405 `UNSUPPORTED`, as registry:2 does.
pub fn unsupported_as_405(e: RegistryError) -> ApiError {
    let err = ApiError::from(e);
    if err.code() == ErrorCode::Unsupported {
        err.status(StatusCode::METHOD_NOT_ALLOWED)
    } else {
        err
    }
}
