//! The registry under test: Berth (default) or Distribution 2.8.2, started on a free loopback
//! port with fresh storage, killed when the [`Server`] is dropped.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cmd::require_tool;
use crate::http;
use crate::tls::{self, ClientTls, Leaf};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which registry implementation the suite drives (`E2E_TARGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The `berth` binary (default).
    Berth,
    /// Debian's `docker-registry` (CNCF Distribution 2.8.2), the reference implementation.
    Distribution,
}

impl Target {
    /// Reads `E2E_TARGET` (`berth` when unset). Unknown values fail loudly.
    pub fn current() -> Target {
        match std::env::var("E2E_TARGET").as_deref() {
            Err(_) | Ok("") | Ok("berth") => Target::Berth,
            Ok("distribution") => Target::Distribution,
            Ok(other) => panic!("E2E_TARGET={other:?}: expected `berth` or `distribution`"),
        }
    }
}

/// Whether the target implements the OCI 1.1 referrers API and the `OCI-Subject` header.
///
/// One of the two permitted gates in the suite (with [`target_reloads_certificates`]). It is
/// always true for Berth; Distribution 2.8.2 predates OCI 1.1.
pub fn target_supports_referrers() -> bool {
    Target::current() == Target::Berth
}

/// Whether the target serves renewed TLS certificates without a restart.
///
/// The other permitted gate. Always true for Berth; Distribution 2.8.2 reads its certificate
/// once at startup.
pub fn target_reloads_certificates() -> bool {
    Target::current() == Target::Berth
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// Locates the berth binary: `BERTH_BIN`, then `$CARGO_TARGET_DIR/{debug,release}/berth`, then
/// `<workspace>/target/{debug,release}/berth`.
pub fn berth_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "BERTH_BIN={} does not exist", p.display());
        return p;
    }
    let mut dirs = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(t));
    }
    dirs.push(workspace_root().join("target"));
    let candidates: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| [d.join("debug/berth"), d.join("release/berth")])
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "berth binary not found (looked at {candidates:?}): run `cargo build -p berth`, \
             set BERTH_BIN, or run the suite against Distribution with E2E_TARGET=distribution"
            )
        })
}

/// Configuration beyond the defaults, for [`Server::start_with`]: HTTPS, client certificates,
/// the minimum TLS version and the drain timeout, written as registry:2 keys under `http:`.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    tls: Option<(Leaf, ClientTls)>,
    client_cas: Vec<PathBuf>,
    min_tls: Option<String>,
    drain_timeout: Option<String>,
    extra_config: String,
    admin: Option<String>,
    berth: bool,
    env: Vec<(String, String)>,
    extra_yaml: String,
    run_as_nobody: bool,
    ready_path: Option<String>,
}

impl ServerOptions {
    /// HTTPS with `leaf` (`http.tls.certificate`/`key`); the harness trusts `ca`.
    pub fn tls(leaf: &Leaf, ca: &Path) -> ServerOptions {
        let client = ClientTls {
            ca: ca.into(),
            client: None,
        };
        ServerOptions {
            tls: Some((leaf.clone(), client)),
            ..ServerOptions::default()
        }
    }

    /// `http.tls.clientcas: [client_ca]`; the harness itself presents `client`.
    pub fn client_cas(mut self, client_ca: &Path, client: &Leaf) -> ServerOptions {
        self.client_cas.push(client_ca.into());
        if let Some((_, c)) = self.tls.as_mut() {
            c.client = Some(client.clone());
        }
        self
    }

    /// `http.tls.minimumtls`.
    pub fn min_tls(mut self, v: &str) -> ServerOptions {
        self.min_tls = Some(v.into());
        self
    }

    /// `http.draintimeout` (a Go duration such as `1s`).
    pub fn drain_timeout(mut self, d: &str) -> ServerOptions {
        self.drain_timeout = Some(d.into());
        self
    }

    /// Top-level sections appended to config.yml (`auth:`, `policy:`); implies Berth, whatever
    /// `E2E_TARGET` says (these are Berth features).
    pub fn config(mut self, extra: &str) -> ServerOptions {
        self.extra_config.push_str(extra);
        self.berth = true;
        self
    }

    /// An environment variable for the server process, set after the caller's `REGISTRY_*`
    /// variables were removed (so `REGISTRY_*` variables given here are the only overrides).
    pub fn env(mut self, k: &str, v: &str) -> ServerOptions {
        self.env.push((k.into(), v.into()));
        self
    }

    /// YAML merged key by key into the generated `config.yml` (mappings recursively, anything
    /// else replaced): `http:\n  prefix: /registry/\n` keeps `http.addr`.
    pub fn extra_yaml(mut self, yaml: &str) -> ServerOptions {
        self.extra_yaml.push_str(yaml);
        self
    }

    /// Runs the server as user `nobody`, owner of the storage root, so that permission changes
    /// on the root affect the server although the tests run as root.
    pub fn run_as_nobody(mut self) -> ServerOptions {
        self.run_as_nobody = true;
        self
    }

    /// The path whose 200 means "ready" (default `/v2/`; `/registry/v2/` below a prefix).
    pub fn ready_path(mut self, path: &str) -> ServerOptions {
        self.ready_path = Some(path.into());
        self
    }

    /// Runs Berth whatever `E2E_TARGET` says: for tests of Berth's own operations features
    /// (metric names, webhook delivery guarantees), not of registry:2 API behaviour.
    pub fn pin_berth(mut self) -> ServerOptions {
        self.berth = true;
        self
    }

    /// Basic credentials the harness's own cross-checks ([`Server::get_manifest`],
    /// [`Server::tags`], …) send; readiness then also accepts a 401 from `/v2/`.
    pub fn admin(mut self, user: &str, password: &str) -> ServerOptions {
        self.admin = Some(http::basic_auth(user, password));
        self
    }

    /// The lines under `http:` besides `addr`.
    fn http_yaml(&self) -> String {
        let mut y = String::new();
        if let Some(d) = &self.drain_timeout {
            y.push_str(&format!("  draintimeout: {d}\n"));
        }
        if let Some((leaf, _)) = &self.tls {
            y.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                leaf.cert.display(),
                leaf.key.display()
            ));
            if !self.client_cas.is_empty() {
                y.push_str("    clientcas:\n");
                for ca in &self.client_cas {
                    y.push_str(&format!("      - {}\n", ca.display()));
                }
            }
            if let Some(v) = &self.min_tls {
                y.push_str(&format!("    minimumtls: {v}\n"));
            }
        }
        y
    }
}

/// A running registry with its own temp dir (config, storage, log).
pub struct Server {
    target: Target,
    port: u16,
    opts: ServerOptions,
    dir: Option<TempDir>,
    child: Option<Child>,
    /// The `storage:` section's body when not the default filesystem one.
    storage: Option<String>,
}

impl Server {
    /// Starts the target registry on a free 127.0.0.1 port with empty storage and waits until
    /// `GET /v2/` answers 200.
    pub fn start() -> Server {
        Server::start_with(ServerOptions::default())
    }

    /// Like [`Server::start`], with `storage` (the indented body of the config's `storage:`
    /// section, e.g. an `s3:` driver plus `delete:` and `redirect:`) instead of a fresh
    /// filesystem root.
    pub fn start_with_storage(storage: Option<&str>) -> Server {
        Server::launch(ServerOptions::default(), storage)
    }

    /// [`Server::start_with_storage`] with extra configuration (e.g. a shared `database:` for
    /// replicas of one registry).
    pub fn start_with_options_and_storage(opts: ServerOptions, storage: &str) -> Server {
        Server::launch(opts, Some(storage))
    }

    /// [`Server::start`] with extra configuration; over HTTPS readiness is checked with the
    /// options' CA (and client certificate).
    pub fn start_with(opts: ServerOptions) -> Server {
        Server::launch(opts, None)
    }

    fn launch(opts: ServerOptions, storage: Option<&str>) -> Server {
        let target = if opts.berth {
            Target::Berth
        } else {
            Target::current()
        };
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("berth-e2e-srv-")
                .tempdir()
                .expect("temp dir");
            let mut s = Server {
                target,
                port: free_port(),
                opts: opts.clone(),
                dir: Some(dir),
                child: None,
                storage: storage.map(str::to_string),
            };
            fs::create_dir_all(s.storage_dir()).expect("storage dir");
            if s.opts.run_as_nobody {
                s.hand_to_nobody();
            }
            s.write_config();
            s.spawn();
            match s.wait_ready() {
                Ok(()) => return s,
                Err(e) if e.contains("in use") => last_log = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("could not find a free port after 5 tries:\n{last_log}")
    }

    /// Which implementation this is.
    pub fn target(&self) -> Target {
        self.target
    }

    /// `127.0.0.1:PORT`, the registry host as clients spell it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`, or `https://` when the server speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// How to reach the server over TLS, when it speaks it.
    pub fn client_tls(&self) -> Option<&ClientTls> {
        self.opts.tls.as_ref().map(|(_, c)| c)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM (a graceful stop request).
    pub fn sigterm(&self) {
        let pid = self.pid().expect("server is running");
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        // SAFETY: kill has no memory preconditions; pid is our own child.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Waits for the process to exit by itself and returns its status. `limit` only guards
    /// against a hang (the test fails with the log); it is not a timing assertion.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            let child = self.child.as_mut().expect("server was started");
            if let Some(status) = child.try_wait().expect("wait for server") {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "{:?} still running {limit:?} after being asked to stop; log:\n{}",
                self.target,
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process gracefully: SIGTERM, then waits for it to exit (the 30 s limit only
    /// guards against a hang) and asserts a clean exit. Port and storage are kept for
    /// [`Server::restart`].
    pub fn stop(&mut self) {
        self.sigterm();
        let status = self.wait_exit(Duration::from_secs(30));
        assert!(
            status.success(),
            "{:?} exited with {status} after SIGTERM; log:\n{}",
            self.target,
            tail_lines(&self.log(), 100)
        );
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temp dir (config.yml, storage/, server.log).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("server dir").path()
    }

    /// The storage root directory.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir().join("storage")
    }

    /// The server's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("server.log")).unwrap_or_default()
    }

    /// True while the process is alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the process with SIGKILL (a crash), keeping port and storage.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again on the same port, storage and options (after
    /// [`Server::kill9`] or [`Server::stop`]; a running process is killed first).
    pub fn restart(&mut self) {
        self.kill9();
        self.append_log("\n===== e2e harness: restart =====\n");
        // The old socket may linger briefly; retry binding for a few seconds.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.spawn();
            match self.wait_ready() {
                Ok(()) => return,
                Err(e) if e.contains("in use") && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("restart failed: {e}"),
            }
        }
    }

    /// The admin's `Authorization` header for cross-checks, when the options name one.
    fn admin(&self) -> Vec<(&str, &str)> {
        self.opts
            .admin
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default()
    }

    /// `GET /v2/<repo>/manifests/<reference>` accepting every manifest type.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> http::Response {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.url());
        let mut h = self.admin();
        h.push(("Accept", http::ACCEPT_MANIFESTS));
        http::get(&url, &h)
    }

    /// `HEAD /v2/<repo>/blobs/<digest>` status.
    pub fn blob_status(&self, repo: &str, digest: &str) -> u16 {
        http::head(
            &format!("{}/v2/{repo}/blobs/{digest}", self.url()),
            &self.admin(),
        )
        .status
    }

    /// The repositories in the catalog (sorted), as the admin.
    pub fn catalog(&self) -> Vec<String> {
        let r = http::get(&format!("{}/v2/_catalog", self.url()), &self.admin());
        assert_eq!(r.status, 200, "catalog:\n{}", r.describe());
        let mut names: Vec<String> = r.json()["repositories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The tag list of `repo` via `GET /v2/<repo>/tags/list` (sorted), or `None` on 404.
    pub fn tags(&self, repo: &str) -> Option<Vec<String>> {
        let r = http::get(
            &format!("{}/v2/{repo}/tags/list", self.url()),
            &self.admin(),
        );
        if r.status == 404 {
            return None;
        }
        assert_eq!(r.status, 200, "tags/list for {repo}:\n{}", r.describe());
        let v = r.json();
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t.as_str().expect("tag string").to_string())
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        Some(tags)
    }

    fn config_path(&self) -> PathBuf {
        self.dir().join("config.yml")
    }

    fn write_config(&self) {
        let storage = self.storage.clone().unwrap_or_else(|| {
            format!(
                "  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
                self.storage_dir().display()
            )
        });
        let mut yaml = format!(
            "version: 0.1\nhttp:\n  addr: 127.0.0.1:{}\n{}storage:\n{storage}{}",
            self.port,
            self.opts.http_yaml(),
            self.opts.extra_config,
        );
        if !self.opts.extra_yaml.trim().is_empty() {
            yaml = merge_yaml(&yaml, &self.opts.extra_yaml);
        }
        fs::write(self.config_path(), yaml).expect("write config.yml");
    }

    /// Lets user `nobody` read the config and own the storage root.
    fn hand_to_nobody(&self) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(self.dir(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
        std::os::unix::fs::chown(self.storage_dir(), Some(NOBODY), Some(NOGROUP))
            .expect("chown storage root to nobody");
    }

    fn append_log(&self, s: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("server.log"))
            .expect("log");
        let _ = f.write_all(s.as_bytes());
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("server.log"))
            .expect("log file");
        let mut cmd = match self.target {
            Target::Berth => {
                let mut c = Command::new(berth_bin());
                c.arg("serve")
                    .arg("--config")
                    .arg(self.config_path())
                    .env("NO_COLOR", "1");
                c
            }
            Target::Distribution => {
                let mut c = Command::new(require_tool("docker-registry"));
                // aws-sdk-go panics at start-up when AWS_CA_BUNDLE is set (see COOKBOOK §0).
                c.arg("serve")
                    .arg(self.config_path())
                    .env_remove("AWS_CA_BUNDLE");
                c
            }
        };
        // The config file is the whole truth: no stray REGISTRY_* overrides from the caller.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        if self.opts.run_as_nobody {
            cmd.uid(NOBODY).gid(NOGROUP);
        }
        cmd.current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        self.child = Some(child);
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let path = self.opts.ready_path.as_deref().unwrap_or("/v2/");
        let url = format!("{}{path}", self.url());
        let start = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!(
                    "{:?} exited before it was ready ({status}); log:\n{}",
                    self.target,
                    self.log()
                ));
            }
            if self.answers_200(&url) {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "{:?} not ready after {READY_TIMEOUT:?} (GET {url} never answered 200); log:\n{}",
                    self.target,
                    self.log()
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Server {
    /// `/v2/` answers 200, or 401 when authentication is on (the options name an admin).
    fn answers_200(&self, url: &str) -> bool {
        let up = |s: u16| s == 200 || (s == 401 && self.opts.admin.is_some());
        match self.client_tls() {
            Some(c) => tls::probe(&self.addr(), c).is_ok_and(up),
            None => http::request("GET", url, &[], &[]).is_ok_and(|r| up(r.status)),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!(
                "===== {:?} log ({}) =====\n{}",
                self.target,
                self.addr(),
                tail_lines(&self.log(), 200)
            );
        }
        keep_or_remove(self.dir.take());
    }
}

/// Debian's `nobody` user and `nogroup` group.
const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;

/// `extra` merged into `base`: mappings key by key (recursively), anything else replaced.
fn merge_yaml(base: &str, extra: &str) -> String {
    fn merge(into: &mut serde_yaml::Value, from: serde_yaml::Value) {
        match (into, from) {
            (serde_yaml::Value::Mapping(a), serde_yaml::Value::Mapping(b)) => {
                for (k, v) in b {
                    match a.get_mut(&k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            a.insert(k, v);
                        }
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }
    let mut tree: serde_yaml::Value = serde_yaml::from_str(base).expect("base config is YAML");
    let extra: serde_yaml::Value = serde_yaml::from_str(extra)
        .unwrap_or_else(|e| panic!("ServerOptions::extra_yaml is not YAML ({e}):\n{extra}"));
    merge(&mut tree, extra);
    serde_yaml::to_string(&tree).expect("serialize config")
}

/// Keeps a temp dir for post-mortems when `E2E_KEEP=1` and the test is failing.
pub(crate) fn keep_or_remove(dir: Option<TempDir>) {
    if let Some(d) = dir {
        if thread::panicking() && std::env::var_os("E2E_KEEP").is_some() {
            eprintln!("E2E_KEEP: kept {}", d.keep().display());
        }
    }
}

/// The last `n` lines of `s`.
pub fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("addr")
        .port()
}

/// Makes the child get SIGKILL if the spawning thread dies, so a killed test binary leaves no
/// daemons behind. (Linux delivers it when the *thread* that forked exits; servers are owned by
/// the test that started them, so that is the right lifetime.)
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    #[test]
    fn extra_yaml_merges_sections_key_by_key() {
        let base = "http:\n  addr: 127.0.0.1:1\nstorage:\n  delete:\n    enabled: true\n";
        let extra = "http:\n  prefix: /registry/\nstorage:\n  delete:\n    enabled: false\nlog:\n  formatter: json\n";
        let v: serde_yaml::Value = serde_yaml::from_str(&merge_yaml(base, extra)).unwrap();
        assert_eq!(v["http"]["addr"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(v["http"]["prefix"].as_str(), Some("/registry/"));
        assert_eq!(v["storage"]["delete"]["enabled"].as_bool(), Some(false));
        assert_eq!(v["log"]["formatter"].as_str(), Some("json"));
    }
}
