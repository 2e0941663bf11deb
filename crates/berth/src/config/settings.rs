//! The checked settings the server runs with; built by [`super::validate`].

use std::path::PathBuf;
use std::time::Duration;

/// Validated settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Listen address as written (`:5000`, `127.0.0.1:5000`).
    pub addr: String,
    /// Path prefix without a trailing slash (`""` or `/registry`).
    pub prefix: String,
    /// External base URL, if configured.
    pub host: Option<String>,
    /// HTTPS settings.
    pub tls: Option<TlsSettings>,
    /// In-flight requests may run this long after SIGTERM.
    pub drain_timeout: Duration,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// The debug listener (metrics, health), if any.
    pub debug: Option<DebugSettings>,
    /// Serve `/metrics` on the main listener.
    pub metrics_on_main: bool,
    /// Logging.
    pub log: LogSettings,
    /// Blob storage.
    pub storage: StorageSettings,
    /// `storage.delete.enabled`.
    pub delete_enabled: bool,
    /// `!storage.redirect.disable`: blob GETs may redirect to the backend.
    pub redirect: bool,
    /// Abandoned upload removal, if enabled.
    pub upload_purging: Option<PurgeSettings>,
    /// Metadata database.
    pub database: DatabaseSettings,
    /// Authentication and authorization.
    pub auth: AuthSettings,
    /// `http.trustedproxies`.
    pub trusted_proxies: Vec<berth_api::IpNet>,
    /// `http.limits`.
    pub limits: LimitSettings,
    /// Webhook receivers.
    pub notifications: Vec<berth_notify::EndpointConfig>,
    /// Storage health check.
    pub health: HealthSettings,
}

/// `http.limits`: slow request bodies and open connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitSettings {
    /// Bytes per second a body must average while the server waits for it (0: none).
    pub body_min_rate: u64,
    /// The measuring period, also the longest a body may bring nothing; zero turns both off.
    pub body_timeout: Duration,
    /// Open connections per client address (IPv6: per /64); 0 is unlimited.
    pub connections_per_client: u32,
    /// Open connections per listener: `None` derives it from `RLIMIT_NOFILE` at startup,
    /// `Some(0)` is unlimited.
    pub max_connections: Option<u32>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            body_min_rate: 1024,
            body_timeout: Duration::from_secs(30),
            connections_per_client: 256,
            max_connections: None,
        }
    }
}

/// `http.tls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Client CA bundles (client-certificate auth when non-empty).
    pub client_cas: Vec<PathBuf>,
    /// Lowest TLS version accepted.
    pub min_version: TlsVersion,
}

/// TLS protocol versions Berth accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (default).
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// `http.debug`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugSettings {
    /// Listen address.
    pub addr: String,
    /// Metrics path, when Prometheus exposition is on.
    pub metrics_path: Option<String>,
}

/// `log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// `error`, `warn`, `info` or `debug`.
    pub level: String,
    /// JSON lines instead of text.
    pub json: bool,
    /// Static fields on every line.
    pub fields: Vec<(String, String)>,
    /// One line per request.
    pub access_log: bool,
}

/// Where blobs live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageSettings {
    /// Local disk.
    Filesystem {
        /// Root directory.
        root: PathBuf,
    },
    /// S3-compatible object storage (the storage crate's options, checked by it).
    S3(Box<berth_storage::s3::S3Options>),
}

/// `storage.maintenance.uploadpurging` when enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeSettings {
    /// Sessions idle longer than this are removed.
    pub age: Duration,
    /// How often to look.
    pub interval: Duration,
    /// Only log.
    pub dry_run: bool,
}

/// The metadata database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseSettings {
    /// Embedded SQLite file.
    Sqlite {
        /// Database file.
        path: PathBuf,
    },
    /// PostgreSQL.
    Postgres {
        /// Connection URL.
        url: String,
        /// Pool size.
        pool_size: u32,
    },
}

/// `auth`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// `auth.htpasswd`.
    pub htpasswd: Option<HtpasswdSettings>,
    /// `auth.token`.
    pub token: Option<TokenSettings>,
    /// `auth.issuer`.
    pub issuer: Option<IssuerSettings>,
    /// `auth.robots.path`.
    pub robots: Option<PathBuf>,
    /// `auth.limits`.
    pub limits: LoginLimitSettings,
    /// `policy`, checked; `None` when the section is absent.
    pub policy: Option<berth_auth::PolicyConfig>,
}

impl AuthSettings {
    /// Whether any form of authentication or policy is configured.
    pub fn enabled(&self) -> bool {
        self.htpasswd.is_some()
            || self.token.is_some()
            || self.issuer.is_some()
            || self.robots.is_some()
            || self.policy.is_some()
    }
}

/// `auth.issuer` (Berth's own token endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerSettings {
    /// Signing key file.
    pub key: PathBuf,
    /// `iss`.
    pub issuer: String,
    /// `aud` and challenge service.
    pub service: String,
    /// Token lifetime.
    pub lifetime: Duration,
    /// Longest session a refresh token keeps alive; zero: no refresh tokens.
    pub session_lifetime: Duration,
    /// Fixed realm, else derived from each request.
    pub realm: Option<String>,
}

/// `auth.limits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimitSettings {
    /// Failures per client address per window.
    pub client_failures: u32,
    /// Failures per user per window.
    pub user_failures: u32,
    /// Window.
    pub window: Duration,
}

impl Default for LoginLimitSettings {
    fn default() -> Self {
        LoginLimitSettings {
            client_failures: 10,
            user_failures: 50,
            window: Duration::from_secs(60),
        }
    }
}

/// `auth.htpasswd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtpasswdSettings {
    /// Challenge realm.
    pub realm: String,
    /// File path.
    pub path: PathBuf,
}

/// `auth.token` (external token server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSettings {
    /// Token endpoint URL.
    pub realm: String,
    /// Service (audience).
    pub service: String,
    /// Issuer.
    pub issuer: String,
    /// Signing certificates.
    pub root_cert_bundle: PathBuf,
    /// Redirect challenges.
    pub auto_redirect: bool,
}

/// `health.storagedriver`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// Periodic checks on.
    pub enabled: bool,
    /// Check interval.
    pub interval: Duration,
    /// Failures before unhealthy.
    pub threshold: u32,
}

impl Settings {
    /// The address to bind: a leading `:` means all interfaces, as in registry:2.
    pub fn bind_addr(&self) -> String {
        bind_addr(&self.addr)
    }
}

/// `:5000` → `0.0.0.0:5000`; anything else unchanged.
pub fn bind_addr(addr: &str) -> String {
    match addr.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => addr.to_owned(),
    }
}
