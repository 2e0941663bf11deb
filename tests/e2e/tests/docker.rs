//! A real Docker Engine (Debian's `docker.io` 20.10: dockerd and its own CLI) against the real
//! `berth` binary, set up as a compose file would: nginx terminating TLS in front, Berth with
//! htpasswd users (made with `berth user add`) behind it.
//!
//! Every daemon is a fresh private [`Dockerd`] (its own data root, socket, `/etc/hosts` and
//! `/etc/docker/certs.d`), so a pull on a second daemon really comes from the registry. The
//! registry is `registry.berth.test:PORT`, mapped to `::1` in the daemons' own hosts files:
//! docker treats names in 127.0.0.0/8 as insecure and would skip the certificate check, so only
//! an address outside it proves that `certs.d/<host:port>/ca.crt` is what makes the daemon
//! trust the test CA. Images are built without network access: `docker build` of `FROM scratch`
//! + `COPY`, and `docker load` of a docker-archive that skopeo makes from the umoci fixture.
//!
//! These tests always run Berth: users made with `berth user add`, Berth's token issuer and
//! `http.trustedproxies` (the realm's scheme and the audit's client address behind nginx) are
//! Berth configuration.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use berth_e2e::http::{self, basic_auth};
use berth_e2e::nginx::{Nginx, TlsFront};
use berth_e2e::server::berth_bin;
use berth_e2e::tls::Pki;
use berth_e2e::{
    images, random_bytes, read_json, sha256_digest, Cmd, Dockerd, Output, Server, ServerOptions,
    TestDir, DOCKER_MANIFEST,
};
use serde_json::Value;

/// The registry's name on the docker machines.
const HOST: &str = "registry.berth.test";
const ALICE: &str = "alice-Pa55";
/// alice's password after the change.
const NEW: &str = "alice-New-Pa55";
/// The user of the harness's own cross-checks (tags, catalog, manifests) straight to Berth.
const OPS: &str = "ops-Pa55";

/// Berth behind nginx with TLS, and the test CA that signed nginx's certificate.
struct Compose {
    server: Server,
    nginx: Nginx,
    ca: PathBuf,
}

impl Compose {
    /// `registry.berth.test:PORT`, as docker users spell it.
    fn registry(&self) -> String {
        format!("{HOST}:{}", self.nginx.port())
    }

    /// `registry.berth.test:PORT/<name>`.
    fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.registry())
    }

    /// A fresh docker machine that resolves the registry to `::1`, with its own docker config
    /// dir `t/<name>`; it trusts the CA when `trusted`.
    fn machine(&self, t: &TestDir, name: &str, trusted: bool) -> Machine {
        let d = Dockerd::start(&format!("::1 {HOST}"));
        if trusted {
            d.trust(&self.registry(), &self.ca);
        }
        Machine {
            d,
            cfg: t.join(name),
            registry: self.registry(),
        }
    }
}

fn add_user(htpasswd: &Path, user: &str, password: &str) {
    Cmd::new(berth_bin().to_str().expect("utf-8 path"))
        .args(["user", "add", "--file"])
        .arg(htpasswd)
        .args([user, "--password", password])
        .run();
}

/// Users alice and ops; `issuer` adds Berth's own token endpoint. Every request comes from
/// nginx on 127.0.0.1, believed as a proxy (client address, `X-Forwarded-Proto` for the realm).
fn compose(t: &TestDir, issuer: bool) -> Compose {
    let htpasswd = t.join("htpasswd");
    add_user(&htpasswd, "alice", ALICE);
    add_user(&htpasswd, "ops", OPS);
    let issuer = if issuer {
        "  issuer:\n    service: berth-e2e\n"
    } else {
        ""
    };
    let config = format!(
        "auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {}\n{issuer}  limits:\n    clientfailures: 1000\n",
        htpasswd.display()
    );
    let opts = ServerOptions::default()
        .config(&config)
        .extra_yaml("http:\n  trustedproxies: [127.0.0.1/32]\n")
        .admin("ops", OPS);
    let server = Server::start_with(opts);
    let pki = Pki::new(&t.join("pki"));
    let leaf = pki.server_for("front", "D0C1", &format!("DNS:{HOST}"));
    let front = TlsFront {
        listen: "::1".into(),
        cert: leaf.cert,
        key: leaf.key,
    };
    let nginx = Nginx::start_tls(&[server.addr()], &front);
    Compose {
        server,
        nginx,
        ca: pki.ca(),
    }
}

