//! skopeo 1.9 (containers/image) against the registry: copy in and out of OCI layouts and
//! `dir:`, multi-arch indexes with `--all`, docker v2s2 conversion, inspect, list-tags, sync,
//! delete, a 50 MiB layer, cross-repo blob mounts and a zstd push of unknown length.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fs;
use std::path::Path;

use berth_e2e::fixtures::{dir_blob, BIG_SIZE, HELLO_AMD64};
use berth_e2e::{
    assert_bytes_eq, file_digest, images, layer_digests, read_json, sha256_digest, unpack_rootfs,
    OciLayout, Server, TestDir, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use serde_json::Value;

/// `skopeo copy --dest-tls-verify=false [extra] SRC docker://HOST/NAME`.
fn push(t: &TestDir, s: &Server, src: &str, name: &str, extra: &[&str]) {
    t.skopeo()
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .args(extra)
        .arg(src)
        .arg(format!("docker://{}/{name}", s.addr()))
        .run();
}

/// `skopeo copy --src-tls-verify=false [extra] docker://HOST/NAME DEST`.
fn pull(t: &TestDir, s: &Server, name: &str, dest: &str, extra: &[&str]) {
    t.skopeo()
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{}/{name}", s.addr()))
        .arg(dest)
        .run();
}

fn inspect(t: &TestDir, s: &Server, name: &str, extra: &[&str]) -> String {
    t.skopeo()
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{}/{name}", s.addr()))
        .run()
        .stdout
}

fn inspect_json(t: &TestDir, s: &Server, name: &str, extra: &[&str]) -> Value {
    serde_json::from_str(&inspect(t, s, name, extra)).expect("skopeo inspect prints JSON")
}

/// Every blob in a skopeo `dir:` is named by its digest and hashes to it; the manifest matches.
fn assert_dir_matches(dir: &Path, manifest: &[u8]) {
    assert_eq!(
        fs::read(dir.join("manifest.json")).expect("manifest.json"),
        manifest,
        "dir: manifest bytes"
    );
    let m: Value = serde_json::from_slice(manifest).expect("manifest JSON");
    let mut blobs = layer_digests(&m);
    blobs.push(
        m["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_string(),
    );
    for d in blobs {
        assert_eq!(
            file_digest(&dir_blob(dir, &d)),
            d,
            "blob {d} in {}",
            dir.display()
        );
    }
}

#[test]
fn copy_layout_to_registry_and_back() {
    let (s, t, img) = (Server::start(), TestDir::new("skopeo-rt"), images());
    let want = img.layout.digest("small");
    push(&t, &s, &img.reference("small"), "skopeo/small:v1", &[]);

    // The registry stores the manifest byte-exact (umoci's manifests carry no mediaType field,
    // so the registry must go by the Content-Type of the PUT).
    let raw = t.inspect_raw(&s, "skopeo/small:v1");
    assert_eq!(sha256_digest(raw.as_bytes()), want);
    assert_eq!(
        raw.as_bytes(),
        img.layout.manifest_bytes("small").as_slice()
    );
    let r = s.get_manifest("skopeo/small", "v1");
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.header("docker-content-digest"),
        Some(want.as_str()),
        "{}",
        r.describe()
    );
    assert_eq!(
        r.header("content-type"),
        Some(OCI_MANIFEST),
        "{}",
        r.describe()
    );

    // Back into an OCI layout: same digest, same blobs, same files.
    pull(
        &t,
        &s,
        "skopeo/small:v1",
        &format!("oci:{}:v1", t.join("out").display()),
        &[],
    );
    let out = OciLayout::open(t.join("out"));
    assert_eq!(out.digest("v1"), want);
    for d in img.layout.image_blobs(&want) {
        assert_bytes_eq(&out.blob(&d), &img.layout.blob(&d), &format!("blob {d}"));
    }
    let root = unpack_rootfs(&out.dir, "v1", &t.join("rootfs"));
    assert_eq!(
        fs::read_to_string(root.join("hello.txt")).unwrap(),
        HELLO_AMD64
    );
    assert_eq!(
        fs::read(root.join("data/small.bin")).unwrap().len(),
        64 << 10
    );

    // And into dir:, with the manifest untouched.
    pull(
        &t,
        &s,
        "skopeo/small:v1",
        &format!("dir:{}", t.join("dir").display()),
        &[],
    );
    assert_dir_matches(&t.join("dir"), &img.layout.manifest_bytes("small"));
}

#[test]
fn copy_all_multi_arch_index() {
    let (s, t, img) = (Server::start(), TestDir::new("skopeo-idx"), images());
    let (idx, amd, arm) = (
        img.layout.digest("idx"),
        img.layout.digest("small"),
        img.layout.digest("arm"),
    );
    push(&t, &s, &img.reference("idx"), "skopeo/idx:v1", &["--all"]);

    let raw = t.inspect_raw(&s, "skopeo/idx:v1");
    assert_eq!(sha256_digest(raw.as_bytes()), idx);
    let parsed: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(parsed["mediaType"], OCI_INDEX);
    for child in [&amd, &arm] {
        let r = s.get_manifest("skopeo/idx", child);
        assert_eq!(r.status, 200, "child {child}: {}", r.describe());
        assert_bytes_eq(&r.body, &img.layout.blob(child), &format!("child {child}"));
    }

    // Platform resolution through the index (skopeo reports the index digest as "Digest" and
    // the chosen platform's layers and labels).
    for (arch, child, label) in [("arm64", &arm, "arm"), ("amd64", &amd, "small")] {
        let i = inspect_json(&t, &s, "skopeo/idx:v1", &["--override-arch", arch]);
        assert_eq!(i["Digest"], idx.as_str(), "{i}");
        assert_eq!(
            (
                i["Architecture"].as_str(),
                i["Labels"]["org.berth.e2e"].as_str()
            ),
            (Some(arch), Some(label)),
            "{i}"
        );
        let layers: Vec<&str> = i["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(layers, layer_digests(&img.layout.blob_json(child)), "{i}");
    }
    let cfg = inspect_json(
        &t,
        &s,
        "skopeo/idx:v1",
        &["--config", "--override-arch", "arm64"],
    );
    assert_eq!(cfg["architecture"], "arm64", "{cfg}");

    // --all back out: the whole index with both images.
    pull(
        &t,
        &s,
        "skopeo/idx:v1",
        &format!("oci:{}:idx", t.join("out").display()),
        &["--all"],
    );
    let out = OciLayout::open(t.join("out"));
    assert_eq!(out.digest("idx"), idx);
    for child in [&amd, &arm] {
        for d in img.layout.image_blobs(child) {
            assert_bytes_eq(
                &out.blob(&d),
                &img.layout.blob(&d),
                &format!("blob {d} of {child}"),
            );
        }
    }
    // One platform only, to dir:.
    pull(
        &t,
        &s,
        "skopeo/idx:v1",
        &format!("dir:{}", t.join("arm").display()),
        &["--override-arch", "arm64"],
    );
    assert_dir_matches(&t.join("arm"), &img.layout.blob(&arm));
}

#[test]
fn docker_v2s2_format() {
    let (s, t, img) = (Server::start(), TestDir::new("skopeo-v2s2"), images());
    push(
        &t,
        &s,
        &img.reference("small"),
        "skopeo/v2s2:v1",
        &["--format", "v2s2"],
    );

    let raw = t.inspect_raw(&s, "skopeo/v2s2:v1");
    let m: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["mediaType"], DOCKER_MANIFEST, "{raw}");
    assert_eq!(
        m["config"]["mediaType"], "application/vnd.docker.container.image.v1+json",
        "{raw}"
    );
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "{raw}"
        );
    }
    // Same layer blobs, relabelled.
    assert_eq!(
        layer_digests(&m),
        layer_digests(&img.layout.manifest("small"))
    );

    // A client that only accepts schema2 gets it, with a matching digest header.
    let url = format!("{}/v2/skopeo/v2s2/manifests/v1", s.url());
    let r = berth_e2e::http::get(&url, &[("Accept", DOCKER_MANIFEST)]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.header("content-type"),
        Some(DOCKER_MANIFEST),
        "{}",
        r.describe()
    );
    assert_eq!(
        r.header("docker-content-digest"),
        Some(sha256_digest(raw.as_bytes()).as_str())
    );
    assert_bytes_eq(&r.body, raw.as_bytes(), "schema2 manifest");

    pull(
        &t,
        &s,
        "skopeo/v2s2:v1",
        &format!("dir:{}", t.join("dir").display()),
        &[],
    );
    assert_dir_matches(&t.join("dir"), raw.as_bytes());
}

