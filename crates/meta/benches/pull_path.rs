//! Micro-benchmarks of the SQLite metadata lookups on the pull path: manifest by tag, manifest by
//! digest, blob size (the HEAD/GET blob check), on a store holding 1 000 tagged manifests.
//!
//! Run: `cargo bench -p berth-meta` (criterion; not part of the test suite).

// Benchmark code: criterion_group! generates undocumented public fns, and setup failures may panic.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use berth_meta::sqlite::{SqliteOptions, SqliteStore};
use berth_meta::{BlobLinks, Manifests, NewManifest};
use berth_oci::{Digest, Reference, RepoName, Tag};
use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

const MANIFESTS: u32 = 1_000;

struct Fixture {
    store: SqliteStore,
    repo: RepoName,
    tag: Reference,
    digest: Reference,
    blob: Digest,
    _dir: tempfile::TempDir,
}

fn manifest_bytes(config: &Digest, layer: &Digest, n: u32) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":1024}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":1048576}}],"annotations":{{"n":"{n}"}}}}"#
    ))
}

async fn fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("meta.db"), SqliteOptions::default())?;
    let repo = RepoName::parse("bench/app")?;
    let config = Digest::sha256_of(b"config");
    let layer = Digest::sha256_of(b"layer");
    store.link_blob(&repo, &config, 1024).await?;
    store.link_blob(&repo, &layer, 1 << 20).await?;
    let mut last = None;
    for n in 0..MANIFESTS {
        let bytes = manifest_bytes(&config, &layer, n);
        let m = NewManifest {
            digest: Digest::sha256_of(&bytes),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes,
            blobs: vec![config.clone(), layer.clone()],
            children: Vec::new(),
            subject: None,
            artifact_type: None,
            annotations_json: None,
        };
        store
            .put_manifest(&repo, &m, &[Tag::parse(&format!("v{n}"))?])
            .await?;
        last = Some(m.digest);
    }
    let digest = last.ok_or("no manifest")?;
    Ok(Fixture {
        store,
        repo,
        tag: Reference::parse("v500")?,
        digest: Reference::Digest(digest),
        blob: layer,
        _dir: dir,
    })
}

fn lookups(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let f = match rt.block_on(fixture()) {
        Ok(f) => f,
        Err(e) => panic!("fixture: {e}"),
    };
    let mut g = c.benchmark_group("meta pull path");
    g.bench_function("get_manifest by tag", |b| {
        b.iter(|| rt.block_on(f.store.get_manifest(&f.repo, black_box(&f.tag))))
    });
    g.bench_function("get_manifest by digest", |b| {
        b.iter(|| rt.block_on(f.store.get_manifest(&f.repo, black_box(&f.digest))))
    });
    g.bench_function("blob_size", |b| {
        b.iter(|| rt.block_on(f.store.blob_size(&f.repo, black_box(&f.blob))))
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
