//! The deployment under test: SeaweedFS + PostgreSQL + two Berth replicas + nginx.

use berth_e2e::http::Response;
use berth_e2e::nginx::Nginx;
use berth_e2e::postgres::Postgres;
use berth_e2e::{Server, ServerOptions};
use berth_storage::seaweedfs::{SeaweedFs, ACCESS_KEY, SECRET_KEY};

/// Everything one test starts; fields drop (and their processes die) in this order.
pub struct Cluster {
    pub lb: Nginx,
    pub a: Server,
    pub b: Server,
    pub pg: Postgres,
    pub weed: SeaweedFs,
    pub rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// Starts SeaweedFS (bucket `registry`), PostgreSQL, replica A (which migrates the schema),
    /// replica B and nginx over both.
    pub fn start() -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let weed = rt.block_on(SeaweedFs::start());
        rt.block_on(weed.backend("registry"));
        let pg = Postgres::start();
        let storage = format!(
            "  s3:\n    accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    region: us-east-1\n    \
             regionendpoint: {}\n    bucket: registry\n    rootdirectory: /ha\n    forcepathstyle: true\n    \
             chunksize: 5242880\n  delete:\n    enabled: true\n  redirect:\n    disable: true\n",
            weed.endpoint()
        );
        let opts = ServerOptions::default()
            .pin_berth()
            .extra_yaml(&format!("database:\n  url: {}\n  poolsize: 8\n", pg.url()));
        let a = Server::start_with_options_and_storage(opts.clone(), &storage);
        let b = Server::start_with_options_and_storage(opts, &storage);
        let lb = Nginx::start(&[a.addr(), b.addr()]);
        Cluster {
            lb,
            a,
            b,
            pg,
            weed,
            rt,
        }
    }
}

/// The `Location` of `r` as a path (Berth answers relative ones; an absolute one loses its
/// scheme and authority), so the next request can go to any replica.
#[track_caller]
pub fn path_of(r: &Response) -> String {
    let loc = r
        .header("location")
        .unwrap_or_else(|| panic!("no Location:\n{}", r.describe()));
    match loc
        .strip_prefix("http://")
        .or_else(|| loc.strip_prefix("https://"))
    {
        Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_string(),
        None => loc.to_string(),
    }
}

/// Asserts that `r` is a server-side OCI error a client can act on: 503 `UNAVAILABLE`, or 500
/// `UNKNOWN`, with a non-empty message.
#[track_caller]
pub fn assert_oci_server_error(r: &Response, what: &str) {
    assert!(
        r.status == 503 || r.status == 500,
        "{what}: expected 503 or 500:\n{}",
        r.describe()
    );
    let v = r.json();
    let code = v["errors"][0]["code"].as_str().unwrap_or_default();
    let want = if r.status == 503 {
        "UNAVAILABLE"
    } else {
        "UNKNOWN"
    };
    assert_eq!(code, want, "{what}:\n{}", r.describe());
    let msg = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "{what}: empty message:\n{}", r.describe());
}