/// One docker machine: a private daemon and the user's docker config dir on it.
struct Machine {
    d: Dockerd,
    cfg: PathBuf,
    registry: String,
}

impl Machine {
    fn docker(&self) -> Cmd {
        self.d.docker(&self.cfg)
    }

    /// `docker login -u USER --password-stdin REGISTRY`, whatever the outcome.
    fn login(&self, user: &str, password: &str) -> Output {
        self.docker()
            .args(["login", "-u", user, "--password-stdin", &self.registry])
            .stdin(format!("{password}\n"))
            .output()
    }

    /// The config.json entry for the registry.
    fn auths(&self) -> Value {
        read_json(&self.cfg.join("config.json"))["auths"][&self.registry].clone()
    }

    /// `docker build -t TAG` of `FROM scratch` with one `COPY` (one layer) per file, in the
    /// context dir `ctx`; the image id.
    fn build(&self, ctx: &Path, files: &[(&str, Vec<u8>)], tag: &str) -> String {
        std::fs::create_dir_all(ctx).expect("build context");
        let mut dockerfile = String::from("FROM scratch\n");
        for (name, data) in files {
            std::fs::write(ctx.join(name), data).expect("write context file");
            dockerfile.push_str(&format!("COPY {name} /{name}\n"));
        }
        dockerfile.push_str(&format!("CMD [\"/{}\"]\n", files[0].0));
        std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
        let id = self
            .docker()
            .args(["build", "-q", "-t", tag])
            .arg(ctx)
            .stdout();
        assert!(id.starts_with("sha256:"), "docker build printed {id:?}");
        id
    }

    /// `docker load -i TAR`; its output.
    fn load(&self, tar: &Path) -> String {
        self.docker().args(["load", "-i"]).arg(tar).stdout()
    }

    fn tag(&self, from: &str, to: &str) {
        self.docker().args(["tag", from, to]).run();
    }

    fn pull(&self, reference: &str) {
        self.docker().args(["pull", "-q", reference]).run();
    }

    /// `docker push REF`; its output and the manifest digest it reports
    /// (`TAG: digest: sha256:… size: N`).
    fn push_output(&self, reference: &str) -> (Output, String) {
        let out = self.docker().args(["push", reference]).run();
        let digest = out
            .stdout
            .lines()
            .find_map(|l| l.split_once("digest: ").map(|(_, rest)| rest))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no digest in the push output\n{}", out.describe()))
            .to_string();
        (out, digest)
    }

    fn push(&self, reference: &str) -> String {
        self.push_output(reference).1
    }

    /// `docker image inspect --format FORMAT REF`.
    fn inspect(&self, reference: &str, format: &str) -> String {
        self.docker()
            .args(["image", "inspect", "--format", format, reference])
            .stdout()
    }

    /// The image's id (its config digest: it covers every layer's uncompressed digest, which
    /// docker checks on pull and load).
    fn id(&self, reference: &str) -> String {
        self.inspect(reference, "{{.Id}}")
    }

    fn layers(&self, reference: &str) -> usize {
        let n = self.inspect(reference, "{{len .RootFS.Layers}}");
        n.parse()
            .unwrap_or_else(|e| panic!("layer count {n:?}: {e}"))
    }

