//! Micro-benchmarks of the request hot paths in `berth-oci`: digest hashing, manifest parsing and
//! validation, repository name and reference parsing.
//!
//! Run: `cargo bench -p berth-oci` (criterion; not part of the test suite).

// Benchmark code: criterion_group! generates undocumented public fns, and setup failures may panic.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use berth_oci::manifest::Manifest;
use berth_oci::{Algorithm, Digest, Hasher, Reference, RepoName};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const MIB: usize = 1 << 20;

fn digests(c: &mut Criterion) {
    let data: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("digest");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("sha256_of 1 MiB", |b| {
        b.iter(|| Digest::sha256_of(black_box(&data)))
    });
    g.bench_function("Hasher 1 MiB in 64 KiB updates", |b| {
        b.iter(|| {
            let mut h = Hasher::new(Algorithm::Sha256);
            for chunk in data.chunks(64 << 10) {
                h.update(black_box(chunk));
            }
            h.finish()
        })
    });
    g.finish();
}

/// A realistic image manifest: config, five layers, annotations (~1.4 KiB).
fn image_manifest() -> String {
    let d = |n: u8| Digest::sha256_of(&[n]).to_string();
    let layers: Vec<String> = (1..=5)
        .map(|i| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
                d(i),
                1_000_000 * u64::from(i)
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1470}},"layers":[{}],"annotations":{{"org.opencontainers.image.created":"2024-01-01T00:00:00Z","org.opencontainers.image.source":"https://example.com/app"}}}}"#,
        d(0),
        layers.join(",")
    )
}

fn index_manifest() -> String {
    let entries: Vec<String> = ["amd64", "arm64", "ppc64le", "s390x"]
        .iter()
        .enumerate()
        .map(|(i, arch)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1234,"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                Digest::sha256_of(&[i as u8])
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    )
}

fn manifests(c: &mut Criterion) {
    let image = image_manifest();
    let index = index_manifest();
    let ct = Some("application/vnd.oci.image.manifest.v1+json");
    let mut g = c.benchmark_group("manifest");
    g.bench_function("parse image + required blobs", |b| {
        b.iter(|| {
            let m = Manifest::parse(black_box(image.as_bytes()), ct);
            m.map(|m| m.required_blobs().len())
        })
    });
    g.bench_function("parse index + children", |b| {
        b.iter(|| {
            let m = Manifest::parse(black_box(index.as_bytes()), None);
            m.map(|m| m.child_manifests().len())
        })
    });
    g.bench_function("digest of manifest bytes", |b| {
        b.iter(|| Digest::sha256_of(black_box(image.as_bytes())))
    });
    g.finish();
}

fn names(c: &mut Criterion) {
    let digest = Digest::sha256_of(b"x").to_string();
    let mut g = c.benchmark_group("names");
    g.bench_function("RepoName library/team-a/app.server", |b| {
        b.iter(|| RepoName::parse(black_box("library/team-a/app.server")))
    });
    g.bench_function("Reference tag", |b| {
        b.iter(|| Reference::parse(black_box("v1.2.3-alpine")))
    });
    g.bench_function("Reference digest", |b| {
        b.iter(|| Reference::parse(black_box(&digest)))
    });
    g.bench_function("Digest parse", |b| {
        b.iter(|| Digest::parse(black_box(&digest)))
    });
    g.finish();
}

criterion_group!(benches, digests, manifests, names);
criterion_main!(benches);
