use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::EncodingKey;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use serde_json::json;

use super::*;
use crate::scope::Action;
use jsonwebtoken::Algorithm;

const ISS: &str = "berth-test";
const SVC: &str = "registry.test";

fn issuer() -> TokenIssuer {
    let key = SigningKey::from_pem(generate_p256_pem().unwrap().as_bytes()).unwrap();
    TokenIssuer::new(key, ISS, SVC, Duration::from_secs(300))
}

fn repo(n: &str) -> RepoName {
    RepoName::parse(n).unwrap()
}

fn pull_push(n: &str) -> Scope {
    Scope::Repository(repo(n), Actions::only(Action::Pull).with(Action::Push))
}

fn now() -> u64 {
    secs(SystemTime::now())
}

fn claims(exp: u64, nbf: u64) -> Claims {
    Claims {
        iss: ISS.into(),
        sub: "alice".into(),
        aud: Audience::One(SVC.into()),
        exp,
        nbf,
        iat: nbf,
        jti: "x".into(),
        access: vec![ResourceActions::from_scope(&pull_push("a"))],
        cred: String::new(),
    }
}

/// Signs arbitrary claims with `key`, as ES256 with the given `kid`.
fn sign(key: &EncodingKey, kid: Option<&str>, x5c: Option<Vec<String>>, c: &Claims) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = kid.map(String::from);
    h.x5c = x5c;
    jsonwebtoken::encode(&h, c, key).unwrap()
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn issued_tokens_verify_and_grant_exactly_the_scopes() {
    let iss = issuer();
    let v = TokenVerifier::own(&iss);
    let t = iss
        .issue("alice", &[pull_push("team/app"), Scope::Catalog])
        .unwrap();
    assert_eq!(t.expires_in, 300);
    let access = v.verify(&t.token).unwrap();
    assert_eq!(access.subject, "alice");
    assert_eq!(
        access.actions_on(&repo("team/app")).to_string(),
        "pull,push"
    );
    assert!(access.actions_on(&repo("team/other")).is_empty());
    assert!(access.catalog);
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(t.token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], iss.public_key().kid.as_str());
    let body: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(t.token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    for k in ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"] {
        assert!(body.get(k).is_some(), "claim {k} missing: {body}");
    }
}

#[test]
fn rs256_issuer_works() {
    let key = SigningKey::from_pem(include_str!("testdata/rsa2048.pem").as_bytes()).unwrap();
    let iss = TokenIssuer::new(key, ISS, SVC, Duration::from_secs(60));
    let t = iss.issue("bob", &[pull_push("x")]).unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(t.token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    let access = TokenVerifier::own(&iss).verify(&t.token).unwrap();
    assert_eq!(access.actions_on(&repo("x")).to_string(), "pull,push");
}

#[test]
fn refuses_another_key_expired_future_issuer_audience() {
    let iss = issuer();
    let v = TokenVerifier::own(&iss);
    let other = issuer();
    let t = other.issue("alice", &[pull_push("a")]).unwrap();
    assert!(matches!(
        v.verify(&t.token),
        Err(TokenError::UntrustedKey(_))
    ));
    // another key pretending to be ours (our kid) fails on the signature
    let pem = generate_p256_pem().unwrap();
    let forged = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let c = claims(now() + 60, now());
    let t = sign(&forged, Some(&iss.public_key().kid), None, &c);
    assert_eq!(v.verify(&t), Err(TokenError::Signature));

    let ours = iss.key.encoding();
    let kid = Some(iss.public_key().kid.as_str());
    assert_eq!(
        v.verify(&sign(ours, kid, None, &c)).map(|a| a.subject),
        Ok("alice".into())
    );
    let expired = claims(now() - 3600, now() - 7200);
    assert_eq!(
        v.verify(&sign(ours, kid, None, &expired)),
        Err(TokenError::Expired)
    );
    // inside the leeway an expired token still passes
    let just = claims(now() - 2, now() - 60);
    assert!(v.verify(&sign(ours, kid, None, &just)).is_ok());
    let future = claims(now() + 7200, now() + 3600);
    assert_eq!(
        v.verify(&sign(ours, kid, None, &future)),
        Err(TokenError::NotYetValid)
    );
    let mut wrong_iss = c.clone();
    wrong_iss.iss = "evil".into();
    assert_eq!(
        v.verify(&sign(ours, kid, None, &wrong_iss)),
        Err(TokenError::Issuer)
    );
    let mut wrong_aud = c.clone();
    wrong_aud.aud = Audience::Many(vec!["other".into()]);
    assert_eq!(
        v.verify(&sign(ours, kid, None, &wrong_aud)),
        Err(TokenError::Audience)
    );
    let mut list_aud = c;
    list_aud.aud = Audience::Many(vec!["other".into(), SVC.into()]);
    assert!(v.verify(&sign(ours, kid, None, &list_aud)).is_ok());
}

#[test]
fn refuses_alg_none_and_hmac_confusion() {
    let iss = issuer();
    let v = TokenVerifier::own(&iss);
    let c = serde_json::to_value(claims(now() + 60, now())).unwrap();
    for alg in ["none", "None", "HS256", "HS512", "ES384", "RS256"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": iss.public_key().kid});
        let unsigned = format!("{}.{}.", b64(&header), b64(&c));
        assert_eq!(
            v.verify(&unsigned),
            Err(TokenError::Algorithm(berth_oci::quoted(alg))),
            "{alg}"
        );
    }
    // HS256 keyed with the public key bytes (the classic confusion attack)
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(iss.public_key().kid.clone());
    let secret = EncodingKey::from_secret(iss.public_key().kid.as_bytes());
    let t = jsonwebtoken::encode(&h, &claims(now() + 60, now()), &secret).unwrap();
    assert_eq!(
        v.verify(&t),
        Err(TokenError::Algorithm(berth_oci::quoted("HS256")))
    );
}

#[test]
fn refuses_malformed_tokens() {
    let v = TokenVerifier::own(&issuer());
    for t in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.x.y",
        &format!("{}.x.y", b64(&json!([1]))),
    ] {
        assert!(
            matches!(v.verify(t), Err(TokenError::Malformed(_))),
            "{t:?}"
        );
    }
}

