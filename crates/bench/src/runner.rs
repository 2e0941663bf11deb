//! The timed phase: `--concurrency` workers take operation numbers from one counter until the
//! count or the time bound is reached; each records its own latency histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::report::{Latency, RssStats, WorkloadReport};
use crate::sys::{cpu_time, rss_kib, RssSampler};
use crate::workloads::{self, Ctx, OpOut, Prepared, WorkloadKind};
use crate::{Args, BenchError, Result};

/// Error messages kept per workload.
const ERROR_SAMPLES: usize = 5;
/// A worker gives up after this many failures in a row (the registry is down or refusing).
const MAX_CONSECUTIVE_ERRORS: u32 = 50;
/// Latencies are recorded in microseconds up to one hour.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Sets up, runs and measures one workload.
pub(crate) async fn run_workload(
    ctx: &Arc<Ctx>,
    args: &Args,
    kind: WorkloadKind,
) -> Result<WorkloadReport> {
    let size = args.size.unwrap_or_else(|| kind.default_size());
    let setup_started = Instant::now();
    let prepared = Arc::new(workloads::setup(ctx, kind, size).await?);
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    let idle = args.pid.and_then(rss_kib);
    let sampler = args.pid.map(RssSampler::start);
    let cpu_before = cpu_time();
    let bound = Bound {
        concurrency: args.concurrency,
        deadline: Instant::now() + args.time_bound(),
        count: args.count.unwrap_or(u64::MAX),
        op_timeout: args.op_timeout,
    };
    let phase = drive(ctx, &prepared, &bound).await?;
    let cpu = (cpu_time().saturating_sub(cpu_before)).as_secs_f64();
    let server_rss = match (args.pid, sampler) {
        (Some(pid), Some(s)) => Some(RssStats {
            idle_kib: idle.unwrap_or(0),
            peak_kib: s.finish(pid),
        }),
        _ => None,
    };
    Ok(WorkloadReport::new(
        kind,
        size,
        args.concurrency,
        phase,
        setup_seconds,
        cpu,
        server_rss,
    ))
}

struct Bound {
    concurrency: usize,
    deadline: Instant,
    count: u64,
    op_timeout: Duration,
}

/// What the timed phase measured.
pub(crate) struct Phase {
    pub seconds: f64,
    pub ops: u64,
    pub totals: OpOut,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub latency: Latency,
}

struct Worker {
    hist: Histogram<u64>,
    ops: u64,
    totals: OpOut,
    errors: u64,
    samples: Vec<String>,
}

impl Worker {
    fn new() -> Result<Worker> {
        Ok(Worker {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .map_err(|e| BenchError::Protocol(format!("histogram: {e}")))?,
            ops: 0,
            totals: OpOut::default(),
            errors: 0,
            samples: Vec::new(),
        })
    }

    fn record_ok(&mut self, took: Duration, o: OpOut) {
        self.hist
            .saturating_record((took.as_micros() as u64).max(1));
        self.ops += 1;
        self.totals.bytes += o.bytes;
        self.totals.requests += o.requests;
        self.totals.items += o.items;
        self.totals.pages += o.pages;
    }

    fn record_err(&mut self, e: String) {
        self.errors += 1;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(e);
        }
    }

    fn merge(&mut self, other: Worker) -> Result<()> {
        self.hist
            .add(&other.hist)
            .map_err(|e| BenchError::Protocol(format!("histogram: {e}")))?;
        self.ops += other.ops;
        self.totals.bytes += other.totals.bytes;
        self.totals.requests += other.totals.requests;
        self.totals.items += other.totals.items;
        self.totals.pages += other.totals.pages;
        self.errors += other.errors;
        for s in other.samples {
            if self.samples.len() < ERROR_SAMPLES {
                self.samples.push(s);
            }
        }
        Ok(())
    }
}

async fn drive(ctx: &Arc<Ctx>, prepared: &Arc<Prepared>, bound: &Bound) -> Result<Phase> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..bound.concurrency {
        let (ctx, prepared, next) = (Arc::clone(ctx), Arc::clone(prepared), Arc::clone(&next));
        let (deadline, count, op_timeout) = (bound.deadline, bound.count, bound.op_timeout);
        set.spawn(async move {
            let mut w = Worker::new()?;
            let mut consecutive = 0;
            while Instant::now() < deadline && consecutive < MAX_CONSECUTIVE_ERRORS {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                match tokio::time::timeout(op_timeout, prepared.op(&ctx, i)).await {
                    Ok(Ok(o)) => {
                        w.record_ok(t.elapsed(), o);
                        consecutive = 0;
                    }
                    Ok(Err(e)) => {
                        w.record_err(e.to_string());
                        consecutive += 1;
                    }
                    Err(_) => {
                        w.record_err(BenchError::Timeout(op_timeout).to_string());
                        consecutive += 1;
                    }
                }
            }
            Ok::<Worker, BenchError>(w)
        });
    }
    let mut all = Worker::new()?;
    while let Some(done) = set.join_next().await {
        let w = done.map_err(|e| BenchError::Protocol(format!("worker task: {e}")))??;
        all.merge(w)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Phase {
        seconds,
        ops: all.ops,
        totals: all.totals,
        errors: all.errors,
        error_samples: all.samples,
        latency: latency(&all.hist, all.ops),
    })
}

fn latency(h: &Histogram<u64>, ops: u64) -> Latency {
    let ms = |us: u64| us as f64 / 1000.0;
    if ops == 0 {
        return Latency::default();
    }
    Latency {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
    }
}
