//! Raw OCI distribution API calls over [`crate::http`], for tests that need to see every
//! request and response exactly (request ids, `Location`, `Link`, webhook events per request):
//! monolithic and chunked blob uploads, manifest puts, mounts.

use serde_json::json;

use crate::fixtures::{sha256_digest, OCI_MANIFEST};
use crate::http::{self, Response};

/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer media type.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A client for one registry, optionally below an `http.prefix`, sending fixed extra headers
/// (e.g. a `User-Agent`) with every request.
#[derive(Debug, Clone)]
pub struct RawApi {
    /// `http://127.0.0.1:PORT`.
    pub root: String,
    /// `""` or the prefix without a trailing slash (`/registry`).
    pub prefix: String,
    /// Sent with every request.
    pub headers: Vec<(String, String)>,
}

impl RawApi {
    /// A client for `root` (`http://127.0.0.1:PORT`) without a prefix.
    pub fn new(root: impl Into<String>) -> RawApi {
        RawApi {
            root: root.into(),
            prefix: String::new(),
            headers: Vec::new(),
        }
    }

    /// The same client below `prefix` (`/registry`).
    pub fn with_prefix(mut self, prefix: &str) -> RawApi {
        self.prefix = prefix.trim_end_matches('/').to_string();
        self
    }

    /// The same client sending `k: v` with every request.
    pub fn with_header(mut self, k: &str, v: &str) -> RawApi {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// `METHOD root+target`, where `target` is an absolute path or URL as the server spells it
    /// (a `Location` value); panics on connection errors.
    pub fn at(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let url = if target.starts_with("http://") {
            target.to_string()
        } else {
            format!("{}{target}", self.root)
        };
        let mut all: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all.extend_from_slice(headers);
        http::request(method, &url, &all, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    /// `METHOD root+prefix+path` for an API path (`/v2/...`).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.at(method, &format!("{}{path}", self.prefix), headers, body)
    }

    /// `POST /v2/<repo>/blobs/uploads/?digest=` with the whole blob (201 expected).
    pub fn push_blob_monolithic(&self, repo: &str, data: &[u8]) -> (String, Response) {
        let digest = sha256_digest(data);
        let r = self.call(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(r.status, 201, "monolithic upload:\n{}", r.describe());
        (digest, r)
    }

    /// POST, one PATCH per `chunk` bytes, then `PUT ?digest=`; returns the digest and every
    /// response in order. Each step follows the previous `Location`.
    pub fn push_blob_chunked(
        &self,
        repo: &str,
        data: &[u8],
        chunk: usize,
    ) -> (String, Vec<Response>) {
        let digest = sha256_digest(data);
        let mut out = Vec::new();
        let r = self.call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[]);
        assert_eq!(r.status, 202, "start upload:\n{}", r.describe());
        let mut location = location(&r);
        out.push(r);
        for (i, part) in data.chunks(chunk.max(1)).enumerate() {
            let start = i * chunk;
            let range = format!("{start}-{}", start + part.len() - 1);
            let r = self.at(
                "PATCH",
                &location,
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", &range),
                ],
                part,
            );
            assert_eq!(r.status, 202, "PATCH {range}:\n{}", r.describe());
            location = location_of(&r);
            out.push(r);
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = self.at("PUT", &format!("{location}{sep}digest={digest}"), &[], &[]);
        assert_eq!(r.status, 201, "finish upload:\n{}", r.describe());
        out.push(r);
        (digest, out)
    }

    /// `PUT /v2/<repo>/manifests/<reference>` (201 expected).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        let r = self.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
        );
        assert_eq!(
            r.status,
            201,
            "PUT manifest {repo}:{reference}:\n{}",
            r.describe()
        );
        r
    }
}

/// The `Location` header; panics when absent.
#[track_caller]
pub fn location(r: &Response) -> String {
    location_of(r)
}

#[track_caller]
fn location_of(r: &Response) -> String {
    r.header("location")
        .unwrap_or_else(|| panic!("no Location:\n{}", r.describe()))
        .to_string()
}

/// An OCI image manifest over a config and layers given as `(digest, size)`.
pub fn image_manifest(config: (&str, usize), layers: &[(&str, usize)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, n)| json!({"mediaType": OCI_LAYER, "digest": d, "size": n}))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers,
    });
    serde_json::to_vec(&m).expect("serialize manifest")
}
