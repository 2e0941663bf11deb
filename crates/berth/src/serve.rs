//! Building the registry from settings and serving it until SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_meta::ops::{Inventory, Outbox};
use berth_meta::postgres::{PostgresOptions, PostgresStore};
use berth_meta::sqlite::{SqliteOptions, SqliteStore};
use berth_meta::MetaStore;
use berth_notify::{Notifier, NotifierHandle, Urls, WebhookSink};
use berth_registry::{Registry, RegistryOptions, Sinks};
use berth_storage::fs::FsBackend;
use berth_storage::metered::Metered;
use berth_storage::s3::{S3Backend, S3Options};
use berth_storage::Backend;

use crate::app;
use crate::config::{self, ConfigError, DatabaseSettings, Settings, StorageSettings};
use crate::health::Health;
use crate::listener::{self, BodyLimits, ConnLimits, ListenError, ListenOptions, Shutdown};
use crate::metrics::{EventCounters, Metrics};
use crate::observe::Observe;
use crate::purge;
use crate::tls::{TlsOptions, TlsVersion};

/// How long a presigned blob URL stays valid (registry:2's S3 driver: 20 minutes).
const REDIRECT_EXPIRY: Duration = Duration::from_secs(20 * 60);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configured feature this build cannot provide; refusing beats running unprotected.
    #[error("{0}")]
    Unsupported(String),
    /// A listener could not start (address, TLS files).
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Storage root, listener or runtime failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A data directory is missing or not writable (the message says what to run).
    #[error("{0}")]
    DataDir(String),
    /// The metadata database could not be opened.
    #[error("metadata database: {0}")]
    Meta(#[from] berth_meta::MetaError),
    /// `berth kube-secret` was given unusable flags.
    #[error(transparent)]
    KubeSecret(#[from] crate::kube_secret::KubeSecretError),
    /// Users, robots, keys or policy could not be loaded.
    #[error("auth: {0}")]
    Auth(#[from] berth_auth::AuthError),
}

/// The components built from settings.
struct Components {
    storage: Arc<dyn Backend>,
    meta: Arc<dyn MetaStore>,
    outbox: Arc<dyn Outbox>,
    inventory: Arc<dyn Inventory>,
    driver: &'static str,
}

/// Runs the registry until a shutdown signal.
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let started = Instant::now();
    let recorder = Metrics::install().map_err(ServeError::Unsupported)?;
    let c = build_components(&settings).await?;
    let api = crate::access::api_options(&settings)?;
    let metrics = Metrics::new(recorder, c.inventory.clone());
    metrics.spawn_upkeep();
    let mut sinks = Sinks::default();
    sinks.push(Arc::new(berth_api::AuditLog));
    sinks.push(Arc::new(EventCounters::new()));
    let notifier = start_notifications(&settings, &c, &mut sinks);
    let mut registry = Registry::new(
        c.storage.clone(),
        c.meta.clone(),
        RegistryOptions {
            delete_enabled: settings.delete_enabled,
        },
    )
    .with_events(sinks);
    if settings.redirect {
        registry = registry.with_blob_redirect(REDIRECT_EXPIRY);
    }
    let registry = Arc::new(registry);
    let health = Health::new(c.storage.clone(), c.meta.clone(), c.driver);
    health.spawn_checker(&settings.health);
    if let Some(p) = settings.upload_purging.clone() {
        purge::spawn(p, c.inventory.clone(), c.meta.clone(), c.storage.clone());
    }
    let observe = Arc::new(Observe {
        access_log: settings.log.access_log,
    });
    let shutdown = Shutdown::on_signals();
    let conns = conn_limits(&settings);
    let metrics_path = settings.debug.as_ref().and_then(|d| d.metrics_path.clone());
    let debug_listener = match &settings.debug {
        Some(debug) => {
            let router = app::debug_router(
                health.clone(),
                metrics_path.clone().map(|p| (p, metrics.clone())),
            );
            let opts = debug_listen_options(&debug.addr, &settings, &conns);
            Some(spawn_debug_listener(opts, router, shutdown.clone()).await?)
        }
        None => None,
    };
    let app = app::build(app::Parts {
        registry,
        api,
        health,
        metrics_on_main: settings
            .metrics_on_main
            .then(|| ("/metrics".to_owned(), metrics)),
        observe,
        prefix: settings.prefix.clone(),
        headers: settings.headers.clone(),
    });
    let bound = listener::bind(listen_options(&settings, &conns)).await?;
    let local = bound.local_addr()?;
    tracing::info!(
        addr = %local,
        tls = bound.is_tls(),
        storage = c.driver,
        delete_enabled = settings.delete_enabled,
        "berth {} ready in {:.1} ms",
        env!("CARGO_PKG_VERSION"),
        started.elapsed().as_secs_f64() * 1000.0
    );
    bound.serve(app, shutdown).await;
    if let Some(task) = debug_listener {
        let _ = task.await;
    }
    if let Some(n) = notifier {
        n.shutdown().await;
    }
    tracing::info!("berth stopped");
    Ok(())
}

/// Starts webhook delivery when endpoints are configured, subscribing it to the registry's
/// events.
fn start_notifications(
    settings: &Settings,
    c: &Components,
    sinks: &mut Sinks,
) -> Option<NotifierHandle> {
    if settings.notifications.is_empty() {
        return None;
    }
    let endpoints = settings.notifications.clone();
    let (notifier, handle) = Notifier::start(endpoints, c.outbox.clone(), settings.addr.clone());
    let urls = Urls {
        host: settings.host.clone(),
        prefix: settings.prefix.clone(),
        tls: settings.tls.is_some(),
    };
    sinks.push(Arc::new(WebhookSink::new(notifier, urls)));
    Some(handle)
}

/// `http.limits` as the listeners' body limits.
fn body_limits(settings: &Settings) -> BodyLimits {
    BodyLimits {
        min_rate: settings.limits.body_min_rate,
        period: settings.limits.body_timeout,
    }
}

/// `http.limits` and `http.trustedproxies` as connection caps; without `maxconnections` the
/// total follows the descriptor limit (raised to its hard limit first).
fn conn_limits(settings: &Settings) -> ConnLimits {
    let l = &settings.limits;
    let total = l.max_connections.unwrap_or_else(|| {
        let nofile = listener::raise_nofile_limit();
        let total = listener::auto_max_connections(nofile);
        tracing::debug!(
            ?nofile,
            total,
            "http.limits.maxconnections from RLIMIT_NOFILE"
        );
        total
    });
    ConnLimits {
        per_client: l.connections_per_client,
        total,
        trusted: settings.trusted_proxies.clone(),
    }
}

/// The registry listener's options from `http.*`.
fn listen_options(settings: &Settings, conns: &ConnLimits) -> ListenOptions {
    let tls = settings.tls.as_ref().map(|t| TlsOptions {
        client_cas: t.client_cas.clone(),
        min_version: match t.min_version {
            config::TlsVersion::Tls12 => TlsVersion::Tls12,
            config::TlsVersion::Tls13 => TlsVersion::Tls13,
        },
        ..TlsOptions::new(t.certificate.clone(), t.key.clone())
    });
    ListenOptions {
        name: "http",
        addr: settings.bind_addr(),
        tls,
        drain_timeout: settings.drain_timeout,
        body: body_limits(settings),
        conns: conns.clone(),
    }
}

/// The debug listener speaks plain HTTP, as registry:2's does.
fn debug_listen_options(addr: &str, settings: &Settings, conns: &ConnLimits) -> ListenOptions {
    ListenOptions {
        name: "debug",
        addr: config::bind_addr(addr),
        tls: None,
        drain_timeout: settings.drain_timeout,
        body: body_limits(settings),
        conns: conns.clone(),
    }
}

async fn spawn_debug_listener(
    opts: ListenOptions,
    router: axum::Router,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let bound = listener::bind(opts).await?;
    tracing::info!(addr = %bound.local_addr()?, "debug listener (metrics, health) ready");
    Ok(tokio::spawn(bound.serve(router, shutdown)))
}

/// `storage.s3` settings as the backend's options (credentials from the environment when the
/// keys are absent; `AWS_CA_BUNDLE` adds trusted CAs for HTTPS endpoints).
/// The configured S3 options with what the AWS SDKs take from the environment: the only place
/// the AWS variables are read (the storage crate reads no environment).
fn s3_options(s: &S3Options) -> S3Options {
    s.clone().with_environment(|k| std::env::var(k).ok())
}

async fn build_components(settings: &Settings) -> Result<Components, ServeError> {
    let (storage, driver): (Arc<dyn Backend>, &'static str) = match &settings.storage {
        StorageSettings::Filesystem { root } => {
            crate::datadir::ensure_writable(root, None).map_err(ServeError::DataDir)?;
            (Arc::new(FsBackend::new(root)?), "filesystem")
        }
        StorageSettings::S3(s3) => (Arc::new(S3Backend::new(&s3_options(s3))?), "s3"),
    };
    let storage: Arc<dyn Backend> = Arc::new(Metered::new(storage, driver));
    let (meta, outbox, inventory): (Arc<dyn MetaStore>, Arc<dyn Outbox>, Arc<dyn Inventory>) =
        match &settings.database {
            DatabaseSettings::Sqlite { path } => {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                crate::datadir::ensure_writable(dir.unwrap_or(Path::new(".")), Some(path))
                    .map_err(ServeError::DataDir)?;
                let db = SqliteStore::open(path, SqliteOptions::default())?;
                (Arc::new(db.clone()), Arc::new(db.clone()), Arc::new(db))
            }
            DatabaseSettings::Postgres { url, pool_size } => {
                let opts = PostgresOptions {
                    pool_size: usize::try_from(*pool_size).unwrap_or(usize::MAX),
                    ..PostgresOptions::new(url.clone())
                };
                let db = PostgresStore::connect(&opts).await?;
                (Arc::new(db.clone()), Arc::new(db.clone()), Arc::new(db))
            }
        };
    Ok(Components {
        storage,
        meta,
        outbox,
        inventory,
        driver,
    })
}
