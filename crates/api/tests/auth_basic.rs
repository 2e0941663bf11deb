//! Access control with basic credentials (htpasswd users and robots), through the router:
//! every denial answers the right status and code and leaves storage and metadata unchanged.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod auth_common;
mod common;

use auth_common::*;
use axum::body::Body;
use berth_oci::Digest;

const APP: &str = "/v2/team-a/app/manifests/v1";

#[tokio::test]
async fn no_wrong_or_unknown_credentials_get_401_with_basic_challenge() {
    let (reg, _) = basic_registry(100);
    reg.seed().await;
    let before = reg.snapshot().await;
    for auth in [
        String::new(),
        basic("alice", "wrong"),
        basic("mallory", "alice-pw"),
        "Basic !!!".to_string(),
        "Digest nope".to_string(),
        bearer("not.a.token"),
    ] {
        for (method, uri) in [("GET", "/v2/"), ("GET", APP), ("DELETE", APP)] {
            let r = reg.as_(&auth, method, uri, Body::empty()).await;
            r.assert_error(401, "UNAUTHORIZED");
            assert_eq!(
                challenge(&r),
                "Basic realm=\"Berth test\"",
                "{auth} {method} {uri}"
            );
        }
        let r = reg
            .push_image_as(&auth, "team-a/app", "evil", b"evil layer")
            .await;
        r.assert_error(401, "UNAUTHORIZED");
        let r = reg
            .push_image_as(&auth, "public/app", "evil", b"evil layer")
            .await;
        r.assert_error(401, "UNAUTHORIZED");
    }
    assert_eq!(reg.snapshot().await, before);
}

#[tokio::test]
async fn users_get_what_the_policy_grants() {
    let (reg, _) = basic_registry(100);
    reg.seed().await;
    reg.get_as(&login("alice"), "/v2/").await.assert_status(200);
    reg.get_as(&login("alice"), APP).await.assert_status(200);
    reg.push_image_as(&login("alice"), "team-a/new", "v1", b"alice layer")
        .await
        .assert_status(201);
    reg.get_as(&login("bob"), APP).await.assert_status(200);
    reg.get_as(&login("alice"), "/v2/team-b/secret/manifests/v1")
        .await
        .assert_error(403, "DENIED");
    reg.get_as(&login("alice"), "/v2/team-b/secret/tags/list")
        .await
        .assert_error(403, "DENIED");
    // anyone may pull public/**, with or without credentials; containers/image sends an
    // empty basic pair (`Basic Og==`) when it has none, which counts as no credentials
    reg.get_as(&basic("", ""), "/v2/public/app/manifests/v1")
        .await
        .assert_status(200);
    reg.get_as(&basic("", ""), APP)
        .await
        .assert_error(401, "UNAUTHORIZED");
    reg.get_as("", "/v2/public/app/manifests/v1")
        .await
        .assert_status(200);
    reg.get_as(&login("bob"), "/v2/public/app/tags/list")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn pull_only_users_and_anonymous_cannot_push() {
    let (reg, _) = basic_registry(100);
    reg.seed().await;
    let before = reg.snapshot().await;
    let r = reg
        .push_image_as(&login("bob"), "team-a/app", "bob", b"bob layer")
        .await;
    r.assert_error(403, "DENIED");
    let r = reg
        .push_image_as("", "public/app", "anon", b"anon layer")
        .await;
    r.assert_error(401, "UNAUTHORIZED");
    // starting a session is a push too
    reg.as_("", "POST", "/v2/public/app/blobs/uploads/", Body::empty())
        .await
        .assert_error(401, "UNAUTHORIZED");
    reg.as_(
        &login("bob"),
        "POST",
        "/v2/team-a/app/blobs/uploads/",
        Body::empty(),
    )
    .await
    .assert_error(403, "DENIED");
    assert_eq!(reg.snapshot().await, before);
}

#[tokio::test]
async fn deleting_needs_delete() {
    let (reg, _) = basic_registry(100);
    reg.seed().await;
    let before = reg.snapshot().await;
    let m = reg.get_as(&login("alice"), APP).await;
    let digest = m.header("docker-content-digest").unwrap().to_string();
    let layer = Digest::sha256_of(b"team a layer");
    for uri in [
        APP.to_string(),
        format!("/v2/team-a/app/manifests/{digest}"),
        format!("/v2/team-a/app/blobs/{layer}"),
    ] {
        reg.as_(&login("alice"), "DELETE", &uri, Body::empty())
            .await
            .assert_error(403, "DENIED");
        reg.as_("", "DELETE", &uri, Body::empty())
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    assert_eq!(reg.snapshot().await, before);
    reg.as_(&login("carol"), "DELETE", APP, Body::empty())
        .await
        .assert_status(202);
    assert!(reg.tags_as_root("team-a/app").await.is_empty());
}

#[tokio::test]
async fn robots_stay_inside_their_patterns_and_expire() {
    let (reg, s) = basic_registry(100);
    reg.seed().await;
    let ci = basic("robot$ci", &s.ci);
    reg.push_image_as(&ci, "team-a/built", "v1", b"ci layer")
        .await
        .assert_status(201);
    reg.get_as(&ci, APP).await.assert_status(200);
    let before = reg.snapshot().await;
    for repo in ["team-a/app/deep", "team-b/secret", "other"] {
        let r = reg.push_image_as(&ci, repo, "ci", b"ci layer 2").await;
        r.assert_error(403, "DENIED");
    }
    reg.get_as(&ci, "/v2/team-b/secret/manifests/v1")
        .await
        .assert_error(403, "DENIED");
    reg.as_(&ci, "DELETE", APP, Body::empty())
        .await
        .assert_error(403, "DENIED");
    let old = basic("robot$old", &s.expired);
    reg.get_as(&old, APP)
        .await
        .assert_error(401, "UNAUTHORIZED");
    reg.push_image_as(&old, "team-a/app", "x", b"old layer")
        .await
        .assert_error(401, "UNAUTHORIZED");
    reg.get_as(&basic("robot$ci", "guessed"), APP)
        .await
        .assert_error(401, "UNAUTHORIZED");
    assert_eq!(reg.snapshot().await, before);
}

#[tokio::test]
async fn catalog_needs_login_and_shows_only_pullable_repositories() {
    let (reg, s) = basic_registry(100);
    reg.seed().await;
    reg.push_image_as(&login("root"), "team-a/z", "v1", b"z")
        .await
        .assert_status(201);
    let r = reg.get_as("", "/v2/_catalog").await;
    r.assert_error(401, "UNAUTHORIZED");
    assert_eq!(
        reg.catalog_as(&login("root")).await,
        ["public/app", "team-a/app", "team-a/z", "team-b/secret"]
    );
    assert_eq!(
        reg.catalog_as(&login("alice")).await,
        ["public/app", "team-a/app", "team-a/z"]
    );
    assert_eq!(
        reg.catalog_as(&basic("robot$ci", &s.ci)).await,
        ["public/app", "team-a/app", "team-a/z"]
    );
    // pagination counts only visible names and never points past them
    let r = reg.get_as(&login("alice"), "/v2/_catalog?n=2").await;
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["public/app", "team-a/app"])
    );
    let link = r.header("link").unwrap().to_string();
    assert!(link.contains("last=team-a%2Fapp"), "{link}");
    let r = reg
        .get_as(&login("alice"), "/v2/_catalog?n=2&last=team-a%2Fapp")
        .await;
    assert_eq!(r.json()["repositories"], serde_json::json!(["team-a/z"]));
    assert_eq!(
        r.header("link"),
        None,
        "team-b/secret must not cause a next link"
    );
    let r = reg.get_as(&login("alice"), "/v2/_catalog?n=0").await;
    assert_eq!(r.json()["repositories"], serde_json::json!([]));
}

