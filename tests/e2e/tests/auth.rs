//! Authentication and access control with real clients against the real `berth` binary:
//! skopeo `--creds`, podman login, ctr `--user`, the ORAS and Helm Python SDKs; basic auth and
//! the bearer-token flow through Berth's own `/auth/token`; robot accounts made with
//! `berth robot create`; refused pushes that leave tags and catalog unchanged; 429 after
//! repeated failed logins. Users are created with `berth user add` (no apache2-utils).
//!
//! These tests always run Berth (policies, robots and the token issuer are Berth features).

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fs;
use std::path::{Path, PathBuf};

use berth_e2e::server::berth_bin;
use berth_e2e::tls::{KeyKind, Pki};
use berth_e2e::{
    images, run_python, sha256_digest, Cmd, Containerd, Output, Server, ServerOptions, TestDir,
};

const POLICY: &str = r#"policy:
  admins: [root]
  anonymous:
    pull: ["public/**"]
  rules:
    - users: [alice]
      repositories: ["team-a/**"]
      actions: [pull, push, delete]
    - users: [bob]
      repositories: ["team-a/**"]
      actions: [pull]
"#;

/// Users made with the real CLI, and the config section that points at them.
fn auth_config(t: &TestDir, issuer: bool, extra: &str) -> String {
    let htpasswd = t.join("htpasswd");
    for user in ["alice", "bob", "root"] {
        berth(
            &["user", "add", "--file"],
            &htpasswd,
            &[user, "--password", &pw(user)],
        );
    }
    let listed = berth(&["user", "list", "--file"], &htpasswd, &[]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["alice", "bob", "root"]);
    let issuer = if issuer {
        "  issuer:\n    service: berth-e2e\n"
    } else {
        ""
    };
    format!(
        "auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {}\n  robots:\n    path: {}\n{issuer}{extra}{POLICY}",
        htpasswd.display(),
        t.join("robots.yml").display()
    )
}

fn pw(user: &str) -> String {
    format!("{user}-Pa55")
}

fn creds(user: &str) -> String {
    format!("{user}:{}", pw(user))
}

/// Runs `berth ARGS FILE REST` and returns stdout.
fn berth(args: &[&str], file: &Path, rest: &[&str]) -> String {
    Cmd::new(berth_bin().to_str().expect("utf-8 path"))
        .args(args)
        .arg(file)
        .args(rest)
        .stdout()
}

/// Berth over HTTPS (a fresh test PKI) with users, robots and the policy; the cert dir trusts
/// the CA.
fn start_tls(t: &TestDir, issuer: bool) -> (Server, Pki, PathBuf) {
    let pki = Pki::new(&t.join("pki"));
    let leaf = pki.server("server", "B1", KeyKind::EcPkcs8);
    let extra = "  limits:\n    clientfailures: 1000\n";
    let opts = ServerOptions::tls(&leaf, &pki.ca())
        .config(&auth_config(t, issuer, extra))
        .admin("root", &pw("root"));
    let certs = pki.cert_dir("certs", None);
    (Server::start_with(opts), pki, certs)
}

/// Berth with users, robots and the policy. Every request comes from 127.0.0.1, so the
/// failed-login limit is raised unless `extra` sets its own.
fn start(t: &TestDir, issuer: bool, extra: &str) -> Server {
    let extra = if extra.is_empty() {
        "  limits:\n    clientfailures: 1000\n"
    } else {
        extra
    };
    let opts = ServerOptions::default()
        .config(&auth_config(t, issuer, extra))
        .admin("root", &pw("root"));
    Server::start_with(opts)
}

/// skopeo with this test's own (empty unless logged in) auth file.
fn skopeo(t: &TestDir) -> Cmd {
    t.skopeo().env("REGISTRY_AUTH_FILE", t.join("auth.json"))
}

fn push(t: &TestDir, s: &Server, name: &str, creds: Option<&str>) -> Cmd {
    let mut c = skopeo(t).args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if let Some(cr) = creds {
        c = c.args(["--dest-creds", cr]);
    }
    c.arg(images().reference("small"))
        .arg(format!("docker://{}/{name}", s.addr()))
}

fn inspect(t: &TestDir, s: &Server, name: &str, creds: Option<&str>) -> Cmd {
    let mut c = skopeo(t).args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(cr) = creds {
        c = c.args(["--creds", cr]);
    }
    c.arg(format!("docker://{}/{name}", s.addr()))
}

