//! Smoke test of `berth bench` against the real registry binary (Berth, or Distribution 2.8.2
//! with `E2E_TARGET=distribution`): every workload with tiny sizes and counts must finish with
//! zero errors and exactly the operations asked for. Nothing here looks at timings.

// Test code: a failed unwrap/expect is how a test fails, and output goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::process::Command;

use berth_bench::{Args, Report, WorkloadKind, WorkloadReport};
use berth_e2e::Server;
use clap::Parser;

const COUNT: u64 = 6;
const SIZE: u64 = 8 << 10;
const CHUNK: u64 = 3 << 10;
const TAGS: u64 = 120;
const REPOS: u64 = 60;
const PAGE: u64 = 25;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn args(server: &Server, extra: &[&str]) -> Args {
    let mut argv = vec!["bench".to_string(), server.url()];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("bench args: {e}"));
    cli.args
}

fn by_kind(report: &Report, kind: WorkloadKind) -> &WorkloadReport {
    report
        .workloads
        .iter()
        .find(|w| w.workload == kind)
        .unwrap_or_else(|| panic!("{kind} missing from the report"))
}

#[tokio::test]
async fn every_workload_runs_without_errors() {
    let server = Server::start();
    let pid = server.pid().expect("server pid").to_string();
    let count = COUNT.to_string();
    let (size, chunk) = (SIZE.to_string(), CHUNK.to_string());
    let (tags, repos, page) = (TAGS.to_string(), REPOS.to_string(), PAGE.to_string());
    let a = args(
        &server,
        &[
            "-w",
            "all",
            "-n",
            &count,
            "-d",
            "120s",
            "-c",
            "3",
            "--size",
            &size,
            "--chunk-size",
            &chunk,
            "--tags",
            &tags,
            "--repos",
            &repos,
            "--page-size",
            &page,
            "--verify",
            "--pid",
            &pid,
        ],
    );
    let report = berth_bench::run(a)
        .await
        .unwrap_or_else(|e| panic!("bench run: {e}\n{}", server.log()));

    assert_eq!(report.workloads.len(), 10, "{report:#?}");
    for w in &report.workloads {
        assert_eq!(w.errors, 0, "{}: {:?}", w.workload, w.error_samples);
        assert_eq!(w.ops, COUNT, "{}: ops", w.workload);
        let rss = w.server_rss.expect("server RSS sampled");
        assert!(
            rss.idle_kib > 0 && rss.peak_kib > 0,
            "{}: {rss:?}",
            w.workload
        );
        assert!(
            w.latency.max_ms >= w.latency.p50_ms,
            "{}: {:?}",
            w.workload,
            w.latency
        );
    }
    let requests = |k| by_kind(&report, k).requests;
    assert_eq!(requests(WorkloadKind::PushBlob), 2 * COUNT);
    // POST, ceil(8 KiB / 3 KiB) = 3 PATCHes, PUT.
    assert_eq!(requests(WorkloadKind::PushChunked), 5 * COUNT);
    assert_eq!(requests(WorkloadKind::PushImage), 5 * COUNT);
    assert_eq!(requests(WorkloadKind::PushManifest), COUNT);
    assert_eq!(requests(WorkloadKind::PullManifest), COUNT);
    assert_eq!(requests(WorkloadKind::HeadBlob), COUNT);
    assert_eq!(requests(WorkloadKind::PullBlob), COUNT);
    assert_eq!(by_kind(&report, WorkloadKind::PushBlob).bytes, SIZE * COUNT);
    assert_eq!(by_kind(&report, WorkloadKind::PullBlob).bytes, SIZE * COUNT);

    let tags = by_kind(&report, WorkloadKind::ListTags);
    assert_eq!(tags.items, TAGS * COUNT, "every tag seen once per walk");
    if server.target() == berth_e2e::Target::Berth {
        // Berth honours n: at least ceil(120 / 25) = 5 pages per walk.
        assert!(tags.pages >= TAGS.div_ceil(PAGE) * COUNT, "{tags:?}");
    }
    let catalog = by_kind(&report, WorkloadKind::Catalog);
    assert!(catalog.items >= REPOS * COUNT, "{catalog:?}");
    assert!(catalog.pages >= REPOS.div_ceil(PAGE) * COUNT, "{catalog:?}");
    // 3 HEADs, 2 x (POST + PUT), manifest PUT and GET, 5 blob GETs, plus mounts on first use.
    assert!(requests(WorkloadKind::Mixed) >= 14 * COUNT);
}

#[tokio::test]
async fn a_second_run_reuses_the_seeded_data() {
    let server = Server::start();
    let a = args(
        &server,
        &[
            "-w",
            "list-tags,catalog",
            "-n",
            "1",
            "--tags",
            "30",
            "--repos",
            "20",
            "--page-size",
            "7",
        ],
    );
    let first = berth_bench::run(a.clone())
        .await
        .unwrap_or_else(|e| panic!("first run: {e}"));
    let second = berth_bench::run(a)
        .await
        .unwrap_or_else(|e| panic!("second run: {e}"));
    for (f, s) in first.workloads.iter().zip(&second.workloads) {
        assert_eq!(
            (f.errors, s.errors),
            (0, 0),
            "{:?} {:?}",
            f.error_samples,
            s.error_samples
        );
        assert_eq!(f.items, s.items, "{}: seeding is idempotent", f.workload);
    }
    assert_eq!(by_kind(&second, WorkloadKind::ListTags).items, 30);
}

#[test]
fn the_berth_bench_subcommand_prints_json() {
    let server = Server::start();
    let out = Command::new(berth_e2e::server::berth_bin())
        .args([
            "bench",
            &server.url(),
            "-w",
            "pull-manifest,head-blob",
            "-n",
            "4",
            "--json",
        ])
        .args(["--size", "1KiB", "--op-timeout", "30s", "-d", "60s"])
        .env("BERTH_LOG", "warn")
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let w = v["workloads"].as_array().expect("workloads array");
    assert_eq!(w.len(), 2);
    assert_eq!(w[0]["workload"], "pull-manifest");
    assert_eq!(w[1]["workload"], "head-blob");
    for w in w {
        assert_eq!(w["ops"], 4);
        assert_eq!(w["errors"], 0);
    }
}

#[test]
fn unreachable_registries_are_errors_not_hangs() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let out = Command::new(berth_e2e::server::berth_bin())
        .args([
            "bench",
            &format!("http://127.0.0.1:{port}"),
            "-w",
            "head-blob",
            "-n",
            "3",
        ])
        .env("BERTH_LOG", "warn")
        .output()
        .expect("run berth bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Connection refused"), "{err}");
}
