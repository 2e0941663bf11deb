//! Versioned schema migrations, embedded in the binary and tracked with `PRAGMA user_version`.
//!
//! Migration `n` (1-based) is `MIGRATIONS[n - 1]`; `user_version = n` means the first `n` are
//! applied. Pending ones run at open in one `IMMEDIATE` transaction, so two processes opening the
//! same database cannot both migrate it, and a failure leaves the previous version intact.

use rusqlite::{Connection, TransactionBehavior};

use super::Context;
use crate::{MetaError, Result};

/// Every migration, in order. Append only; never edit a released file.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/0001_init.sql")),
    (
        "0002_outbox",
        include_str!("../../migrations/0002_outbox.sql"),
    ),
    (
        "0003_outbox_leases",
        include_str!("../../migrations/0003_outbox_leases.sql"),
    ),
];

/// The schema version this build writes.
pub(super) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`LATEST`]; a no-op when it is already there.
pub(super) fn run(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("begin migration")?;
    let current: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("read schema version")?;
    if current > LATEST {
        return Err(MetaError::Database(format!(
            "sqlite: database schema version {current} is newer than this build of Berth supports \
             ({LATEST}); run a newer Berth or restore a backup"
        )));
    }
    let pending = MIGRATIONS.iter().zip(1_i64..).skip(current.max(0) as usize);
    for ((name, sql), version) in pending {
        tx.execute_batch(sql)
            .ctx(&format!("apply migration {name}"))?;
        tx.pragma_update(None, "user_version", version)
            .ctx("record schema version")?;
        tracing::info!(migration = name, version, "applied metadata migration");
    }
    tx.commit().ctx("commit migrations")
}