/// Pushes that must be refused, each leaving tags and catalog exactly as they were.
fn assert_refused_pushes_change_nothing(t: &TestDir, s: &Server) {
    let before = (s.catalog(), s.tags("team-a/app"), s.tags("public/app"));
    let wrong = format!("alice:{}", pw("nope"));
    push(t, s, "team-a/app:evil", None).run_fail();
    push(t, s, "team-a/app:evil", Some(&wrong)).run_fail();
    push(t, s, "team-a/app:evil", Some("mallory:whatever")).run_fail();
    let out = push(t, s, "team-a/app:evil", Some(&creds("bob"))).run_fail();
    assert!(out.stderr.contains("denied"), "{}", out.describe());
    push(t, s, "team-b/app:v1", Some(&creds("alice"))).run_fail();
    push(t, s, "public/app:evil", None).run_fail();
    assert_eq!(
        (s.catalog(), s.tags("team-a/app"), s.tags("public/app")),
        before
    );
}

#[test]
fn skopeo_podman_and_ctr_with_basic_auth() {
    let t = TestDir::new("auth-basic");
    let s = start(&t, false, "");
    let want = images().layout.digest("small");
    push(&t, &s, "team-a/app:v1", Some(&creds("alice"))).run();
    push(&t, &s, "public/app:v1", Some(&creds("root"))).run();
    let raw = inspect(&t, &s, "team-a/app:v1", Some(&creds("bob")))
        .run()
        .stdout;
    assert_eq!(sha256_digest(raw.as_bytes()), want);
    // anonymous pull where the policy allows it, and only there
    inspect(&t, &s, "public/app:v1", None).run();
    inspect(&t, &s, "team-a/app:v1", None).run_fail();
    assert_refused_pushes_change_nothing(&t, &s);

    // podman login, push, pull into a fresh store
    let auth_file = t.join("podman-auth.json");
    std::fs::write(&auth_file, "{}").unwrap(); // podman wants the file to exist
    let podman = |store: &str| t.podman(store).env("REGISTRY_AUTH_FILE", &auth_file);
    podman("src")
        .args(["pull", "-q"])
        .arg(images().reference("small"))
        .run();
    podman("src")
        .args([
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            &pw("alice"),
        ])
        .arg(s.addr())
        .run();
    let remote = format!("docker://{}/team-a/podman:v1", s.addr());
    let id = podman("src").args(["images", "-q", "--no-trunc"]).stdout();
    podman("src")
        .args(["push", "-q", "--tls-verify=false", "--format", "oci"])
        .arg(id.trim())
        .arg(&remote)
        .run();
    podman("dst")
        .args(["pull", "-q", "--tls-verify=false"])
        .arg(format!("{}/team-a/podman:v1", s.addr()))
        .run();
    assert_eq!(s.tags("team-a/podman").unwrap(), ["v1"]);
    podman("src").args(["logout"]).arg(s.addr()).run();
    podman("fresh")
        .args(["pull", "-q", "--tls-verify=false"])
        .arg(format!("{}/team-a/podman:v1", s.addr()))
        .run_fail();

    // containerd's ctr with --user
    let c = Containerd::start();
    let src = format!("{}/team-a/app:v1", s.addr());
    c.ctr("anon")
        .args(["images", "pull", "--plain-http", &src])
        .run_fail();
    c.ctr("e2e")
        .args([
            "images",
            "pull",
            "--plain-http",
            "--user",
            &creds("bob"),
            &src,
        ])
        .run();
    let dst = format!("{}/team-a/ctr:v1", s.addr());
    c.ctr("e2e").args(["images", "tag", &src, &dst]).run();
    c.ctr("e2e")
        .args([
            "images",
            "push",
            "--plain-http",
            "--user",
            &creds("bob"),
            &dst,
        ])
        .run_fail();
    c.ctr("e2e")
        .args([
            "images",
            "push",
            "--plain-http",
            "--user",
            &creds("alice"),
            &dst,
        ])
        .run();
    let pushed = inspect(&t, &s, "team-a/ctr:v1", Some(&creds("root")))
        .run()
        .stdout;
    assert_eq!(sha256_digest(pushed.as_bytes()), want);

    let log = s.log();
    assert!(
        log.contains("berth::audit") && log.contains("push-manifest alice team-a/"),
        "no audit line for alice's push:\n{log}"
    );
    assert!(
        log.contains("login alice via basic failed"),
        "no audit line for a failed login:\n{log}"
    );
}

