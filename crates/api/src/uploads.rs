//! `/v2/<name>/blobs/uploads/[<id>]`: start (plain, monolithic, mount), PATCH, GET, PUT, DELETE.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use berth_oci::{quoted, Algorithm, Digest, ErrorCode, RepoName, UploadId};
use berth_registry::{Mount, Origin, Registry, RegistryError, UploadProgress};

use crate::error::{ApiError, ApiResult};
use crate::util::{
    body_stream, content_length, empty, finish, has_body, parse_content_range, upload_range, Query,
};
use crate::{CHUNK_MIN_HEADER, DIGEST_HEADER, UPLOAD_UUID_HEADER};

/// `POST /v2/<name>/blobs/uploads/`: a mount (`?mount=&from=`), a monolithic upload
/// (`?digest=` with the body) or a new session (hashing with `?digest-algorithm=`).
pub async fn start(
    reg: &Registry,
    repo: &RepoName,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
    o: &Origin<'_>,
) -> ApiResult {
    if let Some(mount) = q.get("mount") {
        let digest = parse_digest(mount)?;
        let from = q
            .get("from")
            .map(|f| {
                RepoName::parse(f).map_err(|e| ApiError::msg(ErrorCode::NameInvalid, e.to_string()))
            })
            .transpose()?;
        return match reg.mount_blob(repo, &digest, from.as_ref(), o).await? {
            Mount::Mounted(_) => created(repo, &digest),
            Mount::Started(p) => session_response(reg, StatusCode::ACCEPTED, repo, &p),
        };
    }
    if let Some(d) = q.get("digest") {
        let digest = parse_digest(d)?;
        reg.put_blob(repo, &digest, body_stream(body), o)
            .await
            .map_err(upload_error)?;
        return created(repo, &digest);
    }
    if has_body(headers) {
        return Err(ApiError::msg(
            ErrorCode::DigestInvalid,
            "a POST with a body needs ?digest=",
        ));
    }
    let p = reg.start_upload(repo, digest_algorithm(q)?).await?;
    session_response(reg, StatusCode::ACCEPTED, repo, &p)
}

/// `?digest-algorithm=` of a session start (sha256 when absent); anything else is 400.
fn digest_algorithm(q: &Query) -> Result<Algorithm, ApiError> {
    q.get("digest-algorithm")
        .map_or(Ok(Algorithm::Sha256), |a| {
            Algorithm::parse(a).map_err(|e| ApiError::msg(ErrorCode::DigestInvalid, e.to_string()))
        })
}

/// `PATCH`: appends a chunk (streamed, or with `Content-Range`).
pub async fn patch(
    reg: &Registry,
    repo: &RepoName,
    id: &UploadId,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let start = chunk_start(headers)?;
    let size = reg
        .patch_upload(repo, id, start, body_stream(body))
        .await
        .map_err(upload_error)?;
    session_response(
        reg,
        StatusCode::ACCEPTED,
        repo,
        &UploadProgress {
            id: id.clone(),
            size,
        },
    )
}

/// `GET`: where the upload stands (204 with `Range`).
pub async fn status(reg: &Registry, repo: &RepoName, id: &UploadId) -> ApiResult {
    let size = reg.upload_status(repo, id).await?;
    session_response(
        reg,
        StatusCode::NO_CONTENT,
        repo,
        &UploadProgress {
            id: id.clone(),
            size,
        },
    )
}

/// `PUT ?digest=`: completes the upload, with or without a final chunk.
pub async fn finish_upload(
    reg: &Registry,
    repo: &RepoName,
    id: &UploadId,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
    o: &Origin<'_>,
) -> ApiResult {
    let digest = parse_digest(
        q.get("digest")
            .ok_or_else(|| ApiError::msg(ErrorCode::DigestInvalid, "?digest= is required"))?,
    )?;
    let start = chunk_start(headers)?;
    // An empty body appends nothing, so the stream is always passed (no header guessing).
    reg.finish_upload(repo, id, &digest, start, Some(body_stream(body)), o)
        .await
        .map_err(upload_error)?;
    created(repo, &digest)
}

/// `DELETE`: cancels the upload (204).
pub async fn cancel(reg: &Registry, repo: &RepoName, id: &UploadId) -> ApiResult {
    reg.cancel_upload(repo, id).await?;
    finish(empty(StatusCode::NO_CONTENT), Body::empty())
}

/// The first byte declared by `Content-Range`, after checking it against `Content-Length`.
fn chunk_start(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some((first, last)) = parse_content_range(headers)? else {
        return Ok(None);
    };
    if let Some(len) = content_length(headers)? {
        if len != last - first + 1 {
            return Err(ApiError::msg(
                ErrorCode::RangeInvalid,
                format!("Content-Range {first}-{last} does not match Content-Length {len}"),
            ));
        }
    }
    Ok(Some(first))
}

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s)
        .map_err(|e| ApiError::msg(ErrorCode::DigestInvalid, format!("{e}: {}", quoted(s))))
}

/// Out-of-order chunks answer 416 with the upload's current `Range`.
fn upload_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::RangeInvalid { size } => ApiError::from(e)
            .detail(format!(
                "upload holds {size} bytes; the next chunk must start at {size}"
            ))
            .header(header::RANGE, &upload_range(size)),
        other => other.into(),
    }
}

fn created(repo: &RepoName, digest: &Digest) -> ApiResult {
    let b = empty(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
        .header(DIGEST_HEADER, digest.as_str());
    finish(b, Body::empty())
}

fn session_response(
    reg: &Registry,
    status: StatusCode,
    repo: &RepoName,
    p: &UploadProgress,
) -> ApiResult {
    let mut b = empty(status)
        .header(
            header::LOCATION,
            format!("/v2/{repo}/blobs/uploads/{}", p.id),
        )
        .header(header::RANGE, upload_range(p.size))
        .header(UPLOAD_UUID_HEADER, p.id.as_str());
    if let Some(min) = reg.min_chunk_len() {
        b = b.header(CHUNK_MIN_HEADER, min);
    }
    finish(b, Body::empty())
}
