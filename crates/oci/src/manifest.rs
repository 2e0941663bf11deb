//! Manifest parsing and validation.
//!
//! The registry stores the bytes a client sent, byte-exact; this module only reads them to learn what
//! they reference. Parsing is deliberately lenient about fields Berth does not need and strict about the
//! ones it does (descriptors, media types, schema version).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::media::{self, essence};
use crate::Digest;

/// Largest manifest accepted, as in registry:2 and the spec's recommendation.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Artifact type (referrers listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// External URLs (foreign / non-distributable layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

/// Why a manifest was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// `schemaVersion` is missing or not 2.
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    /// Media type not stored by Berth (schema 1, unknown types).
    #[error("unsupported manifest media type {}", crate::quoted(.0))]
    UnsupportedType(String),
    /// The `mediaType` field and the `Content-Type` header disagree.
    #[error("manifest mediaType {} does not match Content-Type {}", crate::quoted(.field), crate::quoted(.header))]
    TypeMismatch {
        /// Value of the `mediaType` field.
        field: String,
        /// Value of the Content-Type header.
        header: String,
    },
    /// A required field is missing for this manifest kind.
    #[error("manifest of type {0} is missing the {1:?} field")]
    MissingField(String, &'static str),
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest exceeds {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What the registry needs to know about a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The effective media type (field, else Content-Type, else inferred).
    pub media_type: String,
    /// Config descriptor of an image manifest.
    pub config: Option<Descriptor>,
    /// Layers of an image manifest.
    pub layers: Vec<Descriptor>,
    /// Children of an index.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (signatures, SBOMs).
    pub subject: Option<Descriptor>,
    /// `artifactType` as written in the manifest.
    pub artifact_type: Option<String>,
    /// Manifest annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Manifest {
    /// Parses manifest bytes sent with the given `Content-Type` header value (if any).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(json_problem(&e)))?;
        let media_type = effective_type(&raw, content_type)?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let is_index = media::is_index(&media_type);
        if is_index && raw.manifests.is_none() {
            return Err(ManifestError::MissingField(media_type, "manifests"));
        }
        if !is_index && raw.config.is_none() {
            return Err(ManifestError::MissingField(media_type, "config"));
        }
        Ok(Manifest {
            media_type,
            config: raw.config,
            layers: raw.layers.unwrap_or_default(),
            manifests: raw.manifests.unwrap_or_default(),
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// Whether this is an index / manifest list.
    pub fn is_index(&self) -> bool {
        media::is_index(&self.media_type)
    }

    /// Blobs that must exist in the repository: the config and every layer that is not a foreign
    /// layer fetched from external `urls`.
    pub fn required_blobs(&self) -> Vec<Digest> {
        let layers = self
            .layers
            .iter()
            .filter(|l| l.urls.as_ref().is_none_or(|u| u.is_empty()));
        self.config
            .iter()
            .chain(layers)
            .map(|d| d.digest.clone())
            .collect()
    }

    /// Manifests an index refers to; they must exist in the repository.
    pub fn child_manifests(&self) -> Vec<Digest> {
        self.manifests.iter().map(|d| d.digest.clone()).collect()
    }

    /// The artifact type reported in referrers listings: `artifactType`, else the config media type
    /// (OCI 1.1 image-spec rule), else none.
    pub fn referrer_artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }
}

/// A JSON parse failure for a message: serde's text quoted (it can repeat manifest strings, such
/// as an unknown value), then where it happened.
fn json_problem(e: &serde_json::Error) -> String {
    let full = e.to_string();
    if e.line() == 0 {
        return crate::quoted(&full);
    }
    let at = format!(" at line {} column {}", e.line(), e.column());
    let what = full.strip_suffix(&at).unwrap_or(&full);
    format!("{}{at}", crate::quoted(what))
}

fn effective_type(raw: &Raw, content_type: Option<&str>) -> Result<String, ManifestError> {
    let header = content_type.map(essence).filter(|h| is_manifest_like(h));
    let chosen = match (&raw.media_type, header) {
        (Some(field), Some(h)) if field != h => {
            return Err(ManifestError::TypeMismatch {
                field: field.clone(),
                header: h.to_string(),
            })
        }
        (Some(field), _) => field.clone(),
        (None, Some(h)) => h.to_string(),
        (None, None) if raw.manifests.is_some() => media::OCI_INDEX.to_string(),
        (None, None) => media::OCI_MANIFEST.to_string(),
    };
    if !media::is_supported_manifest(&chosen) {
        return Err(ManifestError::UnsupportedType(chosen));
    }
    Ok(chosen)
}

/// Generic types (`application/json`, `*/*`, empty) carry no information about the manifest kind.
fn is_manifest_like(h: &str) -> bool {
    !(h.is_empty() || h == "application/json" || h == "application/octet-stream" || h.contains('*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(media_type: Option<&str>) -> String {
        let mt = media_type
            .map(|m| format!("\"mediaType\":\"{m}\","))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":3}},
                      {{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":4,"urls":["https://x"]}}]}}"#,
            d('a'),
            d('b'),
            d('c')
        )
    }

    #[test]
    fn image_manifest_lists_required_blobs_without_foreign_layers() {
        let m = Manifest::parse(image(Some(media::OCI_MANIFEST)).as_bytes(), None).unwrap();
        assert_eq!(m.media_type, media::OCI_MANIFEST);
        let want: Vec<Digest> = vec![d('a').parse().unwrap(), d('b').parse().unwrap()];
        assert_eq!(m.required_blobs(), want);
        assert_eq!(
            m.referrer_artifact_type().as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn media_type_comes_from_header_when_field_missing() {
        let m = Manifest::parse(image(None).as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap();
        assert_eq!(m.media_type, media::DOCKER_MANIFEST);
        let m = Manifest::parse(image(None).as_bytes(), Some("application/json")).unwrap();
        assert_eq!(m.media_type, media::OCI_MANIFEST);
    }

    #[test]
    fn mismatched_type_is_rejected() {
        let err = Manifest::parse(
            image(Some(media::OCI_MANIFEST)).as_bytes(),
            Some(media::DOCKER_MANIFEST),
        );
        assert!(matches!(err, Err(ManifestError::TypeMismatch { .. })));
        let ok = Manifest::parse(
            image(Some(media::OCI_MANIFEST)).as_bytes(),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn bad_manifests_are_rejected() {
        assert!(matches!(
            Manifest::parse(b"{not json", None),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            Manifest::parse(b"[]", None),
            Err(ManifestError::Json(_))
        ));
        let v1 =
            image(Some(media::OCI_MANIFEST)).replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert_eq!(
            Manifest::parse(v1.as_bytes(), None),
            Err(ManifestError::SchemaVersion)
        );
        let bad_digest = image(Some(media::OCI_MANIFEST)).replace(&d('a'), "sha256:xyz");
        assert!(matches!(
            Manifest::parse(bad_digest.as_bytes(), None),
            Err(ManifestError::Json(_))
        ));
        let s1 = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(matches!(
            Manifest::parse(s1.as_bytes(), None),
            Err(ManifestError::UnsupportedType(_))
        ));
        let no_config = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        assert!(matches!(
            Manifest::parse(no_config.as_bytes(), None),
            Err(ManifestError::MissingField(..))
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(Manifest::parse(&big, None), Err(ManifestError::TooLarge));
    }

    #[test]
    fn index_lists_children_and_subject() {
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":5,"platform":{{"os":"linux","architecture":"arm64"}}}}],
            "subject":{{"mediaType":"{}","digest":"{}","size":9}},"artifactType":"application/x-sig"}}"#,
            media::OCI_MANIFEST,
            d('e'),
            media::OCI_MANIFEST,
            d('f')
        );
        let m = Manifest::parse(idx.as_bytes(), None).unwrap();
        assert!(m.is_index());
        assert_eq!(m.child_manifests(), vec![d('e').parse::<Digest>().unwrap()]);
        assert_eq!(m.subject.as_ref().unwrap().digest.as_str(), d('f'));
        assert_eq!(
            m.referrer_artifact_type().as_deref(),
            Some("application/x-sig")
        );
    }

    #[test]
    fn messages_quote_and_bound_client_text() {
        let hostile = format!("application/x\n\u{1b}[2J{}", "z".repeat(10_000));
        let mismatch = Manifest::parse(image(Some(media::OCI_MANIFEST)).as_bytes(), Some(&hostile));
        let unsupported = Manifest::parse(image(None).as_bytes(), Some(&hostile));
        let escaped = format!("x\\n\\u001b[2J{}:abc", "z".repeat(10_000));
        let bad_digest = image(None).replace(&d('a'), &escaped);
        let json = Manifest::parse(bad_digest.as_bytes(), None);
        for err in [mismatch, unsupported, json] {
            let msg = err.map(|_| ()).unwrap_err().to_string();
            assert!(msg.len() < 300, "{msg}");
            assert!(!msg.chars().any(char::is_control), "{msg}");
            assert!(msg.contains("\\u{a}"), "{msg}");
        }
        let not_json = Manifest::parse(b"{not json", None).unwrap_err().to_string();
        assert!(not_json.ends_with("at line 1 column 2"), "{not_json}");
    }
}