#[test]
fn oras_and_helm_sdks_with_basic_auth() {
    let t = TestDir::new("auth-sdk");
    let s = start(&t, false, "");
    let work = t.join("py");
    std::fs::create_dir_all(&work).unwrap();
    let out = run_python(
        "auth_e2e.py",
        &[
            &s.addr(),
            work.to_str().unwrap(),
            "alice",
            &pw("alice"),
            "team-a",
        ],
        &work,
    );
    assert!(
        out.stdout.contains("auth e2e: all checks passed"),
        "{}",
        out.describe()
    );
    assert_eq!(s.tags("team-a/oras").unwrap(), ["v1"]);
    assert_eq!(s.tags("team-a/helm/authchart").unwrap(), ["0.1.0"]);
}

#[test]
fn bearer_token_flow_through_berths_own_token_endpoint() {
    let t = TestDir::new("auth-token");
    let s = start(&t, true, "");
    let want = images().layout.digest("small");
    push(&t, &s, "team-a/app:v1", Some(&creds("alice"))).run();
    push(&t, &s, "public/app:v1", Some(&creds("root"))).run();
    let raw = inspect(&t, &s, "team-a/app:v1", Some(&creds("bob")))
        .run()
        .stdout;
    assert_eq!(sha256_digest(raw.as_bytes()), want);
    inspect(&t, &s, "public/app:v1", None).run();
    assert_refused_pushes_change_nothing(&t, &s);

    let auth_file = t.join("podman-auth.json");
    std::fs::write(&auth_file, "{}").unwrap(); // podman wants the file to exist
    let podman = |store: &str| t.podman(store).env("REGISTRY_AUTH_FILE", &auth_file);
    podman("src")
        .args([
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            &pw("alice"),
        ])
        .arg(s.addr())
        .run();
    podman("src")
        .args(["pull", "-q", "--tls-verify=false"])
        .arg(format!("{}/team-a/app:v1", s.addr()))
        .run();
    podman("src")
        .args(["push", "-q", "--tls-verify=false"])
        .arg(format!("{}/team-a/app:v1", s.addr()))
        .arg(format!("docker://{}/team-a/podman:v1", s.addr()))
        .run();
    assert_eq!(s.tags("team-a/podman").unwrap(), ["v1"]);

    let c = Containerd::start();
    let dst = format!("{}/team-a/ctr:v1", s.addr());
    c.ctr("e2e")
        .args([
            "images",
            "pull",
            "--plain-http",
            "--user",
            &creds("alice"),
            &format!("{}/team-a/app:v1", s.addr()),
        ])
        .run();
    c.ctr("e2e")
        .args([
            "images",
            "tag",
            &format!("{}/team-a/app:v1", s.addr()),
            &dst,
        ])
        .run();
    c.ctr("e2e")
        .args([
            "images",
            "push",
            "--plain-http",
            "--user",
            &creds("alice"),
            &dst,
        ])
        .run();
    assert_eq!(s.tags("team-a/ctr").unwrap(), ["v1"]);

    let work = t.join("py");
    std::fs::create_dir_all(&work).unwrap();
    let out = run_python(
        "auth_e2e.py",
        &[
            &s.addr(),
            work.to_str().unwrap(),
            "alice",
            &pw("alice"),
            "team-a",
        ],
        &work,
    );
    assert!(
        out.stdout.contains("auth e2e: all checks passed"),
        "{}",
        out.describe()
    );

    // the clients really went through the token endpoint
    let log = s.log();
    let token_hits = log
        .lines()
        .filter(|l| l.contains("GET /auth/token") && l.contains(" 200 "))
        .count();
    assert!(
        token_hits >= 3,
        "expected token requests in the log:\n{log}"
    );
}

#[test]
fn robot_accounts_from_the_cli() {
    let t = TestDir::new("auth-robot");
    let s = start(&t, false, "");
    let robots = t.join("robots.yml");
    let created = berth(
        &["robot", "create", "--file"],
        &robots,
        &[
            "--name",
            "ci",
            "--repos",
            "team-a/*",
            "--actions",
            "pull,push",
            "--expires",
            "30d",
        ],
    );
    let secret = secret_of(&created);
    let robot = format!("robot$ci:{secret}");
    // the server notices the new file at its next poll (about a second)
    wait_login(&s, "robot$ci", &secret, 200);
    push(&t, &s, "team-a/built:v1", Some(&robot)).run();
    let before = (s.catalog(), s.tags("team-a/built"));
    push(&t, &s, "team-a/built/deep:v1", Some(&robot)).run_fail();
    push(&t, &s, "team-b/x:v1", Some(&robot)).run_fail();
    assert_eq!((s.catalog(), s.tags("team-a/built")), before);
    let listed = berth(&["robot", "list", "--file"], &robots, &[]);
    assert!(listed.contains("robot$ci\tteam-a/*\tpull,push"), "{listed}");
    assert!(!listed.contains(&secret));

    // rotation: the old secret stops working, the new one works (the server re-reads the file)
    let rotated = secret_of(&berth(
        &["robot", "rotate", "--file"],
        &robots,
        &["--name", "ci"],
    ));
    wait_login(&s, "robot$ci", &secret, 401);
    inspect(&t, &s, "team-a/built:v1", Some(&robot)).run_fail();
    let new_creds = format!("robot$ci:{rotated}");
    inspect(&t, &s, "team-a/built:v1", Some(&new_creds)).run();
    berth(&["robot", "delete", "--file"], &robots, &["--name", "ci"]);
    wait_login(&s, "robot$ci", &rotated, 401);
    inspect(&t, &s, "team-a/built:v1", Some(&new_creds)).run_fail();
}

