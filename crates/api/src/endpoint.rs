//! Parsing a request path into an [`Endpoint`].
//!
//! Repository names contain slashes, so routes cannot be matched with path wildcards (they only end
//! a path). The path is percent-decoded once, split on `/`, and matched from the right: the last one
//! or two segments say what is addressed, everything before them is the repository name, which is
//! then validated. Decoding first means `%2e%2e` and `%2F` tricks meet the same validation as plain
//! `..` and `/`.

use berth_oci::{quoted, Digest, NameError, Reference, RepoName, UploadId};
use percent_encoding::percent_decode_str;

/// What a `/v2/…` path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    Uploads(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepoName, UploadId),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
}

/// Why a path does not name an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not a registry path at all.
    NotFound,
    /// The repository name is invalid.
    Name(String),
    /// The digest is invalid.
    Digest(String),
    /// A manifest reference that is neither a valid tag nor a valid digest: it can name no
    /// manifest. Reads and deletes answer 404 `MANIFEST_UNKNOWN` (as registry:2 does); a push
    /// answers 400 (`DIGEST_INVALID` when `digest`, else `TAG_INVALID`).
    ManifestReference {
        /// Whether it looked like a digest (`algorithm:…`).
        digest: bool,
        /// What is wrong with it.
        message: String,
    },
    /// The upload id is not one Berth could have issued.
    Upload,
}

/// A path read by [`Endpoint::classify`]: what kind of endpoint its shape addresses (known even
/// when its name, reference or digest is invalid) and the endpoint, or why it is none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The endpoint kind the path's shape names; `None` when it is no registry path at all.
    pub kind: Option<EndpointKind>,
    /// The parsed endpoint.
    pub endpoint: Result<Endpoint, PathError>,
}

impl Endpoint {
    /// Parses a raw (percent-encoded) request path.
    pub fn parse(raw_path: &str) -> Result<Endpoint, PathError> {
        Endpoint::classify(raw_path).endpoint
    }

    /// Parses a raw request path and says which kind of endpoint it addresses, valid or not:
    /// the router answers with that kind (a response extension) so the wrappers around it label
    /// metrics without reading the path again.
    pub fn classify(raw_path: &str) -> Classified {
        let no_endpoint = Classified {
            kind: None,
            endpoint: Err(PathError::NotFound),
        };
        let Ok(path) = percent_decode_str(raw_path).decode_utf8() else {
            return no_endpoint;
        };
        let Some(rest) = path.strip_prefix("/v2") else {
            return no_endpoint;
        };
        let whole = |e: Endpoint| Classified {
            kind: Some(e.kind()),
            endpoint: Ok(e),
        };
        match rest {
            "" | "/" => return whole(Endpoint::Base),
            "/_catalog" => return whole(Endpoint::Catalog),
            _ => {}
        }
        let Some(rest) = rest.strip_prefix('/') else {
            return no_endpoint;
        };
        let segs: Vec<&str> = rest.split('/').collect();
        let Some((kind, name_len)) = shape(&segs) else {
            return no_endpoint;
        };
        Classified {
            kind: Some(kind),
            endpoint: build(kind, &segs, name_len),
        }
    }

    /// The kind of this endpoint.
    pub fn kind(&self) -> EndpointKind {
        use EndpointKind as K;
        match self {
            Endpoint::Base => K::Base,
            Endpoint::Catalog => K::Catalog,
            Endpoint::Tags(_) => K::Tags,
            Endpoint::Manifest(..) => K::Manifest,
            Endpoint::Blob(..) => K::Blob,
            Endpoint::Uploads(_) => K::Uploads,
            Endpoint::Upload(..) => K::Upload,
            Endpoint::Referrers(..) => K::Referrers,
        }
    }
}

/// The kind of endpoint a path addresses, for labels and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags,
    /// `/v2/<name>/manifests/<reference>`
    Manifest,
    /// `/v2/<name>/blobs/<digest>`
    Blob,
    /// `/v2/<name>/blobs/uploads/`
    Uploads,
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload,
    /// `/v2/<name>/referrers/<digest>`
    Referrers,
}

