//! The workloads: an untimed, idempotent setup, then one timed operation repeated.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::content::{annotated_manifest, config_blob, manifest, Blob, BlobSource};
use crate::http::Client;
use crate::ops::{self, Walk};
use crate::{Args, BenchError, Result};

/// Repositories the mixed workload's images are spread over.
const CI_APPS: u64 = 8;
/// Shared base layers of every mixed-workload image.
const CI_SHARED_LAYERS: u64 = 3;
/// Pagination walks give up after this many pages.
const MAX_PAGES: u64 = 100_000;

/// One benchmark workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Blob push: POST, then one PUT with the whole blob.
    PushBlob,
    /// Blob push in --chunk-size PATCHes, then PUT.
    PushChunked,
    /// Small image push: config + 4 KiB layer (--size) + manifest.
    PushImage,
    /// Manifest push: a unique manifest (shared config and layer) under a new tag.
    PushManifest,
    /// Manifest GET by tag.
    PullManifest,
    /// Blob HEAD.
    HeadBlob,
    /// Blob GET, streamed (digest checked with --verify).
    PullBlob,
    /// Walk a --tags tag list with n=--page-size, following Link.
    ListTags,
    /// Walk a catalog of at least --repos repositories with n=--page-size.
    Catalog,
    /// CI-like: push small images sharing base layers (HEAD, mount, push, manifest), pull them back.
    Mixed,
    /// Every workload above, in this order.
    All,
}

impl WorkloadKind {
    const EVERY: [WorkloadKind; 10] = [
        WorkloadKind::PushBlob,
        WorkloadKind::PushChunked,
        WorkloadKind::PushImage,
        WorkloadKind::PushManifest,
        WorkloadKind::PullManifest,
        WorkloadKind::HeadBlob,
        WorkloadKind::PullBlob,
        WorkloadKind::ListTags,
        WorkloadKind::Catalog,
        WorkloadKind::Mixed,
    ];

    /// The blob size this workload uses by default.
    pub fn default_size(self) -> u64 {
        match self {
            WorkloadKind::PushBlob | WorkloadKind::PushChunked => 16 << 20,
            WorkloadKind::PullBlob => 64 << 20,
            WorkloadKind::HeadBlob | WorkloadKind::Mixed => 1 << 20,
            _ => 4 << 10,
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum as _;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

/// The requested workloads with `all` expanded, duplicates kept in order.
pub(crate) fn expand(kinds: &[WorkloadKind]) -> Vec<WorkloadKind> {
    kinds
        .iter()
        .flat_map(|k| match k {
            WorkloadKind::All => WorkloadKind::EVERY.to_vec(),
            k => vec![*k],
        })
        .collect()
}

/// What every operation shares: the client, the run nonce, the knobs.
pub(crate) struct Ctx {
    pub client: Client,
    pub nonce: u64,
    prefix: String,
    verify: bool,
    chunk_size: u64,
    tags: u64,
    repos: u64,
    page_size: usize,
    seed_concurrency: usize,
}

impl Ctx {
    pub(crate) fn new(args: &Args) -> Result<Ctx> {
        Ok(Ctx {
            client: Client::new(&args.url, args.user.clone(), args.password.clone()),
            nonce: run_nonce(),
            prefix: args.prefix.trim_matches('/').to_string(),
            verify: args.verify,
            chunk_size: args.chunk_size,
            tags: args.tags as u64,
            repos: args.repos as u64,
            page_size: args.page_size,
            seed_concurrency: args.seed_concurrency,
        })
    }

    fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }
}

fn run_nonce() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 40)
}

/// What one operation did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OpOut {
    pub bytes: u64,
    pub requests: u64,
    pub items: u64,
    pub pages: u64,
}

/// A workload after its setup.
pub(crate) enum Prepared {
    PushBlob {
        repo: String,
        src: BlobSource,
    },
    PushChunked {
        repo: String,
        src: BlobSource,
    },
    PushImage {
        repo: String,
        src: BlobSource,
    },
    PushManifest {
        repo: String,
        config: Blob,
        layer: Blob,
    },
    PullManifest {
        repo: String,
    },
    HeadBlob {
        repo: String,
        blob: Blob,
    },
    PullBlob {
        repo: String,
        blob: Blob,
    },
    ListTags {
        repo: String,
    },
    Catalog,
    Mixed {
        base: String,
        shared: Vec<Blob>,
        src: BlobSource,
    },
}

