//! Row decoding shared by both stores, written once.
//!
//! Each store fetches columns its own way (rusqlite borrows them out of SQLite's row buffer,
//! tokio-postgres out of the message) and hands the raw values here, where they become domain
//! values: [`StoredManifest`], [`UploadSession`], referrer [`Descriptor`]s, digests, names and ids.
//! A stored value no Berth could have written (a malformed digest, repository name or upload id)
//! becomes one [`MetaError::Database`] that names the store. The few integer conversions both
//! stores need (sizes, counts, page limits, the clock) live here too, so the two agree.

use std::collections::BTreeMap;
use std::fmt::Display;

use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, RepoName, UploadId};
use bytes::Bytes;

use crate::{MetaError, Result, StoredManifest, UploadSession};

/// Decodes values read back from one store; the store's name prefixes every error.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decoder(&'static str);

/// Decoder for the SQLite store.
pub(crate) const SQLITE: Decoder = Decoder("sqlite");
/// Decoder for the PostgreSQL store.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: Decoder = Decoder("postgres");

/// The columns of a referrers row, in the order both stores select them.
pub(crate) struct ReferrerRow<'a> {
    /// `media_type`.
    pub(crate) media_type: String,
    /// `digest` (text).
    pub(crate) digest: &'a str,
    /// `size` (bytes of the manifest).
    pub(crate) size: i64,
    /// `artifact_type`.
    pub(crate) artifact_type: Option<String>,
    /// `annotations` (a JSON object of strings, as stored at push).
    pub(crate) annotations: Option<&'a str>,
}

impl Decoder {
    fn invalid(self, what: &str, value: &str, error: impl Display) -> MetaError {
        MetaError::Database(format!(
            "{}: stored {what} {value:?} is invalid: {error}",
            self.0
        ))
    }

    /// A digest column.
    pub(crate) fn digest(self, text: &str) -> Result<Digest> {
        Digest::parse(text).map_err(|e| self.invalid("digest", text, e))
    }

    /// A repository name column.
    pub(crate) fn repo(self, text: &str) -> Result<RepoName> {
        RepoName::parse(text).map_err(|e| self.invalid("repository name", text, e))
    }

    /// An upload id column.
    pub(crate) fn upload_id(self, text: &str) -> Result<UploadId> {
        UploadId::parse(text).ok_or_else(|| self.invalid("upload id", text, "not an upload id"))
    }

    /// A manifest row found by tag: digest, media type, bytes.
    pub(crate) fn manifest(
        self,
        digest: &str,
        media_type: String,
        bytes: Bytes,
    ) -> Result<StoredManifest> {
        Ok(StoredManifest {
            digest: self.digest(digest)?,
            media_type,
            bytes,
        })
    }

    /// An `uploads` row of session `id`: repository, start time, hash state.
    pub(crate) fn upload(
        self,
        id: &UploadId,
        repo: &str,
        started_at: i64,
        hash_state: Vec<u8>,
    ) -> Result<UploadSession> {
        Ok(UploadSession {
            id: id.clone(),
            repo: self.repo(repo)?,
            started_at,
            hash_state,
        })
    }

    /// A referrers row as the descriptor the referrers API lists.
    pub(crate) fn referrer(self, row: ReferrerRow<'_>) -> Result<Descriptor> {
        let digest = self.digest(row.digest)?;
        let annotations = row.annotations.and_then(|json| annotations(&digest, json));
        Ok(Descriptor {
            media_type: row.media_type,
            digest,
            size: unsigned(row.size),
            artifact_type: row.artifact_type,
            annotations,
            urls: None,
            platform: None,
        })
    }
}

/// Annotations stored at push; a value that is not a JSON object of strings is left out (and
/// logged) rather than failing the whole listing.
fn annotations(digest: &Digest, json: &str) -> Option<BTreeMap<String, String>> {
    match serde_json::from_str(json) {
        Ok(map) => Some(map),
        Err(e) => {
            tracing::warn!(%digest, error = %e, "stored annotations are not a JSON object of strings");
            None
        }
    }
}

/// A size or count read back (never negative: sizes are checked at insert, counts are counts).
pub(crate) fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A size or page limit as an SQL integer (both databases' integers are signed 64-bit).
pub(crate) fn sql_int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Unix seconds now (0 if the clock is before 1970): the `created_at`-style columns.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| sql_int(d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_stored_values_name_the_store_and_the_value() {
        let err = SQLITE.digest("sha256:nope").unwrap_err().to_string();
        assert!(
            err.contains("sqlite: stored digest \"sha256:nope\""),
            "{err}"
        );
        let err = SQLITE.repo("UPPER").unwrap_err().to_string();
        assert!(err.contains("stored repository name \"UPPER\""), "{err}");
        assert!(SQLITE.upload_id("../x").is_err());
    }

    #[test]
    fn referrer_rows_keep_good_annotations_and_drop_bad_ones() {
        let digest = Digest::sha256_of(b"m").to_string();
        let row = |annotations| ReferrerRow {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: &digest,
            size: 42,
            artifact_type: Some("a/sig".into()),
            annotations,
        };
        let good = SQLITE.referrer(row(Some(r#"{"k":"v"}"#))).unwrap();
        assert_eq!((good.size, good.digest.to_string()), (42, digest.clone()));
        let map = good.annotations.unwrap();
        assert_eq!(map.get("k").map(String::as_str), Some("v"));
        let bad = SQLITE.referrer(row(Some("[1]"))).unwrap();
        assert_eq!(bad.annotations, None);
    }

    #[test]
    fn integer_conversions_saturate() {
        assert_eq!((unsigned(-1), unsigned(7)), (0, 7));
        assert_eq!(sql_int(u64::MAX), i64::MAX);
        assert_eq!(sql_int(5usize), 5);
        assert!(unix_now() > 1_600_000_000);
    }
}