    #[track_caller]
    fn assert_repo_digest(&self, reference: &str, want: &str) {
        let json = self.inspect(reference, "{{json .RepoDigests}}");
        let digests: Vec<String> =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("RepoDigests {json:?}: {e}"));
        assert!(
            digests.iter().any(|x| x == want),
            "{reference}: RepoDigests {digests:?} lack {want}"
        );
    }

    /// `docker manifest inspect [ARGS] REF` (the CLI itself asks the registry) as JSON.
    fn manifest_inspect(&self, args: &[&str], reference: &str) -> Value {
        let raw = self
            .docker()
            .args(["manifest", "inspect"])
            .args(args)
            .arg(reference)
            .stdout();
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("manifest inspect: {e}\n{raw}"))
    }
}

#[track_caller]
fn assert_logged_in(out: &Output) {
    assert!(
        out.success() && out.stdout.contains("Login Succeeded"),
        "{}",
        out.describe()
    );
}

/// The manifest Berth stores for `repo:reference` (fetched straight from Berth): its digest,
/// checked against the bytes, and its JSON.
fn stored_manifest(s: &Server, repo: &str, reference: &str) -> (String, Value) {
    let r = s.get_manifest(repo, reference);
    assert_eq!(r.status, 200, "{repo}:{reference}\n{}", r.describe());
    let digest = r.header("docker-content-digest").unwrap_or_default();
    assert_eq!(digest, sha256_digest(&r.body), "{repo}:{reference}");
    (digest.to_string(), r.json())
}

/// Asserts what a docker push left in the registry: a Docker v2 manifest with the pushed
/// digest, whose config is the local image id.
#[track_caller]
fn assert_stored(s: &Server, repo: &str, tag: &str, pushed: &str, id: &str) {
    let (digest, m) = stored_manifest(s, repo, tag);
    assert_eq!(digest, pushed, "{repo}:{tag}: stored digest vs docker push");
    assert_eq!(m["mediaType"], DOCKER_MANIFEST, "{repo}:{tag}: {m}");
    assert_eq!(
        m["config"]["digest"], id,
        "{repo}:{tag}: config vs image id"
    );
}

fn tags(s: &Server, repo: &str) -> Vec<String> {
    s.tags(repo).unwrap_or_default()
}

/// Lines of the server log that contain every one of `parts`.
fn log_lines(s: &Server, parts: &[&str]) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .map(String::from)
        .collect()
}

/// An image on machine A: `registry/repo:tag`, its id and the digest its push reported.
struct Pushed {
    reference: String,
    repo: String,
    id: String,
    digest: String,
}

impl Pushed {
    /// `registry/repo@digest`.
    fn by_digest(&self) -> String {
        let name = self.reference.rsplit_once(':').map_or("", |(n, _)| n);
        format!("{name}@{}", self.digest)
    }
}

/// Without the CA in certs.d the certificate check fails before any request reaches Berth; with
/// it, a wrong password is refused and alice logs in (basic credentials kept in config.json).
fn login_needs_the_ca(c: &Compose, a: &Machine) {
    let s = &c.server;
    let out = a.login("alice", ALICE);
    assert!(
        !out.success() && out.stderr.contains("x509"),
        "login without the CA in certs.d must fail the certificate check\n{}",
        out.describe()
    );
    assert!(log_lines(s, &["event=login"]).is_empty(), "{}", s.log());
    a.d.trust(&c.registry(), &c.ca);
    let out = a.login("alice", "wrong-password");
    assert!(!out.success(), "{}", out.describe());
    let failed = log_lines(s, &["who=alice", "result=failed"]);
    assert!(!failed.is_empty(), "{}", s.log());
    assert_logged_in(&a.login("alice", ALICE));
    let auths = a.auths();
    assert_eq!(
        format!("Basic {}", auths["auth"].as_str().unwrap_or_default()),
        basic_auth("alice", ALICE),
        "htpasswd login keeps user:password: {auths}"
    );
    assert!(auths.get("identitytoken").is_none(), "{auths}");
}

