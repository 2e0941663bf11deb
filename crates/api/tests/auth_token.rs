//! Bearer tokens through the router: Berth's own token endpoint and the attacks on it, and
//! registry:2's external `auth.token` mode with a certificate bundle.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod auth_common;
mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use auth_common::*;
use axum::body::Body;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use berth_api::ApiOptions;
use berth_auth::token::{libtrust_kid, Audience, Claims, ResourceActions, SigningKey};
use berth_auth::{AuthOptions, Authenticator, ExternalTokenOptions};
use common::Reg;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const APP: &str = "/v2/team-a/app/manifests/v1";

async fn token(reg: &Reg, auth: &str, scopes: &[&str]) -> String {
    let mut uri = "/auth/token?service=berth-registry".to_string();
    for s in scopes {
        uri.push_str(&format!("&scope={}", s.replace(' ', "%20")));
    }
    let r = reg.get_as(auth, &uri).await;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["token"], v["access_token"]);
    assert_eq!(v["expires_in"], 300);
    assert!(v["issued_at"].is_string());
    v["token"].as_str().unwrap().to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str, repo: &str, actions: &[&str], exp: u64) -> Claims {
    Claims {
        iss: "berth-test".into(),
        sub: sub.into(),
        aud: Audience::One("berth-registry".into()),
        exp,
        nbf: now() - 10,
        iat: now() - 10,
        jti: "t".into(),
        access: vec![ResourceActions {
            kind: "repository".into(),
            name: repo.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }],
        cred: String::new(),
    }
}

fn sign(key: &EncodingKey, kid: &str, c: &Claims) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, c, key).unwrap()
}

