//! Test images, built with umoci into one OCI layout that every test binary shares.
//!
//! The layout is built once under an exclusive `flock` (so parallel test processes, as with
//! cargo-nextest, build it once) into `$E2E_FIXTURES_DIR` or `$TMPDIR/berth-e2e-fixtures`, and
//! reused until [`FIXTURES_VERSION`] changes. Tests only ever read it.
//!
//! Tags in the layout:
//! - `small`: linux/amd64, 2 layers (`/hello.txt`, `/data/small.bin` 64 KiB random)
//! - `arm`: linux/arm64, 1 layer (`/hello.txt`)
//! - `multi`: linux/amd64, 3 layers, one of them a 50 MiB random file `/big.bin`
//! - `idx`: an OCI image index over `small` (amd64) and `arm` (arm64)

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::cmd::Cmd;

/// Bump when the recipe below changes, so stale caches are not reused.
pub const FIXTURES_VERSION: u32 = 1;
/// `/hello.txt` in the amd64 images.
pub const HELLO_AMD64: &str = "hello from berth e2e (linux/amd64)\n";
/// `/hello.txt` in the arm64 image.
pub const HELLO_ARM64: &str = "hello from berth e2e (linux/arm64)\n";
/// Size of `/big.bin` in `multi`.
pub const BIG_SIZE: usize = 50 << 20;

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// `sha256:<hex>` of a file's contents, streamed.
pub fn file_digest(path: &Path) -> String {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    File::open("/dev/urandom")
        .expect("urandom")
        .take(n as u64)
        .read_to_end(&mut v)
        .expect("read urandom");
    v
}

