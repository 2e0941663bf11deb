//! Small request/response helpers shared by the handlers.

use std::io;

use axum::body::Body;
use axum::http::{header, HeaderMap, Response, StatusCode};
use berth_oci::{quoted, ErrorCode};
use berth_registry::{ByteStream, RangeSpec};
use futures::TryStreamExt;

use crate::error::ApiError;

/// Parsed query string; keys may repeat (`?tag=a&tag=b`).
#[derive(Clone, Debug)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses the raw query string (absent → empty).
    pub fn parse(raw: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Drops every value of `keys`.
    pub fn remove(&mut self, keys: &[&str]) {
        self.0.retain(|(k, _)| !keys.contains(&k.as_str()));
    }

    /// `n` as a page size.
    pub fn page_size(&self) -> Result<Option<usize>, ApiError> {
        self.get("n")
            .map(|n| {
                n.parse::<usize>().map_err(|_| {
                    ApiError::msg(
                        ErrorCode::PaginationNumberInvalid,
                        format!("n must be a non-negative integer, got {}", quoted(n)),
                    )
                })
            })
            .transpose()
    }
}

/// A response builder with the given status (hyper derives `Content-Length` from the body unless
/// a handler sets it, as HEAD handlers must).
pub fn empty(status: StatusCode) -> axum::http::response::Builder {
    Response::builder().status(status)
}

/// Finishes a builder; header values here are built from validated types, so failure is a bug.
pub fn finish(b: axum::http::response::Builder, body: Body) -> Result<Response<Body>, ApiError> {
    b.body(body).map_err(|e| {
        tracing::error!(error = %e, "could not build response");
        ApiError::new(ErrorCode::Unknown)
    })
}

/// The request body as a byte stream for storage.
pub fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(io::Error::other))
}

/// Whether the request carries a body (a non-zero `Content-Length` or chunked encoding).
pub fn has_body(headers: &HeaderMap) -> bool {
    match headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
    {
        Some(len) => len.trim() != "0",
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// Declared `Content-Length`, if present and numeric.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::msg(ErrorCode::SizeInvalid, "Content-Length is not a number")),
    }
}

/// A `Range: bytes=…` header that cannot be served as one range: malformed, several ranges, or a
/// first byte position too large for `u64`. Answered with 416 and `Content-Range: bytes */size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadRange;

/// Parses a `Range: bytes=…` header. `Ok(None)`: no range (or another unit, which RFC 9110 says to
/// ignore). A last byte position past `u64` means "to the end" (RFC 9110 §14.1.2), as one past
/// the object does; malformed byte ranges and multi-range requests are [`BadRange`].
pub fn parse_range(headers: &HeaderMap) -> Result<Option<RangeSpec>, BadRange> {
    let Some(raw) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let raw = raw.to_str().map_err(|_| BadRange)?.trim();
    let Some(spec) = raw.strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Err(BadRange);
    }
    let (a, b) = spec.trim().split_once('-').ok_or(BadRange)?;
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, false) => Ok(Some(RangeSpec::Suffix(range_pos(b)?.ok_or(BadRange)?))),
        (false, true) => Ok(Some(RangeSpec::From(range_pos(a)?.ok_or(BadRange)?, None))),
        (false, false) => {
            let first = range_pos(a)?.ok_or(BadRange)?;
            Ok(Some(RangeSpec::From(first, range_pos(b)?)))
        }
        (true, true) => Err(BadRange),
    }
}

/// A byte position: ASCII digits only; `Ok(None)` when it does not fit in `u64`.
fn range_pos(s: &str) -> Result<Option<u64>, BadRange> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadRange);
    }
    Ok(s.parse::<u64>().ok())
}

/// Parses an upload `Content-Range` (`first-last`, also `bytes first-last/total` and
/// `bytes=first-last`). Returns `(first, last)`.
pub fn parse_content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(raw) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::msg(
            ErrorCode::BlobUploadInvalid,
            "Content-Range must be first-last",
        )
    };
    let s = raw.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes")
        .map(|r| r.trim_start_matches(['=', ' ']))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = b.trim().parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    Ok(Some((first, last)))
}

/// `Range` header value for an upload holding `size` bytes (registry:2 answers `0-0` when empty).
pub fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            parse_range(&with(header::RANGE, "bytes=0-9")).unwrap(),
            Some(RangeSpec::From(0, Some(9)))
        );
        assert_eq!(
            parse_range(&with(header::RANGE, "bytes=5-")).unwrap(),
            Some(RangeSpec::From(5, None))
        );
        assert_eq!(
            parse_range(&with(header::RANGE, "bytes=-5")).unwrap(),
            Some(RangeSpec::Suffix(5))
        );
        assert_eq!(
            parse_range(&with(header::RANGE, "items=0-1")).unwrap(),
            None
        );
        assert_eq!(
            parse_range(&with(header::RANGE, "bytes=0-99999999999999999999999")).unwrap(),
            Some(RangeSpec::From(0, None))
        );
        for bad in [
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=abc",
            "bytes=0-1,3-4",
            "bytes=1",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "bytes=99999999999999999999999-99999999999999999999999",
            "bytes=-99999999999999999999999",
        ] {
            assert_eq!(
                parse_range(&with(header::RANGE, bad)),
                Err(BadRange),
                "{bad}"
            );
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range(&with(header::CONTENT_RANGE, "0-99")).unwrap(),
            Some((0, 99))
        );
        assert_eq!(
            parse_content_range(&with(header::CONTENT_RANGE, "bytes 100-199/*")).unwrap(),
            Some((100, 199))
        );
        assert_eq!(
            parse_content_range(&with(header::CONTENT_RANGE, "bytes=5-6")).unwrap(),
            Some((5, 6))
        );
        for bad in ["", "9-1", "a-b", "100"] {
            assert!(
                parse_content_range(&with(header::CONTENT_RANGE, bad)).is_err(),
                "{bad}"
            );
        }
    }
}
