//! The token model and the failed-login limits against the real `berth` binary: an access token
//! cannot mint tokens, refresh tokens (Docker's `offline_token`, the OAuth2 refresh grant) are
//! bound to their user or robot and end when the password changes or the account goes, and
//! concurrent password guesses get at most the limit's worth of checks without locking the user
//! out of the addresses they log in from. Users and robots are made with the real CLI.
//!
//! These tests always run Berth (the token issuer and the limits are Berth features).

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use berth_e2e::http::{self, basic_auth, Response};
use berth_e2e::server::berth_bin;
use berth_e2e::{Cmd, Server, ServerOptions, TestDir};

const POLICY: &str = r#"policy:
  rules:
    - users: [alice]
      repositories: ["team-a/**", "alice/**"]
      actions: [pull, push, delete]
    - users: [bob]
      repositories: ["team-a/**"]
      actions: [pull]
"#;

fn pw(user: &str) -> String {
    format!("{user}-Pa55")
}

fn berth(args: &[&str]) -> String {
    Cmd::new(berth_bin().to_str().expect("utf-8 path"))
        .args(args)
        .stdout()
}

fn add_user(htpasswd: &Path, user: &str, password: &str) {
    let file = htpasswd.to_str().expect("utf-8 path");
    berth(&["user", "add", "--file", file, user, "--password", password]);
}

/// Berth with its own token endpoint, users alice and bob, a robots file and `extra` config
/// (lines inside `auth:`).
fn start(t: &TestDir, extra: &str) -> Server {
    start_with(t, extra, "")
}

/// [`start`] with `yaml` merged into the config.
fn start_with(t: &TestDir, extra: &str, yaml: &str) -> Server {
    let htpasswd = t.join("htpasswd");
    for user in ["alice", "bob"] {
        add_user(&htpasswd, user, &pw(user));
    }
    let config = format!(
        "auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {}\n  robots:\n    path: {}\n  issuer:\n    service: berth-e2e\n{extra}{POLICY}",
        htpasswd.display(),
        t.join("robots.yml").display()
    );
    let opts = ServerOptions::default().config(&config).extra_yaml(yaml);
    Server::start_with(opts.admin("alice", &pw("alice")))
}

fn get_token(s: &Server, auth: &str, query: &str) -> Response {
    http::get(
        &format!("{}/auth/token?service=berth-e2e&{query}", s.url()),
        &[("Authorization", auth)],
    )
}

fn post_form(s: &Server, form: &str) -> Response {
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    http::request(
        "POST",
        &format!("{}/auth/token", s.url()),
        &headers,
        form.as_bytes(),
    )
    .expect("POST /auth/token")
}

fn field(r: &Response, name: &str) -> String {
    assert_eq!(r.status, 200, "{}", r.describe());
    r.json()[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {}", r.describe()))
        .to_string()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Starts an upload in `repo` with `auth`: 202 when the token allows a push.
fn start_upload(s: &Server, repo: &str, auth: &str) -> Response {
    let url = format!("{}/v2/{repo}/blobs/uploads/", s.url());
    http::request("POST", &url, &[("Authorization", auth)], &[]).expect("POST upload")
}

fn assert_oci_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.describe());
    assert_eq!(r.json()["errors"][0]["code"], code, "{}", r.describe());
}

/// Waits until the server has re-read a changed htpasswd or robots file.
fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_access_token_cannot_mint_a_token() {
    let t = TestDir::new("auth-no-exchange");
    let s = start(&t, "");
    let alice = basic_auth("alice", &pw("alice"));
    let narrow = field(
        &get_token(&s, &alice, "scope=repository:team-a/app:pull"),
        "token",
    );
    assert_oci_error(
        &start_upload(&s, "alice/own", &bearer(&narrow)),
        401,
        "UNAUTHORIZED",
    );
    for query in [
        "scope=repository:alice/own:pull,push,delete&scope=registry:catalog:*",
        "scope=repository:team-a/app:pull",
        "offline_token=true&client_id=e2e",
    ] {
        let r = get_token(&s, &bearer(&narrow), query);
        assert_oci_error(&r, 401, "UNAUTHORIZED");
        let msg = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains("cannot be exchanged"), "{msg}");
        assert!(r.json().get("token").is_none());
    }
    let headers = [
        ("Authorization", bearer(&narrow)),
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("{}/auth/token", s.url());
    let form = b"service=berth-e2e&scope=repository:alice/own:push";
    let r = http::request("POST", &url, &headers, form).expect("POST");
    assert_oci_error(&r, 401, "UNAUTHORIZED");
    // the narrow token still does what it did, and nothing more
    let pull = http::get(
        &format!("{}/v2/team-a/app/tags/list", s.url()),
        &[("Authorization", &bearer(&narrow))],
    );
    assert_ne!(pull.status, 401, "{}", pull.describe());
    assert_oci_error(
        &start_upload(&s, "alice/own", &bearer(&narrow)),
        401,
        "UNAUTHORIZED",
    );
    let log = s.log();
    let audit = log
        .lines()
        .find(|l| l.contains("event=login") && l.contains("access token presented"))
        .unwrap_or_else(|| panic!("no audit line for the refused exchange:\n{log}"));
    assert!(audit.contains("who=alice"), "{audit}");
}