/// Waits (up to 10 s) until `GET /v2/` with these credentials answers `status`: file changes
/// reach the server at its next poll.
fn wait_login(s: &Server, user: &str, secret: &str, status: u16) {
    let auth = berth_e2e::http::basic_auth(user, secret);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = berth_e2e::http::get(&format!("{}/v2/", s.url()), &[("Authorization", &auth)]);
        if r.status == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{user} still gets {} instead of {status}",
            r.status
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn secret_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("no secret line in {out:?}"))
        .to_string()
}

#[test]
fn repeated_failed_logins_get_429() {
    let t = TestDir::new("auth-429");
    let s = start(
        &t,
        false,
        "  limits:\n    clientfailures: 3\n    window: 10s\n",
    );
    let url = format!("{}/v2/team-a/app/tags/list", s.url());
    let bad = berth_e2e::http::basic_auth("alice", "guess");
    for _ in 0..3 {
        let r = berth_e2e::http::get(&url, &[("Authorization", &bad)]);
        assert_eq!(r.status, 401, "{}", r.describe());
    }
    let r = berth_e2e::http::get(&url, &[("Authorization", &bad)]);
    assert_eq!(r.status, 429, "{}", r.describe());
    assert_eq!(r.json()["errors"][0]["code"], "TOOMANYREQUESTS");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{}", r.describe());
    assert!(s.log().contains("rate limited"), "{}", s.log());
    // skopeo honours 429 + Retry-After: it backs off and gets through once the window ends
    push(&t, &s, "team-a/app:v1", Some(&creds("alice"))).run();
    assert_eq!(s.tags("team-a/app").unwrap(), ["v1"]);
}

/// skopeo over HTTPS trusting `certs`, with optional credentials.
fn tls_copy(t: &TestDir, certs: &Path, src: &str, dst: &str, creds: Option<&str>) -> Cmd {
    let mut c = skopeo(t).args(["copy", "--quiet", "--src-cert-dir"]);
    c = c.arg(certs).arg("--dest-cert-dir").arg(certs);
    if let Some(cr) = creds {
        c = c.args(["--src-creds", cr, "--dest-creds", cr]);
    }
    c.arg(src).arg(dst)
}

fn tls_inspect(t: &TestDir, certs: &Path, reference: &str, creds: &str) -> Output {
    skopeo(t)
        .args(["inspect", "--raw", "--creds", creds, "--cert-dir"])
        .arg(certs)
        .arg(format!("docker://{reference}"))
        .run()
}

