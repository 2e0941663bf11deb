//! A private containerd daemon per test (COOKBOOK §5): its own root, state and socket, CRI
//! disabled, stopped (and its mounts cleaned up) on drop.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::cmd::{require_tool, Cmd};
use crate::server::{die_with_parent, keep_or_remove, tail_lines};

/// A running containerd.
pub struct Containerd {
    dir: Option<TempDir>,
    child: Option<Child>,
}

impl Containerd {
    /// Starts containerd and waits until `ctr version` answers.
    pub fn start() -> Containerd {
        let bin = require_tool("containerd");
        require_tool("ctr");
        crate::cmd::require_root("containerd");
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-ctd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
            opt = d.join("opt").display(),
        );
        fs::write(d.join("config.toml"), config).expect("write containerd config");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("containerd.log"))
            .expect("log");
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start containerd");
        let mut c = Containerd {
            dir: Some(dir),
            child: Some(child),
        };
        c.wait_ready();
        c
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("containerd exited early ({st}); log:\n{}", self.log());
            }
            if self.socket().exists() && self.ctr("default").arg("version").output().success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "containerd not ready after 10 s; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The temp dir holding root, state, socket and log.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("containerd dir").path()
    }

    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    /// The daemon log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr -a <socket> -n <namespace>`.
    pub fn ctr(&self, namespace: &str) -> Cmd {
        Cmd::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", namespace])
    }

    fn unmount_leftovers(&self) {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.dir().display().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).status();
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first so containerd closes its bolt databases, SIGKILL if it lingers.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            eprintln!(
                "===== containerd log =====\n{}",
                tail_lines(&self.log(), 100)
            );
        }
        self.unmount_leftovers();
        keep_or_remove(self.dir.take());
    }
}
