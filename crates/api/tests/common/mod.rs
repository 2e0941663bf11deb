//! Test harness: the real router over the filesystem backend and SQLite in a temp dir, driven
//! without a socket (`tower::ServiceExt::oneshot`).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use berth_meta::sqlite::{SqliteOptions, SqliteStore};
use berth_oci::{Algorithm, Digest};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::fs::FsBackend;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Asserts an OCI error answer: status, code, JSON body shape, API version header.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "status; body: {:?}",
            self.body
        );
        let v = self.json();
        let errors = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array: {v}"));
        assert_eq!(errors[0]["code"], code, "body: {v}");
        assert!(errors[0]["message"].is_string(), "message missing: {v}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(
            self.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) {
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {:?}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

pub struct Reg {
    pub app: Router,
    pub dir: tempfile::TempDir,
}

impl Reg {
    pub fn new() -> Self {
        Self::with_deletes(true)
    }

    pub fn with_deletes(delete_enabled: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let app = build(dir.path(), delete_enabled);
        Reg { app, dir }
    }

    /// A registry served with `opts` (authentication and so on); `opts` is built with the
    /// storage directory, where it may keep its files.
    pub fn with_api(opts: impl FnOnce(&Path) -> berth_api::ApiOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let opts = opts(dir.path());
        let app = berth_api::router_with(Arc::new(registry(dir.path(), true)), opts);
        Reg { app, dir }
    }

    /// A new router over the same directory (a server restart).
    pub fn restart(&mut self) {
        self.app = build(self.dir.path(), true);
    }

    pub async fn req(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(b.body(body.into()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            parts
                .headers
                .get("docker-distribution-api-version")
                .and_then(|v| v.to_str().ok()),
            Some("registry/2.0"),
            "every answer carries the API version header ({method} {uri})"
        );
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.req("GET", uri, &[], Body::empty()).await
    }

    /// Monolithic upload of `data` into `repo`; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        self.push_blob_by(repo, data, Algorithm::Sha256).await
    }

    /// Monolithic upload of `data` by its `alg` digest; the answer names that digest.
    pub async fn push_blob_by(&self, repo: &str, data: &[u8], alg: Algorithm) -> Digest {
        let d = Digest::of(alg, data);
        let r = self
            .req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[("content-length", &data.len().to_string())],
                data.to_vec(),
            )
            .await;
        r.assert_status(201);
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        d
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.req(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_vec(),
        )
        .await
    }

    /// Pushes config + one layer + an OCI manifest tagged `tag`; returns (manifest bytes, digest).
    pub async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, Digest) {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let c = self.push_blob(repo, config).await;
        let l = self.push_blob(repo, layer).await;
        let m = image_manifest(&c, config.len(), &[(&l, layer.len())], None);
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &m).await;
        r.assert_status(201);
        (m.clone(), Digest::sha256_of(&m))
    }

    /// Every file under the storage root except the metadata database (to prove bad input changed
    /// nothing).
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.retain(|f| !f.starts_with("berth-meta.sqlite"));
        out.sort();
        out
    }
}

fn registry(dir: &Path, delete_enabled: bool) -> Registry {
    let storage = FsBackend::new(dir).unwrap();
    let meta = SqliteStore::open(&dir.join("berth-meta.sqlite"), SqliteOptions::default()).unwrap();
    Registry::new(
        Arc::new(storage),
        Arc::new(meta),
        RegistryOptions { delete_enabled },
    )
}

fn build(dir: &Path, delete_enabled: bool) -> Router {
    berth_api::router(Arc::new(registry(dir, delete_enabled)))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

pub fn image_manifest(
    config: &Digest,
    config_len: usize,
    layers: &[(&Digest, usize)],
    subject: Option<(&Digest, usize)>,
) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|(d, n)| json!({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":d.as_str(),"size":n}))
        .collect();
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType":"application/vnd.oci.image.config.v1+json","digest":config.as_str(),"size":config_len},
        "layers": layers,
    });
    if let Some((d, n)) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d.as_str(), "size": n});
    }
    serde_json::to_vec_pretty(&m).unwrap()
}

/// An artifact manifest (empty config) with `artifactType`, annotations and a subject.
pub fn artifact_manifest(
    empty: &Digest,
    artifact_type: &str,
    layer: &Digest,
    layer_len: usize,
    subject: (&Digest, usize),
    note: &str,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType":"application/vnd.oci.empty.v1+json","digest":empty.as_str(),"size":2},
        "layers": [{"mediaType":"application/octet-stream","digest":layer.as_str(),"size":layer_len}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0.as_str(), "size": subject.1},
        "annotations": {"note": note},
    }))
    .unwrap()
}

pub fn index_manifest(media_type: &str, children: &[(&Digest, usize, &str)]) -> Vec<u8> {
    let child_type = if media_type == DOCKER_LIST {
        DOCKER_MANIFEST
    } else {
        OCI_MANIFEST
    };
    let ms: Vec<Value> = children
        .iter()
        .map(|(d, n, arch)| json!({"mediaType": child_type, "digest": d.as_str(), "size": n, "platform": {"os":"linux","architecture":arch}}))
        .collect();
    serde_json::to_vec(&json!({"schemaVersion":2,"mediaType":media_type,"manifests":ms})).unwrap()
}