#[test]
fn refresh_tokens_work_like_docker_login_and_end_with_the_password() {
    let t = TestDir::new("auth-refresh");
    let s = start(&t, "");
    let alice = basic_auth("alice", &pw("alice"));
    // Docker's login: GET with basic credentials and offline_token=true.
    let login = get_token(&s, &alice, "offline_token=true&client_id=docker&scope=");
    let refresh = field(&login, "refresh_token");
    // A plain token request gets no refresh token.
    assert!(get_token(&s, &alice, "scope=")
        .json()
        .get("refresh_token")
        .is_none());
    // The refresh grant mints access tokens as the user, for today's policy.
    let form = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service=berth-e2e&client_id=docker&scope=repository:alice/app:pull,push"
    );
    let r = post_form(&s, &form);
    let access = field(&r, "access_token");
    assert!(
        r.json().get("refresh_token").is_none(),
        "refreshing starts no new session"
    );
    assert_eq!(start_upload(&s, "alice/app", &bearer(&access)).status, 202);
    // A refresh token is not an access token.
    assert_oci_error(
        &start_upload(&s, "alice/app", &bearer(&refresh)),
        401,
        "UNAUTHORIZED",
    );
    // The OAuth2 password grant with offline access (containerd, newer docker) gets one too.
    let r = post_form(
        &s,
        &format!("grant_type=password&username=alice&password={}&access_type=offline&service=berth-e2e&scope=", pw("alice")),
    );
    let refresh2 = field(&r, "refresh_token");

    // A new password ends every session and token of alice's at once.
    add_user(&t.join("htpasswd"), "alice", "brand-new-Pa55");
    wait_until("the new password", || post_form(&s, &form).status == 401);
    let r = post_form(&s, &form);
    assert_oci_error(&r, 401, "UNAUTHORIZED");
    let msg = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("log in again"), "{msg}");
    assert_oci_error(
        &post_form(
            &s,
            &format!("grant_type=refresh_token&refresh_token={refresh2}&service=berth-e2e"),
        ),
        401,
        "UNAUTHORIZED",
    );
    assert_oci_error(
        &start_upload(&s, "alice/app", &bearer(&access)),
        401,
        "UNAUTHORIZED",
    );
    // Logging in with the new password starts a new session.
    let alice = basic_auth("alice", "brand-new-Pa55");
    let fresh = field(
        &get_token(&s, &alice, "offline_token=true&client_id=docker"),
        "refresh_token",
    );
    let form = format!("grant_type=refresh_token&refresh_token={fresh}&service=berth-e2e&scope=repository:alice/app:push");
    let access = field(&post_form(&s, &form), "access_token");

    // Removing the user ends them too.
    let file = t.join("htpasswd");
    berth(&["user", "remove", "--file", file.to_str().unwrap(), "alice"]);
    wait_until("the removal", || post_form(&s, &form).status == 401);
    assert_oci_error(
        &start_upload(&s, "alice/app", &bearer(&access)),
        401,
        "UNAUTHORIZED",
    );
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains("method=refresh")
            && l.contains("result=ok")
            && l.contains("who=alice")),
        "{log}"
    );
    // A refused refresh names the user too (its signature still verifies), at WARN.
    let refused = log
        .lines()
        .find(|l| l.contains("method=refresh") && l.contains("result=failed"))
        .unwrap_or_else(|| panic!("no refused refresh in the log:\n{log}"));
    assert!(
        refused.contains("who=alice") && refused.contains("WARN"),
        "{refused}"
    );
}

