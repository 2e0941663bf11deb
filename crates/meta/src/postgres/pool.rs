//! The connection pool: URL parsing, TLS, pool limits, and how driver errors become
//! [`MetaError`]s (connection trouble → [`MetaError::Unavailable`]; lock conflicts → retried).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;

use super::PostgresOptions;
use crate::{MetaError, Result};

/// Connect timeout when the URL does not set `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the pool; no connection is opened until the first use.
pub(super) fn build(opts: &PostgresOptions) -> Result<Pool> {
    let (url, root_cert) = split_root_cert(&opts.url);
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
        MetaError::Database(format!("postgres: invalid database URL: {}", describe(&e)))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("berth");
    }
    let connect_timeout = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if config.get_ssl_mode() == SslMode::Disable {
        Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    } else {
        Manager::from_config(config, tls(root_cert.as_deref())?, manager_config)
    };
    Pool::builder(manager)
        .max_size(opts.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(connect_timeout))
        .wait_timeout(Some(opts.acquire_timeout))
        .recycle_timeout(Some(connect_timeout))
        .build()
        .map_err(|e| MetaError::Database(format!("postgres: cannot build the pool: {e}")))
}

/// Removes libpq's `sslrootcert=PATH` (which tokio-postgres does not know) from a URL or a
/// `key=value` connection string, returning the rest and the path.
fn split_root_cert(url: &str) -> (String, Option<String>) {
    const KEY: &str = "sslrootcert=";
    if let Some((base, query)) = url.split_once('?') {
        let (mut kept, mut cert) = (Vec::new(), None);
        for pair in query.split('&') {
            match pair.strip_prefix(KEY) {
                Some(path) => cert = Some(percent_decode(path)),
                None => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, cert);
    }
    if url.contains("://") {
        return (url.to_string(), None);
    }
    let (mut kept, mut cert) = (Vec::new(), None);
    for word in url.split_whitespace() {
        match word.strip_prefix(KEY) {
            Some(path) => cert = Some(path.to_string()),
            None => kept.push(word),
        }
    }
    (kept.join(" "), cert)
}

/// Decodes `%XX` escapes (paths in URLs); anything malformed is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// rustls with the system's roots plus `sslrootcert`; the server certificate and host name are
/// always verified (libpq's `verify-full`), whatever `sslmode` says.
fn tls(root_cert: Option<&str>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "postgres: skipped a system root certificate");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    let mut total = added;
    if let Some(path) = root_cert {
        total += add_pem_file(&mut roots, path)?;
    }
    tracing::debug!(roots = total, "postgres: TLS roots loaded");
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.into())
        .with_safe_default_protocol_versions()
        .map_err(|e| MetaError::Database(format!("postgres: TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Adds every certificate of a PEM file; fails when the file has none.
fn add_pem_file(roots: &mut rustls::RootCertStore, path: &str) -> Result<usize> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |e: &dyn std::fmt::Display| {
        MetaError::Database(format!("postgres: sslrootcert {path}: {e}"))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no certificate in the file"));
    }
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    Ok(added)
}

/// A failure inside one store operation, before it is named and mapped.
#[derive(Debug)]
pub(super) enum Fail {
    /// The driver or the server failed.
    Pg(tokio_postgres::Error),
    /// No connection could be had from the pool.
    Pool(PoolError),
    /// A domain outcome (`MissingBlob`, …) or an already mapped error.
    Meta(MetaError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<PoolError> for Fail {
    fn from(e: PoolError) -> Self {
        Fail::Pool(e)
    }
}

impl From<MetaError> for Fail {
    fn from(e: MetaError) -> Self {
        Fail::Meta(e)
    }
}

impl Fail {
    /// A lock conflict with another transaction: running the whole operation again is safe.
    pub(super) fn is_retryable(&self) -> bool {
        let code = match self {
            Fail::Pg(e) => e.code(),
            _ => None,
        };
        code == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
            || code == Some(&SqlState::T_R_DEADLOCK_DETECTED)
    }

    /// The error the caller sees, with `what` (the operation) in its message.
    pub(super) fn into_meta(self, what: &str) -> MetaError {
        match self {
            Fail::Meta(e) => e,
            Fail::Pg(e) if pg_unavailable(&e) => {
                MetaError::Unavailable(format!("postgres: {what}: {}", describe(&e)))
            }
            Fail::Pg(e) => MetaError::Database(format!("postgres: {what}: {}", describe(&e))),
            Fail::Pool(PoolError::Backend(e)) if !pg_unavailable(&e) => {
                MetaError::Database(format!("postgres: {what}: connect: {}", describe(&e)))
            }
            Fail::Pool(PoolError::Backend(e)) => {
                MetaError::Unavailable(format!("postgres: {what}: connect: {}", describe(&e)))
            }
            Fail::Pool(e) => MetaError::Unavailable(format!("postgres: {what}: {e}")),
        }
    }
}

/// The driver's message with its cause (the server's message, the socket error).
fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Whether the error means "the database is unreachable, shutting down or overloaded" rather
/// than "this statement is wrong".
fn pg_unavailable(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        let code = code.code();
        // 08: connection exception; 53: insufficient resources (too many connections, disk
        // full); 57P01-03: admin/crash shutdown, cannot connect now (starting or stopping).
        return code.starts_with("08") || code.starts_with("53") || code.starts_with("57P");
    }
    if e.is_closed() {
        return true;
    }
    let io = std::error::Error::source(e).is_some_and(|c| c.is::<std::io::Error>());
    // Without a server error code and without an I/O cause, the driver's own kinds that mean
    // "no usable connection" are told apart by their fixed messages.
    io || matches!(
        e.to_string().as_str(),
        "error connecting to server"
            | "timeout waiting for server"
            | "error performing TLS handshake"
            | "error communicating with the server"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cert_is_taken_out_of_urls_and_key_value_strings() {
        let (rest, cert) =
            split_root_cert("postgres://u@h/db?sslmode=require&sslrootcert=%2Fetc%2Fca.pem&x=1");
        assert_eq!(rest, "postgres://u@h/db?sslmode=require&x=1");
        assert_eq!(cert.as_deref(), Some("/etc/ca.pem"));
        let (rest, cert) = split_root_cert("postgres://u@h/db?sslrootcert=/ca.pem");
        assert_eq!(
            (rest.as_str(), cert.as_deref()),
            ("postgres://u@h/db", Some("/ca.pem"))
        );
        let (rest, cert) = split_root_cert("host=h sslrootcert=/ca.pem user=u");
        assert_eq!(
            (rest.as_str(), cert.as_deref()),
            ("host=h user=u", Some("/ca.pem"))
        );
        let (rest, cert) = split_root_cert("postgres://u@h/db");
        assert_eq!((rest.as_str(), cert), ("postgres://u@h/db", None));
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("%2Fa%20b"), "/a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn a_bad_url_is_a_configuration_error() {
        let opts = PostgresOptions::new("postgres://u@h/db?nonsense=1");
        match build(&opts) {
            Err(MetaError::Database(msg)) => assert!(msg.contains("unknown option"), "{msg}"),
            other => panic!("expected a URL error, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_root_certificate_file_is_reported() {
        let opts =
            PostgresOptions::new("postgres://u@h/db?sslmode=require&sslrootcert=/nonexistent.pem");
        match build(&opts) {
            Err(MetaError::Database(msg)) => assert!(msg.contains("/nonexistent.pem"), "{msg}"),
            other => panic!("expected a certificate error, got {other:?}"),
        }
    }
}