/// On A: `docker build` of 1 and 3 layers, `docker load` of the 2-layer umoci fixture (a
/// skopeo docker-archive); all pushed, and multi again under v2 (every layer already there).
fn build_load_and_push(t: &TestDir, c: &Compose, a: &Machine) -> [Pushed; 3] {
    let single = c.image("e2e/single:v1");
    let hello = vec![("hello.txt", b"hello from docker build\n".to_vec())];
    let single_id = a.build(&t.join("ctx1"), &hello, &single);
    let multi = c.image("e2e/multi:v1");
    let files = [
        ("a.txt", b"first layer\n".to_vec()),
        ("b.txt", b"second layer\n".to_vec()),
        ("c.bin", random_bytes(256 << 10)),
    ];
    let multi_id = a.build(&t.join("ctx2"), &files, &multi);
    let loaded = c.image("e2e/loaded:v1");
    let archive = t.join("small.tar");
    t.skopeo()
        .args(["copy", "--quiet", &images().reference("small")])
        .arg(format!("docker-archive:{}:{loaded}", archive.display()))
        .run();
    assert!(a.load(&archive).contains(&loaded));
    let loaded_id = a.id(&loaded);
    let pushed = [
        ("e2e/single", single, single_id, 1),
        ("e2e/multi", multi, multi_id, 3),
        ("e2e/loaded", loaded, loaded_id, 2),
    ]
    .map(|(repo, reference, id, layers)| {
        assert_eq!(a.layers(&reference), layers, "{reference}");
        let digest = a.push(&reference);
        let p = Pushed {
            reference,
            repo: repo.into(),
            id,
            digest,
        };
        assert_stored(&c.server, &p.repo, "v1", &p.digest, &p.id);
        a.assert_repo_digest(&p.reference, &p.by_digest());
        p
    });
    let v2 = c.image("e2e/multi:v2");
    a.tag(&pushed[1].reference, &v2);
    let (out, digest) = a.push_output(&v2);
    assert_eq!(out.stdout.matches("Layer already exists").count(), 3);
    assert_stored(&c.server, "e2e/multi", "v2", &digest, &pushed[1].id);
    assert_eq!(digest, pushed[1].digest);
    pushed
}

/// On a fresh machine B: pull by tag and by digest, the same ids and the pushed RepoDigests;
/// `docker manifest inspect` equals what Berth stores.
fn pull_on_b(c: &Compose, b: &Machine, [single, multi, loaded]: &[Pushed; 3]) {
    assert_logged_in(&b.login("alice", ALICE));
    b.pull(&single.reference);
    b.pull(&loaded.reference);
    b.pull(&multi.by_digest());
    for p in [single, loaded] {
        assert_eq!(b.id(&p.reference), p.id, "{}", p.reference);
        b.assert_repo_digest(&p.reference, &p.by_digest());
    }
    assert_eq!(b.id(&multi.by_digest()), multi.id);
    b.assert_repo_digest(&multi.by_digest(), &multi.by_digest());
    assert_eq!(b.inspect(&multi.by_digest(), "{{json .RepoTags}}"), "[]");
    let m = b.manifest_inspect(&[], &multi.reference);
    let (_, stored) = stored_manifest(&c.server, "e2e/multi", "v1");
    assert_eq!(m, stored, "manifest inspect vs the stored manifest");
    let v = b.manifest_inspect(&["--verbose"], &single.reference);
    assert_eq!(v["Descriptor"]["digest"], single.digest.as_str(), "{v}");
    assert_eq!(v["Descriptor"]["mediaType"], DOCKER_MANIFEST, "{v}");
}

