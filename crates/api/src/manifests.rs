//! `/v2/<name>/manifests/<reference>`: PUT, GET, HEAD, DELETE.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use berth_oci::{ErrorCode, Reference, RepoName, Tag};
use berth_registry::{Origin, Registry, StoredManifest, MANIFEST_READ_LIMIT};
use http_body_util::{BodyExt, Limited};

use crate::blobs::unsupported_as_405;
use crate::error::{ApiError, ApiResult};
use crate::util::{content_length, empty, finish, Query};
use crate::{DIGEST_HEADER, SUBJECT_HEADER, TAG_HEADER};

/// `PUT`: stores the manifest; `?tag=` may name more tags, each answered with an `OCI-Tag`
/// header once applied.
pub async fn put(
    reg: &Registry,
    repo: &RepoName,
    reference: &Reference,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
    o: &Origin<'_>,
) -> ApiResult {
    let tags = q
        .all("tag")
        .map(|t| Tag::parse(t).map_err(|e| ApiError::msg(ErrorCode::TagInvalid, e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = read_limited(headers, body).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let put = reg
        .put_manifest(repo, reference, content_type, bytes, &tags, o)
        .await?;
    let mut b = empty(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/v2/{repo}/manifests/{}", put.digest),
        )
        .header(DIGEST_HEADER, put.digest.as_str());
    if let Some(s) = &put.subject {
        b = b.header(SUBJECT_HEADER, s.as_str());
    }
    for t in &put.extra_tags {
        b = b.header(TAG_HEADER, t.as_str());
    }
    finish(b, Body::empty())
}

/// `GET`: the stored bytes with their stored media type.
pub async fn get(
    reg: &Registry,
    repo: &RepoName,
    reference: &Reference,
    o: &Origin<'_>,
) -> ApiResult {
    let m = reg.pull_manifest(repo, reference, o).await?;
    finish(found(&m), Body::from(m.bytes))
}

/// `HEAD`: what a GET would answer, without the body (and without a pull event).
pub async fn head(reg: &Registry, repo: &RepoName, reference: &Reference) -> ApiResult {
    let m = reg.get_manifest(repo, reference).await?;
    finish(found(&m), Body::empty())
}

fn found(m: &StoredManifest) -> axum::http::response::Builder {
    empty(StatusCode::OK)
        .header(header::CONTENT_TYPE, m.media_type.as_str())
        .header(header::CONTENT_LENGTH, m.bytes.len())
        .header(header::ETAG, format!("\"{}\"", m.digest))
        .header(DIGEST_HEADER, m.digest.as_str())
}

/// `DELETE`: by digest removes the manifest and its tags, by tag only the tag (202).
pub async fn delete(
    reg: &Registry,
    repo: &RepoName,
    reference: &Reference,
    o: &Origin<'_>,
) -> ApiResult {
    reg.delete_manifest(repo, reference, o)
        .await
        .map_err(unsupported_as_405)?;
    finish(empty(StatusCode::ACCEPTED), Body::empty())
}

/// Reads at most the manifest limit; anything larger is refused with 413 before it is buffered.
async fn read_limited(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    let too_large =
        || ApiError::new(ErrorCode::SizeTooLarge).detail("manifests are limited to 4 MiB");
    if content_length(headers)?.is_some_and(|len| len >= MANIFEST_READ_LIMIT as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MANIFEST_READ_LIMIT - 1).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::msg(
            ErrorCode::ManifestInvalid,
            format!("could not read the request body: {e}"),
        )),
    }
}