#[tokio::test]
async fn challenges_point_at_the_token_endpoint_and_tokens_work() {
    let (reg, _, _) = token_registry(100);
    reg.seed().await;
    let r = reg.get_as("", "/v2/").await;
    r.assert_error(401, "UNAUTHORIZED");
    assert_eq!(
        challenge(&r),
        r#"Bearer realm="http://localhost/auth/token",service="berth-registry""#
    );
    let r = reg
        .req("GET", APP, &[("host", "reg.example:5000")], Body::empty())
        .await;
    assert_eq!(
        challenge(&r),
        r#"Bearer realm="http://reg.example:5000/auth/token",service="berth-registry",scope="repository:team-a/app:pull""#
    );
    let r = reg.push_blob_as("", "team-a/app", b"x").await;
    assert!(challenge(&r).ends_with(r#"scope="repository:team-a/app:pull,push""#));

    let t = token(&reg, &login("alice"), &["repository:team-a/app:pull,push"]).await;
    reg.get_as(&bearer(&t), "/v2/").await.assert_status(200);
    reg.get_as(&bearer(&t), APP).await.assert_status(200);
    reg.push_image_as(&bearer(&t), "team-a/app", "v2", b"via token")
        .await
        .assert_status(201);
    // basic credentials keep working on /v2 in token mode
    reg.get_as(&login("alice"), APP).await.assert_status(200);
}

#[tokio::test]
async fn the_token_endpoint_grants_the_intersection_of_request_and_policy() {
    let (reg, s, _) = token_registry(100);
    let scopes = [
        "repository:team-a/app:pull,push,delete",
        "repository:team-b/secret:pull",
        "repository:public/app:pull,push",
        "registry:catalog:*",
    ];
    let r = reg
        .get_as(
            &login("alice"),
            &format!(
                "/auth/token?service=berth-registry&scope={}",
                scopes.join("&scope=")
            ),
        )
        .await;
    assert_eq!(
        r.json()["scope"],
        "repository:team-a/app:pull,push repository:public/app:pull registry:catalog:*"
    );
    let r = reg
        .get_as("", "/auth/token?service=berth-registry&scope=repository:public/app:pull,push&scope=registry:catalog:*")
        .await;
    assert_eq!(
        r.json()["scope"],
        "repository:public/app:pull",
        "anonymous tokens"
    );
    let r = reg
        .get_as(
            &basic("robot$ci", &s.ci),
            "/auth/token?scope=repository:team-a/app:push%20repository:team-a/app/deep:pull",
        )
        .await;
    assert_eq!(r.json()["scope"], "repository:team-a/app:push");
    // the OAuth2 password grant
    let form = "grant_type=password&username=alice&password=alice-pw&service=berth-registry&scope=repository%3Ateam-a%2Fapp%3Apull&client_id=test";
    let r = reg
        .req(
            "POST",
            "/auth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            form,
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.json()["scope"], "repository:team-a/app:pull");
    let t = r.json()["access_token"].as_str().unwrap().to_string();
    reg.get_as(&bearer(&t), "/v2/").await.assert_status(200);
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_logins_and_bad_scopes() {
    let (reg, s, _) = token_registry(100);
    for auth in [
        basic("alice", "wrong"),
        basic("nobody", "x"),
        basic("robot$old", &s.expired),
    ] {
        let r = reg
            .get_as(
                &auth,
                "/auth/token?service=berth-registry&scope=repository:team-a/app:pull",
            )
            .await;
        r.assert_error(401, "UNAUTHORIZED");
        assert!(challenge(&r).starts_with("Basic realm="));
    }
    for scope in [
        "repository:../etc:pull",
        "repository:team-a/../team-b:pull",
        "repository:team-a/*:pull",
        "repository:**:pull,push",
        "repository:Team-A/app:pull",
    ] {
        reg.get_as(
            &login("root"),
            &format!("/auth/token?service=berth-registry&scope={scope}"),
        )
        .await
        .assert_error(400, "NAME_INVALID");
    }
    for scope in ["repository", "bucket:x:pull", "registry:everything:*"] {
        reg.get_as(&login("root"), &format!("/auth/token?scope={scope}"))
            .await
            .assert_error(400, "UNSUPPORTED");
    }
    reg.get_as(
        &login("root"),
        "/auth/token?service=other&scope=repository:a:pull",
    )
    .await
    .assert_error(400, "UNSUPPORTED");
    let r = reg
        .req(
            "POST",
            "/auth/token",
            &[],
            "grant_type=refresh_token&refresh_token=x",
        )
        .await;
    r.assert_error(401, "UNAUTHORIZED");
    let r = reg
        .req("POST", "/auth/token", &[], "grant_type=client_credentials")
        .await;
    r.assert_error(400, "UNSUPPORTED");
    reg.req("PUT", "/auth/token", &[], Body::empty())
        .await
        .assert_error(405, "UNSUPPORTED");
}

#[tokio::test]
async fn token_attacks_are_refused_and_change_nothing() {
    let (reg, _, auth) = token_registry(100);
    reg.seed().await;
    let before = reg.snapshot().await;
    let ours = SigningKey::from_pem(&std::fs::read(reg.dir.path().join("auth/token.key")).unwrap())
        .unwrap();
    let kid = auth.issuer().unwrap().public_key().kid.clone();
    let push_claims = claims("alice", "team-a/app", &["pull", "push"], now() + 300);

    // signed by another key (with our kid, and with its own)
    let other =
        SigningKey::from_pem(berth_auth::token::generate_p256_pem().unwrap().as_bytes()).unwrap();
    // expired, with our key
    let expired = sign(
        ours.encoding(),
        &kid,
        &claims("alice", "team-a/app", &["pull", "push"], now() - 120),
    );
    // alg none and HS256 keyed with public material
    let hdr = |alg: &str| {
        URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string())
    };
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_string(&push_claims).unwrap());
    let none = format!("{}.{body}.", hdr("none"));
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let hmac =
        jsonwebtoken::encode(&hs, &push_claims, &EncodingKey::from_secret(kid.as_bytes())).unwrap();
    for (name, t) in [
        (
            "other key, our kid",
            sign(other.encoding(), &kid, &push_claims),
        ),
        (
            "other key, its kid",
            sign(other.encoding(), &other.public.kid, &push_claims),
        ),
        ("expired", expired),
        ("alg none", none),
        ("HS256", hmac),
        ("garbage", "x.y.z".into()),
    ] {
        let r = reg
            .push_image_as(&bearer(&t), "team-a/app", "evil", b"evil")
            .await;
        r.assert_error(401, "UNAUTHORIZED");
        assert!(
            challenge(&r).contains(r#"error="invalid_token""#),
            "{name}: {}",
            challenge(&r)
        );
        reg.as_(&bearer(&t), "DELETE", APP, Body::empty())
            .await
            .assert_error(401, "UNAUTHORIZED");
    }

    // a genuine token for repository a used on repository b
    let t = token(&reg, &login("alice"), &["repository:team-a/app:pull,push"]).await;
    let r = reg
        .push_image_as(&bearer(&t), "team-a/other", "x", b"other")
        .await;
    r.assert_error(401, "UNAUTHORIZED");
    assert!(challenge(&r)
        .contains(r#"scope="repository:team-a/other:pull,push",error="insufficient_scope""#));
    reg.get_as(&bearer(&t), "/v2/team-b/secret/manifests/v1")
        .await
        .assert_error(403, "DENIED");
    // a pull-only token used to push: alice could get push (401, new token), bob could not (403)
    let t = token(&reg, &login("alice"), &["repository:team-a/app:pull"]).await;
    let r = reg
        .push_image_as(&bearer(&t), "team-a/app", "x", b"pull only")
        .await;
    r.assert_error(401, "UNAUTHORIZED");
    assert!(challenge(&r).contains("insufficient_scope"));
    let t = token(&reg, &login("bob"), &["repository:team-a/app:pull,push"]).await;
    reg.get_as(&bearer(&t), APP).await.assert_status(200);
    reg.push_image_as(&bearer(&t), "team-a/app", "x", b"bob")
        .await
        .assert_error(403, "DENIED");
    // deleting with a pull,push token
    let t = token(
        &reg,
        &login("alice"),
        &["repository:team-a/app:pull,push,delete"],
    )
    .await;
    reg.as_(&bearer(&t), "DELETE", APP, Body::empty())
        .await
        .assert_error(403, "DENIED");
    // anonymous token used to push where anonymous may only pull
    let t = token(&reg, "", &["repository:public/app:pull,push"]).await;
    reg.get_as(&bearer(&t), "/v2/public/app/manifests/v1")
        .await
        .assert_status(200);
    let r = reg
        .push_image_as(&bearer(&t), "public/app", "x", b"anon")
        .await;
    r.assert_error(401, "UNAUTHORIZED");
    // catalog needs registry:catalog:* in the token, then is filtered
    let t = token(&reg, &login("alice"), &["repository:team-a/app:pull"]).await;
    reg.get_as(&bearer(&t), "/v2/_catalog")
        .await
        .assert_error(401, "UNAUTHORIZED");
    let t = token(&reg, &login("alice"), &["registry:catalog:*"]).await;
    assert_eq!(
        reg.catalog_as(&bearer(&t)).await,
        ["public/app", "team-a/app"]
    );

    assert_eq!(reg.snapshot().await, before);
}

#[tokio::test]
async fn the_token_endpoint_limits_failed_logins() {
    let (reg, _, _) = token_registry(2);
    for _ in 0..2 {
        reg.get_as(
            &basic("alice", "guess"),
            "/auth/token?scope=repository:team-a/app:pull",
        )
        .await
        .assert_error(401, "UNAUTHORIZED");
    }
    let r = reg
        .get_as(
            &login("alice"),
            "/auth/token?scope=repository:team-a/app:pull",
        )
        .await;
    r.assert_error(429, "TOOMANYREQUESTS");
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn external_token_server_with_a_certificate_bundle() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "token ca");
    let ca = p.self_signed(&ca_key).unwrap();
    let signer_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "token signer");
    let signer = p.signed_by(&signer_key, &ca, &ca_key).unwrap();

    let reg = Reg::with_api(|dir| {
        std::fs::write(dir.join("bundle.pem"), ca.pem()).unwrap();
        let opts = AuthOptions {
            token: Some(ExternalTokenOptions {
                realm: "https://auth.example/token".into(),
                service: "berth-registry".into(),
                issuer: "berth-test".into(),
                rootcertbundle: dir.join("bundle.pem"),
                autoredirect: false,
            }),
            ..AuthOptions::default()
        };
        ApiOptions {
            auth: Some(Arc::new(Authenticator::new(opts).unwrap())),
            ..ApiOptions::default()
        }
    });
    let r = reg.get_as("", "/v2/x/tags/list").await;
    assert_eq!(
        challenge(&r),
        r#"Bearer realm="https://auth.example/token",service="berth-registry",scope="repository:x:pull""#
    );
    let key = EncodingKey::from_ec_pem(signer_key.serialize_pem().as_bytes()).unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.x5c = Some(vec![STANDARD.encode(signer.der())]);
    let t = jsonwebtoken::encode(
        &h,
        &claims("ext-user", "team-x/app", &["pull", "push"], now() + 60),
        &key,
    )
    .unwrap();
    reg.push_image_as(&bearer(&t), "team-x/app", "v1", b"external")
        .await
        .assert_status(201);
    let r = reg.get_as(&bearer(&t), "/v2/team-y/app/tags/list").await;
    r.assert_error(401, "UNAUTHORIZED");
    assert!(challenge(&r).contains("insufficient_scope"));
    // the CA key named by its libtrust kid
    let ca_pem = EncodingKey::from_ec_pem(ca_key.serialize_pem().as_bytes()).unwrap();
    let t = sign(
        &ca_pem,
        &libtrust_kid(&ca_key.public_key_der()),
        &claims("u", "team-x/app", &["pull"], now() + 60),
    );
    reg.get_as(&bearer(&t), "/v2/team-x/app/tags/list")
        .await
        .assert_status(200);
    // a self-made chain is not trusted
    let evil_key = rcgen::KeyPair::generate().unwrap();
    let evil = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&evil_key)
        .unwrap();
    let mut h = Header::new(Algorithm::ES256);
    h.x5c = Some(vec![STANDARD.encode(evil.der())]);
    let ek = EncodingKey::from_ec_pem(evil_key.serialize_pem().as_bytes()).unwrap();
    let t = jsonwebtoken::encode(
        &h,
        &claims("x", "team-x/app", &["pull", "push"], now() + 60),
        &ek,
    )
    .unwrap();
    let r = reg
        .push_image_as(&bearer(&t), "team-x/app", "evil", b"evil")
        .await;
    r.assert_error(401, "UNAUTHORIZED");
    assert!(challenge(&r).contains("invalid_token"));
    // no local token endpoint in this mode
    reg.get_as("", "/auth/token").await.assert_status(404);
}

#[tokio::test]
async fn tokens_do_not_mint_tokens_but_refresh_tokens_do() {
    let (reg, _, _) = token_registry(100);
    reg.seed().await;
    let narrow = token(&reg, &login("alice"), &["repository:team-a/app:pull"]).await;
    let r = reg
        .get_as(
            &bearer(&narrow),
            "/auth/token?scope=repository:team-a/app:push&scope=registry:catalog:*",
        )
        .await;
    r.assert_error(401, "UNAUTHORIZED");
    let v = r.json();
    assert!(v.get("token").is_none());
    let form = "grant_type=password&username=alice&password=alice-pw&access_type=offline&scope=";
    let r = reg.as_("", "POST", "/auth/token", form.to_string()).await;
    r.assert_status(200);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    reg.get_as(&bearer(&refresh), "/v2/")
        .await
        .assert_error(401, "UNAUTHORIZED");
    let form = format!(
        "grant_type=refresh_token&refresh_token={refresh}&scope=repository:team-a/app:pull,push"
    );
    let r = reg.as_("", "POST", "/auth/token", form).await;
    r.assert_status(200);
    assert!(r.json().get("refresh_token").is_none());
    let t = r.json()["access_token"].as_str().unwrap().to_string();
    reg.push_image_as(&bearer(&t), "team-a/app", "v9", b"refreshed")
        .await
        .assert_status(201);
    for bad in [
        "grant_type=refresh_token",
        "grant_type=refresh_token&refresh_token=junk",
        "grant_type=client_credentials",
    ] {
        let r = reg.as_("", "POST", "/auth/token", bad.to_string()).await;
        assert!(
            matches!(r.status.as_u16(), 400 | 401),
            "{bad}: {}",
            r.status
        );
        assert!(r.json()["errors"][0]["code"].is_string(), "{bad}");
    }
}
