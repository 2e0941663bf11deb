//! The report: plain data (serialised with `--json`) and a fixed-width table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::runner::Phase;
use crate::workloads::WorkloadKind;

/// Everything one `berth bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The registry benchmarked.
    pub url: String,
    /// One entry per workload, in the order run.
    pub workloads: Vec<WorkloadReport>,
}

/// Latency percentiles of successful operations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// Server memory during a workload (`--pid`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RssStats {
    /// RSS right before the timed phase, after setup, in KiB.
    pub idle_kib: u64,
    /// Highest RSS sampled (every 20 ms) during the timed phase, in KiB.
    pub peak_kib: u64,
}

/// The measurements of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadReport {
    /// Which workload.
    pub workload: WorkloadKind,
    /// Blob size in bytes (the layer size for image workloads).
    pub size: u64,
    /// Concurrent operations.
    pub concurrency: usize,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations (any unexpected status, protocol violation or timeout).
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// HTTP requests of the successful operations.
    pub requests: u64,
    /// Bytes sent plus received as payload (blobs, manifests, listings).
    pub bytes: u64,
    /// Listing entries seen (tags, repositories).
    pub items: u64,
    /// Listing pages fetched.
    pub pages: u64,
    /// Wall time of the timed phase.
    pub seconds: f64,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// Payload throughput in MiB/s.
    pub mib_per_sec: f64,
    /// Latency of successful operations.
    pub latency: Latency,
    /// Wall time of the untimed setup.
    pub setup_seconds: f64,
    /// CPU time (user + system) the benchmark client used during the timed phase.
    pub client_cpu_seconds: f64,
    /// Server RSS, when `--pid` was given.
    pub server_rss: Option<RssStats>,
}

impl WorkloadReport {
    pub(crate) fn new(
        workload: WorkloadKind,
        size: u64,
        concurrency: usize,
        phase: Phase,
        setup_seconds: f64,
        client_cpu_seconds: f64,
        server_rss: Option<RssStats>,
    ) -> WorkloadReport {
        let secs = phase.seconds.max(1e-9);
        WorkloadReport {
            workload,
            size,
            concurrency,
            ops: phase.ops,
            errors: phase.errors,
            error_samples: phase.error_samples,
            requests: phase.totals.requests,
            bytes: phase.totals.bytes,
            items: phase.totals.items,
            pages: phase.totals.pages,
            seconds: phase.seconds,
            ops_per_sec: phase.ops as f64 / secs,
            mib_per_sec: phase.totals.bytes as f64 / secs / f64::from(1 << 20),
            latency: phase.latency,
            setup_seconds,
            client_cpu_seconds,
            server_rss,
        }
    }
}

impl Report {
    pub(crate) fn new(url: &str) -> Report {
        Report {
            url: url.to_string(),
            workloads: Vec::new(),
        }
    }

    /// The report as a fixed-width table, error samples below it.
    pub fn table(&self) -> String {
        let mut s = format!("registry: {}\n", self.url);
        let _ = writeln!(
            s,
            "{:<14}{:>9}{:>4}{:>8}{:>7}{:>11}{:>10}{:>9}{:>9}{:>9}{:>8}{:>11}",
            "workload",
            "size",
            "c",
            "ops",
            "errors",
            "ops/s",
            "MiB/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "cpu s",
            "rss MiB"
        );
        for w in &self.workloads {
            let rss = w.server_rss.map_or_else(
                || "-".to_string(),
                |r| format!("{:.1}/{:.1}", kib_mib(r.idle_kib), kib_mib(r.peak_kib)),
            );
            let _ = writeln!(
                s,
                "{:<14}{:>9}{:>4}{:>8}{:>7}{:>11.1}{:>10.1}{:>9.2}{:>9.2}{:>9.1}{:>8.2}{:>11}",
                w.workload.to_string(),
                human_size(w.size),
                w.concurrency,
                w.ops,
                w.errors,
                w.ops_per_sec,
                w.mib_per_sec,
                w.latency.p50_ms,
                w.latency.p99_ms,
                w.latency.max_ms,
                w.client_cpu_seconds,
                rss
            );
        }
        let _ = writeln!(
            s,
            "(rss: server idle/peak; cpu: client CPU seconds in the timed phase)"
        );
        for w in self
            .workloads
            .iter()
            .filter(|w| !w.error_samples.is_empty())
        {
            for e in &w.error_samples {
                let _ = writeln!(s, "error in {}: {e}", w.workload);
            }
        }
        s
    }
}

fn kib_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `16MiB`, `4KiB`, `1000B`.
fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::OpOut;

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_size(16 << 20), "16MiB");
        assert_eq!(human_size(4096), "4KiB");
        assert_eq!(human_size(1000), "1000B");
        assert_eq!(human_size(3 << 30), "3GiB");
    }

    #[test]
    fn rates_and_table() {
        let phase = Phase {
            seconds: 2.0,
            ops: 10,
            totals: OpOut {
                bytes: 4 << 20,
                requests: 20,
                items: 0,
                pages: 0,
            },
            errors: 1,
            error_samples: vec!["boom".into()],
            latency: Latency::default(),
        };
        let w = WorkloadReport::new(WorkloadKind::PushBlob, 1 << 20, 4, phase, 0.1, 0.5, None);
        assert_eq!(w.ops_per_sec, 5.0);
        assert_eq!(w.mib_per_sec, 2.0);
        let r = Report {
            url: "http://x".into(),
            workloads: vec![w],
        };
        let t = r.table();
        assert!(t.contains("push-blob"), "{t}");
        assert!(t.contains("error in push-blob: boom"), "{t}");
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["workloads"][0]["workload"], "push-blob");
        assert_eq!(json["workloads"][0]["ops"], 10);
    }
}