#[test]
fn a_robot_session_ends_when_the_robot_is_rotated() {
    let t = TestDir::new("auth-refresh-robot");
    // Polling for the new robot fails logins until the file is re-read: raise the limit.
    let s = start(&t, "  limits:\n    clientfailures: 1000\n");
    let robots = t.join("robots.yml");
    let out = berth(&[
        "robot",
        "create",
        "--file",
        robots.to_str().unwrap(),
        "--name",
        "ci",
        "--repos",
        "team-a/*",
        "--actions",
        "pull,push",
    ]);
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("no secret in {out}"))
        .to_string();
    let auth = basic_auth("robot$ci", &secret);
    let mut login = get_token(&s, &auth, "offline_token=true&client_id=ci");
    wait_until("the new robot", || {
        login = get_token(&s, &auth, "offline_token=true&client_id=ci");
        login.status == 200
    });
    let refresh = field(&login, "refresh_token");
    let form = format!("grant_type=refresh_token&refresh_token={refresh}&service=berth-e2e&scope=repository:team-a/app:push");
    let access = field(&post_form(&s, &form), "access_token");
    assert_eq!(start_upload(&s, "team-a/app", &bearer(&access)).status, 202);
    berth(&[
        "robot",
        "rotate",
        "--file",
        robots.to_str().unwrap(),
        "--name",
        "ci",
    ]);
    wait_until("the rotation", || post_form(&s, &form).status == 401);
    assert_oci_error(
        &start_upload(&s, "team-a/app", &bearer(&access)),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn sessions_are_capped_by_the_session_lifetime() {
    let t = TestDir::new("auth-session-cap");
    let htpasswd = t.join("htpasswd");
    add_user(&htpasswd, "alice", &pw("alice"));
    let config = format!(
        "auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {}\n  issuer:\n    service: berth-e2e\n    lifetime: 5s\n    sessionlifetime: 5s\n{POLICY}",
        htpasswd.display()
    );
    let s = Server::start_with(
        ServerOptions::default()
            .config(&config)
            .admin("alice", &pw("alice")),
    );
    let alice = basic_auth("alice", &pw("alice"));
    let refresh = field(
        &get_token(&s, &alice, "offline_token=true&client_id=docker"),
        "refresh_token",
    );
    let form = format!("grant_type=refresh_token&refresh_token={refresh}&service=berth-e2e&scope=repository:alice/app:push");
    let r = post_form(&s, &form);
    let left = r.json()["expires_in"].as_u64().unwrap_or(u64::MAX);
    assert!(
        left <= 5,
        "an access token outlives its session: {}",
        r.describe()
    );
    // Past the cap plus the verifier's 10 s clock-skew leeway, the session is over.
    thread::sleep(Duration::from_secs(16));
    assert_oci_error(&post_form(&s, &form), 401, "UNAUTHORIZED");
}

/// `n` requests to `/v2/` with basic `user:password_of(i)` from the client address `xff(i)`,
/// all released at once.
fn burst(
    s: &Server,
    n: usize,
    creds: impl Fn(usize) -> (String, String) + Sync,
    xff: impl Fn(usize) -> String + Sync,
) -> Vec<u16> {
    let barrier = Arc::new(Barrier::new(n));
    let url = format!("{}/v2/", s.url());
    thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, url, creds, xff) = (barrier.clone(), &url, &creds, &xff);
                scope.spawn(move || {
                    let (user, password) = creds(i);
                    let auth = basic_auth(&user, &password);
                    let from = xff(i);
                    barrier.wait();
                    http::get(url, &[("Authorization", &auth), ("X-Forwarded-For", &from)]).status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    })
}

#[test]
fn a_burst_of_concurrent_guesses_gets_at_most_the_limit_of_checks() {
    let t = TestDir::new("auth-burst");
    let s = start(
        &t,
        "  limits:\n    clientfailures: 10\n    userfailures: 1000\n",
    );
    let statuses = burst(
        &s,
        150,
        |i| {
            (
                "alice".into(),
                if i == 149 {
                    pw("alice")
                } else {
                    format!("guess-{i}")
                },
            )
        },
        |_| "127.0.0.1".into(),
    );
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    let (unauthorized, limited, ok) = (count(401), count(429), count(200));
    assert_eq!(unauthorized + limited + ok, 150, "{statuses:?}");
    // At most the limit's worth of wrong passwords reach bcrypt; the right one (a success frees
    // its slot) may be checked on top of them.
    assert!(
        unauthorized <= 10,
        "{unauthorized} × 401: more failed checks than the limit"
    );
    assert!(ok <= 1, "{ok} × 200");
    assert!(limited >= 139, "{limited} × 429");
    // The same user and password on many connections at once is one check, not a burst.
    let t2 = TestDir::new("auth-burst-same");
    let s2 = start(&t2, "  limits:\n    clientfailures: 3\n");
    let statuses = burst(
        &s2,
        40,
        |_| ("bob".into(), pw("bob")),
        |_| "127.0.0.1".into(),
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[test]
fn guesses_from_many_addresses_do_not_lock_a_user_out() {
    let t = TestDir::new("auth-lockout");
    let s = start_with(
        &t,
        "  limits:\n    clientfailures: 3\n    userfailures: 5\n    window: 1m\n",
        "http:\n  trustedproxies: [127.0.0.1/32]\n",
    );
    // X-Forwarded-For is believed from 127.0.0.1 here, so each request picks its address.
    let url = format!("{}/v2/", s.url());
    let from = |addr: &str, password: &str| {
        let auth = basic_auth("bob", password);
        http::get(&url, &[("Authorization", &auth), ("X-Forwarded-For", addr)]).status
    };
    assert_eq!(from("10.1.1.1", &pw("bob")), 200, "bob works from 10.1.1.1");
    let statuses = burst(
        &s,
        5,
        |i| ("bob".into(), format!("guess-{i}")),
        |i| format!("203.0.113.{i}"),
    );
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    // bob is at his global limit: any new address is refused before its password is checked...
    assert_eq!(from("198.51.100.7", "another-guess"), 429);
    assert_eq!(from("198.51.100.8", "guess-again"), 429);
    // ...but where bob logged in before, he may still try and log in.
    assert_eq!(from("10.1.1.1", "typo"), 401);
    assert_eq!(from("10.1.1.1", &pw("bob")), 200);
    // Other users are untouched.
    let alice = basic_auth("alice", &pw("alice"));
    let r = http::get(
        &url,
        &[
            ("Authorization", &alice),
            ("X-Forwarded-For", "198.51.100.7"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.describe());
}
