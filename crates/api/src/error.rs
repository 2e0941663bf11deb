//! `ApiError`: every failure becomes an OCI error body with the status from the one code table.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_oci::ErrorCode;
use berth_registry::RegistryError;

use crate::endpoint::PathError;

/// An error answer: OCI code, message, optional detail, optional status override and headers.
/// Boxed so `Result<_, ApiError>` stays one pointer wide on the success path.
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    code: ErrorCode,
    message: String,
    detail: Option<serde_json::Value>,
    status: Option<StatusCode>,
    headers: HeaderMap,
}

impl ApiError {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        ApiError(Box::new(Inner {
            code,
            message: code.message().to_string(),
            detail: None,
            status: None,
            headers: HeaderMap::new(),
        }))
    }

    /// An error with a specific message.
    pub fn msg(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(code);
        e.0.message = message.into();
        e
    }

    /// Adds a detail value.
    pub fn detail(mut self, detail: impl Into<serde_json::Value>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// Overrides the table's status (only where the spec names another status for the same code).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.0.status = Some(status);
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, v);
        }
        self
    }

    /// The status this error answers with.
    pub fn status_code(&self) -> StatusCode {
        self.0
            .status
            .or_else(|| StatusCode::from_u16(self.0.code.status()).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The OCI code.
    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let this = *self.0;
        let mut entry = serde_json::json!({ "code": this.code.as_str(), "message": this.message });
        if let Some(d) = this.detail {
            entry["detail"] = d;
        }
        let body = serde_json::json!({ "errors": [entry] }).to_string();
        let mut resp = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        resp.headers_mut().extend(this.headers);
        resp
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        if e.is_internal() {
            tracing::error!(error = %e, "request failed");
            return ApiError::msg(e.code(), e.public_message());
        }
        let mut err = ApiError::msg(e.code(), e.to_string());
        if let Some(d) = e.detail() {
            err = err.detail(d);
        }
        err
    }
}

impl From<PathError> for ApiError {
    fn from(e: PathError) -> Self {
        match e {
            PathError::NotFound => ApiError::msg(ErrorCode::Unsupported, "unknown endpoint")
                .status(StatusCode::NOT_FOUND),
            PathError::Name(m) => ApiError::msg(ErrorCode::NameInvalid, m),
            PathError::Digest(m) => ApiError::msg(ErrorCode::DigestInvalid, m),
            PathError::ManifestReference {
                digest: true,
                message,
            } => ApiError::msg(ErrorCode::DigestInvalid, message),
            PathError::ManifestReference { message, .. } => {
                ApiError::msg(ErrorCode::TagInvalid, message)
            }
            PathError::Upload => {
                ApiError::msg(ErrorCode::BlobUploadUnknown, "upload id is not valid")
            }
        }
    }
}

impl ApiError {
    /// The answer to a path that does not parse, for a request with `method`: a manifest
    /// reference that can name no manifest is a manifest that does not exist for reads and
    /// deletes (404 `MANIFEST_UNKNOWN`, as registry:2 answers), and an invalid one for pushes.
    pub fn from_path(e: PathError, method: &axum::http::Method) -> ApiError {
        use axum::http::Method;
        match e {
            PathError::ManifestReference { message, .. }
                if [Method::GET, Method::HEAD, Method::DELETE].contains(method) =>
            {
                ApiError::msg(
                    ErrorCode::ManifestUnknown,
                    format!(
                        "manifest unknown: the reference is neither a tag nor a digest ({message})"
                    ),
                )
            }
            other => ApiError::from(other),
        }
    }
}

/// Shorthand result for handlers.
pub type ApiResult = Result<Response, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::MetaError;

    #[tokio::test]
    async fn an_unavailable_metadata_database_answers_503_with_oci_json() {
        let e = RegistryError::from(MetaError::Unavailable("postgres: 10.0.0.7 refused".into()));
        let resp = ApiError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["errors"][0]["code"], "UNAVAILABLE");
        let message = json["errors"][0]["message"].as_str().unwrap_or_default();
        assert_eq!(message, "metadata database unavailable; retry later");
    }
}
