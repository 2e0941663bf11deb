//! Fixture for the access-control tests: users, robots and a policy on disk next to the
//! storage, a router with `berth_auth`, and helpers that send credentials.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use berth_api::ApiOptions;
use berth_auth::htpasswd::Htpasswd;
use berth_auth::ratelimit::LimitConfig;
use berth_auth::robots::{NewRobot, Robots};
use berth_auth::{Action, AuthOptions, Authenticator, HtpasswdOptions, IssuerOptions, RepoPattern};
use berth_oci::Digest;
use serde_json::Value;

use crate::common::{image_manifest, Reg, Resp, OCI_MANIFEST};

pub const POLICY: &str = r#"
admins: [root]
groups:
  team-a: [alice, carol]
anonymous:
  pull: ["public/**"]
rules:
  - groups: [team-a]
    repositories: ["team-a/**"]
    actions: [pull, push]
  - users: [carol]
    repositories: ["team-a/**"]
    actions: [delete]
  - users: [bob]
    repositories: ["team-a/**"]
    actions: [pull]
"#;

/// Robot secrets created by the fixture.
pub struct Secrets {
    pub ci: String,
    pub expired: String,
}

/// Writes htpasswd, robots and returns options for the given mode.
pub fn write_files(dir: &Path) -> Secrets {
    let auth = dir.join("auth");
    std::fs::create_dir_all(&auth).unwrap();
    let mut h = Htpasswd::default();
    for u in ["alice", "bob", "carol", "root"] {
        h.set_password(u, &format!("{u}-pw"), 4).unwrap();
    }
    std::fs::write(auth.join("htpasswd"), h.render()).unwrap();
    let mut r = Robots::default();
    let now = SystemTime::now();
    let robot = |name: &str, expires| NewRobot {
        name: name.into(),
        repositories: vec![RepoPattern::parse("team-a/*").unwrap()],
        actions: vec![Action::Pull, Action::Push],
        expires,
        description: None,
    };
    let ci = r.create(robot("ci", None), now).unwrap();
    let expired = r
        .create(robot("old", Some(now - Duration::from_secs(60))), now)
        .unwrap();
    std::fs::write(auth.join("robots.yml"), r.render()).unwrap();
    Secrets { ci, expired }
}

pub fn auth_options(dir: &Path, issuer: bool, per_client: u32) -> AuthOptions {
    let auth = dir.join("auth");
    AuthOptions {
        htpasswd: Some(HtpasswdOptions {
            realm: "Berth test".into(),
            path: auth.join("htpasswd"),
        }),
        robots: Some(auth.join("robots.yml")),
        issuer: issuer.then(|| IssuerOptions {
            key: auth.join("token.key"),
            issuer: "berth-test".into(),
            service: "berth-registry".into(),
            lifetime: Duration::from_secs(300),
            session_lifetime: berth_auth::token::DEFAULT_SESSION_LIFETIME,
            realm: None,
        }),
        policy: Some(serde_yaml::from_str(POLICY).unwrap()),
        limits: LimitConfig {
            per_client,
            ..LimitConfig::default()
        },
        ..AuthOptions::default()
    }
}

/// A registry with basic auth (htpasswd + robots + policy).
pub fn basic_registry(per_client: u32) -> (Reg, Secrets) {
    let mut secrets = None;
    let reg = Reg::with_api(|dir| {
        secrets = Some(write_files(dir));
        let auth = Authenticator::new(auth_options(dir, false, per_client)).unwrap();
        ApiOptions {
            auth: Some(Arc::new(auth)),
            ..ApiOptions::default()
        }
    });
    (reg, secrets.unwrap())
}

/// A registry with Berth's own token issuer.
pub fn token_registry(per_client: u32) -> (Reg, Secrets, Arc<Authenticator>) {
    let mut out = None;
    let reg = Reg::with_api(|dir| {
        let s = write_files(dir);
        let auth = Arc::new(Authenticator::new(auth_options(dir, true, per_client)).unwrap());
        out = Some((s, auth.clone()));
        ApiOptions {
            auth: Some(auth),
            ..ApiOptions::default()
        }
    });
    let (s, a) = out.unwrap();
    (reg, s, a)
}

pub fn basic(user: &str, pw: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pw}")))
}

/// The password the fixture gave `user`.
pub fn login(user: &str) -> String {
    basic(user, &format!("{user}-pw"))
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl Reg {
    pub async fn as_(&self, auth: &str, method: &str, uri: &str, body: impl Into<Body>) -> Resp {
        let headers: Vec<(&str, &str)> = if auth.is_empty() {
            vec![]
        } else {
            vec![("authorization", auth)]
        };
        self.req(method, uri, &headers, body).await
    }

    pub async fn get_as(&self, auth: &str, uri: &str) -> Resp {
        self.as_(auth, "GET", uri, Body::empty()).await
    }

    /// Monolithic blob upload as `auth`.
    pub async fn push_blob_as(&self, auth: &str, repo: &str, data: &[u8]) -> Resp {
        let d = Digest::sha256_of(data);
        self.as_(
            auth,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            data.to_vec(),
        )
        .await
    }

    /// Config + layer + manifest tagged `tag`, as `auth`; the manifest response.
    pub async fn push_image_as(&self, auth: &str, repo: &str, tag: &str, layer: &[u8]) -> Resp {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        for blob in [&config[..], layer] {
            let r = self.push_blob_as(auth, repo, blob).await;
            if r.status.as_u16() != 201 {
                return r;
            }
        }
        let m = image_manifest(
            &Digest::sha256_of(config),
            config.len(),
            &[(&Digest::sha256_of(layer), layer.len())],
            None,
        );
        let headers = [("authorization", auth), ("content-type", OCI_MANIFEST)];
        let headers: Vec<(&str, &str)> =
            headers.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        self.req("PUT", &format!("/v2/{repo}/manifests/{tag}"), &headers, m)
            .await
    }

    /// The whole catalog as the admin.
    pub async fn catalog_as(&self, auth: &str) -> Vec<String> {
        let r = self.get_as(auth, "/v2/_catalog").await;
        r.assert_status(200);
        names(&r.json()["repositories"])
    }

    /// Tags of `repo` as the admin (empty when unknown).
    pub async fn tags_as_root(&self, repo: &str) -> Vec<String> {
        let r = self
            .get_as(&login("root"), &format!("/v2/{repo}/tags/list"))
            .await;
        if r.status.as_u16() == 404 {
            return vec![];
        }
        names(&r.json()["tags"])
    }

    /// Everything an attack must leave unchanged: catalog, tags, files.
    pub async fn snapshot(&self) -> (Vec<String>, Vec<Vec<String>>, Vec<String>) {
        let catalog = self.catalog_as(&login("root")).await;
        let mut tags = Vec::new();
        for repo in &catalog {
            tags.push(self.tags_as_root(repo).await);
        }
        (catalog, tags, self.files())
    }

    /// Seeds `team-a/app:v1`, `team-b/secret:v1`, `public/app:v1` as the admin.
    pub async fn seed(&self) {
        for (repo, layer) in [
            ("team-a/app", &b"team a layer"[..]),
            ("team-b/secret", b"team b secret layer"),
            ("public/app", b"public layer"),
        ] {
            self.push_image_as(&login("root"), repo, "v1", layer)
                .await
                .assert_status(201);
        }
    }
}

fn names(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// The `WWW-Authenticate` header of a response.
pub fn challenge(r: &Resp) -> String {
    r.header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate: {}", String::from_utf8_lossy(&r.body)))
        .to_string()
}