#[test]
fn inspect_list_tags_and_sync() {
    let (s, t, img) = (Server::start(), TestDir::new("skopeo-tags"), images());
    let small = img.layout.digest("small");
    push(&t, &s, &img.reference("small"), "skopeo/tags:v1", &[]);
    for tag in ["v2", "latest"] {
        // Registry-to-registry copy (tagging through the API).
        t.skopeo()
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{}/skopeo/tags:v1", s.addr()))
            .arg(format!("docker://{}/skopeo/tags:{tag}", s.addr()))
            .run();
    }
    push(&t, &s, &img.reference("arm"), "skopeo/tags:arm", &[]);

    let lt = t
        .skopeo()
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}/skopeo/tags", s.addr()))
        .run();
    let lt: Value = serde_json::from_str(&lt.stdout).unwrap();
    let mut tags: Vec<&str> = lt["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["arm", "latest", "v1", "v2"]);
    assert_eq!(
        s.tags("skopeo/tags").unwrap(),
        ["arm", "latest", "v1", "v2"]
    );

    let i = inspect_json(&t, &s, "skopeo/tags:v2", &[]);
    assert_eq!(i["Digest"], small.as_str(), "{i}");
    assert_eq!(
        (i["Architecture"].as_str(), i["Os"].as_str()),
        (Some("amd64"), Some("linux")),
        "{i}"
    );
    assert_eq!(i["Labels"]["org.berth.e2e"], "small", "{i}");
    let layers: Vec<&str> = i["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers, layer_digests(&img.layout.manifest("small")));
    let cfg = inspect(&t, &s, "skopeo/tags:latest", &["--config", "--raw"]);
    let cfg_digest = img.layout.manifest("small")["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sha256_digest(cfg.as_bytes()), cfg_digest);
    assert_eq!(cfg.as_bytes(), img.layout.blob(&cfg_digest).as_slice());

    // sync walks the tag list and copies every tag.
    t.skopeo()
        .args([
            "sync",
            "--all",
            "--src",
            "docker",
            "--dest",
            "dir",
            "--src-tls-verify=false",
        ])
        .arg(format!("{}/skopeo/tags", s.addr()))
        .arg(t.join("sync"))
        .run();
    let mut synced: Vec<String> = fs::read_dir(t.join("sync"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    synced.sort();
    assert_eq!(synced, ["tags:arm", "tags:latest", "tags:v1", "tags:v2"]);
    assert_dir_matches(
        &t.join("sync/tags:latest"),
        &img.layout.manifest_bytes("small"),
    );
    assert_dir_matches(&t.join("sync/tags:arm"), &img.layout.manifest_bytes("arm"));
}

#[test]
fn delete_removes_the_manifest_and_its_tags() {
    let (s, t, img) = (Server::start(), TestDir::new("skopeo-del"), images());
    let small = img.layout.digest("small");
    push(&t, &s, &img.reference("small"), "skopeo/del:a", &[]);
    push(&t, &s, &img.reference("small"), "skopeo/del:b", &[]);
    push(&t, &s, &img.reference("arm"), "skopeo/del:c", &[]);
    assert_eq!(s.tags("skopeo/del").unwrap(), ["a", "b", "c"]);

    // skopeo resolves the tag and DELETEs by digest: every tag of that digest goes.
    t.skopeo()
        .args(["delete", "--tls-verify=false"])
        .arg(format!("docker://{}/skopeo/del:a", s.addr()))
        .run();
    for reference in ["a", "b", small.as_str()] {
        let r = s.get_manifest("skopeo/del", reference);
        assert_eq!(r.status, 404, "{reference} after delete: {}", r.describe());
        assert!(
            String::from_utf8_lossy(&r.body).contains("MANIFEST_UNKNOWN"),
            "{}",
            r.describe()
        );
    }
    let o = t
        .skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/skopeo/del:b", s.addr()))
        .run_fail();
    assert!(o.stderr.contains("manifest unknown"), "{}", o.describe());
    assert_eq!(
        t.inspect_raw(&s, "skopeo/del:c").as_bytes(),
        img.layout.manifest_bytes("arm").as_slice()
    );
    assert_eq!(s.tags("skopeo/del").unwrap(), ["c"]);
}

#[test]
fn multi_layer_image_with_50_mib_layer() {
    let (s, t, img) = (Server::start(), TestDir::new("skopeo-big"), images());
    let want = img.layout.digest("multi");
    let m = img.layout.manifest("multi");
    let layers = layer_digests(&m);
    assert_eq!(layers.len(), 3);
    let big = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["size"].as_u64().unwrap() >= BIG_SIZE as u64);
    let big = big.expect("a layer of at least 50 MiB")["digest"]
        .as_str()
        .unwrap()
        .to_string();

    push(&t, &s, &img.reference("multi"), "skopeo/big:v1", &[]);
    assert_eq!(
        sha256_digest(t.inspect_raw(&s, "skopeo/big:v1").as_bytes()),
        want
    );

    // The big blob straight over HTTP: the bytes hash to its digest.
    let r = berth_e2e::http::get(&format!("{}/v2/skopeo/big/blobs/{big}", s.url()), &[]);
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_bytes_eq(&r.body, &img.layout.blob(&big), "50 MiB layer over HTTP");

    pull(
        &t,
        &s,
        "skopeo/big:v1",
        &format!("dir:{}", t.join("dir").display()),
        &[],
    );
    assert_dir_matches(&t.join("dir"), &img.layout.manifest_bytes("multi"));
    pull(
        &t,
        &s,
        "skopeo/big:v1",
        &format!("oci:{}:v1", t.join("out").display()),
        &[],
    );
    let root = unpack_rootfs(&t.join("out"), "v1", &t.join("rootfs"));
    assert_eq!(file_digest(&root.join("big.bin")), img.big_file_digest());
    assert_eq!(
        fs::read_to_string(root.join("hello.txt")).unwrap(),
        HELLO_AMD64
    );
}

#[test]
fn cross_repo_copy_mounts_blobs() {
    let (s, t, img) = (Server::start(), TestDir::new("skopeo-mount"), images());
    let want = img.layout.digest("small");
    let layers = layer_digests(&img.layout.manifest("small"));
    push(&t, &s, &img.reference("small"), "skopeo/mount-a:v1", &[]);

    // Same test dir = same blob-info cache: skopeo knows the layers live in mount-a and asks
    // the registry to mount them into mount-b instead of uploading them again.
    let o = t
        .skopeo()
        .args(["--debug", "copy", "--dest-tls-verify=false"])
        .arg(img.reference("small"))
        .arg(format!("docker://{}/skopeo/mount-b:v1", s.addr()))
        .run();
    let mounts: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("Trying to mount"))
        .collect();
    assert_eq!(
        mounts.len(),
        layers.len(),
        "one mount attempt per layer\n{}",
        o.describe()
    );
    assert!(
        mounts.iter().all(|l| l.contains("from=skopeo%2Fmount-a")),
        "{mounts:?}"
    );
    assert_eq!(
        o.stderr.matches("... mount OK").count(),
        layers.len(),
        "every mount must succeed\n{}",
        o.describe()
    );
    assert_eq!(
        o.stderr
            .matches("Uploading /v2/skopeo/mount-b/blobs/uploads/")
            .count(),
        1,
        "only the config is uploaded\n{}",
        o.describe()
    );

    assert_eq!(
        sha256_digest(t.inspect_raw(&s, "skopeo/mount-b:v1").as_bytes()),
        want
    );
    for d in &layers {
        let r = berth_e2e::http::get(&format!("{}/v2/skopeo/mount-b/blobs/{d}", s.url()), &[]);
        assert_eq!(r.status, 200, "mounted blob {d}: {}", r.describe());
        assert_bytes_eq(&r.body, &img.layout.blob(d), &format!("mounted blob {d}"));
    }
}

#[test]
fn zstd_push_of_unknown_length() {
    // Recompressing while pushing means skopeo cannot know the blob size up front: the upload
    // is one streamed PATCH with a chunked request body.
    let (s, t, img) = (Server::start(), TestDir::new("skopeo-zstd"), images());
    let plain = t.join("plain");
    t.skopeo()
        .args(["copy", "--quiet", "--dest-decompress"])
        .arg(img.reference("small"))
        .arg(format!("dir:{}", plain.display()))
        .run();
    let plain_manifest = read_json(&plain.join("manifest.json"));
    let diff_ids = layer_digests(&plain_manifest);

    push(
        &t,
        &s,
        &format!("dir:{}", plain.display()),
        "skopeo/zstd:v1",
        &["--format", "oci", "--dest-compress-format", "zstd"],
    );
    let raw = t.inspect_raw(&s, "skopeo/zstd:v1");
    let m: Value = serde_json::from_str(&raw).unwrap();
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "{raw}"
        );
        let d = l["digest"].as_str().unwrap();
        assert!(
            !diff_ids.contains(&d.to_string()),
            "layer {d} was not recompressed: {raw}"
        );
        let r = berth_e2e::http::get(&format!("{}/v2/skopeo/zstd/blobs/{d}", s.url()), &[]);
        assert_eq!(
            (r.status, sha256_digest(&r.body)),
            (200, d.to_string()),
            "zstd blob {d}"
        );
        assert_eq!(r.body.len() as u64, l["size"].as_u64().unwrap());
    }
    // Decompressing on the way back gives the original tar streams.
    pull(
        &t,
        &s,
        "skopeo/zstd:v1",
        &format!("dir:{}", t.join("back").display()),
        &["--dest-decompress"],
    );
    let back = read_json(&t.join("back/manifest.json"));
    assert_eq!(layer_digests(&back), diff_ids);
    for d in &diff_ids {
        assert_eq!(file_digest(&dir_blob(&t.join("back"), d)), *d);
    }
}