#[test]
fn clients_over_https_with_basic_auth() {
    let t = TestDir::new("auth-tls-basic");
    let (s, pki, certs) = start_tls(&t, false);
    let want = images().layout.digest("small");
    let small = images().reference("small");
    let app = format!("docker://{}/team-a/app:v1", s.addr());
    tls_copy(&t, &certs, &small, &app, Some(&creds("alice"))).run();
    tls_copy(
        &t,
        &certs,
        &small,
        &format!("docker://{}/team-a/app:evil", s.addr()),
        None,
    )
    .run_fail();
    tls_copy(
        &t,
        &certs,
        &small,
        &format!("docker://{}/team-a/app:evil", s.addr()),
        Some(&creds("bob")),
    )
    .run_fail();
    let raw = tls_inspect(
        &t,
        &certs,
        &format!("{}/team-a/app:v1", s.addr()),
        &creds("bob"),
    )
    .stdout;
    assert_eq!(sha256_digest(raw.as_bytes()), want);

    // podman login over HTTPS, then push and pull
    let auth_file = t.join("podman-auth.json");
    fs::write(&auth_file, "{}").unwrap();
    let podman = |store: &str| t.podman(store).env("REGISTRY_AUTH_FILE", &auth_file);
    podman("src")
        .args(["login", "-u", "alice", "-p", &pw("alice"), "--cert-dir"])
        .arg(&certs)
        .arg(s.addr())
        .run();
    podman("src")
        .args(["pull", "-q", "--cert-dir"])
        .arg(&certs)
        .arg(format!("{}/team-a/app:v1", s.addr()))
        .run();
    podman("src")
        .args(["push", "-q", "--cert-dir"])
        .arg(&certs)
        .arg(format!("{}/team-a/app:v1", s.addr()))
        .arg(format!("docker://{}/team-a/podman:v1", s.addr()))
        .run();

    // ctr with hosts.toml trusting the CA, and --user
    let hosts = t.join("hosts");
    fs::create_dir_all(hosts.join(s.addr())).unwrap();
    let (host, ca) = (s.addr(), pki.ca());
    fs::write(
        hosts.join(&host).join("hosts.toml"),
        format!("server = \"https://{host}\"\nca = {ca:?}\n\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  ca = {ca:?}\n"),
    )
    .unwrap();
    let c = Containerd::start();
    let src = format!("{host}/team-a/app:v1");
    let dst = format!("{host}/team-a/ctr:v1");
    let ctr = |args: &[&str], user: &str| {
        c.ctr("e2e")
            .args(args)
            .arg("--hosts-dir")
            .arg(&hosts)
            .args(["--user", user])
    };
    ctr(&["images", "pull"], &creds("bob")).arg(&src).run();
    c.ctr("e2e").args(["images", "tag", &src, &dst]).run();
    ctr(&["images", "push"], &creds("bob")).arg(&dst).run_fail();
    ctr(&["images", "push"], &creds("alice")).arg(&dst).run();
    // ctr pushes the manifest it pulled; podman writes its own (recompressed) one
    let raw = tls_inspect(&t, &certs, &dst, &creds("root")).stdout;
    assert_eq!(sha256_digest(raw.as_bytes()), want);
    let podman_pushed = format!("{host}/team-a/podman:v1");
    let m: serde_json::Value =
        serde_json::from_str(&tls_inspect(&t, &certs, &podman_pushed, &creds("root")).stdout)
            .unwrap();
    assert_eq!(m["layers"].as_array().map(Vec::len), Some(2), "{m}");

    // the ORAS and Helm SDKs over HTTPS
    let work = t.join("py");
    fs::create_dir_all(&work).unwrap();
    let ca = ca.to_str().unwrap().to_string();
    let out = run_python(
        "auth_e2e.py",
        &[
            &host,
            work.to_str().unwrap(),
            "alice",
            &pw("alice"),
            "team-a",
            &ca,
        ],
        &work,
    );
    assert!(
        out.stdout.contains("auth e2e: all checks passed"),
        "{}",
        out.describe()
    );
    let tags = skopeo(&t)
        .args(["list-tags", "--creds", &creds("root"), "--cert-dir"])
        .arg(&certs)
        .arg(format!("docker://{host}/team-a/helm/authchart"))
        .stdout();
    assert!(tags.contains("0.1.0"), "{tags}");
}

#[test]
fn bearer_token_flow_over_https() {
    let t = TestDir::new("auth-tls-token");
    let (s, _pki, certs) = start_tls(&t, true);
    let small = images().reference("small");
    let host = s.addr();
    tls_copy(
        &t,
        &certs,
        &small,
        &format!("docker://{host}/team-a/app:v1"),
        Some(&creds("alice")),
    )
    .run();
    tls_copy(
        &t,
        &certs,
        &small,
        &format!("docker://{host}/team-a/app:evil"),
        Some(&creds("bob")),
    )
    .run_fail();
    tls_copy(
        &t,
        &certs,
        &small,
        &format!("docker://{host}/public/x:v1"),
        None,
    )
    .run_fail();
    let raw = tls_inspect(&t, &certs, &format!("{host}/team-a/app:v1"), &creds("bob")).stdout;
    assert_eq!(
        sha256_digest(raw.as_bytes()),
        images().layout.digest("small")
    );
    let tags = skopeo(&t)
        .args(["list-tags", "--creds", &creds("root"), "--cert-dir"])
        .arg(&certs)
        .arg(format!("docker://{host}/team-a/app"))
        .stdout();
    assert!(tags.contains("\"v1\"") && !tags.contains("evil"), "{tags}");
    // the realm the clients followed is the HTTPS token endpoint
    let log = s.log();
    let token_hits = log
        .lines()
        .filter(|l| l.contains("/auth/token") && l.contains(" 200"))
        .count();
    assert!(
        token_hits >= 2,
        "expected token requests in the log:\n{log}"
    );
}
