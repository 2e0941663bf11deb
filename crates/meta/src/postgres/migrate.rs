//! Versioned schema migrations, embedded in the binary and recorded in `berth_schema_migrations`.
//!
//! Migration `n` (1-based) is `MIGRATIONS[n - 1]`. Pending ones run in ONE transaction that first
//! takes a transaction-scoped advisory lock, so replicas starting at the same moment (or a
//! `berth migrate-db` next to a starting replica) apply them exactly once: the others wait for
//! the lock, then find nothing pending. PostgreSQL's DDL is transactional, so a failed
//! migration leaves the previous version intact.

use tokio_postgres::Client;

use super::pool::Fail;
use crate::{MetaError, Result};

/// Every migration, in order. Append only; never edit a released file.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_outbox",
        include_str!("../../migrations/postgres/0002_outbox.sql"),
    ),
    (
        "0003_outbox_leases",
        include_str!("../../migrations/postgres/0003_outbox_leases.sql"),
    ),
];

/// The schema version this build writes.
pub const LATEST: i32 = MIGRATIONS.len() as i32;

/// Key of the advisory lock serialising migrations (ASCII "berthmig").
const LOCK_KEY: i64 = 0x6265_7274_686d_6967;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS berth_schema_migrations (\
     version    INTEGER PRIMARY KEY, \
     name       TEXT NOT NULL, \
     applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// Brings the database up to [`LATEST`]; returns the names of the migrations it applied (empty
/// when the schema was already current).
pub(super) async fn run(client: &mut Client) -> std::result::Result<Vec<String>, Fail> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    // Not "relation already exists, skipping" in the log at every start.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.batch_execute(CREATE_TABLE).await?;
    let row = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM berth_schema_migrations",
            &[],
        )
        .await?;
    let current: i32 = row.try_get(0)?;
    check_version(current)?;
    let mut applied = Vec::new();
    let pending = MIGRATIONS.iter().zip(1_i32..).skip(current.max(0) as usize);
    for ((name, sql), version) in pending {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO berth_schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, name],
        )
        .await?;
        tracing::info!(
            migration = name,
            version,
            "applied PostgreSQL metadata migration"
        );
        applied.push((*name).to_string());
    }
    tx.commit().await?;
    Ok(applied)
}

/// Refuses a database written by a newer Berth instead of guessing.
fn check_version(current: i32) -> Result<()> {
    if current > LATEST {
        return Err(MetaError::Database(format!(
            "postgres: database schema version {current} is newer than this build of Berth \
             supports ({LATEST}); run a newer Berth or restore a backup"
        )));
    }
    Ok(())
}
