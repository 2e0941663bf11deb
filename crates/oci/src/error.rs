//! The one table mapping OCI error codes to HTTP statuses.

/// Error codes from the OCI Distribution Spec (plus registry:2's `TOOMANYREQUESTS`).
///
/// Every 4xx/5xx answer Berth sends carries exactly one of these in its `{"errors":[…]}` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// Invalid tag (registry:2 reports tag errors as `TAG_INVALID`).
    TagInvalid,
    /// Range not satisfiable (Distribution uses this code with 416).
    RangeInvalid,
    /// Request body too large.
    SizeTooLarge,
    /// A pagination parameter (`n`) is not a number (registry:2's code).
    PaginationNumberInvalid,
    /// The request (its body) did not arrive in time (Berth's code; no OCI code covers it).
    RequestTimeout,
    /// Unexpected server-side failure; details are logged, never sent.
    Unknown,
    /// A dependency (storage, metadata) is unavailable.
    Unavailable,
}

impl ErrorCode {
    /// `(code string, HTTP status, default message)` — the single source of truth.
    pub fn info(self) -> (&'static str, u16, &'static str) {
        use ErrorCode::*;
        match self {
            BlobUnknown => ("BLOB_UNKNOWN", 404, "blob unknown to registry"),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                404,
                "blob upload unknown to registry",
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                400,
                "provided digest did not match uploaded content",
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                400,
                "manifest references a blob unknown to registry",
            ),
            ManifestInvalid => ("MANIFEST_INVALID", 400, "manifest invalid"),
            ManifestUnknown => ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
            NameInvalid => ("NAME_INVALID", 400, "invalid repository name"),
            NameUnknown => ("NAME_UNKNOWN", 404, "repository name not known to registry"),
            SizeInvalid => (
                "SIZE_INVALID",
                400,
                "provided length did not match content length",
            ),
            Unauthorized => ("UNAUTHORIZED", 401, "authentication required"),
            Denied => ("DENIED", 403, "requested access to the resource is denied"),
            Unsupported => ("UNSUPPORTED", 405, "the operation is unsupported"),
            TooManyRequests => ("TOOMANYREQUESTS", 429, "too many requests"),
            TagInvalid => ("TAG_INVALID", 400, "manifest tag did not match URI"),
            RangeInvalid => ("RANGE_INVALID", 416, "requested range not satisfiable"),
            SizeTooLarge => ("SIZE_INVALID", 413, "request body too large"),
            PaginationNumberInvalid => (
                "PAGINATION_NUMBER_INVALID",
                400,
                "invalid number of results requested",
            ),
            RequestTimeout => ("REQUEST_TIMEOUT", 408, "request timed out"),
            Unknown => ("UNKNOWN", 500, "unknown error"),
            Unavailable => ("UNAVAILABLE", 503, "service unavailable"),
        }
    }

    /// The code string, e.g. `BLOB_UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        self.info().0
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        self.info().1
    }

    /// The default human-readable message.
    pub fn message(self) -> &'static str {
        self.info().2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        assert_eq!(ErrorCode::BlobUnknown.status(), 404);
        assert_eq!(ErrorCode::DigestInvalid.as_str(), "DIGEST_INVALID");
        assert_eq!(ErrorCode::Unauthorized.status(), 401);
        assert_eq!(ErrorCode::SizeTooLarge.status(), 413);
        assert_eq!(ErrorCode::RequestTimeout.status(), 408);
        assert_eq!(ErrorCode::Unknown.status(), 500);
    }

    /// Spec, "Error Codes": the `code` field MUST contain only uppercase letters and underscores.
    #[test]
    fn code_strings_are_uppercase_letters_and_underscores() {
        use ErrorCode::*;
        let all = [
            BlobUnknown,
            BlobUploadInvalid,
            BlobUploadUnknown,
            DigestInvalid,
            ManifestBlobUnknown,
            ManifestInvalid,
            ManifestUnknown,
            NameInvalid,
            NameUnknown,
            SizeInvalid,
            Unauthorized,
            Denied,
            Unsupported,
            TooManyRequests,
            TagInvalid,
            RangeInvalid,
            SizeTooLarge,
            PaginationNumberInvalid,
            RequestTimeout,
            Unknown,
            Unavailable,
        ];
        for code in all {
            let s = code.as_str();
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{s}"
            );
            assert!((400..600).contains(&code.status()), "{s}");
        }
        assert_eq!(
            TooManyRequests.info(),
            ("TOOMANYREQUESTS", 429, "too many requests")
        );
    }
}
