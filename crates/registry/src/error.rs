//! Registry errors and their OCI codes.

use berth_meta::MetaError;
use berth_oci::{Digest, ErrorCode};
use berth_storage::StorageError;

/// What went wrong in a registry operation.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The blob is not in the repository.
    #[error("blob unknown to repository")]
    BlobUnknown(Digest),
    /// The upload session does not exist (or belongs to another repository).
    #[error("upload session unknown")]
    UploadUnknown,
    /// The upload cannot continue as asked.
    #[error("{0}")]
    UploadInvalid(String),
    /// The uploaded bytes do not match the digest, or a digest parameter is malformed.
    #[error("{0}")]
    DigestInvalid(String),
    /// A byte range the object or upload cannot satisfy.
    #[error("requested range not satisfiable")]
    RangeInvalid {
        /// Current size of the object or upload, for the `Range`/`Content-Range` answer.
        size: u64,
    },
    /// The manifest is not in the repository.
    #[error("manifest unknown")]
    ManifestUnknown,
    /// The manifest is malformed.
    #[error("{0}")]
    ManifestInvalid(String),
    /// The manifest references a blob not in the repository.
    #[error("manifest references a blob unknown to the repository")]
    ManifestBlobUnknown(Digest),
    /// An index references a manifest not in the repository. Answered like a missing blob
    /// (`MANIFEST_BLOB_UNKNOWN`): the spec says a manifest rejected for a descriptor naming
    /// missing content MUST get that code, and registry:2 answers so too.
    #[error("index references a manifest unknown to the repository")]
    ManifestChildUnknown(Digest),
    /// The manifest exceeds the size limit.
    #[error("manifest exceeds the 4 MiB limit")]
    ManifestTooLarge,
    /// The repository is unknown.
    #[error("repository name not known to registry")]
    NameUnknown,
    /// A declared size does not match the content.
    #[error("{0}")]
    SizeInvalid(String),
    /// The operation is switched off or not implemented.
    #[error("{0}")]
    Unsupported(&'static str),
    /// Storage failed (details logged, not sent).
    #[error("storage error: {0}")]
    Storage(StorageError),
    /// Metadata store failed (details logged, not sent).
    #[error("metadata error: {0}")]
    Meta(MetaError),
}

/// Result alias for registry operations.
pub type Result<T> = std::result::Result<T, RegistryError>;

impl RegistryError {
    /// The OCI code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        use RegistryError::*;
        match self {
            BlobUnknown(_) => ErrorCode::BlobUnknown,
            UploadUnknown => ErrorCode::BlobUploadUnknown,
            UploadInvalid(_) => ErrorCode::BlobUploadInvalid,
            DigestInvalid(_) => ErrorCode::DigestInvalid,
            RangeInvalid { .. } => ErrorCode::RangeInvalid,
            ManifestUnknown => ErrorCode::ManifestUnknown,
            ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            ManifestBlobUnknown(_) | ManifestChildUnknown(_) => ErrorCode::ManifestBlobUnknown,
            ManifestTooLarge => ErrorCode::SizeTooLarge,
            NameUnknown => ErrorCode::NameUnknown,
            SizeInvalid(_) => ErrorCode::SizeInvalid,
            Unsupported(_) => ErrorCode::Unsupported,
            Meta(MetaError::Unavailable(_)) => ErrorCode::Unavailable,
            Storage(e) if storage_unreachable(e) => ErrorCode::Unavailable,
            Storage(_) | Meta(_) => ErrorCode::Unknown,
        }
    }

    /// The message a client sees for an internal error: what kind of failure, never its details.
    pub fn public_message(&self) -> &'static str {
        match self {
            RegistryError::Meta(MetaError::Unavailable(_)) => {
                "metadata database unavailable; retry later"
            }
            RegistryError::Storage(e) if storage_unreachable(e) => {
                "storage backend unavailable; retry later"
            }
            RegistryError::Storage(_) => "storage backend error; see the registry log",
            _ => self.code().message(),
        }
    }

    /// Whether this is a server-side failure (logged with details; the client sees a generic message).
    pub fn is_internal(&self) -> bool {
        matches!(self, RegistryError::Storage(_) | RegistryError::Meta(_))
    }

    /// Machine-readable detail for the error body, when there is one.
    pub fn detail(&self) -> Option<String> {
        use RegistryError::*;
        match self {
            BlobUnknown(d) | ManifestBlobUnknown(d) | ManifestChildUnknown(d) => {
                Some(d.to_string())
            }
            _ => None,
        }
    }
}

/// Whether a storage failure means the backend could not be reached (an object store that is
/// down or cut off: the S3 backend reports those with connection error kinds). Such requests may
/// succeed when retried, so they are answered 503 `UNAVAILABLE` like an unreachable database.
fn storage_unreachable(e: &StorageError) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e,
        StorageError::Backend(io) if matches!(
            io.kind(),
            ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | TimedOut
                | HostUnreachable | NetworkUnreachable
        )
    )
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        RegistryError::Storage(e)
    }
}

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::MissingBlob(d) => RegistryError::ManifestBlobUnknown(d),
            MetaError::MissingManifest(d) => RegistryError::ManifestChildUnknown(d),
            other => RegistryError::Meta(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_database_and_storage_are_503_unavailable_without_details() {
        let e = RegistryError::from(MetaError::Unavailable("postgres: secret-host:5432".into()));
        assert_eq!(e.code(), ErrorCode::Unavailable);
        assert_eq!(e.code().status(), 503);
        assert!(e.is_internal());
        assert_eq!(
            e.public_message(),
            "metadata database unavailable; retry later"
        );
        let unreachable = RegistryError::from(StorageError::Backend(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "S3 head: connect to 10.0.0.9:8333",
        )));
        assert_eq!(unreachable.code(), ErrorCode::Unavailable);
        assert_eq!(
            unreachable.public_message(),
            "storage backend unavailable; retry later"
        );
        let disk = RegistryError::from(StorageError::Backend(std::io::Error::other("EIO")));
        assert_eq!(
            (disk.code(), disk.public_message()),
            (
                ErrorCode::Unknown,
                "storage backend error; see the registry log"
            )
        );
        let other = RegistryError::from(MetaError::Database("syntax error".into()));
        assert_eq!(
            (other.code(), other.public_message()),
            (ErrorCode::Unknown, "unknown error")
        );
    }
}