/// Runs a workload's setup (untimed): creates what its operation reads.
pub(crate) async fn setup(ctx: &Arc<Ctx>, kind: WorkloadKind, size: u64) -> Result<Prepared> {
    let seed = kind as u64 + 1;
    Ok(match kind {
        WorkloadKind::PushBlob => Prepared::PushBlob {
            repo: ctx.repo("push"),
            src: BlobSource::new(size, seed),
        },
        WorkloadKind::PushChunked => Prepared::PushChunked {
            repo: ctx.repo("push-chunked"),
            src: BlobSource::new(size, seed),
        },
        WorkloadKind::PushImage => Prepared::PushImage {
            repo: ctx.repo("images"),
            src: BlobSource::new(size, seed),
        },
        WorkloadKind::PushManifest => {
            let repo = ctx.repo("manifests");
            seed_image(ctx, &repo, "base").await?;
            Prepared::PushManifest {
                repo,
                config: config_blob(0, 0),
                layer: seed_layer(),
            }
        }
        WorkloadKind::PullManifest => {
            let repo = ctx.repo("manifest");
            seed_image(ctx, &repo, "latest").await?;
            Prepared::PullManifest { repo }
        }
        WorkloadKind::HeadBlob | WorkloadKind::PullBlob => {
            setup_blob(ctx, kind, size, seed).await?
        }
        WorkloadKind::ListTags => setup_tags(ctx).await?,
        WorkloadKind::Catalog => setup_catalog(ctx).await?,
        WorkloadKind::Mixed => setup_mixed(ctx, size, seed).await?,
        WorkloadKind::All => return Err(BenchError::Args("`all` is not a single workload".into())),
    })
}

impl Prepared {
    /// Operation number `i` (timed).
    pub(crate) async fn op(&self, ctx: &Ctx, i: u64) -> Result<OpOut> {
        let c = &ctx.client;
        match self {
            Prepared::PushBlob { repo, src } => {
                let blob = src.blob(ctx.nonce, i);
                let requests = ops::push_blob(c, repo, &blob).await?;
                Ok(out(blob.size, requests))
            }
            Prepared::PushChunked { repo, src } => {
                let blob = src.blob(ctx.nonce, i);
                let requests = ops::push_blob_chunked(c, repo, &blob, ctx.chunk_size).await?;
                Ok(out(blob.size, requests))
            }
            Prepared::PushImage { repo, src } => push_image(ctx, repo, src, i).await,
            Prepared::PushManifest {
                repo,
                config,
                layer,
            } => {
                let note = format!("{:x}-{i}", ctx.nonce);
                let m = annotated_manifest(config, &[layer.layer()], &note);
                ops::put_manifest(c, repo, &format!("m{note}"), &m).await?;
                Ok(out(m.len() as u64, 1))
            }
            Prepared::PullManifest { repo } => {
                let m = ops::get_manifest(c, repo, "latest").await?;
                Ok(out(m.len() as u64, 1))
            }
            Prepared::HeadBlob { repo, blob } => match ops::head_blob(c, repo, &blob.digest).await?
            {
                Some(n) if n == blob.size => Ok(out(0, 1)),
                other => Err(BenchError::Protocol(format!(
                    "HEAD {}: size {other:?}, expected {}",
                    blob.digest, blob.size
                ))),
            },
            Prepared::PullBlob { repo, blob } => {
                let n = ops::get_blob(c, repo, (&blob.digest, blob.size), ctx.verify).await?;
                Ok(out(n, 1))
            }
            Prepared::ListTags { repo } => {
                let first = format!("/v2/{repo}/tags/list?n={}", ctx.page_size);
                walk(ctx, first, ctx.tags).await
            }
            Prepared::Catalog => {
                let first = format!("/v2/_catalog?n={}", ctx.page_size);
                walk(ctx, first, ctx.repos).await
            }
            Prepared::Mixed { base, shared, src } => mixed(ctx, base, shared, src, i).await,
        }
    }
}

