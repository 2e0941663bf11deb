//! Login limits under concurrency, and what tokens stay bound to.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{basic, repo, Fixture};
use super::*;
use crate::htpasswd::Htpasswd;
use crate::scope::Action;

fn write_htpasswd(f: &Fixture, edit: impl FnOnce(&mut Htpasswd)) {
    let mut h = Htpasswd::parse(&std::fs::read_to_string(f.path("htpasswd")).unwrap()).unwrap();
    edit(&mut h);
    crate::reload::write_atomic(&f.path("htpasswd"), h.render().as_bytes()).unwrap();
}

fn pull_push(name: &str) -> Vec<Scope> {
    let acts = [Action::Pull, Action::Push].into_iter().collect();
    vec![Scope::Repository(repo(name), acts)]
}

async fn login(a: &Authenticator, user: &str, pw: &str) -> Caller {
    a.authenticate(&basic(user, pw), "10.0.0.1").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_concurrent_burst_gets_at_most_the_limit_of_checks() {
    let f = Fixture::new();
    let mut o = f.opts();
    o.limits.per_client = 10;
    let a = Arc::new(Authenticator::new(o).unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(150));
    let mut tasks = Vec::new();
    for i in 0..150 {
        let (a, b) = (a.clone(), barrier.clone());
        let pw = if i == 75 {
            "alice-pw".to_string()
        } else {
            format!("guess-{i}")
        };
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            a.authenticate(&basic("alice", &pw), "9.9.9.9").await
        }));
    }
    let (mut wrong, mut limited, mut ok) = (0, 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(AuthFailure::BadCredentials(_)) => wrong += 1,
            Err(AuthFailure::RateLimited(_)) => limited += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    // At most the limit's worth of wrong passwords are checked; the right one frees its slot,
    // so it may run on top of them.
    assert!(wrong <= 10, "{wrong} wrong checks ran; the limit is 10");
    assert!(ok <= 1);
    assert_eq!(wrong + ok + limited, 150);
    assert!(limited >= 139);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_with_the_same_password_share_one_check() {
    let f = Fixture::new();
    let mut o = f.opts();
    o.limits.per_client = 2;
    let a = Arc::new(Authenticator::new(o).unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (a, b) = (a.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            a.authenticate(&basic("alice", "alice-pw"), "9.9.9.9").await
        }));
    }
    for t in tasks {
        assert!(
            t.await.unwrap().is_ok(),
            "a client opening many connections is not limited"
        );
    }
}

#[tokio::test]
async fn guesses_from_elsewhere_do_not_lock_a_user_out_of_known_addresses() {
    let f = Fixture::new();
    let mut o = f.opts();
    o.limits.per_client = 3;
    o.limits.per_user = 5;
    o.password_cache_ttl = Duration::ZERO;
    let a = Authenticator::new(o).unwrap();
    assert!(a
        .authenticate(&basic("alice", "alice-pw"), "10.0.0.1")
        .await
        .is_ok());
    for i in 0..5 {
        let from = format!("203.0.113.{i}");
        let r = a.authenticate(&basic("alice", "guess"), &from).await;
        assert!(matches!(r, Err(AuthFailure::BadCredentials(_))), "{r:?}");
    }
    // The user is at its global limit: a new address is refused even with the password...
    assert!(matches!(
        a.authenticate(&basic("alice", "alice-pw"), "198.51.100.7")
            .await,
        Err(AuthFailure::RateLimited(_))
    ));
    // ...but where alice logged in before, she still can (bcrypt runs: the cache is off).
    assert!(a
        .authenticate(&basic("alice", "alice-pw"), "10.0.0.1")
        .await
        .is_ok());
    // A known address is still held to its own per-address limit.
    for _ in 0..3 {
        let _ = a.authenticate(&basic("alice", "typo"), "10.0.0.1").await;
    }
    assert!(matches!(
        a.authenticate(&basic("alice", "alice-pw"), "10.0.0.1")
            .await,
        Err(AuthFailure::RateLimited(_))
    ));
}

