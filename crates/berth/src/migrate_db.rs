//! `berth migrate-db`: applies pending PostgreSQL metadata migrations and exits.
//!
//! `berth serve` applies them at startup too; running them explicitly first (a deploy step, a
//! Kubernetes init container or Job) lets operators see and time the schema change before any
//! replica rolls. Migrations take an advisory lock, so this is safe next to starting replicas.

use berth_meta::postgres::{PostgresOptions, PostgresStore};
use berth_meta::MetaError;

/// Applies pending migrations to the database at `url`; returns the names of those applied.
pub fn run(url: &str) -> Result<Vec<String>, MetaError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MetaError::Database(format!("cannot start the runtime: {e}")))?;
    let opts = PostgresOptions {
        pool_size: 1,
        ..PostgresOptions::new(url)
    };
    runtime.block_on(async {
        let store = PostgresStore::connect_lazy(&opts)?;
        store.migrate().await
    })
}