/// The grammar, read from the right: which endpoint the trailing segments name and how many
/// leading segments form the repository name. Nothing is validated here.
fn shape(segs: &[&str]) -> Option<(EndpointKind, usize)> {
    use EndpointKind as K;
    let n = segs.len();
    let tail = |k: usize| segs[n - k];
    if n >= 4 && tail(3) == "blobs" && tail(2) == "uploads" {
        let kind = if tail(1).is_empty() {
            K::Uploads
        } else {
            K::Upload
        };
        return Some((kind, n - 3));
    }
    if n < 3 {
        return None;
    }
    let kind = match (tail(2), tail(1)) {
        ("tags", "list") => K::Tags,
        ("blobs", "uploads") => K::Uploads,
        ("manifests", _) => K::Manifest,
        ("blobs", _) => K::Blob,
        ("referrers", _) => K::Referrers,
        _ => return None,
    };
    Some((kind, n - 2))
}

/// The endpoint of a path whose [`shape`] is `kind`, with its parts validated.
fn build(kind: EndpointKind, segs: &[&str], name_len: usize) -> Result<Endpoint, PathError> {
    use EndpointKind as K;
    let name = repo(&segs[..name_len])?;
    let last = segs[segs.len() - 1];
    match kind {
        K::Tags => Ok(Endpoint::Tags(name)),
        K::Uploads => Ok(Endpoint::Uploads(name)),
        K::Upload => UploadId::parse(last)
            .map(|id| Endpoint::Upload(name, id))
            .ok_or(PathError::Upload),
        K::Manifest => {
            let reference = Reference::parse(last).map_err(|e| PathError::ManifestReference {
                digest: matches!(e, NameError::InvalidReference(_)),
                message: e.to_string(),
            })?;
            Ok(Endpoint::Manifest(name, reference))
        }
        K::Blob => Ok(Endpoint::Blob(name, digest(last)?)),
        K::Referrers => Ok(Endpoint::Referrers(name, digest(last)?)),
        K::Base | K::Catalog => Err(PathError::NotFound),
    }
}

fn repo(segs: &[&str]) -> Result<RepoName, PathError> {
    let joined = segs.join("/");
    RepoName::parse(&joined).map_err(|e| PathError::Name(e.to_string()))
}

