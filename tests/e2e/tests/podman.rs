//! podman 4.3 and buildah 1.28 (as root, private vfs stores): push in OCI and docker v2s2
//! formats, pull into a fresh store and check digests and file contents; a buildah-built docker
//! manifest list pushed with `manifest push --all --format v2s2`, pulled back per architecture.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fs;

use berth_e2e::fixtures::{HELLO_AMD64, HELLO_ARM64};
use berth_e2e::{
    images, layer_digests, sha256_digest, Server, TestDir, DOCKER_LIST, DOCKER_MANIFEST,
    OCI_MANIFEST,
};
use serde_json::Value;

/// Reads a file out of an image in a podman store via `podman image mount`.
fn read_image_file(t: &TestDir, store: &str, image: &str, path: &str) -> String {
    let root = t.podman(store).args(["image", "mount", image]).stdout();
    let content = fs::read_to_string(format!("{root}{path}"));
    t.podman(store).args(["image", "unmount", image]).run();
    content.unwrap_or_else(|e| panic!("{path} in {image}: {e}"))
}

fn inspect_field(t: &TestDir, store: &str, image: &str, format: &str) -> String {
    t.podman(store)
        .args(["image", "inspect", "--format", format, image])
        .stdout()
}

/// Imports the fixture `small` into store `src`, pushes it in `format`, pulls it into a fresh
/// store and checks digest, media type, architecture and contents.
fn push_pull_roundtrip(format: &str, media_type: &str) {
    let (s, t, img) = (
        Server::start(),
        TestDir::new(&format!("podman-{format}")),
        images(),
    );
    t.podman("src")
        .args(["pull", "-q"])
        .arg(img.reference("small"))
        .run();
    let ids = t
        .podman("src")
        .args(["images", "-q", "--no-trunc"])
        .stdout();
    assert_eq!(ids.lines().count(), 1, "one image imported: {ids}");
    let local = ids.trim().trim_start_matches("sha256:").to_string();

    let remote = format!("{}/podman/{format}:v1", s.addr());
    let digest_file = t.join("digest");
    t.podman("src")
        .args([
            "push",
            "-q",
            "--tls-verify=false",
            "--format",
            format,
            "--digestfile",
        ])
        .arg(&digest_file)
        .arg(&local)
        .arg(format!("docker://{remote}"))
        .run();
    let pushed = fs::read_to_string(&digest_file).unwrap().trim().to_string();

    // What the registry serves is exactly what podman pushed.
    let raw = t.inspect_raw(&s, &format!("podman/{format}:v1"));
    assert_eq!(sha256_digest(raw.as_bytes()), pushed);
    let m: Value = serde_json::from_str(&raw).unwrap();
    // (An unchanged umoci manifest has no mediaType field: the registry goes by Content-Type.)
    let r = s.get_manifest(&format!("podman/{format}"), "v1");
    assert_eq!(
        r.header("content-type"),
        Some(media_type),
        "{}",
        r.describe()
    );
    assert_eq!(
        r.header("docker-content-digest"),
        Some(pushed.as_str()),
        "{}",
        r.describe()
    );
    assert_eq!(
        m["config"]["digest"],
        img.layout.manifest("small")["config"]["digest"],
        "config blob is unchanged"
    );
    assert_eq!(
        layer_digests(&m),
        layer_digests(&img.layout.manifest("small")),
        "layer blobs are unchanged"
    );

    // A fresh store pulls it back.
    t.podman("dst")
        .args(["pull", "-q", "--tls-verify=false", &remote])
        .run();
    assert_eq!(inspect_field(&t, "dst", &remote, "{{.Digest}}"), pushed);
    assert_eq!(
        inspect_field(&t, "dst", &remote, "{{.ManifestType}}"),
        media_type
    );
    assert_eq!(
        inspect_field(&t, "dst", &remote, "{{.Architecture}}"),
        "amd64"
    );
    assert_eq!(
        read_image_file(&t, "dst", &remote, "/hello.txt"),
        HELLO_AMD64
    );

    // Push from the pulling store to another repository and tag; still the same digest.
    let again = format!("{}/podman/{format}-again:v2", s.addr());
    t.podman("dst")
        .args([
            "push",
            "-q",
            "--tls-verify=false",
            "--format",
            format,
            &remote,
        ])
        .arg(format!("docker://{again}"))
        .run();
    assert_eq!(
        sha256_digest(
            t.inspect_raw(&s, &format!("podman/{format}-again:v2"))
                .as_bytes()
        ),
        pushed
    );
    assert_eq!(s.tags(&format!("podman/{format}-again")).unwrap(), ["v2"]);
}

#[test]
fn podman_push_pull_oci_format() {
    push_pull_roundtrip("oci", OCI_MANIFEST);
}

#[test]
fn podman_push_pull_v2s2_format() {
    push_pull_roundtrip("v2s2", DOCKER_MANIFEST);
}

#[test]
fn buildah_manifest_list_v2s2_push_and_pull_by_arch() {
    let (s, t) = (Server::start(), TestDir::new("buildah-list"));
    let list = t.build_manifest_list("build");

    let remote = format!("{}/buildah/list:v1", s.addr());
    let digest_file = t.join("digest");
    t.buildah("build")
        .args([
            "manifest",
            "push",
            "-q",
            "--all",
            "--format",
            "v2s2",
            "--tls-verify=false",
            "--digestfile",
        ])
        .arg(&digest_file)
        .arg(&list)
        .arg(format!("docker://{remote}"))
        .run();
    let pushed = fs::read_to_string(&digest_file).unwrap().trim().to_string();

    let raw = t.inspect_raw(&s, "buildah/list:v1");
    assert_eq!(sha256_digest(raw.as_bytes()), pushed);
    let list: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(list["mediaType"], DOCKER_LIST, "{raw}");
    let children = list["manifests"].as_array().unwrap();
    let mut arches: Vec<&str> = children
        .iter()
        .map(|c| c["platform"]["architecture"].as_str().unwrap())
        .collect();
    arches.sort();
    assert_eq!(arches, ["amd64", "arm64"], "{raw}");

    for (arch, hello) in [("arm64", HELLO_ARM64), ("amd64", HELLO_AMD64)] {
        let child = children
            .iter()
            .find(|c| c["platform"]["architecture"] == arch)
            .unwrap();
        let child_digest = child["digest"].as_str().unwrap();
        assert_eq!(child["mediaType"], DOCKER_MANIFEST, "{raw}");
        let r = s.get_manifest("buildah/list", child_digest);
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(sha256_digest(&r.body), child_digest);
        assert_eq!(r.body.len() as u64, child["size"].as_u64().unwrap());

        // A fresh store per architecture picks that platform out of the list.
        let store = format!("pull-{arch}");
        t.podman(&store)
            .args(["pull", "-q", "--tls-verify=false", "--arch", arch, &remote])
            .run();
        assert_eq!(
            inspect_field(&t, &store, &remote, "{{.Architecture}}"),
            arch
        );
        let repo_digests = inspect_field(
            &t,
            &store,
            &remote,
            "{{range .RepoDigests}}{{println .}}{{end}}",
        );
        let want = format!("{}/buildah/list@{child_digest}", s.addr());
        assert!(
            repo_digests.lines().any(|l| l == want),
            "{want} not in RepoDigests:\n{repo_digests}"
        );
        assert_eq!(read_image_file(&t, &store, &remote, "/hello.txt"), hello);
    }
}