/// `docker save` on B, `docker load` on a fresh machine C, and a push of the loaded image under
/// a new tag.
fn save_on_b_load_on_c(t: &TestDir, c: &Compose, b: &Machine, cm: &Machine, pushed: &[&Pushed]) {
    let saved = t.join("saved.tar");
    let refs: Vec<&str> = pushed.iter().map(|p| p.reference.as_str()).collect();
    b.docker()
        .args(["save", "-o"])
        .arg(&saved)
        .args(&refs)
        .run();
    let out = cm.load(&saved);
    for p in pushed {
        assert!(out.contains(&p.reference), "{out}");
        assert_eq!(cm.id(&p.reference), p.id, "{}", p.reference);
    }
    assert_logged_in(&cm.login("alice", ALICE));
    let single = pushed[0];
    let copy = c.image("e2e/single:copy");
    cm.tag(&single.reference, &copy);
    let digest = cm.push(&copy);
    assert_stored(&c.server, "e2e/single", "copy", &digest, &single.id);
    // The same engine recompresses the same layer tars (kept byte-exact by `docker save`) into
    // the same blobs: the round trip gives back the very manifest A's push made.
    assert_eq!(digest, single.digest, "save/load/push changed the manifest");
}

/// After `docker logout` the daemon has no credentials: the push is refused.
fn logout_refuses_push(c: &Compose, a: &Machine, multi: &Pushed) {
    a.docker().args(["logout", &c.registry()]).run();
    let auths = read_json(&a.cfg.join("config.json"))["auths"].clone();
    assert!(auths.get(c.registry()).is_none(), "{auths}");
    let v3 = c.image("e2e/multi:v3");
    a.tag(&multi.reference, &v3);
    let out = a.docker().args(["push", &v3]).run_fail();
    assert!(
        out.stderr.contains("no basic auth credentials"),
        "{}",
        out.describe()
    );
}

#[test]
fn docker_through_nginx_tls_with_htpasswd_pushes_pulls_saves_and_loads() {
    let t = TestDir::new("docker-htpasswd");
    let c = compose(&t, false);
    let a = c.machine(&t, "docker-a", false);
    login_needs_the_ca(&c, &a);
    let pushed = build_load_and_push(&t, &c, &a);
    let b = c.machine(&t, "docker-b", true);
    pull_on_b(&c, &b, &pushed);
    let cm = c.machine(&t, "docker-c", true);
    let [single, multi, loaded] = &pushed;
    save_on_b_load_on_c(&t, &c, &b, &cm, &[single, loaded]);
    logout_refuses_push(&c, &a, multi);
    let s = &c.server;
    assert_eq!(tags(s, "e2e/single"), ["copy", "v1"]);
    assert_eq!(tags(s, "e2e/multi"), ["v1", "v2"]);
    assert_eq!(tags(s, "e2e/loaded"), ["v1"]);
    assert_eq!(s.catalog(), ["e2e/loaded", "e2e/multi", "e2e/single"]);
}

/// The identity token (refresh token) docker keeps for the registry, and the `auth` field next
/// to it.
fn stored_identity(m: &Machine) -> (String, String) {
    let auths = m.auths();
    let token = auths["identitytoken"].as_str().unwrap_or_default();
    assert!(
        !token.is_empty(),
        "no identitytoken in config.json: {auths}"
    );
    let auth = auths["auth"].as_str().unwrap_or_default().to_string();
    (token.to_string(), auth)
}

/// Waits (at most 10 s) until Berth has re-read the htpasswd file: basic auth with `password`
/// works. (Polling with the old refresh token would add refresh lines to the audit log.)
fn wait_for_password(s: &Server, user: &str, password: &str) {
    let url = format!("{}/v2/", s.url());
    let auth = basic_auth(user, password);
    let deadline = Instant::now() + Duration::from_secs(10);
    while http::get(&url, &[("Authorization", &auth)]).status != 200 {
        assert!(Instant::now() < deadline, "the new password never worked");
        thread::sleep(Duration::from_millis(100));
    }
}

