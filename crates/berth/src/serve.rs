//! Building the registry from settings and serving it until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use berth_meta::sqlite::{SqliteOptions, SqliteStore};
use berth_registry::{Registry, RegistryOptions};
use berth_storage::fs::FsBackend;

use crate::config::{ConfigError, Settings};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Storage root, listener or runtime failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The metadata database could not be opened.
    #[error("metadata database: {0}")]
    Meta(#[from] berth_meta::MetaError),
}

/// File name of the embedded metadata database, inside the storage root.
pub const META_DB: &str = "berth-meta.sqlite";

/// Runs the registry until a shutdown signal.
pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let started = Instant::now();
    let registry = Arc::new(build_registry(&settings)?);
    let listener = tokio::net::TcpListener::bind(settings.bind_addr()).await?;
    let local = listener.local_addr()?;
    tracing::info!(
        addr = %local,
        root = %settings.root.display(),
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

fn build_registry(settings: &Settings) -> Result<Registry, ServeError> {
    std::fs::create_dir_all(&settings.root)?;
    let storage = FsBackend::new(&settings.root)?;
    let meta = SqliteStore::open(&settings.root.join(META_DB), SqliteOptions::default())?;
    let opts = RegistryOptions {
        delete_enabled: settings.delete_enabled,
    };
    Ok(Registry::new(Arc::new(storage), Arc::new(meta), opts))
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