#[tokio::test]
async fn access_tokens_end_when_the_password_changes_or_the_user_goes() {
    let f = Fixture::new();
    let a = Authenticator::new(f.with_issuer()).unwrap();
    let alice = login(&a, "alice", "alice-pw").await;
    let m = a
        .mint(&alice, None, &pull_push("team-a/app"), false)
        .unwrap();
    assert_eq!(m.refresh, None, "no refresh token unless asked for");
    let bearer = Credentials::Bearer(m.access.token.clone());
    let c = a.authenticate(&bearer, "x").await.unwrap();
    assert_eq!(
        a.decide(&c, &repo("team-a/app"), Actions::only(Action::Push)),
        Decision::Allow
    );
    write_htpasswd(&f, |h| h.set_password("alice", "new-pw", 4).unwrap());
    assert_eq!(
        a.authenticate(&bearer, "x").await,
        Err(AuthFailure::InvalidToken(TokenError::Revoked(
            "the password or secret changed since the login"
        )))
    );
    let bob = login(&a, "bob", "bob-pw").await;
    let t = a.mint(&bob, None, &[], false).unwrap().access.token;
    write_htpasswd(&f, |h| {
        h.remove("bob");
    });
    assert_eq!(
        a.authenticate(&Credentials::Bearer(t), "x").await,
        Err(AuthFailure::InvalidToken(TokenError::Revoked(
            "the account no longer exists"
        )))
    );
}

#[tokio::test]
async fn refresh_tokens_are_bound_to_the_login_and_capped() {
    let f = Fixture::new();
    let a = Authenticator::new(f.with_issuer()).unwrap();
    let alice = login(&a, "alice", "alice-pw").await;
    let m = a.mint(&alice, None, &[], true).unwrap();
    let refresh = m.refresh.expect("offline login gets a refresh token");
    let (caller, session) = a.refresh(&refresh).unwrap();
    assert_eq!(caller.principal.to_string(), "alice");
    // the refreshed access token follows today's policy and ends with the session
    let again = a
        .mint(&caller, Some(&session), &pull_push("team-a/app"), true)
        .unwrap();
    assert_eq!(again.refresh, None, "refreshing starts no new session");
    assert_eq!(again.granted, pull_push("team-a/app"));
    assert!(again.access.expires_in <= 300);
    // an access token is not a refresh token, and a refresh token is not an access token
    assert!(a.refresh(&m.access.token).is_err());
    assert!(a
        .authenticate(&Credentials::Bearer(refresh.clone()), "x")
        .await
        .is_err());
    write_htpasswd(&f, |h| h.set_password("alice", "new-pw", 4).unwrap());
    assert!(matches!(
        a.refresh(&refresh),
        Err(AuthFailure::InvalidToken(TokenError::Revoked(_)))
    ));
    let alice = login(&a, "alice", "new-pw").await;
    let refresh = a.mint(&alice, None, &[], true).unwrap().refresh.unwrap();
    assert!(a.refresh(&refresh).is_ok());
    write_htpasswd(&f, |h| {
        h.remove("alice");
    });
    assert!(matches!(
        a.refresh(&refresh),
        Err(AuthFailure::InvalidToken(TokenError::Revoked(
            "the account no longer exists"
        )))
    ));
}

#[tokio::test]
async fn a_session_ends_at_its_cap_whatever_is_refreshed() {
    let f = Fixture::new();
    let mut o = f.with_issuer();
    if let Some(i) = o.issuer.as_mut() {
        i.session_lifetime = Duration::from_secs(1);
    }
    let a = Authenticator::new(o).unwrap();
    let alice = login(&a, "alice", "alice-pw").await;
    let refresh = a.mint(&alice, None, &[], true).unwrap().refresh.unwrap();
    let (caller, session) = a.refresh(&refresh).unwrap();
    let t = a.mint(&caller, Some(&session), &[], false).unwrap();
    assert!(
        t.access.expires_in <= 1,
        "capped by the session: {}",
        t.access.expires_in
    );
    // past the cap (and the verifier's leeway) the refresh token is refused
    let expired = crate::token::LEEWAY + Duration::from_secs(2);
    tokio::time::sleep(expired).await;
    assert!(matches!(
        a.refresh(&refresh),
        Err(AuthFailure::InvalidToken(TokenError::Expired))
    ));
}

#[tokio::test]
async fn robot_sessions_end_when_the_robot_is_rotated() {
    let f = Fixture::new();
    let a = Authenticator::new(f.with_issuer()).unwrap();
    let ci = a
        .authenticate(&basic("robot$ci", &f.ci_secret), "x")
        .await
        .unwrap();
    let m = a.mint(&ci, None, &pull_push("team-a/app"), true).unwrap();
    let refresh = m.refresh.unwrap();
    assert!(a.refresh(&refresh).is_ok());
    let mut robots =
        Robots::parse(&std::fs::read_to_string(f.path("robots.yml")).unwrap()).unwrap();
    robots
        .rotate("ci", None, std::time::SystemTime::now())
        .unwrap();
    crate::reload::write_atomic(&f.path("robots.yml"), robots.render().as_bytes()).unwrap();
    assert!(a.refresh(&refresh).is_err());
    assert!(a
        .authenticate(&Credentials::Bearer(m.access.token), "x")
        .await
        .is_err());
}