fn refreshes_ok(s: &Server) -> usize {
    log_lines(s, &["method=refresh", "result=ok", "who=alice"]).len()
}

/// docker login asks for offline access (nginx logs the query docker sent); Berth answers with
/// a refresh token, which docker keeps as `identitytoken` instead of the password. Returns it.
fn login_keeps_a_refresh_token(c: &Compose, a: &Machine) -> String {
    let s = &c.server;
    assert_logged_in(&a.login("alice", ALICE));
    let (token, auth) = stored_identity(a);
    assert_eq!(format!("Basic {auth}"), basic_auth("alice", ""));
    let config = std::fs::read_to_string(a.cfg.join("config.json")).expect("config.json");
    assert!(!config.contains(ALICE), "{config}");
    let logins = log_lines(
        s,
        &["event=login", "who=alice", "method=token", "result=ok"],
    );
    assert_eq!(logins.len(), 1, "{}", s.log());
    let access = c.nginx.access_log();
    assert!(
        access.lines().any(|l| l.contains("GET /auth/token?")
            && l.contains("offline_token=true")
            && l.contains("client_id=docker")),
        "docker login did not ask for offline access:\n{access}"
    );
    token
}

/// A new password ends the session: a push with the stored identity token is refused, and
/// docker relays Berth's reason.
fn password_change_ends_the_session(t: &TestDir, c: &Compose, a: &Machine, v2: &str) {
    let s = &c.server;
    add_user(&t.join("htpasswd"), "alice", NEW);
    wait_for_password(s, "alice", NEW);
    let out = a.docker().args(["push", v2]).run_fail();
    let err = &out.stderr;
    assert!(
        err.contains("unauthorized") && err.contains("log in again"),
        "{}",
        out.describe()
    );
    let revoked = log_lines(s, &["method=refresh", "result=failed", "revoked"]);
    assert!(
        !revoked.is_empty(),
        "no refused refresh in the log:\n{}",
        s.log()
    );
    assert_eq!(tags(s, "e2e/app"), ["v1"]);
}

#[test]
fn docker_login_with_berth_tokens_keeps_a_refresh_token_until_the_password_changes() {
    let t = TestDir::new("docker-tokens");
    let c = compose(&t, true);
    let s = &c.server;
    let a = c.machine(&t, "docker", true);
    let token = login_keeps_a_refresh_token(&c, &a);

    // Push from A, pull on B with the same config.json: both mint access tokens from it.
    let v1 = c.image("e2e/app:v1");
    let id = a.build(&t.join("ctx"), &[("app.txt", b"v1\n".to_vec())], &v1);
    let digest = a.push(&v1);
    assert_stored(s, "e2e/app", "v1", &digest, &id);
    let after_push = refreshes_ok(s);
    assert!(after_push >= 1, "the push did not refresh:\n{}", s.log());
    let b = c.machine(&t, "docker", true);
    let by_digest = format!("{}@{digest}", c.image("e2e/app"));
    b.pull(&by_digest);
    assert_eq!(b.id(&by_digest), id);
    assert!(
        refreshes_ok(s) > after_push,
        "the pull did not refresh:\n{}",
        s.log()
    );
    let basic = log_lines(s, &["method=basic", "who=alice"]);
    assert!(basic.is_empty(), "docker sent alice's password: {basic:?}");

    let v2 = c.image("e2e/app:v2");
    a.tag(&v1, &v2);
    password_change_ends_the_session(&t, &c, &a, &v2);

    // The old password is refused; the new one logs in again with a new refresh token.
    assert!(!a.login("alice", ALICE).success());
    assert_logged_in(&a.login("alice", NEW));
    let (fresh, _) = stored_identity(&a);
    assert_ne!(fresh, token, "a new login must store a new refresh token");
    assert_eq!(a.push(&v2), digest);
    assert_eq!(tags(s, "e2e/app"), ["v1", "v2"]);
}