fn out(bytes: u64, requests: u64) -> OpOut {
    OpOut {
        bytes,
        requests,
        ..OpOut::default()
    }
}

async fn walk(ctx: &Ctx, first: String, at_least: u64) -> Result<OpOut> {
    let Walk {
        items,
        pages,
        bytes,
    } = ops::walk_pages(&ctx.client, first, MAX_PAGES).await?;
    if items < at_least {
        return Err(BenchError::Protocol(format!(
            "listing returned {items} entries, expected at least {at_least}"
        )));
    }
    Ok(OpOut {
        bytes,
        requests: pages,
        items,
        pages,
    })
}

async fn push_image(ctx: &Ctx, repo: &str, src: &BlobSource, i: u64) -> Result<OpOut> {
    let c = &ctx.client;
    let config = config_blob(ctx.nonce, i);
    let layer = src.blob(ctx.nonce, i);
    ops::push_blob(c, repo, &config).await?;
    ops::push_blob(c, repo, &layer).await?;
    let m = manifest(&config, &[layer.layer()]);
    ops::put_manifest(c, repo, &format!("i{:x}-{i}", ctx.nonce), &m).await?;
    Ok(out(config.size + layer.size + m.len() as u64, 5))
}

/// One CI job: make sure the shared base layers are in the app repository (HEAD, mount when
/// missing), push a unique config and layer, tag the manifest, then pull the image back.
async fn mixed(ctx: &Ctx, base: &str, shared: &[Blob], src: &BlobSource, i: u64) -> Result<OpOut> {
    let c = &ctx.client;
    let repo = format!("{}/ci/app{}", ctx.prefix, i % CI_APPS);
    let mut o = OpOut::default();
    for blob in shared {
        o.requests += 1;
        if ops::head_blob(c, &repo, &blob.digest).await?.is_none() {
            let (mounted, requests) = ops::mount_or_push(c, &repo, blob, base).await?;
            o.requests += requests;
            o.bytes += if mounted { 0 } else { blob.size };
        }
    }
    let config = config_blob(ctx.nonce, i);
    let layer = src.blob(ctx.nonce, i);
    o.requests += ops::push_blob(c, &repo, &config).await?;
    o.requests += ops::push_blob(c, &repo, &layer).await?;
    let mut layers: Vec<_> = shared.iter().map(Blob::layer).collect();
    layers.push(layer.layer());
    let m = manifest(&config, &layers);
    let tag = format!("b{:x}-{i}", ctx.nonce);
    ops::put_manifest(c, &repo, &tag, &m).await?;
    o.bytes += config.size + layer.size + 2 * m.len() as u64;
    if ops::get_manifest(c, &repo, &tag).await? != m {
        return Err(BenchError::Protocol(format!(
            "{repo}:{tag}: manifest bytes changed"
        )));
    }
    for blob in shared.iter().chain([&config, &layer]) {
        o.bytes += ops::get_blob(c, &repo, (&blob.digest, blob.size), ctx.verify).await?;
    }
    o.requests += 2 + 1 + shared.len() as u64 + 2;
    Ok(o)
}

/// Pushes a config, a 4 KiB layer and a manifest tagged `tag` (skipped when the tag exists);
/// returns the manifest bytes.
async fn seed_image(ctx: &Ctx, repo: &str, tag: &str) -> Result<Bytes> {
    let c = &ctx.client;
    let config = config_blob(0, 0);
    let layer = seed_layer();
    let m = manifest(&config, &[layer.layer()]);
    if !ops::manifest_exists(c, repo, tag).await? {
        ops::push_blob(c, repo, &config).await?;
        ops::push_blob(c, repo, &layer).await?;
        ops::put_manifest(c, repo, tag, &m).await?;
    }
    Ok(m)
}

/// The 4 KiB layer of every seeded image.
fn seed_layer() -> Blob {
    BlobSource::new(4096, 99).blob(0, 0)
}