fn digest(s: &str) -> Result<Digest, PathError> {
    Digest::parse(s).map_err(|e| PathError::Digest(format!("{e}: {}", quoted(s))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const U: &str = "0b1e3f2a-1111-4222-8333-444455556666";

    fn name(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn parses_every_endpoint() {
        let dg = Digest::parse(D).unwrap();
        let id = UploadId::parse(U).unwrap();
        let cases: Vec<(String, Endpoint)> = vec![
            ("/v2/".into(), Endpoint::Base),
            ("/v2".into(), Endpoint::Base),
            ("/v2/_catalog".into(), Endpoint::Catalog),
            ("/v2/a/tags/list".into(), Endpoint::Tags(name("a"))),
            ("/v2/a/b/c/tags/list".into(), Endpoint::Tags(name("a/b/c"))),
            (
                "/v2/a/manifests/v1".into(),
                Endpoint::Manifest(name("a"), Reference::parse("v1").unwrap()),
            ),
            (
                format!("/v2/a/manifests/{D}"),
                Endpoint::Manifest(name("a"), Reference::Digest(dg.clone())),
            ),
            (
                format!("/v2/a/b/blobs/{D}"),
                Endpoint::Blob(name("a/b"), dg.clone()),
            ),
            ("/v2/a/blobs/uploads/".into(), Endpoint::Uploads(name("a"))),
            ("/v2/a/blobs/uploads".into(), Endpoint::Uploads(name("a"))),
            (
                format!("/v2/a/blobs/uploads/{U}"),
                Endpoint::Upload(name("a"), id),
            ),
            (
                format!("/v2/a/referrers/{D}"),
                Endpoint::Referrers(name("a"), dg.clone()),
            ),
            // names may contain the keywords as components
            (
                "/v2/blobs/manifests/manifests/x".into(),
                Endpoint::Manifest(name("blobs/manifests"), Reference::parse("x").unwrap()),
            ),
            ("/v2/tags/tags/list".into(), Endpoint::Tags(name("tags"))),
            // percent-encoded separators (Azure SDK style)
            (
                format!("/v2/azure%2Fart/manifests/{}", D.replace(':', "%3A")),
                Endpoint::Manifest(name("azure/art"), Reference::Digest(dg)),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(Endpoint::classify(&path).kind, Some(want.kind()), "{path}");
            assert_eq!(Endpoint::parse(&path), Ok(want), "{path}");
        }
    }

    #[test]
    fn rejects_bad_paths() {
        let name_err = |p: &str| matches!(Endpoint::parse(p), Err(PathError::Name(_)));
        for p in [
            "/v2/../etc/tags/list",
            "/v2/%2e%2e/x/tags/list",
            "/v2/a/%2E%2E/b/tags/list",
            "/v2//etc/tags/list",
            "/v2/A/tags/list",
            "/v2/a%2F..%2Fb/tags/list",
        ] {
            assert!(
                name_err(p),
                "{p} should be NAME_INVALID, got {:?}",
                Endpoint::parse(p)
            );
        }
        assert!(matches!(
            Endpoint::parse("/v2/a/manifests/-bad"),
            Err(PathError::ManifestReference { digest: false, .. })
        ));
        assert!(matches!(
            Endpoint::parse("/v2/a/manifests/sha256:abc"),
            Err(PathError::ManifestReference { digest: true, .. })
        ));
        assert!(matches!(
            Endpoint::parse("/v2/a/blobs/sha256:abc"),
            Err(PathError::Digest(_))
        ));
        assert!(matches!(
            Endpoint::parse("/v2/a/blobs/md5:abc"),
            Err(PathError::Digest(_))
        ));
        assert!(matches!(
            Endpoint::parse("/v2/a/blobs/uploads/../../x"),
            Err(PathError::NotFound) | Err(PathError::Upload) | Err(PathError::Name(_))
        ));
        assert_eq!(
            Endpoint::parse("/v2/a/blobs/uploads/not-a-uuid"),
            Err(PathError::Upload)
        );
        for p in [
            "/",
            "/v3/",
            "/v2x",
            "/v2/a",
            "/v2/a/b",
            "/v2/a/unknown/x",
            "/v2/a/tags/list/",
            "/v2/%ff/tags/list",
        ] {
            assert_eq!(Endpoint::parse(p), Err(PathError::NotFound), "{p}");
            assert_eq!(Endpoint::classify(p).kind, None, "{p}");
        }
    }

    #[test]
    fn kinds_come_from_the_shape_alone() {
        use EndpointKind as K;
        // Invalid names and references still say what was asked for.
        let kind = |p: &str| Endpoint::classify(p).kind;
        assert_eq!(kind("/v2/A/tags/list"), Some(K::Tags));
        assert_eq!(kind("/v2/a/manifests/-bad"), Some(K::Manifest));
        assert_eq!(kind("/v2/a/blobs/md5:abc"), Some(K::Blob));
        assert_eq!(kind("/v2/a/blobs/uploads/x"), Some(K::Upload));
        assert_eq!(kind("/v2/a/b/blobs/uploads"), Some(K::Uploads));
        assert_eq!(kind("/v2/blobs/uploads"), None);
        assert_eq!(kind("/v2/a%2Fb/tags/list"), Some(K::Tags));
        assert_eq!(kind("/v2/%ff/tags/list"), None);
        assert_eq!(kind("/etc/passwd"), None);
    }
}
