//! The Rust `oci-client` crate 0.18 (oras-project): push and pull (chunked and monolithic
//! uploads), tags, catalog, raw manifests, cross-repo blob mounts, streamed chunked blob
//! uploads, an image index with platform resolution, and a referrer pushed with `subject`.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::BTreeMap;

use berth_e2e::{assert_bytes_eq, random_bytes, sha256_digest, target_supports_referrers, Server};
use bytes::Bytes;
use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, IMAGE_LAYER_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

const ANON: RegistryAuth = RegistryAuth::Anonymous;
const ATTESTATION: &str = "application/vnd.berth.e2e.attestation.v1+json";

fn client(monolithic: bool) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: monolithic,
        platform_resolver: Some(Box::new(linux_amd64_resolver)),
        no_proxy: Some("127.0.0.1,localhost".into()),
        ..Default::default()
    })
}

fn reference(s: &Server, name: &str) -> Reference {
    format!("{}/{name}", s.addr())
        .parse()
        .unwrap_or_else(|e| panic!("reference {name}: {e}"))
}

/// A small image: an OCI config for `arch` and two layers (3 MiB random, a text file).
fn image(arch: &str) -> (Vec<ImageLayer>, Config) {
    let layers = vec![
        ImageLayer::new(
            random_bytes(3 << 20),
            IMAGE_LAYER_MEDIA_TYPE.to_string(),
            None,
        ),
        ImageLayer::new(
            format!("hello from oci-client ({arch})\n").into_bytes(),
            IMAGE_LAYER_MEDIA_TYPE.to_string(),
            None,
        ),
    ];
    let cfg = serde_json::json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.sha256_digest()).collect::<Vec<_>>()},
    });
    (
        layers,
        Config::oci_v1(serde_json::to_vec(&cfg).unwrap(), None),
    )
}