#[tokio::test]
async fn mounts_need_pull_on_the_source() {
    let (reg, _) = basic_registry(100);
    reg.seed().await;
    let secret = Digest::sha256_of(b"team b secret layer");
    let public = Digest::sha256_of(b"public layer");
    let r = reg
        .as_(
            &login("alice"),
            "POST",
            &format!("/v2/team-a/app/blobs/uploads/?mount={secret}&from=team-b/secret"),
            Body::empty(),
        )
        .await;
    r.assert_status(202);
    assert!(r.header("location").unwrap().contains("/blobs/uploads/"));
    reg.req(
        "HEAD",
        &format!("/v2/team-a/app/blobs/{secret}"),
        &[("authorization", &login("alice"))],
        Body::empty(),
    )
    .await
    .assert_status(404);
    let r = reg
        .as_(
            &login("alice"),
            "POST",
            &format!("/v2/team-a/app/blobs/uploads/?mount={public}&from=public/app"),
            Body::empty(),
        )
        .await;
    r.assert_status(201);
    // a mount into a repository without push is refused outright
    reg.as_(
        &login("bob"),
        "POST",
        &format!("/v2/team-a/app/blobs/uploads/?mount={public}&from=public/app"),
        Body::empty(),
    )
    .await
    .assert_error(403, "DENIED");
}

#[tokio::test]
async fn repeated_failures_get_429_with_retry_after() {
    let (reg, _) = basic_registry(3);
    reg.seed().await;
    let before = reg.snapshot().await;
    for _ in 0..3 {
        reg.get_as(&basic("alice", "guess"), APP)
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    let r = reg.get_as(&basic("alice", "guess"), APP).await;
    r.assert_error(429, "TOOMANYREQUESTS");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // the right password does not get through from this client during the window either
    reg.get_as(&login("alice"), APP)
        .await
        .assert_error(429, "TOOMANYREQUESTS");
    // requests without credentials are not logins and still work where anonymous may
    reg.get_as("", "/v2/public/app/manifests/v1")
        .await
        .assert_status(200);
    assert_eq!(reg.files(), before.2);
}

#[tokio::test]
async fn invalid_repository_names_are_refused_before_auth() {
    let (reg, _) = basic_registry(100);
    for uri in [
        "/v2/team-a/../team-b/tags/list",
        "/v2/%2e%2e/x/tags/list",
        "/v2/team-a/*/tags/list",
    ] {
        reg.get_as(&login("root"), uri)
            .await
            .assert_error(400, "NAME_INVALID");
    }
}