/// Reads a JSON file.
pub fn read_json(p: &Path) -> Value {
    let b = fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/...`).
#[derive(Debug, Clone)]
pub struct OciLayout {
    /// The layout directory.
    pub dir: PathBuf,
}

impl OciLayout {
    /// Wraps an existing layout directory.
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        assert!(
            dir.join("index.json").is_file(),
            "{} is not an OCI layout",
            dir.display()
        );
        OciLayout { dir }
    }

    /// The skopeo/podman transport reference `oci:<dir>:<tag>`.
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }

    /// The `index.json` descriptor for `tag`.
    pub fn descriptor(&self, tag: &str) -> Value {
        let idx = read_json(&self.dir.join("index.json"));
        idx["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .cloned()
            .unwrap_or_else(|| panic!("tag {tag} not in {}/index.json: {idx}", self.dir.display()))
    }

    /// The manifest (or index) digest of `tag`.
    pub fn digest(&self, tag: &str) -> String {
        self.descriptor(tag)["digest"]
            .as_str()
            .expect("digest")
            .to_string()
    }

    /// Path of a blob.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not sha256: {digest}"));
        self.dir.join("blobs/sha256").join(hex)
    }

    /// The bytes of a blob.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let p = self.blob_path(digest);
        fs::read(&p).unwrap_or_else(|e| panic!("read blob {}: {e}", p.display()))
    }

    /// The raw manifest bytes of `tag`.
    pub fn manifest_bytes(&self, tag: &str) -> Vec<u8> {
        self.blob(&self.digest(tag))
    }

    /// A blob parsed as JSON.
    pub fn blob_json(&self, digest: &str) -> Value {
        read_json(&self.blob_path(digest))
    }

    /// The parsed manifest of `tag`.
    pub fn manifest(&self, tag: &str) -> Value {
        self.blob_json(&self.digest(tag))
    }

    /// Every blob digest an image manifest references (config first, then layers).
    pub fn image_blobs(&self, manifest_digest: &str) -> Vec<String> {
        let m = self.blob_json(manifest_digest);
        let mut v = vec![m["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_string()];
        v.extend(layer_digests(&m));
        v
    }
}

/// The layer digests of a parsed image manifest.
pub fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .expect("layers array")
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_string())
        .collect()
}

/// Unpacks `tag` of an OCI layout into `dest` with umoci and returns `dest`.
pub fn unpack_rootfs(layout: &Path, tag: &str, dest: &Path) -> PathBuf {
    Cmd::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dest)
        .run();
    dest.to_path_buf()
}

/// The shared fixture images.
#[derive(Debug)]
pub struct Images {
    /// The layout holding every tag.
    pub layout: OciLayout,
    big_digest: String,
}

impl Images {
    /// `sha256:` digest of the uncompressed `/big.bin` inside `multi`.
    pub fn big_file_digest(&self) -> &str {
        &self.big_digest
    }

    /// `oci:<layout>:<tag>`.
    pub fn reference(&self, tag: &str) -> String {
        self.layout.reference(tag)
    }
}

/// Builds (once per machine and [`FIXTURES_VERSION`]) and returns the fixture images.
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let root = std::env::var_os("E2E_FIXTURES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("berth-e2e-fixtures"));
        fs::create_dir_all(&root).expect("fixtures root");
        let done = root.join(format!("v{FIXTURES_VERSION}"));
        let lock = File::create(root.join(format!("v{FIXTURES_VERSION}.lock"))).expect("lock file");
        // SAFETY: plain flock on a file descriptor we own; released when `lock` is closed.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock fixtures lock");
        if !done.join("READY").is_file() {
            let tmp = root.join(format!("v{FIXTURES_VERSION}.tmp.{}", std::process::id()));
            let _ = fs::remove_dir_all(&tmp);
            let _ = fs::remove_dir_all(&done);
            build_all(&tmp);
            fs::write(tmp.join("READY"), b"ok").expect("READY marker");
            fs::rename(&tmp, &done).expect("publish fixtures");
        }
        drop(lock);
        let big_digest = fs::read_to_string(done.join("big.sha256")).expect("big.sha256");
        Images {
            layout: OciLayout::open(done.join("layout")),
            big_digest,
        }
    })
}

fn build_all(dir: &Path) {
    let files = dir.join("files");
    fs::create_dir_all(files.join("data")).expect("files dir");
    let layout = dir.join("layout");
    let l = layout.display().to_string();
    let write = |name: &str, data: &[u8]| {
        let p = files.join(name);
        fs::write(&p, data).expect("write fixture file");
        p
    };
    let hello_amd = write("hello-amd64.txt", HELLO_AMD64.as_bytes());
    let hello_arm = write("hello-arm64.txt", HELLO_ARM64.as_bytes());
    let small = write("data/small.bin", &random_bytes(64 << 10));
    let big_data = random_bytes(BIG_SIZE);
    fs::write(dir.join("big.sha256"), sha256_digest(&big_data)).expect("big.sha256");
    let big = write("big.bin", &big_data);
    drop(big_data);
    let motd = write("motd", b"Berth e2e multi-layer image\n");

    Cmd::new("umoci").args(["init", "--layout", &l]).run();
    let image = |tag: &str, arch: &str, inserts: &[(&Path, &str)]| {
        let img = format!("{l}:{tag}");
        Cmd::new("umoci").args(["new", "--image", &img]).run();
        for (src, dst) in inserts {
            Cmd::new("umoci")
                .args(["insert", "--image", &img])
                .arg(src)
                .arg(dst)
                .run();
        }
        Cmd::new("umoci")
            .args([
                "config",
                "--image",
                &img,
                "--os",
                "linux",
                "--architecture",
                arch,
            ])
            .args([
                "--config.entrypoint",
                "/hello",
                "--config.label",
                &format!("org.berth.e2e={tag}"),
            ])
            .run();
    };
    image(
        "small",
        "amd64",
        &[(&hello_amd, "/hello.txt"), (&small, "/data/small.bin")],
    );
    image("arm", "arm64", &[(&hello_arm, "/hello.txt")]);
    image(
        "multi",
        "amd64",
        &[
            (&hello_amd, "/hello.txt"),
            (&big, "/big.bin"),
            (&motd, "/etc/motd"),
        ],
    );
    Cmd::new("umoci").args(["gc", "--layout", &l]).run();
    add_index(&layout, "idx", &["small", "arm"]);
    fs::remove_dir_all(&files).expect("remove fixture sources");
}

/// Adds an OCI image index tagged `new_tag` over the manifests of `tags` to a layout
/// (the Rust port of the testkit's mkindex.sh). Returns the index digest.
pub fn add_index(layout: &Path, new_tag: &str, tags: &[&str]) -> String {
    let lay = OciLayout::open(layout);
    let entries: Vec<Value> = tags
        .iter()
        .map(|t| {
            let d = lay.descriptor(t);
            let m = lay.blob_json(d["digest"].as_str().expect("digest"));
            let cfg = lay.blob_json(m["config"]["digest"].as_str().expect("config digest"));
            json!({
                "mediaType": OCI_MANIFEST,
                "digest": d["digest"],
                "size": d["size"],
                "platform": {"architecture": cfg["architecture"], "os": cfg["os"]},
            })
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    let bytes = serde_json::to_vec(&index).expect("serialize index");
    let digest = sha256_digest(&bytes);
    fs::write(lay.blob_path(&digest), &bytes).expect("write index blob");
    let index_path = layout.join("index.json");
    let mut top = read_json(&index_path);
    top["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(json!({
            "mediaType": OCI_INDEX,
            "digest": digest,
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": new_tag},
        }));
    fs::write(
        &index_path,
        serde_json::to_vec(&top).expect("serialize index.json"),
    )
    .expect("write index.json");
    digest
}

/// Reads every file of a skopeo `dir:` destination: `manifest.json` and the blobs, which are
/// named by their hex digest.
pub fn dir_blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join(digest.strip_prefix("sha256:").expect("sha256 digest"))
}

/// Asserts two byte strings are equal, reporting sizes and digests instead of the bytes.
#[track_caller]
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        panic!(
            "{what}: bytes differ: got {} bytes ({}), want {} bytes ({})",
            got.len(),
            sha256_digest(got),
            want.len(),
            sha256_digest(want)
        );
    }
}