#[test]
fn access_claims_ignore_junk() {
    let c = Claims {
        access: vec![
            ResourceActions {
                kind: "repository".into(),
                name: "../etc".into(),
                actions: vec!["*".into()],
            },
            ResourceActions {
                kind: "repository".into(),
                name: "ok".into(),
                actions: vec!["pull".into(), "fly".into()],
            },
            ResourceActions {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["pull".into()],
            },
        ],
        ..claims(0, 0)
    };
    let a = TokenAccess::from_claims(&c);
    assert_eq!(a.repositories.len(), 1);
    assert_eq!(a.actions_on(&repo("ok")).to_string(), "pull");
    assert!(!a.catalog, "catalog needs *");
}

// ---- refresh tokens and bound access tokens ----

#[test]
fn refresh_tokens_round_trip_and_are_not_access_tokens() {
    let iss = issuer();
    let v = TokenVerifier::own(&iss);
    let fp = credential_fingerprint("alice", "$2y$10$hash");
    let r = iss
        .issue_refresh("alice", &fp)
        .unwrap()
        .expect("sessions on");
    let s = v.verify_refresh(&r).unwrap();
    assert_eq!(
        (s.subject.as_str(), s.credential.as_str()),
        ("alice", fp.as_str())
    );
    assert_eq!(s.expires - s.auth_time, DEFAULT_SESSION_LIFETIME.as_secs());
    assert_eq!(v.verify(&r), Err(TokenError::Audience), "not usable on /v2");
    let access = iss.issue("alice", &[pull_push("a")]).unwrap().token;
    assert_eq!(v.verify_refresh(&access), Err(TokenError::Audience));
    let other = TokenVerifier::own(&issuer());
    assert!(other.verify_refresh(&r).is_err(), "another key");
}

#[test]
fn sessions_can_be_switched_off() {
    let iss = issuer().with_session_lifetime(Duration::ZERO);
    assert_eq!(iss.issue_refresh("alice", "fp").unwrap(), None);
}

#[test]
fn bound_access_tokens_end_with_their_session() {
    let iss = issuer();
    let v = TokenVerifier::own(&iss);
    let t = iss
        .issue_bound("alice", "fp1", &[pull_push("a")], Some(now() + 42))
        .unwrap();
    assert!((41..=42).contains(&t.expires_in), "{}", t.expires_in);
    let a = v.verify(&t.token).unwrap();
    assert_eq!(a.credential, "fp1");
    let far = iss
        .issue_bound("alice", "fp1", &[], Some(now() + 10_000))
        .unwrap();
    assert_eq!(far.expires_in, 300, "never longer than the lifetime");
}

#[test]
fn fingerprints_differ_per_login_and_credential() {
    let a = credential_fingerprint("alice", "h1");
    assert_eq!(a.len(), 32);
    assert_ne!(a, credential_fingerprint("alice", "h2"));
    assert_ne!(a, credential_fingerprint("bob", "h1"));
    assert_ne!(
        credential_fingerprint("ab", "c"),
        credential_fingerprint("a", "bc")
    );
}

#[test]
fn a_hostile_kid_is_quoted_bounded() {
    let iss = issuer();
    let v = TokenVerifier::own(&iss);
    let key = SigningKey::from_pem(generate_p256_pem().unwrap().as_bytes()).unwrap();
    let kid = format!("../../etc/passwd\n{}", "x".repeat(500));
    let t = sign(key.encoding(), Some(&kid), None, &claims(now() + 60, now()));
    let Err(TokenError::UntrustedKey(msg)) = v.verify(&t) else {
        panic!("expected an untrusted key");
    };
    assert!(msg.len() < 100, "{msg}");
    assert!(
        msg.starts_with("unknown kid \"../../etc/passwd\\u{a}xxx"),
        "{msg}"
    );
}

// ---- external issuer (rootcertbundle) ----

struct Pki {
    key: KeyPair,
    cert: rcgen::Certificate,
}

fn params(cn: &str, ca: bool) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p
}

