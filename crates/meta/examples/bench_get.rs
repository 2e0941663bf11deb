//! Micro-benchmark of the pull path: `get_manifest` by tag from 4 concurrent tasks for 2 seconds.
//!
//! Run: `cargo run --release -p berth-meta --example bench_get`. Prints ops/s; asserts nothing.

// A command-line example: printing its measurement to stdout is its whole output.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::sqlite::{SqliteOptions, SqliteStore};
use berth_meta::{BlobLinks, Manifests, NewManifest};
use berth_oci::{Digest, Reference, RepoName, Tag};
use bytes::Bytes;

const TASKS: usize = 4;
const RUN_FOR: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("meta.db"), SqliteOptions::default())?;
    let repo = RepoName::parse("bench/app")?;
    let tag = Tag::parse("latest")?;
    seed(&store, &repo, &tag).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let reference = Reference::Tag(tag);
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (store, repo, reference) = (store.clone(), repo.clone(), reference.clone());
            let (stop, ops) = (Arc::clone(&stop), Arc::clone(&ops));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let found = store.get_manifest(&repo, &reference).await?;
                    if found.is_none() {
                        return Err(berth_meta::MetaError::Database("manifest vanished".into()));
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    tokio::time::sleep(RUN_FOR).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let total = ops.load(Ordering::Relaxed);
    println!(
        "get_manifest by tag: {TASKS} tasks, {secs:.2} s, {total} ops, {:.0} ops/s",
        total as f64 / secs
    );
    Ok(())
}

/// One image manifest (~1 KiB, like a real one) with a config and three layers, tagged.
async fn seed(
    store: &SqliteStore,
    repo: &RepoName,
    tag: &Tag,
) -> Result<(), berth_meta::MetaError> {
    let mut blobs = Vec::new();
    for name in ["config", "layer0", "layer1", "layer2"] {
        let d = Digest::sha256_of(name.as_bytes());
        store.link_blob(repo, &d, 1 << 20).await?;
        blobs.push(d);
    }
    let layers: Vec<String> = blobs[1..]
        .iter()
        .map(|d| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":1048576}}"#
            )
        })
        .collect();
    let bytes = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1048576}},"layers":[{}],"annotations":{{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}}}"#,
        blobs[0],
        layers.join(",")
    ));
    let m = NewManifest {
        digest: Digest::sha256_of(&bytes),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes,
        blobs,
        children: Vec::new(),
        subject: None,
        artifact_type: None,
        annotations_json: None,
    };
    store
        .put_manifest(repo, &m, std::slice::from_ref(tag))
        .await
}