async fn setup_blob(ctx: &Ctx, kind: WorkloadKind, size: u64, seed: u64) -> Result<Prepared> {
    let name = if kind == WorkloadKind::HeadBlob {
        "head"
    } else {
        "pull"
    };
    let repo = ctx.repo(name);
    let blob = BlobSource::new(size, seed).blob(0, 0);
    if ops::head_blob(&ctx.client, &repo, &blob.digest).await? != Some(size) {
        ops::push_blob(&ctx.client, &repo, &blob).await?;
    }
    Ok(match kind {
        WorkloadKind::HeadBlob => Prepared::HeadBlob { repo, blob },
        _ => Prepared::PullBlob { repo, blob },
    })
}

async fn setup_tags(ctx: &Arc<Ctx>) -> Result<Prepared> {
    let repo = ctx.repo("tags");
    let m = seed_image(ctx, &repo, "t00000").await?;
    let shared = Arc::new((repo.clone(), m));
    let outer = Arc::clone(ctx);
    parallel(ctx.seed_concurrency, ctx.tags, move |i| {
        let (ctx, shared) = (Arc::clone(&outer), Arc::clone(&shared));
        async move {
            let (repo, m) = &*shared;
            let tag = format!("t{i:05}");
            if !ops::manifest_exists(&ctx.client, repo, &tag).await? {
                ops::put_manifest(&ctx.client, repo, &tag, m).await?;
            }
            Ok(())
        }
    })
    .await?;
    Ok(Prepared::ListTags { repo })
}

async fn setup_catalog(ctx: &Arc<Ctx>) -> Result<Prepared> {
    let first = ctx.repo("catalog/r00000");
    seed_image(ctx, &first, "latest").await?;
    let config = config_blob(0, 0);
    let layer = seed_layer();
    let m = manifest(&config, &[layer.layer()]);
    let shared = Arc::new((first, config, layer, m));
    let outer = Arc::clone(ctx);
    parallel(ctx.seed_concurrency, ctx.repos, move |i| {
        let (ctx, shared) = (Arc::clone(&outer), Arc::clone(&shared));
        async move {
            let (first, config, layer, m) = &*shared;
            let repo = ctx.repo(&format!("catalog/r{i:05}"));
            if ops::manifest_exists(&ctx.client, &repo, "latest").await? {
                return Ok(());
            }
            ops::mount_or_push(&ctx.client, &repo, config, first).await?;
            ops::mount_or_push(&ctx.client, &repo, layer, first).await?;
            ops::put_manifest(&ctx.client, &repo, "latest", m).await
        }
    })
    .await?;
    Ok(Prepared::Catalog)
}

async fn setup_mixed(ctx: &Ctx, size: u64, seed: u64) -> Result<Prepared> {
    let base = ctx.repo("ci-base");
    let src = BlobSource::new(size, seed);
    let shared: Vec<Blob> = (0..CI_SHARED_LAYERS).map(|i| src.blob(0, i)).collect();
    for blob in &shared {
        if ops::head_blob(&ctx.client, &base, &blob.digest).await? != Some(blob.size) {
            ops::push_blob(&ctx.client, &base, blob).await?;
        }
    }
    Ok(Prepared::Mixed {
        base,
        shared,
        src: BlobSource::new(4096, seed + 100),
    })
}

/// Runs `f(0..count)` on `workers` tasks; the first error stops the rest.
async fn parallel<F, Fut>(workers: usize, count: u64, f: F) -> Result<()>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let f = Arc::new(f);
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (next, f) = (Arc::clone(&next), Arc::clone(&f));
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok(());
                }
                f(i).await?;
            }
        });
    }
    while let Some(done) = set.join_next().await {
        let result = done.map_err(|e| BenchError::Protocol(format!("setup task: {e}")))?;
        if result.is_err() {
            set.abort_all();
            return result;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_expands_in_order() {
        let k = expand(&[WorkloadKind::HeadBlob, WorkloadKind::All]);
        assert_eq!(k.len(), 11);
        assert_eq!(k[0], WorkloadKind::HeadBlob);
        assert_eq!(k[1], WorkloadKind::PushBlob);
        assert!(!k.contains(&WorkloadKind::All));
        assert_eq!(WorkloadKind::PushChunked.to_string(), "push-chunked");
    }
}