fn self_signed(cn: &str, ca: bool) -> Pki {
    let key = KeyPair::generate().unwrap();
    let cert = params(cn, ca).self_signed(&key).unwrap();
    Pki { key, cert }
}

fn signed(cn: &str, ca: bool, by: &Pki, p: Option<CertificateParams>) -> Pki {
    let key = KeyPair::generate().unwrap();
    let cert = p
        .unwrap_or_else(|| params(cn, ca))
        .signed_by(&key, &by.cert, &by.key)
        .unwrap();
    Pki { key, cert }
}

fn enc(p: &Pki) -> EncodingKey {
    EncodingKey::from_ec_pem(p.key.serialize_pem().as_bytes()).unwrap()
}

fn x5c(chain: &[&Pki]) -> Option<Vec<String>> {
    Some(
        chain
            .iter()
            .map(|p| STANDARD.encode(p.cert.der()))
            .collect(),
    )
}

fn external(bundle: &[&Pki]) -> TokenVerifier {
    let pem: String = bundle.iter().map(|p| p.cert.pem()).collect();
    TokenVerifier::external(TrustBundle::from_pem(pem.as_bytes()).unwrap(), ISS, SVC)
}

#[test]
fn external_tokens_with_x5c_chains() {
    let root = self_signed("root", true);
    let inter = signed("intermediate", true, &root, None);
    let leaf = signed("token-signer", false, &inter, None);
    let direct = signed("direct-signer", false, &root, None);
    let c = claims(now() + 60, now());
    let v = external(&[&root]);
    for (name, key, chain) in [
        ("leaf+intermediate", &leaf, x5c(&[&leaf, &inter])),
        ("leaf signed by root", &direct, x5c(&[&direct])),
        ("root itself", &root, x5c(&[&root])),
    ] {
        let a = v.verify(&sign(&enc(key), None, chain, &c));
        assert_eq!(a.map(|a| a.subject), Ok("alice".into()), "{name}");
    }
    // the intermediate is missing from x5c
    let t = sign(&enc(&leaf), None, x5c(&[&leaf]), &c);
    assert!(matches!(v.verify(&t), Err(TokenError::UntrustedKey(_))));
    // a chain to another root
    let evil_root = self_signed("root", true);
    let evil = signed("token-signer", false, &evil_root, None);
    let t = sign(&enc(&evil), None, x5c(&[&evil, &evil_root]), &c);
    assert!(matches!(v.verify(&t), Err(TokenError::UntrustedKey(_))));
    // a trusted chain, but the token signed by another key
    let t = sign(&enc(&evil), None, x5c(&[&direct]), &c);
    assert_eq!(v.verify(&t), Err(TokenError::Signature));
    // an intermediate that is not a CA cannot vouch for the leaf
    let not_ca = signed("not-a-ca", false, &root, None);
    let under = signed("under", false, &not_ca, None);
    let t = sign(&enc(&under), None, x5c(&[&under, &not_ca]), &c);
    assert!(matches!(v.verify(&t), Err(TokenError::UntrustedKey(_))));
}

#[test]
fn external_tokens_with_expired_certificates_are_refused() {
    let root = self_signed("root", true);
    let mut p = params("old-signer", false);
    p.not_before = rcgen::date_time_ymd(2000, 1, 1);
    p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let old = signed("old-signer", false, &root, Some(p));
    let t = sign(&enc(&old), None, x5c(&[&old]), &claims(now() + 60, now()));
    assert!(matches!(
        external(&[&root]).verify(&t),
        Err(TokenError::UntrustedKey(_))
    ));
}

#[test]
fn external_tokens_by_kid() {
    let signer = self_signed("signer", false);
    let v = external(&[&signer]);
    let spki = signer.key.public_key_der();
    let kid = libtrust_kid(&spki);
    let c = claims(now() + 60, now());
    assert!(v.verify(&sign(&enc(&signer), Some(&kid), None, &c)).is_ok());
    // the RFC 7638 thumbprint names the same key
    let bundle_key = TrustBundle::from_pem(signer.cert.pem().as_bytes()).unwrap();
    let thumb = bundle_key.key_by_id(&kid).unwrap().thumbprint.clone();
    assert!(v
        .verify(&sign(&enc(&signer), Some(&thumb), None, &c))
        .is_ok());
    let stranger = self_signed("stranger", false);
    let t = sign(&enc(&stranger), Some("ABCD:EFGH"), None, &c);
    assert!(matches!(v.verify(&t), Err(TokenError::UntrustedKey(_))));
    let t = sign(&enc(&signer), None, None, &c);
    assert!(matches!(v.verify(&t), Err(TokenError::UntrustedKey(_))));
}

#[test]
fn thumbprint_matches_rfc7638_example() {
    // RFC 7638 section 3.1: the example RSA key's thumbprint.
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let n = URL_SAFE_NO_PAD.decode(n).unwrap();
    let k = PublicKey::rsa(&n, &[1, 0, 1], b"unused", b"unused");
    assert_eq!(k.thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn bundles_need_certificates() {
    assert!(TrustBundle::from_pem(b"").is_err());
    assert!(TrustBundle::from_pem(generate_p256_pem().unwrap().as_bytes()).is_err());
}
