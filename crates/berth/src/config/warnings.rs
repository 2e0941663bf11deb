//! One warning per key that Berth read but will not act on, so nothing is silently ignored.

use super::env::Override;
use super::Warning;

/// registry:2 keys (and key prefixes) that Berth knows but does not implement, with the reason.
pub(super) const UNIMPLEMENTED: &[(&str, &str)] = &[
    (
        "redis",
        "Berth keeps its caches in process and shared state in the metadata database",
    ),
    ("proxy", "the pull-through cache is not implemented yet"),
    ("validation", "manifest URL validation is not implemented"),
    ("compatibility", "schema1 manifests are not supported"),
    (
        "reporting",
        "bugsnag/newrelic reporting is not supported; use the Prometheus metrics",
    ),
    (
        "middleware",
        "storage middleware (CloudFront, redirect) is not supported",
    ),
    ("loglevel", "use log.level"),
    ("log.hooks", "mail hooks are not supported"),
    ("log.accesslog.format", "the access log format is fixed"),
    (
        "storage.cache",
        "Berth's metadata database replaces the blob descriptor cache",
    ),
    (
        "storage.inmemory",
        "the in-memory driver is not supported; use filesystem",
    ),
    ("storage.azure", "the Azure driver is not supported"),
    (
        "storage.gcs",
        "the GCS driver is not supported; GCS's S3-compatible API works with storage.s3",
    ),
    ("storage.swift", "the Swift driver is not supported"),
    ("storage.oss", "the OSS driver is not supported"),
    (
        "storage.maintenance.readonly",
        "read-only mode is not implemented yet",
    ),
    (
        "storage.tag",
        "tag lookup concurrency is not needed with the metadata database",
    ),
    (
        "storage.s3.encrypt",
        "server-side encryption is configured on the bucket instead",
    ),
    (
        "storage.s3.keyid",
        "server-side encryption is configured on the bucket instead",
    ),
    (
        "storage.s3.storageclass",
        "objects use the bucket's default storage class",
    ),
    (
        "storage.s3.objectacl",
        "objects use the bucket's default ACL",
    ),
    (
        "storage.s3.sessiontoken",
        "use AWS_SESSION_TOKEN in the environment",
    ),
    ("storage.s3.useragent", "the user agent is fixed"),
    (
        "storage.s3.usedualstack",
        "dual-stack endpoints are not supported",
    ),
    (
        "storage.s3.accelerate",
        "transfer acceleration is not supported",
    ),
    ("storage.s3.loglevel", "use log.level"),
    (
        "storage.s3.multipartcopychunksize",
        "a finished upload is assembled server-side with UploadPartCopy, one copied part per \
         storage.s3.chunksize part",
    ),
    (
        "storage.s3.multipartcopymaxconcurrency",
        "a finished upload's parts are copied server-side 8 at a time",
    ),
    (
        "storage.s3.multipartcopythresholdsize",
        "an upload of at least storage.s3.chunksize bytes is assembled server-side with \
         UploadPartCopy; a smaller one is written with one PUT",
    ),
    (
        "http.letsencrypt",
        "ACME is not built in; use cert-manager or certbot with http.tls",
    ),
    ("http.http2", "HTTP/2 settings are not configurable"),
    ("http.h2c", "HTTP/2 cleartext settings are not configurable"),
    (
        "http.tls.ciphersuites",
        "cipher suites are fixed to rustls' safe defaults",
    ),
    (
        "auth.silly",
        "the silly auth mode is not supported; use htpasswd",
    ),
    (
        "auth.token.jwks",
        "JWKS is not supported; use rootcertbundle",
    ),
    (
        "auth.token.signingalgorithms",
        "signing algorithms are fixed (RS256, ES256)",
    ),
    ("health.file", "file health checks are not implemented"),
    ("health.http", "HTTP health checks are not implemented"),
    ("health.tcp", "TCP health checks are not implemented"),
];

/// Builds warnings for the paths serde ignored.
pub fn for_ignored(paths: &[String], overrides: &[Override]) -> Vec<Warning> {
    let mut out: Vec<Warning> = paths.iter().map(|p| for_path(p, overrides)).collect();
    out.dedup();
    out
}

fn for_path(path: &str, overrides: &[Override]) -> Warning {
    let path = &path.replace(".?", "");
    let normalized = strip_indices(path);
    let reason = UNIMPLEMENTED
        .iter()
        .find(|(k, _)| normalized == *k || normalized.starts_with(&format!("{k}.")))
        .map(|(_, why)| format!("registry:2 key not implemented by Berth, ignored ({why})"));
    let message = reason.unwrap_or_else(|| "unknown configuration key, ignored".into());
    let set_by = overrides
        .iter()
        .find(|o| o.path == normalized || normalized.starts_with(&format!("{}.", o.path)));
    let key = match set_by {
        Some(o) => format!("{path} (from {})", o.var),
        None => path.to_owned(),
    };
    Warning { key, message }
}

/// `notifications.endpoints.0.foo` → `notifications.endpoints.foo` (`?` marks an `Option`).
fn strip_indices(path: &str) -> String {
    path.split('.')
        .filter(|s| s.parse::<usize>().is_err())
        .collect::<Vec<_>>()
        .join(".")
}
