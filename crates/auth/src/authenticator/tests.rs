use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::htpasswd::Htpasswd;
use crate::options::{HtpasswdOptions, IssuerOptions};
use crate::robots::NewRobot;
use crate::scope::Action;
use crate::RepoPattern;

const POLICY: &str = r#"
admins: [root]
groups: {team-a: [alice]}
anonymous: {pull: ["public/**"]}
rules:
  - groups: [team-a]
    repositories: ["team-a/**"]
    actions: [pull, push]
"#;

pub(super) struct Fixture {
    dir: tempfile::TempDir,
    pub(super) ci_secret: String,
    old_secret: String,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Htpasswd::default();
        for u in ["alice", "bob", "root"] {
            h.set_password(u, &format!("{u}-pw"), 4).unwrap();
        }
        std::fs::write(dir.path().join("htpasswd"), h.render()).unwrap();
        let mut r = Robots::default();
        let now = SystemTime::now();
        let robot = |name: &str, expires| NewRobot {
            name: name.into(),
            repositories: vec![RepoPattern::parse("team-a/*").unwrap()],
            actions: vec![Action::Pull, Action::Push],
            expires,
            description: None,
        };
        let ci_secret = r.create(robot("ci", None), now).unwrap();
        let old_secret = r
            .create(robot("old", Some(now - Duration::from_secs(1))), now)
            .unwrap();
        std::fs::write(dir.path().join("robots.yml"), r.render()).unwrap();
        Fixture {
            dir,
            ci_secret,
            old_secret,
        }
    }

    pub(super) fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    pub(super) fn opts(&self) -> AuthOptions {
        AuthOptions {
            htpasswd: Some(HtpasswdOptions {
                realm: "test realm".into(),
                path: self.path("htpasswd"),
            }),
            robots: Some(self.path("robots.yml")),
            policy: Some(serde_yaml::from_str(POLICY).unwrap()),
            reload_poll: Duration::ZERO,
            ..AuthOptions::default()
        }
    }

    pub(super) fn with_issuer(&self) -> AuthOptions {
        AuthOptions {
            issuer: Some(IssuerOptions {
                key: self.path("token.key"),
                issuer: "berth".into(),
                service: "svc".into(),
                lifetime: Duration::from_secs(300),
                session_lifetime: crate::token::DEFAULT_SESSION_LIFETIME,
                realm: None,
            }),
            ..self.opts()
        }
    }
}

pub(super) fn basic(u: &str, p: &str) -> Credentials {
    Credentials::Basic {
        user: u.into(),
        password: p.into(),
    }
}

pub(super) fn repo(n: &str) -> RepoName {
    RepoName::parse(n).unwrap()
}

fn acts(list: &[Action]) -> Actions {
    list.iter().copied().collect()
}

const PULL: &[Action] = &[Action::Pull];
const PUSH: &[Action] = &[Action::Push];
const CHALLENGE: Decision = Decision::Challenge {
    insufficient_scope: false,
};
const INSUFFICIENT: Decision = Decision::Challenge {
    insufficient_scope: true,
};

#[tokio::test]
async fn users_log_in_with_bcrypt_and_get_policy_grants() {
    let f = Fixture::new();
    let a = Authenticator::new(f.opts()).unwrap();
    assert_eq!(
        a.challenge(),
        &Challenge::Basic {
            realm: "test realm".into()
        }
    );
    let alice = a
        .authenticate(&basic("alice", "alice-pw"), "1.1.1.1")
        .await
        .unwrap();
    assert!(alice.fresh_login);
    assert_eq!(alice.principal.groups, ["team-a"]);
    let again = a
        .authenticate(&basic("alice", "alice-pw"), "1.1.1.1")
        .await
        .unwrap();
    assert!(!again.fresh_login, "second use comes from the cache");
    assert_eq!(
        a.decide(&alice, &repo("team-a/app"), acts(PUSH)),
        Decision::Allow
    );
    assert_eq!(
        a.decide(&alice, &repo("team-b/app"), acts(PULL)),
        Decision::Deny
    );
    let root = a
        .authenticate(&basic("root", "root-pw"), "x")
        .await
        .unwrap();
    assert_eq!(
        a.decide(&root, &repo("any/where"), Actions::ALL),
        Decision::Allow
    );
    for (creds, why) in [
        (basic("alice", "nope"), "wrong password"),
        (basic("mallory", "alice-pw"), "unknown user"),
    ] {
        assert_eq!(
            a.authenticate(&creds, "2.2.2.2").await,
            Err(AuthFailure::BadCredentials(why))
        );
    }
}

