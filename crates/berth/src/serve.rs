//! Building the registry from settings and serving it until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use berth_meta::postgres::{PostgresOptions, PostgresStore};
use berth_meta::sqlite::{SqliteOptions, SqliteStore};
use berth_meta::MetaStore;
use berth_registry::{Registry, RegistryOptions};
use berth_storage::fs::FsBackend;
use berth_storage::Backend;

use crate::config::{ConfigError, DatabaseSettings, Settings, StorageSettings};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configured feature this build cannot provide; refusing beats running unprotected.
    #[error("{0}")]
    Unsupported(String),
    /// Storage root, listener or runtime failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The metadata database could not be opened.
    #[error("metadata database: {0}")]
    Meta(#[from] berth_meta::MetaError),
}

/// Runs the registry until a shutdown signal.
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let started = Instant::now();
    refuse_unsupported(&settings)?;
    let registry = Arc::new(build_registry(&settings).await?);
    let listener = tokio::net::TcpListener::bind(settings.bind_addr()).await?;
    let local = listener.local_addr()?;
    tracing::info!(
        addr = %local,
        storage = ?settings.storage,
        delete_enabled = settings.delete_enabled,
        "berth {} ready in {:.1} ms",
        env!("CARGO_PKG_VERSION"),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let app = berth_api::router(registry).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("berth stopped");
    Ok(())
}

/// Settings that parse but whose feature is not in this build yet.
fn refuse_unsupported(s: &Settings) -> Result<(), ServeError> {
    let missing = if s.tls.is_some() {
        Some("http.tls (HTTPS)")
    } else if s.auth.htpasswd.is_some() || s.auth.token.is_some() {
        Some("auth (authentication)")
    } else {
        None
    };
    match missing {
        Some(what) => Err(ServeError::Unsupported(format!(
            "{what} is configured but not supported by this build; refusing to start rather than serve without it"
        ))),
        None => Ok(()),
    }
}

async fn build_registry(settings: &Settings) -> Result<Registry, ServeError> {
    let storage: Arc<dyn Backend> = match &settings.storage {
        StorageSettings::Filesystem { root } => {
            std::fs::create_dir_all(root)?;
            Arc::new(FsBackend::new(root)?)
        }
        StorageSettings::S3(_) => {
            return Err(ServeError::Unsupported(
                "storage.s3 is not supported by this build yet".into(),
            ))
        }
    };
    let meta: Arc<dyn MetaStore> = match &settings.database {
        DatabaseSettings::Sqlite { path } => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Arc::new(SqliteStore::open(path, SqliteOptions::default())?)
        }
        DatabaseSettings::Postgres { url, pool_size } => {
            let opts = PostgresOptions {
                pool_size: usize::try_from(*pool_size).unwrap_or(usize::MAX),
                ..PostgresOptions::new(url.clone())
            };
            Arc::new(PostgresStore::connect(&opts).await?)
        }
    };
    let opts = RegistryOptions {
        delete_enabled: settings.delete_enabled,
    };
    Ok(Registry::new(storage, meta, opts))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