/// Pushes an image and returns its manifest digest (checked against the raw bytes served).
async fn push_image(
    c: &Client,
    r: &Reference,
    layers: &[ImageLayer],
    config: Config,
) -> (String, usize) {
    c.push(r, layers, config, &ANON, None)
        .await
        .unwrap_or_else(|e| panic!("push {r}: {e}"));
    let (raw, digest) = c
        .pull_manifest_raw(r, &ANON, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .expect("pull_manifest_raw");
    assert_eq!(
        sha256_digest(&raw),
        digest,
        "digest of {r} matches its bytes"
    );
    (digest, raw.len())
}

async fn pull_and_compare(
    c: &Client,
    r: &Reference,
    layers: &[ImageLayer],
    config: &Config,
) -> String {
    let got = c
        .pull(r, &ANON, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .unwrap_or_else(|e| panic!("pull {r}: {e}"));
    // Layers come back in download-completion order: compare by content.
    let mut got_digests: Vec<String> = got.layers.iter().map(|l| sha256_digest(&l.data)).collect();
    let mut want_digests: Vec<String> = layers.iter().map(ImageLayer::sha256_digest).collect();
    got_digests.sort();
    want_digests.sort();
    assert_eq!(got_digests, want_digests, "layers of {r}");
    let manifest = got.manifest.as_ref().expect("pulled manifest");
    let order: Vec<&str> = manifest.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(
        order,
        layers
            .iter()
            .map(ImageLayer::sha256_digest)
            .collect::<Vec<_>>(),
        "layer order in the manifest"
    );
    assert_bytes_eq(&got.config.data, &config.data, &format!("config of {r}"));
    got.digest.expect("pulled digest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_pull_tags_catalog_raw_manifest() {
    let s = Server::start();
    let c = client(false);
    let (layers, config) = image("amd64");
    let app = reference(&s, "oci-client/app:v1");
    let (digest, _) = push_image(&c, &app, &layers, config.clone()).await;
    assert_eq!(pull_and_compare(&c, &app, &layers, &config).await, digest);
    let served = s.get_manifest("oci-client/app", "v1");
    assert_eq!(
        served.header("docker-content-digest"),
        Some(digest.as_str()),
        "{}",
        served.describe()
    );
    assert_eq!(
        served.header("content-type"),
        Some(OCI_IMAGE_MEDIA_TYPE),
        "{}",
        served.describe()
    );

    // Same image, second tag; then the exact tag list.
    let (digest2, _) = push_image(
        &c,
        &reference(&s, "oci-client/app:v2"),
        &layers,
        config.clone(),
    )
    .await;
    assert_eq!(digest2, digest);
    let tags = c
        .list_tags(&app, &ANON, None, None)
        .await
        .expect("list_tags");
    assert_eq!(tags.name, "oci-client/app");
    let mut t = tags.tags.clone();
    t.sort();
    assert_eq!(t, ["v1", "v2"]);

    // Monolithic uploads (POST + PUT with the body) into another repository.
    let mono = client(true);
    let (mlayers, mconfig) = image("amd64");
    let other = reference(&s, "oci-client/mono:v1");
    let (mdigest, _) = push_image(&mono, &other, &mlayers, mconfig.clone()).await;
    assert_eq!(
        pull_and_compare(&c, &other, &mlayers, &mconfig).await,
        mdigest
    );

    let cat = c.catalog(&app, &ANON, None, None).await.expect("catalog");
    assert_eq!(cat.repositories, ["oci-client/app", "oci-client/mono"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_blob_and_chunked_stream_upload() {
    let s = Server::start();
    let c = client(false);
    let (layers, config) = image("amd64");
    let src = reference(&s, "oci-client/src:v1");
    push_image(&c, &src, &layers, config.clone()).await;

    // Cross-repo mounts of every blob of the source image.
    let dst = reference(&s, "oci-client/dst:v1");
    let mut blobs: Vec<String> = layers.iter().map(|l| l.sha256_digest()).collect();
    blobs.push(config.sha256_digest());
    for d in &blobs {
        assert!(
            !c.blob_exists(&dst, d).await.expect("blob_exists"),
            "{d} already in dst"
        );
        c.mount_blob(&dst, &src, d)
            .await
            .unwrap_or_else(|e| panic!("mount {d}: {e}"));
        assert!(
            c.blob_exists(&dst, d).await.expect("blob_exists"),
            "{d} mounted"
        );
        assert_eq!(s.blob_status("oci-client/dst", d), 200);
    }
    // Mounting a blob the source does not have must not report success.
    let missing = sha256_digest(b"never uploaded");
    assert!(
        c.mount_blob(&dst, &src, &missing).await.is_err(),
        "mount of an unknown blob succeeded"
    );
    assert_eq!(s.blob_status("oci-client/dst", &missing), 404);

    // A streamed upload of unknown digest: one PATCH per chunk, digest computed on the fly.
    let chunks: Vec<Bytes> = (0..6)
        .map(|i| Bytes::from(random_bytes((1 << 20) + i * 4099)))
        .collect();
    let whole: Vec<u8> = chunks.iter().flat_map(|b| b.iter().copied()).collect();
    let stream = futures::stream::iter(chunks.into_iter().map(Ok));
    let resp = c
        .push_blob_stream_chunked(&dst, stream)
        .await
        .expect("push_blob_stream_chunked");
    assert_eq!(
        (resp.blob_digest.clone(), resp.size),
        (sha256_digest(&whole), whole.len() as u64)
    );
    let got = berth_e2e::http::get(
        &format!("{}/v2/oci-client/dst/blobs/{}", s.url(), resp.blob_digest),
        &[],
    );
    assert_eq!(got.status, 200, "{}", got.describe());
    assert_bytes_eq(&got.body, &whole, "streamed blob");

    // A manifest over the mounted layers plus the streamed one, pulled back whole.
    let mut all = layers.clone();
    all.push(ImageLayer::new(
        whole,
        IMAGE_LAYER_MEDIA_TYPE.to_string(),
        None,
    ));
    let manifest = OciImageManifest::build(&all, &config, None);
    c.push_manifest(&dst, &manifest.into())
        .await
        .expect("push_manifest");
    pull_and_compare(&c, &dst, &all, &config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_index_platform_resolution() {
    let s = Server::start();
    let c = client(false);
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let (layers, config) = image(arch);
        let (digest, size) = push_image(
            &c,
            &reference(&s, &format!("oci-client/multi:{arch}")),
            &layers,
            config,
        )
        .await;
        entries.push(serde_json::json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE, "digest": digest, "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index: OciImageIndex = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "manifests": entries,
    }))
    .unwrap();
    let list = reference(&s, "oci-client/multi:latest");
    c.push_manifest_list(&list, &ANON, index)
        .await
        .expect("push_manifest_list");
    let (raw, idx_digest) = c
        .pull_manifest_raw(&list, &ANON, &[OCI_IMAGE_INDEX_MEDIA_TYPE])
        .await
        .unwrap();
    assert_eq!(sha256_digest(&raw), idx_digest);
    let served: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(served["manifests"].as_array().map(Vec::len), Some(2));

    // The default resolver picks linux/amd64; a custom one picks arm64.
    let (_, amd) = c
        .pull_image_manifest(&list, &ANON)
        .await
        .expect("pull_image_manifest");
    assert_eq!(amd, entries[0]["digest"].as_str().unwrap());
    let arm_client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        no_proxy: Some("127.0.0.1,localhost".into()),
        platform_resolver: Some(Box::new(|m: &[ImageIndexEntry]| {
            m.iter()
                .find(|e| {
                    e.platform
                        .as_ref()
                        .is_some_and(|p| p.architecture.to_string() == "arm64")
                })
                .map(|e| e.digest.clone())
        })),
        ..Default::default()
    });
    let (m, arm) = arm_client
        .pull_image_manifest(&list, &ANON)
        .await
        .expect("pull arm64");
    assert_eq!(arm, entries[1]["digest"].as_str().unwrap());
    assert_eq!(m.layers.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrer_with_subject() {
    let s = Server::start();
    let c = client(false);
    let (layers, config) = image("amd64");
    let app = reference(&s, "oci-client/signed:v1");
    let (subject_digest, subject_size) = push_image(&c, &app, &layers, config).await;

    // An attestation artifact whose subject is the image.
    let att_layers = vec![ImageLayer::new(
        br#"{"predicate":"e2e"}"#.to_vec(),
        ATTESTATION.to_string(),
        None,
    )];
    let empty = Config::new(
        b"{}".to_vec(),
        "application/vnd.oci.empty.v1+json".to_string(),
        None,
    );
    let mut manifest = OciImageManifest::build(
        &att_layers,
        &empty,
        Some(BTreeMap::from([("org.berth.e2e".into(), "att".into())])),
    );
    manifest.artifact_type = Some(ATTESTATION.to_string());
    manifest.subject = Some(OciDescriptor {
        media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
        digest: subject_digest.clone(),
        size: subject_size as i64,
        ..Default::default()
    });
    let att = reference(&s, "oci-client/signed:att");
    c.push(&att, &att_layers, empty, &ANON, Some(manifest))
        .await
        .expect("push referrer");
    let (raw, att_digest) = c
        .pull_manifest_raw(&att, &ANON, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        stored["subject"]["digest"],
        subject_digest.as_str(),
        "{stored}"
    );
    assert_eq!(stored["artifactType"], ATTESTATION, "{stored}");

    let by_digest = reference(&s, &format!("oci-client/signed@{subject_digest}"));
    let all = c
        .pull_referrers(&by_digest, None)
        .await
        .expect("pull_referrers");
    let filtered = c
        .pull_referrers(&by_digest, Some(ATTESTATION))
        .await
        .expect("pull_referrers filtered");
    let other = c
        .pull_referrers(&by_digest, Some("application/vnd.example.other"))
        .await
        .expect("pull_referrers other");
    if target_supports_referrers() {
        for idx in [&all, &filtered] {
            assert_eq!(idx.manifests.len(), 1, "{idx:?}");
            let e = &idx.manifests[0];
            assert_eq!(
                (e.digest.as_str(), e.size, e.media_type.as_str()),
                (att_digest.as_str(), raw.len() as i64, OCI_IMAGE_MEDIA_TYPE)
            );
            assert_eq!(e.artifact_type.as_deref(), Some(ATTESTATION));
        }
        assert!(other.manifests.is_empty(), "{other:?}");
    } else {
        // Distribution 2.8.2: 404 on /referrers, oci-client falls back to the (absent) tag schema.
        assert!(
            all.manifests.is_empty() && filtered.manifests.is_empty() && other.manifests.is_empty()
        );
    }
}
