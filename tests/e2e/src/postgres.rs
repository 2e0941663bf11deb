//! A throwaway PostgreSQL cluster from `scripts/postgres` (fsync off, a free 127.0.0.1 port), for
//! the replica tests: [`Postgres::halt`] and [`Postgres::resume`] take it away and bring it back
//! on the same port and data; it is stopped and removed when dropped.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::server::workspace_root;

/// A running cluster with an empty database `berth`.
pub struct Postgres {
    dir: TempDir,
    url: String,
}

impl Postgres {
    /// Starts a fresh cluster (about 0.3 s once the template exists).
    pub fn start() -> Postgres {
        // The parent must be reachable by the `postgres` user the script switches to as root.
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-pg-")
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .expect("temp dir");
        let url = script(&["start", &data(&dir)]);
        Postgres { dir, url }
    }

    /// `postgres://postgres@127.0.0.1:PORT/berth`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fast shutdown: connected clients are terminated, new ones refused. Data and port kept.
    pub fn halt(&self) {
        script(&["halt", &data(&self.dir)]);
    }

    /// Starts the halted cluster again on the same port and data.
    pub fn resume(&self) {
        script(&["start", &data(&self.dir)]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script_path())
            .args(["stop", &data(&self.dir)])
            .output();
    }
}

fn data(dir: &TempDir) -> String {
    dir.path().join("pg").display().to_string()
}

fn script_path() -> PathBuf {
    workspace_root().join("scripts/postgres")
}

/// Runs `scripts/postgres ARGS` to success; its trimmed stdout.
fn script(args: &[&str]) -> String {
    let out = Command::new(script_path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("scripts/postgres {args:?}: {e}"));
    assert!(
        out.status.success(),
        "scripts/postgres {args:?} failed (is PostgreSQL installed? run scripts/install-test-deps):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
