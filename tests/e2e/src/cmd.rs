//! Running external client binaries with a timeout and failure messages that say everything:
//! the command line, the exit status, stdout and stderr.
//!
//! A missing binary is a test failure (never a skip) whose message points at
//! `scripts/install-test-deps`.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Default per-command limit; override with `E2E_CMD_TIMEOUT` (seconds).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// Finds `name` on `PATH` (or accepts an existing path) and panics with an install hint if it is
/// missing.
pub fn require_tool(name: &str) -> PathBuf {
    if name.contains('/') {
        let p = PathBuf::from(name);
        assert!(
            p.is_file(),
            "{name} does not exist: run scripts/install-test-deps"
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("required client `{name}` is not installed (not on PATH): run scripts/install-test-deps")
        })
}

/// Panics unless running as root: private mount namespaces (`unshare -m`), containerd and the
/// podman/buildah stores all need it.
pub fn require_root(why: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the e2e suite must run as root ({why}); run it with sudo or in a root container"
    );
}

/// The captured result of a finished command.
#[derive(Debug)]
pub struct Output {
    /// The command line as it was run, for messages.
    pub cmdline: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl Output {
    /// True when the process exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// A full description for assertion messages.
    pub fn describe(&self) -> String {
        let status = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "unknown status".to_string(),
        };
        let mut s = String::new();
        let _ = write!(
            s,
            "command: {}\nstatus: {status} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.elapsed,
            tail(&self.stdout, 8000),
            tail(&self.stderr, 8000)
        );
        s
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A command builder: `Cmd::new("skopeo").args([...]).run()`.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    display: String,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
    /// Leading wrapper arguments left out of `cmdline()`.
    hidden: usize,
}

impl Cmd {
    /// A command for `program`, which must be installed.
    pub fn new(program: &str) -> Self {
        let timeout = std::env::var("E2E_CMD_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        Cmd {
            program: require_tool(program),
            display: program.to_string(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            timeout,
            stdin: None,
            hidden: 0,
        }
    }

    /// A containers/image client (skopeo, podman, buildah) run in a private mount namespace
    /// whose `/var/lib/containers/cache` is the given directory. The blob-info cache is then
    /// private to whoever owns `cache_dir`: runs with different directories never see each
    /// other's cached blob locations (no surprise cross-repo mounts), runs with the same
    /// directory share them (deliberate mounts).
    pub fn containers(program: &str, cache_dir: &Path) -> Self {
        require_root("a private blob-info cache needs `unshare -m`");
        std::fs::create_dir_all(cache_dir).expect("create blob-info cache dir");
        let script = "mkdir -p /var/lib/containers/cache && \
                      mount --bind \"$0\" /var/lib/containers/cache && exec \"$@\"";
        Cmd::unshared(program, script, cache_dir)
    }

    /// `program` run as `unshare -m sh -c SCRIPT ARG0 PROGRAM ARGS...`: in a private mount
    /// namespace that `script` sets up (its `$0` is `arg0`) before it ends with `exec "$@"`.
    /// Messages show `program ARGS...` only.
    pub fn unshared(program: &str, script: &str, arg0: &Path) -> Self {
        let real = require_tool(program);
        let mut c = Cmd::new("unshare");
        c.display = program.to_string();
        c.args = vec!["-m".into(), "sh".into(), "-c".into(), script.into()];
        c.args.push(arg0.as_os_str().to_owned());
        c.args.push(real.into_os_string());
        c.hidden = c.args.len();
        c
    }

    /// Appends one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Self {
        self.envs.push((k.as_ref().to_owned(), None));
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, d: impl AsRef<Path>) -> Self {
        self.cwd = Some(d.as_ref().to_owned());
        self
    }

    /// Overrides the time limit.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Feeds these bytes on stdin.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// The command line, shell-quoted for readability.
    pub fn cmdline(&self) -> String {
        let mut parts = vec![self.display.clone()];
        parts.extend(
            self.args
                .iter()
                .skip(self.hidden)
                .map(|a| quote(&a.to_string_lossy())),
        );
        parts.join(" ")
    }

    /// Runs to completion (or the time limit) and returns the output whatever the status.
    pub fn output(&self) -> Output {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", self.cmdline()));
        if let (Some(data), Some(mut pipe)) = (self.stdin.clone(), child.stdin.take()) {
            thread::spawn(move || {
                use std::io::Write;
                let _ = pipe.write_all(&data);
            });
        }
        let out = reader(child.stdout.take().expect("stdout pipe"));
        let err = reader(child.stderr.take().expect("stderr pipe"));
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait for child") {
                break st;
            }
            if start.elapsed() > self.timeout {
                // Kill the whole process group: wrappers (unshare, sh) and their children.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                panic!(
                    "command timed out after {:?}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.timeout,
                    self.cmdline(),
                    collect(&out, &child),
                    collect(&err, &child)
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        Output {
            cmdline: self.cmdline(),
            status,
            stdout: collect(&out, &child),
            stderr: collect(&err, &child),
            elapsed: start.elapsed(),
        }
    }

    /// Runs and panics with the full description unless the exit status is 0.
    #[track_caller]
    pub fn run(&self) -> Output {
        let o = self.output();
        assert!(o.success(), "command failed\n{}", o.describe());
        o
    }

    /// Runs and returns trimmed stdout; panics unless the exit status is 0.
    #[track_caller]
    pub fn stdout(&self) -> String {
        self.run().stdout.trim().to_string()
    }

    /// Runs and panics unless the command FAILS; returns the output for further checks.
    #[track_caller]
    pub fn run_fail(&self) -> Output {
        let o = self.output();
        assert!(
            !o.success(),
            "command unexpectedly succeeded\n{}",
            o.describe()
        );
        o
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// The output of a pipe reader once the command has exited. A leftover grandchild that still
/// holds the pipe open would block forever: after a grace period the command's process group
/// (still alive, since it holds the pipe) is killed.
fn collect(rx: &mpsc::Receiver<String>, child: &Child) -> String {
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| {
            // SAFETY: signals only our own command's process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
        })
}

fn quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_failures_with_details() {
        let o = Cmd::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output();
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(o.stdout.trim(), "out");
        let d = o.describe();
        assert!(
            d.contains("exit code 3") && d.contains("err") && d.contains("sh -c"),
            "{d}"
        );
    }

    #[test]
    #[should_panic(expected = "timed out")]
    fn timeout_kills() {
        Cmd::new("sleep")
            .arg("5")
            .timeout(Duration::from_millis(200))
            .output();
    }

    #[test]
    #[should_panic(expected = "scripts/install-test-deps")]
    fn missing_tool_fails_loudly() {
        require_tool("definitely-not-a-real-client-xyz");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(
            quote("docker://127.0.0.1:5000/x:v1"),
            "docker://127.0.0.1:5000/x:v1"
        );
    }
}