#[tokio::test]
async fn anonymous_callers_get_anonymous_pull_and_challenges() {
    let f = Fixture::new();
    let a = Authenticator::new(f.opts()).unwrap();
    let anon = a.authenticate(&Credentials::None, "x").await.unwrap();
    assert_eq!(
        a.decide(&anon, &repo("public/x"), acts(PULL)),
        Decision::Allow
    );
    assert_eq!(a.decide(&anon, &repo("public/x"), acts(PUSH)), CHALLENGE);
    assert_eq!(a.decide(&anon, &repo("team-a/x"), acts(PULL)), CHALLENGE);
    assert_eq!(a.decide_base(&anon), CHALLENGE);
    assert_eq!(a.decide_catalog(&anon), CHALLENGE);
    let bob = a.authenticate(&basic("bob", "bob-pw"), "x").await.unwrap();
    assert_eq!(a.decide_base(&bob), Decision::Allow);
    assert_eq!(a.decide_catalog(&bob), Decision::Allow);
    assert!(a.lists(&bob, &repo("public/x")));
    assert!(!a.lists(&bob, &repo("team-a/x")));
}

#[tokio::test]
async fn robots_keep_to_their_patterns_and_expire() {
    let f = Fixture::new();
    let a = Authenticator::new(f.opts()).unwrap();
    let ci = a
        .authenticate(&basic("robot$ci", &f.ci_secret), "x")
        .await
        .unwrap();
    assert!(ci.fresh_login);
    assert_eq!(
        a.decide(&ci, &repo("team-a/app"), acts(PUSH)),
        Decision::Allow
    );
    assert_eq!(
        a.decide(&ci, &repo("team-a/app/deep"), acts(PULL)),
        Decision::Deny
    );
    assert_eq!(
        a.decide(&ci, &repo("team-a/app"), acts(&[Action::Delete])),
        Decision::Deny
    );
    assert!(
        !a.authenticate(&basic("robot$ci", &f.ci_secret), "x")
            .await
            .unwrap()
            .fresh_login
    );
    assert_eq!(
        a.authenticate(&basic("robot$old", &f.old_secret), "x")
            .await,
        Err(AuthFailure::BadCredentials("robot account expired"))
    );
    assert_eq!(
        a.authenticate(&basic("robot$ci", "guess"), "x").await,
        Err(AuthFailure::BadCredentials("unknown robot or wrong secret"))
    );
    // a user cannot log in as a robot with a user password, nor the other way round
    assert!(a
        .authenticate(&basic("robot$alice", "alice-pw"), "x")
        .await
        .is_err());
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_client_and_user() {
    let f = Fixture::new();
    let mut o = f.opts();
    o.limits.per_client = 3;
    o.limits.per_user = 5;
    // Every check runs bcrypt (a remembered success would skip the limits: see password.rs).
    o.password_cache_ttl = Duration::ZERO;
    let a = Authenticator::new(o).unwrap();
    for _ in 0..3 {
        assert!(matches!(
            a.authenticate(&basic("alice", "bad"), "9.9.9.9").await,
            Err(AuthFailure::BadCredentials(_))
        ));
    }
    // even the right password is refused from that client now
    assert!(matches!(
        a.authenticate(&basic("alice", "alice-pw"), "9.9.9.9").await,
        Err(AuthFailure::RateLimited(_))
    ));
    // another client may still log in, until the per-user limit is reached too
    assert!(a
        .authenticate(&basic("alice", "alice-pw"), "8.8.8.8")
        .await
        .is_ok());
    for _ in 0..2 {
        let _ = a.authenticate(&basic("alice", "bad"), "7.7.7.7").await;
    }
    assert!(matches!(
        a.authenticate(&basic("alice", "alice-pw"), "6.6.6.6").await,
        Err(AuthFailure::RateLimited(_))
    ));
    assert!(a
        .authenticate(&basic("bob", "bob-pw"), "6.6.6.6")
        .await
        .is_ok());
}

#[tokio::test]
async fn own_tokens_grant_the_intersection_and_follow_policy() {
    let f = Fixture::new();
    let a = Authenticator::new(f.with_issuer()).unwrap();
    assert!(
        matches!(a.challenge(), Challenge::Bearer { realm: Realm::Auto(p), .. } if p == "/auth/token")
    );
    let alice = a
        .authenticate(&basic("alice", "alice-pw"), "x")
        .await
        .unwrap();
    let want = vec![
        Scope::Repository(repo("team-a/app"), Actions::ALL),
        Scope::Repository(repo("team-b/app"), acts(PULL)),
        Scope::Catalog,
    ];
    let granted = a.grant(&alice, &want);
    assert_eq!(
        granted,
        vec![
            Scope::Repository(repo("team-a/app"), acts(&[Action::Pull, Action::Push])),
            Scope::Catalog
        ]
    );
    let t = a.issuer().unwrap().issue("alice", &granted[..1]).unwrap();
    let caller = a
        .authenticate(&Credentials::Bearer(t.token), "x")
        .await
        .unwrap();
    assert_eq!(caller.principal.identity, Identity::User("alice".into()));
    assert_eq!(
        a.decide(&caller, &repo("team-a/app"), acts(PUSH)),
        Decision::Allow
    );
    // the policy allows alice team-a/other, but this token does not: ask for a new token
    assert_eq!(
        a.decide(&caller, &repo("team-a/other"), acts(PULL)),
        INSUFFICIENT
    );
    // the policy does not allow it at all: 403
    assert_eq!(
        a.decide(&caller, &repo("team-b/app"), acts(PULL)),
        Decision::Deny
    );
    assert_eq!(a.decide_catalog(&caller), INSUFFICIENT);

    // a token granting more than today's policy does not exceed it
    let t = a
        .issuer()
        .unwrap()
        .issue(
            "alice",
            &[Scope::Repository(repo("team-b/app"), Actions::ALL)],
        )
        .unwrap();
    let c = a
        .authenticate(&Credentials::Bearer(t.token), "x")
        .await
        .unwrap();
    assert_eq!(
        a.decide(&c, &repo("team-b/app"), acts(PULL)),
        Decision::Deny
    );

    let anon_t = a.issuer().unwrap().issue("", &[]).unwrap();
    let anon = a
        .authenticate(&Credentials::Bearer(anon_t.token), "x")
        .await
        .unwrap();
    assert!(anon.principal.is_anonymous());
    assert_eq!(a.decide_base(&anon), Decision::Allow);
    assert_eq!(
        a.decide(&anon, &repo("team-a/app"), acts(PULL)),
        INSUFFICIENT
    );
    assert_eq!(a.grant(&anon, &want), vec![]);
    assert!(matches!(
        a.authenticate(&Credentials::Bearer("x.y.z".into()), "x")
            .await,
        Err(AuthFailure::InvalidToken(_))
    ));
}

#[tokio::test]
async fn robot_tokens_follow_the_robot_file() {
    let f = Fixture::new();
    let a = Authenticator::new(f.with_issuer()).unwrap();
    let ci = a
        .authenticate(&basic("robot$ci", &f.ci_secret), "x")
        .await
        .unwrap();
    let want = [Scope::Repository(repo("team-a/app"), Actions::ALL)];
    let granted = a.grant(&ci, &want);
    assert_eq!(
        granted,
        vec![Scope::Repository(
            repo("team-a/app"),
            acts(&[Action::Pull, Action::Push])
        )]
    );
    let t = a.issuer().unwrap().issue("robot$ci", &granted).unwrap();
    let c = a
        .authenticate(&Credentials::Bearer(t.token.clone()), "x")
        .await
        .unwrap();
    assert_eq!(
        a.decide(&c, &repo("team-a/app"), acts(PUSH)),
        Decision::Allow
    );
    // deleting the robot revokes its tokens at once
    let mut robots =
        Robots::parse(&std::fs::read_to_string(f.path("robots.yml")).unwrap()).unwrap();
    robots.delete("ci").unwrap();
    crate::reload::write_atomic(&f.path("robots.yml"), robots.render().as_bytes()).unwrap();
    assert_eq!(
        a.authenticate(&Credentials::Bearer(t.token), "x").await,
        Err(AuthFailure::InvalidToken(TokenError::Revoked(
            "the account no longer exists"
        )))
    );
    assert!(a
        .authenticate(&basic("robot$ci", &f.ci_secret), "x")
        .await
        .is_err());
}

#[tokio::test]
async fn htpasswd_changes_apply_without_restart() {
    let f = Fixture::new();
    let a = Authenticator::new(f.opts()).unwrap();
    assert!(a
        .authenticate(&basic("carol", "carol-pw"), "x")
        .await
        .is_err());
    let mut h = Htpasswd::parse(&std::fs::read_to_string(f.path("htpasswd")).unwrap()).unwrap();
    h.set_password("carol", "carol-pw", 4).unwrap();
    h.remove("bob");
    crate::reload::write_atomic(&f.path("htpasswd"), h.render().as_bytes()).unwrap();
    assert!(a
        .authenticate(&basic("carol", "carol-pw"), "x")
        .await
        .is_ok());
    assert!(a.authenticate(&basic("bob", "bob-pw"), "x").await.is_err());
}

#[test]
fn bad_configurations_fail_at_start_with_clear_errors() {
    let f = Fixture::new();
    std::fs::write(
        f.path("md5"),
        "alice:$apr1$t/jfFJ08$r6hAbIBaMJoSP/5lb4qT91\n",
    )
    .unwrap();
    let mut o = f.opts();
    o.htpasswd.as_mut().unwrap().path = f.path("md5");
    let e = Authenticator::new(o).err().unwrap().to_string();
    assert!(
        e.contains("md5") && e.contains("line 1") && e.contains("alice"),
        "{e}"
    );

    let mut o = f.with_issuer();
    o.token = Some(crate::options::ExternalTokenOptions {
        realm: "r".into(),
        service: "s".into(),
        issuer: "i".into(),
        rootcertbundle: f.path("none.pem"),
        autoredirect: false,
    });
    assert!(matches!(Authenticator::new(o), Err(AuthError::Config(_))));

    let mut o = f.opts();
    o.htpasswd.as_mut().unwrap().path = Path::new("/nonexistent/htpasswd").into();
    assert!(matches!(Authenticator::new(o), Err(AuthError::File(_))));
}

#[tokio::test]
async fn without_a_policy_users_may_do_everything_like_registry2() {
    let f = Fixture::new();
    let o = AuthOptions {
        policy: None,
        ..f.opts()
    };
    let a = Authenticator::new(o).unwrap();
    let bob = a.authenticate(&basic("bob", "bob-pw"), "x").await.unwrap();
    assert_eq!(a.decide(&bob, &repo("x/y"), Actions::ALL), Decision::Allow);
    let anon = Caller::anonymous();
    assert_eq!(a.decide(&anon, &repo("x/y"), acts(PULL)), CHALLENGE);
}
