//! `berth bench`: a load generator that speaks the OCI distribution API to any registry.
//!
//! Design decisions, and why:
//! - **The client must be cheap.** Benchmarks on small machines run client and server on the same
//!   cores, so every CPU cycle the client burns is taken from the server and caps the ratio we
//!   measure. The HTTP client is plain hyper 1 with hyper-util's pooled keep-alive client (no
//!   TLS, no redirect/cookie/compression layers), bodies are shared [`bytes::Bytes`] frames that
//!   are never copied, and the default runtime is single-threaded. Blob contents are a repeated
//!   1 MiB random block plus a unique 16-byte tail: the SHA-256 state after the shared prefix is
//!   computed once during setup and cloned per blob, so a unique 16 MiB blob costs the client one
//!   64-byte hash block instead of 16 MiB of hashing.
//! - **Setup is never timed.** Seeding 10 000 tags or 5 000 repositories happens before the
//!   clock starts and is idempotent (existing manifests are skipped), so a registry can be
//!   benchmarked repeatedly without reseeding.
//! - **Every loop is bounded** by `--duration` and `--count`, and every operation by
//!   `--op-timeout`; pagination walks stop after a page budget.
//! - **Results are data**: [`run`] returns a [`Report`] (serialisable to JSON) and rendering is
//!   separate, so scripts (`scripts/bench-compare`) consume `--json` and tests assert on fields.
//!   Latencies go into an HDR histogram (`hdrhistogram`), per worker, merged at the end.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod auth;
mod content;
mod http;
mod ops;
mod report;
mod runner;
mod sys;
mod workloads;

use std::io::Write as _;
use std::time::Duration;

pub use report::{Latency, Report, RssStats, WorkloadReport};
pub use workloads::WorkloadKind;

/// Errors of the benchmark tool.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad arguments (URL, sizes, combinations).
    #[error("invalid arguments: {0}")]
    Args(String),
    /// Connection or protocol failure below HTTP semantics.
    #[error("http: {0}")]
    Http(String),
    /// The registry answered with an unexpected status.
    #[error("{what}: unexpected status {status}: {body}")]
    Status {
        /// The request that failed (method and path).
        what: String,
        /// The HTTP status received.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The registry answered something that contradicts the protocol or what was pushed.
    #[error("protocol: {0}")]
    Protocol(String),
    /// An operation did not finish within `--op-timeout`.
    #[error("operation timed out after {0:?}")]
    Timeout(Duration),
    /// Local I/O (stdout, runtime).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// `berth bench` command line.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Registry base URL (http only), e.g. http://127.0.0.1:5000.
    pub url: String,
    /// Workloads to run, comma-separated, or `all`.
    #[arg(short, long, value_delimiter = ',', default_value = "pull-manifest")]
    pub workload: Vec<WorkloadKind>,
    /// Concurrent operations (each worker holds one keep-alive connection).
    #[arg(short, long, default_value_t = 4)]
    pub concurrency: usize,
    /// Time bound of each workload's timed phase (e.g. 10s, 500ms, 2m). Default: 10s, or 10m
    /// when --count is given.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Operation bound of each workload's timed phase.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Blob size (e.g. 16MiB, 4KiB, 1000). Defaults per workload: push 16 MiB, pull 64 MiB,
    /// HEAD 1 MiB, shared layers of the mixed workload 1 MiB.
    #[arg(short, long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Chunk size of the chunked push workload.
    #[arg(long, value_parser = parse_size, default_value = "4MiB")]
    pub chunk_size: u64,
    /// Tags seeded for the list-tags workload.
    #[arg(long, default_value_t = 10_000)]
    pub tags: usize,
    /// Repositories seeded for the catalog workload.
    #[arg(long, default_value_t = 5_000)]
    pub repos: usize,
    /// Page size (`n`) for tag and catalog pagination.
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Verify the digest of every pulled blob (costs client CPU).
    #[arg(long)]
    pub verify: bool,
    /// User for basic auth or the token endpoint.
    #[arg(short, long, env = "BERTH_BENCH_USER")]
    pub user: Option<String>,
    /// Password for basic auth or the token endpoint.
    #[arg(short, long, env = "BERTH_BENCH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// PID of the server process: its RSS is sampled (every 20 ms) and reported.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Repository prefix for everything the benchmark creates.
    #[arg(long, default_value = "berth-bench")]
    pub prefix: String,
    /// Client runtime threads (1 = a single-threaded runtime, the leanest client).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Concurrency of the (untimed) setup phases.
    #[arg(long, default_value_t = 8)]
    pub seed_concurrency: usize,
    /// Per-operation time limit; a slower operation counts as an error.
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    pub op_timeout: Duration,
}

impl Args {
    /// The time bound of a timed phase.
    pub fn time_bound(&self) -> Duration {
        match (self.duration, self.count) {
            (Some(d), _) => d,
            (None, Some(_)) => Duration::from_secs(600),
            (None, None) => Duration::from_secs(10),
        }
    }

    fn validate(&self) -> Result<()> {
        if !self.url.starts_with("http://") {
            return Err(BenchError::Args(format!(
                "url {:?}: only http:// URLs are supported",
                self.url
            )));
        }
        let checks = [
            (self.concurrency == 0, "--concurrency must be at least 1"),
            (self.chunk_size == 0, "--chunk-size must be at least 1"),
            (self.page_size == 0, "--page-size must be at least 1"),
            (
                self.seed_concurrency == 0,
                "--seed-concurrency must be at least 1",
            ),
            (self.count == Some(0), "--count must be at least 1"),
            (self.prefix.is_empty(), "--prefix must not be empty"),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, msg)) => Err(BenchError::Args((*msg).to_string())),
            None => Ok(()),
        }
    }
}

/// Runs every requested workload in order and returns the report.
pub async fn run(args: Args) -> Result<Report> {
    args.validate()?;
    let kinds = workloads::expand(&args.workload);
    let ctx = std::sync::Arc::new(workloads::Ctx::new(&args)?);
    let mut report = Report::new(&args.url);
    for kind in kinds {
        tracing::info!(workload = %kind, "setting up");
        let wr = runner::run_workload(&ctx, &args, kind).await?;
        tracing::info!(workload = %kind, ops = wr.ops, errors = wr.errors, "done");
        report.workloads.push(wr);
    }
    Ok(report)
}

/// The `berth bench` subcommand: builds the client runtime, runs, prints the table or JSON.
pub fn cli(args: Args) -> Result<()> {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let json = args.json;
    let report = runtime.block_on(run(args))?;
    let text = if json {
        serde_json::to_string_pretty(&report).map_err(|e| BenchError::Protocol(e.to_string()))?
    } else {
        report.table()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

/// Parses `16MiB`, `4KiB`, `1G`, `512k`, `1000` (binary units; `B` optional).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("bad size unit in {s:?} (use B, KiB, MiB, GiB)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {s:?} overflows"))
}

/// Parses `10s`, `500ms`, `2m`, `1h`, or plain seconds (`5`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("4XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
