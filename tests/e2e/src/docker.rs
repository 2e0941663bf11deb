//! A private Docker Engine per test (Debian's `docker.io`, 20.10; COOKBOOK §9): its own data
//! root, exec root, socket, pid file and managed containerd, image operations only (no
//! iptables, no bridge, `vfs` storage), stopped on drop.
//!
//! The daemon, and every `docker` CLI call made through [`Dockerd::docker`], run in a private
//! mount namespace whose `/etc/hosts` and `/etc/docker` are this daemon's own files: the
//! machine's are never read or written, registry names can be mapped to loopback addresses, and
//! [`Dockerd::trust`] writes `/etc/docker/certs.d/<host:port>/ca.crt` as an administrator would.
//! Docker treats every name that resolves into 127.0.0.0/8 as an insecure registry (it then
//! skips certificate checks and never reads `certs.d`), so a registry whose trust is under test
//! must be mapped to `::1`. Several daemons run side by side; nothing is shared between them.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cmd::{require_root, require_tool, Cmd};
use crate::server::{die_with_parent, keep_or_remove, tail_lines};

/// Debian's CLI from `docker.io`, the daemon's own version (`/usr/local/bin/docker` may be a
/// newer one first on `PATH`).
pub const DOCKER_CLI: &str = "/usr/bin/docker";

/// The private mounts, then `exec "$@"`; `$0` is the daemon's directory.
const NAMESPACE: &str = "mkdir -p /etc/docker && mount --bind \"$0/hosts\" /etc/hosts && \
                         mount --bind \"$0/etc-docker\" /etc/docker && exec \"$@\"";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running dockerd.
pub struct Dockerd {
    dir: Option<TempDir>,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd with `hosts` (extra `/etc/hosts` lines, e.g. `::1 registry.test`) and
    /// waits until `docker version` answers.
    pub fn start(hosts: &str) -> Dockerd {
        require_root("dockerd and its private mount namespace");
        require_tool("dockerd");
        require_tool(DOCKER_CLI);
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-dockerd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        for sub in ["etc-docker/certs.d", "root", "exec", "probe"] {
            fs::create_dir_all(d.join(sub)).expect("dockerd dirs");
        }
        let etc_hosts = format!("127.0.0.1 localhost\n::1 ip6-localhost\n{hosts}\n");
        fs::write(d.join("hosts"), etc_hosts).expect("write hosts");
        let mut dockerd = Dockerd {
            dir: Some(dir),
            child: None,
        };
        dockerd.spawn();
        dockerd.wait_ready();
        dockerd
    }

    /// The temp dir (hosts, etc-docker, root, exec, socket, log).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dockerd dir").path()
    }

    /// The daemon log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    /// Installs `ca` as `/etc/docker/certs.d/<registry>/ca.crt` (`registry` is `host:port`).
    /// Docker reads it on every connection: no restart.
    pub fn trust(&self, registry: &str, ca: &Path) {
        let d = self.dir().join("etc-docker/certs.d").join(registry);
        fs::create_dir_all(&d).expect("certs.d dir");
        fs::copy(ca, d.join("ca.crt")).expect("copy ca.crt");
    }

    /// The `docker` CLI talking to this daemon, with `config` as its `DOCKER_CONFIG` (where
    /// `docker login` keeps credentials), in the daemon's mount namespace view (same hosts, same
    /// certs.d), the legacy builder and the experimental `docker manifest` commands.
    pub fn docker(&self, config: &Path) -> Cmd {
        fs::create_dir_all(config).expect("docker config dir");
        let sock = format!("unix://{}", self.socket().display());
        Cmd::unshared(DOCKER_CLI, NAMESPACE, self.dir())
            .env("DOCKER_HOST", sock)
            .env("DOCKER_CONFIG", config)
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CLI_EXPERIMENTAL", "enabled")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
    }

    fn socket(&self) -> PathBuf {
        self.dir().join("docker.sock")
    }

    fn spawn(&mut self) {
        let d = self.dir().to_path_buf();
        let log = File::create(d.join("dockerd.log")).expect("dockerd log");
        let mut cmd = Command::new(require_tool("unshare"));
        cmd.args(["-m", "sh", "-c", NAMESPACE])
            .arg(&d)
            .arg(require_tool("dockerd"))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--storage-driver=vfs", "--log-level=info"])
            .arg(format!("--data-root={}", d.join("root").display()))
            .arg(format!("--exec-root={}", d.join("exec").display()))
            .arg(format!("--pidfile={}", d.join("dockerd.pid").display()))
            .arg(format!("--host=unix://{}", self.socket().display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("start dockerd"));
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!("dockerd exited early ({st}); log:\n{}", self.log());
            }
            let probe = self.dir().join("probe");
            if self.socket().exists() && self.docker(&probe).arg("version").output().success() {
                return;
            }
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "dockerd not ready after {READY_TIMEOUT:?}; log:\n{}",
                tail_lines(&self.log(), 50)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of the containerd dockerd started, from its pid file, while that process is
    /// still the one whose command line names this daemon's exec root.
    fn containerd_pid(&self) -> Option<libc::pid_t> {
        let exec = self.dir().join("exec/containerd");
        let pid: libc::pid_t = fs::read_to_string(exec.join("containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = String::from_utf8_lossy(&cmdline).contains(&*exec.to_string_lossy());
        ours.then_some(pid)
    }

    /// SIGTERM, then SIGKILL once dockerd logged "Daemon shutdown complete" (it then only
    /// retries its containerd connection for a few seconds) or after [`STOP_TIMEOUT`]. The
    /// managed containerd is killed by its pid (it also dies with dockerd by itself).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill has no memory preconditions; pid is our own child (unshare exec'd
            // into sh, then dockerd: same process).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None))
            && !self.log().contains("Daemon shutdown complete")
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        if let Some(pid) = self.containerd_pid() {
            // SAFETY: as above; the pid is (still) the containerd our dockerd started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("===== dockerd log =====\n{}", tail_lines(&self.log(), 60));
        }
        keep_or_remove(self.dir.take());
    }
}
