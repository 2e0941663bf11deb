//! The storage layout: the only place that builds storage keys.
//!
//! ```text
//! <root>/
//! ├── docker/registry/v2/              registry:2-compatible content-addressed blobs
//! │   └── blobs/<alg>/<hex[0..2]>/<hex>/data
//! └── berth/v1/                        Berth's own, versioned prefix
//!     ├── uploads/<upload-id>/         one in-progress upload session
//!     │   ├── data                     its bytes (filesystem backend)
//!     │   ├── state                    its parts list and unflushed tail bytes (S3 backend)
//!     │   └── part-<nnnnn>-<nonce>     one flushed part of it (S3 backend)
//!     └── health/probe                 never written; readiness checks `stat` it
//! ```
//!
//! Everything of one session lives under [`upload_prefix`], so aborting (or garbage-collecting)
//! a session is "delete that prefix".
//!
//! Blob keys match registry:2's so an existing registry:2 root can be adopted in place. Keys are
//! built only from validated newtypes ([`Digest`], [`UploadId`]), so they can never contain `..` or
//! other traversal. The metadata database file is not a storage key; see the `berth` binary.

use std::fmt;

use berth_oci::{Digest, UploadId};

/// A storage key: a relative, `/`-separated path built by this module.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// The key as a relative path string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a key that a backend listed. Only keys under the known prefixes, made of safe
    /// characters, are accepted.
    pub fn from_listed(s: &str) -> Option<Key> {
        let safe = s.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
        let known = s.starts_with(BLOBS) || s.starts_with(UPLOADS);
        (safe && known).then(|| Key(s.to_string()))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

/// Prefix of all blob data keys.
pub const BLOBS: &str = "docker/registry/v2/blobs/";
/// Prefix of all upload data keys.
pub const UPLOADS: &str = "berth/v1/uploads/";

/// Key of a committed blob's bytes.
pub fn blob(d: &Digest) -> Key {
    let hex = d.hex();
    Key(format!(
        "{BLOBS}{}/{}/{hex}/data",
        d.algorithm().as_str(),
        &hex[..2]
    ))
}

/// Key of an upload session's bytes (used by backends that keep uploads as objects).
pub fn upload(id: &UploadId) -> Key {
    Key(format!("{UPLOADS}{id}/data"))
}

/// Key that readiness checks `stat`: reaching the backend is the check, the object never exists.
pub fn health_probe() -> Key {
    Key("berth/v1/health/probe".into())
}

/// The key-string prefix of everything belonging to one upload session (ends with `/`).
pub fn upload_prefix(id: &UploadId) -> String {
    format!("{UPLOADS}{id}/")
}

/// Key of an upload session's state object (S3 backend: parts list plus unflushed tail bytes).
pub fn upload_state(id: &UploadId) -> Key {
    Key(format!("{UPLOADS}{id}/state"))
}

/// Key of part `number` (1-based) of an upload session. `nonce` makes every write of a part
/// a distinct object, so a writer that lost a race never overwrites the winner's part.
pub fn upload_part(id: &UploadId, number: u32, nonce: u64) -> Key {
    Key(format!("{UPLOADS}{id}/part-{number:05}-{nonce:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_keys_match_registry2() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            blob(&d).as_str(),
            "docker/registry/v2/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/data"
        );
        let id = UploadId::parse("0b1e3f2a-1111-4222-8333-444455556666").unwrap();
        assert_eq!(
            upload(&id).as_str(),
            "berth/v1/uploads/0b1e3f2a-1111-4222-8333-444455556666/data"
        );
        let prefix = upload_prefix(&id);
        assert_eq!(
            prefix,
            "berth/v1/uploads/0b1e3f2a-1111-4222-8333-444455556666/"
        );
        for key in [upload(&id), upload_state(&id), upload_part(&id, 7, 0xabc)] {
            assert!(key.as_str().starts_with(&prefix), "{key}");
            assert_eq!(Key::from_listed(key.as_str()), Some(key));
        }
        assert_eq!(
            upload_part(&id, 7, 0xabc).as_str(),
            "berth/v1/uploads/0b1e3f2a-1111-4222-8333-444455556666/part-00007-0000000000000abc"
        );
    }

    #[test]
    fn listed_keys_are_checked() {
        assert!(Key::from_listed("docker/registry/v2/blobs/sha256/e3/abc/data").is_some());
        assert!(Key::from_listed("docker/registry/v2/blobs/../../etc/passwd").is_none());
        assert!(Key::from_listed("etc/passwd").is_none());
    }
}
