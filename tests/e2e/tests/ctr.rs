//! containerd 1.6 through `ctr`, with a private daemon per test: pull (single image, all
//! platforms, one platform), tag, push to another repository, pull it back; digests, content
//! and file contents are compared with the fixtures.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::BTreeSet;
use std::fs;

use berth_e2e::fixtures::{HELLO_AMD64, HELLO_ARM64};
use berth_e2e::{images, sha256_digest, Containerd, Server, TestDir};

/// `skopeo copy` a fixture tag into the registry.
fn seed(t: &TestDir, s: &Server, tag: &str, name: &str, all: bool) {
    let mut c = t
        .skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if all {
        c = c.arg("--all");
    }
    c.arg(images().reference(tag))
        .arg(format!("docker://{}/{name}", s.addr()))
        .run();
}

/// The DIGEST column of `ctr images ls` for `reference`.
fn image_digest(c: &Containerd, ns: &str, reference: &str) -> String {
    let ls = c.ctr(ns).args(["images", "ls"]).stdout();
    let line = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some(reference))
        .unwrap_or_else(|| panic!("{reference} not in `ctr images ls`:\n{ls}"));
    line.split_whitespace()
        .nth(2)
        .expect("digest column")
        .to_string()
}

/// The digests in namespace `ns`'s content store.
fn content(c: &Containerd, ns: &str) -> BTreeSet<String> {
    c.ctr(ns)
        .args(["content", "ls", "-q"])
        .stdout()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Mounts the image's rootfs and reads one file.
fn read_file(
    c: &Containerd,
    t: &TestDir,
    ns: &str,
    reference: &str,
    platform: &str,
    path: &str,
) -> String {
    let target = t.join(format!("mnt-{ns}"));
    fs::create_dir_all(&target).unwrap();
    c.ctr(ns)
        .args(["images", "mount", "--platform", platform, reference])
        .arg(&target)
        .run();
    let data = fs::read_to_string(target.join(path));
    c.ctr(ns).args(["images", "unmount"]).arg(&target).run();
    data.unwrap_or_else(|e| panic!("{path} in {reference}: {e}"))
}

#[test]
fn pull_tag_push_and_pull_back() {
    let (s, t, img) = (Server::start(), TestDir::new("ctr-single"), images());
    let want = img.layout.digest("small");
    seed(&t, &s, "small", "ctr/small:v1", false);
    let c = Containerd::start();

    let src = format!("{}/ctr/small:v1", s.addr());
    c.ctr("e2e")
        .args(["images", "pull", "--plain-http", &src])
        .run();
    assert_eq!(image_digest(&c, "e2e", &src), want);
    let manifest = c.ctr("e2e").args(["content", "get", &want]).run().stdout;
    assert_eq!(
        manifest.as_bytes(),
        img.layout.manifest_bytes("small").as_slice()
    );
    let expected: BTreeSet<String> = std::iter::once(want.clone())
        .chain(img.layout.image_blobs(&want))
        .collect();
    assert_eq!(content(&c, "e2e"), expected);
    assert_eq!(
        read_file(&c, &t, "e2e", &src, "linux/amd64", "hello.txt"),
        HELLO_AMD64
    );

    // Tag and push into another repository (ctr tries a cross-repo mount, then a plain upload).
    let dst = format!("{}/ctr/pushed:v2", s.addr());
    c.ctr("e2e").args(["images", "tag", &src, &dst]).run();
    c.ctr("e2e")
        .args(["images", "push", "--plain-http", &dst])
        .run();
    assert_eq!(
        sha256_digest(t.inspect_raw(&s, "ctr/pushed:v2").as_bytes()),
        want
    );
    for d in img.layout.image_blobs(&want) {
        assert_eq!(
            s.blob_status("ctr/pushed", &d),
            200,
            "blob {d} in ctr/pushed"
        );
    }
    assert_eq!(s.tags("ctr/pushed").unwrap(), ["v2"]);

    // A fresh namespace pulls the pushed copy.
    c.ctr("back")
        .args(["images", "pull", "--plain-http", &dst])
        .run();
    assert_eq!(image_digest(&c, "back", &dst), want);
    assert_eq!(content(&c, "back"), expected);
    assert_eq!(
        read_file(&c, &t, "back", &dst, "linux/amd64", "hello.txt"),
        HELLO_AMD64
    );
}

#[test]
fn all_platforms_index_roundtrip() {
    let (s, t, img) = (Server::start(), TestDir::new("ctr-index"), images());
    let (idx, amd, arm) = (
        img.layout.digest("idx"),
        img.layout.digest("small"),
        img.layout.digest("arm"),
    );
    seed(&t, &s, "idx", "ctr/idx:v1", true);
    let c = Containerd::start();

    let src = format!("{}/ctr/idx:v1", s.addr());
    c.ctr("all")
        .args(["images", "pull", "--plain-http", "--all-platforms", &src])
        .run();
    assert_eq!(image_digest(&c, "all", &src), idx);
    let mut expected: BTreeSet<String> = [idx.clone(), amd.clone(), arm.clone()].into();
    expected.extend(img.layout.image_blobs(&amd));
    expected.extend(img.layout.image_blobs(&arm));
    assert_eq!(content(&c, "all"), expected);
    assert_eq!(
        read_file(&c, &t, "all", &src, "linux/arm64", "hello.txt"),
        HELLO_ARM64
    );

    // Push the whole index to a new repository.
    let dst = format!("{}/ctr/idx-copy:v1", s.addr());
    c.ctr("all").args(["images", "tag", &src, &dst]).run();
    c.ctr("all")
        .args(["images", "push", "--plain-http", &dst])
        .run();
    assert_eq!(
        sha256_digest(t.inspect_raw(&s, "ctr/idx-copy:v1").as_bytes()),
        idx
    );
    for child in [&amd, &arm] {
        let r = s.get_manifest("ctr/idx-copy", child);
        assert_eq!(r.status, 200, "{}", r.describe());
        berth_e2e::assert_bytes_eq(&r.body, &img.layout.blob(child), child);
    }

    // One platform out of the pushed copy: exactly the index plus the arm64 image.
    c.ctr("arm")
        .args([
            "images",
            "pull",
            "--plain-http",
            "--platform",
            "linux/arm64",
            &dst,
        ])
        .run();
    assert_eq!(image_digest(&c, "arm", &dst), idx);
    let mut arm_only: BTreeSet<String> = [idx.clone(), arm.clone()].into();
    arm_only.extend(img.layout.image_blobs(&arm));
    assert_eq!(content(&c, "arm"), arm_only);
    assert_eq!(
        read_file(&c, &t, "arm", &dst, "linux/arm64", "hello.txt"),
        HELLO_ARM64
    );
}
