//! The harness for Berth's real-client end-to-end tests.
//!
//! Each test starts its own registry ([`Server`]: Berth, or Distribution 2.8.2 with
//! `E2E_TARGET=distribution`) on a free 127.0.0.1 port with fresh storage, drives it with a real
//! client (skopeo, podman, buildah, ctr, Docker Engine, the ORAS and Helm Python SDKs, the Rust
//! `oci-client`) and checks real outcomes: digests, bytes, tag lists, 404s. Everything the test
//! starts is killed when its guard drops.
//!
//! Nothing is skipped silently: a missing client binary fails the test with a pointer to
//! `scripts/install-test-deps`. The permitted gates are [`target_supports_referrers`] and
//! [`target_reloads_certificates`], for what Distribution 2.8.2 cannot do (both are always true
//! for Berth). Assertions on Berth's own log lines are made only when the target is Berth.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

pub mod cmd;
pub mod containerd;
pub mod docker;
pub mod fixtures;
pub mod http;
pub mod nginx;
pub mod postgres;
pub mod prom;
pub mod raw;
pub mod server;
pub mod tls;
pub mod webhook;

use std::path::{Path, PathBuf};

use tempfile::TempDir;

pub use cmd::{require_root, require_tool, Cmd, Output};
pub use containerd::Containerd;
pub use docker::Dockerd;
pub use fixtures::{
    assert_bytes_eq, file_digest, images, layer_digests, random_bytes, read_json, sha256_digest,
    unpack_rootfs, Images, OciLayout, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
pub use server::{
    target_reloads_certificates, target_supports_referrers, workspace_root, Server, ServerOptions,
    Target,
};

/// A per-test scratch directory that also owns the test's private containers/image state
/// (blob-info cache, podman/buildah storage). Removed on drop (kept with `E2E_KEEP=1` when the
/// test fails).
pub struct TestDir {
    dir: Option<TempDir>,
}

impl TestDir {
    /// A fresh scratch directory; `name` shows up in its path for post-mortems.
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-e2e-{name}-"))
            .tempdir()
            .expect("temp dir");
        TestDir { dir: Some(dir) }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("test dir").path()
    }

    /// A path inside the directory.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path().join(p)
    }

    /// `skopeo` with this test's private blob-info cache.
    pub fn skopeo(&self) -> Cmd {
        Cmd::containers("skopeo", &self.join("bic"))
    }

    /// Global flags for a private containers/storage store named `store` (vfs driver).
    fn store_flags(&self, store: &str) -> Vec<String> {
        let s = self.join(store);
        vec![
            format!("--root={}", s.join("root").display()),
            format!("--runroot={}", s.join("run").display()),
            "--storage-driver=vfs".into(),
        ]
    }

    /// `podman` on a private store (own root, runroot, tmpdir, blob-info cache).
    pub fn podman(&self, store: &str) -> Cmd {
        let s = self.join(store);
        Cmd::containers("podman", &s.join("bic"))
            .args(self.store_flags(store))
            .arg(format!("--tmpdir={}", s.join("tmp").display()))
            .args(["--events-backend=none", "--cgroup-manager=cgroupfs"])
    }

    /// `buildah` on a private store.
    pub fn buildah(&self, store: &str) -> Cmd {
        let s = self.join(store);
        Cmd::containers("buildah", &s.join("bic")).args(self.store_flags(store))
    }

    /// Builds a two-platform (linux/amd64, linux/arm64) manifest list with `buildah bud` into
    /// store `store` and returns its local name. Each image has one layer whose `/hello.txt` is
    /// [`fixtures::HELLO_AMD64`] or [`fixtures::HELLO_ARM64`]. Push it with
    /// `buildah manifest push --all --format v2s2|oci`.
    pub fn build_manifest_list(&self, store: &str) -> String {
        let ctx = self.join(format!("{store}-ctx"));
        std::fs::create_dir_all(&ctx).expect("build context");
        std::fs::write(ctx.join("hello-amd64.txt"), fixtures::HELLO_AMD64).expect("write");
        std::fs::write(ctx.join("hello-arm64.txt"), fixtures::HELLO_ARM64).expect("write");
        let containerfile =
            "FROM scratch\nARG TARGETARCH\nCOPY hello-${TARGETARCH}.txt /hello.txt\n";
        std::fs::write(ctx.join("Containerfile"), containerfile).expect("write");
        let name = "localhost/berth-e2e-list:v1";
        // --no-cache: otherwise the arm64 build reuses the amd64 scratch layers (COOKBOOK §1).
        self.buildah(store)
            .args([
                "bud",
                "-q",
                "--no-cache",
                "--isolation",
                "chroot",
                "--platform",
                "linux/amd64,linux/arm64",
            ])
            .args(["--manifest", name])
            .arg(&ctx)
            .run();
        name.to_string()
    }

    /// The skopeo `--raw` manifest of `docker://<host>/<name>` as the registry serves it.
    pub fn inspect_raw(&self, server: &Server, name: &str) -> String {
        self.skopeo()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{name}", server.addr()))
            .run()
            .stdout
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        server::keep_or_remove(self.dir.take());
    }
}

/// The Python interpreter of the test venv: `E2E_PYTHON`, else `<workspace>/.venv/bin/python`.
pub fn venv_python() -> PathBuf {
    if let Some(p) = std::env::var_os("E2E_PYTHON") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/install-test-deps (it creates the venv with oras and helm-python-sdk)",
        p.display()
    );
    p
}

/// Runs `tests/e2e/py/<script>` with the venv's Python in `cwd`; panics with the whole output
/// on a non-zero exit.
pub fn run_python(script: &str, args: &[&str], cwd: &Path) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join(script);
    assert!(path.is_file(), "missing {}", path.display());
    let py = venv_python();
    let out = Cmd::new(py.to_str().expect("utf-8 path"))
        .arg(&path)
        .args(args)
        .current_dir(cwd)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output();
    assert!(
        out.success(),
        "{script} failed (if it is an ImportError, run scripts/install-test-deps)\n{}",
        out.describe()
    );
    out
}
